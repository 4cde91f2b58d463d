//! The recorded decisions: newest first, filtered by customer, request id and date; and one
//! decision's full record. What the audit log holds, never a feature value.

use maud::{Markup, html};

use super::pct;
use crate::layout::{Nav, Page};

/// A recorded decision as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionRow {
    /// Its request id.
    pub request_id: String,
    /// When, RFC 3339 UTC.
    pub decided_at: String,
    /// The customer id, or its keyed hash.
    pub customer: String,
    /// Whether `customer` is a hash.
    pub customer_hashed: bool,
    /// Score.
    pub score: i32,
    /// Band.
    pub band: String,
    /// Probability of default.
    pub pd: f64,
    /// Reason codes.
    pub reason_codes: Vec<String>,
    /// Banks that did not contribute.
    pub missing: Vec<String>,
    /// Model.
    pub model_version: String,
    /// Time to answer, milliseconds.
    pub latency_ms: f64,
    /// The API client that asked.
    pub caller: String,
}

/// The filter of the list, as typed (empty: not filtered).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecisionFilter {
    /// Customer id.
    pub customer: String,
    /// Request id.
    pub request_id: String,
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, `YYYY-MM-DD`.
    pub to: String,
}

/// The list: the filter form, at most `limit` rows, and a note (e.g. why it is empty).
pub fn decisions(
    user: &str,
    filter: &DecisionFilter,
    rows: &[DecisionRow],
    limit: usize,
    note: Option<&str>,
) -> Markup {
    Page {
        title: "Decisions",
        nav: Nav::Decisions,
        user: Some(user),
    }
    .render(html! {
        form.inline.panel method="get" action="/ui/decisions" role="search" {
            div { label for="f-customer" { "Customer id" } input #f-customer name="customer" value=(filter.customer) maxlength="128"; }
            div { label for="f-request" { "Request id" } input #f-request name="request_id" value=(filter.request_id) maxlength="36"; }
            div { label for="f-from" { "From" } input #f-from name="from" type="date" value=(filter.from); }
            div { label for="f-to" { "To" } input #f-to name="to" type="date" value=(filter.to); }
            button #filter type="submit" { "Filter" }
            a href="/ui/decisions" { "Clear" }
        }
        @if let Some(n) = note {
            div.panel.notice role="status" #decisions-note { p { (n) } }
        }
        p.muted { "Newest first; at most " (limit) " shown. Decisions are written within moments of the answer." }
        div.scroll {
            table #decisions {
                caption.muted { (rows.len()) " decisions" }
                thead { tr {
                    th scope="col" { "When (UTC)" } th scope="col" { "Customer" } th scope="col" { "Score" }
                    th scope="col" { "Band" } th scope="col" { "PD" } th scope="col" { "Missing banks" }
                    th scope="col" { "Caller" } th scope="col" { "Decision" }
                } }
                tbody {
                    @for d in rows {
                        tr data-request=(d.request_id) {
                            td { (d.decided_at) }
                            td { @if d.customer_hashed { span title="keyed hash of the customer id" { (short(&d.customer)) "…" } } @else { (d.customer) } }
                            td.num { (d.score) }
                            td { (d.band.replace('_', " ")) }
                            td.num { (pct(d.pd)) }
                            td { @if d.missing.is_empty() { span.muted { "none" } } @else { span.warn { (d.missing.join(", ")) } } }
                            td { (d.caller) }
                            td { a href={ "/ui/decisions/" (d.request_id) } { "View " span.muted { (short(&d.request_id)) } } }
                        }
                    }
                }
            }
        }
    })
}

fn short(s: &str) -> &str {
    s.get(..8).unwrap_or(s)
}

/// One decision's full record.
pub fn decision(user: &str, d: &DecisionRow) -> Markup {
    Page {
        title: "Decision",
        nav: Nav::Decisions,
        user: Some(user),
    }
    .render(html! {
        div.panel {
            dl.facts #decision {
                dt { "Request id" } dd { code #d-request { (d.request_id) } }
                dt { "Decided at (UTC)" } dd { (d.decided_at) }
                dt { "Customer" } dd #d-customer { (d.customer) @if d.customer_hashed { " " span.muted { "(keyed hash of the id)" } } }
                dt { "Score" } dd #d-score { (d.score) }
                dt { "Band" } dd { (d.band.replace('_', " ")) }
                dt { "Probability of default" } dd { (pct(d.pd)) }
                dt { "Reason codes" } dd #d-reasons { @if d.reason_codes.is_empty() { span.muted { "none" } } @else { (d.reason_codes.join(", ")) } }
                dt { "Banks missing" } dd { @if d.missing.is_empty() { span.muted { "none" } } @else { (d.missing.join(", ")) } }
                dt { "Model" } dd { code { (d.model_version) } }
                dt { "Time to answer" } dd { (format!("{:.2} ms", d.latency_ms)) }
                dt { "Caller" } dd { (d.caller) }
            }
        }
        p { a href="/ui/decisions" { "All decisions" } }
    })
}
