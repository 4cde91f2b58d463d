//! The HTTP server is bounded against slow and idle clients: headers and bodies within their
//! time-outs, at most `http.max_connections` connections, and a shutdown that a client cannot
//! hold open past the grace period.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tessera_certs::Identity;
use tessera_coordinator::app::Coordinator;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(tweak: impl FnOnce(&mut tessera_coordinator::config::HttpSettings)) -> (Pki, Coordinator) {
    let pki = Pki::new();
    let tls = pki.leaf("coordinator", Identity::Coordinator, false);
    let mut cfg = coordinator_config(tls, pki.path("models"), &["bank-a"]);
    tweak(&mut cfg.http);
    let c = Coordinator::start(cfg).await.unwrap();
    (pki, c)
}

/// Reads until the server closes the connection (or `limit` passes); what it sent.
async fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(limit, s.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_slow_with_its_headers_or_body_is_cut_off() {
    let (_pki, c) = start(|h| {
        h.header_timeout_ms = 300;
        h.body_timeout_ms = 300;
    })
    .await;
    // A connection that sends nothing at all: closed after the header time-out too.
    let mut s = TcpStream::connect(c.http_addr).await.unwrap();
    let started = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_some(), "a silent client was not cut off in 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Half a request line, then nothing: closed after the header time-out.
    let mut s = TcpStream::connect(c.http_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(got.is_some(), "a slow-header client was not cut off in 5 s");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // Headers promising a body that never comes: 408 after the body time-out.
    let mut s = TcpStream::connect(c.http_addr).await.unwrap();
    let head = format!(
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"customer"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");

    // An idle keep-alive connection is closed too.
    let mut s = TcpStream::connect(c.http_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5))
        .await
        .unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let (_pki, c) = start(|h| {
        h.max_connections = 2;
        h.header_timeout_ms = 60_000;
    })
    .await;
    let holders = [
        TcpStream::connect(c.http_addr).await.unwrap(),
        TcpStream::connect(c.http_addr).await.unwrap(),
    ];
    // Give the server a moment to accept both.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(700))
        .build()
        .unwrap();
    let url = format!("http://{}/healthz", c.http_addr);
    let e = client
        .get(&url)
        .send()
        .await
        .expect_err("a third connection was served");
    assert!(e.is_timeout(), "{e}");
    drop(holders);
    let r = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_cannot_hold_shutdown_past_the_grace_period() {
    let (_pki, c) = start(|h| {
        h.header_timeout_ms = 60_000;
        h.body_timeout_ms = 60_000;
        h.shutdown_grace_ms = 500;
    })
    .await;
    // A request whose body trickles in: in flight when shutdown starts.
    let mut s = TcpStream::connect(c.http_addr).await.unwrap();
    let head = format!(
        "POST /v1/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TEST_KEY}\r\nContent-Length: 100\r\n\r\n{{"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(10), c.shutdown())
        .await
        .expect("shutdown held open by a slow client");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "did not wait for in-flight requests: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(s);
}
