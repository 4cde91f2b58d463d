//! Every type that crosses a process boundary, and the bounded frame codec that carries them.
//!
//! A frame is `[kind: u8][length: u32 big-endian][payload: bincode 2 (serde)]`. The reader
//! checks the kind and rejects any length above that kind's maximum **before allocating**,
//! then decodes the payload and rejects trailing bytes. Nothing here does IO: the transport
//! feeds bytes in and takes bytes out.
//!
//! **Invariant:** no message carries a party's feature values. Parties send embeddings (the
//! output of their bottom model), labels (label holder only, during training) and blinded
//! points (alignment); the types below have no field that could hold a feature column.
//! **Invariant:** no party message carries a customer id. The only ids on the wire are those
//! the coordinator asks to score ([`Request::Embed`], the id named in the HTTP request);
//! training refers to customers by opaque handles agreed through private set intersection.

use serde::{Deserialize, Serialize};

pub use tessera_certs::PartyId;

/// Version of the wire protocol. A peer speaking another version is refused at the handshake.
pub const PROTOCOL_VERSION: u16 = 2;

/// Bytes in a frame header: kind (1) and payload length (4).
pub const HEADER_LEN: usize = 5;

/// Maximum payload of handshake frames (hello, welcome, reject).
pub const MAX_CONTROL_PAYLOAD: u32 = 16 * 1024;

/// Longest customer id accepted anywhere, in characters (so at most 512 bytes of UTF-8).
pub const MAX_ID_LEN: usize = 128;

/// Frame kinds. The numeric values are part of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`Hello`], party → coordinator, first frame on a new connection.
    Hello = 1,
    /// [`Welcome`], coordinator → party, accepting the hello.
    Welcome = 2,
    /// [`Reject`], coordinator → party, refusing the hello.
    Reject = 3,
    /// [`Request`], coordinator → party, on a stream the coordinator opens.
    Request = 4,
    /// [`Response`], party → coordinator, on the same stream.
    Response = 5,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Request,
            5 => Kind::Response,
            _ => return None,
        })
    }
}

/// Size limits applied when reading and writing frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest payload of a request or response frame, in bytes.
    pub max_data_payload: u32,
}

impl Default for FrameLimits {
    fn default() -> Self {
        Self {
            max_data_payload: 32 * 1024 * 1024,
        }
    }
}

impl FrameLimits {
    /// The largest payload allowed for a frame of `kind`.
    pub fn max_payload(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Hello | Kind::Welcome | Kind::Reject => MAX_CONTROL_PAYLOAD,
            Kind::Request | Kind::Response => self.max_data_payload,
        }
    }
}

/// Errors reading or writing frames. A peer that sends a bad frame loses its stream.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The kind byte names no known frame kind.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// The declared payload length exceeds the maximum for this kind.
    #[error("frame of kind {kind:?} declares {len} bytes, above the limit of {max}")]
    TooLarge {
        /// The frame kind.
        kind: Kind,
        /// The declared length.
        len: u64,
        /// The limit for this kind.
        max: u32,
    },
    /// The payload could not be decoded as the kind's message.
    #[error("malformed {kind:?} payload: {reason}")]
    Malformed {
        /// The frame kind.
        kind: Kind,
        /// What the decoder said.
        reason: String,
    },
    /// The payload decoded but bytes were left over.
    #[error("{kind:?} payload has {extra} trailing bytes")]
    TrailingBytes {
        /// The frame kind.
        kind: Kind,
        /// How many bytes were left.
        extra: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended mid-frame")]
    Truncated,
    /// A message could not be encoded.
    #[error("cannot encode message: {0}")]
    Encode(String),
    /// A frame arrived that is not valid at this point of the protocol.
    #[error("unexpected frame {0:?}")]
    Unexpected(Kind),
}

/// First message of a connection: who the party says it is and which protocol it speaks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The party's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The party id it claims; must match the identity in its certificate.
    pub party_id: PartyId,
    /// Software version string, for logs.
    pub software: String,
}

/// The coordinator's acceptance of a [`Hello`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The coordinator's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The federation name.
    pub federation: String,
}

/// Why the coordinator refused a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// The protocol versions differ.
    VersionMismatch,
    /// The claimed party id is not the identity in the certificate.
    IdentityMismatch,
    /// The party is not in the coordinator's configured federation.
    UnknownParty,
}

/// The coordinator's refusal of a [`Hello`], with a human-readable reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// Explanation for the party's operator.
    pub message: String,
}

/// A dense row-major matrix of `f32` (embeddings and their gradients).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    /// Number of rows (one per customer in the batch).
    pub rows: u32,
    /// Number of columns (the embedding width).
    pub cols: u32,
    /// `rows * cols` values, row-major.
    pub data: Vec<f32>,
}

