//! The rustls client configuration shared by the WebSocket and REST clients.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// Why a TLS client configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// An extra root certificate file could not be read or parsed.
    #[error("TLS root certificate file {path}: {message}")]
    RootFile {
        /// The file named in the configuration.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration (for example no usable protocol version).
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// Builds a rustls client configuration that trusts the Mozilla root set (for the live
/// exchange) plus every certificate in `extra_roots` (PEM files; used for the simulator's
/// self-signed certificate). Certificates are always verified: there is no switch to turn
/// verification off.
///
/// # Errors
/// [`TlsError::RootFile`] when an extra root file is missing, unreadable, holds no
/// certificate or holds a certificate rustls rejects.
pub fn client_config(extra_roots: &[PathBuf]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for path in extra_roots {
        add_pem_roots(&mut roots, path)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> Result<(), TlsError> {
    let err = |message: String| TlsError::RootFile {
        path: path.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut added = 0usize;
    for cert in CertificateDer::pem_slice_iter(&bytes) {
        let cert: CertificateDer<'static> =
            cert.map_err(|e| err(format!("not a PEM certificate: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| err(format!("certificate rejected: {e}")))?;
        added += 1;
    }
    if added == 0 {
        return Err(err("no `BEGIN CERTIFICATE` block found".to_owned()));
    }
    Ok(())
}
