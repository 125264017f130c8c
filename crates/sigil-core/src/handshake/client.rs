//! The client's side of the handshake.

use zeroize::Zeroizing;

use super::transcript::Transcript;
use super::{
    CLIENT_HELLO, HELLO2_FIXED, HandshakeError, Limits, Refusal, SERVER_HELLO, TAG_LEN, VERSION,
    check_own_payload, is_json, read_key, read_u32,
};
use crate::keys::{PublicKey, SecretKey, SymmetricKey};
use crate::rand::RandomSource;
use crate::transport::{Role, Session};
use subtle::ConstantTimeEq;

/// What a client needs to run handshakes with one server: its own key, the
/// server's pinned public key, and the optional psk and prologue.
///
/// Building it computes the static-static Diffie-Hellman result (`ss`) and
/// the initial transcript once; every handshake reuses them.
pub struct ClientConfig {
    static_key: SecretKey,
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
        let ss = Zeroizing::new(*static_key.diffie_hellman(&server_key)?.dangerous_as_bytes());
        Ok(ClientConfig {
            initial: Transcript::initial(&[], &server_key, None),
            static_key,
            server_key,
            psk: None,
            prologue: Vec::new(),
            ss,
            limits: Limits::default(),
        })
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
        self.static_key.public_key()
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
    static_key: SecretKey,
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
        msg.extend_from_slice(config.static_key.public_key().as_bytes());
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

        let static_key = config.static_key.duplicate();
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
    /// [`HandshakeError::Failed`].
    pub fn finish(self, msg: &[u8]) -> Result<(Session, Option<String>), HandshakeError> {
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
        let ee = self
            .ephemeral
            .diffie_hellman(&es_pub)
            .map_err(|_| HandshakeError::Failed)?;
        let _ = t.mix_key(ee.dangerous_as_bytes());
        let se = self
            .static_key
            .diffie_hellman(&es_pub)
            .map_err(|_| HandshakeError::Failed)?;
        let k2 = t.mix_key(se.dangerous_as_bytes());
        let expected = t.tag(&k2);
        if !bool::from(expected.ct_eq(tag2)) {
            return Err(HandshakeError::Failed);
        }
        t.mix_hash(tag2);

        let payload = &body[HELLO2_FIXED..];
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
