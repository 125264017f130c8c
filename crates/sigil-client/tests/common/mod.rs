//! A tiny sigil/1 server for the client's tests: real sockets on 127.0.0.1,
//! the core's handshake and frames, a few methods, and misbehaviour on
//! request. Not the real server (that is `sigil-server`).

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use sigil_client::{ClientOptions, Limits, PublicKey, SecretKey, SymmetricKey};
use sigil_core::OsRandom;
use sigil_core::handshake::{ClientAuth, ServerConfig, accept_hello};
use sigil_core::replay::ReplayCache;
use sigil_core::rpc::{ErrorCode, RpcError, parse_request, write_error, write_result};
use sigil_core::transport::Session;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

/// The most connections one test server accepts.
const MAX_CONNECTIONS: usize = 16;
/// The most messages one connection handles.
const MAX_MESSAGES: usize = 100_000;
/// How long the server waits for anything from a client.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a test waits for an event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// How the test server behaves.
#[derive(Clone)]
pub struct Behavior {
    /// The subprotocol selected (`None`: none, whatever the client offers).
    pub subprotocol: Option<&'static str>,
    /// Refuse every hello with code 2 and this reason.
    pub refuse: Option<String>,
    /// Never answer the hello.
    pub silent: bool,
    /// Flip a bit of message 2's tag.
    pub tamper_hello: bool,
    /// The server's handshake payload.
    pub payload: Option<String>,
    /// Collect this many responses, then send them in reverse order (0 or 1: at once).
    pub batch: usize,
    pub psk: Option<[u8; 32]>,
    pub prologue: Vec<u8>,
}

impl Default for Behavior {
    fn default() -> Behavior {
        Behavior {
            subprotocol: Some("sigil.v1"),
            refuse: None,
            silent: false,
            tamper_hello: false,
            payload: None,
            batch: 0,
            psk: None,
            prologue: Vec::new(),
        }
    }
}

/// What the server saw, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A handshake completed.
    Hello {
        payload: Option<String>,
        session_hash: [u8; 32],
    },
    /// A valid request arrived.
    Request {
        object: String,
        method: String,
        oneway: bool,
    },
    /// A frame failed to open.
    BadFrame,
    /// The connection ended: the close code the client sent, if any.
    Closed { code: Option<u16> },
}

pub struct TestServer {
    pub addr: std::net::SocketAddr,
    pub server_key: PublicKey,
    client_secret: [u8; 32],
    events: mpsc::UnboundedReceiver<Event>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

struct Shared {
    config: ServerConfig,
    replay: Mutex<ReplayCache>,
    behavior: Behavior,
    counter: AtomicU64,
    events: mpsc::UnboundedSender<Event>,
}

/// Something that turns an accepted TCP stream into the stream the
/// WebSocket runs on (plain, or TLS).
pub type Wrap = Arc<
    dyn Fn(
            tokio::net::TcpStream,
        )
            -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Box<dyn Stream>>> + Send>>
        + Send
        + Sync,
>;

pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl TestServer {
    pub async fn start(behavior: Behavior) -> TestServer {
        let wrap: Wrap =
            Arc::new(|tcp| Box::pin(async move { Some(Box::new(tcp) as Box<dyn Stream>) }));
        TestServer::start_with(behavior, wrap).await
    }

    pub async fn start_with(behavior: Behavior, wrap: Wrap) -> TestServer {
        let server_secret = SecretKey::generate(&mut OsRandom).expect("random");
        let client_secret = SecretKey::generate(&mut OsRandom).expect("random");
        let server_key = server_secret.public_key();
        let mut config = ServerConfig::new(
            server_secret,
            ClientAuth::Keys(vec![client_secret.public_key()]),
        )
        .expect("server config")
        .with_prologue(&behavior.prologue);
        if let Some(psk) = behavior.psk {
            config = config.with_psk(SymmetricKey::from_bytes(&psk));
        }
        let limits = Limits::default();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            config,
            replay: Mutex::new(
                ReplayCache::new(1 << 20, limits.max_clock_skew_ms).with_rate(u32::MAX),
            ),
            behavior,
            counter: AtomicU64::new(0),
            events: events_tx,
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            for _ in 0..MAX_CONNECTIONS {
                let Ok((tcp, _)) = listener.accept().await else {
                    break;
                };
                let shared = shared.clone();
                let wrap = wrap.clone();
                connections.spawn(async move {
                    if let Some(stream) = wrap(tcp).await {
                        serve(stream, &shared).await;
                    }
                });
            }
            // Keep the connections alive until the test drops the server.
            while connections.join_next().await.is_some() {}
        });
        TestServer {
            addr,
            server_key,
            client_secret: *client_secret.dangerous_to_bytes(),
            events,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sigil", self.addr)
    }

