//! TLS for `wss://`: rustls with the `ring` provider, chosen explicitly;
//! the roots to trust, a client certificate for mutual TLS, and checks of
//! the server's certificate beyond its chain and name.
//!
//! The provider is named here rather than taken from rustls' process-wide
//! default, which panics when no provider, or more than one, is compiled in.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};
use sigil_core::cert::CertificateInfo;
use sigil_core::config::Config;
use sigil_core::keyfile;
use zeroize::Zeroizing;

use crate::error::ClientError;

/// What a certificate check sees of the server's certificate: serial
/// number, common name, subject alternative names and the DER.
pub use sigil_core::cert::CertificateInfo as ServerCertificate;

/// The most that is read from a certificate or key file.
const MAX_PEM_FILE: usize = 1024 * 1024;

/// A check of the server's certificate, run after rustls has verified its
/// chain and name: `Err` with a reason refuses the connection.
pub type CertificateCheck = Arc<dyn Fn(&ServerCertificate) -> Result<(), String> + Send + Sync>;

/// A TLS client configuration that trusts `roots`, without a client
/// certificate, using rustls' `ring` provider and its safe default protocol
/// versions. [`ClientTls`] adds a client certificate and checks of the
/// server's certificate.
pub fn tls_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    ClientTls::new().with_roots(roots).build()
}

/// The configuration used for `wss://` when none is given: the Mozilla
/// roots shipped in `webpki-roots`. Built once.
pub(crate) fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = DEFAULT.get() {
        return Ok(config.clone());
    }
    let config = ClientTls::new().build()?;
    Ok(DEFAULT.get_or_init(|| config).clone())
}

/// The public roots built in: Mozilla's, from `webpki-roots`.
fn public_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    roots
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the TLS configuration of a client: which roots it trusts, the
/// certificate it shows for mutual TLS, and what it checks of the server's
/// certificate (the name it must be valid for, its serial number, and any
/// check of the application's own).
///
/// ```no_run
/// # use sigil_client::{PublicKey, SecretKey};
/// # fn example(secret: SecretKey, server: PublicKey) -> Result<(), sigil_client::ClientError> {
/// use sigil_client::{ClientOptions, ClientTls};
///
/// let tls = ClientTls::new()
///     .with_ca_file("ca.pem".as_ref())?             // instead of the public roots
///     .with_client_cert_files("me.pem".as_ref(), "me.key".as_ref())?
///     .with_server_serials(["0a:1b:2c"])?
///     .with_certificate_check(|cert| match cert.common_name.as_deref() {
///         Some("rpc.example") => Ok(()),
///         other => Err(format!("unexpected common name {other:?}")),
///     })
///     .build()?;
/// let options = ClientOptions::new(secret, server).with_tls(tls);
/// # Ok(())
/// # }
/// ```
///
/// The private key of the client certificate is read from a file (never
/// from an argument), kept in memory that is zeroized once rustls has
/// loaded it, and never shown in any message.
pub struct ClientTls {
    /// `None`: the public roots.
    roots: Option<RootCertStore>,
    identity: Option<Arc<CertifiedKey>>,
    server_name: Option<ServerName<'static>>,
    serials: Vec<String>,
    check: Option<CertificateCheck>,
}

