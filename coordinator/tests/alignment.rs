//! Private set intersection through the training driver, in-process: the intersection equals
//! the plain set intersection, no message carries a raw customer id, and training over the
//! aligned handles sees every party's customers.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ndarray::Array2;
use proptest::prelude::*;
use tessera_common::data::FeatureTable;
use tessera_common::federation::Federation;
use tessera_common::federation::InMemory;
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{self, FrameLimits, Message, PartyId, Request, Response};
use tessera_coordinator::config::TrainingConfig;
use tessera_coordinator::train::align::align_federation;
use tessera_party::config::PartyLimits;
use tessera_party::service::PartyService;

/// A federation that keeps every frame it carries, encoded as it would go on the wire.
struct Recording {
    inner: InMemory,
    frames: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Federation for Recording {
    fn fanout<F>(
        &self,
        parties: &[PartyId],
        request_for: F,
        timeout: Duration,
        trace: &[String],
    ) -> impl Future<Output = Vec<(PartyId, Outcome<Response>)>> + Send
    where
        F: Fn(&PartyId) -> Request + Send + Sync,
    {
        let frames = self.frames.clone();
        let traced: Vec<String> = trace.to_vec();
        let record = move |p: &PartyId| {
            let r = request_for(p);
            let m = if traced.is_empty() {
                Message::Request(r.clone())
            } else {
                Message::Traced(wire::Traced::new(&traced, r.clone()))
            };
            let bytes = wire::encode(&m, &FrameLimits::default()).unwrap();
            frames.lock().unwrap().push(bytes);
            r
        };
        let frames = self.frames.clone();
        let fut = self.inner.fanout(parties, record, timeout, trace);
        async move {
            let out = fut.await;
            for (_, o) in &out {
                if let Outcome::Answered(r) = o {
                    let bytes = wire::encode(&Message::Response(r.clone()), &FrameLimits::default()).unwrap();
                    frames.lock().unwrap().push(bytes);
                }
            }
            out
        }
    }
}

fn party(name: &str, ids: &[String], labels: bool, dir: &std::path::Path) -> Arc<PartyService> {
    // Features derived from the id's position, labels alternating: enough to train on.
    let x = Array2::from_shape_fn((ids.len(), 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
    let labels = labels.then(|| (0..ids.len()).map(|i| (i % 3 == 0) as u8).collect());
    let data = FeatureTable::new(ids.to_vec(), vec!["f0".into(), "f1".into()], x, labels).unwrap();
    Arc::new(
        PartyService::new(
            PartyId::new(name).unwrap(),
            data,
            dir.to_path_buf(),
            PartyLimits::default(),
        )
        .with_policy(tessera_party::policy::TrainingPolicy::allow()),
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Aligns three parties and checks the result against the plain intersections, and that no
/// frame contains any of `needles` (the ids, or a prefix every id carries).
async fn check(sets: [Vec<String>; 3], needles: &[String]) {
    let names = ["lender", "bank-b", "bank-c"];
    let dir = tempfile::tempdir().unwrap();
    let services: Vec<Arc<PartyService>> = (0..3)
        .map(|i| party(names[i], &sets[i], i == 0, dir.path()))
        .collect();
    let mut inner = InMemory::new();
    for s in &services {
        inner.add(s.id().clone(), s.clone());
    }
    let fed = Recording {
        inner,
        frames: Arc::default(),
    };
    let parties: Vec<PartyId> = names.iter().map(|n| PartyId::new(*n).unwrap()).collect();
    let aligned = align_federation(&fed, &parties, 0, 77, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(aligned.n, sets[0].len());
    let lender = &services[0];
    // Every handle names one distinct customer of the lender.
    let by_handle: Vec<String> = (0..aligned.n as u64)
        .map(|h| lender.aligned_customer(h).unwrap())
        .collect();
    assert_eq!(
        by_handle.iter().collect::<BTreeSet<_>>(),
        sets[0].iter().collect::<BTreeSet<_>>()
    );
    for j in 1..3 {
        let plain: BTreeSet<&String> = sets[0].iter().filter(|id| sets[j].contains(id)).collect();
        let mut found = BTreeSet::new();
        for (h, &member) in aligned.membership[j].iter().enumerate() {
            let at_j = services[j].aligned_customer(h as u64);
            if member {
                // Both parties resolve the handle to the same customer.
                assert_eq!(at_j.as_deref(), Some(by_handle[h].as_str()));
                found.insert(&by_handle[h]);
            } else {
                assert_eq!(at_j, None);
            }
        }
        assert_eq!(found, plain, "party {j}");
    }
    // No frame, in either direction, contains any customer id.
    let frames = fed.frames.lock().unwrap();
    assert!(!frames.is_empty());
    for id in needles {
        for f in frames.iter() {
            assert!(!contains(f, id.as_bytes()), "a frame contains {id}");
        }
    }
}

fn id_set(n: std::ops::Range<usize>) -> impl Strategy<Value = BTreeSet<String>> {
    // Ids of 10+ characters so that a chance match inside random point bytes is impossible
    // in practice (62^10 possibilities).
    proptest::collection::btree_set("[A-Za-z0-9]{10,16}", n)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn intersection_is_the_plain_intersection_and_no_frame_holds_an_id(
        a in id_set(1..40),
        b in id_set(0..40),
        c in id_set(0..40),
        ab in id_set(0..20),
        abc in id_set(0..20),
    ) {
        let lender: Vec<String> = a.union(&ab).chain(abc.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let bank_b: Vec<String> = b.union(&ab).chain(abc.iter()).cloned().collect::<BTreeSet<_>>().into_iter().collect();
        let bank_c: Vec<String> = c.union(&abc).cloned().collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let needles: Vec<String> = lender.iter().chain(&bank_b).chain(&bank_c).cloned().collect();
        rt.block_on(check([lender, bank_b, bank_c], &needles));
    }
}

#[tokio::test]
async fn alignment_pages_through_large_lists() {
    // More ids than one PSI page (32,768), with partial overlap.
    let lender: Vec<String> = (0..40_000).map(|i| format!("CUST-{i:08}")).collect();
    let b: Vec<String> = (25_000..70_000).map(|i| format!("CUST-{i:08}")).collect();
    let c: Vec<String> = (0..1_000).map(|i| format!("OTHER-{i:06}")).collect();
    // Every id carries one of these prefixes, so a frame without them holds no id.
    check([lender, b, c], &["CUST-".to_string(), "OTHER-".to_string()]).await;
}

#[tokio::test]
async fn training_over_aligned_handles_never_sends_an_id() {
    let ids: Vec<String> = (0..400).map(|i| format!("bank-customer-{i:05}")).collect();
    let other: Vec<String> = ids[100..].to_vec();
    let dir = tempfile::tempdir().unwrap();
    let services = [
        party("lender", &ids, true, dir.path()),
        party("bank-b", &other, false, dir.path()),
    ];
    let mut inner = InMemory::new();
    for s in &services {
        inner.add(s.id().clone(), s.clone());
    }
    let fed = Recording {
        inner,
        frames: Arc::default(),
    };
    let parties: Vec<PartyId> = ["lender", "bank-b"]
        .iter()
        .map(|n| PartyId::new(*n).unwrap())
        .collect();
    let cfg = TrainingConfig {
        epochs: 2,
        ..Default::default()
    };
    let trained =
        tessera_coordinator::train::train(&fed, &parties, &cfg, "psi-test", Duration::from_secs(30), |_| {})
            .await
            .unwrap();
    let m = &trained.manifest.metrics;
    assert_eq!(m.customers, 400);
    assert_eq!(m.customers_in_every_party, 300);
    let shared: HashMap<&str, usize> = m
        .shared_with_label_holder
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(shared.get("bank-b"), Some(&300));
    let frames = fed.frames.lock().unwrap();
    for id in &ids {
        for f in frames.iter() {
            assert!(
                !contains(f, id.as_bytes()),
                "a training frame contains the id {id}"
            );
        }
    }
}
