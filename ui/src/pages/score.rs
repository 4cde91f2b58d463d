//! The score page: a customer id in; the score gauge, probability of default with its 90%
//! interval, reason codes with the bank behind each, which banks contributed, the model, and
//! a link to the recorded decision.

use maud::{Markup, PreEscaped, html};

use super::pct;
use crate::charts::{BandView, gauge};
use crate::layout::{Nav, Page};

/// A reason code as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct ReasonView {
    /// The code.
    pub code: String,
    /// What it means, in plain words.
    pub description: String,
    /// The bank whose features it concerns.
    pub party: String,
}

/// One bank's part in an answer.
#[derive(Clone, Debug, PartialEq)]
pub struct PartyState {
    /// The bank.
    pub party: String,
    /// `ok`, `unknown_customer`, `unavailable` or `timeout`.
    pub status: String,
}

/// A scored customer.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreView {
    /// The customer.
    pub customer_id: String,
    /// Score.
    pub score: i32,
    /// Band.
    pub band: String,
    /// Probability of default.
    pub pd: f64,
    /// 90% interval: lowest and highest probability of default.
    pub pd_interval: (f64, f64),
    /// 90% interval: lowest and highest score.
    pub score_interval: (i32, i32),
    /// Reason codes, most adverse first.
    pub reasons: Vec<ReasonView>,
    /// Each bank's status.
    pub parties: Vec<PartyState>,
    /// The banks that did not contribute.
    pub missing: Vec<String>,
    /// The model.
    pub model_version: String,
    /// The decision's id.
    pub request_id: String,
    /// Whether the decision is recorded (the audit log is on), so the link leads somewhere.
    pub recorded: bool,
}

/// Why a customer was not scored.
#[derive(Clone, Debug, PartialEq)]
pub struct ErrorView {
    /// The API's error code (`customer_not_found`).
    pub code: String,
    /// The explanation.
    pub message: String,
    /// The request's id.
    pub request_id: String,
}

/// The score page's fixed parts: the scale and who is signed in.
pub struct ScoreForm<'a> {
    /// The signed-in client.
    pub user: &'a str,
    /// The customer id typed in.
    pub customer_id: &'a str,
    /// Lowest and highest score.
    pub range: (i32, i32),
    /// The bands.
    pub bands: &'a [BandView],
}

fn band_class(band: &str) -> &'static str {
    match band {
        "poor" => "bad",
        "fair" => "warn",
        _ => "good",
    }
}

/// The score page: the form, and the answer or the error if a customer was just scored.
pub fn score(form: &ScoreForm<'_>, outcome: Option<Result<&ScoreView, &ErrorView>>) -> Markup {
    Page {
        title: "Score a customer",
        nav: Nav::Score,
        user: Some(form.user),
    }
    .render(html! {
        form.inline.panel method="post" action="/ui/score" {
            div {
                label for="customer" { "Customer id" }
                input #customer name="customer_id" required maxlength="128" value=(form.customer_id) autocomplete="off";
            }
            button #score-button type="submit" { "Score" }
        }
        @match outcome {
            None => {}
            Some(Err(e)) => {
                div.panel.error role="alert" #score-error {
                    p { strong { "Not scored: " } span #error-code { (e.code) } }
                    p #error-message { (e.message) }
                    p.muted { "Request " code { (e.request_id) } }
                }
            }
            Some(Ok(s)) => { (answer(form, s)) }
        }
    })
}

fn answer(form: &ScoreForm<'_>, s: &ScoreView) -> Markup {
    html! {
        section #result aria-labelledby="result-title" {
            h2 #result-title { "Customer " span #result-customer { (s.customer_id) } }
            @if !s.missing.is_empty() {
                div.panel.notice role="status" #degraded {
                    p { strong { "Degraded answer: " } "scored without "
                        span #missing { (s.missing.join(", ")) }
                        " (that bank's part replaced by its learned absent value). The score is less certain." }
                }
            }
            div.grid {
                div.panel {
                    (PreEscaped(gauge(s.score, form.range.0, form.range.1, form.bands, &s.band)))
                }
                div.panel {
                    dl.facts {
                        dt { "Score" } dd { span.figure #score { (s.score) } }
                        dt { "Band" } dd { span #band class=(band_class(&s.band)) { (s.band.replace('_', " ")) } }
                        dt { "Probability of default" } dd { span #pd { (pct(s.pd)) } }
                        dt { "90% interval" } dd #interval {
                            (s.score_interval.0) "–" (s.score_interval.1) " points; PD "
                            (pct(s.pd_interval.0)) "–" (pct(s.pd_interval.1))
                        }
                        dt { "Model" } dd { code #model { (s.model_version) } }
                        dt { "Decision" } dd {
                            @if s.recorded {
                                a #decision-link href={ "/ui/decisions/" (s.request_id) } { (s.request_id) }
                            } @else {
                                code { (s.request_id) } " (audit log off)"
                            }
                        }
                    }
                }
            }
            h2 { "Reasons" }
            @if s.reasons.is_empty() {
                p.muted #no-reasons { "No reason codes for this answer." }
            } @else {
                ol #reasons {
                    @for r in &s.reasons {
                        li data-code=(r.code) {
                            strong { (r.description) }
                            " " span.muted { "(" (r.code) ", from " span.reason-party { (r.party) } ")" }
                        }
                    }
                }
            }
            h2 { "Banks" }
            div.scroll {
                table #parties {
                    thead { tr { th scope="col" { "Bank" } th scope="col" { "Contribution" } } }
                    tbody {
                        @for p in &s.parties {
                            tr data-party=(p.party) {
                                td { (p.party) }
                                td class=(if p.status == "ok" { "good" } else { "bad" }) { (p.status.replace('_', " ")) }
                            }
                        }
                    }
                }
            }
        }
    }
}
