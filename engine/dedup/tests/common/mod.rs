//! Shared parts of the deduplicator's integration tests: clusters, a deterministic exchange
//! stream with its ground truth, per-gatherer captures with drops, and the checks against
//! production.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    dead_code,
    unreachable_pub,
    missing_docs
)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kalshi_dedup::config::{Config, DbTarget, GathererTarget, HttpConfig, SyncConfig};
use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_sim_core::{EventPayload, Exchange, ExchangeConfig, FinalBook};
use kalshi_storage::{MigrateOptions, connect, migrate};
use kalshi_wire::record::{BookSide, Level, Side};
use kalshi_wire::{Ticker, TradeId};
use kalshi_writer::{
    DeltaRow, EventRow, LifecycleRow, MarketRow, Repair, Row, SequenceGapRow, SnapshotRow, Source,
    TickerRow, TradeRow, Writer, WriterConfig,
};
use postgres::Client;
use rand::{Rng, SeedableRng};

pub const SEC: i64 = 1_000_000;

/// A cluster with a migrated `kalshi` database.
pub fn cluster(opts: &MigrateOptions) -> PgCluster {
    let pg = PgCluster::start(PgOptions::default()).unwrap();
    migrate(&mut connect(&pg.url("kalshi")).unwrap(), opts).unwrap();
    pg
}

pub fn client(pg: &PgCluster) -> Client {
    connect(&pg.url("kalshi")).unwrap()
}

pub fn now_us() -> i64 {
    kalshi_dedup::service::unix_now_us()
}

/// Wait for `cond`, failing after `limit` (against hanging, not a timing assertion).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One exchange event, with what identifies it (not its capture).
#[derive(Clone, Debug)]
pub enum Ev {
    Delta {
        ts: i64,
        ticker: String,
        side: Side,
        price: i64,
        delta: i64,
    },
    Trade {
        ts: i64,
        ticker: String,
        trade_id: String,
        yes_price: i64,
        count: i64,
        taker: Side,
    },
    Tick {
        ts: i64,
        ticker: String,
        values: [i64; 10],
    },
    /// A lifecycle event. Like Kalshi's lifecycle frames, the row a gatherer stores carries
    /// its own receive time as `exchange_ts` (different per gatherer, see [`life_recv`]).
    /// `timed`: the payload carries the event's time (so identical content never repeats);
    /// otherwise the payload is only ticker and event type, and identical events repeat.
    Life {
        ts: i64,
        ticker: String,
        event_type: String,
        timed: bool,
    },
}

/// The receive time gatherer `g` stores for a lifecycle event at `ts`: 0, 0.7 and 1.4 s
/// late, so copies of one event fall into different 1 s ranges.
pub fn life_recv(ts: i64, g: usize) -> i64 {
    ts + [0, 700_000, 1_400_000][g % 3]
}

/// Largest [`life_recv`] delay.
pub const LIFE_SPREAD: i64 = 1_400_000;

impl Ev {
    pub fn ts(&self) -> i64 {
        match self {
            Ev::Delta { ts, .. }
            | Ev::Trade { ts, .. }
            | Ev::Tick { ts, .. }
            | Ev::Life { ts, .. } => *ts,
        }
    }
}

/// The truth: events in exchange order, grouped (a group is captured or missed as a whole by a
/// gatherer, except that a gatherer may miss part of a group of identical deltas).
pub struct Truth {
    pub groups: Vec<Vec<Ev>>,
    pub final_books: Vec<FinalBook>,
    pub tickers: Vec<String>,
    pub start: i64,
    pub end: i64,
}

impl Truth {
    pub fn events(&self) -> impl Iterator<Item = &Ev> {
        self.groups.iter().flatten()
    }
}

