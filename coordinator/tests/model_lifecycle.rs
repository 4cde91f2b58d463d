//! The model lifecycle over mutual-TLS QUIC: two trained models, activation and rollback
//! without restart while scoring requests run, and no answer ever mixing the two models (every
//! answer's score equals that model's own score for the customer); a shadow model compared
//! without changing answers; model cards; the activation log; an activation refused when too
//! few banks can load the model (the active one stays).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut r = self.client.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            r = r.json(&b);
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// Each customer's score under the active model (and that model's id).
    async fn scores(&self, ids: &[String]) -> (String, HashMap<String, i64>) {
        let (status, b) = self
            .post(
                "/v1/score/batch",
                Some(json!({"customer_ids": ids, "explain": false})),
            )
            .await;
        assert_eq!(status, 200, "{b}");
        let mut model = String::new();
        let mut out = HashMap::new();
        for item in b["results"].as_array().unwrap() {
            let r = &item["result"];
            assert_eq!(r["degraded"], false, "{item}");
            model = r["model_version"].as_str().unwrap().to_string();
            out.insert(
                item["customer_id"].as_str().unwrap().to_string(),
                r["score"].as_i64().unwrap(),
            );
        }
        (model, out)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activate_roll_back_and_shadow_without_mixing_models() {
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let gtls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let htls = pki.leaf("bank-b", Identity::Party(pid("bank-b")), false);
    let mut cfg = coordinator_config(ctls, pki.path("models-c"), &["bank-a", "bank-b"]);
    cfg.training.max_rows = Some(3_000);
    let coordinator = Coordinator::start(cfg).await.unwrap();
    let addr = coordinator.quic_addr;
    let guest = start_party(party_config("bank-a", gtls, addr, pki.path("models-a"), "guest"));
    let host = start_party(party_config("bank-b", htls, addr, pki.path("models-b"), "host"));
    assert!(coordinator.wait_for_parties(Some(Duration::from_secs(10))).await);
    coordinator.train(Some("m1".into()), |_| {}).await.unwrap();
    coordinator.train(Some("m2".into()), |_| {}).await.unwrap();
    let api = Arc::new(Api {
        client: api_client(),
        base: format!("http://{}", coordinator.http_addr),
    });

    // The registry: both models, m2 active (trained last), m1 the one before.
    let (status, list) = api.get("/v1/models").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        (list["active"].as_str(), list["previous"].as_str()),
        (Some("m2"), Some("m1"))
    );
    let listed: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["model_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["m2", "m1"]);

    // Each model's own score for 40 customers.
    let known = tessera_common::data::FeatureTable::load(
        &data_file("guest"),
        &tessera_common::data::LoadOptions {
            limit: Some(40),
            ..Default::default()
        },
    )
    .unwrap();
    let ids = known.ids().to_vec();
    let mut reference: HashMap<String, HashMap<String, i64>> = HashMap::new();
    let (model, s2) = api.scores(&ids).await;
    assert_eq!(model, "m2");
    reference.insert(model, s2);
    let (status, b) = api.post("/v1/models/rollback", None).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(
        (b["active"].as_str(), b["previous"].as_str()),
        (Some("m1"), Some("m2"))
    );
    let (model, s1) = api.scores(&ids).await;
    assert_eq!(model, "m1");
    assert_ne!(s1, reference["m2"], "two different models");
    reference.insert(model, s1);
    let reference = Arc::new(reference);

    // Switch back and forth while four clients score: every answer is one model's own.
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (api, ids, reference, running) = (api.clone(), ids.clone(), reference.clone(), running.clone());
        clients.push(tokio::spawn(async move {
            let mut seen: HashMap<String, usize> = HashMap::new();
            let mut i = c;
            while running.load(Ordering::Relaxed) {
                let id = &ids[i % ids.len()];
                i += 7;
                let (status, a) = api
                    .post("/v1/score", Some(json!({"customer_id": id, "explain": false})))
                    .await;
                assert_eq!(status, 200, "{a}");
                assert_eq!(a["degraded"], false, "every bank has both models loaded: {a}");
                let model = a["model_version"].as_str().unwrap();
                assert_eq!(
                    a["score"].as_i64(),
                    Some(reference[model][id]),
                    "customer {id}: the answer of {model} must be {model}'s own score"
                );
                *seen.entry(model.to_string()).or_default() += 1;
            }
            seen
        }));
    }
    for k in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let (status, b) = if k % 2 == 0 {
            api.post("/v1/models/m2/activate", None).await
        } else {
            api.post("/v1/models/rollback", None).await
        };
        assert_eq!(status, 200, "{b}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    running.store(false, Ordering::Relaxed);
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in clients {
        for (m, n) in c.await.unwrap() {
            *seen.entry(m).or_default() += n;
        }
    }
    assert!(
        seen.get("m1").copied().unwrap_or(0) > 0 && seen.get("m2").copied().unwrap_or(0) > 0,
        "both models answered during the switches: {seen:?}"
    );
    eprintln!("answers during 6 switches: {seen:?}");
    // Rolled back last: m1 active, and CURRENT says so (what a restart serves).
    let (_, model) = api.get("/v1/model").await;
    assert_eq!(model["model_id"], "m1");
    let current = std::fs::read_to_string(pki.path("models-c").join("CURRENT")).unwrap();
    assert_eq!(current.trim(), "m1");

    // A shadow: m2 scores what m1 answers, answers unchanged, the comparison reported.
    let (status, b) = api.send(reqwest::Method::PUT, "/v1/models/m2/shadow", None).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(b["shadow"], "m2");
    let (status, b) = api.send(reqwest::Method::PUT, "/v1/models/m1/shadow", None).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("shadow_is_active"))
    );
    let (model, s) = api.scores(&ids).await;
    assert_eq!((model.as_str(), &s), ("m1", &reference["m1"]));
    let mut compared = 0;
    for _ in 0..100 {
        let (_, list) = api.get("/v1/models").await;
        compared = list["shadow"]["compared"].as_u64().unwrap_or(0);
        if compared >= ids.len() as u64 {
            // Same customers, the two models' own scores: the mean shift is known exactly.
            let shift: f64 = ids
                .iter()
                .map(|id| (reference["m2"][id] - reference["m1"][id]) as f64)
                .sum::<f64>()
                / ids.len() as f64;
            let got = list["shadow"]["mean_score_shift"].as_f64().unwrap();
            assert!((got - shift).abs() < 1e-9, "{got} vs {shift}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(compared >= ids.len() as u64, "the shadow compared {compared}");
    let (_, model) = api.get("/v1/model").await;
    assert_eq!(model["shadow"]["model_id"], "m2", "{model}");
    let (status, b) = api.send(reqwest::Method::DELETE, "/v1/models/shadow", None).await;
    assert_eq!((status, b["shadow"].clone()), (200, Value::Null));

    // Cards and the activation log.
    let (status, card) = api.get("/v1/models/m1/card").await;
    assert_eq!(status, 200, "{card}");
    assert_eq!(card["model_id"], "m1");
    assert_eq!(card["parties"].as_array().unwrap().len(), 2);
    assert!(card["holdout"][0].as_f64().unwrap() > 0.5);
    let md = api
        .client
        .get(format!("{}/v1/models/m1/card?format=markdown", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(md.headers()["content-type"], "text/markdown; charset=utf-8");
    assert!(md.text().await.unwrap().starts_with("# Model card: m1"));
    let (_, log) = api.get("/v1/models/activations?limit=3").await;
    let log = log.as_array().unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["action"], "shadow_cleared");
    assert_eq!(log[1]["action"], "shadow");
    assert_eq!(
        (log[2]["action"].as_str(), log[2]["model_id"].as_str()),
        (Some("rollback"), Some("m1"))
    );
    assert!(log.iter().all(|e| e["client"] == "tests"));
    let (status, b) = api.post("/v1/models/nope/activate", None).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (404, Some("model_not_found"))
    );

    // No bank can load it: refused, and the active model stays.
    guest.stop().await;
    host.stop().await;
    let (status, b) = api.post("/v1/models/m2/activate", None).await;
    assert_eq!(
        (status, b["error"]["code"].as_str()),
        (409, Some("activation_refused")),
        "{b}"
    );
    let (_, model) = api.get("/v1/model").await;
    assert_eq!(model["model_id"], "m1");
    coordinator.shutdown().await;
}
