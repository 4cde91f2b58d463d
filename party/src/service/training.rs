//! Training requests: the label holder's split and labels, a training session's bottom model
//! (init, forward, backward), checkpoint, restore and save.

use tessera_common::model::{Adam, Cache, Encoder};
use tessera_common::wire::{ErrorCode, Matrix, Response, valid_model_id};

use super::{PartyService, error};
use crate::bottom::BottomModel;

/// A training session in progress.
pub(super) struct Session {
    id: u64,
    model: BottomModel,
    adam: Adam,
    /// The forward pass awaiting its backward pass: step, cache and batch size.
    pending: Option<(u64, Cache, usize)>,
    checkpoint: Option<BottomModel>,
}

impl PartyService {
    /// The refusal of any training request while `training.enabled` is off.
    pub(super) fn refuse_training(&self) -> Response {
        tracing::warn!("refused a training request: training is not enabled at this bank");
        error(
            ErrorCode::PolicyRefused,
            "refused by this bank's training policy: training is not enabled (training.enabled)",
        )
    }

    /// The label holder's split of the aligned customers, in its file order.
    pub(super) fn split(
        &self,
        session: u64,
        complete: &[u8],
        (holdout, validation): (f64, f64),
        seed: u64,
        max_rows: Option<u64>,
    ) -> Response {
        use tessera_common::wire::{SPLIT_HOLDOUT, SPLIT_TRAIN, SPLIT_UNUSED, SPLIT_VALIDATION};
        let frac = |v: f64| v.is_finite() && v > 0.0 && v < 1.0;
        if !frac(holdout) || !frac(validation) {
            return error(ErrorCode::BadRequest, "split fractions must be in (0, 1)");
        }
        let Some(labels) = self.data.labels() else {
            return error(ErrorCode::NoLabels, "this party holds no labels");
        };
        let n = self.data.len();
        if complete.len() != n.div_ceil(8) {
            return error(ErrorCode::BadRequest, "the bitmap does not cover every handle");
        }
        // Handles of the label holder are 0..n; order them by row (file order).
        let rows = match self.rows_of(session, &(0..n as u64).collect::<Vec<_>>()) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut by_row: Vec<(usize, usize)> = Vec::with_capacity(n);
        for (h, r) in rows.into_iter().enumerate() {
            match r {
                Some(r) => by_row.push((r, h)),
                None => {
                    return error(
                        ErrorCode::NoSession,
                        "the alignment did not give every customer a handle",
                    );
                }
            }
        }
        by_row.sort_unstable();
        let used = max_rows.map_or(n, |m| usize::try_from(m).unwrap_or(usize::MAX).min(n));
        let by_row = &by_row[..used];
        let is_complete = |h: usize| complete[h / 8] >> (h % 8) & 1 == 1;
        let strata: Vec<u8> = by_row
            .iter()
            .map(|&(r, h)| labels[r] + 2 * u8::from(is_complete(h)))
            .collect();
        let (rest, hold) = tessera_common::data::stratified_split(&strata, holdout, seed);
        let rest_strata: Vec<u8> = rest.iter().map(|&i| strata[i]).collect();
        let (train, val) =
            tessera_common::data::stratified_split(&rest_strata, validation, seed.wrapping_add(1));
        let mut tags = vec![SPLIT_UNUSED; n];
        for &i in &hold {
            tags[by_row[i].1] = SPLIT_HOLDOUT;
        }
        for &i in &train {
            tags[by_row[rest[i]].1] = SPLIT_TRAIN;
        }
        for &i in &val {
            tags[by_row[rest[i]].1] = SPLIT_VALIDATION;
        }
        Response::Split { tags }
    }

