//! The audit log: every scoring decision (request id, time, customer id or its keyed hash,
//! model version, PD, score, band, reason codes, degraded flag and missing parties, latency),
//! never features, written to SQLite (default, a file under the coordinator's data directory)
//! or PostgreSQL (when a URL is configured), through sqlx's `Any` driver.
//!
//! Scoring never waits for the database: [`Audit::record`] puts the decision on a bounded
//! queue and returns. A writer task drains it in batches (one transaction each). If the queue
//! is full the decision is dropped, counted (`tessera_audit_dropped_total`) and logged, and
//! `/readyz` names it for a minute (without becoming unready); if the database fails, the writer keeps the batch and
//! retries with backoff (the queue absorbs the meanwhile). On shutdown the queue is drained.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tessera_common::config::ConfigError;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::{Acquire, Row};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

mod settings;
pub use settings::{AuditSettings, CustomerIdMode};

/// One recorded decision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    /// The id of the scoring answer (`request_id` in it).
    pub request_id: String,
    /// When it was decided, RFC 3339 UTC.
    pub decided_at: String,
    /// The customer id, or its keyed hash (see `customer_hashed`).
    pub customer: String,
    /// Whether `customer` is an HMAC of the id.
    pub customer_hashed: bool,
    /// Model that scored.
    pub model_version: String,
    /// Calibrated probability of default.
    pub probability_of_default: f64,
    /// Score.
    pub score: i32,
    /// Band of the score.
    pub band: String,
    /// Reason codes, most adverse first.
    pub reason_codes: Vec<String>,
    /// Whether some party did not contribute.
    pub degraded: bool,
    /// Parties that did not contribute.
    pub missing_parties: Vec<String>,
    /// Time to answer, milliseconds.
    pub latency_ms: f64,
    /// The API client that asked (its name in the keys file; `anonymous` with
    /// authentication off).
    pub caller: String,
}

/// Audit log errors.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The database could not be opened, created or queried.
    #[error("audit database: {0}")]
    Db(#[from] sqlx::Error),
    /// The HMAC key file could not be read or is too short.
    #[error("audit HMAC key {0}: {1}")]
    Key(PathBuf, String),
    /// A stored row could not be decoded.
    #[error("audit row: {0}")]
    Row(String),
    /// The settings are invalid (see [`AuditSettings::validate`]).
    #[error("audit settings: {0}")]
    Settings(ConfigError),
}

struct Shared {
    dropped: AtomicU64,
    last_drop_unix: AtomicI64,
    writer_failing: AtomicBool,
}

/// Handle of the audit log: cheap to clone.
#[derive(Clone)]
pub struct Audit {
    tx: mpsc::Sender<Decision>,
    pool: AnyPool,
    key: Option<Arc<Vec<u8>>>,
    shared: Arc<Shared>,
    metrics: crate::metrics::Metrics,
}

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS tessera_decisions (
    request_id TEXT PRIMARY KEY,
    decided_at TEXT NOT NULL,
    customer TEXT NOT NULL,
    customer_hashed BIGINT NOT NULL,
    model_version TEXT NOT NULL,
    probability_of_default DOUBLE PRECISION NOT NULL,
    score BIGINT NOT NULL,
    band TEXT NOT NULL,
    reason_codes TEXT NOT NULL,
    degraded BIGINT NOT NULL,
    missing_parties TEXT NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    caller TEXT NOT NULL DEFAULT ''
)";

/// Indexes of the lists the UI asks for (newest first; by customer).
const INDEXES: [&str; 2] = [
    "CREATE INDEX IF NOT EXISTS tessera_decisions_decided_at ON tessera_decisions (decided_at)",
    "CREATE INDEX IF NOT EXISTS tessera_decisions_customer ON tessera_decisions (customer)",
];

/// Columns of a decision row.
const COLUMNS: usize = 13;

