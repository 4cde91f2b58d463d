//! The web UI's routes: sign-in with an API key (a session cookie, [`crate::auth::session`]),
//! then the pages rendered by `tessera-ui` from what the coordinator knows. Scoring from the UI
//! goes through the same path as the API ([`super::score::score_one`]: same checks, same audit
//! row, the signed-in client as caller) and the same scopes apply: `score` to score,
//! `decisions` for the decisions; the other pages take any signed-in client.
//!
//! Every page answer carries a Content-Security-Policy without scripts and no framing; forms
//! post only to this origin (`SameSite=Strict` cookie, and the `Origin` header checked).

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use tessera_common::model::stability;
use tessera_ui::charts::BandView;
use tessera_ui::pages::{self, DecisionFilter, DecisionRow};
use tessera_ui::{Nav, assets};

use super::score::score_one;
use super::types::ScoreResponse;
use super::{AppState, RequestId};
use crate::audit::{Decision, DecisionQuery};
use crate::auth::session::{self, COOKIE};
use crate::auth::{AuthError, Caller, Scope, keys};

/// Rows the decisions page shows at most.
const DECISIONS_SHOWN: usize = 100;

/// Largest training report served (it is written by the training run: a few hundred KB).
const MAX_REPORT_BYTES: u64 = 8 * 1024 * 1024;

/// No script, no plugin, no framing; styles and images from here only.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The UI's routes (merged into the API's router).
pub(super) fn routes(state: AppState) -> Router<AppState> {
    let signed_in = |scope: Option<Scope>| {
        middleware::from_fn_with_state(
            Need {
                state: state.clone(),
                scope,
            },
            require_session,
        )
    };
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/score") }))
        .route("/ui", get(|| async { Redirect::to("/ui/score") }))
        .route(assets::CSS_PATH, get(css))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", axum::routing::post(logout))
        .route(
            "/ui/score",
            get(score_page)
                .post(score_submit)
                .route_layer(signed_in(Some(Scope::Score))),
        )
        .route(
            "/ui/decisions",
            get(decisions_page).route_layer(signed_in(Some(Scope::Decisions))),
        )
        .route(
            "/ui/decisions/{request_id}",
            get(decision_page).route_layer(signed_in(Some(Scope::Decisions))),
        )
        .route(
            "/ui/federation",
            get(federation_page).route_layer(signed_in(None)),
        )
        .route("/ui/model", get(model_page).route_layer(signed_in(None)))
        .route(
            "/ui/models/{model_id}/activate",
            axum::routing::post(ui_activate).route_layer(signed_in(Some(Scope::Admin))),
        )
        .route(
            "/ui/models/{model_id}/shadow",
            axum::routing::post(ui_shadow).route_layer(signed_in(Some(Scope::Admin))),
        )
        .route(
            "/ui/models/rollback",
            axum::routing::post(ui_rollback).route_layer(signed_in(Some(Scope::Admin))),
        )
        .route(
            "/ui/models/shadow/clear",
            axum::routing::post(ui_clear_shadow).route_layer(signed_in(Some(Scope::Admin))),
        )
        .route(
            "/ui/model/report.svg",
            get(report_svg).route_layer(signed_in(None)),
        )
        .route(
            "/ui/monitoring",
            get(monitoring_page).route_layer(signed_in(None)),
        )
        .layer(middleware::from_fn(page_headers))
}

/// Security headers of every UI answer; a cross-origin form post is refused.
async fn page_headers(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !same_origin(req.headers()) {
        return (StatusCode::FORBIDDEN, "cross-origin form posts are refused").into_response();
    }
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A post without `Origin` (older clients, curl) passes: the session cookie is
/// `SameSite=Strict`, so a cross-site post carries no session anyway.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| !host.is_empty() && rest == host)
}

