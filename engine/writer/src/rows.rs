//! Table rows: one type per table, with exactly the columns of `sql/` (see `sql/README.md`).
//!
//! These are table rows, not wire records: the gatherer converts decoded
//! [`kalshi_wire::Record`]s into them (helpers below), and the deduplicator builds them from rows
//! it read back from gatherer databases. Units are the schema's: `_e6` micro-dollars, `_e2`
//! hundredths of a contract, `_ts` microseconds since the Unix epoch.
//!
//! The hot rows ([`DeltaRow`], [`TradeRow`], [`TickerRow`]) are fixed-size `Copy` values with
//! inline strings, moved through the rings by value. Rows of variable size travel boxed:
//! [`SnapshotRow`] and [`LifecycleRow`] boxes are recycled through each producer's free list
//! (see [`crate::Producer::snapshot_row`]), so a steady stream allocates nothing; the rare
//! control-plane rows ([`MarketRow`], [`EventRow`], [`SequenceGapRow`]) are allocated per row.

use kalshi_wire::record::{BookSide, Delta, Level, Side, TickerUpdate, Trade};
use kalshi_wire::{Decoded, Record, Ticker, TradeId};

/// Where a row came from (`source` column of `trades` and `orderbook_snapshots`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The WebSocket feed.
    Ws,
    /// The REST API (snapshot poller, trade backfill).
    Rest,
}

impl Source {
    /// The column value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Ws => "ws",
            Source::Rest => "rest",
        }
    }
}

/// How a sequence gap was repaired (`sequence_gaps.repair`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Repair {
    /// `update_subscription` with `get_snapshot`.
    GetSnapshot,
    /// Unsubscribe and subscribe again.
    Resubscribe,
    /// A new connection.
    Reconnect,
    /// REST trade backfill.
    RestBackfill,
    /// Not repaired.
    None,
}

impl Repair {
    /// The column value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Repair::GetSnapshot => "get_snapshot",
            Repair::Resubscribe => "resubscribe",
            Repair::Reconnect => "reconnect",
            Repair::RestBackfill => "rest_backfill",
            Repair::None => "none",
        }
    }
}

/// A row of `orderbook_deltas`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaRow {
    /// Exchange time, µs.
    pub exchange_ts: i64,
    /// Gatherer receive time, µs.
    pub received_ts: i64,
    /// Capturing gatherer.
    pub gatherer_id: i16,
    /// Market ticker.
    pub ticker: Ticker,
    /// Which bid book.
    pub side: Side,
    /// Price level, micro-dollars (NO-leg price on the NO side).
    pub price_e6: i64,
    /// Signed size change, hundredths of a contract.
    pub delta_e2: i64,
    /// Subscription id.
    pub sid: i64,
    /// Sequence number within the subscription.
    pub seq: i64,
    /// Index among identical tuples (0 on gatherers; set by the deduplicator).
    pub occurrence: i32,
}

/// A row of `trades`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TradeRow {
    /// Exchange time, µs.
    pub exchange_ts: i64,
    /// Gatherer receive time, µs.
    pub received_ts: i64,
    /// Capturing gatherer.
    pub gatherer_id: i16,
    /// Market ticker.
    pub ticker: Ticker,
    /// Exchange trade id.
    pub trade_id: TradeId,
    /// YES price, micro-dollars.
    pub yes_price_e6: i64,
    /// NO price, micro-dollars.
    pub no_price_e6: i64,
    /// Contracts, hundredths.
    pub count_e2: i64,
    /// Deprecated `taker_side`.
    pub taker_side: Option<Side>,
    /// `taker_outcome_side`.
    pub taker_outcome_side: Option<Side>,
    /// `taker_book_side`.
    pub taker_book_side: Option<BookSide>,
    /// `is_block_trade`.
    pub is_block_trade: Option<bool>,
    /// WebSocket or REST.
    pub source: Source,
    /// Subscription id (WebSocket only).
    pub sid: Option<i64>,
    /// Sequence number (WebSocket only).
    pub seq: Option<i64>,
}

