//! Refusals: `0x03 | 0x01 | code u16 | n u32 | reason (n ≤ 256, UTF-8)`.

use super::{REFUSAL, VERSION};

/// Longest refusal reason on the wire, in bytes.
pub const MAX_REASON_LEN: usize = 256;
const REFUSAL_FIXED: usize = 1 + 1 + 2 + 4;

/// The reason every cryptographic or key failure gives the peer.
pub const GENERIC_REASON: &str = "handshake failed";
/// The reason of a code-3 refusal when there is nothing more to say.
pub const BUSY_REASON: &str = "server busy: try again later";

/// The refusal codes of sigil/1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalCode {
    /// 1: every cryptographic or key failure (one code, no oracle), and malformed hellos.
    HandshakeFailed,
    /// 2: rejected by the application (its reason is sent).
    Rejected,
    /// 3: the server is busy (for example its replay cache is full).
    Busy,
    /// 4: unsupported protocol version.
    UnsupportedVersion,
    /// 5: stale timestamp or replayed hello.
    StaleOrReplayed,
    /// A code this implementation does not know (received only).
    Other(u16),
}

impl RefusalCode {
    /// The code's number on the wire.
    pub fn as_u16(self) -> u16 {
        match self {
            RefusalCode::HandshakeFailed => 1,
            RefusalCode::Rejected => 2,
            RefusalCode::Busy => 3,
            RefusalCode::UnsupportedVersion => 4,
            RefusalCode::StaleOrReplayed => 5,
            RefusalCode::Other(c) => c,
        }
    }

    /// The code for a number on the wire.
    pub fn from_u16(code: u16) -> RefusalCode {
        match code {
            1 => RefusalCode::HandshakeFailed,
            2 => RefusalCode::Rejected,
            3 => RefusalCode::Busy,
            4 => RefusalCode::UnsupportedVersion,
            5 => RefusalCode::StaleOrReplayed,
            c => RefusalCode::Other(c),
        }
    }

    /// What the code means, in a few words: "handshake failed".
    pub fn description(self) -> &'static str {
        match self {
            RefusalCode::HandshakeFailed => "handshake failed",
            RefusalCode::Rejected => "rejected by the application",
            RefusalCode::Busy => "busy",
            RefusalCode::UnsupportedVersion => "unsupported version",
            RefusalCode::StaleOrReplayed => "stale or replayed",
            RefusalCode::Other(_) => "unknown code",
        }
    }

    /// What a client's user can do about it, if anything. Every client
    /// (native, browser, the `sigil` command) shows these same words.
    pub fn hint(self) -> Option<&'static str> {
        match self {
            RefusalCode::HandshakeFailed => Some(
                "check the pinned server key (the `public key:` line of `sigil serve`), that the \
                 server's authorized_keys lists this client's public key (`sigil pubkey KEYFILE` \
                 prints it), and the psk and prologue",
            ),
            RefusalCode::Busy => Some("the server is busy: try again later"),
            RefusalCode::UnsupportedVersion => {
                Some("the server speaks another version of the protocol")
            }
            RefusalCode::StaleOrReplayed => {
                Some("check this machine's clock: it may be too far from the server's")
            }
            RefusalCode::Rejected | RefusalCode::Other(_) => None,
        }
    }
}

/// What really went wrong, for the server's own log. Never sent: the peer
/// sees only the code and the (generic, for cryptographic failures) reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalDetail {
    /// Too short, wrong type byte, or a length that does not match.
    Malformed,
    /// Type 0x01 with another version byte.
    UnsupportedVersion,
    /// Declared payload over `max_handshake_payload`.
    PayloadTooLarge,
    /// Timestamp outside the clock-skew window.
    ClockSkew,
    /// `tag1` did not verify (wrong server key, psk or prologue, or tampering).
    BadTag,
    /// A Diffie-Hellman result was all zero (low-order key).
    LowOrderKey,
    /// The client's static key is not authorised.
    UnauthorizedClient,
    /// The client's ephemeral key was seen before within the window.
    Replayed,
    /// The replay cache is full.
    ReplayCacheFull,
    /// The replay store could not be asked, or did not answer in time (a
    /// shared store fails closed: no answer is never taken as fresh).
    ReplayStoreUnavailable,
    /// The client (its key, or its address under `allow_any_client`) is over
    /// its rate or its share of the replay cache.
    OverQuota,
    /// The client's address sent hellos faster than the server allows under
    /// load (before any X25519 work).
    RateLimited,
    /// The server is at a limit outside the handshake (connections, load).
    Overloaded,
    /// The payload is not JSON.
    InvalidPayload,
    /// The application's hook refused.
    Application,
    /// Received from a peer (client side): no local detail.
    Remote,
}

