//! Raw-socket attack tools for the abuse tests (`abuse.rs`): loopback
//! connections from chosen source addresses, hand-made HTTP requests and
//! WebSocket frames, sigil/1 hellos good and bad, and what the tests measure
//! meanwhile: the server's RSS, when it closes the attacker's connections,
//! and whether an honest client can still connect and call.
//!
//! Attackers connect from 127.0.0.2 and up ([`attacker`]), so that the
//! server's per-address limits see them as other hosts; the honest client
//! ([`Bystander`]) is the real `sigil-client` from 127.0.0.1.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use sha2::{Digest, Sha256};
use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::{ClientConfig, ClientHandshake, HandshakeError, Refusal};
use sigil_core::kdf::{hkdf2, hmac_sha256};
use sigil_core::rpc::{RpcError, parse_response, write_request, write_stream_request};
use sigil_core::transport::Session;
use sigil_core::{OsRandom, PublicKey, RandomSource as _, SecretKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};

use crate::common::serve::Serve;

/// How long the honest client may take to connect and call, each time.
pub(crate) const HONEST_WAIT: Duration = Duration::from_secs(5);

/// Longest wait for an HTTP answer in a check (not under attack load).
pub(crate) const HTTP_WAIT: Duration = Duration::from_secs(5);

/// What the server writes into its log at most during one attack: it logs
/// refusals and drops as rate-limited summaries, a few lines per kind.
pub(crate) const MAX_LOG_LINES: usize = 200;

/// The RSS at which the watch kills the server: far above every bound the
/// tests assert, it only keeps a server without bounds from taking the
/// machine down with it.
pub(crate) const RSS_KILL_KIB: u64 = 512 * 1024;

// ---------------------------------------------------------------------------
// Running one attack at a time

/// Held by each test for its whole run: attacks measure time and memory, so
/// two of them must not share the machine.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs one test's attack on a runtime of its own (two worker threads), with
/// no other attack running meanwhile.
pub(crate) fn run<F: Future>(attack: F) -> F::Output {
    let _alone = exclusive();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime for the attack")
        .block_on(attack)
}

/// The `n`th attacker address: 127.0.0.2, 127.0.0.3, ...
pub(crate) fn attacker(n: usize) -> Ipv4Addr {
    let n = u8::try_from(n + 2).expect("at most 253 attacker addresses");
    Ipv4Addr::new(127, 0, 0, n)
}

/// The receive buffer of every hand-made connection (the kernel doubles it).
const RECEIVE_BUFFER: u32 = 16 * 1024;

/// The honest client's address.
pub(crate) const HONEST: Ipv4Addr = Ipv4Addr::LOCALHOST;

// ---------------------------------------------------------------------------
// The server under attack

