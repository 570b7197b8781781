//! Signing and verifying keys: PEM parsing, signing, verification.

use std::fmt;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::pkcs1::{DecodeRsaPrivateKey as _, DecodeRsaPublicKey as _};
use rsa::pkcs8::{
    EncodePrivateKey as _, EncodePublicKey as _, LineEnding, ObjectIdentifier, PrivateKeyInfoRef,
    SecretDocument, SubjectPublicKeyInfoRef,
};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::traits::PublicKeyParts as _;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::{AuthError, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, VerifyError};

/// PSS salt length in bytes: the SHA-256 digest length, as Kalshi requires (`protocol.md` §2.3).
pub const PSS_SALT_BYTES: usize = 32;

/// Ed25519 signature length in bytes.
const ED25519_SIGNATURE_BYTES: usize = 64;

/// OID of `rsaEncryption` (PKCS#1), the algorithm of RSA keys in PKCS#8 and SPKI.
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// OID of Ed25519 (RFC 8410).
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The private key formats accepted, for error messages.
const ACCEPTED_PRIVATE: &str = "accepted private key formats: PKCS#1 RSA (-----BEGIN RSA PRIVATE KEY-----), PKCS#8 RSA or PKCS#8 Ed25519 (-----BEGIN PRIVATE KEY-----), unencrypted";
/// The public key formats accepted, for error messages.
const ACCEPTED_PUBLIC: &str = "accepted public key formats: SPKI RSA or Ed25519 (-----BEGIN PUBLIC KEY-----), PKCS#1 RSA (-----BEGIN RSA PUBLIC KEY-----)";

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA with PSS padding, SHA-256, MGF1-SHA-256 and a 32-byte salt: the algorithm Kalshi
    /// documents. Kalshi issues 2048-bit keys.
    RsaPss,
    /// Ed25519 (RFC 8032).
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::RsaPss => "RSA-PSS",
            Self::Ed25519 => "Ed25519",
        })
    }
}

/// The message that is signed: `timestamp_ms` in decimal, the method in upper case, and the
/// path cut at the first `?` (`protocol.md` §2.2), concatenated without separators.
///
/// `path` is the path from the API root, including `/trade-api/v2` (REST) or
/// `/trade-api/ws/v2` (WebSocket handshake), without the host.
///
/// ```
/// assert_eq!(
///     kalshi_auth::string_to_sign(1703123456789, "GET", "/trade-api/v2/portfolio/orders?limit=5"),
///     "1703123456789GET/trade-api/v2/portfolio/orders"
/// );
/// ```
#[must_use]
pub fn string_to_sign(timestamp_ms: u64, method: &str, path: &str) -> String {
    string_to_sign_raw(&timestamp_ms.to_string(), method, path)
}

/// [`string_to_sign`] with the timestamp as the text of its header, so that a server verifies
/// exactly the characters the client sent.
fn string_to_sign_raw(timestamp: &str, method: &str, path: &str) -> String {
    let path = path_without_query(path);
    let mut message = String::with_capacity(timestamp.len() + method.len() + path.len());
    message.push_str(timestamp);
    message.extend(method.chars().map(|c| c.to_ascii_uppercase()));
    message.push_str(path);
    message
}

/// `path` up to (not including) the first `?`.
fn path_without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(before, _)| before)
}

enum SigningInner {
    Rsa(rsa::pss::SigningKey<Sha256>),
    Ed25519(ed25519_dalek::SigningKey),
}

/// A private key that signs requests (the gatherer's side).
///
/// Its `Debug` output shows the kind only, never key material; the key is wiped from memory
/// when dropped.
pub struct SigningKey {
    inner: SigningInner,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Loads a private key from a PEM file after checking that the file is a regular file that
    /// group and others cannot access ([`crate::check_key_file_permissions`]).
    ///
    /// # Errors
    /// Any file error of [`crate::read_secret_file`], or [`AuthError::KeyFormat`] naming the
    /// file and the accepted formats.
    pub fn from_pem_file(path: &Path) -> Result<Self, AuthError> {
        let text = crate::read_secret_file(path)?;
        Self::parse(&text, &format!("key file {}", path.display()))
    }

