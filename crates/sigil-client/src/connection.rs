//! The connection task: the one owner of the WebSocket and of the RPC
//! session, which is sigil-core's [`ClientConnection`]: it numbers the calls,
//! keeps their deadlines, matches responses and sends cancels. This task only
//! moves frames between it and the WebSocket, hands callers their outcomes,
//! and sleeps until the machine's next deadline.
//!
//! Callers send it [`Command`]s over a bounded channel, and [`Control`]s
//! (cancels, and stream consumers' progress) over an unbounded one, so a
//! `Drop` can always send them: each answers an earlier command, so they
//! cannot outnumber the calls made. Any frame that fails to open,
//! any payload that is not a response, and a text message close the
//! connection and fail every call in flight. The task ends when the
//! connection ends, when a client asks it to close, or when every
//! [`Client`](crate::Client) handle is gone.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::task::{Context, Poll, ready};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::value::RawValue;
use sigil_core::connection::{
    CallError, CallOptions, ClientConnection, ClientEvent, CloseReason, StreamOptions,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::connect::{CLOSE_TIMEOUT, Ws, describe};
use crate::error::ClientError;

/// Where the outcome of a call goes.
pub(crate) type Reply = oneshot::Sender<Result<Box<RawValue>, ClientError>>;
/// Where the outcome of a oneway call (written or not) goes.
pub(crate) type Ack = oneshot::Sender<Result<(), ClientError>>;

/// What a stream's consumer receives: items, then one end.
pub(crate) enum Piece {
    Item(Box<RawValue>),
    End(Result<(), ClientError>),
}

/// Where a stream's pieces go. Unbounded, but the machine closes the
/// connection if the server sends more than the window the consumer has
/// left room for.
pub(crate) type Pieces = mpsc::UnboundedSender<Piece>;

/// Who waits for what comes for a call id.
enum Waiter {
    Call(Reply),
    Stream(Pieces),
}

impl Waiter {
    fn fail(self, error: ClientError) {
        match self {
            Waiter::Call(reply) => {
                let _ = reply.send(Err(error));
            }
            Waiter::Stream(pieces) => {
                let _ = pieces.send(Piece::End(Err(error)));
            }
        }
    }
}

/// Most sealed messages waiting for the socket before the task stops taking
/// new commands (backpressure on the callers).
const MAX_OUTBOX: usize = 64;

/// Most commands, or messages from the server, handled in one turn of the
/// task once one has come: the calls of many callers go out in one write,
/// and the responses read together reach their callers together.
const BATCH: usize = MAX_OUTBOX;

/// A call as the caller hands it over: names, arguments (a JSON array) and
/// options. `token` names it for a later [`Control`].
pub(crate) struct CallRequest {
    pub(crate) token: u64,
    pub(crate) object: String,
    pub(crate) method: String,
    pub(crate) args: Box<RawValue>,
    pub(crate) options: CallOptions,
}

/// What callers ask of the connection task.
pub(crate) enum Command {
    /// A call; its outcome goes to `reply`.
    Call { call: CallRequest, reply: Reply },
    /// A oneway call; `sent` hears once it is written to the socket.
    Oneway { call: CallRequest, sent: Ack },
    /// A stream; its items and end go to `pieces`, and `opened` hears
    /// whether it was sent.
    Stream {
        call: CallRequest,
        options: StreamOptions,
        pieces: Pieces,
        opened: Ack,
    },
    /// Close the connection; `done` hears once it is closed.
    Close { done: oneshot::Sender<()> },
}

impl Command {
    /// The token of the call it makes, if it makes one.
    pub(crate) fn token(&self) -> Option<u64> {
        match self {
            Command::Call { call, .. }
            | Command::Oneway { call, .. }
            | Command::Stream { call, .. } => Some(call.token),
            Command::Close { .. } => None,
        }
    }

    /// Answers it with `error`; a `Close` is handed back, to be answered
    /// once the connection is closed.
    pub(crate) fn fail(self, error: ClientError) -> Option<oneshot::Sender<()>> {
        match self {
            Command::Call { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Oneway { sent, .. } | Command::Stream { opened: sent, .. } => {
                let _ = sent.send(Err(error));
            }
            Command::Close { done } => return Some(done),
        }
        None
    }
}

/// The callers' side of a client: what every connection of it takes
/// commands and controls from.
pub(crate) struct Channels {
    pub(crate) commands: mpsc::Receiver<Command>,
    pub(crate) controls: mpsc::UnboundedReceiver<Control>,
}

impl Channels {
    /// Refuses new commands and answers those already queued with `error`;
    /// returns the `Close`s among them.
    pub(crate) fn close(&mut self, error: impl Fn() -> ClientError) -> Vec<oneshot::Sender<()>> {
        self.commands.close();
        let mut done = Vec::new();
        while let Ok(command) = self.commands.try_recv() {
            done.extend(command.fail(error()));
        }
        done
    }
}

/// How a connection ended.
pub(crate) struct Ended {
    /// Why, for what waits (`None`: the client closed it, or was dropped).
    pub(crate) error: Option<ClientError>,
    /// The callers' channels, still open, when the connection broke and
    /// the client reconnects; `None` when they are closed.
    pub(crate) channels: Option<Channels>,
}

/// What callers say about calls and streams already made.
pub(crate) enum Control {
    /// The caller of call or stream `token` gave up (dropped it).
    Cancel { token: u64 },
    /// The consumer of stream `token` took `n` items.
    Consumed { token: u64, n: u32 },
}

/// Why the connection ended.
struct End {
    /// What calls in flight are told.
    reason: String,
    /// The WebSocket close code we send.
    code: CloseCode,
    /// A client waiting in `close`.
    done: Option<oneshot::Sender<()>>,
    /// The client closed it (or was dropped): nothing to reconnect.
    deliberate: bool,
}

impl End {
    fn new(reason: impl Into<String>, code: CloseCode) -> End {
        End {
            reason: reason.into(),
            code,
            done: None,
            deliberate: false,
        }
    }

    fn protocol(reason: impl Into<String>) -> End {
        End::new(reason, CloseCode::Protocol)
    }
}

/// The sending half: sealed messages waiting, and what waits for a flush.
struct Writer {
    sink: SplitSink<Ws, Message>,
    outbox: VecDeque<(Message, Option<Ack>)>,
    /// Oneway calls handed to the sink but not yet flushed.
    unflushed: Vec<Ack>,
    /// Something was handed to the sink since the last flush.
    dirty: bool,
}

impl Writer {
    fn busy(&self) -> bool {
        self.dirty || !self.outbox.is_empty()
    }

    /// Hands every waiting message to the sink, then flushes. Cancel-safe:
    /// all progress is kept in `self`.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), tungstenite::Error>> {
        while !self.outbox.is_empty() {
            ready!(self.sink.poll_ready_unpin(cx))?;
            if let Some((message, ack)) = self.outbox.pop_front() {
                self.sink.start_send_unpin(message)?;
                self.unflushed.extend(ack);
                self.dirty = true;
            }
        }
        ready!(self.sink.poll_flush_unpin(cx))?;
        self.dirty = false;
        for ack in self.unflushed.drain(..) {
            let _ = ack.send(Ok(()));
        }
        Poll::Ready(Ok(()))
    }
}

/// The state the connection task owns.
pub(crate) struct Connection {
    writer: Writer,
    stream: SplitStream<Ws>,
    channels: Channels,
    /// Commands that waited for this connection, taken before new ones.
    backlog: Vec<Command>,
    conn: ClientConnection,
    /// The clock `conn` runs on.
    epoch: Instant,
    /// Calls and streams waiting, by id: their caller's token and where
    /// their outcome goes.
    replies: HashMap<u64, (u64, Waiter)>,
    /// Call ids by caller token, for cancels and credit.
    ids: HashMap<u64, u64>,
}

impl Connection {
    pub(crate) fn new(
        ws: Ws,
        conn: ClientConnection,
        channels: Channels,
        backlog: Vec<Command>,
    ) -> Connection {
        let (sink, stream) = ws.split();
        Connection {
            writer: Writer {
                sink,
                outbox: VecDeque::new(),
                unflushed: Vec::new(),
                dirty: false,
            },
            stream,
            channels,
            backlog,
            conn,
            epoch: Instant::now(),
            replies: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs the connection until it ends, then closes it. With `keep`, a
    /// connection that broke hands the callers' channels back open (to a
    /// client that reconnects); otherwise they are closed.
    pub(crate) async fn run(mut self, keep: bool) -> Ended {
        // What waited for this connection goes first; after a close among
        // it, the rest is answered by `finish`.
        let mut end = None;
        let mut backlog = std::mem::take(&mut self.backlog).into_iter();
        for command in backlog.by_ref() {
            if let Err(e) = self.on_command(command) {
                end = Some(e);
                break;
            }
        }
        self.backlog = backlog.collect();
        let end = loop {
            if let Some(end) = end.take() {
                break end;
            }
            if let Err(end) = self.drain_machine() {
                break end;
            }
            let take_commands = self.writer.outbox.len() < MAX_OUTBOX;
            let write = self.writer.busy();
            let timer = self
                .conn
                .poll_timeout()
                .map(|at| self.epoch + std::time::Duration::from_millis(at));
            tokio::select! {
                incoming = self.stream.next() => {
                    if let Err(end) = self.on_incoming(incoming) {
                        break end;
                    }
                    // And the responses already read with it.
                    if let Err(end) = self.take_ready_incoming() {
                        break end;
                    }
                }
                written = poll_fn(|cx| self.writer.poll_write(cx)), if write => {
                    if let Err(e) = written {
                        break End::new(describe(&e), CloseCode::Normal);
                    }
                }
                Some(control) = self.channels.controls.recv() => self.on_control(control),
                command = self.channels.commands.recv(), if take_commands => {
                    let Some(command) = command else {
                        let mut end = End::new("the client was dropped", CloseCode::Normal);
                        end.deliberate = true;
                        break end;
                    };
                    if let Err(end) = self.on_command(command) {
                        break end;
                    }
                    // And the calls already waiting, so that their requests
                    // go out in one write.
                    if let Err(end) = self.take_ready_commands() {
                        break end;
                    }
                }
                () = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                    let now = self.now_ms();
                    self.conn.handle_timeout(now);
                }
            }
        };
        self.finish(end, keep).await
    }

    /// Moves the machine's frames to the outbox and its outcomes to the
    /// callers.
    fn drain_machine(&mut self) -> Result<(), End> {
        while let Some(frame) = self.conn.poll_transmit() {
            self.writer.outbox.push_back((Message::binary(frame), None));
        }
        while let Some(event) = self.conn.poll_event() {
            match event {
                ClientEvent::Response { id, outcome } => {
                    if let Some((token, Waiter::Call(reply))) = self.replies.remove(&id) {
                        self.ids.remove(&token);
                        let _ = reply.send(outcome.map_err(ClientError::Remote));
                    }
                }
                ClientEvent::Item { id, value } => {
                    if let Some((_, Waiter::Stream(pieces))) = self.replies.get(&id) {
                        let _ = pieces.send(Piece::Item(value));
                    }
                }
                ClientEvent::StreamEnd { id, outcome } => {
                    if let Some((token, Waiter::Stream(pieces))) = self.replies.remove(&id) {
                        self.ids.remove(&token);
                        let _ = pieces.send(Piece::End(outcome.map_err(ClientError::Remote)));
                    }
                }
                ClientEvent::Close(reason) => return Err(closed_by(&reason)),
            }
        }
        Ok(())
    }

    /// Handles the messages that can be read without waiting (at most
    /// [`BATCH`]): their outcomes go to the callers at once, and the socket
    /// is not polled again for each.
    fn take_ready_incoming(&mut self) -> Result<(), End> {
        for _ in 0..BATCH {
            match self.stream.next().now_or_never() {
                Some(incoming) => self.on_incoming(incoming)?,
                None => break,
            }
        }
        Ok(())
    }

    /// Takes the commands that are already waiting (at most [`BATCH`]).
    fn take_ready_commands(&mut self) -> Result<(), End> {
        for _ in 0..BATCH {
            match self.channels.commands.try_recv() {
                Ok(command) => self.on_command(command)?,
                Err(_) => break,
            }
        }
        Ok(())
    }

    fn on_incoming(
        &mut self,
        incoming: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        match incoming {
            Some(Ok(Message::Binary(frame))) => {
                let now = self.now_ms();
                self.conn
                    .handle_frame(now, &frame)
                    .map_err(|reason| closed_by(&reason))
            }
            Some(Ok(Message::Text(_))) => Err(End::protocol(
                "the server sent a text message (protocol error)",
            )),
            Some(Ok(Message::Close(_))) | None => Err(End::new(
                "the server closed the connection",
                CloseCode::Normal,
            )),
            // Ping and pong are answered by tungstenite; raw frames are not read.
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(End::new(describe(&e), CloseCode::Normal)),
        }
    }

    fn start(&mut self, call: &CallRequest) -> Result<u64, ClientError> {
        let now = self.now_ms();
        self.conn
            .call(now, &call.object, &call.method, &*call.args, call.options)
            .map_err(call_error)
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Cancel { token } => {
                if let Some(id) = self.ids.remove(&token) {
                    self.replies.remove(&id);
                    self.conn.cancel(id);
                }
            }
            Control::Consumed { token, n } => {
                if let Some(&id) = self.ids.get(&token) {
                    let now = self.now_ms();
                    self.conn.consumed(now, id, n);
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) -> Result<(), End> {
        // Cancels and credit sent before this command go first (they come
        // on their own channel).
        while let Ok(control) = self.channels.controls.try_recv() {
            self.on_control(control);
        }
        match command {
            Command::Call { call, reply } => match self.start(&call) {
                Ok(id) => {
                    self.replies.insert(id, (call.token, Waiter::Call(reply)));
                    self.ids.insert(call.token, id);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Command::Oneway { call, sent } => match self.start(&call) {
                Ok(_) => {
                    // The machine sealed exactly one frame for it.
                    while let Some(frame) = self.conn.poll_transmit() {
                        self.writer.outbox.push_back((Message::binary(frame), None));
                    }
                    if let Some(last) = self.writer.outbox.back_mut() {
                        last.1 = Some(sent);
                    }
                }
                Err(e) => {
                    let _ = sent.send(Err(e));
                }
            },
            Command::Stream {
                call,
                options,
                pieces,
                opened,
            } => {
                let now = self.now_ms();
                let started = self
                    .conn
                    .stream(now, &call.object, &call.method, &*call.args, options)
                    .map_err(call_error);
                match started {
                    Ok(id) => {
                        self.replies
                            .insert(id, (call.token, Waiter::Stream(pieces)));
                        self.ids.insert(call.token, id);
                        let _ = opened.send(Ok(()));
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                    }
                }
            }
            Command::Close { done } => {
                return Err(End {
                    reason: "the connection was closed by the client".into(),
                    code: CloseCode::Normal,
                    done: Some(done),
                    deliberate: true,
                });
            }
        }
        Ok(())
    }

    /// Fails everything still waiting, then closes the WebSocket (bounded by
    /// [`CLOSE_TIMEOUT`]). With `keep`, a connection that broke leaves the
    /// callers' channels open, and hands them back.
    async fn finish(mut self, end: End, keep: bool) -> Ended {
        tracing::debug!(reason = %end.reason, "sigil connection ends");
        let error = || ClientError::connection(end.reason.clone());
        self.conn.handle_close(CloseReason::Local);
        for (_, (_, waiter)) in self.replies.drain() {
            waiter.fail(error());
        }
        for (_, ack) in self.writer.outbox.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(Err(error()));
            }
        }
        for ack in self.writer.unflushed.drain(..) {
            let _ = ack.send(Err(error()));
        }
        let mut done = Vec::from_iter(end.done);
        for command in self.backlog.drain(..) {
            done.extend(command.fail(error()));
        }
        let keep = keep && !end.deliberate;
        if !keep {
            // Refuse new commands, and answer those already queued.
            done.extend(self.channels.close(error));
        }

        let close = CloseFrame {
            code: end.code,
            reason: "".into(),
        };
        let mut sink = self.writer.sink;
        let mut stream = self.stream;
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if sink.send(Message::Close(Some(close))).await.is_ok() {
                // Read until the server's close reply ends the stream.
                while let Some(Ok(_)) = stream.next().await {}
            }
        })
        .await;
        for d in done {
            let _ = d.send(());
        }
        Ended {
            error: (!end.deliberate).then(|| ClientError::connection(end.reason)),
            channels: keep.then_some(self.channels),
        }
    }
}

/// Why a call or stream could not start.
fn call_error(e: CallError) -> ClientError {
    match e {
        CallError::Invalid(e) => ClientError::InvalidArguments(e.message),
        CallError::Closed(reason) => ClientError::connection(closed_by(&reason).reason),
    }
}

/// How the connection ends when the machine says it must close.
fn closed_by(reason: &CloseReason) -> End {
    match reason {
        CloseReason::BadFrame(e) => End::protocol(format!("invalid frame from the server: {e}")),
        CloseReason::Protocol(why) => {
            End::protocol(format!("invalid response from the server: {why}"))
        }
        CloseReason::Exhausted => End::new(
            "the session's sequence numbers or call ids are exhausted; connect again",
            CloseCode::Normal,
        ),
        other => End::new(other.to_string(), CloseCode::Normal),
    }
}
