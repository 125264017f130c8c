//! Fixtures shared by the fuzz targets: the sigil/1 vectors of
//! `tests/vectors/sigil1.json` (keys, timestamps, messages), read once, and
//! the configs, handshakes and sessions made from them.
//!
//! A fuzz target must be deterministic: everything here is built from the
//! vectors' fixed keys, ephemeral keys and timestamps, never from a clock or
//! a random source.

use std::sync::LazyLock;

use serde::Deserialize;
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, HandshakeError, ServerConfig, accept_hello,
};
use sigil_core::keys::{PublicKey, SecretKey, SymmetricKey};
use sigil_core::replay::ReplayCache;
use sigil_core::transport::Session;

const SIGIL1: &str = include_str!("../../tests/vectors/sigil1.json");

/// Replay cache capacity for one fuzz input (a fresh cache per input).
pub const REPLAY_CAPACITY: usize = 1024;

#[derive(Deserialize)]
struct VectorFile {
    handshakes: Vec<CaseText>,
}

#[derive(Deserialize)]
struct CaseText {
    name: String,
    prologue_hex: String,
    psk_hex: Option<String>,
    server_static_secret_hex: String,
    client_static_secret_hex: String,
    client_ephemeral_secret_hex: String,
    server_ephemeral_secret_hex: String,
    timestamp_ms: u64,
    client_payload: String,
    server_payload: String,
    msg1_hex: String,
    msg2_hex: String,
    frames: Vec<FrameText>,
}

#[derive(Deserialize)]
struct FrameText {
    direction: String,
    frame_hex: String,
}

/// One handshake of the vectors.
pub struct Case {
    /// The vector's name (`basic`, `prologue`, `psk`, `prologue+psk`).
    pub name: String,
    pub prologue: Vec<u8>,
    pub psk: Option<[u8; 32]>,
    pub server_static: [u8; 32],
    pub client_static: [u8; 32],
    pub client_ephemeral: [u8; 32],
    pub server_ephemeral: [u8; 32],
    pub timestamp_ms: u64,
    pub client_payload: Option<String>,
    pub server_payload: Option<String>,
    pub msg1: Vec<u8>,
    pub msg2: Vec<u8>,
    /// Frames sent by the client (opened by the server).
    pub c2s: Vec<Vec<u8>>,
    /// Frames sent by the server (opened by the client).
    pub s2c: Vec<Vec<u8>>,
}

/// Which client keys a server built by [`server_config`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `ClientAuth::AllowAny`.
    Any,
    /// `ClientAuth::Keys` holding the vector's client key (and another).
    Client,
    /// `ClientAuth::Keys` without the vector's client key.
    Other,
}

impl Auth {
    pub const ALL: [Auth; 3] = [Auth::Any, Auth::Client, Auth::Other];

    /// The policy chosen by two bits of a fuzz input.
    pub fn from_bits(bits: u8) -> Auth {
        match bits & 3 {
            1 => Auth::Client,
            2 => Auth::Other,
            _ => Auth::Any,
        }
    }
}

/// Decodes hex written by the vectors' generator (lowercase, even length).
pub fn unhex(text: &str) -> Vec<u8> {
    fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not a hex digit in the vectors: {c:?}"),
        }
    }
    assert!(
        text.len().is_multiple_of(2),
        "odd hex length in the vectors"
    );
    text.as_bytes()
        .chunks(2)
        .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
        .collect()
}

fn key32(text: &str) -> [u8; 32] {
    unhex(text)
        .try_into()
        .unwrap_or_else(|_| panic!("not a 32-byte key in the vectors: {text}"))
}

fn none_if_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The handshakes of the vectors, in file order.
pub static CASES: LazyLock<Vec<Case>> = LazyLock::new(|| {
    let file: VectorFile = serde_json::from_str(SIGIL1).expect("sigil1.json parses");
    file.handshakes
        .into_iter()
        .map(|c| {
            let frames = |dir: &str| {
                c.frames
                    .iter()
                    .filter(|f| f.direction == dir)
                    .map(|f| unhex(&f.frame_hex))
                    .collect()
            };
            Case {
                c2s: frames("c2s"),
                s2c: frames("s2c"),
                name: c.name,
                prologue: unhex(&c.prologue_hex),
                psk: c.psk_hex.as_deref().map(key32),
                server_static: key32(&c.server_static_secret_hex),
                client_static: key32(&c.client_static_secret_hex),
                client_ephemeral: key32(&c.client_ephemeral_secret_hex),
                server_ephemeral: key32(&c.server_ephemeral_secret_hex),
                timestamp_ms: c.timestamp_ms,
                client_payload: none_if_empty(c.client_payload),
                server_payload: none_if_empty(c.server_payload),
                msg1: unhex(&c.msg1_hex),
                msg2: unhex(&c.msg2_hex),
            }
        })
        .collect()
});