/// Whether the browser reached us on a loopback name, where a cookie without `Secure` is
/// acceptable (the demo); anywhere else the UI is expected behind HTTPS.
fn loopback(headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn session_cookie(token: &str, max_age: u64, headers: &HeaderMap) -> HeaderValue {
    let secure = if loopback(headers) { "" } else { "; Secure" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("tessera_session=; Path=/; Max-Age=0"))
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(session::token_in)
        .map(String::from)
}

/// What a page needs: the state and a scope (`None`: any signed-in client).
#[derive(Clone)]
struct Need {
    state: AppState,
    scope: Option<Scope>,
}

/// The signed-in client, or the way to the sign-in page; a client without the page's scope
/// gets a 403 page naming it.
async fn require_session(State(need): State<Need>, mut req: Request, next: Next) -> Response {
    let key = match need.state.auth.mode() {
        crate::auth::AuthMode::None => Some([0u8; 32]),
        crate::auth::AuthMode::Keys => {
            session_token(req.headers()).and_then(|t| need.state.sessions.key_of(&t))
        }
    };
    let Some(key) = key else {
        return Redirect::to("/ui/login").into_response();
    };
    match need.state.auth.by_hash(&key, need.scope) {
        Ok(caller) => {
            tracing::Span::current().record("client", caller.name.as_str());
            req.extensions_mut().insert::<Arc<Caller>>(caller);
            next.run(req).await
        }
        Err(AuthError::Forbidden { client, scope }) => {
            need.state
                .metrics
                .auth_refusals
                .with_label_values(&["forbidden"])
                .inc();
            let nav = match scope {
                "decisions" => Nav::Decisions,
                "admin" => Nav::Model,
                _ => Nav::Score,
            };
            let text = format!("The API key of {client} lacks the `{scope}` scope this page needs.");
            (
                StatusCode::FORBIDDEN,
                Html(pages::message("Not allowed", nav, Some(&client), &text).into_string()),
            )
                .into_response()
        }
        // The key was revoked since sign-in.
        Err(_) => Redirect::to("/ui/login").into_response(),
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        assets::CSS,
    )
        .into_response()
}

async fn login_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = session_token(&headers).and_then(|t| state.sessions.key_of(&t));
    if signed_in.is_some() || state.auth.mode() == crate::auth::AuthMode::None {
        return Redirect::to("/ui/score").into_response();
    }
    Html(pages::login(None).into_string()).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let refused = |state: &AppState, reason: &'static str, text: &str| {
        state.metrics.auth_refusals.with_label_values(&[reason]).inc();
        (
            StatusCode::UNAUTHORIZED,
            Html(pages::login(Some(text)).into_string()),
        )
            .into_response()
    };
    let Ok(Form(form)) = form else {
        return refused(&state, "missing", "Enter an API key.");
    };
    let key = form.key.trim();
    if key.is_empty() || key.len() > 256 {
        return refused(&state, "missing", "Enter an API key.");
    }
    let hash = keys::hash(key);
    match state.auth.by_hash(&hash, None) {
        Ok(caller) => {
            let token = state.sessions.open(hash);
            tracing::info!(client = %caller.name, "UI sign-in");
            let mut response = Redirect::to("/ui/score").into_response();
            response.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&token, session::MAX_AGE.as_secs(), &headers),
            );
            response
        }
        Err(_) => refused(
            &state,
            "unknown",
            "This API key is not known, was revoked, or has expired.",
        ),
    }
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = session_token(&headers) {
        state.sessions.close(&t);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie("", 0, &headers));
    response
}

fn bands(state: &AppState) -> Vec<BandView> {
    state
        .serving
        .scale()
        .bands
        .iter()
        .map(|b| BandView {
            name: b.name.clone(),
            min_score: b.min_score,
        })
        .collect()
}

fn score_range(state: &AppState) -> (i32, i32) {
    let s = state.serving.scale();
    (s.min_score.round() as i32, s.max_score.round() as i32)
}

async fn score_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Html<String> {
    let bands = bands(&state);
    let form = pages::ScoreForm {
        user: &caller.name,
        customer_id: "",
        range: score_range(&state),
        bands: &bands,
    };
    Html(pages::score(&form, None).into_string())
}

#[derive(Deserialize)]
struct ScoreForm {
    customer_id: String,
}

