//! What a server is built from: keys, client policy, limits, TLS, the hook.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sigil_core::config::{Config, ReplayStoreLocation};
use sigil_core::handshake::{ClientAuth, Limits};
use sigil_core::keyfile::{self, KeyFileError};
use sigil_core::keys::{PublicKey, SecretKey, SymmetricKey};
use sigil_core::rand::OsRandom;

use crate::operating::Operating;
use crate::replay_store::{ReplayStore, StoreChoice};
use crate::static_files::StaticFiles;
use crate::tls::{PeerCertificate, TlsSettings};

/// Why a server could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A key file named by the config is unusable.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The config is inconsistent (the message says what to change).
    #[error("{0}")]
    Config(String),
    /// Neither `authorized_keys` nor `allow_any_client` is set: no client
    /// could connect.
    #[error(
        "no client could connect: set `authorized_keys` to a file of client public keys, or `allow_any_client = true`"
    )]
    NoClientPolicy,
    /// A TLS certificate, key or CA could not be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The random source failed.
    #[error("the system random number generator failed")]
    Random,
    /// An object or method could not be registered.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
}

/// What the application's handshake hook sees of a client.
#[non_exhaustive]
pub struct HandshakeInfo<'a> {
    /// The client's static public key (authenticated, and authorised by the
    /// server's policy).
    pub client_key: &'a PublicKey,
    /// The client's handshake payload (JSON text), if any.
    pub payload: Option<&'a str>,
    /// The client's address.
    pub peer_addr: SocketAddr,
    /// Under TLS with client certificates: the client's certificate.
    pub certificate: Option<&'a PeerCertificate>,
}

/// The hook's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookDecision {
    /// Accept, answering with this payload (one JSON value) or none.
    Accept(Option<String>),
    /// Refuse with this reason (sent to the client with code 2).
    Refuse(String),
}

/// The application's handshake hook.
pub type Hook = Arc<dyn Fn(&HandshakeInfo<'_>) -> HookDecision + Send + Sync>;

/// Limits of a server, beyond those of the handshake itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// From TCP accept to an established session (TLS, HTTP upgrade and the
    /// sigil/1 handshake together).
    pub handshake_timeout: Duration,
    /// A session with no message from the client and no call in flight for
    /// this long is closed. Pings and pongs do not count as messages.
    pub idle_timeout: Duration,
    /// Deadline on every send, on the WebSocket close handshake and on TLS
    /// accept: a peer that does not read is closed.
    pub write_timeout: Duration,
    /// An asynchronous call running longer is cancelled (its future is
    /// dropped) and answered `timeout`.
    pub call_timeout: Duration,
    /// Sessions (authenticated connections) at once; a handshake that
    /// would exceed it is refused as busy (code 3).
    pub max_connections: usize,
    /// Connections that are not yet sessions, from TCP accept on; more are
    /// answered HTTP 503 and closed.
    pub max_pending_handshakes: usize,
    /// Pending connections from one address (IPv6: one /64); more are
    /// answered HTTP 503 and closed.
    pub max_pending_per_ip: usize,
    /// Asynchronous calls in flight per connection; more are answered `busy`.
    pub max_inflight: usize,
    /// Streams open per connection; more are answered `busy` (0: streams
    /// are refused). They do not count among `max_inflight`.
    pub max_streams: usize,
    /// Entries of the replay cache (see `sigil_core::replay`).
    pub replay_cache_capacity: usize,
    /// Hellos a second from one address, checked before any X25519 work
    /// while more than half of `max_pending_handshakes` are pending.
    pub handshake_rate_per_ip: u32,
    /// Authenticated hellos a second per client key (per address under
    /// `allow_any_client`).
    pub handshake_rate_per_key: u32,
    /// How long a hello waits for the replay store's verdict; without one
    /// it is refused as busy.
    pub replay_store_timeout: Duration,
    /// A session that sent and received no frame for this long is sent a
    /// WebSocket ping, so that proxies keep it open (`None`: no pings).
    /// Pings and pongs never count as activity for `idle_timeout`.
    pub ping_interval: Option<Duration>,
}

impl Default for ServerLimits {
    fn default() -> ServerLimits {
        ServerLimits {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            write_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_pending_handshakes: 256,
            max_pending_per_ip: 8,
            max_inflight: 64,
            max_streams: 16,
            replay_cache_capacity: 262_144,
            handshake_rate_per_ip: 20,
            handshake_rate_per_key: 100,
            replay_store_timeout: Duration::from_millis(250),
            ping_interval: Some(Duration::from_secs(30)),
        }
    }
}

