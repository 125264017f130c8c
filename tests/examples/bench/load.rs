//! Client loops over loopback WebSocket, the same for every contender.
//!
//! - The *handle loop* drives a client library's handle (sigil-client's
//!   `Client`, jsonrpsee's `WsClient`): `tasks` tasks per connection, each
//!   making one call after another, so `tasks` calls are in flight per
//!   connection at all times.
//! - The *raw loop* is one task per WebSocket that keeps `k` requests in
//!   flight by itself: it writes a new request as each response comes,
//!   and flushes once per batch of responses that were ready together
//!   (as the servers do). It speaks any protocol through [`Proto`]: the
//!   raw echo, JSON-RPC 2.0 to jsonrpsee's server, and sigil/1 through
//!   sigil-core's `ClientConnection` (so sigil's server is measured
//!   without sigil-client's own cost).
//!
//! Every loop stops at its deadline; a failed call is counted, never
//! retried.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::value::RawValue;
use sigil_core::connection::{CallOptions, ClientConnection, ClientEvent, SessionLimits};
use sigil_core::handshake::{ClientConfig, ClientHandshake};
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rand::OsRandom;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

pub(crate) type Ws = WebSocketStream<TcpStream>;

/// What one timed run of a loop gave.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub(crate) calls: u64,
    pub(crate) failed: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) elapsed: Duration,
    /// Of each call, when one call was in flight at a time; sorted.
    pub(crate) latencies: Vec<Duration>,
}

