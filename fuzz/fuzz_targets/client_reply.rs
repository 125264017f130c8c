//! Message 2 and refusals as the client checks them: `ClientHandshake::finish`
//! (and `Refusal::parse`) on arbitrary bytes.
//!
//! Input: one selector byte, then the rest.
//! - bits 0-1: which vector (the client's keys, psk, prologue, ephemeral key
//!   and timestamp; the handshake is started as in the vector);
//! - bit 7 clear: the rest is the server's answer as received;
//! - bit 7 set: the rest is the server's handshake response payload (UTF-8):
//!   the server answers the vector's message 1 with it, and the client must
//!   accept exactly that payload and agree on the session.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sigil_core::handshake::{ClientConfig, HandshakeError, Refusal, ServerConfig, accept_hello};
use sigil_core::keys::SecretKey;
use sigil_fuzz::{Auth, CASES, CLIENTS, case, client_start, replay_cache, server};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let index = usize::from(selector & 3) % CASES.len();
    let case = case(selector & 3);
    let client = &CLIENTS[index];
    if selector & 0x80 == 0 {
        raw_reply(client, case, rest);
    } else if let Ok(payload) = std::str::from_utf8(rest) {
        round_trip(server(index, Auth::Client), client, case, payload);
    }
});

/// Arbitrary bytes as the server's answer.
fn raw_reply(client: &ClientConfig, case: &sigil_fuzz::Case, msg: &[u8]) {
    let parsed = Refusal::parse(msg);
    if let Some(refusal) = &parsed {
        // Only the code and reason are read; the reason may have been
        // repaired (lossy UTF-8), and the code is any u16.
        let _ = refusal.to_string();
        let _ = refusal.code().as_u16();
    }
    let (hs, _) = client_start(case, client, case.client_payload.as_deref())
        .expect("the vector's message 1 is made");
    match hs.finish(msg) {
        Ok((_session, payload)) => {
            assert!(parsed.is_none(), "a refusal was taken for message 2");
            if let Some(payload) = payload {
                assert!(serde_json::from_str::<serde::de::IgnoredAny>(&payload).is_ok());
            }
        }
        Err(HandshakeError::Refused(refusal)) => {
            let parsed = parsed.expect("a refusal the client reports parses on its own");
            assert_eq!(parsed.code(), refusal.code());
            assert_eq!(parsed.reason(), refusal.reason());
            let _ = HandshakeError::Refused(refusal).to_string();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The vector's handshake, with the server's payload from the input.
fn round_trip(
    server: &ServerConfig,
    client: &ClientConfig,
    case: &sigil_fuzz::Case,
    payload: &str,
) {
    let payload = (!payload.is_empty()).then_some(payload);
    let (hs, msg1) = client_start(case, client, case.client_payload.as_deref())
        .expect("the vector's message 1 is made");
    let hello = accept_hello(server, &mut replay_cache(), case.timestamp_ms, &msg1)
        .expect("the vector's message 1 is accepted");
    // The server refuses to send what is not one JSON value, or too much.
    let Ok((msg2, mut server_session)) = hello
        .dangerous_accept_with_ephemeral(SecretKey::from_bytes(&case.server_ephemeral), payload)
    else {
        return;
    };
    let (mut session, reply) = hs
        .finish(&msg2)
        .expect("the client accepts a real message 2");
    assert_eq!(reply.as_deref(), payload, "the payload the server sent");
    assert_eq!(session.session_hash(), server_session.session_hash());
    let mut frame = Vec::new();
    server_session
        .seal(payload.unwrap_or("").as_bytes(), &mut frame)
        .expect("a frame is sealed");
    assert_eq!(
        session
            .open(&frame)
            .expect("the client opens the server's frame"),
        payload.unwrap_or("").as_bytes()
    );
}
