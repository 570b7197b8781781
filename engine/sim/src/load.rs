//! Load mode: a cheap, deterministic generator of current-format market-data frames at a
//! target rate across M markets, for benchmarks that must push ≥ 500k msgs/s through one
//! server thread.
//!
//! ## Pieces
//! * [`LoadGen`]: the universe. `M` markets with small fixed-grid books, and a seeded stream of
//!   events ([`LoadGen::next_event`]): book deltas, trades (each a negative delta on the hit
//!   level followed by the trade print), and ticker updates, in the proportions of
//!   [`LoadMix`]. The stream depends only on the [`LoadConfig`] (seed included): it does not
//!   depend on wall time, subscriptions or pacing, so the whole truth can be regenerated from
//!   the config and the number of events generated.
//! * [`LoadRoute`]: one connection's routing, built from its [`Session`]'s subscriptions
//!   (which the server keeps using for commands, via [`Session::handle_command_on`] with the
//!   `LoadGen` as [`MarketSource`], so subscribe/`ok`/snapshots/errors behave exactly as in
//!   normal mode). [`LoadRoute::render`] turns an event into that connection's frame bytes
//!   with the sid's next seq, in one pass, without allocating.
//! * [`Pacer`]: how many events are due at `now_us` for a target rate.
//!
//! ## How a server drives it
//! ```text
//! let mut load = LoadGen::new(config)?;           // shared by all connections
//! per connection: Session + LoadRoute + a frame buffer
//! commands:  session.handle_command_on(now, text, &load)  → send the returned frames
//! loop:      for _ in 0..pacer.take_due(now, batch) {
//!                let event = load.next_event();
//!                for conn in conns {
//!                    buf.clear();
//!                    if let Some(r) = conn.route.render(&load, &event, &mut conn.session, &mut buf) {
//!                        send(buf) (twice when r.duplicate)
//!                    }
//!                }
//!            }
//! ```
//! Start pacing only once the clients are subscribed: events generated before a market is
//! subscribed still change its book (the subscribe snapshot reflects them) but are not sent.
//!
//! ## Model facts (the invariants a checker can rely on)
//! * Each market has `levels_per_side` price levels per side on its structure's grid; every
//!   YES price is below the market's mid and every NO price (NO leg) below `1 − mid`, so the
//!   book can never cross. Sizes are hundredths of a contract, often fractional.
//! * A delta never takes a level below zero; a removal of the whole level removes it (size 0
//!   is "no level", as on the wire).
//! * A trade by a YES taker lifts the best NO level (YES price `1 − p`), a NO taker hits the
//!   best YES level; the negative delta comes first with the same timestamp; `count` ≤ the
//!   level size; `yes_price + no_price = 1`.
//! * A ticker reports the book's top as `protocol.md` §4 derives it, with volume and open
//!   interest tallied from the trades.
//! * Event `i` (0-based) has virtual exchange time `start_us + i × 1e6 / rate_per_sec` (the two
//!   events of a trade share the delta's time). Trade ids are UUID-shaped, derived from the
//!   seed and the trade's number.
//!
//! ## Checking zero loss
//! [`LoadGen::summary`] gives, per market: deltas applied (the market's exchange sequence),
//! trades, tickers, a [`TruthDigest`] over every delta and trade in order, and the final book.
//! A checker that recorded a connection's frames can (a) rebuild each book from the subscribe
//! snapshot plus deltas and compare with the final book, (b) compare counts and digests when it
//! subscribed before the first event, and (c) for a full comparison regenerate every event
//! with a fresh `LoadGen::new(same config)` and [`LoadGen::write_truth_line`].

use std::collections::HashMap;
use std::fmt;

use kalshi_wire::{
    Aux, BookSide, Decoded, Delta, Header, Level, MarketId, Record, Side, Snapshot, Ticker,
    TickerUpdate, Trade, TradeId, render_frame, write_canonical,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::TopOfBook;
use crate::exchange::TickerState;
use crate::price::{ONE_DOLLAR_E6, PriceLevelStructure};
use crate::session::{Channel, FrameKind, MarketSource, Session};

/// Most markets a load universe may have.
pub const MAX_LOAD_MARKETS: usize = 1_000_000;
/// Most price levels per side.
pub const MAX_LEVELS_PER_SIDE: usize = 16;

/// Relative weights of the three actions. A trade action produces two events (the delta on
/// the hit level, then the trade), the others one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadMix {
    /// Weight of plain book deltas (add or cancel).
    pub deltas: u32,
    /// Weight of trades.
    pub trades: u32,
    /// Weight of ticker updates.
    pub tickers: u32,
}

impl Default for LoadMix {
    fn default() -> Self {
        Self {
            deltas: 85,
            trades: 5,
            tickers: 10,
        }
    }
}

