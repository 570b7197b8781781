#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Load mode: frames decoded with kalshi-wire rebuild books that never go negative and end
//! equal to the generator's final books; seq is contiguous per sid; trades follow their fill
//! delta; tickers agree with the book; digests and counts agree; the stream is deterministic.

use std::collections::BTreeMap;

use kalshi_sim_core::load::LoadSummary;
use kalshi_sim_core::{
    FrameKind, LoadConfig, LoadGen, LoadMix, LoadRoute, ONE_DOLLAR_E6, Session, SessionConfig,
    TruthDigest,
};
use kalshi_wire::{Decoder, Record, Side};

type Books = BTreeMap<String, [BTreeMap<i64, i64>; 2]>;

fn config(seed: u64) -> LoadConfig {
    LoadConfig {
        seed,
        markets: 50,
        rate_per_sec: 100_000,
        mix: LoadMix {
            deltas: 70,
            trades: 15,
            tickers: 15,
        },
        levels_per_side: 8,
        ..LoadConfig::default()
    }
}

fn subscribe(session: &mut Session, load: &LoadGen, tickers: &[String], yes: bool) -> Vec<Vec<u8>> {
    let text = format!(
        r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta","trade","ticker"],"market_tickers":{},"use_yes_price":{yes}}}}}"#,
        serde_json::to_string(tickers).unwrap()
    );
    session
        .handle_command_on(0, text.as_bytes(), load)
        .into_iter()
        .map(|o| o.text)
        .collect()
}

/// Checks a connection's frame stream and returns the rebuilt books (NO-leg prices),
/// per-market digests and per-kind counts.
struct Checker {
    decoder: Decoder,
    books: Books,
    last_seq: BTreeMap<u64, u64>,
    digests: BTreeMap<String, TruthDigest>,
    last_delta: Option<(String, Side, i64, i64)>,
    counts: [u64; 3],
    yes_price: bool,
}

impl Checker {
    fn new(yes_price: bool) -> Self {
        Self {
            decoder: Decoder::default(),
            books: Books::new(),
            last_seq: BTreeMap::new(),
            digests: BTreeMap::new(),
            last_delta: None,
            counts: [0; 3],
            yes_price,
        }
    }

    fn no_leg(yes_price: bool, side: Side, price: i64) -> i64 {
        if yes_price && side == Side::No {
            ONE_DOLLAR_E6 - price
        } else {
            price
        }
    }

