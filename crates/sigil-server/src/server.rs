//! Listening, TLS, the HTTP upgrade to WebSocket, and shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use sigil_core::batch::BATCH_LIMIT;
use sigil_core::config::AuthorizedKey;
use sigil_core::handshake::{ClientAuth, HELLO1_FIXED, ServerConfig, TAG_LEN};
use sigil_core::keys::PublicKey;
use sigil_core::transport::FRAME_OVERHEAD;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::budget::{HelloRate, OverLimit, Pending, PendingPermit, Tracked, Tracker};
use crate::connection;
use crate::logs::{self, Level, LogLimiter};
use crate::metrics::{self, Limit, Metrics};
use crate::operating::ReloadFiles;
use crate::preauth::{Budgeted, ReadBudget};
use crate::proxy::TrustedProxies;
use crate::registry::Registry;
use crate::reload::{self, Clients, KeyChanges, ReloadError, Reloaded, Swap, Trigger};
use crate::replay_store::{Replay, Sizes};
use crate::settings::{Hook, ServerLimits, ServerSettings, SetupError};
use crate::static_files::StaticFiles;
use crate::tls::PeerCertificate;

/// The WebSocket endpoint.
pub const ENDPOINT: &str = "/sigil";
/// The WebSocket subprotocol: one protocol message per WebSocket message.
pub const SUBPROTOCOL: &str = sigil_core::batch::SUBPROTOCOL;
/// The WebSocket subprotocol with batching (several frames per message),
/// selected when a client offers it (see [`sigil_core::batch`]).
pub const SUBPROTOCOL_BATCH: &str = sigil_core::batch::SUBPROTOCOL_BATCH;

/// Each connection's WebSocket read buffer, allocated when the connection
/// is upgraded and kept for its life: the largest share of an idle
/// session's memory, so it is sized for the messages sigil carries, not
/// for bulk transfer. A call (a request frame of a few hundred bytes)
/// arrives in one read; a larger message grows the buffer to its size
/// (tungstenite reserves the whole message once its header is read) and
/// is read 4 KiB per system call. tungstenite's default, 128 KiB, cost
/// ~128 KiB of resident memory per idle session, and zero-filled all of it
/// before every read (`FrameCodec::read_in` resizes the buffer to its
/// capacity), which cost more than the rest of a small call.
const READ_BUFFER: usize = 4 * 1024;

/// Responses are written to the socket once this many bytes wait, or when
/// the session has no more requests ready to read (it flushes once per
/// batch). A peer that does not read is closed once this much and one
/// more message wait for it (`max_write_buffer_size`), instead of being
/// buffered without bound. The buffer grows only as far as the responses
/// written in one batch need.
const WRITE_BUFFER: usize = 64 * 1024;

/// What every connection of one server shares. Nothing here is locked on the
/// hot path: the in-memory replay store is locked once per handshake, for
/// its check-and-insert only (no X25519 work under the lock).
pub(crate) struct Shared {
    /// The client policy and the handshake's config, replaced by reloads.
    pub(crate) clients: Clients,
    pub(crate) registry: Registry,
    pub(crate) objects_json: String,
    pub(crate) replay: Replay,
    pub(crate) hook: Option<Hook>,
    pub(crate) limits: ServerLimits,
    pub(crate) ws_config: WebSocketConfig,
    /// Bytes a connection may send before it is authenticated.
    pub(crate) preauth_budget: usize,
    pub(crate) static_files: Option<StaticFiles>,
    /// `{"public_key": …, "fingerprint": …}`, served at `/server-key` with the static files.
    pub(crate) server_key_json: Bytes,
    pub(crate) pending: Arc<Pending>,
    pub(crate) sessions: Arc<Semaphore>,
    pub(crate) hello_rate: HelloRate,
    pub(crate) logs: LogLimiter,
    pub(crate) http: HttpPolicy,
    /// The TLS config, replaced by reloads.
    pub(crate) tls: Option<Swap<rustls::ServerConfig>>,
    pub(crate) metrics: Metrics,
    pub(crate) proxies: TrustedProxies,
}

