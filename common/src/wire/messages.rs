//! The message catalogue: the handshake, the coordinator's requests and the parties' answers.

use serde::{Deserialize, Serialize};

use super::codec::Kind;
use super::{Matrix, PartyId};

/// First message of a connection: who the party says it is and which protocol it speaks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The party's [`PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// The party id it claims; must match the identity in its certificate.
    pub party_id: PartyId,
    /// Software version string, for logs.
    pub software: String,
    /// A random number drawn once per party process: tells a reconnect (or a rotation's second
    /// connection) of the same process from another process holding the same identity.
    pub instance: u64,
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
    /// Another process of the same party is connected; only one live connection per identity.
    AlreadyConnected,
}

/// The coordinator's refusal of a [`Hello`], with a human-readable reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Machine-readable reason.
    pub code: RejectCode,
    /// Explanation for the party's operator.
    pub message: String,
}

/// Hyperparameters a party needs to build and train its bottom model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BottomSpec {
    /// Widths of hidden layers (ReLU; at most [`super::bounded::MAX_LAYERS`]).
    #[serde(deserialize_with = "super::bounded::vec::<_, u32, { super::bounded::MAX_LAYERS }>")]
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
    /// The widest embedding this party's policy lets a coordinator ask for (below its encoded
    /// input width, within its layer limit); 0 if it takes no part in training.
    pub max_emb_dim: u32,
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
    /// Load model `model_id` from the party's model directory for scoring. A party keeps up
    /// to [`MAX_LOADED_MODELS`] models loaded; loading another drops the least recently loaded.
    Load {
        /// Model id.
        model_id: String,
    },
    /// Scoring: embeddings of loaded model `model_id` for these customers (a model that is not
    /// loaded is refused with [`ErrorCode::NoModel`], never replaced by another: no answer
    /// mixes two models' parts).
    Embed {
        /// The model to embed with.
        model_id: String,
        /// Customer ids (at most [`super::bounded::MAX_IDS`]).
        #[serde(deserialize_with = "super::bounded::vec::<_, String, { super::bounded::MAX_IDS }>")]
        ids: Vec<String>,
    },
    /// Scoring: reason codes for these customers. `grads` holds, per customer, the gradient
    /// of the final logit with respect to this party's embedding; the party attributes it to
    /// its own features and answers with codes from its reason dictionary only.
    Explain {
        /// The model whose embedding the gradients are for.
        model_id: String,
        /// Customer ids (at most [`super::bounded::MAX_IDS`]).
        #[serde(deserialize_with = "super::bounded::vec::<_, String, { super::bounded::MAX_IDS }>")]
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
    /// The bank's policy refuses the request (training not enabled, a bottom model it does not
    /// allow, an explanation it was not asked to embed for); the message names the rule.
    PolicyRefused,
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
        /// The party's published reason dictionary (codes and texts; no feature values; at
        /// most [`super::bounded::MAX_DICTIONARY`] entries).
        #[serde(
            deserialize_with = "super::bounded::vec::<_, ReasonCode, { super::bounded::MAX_DICTIONARY }>"
        )]
        reasons: Vec<ReasonCode>,
    },
    /// Answer to [`Request::Explain`]: per customer, up to [`MAX_REASONS`] codes from the
    /// party's dictionary, most adverse first (empty for a customer the party does not know
    /// or whose features push toward repayment). Codes only: no numbers.
    Reasons {
        /// Codes per requested customer (at most [`super::bounded::MAX_IDS`] customers and
        /// [`MAX_REASONS`] codes each).
        #[serde(
            deserialize_with = "super::bounded::vec_of_vecs::<_, String, { super::bounded::MAX_IDS }, MAX_REASONS>"
        )]
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
    /// See [`Traced`].
    Traced(Traced),
}

/// Most request ids one [`Traced`] request names (a coalesced scoring batch).
pub const MAX_TRACE_IDS: usize = 256;
/// Longest request id in a [`Traced`] request, in bytes.
pub const MAX_TRACE_ID_LEN: usize = 64;

/// A [`Request`] with the ids of the HTTP requests (or the training run) it serves, so that
/// the party's log lines for it carry the same ids as the coordinator's. Carries no customer
/// data. Decoding refuses more than [`MAX_TRACE_IDS`] ids or an id over [`MAX_TRACE_ID_LEN`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Traced {
    /// Request ids (`x-request-id`), or `train:<model id>` during training.
    #[serde(deserialize_with = "super::bounded::vec::<_, String, MAX_TRACE_IDS>")]
    pub request_ids: Vec<String>,
    /// The request.
    pub request: Request,
}

impl Traced {
    /// `request` with `ids`, cut to what decoding accepts: the first [`MAX_TRACE_IDS`] ids,
    /// each shortened to at most [`MAX_TRACE_ID_LEN`] bytes (a client's request id is its own
    /// choice and may be longer).
    pub fn new(ids: &[String], request: Request) -> Self {
        let request_ids = ids
            .iter()
            .take(MAX_TRACE_IDS)
            .map(|id| {
                let mut end = id.len().min(MAX_TRACE_ID_LEN);
                while !id.is_char_boundary(end) {
                    end -= 1;
                }
                id[..end].to_string()
            })
            .collect();
        Self { request_ids, request }
    }

    /// Whether the ids are within [`MAX_TRACE_IDS`] and [`MAX_TRACE_ID_LEN`].
    pub fn is_bounded(&self) -> bool {
        self.request_ids.len() <= MAX_TRACE_IDS
            && self.request_ids.iter().all(|i| i.len() <= MAX_TRACE_ID_LEN)
    }
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
            Message::Traced(_) => Kind::Traced,
        }
    }
}
