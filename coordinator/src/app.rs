//! Wiring: the QUIC listener, the HTTP server, model activation and training, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tessera_common::federation::InMemory;
use tessera_common::shutdown::{self, ShutdownTrigger};
use tessera_common::transport::{self, CloseReason, Link, Listener, TlsMaterial, TlsPaths};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::artifact::{self, Manifest};
use crate::config::CoordinatorConfig;
use crate::http::{self, AppState};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::serving::{ActiveModel, Serving};
use crate::train::{self, EpochReport};

/// Errors of the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Transport setup failed (TLS material, QUIC socket).
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// The HTTP socket could not be bound.
    #[error("cannot bind HTTP on {0}: {1}")]
    HttpBind(SocketAddr, std::io::Error),
    /// Model files.
    #[error(transparent)]
    Artifact(#[from] artifact::ArtifactError),
    /// Training failed.
    #[error(transparent)]
    Train(#[from] train::TrainError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// The API keys file could not be used.
    #[error(transparent)]
    Keys(#[from] crate::auth::KeysError),
}

/// How often the API keys file is checked for changes.
const KEYS_POLL: Duration = Duration::from_secs(2);

/// Serves `app` on `listener` until `shutdown` ([`http::server::serve`]).
fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: &crate::config::HttpSettings,
    metrics: &Metrics,
    shutdown: shutdown::Shutdown,
) -> tokio::task::JoinHandle<()> {
    let refused = metrics.http_connections_refused.clone();
    tokio::spawn(http::server::serve(
        listener,
        app,
        limits.clone(),
        refused,
        shutdown,
    ))
}

/// A running coordinator.
pub struct Coordinator {
    /// The bound QUIC address.
    pub quic_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// The bound address of the separate `/metrics` listener, if `listen_metrics` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// Scoring state.
    pub serving: Arc<Serving>,
    config: CoordinatorConfig,
    listener: Listener,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
}

/// How often `CURRENT` is checked for a model activated elsewhere.
const CURRENT_POLL: Duration = Duration::from_secs(2);

/// Follows `model_dir/CURRENT` (unless `model_id` pins the model): when it names a saved model
/// other than the active one (activated through another replica sharing the model directory,
/// or by hand), that model is activated here too, as an API activation would
/// ([`Serving::switch`]: every bank loads it first; refused, and retried at the next change,
/// when too few can). Only models already active here are followed: before the first
/// activation, start-up decides.
async fn follow_current(
    config: CoordinatorConfig,
    serving: Arc<Serving>,
    mut shutdown: tessera_common::shutdown::Shutdown,
) {
    if config.model_id.is_some() {
        return;
    }
    let mut last_seen: Option<String> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CURRENT_POLL) => {}
            _ = shutdown.recv() => return,
        }
        let Some(active) = serving.active().map(|m| m.manifest.model_id.clone()) else {
            continue;
        };
        let Ok(current) = artifact::current(&config.model_dir) else {
            continue;
        };
        if current == active || last_seen.as_deref() == Some(current.as_str()) {
            last_seen = Some(current);
            continue;
        }
        last_seen = Some(current.clone());
        let (dir, id, parties) = (config.model_dir.clone(), current.clone(), config.parties.clone());
        let loaded = tokio::task::spawn_blocking(move || artifact::load(&dir, &id, &parties)).await;
        match loaded {
            Ok(Ok((manifest, top))) => match serving.switch(ActiveModel { manifest, top }).await {
                Ok(()) => info!(model = %current, "activated the model CURRENT names (changed elsewhere)"),
                Err(e) => {
                    warn!(model = %current, error = %e, "CURRENT names a model that cannot be activated here")
                }
            },
            Ok(Err(e)) => warn!(model = %current, error = %e, "CURRENT names a model that cannot be loaded"),
            Err(_) => warn!(model = %current, "loading the model CURRENT names failed"),
        }
    }
}

