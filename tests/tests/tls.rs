//! `wss://` with rustls: TLS, mutual TLS, and a handshake hook that checks
//! the client certificate's common name. Certificates are made at run time.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use rcgen::{CertificateParams, DnType, KeyPair};
use sigil_client::{Client, ClientError, ClientOptions, ClientTls, ConnectError};
use sigil_core::handshake::ClientAuth;
use sigil_server::{HookDecision, RunningServer, ServerSettings, TlsSettings};
use sigil_tests::certs::{Issued, TestCa as Ca, Usage};

/// Client TLS that trusts `ca`, with a client certificate if given.
fn client_tls(ca: &Ca, identity: Option<Issued>) -> ClientTls {
    let tls = ClientTls::new().with_ca_pem(ca.pem.as_bytes()).unwrap();
    match identity {
        Some(id) => tls
            .with_client_cert_pem(id.cert_pem.as_bytes(), id.key_pem.as_bytes())
            .unwrap(),
        None => tls,
    }
}

/// Why connecting to `server` with this TLS failed before the handshake.
async fn connect_cause(server: &RunningServer, tls: ClientTls) -> ConnectError {
    match Client::connect(&server.url(), options(server, tls)).await {
        Err(ClientError::Connect { cause, .. }) => cause,
        Err(other) => panic!("expected a connect error, got {other:?}"),
        Ok(_) => panic!("connected"),
    }
}

/// Options for `server` with this TLS.
fn options(server: &RunningServer, tls: ClientTls) -> ClientOptions {
    ClientOptions::new(key(), server.public_key()).with_tls(tls.build().unwrap())
}

#[tokio::test]
async fn calls_over_wss() {
    let ca = Ca::new("test ca");
    let (tls, _) = server_tls(&ca, "127.0.0.1", None);
    let client_key = key();
    let settings =
        ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()])).with_tls(tls);
    let server = start(settings, demo_registry()).await;
    assert!(server.url().starts_with("wss://127.0.0.1:"));
    let opts = ClientOptions::new(client_key, server.public_key())
        .with_tls(client_tls(&ca, None).build().unwrap());
    let c = Client::connect(&server.url(), opts).await.unwrap();
    assert_eq!(c.call::<i64>("calculator", "add", (1, 2)).await.unwrap(), 3);
    // A client that does not trust the server's CA cannot connect.
    let other = Ca::new("other ca");
    let cause = connect_cause(&server, client_tls(&other, None)).await;
    assert!(matches!(cause, ConnectError::Tls(_)), "{cause}");
    server.shutdown().await;
}

/// TLS for a server whose certificate `ca` issued for `san`; with a client
/// CA, client certificates from it are required.
fn server_tls(ca: &Ca, san: &str, client_ca: Option<&Ca>) -> (TlsSettings, Issued) {
    let cert = ca.issue(san, "server", Usage::Server);
    let tls = TlsSettings::from_pem(
        cert.cert_pem.as_bytes(),
        cert.key_pem.as_bytes(),
        client_ca.map(|c| c.pem.as_bytes()),
        client_ca.is_some(),
    )
    .unwrap();
    (tls, cert)
}

fn mtls_server_settings(ca: &Ca, client_ca: &Ca) -> ServerSettings {
    let (tls, _) = server_tls(ca, "127.0.0.1", Some(client_ca));
    ServerSettings::new(key(), ClientAuth::AllowAny).with_tls(tls)
}

#[tokio::test]
async fn mutual_tls_refuses_a_wrong_or_missing_client_certificate() {
    let ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let server = start(mtls_server_settings(&ca, &client_ca), demo_registry()).await;
    let good = client_ca.issue("alice.example", "alice", Usage::Client);
    let c = Client::connect(&server.url(), options(&server, client_tls(&ca, Some(good))))
        .await
        .unwrap();
    assert_eq!(
        c.call::<i64>("calculator", "mul", (6, 7)).await.unwrap(),
        42
    );
    // A certificate from another CA is refused by TLS...
    let rogue = Ca::new("rogue ca");
    let bad = rogue.issue("mallory.example", "alice", Usage::Client);
    let cause = connect_cause(&server, client_tls(&ca, Some(bad))).await;
    assert!(
        matches!(cause, ConnectError::ClientCertificateRefused(_)),
        "{cause:?}"
    );
    // ...and so is no certificate at all, saying that one is needed.
    let cause = connect_cause(&server, client_tls(&ca, None)).await;
    assert!(
        matches!(cause, ConnectError::ClientCertificateRequired),
        "{cause:?}"
    );
    assert!(cause.to_string().contains("requires a client certificate"));
    server.shutdown().await;
}