impl Matrix {
    /// Whether `data` has exactly `rows * cols` values, all finite.
    pub fn is_well_formed(&self) -> bool {
        (self.rows as usize).checked_mul(self.cols as usize) == Some(self.data.len())
            && self.data.iter().all(|v| v.is_finite())
    }
}

/// Hyperparameters a party needs to build and train its bottom model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BottomSpec {
    /// Widths of hidden layers (ReLU).
    pub hidden: Vec<u32>,
    /// Width of the embedding the party sends (the cut layer).
    pub emb_dim: u32,
    /// Adam learning rate.
    pub learning_rate: f32,
    /// Decoupled weight decay (AdamW).
    pub weight_decay: f32,
    /// Seed for weight initialisation.
    pub seed: u64,
}

/// What a party says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartyInfo {
    /// The party's id.
    pub party_id: PartyId,
    /// Number of feature columns it holds.
    pub n_features: u32,
    /// Number of customers it holds.
    pub n_rows: u64,
    /// Whether it holds the training label.
    pub has_labels: bool,
}

/// A request the coordinator sends to a party, one per stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Request {
    /// Ask for [`PartyInfo`].
    Describe,
    /// Start an alignment (private set intersection) as session `session`: the party draws
    /// a fresh secret key and shuffles its customers. Answered with [`Response::PsiReady`].
    PsiInit {
        /// Session number; the alignment's handles are valid for training in this session.
        session: u64,
    },
    /// A page of the party's own customers, blinded with its key, in its shuffled order
    /// (`k·H(id)`, see [`crate::psi`]). Answered with [`Response::Points`].
    PsiBlind {
        /// Alignment session.
        session: u64,
        /// Position of the first customer in the shuffled order.
        offset: u64,
        /// Most points to return.
        limit: u32,
    },
    /// Another party's blinded points, to be multiplied by this party's key, in order.
    /// Answered with [`Response::Points`].
    PsiReblind {
        /// Alignment session.
        session: u64,
        /// Concatenated 32-byte point encodings.
        points: Vec<u8>,
    },
    /// The opaque row handles of this party's customers that are in the intersection:
    /// `positions[i]` (in the party's shuffled order) is customer `handles[i]` in training.
    PsiAssign {
        /// Alignment session.
        session: u64,
        /// Positions in the party's shuffled order.
        positions: Vec<u64>,
        /// The handle of each position.
        handles: Vec<u64>,
    },
    /// Split the aligned customers into training, validation and holdout (label holder only).
    /// The label holder splits in its own file order, stratified by label and by `complete`,
    /// with `seed`, so the holdout is the same customers in every run. Answered with
    /// [`Response::Split`].
    Split {
        /// Alignment session.
        session: u64,
        /// Bitmap over handles `0..n` (bit `h % 8` of byte `h / 8`): set when every party
        /// holds customer `h`.
        complete: Vec<u8>,
        /// Share of customers held out for the final figures.
        holdout_fraction: f64,
        /// Share of the rest used for early stopping.
        validation_fraction: f64,
        /// Split seed.
        seed: u64,
        /// Use only the first this-many customers of the label holder's file.
        max_rows: Option<u64>,
    },
    /// Labels of these handles (label holder only).
    Labels {
        /// Alignment session.
        session: u64,
        /// Row handles.
        handles: Vec<u64>,
    },
    /// Start a training session on the alignment of the same session number: fit input
    /// encoding on the customers `fit` and build a fresh bottom model.
    TrainInit {
        /// Session number; later training requests must carry it.
        session: u64,
        /// Model hyperparameters.
        spec: BottomSpec,
        /// Handles of the training customers (the encoding is fitted on these only).
        fit: Vec<u64>,
    },
    /// Embeddings of the session's model for a batch; with `train`, keep what the backward
    /// pass needs.
    Forward {
        /// Training session.
        session: u64,
        /// Step number; the matching [`Request::Backward`] carries it too.
        step: u64,
        /// Row handles of the batch (from the session's alignment).
        rows: Vec<u64>,
        /// Whether a backward pass follows.
        train: bool,
    },
    /// Gradient of the loss with respect to the embeddings of step `step`.
    Backward {
        /// Training session.
        session: u64,
        /// Step number of the forward pass.
        step: u64,
        /// `batch × emb_dim` gradient.
        grad: Matrix,
        /// Learning rate for this update (the coordinator owns the schedule).
        learning_rate: f32,
    },
    /// Remember the session's current weights as the best so far.
    Checkpoint {
        /// Training session.
        session: u64,
    },
    /// Go back to the checkpointed weights.
    Restore {
        /// Training session.
        session: u64,
    },
    /// Save the session's current weights as model `model_id` in the party's model directory.
    Save {
        /// Training session.
        session: u64,
        /// Model id.
        model_id: String,
    },
    /// Load model `model_id` from the party's model directory for scoring.
    Load {
        /// Model id.
        model_id: String,
    },
    /// Scoring: embeddings of the loaded model for these customers.
    Embed {
        /// Customer ids.
        ids: Vec<String>,
    },
    /// Scoring: reason codes for these customers. `grads` holds, per customer, the gradient
    /// of the final logit with respect to this party's embedding; the party attributes it to
    /// its own features and answers with codes from its reason dictionary only.
    Explain {
        /// Customer ids.
        ids: Vec<String>,
        /// `ids × emb_dim` gradients.
        grads: Matrix,
    },
}

