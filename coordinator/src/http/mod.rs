//! The HTTP API: scoring (one customer or a batch), recorded decisions, the model, health,
//! readiness, metrics, and the OpenAPI 3.1 description (`/openapi.json`, `/docs`).
//!
//! Every error is JSON: `{"error": {"code", "message", "request_id"}}` with a stable `code`.
//! Every answer carries an `x-request-id` header, set in one place ([`request_context`]),
//! which also opens the span that covers the whole request, scoring included.
//!
//! Layout: [`types`] (JSON bodies), [`error`] (JSON errors and their codes), `score` (the
//! scoring routes), `ops` (decisions, model, health, metrics, OpenAPI), `models` (the model
//! lifecycle: list, activate, roll back, shadow, cards, activation log), `ui` (the web UI's
//! sign-in and pages).

pub mod error;
mod guard;
pub mod lifecycle;
pub mod models;
mod ops;
mod score;
pub mod server;
pub mod types;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tracing::{Instrument, info_span};
use utoipa::OpenApi;

use crate::audit::{Audit, Decision};
use crate::config::{HttpSettings, ScoringSettings};
use crate::metrics::Metrics;
use crate::serving::Serving;
use ops::*;
use score::*;
use types::*;

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
    /// Who may call which route.
    pub auth: crate::auth::Authenticator,
    /// The window of recent answers (monitoring page, score stability gauge).
    pub monitor: Arc<crate::monitor::Monitor>,
    /// Signed-in UI sessions.
    pub sessions: Arc<crate::auth::session::Sessions>,
    /// Where models are saved (the model page shows the training report from there).
    pub model_dir: std::path::PathBuf,
    /// Serialises model lifecycle actions (activate, rollback, shadow).
    pub lifecycle: Arc<tokio::sync::Mutex<()>>,
}

/// The id of the request being answered, set by [`request_context`] for every request.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

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
    paths(
        score,
        score_batch,
        decision,
        model,
        models::list,
        models::activate,
        models::rollback,
        models::set_shadow,
        models::clear_shadow,
        models::card,
        models::activations,
        healthz,
        readyz,
        metrics
    ),
    modifiers(&BearerScheme),
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
        Health,
        models::ModelsBody,
        lifecycle::LifecycleBody,
        crate::models::ModelSummary,
        crate::models::Activation,
        crate::models::Action,
        crate::models::Card,
        crate::models::CardParty,
        crate::serving::shadow::Report
    ))
)]
pub struct ApiDoc;

/// Declares the bearer API key scheme (`api_key`) the protected routes name.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key from `tessera-coordinator api-key add`, as `Authorization: Bearer tsk_...`. Scopes: `score` (scoring routes), `decisions` (recorded decisions); `/v1/model` takes any key.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Builds the router. Scoring, decisions and the model need an API key with the right scope
/// ([`crate::auth`]); health, readiness, metrics and the API description do not.
/// `metrics_here`: whether `/metrics` is served on this router (not when it has its own
/// listener, see [`metrics_router`]).
pub fn router(state: AppState, http: &HttpSettings, metrics_here: bool) -> Router {
    use crate::auth::Scope;
    let guard = |scope, cost| {
        middleware::from_fn_with_state(
            guard::Guard {
                state: state.clone(),
                scope,
                cost,
            },
            guard::authorize,
        )
    };
    let mut router = Router::new()
        .route("/v1/score", post(score).route_layer(guard(Some(Scope::Score), 1)))
        // A batch is charged per customer by its handler.
        .route(
            "/v1/score/batch",
            post(score_batch).route_layer(guard(Some(Scope::Score), 0)),
        )
        .route(
            "/v1/decisions/{request_id}",
            get(decision).route_layer(guard(Some(Scope::Decisions), 1)),
        )
        .route("/v1/model", get(model).route_layer(guard(None, 1)))
        .route(
            "/v1/models",
            get(models::list).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/activations",
            get(models::activations).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/rollback",
            post(models::rollback).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/shadow",
            axum::routing::delete(models::clear_shadow).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/{model_id}/activate",
            post(models::activate).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/{model_id}/shadow",
            axum::routing::put(models::set_shadow).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route(
            "/v1/models/{model_id}/card",
            get(models::card).route_layer(guard(Some(Scope::Admin), 1)),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    if metrics_here {
        router = router.route("/metrics", get(metrics));
    }
    router
        .merge(ui::routes(state.clone()))
        .route("/openapi.json", get(openapi))
        .route("/docs", get(docs))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(http.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn(request_context))
        .with_state(state)
}

/// `/metrics` alone, for its own listener (`listen_metrics`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .with_state(state)
}

/// Gives each request its id (in the request's extensions and the `x-request-id` header of
/// the answer) and a span carrying it around everything the request does on this task.
async fn request_context(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path(),
        client = tracing::field::Empty
    );
    let mut response = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
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
