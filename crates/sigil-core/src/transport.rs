//! Transport frames of sigil/1: signed, sequenced messages after the handshake.
//!
//! ```text
//! 0x10 | seq u64 | n u32 | payload (n bytes) | tag (32)
//! tag = HMAC-SHA256(k_dir, every byte before tag)
//! ```
//!
//! A [`Session`] seals outgoing frames with its sending key and opens incoming
//! frames with the other direction's key; it can be [`split`](Session::split)
//! into a [`FrameSealer`] and a [`FrameOpener`] for a writer and a reader task.
//! Any failure to open a frame is final: the opener refuses everything after
//! it, and the connection must be closed.

use hmac::{KeyInit, Mac};

use crate::kdf::HmacSha256;

/// Type byte of a transport frame.
pub const FRAME_TYPE: u8 = 0x10;
/// Bytes of a frame before its payload: type, seq, n.
pub const FRAME_HEADER_LEN: usize = 1 + 8 + 4;
/// Bytes of the tag that ends a frame.
pub const TAG_LEN: usize = 32;
/// Bytes a frame adds around its payload.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + TAG_LEN;

/// Why a frame could not be sealed or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Too short, wrong type byte, or a length that does not match the declared `n`.
    #[error("malformed frame")]
    Malformed,
    /// The payload is over `max_message_size` (for an incoming frame: the declared length).
    #[error("frame payload of {len} bytes is over the limit of {max} bytes")]
    TooLarge {
        /// The payload length (declared, for an incoming frame).
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The tag does not verify: the frame was altered, or signed with another key.
    #[error("frame authentication failed")]
    BadTag,
    /// An authentic frame out of order: replayed, dropped or reordered.
    #[error("unexpected frame sequence number {got} (expected {expected})")]
    BadSequence {
        /// The sequence number the frame carries.
        got: u64,
        /// The one the receiver expected.
        expected: u64,
    },
    /// All 2^64 sequence numbers of this direction are used: the session must end.
    #[error("sequence numbers exhausted; start a new session")]
    Exhausted,
    /// An earlier frame failed to open: this direction accepts nothing more.
    #[error("the session was closed by an earlier error")]
    Closed,
}

/// Which end of a session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The party that sent message 1.
    Client,
    /// The party that sent message 2.
    Server,
}

/// Seals outgoing frames: one direction's key and sequence number.
pub struct FrameSealer {
    mac: HmacSha256,
    next_seq: Option<u64>,
    max_payload: usize,
}

impl FrameSealer {
    fn new(key: &[u8; 32], max_payload: usize) -> FrameSealer {
        FrameSealer {
            mac: keyed(key),
            next_seq: Some(0),
            max_payload,
        }
    }

    /// Appends the frame carrying `payload` to `out`.
    ///
    /// Fails, writing nothing, if the payload is over `max_message_size` or
    /// the sequence numbers are exhausted.
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        if payload.len() > self.max_payload {
            return Err(FrameError::TooLarge {
                len: payload.len() as u64,
                max: self.max_payload as u64,
            });
        }
        let seq = self.next_seq.ok_or(FrameError::Exhausted)?;
        // The limit is checked against a u32 when the session is made.
        let n = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
            len: payload.len() as u64,
            max: u64::from(u32::MAX),
        })?;
        let start = out.len();
        out.reserve(FRAME_OVERHEAD + payload.len());
        out.push(FRAME_TYPE);
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(payload);
        let mut mac = self.mac.clone();
        mac.update(&out[start..]);
        out.extend_from_slice(&mac.finalize().into_bytes());
        self.next_seq = seq.checked_add(1);
        Ok(())
    }

    /// Seals `payload` into a new buffer.
    pub fn seal_to_vec(&mut self, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(FRAME_OVERHEAD + payload.len());
        self.seal(payload, &mut out)?;
        Ok(out)
    }

    /// The sequence number the next frame will carry (`None` when exhausted).
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// Test and benchmark support: pretend `seq` frames were already sent.
    #[doc(hidden)]
    pub fn dangerous_set_next_seq(&mut self, seq: u64) {
        self.next_seq = Some(seq);
    }
}

/// Opens incoming frames: the other direction's key and sequence number.
pub struct FrameOpener {
    mac: HmacSha256,
    next_seq: Option<u64>,
    max_payload: usize,
    failed: bool,
}

impl FrameOpener {
    fn new(key: &[u8; 32], max_payload: usize) -> FrameOpener {
        FrameOpener {
            mac: keyed(key),
            next_seq: Some(0),
            max_payload,
            failed: false,
        }
    }

