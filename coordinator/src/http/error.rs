//! JSON errors, their stable codes, and the checks that produce them before scoring (body,
//! scoring slot).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::types::{ErrorBody, ErrorDetail, PartyOut};
use crate::serving::{ItemError, ScoreError};

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: String,
    pub(super) parties: Vec<PartyOut>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: request_id.to_string(),
            parties: Vec::new(),
        }
    }
}

impl ApiError {
    /// The stable error code.
    pub(super) fn code(&self) -> &'static str {
        self.code
    }

    /// The explanation.
    pub(super) fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status.
    pub(super) fn status(&self) -> StatusCode {
        self.status
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
        (self.status, axum::Json(body)).into_response()
    }
}

/// Whether a body read failed because the body time-out passed.
fn timed_out(e: &BytesRejection) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = err.source();
    }
    false
}

pub(super) fn read_body<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    expected: &str,
    request_id: &str,
) -> Result<T, ApiError> {
    let body = body.map_err(|e| {
        if timed_out(&e) {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                "request body not received within http.body_timeout_ms",
                request_id,
            )
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
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

pub(super) fn scoring_slot(
    state: &AppState,
    request_id: &str,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.scoring_slots.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many scoring requests in progress",
            request_id,
        )
    })
}

pub(super) fn item_error(e: &ItemError) -> (StatusCode, &'static str) {
    match e {
        ItemError::UnknownCustomer(_) => (StatusCode::NOT_FOUND, "customer_not_found"),
        ItemError::PartiesUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "parties_unavailable"),
    }
}

pub(super) fn score_error(e: &ScoreError) -> (StatusCode, &'static str) {
    match e {
        ScoreError::NoModel => (StatusCode::SERVICE_UNAVAILABLE, "model_not_loaded"),
        ScoreError::Item(i) => item_error(i),
    }
}

/// The outcome label of a customer that was not scored, for the `scores` counter.
pub(super) fn unscored_outcome(status: StatusCode) -> &'static str {
    if status == StatusCode::NOT_FOUND {
        "not_found"
    } else {
        "unavailable"
    }
}
