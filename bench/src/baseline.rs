//! The baselines: what a typical Rust collector would write with serde.
//!
//! The wire structs borrow every string from the frame (`&'a str`, `#[serde(borrow)]`), so the
//! baselines pay no per-string allocation; what allocations remain are serde's own (content
//! buffering for internally tagged enums, `Vec`s for arrays). After deserializing, every baseline
//! normalizes exactly as the product does: decimal strings become `i64` fixed point with an exact
//! (never floating) parse, RFC 3339 times become microseconds, and the result is the same
//! [`kalshi_wire`] record type (`Delta`, `Trade`, `TickerUpdate`, `Snapshot` plus levels), so the
//! benchmark can check that both sides produce identical output.
//!
//! Two envelope strategies are provided, each runnable on serde_json and sonic-rs:
//! * **tagged**: one `#[serde(tag = "type")]` enum over the whole frame, the idiomatic choice;
//!   serde buffers the frame into its private `Content` tree to find the tag, which allocates.
//! * **two-pass**: a small envelope struct with `msg` kept raw (`&RawValue` / `LazyValue`), then
//!   a second `from_str` of `msg` into the struct the `type` selects. Allocation-free for simple
//!   frames, and the strongest serde baseline we know how to write without hand-written visitors.

use core::num::NonZeroU64;

use kalshi_wire::fixed::parse_rfc3339_us;
use kalshi_wire::{
    BookSide, Delta, Header, Level, MarketId, Side, Snapshot, Ticker, TickerUpdate, Trade, TradeId,
};
use serde::Deserialize;

/// `side`, `taker_side`, `taker_outcome_side`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireSide {
    /// `"yes"`.
    Yes,
    /// `"no"`.
    No,
}

/// `taker_book_side`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WireBookSide {
    /// `"bid"`.
    Bid,
    /// `"ask"`.
    Ask,
}

/// `orderbook_delta.msg`, current and legacy fields.
#[derive(Debug, Deserialize)]
pub struct DeltaMsg<'a> {
    /// `market_ticker`.
    pub market_ticker: &'a str,
    /// `market_id`.
    #[serde(borrow)]
    pub market_id: Option<&'a str>,
    /// `price_dollars`.
    #[serde(borrow)]
    pub price_dollars: Option<&'a str>,
    /// Legacy `price` (cents).
    pub price: Option<i64>,
    /// `delta_fp`.
    #[serde(borrow)]
    pub delta_fp: Option<&'a str>,
    /// Legacy `delta` (whole contracts).
    pub delta: Option<i64>,
    /// `side`.
    pub side: WireSide,
    /// `ts` (RFC 3339).
    #[serde(borrow)]
    pub ts: Option<&'a str>,
    /// `ts_ms`.
    pub ts_ms: Option<i64>,
}

/// `trade.msg`.
#[derive(Debug, Deserialize)]
pub struct TradeMsg<'a> {
    /// `trade_id`.
    pub trade_id: &'a str,
    /// `market_ticker`.
    pub market_ticker: &'a str,
    /// `yes_price_dollars`.
    #[serde(borrow)]
    pub yes_price_dollars: Option<&'a str>,
    /// `no_price_dollars`.
    #[serde(borrow)]
    pub no_price_dollars: Option<&'a str>,
    /// Legacy `yes_price` (cents).
    pub yes_price: Option<i64>,
    /// Legacy `no_price` (cents).
    pub no_price: Option<i64>,
    /// `count_fp`.
    #[serde(borrow)]
    pub count_fp: Option<&'a str>,
    /// Legacy `count`.
    pub count: Option<i64>,
    /// `taker_side`.
    pub taker_side: Option<WireSide>,
    /// `taker_outcome_side`.
    pub taker_outcome_side: Option<WireSide>,
    /// `taker_book_side`.
    pub taker_book_side: Option<WireBookSide>,
    /// `is_block_trade`.
    pub is_block_trade: Option<bool>,
    /// `ts` (seconds).
    pub ts: Option<i64>,
    /// `ts_ms`.
    pub ts_ms: Option<i64>,
}

