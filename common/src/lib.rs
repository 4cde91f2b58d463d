//! Tessera's shared core, used by the party and the coordinator.
//!
//! Layout:
//! - [`wire`]: every type that crosses a process boundary, and the bounded frame codec.
//! - [`protocol`]: sans-IO protocol logic (the handshake decision, fan-out deadlines).
//! - [`federation`]: the fan-out interface a training driver uses (QUIC or in-process).
//! - [`transport`]: the only quinn user: mutual-TLS endpoints, the hello exchange, request streams.
//! - [`model`]: split-NN math on ndarray (dense layers, Adam, metrics, the score scale).
//! - [`psi`]: ECDH private set intersection over ristretto255 (blinding, re-blinding, matching).
//! - [`data`]: loading a party's CSV feature slice keyed by customer id.
//! - [`config`]: transport settings with documented defaults, reconnect backoff.
//! - [`fs`]: crash-safe file replacement (models, `CURRENT`).
//! - [`metrics`]: Prometheus helpers shared by coordinator and parties.
//! - [`logging`]: log setup for the binaries.
//! - [`shutdown`]: the shutdown signal tasks select against.
#![warn(missing_docs, unreachable_pub)]

pub mod config;
pub mod data;
pub mod federation;
pub mod fs;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod protocol;
pub mod psi;
pub mod shutdown;
pub mod transport;
pub mod wire;
