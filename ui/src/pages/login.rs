//! The sign-in page: an API key in, a session cookie out (set by the coordinator).

use maud::{Markup, html};

use crate::layout::{Nav, Page};

/// The sign-in form, with why the last attempt failed, if it did.
pub fn login(error: Option<&str>) -> Markup {
    Page {
        title: "Sign in",
        nav: Nav::None,
        user: None,
    }
    .render(html! {
        @if let Some(e) = error {
            div.panel.error role="alert" #login-error { p { (e) } }
        }
        form.panel method="post" action="/ui/login" {
            p { "Sign in with an API key of this coordinator (" code { "tessera-coordinator api-key add" } "). The key is checked like an API call; the browser keeps only a session cookie." }
            p {
                label for="key" { "API key" }
                input #key name="key" type="password" autocomplete="off" required spellcheck="false" placeholder="tsk_…";
            }
            button #sign-in type="submit" { "Sign in" }
        }
    })
}
