//! Layered configuration with provenance.
//!
//! A [`Config`] is resolved from four layers, lowest first:
//!
//! 1. builtin defaults;
//! 2. TOML files ([`ConfigBuilder::file`]);
//! 3. the environment: `SIGIL_` + the key upper-cased, `__` for the `.` of a
//!    table (`SIGIL_PORT`, `SIGIL_TLS__CERT`) ([`ConfigBuilder::env`]);
//! 4. overrides from code or the command line ([`ConfigBuilder::set`]).
//!
//! This module reads no file and no environment itself: the caller passes
//! file contents and the environment's `(name, value)` pairs in, so the same
//! code runs in a browser.
//!
//! The environment can be locked out entirely ([`ConfigBuilder::no_env`],
//! the CLI's `--no-env`) or kept from single keys ([`ConfigBuilder::pin`]);
//! variables ignored either way are reported in [`Resolved::ignored_env`],
//! never silently dropped. Every value knows its [`Origin`]. Unknown keys,
//! unknown `SIGIL_*` variables and ill-typed values are [`ConfigError`]s that
//! name the key and its source and suggest the nearest known key. The
//! pre-shared key `psk` is a [`SymmetricKey`]: it has no `Debug`, shows as
//! `<redacted>`, and is never part of an error.
//!
//! ```
//! use sigil_core::config::{Config, Origin};
//!
//! let file = "port = 9000\n[tls]\ncert = \"server.crt\"\n";
//! let env = [("SIGIL_HOST".to_string(), "0.0.0.0".to_string())];
//! let resolved = Config::builder()
//!     .file("sigil.toml", file)
//!     .env(env)
//!     .set("port", "9001", "--port")?
//!     .build()?;
//! let config = &resolved.config;
//! assert_eq!(config.port.value, 9001);
//! assert_eq!(config.port.origin.to_string(), "--port");
//! assert_eq!(config.host.origin, Origin::Env { var: "SIGIL_HOST".into() });
//! assert_eq!(config.tls.cert.origin.to_string(), "sigil.toml:3");
//! # Ok::<(), sigil_core::config::ConfigError>(())
//! ```

mod authorized_keys;
mod builder;
mod error;
mod fields;
mod file;
mod key;
mod net;
mod origin;
mod store;
mod value;

use std::fmt;
use std::path::PathBuf;

pub use authorized_keys::{AuthorizedKey, parse_authorized_key_entries, parse_authorized_keys};
pub use builder::{ConfigBuilder, Resolved};
pub use error::ConfigError;
pub use net::{IpNet, IpNetError, RevokedSessions};
pub use origin::{IgnoreReason, IgnoredEnv, Origin};
pub use store::{RedisUrl, ReplayStoreLocation};

use crate::keys::{PublicKey, SymmetricKey};
use key::Key;

/// The names of every configuration key, in the order of [`Config::entries`]:
/// top-level keys first, then the `tls` table's keys, dotted.
pub const KEYS: [&str; Key::ALL.len()] = {
    let mut names = [""; Key::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = Key::ALL[i].name();
        i += 1;
    }
    names
};

/// Text shown in place of a secret value.
pub const REDACTED: &str = "<redacted>";

/// A resolved value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The value.
    pub value: T,
    /// The layer that set it last.
    pub origin: Origin,
}

impl<T> Setting<T> {
    /// A builtin default.
    fn default_value(value: T) -> Setting<T> {
        Setting {
            value,
            origin: Origin::Default,
        }
    }
}