/// Writes `abuse.toml` in `dir`: each entry is a key and its value in TOML
/// (`("max_connections", "64")`, `("allowed_origins", r#"["*"]"#)`).
pub(crate) fn write_config(dir: &Path, entries: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (key, value) in entries {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let path = dir.join("abuse.toml");
    std::fs::write(&path, text).expect("write abuse.toml");
    path
}

/// `sigil serve --demo --port 0 --config FILE EXTRA...` in `dir`, the file
/// made of `config` by [`write_config`].
pub(crate) fn serve_demo(dir: &Path, config: &[(&str, &str)], extra: &[&str]) -> Serve {
    let path = write_config(dir, config);
    let path = path.to_str().expect("UTF-8 temp path");
    let mut args = vec!["--demo", "--port", "0", "--config", path];
    args.extend_from_slice(extra);
    Serve::start(dir, &args)
}

/// Where and whom to attack.
#[derive(Clone)]
pub(crate) struct Target {
    /// `ws://127.0.0.1:PORT/sigil`.
    pub(crate) url: String,
    /// The port on 127.0.0.1.
    pub(crate) port: u16,
    /// The server's public key, as printed.
    pub(crate) server_key: PublicKey,
}

impl Target {
    /// The server that `serve` started.
    pub(crate) fn of(serve: &Serve) -> Target {
        let port = serve
            .url
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/sigil"))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected url {}", serve.url));
        Target {
            url: serve.url.clone(),
            port,
            server_key: PublicKey::parse(&serve.public_key).expect("the printed public key"),
        }
    }

    /// The `Host` header a browser would send: `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A TCP connection from `source`.
    pub(crate) async fn tcp_from(&self, source: Ipv4Addr) -> io::Result<Conn> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        // An attacker that does not read keeps its window small, so that
        // the server's writes back up at once.
        socket.set_recv_buffer_size(RECEIVE_BUFFER)?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let stream = socket
            .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
            .await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            opened: Instant::now(),
            subprotocol: None,
        })
    }

    /// A connection from `source` upgraded to WebSocket (an error unless the
    /// server answers 101).
    pub(crate) async fn upgraded_from(&self, source: Ipv4Addr) -> io::Result<Conn> {
        self.upgraded_with(source, &[]).await
    }

    /// [`upgraded_from`](Self::upgraded_from) with `extra` headers.
    pub(crate) async fn upgraded_with(
        &self,
        source: Ipv4Addr,
        extra: &[(&str, &str)],
    ) -> io::Result<Conn> {
        let mut conn = self.tcp_from(source).await?;
        conn.send(upgrade_request(&self.host(), extra).as_bytes())
            .await?;
        let head = conn.read_head().await?;
        if head.status != 101 {
            return Err(io::Error::other(format!(
                "the upgrade was answered {}",
                head.status_line()
            )));
        }
        conn.subprotocol = head.header("sec-websocket-protocol").map(str::to_owned);
        Ok(conn)
    }

    /// A completed sigil/1 handshake from `source` with `key`: the session,
    /// or the refusal or failure.
    pub(crate) async fn handshake_from(
        &self,
        source: Ipv4Addr,
        config: &ClientConfig,
    ) -> io::Result<(Conn, Answer)> {
        self.handshake_with(source, config, &[]).await
    }

    /// [`handshake_from`](Self::handshake_from) with `extra` headers on the
    /// upgrade.
    pub(crate) async fn handshake_with(
        &self,
        source: Ipv4Addr,
        config: &ClientConfig,
        extra: &[(&str, &str)],
    ) -> io::Result<(Conn, Answer)> {
        let (conn, _, answer) = self.handshake_keeping_hello(source, config, extra).await?;
        Ok((conn, answer))
    }

    /// [`handshake_with`](Self::handshake_with), also giving message 1 as
    /// sent (for a replay).
    pub(crate) async fn handshake_keeping_hello(
        &self,
        source: Ipv4Addr,
        config: &ClientConfig,
        extra: &[(&str, &str)],
    ) -> io::Result<(Conn, Vec<u8>, Answer)> {
        let mut conn = self.upgraded_with(source, extra).await?;
        let (handshake, hello) =
            ClientHandshake::start(config, &mut OsRandom, now_ms(), None).expect("a client hello");
        let answer = conn.exchange(&hello).await?;
        let answer = match handshake.finish(&answer) {
            Ok((session, _)) => Answer::Accepted(Box::new(session)),
            Err(HandshakeError::Refused(refusal)) => Answer::Refused(refusal.code().as_u16()),
            Err(e) => Answer::Failed(e.to_string()),
        };
        Ok((conn, hello, answer))
    }

    /// An authenticated session from `source` with `key` (panics unless the
    /// server accepts it).
    pub(crate) async fn session_from(&self, source: Ipv4Addr, key: &SecretKey) -> RawSession {
        self.session_with(source, key, &[]).await
    }

    /// [`session_from`](Self::session_from) with `extra` headers on the
    /// upgrade.
    pub(crate) async fn session_with(
        &self,
        source: Ipv4Addr,
        key: &SecretKey,
        extra: &[(&str, &str)],
    ) -> RawSession {
        self.session_and_hello(source, key, extra).await.0
    }

    /// [`session_with`](Self::session_with), also giving message 1 as sent
    /// (for a replay).
    pub(crate) async fn session_and_hello(
        &self,
        source: Ipv4Addr,
        key: &SecretKey,
        extra: &[(&str, &str)],
    ) -> (RawSession, Vec<u8>) {
        let config = client_config(key, &self.server_key);
        let (conn, hello, answer) = self
            .handshake_keeping_hello(source, &config, extra)
            .await
            .expect("connect and handshake");
        match answer {
            Answer::Accepted(session) => (
                RawSession {
                    conn,
                    session: *session,
                    next_id: 1,
                },
                hello,
            ),
            other => panic!("the handshake from {source} did not complete: {other:?}"),
        }
    }
}

