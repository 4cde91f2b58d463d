//! Codec and message tests: round trips of every message, malformed and hostile input.

use super::*;
use proptest::prelude::*;

fn party() -> impl Strategy<Value = PartyId> {
    "[a-z][a-z0-9-]{0,10}[a-z0-9]".prop_map(|s| PartyId::new(s).unwrap())
}

fn matrix() -> impl Strategy<Value = Matrix> {
    (0u32..4, 0u32..4).prop_flat_map(|(r, c)| {
        proptest::collection::vec(-1e6f32..1e6, (r * c) as usize).prop_map(move |data| Matrix {
            rows: r,
            cols: c,
            data,
        })
    })
}

fn ids() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[A-Za-z0-9_-]{0,20}", 0..8)
}

fn handles() -> impl Strategy<Value = Vec<u64>> {
    proptest::collection::vec(any::<u64>(), 0..8)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Describe),
        any::<u64>().prop_map(|session| Request::PsiInit { session }),
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(session, offset, limit)| {
            Request::PsiBlind {
                session,
                offset,
                limit,
            }
        }),
        (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(session, points)| Request::PsiReblind { session, points }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u64>(), 0..5),
            proptest::collection::vec(any::<u64>(), 0..5)
        )
            .prop_map(|(session, positions, handles)| Request::PsiAssign {
                session,
                positions,
                handles
            }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 0..10),
            any::<u64>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(session, complete, seed, max_rows)| Request::Split {
                session,
                complete,
                holdout_fraction: 0.2,
                validation_fraction: 0.1,
                seed,
                max_rows,
            }),
        (any::<u64>(), handles()).prop_map(|(session, handles)| Request::Labels { session, handles }),
        (
            any::<u64>(),
            proptest::collection::vec(any::<u32>(), 0..3),
            any::<u32>(),
            any::<u64>(),
            handles()
        )
            .prop_map(|(session, hidden, emb_dim, seed, fit)| {
                Request::TrainInit {
                    session,
                    spec: BottomSpec {
                        hidden,
                        emb_dim,
                        learning_rate: 1e-3,
                        weight_decay: 0.0,
                        seed,
                    },
                    fit,
                }
            }),
        (any::<u64>(), any::<u64>(), handles(), any::<bool>()).prop_map(|(session, step, rows, train)| {
            Request::Forward {
                session,
                step,
                rows,
                train,
            }
        }),
        (any::<u64>(), any::<u64>(), matrix(), -1e3f32..1e3).prop_map(
            |(session, step, grad, learning_rate)| Request::Backward {
                session,
                step,
                grad,
                learning_rate,
            }
        ),
        any::<u64>().prop_map(|session| Request::Checkpoint { session }),
        any::<u64>().prop_map(|session| Request::Restore { session }),
        (any::<u64>(), "[a-z0-9-]{0,12}").prop_map(|(session, model_id)| Request::Save { session, model_id }),
        "[a-z0-9-]{0,12}".prop_map(|model_id| Request::Load { model_id }),
        ("[a-z0-9-]{0,12}", ids()).prop_map(|(model_id, ids)| Request::Embed { model_id, ids }),
        ("[a-z0-9-]{0,12}", ids(), matrix()).prop_map(|(model_id, ids, grads)| Request::Explain {
            model_id,
            ids,
            grads
        }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (party(), any::<u32>(), any::<u64>(), any::<bool>()).prop_map(
            |(party_id, n_features, n_rows, has_labels)| {
                Response::Info(PartyInfo {
                    party_id,
                    n_features,
                    n_rows,
                    has_labels,
                    max_emb_dim: 3,
                })
            }
        ),
        any::<u64>().prop_map(|n| Response::PsiReady { n }),
        proptest::collection::vec(any::<u8>(), 0..100).prop_map(|points| Response::Points { points }),
        proptest::collection::vec(0u8..2, 0..10).prop_map(|labels| Response::Labels { labels }),
        proptest::collection::vec(0u8..4, 0..10).prop_map(|tags| Response::Split { tags }),
        (any::<u32>(), any::<u32>(), "[A-Z0-9]{1,6}", ".{0,20}").prop_map(
            |(n_features, emb_dim, code, text)| {
                Response::Model {
                    n_features,
                    emb_dim,
                    reasons: vec![ReasonCode { code, text }],
                }
            }
        ),
        proptest::collection::vec(proptest::collection::vec("[A-Z0-9]{1,6}", 0..4), 0..4)
            .prop_map(|codes| Response::Reasons { codes }),
        (matrix(), proptest::collection::vec(any::<bool>(), 0..4))
            .prop_map(|(matrix, known)| Response::Embeddings { matrix, known }),
        Just(Response::Ack),
        ".{0,40}".prop_map(|message| Response::Error {
            code: ErrorCode::UnknownId,
            message
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u16>(), party(), ".{0,20}").prop_map(|(protocol_version, party_id, software)| {
            Message::Hello(Hello {
                protocol_version,
                party_id,
                software,
                instance: 7,
            })
        }),
        (any::<u16>(), ".{0,20}").prop_map(|(protocol_version, federation)| {
            Message::Welcome(Welcome {
                protocol_version,
                federation,
            })
        }),
        ".{0,40}".prop_map(|message| Message::Reject(Reject {
            code: RejectCode::UnknownParty,
            message
        })),
        request().prop_map(Message::Request),
        response().prop_map(Message::Response),
        (proptest::collection::vec("[a-z0-9-]{0,64}", 0..4), request())
            .prop_map(|(request_ids, request)| Message::Traced(Traced { request_ids, request })),
    ]
}

