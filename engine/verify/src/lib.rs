//! # kalshi-verify: a database against the simulator's truth
//!
//! The simulator (`kalshi-sim`) writes a truth log (every exchange event as canonical record
//! JSON, in exchange order) and the final state of every book. This crate loads both and checks
//! a platform database (a gatherer's local database or production) against them:
//!
//! * **Trades**: every truth trade inside the window is present, with the same ticker, price,
//!   count and time; no trade is present that the exchange never made; and, depending on the
//!   [`TradeRule`], each trade is present exactly once (production), or at most once from the
//!   WebSocket with REST backfill copies allowed (a gatherer database, where dedup by `trade_id`
//!   happens downstream).
//! * **Deltas**: per market, the multiset of `(exchange_ts, side, price, delta)` inside the window
//!   equals the truth's, so a lost delta and a doubled delta are both found, and two real
//!   identical deltas in one microsecond must both be there.
//! * **Books**, by one of two [`BookRule`]s:
//!   * [`BookRule::Exact`] ([`check`]): each market's book, rebuilt from the truth's deltas
//!     before the window plus the database's deltas from the window start on, equals the
//!     exchange's final book, and the delta multiset must be complete. This is the statement "a
//!     consumer replaying our deltas holds the exchange's book"; it only holds for a run without
//!     WebSocket outages, because deltas sent while nobody was connected can never be fetched
//!     from Kalshi again.
//!   * [`BookRule::LatestSnapshot`] ([`check_snapshots`], see the [`snapshot`] module): each
//!     market's latest stored WebSocket snapshot plus the stored deltas after it equals the
//!     exchange's final book; a delta may be missing only if a later snapshot of its market
//!     restored the book (the loss is "healed"), and none may be extra.
//!
//! The window is in exchange time (`exchange_ts`, µs): `from_ts` is when capture is known to be
//! complete (every market subscribed), `to_ts` the end of the checked range. Prices are in the
//! truth log's convention, which is also the storage convention: NO prices in NO-leg terms.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub mod snapshot;

pub use snapshot::{Captures, check_snapshots};

/// Why the truth could not be loaded or the database not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A truth or final-books file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line of a truth or final-books file is not what the simulator writes.
    #[error("{path}:{line}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A query failed.
    #[error("querying the database: {0}")]
    Database(#[from] postgres::Error),
}

/// One side of a book: price (µ$) to resting size (hundredths).
pub type Side = BTreeMap<i64, i64>;

/// A book: YES bids and NO bids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Book {
    /// YES bids.
    pub yes: Side,
    /// NO bids (NO-leg prices).
    pub no: Side,
}

impl Book {
    fn apply(&mut self, yes: bool, price_e6: i64, delta_e2: i64) {
        let side = if yes { &mut self.yes } else { &mut self.no };
        let size = side.entry(price_e6).or_insert(0);
        *size += delta_e2;
        if *size == 0 {
            side.remove(&price_e6);
        }
    }
}

/// A trade as the exchange made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TruthTrade {
    /// Market.
    pub ticker: String,
    /// Exchange time, µs.
    pub exchange_ts: i64,
    /// YES price, µ$.
    pub yes_price_e6: i64,
    /// Count, hundredths.
    pub count_e2: i64,
}

/// Identity of a delta for multiset comparison.
type DeltaKey = (i64, bool, i64, i64);

/// A delta as the exchange applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TruthDelta {
    market: usize,
    exchange_ts: i64,
    yes: bool,
    price_e6: i64,
    delta_e2: i64,
}

/// The simulator's truth: its trades, deltas and final books.
#[derive(Debug, Default)]
pub struct Truth {
    trades: HashMap<String, TruthTrade>,
    deltas: Vec<TruthDelta>,
    markets: Vec<String>,
    market_index: HashMap<String, usize>,
    final_books: BTreeMap<String, Book>,
    last_ts: i64,
}

fn field_i64(record: &Value, name: &str) -> Option<i64> {
    record.get(name).and_then(Value::as_i64)
}

fn field_str<'a>(record: &'a Value, name: &str) -> Option<&'a str> {
    record.get(name).and_then(Value::as_str)
}