/// The server's answer to a hello.
pub(crate) enum Answer {
    /// Message 2: a session.
    Accepted(Box<Session>),
    /// A refusal, with its code.
    Refused(u16),
    /// Neither (the client's check failed).
    Failed(String),
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Accepted(_) => f.write_str("accepted (message 2)"),
            Answer::Refused(code) => write!(f, "refused with code {code}"),
            Answer::Failed(e) => write!(f, "failed: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// HTTP and WebSocket by hand

/// A WebSocket upgrade request for `/sigil` with the subprotocol `sigil.v1`
/// and `extra` headers.
pub(crate) fn upgrade_request(host: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!(
        "GET /sigil HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: sigil.v1\r\n"
    );
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// A plain `GET path` with `Host: host` and `extra` headers, closing after.
pub(crate) fn get_request(path: &str, host: &str, extra: &[(&str, &str)]) -> String {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in extra {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req
}

/// The head of an HTTP response.
#[derive(Debug)]
pub(crate) struct HttpHead {
    /// The status code.
    pub(crate) status: u16,
    /// The whole head, for messages.
    pub(crate) text: String,
}

impl HttpHead {
    /// The status line.
    pub(crate) fn status_line(&self) -> &str {
        self.text.lines().next().unwrap_or_default()
    }

    /// The value of header `name` (any case), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.text.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// WebSocket opcodes.
pub(crate) const OP_BINARY: u8 = 0x2;
/// Close.
pub(crate) const OP_CLOSE: u8 = 0x8;
/// Ping.
pub(crate) const OP_PING: u8 = 0x9;

/// The masking key of every frame we send. Clients must mask, but any key
/// will do for the server; with zeros masking leaves the payload as it is,
/// which keeps megabytes of frames cheap to build.
const MASK: [u8; 4] = [0; 4];

/// The header of a masked, final client frame announcing `len` payload bytes.
pub(crate) fn ws_header(opcode: u8, len: u64) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// A whole masked client frame.
pub(crate) fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = ws_header(opcode, payload.len() as u64);
    out.extend_from_slice(payload); // masked with zeros
    out
}

/// A WebSocket message from the server.
#[derive(Debug)]
pub(crate) enum WsMessage {
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame, with its code if it had one.
    Close(Option<u16>),
    /// A ping, pong or text message.
    Other,
}

/// How a write stream of [`Conn::write_until`] ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Written {
    /// Bytes the kernel took.
    pub(crate) bytes: u64,
    /// When a write failed (the server closed the connection).
    pub(crate) failed_at: Option<Instant>,
}

/// A client connection made by hand: the socket and what was read from it
/// but not yet used.
pub(crate) struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// When it was connected.
    pub(crate) opened: Instant,
    /// The WebSocket subprotocol the server selected, once upgraded.
    pub(crate) subprotocol: Option<String>,
}

impl Conn {
    /// Writes all of `bytes`.
    pub(crate) async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Writes `data` (over and over if `repeat`) as fast as the server
    /// takes it, never reading, until a write fails or `until`. Each write
    /// is either whole or not done, so a write that waits past `until`
    /// leaves the stream well-formed.
    pub(crate) async fn write_until(
        &mut self,
        data: &[u8],
        repeat: bool,
        until: Instant,
    ) -> Written {
        let mut pos = 0;
        let mut bytes = 0u64;
        while Instant::now() < until && (repeat || pos < data.len()) {
            let step = Instant::now() + Duration::from_millis(100);
            match timeout_at(step.min(until), self.stream.write(&data[pos..])).await {
                Ok(Ok(n)) if n > 0 => {
                    bytes += n as u64;
                    pos += n;
                    if repeat && pos == data.len() {
                        pos = 0;
                    }
                }
                Ok(_) => {
                    return Written {
                        bytes,
                        failed_at: Some(Instant::now()),
                    };
                }
                Err(_) => {} // the server is not reading: try again
            }
        }
        Written {
            bytes,
            failed_at: None,
        }
    }

    /// Reads more into the buffer; end of file is an error.
    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads the head of an HTTP response (within [`HTTP_WAIT`]), leaving
    /// what follows it in the buffer.
    pub(crate) async fn read_head(&mut self) -> io::Result<HttpHead> {
        let read = async {
            loop {
                if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let status = text
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| {
                            io::Error::other(format!("not an HTTP response: {text:?}"))
                        })?;
                    return Ok(HttpHead { status, text });
                }
                if self.buf.len() > 64 * 1024 {
                    return Err(io::Error::other("an HTTP head over 64 KiB"));
                }
                self.fill().await?;
            }
        };
        timeout(HTTP_WAIT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no HTTP answer"))?
    }

    /// Reads whatever the server sends until it closes the connection;
    /// returns it as text (for the body of an HTTP response).
    pub(crate) async fn read_to_end(&mut self) -> io::Result<String> {
        let mut rest = std::mem::take(&mut self.buf);
        timeout(HTTP_WAIT, self.stream.read_to_end(&mut rest))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the server kept it open"))??;
        Ok(String::from_utf8_lossy(&rest).into_owned())
    }

    /// Reads the next WebSocket message (server frames are not masked).
    /// Cancel-safe: nothing is consumed until a whole frame is there.
    pub(crate) async fn read_message(&mut self) -> io::Result<WsMessage> {
        loop {
            if let Some((opcode, start, len)) = frame_extent(&self.buf)? {
                let frame: Vec<u8> = self.buf.drain(..start + len).collect();
                let payload = frame[start..].to_vec();
                return Ok(match opcode {
                    OP_BINARY => WsMessage::Binary(payload),
                    OP_CLOSE => WsMessage::Close(
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]])),
                    ),
                    _ => WsMessage::Other,
                });
            }
            self.fill().await?;
        }
    }

    /// The next binary message, skipping pings and pongs; a close is an error.
    pub(crate) async fn read_binary(&mut self) -> io::Result<Vec<u8>> {
        loop {
            match self.read_message().await? {
                WsMessage::Binary(bytes) => return Ok(bytes),
                WsMessage::Close(code) => {
                    return Err(io::Error::other(format!(
                        "the server closed the WebSocket ({code:?})"
                    )));
                }
                WsMessage::Other => {}
            }
        }
    }

    /// Sends message 1 and returns the server's answer.
    pub(crate) async fn exchange(&mut self, hello: &[u8]) -> io::Result<Vec<u8>> {
        self.send(&ws_frame(OP_BINARY, hello)).await?;
        self.read_binary().await
    }

    /// Reads (and drops) whatever comes until the server closes the
    /// connection (end of file or reset) or `deadline`; returns whether it did.
    pub(crate) async fn closed_by(&mut self, deadline: Instant) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        self.buf.clear();
        loop {
            match timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// `(opcode, payload start, payload length)` of the first frame in `buf`
/// once it is all there.
fn frame_extent(buf: &[u8]) -> io::Result<Option<(u8, usize, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x80 == 0 || buf[0] & 0x0f == 0 {
        return Err(io::Error::other("a fragmented message from the server"));
    }
    let (len, start) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() >= 10 => {
            let mut n = [0u8; 8];
            n.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(n), 10)
        }
        126 | 127 => return Ok(None),
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= 64 << 20)
        .ok_or_else(|| io::Error::other("a frame over 64 MiB from the server"))?;
    Ok((buf.len() >= start + len).then_some((buf[0] & 0x0f, start, len)))
}