/// A server behind a certificate from `ca` for `san` (any client key).
async fn tls_server(ca: &Ca, san: &str) -> (RunningServer, Issued) {
    let (tls, cert) = server_tls(ca, san, None);
    let settings = ServerSettings::new(key(), ClientAuth::AllowAny).with_tls(tls);
    (start(settings, demo_registry()).await, cert)
}

/// What the client checks of the server's certificate besides its chain:
/// the name it must be valid for (`tls.server_name`, here instead of the
/// URL's 127.0.0.1), its serial number (`tls.server_serial`), and the
/// application's own check, which sees serial, common name and names.
#[tokio::test]
async fn client_checks_the_server_certificate() {
    let ca = Ca::new("server ca");
    let (server, cert) = tls_server(&ca, "rpc.example").await;
    let url = server.url();
    let connect = |tls: ClientTls| Client::connect(&url, options(&server, tls));
    let tls_error = async |tls: ClientTls| match connect_cause(&server, tls).await {
        ConnectError::Tls(text) => text,
        other => panic!("expected a TLS error, got {other:?}"),
    };

    // The certificate is not valid for the URL's host...
    assert!(
        tls_error(client_tls(&ca, None))
            .await
            .contains("not valid for")
    );
    // ...but for the name the client is told to expect.
    let named = || {
        client_tls(&ca, None)
            .with_server_name("rpc.example")
            .unwrap()
    };
    connect(named()).await.unwrap().close().await;

    let serial = sigil_core::cert::CertificateInfo::from_der(&cert.cert_der)
        .unwrap()
        .serial;
    let spelled = serial
        .to_uppercase()
        .as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair).into_owned())
        .collect::<Vec<_>>()
        .join(":");
    let pinned = named().with_server_serials(["01", &spelled]).unwrap();
    connect(pinned).await.unwrap().close().await;
    let wrong = named().with_server_serials(["01"]).unwrap();
    let text = tls_error(wrong).await;
    assert!(text.contains(&format!("serial number {serial}")), "{text}");
    assert!(named().with_server_serials(["not hex"]).is_err());

    let checked = named().with_certificate_check(|cert| {
        assert_eq!(cert.dns_names, ["rpc.example"]);
        assert!(cert.ip_addresses.is_empty());
        match cert.common_name.as_deref() {
            Some("server") => Err("this is not the server we want".into()),
            _ => Ok(()),
        }
    });
    let text = tls_error(checked).await;
    assert!(text.contains("this is not the server we want"), "{text}");
    let accepting = named().with_certificate_check(|cert| {
        (!cert.serial.is_empty())
            .then_some(())
            .ok_or("no serial".into())
    });
    connect(accepting).await.unwrap().close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn hook_checks_the_certificate_common_name() {
    let ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let settings = mtls_server_settings(&ca, &client_ca).with_hook(|info| {
        let cert = info
            .certificate
            .expect("mutual TLS gives the hook a certificate");
        assert!(!cert.serial.is_empty());
        match cert.common_name.as_deref() {
            Some("alice") => HookDecision::Accept(None),
            other => HookDecision::Refuse(format!("common name {other:?} is not allowed")),
        }
    });
    let server = start(settings, demo_registry()).await;
    let alice = client_ca.issue("alice.example", "alice", Usage::Client);
    let alice = Client::connect(
        &server.url(),
        options(&server, client_tls(&ca, Some(alice))),
    )
    .await
    .unwrap();
    assert_eq!(
        alice
            .call::<String>("sigil", "ping", [0u8; 0])
            .await
            .unwrap(),
        "pong"
    );
    let bob = client_ca.issue("bob.example", "bob", Usage::Client);
    let err = Client::connect(&server.url(), options(&server, client_tls(&ca, Some(bob))))
        .await
        .err()
        .unwrap();
    assert_eq!(err.refusal_code(), Some(2), "{err}");
    assert!(err.to_string().contains("\"bob\""), "{err}");
    server.shutdown().await;
}