/// Adds the `caller` column to a table made before it existed (rows from then: `''`).
const ADD_CALLER: &str = "ALTER TABLE tessera_decisions ADD COLUMN caller TEXT NOT NULL DEFAULT ''";

const INSERT_PREFIX: &str = "INSERT INTO tessera_decisions (request_id, decided_at, customer, customer_hashed,
    model_version, probability_of_default, score, band, reason_codes, degraded, missing_parties, latency_ms, caller) ";

/// Seconds a dropped decision keeps `/readyz` reporting it.
const DROP_REPORT_SECS: i64 = 60;

impl Audit {
    /// Opens (creating if needed) the database and starts the writer. Returns the handle and
    /// the writer task; the task ends, having written everything queued, when every handle is
    /// dropped.
    ///
    /// # Errors
    /// [`AuditError`] if the database cannot be opened or the key read.
    pub async fn open(
        settings: &AuditSettings,
        default_path: PathBuf,
        metrics: crate::metrics::Metrics,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AuditError> {
        settings.validate().map_err(AuditError::Settings)?;
        sqlx::any::install_default_drivers();
        let url = match &settings.url {
            Some(u) => u.clone(),
            None => {
                let path = settings.path.clone().unwrap_or(default_path);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| AuditError::Db(sqlx::Error::Io(e)))?;
                }
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&url)
            .await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        for index in INDEXES {
            sqlx::query(index).execute(&pool).await?;
        }
        if sqlx::query("SELECT caller FROM tessera_decisions WHERE 1 = 0")
            .fetch_optional(&pool)
            .await
            .is_err()
        {
            sqlx::query(ADD_CALLER).execute(&pool).await?;
            info!("audit table upgraded: caller column added");
        }
        let key = match (&settings.customer_id, &settings.hmac_key_file) {
            (CustomerIdMode::Hmac, Some(p)) => {
                let k = std::fs::read(p).map_err(|e| AuditError::Key(p.clone(), e.to_string()))?;
                if k.len() < 32 {
                    return Err(AuditError::Key(p.clone(), "shorter than 32 bytes".into()));
                }
                Some(Arc::new(k))
            }
            _ => None,
        };
        let (tx, rx) = mpsc::channel(settings.queue_capacity);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            last_drop_unix: AtomicI64::new(0),
            writer_failing: AtomicBool::new(false),
        });
        let task = tokio::spawn(writer(
            rx,
            pool.clone(),
            settings.batch_size,
            shared.clone(),
            metrics.clone(),
        ));
        let kind = if url.starts_with("sqlite") {
            "sqlite"
        } else {
            "postgres"
        };
        info!(backend = kind, "audit log open");
        Ok((
            Self {
                tx,
                pool,
                key,
                shared,
                metrics,
            },
            task,
        ))
    }

    /// The customer as it is written: the id, or its HMAC (hex) when so configured.
    pub fn customer_ref(&self, customer_id: &str) -> (String, bool) {
        match &self.key {
            Some(k) => match Hmac::<Sha256>::new_from_slice(k) {
                Ok(mut m) => {
                    m.update(customer_id.as_bytes());
                    let bytes = m.finalize().into_bytes();
                    (bytes.iter().map(|b| format!("{b:02x}")).collect(), true)
                }
                Err(_) => (String::new(), true),
            },
            None => (customer_id.to_string(), false),
        }
    }

    /// Queues a decision without waiting. If the queue is full it is dropped and counted.
    pub fn record(&self, d: Decision) {
        match self.tx.try_send(d) {
            Ok(()) => self.metrics.audit_queue.inc(),
            Err(_) => {
                let n = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                self.metrics.audit_dropped.inc();
                let now = tessera_common::transport::unix_now();
                let before = self.shared.last_drop_unix.swap(now, Ordering::Relaxed);
                if now - before >= 10 {
                    warn!(dropped_total = n, "audit queue full: decisions are being dropped");
                }
            }
        }
    }

    /// Why the audit log is not healthy, if it is not: decisions dropped in the last minute,
    /// or the database failing.
    pub fn problem(&self) -> Option<String> {
        let now = tessera_common::transport::unix_now();
        if now - self.shared.last_drop_unix.load(Ordering::Relaxed) < DROP_REPORT_SECS {
            return Some(format!(
                "audit queue full: {} decisions dropped so far",
                self.shared.dropped.load(Ordering::Relaxed)
            ));
        }
        if self.shared.writer_failing.load(Ordering::Relaxed) {
            return Some("audit database writes are failing (retrying)".into());
        }
        None
    }

    /// A recorded decision.
    ///
    /// # Errors
    /// [`AuditError`] if the database fails.
    pub async fn get(&self, request_id: &str) -> Result<Option<Decision>, AuditError> {
        let row = sqlx::query(&format!(
            "SELECT {SELECT_COLUMNS} FROM tessera_decisions WHERE request_id = $1"
        ))
        .bind(request_id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| decision_of(&r)).transpose()
    }

    /// Recorded decisions matching `filter`, newest first, at most `limit` (capped at
    /// [`MAX_LIST`]). A customer id is looked up as it is stored (its keyed hash when so
    /// configured).
    ///
    /// # Errors
    /// [`AuditError`] if the database fails.
    pub async fn list(&self, filter: &DecisionQuery, limit: usize) -> Result<Vec<Decision>, AuditError> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(c) = &filter.customer {
            binds.push(self.customer_ref(c).0);
            conditions.push(format!("customer = ${}", binds.len()));
        }
        if let Some(r) = &filter.request_id {
            binds.push(r.clone());
            conditions.push(format!("request_id = ${}", binds.len()));
        }
        // RFC 3339 UTC timestamps sort as text.
        if let Some(from) = &filter.from {
            binds.push(from.clone());
            conditions.push(format!("decided_at >= ${}", binds.len()));
        }
        if let Some(before) = &filter.before {
            binds.push(before.clone());
            conditions.push(format!("decided_at < ${}", binds.len()));
        }
        let mut sql = format!("SELECT {SELECT_COLUMNS} FROM tessera_decisions");
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        sql.push_str(&format!(
            " ORDER BY decided_at DESC, request_id DESC LIMIT {}",
            limit.clamp(1, MAX_LIST)
        ));
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(decision_of).collect()
    }
}

