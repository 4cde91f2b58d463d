//! A hostile bank against the coordinator, built from the project's own code: certified (so
//! past TLS and the identity checks), serving its real model, but answering scoring requests
//! slowly, with the wrong shape, with non-finite numbers, with the wrong kind of answer, with
//! an error, or with a frame far over the coordinator's limit; and dialling again and again (a
//! reconnect storm). Throughout, every score is answered within its deadline from the honest
//! bank (degraded, naming the hostile one), never a server error, and the coordinator stays
//! ready; when the bank behaves again, full answers come back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;
use tessera_certs::Identity;
use tessera_common::config::TransportSettings;
use tessera_common::federation::Handler;
use tessera_common::transport::{self, Dialer, TlsMaterial, TlsPaths};
use tessera_common::wire::{ErrorCode, Matrix, Request, Response};
use tessera_coordinator::app::Coordinator;
use tessera_party::service::PartyService;
use tokio::sync::Semaphore;

/// How the hostile bank answers `Embed` and `Explain`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    Honest,
    /// Answers after three request time-outs.
    Slow,
    /// Embeddings with one row too few.
    WrongShape,
    /// Embeddings full of NaN and infinity.
    NonFinite,
    /// An `Ack` instead of embeddings.
    WrongKind,
    /// An error code.
    Error,
    /// Embeddings of 48 MiB, over the coordinator's 32 MiB frame limit.
    Huge,
}

const MODES: [Mode; 7] = [
    Mode::Honest,
    Mode::Slow,
    Mode::WrongShape,
    Mode::NonFinite,
    Mode::WrongKind,
    Mode::Error,
    Mode::Huge,
];

struct Hostile {
    real: PartyService,
    mode: AtomicU8,
}

impl Hostile {
    fn mode(&self) -> Mode {
        MODES[usize::from(self.mode.load(Ordering::Relaxed))]
    }
}

impl Handler for Hostile {
    fn handle(&self, request: Request) -> Response {
        let scoring = matches!(request, Request::Embed { .. } | Request::Explain { .. });
        if !scoring {
            return self.real.handle(request);
        }
        let n = match &request {
            Request::Embed { ids, .. } | Request::Explain { ids, .. } => ids.len(),
            _ => 0,
        };
        match self.mode() {
            Mode::Honest => self.real.handle(request),
            Mode::Slow => {
                std::thread::sleep(Duration::from_secs(3));
                self.real.handle(request)
            }
            Mode::WrongShape => Response::Embeddings {
                matrix: Matrix::zeros(n.saturating_sub(1), 16),
                known: vec![true; n],
            },
            Mode::NonFinite => Response::Embeddings {
                matrix: Matrix {
                    rows: u32::try_from(n).unwrap_or(u32::MAX),
                    cols: 16,
                    data: (0..n * 16)
                        .map(|i| if i % 2 == 0 { f32::NAN } else { f32::INFINITY })
                        .collect(),
                },
                known: vec![true; n],
            },
            Mode::WrongKind => Response::Ack,
            Mode::Error => Response::Error {
                code: ErrorCode::Internal,
                message: "\u{1b}[31mno".repeat(100),
            },
            Mode::Huge => Response::Embeddings {
                matrix: Matrix::zeros(12 * 1024 * 1024 / 16, 16),
                known: vec![true; n],
            },
        }
    }
}

