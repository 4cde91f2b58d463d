//! The model lifecycle actions, shared by the API routes ([`super::models`]) and the web UI's
//! buttons: activate a saved model, roll back, set or clear the shadow. Each takes the
//! coordinator's lifecycle lock (one action at a time), switches atomically for every answer
//! ([`crate::serving::Serving::switch`]) and logs who asked ([`crate::models`]).

use std::sync::Arc;

use axum::http::StatusCode;
use serde::Serialize;
use tracing::{info, warn};
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use crate::artifact::{self, ArtifactError};
use crate::models::{self, Action, Activation};
use crate::serving::{ActiveModel, SwitchError};

/// Answer of an activation, a rollback or a shadow change.
#[derive(Debug, Serialize, ToSchema)]
pub struct LifecycleBody {
    /// What was done.
    pub action: Action,
    /// The active model now.
    pub active: Option<String>,
    /// The model a rollback returns to now.
    pub previous: Option<String>,
    /// The shadow model now.
    pub shadow: Option<String>,
}

pub(super) fn body(state: &AppState, action: Action) -> LifecycleBody {
    let id = |m: Option<Arc<ActiveModel>>| m.map(|m| m.manifest.model_id.clone());
    LifecycleBody {
        action,
        active: id(state.serving.active()),
        previous: id(state.serving.previous()),
        shadow: id(state.serving.shadow()),
    }
}

pub(super) fn artifact_error(e: ArtifactError, request_id: &str) -> ApiError {
    match e {
        ArtifactError::NoModel(_) | ArtifactError::InvalidId(_) => ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            "no saved model with this id",
            request_id,
        ),
        e @ ArtifactError::PartyMismatch { .. } => ApiError::new(
            StatusCode::CONFLICT,
            "model_incompatible",
            e.to_string(),
            request_id,
        ),
        e => {
            warn!(error = %e, "reading a saved model failed");
            ApiError::new(
                StatusCode::CONFLICT,
                "model_incompatible",
                "the saved model cannot be read",
                request_id,
            )
        }
    }
}

/// Reads saved model `id` (off the async threads: it is a file read and a decode).
pub(super) async fn load(state: &AppState, id: &str, request_id: &str) -> Result<ActiveModel, ApiError> {
    let (dir, id, parties) = (
        state.model_dir.clone(),
        id.to_string(),
        state.serving.parties().to_vec(),
    );
    let loaded = tokio::task::spawn_blocking(move || artifact::load(&dir, &id, &parties)).await;
    match loaded {
        Ok(Ok((manifest, top))) => Ok(ActiveModel { manifest, top }),
        Ok(Err(e)) => Err(artifact_error(e, request_id)),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "loading the model failed",
            request_id,
        )),
    }
}

/// Logs an action; a log that cannot be written is an error the caller sees (the action is
/// done, its record is not).
pub(super) fn log_action(state: &AppState, entry: &Activation, request_id: &str) -> Result<(), ApiError> {
    info!(client = %entry.client, action = ?entry.action, model = ?entry.model_id, previous = ?entry.previous, "model lifecycle");
    models::record(&state.model_dir, entry).map_err(|e| {
        warn!(error = %e, "the activation log cannot be written");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "activation_log_failed",
            "done, but the activation log could not be written",
            request_id,
        )
    })
}

pub(super) fn switch_error(e: SwitchError, request_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "activation_refused",
        e.to_string(),
        request_id,
    )
}

/// Activates saved model `model_id` for `client` (the API's and the UI's way).
pub(crate) async fn activate(
    state: &AppState,
    client: &str,
    model_id: &str,
    request_id: &str,
) -> Result<LifecycleBody, ApiError> {
    let _one_at_a_time = state.lifecycle.lock().await;
    let model = load(state, model_id, request_id).await?;
    let before = state.serving.active().map(|m| m.manifest.model_id.clone());
    if before.as_deref() != Some(model_id) {
        state
            .serving
            .switch(model)
            .await
            .map_err(|e| switch_error(e, request_id))?;
    }
    artifact::set_current(&state.model_dir, model_id).map_err(|e| {
        warn!(error = %e, "CURRENT cannot be written");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "activation_log_failed",
            "active now, but CURRENT could not be written: a restart would serve the model before",
            request_id,
        )
    })?;
    log_action(
        state,
        &Activation::now(client, Action::Activate, Some(model_id.to_string()), before),
        request_id,
    )?;
    Ok(body(state, Action::Activate))
}

/// Rolls back for `client` (the API's and the UI's way).
pub(crate) async fn rollback(
    state: &AppState,
    client: &str,
    request_id: &str,
) -> Result<LifecycleBody, ApiError> {
    let _one_at_a_time = state.lifecycle.lock().await;
    let Some(previous) = state.serving.previous() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_previous_model",
            "no model was active before this one (since this coordinator started)",
            request_id,
        ));
    };
    let before = state.serving.active().map(|m| m.manifest.model_id.clone());
    let id = previous.manifest.model_id.clone();
    state
        .serving
        .switch_arc(previous)
        .await
        .map_err(|e| switch_error(e, request_id))?;
    if let Err(e) = artifact::set_current(&state.model_dir, &id) {
        warn!(error = %e, "CURRENT cannot be written");
    }
    log_action(
        state,
        &Activation::now(client, Action::Rollback, Some(id), before),
        request_id,
    )?;
    Ok(body(state, Action::Rollback))
}

/// Sets saved model `model_id` as the shadow for `client` (the API's and the UI's way).
pub(crate) async fn set_shadow(
    state: &AppState,
    client: &str,
    model_id: &str,
    request_id: &str,
) -> Result<LifecycleBody, ApiError> {
    let _one_at_a_time = state.lifecycle.lock().await;
    let model = load(state, model_id, request_id).await?;
    if state
        .serving
        .active()
        .is_some_and(|a| a.manifest.model_id == model_id)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "shadow_is_active",
            "this model is the active one",
            request_id,
        ));
    }
    let before = state.serving.shadow().map(|m| m.manifest.model_id.clone());
    state.serving.set_shadow(Some(model)).await;
    log_action(
        state,
        &Activation::now(client, Action::Shadow, Some(model_id.to_string()), before),
        request_id,
    )?;
    Ok(body(state, Action::Shadow))
}

/// Clears the shadow for `client` (the API's and the UI's way).
pub(crate) async fn clear_shadow(
    state: &AppState,
    client: &str,
    request_id: &str,
) -> Result<LifecycleBody, ApiError> {
    let _one_at_a_time = state.lifecycle.lock().await;
    let before = state.serving.shadow().map(|m| m.manifest.model_id.clone());
    if before.is_some() {
        state.serving.set_shadow(None).await;
        log_action(
            state,
            &Activation::now(client, Action::ShadowCleared, None, before),
            request_id,
        )?;
    }
    Ok(body(state, Action::ShadowCleared))
}