/// Run the simulator core from `start` for `secs` exchange seconds. Every 40th delta is
/// followed, in the same microsecond, by two identical deltas of +x and one of -2x at its
/// level: real events that a dedup on (ticker, ts, side, price, delta) would collapse, and
/// that leave the book as the exchange has it.
pub fn truth(seed: u64, start: i64, secs: i64, actions_per_second: u64) -> Truth {
    let mut ex = Exchange::new(
        ExchangeConfig {
            actions_per_second,
            new_event_every_us: 10 * SEC,
            deactivate_per_mille: 5,
            close_update_per_mille: 5,
            ..ExchangeConfig::default()
        },
        seed,
    );
    let mut groups = Vec::new();
    let mut deltas = 0u64;
    let step = 10_000;
    let mut t = start;
    while t < start + secs * SEC {
        for e in ex.step(t) {
            let ts = e.exchange_ts;
            let name = |m: usize| ex.markets()[m].ticker.clone();
            let ev = match e.payload {
                EventPayload::Delta {
                    market,
                    side,
                    price_e6,
                    delta_e2,
                } => {
                    deltas += 1;
                    let d = Ev::Delta {
                        ts,
                        ticker: name(market),
                        side,
                        price: price_e6,
                        delta: delta_e2,
                    };
                    if deltas.is_multiple_of(40) {
                        groups.push(vec![d]);
                        let mk = |delta| Ev::Delta {
                            ts,
                            ticker: name(market),
                            side,
                            price: price_e6,
                            delta,
                        };
                        groups.push(vec![mk(700), mk(700)]);
                        groups.push(vec![mk(-1400)]);
                        continue;
                    }
                    d
                }
                EventPayload::Trade {
                    market,
                    trade_id,
                    yes_price_e6,
                    count_e2,
                    taker,
                } => Ev::Trade {
                    ts,
                    ticker: name(market),
                    trade_id: trade_id.as_str().to_owned(),
                    yes_price: yes_price_e6,
                    count: count_e2,
                    taker,
                },
                EventPayload::Ticker { market, state } => Ev::Tick {
                    ts,
                    ticker: name(market),
                    values: [
                        state.price_e6,
                        state.yes_bid_e6,
                        state.yes_ask_e6,
                        state.yes_bid_size_e2,
                        state.yes_ask_size_e2,
                        state.last_trade_size_e2,
                        state.volume_e2,
                        state.open_interest_e2,
                        state.dollar_volume_e6,
                        state.dollar_open_interest_e6,
                    ],
                },
                EventPayload::Lifecycle { market, change } => Ev::Life {
                    ts,
                    ticker: name(market),
                    event_type: change.event_type().to_owned(),
                    timed: true,
                },
                EventPayload::EventCreated { .. } => continue,
            };
            groups.push(vec![ev]);
        }
        t += step;
    }
    let tickers: Vec<String> = ex.markets().iter().map(|m| m.ticker.clone()).collect();
    // Lifecycle events without a time in the payload, each repeated identically 9 s later
    // (two real events, far apart), the first just before a range boundary.
    for (i, t) in tickers.iter().enumerate().take(6) {
        let ts1 = start + (1 + i as i64) * SEC + 654_321;
        for ts in [ts1, ts1 + 9 * SEC] {
            groups.push(vec![Ev::Life {
                ts,
                ticker: t.clone(),
                event_type: "deactivated".to_owned(),
                timed: false,
            }]);
        }
    }
    groups.sort_by_key(|g| g[0].ts());
    Truth {
        groups,
        final_books: ex.final_books(),
        tickers,
        start,
        end: t,
    }
}

/// Which events each of `n` gatherers captures: each misses a group with probability
/// `drop`, at least one gatherer captures every group whole, and a gatherer may capture just
/// one of two identical deltas. `only` forces every `only.1`-th group to be seen by gatherer
/// `only.0` alone.
pub fn captures(
    truth: &Truth,
    n: usize,
    seed: u64,
    drop: f64,
    only: Option<(usize, usize)>,
) -> Vec<Vec<Ev>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = vec![Vec::new(); n];
    for (gi, group) in truth.groups.iter().enumerate() {
        let mut keep: Vec<usize> = (0..n)
            .map(|_| {
                if rng.random_bool(drop) {
                    0
                } else {
                    group.len()
                }
            })
            .collect();
        if group.len() == 2 {
            for k in keep.iter_mut() {
                if *k == 2 && rng.random_bool(0.2) {
                    *k = 1;
                }
            }
        }
        if let Some((g, every)) = only
            && gi % every == every - 1
        {
            for (i, k) in keep.iter_mut().enumerate() {
                *k = if i == g { group.len() } else { 0 };
            }
        }
        if !keep.contains(&group.len()) {
            keep[gi % n] = group.len();
        }
        for (g, k) in keep.iter().enumerate() {
            out[g].extend(group[..*k].iter().cloned());
        }
    }
    out
}

