//! The sigil/1 vectors of `tests/vectors/sigil1.json`, made by an independent
//! implementation, reproduced byte for byte in both roles.

#![allow(clippy::unwrap_used)] // test helpers panic on failure by design

use serde::Deserialize;
use sigil_core::handshake::{
    ClientAuth, ClientConfig, ClientHandshake, HandshakeError, ServerConfig, accept_hello,
};
use sigil_core::kdf::{hmac_sha256, pairwise_key};
use sigil_core::keys::{PublicKey, SecretKey, SharedSecret, SymmetricKey};
use sigil_core::replay::ReplayCache;
use sigil_core::transport::Session;

const SIGIL1: &str = include_str!("../../../tests/vectors/sigil1.json");

#[derive(Deserialize)]
struct File {
    handshakes: Vec<Case>,
    pairwise: Vec<Pairwise>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    prologue_hex: String,
    psk_hex: Option<String>,
    server_static_secret_hex: String,
    server_static_public_hex: String,
    client_static_secret_hex: String,
    client_static_public_hex: String,
    client_ephemeral_secret_hex: String,
    server_ephemeral_secret_hex: String,
    timestamp_ms: u64,
    client_payload: String,
    server_payload: String,
    msg1_hex: String,
    msg2_hex: String,
    session_hash_hex: String,
    k_c2s_hex: String,
    k_s2c_hex: String,
    frames: Vec<Frame>,
}

#[derive(Deserialize)]
struct Frame {
    direction: String,
    seq: u64,
    payload: String,
    frame_hex: String,
}

#[derive(Deserialize)]
struct Pairwise {
    name: String,
    context: Option<String>,
    alice_secret_b64: String,
    alice_public_b64: String,
    bob_secret_b64: String,
    bob_public_b64: String,
    key_b64: String,
}

fn load() -> File {
    serde_json::from_str(SIGIL1).expect("sigil1.json parses")
}

