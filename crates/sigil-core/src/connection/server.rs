//! The server's side of an RPC session.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};

use serde_json::value::RawValue;

use super::{CloseReason, Deadlines, SessionLimits, seal_frame};
use crate::rpc::{
    Control, ErrorCode, MAX_STREAM_CREDIT, RpcError, parse_control, parse_request, write_end,
    write_error, write_item,
};
use crate::transport::{FrameOpener, FrameSealer, Session};

/// A call to dispatch, borrowed from the frame it came in.
#[derive(Debug)]
pub struct IncomingCall<'a> {
    /// Its id: answer it with [`ServerConnection::respond`].
    pub id: u64,
    /// The object it names (a checked name).
    pub object: Cow<'a, str>,
    /// The method it names (a checked name).
    pub method: Cow<'a, str>,
    /// The arguments: a JSON array, as text.
    pub args: &'a RawValue,
    /// The client wants no response (the machine drops it if one comes).
    pub oneway: bool,
    /// The client wants a stream: answer with
    /// [`stream_item`](ServerConnection::stream_item) while there is
    /// credit, then [`end_stream`](ServerConnection::end_stream) or
    /// [`respond_error`](ServerConnection::respond_error).
    pub stream: bool,
}

/// What the server's adapter must act on, besides calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Stop the work of call `id`: the client cancelled it, or it ran past
    /// its deadline (the client has been answered `timeout`). A response
    /// for it, if one still comes, is dropped.
    Abort {
        /// The call.
        id: u64,
        /// Why.
        why: AbortReason,
    },
    /// Stream `id` may send `n` more items (the client granted credit).
    Credit {
        /// The stream.
        id: u64,
        /// How many more items.
        n: u32,
    },
    /// Send a WebSocket ping: no frame went either way for
    /// `ping_interval_ms`.
    Ping,
    /// Close the connection for this reason (the idle timer).
    Close(CloseReason),
}

/// Why a call is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The client sent a cancel for it.
    Cancelled,
    /// It ran past `call_timeout_ms` (a stream: before its first item).
    DeadlinePassed,
    /// A stream's item was over `max_message_size`: the stream ended with
    /// `too_large`.
    ItemTooLarge,
}

/// Why a stream's item was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// The stream is not open (it ended, was cancelled, or is not a stream).
    #[error("the stream is not open")]
    NotOpen,
    /// The stream has no credit: wait for [`ServerEvent::Credit`].
    #[error("the stream has no credit")]
    NoCredit,
    /// The item is over `max_message_size`: the stream has ended with
    /// `too_large` (and [`ServerEvent::Abort`] says so).
    #[error("the item is over max_message_size")]
    TooLarge,
}

/// No deadline (a stream past its first item).
const NO_DEADLINE: u64 = u64::MAX;

struct InFlight {
    deadline_ms: u64,
    oneway: bool,
    /// A stream: the items it may still send.
    credit: Option<u32>,
}

/// The server's RPC session: opens the client's frames, keeps its calls in
/// flight with their deadlines, seals the responses.
pub struct ServerConnection {
    sealer: FrameSealer,
    opener: FrameOpener,
    limits: SessionLimits,
    calls: HashMap<u64, InFlight>,
    /// How many of `calls` are streams.
    streams: usize,
    deadlines: Deadlines,
    /// When the client last sent a message.
    last_heard_ms: u64,
    /// When the next ping is due, if pings are on.
    next_ping_ms: Option<u64>,
    /// A frame was sealed since the ping timer last looked.
    sent_since_tick: bool,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
    /// Reused for responses written by the machine.
    scratch: Vec<u8>,
    closed: Option<CloseReason>,
}

impl ServerConnection {
    /// The machine for an established session, at `now_ms`.
    pub fn new(session: Session, limits: SessionLimits, now_ms: u64) -> ServerConnection {
        let (sealer, opener) = session.split();
        ServerConnection {
            sealer,
            opener,
            limits,
            calls: HashMap::new(),
            streams: 0,
            deadlines: Deadlines::default(),
            last_heard_ms: now_ms,
            next_ping_ms: limits.ping_interval_ms.map(|i| now_ms.saturating_add(i)),
            sent_since_tick: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            closed: None,
        }
    }

    /// Calls in flight (dispatched, not yet answered, aborted or
    /// expired), streams not included.
    pub fn calls_in_flight(&self) -> usize {
        self.calls.len() - self.streams
    }

    /// Streams open.
    pub fn streams_open(&self) -> usize {
        self.streams
    }

    /// The items stream `id` may send now (0 if it is not open).
    pub fn stream_credit(&self, id: u64) -> u32 {
        self.calls.get(&id).and_then(|c| c.credit).unwrap_or(0)
    }