fn score_view(r: ScoreResponse, recorded: bool) -> pages::ScoreView {
    pages::ScoreView {
        customer_id: r.customer_id,
        score: r.score,
        band: r.band,
        pd: r.probability_of_default,
        pd_interval: (r.interval.pd_low, r.interval.pd_high),
        score_interval: (r.interval.score_low, r.interval.score_high),
        reasons: r
            .reason_codes
            .into_iter()
            .map(|c| pages::ReasonView {
                code: c.code,
                description: c.description,
                party: c.party,
            })
            .collect(),
        parties: r
            .parties
            .into_iter()
            .map(|p| pages::PartyState {
                party: p.party,
                status: p.status,
            })
            .collect(),
        missing: r.missing_parties,
        model_version: r.model_version,
        request_id: r.request_id,
        recorded,
    }
}

async fn score_submit(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    form: Result<Form<ScoreForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let customer = form.map(|Form(f)| f.customer_id).unwrap_or_default();
    let customer = customer.trim().to_string();
    let answer = match caller.charge(1) {
        Err(e) => Err((
            StatusCode::TOO_MANY_REQUESTS,
            pages::ErrorView {
                code: e.label().to_string(),
                message: e.to_string(),
                request_id: request_id.clone(),
            },
        )),
        Ok(()) => score_one(&state, &caller, &customer, &request_id, true, "ui")
            .await
            .map(|r| score_view(r, state.audit.is_some()))
            .map_err(|e| {
                (
                    e.status(),
                    pages::ErrorView {
                        code: e.code().to_string(),
                        message: e.message().to_string(),
                        request_id: request_id.clone(),
                    },
                )
            }),
    };
    let bands = bands(&state);
    let form = pages::ScoreForm {
        user: &caller.name,
        customer_id: &customer,
        range: score_range(&state),
        bands: &bands,
    };
    match &answer {
        Ok(view) => Html(pages::score(&form, Some(Ok(view))).into_string()).into_response(),
        Err((status, e)) => (*status, Html(pages::score(&form, Some(Err(e))).into_string())).into_response(),
    }
}

/// The decisions filter as it comes in the query string.
#[derive(Debug, Default, Deserialize)]
struct FilterQuery {
    #[serde(default)]
    customer: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

fn row(d: Decision) -> DecisionRow {
    DecisionRow {
        request_id: d.request_id,
        decided_at: d.decided_at,
        customer: d.customer,
        customer_hashed: d.customer_hashed,
        score: d.score,
        band: d.band,
        pd: d.probability_of_default,
        reason_codes: d.reason_codes,
        missing: d.missing_parties,
        model_version: d.model_version,
        latency_ms: d.latency_ms,
        caller: d.caller,
    }
}

/// A `YYYY-MM-DD` date, checked.
fn date(s: &str) -> Result<Option<time::Date>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map(Some)
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// The filter as typed, the query it means, and a complaint about what could not be used.
fn decision_query(q: FilterQuery) -> (DecisionFilter, DecisionQuery, Option<String>) {
    let mut problems = Vec::new();
    let customer = q.customer.trim().to_string();
    let request_id = q.request_id.trim().to_string();
    let mut query = DecisionQuery::default();
    if !customer.is_empty() {
        match tessera_common::data::validate_id(&customer) {
            Ok(()) => query.customer = Some(customer.clone()),
            Err(e) => problems.push(format!("customer id: {e}")),
        }
    }
    if !request_id.is_empty() {
        match uuid::Uuid::parse_str(&request_id) {
            Ok(u) => query.request_id = Some(u.to_string()),
            Err(_) => problems.push("request id: not a request id (UUID)".to_string()),
        }
    }
    match date(q.from.trim()) {
        Ok(d) => query.from = d.map(|d| d.to_string()),
        Err(e) => problems.push(format!("from: {e}")),
    }
    match date(q.to.trim()) {
        // Decided before the day after.
        Ok(d) => query.before = d.and_then(|d| d.next_day()).map(|d| d.to_string()),
        Err(e) => problems.push(format!("to: {e}")),
    }
    let filter = DecisionFilter {
        customer,
        request_id,
        from: q.from.trim().to_string(),
        to: q.to.trim().to_string(),
    };
    let note = (!problems.is_empty()).then(|| format!("Not filtered by: {}", problems.join("; ")));
    (filter, query, note)
}

async fn decisions_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    query: Result<Query<FilterQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = query.map(|Query(q)| q).unwrap_or_default();
    let (filter, query, mut note) = decision_query(q);
    let rows = match &state.audit {
        None => {
            note =
                Some("The audit log is disabled (audit.enabled = false): no decisions are recorded.".into());
            Vec::new()
        }
        Some(audit) => match audit.list(&query, DECISIONS_SHOWN).await {
            Ok(v) => v.into_iter().map(row).collect(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the audit log failed");
                note = Some("The audit log cannot be read now.".into());
                Vec::new()
            }
        },
    };
    Html(pages::decisions(&caller.name, &filter, &rows, DECISIONS_SHOWN, note.as_deref()).into_string())
        .into_response()
}

