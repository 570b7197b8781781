//! One WebSocket connection's protocol state machine (`protocol.md` §5.4–5.7, §8).
//!
//! A [`Session`] parses client command text and answers with rendered frames; it turns exchange
//! events into data frames for its subscriptions. It owns sids (from 1, per connection), each
//! subscription's seq counter (from 1, shared by the sid's markets, consumed by `ok`,
//! `unsubscribed`, subscription-scoped errors, snapshots, deltas, trades and lifecycle messages;
//! never by `subscribed`, `ticker` or the `list_subscriptions` reply), and the per-connection
//! command token bucket.

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU64;

use kalshi_wire::{Aux, Control, ControlKind, Decoded, Header, Record, TextList, render_frame};
use serde_json::Value;

use crate::exchange::{EventPayload, Exchange, ExchangeEvent};

/// Where a session takes the books and ticker values it answers commands with: the
/// [`Exchange`], or the load generator ([`crate::load::LoadGen`]).
pub trait MarketSource {
    /// An `orderbook_snapshot` record of `ticker`'s current book (an empty snapshot with
    /// `market_id: ""` for an unknown ticker). `aux` is cleared first.
    fn snapshot_record(
        &self,
        ticker: &str,
        header: Header,
        use_yes_price: bool,
        aux: &mut Aux,
    ) -> Record;

    /// A `ticker` record with `ticker`'s current values (`send_initial_snapshot`); `None` for
    /// an unknown ticker. `aux` is cleared first.
    fn current_ticker_record(&self, ticker: &str, header: Header, aux: &mut Aux) -> Option<Record>;
}

impl MarketSource for Exchange {
    fn snapshot_record(
        &self,
        ticker: &str,
        header: Header,
        use_yes_price: bool,
        aux: &mut Aux,
    ) -> Record {
        Exchange::snapshot_record(self, ticker, header, use_yes_price, aux)
    }

    fn current_ticker_record(&self, ticker: &str, header: Header, aux: &mut Aux) -> Option<Record> {
        aux.clear();
        Exchange::current_ticker_record(self, ticker, header)
    }
}

/// A read-only view of one subscription, for servers that route frames themselves (load
/// mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubscriptionView<'a> {
    /// The sid.
    pub sid: u64,
    /// The channel.
    pub channel: Channel,
    /// The market filter; `None` = every market (firehose or global channel).
    pub markets: Option<&'a [String]>,
    /// The subscription's `use_yes_price`.
    pub use_yes_price: bool,
    /// The last seq used on the sid.
    pub last_seq: u64,
}

/// Per-connection limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Most markets one subscription may hold (error 26 beyond it).
    pub market_limit: usize,
    /// Commands per second the token bucket refills (error 27 when empty); 0 disables the limit.
    pub commands_per_second: u32,
    /// Bucket capacity in commands.
    pub command_burst: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            market_limit: 1000,
            commands_per_second: 20,
            command_burst: 40,
        }
    }
}

/// The channels a subscription can be on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `orderbook_delta` (needs a market filter).
    OrderbookDelta,
    /// `ticker` (unsequenced; no filter = every market).
    Ticker,
    /// `trade` (no filter = every market).
    Trade,
    /// `market_lifecycle_v2` (global; also carries `event_lifecycle`).
    MarketLifecycleV2,
    /// `multivariate_market_lifecycle` (accepted; the simulator lists no MVE markets).
    MultivariateMarketLifecycle,
    /// A private or index channel: accepted, never produces data here.
    Quiet(&'static str),
}

const QUIET: [&str; 8] = [
    "fill",
    "market_positions",
    "user_orders",
    "order_group_updates",
    "communications",
    "cfbenchmarks_value",
    "cfbenchmarks_value_5hz",
    "pyth_value",
];