    /// Why the connection must close, once it must.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// Takes a frame from the client. Returns the call it carries, to
    /// dispatch; invalid requests, calls over `max_inflight` and streams
    /// over `max_streams` are answered here (see
    /// [`poll_transmit`](Self::poll_transmit)), a cancel becomes
    /// [`ServerEvent::Abort`] and a credit [`ServerEvent::Credit`]. A frame
    /// that fails to open, or credit beyond
    /// [`MAX_STREAM_CREDIT`], is an error: close the connection.
    pub fn handle_frame<'a>(
        &mut self,
        now_ms: u64,
        frame: &'a [u8],
    ) -> Result<Option<IncomingCall<'a>>, CloseReason> {
        if let Some(reason) = &self.closed {
            return Err(reason.clone());
        }
        let payload = match self.opener.open(frame) {
            Ok(p) => p,
            Err(e) => return Err(self.close(CloseReason::BadFrame(e))),
        };
        self.last_heard_ms = now_ms;
        if payload.is_empty() {
            return Ok(None);
        }
        let req = match parse_request(payload) {
            Ok(req) => req,
            Err(rejected) => {
                match parse_control(payload) {
                    Some(Control::Cancel(id)) => {
                        if self.remove(id).is_some() {
                            self.events.push_back(ServerEvent::Abort {
                                id,
                                why: AbortReason::Cancelled,
                            });
                        }
                    }
                    Some(Control::Credit { id, n }) => self.grant(id, n)?,
                    None => self.queue_error(rejected.id, &rejected.error),
                }
                return Ok(None);
            }
        };
        if self.calls.contains_key(&req.id) {
            let e = RpcError::new(
                ErrorCode::InvalidRequest,
                format!("call {} is already in flight", req.id),
            );
            self.queue_error(req.id, &e);
            return Ok(None);
        }
        let busy = if req.stream.is_some() {
            (self.streams >= self.limits.max_streams).then(|| {
                format!(
                    "too many streams open (max_streams = {})",
                    self.limits.max_streams
                )
            })
        } else {
            (self.calls_in_flight() >= self.limits.max_inflight).then(|| {
                format!(
                    "too many calls in flight (max_inflight = {})",
                    self.limits.max_inflight
                )
            })
        };
        if let Some(message) = busy {
            if !req.oneway {
                self.queue_error(req.id, &RpcError::new(ErrorCode::Busy, message));
            }
            return Ok(None);
        }
        let deadline_ms = now_ms.saturating_add(self.limits.call_timeout_ms);
        self.calls.insert(
            req.id,
            InFlight {
                deadline_ms,
                oneway: req.oneway,
                credit: req.stream,
            },
        );
        self.streams += usize::from(req.stream.is_some());
        self.deadlines.push(deadline_ms, req.id);
        Ok(Some(IncomingCall {
            id: req.id,
            object: req.object,
            method: req.method,
            args: req.args,
            oneway: req.oneway,
            stream: req.stream.is_some(),
        }))
    }

    /// Adds credit to stream `id`; a grant for a stream no longer open is
    /// ignored (it crossed the stream's end on the wire).
    fn grant(&mut self, id: u64, n: u32) -> Result<(), CloseReason> {
        let Some(credit) = self.calls.get_mut(&id).and_then(|c| c.credit.as_mut()) else {
            return Ok(());
        };
        match credit.checked_add(n).filter(|&c| c <= MAX_STREAM_CREDIT) {
            Some(c) => *credit = c,
            None => {
                return Err(self.close(CloseReason::Protocol(format!(
                    "credit of stream {id} over {MAX_STREAM_CREDIT} items"
                ))));
            }
        }
        if n > 0 {
            self.events.push_back(ServerEvent::Credit { id, n });
        }
        Ok(())
    }

    /// Sends stream `id`'s next item, `item` being the value's JSON text;
    /// takes one credit. The first item lifts the call's deadline.
    pub fn stream_item(&mut self, id: u64, item: &[u8]) -> Result<(), StreamError> {
        let call = self.calls.get_mut(&id).ok_or(StreamError::NotOpen)?;
        let credit = call.credit.as_mut().ok_or(StreamError::NotOpen)?;
        if *credit == 0 {
            return Err(StreamError::NoCredit);
        }
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        write_item(&mut out, id, item);
        let max = self.limits.max_message_size as usize;
        if out.len() > max {
            self.scratch = out;
            let e = RpcError::new(
                ErrorCode::TooLarge,
                format!(
                    "an item of the stream ({} bytes) is over max_message_size ({max} bytes)",
                    item.len()
                ),
            );
            self.respond_error(id, &e);
            self.events.push_back(ServerEvent::Abort {
                id,
                why: AbortReason::ItemTooLarge,
            });
            return Err(StreamError::TooLarge);
        }
        *credit -= 1;
        call.deadline_ms = NO_DEADLINE;
        self.seal(&out);
        self.scratch = out;
        Ok(())
    }

    /// Ends stream `id` with its completion (an error ends it with
    /// [`respond_error`](Self::respond_error)). Ignored if it is not open.
    pub fn end_stream(&mut self, id: u64) {
        if self.calls.get(&id).is_some_and(|c| c.credit.is_some()) {
            self.remove(id);
            let mut out = std::mem::take(&mut self.scratch);
            out.clear();
            write_end(&mut out, id);
            self.seal(&out);
            self.scratch = out;
            self.prune();
        }
    }

    /// Forgets call or stream `id`.
    fn remove(&mut self, id: u64) -> Option<InFlight> {
        let call = self.calls.remove(&id)?;
        self.streams -= usize::from(call.credit.is_some());
        Some(call)
    }

    /// Answers call `id` with its whole response (JSON written by
    /// [`write_result`](crate::rpc::write_result) or
    /// [`write_error`](crate::rpc::write_error)). Dropped if the call is no
    /// longer in flight (aborted, expired) or was oneway; a response over
    /// `max_message_size` is replaced by a `too_large` error.
    pub fn respond(&mut self, id: u64, response: &[u8]) {
        let Some(call) = self.remove(id) else {
            return;
        };
        if call.oneway {
            return;
        }
        let max = self.limits.max_message_size as usize;
        if response.len() > max {
            let e = RpcError::new(
                ErrorCode::TooLarge,
                format!(
                    "the response ({} bytes) is over max_message_size ({max} bytes)",
                    response.len()
                ),
            );
            self.queue_error(id, &e);
        } else {
            self.seal(response);
        }
        self.prune();
    }

    /// Answers call `id` with an error (see [`respond`](Self::respond)).
    pub fn respond_error(&mut self, id: u64, error: &RpcError) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        write_error(&mut out, id, error);
        self.respond(id, &out);
        self.scratch = out;
    }

    /// The next sealed frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next: the
    /// earliest call deadline, the next ping, or the idle deadline when no
    /// call is in flight.
    pub fn poll_timeout(&mut self) -> Option<u64> {
        if self.closed.is_some() {
            return None;
        }
        let calls = &self.calls;
        let call = self
            .deadlines
            .next(|id, at| calls.get(&id).is_some_and(|c| c.deadline_ms == at));
        let idle = if self.calls.is_empty() {
            self.limits
                .idle_timeout_ms
                .map(|t| self.last_heard_ms.saturating_add(t))
        } else {
            None
        };
        [call, idle, self.next_ping_ms].into_iter().flatten().min()
    }

    /// Expires calls past their deadline (answered `timeout`, and
    /// [`ServerEvent::Abort`] for each), asks for a ping when the session
    /// has been quiet for `ping_interval_ms`, and closes an idle connection.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.closed.is_some() {
            return;
        }
        self.keepalive(now_ms);
        let calls = &self.calls;
        let due = self.deadlines.due(now_ms, |id, at| {
            calls.get(&id).is_some_and(|c| c.deadline_ms == at)
        });
        for id in due {
            let (oneway, stream) = self
                .calls
                .get(&id)
                .map_or((false, false), |c| (c.oneway, c.credit.is_some()));
            if !oneway {
                let what = if stream {
                    "the stream sent no item within call_timeout_ms"
                } else {
                    "the call ran past call_timeout_ms"
                };
                let e = RpcError::new(
                    ErrorCode::Timeout,
                    format!(
                        "{what} ({} ms) and was cancelled",
                        self.limits.call_timeout_ms
                    ),
                );
                self.respond_error(id, &e);
            }
            self.remove(id);
            self.events.push_back(ServerEvent::Abort {
                id,
                why: AbortReason::DeadlinePassed,
            });
        }
        if let Some(idle) = self.limits.idle_timeout_ms
            && self.calls.is_empty()
            && now_ms >= self.last_heard_ms.saturating_add(idle)
        {
            let reason = self.close(CloseReason::IdleTimeout);
            self.events.push_back(ServerEvent::Close(reason));
        }
    }

    /// A ping when no frame went either way for an interval: received
    /// frames count from when they came, sent ones from the tick that
    /// notices them.
    fn keepalive(&mut self, now_ms: u64) {
        let (Some(interval), Some(at)) = (self.limits.ping_interval_ms, self.next_ping_ms) else {
            return;
        };
        if now_ms < at {
            return;
        }
        let heard_until = self.last_heard_ms.saturating_add(interval);
        self.next_ping_ms = Some(if std::mem::take(&mut self.sent_since_tick) {
            now_ms.saturating_add(interval)
        } else if heard_until > now_ms {
            heard_until
        } else {
            self.events.push_back(ServerEvent::Ping);
            now_ms.saturating_add(interval)
        });
    }

    fn close(&mut self, reason: CloseReason) -> CloseReason {
        self.closed.get_or_insert(reason).clone()
    }

    fn queue_error(&mut self, id: u64, error: &RpcError) {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        write_error(&mut out, id, error);
        self.seal(&out);
        self.scratch = out;
    }

    fn seal(&mut self, payload: &[u8]) {
        if self.closed.is_some() {
            return;
        }
        match seal_frame(&mut self.sealer, payload) {
            Ok(frame) => {
                self.sent_since_tick = true;
                self.transmit.push_back(frame);
            }
            Err(reason) => {
                let reason = self.close(reason);
                self.events.push_back(ServerEvent::Close(reason));
            }
        }
    }

    fn prune(&mut self) {
        let calls = &self.calls;
        self.deadlines.prune(calls.len(), |id, at| {
            calls.get(&id).is_some_and(|c| c.deadline_ms == at)
        });
    }
}