async fn decision_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(id): Path<String>,
) -> Response {
    let not_found = |text: &str| {
        (
            StatusCode::NOT_FOUND,
            Html(pages::message("Decision", Nav::Decisions, Some(&caller.name), text).into_string()),
        )
            .into_response()
    };
    if uuid::Uuid::parse_str(&id).is_err() {
        return not_found("Not a request id.");
    }
    let Some(audit) = &state.audit else {
        return not_found("The audit log is disabled: no decisions are recorded.");
    };
    match audit.get(&id).await {
        Ok(Some(d)) => Html(pages::decision(&caller.name, &row(d)).into_string()).into_response(),
        Ok(None) => not_found(
            "No decision with this request id (decisions are written within moments of the answer).",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "reading the audit log failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html(
                    pages::message(
                        "Decision",
                        Nav::Decisions,
                        Some(&caller.name),
                        "The audit log cannot be read now.",
                    )
                    .into_string(),
                ),
            )
                .into_response()
        }
    }
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

async fn federation_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Html<String> {
    let now = tessera_common::transport::unix_now();
    let now_ms = now.saturating_mul(1000);
    let days = |not_after: i64| (not_after - now) as f64 / 86_400.0;
    let registry = state.serving.registry();
    let active = state.serving.active().map(|m| m.manifest.model_id.clone());
    let banks = state
        .serving
        .parties()
        .iter()
        .map(|p| match registry.view(p) {
            Some(m) => pages::BankView {
                party: p.to_string(),
                connected: true,
                unresponsive: m.unresponsive,
                rtt_ms: m.rtt.map(|d| d.as_secs_f64() * 1e3),
                last_answer_secs: m.last_answer_ms.map(|t| (now_ms - t).max(0) / 1000),
                model: match &active {
                    Some(a) if m.models.contains(a) => Some(a.clone()),
                    _ => m.models.first().cloned(),
                },
                cert_days_left: m.cert.map(|c| days(c.not_after)),
            },
            None => pages::BankView {
                party: p.to_string(),
                connected: false,
                unresponsive: false,
                rtt_ms: None,
                last_answer_secs: None,
                model: None,
                cert_days_left: None,
            },
        })
        .collect();
    let own = state
        .own_cert
        .read()
        .ok()
        .and_then(|c| c.clone())
        .map(|c| pages::CertView {
            identity: c.uris.first().cloned().unwrap_or_else(|| c.subject.clone()),
            serial: c.serial.clone(),
            not_after: rfc3339(c.not_after),
            days_left: days(c.not_after),
        });
    let r = state.serving.readiness();
    let view = pages::FederationView {
        banks,
        own,
        model: r.model_version.clone(),
        ready: r.ready,
        reasons: r.reasons,
        min_parties: state.serving.min_parties(),
        warn_days: f64::from(registry.settings().cert_warn_days),
    };
    Html(pages::federation(&caller.name, &view).into_string())
}

fn report_path(state: &AppState, model_id: &str) -> Option<std::path::PathBuf> {
    tessera_common::wire::valid_model_id(model_id).then(|| state.model_dir.join(model_id).join("report.svg"))
}

async fn model_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Html<String> {
    Html(model_html(&state, &caller, None).await)
}

