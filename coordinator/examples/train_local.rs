//! Trains the split-NN in one process (no network) on party CSV slices and prints the figures
//! (the manifest's metrics as JSON). The first file is the label holder (column `y`).
//! `cargo run --release -p tessera-coordinator --example train_local -- LABELS.csv OTHER.csv... [key=value ...]`
//! (`key=value` are `[training]` settings in TOML syntax). Used by `scripts/model-eval`.

use std::sync::Arc;
use std::time::Duration;

use tessera_common::data::{FeatureTable, LoadOptions};
use tessera_common::federation::InMemory;
use tessera_common::wire::PartyId;
use tessera_coordinator::config::TrainingConfig;
use tessera_party::config::PartyLimits;
use tessera_party::service::PartyService;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (files, settings): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| !a.contains('='));
    anyhow::ensure!(
        !files.is_empty(),
        "usage: train_local LABELS.csv OTHER.csv... [toml-key=value ...]"
    );
    let dir = tempfile::tempdir()?;
    let mut fed = InMemory::new();
    for (i, path) in files.iter().enumerate() {
        let opts = LoadOptions {
            label_column: (i == 0).then(|| "y".to_string()),
            ..Default::default()
        };
        let data = FeatureTable::load(path.as_ref(), &opts)?;
        let id = PartyId::new(format!("p{i}"))?;
        let service = PartyService::new(id.clone(), data, dir.path().to_path_buf(), PartyLimits::default())
            .with_policy(tessera_party::policy::TrainingPolicy::allow());
        fed.add(id, Arc::new(service));
    }
    let settings: Vec<&str> = settings.iter().map(|s| s.as_str()).collect();
    let cfg: TrainingConfig = toml::from_str(&settings.join("\n"))?;
    let parties = fed.ids();
    let trained =
        tessera_coordinator::train::train(&fed, &parties, &cfg, "local", Duration::from_secs(60), |r| {
            eprintln!(
                "epoch {:>2} loss {:.4} val_auc {:.4} ({:.2}s)",
                r.epoch, r.train_loss, r.validation_auc, r.seconds
            )
        })
        .await?;
    println!("{}", serde_json::to_string_pretty(&trained.manifest.metrics)?);
    Ok(())
}