/// Checks, all at once, that the server closes every connection of
/// `conns` by its deadline (`opened + within`); panics naming how many
/// stayed open.
pub(crate) async fn assert_closed(conns: Vec<Conn>, within: Duration, what: &str) {
    let total = conns.len();
    let mut checks = JoinSet::new();
    for mut conn in conns {
        checks.spawn(async move {
            let deadline = conn.opened + within;
            conn.closed_by(deadline).await
        });
    }
    let open = checks
        .join_all()
        .await
        .into_iter()
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open, 0,
        "{open} of {total} {what} were still open {within:?} after they connected"
    );
}

// ---------------------------------------------------------------------------
// sigil/1 by hand

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds fit in u64")
}

/// A fresh random key pair.
pub(crate) fn random_key() -> SecretKey {
    SecretKey::generate(&mut OsRandom).expect("system random")
}

/// `n` random bytes.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    OsRandom.fill(&mut bytes).expect("system random");
    bytes
}

/// A copy of a secret key.
pub(crate) fn copy_key(key: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(&key.dangerous_to_bytes())
}

/// The client side of handshakes with `key` to the server `server`.
pub(crate) fn client_config(key: &SecretKey, server: &PublicKey) -> ClientConfig {
    ClientConfig::new(copy_key(key), *server).expect("a client config")
}

