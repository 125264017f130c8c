//! The options of `Client.connect`, read from a JavaScript object.

use js_sys::{JSON, Reflect, Uint8Array};
use sigil_core::handshake::{ClientConfig, HandshakeError, Limits};
use sigil_core::keys::SymmetricKey;
use wasm_bindgen::{JsCast, JsValue};

use crate::error::{self, INVALID_KEY, INVALID_OPTIONS};
use crate::keys::{parse_public, parse_secret};

/// The handshake timeout when `timeoutMs` is not given (the server's default
/// `handshake_timeout_ms`).
pub(crate) const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// A call's deadline when neither it nor `callTimeoutMs` gives one (the
/// server's default `call_timeout_ms`).
pub(crate) const DEFAULT_CALL_TIMEOUT_MS: u32 = 30_000;

/// Everything a connection needs, checked before the socket is opened.
pub(crate) struct ConnectOptions {
    pub(crate) config: ClientConfig,
    pub(crate) payload: Option<String>,
    pub(crate) timeout_ms: u32,
    /// The deadline of a call that does not set its own.
    pub(crate) call_timeout_ms: u32,
}

fn get(options: &JsValue, name: &str) -> Result<Option<JsValue>, JsValue> {
    let v = Reflect::get(options, &JsValue::from_str(name))
        .map_err(|_| invalid(&format!("cannot read the option {name}")))?;
    Ok((!v.is_undefined() && !v.is_null()).then_some(v))
}

fn invalid(message: &str) -> JsValue {
    error::usage(INVALID_OPTIONS, message)
}

fn required_string(options: &JsValue, name: &str) -> Result<String, JsValue> {
    get(options, name)?
        .and_then(|v| v.as_string())
        .ok_or_else(|| invalid(&format!("the option {name} (a string) is required")))
}

impl ConnectOptions {
    /// Reads and checks `{ serverKey, secretKey, psk?, prologue?, payload?, timeoutMs?, callTimeoutMs? }`.
    pub(crate) fn from_js(options: &JsValue) -> Result<ConnectOptions, JsValue> {
        if !options.is_object() {
            return Err(invalid(
                "options must be an object: { serverKey, secretKey, psk?, prologue?, payload?, timeoutMs?, callTimeoutMs? }",
            ));
        }
        let server = parse_public(&required_string(options, "serverKey")?, "serverKey")?;
        let secret = parse_secret(&required_string(options, "secretKey")?, "secretKey")?;
        let mut config = ClientConfig::new(secret, server).map_err(|e| match e {
            HandshakeError::Key(k) => error::usage(INVALID_KEY, &format!("serverKey: {k}")),
            other => invalid(&other.to_string()),
        })?;
        if let Some(psk) = get(options, "psk")? {
            let text = psk
                .as_string()
                .ok_or_else(|| invalid("psk must be a string: base64 of 32 bytes"))?;
            let key = SymmetricKey::from_base64(&text)
                .map_err(|e| error::usage(INVALID_KEY, &format!("psk: {e}")))?;
            config = config.with_psk(key);
        }
        if let Some(prologue) = get(options, "prologue")? {
            let bytes = if let Some(text) = prologue.as_string() {
                text.into_bytes()
            } else if let Some(array) = prologue.dyn_ref::<Uint8Array>() {
                array.to_vec()
            } else {
                return Err(invalid("prologue must be a string or a Uint8Array"));
            };
            config = config.with_prologue(&bytes);
        }
        let payload = match get(options, "payload")? {
            None => None,
            Some(value) => {
                let text = JSON::stringify(&value)
                    .ok()
                    .and_then(|s| s.as_string())
                    .ok_or_else(|| invalid("payload must be a JSON value"))?;
                let max = Limits::default().max_handshake_payload as usize;
                if text.len() > max {
                    return Err(invalid(&format!(
                        "payload is {} bytes of JSON; the limit is {max}",
                        text.len()
                    )));
                }
                Some(text)
            }
        };
        let timeout_ms = millis(options, "timeoutMs")?.unwrap_or(DEFAULT_TIMEOUT_MS);
        let call_timeout_ms = millis(options, "callTimeoutMs")?.unwrap_or(DEFAULT_CALL_TIMEOUT_MS);
        Ok(ConnectOptions {
            config,
            payload,
            timeout_ms,
            call_timeout_ms,
        })
    }
}

/// A number of milliseconds from `options[key]`, if present: 1 to 2^31 − 1
/// (what `setTimeout` takes).
pub(crate) fn millis(options: &JsValue, key: &str) -> Result<Option<u32>, JsValue> {
    number(options, key, 2_147_483_647, "a number of milliseconds")
}

/// A whole number from `options[key]` (a fraction is dropped), if present:
/// 1 to `max`; `what` says what it is, for the error.
pub(crate) fn number(
    options: &JsValue,
    key: &str,
    max: u32,
    what: &str,
) -> Result<Option<u32>, JsValue> {
    match get(options, key)? {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(n) if (1.0..=f64::from(max)).contains(&n) => Ok(Some(n as u32)),
            _ => Err(invalid(&format!("{key} must be {what} from 1 to {max}"))),
        },
    }
}
