//! Key parsing and sign/verify round trips: every accepted format, every refused one, tampered
//! messages, the wrong key or kind, and that nothing prints key material.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    EC_P256, EC_P256_PUB, ED25519, ED25519_PUB, METHOD, PATH, RSA_PKCS1, RSA_PKCS1_PUB, RSA_PKCS8,
    RSA_SPKI_PUB, TS,
};
use kalshi_auth::{AuthError, KeyKind, SigningKey, VerifyError, VerifyingKey};

/// The base64 body lines of a PEM text (the key material).
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|line| !line.starts_with("-----") && !line.is_empty())
        .collect()
}

fn key_format_detail(result: Result<impl std::fmt::Debug, AuthError>) -> String {
    match result {
        Err(error @ AuthError::KeyFormat { .. }) => error.to_string(),
        other => panic!("expected a KeyFormat error, got {other:?}"),
    }
}

/// A signature made by one key over (timestamp, method, path) verifies with its public key and
/// fails if any of the three differs; the query string does not matter.
fn assert_round_trip(private: &SigningKey, public: &VerifyingKey) {
    let signature = private.sign(TS, METHOD, PATH).unwrap();
    assert_eq!(public.verify(TS, METHOD, PATH, &signature), Ok(()));
    assert_eq!(
        public.verify(
            TS,
            METHOD,
            &format!("{PATH}?limit=5&cursor=abc"),
            &signature
        ),
        Ok(())
    );
    let with_query = private
        .sign(TS, METHOD, &format!("{PATH}?status=resting"))
        .unwrap();
    assert_eq!(public.verify(TS, METHOD, PATH, &with_query), Ok(()));
    for (timestamp, method, path) in [
        (TS + 1, METHOD, PATH),
        (TS - 1, METHOD, PATH),
        (TS, "POST", PATH),
        (TS, METHOD, "/trade-api/v2/portfolio/order"),
        (TS, METHOD, "/portfolio/orders"),
    ] {
        assert_eq!(
            public.verify(timestamp, method, path, &signature),
            Err(VerifyError::Mismatch),
            "{timestamp} {method} {path}"
        );
    }
}

#[test]
fn rsa_pkcs1_and_pkcs8_private_keys_round_trip_with_both_public_formats() {
    for private_pem in [RSA_PKCS1, RSA_PKCS8] {
        let private = SigningKey::from_pem_str(private_pem).unwrap();
        assert_eq!(private.kind(), KeyKind::RsaPss);
        for public_pem in [RSA_SPKI_PUB, RSA_PKCS1_PUB] {
            let public = VerifyingKey::from_pem_str(public_pem).unwrap();
            assert_eq!(public.kind(), KeyKind::RsaPss);
            assert_round_trip(&private, &public);
        }
        assert_round_trip(&private, &private.verifying_key());
    }
}

#[test]
fn ed25519_round_trip() {
    let private = SigningKey::from_pem_str(ED25519).unwrap();
    assert_eq!(private.kind(), KeyKind::Ed25519);
    let public = VerifyingKey::from_pem_str(ED25519_PUB).unwrap();
    assert_eq!(public.kind(), KeyKind::Ed25519);
    assert_round_trip(&private, &public);
}

/// Freshly generated in-memory keys of both kinds round-trip, and their PEM encodings parse back
/// to keys that still match.
#[test]
fn generated_keys_round_trip_through_pem() {
    for kind in [KeyKind::Ed25519, KeyKind::RsaPss] {
        let private = SigningKey::generate(kind).unwrap();
        assert_eq!(private.kind(), kind);
        let public_pem = private.verifying_key().to_pem().unwrap();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        let public = VerifyingKey::from_pem_str(&public_pem).unwrap();
        assert_round_trip(&private, &public);
        let private_pem = private.to_pkcs8_pem().unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let reparsed = SigningKey::from_pem_str(&private_pem).unwrap();
        assert_round_trip(&reparsed, &public);
    }
}

/// A signature from another key of the same kind fails; one from a key of the other kind fails
/// on its length before any arithmetic.
#[test]
fn wrong_key_and_wrong_kind_fail() {
    let rsa_public = VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap();
    let ed_public = VerifyingKey::from_pem_str(ED25519_PUB).unwrap();
    let other_ed = SigningKey::generate(KeyKind::Ed25519).unwrap();
    let ed_signature = SigningKey::from_pem_str(ED25519)
        .unwrap()
        .sign(TS, METHOD, PATH)
        .unwrap();
    let rsa_signature = SigningKey::from_pem_str(RSA_PKCS8)
        .unwrap()
        .sign(TS, METHOD, PATH)
        .unwrap();

    assert_eq!(
        other_ed
            .verifying_key()
            .verify(TS, METHOD, PATH, &ed_signature),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        rsa_public.verify(TS, METHOD, PATH, &ed_signature),
        Err(VerifyError::WrongLength {
            got: 64,
            expected: 256
        })
    );
    assert!(matches!(
        ed_public.verify(TS, METHOD, PATH, &rsa_signature),
        Err(VerifyError::WrongLength { expected: 64, .. })
    ));
}