/// The resolved configuration: every key of the design, typed, each with its
/// [`Origin`].
///
/// Make one with [`Config::builder`]; [`Config::default`] holds the builtin
/// defaults. `Debug` shows the same text as [`Config::entries`], so the
/// secret `psk` shows as `<redacted>`.
#[derive(Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address the server binds (`host`, default `127.0.0.1`).
    pub host: Setting<String>,
    /// Port the server binds (`port`, default 7070; 0 picks a free port).
    pub port: Setting<u16>,
    /// The server's secret key files (`server_key`: one path, or a list
    /// while rotating keys). The first is the key the server advertises;
    /// clients that pinned any of the others are still served. Empty when
    /// unset.
    pub server_key: Setting<Vec<PathBuf>>,
    /// The client's secret key file (`client_key`).
    pub client_key: Setting<Option<PathBuf>>,
    /// The server's public keys, pinned by clients (`server_public_key`:
    /// one key, or a list while the server rotates its key; a client tries
    /// them in order). Empty when unset.
    pub server_public_key: Setting<Vec<PublicKey>>,
    /// The file of client public keys the server accepts (`authorized_keys`).
    pub authorized_keys: Setting<Option<PathBuf>>,
    /// Accept any client key (`allow_any_client`, default false).
    pub allow_any_client: Setting<bool>,
    /// The pre-shared key bound into the handshake (`psk`). Secret.
    pub psk: Setting<Option<SymmetricKey>>,
    /// A file holding the pre-shared key (`psk_file`); excludes `psk`.
    pub psk_file: Setting<Option<PathBuf>>,
    /// Bytes both sides bind into the handshake (`prologue`, default empty).
    pub prologue: Setting<String>,
    /// Largest transport payload in bytes (`max_message_size`, default 1 MiB).
    pub max_message_size: Setting<u64>,
    /// Largest handshake payload in bytes (`max_handshake_payload`, default 4 KiB).
    pub max_handshake_payload: Setting<u64>,
    /// Time allowed for a handshake (`handshake_timeout_ms`, default 10 s).
    pub handshake_timeout_ms: Setting<u64>,
    /// Time an idle connection is kept (`idle_timeout_ms`, default 5 min).
    pub idle_timeout_ms: Setting<u64>,
    /// Deadline on every send, on the close handshake and on TLS accept
    /// (`write_timeout_ms`, default 10 s).
    pub write_timeout_ms: Setting<u64>,
    /// An asynchronous call running longer is cancelled and answered
    /// `timeout` (`call_timeout_ms`, default 30 s).
    pub call_timeout_ms: Setting<u64>,
    /// Most connections a server holds at once (`max_connections`, default 1024).
    pub max_connections: Setting<u64>,
    /// Connections that are not yet sessions, from TCP accept on
    /// (`max_pending_handshakes`, default 256).
    pub max_pending_handshakes: Setting<u64>,
    /// Pending connections from one address; IPv6 counts per /64
    /// (`max_pending_per_ip`, default 8).
    pub max_pending_per_ip: Setting<u64>,
    /// Most calls in flight on one connection (`max_inflight`, default 64).
    pub max_inflight: Setting<u64>,
    /// Most streams open on one connection; they do not count among
    /// `max_inflight` (`max_streams`, default 16; 0: no streams).
    pub max_streams: Setting<u64>,
    /// Items a client lets a stream send before its consumer takes them:
    /// the stream's window (`stream_window`, default 16).
    pub stream_window: Setting<u64>,
    /// Largest accepted difference between a hello's timestamp and the
    /// server's clock (`max_clock_skew_ms`, default 60 s).
    pub max_clock_skew_ms: Setting<u64>,
    /// Entries of the handshake replay cache (`replay_cache_capacity`, default 262144).
    pub replay_cache_capacity: Setting<u64>,
    /// Where the replay cache lives (`replay_store`, default `memory`: the
    /// server's own, right for one server only); servers behind one load
    /// balancer share one, `redis://HOST[:PORT][/DB]`.
    pub replay_store: Setting<ReplayStoreLocation>,
    /// How long a hello waits for a shared replay store's answer before it
    /// is refused as busy (`replay_store_timeout_ms`, default 250).
    pub replay_store_timeout_ms: Setting<u64>,
    /// Hellos a second from one address, checked before any X25519 work
    /// while more than half of `max_pending_handshakes` are pending
    /// (`handshake_rate_per_ip`, default 20).
    pub handshake_rate_per_ip: Setting<u64>,
    /// Authenticated hellos a second per client key, or per address under
    /// `allow_any_client` (`handshake_rate_per_key`, default 100).
    pub handshake_rate_per_key: Setting<u64>,
    /// Host names accepted in the `Host` header of every HTTP request
    /// (`allowed_hosts`; unset: the configured host, plus `localhost`,
    /// `127.0.0.1` and `[::1]` on a loopback bind; `*` allows any).
    pub allowed_hosts: Setting<Option<Vec<String>>>,
    /// Origins accepted in the `Origin` header of any HTTP request that has
    /// one (`allowed_origins`; unset: the server's own origin only; `*`
    /// allows any).
    pub allowed_origins: Setting<Option<Vec<String>>>,
    /// Peers whose `X-Forwarded-For` header names the client: reverse
    /// proxies in front of the server (`trusted_proxies`, default none).
    pub trusted_proxies: Setting<Vec<IpNet>>,
    /// The server pings a session that sent and received nothing for this
    /// long, so that proxies keep it open; pings do not count as activity
    /// for `idle_timeout_ms` (`ping_interval_ms`, default 30 s; 0: no pings).
    pub ping_interval_ms: Setting<u64>,
    /// What a reload of `authorized_keys` does to open sessions of a key it
    /// removed (`revoked_sessions`, default `close`).
    pub revoked_sessions: Setting<RevokedSessions>,
    /// Where the server serves Prometheus metrics at `/metrics` and its
    /// health at `/healthz`, as `HOST:PORT` (`metrics_addr`; unset: off; a
    /// bare port listens on 127.0.0.1).
    pub metrics_addr: Setting<Option<String>>,
    /// Log level (`log`, default `info`).
    pub log: Setting<LogLevel>,
    /// The `[tls]` table.
    pub tls: TlsConfig,
}

