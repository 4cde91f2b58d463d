//! The HTTP API: scoring, health, readiness and metrics.
//!
//! Every error is JSON: `{"error": {"code", "message", "request_id"}}` with a stable `code`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tessera_common::data::validate_id;
use tokio::sync::Semaphore;
use tracing::{debug, info_span, warn};

use crate::config::HttpSettings;
use crate::metrics::Metrics;
use crate::serving::{PartyStatus, ScoreError, Serving};

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct AppState {
    /// The active model and parties.
    pub serving: Arc<Serving>,
    /// Metrics.
    pub metrics: Metrics,
    /// Caps concurrent scoring requests.
    pub scoring_slots: Arc<Semaphore>,
    /// Our own certificate (kept current by the TLS reloader), for the expiry metric.
    pub own_cert: Arc<std::sync::RwLock<Option<tessera_common::transport::CertInfo>>>,
}

/// Body of `POST /v1/score`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// The customer to score.
    pub customer_id: String,
}

/// One party's part in an answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct PartyOut {
    /// The party id.
    pub party: String,
    /// `ok`, `unknown_customer`, `unavailable` or `timeout`.
    pub status: String,
}

/// Answer of `POST /v1/score`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ScoreResponse {
    /// The customer scored.
    pub customer_id: String,
    /// Probability of default over the label's horizon.
    pub probability_of_default: f64,
    /// Score on the 300–850 scale (points to double the odds; see the README).
    pub score: i32,
    /// Model that produced it.
    pub model_version: String,
    /// Id of this request (also in the `x-request-id` header).
    pub request_id: String,
    /// Whether some party did not contribute (its absent embedding was used instead).
    pub degraded: bool,
    /// The parties that did not contribute.
    pub missing_parties: Vec<String>,
    /// Each party's status.
    pub parties: Vec<PartyOut>,
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: String,
    parties: Vec<PartyOut>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>, request_id: &str) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: request_id.to_string(),
            parties: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "error": {"code": self.code, "message": self.message, "request_id": self.request_id}
        });
        if !self.parties.is_empty() {
            body["parties"] = serde_json::to_value(&self.parties).unwrap_or_default();
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            r.headers_mut().insert("x-request-id", v);
        }
        r
    }
}

fn party_out(v: &[(tessera_common::wire::PartyId, PartyStatus)]) -> Vec<PartyOut> {
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

fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Builds the router.
pub fn router(state: AppState, http: &HttpSettings) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/model", get(model))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string());
    let route = route.unwrap_or_else(|| "unmatched".to_string());
    let started = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .http_requests
        .with_label_values(&[&route, &status])
        .inc();
    state
        .metrics
        .http_latency
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn score(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request_id = new_request_id();
    let span = info_span!("score", request_id = %request_id);
    let _enter = span.enter();
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
                &request_id,
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read body: {e}"),
                &request_id,
            )
        }
    })?;
    let req: ScoreRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected JSON {{\"customer_id\": \"...\"}}: {e}"),
            &request_id,
        )
    })?;
    validate_id(&req.customer_id)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m, &request_id))?;
    let Ok(_slot) = state.scoring_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many scoring requests in progress",
            &request_id,
        ));
    };
    drop(_enter);
    let result = state.serving.score(&req.customer_id).await;
    match result {
        Ok(s) => {
            let body = ScoreResponse {
                customer_id: req.customer_id,
                probability_of_default: s.pd,
                score: s.score,
                model_version: s.model_version,
                request_id: request_id.clone(),
                degraded: !s.missing.is_empty(),
                missing_parties: s.missing.iter().map(|p| p.to_string()).collect(),
                parties: party_out(&s.parties),
            };
            let mut r = (StatusCode::OK, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("x-request-id", v);
            }
            Ok(r)
        }
        Err(e) => {
            let (status, code) = match &e {
                ScoreError::NoModel => (StatusCode::SERVICE_UNAVAILABLE, "model_not_loaded"),
                ScoreError::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "customer_not_found"),
                ScoreError::PartiesUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "parties_unavailable"),
                ScoreError::BadAnswer(_) => (StatusCode::BAD_GATEWAY, "bad_party_answer"),
            };
            if status.is_server_error() {
                warn!(request_id = %request_id, error = %e, "scoring failed");
            } else {
                debug!(request_id = %request_id, error = %e, "customer not scored");
            }
            let mut err = ApiError::new(status, code, e.to_string(), &request_id);
            err.parties = party_out(e.parties());
            Err(err)
        }
    }
}

async fn model(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.serving.active() {
        Some(m) => Ok(axum::Json(&m.manifest).into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_not_loaded",
            "no model is loaded",
            &new_request_id(),
        )),
    }
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let r = state.serving.readiness();
    let status = if r.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(r))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let now = tessera_common::transport::unix_now();
    let own = state.own_cert.read().ok().and_then(|g| g.clone());
    let peers = state.serving.registry().peer_certificates();
    state.metrics.refresh_cert_expiry(now, own.as_ref(), &peers);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route",
        &new_request_id(),
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this route",
        &new_request_id(),
    )
}
