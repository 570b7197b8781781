//! The snapshot-aware book check ([`BookRule::LatestSnapshot`]).
//!
//! During a WebSocket outage the exchange goes on trading; the deltas it sent while nobody was
//! connected are gone for good (Kalshi has no delta replay), and the gatherer restores each book
//! from the snapshot of its resubscription or `get_snapshot` resync. A database that holds the
//! truth's every delta is therefore not the right expectation after an outage; "the latest
//! stored snapshot plus the stored deltas after it is the exchange's book" is.
//!
//! ## What "after the snapshot" means
//!
//! Three orderings are stored, and only one of them places a snapshot among deltas exactly:
//!
//! * `received_ts` is the capturing gatherer's clock. Two gatherers' clocks differ (skew, and
//!   different network paths), and production keeps, for each delta, the copy of whichever
//!   gatherer the merge took. Comparing a snapshot's `received_ts` with deltas in production
//!   compares two machines' clocks.
//! * `exchange_ts` is the exchange's clock, common to all gatherers, and non-decreasing in
//!   exchange order. But a WebSocket snapshot has no exchange time: its `snapshot_ts` is the
//!   gatherer's receive time. Deltas the exchange sent while the snapshot was in flight have an
//!   `exchange_ts` before the snapshot's `snapshot_ts` and yet come after it, so "deltas with
//!   `exchange_ts > snapshot_ts`" loses them, whatever the clocks.
//! * `seq` is the exchange's order of the frames of one subscription (sid) on one connection:
//!   a snapshot at seq `n` reflects every frame before `n` and none after. It is exact, but
//!   only within that one capture stream, and sids and seqs restart on every connection.
//!
//! So the snapshot is placed in exchange time through its own capture stream, read from its
//! gatherer's local database ([`Captures`]): the frames of the same gatherer and sid, in that
//! gatherer's receive order (its own clock, compared only with itself; ties broken by seq), and
//! only while seq goes on increasing (a lower seq is the next connection). If `b` is the
//! `exchange_ts` of the first delta after the snapshot on that stream, then for the snapshot's
//! market:
//!
//! * a delta with `exchange_ts < b` is before the snapshot: it happened before the snapshot
//!   was taken, or it would have been sent on the stream before `b`;
//! * a delta with `exchange_ts > b` is after it (exchange time is non-decreasing);
//! * at exactly `b`, the copies the stream itself carries after the snapshot are after it, the
//!   others before (several deltas may share one exchange microsecond).
//!
//! That rule is applied to the deltas of the checked database, merged from any gatherers,
//! which are compared on `exchange_ts` only: it holds for production as for a gatherer
//! database. When the stream has no delta after the snapshot (`b` unknown), nothing was sent on
//! that subscription afterwards: the snapshot is the book from then on, and its position is
//! only bounded from below by the last delta before it.
//!
//! Each market's book is rebuilt from the snapshot that is latest in exchange order (largest
//! `b`; a snapshot with no later delta counts as latest when the last delta before it is at or
//! after every other candidate's `b`). A market with no usable WebSocket snapshot is rebuilt by
//! the exact rule (truth prefix plus every stored delta).
//!
//! REST snapshots are not used: Kalshi's REST orderbook has no seq and no exchange time, so
//! its place among the deltas is only known to within the request's round trip. (The gatherer
//! compares each REST snapshot with its own book; a mismatch is a metric.)
//!
//! ## Missing deltas
//!
//! A truth delta the database lacks is allowed only when it is **healed**: some stored
//! snapshot of its market is after it (`exchange_ts < b`, or, for a snapshot with no later
//! delta, before the last delta preceding that snapshot). A delta lost without a resync
//! afterwards, and any stored delta the exchange did not send (or sent fewer times), fail the
//! check.
//!
//! What this cannot see: a frame dropped right after a snapshot on the same stream, before
//! `b`, is placed before the snapshot. If the gatherer resynced after noticing the gap, the
//! later resync snapshot is the latest and nothing changes; otherwise the rebuilt book is wrong
//! and the check fails (it never passes wrongly because of it).

use std::collections::HashMap;

use super::{
    Book, BookRule, DeltaKey, Report, TradeRule, Truth, VerifyError, Window, check_trades,
    multiset_difference, sample,
};

