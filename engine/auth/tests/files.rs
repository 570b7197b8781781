//! Secret files: permission refusal and acceptance, missing files, directories and other
//! non-files, oversized files; key pair generation to disk (modes, refusal to overwrite, and
//! that the written pair works).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{ED25519, METHOD, PATH, RSA_PKCS1, TS, mode_of, write_with_mode};
use kalshi_auth::{
    AuthError, KeyKind, SECRET_FILE_BYTES_MAX, SigningKey, VerifyingKey,
    check_key_file_permissions, generate, generate_rsa_with_bits_for_tests, read_secret_file,
};

/// Modes giving group or others any access are refused with a message naming the file, its
/// mode and the fix; the key is not loaded.
#[test]
fn group_or_other_access_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [
        0o644, 0o640, 0o604, 0o660, 0o606, 0o601, 0o610, 0o777, 0o440,
    ] {
        let path = write_with_mode(dir.path(), &format!("key-{mode:o}.pem"), ED25519, mode);
        let error = SigningKey::from_pem_file(&path).unwrap_err();
        match &error {
            AuthError::InsecurePermissions { path: p, mode: m } => {
                assert_eq!(p, &path);
                assert_eq!(*m, mode);
            }
            other => panic!("mode {mode:o}: expected InsecurePermissions, got {other:?}"),
        }
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(&format!("mode {mode:04o}")), "{message}");
        assert!(message.contains("chmod 600"), "{message}");
        assert!(matches!(
            check_key_file_permissions(&path),
            Err(AuthError::InsecurePermissions { .. })
        ));
        assert!(read_secret_file(&path).is_err());
    }
}

/// Owner-only modes are accepted, and the loaded key signs like the same key from text.
#[test]
fn owner_only_modes_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let expected = SigningKey::from_pem_str(ED25519)
        .unwrap()
        .sign(TS, METHOD, PATH)
        .unwrap();
    for mode in [0o600, 0o400, 0o700] {
        let path = write_with_mode(dir.path(), &format!("key-{mode:o}.pem"), ED25519, mode);
        check_key_file_permissions(&path).unwrap();
        let key = SigningKey::from_pem_file(&path).unwrap();
        assert_eq!(key.sign(TS, METHOD, PATH).unwrap(), expected);
        assert_eq!(read_secret_file(&path).unwrap().as_str(), ED25519);
    }
    let rsa = write_with_mode(dir.path(), "rsa.pem", RSA_PKCS1, 0o600);
    assert_eq!(
        SigningKey::from_pem_file(&rsa).unwrap().kind(),
        KeyKind::RsaPss
    );
}

/// A symbolic link is followed: the target's mode decides.
#[test]
fn symlinks_are_judged_by_their_target() {
    let dir = tempfile::tempdir().unwrap();
    let open = write_with_mode(dir.path(), "open.pem", ED25519, 0o644);
    let closed = write_with_mode(dir.path(), "closed.pem", ED25519, 0o600);
    let link_open = dir.path().join("link-open.pem");
    let link_closed = dir.path().join("link-closed.pem");
    std::os::unix::fs::symlink(&open, &link_open).unwrap();
    std::os::unix::fs::symlink(&closed, &link_closed).unwrap();
    assert!(matches!(
        SigningKey::from_pem_file(&link_open),
        Err(AuthError::InsecurePermissions { mode: 0o644, .. })
    ));
    SigningKey::from_pem_file(&link_closed).unwrap();
}

#[test]
fn missing_file_directory_and_fifo_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let error = SigningKey::from_pem_file(&missing).unwrap_err();
    assert!(matches!(error, AuthError::Missing { .. }), "{error:?}");
    assert!(error.to_string().contains("does not exist"), "{error}");
    assert!(error.to_string().contains(&missing.display().to_string()));

    let sub = dir.path().join("keys");
    fs::create_dir(&sub).unwrap();
    fs::set_permissions(&sub, fs::Permissions::from_mode(0o700)).unwrap();
    let error = SigningKey::from_pem_file(&sub).unwrap_err();
    assert!(
        matches!(
            error,
            AuthError::NotAFile {
                kind: "directory",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains(&sub.display().to_string()));

    // A named pipe must be refused without blocking on open.
    let fifo = dir.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if matches!(made, Ok(status) if status.success()) {
        fs::set_permissions(&fifo, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            SigningKey::from_pem_file(&fifo),
            Err(AuthError::NotAFile {
                kind: "named pipe",
                ..
            })
        ));
    } else {
        eprintln!("NOTE: mkfifo unavailable; named pipe case skipped");
    }
}