/// Which `Host` and `Origin` headers HTTP requests may carry.
pub(crate) struct HttpPolicy {
    /// Lower-case host names; `None`: any.
    hosts: Option<Vec<String>>,
    /// Lower-case origins; `None`: any; empty: the server's own origin only.
    origins: Option<Vec<String>>,
    scheme: &'static str,
}

/// A sigil server: settings and registered objects, ready to bind.
pub struct Server {
    settings: ServerSettings,
    registry: Registry,
}

impl Server {
    /// A server for these settings and objects.
    pub fn new(settings: ServerSettings, registry: Registry) -> Server {
        Server { settings, registry }
    }

    /// Binds `addr` (for example `127.0.0.1:7070`, or port 0 for any free
    /// port) and starts serving in the background.
    /// A registry with a bad or duplicate name is refused
    /// ([`SetupError::Registry`]), before anything listens.
    pub async fn bind(self, addr: &str) -> Result<RunningServer, SetupError> {
        self.registry.check()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| SetupError::Bind {
                addr: addr.to_owned(),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| SetupError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
        let s = self.settings;
        let tls = s.tls.clone();
        if !local_addr.ip().is_loopback() && tls.is_none() {
            warn!(
                "listening on {local_addr}, which is not a loopback address, without TLS: \
                 frames are signed but not encrypted; configure tls.cert and tls.key"
            );
        }
        let allow_any = matches!(s.auth, ClientAuth::AllowAny);
        let auth_keys = match &s.auth {
            ClientAuth::Keys(keys) => Some(keys.clone()),
            _ => None,
        };
        let authorized_keys_error = |e| SetupError::Config(format!("authorized_keys: {e}"));
        let mut keys = s.keys.into_iter();
        let first = keys
            .next()
            .ok_or_else(|| SetupError::Config("no server key".into()))?;
        let mut core = ServerConfig::new(first, s.auth).map_err(authorized_keys_error)?;
        for key in keys {
            core = core
                .with_additional_key(key)
                .map_err(authorized_keys_error)?;
        }
        let mut core = core.with_prologue(&s.prologue).with_limits(s.limits);
        if let Some(psk) = s.psk {
            core = core.with_psk(psk);
        }
        let limits = s.server_limits;
        // One frame, or a batch of frames (a batching session's messages).
        let max_ws = (s.limits.max_message_size as usize + FRAME_OVERHEAD).max(BATCH_LIMIT);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max_ws))
            .max_frame_size(Some(max_ws))
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BUFFER)
            .max_write_buffer_size(WRITE_BUFFER + max_ws + 1024);
        // Message 1 in the largest WebSocket frame header a client sends
        // (14 bytes), and room for a ping and a close.
        let preauth_budget =
            HELLO1_FIXED + s.limits.max_handshake_payload as usize + TAG_LEN + 14 + 512;
        let described = self.registry.describe();
        let objects_json =
            serde_json::to_string(&described).map_err(|e| SetupError::Config(e.to_string()))?;
        let public_keys = core.public_keys();
        let ops = s.operating;
        let metrics_listener = match &ops.metrics_addr {
            Some(addr) => Some(
                metrics::bind(addr)
                    .await
                    .map_err(|source| SetupError::Bind {
                        addr: addr.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let metrics = match metrics_listener {
            Some(_) => metrics::registered(&described),
            None => Metrics::default(),
        };
        let public_key = core.public_key();
        let server_key_json = Bytes::from(
            serde_json::json!({
                "public_key": public_key.to_string(),
                "fingerprint": public_key.fingerprint(),
            })
            .to_string(),
        );
        let sizes = Sizes {
            capacity: limits.replay_cache_capacity,
            max_clock_skew_ms: s.limits.max_clock_skew_ms,
            rate: limits.handshake_rate_per_key,
            timeout: limits.replay_store_timeout,
        };
        let replay = Replay::open(s.replay_store, &sizes, allow_any)?;
        info!("replay store: {}", replay.describe());
        if !ops.trusted_proxies.is_empty() && !replay.is_shared() {
            warn!(
                "behind a proxy with the in-memory replay store: if other instances serve this \
                 key behind it, a hello replayed to one of them is accepted; give them one \
                 replay_store (redis://…)"
            );
        }
        let http = HttpPolicy::new(
            addr,
            local_addr,
            tls.is_some(),
            s.allowed_hosts,
            s.allowed_origins,
        );
        let shared = Arc::new(Shared {
            clients: Clients::new(core, auth_keys, s.client_names, ops.revoked_sessions),
            registry: self.registry,
            objects_json,
            replay,
            hook: s.hook,
            limits,
            ws_config,
            preauth_budget,
            static_files: s.static_files,
            server_key_json,
            pending: Pending::new(limits.max_pending_handshakes, limits.max_pending_per_ip),
            sessions: Arc::new(Semaphore::new(limits.max_connections)),
            hello_rate: HelloRate::new(limits.handshake_rate_per_ip),
            logs: LogLimiter::default(),
            http,
            tls: tls.map(|t| Swap::new(t.config)),
            metrics,
            proxies: TrustedProxies::new(ops.trusted_proxies),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let tracker = Tracker::default();
        let task = tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            tracker.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(reload::watch_files(
            shared.clone(),
            ops.files.clone(),
            stop_rx.clone(),
        ));
        let metrics_addr = metrics_listener.map(|(listener, addr)| {
            tokio::spawn(metrics::serve(listener, shared.clone(), stop_rx));
            info!("serving metrics at http://{addr}/metrics");
            addr
        });
        info!("sigil server listening on {local_addr}");
        Ok(RunningServer {
            local_addr,
            public_keys,
            tls: s.tls.is_some(),
            stop: stop_tx,
            task,
            tracker,
            shared,
            files: ops.files,
            metrics_addr,
        })
    }
}

/// A server that is serving. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
pub struct RunningServer {
    local_addr: SocketAddr,
    /// Never empty: the advertised key first.
    public_keys: Vec<PublicKey>,
    tls: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    tracker: Tracker,
    shared: Arc<Shared>,
    files: ReloadFiles,
    metrics_addr: Option<SocketAddr>,
}

impl RunningServer {
    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's public key, for clients to pin: the first of its keys.
    pub fn public_key(&self) -> PublicKey {
        self.public_keys[0]
    }

    /// Every public key the server answers to, the advertised one first
    /// (more than one while it rotates keys).
    pub fn public_keys(&self) -> &[PublicKey] {
        &self.public_keys
    }

    /// The URL of the endpoint: `ws://HOST:PORT/sigil` (`wss://` under TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{ENDPOINT}", self.local_addr)
    }

    /// Connections being served now: sessions and pending connections.
    pub fn connection_count(&self) -> usize {
        self.tracker.count()
    }

    /// Where metrics are served (`http://ADDR/metrics`), if they are.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Rereads the files the settings came from
    /// ([`ServerSettings::from_config`]): `authorized_keys`, and the TLS
    /// certificate, key and client CA. What fails to load is kept as it
    /// was, and the log says why; see [`Reloaded`]. Handshakes from now on
    /// see the new keys; open sessions of removed keys are closed (or kept,
    /// under `revoked_sessions = "keep"`). The server also reloads a file
    /// by itself a second or two after it changes.
    pub async fn reload(&self) -> Reloaded {
        let (shared, files) = (self.shared.clone(), self.files.clone());
        tokio::task::spawn_blocking(move || reload::reload(&shared, &files, Trigger::Request))
            .await
            .unwrap_or(Reloaded {
                authorized_keys: None,
                tls: None,
            })
    }

    /// Makes `keys` the authorized client keys, as a reload of
    /// authorized_keys would (with the same effect on open sessions).
    /// Refused under `allow_any_client`.
    pub async fn set_authorized_keys(
        &self,
        keys: Vec<AuthorizedKey>,
    ) -> Result<KeyChanges, ReloadError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || reload::set_keys(&shared, keys))
            .await
            .unwrap_or(Err(ReloadError::AnyClient))
    }

    /// Stops accepting, closes every connection (a WebSocket close to each
    /// session), and waits for them to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        self.tracker.wait_idle().await;
        info!("sigil server on {} stopped", self.local_addr);
    }
}