/// One delta of a capture stream.
#[derive(Debug, Clone, Copy)]
struct CaptureRow {
    received_ts: i64,
    seq: i64,
    exchange_ts: i64,
    /// Index into the truth's markets, `None` for a market the truth does not know.
    market: Option<usize>,
    yes: bool,
    price_e6: i64,
    delta_e2: i64,
}

/// The capture streams of one or more gatherer databases: every stored delta with its
/// gatherer, sid, seq and receive time, which place each stored snapshot among the deltas (see
/// the module docs). Load each gatherer's **own** database; production's rows do not keep each
/// gatherer's stream (the merge keeps one copy per delta).
#[derive(Debug, Default)]
pub struct Captures {
    /// `(gatherer_id, sid)` to rows in receive order (`received_ts`, then `seq`).
    streams: HashMap<(i16, i64), Vec<CaptureRow>>,
    gatherers: Vec<i16>,
    rows: usize,
}

/// Where a snapshot is in its capture stream.
#[derive(Debug, Clone, PartialEq)]
enum Anchor {
    /// The first delta after it is at `b`; `tie` are the copies of the snapshot's market at
    /// exactly `b` that the stream carries after the snapshot.
    Before {
        b: i64,
        tie: HashMap<(bool, i64, i64), i64>,
    },
    /// No delta after it on its stream; the last delta before it was at `after` (`i64::MIN`
    /// when none).
    End { after: i64 },
}

impl Anchor {
    /// Position for choosing the latest snapshot: (exchange time, end-of-stream flag).
    fn order(&self) -> (i64, bool) {
        match self {
            Anchor::Before { b, .. } => (*b, false),
            Anchor::End { after } => (*after, true),
        }
    }

    /// How many of the `copies` truth copies of a delta of the snapshot's market are surely
    /// before the snapshot (so that the snapshot restored what they did).
    fn heals(&self, key: &DeltaKey, copies: i64) -> i64 {
        let (ts, yes, price, delta) = *key;
        match self {
            Anchor::Before { b, .. } if ts < *b => copies,
            // At `b` the copies the stream carries after the snapshot are after it.
            Anchor::Before { b, tie } if ts == *b => {
                (copies - tie.get(&(yes, price, delta)).copied().unwrap_or(0)).max(0)
            }
            Anchor::End { after } if ts < *after => copies,
            _ => 0,
        }
    }
}

impl Captures {
    /// No streams.
    pub fn new() -> Captures {
        Captures::default()
    }

    /// Adds every delta row with a sid and seq of a gatherer database (all of its gatherer
    /// ids). `truth` names the markets.
    ///
    /// # Errors
    /// [`VerifyError::Database`] when the query fails.
    pub fn load(
        &mut self,
        client: &mut postgres::Client,
        truth: &Truth,
    ) -> Result<(), VerifyError> {
        let rows = client.query(
            "SELECT gatherer_id, sid, seq, received_ts, exchange_ts, ticker, side, price_e6, \
             delta_e2 FROM orderbook_deltas WHERE sid IS NOT NULL AND seq IS NOT NULL",
            &[],
        )?;
        for row in rows {
            let gatherer: i16 = row.get(0);
            let ticker: String = row.get(5);
            let side: String = row.get(6);
            let r = CaptureRow {
                seq: row.get(2),
                received_ts: row.get(3),
                exchange_ts: row.get(4),
                market: truth.market_index.get(&ticker).copied(),
                yes: side == "yes",
                price_e6: row.get(7),
                delta_e2: row.get(8),
            };
            if !self.gatherers.contains(&gatherer) {
                self.gatherers.push(gatherer);
            }
            self.streams
                .entry((gatherer, row.get(1)))
                .or_default()
                .push(r);
            self.rows += 1;
        }
        for stream in self.streams.values_mut() {
            stream.sort_by_key(|r| (r.received_ts, r.seq));
        }
        Ok(())
    }

