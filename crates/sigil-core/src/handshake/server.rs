//! The server's side of the handshake.

use std::collections::HashMap;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::transcript::Transcript;
use super::{
    BUSY_REASON, CLIENT_HELLO, HELLO1_FIXED, HELLO2_FIXED, HandshakeError, Limits, Refusal,
    RefusalCode, RefusalDetail, SERVER_HELLO, TAG_LEN, VERSION, check_own_payload, is_json,
    read_key, read_u32,
};
use crate::keys::{PublicKey, SecretKey, SymmetricKey};
use crate::rand::RandomSource;
use crate::replay::{ReplayEntry, ReplayGuard, ReplayVerdict};
use crate::transport::{Role, Session};

/// Which client keys a server accepts.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Any client key (the handshake hook may still refuse).
    AllowAny,
    /// Only these keys (the contents of `authorized_keys`).
    Keys(Vec<PublicKey>),
}

/// What a server needs to answer handshakes: its keys, its client policy,
/// the optional psk and prologue, and its limits.
///
/// A server may hold several static keys while it rotates them
/// ([`with_additional_key`](Self::with_additional_key)): the first is the
/// one it advertises, and a client that pinned any of them is served.
/// Message 1 does not name the key it was made for (the key is bound into
/// the transcript), so the server tries its keys in order: a client of the
/// first key costs exactly what it costs a server with one key, a client of
/// the second one more X25519 operation, and so on.
///
/// For authorised keys, building it computes the static-static
/// Diffie-Hellman result (`ss`) once per client key and server key;
/// handshakes reuse them.
pub struct ServerConfig {
    /// Never empty; the first is advertised.
    keys: Vec<StaticKey>,
    /// `None`: any client; otherwise the authorised keys (kept to compute
    /// their `ss` with keys added later).
    clients: Option<Vec<PublicKey>>,
    psk: Option<SymmetricKey>,
    prologue: Vec<u8>,
    limits: Limits,
}

/// One static key of a server, and what handshakes addressed to it reuse.
struct StaticKey {
    secret: SecretKey,
    public: PublicKey,
    initial: Transcript,
    /// `None`: any client; otherwise authorised keys and their `ss`.
    authorized: Option<Authorized>,
    /// Stands in for `ss` when a hello names a key that is not authorised,
    /// so that refusing it costs what refusing an authorised key costs (one
    /// X25519 operation per server key) and its timing tells nothing.
    /// Secret (derived from the server's key), so no one can make a tag
    /// that verifies with it.
    unknown_ss: Zeroizing<[u8; 32]>,
}

impl StaticKey {
    /// This key with another client policy, reusing the `ss` it has.
    fn with_clients(&self, clients: Option<&[PublicKey]>) -> Result<StaticKey, HandshakeError> {
        Ok(StaticKey {
            secret: self.secret.duplicate(),
            public: self.public,
            initial: self.initial.clone(),
            authorized: authorize(&self.secret, clients, self.authorized.as_ref())?,
            unknown_ss: self.unknown_ss.clone(),
        })
    }

    fn new(
        secret: SecretKey,
        clients: Option<&[PublicKey]>,
        prologue: &[u8],
        psk: Option<&SymmetricKey>,
    ) -> Result<StaticKey, HandshakeError> {
        let authorized = authorize(&secret, clients, None)?;
        let public = secret.public_key();
        let unknown_ss = Zeroizing::new(
            Sha256::new()
                .chain_update(b"sigil/1 stand-in ss for unknown clients")
                .chain_update(secret.dangerous_to_bytes().as_ref())
                .finalize()
                .into(),
        );
        Ok(StaticKey {
            initial: Transcript::initial(prologue, &public, psk),
            secret,
            public,
            authorized,
            unknown_ss,
        })
    }
}

impl ServerConfig {
    /// A server config. A low-order key among the authorised keys is refused.
    pub fn new(static_key: SecretKey, auth: ClientAuth) -> Result<ServerConfig, HandshakeError> {
        let clients = match auth {
            ClientAuth::AllowAny => None,
            ClientAuth::Keys(keys) => Some(keys),
        };
        let key = StaticKey::new(static_key, clients.as_deref(), &[], None)?;
        Ok(ServerConfig {
            keys: vec![key],
            clients,
            psk: None,
            prologue: Vec::new(),
            limits: Limits::default(),
        })
    }

