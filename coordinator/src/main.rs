//! `tessera-coordinator`: serve the scoring API over the federation, or train a model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::config::CoordinatorConfig;
use tracing::{info, warn};

#[derive(Parser)]
#[command(
    name = "tessera-coordinator",
    version,
    about = "Tessera coordinator: parties over QUIC, scoring over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the HTTP API; parties dial in over QUIC.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, env = "TESSERA_COORDINATOR_CONFIG")]
        config: PathBuf,
        /// Train a new model once every party is connected, then serve it.
        #[arg(long)]
        train: bool,
    },
    /// Wait for every party, train a model, save it, and exit.
    Train {
        /// Configuration file (TOML).
        #[arg(long, env = "TESSERA_COORDINATOR_CONFIG")]
        config: PathBuf,
        /// Model id (default: generated from the time).
        #[arg(long)]
        model_id: Option<String>,
    },
}

fn load(path: &std::path::Path) -> Result<CoordinatorConfig> {
    CoordinatorConfig::load(path)
        .map_err(anyhow::Error::msg)
        .context("loading coordinator configuration")
}

fn log_epoch(r: &tessera_coordinator::train::EpochReport) {
    info!(
        epoch = r.epoch,
        of = r.epochs,
        loss = format!("{:.4}", r.train_loss),
        validation_auc = format!("{:.4}", r.validation_auc),
        seconds = format!("{:.2}", r.seconds),
        "epoch done"
    );
}

async fn train_now(c: &Coordinator, model_id: Option<String>) -> Result<()> {
    info!("waiting for every party to connect before training");
    c.wait_for_parties(None).await;
    info!("training");
    let m = c.train(model_id, log_epoch).await.context("training failed")?;
    let x = &m.metrics;
    info!(
        model = %m.model_id,
        holdout_auc = format!("{:.4}", x.holdout_auc),
        holdout_ks = format!("{:.4}", x.holdout_ks),
        validation_auc = format!("{:.4}", x.validation_auc),
        ece = format!("{:.4}", x.holdout_ece),
        customers = x.customers,
        seconds = format!("{:.1}", x.training_seconds),
        "model trained"
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tessera_common::logging::init();
    match Cli::parse().cmd {
        Cmd::Serve { config, train } => {
            let c = Coordinator::start(load(&config)?)
                .await
                .context("starting coordinator")?;
            let work = async {
                if train {
                    train_now(&c, None).await
                } else {
                    match c.activate_saved().await {
                        Ok(m) => info!(model = %m.model_id, "serving saved model"),
                        Err(e) => {
                            warn!(error = %e, "no model to serve; /readyz stays 503 until one is trained")
                        }
                    }
                    Ok(())
                }
            };
            tokio::select! {
                r = work => {
                    r?;
                    tessera_common::shutdown::wait_for_signal().await;
                }
                _ = tessera_common::shutdown::wait_for_signal() => {}
            }
            info!("shutting down");
            c.shutdown().await;
        }
        Cmd::Train { config, model_id } => {
            let c = Coordinator::start(load(&config)?)
                .await
                .context("starting coordinator")?;
            tokio::select! {
                r = train_now(&c, model_id) => r?,
                _ = tessera_common::shutdown::wait_for_signal() => info!("interrupted"),
            }
            c.shutdown().await;
        }
    }
    Ok(())
}
