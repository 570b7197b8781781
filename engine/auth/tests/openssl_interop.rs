//! Interoperability with the OpenSSL command line tool, run live: OpenSSL verifies our RSA-PSS
//! and Ed25519 signatures, and we verify fresh OpenSSL RSA-PSS signatures. Skipped, with a
//! printed note, when `openssl` is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{ED25519, ED25519_PUB, METHOD, PATH, RSA_PKCS1, RSA_SPKI_PUB, TS, openssl_available};
use kalshi_auth::{SigningKey, VerifyingKey, string_to_sign};

/// Runs `openssl` with `args` in `dir`; returns whether it exited 0, with its output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// OpenSSL verifies our RSA-PSS signature with salt length 32, and refuses it for a changed
/// message (so the check can fail).
#[test]
fn openssl_verifies_our_rsa_pss_signature() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pub.pem"), RSA_SPKI_PUB).unwrap();
    fs::write(dir.path().join("msg"), string_to_sign(TS, METHOD, PATH)).unwrap();
    fs::write(
        dir.path().join("other"),
        string_to_sign(TS + 1, METHOD, PATH),
    )
    .unwrap();
    let key = SigningKey::from_pem_str(RSA_PKCS1).unwrap();
    let signature = BASE64.decode(key.sign(TS, METHOD, PATH).unwrap()).unwrap();
    fs::write(dir.path().join("sig"), signature).unwrap();
    let verify = |message: &str| {
        openssl(
            dir.path(),
            &[
                "dgst",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
                "-verify",
                "pub.pem",
                "-signature",
                "sig",
                message,
            ],
        )
    };
    let (ok, text) = verify("msg");
    assert!(ok, "openssl refused our signature: {text}");
    assert!(text.contains("Verified OK"), "{text}");
    let (ok, text) = verify("other");
    assert!(
        !ok,
        "openssl accepted our signature over another message: {text}"
    );
}

/// OpenSSL verifies our Ed25519 signature.
#[test]
fn openssl_verifies_our_ed25519_signature() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("pub.pem"), ED25519_PUB).unwrap();
    fs::write(dir.path().join("msg"), string_to_sign(TS, METHOD, PATH)).unwrap();
    fs::write(dir.path().join("other"), string_to_sign(TS, "POST", PATH)).unwrap();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let signature = BASE64.decode(key.sign(TS, METHOD, PATH).unwrap()).unwrap();
    fs::write(dir.path().join("sig"), signature).unwrap();
    let verify = |message: &str| {
        openssl(
            dir.path(),
            &[
                "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", message,
                "-sigfile", "sig",
            ],
        )
    };
    let (ok, text) = verify("msg");
    assert!(ok, "openssl refused our signature: {text}");
    assert!(text.contains("Signature Verified Successfully"), "{text}");
    let (ok, text) = verify("other");
    assert!(
        !ok,
        "openssl accepted our signature over another message: {text}"
    );
}

/// A fresh OpenSSL RSA-PSS signature (salt 32) over a WebSocket handshake message verifies with
/// our verifier.
#[test]
fn we_verify_a_fresh_openssl_rsa_pss_signature() {
    if !openssl_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("key.pem"), RSA_PKCS1).unwrap();
    let timestamp = 1_789_966_900_609;
    fs::write(
        dir.path().join("msg"),
        string_to_sign(timestamp, "GET", "/trade-api/ws/v2"),
    )
    .unwrap();
    let (ok, text) = openssl(
        dir.path(),
        &[
            "dgst",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
            "-sign",
            "key.pem",
            "-out",
            "sig",
            "msg",
        ],
    );
    assert!(ok, "openssl failed to sign: {text}");
    let signature = BASE64.encode(fs::read(dir.path().join("sig")).unwrap());
    let public = VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap();
    assert_eq!(
        public.verify(timestamp, "GET", "/trade-api/ws/v2", &signature),
        Ok(())
    );
    assert!(
        public
            .verify(
                timestamp,
                "GET",
                "/trade-api/v2/portfolio/orders",
                &signature
            )
            .is_err()
    );
}