/// Most reason codes a party returns per customer.
pub const MAX_REASONS: usize = 4;

/// One entry of a party's published reason dictionary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCode {
    /// Stable code, e.g. `CC03`.
    pub code: String,
    /// What it means, e.g. "High utilisation of card limit".
    pub text: String,
}

impl Request {
    /// Short name of the request kind, for logs and metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Describe => "describe",
            Request::PsiInit { .. } => "psi_init",
            Request::PsiBlind { .. } => "psi_blind",
            Request::PsiReblind { .. } => "psi_reblind",
            Request::PsiAssign { .. } => "psi_assign",
            Request::Split { .. } => "split",
            Request::Labels { .. } => "labels",
            Request::TrainInit { .. } => "train_init",
            Request::Forward { .. } => "forward",
            Request::Backward { .. } => "backward",
            Request::Checkpoint { .. } => "checkpoint",
            Request::Restore { .. } => "restore",
            Request::Save { .. } => "save",
            Request::Load { .. } => "load",
            Request::Embed { .. } => "embed",
            Request::Explain { .. } => "explain",
        }
    }
}

/// Split tag: a training customer.
pub const SPLIT_TRAIN: u8 = 0;
/// Split tag: a validation customer (early stopping, calibration).
pub const SPLIT_VALIDATION: u8 = 1;
/// Split tag: a holdout customer (final figures only).
pub const SPLIT_HOLDOUT: u8 = 2;
/// Split tag: not used (beyond `max_rows`).
pub const SPLIT_UNUSED: u8 = 3;

/// Whether `id` can name a model: 1–64 characters of `A-Za-z0-9._-`, not starting with `.`.
/// Model ids become file and directory names at every party and the coordinator, so this is
/// also what keeps them inside their directories.
pub fn valid_model_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Stable error codes a party returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request is malformed or exceeds a limit.
    BadRequest,
    /// No such training session, or the step does not match.
    NoSession,
    /// No model is loaded, or the requested model does not exist.
    NoModel,
    /// This party does not hold labels.
    NoLabels,
    /// A training id is unknown to this party.
    UnknownId,
    /// Anything else.
    Internal,
}

/// A party's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Describe`].
    Info(PartyInfo),
    /// Answer to [`Request::PsiInit`].
    PsiReady {
        /// Number of customers the party will blind.
        n: u64,
    },
    /// Answer to [`Request::PsiBlind`] and [`Request::PsiReblind`].
    Points {
        /// Concatenated 32-byte point encodings.
        points: Vec<u8>,
    },
    /// Answer to [`Request::Split`]: per handle `0..n`, [`SPLIT_TRAIN`], [`SPLIT_VALIDATION`],
    /// [`SPLIT_HOLDOUT`] or [`SPLIT_UNUSED`].
    Split {
        /// One tag per handle.
        tags: Vec<u8>,
    },
    /// Answer to [`Request::Labels`]: 0 or 1 per id, in request order.
    Labels {
        /// The labels.
        labels: Vec<u8>,
    },
    /// Answer to [`Request::TrainInit`] and [`Request::Load`].
    Model {
        /// Number of input features of the bottom model.
        n_features: u32,
        /// Embedding width.
        emb_dim: u32,
        /// The party's published reason dictionary (codes and texts; no feature values).
        reasons: Vec<ReasonCode>,
    },
    /// Answer to [`Request::Explain`]: per customer, up to [`MAX_REASONS`] codes from the
    /// party's dictionary, most adverse first (empty for a customer the party does not know
    /// or whose features push toward repayment). Codes only: no numbers.
    Reasons {
        /// Codes per requested customer.
        codes: Vec<Vec<String>>,
    },
    /// Answer to [`Request::Forward`] and [`Request::Embed`]: one row per requested id;
    /// rows of unknown ids are zeros and flagged in `known`.
    Embeddings {
        /// `ids × emb_dim` embeddings.
        matrix: Matrix,
        /// Whether the party knows each requested id.
        known: Vec<bool>,
    },
    /// Success with nothing to return.
    Ack,
    /// The request failed.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Explanation (never contains feature values).
        message: String,
    },
}

