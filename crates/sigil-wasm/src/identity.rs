//! `Identity`: a client key pair whose private key no script can read.
//!
//! The private key is a non-extractable WebCrypto X25519 key (see
//! `agent.rs`), kept across visits in IndexedDB (see `store.rs`). What a
//! script on the page can do with it: use it to connect while the page is
//! open. What it cannot: read it, send it elsewhere, or use it after the
//! page is closed.

use js_sys::{Object, Promise, Reflect};
use sigil_core::keys::PublicKey;
use wasm_bindgen::prelude::*;

use crate::agent::{self, CryptoKey};
use crate::error::{self, INVALID_OPTIONS, STORAGE_FAILED};
use crate::keys::parse_public;
use crate::store::{self, Op};

/// A client identity: an X25519 key pair whose private key is a
/// non-extractable WebCrypto key. Pass it to `Client.connect` as
/// `identity`.
#[wasm_bindgen]
pub struct Identity {
    private_key: CryptoKey,
    public: PublicKey,
}

#[wasm_bindgen]
impl Identity {
    /// Makes a new identity with WebCrypto (its private key is
    /// non-extractable). Rejects with `SigilIdentityError` `unsupported`
    /// where the browser lacks WebCrypto X25519.
    pub async fn generate() -> Result<Identity, JsValue> {
        let (private_key, public) = agent::generate().await?;
        Ok(Identity {
            private_key,
            public,
        })
    }

    /// The identity saved under `name` (with `save`), or `undefined`.
    /// Rejects with `SigilIdentityError` `storage_failed` when IndexedDB is
    /// unavailable or the record is not an identity.
    #[wasm_bindgen(unchecked_return_type = "Identity | undefined")]
    pub async fn load(name: String) -> Result<JsValue, JsValue> {
        let record = store::run(Op::Get(&name)).await?;
        if record.is_undefined() {
            return Ok(JsValue::UNDEFINED);
        }
        let broken = || {
            error::identity(
                STORAGE_FAILED,
                &format!("the record \"{name}\" in IndexedDB is not a sigil identity"),
            )
        };
        let (private_key, public) = key_pair(&record).map_err(|_| broken())?;
        Ok(Identity {
            private_key,
            public,
        }
        .into())
    }

    /// Deletes the identity saved under `name` (if there is one).
    #[wasm_bindgen(js_name = delete)]
    pub async fn remove(name: String) -> Result<(), JsValue> {
        store::run(Op::Delete(&name)).await.map(drop)
    }

    /// Saves this identity under `name` in IndexedDB (replacing what was
    /// there), for `Identity.load(name)` on a later visit. The private key
    /// stays non-extractable in storage.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn save(&self, name: String) -> Promise {
        let record = Object::new();
        // Setting a property on a fresh object cannot fail.
        let _ = Reflect::set(&record, &"privateKey".into(), &self.private_key);
        let _ = Reflect::set(&record, &"publicKey".into(), &self.public_key().into());
        wasm_bindgen_futures::future_to_promise(async move {
            store::run(Op::Put(&name, &record.into())).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The public key (base64): give it to servers that should accept this
    /// client (their `authorized_keys`).
    #[wasm_bindgen(getter, js_name = publicKey)]
    pub fn public_key(&self) -> String {
        self.public.to_string()
    }

    /// The public key's fingerprint, `SHA256:…`, as `sigil fingerprint`
    /// prints it.
    #[wasm_bindgen(getter)]
    pub fn fingerprint(&self) -> String {
        self.public.fingerprint()
    }

    /// The WebCrypto private key: usable by this page, never exportable.
    #[wasm_bindgen(getter, js_name = privateKey)]
    pub fn private_key(&self) -> CryptoKey {
        self.private_key.clone()
    }
}

/// The private `CryptoKey` and the public key of an identity: an
/// `Identity`, or any object with `privateKey` (an X25519 `CryptoKey`) and
/// `publicKey` (base64).
pub(crate) fn key_pair(value: &JsValue) -> Result<(CryptoKey, PublicKey), JsValue> {
    let bad = || {
        error::usage(
            INVALID_OPTIONS,
            "identity must be an Identity (or { privateKey: CryptoKey, publicKey: string })",
        )
    };
    if !value.is_object() {
        return Err(bad());
    }
    let private = store::field(value, "privateKey")
        .dyn_into::<CryptoKey>()
        .map_err(|_| bad())?;
    let public = store::field(value, "publicKey")
        .as_string()
        .ok_or_else(bad)?;
    Ok((private, parse_public(&public, "identity.publicKey")?))
}
