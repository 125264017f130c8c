//! `ClientOptions::from_config`: key files, permissions, psk, limits.

#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::hostile::Hostile;
use common::{Real, demo_registry, fresh_key};
use sigil_client::{Client, ClientError, ClientOptions, SymmetricKey};
use sigil_core::config::Config;
use sigil_core::keys::KeyFormat;

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The test client's secret key, written to `dir/client.key` with `mode`.
fn client_key_file(dir: &Path, real: &Real, mode: u32) -> PathBuf {
    let key = dir.join("client.key");
    write_file(
        &key,
        &real.keys.client_secret().to_text(KeyFormat::Base64),
        mode,
    );
    key
}

fn config(settings: &[(&str, &str)]) -> Config {
    let mut builder = Config::builder();
    for (key, value) in settings {
        builder = builder.set(key, value, "test").expect("known key");
    }
    builder.build().expect("valid config").config
}

#[tokio::test]
async fn from_config_reads_keys_psk_and_prologue() {
    let real = Real::start_with(demo_registry(), |s| {
        s.with_psk(SymmetricKey::from_bytes(&[3; 32]))
            .with_prologue(b"app v1")
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("client.key");
    write_file(
        &key,
        &real.keys.client_secret().to_text(KeyFormat::Base64),
        0o600,
    );
    let psk = dir.path().join("psk");
    let psk_text = SymmetricKey::from_bytes(&[3; 32]).to_base64();
    write_file(&psk, &format!("{}\n", &*psk_text), 0o600);
    let server_key = real.keys.server_key.to_string();
    let cfg = config(&[
        ("client_key", key.to_str().expect("utf-8")),
        ("server_public_key", &server_key),
        ("psk_file", psk.to_str().expect("utf-8")),
        ("prologue", "app v1"),
        ("max_message_size", "4096"),
    ]);
    let options = ClientOptions::from_config(&cfg).expect("options");
    assert_eq!(options.server_key(), real.keys.server_key);
    assert_eq!(options.public_key(), real.keys.client_secret().public_key());
    let client = Client::connect(&real.url(), options)
        .await
        .expect("connect");
    let echoed: String = client.call("echo", "echo", ["hi"]).await.expect("echo");
    assert_eq!(echoed, "hi");
    // max_message_size came from the config.
    let err = client
        .call::<String>("echo", "echo", ["z".repeat(5000)])
        .await
        .expect_err("over the limit");
    assert!(matches!(err, ClientError::InvalidArguments(_)), "{err:?}");
    real.stop().await;
}

#[tokio::test]
async fn fail_readable_secret_files_are_refused() {
    let (client_secret, server_key) = (fresh_key(), fresh_key().public_key());
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("client.key");
    write_file(&key, &client_secret.to_text(KeyFormat::Base64), 0o644);
    let server_key = server_key.to_string();
    let key_str = key.to_str().expect("utf-8");
    let err = ClientOptions::from_config(&config(&[
        ("client_key", key_str),
        ("server_public_key", &server_key),
    ]))
    .err()
    .expect("group-readable key refused");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    assert!(
        err.to_string().contains(&format!("chmod 600 {key_str}")),
        "{err}"
    );

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let psk = dir.path().join("psk");
    write_file(&psk, &SymmetricKey::from_bytes(&[1; 32]).to_base64(), 0o640);
    let psk_str = psk.to_str().expect("utf-8");
    let err = ClientOptions::from_config(&config(&[
        ("client_key", key_str),
        ("server_public_key", &server_key),
        ("psk_file", psk_str),
    ]))
    .err()
    .expect("group-readable psk refused");
    assert!(
        err.to_string().contains(&format!("chmod 600 {psk_str}")),
        "{err}"
    );
}

#[tokio::test]
async fn fail_missing_settings_and_files() {
    let (client_secret, server_key) = (fresh_key(), fresh_key().public_key());
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("client.key");
    write_file(&key, &client_secret.to_text(KeyFormat::Base64), 0o600);
    let key_str = key.to_str().expect("utf-8");
    let server_key = server_key.to_string();

    let err = ClientOptions::from_config(&config(&[("client_key", key_str)]))
        .err()
        .expect("no server key");
    assert!(err.to_string().contains("server_public_key"), "{err}");

    let err = ClientOptions::from_config(&config(&[("server_public_key", &server_key)]))
        .err()
        .expect("no client key");
    assert!(err.to_string().contains("client_key"), "{err}");

    let missing = dir.path().join("nope.key");
    let missing_str = missing.to_str().expect("utf-8");
    let err = ClientOptions::from_config(&config(&[
        ("client_key", missing_str),
        ("server_public_key", &server_key),
    ]))
    .err()
    .expect("missing file");
    assert!(matches!(err, ClientError::Io(_)), "{err:?}");
    assert!(err.to_string().contains(missing_str), "{err}");

    // A PEM public key says what it is (base64 of 32 bytes cannot).
    let public = dir.path().join("server.pub");
    write_file(
        &public,
        &fresh_key().public_key().to_text(KeyFormat::Pem),
        0o600,
    );
    let err = ClientOptions::from_config(&config(&[
        ("client_key", public.to_str().expect("utf-8")),
        ("server_public_key", &server_key),
    ]))
    .err()
    .expect("a public key is not a secret key");
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    assert!(err.to_string().contains("expected a secret key"), "{err}");
}

#[tokio::test]
async fn from_config_handshake_timeout() {
    let server = Hostile::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("client.key");
    write_file(
        &key,
        &server.keys.client_secret().to_text(KeyFormat::Base64),
        0o600,
    );
    let server_key = server.keys.server_key.to_string();
    let options = ClientOptions::from_config(&config(&[
        ("client_key", key.to_str().expect("utf-8")),
        ("server_public_key", &server_key),
        ("handshake_timeout_ms", "150"),
    ]))
    .expect("options");
    let started = std::time::Instant::now();
    let url = server.url();
    // The server reads message 1 and never answers.
    let (err, _silent) = tokio::join!(Client::connect(&url, options), server.hello());
    let err = err.expect_err("timeout");
    assert!(matches!(err, ClientError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// `server_public_key` as a list (a server rotating its key): the keys are
/// pinned in order, and a connection tries the next when the server
/// refuses the handshake made for one. The client's `[tls]` keys are
/// checked together.
#[tokio::test]
async fn from_config_pins_several_server_keys_in_order() {
    let real = Real::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = client_key_file(dir.path(), &real, 0o600);
    let stale = sigil_client::SecretKey::generate(&mut sigil_core::OsRandom)
        .expect("key")
        .public_key();
    let pinned = format!("{stale},{}", real.keys.server_key);
    let key = key.to_str().expect("utf-8");
    let options = ClientOptions::from_config(&config(&[
        ("client_key", key),
        ("server_public_key", &pinned),
    ]))
    .expect("options");
    assert_eq!(options.server_keys(), [stale, real.keys.server_key]);
    let client = Client::connect(&real.url(), options)
        .await
        .expect("the second key connects");
    client.close().await;

    let err = ClientOptions::from_config(&config(&[
        ("client_key", key),
        ("server_public_key", &pinned),
        ("tls.client_cert", "me.pem"),
    ]))
    .err()
    .expect("a certificate without its key");
    assert!(
        matches!(&err, ClientError::Config(text) if text.contains("tls.client_cert needs tls.client_key")),
        "{err}"
    );
}