    /// Parses a private key from PEM text: PKCS#1 RSA, PKCS#8 RSA or PKCS#8 Ed25519.
    ///
    /// # Errors
    /// [`AuthError::KeyFormat`] saying what was found and which formats are accepted.
    pub fn from_pem_str(pem: &str) -> Result<Self, AuthError> {
        Self::parse(pem, "PEM text")
    }

    fn parse(pem: &str, origin: &str) -> Result<Self, AuthError> {
        let format_error = |detail: String| AuthError::KeyFormat {
            origin: origin.to_owned(),
            detail,
        };
        let (label, pem) = pem_block(pem).ok_or_else(|| {
            format_error(format!(
                "no PEM key found (no -----BEGIN line); {ACCEPTED_PRIVATE}"
            ))
        })?;
        match label {
            "RSA PRIVATE KEY" => {
                let key = rsa::PrivateKey::from_pkcs1_pem(pem)
                    .map_err(|e| format_error(format!("invalid PKCS#1 RSA private key: {e}")))?;
                Ok(Self::from_rsa(key))
            }
            "PRIVATE KEY" => {
                let (_, document) = SecretDocument::from_pem(pem)
                    .map_err(|e| format_error(format!("invalid PEM: {e}; {ACCEPTED_PRIVATE}")))?;
                let info: PrivateKeyInfoRef<'_> = document
                    .decode_msg()
                    .map_err(|e| format_error(format!("invalid PKCS#8 private key: {e}")))?;
                let oid = info.algorithm.oid;
                if oid == OID_RSA {
                    let key = rsa::PrivateKey::try_from(info).map_err(|e| {
                        format_error(format!("invalid PKCS#8 RSA private key: {e}"))
                    })?;
                    Ok(Self::from_rsa(key))
                } else if oid == OID_ED25519 {
                    let key = ed25519_dalek::SigningKey::from_pkcs8_der(document.as_bytes())
                        .map_err(|e| {
                            format_error(format!("invalid PKCS#8 Ed25519 private key: {e}"))
                        })?;
                    Ok(Self {
                        inner: SigningInner::Ed25519(key),
                    })
                } else {
                    Err(format_error(format!(
                        "PKCS#8 private key of algorithm {oid}, which is neither RSA nor Ed25519; {ACCEPTED_PRIVATE}"
                    )))
                }
            }
            "ENCRYPTED PRIVATE KEY" => Err(format_error(format!(
                "the private key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out PLAIN), then chmod 600; {ACCEPTED_PRIVATE}"
            ))),
            "OPENSSH PRIVATE KEY" => Err(format_error(format!(
                "OpenSSH key format is not supported; convert it (ssh-keygen -p -m PKCS8 -f KEY); {ACCEPTED_PRIVATE}"
            ))),
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Err(format_error(format!(
                "this is a public key, but a private key is needed to sign; {ACCEPTED_PRIVATE}"
            ))),
            other => Err(format_error(format!(
                "unsupported PEM block \"{other}\"; {ACCEPTED_PRIVATE}"
            ))),
        }
    }

    fn from_rsa(key: rsa::PrivateKey) -> Self {
        Self {
            inner: SigningInner::Rsa(rsa::pss::SigningKey::new_with_salt_len(key, PSS_SALT_BYTES)),
        }
    }

