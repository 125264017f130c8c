//! TLS for `wss://`, and mutual TLS with client certificates (rustls).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::settings::SetupError;

/// What the handshake hook sees of a client's TLS certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerCertificate {
    /// The serial number, lowercase hex without separators.
    pub serial: String,
    /// The subject's first common name, if it has one.
    pub common_name: Option<String>,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl PeerCertificate {
    /// Reads serial number and common name from a DER certificate (one that
    /// rustls has already verified, when a client CA is configured).
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        let (serial, common_name) = der::serial_and_common_name(der)?;
        Some(PeerCertificate {
            serial: serial.iter().map(|b| format!("{b:02x}")).collect(),
            common_name,
            der: der.to_vec(),
        })
    }
}

/// Just enough DER (X.690) to read an X.509 certificate's serial number and
/// its subject's first common name (RFC 5280 section 4.1): a few lines
/// instead of a general X.509 parser and its thirty-odd crates.
mod der {
    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const INTEGER: u8 = 0x02;
    const OID: u8 = 0x06;
    const VERSION: u8 = 0xa0;
    /// id-at-commonName, 2.5.4.3.
    const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
    /// UTF8String, PrintableString, IA5String: the string types a common
    /// name is written in that are UTF-8 (or ASCII) as they stand.
    const TEXT: [u8; 3] = [0x0c, 0x13, 0x16];

    /// One tag-length-value: its tag, its contents and what follows it.
    /// Definite lengths only (DER); `None` for anything malformed.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let (bytes, rest) = rest.split_at(n);
            let len = bytes.iter().try_fold(0usize, |len, &b| {
                len.checked_mul(256)?.checked_add(usize::from(b))
            })?;
            (len, rest)
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// The contents of a TLV that must have tag `want`, and what follows.
    fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
        let (tag, contents, rest) = tlv(input)?;
        (tag == want).then_some((contents, rest))
    }

    pub(super) fn serial_and_common_name(der: &[u8]) -> Option<(&[u8], Option<String>)> {
        let (certificate, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(certificate, SEQUENCE)?;
        let mut rest = tbs;
        if let Some((VERSION, _, after)) = tlv(rest) {
            rest = after;
        }
        let (serial, rest) = expect(rest, INTEGER)?;
        let (_signature, rest) = expect(rest, SEQUENCE)?;
        let (_issuer, rest) = expect(rest, SEQUENCE)?;
        let (_validity, rest) = expect(rest, SEQUENCE)?;
        let (subject, _) = expect(rest, SEQUENCE)?;
        Some((serial, first_common_name(subject)))
    }

    /// The first common name of a Name (a SEQUENCE OF SET OF
    /// AttributeTypeAndValue) whose value is text.
    fn first_common_name(mut name: &[u8]) -> Option<String> {
        while !name.is_empty() {
            let (mut rdn, rest) = expect(name, SET)?;
            name = rest;
            while !rdn.is_empty() {
                let (attribute, rest) = expect(rdn, SEQUENCE)?;
                rdn = rest;
                let (oid, value) = expect(attribute, OID)?;
                if oid == COMMON_NAME {
                    let (tag, text, _) = tlv(value)?;
                    return TEXT
                        .contains(&tag)
                        .then(|| String::from_utf8(text.to_vec()).ok())
                        .flatten();
                }
            }
        }
        None
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn lengths_and_malformed_input() {
            assert_eq!(
                tlv(&[0x02, 0x01, 0x07, 0xff]),
                Some((0x02, &[0x07][..], &[0xff][..]))
            );
            let long = [&[0x04, 0x81, 0x80][..], &[0u8; 128]].concat();
            assert_eq!(tlv(&long).map(|t| t.1.len()), Some(128));
            for bad in [
                &[][..],
                &[0x30],
                &[0x30, 0x05, 0x00],
                &[0x30, 0x80],
                &[0x30, 0x85, 1, 0, 0, 0, 0],
                &[0x30, 0x82, 0x01],
            ] {
                assert_eq!(tlv(bad), None, "{bad:?}");
            }
            assert_eq!(serial_and_common_name(&[0x30, 0x00]), None);
        }
    }
}

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
