//! `sigil config show`: every resolved value with its origin; the layers
//! of the configuration, which every command resolves the same way.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use sigil_core::config::{Config, ConfigError, IgnoreReason, Resolved};
use zeroize::Zeroizing;

use crate::error::{Failure, plain_io_error};
use crate::output;

/// The most that is read from a config file.
const MAX_CONFIG_FILE: u64 = 1024 * 1024;

/// `sigil config` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print every resolved value (secrets redacted), optionally with its origin
    Show(ShowArgs),
    /// Check a configuration and the files it names; exit 0 if usable, 2 if not
    Check(crate::check::CheckArgs),
}

/// Arguments of `sigil config show`.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// Show where each value came from (default, file:line, env VAR, flag)
    #[arg(long)]
    origin: bool,
    /// Ignore the environment entirely (ignored SIGIL_* variables are reported)
    #[arg(long)]
    no_env: bool,
    /// A TOML config file
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Runs a `sigil config` subcommand.
pub(crate) fn run(cmd: &ConfigCommand) -> Result<(), Failure> {
    match cmd {
        ConfigCommand::Show(args) => show(args),
        ConfigCommand::Check(args) => crate::check::check(args),
    }
}

fn show(args: &ShowArgs) -> Result<(), Failure> {
    let resolved = resolve(args.config.as_deref(), args.no_env)?;
    let entries = resolved.config.entries();
    let lines: Vec<String> = entries.iter().map(ToString::to_string).collect();
    let width = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (line, entry) in lines.iter().zip(&entries) {
        if args.origin {
            text.push_str(&format!("{line:<width$}  # {}\n", entry.origin));
        } else {
            text.push_str(line);
            text.push('\n');
        }
    }
    output::stdout(&text)
}

/// Resolves the configuration from the builtin defaults, the file (if any)
/// and the process environment (unless `no_env`), and reports ignored
/// environment variables on stderr.
pub(crate) fn resolve(file: Option<&Path>, no_env: bool) -> Result<Resolved, Failure> {
    let resolved = Sources::load(file, no_env)?.resolve(&[])?;
    report_ignored(&resolved);
    Ok(resolved)
}

/// An override from the command line: key, value (as in an environment
/// variable) and the flag it came from, shown as its origin.
pub(crate) struct Override<'a> {
    pub(crate) key: &'a str,
    pub(crate) value: &'a str,
    pub(crate) flag: &'a str,
}

/// The layers below the command line, read once, so that a command can
/// resolve them more than once with different overrides (`sigil serve
/// --demo` decides on one after seeing whether `authorized_keys` is set).
pub(crate) struct Sources {
    file: Option<(String, Zeroizing<String>)>,
    env: Vec<(String, Zeroizing<String>)>,
    no_env: bool,
}

impl Sources {
    /// Reads the config file (if any) and the `SIGIL_*` environment.
    pub(crate) fn load(file: Option<&Path>, no_env: bool) -> Result<Sources, Failure> {
        let file = match file {
            Some(path) => Some((path.display().to_string(), read_config_file(path)?)),
            None => None,
        };
        Ok(Sources {
            file,
            env: sigil_env()?,
            no_env,
        })
    }

    /// Resolves the layers with these overrides on top (later ones win).
    /// Ignored environment variables are not reported: see [`report_ignored`].
    pub(crate) fn resolve(&self, overrides: &[Override<'_>]) -> Result<Resolved, Failure> {
        let mut builder = Config::builder();
        if let Some((name, contents)) = &self.file {
            builder = builder.file(name.clone(), contents);
        }
        builder = builder
            .env(self.env.iter().map(|(n, v)| (n.clone(), String::clone(v))))
            .no_env(self.no_env);
        for o in overrides {
            builder = builder
                .set(o.key, o.value, o.flag)
                .map_err(config_failure)?;
        }
        builder.build().map_err(config_failure)
    }
}

/// Reports on stderr the environment variables that were not applied.
pub(crate) fn report_ignored(resolved: &Resolved) {
    let mut stderr = io::stderr().lock();
    for ignored in &resolved.ignored_env {
        let _ = match ignored.reason {
            IgnoreReason::EnvDisabled => {
                writeln!(stderr, "sigil: ignored {} (--no-env)", ignored.var)
            }
            _ => writeln!(stderr, "sigil: {ignored}"),
        };
    }
}

/// The process environment's `SIGIL_*` variables. Other variables are not
/// looked at (they may not even be UTF-8); a `SIGIL_*` one that is not UTF-8
/// is a configuration error.
fn sigil_env() -> Result<Vec<(String, Zeroizing<String>)>, Failure> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        if !name.as_encoded_bytes().starts_with(b"SIGIL_") {
            continue;
        }
        let name = utf8(name, "the name of an environment variable")?;
        let value = utf8(value, &format!("the value of {name}"))?;
        vars.push((name, Zeroizing::new(value)));
    }
    Ok(vars)
}

fn utf8(text: OsString, what: &str) -> Result<String, Failure> {
    text.into_string()
        .map_err(|_| Failure::usage(format_args!("{what} is not valid UTF-8")))
}

/// Reads a config file, bounded; an unreadable file is a configuration
/// error (exit 2), as the file is part of the configuration.
fn read_config_file(path: &Path) -> Result<Zeroizing<String>, Failure> {
    let unreadable = |err: &io::Error| {
        Failure::usage(format_args!(
            "cannot read config file {}: {}",
            path.display(),
            plain_io_error(err)
        ))
    };
    let file = File::open(path).map_err(|e| unreadable(&e))?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(Failure::usage(format_args!(
            "config file {} is too long (over {} KiB)",
            path.display(),
            MAX_CONFIG_FILE / 1024
        )));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::usage(format_args!(
            "config file {} is not UTF-8 text",
            path.display()
        ))
    })?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// A configuration error (exit 2), with what to do about it.
pub(crate) fn config_failure(err: ConfigError) -> Failure {
    let hint = match &err {
        ConfigError::UnknownEnv { .. } => {
            Some("unset it, or run with --no-env to ignore the environment")
        }
        ConfigError::UnknownKey { .. } => Some("the keys are listed by `sigil config show`"),
        _ => None,
    };
    let failure = Failure::usage(err);
    match hint {
        Some(hint) => failure.hint(hint),
        None => failure,
    }
}