    /// Generates a fresh key in memory: RSA 2048-bit or Ed25519, from the operating system's
    /// random source.
    ///
    /// # Errors
    /// [`AuthError::KeyGen`] if the random source fails.
    pub fn generate(kind: KeyKind) -> Result<Self, AuthError> {
        match kind {
            KeyKind::RsaPss => Self::generate_rsa(crate::RSA_BITS),
            KeyKind::Ed25519 => {
                let mut seed = Zeroizing::new([0_u8; 32]);
                getrandom::fill(seed.as_mut()).map_err(|e| AuthError::KeyGen {
                    detail: format!("operating system random source failed: {e}"),
                })?;
                Ok(Self {
                    inner: SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed)),
                })
            }
        }
    }

    /// Generates an RSA key of `bits` bits (1024 ..= 8192).
    pub(crate) fn generate_rsa(bits: usize) -> Result<Self, AuthError> {
        let key =
            rsa::PrivateKey::new(&mut getrandom::SysRng, bits).map_err(|e| AuthError::KeyGen {
                detail: format!("RSA {bits}-bit: {e}"),
            })?;
        Ok(Self::from_rsa(key))
    }

    /// The algorithm of this key.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        match self.inner {
            SigningInner::Rsa(_) => KeyKind::RsaPss,
            SigningInner::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// The matching public key.
    #[must_use]
    pub fn verifying_key(&self) -> VerifyingKey {
        match &self.inner {
            SigningInner::Rsa(key) => VerifyingKey::from_rsa(key.as_ref().to_public_key()),
            SigningInner::Ed25519(key) => VerifyingKey {
                inner: VerifyingInner::Ed25519(key.verifying_key()),
            },
        }
    }

    /// Signs [`string_to_sign`]`(timestamp_ms, method, path)` and returns the signature in
    /// standard base64 with padding, the value of [`HEADER_SIGNATURE`]. Any `?query` in `path`
    /// is left out of the signed message.
    ///
    /// RSA-PSS signatures are randomized (fresh salt each time); Ed25519 ones are deterministic.
    ///
    /// # Errors
    /// [`AuthError::Sign`] if RSA-PSS signing fails, which happens only if the operating
    /// system's random source fails. Ed25519 signing does not fail.
    pub fn sign(&self, timestamp_ms: u64, method: &str, path: &str) -> Result<String, AuthError> {
        let message = string_to_sign(timestamp_ms, method, path);
        let bytes = match &self.inner {
            SigningInner::Rsa(key) => key
                .try_sign(message.as_bytes())
                .map_err(|e| AuthError::Sign {
                    detail: format!("RSA-PSS: {e}"),
                })?
                .to_vec(),
            SigningInner::Ed25519(key) => key.sign(message.as_bytes()).to_vec(),
        };
        Ok(BASE64.encode(bytes))
    }

    /// The three authentication headers for a request, as `(name, value)` pairs in the order
    /// key, timestamp, signature.
    ///
    /// # Errors
    /// As [`SigningKey::sign`].
    pub fn headers(
        &self,
        key_id: &str,
        timestamp_ms: u64,
        method: &str,
        path: &str,
    ) -> Result<[(&'static str, String); 3], AuthError> {
        let signature = self.sign(timestamp_ms, method, path)?;
        Ok([
            (HEADER_KEY, key_id.to_owned()),
            (HEADER_TIMESTAMP, timestamp_ms.to_string()),
            (HEADER_SIGNATURE, signature),
        ])
    }

    /// The private key as PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), wiped when dropped.
    ///
    /// # Errors
    /// [`AuthError::KeyGen`] if encoding fails (it does not for keys this crate holds).
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, AuthError> {
        let encoded = match &self.inner {
            SigningInner::Rsa(key) => key.as_ref().to_pkcs8_pem(LineEnding::LF),
            SigningInner::Ed25519(key) => key.to_pkcs8_pem(LineEnding::LF),
        };
        encoded.map_err(|e| AuthError::KeyGen {
            detail: format!("encoding {} private key as PKCS#8: {e}", self.kind()),
        })
    }
}

