//! The client's side of the handshake.

use zeroize::Zeroizing;

use super::transcript::Transcript;
use super::{
    CLIENT_HELLO, HELLO2_FIXED, HandshakeError, Limits, Refusal, SERVER_HELLO, TAG_LEN, VERSION,
    check_own_payload, is_json, read_key, read_u32,
};
use crate::keys::{PublicKey, SecretKey, SharedSecret, SymmetricKey};
use crate::rand::RandomSource;
use crate::transport::{Role, Session};
use subtle::ConstantTimeEq;

/// What a client needs to run handshakes with one server: its own key, the
/// server's pinned public key, and the optional psk and prologue.
///
/// Building it computes the static-static Diffie-Hellman result (`ss`) and
/// the initial transcript once; every handshake reuses them.
///
/// The client's static secret takes part in two X25519 operations: `ss`
/// with the server's key (once, here) and `se` with the server's ephemeral
/// key (once per handshake, on message 2). Both can be done outside the
/// core by a key agent that never reveals the secret — a browser's
/// WebCrypto with a non-extractable key, say: build the config with
/// [`from_agent`](Self::from_agent) and finish each handshake with
/// [`ClientHandshake::read_answer`] and [`AwaitingStaticDh::finish`]. A
/// config made with [`new`](Self::new) holds the secret and takes the same
/// path in [`ClientHandshake::finish`].
pub struct ClientConfig {
    /// The static secret, unless an agent holds it.
    static_key: Option<SecretKey>,
    public_key: PublicKey,
    server_key: PublicKey,
    psk: Option<SymmetricKey>,
    prologue: Vec<u8>,
    initial: Transcript,
    ss: Zeroizing<[u8; 32]>,
    limits: Limits,
}

impl ClientConfig {
    /// A config for talking to the server whose public key is `server_key`.
    /// A low-order server key is refused.
    pub fn new(
        static_key: SecretKey,
        server_key: PublicKey,
    ) -> Result<ClientConfig, HandshakeError> {
        let ss = static_key.diffie_hellman(&server_key)?;
        let public_key = static_key.public_key();
        Ok(ClientConfig::with_ss(
            Some(static_key),
            public_key,
            server_key,
            &ss,
        ))
    }

    /// A config whose static secret an agent holds: `public_key` is the
    /// client's static public key and `ss` the agent's X25519 of its secret
    /// with `server_key`. Handshakes then end with
    /// [`ClientHandshake::read_answer`] and the agent's `se`.
    pub fn from_agent(
        public_key: PublicKey,
        server_key: PublicKey,
        ss: &SharedSecret,
    ) -> ClientConfig {
        ClientConfig::with_ss(None, public_key, server_key, ss)
    }

    fn with_ss(
        static_key: Option<SecretKey>,
        public_key: PublicKey,
        server_key: PublicKey,
        ss: &SharedSecret,
    ) -> ClientConfig {
        ClientConfig {
            initial: Transcript::initial(&[], &server_key, None),
            static_key,
            public_key,
            server_key,
            psk: None,
            prologue: Vec::new(),
            ss: Zeroizing::new(*ss.dangerous_as_bytes()),
            limits: Limits::default(),
        }
    }

    /// Binds a pre-shared key into the handshake (both sides must use it).
    pub fn with_psk(mut self, psk: SymmetricKey) -> ClientConfig {
        self.psk = Some(psk);
        self.reinit()
    }

    /// Binds a prologue into the handshake (both sides must use the same bytes).
    pub fn with_prologue(mut self, prologue: &[u8]) -> ClientConfig {
        self.prologue = prologue.to_vec();
        self.reinit()
    }

    /// Sets the size limits (the clock skew is the server's business).
    pub fn with_limits(mut self, limits: Limits) -> ClientConfig {
        self.limits = limits;
        self
    }

    fn reinit(mut self) -> ClientConfig {
        self.initial = Transcript::initial(&self.prologue, &self.server_key, self.psk.as_ref());
        self
    }

    /// Our static public key.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The server's pinned public key.
    pub fn server_key(&self) -> PublicKey {
        self.server_key
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }
}

/// A client handshake waiting for message 2.
pub struct ClientHandshake {
    transcript: Transcript,
    ephemeral: SecretKey,
    /// The static secret, unless an agent holds it.
    static_key: Option<SecretKey>,
    limits: Limits,
}

/// A message 2 read and checked as far as it can be without the client's
/// static secret: finish it with the X25519 of that secret and
/// [`server_ephemeral`](Self::server_ephemeral).
pub struct AwaitingStaticDh {
    transcript: Transcript,
    server_ephemeral: PublicKey,
    /// The server's payload, not yet trusted.
    payload: Vec<u8>,
    tag: [u8; TAG_LEN],
    limits: Limits,
}

