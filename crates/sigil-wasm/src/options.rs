//! The options of `Client.connect`, read from a JavaScript object, and the
//! `Setup` every (re)connection of a client uses.

use js_sys::{Function, JSON, Reflect, Uint8Array};
use sigil_core::handshake::{ClientConfig, HandshakeError, Limits};
use sigil_core::keys::{PublicKey, SecretKey, SymmetricKey};
use sigil_core::reconnect::ReconnectPolicy;
use wasm_bindgen::{JsCast, JsValue};

use crate::agent::{self, CryptoKey};
use crate::error::{self, INVALID_KEY, INVALID_OPTIONS};
use crate::identity;
use crate::keys::{parse_public, parse_secret};

/// The handshake timeout when `timeoutMs` is not given (the server's default
/// `handshake_timeout_ms`).
pub(crate) const DEFAULT_TIMEOUT_MS: u32 = 10_000;
/// A call's deadline when neither it nor `callTimeoutMs` gives one (the
/// server's default `call_timeout_ms`).
pub(crate) const DEFAULT_CALL_TIMEOUT_MS: u32 = 30_000;

const SHAPE: &str = "{ serverKey, identity | secretKey, psk?, prologue?, payload?, timeoutMs?, \
                     callTimeoutMs?, reconnect?, onState?, onTrace? }";

/// Whose key the client uses.
enum Key {
    /// A text secret key, in this module's memory.
    Secret(SecretKey),
    /// A WebCrypto private key (an `Identity`) and its public key.
    Agent(CryptoKey, PublicKey),
}

/// Everything a connection needs, checked before the first socket opens.
pub(crate) struct Setup {
    pub(crate) url: String,
    pub(crate) config: ClientConfig,
    /// The WebCrypto private key, when an identity holds the static key.
    pub(crate) agent: Option<CryptoKey>,
    pub(crate) payload: Option<String>,
    pub(crate) timeout_ms: u32,
    /// The deadline of a call that does not set its own.
    pub(crate) call_timeout_ms: u32,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) on_state: Option<Function>,
    pub(crate) on_trace: Option<Function>,
}

/// The options as read, before the key agent has done its part.
pub(crate) struct ConnectOptions {
    key: Key,
    server: PublicKey,
    psk: Option<SymmetricKey>,
    prologue: Option<Vec<u8>>,
    payload: Option<String>,
    timeout_ms: u32,
    call_timeout_ms: u32,
    reconnect: Option<ReconnectPolicy>,
    on_state: Option<Function>,
    on_trace: Option<Function>,
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

fn function(options: &JsValue, name: &str) -> Result<Option<Function>, JsValue> {
    get(options, name)?
        .map(|v| {
            v.dyn_into::<Function>()
                .map_err(|_| invalid(&format!("{name} must be a function")))
        })
        .transpose()
}

impl ConnectOptions {
    /// Reads and checks the options (see `SHAPE`).
    pub(crate) fn from_js(options: &JsValue) -> Result<ConnectOptions, JsValue> {
        if !options.is_object() {
            return Err(invalid(&format!("options must be an object: {SHAPE}")));
        }
        let server = parse_public(&required_string(options, "serverKey")?, "serverKey")?;
        let key = match (get(options, "identity")?, get(options, "secretKey")?) {
            (Some(identity), None) => {
                let (private, public) = identity::key_pair(&identity)?;
                Key::Agent(private, public)
            }
            (None, Some(_)) => Key::Secret(parse_secret(
                &required_string(options, "secretKey")?,
                "secretKey",
            )?),
            _ => {
                return Err(invalid(
                    "give exactly one of the options identity (an Identity) and secretKey (a string)",
                ));
            }
        };
        let psk = match get(options, "psk")? {
            None => None,
            Some(psk) => {
                let text = psk
                    .as_string()
                    .ok_or_else(|| invalid("psk must be a string: base64 of 32 bytes"))?;
                Some(
                    SymmetricKey::from_base64(&text)
                        .map_err(|e| error::usage(INVALID_KEY, &format!("psk: {e}")))?,
                )
            }
        };
        let prologue = match get(options, "prologue")? {
            None => None,
            Some(prologue) => Some(if let Some(text) = prologue.as_string() {
                text.into_bytes()
            } else if let Some(array) = prologue.dyn_ref::<Uint8Array>() {
                array.to_vec()
            } else {
                return Err(invalid("prologue must be a string or a Uint8Array"));
            }),
        };
        Ok(ConnectOptions {
            key,
            server,
            psk,
            prologue,
            payload: payload(options)?,
            timeout_ms: millis(options, "timeoutMs")?.unwrap_or(DEFAULT_TIMEOUT_MS),
            call_timeout_ms: millis(options, "callTimeoutMs")?.unwrap_or(DEFAULT_CALL_TIMEOUT_MS),
            reconnect: reconnect(options)?,
            on_state: function(options, "onState")?,
            on_trace: function(options, "onTrace")?,
        })
    }