    /// Delta rows loaded.
    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// Places a snapshot `(gatherer, sid, seq, received_ts)` of `market` in its stream; `None`
    /// when no capture of that gatherer was loaded.
    fn anchor(
        &self,
        gatherer: i16,
        sid: i64,
        seq: i64,
        received_ts: i64,
        market: usize,
    ) -> Option<Anchor> {
        if !self.gatherers.contains(&gatherer) {
            return None;
        }
        let Some(stream) = self.streams.get(&(gatherer, sid)) else {
            // A subscription that never carried a delta.
            return Some(Anchor::End { after: i64::MIN });
        };
        let i = stream.partition_point(|r| (r.received_ts, r.seq) <= (received_ts, seq));
        // The last delta before it on the same connection (a higher seq is an earlier one).
        let after = i
            .checked_sub(1)
            .map(|j| stream[j])
            .filter(|r| r.seq < seq)
            .map_or(i64::MIN, |r| r.exchange_ts);
        let Some(first) = stream.get(i).filter(|r| r.seq > seq) else {
            return Some(Anchor::End { after });
        };
        let b = first.exchange_ts;
        let mut tie = HashMap::new();
        let mut previous_seq = seq;
        for r in &stream[i..] {
            if r.exchange_ts != b || r.seq <= previous_seq {
                break;
            }
            previous_seq = r.seq;
            if r.market == Some(market) {
                *tie.entry((r.yes, r.price_e6, r.delta_e2)).or_insert(0) += 1;
            }
        }
        Some(Anchor::Before { b, tie })
    }
}

/// A stored WebSocket snapshot, placed.
struct Placed {
    anchor: Anchor,
    book: Book,
}