/// Everything a [`Server`](crate::Server) is built from.
pub struct ServerSettings {
    /// The server's static keys: the first is advertised, the others are
    /// kept while clients move off them (rotation). Never empty.
    pub(crate) keys: Vec<SecretKey>,
    /// True when the key was made at startup because none was configured.
    pub(crate) ephemeral_key: bool,
    pub(crate) auth: ClientAuth,
    pub(crate) psk: Option<SymmetricKey>,
    pub(crate) prologue: Vec<u8>,
    pub(crate) limits: Limits,
    pub(crate) server_limits: ServerLimits,
    pub(crate) tls: Option<TlsSettings>,
    pub(crate) hook: Option<Hook>,
    pub(crate) static_files: Option<StaticFiles>,
    pub(crate) allowed_hosts: Option<Vec<String>>,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) client_names: HashMap<PublicKey, String>,
    pub(crate) replay_store: StoreChoice,
    /// Reloads, metrics, proxies (see `operating`).
    pub(crate) operating: Operating,
}

impl ServerSettings {
    /// Settings with a key and a client policy, and default limits.
    pub fn new(key: SecretKey, auth: ClientAuth) -> ServerSettings {
        ServerSettings {
            keys: vec![key],
            ephemeral_key: false,
            auth,
            psk: None,
            prologue: Vec::new(),
            limits: Limits::default(),
            server_limits: ServerLimits::default(),
            tls: None,
            hook: None,
            static_files: None,
            allowed_hosts: None,
            allowed_origins: None,
            client_names: HashMap::new(),
            replay_store: StoreChoice::default(),
            operating: Operating::default(),
        }
    }

