//! Log setup shared by the binaries: lines on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! `TESSERA_LOG_FORMAT` chooses the format: `text` (the default; colours only on a terminal)
//! or `json` (one JSON object per line, for a log collector), where every line carries the
//! fields of the spans it happened in: the `request_id` of the HTTP requests a line serves
//! (coordinator, and the parties' `request` spans from `Traced` frames), the API `client`, the
//! request `kind`.
//!
//! Nothing logged anywhere in Tessera may contain feature values, private keys or secrets:
//! log ids of parties, requests and models, counts and durations.

use std::io::IsTerminal;

/// The environment variable choosing the log format.
pub const FORMAT_VAR: &str = "TESSERA_LOG_FORMAT";

/// A log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, with the current span and its parents.
    Json,
}

impl Format {
    /// The format a `TESSERA_LOG_FORMAT` value names (`None` for an unknown one).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
/// An unknown `TESSERA_LOG_FORMAT` falls back to text and says so.
pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let asked = std::env::var(FORMAT_VAR).unwrap_or_default();
    let format = Format::parse(&asked);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        Some(Format::Json) => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        _ => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
    if format.is_none() {
        tracing::warn!(value = %asked, "unknown {FORMAT_VAR} (text or json): logging as text");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse(" JSON "), Some(Format::Json));
        assert_eq!(Format::parse(""), Some(Format::Text));
        assert_eq!(Format::parse("text"), Some(Format::Text));
        assert_eq!(Format::parse("xml"), None);
    }
}