/// A file that is not a key, or too big, or not UTF-8, is refused with the file named.
#[test]
fn bad_file_contents_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = write_with_mode(dir.path(), "garbage.pem", "not a key\n", 0o600);
    let error = SigningKey::from_pem_file(&garbage).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, AuthError::KeyFormat { .. }), "{error:?}");
    assert!(
        message.starts_with(&format!("key file {}", garbage.display())),
        "{message}"
    );
    assert!(message.contains("PKCS#1 RSA"), "{message}");

    let big = "A".repeat(SECRET_FILE_BYTES_MAX as usize + 1);
    let big = write_with_mode(dir.path(), "big.pem", &big, 0o600);
    assert!(matches!(
        SigningKey::from_pem_file(&big),
        Err(AuthError::TooLarge { .. })
    ));

    let binary = dir.path().join("binary.pem");
    fs::write(&binary, [0xff_u8, 0xfe, 0x00, 0x80]).unwrap();
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o600)).unwrap();
    let error = SigningKey::from_pem_file(&binary).unwrap_err();
    assert!(matches!(error, AuthError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains(&binary.display().to_string()));
}

/// `generate` writes a private key file with mode 0600 and a public key file with mode 0644;
/// the pair matches; the private file is accepted by `from_pem_file`.
#[test]
fn generate_writes_a_working_pair_with_the_right_modes() {
    let dir = tempfile::tempdir().unwrap();
    for kind in [KeyKind::Ed25519, KeyKind::RsaPss] {
        let private = dir.path().join(format!("{kind}.key.pem"));
        let public = dir.path().join(format!("{kind}.pub.pem"));
        generate(kind, &private, &public).unwrap();
        assert_eq!(mode_of(&private), 0o600);
        assert_eq!(mode_of(&public), 0o644);
        let signer = SigningKey::from_pem_file(&private).unwrap();
        let verifier = VerifyingKey::from_pem_file(&public).unwrap();
        assert_eq!(signer.kind(), kind);
        assert_eq!(verifier.kind(), kind);
        let signature = signer.sign(TS, METHOD, PATH).unwrap();
        assert_eq!(verifier.verify(TS, METHOD, PATH, &signature), Ok(()));
        assert!(verifier.verify(TS + 1, METHOD, PATH, &signature).is_err());
    }
}

/// The test-only smaller RSA size still yields a working pair.
#[test]
fn generate_small_rsa_for_tests() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("k.pem");
    let public = dir.path().join("p.pem");
    generate_rsa_with_bits_for_tests(1024, &private, &public).unwrap();
    let signature = SigningKey::from_pem_file(&private)
        .unwrap()
        .sign(TS, METHOD, PATH)
        .unwrap();
    let verifier = VerifyingKey::from_pem_file(&public).unwrap();
    assert_eq!(verifier.verify(TS, METHOD, PATH, &signature), Ok(()));
    assert!(matches!(
        generate_rsa_with_bits_for_tests(512, &dir.path().join("a"), &dir.path().join("b")),
        Err(AuthError::KeyGen { .. })
    ));
}

/// `generate` never overwrites: an existing private or public file is left untouched, and no
/// half pair is left behind.
#[test]
fn generate_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let existing = write_with_mode(dir.path(), "existing.pem", "keep me", 0o600);
    let fresh = dir.path().join("fresh.pem");

    let error = generate(KeyKind::Ed25519, &existing, &fresh).unwrap_err();
    assert!(
        matches!(error, AuthError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(&existing.display().to_string()));
    assert_eq!(fs::read_to_string(&existing).unwrap(), "keep me");
    assert!(!fresh.exists());

    let error = generate(KeyKind::Ed25519, &fresh, &existing).unwrap_err();
    assert!(
        matches!(error, AuthError::AlreadyExists { .. }),
        "{error:?}"
    );
    assert_eq!(fs::read_to_string(&existing).unwrap(), "keep me");
    assert!(
        !fresh.exists(),
        "a private key was left without its public half"
    );

    let in_missing_dir = dir.path().join("no-such-dir").join("k.pem");
    let error = generate(KeyKind::Ed25519, &in_missing_dir, &fresh).unwrap_err();
    assert!(
        matches!(
            error,
            AuthError::Io {
                action: "create",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!fresh.exists());
}