    fn frame(&mut self, text: &[u8]) {
        let mut bytes = text.to_vec();
        let yes_price = self.yes_price;
        let decoded = self.decoder.decode(&mut bytes).unwrap();
        let header = *decoded.record.header();
        if let (Some(sid), Some(seq)) = (header.sid, header.seq) {
            let last = self.last_seq.entry(sid.get()).or_default();
            assert_eq!(seq.get(), *last + 1, "seq gap on sid {sid}");
            *last = seq.get();
        }
        match decoded.record {
            Record::Snapshot(s) => {
                let yes: BTreeMap<i64, i64> = decoded
                    .yes_levels()
                    .iter()
                    .map(|l| (l.price_e6, l.count_e2))
                    .collect();
                let no: BTreeMap<i64, i64> = decoded
                    .no_levels()
                    .iter()
                    .map(|l| (Self::no_leg(yes_price, Side::No, l.price_e6), l.count_e2))
                    .collect();
                let prices: Vec<i64> = decoded.no_levels().iter().map(|l| l.price_e6).collect();
                assert!(prices.windows(2).all(|w| w[0] < w[1]), "ascending");
                self.books.insert(s.ticker.as_str().to_owned(), [yes, no]);
                self.last_delta = None;
            }
            Record::Delta(d) => {
                self.counts[0] += 1;
                let ticker = d.ticker.as_str().to_owned();
                let price = Self::no_leg(yes_price, d.side, d.price_e6);
                let book = self.books.get_mut(&ticker).expect("delta before snapshot");
                let level = book[usize::from(d.side == Side::No)]
                    .entry(price)
                    .or_default();
                *level += d.delta_e2;
                assert!(*level >= 0, "negative level {ticker} {price}");
                if *level == 0 {
                    book[usize::from(d.side == Side::No)].remove(&price);
                }
                let (yes_best, no_best) = (
                    book[0].keys().next_back().copied(),
                    book[1].keys().next_back().copied(),
                );
                if let (Some(y), Some(n)) = (yes_best, no_best) {
                    assert!(y + n < ONE_DOLLAR_E6, "crossed book {ticker}");
                }
                assert!(d.exchange_ts.is_some());
                self.digests
                    .entry(ticker.clone())
                    .or_default()
                    .add_delta(d.side, price, d.delta_e2);
                self.last_delta = Some((ticker, d.side, price, d.delta_e2));
            }
            Record::Trade(t) => {
                self.counts[1] += 1;
                let ticker = t.ticker.as_str().to_owned();
                let (dt, side, price, delta) = self.last_delta.take().expect("trade without fill");
                assert_eq!(dt, ticker);
                assert_eq!(delta, -t.count_e2);
                assert_eq!(t.yes_price_e6 + t.no_price_e6, ONE_DOLLAR_E6);
                let taker = t.taker_outcome_side.unwrap();
                assert_eq!(t.taker_side, Some(taker));
                match taker {
                    Side::Yes => {
                        assert_eq!(side, Side::No);
                        assert_eq!(t.yes_price_e6, ONE_DOLLAR_E6 - price);
                    }
                    Side::No => {
                        assert_eq!(side, Side::Yes);
                        assert_eq!(t.yes_price_e6, price);
                    }
                }
                // The fill took the best level: nothing better remains on that side.
                let book = &self.books[&ticker];
                let side_book = &book[usize::from(side == Side::No)];
                assert!(
                    side_book
                        .keys()
                        .next_back()
                        .is_none_or(|best| *best <= price)
                );
                self.digests.entry(ticker).or_default().add_trade(
                    t.trade_id.as_str(),
                    t.yes_price_e6,
                    t.count_e2,
                    taker,
                );
            }
            Record::Ticker(t) => {
                self.counts[2] += 1;
                assert!(header.seq.is_none());
                let book = &self.books[t.ticker.as_str()];
                let (bid, bid_size) = book[0].iter().next_back().map_or((0, 0), |(p, s)| (*p, *s));
                let (ask, ask_size) = book[1]
                    .iter()
                    .next_back()
                    .map_or((ONE_DOLLAR_E6, 0), |(p, s)| (ONE_DOLLAR_E6 - *p, *s));
                assert_eq!(t.yes_bid_e6, Some(bid));
                assert_eq!(t.yes_bid_size_e2, Some(bid_size));
                assert_eq!(t.yes_ask_e6, Some(ask));
                assert_eq!(t.yes_ask_size_e2, Some(ask_size));
            }
            Record::Control(c) => assert_eq!(c.kind, kalshi_wire::ControlKind::Subscribed),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn assert_matches(&self, summary: &LoadSummary, full_history: bool) {
        for m in &summary.markets {
            let book = &self.books[&m.ticker];
            let yes: Vec<(i64, i64)> = m.yes.iter().map(|l| (l.price_e6, l.count_e2)).collect();
            let no: Vec<(i64, i64)> = m.no.iter().map(|l| (l.price_e6, l.count_e2)).collect();
            assert_eq!(
                yes,
                book[0].clone().into_iter().collect::<Vec<_>>(),
                "{}",
                m.ticker
            );
            assert_eq!(
                no,
                book[1].clone().into_iter().collect::<Vec<_>>(),
                "{}",
                m.ticker
            );
            if full_history {
                assert_eq!(
                    self.digests.get(&m.ticker).copied().unwrap_or_default(),
                    m.digest,
                    "{}",
                    m.ticker
                );
            }
        }
        if full_history {
            assert_eq!(self.counts[0], summary.deltas);
            assert_eq!(self.counts[1], summary.trades);
            assert_eq!(self.counts[2], summary.tickers);
        }
    }
}

fn run(yes_price: bool) {
    let mut load = LoadGen::new(config(3)).unwrap();
    let mut session = Session::new(SessionConfig::default());
    let tickers = load.tickers();
    let mut checker = Checker::new(yes_price);
    for frame in subscribe(&mut session, &load, &tickers, yes_price) {
        checker.frame(&frame);
    }
    let mut route = LoadRoute::new();
    let mut buf = Vec::new();
    for _ in 0..60_000 {
        buf.clear();
        let rendered = load.next_frame(&mut route, &mut session, &mut buf).unwrap();
        assert!(!rendered.duplicate);
        checker.frame(&buf);
    }
    let summary = load.summary();
    assert_eq!(summary.events, 60_000);
    assert!(summary.trades > 1000 && summary.tickers > 1000);
    checker.assert_matches(&summary, true);
    let stats = route.stats();
    assert_eq!(stats.deltas + stats.trades + stats.tickers, 60_000);
}

// The full invariant check, in both NO-price conventions.
#[test]
fn frames_rebuild_the_truth() {
    run(false);
    run(true);
}

// Same config → the same events (truth lines); another seed → different ones. The stream does
// not depend on whether anybody is subscribed.
#[test]
fn deterministic_stream() {
    let lines = |seed: u64, render: bool| {
        let mut load = LoadGen::new(config(seed)).unwrap();
        let mut session = Session::new(SessionConfig::default());
        let mut route = LoadRoute::new();
        if render {
            subscribe(&mut session, &load, &load.tickers(), false);
        }
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for _ in 0..5_000 {
            let event = load.next_event();
            load.write_truth_line(&event, &mut out);
            scratch.clear();
            route.render(&load, &event, &mut session, &mut scratch);
        }
        let mut summary = Vec::new();
        load.write_summary(&mut summary);
        (out, summary)
    };
    let a = lines(5, true);
    let b = lines(5, false);
    assert_eq!(a, b);
    assert_ne!(a.0, lines(6, false).0);
    let first: serde_json::Value =
        serde_json::from_slice(a.0.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert!(first["record"]["type"].is_string());
    assert!(first["market_seq"].is_u64());
    let summary_lines: Vec<serde_json::Value> = std::str::from_utf8(&a.1)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(summary_lines[0]["events"], 5_000);
    assert_eq!(summary_lines.len(), 51);
    assert_eq!(summary_lines[1]["digest"].as_str().unwrap().len(), 16);
}

// A subset subscription added mid-stream: only subscribed markets are rendered, the snapshot
// at subscribe time plus the later deltas rebuild the final books; skip and duplicate faults
// work on the load path.
#[test]
fn late_subset_subscription_and_faults() {
    let mut load = LoadGen::new(config(9)).unwrap();
    for _ in 0..10_000 {
        load.next_event();
    }
    let mut session = Session::new(SessionConfig::default());
    let tickers: Vec<String> = load.tickers().into_iter().take(10).collect();
    let mut checker = Checker::new(false);
    for frame in subscribe(&mut session, &load, &tickers, false) {
        checker.frame(&frame);
    }
    let mut route = LoadRoute::new();
    let mut buf = Vec::new();
    let mut rendered = 0;
    for _ in 0..20_000 {
        buf.clear();
        if let Some(r) = load.next_frame(&mut route, &mut session, &mut buf) {
            rendered += 1;
            assert!(
                tickers
                    .iter()
                    .any(|t| std::str::from_utf8(&buf).unwrap().contains(t.as_str()))
            );
            assert!(matches!(
                r.kind,
                FrameKind::Delta | FrameKind::Trade | FrameKind::Ticker
            ));
            checker.frame(&buf);
        }
    }
    assert!(rendered > 2_000 && rendered < 10_000, "{rendered}");
    assert!(route.stats().unrouted > 0);
    let summary = load.summary();
    let mut subset = summary.clone();
    subset.markets.retain(|m| tickers.contains(&m.ticker));
    checker.assert_matches(&subset, false);

    // Faults on the orderbook sid (1): a skipped seq, then a duplicate.
    assert!(session.fault_skip_seq(1));
    assert!(session.fault_duplicate_next(1));
    let mut seqs = Vec::new();
    let mut duplicates = 0;
    while seqs.len() < 5 {
        buf.clear();
        if let Some(r) = load.next_frame(&mut route, &mut session, &mut buf)
            && r.sid == 1
        {
            seqs.push(r.seq.unwrap());
            duplicates += usize::from(r.duplicate);
        }
    }
    assert_eq!(route.stats().skipped, 1);
    assert_eq!(duplicates, 1);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    // The snapshot covers 10 markets (seq 1..10); the skip consumed one seq.
    let last_before = *checker.last_seq.get(&1).unwrap();
    assert_eq!(seqs[0], last_before + 2);
}
