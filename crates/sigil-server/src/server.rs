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
use sigil_core::handshake::ServerConfig;
use sigil_core::keys::PublicKey;
use sigil_core::replay::ReplayCache;
use sigil_core::transport::FRAME_OVERHEAD;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::{debug, info, warn};

use crate::connection;
use crate::registry::Registry;
use crate::settings::{Hook, ServerLimits, ServerSettings, SetupError};
use crate::static_files::StaticFiles;
use crate::tls::PeerCertificate;

/// The WebSocket endpoint.
pub const ENDPOINT: &str = "/sigil";
/// The WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "sigil.v1";

/// What every connection of one server shares. Nothing here is locked on the
/// hot path: the replay cache is locked once per handshake.
pub(crate) struct Shared {
    pub(crate) core: ServerConfig,
    pub(crate) registry: Registry,
    pub(crate) objects_json: String,
    pub(crate) replay: Mutex<ReplayCache>,
    pub(crate) hook: Option<Hook>,
    pub(crate) limits: ServerLimits,
    pub(crate) ws_config: WebSocketConfig,
    pub(crate) static_files: Option<StaticFiles>,
    /// `{"public_key": …, "fingerprint": …}`, served at `/server-key` with the static files.
    pub(crate) server_key_json: Bytes,
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
    pub async fn bind(self, addr: &str) -> Result<RunningServer, SetupError> {
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
        let mut core = ServerConfig::new(s.key, s.auth)
            .map_err(|e| SetupError::Config(format!("authorized_keys: {e}")))?
            .with_prologue(&s.prologue)
            .with_limits(s.limits);
        if let Some(psk) = s.psk {
            core = core.with_psk(psk);
        }
        let max_ws = s.limits.max_message_size as usize + FRAME_OVERHEAD;
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max_ws))
            .max_frame_size(Some(max_ws));
        let objects_json = serde_json::to_string(&self.registry.describe())
            .map_err(|e| SetupError::Config(e.to_string()))?;
        let public_key = core.public_key();
        let server_key_json = Bytes::from(
            serde_json::json!({
                "public_key": public_key.to_string(),
                "fingerprint": public_key.fingerprint(),
            })
            .to_string(),
        );
        let shared = Arc::new(Shared {
            core,
            registry: self.registry,
            objects_json,
            replay: Mutex::new(ReplayCache::new(
                s.server_limits.replay_cache_capacity,
                s.limits.max_clock_skew_ms,
            )),
            hook: s.hook,
            limits: s.server_limits,
            ws_config,
            static_files: s.static_files,
            server_key_json,
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = Arc::new(Semaphore::new(s.server_limits.max_connections));
        let tls_acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
        let task = tokio::spawn(accept_loop(
            listener,
            shared,
            connections.clone(),
            tls_acceptor,
            stop_rx,
        ));
        info!("sigil server listening on {local_addr}");
        Ok(RunningServer {
            local_addr,
            public_key,
            tls: s.tls.is_some(),
            stop: stop_tx,
            task,
            connections,
            max_connections: s.server_limits.max_connections,
        })
    }
}

/// A server that is serving. Dropping it does not stop it; call
/// [`shutdown`](Self::shutdown).
pub struct RunningServer {
    local_addr: SocketAddr,
    public_key: PublicKey,
    tls: bool,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl RunningServer {
    /// The address it listens on (with the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server's public key, for clients to pin.
    pub fn public_key(&self) -> PublicKey {
        self.public_key
    }

    /// The URL of the endpoint: `ws://HOST:PORT/sigil` (`wss://` under TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}{ENDPOINT}", self.local_addr)
    }

    /// Connections being served now.
    pub fn connection_count(&self) -> usize {
        self.max_connections - self.connections.available_permits()
    }

    /// Stops accepting, closes every connection (a WebSocket close to each
    /// session), and waits for them to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        // Every connection holds one permit until its task has ended.
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        let _ = self.connections.acquire_many(all).await;
        info!("sigil server on {} stopped", self.local_addr);
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<Semaphore>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            warn!("max_connections reached: closing the connection from {peer}");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + shared.limits.handshake_timeout;
        let conn = Conn {
            shared: shared.clone(),
            peer,
            deadline,
            stop: stop.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.serve_http(tcp, None, permit).await,
                Some(acceptor) => match timeout_at(deadline, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .and_then(|c| PeerCertificate::from_der(c));
                        conn.serve_http(stream, cert, permit).await;
                    }
                    Ok(Err(e)) => info!("TLS handshake with {peer} failed: {e}"),
                    Err(_) => info!("TLS handshake with {peer} timed out"),
                },
            }
        });
    }
}

/// One accepted connection before it becomes a sigil session.
struct Conn {
    shared: Arc<Shared>,
    peer: SocketAddr,
    deadline: Instant,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn serve_http<S>(self, io: S, cert: Option<PeerCertificate>, permit: OwnedSemaphorePermit)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let deadline = self.deadline;
        let state = Arc::new(Mutex::new(Some((self, cert, permit))));
        let service = service_fn(move |req: Request<Incoming>| {
            let state = state.clone();
            async move { Ok::<_, Infallible>(route(req, &state)) }
        });
        let http = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(Some(deadline.saturating_duration_since(Instant::now())))
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        match timeout_at(deadline, http).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => debug!("HTTP connection from {peer}: {e}"),
            Err(_) => info!("connection from {peer} did not upgrade before the handshake timeout"),
        }
    }
}

type ConnState = Mutex<Option<(Conn, Option<PeerCertificate>, OwnedSemaphorePermit)>>;

fn route(mut req: Request<Incoming>, state: &Arc<ConnState>) -> Response<Full<Bytes>> {
    if req.uri().path() != ENDPOINT {
        let shared = state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(conn, _, _)| conn.shared.clone());
        return match shared {
            Some(shared) => static_file(&req, &shared),
            None => plain(StatusCode::BAD_REQUEST, "one WebSocket per connection\n"),
        };
    }
    let key = match check_upgrade(&req) {
        Ok(key) => key,
        Err(resp) => return resp,
    };
    // One upgrade per connection: the state moves into the session task.
    let Some((conn, cert, permit)) = state.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return plain(StatusCode::BAD_REQUEST, "one WebSocket per connection\n");
    };
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _permit = permit;
        let upgraded = match timeout_at(conn.deadline, upgrade).await {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => return debug!("upgrade from {} failed: {e}", conn.peer),
            Err(_) => return info!("upgrade from {} timed out", conn.peer),
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(conn.shared.ws_config),
        )
        .await;
        connection::run(ws, conn.shared, conn.peer, cert, conn.deadline, conn.stop).await;
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Checks a WebSocket upgrade request for the sigil endpoint; returns its
/// key, or the response that refuses it (built once per bad request, so its
/// size does not matter).
#[allow(clippy::result_large_err)]
fn check_upgrade(req: &Request<Incoming>) -> Result<String, Response<Full<Bytes>>> {
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
    if !has_token(header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return Err(plain(
            StatusCode::BAD_REQUEST,
            "the WebSocket subprotocol sigil.v1 is required\n",
        ));
    }
    h.get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| k.to_str().ok())
        .map(str::to_owned)
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

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
