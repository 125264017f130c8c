//! What sigil is measured against, in the same run:
//!
//! - snow's `Noise_IK_25519_ChaChaPoly_SHA256` handshake, in memory (the
//!   closest Noise pattern to sigil/1's: the client knows the server's
//!   static key, both are authenticated, two messages);
//! - a raw tokio-tungstenite echo server, with tungstenite's default
//!   config, answering each binary message with one of the length its
//!   first four bytes ask for (so both directions carry sigil's sizes);
//! - jsonrpsee's WebSocket server with an `add` method (its defaults).
//!
//! The two servers run in child processes of their own (`--serve echo`,
//! `--serve jsonrpsee`), like `sigil serve`, each on a tokio runtime with
//! one worker per core.

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use snow::params::NoiseParams;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::{Bytes, Message};

use crate::procs::announce_and_wait;

pub(crate) const NOISE_IK: &str = "Noise_IK_25519_ChaChaPoly_SHA256";

/// Static keys for snow handshakes, and the one responder accepts.
pub(crate) struct Snow {
    params: NoiseParams,
    initiator: snow::Keypair,
    responder: snow::Keypair,
    buf: Vec<u8>,
    payload: Vec<u8>,
}

impl Snow {
    pub(crate) fn new() -> Snow {
        let params: NoiseParams = NOISE_IK.parse().unwrap();
        let builder = snow::Builder::new(params.clone());
        Snow {
            initiator: builder.generate_keypair().unwrap(),
            responder: builder.generate_keypair().unwrap(),
            params,
            buf: vec![0; 1024],
            payload: vec![0; 1024],
        }
    }

    /// One whole IK handshake, both sides, into transport mode; the
    /// responder checks the initiator's key as sigil's server does.
    pub(crate) fn handshake(&mut self) {
        let mut i = snow::Builder::new(self.params.clone())
            .local_private_key(&self.initiator.private)
            .unwrap()
            .remote_public_key(&self.responder.public)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut r = snow::Builder::new(self.params.clone())
            .local_private_key(&self.responder.private)
            .unwrap()
            .build_responder()
            .unwrap();
        let n = i.write_message(&[], &mut self.buf).unwrap();
        r.read_message(&self.buf[..n], &mut self.payload).unwrap();
        assert_eq!(r.get_remote_static(), Some(&self.initiator.public[..]));
        let n = r.write_message(&[], &mut self.buf).unwrap();
        i.read_message(&self.buf[..n], &mut self.payload).unwrap();
        std::hint::black_box((
            i.into_transport_mode().unwrap(),
            r.into_transport_mode().unwrap(),
        ));
    }
}

/// Runs a peer's server in this process (`--serve NAME`): never returns.
pub(crate) fn serve(name: &str) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = rt.block_on(async {
        match name {
            "echo" => {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                tokio::spawn(echo_server(listener));
                addr
            }
            "jsonrpsee" => jsonrpsee_server().await,
            other => panic!("no server named {other}"),
        }
    });
    // The runtime's workers go on serving while this thread waits.
    announce_and_wait(addr)
}

async fn echo_server(listener: TcpListener) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                return;
            };
            // As `StreamExt::forward` would: flush once no message is ready.
            loop {
                let msg = match ws.next().now_or_never() {
                    Some(m) => m,
                    None => {
                        if ws.flush().await.is_err() {
                            return;
                        }
                        ws.next().await
                    }
                };
                let answer = match msg {
                    Some(Ok(Message::Binary(b))) if b.len() >= 4 => {
                        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                        Message::Binary(Bytes::from(vec![b'y'; n]))
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                if ws.feed(answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn jsonrpsee_server() -> std::net::SocketAddr {
    use jsonrpsee_server::types::ErrorObjectOwned;
    use jsonrpsee_server::{RpcModule, Server, ServerConfig};
    let config = ServerConfig::builder().max_connections(100_000).build();
    let server = Server::builder()
        .set_config(config)
        .build("127.0.0.1:0")
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let mut module = RpcModule::new(());
    module
        .register_method("add", |params, _, _| {
            let (a, b): (i64, i64) = params.parse()?;
            Ok::<i64, ErrorObjectOwned>(a + b)
        })
        .unwrap();
    // Serves until the process ends.
    std::mem::forget(server.start(module));
    addr
}

/// A jsonrpsee client of `addr` (its defaults).
pub(crate) async fn jsonrpsee_client(
    addr: std::net::SocketAddr,
) -> Result<std::sync::Arc<jsonrpsee_ws_client::WsClient>, String> {
    jsonrpsee_ws_client::WsClientBuilder::default()
        .build(format!("ws://{addr}"))
        .await
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string())
}

/// `add(1, 2)` through jsonrpsee's client.
pub(crate) async fn jsonrpsee_add(
    c: std::sync::Arc<jsonrpsee_ws_client::WsClient>,
) -> Result<(), String> {
    use jsonrpsee_core::client::ClientT as _;
    let sum: i64 = c
        .request("add", jsonrpsee_core::rpc_params![1, 2])
        .await
        .map_err(|e| e.to_string())?;
    if sum == 3 {
        Ok(())
    } else {
        Err(format!("add(1, 2) = {sum}"))
    }
}