    /// Also answers clients that pinned `key` (key rotation). Keys are
    /// tried in the order they were given, after the first; the first stays
    /// the one the server advertises. A key it already holds is ignored.
    pub fn with_additional_key(mut self, key: SecretKey) -> Result<ServerConfig, HandshakeError> {
        if self.keys.iter().all(|k| k.public != key.public_key()) {
            let key = StaticKey::new(
                key,
                self.clients.as_deref(),
                &self.prologue,
                self.psk.as_ref(),
            )?;
            self.keys.push(key);
        }
        Ok(self)
    }

    /// The same configuration with another client policy, for a server
    /// that reloads its authorized_keys while it runs: `ss` is computed for
    /// the keys that are new and kept for the others, for every server key.
    /// A low-order key is refused, and `self` is unchanged either way.
    pub fn with_client_auth(&self, auth: ClientAuth) -> Result<ServerConfig, HandshakeError> {
        let clients = match auth {
            ClientAuth::AllowAny => None,
            ClientAuth::Keys(keys) => Some(keys),
        };
        let keys = self
            .keys
            .iter()
            .map(|key| key.with_clients(clients.as_deref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServerConfig {
            keys,
            clients,
            psk: self.psk.clone(),
            prologue: self.prologue.clone(),
            limits: self.limits,
        })
    }

    /// Binds a pre-shared key into the handshake (clients must use it too).
    pub fn with_psk(mut self, psk: SymmetricKey) -> ServerConfig {
        self.psk = Some(psk);
        self.reinit()
    }

    /// Binds a prologue into the handshake (clients must use the same bytes).
    pub fn with_prologue(mut self, prologue: &[u8]) -> ServerConfig {
        self.prologue = prologue.to_vec();
        self.reinit()
    }

    /// Sets the limits.
    pub fn with_limits(mut self, limits: Limits) -> ServerConfig {
        self.limits = limits;
        self
    }

    fn reinit(mut self) -> ServerConfig {
        for key in &mut self.keys {
            key.initial = Transcript::initial(&self.prologue, &key.public, self.psk.as_ref());
        }
        self
    }

    /// The server's static public key: the one it advertises, and clients
    /// pin.
    pub fn public_key(&self) -> PublicKey {
        self.keys[0].public
    }

    /// Every static public key the server answers to, the advertised one
    /// first.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.iter().map(|k| k.public).collect()
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether `key` may connect (always true under [`ClientAuth::AllowAny`]).
    pub fn is_authorized(&self, key: &PublicKey) -> bool {
        self.clients.as_ref().is_none_or(|keys| keys.contains(key))
    }
}

/// Authorised keys and their `ss` (`None`: any client); the `ss` of a key
/// in `known` is reused.
type Authorized = HashMap<PublicKey, Zeroizing<[u8; 32]>>;

fn authorize(
    static_key: &SecretKey,
    clients: Option<&[PublicKey]>,
    known: Option<&Authorized>,
) -> Result<Option<Authorized>, HandshakeError> {
    let Some(keys) = clients else {
        return Ok(None);
    };
    let mut map = HashMap::with_capacity(keys.len());
    for key in keys {
        let ss = match known.and_then(|k| k.get(key)) {
            Some(ss) => ss.clone(),
            None => Zeroizing::new(*static_key.diffie_hellman(key)?.dangerous_as_bytes()),
        };
        map.insert(*key, ss);
    }
    Ok(Some(map))
}

/// An authenticated, authorised, fresh ClientHello, waiting for the
/// application's decision.
pub struct ClientHello {
    transcript: Transcript,
    server_key: PublicKey,
    server_key_index: usize,
    client_key: PublicKey,
    client_ephemeral: PublicKey,
    timestamp_ms: u64,
    payload: Option<String>,
    limits: Limits,
}

/// Checks message 1 in the order of the specification and refuses on the
/// first failure:
///
/// 1. type and version (code 1, or 4 for another version);
/// 2. declared payload length ≤ `max_handshake_payload` (code 1), exact length (code 1);
/// 3. `|now − timestamp| ≤ max_clock_skew_ms` (code 5);
/// 4. `tag1`, in constant time, and no all-zero Diffie-Hellman result (code 1),
///    for each of the server's keys in turn until one verifies;
/// 5. the client key is authorised (code 1; checked with the tag and at the
///    same cost, see the comment in the code);
/// 6. the client's ephemeral key is not a replay (code 5; code 3 when the
///    replay cache is full, or the client is over its share or rate of it);
/// 7. the payload, if any, is UTF-8 and one JSON value (code 2).
///
/// The application's hook comes after: [`ClientHello::accept`] or
/// [`ClientHello::refuse`]. `now_ms` is the current time in milliseconds
/// since the Unix epoch.
///
/// This is [`verify_hello`] (steps 1 to 5) and
/// [`VerifiedHello::check_replay`] (6 and 7) with a replay guard that
/// answers at once; a server whose replay store answers later (over the
/// network) calls the two itself.
pub fn accept_hello(
    config: &ServerConfig,
    replay: &mut impl ReplayGuard,
    now_ms: u64,
    msg: &[u8],
) -> Result<ClientHello, Refusal> {
    verify_hello(config, now_ms, msg)?.check_replay(replay, now_ms)
}

/// Steps 1 to 5 of [`accept_hello`]: message 1 is well formed, fresh,
/// authenticated and from an authorised client. What it gives back is not
/// yet a [`ClientHello`]: only the replay check's verdict makes it one
/// ([`VerifiedHello::with_verdict`]), so no server can forget the check.
pub fn verify_hello(
    config: &ServerConfig,
    now_ms: u64,
    msg: &[u8],
) -> Result<VerifiedHello, Refusal> {
    if msg.len() < 2 || msg[0] != CLIENT_HELLO {
        return Err(Refusal::generic(RefusalDetail::Malformed));
    }
    if msg[1] != VERSION {
        return Err(Refusal::new(
            RefusalCode::UnsupportedVersion,
            "unsupported protocol version (this server speaks sigil/1)",
            RefusalDetail::UnsupportedVersion,
        ));
    }
    if msg.len() < HELLO1_FIXED + TAG_LEN {
        return Err(Refusal::generic(RefusalDetail::Malformed));
    }
    let n = read_u32(&msg[74..]);
    if n > config.limits.max_handshake_payload {
        return Err(Refusal::new(
            RefusalCode::HandshakeFailed,
            "handshake payload too large",
            RefusalDetail::PayloadTooLarge,
        ));
    }
    if msg.len() != HELLO1_FIXED + n as usize + TAG_LEN {
        return Err(Refusal::generic(RefusalDetail::Malformed));
    }
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&msg[66..74]);
    let timestamp_ms = u64::from_be_bytes(ts);
    if now_ms.abs_diff(timestamp_ms) > config.limits.max_clock_skew_ms {
        return Err(Refusal::new(
            RefusalCode::StaleOrReplayed,
            "stale timestamp: check the client's clock",
            RefusalDetail::ClockSkew,
        ));
    }