/// The rows gatherer `g` (id `g + 1`) writes for one captured event.
pub fn row_for(ev: &Ev, g: usize, seq: &mut i64) -> Row {
    let gid = g as i16 + 1;
    let sid = 10 * i64::from(gid) + 1;
    *seq += 1;
    let recv = |ts: i64| ts + 800 + 131 * g as i64;
    match ev {
        Ev::Delta {
            ts,
            ticker,
            side,
            price,
            delta,
        } => Row::Delta(DeltaRow {
            exchange_ts: *ts,
            received_ts: recv(*ts),
            gatherer_id: gid,
            ticker: Ticker::new(ticker).unwrap(),
            side: *side,
            price_e6: *price,
            delta_e2: *delta,
            sid,
            seq: *seq,
            occurrence: 0,
        }),
        Ev::Trade {
            ts,
            ticker,
            trade_id,
            yes_price,
            count,
            taker,
        } => Row::Trade(TradeRow {
            exchange_ts: *ts,
            received_ts: recv(*ts),
            gatherer_id: gid,
            ticker: Ticker::new(ticker).unwrap(),
            trade_id: TradeId::new(trade_id).unwrap(),
            yes_price_e6: *yes_price,
            no_price_e6: 1_000_000 - yes_price,
            count_e2: *count,
            taker_side: Some(*taker),
            taker_outcome_side: Some(*taker),
            taker_book_side: Some(if *taker == Side::Yes {
                BookSide::Bid
            } else {
                BookSide::Ask
            }),
            is_block_trade: Some(false),
            source: Source::Ws,
            sid: Some(sid + 1),
            seq: Some(*seq),
        }),
        Ev::Tick { ts, ticker, values } => Row::Ticker(TickerRow {
            exchange_ts: *ts,
            received_ts: recv(*ts),
            gatherer_id: gid,
            ticker: Ticker::new(ticker).unwrap(),
            price_e6: Some(values[0]),
            yes_bid_e6: Some(values[1]),
            yes_ask_e6: Some(values[2]),
            yes_bid_size_e2: Some(values[3]),
            yes_ask_size_e2: Some(values[4]),
            last_trade_size_e2: Some(values[5]),
            volume_e2: Some(values[6]),
            open_interest_e2: Some(values[7]),
            dollar_volume_e6: if values[8] == 0 {
                None
            } else {
                Some(values[8])
            },
            dollar_open_interest_e6: Some(values[9]),
            sid: Some(sid + 2),
            seq: None,
            occurrence: 0,
        }),
        Ev::Life {
            ts,
            ticker,
            event_type,
            timed,
        } => Row::Lifecycle(Box::new(LifecycleRow {
            exchange_ts: life_recv(*ts, g),
            received_ts: life_recv(*ts, g),
            gatherer_id: gid,
            ticker: Ticker::new(ticker).unwrap(),
            event_type: event_type.clone(),
            mve: false,
            // The canonical record carries the capturing subscription's sid and seq.
            payload: if *timed {
                format!(
                    r#"{{"type":"market_lifecycle","sid":{},"seq":{},"ticker":"{ticker}","event_type":"{event_type}","exchange_ts":{ts}}}"#,
                    sid + 3,
                    *seq
                )
            } else {
                format!(
                    r#"{{"type":"market_lifecycle","sid":{},"seq":{},"ticker":"{ticker}","event_type":"{event_type}"}}"#,
                    sid + 3,
                    *seq
                )
            },
            sid: Some(sid + 3),
            seq: Some(*seq),
            occurrence: 0,
        })),
    }
}

