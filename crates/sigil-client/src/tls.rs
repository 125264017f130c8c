//! TLS for `wss://`: rustls with the `ring` provider, chosen explicitly.
//!
//! The provider is named here rather than taken from rustls' process-wide
//! default, which panics when no provider, or more than one, is compiled in.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;

use crate::error::ClientError;

/// A TLS client configuration that trusts `roots`, without a client
/// certificate, using rustls' `ring` provider and its safe default protocol
/// versions. For a client certificate, build a [`rustls::ClientConfig`] the
/// same way and end with `with_client_auth_cert`.
pub fn tls_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The configuration used for `wss://` when none is given: the Mozilla
/// roots shipped in `webpki-roots`. Built once.
pub(crate) fn default_tls_config() -> Result<Arc<rustls::ClientConfig>, ClientError> {
    static DEFAULT: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    if let Some(config) = DEFAULT.get() {
        return Ok(config.clone());
    }
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = tls_config(roots)?;
    Ok(DEFAULT.get_or_init(|| config).clone())
}
