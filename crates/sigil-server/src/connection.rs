//! One WebSocket connection: the sigil/1 handshake, then the RPC session.
//!
//! A connection is one task. It owns its session (no lock), reads frames,
//! runs quick methods inline, spawns asynchronous ones into its own task
//! set (aborted when the connection ends) and sends their responses as
//! they finish. A stream's producer is a task of its own that polls the
//! method's stream only while it holds credit (a semaphore the client's
//! grants fill) and hands each item to the connection through one small
//! bounded queue: a reader that stops stalls its producer, never the
//! server's memory. Every wait is bounded: the handshake by its deadline, every
//! send and the close by `write_timeout`, every asynchronous call by
//! `call_timeout`. Nothing that goes wrong here affects another
//! connection: every failure closes this one only, and is logged (rate
//! limited).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sigil_core::batch::{self, Batch};
use sigil_core::connection::{
    AbortReason, CloseReason, ServerConnection, ServerEvent, SessionLimits, StreamError,
};
use sigil_core::handshake::{BUSY_REASON, Refusal, RefusalCode, claimed_client_key, verify_hello};
use sigil_core::keys::PublicKey;
use sigil_core::limit::TokenBucket;
use sigil_core::rand::OsRandom;
use sigil_core::rpc::{ErrorCode, RpcError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Error as WsError, Message};
use tracing::{debug, info};

use crate::budget::Tracked;
use crate::logs::Level;
use crate::metrics::{Handshake, Limit, outcome_of};
use crate::preauth::ReadBudget;
use crate::registry::{CallContext, Handler, Items, Lookup, not_a_stream, returns_a_stream};
use crate::reload::{self, Authorized};
use crate::server::{Conn, Shared};
use crate::settings::{HandshakeInfo, HookDecision};
use crate::tls::PeerCertificate;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A session being served: a future of its own on the heap, sized for
/// serving alone.
type Serving = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// Runs a connection from its first WebSocket message to its close.
///
/// The handshake and the session are futures of their own on the heap:
/// the handshake's state (several KiB: hello, checks, refusals, the hook)
/// is freed when the session starts, and the session's holds only what
/// serving needs. Laid out in one future, the two took 9 KiB for the life
/// of every session (measured with `size_of_val`), most of an idle
/// session's memory.
pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    conn: Conn,
    cert: Option<PeerCertificate>,
    budget: ReadBudget,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut serving = None;
    Box::pin(handshake(ws, conn, cert, budget, &mut serving)).await;
    if let Some(serving) = serving {
        serving.await;
    }
}