/// A row of `tickers`. Values are `None` (NULL) when the exchange did not send them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickerRow {
    /// Exchange time, µs.
    pub exchange_ts: i64,
    /// Gatherer receive time, µs.
    pub received_ts: i64,
    /// Capturing gatherer.
    pub gatherer_id: i16,
    /// Market ticker.
    pub ticker: Ticker,
    /// Last price.
    pub price_e6: Option<i64>,
    /// Best YES bid.
    pub yes_bid_e6: Option<i64>,
    /// Best YES ask.
    pub yes_ask_e6: Option<i64>,
    /// Size at the best YES bid.
    pub yes_bid_size_e2: Option<i64>,
    /// Size at the best YES ask.
    pub yes_ask_size_e2: Option<i64>,
    /// Size of the last trade.
    pub last_trade_size_e2: Option<i64>,
    /// Cumulative volume.
    pub volume_e2: Option<i64>,
    /// Open interest.
    pub open_interest_e2: Option<i64>,
    /// Cumulative dollar volume.
    pub dollar_volume_e6: Option<i64>,
    /// Dollar open interest.
    pub dollar_open_interest_e6: Option<i64>,
    /// Subscription id.
    pub sid: Option<i64>,
    /// Sequence number (the ticker channel is unsequenced; usually `None`).
    pub seq: Option<i64>,
    /// Index among identical tuples (0 on gatherers).
    pub occurrence: i32,
}

/// A row of `orderbook_snapshots`: a full book, levels ascending by price on each side.
/// Boxed and recycled: take one from [`crate::Producer::snapshot_row`], fill it, push it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotRow {
    /// When the snapshot was taken (receive time for WebSocket snapshots), µs.
    pub snapshot_ts: i64,
    /// Gatherer receive time, µs.
    pub received_ts: i64,
    /// Capturing gatherer.
    pub gatherer_id: i16,
    /// Market ticker.
    pub ticker: Ticker,
    /// WebSocket or REST (`None` is encoded as `ws`).
    pub source: Option<Source>,
    /// Subscription id.
    pub sid: Option<i64>,
    /// Sequence number.
    pub seq: Option<i64>,
    /// YES levels, ascending price.
    pub yes: Vec<Level>,
    /// NO levels (NO-leg prices), ascending price.
    pub no: Vec<Level>,
}

/// A row of `market_lifecycle`. `payload_md5` is generated by the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LifecycleRow {
    /// The event's own time, else the receive time, µs.
    pub exchange_ts: i64,
    /// Gatherer receive time, µs.
    pub received_ts: i64,
    /// Capturing gatherer.
    pub gatherer_id: i16,
    /// Market ticker.
    pub ticker: Ticker,
    /// `event_type`.
    pub event_type: String,
    /// Multivariate (MVE) lifecycle channel.
    pub mve: bool,
    /// The whole message as JSON text (stored as `jsonb`).
    pub payload: String,
    /// Subscription id.
    pub sid: Option<i64>,
    /// Sequence number.
    pub seq: Option<i64>,
    /// Index among identical tuples (0 on gatherers).
    pub occurrence: i32,
}

/// A row of `markets` (upserted on `ticker`; a row with an older `updated_ts` than the stored
/// one changes nothing).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MarketRow {
    /// Market ticker (primary key).
    pub ticker: String,
    /// Event ticker.
    pub event_ticker: String,
    /// Series ticker.
    pub series_ticker: Option<String>,
    /// Market status.
    pub status: String,
    /// Title.
    pub title: Option<String>,
    /// YES subtitle.
    pub yes_sub_title: Option<String>,
    /// NO subtitle.
    pub no_sub_title: Option<String>,
    /// Market type.
    pub market_type: Option<String>,
    /// Open time, µs.
    pub open_ts: Option<i64>,
    /// Close time, µs.
    pub close_ts: Option<i64>,
    /// Price level structure.
    pub price_level_structure: Option<String>,
    /// `price_ranges` as JSON text (`jsonb`).
    pub price_ranges: Option<String>,
    /// Other metadata as JSON text (`jsonb`).
    pub metadata: Option<String>,
    /// When this state was observed, µs.
    pub updated_ts: i64,
    /// Observing gatherer.
    pub gatherer_id: i16,
}

/// A row of `events` (upserted on `event_ticker`, newest `updated_ts` wins).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventRow {
    /// Event ticker (primary key).
    pub event_ticker: String,
    /// Series ticker.
    pub series_ticker: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Subtitle.
    pub sub_title: Option<String>,
    /// Collateral return type.
    pub collateral_return_type: Option<String>,
    /// Whether the markets are mutually exclusive.
    pub mutually_exclusive: Option<bool>,
    /// Strike date, µs.
    pub strike_date: Option<i64>,
    /// Strike period.
    pub strike_period: Option<String>,
    /// When this state was observed, µs.
    pub updated_ts: i64,
    /// Observing gatherer.
    pub gatherer_id: i16,
}