/// `ticker.msg`.
#[derive(Debug, Deserialize)]
pub struct TickerMsg<'a> {
    /// `market_ticker`.
    pub market_ticker: &'a str,
    /// `market_id`.
    #[serde(borrow)]
    pub market_id: Option<&'a str>,
    /// `price_dollars`.
    #[serde(borrow)]
    pub price_dollars: Option<&'a str>,
    /// `yes_bid_dollars`.
    #[serde(borrow)]
    pub yes_bid_dollars: Option<&'a str>,
    /// `yes_ask_dollars`.
    #[serde(borrow)]
    pub yes_ask_dollars: Option<&'a str>,
    /// `volume_fp`.
    #[serde(borrow)]
    pub volume_fp: Option<&'a str>,
    /// `open_interest_fp`.
    #[serde(borrow)]
    pub open_interest_fp: Option<&'a str>,
    /// `dollar_volume` (whole dollars).
    pub dollar_volume: Option<i64>,
    /// `dollar_open_interest` (whole dollars).
    pub dollar_open_interest: Option<i64>,
    /// `yes_bid_size_fp`.
    #[serde(borrow)]
    pub yes_bid_size_fp: Option<&'a str>,
    /// `yes_ask_size_fp`.
    #[serde(borrow)]
    pub yes_ask_size_fp: Option<&'a str>,
    /// `last_trade_size_fp`.
    #[serde(borrow)]
    pub last_trade_size_fp: Option<&'a str>,
    /// `ts` (seconds).
    pub ts: Option<i64>,
    /// `ts_ms`.
    pub ts_ms: Option<i64>,
    /// `time` (RFC 3339).
    #[serde(borrow)]
    pub time: Option<&'a str>,
}

/// `orderbook_snapshot.msg` (current `_dollars_fp` form).
#[derive(Debug, Deserialize)]
pub struct SnapshotMsg<'a> {
    /// `market_ticker`.
    pub market_ticker: &'a str,
    /// `market_id`.
    #[serde(borrow)]
    pub market_id: Option<&'a str>,
    /// `yes_dollars_fp`: `[price, count]` pairs.
    #[serde(borrow)]
    pub yes_dollars_fp: Option<Vec<(&'a str, &'a str)>>,
    /// `no_dollars_fp`.
    #[serde(borrow)]
    pub no_dollars_fp: Option<Vec<(&'a str, &'a str)>>,
}

/// `ok.msg` (the update-subscription form).
#[derive(Debug, Deserialize)]
pub struct OkMsg<'a> {
    /// `market_tickers`.
    #[serde(borrow)]
    pub market_tickers: Option<Vec<&'a str>>,
    /// `market_ids`.
    #[serde(borrow)]
    pub market_ids: Option<Vec<&'a str>>,
}

/// `subscribed.msg`.
#[derive(Debug, Deserialize)]
pub struct SubscribedMsg<'a> {
    /// `channel`.
    pub channel: &'a str,
    /// `sid`.
    pub sid: u64,
}

/// `error.msg`.
#[derive(Debug, Deserialize)]
pub struct ErrorMsg<'a> {
    /// `code`.
    pub code: i64,
    /// `msg`.
    #[serde(borrow)]
    pub msg: Option<&'a str>,
    /// `market_ticker`.
    #[serde(borrow)]
    pub market_ticker: Option<&'a str>,
}

/// `market_lifecycle_v2.msg` (the fields of the common event types).
#[derive(Debug, Deserialize)]
pub struct LifecycleMsg<'a> {
    /// `market_ticker`.
    pub market_ticker: &'a str,
    /// `event_type`.
    pub event_type: &'a str,
    /// `result`.
    #[serde(borrow)]
    pub result: Option<&'a str>,
    /// `open_ts` (seconds).
    pub open_ts: Option<i64>,
    /// `close_ts` (seconds).
    pub close_ts: Option<i64>,
    /// `determination_ts` (seconds).
    pub determination_ts: Option<i64>,
    /// `settled_ts` (seconds).
    pub settled_ts: Option<i64>,
}

