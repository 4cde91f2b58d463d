//! HTTP load for the serving benchmark. Open loop for `/v1/score`: requests are started on a
//! fixed schedule (`--rate` per second for `--seconds`), whatever the answers do, and each
//! latency is measured from the request's *scheduled* start (so a stall shows up in the
//! percentiles instead of slowing the load: no coordinated omission). The generator's own
//! timer slop (tokio timers have millisecond resolution) is not counted: a request that starts
//! late is measured from its actual start, and the number of requests started more than 5 ms
//! behind schedule is reported as `late` (when it is large the generator, not the server, was
//! the bottleneck). Closed loop for
//! `/v1/score/batch`: `--concurrency` clients send batches of `--batch` ids back to back.
//! Prints one JSON line. Customer ids are drawn in turn from `--ids` (one per line).
//!
//! `loadgen --base http://127.0.0.1:8080 --ids ids.txt single --rate 1000 --seconds 10`
//! `loadgen --base http://127.0.0.1:8080 --ids ids.txt batch --batch 1000 --concurrency 2 --seconds 10`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    /// Base URL of the coordinator.
    #[arg(long)]
    base: String,
    /// File of customer ids, one per line.
    #[arg(long)]
    ids: std::path::PathBuf,
    /// Ask for scores without reason codes (`"explain": false`: one round trip to the banks).
    #[arg(long)]
    no_explain: bool,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Single scores at a fixed rate.
    Single {
        #[arg(long)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Most requests in flight; beyond it a scheduled request counts as failed.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: usize,
    },
    /// Batches as fast as they are answered.
    Batch {
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[arg(long, default_value_t = 2)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let ids: Arc<Vec<String>> = Arc::new(
        std::fs::read_to_string(&cli.ids)
            .context("reading ids")?
            .lines()
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
    );
    anyhow::ensure!(!ids.is_empty(), "no ids");
    // The API key, if the coordinator wants one: TESSERA_API_KEY.
    let mut headers = reqwest::header::HeaderMap::new();
    if let Ok(key) = std::env::var("TESSERA_API_KEY") {
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).context("TESSERA_API_KEY")?,
        );
    }
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(10))
        .build()?;
    match cli.mode {
        Mode::Single {
            rate,
            seconds,
            max_in_flight,
        } => {
            let url = format!("{}/v1/score", cli.base);
            let total = rate * seconds;
            let gate = Arc::new(tokio::sync::Semaphore::new(max_in_flight));
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Result<f64, ()>>();
            let start = Instant::now() + Duration::from_millis(100);
            let late = Arc::new(AtomicU64::new(0));
            for i in 0..total {
                let at = start + Duration::from_nanos(i * 1_000_000_000 / rate);
                tokio::time::sleep_until(at.into()).await;
                let Ok(permit) = gate.clone().try_acquire_owned() else {
                    let _ = tx.send(Err(()));
                    continue;
                };
                let (client, url, tx) = (client.clone(), url.clone(), tx.clone());
                let body = format!(
                    "{{\"customer_id\":\"{}\",\"explain\":{}}}",
                    ids[i as usize % ids.len()],
                    !cli.no_explain
                );
                let late = late.clone();
                tokio::spawn(async move {
                    let sent = Instant::now();
                    if sent.duration_since(at) > Duration::from_millis(5) {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    let r = client
                        .post(url)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let ok = match r {
                        Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                        Err(_) => false,
                    };
                    let _ = tx.send(if ok {
                        Ok(at.elapsed().as_secs_f64() * 1e3)
                    } else {
                        Err(())
                    });
                    drop(permit);
                });
            }
            drop(tx);
            let mut lat = Vec::with_capacity(total as usize);
            let mut errors = 0u64;
            while let Some(r) = rx.recv().await {
                match r {
                    Ok(ms) => lat.push(ms),
                    Err(()) => errors += 1,
                }
            }
            let wall = start.elapsed().as_secs_f64();
            lat.sort_by(f64::total_cmp);
            println!(
                "{}",
                serde_json::json!({
                    "mode": "single", "explain": !cli.no_explain, "target_rate": rate, "seconds": seconds, "requests": total,
                    "ok": lat.len(), "errors": errors, "achieved_rate": lat.len() as f64 / wall,
                    "late": late.load(Ordering::Relaxed),
                    "p50_ms": pct(&lat, 0.5), "p90_ms": pct(&lat, 0.9), "p99_ms": pct(&lat, 0.99),
                    "max_ms": lat.last().copied().unwrap_or(f64::NAN),
                })
            );
        }
        Mode::Batch {
            batch,
            concurrency,
            seconds,
        } => {
            let url = format!("{}/v1/score/batch", cli.base);
            let no_explain = cli.no_explain;
            let scored = Arc::new(AtomicU64::new(0));
            let errors = Arc::new(AtomicU64::new(0));
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let t0 = Instant::now();
            let mut tasks = Vec::new();
            for w in 0..concurrency {
                let (client, url, ids) = (client.clone(), url.clone(), ids.clone());
                let (scored, errors) = (scored.clone(), errors.clone());
                tasks.push(tokio::spawn(async move {
                    let mut k = w * batch;
                    while Instant::now() < deadline {
                        let chunk: Vec<&String> = (0..batch).map(|j| &ids[(k + j) % ids.len()]).collect();
                        k += batch * concurrency;
                        let r = client
                            .post(&url)
                            .json(&serde_json::json!({ "customer_ids": chunk, "explain": !no_explain }))
                            .send()
                            .await;
                        match r {
                            Ok(r) if r.status().is_success() => match r.json::<serde_json::Value>().await {
                                Ok(v) => {
                                    let n = v["results"]
                                        .as_array()
                                        .map_or(0, |a| a.iter().filter(|i| i["result"].is_object()).count());
                                    scored.fetch_add(n as u64, Ordering::Relaxed);
                                }
                                Err(_) => {
                                    errors.fetch_add(1, Ordering::Relaxed);
                                }
                            },
                            _ => {
                                errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let wall = t0.elapsed().as_secs_f64();
            let n = scored.load(Ordering::Relaxed);
            println!(
                "{}",
                serde_json::json!({
                    "mode": "batch", "explain": !cli.no_explain, "batch": batch, "concurrency": concurrency, "seconds": wall,
                    "customers_scored": n, "customers_per_second": n as f64 / wall,
                    "failed_requests": errors.load(Ordering::Relaxed),
                })
            );
        }
    }
    Ok(())
}
