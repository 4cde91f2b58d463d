//! The active model: the training figures (AUC, KS, ECE, AUC with each bank absent, sizes and
//! times) and the training report chart (ROC, calibration, score distribution by class), the
//! same SVG the training run wrote.

use maud::{Markup, html};

use crate::layout::{Nav, Page};

/// One bank's part in the model.
#[derive(Clone, Debug, PartialEq)]
pub struct PartyFigures {
    /// The bank.
    pub party: String,
    /// Its features (count only: names and values stay at the bank).
    pub features: u32,
    /// Width of its embedding.
    pub embedding: u32,
    /// Customers it shares with the label holder.
    pub shared: Option<usize>,
    /// Holdout AUC with this bank absent.
    pub auc_without: Option<f64>,
}

/// The model page's content.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelView {
    /// Model id.
    pub model_id: String,
    /// When it was trained.
    pub created_at: String,
    /// The bank holding the labels.
    pub label_holder: String,
    /// Each bank.
    pub parties: Vec<PartyFigures>,
    /// Holdout AUC, KS and ECE.
    pub auc: f64,
    /// KS.
    pub ks: f64,
    /// Expected calibration error.
    pub ece: f64,
    /// Validation AUC of the kept epoch.
    pub validation_auc: f64,
    /// Holdout AUC on customers every bank knows, and on the others.
    pub auc_complete: Option<f64>,
    /// Holdout AUC on customers some bank does not know.
    pub auc_partial: Option<f64>,
    /// Customers, and rows of training, validation and holdout.
    pub sizes: [usize; 4],
    /// Epochs run, and the one kept.
    pub epochs: (usize, usize),
    /// Seconds of training (alignment included) and of alignment.
    pub seconds: (f64, f64),
    /// Layer widths of the top model.
    pub top_layers: Vec<usize>,
    /// Whether the training report chart is there to show.
    pub report: bool,
}

/// A saved model in the registry table.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryRow {
    /// Model id.
    pub model_id: String,
    /// When it was trained.
    pub created_at: String,
    /// Holdout AUC, KS, ECE.
    pub figures: (f64, f64, f64),
    /// `active`, `previous`, `shadow` or empty.
    pub status: &'static str,
}

/// How the shadow model compares with the active one.
#[derive(Clone, Debug, PartialEq)]
pub struct ShadowView {
    /// The shadow model.
    pub model_id: String,
    /// Customers scored by both.
    pub compared: u64,
    /// Share in the same band.
    pub same_band_rate: Option<f64>,
    /// Mean shadow − active score.
    pub mean_shift: Option<f64>,
    /// PSI of the shadow's scores against the active's.
    pub psi: Option<f64>,
}

/// One entry of the activation log.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryRow {
    /// When.
    pub at: String,
    /// The client.
    pub client: String,
    /// What (`activate`, `rollback`, `shadow`, `shadow_cleared`).
    pub action: String,
    /// The model concerned.
    pub model_id: String,
    /// The model before.
    pub previous: String,
}

/// The model registry part of the model page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RegistryView {
    /// Saved models, newest first.
    pub models: Vec<RegistryRow>,
    /// The shadow comparison.
    pub shadow: Option<ShadowView>,
    /// The newest activation log entries.
    pub history: Vec<HistoryRow>,
    /// Whether the signed-in client may activate, roll back and shadow (scope `admin`).
    pub can_admin: bool,
    /// Why the last action failed, if it did.
    pub error: Option<String>,
}

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

