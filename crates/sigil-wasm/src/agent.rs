//! The browser as a key agent: X25519 in WebCrypto with a private key the
//! page cannot read.
//!
//! `crypto.subtle.generateKey({ name: "X25519" }, false, ["deriveBits"])`
//! makes a key pair whose private half is non-extractable: scripts can ask
//! the browser to use it (`deriveBits`) while the page is open, but
//! `exportKey` refuses it and it never enters this module's memory. The
//! handshake needs two X25519 results of the static key — `ss` with the
//! server's key (once per connection) and `se` with the server's ephemeral
//! key (once per handshake) — and sigil-core takes both from an agent
//! (`ClientConfig::from_agent`, `AwaitingStaticDh::finish`).

use js_sys::{Array, ArrayBuffer, Object, Promise, Reflect, Uint8Array};
use sigil_core::keys::{PublicKey, SharedSecret};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::error::{self, INVALID_KEY, UNSUPPORTED};

#[wasm_bindgen]
extern "C" {
    /// A WebCrypto key (`CryptoKey`).
    #[wasm_bindgen(typescript_type = "CryptoKey")]
    #[derive(Clone)]
    pub type CryptoKey;

    /// Whether the key's bytes may be exported (never, for an identity's
    /// private key).
    #[wasm_bindgen(method, getter)]
    pub fn extractable(this: &CryptoKey) -> bool;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = generateKey)]
    fn generate_key(
        algorithm: &Object,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = deriveBits)]
    fn derive_bits(algorithm: &Object, key: &CryptoKey, length: u32) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = importKey)]
    fn import_key(
        format: &str,
        data: &Uint8Array,
        algorithm: &Object,
        extractable: bool,
        usages: &Array,
    ) -> Result<Promise, JsValue>;

    #[wasm_bindgen(catch, js_namespace = ["crypto", "subtle"], js_name = exportKey)]
    fn export_key(format: &str, key: &CryptoKey) -> Result<Promise, JsValue>;
}

/// `{ name: "X25519" }`, with `public` set for `deriveBits`.
fn x25519(public: Option<&JsValue>) -> Object {
    let algorithm = Object::new();
    // Setting a property on a fresh object cannot fail.
    let _ = Reflect::set(&algorithm, &"name".into(), &"X25519".into());
    if let Some(public) = public {
        let _ = Reflect::set(&algorithm, &"public".into(), public);
    }
    algorithm
}

/// Awaits a WebCrypto call (which may throw, or reject).
async fn run(call: Result<Promise, JsValue>) -> Result<JsValue, JsValue> {
    JsFuture::from(call?).await
}

/// The `message` of what WebCrypto threw (a `DOMException`, a `TypeError`
/// when `crypto.subtle` is missing outside a secure context).
pub(crate) fn message(e: &JsValue) -> String {
    Reflect::get(e, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .unwrap_or_else(|| "unknown error".to_owned())
}

/// 32 bytes from an `ArrayBuffer`, or `None`.
fn bytes32(buffer: &JsValue) -> Option<[u8; 32]> {
    let buffer = buffer.dyn_ref::<ArrayBuffer>()?;
    let view = Uint8Array::new(buffer);
    let mut out = [0u8; 32];
    (view.length() == 32).then(|| view.copy_to(&mut out))?;
    Some(out)
}

/// A new X25519 key pair: the non-extractable private key and the public key.
pub(crate) async fn generate() -> Result<(CryptoKey, PublicKey), JsValue> {
    let unsupported = |e: JsValue| {
        error::identity(
            UNSUPPORTED,
            &format!(
                "this browser cannot make a WebCrypto X25519 key ({}); Chromium 133, Firefox 130 \
                 and Safari 17 can, in a secure context (https: or localhost)",
                message(&e)
            ),
        )
    };
    let usages: Array = std::iter::once(JsValue::from("deriveBits")).collect();
    let pair = run(generate_key(&x25519(None), false, &usages))
        .await
        .map_err(unsupported)?;
    let private: CryptoKey = Reflect::get(&pair, &"privateKey".into())?.unchecked_into();
    let public: CryptoKey = Reflect::get(&pair, &"publicKey".into())?.unchecked_into();
    let raw = run(export_key("raw", &public)).await.map_err(unsupported)?;
    let public = bytes32(&raw)
        .map(PublicKey::from_bytes)
        .ok_or_else(|| unsupported(JsValue::from("the public key is not 32 bytes")))?;
    Ok((private, public))
}

/// X25519 of `private` (held by WebCrypto) with `peer` (named `what` in
/// errors): the agent's part of the handshake. An all-zero result (a
/// low-order `peer`) is refused.
pub(crate) async fn diffie_hellman(
    private: &CryptoKey,
    peer: &PublicKey,
    what: &str,
) -> Result<SharedSecret, JsValue> {
    let failed = |e: JsValue| {
        error::usage(
            INVALID_KEY,
            &format!(
                "WebCrypto X25519 of the identity's private key with {what} failed ({})",
                message(&e)
            ),
        )
    };
    let data = Uint8Array::from(&peer.as_bytes()[..]);
    let none = Array::new();
    let peer = run(import_key("raw", &data, &x25519(None), true, &none))
        .await
        .map_err(failed)?;
    let bits = run(derive_bits(&x25519(Some(&peer)), private, 256))
        .await
        .map_err(failed)?;
    let bytes = bytes32(&bits).ok_or_else(|| failed(JsValue::from("not 32 bytes")))?;
    // The result is a secret: leave no copy in JavaScript's memory.
    Uint8Array::new(&bits).fill(0, 0, 32);
    SharedSecret::from_agent(bytes).map_err(|e| failed(JsValue::from(e.to_string())))
}