/// Most decisions [`Audit::list`] returns at once.
pub const MAX_LIST: usize = 500;

/// Which decisions to list (`None`: any).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionQuery {
    /// The customer id (in clear; hashed here when the log keeps hashes).
    pub customer: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Decided at or after this RFC 3339 time (or date).
    pub from: Option<String>,
    /// Decided before this RFC 3339 time (or date).
    pub before: Option<String>,
}

const SELECT_COLUMNS: &str = "request_id, decided_at, customer, customer_hashed, model_version,
    probability_of_default, score, band, reason_codes, degraded, missing_parties, latency_ms, caller";

fn decision_of(row: &sqlx::any::AnyRow) -> Result<Decision, AuditError> {
    let bad = |e: &dyn std::fmt::Display| AuditError::Row(e.to_string());
    let list = |s: String| serde_json::from_str::<Vec<String>>(&s).map_err(|e| bad(&e));
    Ok(Decision {
        request_id: row.try_get("request_id")?,
        decided_at: row.try_get("decided_at")?,
        customer: row.try_get("customer")?,
        customer_hashed: row.try_get::<i64, _>("customer_hashed")? != 0,
        model_version: row.try_get("model_version")?,
        probability_of_default: row.try_get("probability_of_default")?,
        score: i32::try_from(row.try_get::<i64, _>("score")?).map_err(|e| bad(&e))?,
        band: row.try_get("band")?,
        reason_codes: list(row.try_get("reason_codes")?)?,
        degraded: row.try_get::<i64, _>("degraded")? != 0,
        missing_parties: list(row.try_get("missing_parties")?)?,
        latency_ms: row.try_get("latency_ms")?,
        caller: row.try_get("caller")?,
    })
}

