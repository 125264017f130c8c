//! Layered configuration: precedence, origins, lockout and pins, errors,
//! secrets, authorized_keys.

use std::path::{Path, PathBuf};

use sigil_core::config::{
    Config, ConfigError, IgnoreReason, KEYS, LogLevel, Origin, REDACTED, ReplayStoreLocation,
    RevokedSessions, parse_authorized_keys,
};
use sigil_core::{PublicKey, SymmetricKey};

/// RFC 7748 section 6.1, Alice's public key, in base64.
const ALICE_PK: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
/// Bob's.
const BOB_PK: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file_origin(line: usize) -> Origin {
    Origin::File {
        path: "sigil.toml".into(),
        line,
    }
}

fn env_origin(var: &str) -> Origin {
    Origin::Env { var: var.into() }
}

/// A psk in base64, and its text.
fn psk() -> (SymmetricKey, String) {
    let key = SymmetricKey::from_bytes(&[0x5a; 32]);
    let text = key.to_base64().to_string();
    (key, text)
}

/// The error of a build that must fail.
fn error<T>(result: Result<T, ConfigError>) -> ConfigError {
    match result {
        Ok(_) => panic!("the configuration was accepted"),
        Err(e) => e,
    }
}

fn file_err(contents: &str) -> ConfigError {
    error(Config::builder().file("sigil.toml", contents).build())
}

fn env_err(pairs: &[(&str, &str)]) -> ConfigError {
    error(Config::builder().env(env(pairs)).build())
}

#[test]
fn defaults() -> Result<(), ConfigError> {
    let c = Config::builder().build()?.config;
    assert_eq!(c.host.value, "127.0.0.1");
    assert_eq!(c.port.value, 7070);
    assert!(c.server_key.value.is_empty());
    assert_eq!(c.client_key.value, None);
    assert!(c.server_public_key.value.is_empty());
    assert_eq!(c.authorized_keys.value, None);
    assert!(!c.allow_any_client.value);
    assert!(c.psk.value.is_none());
    assert_eq!(c.psk_file.value, None);
    assert_eq!(c.prologue.value, "");
    assert_eq!(c.max_message_size.value, 1_048_576);
    assert_eq!(c.max_handshake_payload.value, 4096);
    assert_eq!(c.handshake_timeout_ms.value, 10_000);
    assert_eq!(c.idle_timeout_ms.value, 300_000);
    assert_eq!(c.max_connections.value, 1024);
    assert_eq!(c.max_inflight.value, 64);
    assert_eq!(c.max_streams.value, 16);
    assert_eq!(c.stream_window.value, 16);
    assert_eq!(c.max_clock_skew_ms.value, 60_000);
    assert_eq!(c.replay_cache_capacity.value, 262_144);
    assert_eq!(c.replay_store.value, ReplayStoreLocation::Memory);
    assert_eq!(c.replay_store_timeout_ms.value, 250);
    assert_eq!(c.write_timeout_ms.value, 10_000);
    assert_eq!(c.call_timeout_ms.value, 30_000);
    assert_eq!(c.max_pending_handshakes.value, 256);
    assert_eq!(c.max_pending_per_ip.value, 8);
    assert_eq!(c.handshake_rate_per_ip.value, 20);
    assert_eq!(c.handshake_rate_per_key.value, 100);
    assert_eq!(c.allowed_hosts.value, None);
    assert_eq!(c.allowed_origins.value, None);
    assert!(c.trusted_proxies.value.is_empty());
    assert_eq!(c.ping_interval_ms.value, 30_000);
    assert_eq!(c.revoked_sessions.value, RevokedSessions::Close);
    assert_eq!(c.metrics_addr.value, None);
    assert_eq!(c.log.value, LogLevel::Info);
    assert_eq!(c.tls.cert.value, None);
    assert_eq!(c.tls.key.value, None);
    assert_eq!(c.tls.client_ca.value, None);
    assert!(!c.tls.require_client_cert.value);
    assert_eq!(c.tls.ca.value, None);
    assert_eq!(c.tls.client_cert.value, None);
    assert_eq!(c.tls.client_key.value, None);
    assert_eq!(c.tls.server_name.value, None);
    assert!(c.tls.server_serial.value.is_empty());

    let entries = c.entries();
    let keys: Vec<&str> = entries.iter().map(|e| e.key).collect();
    assert_eq!(keys, KEYS);
    assert!(entries.iter().all(|e| e.origin == Origin::Default));
    let shown = |key: &str| {
        entries
            .iter()
            .find(|e| e.key == key)
            .map(ToString::to_string)
            .unwrap_or_default()
    };
    assert_eq!(shown("host"), "host = \"127.0.0.1\"");
    assert_eq!(shown("port"), "port = 7070");
    assert_eq!(shown("server_key"), "server_key = (unset)");
    assert_eq!(shown("allow_any_client"), "allow_any_client = false");
    assert_eq!(shown("prologue"), "prologue = \"\"");
    assert_eq!(shown("max_streams"), "max_streams = 16");
    assert_eq!(shown("stream_window"), "stream_window = 16");
    assert_eq!(shown("allowed_hosts"), "allowed_hosts = (unset)");
    assert_eq!(shown("log"), "log = \"info\"");
    assert_eq!(shown("trusted_proxies"), "trusted_proxies = []");
    assert_eq!(shown("ping_interval_ms"), "ping_interval_ms = 30000");
    assert_eq!(shown("revoked_sessions"), "revoked_sessions = \"close\"");
    assert_eq!(shown("metrics_addr"), "metrics_addr = (unset)");
    assert_eq!(
        shown("tls.require_client_cert"),
        "tls.require_client_cert = false"
    );
    assert_eq!(shown("tls.server_name"), "tls.server_name = (unset)");
    assert_eq!(shown("tls.server_serial"), "tls.server_serial = (unset)");
    assert_eq!(keys[..2], ["host", "port"]);
    assert!(!entries[2].is_set && entries[0].is_set);
    Ok(())
}

