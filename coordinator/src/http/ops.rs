//! The routes besides scoring: recorded decisions, the model, health, readiness, metrics,
//! the OpenAPI description and its page, and the JSON fallbacks.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use tracing::warn;
use utoipa::OpenApi;

use super::error::ApiError;
use super::types::{ErrorBody, Health};
use super::{ApiDoc, AppState, RequestId};
use crate::audit::{Audit, Decision};

/// A recorded decision, by the `request_id` of its answer.
#[utoipa::path(
    get,
    path = "/v1/decisions/{request_id}",
    params(("request_id" = uuid::Uuid, Path, description = "The `request_id` of a scoring answer")),
    responses(
        (status = 200, description = "The decision as recorded", body = Decision),
        (status = 400, description = "Not a request id (`bad_request`)", body = ErrorBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `decisions` scope (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such decision (or not written yet) (`decision_not_found`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 503, description = "Audit log disabled (`audit_disabled`) or unavailable (`audit_unavailable`)", body = ErrorBody)
    ),
    tag = "audit",
    security(("api_key" = []))
)]
pub(super) async fn decision(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "not a request id (UUID)",
            &request_id,
        ));
    }
    let Some(audit) = &state.audit else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit_disabled",
            "the audit log is disabled",
            &request_id,
        ));
    };
    match audit.get(&id).await {
        Ok(Some(d)) => Ok(axum::Json(d).into_response()),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "decision_not_found",
            "no decision with this request id (decisions are written within moments of the answer)",
            &request_id,
        )),
        Err(e) => {
            warn!(error = %e, "reading the audit log failed");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit log cannot be read now",
                &request_id,
            ))
        }
    }
}

/// The active model's manifest: parties, layers, training figures; with a shadow model set,
/// also `shadow`: how it compares with the active one (agreement, score shift, PSI).
#[utoipa::path(
    get,
    path = "/v1/model",
    responses(
        (status = 200, description = "The manifest of the active model", content_type = "application/json", body = serde_json::Value),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 503, description = "No model (`model_not_loaded`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn model(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
) -> Result<Response, ApiError> {
    match state.serving.active() {
        Some(m) => {
            let mut body = serde_json::to_value(&m.manifest).unwrap_or_default();
            if let (Some(obj), Some(shadow)) = (body.as_object_mut(), state.serving.shadow_report()) {
                obj.insert("shadow".into(), serde_json::to_value(shadow).unwrap_or_default());
            }
            Ok(axum::Json(body).into_response())
        }
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_not_loaded",
            "no model is loaded",
            &request_id,
        )),
    }
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Health)), tag = "operations")]
pub(super) async fn healthz() -> impl IntoResponse {
    axum::Json(Health { status: "ok".into() })
}

/// Whether scoring works now: a model is loaded and at least `scoring.min_parties` parties are
/// connected with it. 503 with `reasons` otherwise. A party that is down makes answers
/// degraded, not the coordinator unready: the body says `degraded` and names it in
/// `missing_parties`. An audit log that does not keep up (writes failing, or decisions dropped
/// in the last minute) is named in `reasons` but leaves the coordinator ready: scoring goes on
/// (the queue absorbs an outage), and every replica shares the database, so taking them all
/// out of their load balancer would turn a database outage into a scoring outage.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", content_type = "application/json", body = serde_json::Value),
        (status = 503, description = "Not ready; `reasons` says why", content_type = "application/json", body = serde_json::Value)
    ),
    tag = "operations"
)]
pub(super) async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut r = state.serving.readiness();
    if let Some(p) = state.audit.as_ref().and_then(Audit::problem) {
        r.reasons.push(p);
    }
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r))
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)),
    tag = "operations"
)]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = tessera_common::transport::unix_now();
    let own = state.own_cert.read().ok().and_then(|g| g.clone());
    let peers = state.serving.registry().peer_certificates();
    state.metrics.refresh_cert_expiry(now, own.as_ref(), &peers);
    state.metrics.refresh_api_key_expiry(now, &state.auth.expiries());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub(super) async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

pub(super) async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
}

pub(super) async fn not_found(Extension(RequestId(request_id)): Extension<RequestId>) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route", &request_id)
}

pub(super) async fn method_not_allowed(Extension(RequestId(request_id)): Extension<RequestId>) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
        &request_id,
    )
}
