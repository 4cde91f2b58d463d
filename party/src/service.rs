//! The party's request handler: a pure function of its state and one [`Request`], no IO
//! except model files. The driver in [`crate::run`] feeds it requests from the coordinator.
//!
//! **Invariant:** nothing it returns contains a feature value: only embeddings, labels (label
//! holder, on request), ids, counts and fixed-text error messages.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use ndarray::Array2;
use tessera_common::data::FeatureTable;
use tessera_common::model::{Adam, Cache, Encoder};
use tessera_common::wire::{ErrorCode, Matrix, PartyId, PartyInfo, Request, Response, valid_model_id};

use crate::align::Alignment;
use crate::bottom::BottomModel;
use crate::config::PartyLimits;
use crate::reasons::ReasonDictionary;

/// A training session in progress.
struct Session {
    id: u64,
    model: BottomModel,
    adam: Adam,
    /// The forward pass awaiting its backward pass: step, cache and batch size.
    pending: Option<(u64, Cache, usize)>,
    checkpoint: Option<BottomModel>,
}

/// One party's state: its data, the model it serves, and the training session if any.
pub struct PartyService {
    id: PartyId,
    data: FeatureTable,
    model_dir: PathBuf,
    limits: PartyLimits,
    serving: RwLock<Option<(String, Arc<BottomModel>)>>,
    alignment: RwLock<Option<Alignment>>,
    session: Mutex<Option<Session>>,
    reasons: ReasonDictionary,
}

fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    Response::Error {
        code,
        message: message.into(),
    }
}

fn to_matrix(a: &Array2<f64>) -> Matrix {
    Matrix {
        rows: a.nrows() as u32,
        cols: a.ncols() as u32,
        data: a.iter().map(|&v| v as f32).collect(),
    }
}

impl PartyService {
    /// A service over `data`, keeping models in `model_dir`.
    /// Reasons are one code per column until [`PartyService::with_reasons`] sets a dictionary.
    pub fn new(id: PartyId, data: FeatureTable, model_dir: PathBuf, limits: PartyLimits) -> Self {
        let reasons = ReasonDictionary::per_column(&data.feature_names);
        Self {
            reasons,
            id,
            data,
            model_dir,
            limits,
            serving: RwLock::new(None),
            alignment: RwLock::new(None),
            session: Mutex::new(None),
        }
    }

    /// Loads the configured data and reason dictionary (one code per column when none is
    /// configured) and builds the service.
    ///
    /// # Errors
    /// [`crate::Error::Data`] if the data cannot be loaded, [`crate::Error::Config`] if the
    /// reason dictionary does not fit the data.
    pub fn from_config(cfg: &crate::config::PartyConfig) -> Result<Self, crate::Error> {
        let opts = tessera_common::data::LoadOptions {
            id_column: cfg.data.id_column.clone(),
            label_column: cfg.data.label_column.clone(),
            max_rows: cfg.data.max_rows,
            limit: cfg.data.limit,
        };
        let data = FeatureTable::load(&cfg.data.path, &opts)?;
        let reasons = if cfg.reasons.is_empty() {
            tracing::warn!("no reasons configured: reason codes are one per feature column (F01...)");
            ReasonDictionary::per_column(&data.feature_names)
        } else {
            ReasonDictionary::from_config(&cfg.reasons, &data.feature_names).map_err(crate::Error::Config)?
        };
        Ok(Self::new(
            cfg.party_id.clone(),
            data,
            cfg.model_dir.clone(),
            cfg.limits.clone(),
        )
        .with_reasons(reasons))
    }

    /// Uses `reasons` as the published reason dictionary.
    pub fn with_reasons(mut self, reasons: ReasonDictionary) -> Self {
        self.reasons = reasons;
        self
    }

    /// Number of customers.
    pub fn rows(&self) -> usize {
        self.data.len()
    }

    /// Number of feature columns.
    pub fn n_features(&self) -> usize {
        self.data.n_features()
    }

    /// Whether this party holds labels.
    pub fn has_labels(&self) -> bool {
        self.data.labels().is_some()
    }

    /// The party id.
    pub fn id(&self) -> &PartyId {
        &self.id
    }

