//! Plain and TLS server streams.

use std::fs;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// An accepted connection, plain or TLS. TLS handshakes happen lazily on the first read or
/// write, under the socket's timeouts.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<StreamOwned<ServerConnection, TcpStream>>),
}

impl Stream {
    /// Wraps an accepted socket, in TLS when a config is given.
    ///
    /// # Errors
    /// rustls refusing to create a connection from the config.
    pub fn new(tcp: TcpStream, tls: Option<&Arc<ServerConfig>>) -> io::Result<Self> {
        Ok(match tls {
            None => Stream::Plain(tcp),
            Some(config) => {
                let conn = ServerConnection::new(Arc::clone(config)).map_err(io::Error::other)?;
                Stream::Tls(Box::new(StreamOwned::new(conn, tcp)))
            }
        })
    }

    /// The underlying socket (for timeouts, non-blocking mode, shutdown, addresses).
    #[must_use]
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => &tls.sock,
        }
    }

    /// Ends the connection politely: a TLS `close_notify` (for TLS), then a TCP shutdown of
    /// both directions. Errors are ignored (the peer may be gone).
    pub fn close(&mut self) {
        if let Stream::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Both);
    }

    /// Whether this is a TLS stream.
    #[must_use]
    pub const fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The private key file is readable by group or others.
    #[error("{0}: private key file is readable by group or others; chmod 600 it")]
    KeyPermissions(PathBuf),
    /// rustls rejected the certificate chain or key.
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

#[cfg(unix)]
fn key_is_private(path: &Path) -> Result<bool, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::metadata(path).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(meta.permissions().mode() & 0o077 == 0)
}

#[cfg(not(unix))]
fn key_is_private(_path: &Path) -> Result<bool, TlsError> {
    Ok(true)
}

/// Builds a rustls server config (ring provider, TLS 1.2 and 1.3, no client auth) from a PEM
/// certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1). The key file must not be
/// readable by group or others.
///
/// # Errors
/// Unreadable or unparsable files, an empty chain, a key file with loose permissions, or
/// rustls rejecting the pair.
pub fn tls_config_from_pem(
    cert_path: &Path,
    key_path: &Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_error = |path: &Path, message: String| TlsError::Pem {
        path: path.to_owned(),
        message,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
        .map_err(|e| pem_error(cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(cert_path, e.to_string()))?;
    if chain.is_empty() {
        return Err(pem_error(cert_path, "no CERTIFICATE block found".into()));
    }
    if !key_is_private(key_path)? {
        return Err(TlsError::KeyPermissions(key_path.to_owned()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key_path).map_err(|e| pem_error(key_path, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
