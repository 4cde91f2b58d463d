//! `tessera-coordinator`: serve the scoring API over the federation, or train a model.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::auth::{KeysFile, Scope, keys};
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
        /// Configuration file (TOML). Optional: every key can also be set by a
        /// `TESSERA_COORDINATOR__<KEY>` environment variable (`__` between nested keys).
        #[arg(long, env = "TESSERA_COORDINATOR_CONFIG")]
        config: Option<PathBuf>,
        /// Train a new model once every party is connected, then serve it.
        #[arg(long, conflicts_with = "train_if_none")]
        train: bool,
        /// Serve the saved model; train one first (once every party is connected) only if
        /// none is saved. A restart does not retrain.
        #[arg(long, env = "TESSERA_TRAIN_IF_NONE")]
        train_if_none: bool,
    },
    /// Check the configuration (file and environment) and exit: 0 if it can be used, 1 with
    /// the problem otherwise. Starts nothing and opens no socket.
    CheckConfig {
        /// Configuration file (TOML); keys can also come from the environment, as for `serve`.
        #[arg(long, env = "TESSERA_COORDINATOR_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage the HTTP API's clients: add one (its key is printed once), revoke one, list
    /// them. A running coordinator picks the change up within seconds.
    ApiKey {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Wait for every party, train a model, save it, and exit. Exits non-zero if training
    /// fails or is interrupted (no model is saved then).
    Train {
        /// Configuration file (TOML); keys can also come from the environment, as for `serve`.
        #[arg(long, env = "TESSERA_COORDINATOR_CONFIG")]
        config: Option<PathBuf>,
        /// Model id (default: generated from the time).
        #[arg(long)]
        model_id: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Add a client with a fresh key; prints the key (only its hash is stored) to stdout.
    Add {
        /// The keys file (created if missing; owner-only permissions).
        #[arg(long)]
        keys_file: PathBuf,
        /// The client's name, recorded in every audit row it causes.
        #[arg(long)]
        name: String,
        /// Comma-separated: score, decisions, admin.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<Scope>,
        /// Sustained calls per second (a batch counts each customer).
        #[arg(long, default_value_t = keys::DEFAULT_RATE)]
        rate: u32,
        /// Burst above the rate; must cover the client's largest batch.
        #[arg(long, default_value_t = keys::DEFAULT_BURST)]
        burst: u32,
        /// The key stops working this many days from now (default: until revoked).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        /// If a client of this name exists, keep it: change nothing and exit 0 (for a
        /// one-shot run on every start, e.g. in docker compose).
        #[arg(long)]
        if_absent: bool,
        /// Also write the new key to this file (owner-only, atomically), before the keys
        /// file names the client.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Also print (to stderr) a ready-to-paste curl scoring `--sample-customer` with the
        /// new key against this API base URL, e.g. http://127.0.0.1:8080.
        #[arg(long, value_name = "BASE_URL")]
        show_curl: Option<String>,
        /// The customer id of `--show-curl`'s example.
        #[arg(long, default_value = "25115", requires = "show_curl")]
        sample_customer: String,
    },
    /// Remove a client: its key is refused once the coordinator reloads the file.
    Revoke {
        /// The keys file.
        #[arg(long)]
        keys_file: PathBuf,
        /// The client's name.
        #[arg(long)]
        name: String,
    },
    /// List the clients (names, scopes, rates; never keys).
    List {
        /// The keys file.
        #[arg(long)]
        keys_file: PathBuf,
    },
}

fn api_key(action: KeyAction) -> Result<()> {
    match action {
        KeyAction::Add {
            keys_file,
            name,
            scopes,
            rate,
            burst,
            expires_in_days,
            if_absent,
            token_file,
            show_curl,
            sample_customer,
        } => {
            let mut file = if keys_file.exists() {
                KeysFile::load(&keys_file)?
            } else {
                KeysFile::default()
            };
            if if_absent && file.clients.iter().any(|c| c.name == name) {
                eprintln!(
                    "client {name} is already in {}: kept (no new key)",
                    keys_file.display()
                );
                return Ok(());
            }
            let token = file.add(&name, scopes, rate, burst)?;
            if let Some(days) = expires_in_days {
                let at = file.set_expiry(&name, tessera_common::transport::unix_now(), days)?;
                eprintln!("the key of {name} expires at {at}");
            }
            if let Some(p) = &token_file {
                tessera_common::fs::write_atomic(p, format!("{token}\n").as_bytes(), true)
                    .with_context(|| format!("writing the key to {}", p.display()))?;
            }
            file.save(&keys_file)?;
            eprintln!(
                "added client {name} to {}; its key (shown once, only its hash is stored):",
                keys_file.display()
            );
            println!("{token}");
            if let Some(base) = show_curl {
                eprintln!(
                    "try: curl -s -X POST {}/v1/score -H 'authorization: Bearer {token}' -H 'content-type: application/json' -d '{{\"customer_id\": \"{sample_customer}\"}}'",
                    base.trim_end_matches('/')
                );
            }
        }
        KeyAction::Revoke { keys_file, name } => {
            let mut file = KeysFile::load(&keys_file)?;
            if !file.revoke(&name) {
                anyhow::bail!("no client named {name} in {}", keys_file.display());
            }
            file.save(&keys_file)?;
            eprintln!("revoked client {name} in {}", keys_file.display());
        }
        KeyAction::List { keys_file } => {
            let file = KeysFile::load(&keys_file)?;
            for c in &file.clients {
                let scopes: Vec<&str> = c.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{}\tscopes={}\trate={}/s\tburst={}\texpires={}",
                    c.name,
                    scopes.join(","),
                    c.rate_per_second,
                    c.burst,
                    c.expires_at.as_deref().unwrap_or("never")
                );
            }
        }
    }
    Ok(())
}

fn load(path: Option<&std::path::Path>) -> Result<CoordinatorConfig> {
    CoordinatorConfig::load_with_env(path).context("loading coordinator configuration")
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
    // A progress bar per epoch on a terminal; plain log lines otherwise (files, containers).
    let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] epoch {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_prefix("training");
        bar
    });
    let on_epoch = |r: &tessera_coordinator::train::EpochReport| match &bar {
        Some(bar) => {
            bar.set_length(r.epochs as u64);
            bar.set_position(r.epoch as u64);
            bar.set_message(format!(
                "loss {:.4}  validation AUC {:.4}  ({:.2} s)",
                r.train_loss, r.validation_auc, r.seconds
            ));
        }
        None => log_epoch(r),
    };
    let trained = c.train(model_id, on_epoch).await;
    if let Some(bar) = &bar {
        bar.abandon();
    }
    let m = trained.context("training failed")?;
    let x = &m.metrics;
    info!(
        model = %m.model_id,
        holdout_auc = format!("{:.4}", x.holdout_auc),
        holdout_ks = format!("{:.4}", x.holdout_ks),
        validation_auc = format!("{:.4}", x.validation_auc),
        ece = format!("{:.4}", x.holdout_ece),
        customers = x.customers,
        in_every_party = x.customers_in_every_party,
        seconds = format!("{:.1}", x.training_seconds),
        alignment_seconds = format!("{:.1}", x.alignment_seconds),
        "model trained"
    );
    let fmt = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.4}"));
    info!(
        complete = fmt(x.holdout_auc_complete),
        partial = fmt(x.holdout_auc_partial),
        partial_rows = x.holdout_rows_partial,
        "holdout AUC on customers known to every party / not"
    );
    for (party, auc) in &x.holdout_auc_party_absent {
        info!(party = %party, holdout_auc = format!("{auc:.4}"), "holdout AUC with this party absent");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tessera_common::logging::init();
    match Cli::parse().cmd {
        Cmd::Serve {
            config,
            train,
            train_if_none,
        } => {
            let c = Coordinator::start(load(config.as_deref())?)
                .await
                .context("starting coordinator")?;
            let work = async {
                if train {
                    return train_now(&c, None).await;
                }
                match c.activate_saved().await {
                    Ok(m) => info!(model = %m.model_id, "serving saved model"),
                    Err(e) if train_if_none => {
                        info!(reason = %e, "no saved model: training one");
                        train_now(&c, None).await?;
                    }
                    Err(e) => {
                        warn!(error = %e, "no model to serve; /readyz stays 503 until one is trained")
                    }
                }
                Ok(())
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
            let c = Coordinator::start(load(config.as_deref())?)
                .await
                .context("starting coordinator")?;
            let outcome = tokio::select! {
                r = train_now(&c, model_id) => r,
                _ = tessera_common::shutdown::wait_for_signal() => {
                    Err(anyhow::anyhow!("interrupted before training finished: no model was saved"))
                }
            };
            c.shutdown().await;
            outcome?;
        }
        Cmd::ApiKey { action } => api_key(action)?,
        Cmd::CheckConfig { config } => {
            let c = load(config.as_deref())?;
            let clients = match &c.auth.keys_file {
                Some(path) if c.auth.mode == tessera_coordinator::auth::AuthMode::Keys => {
                    format!("{} API clients", KeysFile::load(path)?.clients.len())
                }
                _ => "API authentication OFF".to_string(),
            };
            println!(
                "configuration OK: {} parties ({}), QUIC {}, HTTP {}, models in {}, {clients}",
                c.parties.len(),
                c.parties
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                c.listen_quic,
                c.listen_http,
                c.model_dir.display()
            );
        }
    }
    Ok(())
}