    /// Checks one whole frame and returns its payload.
    ///
    /// The checks run in this order: length and type byte; the declared
    /// length against `max_message_size` (before anything proportional to it
    /// is hashed); exact length; tag (constant time); sequence number. Any
    /// failure is final: every later call returns [`FrameError::Closed`].
    pub fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
        if self.failed {
            return Err(FrameError::Closed);
        }
        let result = self.check(frame);
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn check<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
        let declared = Self::declared_len(frame)?;
        if declared > self.max_payload as u64 {
            return Err(FrameError::TooLarge {
                len: declared,
                max: self.max_payload as u64,
            });
        }
        // declared ≤ max_payload ≤ u32::MAX, so this neither truncates nor overflows.
        let n = declared as usize;
        if frame.len() != FRAME_OVERHEAD + n {
            return Err(FrameError::Malformed);
        }
        let (signed, tag) = frame.split_at(FRAME_HEADER_LEN + n);
        let mut mac = self.mac.clone();
        mac.update(signed);
        mac.verify_slice(tag).map_err(|_| FrameError::BadTag)?;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&frame[1..9]);
        let got = u64::from_be_bytes(seq);
        let expected = self.next_seq.ok_or(FrameError::Exhausted)?;
        if got != expected {
            return Err(FrameError::BadSequence { got, expected });
        }
        self.next_seq = expected.checked_add(1);
        Ok(&signed[FRAME_HEADER_LEN..])
    }

    /// The payload length a frame declares, read from its header alone
    /// (checks the header's length and type byte, nothing else).
    pub fn declared_len(frame: &[u8]) -> Result<u64, FrameError> {
        if frame.len() < FRAME_OVERHEAD || frame[0] != FRAME_TYPE {
            return Err(FrameError::Malformed);
        }
        let mut n = [0u8; 4];
        n.copy_from_slice(&frame[9..FRAME_HEADER_LEN]);
        Ok(u64::from(u32::from_be_bytes(n)))
    }

    /// The sequence number the next frame must carry (`None` when exhausted).
    pub fn next_seq(&self) -> Option<u64> {
        self.next_seq
    }

    /// Test and benchmark support: pretend `seq` frames were already received.
    #[doc(hidden)]
    pub fn dangerous_set_next_seq(&mut self, seq: u64) {
        self.next_seq = Some(seq);
    }
}

/// An established sigil/1 session: the result of a completed handshake.
pub struct Session {
    sealer: FrameSealer,
    opener: FrameOpener,
    session_hash: [u8; 32],
    role: Role,
}

impl Session {
    pub(crate) fn new(
        role: Role,
        k_c2s: &[u8; 32],
        k_s2c: &[u8; 32],
        session_hash: [u8; 32],
        max_payload: u32,
    ) -> Session {
        let max = max_payload as usize;
        let (send, recv) = match role {
            Role::Client => (k_c2s, k_s2c),
            Role::Server => (k_s2c, k_c2s),
        };
        Session {
            sealer: FrameSealer::new(send, max),
            opener: FrameOpener::new(recv, max),
            session_hash,
            role,
        }
    }

    /// The final handshake hash `h`: unique to this session and known to
    /// both ends, for channel binding.
    pub fn session_hash(&self) -> &[u8; 32] {
        &self.session_hash
    }

    /// Which end of the session this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Appends a frame carrying `payload` to `out` (see [`FrameSealer::seal`]).
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.sealer.seal(payload, out)
    }

    /// Opens an incoming frame (see [`FrameOpener::open`]).
    pub fn open<'a>(&mut self, frame: &'a [u8]) -> Result<&'a [u8], FrameError> {
        self.opener.open(frame)
    }

    /// Splits the session into its sending and receiving halves.
    pub fn split(self) -> (FrameSealer, FrameOpener) {
        (self.sealer, self.opener)
    }
}

fn keyed(key: &[u8; 32]) -> HmacSha256 {
    // HMAC takes keys of every length, and a 32-byte key is never rejected.
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts 32-byte keys"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(max: u32) -> (Session, Session) {
        let c2s = [7u8; 32];
        let s2c = [9u8; 32];
        (
            Session::new(Role::Client, &c2s, &s2c, [1; 32], max),
            Session::new(Role::Server, &c2s, &s2c, [1; 32], max),
        )
    }

    #[test]
    fn round_trip_both_ways() {
        let (mut c, mut s) = pair(1024);
        for i in 0..5u8 {
            let f = c.sealer.seal_to_vec(&[i; 10]).unwrap();
            assert_eq!(s.open(&f).unwrap(), &[i; 10]);
            let f = s.sealer.seal_to_vec(&[i; 3]).unwrap();
            assert_eq!(c.open(&f).unwrap(), &[i; 3]);
        }
    }

    #[test]
    fn fail_reflected_frame() {
        let (mut c, _s) = pair(1024);
        let f = c.sealer.seal_to_vec(b"hi").unwrap();
        assert_eq!(c.open(&f), Err(FrameError::BadTag));
        assert_eq!(c.open(&f), Err(FrameError::Closed));
    }

    #[test]
    fn fail_oversize_declared_length_before_hashing() {
        let (_c, mut s) = pair(16);
        // A 45-byte frame that declares 4 GiB of payload.
        let mut f = vec![FRAME_TYPE];
        f.extend_from_slice(&0u64.to_be_bytes());
        f.extend_from_slice(&u32::MAX.to_be_bytes());
        f.extend_from_slice(&[0; 32]);
        assert_eq!(
            s.open(&f),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: 16
            })
        );
    }

    #[test]
    fn fail_seal_over_limit() {
        let (mut c, _s) = pair(16);
        let mut out = Vec::new();
        assert!(matches!(
            c.seal(&[0; 17], &mut out),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(out.is_empty());
    }

    #[test]
    fn sequence_exhaustion_ends_cleanly() {
        let (c, s) = pair(16);
        let (mut tx, _) = c.split();
        let (_, mut rx) = s.split();
        tx.dangerous_set_next_seq(u64::MAX);
        rx.dangerous_set_next_seq(u64::MAX);
        let last = tx.seal_to_vec(b"last").unwrap();
        assert_eq!(tx.next_seq(), None);
        assert_eq!(tx.seal_to_vec(b"more"), Err(FrameError::Exhausted));
        assert_eq!(rx.open(&last).unwrap(), b"last");
        assert_eq!(rx.next_seq(), None);
    }
}
