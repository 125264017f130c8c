//! One WebSocket connection: the sigil/1 handshake, then the RPC session.
//!
//! A connection is one task. It owns its session (no lock), reads frames,
//! runs quick methods inline, spawns asynchronous ones and collects their
//! responses from a channel. Nothing that goes wrong here affects another
//! connection: every failure closes this one only, and is logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use sigil_core::handshake::accept_hello;
use sigil_core::rand::OsRandom;
use sigil_core::rpc::{ErrorCode, RpcError, parse_request, write_error};
use sigil_core::transport::{FRAME_OVERHEAD, FrameOpener, FrameSealer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::{debug, info, warn};

use crate::registry::{Handler, Lookup};
use crate::server::Shared;
use crate::settings::{HandshakeInfo, HookDecision};
use crate::tls::PeerCertificate;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs a connection from its first WebSocket message to its close.
pub(crate) async fn run<S>(
    mut ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    peer: SocketAddr,
    cert: Option<PeerCertificate>,
    deadline: Instant,
    stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let hello = match timeout_at(deadline, next_binary(&mut ws)).await {
        Ok(Some(msg)) => msg,
        Ok(None) => return debug!("{peer} closed before its handshake"),
        Err(_) => {
            info!("{peer} did not finish its handshake within the timeout: closing");
            return close(&mut ws, CloseCode::Policy, "handshake timeout").await;
        }
    };
    let checked = {
        let mut replay = shared.replay.lock().unwrap_or_else(|e| e.into_inner());
        accept_hello(&shared.core, &mut *replay, now_ms(), &hello)
    };
    let client_hello = match checked {
        Ok(h) => h,
        Err(refusal) => {
            info!(
                "refused handshake from {peer}: {refusal} ({:?})",
                refusal.detail()
            );
            let _ = ws.send(Message::Binary(refusal.to_bytes().into())).await;
            return close(&mut ws, CloseCode::Normal, "refused").await;
        }
    };
    let decision = match &shared.hook {
        None => HookDecision::Accept(None),
        Some(hook) => hook(&HandshakeInfo {
            client_key: client_hello.client_key(),
            payload: client_hello.payload(),
            peer_addr: peer,
            certificate: cert.as_ref(),
        }),
    };
    let client_key = *client_hello.client_key();
    let session = match decision {
        HookDecision::Refuse(reason) => {
            let refusal = client_hello.refuse(&reason);
            info!(
                "application refused {peer} ({}): {}",
                client_key.fingerprint(),
                refusal.reason()
            );
            let _ = ws.send(Message::Binary(refusal.to_bytes().into())).await;
            return close(&mut ws, CloseCode::Normal, "refused").await;
        }
        HookDecision::Accept(payload) => {
            match client_hello.accept(&mut OsRandom, payload.as_deref()) {
                Ok((msg2, session)) => {
                    if ws.send(Message::Binary(msg2.into())).await.is_err() {
                        return;
                    }
                    session
                }
                Err(e) => {
                    warn!("cannot answer the handshake of {peer}: {e}");
                    return close(&mut ws, CloseCode::Error, "server error").await;
                }
            }
        }
    };
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
    }
    .serve(ws, stop)
    .await;
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

async fn close<S>(ws: &mut WebSocketStream<S>, code: CloseCode, reason: &str)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = ws.close(Some(frame)).await;
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    sealer: FrameSealer,
    opener: FrameOpener,
    /// The response being built (reused).
    out: Vec<u8>,
}

/// Why a session ends.
enum End {
    /// The connection broke: nothing more can be sent.
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
        let (done_tx, mut done_rx) =
            mpsc::channel::<Option<(u64, Vec<u8>)>>(limits.max_inflight.max(1));
        let mut inflight = 0usize;
        let mut idle_deadline = Instant::now() + limits.idle_timeout;
        let end = loop {
            tokio::select! {
                msg = ws.next() => {
                    idle_deadline = Instant::now() + limits.idle_timeout;
                    match msg {
                        Some(Ok(Message::Binary(frame))) => {
                            match self.handle_frame(&frame, &mut inflight, &done_tx) {
                                Ok(Some(id)) => {
                                    if let Err(end) = self.send(&mut ws, id).await {
                                        break end;
                                    }
                                }
                                Ok(None) => {}
                                Err(end) => break end,
                            }
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                        Some(Ok(Message::Text(_))) => {
                            info!("{} sent a text message: closing", self.peer);
                            break End::Close(CloseCode::Protocol, "binary messages only");
                        }
                        Some(Ok(Message::Close(_))) => break End::PeerClosed,
                        None => break End::Broken,
                        Some(Err(e)) => {
                            info!("connection from {} failed: {e}", self.peer);
                            break End::Broken;
                        }
                    }
                }
                Some(done) = done_rx.recv() => {
                    inflight -= 1;
                    if let Some((id, response)) = done {
                        self.out = response;
                        if let Err(end) = self.send(&mut ws, id).await {
                            break end;
                        }
                    }
                }
                () = sleep_until(idle_deadline), if inflight == 0 => {
                    info!("{} idle for {:?}: closing", self.peer, limits.idle_timeout);
                    break End::Close(CloseCode::Normal, "idle timeout");
                }
                _ = stop.changed() => break End::Close(CloseCode::Away, "server shutting down"),
            }
        };
        match end {
            End::Close(code, reason) => close(&mut ws, code, reason).await,
            // tungstenite has queued the reply to the peer's close; reading
            // on sends it and then ends the stream (bounded in time).
            End::PeerClosed => {
                let drain = async { while ws.next().await.is_some() {} };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), drain).await;
            }
            End::Broken => {}
        }
        debug!("session with {} ended", self.peer);
    }

    /// Opens and answers one frame. `Ok(Some(id))`: the response to call
    /// `id` is in `self.out`.
    fn handle_frame(
        &mut self,
        frame: &[u8],
        inflight: &mut usize,
        done: &mpsc::Sender<Option<(u64, Vec<u8>)>>,
    ) -> Result<Option<u64>, End> {
        let payload = match self.opener.open(frame) {
            Ok(p) => p,
            Err(e) => {
                warn!("bad frame from {}: {e}: closing", self.peer);
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
                f(id, req.args.get(), &mut self.out);
                Ok(())
            }
            Lookup::Handler(Handler::Async(f)) => {
                if *inflight >= self.shared.limits.max_inflight {
                    Err(error(
                        ErrorCode::Busy,
                        format!(
                            "too many calls in flight (max_inflight = {})",
                            self.shared.limits.max_inflight
                        ),
                    ))
                } else {
                    match f(id, req.args.get()) {
                        Ok(fut) => {
                            *inflight += 1;
                            let done = done.clone();
                            tokio::spawn(async move {
                                let response = fut.await;
                                let _ = done.send((!oneway).then_some((id, response))).await;
                            });
                            return Ok(None);
                        }
                        Err(e) => Err(e),
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

    /// Seals `self.out` into a frame and sends it; an oversize response is
    /// replaced by a `too_large` error.
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
            warn!("cannot seal a frame for {}: {e}: closing", self.peer);
            return Err(End::Close(CloseCode::Normal, "session exhausted"));
        }
        ws.send(Message::Binary(frame.into())).await.map_err(|e| {
            debug!("sending to {} failed: {e}", self.peer);
            End::Broken
        })
    }
}