    /// Settings from a resolved [`Config`]: reads the `server_key` files
    /// (the first is advertised; see [`with_additional_key`](Self::with_additional_key)),
    /// or makes an ephemeral key if none is set (see
    /// [`has_ephemeral_key`](Self::has_ephemeral_key)),
    /// `authorized_keys` / `allow_any_client`, `psk` / `psk_file`,
    /// `prologue`, the limits, `replay_store` (opened when the server binds:
    /// a Redis store needs the cargo feature `redis`) and the `tls.*` files.
    ///
    /// With neither `authorized_keys` nor `allow_any_client` no client could
    /// connect, which is an error.
    pub fn from_config(config: &Config) -> Result<ServerSettings, SetupError> {
        let ephemeral_key = config.server_key.value.is_empty();
        let mut keys: Vec<SecretKey> = Vec::new();
        if ephemeral_key {
            keys.push(SecretKey::generate(&mut OsRandom).map_err(|_| SetupError::Random)?);
        }
        for path in &config.server_key.value {
            let key = keyfile::read_secret_key(path)?;
            // The same key listed twice is held once.
            if keys.iter().all(|k| k.public_key() != key.public_key()) {
                keys.push(key);
            }
        }
        let mut client_names = HashMap::new();
        let auth = match (&config.authorized_keys.value, config.allow_any_client.value) {
            (_, true) => ClientAuth::AllowAny,
            (Some(path), false) => {
                let entries = keyfile::read_authorized_key_entries(path)?;
                let keys = entries.iter().map(|e| e.key).collect();
                client_names.extend(entries.into_iter().filter_map(|e| Some((e.key, e.name?))));
                ClientAuth::Keys(keys)
            }
            (None, false) => return Err(SetupError::NoClientPolicy),
        };
        let psk = match (&config.psk.value, &config.psk_file.value) {
            (Some(psk), _) => Some(psk.clone()),
            (None, Some(path)) => Some(keyfile::read_psk(path)?),
            (None, None) => None,
        };
        let tls = match (&config.tls.cert.value, &config.tls.key.value) {
            (Some(cert), Some(key)) => Some(TlsSettings::from_files(
                cert,
                key,
                config.tls.client_ca.value.as_deref(),
                config.tls.require_client_cert.value,
            )?),
            (None, None) => {
                if config.tls.client_ca.value.is_some() || config.tls.require_client_cert.value {
                    return Err(SetupError::Config(
                        "tls.client_ca and tls.require_client_cert need tls.cert and tls.key"
                            .into(),
                    ));
                }
                None
            }
            _ => {
                return Err(SetupError::Config(
                    "set both tls.cert and tls.key, or neither".into(),
                ));
            }
        };
        let limits = Limits {
            max_handshake_payload: clamp_u32(config.max_handshake_payload.value),
            max_message_size: clamp_u32(config.max_message_size.value),
            max_clock_skew_ms: config.max_clock_skew_ms.value,
        };
        let server_limits = ServerLimits {
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms.value),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms.value),
            write_timeout: Duration::from_millis(config.write_timeout_ms.value),
            call_timeout: Duration::from_millis(config.call_timeout_ms.value),
            max_connections: clamp_usize(config.max_connections.value),
            max_pending_handshakes: clamp_usize(config.max_pending_handshakes.value),
            max_pending_per_ip: clamp_usize(config.max_pending_per_ip.value),
            max_inflight: clamp_usize(config.max_inflight.value),
            max_streams: clamp_usize(config.max_streams.value),
            replay_cache_capacity: clamp_usize(config.replay_cache_capacity.value),
            handshake_rate_per_ip: clamp_u32(config.handshake_rate_per_ip.value),
            handshake_rate_per_key: clamp_u32(config.handshake_rate_per_key.value),
            replay_store_timeout: Duration::from_millis(config.replay_store_timeout_ms.value),
            ping_interval: (config.ping_interval_ms.value > 0)
                .then(|| Duration::from_millis(config.ping_interval_ms.value)),
        };
        Ok(ServerSettings {
            keys,
            ephemeral_key,
            auth,
            psk,
            prologue: config.prologue.value.as_bytes().to_vec(),
            limits,
            server_limits,
            tls,
            hook: None,
            static_files: None,
            allowed_hosts: config.allowed_hosts.value.clone(),
            allowed_origins: config.allowed_origins.value.clone(),
            client_names,
            replay_store: StoreChoice::Location(config.replay_store.value.clone()),
            operating: Operating::from_config(config),
        })
    }

    /// Also serves clients that pinned `key`: while rotating keys, the old
    /// key (or the new one, before it is advertised). The first key stays
    /// the one the server advertises, and its clients cost no more than
    /// with one key; clients of a later key cost one X25519 operation more
    /// per key before it.
    /// A key the server holds already is ignored.
    pub fn with_additional_key(mut self, key: SecretKey) -> Self {
        if !self.public_keys().contains(&key.public_key()) {
            self.keys.push(key);
        }
        self
    }

    /// Binds a pre-shared key into every handshake.
    pub fn with_psk(mut self, psk: SymmetricKey) -> Self {
        self.psk = Some(psk);
        self
    }

    /// Binds a prologue into every handshake.
    pub fn with_prologue(mut self, prologue: &[u8]) -> Self {
        self.prologue = prologue.to_vec();
        self
    }

    /// Sets the handshake and frame limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the connection limits.
    pub fn with_server_limits(mut self, limits: ServerLimits) -> Self {
        self.server_limits = limits;
        self
    }

    /// Serves `wss://` with these TLS settings.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the application's handshake hook.
    pub fn with_hook(
        mut self,
        hook: impl Fn(&HandshakeInfo<'_>) -> HookDecision + Send + Sync + 'static,
    ) -> Self {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Serves these files at every path other than the endpoint (`/` is
    /// `/index.html`), and the server's public key as JSON at `/server-key`
    /// (a convenience for the web demo to prefill its pinned key, not a
    /// trust anchor).
    pub fn with_static_files(mut self, files: StaticFiles) -> Self {
        self.static_files = Some(files);
        self
    }

    /// Accepts only these host names in the `Host` header of HTTP requests
    /// (`"*"`: any). Without it: the host the server is bound to, plus
    /// `localhost`, `127.0.0.1` and `[::1]` on a loopback address, or any
    /// host on an unspecified address (`0.0.0.0`, `::`).
    pub fn with_allowed_hosts(mut self, hosts: Vec<String>) -> Self {
        self.allowed_hosts = Some(hosts);
        self
    }

    /// Accepts only these origins from browsers (requests with an `Origin`
    /// header; `"*"`: any). Without it: the server's own origin only.
    pub fn with_allowed_origins(mut self, origins: Vec<String>) -> Self {
        self.allowed_origins = Some(origins);
        self
    }

    /// Names clients, as the comments of an authorized_keys file do: a
    /// handler sees the name in its [`CallContext`](crate::CallContext), and
    /// the log shows it with each session.
    pub fn with_client_names(
        mut self,
        names: impl IntoIterator<Item = (PublicKey, String)>,
    ) -> Self {
        self.client_names.extend(names);
        self
    }

    /// Keeps the replay cache where `location` says: in memory (the
    /// default; one instance only), or in a Redis that every instance of
    /// the service shares (needs the cargo feature `redis`).
    pub fn with_replay_store_location(mut self, location: ReplayStoreLocation) -> Self {
        self.replay_store = StoreChoice::Location(location);
        self
    }

    /// Keeps the replay cache in the application's own store.
    pub fn with_replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay_store = StoreChoice::Custom(Arc::new(store));
        self
    }

    /// Replaces the client policy.
    pub fn with_client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// The server's public key (what clients pin): the first of its keys.
    pub fn public_key(&self) -> PublicKey {
        self.keys[0].public_key()
    }

    /// Every public key the server answers to, the advertised one first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.iter().map(SecretKey::public_key).collect()
    }

    /// True when no server key was configured and one was made for this run.
    pub fn has_ephemeral_key(&self) -> bool {
        self.ephemeral_key
    }

    /// True when any client key is accepted.
    pub fn allows_any_client(&self) -> bool {
        matches!(self.auth, ClientAuth::AllowAny)
    }

    /// True when TLS is configured.
    pub fn has_tls(&self) -> bool {
        self.tls.is_some()
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

fn clamp_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}
