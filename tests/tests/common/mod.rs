//! Shared helpers: real servers on 127.0.0.1 port 0, clients, and a raw
//! client built from sigil-core alone for the adversarial tests.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test files, each using a part

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::{ClientAuth, ClientConfig, ClientHandshake, HandshakeError};
use sigil_core::keys::{PublicKey, SecretKey};
use sigil_core::rand::OsRandom;
use sigil_core::transport::Session;
use sigil_server::{Registry, RunningServer, Server, ServerSettings, demo};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub fn key() -> SecretKey {
    SecretKey::generate(&mut OsRandom).unwrap()
}

/// A second copy of a secret key (for tests that connect twice with one key).
pub fn copy_key(k: &SecretKey) -> SecretKey {
    SecretKey::from_bytes(&k.dangerous_to_bytes())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The demo objects.
pub fn demo_registry() -> Registry {
    let mut r = Registry::new();
    demo::register(&mut r);
    r
}

/// A server with the demo objects, authorising `clients`, on 127.0.0.1:0.
pub async fn demo_server(clients: &[PublicKey]) -> RunningServer {
    let settings = ServerSettings::new(key(), ClientAuth::Keys(clients.to_vec()));
    start(settings, demo_registry()).await
}

pub async fn start(settings: ServerSettings, registry: Registry) -> RunningServer {
    Server::new(settings, registry)
        .bind("127.0.0.1:0")
        .await
        .unwrap()
}

pub async fn connect(server: &RunningServer, secret: SecretKey) -> Client {
    Client::connect(
        &server.url(),
        ClientOptions::new(secret, server.public_key()),
    )
    .await
    .unwrap()
}

/// The handshake config of a client with `secret` that pins `server_key`.
pub fn config_for(server_key: PublicKey, secret: &SecretKey) -> ClientConfig {
    ClientConfig::new(copy_key(secret), server_key).unwrap()
}

/// A client made of sigil-core and a bare WebSocket: it can send anything.
pub struct RawClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    pub async fn open(url: &str) -> RawClient {
        RawClient::offering(url, "sigil.v1", "sigil.v1").await
    }

    /// A client that offers the subprotocols `offer` (a header value) and
    /// checks that the server selected `expected`.
    pub async fn offering(url: &str, offer: &str, expected: &str) -> RawClient {
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
        let (ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(resp.headers()["sec-websocket-protocol"], expected);
        RawClient { ws }
    }

    pub async fn send(&mut self, bytes: Vec<u8>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// The next binary message, or `None` when the server closed.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let next = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    _ => return None,
                }
            }
        });
        next.await.expect("the server answered within 10 s")
    }

    /// Runs a handshake; returns message 1 (for replays) and the session.
    pub async fn handshake(
        &mut self,
        config: &ClientConfig,
    ) -> (Vec<u8>, Result<Session, HandshakeError>) {
        let (hs, msg1) = ClientHandshake::start(config, &mut OsRandom, now_ms(), None).unwrap();
        self.send(msg1.clone()).await;
        let answer = self.recv().await.expect("an answer to message 1");
        (msg1, hs.finish(&answer).map(|(s, _)| s))
    }

    /// With batching: sets the demo `kv` key `k` to a 65 KB value, then
    /// sends one batch of 160 `kv.get("k")` (ids 2 to 161): 10 MB of
    /// answers to one 16 KiB message, more than the sockets hold.
    pub async fn send_large_get_batch(&mut self, session: &mut Session) {
        let mut seal = |payload: String| {
            let mut frame = Vec::new();
            session.seal(payload.as_bytes(), &mut frame).unwrap();
            frame
        };
        let value = "v".repeat(65_000);
        let set = format!(r#"{{"id":1,"object":"kv","method":"set","args":["k","{value}"]}}"#);
        self.send(seal(set)).await;
        let mut batch = sigil_core::batch::Batch::new();
        for id in 2..162 {
            let get = format!(r#"{{"id":{id},"object":"kv","method":"get","args":["k"]}}"#);
            assert!(batch.push(seal(get)).is_none(), "one batch");
        }
        self.send(batch.take().unwrap()).await;
    }

    /// Seals and sends a request payload.
    pub async fn call(&mut self, session: &mut Session, payload: &[u8]) -> Option<Vec<u8>> {
        let mut frame = Vec::new();
        session.seal(payload, &mut frame).unwrap();
        self.send(frame).await;
        let reply = self.recv().await?;
        Some(session.open(&reply).unwrap().to_vec())
    }
}

/// `GET path` from a server's metrics endpoint: status and body.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .expect("an answer")
        .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, body.to_owned())
}

/// The value of one series (`name{labels}`) in a scrape; 0 if absent.
pub fn value(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}
