//! Known-answer tests against signatures computed independently with OpenSSL 3.0.19 (and, for
//! Ed25519, cross-checked with Python `cryptography` 48.0.0), over the documented example
//! message `1703123456789GET/trade-api/v2/portfolio/orders` (`protocol.md` §2.2).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{ED25519, ED25519_PUB, METHOD, PATH, RSA_PKCS1, RSA_SPKI_PUB, TS};
use kalshi_auth::{SigningKey, VerifyError, VerifyingKey, string_to_sign};

/// Produced by:
/// `printf '%s' '1703123456789GET/trade-api/v2/portfolio/orders' > msg`
/// `openssl pkeyutl -sign -rawin -inkey tests/data/ed25519_rfc8032_test1.pem -in msg | base64 -w0`
/// and identical from Python `cryptography`'s `Ed25519PrivateKey.sign`.
const ED25519_EXPECTED: &str =
    "URVySOtwUGGN1MMzAC340P0XF/+jdSCr2J3qWiG321RopcUswFcnv5Q6zEJFaVtw76Q5rW2CfTalBsLWQSmnAg==";

/// Produced by:
/// `openssl dgst -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32
///  -sign tests/data/rsa2048_pkcs1.pem msg | base64 -w0`
/// (PSS signatures are randomized: this is one valid signature, not the only one). Python
/// `cryptography` verified it with `PSS(MGF1(SHA256), salt_length=32)`.
const RSA_PSS_OPENSSL: &str = "n4bCcejDORiYZI8JPdkX5KfFsIT9fxDNJaAqQBR3E4dIZFhAskuxhqaLDZKEY+7S2muQyHDntAxtZvd4otxLqwqm4Zo+++oE1qrBM7yJZhS8piPozwDxbYQ2e8B4prn0KHkxWewkLOCno6yJ9UtOxLNT4Zggwsdrm2Rg4mkRp7GhGn+VO/MNGMsX0HEvXHRgV/g7y6A0bNNYhjbE1sHoXi2Ojkkd+y85BgSdNIo/5rSBVHmnmlQ/3ZY6RD9/7XLHxT7PhK9rIRsjnTL/VB69U392gduHIFkIiqbJXQYeMgnTWHkQjr4tj0MwKaMJPtoEdLvLcDEbrUSOZyiRgg5G0w==";

/// Produced by `openssl dgst -sha256 -sign tests/data/rsa2048_pkcs1.pem msg | base64 -w0`:
/// PKCS#1 v1.5 padding, which Kalshi rejects (`protocol.md` §2.3).
const RSA_PKCS1V15_OPENSSL: &str = "tzd9UcIHaGgakVdOgbLsfWUCZFRCpMUWZFv7CL1m/yuh0tI0d0G1ei3nGrwcYjoD7UnyLYwcruVIq+UY5j4QdJDsN1zRZxMU2OryVgYEDfaBkXJSLLpfKpTUPVqXPGzLf0ys04DL2b5qPvC27tFcrCwRpUqFoI2U5uXYyI7nP5YJa9na6Rvyeb54MinJqSKBap2+Op/OwcGhiHxmL1w9dnyAzti+kNarJFWWljlSnw1THjQm42qJKzQafq1jETu/kxHSyCocOusKJ5n30rkhbaRQfsbCqLVp835iLGv5SYI8B6Gi/5eUoGknW4dguVLGsMkg3gcqyAOap9YlUFHk7g==";

/// Produced with `-sigopt rsa_pss_saltlen:max` instead of 32 (a 222-byte salt): PSS, but not
/// with the salt length Kalshi documents.
const RSA_PSS_MAX_SALT_OPENSSL: &str = "zWOjk2TafhWqw/K9zR7aDzzaWUfLEZLe9aVxThCehY06RoYXQwxOc0004ampuyLU5DlbFeCoFNCLc3JrhI1BhzojAox/ITq3dA8JnGpExoXeouAqY+xKvFfBG84/Q03bQbR29hR8wWzz/8P3aydyl+5wMlkxEe58D95V8k9gh67bdRX/ob6Ys9vza9HZlOwVRVljqsPrsiiIXt8poBF+7PklHezxVLBO7s13boZYIPbw3wKK5aQOfwo0bdIXTpRdv8NVXJKW7covkOgUJcWyrNXp9uEtgfMRVkv4BLMQGTsMtK9XUKjR7dC10iAGGsv7S2QYR1w51g4HMkXBJdyjXw==";