/// A gatherer's side rows: two REST snapshots per market (own times), two gap-ledger rows,
/// and markets/events with gatherer-dependent `updated_ts` (gatherer 2 is newest).
pub fn side_rows(truth: &Truth, g: usize) -> Vec<Row> {
    let gid = g as i16 + 1;
    let mut rows = Vec::new();
    for (i, t) in truth.tickers.iter().enumerate().take(12) {
        for k in 0..2 {
            let ts = truth.start + (k + 1) * 3 * SEC + i as i64 * 1000 + 17 * g as i64;
            rows.push(Row::Snapshot(Box::new(SnapshotRow {
                snapshot_ts: ts,
                received_ts: ts,
                gatherer_id: gid,
                ticker: Ticker::new(t).unwrap(),
                source: Some(Source::Rest),
                sid: None,
                seq: None,
                yes: vec![Level {
                    price_e6: 10_000 * (1 + k),
                    count_e2: 100 + i as i64,
                }],
                no: vec![],
            })));
        }
    }
    for k in 0..2 {
        rows.push(Row::SequenceGap(Box::new(SequenceGapRow {
            detected_ts: truth.start + (2 + 5 * k) * SEC + g as i64,
            gatherer_id: gid,
            channel: "orderbook_delta".to_owned(),
            sid: Some(11),
            expected_seq: Some(100 + k),
            received_seq: Some(103 + k),
            tickers: vec![truth.tickers[0].clone()],
            repair: Repair::GetSnapshot,
            repaired_ts: Some(truth.start + (2 + 5 * k) * SEC + 5000),
            backfilled_trades: None,
            note: None,
        })));
    }
    let newest = [1, 3, 2][g];
    for t in &truth.tickers {
        rows.push(Row::Market(Box::new(MarketRow {
            ticker: t.clone(),
            event_ticker: format!("EV-{t}"),
            status: "active".to_owned(),
            title: Some(format!("seen by gatherer {gid}")),
            updated_ts: truth.start + newest,
            gatherer_id: gid,
            ..MarketRow::default()
        })));
    }
    rows.push(Row::Event(Box::new(EventRow {
        event_ticker: "EV-ONE".to_owned(),
        title: Some(format!("seen by gatherer {gid}")),
        updated_ts: truth.start + newest,
        gatherer_id: gid,
        ..EventRow::default()
    })));
    rows
}

/// Start a writer for gatherer `g` into `url` (Append mode, writer id `g{g+1}`).
pub fn writer(url: &str, g: usize, spool: &std::path::Path) -> (Writer, kalshi_writer::Producer) {
    let mut c = WriterConfig::new(url, format!("g{}", g + 1), spool);
    c.batch_rows_max = 2000;
    c.batch_age_max = Duration::from_millis(50);
    c.retry_delay_min = Duration::from_millis(50);
    c.retry_delay_max = Duration::from_millis(500);
    c.connect_timeout = Duration::from_secs(2);
    c.shutdown_timeout = Duration::from_secs(30);
    let (w, mut p) = Writer::start(c, &prometheus::Registry::new()).unwrap();
    (w, p.remove(0))
}

pub fn push(p: &kalshi_writer::Producer, row: Row) {
    p.push_wait(row, Duration::from_secs(60))
        .map_err(|_| "ring push failed")
        .unwrap();
}

/// A deduplicator configuration for tests: 1 s ranges, short grace and down_after, fast
/// retries, HTTP on ephemeral ports.
pub fn dedup_config(prod: &PgCluster, gatherers: &[&PgCluster], start_us: i64) -> Config {
    let mut prod_db = DbTarget::new(prod.url("kalshi"));
    prod_db.connect_timeout = Duration::from_secs(2);
    Config {
        production: prod_db,
        migrate: true,
        gatherers: gatherers
            .iter()
            .enumerate()
            .map(|(i, pg)| {
                let mut db = DbTarget::new(pg.conn_string("kalshi", "deduplicator"));
                db.connect_timeout = Duration::from_secs(2);
                GathererTarget {
                    name: format!("gatherer-{}", i + 1),
                    writer_id: format!("g{}", i + 1),
                    db,
                }
            })
            .collect(),
        sync: SyncConfig {
            range_width: Duration::from_millis(1000),
            grace: Duration::from_millis(300),
            down_after: Duration::from_millis(1500),
            late_window: Duration::from_secs(3),
            poll_interval: Duration::from_millis(50),
            late_scan_interval: Duration::from_millis(200),
            lifecycle_tolerance: Duration::from_secs(2),
            start_us: Some(start_us),
            state_sync_interval: Duration::from_millis(300),
            retry_delay_min: Duration::from_millis(50),
            retry_delay_max: Duration::from_millis(500),
            ..SyncConfig::default()
        },
        http: HttpConfig {
            metrics_listen: "127.0.0.1:0".to_owned(),
            health_listen: "127.0.0.1:0".to_owned(),
            ..HttpConfig::default()
        },
    }
}

