//! Turning a value from any layer (TOML from a file, text from the
//! environment or an override) into a typed field.

use std::path::PathBuf;

use toml::de::DeValue;

use super::fields::Slot;
use super::key::Key;
use super::net::listen_addr;
use super::{
    Config, ConfigError, IpNet, LogLevel, Origin, ReplayStoreLocation, RevokedSessions, Setting,
};
use crate::keys::{PublicKey, SymmetricKey};

/// A value as one layer gives it.
#[derive(Clone, Copy)]
pub(super) enum Input<'a> {
    /// Text, from the environment or an override.
    Text(&'a str),
    /// A typed TOML value, from a file.
    Toml(&'a DeValue<'a>),
}

/// Checks `input` against the rules of `key` and, if it passes, stores it in
/// `config` with `origin`. The error never contains the value.
pub(super) fn assign(
    config: &mut Config,
    key: Key,
    input: Input<'_>,
    origin: Origin,
) -> Result<(), ConfigError> {
    match apply(config.slot(key), input, origin.clone()) {
        Ok(()) => Ok(()),
        Err(expected) => Err(ConfigError::InvalidValue {
            key: key.name().to_owned(),
            origin,
            expected,
        }),
    }
}

fn set<T>(setting: &mut Setting<T>, value: T, origin: Origin) {
    *setting = Setting { value, origin };
}

