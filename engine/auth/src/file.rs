//! Reading secret files safely: regular file, owner-only permissions, bounded size.

use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use crate::AuthError;

/// Largest key or secret file read, in bytes. An RSA 8192-bit private key in PEM is about
/// 6.5 KiB; anything much larger is the wrong file.
pub const SECRET_FILE_BYTES_MAX: u64 = 64 * 1024;

/// Permission bits that must be clear on a secret file: any access by group or others.
const MODE_GROUP_OTHER: u32 = 0o077;

/// Checks that `path` is a regular file that neither its group nor others can read, write or
/// execute (mode `0600` or `0400` pass; `0640` and `0644` do not). Symbolic links are followed:
/// the target is checked.
///
/// Use it for every secret file: private keys, database password files, admin tokens.
///
/// # Errors
/// [`AuthError::Missing`], [`AuthError::NotAFile`], [`AuthError::InsecurePermissions`], or
/// [`AuthError::Io`] when the file cannot be inspected; each names the path.
pub fn check_key_file_permissions(path: &Path) -> Result<(), AuthError> {
    let metadata = fs::metadata(path).map_err(|source| stat_error(path, source))?;
    check_metadata(path, &metadata, true)
}

/// Reads a secret file after [`check_key_file_permissions`], checking the opened file again so
/// that the file read is the file checked. The text is wiped from memory when dropped.
///
/// The content is returned as it is; callers trim a trailing newline if they need to.
///
/// # Errors
/// Everything [`check_key_file_permissions`] reports, plus [`AuthError::TooLarge`] above
/// [`SECRET_FILE_BYTES_MAX`] and [`AuthError::Io`] when the file is not UTF-8 or cannot be read.
pub fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, AuthError> {
    read_bounded(path, true)
}

/// Reads a public (non-secret) file such as a public key: a regular file of at most
/// [`SECRET_FILE_BYTES_MAX`] bytes, permissions not checked.
pub(crate) fn read_public_file(path: &Path) -> Result<Zeroizing<String>, AuthError> {
    read_bounded(path, false)
}

fn read_bounded(path: &Path, secret: bool) -> Result<Zeroizing<String>, AuthError> {
    // Check by path first so that a FIFO or device is refused before `open` could block on it.
    let metadata = fs::metadata(path).map_err(|source| stat_error(path, source))?;
    check_metadata(path, &metadata, secret)?;
    let mut file = File::open(path).map_err(|source| stat_error(path, source))?;
    // Check the opened file again: the file read is then the file checked.
    let metadata = file
        .metadata()
        .map_err(|source| io_error(path, "inspect", source))?;
    check_metadata(path, &metadata, secret)?;
    if metadata.len() > SECRET_FILE_BYTES_MAX {
        return Err(AuthError::TooLarge {
            path: path.to_path_buf(),
            size: metadata.len(),
            max: SECRET_FILE_BYTES_MAX,
        });
    }
    let mut text = Zeroizing::new(String::new());
    // `take` bounds the read even if the file grows after `metadata`.
    file.by_ref()
        .take(SECRET_FILE_BYTES_MAX)
        .read_to_string(&mut text)
        .map_err(|source| io_error(path, "read", source))?;
    Ok(text)
}

fn check_metadata(path: &Path, metadata: &Metadata, secret: bool) -> Result<(), AuthError> {
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = if file_type.is_dir() {
            "directory"
        } else if file_type.is_fifo() {
            "named pipe"
        } else if file_type.is_socket() {
            "socket"
        } else if file_type.is_block_device() || file_type.is_char_device() {
            "device"
        } else {
            "special file"
        };
        return Err(AuthError::NotAFile {
            path: path.to_path_buf(),
            kind,
        });
    }
    let mode = metadata.permissions().mode() & 0o7777;
    if secret && mode & MODE_GROUP_OTHER != 0 {
        return Err(AuthError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn stat_error(path: &Path, source: std::io::Error) -> AuthError {
    if source.kind() == std::io::ErrorKind::NotFound {
        AuthError::Missing {
            path: path.to_path_buf(),
        }
    } else {
        io_error(path, "read", source)
    }
}

pub(crate) fn io_error(path: &Path, action: &'static str, source: std::io::Error) -> AuthError {
    AuthError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}