/// The model page (`None`: no model is loaded) with the registry of saved models.
pub fn model(user: &str, v: Option<&ModelView>, r: &RegistryView) -> Markup {
    Page {
        title: "Model",
        nav: Nav::Model,
        user: Some(user),
    }
    .render(html! {
        @if let Some(e) = &r.error {
            div.panel.error role="alert" #lifecycle-error { p { (e) } }
        }
        @match v {
            None => { div.panel.error role="alert" { p { "No model is loaded: train one (" code { "tessera-coordinator train" } ")." } } }
            Some(m) => {
                div.grid {
                    div.panel { p.muted { "Holdout AUC" } p.figure #auc { (format!("{:.4}", m.auc)) } }
                    div.panel { p.muted { "KS" } p.figure #ks { (format!("{:.4}", m.ks)) } }
                    div.panel { p.muted { "Calibration error (ECE)" } p.figure #ece { (format!("{:.4}", m.ece)) } }
                }
                div.panel { dl.facts #model-facts {
                    dt { "Model" } dd { code #model-id { (m.model_id) } }
                    dt { "Trained" } dd { (m.created_at) }
                    dt { "Label holder" } dd { (m.label_holder) }
                    dt { "Validation AUC" } dd { (format!("{:.4}", m.validation_auc)) }
                    dt { "AUC, customers every bank knows" } dd { (opt(m.auc_complete)) }
                    dt { "AUC, customers some bank lacks" } dd { (opt(m.auc_partial)) }
                    dt { "Customers" } dd { (m.sizes[0]) " (training " (m.sizes[1]) ", validation " (m.sizes[2]) ", holdout " (m.sizes[3]) ")" }
                    dt { "Epochs" } dd { (m.epochs.0) " run, epoch " (m.epochs.1) " kept" }
                    dt { "Training time" } dd { (format!("{:.1} s", m.seconds.0)) " (private set intersection " (format!("{:.1} s", m.seconds.1)) ")" }
                    dt { "Top model layers" } dd { (m.top_layers.iter().map(ToString::to_string).collect::<Vec<_>>().join(" → ")) }
                } }
                h2 { "Banks" }
                div.scroll { table #model-parties {
                    thead { tr { th scope="col" { "Bank" } th scope="col" { "Features" } th scope="col" { "Embedding" } th scope="col" { "Shared with label holder" } th scope="col" { "Holdout AUC without it" } } }
                    tbody { @for p in &m.parties { tr {
                        th scope="row" { (p.party) }
                        td.num { (p.features) } td.num { (p.embedding) }
                        td.num { @if let Some(s) = p.shared { (s) } @else { "–" } }
                        td.num { (opt(p.auc_without)) }
                    } } }
                } }
                h2 { "Training report" }
                @if m.report {
                    img.report #report src="/ui/model/report.svg" alt={ "Training report of " (m.model_id) ": ROC curve (AUC " (format!("{:.4}", m.auc)) "), calibration curve, and score distribution of defaulters and non-defaulters on the holdout" };
                } @else {
                    p.muted { "This model has no report chart." }
                }
            }
        }
        (registry(r))
    })
}

fn registry(r: &RegistryView) -> Markup {
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", v * 100.0));
    html! {
        h2 #models-title { "Saved models" }
        @if let Some(s) = &r.shadow {
            div.panel #shadow {
                p { strong { "Shadow: " } code { (s.model_id) } " scores what the active model answers, without changing any answer." }
                dl.facts {
                    dt { "Customers compared" } dd #shadow-compared { (s.compared) }
                    dt { "Same band" } dd { (pct(s.same_band_rate)) }
                    dt { "Mean score shift (shadow − active)" } dd { (s.mean_shift.map_or("–".to_string(), |v| format!("{v:+.1} points"))) }
                    dt { "PSI between the two" } dd { (s.psi.map_or("–".to_string(), |v| format!("{v:.3}"))) }
                }
                @if r.can_admin {
                    form method="post" action="/ui/models/shadow/clear" { button.secondary #clear-shadow type="submit" { "Stop shadowing" } }
                }
            }
        }
        @if r.can_admin && r.models.iter().any(|m| m.status == "previous") {
            form.panel method="post" action="/ui/models/rollback" {
                p { "Roll back to the model active before (every bank switches at once; no answer mixes two models)." }
                button #rollback type="submit" { "Roll back" }
            }
        }
        div.scroll { table #models {
            thead { tr {
                th scope="col" { "Model" } th scope="col" { "Trained" } th scope="col" { "AUC" } th scope="col" { "KS" } th scope="col" { "ECE" } th scope="col" { "Status" }
                @if r.can_admin { th scope="col" { "Actions" } }
            } }
            tbody { @for m in &r.models {
                tr data-model=(m.model_id) data-status=(m.status) {
                    th scope="row" { code { (m.model_id) } }
                    td { (m.created_at) }
                    td.num { (format!("{:.4}", m.figures.0)) } td.num { (format!("{:.4}", m.figures.1)) } td.num { (format!("{:.4}", m.figures.2)) }
                    td { @if m.status.is_empty() { span.muted { "saved" } } @else { strong { (m.status) } } }
                    @if r.can_admin { td {
                        @if m.status != "active" {
                            form.inline method="post" action={ "/ui/models/" (m.model_id) "/activate" } {
                                button.activate type="submit" aria-label={ "Activate " (m.model_id) } { "Activate" }
                            }
                            @if m.status != "shadow" {
                                form.inline method="post" action={ "/ui/models/" (m.model_id) "/shadow" } {
                                    button.secondary type="submit" aria-label={ "Shadow " (m.model_id) } { "Shadow" }
                                }
                            }
                        }
                    } }
                }
            } }
        } }
        @if !r.can_admin { p.muted { "Activating, rolling back and shadowing need an API key with the " code { "admin" } " scope." } }
        h2 { "Activation log" }
        @if r.history.is_empty() {
            p.muted #no-history { "No activation yet." }
        } @else {
            div.scroll { table #history {
                thead { tr { th scope="col" { "When (UTC)" } th scope="col" { "Client" } th scope="col" { "Action" } th scope="col" { "Model" } th scope="col" { "Before" } } }
                tbody { @for h in &r.history { tr {
                    td { (h.at) } td { (h.client) } td { (h.action.replace('_', " ")) }
                    td { @if h.model_id.is_empty() { span.muted { "–" } } @else { code { (h.model_id) } } }
                    td { @if h.previous.is_empty() { span.muted { "–" } } @else { code { (h.previous) } } }
                } } }
            } }
        }
    }
}
