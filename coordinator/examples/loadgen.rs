//! HTTP load for the serving benchmark. Open loop for `/v1/score`: requests are started on a
//! fixed schedule (`--rate` per second for `--seconds`), whatever the answers do, and each
//! latency is measured from the request's *scheduled* start (so a stall shows up in the
//! percentiles instead of slowing the load: no coordinated omission). The generator's own
//! timer slop (tokio timers have millisecond resolution) is not counted: a request that starts
//! late is measured from its actual start, and the number of requests started more than 5 ms
//! behind schedule is reported as `late` (when it is large the generator, not the server, was
//! the bottleneck). Closed loop for
//! `/v1/score/batch`: `--concurrency` clients send batches of `--batch` ids back to back.
//! Prints one JSON line. Customer ids are drawn in turn from `--ids` (one per line).
//!
//! For the fault tests, `single --answers FILE` also writes one line per scheduled request:
//! `<Unix time scheduled, ms> <customer id> <HTTP status, 000 for no answer, 999 for shed> <latency ms>
//! <request id or -> <degraded 0/1> <missing parties, comma-separated, or -> <score or ->
//! <model version or -> <error code of an error answer or ->`, and the JSON line counts answers
//! by status.
//!
//! `loadgen --base http://127.0.0.1:8080 --ids ids.txt single --rate 1000 --seconds 10`
//! `loadgen --base http://127.0.0.1:8080 --ids ids.txt batch --batch 1000 --concurrency 2 --seconds 10`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    /// Base URL of the coordinator.
    #[arg(long)]
    base: String,
    /// File of customer ids, one per line.
    #[arg(long)]
    ids: std::path::PathBuf,
    /// Ask for scores without reason codes (`"explain": false`: one round trip to the banks).
    #[arg(long)]
    no_explain: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Single scores at a fixed rate.
    Single {
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Most requests in flight; beyond it a scheduled request counts as failed.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
        /// Write one line per request here (see the module documentation).
        #[arg(long)]
        answers: Option<std::path::PathBuf>,
        /// Give up on one request after this long (it counts as no answer, status 000).
        #[arg(long, default_value_t = 10_000)]
        timeout_ms: u64,
    },
    /// Batches as fast as they are answered.
    Batch {
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// What became of one scheduled request.
struct Answer {
    /// When it was scheduled, ms after the start.
    at_ms: f64,
    customer: String,
    /// HTTP status; 0: no answer (connection error or time-out); 999: shed (too many in flight).
    status: u16,
    latency_ms: f64,
    /// From a 200 body: request id, degraded, missing parties, score, model version.
    body: Option<(String, bool, String, i64, String)>,
    /// From an error body: its `error.code`.
    error: Option<String>,
}

fn summary_of(v: &serde_json::Value) -> Option<(String, bool, String, i64, String)> {
    let missing: Vec<&str> = v["missing_parties"]
        .as_array()?
        .iter()
        .filter_map(|p| p.as_str())
        .collect();
    Some((
        v["request_id"].as_str()?.to_string(),
        v["degraded"].as_bool()?,
        if missing.is_empty() {
            "-".into()
        } else {
            missing.join(",")
        },
        v["score"].as_i64()?,
        v["model_version"].as_str()?.to_string(),
    ))
}

/// Open loop: `rate` requests per second for `seconds`, whatever the answers do.
async fn single(
    cli: &Cli,
    client: reqwest::Client,
    ids: Arc<Vec<String>>,
    (rate, seconds, max_in_flight): (u64, u64, usize),
    (answers, timeout_ms): (Option<&std::path::Path>, u64),
) -> Result<()> {
    let url = format!("{}/v1/score", cli.base);
    let total = rate * seconds;
    let gate = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Answer>();
    let start = Instant::now() + Duration::from_millis(100);
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        + 100.0;
    let late = Arc::new(AtomicU64::new(0));
    let timeout = Duration::from_millis(timeout_ms);
    for i in 0..total {
        let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
        tokio::time::sleep_until(at.into()).await;
        let customer = ids[i as usize % ids.len()].clone();
        let at_ms = at.duration_since(start).as_secs_f64() * 1e3;
        let Ok(permit) = gate.clone().try_acquire_owned() else {
            let _ = tx.send(Answer {
                at_ms,
                customer,
                status: 999,
                latency_ms: 0.0,
                body: None,
                error: None,
            });
            continue;
        };
        let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
        let body = format!(
            "{{\"customer_id\":\"{customer}\",\"explain\":{}}}",
            !cli.no_explain
        );
        let late = late.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            if sent.duration_since(at) > Duration::from_millis(5) {
                late.fetch_add(1, Ordering::Relaxed);
            }
            let call = async {
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .ok()?;
                let status = r.status().as_u16();
                let v = r.json::<serde_json::Value>().await.ok();
                Some((status, v))
            };
            let (status, v) = match tokio::time::timeout(timeout, call).await {
                Ok(Some((status, v))) => (status, v),
                _ => (0, None),
            };
            let body = if status == 200 {
                v.as_ref().and_then(summary_of)
            } else {
                None
            };
            let error = v
                .as_ref()
                .and_then(|v| v["error"]["code"].as_str().map(String::from));
            let latency_ms = at.elapsed().as_secs_f64() * 1e3;
            let _ = tx.send(Answer {
                at_ms,
                customer,
                status,
                latency_ms,
                body,
                error,
            });
            drop(permit);
        });
    }
    drop(tx);
    let mut all = Vec::with_capacity(total as usize);
    while let Some(a) = rx.recv().await {
        all.push(a);
    }
    let wall = start.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    if let Some(path) = answers {
        let mut out = String::new();
        for a in &all {
            let (rid, degraded, missing, score, model) = match &a.body {
                Some((r, d, m, s, v)) => (r.as_str(), u8::from(*d), m.as_str(), s.to_string(), v.as_str()),
                None => ("-", 0, "-", "-".to_string(), "-"),
            };
            out.push_str(&format!(
                "{:.1} {} {:03} {:.1} {rid} {degraded} {missing} {score} {model} {}\n",
                start_unix_ms + a.at_ms,
                a.customer,
                a.status,
                a.latency_ms,
                a.error.as_deref().unwrap_or("-")
            ));
        }
        std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut lat: Vec<f64> = all
        .iter()
        .filter(|a| (200..300).contains(&a.status))
        .map(|a| a.latency_ms)
        .collect();
    lat.sort_by(f64::total_cmp);
    let mut by_status = std::collections::BTreeMap::<String, u64>::new();
    for a in &all {
        *by_status.entry(format!("{:03}", a.status)).or_default() += 1;
    }
    let degraded = all
        .iter()
        .filter(|a| a.body.as_ref().is_some_and(|b| b.1))
        .count();
    println!(
        "{}",
        serde_json::json!({
            "mode": "single", "explain": !cli.no_explain, "target_rate": rate, "seconds": seconds, "requests": total,
            "ok": lat.len(), "errors": all.len() - lat.len(), "achieved_rate": lat.len() as f64 / wall,
            "late": late.load(Ordering::Relaxed), "by_status": by_status, "degraded": degraded,
            "p50_ms": pct(&lat, 0.5), "p90_ms": pct(&lat, 0.9), "p99_ms": pct(&lat, 0.99),
            "max_ms": lat.last().copied().unwrap_or(f64::NAN),
        })
    );
    Ok(())
}

