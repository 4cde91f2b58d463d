//! The scoring routes: one customer, and a batch.

use std::time::Instant;

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tessera_common::data::validate_id;
use tracing::{debug, warn};

use super::error::{ApiError, item_error, read_body, score_error, scoring_slot, unscored_outcome};
use super::types::*;
use super::{AppState, RequestId, new_request_id};
use crate::audit::Decision;
use crate::auth::Caller;

/// Records a scored customer: its outcome, the monitoring window, and a decision in the
/// audit log (if enabled). `latency`: the time of a single score (`None` within a batch).
fn record(state: &AppState, caller: &Caller, r: &ScoreResponse, started: Instant, latency: bool) {
    let outcome = if r.degraded { "degraded" } else { "ok" };
    state.metrics.scores.with_label_values(&[outcome]).inc();
    for p in &r.missing_parties {
        state.metrics.degraded.with_label_values(&[p.as_str()]).inc();
    }
    let latency_ms = started.elapsed().as_secs_f64() * 1e3;
    if let Some(model) = state.serving.active()
        && model.manifest.model_id == r.model_version
    {
        state.monitor.observe(
            &r.model_version,
            &model.manifest.metrics.score_reference,
            r.probability_of_default,
            latency.then_some(latency_ms),
            &r.missing_parties,
        );
    }
    let Some(audit) = &state.audit else { return };
    let (customer, customer_hashed) = audit.customer_ref(&r.customer_id);
    audit.record(Decision {
        request_id: r.request_id.clone(),
        decided_at: time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        customer,
        customer_hashed,
        model_version: r.model_version.clone(),
        probability_of_default: r.probability_of_default,
        score: r.score,
        band: r.band.clone(),
        reason_codes: r.reason_codes.iter().map(|c| c.code.clone()).collect(),
        degraded: r.degraded,
        missing_parties: r.missing_parties.clone(),
        latency_ms,
        caller: caller.name.clone(),
    });
}

/// Scores one customer for `caller` (already admitted and charged): validates the id, takes a
/// scoring slot, scores, and records the answer (metrics, monitoring window, audit log). The
/// one way a single customer is scored, by the API (`endpoint` `score`) and the UI (`ui`).
pub(crate) async fn score_one(
    state: &AppState,
    caller: &Caller,
    customer_id: &str,
    request_id: &str,
    explain: bool,
    endpoint: &'static str,
) -> Result<ScoreResponse, ApiError> {
    let started = Instant::now();
    validate_id(customer_id)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m.to_string(), request_id))?;
    let _slot = scoring_slot(state, request_id)?;
    let result = state.serving.score(customer_id, request_id, explain).await;
    let outcome = match &result {
        Ok(s) if s.missing.is_empty() => "ok",
        Ok(_) => "degraded",
        Err(e) => unscored_outcome(score_error(e).0),
    };
    state
        .metrics
        .score_latency
        .with_label_values(&[endpoint, outcome])
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(s) => {
            let body = response_of(customer_id.to_string(), s, request_id.to_string());
            record(state, caller, &body, started, true);
            debug!(
                degraded = body.degraded,
                reasons = body.reason_codes.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "scored"
            );
            Ok(body)
        }
        Err(e) => {
            let (status, code) = score_error(&e);
            if status.is_server_error() {
                warn!(request_id = %request_id, error = %e, "scoring failed");
            } else {
                debug!(request_id = %request_id, error = %e, "customer not scored");
            }
            state.metrics.scores.with_label_values(&[outcome]).inc();
            let mut err = ApiError::new(status, code, e.to_string(), request_id);
            err.parties = party_out(e.parties());
            Err(err)
        }
    }
}