/// A row of `sequence_gaps` (the `id` is generated by the database).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequenceGapRow {
    /// When the gap was detected, µs.
    pub detected_ts: i64,
    /// Detecting gatherer.
    pub gatherer_id: i16,
    /// Channel of the subscription.
    pub channel: String,
    /// Subscription id.
    pub sid: Option<i64>,
    /// The seq that was expected.
    pub expected_seq: Option<i64>,
    /// The seq that arrived.
    pub received_seq: Option<i64>,
    /// Markets affected.
    pub tickers: Vec<String>,
    /// How it was repaired.
    pub repair: Repair,
    /// When the repair finished, µs.
    pub repaired_ts: Option<i64>,
    /// Trades recovered by REST backfill.
    pub backfilled_trades: Option<i32>,
    /// Free text.
    pub note: Option<String>,
}

/// Anything the writer can write: what travels through a ring.
#[derive(Debug)]
pub enum Row {
    /// `orderbook_deltas`.
    Delta(DeltaRow),
    /// `trades`.
    Trade(TradeRow),
    /// `tickers`.
    Ticker(TickerRow),
    /// `orderbook_snapshots` (recycled box).
    Snapshot(Box<SnapshotRow>),
    /// `market_lifecycle` (recycled box).
    Lifecycle(Box<LifecycleRow>),
    /// `markets`.
    Market(Box<MarketRow>),
    /// `events`.
    Event(Box<EventRow>),
    /// `sequence_gaps`.
    SequenceGap(Box<SequenceGapRow>),
}

/// A wire record that cannot become a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A column that is NOT NULL has no value in the record.
    #[error("{record} record has no {field}, which orderbook_deltas requires")]
    MissingField {
        /// The record type.
        record: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// The record is not of the table's kind.
    #[error("expected a {expected} record, got {got}")]
    WrongKind {
        /// What the conversion needs.
        expected: &'static str,
        /// What it got.
        got: &'static str,
    },
}

/// A wire id (sequence number, sid) as the `bigint` it is stored as. Kalshi's are far below
/// `i64::MAX`; a larger value saturates rather than wrapping negative.
fn id_i64(v: Option<core::num::NonZeroU64>) -> Option<i64> {
    v.map(|n| i64::try_from(n.get()).unwrap_or(i64::MAX))
}

impl DeltaRow {
    /// The row for a decoded delta. `exchange_ts` falls back to `received_ts` when the frame had
    /// no time.
    ///
    /// # Errors
    ///
    /// [`ConvertError::MissingField`] when the frame had no `sid` or `seq` (both NOT NULL).
    pub fn from_wire(d: &Delta, gatherer_id: i16, received_ts: i64) -> Result<Self, ConvertError> {
        let missing = |field| ConvertError::MissingField {
            record: "orderbook_delta",
            field,
        };
        Ok(Self {
            exchange_ts: d.exchange_ts.unwrap_or(received_ts),
            received_ts,
            gatherer_id,
            ticker: d.ticker,
            side: d.side,
            price_e6: d.price_e6,
            delta_e2: d.delta_e2,
            sid: id_i64(d.header.sid).ok_or(missing("sid"))?,
            seq: id_i64(d.header.seq).ok_or(missing("seq"))?,
            occurrence: 0,
        })
    }
}

impl TradeRow {
    /// The row for a decoded trade (WebSocket or a REST page). `exchange_ts` falls back to
    /// `received_ts` when the record had no time.
    #[must_use]
    pub fn from_wire(t: &Trade, gatherer_id: i16, received_ts: i64, source: Source) -> Self {
        Self {
            exchange_ts: t.exchange_ts.unwrap_or(received_ts),
            received_ts,
            gatherer_id,
            ticker: t.ticker,
            trade_id: t.trade_id,
            yes_price_e6: t.yes_price_e6,
            no_price_e6: t.no_price_e6,
            count_e2: t.count_e2,
            taker_side: t.taker_side,
            taker_outcome_side: t.taker_outcome_side,
            taker_book_side: t.taker_book_side,
            is_block_trade: t.is_block_trade,
            source,
            sid: id_i64(t.header.sid),
            seq: id_i64(t.header.seq),
        }
    }
}

