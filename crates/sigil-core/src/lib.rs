//! The sans-IO core of sigil.
//!
//! This crate holds everything in sigil that is pure computation: layered
//! configuration with provenance ([`config`]), X25519 keys in their text
//! forms ([`keys`]), HKDF-SHA256 key derivation ([`kdf`]), and the sigil/1
//! handshake and transport framing. It opens no sockets and files, reads no
//! clock and no environment: time, randomness, file contents and environment
//! variables come in as arguments. The same code runs in the server, the
//! native client and the browser (it builds for `wasm32-unknown-unknown`).

pub mod batch;
pub mod cert;
pub mod config;
pub mod connection;
pub mod handshake;
pub mod kdf;
#[cfg(feature = "fs")]
pub mod keyfile;
pub mod keys;
pub mod limit;
pub mod rand;
pub mod reconnect;
pub mod replay;
pub mod rpc;
pub mod transport;

pub use keys::{KeyError, PublicKey, SecretKey, SymmetricKey};
#[cfg(feature = "os-rng")]
pub use rand::OsRandom;
pub use rand::{RandomError, RandomSource};
