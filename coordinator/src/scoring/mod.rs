//! Scoring a batch of customers over any [`Federation`]: embeddings from the parties that
//! hold the active model, the top model's calibrated probability of default, a Monte Carlo
//! dropout interval, the score and its band, and reason codes computed by the parties from
//! the logit gradient of their own embedding. The QUIC path and the in-process floor of the
//! serving benchmark both call [`score_batch`].
//!
//! [`score_batch`] only drives the two fan-outs; each step between them is a function of its
//! inputs with no IO, tested without sockets:
//! 1. `Embed` fan-out → [`embed::gather`] (per party: embeddings, who knows whom, status);
//! 2. [`embed::scorable`] (which customers have enough contributing parties);
//! 3. [`top::TopPass::run`] (probabilities, logit gradients, each party's share of the logit);
//! 4. `Explain` fan-out, for the customers whose reasons are asked for (a request with
//!    `explain: false` costs one round trip) → [`reasons::collect`] (codes checked against
//!    each dictionary);
//! 5. [`top::interval`] and [`reasons::merge`] → [`Scored`].

pub mod embed;
pub mod reasons;
pub mod top;

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_common::federation::Federation;
use tessera_common::model::{ScoreScale, TopModel};
use tessera_common::protocol::fanout::Outcome;
use tessera_common::wire::{ErrorCode, Matrix, PartyId, ReasonCode, Request, Response};

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
    /// What the requests serve (HTTP request ids), for the parties' logs.
    pub trace: &'a [String],
}

/// Fans `request(chunk)` out to `parties` for each chunk of `ids` and returns, per party, the
/// outcome of every chunk in order.
async fn chunked<F: Federation>(
    fed: &F,
    parties: &[PartyId],
    ids: &[String],
    timeout: Duration,
    trace: &[String],
    request: impl Fn(&PartyId, std::ops::Range<usize>) -> Request + Send + Sync,
) -> BTreeMap<PartyId, Vec<Outcome<Response>>> {
    let mut out: BTreeMap<PartyId, Vec<Outcome<Response>>> = BTreeMap::new();
    let mut start = 0;
    while start < ids.len() {
        let end = (start + CHUNK).min(ids.len());
        for (p, o) in fed
            .fanout(parties, |p| request(p, start..end), timeout, trace)
            .await
        {
            out.entry(p).or_default().push(o);
        }
        start = end;
    }
    out
}

/// Scores `ids` with the active model over `ready` (the parties that loaded it); reason codes
/// only for the customers `explain` marks (an id past its end: yes). When none is marked, the
/// parties are asked once (embeddings), not twice.
///
/// # Returns
/// One result per id, in order: a score, or why that customer could not be scored. A party
/// that answers malformed embeddings is unavailable for those customers (degraded).
pub async fn score_batch<F: Federation>(
    fed: &F,
    ready: &[PartyId],
    ctx: &ScoringContext<'_>,
    ids: &[String],
    explain: &[bool],
) -> Vec<Result<Scored, ItemError>> {
    let entries = &ctx.manifest.parties;
    // 1. Embeddings.
    // Every request names the model: a party answers with this model's parts or refuses.
    let model_id = &ctx.manifest.model_id;
    let answers = chunked(fed, ready, ids, ctx.timeout, ctx.trace, |_, r| Request::Embed {
        model_id: model_id.clone(),
        ids: ids[r].to_vec(),
    })
    .await;
    if let Some(f) = ctx.on_lost_model {
        for (p, v) in &answers {
            if v.iter().any(lost_model) {
                f(p);
            }
        }
    }
    let gathered = embed::gather(entries, &answers, ids.len());
    // 2. Which customers can be scored.
    let (mut results, rows) = embed::scorable(&gathered.statuses, ctx.min_parties);
    // 3. The top model on the scorable rows.
    let pass = top::TopPass::run(ctx.top, &gathered, &rows);
    // 4. Reason codes from every party that contributed to some row to explain.
    let explainers = pass.explainers(entries);
    let mut codes = vec![vec![Vec::new(); rows.len()]; entries.len()];
    // Scorable rows (positions in `rows`) whose reasons are asked for.
    let wanted: Vec<usize> = (0..rows.len())
        .filter(|&k| explain.get(rows[k]).copied().unwrap_or(true))
        .collect();
    if !explainers.is_empty() && !wanted.is_empty() {
        let row_ids: Vec<String> = wanted.iter().map(|&k| ids[rows[k]].clone()).collect();
        let index: BTreeMap<&PartyId, usize> = explainers.iter().map(|(p, id)| (id, *p)).collect();
        let who: Vec<PartyId> = explainers.iter().map(|(_, id)| id.clone()).collect();
        let answers = chunked(fed, &who, &row_ids, ctx.timeout, ctx.trace, |party, r| {
            let p = index.get(party).copied().unwrap_or(0);
            let g = pass.grads[p].select(ndarray::Axis(0), &wanted[r.clone()]);
            Request::Explain {
                model_id: model_id.clone(),
                ids: row_ids[r].to_vec(),
                grads: Matrix::from_array(&g),
            }
        })
        .await;
        let present: Vec<Vec<bool>> = pass
            .present
            .iter()
            .map(|v| wanted.iter().map(|&k| v[k]).collect())
            .collect();
        let got = reasons::collect(answers, &index, ctx.dictionaries, &present, wanted.len());
        for (p, per_row) in got.into_iter().enumerate() {
            for (j, c) in per_row.into_iter().enumerate() {
                codes[p][wanted[j]] = c;
            }
        }
    }
    // 5. Assemble.
    let version = &ctx.manifest.model_id;
    for (k, &r) in rows.iter().enumerate() {
        let pd = pass.pds[k];
        let score = ctx.scale.score(pd);
        let interval = top::interval(ctx, &pass, k, &ids[r]);
        let reasons = reasons::merge(entries, &pass, &codes, k, ctx.dictionaries);
        let st = &gathered.statuses[r];
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
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(ItemError::PartiesUnavailable(Vec::new()))))
        .collect()
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
