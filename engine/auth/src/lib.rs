//! # kalshi-auth: Kalshi API keys, request signing and verification
//!
//! Kalshi authenticates a request (REST, or the WebSocket handshake) with three headers
//! (`protocol.md` §2):
//!
//! | header | value |
//! |---|---|
//! | [`HEADER_KEY`] `KALSHI-ACCESS-KEY` | the API key id |
//! | [`HEADER_TIMESTAMP`] `KALSHI-ACCESS-TIMESTAMP` | Unix time in milliseconds, decimal |
//! | [`HEADER_SIGNATURE`] `KALSHI-ACCESS-SIGNATURE` | base64 signature of [`string_to_sign`] |
//!
//! The signed message is `timestamp + METHOD + path`, the path from the API root
//! (`/trade-api/v2/...`, or `/trade-api/ws/v2` for the WebSocket) without its query string.
//! Keys are RSA (signed with PSS, SHA-256, MGF1-SHA-256, 32-byte salt) or Ed25519.
//!
//! The gatherer signs with a [`SigningKey`]; the simulator checks with a [`KeyRing`] of
//! [`VerifyingKey`]s, which also gives the exact 401 body Kalshi answers each failure with.
//!
//! ## Secrets
//! * Private keys are read only from files that are regular files and that neither group nor
//!   others can access ([`check_key_file_permissions`]); the same check serves every other
//!   secret file through [`read_secret_file`].
//! * No `Debug` or `Display` output and no error of this crate contains key material; keys and
//!   secret file contents are wiped from memory when dropped.
//! * [`generate`] creates the private file with mode `0600` in the call that creates it.
//!
//! The cryptography is the RustCrypto `rsa` crate and `ed25519-dalek`; nothing is hand-made.
//!
//! ## Example
//! ```
//! use kalshi_auth::{KeyKind, KeyRing, SigningKey};
//!
//! let key = SigningKey::generate(KeyKind::Ed25519).unwrap();
//! let headers = key.headers("my-key-id", 1_703_123_456_789, "GET", "/trade-api/ws/v2").unwrap();
//!
//! let mut ring = KeyRing::new();
//! ring.insert("my-key-id", key.verifying_key());
//! let lookup = |name: &str| {
//!     headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
//! };
//! assert_eq!(ring.check(lookup, "GET", "/trade-api/ws/v2", 1_703_123_457_000, 10_000), Ok(()));
//! ```

mod error;
mod file;
mod generate;
mod keyring;
mod keys;

pub use error::{
    AuthError, AuthRejection, BODY_BAD_SIGNATURE, BODY_SIGNATURE_MISSING, BODY_TIMESTAMP_EXPIRED,
    BODY_UNKNOWN_KEY, VerifyError,
};
pub use file::{SECRET_FILE_BYTES_MAX, check_key_file_permissions, read_secret_file};
pub use generate::{RSA_BITS, generate, generate_rsa_with_bits_for_tests};
pub use keyring::{KeyRing, SkewWindow};
pub use keys::{KeyKind, PSS_SALT_BYTES, SigningKey, VerifyingKey, string_to_sign};
pub use zeroize::Zeroizing;

/// Header carrying the API key id (`protocol.md` §2.1).
pub const HEADER_KEY: &str = "KALSHI-ACCESS-KEY";
/// Header carrying the request time in Unix milliseconds, decimal (`protocol.md` §2.1).
pub const HEADER_TIMESTAMP: &str = "KALSHI-ACCESS-TIMESTAMP";
/// Header carrying the base64 signature (`protocol.md` §2.1).
pub const HEADER_SIGNATURE: &str = "KALSHI-ACCESS-SIGNATURE";
