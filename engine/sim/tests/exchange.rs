#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Market model and truth log: determinism, replay, and book/trade/ticker consistency.

use std::collections::BTreeMap;

use kalshi_sim_core::{
    EventPayload, Exchange, ExchangeConfig, ExchangeEvent, LifecycleChange, ONE_DOLLAR_E6,
};
use kalshi_wire::Side;
use serde_json::Value;

const START_US: i64 = 1_796_000_000_000_000;

fn config() -> ExchangeConfig {
    ExchangeConfig {
        actions_per_second: 500,
        new_event_every_us: 40_000_000,
        market_lifetime_us: 120_000_000,
        determine_delay_us: 10_000_000,
        settle_delay_us: 10_000_000,
        deactivate_per_mille: 5,
        close_update_per_mille: 5,
        ..ExchangeConfig::default()
    }
}

/// Runs an exchange for `seconds` in 100 ms steps and returns it with all its events.
fn run(seed: u64, seconds: i64) -> (Exchange, Vec<ExchangeEvent>) {
    let mut exchange = Exchange::new(config(), seed);
    let mut events = Vec::new();
    for step in 0..=seconds * 10 {
        events.extend(exchange.step(START_US + step * 100_000));
    }
    (exchange, events)
}

// The same seed and config give byte-identical truth logs; another seed gives a different one.
#[test]
fn same_seed_same_truth_log() {
    let (a, _) = run(7, 300);
    let (b, _) = run(7, 300);
    let (c, _) = run(8, 300);
    assert!(a.truth_log().len() > 10_000);
    assert_eq!(a.truth_log(), b.truth_log());
    assert_ne!(a.truth_log(), c.truth_log());
    let mut fa = Vec::new();
    let mut fb = Vec::new();
    a.write_final_books(&mut fa);
    b.write_final_books(&mut fb);
    assert_eq!(fa, fb);
}

// Replaying the truth log's deltas onto empty books reproduces every final book and its
// market_seq; each line is {"market_seq","record"} with a canonical record inside, and delta
// market_seq numbers run 1, 2, 3 … per market.
#[test]
fn truth_log_replay_reproduces_final_books() {
    let (exchange, _) = run(11, 300);
    let text = std::str::from_utf8(exchange.truth_log()).unwrap();
    let mut books: BTreeMap<String, [BTreeMap<i64, i64>; 2]> = BTreeMap::new();
    let mut seqs: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_ts = i64::MIN;
    for line in text.lines() {
        let value: Value = serde_json::from_str(line).unwrap();
        let object = value.as_object().unwrap();
        assert_eq!(object.len(), 2, "{line}");
        let record = &value["record"];
        assert!(record["sid"].is_null() && record["seq"].is_null());
        if let Some(ts) = record.get("exchange_ts").and_then(Value::as_i64) {
            assert!(ts >= last_ts);
            last_ts = ts;
        }
        if record["type"] == "orderbook_delta" {
            assert_eq!(record["use_yes_price"], false);
            let ticker = record["ticker"].as_str().unwrap().to_owned();
            let seq = seqs.entry(ticker.clone()).or_default();
            *seq += 1;
            assert_eq!(value["market_seq"].as_u64(), Some(*seq));
            let side = usize::from(record["side"] == "no");
            let book = books.entry(ticker).or_default();
            let level = book[side]
                .entry(record["price_e6"].as_i64().unwrap())
                .or_default();
            *level += record["delta_e2"].as_i64().unwrap();
            assert!(*level >= 0);
            book[side].retain(|_, s| *s != 0);
        }
    }
    let finals = exchange.final_books();
    assert!(finals.len() >= 24);
    for book in &finals {
        let rebuilt = books.get(&book.ticker).cloned().unwrap_or_default();
        let yes: Vec<(i64, i64)> = book.yes.iter().map(|l| (l.price_e6, l.count_e2)).collect();
        let no: Vec<(i64, i64)> = book.no.iter().map(|l| (l.price_e6, l.count_e2)).collect();
        assert_eq!(yes, rebuilt[0].clone().into_iter().collect::<Vec<_>>());
        assert_eq!(no, rebuilt[1].clone().into_iter().collect::<Vec<_>>());
        assert_eq!(
            book.market_seq,
            seqs.get(&book.ticker).copied().unwrap_or(0)
        );
    }
    // The written final books parse and agree with final_books().
    let mut written = Vec::new();
    exchange.write_final_books(&mut written);
    let lines: Vec<Value> = std::str::from_utf8(&written)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), finals.len());
    assert_eq!(lines[0]["record"]["type"], "orderbook_snapshot");
    assert_eq!(lines[0]["record"]["ticker"], finals[0].ticker.as_str());
}