/// Stores the value or says what was expected.
fn apply(slot: Slot<'_>, input: Input<'_>, origin: Origin) -> Result<(), String> {
    match slot {
        Slot::Text { setting, non_empty } => {
            let text = string(input, "a string")?;
            if non_empty && text.is_empty() {
                return Err("must not be empty".to_owned());
            }
            set(setting, text.to_owned(), origin);
        }
        Slot::Port(setting) => {
            const EXPECTED: &str = "an integer from 0 to 65535";
            let n = integer(input, EXPECTED)?;
            let port = u16::try_from(n).map_err(|_| format!("expected {EXPECTED}"))?;
            set(setting, port, origin);
        }
        Slot::Number {
            setting,
            range: (min, max),
        } => {
            let n = integer(input, &format!("a whole number from {min} to {max}"))?;
            if !(min..=max).contains(&n) {
                return Err(format!("must be from {min} to {max}"));
            }
            set(setting, n, origin);
        }
        Slot::List(setting) => {
            set(
                setting,
                Some(items(input, "a list of non-empty strings")?),
                origin,
            );
        }
        Slot::Name(setting) => {
            let text = string(input, "a string")?;
            if text.is_empty() {
                return Err("must not be empty".to_owned());
            }
            set(setting, Some(text.to_owned()), origin);
        }
        Slot::Paths(setting) => {
            let paths = several(input, "a path, or a list of paths")?;
            set(
                setting,
                paths.into_iter().map(PathBuf::from).collect(),
                origin,
            );
        }
        Slot::PublicKeys(setting) => {
            const EXPECTED: &str = "a public key (base64 or PEM), or a list of them";
            let keys = several(input, EXPECTED)?
                .iter()
                .map(|text| PublicKey::parse(text).map_err(|e| format!("expected {EXPECTED}: {e}")))
                .collect::<Result<_, _>>()?;
            set(setting, keys, origin);
        }
        Slot::Serials(setting) => {
            const EXPECTED: &str =
                "a certificate serial number in hex (`0a:1b:…` or `0A1B…`), or a list of them";
            let serials = several(input, EXPECTED)?
                .iter()
                .map(|text| {
                    crate::cert::normalize_serial(text)
                        .ok_or_else(|| format!("expected {EXPECTED}"))
                })
                .collect::<Result<_, _>>()?;
            set(setting, serials, origin);
        }
        Slot::Networks(setting) => {
            const EXPECTED: &str = "a list of IP networks (CIDR: 10.0.0.0/8, ::1/128)";
            // The environment's way to say "none": an empty value.
            let items = match input {
                Input::Text("") => Vec::new(),
                _ => items(input, EXPECTED)?,
            };
            let nets = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.parse::<IpNet>()
                        .map_err(|e| format!("expected {EXPECTED}: entry {}: {e}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?;
            set(setting, nets, origin);
        }
        Slot::Addr(setting) => {
            const EXPECTED: &str = "an address to listen on";
            let text = string(input, EXPECTED)?;
            let addr = listen_addr(text).map_err(|e| format!("expected {e}"))?;
            set(setting, Some(addr), origin);
        }
        Slot::Revoked(setting) => {
            const EXPECTED: &str = "close or keep";
            let text = string(input, EXPECTED)?;
            let choice =
                RevokedSessions::from_name(text).ok_or_else(|| format!("expected {EXPECTED}"))?;
            set(setting, choice, origin);
        }
        Slot::Flag(setting) => {
            let flag = match input {
                Input::Text("true" | "1") => true,
                Input::Text("false" | "0") => false,
                Input::Text(text) => return Err(expected_text("true, false, 1 or 0", text)),
                Input::Toml(DeValue::Boolean(b)) => *b,
                Input::Toml(other) => return Err(expected_toml("true or false", other)),
            };
            set(setting, flag, origin);
        }
        Slot::Path(setting) => {
            let text = string(input, "a path")?;
            if text.is_empty() {
                return Err("expected a path, found an empty value".to_owned());
            }
            set(setting, Some(PathBuf::from(text)), origin);
        }
        Slot::Secret(setting) => {
            // The key error is not shown: only what was expected, never a
            // hint of the value.
            const EXPECTED: &str = "a key in base64 of 32 bytes (44 characters)";
            let text = string(input, EXPECTED)?;
            let key =
                SymmetricKey::from_base64(text).map_err(|_| format!("expected {EXPECTED}"))?;
            set(setting, Some(key), origin);
        }
        Slot::Log(setting) => {
            const EXPECTED: &str = "one of error, warn, info, debug, trace";
            let text = string(input, EXPECTED)?;
            let level = LogLevel::from_name(text).ok_or_else(|| format!("expected {EXPECTED}"))?;
            set(setting, level, origin);
        }
        Slot::Store(setting) => {
            let text = string(input, super::store::EXPECTED)?;
            set(setting, ReplayStoreLocation::parse(text)?, origin);
        }
    }
    Ok(())
}

/// The items of a value that may hold one string or several: a TOML string
/// or array of strings, or text from the environment or an override, where
/// items are separated by commas. No item may be empty.
fn items(input: Input<'_>, expected: &str) -> Result<Vec<String>, String> {
    let items: Vec<String> = match input {
        Input::Text(text) => text.split(',').map(|i| i.trim().to_owned()).collect(),
        Input::Toml(DeValue::String(s)) => vec![s.to_string()],
        Input::Toml(DeValue::Array(items)) => items
            .iter()
            .map(|i| match i.get_ref() {
                DeValue::String(s) => Ok(s.to_string()),
                other => Err(expected_toml(expected, other)),
            })
            .collect::<Result<_, _>>()?,
        Input::Toml(other) => return Err(expected_toml(expected, other)),
    };
    if items.iter().any(String::is_empty) {
        return Err(format!("expected {expected}, found an empty entry"));
    }
    Ok(items)
}

/// [`items`], of which there must be at least one.
fn several(input: Input<'_>, expected: &str) -> Result<Vec<String>, String> {
    let items = items(input, expected)?;
    if items.is_empty() {
        return Err(format!("expected {expected}, found an empty list"));
    }
    Ok(items)
}

/// The text of a string value.
fn string<'a>(input: Input<'a>, expected: &str) -> Result<&'a str, String> {
    match input {
        Input::Text(text) => Ok(text),
        Input::Toml(DeValue::String(s)) => Ok(s),
        Input::Toml(other) => Err(expected_toml(expected, other)),
    }
}

/// A non-negative integer: decimal digits as text, or a TOML integer.
fn integer(input: Input<'_>, expected: &str) -> Result<u64, String> {
    let parsed = match input {
        Input::Text(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            text.parse::<u64>().ok()
        }
        Input::Text(text) => return Err(expected_text(expected, text)),
        Input::Toml(DeValue::Integer(i)) => u64::from_str_radix(i.as_str(), i.radix()).ok(),
        Input::Toml(other) => return Err(expected_toml(expected, other)),
    };
    parsed.ok_or_else(|| format!("expected {expected}, found a number out of range"))
}

fn expected_text(expected: &str, text: &str) -> String {
    if text.is_empty() {
        format!("expected {expected}, found an empty value")
    } else {
        format!("expected {expected}")
    }
}

fn expected_toml(expected: &str, found: &DeValue<'_>) -> String {
    format!("expected {expected}, found {}", type_name(found))
}

/// A TOML value's type, with its article: `a string`, `an integer`.
pub(super) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}