#[derive(Clone)]
enum VerifyingInner {
    Rsa {
        key: rsa::pss::VerifyingKey<Sha256>,
        signature_bytes: usize,
    },
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// A public key that verifies requests (the simulator's side).
#[derive(Clone)]
pub struct VerifyingKey {
    inner: VerifyingInner,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("VerifyingKey");
        debug.field("kind", &self.kind());
        if let VerifyingInner::Rsa {
            signature_bytes, ..
        } = &self.inner
        {
            debug.field("bits", &(signature_bytes * 8));
        }
        debug.finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Loads a public key from a PEM file. Public keys are not secret, so the file's
    /// permissions are not checked.
    ///
    /// # Errors
    /// [`AuthError::Missing`], [`AuthError::NotAFile`], [`AuthError::TooLarge`],
    /// [`AuthError::Io`], or [`AuthError::KeyFormat`] naming the file and the accepted formats.
    pub fn from_pem_file(path: &Path) -> Result<Self, AuthError> {
        let text = crate::file::read_public_file(path)?;
        Self::parse(&text, &format!("public key file {}", path.display()))
    }

    /// Parses a public key from PEM text: SPKI RSA or Ed25519 (`-----BEGIN PUBLIC KEY-----`) or
    /// PKCS#1 RSA (`-----BEGIN RSA PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`AuthError::KeyFormat`] saying what was found and which formats are accepted.
    pub fn from_pem_str(pem: &str) -> Result<Self, AuthError> {
        Self::parse(pem, "PEM text")
    }

    fn parse(pem: &str, origin: &str) -> Result<Self, AuthError> {
        let format_error = |detail: String| AuthError::KeyFormat {
            origin: origin.to_owned(),
            detail,
        };
        let (label, pem) = pem_block(pem).ok_or_else(|| {
            format_error(format!(
                "no PEM key found (no -----BEGIN line); {ACCEPTED_PUBLIC}"
            ))
        })?;
        match label {
            "RSA PUBLIC KEY" => {
                let key = rsa::PublicKey::from_pkcs1_pem(pem)
                    .map_err(|e| format_error(format!("invalid PKCS#1 RSA public key: {e}")))?;
                Ok(Self::from_rsa(key))
            }
            "PUBLIC KEY" => {
                let (_, document) = rsa::pkcs8::Document::from_pem(pem)
                    .map_err(|e| format_error(format!("invalid PEM: {e}; {ACCEPTED_PUBLIC}")))?;
                let info: SubjectPublicKeyInfoRef<'_> = document
                    .decode_msg()
                    .map_err(|e| format_error(format!("invalid SPKI public key: {e}")))?;
                let oid = info.algorithm.oid;
                if oid == OID_RSA {
                    let key = rsa::PublicKey::try_from(info)
                        .map_err(|e| format_error(format!("invalid RSA public key: {e}")))?;
                    Ok(Self::from_rsa(key))
                } else if oid == OID_ED25519 {
                    let key = ed25519_dalek::VerifyingKey::from_public_key_der(document.as_bytes())
                        .map_err(|e| format_error(format!("invalid Ed25519 public key: {e}")))?;
                    Ok(Self {
                        inner: VerifyingInner::Ed25519(key),
                    })
                } else {
                    Err(format_error(format!(
                        "public key of algorithm {oid}, which is neither RSA nor Ed25519; {ACCEPTED_PUBLIC}"
                    )))
                }
            }
            "RSA PRIVATE KEY" | "PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" | "OPENSSH PRIVATE KEY" => {
                Err(format_error(format!(
                    "this is a private key; give the public key instead (openssl pkey -in KEY -pubout); {ACCEPTED_PUBLIC}"
                )))
            }
            other => Err(format_error(format!(
                "unsupported PEM block \"{other}\"; {ACCEPTED_PUBLIC}"
            ))),
        }
    }

    fn from_rsa(key: rsa::PublicKey) -> Self {
        let signature_bytes = key.size();
        Self {
            inner: VerifyingInner::Rsa {
                key: rsa::pss::VerifyingKey::new_with_salt_len(key, PSS_SALT_BYTES),
                signature_bytes,
            },
        }
    }