proptest! {
    #[test]
    fn every_message_round_trips(msg in message()) {
        let limits = FrameLimits::default();
        let bytes = encode(&msg, &limits).unwrap();
        let (back, used) = decode(&bytes, &limits).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, msg);
    }

    #[test]
    fn truncated_frames_ask_for_more_or_fail(msg in message(), cut in 0usize..10_000) {
        let limits = FrameLimits::default();
        let bytes = encode(&msg, &limits).unwrap();
        let cut = cut % bytes.len();
        // A strict prefix is never a whole frame.
        prop_assert_eq!(decode(&bytes[..cut], &limits), Ok(None));
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&bytes, &FrameLimits::default());
    }

    #[test]
    fn corrupted_payloads_never_panic(msg in message(), pos in any::<usize>(), byte in any::<u8>()) {
        let limits = FrameLimits::default();
        let mut bytes = encode(&msg, &limits).unwrap();
        let pos = HEADER_LEN + pos % (bytes.len() - HEADER_LEN).max(1);
        if pos < bytes.len() { bytes[pos] = byte; }
        let _ = decode(&bytes, &limits);
    }
}

#[test]
fn oversized_frames_are_refused_before_reading_the_payload() {
    let limits = FrameLimits {
        max_data_payload: 100,
    };
    let mut header = vec![Kind::Request as u8];
    header.extend_from_slice(&101u32.to_be_bytes());
    assert!(matches!(
        decode(&header, &limits),
        Err(FrameError::TooLarge {
            len: 101,
            max: 100,
            ..
        })
    ));
    let mut hello = vec![Kind::Hello as u8];
    hello.extend_from_slice(&(MAX_CONTROL_PAYLOAD + 1).to_be_bytes());
    assert!(matches!(
        decode(&hello, &limits),
        Err(FrameError::TooLarge { .. })
    ));
    // And the writer refuses to produce what the reader would refuse.
    let big = Message::Request(Request::Embed {
        model_id: "m".into(),
        ids: vec!["x".repeat(200)],
    });
    assert!(matches!(encode(&big, &limits), Err(FrameError::TooLarge { .. })));
}

#[test]
fn unknown_kind_and_trailing_bytes_are_errors() {
    let limits = FrameLimits::default();
    assert_eq!(decode(&[9, 0, 0, 0, 0], &limits), Err(FrameError::UnknownKind(9)));
    let mut bytes = encode(&Message::Response(Response::Ack), &limits).unwrap();
    bytes.push(0);
    let len = (bytes.len() - HEADER_LEN) as u32;
    bytes[1..5].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        decode(&bytes, &limits),
        Err(FrameError::TrailingBytes { .. })
    ));
}

#[test]
fn huge_declared_vec_length_does_not_allocate_or_panic() {
    // Request::Embed with a declared Vec length of u64::MAX inside a tiny frame.
    let limits = FrameLimits::default();
    let mut payload = vec![14u8]; // variant index of Embed
    payload.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    let mut frame = vec![Kind::Request as u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    assert!(matches!(
        decode(&frame, &limits),
        Err(FrameError::Malformed { .. })
    ));
}

#[test]
fn model_ids_cannot_escape_a_directory() {
    assert!(valid_model_id("model-2026.11_a"));
    for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(65)] {
        assert!(!valid_model_id(bad), "{bad}");
    }
}