impl Default for ClientTls {
    fn default() -> ClientTls {
        ClientTls::new()
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_roots", &self.roots.as_ref().map(RootCertStore::len))
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .field("serials", &self.serials)
            .field("check", &self.check.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusts the public roots built in (Mozilla's, from `webpki-roots`),
    /// shows no client certificate and checks nothing beyond chain and name.
    pub fn new() -> ClientTls {
        ClientTls {
            roots: None,
            identity: None,
            server_name: None,
            serials: Vec::new(),
            check: None,
        }
    }

    /// Trusts these roots, instead of the public ones (added to any given
    /// before).
    pub fn with_roots(mut self, roots: RootCertStore) -> ClientTls {
        self.roots
            .get_or_insert_with(RootCertStore::empty)
            .roots
            .extend(roots.roots);
        self
    }

    /// Trusts the CA certificates of this PEM text, instead of the public
    /// roots (added to any given before).
    pub fn with_ca_pem(self, pem: &[u8]) -> Result<ClientTls, ClientError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| ClientError::Config(format!("tls.ca: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Config(format!("tls.ca: {e}")))?;
        }
        if roots.is_empty() {
            return Err(ClientError::Config(
                "tls.ca: no certificate in the file (expected PEM: -----BEGIN CERTIFICATE-----)"
                    .into(),
            ));
        }
        Ok(self.with_roots(roots))
    }

    /// [`with_ca_pem`](Self::with_ca_pem) with the PEM read from a file.
    pub fn with_ca_file(self, path: &Path) -> Result<ClientTls, ClientError> {
        let pem = read(path, "tls.ca", false)?;
        self.with_ca_pem(pem.as_bytes())
    }

    /// Shows this certificate chain (PEM, the client's certificate first)
    /// to servers that ask for one, signing with `key_pem` (PKCS#8, PKCS#1
    /// or SEC1 PEM). The key must match the certificate.
    pub fn with_client_cert_pem(
        mut self,
        chain_pem: &[u8],
        key_pem: &[u8],
    ) -> Result<ClientTls, ClientError> {
        let bad = |e: &dyn fmt::Display| ClientError::Config(format!("tls.client_cert: {e}"));
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(&e))?;
        if chain.is_empty() {
            return Err(bad(
                &"no certificate in the file (expected PEM: -----BEGIN CERTIFICATE-----)",
            ));
        }
        // The DER of the key is zeroized when dropped (rustls keeps its own
        // copy inside the signing key); errors never quote the key.
        let key = Zeroizing::new(PrivateKeyDer::from_pem_slice(key_pem).map_err(|_| {
            ClientError::Config(
                "tls.client_key: no private key in the file (expected PEM: \
                 -----BEGIN PRIVATE KEY-----)"
                    .into(),
            )
        })?);
        let signer = rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
            ClientError::Config("tls.client_key: the key's algorithm is not supported".into())
        })?;
        let certified = CertifiedKey::new(chain, signer);
        certified.keys_match().map_err(|_| {
            ClientError::Config(
                "tls.client_key is not the key of tls.client_cert (they do not match)".into(),
            )
        })?;
        self.identity = Some(Arc::new(certified));
        Ok(self)
    }

    /// [`with_client_cert_pem`](Self::with_client_cert_pem) with the chain
    /// and the key read from files. The key file is a secret: on Unix it is
    /// refused if group or others can read it.
    pub fn with_client_cert_files(
        self,
        chain: &Path,
        key: &Path,
    ) -> Result<ClientTls, ClientError> {
        let chain = read(chain, "tls.client_cert", false)?;
        let key = read(key, "tls.client_key", true)?;
        self.with_client_cert_pem(chain.as_bytes(), key.as_bytes())
    }

    /// Checks the server's certificate against `name` (a DNS name or an IP
    /// address) instead of the URL's host.
    pub fn with_server_name(mut self, name: &str) -> Result<ClientTls, ClientError> {
        let name = ServerName::try_from(name.to_owned()).map_err(|_| {
            ClientError::Config("tls.server_name: not a DNS name or an IP address".to_owned())
        })?;
        self.server_name = Some(name);
        Ok(self)
    }

