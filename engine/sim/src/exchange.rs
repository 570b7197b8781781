//! The deterministic market model: series → events → markets, their books, seeded order flow,
//! lifecycle over time, and the truth log.

use std::collections::{BTreeMap, BTreeSet};

use kalshi_wire::{
    Aux, BookSide, Decoded, Delta, EventKind, EventLifecycle, Header, Level, MarketId,
    MarketLifecycle, MarketMetadata, Record, Scalar, Side, Snapshot, Ticker, TickerUpdate, Trade,
    TradeId, write_canonical,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::book::Book;
use crate::price::{ONE_DOLLAR_E6, PriceLevelStructure};

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Knobs of the market model. Every duration is in microseconds of exchange time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// Number of series.
    pub series: usize,
    /// Events listed per series at start.
    pub events_per_series: usize,
    /// Markets per event.
    pub markets_per_event: usize,
    /// Order-flow actions (add, cancel or take) per second of exchange time, across all active
    /// markets.
    pub actions_per_second: u64,
    /// Upper bound on actions in one [`Exchange::step`] (a long gap between steps does not
    /// produce an unbounded burst).
    pub max_actions_per_step: u64,
    /// A new event (with `markets_per_event` markets) is listed this often; 0 disables listing.
    pub new_event_every_us: i64,
    /// Time from listing to `close_ts` for the first event of a series; later events close
    /// proportionally later.
    pub market_lifetime_us: i64,
    /// Time from close to `determined`.
    pub determine_delay_us: i64,
    /// Time from `determined` to `settled`.
    pub settle_delay_us: i64,
    /// Per-mille chance that an action deactivates (pauses) its market instead.
    pub deactivate_per_mille: u32,
    /// How long a deactivated market stays paused before `activated`.
    pub deactivation_us: i64,
    /// Per-mille chance that an action moves its market's close date instead.
    pub close_update_per_mille: u32,
    /// Per-mille chance that a newly listed market opens later (status `initialized`) rather
    /// than at once.
    pub delayed_open_per_mille: u32,
    /// Keep the truth log in memory ([`Exchange::truth_log`]).
    pub keep_truth_log: bool,
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            series: 3,
            events_per_series: 2,
            markets_per_event: 4,
            actions_per_second: 200,
            max_actions_per_step: 100_000,
            new_event_every_us: 120 * MICROS_PER_SECOND,
            market_lifetime_us: 600 * MICROS_PER_SECOND,
            determine_delay_us: 30 * MICROS_PER_SECOND,
            settle_delay_us: 60 * MICROS_PER_SECOND,
            deactivate_per_mille: 2,
            deactivation_us: 20 * MICROS_PER_SECOND,
            close_update_per_mille: 2,
            delayed_open_per_mille: 250,
            keep_truth_log: true,
        }
    }
}

/// Market status, in the REST vocabulary (`protocol.md` §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MarketStatus {
    /// Listed, not yet open.
    Initialized,
    /// Open for trading.
    Active,
    /// Paused (`deactivated`).
    Inactive,
    /// Past close time, not yet determined.
    Closed,
    /// Result known.
    Determined,
    /// Settled.
    Finalized,
}

impl MarketStatus {
    /// The REST `status` value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            MarketStatus::Initialized => "initialized",
            MarketStatus::Active => "active",
            MarketStatus::Inactive => "inactive",
            MarketStatus::Closed => "closed",
            MarketStatus::Determined => "determined",
            MarketStatus::Finalized => "finalized",
        }
    }

    /// The `status=` filter value of `GET /markets` that selects this status.
    #[must_use]
    pub const fn filter_name(self) -> &'static str {
        match self {
            MarketStatus::Initialized => "unopened",
            MarketStatus::Active => "open",
            MarketStatus::Inactive => "paused",
            MarketStatus::Closed | MarketStatus::Determined => "closed",
            MarketStatus::Finalized => "settled",
        }
    }
}

/// A series (a family of events).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// Series ticker, e.g. `KXSIMBTCD`.
    pub ticker: String,
    /// Human title.
    pub title: String,
    /// Tick structure of its markets.
    pub structure: PriceLevelStructure,
    /// Central strike of its markets.
    pub strike_base: i64,
    /// Spacing between strikes of one event.
    pub strike_step: i64,
}

/// An event (a set of markets on one question).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event ticker, e.g. `KXSIMBTCD-26NOV3017`.
    pub ticker: String,
    /// Index of its series.
    pub series: usize,
    /// Title.
    pub title: String,
    /// Subtitle.
    pub subtitle: String,
    /// Strike date, µs.
    pub strike_date_us: i64,
    /// Indices of its markets.
    pub markets: Vec<usize>,
    /// Listing time, µs.
    pub created_us: i64,
}

