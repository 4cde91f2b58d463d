//! `tessera-party`: run one bank's party.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
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
    #[arg(long, env = "TESSERA_PARTY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    tessera_common::logging::init();
    let cli = Cli::parse();
    let config = PartyConfig::load_with_env(cli.config.as_deref())
        .map_err(anyhow::Error::msg)
        .context("loading party configuration")?;
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
    let task = tokio::spawn(run(config, service, shutdown, state, metrics));
    tessera_common::shutdown::wait_for_signal().await;
    info!("shutting down");
    trigger.trigger();
    task.await
        .context("party task panicked")?
        .context("party failed")?;
    Ok(())
}