/// Load mode configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadConfig {
    /// Seed of the event stream.
    pub seed: u64,
    /// Number of markets (1 ..= [`MAX_LOAD_MARKETS`]).
    pub markets: usize,
    /// Target events per second; sets the virtual timestamps and the [`Pacer`] rate.
    pub rate_per_sec: u64,
    /// Action weights.
    pub mix: LoadMix,
    /// Virtual exchange time of event 0, µs since the epoch.
    pub start_us: i64,
    /// Price levels per side (1 ..= [`MAX_LEVELS_PER_SIDE`]).
    pub levels_per_side: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            markets: 1000,
            rate_per_sec: 500_000,
            mix: LoadMix::default(),
            start_us: 1_796_000_000_000_000,
            levels_per_side: 10,
        }
    }
}

/// Why a [`LoadConfig`] was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// `markets` is 0 or above [`MAX_LOAD_MARKETS`].
    Markets(usize),
    /// `levels_per_side` is 0 or above [`MAX_LEVELS_PER_SIDE`].
    Levels(usize),
    /// `rate_per_sec` is 0.
    ZeroRate,
    /// Every mix weight is 0.
    EmptyMix,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Markets(n) => write!(
                f,
                "load markets must be between 1 and {MAX_LOAD_MARKETS}, got {n}"
            ),
            LoadError::Levels(n) => write!(
                f,
                "load levels_per_side must be between 1 and {MAX_LEVELS_PER_SIDE}, got {n}"
            ),
            LoadError::ZeroRate => f.write_str("load rate_per_sec must be above 0"),
            LoadError::EmptyMix => f.write_str("load mix weights are all 0"),
        }
    }
}

impl std::error::Error for LoadError {}

/// What one load event is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadEventKind {
    /// A signed change to a level (NO prices in NO-leg price).
    Delta {
        /// Side.
        side: Side,
        /// Level price.
        price_e6: i64,
        /// Signed change.
        delta_e2: i64,
    },
    /// A trade print (follows its negative delta).
    Trade {
        /// The trade's number in the universe (0-based); the trade id derives from it.
        trade_no: u64,
        /// YES price.
        yes_price_e6: i64,
        /// Contracts.
        count_e2: i64,
        /// Taker outcome side.
        taker: Side,
    },
    /// A ticker update with the market's current values.
    Ticker(TickerState),
}

/// One load event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadEvent {
    /// The event's number in the universe (0-based).
    pub index: u64,
    /// Virtual exchange time, µs.
    pub exchange_ts: i64,
    /// Market index.
    pub market: u32,
    /// The market's exchange sequence after this event (deltas applied so far).
    pub market_seq: u64,
    /// What happened.
    pub kind: LoadEventKind,
}

/// An order-sensitive 64-bit digest (FNV-1a) of a market's deltas and trades, so a checker
/// can compare what it received with the generator's truth without storing every event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TruthDigest(pub u64);

impl Default for TruthDigest {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl TruthDigest {
    fn eat(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Adds a delta (NO price in NO-leg price).
    pub fn add_delta(&mut self, side: Side, price_e6: i64, delta_e2: i64) {
        self.eat(&[b'd', side_byte(side)]);
        self.eat(&price_e6.to_le_bytes());
        self.eat(&delta_e2.to_le_bytes());
    }

    /// Adds a trade.
    pub fn add_trade(&mut self, trade_id: &str, yes_price_e6: i64, count_e2: i64, taker: Side) {
        self.eat(&[b't', side_byte(taker)]);
        self.eat(trade_id.as_bytes());
        self.eat(&yes_price_e6.to_le_bytes());
        self.eat(&count_e2.to_le_bytes());
    }
}

const fn side_byte(side: Side) -> u8 {
    match side {
        Side::Yes => b'y',
        Side::No => b'n',
    }
}

#[derive(Clone, Debug)]
struct LoadMarket {
    ticker: Ticker,
    market_id: MarketId,
    structure: PriceLevelStructure,
    /// Level prices per side (0 = YES, 1 = NO in NO-leg price), ascending.
    prices: [Vec<i64>; 2],
    /// Level sizes, parallel to `prices`; 0 = no level.
    sizes: [Vec<i64>; 2],
    volume_e2: i64,
    open_interest_e2: i64,
    dollar_volume_e6: i64,
    last_price_e6: i64,
    last_trade_size_e2: i64,
    market_seq: u64,
    trades: u64,
    tickers: u64,
    digest: TruthDigest,
}

impl LoadMarket {
    fn best(&self, side: usize) -> Option<(usize, i64, i64)> {
        (0..self.sizes[side].len())
            .rev()
            .find(|j| self.sizes[side][*j] > 0)
            .map(|j| (j, self.prices[side][j], self.sizes[side][j]))
    }

    fn ticker_state(&self) -> TickerState {
        let (yes_bid_e6, yes_bid_size_e2) = self.best(0).map_or((0, 0), |(_, p, s)| (p, s));
        let (yes_ask_e6, yes_ask_size_e2) = self
            .best(1)
            .map_or((ONE_DOLLAR_E6, 0), |(_, p, s)| (ONE_DOLLAR_E6 - p, s));
        TickerState {
            price_e6: self.last_price_e6,
            yes_bid_e6,
            yes_ask_e6,
            yes_bid_size_e2,
            yes_ask_size_e2,
            last_trade_size_e2: self.last_trade_size_e2,
            volume_e2: self.volume_e2,
            open_interest_e2: self.open_interest_e2,
            dollar_volume_e6: self.dollar_volume_e6 / ONE_DOLLAR_E6 * ONE_DOLLAR_E6,
            dollar_open_interest_e6: self.open_interest_e2 * self.last_price_e6
                / 100
                / ONE_DOLLAR_E6
                * ONE_DOLLAR_E6,
        }
    }

