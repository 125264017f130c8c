//! Attackers for the benchmark's hostile-load rows, on their own thread and
//! runtime (a stand-in for another process), from loopback addresses
//! 127.0.0.2 and up so that the server's per-address limits apply as they
//! would to real strangers.
//!
//! - [`Attack::JunkHellos`]: per address, one task that connects, upgrades
//!   to WebSocket (raw HTTP, as cheap as an attacker can make it), sends one
//!   well-formed-looking message 1 with random keys and tag, and reads the
//!   refusal until the server closes; then again.
//! - [`Attack::Silent`]: per address, [`SILENT_PER_ADDR`] tasks that connect
//!   and say nothing, reopening whenever the server closes them (a 503 once
//!   the address has `max_pending_per_ip` pending connections).
//!
//! Every wait ends at the flood's stop or its hard deadline, and every loop
//! is bounded in rounds.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sigil_core::rand::{OsRandom, RandomSource};
use sigil_server::{ENDPOINT, SUBPROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout_at};

/// Attacker source addresses: 127.0.0.2 ..= 127.0.0.(1 + ATTACKERS).
pub(crate) const ATTACKERS: u8 = 4;
/// Silent connections each attacker address keeps trying to hold.
pub(crate) const SILENT_PER_ADDR: usize = 16;
/// Rounds one attacker task makes at most (a bound well above what fits in
/// a few seconds).
const MAX_ROUNDS: u64 = 1_000_000;
/// Bytes read from the server per connection at most.
const MAX_READ: usize = 16 * 1024;
/// How old a silent connection must be at the end to count as held.
const HELD: Duration = Duration::from_millis(500);
/// The server's answer to an address over its pending budget.
const BUSY_STATUS: &[u8] = b"HTTP/1.1 503 ";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attack {
    JunkHellos,
    Silent,
}

/// What the attackers saw.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Junk hellos answered with a refusal, by code.
    pub(crate) refusals: BTreeMap<u16, u64>,
    /// Connections answered with `503` (over the pending budget).
    pub(crate) busy: u64,
    /// Connections the server closed without an answer.
    pub(crate) dropped: u64,
    /// Silent connections open for at least [`HELD`] when the flood stopped
    /// (younger ones were most likely still waiting for their 503).
    pub(crate) held: u64,
    /// Failed connects, reads, writes, or unexpected answers.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// From the start of the flood to its stop.
    pub(crate) elapsed: Duration,
    /// CPU time the attackers' thread used (Linux only).
    pub(crate) attacker_cpu: Option<Duration>,
}

impl Counts {
    /// All refusals, whatever their code.
    pub(crate) fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }

    fn error(&mut self, e: impl fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    fn merge(&mut self, other: Counts) {
        for (code, n) in other.refusals {
            *self.refusals.entry(code).or_default() += n;
        }
        self.busy += other.busy;
        self.dropped += other.dropped;
        self.held += other.held;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let mut parts = Vec::new();
        for (code, n) in &self.refusals {
            parts.push(format!(
                "{n} refusals code {code} ({:.0}/s)",
                *n as f64 / secs
            ));
        }
        if self.busy > 0 {
            parts.push(format!(
                "{} × 503 ({:.0}/s)",
                self.busy,
                self.busy as f64 / secs
            ));
        }
        if self.held > 0 {
            parts.push(format!(
                "{} held open (≥ {} ms)",
                self.held,
                HELD.as_millis()
            ));
        }
        if self.dropped > 0 {
            parts.push(format!("{} closed unanswered", self.dropped));
        }
        if self.errors > 0 {
            let first = self.first_error.as_deref().unwrap_or("?");
            parts.push(format!("{} errors, first: {first}", self.errors));
        }
        if parts.is_empty() {
            parts.push("nothing".to_owned());
        }
        write!(f, "{}", parts.join(", "))
    }
}

/// A running flood; [`Flood::finish`] stops it and collects its counts.
pub(crate) struct Flood {
    stop: watch::Sender<bool>,
    done: oneshot::Receiver<Counts>,
}