#[test]
fn every_layer_beats_the_one_below() -> Result<(), ConfigError> {
    let file = "port = 1001\nhost = \"10.0.0.1\"\nprologue = \"from file\"\nmax_inflight = 7\n";
    let vars = env(&[("SIGIL_PORT", "1002"), ("SIGIL_HOST", "10.0.0.2")]);

    let c = Config::builder().file("sigil.toml", file).build()?.config;
    assert_eq!((c.port.value, c.port.origin), (1001, file_origin(1)));

    let c = Config::builder()
        .file("sigil.toml", file)
        .env(vars.clone())
        .build()?
        .config;
    assert_eq!(
        (c.port.value, c.port.origin),
        (1002, env_origin("SIGIL_PORT"))
    );
    assert_eq!(c.host.value, "10.0.0.2");
    assert_eq!(c.prologue.value, "from file");
    assert_eq!(c.prologue.origin, file_origin(3));
    assert_eq!(c.max_inflight.value, 7);
    assert_eq!(c.max_inflight.origin, file_origin(4));
    assert_eq!(c.max_connections.origin, Origin::Default);

    // Overrides beat everything; a later override beats an earlier one.
    let c = Config::builder()
        .set("port", "1004", "code")?
        .file("sigil.toml", file)
        .env(vars)
        .set("port", "1003", "--port")?
        .set("host", "10.0.0.3", "--host")?
        .build()?
        .config;
    assert_eq!(c.port.value, 1003);
    assert_eq!(
        c.port.origin,
        Origin::Override {
            source: "--port".into()
        }
    );
    assert_eq!(c.host.value, "10.0.0.3");
    assert_eq!(c.prologue.origin, file_origin(3));
    Ok(())
}

#[test]
fn later_files_beat_earlier_files() -> Result<(), ConfigError> {
    let c = Config::builder()
        .file("/etc/sigil.toml", "port = 1\nhost = \"a\"\n")
        .file("sigil.toml", "\nport = 2\n")
        .build()?
        .config;
    assert_eq!(c.port.value, 2);
    assert_eq!(c.port.origin, file_origin(2));
    assert_eq!(c.host.origin.to_string(), "/etc/sigil.toml:2");
    Ok(())
}

#[test]
fn origins_display() {
    assert_eq!(Origin::Default.to_string(), "default");
    assert_eq!(file_origin(3).to_string(), "sigil.toml:3");
    assert_eq!(env_origin("SIGIL_PORT").to_string(), "env SIGIL_PORT");
    let o = Origin::Override {
        source: "--port".into(),
    };
    assert_eq!(o.to_string(), "--port");
}

#[test]
fn file_values_of_every_kind_with_their_lines() -> Result<(), ConfigError> {
    let file = format!(
        "# sigil\n\
         host = \"::1\"\n\
         port = 0\n\
         server_key = \"server.key\"\n\
         client_key = \"client.key\"\n\
         server_public_key = \"{ALICE_PK}\"\n\
         authorized_keys = \"authorized_keys\"\n\
         allow_any_client = true\n\
         psk_file = \"psk\"\n\
         max_message_size = 1_000\n\
         max_handshake_payload = 0\n\
         max_clock_skew_ms = 0\n\
         log = \"debug\"\n\
         \n\
         [tls]\n\
         cert = \"cert.pem\"\n\
         key = \"key.pem\"\n\
         client_ca = \"ca.pem\"\n\
         require_client_cert = true\n"
    );
    let c = Config::builder().file("sigil.toml", &file).build()?.config;
    assert_eq!(c.host.value, "::1");
    assert_eq!(c.port.value, 0);
    assert_eq!(c.server_key.value, [Path::new("server.key")]);
    assert_eq!(c.server_key.origin, file_origin(4));
    assert_eq!(c.client_key.value, Some(PathBuf::from("client.key")));
    assert_eq!(
        c.server_public_key.value,
        [PublicKey::parse(ALICE_PK).unwrap()]
    );
    assert_eq!(c.server_public_key.origin, file_origin(6));
    assert_eq!(
        c.authorized_keys.value,
        Some(PathBuf::from("authorized_keys"))
    );
    assert!(c.allow_any_client.value);
    assert_eq!(c.psk_file.value, Some(PathBuf::from("psk")));
    assert_eq!(c.max_message_size.value, 1000);
    assert_eq!(c.max_handshake_payload.value, 0);
    assert_eq!(c.max_clock_skew_ms.value, 0);
    assert_eq!(c.log.value, LogLevel::Debug);
    assert_eq!(c.log.origin, file_origin(13));
    assert_eq!(c.tls.cert.value, Some(PathBuf::from("cert.pem")));
    assert_eq!(c.tls.cert.origin, file_origin(16));
    assert_eq!(c.tls.key.origin, file_origin(17));
    assert_eq!(c.tls.client_ca.value, Some(PathBuf::from("ca.pem")));
    assert!(c.tls.require_client_cert.value);
    assert_eq!(c.tls.require_client_cert.origin, file_origin(19));

    let entries = c.entries();
    let cert = entries.iter().find(|e| e.key == "tls.cert").unwrap();
    assert_eq!(cert.to_string(), "tls.cert = \"cert.pem\"");
    assert_eq!(cert.origin.to_string(), "sigil.toml:16");
    let spk = entries
        .iter()
        .find(|e| e.key == "server_public_key")
        .unwrap();
    assert_eq!(spk.display_value, format!("\"{ALICE_PK}\""));
    Ok(())
}