/// The answer to a connection over a pending limit, on plain TCP.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Length: 39\r\n\
Connection: close\r\n\
\r\n\
busy: too many pending connections now\n";

/// 503 answers being written at once; past it, over-limit connections are
/// just closed.
const MAX_BUSY_RESPONDERS: usize = 64;

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: Tracker,
    mut stop: watch::Receiver<bool>,
) {
    let responders = Tracker::default();
    let mut flush = tokio::time::interval(logs::INTERVAL);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            _ = flush.tick() => {
                shared.logs.flush();
                continue;
            }
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    shared.logs.event("failed accepts", Level::Warn, || format!("accept failed: {e}"));
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let tls = shared
            .tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.load()));
        // A trusted proxy's connections count per address once its
        // request names the client (see `route`).
        let proxied = shared.proxies.trusts(peer.ip());
        let pending = match shared.pending.try_enter(peer.ip(), proxied) {
            Ok(p) => p,
            Err(over) => {
                let (kind, limit) = over_limit(over, &shared);
                shared.logs.event(kind, Level::Warn, || {
                    format!("{limit} reached: answering {peer} with 503 and closing")
                });
                if tls.is_none() && responders.count() < MAX_BUSY_RESPONDERS {
                    let guard = responders.track();
                    tokio::spawn(async move {
                        answer_busy(tcp).await;
                        drop(guard);
                    });
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + shared.limits.handshake_timeout;
        let conn = Conn {
            shared: shared.clone(),
            peer,
            deadline,
            stop: stop.clone(),
            pending,
            tracked: tracker.track(),
            batching: false,
        };
        tokio::spawn(async move {
            match tls {
                None => conn.serve_http(tcp, None).await,
                Some(acceptor) => {
                    let limit = conn
                        .deadline
                        .min(Instant::now() + conn.shared.limits.write_timeout);
                    match timeout_at(limit, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let cert = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| PeerCertificate::from_der(c));
                            conn.serve_http(stream, cert).await;
                        }
                        Ok(Err(e)) => {
                            conn.shared
                                .logs
                                .event("failed TLS handshakes", Level::Info, || {
                                    format!("TLS handshake with {peer} failed: {e}")
                                })
                        }
                        Err(_) => {
                            conn.shared
                                .logs
                                .event("timed-out TLS handshakes", Level::Info, || {
                                    format!("TLS handshake with {peer} timed out")
                                })
                        }
                    }
                }
            }
        });
    }
}

