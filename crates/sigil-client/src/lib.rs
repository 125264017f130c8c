//! A native async client for sigil servers (tokio).
//!
//! [`Client::connect`] opens a WebSocket (`ws://`, or `wss://` through rustls),
//! asks for the subprotocol `sigil.v1`, and runs the sigil/1 handshake with
//! the server whose public key the client has pinned. Then every request
//! and response travels in a signed, sequenced frame; many calls may be in
//! flight at once, from any number of tasks sharing clones of the
//! [`Client`].
//!
//! A client may reconnect when its connection breaks (an instance behind a
//! load balancer went away): [`ClientOptions::with_reconnect`], with
//! backoff and jitter, a fresh handshake each time, and
//! [`Client::events`] to follow it. Calls in flight at the break fail and
//! are never sent again.
//!
//! This crate is a thin adapter: the handshake, the frames and the RPC
//! messages are `sigil_core`'s. One task per connection owns the socket and
//! the session keys; callers talk to it over a channel.
//!
//! ```no_run
//! use sigil_client::{Client, ClientError, ClientOptions, PublicKey, SecretKey};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = SecretKey::parse(&std::fs::read_to_string("client.key")?)?;
//! let server = PublicKey::parse("0v8D8pSt2BnGbAvKl9uLdxHeWaaKcp6zrVwA6tUY5Qk=")?;
//! let client = Client::connect(
//!     "ws://127.0.0.1:7070/sigil",
//!     ClientOptions::new(secret, server).with_payload(r#"{"user":"alice"}"#),
//! )
//! .await?;
//!
//! let sum: f64 = client.call("calculator", "add", (1, 2)).await?;
//! assert_eq!(sum, 3.0);
//! match client.call::<f64>("calculator", "div", (1, 0)).await {
//!     Err(e @ ClientError::Remote(_)) => println!("{e}"), // application_error: division by zero
//!     other => println!("{other:?}"),
//! }
//! client.oneway("kv", "set", ["greeting", "hello"]).await?;
//! client.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! From a resolved [`Config`], which reads the
//! client's key file (refused if group or others can read it), the pinned
//! server key, the psk, the prologue, the limits and the handshake timeout:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use sigil_client::{Client, ClientOptions};
//! use sigil_core::config::Config;
//!
//! let resolved = Config::builder()
//!     .file("sigil.toml", &std::fs::read_to_string("sigil.toml")?)
//!     .build()?;
//! let options = ClientOptions::from_config(&resolved.config)?;
//! let client = Client::connect("wss://rpc.example.com/sigil", options).await?;
//! let pong: String = client.call("sigil", "ping", ()).await?;
//! # Ok(())
//! # }
//! ```

mod client;
mod connect;
mod connection;
mod error;
mod options;
mod reconnect;
mod stream;
mod tls;

pub use client::{Call, Client};
pub use connect::SUBPROTOCOL;
pub use error::{ClientError, ConnectError};
pub use options::{
    ClientOptions, DEFAULT_CALL_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_STREAM_WINDOW,
};
pub use reconnect::{ConnectionEvent, ConnectionEvents, ConnectionState};
pub use sigil_core::connection::StreamOptions;
pub use sigil_core::reconnect::ReconnectPolicy;
pub use stream::ItemStream;
pub use tls::{CertificateCheck, ClientTls, ServerCertificate, tls_config};

/// The rustls version this crate uses, for [`ClientOptions::with_tls`].
pub use rustls;
pub use sigil_core::config::Config;
pub use sigil_core::handshake::{Limits, RefusalCode};
pub use sigil_core::rpc::{ErrorCode, RpcError};
pub use sigil_core::{PublicKey, SecretKey, SymmetricKey};