#[test]
fn matrix_shape_check() {
    assert!(
        Matrix {
            rows: 2,
            cols: 2,
            data: vec![0.0; 4]
        }
        .is_well_formed()
    );
    assert!(
        !Matrix {
            rows: 2,
            cols: 2,
            data: vec![0.0; 3]
        }
        .is_well_formed()
    );
    assert!(
        !Matrix {
            rows: 1,
            cols: 1,
            data: vec![f32::NAN]
        }
        .is_well_formed()
    );
    assert!(
        !Matrix {
            rows: u32::MAX,
            cols: u32::MAX,
            data: vec![]
        }
        .is_well_formed()
    );
}

#[test]
fn traced_requests_with_too_many_or_too_long_ids_are_refused() {
    let limits = FrameLimits::default();
    let many = Message::Traced(Traced {
        request_ids: vec!["r".into(); MAX_TRACE_IDS + 1],
        request: Request::Describe,
    });
    let long = Message::Traced(Traced {
        request_ids: vec!["x".repeat(MAX_TRACE_ID_LEN + 1)],
        request: Request::Describe,
    });
    for m in [many, long] {
        let bytes = encode(&m, &limits).unwrap();
        assert!(matches!(
            decode(&bytes, &limits),
            Err(FrameError::Malformed {
                kind: Kind::Traced,
                ..
            })
        ));
    }
}

#[test]
fn traced_new_cuts_ids_to_what_decoding_accepts() {
    let ids = vec!["é".repeat(40); MAX_TRACE_IDS + 3];
    let t = Traced::new(&ids, Request::Describe);
    assert!(t.is_bounded());
    assert_eq!(t.request_ids.len(), MAX_TRACE_IDS);
    assert_eq!(t.request_ids[0], "é".repeat(32));
    let limits = FrameLimits::default();
    let bytes = encode(&Message::Traced(t.clone()), &limits).unwrap();
    assert_eq!(
        decode(&bytes, &limits).unwrap().map(|(m, _)| m),
        Some(Message::Traced(t))
    );
}

/// The reason a frame was refused as malformed.
fn malformed_reason(m: &Message) -> String {
    let limits = FrameLimits::default();
    let bytes = encode(m, &limits).unwrap();
    match decode(&bytes, &limits) {
        Err(FrameError::Malformed { reason, .. }) => reason,
        other => panic!("decoded: {other:?}"),
    }
}

#[test]
fn lists_that_grow_in_memory_are_capped_per_field() {
    use super::bounded::{MAX_DICTIONARY, MAX_IDS};
    let limits = FrameLimits::default();
    // At the cap: decoded.
    let at_cap = Message::Request(Request::Embed {
        model_id: "m".into(),
        ids: vec![String::new(); MAX_IDS],
    });
    let bytes = encode(&at_cap, &limits).unwrap();
    assert_eq!(decode(&bytes, &limits).unwrap().unwrap().0, at_cap);
    // One over, in every capped field: refused, saying the cap.
    let over = [
        Message::Request(Request::Embed {
            model_id: "m".into(),
            ids: vec![String::new(); MAX_IDS + 1],
        }),
        Message::Request(Request::Explain {
            model_id: "m".into(),
            ids: vec![String::new(); MAX_IDS + 1],
            grads: Matrix::zeros(0, 0),
        }),
        Message::Response(Response::Reasons {
            codes: vec![Vec::new(); MAX_IDS + 1],
        }),
        Message::Response(Response::Model {
            n_features: 1,
            emb_dim: 1,
            reasons: vec![
                ReasonCode {
                    code: String::new(),
                    text: String::new()
                };
                MAX_DICTIONARY + 1
            ],
        }),
    ];
    for m in &over {
        let reason = malformed_reason(m);
        assert!(reason.contains("at most"), "{reason}");
    }
    let too_many_codes = Message::Response(Response::Reasons {
        codes: vec![vec![String::new(); MAX_REASONS + 1]],
    });
    assert!(malformed_reason(&too_many_codes).contains(&format!("at most {MAX_REASONS} items")));
}

#[test]
fn a_declared_list_over_its_cap_is_refused_before_any_element_is_read() {
    // Embed declaring MAX_IDS + 1 ids and carrying none: refused for the length itself, not
    // for running out of bytes (which is what reading the elements would end in).
    let mut payload = vec![14u8]; // variant index of Embed
    payload.extend_from_slice(&[1, b'm']); // model_id "m"
    payload.push(252); // bincode varint: a u32 follows
    payload.extend_from_slice(&((super::bounded::MAX_IDS + 1) as u32).to_le_bytes());
    let mut frame = vec![Kind::Request as u8];
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    match decode(&frame, &FrameLimits::default()) {
        Err(FrameError::Malformed { reason, .. }) => {
            assert!(
                reason.contains("invalid length 65537") && reason.contains("at most 65536"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
}
