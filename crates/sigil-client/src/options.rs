//! What a client needs to connect: keys, handshake settings, limits, TLS.

use std::sync::Arc;
use std::time::Duration;

use sigil_core::config::Config;
use sigil_core::handshake::Limits;
use sigil_core::keyfile;
use sigil_core::reconnect::ReconnectPolicy;
use sigil_core::{PublicKey, SecretKey, SymmetricKey};

use crate::error::ClientError;

/// The default time allowed for connecting and the handshake (10 s, as the
/// `handshake_timeout_ms` default).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(10_000);

/// The default deadline of a call (30 s, as the `call_timeout_ms` default).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(30_000);

/// The default window of a stream (16 items, as the `stream_window` default).
pub const DEFAULT_STREAM_WINDOW: u32 = 16;

/// Everything [`Client::connect`](crate::Client::connect) needs besides the URL.
///
/// Built with [`ClientOptions::new`] and the `with_*` methods, or from a
/// resolved [`Config`] with [`ClientOptions::from_config`]. Holds a secret
/// key, so it has no `Debug` and no `Clone`.
pub struct ClientOptions {
    pub(crate) secret_key: SecretKey,
    /// The pinned server keys, tried in order; never empty.
    pub(crate) server_keys: Vec<PublicKey>,
    pub(crate) psk: Option<SymmetricKey>,
    pub(crate) prologue: Vec<u8>,
    pub(crate) payload: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) handshake_timeout: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) stream_window: u32,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) reconnect: Option<ReconnectPolicy>,
}

impl ClientOptions {
    /// Options for a client whose key is `secret_key`, talking to the server
    /// whose public key is `server_key` (pinned: the handshake fails with any
    /// other server). No psk, an empty prologue, no handshake payload,
    /// default limits, a 10 s handshake timeout, and the webpki roots for
    /// `wss://`.
    pub fn new(secret_key: SecretKey, server_key: PublicKey) -> ClientOptions {
        ClientOptions {
            secret_key,
            server_keys: vec![server_key],
            psk: None,
            prologue: Vec::new(),
            payload: None,
            limits: Limits::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            stream_window: DEFAULT_STREAM_WINDOW,
            tls: None,
            reconnect: None,
        }
    }

    /// Reconnects when the connection breaks (off by default): after a
    /// delay that doubles with each attempt, with jitter, a new connection
    /// and a fresh handshake, up to `policy.max_attempts` times before the
    /// client closes for good. [`Client::events`](crate::Client::events)
    /// reports each change.
    ///
    /// Calls in flight when the connection broke fail with
    /// [`ClientError::Connection`] and are not sent again (the server may
    /// have run them); streams in flight end with that error, and may be
    /// opened again. Calls made while the client reconnects wait for the
    /// new connection, each within its own deadline. A refusal that will
    /// not change by trying again (code 1, 2 or 4, a server whose answer
    /// does not authenticate, a TLS or configuration error) stops the
    /// attempts at once. The first connection is not retried:
    /// [`Client::connect`](crate::Client::connect) reports its failure.
    pub fn with_reconnect(mut self, policy: ReconnectPolicy) -> ClientOptions {
        self.reconnect = Some(policy);
        self
    }