/// The idiomatic whole-frame type: an internally tagged enum on `type`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TaggedFrame<'a> {
    /// `orderbook_delta`.
    OrderbookDelta {
        /// `sid`.
        sid: Option<u64>,
        /// `seq`.
        seq: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: DeltaMsg<'a>,
    },
    /// `trade`.
    Trade {
        /// `sid`.
        sid: Option<u64>,
        /// `seq`.
        seq: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: TradeMsg<'a>,
    },
    /// `ticker`.
    Ticker {
        /// `sid`.
        sid: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: TickerMsg<'a>,
    },
    /// `orderbook_snapshot`.
    OrderbookSnapshot {
        /// `sid`.
        sid: Option<u64>,
        /// `seq`.
        seq: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: SnapshotMsg<'a>,
    },
    /// `ok`.
    Ok {
        /// `id`.
        id: Option<u64>,
        /// `sid`.
        sid: Option<u64>,
        /// `seq`.
        seq: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: Option<OkMsg<'a>>,
    },
    /// `subscribed`.
    Subscribed {
        /// `id`.
        id: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: SubscribedMsg<'a>,
    },
    /// `error`.
    Error {
        /// `id`.
        id: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: ErrorMsg<'a>,
    },
    /// `market_lifecycle_v2`.
    #[serde(rename = "market_lifecycle_v2")]
    MarketLifecycle {
        /// `sid`.
        sid: Option<u64>,
        /// `seq`.
        seq: Option<u64>,
        /// `msg`.
        #[serde(borrow)]
        msg: LifecycleMsg<'a>,
    },
}

/// The two-pass envelope for serde_json: `msg` stays raw text.
#[derive(Debug, Deserialize)]
pub struct JsonEnvelope<'a> {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// `id`.
    pub id: Option<u64>,
    /// `sid`.
    pub sid: Option<u64>,
    /// `seq`.
    pub seq: Option<u64>,
    /// `msg`, unparsed.
    #[serde(borrow)]
    pub msg: Option<&'a serde_json::value::RawValue>,
}

/// The two-pass envelope for sonic-rs: `msg` stays a lazy (unparsed) value.
#[derive(Debug, Deserialize)]
pub struct SonicEnvelope<'a> {
    /// `type`.
    #[serde(rename = "type")]
    pub kind: &'a str,
    /// `id`.
    pub id: Option<u64>,
    /// `sid`.
    pub sid: Option<u64>,
    /// `seq`.
    pub seq: Option<u64>,
    /// `msg`, unparsed.
    #[serde(borrow)]
    pub msg: Option<sonic_rs::LazyValue<'a>>,
}