    let (body, tag1) = msg.split_at(HELLO1_FIXED + n as usize);
    let client_ephemeral = read_key(&msg[2..]);
    let client_key = read_key(&msg[34..]);
    // Message 1 does not say which of the server's keys it was made for:
    // try them in order, the advertised one first. A client of the first
    // key costs what it costs a server with one key. An unknown client
    // goes through every key, as an authorised client with a bad tag does,
    // so that refusing either takes the same time.
    let mut authorised = true;
    let mut accepted = None;
    for (index, key) in config.keys.iter().enumerate() {
        let (t, tag_ok, known) = check_tag(key, body, tag1, &client_ephemeral, &client_key)?;
        authorised = known;
        if tag_ok && known {
            accepted = Some((index, key.public, t));
            break;
        }
    }
    if !authorised {
        return Err(Refusal::generic(RefusalDetail::UnauthorizedClient));
    }
    let Some((server_key_index, server_key, mut t)) = accepted else {
        return Err(Refusal::generic(RefusalDetail::BadTag));
    };
    t.mix_hash(tag1);

    // Checked now, refused only after the replay check (step 7).
    let payload = &body[HELLO1_FIXED..];
    let payload = if payload.is_empty() {
        Ok(None)
    } else if is_json(payload) {
        Ok(Some(String::from_utf8_lossy(payload).into_owned()))
    } else {
        Err(())
    };
    Ok(VerifiedHello {
        entry: ReplayEntry {
            server_key,
            client_key,
            client_ephemeral,
            timestamp_ms,
            expires_ms: timestamp_ms.saturating_add(config.limits.max_clock_skew_ms),
        },
        server_key_index,
        transcript: t,
        payload,
        limits: config.limits,
    })
}

