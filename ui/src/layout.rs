//! The frame around every page: header with the navigation and who is signed in, a skip link,
//! and the page's `<main>`.

use maud::{DOCTYPE, Markup, html};

use crate::assets::CSS_PATH;

/// The sections of the UI, in navigation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    /// Score a customer.
    Score,
    /// Recorded decisions.
    Decisions,
    /// The banks' connections.
    Federation,
    /// The active model.
    Model,
    /// Recent scores, stability and latency.
    Monitoring,
    /// The sign-in page (no navigation).
    None,
}

impl Nav {
    const ALL: [(Nav, &'static str, &'static str); 5] = [
        (Nav::Score, "/ui/score", "Score"),
        (Nav::Decisions, "/ui/decisions", "Decisions"),
        (Nav::Federation, "/ui/federation", "Federation"),
        (Nav::Model, "/ui/model", "Model"),
        (Nav::Monitoring, "/ui/monitoring", "Monitoring"),
    ];
}

/// A page: its title, its section, and who is signed in (`None` on the sign-in page).
pub struct Page<'a> {
    /// The `<title>` and `<h1>`.
    pub title: &'a str,
    /// The section it belongs to.
    pub nav: Nav,
    /// The signed-in client's name.
    pub user: Option<&'a str>,
}

impl Page<'_> {
    /// The whole HTML document around `body`.
    pub fn render(&self, body: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · Tessera" }
                    link rel="stylesheet" href=(CSS_PATH);
                }
                body {
                    a.skip href="#main" { "Skip to content" }
                    header {
                        a.brand href="/ui/score" { "Tessera" }
                        @if self.nav != Nav::None {
                            nav aria-label="Sections" {
                                ul {
                                    @for (nav, href, label) in Nav::ALL {
                                        li {
                                            @if nav == self.nav {
                                                a href=(href) aria-current="page" { (label) }
                                            } @else {
                                                a href=(href) { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                        @if let Some(user) = self.user {
                            form.who method="post" action="/ui/logout" {
                                span { "Signed in as " strong #who { (user) } }
                                button.secondary type="submit" { "Sign out" }
                            }
                        }
                    }
                    main #main {
                        h1 { (self.title) }
                        (body)
                    }
                }
            }
        }
    }
}
