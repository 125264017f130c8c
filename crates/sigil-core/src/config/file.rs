//! The file layer: a TOML document, walked with the line of every key.

use toml::de::{DeTable, DeValue};

use super::key::Key;
use super::value::{Input, assign, type_name};
use super::{Config, ConfigError, Origin};

/// One key of a file, found while walking its tables.
struct Found<'a> {
    /// The dotted name, e.g. `tls.cert`.
    name: String,
    /// Byte offset of the key in the file.
    at: usize,
    what: What<'a>,
}

enum What<'a> {
    /// A known key and its value.
    Known(Key, &'a DeValue<'a>),
    /// A name that is no key (or a table that holds no key).
    Unknown,
    /// A known table (`tls`) written as something else.
    NotATable(&'a DeValue<'a>),
}

/// Applies the keys of the TOML document `contents` (named `path` in
/// messages) to `config`, in the order they appear in the file; the first
/// bad key is the error.
pub(super) fn apply_file(
    config: &mut Config,
    path: &str,
    contents: &str,
) -> Result<(), ConfigError> {
    let document = DeTable::parse(contents).map_err(|e| ConfigError::Toml {
        path: path.to_owned(),
        line: line_of(contents, e.span().map_or(0, |s| s.start)),
        // The message describes the problem; the error's `Display` would
        // quote the line, which may hold a secret.
        message: e.message().to_owned(),
    })?;
    let mut found = Vec::new();
    walk("", document.get_ref(), &mut found);
    found.sort_by_key(|f| f.at);
    for Found { name, at, what } in found {
        let origin = Origin::File {
            path: path.to_owned(),
            line: line_of(contents, at),
        };
        match what {
            What::Known(key, value) => assign(config, key, Input::Toml(value), origin)?,
            What::Unknown => {
                return Err(ConfigError::UnknownKey {
                    suggestion: Key::suggest(&name).map(str::to_owned),
                    key: name,
                    origin,
                });
            }
            What::NotATable(value) => {
                let keys: Vec<&str> = Key::ALL
                    .iter()
                    .filter_map(|k| k.name().strip_prefix(&name)?.strip_prefix('.'))
                    .collect();
                return Err(ConfigError::InvalidValue {
                    expected: format!(
                        "expected a table (with keys {}), found {}",
                        keys.join(", "),
                        type_name(value)
                    ),
                    key: name,
                    origin,
                });
            }
        }
    }
    Ok(())
}

/// Collects every key of `table` (whose dotted name is `prefix`), going into
/// sub-tables that are not keys themselves.
fn walk<'a>(prefix: &str, table: &'a DeTable<'a>, found: &mut Vec<Found<'a>>) {
    for (k, v) in table.iter() {
        let name = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let at = k.span().start;
        let value = v.get_ref();
        let is_table_name = Key::ALL.iter().any(|key| {
            key.name()
                .strip_prefix(&name)
                .is_some_and(|r| r.starts_with('.'))
        });
        let what = match (Key::from_name(&name), value) {
            (Some(key), value) => What::Known(key, value),
            (None, DeValue::Table(sub)) if is_table_name || !sub.is_empty() => {
                walk(&name, sub, found);
                continue;
            }
            (None, value) if is_table_name => What::NotATable(value),
            (None, _) => What::Unknown,
        };
        found.push(Found { name, at, what });
    }
}

/// The 1-based line of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let before = &text.as_bytes()[..at.min(text.len())];
    before.iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(line_of("", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
    }

    #[test]
    fn integers_in_every_notation() {
        for (text, want) in [
            ("max_inflight = 1_000", 1000),
            ("max_inflight = 0x10", 16),
            ("max_inflight = 0o10", 8),
            ("max_inflight = 0b11", 3),
            ("max_inflight = +7", 7),
        ] {
            let mut config = Config::default();
            apply_file(&mut config, "t.toml", text).unwrap();
            assert_eq!(config.max_inflight.value, want, "{text}");
        }
        let mut config = Config::default();
        let err = apply_file(&mut config, "t.toml", "max_inflight = -1").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidValue { .. }), "{err}");
    }
}
