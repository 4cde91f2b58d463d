//! The web UI driven by a real browser: headless Chromium over WebDriver (chromedriver),
//! against a coordinator and two banks over mutual-TLS QUIC in this process.
//!
//! Signs in (a wrong key first), scores a known customer and checks the page shows what the
//! API answers for the same customer (score, band, probability, reason codes and their banks),
//! scores an unknown id and sees the error, opens every page, stops a bank and sees it marked
//! down on the federation page and the next score marked degraded, and signs out. A screenshot
//! of every page is written to `$TESSERA_UI_SCREENSHOTS` (default
//! `target/tmp/ui-screenshots/`), also at a phone's width.
//!
//! Needs `chromium` and `chromium-driver` (Debian), so it is `#[ignore]`d in a plain
//! `cargo test`; `scripts/test-ui` (part of `scripts/test`) runs it and fails without them.

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;
use tessera_party::reasons::ReasonConfig;

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin} ({e}): install chromium and chromium-driver (apt-get install chromium chromium-driver) or set CHROMEDRIVER")
        });
    // Owned by the guard from here on: killed and reaped whatever happens next.
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{}/status", driver.url)).send().await.is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{bin} did not answer on {} within 10 s", driver.url);
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let mut opts = json!({
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]
    });
    if let Ok(bin) = std::env::var("CHROMIUM") {
        opts["binary"] = json!(bin);
    }
    caps.insert("goog:chromeOptions".into(), opts);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session with headless Chromium")
}

struct Ui {
    c: Client,
    base: String,
    shots: PathBuf,
}

impl Ui {
    async fn go(&self, path: &str) {
        self.c.goto(&format!("{}{path}", self.base)).await.unwrap();
    }

    async fn path(&self) -> String {
        self.c.current_url().await.unwrap().path().to_string()
    }

    /// The path once it is `want` (a click's navigation may still be under way), or what it
    /// is after 5 s.
    async fn path_becomes(&self, want: &str) -> String {
        let mut now = self.path().await;
        for _ in 0..50 {
            if now == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            now = self.path().await;
        }
        now
    }

    async fn text(&self, css: &str) -> String {
        let found = self
            .c
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(e) => e.text().await.unwrap(),
            Err(e) => {
                let source = self.c.source().await.unwrap_or_default();
                let head: String = source.chars().take(3000).collect();
                panic!("no {css} on {}: {e}\n{head}", self.path().await)
            }
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.c.find_all(Locator::Css(css)).await.unwrap().len()
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.unwrap();
        assert!(png.len() > 1_000, "{name}: an empty screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot {}", path.display());
    }

    /// A screenshot of the page scrolled to `css` (the browser scrolls an element into view
    /// to photograph it; the whole window is kept so the context shows).
    async fn shot_at(&self, css: &str, name: &str) {
        let e = self.c.find(Locator::Css(css)).await.unwrap();
        let png = e.screenshot().await.unwrap();
        assert!(png.len() > 500, "{name}: an empty screenshot");
        self.shot(name).await;
    }

