//! Errors as JavaScript values.
//!
//! Every error this module gives JavaScript is an `Error` with a `name` that
//! says which kind it is and a `code`:
//!
//! | `name` | `code` | when |
//! | --- | --- | --- |
//! | `SigilRefused` | the refusal code, a number (1 handshake failed, 2 rejected by the application, 3 busy, 4 unsupported version, 5 stale or replayed) | the server refused the handshake; `reason` holds its text |
//! | `SigilRpcError` | the RPC error code, a string (`application_error`, `no_such_method`, …) | the call reached the server and failed, or was refused locally for the same reason (a bad name, arguments that are not an array) |
//! | `SigilConnectionError` | [`CONNECTION_CLOSED`], [`TIMEOUT`], [`HANDSHAKE_FAILED`] or [`PROTOCOL_ERROR`] | the connection could not be made or ended |
//! | `SigilUsageError` | [`INVALID_KEY`] or [`INVALID_OPTIONS`] | a key or an option given by the caller is unusable |
//! | `SigilIdentityError` | [`UNSUPPORTED`] or [`STORAGE_FAILED`] | an `Identity` cannot be made (no WebCrypto X25519), saved or loaded (IndexedDB) |
//!
//! A refusal is not authenticated: it informs, it proves nothing.

use js_sys::{Error, Reflect};
use sigil_core::handshake::Refusal;
use sigil_core::rpc::RpcError;
use wasm_bindgen::JsValue;

/// The connection could not be opened, was closed by either side, or ended
/// while a call was in flight.
pub const CONNECTION_CLOSED: &str = "connection_closed";
/// The server did not complete the handshake within `timeoutMs`.
pub const TIMEOUT: &str = "timeout";
/// The server's answer to the hello did not authenticate or was malformed, or
/// the server did not select the `sigil.v1` subprotocol.
pub const HANDSHAKE_FAILED: &str = "handshake_failed";
/// After the handshake, the server sent something that is not a valid signed
/// frame carrying a response (the connection is closed).
pub const PROTOCOL_ERROR: &str = "protocol_error";
/// A key given by the caller is not a key (or is a low-order point).
pub const INVALID_KEY: &str = "invalid_key";
/// An option given by the caller is unusable.
pub const INVALID_OPTIONS: &str = "invalid_options";

/// The browser cannot make a WebCrypto X25519 key (too old, or not a
/// secure context).
pub const UNSUPPORTED: &str = "unsupported";
/// IndexedDB is unavailable or failed, or a stored record is not an identity.
pub const STORAGE_FAILED: &str = "storage_failed";

fn make(name: &str, code: &JsValue, message: &str) -> Error {
    let e = Error::new(message);
    e.set_name(name);
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(&e, &JsValue::from_str("code"), code);
    e
}

/// A `SigilConnectionError` with one of the connection codes.
pub(crate) fn connection(code: &str, message: &str) -> JsValue {
    make("SigilConnectionError", &JsValue::from_str(code), message).into()
}

/// A `SigilUsageError` with one of the usage codes.
pub(crate) fn usage(code: &str, message: &str) -> JsValue {
    make("SigilUsageError", &JsValue::from_str(code), message).into()
}

/// A `SigilIdentityError` with one of the identity codes.
pub(crate) fn identity(code: &str, message: &str) -> JsValue {
    make("SigilIdentityError", &JsValue::from_str(code), message).into()
}

/// A `SigilRpcError` from an RPC error (received or local).
pub(crate) fn rpc(err: &RpcError) -> JsValue {
    let message = format!("{}: {}", err.code, err.message);
    make(
        "SigilRpcError",
        &JsValue::from_str(err.code.as_str()),
        &message,
    )
    .into()
}

/// A `SigilRefused` from a received refusal: numeric `code` and the `reason`.
pub(crate) fn refused(refusal: &Refusal) -> JsValue {
    let code = refusal.code().as_u16();
    let what = match refusal.code().hint() {
        Some(hint) => format!("{}: {hint}", refusal.code().description()),
        None => refusal.code().description().to_owned(),
    };
    let message = format!(
        "the server refused the handshake (code {code}, {what}); its reason: {}",
        refusal.reason()
    );
    let e = make("SigilRefused", &JsValue::from(code), &message);
    let _ = Reflect::set(
        &e,
        &JsValue::from_str("reason"),
        &JsValue::from_str(refusal.reason()),
    );
    e.into()
}