impl Truth {
    /// Loads a truth log and a final-books file as `kalshi-sim` writes them.
    ///
    /// # Errors
    /// [`VerifyError::Io`] or [`VerifyError::Format`] naming the file and line.
    pub fn load(truth_log: &Path, final_books: &Path) -> Result<Truth, VerifyError> {
        let mut truth = Truth::default();
        for_each_record(truth_log, |record, bad| truth.add_event(record, bad))?;
        for_each_record(final_books, |record, bad| {
            if field_str(record, "type") != Some("orderbook_snapshot") {
                return Err(bad("a final-books line is not an orderbook_snapshot".into()));
            }
            let ticker = field_str(record, "ticker").ok_or_else(|| bad("no ticker".into()))?;
            let mut book = Book::default();
            for (key, yes) in [("yes", true), ("no", false)] {
                // An empty side is omitted, as on the wire.
                let Some(levels) = record.get(key) else {
                    continue;
                };
                let levels = levels
                    .as_array()
                    .ok_or_else(|| bad(format!("`{key}` is not an array")))?;
                for level in levels {
                    let pair = level.as_array().filter(|p| p.len() == 2);
                    let price = pair.and_then(|p| p[0].as_i64());
                    let size = pair.and_then(|p| p[1].as_i64());
                    match (price, size) {
                        (Some(p), Some(s)) => book.apply(yes, p, s),
                        _ => return Err(bad(format!("bad level in `{key}`"))),
                    }
                }
            }
            truth.final_books.insert(ticker.to_owned(), book);
            Ok(())
        })?;
        Ok(truth)
    }

    fn market(&mut self, ticker: &str) -> usize {
        if let Some(&i) = self.market_index.get(ticker) {
            return i;
        }
        let i = self.markets.len();
        self.markets.push(ticker.to_owned());
        self.market_index.insert(ticker.to_owned(), i);
        i
    }

    fn add_event(
        &mut self,
        record: &Value,
        bad: &dyn Fn(String) -> VerifyError,
    ) -> Result<(), VerifyError> {
        if let Some(ts) = field_i64(record, "exchange_ts") {
            self.last_ts = self.last_ts.max(ts);
        }
        match field_str(record, "type") {
            Some("trade") => {
                let get = |name: &str| {
                    field_i64(record, name).ok_or_else(|| bad(format!("trade without `{name}`")))
                };
                let trade_id = field_str(record, "trade_id")
                    .ok_or_else(|| bad("trade without trade_id".into()))?;
                let ticker = field_str(record, "ticker")
                    .ok_or_else(|| bad("trade without ticker".into()))?;
                let trade = TruthTrade {
                    ticker: ticker.to_owned(),
                    exchange_ts: get("exchange_ts")?,
                    yes_price_e6: get("yes_price_e6")?,
                    count_e2: get("count_e2")?,
                };
                if self.trades.insert(trade_id.to_owned(), trade).is_some() {
                    return Err(bad(format!(
                        "trade id {trade_id} appears twice in the truth log"
                    )));
                }
            }
            Some("orderbook_delta") => {
                let get = |name: &str| {
                    field_i64(record, name).ok_or_else(|| bad(format!("delta without `{name}`")))
                };
                let ticker = field_str(record, "ticker")
                    .ok_or_else(|| bad("delta without ticker".into()))?;
                let yes = match field_str(record, "side") {
                    Some("yes") => true,
                    Some("no") => false,
                    _ => return Err(bad("delta side is not yes/no".into())),
                };
                let delta = TruthDelta {
                    market: self.market(ticker),
                    exchange_ts: get("exchange_ts")?,
                    yes,
                    price_e6: get("price_e6")?,
                    delta_e2: get("delta_e2")?,
                };
                self.deltas.push(delta);
            }
            _ => {}
        }
        Ok(())
    }

    /// Number of trades in the truth log.
    pub fn trade_count(&self) -> usize {
        self.trades.len()
    }

    /// Number of deltas in the truth log.
    pub fn delta_count(&self) -> usize {
        self.deltas.len()
    }

    /// Number of markets with a final book.
    pub fn market_count(&self) -> usize {
        self.final_books.len()
    }

    /// The latest exchange time in the truth log.
    pub fn last_exchange_ts(&self) -> i64 {
        self.last_ts
    }

    /// The final books.
    pub fn final_books(&self) -> &BTreeMap<String, Book> {
        &self.final_books
    }
}

