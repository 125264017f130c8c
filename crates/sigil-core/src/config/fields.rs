//! The link between a [`Key`] and its field of [`Config`]: typed views for
//! reading and slots for writing, with each key's rules.

use std::path::PathBuf;

use super::key::Key;
use super::{
    Config, IpNet, LogLevel, Origin, REDACTED, ReplayStoreLocation, RevokedSessions, Setting,
};
use crate::keys::{PublicKey, SymmetricKey};

/// A field of [`Config`] to write, with the rules its values must follow.
pub(super) enum Slot<'a> {
    /// A string; `non_empty` refuses "".
    Text {
        setting: &'a mut Setting<String>,
        non_empty: bool,
    },
    /// A port number, 0 to 65535.
    Port(&'a mut Setting<u16>),
    /// A size, count, rate or duration within `range` (inclusive).
    Number {
        setting: &'a mut Setting<u64>,
        range: (u64, u64),
    },
    /// An optional list of non-empty strings.
    List(&'a mut Setting<Option<Vec<String>>>),
    /// An optional non-empty string.
    Name(&'a mut Setting<Option<String>>),
    /// One path or several (empty: unset).
    Paths(&'a mut Setting<Vec<PathBuf>>),
    /// One public key or several (empty: unset).
    PublicKeys(&'a mut Setting<Vec<PublicKey>>),
    /// One certificate serial number or several, hex (empty: unset).
    Serials(&'a mut Setting<Vec<String>>),
    /// A boolean.
    Flag(&'a mut Setting<bool>),
    /// An optional path; an empty path is refused.
    Path(&'a mut Setting<Option<PathBuf>>),
    /// An optional secret symmetric key, base64 of 32 bytes.
    Secret(&'a mut Setting<Option<SymmetricKey>>),
    /// A log level.
    Log(&'a mut Setting<LogLevel>),
    /// `memory` or a Redis URL (which may hold a password).
    Store(&'a mut Setting<ReplayStoreLocation>),
    /// A list of IP networks (CIDR); empty by default.
    Networks(&'a mut Setting<Vec<IpNet>>),
    /// An optional listening address, `HOST:PORT` or a port.
    Addr(&'a mut Setting<Option<String>>),
    /// `close` or `keep`.
    Revoked(&'a mut Setting<RevokedSessions>),
}

fn number(setting: &mut Setting<u64>, key: Key) -> Slot<'_> {
    Slot::Number {
        setting,
        range: key.range().unwrap_or((0, u64::MAX)),
    }
}

/// A field of [`Config`] to read.
pub(super) enum View<'a> {
    Text(&'a Setting<String>),
    Port(&'a Setting<u16>),
    Number(&'a Setting<u64>),
    List(&'a Setting<Option<Vec<String>>>),
    Name(&'a Setting<Option<String>>),
    Paths(&'a Setting<Vec<PathBuf>>),
    PublicKeys(&'a Setting<Vec<PublicKey>>),
    Serials(&'a Setting<Vec<String>>),
    Flag(&'a Setting<bool>),
    Path(&'a Setting<Option<PathBuf>>),
    Secret(&'a Setting<Option<SymmetricKey>>),
    Log(&'a Setting<LogLevel>),
    Store(&'a Setting<ReplayStoreLocation>),
    Networks(&'a Setting<Vec<IpNet>>),
    Addr(&'a Setting<Option<String>>),
    Revoked(&'a Setting<RevokedSessions>),
}

impl Config {
    /// The field of `key`, to write.
    pub(super) fn slot(&mut self, key: Key) -> Slot<'_> {
        match key {
            Key::Host => Slot::Text {
                setting: &mut self.host,
                non_empty: true,
            },
            Key::Port => Slot::Port(&mut self.port),
            Key::ServerKey => Slot::Paths(&mut self.server_key),
            Key::ClientKey => Slot::Path(&mut self.client_key),
            Key::ServerPublicKey => Slot::PublicKeys(&mut self.server_public_key),
            Key::AuthorizedKeys => Slot::Path(&mut self.authorized_keys),
            Key::AllowAnyClient => Slot::Flag(&mut self.allow_any_client),
            Key::Psk => Slot::Secret(&mut self.psk),
            Key::PskFile => Slot::Path(&mut self.psk_file),
            Key::Prologue => Slot::Text {
                setting: &mut self.prologue,
                non_empty: false,
            },
            Key::MaxMessageSize => number(&mut self.max_message_size, key),
            Key::MaxHandshakePayload => number(&mut self.max_handshake_payload, key),
            Key::HandshakeTimeoutMs => number(&mut self.handshake_timeout_ms, key),
            Key::IdleTimeoutMs => number(&mut self.idle_timeout_ms, key),
            Key::WriteTimeoutMs => number(&mut self.write_timeout_ms, key),
            Key::CallTimeoutMs => number(&mut self.call_timeout_ms, key),
            Key::MaxConnections => number(&mut self.max_connections, key),
            Key::MaxPendingHandshakes => number(&mut self.max_pending_handshakes, key),
            Key::MaxPendingPerIp => number(&mut self.max_pending_per_ip, key),
            Key::MaxInflight => number(&mut self.max_inflight, key),
            Key::MaxStreams => number(&mut self.max_streams, key),
            Key::StreamWindow => number(&mut self.stream_window, key),
            Key::MaxClockSkewMs => number(&mut self.max_clock_skew_ms, key),
            Key::ReplayCacheCapacity => number(&mut self.replay_cache_capacity, key),
            Key::ReplayStore => Slot::Store(&mut self.replay_store),
            Key::ReplayStoreTimeoutMs => number(&mut self.replay_store_timeout_ms, key),
            Key::HandshakeRatePerIp => number(&mut self.handshake_rate_per_ip, key),
            Key::HandshakeRatePerKey => number(&mut self.handshake_rate_per_key, key),
            Key::AllowedHosts => Slot::List(&mut self.allowed_hosts),
            Key::AllowedOrigins => Slot::List(&mut self.allowed_origins),
            Key::TrustedProxies => Slot::Networks(&mut self.trusted_proxies),
            Key::PingIntervalMs => number(&mut self.ping_interval_ms, key),
            Key::RevokedSessions => Slot::Revoked(&mut self.revoked_sessions),
            Key::MetricsAddr => Slot::Addr(&mut self.metrics_addr),
            Key::Log => Slot::Log(&mut self.log),
            Key::TlsCert => Slot::Path(&mut self.tls.cert),
            Key::TlsKey => Slot::Path(&mut self.tls.key),
            Key::TlsClientCa => Slot::Path(&mut self.tls.client_ca),
            Key::TlsRequireClientCert => Slot::Flag(&mut self.tls.require_client_cert),
            Key::TlsCa => Slot::Path(&mut self.tls.ca),
            Key::TlsClientCert => Slot::Path(&mut self.tls.client_cert),
            Key::TlsClientKey => Slot::Path(&mut self.tls.client_key),
            Key::TlsServerName => Slot::Name(&mut self.tls.server_name),
            Key::TlsServerSerial => Slot::Serials(&mut self.tls.server_serial),
        }
    }

    /// The field of `key`, to read.
    pub(super) fn view(&self, key: Key) -> View<'_> {
        match key {
            Key::Host => View::Text(&self.host),
            Key::Port => View::Port(&self.port),
            Key::ServerKey => View::Paths(&self.server_key),
            Key::ClientKey => View::Path(&self.client_key),
            Key::ServerPublicKey => View::PublicKeys(&self.server_public_key),
            Key::AuthorizedKeys => View::Path(&self.authorized_keys),
            Key::AllowAnyClient => View::Flag(&self.allow_any_client),
            Key::Psk => View::Secret(&self.psk),
            Key::PskFile => View::Path(&self.psk_file),
            Key::Prologue => View::Text(&self.prologue),
            Key::MaxMessageSize => View::Number(&self.max_message_size),
            Key::MaxHandshakePayload => View::Number(&self.max_handshake_payload),
            Key::HandshakeTimeoutMs => View::Number(&self.handshake_timeout_ms),
            Key::IdleTimeoutMs => View::Number(&self.idle_timeout_ms),
            Key::WriteTimeoutMs => View::Number(&self.write_timeout_ms),
            Key::CallTimeoutMs => View::Number(&self.call_timeout_ms),
            Key::MaxConnections => View::Number(&self.max_connections),
            Key::MaxPendingHandshakes => View::Number(&self.max_pending_handshakes),
            Key::MaxPendingPerIp => View::Number(&self.max_pending_per_ip),
            Key::MaxInflight => View::Number(&self.max_inflight),
            Key::MaxStreams => View::Number(&self.max_streams),
            Key::StreamWindow => View::Number(&self.stream_window),
            Key::MaxClockSkewMs => View::Number(&self.max_clock_skew_ms),
            Key::ReplayCacheCapacity => View::Number(&self.replay_cache_capacity),
            Key::ReplayStore => View::Store(&self.replay_store),
            Key::ReplayStoreTimeoutMs => View::Number(&self.replay_store_timeout_ms),
            Key::HandshakeRatePerIp => View::Number(&self.handshake_rate_per_ip),
            Key::HandshakeRatePerKey => View::Number(&self.handshake_rate_per_key),
            Key::AllowedHosts => View::List(&self.allowed_hosts),
            Key::AllowedOrigins => View::List(&self.allowed_origins),
            Key::TrustedProxies => View::Networks(&self.trusted_proxies),
            Key::PingIntervalMs => View::Number(&self.ping_interval_ms),
            Key::RevokedSessions => View::Revoked(&self.revoked_sessions),
            Key::MetricsAddr => View::Addr(&self.metrics_addr),
            Key::Log => View::Log(&self.log),
            Key::TlsCert => View::Path(&self.tls.cert),
            Key::TlsKey => View::Path(&self.tls.key),
            Key::TlsClientCa => View::Path(&self.tls.client_ca),
            Key::TlsRequireClientCert => View::Flag(&self.tls.require_client_cert),
            Key::TlsCa => View::Path(&self.tls.ca),
            Key::TlsClientCert => View::Path(&self.tls.client_cert),
            Key::TlsClientKey => View::Path(&self.tls.client_key),
            Key::TlsServerName => View::Name(&self.tls.server_name),
            Key::TlsServerSerial => View::Serials(&self.tls.server_serial),
        }
    }
}

/// Shown for an optional key without a value.
const UNSET: &str = "(unset)";

impl View<'_> {
    pub(super) fn origin(&self) -> &Origin {
        match self {
            View::Text(s) => &s.origin,
            View::Port(s) => &s.origin,
            View::Number(s) => &s.origin,
            View::List(s) => &s.origin,
            View::Name(s) => &s.origin,
            View::Paths(s) => &s.origin,
            View::PublicKeys(s) => &s.origin,
            View::Serials(s) => &s.origin,
            View::Flag(s) => &s.origin,
            View::Path(s) => &s.origin,
            View::Secret(s) => &s.origin,
            View::Log(s) => &s.origin,
            View::Store(s) => &s.origin,
            View::Networks(s) => &s.origin,
            View::Addr(s) => &s.origin,
            View::Revoked(s) => &s.origin,
        }
    }

    pub(super) fn is_set(&self) -> bool {
        match self {
            View::Path(s) => s.value.is_some(),
            View::Name(s) => s.value.is_some(),
            View::Paths(s) => !s.value.is_empty(),
            View::PublicKeys(s) => !s.value.is_empty(),
            View::Serials(s) => !s.value.is_empty(),
            View::List(s) => s.value.is_some(),
            View::Secret(s) => s.value.is_some(),
            View::Addr(s) => s.value.is_some(),
            _ => true,
        }
    }

    /// The value in TOML form; secrets redacted.
    pub(super) fn display_value(&self) -> String {
        match self {
            View::Text(s) => toml_string(&s.value),
            View::Port(s) => s.value.to_string(),
            View::Number(s) => s.value.to_string(),
            View::List(s) => s
                .value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), |items| toml_array(items)),
            View::Name(s) => s
                .value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), |n| toml_string(n)),
            View::Paths(s) => one_or_several(s.value.iter().map(|p| p.to_string_lossy())),
            View::PublicKeys(s) => one_or_several(s.value.iter().map(ToString::to_string)),
            View::Serials(s) => one_or_several(s.value.iter()),
            View::Flag(s) => s.value.to_string(),
            View::Path(s) => s
                .value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), |p| toml_string(&p.to_string_lossy())),
            View::Secret(s) => match s.value {
                Some(_) => REDACTED.to_owned(),
                None => UNSET.to_owned(),
            },
            View::Log(s) => toml_string(s.value.as_str()),
            // A password in the URL shows as `<redacted>`.
            View::Store(s) => toml_string(&s.value.redacted()),
            View::Networks(s) => {
                toml_array(&s.value.iter().map(ToString::to_string).collect::<Vec<_>>())
            }
            View::Addr(s) => s
                .value
                .as_ref()
                .map_or_else(|| UNSET.to_owned(), |a| toml_string(a)),
            View::Revoked(s) => toml_string(s.value.as_str()),
        }
    }
}

/// A TOML array of strings: `["a", "b"]`.
fn toml_array<T: AsRef<str>>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(|i| toml_string(i.as_ref())).collect();
    format!("[{}]", items.join(", "))
}

/// A key that takes one value or several: unset, one string, or an array.
fn one_or_several<T: AsRef<str>>(items: impl Iterator<Item = T>) -> String {
    let items: Vec<T> = items.collect();
    match items.as_slice() {
        [] => UNSET.to_owned(),
        [one] => toml_string(one.as_ref()),
        several => toml_array(several),
    }
}

/// A TOML basic string: quoted, with `"`, `\` and control characters escaped.
pub(super) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("a"), "\"a\"");
        assert_eq!(toml_string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn every_key_has_a_field_of_its_kind() {
        let mut config = Config::default();
        for key in Key::ALL {
            assert_eq!(config.view(key).origin(), &Origin::Default);
            let secret = matches!(config.slot(key), Slot::Secret(_));
            assert_eq!(secret, key.is_secret(), "{key:?}");
        }
    }
}