/// Malformed signature headers: not base64, unpadded, empty, too long; a flipped bit.
#[test]
fn malformed_signatures_are_refused() {
    let public = VerifyingKey::from_pem_str(ED25519_PUB).unwrap();
    let good = SigningKey::from_pem_str(ED25519)
        .unwrap()
        .sign(TS, METHOD, PATH)
        .unwrap();
    assert_eq!(
        public.verify(TS, METHOD, PATH, "not base64!"),
        Err(VerifyError::NotBase64)
    );
    assert_eq!(
        public.verify(TS, METHOD, PATH, good.trim_end_matches('=')),
        Err(VerifyError::NotBase64)
    );
    assert!(matches!(
        public.verify(TS, METHOD, PATH, ""),
        Err(VerifyError::WrongLength { got: 0, .. })
    ));
    assert!(matches!(
        public.verify(TS, METHOD, PATH, &"A".repeat(100_000)),
        Err(VerifyError::WrongLength { .. })
    ));
    let mut tampered = good.into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        public.verify(TS, METHOD, PATH, &tampered),
        Err(VerifyError::Mismatch)
    );
}

/// Garbage and unsupported PEM is refused with a message naming the accepted formats.
#[test]
fn garbage_and_unsupported_private_keys_are_refused() {
    let garbage = [
        ("", "no PEM key found"),
        ("hello world", "no PEM key found"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "invalid PKCS#1 RSA private key",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n",
            "invalid PEM",
        ),
        (
            "-----BEGIN PRIVATE KEY-----\nMAMCAQA=\n-----END PRIVATE KEY-----\n",
            "invalid PKCS#8 private key",
        ),
        (EC_P256, "neither RSA nor Ed25519"),
        (RSA_SPKI_PUB, "this is a public key"),
        (ED25519_PUB, "this is a public key"),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "encrypted",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "OpenSSH",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "unsupported PEM block \"CERTIFICATE\"",
        ),
    ];
    for (text, expected) in garbage {
        let message = key_format_detail(SigningKey::from_pem_str(text));
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        assert!(message.starts_with("PEM text: "), "{message}");
        if !expected.starts_with("invalid") {
            assert!(
                message.contains("PKCS#1 RSA") && message.contains("PKCS#8 Ed25519"),
                "{message} does not list the accepted formats"
            );
        }
    }
    // A truncated real key.
    let truncated = RSA_PKCS1.replacen('\n', "\nAAAA", 3);
    key_format_detail(SigningKey::from_pem_str(&truncated));
}

/// Garbage and unsupported public keys are refused likewise.
#[test]
fn garbage_and_unsupported_public_keys_are_refused() {
    for (text, expected) in [
        ("", "no PEM key found"),
        (EC_P256_PUB, "neither RSA nor Ed25519"),
        (RSA_PKCS1, "this is a private key"),
        (ED25519, "this is a private key"),
        (
            "-----BEGIN PUBLIC KEY-----\nMAMCAQA=\n-----END PUBLIC KEY-----\n",
            "invalid SPKI public key",
        ),
        (
            "-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n",
            "invalid PKCS#1 RSA public key",
        ),
    ] {
        let message = key_format_detail(VerifyingKey::from_pem_str(text));
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
    }
}

/// Text before the PEM block (as OpenSSL writes "Bag Attributes") is skipped.
#[test]
fn leading_text_before_the_pem_block_is_skipped() {
    let with_preamble = format!("Bag Attributes\n    friendlyName: test\n{ED25519}");
    let key = SigningKey::from_pem_str(&with_preamble).unwrap();
    assert_eq!(key.kind(), KeyKind::Ed25519);
}

/// Debug output and errors show the kind, never key material.
#[test]
fn debug_output_has_no_key_material() {
    for (private_pem, public_pem) in [(RSA_PKCS1, RSA_SPKI_PUB), (ED25519, ED25519_PUB)] {
        let private = SigningKey::from_pem_str(private_pem).unwrap();
        let printed = format!("{private:?} {private:#?}");
        assert!(printed.contains("SigningKey"), "{printed}");
        for line in pem_body_lines(private_pem)
            .into_iter()
            .chain(pem_body_lines(public_pem))
        {
            // Any 12-character window of the base64 body would betray it.
            for window in line.as_bytes().windows(12) {
                let window = std::str::from_utf8(window).unwrap();
                assert!(!printed.contains(window), "{printed} contains {window}");
            }
        }
        let public = VerifyingKey::from_pem_str(public_pem).unwrap();
        let printed = format!("{public:?}");
        assert!(printed.starts_with("VerifyingKey { kind: "), "{printed}");
    }
    // A block label that could be a secret is not echoed.
    let message = key_format_detail(SigningKey::from_pem_str(
        "-----BEGIN hunter2-secret-----\n-----END hunter2-secret-----",
    ));
    assert!(!message.contains("hunter2"), "{message}");
}