/// A market: static description, status and book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Market {
    /// Ticker, e.g. `KXSIMBTCD-26NOV3017-T95000.99`.
    pub ticker: String,
    /// UUID-shaped market id.
    pub market_id: String,
    /// Index of its event.
    pub event: usize,
    /// Tick structure.
    pub structure: PriceLevelStructure,
    /// Floor strike as exact decimal text (`95000.99`).
    pub floor_strike: String,
    /// Title.
    pub title: String,
    /// `yes_sub_title` / `no_sub_title`.
    pub sub_title: String,
    /// Status.
    pub status: MarketStatus,
    /// Listing time, µs.
    pub created_us: i64,
    /// Open time, µs (whole seconds).
    pub open_us: i64,
    /// Close time, µs (whole seconds).
    pub close_us: i64,
    /// Determination time, µs.
    pub determined_us: Option<i64>,
    /// Settlement time, µs.
    pub settled_us: Option<i64>,
    /// Result once determined.
    pub result: Option<Side>,
    /// Last change of any field, µs.
    pub updated_us: i64,
    /// The book.
    pub book: Book,
    /// Exchange-side sequence: number of book deltas applied so far.
    pub book_seq: u64,
    /// Cumulative volume, hundredths.
    pub volume_e2: i64,
    /// Open interest, hundredths.
    pub open_interest_e2: i64,
    /// Cumulative dollar volume, micro-dollars.
    pub dollar_volume_e6: i64,
    /// Last trade YES price.
    pub last_price_e6: Option<i64>,
    /// Last trade size.
    pub last_trade_size_e2: i64,
    fair_e6: i64,
    reactivate_us: i64,
    last_ticker: Option<TickerState>,
}

impl Market {
    /// The current ticker values, derived from the book and the trade tallies.
    #[must_use]
    pub fn ticker_state(&self) -> TickerState {
        let top = self.book.top();
        let last = self.last_price_e6.unwrap_or(0);
        TickerState {
            price_e6: last,
            yes_bid_e6: top.yes_bid_e6,
            yes_ask_e6: top.yes_ask_e6,
            yes_bid_size_e2: top.yes_bid_size_e2,
            yes_ask_size_e2: top.yes_ask_size_e2,
            last_trade_size_e2: self.last_trade_size_e2,
            volume_e2: self.volume_e2,
            open_interest_e2: self.open_interest_e2,
            dollar_volume_e6: self.dollar_volume_e6 / ONE_DOLLAR_E6 * ONE_DOLLAR_E6,
            dollar_open_interest_e6: self.open_interest_e2 * last / 100 / ONE_DOLLAR_E6
                * ONE_DOLLAR_E6,
        }
    }
}

/// The values of one `ticker` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickerState {
    /// Last trade YES price (0 before any trade).
    pub price_e6: i64,
    /// Best YES bid.
    pub yes_bid_e6: i64,
    /// Best YES ask.
    pub yes_ask_e6: i64,
    /// Size at the YES bid.
    pub yes_bid_size_e2: i64,
    /// Size at the YES ask.
    pub yes_ask_size_e2: i64,
    /// Last trade size.
    pub last_trade_size_e2: i64,
    /// Cumulative volume.
    pub volume_e2: i64,
    /// Open interest.
    pub open_interest_e2: i64,
    /// Dollar volume, whole dollars in micro-dollars.
    pub dollar_volume_e6: i64,
    /// Dollar open interest, whole dollars in micro-dollars.
    pub dollar_open_interest_e6: i64,
}

/// A market lifecycle change (`market_lifecycle_v2` `event_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleChange {
    /// Listed (`created`, with `additional_metadata`, `open_ts`, `close_ts`, structure).
    Created {
        /// `open_ts`, µs.
        open_us: i64,
        /// `close_ts`, µs.
        close_us: i64,
    },
    /// Re-opened after a pause (`is_deactivated: false`).
    Activated,
    /// Paused (`is_deactivated: true`).
    Deactivated,
    /// New close time.
    CloseDateUpdated {
        /// The new `close_ts`, µs.
        close_us: i64,
    },
    /// Result known.
    Determined {
        /// `result`.
        result: Side,
        /// `settlement_value`, micro-dollars.
        settlement_value_e6: i64,
        /// `determination_ts`, µs.
        determination_us: i64,
    },
    /// Settled.
    Settled {
        /// `settled_ts`, µs.
        settled_us: i64,
    },
}

impl LifecycleChange {
    /// The wire `event_type`.
    #[must_use]
    pub const fn event_type(&self) -> &'static str {
        match self {
            LifecycleChange::Created { .. } => "created",
            LifecycleChange::Activated => "activated",
            LifecycleChange::Deactivated => "deactivated",
            LifecycleChange::CloseDateUpdated { .. } => "close_date_updated",
            LifecycleChange::Determined { .. } => "determined",
            LifecycleChange::Settled { .. } => "settled",
        }
    }
}

/// What happened in one exchange event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventPayload {
    /// A signed change to a resting level (`orderbook_delta`); NO prices in NO-leg price.
    Delta {
        /// Market index.
        market: usize,
        /// Book side.
        side: Side,
        /// Level price.
        price_e6: i64,
        /// Signed size change.
        delta_e2: i64,
    },
    /// A public trade print.
    Trade {
        /// Market index.
        market: usize,
        /// UUID-shaped trade id.
        trade_id: TradeId,
        /// YES price (NO price is 1 − this).
        yes_price_e6: i64,
        /// Contracts, hundredths.
        count_e2: i64,
        /// `taker_outcome_side` (and `taker_side`; `taker_book_side` is bid for YES, ask for NO).
        taker: Side,
    },
    /// A `ticker` update.
    Ticker {
        /// Market index.
        market: usize,
        /// Values.
        state: TickerState,
    },
    /// A `market_lifecycle_v2` message.
    Lifecycle {
        /// Market index.
        market: usize,
        /// Which change.
        change: LifecycleChange,
    },
    /// An `event_lifecycle` message (an event was listed).
    EventCreated {
        /// Event index.
        event: usize,
    },
}

