//! Randomized decoding on the stable toolchain (the cargo-fuzz target runs the same invariants
//! with coverage guidance on nightly).
//!
//! Three generators, all seeded so that a failure reproduces:
//! * random records rendered to frames, in the current and both legacy formats, whose decoding
//!   must give back exactly the generated values (ground truth, not just "no panic");
//! * mutations of real recorded frames and of generated ones (bit flips, truncation, splices,
//!   value swaps, deep nesting), which must never panic and, when they decode, must survive the
//!   render/decode round trip unchanged;
//! * plain random bytes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use kalshi_wire::invariants::{Checker, Outcome};
use kalshi_wire::{Decoder, Delta, Header, Record, Side, Trade, fixed};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEED: u64 = 0x6b61_6c73_6869;

fn decimal(value: i64, scale: u32, decimals: u32) -> String {
    let mut out = Vec::new();
    fixed::write_decimal(&mut out, value, scale, decimals);
    String::from_utf8(out).unwrap()
}

fn ticker(rng: &mut StdRng) -> String {
    let len = rng.random_range(1..=63);
    (0..len)
        .map(|_| {
            *b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._"
                .get(rng.random_range(0..39))
                .unwrap() as char
        })
        .collect()
}

fn header(rng: &mut StdRng) -> Header {
    Header {
        id: None,
        sid: core::num::NonZeroU64::new(rng.random_range(1..1_000)),
        seq: core::num::NonZeroU64::new(rng.random_range(1..u64::MAX / 2)),
    }
}

/// A random delta, and its frame in one of the three formats.
fn random_delta(rng: &mut StdRng) -> (Delta, Vec<u8>) {
    let format = rng.random_range(0..3);
    // Legacy frames carry whole cents and whole contracts.
    let (price_e6, delta_e2) = if format == 2 {
        (
            rng.random_range(0..=100) * 10_000,
            rng.random_range(-100_000..100_000) * 100,
        )
    } else {
        (
            rng.random_range(0..=1_000_000),
            rng.random_range(-10_000_000..10_000_000),
        )
    };
    let exchange_ts = rng.random_range(0..4_000_000_000_000_000i64);
    let side = if rng.random_bool(0.5) {
        Side::Yes
    } else {
        Side::No
    };
    let ticker = ticker(rng);
    let header = header(rng);
    let mut ts = Vec::new();
    fixed::write_rfc3339_us(&mut ts, exchange_ts);
    let ts = String::from_utf8(ts).unwrap();
    let (sid, seq) = (header.sid.unwrap(), header.seq.unwrap());
    let msg = match format {
        0 => format!(
            r#""price_dollars":"{}","delta_fp":"{}","side":"{}","ts":"{ts}","ts_ms":{}"#,
            decimal(price_e6, 6, 4),
            decimal(delta_e2, 2, 2),
            side.as_str(),
            exchange_ts.div_euclid(1000)
        ),
        1 => format!(
            r#""price":{},"price_dollars":"{}","delta":{},"delta_fp":"{}","side":"{}","ts":"{ts}""#,
            price_e6 / 10_000,
            decimal(price_e6, 6, 3),
            delta_e2 / 100,
            decimal(delta_e2, 2, 2),
            side.as_str()
        ),
        _ => format!(
            r#""price":{},"delta":{},"side":"{}","ts":"{ts}""#,
            price_e6 / 10_000,
            delta_e2 / 100,
            side.as_str()
        ),
    };
    let frame = format!(
        r#"{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{ticker}","market_id":"m",{msg}}}}}"#
    );
    let delta = Delta {
        header,
        exchange_ts: Some(exchange_ts),
        price_e6,
        delta_e2,
        side,
        ticker: kalshi_wire::Ticker::new(&ticker).unwrap(),
        market_id: kalshi_wire::MarketId::new("m").unwrap(),
    };
    (delta, frame.into_bytes())
}

/// A random trade in the current or transitional format.
fn random_trade(rng: &mut StdRng) -> (Trade, Vec<u8>) {
    let yes_price_e6 = rng.random_range(0..=100) * 10_000;
    let count_e2 = rng.random_range(0..100_000_000);
    let ts_ms = rng.random_range(0..4_000_000_000_000i64);
    let ticker = ticker(rng);
    let header = header(rng);
    let (sid, seq) = (header.sid.unwrap(), header.seq.unwrap());
    let legacy = rng.random_bool(0.3);
    let prices = if legacy {
        format!(
            r#""yes_price":{},"no_price":{}"#,
            yes_price_e6 / 10_000,
            (1_000_000 - yes_price_e6) / 10_000
        )
    } else {
        format!(
            r#""yes_price_dollars":"{}","no_price_dollars":"{}""#,
            decimal(yes_price_e6, 6, 4),
            decimal(1_000_000 - yes_price_e6, 6, 4)
        )
    };
    let frame = format!(
        r#"{{"type":"trade","sid":{sid},"seq":{seq},"msg":{{"trade_id":"id-{seq}","market_ticker":"{ticker}",{prices},"count_fp":"{}","taker_side":"yes","taker_outcome_side":"yes","taker_book_side":"bid","is_block_trade":true,"ts":{},"ts_ms":{ts_ms}}}}}"#,
        decimal(count_e2, 2, 2),
        ts_ms.div_euclid(1000)
    );
    let trade = Trade {
        header,
        exchange_ts: Some(ts_ms * 1000),
        yes_price_e6,
        no_price_e6: 1_000_000 - yes_price_e6,
        count_e2,
        ticker: kalshi_wire::Ticker::new(&ticker).unwrap(),
        trade_id: kalshi_wire::TradeId::new(&format!("id-{seq}")).unwrap(),
        taker_side: Some(Side::Yes),
        taker_outcome_side: Some(Side::Yes),
        taker_book_side: Some(kalshi_wire::BookSide::Bid),
        is_block_trade: Some(true),
    };
    (trade, frame.into_bytes())
}