    /// The setup for `url`: with an identity, WebCrypto computes the static
    /// key's Diffie-Hellman result with the server key first (once for all
    /// the connections of this client).
    pub(crate) async fn into_setup(self, url: String) -> Result<Setup, JsValue> {
        let key_error = |e: HandshakeError| match e {
            HandshakeError::Key(k) => error::usage(INVALID_KEY, &format!("serverKey: {k}")),
            other => invalid(&other.to_string()),
        };
        let (config, agent) = match self.key {
            Key::Secret(secret) => (
                ClientConfig::new(secret, self.server).map_err(key_error)?,
                None,
            ),
            Key::Agent(private, public) => {
                let ss = agent::diffie_hellman(&private, &self.server, "serverKey").await?;
                (
                    ClientConfig::from_agent(public, self.server, &ss),
                    Some(private),
                )
            }
        };
        let config = match self.psk {
            Some(psk) => config.with_psk(psk),
            None => config,
        };
        let config = match &self.prologue {
            Some(prologue) => config.with_prologue(prologue),
            None => config,
        };
        Ok(Setup {
            url,
            config,
            agent,
            payload: self.payload,
            timeout_ms: self.timeout_ms,
            call_timeout_ms: self.call_timeout_ms,
            reconnect: self.reconnect,
            on_state: self.on_state,
            on_trace: self.on_trace,
        })
    }
}

/// `payload`: any JSON value, at most `max_handshake_payload` bytes of JSON.
fn payload(options: &JsValue) -> Result<Option<String>, JsValue> {
    let Some(value) = get(options, "payload")? else {
        return Ok(None);
    };
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
    Ok(Some(text))
}

/// `reconnect`: absent or `false` (never), `true` (the defaults), or
/// `{ maxAttempts?, initialDelayMs?, maxDelayMs? }`.
fn reconnect(options: &JsValue) -> Result<Option<ReconnectPolicy>, JsValue> {
    let Some(value) = get(options, "reconnect")? else {
        return Ok(None);
    };
    if let Some(on) = value.as_bool() {
        return Ok(on.then_some(ReconnectPolicy {
            max_attempts: 10,
            initial_delay_ms: 250,
            max_delay_ms: 10_000,
        }));
    }
    if !value.is_object() {
        return Err(invalid(
            "reconnect must be true, false or { maxAttempts?, initialDelayMs?, maxDelayMs? }",
        ));
    }
    Ok(Some(ReconnectPolicy {
        max_attempts: number(&value, "maxAttempts", 1000, "a number of attempts")?.unwrap_or(10),
        initial_delay_ms: u64::from(millis(&value, "initialDelayMs")?.unwrap_or(250)),
        max_delay_ms: u64::from(millis(&value, "maxDelayMs")?.unwrap_or(10_000)),
    }))
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
