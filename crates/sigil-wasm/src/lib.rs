//! sigil's browser client.
//!
//! A thin adapter between a browser [`WebSocket`](web_sys::WebSocket) and the
//! sigil/1 state machines of `sigil_core`: the handshake, the signed frames
//! and the RPC messages are the core's; this crate only moves bytes, reads
//! the browser's clock (`Date.now()`) and the browser's CSPRNG
//! (`crypto.getRandomValues`, through `getrandom`), and turns results into
//! JavaScript values and `Promise`s. A page's key is an [`Identity`]: a
//! WebCrypto X25519 key pair whose private key no script can read, kept in
//! IndexedDB; the browser does the static key's Diffie-Hellman for the
//! handshake (`agent.rs`).
//!
//! From JavaScript (after `wasm-bindgen --target web`):
//!
//! ```js
//! import init, { Identity, Client } from "./pkg/sigil_wasm.js";
//! await init();
//! const identity = (await Identity.load("app")) ?? (await Identity.generate());
//! await identity.save("app");
//! const client = await Client.connect("ws://127.0.0.1:7070/sigil", {
//!   serverKey: "…the server's public key, as `sigil serve` prints it…",
//!   identity,
//!   reconnect: true,
//! });
//! console.log(await client.call("calculator", "add", [1, 2])); // 3
//! client.close();
//! ```
//!
//! Every error is a JavaScript `Error` with a `code`: see [`error`] and the
//! TypeScript declarations that ship with the module.

mod agent;
mod client;
pub mod error;
mod events;
mod identity;
mod keys;
mod link;
mod options;
mod store;
mod stream;

pub use agent::CryptoKey;
pub use client::Client;
pub use identity::Identity;
pub use keys::{derive_shared_key, fingerprint, generate_key_pair, public_key};
pub use stream::ItemStream;

use wasm_bindgen::prelude::wasm_bindgen;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = include_str!("types.d.ts");