/// Closed loop: `concurrency` clients send batches of `batch` ids back to back for `seconds`.
async fn batches(
    cli: &Cli,
    client: reqwest::Client,
    ids: Arc<Vec<String>>,
    (batch, concurrency, seconds): (usize, usize, u64),
) {
    let url = format!("{}/v1/score/batch", cli.base);
    let no_explain = cli.no_explain;
    let scored = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url, ids) = (client.clone(), url.clone(), ids.clone());
        let (scored, errors) = (scored.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = w * batch;
            while Instant::now() < deadline {
                let chunk: Vec<&String> = (0..batch).map(|j| &ids[(k + j) % ids.len()]).collect();
                k += batch * concurrency;
                let r = client
                    .post(&url)
                    .json(&serde_json::json!({ "customer_ids": chunk, "explain": !no_explain }))
                    .send()
                    .await;
                let answered = match r {
                    Ok(r) if r.status().is_success() => r.json::<serde_json::Value>().await.ok(),
                    _ => None,
                };
                match answered {
                    Some(v) => {
                        let n = v["results"]
                            .as_array()
                            .map_or(0, |a| a.iter().filter(|i| i["result"].is_object()).count());
                        scored.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = t0.elapsed().as_secs_f64();
    let n = scored.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "mode": "batch", "explain": !cli.no_explain, "batch": batch, "concurrency": concurrency, "seconds": wall,
            "customers_scored": n, "customers_per_second": n as f64 / wall,
            "failed_requests": errors.load(Ordering::Relaxed),
        })
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let ids: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&cli.ids)
            .context("reading ids")?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    );
    anyhow::ensure!(!ids.is_empty(), "no ids");
    // The API key, if the coordinator wants one: TESSERA_API_KEY.
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(key) = std::env::var("TESSERA_API_KEY") {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).context("TESSERA_API_KEY")?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(10))
        .build()?;
    match &cli.mode {
        Mode::Single {
            rate,
            seconds,
            max_in_flight,
            answers,
            timeout_ms,
        } => {
            anyhow::ensure!(*rate > 0, "--rate must be positive");
            let limits = (*rate, *seconds, *max_in_flight);
            single(&cli, client, ids, limits, (answers.as_deref(), *timeout_ms)).await?;
        }
        Mode::Batch {
            batch,
            concurrency,
            seconds,
        } => {
            anyhow::ensure!(
                *batch > 0 && *concurrency > 0,
                "--batch and --concurrency must be positive"
            );
            batches(&cli, client, ids, (*batch, *concurrency, *seconds)).await;
        }
    }
    Ok(())
}
