//! Writes the fuzzers' starting inputs into the directory given: one frame per request kind,
//! and one stream of an alignment's and a scoring's requests in protocol order.

use std::error::Error;

use tessera_common::wire::{FrameLimits, Message, Request, Traced, encode};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: seeds DIR")?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {dir}: {e}"))?;
    let limits = FrameLimits::default();
    let ids = |n: usize| (0..n).map(|i| format!("c{i}")).collect::<Vec<_>>();
    let requests = vec![
        Request::Describe,
        Request::PsiInit { session: 1 },
        Request::PsiBlind {
            session: 1,
            offset: 0,
            limit: 16,
        },
        Request::PsiReblind {
            session: 1,
            points: vec![7; 64],
        },
        Request::PsiAssign {
            session: 1,
            positions: vec![0, 1, 2],
            handles: vec![0, 1, 2],
        },
        Request::Split {
            session: 1,
            complete: vec![0xff],
            holdout_fraction: 0.2,
            validation_fraction: 0.1,
            seed: 7,
            max_rows: None,
        },
        Request::Labels {
            session: 1,
            handles: vec![0, 1, 2],
        },
        Request::Forward {
            session: 1,
            step: 0,
            rows: vec![0, 1],
            train: true,
        },
        Request::Checkpoint { session: 1 },
        Request::Restore { session: 1 },
        Request::Save {
            session: 1,
            model_id: "m-1".into(),
        },
        Request::Load {
            model_id: "m-1".into(),
        },
        Request::Embed {
            model_id: "m-1".into(),
            ids: ids(4),
        },
    ];
    let mut stream = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let frame = encode(&Message::Request(r.clone()), &limits)?;
        let path = format!("{dir}/{i:02}-{}", r.kind());
        std::fs::write(&path, &frame).map_err(|e| format!("writing {path}: {e}"))?;
        stream.extend_from_slice(&frame);
    }
    let traced = Message::Traced(Traced::new(
        &["req-1".to_string()],
        Request::Embed {
            model_id: "m-1".into(),
            ids: ids(2),
        },
    ));
    stream.extend(encode(&traced, &limits)?);
    let path = format!("{dir}/99-stream");
    std::fs::write(&path, &stream).map_err(|e| format!("writing {path}: {e}"))?;
    Ok(())
}