/// Rotation: `server_key` and `server_public_key` take one value or a list
/// (comma-separated in the environment), shown as a string or an array.
#[test]
fn keys_that_take_one_value_or_several() -> Result<(), ConfigError> {
    let file = format!(
        "server_key = [\"new.key\", \"old.key\"]\nserver_public_key = [\"{ALICE_PK}\", \"{BOB_PK}\"]\n\
         [tls]\nserver_serial = \"0A:1B\"\nserver_name = \"rpc.example\"\nca = \"ca.pem\"\n\
         client_cert = \"me.pem\"\nclient_key = \"me.key\"\n"
    );
    let c = Config::builder().file("sigil.toml", &file).build()?.config;
    assert_eq!(
        c.server_key.value,
        [Path::new("new.key"), Path::new("old.key")]
    );
    let alice = PublicKey::parse(ALICE_PK).unwrap();
    let bob = PublicKey::parse(BOB_PK).unwrap();
    assert_eq!(c.server_public_key.value, [alice, bob]);
    assert_eq!(c.tls.server_serial.value, ["a1b"]);
    assert_eq!(c.tls.server_serial.origin, file_origin(4));
    assert_eq!(c.tls.server_name.value.as_deref(), Some("rpc.example"));
    assert_eq!(c.tls.ca.value, Some(PathBuf::from("ca.pem")));
    assert_eq!(c.tls.client_cert.value, Some(PathBuf::from("me.pem")));
    assert_eq!(c.tls.client_key.value, Some(PathBuf::from("me.key")));
    let shown: Vec<String> = c.entries().iter().map(ToString::to_string).collect();
    assert!(shown.contains(&"server_key = [\"new.key\", \"old.key\"]".to_owned()));
    assert!(shown.contains(&format!(
        "server_public_key = [\"{ALICE_PK}\", \"{BOB_PK}\"]"
    )));
    assert!(shown.contains(&"tls.server_serial = \"a1b\"".to_owned()));

    let c = Config::builder()
        .env(env(&[
            ("SIGIL_SERVER_PUBLIC_KEY", &format!("{BOB_PK}, {ALICE_PK}")),
            ("SIGIL_SERVER_KEY", "a.key"),
        ]))
        .build()?
        .config;
    assert_eq!(c.server_public_key.value, [bob, alice]);
    assert_eq!(c.server_key.value, [Path::new("a.key")]);
    assert_eq!(c.entries()[2].to_string(), "server_key = \"a.key\"");
    Ok(())
}

#[test]
fn dotted_and_inline_tls_keys() -> Result<(), ConfigError> {
    let c = Config::builder()
        .file(
            "sigil.toml",
            "tls.cert = \"a.pem\"\ntls = { key = \"b.pem\" }\n",
        )
        .build();
    // Defining `tls` twice is invalid TOML.
    assert!(matches!(c, Err(ConfigError::Toml { .. })));

    let c = Config::builder()
        .file("sigil.toml", "port = 1\ntls.cert = \"a.pem\"\n")
        .build()?
        .config;
    assert_eq!(c.tls.cert.value, Some(PathBuf::from("a.pem")));
    assert_eq!(c.tls.cert.origin, file_origin(2));

    let c = Config::builder()
        .file("sigil.toml", "\ntls = { key = \"b.pem\" }\n")
        .build()?
        .config;
    assert_eq!(c.tls.key.value, Some(PathBuf::from("b.pem")));
    assert_eq!(c.tls.key.origin, file_origin(2));
    Ok(())
}