/// Message 1 as [`verify_hello`] found it: authenticated, from an
/// authorised client, within the clock-skew window, and waiting for the
/// replay check. Its [`replay_entry`](Self::replay_entry) is what a replay
/// store records; its store's verdict makes it a [`ClientHello`]
/// ([`with_verdict`](Self::with_verdict)), or a refusal.
#[must_use = "a verified hello goes nowhere until its replay check is done"]
pub struct VerifiedHello {
    entry: ReplayEntry,
    server_key_index: usize,
    transcript: Transcript,
    /// `Err`: not one JSON value (refused after the replay check).
    payload: Result<Option<String>, ()>,
    limits: Limits,
}

impl VerifiedHello {
    /// What the replay check records: the server key the hello was made
    /// for, the client's key and ephemeral key, its timestamp, and until
    /// when it must be remembered.
    pub fn replay_entry(&self) -> &ReplayEntry {
        &self.entry
    }

    /// The client's static public key (authenticated).
    pub fn client_key(&self) -> &PublicKey {
        &self.entry.client_key
    }

    /// Steps 6 and 7 of [`accept_hello`], with the replay store's verdict
    /// on [`replay_entry`](Self::replay_entry): a fresh hello with a valid
    /// payload becomes a [`ClientHello`]; a replay is refused with code 5,
    /// a full or unavailable store, or a client over its share, as busy
    /// (code 3); an invalid payload with code 2.
    pub fn with_verdict(self, verdict: ReplayVerdict) -> Result<ClientHello, Refusal> {
        let (code, reason, detail) = match verdict {
            ReplayVerdict::Fresh => {
                let payload = self.payload.map_err(|()| {
                    Refusal::new(
                        RefusalCode::Rejected,
                        "handshake payload is not valid JSON",
                        RefusalDetail::InvalidPayload,
                    )
                })?;
                return Ok(ClientHello {
                    transcript: self.transcript,
                    server_key: self.entry.server_key,
                    server_key_index: self.server_key_index,
                    client_key: self.entry.client_key,
                    client_ephemeral: self.entry.client_ephemeral,
                    timestamp_ms: self.entry.timestamp_ms,
                    payload,
                    limits: self.limits,
                });
            }
            ReplayVerdict::Replayed => (
                RefusalCode::StaleOrReplayed,
                "replayed handshake",
                RefusalDetail::Replayed,
            ),
            ReplayVerdict::Full => (
                RefusalCode::Busy,
                BUSY_REASON,
                RefusalDetail::ReplayCacheFull,
            ),
            ReplayVerdict::OverQuota => (RefusalCode::Busy, BUSY_REASON, RefusalDetail::OverQuota),
            ReplayVerdict::Unavailable => (
                RefusalCode::Busy,
                BUSY_REASON,
                RefusalDetail::ReplayStoreUnavailable,
            ),
        };
        Err(Refusal::new(code, reason, detail))
    }

    /// [`with_verdict`](Self::with_verdict) with the verdict of a guard
    /// that answers at once (the in-memory [`ReplayCache`](crate::replay::ReplayCache)).
    pub fn check_replay(
        self,
        replay: &mut impl ReplayGuard,
        now_ms: u64,
    ) -> Result<ClientHello, Refusal> {
        let e = &self.entry;
        let verdict =
            replay.check_and_insert(&e.client_key, &e.client_ephemeral, e.timestamp_ms, now_ms);
        self.with_verdict(verdict)
    }
}

/// Checks `tag1` as made for the server key `key`: the transcript after it,
/// whether it verified, and whether the client key is authorised.
fn check_tag(
    key: &StaticKey,
    body: &[u8],
    tag1: &[u8],
    client_ephemeral: &PublicKey,
    client_key: &PublicKey,
) -> Result<(Transcript, bool, bool), Refusal> {
    let mut t = key.initial.clone();
    t.mix_hash(body);
    let es = key
        .secret
        .diffie_hellman(client_ephemeral)
        .map_err(|_| Refusal::generic(RefusalDetail::LowOrderKey))?;
    let _ = t.mix_key(es.dangerous_as_bytes());
    // With authorized_keys, every hello costs one X25519 operation (`es`)
    // per key tried: an authorised key's `ss` is cached, and an unknown
    // key's tag is checked against a secret stand-in, where it fails.
    // Refusing either takes the same time (code 1 both), so timing reveals
    // nothing about authorized_keys. Under allow_any_client every key is
    // authorised and its `ss` is computed here (two operations per key).
    let (k1, authorised) = match &key.authorized {
        Some(keys) => match keys.get(client_key) {
            Some(ss) => (t.mix_key(ss.as_ref()), true),
            None => (t.mix_key(key.unknown_ss.as_ref()), false),
        },
        None => {
            let ss = key
                .secret
                .diffie_hellman(client_key)
                .map_err(|_| Refusal::generic(RefusalDetail::LowOrderKey))?;
            (t.mix_key(ss.dangerous_as_bytes()), true)
        }
    };
    let tag_ok = bool::from(t.tag(&k1).ct_eq(tag1));
    Ok((t, tag_ok, authorised))
}

