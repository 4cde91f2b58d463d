//! The federation: each bank's connection, round-trip time, last answer, model and
//! certificate; the coordinator's own certificate; readiness.

use maud::{Markup, html};

use crate::layout::{Nav, Page};

/// One bank as the coordinator sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct BankView {
    /// The bank's party id.
    pub party: String,
    /// Connected now.
    pub connected: bool,
    /// Its last request timed out.
    pub unresponsive: bool,
    /// Round-trip time estimate, milliseconds.
    pub rtt_ms: Option<f64>,
    /// Seconds since its last answer.
    pub last_answer_secs: Option<i64>,
    /// The model it has loaded.
    pub model: Option<String>,
    /// Days until its certificate expires.
    pub cert_days_left: Option<f64>,
}

/// A certificate as shown.
#[derive(Clone, Debug, PartialEq)]
pub struct CertView {
    /// The identity (URI SAN).
    pub identity: String,
    /// Serial, hex.
    pub serial: String,
    /// Expiry, RFC 3339.
    pub not_after: String,
    /// Days left.
    pub days_left: f64,
}

/// The federation page's content.
#[derive(Clone, Debug, PartialEq)]
pub struct FederationView {
    /// Every configured bank.
    pub banks: Vec<BankView>,
    /// The coordinator's certificate.
    pub own: Option<CertView>,
    /// The active model.
    pub model: Option<String>,
    /// Whether the coordinator is ready to score.
    pub ready: bool,
    /// Why not, if not.
    pub reasons: Vec<String>,
    /// Banks needed for an answer.
    pub min_parties: usize,
    /// Days under which a certificate is flagged.
    pub warn_days: f64,
}

fn ago(secs: i64) -> String {
    match secs {
        s if s < 1 => "just now".into(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 7200 => format!("{} min ago", s / 60),
        s => format!("{} h ago", s / 3600),
    }
}

/// The federation page.
pub fn federation(user: &str, v: &FederationView) -> Markup {
    let days = |d: f64| {
        let class = if d < 0.0 {
            "bad"
        } else if d < v.warn_days {
            "warn"
        } else {
            "good"
        };
        html! { span class=(class) { (format!("{d:.0}")) " days" } }
    };
    Page {
        title: "Federation",
        nav: Nav::Federation,
        user: Some(user),
    }
    .render(html! {
        div.panel class=(if v.ready { "" } else { "error" }) #readiness {
            @if v.ready {
                p { span.good { "Ready." } " Answers need at least " (v.min_parties) @if v.min_parties == 1 { " bank." } @else { " banks." } }
            } @else {
                p { span.bad { "Not ready: " } (v.reasons.join("; ")) }
            }
            p { "Active model: " @if let Some(m) = &v.model { code { (m) } } @else { span.bad { "none" } } }
        }
        h2 { "Banks" }
        div.scroll {
            table #banks {
                thead { tr {
                    th scope="col" { "Bank" } th scope="col" { "State" } th scope="col" { "Round trip" }
                    th scope="col" { "Last answer" } th scope="col" { "Model loaded" } th scope="col" { "Certificate" }
                } }
                tbody {
                    @for b in &v.banks {
                        @let state = if !b.connected { "down" } else if b.unresponsive { "unresponsive" } else { "up" };
                        tr data-party=(b.party) data-state=(state) {
                            th scope="row" { (b.party) }
                            td class=(if state == "up" { "good" } else { "bad" }) { (state) }
                            td.num { @if let Some(r) = b.rtt_ms { (format!("{r:.2} ms")) } @else { span.muted { "–" } } }
                            td { @if let Some(s) = b.last_answer_secs { (ago(s)) } @else { span.muted { "never" } } }
                            td { @match (&b.model, &v.model) {
                                (Some(m), Some(active)) if m == active => { span.good { "yes" } }
                                (Some(m), _) => { span.warn { code { (m) } " (not the active model)" } }
                                (None, _) => { span.bad { "no" } }
                            } }
                            td { @if let Some(d) = b.cert_days_left { (days(d)) } @else { span.muted { "–" } } }
                        }
                    }
                }
            }
        }
        h2 { "Coordinator certificate" }
        @if let Some(c) = &v.own {
            div.panel { dl.facts #own-cert {
                dt { "Identity" } dd { code { (c.identity) } }
                dt { "Serial" } dd { code { (c.serial) } }
                dt { "Expires" } dd { (c.not_after) " (" (days(c.days_left)) ")" }
            } }
        } @else {
            p.muted { "Not loaded." }
        }
    })
}