/// Rows per INSERT statement (12 parameters each, well under SQLite's and PostgreSQL's limits).
const ROWS_PER_STATEMENT: usize = 100;

async fn write_batch(pool: &AnyPool, batch: &[Decision]) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut tx = conn.begin().await?;
    for chunk in batch.chunks(ROWS_PER_STATEMENT) {
        // `$n` placeholders: understood by both PostgreSQL and SQLite.
        let mut sql = String::from(INSERT_PREFIX);
        sql.push_str("VALUES ");
        for r in 0..chunk.len() {
            if r > 0 {
                sql.push(',');
            }
            let cols: Vec<String> = (1..=COLUMNS).map(|c| format!("${}", r * COLUMNS + c)).collect();
            sql.push('(');
            sql.push_str(&cols.join(","));
            sql.push(')');
        }
        // A retried batch whose earlier commit reached the database although its answer did
        // not (the connection dropped in between) must not fail forever on its own rows:
        // request ids are unique per decision, so a row already there is this decision.
        sql.push_str(" ON CONFLICT (request_id) DO NOTHING");
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(d.request_id.clone())
                .bind(d.decided_at.clone())
                .bind(d.customer.clone())
                .bind(i64::from(d.customer_hashed))
                .bind(d.model_version.clone())
                .bind(d.probability_of_default)
                .bind(i64::from(d.score))
                .bind(d.band.clone())
                .bind(serde_json::to_string(&d.reason_codes).unwrap_or_else(|_| "[]".into()))
                .bind(i64::from(d.degraded))
                .bind(serde_json::to_string(&d.missing_parties).unwrap_or_else(|_| "[]".into()))
                .bind(d.latency_ms)
                .bind(d.caller.clone());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await
}