/// A well-formed message 1 from client key `client`, with a fresh real
/// ephemeral key and the current time, but a random tag: it costs the
/// server its X25519 work and is refused with code 1.
pub(crate) fn junk_hello(client: &PublicKey) -> Vec<u8> {
    let mut msg = vec![0x01, 0x01];
    msg.extend_from_slice(random_key().public_key().as_bytes());
    msg.extend_from_slice(client.as_bytes());
    msg.extend_from_slice(&now_ms().to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&random_bytes(32));
    msg
}

/// Message 1 built by hand, as the protocol chapter describes it (empty
/// prologue, no psk), with any payload bytes at all and a correct tag.
pub(crate) fn hello_by_hand(
    client: &SecretKey,
    ephemeral: &SecretKey,
    server: &PublicKey,
    timestamp_ms: u64,
    payload: &[u8],
) -> Vec<u8> {
    let hash = |parts: &[&[u8]]| -> [u8; 32] {
        let mut h = Sha256::new();
        for part in parts {
            h.update(part);
        }
        h.finalize().into()
    };
    let mut h = hash(&[b"sigil/1 X25519 HKDF-SHA256 HMAC-SHA256"]);
    let ck = h;
    h = hash(&[&h, b""]);
    h = hash(&[&h, server.as_bytes()]);

    let mut msg = vec![0x01, 0x01];
    msg.extend_from_slice(ephemeral.public_key().as_bytes());
    msg.extend_from_slice(client.public_key().as_bytes());
    msg.extend_from_slice(&timestamp_ms.to_be_bytes());
    let n = u32::try_from(payload.len()).expect("a small payload");
    msg.extend_from_slice(&n.to_be_bytes());
    msg.extend_from_slice(payload);
    h = hash(&[&h, &msg]);
    let es = ephemeral.diffie_hellman(server).expect("es");
    let (ck, _) = hkdf2(&ck, es.dangerous_as_bytes());
    let ss = client.diffie_hellman(server).expect("ss");
    let (_, k1) = hkdf2(&ck, ss.dangerous_as_bytes());
    msg.extend_from_slice(&hmac_sha256(k1.as_ref(), &h));
    msg
}

/// The code of a refusal, if `msg` is one.
pub(crate) fn refusal_code(msg: &[u8]) -> Option<u16> {
    Refusal::parse(msg).map(|r| r.code().as_u16())
}

/// An authenticated session over a hand-made connection.
pub(crate) struct RawSession {
    /// The connection.
    pub(crate) conn: Conn,
    session: Session,
    next_id: u64,
}

