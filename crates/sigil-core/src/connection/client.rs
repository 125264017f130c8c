//! The client's side of an RPC session.

use std::collections::{HashMap, VecDeque};

use serde::Serialize;
use serde_json::value::RawValue;

use super::{CloseReason, Deadlines, MAX_CALL_ID, SessionLimits, seal_frame};
use crate::rpc::{
    Control, ErrorCode, RpcError, ServerMessage, parse_server_message, write_control,
    write_request, write_stream_request,
};
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

/// How to open one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// The deadline of its first item, in milliseconds from now; `None`:
    /// the connection's `call_timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// The most items the server may send before the consumer takes them
    /// (1 to [`MAX_STREAM_CREDIT`](crate::rpc::MAX_STREAM_CREDIT)); `None`: the connection's
    /// `stream_window`.
    pub window: Option<u32>,
    /// After the first item, the stream fails with `timeout` when no item
    /// comes for this long while the server has credit. `None`: it may
    /// wait forever (a watch, say).
    pub idle_timeout_ms: Option<u64>,
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
    /// Stream `id`'s next item. Tell the machine when the consumer has
    /// taken it ([`ClientConnection::consumed`]), so the server may send more.
    Item {
        /// The stream.
        id: u64,
        /// The item's JSON text.
        value: Box<RawValue>,
    },
    /// Stream `id` is over: completed, or failed (by the server, or
    /// `timeout` from this machine).
    StreamEnd {
        /// The stream.
        id: u64,
        /// `Ok` when it completed.
        outcome: Result<(), RpcError>,
    },
    /// The connection must close for this reason; every call and stream
    /// still in flight has failed with it (see
    /// [`ClientConnection::take_failed`]).
    Close(CloseReason),
}

/// A call or stream waiting for the server.
struct Pending {
    /// Its deadline ([`NO_DEADLINE`]: none).
    deadline_ms: u64,
    /// A stream's flow control.
    stream: Option<Flow>,
}

/// No deadline.
const NO_DEADLINE: u64 = u64::MAX;

/// A stream's credit, as the client counts it: `outstanding` (granted, not
/// yet received) + items received and not yet consumed + `to_grant`
/// (consumed, not yet granted again) is always `window`.
struct Flow {
    window: u32,
    outstanding: u32,
    to_grant: u32,
    idle_timeout_ms: Option<u64>,
    /// An item has come.
    started: bool,
}

/// The client's RPC session: numbers and seals calls, matches responses to
/// them, and fails them at their deadlines.
pub struct ClientConnection {
    sealer: FrameSealer,
    opener: FrameOpener,
    limits: SessionLimits,
    next_id: u64,
    /// Calls and streams waiting, with their deadlines.
    pending: HashMap<u64, Pending>,
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

