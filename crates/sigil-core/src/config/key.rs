//! The known keys, their names in a file and in the environment, and
//! suggestions for names that are almost right.

/// Prefix of every environment variable that configures sigil.
pub(super) const ENV_PREFIX: &str = "SIGIL_";

/// Every configuration key. [`Key::ALL`] lists them in the documented order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names, reason = "variants mirror the keys' names")]
pub(super) enum Key {
    Host,
    Port,
    ServerKey,
    ClientKey,
    ServerPublicKey,
    AuthorizedKeys,
    AllowAnyClient,
    Psk,
    PskFile,
    Prologue,
    MaxMessageSize,
    MaxHandshakePayload,
    HandshakeTimeoutMs,
    IdleTimeoutMs,
    WriteTimeoutMs,
    CallTimeoutMs,
    MaxConnections,
    MaxPendingHandshakes,
    MaxPendingPerIp,
    MaxInflight,
    MaxStreams,
    StreamWindow,
    MaxClockSkewMs,
    ReplayCacheCapacity,
    ReplayStore,
    ReplayStoreTimeoutMs,
    HandshakeRatePerIp,
    HandshakeRatePerKey,
    AllowedHosts,
    AllowedOrigins,
    TrustedProxies,
    PingIntervalMs,
    RevokedSessions,
    MetricsAddr,
    Log,
    TlsCert,
    TlsKey,
    TlsClientCa,
    TlsRequireClientCert,
    TlsCa,
    TlsClientCert,
    TlsClientKey,
    TlsServerName,
    TlsServerSerial,
}

impl Key {
    /// Every key, in the order of [`super::Config::entries`]: top-level keys
    /// first, then the `tls` table.
    pub(super) const ALL: [Key; 44] = [
        Key::Host,
        Key::Port,
        Key::ServerKey,
        Key::ClientKey,
        Key::ServerPublicKey,
        Key::AuthorizedKeys,
        Key::AllowAnyClient,
        Key::Psk,
        Key::PskFile,
        Key::Prologue,
        Key::MaxMessageSize,
        Key::MaxHandshakePayload,
        Key::HandshakeTimeoutMs,
        Key::IdleTimeoutMs,
        Key::WriteTimeoutMs,
        Key::CallTimeoutMs,
        Key::MaxConnections,
        Key::MaxPendingHandshakes,
        Key::MaxPendingPerIp,
        Key::MaxInflight,
        Key::MaxStreams,
        Key::StreamWindow,
        Key::MaxClockSkewMs,
        Key::ReplayCacheCapacity,
        Key::ReplayStore,
        Key::ReplayStoreTimeoutMs,
        Key::HandshakeRatePerIp,
        Key::HandshakeRatePerKey,
        Key::AllowedHosts,
        Key::AllowedOrigins,
        Key::TrustedProxies,
        Key::PingIntervalMs,
        Key::RevokedSessions,
        Key::MetricsAddr,
        Key::Log,
        Key::TlsCert,
        Key::TlsKey,
        Key::TlsClientCa,
        Key::TlsRequireClientCert,
        Key::TlsCa,
        Key::TlsClientCert,
        Key::TlsClientKey,
        Key::TlsServerName,
        Key::TlsServerSerial,
    ];