    fn levels(&self, side: usize) -> Vec<Level> {
        self.prices[side]
            .iter()
            .zip(&self.sizes[side])
            .filter(|(_, s)| **s > 0)
            .map(|(p, s)| Level {
                price_e6: *p,
                count_e2: *s,
            })
            .collect()
    }
}

/// A load market's current state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadMarketState {
    /// Top of book in the YES view.
    pub top: TopOfBook,
    /// Last trade YES price (0 before any trade).
    pub last_price_e6: i64,
    /// Volume, hundredths.
    pub volume_e2: i64,
    /// Open interest, hundredths.
    pub open_interest_e2: i64,
    /// Deltas applied so far.
    pub market_seq: u64,
    /// YES levels ascending.
    pub yes: Vec<Level>,
    /// NO levels ascending, NO-leg price.
    pub no: Vec<Level>,
}

/// A market's truth at the end of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadMarketSummary {
    /// Ticker.
    pub ticker: String,
    /// Deltas applied (including the fill deltas of trades): the market's exchange sequence.
    pub market_seq: u64,
    /// Trades printed.
    pub trades: u64,
    /// Ticker updates emitted.
    pub tickers: u64,
    /// Digest of every delta and trade, in order.
    pub digest: TruthDigest,
    /// Final YES levels, ascending.
    pub yes: Vec<Level>,
    /// Final NO levels, ascending, NO-leg price.
    pub no: Vec<Level>,
}

/// The generator's truth so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadSummary {
    /// Events generated.
    pub events: u64,
    /// Of which deltas (including trade fills).
    pub deltas: u64,
    /// Of which trades.
    pub trades: u64,
    /// Of which tickers.
    pub tickers: u64,
    /// Per market, in index order.
    pub markets: Vec<LoadMarketSummary>,
}

