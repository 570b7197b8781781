//! `KeyRing::check`: each way a request's authentication can fail gives the right rejection,
//! status and verbatim body (`protocol.md` §2.5), and good requests pass, including with
//! lower-case header names and a query string.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{ED25519, ED25519_PUB, RSA_PKCS8, RSA_SPKI_PUB};
use kalshi_auth::{
    AuthRejection, HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP, KeyRing, SigningKey, SkewWindow,
    VerifyError, VerifyingKey,
};

const NOW: u64 = 1_789_966_900_609;
const SKEW: u64 = 10_000;
const WS_PATH: &str = "/trade-api/ws/v2";
const ED_ID: &str = "8adcb4e3-1c7a-4f3e-9d5b-ed25519ed255";
const RSA_ID: &str = "a952bcbe-ec3b-4b5b-b8f9-11c1b7d1e5a0";

/// §2.5 bodies, typed here again from protocol.md rather than taken from the crate.
const BAD_SIGNATURE: &str = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"INCORRECT_API_KEY_SIGNATURE"}}"#;
const UNKNOWN_KEY: &str = r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"NOT_FOUND"}}"#;
const SIGNATURE_MISSING: &str = r#"{"error":{"code":"signature_is_missing_from_headers","message":"signature is missing from headers"}}"#;
const TIMESTAMP_EXPIRED: &str =
    r#"{"error":{"code":"header_timestamp_expired","message":"header timestamp expired"}}"#;

fn ring() -> KeyRing {
    let mut ring = KeyRing::new();
    ring.insert(ED_ID, VerifyingKey::from_pem_str(ED25519_PUB).unwrap());
    ring.insert(RSA_ID, VerifyingKey::from_pem_str(RSA_SPKI_PUB).unwrap());
    ring
}