impl TickerRow {
    /// The row for a decoded ticker update. `exchange_ts` falls back to `received_ts`.
    #[must_use]
    pub fn from_wire(t: &TickerUpdate, gatherer_id: i16, received_ts: i64) -> Self {
        Self {
            exchange_ts: t.exchange_ts.unwrap_or(received_ts),
            received_ts,
            gatherer_id,
            ticker: t.ticker,
            price_e6: t.price_e6,
            yes_bid_e6: t.yes_bid_e6,
            yes_ask_e6: t.yes_ask_e6,
            yes_bid_size_e2: t.yes_bid_size_e2,
            yes_ask_size_e2: t.yes_ask_size_e2,
            last_trade_size_e2: t.last_trade_size_e2,
            volume_e2: t.volume_e2,
            open_interest_e2: t.open_interest_e2,
            dollar_volume_e6: t.dollar_volume_e6,
            dollar_open_interest_e6: t.dollar_open_interest_e6,
            sid: id_i64(t.header.sid),
            seq: id_i64(t.header.seq),
            occurrence: 0,
        }
    }
}

impl SnapshotRow {
    /// Overwrite this (recycled) row with a decoded snapshot, reusing its level buffers.
    /// `snapshot_ts` is `received_ts`: a WebSocket snapshot has no exchange time (design §4).
    /// NO levels are stored as the wire quoted them; the caller converts them to NO-leg prices
    /// first when the subscription used `use_yes_price`.
    ///
    /// # Errors
    ///
    /// [`ConvertError::WrongKind`] when the record is not a snapshot.
    pub fn fill_from_wire(
        &mut self,
        decoded: &Decoded<'_>,
        gatherer_id: i16,
        received_ts: i64,
        source: Source,
    ) -> Result<(), ConvertError> {
        let Record::Snapshot(s) = &decoded.record else {
            return Err(ConvertError::WrongKind {
                expected: "orderbook_snapshot",
                got: decoded.record.kind(),
            });
        };
        self.snapshot_ts = received_ts;
        self.received_ts = received_ts;
        self.gatherer_id = gatherer_id;
        self.ticker = s.ticker;
        self.source = Some(source);
        self.sid = id_i64(s.header.sid);
        self.seq = id_i64(s.header.seq);
        self.yes.clear();
        self.yes.extend_from_slice(decoded.yes_levels());
        self.no.clear();
        self.no.extend_from_slice(decoded.no_levels());
        Ok(())
    }
}

impl LifecycleRow {
    /// Overwrite this (recycled) row with a decoded market lifecycle record; the payload is the
    /// record's canonical JSON (`kalshi_wire::write_canonical`). `exchange_ts` is set to
    /// `received_ts`: lifecycle frames carry schedule times (`open_ts`, `close_ts`), not the
    /// time of the event; a caller that knows better overwrites it.
    ///
    /// # Errors
    ///
    /// [`ConvertError::WrongKind`] when the record is not a market lifecycle record.
    pub fn fill_from_wire(
        &mut self,
        decoded: &Decoded<'_>,
        gatherer_id: i16,
        received_ts: i64,
        scratch: &mut Vec<u8>,
    ) -> Result<(), ConvertError> {
        let Record::MarketLifecycle(m) = &decoded.record else {
            return Err(ConvertError::WrongKind {
                expected: "market_lifecycle",
                got: decoded.record.kind(),
            });
        };
        self.exchange_ts = received_ts;
        self.received_ts = received_ts;
        self.gatherer_id = gatherer_id;
        self.ticker = m.ticker;
        self.event_type.clear();
        self.event_type.push_str(decoded.aux.text(m.event_type));
        self.mve = m.mve;
        scratch.clear();
        kalshi_wire::write_canonical(decoded, scratch);
        self.payload.clear();
        // write_canonical writes UTF-8 JSON; the lossy path is unreachable for its output.
        self.payload.push_str(&String::from_utf8_lossy(scratch));
        self.sid = id_i64(m.header.sid);
        self.seq = id_i64(m.header.seq);
        self.occurrence = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The hot rows move through the rings by value; their size sets ring memory. A change here
    // must be deliberate.
    #[test]
    fn row_sizes() {
        assert!(core::mem::size_of::<DeltaRow>() <= 128);
        assert!(core::mem::size_of::<TradeRow>() <= 208);
        assert!(
            core::mem::size_of::<Row>() <= 320,
            "{}",
            core::mem::size_of::<Row>()
        );
    }
}
