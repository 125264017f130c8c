//! The sigil/1 handshake as a sans-IO state machine for both roles.
//!
//! Bytes in, bytes out: the caller moves messages over its transport, and
//! passes in the current time and a random source. A handshake turns into a
//! [`Session`](crate::transport::Session) only by a consuming step, so a
//! session cannot exist before its keys do.
//!
//! Client: [`ClientHandshake::start`] gives message 1; [`ClientHandshake::finish`]
//! takes message 2 (or a refusal) and gives the session.
//!
//! Server: [`accept_hello`] checks message 1 in the
//! order of the specification and gives either a [`Refusal`] to send or an
//! authenticated [`ClientHello`]. A server whose replay store answers
//! asynchronously (one shared by several servers) splits it in two:
//! [`verify_hello`] checks everything but the replay and gives a
//! [`VerifiedHello`], whose replay entry goes to the store and whose
//! [`with_verdict`](VerifiedHello::with_verdict) takes the store's answer. The application looks at the client's key
//! and payload (its handshake hook) and calls [`ClientHello::accept`] (message
//! 2 and the session) or [`ClientHello::refuse`].

mod client;
mod refusal;
mod server;
mod transcript;

pub use client::{AwaitingStaticDh, ClientConfig, ClientHandshake};
pub use refusal::{
    BUSY_REASON, GENERIC_REASON, MAX_REASON_LEN, Refusal, RefusalCode, RefusalDetail,
};
pub use server::{
    ClientAuth, ClientHello, ServerConfig, VerifiedHello, accept_hello, claimed_client_key,
    verify_hello,
};

use crate::keys::KeyError;
use crate::rand::RandomError;

/// Version byte of sigil/1.
pub const VERSION: u8 = 0x01;
/// Type byte of message 1 (ClientHello).
pub const CLIENT_HELLO: u8 = 0x01;
/// Type byte of message 2 (ServerHello).
pub const SERVER_HELLO: u8 = 0x02;
/// Type byte of a refusal.
pub const REFUSAL: u8 = 0x03;
/// Fixed bytes of message 1 before its payload: type, version, EC, C, timestamp, n.
pub const HELLO1_FIXED: usize = 1 + 1 + 32 + 32 + 8 + 4;
/// Fixed bytes of message 2 before its payload: type, version, ES, n.
pub const HELLO2_FIXED: usize = 1 + 1 + 32 + 4;
/// Bytes of a handshake tag.
pub const TAG_LEN: usize = 32;

/// Size and time limits of a handshake and the session it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest handshake payload accepted or sent (bytes).
    pub max_handshake_payload: u32,
    /// Largest transport frame payload accepted or sent (bytes).
    pub max_message_size: u32,
    /// Largest accepted difference between the client's timestamp and the
    /// server's clock (milliseconds; server only).
    pub max_clock_skew_ms: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_handshake_payload: 4096,
            max_message_size: 1 << 20,
            max_clock_skew_ms: 60_000,
        }
    }
}

/// Why a handshake did not complete, as seen by the party running it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The server refused the handshake (code and reason are the server's
    /// word: refusals are not authenticated).
    #[error("the server refused the handshake: {0}")]
    Refused(Refusal),
    /// The peer's message was malformed or did not authenticate. Deliberately
    /// unspecific.
    #[error("handshake failed")]
    Failed,
    /// Our own payload is over `max_handshake_payload`.
    #[error("handshake payload of {len} bytes is over the limit of {max} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// Our own payload is not one JSON value.
    #[error("handshake payload is not valid JSON")]
    InvalidPayload,
    /// A key is unusable (for example a low-order server key in the config).
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The random source failed.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// The client's static key is held by an agent
    /// ([`ClientConfig::from_agent`]): finish the handshake with
    /// [`ClientHandshake::read_answer`] and the agent's Diffie-Hellman result.
    #[error("the static key is held by an agent: finish with its Diffie-Hellman result")]
    StaticKeyElsewhere,
}

/// Checks that a non-empty handshake payload is one JSON value, without
/// building it (serde_json bounds the nesting depth).
pub(crate) fn is_json(payload: &[u8]) -> bool {
    // serde_json does not check the UTF-8 of strings it skips: check first.
    std::str::from_utf8(payload).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok()
}

/// Checks one of our own outgoing payloads against the limit and JSON.
pub(crate) fn check_own_payload(payload: Option<&str>, max: u32) -> Result<&[u8], HandshakeError> {
    let bytes = payload.unwrap_or("").as_bytes();
    if bytes.len() > max as usize {
        return Err(HandshakeError::PayloadTooLarge {
            len: bytes.len(),
            max,
        });
    }
    if !bytes.is_empty() && !is_json(bytes) {
        return Err(HandshakeError::InvalidPayload);
    }
    Ok(bytes)
}

pub(crate) fn read_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_be_bytes(a)
}

pub(crate) fn read_key(b: &[u8]) -> crate::keys::PublicKey {
    let mut a = [0u8; 32];
    a.copy_from_slice(&b[..32]);
    crate::keys::PublicKey::from_bytes(a)
}
