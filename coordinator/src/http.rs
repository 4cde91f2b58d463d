//! The HTTP API: scoring (one customer or a batch), recorded decisions, the model, health,
//! readiness, metrics, and the OpenAPI 3.1 description (`/openapi.json`, `/docs`).
//!
//! Every error is JSON: `{"error": {"code", "message", "request_id"}}` with a stable `code`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tessera_common::data::validate_id;
use tokio::sync::Semaphore;
use tracing::{debug, info_span, warn};
use utoipa::{OpenApi, ToSchema};

use crate::audit::{Audit, Decision};
use crate::config::{HttpSettings, ScoringSettings};
use crate::metrics::Metrics;
use crate::serving::{ItemError, PartyStatus, ScoreError, Scored, Serving};

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
    /// The audit log, if enabled.
    pub audit: Option<Audit>,
    /// Scoring limits (batch size).
    pub scoring: ScoringSettings,
}

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
}

/// Body of `POST /v1/score/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The customers to score (at most `scoring.max_batch`, default 1,000; more is 413). An id
    /// that is not 1–128 characters without control characters gets a `bad_request` item.
    #[schema(example = json!(["25115", "2346"]))]
    pub customer_ids: Vec<String>,
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id: self.request_id.clone(),
            },
            parties: self.parties,
        };
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

/// The OpenAPI description of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera coordinator API",
        description = "Real-time vertical federated credit scoring: calibrated probability of default, 300–850 score, band, 90% interval and reason codes. Every error is `{\"error\": {\"code\", \"message\", \"request_id\"}}`.",
        license(name = "Apache-2.0")
    ),
    paths(score, score_batch, decision, model, healthz, readyz, metrics),
    components(schemas(
        ScoreRequest,
        BatchRequest,
        ScoreResponse,
        BatchResponse,
        BatchItem,
        ErrorBody,
        ErrorDetail,
        PartyOut,
        ReasonOut,
        IntervalOut,
        Decision,
        Health
    ))
)]
pub struct ApiDoc;

/// Builds the router.
pub fn router(state: AppState, http: &HttpSettings) -> Router {
    Router::new()
        .route("/v1/score", post(score))
        .route("/v1/score/batch", post(score_batch))
        .route("/v1/decisions/{request_id}", get(decision))
        .route("/v1/model", get(model))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
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

fn read_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
    request_id: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "request body too large",
                request_id,
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("cannot read body: {e}"),
                request_id,
            )
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected JSON {expected}: {e}"),
            request_id,
        )
    })
}

fn scoring_slot(state: &AppState, request_id: &str) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.scoring_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many scoring requests in progress",
            request_id,
        )
    })
}

fn response_of(customer_id: String, s: Scored, request_id: String) -> ScoreResponse {
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

/// Records a decision in the audit log (if enabled) and counts its outcome.
fn record(state: &AppState, r: &ScoreResponse, started: Instant) {
    let outcome = if r.degraded { "degraded" } else { "ok" };
    state.metrics.scores.with_label_values(&[outcome]).inc();
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
        latency_ms: started.elapsed().as_secs_f64() * 1e3,
    });
}

fn item_error(e: &ItemError) -> (StatusCode, &'static str) {
    match e {
        ItemError::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "customer_not_found"),
        ItemError::PartiesUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "parties_unavailable"),
    }
}

fn score_error(e: &ScoreError) -> (StatusCode, &'static str) {
    match e {
        ScoreError::NoModel => (StatusCode::SERVICE_UNAVAILABLE, "model_not_loaded"),
        ScoreError::Item(i) => item_error(i),
        ScoreError::BadAnswer(_) => (StatusCode::BAD_GATEWAY, "bad_party_answer"),
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
        (status = 413, description = "Body too large (`payload_too_large`)", body = ErrorBody),
        (status = 502, description = "A party answered with something malformed (`bad_party_answer`)", body = ErrorBody),
        (status = 503, description = "No model (`model_not_loaded`), too few parties (`parties_unavailable`) or too busy (`overloaded`)", body = ErrorBody)
    ),
    tag = "scoring"
)]
async fn score(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request_id = new_request_id();
    let span = info_span!("score", request_id = %request_id);
    let _enter = span.enter();
    let req: ScoreRequest = read_body(body, "{\"customer_id\": \"...\"}", &request_id)?;
    validate_id(&req.customer_id)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m, &request_id))?;
    let _slot = scoring_slot(&state, &request_id)?;
    drop(_enter);
    match state.serving.score(&req.customer_id).await {
        Ok(s) => {
            let body = response_of(req.customer_id, s, request_id.clone());
            record(&state, &body, started);
            let mut r = (StatusCode::OK, axum::Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                r.headers_mut().insert("x-request-id", v);
            }
            Ok(r)
        }
        Err(e) => {
            let (status, code) = score_error(&e);
            if status.is_server_error() {
                warn!(request_id = %request_id, error = %e, "scoring failed");
            } else {
                debug!(request_id = %request_id, error = %e, "customer not scored");
            }
            let outcome = if status == StatusCode::NOT_FOUND {
                "not_found"
            } else {
                "unavailable"
            };
            state.metrics.scores.with_label_values(&[outcome]).inc();
            let mut err = ApiError::new(status, code, e.to_string(), &request_id);
            err.parties = party_out(e.parties());
            Err(err)
        }
    }
}

