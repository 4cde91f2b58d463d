//! The authentication layer of the protected routes: the caller, its scope, its rate.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::{AppState, RequestId};
use crate::auth::{AuthError, Caller, Scope};

/// What a route requires: a scope (`None`: any known client) and what a call costs against
/// the client's rate (0: the handler charges, e.g. per customer of a batch).
#[derive(Clone)]
pub(super) struct Guard {
    pub(super) state: AppState,
    pub(super) scope: Option<Scope>,
    pub(super) cost: u32,
}

/// The JSON error of a refusal, with `WWW-Authenticate` (401) or `Retry-After` (429).
pub(super) fn refusal(state: &AppState, e: &AuthError, request_id: &str) -> Response {
    state.metrics.auth_refusals.with_label_values(&[e.label()]).inc();
    let (status, code) = match e {
        AuthError::Missing | AuthError::Unknown | AuthError::Expired { .. } => {
            (StatusCode::UNAUTHORIZED, "unauthenticated")
        }
        AuthError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
        AuthError::RateLimited { .. } | AuthError::OverBurst { .. } => {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
        }
    };
    let mut response = ApiError::new(status, code, e.to_string(), request_id).into_response();
    let headers = response.headers_mut();
    match e {
        AuthError::Missing | AuthError::Unknown | AuthError::Expired { .. } => {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tessera\""),
            );
        }
        AuthError::RateLimited { retry_after_secs, .. } => {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                headers.insert(header::RETRY_AFTER, v);
            }
        }
        _ => {}
    }
    response
}

/// Admits the call if its bearer key names a client with the route's scope and within its
/// rate; puts the [`Caller`] in the request's extensions and its name in the request's span.
pub(super) async fn authorize(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let admitted = guard
        .state
        .auth
        .check(header, guard.scope)
        .and_then(|caller| caller.charge(guard.cost).map(|()| caller));
    match admitted {
        Ok(caller) => {
            tracing::Span::current().record("client", caller.name.as_str());
            req.extensions_mut().insert::<Arc<Caller>>(caller);
            next.run(req).await
        }
        Err(e) => {
            tracing::debug!(reason = e.label(), "API call refused");
            refusal(&guard.state, &e, &request_id)
        }
    }
}