/// The documented example of the string to sign, with the query string cut.
#[test]
fn string_to_sign_matches_the_documented_example() {
    assert_eq!(
        string_to_sign(TS, "GET", "/trade-api/v2/portfolio/orders?limit=5"),
        "1703123456789GET/trade-api/v2/portfolio/orders"
    );
    assert_eq!(
        string_to_sign(TS, "get", "/trade-api/ws/v2"),
        "1703123456789GET/trade-api/ws/v2"
    );
    assert_eq!(string_to_sign(0, "POST", "/a?b?c"), "0POST/a");
}

/// Ed25519 is deterministic: our signature must equal OpenSSL's byte for byte, and OpenSSL's
/// must verify with our verifier.
#[test]
fn ed25519_signature_equals_openssl() {
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    assert_eq!(key.sign(TS, METHOD, PATH).unwrap(), ED25519_EXPECTED);
    // The query string is not signed, so it does not change the signature.
    assert_eq!(
        key.sign(TS, METHOD, "/trade-api/v2/portfolio/orders?limit=5")
            .unwrap(),
        ED25519_EXPECTED
    );
    let public = VerifyingKey::from_pem_str(ED25519_PUB).unwrap();
    assert_eq!(public.verify(TS, METHOD, PATH, ED25519_EXPECTED), Ok(()));
}

/// An RSA-PSS signature made by OpenSSL with a 32-byte salt verifies with our verifier, and
/// fails for any other timestamp, method or path.
#[test]
fn rsa_pss_signature_from_openssl_verifies() {
    let public = VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap();
    assert_eq!(public.verify(TS, METHOD, PATH, RSA_PSS_OPENSSL), Ok(()));
    assert_eq!(
        public.verify(
            TS,
            METHOD,
            "/trade-api/v2/portfolio/orders?limit=5",
            RSA_PSS_OPENSSL
        ),
        Ok(())
    );
    assert_eq!(
        public.verify(TS + 1, METHOD, PATH, RSA_PSS_OPENSSL),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        public.verify(TS, "POST", PATH, RSA_PSS_OPENSSL),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        public.verify(TS, METHOD, "/trade-api/v2/portfolio/fills", RSA_PSS_OPENSSL),
        Err(VerifyError::Mismatch)
    );
}

/// Kalshi rejects PKCS#1 v1.5 signatures; so do we. A PSS signature with another salt length
/// is refused too, since the salt length is fixed at 32 bytes.
#[test]
fn rsa_pkcs1v15_and_other_salt_lengths_are_rejected() {
    let public = VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap();
    assert_eq!(
        public.verify(TS, METHOD, PATH, RSA_PKCS1V15_OPENSSL),
        Err(VerifyError::Mismatch)
    );
    assert_eq!(
        public.verify(TS, METHOD, PATH, RSA_PSS_MAX_SALT_OPENSSL),
        Err(VerifyError::Mismatch)
    );
}

/// Our RSA-PSS signatures are randomized (two signatures differ) yet both verify with the
/// public key OpenSSL derived from the same private key.
#[test]
fn rsa_pss_signatures_are_randomized_and_verify() {
    let key = SigningKey::from_pem_str(RSA_PKCS1).unwrap();
    let first = key.sign(TS, METHOD, PATH).unwrap();
    let second = key.sign(TS, METHOD, PATH).unwrap();
    assert_ne!(first, second);
    let public = VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap();
    assert_eq!(public.verify(TS, METHOD, PATH, &first), Ok(()));
    assert_eq!(public.verify(TS, METHOD, PATH, &second), Ok(()));
}