/// Calls `f` with the `record` of every line of a truth-format file.
fn for_each_record(
    path: &Path,
    mut f: impl FnMut(&Value, &dyn Fn(String) -> VerifyError) -> Result<(), VerifyError>,
) -> Result<(), VerifyError> {
    let text = std::fs::read_to_string(path).map_err(|source| VerifyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |message: String| VerifyError::Format {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let record = value
            .get("record")
            .ok_or_else(|| bad("no `record` field".into()))?;
        f(record, &bad)?;
    }
    Ok(())
}

/// How many copies of a trade a database may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TradeRule {
    /// Exactly one row per trade (production).
    ExactlyOnce,
    /// At most one WebSocket row per trade, and at least one row from any source (a gatherer
    /// database, where REST backfill may repeat a trade the WebSocket also delivered).
    OnceFromWebSocket,
}

/// How [`Report`]'s books were checked (see the crate docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BookRule {
    /// Truth prefix plus every stored delta; the delta multiset must be complete.
    #[default]
    Exact,
    /// Latest stored WebSocket snapshot plus the stored deltas after it; missing deltas must be
    /// healed by a later snapshot.
    LatestSnapshot,
}

/// The exchange-time range checked, `[from_ts, to_ts)` in µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Start: capture is complete from here on.
    pub from_ts: i64,
    /// End (exclusive).
    pub to_ts: i64,
}

/// The outcome of a check. [`Report::passed`] says whether everything matched.
#[derive(Debug, Default, Clone)]
pub struct Report {
    /// Truth trades inside the window.
    pub trades_expected: usize,
    /// Distinct truth trades found in the database.
    pub trades_found: usize,
    /// Trade ids in the truth but not in the database (first 20).
    pub trades_missing: Vec<String>,
    /// Number of missing trades.
    pub trades_missing_count: usize,
    /// Trade ids present more often than the rule allows, with their row count (first 20).
    pub trades_duplicated: Vec<(String, i64)>,
    /// Number of over-represented trades.
    pub trades_duplicated_count: usize,
    /// Trade ids in the database that the exchange never made, or whose content differs
    /// (first 20).
    pub trades_wrong: Vec<String>,
    /// Number of such rows.
    pub trades_wrong_count: usize,
    /// Truth deltas inside the window.
    pub deltas_expected: usize,
    /// Database deltas inside the window.
    pub deltas_found: usize,
    /// Markets whose delta multiset differs from the truth (first 20).
    pub delta_markets_differing: Vec<String>,
    /// Number of such markets.
    pub delta_markets_differing_count: usize,
    /// Truth deltas inside the window the database lacks (copies). Under
    /// [`BookRule::LatestSnapshot`] they are allowed when healed.
    pub deltas_missing_count: usize,
    /// Stored deltas inside the window beyond the truth's multiplicity, or unknown to it.
    pub deltas_extra_count: usize,
    /// Missing deltas no later snapshot of their market restored, as `ticker@exchange_ts`
    /// (first 20; [`BookRule::LatestSnapshot`] only).
    pub deltas_unhealed: Vec<String>,
    /// Number of unhealed missing deltas.
    pub deltas_unhealed_count: usize,
    /// How the books were checked.
    pub book_rule: BookRule,
    /// Markets whose books were compared.
    pub books_checked: usize,
    /// Of those, the markets rebuilt from a stored snapshot ([`BookRule::LatestSnapshot`]; the
    /// others had no snapshot and were rebuilt from the truth prefix).
    pub books_from_snapshot: usize,
    /// Markets whose rebuilt book differs from the final book (first 20).
    pub books_differing: Vec<String>,
    /// Number of such markets.
    pub books_differing_count: usize,
}

const SAMPLE: usize = 20;

fn sample<T>(list: &mut Vec<T>, count: &mut usize, item: T) {
    *count += 1;
    if list.len() < SAMPLE {
        list.push(item);
    }
}

