//! The pages of a credit officer and an operator: score, decisions, federation, monitoring.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use tessera_common::model::stability;
use tessera_ui::Nav;
use tessera_ui::charts::BandView;
use tessera_ui::pages::{self, DecisionFilter, DecisionRow};

use super::super::score::score_one;
use super::super::types::ScoreResponse;
use super::super::{AppState, RequestId};
use crate::audit::{Decision, DecisionQuery};
use crate::auth::Caller;

/// Rows the decisions page shows at most.
const DECISIONS_SHOWN: usize = 100;

pub(super) fn bands(state: &AppState) -> Vec<BandView> {
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

pub(super) fn score_range(state: &AppState) -> (i32, i32) {
    let s = state.serving.scale();
    (s.min_score.round() as i32, s.max_score.round() as i32)
}

pub(super) async fn score_page(
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
pub(super) struct ScoreForm {
    customer_id: String,
}

pub(super) fn score_view(r: ScoreResponse, recorded: bool) -> pages::ScoreView {
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

pub(super) async fn score_submit(
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
pub(super) struct FilterQuery {
    #[serde(default)]
    customer: String,
    #[serde(default)]
    request_id: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

pub(super) fn row(d: Decision) -> DecisionRow {
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
pub(super) fn date(s: &str) -> Result<Option<time::Date>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &format)
        .map(Some)
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))
}

/// The filter as typed, the query it means, and a complaint about what could not be used.
pub(super) fn decision_query(q: FilterQuery) -> (DecisionFilter, DecisionQuery, Option<String>) {
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

pub(super) async fn decisions_page(
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

pub(super) async fn decision_page(
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

pub(super) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

pub(super) async fn federation_page(
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

/// Score ranges of the stability bins (bins run from the lowest probability of default, i.e.
/// the highest scores, up).
pub(super) fn bin_labels(state: &AppState, cuts: &[f64]) -> Vec<String> {
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

pub(super) async fn monitoring_page(
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
