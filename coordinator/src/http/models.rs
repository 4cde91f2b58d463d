//! The model lifecycle routes (scope `admin`): list the saved models, activate one, roll back
//! to the previous, set or clear a shadow model, read a model card and the activation log.
//! The actions themselves (atomic switch, one at a time, logged with the client who asked)
//! are in [`super::lifecycle`], shared with the web UI.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tracing::warn;
use utoipa::{IntoParams, ToSchema};

use super::error::ApiError;
use super::lifecycle::{self, LifecycleBody, load};
use super::types::ErrorBody;
use super::{AppState, RequestId};
use crate::auth::Caller;
use crate::models::{self, Activation, Card, ModelSummary};
use crate::serving::ActiveModel;
use crate::serving::shadow::Report;

/// `GET /v1/models`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelsBody {
    /// The active model.
    pub active: Option<String>,
    /// The model a rollback returns to.
    pub previous: Option<String>,
    /// The shadow model and how it compares with the active one.
    pub shadow: Option<Report>,
    /// The saved models, newest first.
    pub models: Vec<ModelSummary>,
}

/// The saved models, the active, previous and shadow models, and the shadow's comparison.
#[utoipa::path(
    get,
    path = "/v1/models",
    responses(
        (status = 200, description = "The saved models", body = ModelsBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "The model directory cannot be read (`internal`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
) -> Result<Response, ApiError> {
    let dir = state.model_dir.clone();
    let saved = tokio::task::spawn_blocking(move || models::list(&dir))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "listing failed",
                &request_id,
            )
        })?
        .map_err(|e| {
            warn!(error = %e, "listing the saved models failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the model directory cannot be read",
                &request_id,
            )
        })?;
    let id = |m: Option<Arc<ActiveModel>>| m.map(|m| m.manifest.model_id.clone());
    Ok(axum::Json(ModelsBody {
        active: id(state.serving.active()),
        previous: id(state.serving.previous()),
        shadow: state.serving.shadow_report(),
        models: saved.iter().map(ModelSummary::from).collect(),
    })
    .into_response())
}