/// Request headers as a server sees them: names lower-cased, as HTTP/2 and many servers do.
fn signed_headers(
    key: &SigningKey,
    key_id: &str,
    timestamp_ms: u64,
    method: &str,
    path: &str,
) -> HashMap<String, String> {
    key.headers(key_id, timestamp_ms, method, path)
        .unwrap()
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

fn check(
    ring: &KeyRing,
    headers: &HashMap<String, String>,
    method: &str,
    path: &str,
    now_ms: u64,
) -> Result<(), AuthRejection> {
    ring.check(
        |name| headers.get(&name.to_ascii_lowercase()).map(String::as_str),
        method,
        path,
        now_ms,
        SKEW,
    )
}

fn assert_rejected(result: Result<(), AuthRejection>, expected: AuthRejection, body: &str) {
    let rejection = result.unwrap_err();
    assert_eq!(rejection, expected);
    assert_eq!(rejection.status(), 401);
    assert_eq!(rejection.body(), body);
}

#[test]
fn signed_requests_pass_for_both_kinds() {
    let ring = ring();
    for (pem, id) in [(ED25519, ED_ID), (RSA_PKCS8, RSA_ID)] {
        let key = SigningKey::from_pem_str(pem).unwrap();
        let headers = signed_headers(&key, id, NOW - 3_000, "GET", WS_PATH);
        assert_eq!(check(&ring, &headers, "GET", WS_PATH, NOW), Ok(()));
        // REST with a query string: signed without it, checked with it.
        let path = "/trade-api/v2/markets/KXBTCD-25AUG2617-T112999.99/orderbook?depth=5";
        let headers = signed_headers(&key, id, NOW, "GET", path);
        assert_eq!(check(&ring, &headers, "GET", path, NOW), Ok(()));
        assert_eq!(
            check(
                &ring,
                &headers,
                "GET",
                "/trade-api/v2/markets/KXBTCD-25AUG2617-T112999.99/orderbook",
                NOW
            ),
            Ok(())
        );
    }
    // The header values are exactly what protocol.md §2.1 describes.
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let headers = key.headers(ED_ID, NOW, "GET", WS_PATH).unwrap();
    assert_eq!(headers[0], (HEADER_KEY, ED_ID.to_owned()));
    assert_eq!(headers[1], (HEADER_TIMESTAMP, NOW.to_string()));
    assert_eq!(headers[2].0, HEADER_SIGNATURE);
    assert_eq!(HEADER_KEY, "KALSHI-ACCESS-KEY");
    assert_eq!(HEADER_TIMESTAMP, "KALSHI-ACCESS-TIMESTAMP");
    assert_eq!(HEADER_SIGNATURE, "KALSHI-ACCESS-SIGNATURE");
}

#[test]
fn missing_headers_are_rejected_with_the_signature_missing_body() {
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let full = signed_headers(&key, ED_ID, NOW, "GET", WS_PATH);
    for header in [HEADER_KEY, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
        let mut headers = full.clone();
        headers.remove(&header.to_ascii_lowercase());
        assert_rejected(
            check(&ring, &headers, "GET", WS_PATH, NOW),
            AuthRejection::MissingHeader { header },
            SIGNATURE_MISSING,
        );
        // An empty value counts as missing.
        headers.insert(header.to_ascii_lowercase(), "  ".to_owned());
        assert_rejected(
            check(&ring, &headers, "GET", WS_PATH, NOW),
            AuthRejection::MissingHeader { header },
            SIGNATURE_MISSING,
        );
    }
    // An unsigned request.
    assert_rejected(
        check(&ring, &HashMap::new(), "GET", WS_PATH, NOW),
        AuthRejection::MissingHeader { header: HEADER_KEY },
        SIGNATURE_MISSING,
    );
}

#[test]
fn timestamps_outside_the_window_are_rejected_as_expired() {
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    // Bounds are inclusive.
    for timestamp in [NOW - SKEW, NOW + SKEW] {
        let headers = signed_headers(&key, ED_ID, timestamp, "GET", WS_PATH);
        assert_eq!(check(&ring, &headers, "GET", WS_PATH, NOW), Ok(()));
    }
    for timestamp in [NOW - SKEW - 1, NOW + SKEW + 1, NOW - 300_000, 0, u64::MAX] {
        let headers = signed_headers(&key, ED_ID, timestamp, "GET", WS_PATH);
        assert_rejected(
            check(&ring, &headers, "GET", WS_PATH, NOW),
            AuthRejection::StaleTimestamp {
                timestamp_ms: timestamp,
                now_ms: NOW,
            },
            TIMESTAMP_EXPIRED,
        );
    }
    // Seconds instead of milliseconds, the commonest client mistake, is far in the past.
    let headers = signed_headers(&key, ED_ID, NOW / 1000, "GET", WS_PATH);
    assert!(matches!(
        check(&ring, &headers, "GET", WS_PATH, NOW),
        Err(AuthRejection::StaleTimestamp { .. })
    ));
}

#[test]
fn malformed_timestamps_are_rejected_as_expired() {
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let full = signed_headers(&key, ED_ID, NOW, "GET", WS_PATH);
    for bad in [
        "abc",
        "-1789966900609",
        "+1789966900609",
        "1789966900609.5",
        "1.789966900609e12",
        "1789966900 609",
        "0x1A",
        "99999999999999999999999",
        "18446744073709551616",
    ] {
        let mut headers = full.clone();
        headers.insert(HEADER_TIMESTAMP.to_ascii_lowercase(), bad.to_owned());
        assert_rejected(
            check(&ring, &headers, "GET", WS_PATH, NOW),
            AuthRejection::MalformedTimestamp,
            TIMESTAMP_EXPIRED,
        );
    }
}

#[test]
fn unknown_key_ids_are_rejected_with_not_found() {
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    for id in [
        "00000000-0000-0000-0000-000000000000",
        &ED_ID.to_uppercase(),
    ] {
        let headers = signed_headers(&key, id, NOW, "GET", WS_PATH);
        assert_rejected(
            check(&ring, &headers, "GET", WS_PATH, NOW),
            AuthRejection::UnknownKey,
            UNKNOWN_KEY,
        );
    }
    // An empty ring knows nobody.
    let headers = signed_headers(&key, ED_ID, NOW, "GET", WS_PATH);
    assert_rejected(
        check(&KeyRing::new(), &headers, "GET", WS_PATH, NOW),
        AuthRejection::UnknownKey,
        UNKNOWN_KEY,
    );
}

#[test]
fn bad_signatures_are_rejected_with_incorrect_api_key_signature() {
    let ring = ring();
    let ed = SigningKey::from_pem_str(ED25519).unwrap();
    let rsa = SigningKey::from_pem_str(RSA_PKCS8).unwrap();

    // Signed for another path: only the short path, without /trade-api/v2 (a common mistake).
    let headers = signed_headers(&ed, ED_ID, NOW, "GET", "/portfolio/balance");
    assert_rejected(
        check(
            &ring,
            &headers,
            "GET",
            "/trade-api/v2/portfolio/balance",
            NOW,
        ),
        AuthRejection::BadSignature(VerifyError::Mismatch),
        BAD_SIGNATURE,
    );
    // Signed for another method.
    let headers = signed_headers(&rsa, RSA_ID, NOW, "POST", WS_PATH);
    assert_rejected(
        check(&ring, &headers, "GET", WS_PATH, NOW),
        AuthRejection::BadSignature(VerifyError::Mismatch),
        BAD_SIGNATURE,
    );
    // Signed by another key than the one the id names (the other kind).
    let headers = signed_headers(&ed, RSA_ID, NOW, "GET", WS_PATH);
    assert_rejected(
        check(&ring, &headers, "GET", WS_PATH, NOW),
        AuthRejection::BadSignature(VerifyError::WrongLength {
            got: 64,
            expected: 256,
        }),
        BAD_SIGNATURE,
    );
    // The timestamp header changed after signing (still inside the window).
    let mut headers = signed_headers(&ed, ED_ID, NOW, "GET", WS_PATH);
    headers.insert(HEADER_TIMESTAMP.to_ascii_lowercase(), (NOW + 1).to_string());
    assert_rejected(
        check(&ring, &headers, "GET", WS_PATH, NOW),
        AuthRejection::BadSignature(VerifyError::Mismatch),
        BAD_SIGNATURE,
    );
    // A signature that is not base64.
    let mut headers = signed_headers(&ed, ED_ID, NOW, "GET", WS_PATH);
    headers.insert(HEADER_SIGNATURE.to_ascii_lowercase(), "%%%".to_owned());
    assert_rejected(
        check(&ring, &headers, "GET", WS_PATH, NOW),
        AuthRejection::BadSignature(VerifyError::NotBase64),
        BAD_SIGNATURE,
    );
}

/// The signature covers the timestamp header's own text: a leading zero that the client signed
/// is verified as sent.
#[test]
fn the_timestamp_is_verified_as_the_client_wrote_it() {
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let headers = signed_headers(&key, ED_ID, NOW, "GET", WS_PATH);
    let mut padded = headers.clone();
    padded.insert(HEADER_TIMESTAMP.to_ascii_lowercase(), format!("0{NOW}"));
    // Same number, different text: the signature was over the unpadded text.
    assert!(matches!(
        check(&ring, &padded, "GET", WS_PATH, NOW),
        Err(AuthRejection::BadSignature(_))
    ));
}

/// The asymmetric default window of protocol.md §2.4 and the order of the checks.
#[test]
fn kalshi_observed_window_and_check_order() {
    let window = SkewWindow::KALSHI_OBSERVED;
    // Observations on the demo exchange: ±5 s and +30 s accepted; −30 s and ±5 min rejected.
    for (offset, accepted) in [
        (-5_000_i64, true),
        (5_000, true),
        (30_000, true),
        (-30_000, false),
        (-300_000, false),
        (300_000, false),
    ] {
        let timestamp = NOW.checked_add_signed(offset).unwrap();
        assert_eq!(window.contains(timestamp, NOW), accepted, "{offset}");
    }
    let ring = ring();
    let key = SigningKey::from_pem_str(ED25519).unwrap();
    let headers = signed_headers(&key, ED_ID, NOW + 45_000, "GET", WS_PATH);
    let lookup = |name: &str| headers.get(&name.to_ascii_lowercase()).map(String::as_str);
    assert_eq!(
        ring.check_window(lookup, "GET", WS_PATH, NOW, window),
        Ok(())
    );
    // A stale timestamp is reported before an unknown key (cheapest check first).
    let headers = signed_headers(&key, "unknown", NOW - 60_000, "GET", WS_PATH);
    let lookup = |name: &str| headers.get(&name.to_ascii_lowercase()).map(String::as_str);
    assert!(matches!(
        ring.check_window(lookup, "GET", WS_PATH, NOW, window),
        Err(AuthRejection::StaleTimestamp { .. })
    ));
}

#[test]
fn ring_management() {
    let mut ring = ring();
    assert_eq!(ring.len(), 2);
    assert!(!ring.is_empty());
    assert!(ring.get(ED_ID).is_some());
    assert!(ring.remove(ED_ID).is_some());
    assert!(ring.get(ED_ID).is_none());
    assert!(ring.remove(ED_ID).is_none());
    assert_eq!(ring.len(), 1);
}
