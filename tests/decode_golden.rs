//! Golden regression: the canonical records of every recorded frame equal the reviewed file
//! `tests/data/kalshi/ws_samples.canonical.jsonl` (regenerate with `scripts/regen-golden.sh` and
//! review the diff). Field-level expectations computed by hand live in
//! `engine/wire/tests/fixtures.rs`; this test catches any unintended change to the rest.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kalshi_wire::{Decoder, write_canonical, write_error};

#[test]
fn canonical_output_matches_golden_file() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/kalshi");
    let frames = std::fs::read_to_string(format!("{data}/ws_samples.jsonl")).unwrap();
    let golden = std::fs::read_to_string(format!("{data}/ws_samples.canonical.jsonl")).unwrap();
    let mut decoder = Decoder::default();
    let mut actual = Vec::new();
    for line in frames.lines() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = value["kind"].as_str().unwrap();
        let frame = match kind.strip_suffix(".msg") {
            Some(wire_type) => serde_json::json!({"type": wire_type, "msg": value["payload"]}),
            None => value["payload"].clone(),
        };
        let mut bytes = serde_json::to_vec(&frame).unwrap();
        match decoder.decode(&mut bytes) {
            Ok(decoded) => write_canonical(&decoded, &mut actual),
            Err(error) => write_error(&error, &mut actual),
        }
        actual.push(b'\n');
    }
    let actual = String::from_utf8(actual).unwrap();
    for (number, (got, want)) in actual.lines().zip(golden.lines()).enumerate() {
        assert_eq!(got, want, "line {}", number + 1);
    }
    assert_eq!(actual.lines().count(), golden.lines().count());
}