    /// Accepts only a server certificate with one of these serial numbers
    /// (hex: `0A:1B:…` or `0a1b…`; case, colons and leading zeros do not
    /// matter).
    pub fn with_server_serials<'a>(
        mut self,
        serials: impl IntoIterator<Item = &'a str>,
    ) -> Result<ClientTls, ClientError> {
        for serial in serials {
            let normalized = sigil_core::cert::normalize_serial(serial).ok_or_else(|| {
                ClientError::Config("tls.server_serial: not a serial number in hex".into())
            })?;
            self.serials.push(normalized);
        }
        Ok(self)
    }

    /// Runs `check` on the server's certificate once rustls has verified its
    /// chain and name (and after the serial number check): an `Err` refuses
    /// the connection with its reason, as a TLS error.
    pub fn with_certificate_check(
        mut self,
        check: impl Fn(&ServerCertificate) -> Result<(), String> + Send + Sync + 'static,
    ) -> ClientTls {
        self.check = Some(Arc::new(check));
        self
    }

    /// The `[tls]` keys of a client's configuration: `tls.ca`,
    /// `tls.client_cert` with `tls.client_key`, `tls.server_name` and
    /// `tls.server_serial`; `None` when none is set.
    pub fn from_config(config: &Config) -> Result<Option<ClientTls>, ClientError> {
        let tls = &config.tls;
        if tls.ca.value.is_none()
            && tls.client_cert.value.is_none()
            && tls.client_key.value.is_none()
            && tls.server_name.value.is_none()
            && tls.server_serial.value.is_empty()
        {
            return Ok(None);
        }
        let mut out = ClientTls::new();
        if let Some(ca) = &tls.ca.value {
            out = out.with_ca_file(ca)?;
        }
        out = match (&tls.client_cert.value, &tls.client_key.value) {
            (Some(cert), Some(key)) => out.with_client_cert_files(cert, key)?,
            (None, None) => out,
            (Some(_), None) => {
                return Err(ClientError::Config(
                    "tls.client_cert needs tls.client_key, the certificate's private key".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ClientError::Config(
                    "tls.client_key needs tls.client_cert, the certificate it belongs to".into(),
                ));
            }
        };
        if let Some(name) = &tls.server_name.value {
            out = out.with_server_name(name)?;
        }
        out.with_server_serials(tls.server_serial.value.iter().map(String::as_str))
            .map(Some)
    }

    /// The rustls configuration.
    pub fn build(self) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        let provider = provider();
        let roots = Arc::new(self.roots.unwrap_or_else(public_roots));
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
        let builder =
            if self.server_name.is_none() && self.serials.is_empty() && self.check.is_none() {
                builder.with_root_certificates(roots)
            } else {
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| ClientError::Config(format!("TLS: {e}")))?;
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(CheckedVerifier {
                        webpki,
                        server_name: self.server_name,
                        serials: self.serials,
                        check: self.check,
                    }))
            };
        let config = match self.identity {
            Some(identity) => builder.with_client_cert_resolver(Arc::new(Identity(identity))),
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

/// Reads a PEM file named by `key`; a secret one is checked for its
/// permissions. An unreadable file is an I/O error, naming the key.
fn read(path: &Path, key: &str, secret: bool) -> Result<Zeroizing<String>, ClientError> {
    keyfile::read_text(path, MAX_PEM_FILE, secret)
        .map_err(|e| crate::options::key_file_error(key, e))
}

/// The one client certificate, shown to every server that asks.
#[derive(Debug)]
struct Identity(Arc<CertifiedKey>);

impl ResolvesClientCert for Identity {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// rustls' own verification (chain and name; the name may be the configured
/// one instead of the URL's), then the serial number and the application's
/// check.
struct CheckedVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    server_name: Option<ServerName<'static>>,
    serials: Vec<String>,
    check: Option<CertificateCheck>,
}

impl fmt::Debug for CheckedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedVerifier")
            .field("server_name", &self.server_name)
            .field("serials", &self.serials)
            .field("check", &self.check.is_some())
            .finish_non_exhaustive()
    }
}

/// Why the server's certificate was refused after rustls accepted it.
#[derive(Debug)]
struct Refused(String);

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(reason: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        reason,
    )))))
}

impl ServerCertVerifier for CheckedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = self.server_name.as_ref().unwrap_or(server_name);
        let verified =
            self.webpki
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)?;
        let cert = CertificateInfo::from_der(end_entity).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        if !self.serials.is_empty() && !self.serials.iter().any(|s| cert.serial_is(s)) {
            return Err(refused(format!(
                "the server's certificate has serial number {}, not one of tls.server_serial ({})",
                cert.serial,
                self.serials.join(", ")
            )));
        }
        if let Some(check) = &self.check {
            check(&cert).map_err(|reason| {
                refused(format!(
                    "the certificate check refused the server's certificate: {reason}"
                ))
            })?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}