/// The sigil/1 handshake; on success, the session to serve goes to `serving`.
async fn handshake<S>(
    mut ws: WebSocketStream<S>,
    conn: Conn,
    cert: Option<PeerCertificate>,
    budget: ReadBudget,
    serving: &mut Option<Serving>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Conn {
        shared,
        peer,
        deadline,
        mut stop,
        pending,
        tracked,
        batching,
    } = conn;
    let write_timeout = shared.limits.write_timeout;
    let first = tokio::select! {
        first = timeout_at(deadline, next_binary(&mut ws)) => first,
        _ = stop.changed() => {
            return close(&mut ws, write_timeout, CloseCode::Away, "server shutting down").await;
        }
    };
    let hello = match first {
        Ok(Some(msg)) => msg,
        Ok(None) => return debug!("{peer} closed before its handshake"),
        Err(_) => {
            shared.metrics.handshake(Handshake::TimedOut);
            shared.logs.event("handshake timeouts", Level::Info, || {
                format!("{peer} did not finish its handshake within the timeout: closing")
            });
            return close(
                &mut ws,
                write_timeout,
                CloseCode::Policy,
                "handshake timeout",
            )
            .await;
        }
    };
    let claimed = claimed_client_key(&hello);
    // Under load, an address over its hello rate is refused before any
    // X25519 work.
    if shared.pending.under_load() && !shared.hello_rate.allow(peer.ip()) {
        return refuse(&mut ws, &shared, peer, claimed, Refusal::rate_limited()).await;
    }
    // Watch the keys from before they are read, so that a reload in
    // between is not missed.
    let revocation = shared
        .clients
        .closes_revoked()
        .then(|| shared.clients.watch());
    let authorized = shared.clients.current();
    // The core checks the hello, the replay store says whether it is fresh.
    let checked = match verify_hello(&authorized.core, now_ms(), &hello) {
        Ok(verified) => shared.replay.check(verified, peer, now_ms()).await,
        Err(refusal) => Err(refusal),
    };
    let client_hello = match checked {
        Ok(h) => h,
        Err(refusal) => return refuse(&mut ws, &shared, peer, claimed, refusal).await,
    };
    let client_key = *client_hello.client_key();
    if client_hello.server_key_index() > 0 {
        shared
            .logs
            .event("clients of a key not advertised", Level::Info, || {
                format!(
                    "client {} at {peer} pinned server key {} (not the advertised one): \
                 it must pin the advertised key before that one is dropped",
                    client_key.fingerprint(),
                    client_hello.server_key().fingerprint()
                )
            });
    }
    let decision = match &shared.hook {
        None => HookDecision::Accept(None),
        Some(hook) => hook(&HandshakeInfo {
            client_key: &client_key,
            payload: client_hello.payload(),
            peer_addr: peer,
            certificate: cert.as_ref(),
        }),
    };
    let client_payload = client_hello.payload().map(str::to_owned);
    let payload = match decision {
        HookDecision::Refuse(reason) => {
            let refusal = client_hello.refuse(&reason);
            return refuse(&mut ws, &shared, peer, Some(client_key), refusal).await;
        }
        HookDecision::Accept(payload) => payload,
    };
    // A session slot, or busy: sessions never lose theirs to newcomers.
    let Ok(slot) = shared.sessions.clone().try_acquire_owned() else {
        let refusal = Refusal::busy(BUSY_REASON);
        return refuse(&mut ws, &shared, peer, Some(client_key), refusal).await;
    };
    let session = match client_hello.accept(&mut OsRandom, payload.as_deref()) {
        Ok((msg2, session)) => {
            let sent = timeout(write_timeout, ws.send(Message::Binary(msg2.into()))).await;
            if !matches!(sent, Ok(Ok(()))) {
                return debug!("{peer} did not take message 2");
            }
            shared.metrics.handshake(Handshake::Accepted);
            session
        }
        Err(e) => {
            shared.metrics.handshake(Handshake::Failed);
            shared
                .logs
                .event("failed handshake answers", Level::Warn, || {
                    format!("cannot answer the handshake of {peer}: {e}")
                });
            return close(&mut ws, write_timeout, CloseCode::Error, "server error").await;
        }
    };
    // A session now: no longer pending, no longer on a stranger's budget.
    drop(pending);
    budget.lift();
    let cx = Arc::new(CallContext {
        client_key,
        client_name: authorized.names.get(&client_key).cloned(),
        peer_addr: peer,
        session_hash: *session.session_hash(),
        certificate: cert,
        payload: client_payload,
        instances: Default::default(),
    });
    info!(
        "session with {peer}: client {}{} over {}",
        cx.fingerprint(),
        cx.client_name
            .as_deref()
            .map(|n| format!(" ({n:?})"))
            .unwrap_or_default(),
        if batching {
            batch::SUBPROTOCOL_BATCH
        } else {
            batch::SUBPROTOCOL
        }
    );
    let limits = shared.limits;
    let session_limits = SessionLimits {
        max_message_size: authorized.core.limits().max_message_size,
        max_inflight: limits.max_inflight,
        max_streams: limits.max_streams,
        // A client's business: the server sends what it is granted.
        stream_window: 1,
        call_timeout_ms: u64::try_from(limits.call_timeout.as_millis()).unwrap_or(u64::MAX),
        idle_timeout_ms: Some(u64::try_from(limits.idle_timeout.as_millis()).unwrap_or(u64::MAX)),
        ping_interval_ms: limits
            .ping_interval
            .map(|i| u64::try_from(i.as_millis()).unwrap_or(u64::MAX)),
    };
    // Sessions do not keep the key set of their handshake alive.
    drop(authorized);
    let session = Session {
        shared,
        peer,
        cx,
        conn: ServerConnection::new(session, session_limits, 0),
        epoch: Instant::now(),
        out: Vec::new(),
        batch: batching.then(Batch::new),
        _slot: slot,
        _tracked: tracked,
    };
    *serving = Some(Box::pin(session.serve(ws, stop, revocation)));
}

