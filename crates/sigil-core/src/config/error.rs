//! Why a configuration could not be resolved.

use super::origin::{Origin, Where};

/// Why a configuration could not be resolved, or an authorized_keys file
/// not read.
///
/// Every case names the key (or variable) and where it came from; `Display`
/// is one line. No case ever holds or shows a configured value, so secrets
/// cannot leak through an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file is not valid TOML.
    #[error("invalid TOML in {path} line {line}: {message}")]
    Toml {
        /// The file's name as the caller gave it.
        path: String,
        /// The 1-based line of the error.
        line: usize,
        /// The parser's description of the problem (no file text).
        message: String,
    },
    /// A key in a file, or given to [`ConfigBuilder::set`](super::ConfigBuilder::set),
    /// that sigil does not know.
    #[error("unknown key `{key}` {}{}", Where(origin), Suggest("`", suggestion.as_deref()))]
    UnknownKey {
        /// The key as written, dotted for a table (`tls.cret`).
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The nearest known key, if one is near.
        suggestion: Option<String>,
    },
    /// A key given to [`ConfigBuilder::pin`](super::ConfigBuilder::pin) that
    /// sigil does not know.
    #[error("cannot pin unknown key `{key}`{}", Suggest("`", suggestion.as_deref()))]
    UnknownPin {
        /// The key as given.
        key: String,
        /// The nearest known key, if one is near.
        suggestion: Option<String>,
    },
    /// A `SIGIL_*` environment variable that names no key.
    #[error("unknown environment variable {var}{}", Suggest("", suggestion.as_deref()))]
    UnknownEnv {
        /// The variable's name.
        var: String,
        /// The nearest known variable, if one is near.
        suggestion: Option<String>,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid value for `{key}` {}: {expected}", Where(origin))]
    InvalidValue {
        /// The key, dotted for a table.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What was expected, and why the value is not it (never the value itself).
        expected: String,
    },
    /// Two keys that exclude each other are both set.
    #[error("`{key}` ({origin}) and `{other}` ({other_origin}) are both set: set only one of them")]
    Conflict {
        /// One key.
        key: &'static str,
        /// Where it was set.
        origin: Origin,
        /// The other key.
        other: &'static str,
        /// Where that one was set.
        other_origin: Origin,
    },
    /// A line of an authorized_keys file that holds no valid public key
    /// (from [`parse_authorized_keys`](super::parse_authorized_keys)).
    #[error("invalid public key in {path} line {line}: {reason}")]
    AuthorizedKey {
        /// The file's name as the caller gave it.
        path: String,
        /// The 1-based line.
        line: usize,
        /// Why the key was refused.
        reason: crate::keys::KeyError,
    },
}

/// Shows ` (did you mean X?)` when there is a suggestion, quoted with `quote`.
struct Suggest<'a>(&'static str, Option<&'a str>);

impl std::fmt::Display for Suggest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(s) => write!(f, " (did you mean {q}{s}{q}?)", q = self.0),
            None => Ok(()),
        }
    }
}
