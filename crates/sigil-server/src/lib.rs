//! sigil's WebSocket RPC server.
//!
//! Objects are registered in a [`Registry`] under names, with the methods
//! they expose; a [`Server`] serves them at `/sigil` (WebSocket subprotocol
//! `sigil.v1`), one sigil/1 session per connection, driven by the sans-IO
//! state machines of `sigil_core`. Requests and responses are JSON only;
//! a call names one object and one method, never a path. Every limit comes
//! from [`ServerSettings`] (usually from a resolved `sigil_core::config::Config`),
//! and TLS and mutual TLS come from rustls.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sigil_server::{ClientAuth, OsRandom, Registry, SecretKey, Server, ServerSettings};
//!
//! let mut registry = Registry::new();
//! registry
//!     .object("calculator")
//!     .method("add", |(a, b): (i64, i64)| Ok(a + b));
//! let key = SecretKey::generate(&mut OsRandom)?;
//! let settings = ServerSettings::new(key, ClientAuth::AllowAny);
//! let server = Server::new(settings, registry).bind("127.0.0.1:7070").await?;
//! println!("serving at {} with key {}", server.url(), server.public_key());
//! # server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod budget;
mod connection;
pub mod demo;
mod logs;
mod metrics;
mod operating;
mod preauth;
mod proxy;
#[cfg(feature = "redis")]
mod redis_store;
mod registry;
mod reload;
mod replay_store;
mod server;
mod settings;
mod static_files;
mod tls;

pub use registry::{
    BUILTIN_OBJECT, CallContext, NoArgs, ObjectBuilder, Registry, RegistryError, StateBuilder,
};
pub use reload::{KeyChanges, ReloadError, Reloaded};
pub use replay_store::{MemoryStore, ReplayStore, StoreFuture};
pub use server::{ENDPOINT, RunningServer, SUBPROTOCOL, SUBPROTOCOL_BATCH, Server};
pub use settings::{HandshakeInfo, Hook, HookDecision, ServerLimits, ServerSettings, SetupError};
pub use sigil_core::rpc::{ErrorCode, RpcError};
pub use static_files::StaticFiles;

// What a server program needs besides this crate's own types, so that it
// imports from one crate: keys, the client policy, the random source for
// keys, the configuration and the handshake limits.
pub use sigil_core::config::{AuthorizedKey, Config, IpNet, ReplayStoreLocation, RevokedSessions};
pub use sigil_core::handshake::{ClientAuth, Limits};
pub use sigil_core::replay::{ReplayEntry, ReplayVerdict};
pub use sigil_core::{OsRandom, PublicKey, SecretKey, SymmetricKey};
pub use tls::{PeerCertificate, TlsSettings};
