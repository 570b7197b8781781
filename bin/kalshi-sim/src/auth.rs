//! Request authentication (`protocol.md` §2) over kalshi-auth: a [`KeyRing`] of the
//! configured public keys (RSA-PSS or Ed25519) checked with the configured clock-skew window.
//! A failure answers 401 with Kalshi's verbatim body (§2.5). Keys can be registered and revoked
//! while running (the control endpoint's `/add-key` and `/revoke-key`), as an operator does on
//! the exchange's API-key page when rotating a key.

use std::sync::RwLock;

use kalshi_auth::{KeyRing, SkewWindow, VerifyingKey};
use kalshi_http::Request;

pub use kalshi_auth::{BODY_BAD_SIGNATURE, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// The server's authentication: off, or a key ring and a skew window.
#[derive(Debug)]
pub struct Auth {
    ring: Option<RwLock<KeyRing>>,
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
            ring: Some(RwLock::new(ring)),
            window: SkewWindow {
                past_ms: section.skew_past_ms,
                future_ms: section.skew_future_ms,
            },
        })
    }

    /// Registers (or replaces) the public key of `key_id` from a PEM file.
    ///
    /// # Errors
    /// Authentication is off, or the file cannot be read or parsed (named in the message).
    pub fn add_key(&self, key_id: &str, path: &std::path::Path) -> Result<(), String> {
        let Some(ring) = &self.ring else {
            return Err("authentication is disabled (auth.enabled = false)".to_owned());
        };
        let key = VerifyingKey::from_pem_file(path)
            .map_err(|e| format!("public key {}: {e}", path.display()))?;
        ring.write()
            .map_err(|_| "the key ring is poisoned".to_owned())?
            .insert(key_id.to_owned(), key);
        Ok(())
    }

    /// Revokes `key_id`: its requests are refused from now on. Returns whether it was known.
    pub fn revoke_key(&self, key_id: &str) -> bool {
        self.ring
            .as_ref()
            .and_then(|ring| ring.write().ok())
            .is_some_and(|mut ring| ring.remove(key_id).is_some())
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
        let Ok(ring) = ring.read() else {
            return Err(BODY_BAD_SIGNATURE);
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