/// Let the `deduplicator` role log in on a gatherer cluster (the tests read gatherers as it).
pub fn allow_dedup_login(pg: &PgCluster) {
    client(pg)
        .batch_execute("ALTER ROLE deduplicator LOGIN")
        .unwrap();
}

type DeltaKey = (String, i64, String, i64, i64);

/// A lifecycle event's content: ticker, event type, and the time in its payload if any.
type LifeKey = (String, String, Option<String>);

/// Check production against the truth: every event exactly once, with identical real
/// events kept with their multiplicity; books rebuilt from production's deltas equal the
/// exchange's final books; snapshots, gaps, markets and events as written.
pub fn assert_production_exact(prod: &mut Client, truth: &Truth, gatherers: usize) {
    // Deltas: multiset equality, occurrences 0..k-1.
    let mut want: BTreeMap<DeltaKey, u32> = BTreeMap::new();
    let mut want_trades: BTreeMap<String, (i64, String, i64, i64)> = BTreeMap::new();
    let mut want_ticks: BTreeMap<(String, i64, [i64; 10]), u32> = BTreeMap::new();
    let mut want_life: BTreeMap<LifeKey, Vec<i64>> = BTreeMap::new();
    for ev in truth.events() {
        match ev {
            Ev::Delta {
                ts,
                ticker,
                side,
                price,
                delta,
            } => {
                *want
                    .entry((
                        ticker.clone(),
                        *ts,
                        side.as_str().to_owned(),
                        *price,
                        *delta,
                    ))
                    .or_default() += 1;
            }
            Ev::Trade {
                ts,
                ticker,
                trade_id,
                yes_price,
                count,
                ..
            } => {
                want_trades.insert(trade_id.clone(), (*ts, ticker.clone(), *yes_price, *count));
            }
            Ev::Tick { ts, ticker, values } => {
                // dollar_volume 0 is written as NULL and read back through coalesce.
                *want_ticks
                    .entry((ticker.clone(), *ts, *values))
                    .or_default() += 1;
            }
            Ev::Life {
                ts,
                ticker,
                event_type,
                timed,
            } => want_life
                .entry((
                    ticker.clone(),
                    event_type.clone(),
                    timed.then(|| ts.to_string()),
                ))
                .or_default()
                .push(*ts),
        }
    }
    let mut got: BTreeMap<DeltaKey, Vec<i32>> = BTreeMap::new();
    for r in prod
        .query(
            "SELECT ticker, exchange_ts, side, price_e6, delta_e2, occurrence FROM orderbook_deltas",
            &[],
        )
        .unwrap()
    {
        got.entry((r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .or_default()
            .push(r.get(5));
    }
    let mut missing = 0;
    let mut extra = 0;
    for (k, n) in &want {
        let have = got.get(k).map_or(0, Vec::len) as u32;
        if have < *n {
            missing += n - have;
        }
        if have > *n {
            extra += have - n;
        }
    }
    for k in got.keys() {
        if !want.contains_key(k) {
            extra += got[k].len() as u32;
        }
    }
    assert_eq!(
        (missing, extra),
        (0, 0),
        "deltas missing / extra in production"
    );
    for occ in got.values_mut() {
        occ.sort_unstable();
        assert_eq!(*occ, (0..occ.len() as i32).collect::<Vec<_>>());
    }
    let doubles = want.values().filter(|n| **n >= 2).count();
    assert!(doubles > 0, "the truth has identical deltas in one µs");

    // Books rebuilt from production's deltas equal the exchange's final books.
    let mut books: HashMap<String, BTreeMap<(String, i64), i64>> = HashMap::new();
    for ((ticker, _, side, price, delta), occ) in &got {
        *books
            .entry(ticker.clone())
            .or_default()
            .entry((side.clone(), *price))
            .or_default() += delta * occ.len() as i64;
    }
    let mut checked = 0;
    for fb in &truth.final_books {
        let book = books.remove(&fb.ticker).unwrap_or_default();
        let levels = |side: &str| -> Vec<(i64, i64)> {
            book.iter()
                .filter(|((s, _), v)| s == side && **v != 0)
                .map(|((_, p), v)| (*p, *v))
                .collect()
        };
        let want_yes: Vec<(i64, i64)> = fb.yes.iter().map(|l| (l.price_e6, l.count_e2)).collect();
        let want_no: Vec<(i64, i64)> = fb.no.iter().map(|l| (l.price_e6, l.count_e2)).collect();
        assert_eq!(levels("yes"), want_yes, "{} yes book", fb.ticker);
        assert_eq!(levels("no"), want_no, "{} no book", fb.ticker);
        checked += 1;
    }
    assert!(checked > 0);

    // Trades: each trade_id once, with its values.
    let rows = prod
        .query(
            "SELECT trade_id, exchange_ts, ticker, yes_price_e6, count_e2 FROM trades",
            &[],
        )
        .unwrap();
    assert_eq!(
        rows.len(),
        want_trades.len(),
        "trades in production vs truth"
    );
    for r in rows {
        let id: String = r.get(0);
        assert_eq!(
            want_trades.get(&id),
            Some(&(r.get(1), r.get(2), r.get(3), r.get(4))),
            "trade {id}"
        );
    }

    // Tickers: multiset.
    let mut got_ticks: BTreeMap<(String, i64, [i64; 10]), u32> = BTreeMap::new();
    for r in prod
        .query(
            "SELECT ticker, exchange_ts, price_e6, yes_bid_e6, yes_ask_e6, yes_bid_size_e2, \
             yes_ask_size_e2, last_trade_size_e2, volume_e2, open_interest_e2, \
             coalesce(dollar_volume_e6, 0), dollar_open_interest_e6 FROM tickers",
            &[],
        )
        .unwrap()
    {
        let mut v = [0i64; 10];
        for (i, x) in v.iter_mut().enumerate() {
            *x = r.get::<_, Option<i64>>(i + 2).unwrap();
        }
        *got_ticks.entry((r.get(0), r.get(1), v)).or_default() += 1;
    }
    assert_eq!(got_ticks, want_ticks, "tickers");

    // Lifecycle: each event exactly once (its copies carry the gatherers' receive times, so
    // the stored time is one of them: within LIFE_SPREAD after the event), identical events
    // far apart twice; payloads without the capture's sid/seq.
    let mut got_life: BTreeMap<LifeKey, Vec<i64>> = BTreeMap::new();
    for r in prod
        .query(
            "SELECT ticker, event_type, payload->>'exchange_ts', exchange_ts, \
             payload ? 'sid' OR payload ? 'seq' FROM market_lifecycle",
            &[],
        )
        .unwrap()
    {
        assert!(!r.get::<_, bool>(4), "lifecycle payload still has sid/seq");
        got_life
            .entry((r.get(0), r.get(1), r.get(2)))
            .or_default()
            .push(r.get(3));
    }
    let mut bad = Vec::new();
    for (k, want) in &mut want_life {
        want.sort_unstable();
        let mut got = got_life.remove(k).unwrap_or_default();
        got.sort_unstable();
        let ok = got.len() == want.len()
            && got
                .iter()
                .zip(want.iter())
                .all(|(g, w)| *g >= *w && *g <= *w + LIFE_SPREAD);
        if !ok {
            bad.push(format!("{k:?}: want {want:?}, got {got:?}"));
        }
    }
    for (k, got) in &got_life {
        bad.push(format!("{k:?}: not in the truth, got {got:?}"));
    }
    assert!(bad.is_empty(), "market_lifecycle:\n{}", bad.join("\n"));
    assert!(want_life.values().any(|v| v.len() == 2));
    assert!(want_life.len() > 6);

    // Snapshots: every gatherer's, once. Gaps: every gatherer's, once, with repairs.
    let snaps: i64 = prod
        .query_one("SELECT count(*) FROM orderbook_snapshots", &[])
        .unwrap()
        .get(0);
    let per = truth.tickers.len().min(12) as i64 * 2;
    assert_eq!(snaps, per * gatherers as i64, "snapshots");
    let distinct: i64 = prod
        .query_one(
            "SELECT count(DISTINCT (gatherer_id, ticker, snapshot_ts)) FROM orderbook_snapshots",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(distinct, snaps);
    let gaps: i64 = prod
        .query_one(
            "SELECT count(*) FROM sequence_gaps WHERE repaired_ts IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gaps, 2 * gatherers as i64, "sequence_gaps");

    // Markets and events: newest wins (gatherer 2 wrote the newest).
    let markets = prod
        .query("SELECT ticker, title FROM markets", &[])
        .unwrap();
    assert_eq!(markets.len(), truth.tickers.len());
    if gatherers >= 2 {
        for m in markets {
            assert_eq!(
                m.get::<_, Option<String>>(1).as_deref(),
                Some("seen by gatherer 2")
            );
        }
        let ev: Option<String> = prod
            .query_one(
                "SELECT title FROM events WHERE event_ticker = 'EV-ONE'",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(ev.as_deref(), Some("seen by gatherer 2"));
    }
}

/// Row count and an order-independent checksum of every production data table.
pub fn production_digest(prod: &mut Client) -> Vec<(String, i64, String)> {
    ["trades", "orderbook_deltas", "orderbook_snapshots", "tickers", "market_lifecycle", "sequence_gaps", "markets", "events"]
        .iter()
        .map(|t| {
            let r = prod
                .query_one(
                    &format!(
                        "SELECT count(*), coalesce(sum(('x' || substr(md5(x::text), 1, 15))::bit(60)::bigint), 0)::text \
                         FROM {t} x"
                    ),
                    &[],
                )
                .unwrap();
            ((*t).to_owned(), r.get(0), r.get(1))
        })
        .collect()
}

/// A deduplicator running on its own thread with its HTTP endpoints.
pub struct Running {
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub shared: kalshi_dedup::Shared,
    pub metrics_addr: std::net::SocketAddr,
    pub health_addr: std::net::SocketAddr,
    pub thread: std::thread::JoinHandle<kalshi_dedup::Totals>,
}

pub fn spawn_dedup(cfg: Config) -> Running {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let thread = std::thread::spawn(move || {
        let registry = prometheus::Registry::new();
        let mut d = kalshi_dedup::Deduplicator::new(cfg.clone(), &registry).unwrap();
        let servers = kalshi_dedup::http::serve(&cfg.http, registry, d.shared()).unwrap();
        tx.send((
            d.shared(),
            servers.metrics.local_addr(),
            servers.health.local_addr(),
        ))
        .unwrap();
        d.run(&stop2).unwrap();
        d.totals()
    });
    let (shared, metrics_addr, health_addr) = rx.recv().unwrap();
    Running {
        stop,
        shared,
        metrics_addr,
        health_addr,
        thread,
    }
}

impl Running {
    pub fn health(&self) -> kalshi_dedup::HealthSnapshot {
        self.shared.health.lock().clone()
    }

    /// Wait until the frontier is at or past `ts` and every gatherer is live and in sync.
    pub fn wait_synced(&self, ts: i64, limit: Duration) {
        let start = Instant::now();
        loop {
            let h = self.health();
            if h.frontier_ts.is_some_and(|f| f >= ts)
                && h.gatherers
                    .values()
                    .all(|g| g.state == "live" && Some(g.cursor_ts) == h.frontier_ts)
            {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "timed out waiting for the deduplicator to reach {ts}: {h:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn finish(self) -> kalshi_dedup::Totals {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        self.thread.join().unwrap()
    }
}

/// GET a path; returns (status, body).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path)
}

pub fn http_request(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Start `n` clusters at once (gatherer role) plus production (migrated by the
/// deduplicator itself).
pub fn clusters(n: usize) -> (Vec<PgCluster>, PgCluster) {
    let handles: Vec<_> = (0..n)
        .map(|_| {
            std::thread::spawn(|| {
                let pg = cluster(&MigrateOptions::gatherer());
                allow_dedup_login(&pg);
                pg
            })
        })
        .collect();
    let prod = PgCluster::start(PgOptions::default()).unwrap();
    (
        handles.into_iter().map(|h| h.join().unwrap()).collect(),
        prod,
    )
}
