//! The settings for operating a server: which files it reloads, where it
//! serves metrics, which proxies it trusts, and what a reload does to the
//! sessions of removed keys.

use std::path::PathBuf;

use sigil_core::config::{Config, IpNet, RevokedSessions};

use crate::settings::ServerSettings;

/// What [`ServerSettings`] holds for operating the server.
#[derive(Clone, Default)]
pub(crate) struct Operating {
    /// `HOST:PORT` of the metrics endpoint; `None`: off.
    pub(crate) metrics_addr: Option<String>,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) revoked_sessions: RevokedSessions,
    /// The files the settings were read from, reread by a reload.
    pub(crate) files: ReloadFiles,
}

/// The files a reload rereads.
#[derive(Clone, Default)]
pub(crate) struct ReloadFiles {
    /// `authorized_keys` (not under `allow_any_client`).
    pub(crate) authorized_keys: Option<PathBuf>,
    pub(crate) tls: Option<TlsFiles>,
}

/// The `tls.*` files and switch.
#[derive(Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_ca: Option<PathBuf>,
    pub(crate) require_client_cert: bool,
}

impl TlsFiles {
    /// Every file, for watching.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cert, &self.key].into_iter().chain(&self.client_ca)
    }
}

impl Operating {
    pub(crate) fn from_config(config: &Config) -> Operating {
        let authorized_keys = if config.allow_any_client.value {
            None
        } else {
            config.authorized_keys.value.clone()
        };
        let tls = match (&config.tls.cert.value, &config.tls.key.value) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: config.tls.client_ca.value.clone(),
                require_client_cert: config.tls.require_client_cert.value,
            }),
            _ => None,
        };
        Operating {
            metrics_addr: config.metrics_addr.value.clone(),
            trusted_proxies: config.trusted_proxies.value.clone(),
            revoked_sessions: config.revoked_sessions.value,
            files: ReloadFiles {
                authorized_keys,
                tls,
            },
        }
    }
}

impl ServerSettings {
    /// Serves Prometheus metrics at `http://ADDR/metrics` and the server's
    /// health at `/healthz` (`addr`: `HOST:PORT`; port 0 picks a free one,
    /// see [`RunningServer::metrics_addr`](crate::RunningServer::metrics_addr)).
    /// The metrics name no client, key or address: see the book's
    /// "Operating sigil" chapter for each one.
    pub fn with_metrics_addr(mut self, addr: impl Into<String>) -> Self {
        self.operating.metrics_addr = Some(addr.into());
        self
    }

    /// Takes the client's address from `X-Forwarded-For` on connections
    /// from these networks (reverse proxies), and only from them; see
    /// [`CallContext::peer_addr`](crate::CallContext::peer_addr).
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpNet>) -> Self {
        self.operating.trusted_proxies = proxies;
        self
    }

    /// What a change of the authorized keys does to open sessions of a key
    /// it removes (default: close them).
    pub fn with_revoked_sessions(mut self, policy: RevokedSessions) -> Self {
        self.operating.revoked_sessions = policy;
        self
    }
}
