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

fn opt(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.4}"))
}

/// The model page (`None`: no model is loaded).
pub fn model(user: &str, v: Option<&ModelView>) -> Markup {
    Page {
        title: "Model",
        nav: Nav::Model,
        user: Some(user),
    }
    .render(html! {
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
    })
}