    /// Calls waiting for a response and streams open.
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
        let id = self
            .send_request(|out, id| write_request(out, id, object, method, args, options.oneway))?;
        if !options.oneway {
            let timeout = options.timeout_ms.unwrap_or(self.limits.call_timeout_ms);
            self.wait(id, now_ms.saturating_add(timeout), None);
        }
        Ok(id)
    }

    /// Opens a stream at `now_ms`, as [`call`](Self::call) starts a call:
    /// its items come as [`ClientEvent::Item`] and its end as
    /// [`ClientEvent::StreamEnd`].
    pub fn stream<A: Serialize + ?Sized>(
        &mut self,
        now_ms: u64,
        object: &str,
        method: &str,
        args: &A,
        options: StreamOptions,
    ) -> Result<u64, CallError> {
        let window = options.window.unwrap_or(self.limits.stream_window);
        let id = self
            .send_request(|out, id| write_stream_request(out, id, object, method, args, window))?;
        let timeout = options.timeout_ms.unwrap_or(self.limits.call_timeout_ms);
        let flow = Flow {
            window,
            outstanding: window,
            to_grant: 0,
            idle_timeout_ms: options.idle_timeout_ms,
            started: false,
        };
        self.wait(id, now_ms.saturating_add(timeout), Some(flow));
        Ok(id)
    }

    /// The consumer of stream `id` has taken `n` of its items: once half a
    /// window is taken, the server is granted that much more credit.
    pub fn consumed(&mut self, now_ms: u64, id: u64, n: u32) {
        let Some(pending) = self.pending.get_mut(&id) else {
            return;
        };
        let Some(flow) = pending.stream.as_mut() else {
            return;
        };
        flow.to_grant = flow.to_grant.saturating_add(n).min(flow.window);
        if flow.to_grant < (flow.window / 2).max(1) {
            return;
        }
        let n = std::mem::take(&mut flow.to_grant);
        let was_stalled = flow.outstanding == 0;
        flow.outstanding += n;
        if was_stalled && let Some(idle) = flow.idle_timeout_ms {
            let at = now_ms.saturating_add(idle);
            pending.deadline_ms = at;
            self.deadlines.push(at, id);
        }
        self.send_control(Control::Credit { id, n });
    }

    /// Registers call or stream `id` as waiting until `deadline_ms`.
    fn wait(&mut self, id: u64, deadline_ms: u64, stream: Option<Flow>) {
        self.pending.insert(
            id,
            Pending {
                deadline_ms,
                stream,
            },
        );
        self.deadlines.push(deadline_ms, id);
    }

    /// Numbers, writes (with `write`), checks and seals a request; returns
    /// its id. Errors are local: nothing was sent.
    fn send_request(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>, u64) -> Result<(), RpcError>,
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
        let written = write(&mut out, id);
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
        Ok(id)
    }

    /// Cancels call or stream `id`: it is forgotten here (what still comes
    /// for it is dropped) and the server is told to stop it. False if it
    /// was not in flight.
    pub fn cancel(&mut self, id: u64) -> bool {
        if self.pending.remove(&id).is_none() {
            return false;
        }
        self.send_control(Control::Cancel(id));
        true
    }

    /// Takes a frame from the server at `now_ms`: a response becomes a
    /// [`ClientEvent::Response`], a stream's item [`ClientEvent::Item`] and
    /// its end or error [`ClientEvent::StreamEnd`]; what comes for a call
    /// no longer waiting is dropped. A frame that fails to open, a message
    /// that is not one of the server's, a result for a stream, an item for
    /// a call, and an item beyond the stream's credit are errors: close the
    /// connection.
    pub fn handle_frame(&mut self, now_ms: u64, frame: &[u8]) -> Result<(), CloseReason> {
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
        let message = match parse_server_message(payload) {
            Ok(m) => m,
            Err(e) => {
                return Err(self.close(CloseReason::Protocol(format!(
                    "the server sent something that is not a response: {e}"
                ))));
            }
        };
        let violation = match message {
            ServerMessage::Response(response) => {
                let id = response.id;
                match self.pending.get(&id).map(|p| p.stream.is_some()) {
                    None => None,
                    Some(false) => {
                        self.pending.remove(&id);
                        let outcome = response.outcome;
                        self.events.push_back(ClientEvent::Response { id, outcome });
                        None
                    }
                    Some(true) => match response.outcome {
                        Err(e) => {
                            self.pending.remove(&id);
                            let outcome = Err(e);
                            self.events
                                .push_back(ClientEvent::StreamEnd { id, outcome });
                            None
                        }
                        Ok(_) => Some(format!("a result for stream {id}")),
                    },
                }
            }
            ServerMessage::Item { id, value } => self.item(now_ms, id, value),
            ServerMessage::End { id } => match self.pending.get(&id).map(|p| p.stream.is_some()) {
                None => None,
                Some(true) => {
                    self.pending.remove(&id);
                    let outcome = Ok(());
                    self.events
                        .push_back(ClientEvent::StreamEnd { id, outcome });
                    None
                }
                Some(false) => Some(format!("a stream's end for call {id}")),
            },
        };
        if let Some(what) = violation {
            return Err(self.close(CloseReason::Protocol(format!("the server sent {what}"))));
        }
        self.prune();
        Ok(())
    }

    /// Takes stream `id`'s item, or says what is wrong with it.
    fn item(&mut self, now_ms: u64, id: u64, value: Box<RawValue>) -> Option<String> {
        let pending = self.pending.get_mut(&id)?;
        let Some(flow) = pending.stream.as_mut() else {
            return Some(format!("an item for call {id}, which is not a stream"));
        };
        if flow.outstanding == 0 {
            return Some(format!("more items than credit for stream {id}"));
        }
        flow.outstanding -= 1;
        flow.started = true;
        pending.deadline_ms = match flow.idle_timeout_ms {
            Some(idle) if flow.outstanding > 0 => {
                let at = now_ms.saturating_add(idle);
                self.deadlines.push(at, id);
                at
            }
            _ => NO_DEADLINE,
        };
        self.events.push_back(ClientEvent::Item { id, value });
        None
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
        self.deadlines.next(|id, at| is_due_at(pending, id, at))
    }

    /// Fails the calls and streams past their deadline with `timeout`, and
    /// tells the server to stop them.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let pending = &self.pending;
        let due = self
            .deadlines
            .due(now_ms, |id, at| is_due_at(pending, id, at));
        for id in due {
            let Some(waiting) = self.pending.remove(&id) else {
                continue;
            };
            self.send_control(Control::Cancel(id));
            let event = match waiting.stream {
                None => ClientEvent::Response {
                    id,
                    outcome: Err(RpcError::new(
                        ErrorCode::Timeout,
                        "no response before the call's deadline: cancelled",
                    )),
                },
                Some(flow) => {
                    let message = if flow.started {
                        "no item from the stream within its idle timeout: cancelled"
                    } else {
                        "no item from the stream before its deadline: cancelled"
                    };
                    ClientEvent::StreamEnd {
                        id,
                        outcome: Err(RpcError::new(ErrorCode::Timeout, message)),
                    }
                }
            };
            self.events.push_back(event);
        }
    }

    /// The connection is gone (or this side closes it): every call in
    /// flight fails; their ids are in [`take_failed`](Self::take_failed).
    pub fn handle_close(&mut self, reason: CloseReason) {
        self.close(reason);
    }

    /// The calls that failed when the connection closed (once), in the
    /// order they were made.
    pub fn take_failed(&mut self) -> Vec<u64> {
        // Sorted here, not at the close: a client that tracks its calls
        // itself (the browser's) never pays for the sort in its module.
        self.failed.sort_unstable();
        std::mem::take(&mut self.failed)
    }

    fn close(&mut self, reason: CloseReason) -> CloseReason {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
            self.failed.extend(self.pending.drain().map(|(id, _)| id));
            self.events.push_back(ClientEvent::Close(reason.clone()));
            self.transmit.clear();
            return reason;
        }
        self.closed.clone().unwrap_or(reason)
    }

    fn send_control(&mut self, control: Control) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        write_control(&mut out, control);
        self.seal(&out);
        self.scratch = out;
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
            .prune(pending.len(), |id, at| is_due_at(pending, id, at));
    }
}

/// Whether call or stream `id` still waits with deadline `at`.
fn is_due_at(pending: &HashMap<u64, Pending>, id: u64, at: u64) -> bool {
    pending.get(&id).is_some_and(|p| p.deadline_ms == at)
}