    /// The key's name in a file and in messages; a table's keys are dotted
    /// (`tls.cert`).
    pub(super) const fn name(self) -> &'static str {
        match self {
            Key::Host => "host",
            Key::Port => "port",
            Key::ServerKey => "server_key",
            Key::ClientKey => "client_key",
            Key::ServerPublicKey => "server_public_key",
            Key::AuthorizedKeys => "authorized_keys",
            Key::AllowAnyClient => "allow_any_client",
            Key::Psk => "psk",
            Key::PskFile => "psk_file",
            Key::Prologue => "prologue",
            Key::MaxMessageSize => "max_message_size",
            Key::MaxHandshakePayload => "max_handshake_payload",
            Key::HandshakeTimeoutMs => "handshake_timeout_ms",
            Key::IdleTimeoutMs => "idle_timeout_ms",
            Key::WriteTimeoutMs => "write_timeout_ms",
            Key::CallTimeoutMs => "call_timeout_ms",
            Key::MaxConnections => "max_connections",
            Key::MaxPendingHandshakes => "max_pending_handshakes",
            Key::MaxPendingPerIp => "max_pending_per_ip",
            Key::MaxInflight => "max_inflight",
            Key::MaxStreams => "max_streams",
            Key::StreamWindow => "stream_window",
            Key::MaxClockSkewMs => "max_clock_skew_ms",
            Key::ReplayCacheCapacity => "replay_cache_capacity",
            Key::ReplayStore => "replay_store",
            Key::ReplayStoreTimeoutMs => "replay_store_timeout_ms",
            Key::HandshakeRatePerIp => "handshake_rate_per_ip",
            Key::HandshakeRatePerKey => "handshake_rate_per_key",
            Key::AllowedHosts => "allowed_hosts",
            Key::AllowedOrigins => "allowed_origins",
            Key::TrustedProxies => "trusted_proxies",
            Key::PingIntervalMs => "ping_interval_ms",
            Key::RevokedSessions => "revoked_sessions",
            Key::MetricsAddr => "metrics_addr",
            Key::Log => "log",
            Key::TlsCert => "tls.cert",
            Key::TlsKey => "tls.key",
            Key::TlsClientCa => "tls.client_ca",
            Key::TlsRequireClientCert => "tls.require_client_cert",
            Key::TlsCa => "tls.ca",
            Key::TlsClientCert => "tls.client_cert",
            Key::TlsClientKey => "tls.client_key",
            Key::TlsServerName => "tls.server_name",
            Key::TlsServerSerial => "tls.server_serial",
        }
    }

    /// The inclusive range of a numeric key; `None` for other keys. Every
    /// numeric key has one, so no value can overflow what it sizes or
    /// times (the book's configuration chapter lists them).
    pub(super) const fn range(self) -> Option<(u64, u64)> {
        Some(match self {
            Key::MaxMessageSize => (64, 16 * 1024 * 1024),
            Key::MaxHandshakePayload => (0, 65_536),
            Key::HandshakeTimeoutMs | Key::WriteTimeoutMs => (100, 300_000),
            Key::IdleTimeoutMs => (100, 86_400_000),
            Key::CallTimeoutMs => (10, 3_600_000),
            Key::MaxConnections => (1, 1_000_000),
            Key::MaxPendingHandshakes | Key::MaxPendingPerIp | Key::MaxInflight => (1, 65_536),
            Key::MaxStreams => (0, 65_536),
            Key::StreamWindow => (1, crate::rpc::MAX_STREAM_CREDIT as u64),
            // 0: timestamps must match the server's clock exactly (tests with a virtual clock).
            Key::MaxClockSkewMs => (0, 600_000),
            Key::ReplayCacheCapacity => (16, 16 * 1024 * 1024),
            Key::ReplayStoreTimeoutMs => (1, 60_000),
            Key::HandshakeRatePerIp | Key::HandshakeRatePerKey => (1, 1_000_000),
            // 0: no pings.
            Key::PingIntervalMs => (0, 3_600_000),
            _ => return None,
        })
    }

    /// Whether the value is a secret that is never shown.
    pub(super) fn is_secret(self) -> bool {
        self == Key::Psk
    }

    /// Looks a key up by its (dotted) name.
    pub(super) fn from_name(name: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The environment variable that sets this key: `SIGIL_` + the name
    /// upper-cased, with `__` for the `.` of a table (`SIGIL_TLS__CERT`).
    pub(super) fn env_var(self) -> String {
        let mut var = String::from(ENV_PREFIX);
        var.push_str(&self.name().to_ascii_uppercase().replace('.', "__"));
        var
    }

    /// Looks a key up by its environment variable name.
    pub(super) fn from_env_var(var: &str) -> Option<Key> {
        Key::ALL.into_iter().find(|k| k.env_var() == var)
    }

    /// The known key nearest to an unknown (dotted) name, if one is near.
    pub(super) fn suggest(name: &str) -> Option<&'static str> {
        nearest(name, Key::ALL.map(Key::name), '.')
    }

    /// The known variable nearest to an unknown `SIGIL_*` name, if one is near.
    pub(super) fn suggest_env(var: &str) -> Option<String> {
        let tail = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
        let vars = Key::ALL.map(Key::env_var);
        let tails = vars.each_ref().map(|v| &v[ENV_PREFIX.len()..]);
        nearest(tail, tails, '_').map(|t| format!("{ENV_PREFIX}{t}"))
    }
}

/// The candidate nearest to `name`: the one at the smallest edit distance if
/// that distance is small for the name's length (at most a third of it, and
/// at least 1), or else one whose last `sep`-separated part equals `name`
/// (`cert` -> `tls.cert`). Case is ignored.
fn nearest<'a, const N: usize>(name: &str, candidates: [&'a str; N], sep: char) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    let limit = (lower.chars().count() / 3).max(1);
    let by_distance = candidates
        .iter()
        .map(|c| (edit_distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    by_distance.or_else(|| {
        candidates.into_iter().find(|c| {
            let c = c.to_ascii_lowercase();
            let tail = c.rsplit(sep).next().unwrap_or_default();
            tail == lower.trim_matches(sep) && !tail.is_empty()
        })
    })
}

/// Edit distance between two strings, counting insertions, deletions,
/// substitutions and swaps of two neighbours as one edit each (optimal
/// string alignment).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: distance between a[..i] and b[..j]; three rows suffice.
    let width = b.len() + 1;
    let mut before: Vec<usize> = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 1);
        assert_eq!(edit_distance("pot", "port"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, a) in Key::ALL.iter().enumerate() {
            assert_eq!(Key::from_name(a.name()), Some(*a));
            assert_eq!(Key::from_env_var(&a.env_var()), Some(*a));
            for b in &Key::ALL[i + 1..] {
                assert_ne!(a.name(), b.name());
            }
        }
        assert_eq!(Key::TlsCert.env_var(), "SIGIL_TLS__CERT");
        assert_eq!(Key::MaxMessageSize.env_var(), "SIGIL_MAX_MESSAGE_SIZE");
    }

    #[test]
    fn suggestions() {
        assert_eq!(Key::suggest("prot"), Some("port"));
        assert_eq!(Key::suggest("Port"), Some("port"));
        assert_eq!(Key::suggest("tls.cret"), Some("tls.cert"));
        assert_eq!(Key::suggest("tsl.cert"), Some("tls.cert"));
        assert_eq!(Key::suggest("cert"), Some("tls.cert"));
        assert_eq!(Key::suggest("max_mesage_size"), Some("max_message_size"));
        assert_eq!(Key::suggest("zzz"), None);
        assert_eq!(Key::suggest("foo"), None);
        assert_eq!(
            Key::suggest_env("SIGIL_PROT").as_deref(),
            Some("SIGIL_PORT")
        );
        assert_eq!(
            Key::suggest_env("SIGIL_TLS_CERT").as_deref(),
            Some("SIGIL_TLS__CERT")
        );
        assert_eq!(
            Key::suggest_env("SIGIL_CERT").as_deref(),
            Some("SIGIL_TLS__CERT")
        );
        assert_eq!(Key::suggest_env("SIGIL_"), None);
        assert_eq!(Key::suggest_env("SIGIL_WHATEVER_ELSE"), None);
    }
}