impl EventPayload {
    /// The market the event concerns (`None` for event-level messages).
    #[must_use]
    pub const fn market(&self) -> Option<usize> {
        match self {
            EventPayload::Delta { market, .. }
            | EventPayload::Trade { market, .. }
            | EventPayload::Ticker { market, .. }
            | EventPayload::Lifecycle { market, .. } => Some(*market),
            EventPayload::EventCreated { .. } => None,
        }
    }
}

/// One exchange event, in exchange order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeEvent {
    /// Exchange time, µs; non-decreasing across events.
    pub exchange_ts: i64,
    /// The market's exchange-side sequence: for a delta, its own number (1, 2, … per market);
    /// for other market events, the number of deltas applied before it; `None` for event-level
    /// messages.
    pub market_seq: Option<u64>,
    /// What happened.
    pub payload: EventPayload,
}

/// A market's final book, for checking a rebuilt book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalBook {
    /// Ticker.
    pub ticker: String,
    /// Deltas applied (the `market_seq` of the last delta).
    pub market_seq: u64,
    /// YES levels ascending.
    pub yes: Vec<Level>,
    /// NO levels ascending, NO-leg price.
    pub no: Vec<Level>,
}

/// A trade kept for `GET /markets/trades`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    /// Market index.
    pub market: usize,
    /// Trade id.
    pub trade_id: TradeId,
    /// YES price.
    pub yes_price_e6: i64,
    /// Contracts, hundredths.
    pub count_e2: i64,
    /// Taker outcome side.
    pub taker: Side,
    /// Exchange time, µs.
    pub created_us: i64,
}

const SERIES_NAMES: [(&str, &str, i64, i64); 8] = [
    ("BTCD", "Bitcoin price", 95_000, 250),
    ("ETHD", "Ethereum price", 3_500, 25),
    ("GOLDH", "Gold price", 4_600, 5),
    ("NDXH", "Nasdaq-100 level", 21_000, 50),
    ("WTID", "WTI crude price", 70, 1),
    ("SOLD", "Solana price", 180, 2),
    ("EURUSDH", "EUR/USD rate", 1, 1),
    ("SPXH", "S&P 500 level", 6_000, 10),
];
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Calendar fields of a µs timestamp: (year, month 1–12, day, hour, minute).
fn civil(us: i64) -> (i64, usize, i64, i64, i64) {
    let secs = us.div_euclid(MICROS_PER_SECOND);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as usize, day, sod / 3600, sod / 60 % 60)
}

fn whole_seconds(us: i64) -> i64 {
    us.div_euclid(MICROS_PER_SECOND) * MICROS_PER_SECOND
}

