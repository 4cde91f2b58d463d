//! Configuration from the environment: every key of a TOML configuration can be set or
//! overridden by an environment variable, so containers need no config file.
//!
//! `<PREFIX>__<KEY>[__<SUBKEY>…]=<value>` sets `key.subkey`: segments are lower-cased, `__`
//! separates nesting levels (a single `_` stays part of the key). The value is read as a TOML
//! value when it is one (`8080`, `true`, `["bank-a", "bank-b"]`, `"007"`), else as a string.
//! Example with prefix `TESSERA_PARTY`: `TESSERA_PARTY__DATA__PATH=/data/bank.csv` sets
//! `[data] path`.

use super::ConfigError;
use toml::{Table, Value};

/// Why an override could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvError {
    /// The variable names no key (`PREFIX__` alone, or an empty segment).
    #[error("environment variable {0}: no key after the prefix (use PREFIX__KEY or PREFIX__TABLE__KEY)")]
    NoKey(String),
    /// A segment names a table where a value is set, or the reverse.
    #[error("environment variable {0}: {1} is not a table")]
    NotATable(String, String),
}

fn parse_value(raw: &str) -> Value {
    match format!("v = {raw}").parse::<Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

/// Applies the variables among `vars` that start with `<prefix>__` to `doc`.
///
/// # Returns
/// The names of the variables applied (for a log line; values are not returned, they may be
/// secrets).
///
/// # Errors
/// [`EnvError`] for a variable that names no key or walks through a non-table.
pub fn apply(
    doc: &mut Table,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<String>, EnvError> {
    let lead = format!("{prefix}__");
    let mut applied = Vec::new();
    let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(k, _)| k.starts_with(&lead)).collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[lead.len()..].split("__").map(str::to_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(EnvError::NoKey(name));
        }
        let (last, tables) = path.split_last().ok_or_else(|| EnvError::NoKey(name.clone()))?;
        let mut at = &mut *doc;
        for seg in tables {
            let entry = at
                .entry(seg.clone())
                .or_insert_with(|| Value::Table(Table::new()));
            at = match entry {
                Value::Table(t) => t,
                _ => return Err(EnvError::NotATable(name, seg.clone())),
            };
        }
        at.insert(last.clone(), parse_value(&raw));
        applied.push(name);
    }
    Ok(applied)
}

/// Reads a TOML configuration from `path` (if any), applies the process's `<prefix>__…`
/// environment variables, and deserialises it.
///
/// # Returns
/// The configuration and the directory relative paths in it resolve against (the file's, or
/// the working directory without a file).
///
/// # Errors
/// [`ConfigError`] naming the file or variable and the problem.
pub fn load<T: serde::de::DeserializeOwned>(
    path: Option<&std::path::Path>,
    prefix: &str,
) -> Result<(T, std::path::PathBuf), ConfigError> {
    let (mut doc, base) = match path {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.to_path_buf(),
                source,
            })?;
            let doc: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
                what: p.display().to_string(),
                message: e.to_string(),
            })?;
            let base = p.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
            (doc, base)
        }
        None => (Table::new(), std::path::PathBuf::from(".")),
    };
    apply(&mut doc, prefix, std::env::vars())?;
    let what = path.map_or_else(|| format!("{prefix}__* environment"), |p| p.display().to_string());
    let cfg = Value::Table(doc)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Parse {
            what,
            message: e.to_string(),
        })?;
    Ok((cfg, base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn sets_and_overrides_nested_keys_with_typed_values() {
        let mut doc: Table = "party_id = \"a\"\n[data]\npath = \"x.csv\"\n".parse().unwrap();
        let applied = apply(
            &mut doc,
            "TESSERA_PARTY",
            vars(&[
                ("TESSERA_PARTY__PARTY_ID", "bank-b"),
                ("TESSERA_PARTY__DATA__PATH", "/data/b.csv"),
                ("TESSERA_PARTY__DATA__MAX_ROWS", "1000"),
                ("TESSERA_PARTY__PARTIES", "[\"a\", \"b\"]"),
                ("TESSERA_PARTY__CODE", "\"007\""),
                ("TESSERA_PARTY_CONFIG", "/etc/x.toml"),
                ("OTHER__X", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(applied.len(), 5);
        assert_eq!(doc["party_id"].as_str(), Some("bank-b"));
        assert_eq!(doc["data"]["path"].as_str(), Some("/data/b.csv"));
        assert_eq!(doc["data"]["max_rows"].as_integer(), Some(1000));
        assert_eq!(doc["parties"].as_array().map(Vec::len), Some(2));
        assert_eq!(doc["code"].as_str(), Some("007"));
        assert!(!doc.contains_key("config"));
    }

    #[test]
    fn malformed_names_are_errors() {
        let mut doc: Table = "x = 1\n".parse().unwrap();
        assert!(matches!(
            apply(&mut doc, "P", vars(&[("P__", "1")])),
            Err(EnvError::NoKey(_))
        ));
        assert!(matches!(
            apply(&mut doc, "P", vars(&[("P__A____B", "1")])),
            Err(EnvError::NoKey(_))
        ));
        assert!(matches!(
            apply(&mut doc, "P", vars(&[("P__X__Y", "1")])),
            Err(EnvError::NotATable(_, _))
        ));
    }
}