// Model invariants: prices on the market's tick grid, books never crossed, trades take the
// touch and are preceded by the matching negative delta, ticker values agree with the book,
// tickers are realistic, and every lifecycle type occurs.
#[test]
fn flow_is_consistent_with_books() {
    let mut exchange = Exchange::new(config(), 3);
    let mut books: BTreeMap<usize, kalshi_sim_core::Book> = BTreeMap::new();
    let mut lifecycle_kinds = std::collections::BTreeSet::new();
    let mut event_created = 0;
    let mut trades = 0;
    let mut previous: Option<ExchangeEvent> = None;
    for step in 0..=3000 {
        let events = exchange.step(START_US + step * 100_000);
        for event in &events {
            match event.payload {
                EventPayload::Delta {
                    market,
                    side,
                    price_e6,
                    delta_e2,
                } => {
                    let m = &exchange.markets()[market];
                    assert!(m.structure.is_valid_price(price_e6), "{price_e6}");
                    let book = books.entry(market).or_default();
                    assert!(book.apply(side, price_e6, delta_e2));
                    let top = book.top();
                    if book.best(Side::Yes).is_some() && book.best(Side::No).is_some() {
                        assert!(top.yes_bid_e6 < top.yes_ask_e6, "crossed book");
                    }
                }
                EventPayload::Trade {
                    market,
                    trade_id,
                    yes_price_e6,
                    count_e2,
                    taker,
                } => {
                    trades += 1;
                    assert_eq!(trade_id.len(), 36);
                    assert!(count_e2 > 0);
                    let Some(ExchangeEvent {
                        payload:
                            EventPayload::Delta {
                                market: dm,
                                side,
                                price_e6,
                                delta_e2,
                            },
                        ..
                    }) = previous
                    else {
                        panic!("trade without a preceding delta");
                    };
                    assert_eq!(dm, market);
                    assert_eq!(delta_e2, -count_e2);
                    match taker {
                        Side::Yes => {
                            assert_eq!(side, Side::No);
                            assert_eq!(yes_price_e6, ONE_DOLLAR_E6 - price_e6);
                        }
                        Side::No => {
                            assert_eq!(side, Side::Yes);
                            assert_eq!(yes_price_e6, price_e6);
                        }
                    }
                }
                EventPayload::Ticker { market, state } => {
                    let top = books.get(&market).cloned().unwrap_or_default().top();
                    assert_eq!(state.yes_bid_e6, top.yes_bid_e6);
                    assert_eq!(state.yes_ask_e6, top.yes_ask_e6);
                    assert_eq!(state.yes_bid_size_e2, top.yes_bid_size_e2);
                    assert_eq!(state.yes_ask_size_e2, top.yes_ask_size_e2);
                }
                EventPayload::Lifecycle { change, .. } => {
                    lifecycle_kinds.insert(change.event_type());
                    if let LifecycleChange::Determined {
                        result,
                        settlement_value_e6,
                        ..
                    } = change
                    {
                        let expected = if result == Side::Yes {
                            ONE_DOLLAR_E6
                        } else {
                            0
                        };
                        assert_eq!(settlement_value_e6, expected);
                    }
                }
                EventPayload::EventCreated { .. } => event_created += 1,
            }
            previous = Some(*event);
        }
    }
    assert!(trades > 100);
    assert!(event_created > 6);
    for kind in [
        "created",
        "activated",
        "deactivated",
        "close_date_updated",
        "determined",
        "settled",
    ] {
        assert!(lifecycle_kinds.contains(kind), "{kind} never happened");
    }
    for market in exchange.markets() {
        assert!(market.ticker.len() <= 47 && market.ticker.is_ascii());
        assert!(market.ticker.starts_with("KXSIM"));
        assert_eq!(
            market.book,
            books
                .get(&exchange.market_index(&market.ticker).unwrap())
                .cloned()
                .unwrap_or_default()
        );
    }
    let structures: std::collections::BTreeSet<_> = exchange
        .markets()
        .iter()
        .map(|m| m.structure.as_str())
        .collect();
    assert_eq!(structures.len(), 3);
}

// A paused exchange produces no events, and resumes afterwards.
#[test]
fn pause_stops_events() {
    let mut exchange = Exchange::new(config(), 5);
    assert!(!exchange.step(START_US).is_empty());
    exchange.set_paused(true);
    assert!(exchange.step(START_US + 10_000_000).is_empty());
    exchange.set_paused(false);
    assert!(!exchange.step(START_US + 20_000_000).is_empty());
}

/// Runs `exchange` on a fixed 100 ms virtual grid, waking at the given wall-clock offsets,
/// and returns its truth log.
fn run_on_grid(seed: u64, wakeups: &[i64]) -> (Vec<u8>, Vec<u8>) {
    let mut exchange = Exchange::new(config(), seed);
    let mut clock = kalshi_sim_core::VirtualClock::new(START_US, 100_000);
    for offset in wakeups {
        exchange.advance(&mut clock, START_US + offset, u64::MAX);
    }
    let mut books = Vec::new();
    exchange.write_final_books(&mut books);
    (exchange.truth_log().to_vec(), books)
}

