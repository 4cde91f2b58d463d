//! The HTTP API knows who is asking: bearer API keys, scopes, per-client rate limits, keys
//! reloaded without restart, open operational routes, `/metrics` on its own listener.
//! Authentication comes before scoring, so no party or model is needed: a call that passes
//! it gets `model_not_loaded` (503), one that does not gets the refusal.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::auth::{KeysFile, Scope};

struct Api {
    _pki: Pki,
    coordinator: Coordinator,
    keys_file: std::path::PathBuf,
    scorer: String,
    auditor: String,
    client: reqwest::Client,
}

async fn api() -> Api {
    let pki = Pki::new();
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    let mut cfg = coordinator_config(tls, pki.path("models"), &["bank-a"]);
    let keys_file = pki.path("clients.toml");
    let mut keys = KeysFile::default();
    let scorer = keys.add("loan-app", vec![Scope::Score], 1, 3).unwrap();
    let auditor = keys.add("audit-desk", vec![Scope::Decisions], 100, 100).unwrap();
    keys.save(&keys_file).unwrap();
    cfg.auth.keys_file = Some(keys_file.clone());
    cfg.listen_metrics = Some("127.0.0.1:0".parse().unwrap());
    let coordinator = Coordinator::start(cfg).await.unwrap();
    Api {
        _pki: pki,
        coordinator,
        keys_file,
        scorer,
        auditor,
        client: reqwest::Client::new(),
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let url = format!("http://{}{path}", self.coordinator.http_addr);
        let mut r = match method {
            "POST" => self.client.post(url),
            _ => self.client.get(url),
        };
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.unwrap()
    }
}

async fn error_of(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let body: Value = r.json().await.unwrap();
    (
        status,
        body["error"]["code"].as_str().unwrap_or_default().to_string(),
        body["error"]["message"].as_str().unwrap_or_default().to_string(),
    )
}