const SERIES: [(&str, i64, i64); 8] = [
    ("BTCD", 95_000, 250),
    ("ETHD", 3_500, 25),
    ("GOLDH", 4_600, 5),
    ("NDXH", 21_000, 50),
    ("WTID", 70, 1),
    ("SOLD", 180, 2),
    ("EURUSDH", 1, 1),
    ("SPXH", 6_000, 10),
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const MARKETS_PER_EVENT: usize = 10;

/// The ticker of load market `k`: `KXLOAD<series>-<yy><MON><dd><hh>-T<strike>.99`, unique
/// because (year, month, day, hour) is a bijection of the event number.
fn load_ticker(k: usize) -> String {
    let event = k / MARKETS_PER_EVENT;
    let (name, base, step) = SERIES[event % SERIES.len()];
    let hour = event % 24;
    let day = event / 24 % 28 + 1;
    let month = event / (24 * 28) % 12;
    let year = 26 + event / (24 * 28 * 12);
    let strike = base + (k % MARKETS_PER_EVENT) as i64 * step - 1;
    format!(
        "KXLOAD{name}-{year:02}{}{day:02}{hour:02}-T{strike}.99",
        MONTHS[month]
    )
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Writes 128 bits as a UUID-shaped string (8-4-4-4-12 lowercase hex).
fn uuid_text(hi: u64, lo: u64, out: &mut [u8; 36]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = (u128::from(hi) << 64) | u128::from(lo);
    let mut nibble = 0;
    for (index, slot) in out.iter_mut().enumerate() {
        if matches!(index, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            let shift = 124 - 4 * nibble;
            *slot = HEX[((bits >> shift) & 0xf) as usize];
            nibble += 1;
        }
    }
}

fn uuid_id(hi: u64, lo: u64) -> TradeId {
    let mut text = [0_u8; 36];
    uuid_text(hi, lo, &mut text);
    TradeId::new(core::str::from_utf8(&text).unwrap_or_default()).unwrap_or_default()
}

/// The load universe and its event stream.
#[derive(Debug)]
pub struct LoadGen {
    config: LoadConfig,
    rng: ChaCha8Rng,
    markets: Vec<LoadMarket>,
    by_ticker: HashMap<String, u32>,
    next_index: u64,
    trades: u64,
    deltas: u64,
    tickers: u64,
    pending: Option<LoadEvent>,
    total_weight: u32,
    empty_aux: Aux,
}

impl LoadGen {
    /// Builds the universe (tickers, ids, seeded initial books).
    ///
    /// # Errors
    /// [`LoadError`] naming the out-of-range field: `markets`, `levels_per_side`,
    /// `rate_per_sec` or an all-zero `mix`.
    pub fn new(config: LoadConfig) -> Result<Self, LoadError> {
        if config.markets == 0 || config.markets > MAX_LOAD_MARKETS {
            return Err(LoadError::Markets(config.markets));
        }
        if config.levels_per_side == 0 || config.levels_per_side > MAX_LEVELS_PER_SIDE {
            return Err(LoadError::Levels(config.levels_per_side));
        }
        if config.rate_per_sec == 0 {
            return Err(LoadError::ZeroRate);
        }
        let total_weight = config
            .mix
            .deltas
            .saturating_add(config.mix.trades)
            .saturating_add(config.mix.tickers);
        if total_weight == 0 {
            return Err(LoadError::EmptyMix);
        }
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let mut markets = Vec::with_capacity(config.markets);
        let mut by_ticker = HashMap::with_capacity(config.markets);
        for k in 0..config.markets {
            let text = load_ticker(k);
            let structure = PriceLevelStructure::ALL[(k / MARKETS_PER_EVENT) % 3];
            let mid = structure.snap_down(rng.random_range(250_000..=750_000_i64));
            let mut prices = [Vec::new(), Vec::new()];
            for (side, top) in [(0, mid), (1, ONE_DOLLAR_E6 - mid)] {
                let mut price = top;
                for _ in 0..config.levels_per_side {
                    match structure.tick_down(price) {
                        Some(p) => {
                            prices[side].push(p);
                            price = p;
                        }
                        None => break,
                    }
                }
                prices[side].reverse();
            }
            let mut sizes = [vec![0_i64; prices[0].len()], vec![0_i64; prices[1].len()]];
            for side in &mut sizes {
                for size in side.iter_mut() {
                    if rng.random_range(0..4_u32) != 0 {
                        *size = random_size(&mut rng);
                    }
                }
            }
            let id: u128 = rng.random();
            let market = LoadMarket {
                ticker: Ticker::new(&text).unwrap_or_default(),
                market_id: uuid_id((id >> 64) as u64, id as u64),
                structure,
                prices,
                sizes,
                volume_e2: 0,
                open_interest_e2: 0,
                dollar_volume_e6: 0,
                last_price_e6: 0,
                last_trade_size_e2: 0,
                market_seq: 0,
                trades: 0,
                tickers: 0,
                digest: TruthDigest::default(),
            };
            by_ticker.insert(text, k as u32);
            markets.push(market);
        }
        Ok(Self {
            config,
            rng,
            markets,
            by_ticker,
            next_index: 0,
            trades: 0,
            deltas: 0,
            tickers: 0,
            pending: None,
            total_weight,
            empty_aux: Aux::default(),
        })
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &LoadConfig {
        &self.config
    }

    /// Number of markets.
    #[must_use]
    pub fn market_count(&self) -> usize {
        self.markets.len()
    }

    /// Ticker of market `index`.
    #[must_use]
    pub fn ticker(&self, index: usize) -> Option<&str> {
        self.markets.get(index).map(|m| m.ticker.as_str())
    }

    /// Every ticker, in index order (for the client's subscribe command or REST listings).
    #[must_use]
    pub fn tickers(&self) -> Vec<String> {
        self.markets
            .iter()
            .map(|m| m.ticker.as_str().to_owned())
            .collect()
    }

    /// Market id of market `index`.
    #[must_use]
    pub fn market_id(&self, index: usize) -> Option<&str> {
        self.markets.get(index).map(|m| m.market_id.as_str())
    }

    /// Price level structure of market `index`.
    #[must_use]
    pub fn structure(&self, index: usize) -> Option<PriceLevelStructure> {
        self.markets.get(index).map(|m| m.structure)
    }

    /// A market's index by ticker.
    #[must_use]
    pub fn market_index(&self, ticker: &str) -> Option<usize> {
        self.by_ticker.get(ticker).map(|i| *i as usize)
    }

    /// Market `index`'s current state (top of book, tallies, levels); `None` when out of
    /// range.
    #[must_use]
    pub fn market_state(&self, index: usize) -> Option<LoadMarketState> {
        let m = self.markets.get(index)?;
        let state = m.ticker_state();
        Some(LoadMarketState {
            top: TopOfBook {
                yes_bid_e6: state.yes_bid_e6,
                yes_bid_size_e2: state.yes_bid_size_e2,
                yes_ask_e6: state.yes_ask_e6,
                yes_ask_size_e2: state.yes_ask_size_e2,
            },
            last_price_e6: m.last_price_e6,
            volume_e2: m.volume_e2,
            open_interest_e2: m.open_interest_e2,
            market_seq: m.market_seq,
            yes: m.levels(0),
            no: m.levels(1),
        })
    }

    /// Events generated so far.
    #[must_use]
    pub const fn events_generated(&self) -> u64 {
        self.next_index
    }

    /// The UUID-shaped id of trade number `trade_no`.
    #[must_use]
    pub fn trade_id(&self, trade_no: u64) -> TradeId {
        let base = self.config.seed ^ 0x7472_6164_655f_6964;
        uuid_id(
            splitmix(base ^ trade_no),
            splitmix(base.rotate_left(17) ^ trade_no),
        )
    }

    fn timestamp(&self, index: u64) -> i64 {
        let offset = i128::from(index) * 1_000_000 / i128::from(self.config.rate_per_sec.max(1));
        i64::try_from(i128::from(self.config.start_us) + offset).unwrap_or(i64::MAX)
    }

    fn apply_delta(&mut self, market: usize, side: usize, level: usize, delta_e2: i64) -> u64 {
        let m = &mut self.markets[market];
        m.sizes[side][level] += delta_e2;
        m.market_seq += 1;
        m.digest.add_delta(
            if side == 0 { Side::Yes } else { Side::No },
            m.prices[side][level],
            delta_e2,
        );
        self.deltas += 1;
        m.market_seq
    }

    fn delta_event(
        &mut self,
        index: u64,
        ts: i64,
        market: usize,
        side: usize,
        level: usize,
        delta_e2: i64,
    ) -> LoadEvent {
        let market_seq = self.apply_delta(market, side, level, delta_e2);
        LoadEvent {
            index,
            exchange_ts: ts,
            market: market as u32,
            market_seq,
            kind: LoadEventKind::Delta {
                side: if side == 0 { Side::Yes } else { Side::No },
                price_e6: self.markets[market].prices[side][level],
                delta_e2,
            },
        }
    }

    /// Generates the next event and applies it to the books.
    pub fn next_event(&mut self) -> LoadEvent {
        let index = self.next_index;
        self.next_index += 1;
        if let Some(mut pending) = self.pending.take() {
            pending.index = index;
            return pending;
        }
        let ts = self.timestamp(index);
        let market = self.rng.random_range(0..self.markets.len());
        let roll = self.rng.random_range(0..self.total_weight);
        let mix = self.config.mix;
        if roll >= mix.deltas && roll < mix.deltas + mix.trades {
            let taker = if self.rng.random_bool(0.5) {
                Side::Yes
            } else {
                Side::No
            };
            let hit = usize::from(taker == Side::Yes);
            if let Some((level, price, size)) = self.markets[market].best(hit) {
                let count = if self.rng.random_range(0..3_u32) == 0 {
                    size
                } else {
                    self.rng.random_range(1..=size)
                };
                let yes_price_e6 = if hit == 1 {
                    ONE_DOLLAR_E6 - price
                } else {
                    price
                };
                let open_up = self.rng.random_bool(0.6);
                let event = self.delta_event(index, ts, market, hit, level, -count);
                let trade_no = self.trades;
                self.trades += 1;
                let trade_id = self.trade_id(trade_no);
                let m = &mut self.markets[market];
                m.volume_e2 += count;
                m.dollar_volume_e6 += count * yes_price_e6 / 100;
                m.open_interest_e2 = if open_up {
                    m.open_interest_e2 + count
                } else {
                    (m.open_interest_e2 - count).max(0)
                };
                m.last_price_e6 = yes_price_e6;
                m.last_trade_size_e2 = count;
                m.trades += 1;
                m.digest
                    .add_trade(trade_id.as_str(), yes_price_e6, count, taker);
                self.pending = Some(LoadEvent {
                    index: 0,
                    exchange_ts: ts,
                    market: market as u32,
                    market_seq: m.market_seq,
                    kind: LoadEventKind::Trade {
                        trade_no,
                        yes_price_e6,
                        count_e2: count,
                        taker,
                    },
                });
                return event;
            }
            // An empty side: rest liquidity there instead.
            let level = self.markets[market].sizes[hit].len() - 1;
            let size = random_size(&mut self.rng);
            return self.delta_event(index, ts, market, hit, level, size);
        }
        if roll >= mix.deltas + mix.trades {
            let m = &mut self.markets[market];
            m.tickers += 1;
            self.tickers += 1;
            return LoadEvent {
                index,
                exchange_ts: ts,
                market: market as u32,
                market_seq: m.market_seq,
                kind: LoadEventKind::Ticker(m.ticker_state()),
            };
        }
        let side = usize::from(self.rng.random_bool(0.5));
        let level = self
            .rng
            .random_range(0..self.markets[market].sizes[side].len());
        let size = self.markets[market].sizes[side][level];
        let delta = if size == 0 || self.rng.random_range(0..100_u32) < 48 {
            random_size(&mut self.rng)
        } else if self.rng.random_bool(0.5) {
            -size
        } else {
            -self.rng.random_range(1..=size)
        };
        self.delta_event(index, ts, market, side, level, delta)
    }

    /// The wire record of `event` with the given envelope; with `use_yes_price`, NO-side delta
    /// prices are in YES-leg price.
    #[must_use]
    pub fn record(&self, event: &LoadEvent, header: Header, use_yes_price: bool) -> Record {
        let m = &self.markets[(event.market as usize).min(self.markets.len() - 1)];
        let ts = Some(event.exchange_ts);
        match event.kind {
            LoadEventKind::Delta {
                side,
                price_e6,
                delta_e2,
            } => Record::Delta(Delta {
                header,
                exchange_ts: ts,
                price_e6: if use_yes_price && side == Side::No {
                    ONE_DOLLAR_E6 - price_e6
                } else {
                    price_e6
                },
                delta_e2,
                side,
                ticker: m.ticker,
                market_id: m.market_id,
            }),
            LoadEventKind::Trade {
                trade_no,
                yes_price_e6,
                count_e2,
                taker,
            } => Record::Trade(Trade {
                header,
                exchange_ts: ts,
                yes_price_e6,
                no_price_e6: ONE_DOLLAR_E6 - yes_price_e6,
                count_e2,
                ticker: m.ticker,
                trade_id: self.trade_id(trade_no),
                taker_side: Some(taker),
                taker_outcome_side: Some(taker),
                taker_book_side: Some(match taker {
                    Side::Yes => BookSide::Bid,
                    Side::No => BookSide::Ask,
                }),
                is_block_trade: Some(false),
            }),
            LoadEventKind::Ticker(state) => Record::Ticker(ticker_record(m, &state, header, ts)),
        }
    }

    /// Appends `event`'s truth line: `{"market_seq":N,"record":<canonical record JSON>}\n`,
    /// the same wrapper as the exchange truth log (no sid/seq, NO prices in NO-leg price).
    /// Slow path: for regenerating the truth offline, not for the hot loop.
    pub fn write_truth_line(&self, event: &LoadEvent, out: &mut Vec<u8>) {
        let record = self.record(event, Header::default(), false);
        out.extend_from_slice(b"{\"market_seq\":");
        out.extend_from_slice(event.market_seq.to_string().as_bytes());
        out.extend_from_slice(b",\"record\":");
        let decoded = Decoded {
            record,
            aux: &self.empty_aux,
            use_yes_price: Some(false),
        };
        write_canonical(&decoded, out);
        out.extend_from_slice(b"}\n");
    }

    /// The truth so far: counts, digests and books per market.
    #[must_use]
    pub fn summary(&self) -> LoadSummary {
        LoadSummary {
            events: self.next_index,
            deltas: self.deltas,
            trades: self.trades,
            tickers: self.tickers,
            markets: self
                .markets
                .iter()
                .map(|m| LoadMarketSummary {
                    ticker: m.ticker.as_str().to_owned(),
                    market_seq: m.market_seq,
                    trades: m.trades,
                    tickers: m.tickers,
                    digest: m.digest,
                    yes: m.levels(0),
                    no: m.levels(1),
                })
                .collect(),
        }
    }

    /// Writes the summary as JSON lines: first
    /// `{"events":N,"deltas":N,"trades":N,"tickers":N}`, then one line per market
    /// `{"ticker":…,"market_seq":N,"trades":N,"tickers":N,"digest":"<16 hex>","yes":[[price_e6,count_e2],…],"no":[…]}`
    /// (integers in the platform's fixed-point units, NO levels in NO-leg price).
    pub fn write_summary(&self, out: &mut Vec<u8>) {
        let summary = self.summary();
        out.extend_from_slice(
            format!(
                "{{\"events\":{},\"deltas\":{},\"trades\":{},\"tickers\":{}}}\n",
                summary.events, summary.deltas, summary.trades, summary.tickers
            )
            .as_bytes(),
        );
        let levels = |levels: &[Level]| -> String {
            let parts: Vec<String> = levels
                .iter()
                .map(|l| format!("[{},{}]", l.price_e6, l.count_e2))
                .collect();
            format!("[{}]", parts.join(","))
        };
        for m in &summary.markets {
            out.extend_from_slice(
                format!(
                    "{{\"ticker\":\"{}\",\"market_seq\":{},\"trades\":{},\"tickers\":{},\"digest\":\"{:016x}\",\"yes\":{},\"no\":{}}}\n",
                    m.ticker,
                    m.market_seq,
                    m.trades,
                    m.tickers,
                    m.digest.0,
                    levels(&m.yes),
                    levels(&m.no)
                )
                .as_bytes(),
            );
        }
    }

    /// Convenience for one connection: generates the next event and renders it for `session`
    /// into `out` (appended). Returns `None` when the connection does not receive this event
    /// (not subscribed, or swallowed by a skip fault); the event happened all the same.
    pub fn next_frame(
        &mut self,
        route: &mut LoadRoute,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) -> Option<Rendered> {
        let event = self.next_event();
        route.render(self, &event, session, out)
    }
}

fn random_size(rng: &mut ChaCha8Rng) -> i64 {
    let contracts = rng.random_range(1..=200_i64);
    if rng.random_range(0..5_u32) == 0 {
        contracts * 100 - rng.random_range(1..100_i64)
    } else {
        contracts * 100
    }
}

fn ticker_record(m: &LoadMarket, s: &TickerState, header: Header, ts: Option<i64>) -> TickerUpdate {
    TickerUpdate {
        header,
        exchange_ts: ts,
        ticker: m.ticker,
        market_id: m.market_id,
        price_e6: Some(s.price_e6),
        yes_bid_e6: Some(s.yes_bid_e6),
        yes_ask_e6: Some(s.yes_ask_e6),
        yes_bid_size_e2: Some(s.yes_bid_size_e2),
        yes_ask_size_e2: Some(s.yes_ask_size_e2),
        last_trade_size_e2: Some(s.last_trade_size_e2),
        volume_e2: Some(s.volume_e2),
        open_interest_e2: Some(s.open_interest_e2),
        dollar_volume_e6: Some(s.dollar_volume_e6),
        dollar_open_interest_e6: Some(s.dollar_open_interest_e6),
    }
}

impl MarketSource for LoadGen {
    fn snapshot_record(
        &self,
        ticker: &str,
        header: Header,
        use_yes_price: bool,
        aux: &mut Aux,
    ) -> Record {
        aux.clear();
        let (market_id, yes, no) = match self.market_index(ticker).and_then(|i| self.markets.get(i))
        {
            Some(m) => {
                let no = if use_yes_price {
                    m.levels(1)
                        .iter()
                        .rev()
                        .map(|l| Level {
                            price_e6: ONE_DOLLAR_E6 - l.price_e6,
                            count_e2: l.count_e2,
                        })
                        .collect()
                } else {
                    m.levels(1)
                };
                (m.market_id, m.levels(0), no)
            }
            None => (MarketId::default(), Vec::new(), Vec::new()),
        };
        let (yes_levels, no_levels) = aux.push_levels(&yes, &no);
        Record::Snapshot(Snapshot {
            header,
            ticker: Ticker::new(ticker).unwrap_or_default(),
            market_id,
            yes_levels,
            no_levels,
        })
    }

    fn current_ticker_record(&self, ticker: &str, header: Header, aux: &mut Aux) -> Option<Record> {
        aux.clear();
        let m = self.markets.get(self.market_index(ticker)?)?;
        let ts = self.timestamp(self.next_index);
        Some(Record::Ticker(ticker_record(
            m,
            &m.ticker_state(),
            header,
            Some(ts),
        )))
    }
}

/// Where one channel of one market goes on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Target {
    /// 0 = not subscribed.
    sid: u64,
    use_yes_price: bool,
}

/// Frames a [`LoadRoute`] rendered, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RouteStats {
    /// `orderbook_delta` frames.
    pub deltas: u64,
    /// `trade` frames.
    pub trades: u64,
    /// `ticker` frames.
    pub tickers: u64,
    /// Events not rendered because the connection had no matching subscription.
    pub unrouted: u64,
    /// Frames swallowed by a skip-seq fault.
    pub skipped: u64,
}

/// What [`LoadRoute::render`] appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rendered {
    /// The frame kind.
    pub kind: FrameKind,
    /// Its sid.
    pub sid: u64,
    /// Its seq (`None` for tickers).
    pub seq: Option<u64>,
    /// A duplicate-frame fault is due: send the bytes twice.
    pub duplicate: bool,
}