    /// Sets the deadline of every call that does not set its own (see
    /// [`Call::timeout`](crate::Call::timeout)).
    pub fn with_call_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.call_timeout = timeout;
        self
    }

    /// Sets the window of every stream that does not set its own: how many
    /// items the server may send before the consumer takes them (1 to
    /// 65,536; out-of-range values are clamped).
    pub fn with_stream_window(mut self, window: u32) -> ClientOptions {
        self.stream_window = window.clamp(1, sigil_core::rpc::MAX_STREAM_CREDIT);
        self
    }

    /// Binds a pre-shared key into the handshake (the server must use the same).
    pub fn with_psk(mut self, psk: SymmetricKey) -> ClientOptions {
        self.psk = Some(psk);
        self
    }

    /// Binds a prologue into the handshake (the server must use the same bytes).
    pub fn with_prologue(mut self, prologue: impl Into<Vec<u8>>) -> ClientOptions {
        self.prologue = prologue.into();
        self
    }

    /// Sends a handshake payload: one JSON value (text) that the server's
    /// handshake hook sees. It is checked when connecting.
    pub fn with_payload(mut self, payload: impl Into<String>) -> ClientOptions {
        self.payload = Some(payload.into());
        self
    }

    /// Sets the size limits: `max_message_size` bounds the payload of every
    /// frame both ways (the server must allow at least as much for the
    /// requests sent), `max_handshake_payload` the server's handshake payload
    /// and ours. The clock skew is the server's business.
    pub fn with_limits(mut self, limits: Limits) -> ClientOptions {
        self.limits = limits;
        self
    }

    /// Sets the time allowed for connecting (TCP, TLS, WebSocket upgrade)
    /// and the handshake together.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> ClientOptions {
        self.handshake_timeout = timeout;
        self
    }

    /// Also accepts the server whose public key is `server_key` (a server
    /// that rotates its key). The pinned keys are tried in the order given:
    /// when the server refuses the handshake made for one (code 1), the
    /// client connects again with the next, within the handshake timeout.
    /// Pin the key the server advertises first, so that the usual
    /// connection takes one try.
    pub fn with_server_key(mut self, server_key: PublicKey) -> ClientOptions {
        if !self.server_keys.contains(&server_key) {
            self.server_keys.push(server_key);
        }
        self
    }

    /// Uses this TLS configuration for `wss://` URLs (custom roots, a client
    /// certificate, checks of the server's certificate). Without it, the
    /// Mozilla roots of `webpki-roots` are trusted. [`ClientTls`](crate::ClientTls)
    /// builds one.
    pub fn with_tls(mut self, tls: Arc<rustls::ClientConfig>) -> ClientOptions {
        self.tls = Some(tls);
        self
    }

    /// The (first) pinned server key.
    pub fn server_key(&self) -> PublicKey {
        self.server_keys[0]
    }

    /// Every pinned server key, in the order they are tried.
    pub fn server_keys(&self) -> &[PublicKey] {
        &self.server_keys
    }

    /// This client's public key.
    pub fn public_key(&self) -> PublicKey {
        self.secret_key.public_key()
    }

    /// Options from a resolved configuration: the secret key from the file
    /// `client_key`, the pinned `server_public_key` (one key or several),
    /// `psk` or the file `psk_file`, `prologue`, `max_message_size`,
    /// `max_handshake_payload`, `handshake_timeout_ms`, `call_timeout_ms`,
    /// `stream_window`, and the client's `[tls]` keys (see
    /// [`ClientTls::from_config`](crate::ClientTls::from_config)).
    ///
    /// `client_key` and `server_public_key` are required. On Unix, a secret
    /// file (`client_key`, `psk_file`) that group or others can read is
    /// refused, as ssh refuses such private keys.
    pub fn from_config(config: &Config) -> Result<ClientOptions, ClientError> {
        let (&server_key, more_keys) =
            config
                .server_public_key
                .value
                .split_first()
                .ok_or_else(|| {
                    ClientError::Config(
                "no server public key: set `server_public_key` (or SIGIL_SERVER_PUBLIC_KEY) \
                 to the server's public key, as `sigil pubkey` prints it"
                    .into(),
            )
                })?;
        let key_path = config.client_key.value.as_deref().ok_or_else(|| {
            ClientError::Config(
                "no client key: set `client_key` (or SIGIL_CLIENT_KEY) to the path of the \
                 client's secret key file (make one with `sigil keygen --out PATH`)"
                    .into(),
            )
        })?;
        let secret_key =
            keyfile::read_secret_key(key_path).map_err(|e| key_file_error("client_key", e))?;

        let psk = match (&config.psk.value, &config.psk_file.value) {
            (Some(psk), _) => Some(psk.clone()),
            (None, Some(path)) => {
                Some(keyfile::read_psk(path).map_err(|e| key_file_error("psk_file", e))?)
            }
            (None, None) => None,
        };

        let limits = Limits {
            max_handshake_payload: to_u32(
                config.max_handshake_payload.value,
                "max_handshake_payload",
            )?,
            max_message_size: to_u32(config.max_message_size.value, "max_message_size")?,
            max_clock_skew_ms: config.max_clock_skew_ms.value,
        };
        let mut options = ClientOptions::new(secret_key, server_key)
            .with_prologue(config.prologue.value.as_bytes())
            .with_limits(limits)
            .with_handshake_timeout(Duration::from_millis(config.handshake_timeout_ms.value))
            .with_call_timeout(Duration::from_millis(config.call_timeout_ms.value))
            .with_stream_window(to_u32(config.stream_window.value, "stream_window")?);
        options.psk = psk;
        for key in more_keys {
            options = options.with_server_key(*key);
        }
        if let Some(tls) = crate::tls::ClientTls::from_config(config)? {
            options = options.with_tls(tls.build()?);
        }
        Ok(options)
    }
}

fn to_u32(value: u64, key: &str) -> Result<u32, ClientError> {
    u32::try_from(value).map_err(|_| {
        ClientError::Config(format!(
            "`{key}` = {value} is too large (at most {})",
            u32::MAX
        ))
    })
}

/// An unreadable file is an I/O error; unusable contents are a config error.
pub(crate) fn key_file_error(key: &str, e: keyfile::KeyFileError) -> ClientError {
    match e {
        keyfile::KeyFileError::Io { path, source } => ClientError::Io(std::io::Error::new(
            source.kind(),
            format!("cannot read {key} file {}: {source}", path.display()),
        )),
        other => ClientError::Config(format!("{key}: {other}")),
    }
}
