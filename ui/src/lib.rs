//! Tessera's web UI, rendered on the server: what a credit officer and an operator look at.
//!
//! This crate knows no network and no coordinator internals. Each page is a function from a
//! plain view struct (filled by the coordinator's UI routes) to HTML: [`pages::login`],
//! [`pages::score`], [`pages::decisions`], [`pages::federation`], [`pages::model`] and
//! [`pages::monitoring`]. Charts are SVG drawn here ([`charts`]: the score gauge by hand, the
//! distributions with plotters) and inlined, so a page is one response with no script and no
//! third-party asset; the one stylesheet is [`assets::CSS`].
//!
//! Invariants: a page never shows a feature value (the views have no field for one), and
//! every value that came from outside is escaped by maud (the only unescaped markup is the SVG
//! this crate draws from numbers).

pub mod assets;
pub mod charts;
mod layout;
pub mod pages;

pub use layout::{Nav, Page};