/// Starts `attack` against `server`; it stops at [`Flood::finish`], or by
/// itself after `cap`.
pub(crate) fn start(attack: Attack, server: SocketAddr, cap: Duration) -> Flood {
    let (stop, stop_rx) = watch::channel(false);
    let (done_tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cpu = thread_cpu();
        let mut counts = rt.block_on(run(attack, server, cap, stop_rx));
        counts.attacker_cpu = cpu.zip(thread_cpu()).map(|(a, b)| b.saturating_sub(a));
        let _ = done_tx.send(counts);
    });
    Flood { stop, done }
}

impl Flood {
    pub(crate) async fn finish(self) -> Counts {
        let _ = self.stop.send(true);
        self.done.await.unwrap()
    }
}

/// User + system CPU time from a `/proc/.../stat` file (Linux; `None`
/// elsewhere), counted in USER_HZ ticks, which Linux fixes at 100 a second.
pub(crate) fn cpu_of(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The fields after the command name, which is in parentheses: field 3
    // (state) is the first, utime (14) and stime (15) the 12th and 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// CPU time this process has used (all its threads).
pub(crate) fn process_cpu() -> Option<Duration> {
    cpu_of("/proc/self/stat")
}

/// CPU time the calling thread has used.
fn thread_cpu() -> Option<Duration> {
    cpu_of("/proc/thread-self/stat")
}

/// When to give up waiting: at the stop signal or the hard deadline.
#[derive(Clone)]
struct Until {
    end: Instant,
    stop: watch::Receiver<bool>,
}

impl Until {
    /// `f`'s output, or `None` if the flood stopped first.
    async fn bounded<F: Future>(&self, f: F) -> Option<F::Output> {
        let mut stop = self.stop.clone();
        tokio::select! {
            r = timeout_at(self.end, f) => r.ok(),
            _ = stop.wait_for(|s| *s) => None,
        }
    }

    fn over(&self) -> bool {
        *self.stop.borrow() || Instant::now() >= self.end
    }
}

async fn run(
    attack: Attack,
    server: SocketAddr,
    cap: Duration,
    stop: watch::Receiver<bool>,
) -> Counts {
    let start = Instant::now();
    let until = Until {
        end: start + cap,
        stop,
    };
    let mut tasks = JoinSet::new();
    for i in 0..ATTACKERS {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i));
        match attack {
            Attack::JunkHellos => {
                tasks.spawn(junk_attacker(src, server, until.clone()));
            }
            Attack::Silent => {
                for _ in 0..SILENT_PER_ADDR {
                    tasks.spawn(silent_attacker(src, server, until.clone()));
                }
            }
        }
    }
    let mut total = Counts::default();
    while let Some(counts) = tasks.join_next().await {
        total.merge(counts.unwrap());
    }
    total.elapsed = start.elapsed();
    total
}

/// A TCP connection from `src` (any port) to `server`.
async fn connect_from(src: IpAddr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::new(src, 0))?;
    let tcp = socket.connect(server).await?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

/// Reads into `buf` until the peer closes (or `MAX_READ` bytes).
async fn read_to_close(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_READ {
        match tcp.read(&mut chunk).await? {
            0 => return Ok(()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(())
}

/// Reads into `buf` until it holds a whole HTTP head; returns the head's length.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_READ {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(i + 4);
        }
        match tcp.read(&mut chunk).await? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Err(io::Error::other("HTTP head too long"))
}

fn upgrade_request(server: SocketAddr) -> Vec<u8> {
    format!(
        "GET {ENDPOINT} HTTP/1.1\r\n\
         Host: {server}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
    )
    .into_bytes()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A message 1 that parses and is fresh but authenticates nothing: random
/// `EC`, `C` and tag, timestamp `now_ms`, no payload.
pub(crate) fn junk_hello(now_ms: u64) -> Vec<u8> {
    let mut m = vec![0u8; 110];
    m[0] = 0x01; // ClientHello
    m[1] = 0x01; // sigil/1
    OsRandom.fill(&mut m[2..66]).unwrap(); // EC, C
    m[66..74].copy_from_slice(&now_ms.to_be_bytes());
    // m[74..78]: n = 0
    OsRandom.fill(&mut m[78..110]).unwrap(); // tag1
    m
}

/// One masked binary WebSocket frame (client to server) of a short payload.
fn masked_binary(payload: &[u8]) -> Vec<u8> {
    let len = u8::try_from(payload.len()).unwrap();
    assert!(len < 126, "short payloads only");
    let mut mask = [0u8; 4];
    OsRandom.fill(&mut mask).unwrap();
    let mut frame = vec![0x82, 0x80 | len];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// The payload of the first (unmasked, server to client) frame in `bytes`,
/// if it is a binary frame.
fn first_binary(bytes: &[u8]) -> Option<&[u8]> {
    let (&b0, rest) = bytes.split_first()?;
    let (&b1, rest) = rest.split_first()?;
    if b0 != 0x82 || b1 & 0x80 != 0 {
        return None;
    }
    let (len, rest) = match b1 {
        126 => (
            usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?])),
            &rest[2..],
        ),
        127 => return None,
        n => (usize::from(n), rest),
    };
    rest.get(..len)
}

