//! Writing fresh key pairs to disk, the private file owner-only from its creation.

use std::fs::{self, OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::file::io_error;
use crate::{AuthError, KeyKind, SigningKey};

/// Modulus size of generated RSA keys, as Kalshi issues them.
pub const RSA_BITS: usize = 2048;

/// Mode of a written private key file: owner read/write only.
const MODE_PRIVATE: u32 = 0o600;
/// Mode of a written public key file: world-readable.
const MODE_PUBLIC: u32 = 0o644;

/// Generates a key pair of `kind` (RSA 2048-bit or Ed25519) and writes the private key as
/// PKCS#8 PEM to `private_pem_path` (mode `0600`) and the public key as SPKI PEM to
/// `public_pem_path` (mode `0644`).
///
/// The private file is created with mode `0600` in the same system call that creates it, so it
/// is never readable by others, not even for an instant. Neither file may exist already. If the
/// public file cannot be written, the private file just written is removed again.
///
/// RSA key generation is the slow part and varies from run to run with the primes found: about
/// 1.3 s for 2048 bits in a debug build on the development machine (0.15 s for 1024 bits).
///
/// # Errors
/// [`AuthError::AlreadyExists`] if either file exists, [`AuthError::Io`] if a file cannot be
/// created or written, [`AuthError::KeyGen`] if the random source fails.
pub fn generate(
    kind: KeyKind,
    private_pem_path: &Path,
    public_pem_path: &Path,
) -> Result<(), AuthError> {
    let key = SigningKey::generate(kind)?;
    write_pair(&key, private_pem_path, public_pem_path)
}

/// [`generate`] for an RSA key of `bits` bits (1024 ..= 8192). Meant for tests that cannot wait
/// for 2048-bit generation in debug builds; never use a key under 2048 bits against Kalshi.
///
/// # Errors
/// As [`generate`]; [`AuthError::KeyGen`] also for a size out of range.
#[doc(hidden)]
pub fn generate_rsa_with_bits_for_tests(
    bits: usize,
    private_pem_path: &Path,
    public_pem_path: &Path,
) -> Result<(), AuthError> {
    let key = SigningKey::generate_rsa(bits)?;
    write_pair(&key, private_pem_path, public_pem_path)
}

/// Writes both halves of `key`.
pub(crate) fn write_pair(
    key: &SigningKey,
    private_pem_path: &Path,
    public_pem_path: &Path,
) -> Result<(), AuthError> {
    let private_pem = key.to_pkcs8_pem()?;
    let public_pem = key.verifying_key().to_pem()?;
    // Refuse before creating anything if the public file is in the way; `create_new` below
    // still guards against a file appearing in between.
    if fs::symlink_metadata(public_pem_path).is_ok() {
        return Err(AuthError::AlreadyExists {
            path: public_pem_path.to_path_buf(),
        });
    }
    write_new(private_pem_path, private_pem.as_bytes(), MODE_PRIVATE)?;
    if let Err(error) = write_new(public_pem_path, public_pem.as_bytes(), MODE_PUBLIC) {
        // Best effort: the caller learns of the first error either way.
        let _ = fs::remove_file(private_pem_path);
        return Err(error);
    }
    Ok(())
}

/// Creates `path` (which must not exist) with `mode`, writes `bytes` and syncs.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AuthError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                AuthError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                io_error(path, "create", source)
            }
        })?;
    // The umask may have cleared bits of `mode`; set it exactly (it can only have removed
    // access, so the file was never more open than `mode`).
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|source| io_error(path, "set permissions of", source))?;
    file.write_all(bytes)
        .map_err(|source| io_error(path, "write", source))?;
    file.sync_all()
        .map_err(|source| io_error(path, "sync", source))
}
