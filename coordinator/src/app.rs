//! Wiring: the QUIC listener, the HTTP server, model activation and training, and shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use tessera_common::shutdown::{self, ShutdownTrigger};
use tessera_common::transport::{self, TlsMaterial, TlsPaths, close_code};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::info;

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
}

/// A running coordinator.
pub struct Coordinator {
    /// The bound QUIC address.
    pub quic_addr: SocketAddr,
    /// The bound HTTP address.
    pub http_addr: SocketAddr,
    /// Scoring state.
    pub serving: Arc<Serving>,
    config: CoordinatorConfig,
    endpoint: Endpoint,
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
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
        let metrics = Metrics::new()?;
        for p in &config.parties {
            metrics.party_connected.with_label_values(&[p.as_str()]).set(0);
        }
        let material = TlsMaterial::load(&TlsPaths::in_dir(&config.tls_dir))?;
        let endpoint = transport::listen(config.listen_quic, &material, &config.transport)?;
        let quic_addr = endpoint
            .local_addr()
            .map_err(|e| transport::TransportError::Bind {
                addr: config.listen_quic,
                source: e,
            })?;
        let registry = Registry::new(config.transport.clone(), metrics.clone());
        let serving = Arc::new(Serving::new(
            registry,
            config.parties.clone(),
            config.score.clone(),
        ));
        let (trigger, shutdown) = shutdown::channel();

        let http_listener = tokio::net::TcpListener::bind(config.listen_http)
            .await
            .map_err(|e| Error::HttpBind(config.listen_http, e))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| Error::HttpBind(config.listen_http, e))?;
        let state = AppState {
            serving: serving.clone(),
            metrics: metrics.clone(),
            scoring_slots: Arc::new(Semaphore::new(config.http.max_concurrent)),
        };
        let app = http::router(state, &config.http);
        let mut http_shutdown = shutdown.clone();
        let http_task = tokio::spawn(async move {
            let served = axum::serve(http_listener, app)
                .with_graceful_shutdown(async move { http_shutdown.recv().await })
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        let listener_task = tokio::spawn(crate::listener::run(endpoint.clone(), serving.clone(), shutdown));
        info!(%quic_addr, %http_addr, parties = config.parties.len(), "coordinator listening");
        Ok(Self {
            quic_addr,
            http_addr,
            serving,
            config,
            endpoint,
            trigger,
            tasks: vec![http_task, listener_task],
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
        on_epoch: impl FnMut(&EpochReport),
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
            on_epoch,
        )
        .await?;
        artifact::save(&self.config.model_dir, &trained.manifest, &trained.top)?;
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
        self.endpoint.close(
            VarInt::from_u32(close_code::SHUTDOWN),
            b"coordinator shutting down",
        );
        for t in self.tasks {
            let _ = t.await;
        }
        // Closed connections drain for 3 PTOs before the endpoint releases its socket.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.endpoint.wait_idle()).await;
        info!("coordinator stopped");
    }
}
