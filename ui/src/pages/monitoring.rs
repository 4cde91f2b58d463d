//! Monitoring: the recent scores against the training distribution with the population
//! stability index, the degraded-answer rate by missing bank, and latency percentiles.

use maud::{Markup, PreEscaped, html};

use crate::charts::compare;
use crate::layout::{Nav, Page};

/// The monitoring page's content.
#[derive(Clone, Debug, PartialEq)]
pub struct MonitoringView {
    /// The model the window is about.
    pub model: String,
    /// Answers in the window, and its size.
    pub answers: (usize, usize),
    /// Answers needed for the index.
    pub min_for_psi: usize,
    /// Population stability index, with its reading (`stable`, `moderate`, `shifted`).
    pub psi: Option<(f64, &'static str)>,
    /// Bin labels (score ranges).
    pub bins: Vec<String>,
    /// Training share per bin.
    pub expected: Vec<f64>,
    /// Recent share per bin.
    pub actual: Vec<f64>,
    /// Latency p50, p90, p99 of single scores, ms.
    pub latency_ms: Option<[f64; 3]>,
    /// Degraded answers in the window.
    pub degraded: usize,
    /// Degraded answers by the missing bank.
    pub degraded_by_party: Vec<(String, usize)>,
}

/// The monitoring page.
pub fn monitoring(user: &str, v: &MonitoringView) -> Markup {
    let (n, window) = v.answers;
    let rate = |k: usize| {
        if n == 0 {
            "–".to_string()
        } else {
            format!("{:.1}%", 100.0 * k as f64 / n as f64)
        }
    };
    let chart = if v.expected.is_empty() || n == 0 {
        None
    } else {
        compare(
            "Score distribution: training holdout against recent answers",
            &v.bins,
            ("training", &v.expected),
            ("recent", &v.actual),
        )
        .ok()
    };
    Page {
        title: "Monitoring",
        nav: Nav::Monitoring,
        user: Some(user),
    }
    .render(html! {
        p.muted { "The last " (n) " answers (the window keeps " (window) ") of model " code { (v.model) } ". Figures of this coordinator replica only." }
        div.grid {
            div.panel {
                p.muted { "Population stability index" }
                @match v.psi {
                    Some((psi, reading)) => {
                        p.figure #psi { (format!("{psi:.3}")) }
                        p #psi-reading class=(match reading { "stable" => "good", "moderate" => "warn", _ => "bad" }) { (reading) }
                        p.muted { "< 0.1 stable, 0.1–0.25 moderate, ≥ 0.25 shifted" }
                    }
                    None => { p #psi { "–" } p.muted { "Needs " (v.min_for_psi) " answers of a model trained with a score reference." } }
                }
            }
            div.panel {
                p.muted { "Degraded answers" }
                p.figure #degraded-rate { (rate(v.degraded)) }
                p.muted { (v.degraded) " of " (n) }
            }
            div.panel {
                p.muted { "Latency of single scores" }
                @if let Some([p50, p90, p99]) = v.latency_ms {
                    dl.facts #latency {
                        dt { "p50" } dd { (format!("{p50:.2} ms")) }
                        dt { "p90" } dd { (format!("{p90:.2} ms")) }
                        dt { "p99" } dd { (format!("{p99:.2} ms")) }
                    }
                } @else { p { "–" } }
            }
        }
        h2 { "Score distribution" }
        @if let Some(svg) = chart {
            div.panel.scroll #distribution { (PreEscaped(svg)) }
        } @else {
            p.muted { "No answers yet." }
        }
        h2 { "Degraded answers by missing bank" }
        @if v.degraded_by_party.is_empty() {
            p.muted #no-degraded { "No degraded answers in the window." }
        } @else {
            div.scroll { table #degraded-by-bank {
                thead { tr { th scope="col" { "Bank missing" } th scope="col" { "Answers" } th scope="col" { "Share of answers" } } }
                tbody { @for (p, k) in &v.degraded_by_party { tr { th scope="row" { (p) } td.num { (k) } td.num { (rate(*k)) } } } }
            } }
        }
    })
}
