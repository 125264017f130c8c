//! Gathering the layers and resolving them into a [`Config`].

use std::fmt;

use zeroize::Zeroizing;

use super::file::apply_file;
use super::key::{ENV_PREFIX, Key};
use super::value::{Input, assign};
use super::{Config, ConfigError, IgnoreReason, IgnoredEnv, Origin};

/// Gathers the layers of a configuration; [`build`](ConfigBuilder::build)
/// resolves them. Made by [`Config::builder`].
///
/// Every value given to the builder (file contents, environment values,
/// overrides) is held in memory that is zeroized when the builder is done
/// with it, since any of them may hold the `psk`.
#[derive(Default)]
pub struct ConfigBuilder {
    files: Vec<(String, Zeroizing<String>)>,
    /// Only the `SIGIL_*` variables, in the order given.
    env: Vec<(String, Zeroizing<String>)>,
    no_env: bool,
    pins: Vec<Key>,
    overrides: Vec<Override>,
}

struct Override {
    key: Key,
    value: Zeroizing<String>,
    source: String,
}

/// A resolved configuration and the environment variables that were not
/// applied.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Resolved {
    /// The configuration.
    pub config: Config,
    /// The `SIGIL_*` variables ignored because the environment was locked out
    /// or their key pinned, sorted by name. The caller should report them
    /// (the CLI prints `sigil: ignored SIGIL_PORT (environment disabled)`).
    pub ignored_env: Vec<IgnoredEnv>,
}

impl ConfigBuilder {
    /// Adds a TOML file layer: `contents` is the file's text, read by the
    /// caller, and `path` its name for origins and messages
    /// (`sigil.toml:3`). Files given later override files given earlier.
    pub fn file(mut self, path: impl Into<String>, contents: &str) -> ConfigBuilder {
        self.files
            .push((path.into(), Zeroizing::new(contents.to_owned())));
        self
    }

    /// Adds the environment: pass the whole process environment
    /// (`std::env::vars()`); names that do not start with `SIGIL_` are
    /// dropped at once. A name given again replaces its earlier value.
    ///
    /// `std::env::vars()` panics on a variable that is not Unicode; a caller
    /// that must not panic can pass `std::env::vars_os()` with such
    /// variables filtered out (`into_string().ok()`).
    pub fn env<I, K, V>(mut self, vars: I) -> ConfigBuilder
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (name, value) in vars {
            let name = name.into();
            let value = Zeroizing::new(value.into());
            if name.starts_with(ENV_PREFIX) {
                self.env.retain(|(n, _)| *n != name);
                self.env.push((name, value));
            }
        }
        self
    }

    /// Locks the environment out (`true`) or lets it in (`false`, the
    /// default). Locked out, every `SIGIL_*` variable, known or not, is
    /// ignored and reported in [`Resolved::ignored_env`].
    pub fn no_env(mut self, locked_out: bool) -> ConfigBuilder {
        self.no_env = locked_out;
        self
    }

    /// Pins `key` (dotted for a table: `tls.cert`) so that the environment
    /// cannot change it; files and overrides still can. A variable for a
    /// pinned key is reported in [`Resolved::ignored_env`].
    ///
    /// # Errors
    /// [`ConfigError::UnknownPin`] if there is no such key.
    pub fn pin(mut self, key: &str) -> Result<ConfigBuilder, ConfigError> {
        let found = Key::from_name(key).ok_or_else(|| ConfigError::UnknownPin {
            key: key.to_owned(),
            suggestion: Key::suggest(key).map(str::to_owned),
        })?;
        self.pins.push(found);
        Ok(self)
    }

    /// Overrides `key` with `value`, written as in an environment variable
    /// (`"9000"`, `"true"`), from code or the command line; `source` labels
    /// the override in origins and messages (`--port`, `code`). Overrides
    /// beat every other layer; a later override beats an earlier one. The
    /// value is checked by [`build`](ConfigBuilder::build).
    ///
    /// # Errors
    /// [`ConfigError::UnknownKey`] if there is no such key.
    pub fn set(
        mut self,
        key: &str,
        value: &str,
        source: impl Into<String>,
    ) -> Result<ConfigBuilder, ConfigError> {
        let source = source.into();
        let Some(found) = Key::from_name(key) else {
            return Err(ConfigError::UnknownKey {
                key: key.to_owned(),
                origin: Origin::Override { source },
                suggestion: Key::suggest(key).map(str::to_owned),
            });
        };
        self.overrides.push(Override {
            key: found,
            value: Zeroizing::new(value.to_owned()),
            source,
        });
        Ok(self)
    }

    /// Resolves the layers: defaults, then each file, then the environment,
    /// then the overrides, each value replacing the one below it. Every value
    /// of every layer is checked, even one that a higher layer replaces.
    ///
    /// # Errors
    /// The first problem found, in that order (within a file, in the order of
    /// the file; within the environment, by variable name): invalid TOML, an
    /// unknown key or variable, an invalid value, or `psk` and `psk_file`
    /// both set.
    pub fn build(self) -> Result<Resolved, ConfigError> {
        let mut config = Config::default();
        for (path, contents) in &self.files {
            apply_file(&mut config, path, contents)?;
        }

        let mut env = self.env;
        env.sort_by(|a, b| a.0.cmp(&b.0));
        let mut ignored_env = Vec::new();
        for (var, value) in env {
            if self.no_env {
                ignored_env.push(IgnoredEnv {
                    var,
                    reason: IgnoreReason::EnvDisabled,
                });
                continue;
            }
            let Some(key) = Key::from_env_var(&var) else {
                return Err(ConfigError::UnknownEnv {
                    suggestion: Key::suggest_env(&var),
                    var,
                });
            };
            if self.pins.contains(&key) {
                ignored_env.push(IgnoredEnv {
                    var,
                    reason: IgnoreReason::Pinned { key: key.name() },
                });
                continue;
            }
            assign(&mut config, key, Input::Text(&value), Origin::Env { var })?;
        }

        for Override { key, value, source } in self.overrides {
            assign(
                &mut config,
                key,
                Input::Text(&value),
                Origin::Override { source },
            )?;
        }

        check_exclusive(&config)?;
        Ok(Resolved {
            config,
            ignored_env,
        })
    }
}

/// Refuses keys that exclude each other.
fn check_exclusive(config: &Config) -> Result<(), ConfigError> {
    if config.psk.value.is_some() && config.psk_file.value.is_some() {
        return Err(ConfigError::Conflict {
            key: Key::Psk.name(),
            origin: config.psk.origin.clone(),
            other: Key::PskFile.name(),
            other_origin: config.psk_file.origin.clone(),
        });
    }
    Ok(())
}

impl fmt::Debug for ConfigBuilder {
    /// Shows the layers without any value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<&str> = self.files.iter().map(|(p, _)| p.as_str()).collect();
        let env: Vec<&str> = self.env.iter().map(|(n, _)| n.as_str()).collect();
        let pins: Vec<&str> = self.pins.iter().map(|k| k.name()).collect();
        let overrides: Vec<String> = self
            .overrides
            .iter()
            .map(|o| format!("{} ({})", o.key.name(), o.source))
            .collect();
        f.debug_struct("ConfigBuilder")
            .field("files", &files)
            .field("env", &env)
            .field("no_env", &self.no_env)
            .field("pins", &pins)
            .field("overrides", &overrides)
            .finish()
    }
}
