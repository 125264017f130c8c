//! Opening a connection: the WebSocket upgrade, then the sigil/1 handshake.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use sigil_core::handshake::{
    ClientConfig, ClientHandshake, HELLO2_FIXED, HandshakeError, Limits, MAX_REASON_LEN,
    RefusalCode, TAG_LEN,
};
use sigil_core::transport::{FRAME_OVERHEAD, Session};
use sigil_core::{OsRandom, PublicKey, SecretKey, SymmetricKey};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::error::{ClientError, ConnectError};
use crate::tls::default_tls_config;

/// The WebSocket subprotocol of sigil/1 (this client does not offer
/// batching, `sigil.v1.batch`: its writes already share system calls, and
/// a native WebSocket message costs little; see [`sigil_core::batch`]).
pub const SUBPROTOCOL: &str = sigil_core::batch::SUBPROTOCOL;

/// The WebSocket read buffer: the most read from the socket at once, and
/// what is zero-filled before each read (tungstenite's `read_in` resizes
/// the buffer to it), so it is sized for responses, not bulk transfer:
/// a response of a few KiB comes in one read, a larger one in reads of
/// 16 KiB. tungstenite's default, 128 KiB, zero-filled 128 KiB for every
/// response read, more than the rest of a small call cost.
const READ_BUFFER: usize = 16 * 1024;

/// Requests are written to the socket once this many bytes wait, or when
/// the connection task flushes (once per batch of calls). tungstenite's
/// write buffer is not allocated ahead: it grows to the largest batch
/// written, so this bounds it only when a batch is larger.
const WRITE_BUFFER: usize = 64 * 1024;

/// Time allowed for a closing handshake before the socket is dropped.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and how to connect (the parts of the options besides the keys).
struct Target<'a> {
    url: &'a str,
    tls: Option<&'a Arc<rustls::ClientConfig>>,
    payload: Option<&'a str>,
    limits: Limits,
}

/// A connection whose handshake has completed.
pub(crate) struct Established {
    pub(crate) ws: Ws,
    pub(crate) session: Session,
    pub(crate) server_payload: Option<String>,
}

/// The keys of a handshake: ours, and the server's as pinned (several while
/// the server rotates its key), with the psk and prologue both sides bind in.
struct Keys<'a> {
    secret: &'a SecretKey,
    server_keys: &'a [PublicKey],
    psk: Option<&'a SymmetricKey>,
    prologue: &'a [u8],
}

/// Everything a connection is made from, kept to make it again.
pub(crate) struct Dialer {
    pub(crate) url: String,
    pub(crate) secret: SecretKey,
    pub(crate) server_keys: Vec<PublicKey>,
    pub(crate) psk: Option<SymmetricKey>,
    pub(crate) prologue: Vec<u8>,
    pub(crate) payload: Option<String>,
    pub(crate) limits: Limits,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) handshake_timeout: Duration,
}

impl Dialer {
    /// A new connection and handshake, within the handshake timeout.
    pub(crate) async fn dial(&self) -> Result<Established, ClientError> {
        let keys = Keys {
            secret: &self.secret,
            server_keys: &self.server_keys,
            psk: self.psk.as_ref(),
            prologue: &self.prologue,
        };
        let target = Target {
            url: &self.url,
            tls: self.tls.as_ref(),
            payload: self.payload.as_deref(),
            limits: self.limits,
        };
        tokio::time::timeout(self.handshake_timeout, establish_pinned(&target, &keys))
            .await
            .map_err(|_| ClientError::Timeout)?
    }
}

/// [`establish`] with each pinned server key in turn, moving on to the next
/// only when the server refuses the handshake as failed (code 1), as it does
/// a hello made for a key it does not hold. Each key's handshake
/// configuration (and its static-static X25519) is made only when tried, so
/// a client whose first key is the server's pays for one.
async fn establish_pinned(
    target: &Target<'_>,
    keys: &Keys<'_>,
) -> Result<Established, ClientError> {
    let mut last = None;
    for server_key in keys.server_keys {
        let secret = SecretKey::from_bytes(&keys.secret.dangerous_to_bytes());
        let mut config = ClientConfig::new(secret, *server_key)
            .map_err(handshake_error)?
            .with_limits(target.limits)
            .with_prologue(keys.prologue);
        if let Some(psk) = keys.psk {
            config = config.with_psk(psk.clone());
        }
        match establish(target, &config).await {
            Err(
                e @ ClientError::Refused {
                    code: RefusalCode::HandshakeFailed,
                    ..
                },
            ) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| ClientError::Config("no server key is pinned".into())))
}

