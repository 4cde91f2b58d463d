//! The training driver's access to the federation: fan-outs that demand an answer from
//! every party and turn anything else into a [`TrainError`] naming the party and the step,
//! and the evaluation passes (embeddings → top model) used by the epochs and the holdout.

use std::time::Duration;

use ndarray::Array2;
use tessera_common::federation::Federation;
use tessera_common::model::TopModel;
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{PartyId, Request, Response};

use super::{PartyFailure, TrainError};

/// Rows per evaluation request.
const EVAL_CHUNK: usize = 8_192;

/// The federation, the parties in configured order, and the time-out of one request.
pub(crate) struct Ctx<'a, F> {
    pub(super) fed: &'a F,
    pub(super) parties: &'a [PartyId],
    pub(super) timeout: Duration,
    /// Names the run in the parties' logs (`train:<model id>`).
    pub(super) trace: Vec<String>,
}

impl<F: Federation> Ctx<'_, F> {
    /// Fans out and demands an answer (not an error) from every party.
    pub(super) async fn all(
        &self,
        stage: &'static str,
        request_for: impl Fn(&PartyId) -> Request + Send + Sync,
    ) -> Result<Vec<(PartyId, Response)>, TrainError> {
        self.some(self.parties, stage, request_for).await
    }

    /// Fans out to `subset` (configured order kept) and demands an answer from each.
    pub(super) async fn some(
        &self,
        subset: &[PartyId],
        stage: &'static str,
        request_for: impl Fn(&PartyId) -> Request + Send + Sync,
    ) -> Result<Vec<(PartyId, Response)>, TrainError> {
        let outcomes = self
            .fed
            .fanout(subset, request_for, self.timeout, &self.trace)
            .await;
        let mut out = Vec::with_capacity(outcomes.len());
        for (party, o) in outcomes {
            let failure = match o {
                Outcome::Answered(Response::Error { code, message }) => {
                    PartyFailure::Refused { code, message }
                }
                Outcome::Answered(r) => {
                    out.push((party, r));
                    continue;
                }
                Outcome::Failed(e) => PartyFailure::Failed(e),
                Outcome::TimedOut => PartyFailure::TimedOut(self.timeout),
            };
            return Err(TrainError::Party {
                party,
                stage,
                failure,
            });
        }
        // Back into the configured party order.
        let mut ordered = Vec::with_capacity(out.len());
        for p in subset {
            if let Some(i) = out.iter().position(|(q, _)| q == p) {
                ordered.push(out.swap_remove(i));
            }
        }
        Ok(ordered)
    }

    pub(super) async fn one(
        &self,
        party: &PartyId,
        stage: &'static str,
        request: Request,
    ) -> Result<Response, TrainError> {
        let mut r = self
            .some(std::slice::from_ref(party), stage, |_| request.clone())
            .await?;
        r.pop()
            .map(|(_, r)| r)
            .ok_or_else(|| TrainError::Setup("empty fan-out".into()))
    }

    /// Embeddings of `ids` from every party (party order) and which party knows which row.
    pub(super) async fn embeddings(
        &self,
        stage: &'static str,
        session: u64,
        step: u64,
        ids: &[u64],
        train: bool,
        dims: &[usize],
    ) -> Result<(Vec<Array2<f64>>, Vec<Vec<bool>>), TrainError> {
        let answers = self
            .all(stage, |_| Request::Forward {
                session,
                step,
                rows: ids.to_vec(),
                train,
            })
            .await?;
        let mut parts = Vec::with_capacity(dims.len());
        let mut known_all = Vec::with_capacity(dims.len());
        for ((party, r), &d) in answers.into_iter().zip(dims) {
            let Response::Embeddings { matrix, known } = r else {
                return Err(TrainError::bad(&party, stage, "expected embeddings"));
            };
            if known.len() != ids.len() {
                return Err(TrainError::bad(
                    &party,
                    stage,
                    "embedding flags of the wrong length",
                ));
            }
            let m: Array2<f64> = matrix
                .to_array(ids.len(), d)
                .map_err(|e| TrainError::bad(&party, stage, e.to_string()))?;
            parts.push(m);
            known_all.push(known);
        }
        Ok((parts, known_all))
    }

    /// Calibrated probabilities for `ids`; with `absent = Some(p)`, as if party `p` were missing.
    pub(super) async fn predict(
        &self,
        top: &TopModel,
        session: u64,
        ids: &[u64],
        absent: Option<usize>,
    ) -> Result<Vec<f64>, TrainError> {
        let logits = self.logits(top, session, ids, absent).await?;
        Ok(logits
            .into_iter()
            .map(|z| top.calibration.probability(z))
            .collect())
    }

    /// Raw logits for `ids`; with `absent = Some(p)`, as if party `p` were missing.
    pub(super) async fn logits(
        &self,
        top: &TopModel,
        session: u64,
        ids: &[u64],
        absent: Option<usize>,
    ) -> Result<Vec<f64>, TrainError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(EVAL_CHUNK) {
            let (parts, mut present) = self
                .embeddings("evaluation", session, 0, chunk, false, &top.dims)
                .await?;
            if let Some(p) = absent {
                present[p].iter_mut().for_each(|v| *v = false);
            }
            let x = top.input(&parts, &present);
            out.extend(top.logits(x.view()));
        }
        Ok(out)
    }
}