/// The model page, with the error of a lifecycle action if one failed.
async fn model_html(state: &AppState, caller: &Caller, error: Option<String>) -> String {
    let view = state.serving.active().map(|m| {
        let man = &m.manifest;
        let t = &man.metrics;
        pages::ModelView {
            model_id: man.model_id.clone(),
            created_at: man.created_at.clone(),
            label_holder: man.label_holder.to_string(),
            parties: man
                .parties
                .iter()
                .map(|p| pages::PartyFigures {
                    party: p.party_id.to_string(),
                    features: p.n_features,
                    embedding: p.emb_dim,
                    shared: t.shared_with_label_holder.get(p.party_id.as_str()).copied(),
                    auc_without: t.holdout_auc_party_absent.get(p.party_id.as_str()).copied(),
                })
                .collect(),
            auc: t.holdout_auc,
            ks: t.holdout_ks,
            ece: t.holdout_ece,
            validation_auc: t.validation_auc,
            auc_complete: t.holdout_auc_complete,
            auc_partial: t.holdout_auc_partial,
            sizes: [t.customers, t.train_rows, t.validation_rows, t.holdout_rows],
            epochs: (t.epochs_run, t.best_epoch),
            seconds: (t.training_seconds, t.alignment_seconds),
            top_layers: man.top_layers.clone(),
            report: report_path(state, &man.model_id).is_some_and(|p| p.is_file()),
        }
    });
    let registry = registry_view(state, caller, error).await;
    pages::model(&caller.name, view.as_ref(), &registry).into_string()
}

/// Saved models with their status, the shadow comparison and the newest activations.
async fn registry_view(state: &AppState, caller: &Caller, error: Option<String>) -> pages::RegistryView {
    let id = |m: Option<Arc<crate::serving::ActiveModel>>| m.map(|m| m.manifest.model_id.clone());
    let (active, previous, shadow) = (
        id(state.serving.active()),
        id(state.serving.previous()),
        id(state.serving.shadow()),
    );
    let dir = state.model_dir.clone();
    let (saved, history) = tokio::task::spawn_blocking(move || {
        (
            crate::models::list(&dir).unwrap_or_default(),
            crate::models::history(&dir, 10).unwrap_or_default(),
        )
    })
    .await
    .unwrap_or_default();
    let status = |m: &str| {
        if active.as_deref() == Some(m) {
            "active"
        } else if shadow.as_deref() == Some(m) {
            "shadow"
        } else if previous.as_deref() == Some(m) {
            "previous"
        } else {
            ""
        }
    };
    pages::RegistryView {
        models: saved
            .iter()
            .map(|m| pages::RegistryRow {
                model_id: m.model_id.clone(),
                created_at: m.created_at.clone(),
                figures: (m.metrics.holdout_auc, m.metrics.holdout_ks, m.metrics.holdout_ece),
                status: status(&m.model_id),
            })
            .collect(),
        shadow: state.serving.shadow_report().map(|r| pages::ShadowView {
            model_id: r.model_id,
            compared: r.compared,
            same_band_rate: r.same_band_rate,
            mean_shift: r.mean_score_shift,
            psi: r.psi,
        }),
        history: history
            .into_iter()
            .map(|h| pages::HistoryRow {
                at: h.at,
                client: h.client,
                action: serde_json::to_value(h.action)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
                model_id: h.model_id.unwrap_or_default(),
                previous: h.previous.unwrap_or_default(),
            })
            .collect(),
        can_admin: caller.may(Scope::Admin),
        error,
    }
}

/// After a lifecycle action from the model page: back to it, or the page with the error.
async fn lifecycle_answer(
    state: &AppState,
    caller: &Caller,
    done: Result<super::models::LifecycleBody, super::error::ApiError>,
) -> Response {
    match done {
        Ok(_) => Redirect::to("/ui/model").into_response(),
        Err(e) => {
            let text = format!("{}: {}", e.code(), e.message());
            (e.status(), Html(model_html(state, caller, Some(text)).await)).into_response()
        }
    }
}