impl ClientHandshake {
    /// Starts a handshake: makes a fresh ephemeral key and returns message 1
    /// to send. `now_ms` is the current time in milliseconds since the Unix
    /// epoch; `payload` is one JSON value or `None`.
    pub fn start(
        config: &ClientConfig,
        rng: &mut impl RandomSource,
        now_ms: u64,
        payload: Option<&str>,
    ) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
        let ephemeral = SecretKey::generate(rng)?;
        Self::dangerous_start_with_ephemeral(config, ephemeral, now_ms, payload)
    }

    /// [`start`](Self::start) with a caller-chosen ephemeral key.
    ///
    /// Dangerous: reusing an ephemeral key destroys forward secrecy and makes
    /// the server refuse the hello as a replay. For test vectors only.
    pub fn dangerous_start_with_ephemeral(
        config: &ClientConfig,
        ephemeral: SecretKey,
        now_ms: u64,
        payload: Option<&str>,
    ) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
        let payload = check_own_payload(payload, config.limits.max_handshake_payload)?;
        let mut msg = Vec::with_capacity(super::HELLO1_FIXED + payload.len() + TAG_LEN);
        msg.push(CLIENT_HELLO);
        msg.push(VERSION);
        msg.extend_from_slice(ephemeral.public_key().as_bytes());
        msg.extend_from_slice(config.public_key.as_bytes());
        msg.extend_from_slice(&now_ms.to_be_bytes());
        // Bounded by max_handshake_payload, a u32.
        msg.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        msg.extend_from_slice(payload);

        let mut t = config.initial.clone();
        t.mix_hash(&msg);
        let es = ephemeral.diffie_hellman(&config.server_key)?;
        let _ = t.mix_key(es.dangerous_as_bytes());
        let k1 = t.mix_key(config.ss.as_ref());
        let tag1 = t.tag(&k1);
        t.mix_hash(&tag1);
        msg.extend_from_slice(&tag1);

        let static_key = config.static_key.as_ref().map(SecretKey::duplicate);
        Ok((
            ClientHandshake {
                transcript: t,
                ephemeral,
                static_key,
                limits: config.limits,
            },
            msg,
        ))
    }

    /// Takes the server's answer: message 2 gives the session and the
    /// server's payload (if any); a refusal gives
    /// [`HandshakeError::Refused`]; anything else gives
    /// [`HandshakeError::Failed`]. With a config whose key an agent holds,
    /// [`HandshakeError::StaticKeyElsewhere`]: use
    /// [`read_answer`](Self::read_answer).
    pub fn finish(mut self, msg: &[u8]) -> Result<(Session, Option<String>), HandshakeError> {
        let static_key = self.static_key.take();
        let step = self.read_answer(msg)?;
        let static_key = static_key.ok_or(HandshakeError::StaticKeyElsewhere)?;
        let se = static_key
            .diffie_hellman(step.server_ephemeral())
            .map_err(|_| HandshakeError::Failed)?;
        step.finish(&se)
    }

    /// Takes the server's answer as far as it goes without the static
    /// secret: a refusal gives [`HandshakeError::Refused`], a malformed
    /// message 2 (or one with a bad ephemeral key) [`HandshakeError::Failed`];
    /// a message 2 gives the step that needs the static X25519.
    pub fn read_answer(self, msg: &[u8]) -> Result<AwaitingStaticDh, HandshakeError> {
        if msg.first() == Some(&super::REFUSAL) {
            return Err(Refusal::parse(msg).map_or(HandshakeError::Failed, HandshakeError::Refused));
        }
        if msg.len() < HELLO2_FIXED + TAG_LEN || msg[0] != SERVER_HELLO || msg[1] != VERSION {
            return Err(HandshakeError::Failed);
        }
        let n = read_u32(&msg[34..]);
        if n > self.limits.max_handshake_payload || msg.len() != HELLO2_FIXED + n as usize + TAG_LEN
        {
            return Err(HandshakeError::Failed);
        }
        let (body, tag2) = msg.split_at(HELLO2_FIXED + n as usize);
        let es_pub = read_key(&msg[2..]);

        let mut t = self.transcript;
        t.mix_hash(body);
        // A low-order ephemeral key fails here, before any agent sees it.
        let ee = self
            .ephemeral
            .diffie_hellman(&es_pub)
            .map_err(|_| HandshakeError::Failed)?;
        let _ = t.mix_key(ee.dangerous_as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(tag2);
        Ok(AwaitingStaticDh {
            transcript: t,
            server_ephemeral: es_pub,
            payload: body[HELLO2_FIXED..].to_vec(),
            tag,
            limits: self.limits,
        })
    }
}

impl AwaitingStaticDh {
    /// The server's ephemeral public key: the agent's X25519 is of the
    /// client's static secret with this key.
    pub fn server_ephemeral(&self) -> &PublicKey {
        &self.server_ephemeral
    }

    /// Finishes the handshake with `se`, the X25519 of the client's static
    /// secret with [`server_ephemeral`](Self::server_ephemeral): message 2's
    /// tag is checked, and the session and the server's payload (if any)
    /// are given. A tag that does not verify (a wrong `se`, a forged
    /// message) is [`HandshakeError::Failed`].
    pub fn finish(self, se: &SharedSecret) -> Result<(Session, Option<String>), HandshakeError> {
        let mut t = self.transcript;
        let k2 = t.mix_key(se.dangerous_as_bytes());
        let expected = t.tag(&k2);
        if !bool::from(expected.ct_eq(&self.tag)) {
            return Err(HandshakeError::Failed);
        }
        t.mix_hash(&self.tag);

        let payload = &self.payload[..];
        let payload = if payload.is_empty() {
            None
        } else {
            // Authenticated, but still only accepted as JSON text.
            if !is_json(payload) {
                return Err(HandshakeError::Failed);
            }
            Some(String::from_utf8_lossy(payload).into_owned())
        };
        let (c2s, s2c) = t.transport_keys();
        let session = Session::new(
            Role::Client,
            &c2s,
            &s2c,
            t.hash(),
            self.limits.max_message_size,
        );
        Ok((session, payload))
    }
}
