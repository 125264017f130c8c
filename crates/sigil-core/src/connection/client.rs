//! The client's side of an RPC session.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{CloseReason, Deadlines, MAX_CALL_ID, SessionLimits, seal_frame};
use crate::rpc::{ErrorCode, RpcError, parse_response, write_request};
use crate::transport::{FrameOpener, FrameSealer, Session};

/// How to make one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// Its deadline, in milliseconds from now; `None`: the connection's
    /// `call_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// No response wanted: the call is sent and forgotten.
    pub oneway: bool,
}

/// Why a call could not be started (nothing was sent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A bad name, arguments that are not an array, or a request over
    /// `max_message_size`: the error a server would have answered.
    #[error(transparent)]
    Invalid(RpcError),
    /// The connection is closed.
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
}

/// What the client's adapter must act on.
#[derive(Debug)]
pub enum ClientEvent {
    /// Call `id` is over: its result, or its error (from the server, or
    /// `timeout` from this machine when its deadline passed).
    Response {
        /// The call.
        id: u64,
        /// Its outcome.
        outcome: Result<Box<RawValue>, RpcError>,
    },
    /// The connection must close for this reason; every call still in
    /// flight has failed with it (see [`ClientConnection::take_failed`]).
    Close(CloseReason),
}

/// The client's RPC session: numbers and seals calls, matches responses to
/// them, and fails them at their deadlines.
pub struct ClientConnection {
    sealer: FrameSealer,
    opener: FrameOpener,
    limits: SessionLimits,
    next_id: u64,
    /// Calls waiting for a response, with their deadlines.
    pending: HashMap<u64, u64>,
    deadlines: Deadlines,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ClientEvent>,
    /// Calls that failed because the connection closed.
    failed: Vec<u64>,
    scratch: Vec<u8>,
    closed: Option<CloseReason>,
}

impl ClientConnection {
    /// The machine for an established session. `max_inflight` is not
    /// enforced here (the server answers `busy`); `idle_timeout_ms` is
    /// the server's business.
    pub fn new(session: Session, limits: SessionLimits) -> ClientConnection {
        let (sealer, opener) = session.split();
        ClientConnection {
            sealer,
            opener,
            limits,
            next_id: 1,
            pending: HashMap::new(),
            deadlines: Deadlines::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            failed: Vec::new(),
            scratch: Vec::new(),
            closed: None,
        }
    }

    /// Sets the id of the next call. Dangerous: reusing ids breaks
    /// response matching. For tests of id exhaustion only.
    pub fn dangerous_set_next_call_id(&mut self, id: u64) {
        self.next_id = id;
    }

    /// Calls waiting for a response.
    pub fn calls_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Starts a call at `now_ms`: checks the names and the size, seals the
    /// request (see [`poll_transmit`](Self::poll_transmit)) and returns its
    /// id; its outcome comes as [`ClientEvent::Response`]. A oneway call
    /// gets an id but no event. Errors are local: nothing was sent.
    pub fn call<A: Serialize + ?Sized>(
        &mut self,
        now_ms: u64,
        object: &str,
        method: &str,
        args: &A,
        options: CallOptions,
    ) -> Result<u64, CallError> {
        if let Some(reason) = &self.closed {
            return Err(CallError::Closed(reason.clone()));
        }
        if self.next_id > MAX_CALL_ID {
            return Err(CallError::Closed(self.close(CloseReason::Exhausted)));
        }
        let id = self.next_id;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let written = write_request(&mut out, id, object, method, args, options.oneway);
        let result = written.and_then(|()| {
            let max = self.limits.max_message_size as usize;
            if out.len() > max {
                return Err(RpcError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "the request ({} bytes) is over max_message_size ({max} bytes)",
                        out.len()
                    ),
                ));
            }
            Ok(())
        });
        if let Err(e) = result {
            self.scratch = out;
            return Err(CallError::Invalid(e));
        }
        self.next_id += 1;
        self.seal(&out);
        self.scratch = out;
        if let Some(reason) = &self.closed {
            return Err(CallError::Closed(reason.clone()));
        }
        if !options.oneway {
            let timeout = options.timeout_ms.unwrap_or(self.limits.call_timeout_ms);
            let deadline = now_ms.saturating_add(timeout);
            self.pending.insert(id, deadline);
            self.deadlines.push(deadline, id);
        }
        Ok(id)
    }

    /// Cancels call `id`: it is forgotten here (a response, if one comes,
    /// is dropped) and the server is told to stop it. False if it was not
    /// in flight.
    pub fn cancel(&mut self, id: u64) -> bool {
        if self.pending.remove(&id).is_none() {
            return false;
        }
        self.send_cancel(id);
        true
    }

    /// Takes a frame from the server: the response it carries becomes a
    /// [`ClientEvent::Response`] (one for a call no longer waiting is
    /// dropped). A frame that fails to open or is not a response is an
    /// error: close the connection.
    pub fn handle_frame(&mut self, frame: &[u8]) -> Result<(), CloseReason> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let payload = match self.opener.open(frame) {
            Ok(p) => p,
            Err(e) => return Err(self.close(CloseReason::BadFrame(e))),
        };
        if payload.is_empty() {
            return Ok(());
        }
        let response = match parse_response(payload) {
            Ok(r) => r,
            Err(e) => {
                return Err(self.close(CloseReason::Protocol(format!(
                    "the server sent something that is not a response: {e}"
                ))));
            }
        };
        if self.pending.remove(&response.id).is_some() {
            self.events.push_back(ClientEvent::Response {
                id: response.id,
                outcome: response.outcome,
            });
            self.prune();
        }
        Ok(())
    }

    /// The next sealed frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        let pending = &self.pending;
        self.deadlines.next(|id, at| pending.get(&id) == Some(&at))
    }

    /// Fails the calls past their deadline with `timeout`, and tells the
    /// server to stop them.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let pending = &self.pending;
        let due = self
            .deadlines
            .due(now_ms, |id, at| pending.get(&id) == Some(&at));
        for id in due {
            self.pending.remove(&id);
            self.send_cancel(id);
            self.events.push_back(ClientEvent::Response {
                id,
                outcome: Err(RpcError::new(
                    ErrorCode::Timeout,
                    "no response before the call's deadline: cancelled",
                )),
            });
        }
    }

    /// The connection is gone (or this side closes it): every call in
    /// flight fails; their ids are in [`take_failed`](Self::take_failed).
    pub fn handle_close(&mut self, reason: CloseReason) {
        self.close(reason);
    }

    /// The calls that failed when the connection closed (once).
    pub fn take_failed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.failed)
    }

    fn close(&mut self, reason: CloseReason) -> CloseReason {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
            self.failed.extend(self.pending.drain().map(|(id, _)| id));
            self.failed.sort_unstable();
            self.events.push_back(ClientEvent::Close(reason.clone()));
            self.transmit.clear();
            return reason;
        }
        self.closed.clone().unwrap_or(reason)
    }

    fn send_cancel(&mut self, id: u64) {
        let message = format!(r#"{{"cancel":{id}}}"#);
        self.seal(message.as_bytes());
    }

    fn seal(&mut self, payload: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        match seal_frame(&mut self.sealer, payload) {
            Ok(frame) => self.transmit.push_back(frame),
            Err(reason) => {
                self.close(reason);
            }
        }
    }

    fn prune(&mut self) {
        let pending = &self.pending;
        self.deadlines
            .prune(pending.len(), |id, at| pending.get(&id) == Some(&at));
    }
}
