//! The RPC session above the frames, for both roles, as sans-IO state
//! machines: every rule of a sigil/1 connection after the handshake —
//! call ids, calls in flight, oneway calls, deadlines, cancellation, limits,
//! the idle timer and why a connection closes — is written here once, and
//! the server, the native client and the browser client only move bytes
//! between a WebSocket and these machines.
//!
//! A machine takes what arrives ([`ServerConnection::handle_frame`],
//! [`ClientConnection::handle_frame`]) and the time (`now_ms`, from any
//! monotonic clock the caller keeps, in milliseconds), and gives back
//! events (a call to dispatch, a response, a call to abort, a close), sealed
//! frames to send (`poll_transmit`) and the next instant at which it wants
//! `handle_timeout` (`poll_timeout`). It reads no clock and does no I/O.
//!
//! Wire format of the messages beyond request and response (see
//! [`rpc`](crate::rpc) and the protocol chapter): a client cancels a call
//! or a stream with `{"cancel": ID}`, after which the server sends nothing
//! more for it; a stream request carries its initial window
//! (`"stream": W`), the server sends at most that many `item`s before the
//! client grants more with `{"credit": ID, "n": N}`, and ends the stream
//! with `end` or an error.

mod client;
mod server;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

pub use client::{CallError, CallOptions, ClientConnection, ClientEvent, StreamOptions};
pub use server::{AbortReason, IncomingCall, ServerConnection, ServerEvent, StreamError};

use crate::transport::{FRAME_OVERHEAD, FrameError, FrameSealer};

/// Why a connection closed (or must close).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// A frame failed to open: bad tag, sequence or size. Nothing more from
    /// this peer is trusted.
    #[error("bad frame: {0}")]
    BadFrame(FrameError),
    /// An authentic frame that is not a message of the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// No message from the peer and no call in flight for `idle_timeout_ms`.
    #[error("idle timeout")]
    IdleTimeout,
    /// This direction's sequence numbers (or call ids) are used up: a new
    /// session is needed.
    #[error("session exhausted: start a new one")]
    Exhausted,
    /// The peer closed the connection, or it broke.
    #[error("the connection closed")]
    ConnectionLost,
    /// This side closed it.
    #[error("closed")]
    Local,
}

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Largest frame payload, in bytes, either way.
    pub max_message_size: u32,
    /// Calls in flight at once (server: more are answered `busy`).
    pub max_inflight: usize,
    /// Streams open at once (server: more are answered `busy`); they do
    /// not count among `max_inflight`.
    pub max_streams: usize,
    /// Client: the window of a stream (items the server may send before
    /// the client grants more), unless the stream sets its own.
    pub stream_window: u32,
    /// Deadline of a call, in milliseconds, unless the call sets its own.
    pub call_timeout_ms: u64,
    /// Server: a connection with no message from the client and no call in
    /// flight for this long is closed. `None`: never.
    pub idle_timeout_ms: Option<u64>,
    /// Server: a session with no frame either way for this long is pinged
    /// ([`ServerEvent::Ping`]), so that proxies keep it. Pongs are not
    /// frames: they never count as activity for `idle_timeout_ms`. `None`:
    /// no pings.
    pub ping_interval_ms: Option<u64>,
}

impl Default for SessionLimits {
    fn default() -> SessionLimits {
        SessionLimits {
            max_message_size: 1 << 20,
            max_inflight: 64,
            max_streams: 16,
            stream_window: 16,
            call_timeout_ms: 30_000,
            idle_timeout_ms: Some(300_000),
            ping_interval_ms: None,
        }
    }
}

/// Seals `payload` into a frame, or says why the connection must close
/// (sequence numbers exhausted; an own payload over the limit cannot happen,
/// as both machines check sizes first).
fn seal_frame(sealer: &mut FrameSealer, payload: &[u8]) -> Result<Vec<u8>, CloseReason> {
    let mut frame = Vec::with_capacity(payload.len() + FRAME_OVERHEAD);
    match sealer.seal(payload, &mut frame) {
        Ok(()) => Ok(frame),
        Err(FrameError::Exhausted) => Err(CloseReason::Exhausted),
        Err(e) => Err(CloseReason::BadFrame(e)),
    }
}

/// Call ids are below 2^53, so that a JavaScript number holds every one
/// exactly (the browser client uses the same machine).
pub const MAX_CALL_ID: u64 = (1 << 53) - 1;

/// Deadlines of calls, earliest first. Entries of calls that ended are
/// skipped when they come up (and pruned when they outnumber live calls).
#[derive(Default)]
struct Deadlines(BinaryHeap<Reverse<(u64, u64)>>);

impl Deadlines {
    fn push(&mut self, at_ms: u64, id: u64) {
        self.0.push(Reverse((at_ms, id)));
    }

    /// The earliest deadline of a call that `live` says is still in flight.
    fn next(&mut self, live: impl Fn(u64, u64) -> bool) -> Option<u64> {
        while let Some(Reverse((at, id))) = self.0.peek().copied() {
            if live(id, at) {
                return Some(at);
            }
            self.0.pop();
        }
        None
    }

    /// Removes and returns the calls due at `now_ms` that `live` says are
    /// still in flight.
    fn due(&mut self, now_ms: u64, live: impl Fn(u64, u64) -> bool) -> Vec<u64> {
        let mut due = Vec::new();
        while let Some(Reverse((at, id))) = self.0.peek().copied() {
            if at > now_ms {
                break;
            }
            self.0.pop();
            if live(id, at) {
                due.push(id);
            }
        }
        due
    }

    /// Drops stale entries when there are more than twice `live` of them.
    fn prune(&mut self, live: usize, is_live: impl Fn(u64, u64) -> bool) {
        if self.0.len() > 2 * live + 64 {
            self.0.retain(|Reverse((at, id))| is_live(*id, *at));
        }
    }
}