/// Writes the 503 answer (bounded in time), then reads and drops what the
/// peer sent (so that closing does not reset the answer away), for at
/// most a second.
async fn answer_busy(mut tcp: TcpStream) {
    let second = std::time::Duration::from_secs(1);
    if matches!(
        timeout(second, tcp.write_all(BUSY_RESPONSE)).await,
        Ok(Ok(()))
    ) {
        let _ = tcp.shutdown().await;
        let drain = async {
            let mut buf = [0u8; 1024];
            let mut left: usize = 16 * 1024;
            while left > 0 {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = timeout(second, drain).await;
    }
}

/// One accepted connection before it becomes a sigil session.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) peer: SocketAddr,
    pub(crate) deadline: Instant,
    pub(crate) stop: watch::Receiver<bool>,
    /// Its place among the pending connections, until it is a session.
    pub(crate) pending: PendingPermit,
    /// Counted until the connection ends.
    pub(crate) tracked: Tracked,
    /// Whether the client chose batching (subprotocol `sigil.v1.batch`).
    pub(crate) batching: bool,
}

impl Conn {
    async fn serve_http<S>(self, io: S, cert: Option<PeerCertificate>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let deadline = self.deadline;
        let mut stop = self.stop.clone();
        let shared = self.shared.clone();
        let state = Arc::new(Mutex::new(Some((self, cert))));
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            let shared = shared.clone();
            async move { Ok::<_, Infallible>(route(req, &shared, peer, &state)) }
        });
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            // The HTTP request before the upgrade: hyper's read buffer
            // starts at 8 KiB and may grow to this for long headers, then
            // the request is refused. It is freed when the connection
            // upgrades (the session reads through its own 4 KiB buffer).
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        // An upgraded connection lives on in its own task; this one ends at
        // the deadline, or when the server stops.
        tokio::select! {
            done = timeout_at(deadline, http) => match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => debug!("HTTP connection from {peer}: {e}"),
                Err(_) => debug!("connection from {peer} did not upgrade before the handshake timeout"),
            },
            _ = stop.changed() => {}
        }
    }
}

