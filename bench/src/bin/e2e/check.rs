//! The zero-loss check: what the collector stored against the generator's summary.
//!
//! * Per market: the number of stored `orderbook_deltas`, `trades` and `tickers` rows equals
//!   the generator's count (the collectors subscribe every market in one command before the
//!   first event, so they must have every event; a duplicate counts as a failure too).
//! * Per market: exactly one WebSocket snapshot, and the book rebuilt from it plus the sum of
//!   the stored deltas per (side, price) equals the generator's final book. This checks the
//!   stored prices, sides and sizes (the units), not only the counts.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use anyhow::Result;
use postgres::Client;

use crate::sim::Summary;

/// Markets per connection (one subscribe command each) in the baseline collectors: the
/// simulator, like Kalshi, refuses WebSocket messages over 1 MiB (~30,000 tickers), and it
/// merges repeat subscribes in time quadratic in the markets (20,000 into 20,000 took ~10 s).
/// Up to this many markets the baselines subscribe everything before the first event.
pub(crate) const SUBSCRIBE_CHUNK: usize = 10_000;

/// Empties the tables a collector writes.
pub(crate) fn reset(db: &mut Client) -> Result<()> {
    db.batch_execute(
        "TRUNCATE orderbook_deltas, trades, tickers, orderbook_snapshots; CHECKPOINT;",
    )?;
    Ok(())
}

/// Stored (deltas, trades, tickers).
pub(crate) fn totals(db: &mut Client) -> Result<(u64, u64, u64)> {
    let row = db.query_one(
        "SELECT (SELECT count(*) FROM orderbook_deltas), \
                (SELECT count(*) FROM trades WHERE source = 'ws'), (SELECT count(*) FROM tickers)",
        &[],
    )?;
    Ok((
        row.get::<_, i64>(0) as u64,
        row.get::<_, i64>(1) as u64,
        row.get::<_, i64>(2) as u64,
    ))
}

