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

use crate::bottom::BottomModel;
use crate::config::PartyLimits;

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
    session: Mutex<Option<Session>>,
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
    pub fn new(id: PartyId, data: FeatureTable, model_dir: PathBuf, limits: PartyLimits) -> Self {
        Self {
            id,
            data,
            model_dir,
            limits,
            serving: RwLock::new(None),
            session: Mutex::new(None),
        }
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

    /// Answers one request.
    pub fn handle(&self, request: Request) -> Response {
        match request {
            Request::Describe => Response::Info(PartyInfo {
                party_id: self.id.clone(),
                n_features: self.data.n_features() as u32,
                n_rows: self.data.len() as u64,
                has_labels: self.data.labels().is_some(),
            }),
            Request::ListIds { offset, limit } => {
                let limit = limit.min(self.limits.max_page) as usize;
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(self.data.len());
                let end = start.saturating_add(limit).min(self.data.len());
                Response::Ids {
                    ids: self.data.ids()[start..end].to_vec(),
                    total: self.data.len() as u64,
                }
            }
            Request::Labels { ids } => self.labels(&ids),
            Request::TrainInit {
                session,
                spec,
                fit_ids,
            } => self.train_init(session, &spec, &fit_ids),
            Request::Forward {
                session,
                step,
                ids,
                train,
            } => self.forward(session, step, &ids, train),
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
        }
    }

    fn check_ids(&self, ids: &[String]) -> Option<Response> {
        (ids.len() > self.limits.max_batch).then(|| {
            error(
                ErrorCode::BadRequest,
                format!("{} ids exceed the limit of {}", ids.len(), self.limits.max_batch),
            )
        })
    }

    fn labels(&self, ids: &[String]) -> Response {
        if let Some(r) = self.check_ids(ids) {
            return r;
        }
        let Some(labels) = self.data.labels() else {
            return error(ErrorCode::NoLabels, "this party holds no labels");
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.data.row_of(id) {
                Some(r) => out.push(labels[r]),
                None => {
                    return error(ErrorCode::UnknownId, "a requested id is unknown to this party");
                }
            }
        }
        Response::Labels { labels: out }
    }

    fn train_init(
        &self,
        session: u64,
        spec: &tessera_common::wire::BottomSpec,
        fit_ids: &[String],
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
        // Customers this party does not have are simply not part of its fit.
        let rows: Vec<usize> = fit_ids.iter().filter_map(|id| self.data.row_of(id)).collect();
        if rows.is_empty() {
            return error(
                ErrorCode::UnknownId,
                "none of the training customers is known to this party",
            );
        }
        let fit = self.data.features().select(ndarray::Axis(0), &rows);
        let hidden: Vec<usize> = spec.hidden.iter().map(|&w| w as usize).collect();
        let model = BottomModel::new(
            Encoder::fit(fit.view()),
            &hidden,
            spec.emb_dim as usize,
            spec.seed,
        );
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
        Response::Model { n_features, emb_dim }
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

    fn forward(&self, session: u64, step: u64, ids: &[String], train: bool) -> Response {
        if let Some(r) = self.check_ids(ids) {
            return r;
        }
        // Customers this party does not know get zero rows, flagged in `known`; the coordinator
        // uses its absent embedding for them and sends back zero gradients.
        let (x, known) = self.data.gather(ids);
        self.with_session(session, |s| {
            let mut xs = s.model.encode(x.view());
            for (r, k) in known.iter().enumerate() {
                if !k {
                    xs.row_mut(r).fill(0.0);
                }
            }
            if train {
                let (out, cache) = s.model.mlp.forward_train(xs.view());
                s.pending = Some((step, cache, ids.len()));
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
                Response::Model { n_features, emb_dim }
            }
            Err(crate::Error::NoModel(_)) => error(
                ErrorCode::NoModel,
                format!("model {model_id} not found at this party"),
            ),
            Err(e) => error(ErrorCode::NoModel, e.to_string()),
        }
    }

    fn embed(&self, ids: &[String]) -> Response {
        if let Some(r) = self.check_ids(ids) {
            return r;
        }
        let model = match self.serving.read() {
            Ok(g) => g.as_ref().map(|(_, m)| m.clone()),
            Err(_) => return error(ErrorCode::Internal, "serving state poisoned"),
        };
        let Some(model) = model else {
            return error(ErrorCode::NoModel, "no model loaded");
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

    #[test]
    fn training_round_trip_then_serving() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let fit: Vec<String> = (0..15).map(|i| format!("c{i}")).collect();
        assert_eq!(
            s.handle(Request::TrainInit {
                session: 7,
                spec: spec(),
                fit_ids: fit
            }),
            Response::Model {
                n_features: 3,
                emb_dim: 2
            }
        );
        let batch = ids(&["c1", "c2", "c3"]);
        let r = s.handle(Request::Forward {
            session: 7,
            step: 1,
            ids: batch.clone(),
            train: true,
        });
        let Response::Embeddings { matrix, known } = r else {
            panic!("{r:?}")
        };
        assert_eq!((matrix.rows, matrix.cols, known), (3, 2, vec![true; 3]));
        // Wrong step, wrong session, wrong shape are refused.
        let grad = Matrix {
            rows: 3,
            cols: 2,
            data: vec![0.1; 6],
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
            ids: batch.clone(),
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
        assert_eq!(
            s.handle(Request::Load { model_id: "m".into() }),
            Response::Model {
                n_features: 3,
                emb_dim: 2
            }
        );
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
                fit_ids: ids(&["zz"])
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
                fit_ids: vec![]
            }),
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        assert_eq!(
            s.handle(Request::Labels {
                ids: ids(&["c3", "c4"])
            }),
            Response::Labels { labels: vec![1, 0] }
        );
        let too_many: Vec<String> = (0..100_001).map(|i| i.to_string()).collect();
        assert!(matches!(
            s.handle(Request::Embed { ids: too_many }),
            Response::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        let Response::Ids { ids: page, total } = s.handle(Request::ListIds {
            offset: 18,
            limit: 10,
        }) else {
            panic!()
        };
        assert_eq!((page.len(), total), (2, 20));
        let Response::Ids { ids: page, .. } = s.handle(Request::ListIds {
            offset: u64::MAX,
            limit: 10,
        }) else {
            panic!()
        };
        assert!(page.is_empty());
    }
}