/// One connection's routing table for load events: per market, the sid (and NO-price
/// convention) of its `orderbook_delta`, `trade` and `ticker` subscriptions.
#[derive(Clone, Debug, Default)]
pub struct LoadRoute {
    generation: Option<u64>,
    /// Per market: `[orderbook_delta, trade, ticker]`.
    targets: Vec<[Target; 3]>,
    active: bool,
    stats: RouteStats,
}

impl LoadRoute {
    /// An empty route; it builds itself from the session on first use.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the table if the session's subscriptions changed since the last build.
    pub fn refresh(&mut self, load: &LoadGen, session: &Session) {
        if self.generation == Some(session.generation()) && self.targets.len() == load.markets.len()
        {
            return;
        }
        self.generation = Some(session.generation());
        self.targets.clear();
        self.targets
            .resize(load.markets.len(), [Target::default(); 3]);
        self.active = false;
        for view in session.subscription_views() {
            let slot = match view.channel {
                Channel::OrderbookDelta => 0,
                Channel::Trade => 1,
                Channel::Ticker => 2,
                _ => continue,
            };
            let target = Target {
                sid: view.sid,
                use_yes_price: view.use_yes_price,
            };
            match view.markets {
                None => {
                    for t in &mut self.targets {
                        t[slot] = target;
                    }
                    self.active = true;
                }
                Some(tickers) => {
                    for ticker in tickers {
                        if let Some(index) = load.market_index(ticker) {
                            self.targets[index][slot] = target;
                            self.active = true;
                        }
                    }
                }
            }
        }
    }