/// A UUID-shaped id (8-4-4-4-12 lowercase hex) from the RNG.
fn uuid(rng: &mut ChaCha8Rng) -> String {
    let bytes: [u8; 16] = rng.random();
    let mut out = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The simulated exchange.
#[derive(Debug)]
pub struct Exchange {
    config: ExchangeConfig,
    rng: ChaCha8Rng,
    series: Vec<Series>,
    events: Vec<Event>,
    markets: Vec<Market>,
    by_ticker: BTreeMap<String, usize>,
    event_tickers: BTreeSet<String>,
    now_us: i64,
    started: bool,
    paused: bool,
    flow_budget: u128,
    next_listing_us: i64,
    trades: Vec<TradeRow>,
    truth: Vec<u8>,
    aux: Aux,
}

impl Exchange {
    /// Creates an exchange. Nothing is listed until the first [`Exchange::step`], which lists the
    /// initial universe at its `now_us`.
    #[must_use]
    pub fn new(config: ExchangeConfig, seed: u64) -> Self {
        let mut series = Vec::with_capacity(config.series);
        for index in 0..config.series {
            let (suffix, title, base, step) = SERIES_NAMES[index % SERIES_NAMES.len()];
            let ticker = if index < SERIES_NAMES.len() {
                format!("KXSIM{suffix}")
            } else {
                format!("KXSIM{}{suffix}", index / SERIES_NAMES.len())
            };
            series.push(Series {
                ticker,
                title: title.to_owned(),
                structure: PriceLevelStructure::ALL[index % PriceLevelStructure::ALL.len()],
                strike_base: base,
                strike_step: step,
            });
        }
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            series,
            events: Vec::new(),
            markets: Vec::new(),
            by_ticker: BTreeMap::new(),
            event_tickers: BTreeSet::new(),
            now_us: i64::MIN,
            started: false,
            paused: false,
            flow_budget: 0,
            next_listing_us: 0,
            trades: Vec::new(),
            truth: Vec::new(),
            aux: Aux::default(),
        }
    }

    /// The configuration.
    #[must_use]
    pub const fn config(&self) -> &ExchangeConfig {
        &self.config
    }

    /// Exchange time of the last step (`i64::MIN` before the first).
    #[must_use]
    pub const fn now_us(&self) -> i64 {
        self.now_us
    }

    /// Pauses or resumes the whole exchange. While paused, [`Exchange::step`] produces no
    /// events (order flow and lifecycle wait), `GET /exchange/status` reports inactive, and the
    /// server is expected to close WebSocket connections.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether the exchange is paused.
    #[must_use]
    pub const fn is_paused(&self) -> bool {
        self.paused
    }

    /// All series.
    #[must_use]
    pub fn series(&self) -> &[Series] {
        &self.series
    }

    /// All listed events, in listing order.
    #[must_use]
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// All listed markets, in listing order (the index is the market's id in events).
    #[must_use]
    pub fn markets(&self) -> &[Market] {
        &self.markets
    }

    /// A market's index by ticker.
    #[must_use]
    pub fn market_index(&self, ticker: &str) -> Option<usize> {
        self.by_ticker.get(ticker).copied()
    }

    /// A market by ticker.
    #[must_use]
    pub fn market(&self, ticker: &str) -> Option<&Market> {
        self.market_index(ticker).and_then(|i| self.markets.get(i))
    }

    /// Every trade so far, oldest first.
    #[must_use]
    pub fn trades(&self) -> &[TradeRow] {
        &self.trades
    }

    /// The truth log so far: one line per exchange event, `{"market_seq":N|null,"record":{…}}`.
    #[must_use]
    pub fn truth_log(&self) -> &[u8] {
        &self.truth
    }

    /// Takes the truth log written since the last take (for a server that streams it to a file).
    pub fn take_truth_log(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.truth)
    }

    /// Every market's current book, in listing order.
    #[must_use]
    pub fn final_books(&self) -> Vec<FinalBook> {
        self.markets
            .iter()
            .map(|m| FinalBook {
                ticker: m.ticker.clone(),
                market_seq: m.book_seq,
                yes: m.book.levels(Side::Yes),
                no: m.book.levels(Side::No),
            })
            .collect()
    }

    /// Writes every market's current book as truth-log-style lines: `{"market_seq":N,"record":
    /// <canonical orderbook_snapshot, use_yes_price false>}`.
    pub fn write_final_books(&self, out: &mut Vec<u8>) {
        let mut aux = Aux::default();
        for market in &self.markets {
            let record = self.snapshot_record(&market.ticker, Header::default(), false, &mut aux);
            out.extend_from_slice(b"{\"market_seq\":");
            out.extend_from_slice(market.book_seq.to_string().as_bytes());
            out.extend_from_slice(b",\"record\":");
            let decoded = Decoded {
                record,
                aux: &aux,
                use_yes_price: Some(false),
            };
            write_canonical(&decoded, out);
            out.extend_from_slice(b"}\n");
        }
    }

    /// Advances exchange time to `now_us` (clamped to be non-decreasing) and returns the events
    /// produced, in exchange order. Order flow since the previous step is spread over
    /// `(previous, now_us]`; lifecycle transitions due by `now_us` and new listings follow at
    /// `now_us`. The first call lists the initial universe.
    pub fn step(&mut self, now_us: i64) -> Vec<ExchangeEvent> {
        let mut out = Vec::new();
        let now = now_us.max(self.now_us);
        if !self.started {
            self.started = true;
            self.now_us = now;
            self.next_listing_us = now.saturating_add(self.config.new_event_every_us);
            for series in 0..self.series.len() {
                for k in 0..self.config.events_per_series {
                    let close = now
                        + self.config.market_lifetime_us * (k as i64 + 1)
                            / self.config.events_per_series.max(1) as i64;
                    self.list_event(series, now, close, &mut out);
                }
            }
            return out;
        }
        let previous = self.now_us;
        self.now_us = now;
        if self.paused {
            return out;
        }
        let elapsed = (now - previous).max(0) as u128;
        self.flow_budget += elapsed * u128::from(self.config.actions_per_second);
        let actions = ((self.flow_budget / 1_000_000) as u64).min(self.config.max_actions_per_step);
        self.flow_budget %= 1_000_000;
        if actions > 0 {
            let tradable: Vec<usize> = (0..self.markets.len())
                .filter(|i| self.markets[*i].status == MarketStatus::Active)
                .collect();
            if !tradable.is_empty() {
                let span = now - previous;
                for action in 0..actions {
                    let ts =
                        previous + (span as i128 * (action as i128 + 1) / actions as i128) as i64;
                    let market = tradable[self.rng.random_range(0..tradable.len())];
                    self.act(market, ts, &mut out);
                }
            }
        }
        self.lifecycle(now, &mut out);
        if self.config.new_event_every_us > 0 {
            while self.next_listing_us <= now {
                self.next_listing_us += self.config.new_event_every_us;
                if self.series.is_empty() {
                    break;
                }
                let series = self.rng.random_range(0..self.series.len());
                let close = now + self.config.market_lifetime_us;
                self.list_event(series, now, close, &mut out);
            }
        }
        out
    }

    /// Steps the exchange once at every instant of `clock` that is due at `now_us` (at most
    /// `max_ticks` of them, so a server that fell far behind stays responsive; the rest are
    /// taken on later calls) and returns all their events in order. Stepping only on the
    /// clock's fixed grid makes the event stream and truth log independent of when the server
    /// happens to wake up (see [`crate::clock`]).
    pub fn advance(
        &mut self,
        clock: &mut crate::clock::VirtualClock,
        now_us: i64,
        max_ticks: u64,
    ) -> Vec<ExchangeEvent> {
        let mut out = Vec::new();
        for _ in 0..max_ticks {
            let Some(instant) = clock.take_due(now_us) else {
                break;
            };
            out.extend(self.step(instant));
        }
        out
    }

    fn emit(&mut self, out: &mut Vec<ExchangeEvent>, ts: i64, payload: EventPayload) {
        let market_seq = payload.market().map(|m| self.markets[m].book_seq);
        let event = ExchangeEvent {
            exchange_ts: ts,
            market_seq,
            payload,
        };
        if let EventPayload::Trade {
            market,
            trade_id,
            yes_price_e6,
            count_e2,
            taker,
        } = payload
        {
            self.trades.push(TradeRow {
                market,
                trade_id,
                yes_price_e6,
                count_e2,
                taker,
                created_us: ts,
            });
        }
        if self.config.keep_truth_log {
            let mut aux = core::mem::take(&mut self.aux);
            let record = self.record(&event, Header::default(), false, &mut aux);
            let truth = &mut self.truth;
            truth.extend_from_slice(b"{\"market_seq\":");
            match market_seq {
                Some(seq) => truth.extend_from_slice(seq.to_string().as_bytes()),
                None => truth.extend_from_slice(b"null"),
            }
            truth.extend_from_slice(b",\"record\":");
            let decoded = Decoded {
                record,
                aux: &aux,
                use_yes_price: Some(false),
            };
            write_canonical(&decoded, truth);
            truth.extend_from_slice(b"}\n");
            self.aux = aux;
        }
        out.push(event);
    }

    fn delta(
        &mut self,
        out: &mut Vec<ExchangeEvent>,
        ts: i64,
        market: usize,
        side: Side,
        price_e6: i64,
        delta_e2: i64,
    ) {
        let m = &mut self.markets[market];
        if delta_e2 == 0 || !m.book.apply(side, price_e6, delta_e2) {
            return;
        }
        m.book_seq += 1;
        m.updated_us = ts;
        self.emit(
            out,
            ts,
            EventPayload::Delta {
                market,
                side,
                price_e6,
                delta_e2,
            },
        );
    }

    fn ticker_if_changed(&mut self, out: &mut Vec<ExchangeEvent>, ts: i64, market: usize) {
        let state = self.markets[market].ticker_state();
        if self.markets[market].last_ticker == Some(state) {
            return;
        }
        self.markets[market].last_ticker = Some(state);
        self.emit(out, ts, EventPayload::Ticker { market, state });
    }

    fn lifecycle_event(
        &mut self,
        out: &mut Vec<ExchangeEvent>,
        ts: i64,
        market: usize,
        change: LifecycleChange,
    ) {
        self.markets[market].updated_us = ts;
        self.emit(out, ts, EventPayload::Lifecycle { market, change });
    }

    fn random_size(&mut self) -> i64 {
        let contracts = self.rng.random_range(1..=300_i64);
        if self.rng.random_range(0..5) == 0 {
            contracts * 100 - self.rng.random_range(1..100_i64)
        } else {
            contracts * 100
        }
    }

    /// The best price a new bid on `side` may rest at without crossing, from the fair value.
    fn quote_top(&self, market: usize, side: Side) -> Option<i64> {
        let m = &self.markets[market];
        let s = m.structure;
        let anchor = match side {
            Side::Yes => m.fair_e6,
            Side::No => ONE_DOLLAR_E6 - m.fair_e6,
        };
        s.tick_down(s.snap_down(anchor).max(s.min_price()).min(s.max_price()) + 1)
            .and_then(|p| s.tick_down(p))
            .or(Some(s.min_price()))
    }

    fn add_liquidity(
        &mut self,
        out: &mut Vec<ExchangeEvent>,
        ts: i64,
        market: usize,
        side: Side,
        depth: u32,
    ) {
        let Some(mut price) = self.quote_top(market, side) else {
            return;
        };
        let structure = self.markets[market].structure;
        for _ in 0..depth {
            match structure.tick_down(price) {
                Some(p) => price = p,
                None => break,
            }
        }
        let opposite = match side {
            Side::Yes => Side::No,
            Side::No => Side::Yes,
        };
        if let Some((best_other, _)) = self.markets[market].book.best(opposite)
            && price + best_other >= ONE_DOLLAR_E6
        {
            return;
        }
        let size = self.random_size();
        self.delta(out, ts, market, side, price, size);
    }

    fn seed_book(&mut self, out: &mut Vec<ExchangeEvent>, ts: i64, market: usize) {
        for side in [Side::Yes, Side::No] {
            let levels = self.rng.random_range(2..=5_u32);
            for depth in 0..levels {
                self.add_liquidity(out, ts, market, side, depth);
            }
        }
        self.ticker_if_changed(out, ts, market);
    }

    fn act(&mut self, market: usize, ts: i64, out: &mut Vec<ExchangeEvent>) {
        if self.markets[market].status != MarketStatus::Active {
            return;
        }
        let roll = self.rng.random_range(0..1000_u32);
        if roll < self.config.deactivate_per_mille {
            let m = &mut self.markets[market];
            m.status = MarketStatus::Inactive;
            m.reactivate_us = ts + self.config.deactivation_us;
            self.lifecycle_event(out, ts, market, LifecycleChange::Deactivated);
            return;
        }
        if roll < self.config.deactivate_per_mille + self.config.close_update_per_mille {
            let extra = whole_seconds(self.config.market_lifetime_us / 4).max(MICROS_PER_SECOND);
            let close_us = self.markets[market].close_us + extra;
            self.markets[market].close_us = close_us;
            self.lifecycle_event(
                out,
                ts,
                market,
                LifecycleChange::CloseDateUpdated { close_us },
            );
            return;
        }
        let step = self.rng.random_range(-2..=2_i64) * 5_000;
        let m = &mut self.markets[market];
        m.fair_e6 = (m.fair_e6 + step).clamp(50_000, 950_000);
        let side = if self.rng.random_bool(0.5) {
            Side::Yes
        } else {
            Side::No
        };
        match self.rng.random_range(0..4_u32) {
            0 | 1 => {
                let depth = self.rng.random_range(0..8_u32);
                self.add_liquidity(out, ts, market, side, depth);
            }
            2 => {
                let book = &self.markets[market].book;
                let levels = book.depth(side);
                if levels > 0 {
                    let index = self.rng.random_range(0..levels);
                    if let Some((price, size)) = self.markets[market].book.nth(side, index) {
                        let amount = if self.rng.random_bool(0.5) {
                            size
                        } else {
                            self.rng.random_range(1..=size)
                        };
                        self.delta(out, ts, market, side, price, -amount);
                    }
                }
            }
            _ => self.take(out, ts, market, side),
        }
        self.ticker_if_changed(out, ts, market);
    }

    /// A taker with outcome `taker` takes the best opposite bid: buying YES lifts the best NO bid
    /// (YES price 1 − p), selling YES (outcome NO) hits the best YES bid.
    fn take(&mut self, out: &mut Vec<ExchangeEvent>, ts: i64, market: usize, taker: Side) {
        let hit = match taker {
            Side::Yes => Side::No,
            Side::No => Side::Yes,
        };
        let Some((price, size)) = self.markets[market].book.best(hit) else {
            return;
        };
        let count = if self.rng.random_range(0..3) == 0 {
            size
        } else {
            self.rng.random_range(1..=size)
        };
        let yes_price_e6 = match taker {
            Side::Yes => ONE_DOLLAR_E6 - price,
            Side::No => price,
        };
        let id = uuid(&mut self.rng);
        let trade_id = TradeId::new(&id).unwrap_or_default();
        let open_up = self.rng.random_bool(0.6);
        self.delta(out, ts, market, hit, price, -count);
        let m = &mut self.markets[market];
        m.volume_e2 += count;
        m.dollar_volume_e6 += count * yes_price_e6 / 100;
        m.open_interest_e2 = if open_up {
            m.open_interest_e2 + count
        } else {
            (m.open_interest_e2 - count).max(0)
        };
        m.last_price_e6 = Some(yes_price_e6);
        m.last_trade_size_e2 = count;
        self.emit(
            out,
            ts,
            EventPayload::Trade {
                market,
                trade_id,
                yes_price_e6,
                count_e2: count,
                taker,
            },
        );
    }

    fn lifecycle(&mut self, now: i64, out: &mut Vec<ExchangeEvent>) {
        for market in 0..self.markets.len() {
            let status = self.markets[market].status;
            let m = &self.markets[market];
            match status {
                MarketStatus::Initialized if now >= m.open_us => {
                    self.markets[market].status = MarketStatus::Active;
                    self.markets[market].updated_us = now;
                    self.seed_book(out, now, market);
                }
                MarketStatus::Inactive if now >= m.reactivate_us && now < m.close_us => {
                    self.markets[market].status = MarketStatus::Active;
                    self.lifecycle_event(out, now, market, LifecycleChange::Activated);
                }
                MarketStatus::Active | MarketStatus::Inactive if now >= m.close_us => {
                    self.markets[market].status = MarketStatus::Closed;
                    self.markets[market].updated_us = now;
                }
                MarketStatus::Closed if now >= m.close_us + self.config.determine_delay_us => {
                    let result = if self.rng.random_range(0..ONE_DOLLAR_E6) < m.fair_e6 {
                        Side::Yes
                    } else {
                        Side::No
                    };
                    let determination_us = whole_seconds(now);
                    let m = &mut self.markets[market];
                    m.status = MarketStatus::Determined;
                    m.result = Some(result);
                    m.determined_us = Some(determination_us);
                    let settlement_value_e6 = if result == Side::Yes {
                        ONE_DOLLAR_E6
                    } else {
                        0
                    };
                    self.lifecycle_event(
                        out,
                        now,
                        market,
                        LifecycleChange::Determined {
                            result,
                            settlement_value_e6,
                            determination_us,
                        },
                    );
                }
                MarketStatus::Determined
                    if now >= m.determined_us.unwrap_or(now) + self.config.settle_delay_us =>
                {
                    let settled_us = whole_seconds(now);
                    let m = &mut self.markets[market];
                    m.status = MarketStatus::Finalized;
                    m.settled_us = Some(settled_us);
                    self.lifecycle_event(out, now, market, LifecycleChange::Settled { settled_us });
                }
                _ => {}
            }
        }
    }

    fn list_event(&mut self, series: usize, now: i64, close: i64, out: &mut Vec<ExchangeEvent>) {
        let close = whole_seconds(close).max(whole_seconds(now) + MICROS_PER_SECOND);
        let (year, month, day, hour, minute) = civil(close);
        let series_ticker = self.series[series].ticker.clone();
        let base = format!(
            "{series_ticker}-{:02}{}{:02}{:02}",
            year.rem_euclid(100),
            MONTHS[(month + 11) % 12],
            day,
            hour
        );
        let mut ticker = base.clone();
        if self.event_tickers.contains(&ticker) {
            ticker = format!("{base}{minute:02}");
            let mut suffix = 0_u32;
            while self.event_tickers.contains(&ticker) {
                suffix += 1;
                ticker = format!(
                    "{base}{minute:02}{}",
                    char::from(b'A' + (suffix % 26) as u8)
                );
                if suffix > 26 {
                    ticker = format!("{base}{minute:02}X{suffix}");
                }
            }
        }
        self.event_tickers.insert(ticker.clone());
        let s = &self.series[series];
        let (structure, strike_base, strike_step) = (s.structure, s.strike_base, s.strike_step);
        let event_index = self.events.len();
        let title = format!(
            "{} on {} {day}, {year} at {hour:02}:{minute:02} UTC?",
            s.title,
            MONTHS[(month + 11) % 12]
        );
        self.events.push(Event {
            ticker: ticker.clone(),
            series,
            title: title.clone(),
            subtitle: format!(
                "{} {day} at {hour:02}:{minute:02}",
                MONTHS[(month + 11) % 12]
            ),
            strike_date_us: close,
            markets: Vec::new(),
            created_us: now,
        });
        self.emit(out, now, EventPayload::EventCreated { event: event_index });
        let count = self.config.markets_per_event as i64;
        let shift = self.rng.random_range(-3..=3_i64) * strike_step;
        for k in 0..count {
            let strike = strike_base + shift + (k - count / 2) * strike_step;
            let floor_strike = format!("{}.99", strike - 1);
            let market_ticker = format!("{ticker}-T{floor_strike}");
            let delayed = self.rng.random_range(0..1000_u32) < self.config.delayed_open_per_mille;
            let open_us = if delayed {
                whole_seconds(now)
                    + whole_seconds(self.config.market_lifetime_us / 10).max(MICROS_PER_SECOND)
            } else {
                whole_seconds(now)
            };
            let open_us = open_us.min(close - MICROS_PER_SECOND);
            let market_id = uuid(&mut self.rng);
            // Higher strikes are less likely for "above" markets.
            let fair_e6 = (ONE_DOLLAR_E6 * (count - k) / (count + 1)).clamp(50_000, 950_000);
            let index = self.markets.len();
            self.markets.push(Market {
                ticker: market_ticker.clone(),
                market_id,
                event: event_index,
                structure,
                floor_strike: floor_strike.clone(),
                title: format!("{title} Above {floor_strike}"),
                sub_title: format!("{floor_strike} or above"),
                status: MarketStatus::Initialized,
                created_us: now,
                open_us,
                close_us: close,
                determined_us: None,
                settled_us: None,
                result: None,
                updated_us: now,
                book: Book::default(),
                book_seq: 0,
                volume_e2: 0,
                open_interest_e2: 0,
                dollar_volume_e6: 0,
                last_price_e6: None,
                last_trade_size_e2: 0,
                fair_e6,
                reactivate_us: 0,
                last_ticker: None,
            });
            self.by_ticker.insert(market_ticker, index);
            self.events[event_index].markets.push(index);
            self.lifecycle_event(
                out,
                now,
                index,
                LifecycleChange::Created {
                    open_us,
                    close_us: close,
                },
            );
            if open_us <= now {
                self.markets[index].status = MarketStatus::Active;
                self.seed_book(out, now, index);
            }
        }
    }

    /// Builds the wire record of an exchange event with the given envelope. With
    /// `use_yes_price`, a NO-side delta's price is quoted in YES-leg price (1 − p). Variable-size
    /// parts go into `aux`, which is cleared first.
    pub fn record(
        &self,
        event: &ExchangeEvent,
        header: Header,
        use_yes_price: bool,
        aux: &mut Aux,
    ) -> Record {
        aux.clear();
        let ts = Some(event.exchange_ts);
        match event.payload {
            EventPayload::Delta {
                market,
                side,
                price_e6,
                delta_e2,
            } => {
                let m = &self.markets[market];
                let price_e6 = if use_yes_price && side == Side::No {
                    ONE_DOLLAR_E6 - price_e6
                } else {
                    price_e6
                };
                Record::Delta(Delta {
                    header,
                    exchange_ts: ts,
                    price_e6,
                    delta_e2,
                    side,
                    ticker: Ticker::new(&m.ticker).unwrap_or_default(),
                    market_id: MarketId::new(&m.market_id).unwrap_or_default(),
                })
            }
            EventPayload::Trade {
                market,
                trade_id,
                yes_price_e6,
                count_e2,
                taker,
            } => Record::Trade(Trade {
                header,
                exchange_ts: ts,
                yes_price_e6,
                no_price_e6: ONE_DOLLAR_E6 - yes_price_e6,
                count_e2,
                ticker: Ticker::new(&self.markets[market].ticker).unwrap_or_default(),
                trade_id,
                taker_side: Some(taker),
                taker_outcome_side: Some(taker),
                taker_book_side: Some(match taker {
                    Side::Yes => BookSide::Bid,
                    Side::No => BookSide::Ask,
                }),
                is_block_trade: Some(false),
            }),
            EventPayload::Ticker { market, state } => {
                let m = &self.markets[market];
                Record::Ticker(ticker_update(m, &state, header, ts))
            }
            EventPayload::Lifecycle { market, change } => {
                Record::MarketLifecycle(self.lifecycle_record(market, change, header, aux))
            }
            EventPayload::EventCreated { event } => {
                let e = &self.events[event];
                let event_ticker = aux.push_text(&e.ticker);
                let series_ticker = Some(aux.push_text(&self.series[e.series].ticker));
                let title = Some(aux.push_text(&e.title));
                let subtitle = Some(aux.push_text(&e.subtitle));
                let collateral = Some(aux.push_text("MECNET"));
                Record::EventLifecycle(EventLifecycle {
                    header,
                    kind: EventKind::Created,
                    event_ticker,
                    series_ticker,
                    title,
                    subtitle,
                    collateral_return_type: collateral,
                    exchange_index: Some(0),
                    strike_date: Some(e.strike_date_us),
                    strike_period: None,
                    fee_type_override: None,
                    fee_multiplier_override: None,
                })
            }
        }
    }

    fn lifecycle_record(
        &self,
        market: usize,
        change: LifecycleChange,
        header: Header,
        aux: &mut Aux,
    ) -> MarketLifecycle {
        let m = &self.markets[market];
        let event_type = aux.push_text(change.event_type());
        let mut record = MarketLifecycle {
            header,
            mve: false,
            event_type,
            ticker: Ticker::new(&m.ticker).unwrap_or_default(),
            exchange_index: None,
            open_ts: None,
            close_ts: None,
            determination_ts: None,
            settled_ts: None,
            result: None,
            settlement_value_e6: None,
            is_deactivated: None,
            price_level_structure: None,
            price_ranges: 0,
            metadata: MarketMetadata::default(),
        };
        match change {
            LifecycleChange::Created { open_us, close_us } => {
                let e = &self.events[m.event];
                record.exchange_index = Some(0);
                record.open_ts = Some(open_us);
                record.close_ts = Some(close_us);
                record.price_level_structure = Some(aux.push_text(m.structure.as_str()));
                for range in m.structure.ranges() {
                    aux.push_price_range(*range);
                }
                record.price_ranges = m.structure.ranges().len() as u32;
                record.metadata = MarketMetadata {
                    name: Some(aux.push_text(&m.title)),
                    title: Some(aux.push_text(&m.title)),
                    yes_sub_title: Some(aux.push_text(&m.sub_title)),
                    no_sub_title: Some(aux.push_text(&m.sub_title)),
                    rules_primary: Some(aux.push_text(&format!(
                        "If the value is above {} at the close, then the market resolves to Yes.",
                        m.floor_strike
                    ))),
                    rules_secondary: Some(aux.push_text("Simulated market.")),
                    can_close_early: Some(false),
                    event_ticker: Some(aux.push_text(&e.ticker)),
                    expected_expiration_ts: Some(close_us),
                    strike_type: Some(aux.push_text("greater")),
                    floor_strike: Some(Scalar {
                        text: aux.push_text(&m.floor_strike),
                        is_number: true,
                    }),
                    cap_strike: None,
                    custom_strike: None,
                };
            }
            LifecycleChange::Activated => record.is_deactivated = Some(false),
            LifecycleChange::Deactivated => record.is_deactivated = Some(true),
            LifecycleChange::CloseDateUpdated { close_us } => record.close_ts = Some(close_us),
            LifecycleChange::Determined {
                result,
                settlement_value_e6,
                determination_us,
            } => {
                record.result = Some(aux.push_text(result.as_str()));
                record.settlement_value_e6 = Some(settlement_value_e6);
                record.determination_ts = Some(determination_us);
            }
            LifecycleChange::Settled { settled_us } => record.settled_ts = Some(settled_us),
        }
        record
    }

    /// Builds an `orderbook_snapshot` record for `ticker` from the current book (an empty
    /// snapshot with `market_id: ""` for an unknown ticker). `aux` is cleared first.
    pub fn snapshot_record(
        &self,
        ticker: &str,
        header: Header,
        use_yes_price: bool,
        aux: &mut Aux,
    ) -> Record {
        aux.clear();
        let (market_id, yes, no) = match self.market(ticker) {
            Some(m) => (
                MarketId::new(&m.market_id).unwrap_or_default(),
                m.book.levels(Side::Yes),
                if use_yes_price {
                    m.book.no_levels_yes_priced()
                } else {
                    m.book.levels(Side::No)
                },
            ),
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

    /// A `ticker` record with the market's current values, stamped `now_us` (for
    /// `send_initial_snapshot`). `None` for an unknown ticker.
    #[must_use]
    pub fn current_ticker_record(&self, ticker: &str, header: Header) -> Option<Record> {
        let m = self.market(ticker)?;
        let ts = if self.now_us == i64::MIN {
            None
        } else {
            Some(self.now_us)
        };
        Some(Record::Ticker(ticker_update(
            m,
            &m.ticker_state(),
            header,
            ts,
        )))
    }
}

fn ticker_update(m: &Market, state: &TickerState, header: Header, ts: Option<i64>) -> TickerUpdate {
    TickerUpdate {
        header,
        exchange_ts: ts,
        ticker: Ticker::new(&m.ticker).unwrap_or_default(),
        market_id: MarketId::new(&m.market_id).unwrap_or_default(),
        price_e6: Some(state.price_e6),
        yes_bid_e6: Some(state.yes_bid_e6),
        yes_ask_e6: Some(state.yes_ask_e6),
        yes_bid_size_e2: Some(state.yes_bid_size_e2),
        yes_ask_size_e2: Some(state.yes_ask_size_e2),
        last_trade_size_e2: Some(state.last_trade_size_e2),
        volume_e2: Some(state.volume_e2),
        open_interest_e2: Some(state.open_interest_e2),
        dollar_volume_e6: Some(state.dollar_volume_e6),
        dollar_open_interest_e6: Some(state.dollar_open_interest_e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Calendar conversion used for event tickers.
    #[test]
    fn civil_dates() {
        // 2026-11-30T17:05:00Z
        assert_eq!(
            civil(1_796_058_300 * MICROS_PER_SECOND),
            (2026, 11, 30, 17, 5)
        );
        assert_eq!(civil(0), (1970, 1, 1, 0, 0));
    }
}
