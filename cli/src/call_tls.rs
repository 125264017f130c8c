//! The TLS flags of `sigil call`: the roots to trust for `wss://`, and the
//! client certificate for servers that require one (mutual TLS). Each is an
//! override of its config key; the private key is only ever a path.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::Failure;

/// TLS options of `sigil call`.
#[derive(Debug, Args)]
pub(crate) struct TlsArgs {
    /// CA certificates (PEM) to trust for wss://, instead of the public roots [default: config tls.ca]
    #[arg(long, value_name = "PATH")]
    ca: Option<PathBuf>,
    /// Your TLS client certificate (PEM), for a server that requires one [default: config tls.client_cert]
    #[arg(long, value_name = "PATH")]
    client_cert: Option<PathBuf>,
    /// The private key file (PEM, mode 0600) of --client-cert [default: config tls.client_key]
    #[arg(long, value_name = "PATH")]
    client_cert_key: Option<PathBuf>,
}

/// An override that owns its value: config key, value, flag.
pub(crate) type OwnedOverride = (&'static str, String, &'static str);

impl TlsArgs {
    /// The flags given, as overrides of their config keys.
    pub(crate) fn overrides(&self) -> Result<Vec<OwnedOverride>, Failure> {
        let flags = [
            ("tls.ca", &self.ca, "--ca"),
            ("tls.client_cert", &self.client_cert, "--client-cert"),
            ("tls.client_key", &self.client_cert_key, "--client-cert-key"),
        ];
        let mut overrides = Vec::new();
        for (key, path, flag) in flags {
            if let Some(path) = path {
                overrides.push((key, path_arg(flag, path)?.to_owned(), flag));
            }
        }
        Ok(overrides)
    }
}

/// A path given with `flag`, as text: the configuration holds UTF-8 only.
pub(crate) fn path_arg<'a>(flag: &str, path: &'a Path) -> Result<&'a str, Failure> {
    path.to_str().ok_or_else(|| {
        Failure::usage(format_args!(
            "the {flag} path {} is not valid UTF-8",
            path.display()
        ))
        .hint("rename the file, or name it in a config file")
    })
}