    /// Whether any load market is subscribed on the connection (as of the last refresh).
    #[must_use]
    pub const fn is_active(&self) -> bool {
        self.active
    }

    /// Frames rendered so far, by kind.
    #[must_use]
    pub const fn stats(&self) -> RouteStats {
        self.stats
    }

    /// Renders `event` for this connection into `out` (appended, one frame) with the sid's
    /// next seq. `None` when the connection does not receive it. Refreshes the table first if
    /// the session changed. No allocation once `out` has capacity.
    pub fn render(
        &mut self,
        load: &LoadGen,
        event: &LoadEvent,
        session: &mut Session,
        out: &mut Vec<u8>,
    ) -> Option<Rendered> {
        self.refresh(load, session);
        let (slot, kind) = match event.kind {
            LoadEventKind::Delta { .. } => (0, FrameKind::Delta),
            LoadEventKind::Trade { .. } => (1, FrameKind::Trade),
            LoadEventKind::Ticker(_) => (2, FrameKind::Ticker),
        };
        let Some(target) = self
            .targets
            .get(event.market as usize)
            .map(|t| t[slot])
            .filter(|t| t.sid != 0)
        else {
            self.stats.unrouted += 1;
            return None;
        };
        let seq = if kind == FrameKind::Ticker {
            None
        } else {
            match session.next_seq(target.sid) {
                Some(seq) => Some(seq),
                None => {
                    self.stats.skipped += 1;
                    return None;
                }
            }
        };
        let header = Header {
            id: None,
            sid: core::num::NonZeroU64::new(target.sid),
            seq: seq.and_then(core::num::NonZeroU64::new),
        };
        let record = load.record(event, header, target.use_yes_price);
        let decoded = Decoded {
            record,
            aux: &load.empty_aux,
            use_yes_price: (slot == 0).then_some(target.use_yes_price),
        };
        render_frame(&decoded, out);
        match kind {
            FrameKind::Delta => self.stats.deltas += 1,
            FrameKind::Trade => self.stats.trades += 1,
            _ => self.stats.tickers += 1,
        }
        let duplicate = seq.is_some() && session.take_duplicate(target.sid);
        Some(Rendered {
            kind,
            sid: target.sid,
            seq,
            duplicate,
        })
    }
}

