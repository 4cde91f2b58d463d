//! The JSON bodies of the API (also its OpenAPI schemas).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::serving::{PartyStatus, Scored};

/// Body of `POST /v1/score`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The customer to score (1–128 characters, no control characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]+$",
        example = "25115"
    )]
    pub customer_id: String,
    /// Compute reason codes (default `true`). `false` skips the second round trip to the
    /// banks (the embeddings alone give the score): `reason_codes` is then empty.
    #[serde(default = "yes")]
    pub explain: bool,
}

fn yes() -> bool {
    true
}

/// Body of `POST /v1/score/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The customers to score (at most `scoring.max_batch`, default 1,000; more is 413). An id
    /// that is not 1–128 characters without control characters gets a `bad_request` item.
    #[schema(example = json!(["25115", "2346"]))]
    pub customer_ids: Vec<String>,
    /// Compute reason codes (default `true`). `false` skips the second round trip to the
    /// banks (the embeddings alone give the score): `reason_codes` is then empty.
    #[serde(default = "yes")]
    pub explain: bool,
}

/// One party's part in an answer.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct PartyOut {
    /// The party id.
    pub party: String,
    /// `ok`, `unknown_customer`, `unavailable` or `timeout`.
    pub status: String,
}

/// A reason code behind the score.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ReasonOut {
    /// The code from the party's published dictionary.
    pub code: String,
    /// What it means.
    pub description: String,
    /// The party whose features it concerns.
    pub party: String,
}

/// The 90% interval of the score.
#[derive(Debug, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct IntervalOut {
    /// Coverage (0.9).
    pub level: f64,
    /// How it is computed: `mc_dropout` (Monte Carlo dropout of the top model).
    pub method: String,
    /// Lower score.
    pub score_low: i32,
    /// Upper score.
    pub score_high: i32,
    /// Lower probability of default.
    pub pd_low: f64,
    /// Upper probability of default.
    pub pd_high: f64,
}

/// Answer of `POST /v1/score` (and of each scored item of a batch).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScoreResponse {
    /// The customer scored.
    pub customer_id: String,
    /// Calibrated probability of default over the label's horizon.
    pub probability_of_default: f64,
    /// Score on the 300–850 scale (points to double the odds).
    pub score: i32,
    /// Band of the score (configurable cut-offs).
    pub band: String,
    /// 90% interval of the score.
    pub interval: IntervalOut,
    /// Up to four reason codes, most adverse first.
    pub reason_codes: Vec<ReasonOut>,
    /// Whether some party did not contribute (its absent embedding was used instead).
    pub degraded: bool,
    /// The parties that did not contribute.
    pub missing_parties: Vec<String>,
    /// Each party's status.
    pub parties: Vec<PartyOut>,
    /// Model that produced it.
    pub model_version: String,
    /// Id of this decision (also the `x-request-id` header for a single score); look it up
    /// at `/v1/decisions/{request_id}`.
    pub request_id: String,
}

/// The error part of an error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code.
    pub code: String,
    /// Explanation.
    pub message: String,
    /// Id of the request.
    pub request_id: String,
}

/// An error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
    /// Each party's status, when the error concerns parties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<PartyOut>,
}

/// One customer of a batch: a score or an error.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchItem {
    /// The customer.
    pub customer_id: String,
    /// The score, when the customer could be scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<ScoreResponse>,
    /// Why not, otherwise (`customer_not_found`, `parties_unavailable`, `bad_request`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

/// Answer of `POST /v1/score/batch`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    /// Id of the batch request.
    pub request_id: String,
    /// One item per requested customer, in order.
    pub results: Vec<BatchItem>,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Each party's status, as answered.
pub fn party_out(v: &[(tessera_common::wire::PartyId, PartyStatus)]) -> Vec<PartyOut> {
    v.iter()
        .map(|(p, s)| PartyOut {
            party: p.to_string(),
            status: serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        })
        .collect()
}

/// The answer for one scored customer.
pub fn response_of(customer_id: String, s: Scored, request_id: String) -> ScoreResponse {
    ScoreResponse {
        customer_id,
        probability_of_default: s.pd,
        score: s.score,
        band: s.band,
        interval: IntervalOut {
            level: 0.9,
            method: "mc_dropout".into(),
            score_low: s.interval.score_low,
            score_high: s.interval.score_high,
            pd_low: s.interval.pd_low,
            pd_high: s.interval.pd_high,
        },
        reason_codes: s
            .reasons
            .into_iter()
            .map(|r| ReasonOut {
                code: r.code,
                description: r.text,
                party: r.party.to_string(),
            })
            .collect(),
        degraded: !s.missing.is_empty(),
        missing_parties: s.missing.iter().map(|p| p.to_string()).collect(),
        parties: party_out(&s.parties),
        model_version: s.model_version,
        request_id,
    }
}