/// A refusal: its code and reason (sent), and its detail (local only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    code: RefusalCode,
    reason: String,
    detail: RefusalDetail,
}

impl Refusal {
    pub(crate) fn new(code: RefusalCode, reason: &str, detail: RefusalDetail) -> Refusal {
        Refusal {
            code,
            reason: truncate(reason, MAX_REASON_LEN).to_owned(),
            detail,
        }
    }

    /// A refusal for a cryptographic or key failure: code 1, generic reason.
    pub(crate) fn generic(detail: RefusalDetail) -> Refusal {
        Refusal::new(RefusalCode::HandshakeFailed, GENERIC_REASON, detail)
    }

    /// A refusal for server-side reasons outside the handshake itself (for
    /// example too many connections): code 3 with the given reason.
    pub fn busy(reason: &str) -> Refusal {
        Refusal::new(RefusalCode::Busy, reason, RefusalDetail::Overloaded)
    }

    /// A refusal for an address over its hello rate: code 3, checked by the
    /// server before any X25519 work.
    pub fn rate_limited() -> Refusal {
        Refusal::new(RefusalCode::Busy, BUSY_REASON, RefusalDetail::RateLimited)
    }

    /// The code.
    pub fn code(&self) -> RefusalCode {
        self.code
    }

    /// The reason as sent (at most 256 bytes).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// What really went wrong (server side); `Remote` for a received refusal.
    pub fn detail(&self) -> RefusalDetail {
        self.detail
    }

    /// The refusal message's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = self.reason.as_bytes();
        let mut out = Vec::with_capacity(REFUSAL_FIXED + reason.len());
        out.push(REFUSAL);
        out.push(VERSION);
        out.extend_from_slice(&self.code.as_u16().to_be_bytes());
        // At most 256 bytes, see `new`.
        out.extend_from_slice(&(reason.len() as u32).to_be_bytes());
        out.extend_from_slice(reason);
        out
    }

    /// Reads a refusal message. `None` unless it is exactly one well-formed
    /// refusal (a reason that is not UTF-8 is replaced lossily). The version
    /// byte is not checked, so that a refusal from a server of another
    /// version (code 4) is still understood.
    pub fn parse(msg: &[u8]) -> Option<Refusal> {
        if msg.len() < REFUSAL_FIXED || msg[0] != REFUSAL {
            return None;
        }
        let code = u16::from_be_bytes([msg[2], msg[3]]);
        let n = super::read_u32(&msg[4..]) as usize;
        if n > MAX_REASON_LEN || msg.len() != REFUSAL_FIXED + n {
            return None;
        }
        // Repairing bad UTF-8 can triple its length (U+FFFD is 3 bytes):
        // cut it back, so that `reason()` keeps its promise of 256 bytes.
        let reason = String::from_utf8_lossy(&msg[REFUSAL_FIXED..]);
        Some(Refusal {
            code: RefusalCode::from_u16(code),
            reason: truncate(&reason, MAX_REASON_LEN).to_owned(),
            detail: RefusalDetail::Remote,
        })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code.as_u16(), self.reason)
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let long = "é".repeat(200); // 400 bytes
        let r = Refusal::new(RefusalCode::Rejected, &long, RefusalDetail::Application);
        assert_eq!(r.reason().len(), 256);
        let back = Refusal::parse(&r.to_bytes()).unwrap();
        assert_eq!(back.code(), RefusalCode::Rejected);
        assert_eq!(back.reason(), r.reason());
        assert_eq!(back.detail(), RefusalDetail::Remote);
    }

    #[test]
    fn a_repaired_reason_stays_within_256_bytes() {
        let mut msg = Refusal::generic(RefusalDetail::BadTag).to_bytes();
        msg.truncate(REFUSAL_FIXED);
        msg[4..8].copy_from_slice(&256u32.to_be_bytes());
        msg.extend_from_slice(&[0xff; 256]);
        let r = Refusal::parse(&msg).unwrap();
        assert!(r.reason().len() <= MAX_REASON_LEN);
        assert_eq!(Refusal::parse(&r.to_bytes()).unwrap().reason(), r.reason());
    }

    #[test]
    fn fail_malformed_refusals() {
        let good = Refusal::generic(RefusalDetail::BadTag).to_bytes();
        assert!(Refusal::parse(&good).is_some());
        assert!(Refusal::parse(&good[..good.len() - 1]).is_none());
        let mut long = good.clone();
        long.push(b'x');
        assert!(Refusal::parse(&long).is_none());
        let mut big = good.clone();
        big[4..8].copy_from_slice(&1000u32.to_be_bytes());
        assert!(Refusal::parse(&big).is_none());
    }
}
