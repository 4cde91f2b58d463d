//! Federated training over loopback QUIC (mutual TLS, one coordinator and one party per file,
//! each party on its own connection) against the same training in one process on the same
//! data, in the same run, and prints both wall times and their ratio. The first file is the
//! label holder (label column `y`). A fixed number of epochs (no early stop) keeps the two
//! runs doing the same work.
//!
//! `cargo run --release -p tessera-coordinator --example bench_training -- LABELS.csv OTHER.csv... [epochs=N] [key=value ...]`
//! (`key=value` are `[training]` settings). Used by `scripts/bench-training`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tessera_certs::leaf::{self, LeafRequest};
use tessera_certs::pki::{self, InitOptions, PkiDir};
use tessera_certs::{Identity, PartyId};
use tessera_common::config::TransportSettings;
use tessera_common::data::{FeatureTable, LoadOptions};
use tessera_common::federation::InMemory;
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::artifact::TrainingMetrics;
use tessera_coordinator::config::{CoordinatorConfig, TrainingConfig};
use tessera_party::config::{DataConfig, PartyConfig, PartyLimits};
use tessera_party::run::LinkState;
use tessera_party::service::PartyService;

fn load(path: &str, labels: bool) -> Result<FeatureTable> {
    let opts = LoadOptions {
        label_column: labels.then(|| "y".to_string()),
        ..Default::default()
    };
    FeatureTable::load(path.as_ref(), &opts).with_context(|| format!("loading {path}"))
}

/// Trains over QUIC on loopback: a coordinator and one party process-task per file, each with
/// its own certificate; returns the figures the training driver measured.
async fn federated(
    dir: &std::path::Path,
    files: &[&String],
    names: &[PartyId],
    cfg: &TrainingConfig,
    transport: &TransportSettings,
) -> Result<TrainingMetrics> {
    let ca = PkiDir::new(dir.join("ca"));
    pki::init(
        &ca,
        &InitOptions {
            federation: "tessera".into(),
            key_type: Default::default(),
            root_days: 30,
            intermediate_days: 30,
            force: false,
        },
    )?;
    let ctls = dir.join("tls-coordinator");
    leaf::issue(
        &ca,
        &LeafRequest::new("tessera", Identity::Coordinator),
        &ctls,
        true,
    )?;
    let ccfg = CoordinatorConfig {
        listen_quic: "127.0.0.1:0".parse()?,
        listen_http: "127.0.0.1:0".parse()?,
        tls_dir: ctls,
        model_dir: dir.join("models-coordinator"),
        parties: names.to_vec(),
        model_id: None,
        http: Default::default(),
        score: Default::default(),
        scoring: Default::default(),
        training: cfg.clone(),
        transport: transport.clone(),
        audit: Default::default(),
        // Training only: no API calls are made.
        auth: tessera_coordinator::auth::AuthSettings {
            mode: tessera_coordinator::auth::AuthMode::None,
            keys_file: None,
        },
        listen_metrics: None,
    };
    ccfg.validate().map_err(anyhow::Error::msg)?;
    let coordinator = Coordinator::start(ccfg).await?;
    let mut stops = Vec::new();
    for (i, (file, name)) in files.iter().zip(names).enumerate() {
        let tls = dir.join(format!("tls-{name}"));
        leaf::issue(
            &ca,
            &LeafRequest::new("tessera", Identity::Party(name.clone())),
            &tls,
            true,
        )?;
        let pcfg = PartyConfig {
            party_id: name.clone(),
            coordinator_addr: coordinator.quic_addr.to_string(),
            coordinator_discovery: Default::default(),
            coordinator_name: "localhost".into(),
            tls_dir: tls,
            model_dir: dir.join(format!("models-{name}")),
            data: DataConfig {
                path: file.into(),
                id_column: "id".into(),
                label_column: (i == 0).then(|| "y".to_string()),
                max_rows: 5_000_000,
                limit: None,
            },
            metrics_addr: None,
            limits: PartyLimits::default(),
            transport: transport.clone(),
            reasons: Vec::new(),
            training: tessera_party::policy::TrainingPolicy::allow(),
        };
        let service = Arc::new(PartyService::from_config(&pcfg)?);
        let (trigger, sd) = tessera_common::shutdown::channel();
        let (tx, _rx) = tokio::sync::watch::channel(LinkState::Disconnected);
        let metrics = tessera_party::metrics::PartyMetrics::new()?;
        let task = tokio::spawn(tessera_party::run::run(pcfg, service, sd, tx, metrics));
        stops.push((trigger, task));
    }
    anyhow::ensure!(
        coordinator.wait_for_parties(Some(Duration::from_secs(30))).await,
        "parties did not connect"
    );
    let fed = coordinator.train(Some("bench-federated".into()), |_| {}).await?;
    for (trigger, task) in stops {
        trigger.trigger();
        let _ = task.await;
    }
    coordinator.shutdown().await;
    Ok(fed.metrics)
}