/// Sends a refusal and closes, logging it (rate limited) with the key the
/// hello named, if any.
async fn refuse<S>(
    ws: &mut WebSocketStream<S>,
    shared: &Shared,
    peer: SocketAddr,
    claimed: Option<PublicKey>,
    refusal: Refusal,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    shared.metrics.refused(&refusal);
    let kind = match refusal.code() {
        RefusalCode::HandshakeFailed => "refused handshakes (handshake failed)",
        RefusalCode::Rejected => "refused handshakes (rejected)",
        RefusalCode::Busy => "refused handshakes (busy)",
        RefusalCode::UnsupportedVersion => "refused handshakes (unsupported version)",
        RefusalCode::StaleOrReplayed => "refused handshakes (stale or replayed)",
        _ => "refused handshakes",
    };
    shared.logs.event(kind, Level::Info, || {
        let key = claimed.map_or_else(|| String::from("none"), |k| k.fingerprint());
        format!(
            "refused handshake from {peer} (client key {key}): {refusal} ({:?})",
            refusal.detail()
        )
    });
    let write_timeout = shared.limits.write_timeout;
    let _ = timeout(
        write_timeout,
        ws.send(Message::Binary(refusal.to_bytes().into())),
    )
    .await;
    close(ws, write_timeout, CloseCode::Normal, "refused").await;
}

/// Reads the next binary message, skipping pings and pongs.
async fn next_binary<S>(ws: &mut WebSocketStream<S>) -> Option<Vec<u8>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await? {
            Ok(Message::Binary(b)) => return Some(b.into()),
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Ok(_) | Err(_) => return None,
        }
    }
}

/// The next message; but first, if frames wait unflushed and no message is
/// ready, flushes them (within `limit`): the responses to a batch of
/// requests that arrived together go out in one write. Cancel-safe:
/// tungstenite keeps unflushed frames, and `unflushed` stays set until a
/// flush completes.
async fn next_or_flush<S>(
    ws: &mut WebSocketStream<S>,
    unflushed: &mut bool,
    limit: std::time::Duration,
) -> Option<Result<Message, WsError>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if *unflushed {
        if let Some(ready) = ws.next().now_or_never() {
            return ready;
        }
        match timeout(limit, ws.flush()).await {
            Ok(Ok(())) => *unflushed = false,
            Ok(Err(e)) => return Some(Err(e)),
            Err(_) => return Some(Err(WsError::Io(std::io::ErrorKind::TimedOut.into()))),
        }
    }
    ws.next().await
}

/// Sends a close and waits for the peer's, at most `limit`.
async fn close<S>(
    ws: &mut WebSocketStream<S>,
    limit: std::time::Duration,
    code: CloseCode,
    reason: &str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = timeout(limit, ws.close(Some(frame))).await;
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Who is calling, for every handler.
    cx: Arc<CallContext>,
    /// The RPC session's rules: ids, calls in flight, deadlines, limits.
    conn: ServerConnection,
    /// The clock `conn` runs on.
    epoch: Instant,
    /// A response being built (reused).
    out: Vec<u8>,
    /// With batching (`sigil.v1.batch`): the frames going out together.
    batch: Option<Batch>,
    /// Its place among `max_connections`.
    _slot: OwnedSemaphorePermit,
    /// Counted among the server's connections until it ends.
    _tracked: Tracked,
}