impl RawSession {
    /// The WebSocket frame of a signed request (not sent).
    pub(crate) fn request(&mut self, object: &str, method: &str, args: &Value) -> Vec<u8> {
        ws_frame(OP_BINARY, &self.sealed_request(object, method, args))
    }

    /// A signed request as a sigil/1 frame, without WebSocket framing (for
    /// a batch: several of them in one WebSocket message).
    pub(crate) fn sealed_request(&mut self, object: &str, method: &str, args: &Value) -> Vec<u8> {
        let mut request = Vec::new();
        write_request(&mut request, self.next_id, object, method, args, false)
            .expect("a valid request");
        self.next_id += 1;
        self.seal(&request)
    }

    /// The WebSocket frame of a signed stream request with `window` items
    /// of credit (not sent).
    pub(crate) fn stream_request(
        &mut self,
        object: &str,
        method: &str,
        args: &Value,
        window: u32,
    ) -> Vec<u8> {
        let mut request = Vec::new();
        write_stream_request(&mut request, self.next_id, object, method, args, window)
            .expect("a valid stream request");
        self.next_id += 1;
        ws_frame(OP_BINARY, &self.seal(&request))
    }

    fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        self.session
            .seal(payload, &mut frame)
            .expect("seal a payload");
        frame
    }

    /// Calls `object.method(args)` and waits for its response.
    pub(crate) async fn call(
        &mut self,
        object: &str,
        method: &str,
        args: &Value,
    ) -> io::Result<Result<Value, RpcError>> {
        let request = self.request(object, method, args);
        self.conn.send(&request).await?;
        let frame = self.conn.read_binary().await?;
        let payload = self
            .session
            .open(&frame)
            .map_err(|e| io::Error::other(format!("a bad frame from the server: {e}")))?;
        let response = parse_response(payload).map_err(io::Error::other)?;
        Ok(response
            .outcome
            .map(|raw| serde_json::from_str(raw.get()).expect("a JSON result")))
    }
}

// ---------------------------------------------------------------------------
// Measurements

/// The resident set size of process `pid` in KiB (`VmRSS`), `None` once
/// it is gone.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Samples the server's RSS every 50 ms in a thread, keeping the peak; kills
/// the server (SIGKILL, by its pid) if it passes [`RSS_KILL_KIB`].
pub(crate) struct RssWatch {
    start_kib: u64,
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    pid: u32,
    thread: Option<JoinHandle<()>>,
}

/// What an [`RssWatch`] saw.
#[derive(Debug)]
pub(crate) struct Rss {
    /// Before the attack.
    pub(crate) start_kib: u64,
    /// The highest sample.
    pub(crate) peak_kib: u64,
    /// At the end.
    pub(crate) end_kib: u64,
    /// Whether the watch had to kill the server.
    pub(crate) killed: bool,
}

