//! A Tessera party: one bank's feature slice and bottom model.
//!
//! Layout:
//! - [`align`]: the party's side of private set intersection (key, shuffle, row handles).
//! - [`config`]: the party's TOML configuration.
//! - [`bottom`]: the bottom model (standardisation + MLP) and its files.
//! - [`reasons`]: the reason dictionary and how attributions become codes.
//! - [`service`]: the request handler, with no network IO.
//! - [`policy`]: what the bank lets a coordinator do: training opt-in, bottom-model rules,
//!   explain allowance.
//! - [`metrics`]: the optional `/metrics` and `/healthz` listener for the bank's monitoring.
//! - [`run`]: the driver: dials out to the coordinator and serves its requests.
//!
//! **Architecture invariant:** this crate is the only holder of raw features; nothing it sends
//! contains them.
#![warn(missing_docs, unreachable_pub)]

pub mod align;
pub mod bottom;
pub mod config;
pub mod metrics;
pub mod policy;
pub mod reasons;
pub mod run;
pub mod service;

use std::path::PathBuf;

/// Errors of the party.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A model file is missing.
    #[error("model {0} not found")]
    NoModel(String),
    /// A model file is unreadable or inconsistent.
    #[error("bad model file: {0}")]
    ModelFormat(String),
    /// File IO failed.
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    /// The transport could not be set up.
    #[error(transparent)]
    Transport(#[from] tessera_common::transport::TransportError),
    /// The party's data could not be loaded.
    #[error(transparent)]
    Data(#[from] tessera_common::data::DataError),
    /// The reason dictionary does not fit the data.
    #[error(transparent)]
    Reasons(#[from] reasons::ReasonError),
}