impl Channel {
    /// Parses a channel name; `None` for an unknown one (error 8, e.g. `ticker_v2`).
    #[must_use]
    pub fn parse(name: &str) -> Option<Channel> {
        Some(match name {
            "orderbook_delta" => Channel::OrderbookDelta,
            "ticker" => Channel::Ticker,
            "trade" => Channel::Trade,
            "market_lifecycle_v2" => Channel::MarketLifecycleV2,
            "multivariate_market_lifecycle" => Channel::MultivariateMarketLifecycle,
            other => Channel::Quiet(QUIET.iter().find(|q| **q == other)?),
        })
    }

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::OrderbookDelta => "orderbook_delta",
            Channel::Ticker => "ticker",
            Channel::Trade => "trade",
            Channel::MarketLifecycleV2 => "market_lifecycle_v2",
            Channel::MultivariateMarketLifecycle => "multivariate_market_lifecycle",
            Channel::Quiet(name) => name,
        }
    }

    const fn market_filtered(self) -> bool {
        matches!(
            self,
            Channel::OrderbookDelta | Channel::Ticker | Channel::Trade
        )
    }
}

/// What an outbound frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// `subscribed`.
    Subscribed,
    /// `ok` acknowledgement.
    Ok,
    /// `ok` carrying the `list_subscriptions` array.
    SubscriptionList,
    /// `unsubscribed`.
    Unsubscribed,
    /// `error`.
    Error,
    /// `orderbook_snapshot`.
    Snapshot,
    /// `orderbook_delta`.
    Delta,
    /// `trade`.
    Trade,
    /// `ticker`.
    Ticker,
    /// `market_lifecycle_v2`.
    MarketLifecycle,
    /// `event_lifecycle`.
    EventLifecycle,
    /// A deliberately broken frame (fault injection).
    Malformed,
}

/// A frame to send as one WebSocket text message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// The frame's JSON text.
    pub text: Vec<u8>,
    /// What it is.
    pub kind: FrameKind,
    /// The subscription it belongs to, if any.
    pub sid: Option<u64>,
    /// Its seq, if sequenced.
    pub seq: Option<u64>,
    /// True for error 25: the subscription has been dropped.
    pub terminal: bool,
}

#[derive(Clone, Debug)]
struct Subscription {
    channel: Channel,
    /// `None` = every market (firehose / global).
    markets: Option<Vec<String>>,
    /// The same markets as a set: `covers` runs for every event on every subscription, and a
    /// scan of up to `market_limit` tickers each time made 100k subscribed markets too slow.
    index: HashSet<String>,
    use_yes_price: bool,
    skip_ticker_ack: bool,
    last_seq: u64,
    skips_pending: u32,
    dups_pending: u32,
}

impl Subscription {
    fn covers(&self, ticker: &str) -> bool {
        self.markets.is_none() || self.index.contains(ticker)
    }
}

/// A protocol error: code and documented message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    /// Numeric code.
    pub code: i64,
    /// Message text.
    pub message: &'static str,
}

macro_rules! errors {
    ($($name:ident = $code:expr, $msg:expr;)*) => {
        impl ProtocolError {
            $(
                #[doc = concat!("Error ", stringify!($code), ": ", $msg, ".")]
                pub const $name: ProtocolError = ProtocolError { code: $code, message: $msg };
            )*
        }
    };
}

errors! {
    UNABLE_TO_PROCESS = 1, "Unable to process message";
    PARAMS_REQUIRED = 2, "Params required";
    CHANNELS_REQUIRED = 3, "Channels required";
    SIDS_REQUIRED = 4, "Subscription IDs required";
    UNKNOWN_COMMAND = 5, "Unknown command";
    ALREADY_SUBSCRIBED = 6, "Already subscribed";
    UNKNOWN_SID = 7, "Unknown subscription ID";
    UNKNOWN_CHANNEL = 8, "Unknown channel name";
    AUTHENTICATION_REQUIRED = 9, "Authentication required";
    CHANNEL_ERROR = 10, "Channel error";
    INVALID_PARAMETER = 11, "Invalid parameter";
    EXACTLY_ONE_SID = 12, "Exactly one subscription ID is required";
    UNSUPPORTED_ACTION = 13, "Unsupported action";
    MARKET_TICKER_REQUIRED = 14, "Market Ticker required";
    ACTION_REQUIRED = 15, "Action required";
    COMMAND_TIMEOUT = 18, "Command timeout";
    BUFFER_OVERFLOW = 25, "Subscription buffer overflow";
    MARKET_LIMIT = 26, "Subscription market limit exceeded";
    TOO_MANY_REQUESTS = 27, "Too many requests";
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    next_sid: u64,
    subs: BTreeMap<u64, Subscription>,
    tokens_e6: i64,
    refilled_us: Option<i64>,
    aux: Aux,
    generation: u64,
}

