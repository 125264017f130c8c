//! TLS for `wss://`, and mutual TLS with client certificates (rustls).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::SetupError;

/// What the handshake hook sees of a client's TLS certificate: serial
/// number, common name, subject alternative names and the DER
/// (`PeerCertificate::from_der` reads them from a certificate that rustls
/// has already verified).
pub use sigil_core::cert::CertificateInfo as PeerCertificate;

/// A server's TLS configuration.
#[derive(Clone)]
pub struct TlsSettings {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

impl TlsSettings {
    /// TLS with a certificate chain and key (PEM), and optionally client
    /// certificates checked against `client_ca` (PEM). Without
    /// `require_client_cert`, clients may connect without a certificate.
    pub fn from_pem(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
        require_client_cert: bool,
    ) -> Result<TlsSettings, SetupError> {
        let chain = CertificateDer::pem_slice_iter(cert_chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SetupError::Tls(format!("certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(SetupError::Tls("no certificate in tls.cert".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| SetupError::Tls(format!("private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError::Tls(e.to_string()))?;
        let builder = match client_ca_pem {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(ca) {
                    let cert = cert.map_err(|e| SetupError::Tls(format!("client CA: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| SetupError::Tls(format!("client CA: {e}")))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if require_client_cert {
                    verifier
                } else {
                    verifier.allow_unauthenticated()
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| SetupError::Tls(format!("client CA: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
            None if require_client_cert => {
                return Err(SetupError::Tls(
                    "tls.require_client_cert needs tls.client_ca".into(),
                ));
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| SetupError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsSettings {
            config: Arc::new(config),
        })
    }

    /// [`from_pem`](Self::from_pem) with the PEM read from files.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
        require_client_cert: bool,
    ) -> Result<TlsSettings, SetupError> {
        let read = |p: &Path, secret: bool| {
            sigil_core::keyfile::read_text(p, 1024 * 1024, secret).map_err(SetupError::from)
        };
        let cert = read(cert, false)?;
        let key = read(key, true)?;
        let ca = client_ca.map(|p| read(p, false)).transpose()?;
        TlsSettings::from_pem(
            cert.as_bytes(),
            key.as_bytes(),
            ca.as_ref().map(|c| c.as_bytes()),
            require_client_cert,
        )
    }
}
