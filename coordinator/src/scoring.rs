//! Scoring a batch of customers over any [`Federation`]: embeddings from the parties that
//! hold the active model, the top model's calibrated probability of default, a Monte Carlo
//! dropout interval, the score and its band, and reason codes computed by the parties from
//! the logit gradient of their own embedding. The QUIC path ([`crate::serving::Serving`]) and
//! the in-process floor of the serving benchmark both call [`score_batch`].

use std::collections::BTreeMap;
use std::time::Duration;

use ndarray::Array2;
use rand::SeedableRng;
use sha2::{Digest, Sha256};
use tessera_common::federation::Federation;
use tessera_common::model::{ScoreScale, TopModel};
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{ErrorCode, MAX_REASONS, Matrix, PartyId, ReasonCode, Request, Response};

use crate::artifact::Manifest;

/// Ids per request to one party (well under a party's default `limits.max_batch`).
pub const CHUNK: usize = 1_000;

/// What became of one party for one customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartyStatus {
    /// The party contributed its embedding.
    Ok,
    /// The party does not know this customer.
    UnknownCustomer,
    /// The party is not connected, has not loaded the model, or failed.
    Unavailable,
    /// The party did not answer in time.
    Timeout,
}

/// A 90% interval of the score (and of the probability of default).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower end of the score interval.
    pub score_low: i32,
    /// Upper end of the score interval.
    pub score_high: i32,
    /// Lower end of the probability-of-default interval.
    pub pd_low: f64,
    /// Upper end of the probability-of-default interval.
    pub pd_high: f64,
}

/// A reason code as answered: the party's code, its text, and the party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reason {
    /// The code from the party's dictionary.
    pub code: String,
    /// Its published text.
    pub text: String,
    /// The party that gave it.
    pub party: PartyId,
}

/// A scored customer.
#[derive(Clone, Debug)]
pub struct Scored {
    /// Probability of default (calibrated).
    pub pd: f64,
    /// Score on the configured scale.
    pub score: i32,
    /// Band of the score.
    pub band: String,
    /// 90% Monte Carlo dropout interval.
    pub interval: Interval,
    /// Up to four reason codes, most adverse first.
    pub reasons: Vec<Reason>,
    /// Model that scored.
    pub model_version: String,
    /// Each party's status.
    pub parties: Vec<(PartyId, PartyStatus)>,
    /// Parties that did not contribute (their absent embedding was used): degraded.
    pub missing: Vec<PartyId>,
}

/// Why one customer could not be scored.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ItemError {
    /// No party knows the customer.
    #[error("customer not found at: {}", names(.0, |s| s == PartyStatus::UnknownCustomer))]
    UnknownCustomer(Vec<(PartyId, PartyStatus)>),
    /// Fewer than the required parties contributed because others are unavailable.
    #[error("parties unavailable: {}", names(.0, |s| matches!(s, PartyStatus::Unavailable | PartyStatus::Timeout)))]
    PartiesUnavailable(Vec<(PartyId, PartyStatus)>),
}

impl ItemError {
    /// Party statuses.
    pub fn parties(&self) -> &[(PartyId, PartyStatus)] {
        match self {
            ItemError::UnknownCustomer(v) | ItemError::PartiesUnavailable(v) => v,
        }
    }
}

