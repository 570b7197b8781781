#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Authentication through the real binary with keys made by `kalshi-sim keygen` (RSA-PSS and
//! Ed25519) and requests signed by kalshi-auth: signed handshakes and REST requests pass; a bad
//! signature, an unknown key, a missing header and a stale timestamp get 401 with the bodies
//! recorded from Kalshi (`tests/data/kalshi/rest_samples.jsonl`, `protocol.md` §2.5).

mod common;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use common::{Sim, temp_dir};
use kalshi_auth::SigningKey;
use serde_json::{Value, json};

const SAMPLES: &str = include_str!("../../../tests/data/kalshi/rest_samples.jsonl");

fn sample(kind: &str) -> Value {
    SAMPLES
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["kind"] == kind)
        .unwrap_or_else(|| panic!("no sample {kind}"))["payload"]
        .clone()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn keygen(dir: &Path, kind: &str) -> (SigningKey, std::path::PathBuf) {
    let private = dir.join(format!("{kind}.key.pem"));
    let public = dir.join(format!("{kind}.pub.pem"));
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-sim"))
        .args(["keygen", "--kind", kind, "--private"])
        .arg(&private)
        .arg("--public")
        .arg(&public)
        .status()
        .unwrap();
    assert!(status.success());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&private).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
    (SigningKey::from_pem_file(&private).unwrap(), public)
}

fn headers(
    key: &SigningKey,
    id: &str,
    ts: u64,
    method: &str,
    path: &str,
) -> Vec<(&'static str, String)> {
    key.headers(id, ts, method, path).unwrap().to_vec()
}

fn refused(sim: &Sim, headers: &[(&'static str, String)]) -> (u16, Value) {
    match sim.ws_with(headers) {
        Ok(_) => panic!("handshake accepted"),
        Err((status, body)) => (status, serde_json::from_str(&body).unwrap()),
    }
}

#[test]
fn signed_requests() {
    let dir = temp_dir("auth");
    let (rsa, rsa_pub) = keygen(&dir, "rsa");
    let (ed, ed_pub) = keygen(&dir, "ed25519");
    let sim = Sim::start(&[
        "--keys",
        &format!("rsa-key={}", rsa_pub.display()),
        "--keys",
        &format!("ed-key={}", ed_pub.display()),
    ]);
    const WS: &str = "/trade-api/ws/v2";

    // Both key types open a WebSocket and can subscribe.
    for (key, id) in [(&rsa, "rsa-key"), (&ed, "ed-key")] {
        let mut client = sim.ws_with(&headers(key, id, now_ms(), "GET", WS)).unwrap();
        let cmd = client.command(
            "subscribe",
            Some(json!({"channels": ["market_lifecycle_v2"]})),
        );
        assert_eq!(client.until(|f| f["id"] == cmd)["type"], "subscribed");
    }

    // Signing the REST prefix instead of the WS path: bad signature.
    let (status, body) = refused(
        &sim,
        &headers(&rsa, "rsa-key", now_ms(), "GET", "/trade-api/v2"),
    );
    assert_eq!((status, body), (401, sample("401 bad signature")));
    let (status, body) = refused(&sim, &headers(&ed, "ed-key", now_ms(), "POST", WS));
    assert_eq!((status, body), (401, sample("401 bad signature")));
    // A key id the server does not know.
    let (status, body) = refused(&sim, &headers(&ed, "nobody", now_ms(), "GET", WS));
    assert_eq!((status, body), (401, sample("401 unknown key id")));
    // No signature header.
    let mut partial = headers(&rsa, "rsa-key", now_ms(), "GET", WS);
    partial.pop();
    let (status, body) = refused(&sim, &partial);
    assert_eq!(
        (status, body),
        (401, sample("401 missing signature header"))
    );
    // Unsigned.
    let (status, body) = refused(&sim, &[]);
    assert_eq!(
        (status, body),
        (401, sample("401 missing signature header"))
    );
    // 60 s old: outside the 10 s past window.
    let (status, body) = refused(&sim, &headers(&ed, "ed-key", now_ms() - 60_000, "GET", WS));
    assert_eq!(
        (status, body),
        (401, sample("401 timestamp 30 s in the past"))
    );

    // REST: public market data needs no signature; a signed request is checked, its query
    // string unsigned; portfolio endpoints need a signature.
    assert_eq!(sim.get("/trade-api/v2/markets?limit=5").0, 200);
    let signed = headers(&rsa, "rsa-key", now_ms(), "GET", "/trade-api/v2/markets");
    assert_eq!(
        sim.get_with("/trade-api/v2/markets?limit=5", &signed).0,
        200
    );
    // The other common mistake: the short path without /trade-api/v2.
    let wrong = headers(&rsa, "rsa-key", now_ms(), "GET", "/markets");
    let (status, body) = sim.get_with("/trade-api/v2/markets?limit=5", &wrong);
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        sample("401 bad signature")
    );
    let (status, body) = sim.get("/trade-api/v2/portfolio/balance");
    assert_eq!(status, 401);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        sample("401 missing signature header")
    );
    let signed = headers(
        &ed,
        "ed-key",
        now_ms(),
        "GET",
        "/trade-api/v2/portfolio/balance",
    );
    assert_eq!(
        sim.get_with("/trade-api/v2/portfolio/balance", &signed).0,
        404
    );
}

// A key file that is not a public key stops the start with the key id named.
#[test]
fn bad_key_file() {
    let dir = temp_dir("badkey");
    let path = dir.join("junk.pem");
    std::fs::write(&path, "not a key").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kalshi-sim"))
        .args(["--listen", "127.0.0.1:0", "--control", "", "--keys"])
        .arg(format!("k1={}", path.display()))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("auth.keys.k1"), "{stderr}");
}