#[test]
fn env_values_of_every_kind() -> Result<(), ConfigError> {
    let vars = env(&[
        ("PATH", "/usr/bin"),
        ("sigil_port", "1"),
        ("SIGIL_HOST", "0.0.0.0"),
        ("SIGIL_SERVER_PUBLIC_KEY", BOB_PK),
        ("SIGIL_ALLOW_ANY_CLIENT", "1"),
        ("SIGIL_PROLOGUE", ""),
        ("SIGIL_MAX_CONNECTIONS", "10"),
        ("SIGIL_LOG", "TRACE"),
        ("SIGIL_TLS__CERT", "/etc/sigil/cert.pem"),
        ("SIGIL_TLS__REQUIRE_CLIENT_CERT", "true"),
    ]);
    let resolved = Config::builder()
        .file(
            "sigil.toml",
            "prologue = \"x\"\n[tls]\ncert = \"file.pem\"\n",
        )
        .env(vars)
        .build()?;
    assert!(resolved.ignored_env.is_empty());
    let c = resolved.config;
    assert_eq!(c.port.value, 7070);
    assert_eq!(c.host.value, "0.0.0.0");
    assert_eq!(
        c.server_public_key.value,
        [PublicKey::parse(BOB_PK).unwrap()]
    );
    assert!(c.allow_any_client.value);
    assert_eq!(c.prologue.value, "");
    assert_eq!(c.prologue.origin, env_origin("SIGIL_PROLOGUE"));
    assert_eq!(c.max_connections.value, 10);
    assert_eq!(c.log.value, LogLevel::Trace);
    assert_eq!(c.tls.cert.value, Some(PathBuf::from("/etc/sigil/cert.pem")));
    assert_eq!(c.tls.cert.origin, env_origin("SIGIL_TLS__CERT"));
    assert_eq!(c.tls.cert.origin.to_string(), "env SIGIL_TLS__CERT");
    assert!(c.tls.require_client_cert.value);
    Ok(())
}

#[test]
fn env_given_twice_keeps_the_last_value() -> Result<(), ConfigError> {
    let c = Config::builder()
        .env(env(&[("SIGIL_PORT", "1")]))
        .env(env(&[("SIGIL_PORT", "2")]))
        .build()?
        .config;
    assert_eq!(c.port.value, 2);
    Ok(())
}

#[test]
fn lockout_reports_every_sigil_var() -> Result<(), ConfigError> {
    let vars = env(&[
        ("SIGIL_PORT", "9000"),
        ("HOME", "/root"),
        ("SIGIL_PROT", "9000"),
        ("SIGIL_MAX_INFLIGHT", "not a number"),
    ]);
    let resolved = Config::builder()
        .file("sigil.toml", "port = 8000\n")
        .env(vars)
        .no_env(true)
        .build()?;
    assert_eq!(resolved.config.port.value, 8000);
    assert_eq!(resolved.config.max_inflight.value, 64);
    let ignored = &resolved.ignored_env;
    let names: Vec<&str> = ignored.iter().map(|i| i.var.as_str()).collect();
    assert_eq!(names, ["SIGIL_MAX_INFLIGHT", "SIGIL_PORT", "SIGIL_PROT"]);
    assert!(
        ignored
            .iter()
            .all(|i| i.reason == IgnoreReason::EnvDisabled)
    );
    assert_eq!(
        ignored[1].to_string(),
        "ignored SIGIL_PORT (environment disabled)"
    );

    // no_env(false) lets it back in (and the unknown name is an error again).
    let err = Config::builder()
        .env(env(&[("SIGIL_PROT", "1")]))
        .no_env(true)
        .no_env(false)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::UnknownEnv { .. }));
    Ok(())
}

#[test]
fn pins_keep_env_out_of_one_key() -> Result<(), ConfigError> {
    let vars = env(&[
        ("SIGIL_PORT", "9000"),
        ("SIGIL_HOST", "0.0.0.0"),
        ("SIGIL_TLS__CERT", "evil.pem"),
        ("SIGIL_LOG", "not a level"),
    ]);
    let resolved = Config::builder()
        .file("sigil.toml", "[tls]\ncert = \"good.pem\"\n")
        .env(vars)
        .pin("port")?
        .pin("tls.cert")?
        .pin("log")?
        .build()?;
    let c = &resolved.config;
    assert_eq!((c.port.value, &c.port.origin), (7070, &Origin::Default));
    assert_eq!(c.tls.cert.value, Some(PathBuf::from("good.pem")));
    assert_eq!(c.tls.cert.origin, file_origin(2));
    assert_eq!(c.log.value, LogLevel::Info);
    assert_eq!(c.host.value, "0.0.0.0");
    let ignored: Vec<(&str, IgnoreReason)> = resolved
        .ignored_env
        .iter()
        .map(|i| (i.var.as_str(), i.reason))
        .collect();
    assert_eq!(
        ignored,
        [
            ("SIGIL_LOG", IgnoreReason::Pinned { key: "log" }),
            ("SIGIL_PORT", IgnoreReason::Pinned { key: "port" }),
            ("SIGIL_TLS__CERT", IgnoreReason::Pinned { key: "tls.cert" }),
        ]
    );
    assert_eq!(
        resolved.ignored_env[1].to_string(),
        "ignored SIGIL_PORT (`port` is pinned)"
    );

    // An override still changes a pinned key.
    let c = Config::builder()
        .env(env(&[("SIGIL_PORT", "9000")]))
        .pin("port")?
        .set("port", "9001", "--port")?
        .build()?
        .config;
    assert_eq!(c.port.value, 9001);
    Ok(())
}

