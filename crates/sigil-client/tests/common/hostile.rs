//! A hostile sigil/1 server, for the transport faults the real server never
//! commits. The test drives it one step at a time: it accepts a connection,
//! runs the core's handshake (`accept_hello`), then hands the test each
//! request and sends whatever the test crafts. It knows no methods and
//! answers nothing by itself.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt as _, StreamExt as _};
use sigil_client::{Client, ClientOptions, Limits};
use sigil_core::OsRandom;
use sigil_core::handshake::{ClientAuth, ServerConfig, accept_hello};
use sigil_core::replay::ReplayCache;
use sigil_core::rpc::parse_request;
use sigil_core::transport::{FrameOpener, FrameSealer};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;

use super::{Keys, fresh_key, within};

pub type Ws = WebSocketStream<TcpStream>;

pub struct Hostile {
    listener: TcpListener,
    config: ServerConfig,
    pub addr: SocketAddr,
    pub keys: Keys,
}

impl Hostile {
    pub async fn start() -> Hostile {
        let (server, client) = (fresh_key(), fresh_key());
        let auth = ClientAuth::Keys(vec![client.public_key()]);
        let keys = Keys {
            server_key: server.public_key(),
            client,
        };
        let config = ServerConfig::new(server, auth).expect("server config");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        Hostile {
            listener,
            config,
            addr,
            keys,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/sigil", self.addr)
    }

    pub fn options(&self) -> ClientOptions {
        self.keys.options()
    }

    /// The next connection, upgraded to WebSocket with `subprotocol` in the
    /// answer (none if `None`, whatever the client offers).
    pub async fn upgrade(&self, subprotocol: Option<&'static str>) -> Ws {
        let (tcp, _) = within("a connection", self.listener.accept())
            .await
            .expect("accept");
        #[allow(clippy::result_large_err)] // tungstenite's error type
        let answer = move |request: &Request, mut response: Response| {
            let offered = request
                .headers()
                .get(SEC_WEBSOCKET_PROTOCOL)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|p| p.trim() == "sigil.v1"));
            assert!(offered, "the client must offer sigil.v1");
            if let Some(p) = subprotocol {
                let p = HeaderValue::from_static(p);
                response.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, p);
            }
            Ok::<_, ErrorResponse>(response)
        };
        within(
            "the upgrade",
            tokio_tungstenite::accept_hdr_async(tcp, answer),
        )
        .await
        .expect("upgrade")
    }

    /// The next connection, upgraded, and its message 1 (never answered).
    pub async fn hello(&self) -> (Ws, Vec<u8>) {
        let mut ws = self.upgrade(Some("sigil.v1")).await;
        let hello = match within("message 1", ws.next()).await {
            Some(Ok(Message::Binary(b))) => b.to_vec(),
            other => panic!("expected message 1, got {other:?}"),
        };
        (ws, hello)
    }

    /// The next connection as a session: message 2 is sent with a bit of
    /// its tag flipped when `tamper` is true.
    pub async fn accept(&self, tamper: bool) -> Peer {
        let (mut ws, hello) = self.hello().await;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut replay = ReplayCache::new(16, Limits::default().max_clock_skew_ms);
        let (mut msg2, session) = accept_hello(&self.config, &mut replay, now, &hello)
            .expect("an authorised hello")
            .accept(&mut OsRandom, None)
            .expect("message 2");
        if tamper {
            let last = msg2.len() - 1;
            msg2[last] ^= 1;
        }
        ws.send(Message::binary(msg2))
            .await
            .expect("send message 2");
        let (sealer, opener) = session.split();
        Peer { ws, sealer, opener }
    }

    /// A client connected to this server, and its session here.
    pub async fn connect(&self, options: ClientOptions) -> (Client, Peer) {
        let url = self.url();
        let (client, peer) = tokio::join!(Client::connect(&url, options), self.accept(false));
        (client.expect("connect"), peer)
    }
}

/// A request as it arrived.
#[derive(Debug)]
pub struct Call {
    pub id: u64,
    pub object: String,
    pub method: String,
    pub oneway: bool,
}

/// One session with a client, as the hostile server sees it.
pub struct Peer {
    ws: Ws,
    sealer: FrameSealer,
    opener: FrameOpener,
}

impl Peer {
    /// The next request (a panic on anything else).
    pub async fn request(&mut self) -> Call {
        let frame = match within("a request", self.ws.next()).await {
            Some(Ok(Message::Binary(b))) => b,
            other => panic!("expected a request, got {other:?}"),
        };
        let payload = self.opener.open(&frame).expect("an authentic frame");
        let request = parse_request(payload).expect("a request");
        Call {
            id: request.id,
            object: request.object.into_owned(),
            method: request.method.into_owned(),
            oneway: request.oneway,
        }
    }

    /// `payload` in an authentic frame.
    pub fn seal(&mut self, payload: &[u8]) -> Vec<u8> {
        self.sealer.seal_to_vec(payload).expect("seal")
    }

    pub async fn send(&mut self, message: Message) {
        self.ws.send(message).await.expect("send");
    }

    pub async fn send_sealed(&mut self, payload: &[u8]) {
        let frame = self.seal(payload);
        self.send(Message::binary(frame)).await;
    }

    /// The code of the client's close frame (`None`: a close without one),
    /// after skipping anything else the client sends; then answers the
    /// close and drops the connection, as a server does.
    pub async fn close_code(mut self) -> Option<u16> {
        let code = loop {
            match within("the client's close", self.ws.next()).await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => {}
                other => panic!("the connection ended without a close: {other:?}"),
            }
        };
        within("the end of the connection", async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
        code
    }
}

/// A response with this id and result (JSON text), crafted by hand.
pub fn result(id: u64, json: &str) -> Vec<u8> {
    format!(r#"{{"id":{id},"result":{json}}}"#).into_bytes()
}
