//! `sigil config show` (waits for `sigil_core::config`).

use clap::Subcommand;

use crate::error::Failure;

/// `sigil config` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print every resolved value (secrets redacted)
    Show,
}

/// Runs a `sigil config` subcommand.
pub(crate) fn run(_cmd: &ConfigCommand) -> Result<(), Failure> {
    Err(Failure::runtime("not yet"))
}