    /// The algorithm of this key.
    #[must_use]
    pub fn kind(&self) -> KeyKind {
        match self.inner {
            VerifyingInner::Rsa { .. } => KeyKind::RsaPss,
            VerifyingInner::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// Checks `signature_b64` (standard base64 with padding) over
    /// [`string_to_sign`]`(timestamp_ms, method, path)`. Any `?query` in `path` is ignored.
    ///
    /// RSA signatures must use PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt exactly, as
    /// Kalshi documents; PKCS#1 v1.5 signatures and other salt lengths fail. Ed25519 uses strict
    /// verification (no small-order keys, canonical signatures only).
    ///
    /// # Errors
    /// [`VerifyError`] saying whether the encoding, the length or the signature itself is wrong.
    pub fn verify(
        &self,
        timestamp_ms: u64,
        method: &str,
        path: &str,
        signature_b64: &str,
    ) -> Result<(), VerifyError> {
        self.verify_raw(&timestamp_ms.to_string(), method, path, signature_b64)
    }

    /// [`VerifyingKey::verify`] with the timestamp as the text of its header.
    pub(crate) fn verify_raw(
        &self,
        timestamp: &str,
        method: &str,
        path: &str,
        signature_b64: &str,
    ) -> Result<(), VerifyError> {
        let expected = match &self.inner {
            VerifyingInner::Rsa {
                signature_bytes, ..
            } => *signature_bytes,
            VerifyingInner::Ed25519(_) => ED25519_SIGNATURE_BYTES,
        };
        // Refuse an oversized header before decoding (allocating) it.
        if signature_b64.len() > expected.div_ceil(3) * 4 {
            return Err(VerifyError::WrongLength {
                got: signature_b64.len() / 4 * 3,
                expected,
            });
        }
        let signature = BASE64
            .decode(signature_b64)
            .map_err(|_| VerifyError::NotBase64)?;
        if signature.len() != expected {
            return Err(VerifyError::WrongLength {
                got: signature.len(),
                expected,
            });
        }
        let message = string_to_sign_raw(timestamp, method, path);
        match &self.inner {
            VerifyingInner::Rsa { key, .. } => {
                let signature = rsa::pss::Signature::try_from(signature.as_slice())
                    .map_err(|_| VerifyError::Mismatch)?;
                key.verify(message.as_bytes(), &signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
            VerifyingInner::Ed25519(key) => {
                let signature = ed25519_dalek::Signature::from_slice(&signature)
                    .map_err(|_| VerifyError::Mismatch)?;
                key.verify_strict(message.as_bytes(), &signature)
                    .map_err(|_| VerifyError::Mismatch)
            }
        }
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    /// [`AuthError::KeyGen`] if encoding fails (it does not for keys this crate holds).
    pub fn to_pem(&self) -> Result<String, AuthError> {
        let encoded = match &self.inner {
            VerifyingInner::Rsa { key, .. } => key.to_public_key_pem(LineEnding::LF),
            VerifyingInner::Ed25519(key) => key.to_public_key_pem(LineEnding::LF),
        };
        encoded.map_err(|e| AuthError::KeyGen {
            detail: format!("encoding {} public key as SPKI: {e}", self.kind()),
        })
    }
}

/// The label of the first PEM block (`-----BEGIN <label>-----`) and the text from that block on
/// (text before it, such as OpenSSL's "Bag Attributes", is skipped), if there is a block.
fn pem_block(pem: &str) -> Option<(&str, &str)> {
    const BEGIN: &str = "-----BEGIN ";
    let begin = pem.find(BEGIN)?;
    let block = &pem[begin..];
    let rest = &block[BEGIN.len()..];
    let label = &rest[..rest.find("-----")?];
    // Real labels are short upper-case words; anything else is reported without echoing it.
    let plausible = label.len() <= 40 && label.bytes().all(|b| b.is_ascii_uppercase() || b == b' ');
    Some((
        if plausible {
            label
        } else {
            "(unreadable label)"
        },
        block,
    ))
}