/// Makes a saved model the active one, without restart: every connected bank loads it first;
/// only if at least `scoring.min_parties` did does it become active (atomically: each answer
/// comes from one model). `CURRENT` is updated, so a restart (and every replica sharing the
/// model directory) serves it, and the action is logged with the client.
#[utoipa::path(
    post,
    path = "/v1/models/{model_id}/activate",
    params(("model_id" = String, Path, description = "A saved model's id")),
    responses(
        (status = 200, description = "Active now", body = LifecycleBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such saved model (`model_not_found`)", body = ErrorBody),
        (status = 409, description = "Trained for other parties or unreadable (`model_incompatible`), or too few banks could load it (`activation_refused`); the active model stays", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "Done, but not logged (`activation_log_failed`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn activate(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Result<Response, ApiError> {
    let b = lifecycle::activate(&state, &caller.name, &model_id, &request_id).await?;
    Ok(axum::Json(b).into_response())
}

/// Makes the model active before the current one active again (as an activation: every bank
/// loads it first, atomically, logged).
#[utoipa::path(
    post,
    path = "/v1/models/rollback",
    responses(
        (status = 200, description = "Rolled back", body = LifecycleBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No model was active before this one in this process (`no_previous_model`)", body = ErrorBody),
        (status = 409, description = "Too few banks could load it (`activation_refused`); the active model stays", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "Done, but not logged (`activation_log_failed`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn rollback(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Response, ApiError> {
    let b = lifecycle::rollback(&state, &caller.name, &request_id).await?;
    Ok(axum::Json(b).into_response())
}

/// Sets a saved model as the shadow (challenger): it scores the customers the active model
/// answers, after each answer, without changing any; the comparison is in `/v1/models`,
/// `/v1/model` and the `tessera_shadow_*` metrics.
#[utoipa::path(
    put,
    path = "/v1/models/{model_id}/shadow",
    params(("model_id" = String, Path, description = "A saved model's id")),
    responses(
        (status = 200, description = "Shadowing now", body = LifecycleBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such saved model (`model_not_found`)", body = ErrorBody),
        (status = 409, description = "Trained for other parties or unreadable (`model_incompatible`), or it is the active model (`shadow_is_active`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "Done, but not logged (`activation_log_failed`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn set_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Result<Response, ApiError> {
    let b = lifecycle::set_shadow(&state, &caller.name, &model_id, &request_id).await?;
    Ok(axum::Json(b).into_response())
}

/// Stops shadow scoring.
#[utoipa::path(
    delete,
    path = "/v1/models/shadow",
    responses(
        (status = 200, description = "No shadow now", body = LifecycleBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "Done, but not logged (`activation_log_failed`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn clear_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Response, ApiError> {
    let b = lifecycle::clear_shadow(&state, &caller.name, &request_id).await?;
    Ok(axum::Json(b).into_response())
}

/// Query of a model card.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CardQuery {
    /// `json` (default) or `markdown`.
    #[serde(default)]
    format: Option<CardFormat>,
}

/// How a model card is written.
#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum CardFormat {
    /// JSON.
    Json,
    /// Markdown.
    Markdown,
}

/// A saved model's card: sizes per bank, overlap, feature counts, figures, calibration,
/// training time, hyperparameters, code version; as JSON or Markdown.
#[utoipa::path(
    get,
    path = "/v1/models/{model_id}/card",
    params(("model_id" = String, Path, description = "A saved model's id"), CardQuery),
    responses(
        (status = 200, description = "The card (JSON, or `text/markdown` with `format=markdown`)", body = Card),
        (status = 400, description = "Unknown format (`bad_request`)", body = ErrorBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No such saved model (`model_not_found`)", body = ErrorBody),
        (status = 409, description = "Trained for other parties or unreadable (`model_incompatible`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn card(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(model_id): Path<String>,
    query: Result<Query<CardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let format = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string(), &request_id))?
        .0
        .format;
    let markdown = matches!(format, Some(CardFormat::Markdown));
    let model = load(&state, &model_id, &request_id).await?;
    let c = models::card(&model.manifest);
    if markdown {
        Ok((
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            models::markdown(&c),
        )
            .into_response())
    } else {
        Ok(axum::Json(c).into_response())
    }
}

/// Query of the activation log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Entries at most: 1 to 1,000 (default 100).
    #[serde(default)]
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Who activated, rolled back or shadowed what and when, newest first.
#[utoipa::path(
    get,
    path = "/v1/models/activations",
    params(HistoryQuery),
    responses(
        (status = 200, description = "The activation log, newest first", body = Vec<Activation>),
        (status = 400, description = "Malformed limit (`bad_request`)", body = ErrorBody),
        (status = 401, description = "No or unknown API key (`unauthenticated`)", body = ErrorBody),
        (status = 403, description = "The key lacks the `admin` scope (`forbidden`)", body = ErrorBody),
        (status = 429, description = "Over the client's rate limit (`rate_limited`)", body = ErrorBody),
        (status = 500, description = "The log cannot be read (`internal`)", body = ErrorBody)
    ),
    tag = "model",
    security(("api_key" = []))
)]
pub(super) async fn activations(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let limit = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string(), &request_id))?
        .0
        .limit;
    let limit = match limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=models::MAX_HISTORY).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("limit is a number from 1 to {}", models::MAX_HISTORY),
                &request_id,
            ));
        }
    };
    let dir = state.model_dir.clone();
    let entries = tokio::task::spawn_blocking(move || models::history(&dir, limit))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "reading failed",
                &request_id,
            )
        })?
        .map_err(|e| {
            warn!(error = %e, "reading the activation log failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the activation log cannot be read",
                &request_id,
            )
        })?;
    Ok(axum::Json(entries).into_response())
}