/// Why a session that stopped reading is dropped (logged).
const WRITE_TIMED_OUT: &str = "did not read its responses within write_timeout_ms";

/// WebSocket pings a second a session may send (with a burst of as many):
/// a keepalive needs a few a minute; a flood of them costs the server a
/// pong each, so a peer over the rate is closed.
const PINGS_PER_SECOND: u32 = 16;

/// What an asynchronous call's task gives back: its id, and its response
/// or the panic that ended it.
type Done = (u64, std::thread::Result<Vec<u8>>);

/// Items produced and not yet sealed, across the streams of a session: a
/// producer waits when the queue is full (the session is busy sending).
const PRODUCED_QUEUE: usize = 32;

/// What a stream's producer hands the session.
enum Produced {
    /// The next item's JSON text.
    Item(u64, Vec<u8>),
    /// The end: completed, or failed with this error.
    End(u64, Result<(), RpcError>),
    /// The stream panicked.
    Panicked(u64),
}

/// The streams of a session: their producers, and the credit each may use.
struct Streams {
    producers: JoinSet<()>,
    credit: HashMap<u64, (Arc<Semaphore>, AbortHandle)>,
    produced: mpsc::Sender<Produced>,
}

impl Streams {
    /// Stops stream `id`'s producer (dropping its stream), if it runs.
    fn stop(&mut self, id: u64) {
        if let Some((_, task)) = self.credit.remove(&id) {
            task.abort();
        }
    }
}

/// Polls `items` once per credit, handing each item (then the end) to the
/// session.
async fn produce(id: u64, mut items: Items, credit: Arc<Semaphore>, out: mpsc::Sender<Produced>) {
    loop {
        match credit.acquire().await {
            Ok(permit) => permit.forget(),
            Err(_) => return,
        }
        let (next, last) = match AssertUnwindSafe(items.next()).catch_unwind().await {
            Ok(Some(Ok(item))) => (Produced::Item(id, item), false),
            Ok(Some(Err(e))) => (Produced::End(id, Err(e)), true),
            Ok(None) => (Produced::End(id, Ok(())), true),
            Err(_) => (Produced::Panicked(id), true),
        };
        if out.send(next).await.is_err() || last {
            return;
        }
    }
}

