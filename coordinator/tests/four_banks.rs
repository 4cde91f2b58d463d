//! Four banks and a coordinator on loopback over mutual-TLS QUIC: the raw UCI file split into
//! repayment (labels), demographics, bills and payments, with partial overlap (the bills bank
//! does not know every customer). Trains through private set intersection, scores complete
//! and degraded customers, and survives a bank going away. Nothing assumes two parties.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;
use tessera_party::config::{DataConfig, PartyConfig, PartyLimits};

const BANKS: [&str; 4] = ["repayment", "demographics", "bills", "payments"];
const ROWS: usize = 6_000;

/// Splits the shipped UCI file and keeps the first `ROWS` customers; the bills bank loses
/// every fifth of them.
fn split(dir: &Path) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/uci/UCI_Credit_Card.csv.gz");
    let (paths, n) = tessera_demo::uci::split(&src, dir).unwrap();
    assert_eq!(n, 30_000);
    for (i, p) in paths.iter().enumerate() {
        let text = std::fs::read_to_string(p).unwrap();
        let mut lines = text.lines();
        let mut out = vec![lines.next().unwrap().to_string()];
        for (k, line) in lines.take(ROWS).enumerate() {
            if BANKS[i] == "bills" && k % 5 == 4 {
                continue;
            }
            out.push(line.to_string());
        }
        std::fs::write(p, out.join("\n") + "\n").unwrap();
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_banks_train_through_psi_and_score_with_partial_overlap() {
    let pki = Pki::new();
    let data = split(&pki.path("data"));
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let mut cfg = coordinator_config(ctls, pki.path("models-c"), &BANKS);
    cfg.training.max_rows = None;
    // Enough epochs for a stable figure: each bank's embedding is at most its encoded input
    // width minus one (its policy), which narrows `bills` (11 of 16) and slows this short run.
    cfg.training.epochs = 20;
    let coordinator = Coordinator::start(cfg).await.unwrap();
    let mut parties = Vec::new();
    for (bank, path) in BANKS.iter().zip(&data) {
        let tls = pki.leaf(bank, Identity::Party(pid(bank)), false);
        let mut p = start_party(PartyConfig {
            party_id: pid(bank),
            coordinator_addr: coordinator.quic_addr.to_string(),
            coordinator_discovery: Default::default(),
            coordinator_name: "localhost".into(),
            tls_dir: tls,
            model_dir: pki.path(&format!("models-{bank}")),
            data: DataConfig {
                path: path.clone(),
                id_column: "id".into(),
                label_column: (*bank == "repayment").then(|| "y".to_string()),
                max_rows: 100_000,
                limit: None,
            },
            metrics_addr: None,
            limits: PartyLimits::default(),
            transport: fast_transport(),
            reasons: Vec::new(),
            // Each bank's own seed fixed, so the run is repeatable.
            training: tessera_party::policy::TrainingPolicy {
                seed: Some(11),
                ..tessera_party::policy::TrainingPolicy::allow()
            },
        });
        assert!(p.connects_within(Duration::from_secs(10)).await, "{bank}");
        parties.push(Some(p));
    }
    assert!(coordinator.wait_for_parties(Some(Duration::from_secs(10))).await);

    let m = coordinator
        .train(Some("four".into()), |_| {})
        .await
        .unwrap()
        .metrics;
    assert_eq!(m.customers, ROWS);
    assert_eq!(m.customers_in_every_party, ROWS - ROWS / 5);
    assert_eq!(m.shared_with_label_holder["bills"], ROWS - ROWS / 5);
    assert_eq!(m.shared_with_label_holder["payments"], ROWS);
    assert_eq!(m.holdout_auc_party_absent.len(), 4);
    eprintln!("four banks: holdout AUC {:.4}", m.holdout_auc);
    assert!(m.holdout_auc > 0.70, "holdout AUC {}", m.holdout_auc);
    assert!(m.holdout_auc_partial.is_some());
    // Repayment history carries most of the signal: without it the model is weakest.
    let without = |b: &str| m.holdout_auc_party_absent[b];
    assert!(
        without("repayment") < without("demographics"),
        "{:?}",
        m.holdout_auc_party_absent
    );

    let client = api_client();
    let base = format!("http://{}", coordinator.http_addr);
    let score = |id: &'static str| {
        let client = client.clone();
        let url = format!("{base}/v1/score");
        async move {
            let r = client
                .post(url)
                .json(&serde_json::json!({ "customer_id": id }))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    // C000001 is known to every bank; C000005 (fifth row) is unknown to the bills bank.
    let (status, body) = score("C000001").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["degraded"], false);
    assert_eq!(body["parties"].as_array().unwrap().len(), 4);
    let (status, body) = score("C000005").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["degraded"], true);
    assert_eq!(body["missing_parties"], serde_json::json!(["bills"]));
    assert_eq!(body["parties"][2]["status"], "unknown_customer");

    // The payments bank goes away: answers go on, degraded, naming it.
    parties[3].take().unwrap().stop().await;
    let mut last = Value::Null;
    for _ in 0..50 {
        let (status, body) = score("C000001").await;
        assert_eq!(status, 200, "{body}");
        if body["missing_parties"] == serde_json::json!(["payments"]) {
            last = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last["degraded"], true, "never saw payments missing: {last}");

    coordinator.shutdown().await;
    for p in parties.into_iter().flatten() {
        p.stop().await;
    }
}