#[test]
fn fail_pin_unknown_key() {
    let err = Config::builder().pin("prot").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot pin unknown key `prot` (did you mean `port`?)"
    );
    let err = Config::builder().pin("nonsense").unwrap_err();
    assert_eq!(err.to_string(), "cannot pin unknown key `nonsense`");
}

#[test]
fn fail_unknown_file_key() {
    let err = file_err("host = \"::1\"\n\nprot = 9000\n");
    assert_eq!(
        err.to_string(),
        "unknown key `prot` in sigil.toml line 3 (did you mean `port`?)"
    );
    assert_eq!(
        err,
        ConfigError::UnknownKey {
            key: "prot".into(),
            origin: file_origin(3),
            suggestion: Some("port".into()),
        }
    );
    assert_eq!(
        file_err("[tls]\ncret = \"x\"\n").to_string(),
        "unknown key `tls.cret` in sigil.toml line 2 (did you mean `tls.cert`?)"
    );
    assert_eq!(
        file_err("\n[tsl]\ncert = \"x\"\n").to_string(),
        "unknown key `tsl.cert` in sigil.toml line 3 (did you mean `tls.cert`?)"
    );
    assert_eq!(
        file_err("cert = \"x\"\n").to_string(),
        "unknown key `cert` in sigil.toml line 1 (did you mean `tls.cert`?)"
    );
    assert_eq!(
        file_err("port = 1\n[nothing_like_it]\n").to_string(),
        "unknown key `nothing_like_it` in sigil.toml line 2"
    );
    assert_eq!(
        file_err("[tls.extra]\nx = 1\n").to_string(),
        "unknown key `tls.extra.x` in sigil.toml line 2"
    );
    // The first unknown key in file order is the one reported.
    assert_eq!(
        file_err("zzz = 1\naaa = 2\n").to_string(),
        "unknown key `zzz` in sigil.toml line 1"
    );
}

#[test]
fn fail_unknown_env_var() {
    assert_eq!(
        env_err(&[("SIGIL_PROT", "9000")]).to_string(),
        "unknown environment variable SIGIL_PROT (did you mean SIGIL_PORT?)"
    );
    assert_eq!(
        env_err(&[("SIGIL_TLS_CERT", "x")]).to_string(),
        "unknown environment variable SIGIL_TLS_CERT (did you mean SIGIL_TLS__CERT?)"
    );
    assert_eq!(
        env_err(&[("SIGIL_port", "1")]).to_string(),
        "unknown environment variable SIGIL_port (did you mean SIGIL_PORT?)"
    );
    assert_eq!(
        env_err(&[("SIGIL_COMPLETELY_DIFFERENT", "1")]),
        ConfigError::UnknownEnv {
            var: "SIGIL_COMPLETELY_DIFFERENT".into(),
            suggestion: None
        }
    );
}

#[test]
fn fail_unknown_override_key() {
    let err = Config::builder().set("prot", "1", "--port").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown key `prot` from --port (did you mean `port`?)"
    );
}

#[test]
fn fail_ill_typed_file_values() {
    for (file, message) in [
        (
            "port = \"9000\"",
            "invalid value for `port` in sigil.toml line 1: expected an integer from 0 to 65535, found a string",
        ),
        (
            "\nport = 70000",
            "invalid value for `port` in sigil.toml line 2: expected an integer from 0 to 65535",
        ),
        (
            "max_connections = 2305843009213693952",
            "invalid value for `max_connections` in sigil.toml line 1: must be from 1 to 1000000",
        ),
        (
            "allowed_origins = 1",
            "invalid value for `allowed_origins` in sigil.toml line 1: expected a list of non-empty strings, found an integer",
        ),
        (
            "allowed_hosts = [\"a\", 1]",
            "invalid value for `allowed_hosts` in sigil.toml line 1: expected a list of non-empty strings, found an integer",
        ),
        (
            "port = -1",
            "invalid value for `port` in sigil.toml line 1: expected an integer from 0 to 65535, found a number out of range",
        ),
        (
            "allow_any_client = \"yes\"",
            "invalid value for `allow_any_client` in sigil.toml line 1: expected true or false, found a string",
        ),
        (
            "max_inflight = 0",
            "invalid value for `max_inflight` in sigil.toml line 1: must be from 1 to 65536",
        ),
        (
            "max_message_size = 1.5",
            "invalid value for `max_message_size` in sigil.toml line 1: expected a whole number from 64 to 16777216, found a float",
        ),
        (
            "host = \"\"",
            "invalid value for `host` in sigil.toml line 1: must not be empty",
        ),
        (
            "server_key = \"\"",
            "invalid value for `server_key` in sigil.toml line 1: expected a path, or a list of paths, found an empty entry",
        ),
        (
            "server_key = []",
            "invalid value for `server_key` in sigil.toml line 1: expected a path, or a list of paths, found an empty list",
        ),
        (
            "[tls]\nserver_serial = [\"0a\", \"xy\"]",
            "invalid value for `tls.server_serial` in sigil.toml line 2: expected a certificate serial number in hex (`0a:1b:…` or `0A1B…`), or a list of them",
        ),
        (
            "[tls]\nserver_name = \"\"",
            "invalid value for `tls.server_name` in sigil.toml line 2: must not be empty",
        ),
        (
            "log = \"loud\"",
            "invalid value for `log` in sigil.toml line 1: expected one of error, warn, info, debug, trace",
        ),
        (
            "server_public_key = \"abc\"",
            "invalid value for `server_public_key` in sigil.toml line 1: expected a public key (base64 or PEM), or a list of them: invalid base64 key: expected 44 characters of base64 (32 bytes)",
        ),
        (
            "[tls]\nrequire_client_cert = 1",
            "invalid value for `tls.require_client_cert` in sigil.toml line 2: expected true or false, found an integer",
        ),
        (
            "tls = \"on\"",
            "invalid value for `tls` in sigil.toml line 1: expected a table (with keys cert, key, client_ca, require_client_cert, ca, client_cert, client_key, server_name, server_serial), found a string",
        ),
        (
            "[port]\nx = 1",
            "invalid value for `port` in sigil.toml line 1: expected an integer from 0 to 65535, found a table",
        ),
    ] {
        assert_eq!(file_err(file).to_string(), message, "{file}");
    }
}

