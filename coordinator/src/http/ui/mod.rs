//! The web UI's routes: sign-in with an API key (a session cookie, [`crate::auth::session`]),
//! then the pages rendered by `tessera-ui` from what the coordinator knows. Scoring from the UI
//! goes through the same path as the API ([`super::score::score_one`]: same checks, same audit
//! row, the signed-in client as caller) and the same scopes apply: `score` to score,
//! `decisions` for the decisions; the other pages take any signed-in client.
//!
//! Every page answer carries a Content-Security-Policy without scripts and no framing; forms
//! post only to this origin (`SameSite=Strict` cookie, and the `Origin` header checked).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use tessera_ui::pages;
use tessera_ui::{Nav, assets};

use super::AppState;
use crate::auth::session::{self, COOKIE};
use crate::auth::{AuthError, Caller, Scope, keys};

mod model;
mod views;

use model::*;
use views::*;

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
}
