//! Log setup shared by the binaries: human-readable lines on stderr, filtered by `RUST_LOG`
//! (default `info`), colours only on a terminal.
//!
//! Nothing logged anywhere in Tessera may contain feature values, private keys or secrets:
//! log ids of parties, requests and models, counts and durations.

use std::io::IsTerminal;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
