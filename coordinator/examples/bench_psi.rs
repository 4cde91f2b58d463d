//! Private set intersection throughput: two in-process parties with `N` customers each and
//! the given overlap, aligned by the same driver training uses (rayon across all cores inside
//! each party's work). Prints wall time and ids aligned per second (both parties' ids).
//! `cargo run --release -p tessera-coordinator --example bench_psi -- [N] [OVERLAP]`
//! (defaults 1,000,000 and 0.7). Used by `scripts/bench-training`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::Array2;
use tessera_common::data::FeatureTable;
use tessera_common::federation::InMemory;
use tessera_common::wire::PartyId;
use tessera_coordinator::train::align::align_federation;
use tessera_party::config::PartyLimits;
use tessera_party::service::PartyService;

fn party(
    name: &str,
    ids: Vec<String>,
    labels: bool,
    dir: &std::path::Path,
) -> anyhow::Result<Arc<PartyService>> {
    let n = ids.len();
    let labels = labels.then(|| vec![0u8; n]);
    let data = FeatureTable::new(ids, vec!["x".into()], Array2::zeros((n, 1)), labels)?;
    Ok(Arc::new(
        PartyService::new(
            PartyId::new(name)?,
            data,
            dir.to_path_buf(),
            PartyLimits::default(),
        )
        .with_policy(tessera_party::policy::TrainingPolicy::allow()),
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().map(|s| s.parse()).transpose()?.unwrap_or(1_000_000);
    let overlap: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(0.7);
    anyhow::ensure!((0.0..=1.0).contains(&overlap), "overlap must be in [0, 1]");
    let shared = (n as f64 * overlap) as usize;
    // Bank customer numbers as strings; the second bank's ids start where the overlap ends.
    let a: Vec<String> = (0..n).map(|i| format!("CUST{i:010}")).collect();
    let b: Vec<String> = (n - shared..2 * n - shared)
        .map(|i| format!("CUST{i:010}"))
        .collect();
    let dir = tempfile::tempdir()?;
    let mut fed = InMemory::new();
    for s in [
        party("bank-a", a, true, dir.path())?,
        party("bank-b", b, false, dir.path())?,
    ] {
        fed.add(s.id().clone(), s);
    }
    let parties = fed.ids();
    let t = Instant::now();
    let aligned = align_federation(&fed, &parties, 0, 1, Duration::from_secs(600)).await?;
    let secs = t.elapsed().as_secs_f64();
    let found = aligned.membership[1].iter().filter(|&&m| m).count();
    anyhow::ensure!(found == shared, "intersection {found}, expected {shared}");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "psi: {n} x {n} ids, overlap {shared}, {threads} threads: {secs:.2} s, {:.0} ids/s (both sides' ids / wall time)",
        (2 * n) as f64 / secs
    );
    Ok(())
}
