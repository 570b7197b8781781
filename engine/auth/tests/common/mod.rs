//! Shared test helpers: the committed test keys and temporary files with chosen modes.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const RSA_PKCS1: &str = include_str!("../data/rsa2048_pkcs1.pem");
pub const RSA_PKCS8: &str = include_str!("../data/rsa2048_pkcs8.pem");
pub const RSA_SPKI_PUB: &str = include_str!("../data/rsa2048_spki.pub.pem");
pub const RSA_PKCS1_PUB: &str = include_str!("../data/rsa2048_pkcs1.pub.pem");
pub const ED25519: &str = include_str!("../data/ed25519_rfc8032_test1.pem");
pub const ED25519_PUB: &str = include_str!("../data/ed25519_rfc8032_test1.pub.pem");
pub const EC_P256: &str = include_str!("../data/ec_p256_pkcs8.pem");
pub const EC_P256_PUB: &str = include_str!("../data/ec_p256.pub.pem");

/// The message of the documentation example (`protocol.md` §2.2).
pub const TS: u64 = 1_703_123_456_789;
pub const METHOD: &str = "GET";
pub const PATH: &str = "/trade-api/v2/portfolio/orders";

/// Writes `contents` to `dir/name` and sets `mode` exactly.
pub fn write_with_mode(dir: &Path, name: &str, contents: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, contents).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Mode bits of `path`.
pub fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Whether the `openssl` command line tool is available.
pub fn openssl_available() -> bool {
    match Command::new("openssl").arg("version").output() {
        Ok(output) if output.status.success() => true,
        _ => {
            eprintln!("NOTE: openssl CLI not found; skipping this OpenSSL interoperability test");
            false
        }
    }
}
