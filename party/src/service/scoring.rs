//! Scoring requests: load a saved bottom model (up to [`MAX_LOADED_MODELS`] at once), embed
//! customers by id with the model the request names, and explain (reason codes from the
//! coordinator's logit gradients; only codes leave).

use std::sync::Arc;
use std::time::Instant;

use tessera_common::wire::{ErrorCode, MAX_LOADED_MODELS, Matrix, Response, valid_model_id};

use super::{PartyService, error};
use crate::bottom::BottomModel;

impl PartyService {
    pub(super) fn load(&self, model_id: &str) -> Response {
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
                    Ok(mut g) => {
                        g.retain(|(id, _)| id != model_id);
                        g.insert(0, (model_id.to_string(), Arc::new(m)));
                        g.truncate(MAX_LOADED_MODELS);
                    }
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

    /// Loaded model `model_id`, or the refusal to send.
    fn serving_model_arc(&self, model_id: &str) -> Result<Arc<BottomModel>, Response> {
        match self.serving.read() {
            Ok(g) => g
                .iter()
                .find(|(id, _)| id == model_id)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| error(ErrorCode::NoModel, "model not loaded at this party")),
            Err(_) => Err(error(ErrorCode::Internal, "serving state poisoned")),
        }
    }

    /// Reason codes from the logit gradients the coordinator sent. Only codes leave.
    pub(super) fn explain(&self, model_id: &str, ids: &[String], grads: &Matrix) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc(model_id) {
            Ok(m) => m,
            Err(e) => return e,
        };
        let Ok(g) = grads.to_array(ids.len(), model.emb_dim()) else {
            return error(
                ErrorCode::BadRequest,
                "gradient matrix does not match the request",
            );
        };
        let taken = match self.explain.lock() {
            Ok(mut a) => a.take(model_id, ids, Instant::now()),
            Err(_) => return error(ErrorCode::Internal, "explain state poisoned"),
        };
        if let Err(why) = taken {
            tracing::warn!(customers = ids.len(), "{why}");
            return error(ErrorCode::PolicyRefused, why);
        }
        let (x, known) = self.data.gather(ids);
        let contributions = model.attribute(x.view(), g.view());
        let codes = known
            .iter()
            .zip(contributions.rows())
            .map(|(&k, row)| if k { self.reasons.rank(row) } else { Vec::new() })
            .collect();
        Response::Reasons { codes }
    }

    pub(super) fn embed(&self, model_id: &str, ids: &[String]) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc(model_id) {
            Ok(m) => m,
            Err(e) => return e,
        };
        let (x, known) = self.data.gather(ids);
        let mut emb = model.embed(x.view());
        if let Ok(mut a) = self.explain.lock() {
            a.embedded(model_id, ids, Instant::now());
        }
        for (i, k) in known.iter().enumerate() {
            if !k {
                emb.row_mut(i).fill(0.0);
            }
        }
        Response::Embeddings {
            matrix: Matrix::from_array(&emb),
            known,
        }
    }
}
