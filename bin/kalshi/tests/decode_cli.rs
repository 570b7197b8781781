//! `kalshi decode` as a user runs it: frames on stdin or a fixture file, one canonical record
//! line out per frame, an error line for each bad frame, and the run going on after it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn run_decode(args: &[&str], stdin: &[u8]) -> (Vec<serde_json::Value>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kalshi"))
        .arg("decode")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        input.write_all(&stdin).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, String::from_utf8_lossy(&output.stderr).into_owned())
}

const DELTA: &str = r#"{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"KXGOLDH-26AUG2711-T4615.99","market_id":"ef793c45-beed-4096-8a3a-1c70af894be7","price_dollars":"0.0100","delta_fp":"10.00","side":"yes","ts":"2026-08-27T13:56:23.996443Z","ts_ms":1787838983996}}"#;

// The acceptance cases: each bad frame gives a clear error line and the next frame decodes.
#[test]
fn bad_frames_give_error_lines_and_the_run_goes_on() {
    let mut input = Vec::new();
    let push = |input: &mut Vec<u8>, line: &str| {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
    };
    push(&mut input, DELTA);
    push(&mut input, r#"{"type":"trade","msg":{"trade_id":"#);
    push(&mut input, &DELTA[..120]);
    push(&mut input, &DELTA.replace("\"0.0100\"", "\"0.0100001\""));
    push(
        &mut input,
        r#"{"type":"trade","sid":2,"seq":3,"msg":{"trade_id":"t","market_ticker":"T","yes_price_dollars":"0.5000","no_price_dollars":"0.5000","count_fp":"-5.00","ts_ms":1}}"#,
    );
    let mut huge = DELTA.as_bytes().to_vec();
    huge.resize(10 << 20, b' ');
    input.extend_from_slice(&huge);
    input.push(b'\n');
    push(&mut input, "");
    input.extend_from_slice(DELTA.as_bytes());
    input.extend_from_slice(b"\r\n");

    let (lines, stderr) = run_decode(&[], &input);
    assert!(stderr.is_empty(), "{stderr}");
    let kinds: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "orderbook_delta",
            "error",
            "error",
            "error",
            "error",
            "error",
            "orderbook_delta"
        ]
    );
    assert_eq!(lines[0]["price_e6"], 10_000);
    assert_eq!(lines[0]["delta_e2"], 1_000);
    assert_eq!(lines[0]["exchange_ts"], 1_787_838_983_996_443_i64);
    assert_eq!(lines[1]["kind"], "json");
    assert_eq!(lines[2]["kind"], "json");
    assert!(
        lines[2]["error"].as_str().unwrap().contains("truncated"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3]["kind"], "precision");
    assert_eq!(lines[3]["field"], "msg.price_dollars");
    assert_eq!(lines[4]["kind"], "negative");
    assert_eq!(lines[4]["field"], "msg.count_fp");
    assert_eq!(lines[5]["kind"], "too_large");
    assert_eq!(
        lines[5]["error"],
        "frame is 4194305 bytes, over the 4194304-byte limit"
    );
    assert_eq!(lines[6], lines[0]);
}

// `--fixtures` decodes every shared recording (payload field) without an error line, and
// `--use-yes-price` is noted on book records.
#[test]
fn fixture_file_decodes_completely() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/kalshi/ws_samples.jsonl"
    );
    let count = std::fs::read_to_string(path).unwrap().lines().count();
    let (lines, _) = run_decode(&["--fixtures", path, "--use-yes-price", "true"], b"");
    assert_eq!(lines.len(), count);
    assert!(lines.iter().all(|l| l["type"] != "error"), "{lines:?}");
    let snapshot = lines
        .iter()
        .find(|l| l["type"] == "orderbook_snapshot")
        .unwrap();
    assert_eq!(snapshot["use_yes_price"], true);
    let kinds: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    for kind in [
        "trade",
        "orderbook_snapshot",
        "orderbook_delta",
        "ticker",
        "market_lifecycle",
        "event_lifecycle",
        "control",
        "unknown",
    ] {
        assert!(kinds.contains(kind), "no {kind} record");
    }
}

// A missing fixture file is a clear failure naming the path, not a panic.
#[test]
fn missing_fixture_file_is_named() {
    let output = Command::new(env!("CARGO_BIN_EXE_kalshi"))
        .args(["decode", "--fixtures", "/nonexistent/fixtures.jsonl"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/nonexistent/fixtures.jsonl"), "{stderr}");
}