/// The serial number and common name the hook sees, read from the DER
/// certificate: a serial with a high bit set, a 20-byte serial, a name of
/// several attributes, no common name at all, and every truncation.
#[test]
fn peer_certificate_serial_and_common_name() {
    use rcgen::SerialNumber;
    let key = KeyPair::generate().unwrap();
    let cert = |serial: Vec<u8>, names: &[(DnType, &str)]| {
        let mut params = CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (kind, value) in names {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.self_signed(&key).unwrap().der().to_vec()
    };
    let der = cert(
        vec![0x01, 0x02, 0xa0, 0xff],
        &[
            (DnType::OrganizationName, "sigil"),
            (DnType::CommonName, "alice é"),
        ],
    );
    let peer = sigil_server::PeerCertificate::from_der(&der).unwrap();
    assert_eq!(peer.serial, "0102a0ff");
    assert_eq!(peer.common_name.as_deref(), Some("alice é"));
    assert_eq!(peer.der, der);

    let der = cert((1..=20).collect(), &[(DnType::OrganizationName, "sigil")]);
    let peer = sigil_server::PeerCertificate::from_der(&der).unwrap();
    assert_eq!(peer.serial, "0102030405060708090a0b0c0d0e0f1011121314");
    assert_eq!(peer.common_name, None);

    // Not a certificate, or cut short anywhere: no answer, no panic.
    assert_eq!(sigil_server::PeerCertificate::from_der(b"not DER"), None);
    for cut in 0..der.len() {
        assert_eq!(
            sigil_server::PeerCertificate::from_der(&der[..cut]),
            None,
            "cut at {cut}"
        );
    }
}

#[tokio::test]
async fn a_reload_serves_a_new_certificate_and_keeps_the_old_one_if_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let write = |cert: &str, key: &str| {
        std::fs::write(&cert_path, cert).unwrap();
        std::fs::write(&key_path, key).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let (old_ca, new_ca) = (Ca::new("old ca"), Ca::new("new ca"));
    let issued = old_ca.issue("127.0.0.1", "server", Usage::Server);
    write(&issued.cert_pem, &issued.key_pem);
    let config = sigil_core::config::Config::builder()
        .set("allow_any_client", "true", "test")
        .unwrap()
        .set("tls.cert", cert_path.to_str().unwrap(), "test")
        .unwrap()
        .set("tls.key", key_path.to_str().unwrap(), "test")
        .unwrap()
        .build()
        .unwrap()
        .config;
    let server = start(
        ServerSettings::from_config(&config).unwrap(),
        demo_registry(),
    )
    .await;
    let trusting = |ca: &Ca| options(&server, client_tls(ca, None));
    let before = Client::connect(&server.url(), trusting(&old_ca))
        .await
        .unwrap();

    let issued = new_ca.issue("127.0.0.1", "server", Usage::Server);
    write(&issued.cert_pem, &issued.key_pem);
    let reloaded = server.reload().await;
    assert!(matches!(reloaded.tls, Some(Ok(()))), "{reloaded:?}");
    assert!(reloaded.authorized_keys.is_none());
    let after = Client::connect(&server.url(), trusting(&new_ca))
        .await
        .unwrap();
    assert!(
        Client::connect(&server.url(), trusting(&old_ca))
            .await
            .is_err()
    );
    // Open connections keep the certificate they started with.
    assert_eq!(
        before
            .call::<i64>("calculator", "add", (1, 1))
            .await
            .unwrap(),
        2
    );

    // A key that does not parse: the new certificate stays in use.
    write(
        &issued.cert_pem,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    let reloaded = server.reload().await;
    assert!(matches!(reloaded.tls, Some(Err(_))), "{reloaded:?}");
    assert!(!reloaded.is_ok());
    Client::connect(&server.url(), trusting(&new_ca))
        .await
        .unwrap();
    assert_eq!(
        after
            .call::<i64>("calculator", "add", (2, 2))
            .await
            .unwrap(),
        4
    );
    server.shutdown().await;
}