/// A parsed frame body, whichever strategy produced it.
#[derive(Debug)]
pub enum Body<'a> {
    /// `orderbook_delta`.
    Delta(DeltaMsg<'a>),
    /// `trade`.
    Trade(TradeMsg<'a>),
    /// `ticker`.
    Ticker(TickerMsg<'a>),
    /// `orderbook_snapshot`.
    Snapshot(SnapshotMsg<'a>),
    /// `ok`.
    Ok(Option<OkMsg<'a>>),
    /// `subscribed`.
    Subscribed(SubscribedMsg<'a>),
    /// `error`.
    Error(ErrorMsg<'a>),
    /// `market_lifecycle_v2`.
    Lifecycle(LifecycleMsg<'a>),
}

/// Why a baseline could not decode a frame (the serde error itself is dropped: its `Box` would
/// be an allocation, and the benchmark only ever feeds valid frames).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BaselineError {
    /// The JSON library refused the frame.
    Json,
    /// A `type` this baseline does not handle.
    UnknownType,
    /// A field is missing or has an impossible value.
    Field(&'static str),
}

/// A normalized frame, in the product's record types where the product has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalized {
    /// `orderbook_delta`.
    Delta(Delta),
    /// `trade`.
    Trade(Trade),
    /// `ticker`.
    Ticker(TickerUpdate),
    /// `orderbook_snapshot`; the levels are in the caller's scratch vector.
    Snapshot(Snapshot),
    /// A control frame: header and the number of tickers or the error code.
    Control {
        /// Envelope.
        header: Header,
        /// Tickers listed (`ok`) or error code (`error`).
        value: i64,
    },
    /// A lifecycle frame: header and its one timestamp, µs.
    Lifecycle {
        /// Envelope.
        header: Header,
        /// `open_ts`, `close_ts`, `determination_ts` or `settled_ts` in µs, first present.
        ts: Option<i64>,
    },
}

impl Normalized {
    /// A cheap digest of the values, fed to `black_box` so that no work is optimized away.
    #[must_use]
    pub fn checksum(&self) -> u64 {
        match self {
            Normalized::Delta(d) => (d.price_e6 ^ d.delta_e2 ^ d.exchange_ts.unwrap_or(0)) as u64,
            Normalized::Trade(t) => (t.yes_price_e6 ^ t.count_e2) as u64,
            Normalized::Ticker(t) => t.yes_bid_e6.unwrap_or(0) as u64,
            Normalized::Snapshot(s) => u64::from(s.yes_levels + s.no_levels),
            Normalized::Control { value, .. } => *value as u64,
            Normalized::Lifecycle { ts, .. } => ts.unwrap_or(0) as u64,
        }
    }
}

/// Parses a plain decimal (`-?digits(.digits)?`) into units of `10^-scale`, exactly: extra
/// decimals must be zeros. A simple, readable implementation, as a collector would write it.
///
/// # Errors
/// [`BaselineError::Field`] naming `field` when the text is not such a decimal or overflows.
pub fn parse_fixed(text: &str, scale: u32, field: &'static str) -> Result<i64, BaselineError> {
    let bad = BaselineError::Field(field);
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (integer, fraction) = match body.split_once('.') {
        Some((_, "")) => return Err(bad),
        Some((integer, fraction)) => (integer, fraction),
        None => (body, ""),
    };
    if integer.is_empty() {
        return Err(bad);
    }
    let mut value: i64 = 0;
    for byte in integer.bytes() {
        if !byte.is_ascii_digit() {
            return Err(bad);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(i64::from(byte - b'0')))
            .ok_or(bad)?;
    }
    let mut digits = 0;
    for byte in fraction.bytes() {
        if !byte.is_ascii_digit() {
            return Err(bad);
        }
        if digits < scale {
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(byte - b'0')))
                .ok_or(bad)?;
            digits += 1;
        } else if byte != b'0' {
            return Err(bad);
        }
    }
    value = value.checked_mul(10_i64.pow(scale - digits)).ok_or(bad)?;
    Ok(if negative { -value } else { value })
}

fn opt_fixed(
    text: Option<&str>,
    scale: u32,
    field: &'static str,
) -> Result<Option<i64>, BaselineError> {
    text.map(|t| parse_fixed(t, scale, field)).transpose()
}

fn header(id: Option<u64>, sid: Option<u64>, seq: Option<u64>) -> Header {
    Header {
        id: id.and_then(NonZeroU64::new),
        sid: sid.and_then(NonZeroU64::new),
        seq: seq.and_then(NonZeroU64::new),
    }
}

fn side(side: WireSide) -> Side {
    match side {
        WireSide::Yes => Side::Yes,
        WireSide::No => Side::No,
    }
}

/// The product's time rule: the precise form when it agrees with `ts_ms` (or `ts`), else the
/// coarser field.
fn resolve_time(precise: Option<i64>, millis: Option<i64>, seconds: Option<i64>) -> Option<i64> {
    if let Some(ms) = millis {
        return Some(match precise {
            Some(us) if us.div_euclid(1_000) == ms => us,
            _ => ms * 1_000,
        });
    }
    if let Some(s) = seconds {
        return Some(match precise {
            Some(us) if us.div_euclid(1_000_000) == s => us,
            _ => s * 1_000_000,
        });
    }
    precise
}

fn rfc3339(text: Option<&str>, field: &'static str) -> Result<Option<i64>, BaselineError> {
    text.map(|t| parse_rfc3339_us(t.as_bytes()).map_err(|_| BaselineError::Field(field)))
        .transpose()
}

fn ticker(text: &str) -> Result<Ticker, BaselineError> {
    Ticker::new(text).ok_or(BaselineError::Field("market_ticker"))
}

fn market_id(text: Option<&str>) -> Result<MarketId, BaselineError> {
    MarketId::new(text.unwrap_or("")).ok_or(BaselineError::Field("market_id"))
}

/// Normalizes a parsed frame. Snapshot levels go to `levels` (cleared first), YES then NO.
///
/// # Errors
/// [`BaselineError::Field`] for a value that cannot be normalized exactly.
pub fn normalize(
    header: Header,
    body: Body<'_>,
    levels: &mut Vec<Level>,
) -> Result<Normalized, BaselineError> {
    Ok(match body {
        Body::Delta(m) => {
            let price_e6 = match (m.price_dollars, m.price) {
                (Some(p), _) => parse_fixed(p, 6, "price_dollars")?,
                (None, Some(cents)) => cents * 10_000,
                (None, None) => return Err(BaselineError::Field("price_dollars")),
            };
            let delta_e2 = match (m.delta_fp, m.delta) {
                (Some(d), _) => parse_fixed(d, 2, "delta_fp")?,
                (None, Some(whole)) => whole * 100,
                (None, None) => return Err(BaselineError::Field("delta_fp")),
            };
            Normalized::Delta(Delta {
                header,
                exchange_ts: resolve_time(rfc3339(m.ts, "ts")?, m.ts_ms, None),
                price_e6,
                delta_e2,
                side: side(m.side),
                ticker: ticker(m.market_ticker)?,
                market_id: market_id(m.market_id)?,
            })
        }
        Body::Trade(m) => {
            let yes = opt_fixed(m.yes_price_dollars, 6, "yes_price_dollars")?
                .or(m.yes_price.map(|c| c * 10_000));
            let no = opt_fixed(m.no_price_dollars, 6, "no_price_dollars")?
                .or(m.no_price.map(|c| c * 10_000));
            let (yes_price_e6, no_price_e6) = match (yes, no) {
                (Some(y), Some(n)) => (y, n),
                (Some(y), None) => (y, 1_000_000 - y),
                (None, Some(n)) => (1_000_000 - n, n),
                (None, None) => return Err(BaselineError::Field("yes_price_dollars")),
            };
            let count_e2 = opt_fixed(m.count_fp, 2, "count_fp")?
                .or(m.count.map(|c| c * 100))
                .ok_or(BaselineError::Field("count_fp"))?;
            Normalized::Trade(Trade {
                header,
                exchange_ts: resolve_time(None, m.ts_ms, m.ts),
                yes_price_e6,
                no_price_e6,
                count_e2,
                ticker: ticker(m.market_ticker)?,
                trade_id: TradeId::new(m.trade_id).ok_or(BaselineError::Field("trade_id"))?,
                taker_side: m.taker_side.map(side),
                taker_outcome_side: m.taker_outcome_side.map(side),
                taker_book_side: m.taker_book_side.map(|b| match b {
                    WireBookSide::Bid => BookSide::Bid,
                    WireBookSide::Ask => BookSide::Ask,
                }),
                is_block_trade: m.is_block_trade,
            })
        }
        Body::Ticker(m) => Normalized::Ticker(TickerUpdate {
            header,
            exchange_ts: resolve_time(rfc3339(m.time, "time")?, m.ts_ms, m.ts),
            ticker: ticker(m.market_ticker)?,
            market_id: market_id(m.market_id)?,
            price_e6: opt_fixed(
                m.price_dollars.filter(|p| !p.is_empty()),
                6,
                "price_dollars",
            )?,
            yes_bid_e6: opt_fixed(m.yes_bid_dollars, 6, "yes_bid_dollars")?,
            yes_ask_e6: opt_fixed(m.yes_ask_dollars, 6, "yes_ask_dollars")?,
            yes_bid_size_e2: opt_fixed(m.yes_bid_size_fp, 2, "yes_bid_size_fp")?,
            yes_ask_size_e2: opt_fixed(m.yes_ask_size_fp, 2, "yes_ask_size_fp")?,
            last_trade_size_e2: opt_fixed(m.last_trade_size_fp, 2, "last_trade_size_fp")?,
            volume_e2: opt_fixed(m.volume_fp, 2, "volume_fp")?,
            open_interest_e2: opt_fixed(m.open_interest_fp, 2, "open_interest_fp")?,
            dollar_volume_e6: m.dollar_volume.map(|d| d * 1_000_000),
            dollar_open_interest_e6: m.dollar_open_interest.map(|d| d * 1_000_000),
        }),
        Body::Snapshot(m) => {
            levels.clear();
            let mut counts = [0u32; 2];
            for (slot, side) in [m.yes_dollars_fp, m.no_dollars_fp].into_iter().enumerate() {
                let start = levels.len();
                for (price, count) in side.unwrap_or_default() {
                    levels.push(Level {
                        price_e6: parse_fixed(price, 6, "dollars_fp")?,
                        count_e2: parse_fixed(count, 2, "dollars_fp")?,
                    });
                }
                let added = &mut levels[start..];
                if !added.is_sorted_by_key(|l| l.price_e6) {
                    added.sort_unstable_by_key(|l| l.price_e6);
                }
                counts[slot] = added.len() as u32;
            }
            Normalized::Snapshot(Snapshot {
                header,
                ticker: ticker(m.market_ticker)?,
                market_id: market_id(m.market_id)?,
                yes_levels: counts[0],
                no_levels: counts[1],
            })
        }
        Body::Ok(m) => Normalized::Control {
            header,
            value: m
                .and_then(|m| m.market_tickers)
                .map_or(0, |tickers| tickers.len() as i64),
        },
        Body::Subscribed(m) => Normalized::Control {
            header: Header {
                sid: header.sid.or(NonZeroU64::new(m.sid)),
                ..header
            },
            value: m.channel.len() as i64,
        },
        Body::Error(m) => Normalized::Control {
            header,
            value: m.code,
        },
        Body::Lifecycle(m) => Normalized::Lifecycle {
            header,
            ts: m
                .open_ts
                .or(m.close_ts)
                .or(m.determination_ts)
                .or(m.settled_ts)
                .map(|s| s * 1_000_000),
        },
    })
}

impl<'a> TaggedFrame<'a> {
    /// Splits into the envelope and the body.
    #[must_use]
    pub fn split(self) -> (Header, Body<'a>) {
        match self {
            TaggedFrame::OrderbookDelta { sid, seq, msg } => {
                (header(None, sid, seq), Body::Delta(msg))
            }
            TaggedFrame::Trade { sid, seq, msg } => (header(None, sid, seq), Body::Trade(msg)),
            TaggedFrame::Ticker { sid, msg } => (header(None, sid, None), Body::Ticker(msg)),
            TaggedFrame::OrderbookSnapshot { sid, seq, msg } => {
                (header(None, sid, seq), Body::Snapshot(msg))
            }
            TaggedFrame::Ok { id, sid, seq, msg } => (header(id, sid, seq), Body::Ok(msg)),
            TaggedFrame::Subscribed { id, msg } => (header(id, None, None), Body::Subscribed(msg)),
            TaggedFrame::Error { id, msg } => (header(id, None, None), Body::Error(msg)),
            TaggedFrame::MarketLifecycle { sid, seq, msg } => {
                (header(None, sid, seq), Body::Lifecycle(msg))
            }
        }
    }
}

/// Which JSON library parses the second pass.
#[derive(Clone, Copy, Debug)]
enum Lib {
    SerdeJson,
    Sonic,
}

fn second_pass<'a, T: Deserialize<'a>>(lib: Lib, text: &'a str) -> Result<T, BaselineError> {
    match lib {
        Lib::SerdeJson => serde_json::from_str(text).map_err(|_| BaselineError::Json),
        Lib::Sonic => sonic_rs::from_str(text).map_err(|_| BaselineError::Json),
    }
}

/// Selects the body type from `kind` and parses `msg` with `lib`.
fn body_by_type<'a>(kind: &str, msg: Option<&'a str>, lib: Lib) -> Result<Body<'a>, BaselineError> {
    let need = || msg.ok_or(BaselineError::Field("msg"));
    Ok(match kind {
        "orderbook_delta" => Body::Delta(second_pass(lib, need()?)?),
        "trade" => Body::Trade(second_pass(lib, need()?)?),
        "ticker" => Body::Ticker(second_pass(lib, need()?)?),
        "orderbook_snapshot" => Body::Snapshot(second_pass(lib, need()?)?),
        "ok" => Body::Ok(msg.map(|m| second_pass(lib, m)).transpose()?),
        "subscribed" => Body::Subscribed(second_pass(lib, need()?)?),
        "error" => Body::Error(second_pass(lib, need()?)?),
        "market_lifecycle_v2" => Body::Lifecycle(second_pass(lib, need()?)?),
        _ => return Err(BaselineError::UnknownType),
    })
}

/// serde_json, tagged enum, then [`normalize`].
///
/// # Errors
/// [`BaselineError`] when the frame cannot be parsed or normalized.
pub fn serde_json_tagged(
    frame: &[u8],
    levels: &mut Vec<Level>,
) -> Result<Normalized, BaselineError> {
    let parsed: TaggedFrame<'_> = serde_json::from_slice(frame).map_err(|_| BaselineError::Json)?;
    let (header, body) = parsed.split();
    normalize(header, body, levels)
}

/// sonic-rs, the same tagged enum, then [`normalize`].
///
/// # Errors
/// [`BaselineError`] when the frame cannot be parsed or normalized.
pub fn sonic_tagged(frame: &[u8], levels: &mut Vec<Level>) -> Result<Normalized, BaselineError> {
    let parsed: TaggedFrame<'_> = sonic_rs::from_slice(frame).map_err(|_| BaselineError::Json)?;
    let (header, body) = parsed.split();
    normalize(header, body, levels)
}

/// serde_json, envelope with a raw `msg`, second pass by `type`, then [`normalize`].
///
/// # Errors
/// [`BaselineError`] when the frame cannot be parsed or normalized.
pub fn serde_json_two_pass(
    frame: &[u8],
    levels: &mut Vec<Level>,
) -> Result<Normalized, BaselineError> {
    let envelope: JsonEnvelope<'_> =
        serde_json::from_slice(frame).map_err(|_| BaselineError::Json)?;
    let body = body_by_type(
        envelope.kind,
        envelope.msg.map(serde_json::value::RawValue::get),
        Lib::SerdeJson,
    )?;
    normalize(
        header(envelope.id, envelope.sid, envelope.seq),
        body,
        levels,
    )
}

/// sonic-rs, envelope with a lazy `msg`, second pass by `type`, then [`normalize`].
///
/// # Errors
/// [`BaselineError`] when the frame cannot be parsed or normalized.
pub fn sonic_two_pass(frame: &[u8], levels: &mut Vec<Level>) -> Result<Normalized, BaselineError> {
    let envelope: SonicEnvelope<'_> =
        sonic_rs::from_slice(frame).map_err(|_| BaselineError::Json)?;
    let body = body_by_type(
        envelope.kind,
        envelope.msg.as_ref().map(sonic_rs::LazyValue::as_raw_str),
        Lib::Sonic,
    )?;
    normalize(
        header(envelope.id, envelope.sid, envelope.seq),
        body,
        levels,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_parse() {
        assert_eq!(parse_fixed("0.5200", 6, "p"), Ok(520_000));
        assert_eq!(parse_fixed("-1.00", 2, "d"), Ok(-100));
        assert_eq!(parse_fixed("82.12", 2, "c"), Ok(8_212));
        assert_eq!(parse_fixed("7", 2, "c"), Ok(700));
        assert_eq!(parse_fixed("0.5000000", 6, "p"), Ok(500_000));
        assert!(parse_fixed("0.5000001", 6, "p").is_err());
        assert!(parse_fixed("1.", 2, "c").is_err());
        assert!(parse_fixed(".5", 2, "c").is_err());
        assert!(parse_fixed("1e3", 2, "c").is_err());
    }
}
