//! Trains the split-NN in one process (no network) on party CSV slices and prints the figures
//! (the manifest's metrics as JSON). The first file is the label holder (column `y`).
//! `cargo run --release -p tessera-coordinator --example train_local -- LABELS.csv OTHER.csv... [key=value ...]`
//! (`key=value` are `[training]` settings in TOML syntax). Used by `scripts/model-eval`.
//! With `--splits`, the JSON also has `splits`: the label holder's customer ids of the
//! training, validation and holdout rows (so baselines can be trained on the same rows; this
//! tool holds every party in one process, which a federation never does).

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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let with_splits = args.iter().any(|a| a == "--splits");
    args.retain(|a| a != "--splits");
    let (files, settings): (Vec<&String>, Vec<&String>) = args.iter().partition(|a| !a.contains('='));
    anyhow::ensure!(
        !files.is_empty(),
        "usage: train_local LABELS.csv OTHER.csv... [toml-key=value ...]"
    );
    let dir = tempfile::tempdir()?;
    let mut fed = InMemory::new();
    let mut label_holder = None;
    for (i, path) in files.iter().enumerate() {
        let opts = LoadOptions {
            label_column: (i == 0).then(|| "y".to_string()),
            ..Default::default()
        };
        let data = FeatureTable::load(path.as_ref(), &opts)?;
        let id = PartyId::new(format!("p{i}"))?;
        let service = Arc::new(
            PartyService::new(id.clone(), data, dir.path().to_path_buf(), PartyLimits::default())
                .with_policy(tessera_party::policy::TrainingPolicy::allow()),
        );
        if i == 0 {
            label_holder = Some(service.clone());
        }
        fed.add(id, service);
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
    let mut out = serde_json::to_value(&trained.manifest.metrics)?;
    if with_splits && let (Some(holder), Some(obj)) = (&label_holder, out.as_object_mut()) {
        let ids = |handles: &[u64]| -> Vec<String> {
            handles
                .iter()
                .filter_map(|&h| holder.aligned_customer(h))
                .collect()
        };
        let [train, validation, holdout] = &trained.splits;
        obj.insert(
            "splits".into(),
            serde_json::json!({
                "train": ids(train),
                "validation": ids(validation),
                "holdout": ids(holdout),
            }),
        );
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