    /// The id of the model loaded for scoring, if any.
    pub fn serving_model(&self) -> Option<String> {
        self.serving
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(id, _)| id.clone()))
    }

    /// The customer id behind `handle` in the current alignment, if this party holds it.
    /// For the bank's own use in this process (audits of what was matched, tests); never sent.
    pub fn aligned_customer(&self, handle: u64) -> Option<String> {
        let g = self.alignment.read().ok()?;
        let row = g.as_ref()?.row(handle)?;
        self.data.ids().get(row).cloned()
    }

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::Describe => Response::Info(PartyInfo {
                party_id: self.id.clone(),
                n_features: self.data.n_features() as u32,
                n_rows: self.data.len() as u64,
                has_labels: self.data.labels().is_some(),
            }),
            Request::PsiInit { session } => {
                let a = Alignment::new(session, self.data.len());
                let n = a.len() as u64;
                match self.alignment.write() {
                    Ok(mut g) => *g = Some(a),
                    Err(_) => return error(ErrorCode::Internal, "alignment state poisoned"),
                }
                Response::PsiReady { n }
            }
            Request::PsiBlind {
                session,
                offset,
                limit,
            } => {
                let limit = (limit as usize).min(self.limits.max_batch);
                self.with_alignment(session, |a| Response::Points {
                    points: a.blind(self.data.ids(), offset, limit),
                })
            }
            Request::PsiReblind { session, points } => {
                if points.len() / tessera_common::psi::POINT_LEN > self.limits.max_batch {
                    return error(ErrorCode::BadRequest, "too many points in one request");
                }
                self.with_alignment(session, |a| match a.reblind(&points) {
                    Ok(points) => Response::Points { points },
                    Err(e) => error(ErrorCode::BadRequest, e.to_string()),
                })
            }
            Request::PsiAssign {
                session,
                positions,
                handles,
            } => {
                if positions.len() > self.limits.max_batch {
                    return error(ErrorCode::BadRequest, "too many handles in one request");
                }
                let Ok(mut g) = self.alignment.write() else {
                    return error(ErrorCode::Internal, "alignment state poisoned");
                };
                match g.as_mut() {
                    Some(a) if a.session() == session => match a.assign(&positions, &handles) {
                        Ok(()) => Response::Ack,
                        Err(e) => error(ErrorCode::BadRequest, e.to_string()),
                    },
                    _ => error(ErrorCode::NoSession, format!("no alignment {session}")),
                }
            }
            Request::Split {
                session,
                complete,
                holdout_fraction,
                validation_fraction,
                seed,
                max_rows,
            } => self.split(
                session,
                &complete,
                (holdout_fraction, validation_fraction),
                seed,
                max_rows,
            ),
            Request::Labels { session, handles } => self.labels(session, &handles),
            Request::TrainInit { session, spec, fit } => self.train_init(session, &spec, &fit),
            Request::Forward {
                session,
                step,
                rows,
                train,
            } => self.forward(session, step, &rows, train),
            Request::Backward {
                session,
                step,
                grad,
                learning_rate,
            } => self.backward(session, step, &grad, learning_rate),
            Request::Checkpoint { session } => self.with_session(session, |s| {
                s.checkpoint = Some(s.model.clone());
                Response::Ack
            }),
            Request::Restore { session } => self.with_session(session, |s| match &s.checkpoint {
                Some(c) => {
                    s.model = c.clone();
                    s.pending = None;
                    Response::Ack
                }
                None => error(ErrorCode::NoSession, "no checkpoint in this session"),
            }),
            Request::Save { session, model_id } => {
                if !valid_model_id(&model_id) {
                    return error(ErrorCode::BadRequest, "invalid model id");
                }
                let dir = self.model_dir.clone();
                self.with_session(session, |s| match s.model.save(&dir, &model_id) {
                    Ok(()) => Response::Ack,
                    Err(e) => error(ErrorCode::Internal, e.to_string()),
                })
            }
            Request::Load { model_id } => self.load(&model_id),
            Request::Embed { ids } => self.embed(&ids),
            Request::Explain { ids, grads } => self.explain(&ids, &grads),
        }
    }

    fn check_len(&self, n: usize) -> Option<Response> {
        (n > self.limits.max_batch).then(|| {
            error(
                ErrorCode::BadRequest,
                format!("{n} ids exceed the limit of {}", self.limits.max_batch),
            )
        })
    }

    fn with_alignment(&self, session: u64, f: impl FnOnce(&Alignment) -> Response) -> Response {
        let Ok(g) = self.alignment.read() else {
            return error(ErrorCode::Internal, "alignment state poisoned");
        };
        match g.as_ref() {
            Some(a) if a.session() == session => f(a),
            _ => error(ErrorCode::NoSession, format!("no alignment {session}")),
        }
    }

    /// Rows of `handles` under the alignment of `session` (`None` for handles this party
    /// does not hold).
    fn rows_of(&self, session: u64, handles: &[u64]) -> Result<Vec<Option<usize>>, Response> {
        let Ok(g) = self.alignment.read() else {
            return Err(error(ErrorCode::Internal, "alignment state poisoned"));
        };
        match g.as_ref() {
            Some(a) if a.session() == session => Ok(handles.iter().map(|&h| a.row(h)).collect()),
            _ => Err(error(ErrorCode::NoSession, format!("no alignment {session}"))),
        }
    }

    /// The label holder's split of the aligned customers, in its file order.
    fn split(
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

    fn labels(&self, session: u64, handles: &[u64]) -> Response {
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

    fn train_init(&self, session: u64, spec: &tessera_common::wire::BottomSpec, fit: &[u64]) -> Response {
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
        let model = BottomModel::new(encoder, baseline, &hidden, spec.emb_dim as usize, spec.seed);
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

    fn forward(&self, session: u64, step: u64, handles: &[u64], train: bool) -> Response {
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
                    matrix: to_matrix(&out),
                    known,
                }
            } else {
                Response::Embeddings {
                    matrix: to_matrix(&s.model.mlp.forward(xs.view())),
                    known,
                }
            }
        })
    }

    fn backward(&self, session: u64, step: u64, grad: &Matrix, learning_rate: f32) -> Response {
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
            let g = Array2::from_shape_vec(
                (n, grad.cols as usize),
                grad.data.iter().map(|&v| f64::from(v)).collect(),
            );
            let Ok(g) = g else {
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

    fn load(&self, model_id: &str) -> Response {
        if !valid_model_id(model_id) {
            return error(ErrorCode::BadRequest, "invalid model id");
        }
        match BottomModel::load(&self.model_dir, model_id) {
            Ok(m) if m.n_features() != self.data.n_features() => error(
                ErrorCode::NoModel,
                format!(
                    "model {model_id} expects {} features, this party has {}",
                    m.n_features(),
                    self.data.n_features()
                ),
            ),
            Ok(m) => {
                let (n_features, emb_dim) = (m.n_features() as u32, m.emb_dim() as u32);
                match self.serving.write() {
                    Ok(mut g) => *g = Some((model_id.to_string(), Arc::new(m))),
                    Err(_) => return error(ErrorCode::Internal, "serving state poisoned"),
                }
                Response::Model {
                    n_features,
                    emb_dim,
                    reasons: self.reasons.published(),
                }
            }
            Err(crate::Error::NoModel(_)) => error(
                ErrorCode::NoModel,
                format!("model {model_id} not found at this party"),
            ),
            Err(e) => error(ErrorCode::NoModel, e.to_string()),
        }
    }

    fn serving_model_arc(&self) -> Result<Arc<BottomModel>, Response> {
        match self.serving.read() {
            Ok(g) => g
                .as_ref()
                .map(|(_, m)| m.clone())
                .ok_or_else(|| error(ErrorCode::NoModel, "no model loaded")),
            Err(_) => Err(error(ErrorCode::Internal, "serving state poisoned")),
        }
    }

    /// Reason codes from the logit gradients the coordinator sent. Only codes leave.
    fn explain(&self, ids: &[String], grads: &Matrix) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc() {
            Ok(m) => m,
            Err(e) => return e,
        };
        if !grads.is_well_formed()
            || grads.rows as usize != ids.len()
            || grads.cols as usize != model.emb_dim()
        {
            return error(
                ErrorCode::BadRequest,
                "gradient matrix does not match the request",
            );
        }
        let Ok(g) = Array2::from_shape_vec(
            (ids.len(), model.emb_dim()),
            grads.data.iter().map(|&v| f64::from(v)).collect(),
        ) else {
            return error(ErrorCode::BadRequest, "gradient shape");
        };
        let (x, known) = self.data.gather(ids);
        let contributions = model.attribute(x.view(), g.view());
        let codes = known
            .iter()
            .zip(contributions.rows())
            .map(|(&k, row)| if k { self.reasons.rank(row) } else { Vec::new() })
            .collect();
        Response::Reasons { codes }
    }

    fn embed(&self, ids: &[String]) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc() {
            Ok(m) => m,
            Err(e) => return e,
        };
        let (x, known) = self.data.gather(ids);
        let mut emb = model.embed(x.view());
        for (i, k) in known.iter().enumerate() {
            if !k {
                emb.row_mut(i).fill(0.0);
            }
        }
        Response::Embeddings {
            matrix: to_matrix(&emb),
            known,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_common::wire::BottomSpec;

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
        let r = s.handle(Request::Explain {
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
        assert_eq!(
            s.handle(Request::Explain {
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
            s.handle(Request::Embed { ids: batch.clone() }),
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
            ids: ids(&["c1", "unknown"]),
        });
        let Response::Embeddings { matrix, known } = r else {
            panic!("{r:?}")
        };
        assert_eq!(known, vec![true, false]);
        assert_eq!(&matrix.data[2..], &[0.0, 0.0]);
        assert_eq!(s.serving_model().as_deref(), Some("m"));
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
            s.handle(Request::Embed { ids: too_many }),
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
    }
}
