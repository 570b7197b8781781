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

use kalshi_wire::invariants::{Checker, Outcome, PathOutcome};
use kalshi_wire::{Decoder, Delta, Header, Record, Side, TickerUpdate, Trade, fixed};
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

/// A random current-format ticker frame in Kalshi's key order, some optional fields left out.
fn random_ticker(rng: &mut StdRng) -> (TickerUpdate, Vec<u8>) {
    let header = Header {
        seq: None,
        ..header(rng)
    };
    let ticker = ticker(rng);
    let market_id = format!("{:08x}-aacc-420e-860e-5e7f054d8aa8", rng.random::<u32>());
    let mut out = TickerUpdate {
        header,
        exchange_ts: None,
        ticker: kalshi_wire::Ticker::new(&ticker).unwrap(),
        market_id: kalshi_wire::MarketId::new(&market_id).unwrap(),
        price_e6: None,
        yes_bid_e6: None,
        yes_ask_e6: None,
        yes_bid_size_e2: None,
        yes_ask_size_e2: None,
        last_trade_size_e2: None,
        volume_e2: None,
        open_interest_e2: None,
        dollar_volume_e6: None,
        dollar_open_interest_e6: None,
    };
    let mut msg = format!(r#""market_id":"{market_id}","market_ticker":"{ticker}""#);
    let price = |rng: &mut StdRng, msg: &mut String, name: &str| {
        let value = rng.random_range(0..=1_000_000);
        msg.push_str(&format!(r#","{name}":"{}""#, decimal(value, 6, 4)));
        Some(value)
    };
    if rng.random_bool(0.9) {
        out.price_e6 = price(rng, &mut msg, "price_dollars");
    }
    out.yes_bid_e6 = price(rng, &mut msg, "yes_bid_dollars");
    out.yes_ask_e6 = price(rng, &mut msg, "yes_ask_dollars");
    let size = |rng: &mut StdRng, msg: &mut String, name: &str| {
        let value = rng.random_range(0..10_000_000_000i64);
        msg.push_str(&format!(r#","{name}":"{}""#, decimal(value, 2, 2)));
        Some(value)
    };
    out.volume_e2 = size(rng, &mut msg, "volume_fp");
    out.open_interest_e2 = size(rng, &mut msg, "open_interest_fp");
    if rng.random_bool(0.9) {
        let (volume, interest) = (
            rng.random_range(-1_000..100_000_000i64),
            rng.random_range(0..100_000_000i64),
        );
        msg.push_str(&format!(
            r#","dollar_volume":{volume},"dollar_open_interest":{interest}"#
        ));
        out.dollar_volume_e6 = Some(volume * 1_000_000);
        out.dollar_open_interest_e6 = Some(interest * 1_000_000);
    }
    out.yes_bid_size_e2 = size(rng, &mut msg, "yes_bid_size_fp");
    out.yes_ask_size_e2 = size(rng, &mut msg, "yes_ask_size_fp");
    out.last_trade_size_e2 = size(rng, &mut msg, "last_trade_size_fp");
    let us = rng.random_range(0..4_000_000_000_000_000i64);
    let mut time = Vec::new();
    fixed::write_rfc3339_us(&mut time, us);
    let time = String::from_utf8(time).unwrap();
    match rng.random_range(0..4) {
        // ts, ts_ms and time: time agrees with ts_ms.
        0 => {
            msg.push_str(&format!(
                r#","ts":{},"ts_ms":{},"time":"{time}""#,
                us.div_euclid(1_000_000),
                us.div_euclid(1_000)
            ));
            out.exchange_ts = Some(us);
        }
        // A demo frame's shape: ts and ts_ms only.
        1 => {
            msg.push_str(&format!(
                r#","ts":{},"ts_ms":{}"#,
                us.div_euclid(1_000_000),
                us.div_euclid(1_000)
            ));
            out.exchange_ts = Some(us.div_euclid(1_000) * 1_000);
        }
        // time disagreeing with ts: ts wins.
        2 => {
            let seconds = us.div_euclid(1_000_000) + 1;
            msg.push_str(&format!(r#","ts":{seconds},"time":"{time}""#));
            out.exchange_ts = Some(seconds * 1_000_000);
        }
        _ => {}
    }
    let sid = header.sid.unwrap();
    let frame = format!(r#"{{"type":"ticker","sid":{sid},"msg":{{{msg}}}}}"#);
    (out, frame.into_bytes())
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

// Inputs the fuzzers once broke, kept so the fix stays fixed; each is checked against both the
// round-trip invariant and the fast-path/simd-json agreement. The first: a numeric string
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
        if let Err(broken) = checker.check_fast_path(&input) {
            panic!("{}: {broken}", path.display());
        }
        count += 1;
    }
    assert!(count >= 1);
}

/// Runs `frame` through both decoder paths; panics when they disagree.
fn same_on_both_paths(checker: &mut Checker, frame: &[u8]) -> PathOutcome {
    checker
        .check_fast_path(frame)
        .unwrap_or_else(|broken| panic!("{broken}"))
}

// The byte-level fast path gives exactly the simd-json path's result (record and aux, or error)
// on the recorded frames, on generated frames of every hot kind (which must also decode to the
// generated values), and on mutated and random inputs.
#[test]
fn fast_path_matches_the_tape_path() {
    let mut checker = Checker::default();
    let mut fast_fixtures = 0;
    for frame in common::ws_payloads() {
        if same_on_both_paths(&mut checker, &frame) == PathOutcome::Fast {
            fast_fixtures += 1;
        }
    }
    // The current-format delta, trade and ticker fixtures (at least 7 of them).
    assert!(
        fast_fixtures >= 7,
        "{fast_fixtures} fixtures on the fast path"
    );
    // The same frames with every object's keys sorted (as some recorders write them).
    for (_, mut payload) in common::ws_samples() {
        payload.sort_all_objects();
        same_on_both_paths(&mut checker, &serde_json::to_vec(&payload).unwrap());
    }

    let mut rng = StdRng::seed_from_u64(SEED ^ 2);
    let mut decoder = Decoder::default();
    let mut donors = common::ws_payloads();
    let mut fast_generated = 0u32;
    for iteration in 0..50_000u32 {
        let (delta, delta_frame) = random_delta(&mut rng);
        let (trade, trade_frame) = random_trade(&mut rng);
        let (ticker, ticker_frame) = random_ticker(&mut rng);
        for (expected, frame) in [
            (Record::Delta(delta), delta_frame),
            (Record::Trade(trade), trade_frame),
            (Record::Ticker(ticker), ticker_frame),
        ] {
            if same_on_both_paths(&mut checker, &frame) == PathOutcome::Fast {
                fast_generated += 1;
            }
            let mut scratch = frame.clone();
            let decoded = decoder.decode(&mut scratch).unwrap();
            assert_eq!(
                decoded.record,
                expected,
                "{}",
                String::from_utf8_lossy(&frame)
            );
            if iteration % 100 == 0 {
                donors.push(frame);
            }
        }
    }
    // Every current-format frame: a third of the deltas, 70% of the trades, all tickers.
    assert!(
        fast_generated > 90_000,
        "{fast_generated} generated frames on the fast path"
    );

    let (mut fast_mutated, mut declined) = (0u32, 0u32);
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
        match same_on_both_paths(&mut checker, &frame) {
            PathOutcome::Fast => fast_mutated += 1,
            PathOutcome::Declined => declined += 1,
        }
    }
    eprintln!(
        "fast path: {fast_fixtures} fixtures, {fast_generated} generated, {fast_mutated} mutated ({declined} declined)"
    );
    assert!(
        fast_mutated > 2_000,
        "{fast_mutated} mutated frames on the fast path"
    );
    assert!(declined > 100_000, "{declined} mutated frames declined");
}

// Near misses of the fast path's shape, one property at a time: each decodes (or fails) the
// same way on both paths, and the fast path takes exactly the ones it should.
#[test]
fn fast_path_near_misses() {
    const DELTA: &str = r#"{"type":"orderbook_delta","sid":1,"seq":2,"msg":{"market_ticker":"KXGOLDH-26AUG2711-T4615.99","market_id":"ef793c45-beed-4096-8a3a-1c70af894be7","price_dollars":"0.0100","delta_fp":"10.00","side":"yes","ts":"2026-08-27T13:56:23.996443Z","ts_ms":1787838983996}}"#;
    const TRADE: &str = r#"{"type":"trade","sid":5,"seq":674041,"msg":{"trade_id":"0723cb08","market_ticker":"KXCRYPTOLEAD15M-26SEP210115-HYPE","yes_price_dollars":"0.1400","no_price_dollars":"0.8600","count_fp":"82.12","taker_side":"no","taker_outcome_side":"no","taker_book_side":"ask","is_block_trade":false,"ts":1789966900,"ts_ms":1789966900609}}"#;
    const TICKER: &str = r#"{"type":"ticker","sid":6,"msg":{"market_id":"4ac7cb26-aacc-420e-860e-5e7f054d8aa8","market_ticker":"KXCRYPTOLEAD15M-26SEP210100-XRP","price_dollars":"0.0100","yes_bid_dollars":"0.0000","yes_ask_dollars":"0.0100","volume_fp":"759.86","open_interest_fp":"666.18","dollar_volume":379,"dollar_open_interest":333,"yes_bid_size_fp":"0.00","yes_ask_size_fp":"78.00","last_trade_size_fp":"0.09","ts":1789966800,"ts_ms":1789966800000,"time":"2026-09-21T05:00:00Z"}}"#;
    let fast = PathOutcome::Fast;
    let declined = PathOutcome::Declined;
    let cases: &[(&str, String, PathOutcome)] = &[
        ("delta", DELTA.to_owned(), fast),
        ("trade", TRADE.to_owned(), fast),
        ("ticker", TICKER.to_owned(), fast),
        // Other key orders are looked up, not refused.
        (
            "envelope order",
            DELTA.replace(r#""sid":1,"seq":2,"#, r#""seq":2,"sid":1,"#),
            fast,
        ),
        (
            "msg order",
            DELTA
                .replace(r#""side":"yes","#, "")
                .replace(r#""ts_ms""#, r#""side":"yes","ts_ms""#),
            fast,
        ),
        (
            "msg first",
            DELTA
                .replace(r#","sid":1,"seq":2,"msg":{"#, r#","msg":{"#)
                .replace("}}", r#"},"sid":1,"seq":2}"#),
            fast,
        ),
        (
            "no ts_ms",
            DELTA.replace(r#","ts_ms":1787838983996"#, ""),
            fast,
        ),
        (
            "ts disagrees",
            DELTA.replace("1787838983996", "1787838983997"),
            fast,
        ),
        (
            "no market_id",
            DELTA.replace(r#""market_id":"ef793c45-beed-4096-8a3a-1c70af894be7","#, ""),
            fast,
        ),
        (
            "empty ticker",
            DELTA.replace("KXGOLDH-26AUG2711-T4615.99", ""),
            fast,
        ),
        (
            "price without decimals",
            DELTA.replace(r#""0.0100""#, r#""1""#),
            fast,
        ),
        (
            "trailing zeros",
            DELTA.replace(r#""0.0100""#, r#""0.0100000""#),
            fast,
        ),
        (
            "negative zero",
            DELTA.replace(r#""10.00""#, r#""-0.00""#),
            fast,
        ),
        ("ts offset", DELTA.replace("996443Z", "996443+01:00"), fast),
        (
            "no yes price",
            TRADE.replace(r#""yes_price_dollars":"0.1400","#, ""),
            fast,
        ),
        (
            "no no price",
            TRADE.replace(r#""no_price_dollars":"0.8600","#, ""),
            fast,
        ),
        (
            "ticker price empty",
            TICKER.replace(r#""price_dollars":"0.0100""#, r#""price_dollars":"""#),
            fast,
        ),
        (
            "negative dollar volume",
            TICKER.replace("379", "-379"),
            fast,
        ),
        ("dollar volume -0", TICKER.replace(":379", ":-0"), fast),
        (
            "ticker with seq",
            TICKER.replace(r#""sid":6,"#, r#""sid":6,"seq":9,"#),
            fast,
        ),
        // Out of the usual order in the message: the in-order readers give up part way and
        // the key lookup reads the frame again from the start of `msg`.
        (
            "trade without ts",
            TRADE.replace(r#""ts":1789966900,"#, ""),
            fast,
        ),
        (
            "trade flag last",
            TRADE
                .replace(r#""is_block_trade":false,"#, "")
                .replace("}}", r#","is_block_trade":true}}"#),
            fast,
        ),
        (
            "ticker without time",
            TICKER.replace(r#","time":"2026-09-21T05:00:00Z""#, ""),
            fast,
        ),
        (
            "delta ts_ms first",
            DELTA.replace(r#","ts_ms":1787838983996"#, "").replace(
                r#""market_ticker""#,
                r#""ts_ms":1787838983996,"market_ticker""#,
            ),
            fast,
        ),
        // Identifiers and numbers that end near the end of the frame (read without the
        // fixed-size windows).
        (
            "ticker last",
            TRADE
                .replace(r#""market_ticker":"KXCRYPTOLEAD15M-26SEP210115-HYPE","#, "")
                .replace(
                    "}}",
                    r#","market_ticker":"KXCRYPTOLEAD15M-26SEP210115-HYPE"}}"#,
                ),
            fast,
        ),
        ("ts_ms one digit", DELTA.replace("1787838983996", "7"), fast),
        (
            "ts_ms eight digits",
            TRADE.replace("1789966900609", "17899669"),
            fast,
        ),
        // Declined: the slow path decides.
        (
            "whitespace",
            DELTA.replace(r#""side":"yes""#, r#""side": "yes""#),
            declined,
        ),
        ("trailing newline", format!("{DELTA}\n"), declined),
        (
            "escape in key",
            DELTA.replace(r#""side""#, r#""sid\u0065""#),
            declined,
        ),
        (
            "escape in ticker",
            DELTA.replace("KXGOLDH", r#"KX\u0047OLDH"#),
            declined,
        ),
        (
            "non-ASCII ticker",
            DELTA.replace("KXGOLDH", "KXGÖLDH"),
            declined,
        ),
        (
            "tab in ticker",
            DELTA.replace("KXGOLDH", "KX\tGOLDH"),
            declined,
        ),
        (
            "duplicate key",
            DELTA.replace(r#""side":"yes""#, r#""side":"yes","side":"no""#),
            declined,
        ),
        (
            "duplicate sid",
            DELTA.replace(r#""sid":1,"#, r#""sid":1,"sid":3,"#),
            declined,
        ),
        (
            "unknown key",
            DELTA.replace(r#""side":"yes""#, r#""side":"yes","client_order_id":"x""#),
            declined,
        ),
        (
            "legacy price",
            DELTA.replace(r#""price_dollars":"0.0100""#, r#""price":1"#),
            declined,
        ),
        (
            "number price",
            DELTA.replace(r#""0.0100""#, "0.01"),
            declined,
        ),
        (
            "string ts_ms",
            DELTA.replace("1787838983996", r#""1787838983996""#),
            declined,
        ),
        (
            "null ts",
            DELTA.replace(r#""2026-08-27T13:56:23.996443Z""#, "null"),
            declined,
        ),
        (
            "type not first",
            DELTA.replace(
                r#"{"type":"orderbook_delta","sid":1,"#,
                r#"{"sid":1,"type":"orderbook_delta","#,
            ),
            declined,
        ),
        (
            "id",
            DELTA.replace(r#""sid":1,"#, r#""id":7,"sid":1,"#),
            declined,
        ),
        (
            "snapshot",
            DELTA.replace("orderbook_delta", "orderbook_snapshot"),
            declined,
        ),
        ("sid 0", DELTA.replace(r#""sid":1"#, r#""sid":0"#), declined),
        (
            "seq -1",
            DELTA.replace(r#""seq":2"#, r#""seq":-1"#),
            declined,
        ),
        (
            "seq 1.0",
            DELTA.replace(r#""seq":2"#, r#""seq":2.0"#),
            declined,
        ),
        (
            "seq 1e2",
            DELTA.replace(r#""seq":2"#, r#""seq":1e2"#),
            declined,
        ),
        (
            "seq leading zero",
            DELTA.replace(r#""seq":2"#, r#""seq":02"#),
            declined,
        ),
        (
            "seq 19 digits",
            DELTA.replace(r#""seq":2"#, r#""seq":9999999999999999999"#),
            fast,
        ),
        (
            "seq 20 digits",
            DELTA.replace(r#""seq":2"#, r#""seq":10000000000000000000"#),
            declined,
        ),
        (
            "ts_ms 19 digits",
            DELTA.replace("1787838983996", "1000000000000000000"),
            declined,
        ),
        (
            "7 decimals",
            DELTA.replace(r#""0.0100""#, r#""0.0100001""#),
            declined,
        ),
        (
            "negative price",
            DELTA.replace(r#""0.0100""#, r#""-0.0100""#),
            declined,
        ),
        (
            "price +",
            DELTA.replace(r#""0.0100""#, r#""+0.0100""#),
            declined,
        ),
        ("price .", DELTA.replace(r#""0.0100""#, r#""0.""#), declined),
        (
            "price empty",
            DELTA.replace(r#""0.0100""#, r#""""#),
            declined,
        ),
        (
            "huge price",
            DELTA.replace(r#""0.0100""#, r#""12345678901234.5""#),
            declined,
        ),
        (
            "side maybe",
            DELTA.replace(r#""yes""#, r#""maybe""#),
            declined,
        ),
        ("bad date", DELTA.replace("08-27", "02-30"), declined),
        (
            "ticker too long",
            DELTA.replace("KXGOLDH", &"K".repeat(60)),
            declined,
        ),
        ("no side", DELTA.replace(r#""side":"yes","#, ""), declined),
        (
            "no msg",
            r#"{"type":"orderbook_delta","sid":1,"seq":2}"#.to_owned(),
            declined,
        ),
        (
            "msg not an object",
            r#"{"type":"orderbook_delta","sid":1,"seq":2,"msg":[]}"#.to_owned(),
            declined,
        ),
        (
            "empty msg",
            r#"{"type":"trade","sid":1,"seq":2,"msg":{}}"#.to_owned(),
            declined,
        ),
        ("trailing data", format!("{DELTA}{{}}"), declined),
        ("truncated", DELTA[..DELTA.len() - 1].to_owned(), declined),
        (
            "negative count",
            TRADE.replace(r#""82.12""#, r#""-82.12""#),
            declined,
        ),
        (
            "price over a dollar",
            TRADE
                .replace(r#""no_price_dollars":"0.8600","#, "")
                .replace("0.1400", "1.1400"),
            declined,
        ),
        (
            "string bool",
            TRADE.replace("false", r#""false""#),
            declined,
        ),
        (
            "ts_ms overflow",
            TRADE.replace("1789966900609", "999999999999999999"),
            declined,
        ),
        ("bid side", TRADE.replace(r#""ask""#, r#""yes""#), declined),
        (
            "legacy ticker",
            TICKER.replace(r#""yes_bid_dollars":"0.0000","#, r#""yes_bid":0,"#),
            declined,
        ),
        (
            "dollar volume overflow",
            TICKER.replace("379", "99999999999999"),
            declined,
        ),
        (
            "time invalid next to ts_ms",
            TICKER.replace("05:00:00Z", "25:00:00Z"),
            declined,
        ),
    ];
    let mut checker = Checker::default();
    for (name, frame, expected) in cases {
        let outcome = same_on_both_paths(&mut checker, frame.as_bytes());
        assert_eq!(outcome, *expected, "{name}: {frame}");
    }
}
