//! Kubernetes-shaped behaviour over real QUIC on loopback: several coordinator replicas that
//! every party finds and serves, and one live party process per bank identity.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;
use tessera_certs::Identity;
use tessera_common::protocol::ProtocolError;
use tessera_common::transport::{Dialer, TlsMaterial, TlsPaths, TransportError};
use tessera_common::wire::RejectCode;
use tessera_coordinator::app::Coordinator;
use tessera_coordinator::config::CoordinatorConfig;
use tessera_party::config::Discovery;

async fn score(client: &reqwest::Client, c: &Coordinator) -> Value {
    client
        .post(format!("http://{}/v1/score", c.http_addr))
        .json(&serde_json::json!({ "customer_id": "25115" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A free UDP port on 127.0.0.1 (bound, then released), for a replica started later.
fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

async fn replica(cfg: &CoordinatorConfig, port: u16) -> Coordinator {
    let mut cfg = cfg.clone();
    cfg.listen_quic = format!("127.0.0.1:{port}").parse().unwrap();
    Coordinator::start(cfg).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parties_serve_every_replica_and_find_new_ones() {
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let cfg = coordinator_config(ctls, pki.path("models-c"), &["bank-a", "bank-b"]);
    let ports = [free_udp_port(), free_udp_port(), free_udp_port()];
    let c1 = replica(&cfg, ports[0]).await;
    let c2 = replica(&cfg, ports[1]).await;
    let addrs = ports.map(|p| format!("127.0.0.1:{p}")).join(",");
    let mut parties = Vec::new();
    for (id, which) in [("bank-a", "guest"), ("bank-b", "host")] {
        let tls = pki.leaf(id, Identity::Party(pid(id)), false);
        let mut pc = party_config(id, tls, c1.quic_addr, pki.path(&format!("m-{id}")), which);
        pc.coordinator_addr = addrs.clone();
        pc.coordinator_discovery = Discovery::Every;
        parties.push(start_party(pc));
    }
    assert!(c1.wait_for_parties(Some(Duration::from_secs(15))).await);
    assert!(c2.wait_for_parties(Some(Duration::from_secs(15))).await);
    // One replica trains (as a Job would); the other serves the saved model.
    c1.train(Some("m".into()), |_| {}).await.unwrap();
    c2.activate_saved().await.unwrap();
    let client = api_client();
    for c in [&c1, &c2] {
        let url = format!("http://{}/readyz", c.http_addr);
        assert!(poll_ready_full(&client, &url, Duration::from_secs(10)).await);
        let v = score(&client, c).await;
        assert_eq!(v["degraded"], false, "{v}");
    }
    // One replica goes away: the other keeps scoring in full.
    c1.shutdown().await;
    for _ in 0..5 {
        let v = score(&client, &c2).await;
        assert_eq!(v["degraded"], false, "{v}");
    }
    // A replica is added where discovery points: the parties find it.
    let c3 = replica(&cfg, ports[2]).await;
    c3.activate_saved().await.unwrap();
    assert!(c3.wait_for_parties(Some(Duration::from_secs(15))).await);
    let url = format!("http://{}/readyz", c3.http_addr);
    assert!(poll_ready_full(&client, &url, Duration::from_secs(10)).await);
    let v = score(&client, &c3).await;
    assert_eq!(v["degraded"], false, "{v}");
    for p in parties {
        p.stop().await;
    }
    c2.shutdown().await;
    c3.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_of_a_bank_is_refused_until_the_first_goes() {
    let pki = Pki::new();
    let ctls = pki.leaf("coordinator", Identity::Coordinator, false);
    let c = Coordinator::start(coordinator_config(
        ctls,
        pki.path("models-c"),
        &["bank-a", "bank-b"],
    ))
    .await
    .unwrap();
    let a = start_party(party_config(
        "bank-a",
        pki.leaf("bank-a", Identity::Party(pid("bank-a")), false),
        c.quic_addr,
        pki.path("ma"),
        "guest",
    ));
    let btls = pki.leaf("bank-b", Identity::Party(pid("bank-b")), false);
    let mut first = start_party(party_config(
        "bank-b",
        btls.clone(),
        c.quic_addr,
        pki.path("mb"),
        "host",
    ));
    assert!(first.connects_within(Duration::from_secs(10)).await);
    assert!(c.wait_for_parties(Some(Duration::from_secs(10))).await);

    // Another process holding bank-b's certificate: refused with the specific reason.
    let settings = fast_transport();
    let material = TlsMaterial::load(&TlsPaths::in_dir(&btls)).unwrap();
    let dialer = Dialer::new(c.quic_addr, &material, &settings).unwrap();
    let refused = dialer
        .connect(c.quic_addr, "localhost", &pid("bank-b"), 424242, &settings)
        .await;
    match refused {
        Err(TransportError::Protocol(ProtocolError::Rejected(r))) => {
            assert_eq!(r.code, RejectCode::AlreadyConnected);
            assert!(r.message.contains("bank-b"), "{}", r.message);
        }
        other => panic!("expected AlreadyConnected, got {other:?}"),
    }
    // A standby process of bank-b keeps retrying while training runs on the first one:
    // training is not disturbed by it.
    let mut standby = start_party(party_config("bank-b", btls, c.quic_addr, pki.path("mb"), "host"));
    assert!(!standby.connects_within(Duration::from_millis(800)).await);
    c.train(Some("m".into()), |_| {}).await.unwrap();
    // The first process goes: the standby takes over and scores are full again.
    first.stop().await;
    assert!(standby.connects_within(Duration::from_secs(10)).await);
    let client = api_client();
    let url = format!("http://{}/readyz", c.http_addr);
    assert!(poll_ready_full(&client, &url, Duration::from_secs(10)).await);
    let v = score(&client, &c).await;
    assert_eq!(v["degraded"], false, "{v}");
    standby.stop().await;
    a.stop().await;
    c.shutdown().await;
}