type ConnState = Mutex<Option<(Conn, Option<PeerCertificate>)>>;

fn route(
    mut req: Request<Incoming>,
    shared: &Arc<Shared>,
    peer: SocketAddr,
    state: &Arc<ConnState>,
) -> Response<Full<Bytes>> {
    if let Err(why) = shared.http.check(&req) {
        shared.logs.event("refused HTTP requests", Level::Warn, || {
            format!("refused a request from {peer} with 403: {why}")
        });
        return plain(
            StatusCode::FORBIDDEN,
            "forbidden: host or origin not allowed\n",
        );
    }
    if req.uri().path() != ENDPOINT {
        return static_file(&req, shared);
    }
    let (key, batching) = match check_upgrade(&req) {
        Ok(checked) => checked,
        Err(resp) => return resp,
    };
    let client = match shared.proxies.client_addr(peer, req.headers()) {
        Ok(client) => client,
        Err(e) => {
            shared
                .logs
                .event("bad X-Forwarded-For headers", Level::Warn, || {
                    format!("refused a request from the trusted proxy {peer} with 400: {e}")
                });
            return plain(StatusCode::BAD_REQUEST, "bad X-Forwarded-For\n");
        }
    };
    // One upgrade per connection: the state moves into the session task.
    let Some((mut conn, cert)) = state.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return plain(StatusCode::BAD_REQUEST, "one WebSocket per connection\n");
    };
    if client != peer {
        if let Err(over) = conn.pending.move_to(client.ip()) {
            let (kind, limit) = over_limit(over, shared);
            shared.logs.event(kind, Level::Warn, || {
                format!("{limit} reached: answering {client} (via {peer}) with 503")
            });
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: too many pending connections now\n",
            );
        }
        debug!("connection from {client} via the proxy {peer}");
        conn.peer = client;
    }
    conn.batching = batching;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match timeout_at(conn.deadline, upgrade).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => return debug!("upgrade from {} failed: {e}", conn.peer),
            Err(_) => return debug!("upgrade from {} timed out", conn.peer),
        };
        let budget = ReadBudget::new(conn.shared.preauth_budget);
        let io = Budgeted::new(TokioIo::new(upgraded), budget.clone())
            .counted(conn.shared.metrics.clone());
        let ws =
            WebSocketStream::from_raw_socket(io, Role::Server, Some(conn.shared.ws_config)).await;
        connection::run(ws, conn, cert, budget).await;
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(if batching {
            SUBPROTOCOL_BATCH
        } else {
            SUBPROTOCOL
        }),
    );
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

impl HttpPolicy {
    /// The policy for a server bound to `addr` (as given) at `local`.
    fn new(
        addr: &str,
        local: SocketAddr,
        tls: bool,
        hosts: Option<Vec<String>>,
        origins: Option<Vec<String>>,
    ) -> HttpPolicy {
        let lower = |v: Vec<String>| -> Option<Vec<String>> {
            (!v.iter().any(|h| h == "*"))
                .then(|| v.iter().map(|h| h.to_ascii_lowercase()).collect())
        };
        let hosts = match hosts {
            Some(h) => lower(h),
            None if local.ip().is_unspecified() => {
                warn!(
                    "listening on {local}, an unspecified address: any Host header is accepted; \
                     set allowed_hosts to the names clients use, to stop DNS rebinding"
                );
                None
            }
            None => {
                let mut h = vec![host_of(&local.to_string()).to_owned()];
                let given = host_of(addr);
                if !given.is_empty() {
                    h.push(given.to_ascii_lowercase());
                }
                if local.ip().is_loopback() {
                    h.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
                }
                h.sort();
                h.dedup();
                Some(h)
            }
        };
        let origins = match origins {
            Some(o) => lower(
                o.into_iter()
                    .map(|o| o.trim_end_matches('/').to_owned())
                    .collect(),
            ),
            None => Some(Vec::new()),
        };
        HttpPolicy {
            hosts,
            origins,
            scheme: if tls { "https" } else { "http" },
        }
    }