/// The `[tls]` table of a [`Config`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The server's certificate chain, PEM (`tls.cert`).
    pub cert: Setting<Option<PathBuf>>,
    /// The server's TLS private key, PEM (`tls.key`).
    pub key: Setting<Option<PathBuf>>,
    /// CA certificates that client certificates must chain to (`tls.client_ca`).
    pub client_ca: Setting<Option<PathBuf>>,
    /// Refuse clients without a certificate (`tls.require_client_cert`, default false).
    pub require_client_cert: Setting<bool>,
    /// Client: CA certificates (PEM) to trust for `wss://`, instead of the
    /// built-in public roots (`tls.ca`).
    pub ca: Setting<Option<PathBuf>>,
    /// Client: the certificate chain (PEM) shown to servers that ask for
    /// one, mutual TLS (`tls.client_cert`).
    pub client_cert: Setting<Option<PathBuf>>,
    /// Client: the private key (PEM) of `tls.client_cert` (`tls.client_key`;
    /// a secret file: refused if group or others can read it).
    pub client_key: Setting<Option<PathBuf>>,
    /// Client: the name the server's certificate must be valid for, instead
    /// of the URL's host (`tls.server_name`).
    pub server_name: Setting<Option<String>>,
    /// Client: serial numbers (hex) the server's certificate must have one
    /// of (`tls.server_serial`). Empty when unset: any serial.
    pub server_serial: Setting<Vec<String>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            host: Setting::default_value("127.0.0.1".to_owned()),
            port: Setting::default_value(7070),
            server_key: Setting::default_value(Vec::new()),
            client_key: Setting::default_value(None),
            server_public_key: Setting::default_value(Vec::new()),
            authorized_keys: Setting::default_value(None),
            allow_any_client: Setting::default_value(false),
            psk: Setting::default_value(None),
            psk_file: Setting::default_value(None),
            prologue: Setting::default_value(String::new()),
            max_message_size: Setting::default_value(1024 * 1024),
            max_handshake_payload: Setting::default_value(4096),
            handshake_timeout_ms: Setting::default_value(10_000),
            idle_timeout_ms: Setting::default_value(300_000),
            write_timeout_ms: Setting::default_value(10_000),
            call_timeout_ms: Setting::default_value(30_000),
            max_connections: Setting::default_value(1024),
            max_pending_handshakes: Setting::default_value(256),
            max_pending_per_ip: Setting::default_value(8),
            max_inflight: Setting::default_value(64),
            max_streams: Setting::default_value(16),
            stream_window: Setting::default_value(16),
            max_clock_skew_ms: Setting::default_value(60_000),
            replay_cache_capacity: Setting::default_value(262_144),
            replay_store: Setting::default_value(ReplayStoreLocation::Memory),
            replay_store_timeout_ms: Setting::default_value(250),
            handshake_rate_per_ip: Setting::default_value(20),
            handshake_rate_per_key: Setting::default_value(100),
            allowed_hosts: Setting::default_value(None),
            allowed_origins: Setting::default_value(None),
            trusted_proxies: Setting::default_value(Vec::new()),
            ping_interval_ms: Setting::default_value(30_000),
            revoked_sessions: Setting::default_value(RevokedSessions::Close),
            metrics_addr: Setting::default_value(None),
            log: Setting::default_value(LogLevel::Info),
            tls: TlsConfig {
                cert: Setting::default_value(None),
                key: Setting::default_value(None),
                client_ca: Setting::default_value(None),
                require_client_cert: Setting::default_value(false),
                ca: Setting::default_value(None),
                client_cert: Setting::default_value(None),
                client_key: Setting::default_value(None),
                server_name: Setting::default_value(None),
                server_serial: Setting::default_value(Vec::new()),
            },
        }
    }
}

impl Config {
    /// Starts resolving a configuration from the builtin defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder::default()
    }

    /// Every key with its value as text and its origin, in the order of
    /// [`KEYS`] (top-level keys as the design lists them, then `tls.*`), for
    /// `sigil config show`.
    pub fn entries(&self) -> Vec<Entry> {
        Key::ALL
            .into_iter()
            .map(|key| {
                let view = self.view(key);
                Entry {
                    key: key.name(),
                    display_value: view.display_value(),
                    is_set: view.is_set(),
                    is_secret: key.is_secret(),
                    origin: view.origin().clone(),
                }
            })
            .collect()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for entry in self.entries() {
            map.entry(
                &entry.key,
                &format_args!("{} ({})", entry.display_value, entry.origin),
            );
        }
        map.finish()
    }
}

/// One key of a resolved [`Config`] as `sigil config show` prints it.
///
/// `Display` gives `key = value`, a line of TOML when the value is set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The key, dotted for a table (`tls.cert`).
    pub key: &'static str,
    /// The value in TOML form (strings and paths quoted, numbers and
    /// booleans bare); [`REDACTED`] for a secret that is set; `(unset)` for
    /// an optional key without a value.
    pub display_value: String,
    /// Whether the key has a value (optional keys may have none).
    pub is_set: bool,
    /// Whether the value is secret (and so redacted).
    pub is_secret: bool,
    /// Where the value came from.
    pub origin: Origin,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}", self.key, self.display_value)
    }
}

/// How much the server logs (`log`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    Warn,
    /// The default: errors, warnings and notable events.
    #[default]
    Info,
    /// Also details useful when debugging.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    /// Every level, quietest first.
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The level's name as written in a config: `error`, `warn`, `info`,
    /// `debug` or `trace`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Reads a level's name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Option<LogLevel> {
        LogLevel::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