fn mutate(rng: &mut StdRng, frame: &mut Vec<u8>, donors: &[Vec<u8>]) {
    const TOKENS: &[&[u8]] = &[
        b"null",
        b"true",
        b"-",
        b"0",
        b"-1",
        b"1e999",
        b"0.1234567",
        b"\"\"",
        b"\"x\"",
        b"[]",
        b"{}",
        b"[[",
        b"\\u0000",
        b"\"",
        b",",
        b":",
        b"18446744073709551616",
        b"1.5",
    ];
    for _ in 0..rng.random_range(1..4) {
        if frame.is_empty() {
            frame.push(b'{');
        }
        let at = rng.random_range(0..frame.len());
        match rng.random_range(0..7) {
            0 => frame[at] ^= 1 << rng.random_range(0..8),
            1 => frame.truncate(at),
            2 => {
                let token = TOKENS[rng.random_range(0..TOKENS.len())];
                frame.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.random_range(1..8)).min(frame.len());
                frame.drain(at..end);
            }
            4 => {
                let donor = &donors[rng.random_range(0..donors.len())];
                let start = rng.random_range(0..donor.len());
                let end = (start + rng.random_range(1..40)).min(donor.len());
                frame.splice(at..at, donor[start..end].iter().copied());
            }
            5 => {
                // Replace a quoted value with a bare number, or the reverse.
                if let Some(quote) = frame[at..].iter().position(|b| *b == b'"') {
                    let digits = rng.random_range(0..1_000_000u32).to_string();
                    frame.splice(at + quote..at + quote + 1, digits.bytes());
                }
            }
            _ => {
                let depth = rng.random_range(1..2_000);
                let nested: Vec<u8> = std::iter::repeat_n(b'[', depth)
                    .chain(std::iter::repeat_n(b']', depth))
                    .collect();
                frame.splice(at..at, nested);
            }
        }
    }
}

// Generated frames decode to exactly the generated values, in every format.
#[test]
fn generated_frames_decode_exactly() {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut decoder = Decoder::default();
    for _ in 0..50_000 {
        let (expected, mut frame) = random_delta(&mut rng);
        let text = String::from_utf8(frame.clone()).unwrap();
        match decoder.decode(&mut frame) {
            Ok(decoded) => assert_eq!(decoded.record, Record::Delta(expected), "{text}"),
            Err(error) => panic!("{text}: {error}"),
        }
        let (expected, mut frame) = random_trade(&mut rng);
        let text = String::from_utf8(frame.clone()).unwrap();
        match decoder.decode(&mut frame) {
            Ok(decoded) => assert_eq!(decoded.record, Record::Trade(expected), "{text}"),
            Err(error) => panic!("{text}: {error}"),
        }
    }
}

// Mutated and random inputs never panic, and whatever decodes round-trips unchanged.
#[test]
fn mutated_and_random_inputs_keep_the_invariants() {
    let mut rng = StdRng::seed_from_u64(SEED ^ 1);
    let mut donors = common::ws_payloads();
    for _ in 0..200 {
        donors.push(random_delta(&mut rng).1);
        donors.push(random_trade(&mut rng).1);
    }
    let mut checker = Checker::default();
    let (mut round_tripped, mut rejected) = (0u32, 0u32);
    let mut frame = Vec::new();
    for iteration in 0..250_000u32 {
        frame.clear();
        if iteration % 10 == 0 {
            let len = rng.random_range(0..300);
            frame.extend((0..len).map(|_| rng.random::<u8>()));
        } else {
            frame.extend_from_slice(&donors[rng.random_range(0..donors.len())]);
            mutate(&mut rng, &mut frame, &donors);
        }
        match checker.check_frame(&frame) {
            Ok(Outcome::RoundTripped) => round_tripped += 1,
            Ok(Outcome::Rejected) => rejected += 1,
            Err(broken) => panic!(
                "iteration {iteration}: {broken}\ninput: {}",
                String::from_utf8_lossy(&frame)
            ),
        }
    }
    eprintln!("{round_tripped} round-tripped, {rejected} rejected");
    // Both paths were exercised substantially (the mutations are not all fatal).
    assert!(round_tripped > 20_000, "{round_tripped} round trips");
    assert!(rejected > 20_000, "{rejected} rejections");
}

// Inputs the fuzzer once broke, kept so the fix stays fixed. The first: a numeric string
// `floor_strike` ("618714.00") was re-rendered as a bare number and came back as "618714".
#[test]
fn fuzz_regressions_keep_the_invariants() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/fuzz-regressions"
    );
    let mut checker = Checker::default();
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let input = std::fs::read(&path).unwrap();
        if let Err(broken) = checker.check_frame(&input) {
            panic!("{}: {broken}", path.display());
        }
        count += 1;
    }
    assert!(count >= 1);
}