fn nz(value: u64) -> Option<NonZeroU64> {
    NonZeroU64::new(value)
}

fn control(kind: ControlKind, header: Header) -> Control {
    Control {
        header,
        kind,
        channel: None,
        code: None,
        message: None,
        market_ticker: None,
        market_tickers: TextList::default(),
        market_ids: TextList::default(),
        subscriptions: 0,
    }
}

/// Parses a market filter (`market_ticker` or `market_tickers`); `Ok(None)` when absent.
fn market_filter(params: &Value) -> Result<Option<Vec<String>>, ProtocolError> {
    let one = params.get("market_ticker");
    let many = params.get("market_tickers");
    let mut out: Vec<String> = Vec::new();
    match (one, many) {
        (Some(_), Some(_)) => return Err(ProtocolError::INVALID_PARAMETER),
        (Some(Value::String(t)), None) => out.push(t.clone()),
        (Some(_), None) => return Err(ProtocolError::INVALID_PARAMETER),
        (None, Some(Value::Array(items))) => {
            for item in items {
                let Value::String(t) = item else {
                    return Err(ProtocolError::INVALID_PARAMETER);
                };
                if !out.contains(t) {
                    out.push(t.clone());
                }
            }
        }
        (None, Some(_)) => return Err(ProtocolError::INVALID_PARAMETER),
        (None, None) => return Ok(None),
    }
    if out.iter().any(|t| t.is_empty() || t.len() > 63) {
        return Err(ProtocolError::INVALID_PARAMETER);
    }
    Ok(if out.is_empty() { None } else { Some(out) })
}

fn flag(params: &Value, key: &str) -> Result<bool, ProtocolError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(ProtocolError::INVALID_PARAMETER),
    }
}

impl Session {
    /// A new connection: no subscriptions, next sid 1, a full token bucket.
    #[must_use]
    pub fn new(config: SessionConfig) -> Self {
        let tokens_e6 = i64::from(config.command_burst) * 1_000_000;
        Self {
            config,
            next_sid: 1,
            subs: BTreeMap::new(),
            tokens_e6,
            refilled_us: None,
            aux: Aux::default(),
            generation: 0,
        }
    }

