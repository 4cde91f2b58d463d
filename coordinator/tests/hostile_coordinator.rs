//! A hostile coordinator, built from the project's own transport and wire code and certified
//! by the federation (so past TLS), tries what the party's policy forbids, over real QUIC: a
//! linear bottom model it could invert, an embedding wider than the bank's input, training at a
//! bank that has not opted in, explanations it did not embed for, and re-blinding guessed ids
//! past the bank's cap or after the intersection is assigned. Each is refused with the party's
//! policy error naming the rule.

mod support;

use std::time::Duration;

use support::*;
use tessera_certs::Identity;
use tessera_common::data::{FeatureTable, LoadOptions};
use tessera_common::model::Encoder;
use tessera_common::transport::{Link, Listener, TlsMaterial, TlsPaths};
use tessera_common::wire::{BottomSpec, ErrorCode, Matrix, Request, Response};
use tessera_party::bottom::BottomModel;
use tessera_party::policy::TrainingPolicy;

/// The hostile coordinator's end of a party's connection.
async fn hostile(pki: &Pki, listener: &Listener) -> Link {
    let _ = pki;
    let incoming = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .unwrap()
        .unwrap();
    let (link, _party, _instance) = incoming
        .accept(&[pid("bank-a")], &|_| None, &fast_transport())
        .await
        .unwrap();
    link
}

async fn ask(link: &Link, r: Request) -> Response {
    link.call(&r, &[], &fast_transport(), Duration::from_secs(10))
        .await
        .unwrap()
}

fn refused(r: &Response, rule: &str) {
    match r {
        Response::Error {
            code: ErrorCode::PolicyRefused,
            message,
        } => assert!(
            message.contains(rule),
            "refusal does not name {rule:?}: {message}"
        ),
        other => panic!("expected a policy refusal naming {rule:?}, got {other:?}"),
    }
}

fn spec(hidden: Vec<u32>, emb_dim: u32) -> BottomSpec {
    BottomSpec {
        hidden,
        emb_dim,
        learning_rate: 0.01,
        weight_decay: 0.0,
        seed: 7,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_party_refuses_what_its_policy_forbids() {
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let material = TlsMaterial::load(&TlsPaths::in_dir(&ctls)).unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &material, &fast_transport()).unwrap();
    let addr = listener.local_addr().unwrap();
    let atls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);

    // A bank that has not opted in to training: alignment and training are refused, and it
    // announces no embedding width.
    let mut pc = party_config("bank-a", atls.clone(), addr, pki.path("ma"), "guest");
    pc.training = TrainingPolicy::default();
    let off = start_party(pc);
    let link = hostile(&pki, &listener).await;
    match ask(&link, Request::Describe).await {
        Response::Info(i) => assert_eq!(i.max_emb_dim, 0),
        other => panic!("{other:?}"),
    }
    refused(
        &ask(&link, Request::PsiInit { session: 1 }).await,
        "training.enabled",
    );
    refused(
        &ask(
            &link,
            Request::TrainInit {
                session: 1,
                spec: spec(vec![32], 4),
                fit: vec![0],
            },
        )
        .await,
        "training.enabled",
    );
    off.stop().await;

    // A bank that trains, with a saved model to serve.
    let model_dir = pki.path("ma2");
    let opts = LoadOptions {
        label_column: Some("y".into()),
        limit: Some(3_000),
        ..Default::default()
    };
    let data = FeatureTable::load(&data_file("guest"), &opts).unwrap();
    let enc = Encoder::fit(data.features().view());
    let width = enc.width() as u32;
    let baseline = ndarray::Array1::zeros(enc.width());
    BottomModel::new(enc, baseline, &[8], 2, 1)
        .save(&model_dir, "m")
        .unwrap();
    let mut pc = party_config("bank-a", atls, addr, model_dir, "guest");
    pc.training.max_peer_customers = 3;
    let on = start_party(pc);
    let link = hostile(&pki, &listener).await;
    let allowed = match ask(&link, Request::Describe).await {
        Response::Info(i) => i.max_emb_dim,
        other => panic!("{other:?}"),
    };
    assert!(
        allowed > 0 && allowed < width,
        "announced {allowed}, input width {width}"
    );

    // A linear bottom model (no hidden layer) it could invert: refused.
    let linear = Request::TrainInit {
        session: 2,
        spec: spec(vec![], 4),
        fit: vec![0],
    };
    refused(&ask(&link, linear).await, "training.min_hidden_layers");
    // An embedding as wide as the input (within the layer limit): refused.
    let wide = Request::TrainInit {
        session: 2,
        spec: spec(vec![32], width),
        fit: vec![0],
    };
    refused(&ask(&link, wide).await, "encoded input width");

    // Explanations: only for customers embedded moments before, once per embedding.
    assert!(matches!(
        ask(&link, Request::Load { model_id: "m".into() }).await,
        Response::Model { .. }
    ));
    let id = data.ids()[0].clone();
    let explain = || Request::Explain {
        model_id: "m".into(),
        ids: vec![id.clone()],
        grads: Matrix {
            rows: 1,
            cols: 2,
            data: vec![1.0, -1.0],
        },
    };
    refused(&ask(&link, explain()).await, "embedded moments before");
    assert!(matches!(
        ask(
            &link,
            Request::Embed {
                model_id: "m".into(),
                ids: vec![id.clone()]
            }
        )
        .await,
        Response::Embeddings { .. }
    ));
    assert!(matches!(ask(&link, explain()).await, Response::Reasons { .. }));
    refused(&ask(&link, explain()).await, "once per embedding");

    // PSI as a membership oracle: re-blinding guessed ids is capped per alignment
    // (training.max_peer_customers, 3 here) and over once handles are assigned.
    assert!(matches!(
        ask(&link, Request::PsiInit { session: 9 }).await,
        Response::PsiReady { .. }
    ));
    let guesses =
        tessera_common::psi::blind_ids(&tessera_common::psi::PsiKey::random(), &["25115", "2346", "7"]);
    let reblind = |points: &[u8]| Request::PsiReblind {
        session: 9,
        points: points.to_vec(),
    };
    assert!(matches!(
        ask(&link, reblind(&guesses)).await,
        Response::Points { .. }
    ));
    refused(
        &ask(&link, reblind(&guesses[..32])).await,
        "training.max_peer_customers",
    );
    assert!(matches!(
        ask(
            &link,
            Request::PsiAssign {
                session: 9,
                positions: vec![0],
                handles: vec![1],
            }
        )
        .await,
        Response::Ack
    ));
    refused(&ask(&link, reblind(&guesses[..32])).await, "re-blinding is over");
    on.stop().await;
}