/// The same training with the same parties called directly in one process.
async fn in_process(
    dir: &std::path::Path,
    files: &[&String],
    names: &[PartyId],
    cfg: &TrainingConfig,
    transport: &TransportSettings,
) -> Result<TrainingMetrics> {
    let mut local = InMemory::new();
    for (i, (file, name)) in files.iter().zip(names).enumerate() {
        local.add(
            name.clone(),
            Arc::new(
                PartyService::new(
                    name.clone(),
                    load(file, i == 0)?,
                    dir.join("models-local"),
                    PartyLimits::default(),
                )
                .with_policy(tessera_party::policy::TrainingPolicy::allow()),
            ),
        );
    }
    let loc = tessera_coordinator::train::train(
        &local,
        names,
        cfg,
        "bench-local",
        transport.training_timeout(),
        |_| {},
    )
    .await?;
    Ok(loc.manifest.metrics)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (files, settings): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| !a.contains('='));
    anyhow::ensure!(
        !files.is_empty(),
        "usage: bench_training LABELS.csv OTHER.csv... [key=value ...]"
    );
    let mut cfg: TrainingConfig =
        toml::from_str(&settings.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"))?;
    if !settings.iter().any(|s| s.starts_with("epochs=")) {
        cfg.epochs = 20;
    }
    cfg.patience = cfg.epochs; // same number of epochs in both runs
    let names: Vec<PartyId> = (0..files.len())
        .map(|i| PartyId::new(format!("bank-{i}")))
        .collect::<Result<_, _>>()?;
    let dir = tempfile::tempdir()?;
    let transport = TransportSettings::default();
    let f = federated(dir.path(), &files, &names, &cfg, &transport).await?;
    let l = in_process(dir.path(), &files, &names, &cfg, &transport).await?;
    // Both runs are timed inside the training driver (alignment to final figures).
    let (fed_secs, loc_secs) = (f.training_seconds, l.training_seconds);
    println!(
        "parties {}, customers {}, epochs {} / {}",
        names.len(),
        f.customers,
        f.epochs_run,
        l.epochs_run
    );
    println!(
        "federated (QUIC loopback): {fed_secs:.2} s (alignment {:.2} s, training {:.2} s), holdout AUC {:.4}",
        f.alignment_seconds,
        fed_secs - f.alignment_seconds,
        f.holdout_auc
    );
    println!(
        "in one process:            {loc_secs:.2} s (alignment {:.2} s, training {:.2} s), holdout AUC {:.4}",
        l.alignment_seconds,
        loc_secs - l.alignment_seconds,
        l.holdout_auc
    );
    println!(
        "ratio federated / in-process: {:.2}x overall, {:.2}x excluding alignment",
        fed_secs / loc_secs,
        (fed_secs - f.alignment_seconds) / (loc_secs - l.alignment_seconds)
    );
    Ok(())
}
