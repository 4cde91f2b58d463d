//! One module per page; each renders a view struct into a whole HTML document.

mod decisions;
mod federation;
mod login;
mod model;
mod monitoring;
mod score;

pub use decisions::{DecisionFilter, DecisionRow, decision, decisions};
pub use federation::{BankView, CertView, FederationView, federation};
pub use login::login;
pub use model::{HistoryRow, ModelView, PartyFigures, RegistryRow, RegistryView, ShadowView, model};
pub use monitoring::{MonitoringView, monitoring};
pub use score::{ErrorView, PartyState, ReasonView, ScoreForm, ScoreView, score};

use maud::{Markup, html};

use crate::layout::{Nav, Page};

/// A page that only says something went wrong (or is not allowed), in the given section.
pub fn message(title: &str, nav: Nav, user: Option<&str>, text: &str) -> Markup {
    Page { title, nav, user }.render(html! {
        div.panel.error role="alert" { p { (text) } }
    })
}

/// A probability as a percentage with two decimals.
pub(crate) fn pct(p: f64) -> String {
    format!("{:.2}%", p * 100.0)
}
