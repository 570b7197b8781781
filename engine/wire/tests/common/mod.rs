//! Helpers shared by the integration tests: the recorded frames and book-level literals.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use kalshi_wire::Level;

/// `(kind, payload)` of every line of the recorded WebSocket samples.
pub(crate) fn ws_samples() -> Vec<(String, serde_json::Value)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/kalshi/ws_samples.jsonl"
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut value: serde_json::Value = serde_json::from_str(line).unwrap();
            let kind = value["kind"].as_str().unwrap().to_owned();
            (kind, value["payload"].take())
        })
        .collect()
}

/// The raw payload bytes of every recorded WebSocket sample.
pub(crate) fn ws_payloads() -> Vec<Vec<u8>> {
    ws_samples()
        .iter()
        .map(|(_, payload)| serde_json::to_vec(payload).unwrap())
        .collect()
}

/// Book levels from `(price_e6, count_e2)` pairs.
pub(crate) fn levels(pairs: &[(i64, i64)]) -> Vec<Level> {
    pairs
        .iter()
        .map(|&(price_e6, count_e2)| Level { price_e6, count_e2 })
        .collect()
}
