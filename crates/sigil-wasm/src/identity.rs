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
    #[wasm_bindgen(unchecked_return_type = "Promise<Identity>")]
    pub fn generate() -> Promise {
        task(None)
    }

    /// The identity saved under `name` (with `save`), or `undefined`.
    /// Rejects with `SigilIdentityError` `storage_failed` when IndexedDB is
    /// unavailable or the record is not an identity.
    #[wasm_bindgen(unchecked_return_type = "Promise<Identity | undefined>")]
    pub fn load(name: String) -> Promise {
        task(Some(Op::Get(name)))
    }

    /// Deletes the identity saved under `name` (if there is one).
    #[wasm_bindgen(js_name = delete, unchecked_return_type = "Promise<void>")]
    pub fn remove(name: String) -> Promise {
        task(Some(Op::Delete(name)))
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
        task(Some(Op::Put(name, record.into())))
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

/// A new identity (`None`), or `op` on the store: the identity a `Get`
/// found (or `undefined`), `undefined` after a `Put` or `Delete`. One
/// future for all four (each future costs the module its own code).
fn task(op: Option<Op>) -> Promise {
    wasm_bindgen_futures::future_to_promise(async move {
        let Some(op) = op else {
            let (private_key, public) = agent::generate().await?;
            return Ok(Identity {
                private_key,
                public,
            }
            .into());
        };
        let name = match &op {
            Op::Get(name) => Some(name.clone()),
            Op::Put(..) | Op::Delete(_) => None,
        };
        let record = store::run(op).await?;
        let Some(name) = name.filter(|_| !record.is_undefined()) else {
            return Ok(JsValue::UNDEFINED);
        };
        let (private_key, public) = key_pair(&record).map_err(|_| {
            error::identity(
                STORAGE_FAILED,
                &format!("the record \"{name}\" in IndexedDB is not a sigil identity"),
            )
        })?;
        Ok(Identity {
            private_key,
            public,
        }
        .into())
    })
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