fn bytes32(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn secret(h: &str) -> SecretKey {
    SecretKey::from_bytes(&bytes32(h))
}

fn none_if_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

fn client_config(case: &Case) -> ClientConfig {
    let server = PublicKey::from_bytes(bytes32(&case.server_static_public_hex));
    let mut cfg = ClientConfig::new(secret(&case.client_static_secret_hex), server).unwrap();
    if let Some(psk) = &case.psk_hex {
        cfg = cfg.with_psk(SymmetricKey::from_bytes(&bytes32(psk)));
    }
    cfg.with_prologue(&hex::decode(&case.prologue_hex).unwrap())
}

fn server_config(case: &Case) -> ServerConfig {
    let client = PublicKey::from_bytes(bytes32(&case.client_static_public_hex));
    let mut cfg = ServerConfig::new(
        secret(&case.server_static_secret_hex),
        ClientAuth::Keys(vec![client]),
    )
    .unwrap();
    if let Some(psk) = &case.psk_hex {
        cfg = cfg.with_psk(SymmetricKey::from_bytes(&bytes32(psk)));
    }
    cfg.with_prologue(&hex::decode(&case.prologue_hex).unwrap())
}

/// Seals the frames this role sends and opens the frames it receives.
fn check_frames(case: &Case, session: &mut Session, sends: &str) {
    for f in &case.frames {
        let frame = hex::decode(&f.frame_hex).unwrap();
        if f.direction == sends {
            let mut out = Vec::new();
            session.seal(f.payload.as_bytes(), &mut out).unwrap();
            assert_eq!(
                hex::encode(&out),
                f.frame_hex,
                "{} {} seq {}",
                case.name,
                f.direction,
                f.seq
            );
        } else {
            let payload = session.open(&frame).unwrap();
            assert_eq!(
                payload,
                f.payload.as_bytes(),
                "{} {} seq {}",
                case.name,
                f.direction,
                f.seq
            );
        }
        // The vector's own tag is HMAC under the vector's key for that direction.
        let key = if f.direction == "c2s" {
            &case.k_c2s_hex
        } else {
            &case.k_s2c_hex
        };
        let (signed, tag) = frame.split_at(frame.len() - 32);
        assert_eq!(hmac_sha256(&bytes32(key), signed), tag);
    }
}

/// The client's handshake of `case` started with the vector's ephemeral
/// key; its message 1 must be the vector's.
fn start_client(case: &Case, cfg: &ClientConfig) -> ClientHandshake {
    let (hs, msg1) = ClientHandshake::dangerous_start_with_ephemeral(
        cfg,
        secret(&case.client_ephemeral_secret_hex),
        case.timestamp_ms,
        none_if_empty(&case.client_payload),
    )
    .unwrap();
    assert_eq!(
        hex::encode(&msg1),
        case.msg1_hex,
        "{}: message 1",
        case.name
    );
    hs
}

/// The client's session of `case` is the vector's: payload, hash, frames.
fn check_client_session(case: &Case, answer: Result<(Session, Option<String>), HandshakeError>) {
    let (mut session, payload) = answer.unwrap();
    assert_eq!(payload.as_deref(), none_if_empty(&case.server_payload));
    assert_eq!(
        hex::encode(session.session_hash()),
        case.session_hash_hex,
        "{}",
        case.name
    );
    check_frames(case, &mut session, "c2s");
}

#[test]
fn handshakes_client_role() {
    let file = load();
    assert_eq!(file.handshakes.len(), 4);
    for case in &file.handshakes {
        let cfg = client_config(case);
        assert_eq!(
            hex::encode(cfg.public_key().as_bytes()),
            case.client_static_public_hex
        );
        let hs = start_client(case, &cfg);
        let answer = hs.finish(&hex::decode(&case.msg2_hex).unwrap());
        check_client_session(case, answer);
    }
}

/// A key agent that holds the client's static secret and does its two
/// X25519 operations (as a browser's non-extractable WebCrypto key would):
/// the core never sees the secret, and every vector's bytes come out the same.
struct Agent(SecretKey);

impl Agent {
    fn x25519(&self, peer: &PublicKey) -> SharedSecret {
        let bytes = *self.0.diffie_hellman(peer).unwrap().dangerous_as_bytes();
        SharedSecret::from_agent(bytes).unwrap()
    }
}

#[test]
fn handshakes_client_role_with_a_key_agent() {
    let file = load();
    for case in &file.handshakes {
        let agent = Agent(secret(&case.client_static_secret_hex));
        let server = PublicKey::from_bytes(bytes32(&case.server_static_public_hex));
        let public = PublicKey::from_bytes(bytes32(&case.client_static_public_hex));
        let mut cfg = ClientConfig::from_agent(public, server, &agent.x25519(&server));
        if let Some(psk) = &case.psk_hex {
            cfg = cfg.with_psk(SymmetricKey::from_bytes(&bytes32(psk)));
        }
        let cfg = cfg.with_prologue(&hex::decode(&case.prologue_hex).unwrap());
        let msg2 = hex::decode(&case.msg2_hex).unwrap();
        let step = start_client(case, &cfg).read_answer(&msg2).unwrap();
        let se = agent.x25519(step.server_ephemeral());
        check_client_session(case, step.finish(&se));

        // Without the agent's answer the one-step finish cannot go on.
        let hs = start_client(case, &cfg);
        assert!(matches!(
            hs.finish(&msg2),
            Err(HandshakeError::StaticKeyElsewhere)
        ));
        // A wrong answer from the agent fails like a forged message 2.
        let hs = start_client(case, &cfg);
        let step = hs.read_answer(&msg2).unwrap();
        let wrong = Agent(secret(&case.server_ephemeral_secret_hex)).x25519(&server);
        assert!(matches!(step.finish(&wrong), Err(HandshakeError::Failed)));
    }
    // An all-zero result is not a Diffie-Hellman result.
    assert!(SharedSecret::from_agent([0; 32]).is_err());
}

#[test]
fn handshakes_server_role() {
    for case in &load().handshakes {
        let cfg = server_config(case);
        assert_eq!(
            hex::encode(cfg.public_key().as_bytes()),
            case.server_static_public_hex
        );
        let mut replay = ReplayCache::new(16, 60_000);
        let msg1 = hex::decode(&case.msg1_hex).unwrap();
        let hello = accept_hello(&cfg, &mut replay, case.timestamp_ms, &msg1).unwrap();
        assert_eq!(
            hex::encode(hello.client_key().as_bytes()),
            case.client_static_public_hex
        );
        assert_eq!(hello.payload(), none_if_empty(&case.client_payload));
        let (msg2, mut session) = hello
            .dangerous_accept_with_ephemeral(
                secret(&case.server_ephemeral_secret_hex),
                none_if_empty(&case.server_payload),
            )
            .unwrap();
        assert_eq!(
            hex::encode(&msg2),
            case.msg2_hex,
            "{}: message 2",
            case.name
        );
        assert_eq!(
            hex::encode(session.session_hash()),
            case.session_hash_hex,
            "{}",
            case.name
        );
        check_frames(case, &mut session, "s2c");
    }
}

#[test]
fn pairwise_keys() {
    let file = load();
    assert_eq!(file.pairwise.len(), 2);
    for case in &file.pairwise {
        let alice = SecretKey::parse(&case.alice_secret_b64).unwrap();
        let bob = SecretKey::parse(&case.bob_secret_b64).unwrap();
        assert_eq!(alice.public_key().to_string(), case.alice_public_b64);
        assert_eq!(bob.public_key().to_string(), case.bob_public_b64);
        let ctx = case.context.as_deref().map(str::as_bytes);
        let a = pairwise_key(&alice, &bob.public_key(), ctx).unwrap();
        let b = pairwise_key(&bob, &alice.public_key(), ctx).unwrap();
        assert_eq!(*a.to_base64(), case.key_b64, "{}", case.name);
        assert!(a == b, "{}: both parties derive the same key", case.name);
    }
}