async fn score(client: &reqwest::Client, base: &str, id: &str) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = client
        .post(format!("{base}/v1/score"))
        .json(&json!({ "customer_id": id }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_bank_degrades_its_own_part_only() {
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let gtls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let htls = pki.leaf("bank-b", Identity::Party(pid("bank-b")), false);
    let cfg = coordinator_config(ctls, pki.path("models-c"), &["bank-a", "bank-b"]);
    let coordinator = Coordinator::start(cfg).await.unwrap();
    let addr = coordinator.quic_addr;
    let _guest = start_party(party_config("bank-a", gtls, addr, pki.path("models-a"), "guest"));
    let hcfg = party_config("bank-b", htls.clone(), addr, pki.path("models-b"), "host");
    let host = start_party(hcfg.clone());
    assert!(coordinator.wait_for_parties(Some(Duration::from_secs(10))).await);
    coordinator.train(Some("m".into()), |_| {}).await.unwrap();
    host.stop().await;

    // The hostile bank-b: its real certificate, data and model behind a handler that lies.
    let hostile = Arc::new(Hostile {
        real: PartyService::from_config(&hcfg).unwrap(),
        mode: AtomicU8::new(Mode::Honest as u8),
    });
    let material = TlsMaterial::load(&TlsPaths::in_dir(&htls)).unwrap();
    // Its own frame limit raised, so it writes what the coordinator must refuse to read.
    let own = TransportSettings {
        max_frame_bytes: 256 * 1024 * 1024,
        ..fast_transport()
    };
    let dialer = Dialer::new(addr, &material, &own).unwrap();
    let mut link = None;
    for _ in 0..100 {
        match dialer.connect(addr, "localhost", &pid("bank-b"), 77, &own).await {
            Ok((l, _)) => {
                link = Some(l);
                break;
            }
            // The stopped bank-b's connection may still be the current one for a moment.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let link = link.expect("the hostile bank connects");
    let observe: transport::Observer = Arc::new(|_, _, _| {});
    tokio::spawn(transport::serve(
        link.clone(),
        hostile.clone(),
        own.clone(),
        Arc::new(Semaphore::new(64)),
        observe,
    ));
    let client = api_client();
    let base = format!("http://{}", coordinator.http_addr);
    let full = |a: &Value| a["degraded"] == false;
    let mut ok = false;
    for _ in 0..50 {
        let (status, a, _) = score(&client, &base, "25115").await;
        if status == 200 && full(&a) {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "honest at first: full answers");

    // Customers both banks know (the first rows of the shared files).
    let known = tessera_common::data::FeatureTable::load(
        &data_file("guest"),
        &tessera_common::data::LoadOptions {
            limit: Some(4),
            ..Default::default()
        },
    )
    .unwrap()
    .ids()
    .to_vec();
    // Each misbehaviour: every answer in time, from bank-a, naming bank-b; never a 5xx.
    let deadline = Duration::from_millis(fast_transport().request_timeout_ms * 2 + 1_500);
    for mode in &MODES[1..] {
        hostile.mode.store(*mode as u8, Ordering::Relaxed);
        // Eight at once; the 48 MiB answers one at a time (this test's process hosts the
        // hostile bank too: encoding eight of them at once on two cores would starve the
        // coordinator of CPU, which says nothing about the coordinator).
        let (rounds, width) = if *mode == Mode::Huge { (3, 1) } else { (1, 8) };
        for _ in 0..rounds {
            let scores: Vec<_> = (0..width)
                .map(|i| {
                    let (client, base) = (client.clone(), base.clone());
                    let id = known[i % known.len()].clone();
                    tokio::spawn(async move { score(&client, &base, &id).await })
                })
                .collect();
            for s in scores {
                let (status, a, took) = s.await.unwrap();
                assert!(took < deadline, "{mode:?}: answered in {took:?}");
                assert_eq!(status, 200, "{mode:?}: {a}");
                assert_eq!(a["degraded"], true, "{mode:?}: {a}");
                assert_eq!(a["missing_parties"], json!(["bank-b"]), "{mode:?}: {a}");
            }
        }
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{mode:?}: still ready (degraded)");
        // Behaving again: full answers within a few requests (a slow bank is marked
        // unresponsive until it answers again).
        hostile.mode.store(Mode::Honest as u8, Ordering::Relaxed);
        let mut back = false;
        for _ in 0..40 {
            let (status, a, _) = score(&client, &base, "25115").await;
            if status == 200 && full(&a) {
                back = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(back, "{mode:?}: full answers once bank-b behaves");
        eprintln!("{mode:?}: degraded in time, then full again");
    }
    assert!(
        !link.is_closed(),
        "the coordinator keeps a misbehaving bank's connection"
    );

    // A reconnect storm under bank-b's identity: refused while its connection lives; the
    // honest bank's answers keep coming in full.
    let storm: Vec<_> = (0..40u64)
        .map(|i| {
            let dialer = Dialer::new(addr, &material, &own).unwrap();
            let own = own.clone();
            tokio::spawn(async move {
                dialer
                    .connect(addr, "localhost", &pid("bank-b"), 1_000 + i, &own)
                    .await
                    .is_ok()
            })
        })
        .collect();
    for _ in 0..5 {
        let (status, a, took) = score(&client, &base, "25115").await;
        assert_eq!((status, full(&a)), (200, true), "during the storm: {a}");
        assert!(took < deadline);
    }
    let admitted = futures_util::future::join_all(storm)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(true)))
        .count();
    assert_eq!(admitted, 0, "a second live bank-b is refused");
    // 40 attempts at once from one address: beyond the burst, refused before any TLS work.
    let metrics = get_text(&client, &format!("{base}/metrics")).await;
    let rate_refused: f64 = metrics
        .lines()
        .find(|l| l.starts_with("tessera_quic_handshake_admission_total{decision=\"rate\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(
        rate_refused >= 1.0,
        "no attempt of the storm was refused for its rate:\n{metrics}"
    );
    let (status, a, _) = score(&client, &base, "25115").await;
    assert_eq!((status, full(&a)), (200, true), "after the storm: {a}");
    coordinator.shutdown().await;
}
