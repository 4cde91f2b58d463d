//! Crash-safe file replacement for every writer of state that must never be seen half written
//! (models and `CURRENT`): one implementation, shared with the certificate tooling.

pub use tessera_certs::durable::write_atomic;