async fn writer(
    mut rx: mpsc::Receiver<Decision>,
    pool: AnyPool,
    batch_size: usize,
    shared: Arc<Shared>,
    metrics: crate::metrics::Metrics,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        // Waits for one decision, then takes what else is queued (up to `batch_size`); 0 means
        // the queue is closed and drained.
        if rx.recv_many(&mut batch, batch_size).await == 0 {
            break;
        }
        metrics.audit_queue.set(rx.len() as i64);
        let mut backoff = Duration::from_millis(200);
        loop {
            match write_batch(&pool, &batch).await {
                Ok(()) => {
                    metrics.audit_written.inc_by(batch.len() as u64);
                    shared.writer_failing.store(false, Ordering::Relaxed);
                    batch.clear();
                    break;
                }
                Err(e) => {
                    metrics.audit_write_failures.inc();
                    if !shared.writer_failing.swap(true, Ordering::Relaxed) {
                        error!(error = %e, pending = batch.len(), "audit write failed; retrying");
                    }
                    if rx.is_closed() && backoff > Duration::from_secs(5) {
                        error!(
                            lost = batch.len(),
                            "audit database still failing at shutdown; giving up"
                        );
                        batch.clear();
                        break;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    pool.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(id: &str) -> Decision {
        Decision {
            request_id: id.into(),
            decided_at: "2026-12-01T00:00:00Z".into(),
            customer: "c1".into(),
            customer_hashed: false,
            model_version: "m".into(),
            probability_of_default: 0.25,
            score: 555,
            band: "poor".into(),
            reason_codes: vec!["A1".into(), "B2".into()],
            degraded: true,
            missing_parties: vec!["bank-b".into()],
            latency_ms: 0.75,
            caller: "loan-app".into(),
        }
    }

    #[tokio::test]
    async fn a_table_from_before_the_caller_column_is_upgraded_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let pool = AnyPoolOptions::new().connect(&url).await.unwrap();
        let old_schema = SCHEMA.replace(",\n    caller TEXT NOT NULL DEFAULT ''", "");
        assert!(!old_schema.contains("caller"));
        sqlx::query(&old_schema).execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO tessera_decisions VALUES ('old', 't', 'c', 0, 'm', 0.5, 600, 'fair', '[]', 0, '[]', 1.0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let (audit, task) = Audit::open(
            &AuditSettings::default(),
            path,
            crate::metrics::Metrics::new().unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(audit.get("old").await.unwrap().unwrap().caller, "");
        audit.record(decision("new"));
        let reader = audit.clone();
        drop(audit);
        let mut got = None;
        for _ in 0..100 {
            got = reader.get("new").await.unwrap();
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(got.map(|d| d.caller), Some("loan-app".to_string()));
        drop(reader);
        task.await.unwrap();
    }

    #[tokio::test]
    async fn sqlite_round_trip_drain_on_shutdown_and_hmac() {
        let dir = tempfile::tempdir().unwrap();
        let m = crate::metrics::Metrics::new().unwrap();
        let (audit, task) = Audit::open(
            &AuditSettings::default(),
            dir.path().join("a/audit.sqlite"),
            m.clone(),
        )
        .await
        .unwrap();
        for i in 0..1200 {
            audit.record(decision(&format!("r{i}")));
        }
        assert!(audit.problem().is_none());
        let reader = audit.clone();
        drop(audit);
        // The reader's handle keeps the writer going; poll until written.
        let mut got = None;
        for _ in 0..100 {
            got = reader.get("r1199").await.unwrap();
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(got, Some(decision("r1199")));
        assert_eq!(reader.get("nope").await.unwrap(), None);
        // A batch written again (its first commit reached the database, the answer did not)
        // is not an error, and adds only the rows not there yet.
        write_batch(&reader.pool, &[decision("r1199"), decision("again")])
            .await
            .unwrap();
        assert_eq!(reader.get("r1199").await.unwrap(), Some(decision("r1199")));
        assert_eq!(reader.get("again").await.unwrap(), Some(decision("again")));
        drop(reader);
        task.await.unwrap();
        assert_eq!(m.audit_written.get(), 1200);

        // A tiny queue overflows: counted and reported.
        let settings = AuditSettings {
            queue_capacity: 1,
            ..Default::default()
        };
        let key = dir.path().join("key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let hm = AuditSettings {
            customer_id: CustomerIdMode::Hmac,
            hmac_key_file: Some(key),
            ..settings
        };
        let (audit, _task) = Audit::open(
            &hm,
            dir.path().join("b.sqlite"),
            crate::metrics::Metrics::new().unwrap(),
        )
        .await
        .unwrap();
        for i in 0..50 {
            audit.record(decision(&format!("x{i}")));
        }
        assert!(audit.problem().is_some_and(|p| p.contains("dropped")));
        let (h, hashed) = audit.customer_ref("customer-42");
        assert!(hashed && h.len() == 64 && !h.contains("customer"));
        assert_eq!(audit.customer_ref("customer-42").0, h);
    }

    /// Against a real PostgreSQL when `TESSERA_TEST_POSTGRES_URL` is set (`scripts/test` starts
    /// one and sets it, with `TESSERA_REQUIRE_POSTGRES=1` so that a missing server fails).
    #[tokio::test]
    async fn postgres_round_trip() {
        let Ok(url) = std::env::var("TESSERA_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var_os("TESSERA_REQUIRE_POSTGRES").is_none(),
                "TESSERA_REQUIRE_POSTGRES is set but TESSERA_TEST_POSTGRES_URL is not"
            );
            eprintln!("skipped: set TESSERA_TEST_POSTGRES_URL=postgres://... to run against PostgreSQL");
            return;
        };
        let url_len = url.len();
        let url_start: String = url.chars().take(11).collect();
        let settings = AuditSettings {
            url: Some(url),
            ..Default::default()
        };
        let m = crate::metrics::Metrics::new().unwrap();
        let (audit, task) = match Audit::open(&settings, PathBuf::new(), m.clone()).await {
            Ok(opened) => opened,
            Err(e) => panic!(
                "cannot open the audit log at TESSERA_TEST_POSTGRES_URL ({} characters, starts {:?}): {e}",
                url_len, url_start
            ),
        };
        let ids: Vec<String> = (0..700).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        for id in &ids {
            audit.record(decision(id));
        }
        let reader = audit.clone();
        drop(audit);
        let last = ids.last().unwrap();
        let mut got = None;
        for _ in 0..200 {
            got = reader.get(last).await.unwrap();
            if got.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(got, Some(decision(last)));
        assert_eq!(reader.get(&ids[0]).await.unwrap(), Some(decision(&ids[0])));
        let by_id = DecisionQuery {
            request_id: Some(last.clone()),
            ..Default::default()
        };
        assert_eq!(reader.list(&by_id, 10).await.unwrap(), vec![decision(last)]);
        drop(reader);
        task.await.unwrap();
        assert_eq!(m.audit_written.get(), 700);
    }

    #[tokio::test]
    async fn lists_newest_first_with_filters() {
        let dir = tempfile::tempdir().unwrap();
        let (audit, task) = Audit::open(
            &AuditSettings::default(),
            dir.path().join("l.sqlite"),
            crate::metrics::Metrics::new().unwrap(),
        )
        .await
        .unwrap();
        let at = |id: &str, when: &str, customer: &str| Decision {
            decided_at: when.into(),
            customer: customer.into(),
            ..decision(id)
        };
        let d1 = at("r1", "2026-11-30T10:00:00Z", "a");
        let d2 = at("r2", "2026-12-01T09:00:00Z", "b");
        let d3 = at("r3", "2026-12-02T08:00:00Z", "a");
        for d in [&d2, &d1, &d3] {
            audit.record(d.clone());
        }
        let all = DecisionQuery::default();
        for _ in 0..100 {
            if audit.list(&all, 10).await.unwrap().len() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let q = |customer: Option<&str>, request: Option<&str>, from: Option<&str>, before: Option<&str>| {
            DecisionQuery {
                customer: customer.map(String::from),
                request_id: request.map(String::from),
                from: from.map(String::from),
                before: before.map(String::from),
            }
        };
        let ids = |v: Vec<Decision>| v.into_iter().map(|d| d.request_id).collect::<Vec<_>>();
        assert_eq!(ids(audit.list(&all, 10).await.unwrap()), ["r3", "r2", "r1"]);
        assert_eq!(audit.list(&all, 1).await.unwrap(), vec![d3.clone()]);
        assert_eq!(
            ids(audit.list(&q(Some("a"), None, None, None), 10).await.unwrap()),
            ["r3", "r1"]
        );
        assert_eq!(
            ids(audit.list(&q(None, Some("r2"), None, None), 10).await.unwrap()),
            ["r2"]
        );
        assert_eq!(
            ids(audit
                .list(&q(None, None, Some("2026-12-01"), None), 10)
                .await
                .unwrap()),
            ["r3", "r2"]
        );
        assert_eq!(
            ids(audit
                .list(&q(Some("a"), None, None, Some("2026-12-02")), 10)
                .await
                .unwrap()),
            ["r1"]
        );
        assert!(
            audit
                .list(&q(Some("' OR 1=1 --"), None, None, None), 10)
                .await
                .unwrap()
                .is_empty()
        );
        drop(audit);
        task.await.unwrap();
    }

    #[test]
    fn settings_are_checked() {
        assert!(AuditSettings::default().validate().is_ok());
        let bad = AuditSettings {
            customer_id: CustomerIdMode::Hmac,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = AuditSettings {
            url: Some("mysql://x".into()),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
