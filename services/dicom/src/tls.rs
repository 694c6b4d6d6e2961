//! DICOM TLS (PS3.15 B.1, "Basic TLS Secure Transport Connection"): rustls
//! configurations for the listener (server) and for delivery (client), read
//! from PEM files. TLS 1.2 and 1.3 with rustls' safe defaults and the `ring`
//! provider; certificates are verified against the given CA bundle, never
//! skipped.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading PEM certificates from {path}: {source}")]
    Certificates {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("reading the PEM private key from {path}: {source}")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA bundle {path}: {source}")]
    Roots {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("client certificate verifier from {path}: {source}")]
    Verifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Certificates {
            path: path.into(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::Key {
        path: path.into(),
        source,
    })
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|source| TlsError::Roots {
            path: path.into(),
            source,
        })?;
    }
    Ok(roots)
}

/// The listener's configuration: our chain and key; with `client_ca`,
/// callers must present a certificate that CA signed.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|source| TlsError::Verifier {
                path: ca.into(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(builder.with_single_cert(
        certificates(cert)?,
        private_key(key)?,
    )?))
}

/// Delivery's configuration: destinations verified against `ca`; our
/// certificate and key when the destination asks for one.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The client configuration `delivery.tls` asks for (`None` when off).
pub fn delivery_client(
    config: &liverseg_core::config::DeliveryConfig,
) -> Result<Option<Arc<rustls::ClientConfig>>, TlsError> {
    if !config.tls {
        return Ok(None);
    }
    let identity = (!config.tls_cert.as_os_str().is_empty())
        .then_some((config.tls_cert.as_path(), config.tls_key.as_path()));
    client_config(&config.tls_ca, identity).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("liverseg-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let missing = dir.join("missing.pem");
        let e = server_config(&missing, &missing, None).unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = client_config(&empty, None).unwrap_err();
        assert!(matches!(e, TlsError::NoCertificate { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
