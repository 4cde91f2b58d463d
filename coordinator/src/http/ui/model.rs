//! The model page: the active model, its training report, and the registry of saved models
//! with the lifecycle actions (activate, shadow, roll back) of an admin-scope client.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use tessera_ui::pages;

use super::super::{AppState, RequestId};
use crate::auth::{Caller, Scope};

/// Largest training report served (it is written by the training run: a few hundred KB).
const MAX_REPORT_BYTES: u64 = 8 * 1024 * 1024;

pub(super) fn report_path(state: &AppState, model_id: &str) -> Option<std::path::PathBuf> {
    tessera_common::wire::valid_model_id(model_id).then(|| state.model_dir.join(model_id).join("report.svg"))
}

pub(super) async fn model_page(
    State(state): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Html<String> {
    Html(model_html(&state, &caller, None).await)
}

/// The model page, with the error of a lifecycle action if one failed.
pub(super) async fn model_html(state: &AppState, caller: &Caller, error: Option<String>) -> String {
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
pub(super) async fn registry_view(
    state: &AppState,
    caller: &Caller,
    error: Option<String>,
) -> pages::RegistryView {
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
pub(super) async fn lifecycle_answer(
    state: &AppState,
    caller: &Caller,
    done: Result<super::super::lifecycle::LifecycleBody, super::super::error::ApiError>,
) -> Response {
    match done {
        Ok(_) => Redirect::to("/ui/model").into_response(),
        Err(e) => {
            let text = format!("{}: {}", e.code(), e.message());
            (e.status(), Html(model_html(state, caller, Some(text)).await)).into_response()
        }
    }
}

pub(super) async fn ui_activate(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Response {
    let done = super::super::lifecycle::activate(&state, &caller.name, &model_id, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

pub(super) async fn ui_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
    Path(model_id): Path<String>,
) -> Response {
    let done = super::super::lifecycle::set_shadow(&state, &caller.name, &model_id, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

pub(super) async fn ui_rollback(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Response {
    let done = super::super::lifecycle::rollback(&state, &caller.name, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

pub(super) async fn ui_clear_shadow(
    State(state): State<AppState>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Response {
    let done = super::super::lifecycle::clear_shadow(&state, &caller.name, &request_id).await;
    lifecycle_answer(&state, &caller, done).await
}

pub(super) async fn report_svg(State(state): State<AppState>) -> Response {
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