/// The client key that message 1 names, if the message is long enough to
/// name one. Unauthenticated until [`accept_hello`] has checked it: for
/// logs, never for decisions.
pub fn claimed_client_key(msg: &[u8]) -> Option<PublicKey> {
    (msg.len() >= 66 && msg[0] == CLIENT_HELLO).then(|| read_key(&msg[34..]))
}

impl ClientHello {
    /// The client's static public key (authenticated).
    pub fn client_key(&self) -> &PublicKey {
        &self.client_key
    }

    /// The server key the client pinned: the one this hello was made for.
    pub fn server_key(&self) -> &PublicKey {
        &self.server_key
    }

    /// Where [`server_key`](Self::server_key) is among the server's keys:
    /// 0 for the advertised key, more for a key kept during a rotation
    /// (such a client should pin the new key before the old one is dropped).
    pub fn server_key_index(&self) -> usize {
        self.server_key_index
    }

    /// The client's handshake payload (JSON text), if it sent one.
    ///
    /// Authenticated by the client's key, but not protected against
    /// key-compromise impersonation: whoever holds the server's secret key
    /// can forge it.
    pub fn payload(&self) -> Option<&str> {
        self.payload.as_deref()
    }

    /// The client's timestamp (milliseconds since the Unix epoch).
    pub fn timestamp_ms(&self) -> u64 {
        self.timestamp_ms
    }

    /// Accepts the handshake: returns message 2 to send and the session.
    /// `response` is one JSON value or `None`.
    pub fn accept(
        self,
        rng: &mut impl RandomSource,
        response: Option<&str>,
    ) -> Result<(Vec<u8>, Session), HandshakeError> {
        let ephemeral = SecretKey::generate(rng)?;
        self.dangerous_accept_with_ephemeral(ephemeral, response)
    }

    /// [`accept`](Self::accept) with a caller-chosen ephemeral key.
    ///
    /// Dangerous: reusing an ephemeral key destroys forward secrecy. For test
    /// vectors only.
    pub fn dangerous_accept_with_ephemeral(
        self,
        ephemeral: SecretKey,
        response: Option<&str>,
    ) -> Result<(Vec<u8>, Session), HandshakeError> {
        let payload = check_own_payload(response, self.limits.max_handshake_payload)?;
        let mut msg = Vec::with_capacity(HELLO2_FIXED + payload.len() + TAG_LEN);
        msg.push(SERVER_HELLO);
        msg.push(VERSION);
        msg.extend_from_slice(ephemeral.public_key().as_bytes());
        // Bounded by max_handshake_payload, a u32.
        msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        msg.extend_from_slice(payload);

        let mut t = self.transcript;
        t.mix_hash(&msg);
        let ee = ephemeral.diffie_hellman(&self.client_ephemeral)?;
        let _ = t.mix_key(ee.dangerous_as_bytes());
        let se = ephemeral.diffie_hellman(&self.client_key)?;
        let k2 = t.mix_key(se.dangerous_as_bytes());
        let tag2 = t.tag(&k2);
        t.mix_hash(&tag2);
        msg.extend_from_slice(&tag2);

        let (c2s, s2c) = t.transport_keys();
        let session = Session::new(
            Role::Server,
            &c2s,
            &s2c,
            t.hash(),
            self.limits.max_message_size,
        );
        Ok((msg, session))
    }

    /// Refuses the handshake for the application (code 2) with `reason`
    /// (sent to the client; truncated to 256 bytes).
    pub fn refuse(self, reason: &str) -> Refusal {
        Refusal::new(RefusalCode::Rejected, reason, RefusalDetail::Application)
    }
}