    /// A counter that changes whenever the set of subscriptions or their market lists may
    /// have changed (after every command and every fault that drops a subscription). A server
    /// that caches routing ([`crate::load::LoadRoute`]) rebuilds it when this moves.
    #[must_use]
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// Every live subscription, ascending by sid.
    #[must_use]
    pub fn subscription_views(&self) -> Vec<SubscriptionView<'_>> {
        self.subs
            .iter()
            .map(|(sid, s)| SubscriptionView {
                sid: *sid,
                channel: s.channel,
                markets: s.markets.as_deref(),
                use_yes_price: s.use_yes_price,
                last_seq: s.last_seq,
            })
            .collect()
    }

    /// Takes the next seq of `sid` for a frame the caller renders itself (load mode).
    /// `None` for an unknown sid, or when a [`Session::fault_skip_seq`] swallows this frame
    /// (its seq is consumed; do not send it).
    pub fn next_seq(&mut self, sid: u64) -> Option<u64> {
        match self.take_seq(sid) {
            (seq, false) => Some(seq),
            (_, true) => None,
        }
    }

    /// Whether the frame just rendered on `sid` must be sent twice
    /// ([`Session::fault_duplicate_next`]); consumes the pending duplicate.
    pub fn take_duplicate(&mut self, sid: u64) -> bool {
        match self.subs.get_mut(&sid) {
            Some(sub) if sub.dups_pending > 0 => {
                sub.dups_pending -= 1;
                true
            }
            _ => false,
        }
    }

    fn push_data(&mut self, sid: u64, outbound: Outbound, out: &mut Vec<Outbound>) {
        if self.take_duplicate(sid) {
            out.push(outbound.clone());
        }
        out.push(outbound);
    }

    /// The live subscriptions as `(sid, channel)`, ascending by sid.
    #[must_use]
    pub fn subscriptions(&self) -> Vec<(u64, Channel)> {
        self.subs.iter().map(|(sid, s)| (*sid, s.channel)).collect()
    }

    fn frame(&mut self, record: Record, use_yes_price: Option<bool>) -> Vec<u8> {
        let mut text = Vec::with_capacity(160);
        let decoded = Decoded {
            record,
            aux: &self.aux,
            use_yes_price,
        };
        render_frame(&decoded, &mut text);
        text
    }

    fn error(
        &mut self,
        id: Option<NonZeroU64>,
        error: ProtocolError,
        scope: Option<u64>,
    ) -> Outbound {
        let mut seq = None;
        if let Some(sid) = scope
            && let Some(sub) = self.subs.get_mut(&sid)
        {
            sub.last_seq += 1;
            seq = Some(sub.last_seq);
        }
        self.aux.clear();
        let mut record = control(
            ControlKind::Error,
            Header {
                id,
                sid: scope.and_then(nz),
                seq: seq.and_then(nz),
            },
        );
        record.code = Some(error.code);
        record.message = Some(self.aux.push_text(error.message));
        let text = self.frame(Record::Control(record), None);
        Outbound {
            text,
            kind: FrameKind::Error,
            sid: scope,
            seq,
            terminal: matches!(error.code, 10 | 25),
        }
    }

    /// Takes the next seq of `sid`; `None` when a skip fault swallows this frame.
    fn take_seq(&mut self, sid: u64) -> (u64, bool) {
        match self.subs.get_mut(&sid) {
            Some(sub) => {
                sub.last_seq += 1;
                let dropped = sub.skips_pending > 0;
                if dropped {
                    sub.skips_pending -= 1;
                }
                (sub.last_seq, dropped)
            }
            None => (0, true),
        }
    }

    fn refill(&mut self, now_us: i64) {
        let cap = i64::from(self.config.command_burst) * 1_000_000;
        if let Some(last) = self.refilled_us {
            let elapsed = (now_us - last).max(0);
            let add = elapsed.saturating_mul(i64::from(self.config.commands_per_second));
            self.tokens_e6 = self.tokens_e6.saturating_add(add).min(cap);
        }
        self.refilled_us = Some(self.refilled_us.map_or(now_us, |l| l.max(now_us)));
    }

    /// Handles one client text frame received at `now_us` and returns the frames to send, in
    /// order. Snapshots reflect `exchange`'s current books, so the server must deliver every
    /// event of past steps ([`Session::deliver`]) before handling a command.
    pub fn handle_command(
        &mut self,
        now_us: i64,
        text: &[u8],
        exchange: &Exchange,
    ) -> Vec<Outbound> {
        self.handle_command_on(now_us, text, exchange)
    }

    /// [`Session::handle_command`] against any [`MarketSource`] (e.g. the load generator).
    pub fn handle_command_on(
        &mut self,
        now_us: i64,
        text: &[u8],
        exchange: &dyn MarketSource,
    ) -> Vec<Outbound> {
        self.generation = self.generation.wrapping_add(1);
        let mut out = Vec::new();
        let Ok(Value::Object(command)) = serde_json::from_slice::<Value>(text) else {
            out.push(self.error(None, ProtocolError::UNABLE_TO_PROCESS, None));
            return out;
        };
        let id = match command.get("id") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) => nz(v),
                None => {
                    out.push(self.error(None, ProtocolError::UNABLE_TO_PROCESS, None));
                    return out;
                }
            },
            Some(_) => {
                out.push(self.error(None, ProtocolError::UNABLE_TO_PROCESS, None));
                return out;
            }
        };
        if self.config.commands_per_second > 0 {
            self.refill(now_us);
            if self.tokens_e6 < 1_000_000 {
                out.push(self.error(id, ProtocolError::TOO_MANY_REQUESTS, None));
                return out;
            }
            self.tokens_e6 -= 1_000_000;
        }
        let cmd = command.get("cmd").and_then(Value::as_str).unwrap_or("");
        let params = command.get("params");
        let result = match cmd {
            "subscribe" => self.subscribe(id, params, exchange, &mut out),
            "unsubscribe" => self.unsubscribe(id, params, &mut out),
            "update_subscription" => self.update(id, params, exchange, &mut out),
            "list_subscriptions" => {
                self.list(id, &mut out);
                Ok(())
            }
            _ => Err(ProtocolError::UNKNOWN_COMMAND),
        };
        if let Err(error) = result {
            out.push(self.error(id, error, None));
        }
        out
    }

    fn snapshot(
        &mut self,
        exchange: &dyn MarketSource,
        sid: u64,
        id: Option<NonZeroU64>,
        ticker: &str,
        out: &mut Vec<Outbound>,
    ) {
        let use_yes_price = self.subs.get(&sid).is_some_and(|s| s.use_yes_price);
        let (seq, dropped) = self.take_seq(sid);
        if dropped {
            return;
        }
        let header = Header {
            id,
            sid: nz(sid),
            seq: nz(seq),
        };
        let record = exchange.snapshot_record(ticker, header, use_yes_price, &mut self.aux);
        let text = self.frame(record, Some(use_yes_price));
        let outbound = Outbound {
            text,
            kind: FrameKind::Snapshot,
            sid: Some(sid),
            seq: Some(seq),
            terminal: false,
        };
        self.push_data(sid, outbound, out);
    }

    fn initial_tickers(
        &mut self,
        exchange: &dyn MarketSource,
        sid: u64,
        tickers: &[String],
        out: &mut Vec<Outbound>,
    ) {
        for ticker in tickers {
            let header = Header {
                id: None,
                sid: nz(sid),
                seq: None,
            };
            if let Some(record) = exchange.current_ticker_record(ticker, header, &mut self.aux) {
                let text = self.frame(record, None);
                out.push(Outbound {
                    text,
                    kind: FrameKind::Ticker,
                    sid: Some(sid),
                    seq: None,
                    terminal: false,
                });
            }
        }
    }

    fn ok(&mut self, id: Option<NonZeroU64>, sid: u64, out: &mut Vec<Outbound>) {
        let (seq, dropped) = self.take_seq(sid);
        if dropped {
            return;
        }
        self.aux.clear();
        let mut record = control(
            ControlKind::Ok,
            Header {
                id,
                sid: nz(sid),
                seq: nz(seq),
            },
        );
        if let Some(sub) = self.subs.get(&sid)
            && !sub.skip_ticker_ack
            && let Some(markets) = &sub.markets
        {
            record.market_tickers = self.aux.push_list(markets.iter().map(String::as_str));
        }
        let text = self.frame(Record::Control(record), None);
        out.push(Outbound {
            text,
            kind: FrameKind::Ok,
            sid: Some(sid),
            seq: Some(seq),
            terminal: false,
        });
    }

    fn subscribe(
        &mut self,
        id: Option<NonZeroU64>,
        params: Option<&Value>,
        exchange: &dyn MarketSource,
        out: &mut Vec<Outbound>,
    ) -> Result<(), ProtocolError> {
        let Some(params) = params.filter(|p| p.is_object()) else {
            return Err(ProtocolError::PARAMS_REQUIRED);
        };
        let channels = match params.get("channels") {
            None | Some(Value::Null) => return Err(ProtocolError::CHANNELS_REQUIRED),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(ProtocolError::CHANNELS_REQUIRED);
            }
            Some(Value::Array(items)) => {
                let mut channels = Vec::new();
                for item in items {
                    let Value::String(name) = item else {
                        return Err(ProtocolError::INVALID_PARAMETER);
                    };
                    let channel = Channel::parse(name).ok_or(ProtocolError::UNKNOWN_CHANNEL)?;
                    if !channels.contains(&channel) {
                        channels.push(channel);
                    }
                }
                channels
            }
            Some(_) => return Err(ProtocolError::INVALID_PARAMETER),
        };
        let filter = market_filter(params)?;
        let use_yes_price = flag(params, "use_yes_price")?;
        let skip_ticker_ack = flag(params, "skip_ticker_ack")?;
        let send_initial_snapshot = flag(params, "send_initial_snapshot")?;
        if filter.is_none() && channels.contains(&Channel::OrderbookDelta) {
            return Err(ProtocolError::MARKET_TICKER_REQUIRED);
        }
        // Validate the market cap for every channel before changing anything.
        for channel in &channels {
            if !channel.market_filtered() {
                continue;
            }
            let Some(filter) = &filter else { continue };
            let existing = self
                .subs
                .values()
                .find(|s| s.channel == *channel && s.markets.is_some());
            let merged = existing.map_or(0, |s| s.index.len())
                + filter
                    .iter()
                    .filter(|t| existing.is_none_or(|e| !e.index.contains(*t)))
                    .count();
            if merged > self.config.market_limit {
                return Err(ProtocolError::MARKET_LIMIT);
            }
        }
        for channel in channels {
            let existing = self
                .subs
                .iter()
                .find(|(_, s)| s.channel == channel)
                .map(|(sid, _)| *sid);
            if let Some(sid) = existing {
                // Repeat subscribe: merge, `ok` on the existing sid, snapshots for new markets.
                let mut added = Vec::new();
                if let (Some(sub), Some(filter)) = (self.subs.get_mut(&sid), &filter)
                    && let Some(markets) = sub.markets.as_mut()
                {
                    for ticker in filter {
                        if sub.index.insert(ticker.clone()) {
                            markets.push(ticker.clone());
                            added.push(ticker.clone());
                        }
                    }
                }
                self.ok(id, sid, out);
                if channel == Channel::OrderbookDelta {
                    for ticker in &added {
                        self.snapshot(exchange, sid, None, ticker, out);
                    }
                }
                if channel == Channel::Ticker && send_initial_snapshot {
                    self.initial_tickers(exchange, sid, &added, out);
                }
                continue;
            }
            let sid = self.next_sid;
            self.next_sid += 1;
            let markets = if channel.market_filtered() {
                filter.clone()
            } else {
                None
            };
            self.subs.insert(
                sid,
                Subscription {
                    channel,
                    index: markets.iter().flatten().cloned().collect(),
                    markets: markets.clone(),
                    use_yes_price,
                    skip_ticker_ack,
                    last_seq: 0,
                    skips_pending: 0,
                    dups_pending: 0,
                },
            );
            self.aux.clear();
            let mut record = control(
                ControlKind::Subscribed,
                Header {
                    id,
                    sid: nz(sid),
                    seq: None,
                },
            );
            record.channel = Some(self.aux.push_text(channel.as_str()));
            let text = self.frame(Record::Control(record), None);
            out.push(Outbound {
                text,
                kind: FrameKind::Subscribed,
                sid: Some(sid),
                seq: None,
                terminal: false,
            });
            let tickers = markets.unwrap_or_default();
            if channel == Channel::OrderbookDelta {
                for ticker in &tickers {
                    self.snapshot(exchange, sid, None, ticker, out);
                }
            }
            if channel == Channel::Ticker && send_initial_snapshot {
                self.initial_tickers(exchange, sid, &tickers, out);
            }
        }
        Ok(())
    }

    fn unsubscribe(
        &mut self,
        id: Option<NonZeroU64>,
        params: Option<&Value>,
        out: &mut Vec<Outbound>,
    ) -> Result<(), ProtocolError> {
        let Some(params) = params.filter(|p| p.is_object()) else {
            return Err(ProtocolError::PARAMS_REQUIRED);
        };
        let sids = match params.get("sids") {
            None | Some(Value::Null) => return Err(ProtocolError::SIDS_REQUIRED),
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(ProtocolError::SIDS_REQUIRED);
            }
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().ok_or(ProtocolError::INVALID_PARAMETER))
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(ProtocolError::INVALID_PARAMETER),
        };
        for sid in sids {
            if !self.subs.contains_key(&sid) {
                out.push(self.error(id, ProtocolError::UNKNOWN_SID, None));
                continue;
            }
            let (seq, dropped) = self.take_seq(sid);
            self.subs.remove(&sid);
            if dropped {
                continue;
            }
            self.aux.clear();
            let record = control(
                ControlKind::Unsubscribed,
                Header {
                    id,
                    sid: nz(sid),
                    seq: nz(seq),
                },
            );
            let text = self.frame(Record::Control(record), None);
            out.push(Outbound {
                text,
                kind: FrameKind::Unsubscribed,
                sid: Some(sid),
                seq: Some(seq),
                terminal: false,
            });
        }
        Ok(())
    }

    fn update(
        &mut self,
        id: Option<NonZeroU64>,
        params: Option<&Value>,
        exchange: &dyn MarketSource,
        out: &mut Vec<Outbound>,
    ) -> Result<(), ProtocolError> {
        let Some(params) = params.filter(|p| p.is_object()) else {
            return Err(ProtocolError::PARAMS_REQUIRED);
        };
        let mut sids = Vec::new();
        if let Some(v) = params.get("sid") {
            sids.push(v.as_u64().ok_or(ProtocolError::INVALID_PARAMETER)?);
        }
        if let Some(v) = params.get("sids") {
            let Value::Array(items) = v else {
                return Err(ProtocolError::INVALID_PARAMETER);
            };
            for item in items {
                sids.push(item.as_u64().ok_or(ProtocolError::INVALID_PARAMETER)?);
            }
        }
        let [sid] = sids[..] else {
            return Err(ProtocolError::EXACTLY_ONE_SID);
        };
        let action = match params.get("action") {
            None | Some(Value::Null) => return Err(ProtocolError::ACTION_REQUIRED),
            Some(Value::String(a)) => a.clone(),
            Some(_) => return Err(ProtocolError::INVALID_PARAMETER),
        };
        let Some(sub) = self.subs.get(&sid) else {
            return Err(ProtocolError::UNKNOWN_SID);
        };
        let channel = sub.channel;
        let filter = market_filter(params)?;
        match action.as_str() {
            "add_markets" | "delete_markets" if channel.market_filtered() => {
                let tickers = filter.ok_or(ProtocolError::MARKET_TICKER_REQUIRED)?;
                let mut added = Vec::new();
                if action == "add_markets" {
                    let current = sub.markets.as_ref().map(|_| &sub.index);
                    let mut new: Vec<String> = Vec::new();
                    for ticker in tickers {
                        if current.is_none_or(|c| !c.contains(&ticker)) && !new.contains(&ticker) {
                            new.push(ticker);
                        }
                    }
                    if current.is_some_and(|c| c.len() + new.len() > self.config.market_limit) {
                        return Err(ProtocolError::MARKET_LIMIT);
                    }
                    if let Some(sub) = self.subs.get_mut(&sid)
                        && let Some(markets) = sub.markets.as_mut()
                    {
                        markets.extend(new.iter().cloned());
                        sub.index.extend(new.iter().cloned());
                        added = new;
                    }
                } else if let Some(sub) = self.subs.get_mut(&sid)
                    && let Some(markets) = sub.markets.as_mut()
                {
                    let gone: HashSet<&String> = tickers.iter().collect();
                    markets.retain(|t| !gone.contains(t));
                    sub.index.retain(|t| !gone.contains(t));
                }
                self.ok(id, sid, out);
                if channel == Channel::OrderbookDelta {
                    for ticker in &added {
                        self.snapshot(exchange, sid, None, ticker, out);
                    }
                }
                if channel == Channel::Ticker && flag(params, "send_initial_snapshot")? {
                    self.initial_tickers(exchange, sid, &added, out);
                }
                Ok(())
            }
            "get_snapshot" if channel == Channel::OrderbookDelta => {
                let tickers = filter.ok_or(ProtocolError::MARKET_TICKER_REQUIRED)?;
                for ticker in &tickers {
                    self.snapshot(exchange, sid, id, ticker, out);
                }
                Ok(())
            }
            _ => Err(ProtocolError::UNSUPPORTED_ACTION),
        }
    }

    fn list(&mut self, id: Option<NonZeroU64>, out: &mut Vec<Outbound>) {
        self.aux.clear();
        let mut record = control(
            ControlKind::SubscriptionList,
            Header {
                id,
                sid: None,
                seq: None,
            },
        );
        for (sid, sub) in &self.subs {
            self.aux.push_subscription(sub.channel.as_str(), *sid);
        }
        record.subscriptions = self.subs.len() as u32;
        let text = self.frame(Record::Control(record), None);
        out.push(Outbound {
            text,
            kind: FrameKind::SubscriptionList,
            sid: None,
            seq: None,
            terminal: false,
        });
    }

    /// Turns exchange events into this connection's data frames, appended to `out` in order.
    /// Call with every event of every step, in order, before handling further commands.
    pub fn deliver(
        &mut self,
        exchange: &Exchange,
        events: &[ExchangeEvent],
        out: &mut Vec<Outbound>,
    ) {
        let mut matching = Vec::new();
        for event in events {
            let (wanted, kind) = match event.payload {
                EventPayload::Delta { .. } => (Channel::OrderbookDelta, FrameKind::Delta),
                EventPayload::Trade { .. } => (Channel::Trade, FrameKind::Trade),
                EventPayload::Ticker { .. } => (Channel::Ticker, FrameKind::Ticker),
                EventPayload::Lifecycle { .. } => {
                    (Channel::MarketLifecycleV2, FrameKind::MarketLifecycle)
                }
                EventPayload::EventCreated { .. } => {
                    (Channel::MarketLifecycleV2, FrameKind::EventLifecycle)
                }
            };
            let ticker = event
                .payload
                .market()
                .and_then(|m| exchange.markets().get(m))
                .map(|m| m.ticker.as_str());
            matching.clear();
            matching.extend(
                self.subs
                    .iter()
                    .filter(|(_, s)| s.channel == wanted && ticker.is_none_or(|t| s.covers(t)))
                    .map(|(sid, s)| (*sid, s.use_yes_price)),
            );
            for &(sid, use_yes_price) in &matching {
                let seq = if kind == FrameKind::Ticker {
                    None
                } else {
                    let (seq, dropped) = self.take_seq(sid);
                    if dropped {
                        continue;
                    }
                    Some(seq)
                };
                let header = Header {
                    id: None,
                    sid: nz(sid),
                    seq: seq.and_then(nz),
                };
                let record = exchange.record(event, header, use_yes_price, &mut self.aux);
                let convention = (wanted == Channel::OrderbookDelta).then_some(use_yes_price);
                let text = self.frame(record, convention);
                let outbound = Outbound {
                    text,
                    kind,
                    sid: Some(sid),
                    seq,
                    terminal: false,
                };
                if seq.is_some() {
                    self.push_data(sid, outbound, out);
                } else {
                    out.push(outbound);
                }
            }
        }
    }

    /// Fault: the next sequenced frame of `sid` is dropped (its seq is consumed, so the client
    /// sees a gap). Returns `false` for an unknown sid.
    pub fn fault_skip_seq(&mut self, sid: u64) -> bool {
        match self.subs.get_mut(&sid) {
            Some(sub) => {
                sub.skips_pending += 1;
                true
            }
            None => false,
        }
    }

    /// Fault: error 25 (buffer overflow) on `sid`, which is then dropped. The error carries the
    /// sid and consumes a seq. `None` for an unknown sid.
    pub fn fault_buffer_overflow(&mut self, sid: u64) -> Option<Outbound> {
        if !self.subs.contains_key(&sid) {
            return None;
        }
        let frame = self.error(None, ProtocolError::BUFFER_OVERFLOW, Some(sid));
        self.subs.remove(&sid);
        self.generation = self.generation.wrapping_add(1);
        Some(frame)
    }

    /// Fault: error 10 (channel error, terminal) on `sid`, which is then dropped; like
    /// [`Session::fault_buffer_overflow`]. `None` for an unknown sid.
    pub fn fault_channel_error(&mut self, sid: u64) -> Option<Outbound> {
        if !self.subs.contains_key(&sid) {
            return None;
        }
        let mut frame = self.error(None, ProtocolError::CHANNEL_ERROR, Some(sid));
        frame.terminal = true;
        self.subs.remove(&sid);
        self.generation = self.generation.wrapping_add(1);
        Some(frame)
    }

    /// Fault: the next sequenced data frame of `sid` (snapshot, delta, trade, lifecycle) is
    /// sent twice with the same seq. Returns `false` for an unknown sid.
    pub fn fault_duplicate_next(&mut self, sid: u64) -> bool {
        match self.subs.get_mut(&sid) {
            Some(sub) => {
                sub.dups_pending += 1;
                true
            }
            None => false,
        }
    }

    /// Fault: a malformed frame (truncated JSON), consuming no seq.
    #[must_use]
    pub fn fault_malformed_frame(&self) -> Outbound {
        Outbound {
            text: br#"{"type":"orderbook_delta","sid":1,"seq":"#.to_vec(),
            kind: FrameKind::Malformed,
            sid: None,
            seq: None,
            terminal: false,
        }
    }
}