/// Keeps TLS current without a restart: applies new certificates, keys, roots and CRLs to new
/// handshakes, and every reload interval closes connections of parties whose certificate is
/// now revoked or expired, and warns about certificates close to expiry.
async fn reload_tls(
    config: CoordinatorConfig,
    initial_revoked: std::collections::HashSet<String>,
    listener: Listener,
    serving: Arc<Serving>,
    own_cert: Arc<std::sync::RwLock<Option<transport::CertInfo>>>,
    mut shutdown: shutdown::Shutdown,
) {
    let revoked = Arc::new(std::sync::RwLock::new(initial_revoked));
    let paths = TlsPaths::in_dir(&config.tls_dir);
    let interval = config.transport.reload_interval();
    let watcher = {
        let (revoked, own_cert) = (revoked.clone(), own_cert.clone());
        let warn_days = config.transport.cert_warn_days;
        transport::reload::watch(paths, interval, shutdown.clone(), move |m| {
            match listener.reconfigure(&m, &config.transport) {
                Ok(()) => {
                    transport::warn_if_expiring("coordinator", &m.leaf_info, warn_days);
                    if let Ok(mut g) = own_cert.write() {
                        *g = Some(m.leaf_info.clone());
                    }
                    if let Ok(mut g) = revoked.write() {
                        *g = m.revoked_serials();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "new TLS material rejected; keeping the current one"),
            }
        })
    };
    let sweeper = async {
        let mut warned = std::collections::HashMap::<String, tokio::time::Instant>::new();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.recv() => return,
            }
            let set = revoked.read().map(|g| g.clone()).unwrap_or_default();
            for party in serving
                .registry()
                .close_untrusted(&set, tessera_common::transport::unix_now())
            {
                tracing::warn!(party = %party, "closed connection: certificate revoked or expired");
            }
            for (party, cert) in serving.registry().peer_certificates() {
                let due = warned
                    .get(&cert.serial)
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(3600));
                if due {
                    transport::warn_if_expiring(
                        party.as_str(),
                        &cert,
                        serving.registry().settings().cert_warn_days,
                    );
                    warned.insert(cert.serial.clone(), tokio::time::Instant::now());
                }
            }
        }
    };
    tokio::join!(watcher, sweeper);
}

/// A fresh model id: `m-<UTC date and time>-<random>`.
pub fn new_model_id() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "m-{:04}{:02}{:02}-{:02}{:02}{:02}-{:04x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        rand::random::<u16>()
    )
}

impl Coordinator {
    /// Binds the QUIC and HTTP sockets and starts serving (no model yet).
    ///
    /// # Errors
    /// TLS material, bind and metrics errors.
    pub async fn start(config: CoordinatorConfig) -> Result<Self, Error> {
        Self::start_inner(config, None).await
    }

    /// As [`Coordinator::start`], but every party of `parties` is registered at once over an
    /// in-memory link ([`Link::in_memory`]) instead of connecting over QUIC: the same HTTP
    /// server, registry, model loading and scoring code with the network removed (the serving
    /// benchmark's floor). Load a saved model with [`Coordinator::activate_saved`].
    ///
    /// # Errors
    /// As [`Coordinator::start`].
    pub async fn start_with_local_parties(
        config: CoordinatorConfig,
        parties: InMemory,
    ) -> Result<Self, Error> {
        Self::start_inner(config, Some(parties)).await
    }

