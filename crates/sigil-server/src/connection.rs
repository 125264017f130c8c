//! One WebSocket connection: the sigil/1 handshake, then the RPC session.
//!
//! A connection is one task. It owns its session (no lock), reads frames,
//! runs quick methods inline, spawns asynchronous ones into its own task
//! set (aborted when the connection ends) and sends their responses as
//! they finish. Every wait is bounded: the handshake by its deadline, every
//! send and the close by `write_timeout`, every asynchronous call by
//! `call_timeout`. Nothing that goes wrong here affects another
//! connection: every failure closes this one only, and is logged (rate
//! limited).

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use sigil_core::handshake::{BUSY_REASON, Refusal, RefusalCode, accept_hello, claimed_client_key};
use sigil_core::keys::PublicKey;
use sigil_core::limit::TokenBucket;
use sigil_core::rand::OsRandom;
use sigil_core::replay::{ReplayGuard, ReplayVerdict};
use sigil_core::rpc::{ErrorCode, RpcError, parse_request, write_error};
use sigil_core::transport::{FRAME_OVERHEAD, FrameOpener, FrameSealer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::debug;

use crate::budget::AddrBucket;
use crate::logs::Level;
use crate::preauth::ReadBudget;
use crate::registry::{Handler, Lookup};
use crate::server::{Conn, Shared};
use crate::settings::{HandshakeInfo, HookDecision};
use crate::tls::PeerCertificate;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The replay cache as one connection uses it: locked for the
/// check-and-insert only, with the client's address as the principal under
/// allow_any_client (where keys cost nothing to make) and its key otherwise.
struct SharedReplay<'a> {
    shared: &'a Shared,
    addr: Option<AddrBucket>,
}

impl ReplayGuard for SharedReplay<'_> {
    fn check_and_insert(
        &mut self,
        client: &PublicKey,
        ephemeral: &PublicKey,
        timestamp_ms: u64,
        now_ms: u64,
    ) -> ReplayVerdict {
        let principal: &[u8] = match &self.addr {
            Some(addr) => addr.as_bytes(),
            None => client.as_bytes(),
        };
        let mut cache = self.shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        cache.check_and_insert_for(principal, ephemeral, timestamp_ms, now_ms)
    }
}

/// Runs a connection from its first WebSocket message to its close.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    conn: Conn,
    cert: Option<PeerCertificate>,
    budget: ReadBudget,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Conn {
        shared,
        peer,
        deadline,
        mut stop,
        pending,
        tracked: _tracked,
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
    let checked = {
        let mut replay = SharedReplay {
            shared: &shared,
            addr: shared.allow_any.then(|| AddrBucket::of(peer.ip())),
        };
        accept_hello(&shared.core, &mut replay, now_ms(), &hello)
    };
    let client_hello = match checked {
        Ok(h) => h,
        Err(refusal) => return refuse(&mut ws, &shared, peer, claimed, refusal).await,
    };
    let client_key = *client_hello.client_key();
    let decision = match &shared.hook {
        None => HookDecision::Accept(None),
        Some(hook) => hook(&HandshakeInfo {
            client_key: &client_key,
            payload: client_hello.payload(),
            peer_addr: peer,
            certificate: cert.as_ref(),
        }),
    };
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
            session
        }
        Err(e) => {
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
    debug!(
        "session with {peer} ({}) established",
        client_key.fingerprint()
    );
    let (sealer, opener) = session.split();
    Session {
        shared,
        peer,
        sealer,
        opener,
        out: Vec::new(),
        _slot: slot,
    }
    .serve(ws, stop)
    .await;
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
    sealer: FrameSealer,
    opener: FrameOpener,
    /// The response being built (reused).
    out: Vec<u8>,
    /// Its place among `max_connections`.
    _slot: OwnedSemaphorePermit,
}

/// WebSocket pings a second a session may send (with a burst of as many):
/// a keepalive needs a few a minute; a flood of them costs the server a
/// pong each, so a peer over the rate is closed.
const PINGS_PER_SECOND: u32 = 16;