/// Any frame's content.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// See [`Hello`].
    Hello(Hello),
    /// See [`Welcome`].
    Welcome(Welcome),
    /// See [`Reject`].
    Reject(Reject),
    /// See [`Request`].
    Request(Request),
    /// See [`Response`].
    Response(Response),
}

impl Message {
    /// The frame kind that carries this message.
    pub fn kind(&self) -> Kind {
        match self {
            Message::Hello(_) => Kind::Hello,
            Message::Welcome(_) => Kind::Welcome,
            Message::Reject(_) => Kind::Reject,
            Message::Request(_) => Kind::Request,
            Message::Response(_) => Kind::Response,
        }
    }
}

fn bincode_config() -> impl bincode::config::Config {
    // The limit stops a declared container length from driving allocation past any frame.
    bincode::config::standard().with_limit::<{ 64 * 1024 * 1024 }>()
}

/// Encodes a message as one frame.
///
/// # Errors
/// [`FrameError::TooLarge`] if the payload exceeds the kind's limit (the peer would refuse it);
/// [`FrameError::Encode`] if serialisation fails.
pub fn encode(msg: &Message, limits: &FrameLimits) -> Result<Vec<u8>, FrameError> {
    let cfg = bincode_config();
    let enc =
        |r: Result<Vec<u8>, bincode::error::EncodeError>| r.map_err(|e| FrameError::Encode(e.to_string()));
    let payload = match msg {
        Message::Hello(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Welcome(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Reject(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Request(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
        Message::Response(m) => enc(bincode::serde::encode_to_vec(m, cfg))?,
    };
    let kind = msg.kind();
    let max = limits.max_payload(kind);
    if payload.len() as u64 > u64::from(max) {
        return Err(FrameError::TooLarge {
            kind,
            len: payload.len() as u64,
            max,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Parses a frame header, checking the kind and the length limit.
///
/// # Errors
/// [`FrameError::UnknownKind`] or [`FrameError::TooLarge`].
pub fn parse_header(header: [u8; HEADER_LEN], limits: &FrameLimits) -> Result<(Kind, u32), FrameError> {
    let kind = Kind::from_byte(header[0]).ok_or(FrameError::UnknownKind(header[0]))?;
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let max = limits.max_payload(kind);
    if len > max {
        return Err(FrameError::TooLarge {
            kind,
            len: u64::from(len),
            max,
        });
    }
    Ok((kind, len))
}

/// Decodes the payload of a frame whose header has been checked by [`parse_header`].
///
/// # Errors
/// [`FrameError::Malformed`] or [`FrameError::TrailingBytes`].
pub fn decode_payload(kind: Kind, payload: &[u8]) -> Result<Message, FrameError> {
    fn dec<T: serde::de::DeserializeOwned>(kind: Kind, payload: &[u8]) -> Result<T, FrameError> {
        let (value, used): (T, usize) = bincode::serde::decode_from_slice(payload, bincode_config())
            .map_err(|e| FrameError::Malformed {
                kind,
                reason: e.to_string(),
            })?;
        if used != payload.len() {
            return Err(FrameError::TrailingBytes {
                kind,
                extra: payload.len() - used,
            });
        }
        Ok(value)
    }
    Ok(match kind {
        Kind::Hello => Message::Hello(dec(kind, payload)?),
        Kind::Welcome => Message::Welcome(dec(kind, payload)?),
        Kind::Reject => Message::Reject(dec(kind, payload)?),
        Kind::Request => Message::Request(dec(kind, payload)?),
        Kind::Response => Message::Response(dec(kind, payload)?),
    })
}

/// Decodes one frame from the front of `buf`.
///
/// # Returns
/// `Ok(None)` if `buf` does not yet hold a whole frame (read more), otherwise the message and
/// the number of bytes it used.
///
/// # Errors
/// Any [`FrameError`] from the header or payload.
pub fn decode(buf: &[u8], limits: &FrameLimits) -> Result<Option<(Message, usize)>, FrameError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(header);
    let (kind, len) = parse_header(h, limits)?;
    let end = HEADER_LEN + len as usize;
    let Some(payload) = buf.get(HEADER_LEN..end) else {
        return Ok(None);
    };
    Ok(Some((decode_payload(kind, payload)?, end)))
}

#[cfg(test)]
mod tests {
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
            (any::<u64>(), any::<u64>(), handles(), any::<bool>()).prop_map(
                |(session, step, rows, train)| {
                    Request::Forward {
                        session,
                        step,
                        rows,
                        train,
                    }
                }
            ),
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
            (any::<u64>(), "[a-z0-9-]{0,12}")
                .prop_map(|(session, model_id)| Request::Save { session, model_id }),
            "[a-z0-9-]{0,12}".prop_map(|model_id| Request::Load { model_id }),
            ids().prop_map(|ids| Request::Embed { ids }),
            (ids(), matrix()).prop_map(|(ids, grads)| Request::Explain { ids, grads }),
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
}