/// Checks a database against the truth with [`BookRule::LatestSnapshot`]: trades as
/// [`crate::check`] does; deltas inside the window none extra, and every missing one healed by
/// a later snapshot; books from each market's latest WebSocket snapshot plus the later stored
/// deltas. `captures` must hold the capture streams of every gatherer whose snapshots the
/// database holds (for a gatherer database: itself; for production: every gatherer's own
/// database); a snapshot of a gatherer not loaded is not used.
///
/// # Errors
/// [`VerifyError::Database`] when a query fails.
pub fn check_snapshots(
    client: &mut postgres::Client,
    truth: &Truth,
    window: Window,
    rule: TradeRule,
    captures: &Captures,
) -> Result<Report, VerifyError> {
    let mut report = Report {
        book_rule: BookRule::LatestSnapshot,
        ..Report::default()
    };
    check_trades(client, truth, window, rule, &mut report)?;
    let n = truth.markets.len();

    // Every stored WebSocket snapshot, placed in its capture stream.
    let mut placed: Vec<Vec<Placed>> = (0..n).map(|_| Vec::new()).collect();
    let rows = client.query(
        "SELECT ticker, gatherer_id, sid, seq, received_ts, yes_price_e6, yes_count_e2, \
         no_price_e6, no_count_e2 FROM orderbook_snapshots \
         WHERE source = 'ws' AND sid IS NOT NULL AND seq IS NOT NULL",
        &[],
    )?;
    for row in rows {
        let ticker: String = row.get(0);
        let Some(&m) = truth.market_index.get(&ticker) else {
            continue;
        };
        let Some(anchor) = captures.anchor(row.get(1), row.get(2), row.get(3), row.get(4), m)
        else {
            continue;
        };
        let mut book = Book::default();
        for (yes, prices, counts) in [(true, 5, 6), (false, 7, 8)] {
            let prices: Vec<i64> = row.get(prices);
            let counts: Vec<i64> = row.get(counts);
            for (p, c) in prices.into_iter().zip(counts) {
                book.apply(yes, p, c);
            }
        }
        placed[m].push(Placed { anchor, book });
    }
    // The latest per market (see the module docs for the order).
    let latest: Vec<Option<&Placed>> = placed
        .iter()
        .map(|list| list.iter().max_by_key(|p| p.anchor.order()))
        .collect();

    // Stored deltas: the window's multiset, and per market every delta for the rebuild.
    let mut db_window: Vec<HashMap<DeltaKey, i64>> = vec![HashMap::new(); n];
    let mut stored: Vec<Vec<DeltaKey>> = vec![Vec::new(); n];
    let mut unknown_markets: Vec<String> = Vec::new();
    let rows = client.query(
        "SELECT ticker, exchange_ts, side, price_e6, delta_e2 FROM orderbook_deltas",
        &[],
    )?;
    for row in rows {
        let ticker: String = row.get(0);
        let ts: i64 = row.get(1);
        let Some(&m) = truth.market_index.get(&ticker) else {
            if ts >= window.from_ts && ts < window.to_ts && !unknown_markets.contains(&ticker) {
                unknown_markets.push(ticker);
            }
            continue;
        };
        let side: String = row.get(2);
        let key = (ts, side == "yes", row.get(3), row.get(4));
        stored[m].push(key);
        if ts >= window.from_ts && ts < window.to_ts {
            *db_window[m].entry(key).or_insert(0) += 1;
            report.deltas_found += 1;
        }
    }
    for ticker in unknown_markets {
        report.deltas_extra_count += 1;
        sample(
            &mut report.delta_markets_differing,
            &mut report.delta_markets_differing_count,
            ticker,
        );
    }

    // Truth: the window's multiset, and the books before the window (for markets without a
    // snapshot).
    let mut truth_window: Vec<HashMap<DeltaKey, i64>> = vec![HashMap::new(); n];
    let mut prefix: Vec<Book> = vec![Book::default(); n];
    for d in &truth.deltas {
        if d.exchange_ts < window.from_ts {
            prefix[d.market].apply(d.yes, d.price_e6, d.delta_e2);
        } else if d.exchange_ts < window.to_ts {
            *truth_window[d.market]
                .entry((d.exchange_ts, d.yes, d.price_e6, d.delta_e2))
                .or_insert(0) += 1;
            report.deltas_expected += 1;
        }
    }

    for m in 0..n {
        let (missing, extra) = multiset_difference(&truth_window[m], &db_window[m]);
        report.deltas_missing_count += missing;
        report.deltas_extra_count += extra;
        let mut unhealed = 0;
        for (key, &t) in &truth_window[m] {
            let s = db_window[m].get(key).copied().unwrap_or(0);
            // The copies before the latest snapshot that is after them were restored by it.
            let healed = placed[m]
                .iter()
                .map(|p| p.anchor.heals(key, t))
                .max()
                .unwrap_or(0);
            if t - s > healed {
                let copies = usize::try_from(t - s - healed).unwrap_or(0);
                unhealed += copies;
                for _ in 0..copies {
                    sample(
                        &mut report.deltas_unhealed,
                        &mut report.deltas_unhealed_count,
                        format!("{}@{}", truth.markets[m], key.0),
                    );
                }
            }
        }
        if extra > 0 || unhealed > 0 {
            sample(
                &mut report.delta_markets_differing,
                &mut report.delta_markets_differing_count,
                truth.markets[m].clone(),
            );
        }
    }

    // Books.
    let empty = Book::default();
    for (ticker, final_book) in &truth.final_books {
        report.books_checked += 1;
        let rebuilt = match truth.market_index.get(ticker) {
            None => empty.clone(),
            Some(&m) => match latest[m] {
                Some(p) => {
                    report.books_from_snapshot += 1;
                    rebuild(p, &stored[m])
                }
                None => {
                    let mut book = prefix[m].clone();
                    for &(ts, yes, price, delta) in &stored[m] {
                        if ts >= window.from_ts {
                            book.apply(yes, price, delta);
                        }
                    }
                    book
                }
            },
        };
        if &rebuilt != final_book {
            sample(
                &mut report.books_differing,
                &mut report.books_differing_count,
                ticker.clone(),
            );
        }
    }
    Ok(report)
}

/// A placed snapshot's book plus the stored deltas of its market after it.
fn rebuild(p: &Placed, stored: &[DeltaKey]) -> Book {
    let mut book = p.book.clone();
    let Anchor::Before { b, tie } = &p.anchor else {
        return book;
    };
    let mut at_b: HashMap<(bool, i64, i64), i64> = HashMap::new();
    for &(ts, yes, price, delta) in stored {
        if ts > *b {
            book.apply(yes, price, delta);
        } else if ts == *b {
            *at_b.entry((yes, price, delta)).or_insert(0) += 1;
        }
    }
    // At `b` exactly: the copies the stream carries after the snapshot, as far as the database
    // holds them (a copy it lacks is a loss, and shows).
    for (&(yes, price, delta), &after) in tie {
        let held = at_b.get(&(yes, price, delta)).copied().unwrap_or(0);
        for _ in 0..after.min(held) {
            book.apply(yes, price, delta);
        }
    }
    book
}
