//! Keys: generation, public keys, fingerprints and pairwise keys.
//!
//! Keys cross into JavaScript as base64 text (the same text as `wg genkey` /
//! `wg pubkey` and the `sigil` command); PEM is accepted as input. A secret
//! that has become a JavaScript string cannot be erased from memory: the
//! Rust copies are zeroized, the JavaScript ones live until collected.

use js_sys::{Object, Reflect};
use sigil_core::OsRandom;
use sigil_core::kdf::pairwise_key;
use sigil_core::keys::{KeyFormat, PublicKey, SecretKey};
use wasm_bindgen::prelude::*;

use crate::error::{self, INVALID_KEY};

/// Makes a new key pair from the browser's CSPRNG:
/// `{ secretKey, publicKey }`, both base64.
#[wasm_bindgen(js_name = generateKeyPair, unchecked_return_type = "KeyPair")]
pub fn generate_key_pair() -> Result<JsValue, JsValue> {
    let secret = SecretKey::generate(&mut OsRandom).map_err(|e| {
        error::usage(
            error::INVALID_OPTIONS,
            &format!("cannot make a key: {e} (crypto.getRandomValues is needed)"),
        )
    })?;
    let pair = Object::new();
    let text = secret.to_text(KeyFormat::Base64);
    let _ = Reflect::set(&pair, &"secretKey".into(), &text.trim().into());
    let _ = Reflect::set(
        &pair,
        &"publicKey".into(),
        &secret.public_key().to_string().into(),
    );
    Ok(pair.into())
}

/// The public key (base64) of a secret key (base64 or PKCS#8 PEM).
#[wasm_bindgen(js_name = publicKey)]
pub fn public_key(secret: &str) -> Result<String, JsValue> {
    Ok(parse_secret(secret, "secret key")?.public_key().to_string())
}

/// The fingerprint of a public key (base64 or SPKI PEM), as ssh shows keys:
/// `SHA256:` and unpadded base64 of SHA-256 of the 32 raw bytes.
#[wasm_bindgen]
pub fn fingerprint(#[wasm_bindgen(js_name = publicKey)] public: &str) -> Result<String, JsValue> {
    Ok(parse_public(public, "public key")?.fingerprint())
}

/// The pairwise key of `sigil derive` (base64): both parties get the same
/// 32 bytes from their own secret and the other's public key, without
/// talking. `context` defaults to `"sigil/1 psk"`; the result can be used as
/// the `psk` of a connection.
#[wasm_bindgen(js_name = deriveSharedKey)]
pub fn derive_shared_key(
    secret: &str,
    #[wasm_bindgen(js_name = peerPublic)] peer_public: &str,
    context: Option<String>,
) -> Result<String, JsValue> {
    let secret = parse_secret(secret, "secret key")?;
    let peer = parse_public(peer_public, "peer public key")?;
    let key = pairwise_key(&secret, &peer, context.as_deref().map(str::as_bytes))
        .map_err(|e| error::usage(INVALID_KEY, &format!("peer public key: {e}")))?;
    Ok(key.to_base64().to_string())
}

/// Reads a secret key, naming `what` in the error.
pub(crate) fn parse_secret(text: &str, what: &str) -> Result<SecretKey, JsValue> {
    SecretKey::parse(text).map_err(|e| error::usage(INVALID_KEY, &format!("{what}: {e}")))
}

/// Reads a public key, naming `what` in the error.
pub(crate) fn parse_public(text: &str, what: &str) -> Result<PublicKey, JsValue> {
    PublicKey::parse(text).map_err(|e| error::usage(INVALID_KEY, &format!("{what}: {e}")))
}
