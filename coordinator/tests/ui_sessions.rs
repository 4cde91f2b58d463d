//! The web UI's sign-in and sessions at the HTTP level (the browser test drives the pages):
//! the session cookie's flags, the headers of every page, a client without a page's scope
//! refused by name, a cross-origin form post refused, a revoked key ending its session
//! without restart, and signing out. No party or model is needed.

mod support;

use std::time::{Duration, Instant};

use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use reqwest::redirect::Policy;
use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::auth::{KeysFile, Scope};

struct Ui {
    client: reqwest::Client,
    base: String,
}

impl Ui {
    async fn login(&self, key: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/ui/login", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("key={key}"))
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.base))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap()
    }
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The `name=value` part of the session cookie an answer sets.
fn session_cookie(r: &reqwest::Response) -> (String, String) {
    let set = r
        .headers()
        .get(SET_COOKIE)
        .expect("a session cookie")
        .to_str()
        .unwrap()
        .to_string();
    (set.split(';').next().unwrap().to_string(), set)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_scopes_revocation_and_sign_out() {
    let pki = Pki::new();
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    let mut cfg = coordinator_config(tls, pki.path("models"), &["bank-a"]);
    let keys_file = pki.path("clients.toml");
    let mut keys = KeysFile::default();
    let officer = keys.add("officer", vec![Scope::Score], 100, 100).unwrap();
    let auditor = keys.add("auditor", vec![Scope::Decisions], 100, 100).unwrap();
    keys.save(&keys_file).unwrap();
    cfg.auth.keys_file = Some(keys_file.clone());
    let coordinator = Coordinator::start(cfg).await.unwrap();
    let ui = Ui {
        client: reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap(),
        base: format!("http://{}", coordinator.http_addr),
    };

    // Not signed in: the root and every page lead to the sign-in form.
    let r = ui.get("/", "").await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/score"));
    for page in [
        "/ui/score",
        "/ui/decisions",
        "/ui/federation",
        "/ui/model",
        "/ui/monitoring",
    ] {
        let r = ui.get(page, "").await;
        assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/login"), "{page}");
        let r = ui.get(page, "tessera_session=tss_forged").await;
        assert_eq!(location(&r), "/ui/login", "{page} with a forged session");
    }
    let r = ui.get("/ui/login", "").await;
    assert_eq!(r.status(), 200);
    let csp = r.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("script-src"), "no script is allowed: {csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");

    // A wrong key: refused, no cookie, counted.
    let r = ui.login("tsk_wrong").await;
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("not known"));

    // The officer signs in: an HttpOnly, SameSite=Strict cookie (no Secure on loopback).
    let r = ui.login(&officer).await;
    assert_eq!((r.status().as_u16(), location(&r)), (303, "/ui/score"));
    let (cookie, set) = session_cookie(&r);
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(
        !set.contains(&officer),
        "the cookie is a session token, not the key"
    );
    let r = ui.get("/ui/score", &cookie).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("officer"));
    // No `decisions` scope: a 403 page naming the client and the scope.
    let r = ui.get("/ui/decisions", &cookie).await;
    assert_eq!(r.status(), 403);
    let page = r.text().await.unwrap();
    assert!(page.contains("officer") && page.contains("decisions"), "{page}");
    // Pages for any client; the model page says there is none.
    let r = ui.get("/ui/model", &cookie).await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("No model is loaded"));
    // Scoring without a model: the API's error, on the page.
    let r = ui
        .client
        .post(format!("{}/ui/score", ui.base))
        .header(COOKIE, &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("customer_id=25115")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.text().await.unwrap().contains("model_not_loaded"));
    // A form posted from another site is refused before anything runs.
    let r = ui
        .client
        .post(format!("{}/ui/score", ui.base))
        .header(COOKIE, &cookie)
        .header(ORIGIN, "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("customer_id=25115")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("cross-origin"));

    // The auditor's session reaches the decisions.
    let (auditor_cookie, _) = session_cookie(&ui.login(&auditor).await);
    let r = ui.get("/ui/decisions", &auditor_cookie).await;
    assert_eq!(r.status(), 200);

    // Revoking the officer's key ends the officer's session without a restart.
    let mut keys = KeysFile::load(&keys_file).unwrap();
    assert!(keys.revoke("officer"));
    keys.save(&keys_file).unwrap();
    let started = Instant::now();
    loop {
        let r = ui.get("/ui/federation", &cookie).await;
        if r.status() == 303 {
            assert_eq!(location(&r), "/ui/login");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the session outlived its key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ui.get("/ui/decisions", &auditor_cookie).await.status(), 200);

    // Signing out ends the session and clears the cookie.
    let r = ui
        .client
        .post(format!("{}/ui/logout", ui.base))
        .header(COOKIE, &auditor_cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "/ui/login");
    let (cleared, set) = session_cookie(&r);
    assert_eq!(cleared, "tessera_session=");
    assert!(set.contains("Max-Age=0"));
    assert_eq!(
        location(&ui.get("/ui/decisions", &auditor_cookie).await),
        "/ui/login"
    );

    coordinator.shutdown().await;
}