    /// Checks `Host` (every request) and `Origin` (when there is one).
    fn check(&self, req: &Request<Incoming>) -> Result<(), String> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(|| String::from("no Host header"))?;
        if let Some(allowed) = &self.hosts {
            let name = host_of(host).to_ascii_lowercase();
            if !allowed.contains(&name) {
                return Err(format!("Host {host:?} is not in allowed_hosts"));
            }
        }
        let Some(origin) = req.headers().get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .map_err(|_| String::from("an Origin header that is not text"))?;
        let ok = match &self.origins {
            None => true,
            Some(list) if list.is_empty() => {
                let own = format!("{}://{host}", self.scheme);
                origin.eq_ignore_ascii_case(&own)
            }
            Some(list) => list.iter().any(|o| origin.eq_ignore_ascii_case(o)),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("Origin {origin:?} is not allowed"))
        }
    }
}

/// The host part of `host[:port]` or `[v6][:port]`, brackets kept.
fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host
        }
        _ => authority,
    }
}

/// The log kind and the config key of a pending limit, counted.
fn over_limit(over: OverLimit, shared: &Shared) -> (&'static str, &'static str) {
    let (kind, limit, metric) = match over {
        OverLimit::Total => (
            "connections over max_pending_handshakes",
            "max_pending_handshakes",
            Limit::MaxPendingHandshakes,
        ),
        OverLimit::PerAddress => (
            "connections over max_pending_per_ip",
            "max_pending_per_ip",
            Limit::MaxPendingPerIp,
        ),
    };
    shared.metrics.limit(metric);
    (kind, limit)
}

/// Checks a WebSocket upgrade request for the sigil endpoint; returns its
/// key and whether the client offers batching, or the response that
/// refuses it (built once per bad request, so its size does not matter).
#[allow(clippy::result_large_err)]
fn check_upgrade(req: &Request<Incoming>) -> Result<(String, bool), Response<Full<Bytes>>> {
    let h = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if req.method() != Method::GET
        || !has_token(header::UPGRADE, "websocket")
        || !has_token(header::CONNECTION, "upgrade")
    {
        return Err(plain(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks sigil/1 over WebSocket (subprotocol sigil.v1)\n",
        ));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "unsupported WebSocket version\n",
        ));
    }
    let batching = has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL_BATCH);
    if !batching && !has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol sigil.v1 is required\n",
        ));
    }
    h.get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(|k| (k.to_owned(), batching))
        .ok_or_else(|| plain(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n"))
}

/// Serves a static file (GET and HEAD only) with headers that keep the page
/// to its own origin.
fn static_file(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    let Some(files) = &shared.static_files else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    let path = req.uri().path();
    let (content_type, body) = if path == "/server-key" {
        ("application/json", shared.server_key_json.clone())
    } else {
        match files.get(path) {
            Some((t, b)) => (*t, b.clone()),
            None => return plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    };
    let body = if req.method() == Method::HEAD {
        Bytes::new()
    } else {
        body
    };
    let mut resp = Response::new(Full::new(body));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // One request per connection: a connection counts as pending until it
    // closes, and a page's keep-alive connections would otherwise hold the
    // address's pending places (max_pending_per_ip) for the whole
    // handshake timeout.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' ws: wss:; \
             img-src 'self' data:; style-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// A short text answer that ends the connection (see `static_file`).
fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
