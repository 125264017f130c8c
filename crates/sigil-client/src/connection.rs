//! The connection task: the one owner of the WebSocket and the session.
//!
//! Callers send it [`Command`]s over a channel. It registers each call in
//! its pending map by id before sealing and sending the request, reads and
//! opens the server's frames, and completes the matching call. Any frame
//! that fails to open, any payload that is not a response, and a text
//! message close the connection and fail every call in flight. The task ends
//! when the connection ends, when a client asks it to close, or when every
//! [`Client`](crate::Client) handle is gone.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::task::{Context, Poll, ready};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::value::RawValue;
use sigil_core::rpc::parse_response;
use sigil_core::transport::{FrameError, FrameOpener, FrameSealer};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::connect::{CLOSE_TIMEOUT, Ws, describe};
use crate::error::ClientError;

/// Where the outcome of a call goes.
pub(crate) type Reply = oneshot::Sender<Result<Box<RawValue>, ClientError>>;
/// Where the outcome of a oneway call (written or not) goes.
pub(crate) type Ack = oneshot::Sender<Result<(), ClientError>>;

/// Most sealed messages waiting for the socket before the task stops taking
/// new commands (backpressure on the callers).
const MAX_OUTBOX: usize = 64;

/// What callers ask of the connection task.
pub(crate) enum Command {
    /// A call: `request` is the JSON request with this `id`.
    Call {
        id: u64,
        request: Vec<u8>,
        reply: Reply,
    },
    /// A oneway call; `sent` hears once it is written to the socket.
    Oneway { request: Vec<u8>, sent: Ack },
    /// Close the connection; `done` hears once it is closed.
    Close { done: oneshot::Sender<()> },
}

/// Why the connection ended.
struct End {
    /// What calls in flight are told.
    reason: String,
    /// The WebSocket close code we send.
    code: CloseCode,
    /// A client waiting in `close`.
    done: Option<oneshot::Sender<()>>,
}

impl End {
    fn new(reason: impl Into<String>, code: CloseCode) -> End {
        End {
            reason: reason.into(),
            code,
            done: None,
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
    commands: mpsc::Receiver<Command>,
    sealer: FrameSealer,
    opener: FrameOpener,
    pending: HashMap<u64, Reply>,
    /// Pending-map size at which calls whose caller gave up are pruned.
    prune_at: usize,
}

impl Connection {
    pub(crate) fn new(
        ws: Ws,
        sealer: FrameSealer,
        opener: FrameOpener,
        commands: mpsc::Receiver<Command>,
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
            commands,
            sealer,
            opener,
            pending: HashMap::new(),
            prune_at: 64,
        }
    }

    /// Runs the connection until it ends, then closes it.
    pub(crate) async fn run(mut self) {
        let end = loop {
            let take_commands = self.writer.outbox.len() < MAX_OUTBOX;
            let write = self.writer.busy();
            tokio::select! {
                incoming = self.stream.next() => {
                    if let Err(end) = self.on_incoming(incoming) {
                        break end;
                    }
                }
                written = poll_fn(|cx| self.writer.poll_write(cx)), if write => {
                    if let Err(e) = written {
                        break End::new(describe(&e), CloseCode::Normal);
                    }
                }
                command = self.commands.recv(), if take_commands => {
                    let Some(command) = command else {
                        break End::new("the client was dropped", CloseCode::Normal);
                    };
                    if let Err(end) = self.on_command(command) {
                        break end;
                    }
                }
            }
        };
        self.finish(end).await;
    }

    fn on_incoming(
        &mut self,
        incoming: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        match incoming {
            Some(Ok(Message::Binary(frame))) => self.on_frame(&frame),
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

    fn on_frame(&mut self, frame: &[u8]) -> Result<(), End> {
        let payload = self
            .opener
            .open(frame)
            .map_err(|e| End::protocol(format!("invalid frame from the server: {e}")))?;
        if !payload.is_empty() {
            let response = parse_response(payload)
                .map_err(|e| End::protocol(format!("invalid response from the server: {e}")))?;
            match self.pending.remove(&response.id) {
                Some(reply) => {
                    let _ = reply.send(response.outcome.map_err(ClientError::Remote));
                }
                None => tracing::debug!(id = response.id, "ignored a response to no call"),
            }
        }
        if self.opener.next_seq().is_none() {
            return Err(End::new(
                "the session's sequence numbers are exhausted; connect again",
                CloseCode::Normal,
            ));
        }
        Ok(())
    }

    fn on_command(&mut self, command: Command) -> Result<(), End> {
        match command {
            Command::Call { id, request, reply } => match self.seal(&request) {
                Ok(message) => {
                    self.prune();
                    self.pending.insert(id, reply);
                    self.writer.outbox.push_back((message, None));
                    Ok(())
                }
                Err(e) => {
                    let end = seal_failure(e);
                    let _ = reply.send(Err(ClientError::connection(end.reason.clone())));
                    Err(end)
                }
            },
            Command::Oneway { request, sent } => match self.seal(&request) {
                Ok(message) => {
                    self.writer.outbox.push_back((message, Some(sent)));
                    Ok(())
                }
                Err(e) => {
                    let end = seal_failure(e);
                    let _ = sent.send(Err(ClientError::connection(end.reason.clone())));
                    Err(end)
                }
            },
            Command::Close { done } => Err(End {
                reason: "the connection was closed by the client".into(),
                code: CloseCode::Normal,
                done: Some(done),
            }),
        }
    }

    fn seal(&mut self, request: &[u8]) -> Result<Message, FrameError> {
        let mut frame = Vec::new();
        self.sealer.seal(request, &mut frame)?;
        Ok(Message::binary(frame))
    }

    /// Drops calls whose caller has gone away, once the map has doubled.
    fn prune(&mut self) {
        if self.pending.len() >= self.prune_at {
            self.pending.retain(|_, reply| !reply.is_closed());
            self.prune_at = (self.pending.len() * 2).max(64);
        }
    }

    /// Fails everything still waiting, then closes the WebSocket (bounded by
    /// [`CLOSE_TIMEOUT`]).
    async fn finish(mut self, end: End) {
        tracing::debug!(reason = %end.reason, "sigil connection ends");
        let error = || ClientError::connection(end.reason.clone());
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(error()));
        }
        for (_, ack) in self.writer.outbox.drain(..) {
            if let Some(ack) = ack {
                let _ = ack.send(Err(error()));
            }
        }
        for ack in self.writer.unflushed.drain(..) {
            let _ = ack.send(Err(error()));
        }
        // Refuse new commands, and answer those already queued.
        self.commands.close();
        let mut done = Vec::from_iter(end.done);
        while let Ok(command) = self.commands.try_recv() {
            match command {
                Command::Call { reply, .. } => {
                    let _ = reply.send(Err(error()));
                }
                Command::Oneway { sent, .. } => {
                    let _ = sent.send(Err(error()));
                }
                Command::Close { done: d } => done.push(d),
            }
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
    }
}

fn seal_failure(e: FrameError) -> End {
    match e {
        FrameError::Exhausted => End::new(
            "the session's sequence numbers are exhausted; connect again",
            CloseCode::Normal,
        ),
        // Requests are checked against max_message_size before they get here.
        other => End::new(format!("cannot send a request: {other}"), CloseCode::Normal),
    }
}