fn one() -> Option<Value> {
    Some(serde_json::json!({ "customer_id": "25115" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_names_its_reason_and_a_good_key_reaches_scoring() {
    let api = api().await;

    // No key: 401 with the scheme to use and a request id.
    let r = api.call("POST", "/v1/score", None, one()).await;
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"tessera\"");
    assert!(r.headers().contains_key("x-request-id"));
    let (status, code, message) = error_of(r).await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    assert!(message.contains("Authorization: Bearer"), "{message}");

    // A key that is not in the file, and a malformed header.
    let (status, code, message) =
        error_of(api.call("POST", "/v1/score", Some("tsk_guess"), one()).await).await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    assert!(message.contains("unknown or revoked"), "{message}");
    let r = api
        .client
        .post(format!("http://{}/v1/score", api.coordinator.http_addr))
        .header("authorization", format!("Basic {}", api.scorer))
        .json(&one())
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(r).await.0, 401);

    // A known client without the scope: 403 naming the client and the scope.
    let (status, code, message) =
        error_of(api.call("POST", "/v1/score", Some(&api.auditor), one()).await).await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    assert!(
        message.contains("audit-desk") && message.contains("score"),
        "{message}"
    );
    let (status, code, _) = error_of(
        api.call(
            "GET",
            &format!("/v1/decisions/{}", uuid_like()),
            Some(&api.scorer),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (403, "forbidden"));

    // The right scope passes authentication and reaches scoring (no model here).
    let (status, code, _) = error_of(api.call("POST", "/v1/score", Some(&api.scorer), one()).await).await;
    assert_eq!((status, code.as_str()), (503, "model_not_loaded"));
    let (status, code, _) = error_of(
        api.call(
            "GET",
            &format!("/v1/decisions/{}", uuid_like()),
            Some(&api.auditor),
            None,
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "decision_not_found"));
    // Any known client may read the model description.
    let (status, code, _) = error_of(api.call("GET", "/v1/model", Some(&api.auditor), None).await).await;
    assert_eq!((status, code.as_str()), (503, "model_not_loaded"));

    // Operational routes need no key.
    for path in ["/healthz", "/openapi.json", "/docs"] {
        let r = api.call("GET", path, None, None).await;
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    assert_eq!(
        api.call("GET", "/readyz", None, None).await.status().as_u16(),
        503
    );

    // `/metrics` lives on its own listener: not on the API's; refusals counted by reason.
    assert_eq!(
        api.call("GET", "/metrics", None, None).await.status().as_u16(),
        404
    );
    let metrics_addr = api.coordinator.metrics_addr.unwrap();
    let text = reqwest::get(format!("http://{metrics_addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in ["missing", "unknown", "forbidden"] {
        assert!(
            text.contains(&format!(
                "tessera_http_auth_refusals_total{{reason=\"{reason}\"}}"
            )),
            "{reason}: {text}"
        );
    }

    // OpenAPI declares the scheme and the protected routes name it.
    let doc: Value = api
        .call("GET", "/openapi.json", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    for (path, method) in [
        ("/v1/score", "post"),
        ("/v1/score/batch", "post"),
        ("/v1/decisions/{request_id}", "get"),
        ("/v1/model", "get"),
    ] {
        assert_eq!(
            doc["paths"][path][method]["security"][0]["api_key"],
            serde_json::json!([]),
            "{path}"
        );
    }
    assert!(doc["paths"]["/healthz"]["get"]["security"].is_null());
    api.coordinator.shutdown().await;
}

fn uuid_like() -> &'static str {
    "00000000-0000-4000-8000-000000000000"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_waits_and_a_batch_counts_each_customer() {
    let api = api().await;
    // Burst 3: a batch of 4 can never pass, and says why.
    let ids: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
    let batch = Some(serde_json::json!({ "customer_ids": ids }));
    let (status, code, message) = error_of(
        api.call("POST", "/v1/score/batch", Some(&api.scorer), batch)
            .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert!(message.contains("exceed its burst of 3"), "{message}");
    // A batch of 3 takes the whole burst; the next single call is refused with Retry-After.
    let batch = Some(serde_json::json!({ "customer_ids": ["a", "b", "c"] }));
    assert_eq!(
        error_of(
            api.call("POST", "/v1/score/batch", Some(&api.scorer), batch)
                .await
        )
        .await
        .0,
        503
    );
    let r = api.call("POST", "/v1/score", Some(&api.scorer), one()).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_eq!(error_of(r).await.1, "rate_limited");
    // Another client is not held back by it.
    assert_eq!(
        error_of(api.call("GET", "/v1/model", Some(&api.auditor), None).await)
            .await
            .0,
        503
    );
    // One token back after a second at 1/s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        error_of(api.call("POST", "/v1/score", Some(&api.scorer), one()).await)
            .await
            .1,
        "model_not_loaded"
    );
    api.coordinator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_and_a_new_one_admitted_without_restart() {
    let api = api().await;
    let mut keys = KeysFile::load(&api.keys_file).unwrap();
    assert!(keys.revoke("audit-desk"));
    let fresh = keys.add("case-ui", vec![Scope::Decisions], 10, 10).unwrap();
    keys.save(&api.keys_file).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let old = error_of(api.call("GET", "/v1/model", Some(&api.auditor), None).await).await;
        let new = error_of(api.call("GET", "/v1/model", Some(&fresh), None).await).await;
        if old.0 == 401 && new.0 == 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "keys not reloaded: old {old:?}, new {new:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A broken file keeps the clients there were.
    std::fs::write(&api.keys_file, "[[client]]\nname = 'x'\n").unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        error_of(api.call("GET", "/v1/model", Some(&fresh), None).await)
            .await
            .0,
        503
    );
    api.coordinator.shutdown().await;
}

#[tokio::test]
async fn keys_mode_without_a_keys_file_is_refused_at_start() {
    let pki = Pki::new();
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    let mut cfg = coordinator_config(tls, pki.path("models"), &["bank-a"]);
    cfg.auth.keys_file = None;
    let e = cfg.validate().unwrap_err().to_string();
    assert!(e.contains("auth.keys_file is required"), "{e}");
    cfg.auth.keys_file = Some(pki.path("missing.toml"));
    match Coordinator::start(cfg).await {
        Err(e) => assert!(e.to_string().contains("missing.toml"), "{e}"),
        Ok(_) => panic!("started without its keys file"),
    }
}