/// Connects to `url`, upgrades to WebSocket with the subprotocol
/// `sigil.v1`, and runs the handshake. The caller applies the timeout.
async fn establish(target: &Target<'_>, config: &ClientConfig) -> Result<Established, ClientError> {
    let url = target.url;
    let mut request = url
        .into_client_request()
        .map_err(|e| ClientError::Config(format!("invalid server URL `{url}`: {e}")))?;
    let tls = match request.uri().scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => {
            return Err(ClientError::Config(format!(
                "invalid server URL `{url}`: it must start with ws:// or wss://"
            )));
        }
    };
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let connector = if tls {
        Connector::Rustls(match target.tls {
            Some(config) => config.clone(),
            None => default_tls_config()?,
        })
    } else {
        Connector::Plain
    };
    let max = max_ws_message(target.limits);
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let (mut ws, response) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(ws_config),
        true,
        Some(connector),
    )
    .await
    .map_err(|e| ClientError::Connect {
        url: url.to_owned(),
        cause: connect_error(e, tls),
    })?;
    // tungstenite checks this too; the protocol requires it, so say it here.
    if response.headers().get(SEC_WEBSOCKET_PROTOCOL)
        != Some(&HeaderValue::from_static(SUBPROTOCOL))
    {
        close_in_background(ws, CloseCode::Protocol);
        return Err(ClientError::Connect {
            url: url.to_owned(),
            cause: ConnectError::NoSubprotocol,
        });
    }

    let (handshake, hello) =
        ClientHandshake::start(config, &mut OsRandom, now_ms(), target.payload)
            .map_err(handshake_error)?;
    ws.send(Message::binary(hello))
        .await
        .map_err(|e| ClientError::connection(describe(&e)))?;
    let answer = loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => break bytes,
            Some(Ok(Message::Text(_))) => {
                close_in_background(ws, CloseCode::Protocol);
                return Err(ClientError::connection(
                    "the server sent a text message during the handshake (protocol error)",
                ));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(ClientError::connection(
                    "the server closed the connection during the handshake",
                ));
            }
            Some(Ok(_)) => {} // ping and pong: tungstenite answers them
            Some(Err(e)) => return Err(ClientError::connection(describe(&e))),
        }
    };
    match handshake.finish(&answer) {
        Ok((session, server_payload)) => Ok(Established {
            ws,
            session,
            server_payload,
        }),
        Err(e) => {
            let code = match e {
                HandshakeError::Refused(_) => CloseCode::Normal,
                _ => CloseCode::Protocol,
            };
            close_in_background(ws, code);
            Err(handshake_error(e))
        }
    }
}

/// The WebSocket layer's largest message: the largest valid protocol message
/// in either phase (a frame, message 2 or a refusal).
fn max_ws_message(limits: Limits) -> usize {
    let frame = FRAME_OVERHEAD + limits.max_message_size as usize;
    let hello = HELLO2_FIXED + TAG_LEN + limits.max_handshake_payload as usize;
    let refusal = 8 + MAX_REASON_LEN;
    frame.max(hello).max(refusal)
}

/// Milliseconds since the Unix epoch (0 for a clock set before it).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Why connecting failed, from tungstenite's error (`tls`: a `wss://` URL).
fn connect_error(e: tungstenite::Error, tls: bool) -> ConnectError {
    use tungstenite::Error;
    match e {
        Error::Http(response) => ConnectError::UpgradeRefused {
            status: response.status().as_u16(),
            retry_after_s: response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        },
        Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            ConnectError::NoSubprotocol
        }
        Error::Tls(tungstenite::error::TlsError::Rustls(e)) => tls_error(&e),
        Error::Tls(e) => ConnectError::Tls(e.to_string()),
        Error::Io(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(e) => tls_error(e),
            None if tls && e.kind() == std::io::ErrorKind::UnexpectedEof => ConnectError::NotTls,
            None => ConnectError::Tcp(e),
        },
        other => ConnectError::Protocol(describe(&other)),
    }
}

/// Why TLS failed, from rustls' error.
fn tls_error(e: &rustls::Error) -> ConnectError {
    use rustls::AlertDescription as Alert;
    match e {
        // A plain server answers the ClientHello with HTTP text (or closes
        // on it).
        rustls::Error::InvalidMessage(_) => ConnectError::NotTls,
        // Alerts about certificates come from the server about ours: its
        // own are checked here, and refused with a local error.
        rustls::Error::AlertReceived(Alert::CertificateRequired) => {
            ConnectError::ClientCertificateRequired
        }
        rustls::Error::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateExpired
            | Alert::CertificateRevoked
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate,
        ) => ConnectError::ClientCertificateRefused(e.to_string()),
        other => ConnectError::Tls(other.to_string()),
    }
}

pub(crate) fn handshake_error(e: HandshakeError) -> ClientError {
    match e {
        HandshakeError::Refused(refusal) => ClientError::Refused {
            code: refusal.code(),
            reason: refusal.reason().to_owned(),
        },
        HandshakeError::Failed => ClientError::Handshake,
        HandshakeError::PayloadTooLarge { .. } | HandshakeError::InvalidPayload => {
            ClientError::Config(format!("handshake payload: {e}"))
        }
        HandshakeError::Key(e) => ClientError::Config(format!("server public key: {e}")),
        HandshakeError::Random(e) => ClientError::Io(std::io::Error::other(e)),
        other => ClientError::Config(other.to_string()),
    }
}

/// One line about a WebSocket failure.
pub(crate) fn describe(e: &tungstenite::Error) -> String {
    use tungstenite::Error;
    match e {
        Error::Http(response) => ConnectError::UpgradeRefused {
            status: response.status().as_u16(),
            retry_after_s: None,
        }
        .to_string(),
        Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(_)) => {
            ConnectError::NoSubprotocol.to_string()
        }
        Error::Capacity(e) => format!("a message from the server is over the size limit ({e})"),
        Error::Tls(e) => format!("TLS: {e}"),
        Error::Io(e) => e.to_string(),
        Error::ConnectionClosed | Error::AlreadyClosed => "the connection is closed".to_owned(),
        other => other.to_string(),
    }
}

/// Closes `ws` with `code` without waiting for it (bounded by [`CLOSE_TIMEOUT`]).
fn close_in_background(mut ws: Ws, code: CloseCode) {
    tokio::spawn(async move {
        let frame = CloseFrame {
            code,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close(Some(frame))).await;
    });
}