#[test]
fn fail_ill_typed_env_values() {
    for (var, value, message) in [
        (
            "SIGIL_PORT",
            "abc",
            "invalid value for `port` from SIGIL_PORT: expected an integer from 0 to 65535",
        ),
        (
            "SIGIL_PORT",
            "",
            "invalid value for `port` from SIGIL_PORT: expected an integer from 0 to 65535, found an empty value",
        ),
        (
            "SIGIL_PORT",
            " 80",
            "invalid value for `port` from SIGIL_PORT: expected an integer from 0 to 65535",
        ),
        (
            "SIGIL_MAX_MESSAGE_SIZE",
            "0",
            "invalid value for `max_message_size` from SIGIL_MAX_MESSAGE_SIZE: must be from 64 to 16777216",
        ),
        (
            "SIGIL_MAX_CONNECTIONS",
            "2305843009213693952",
            "invalid value for `max_connections` from SIGIL_MAX_CONNECTIONS: must be from 1 to 1000000",
        ),
        (
            "SIGIL_MAX_CLOCK_SKEW_MS",
            "18446744073709551615",
            "invalid value for `max_clock_skew_ms` from SIGIL_MAX_CLOCK_SKEW_MS: must be from 0 to 600000",
        ),
        (
            "SIGIL_ALLOWED_HOSTS",
            "a,,b",
            "invalid value for `allowed_hosts` from SIGIL_ALLOWED_HOSTS: expected a list of non-empty strings, found an empty entry",
        ),
        (
            "SIGIL_IDLE_TIMEOUT_MS",
            "99999999999999999999999",
            "invalid value for `idle_timeout_ms` from SIGIL_IDLE_TIMEOUT_MS: expected a whole number from 100 to 86400000, found a number out of range",
        ),
        (
            "SIGIL_ALLOW_ANY_CLIENT",
            "yes",
            "invalid value for `allow_any_client` from SIGIL_ALLOW_ANY_CLIENT: expected true, false, 1 or 0",
        ),
        (
            "SIGIL_TLS__KEY",
            "",
            "invalid value for `tls.key` from SIGIL_TLS__KEY: expected a path, found an empty value",
        ),
        (
            "SIGIL_LOG",
            "",
            "invalid value for `log` from SIGIL_LOG: expected one of error, warn, info, debug, trace",
        ),
    ] {
        assert_eq!(
            env_err(&[(var, value)]).to_string(),
            message,
            "{var}={value}"
        );
    }
}

#[test]
fn fail_ill_typed_override_values() -> Result<(), ConfigError> {
    let err = Config::builder()
        .set("port", "70000", "--port")?
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid value for `port` from --port: expected an integer from 0 to 65535"
    );
    assert_eq!(
        err,
        ConfigError::InvalidValue {
            key: "port".into(),
            origin: Origin::Override {
                source: "--port".into()
            },
            expected: "expected an integer from 0 to 65535".into(),
        }
    );
    // A bad value is an error even when a higher layer replaces it.
    let err = Config::builder()
        .env(env(&[("SIGIL_PORT", "x")]))
        .set("port", "1", "--port")?
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("from SIGIL_PORT"), "{err}");
    Ok(())
}

