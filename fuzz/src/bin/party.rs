//! Fuzz target: a bank's request handling. Any bytes, read as a stream of frames; every request
//! that decodes goes to one party service (64 customers, training allowed, state kept across
//! the stream and across inputs): handling never panics, whatever the coordinator sends and in
//! whatever order.

use std::sync::OnceLock;

use ndarray::Array2;
use tessera_common::data::FeatureTable;
use tessera_common::wire::{FrameLimits, Message, PartyId, decode};
use tessera_party::config::PartyLimits;
use tessera_party::policy::TrainingPolicy;
use tessera_party::service::PartyService;

fn service() -> &'static PartyService {
    static SERVICE: OnceLock<(tempfile::TempDir, PartyService)> = OnceLock::new();
    &SERVICE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let n = 64;
            let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            let features = Array2::from_shape_fn((n, 3), |(i, j)| ((i * 7 + j * 3) % 11) as f64);
            let labels = Some((0..n).map(|i| (i % 3 == 0) as u8).collect());
            let names = vec!["a".into(), "b".into(), "c".into()];
            let table = FeatureTable::new(ids, names, features, labels).expect("a valid table");
            let id = PartyId::new("bank-a").expect("a valid party id");
            let s = PartyService::new(id, table, dir.path().to_path_buf(), PartyLimits::default())
                .with_policy(TrainingPolicy::allow());
            (dir, s)
        })
        .1
}

fn main() {
    let limits = FrameLimits::default();
    let party = service();
    afl::fuzz!(|data: &[u8]| {
        let mut rest = data;
        while let Ok(Some((message, used))) = decode(rest, &limits) {
            match message {
                Message::Request(r) => {
                    let _ = party.handle(r);
                }
                Message::Traced(t) => {
                    let _ = party.handle(t.request);
                }
                _ => {}
            }
            rest = &rest[used..];
        }
    });
}