/// Why a session ends.
enum End {
    /// The connection broke, or the peer stopped reading: nothing more can
    /// be sent.
    Broken,
    /// The peer sent a close: answer it (RFC 6455 section 5.5.1).
    PeerClosed,
    /// We close, with this code and reason.
    Close(CloseCode, &'static str),
}

impl Session {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn serve<S>(
        mut self,
        mut ws: WebSocketStream<S>,
        mut stop: watch::Receiver<bool>,
        revocation: Option<watch::Receiver<Arc<Authorized>>>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.shared.limits;
        // Asynchronous calls in flight, and how to stop each; all are
        // aborted when the session ends.
        let mut calls: JoinSet<Done> = JoinSet::new();
        let mut running: HashMap<u64, AbortHandle> = HashMap::new();
        let (produced, mut items) = mpsc::channel(PRODUCED_QUEUE);
        let mut streams = Streams {
            producers: JoinSet::new(),
            credit: HashMap::new(),
            produced,
        };
        let mut pings = TokenBucket::full(PINGS_PER_SECOND, 0);
        // One future for the whole session: it stays registered with the
        // key set's channel instead of joining and leaving it per message.
        let revoked = reload::revoked(revocation, self.cx.client_key);
        tokio::pin!(revoked);
        // Frames handed to the WebSocket but not yet flushed.
        let mut unflushed = false;
        let end = 'session: loop {
            // What the machine has to say: frames to send, calls to stop.
            // With batching, what is ready goes out in as few messages as
            // fit the batch limit.
            if let Err(end) = self.transmit(&mut ws, &mut unflushed).await {
                break 'session end;
            }
            if let Some(message) = self.batch.as_mut().and_then(Batch::take) {
                if let Err(end) = self.send(&mut ws, message).await {
                    break 'session end;
                }
                unflushed = true;
            }
            while let Some(event) = self.conn.poll_event() {
                match event {
                    ServerEvent::Abort { id, why } => {
                        if let Some(task) = running.remove(&id) {
                            task.abort();
                        }
                        streams.stop(id);
                        let (kind, what) = match why {
                            AbortReason::Cancelled => {
                                ("cancelled calls", "cancelled by the client")
                            }
                            AbortReason::ItemTooLarge => (
                                "streams ended by a large item",
                                "sent an item over max_message_size: ended too_large",
                            ),
                            _ => {
                                self.shared.metrics.limit(Limit::CallTimeout);
                                (
                                    "calls past their deadline",
                                    "past call_timeout_ms: cancelled",
                                )
                            }
                        };
                        let peer = self.peer;
                        self.shared
                            .logs
                            .event(kind, Level::Info, || format!("call {id} of {peer} {what}"));
                    }
                    ServerEvent::Credit { id, n } => {
                        if let Some((credit, _)) = streams.credit.get(&id) {
                            credit.add_permits(n as usize);
                        }
                    }
                    ServerEvent::Ping => {
                        // A quiet session: keep the proxies in between.
                        let ping = ws.send(Message::Ping(Default::default()));
                        let sent = timeout(limits.write_timeout, ping).await;
                        if let Err(end) = self.written(sent, "pings") {
                            break 'session end;
                        }
                    }
                    ServerEvent::Close(CloseReason::IdleTimeout) => {
                        self.shared.metrics.limit(Limit::IdleTimeout);
                        debug!("{} idle for {:?}: closing", self.peer, limits.idle_timeout);
                        break 'session End::Close(CloseCode::Normal, "idle timeout");
                    }
                    ServerEvent::Close(reason) => {
                        self.log_drop(&format!("ended: {reason}"));
                        break 'session End::Close(CloseCode::Normal, "session exhausted");
                    }
                }
            }
            let timer = self
                .conn
                .poll_timeout()
                .map(|at| self.epoch + std::time::Duration::from_millis(at));
            tokio::select! {
                msg = next_or_flush(&mut ws, &mut unflushed, limits.write_timeout) => match msg {
                    Some(Ok(Message::Binary(message))) => {
                        let mut refused = None;
                        let mut broken = None;
                        for frame in batch::frames(&message, self.batch.is_some()) {
                            // A batch may take a while (its responses wait
                            // for the socket): shutdown and revocation are
                            // not kept waiting for the rest of it.
                            if stop.has_changed().unwrap_or(true) {
                                broken = Some(End::Close(CloseCode::Away, "server shutting down"));
                                break;
                            }
                            if revoked.as_mut().now_or_never().is_some() {
                                self.log_revoked();
                                broken = Some(End::Close(CloseCode::Policy, "client key revoked"));
                                break;
                            }
                            // The responses to the frames before go to the
                            // socket first: a batch of calls to synchronous
                            // methods with large results waits for a peer
                            // that reads, as separate messages would, instead
                            // of piling up in memory.
                            if let Err(end) = self.transmit(&mut ws, &mut unflushed).await {
                                broken = Some(end);
                                break;
                            }
                            // After that wait, if there was one.
                            let now = self.now_ms();
                            match self.conn.handle_frame(now, frame) {
                                Ok(Some(call)) if call.stream => {
                                    let (id, args) = (call.id, call.args.get());
                                    self.open_stream(&call.object, &call.method, id, args, &mut streams);
                                }
                                Ok(Some(call)) => {
                                    let (id, args) = (call.id, call.args.get());
                                    let (object, method) = (&call.object, &call.method);
                                    if let Some(task) =
                                        self.dispatch(object, method, id, args, &mut calls)
                                    {
                                        running.insert(id, task);
                                    }
                                }
                                Ok(None) => {}
                                Err(reason) => {
                                    refused = Some(reason);
                                    break;
                                }
                            }
                        }
                        if let Some(end) = broken {
                            break end;
                        }
                        if let Some(reason) = refused {
                            self.shared.metrics.frame_refused(&reason);
                            self.log_drop(&format!("sent a bad frame ({reason})"));
                            break End::Close(CloseCode::Protocol, "bad frame");
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        if !pings.try_take(PINGS_PER_SECOND, self.now_ms()) {
                            self.shared.metrics.limit(Limit::PingRate);
                            self.log_drop("sent pings faster than the server answers them");
                            break End::Close(CloseCode::Policy, "too many pings");
                        }
                        // tungstenite has queued the pong: send it now, so a
                        // peer that pings and never reads is found out
                        // within write_timeout like any other.
                        let flushed = timeout(limits.write_timeout, ws.flush()).await;
                        if let Err(end) = self.written(flushed, "pongs") {
                            break end;
                        }
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Text(_))) => {
                        self.shared.metrics.message_refused("text_message");
                        self.log_drop("sent a text message");
                        break End::Close(CloseCode::Protocol, "binary messages only");
                    }
                    Some(Ok(Message::Close(_))) => break End::PeerClosed,
                    None => break End::Broken,
                    Some(Err(WsError::Io(e))) if e.kind() == std::io::ErrorKind::TimedOut => {
                        // The flush of `next_or_flush` ran out of time.
                        self.shared.metrics.limit(Limit::WriteTimeout);
                        self.log_drop(WRITE_TIMED_OUT);
                        break End::Broken;
                    }
                    Some(Err(e)) => {
                        if matches!(e, tungstenite::Error::Capacity(_)) {
                            self.shared.metrics.message_refused("too_large");
                        }
                        self.log_drop(&format!("failed: {e}"));
                        break End::Broken;
                    }
                },
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    self.finished(done, &mut running);
                    // Every other call done by now, so that their responses
                    // go out together.
                    while let Some(Some(done)) = calls.join_next().now_or_never() {
                        self.finished(done, &mut running);
                    }
                }
                Some(item) = items.recv() => self.on_produced(item, &mut streams),
                Some(_) = streams.producers.join_next(), if !streams.producers.is_empty() => {}
                () = sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => {
                    let now = self.now_ms();
                    self.conn.handle_timeout(now);
                }
                () = &mut revoked => {
                    self.log_revoked();
                    break End::Close(CloseCode::Policy, "client key revoked");
                }
                _ = stop.changed() => break End::Close(CloseCode::Away, "server shutting down"),
            }
        };
        calls.abort_all();
        streams.producers.abort_all();
        match end {
            End::Close(code, reason) => close(&mut ws, limits.write_timeout, code, reason).await,
            // tungstenite has queued the reply to the peer's close; reading
            // on sends it and then ends the stream (bounded in time).
            End::PeerClosed => {
                let drain = async { while ws.next().await.is_some() {} };
                let limit = limits.write_timeout.min(std::time::Duration::from_secs(1));
                let _ = timeout(limit, drain).await;
            }
            End::Broken => {}
        }
        debug!("session with {} ended", self.peer);
    }

    /// An asynchronous call's task ended: answers it. An aborted call ends
    /// with a `JoinError`: nothing to answer.
    fn finished(
        &mut self,
        done: Result<Done, tokio::task::JoinError>,
        running: &mut HashMap<u64, AbortHandle>,
    ) {
        if let Ok((id, outcome)) = done {
            running.remove(&id);
            match outcome {
                Ok(response) => self.conn.respond(id, &response),
                Err(_) => {
                    self.shared.log_panic("an asynchronous method", id);
                    self.conn.respond_error(id, &RpcError::internal());
                }
            }
        }
    }

    /// How a write of control frames (`what`) went: a peer that does not
    /// read them within `write_timeout` is dropped like any other.
    fn written<E>(
        &self,
        done: Result<Result<(), E>, tokio::time::error::Elapsed>,
        what: &str,
    ) -> Result<(), End> {
        match done {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Broken),
            Err(_) => {
                self.shared.metrics.limit(Limit::WriteTimeout);
                self.log_drop(&format!("did not read its {what} within write_timeout_ms"));
                Err(End::Broken)
            }
        }
    }

    /// The session's key left authorized_keys, and such sessions close.
    fn log_revoked(&self) {
        self.shared.metrics.revoked_session_closed();
        let (peer, cx) = (self.peer, &self.cx);
        self.shared
            .logs
            .event("sessions of revoked keys closed", Level::Info, || {
                let name = cx
                    .client_name
                    .as_deref()
                    .map(|n| format!(" ({n:?})"))
                    .unwrap_or_default();
                format!(
                    "session with {peer}: client key {}{name} is no longer authorised: closing",
                    cx.fingerprint()
                )
            });
    }

    fn log_drop(&self, what: &str) {
        let peer = self.peer;
        self.shared.logs.event("dropped sessions", Level::Info, || {
            format!("session with {peer} {what}: closing")
        });
    }

    /// Starts the producer of stream `id`, `object.method`, or answers why
    /// it cannot run.
    fn open_stream(
        &mut self,
        object: &str,
        method: &str,
        id: u64,
        args: &str,
        streams: &mut Streams,
    ) {
        debug!(
            "stream {id} of {}: {object}.{method} by {}",
            self.peer,
            self.cx.fingerprint()
        );
        let opened = match self.shared.registry.lookup(object, method) {
            Ok(Lookup::Handler(Handler::Stream(f))) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| f(&self.cx, args))) {
                    Ok(opened) => opened,
                    Err(_) => {
                        self.shared.log_panic(&format!("{object}.{method}"), id);
                        Err(RpcError::internal())
                    }
                }
            }
            Ok(_) => Err(not_a_stream(object, method)),
            Err(e) => Err(e),
        };
        let outcome = opened.as_ref().map_or_else(|e| e.code.as_str(), |_| "ok");
        self.shared.metrics.call(object, method, None, outcome);
        match opened {
            Ok(items) => {
                let credit = Arc::new(Semaphore::new(self.conn.stream_credit(id) as usize));
                let task = streams.producers.spawn(produce(
                    id,
                    items,
                    credit.clone(),
                    streams.produced.clone(),
                ));
                streams.credit.insert(id, (credit, task));
            }
            Err(e) => self.conn.respond_error(id, &e),
        }
    }

    /// Seals what a producer handed over.
    fn on_produced(&mut self, produced: Produced, streams: &mut Streams) {
        match produced {
            Produced::Item(id, item) => match self.conn.stream_item(id, &item) {
                // Not open: cancelled or past its deadline, the producer is
                // being stopped. Too large: ended, and an Abort follows.
                Ok(()) | Err(StreamError::NotOpen | StreamError::TooLarge) => {}
                Err(StreamError::NoCredit) => {
                    // The producer takes a permit per item; cannot happen.
                    self.shared
                        .logs
                        .event("stream credit errors", Level::Warn, || {
                            format!("stream {id} produced an item without credit; ending it")
                        });
                    streams.stop(id);
                    self.conn.respond_error(id, &RpcError::internal());
                }
            },
            Produced::End(id, outcome) => {
                streams.credit.remove(&id);
                match outcome {
                    Ok(()) => self.conn.end_stream(id),
                    Err(e) => self.conn.respond_error(id, &e),
                }
            }
            Produced::Panicked(id) => {
                streams.credit.remove(&id);
                self.shared.log_panic("a stream", id);
                self.conn.respond_error(id, &RpcError::internal());
            }
        }
    }

    /// Runs or starts call `id` of `object.method`: built-in and
    /// synchronous methods are answered at once; an asynchronous one is
    /// spawned into `calls`, and its abort handle returned.
    fn dispatch(
        &mut self,
        object: &str,
        method: &str,
        id: u64,
        args: &str,
        calls: &mut JoinSet<Done>,
    ) -> Option<AbortHandle> {
        debug!(
            "call {id} of {}: {object}.{method} by {}",
            self.peer,
            self.cx.fingerprint()
        );
        self.out.clear();
        let started = self.shared.metrics.start();
        let found = match self.shared.registry.lookup(object, method) {
            Ok(found) => found,
            Err(e) => {
                let metrics = &self.shared.metrics;
                metrics.call(object, method, started, e.code.as_str());
                self.conn.respond_error(id, &e);
                return None;
            }
        };
        let outcome = match found {
            Lookup::Ping | Lookup::Objects if args.trim() != "[]" => Err(RpcError::new(
                ErrorCode::InvalidArguments,
                format!("sigil.{method} takes no arguments"),
            )),
            Lookup::Ping => {
                self.out
                    .extend_from_slice(format!(r#"{{"id":{id},"result":"pong"}}"#).as_bytes());
                Ok(())
            }
            Lookup::Objects => {
                let objects = &self.shared.objects_json;
                self.out
                    .extend_from_slice(format!(r#"{{"id":{id},"result":{objects}}}"#).as_bytes());
                Ok(())
            }
            Lookup::Handler(Handler::Sync(f)) => {
                let out = &mut self.out;
                let cx = &self.cx;
                match std::panic::catch_unwind(AssertUnwindSafe(|| f(cx, id, args, out))) {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        self.shared.log_panic(&format!("{object}.{method}"), id);
                        Err(RpcError::internal())
                    }
                }
            }
            Lookup::Handler(Handler::Stream(_)) => Err(returns_a_stream(object, method)),
            Lookup::Handler(Handler::Async(f)) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| f(&self.cx, id, args))) {
                    // A oneway call's response is dropped by the machine.
                    Ok(Ok(fut)) => {
                        let timer = self.shared.metrics.timer(object, method);
                        return Some(calls.spawn(async move {
                            let done = AssertUnwindSafe(fut).catch_unwind().await;
                            timer.finish(match &done {
                                Ok(response) => outcome_of(response),
                                Err(_) => ErrorCode::InternalError.as_str(),
                            });
                            (id, done)
                        }));
                    }
                    Ok(Err(e)) => Err(e),
                    Err(_) => {
                        self.shared.log_panic(&format!("{object}.{method}"), id);
                        Err(RpcError::internal())
                    }
                }
            }
        };
        let metrics = &self.shared.metrics;
        match outcome {
            Ok(()) => {
                let out = std::mem::take(&mut self.out);
                metrics.call(object, method, started, outcome_of(&out));
                self.conn.respond(id, &out);
                self.out = out;
            }
            Err(e) => {
                metrics.call(object, method, started, e.code.as_str());
                self.conn.respond_error(id, &e);
            }
        }
        None
    }

    /// Hands what the machine has sealed to the WebSocket. With batching,
    /// frames go out in full batches; the rest waits in the batch for the
    /// caller to send.
    async fn transmit<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        unflushed: &mut bool,
    ) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while let Some(frame) = self.conn.poll_transmit() {
            let message = match &mut self.batch {
                None => frame,
                Some(batch) => match batch.push(frame) {
                    Some(full) => full,
                    None => continue,
                },
            };
            self.send(ws, message).await?;
            *unflushed = true;
        }
        Ok(())
    }

    /// Hands a sealed frame to the WebSocket within `write_timeout` (it
    /// writes to the socket once its buffer is full; [`next_or_flush`]
    /// flushes the rest).
    async fn send<S>(&mut self, ws: &mut WebSocketStream<S>, frame: Vec<u8>) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match timeout(
            self.shared.limits.write_timeout,
            ws.feed(Message::Binary(frame.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!("sending to {} failed: {e}", self.peer);
                Err(End::Broken)
            }
            Err(_) => {
                self.shared.metrics.limit(Limit::WriteTimeout);
                self.log_drop(WRITE_TIMED_OUT);
                Err(End::Broken)
            }
        }
    }
}

impl Shared {
    fn log_panic(&self, what: &str, id: u64) {
        self.logs.event("panicked calls", Level::Warn, || {
            format!("{what} panicked in call {id}; answered internal_error")
        });
    }
}
