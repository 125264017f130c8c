//! Batching: several transport frames in one WebSocket message.
//!
//! Plain sigil/1 (WebSocket subprotocol [`SUBPROTOCOL`]) carries exactly one
//! protocol message per WebSocket message. A client may also offer
//! [`SUBPROTOCOL_BATCH`]; a server that selects it agrees that, after the
//! handshake, a WebSocket message in either direction may carry several
//! transport frames back to back:
//!
//! ```text
//! frame | frame | ... | frame        (each 0x10 | seq | n | payload | tag)
//! ```
//!
//! A sender packs at most [`BATCH_LIMIT`] bytes into one message (a single
//! frame larger than that travels alone), and a receiver accepts messages of
//! at least that size; a larger message must be exactly one frame. Every frame is sealed, numbered and checked exactly
//! as in plain sigil/1, and in order: batching changes how frames are packed
//! into messages, nothing about what each one proves. A message that ends
//! inside a frame closes the session like any malformed frame. The
//! handshake's messages always travel alone.
//!
//! Why: a browser pays for every WebSocket message it sends (in Chromium,
//! an IPC to its network process costs more than sealing the frame), so
//! calls made together go out together.
//!
//! The subprotocol is not authenticated: a man in the middle who changes it
//! only changes how frames are packed (and TLS is what stops men in the
//! middle). [`frames`] splits a received message; [`Batch`] packs sent frames.

use crate::transport::{FRAME_HEADER_LEN, FRAME_OVERHEAD, FRAME_TYPE};

/// The WebSocket subprotocol of sigil/1: one protocol message per
/// WebSocket message.
pub const SUBPROTOCOL: &str = "sigil.v1";
/// The WebSocket subprotocol of sigil/1 with batching: after the handshake,
/// a WebSocket message carries one or more transport frames.
pub const SUBPROTOCOL_BATCH: &str = "sigil.v1.batch";
/// The most bytes a sender packs into one batched message (16 KiB), unless
/// one frame alone is larger.
pub const BATCH_LIMIT: usize = 16 * 1024;

/// The frames of a WebSocket message received after the handshake, in
/// order, to be opened by the session one by one.
///
/// Without `batching`, or for a message over [`BATCH_LIMIT`] bytes, that is
/// the whole message as one frame. With it, each slice is one frame as its
/// header declares it; what does not parse as a frame header (or a frame
/// that runs past the end of the message) comes out as the last slice,
/// whole, so that opening it fails with the error a lone frame would get
/// (`Malformed`, or `TooLarge` for a declared length over the limit). An
/// empty message is one empty slice. A batch thus costs the receiver at
/// most one frame's work per 45 bytes of at most 16 KiB.
pub fn frames(message: &[u8], batching: bool) -> Frames<'_> {
    Frames {
        rest: message,
        first: true,
        batched: batching && message.len() <= BATCH_LIMIT,
    }
}

/// The iterator of [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
    first: bool,
    batched: bool,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() && !std::mem::take(&mut self.first) {
            return None;
        }
        self.first = false;
        let whole = self.rest.len();
        let len = self
            .frame_len()
            .filter(|&len| len <= whole)
            .unwrap_or(whole);
        let (frame, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(frame)
    }
}

impl Frames<'_> {
    /// The length of the frame at the front, from its header.
    fn frame_len(&self) -> Option<usize> {
        let header = self.rest.get(..FRAME_HEADER_LEN)?;
        if !self.batched || header[0] != FRAME_TYPE {
            return None;
        }
        let n = u32::from_be_bytes([header[9], header[10], header[11], header[12]]);
        usize::try_from(n).ok()?.checked_add(FRAME_OVERHEAD)
    }
}

/// Packs sealed frames into WebSocket messages of at most [`BATCH_LIMIT`]
/// bytes, in order.
#[derive(Debug, Default)]
pub struct Batch {
    message: Vec<u8>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds `frame` to the message being packed. Returns the message to send
    /// first if `frame` does not fit in it.
    pub fn push(&mut self, frame: Vec<u8>) -> Option<Vec<u8>> {
        if self.message.is_empty() {
            self.message = frame;
            None
        } else if self.message.len() + frame.len() > BATCH_LIMIT {
            Some(std::mem::replace(&mut self.message, frame))
        } else {
            self.message.extend_from_slice(&frame);
            None
        }
    }

    /// The message packed so far, if any, leaving the batch empty.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        (!self.message.is_empty()).then(|| std::mem::take(&mut self.message))
    }

    /// Whether no frame waits in the batch.
    pub fn is_empty(&self) -> bool {
        self.message.is_empty()
    }
}
