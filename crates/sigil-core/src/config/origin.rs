//! Where a value came from, and environment variables that were ignored.

use std::fmt;

/// Where a resolved value came from: the layer that set it last.
///
/// `Display` gives the short form `sigil config show --origin` prints:
/// `default`, `sigil.toml:3`, `env SIGIL_PORT`, `--port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// The builtin default.
    Default,
    /// A TOML file.
    File {
        /// The file's name as the caller gave it (used only in messages).
        path: String,
        /// The 1-based line of the key in the file.
        line: usize,
    },
    /// An environment variable.
    Env {
        /// The variable's name, e.g. `SIGIL_PORT`.
        var: String,
    },
    /// An override from code or the command line.
    Override {
        /// A label for the override, e.g. `--port` or `code`.
        source: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::Env { var } => write!(f, "env {var}"),
            Origin::Override { source } => f.write_str(source),
        }
    }
}

/// Shows an origin as the tail of an error message: `in sigil.toml line 3`,
/// `from SIGIL_PORT`, `from --port`, `in the builtin defaults`.
pub(super) struct Where<'a>(pub(super) &'a Origin);

impl fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Origin::Default => f.write_str("in the builtin defaults"),
            Origin::File { path, line } => write!(f, "in {path} line {line}"),
            Origin::Env { var } => write!(f, "from {var}"),
            Origin::Override { source } => write!(f, "from {source}"),
        }
    }
}

/// A `SIGIL_*` environment variable that was not applied.
///
/// `Display` gives `ignored SIGIL_PORT (environment disabled)` or
/// `ignored SIGIL_PORT (`port` is pinned)`; the value is never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IgnoredEnv {
    /// The variable's name, e.g. `SIGIL_PORT`.
    pub var: String,
    /// Why it was ignored.
    pub reason: IgnoreReason,
}

impl fmt::Display for IgnoredEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ignored {} ({})", self.var, self.reason)
    }
}

/// Why a `SIGIL_*` environment variable was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IgnoreReason {
    /// The environment is locked out ([`ConfigBuilder::no_env`](super::ConfigBuilder::no_env),
    /// the CLI's `--no-env`). Unknown `SIGIL_*` names are reported this way
    /// too instead of being errors.
    EnvDisabled,
    /// The key is pinned ([`ConfigBuilder::pin`](super::ConfigBuilder::pin)):
    /// the environment may not change it.
    Pinned {
        /// The pinned key, e.g. `port` or `tls.cert`.
        key: &'static str,
    },
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IgnoreReason::EnvDisabled => f.write_str("environment disabled"),
            IgnoreReason::Pinned { key } => write!(f, "`{key}` is pinned"),
        }
    }
}