/// The client config of each case, built once.
pub static CLIENTS: LazyLock<Vec<ClientConfig>> =
    LazyLock::new(|| CASES.iter().map(client_config).collect());

/// `SERVERS[case][auth]`: the server config of each case under each policy
/// of [`Auth::ALL`], built once.
pub static SERVERS: LazyLock<Vec<Vec<ServerConfig>>> = LazyLock::new(|| {
    CASES
        .iter()
        .map(|c| Auth::ALL.iter().map(|&a| server_config(c, a)).collect())
        .collect()
});

/// The server config of case `index` under `auth`.
pub fn server(index: usize, auth: Auth) -> &'static ServerConfig {
    let column = Auth::ALL.iter().position(|&a| a == auth).unwrap_or(0);
    &SERVERS[index][column]
}

/// The case chosen by two bits of a fuzz input.
pub fn case(bits: u8) -> &'static Case {
    &CASES[usize::from(bits) % CASES.len()]
}

/// A public key that is no vector's client key.
pub fn stranger() -> PublicKey {
    SecretKey::from_bytes(&[0x42; 32]).public_key()
}

/// The server side of `case` with the given client policy.
pub fn server_config(case: &Case, auth: Auth) -> ServerConfig {
    let client = SecretKey::from_bytes(&case.client_static).public_key();
    let auth = match auth {
        Auth::Any => ClientAuth::AllowAny,
        Auth::Client => ClientAuth::Keys(vec![stranger(), client]),
        Auth::Other => ClientAuth::Keys(vec![stranger()]),
    };
    let mut config = ServerConfig::new(SecretKey::from_bytes(&case.server_static), auth)
        .expect("the vectors' keys make a server config");
    if let Some(psk) = &case.psk {
        config = config.with_psk(SymmetricKey::from_bytes(psk));
    }
    if !case.prologue.is_empty() {
        config = config.with_prologue(&case.prologue);
    }
    config
}

/// The client side of `case`.
pub fn client_config(case: &Case) -> ClientConfig {
    let server = SecretKey::from_bytes(&case.server_static).public_key();
    let mut config = ClientConfig::new(SecretKey::from_bytes(&case.client_static), server)
        .expect("the vectors' keys make a client config");
    if let Some(psk) = &case.psk {
        config = config.with_psk(SymmetricKey::from_bytes(psk));
    }
    if !case.prologue.is_empty() {
        config = config.with_prologue(&case.prologue);
    }
    config
}

/// Starts the client's handshake of `case` with its fixed ephemeral key and
/// timestamp, sending `payload`: the handshake and message 1.
pub fn client_start(
    case: &Case,
    config: &ClientConfig,
    payload: Option<&str>,
) -> Result<(ClientHandshake, Vec<u8>), HandshakeError> {
    ClientHandshake::dangerous_start_with_ephemeral(
        config,
        SecretKey::from_bytes(&case.client_ephemeral),
        case.timestamp_ms,
        payload,
    )
}

/// A fresh replay cache for one input.
pub fn replay_cache() -> ReplayCache {
    ReplayCache::new(REPLAY_CAPACITY, 60_000)
}

/// The client's session of `case` (it opens `s2c` frames): the client's
/// handshake finished with the vector's message 2.
pub fn client_session(case: &Case, config: &ClientConfig) -> Session {
    let (hs, _) = client_start(case, config, case.client_payload.as_deref())
        .expect("the vector's message 1 is made");
    let (session, _) = hs
        .finish(&case.msg2)
        .expect("the vector's message 2 verifies");
    session
}

/// The server's session of `case` (it opens `c2s` frames): the vector's
/// message 1 accepted with the vector's ephemeral key.
pub fn server_session(case: &Case, config: &ServerConfig) -> Session {
    let hello = accept_hello(config, &mut replay_cache(), case.timestamp_ms, &case.msg1)
        .expect("the vector's message 1 is accepted");
    let (_, session) = hello
        .dangerous_accept_with_ephemeral(
            SecretKey::from_bytes(&case.server_ephemeral),
            case.server_payload.as_deref(),
        )
        .expect("the vector's message 2 is made");
    session
}

/// Splits fuzz bytes into chunks, each written as a big-endian `u16` length
/// and that many bytes (the last chunk takes what is left if its length
/// runs past the end).
pub fn chunks(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let n = n.min(rest.len());
        out.push(&rest[..n]);
        data = &rest[n..];
    }
    out
}