fn names(v: &[(PartyId, PartyStatus)], keep: impl Fn(PartyStatus) -> bool) -> String {
    v.iter()
        .filter(|(_, s)| keep(*s))
        .map(|(p, s)| match s {
            PartyStatus::Timeout => format!("{p} (timeout)"),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a whole batch failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// A party answered with something malformed.
    #[error("party {0} sent a malformed answer")]
    BadAnswer(PartyId),
}

/// Everything scoring needs besides the federation.
pub struct ScoringContext<'a> {
    /// The manifest of the active model.
    pub manifest: &'a Manifest,
    /// Its top model.
    pub top: &'a TopModel,
    /// Each party's published reason dictionary.
    pub dictionaries: &'a BTreeMap<PartyId, Vec<ReasonCode>>,
    /// The score scale and bands.
    pub scale: &'a ScoreScale,
    /// Least number of contributing parties.
    pub min_parties: usize,
    /// Monte Carlo dropout samples for the interval.
    pub interval_samples: usize,
    /// Deadline of each request to a party.
    pub timeout: Duration,
    /// Called for a party that answers it has no model loaded (it restarted).
    pub on_lost_model: Option<&'a (dyn Fn(&PartyId) + Sync)>,
}

/// A statistic of the samples: the `q` quantile (linear interpolation).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// A per-customer seed, so the interval of a customer is the same on every request.
fn seed_for(model: &str, customer: &str) -> u64 {
    let d = Sha256::new()
        .chain_update(model.as_bytes())
        .chain_update([0])
        .chain_update(customer.as_bytes())
        .finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}

/// Fans `request(chunk)` out to `parties` for each chunk of `ids` and returns, per party, the
/// outcome of every chunk in order.
async fn chunked<F: Federation>(
    fed: &F,
    parties: &[PartyId],
    ids: &[String],
    timeout: Duration,
    request: impl Fn(&PartyId, std::ops::Range<usize>) -> Request + Send + Sync,
) -> BTreeMap<PartyId, Vec<Outcome<Response>>> {
    let mut out: BTreeMap<PartyId, Vec<Outcome<Response>>> = BTreeMap::new();
    let mut start = 0;
    while start < ids.len() {
        let end = (start + CHUNK).min(ids.len());
        for (p, o) in fed.fanout(parties, |p| request(p, start..end), timeout).await {
            out.entry(p).or_default().push(o);
        }
        start = end;
    }
    out
}

/// Scores `ids` with the active model over `ready` (the parties that loaded it).
///
/// # Returns
/// One result per id, in order: a score, or why that customer could not be scored.
///
/// # Errors
/// [`BatchError::BadAnswer`] if a party answers with a malformed embedding.
pub async fn score_batch<F: Federation>(
    fed: &F,
    ready: &[PartyId],
    ctx: &ScoringContext<'_>,
    ids: &[String],
) -> Result<Vec<Result<Scored, ItemError>>, BatchError> {
    let n = ids.len();
    let entries = &ctx.manifest.parties;
    let version = &ctx.manifest.model_id;
    // 1. Embeddings.
    let answers = chunked(fed, ready, ids, ctx.timeout, |_, r| Request::Embed {
        ids: ids[r].to_vec(),
    })
    .await;
    let mut statuses = vec![Vec::with_capacity(entries.len()); n];
    let mut parts = Vec::with_capacity(entries.len());
    let mut present = Vec::with_capacity(entries.len());
    for entry in entries {
        let p = &entry.party_id;
        let d = entry.emb_dim as usize;
        let mut m = Array2::zeros((n, d));
        let mut here = vec![false; n];
        let mut row = 0;
        let chunks = answers.get(p);
        if let (Some(f), Some(v)) = (ctx.on_lost_model, chunks)
            && v.iter().any(lost_model)
        {
            f(p);
        }
        for c in 0..n.div_ceil(CHUNK) {
            let len = CHUNK.min(n - c * CHUNK);
            let outcome = chunks.and_then(|v| v.get(c));
            for i in 0..len {
                let status = match outcome {
                    None | Some(Outcome::Failed(_)) => PartyStatus::Unavailable,
                    Some(Outcome::TimedOut) => PartyStatus::Timeout,
                    Some(Outcome::Answered(Response::Embeddings { matrix, known })) => {
                        if i == 0
                            && (known.len() != len
                                || matrix.rows as usize != len
                                || matrix.cols != entry.emb_dim
                                || !matrix.is_well_formed())
                        {
                            return Err(BatchError::BadAnswer(p.clone()));
                        }
                        if known[i] {
                            for k in 0..d {
                                m[[row, k]] = f64::from(matrix.data[i * d + k]);
                            }
                            here[row] = true;
                            PartyStatus::Ok
                        } else {
                            PartyStatus::UnknownCustomer
                        }
                    }
                    Some(Outcome::Answered(_)) => PartyStatus::Unavailable,
                };
                statuses[row].push((p.clone(), status));
                row += 1;
            }
        }
        parts.push(m);
        present.push(here);
    }

    // 2. Which customers can be scored.
    let mut results: Vec<Option<Result<Scored, ItemError>>> = vec![None; n];
    let mut rows = Vec::with_capacity(n);
    for (r, st) in statuses.iter().enumerate() {
        let contributing = st.iter().filter(|(_, s)| *s == PartyStatus::Ok).count();
        let any_unavailable = st
            .iter()
            .any(|(_, s)| matches!(s, PartyStatus::Unavailable | PartyStatus::Timeout));
        if contributing == 0 && !any_unavailable {
            results[r] = Some(Err(ItemError::UnknownCustomer(st.clone())));
        } else if contributing < ctx.min_parties.max(1) {
            results[r] = Some(Err(if any_unavailable {
                ItemError::PartiesUnavailable(st.clone())
            } else {
                ItemError::UnknownCustomer(st.clone())
            }));
        } else {
            rows.push(r);
        }
    }

    // 3. The top model on the scorable rows.
    let sub_parts: Vec<Array2<f64>> = parts.iter().map(|m| m.select(ndarray::Axis(0), &rows)).collect();
    let sub_present: Vec<Vec<bool>> = present
        .iter()
        .map(|h| rows.iter().map(|&r| h[r]).collect())
        .collect();
    let x = ctx.top.input(&sub_parts, &sub_present);
    let pds = ctx.top.probabilities(x.view());
    let logits = ctx.top.logits(x.view());
    let grads = ctx.top.logit_gradients(x.view(), &sub_present);
    // Each party's share: how much the logit drops when it is replaced by its absent embedding.
    let mut shares = vec![vec![0.0; rows.len()]; entries.len()];
    for (p, share) in shares.iter_mut().enumerate() {
        let mut without = sub_present.clone();
        without[p].iter_mut().for_each(|v| *v = false);
        let z = ctx.top.logits(ctx.top.input(&sub_parts, &without).view());
        for (k, s) in share.iter_mut().enumerate() {
            *s = logits[k] - z[k];
        }
    }

    // 4. Reason codes from every party that contributed to some row.
    let explainers: Vec<(usize, PartyId)> = entries
        .iter()
        .enumerate()
        .filter(|(p, _)| sub_present[*p].iter().any(|&h| h))
        .map(|(p, e)| (p, e.party_id.clone()))
        .collect();
    let mut codes: Vec<Vec<Vec<String>>> = vec![vec![Vec::new(); rows.len()]; entries.len()];
    if !explainers.is_empty() && !rows.is_empty() {
        let row_ids: Vec<String> = rows.iter().map(|&r| ids[r].clone()).collect();
        let index: BTreeMap<&PartyId, usize> = explainers.iter().map(|(p, id)| (id, *p)).collect();
        let who: Vec<PartyId> = explainers.iter().map(|(_, id)| id.clone()).collect();
        let answers = chunked(fed, &who, &row_ids, ctx.timeout, |party, r| {
            let p = index.get(party).copied().unwrap_or(0);
            let g = grads[p].slice(ndarray::s![r.clone(), ..]);
            Request::Explain {
                ids: row_ids[r].to_vec(),
                grads: Matrix {
                    rows: g.nrows() as u32,
                    cols: g.ncols() as u32,
                    data: g.iter().map(|&v| v as f32).collect(),
                },
            }
        })
        .await;
        for (party, outcomes) in answers {
            let Some(&p) = index.get(&party) else { continue };
            let dict = ctx.dictionaries.get(&party);
            for (c, o) in outcomes.into_iter().enumerate() {
                let Outcome::Answered(Response::Reasons { codes: got }) = o else {
                    continue; // reasons are best effort: a score does not wait on them
                };
                let start = c * CHUNK;
                for (i, list) in got
                    .into_iter()
                    .enumerate()
                    .take(CHUNK.min(rows.len().saturating_sub(start)))
                {
                    let known: Vec<String> = list
                        .into_iter()
                        .filter(|code| dict.is_some_and(|d| d.iter().any(|e| e.code == *code)))
                        .take(MAX_REASONS)
                        .collect();
                    if sub_present[p][start + i] {
                        codes[p][start + i] = known;
                    }
                }
            }
        }
    }

    // 5. Assemble.
    for (k, &r) in rows.iter().enumerate() {
        let pd = pds[k];
        let score = ctx.scale.score(pd);
        let interval = if ctx.interval_samples > 0 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed_for(version, &ids[r]));
            let xr = x.slice(ndarray::s![k..k + 1, ..]);
            let mut samples = ctx
                .top
                .sample_probabilities(xr, ctx.interval_samples, &mut rng)
                .row(0)
                .to_vec();
            samples.sort_by(f64::total_cmp);
            let (lo, hi) = (quantile(&samples, 0.05).min(pd), quantile(&samples, 0.95).max(pd));
            Interval {
                score_low: ctx.scale.score(hi),
                score_high: ctx.scale.score(lo),
                pd_low: lo,
                pd_high: hi,
            }
        } else {
            Interval {
                score_low: score,
                score_high: score,
                pd_low: pd,
                pd_high: pd,
            }
        };
        // Parties in order of how much they raised the risk; their codes taken in turns.
        let mut order: Vec<usize> = (0..entries.len()).filter(|&p| sub_present[p][k]).collect();
        order.sort_by(|&a, &b| shares[b][k].total_cmp(&shares[a][k]).then(a.cmp(&b)));
        let mut reasons = Vec::new();
        let mut depth = 0;
        while reasons.len() < MAX_REASONS && order.iter().any(|&p| codes[p][k].len() > depth) {
            for &p in &order {
                if reasons.len() < MAX_REASONS
                    && let Some(code) = codes[p][k].get(depth)
                {
                    let party = &entries[p].party_id;
                    let text = ctx
                        .dictionaries
                        .get(party)
                        .and_then(|d| d.iter().find(|e| e.code == *code))
                        .map(|e| e.text.clone())
                        .unwrap_or_default();
                    reasons.push(Reason {
                        code: code.clone(),
                        text,
                        party: party.clone(),
                    });
                }
            }
            depth += 1;
        }
        let st = &statuses[r];
        results[r] = Some(Ok(Scored {
            pd,
            score,
            band: ctx.scale.band(score).to_string(),
            interval,
            reasons,
            model_version: version.clone(),
            parties: st.clone(),
            missing: st
                .iter()
                .filter(|(_, s)| *s != PartyStatus::Ok)
                .map(|(p, _)| p.clone())
                .collect(),
        }));
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ItemError::PartiesUnavailable(Vec::new()))))
        .collect())
}

/// Whether an answer says the party lost its model (a restarted party).
pub fn lost_model(o: &Outcome<Response>) -> bool {
    matches!(
        o,
        Outcome::Answered(Response::Error {
            code: ErrorCode::NoModel,
            ..
        })
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_seeds() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 0.5), 3.0);
        assert!((quantile(&v, 0.95) - 4.8).abs() < 1e-12);
        assert!(quantile(&[], 0.5).is_nan());
        assert_eq!(seed_for("m", "c1"), seed_for("m", "c1"));
        assert_ne!(seed_for("m", "c1"), seed_for("m", "c2"));
        assert_ne!(seed_for("m1", "c"), seed_for("m", "1c"));
    }
}