#[test]
fn fail_invalid_toml_names_file_and_line() {
    let err = file_err("port = 1\nhost = \n");
    let ConfigError::Toml { path, line, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!((path.as_str(), *line), ("sigil.toml", 2));
    assert!(
        err.to_string()
            .starts_with("invalid TOML in sigil.toml line 2: ")
    );
    assert!(!err.to_string().contains('\n'));
}

#[test]
fn psk_from_every_layer_is_redacted() -> Result<(), ConfigError> {
    let (key, text) = psk();
    let file = format!("psk = \"{text}\"\n");
    for builder in [
        Config::builder().file("sigil.toml", &file),
        Config::builder().env(env(&[("SIGIL_PSK", &text)])),
        Config::builder().set("psk", &text, "code")?,
    ] {
        let debug = format!("{builder:?}");
        assert!(!debug.contains(&text), "{debug}");
        let resolved = builder.build()?;
        let c = &resolved.config;
        assert!(c.psk.value.as_ref() == Some(&key));
        let entry = c.entries().into_iter().find(|e| e.key == "psk").unwrap();
        assert_eq!(entry.display_value, REDACTED);
        assert_eq!(entry.to_string(), "psk = <redacted>");
        assert!(entry.is_secret && entry.is_set);
        for shown in [
            format!("{c:?}"),
            format!("{resolved:?}"),
            format!("{:?}", c.entries()),
        ] {
            assert!(!shown.contains(&text), "{shown}");
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }
    let unset = Config::default()
        .entries()
        .into_iter()
        .find(|e| e.key == "psk")
        .unwrap();
    assert_eq!(unset.display_value, "(unset)");
    Ok(())
}

/// A Redis URL may hold a password: it is shown with its user
/// information redacted, from every layer, and an error about it never
/// shows it.
#[test]
fn replay_store_passwords_are_redacted() -> Result<(), ConfigError> {
    let url = "redis://app:hunter2@10.0.0.7:6380/3";
    let file = format!("replay_store = \"{url}\"\n");
    for builder in [
        Config::builder().file("sigil.toml", &file),
        Config::builder().env(env(&[("SIGIL_REPLAY_STORE", url)])),
        Config::builder().set("replay_store", url, "code")?,
    ] {
        let resolved = builder.build()?;
        let c = &resolved.config;
        let ReplayStoreLocation::Redis(redis) = &c.replay_store.value else {
            panic!("not a Redis store");
        };
        assert_eq!(redis.dangerous_as_str(), url);
        let entry = c
            .entries()
            .into_iter()
            .find(|e| e.key == "replay_store")
            .unwrap();
        assert_eq!(
            entry.to_string(),
            "replay_store = \"redis://<redacted>@10.0.0.7:6380/3\""
        );
        for shown in [format!("{c:?}"), format!("{resolved:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
    for bad in ["rediss://:hunter2@host", "redis://:hunter2@", "hunter2"] {
        let errors = [
            file_err(&format!("replay_store = \"{bad}\"\n")),
            env_err(&[("SIGIL_REPLAY_STORE", bad)]),
        ];
        for err in errors {
            let shown = err.to_string();
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("`replay_store`"), "{shown}");
        }
    }
    let err = env_err(&[("SIGIL_REPLAY_STORE_TIMEOUT_MS", "0")]);
    assert!(err.to_string().contains("from 1 to 60000"), "{err}");
    Ok(())
}

#[test]
fn fail_psk_errors_never_show_the_secret() -> Result<(), ConfigError> {
    let (_, good) = psk();
    // Almost-keys, and text a user might paste by mistake.
    let secrets = [
        "correct-horse-battery-staple-hunter2",
        &good[..43],
        &format!("{good}A"),
        "-----BEGIN PRIVATE KEY-----",
    ];
    for secret in secrets {
        let errors = [
            file_err(&format!("psk = \"{secret}\"\n")),
            file_err(&format!("psk = {secret}\n")),
            file_err(&format!("psk = \"{secret}\n")),
            file_err(&format!("psk = \"\"\"{secret}")),
            file_err(&format!("[psk]\n{secret} = 1\n")),
            env_err(&[("SIGIL_PSK", secret)]),
            Config::builder()
                .set("psk", secret, "code")?
                .build()
                .unwrap_err(),
        ];
        for err in errors {
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains(secret), "{shown}");
                assert!(!shown.contains(&good[..20]), "{shown}");
            }
        }
    }
    let err = env_err(&[("SIGIL_PSK", "hunter2")]);
    assert_eq!(
        err.to_string(),
        "invalid value for `psk` from SIGIL_PSK: expected a key in base64 of 32 bytes (44 characters)"
    );
    Ok(())
}

#[test]
fn fail_psk_and_psk_file() -> Result<(), ConfigError> {
    let (_, text) = psk();
    let err = Config::builder()
        .file("sigil.toml", "psk_file = \"/etc/sigil/psk\"\n")
        .env(env(&[("SIGIL_PSK", &text)]))
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "`psk` (env SIGIL_PSK) and `psk_file` (sigil.toml:1) are both set: set only one of them"
    );
    assert!(!format!("{err:?}").contains(&text));
    assert!(matches!(
        err,
        ConfigError::Conflict {
            key: "psk",
            other: "psk_file",
            ..
        }
    ));
    // Either one alone is fine.
    let c = Config::builder()
        .set("psk_file", "psk", "--psk-file")?
        .build()?
        .config;
    assert!(c.psk.value.is_none());
    Ok(())
}

#[test]
fn authorized_keys() {
    let text = format!(
        "\u{feff}# clients of the demo\n\
         \n\
         {ALICE_PK} alice@laptop\r\n\
         \x20 # indented comment\n\
         {BOB_PK}\n\
         {ALICE_PK}\tagain, with a tab\n"
    );
    let keys = parse_authorized_keys("authorized_keys", &text).unwrap();
    let alice = PublicKey::parse(ALICE_PK).unwrap();
    let bob = PublicKey::parse(BOB_PK).unwrap();
    assert_eq!(keys, [alice, bob, alice]);
    assert_eq!(parse_authorized_keys("empty", "").unwrap(), []);
    assert_eq!(parse_authorized_keys("empty", "# none\n\n").unwrap(), []);
}

#[test]
fn fail_authorized_keys_names_the_line() {
    let text = format!("# ok\n{ALICE_PK}\n\nnot-a-key comment\n{BOB_PK}\n");
    let err = parse_authorized_keys("/etc/sigil/authorized_keys", &text).unwrap_err();
    assert!(matches!(err, ConfigError::AuthorizedKey { line: 4, .. }));
    assert_eq!(
        err.to_string(),
        "invalid public key in /etc/sigil/authorized_keys line 4: invalid base64 key: expected 44 characters of base64 (32 bytes)"
    );
    // A key cut short.
    let err = parse_authorized_keys("k", &ALICE_PK[..40]).unwrap_err();
    assert!(matches!(err, ConfigError::AuthorizedKey { line: 1, .. }));
}

#[test]
fn every_key_is_in_the_book() {
    let book = include_str!("../../../book/src/configuration.md");
    for key in KEYS {
        assert!(
            book.contains(&format!("| `{key}` |")),
            "{key} is missing from the table in book/src/configuration.md"
        );
    }
}

#[test]
fn authorized_keys_keep_their_comments_as_names() {
    use sigil_core::config::parse_authorized_key_entries;
    let text = format!("{ALICE_PK} alice@laptop (work)\n{BOB_PK}\n{ALICE_PK}\t  \n");
    let entries = parse_authorized_key_entries("k", &text).unwrap();
    let names: Vec<Option<&str>> = entries.iter().map(|e| e.name.as_deref()).collect();
    assert_eq!(names, [Some("alice@laptop (work)"), None, None]);
    assert_eq!(entries[1].key.to_string(), BOB_PK);
}

#[test]
fn operating_keys_from_a_file_and_the_environment() -> Result<(), ConfigError> {
    let file = "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n\
                ping_interval_ms = 0\n\
                revoked_sessions = \"keep\"\n\
                metrics_addr = \"9100\"\n";
    let c = Config::builder().file("sigil.toml", file).build()?.config;
    let nets: Vec<String> = c
        .trusted_proxies
        .value
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(nets, ["10.0.0.0/8", "::1/128"]);
    assert_eq!(c.trusted_proxies.origin, file_origin(1));
    assert_eq!(c.ping_interval_ms.value, 0);
    assert_eq!(c.revoked_sessions.value, RevokedSessions::Keep);
    // A bare port listens on loopback.
    assert_eq!(c.metrics_addr.value.as_deref(), Some("127.0.0.1:9100"));
    let shown: Vec<String> = c.entries().iter().map(ToString::to_string).collect();
    assert!(shown.contains(&"trusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]".to_owned()));
    assert!(shown.contains(&"metrics_addr = \"127.0.0.1:9100\"".to_owned()));

    // The environment: commas between networks; empty for none.
    let vars = env(&[
        ("SIGIL_TRUSTED_PROXIES", "192.168.0.0/16, 127.0.0.1"),
        ("SIGIL_METRICS_ADDR", "[::1]:9101"),
        ("SIGIL_REVOKED_SESSIONS", "CLOSE"),
    ]);
    let c = Config::builder()
        .file("sigil.toml", file)
        .env(vars)
        .build()?
        .config;
    assert_eq!(c.trusted_proxies.value.len(), 2);
    assert_eq!(c.metrics_addr.value.as_deref(), Some("[::1]:9101"));
    assert_eq!(c.revoked_sessions.value, RevokedSessions::Close);
    let c = Config::builder()
        .file("sigil.toml", file)
        .env(env(&[("SIGIL_TRUSTED_PROXIES", "")]))
        .build()?
        .config;
    assert!(c.trusted_proxies.value.is_empty());
    assert_eq!(
        c.trusted_proxies.origin,
        env_origin("SIGIL_TRUSTED_PROXIES")
    );
    Ok(())
}

#[test]
fn fail_bad_operating_values_name_the_key_but_not_the_value() {
    let cases = [
        (
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "trusted_proxies",
            "prefix length",
        ),
        (
            "trusted_proxies = [\"secret-host\"]",
            "trusted_proxies",
            "not an IP address",
        ),
        ("trusted_proxies = [\"\"]", "trusted_proxies", "empty entry"),
        (
            "ping_interval_ms = 3600001",
            "ping_interval_ms",
            "from 0 to 3600000",
        ),
        (
            "revoked_sessions = \"drop\"",
            "revoked_sessions",
            "close or keep",
        ),
        (
            "metrics_addr = \"secret-host\"",
            "metrics_addr",
            "HOST:PORT",
        ),
        ("metrics_addr = \"host:70000\"", "metrics_addr", "HOST:PORT"),
        ("metrics_addr = 9100", "metrics_addr", "found an integer"),
    ];
    for (line, key, expected) in cases {
        let err = file_err(line);
        let text = err.to_string();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key: k, .. } if k == key),
            "{text}"
        );
        assert!(text.contains(expected), "{line}: {text}");
        assert!(!text.contains("secret-host"), "{text}");
        assert!(!text.contains("70000"), "{text}");
    }
}
