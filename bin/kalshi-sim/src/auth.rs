//! Request authentication (`protocol.md` §2): a key ring of public keys by key id, checked
//! with a clock-skew window. (Placeholder until kalshi-auth is merged.)

use kalshi_http::Request;

/// `KALSHI-ACCESS-KEY`.
pub const HEADER_KEY: &str = "KALSHI-ACCESS-KEY";
/// `KALSHI-ACCESS-TIMESTAMP`.
pub const HEADER_TIMESTAMP: &str = "KALSHI-ACCESS-TIMESTAMP";
/// `KALSHI-ACCESS-SIGNATURE`.
pub const HEADER_SIGNATURE: &str = "KALSHI-ACCESS-SIGNATURE";
/// 401 body for a bad signature.
pub const BODY_BAD_SIGNATURE: &str = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"INCORRECT_API_KEY_SIGNATURE"}}"#;

/// The server's authentication settings.
#[derive(Debug, Default)]
pub struct Auth {
    enabled: bool,
}

impl Auth {
    /// No authentication.
    #[must_use]
    pub fn disabled() -> Self {
        Self { enabled: false }
    }

    /// Loads the configured keys.
    ///
    /// # Errors
    /// An unreadable key file.
    pub fn from_config(_section: &crate::config::AuthSection) -> anyhow::Result<Self> {
        Ok(Self { enabled: true })
    }

    /// Checks a request; on failure, the verbatim 401 body.
    ///
    /// # Errors
    /// The 401 body to answer with.
    pub fn check(&self, _request: &Request, _now_ms: u64) -> Result<(), &'static str> {
        if self.enabled {
            return Err(BODY_BAD_SIGNATURE);
        }
        Ok(())
    }
}
