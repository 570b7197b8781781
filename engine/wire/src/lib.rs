//! # kalshi-wire: the Kalshi Trade API v2 wire format, sans IO
//!
//! This crate turns raw Kalshi WebSocket frames into exact, typed, fixed-size records, and back.
//! It performs no I/O and reads no clock: callers hand it bytes and get records, so the same code
//! serves the gatherer's shard cores, the exchange simulator, the `kalshi decode` tool, the fuzzer
//! and the benchmarks.
//!
//! ## Layout
//! * [`decode`]: the [`Decoder`]. Delta, trade and ticker frames in Kalshi's plain current
//!   shape are read straight from their bytes by a strict fast path; every other frame (and any
//!   the fast path is not sure about) is parsed by simd-json in place into a reused tape, and one
//!   pass over the tape fills a [`Record`]. Both paths give identical results. Nothing is
//!   allocated per frame once the buffers have grown. [`Decoder::decode_into`] writes the record
//!   into a slot the caller keeps, rather than returning it by value.
//! * [`record`]: the normalized records. Prices are `i64` micro-dollars (`_e6`), counts `i64`
//!   hundredths of a contract (`_e2`), times `i64` microseconds since the Unix epoch.
//! * [`fixed`]: exact decimal and RFC 3339 conversion, never through a float.
//! * [`canonical`]: the canonical record JSON of `design.md` §9 (`kalshi decode`, truth logs).
//! * [`render`]: records back to current-format wire frames (the simulator speaks with it).
//! * [`command`]: the client command encoder (`subscribe`, `update_subscription`, ...).
//!
//! ## What the decoder tolerates, and what it refuses
//! Kalshi changes this API almost weekly (`protocol.md` §10), so the decoder:
//! * reads the current fixed-point format and both legacy formats (integer cents; cents plus
//!   `_dollars`/`_fp`), preferring the most precise form present;
//! * accepts a JSON number where a string is documented and a numeric string where a number is;
//! * skips unknown fields, and reports an unknown `type` as [`Record::Unknown`];
//! * refuses, with an error naming the field, anything it cannot represent exactly: a price with
//!   a non-zero 7th decimal, a count with a 3rd, a negative price or size, a value beyond `i64`,
//!   an impossible timestamp, an identifier longer than its inline capacity.
//!
//! ## Example
//! ```
//! use kalshi_wire::{Decoder, Record};
//!
//! let mut decoder = Decoder::default();
//! let mut frame = br#"{"type":"trade","sid":5,"seq":674041,"msg":{"trade_id":"0723cb08","market_ticker":"KXCRYPTOLEAD15M-26SEP210115-HYPE","yes_price_dollars":"0.1400","no_price_dollars":"0.8600","count_fp":"82.12","taker_side":"no","ts":1789966900,"ts_ms":1789966900609}}"#.to_vec();
//! let decoded = decoder.decode(&mut frame).unwrap();
//! let Record::Trade(trade) = decoded.record else { panic!() };
//! assert_eq!(trade.yes_price_e6, 140_000);
//! assert_eq!(trade.count_e2, 8_212);
//! assert_eq!(trade.exchange_ts, Some(1_789_966_900_609_000));
//! ```

pub mod canonical;
pub mod command;
pub mod decode;
pub mod error;
mod fast;
pub mod fixed;
pub mod inline;
pub mod invariants;
pub mod json;
pub mod record;
pub mod render;

pub use canonical::{write_canonical, write_error};
pub use command::{Command, UpdateAction, encode_command};
pub use decode::{Decoder, DecoderConfig, DecoderStats, TradesPage};
pub use error::DecodeError;
pub use inline::{InlineStr, MarketId, Ticker, TradeId};
pub use record::{
    Aux, BookSide, Control, ControlKind, Decoded, Delta, EventKind, EventLifecycle, Header, Level,
    MarketLifecycle, MarketMetadata, PriceRange, Record, Scalar, Side, Snapshot, Text, TextList,
    TickerUpdate, Trade, Unknown,
};
pub use render::render_frame;
