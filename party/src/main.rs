//! `tessera-party`: run one bank's party.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tessera_party::config::PartyConfig;
use tessera_party::run::{LinkState, run};
use tessera_party::service::PartyService;
use tracing::info;

#[derive(Parser)]
#[command(
    name = "tessera-party",
    version,
    about = "Tessera party: one bank's features and bottom model"
)]
struct Cli {
    /// Configuration file (TOML). Optional: every key can also be set by a
    /// `TESSERA_PARTY__<KEY>` environment variable (`__` between nested keys).
    #[arg(long, env = "TESSERA_PARTY_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the configuration (file and environment) and exit: 0 if it can be used, 1 with
    /// the problem otherwise. Loads no data and opens no socket.
    CheckConfig,
}

#[tokio::main]
async fn main() -> Result<()> {
    tessera_common::logging::init();
    let cli = Cli::parse();
    let config = PartyConfig::load_with_env(cli.config.as_deref()).context("loading party configuration")?;
    if let Some(Cmd::CheckConfig) = cli.cmd {
        println!(
            "configuration OK: party {}, coordinator {} ({}), data {}, models in {}",
            config.party_id,
            config.coordinator_addr,
            config.coordinator_name,
            config.data.path.display(),
            config.model_dir.display()
        );
        return Ok(());
    }
    let service = PartyService::from_config(&config).context("loading party data")?;
    info!(party = %config.party_id, rows = service.rows(), features = service.n_features(), labels = service.has_labels(), "data loaded");
    let service = Arc::new(service);
    let (trigger, shutdown) = tessera_common::shutdown::channel();
    let (state, _) = tokio::sync::watch::channel(LinkState::Disconnected);
    let metrics = tessera_party::metrics::PartyMetrics::new().context("creating metrics")?;
    if let Some(addr) = config.metrics_addr {
        let (m, id, sd) = (metrics.clone(), config.party_id.to_string(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = tessera_party::metrics::serve(addr, m, id, sd).await {
                tracing::error!(%addr, error = %e, "metrics listener failed");
            }
        });
        info!(%addr, "serving /metrics and /healthz");
    }
    let mut task = tokio::spawn(run(config, service, shutdown, state, metrics));
    // The driver ends by itself only on a setup error (unusable TLS material, no socket):
    // exit non-zero at once instead of idling with a healthy-looking /healthz.
    let ended = tokio::select! {
        r = &mut task => Some(r),
        _ = tessera_common::shutdown::wait_for_signal() => None,
    };
    let result = match ended {
        Some(r) => r,
        None => {
            info!("shutting down");
            trigger.trigger();
            task.await
        }
    };
    result.context("party task panicked")?.context("party failed")?;
    Ok(())
}
