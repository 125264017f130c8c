//! `wss://`: the client over TLS (rustls, ring), against the in-test server
//! behind a self-signed certificate for 127.0.0.1.

mod common;

use std::sync::Arc;

use common::{Behavior, Stream, TestServer, Wrap};
use sigil_client::rustls::RootCertStore;
use sigil_client::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sigil_client::{Client, ClientError, ConnectError, tls_config};
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor for a fresh self-signed certificate, and that certificate.
fn self_signed() -> (TlsAcceptor, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("certificate");
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .expect("server config");
    (TlsAcceptor::from(Arc::new(config)), cert)
}

async fn tls_server() -> (TestServer, CertificateDer<'static>) {
    let (acceptor, cert) = self_signed();
    let wrap: Wrap = Arc::new(move |tcp| {
        let acceptor = acceptor.clone();
        Box::pin(async move {
            let tls = acceptor.accept(tcp).await.ok()?;
            Some(Box::new(tls) as Box<dyn Stream>)
        })
    });
    (
        TestServer::start_with(Behavior::default(), wrap).await,
        cert,
    )
}

#[tokio::test]
async fn wss_with_custom_roots() {
    let (server, cert) = tls_server().await;
    let mut roots = RootCertStore::empty();
    roots.add(cert).expect("root");
    let url = format!("wss://{}/sigil", server.addr);
    let client = Client::connect(
        &url,
        server.options().with_tls(tls_config(roots).expect("tls")),
    )
    .await
    .expect("connect over TLS");
    let sum: f64 = client
        .call("calculator", "add", (20, 22))
        .await
        .expect("add");
    assert_eq!(sum, 42.0);
    client.close().await;
}

#[tokio::test]
async fn fail_wss_with_default_roots_refuses_a_self_signed_server() {
    let (server, _cert) = tls_server().await;
    let url = format!("wss://{}/sigil", server.addr);
    let err = Client::connect(&url, server.options())
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
}

/// `wss://` against a plain server says so in words.
#[tokio::test]
async fn fail_wss_to_a_plain_server_says_it_does_not_speak_tls() {
    let server = TestServer::start(Behavior::default()).await;
    let url = format!("wss://{}/sigil", server.addr);
    let err = Client::connect(&url, server.options())
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
}