    async fn start_inner(config: CoordinatorConfig, local: Option<InMemory>) -> Result<Self, Error> {
        let metrics = Metrics::new()?;
        for p in &config.parties {
            metrics.party_connected.with_label_values(&[p.as_str()]).set(0);
        }
        let material = TlsMaterial::load(&TlsPaths::in_dir(&config.tls_dir))?;
        let listener = Listener::bind(config.listen_quic, &material, &config.transport)?;
        let quic_addr = listener.local_addr()?;
        let registry = Registry::new(config.transport.clone(), metrics.clone());
        for (party, handler) in local.iter().flat_map(InMemory::handlers) {
            registry.insert(
                party.clone(),
                Link::in_memory(handler.clone()),
                Vec::new(),
                None,
                0,
            );
        }
        let serving = Serving::new(
            registry,
            config.parties.clone(),
            config.score.clone(),
            config.scoring.min_parties,
            config.scoring.interval_samples,
        );
        let serving = Arc::new(serving);
        serving.start_batching(config.scoring.pipelines);
        let (trigger, shutdown) = shutdown::channel();

        let http_listener = tokio::net::TcpListener::bind(config.listen_http)
            .await
            .map_err(|e| Error::HttpBind(config.listen_http, e))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| Error::HttpBind(config.listen_http, e))?;
        let own_cert = Arc::new(std::sync::RwLock::new(Some(material.leaf_info.clone())));
        transport::warn_if_expiring(
            "coordinator",
            &material.leaf_info,
            config.transport.cert_warn_days,
        );
        let (audit, audit_task) = if config.audit.enabled {
            let (a, t) = crate::audit::Audit::open(
                &config.audit,
                config.model_dir.join("audit.sqlite"),
                metrics.clone(),
            )
            .await?;
            (Some(a), Some(t))
        } else {
            (None, None)
        };
        let auth = crate::auth::Authenticator::from_settings(&config.auth)?;
        let metrics_listener = match config.listen_metrics {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| Error::HttpBind(addr, e))?,
            ),
            None => None,
        };
        let metrics_addr = match &metrics_listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| Error::HttpBind(config.listen_http, e))?,
            ),
            None => None,
        };
        let state = AppState {
            serving: serving.clone(),
            metrics: metrics.clone(),
            scoring_slots: Arc::new(Semaphore::new(config.http.max_concurrent)),
            own_cert: own_cert.clone(),
            audit,
            scoring: config.scoring.clone(),
            auth: auth.clone(),
            monitor: Arc::new(crate::monitor::Monitor::new(metrics.clone())),
            sessions: Arc::new(crate::auth::session::Sessions::default()),
            model_dir: config.model_dir.clone(),
            lifecycle: Arc::new(tokio::sync::Mutex::new(())),
        };
        let metrics_task = metrics_listener.map(|l| {
            serve_http(
                l,
                http::metrics_router(state.clone()),
                &config.http,
                &metrics,
                shutdown.clone(),
            )
        });
        let app = http::router(state, &config.http, config.listen_metrics.is_none());
        let http_task = serve_http(http_listener, app, &config.http, &metrics, shutdown.clone());
        let keys_task = tokio::spawn(auth.watch(config.auth.clone(), KEYS_POLL, shutdown.clone()));
        let reload_task = tokio::spawn(reload_tls(
            config.clone(),
            material.revoked_serials(),
            listener.clone(),
            serving.clone(),
            own_cert,
            shutdown.clone(),
        ));
        let current_task = tokio::spawn(follow_current(config.clone(), serving.clone(), shutdown.clone()));
        let listener_task = tokio::spawn(crate::listener::run(listener.clone(), serving.clone(), shutdown));
        info!(%quic_addr, %http_addr, parties = config.parties.len(), "coordinator listening");
        Ok(Self {
            quic_addr,
            http_addr,
            metrics_addr,
            serving,
            config,
            listener,
            trigger,
            // The audit writer ends (queue drained) once the HTTP server has dropped its handle.
            tasks: [http_task, listener_task, reload_task, keys_task, current_task]
                .into_iter()
                .chain(metrics_task)
                .chain(audit_task)
                .collect(),
        })
    }

    /// Waits until every configured party is connected, or `timeout` passes.
    ///
    /// # Returns
    /// Whether all are connected.
    pub async fn wait_for_parties(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut last_log = tokio::time::Instant::now();
        loop {
            let missing: Vec<String> = self
                .config
                .parties
                .iter()
                .filter(|p| !self.serving.registry().is_connected(p))
                .map(|p| p.to_string())
                .collect();
            if missing.is_empty() {
                return true;
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return false;
            }
            if last_log.elapsed() >= Duration::from_secs(5) {
                info!(missing = %missing.join(", "), "waiting for parties");
                last_log = tokio::time::Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Trains a new model over the connected parties, saves it, and activates it.
    ///
    /// # Errors
    /// Training and artifact errors.
    pub async fn train(
        &self,
        model_id: Option<String>,
        mut on_epoch: impl FnMut(&EpochReport),
    ) -> Result<Manifest, Error> {
        let model_id = model_id.unwrap_or_else(new_model_id);
        if !tessera_common::wire::valid_model_id(&model_id) {
            return Err(artifact::ArtifactError::InvalidId(model_id).into());
        }
        let trained = train::train(
            self.serving.registry(),
            &self.config.parties,
            &self.config.training,
            &model_id,
            self.config.transport.training_timeout(),
            |report: &EpochReport| {
                let metrics = self.serving.registry().metrics();
                for &s in &report.step_seconds {
                    metrics.training_step.observe(s);
                }
                metrics.training_epochs.inc();
                on_epoch(report);
            },
        )
        .await?;
        artifact::save(&self.config.model_dir, &trained.manifest, &trained.top)?;
        crate::report::write(
            &self.config.model_dir.join(&model_id),
            &trained.manifest,
            &trained.holdout,
            &self.config.score,
        )?;
        let manifest = trained.manifest.clone();
        self.serving
            .activate(ActiveModel {
                manifest: trained.manifest,
                top: trained.top,
            })
            .await;
        Ok(manifest)
    }

    /// Loads a saved model (the configured one, else the newest) and activates it.
    ///
    /// # Errors
    /// [`artifact::ArtifactError`] if there is none, it is unreadable, or its parties are not
    /// the configured ones.
    pub async fn activate_saved(&self) -> Result<Manifest, Error> {
        let id = match &self.config.model_id {
            Some(id) => id.clone(),
            None => artifact::current(&self.config.model_dir)?,
        };
        let (manifest, top) = artifact::load(&self.config.model_dir, &id, &self.config.parties)?;
        self.serving
            .activate(ActiveModel {
                manifest: manifest.clone(),
                top,
            })
            .await;
        Ok(manifest)
    }

    /// Stops accepting, closes party connections, and waits for the servers to finish.
    pub async fn shutdown(self) {
        self.trigger.trigger();
        self.serving.registry().close_all();
        self.listener.close(CloseReason::Shutdown);
        for t in self.tasks {
            let _ = t.await;
        }
        // Closed connections drain for 3 PTOs before the endpoint releases its socket.
        self.listener.wait_idle(Duration::from_secs(5)).await;
        info!("coordinator stopped");
    }
}