    /// Scores `customer` from a fresh score page and waits for the answer page (a result or
    /// an error: the fresh page has neither), so nothing navigates away from the form post
    /// before it is answered.
    async fn score(&self, customer: &str) {
        self.go("/ui/score").await;
        self.fill("#customer", customer).await;
        self.click("#score-button").await;
        for _ in 0..100 {
            if self.count("#result-customer, #score-error").await > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no answer page for {customer} within 10 s");
    }
}

fn reason(code: &str, text: &str, features: &[&str]) -> ReasonConfig {
    ReasonConfig {
        code: code.into(),
        text: text.into(),
        features: features.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium and chromium-driver: run by scripts/test-ui"]
async fn a_credit_officer_and_an_operator_use_the_ui() {
    let shots = std::env::var_os("TESSERA_UI_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots"));
    std::fs::create_dir_all(&shots).unwrap();
    let driver = start_driver().await;

    // A federation of two banks with a trained model.
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let gtls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let htls = pki.leaf("bank-b", Identity::Party(pid("bank-b")), false);
    let mut cfg = coordinator_config(ctls, pki.path("models-c"), &["bank-a", "bank-b"]);
    cfg.training.epochs = 4;
    cfg.training.max_rows = Some(6_000);
    let coordinator = Coordinator::start(cfg).await.unwrap();
    let addr = coordinator.quic_addr;
    let mut gcfg = party_config("bank-a", gtls, addr, pki.path("models-a"), "guest");
    gcfg.data.limit = Some(6_000);
    gcfg.reasons = vec![
        reason("PY01", "Recent repayment status", &["x0", "x1", "x2"]),
        reason("BL01", "Bill amounts", &["x3", "x4", "x5", "x6", "x7", "x8"]),
        reason("PA01", "Amounts repaid", &["x9", "x10", "x11", "x12"]),
    ];
    let _guest = start_party(gcfg);
    let mut hcfg = party_config("bank-b", htls, addr, pki.path("models-b"), "host");
    hcfg.data.limit = Some(6_000);
    hcfg.reasons = vec![
        reason("DL01", "Recent payment delays", &["x5", "x6"]),
        reason("LM01", "Credit limit", &["x0"]),
        reason("DM01", "Customer profile", &["x1", "x2", "x3", "x4"]),
    ];
    let host = start_party(hcfg);
    assert!(coordinator.wait_for_parties(Some(Duration::from_secs(10))).await);
    // Two models: the first stays saved (the one before), the second serves.
    coordinator
        .train(Some("ui-model-0".into()), |_| {})
        .await
        .unwrap();
    coordinator.train(Some("ui-model".into()), |_| {}).await.unwrap();
    let base = format!("http://{}", coordinator.http_addr);
    let api = api_client();
    let ui = Ui {
        c: browser(&driver).await,
        base: base.clone(),
        shots,
    };

    // --- Not signed in: every page leads to the sign-in form; a wrong key is refused.
    ui.go("/").await;
    assert_eq!(ui.path().await, "/ui/login");
    ui.go("/ui/decisions").await;
    assert_eq!(ui.path().await, "/ui/login");
    ui.fill("#key", "tsk_not-a-key").await;
    ui.click("#sign-in").await;
    assert!(ui.text("#login-error").await.contains("not known"));
    ui.shot("01-login-refused").await;
    ui.fill("#key", TEST_KEY).await;
    ui.click("#sign-in").await;
    assert_eq!(ui.text("#who").await, "tests");
    assert_eq!(ui.path_becomes("/ui/score").await, "/ui/score");

    // --- A known customer: the page says what the API says.
    let customer = "25115";
    let answer: Value = api
        .post(format!("{base}/v1/score"))
        .json(&json!({ "customer_id": customer }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["score"].is_i64(), "{answer}");
    ui.score(customer).await;
    assert_eq!(ui.text("#result-customer").await, customer);
    assert_eq!(ui.text("#score").await, answer["score"].to_string());
    assert_eq!(
        ui.text("#band").await,
        answer["band"].as_str().unwrap().replace('_', " ")
    );
    let pd = answer["probability_of_default"].as_f64().unwrap();
    assert_eq!(ui.text("#pd").await, format!("{:.2}%", pd * 100.0));
    assert_eq!(ui.text("#model").await, "ui-model");
    let api_reasons: Vec<(String, String)> = answer["reason_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_string(),
                r["party"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(!api_reasons.is_empty(), "the API gave reasons: {answer}");
    let mut page_reasons = Vec::new();
    for li in ui.c.find_all(Locator::Css("#reasons li")).await.unwrap() {
        let code = li.attr("data-code").await.unwrap().unwrap();
        let party = li
            .find(Locator::Css(".reason-party"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let text = li.text().await.unwrap();
        let described = answer["reason_codes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["code"] == code.as_str())
            .map(|r| r["description"].as_str().unwrap().to_string())
            .unwrap_or_default();
        assert!(
            !described.is_empty() && text.contains(&described),
            "{text} / {described}"
        );
        page_reasons.push((code, party));
    }
    assert_eq!(page_reasons, api_reasons);
    assert_eq!(ui.count("#degraded").await, 0, "both banks contributed");
    assert_eq!(ui.count("#parties tr[data-party]").await, 2);
    ui.shot("02-score").await;
    let request_id = ui.text("#decision-link").await;
    assert!(uuid::Uuid::parse_str(&request_id).is_ok(), "{request_id}");

    // --- An unknown id: the error, not a score.
    ui.score("no-such-customer").await;
    assert_eq!(ui.text("#error-code").await, "customer_not_found");
    assert_eq!(ui.count("#score").await, 0);
    ui.shot("03-score-unknown").await;

    // --- Decisions: the UI's own decision is recorded under the signed-in client.
    let mut found = false;
    for _ in 0..50 {
        ui.go(&format!("/ui/decisions?request_id={request_id}")).await;
        if ui.count(&format!("tr[data-request='{request_id}']")).await == 1 {
            found = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "the decision of the UI's score is listed");
    ui.go("/ui/decisions").await;
    assert!(
        ui.count("#decisions tbody tr").await >= 2,
        "the API's and the UI's decisions"
    );
    ui.shot("04-decisions").await;
    ui.go(&format!("/ui/decisions/{request_id}")).await;
    assert_eq!(ui.text("#d-score").await, answer["score"].to_string());
    assert_eq!(ui.text("#d-customer").await, customer);
    let listed: Vec<&str> = api_reasons.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(ui.text("#d-reasons").await, listed.join(", "));
    ui.shot("05-decision").await;
    ui.go("/ui/decisions?from=not-a-date").await;
    assert!(ui.text("#decisions-note").await.contains("not a date"));

    // --- Federation, model, monitoring.
    ui.go("/ui/federation").await;
    for bank in ["bank-a", "bank-b"] {
        let row =
            ui.c.find(Locator::Css(&format!("#banks tr[data-party='{bank}']")))
                .await
                .unwrap();
        assert_eq!(row.attr("data-state").await.unwrap().as_deref(), Some("up"));
    }
    assert!(ui.text("#own-cert").await.contains("spiffe://"));
    ui.shot("06-federation").await;
    ui.go("/ui/model").await;
    let auc: f64 = ui.text("#auc").await.parse().unwrap();
    assert!(auc > 0.6, "{auc}");
    assert_eq!(ui.text("#model-id").await, "ui-model");
    assert_eq!(ui.count("#report").await, 1);
    ui.shot("07-model").await;
    ui.go("/ui/model/report.svg").await;
    ui.shot("08-model-report").await;

    // --- The model registry: shadow, activate, roll back from the page.
    ui.go("/ui/model").await;
    // A model's status, once the page shows `want` (a form post navigates after the click
    // returns): what it shows after at most 5 s.
    let status_is = |m: &'static str, want: &'static str| {
        let c = &ui.c;
        async move {
            let mut seen = String::new();
            for _ in 0..50 {
                if let Ok(row) = c
                    .find(Locator::Css(&format!("#models tr[data-model='{m}']")))
                    .await
                    && let Ok(Some(s)) = row.attr("data-status").await
                {
                    seen = s;
                    if seen == want {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            seen
        }
    };
    assert_eq!(status_is("ui-model", "active").await, "active");
    assert_eq!(status_is("ui-model-0", "previous").await, "previous");
    ui.click("#models tr[data-model='ui-model-0'] form[action$='/shadow'] button")
        .await;
    assert_eq!(status_is("ui-model-0", "shadow").await, "shadow");
    assert_eq!(ui.path_becomes("/ui/model").await, "/ui/model");
    ui.score(customer).await;
    let mut compared = 0;
    for _ in 0..50 {
        ui.go("/ui/model").await;
        compared = ui.text("#shadow-compared").await.parse().unwrap_or(0);
        if compared > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(compared > 0, "the shadow compared the score just made");
    ui.shot_at("#shadow", "08b-model-shadow").await;
    ui.click("#clear-shadow").await;
    assert_eq!(status_is("ui-model-0", "previous").await, "previous");
    assert_eq!(ui.count("#shadow").await, 0);
    ui.click("#models tr[data-model='ui-model-0'] button.activate")
        .await;
    assert_eq!(status_is("ui-model-0", "active").await, "active");
    assert_eq!(status_is("ui-model", "previous").await, "previous");
    ui.score(customer).await;
    assert_eq!(
        ui.text("#model").await,
        "ui-model-0",
        "the next answer comes from the activated model"
    );
    ui.go("/ui/model").await;
    ui.click("#rollback").await;
    assert_eq!(status_is("ui-model", "active").await, "active");
    let history = ui.text("#history").await;
    for action in ["rollback", "activate", "shadow cleared", "shadow"] {
        assert!(history.contains(action), "{action} in the log: {history}");
    }
    assert!(history.contains("tests"));
    ui.shot_at("#history", "08c-model-registry").await;
    // Enough answers for the stability index.
    let known = tessera_common::data::FeatureTable::load(
        &data_file("guest"),
        &tessera_common::data::LoadOptions {
            limit: Some(150),
            ..Default::default()
        },
    )
    .unwrap();
    let ids = known.ids().to_vec();
    let batch = api
        .post(format!("{base}/v1/score/batch"))
        .json(&json!({ "customer_ids": ids, "explain": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(batch.status(), 200);
    // A single score too (the window's latency figures are of single scores).
    ui.score(customer).await;
    assert_eq!(ui.text("#model").await, "ui-model");
    ui.go("/ui/monitoring").await;
    let psi: f64 = ui.text("#psi").await.parse().unwrap();
    assert!(psi.is_finite() && psi >= 0.0, "{psi}");
    assert!(!ui.text("#psi-reading").await.is_empty());
    assert_eq!(ui.count("#distribution svg").await, 1);
    assert!(ui.text("#latency").await.contains("p99"));
    ui.shot("09-monitoring").await;

    // --- A bank goes away: marked down, the next answer degraded and saying which.
    host.stop().await;
    let mut down = false;
    for _ in 0..50 {
        ui.go("/ui/federation").await;
        let state =
            ui.c.find(Locator::Css("#banks tr[data-party='bank-b']"))
                .await
                .unwrap()
                .attr("data-state")
                .await
                .unwrap();
        if state.as_deref() == Some("down") {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(down, "bank-b is shown down after it stopped");
    ui.shot("10-federation-bank-down").await;
    ui.score(customer).await;
    assert_eq!(ui.text("#missing").await, "bank-b");
    let bank_b =
        ui.c.find(Locator::Css("#parties tr[data-party='bank-b'] td:last-child"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_ne!(bank_b, "ok");
    ui.shot("11-score-degraded").await;
    ui.go("/ui/monitoring").await;
    assert!(ui.text("#degraded-by-bank").await.contains("bank-b"));
    ui.shot("12-monitoring-degraded").await;

    // --- On a phone.
    ui.c.set_window_size(390, 844).await.unwrap();
    ui.score(customer).await;
    ui.shot("13-phone-score").await;
    ui.go("/ui/federation").await;
    ui.shot("14-phone-federation").await;
    ui.c.set_window_size(1280, 1000).await.unwrap();

    // --- Signing out ends the session.
    ui.go("/ui/score").await;
    ui.click("header form.who button").await;
    assert_eq!(ui.path_becomes("/ui/login").await, "/ui/login");
    ui.go("/ui/score").await;
    assert_eq!(ui.path().await, "/ui/login");

    ui.c.close().await.unwrap();
    coordinator.shutdown().await;
}
