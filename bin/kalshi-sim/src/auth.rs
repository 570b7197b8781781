//! Request authentication (`protocol.md` §2) over kalshi-auth: a [`KeyRing`] of the
//! configured public keys (RSA-PSS or Ed25519) checked with the configured clock-skew window.
//! A failure answers 401 with Kalshi's verbatim body (§2.5).

use kalshi_auth::{KeyRing, SkewWindow, VerifyingKey};
use kalshi_http::Request;

pub use kalshi_auth::{BODY_BAD_SIGNATURE, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// The server's authentication: off, or a key ring and a skew window.
#[derive(Debug)]
pub struct Auth {
    ring: Option<KeyRing>,
    window: SkewWindow,
}

impl Auth {
    /// No authentication: every request passes.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            ring: None,
            window: SkewWindow::KALSHI_OBSERVED,
        }
    }

    /// Loads the configured public keys.
    ///
    /// # Errors
    /// A key file that cannot be read or parsed (named in the message).
    pub fn from_config(section: &crate::config::AuthSection) -> anyhow::Result<Self> {
        let mut ring = KeyRing::new();
        for (key_id, path) in &section.keys {
            let key = VerifyingKey::from_pem_file(path)
                .map_err(|e| anyhow::anyhow!("auth.keys.{key_id}: {}: {e}", path.display()))?;
            ring.insert(key_id.clone(), key);
        }
        Ok(Self {
            ring: Some(ring),
            window: SkewWindow {
                past_ms: section.skew_past_ms,
                future_ms: section.skew_future_ms,
            },
        })
    }

    /// Checks a request's `KALSHI-ACCESS-*` headers against its method and path (the query
    /// is not signed) at `now_ms`.
    ///
    /// # Errors
    /// The verbatim 401 body to answer with.
    pub fn check(&self, request: &Request, now_ms: u64) -> Result<(), &'static str> {
        let Some(ring) = &self.ring else {
            return Ok(());
        };
        ring.check_window(
            |name| request.header(name),
            &request.method,
            &request.path,
            now_ms,
            self.window,
        )
        .map_err(|rejection| rejection.body())
    }
}