/// What an asynchronous call's task gives back: its id and response, or
/// nothing for a oneway call.
type Done = Option<(u64, Vec<u8>)>;

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
    async fn serve<S>(mut self, mut ws: WebSocketStream<S>, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let limits = self.shared.limits;
        // Asynchronous calls in flight; dropped (so aborted) with the session.
        let mut calls: JoinSet<Done> = JoinSet::new();
        let mut idle_deadline = Instant::now() + limits.idle_timeout;
        let started = Instant::now();
        let mut pings = TokenBucket::full(PINGS_PER_SECOND, 0);
        let end = loop {
            tokio::select! {
                msg = ws.next() => match msg {
                    Some(Ok(Message::Binary(frame))) => {
                        // Only protocol messages count as activity.
                        idle_deadline = Instant::now() + limits.idle_timeout;
                        match self.handle_frame(&frame, &mut calls) {
                            Ok(Some(id)) => {
                                if let Err(end) = self.send(&mut ws, id).await {
                                    break end;
                                }
                            }
                            Ok(None) => {}
                            Err(end) => break end,
                        }
                    }
                    Some(Ok(Message::Ping(_))) => {
                        let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        if !pings.try_take(PINGS_PER_SECOND, now) {
                            self.log_drop("sent pings faster than the server answers them");
                            break End::Close(CloseCode::Policy, "too many pings");
                        }
                        // tungstenite has queued the pong: send it now, so a
                        // peer that pings and never reads is found out
                        // within write_timeout like any other.
                        match timeout(limits.write_timeout, ws.flush()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(_)) => break End::Broken,
                            Err(_) => {
                                self.log_drop("did not read its pongs within write_timeout_ms");
                                break End::Broken;
                            }
                        }
                    }
                    Some(Ok(Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Text(_))) => {
                        self.log_drop("sent a text message");
                        break End::Close(CloseCode::Protocol, "binary messages only");
                    }
                    Some(Ok(Message::Close(_))) => break End::PeerClosed,
                    None => break End::Broken,
                    Some(Err(e)) => {
                        self.log_drop(&format!("failed: {e}"));
                        break End::Broken;
                    }
                },
                Some(done) = calls.join_next(), if !calls.is_empty() => {
                    if let Ok(Some((id, response))) = done {
                        self.out = response;
                        if let Err(end) = self.send(&mut ws, id).await {
                            break end;
                        }
                    }
                }
                () = sleep_until(idle_deadline), if calls.is_empty() => {
                    debug!("{} idle for {:?}: closing", self.peer, limits.idle_timeout);
                    break End::Close(CloseCode::Normal, "idle timeout");
                }
                _ = stop.changed() => break End::Close(CloseCode::Away, "server shutting down"),
            }
        };
        calls.abort_all();
        match end {
            End::Close(code, reason) => close(&mut ws, limits.write_timeout, code, reason).await,
            // tungstenite has queued the reply to the peer's close; reading
            // on sends it and then ends the stream (bounded in time).
            End::PeerClosed => {
                let drain = async { while ws.next().await.is_some() {} };
                let _ = timeout(
                    limits.write_timeout.min(std::time::Duration::from_secs(1)),
                    drain,
                )
                .await;
            }
            End::Broken => {}
        }
        debug!("session with {} ended", self.peer);
    }

    fn log_drop(&self, what: &str) {
        let peer = self.peer;
        self.shared.logs.event("dropped sessions", Level::Info, || {
            format!("session with {peer} {what}: closing")
        });
    }

    /// Opens and answers one frame. `Ok(Some(id))`: the response to call
    /// `id` is in `self.out`.
    fn handle_frame(
        &mut self,
        frame: &[u8],
        calls: &mut JoinSet<Done>,
    ) -> Result<Option<u64>, End> {
        let payload = match self.opener.open(frame) {
            Ok(p) => p,
            Err(e) => {
                self.log_drop(&format!("sent a bad frame ({e})"));
                return Err(End::Close(CloseCode::Protocol, "bad frame"));
            }
        };
        if payload.is_empty() {
            return Ok(None);
        }
        self.out.clear();
        let req = match parse_request(payload) {
            Ok(r) => r,
            Err(rejected) => {
                debug!(
                    "invalid request from {}: {}",
                    self.peer, rejected.error.message
                );
                write_error(&mut self.out, rejected.id, &rejected.error);
                return Ok(Some(rejected.id));
            }
        };
        let (id, oneway) = (req.id, req.oneway);
        let error = |code, message: String| RpcError::new(code, message);
        let outcome = match self.shared.registry.lookup(&req.object, &req.method) {
            Lookup::NoSuchObject => Err(error(
                ErrorCode::NoSuchObject,
                format!("no object named {}", req.object),
            )),
            Lookup::NoSuchMethod => Err(error(
                ErrorCode::NoSuchMethod,
                format!("object {} has no method {}", req.object, req.method),
            )),
            Lookup::Ping | Lookup::Objects if req.args.get().trim() != "[]" => Err(error(
                ErrorCode::InvalidArguments,
                format!("sigil.{} takes no arguments", req.method),
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
                let args = req.args.get();
                match std::panic::catch_unwind(AssertUnwindSafe(|| f(id, args, out))) {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        self.shared.log_panic(&req.object, &req.method);
                        Err(internal_error())
                    }
                }
            }
            Lookup::Handler(Handler::Async(f)) => {
                if calls.len() >= self.shared.limits.max_inflight {
                    Err(error(
                        ErrorCode::Busy,
                        format!(
                            "too many calls in flight (max_inflight = {})",
                            self.shared.limits.max_inflight
                        ),
                    ))
                } else {
                    let started =
                        std::panic::catch_unwind(AssertUnwindSafe(|| f(id, req.args.get())));
                    match started {
                        Ok(Ok(fut)) => {
                            let shared = self.shared.clone();
                            let names = (req.object.to_string(), req.method.to_string());
                            calls.spawn(async move {
                                let limit = shared.limits.call_timeout;
                                let ran = timeout(limit, AssertUnwindSafe(fut).catch_unwind()).await;
                                let response = match ran {
                                    Ok(Ok(response)) => response,
                                    Ok(Err(_)) => {
                                        shared.log_panic(&names.0, &names.1);
                                        error_response(id, &internal_error())
                                    }
                                    Err(_) => error_response(
                                        id,
                                        &RpcError::new(
                                            ErrorCode::Timeout,
                                            format!(
                                                "the call ran past call_timeout_ms ({} ms) and was cancelled",
                                                limit.as_millis()
                                            ),
                                        ),
                                    ),
                                };
                                (!oneway).then_some((id, response))
                            });
                            return Ok(None);
                        }
                        Ok(Err(e)) => Err(e),
                        Err(_) => {
                            self.shared.log_panic(&req.object, &req.method);
                            Err(internal_error())
                        }
                    }
                }
            }
        };
        if let Err(e) = outcome {
            self.out.clear();
            write_error(&mut self.out, id, &e);
        }
        Ok((!oneway).then_some(id))
    }

    /// Seals `self.out` into a frame and sends it, within `write_timeout`;
    /// an oversize response is replaced by a `too_large` error.
    async fn send<S>(&mut self, ws: &mut WebSocketStream<S>, id: u64) -> Result<(), End>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let max = self.shared.core.limits().max_message_size as usize;
        if self.out.len() > max {
            let len = self.out.len();
            self.out.clear();
            write_error(
                &mut self.out,
                id,
                &RpcError::new(
                    ErrorCode::TooLarge,
                    format!("the response ({len} bytes) is over max_message_size ({max} bytes)"),
                ),
            );
        }
        let mut frame = Vec::with_capacity(self.out.len() + FRAME_OVERHEAD);
        if let Err(e) = self.sealer.seal(&self.out, &mut frame) {
            self.log_drop(&format!("cannot be sealed for any more ({e})"));
            return Err(End::Close(CloseCode::Normal, "session exhausted"));
        }
        match timeout(
            self.shared.limits.write_timeout,
            ws.send(Message::Binary(frame.into())),
        )
        .await
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                debug!("sending to {} failed: {e}", self.peer);
                Err(End::Broken)
            }
            Err(_) => {
                self.log_drop("did not read its responses within write_timeout_ms");
                Err(End::Broken)
            }
        }
    }
}

impl Shared {
    fn log_panic(&self, object: &str, method: &str) {
        self.logs.event("panicked calls", Level::Warn, || {
            format!("{object}.{method} panicked; answered internal_error")
        });
    }
}

fn internal_error() -> RpcError {
    RpcError::new(ErrorCode::InternalError, "internal error")
}

fn error_response(id: u64, e: &RpcError) -> Vec<u8> {
    let mut out = Vec::new();
    write_error(&mut out, id, e);
    out
}