/// Scores a batch of customers, fanned out to the parties as batches.
#[utoipa::path(
    post,
    path = "/v1/score/batch",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One item per customer: a score or that customer's error", body = BatchResponse),
        (status = 400, description = "Malformed body (`bad_request`)", body = ErrorBody),
        (status = 413, description = "Body too large or more than `scoring.max_batch` ids (`payload_too_large`)", body = ErrorBody),
        (status = 502, description = "A party answered with something malformed (`bad_party_answer`)", body = ErrorBody),
        (status = 503, description = "No model (`model_not_loaded`) or too busy (`overloaded`)", body = ErrorBody)
    ),
    tag = "scoring"
)]
async fn score_batch(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let request_id = new_request_id();
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
        state.serving.score_many(&valid).await.map_err(|e| {
            let (status, code) = score_error(&e);
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
                    message: m,
                    request_id: request_id.clone(),
                }),
            });
            continue;
        }
        let item = match scored.next() {
            Some(Ok(s)) => {
                let r = response_of(id.clone(), s, new_request_id());
                record(&state, &r, started);
                BatchItem {
                    customer_id: id,
                    result: Some(r),
                    error: None,
                }
            }
            Some(Err(e)) => {
                let (status, code) = item_error(&e);
                let outcome = if status == StatusCode::NOT_FOUND {
                    "not_found"
                } else {
                    "unavailable"
                };
                state.metrics.scores.with_label_values(&[outcome]).inc();
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
    let mut r = (
        StatusCode::OK,
        axum::Json(BatchResponse {
            request_id: request_id.clone(),
            results,
        }),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        r.headers_mut().insert("x-request-id", v);
    }
    Ok(r)
}

/// A recorded decision, by the `request_id` of its answer.
#[utoipa::path(
    get,
    path = "/v1/decisions/{request_id}",
    params(("request_id" = uuid::Uuid, Path, description = "The `request_id` of a scoring answer")),
    responses(
        (status = 200, description = "The decision as recorded", body = Decision),
        (status = 400, description = "Not a request id (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such decision (or not written yet) (`decision_not_found`)", body = ErrorBody),
        (status = 503, description = "Audit log disabled (`audit_disabled`) or unavailable (`audit_unavailable`)", body = ErrorBody)
    ),
    tag = "audit"
)]
async fn decision(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let request_id = new_request_id();
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

/// The active model's manifest: parties, layers, training figures.
#[utoipa::path(
    get,
    path = "/v1/model",
    responses(
        (status = 200, description = "The manifest of the active model", content_type = "application/json", body = serde_json::Value),
        (status = 503, description = "No model (`model_not_loaded`)", body = ErrorBody)
    ),
    tag = "model"
)]
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

/// The process is alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "Alive", body = Health)), tag = "operations")]
async fn healthz() -> impl IntoResponse {
    axum::Json(Health { status: "ok".into() })
}

/// Whether scoring works now: a model is loaded, every party is connected with it, the audit
/// log keeps up. 503 with `reasons` otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    responses(
        (status = 200, description = "Ready", content_type = "application/json", body = serde_json::Value),
        (status = 503, description = "Not ready; `reasons` says why", content_type = "application/json", body = serde_json::Value)
    ),
    tag = "operations"
)]
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut r = state.serving.readiness();
    if let Some(p) = state.audit.as_ref().and_then(Audit::problem) {
        r.reasons.push(p);
        r.ready = false;
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

async fn openapi() -> impl IntoResponse {
    axum::Json(ApiDoc::openapi())
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("docs.html"))
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