/// Waits until the stored totals reach the summary's (or stop moving for `stall`); returns
/// whether they were reached and when.
pub(crate) fn wait_drained(
    db: &mut Client,
    summary: &Summary,
    stall: Duration,
) -> Result<(bool, Instant)> {
    let want = (
        summary.deltas,
        summary.trades - u64::from(summary.pending_trade),
        summary.tickers,
    );
    let mut last = (u64::MAX, 0, 0);
    let mut moved = Instant::now();
    loop {
        let now = totals(db)?;
        if now == want {
            return Ok((true, Instant::now()));
        }
        if now.0 > want.0 || now.1 > want.1 || now.2 > want.2 {
            return Ok((false, Instant::now()));
        }
        if now != last {
            last = now;
            moved = Instant::now();
        } else if moved.elapsed() > stall {
            return Ok((false, moved));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn per_market(db: &mut Client, table: &str) -> Result<HashMap<String, u64>> {
    // Trades a collector backfilled over REST are extra observations, not part of the stream.
    let filter = if table == "trades" {
        "WHERE source = 'ws'"
    } else {
        ""
    };
    Ok(db
        .query(
            &format!("SELECT ticker, count(*) FROM {table} {filter} GROUP BY ticker"),
            &[],
        )?
        .into_iter()
        .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64))
        .collect())
}

/// Expected per-market (deltas, trades, tickers) for a collector that subscribed each market
/// and channel at its own, unknown moment (several connections or commands: the generator
/// starts with the first subscription, and events of a market or channel not yet subscribed
/// are never sent): per market and channel, the events at or after the first one stored —
/// deltas and tickers by their µs exchange time, trades by trade id (the first stored trade is
/// the one with the lowest seq) — found by regenerating the load stream (`LoadGen` with the
/// simulator's configuration) up to the summary's event count. Exact for every event after the
/// first stored one of its channel; a lost first delta still fails the book check, so only a
/// trade or ticker lost before the first stored one of its market could go unseen.
pub(crate) fn expected_after_first(
    db: &mut Client,
    config: kalshi_sim_core::load::LoadConfig,
    events: u64,
) -> Result<HashMap<String, [u64; 3]>> {
    let mut load = kalshi_sim_core::load::LoadGen::new(config)
        .map_err(|e| anyhow::anyhow!("regenerating the load: {e}"))?;
    let markets = load.market_count();
    // First stored delta and ticker time per market.
    let mut first = vec![[i64::MAX; 3]; markets];
    for (k, table) in [(0, "orderbook_deltas"), (2, "tickers")] {
        for row in db.query(
            &format!("SELECT ticker, min(exchange_ts) FROM {table} GROUP BY ticker"),
            &[],
        )? {
            if let Some(i) = load.market_index(&row.get::<_, String>(0)) {
                first[i][k] = row.get(1);
            }
        }
    }
    // First stored trade per market, by trade id.
    let mut first_trade: Vec<Option<String>> = vec![None; markets];
    for row in db.query(
        "SELECT DISTINCT ON (ticker) ticker, trade_id FROM trades WHERE source = 'ws' \
         ORDER BY ticker, seq",
        &[],
    )? {
        if let Some(i) = load.market_index(&row.get::<_, String>(0)) {
            first_trade[i] = Some(row.get(1));
        }
    }
    let mut trades_started = vec![false; markets];
    let mut counts = vec![[0_u64; 3]; markets];
    for _ in 0..events {
        let e = load.next_event();
        let m = e.market as usize;
        match e.kind {
            kalshi_sim_core::load::LoadEventKind::Delta { .. } => {
                if e.exchange_ts >= first[m][0] {
                    counts[m][0] += 1;
                }
            }
            kalshi_sim_core::load::LoadEventKind::Ticker(_) => {
                if e.exchange_ts >= first[m][2] {
                    counts[m][2] += 1;
                }
            }
            kalshi_sim_core::load::LoadEventKind::Trade { trade_no, .. } => {
                if !trades_started[m]
                    && first_trade[m].as_deref() == Some(load.trade_id(trade_no).as_str())
                {
                    trades_started[m] = true;
                }
                if trades_started[m] {
                    counts[m][1] += 1;
                }
            }
        }
    }
    Ok(counts
        .into_iter()
        .enumerate()
        .filter_map(|(i, c)| Some((load.ticker(i)?.to_owned(), c)))
        .collect())
}

/// The full check; `Ok(None)` means zero loss, `Ok(Some(why))` names the first problems.
///
/// `expected` (from [`expected_after_first`]) replaces the summary's per-market counts for
/// collectors that did not subscribe every market before the first event; the totals are
/// then only checked not to exceed the generator's, and the book check stays exact (the
/// subscribe snapshot includes every earlier event).
pub(crate) fn verify(
    db: &mut Client,
    summary: &Summary,
    expected: Option<&HashMap<String, [u64; 3]>>,
) -> Result<Option<String>> {
    let exact_counts = expected.is_none();
    let mut problems = Vec::new();
    let (deltas, trades, tickers) = totals(db)?;
    let pending = u64::from(summary.pending_trade);
    for (what, got, want) in [
        ("deltas", deltas, summary.deltas),
        ("trades", trades, summary.trades - pending),
        ("tickers", tickers, summary.tickers),
    ] {
        if got > want || (exact_counts && got != want) {
            problems.push(format!("{what}: stored {got}, generated {want}"));
        }
    }
    let counts = [
        ("orderbook_deltas", per_market(db, "orderbook_deltas")?),
        ("trades", per_market(db, "trades")?),
        ("tickers", per_market(db, "tickers")?),
    ];
    let mut bad_markets = 0;
    // The one market whose last trade is pending (see Summary::pending_trade) may be one short.
    let mut pending_left = summary.pending_trade;
    for (ticker, truth) in &summary.markets {
        let (want, pending_possible) = match expected {
            Some(e) => (e.get(ticker).copied().unwrap_or_default(), false),
            None => ([truth.deltas, truth.trades, truth.tickers], true),
        };
        for (k, ((table, stored), want)) in counts.iter().zip(want).enumerate() {
            let got = stored.get(ticker).copied().unwrap_or(0);
            if k == 1 && pending_possible && pending_left && got + 1 == want {
                pending_left = false;
                continue;
            }
            if got != want {
                bad_markets += 1;
                if problems.len() < 8 {
                    problems.push(format!("{ticker}: {got} {table} rows, generated {want}"));
                }
            }
        }
    }
    for (table, stored) in &counts {
        let strays = stored
            .keys()
            .filter(|t| !summary.markets.contains_key(*t))
            .count();
        if strays > 0 {
            problems.push(format!(
                "{table}: {strays} tickers the generator does not know"
            ));
        }
    }

    // Books: snapshot + Σ deltas per (side, price) = final book.
    type Book = [BTreeMap<i64, i64>; 2];
    let mut books: HashMap<String, Book> = HashMap::new();
    let mut snapshots: HashMap<String, u32> = HashMap::new();
    for row in db.query(
        "SELECT ticker, yes_price_e6, yes_count_e2, no_price_e6, no_count_e2 \
         FROM orderbook_snapshots WHERE source = 'ws'",
        &[],
    )? {
        let ticker: String = row.get(0);
        *snapshots.entry(ticker.clone()).or_default() += 1;
        let book = books.entry(ticker).or_default();
        for (side, (p, c)) in [(0, (1, 2)), (1, (3, 4))] {
            let prices: Vec<i64> = row.get(p);
            let sizes: Vec<i64> = row.get(c);
            for (price, size) in prices.into_iter().zip(sizes) {
                *book[side].entry(price).or_default() += size;
            }
        }
    }
    for row in db.query(
        "SELECT ticker, side, price_e6, sum(delta_e2)::bigint FROM orderbook_deltas \
         GROUP BY 1, 2, 3",
        &[],
    )? {
        let ticker: String = row.get(0);
        let side: String = row.get(1);
        let side = usize::from(side == "no");
        *books.entry(ticker).or_default()[side]
            .entry(row.get(2))
            .or_default() += row.get::<_, i64>(3);
    }
    let mut bad_books = 0;
    for (ticker, truth) in &summary.markets {
        let n = snapshots.get(ticker).copied().unwrap_or(0);
        if n != 1 {
            bad_books += 1;
            if problems.len() < 12 {
                problems.push(format!("{ticker}: {n} WebSocket snapshots, expected 1"));
            }
            continue;
        }
        let Some(book) = books.get(ticker) else {
            continue;
        };
        let side = |s: usize| -> Vec<(i64, i64)> {
            book[s]
                .iter()
                .filter(|(_, size)| **size != 0)
                .map(|(p, s)| (*p, *s))
                .collect()
        };
        if side(0) != truth.yes || side(1) != truth.no {
            bad_books += 1;
            if problems.len() < 12 {
                problems.push(format!(
                    "{ticker}: rebuilt book differs from the final book (yes {:?} vs {:?})",
                    side(0),
                    truth.yes
                ));
            }
        }
    }
    if bad_markets > 0 || bad_books > 0 {
        problems.push(format!(
            "{bad_markets} market/table counts and {bad_books} books wrong of {} markets",
            summary.markets.len()
        ));
    }
    Ok((!problems.is_empty()).then(|| problems.join("; ")))
}
