//! Mutual TLS and identity over real QUIC: only certificates from the federation CA, naming
//! the right identity, get in, in both directions.

mod support;

use std::time::Duration;

use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;

/// Starts a coordinator expecting bank-a and bank-b with the given TLS directory.
async fn coordinator(pki: &Pki, tls: std::path::PathBuf) -> Coordinator {
    Coordinator::start(coordinator_config(
        tls,
        pki.path("models-c"),
        &["bank-a", "bank-b"],
    ))
    .await
    .unwrap()
}

/// Runs a listener with the federation's coordinator certificate, dials it as `claim` with
/// `tls`, and returns why the listener refused the connection.
async fn refused_by_listener(pki: &Pki, tls: &std::path::Path, claim: &str) -> String {
    use tessera_common::transport::{Dialer, Listener, TlsMaterial, TlsPaths};
    let s = fast_transport();
    let cmat = TlsMaterial::load(&TlsPaths::in_dir(&pki.leaf(
        "coordinator-l",
        Identity::Coordinator,
        false,
    )))
    .unwrap();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), &cmat, &s).unwrap();
    let addr = listener.local_addr().unwrap();
    let pmat = TlsMaterial::load(&TlsPaths::in_dir(tls)).unwrap();
    let dialer = Dialer::new(addr, &pmat, &s).unwrap();
    let claim = pid(claim);
    let dial = tokio::spawn(async move {
        dialer
            .connect(addr, "localhost", &claim, 1, &fast_transport())
            .await
            .is_ok()
    });
    let incoming = listener.accept().await.unwrap();
    let expected = [pid("bank-a"), pid("bank-b")];
    let why = match incoming.accept(&expected, &|_| None, &s).await {
        Ok(_) => panic!("the listener let {} in", tls.display()),
        Err(e) => e.to_string(),
    };
    assert!(!dial.await.unwrap(), "the dialer believes it got in");
    why
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_with_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let c = coordinator(&pki, pki.leaf("coordinator", Identity::Coordinator, false)).await;
    let tls = pki.leaf("bank-a-foreign", Identity::Party(pid("bank-a")), true);
    // The coordinator's side of the refusal, seen through the project's own listener: the
    // client certificate does not chain to the federation CA.
    let why = refused_by_listener(&pki, &tls, "bank-a").await;
    assert!(
        why.contains("invalid peer certificate")
            && (why.contains("BadSignature") || why.contains("UnknownIssuer")),
        "{why}"
    );
    let party = start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest"));
    assert_refused(&c, party, "bank-a", "untrusted_chain").await;
    // Control: the same party with a proper certificate gets in.
    let tls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let mut ok = start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest"));
    assert!(ok.connects_within(Duration::from_secs(10)).await);
    assert!(c.serving.registry().is_connected(&pid("bank-a")));
    ok.stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_with_certificate_from_another_ca_is_refused_by_the_party() {
    let pki = Pki::new();
    let c = coordinator(&pki, pki.leaf("coordinator-foreign", Identity::Coordinator, true)).await;
    let tls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let why = refusal(c.quic_addr, &tls, "bank-a").await.to_string();
    assert!(
        why.contains("invalid peer certificate")
            && (why.contains("BadSignature") || why.contains("UnknownIssuer")),
        "{why}"
    );
    let party = start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest"));
    assert_refused(&c, party, "bank-a", "peer_untrusted_chain").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_for_another_party_is_refused() {
    let pki = Pki::new();
    let c = coordinator(&pki, pki.leaf("coordinator", Identity::Coordinator, false)).await;
    // bank-b's certificate, configured as bank-a.
    let tls = pki.leaf("bank-b", Identity::Party(pid("bank-b")), false);
    let why = refusal(c.quic_addr, &tls, "bank-a").await.to_string();
    assert!(
        why.contains("(IdentityMismatch)") && why.contains("bank-b"),
        "{why}"
    );
    let party = start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest"));
    assert_refused(&c, party, "bank-a", "identity_mismatch").await;
    assert!(!c.serving.registry().is_connected(&pid("bank-b")));
    // A valid certificate for a party this federation does not list.
    let tls = pki.leaf("bank-z", Identity::Party(pid("bank-z")), false);
    let why = refusal(c.quic_addr, &tls, "bank-z").await.to_string();
    assert!(why.contains("(UnknownParty)"), "{why}");
    let party = start_party(party_config("bank-z", tls, c.quic_addr, pki.path("m"), "guest"));
    assert_refused(&c, party, "bank-z", "unknown_party").await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_certificate_cannot_pose_as_the_coordinator() {
    let pki = Pki::new();
    // The "coordinator" presents bank-b's certificate (client-auth only, party identity).
    let c = coordinator(
        &pki,
        pki.leaf("bank-b-as-coord", Identity::Party(pid("bank-b")), false),
    )
    .await;
    let tls = pki.leaf("bank-a", Identity::Party(pid("bank-a")), false);
    let why = refusal(c.quic_addr, &tls, "bank-a").await.to_string();
    assert!(
        why.contains("does not allow extended key usage for server authentication"),
        "{why}"
    );
    let party = start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest"));
    assert_refused(&c, party, "bank-a", "peer_key_usage").await;
    c.shutdown().await;
}
