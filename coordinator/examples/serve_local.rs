//! The serving benchmark's floor: the coordinator's HTTP server and scoring code with the
//! parties in this same process, called directly (no QUIC, no TLS, no second process). Loads
//! the saved model the federation trained, from the same model directories.
//!
//! `serve_local --config coordinator.toml --party bank-a.toml --party bank-b.toml ... --http 127.0.0.1:18091`

use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use tessera_common::federation::InMemory;
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::config::CoordinatorConfig;
use tessera_party::config::PartyConfig;
use tessera_party::service::PartyService;

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    config: std::path::PathBuf,
    #[arg(long)]
    party: Vec<std::path::PathBuf>,
    #[arg(long)]
    http: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    tessera_common::logging::init();
    let cli = Cli::parse();
    let mut config = CoordinatorConfig::load(&cli.config).map_err(anyhow::Error::msg)?;
    config.listen_http = cli.http;
    config.listen_quic = "127.0.0.1:0".parse()?;
    config.audit.path = Some(config.model_dir.join("audit-floor.sqlite"));
    let mut fed = InMemory::new();
    for p in &cli.party {
        let pc = PartyConfig::load(p).map_err(anyhow::Error::msg)?;
        let service = PartyService::from_config(&pc).context("loading party data")?;
        fed.add(pc.party_id.clone(), Arc::new(service));
    }
    let c = Coordinator::start_with_local_parties(config, fed).await?;
    let m = c.activate_saved().await.context("loading the saved model")?;
    tracing::info!(model = %m.model_id, http = %c.http_addr, "in-process floor serving");
    tessera_common::shutdown::wait_for_signal().await;
    c.shutdown().await;
    Ok(())
}