impl Report {
    /// `true` when nothing is missing, doubled, wrong or different.
    pub fn passed(&self) -> bool {
        self.trades_missing_count == 0
            && self.trades_duplicated_count == 0
            && self.trades_wrong_count == 0
            && self.delta_markets_differing_count == 0
            && self.books_differing_count == 0
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        writeln!(f, "{verdict}")?;
        writeln!(
            f,
            "  trades: {} expected, {} found, {} missing, {} duplicated, {} wrong",
            self.trades_expected,
            self.trades_found,
            self.trades_missing_count,
            self.trades_duplicated_count,
            self.trades_wrong_count
        )?;
        writeln!(
            f,
            "  deltas: {} expected, {} found, {} missing ({} not healed by a later snapshot), \
             {} extra, {} markets differ",
            self.deltas_expected,
            self.deltas_found,
            self.deltas_missing_count,
            self.deltas_unhealed_count,
            self.deltas_extra_count,
            self.delta_markets_differing_count
        )?;
        match self.book_rule {
            BookRule::Exact => write!(
                f,
                "  books:  {} checked (truth prefix + every stored delta), {} differ from the \
                 exchange's final books",
                self.books_checked, self.books_differing_count
            )?,
            BookRule::LatestSnapshot => write!(
                f,
                "  books:  {} checked ({} from their latest snapshot + later deltas), {} differ \
                 from the exchange's final books",
                self.books_checked, self.books_from_snapshot, self.books_differing_count
            )?,
        }
        if !self.deltas_unhealed.is_empty() {
            write!(
                f,
                "\n  unhealed missing deltas (sample): {:?}",
                self.deltas_unhealed
            )?;
        }
        if !self.trades_missing.is_empty() {
            write!(f, "\n  missing trades (sample): {:?}", self.trades_missing)?;
        }
        if !self.trades_duplicated.is_empty() {
            write!(
                f,
                "\n  duplicated trades (sample): {:?}",
                self.trades_duplicated
            )?;
        }
        if !self.trades_wrong.is_empty() {
            write!(f, "\n  wrong trades (sample): {:?}", self.trades_wrong)?;
        }
        if !self.delta_markets_differing.is_empty() {
            write!(
                f,
                "\n  delta mismatch in (sample): {:?}",
                self.delta_markets_differing
            )?;
        }
        if !self.books_differing.is_empty() {
            write!(
                f,
                "\n  book mismatch in (sample): {:?}",
                self.books_differing
            )?;
        }
        Ok(())
    }
}

/// Checks a database (gatherer-local or production schema; both have the columns read here)
/// against the truth. See the crate docs for what is checked.
///
/// # Errors
/// [`VerifyError::Database`] when a query fails.
pub fn check(
    client: &mut postgres::Client,
    truth: &Truth,
    window: Window,
    rule: TradeRule,
) -> Result<Report, VerifyError> {
    let mut report = Report::default();
    check_trades(client, truth, window, rule, &mut report)?;
    check_deltas_and_books(client, truth, window, &mut report)?;
    Ok(report)
}

/// A stored trade matches the exchange's: same market, price and count, and the same time at
/// the wire's precision. Kalshi's trade frames carry `ts_ms` (and REST `created_time`), so the
/// exchange's microseconds may be stored truncated to the millisecond.
fn same_trade(truth: &TruthTrade, stored: &TruthTrade) -> bool {
    truth.ticker == stored.ticker
        && truth.yes_price_e6 == stored.yes_price_e6
        && truth.count_e2 == stored.count_e2
        && (stored.exchange_ts == truth.exchange_ts
            || stored.exchange_ts == truth.exchange_ts.div_euclid(1000) * 1000)
}

fn check_trades(
    client: &mut postgres::Client,
    truth: &Truth,
    window: Window,
    rule: TradeRule,
    report: &mut Report,
) -> Result<(), VerifyError> {
    // (all rows, WebSocket rows) per trade id.
    let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
    let rows = client.query(
        "SELECT trade_id, ticker, exchange_ts, yes_price_e6, count_e2, source FROM trades \
         WHERE exchange_ts >= $1 AND exchange_ts < $2",
        // Stored trade times may be truncated to the millisecond (see `same_trade`).
        &[
            &window.from_ts.div_euclid(1000).saturating_mul(1000),
            &window.to_ts,
        ],
    )?;
    for row in rows {
        let trade_id: String = row.get(0);
        let stored = TruthTrade {
            ticker: row.get(1),
            exchange_ts: row.get(2),
            yes_price_e6: row.get(3),
            count_e2: row.get(4),
        };
        let source: String = row.get(5);
        match truth.trades.get(&trade_id) {
            Some(t) if same_trade(t, &stored) => {}
            _ => {
                sample(
                    &mut report.trades_wrong,
                    &mut report.trades_wrong_count,
                    trade_id.clone(),
                );
                continue;
            }
        }
        let entry = seen.entry(trade_id).or_insert((0, 0));
        entry.0 += 1;
        if source == "ws" {
            entry.1 += 1;
        }
    }
    let mut expected: Vec<(&String, &TruthTrade)> = truth
        .trades
        .iter()
        .filter(|(_, t)| t.exchange_ts >= window.from_ts && t.exchange_ts < window.to_ts)
        .collect();
    expected.sort_by_key(|(_, t)| t.exchange_ts);
    report.trades_expected = expected.len();
    for (id, _) in expected {
        match seen.get(id) {
            None => sample(
                &mut report.trades_missing,
                &mut report.trades_missing_count,
                id.clone(),
            ),
            Some(&(all, ws)) => {
                report.trades_found += 1;
                let too_many = match rule {
                    TradeRule::ExactlyOnce => all > 1,
                    TradeRule::OnceFromWebSocket => ws > 1,
                };
                if too_many {
                    sample(
                        &mut report.trades_duplicated,
                        &mut report.trades_duplicated_count,
                        (id.clone(), all),
                    );
                }
            }
        }
    }
    Ok(())
}

