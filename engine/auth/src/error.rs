//! Error types: [`AuthError`] for loading, signing and generating keys, [`VerifyError`] for a
//! signature check, [`AuthRejection`] for a request a server refuses.

use std::path::PathBuf;

/// A key or secret file could not be used, a key could not be parsed, or signing/generation
/// failed. Every variant names the file (or says the key came from text) and the problem.
///
/// No variant ever carries key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The file does not exist.
    #[error("key or secret file {} does not exist", path.display())]
    Missing {
        /// The file asked for.
        path: PathBuf,
    },
    /// The path exists but is not a regular file (a directory, a FIFO, a device, ...).
    #[error("{} is not a regular file (it is a {kind}); give the path of a key or secret file", path.display())]
    NotAFile {
        /// The path asked for.
        path: PathBuf,
        /// What it is instead, in words.
        kind: &'static str,
    },
    /// The file can be read or written by its group or by others.
    #[error(
        "key or secret file {} has mode {mode:04o}; it must not be readable or writable by group or others (run: chmod 600 {})",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The offending file.
        path: PathBuf,
        /// Its permission bits (`st_mode & 0o7777`).
        mode: u32,
    },
    /// The file is larger than any key or secret this crate reads.
    #[error("key or secret file {} is {size} bytes, more than the {max} bytes allowed; is this the right file?", path.display())]
    TooLarge {
        /// The offending file.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// The limit, [`crate::SECRET_FILE_BYTES_MAX`].
        max: u64,
    },
    /// The file could not be read (or, for [`crate::generate`], written) for another reason.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done: "read", "create", "write", ...
        action: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::generate`] refuses to overwrite an existing file.
    #[error("{} already exists; refusing to overwrite a key file (move it away or choose another path)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The text is not a key in a supported format.
    #[error("{origin}: {detail}")]
    KeyFormat {
        /// Where the text came from: `key file /path` or `PEM text`.
        origin: String,
        /// What is wrong and which formats are accepted.
        detail: String,
    },
    /// Signing failed (only if the operating system's random source fails, for RSA-PSS).
    #[error("signing failed: {detail}")]
    Sign {
        /// The underlying error, without key material.
        detail: String,
    },
    /// Key generation or encoding failed.
    #[error("key generation failed: {detail}")]
    KeyGen {
        /// The underlying error, without key material.
        detail: String,
    },
}

/// Why a signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature is not standard base64 with padding.
    #[error("signature is not standard base64 (with padding)")]
    NotBase64,
    /// The decoded signature has the wrong length for the key.
    #[error("signature is {got} bytes; this key's signatures are {expected} bytes")]
    WrongLength {
        /// Bytes after base64 decoding.
        got: usize,
        /// Bytes a signature of this key has.
        expected: usize,
    },
    /// The signature does not match the message and key.
    #[error("signature does not match the message and key")]
    Mismatch,
}

/// Why a server refuses a request's authentication, with the exact HTTP answer Kalshi gives.
///
/// [`AuthRejection::status`] and [`AuthRejection::body`] give the status code and the verbatim
/// body recorded on the demo exchange (`protocol.md` §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// One of the three `KALSHI-ACCESS-*` headers is absent or empty.
    #[error("header {header} is missing")]
    MissingHeader {
        /// The first missing header, one of [`crate::HEADER_KEY`], [`crate::HEADER_TIMESTAMP`],
        /// [`crate::HEADER_SIGNATURE`].
        header: &'static str,
    },
    /// The timestamp header is not a decimal number of milliseconds.
    #[error(
        "header {} is not a decimal number of milliseconds",
        crate::HEADER_TIMESTAMP
    )]
    MalformedTimestamp,
    /// The timestamp is outside the accepted window around the server's clock.
    #[error("timestamp {timestamp_ms} ms is outside the accepted window around now ({now_ms} ms)")]
    StaleTimestamp {
        /// The request's timestamp.
        timestamp_ms: u64,
        /// The server's clock when checking.
        now_ms: u64,
    },
    /// No key with this id is known.
    #[error("unknown API key id")]
    UnknownKey,
    /// The signature does not verify (wrong key, wrong message, bad encoding, wrong padding).
    #[error("signature does not verify: {0}")]
    BadSignature(VerifyError),
}

/// Body of a 401 for a bad signature (`protocol.md` §2.5, verbatim).
pub const BODY_BAD_SIGNATURE: &str = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"INCORRECT_API_KEY_SIGNATURE"}}"#;
/// Body of a 401 for an unknown key id (`protocol.md` §2.5, verbatim).
pub const BODY_UNKNOWN_KEY: &str = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"NOT_FOUND"}}"#;
/// Body of a 401 for a missing signature header (`protocol.md` §2.5, verbatim).
pub const BODY_SIGNATURE_MISSING: &str = r#"{"error":{"code":"signature_is_missing_from_headers","message":"signature is missing from headers"}}"#;
/// Body of a 401 for a timestamp outside the window (`protocol.md` §2.5, verbatim).
pub const BODY_TIMESTAMP_EXPIRED: &str =
    r#"{"error":{"code":"header_timestamp_expired","message":"header timestamp expired"}}"#;

impl AuthRejection {
    /// HTTP status code to answer with: always 401 (`protocol.md` §2.5). A WebSocket handshake
    /// answers it before the upgrade.
    #[must_use]
    pub fn status(&self) -> u16 {
        401
    }

    /// The verbatim JSON body Kalshi answers this case with (`protocol.md` §2.5).
    ///
    /// Four cases were recorded verbatim: bad signature, unknown key id, missing signature
    /// header, timestamp too old. The rest are inferred and said so here:
    /// * a missing key or timestamp header answers like a missing signature header (an
    ///   unsigned request lacks all three; only the signature case was recorded);
    /// * a timestamp too far in the future, and a timestamp that is not a number, answer like
    ///   a timestamp too old.
    #[must_use]
    pub fn body(&self) -> &'static str {
        match self {
            Self::MissingHeader { .. } => BODY_SIGNATURE_MISSING,
            Self::MalformedTimestamp | Self::StaleTimestamp { .. } => BODY_TIMESTAMP_EXPIRED,
            Self::UnknownKey => BODY_UNKNOWN_KEY,
            Self::BadSignature(_) => BODY_BAD_SIGNATURE,
        }
    }
}
