//! The service tested directly: alignment, split, training round trip, serving, explain.

use super::*;
use ndarray::Array2;
use tessera_common::model::Encoder;
use tessera_common::wire::BottomSpec;
use tessera_common::wire::MAX_LOADED_MODELS;
use tessera_common::wire::Matrix;

fn service(dir: &std::path::Path) -> PartyService {
    let ids: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let x = Array2::from_shape_fn((20, 3), |(i, j)| (i * (j + 1)) as f64 * 1000.0);
    let labels = Some((0..20).map(|i| (i % 2) as u8).collect());
    let data = FeatureTable::new(ids, vec!["a".into(), "b".into(), "c".into()], x, labels).unwrap();
    PartyService::new(
        PartyId::new("p").unwrap(),
        data,
        dir.to_path_buf(),
        PartyLimits::default(),
    )
    .with_policy(crate::policy::TrainingPolicy::allow())
}

fn spec() -> BottomSpec {
    BottomSpec {
        hidden: vec![4],
        emb_dim: 2,
        learning_rate: 0.01,
        weight_decay: 0.0,
        seed: 1,
    }
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Starts alignment `session` and gives rows `rows` the handle `1000 + row`.
fn align(s: &PartyService, session: u64, rows: std::ops::Range<usize>) {
    assert_eq!(
        s.handle(Request::PsiInit { session }),
        Response::PsiReady { n: 20 }
    );
    let (positions, handles): (Vec<u64>, Vec<u64>) = {
        let g = s.alignment.read().unwrap();
        let a = g.as_ref().unwrap();
        rows.map(|r| (a.position_of_row(r).unwrap() as u64, 1000 + r as u64))
            .unzip()
    };
    assert_eq!(
        s.handle(Request::PsiAssign {
            session,
            positions,
            handles
        }),
        Response::Ack
    );
}

#[test]
fn explain_answers_codes_only_and_no_feature_value_appears_in_the_message() {
    use tessera_common::wire::{FrameLimits, Message, encode};
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path());
    // A saved model, loaded for serving.
    let x = s.data.features().clone();
    let enc = Encoder::fit(x.view());
    let baseline = enc.transform(x.view()).mean_axis(ndarray::Axis(0)).unwrap();
    BottomModel::new(enc.clone(), baseline, &[4], 2, 3)
        .save(dir.path(), "m")
        .unwrap();
    let Response::Model { reasons, .. } = s.handle(Request::Load { model_id: "m".into() }) else {
        panic!()
    };
    assert_eq!(reasons.len(), 3, "one code per column by default");
    let ids = ids(&["c7", "c19", "nobody"]);
    let grads = Matrix {
        rows: 3,
        cols: 2,
        data: vec![0.9, -0.4, -1.3, 0.8, 0.5, 0.5],
    };
    // The coordinator embeds before it explains (the party answers only for those).
    s.handle(Request::Embed {
        model_id: "m".into(),
        ids: ids.clone(),
    });
    let r = s.handle(Request::Explain {
        model_id: "m".into(),
        ids: ids.clone(),
        grads: grads.clone(),
    });
    let Response::Reasons { codes } = &r else {
        panic!("{r:?}")
    };
    assert_eq!(codes.len(), 3);
    assert!(codes[2].is_empty(), "an unknown customer has no reasons");
    let published: Vec<&str> = reasons.iter().map(|c| c.code.as_str()).collect();
    assert!(codes.iter().flatten().all(|c| published.contains(&c.as_str())));
    assert!(!codes[0].is_empty() || !codes[1].is_empty());
    // Stable: the same question gets the same answer.
    s.handle(Request::Embed {
        model_id: "m".into(),
        ids: ids.clone(),
    });
    assert_eq!(
        s.handle(Request::Explain {
            model_id: "m".into(),
            ids: ids.clone(),
            grads
        }),
        r
    );
    // Nothing numeric from the features: neither raw nor encoded values, in any encoding.
    let bytes = encode(&Message::Response(r), &FrameLimits::default()).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let raw = x.select(ndarray::Axis(0), &[7, 19]);
    let encoded = enc.transform(raw.view());
    for &v in raw
        .iter()
        .chain(encoded.iter())
        .filter(|v| **v != 0.0 && **v != 1.0)
    {
        assert!(
            !has(&v.to_le_bytes()) && !has(&(v as f32).to_le_bytes()),
            "value {v} in the message"
        );
        assert!(
            !has(format!("{v}").as_bytes()),
            "value {v} as text in the message"
        );
    }
    // Malformed gradients are refused.
    assert!(matches!(
        s.handle(Request::Explain {
            model_id: "m".into(),
            ids,
            grads: Matrix {
                rows: 3,
                cols: 5,
                data: vec![0.0; 15]
            }
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
}

#[test]
fn split_is_stratified_in_file_order_and_the_same_every_time() {
    use tessera_common::wire::{SPLIT_HOLDOUT, SPLIT_UNUSED};
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path());
    let split = |session: u64, max_rows: Option<u64>| {
        assert_eq!(
            s.handle(Request::PsiInit { session }),
            Response::PsiReady { n: 20 }
        );
        // The label holder's handles are its shuffled positions.
        let all: Vec<u64> = (0..20).collect();
        assert_eq!(
            s.handle(Request::PsiAssign {
                session,
                positions: all.clone(),
                handles: all
            }),
            Response::Ack
        );
        let Response::Split { tags } = s.handle(Request::Split {
            session,
            complete: vec![0xff, 0xff, 0x0f],
            holdout_fraction: 0.2,
            validation_fraction: 0.25,
            seed: 42,
            max_rows,
        }) else {
            panic!()
        };
        // Tags by file row, whatever this run's handles are.
        let mut by_row = vec![0u8; 20];
        for (h, t) in tags.iter().enumerate() {
            by_row[s
                .alignment
                .read()
                .unwrap()
                .as_ref()
                .unwrap()
                .row(h as u64)
                .unwrap()] = *t;
        }
        by_row
    };
    let a = split(1, None);
    assert_eq!(a, split(2, None), "the same customers in each set, run after run");
    assert_eq!(a.iter().filter(|&&t| t == SPLIT_HOLDOUT).count(), 4);
    let limited = split(3, Some(10));
    assert!(limited[10..].iter().all(|&t| t == SPLIT_UNUSED));
    assert!(limited[..10].iter().all(|&t| t != SPLIT_UNUSED));
    assert!(matches!(
        s.handle(Request::Split {
            session: 3,
            complete: vec![0],
            holdout_fraction: 0.2,
            validation_fraction: 0.1,
            seed: 1,
            max_rows: None
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
}

#[test]
fn alignment_requests_are_bounded_and_tied_to_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path());
    // Nothing before PsiInit.
    assert!(matches!(
        s.handle(Request::PsiBlind {
            session: 1,
            offset: 0,
            limit: 5
        }),
        Response::Error {
            code: ErrorCode::NoSession,
            ..
        }
    ));
    assert_eq!(
        s.handle(Request::PsiInit { session: 1 }),
        Response::PsiReady { n: 20 }
    );
    let Response::Points { points } = s.handle(Request::PsiBlind {
        session: 1,
        offset: 15,
        limit: 100,
    }) else {
        panic!()
    };
    assert_eq!(points.len(), 5 * 32);
    // Points from elsewhere are re-blinded; garbage is refused; so are oversized requests.
    let Response::Points { points: again } = s.handle(Request::PsiReblind {
        session: 1,
        points: points.clone(),
    }) else {
        panic!()
    };
    assert_eq!(again.len(), points.len());
    assert_ne!(again, points);
    assert!(matches!(
        s.handle(Request::PsiReblind {
            session: 1,
            points: vec![0xff; 32]
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(matches!(
        s.handle(Request::PsiReblind {
            session: 1,
            points: vec![0; 32 * 100_001]
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(matches!(
        s.handle(Request::PsiReblind { session: 2, points }),
        Response::Error {
            code: ErrorCode::NoSession,
            ..
        }
    ));
    assert!(matches!(
        s.handle(Request::PsiAssign {
            session: 1,
            positions: vec![20],
            handles: vec![1]
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    // Labels only for assigned handles of the same session.
    align(&s, 3, 0..4);
    assert_eq!(
        s.handle(Request::Labels {
            session: 3,
            handles: vec![1003, 1002]
        }),
        Response::Labels { labels: vec![1, 0] }
    );
    assert!(matches!(
        s.handle(Request::Labels {
            session: 3,
            handles: vec![1005]
        }),
        Response::Error {
            code: ErrorCode::UnknownId,
            ..
        }
    ));
    assert!(matches!(
        s.handle(Request::Labels {
            session: 1,
            handles: vec![1002]
        }),
        Response::Error {
            code: ErrorCode::NoSession,
            ..
        }
    ));
}

#[test]
fn training_round_trip_then_serving() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path());
    align(&s, 7, 0..15);
    let fit: Vec<u64> = (1000..1015).collect();
    assert!(matches!(
        s.handle(Request::TrainInit {
            session: 7,
            spec: spec(),
            fit
        }),
        Response::Model {
            n_features: 3,
            emb_dim: 2,
            ..
        }
    ));
    let batch = ids(&["c1", "c2", "c3"]);
    let rows = vec![1001, 1002, 1003, 99];
    let r = s.handle(Request::Forward {
        session: 7,
        step: 1,
        rows: rows.clone(),
        train: true,
    });
    let Response::Embeddings { matrix, known } = r else {
        panic!("{r:?}")
    };
    assert_eq!((matrix.rows, matrix.cols), (4, 2));
    assert_eq!(
        known,
        vec![true, true, true, false],
        "an unassigned handle is unknown"
    );
    assert_eq!(&matrix.data[6..], &[0.0, 0.0]);
    // Wrong step, wrong session, wrong shape are refused.
    let grad = Matrix {
        rows: 4,
        cols: 2,
        data: vec![0.1; 8],
    };
    assert!(matches!(
        s.handle(Request::Backward {
            session: 7,
            step: 2,
            grad: grad.clone(),
            learning_rate: 0.01,
        }),
        Response::Error { .. }
    ));
    s.handle(Request::Forward {
        session: 7,
        step: 1,
        rows,
        train: true,
    });
    assert!(matches!(
        s.handle(Request::Backward {
            session: 8,
            step: 1,
            grad: grad.clone(),
            learning_rate: 0.01,
        }),
        Response::Error {
            code: ErrorCode::NoSession,
            ..
        }
    ));
    assert_eq!(
        s.handle(Request::Backward {
            session: 7,
            step: 1,
            grad,
            learning_rate: 0.01,
        }),
        Response::Ack
    );
    // Scoring needs a loaded model.
    assert!(matches!(
        s.handle(Request::Embed {
            model_id: "m".into(),
            ids: batch.clone()
        }),
        Response::Error {
            code: ErrorCode::NoModel,
            ..
        }
    ));
    assert_eq!(s.handle(Request::Checkpoint { session: 7 }), Response::Ack);
    assert_eq!(
        s.handle(Request::Save {
            session: 7,
            model_id: "m".into()
        }),
        Response::Ack
    );
    assert!(matches!(
        s.handle(Request::Save {
            session: 7,
            model_id: "../m".into()
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    assert!(matches!(
        s.handle(Request::Load { model_id: "m".into() }),
        Response::Model {
            n_features: 3,
            emb_dim: 2,
            ..
        }
    ));
    let r = s.handle(Request::Embed {
        model_id: "m".into(),
        ids: ids(&["c1", "unknown"]),
    });
    let Response::Embeddings { matrix, known } = r else {
        panic!("{r:?}")
    };
    assert_eq!(known, vec![true, false]);
    assert_eq!(&matrix.data[2..], &[0.0, 0.0]);
    assert_eq!(s.serving_model().as_deref(), Some("m"));

    // Several models loaded at once; each request is answered by the model it names, and a
    // model not loaded is refused, never replaced by another.
    let embed = |model: &str| {
        s.handle(Request::Embed {
            model_id: model.into(),
            ids: ids(&["c1"]),
        })
    };
    let Response::Embeddings { matrix: with_m, .. } = embed("m") else {
        panic!("m is loaded")
    };
    for i in 0..MAX_LOADED_MODELS {
        let id = format!("copy{i}");
        copy_model(dir.path(), "m", &id);
        assert!(matches!(
            s.handle(Request::Load { model_id: id }),
            Response::Model { .. }
        ));
    }
    assert_eq!(s.loaded_models().len(), MAX_LOADED_MODELS);
    assert!(
        matches!(
            embed("m"),
            Response::Error {
                code: ErrorCode::NoModel,
                ..
            }
        ),
        "the least recently loaded model was dropped"
    );
    let Response::Embeddings {
        matrix: with_copy, ..
    } = embed("copy0")
    else {
        panic!("copy0 is loaded")
    };
    assert_eq!(with_copy, with_m, "the same weights under another id");
    assert!(matches!(
        embed("never-loaded"),
        Response::Error {
            code: ErrorCode::NoModel,
            ..
        }
    ));
}

/// Saves model `from`'s bottom model again as model `to`.
fn copy_model(dir: &std::path::Path, from: &str, to: &str) {
    use crate::bottom::BottomModel;
    std::fs::copy(BottomModel::path(dir, from), BottomModel::path(dir, to)).unwrap();
}

#[test]
fn refuses_unknown_training_ids_labels_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = service(dir.path());
    assert!(matches!(
        s.handle(Request::TrainInit {
            session: 1,
            spec: spec(),
            fit: vec![1]
        }),
        Response::Error {
            code: ErrorCode::NoSession,
            ..
        }
    ));
    align(&s, 1, 0..3);
    assert!(matches!(
        s.handle(Request::TrainInit {
            session: 1,
            spec: spec(),
            fit: vec![5000]
        }),
        Response::Error {
            code: ErrorCode::UnknownId,
            ..
        }
    ));
    let mut big = spec();
    big.hidden = vec![100_000];
    assert!(matches!(
        s.handle(Request::TrainInit {
            session: 1,
            spec: big,
            fit: vec![]
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
    let too_many: Vec<String> = (0..100_001).map(|i| i.to_string()).collect();
    assert!(matches!(
        s.handle(Request::Embed {
            model_id: "m".into(),
            ids: too_many
        }),
        Response::Error {
            code: ErrorCode::BadRequest,
            ..
        }
    ));
}

#[test]
fn the_banks_own_seed_decides_the_initial_weights() {
    // Two banks with the same data, asked for the same model with the same coordinator seed:
    // their own seeds differ, so do the first embeddings (the coordinator cannot regenerate
    // the initialisation); with the same own seed they agree.
    let dir = tempfile::tempdir().unwrap();
    let first = |own: u64| {
        let s = service(dir.path()).with_policy(crate::policy::TrainingPolicy {
            seed: Some(own),
            ..crate::policy::TrainingPolicy::allow()
        });
        align(&s, 5, 0..20);
        let fit: Vec<u64> = (1000..1020).collect();
        assert!(matches!(
            s.handle(Request::TrainInit {
                session: 5,
                spec: spec(),
                fit: fit.clone()
            }),
            Response::Model { .. }
        ));
        match s.handle(Request::Forward {
            session: 5,
            step: 1,
            rows: fit,
            train: false,
        }) {
            Response::Embeddings { matrix, .. } => matrix,
            other => panic!("{other:?}"),
        }
    };
    assert_ne!(first(1), first(2));
    assert_eq!(first(3), first(3));
}
