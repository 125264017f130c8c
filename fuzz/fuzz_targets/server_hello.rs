//! Message 1 as the server checks it: `accept_hello` on arbitrary bytes.
//!
//! Input: one selector byte, then the rest.
//! - bits 0-1: which vector's server key, psk and prologue (and clock);
//! - bits 2-3: the client policy: any client, authorized_keys with the
//!   vector's client key, or authorized_keys without it;
//! - bit 7 clear: the rest is message 1 as received. When it is accepted,
//!   message 2 is made, and the same bytes again must be refused (replay);
//! - bit 7 set: the rest is the client's handshake payload (UTF-8). A client
//!   with the vector's keys sends it; the server must accept exactly what
//!   the client sent (or refuse a client it does not authorise), and the
//!   two ends must agree on the session.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::handshake::{
    ClientConfig, RefusalCode, ServerConfig, accept_hello, claimed_client_key,
};
use sigil_core::keys::SecretKey;
use sigil_fuzz::{Auth, CASES, CLIENTS, SERVERS, case, client_start, replay_cache};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector & 3) % CASES.len();
    let case = case(selector & 3);
    let auth = Auth::from_bits(selector >> 2);
    let auth_index = Auth::ALL.iter().position(|&a| a == auth).unwrap_or(0);
    let config = &SERVERS[index][auth_index];
    if selector & 0x80 == 0 {
        raw_hello(config, case, rest);
    } else if let Ok(payload) = std::str::from_utf8(rest) {
        round_trip(config, &CLIENTS[index], case, auth, payload);
    }
});

/// Arbitrary bytes as message 1.
fn raw_hello(config: &ServerConfig, case: &sigil_fuzz::Case, msg: &[u8]) {
    let mut replay = replay_cache();
    let now = case.timestamp_ms;
    let claimed = claimed_client_key(msg);
    match accept_hello(config, &mut replay, now, msg) {
        Err(refusal) => {
            // What the server sends back must be a refusal a client reads.
            let bytes = refusal.to_bytes();
            let parsed = sigil_core::handshake::Refusal::parse(&bytes)
                .expect("a refusal the server makes parses");
            assert_eq!(parsed.code(), refusal.code());
            assert_eq!(parsed.reason(), refusal.reason());
        }
        Ok(hello) => {
            assert!(config.is_authorized(hello.client_key()));
            assert_eq!(claimed.as_ref(), Some(hello.client_key()));
            assert!(now.abs_diff(hello.timestamp_ms()) <= config.limits().max_clock_skew_ms);
            if let Some(payload) = hello.payload() {
                assert!(serde_json::from_str::<serde::de::IgnoredAny>(payload).is_ok());
            }
            let accepted = hello.dangerous_accept_with_ephemeral(
                SecretKey::from_bytes(&case.server_ephemeral),
                case.server_payload.as_deref(),
            );
            assert!(accepted.is_ok(), "message 2 for an accepted hello");
            let again = accept_hello(config, &mut replay, now, msg);
            assert!(again.is_err(), "the same hello twice is a replay");
        }
    }
}

/// A real client's hello carrying `payload`.
fn round_trip(
    config: &ServerConfig,
    client: &ClientConfig,
    case: &sigil_fuzz::Case,
    auth: Auth,
    payload: &str,
) {
    let payload = (!payload.is_empty()).then_some(payload);
    // The client refuses to send what is not one JSON value, or too much.
    let Ok((hs, msg1)) = client_start(case, client, payload) else {
        return;
    };
    let result = accept_hello(config, &mut replay_cache(), case.timestamp_ms, &msg1);
    let hello = match (auth, result) {
        (Auth::Other, Err(refusal)) => {
            assert_eq!(refusal.code(), RefusalCode::HandshakeFailed);
            return;
        }
        (Auth::Other, Ok(_)) => panic!("a client that is not in authorized_keys was accepted"),
        (_, Err(refusal)) => panic!("a valid hello was refused: {refusal}"),
        (_, Ok(hello)) => hello,
    };
    assert_eq!(hello.payload(), payload, "the payload the client sent");
    assert_eq!(*hello.client_key(), client.public_key());
    let (msg2, mut server) = hello
        .dangerous_accept_with_ephemeral(
            SecretKey::from_bytes(&case.server_ephemeral),
            case.server_payload.as_deref(),
        )
        .expect("message 2 is made");
    let (mut client_session, reply) = hs.finish(&msg2).expect("the client accepts message 2");
    assert_eq!(reply, case.server_payload);
    assert_eq!(client_session.session_hash(), server.session_hash());
    // One frame each way.
    let mut frame = Vec::new();
    client_session
        .seal(payload.unwrap_or("").as_bytes(), &mut frame)
        .expect("a frame is sealed");
    assert_eq!(
        server
            .open(&frame)
            .expect("the server opens the client's frame"),
        payload.unwrap_or("").as_bytes()
    );
}