async fn ui_activate(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Response {
    let done = super::models::do_activate(&state, &caller.name, &model_id, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

async fn ui_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Response {
    let done = super::models::do_set_shadow(&state, &caller.name, &model_id, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

async fn ui_rollback(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Response {
    let done = super::models::do_rollback(&state, &caller.name, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

async fn ui_clear_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Response {
    let done = super::models::do_clear_shadow(&state, &caller.name, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

async fn report_svg(State(state): State<AppState>) -> Response {
    let missing = || (StatusCode::NOT_FOUND, "no training report for the active model").into_response();
    let Some(path) = state
        .serving
        .active()
        .and_then(|m| report_path(&state, &m.manifest.model_id))
    else {
        return missing();
    };
    let read = tokio::task::spawn_blocking(move || -> std::io::Result<Option<Vec<u8>>> {
        use std::io::Read;
        let file = std::fs::File::open(&path)?;
        let mut bytes = Vec::new();
        file.take(MAX_REPORT_BYTES + 1).read_to_end(&mut bytes)?;
        Ok((bytes.len() as u64 <= MAX_REPORT_BYTES).then_some(bytes))
    })
    .await;
    match read {
        Ok(Ok(Some(bytes))) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "private, max-age=300"),
            ],
            bytes,
        )
            .into_response(),
        _ => missing(),
    }
}

/// Score ranges of the stability bins (bins run from the lowest probability of default, i.e.
/// the highest scores, up).
fn bin_labels(state: &AppState, cuts: &[f64]) -> Vec<String> {
    let scale = state.serving.scale();
    let (lo, hi) = score_range(state);
    (0..=cuts.len())
        .map(|i| {
            let top = if i == 0 { hi } else { scale.score(cuts[i - 1]) };
            let bottom = if i == cuts.len() { lo } else { scale.score(cuts[i]) };
            format!("{bottom}–{top}")
        })
        .collect()
}

async fn monitoring_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Html<String> {
    let s = state.monitor.snapshot();
    let model = if s.model.is_empty() {
        state
            .serving
            .active()
            .map(|m| m.manifest.model_id.clone())
            .unwrap_or_else(|| "none".into())
    } else {
        s.model.clone()
    };
    let view = pages::MonitoringView {
        model,
        answers: (s.answers, crate::monitor::WINDOW),
        min_for_psi: crate::monitor::MIN_FOR_PSI,
        psi: s.psi.map(|p| (p, stability::reading(p))),
        bins: bin_labels(&state, &s.cuts),
        expected: s.expected,
        actual: s.actual,
        latency_ms: s.latency_ms,
        degraded: s.degraded,
        degraded_by_party: s.degraded_by_party.into_iter().collect(),
    };
    Html(pages::monitoring(&caller.name, &view).into_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[("origin", "http://127.0.0.1:8080")])));
    }

    #[test]
    fn cookie_is_secure_off_loopback() {
        let c = |host: &str| session_cookie("tss_x", 60, &headers(&[("host", host)]));
        assert!(!c("127.0.0.1:8080").to_str().unwrap().contains("Secure"));
        assert!(!c("localhost").to_str().unwrap().contains("Secure"));
        assert!(!c("[::1]:8080").to_str().unwrap().contains("Secure"));
        let remote = c("score.bank.example");
        let v = remote.to_str().unwrap();
        assert!(
            v.contains("; Secure") && v.contains("HttpOnly") && v.contains("SameSite=Strict"),
            "{v}"
        );
    }

    #[test]
    fn decisions_filter_is_checked() {
        let (f, q, note) = decision_query(FilterQuery {
            customer: " 42 ".into(),
            request_id: "nope".into(),
            from: "2026-12-01".into(),
            to: "2026-12-31".into(),
        });
        assert_eq!(f.customer, "42");
        assert_eq!(q.customer.as_deref(), Some("42"));
        assert_eq!(q.request_id, None);
        assert_eq!(q.from.as_deref(), Some("2026-12-01"));
        assert_eq!(q.before.as_deref(), Some("2027-01-01"));
        assert!(note.unwrap().contains("request id"));
        let (_, _, note) = decision_query(FilterQuery {
            from: "yesterday".into(),
            ..Default::default()
        });
        assert!(note.unwrap().contains("not a date"));
    }
}