// The determinism rule: stepping only on the VirtualClock grid gives a byte-identical truth log
// and final books however the server's wake-ups fall (every 37 ms, every 1.3 s, or in bursts
// capped at a few ticks per call), as long as the same virtual range is covered.
#[test]
fn truth_log_independent_of_wakeup_granularity() {
    let end = 120_000_000;
    let fine: Vec<i64> = (0..=end / 37_000)
        .map(|k| k * 37_000)
        .chain([end])
        .collect();
    let coarse: Vec<i64> = (0..=end / 1_300_000)
        .map(|k| k * 1_300_000)
        .chain([end])
        .collect();
    let a = run_on_grid(21, &fine);
    let b = run_on_grid(21, &coarse);
    assert!(a.0.len() > 10_000);
    assert_eq!(a, b);
    // Capped catch-up: at most 3 ticks per call, called until the clock has caught up.
    let mut exchange = Exchange::new(config(), 21);
    let mut clock = kalshi_sim_core::VirtualClock::new(START_US, 100_000);
    while clock.due_count(START_US + end) > 0 {
        exchange.advance(&mut clock, START_US + end, 3);
    }
    assert_eq!(exchange.truth_log(), &a.0[..]);
    // Stepping at the raw wake-up times instead is *not* granularity-independent: that is why
    // the rule exists.
    let mut raw_fine = Exchange::new(config(), 21);
    for offset in &fine {
        raw_fine.step(START_US + offset);
    }
    let mut raw_coarse = Exchange::new(config(), 21);
    for offset in &coarse {
        raw_coarse.step(START_US + offset);
    }
    assert_ne!(raw_fine.truth_log(), raw_coarse.truth_log());
}

/// Checks book/trade/ticker invariants over one run; returns (trades, tickers) seen.
fn check_invariants(seed: u64, steps: i64) -> (usize, usize) {
    let mut exchange = Exchange::new(config(), seed);
    let mut books: BTreeMap<usize, kalshi_sim_core::Book> = BTreeMap::new();
    let mut previous: Option<ExchangeEvent> = None;
    let (mut trades, mut tickers) = (0, 0);
    let mut last_ts = i64::MIN;
    for step in 0..=steps {
        for event in exchange.step(START_US + step * 100_000) {
            assert!(event.exchange_ts >= last_ts);
            last_ts = event.exchange_ts;
            match event.payload {
                EventPayload::Delta {
                    market,
                    side,
                    price_e6,
                    delta_e2,
                } => {
                    let m = &exchange.markets()[market];
                    assert!(m.structure.is_valid_price(price_e6), "seed {seed}");
                    let book = books.entry(market).or_default();
                    assert!(
                        book.apply(side, price_e6, delta_e2),
                        "seed {seed}: negative"
                    );
                    if let (Some((y, _)), Some((n, _))) =
                        (book.best(Side::Yes), book.best(Side::No))
                    {
                        assert!(y + n < ONE_DOLLAR_E6, "seed {seed}: crossed");
                    }
                }
                EventPayload::Trade {
                    market,
                    yes_price_e6,
                    count_e2,
                    taker,
                    ..
                } => {
                    trades += 1;
                    let Some(ExchangeEvent {
                        payload:
                            EventPayload::Delta {
                                market: dm,
                                side,
                                price_e6,
                                delta_e2,
                            },
                        exchange_ts,
                        ..
                    }) = previous
                    else {
                        panic!("seed {seed}: trade without its fill delta");
                    };
                    assert_eq!(
                        (dm, delta_e2, exchange_ts),
                        (market, -count_e2, event.exchange_ts)
                    );
                    let expected = if taker == Side::Yes {
                        assert_eq!(side, Side::No);
                        ONE_DOLLAR_E6 - price_e6
                    } else {
                        assert_eq!(side, Side::Yes);
                        price_e6
                    };
                    assert_eq!(yes_price_e6, expected);
                    // The fill hit the touch: nothing better rests on that side.
                    let book = books.get(&market).cloned().unwrap_or_default();
                    assert!(book.best(side).is_none_or(|(p, _)| p <= price_e6));
                }
                EventPayload::Ticker { market, state } => {
                    tickers += 1;
                    let top = books.get(&market).cloned().unwrap_or_default().top();
                    assert_eq!(
                        (
                            state.yes_bid_e6,
                            state.yes_bid_size_e2,
                            state.yes_ask_e6,
                            state.yes_ask_size_e2
                        ),
                        (
                            top.yes_bid_e6,
                            top.yes_bid_size_e2,
                            top.yes_ask_e6,
                            top.yes_ask_size_e2
                        ),
                        "seed {seed}"
                    );
                    let m = &exchange.markets()[market];
                    assert!(state.volume_e2 <= m.volume_e2);
                }
                EventPayload::Lifecycle { .. } | EventPayload::EventCreated { .. } => {}
            }
            previous = Some(event);
        }
    }
    for (index, market) in exchange.markets().iter().enumerate() {
        assert_eq!(market.book, books.get(&index).cloned().unwrap_or_default());
    }
    (trades, tickers)
}

// Book invariants under many seeds: no negative level, never crossed, prices on the grid,
// trades preceded by their fill delta at the touch, tickers equal to the book's top.
#[test]
fn invariants_hold_for_many_seeds() {
    for seed in 100..116 {
        let (trades, tickers) = check_invariants(seed, 600);
        assert!(
            trades > 20 && tickers > 50,
            "seed {seed}: {trades} {tickers}"
        );
    }
}
