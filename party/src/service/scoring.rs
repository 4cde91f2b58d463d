//! Scoring requests: load a saved bottom model, embed customers by id, and explain (reason
//! codes from the coordinator's logit gradients; only codes leave).

use std::sync::Arc;
use std::time::Instant;

use tessera_common::wire::{ErrorCode, Matrix, Response, valid_model_id};

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
    pub(super) fn explain(&self, ids: &[String], grads: &Matrix) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc() {
            Ok(m) => m,
            Err(e) => return e,
        };
        let Ok(g) = grads.to_array(ids.len(), model.emb_dim()) else {
            return error(
                ErrorCode::BadRequest,
                "gradient matrix does not match the request",
            );
        };
        let model_id = self.serving_model().unwrap_or_default();
        let taken = match self.explain.lock() {
            Ok(mut a) => a.take(&model_id, ids, Instant::now()),
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

    pub(super) fn embed(&self, ids: &[String]) -> Response {
        if let Some(r) = self.check_len(ids.len()) {
            return r;
        }
        let model = match self.serving_model_arc() {
            Ok(m) => m,
            Err(e) => return e,
        };
        let (x, known) = self.data.gather(ids);
        let mut emb = model.embed(x.view());
        let model_id = self.serving_model().unwrap_or_default();
        if let Ok(mut a) = self.explain.lock() {
            a.embedded(&model_id, ids, Instant::now());
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
