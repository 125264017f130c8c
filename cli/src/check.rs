//! `sigil config check`: is this configuration usable? For CI and deploy
//! scripts: it resolves the configuration as `sigil serve` and `sigil call`
//! do, then reads every file it names (keys, authorized_keys, the psk file,
//! certificates) the way the server or the client would, without listening
//! or connecting. Exit 0 if all is well, 2 with the first problem if not.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use sigil_client::{ClientError, ClientOptions};
use sigil_core::config::Config;
use sigil_server::ServerSettings;

use crate::config::resolve;
use crate::error::Failure;
use crate::output;

/// Arguments of `sigil config check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// A TOML config file
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Ignore the environment entirely (ignored SIGIL_* variables are reported)
    #[arg(long)]
    no_env: bool,
    /// Check it as a server's configuration [default: if it sets a server key]
    #[arg(long, conflicts_with = "client")]
    server: bool,
    /// Check it as a client's configuration [default: if it sets a client key]
    #[arg(long)]
    client: bool,
}

/// Which of the server's keys are set: with one of them, a configuration
/// is a server's.
fn has_server_keys(c: &Config) -> bool {
    !c.server_key.value.is_empty()
        || c.authorized_keys.value.is_some()
        || c.allow_any_client.value
        || c.tls.cert.value.is_some()
        || c.tls.key.value.is_some()
        || c.tls.client_ca.value.is_some()
}

/// Which of the client's keys are set.
fn has_client_keys(c: &Config) -> bool {
    c.client_key.value.is_some()
        || !c.server_public_key.value.is_empty()
        || c.tls.ca.value.is_some()
        || c.tls.client_cert.value.is_some()
        || c.tls.client_key.value.is_some()
        || c.tls.server_name.value.is_some()
        || !c.tls.server_serial.value.is_empty()
}

/// `sigil config check`.
pub(crate) fn check(args: &CheckArgs) -> Result<(), Failure> {
    let resolved = resolve(args.config.as_deref(), args.no_env)?;
    let config = &resolved.config;
    let server = args.server || (!args.client && has_server_keys(config));
    let client = args.client || (!args.server && has_client_keys(config));
    let mut text = String::new();
    if server {
        let settings = ServerSettings::from_config(config)
            .map_err(|e| Failure::usage(format_args!("server settings: {e}")))?;
        let keys = settings.public_keys();
        let _ = write!(
            text,
            "server settings: ok; public key {}",
            keys[0].fingerprint()
        );
        if settings.has_ephemeral_key() {
            text.push_str(" (ephemeral: no server_key)");
        }
        for key in &keys[1..] {
            let _ = write!(text, ", also serving {}", key.fingerprint());
        }
        text.push('\n');
    }
    if client {
        let options = ClientOptions::from_config(config).map_err(|e| {
            let text = match e {
                ClientError::Config(text) => text,
                other => other.to_string(),
            };
            Failure::usage(format_args!("client settings: {text}"))
        })?;
        let pinned: Vec<String> = options
            .server_keys()
            .iter()
            .map(|k| k.fingerprint())
            .collect();
        let _ = writeln!(text, "client settings: ok; pins {}", pinned.join(", "));
    }
    if !server && !client {
        text.push_str(
            "values: ok (no server or client keys are set: give --server or --client to \
             check what a server or a client needs)\n",
        );
    }
    output::stdout(&text)
}