impl RssWatch {
    /// Starts watching the server `serve`.
    pub(crate) fn start(serve: &Serve) -> RssWatch {
        let pid = serve.pid();
        let start_kib = rss_kib(pid).expect("the server is running");
        let peak = Arc::new(AtomicU64::new(start_kib));
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let (p, s, k) = (peak.clone(), stop.clone(), killed.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Some(rss) = rss_kib(pid) else { return };
                p.fetch_max(rss, Ordering::Relaxed);
                if rss > RSS_KILL_KIB {
                    k.store(true, Ordering::Relaxed);
                    let _ = StdCommand::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    return;
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch {
            start_kib,
            peak,
            stop,
            killed,
            pid,
            thread: Some(thread),
        }
    }

    /// Stops watching: what it saw.
    pub(crate) fn finish(mut self) -> Rss {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let killed = self.killed.load(Ordering::Relaxed);
        let end_kib = rss_kib(self.pid).unwrap_or(0);
        let peak_kib = self.peak.load(Ordering::Relaxed).max(end_kib);
        let rss = Rss {
            start_kib: self.start_kib,
            peak_kib,
            end_kib,
            killed,
        };
        println!(
            "server RSS: {} KiB before, {} KiB at the peak, {} KiB at the end",
            rss.start_kib, rss.peak_kib, rss.end_kib
        );
        rss
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Rss {
    /// Asserts that the server kept its memory: at its peak, at most
    /// `per_conn_kib` more per attacker connection than before the attack,
    /// and at most `absolute_kib` in all.
    pub(crate) fn assert_bounded(&self, conns: usize, per_conn_kib: u64, absolute_kib: u64) {
        assert!(
            !self.killed,
            "the server's RSS passed {} MiB during the attack (it was killed): {self:?}",
            RSS_KILL_KIB / 1024
        );
        let growth = self.peak_kib.saturating_sub(self.start_kib);
        let bound = per_conn_kib * conns as u64;
        assert!(
            growth <= bound,
            "the server's RSS grew by {growth} KiB, over {per_conn_kib} KiB for each of \
             {conns} attacker connections ({bound} KiB): {self:?}"
        );
        assert!(
            self.peak_kib <= absolute_kib,
            "the server's RSS reached {} KiB, over {absolute_kib} KiB: {self:?}",
            self.peak_kib
        );
    }
}

/// Asserts that the server logged fewer than [`MAX_LOG_LINES`] lines since
/// `before` (a length of its stderr, taken before the attack).
pub(crate) fn assert_quiet_log(serve: &Serve, before: usize) {
    let log = serve.stderr();
    let logged = log.get(before..).map_or(0, |text| text.lines().count());
    println!("server log: {logged} lines during the attack");
    assert!(
        logged < MAX_LOG_LINES,
        "the server logged {logged} lines during the attack (rate-limited summaries \
         expected), the last ones:\n{}",
        last_lines(&log, 10)
    );
}

/// What became of an attacker's connections.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Connections made (past the upgrade, or the handshake).
    pub(crate) opened: usize,
    /// Connections the server turned away before that (503, refusal, reset).
    pub(crate) turned_away: usize,
    /// The first few reasons for those.
    pub(crate) reasons: Vec<String>,
    /// The longest a connection lived before the server closed it.
    pub(crate) longest: Duration,
    /// Connections still open at their deadline.
    pub(crate) still_open: usize,
    /// Bytes the attacker sent.
    pub(crate) bytes: u64,
}

impl Tally {
    pub(crate) fn turned_away(&mut self, why: impl ToString) {
        self.turned_away += 1;
        if self.reasons.len() < 3 {
            self.reasons.push(why.to_string());
        }
    }

    /// Records `conn`, which the server should have closed by `deadline`
    /// after it connected (see [`Tally::closed_since`]).
    pub(crate) async fn closed(
        &mut self,
        conn: &mut Conn,
        failed_at: Option<Instant>,
        deadline: Duration,
    ) {
        let since = conn.opened;
        self.closed_since(conn, since, failed_at, deadline).await;
    }

    /// Records `conn`, which the server should have closed by
    /// `since + deadline`: `failed_at` is when a write to it failed, if one
    /// did; otherwise a read tells.
    pub(crate) async fn closed_since(
        &mut self,
        conn: &mut Conn,
        since: Instant,
        failed_at: Option<Instant>,
        deadline: Duration,
    ) {
        let end = since + deadline;
        let at = match failed_at {
            Some(at) => Some(at),
            None => conn
                .closed_by(end.max(Instant::now() + Duration::from_millis(100)))
                .await
                .then(Instant::now),
        };
        match at {
            Some(at) => self.longest = self.longest.max(at - since),
            None => self.still_open += 1,
        }
    }

    pub(crate) fn add(&mut self, other: Tally) {
        self.opened += other.opened;
        self.turned_away += other.turned_away;
        for r in other.reasons {
            if self.reasons.len() < 3 {
                self.reasons.push(r);
            }
        }
        self.longest = self.longest.max(other.longest);
        self.still_open += other.still_open;
        self.bytes += other.bytes;
    }

    /// Asserts that every connection was closed within `deadline` of its start.
    pub(crate) fn assert_closed(&self, deadline: Duration, what: &str) {
        println!("{what}: {self:?}");
        assert!(
            self.opened > 0,
            "no {what} connection got through: {self:?}"
        );
        assert_eq!(
            self.still_open, 0,
            "{} {what} connections were still open {deadline:?} after they connected: {self:?}",
            self.still_open
        );
    }
}

/// The sum of the tallies of `tasks`.
pub(crate) async fn join_tallies(tasks: JoinSet<Tally>) -> Tally {
    let mut all = Tally::default();
    for tally in tasks.join_all().await {
        all.add(tally);
    }
    all
}

/// The last `n` lines of `text`.
pub(crate) fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// The honest bystander

/// An honest client on 127.0.0.1 that connects with the real client, calls
/// `calculator.add` and disconnects, again and again, in a thread of its
/// own (so that the attackers' work in this process does not delay it).
pub(crate) struct Bystander {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Attempt>>>,
}

/// One connect-and-call of the bystander.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// When it started, from the bystander's start.
    pub(crate) at: Duration,
    /// How long it took.
    pub(crate) took: Duration,
    /// Why it failed, if it did.
    pub(crate) error: Option<String>,
}

impl Bystander {
    /// Starts connecting to `target` with `key`, once every `every`.
    pub(crate) fn start(target: &Target, key: &SecretKey, every: Duration) -> Bystander {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let url = target.url.clone();
        let server_key = target.server_key;
        let key = copy_key(key);
        let thread = thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the bystander");
            runtime.block_on(async move {
                let started = Instant::now();
                let mut attempts = Vec::new();
                let mut n = 0i64;
                while !flag.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    let options = ClientOptions::new(copy_key(&key), server_key)
                        .with_handshake_timeout(HONEST_WAIT);
                    let error = match timeout(HONEST_WAIT, honest_call(&url, options, n)).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e),
                        Err(_) => Some(format!("no answer within {HONEST_WAIT:?}")),
                    };
                    attempts.push(Attempt {
                        at: t0 - started,
                        took: t0.elapsed(),
                        error,
                    });
                    n += 1;
                    tokio::time::sleep_until(t0 + every).await;
                }
                attempts
            })
        });
        Bystander {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops, and asserts that at least `min` attempts were made and that
    /// every one connected and called successfully.
    pub(crate) fn assert_all_ok(mut self, min: usize) {
        self.stop.store(true, Ordering::Relaxed);
        let attempts = self
            .thread
            .take()
            .expect("not finished yet")
            .join()
            .expect("the bystander thread");
        let failed: Vec<&Attempt> = attempts.iter().filter(|a| a.error.is_some()).collect();
        let slowest = attempts.iter().map(|a| a.took).max().unwrap_or_default();
        println!(
            "honest client: {} connect-and-calls, {} failed, slowest {slowest:?}",
            attempts.len(),
            failed.len()
        );
        let first: Vec<String> = failed
            .iter()
            .take(5)
            .map(|a| format!("at {:?}: {}", a.at, a.error.as_deref().unwrap_or_default()))
            .collect();
        assert!(
            failed.is_empty(),
            "{} of {} honest connect-and-calls failed during the attack, the first: {first:#?}",
            failed.len(),
            attempts.len(),
        );
        assert!(
            attempts.len() >= min,
            "the honest client made only {} attempts (at least {min} expected): {attempts:?}",
            attempts.len()
        );
    }
}

impl Drop for Bystander {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Connects, calls `calculator.add(n, 1)`, checks the sum and closes.
async fn honest_call(url: &str, options: ClientOptions, n: i64) -> Result<(), String> {
    let client = Client::connect(url, options)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let sum: i64 = client
        .call("calculator", "add", (n, 1))
        .await
        .map_err(|e| format!("call: {e}"))?;
    client.close().await;
    if sum == n + 1 {
        Ok(())
    } else {
        Err(format!("calculator.add({n}, 1) gave {sum}"))
    }
}