/// Scores one customer.
#[utoipa::path(
    post,
    path = "/v1/score",
    request_body = ScoreRequest,
    responses(
        (status = 200, description = "Scored (possibly degraded: see `degraded`)", body = ScoreResponse),
        (status = 400, description = "Malformed body or customer id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No party knows the customer (`customer_not_found`)", body = ErrorBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `score` scope (`forbidden`)", body = ErrorBody),
        (status = 413, description = "Body too large (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`; see `Retry-After`)", body = ErrorBody),
        (status = 503, description = "No model (`model_not_loaded`), too few parties (`parties_unavailable`) or too busy (`overloaded`)", body = ErrorBody)
    ),
    tag = "scoring",
    security(("api_key" = []))
)]
pub(super) async fn score(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: ScoreRequest = read_body(body, "{\"customer_id\": \"...\"}", &request_id)?;
    let body = score_one(
        &state,
        &caller,
        &req.customer_id,
        &request_id,
        req.explain,
        "score",
    )
    .await?;
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// Scores a batch of customers, fanned out to the parties as batches.
#[utoipa::path(
    post,
    path = "/v1/score/batch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One item per customer: a score or that customer's error", body = BatchResponse),
        (status = 400, description = "Malformed body (`bad_request`)", body = ErrorBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `score` scope (`forbidden`)", body = ErrorBody),
        (status = 413, description = "Body too large or more than `scoring.max_batch` ids (`payload_too_large`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit, each customer of the batch counting as one call (`rate_limited`; see `Retry-After`)", body = ErrorBody),
        (status = 503, description = "No model (`model_not_loaded`) or too busy (`overloaded`)", body = ErrorBody)
    ),
    tag = "scoring",
    security(("api_key" = []))
)]
pub(super) async fn score_batch(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let req: BatchRequest = read_body(body, "{\"customer_ids\": [\"...\"]}", &request_id)?;
    if req.customer_ids.len() > state.scoring.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "{} ids exceed the batch limit of {}",
                req.customer_ids.len(),
                state.scoring.max_batch
            ),
            &request_id,
        ));
    }
    // Each customer counts against the client's rate (an empty batch as one call).
    let cost = u32::try_from(req.customer_ids.len().max(1)).unwrap_or(u32::MAX);
    if let Err(e) = caller.charge(cost) {
        return Ok(super::guard::refusal(&state, &e, &request_id));
    }
    let _slot = scoring_slot(&state, &request_id)?;
    // Invalid ids are answered per item; valid ones are scored together.
    let valid: Vec<String> = req
        .customer_ids
        .iter()
        .filter(|id| validate_id(id).is_ok())
        .cloned()
        .collect();
    let scored = if valid.is_empty() {
        Vec::new()
    } else {
        state
            .serving
            .score_many(
                &valid,
                std::slice::from_ref(&request_id),
                &vec![req.explain; valid.len()],
            )
            .await
            .map_err(|e| {
                let (status, code) = score_error(&e);
                state
                    .metrics
                    .score_latency
                    .with_label_values(&["batch", unscored_outcome(status)])
                    .observe(started.elapsed().as_secs_f64());
                ApiError::new(status, code, e.to_string(), &request_id)
            })?
    };
    let mut scored = scored.into_iter();
    let mut results = Vec::with_capacity(req.customer_ids.len());
    for id in req.customer_ids {
        if let Err(m) = validate_id(&id) {
            results.push(BatchItem {
                customer_id: id,
                result: None,
                error: Some(ErrorDetail {
                    code: "bad_request".into(),
                    message: m.to_string(),
                    request_id: request_id.clone(),
                }),
            });
            continue;
        }
        let item = match scored.next() {
            Some(Ok(s)) => {
                let r = response_of(id.clone(), s, new_request_id());
                record(&state, &caller, &r, started, false);
                BatchItem {
                    customer_id: id,
                    result: Some(r),
                    error: None,
                }
            }
            Some(Err(e)) => {
                let (status, code) = item_error(&e);
                state
                    .metrics
                    .scores
                    .with_label_values(&[unscored_outcome(status)])
                    .inc();
                BatchItem {
                    customer_id: id,
                    result: None,
                    error: Some(ErrorDetail {
                        code: code.into(),
                        message: e.to_string(),
                        request_id: request_id.clone(),
                    }),
                }
            }
            None => BatchItem {
                customer_id: id,
                result: None,
                error: Some(ErrorDetail {
                    code: "parties_unavailable".into(),
                    message: "not scored".into(),
                    request_id: request_id.clone(),
                }),
            },
        };
        results.push(item);
    }
    state
        .metrics
        .score_latency
        .with_label_values(&["batch", "ok"])
        .observe(started.elapsed().as_secs_f64());
    Ok((StatusCode::OK, axum::Json(BatchResponse { request_id, results })).into_response())
}