    /// Options with the authorised client key and this server's key pinned.
    pub fn options(&self) -> ClientOptions {
        ClientOptions::new(self.client_secret(), self.server_key)
    }

    pub fn client_secret(&self) -> SecretKey {
        SecretKey::from_bytes(&self.client_secret)
    }

    /// The next event, or a panic after [`EVENT_TIMEOUT`].
    pub async fn event(&mut self) -> Event {
        tokio::time::timeout(EVENT_TIMEOUT, self.events.recv())
            .await
            .expect("timed out waiting for a server event")
            .expect("server gone")
    }

    /// The next event that is not a request.
    pub async fn event_skipping_requests(&mut self) -> Event {
        loop {
            match self.event().await {
                Event::Request { .. } => {}
                other => return other,
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// The error type is tungstenite's.
#[allow(clippy::result_large_err)]
fn answer_upgrade(
    subprotocol: Option<&'static str>,
) -> impl FnOnce(&Request, Response) -> Result<Response, ErrorResponse> {
    move |request, mut response| {
        if request.uri().path() != "/sigil" {
            let mut refused = ErrorResponse::new(Some("not found".into()));
            *refused.status_mut() = StatusCode::NOT_FOUND;
            return Err(refused);
        }
        let offered = request
            .headers()
            .get(SEC_WEBSOCKET_PROTOCOL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|p| p.trim() == "sigil.v1"));
        assert!(offered, "the client must offer sigil.v1");
        if let Some(p) = subprotocol {
            response
                .headers_mut()
                .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        Ok(response)
    }
}

async fn serve(stream: Box<dyn Stream>, shared: &Shared) {
    let behavior = &shared.behavior;
    let Ok(mut ws) =
        tokio_tungstenite::accept_hdr_async(stream, answer_upgrade(behavior.subprotocol)).await
    else {
        return;
    };
    let hello = match tokio::time::timeout(READ_TIMEOUT, ws.next()).await {
        Ok(Some(Ok(Message::Binary(b)))) => b,
        _ => return,
    };
    if behavior.silent {
        // Wait for the client to give up.
        let _ = tokio::time::timeout(READ_TIMEOUT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        let _ = shared.events.send(Event::Closed { code: None });
        return;
    }
    let checked = {
        let mut replay = shared.replay.lock().expect("replay lock");
        accept_hello(&shared.config, &mut *replay, now_ms(), &hello)
    };
    let refusal = match checked {
        Err(refusal) => Some(refusal),
        Ok(hello) => match &behavior.refuse {
            Some(reason) => Some(hello.refuse(reason)),
            None => {
                let client_payload = hello.payload().map(str::to_owned);
                let (mut msg2, session) = hello
                    .accept(&mut OsRandom, behavior.payload.as_deref())
                    .expect("accept");
                if behavior.tamper_hello {
                    let last = msg2.len() - 1;
                    msg2[last] ^= 1;
                }
                let _ = shared.events.send(Event::Hello {
                    payload: client_payload,
                    session_hash: *session.session_hash(),
                });
                if ws.send(Message::binary(msg2)).await.is_err() {
                    return;
                }
                run_session(ws, session, shared).await;
                return;
            }
        },
    };
    if let Some(refusal) = refusal {
        let _ = ws.send(Message::binary(refusal.to_bytes())).await;
        let _ = ws.close(None).await;
    }
}

/// What the server does for one request.
enum Action {
    Reply(Result<Value, RpcError>),
    Nothing,
    Text,
    Garbage,
    UnknownIdFirst,
    EmptyFirst,
    Tamper,
    Big,
    Close,
}

fn dispatch(object: &str, method: &str, args: &[Value], shared: &Shared) -> Action {
    let number = |i: usize| args.get(i).and_then(Value::as_f64);
    let bad_args = || Action::Reply(Err(RpcError::new(ErrorCode::InvalidArguments, "bad args")));
    match (object, method) {
        ("calculator", "add") => match (number(0), number(1)) {
            (Some(a), Some(b)) => Action::Reply(Ok((a + b).into())),
            _ => bad_args(),
        },
        ("calculator", "div") => match (number(0), number(1)) {
            (Some(_), Some(0.0)) => Action::Reply(Err(RpcError::new(
                ErrorCode::ApplicationError,
                "division by zero",
            ))),
            (Some(a), Some(b)) => Action::Reply(Ok((a / b).into())),
            _ => bad_args(),
        },
        ("echo", "echo") => Action::Reply(Ok(args.first().cloned().unwrap_or(Value::Null))),
        ("counter", "incr") => {
            shared.counter.fetch_add(1, Ordering::SeqCst);
            Action::Reply(Ok(Value::Null))
        }
        ("counter", "get") => Action::Reply(Ok(shared.counter.load(Ordering::SeqCst).into())),
        ("test", "hang") => Action::Nothing,
        ("test", "text") => Action::Text,
        ("test", "garbage") => Action::Garbage,
        ("test", "unknown_id") => Action::UnknownIdFirst,
        ("test", "empty") => Action::EmptyFirst,
        ("test", "tamper") => Action::Tamper,
        ("test", "big") => Action::Big,
        ("test", "close") => Action::Close,
        ("calculator" | "echo" | "counter" | "test", _) => Action::Reply(Err(RpcError::new(
            ErrorCode::NoSuchMethod,
            format!("object {object} has no method {method}"),
        ))),
        _ => Action::Reply(Err(RpcError::new(
            ErrorCode::NoSuchObject,
            format!("no object named {object}"),
        ))),
    }
}

fn response(id: u64, outcome: &Result<Value, RpcError>) -> Vec<u8> {
    let mut out = Vec::new();
    match outcome {
        Ok(value) => write_result(&mut out, id, value).expect("json"),
        Err(e) => write_error(&mut out, id, e),
    }
    out
}

async fn run_session<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    session: Session,
    shared: &Shared,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sealer, mut opener) = session.split();
    let mut held: Vec<Vec<u8>> = Vec::new();
    let batch = shared.behavior.batch.max(1);
    for _ in 0..MAX_MESSAGES {
        let message = match tokio::time::timeout(READ_TIMEOUT, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => {
                let _ = shared.events.send(Event::Closed { code: None });
                return;
            }
        };
        let frame = match message {
            Message::Binary(b) => b,
            Message::Close(frame) => {
                let _ = shared.events.send(Event::Closed {
                    code: frame.map(|f| u16::from(f.code)),
                });
                // Let tungstenite answer the close.
                let _ = tokio::time::timeout(READ_TIMEOUT, ws.next()).await;
                return;
            }
            _ => continue,
        };
        let Ok(payload) = opener.open(&frame) else {
            let _ = shared.events.send(Event::BadFrame);
            let _ = ws.close(None).await;
            return;
        };
        if payload.is_empty() {
            continue;
        }
        let request = match parse_request(payload) {
            Ok(r) => r,
            Err(rejected) => {
                let mut out = Vec::new();
                write_error(&mut out, rejected.id, &rejected.error);
                held.push(out);
                continue;
            }
        };
        let _ = shared.events.send(Event::Request {
            object: request.object.to_string(),
            method: request.method.to_string(),
            oneway: request.oneway,
        });
        let args: Vec<Value> = serde_json::from_str(request.args.get()).expect("args array");
        let action = dispatch(&request.object, &request.method, &args, shared);
        if request.oneway {
            continue;
        }
        let id = request.id;
        let seal = |sealer: &mut sigil_core::transport::FrameSealer, payload: &[u8]| {
            let mut frame = Vec::new();
            sealer.seal(payload, &mut frame).expect("seal");
            Message::binary(frame)
        };
        let sent = match action {
            Action::Reply(outcome) => {
                held.push(response(id, &outcome));
                if held.len() >= batch {
                    for payload in held.drain(..).rev() {
                        let m = seal(&mut sealer, &payload);
                        if ws.send(m).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(())
            }
            Action::Nothing => Ok(()),
            Action::Text => ws.send(Message::text("hello")).await,
            Action::Garbage => ws.send(seal(&mut sealer, br#"{"not":"a response"}"#)).await,
            Action::UnknownIdFirst => {
                let stray = response(u64::MAX, &Ok("stray".into()));
                let _ = ws.send(seal(&mut sealer, &stray)).await;
                ws.send(seal(&mut sealer, &response(id, &Ok("ok".into()))))
                    .await
            }
            Action::EmptyFirst => {
                let _ = ws.send(seal(&mut sealer, b"")).await;
                ws.send(seal(&mut sealer, &response(id, &Ok("ok".into()))))
                    .await
            }
            Action::Tamper => {
                let mut frame = Vec::new();
                sealer
                    .seal(&response(id, &Ok("ok".into())), &mut frame)
                    .expect("seal");
                // Flip a bit of the payload: the tag no longer matches.
                frame[20] ^= 0x01;
                ws.send(Message::binary(frame)).await
            }
            Action::Big => {
                let big = "x".repeat(64 * 1024);
                ws.send(seal(&mut sealer, &response(id, &Ok(big.into()))))
                    .await
            }
            Action::Close => {
                let _ = ws.close(None).await;
                let _ = shared.events.send(Event::Closed { code: None });
                return;
            }
        };
        if sent.is_err() {
            return;
        }
    }
}
