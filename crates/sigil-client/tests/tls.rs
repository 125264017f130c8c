//! `wss://`: the client over TLS (rustls, ring), against the real server
//! behind a self-signed certificate for 127.0.0.1, made at run time.

mod common;

use common::{Real, demo_registry};
use sigil_client::rustls::RootCertStore;
use sigil_client::rustls::pki_types::CertificateDer;
use sigil_client::{Client, ClientError, ConnectError, tls_config};
use sigil_server::TlsSettings;

/// A real server behind a fresh self-signed certificate, and that certificate.
async fn tls_server() -> (Real, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let tls = TlsSettings::from_pem(
        certified.cert.pem().as_bytes(),
        certified.signing_key.serialize_pem().as_bytes(),
        None,
        false,
    )
    .expect("TLS settings");
    let real = Real::start_with(demo_registry(), |s| s.with_tls(tls)).await;
    (real, certified.cert.der().clone())
}

#[tokio::test]
async fn wss_with_custom_roots() {
    let (real, cert) = tls_server().await;
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let url = real.url();
    assert!(url.starts_with("wss://127.0.0.1:"), "{url}");
    let client = Client::connect(
        &url,
        real.options().with_tls(tls_config(roots).expect("tls")),
    )
    .await
    .expect("connect over TLS");
    let sum: f64 = client
        .call("calculator", "add", (20, 22))
        .await
        .expect("add");
    assert_eq!(sum, 42.0);
    client.close().await;
    real.stop().await;
}

#[tokio::test]
async fn fail_wss_with_default_roots_refuses_a_self_signed_server() {
    let (real, _cert) = tls_server().await;
    let err = Client::connect(&real.url(), real.options())
        .await
        .expect_err("untrusted certificate");
    assert!(
        matches!(
            err,
            ClientError::Connect {
                cause: ConnectError::Tls(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    real.stop().await;
}

/// `wss://` against a plain server says so in words.
#[tokio::test]
async fn fail_wss_to_a_plain_server_says_it_does_not_speak_tls() {
    let real = Real::start().await;
    let url = format!("wss://{}/sigil", real.server.local_addr());
    let err = Client::connect(&url, real.options())
        .await
        .expect_err("no TLS there");
    assert!(
        matches!(
            err,
            ClientError::Connect {
                cause: ConnectError::NotTls,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("use a ws:// URL"), "{err}");
    real.stop().await;
}