    pub(super) fn labels(&self, session: u64, handles: &[u64]) -> Response {
        if let Some(r) = self.check_len(handles.len()) {
            return r;
        }
        let Some(labels) = self.data.labels() else {
            return error(ErrorCode::NoLabels, "this party holds no labels");
        };
        let rows = match self.rows_of(session, handles) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match r {
                Some(r) => out.push(labels[r]),
                None => {
                    return error(
                        ErrorCode::UnknownId,
                        "a requested handle is unknown to this party",
                    );
                }
            }
        }
        Response::Labels { labels: out }
    }

    pub(super) fn train_init(
        &self,
        session: u64,
        spec: &tessera_common::wire::BottomSpec,
        fit: &[u64],
    ) -> Response {
        let l = &self.limits;
        if spec.hidden.len() > l.max_layers
            || spec.emb_dim == 0
            || spec
                .hidden
                .iter()
                .chain([&spec.emb_dim])
                .any(|&w| w == 0 || w > l.max_width)
            || !(spec.learning_rate.is_finite() && spec.learning_rate > 0.0)
            || !(spec.weight_decay.is_finite() && spec.weight_decay >= 0.0)
        {
            return error(ErrorCode::BadRequest, "model spec outside this party's limits");
        }
        if !self.policy.enabled {
            return self.refuse_training();
        }
        let min_hidden = self.policy.min_hidden_layers.max(1);
        if spec.hidden.len() < min_hidden {
            tracing::warn!(session, hidden = ?spec.hidden, "refused a bottom model with too few hidden layers");
            return error(
                ErrorCode::PolicyRefused,
                format!(
                    "refused by this bank's training policy: the bottom model needs at least {min_hidden} non-linear hidden layer(s) (training.min_hidden_layers)"
                ),
            );
        }
        if spec.emb_dim > self.max_emb_dim {
            tracing::warn!(
                session,
                emb_dim = spec.emb_dim,
                allowed = self.max_emb_dim,
                "refused a too-wide embedding"
            );
            return error(
                ErrorCode::PolicyRefused,
                format!(
                    "refused by this bank's training policy: embedding width {} must be below this bank's encoded input width (at most {})",
                    spec.emb_dim, self.max_emb_dim
                ),
            );
        }
        // Customers this party does not have are simply not part of its fit.
        let rows: Vec<usize> = match self.rows_of(session, fit) {
            Ok(r) => r.into_iter().flatten().collect(),
            Err(e) => return e,
        };
        if rows.is_empty() {
            return error(
                ErrorCode::UnknownId,
                "none of the training customers is known to this party",
            );
        }
        let fit = self.data.features().select(ndarray::Axis(0), &rows);
        let hidden: Vec<usize> = spec.hidden.iter().map(|&w| w as usize).collect();
        let encoder = Encoder::fit(fit.view());
        let baseline = encoder
            .transform(fit.view())
            .mean_axis(ndarray::Axis(0))
            .unwrap_or_else(|| ndarray::Array1::zeros(encoder.width()));
        let seed = crate::policy::mix_seed(spec.seed, self.own_seed);
        let model = BottomModel::new(encoder, baseline, &hidden, spec.emb_dim as usize, seed);
        tracing::info!(session, hidden = ?spec.hidden, emb_dim = spec.emb_dim, customers = rows.len(), "taking part in a training run (training.enabled)");
        let adam = Adam::new(
            &model.mlp,
            f64::from(spec.learning_rate),
            f64::from(spec.weight_decay),
        );
        let (n_features, emb_dim) = (model.n_features() as u32, model.emb_dim() as u32);
        match self.session.lock() {
            Ok(mut g) => {
                *g = Some(Session {
                    id: session,
                    model,
                    adam,
                    pending: None,
                    checkpoint: None,
                })
            }
            Err(_) => return error(ErrorCode::Internal, "session state poisoned"),
        }
        Response::Model {
            n_features,
            emb_dim,
            reasons: self.reasons.published(),
        }
    }

    fn with_session(&self, session: u64, f: impl FnOnce(&mut Session) -> Response) -> Response {
        let Ok(mut guard) = self.session.lock() else {
            return error(ErrorCode::Internal, "session state poisoned");
        };
        match guard.as_mut() {
            Some(s) if s.id == session => f(s),
            _ => error(ErrorCode::NoSession, format!("no training session {session}")),
        }
    }

    pub(super) fn forward(&self, session: u64, step: u64, handles: &[u64], train: bool) -> Response {
        if let Some(r) = self.check_len(handles.len()) {
            return r;
        }
        // Customers this party does not know get zero rows, flagged in `known`; the coordinator
        // uses its absent embedding for them and sends back zero gradients.
        let rows = match self.rows_of(session, handles) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let (x, known) = self.data.gather_rows(&rows);
        self.with_session(session, |s| {
            let mut xs = s.model.encode(x.view());
            for (r, k) in known.iter().enumerate() {
                if !k {
                    xs.row_mut(r).fill(0.0);
                }
            }
            if train {
                let (out, cache) = s.model.mlp.forward_train(xs.view());
                s.pending = Some((step, cache, handles.len()));
                Response::Embeddings {
                    matrix: Matrix::from_array(&out),
                    known,
                }
            } else {
                Response::Embeddings {
                    matrix: Matrix::from_array(&s.model.mlp.forward(xs.view())),
                    known,
                }
            }
        })
    }

    pub(super) fn backward(&self, session: u64, step: u64, grad: &Matrix, learning_rate: f32) -> Response {
        if !grad.is_well_formed() {
            return error(
                ErrorCode::BadRequest,
                "gradient matrix is malformed or not finite",
            );
        }
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return error(ErrorCode::BadRequest, "learning rate must be positive and finite");
        }
        self.with_session(session, |s| {
            let Some((pending_step, cache, n)) = s.pending.take() else {
                return error(ErrorCode::NoSession, "no forward pass awaiting a backward pass");
            };
            if pending_step != step || grad.rows as usize != n || grad.cols as usize != s.model.emb_dim() {
                return error(
                    ErrorCode::BadRequest,
                    "gradient does not match the pending forward pass",
                );
            }
            let Ok(g) = grad.to_array(n, s.model.emb_dim()) else {
                return error(ErrorCode::BadRequest, "gradient shape");
            };
            let (grads, _) = s.model.mlp.backward(&cache, g.view());
            s.adam.lr = f64::from(learning_rate);
            s.adam.step(&mut s.model.mlp, &grads);
            if !s.model.mlp.is_finite() {
                return error(ErrorCode::Internal, "training diverged (non-finite weights)");
            }
            Response::Ack
        })
    }

    /// Remembers the session's current weights as the best so far.
    pub(super) fn checkpoint(&self, session: u64) -> Response {
        self.with_session(session, |s| {
            s.checkpoint = Some(s.model.clone());
            Response::Ack
        })
    }

    /// Goes back to the checkpointed weights.
    pub(super) fn restore(&self, session: u64) -> Response {
        self.with_session(session, |s| match &s.checkpoint {
            Some(c) => {
                s.model = c.clone();
                s.pending = None;
                Response::Ack
            }
            None => error(ErrorCode::NoSession, "no checkpoint in this session"),
        })
    }

    /// Saves the session's weights as `model_id`.
    pub(super) fn save(&self, session: u64, model_id: &str) -> Response {
        if !valid_model_id(model_id) {
            return error(ErrorCode::BadRequest, "invalid model id");
        }
        let dir = self.model_dir.clone();
        self.with_session(session, |s| match s.model.save(&dir, model_id) {
            Ok(()) => {
                tracing::info!(
                    session,
                    model = model_id,
                    "training run saved this bank's bottom model"
                );
                Response::Ack
            }
            Err(e) => error(ErrorCode::Internal, e.to_string()),
        })
    }
}