fn check_deltas_and_books(
    client: &mut postgres::Client,
    truth: &Truth,
    window: Window,
    report: &mut Report,
) -> Result<(), VerifyError> {
    let n = truth.markets.len();
    // Books as of the window start, from the truth's deltas.
    let mut books: Vec<Book> = vec![Book::default(); n];
    let mut truth_window: Vec<HashMap<DeltaKey, i64>> = vec![HashMap::new(); n];
    for d in &truth.deltas {
        if d.exchange_ts < window.from_ts {
            books[d.market].apply(d.yes, d.price_e6, d.delta_e2);
        } else if d.exchange_ts < window.to_ts {
            *truth_window[d.market]
                .entry((d.exchange_ts, d.yes, d.price_e6, d.delta_e2))
                .or_insert(0) += 1;
            report.deltas_expected += 1;
        }
    }
    let mut db_window: Vec<HashMap<DeltaKey, i64>> = vec![HashMap::new(); n];
    let mut unknown_markets: BTreeMap<String, ()> = BTreeMap::new();
    let rows = client.query(
        "SELECT ticker, exchange_ts, side, price_e6, delta_e2 FROM orderbook_deltas \
         WHERE exchange_ts >= $1 ORDER BY exchange_ts",
        &[&window.from_ts],
    )?;
    for row in rows {
        let ticker: String = row.get(0);
        let Some(&m) = truth.market_index.get(&ticker) else {
            unknown_markets.insert(ticker, ());
            continue;
        };
        let ts: i64 = row.get(1);
        let side: String = row.get(2);
        let yes = side == "yes";
        let price: i64 = row.get(3);
        let delta: i64 = row.get(4);
        books[m].apply(yes, price, delta);
        if ts < window.to_ts {
            *db_window[m].entry((ts, yes, price, delta)).or_insert(0) += 1;
            report.deltas_found += 1;
        }
    }
    for ticker in unknown_markets.into_keys() {
        sample(
            &mut report.delta_markets_differing,
            &mut report.delta_markets_differing_count,
            ticker,
        );
    }
    for m in 0..n {
        let (missing, extra) = multiset_difference(&truth_window[m], &db_window[m]);
        report.deltas_missing_count += missing;
        report.deltas_extra_count += extra;
        if truth_window[m] != db_window[m] {
            sample(
                &mut report.delta_markets_differing,
                &mut report.delta_markets_differing_count,
                truth.markets[m].clone(),
            );
        }
    }
    // Markets that never had a delta have an empty final book; compare every final book.
    let empty = Book::default();
    for (ticker, final_book) in &truth.final_books {
        report.books_checked += 1;
        let rebuilt = truth
            .market_index
            .get(ticker)
            .map_or(&empty, |&m| &books[m]);
        if rebuilt != final_book {
            sample(
                &mut report.books_differing,
                &mut report.books_differing_count,
                ticker.clone(),
            );
        }
    }
    Ok(())
}

/// (copies in `truth` but not in `stored`, copies in `stored` beyond `truth`).
fn multiset_difference(
    truth: &HashMap<DeltaKey, i64>,
    stored: &HashMap<DeltaKey, i64>,
) -> (usize, usize) {
    let mut missing = 0;
    let mut extra = 0;
    for (key, &t) in truth {
        let s = stored.get(key).copied().unwrap_or(0);
        missing += usize::try_from(t - s).unwrap_or(0);
    }
    for (key, &s) in stored {
        let t = truth.get(key).copied().unwrap_or(0);
        extra += usize::try_from(s - t).unwrap_or(0);
    }
    (missing, extra)
}