/// The outcome of one junk round.
enum Junk {
    Refused(u16),
    Busy,
}

async fn junk_round(src: IpAddr, server: SocketAddr, request: &[u8]) -> io::Result<Junk> {
    let mut tcp = connect_from(src, server).await?;
    tcp.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    let head = read_head(&mut tcp, &mut buf).await?;
    if buf.starts_with(BUSY_STATUS) {
        return Ok(Junk::Busy);
    }
    if !buf.starts_with(b"HTTP/1.1 101 ") {
        let line = buf.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(io::Error::other(format!(
            "upgrade answered {:?}",
            String::from_utf8_lossy(line)
        )));
    }
    tcp.write_all(&masked_binary(&junk_hello(now_ms()))).await?;
    read_to_close(&mut tcp, &mut buf).await?;
    match first_binary(&buf[head..]) {
        Some(m) if m.len() >= 8 && m[0] == 0x03 => {
            Ok(Junk::Refused(u16::from_be_bytes([m[2], m[3]])))
        }
        _ => Err(io::Error::other(format!(
            "no refusal in the {} bytes after the 101",
            buf.len() - head
        ))),
    }
}

async fn junk_attacker(src: IpAddr, server: SocketAddr, until: Until) -> Counts {
    let request = upgrade_request(server);
    let mut counts = Counts::default();
    for _ in 0..MAX_ROUNDS {
        if until.over() {
            break;
        }
        match until.bounded(junk_round(src, server, &request)).await {
            None => break,
            Some(Ok(Junk::Refused(code))) => *counts.refusals.entry(code).or_default() += 1,
            Some(Ok(Junk::Busy)) => counts.busy += 1,
            Some(Err(e)) => {
                counts.error(format_args!("{src}: {e}"));
                // Do not spin on a failing connect.
                let _ = until.bounded(sleep(Duration::from_millis(10))).await;
            }
        }
    }
    counts
}

async fn silent_attacker(src: IpAddr, server: SocketAddr, until: Until) -> Counts {
    let mut counts = Counts::default();
    for _ in 0..MAX_ROUNDS {
        if until.over() {
            break;
        }
        let opened = Instant::now();
        let mut tcp = match until.bounded(connect_from(src, server)).await {
            None => break,
            Some(Ok(tcp)) => tcp,
            Some(Err(e)) => {
                counts.error(format_args!("{src}: connect: {e}"));
                let _ = until.bounded(sleep(Duration::from_millis(10))).await;
                continue;
            }
        };
        let mut buf = Vec::new();
        match until.bounded(read_to_close(&mut tcp, &mut buf)).await {
            None => {
                if opened.elapsed() >= HELD {
                    counts.held += 1;
                }
                break;
            }
            Some(Ok(())) if buf.starts_with(BUSY_STATUS) => counts.busy += 1,
            Some(Ok(())) if buf.is_empty() => counts.dropped += 1,
            Some(Ok(())) => counts.error(format_args!(
                "{src}: unexpected answer {:?}",
                String::from_utf8_lossy(&buf[..buf.len().min(40)])
            )),
            // A reset after the 503 was written can lose it: the server
            // closed the connection either way.
            Some(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => counts.dropped += 1,
            Some(Err(e)) => counts.error(format_args!("{src}: read: {e}")),
        }
    }
    counts
}