impl Run {
    pub(crate) fn per_s(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q`, in µs (NaN without latencies).
    pub(crate) fn p(&self, q: f64) -> f64 {
        let lat = &self.latencies;
        lat.get(((lat.len().max(1) - 1) as f64 * q) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    }

    fn merge(&mut self, other: Run) {
        self.calls += other.calls;
        self.failed += other.failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.latencies.extend(other.latencies);
    }

    /// The runs of every task in `set`, added up, timed from `start`.
    async fn collect(mut set: tokio::task::JoinSet<Run>, start: Instant) -> Run {
        let mut total = Run::default();
        while let Some(run) = set.join_next().await {
            total.merge(run.unwrap());
        }
        total.elapsed = start.elapsed();
        total.latencies.sort();
        total
    }

    fn fail(&mut self, e: impl ToString) {
        self.failed += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

/// Drives `handles` (one per connection) with `tasks` tasks each, for
/// `budget`; `call` makes one call on a handle.
pub(crate) async fn handle_loop<C, F, Fut>(
    handles: &[C],
    tasks: usize,
    budget: Duration,
    call: F,
) -> Run
where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let start = Instant::now();
    let until = start + budget;
    let timed = handles.len() * tasks == 1;
    let mut set = tokio::task::JoinSet::new();
    for h in handles {
        for _ in 0..tasks {
            let (h, call) = (h.clone(), call.clone());
            set.spawn(async move {
                let mut run = Run::default();
                while Instant::now() < until {
                    let t = Instant::now();
                    match call(h.clone()).await {
                        Ok(()) => {
                            run.calls += 1;
                            if timed {
                                run.latencies.push(t.elapsed());
                            }
                        }
                        Err(e) => run.fail(e),
                    }
                }
                run
            });
        }
    }
    Run::collect(set, start).await
}

/// A request/response protocol for the raw loop.
pub(crate) trait Proto: Send + 'static {
    /// The next request.
    fn request(&mut self) -> Message;
    /// Checks one response.
    fn response(&mut self, msg: Message) -> Result<(), String>;
}

/// Drives each of `conns` with its protocol, `k` requests in flight each,
/// for `budget`.
pub(crate) async fn raw_loop<P: Proto>(conns: Vec<(Ws, P)>, k: usize, budget: Duration) -> Run {
    let start = Instant::now();
    let until = start + budget;
    let mut set = tokio::task::JoinSet::new();
    for (ws, proto) in conns {
        set.spawn(raw_conn(ws, proto, k, until));
    }
    Run::collect(set, start).await
}

async fn raw_conn<P: Proto>(mut ws: Ws, mut proto: P, k: usize, until: Instant) -> Run {
    let mut run = Run::default();
    let result: Result<(), String> = async {
        let mut in_flight = 0usize;
        for _ in 0..k {
            ws.feed(proto.request()).await.map_err(|e| e.to_string())?;
            in_flight += 1;
        }
        let mut sent_at = Instant::now();
        while in_flight > 0 {
            // Flush what was written only when no response is ready.
            let msg = match ws.next().now_or_never() {
                Some(m) => m,
                None => {
                    ws.flush().await.map_err(|e| e.to_string())?;
                    ws.next().await
                }
            };
            let msg = match msg {
                Some(Ok(m @ (Message::Binary(_) | Message::Text(_)))) => m,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(other)) => return Err(format!("unexpected {other:?}")),
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed".into()),
            };
            in_flight -= 1;
            match proto.response(msg) {
                Ok(()) => {
                    run.calls += 1;
                    if k == 1 {
                        run.latencies.push(sent_at.elapsed());
                    }
                }
                Err(e) => run.fail(e),
            }
            if Instant::now() < until {
                ws.feed(proto.request()).await.map_err(|e| e.to_string())?;
                in_flight += 1;
                sent_at = Instant::now();
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.fail(e);
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    run
}

/// The source address for connection `i`: 127.0.0.1 for the first, then
/// spread over 127.0.0.10 – 127.0.0.73 (so that no one address runs out
/// of ephemeral ports or meets a per-address limit).
pub(crate) fn source(i: usize) -> IpAddr {
    if i == 0 {
        return IpAddr::V4(Ipv4Addr::LOCALHOST);
    }
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + (i % 64) as u8))
}

/// The WebSocket config of the raw loop's clients, whatever the protocol:
/// 4 KiB read buffers, so that 10,000 of them fit in this process
/// (tungstenite's default is 128 KiB each, zero-filled before each read).
fn client_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// A WebSocket to `ws://addr/path` from `src`, with `subprotocol` if any.
pub(crate) async fn ws_connect(
    src: IpAddr,
    addr: SocketAddr,
    path: &str,
    subprotocol: Option<&'static str>,
) -> Result<Ws, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.set_reuseaddr(true).map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(src, 0))
        .map_err(|e| format!("bind {src}: {e}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static(p));
    }
    let (ws, _) = client_async_with_config(request, tcp, Some(client_ws_config()))
        .await
        .map_err(|e| format!("upgrade: {e}"))?;
    Ok(ws)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A sigil/1 session over a raw WebSocket: the handshake, then
/// sigil-core's client machine.
pub(crate) struct SigilProto {
    conn: ClientConnection,
    object: &'static str,
    method: &'static str,
    args: Box<RawValue>,
}

/// Connects from `src` and runs the handshake as `key`.
pub(crate) async fn sigil_session(
    src: IpAddr,
    addr: SocketAddr,
    key: &SecretKey,
    server: PublicKey,
) -> Result<(Ws, ClientConnection), String> {
    let mut ws = ws_connect(src, addr, "/sigil", Some("sigil.v1")).await?;
    let key = SecretKey::from_bytes(&key.dangerous_to_bytes());
    let config = ClientConfig::new(key, server).map_err(|e| e.to_string())?;
    let (hs, hello) = ClientHandshake::start(&config, &mut OsRandom, now_ms(), None)
        .map_err(|e| e.to_string())?;
    ws.send(Message::binary(hello))
        .await
        .map_err(|e| e.to_string())?;
    let answer = match ws.next().await {
        Some(Ok(Message::Binary(b))) => b,
        other => return Err(format!("no message 2: {other:?}")),
    };
    let (session, _) = hs.finish(&answer).map_err(|e| e.to_string())?;
    let limits = SessionLimits {
        max_inflight: usize::MAX,
        idle_timeout_ms: None,
        ..SessionLimits::default()
    };
    Ok((ws, ClientConnection::new(session, limits)))
}

impl SigilProto {
    pub(crate) fn new(
        conn: ClientConnection,
        object: &'static str,
        method: &'static str,
        args: &str,
    ) -> SigilProto {
        SigilProto {
            conn,
            object,
            method,
            args: RawValue::from_string(args.to_owned()).unwrap(),
        }
    }

    /// One call, start to end, on a fresh session (the memory rows).
    pub(crate) async fn call_once(&mut self, ws: &mut Ws) -> Result<(), String> {
        ws.send(self.request()).await.map_err(|e| e.to_string())?;
        match ws.next().await {
            Some(Ok(m)) => self.response(m),
            other => Err(format!("no response: {other:?}")),
        }
    }
}

impl Proto for SigilProto {
    fn request(&mut self) -> Message {
        let options = CallOptions::default();
        self.conn
            .call(0, self.object, self.method, &*self.args, options)
            .unwrap();
        Message::binary(self.conn.poll_transmit().unwrap())
    }

    fn response(&mut self, msg: Message) -> Result<(), String> {
        let Message::Binary(frame) = msg else {
            return Err("not binary".into());
        };
        self.conn
            .handle_frame(0, &frame)
            .map_err(|e| e.to_string())?;
        match self.conn.poll_event() {
            Some(ClientEvent::Response { outcome: Ok(_), .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }
}

/// The raw echo: binary requests of `request_len` bytes whose first four
/// say how long the answer must be (`response_len`).
pub(crate) struct EchoProto {
    request: Bytes,
    response_len: usize,
}

impl EchoProto {
    pub(crate) fn new(request_len: usize, response_len: usize) -> EchoProto {
        let mut request = vec![b'x'; request_len.max(4)];
        request[..4].copy_from_slice(&(response_len as u32).to_be_bytes());
        EchoProto {
            request: request.into(),
            response_len,
        }
    }
}

impl Proto for EchoProto {
    fn request(&mut self) -> Message {
        Message::Binary(self.request.clone())
    }

    fn response(&mut self, msg: Message) -> Result<(), String> {
        match msg {
            Message::Binary(b) if b.len() == self.response_len => Ok(()),
            other => Err(format!("echo answered {} bytes", other.len())),
        }
    }
}

/// JSON-RPC 2.0 over text messages: `add(1, 2)`.
#[derive(Default)]
pub(crate) struct JsonRpcProto {
    next_id: u64,
}

#[derive(serde::Deserialize)]
struct JsonRpcResponse {
    #[allow(dead_code)] // read to check the shape, as a client would
    id: u64,
    result: i64,
}

impl Proto for JsonRpcProto {
    fn request(&mut self) -> Message {
        self.next_id += 1;
        Message::text(format!(
            r#"{{"jsonrpc":"2.0","id":{},"method":"add","params":[1,2]}}"#,
            self.next_id
        ))
    }

    fn response(&mut self, msg: Message) -> Result<(), String> {
        let text = msg.into_text().map_err(|e| e.to_string())?;
        let r: JsonRpcResponse = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if r.result == 3 {
            Ok(())
        } else {
            Err(format!("add(1, 2) = {}", r.result))
        }
    }
}
