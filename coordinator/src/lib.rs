//! The Tessera coordinator.
//!
//! Layout:
//! - [`config`]: the coordinator's TOML configuration.
//! - [`metrics`]: Prometheus metrics.
//! - [`registry`]: connected parties; calls and fan-outs to them over QUIC.
//! - [`listener`]: the QUIC listener that admits only certified, configured parties.
//! - [`federation`]: the registry as a training federation.
//! - [`train`]: the split-NN training driver.
//! - [`artifact`]: top model and manifest files.
//! - [`report`]: `metrics.json` and `report.svg` (ROC, calibration, score distribution) per model.
//! - [`models`]: the saved models, the activation log and model cards.
//! - [`serving`]: the active model, loading it onto parties, and scoring one customer.
//! - [`auth`]: who calls the HTTP API: bearer API keys, scopes, per-client rate limits; UI
//!   sessions opened with a key.
//! - [`monitor`]: the window of recent answers: score stability against training, latency,
//!   degraded answers by missing party.
//! - [`http`]: the HTTP API (axum) and the web UI's routes (pages rendered by `tessera-ui`).
//! - [`app`]: wiring: listener, model activation, HTTP server, shutdown.
#![warn(missing_docs, unreachable_pub)]

pub mod app;
pub mod artifact;
pub mod audit;
pub mod auth;
pub mod config;
pub mod federation;
pub mod http;
pub mod listener;
pub mod metrics;
pub mod models;
pub mod monitor;
pub mod registry;
pub mod report;
pub mod scoring;
pub mod serving;
pub mod train;