/// Sans-IO pacing: how many events are due at `now_us` for a target rate, counted from the
/// first call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pacer {
    rate_per_sec: u64,
    start_us: Option<i64>,
    granted: u64,
}

impl Pacer {
    /// A pacer for `rate_per_sec` events per second (0 grants nothing).
    #[must_use]
    pub const fn new(rate_per_sec: u64) -> Self {
        Self {
            rate_per_sec,
            start_us: None,
            granted: 0,
        }
    }

    /// Events granted so far.
    #[must_use]
    pub const fn granted(&self) -> u64 {
        self.granted
    }

    /// Starts the clock at `now_us` if not started, then grants (and counts) the events due by
    /// `now_us`, at most `max`. A server that falls behind gets the backlog on later calls;
    /// compare [`Pacer::granted`] with elapsed time to report the achieved rate.
    pub fn take_due(&mut self, now_us: i64, max: u64) -> u64 {
        let start = *self.start_us.get_or_insert(now_us);
        let elapsed = (i128::from(now_us) - i128::from(start)).max(0);
        let owed = elapsed * i128::from(self.rate_per_sec) / 1_000_000;
        let owed = u64::try_from(owed).unwrap_or(u64::MAX);
        let due = owed.saturating_sub(self.granted).min(max);
        self.granted += due;
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tickers are unique, realistic and short; trade ids are UUID-shaped and distinct.
    #[test]
    fn tickers_and_ids() {
        let load = LoadGen::new(LoadConfig {
            markets: 20_000,
            ..LoadConfig::default()
        })
        .unwrap();
        let mut seen = std::collections::HashSet::new();
        for k in 0..load.market_count() {
            let t = load.ticker(k).unwrap();
            assert!(t.len() <= 47 && t.starts_with("KXLOAD"), "{t}");
            assert!(seen.insert(t.to_owned()), "duplicate {t}");
        }
        assert_eq!(load.ticker(0), Some("KXLOADBTCD-26JAN0100-T94999.99"));
        let a = load.trade_id(0);
        let b = load.trade_id(1);
        assert_eq!(a.len(), 36);
        assert_ne!(a, b);
        assert_eq!(a.as_str().matches('-').count(), 4);
    }

    // Bad configs are refused with a message naming the field.
    #[test]
    fn config_errors() {
        let bad = |c: LoadConfig| LoadGen::new(c).unwrap_err().to_string();
        assert!(
            bad(LoadConfig {
                markets: 0,
                ..LoadConfig::default()
            })
            .contains("markets")
        );
        assert!(
            bad(LoadConfig {
                levels_per_side: 17,
                ..LoadConfig::default()
            })
            .contains("levels_per_side")
        );
        assert!(
            bad(LoadConfig {
                rate_per_sec: 0,
                ..LoadConfig::default()
            })
            .contains("rate")
        );
        assert!(
            bad(LoadConfig {
                mix: LoadMix {
                    deltas: 0,
                    trades: 0,
                    tickers: 0
                },
                ..LoadConfig::default()
            })
            .contains("mix")
        );
    }

    // The pacer grants rate × elapsed, capped per call, with the backlog carried over.
    #[test]
    fn pacer() {
        let mut p = Pacer::new(1000);
        assert_eq!(p.take_due(5_000_000, 100), 0);
        assert_eq!(p.take_due(5_010_000, 100), 10);
        assert_eq!(p.take_due(5_500_000, 100), 100);
        assert_eq!(p.take_due(5_500_000, 1000), 390);
        assert_eq!(p.take_due(4_000_000, 1000), 0);
        assert_eq!(p.granted(), 500);
    }
}
