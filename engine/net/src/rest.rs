//! The blocking REST client of the control plane.
//!
//! It is deliberately simple: one `ureq` agent (connection reuse, rustls), a global timeout per
//! request, a cap on the response size, and every HTTP status returned as data rather than as an
//! error, so that the caller sees a 429 or a 401 body verbatim and decides. It runs on the control
//! plane's thread, never on a shard core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// Settings for [`RestClient`].
#[derive(Debug, Clone)]
pub struct RestClientConfig {
    /// Base URL including the API root, e.g. `https://external-api.kalshi.com/trade-api/v2`.
    pub base_url: String,
    /// Bound on one whole request (connect, send, receive).
    pub timeout: Duration,
    /// Largest response body accepted.
    pub body_bytes_max: u64,
    /// Extra PEM root certificates. When non-empty they REPLACE the Mozilla root set (this is
    /// for the simulator's self-signed certificate; the live exchange needs none).
    pub extra_roots: Vec<PathBuf>,
}

/// A response: status and body, whatever the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body (at most [`RestClientConfig::body_bytes_max`] bytes).
    pub body: Vec<u8>,
}

impl RestResponse {
    /// The body as text for logs (lossy, first 512 bytes).
    pub fn body_excerpt(&self) -> String {
        let cut = &self.body[..self.body.len().min(512)];
        String::from_utf8_lossy(cut).into_owned()
    }
}

/// Why a request produced no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RestError {
    /// The configuration is unusable (bad base URL, unreadable root file).
    #[error("REST client configuration: {0}")]
    Config(String),
    /// The request timed out.
    #[error("REST request {path} timed out")]
    Timeout {
        /// Path and query requested.
        path: String,
    },
    /// The response body exceeded the size cap.
    #[error("REST response to {path} is larger than {limit} bytes")]
    TooLarge {
        /// Path and query requested.
        path: String,
        /// The cap.
        limit: u64,
    },
    /// Connection, DNS, TLS or protocol failure.
    #[error("REST request {path} failed: {message}")]
    Transport {
        /// Path and query requested.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The blocking REST client. Cheap to clone (the agent is shared).
#[derive(Clone)]
pub struct RestClient {
    agent: ureq::Agent,
    base_url: String,
    /// The path part of `base_url` (e.g. `/trade-api/v2`), the prefix of every signed path.
    base_path: String,
    body_bytes_max: u64,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl RestClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`RestError::Config`] for a base URL that is not `http(s)://host[:port]/path`, or an
    /// unreadable or empty root certificate file.
    pub fn new(config: &RestClientConfig) -> Result<RestClient, RestError> {
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        let after_scheme = base_url
            .strip_prefix("https://")
            .or_else(|| base_url.strip_prefix("http://"))
            .ok_or_else(|| {
                RestError::Config(format!(
                    "base URL {base_url:?} must start with http:// or https://"
                ))
            })?;
        let base_path = match after_scheme.find('/') {
            Some(i) => after_scheme[i..].to_owned(),
            None => String::new(),
        };
        if after_scheme.len() == base_path.len() {
            return Err(RestError::Config(format!(
                "base URL {base_url:?} has no host"
            )));
        }
        let mut tls = TlsConfig::builder();
        if !config.extra_roots.is_empty() {
            let mut certs = Vec::new();
            for path in &config.extra_roots {
                let pem = std::fs::read(path).map_err(|e| {
                    RestError::Config(format!("root certificate file {}: {e}", path.display()))
                })?;
                let before = certs.len();
                for item in ureq::tls::parse_pem(&pem) {
                    if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                        certs.push(c.to_owned());
                    }
                }
                if certs.len() == before {
                    return Err(RestError::Config(format!(
                        "root certificate file {} holds no certificate",
                        path.display()
                    )));
                }
            }
            let certs: Vec<Certificate<'static>> = certs;
            tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
        }
        let agent_config = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .tls_config(tls.build())
            .user_agent("kalshi-gatherer")
            .build();
        Ok(RestClient {
            agent: agent_config.into(),
            base_url,
            base_path,
            body_bytes_max: config.body_bytes_max,
        })
    }

    /// The path that must be signed for `path_and_query` (the API root prefix plus the path,
    /// without the query string), e.g. `/trade-api/v2/markets`.
    pub fn signed_path(&self, path_and_query: &str) -> String {
        let path = path_and_query.split('?').next().unwrap_or(path_and_query);
        format!("{}{}", self.base_path, path)
    }

    /// `GET {base_url}{path_and_query}` with `headers` (the signature headers, or none).
    ///
    /// # Errors
    /// [`RestError`] when there is no response; an HTTP error status is a response.
    pub fn get(
        &self,
        path_and_query: &str,
        headers: &[(&str, String)],
    ) -> Result<RestResponse, RestError> {
        let url = format!("{}{}", self.base_url, path_and_query);
        let mut request = self.agent.get(&url);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let path = || path_and_query.to_owned();
        let mut response = request.call().map_err(|e| map_error(e, path()))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(self.body_bytes_max)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => RestError::TooLarge {
                    path: path(),
                    limit: self.body_bytes_max,
                },
                other => map_error(other, path()),
            })?;
        Ok(RestResponse { status, body })
    }
}

fn map_error(error: ureq::Error, path: String) -> RestError {
    match error {
        ureq::Error::Timeout(_) => RestError::Timeout { path },
        other => RestError::Transport {
            path,
            message: other.to_string(),
        },
    }
}
