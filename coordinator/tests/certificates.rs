//! The certificate lifecycle over real QUIC: revocation (at handshake and while connected),
//! expiry, not-yet-valid, other federations, and rotation under load without failed requests.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::*;
use tessera_certs::crl::{self, Reason};
use tessera_certs::leaf::{self, LeafRequest};
use tessera_certs::pki::KeyType;
use tessera_certs::{Identity, inspect::CertInfo};
use tessera_coordinator::app::Coordinator;

async fn coordinator(pki: &Pki) -> Coordinator {
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    Coordinator::start(coordinator_config(
        tls,
        pki.path("models-c"),
        &["bank-a", "bank-b"],
    ))
    .await
    .unwrap()
}

fn party_cert(pki: &Pki, name: &str, id: &str) -> std::path::PathBuf {
    pki.leaf(name, Identity::Party(pid(id)), false)
}

/// Publishes the PKI's current CRL to the given holders' directories.
fn publish_crl(pki: &Pki, dirs: &[&str]) {
    for d in dirs {
        std::fs::copy(pki.path("ca/crl.pem"), pki.path(d).join("crl.pem")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_party_is_refused_at_handshake() {
    let pki = Pki::new();
    let tls = party_cert(&pki, "bank-a", "bank-a");
    crl::revoke_cert(&pki.pki(), &tls.join("tls.crt"), Reason::KeyCompromise).unwrap();
    let c = coordinator(&pki).await; // its directory gets the CRL listing bank-a
    assert_refused(
        &c,
        start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest")),
        "bank-a",
        "revoked",
    )
    .await;
    // bank-b, not revoked, gets in under the same CRL.
    let tls = party_cert(&pki, "bank-b", "bank-b");
    let mut b = start_party(party_config("bank-b", tls, c.quic_addr, pki.path("mb"), "host"));
    assert!(b.connects_within(Duration::from_secs(10)).await);
    b.stop().await;
    c.shutdown().await;
}

#[tokio::test]
async fn a_crl_past_its_next_update_is_refused_at_start() {
    let pki = Pki::new();
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    // The federation's intermediate signs a CRL whose next update was an hour ago.
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::days(31),
        next_update: now - time::Duration::hours(1),
        crl_number: rcgen::SerialNumber::from_slice(&[1]),
        issuing_distribution_point: None,
        revoked_certs: Vec::new(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let stale = params.signed_by(&pki.pki().intermediate().unwrap()).unwrap();
    std::fs::write(tls.join("crl.pem"), stale.pem().unwrap()).unwrap();
    let cfg = coordinator_config(tls, pki.path("models-c"), &["bank-a"]);
    match Coordinator::start(cfg).await {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains("crl.pem") && e.contains("expired") && e.contains("tessera-certs crl"),
                "{e}"
            );
        }
        Ok(_) => panic!("started with a stale CRL"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_revoked_while_connected_is_cut_off_within_the_reload_interval() {
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    let tls = party_cert(&pki, "bank-a", "bank-a");
    let mut a = start_party(party_config(
        "bank-a",
        tls.clone(),
        c.quic_addr,
        pki.path("m"),
        "guest",
    ));
    assert!(a.connects_within(Duration::from_secs(10)).await);
    assert!(c.serving.registry().is_connected(&pid("bank-a")));

    crl::revoke_cert(&pki.pki(), &tls.join("tls.crt"), Reason::KeyCompromise).unwrap();
    let t0 = Instant::now();
    publish_crl(&pki, &["coordinator"]); // no restart: the coordinator re-reads it
    while c.serving.registry().is_connected(&pid("bank-a")) {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "still connected {:?} after the CRL changed",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // It keeps dialling; every new handshake is refused.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!c.serving.registry().is_connected(&pid("bank-a")));
    a.stop().await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    for (name, offset, reason) in [
        ("expired", -3 * 86_400, "expired"),
        ("not-yet-valid", 86_400, "not_yet_valid"),
    ] {
        let mut req = LeafRequest::new(FED, Identity::Party(pid("bank-a")));
        req.not_before_offset_secs = offset;
        req.days = 1;
        let tls = pki.leaf_with(name, req, "ca");
        assert_refused(
            &c,
            start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest")),
            "bank-a",
            reason,
        )
        .await;
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_from_another_federation_is_refused() {
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    let tls = pki.leaf_with(
        "other-fed",
        LeafRequest::new("other", Identity::Party(pid("bank-a"))),
        "other-fed-ca",
    );
    assert_refused(
        &c,
        start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest")),
        "bank-a",
        "untrusted_chain",
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_of_our_ca_naming_another_federation_is_refused_by_the_federation_check() {
    // Signed by our own intermediate, so the chain verifies: only the `spiffe://` federation
    // check can refuse it (tessera-certs would not issue it; made directly with rcgen).
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://other/party/bank-a").unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
    let cert = params
        .signed_by(&key, &pki.pki().intermediate().unwrap())
        .unwrap();
    let dir = pki.path("other-federation");
    std::fs::create_dir_all(&dir).unwrap();
    let chain = format!("{}{}", cert.pem(), pki.pki().intermediate_pem().unwrap());
    std::fs::write(dir.join("tls.crt"), chain).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    pki.install_trust(&dir);
    assert_refused(
        &c,
        start_party(party_config("bank-a", dir, c.quic_addr, pki.path("m"), "guest")),
        "bank-a",
        "identity",
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn party_refuses_a_revoked_coordinator() {
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    crl::revoke_cert(
        &pki.pki(),
        &pki.path("coordinator/tls.crt"),
        Reason::KeyCompromise,
    )
    .unwrap();
    let tls = party_cert(&pki, "bank-a", "bank-a"); // gets the CRL listing the coordinator
    assert_refused(
        &c,
        start_party(party_config("bank-a", tls, c.quic_addr, pki.path("m"), "guest")),
        "bank-a",
        "peer_revoked",
    )
    .await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_under_load_loses_no_request() {
    let pki = Pki::new();
    let c = coordinator(&pki).await;
    let addr = c.quic_addr;
    let mut a = start_party(party_config(
        "bank-a",
        party_cert(&pki, "bank-a", "bank-a"),
        addr,
        pki.path("ma"),
        "guest",
    ));
    let mut b = start_party(party_config(
        "bank-b",
        party_cert(&pki, "bank-b", "bank-b"),
        addr,
        pki.path("mb"),
        "host",
    ));
    assert!(
        a.connects_within(Duration::from_secs(10)).await && b.connects_within(Duration::from_secs(10)).await
    );
    assert!(c.wait_for_parties(Some(Duration::from_secs(10))).await);
    c.train(Some("m".into()), |_| {}).await.unwrap();
    let serial_of = |c: &Coordinator, p: &str| {
        c.serving
            .registry()
            .peer_certificates()
            .into_iter()
            .find(|(q, _)| q.as_str() == p)
            .map(|(_, c)| c.serial)
    };
    let before_a = serial_of(&c, "bank-a").unwrap();
    let coord_before = CertInfo::from_file(&pki.path("coordinator/tls.crt"))
        .unwrap()
        .serial;

    // A bounded stream of scoring requests (at most 60 s), all of which must succeed.
    let url = format!("http://{}/v1/score", c.http_addr);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            let client = api_client();
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                let r = client
                    .post(&url)
                    .json(&serde_json::json!({"customer_id": "25115"}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(r) => {
                        eprintln!("failed: {} {}", r.status(), r.text().await.unwrap_or_default());
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(e) => {
                        eprintln!("failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Rotate bank-a's and the coordinator's certificates on disk; nothing is restarted.
    leaf::rotate(&pki.pki(), &pki.path("bank-a"), 90, KeyType::EcdsaP256).unwrap();
    leaf::rotate(&pki.pki(), &pki.path("coordinator"), 90, KeyType::EcdsaP256).unwrap();
    // The coordinator sees bank-a on its new certificate once the party reconnected.
    let t0 = Instant::now();
    while serial_of(&c, "bank-a").as_deref() == Some(before_a.as_str()) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "bank-a never reconnected with its rotated certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The coordinator serves its new certificate to new connections (and reports it).
    let coord_after = CertInfo::from_file(&pki.path("coordinator/tls.crt"))
        .unwrap()
        .serial;
    assert_ne!(coord_before, coord_after);
    let metrics = reqwest::get(format!("http://{}/metrics", c.http_addr))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("tessera_certificate_expiry_seconds{{identity=\"coordinator\",role=\"self\",serial=\"{coord_after}\"}}")),
        "{metrics}"
    );
    assert!(metrics.contains("role=\"peer\""));
    // The party reports its own new certificate and the coordinator's it connected to.
    let party_text = a.metrics.render("bank-a");
    let a_now = CertInfo::from_file(&pki.path("bank-a/tls.crt")).unwrap().serial;
    assert!(
        party_text.contains(&format!("identity=\"bank-a\",role=\"self\",serial=\"{a_now}\"")),
        "{party_text}"
    );
    assert!(
        party_text.contains("identity=\"coordinator\",role=\"peer\""),
        "{party_text}"
    );
    assert!(party_text.contains("tessera_bank_requests_total{kind=\"embed\",outcome=\"ok\"}"));
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 20, "only {ok} requests ran");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during rotation",
        ok + failed
    );
    a.stop().await;
    b.stop().await;
    c.shutdown().await;
}
