//! `wss://` with rustls: TLS, mutual TLS, and a handshake hook that checks
//! the client certificate's common name. Certificates are made at run time.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sigil_client::{Client, ClientOptions};
use sigil_core::handshake::ClientAuth;
use sigil_server::{HookDecision, ServerSettings, TlsSettings};

/// A CA that issues certificates.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            der: cert.der().clone(),
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf certificate: (cert PEM, key PEM, cert DER, key DER).
    fn issue(
        &self,
        san: &str,
        cn: &str,
        client: bool,
    ) -> (
        String,
        String,
        CertificateDer<'static>,
        PrivateKeyDer<'static>,
    ) {
        let mut params = CertificateParams::new(vec![san.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.pem(), key.serialize_pem(), cert.der().clone(), key_der)
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        roots
    }
}

fn client_tls(
    ca: &Ca,
    identity: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
) -> Arc<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(ca.roots());
    Arc::new(match identity {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    })
}

#[tokio::test]
async fn calls_over_wss() {
    let ca = Ca::new("test ca");
    let (cert, key_pem, _, _) = ca.issue("127.0.0.1", "server", false);
    let tls = TlsSettings::from_pem(cert.as_bytes(), key_pem.as_bytes(), None, false).unwrap();
    let client_key = key();
    let settings =
        ServerSettings::new(key(), ClientAuth::Keys(vec![client_key.public_key()])).with_tls(tls);
    let server = start(settings, demo_registry()).await;
    assert!(server.url().starts_with("wss://127.0.0.1:"));
    let opts = ClientOptions::new(client_key, server.public_key()).with_tls(client_tls(&ca, None));
    let c = Client::connect(&server.url(), opts).await.unwrap();
    assert_eq!(c.call::<i64>("calculator", "add", (1, 2)).await.unwrap(), 3);
    // A client that does not trust the server's CA cannot connect.
    let other = Ca::new("other ca");
    let opts = ClientOptions::new(key(), server.public_key()).with_tls(client_tls(&other, None));
    assert!(Client::connect(&server.url(), opts).await.is_err());
    server.shutdown().await;
}

fn mtls_server_settings(ca: &Ca, client_ca: &Ca) -> ServerSettings {
    let (cert, key_pem, _, _) = ca.issue("127.0.0.1", "server", false);
    let tls = TlsSettings::from_pem(
        cert.as_bytes(),
        key_pem.as_bytes(),
        Some(client_ca.pem.as_bytes()),
        true,
    )
    .unwrap();
    ServerSettings::new(key(), ClientAuth::AllowAny).with_tls(tls)
}

#[tokio::test]
async fn mutual_tls_refuses_a_wrong_or_missing_client_certificate() {
    let ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let server = start(mtls_server_settings(&ca, &client_ca), demo_registry()).await;
    let (_, _, good_cert, good_key) = client_ca.issue("alice.example", "alice", true);
    let opts = ClientOptions::new(key(), server.public_key())
        .with_tls(client_tls(&ca, Some((good_cert, good_key))));
    let c = Client::connect(&server.url(), opts).await.unwrap();
    assert_eq!(
        c.call::<i64>("calculator", "mul", (6, 7)).await.unwrap(),
        42
    );
    // A certificate from another CA is refused by TLS...
    let rogue = Ca::new("rogue ca");
    let (_, _, bad_cert, bad_key) = rogue.issue("mallory.example", "alice", true);
    let opts = ClientOptions::new(key(), server.public_key())
        .with_tls(client_tls(&ca, Some((bad_cert, bad_key))));
    assert!(Client::connect(&server.url(), opts).await.is_err());
    // ...and so is no certificate at all.
    let opts = ClientOptions::new(key(), server.public_key()).with_tls(client_tls(&ca, None));
    assert!(Client::connect(&server.url(), opts).await.is_err());
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
    let (_, _, alice_cert, alice_key) = client_ca.issue("alice.example", "alice", true);
    let opts = ClientOptions::new(key(), server.public_key())
        .with_tls(client_tls(&ca, Some((alice_cert, alice_key))));
    let alice = Client::connect(&server.url(), opts).await.unwrap();
    assert_eq!(
        alice
            .call::<String>("sigil", "ping", [0u8; 0])
            .await
            .unwrap(),
        "pong"
    );
    let (_, _, bob_cert, bob_key) = client_ca.issue("bob.example", "bob", true);
    let opts = ClientOptions::new(key(), server.public_key())
        .with_tls(client_tls(&ca, Some((bob_cert, bob_key))));
    let err = Client::connect(&server.url(), opts).await.err().unwrap();
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
    let (cert, key_pem, _, _) = old_ca.issue("127.0.0.1", "server", false);
    write(&cert, &key_pem);
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
    let trusting =
        |ca: &Ca| ClientOptions::new(key(), server.public_key()).with_tls(client_tls(ca, None));
    let before = Client::connect(&server.url(), trusting(&old_ca))
        .await
        .unwrap();

    let (cert, key_pem, _, _) = new_ca.issue("127.0.0.1", "server", false);
    write(&cert, &key_pem);
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
        &cert,
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
