//! PostgreSQL binary COPY encoding (sans-IO), and the tables the writer knows.
//!
//! The format (PostgreSQL manual, "COPY", *Binary Format*): an 11-byte signature
//! `PGCOPY\n\377\r\n\0`, a 32-bit flags word and a 32-bit header-extension length (both 0); then
//! per tuple a 16-bit field count and per field a 32-bit length (−1 for NULL) followed by the
//! value in the type's binary send format, all integers big-endian; then a 16-bit −1 trailer.
//! Values used here: `int2`/`int4`/`int8` (big-endian), `bool` (one byte), `text` (UTF-8 bytes),
//! `jsonb` (a version byte 1, then the JSON text), and one-dimensional arrays (`int8[]`,
//! `text[]`): dimension count, has-null flag, element type OID, then per dimension its length
//! and lower bound (1), then each element as length + value; an empty array has zero
//! dimensions.
//!
//! The writer keeps one body (tuples only) per table and batch; [`COPY_HEADER`] and
//! [`COPY_TRAILER`] are added when the body is sent. Bodies are also what the spool stores.

use kalshi_wire::record::Side;

use crate::rows::{
    DeltaRow, EventRow, LifecycleRow, MarketRow, SequenceGapRow, SnapshotRow, Source, TickerRow,
    TradeRow,
};

/// Signature, flags and header-extension length of a binary COPY stream.
pub const COPY_HEADER: &[u8; 19] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// End-of-data marker: a field count of −1.
pub const COPY_TRAILER: &[u8; 2] = &[0xff, 0xff];

/// OID of `int8`, the element type of the snapshot level arrays.
const INT8_OID: i32 = 20;

/// OID of `text`, the element type of `sequence_gaps.tickers`.
const TEXT_OID: i32 = 25;

/// The tables the writer writes. The discriminant is stored in the spool: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum Table {
    /// `trades`.
    Trades = 0,
    /// `orderbook_deltas`.
    OrderbookDeltas = 1,
    /// `orderbook_snapshots`.
    OrderbookSnapshots = 2,
    /// `tickers`.
    Tickers = 3,
    /// `market_lifecycle`.
    MarketLifecycle = 4,
    /// `markets` (upserted).
    Markets = 5,
    /// `events` (upserted).
    Events = 6,
    /// `sequence_gaps`.
    SequenceGaps = 7,
}

/// Number of tables.
pub const TABLE_COUNT: usize = 8;

impl Table {
    /// Every table, in discriminant order (also the order in which a batch writes them).
    pub const ALL: [Table; TABLE_COUNT] = [
        Table::Trades,
        Table::OrderbookDeltas,
        Table::OrderbookSnapshots,
        Table::Tickers,
        Table::MarketLifecycle,
        Table::Markets,
        Table::Events,
        Table::SequenceGaps,
    ];

    /// The SQL name.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Table::Trades => "trades",
            Table::OrderbookDeltas => "orderbook_deltas",
            Table::OrderbookSnapshots => "orderbook_snapshots",
            Table::Tickers => "tickers",
            Table::MarketLifecycle => "market_lifecycle",
            Table::Markets => "markets",
            Table::Events => "events",
            Table::SequenceGaps => "sequence_gaps",
        }
    }

    /// The table of a spooled discriminant.
    #[must_use]
    pub fn from_u8(v: u8) -> Option<Table> {
        Table::ALL.get(usize::from(v)).copied()
    }

    /// The columns the writer fills, in COPY order (generated columns and identities left out).
    #[must_use]
    pub const fn columns(self) -> &'static [&'static str] {
        match self {
            Table::Trades => &[
                "exchange_ts",
                "received_ts",
                "gatherer_id",
                "ticker",
                "trade_id",
                "yes_price_e6",
                "no_price_e6",
                "count_e2",
                "taker_side",
                "taker_outcome_side",
                "taker_book_side",
                "is_block_trade",
                "source",
                "sid",
                "seq",
            ],
            Table::OrderbookDeltas => &[
                "exchange_ts",
                "received_ts",
                "gatherer_id",
                "ticker",
                "side",
                "price_e6",
                "delta_e2",
                "sid",
                "seq",
                "occurrence",
            ],
            Table::OrderbookSnapshots => &[
                "snapshot_ts",
                "received_ts",
                "gatherer_id",
                "ticker",
                "source",
                "sid",
                "seq",
                "yes_price_e6",
                "yes_count_e2",
                "no_price_e6",
                "no_count_e2",
            ],
            Table::Tickers => &[
                "exchange_ts",
                "received_ts",
                "gatherer_id",
                "ticker",
                "price_e6",
                "yes_bid_e6",
                "yes_ask_e6",
                "yes_bid_size_e2",
                "yes_ask_size_e2",
                "last_trade_size_e2",
                "volume_e2",
                "open_interest_e2",
                "dollar_volume_e6",
                "dollar_open_interest_e6",
                "sid",
                "seq",
                "occurrence",
            ],
            Table::MarketLifecycle => &[
                "exchange_ts",
                "received_ts",
                "gatherer_id",
                "ticker",
                "event_type",
                "mve",
                "payload",
                "sid",
                "seq",
                "occurrence",
            ],
            Table::Markets => &[
                "ticker",
                "event_ticker",
                "series_ticker",
                "status",
                "title",
                "yes_sub_title",
                "no_sub_title",
                "market_type",
                "open_ts",
                "close_ts",
                "price_level_structure",
                "price_ranges",
                "metadata",
                "updated_ts",
                "gatherer_id",
            ],
            Table::Events => &[
                "event_ticker",
                "series_ticker",
                "title",
                "sub_title",
                "collateral_return_type",
                "mutually_exclusive",
                "strike_date",
                "strike_period",
                "updated_ts",
                "gatherer_id",
            ],
            Table::SequenceGaps => &[
                "detected_ts",
                "gatherer_id",
                "channel",
                "sid",
                "expected_seq",
                "received_seq",
                "tickers",
                "repair",
                "repaired_ts",
                "backfilled_trades",
                "note",
            ],
        }
    }

    /// The primary key of a state table that is upserted (newest `updated_ts` wins), or `None`
    /// for the append-only tables.
    #[must_use]
    pub const fn upsert_key(self) -> Option<&'static str> {
        match self {
            Table::Markets => Some("ticker"),
            Table::Events => Some("event_ticker"),
            _ => None,
        }
    }
}

/// Appends fields of one tuple to a COPY body.
struct Tuple<'b>(&'b mut Vec<u8>);

impl<'b> Tuple<'b> {
    /// Start a tuple of `fields` fields.
    fn start(buf: &'b mut Vec<u8>, fields: usize) -> Self {
        buf.extend_from_slice(&(fields as i16).to_be_bytes());
        Tuple(buf)
    }

    fn null(&mut self) -> &mut Self {
        self.0.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&2i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&4i32.to_be_bytes());
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn opt_i32(&mut self, v: Option<i32>) -> &mut Self {
        match v {
            Some(v) => self.i32(v),
            None => self.null(),
        }
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        // One 12-byte append instead of two: this is the most common field.
        let mut field = [0u8; 12];
        field[..4].copy_from_slice(&8i32.to_be_bytes());
        field[4..].copy_from_slice(&v.to_be_bytes());
        self.0.extend_from_slice(&field);
        self
    }

    fn opt_i64(&mut self, v: Option<i64>) -> &mut Self {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    fn bool(&mut self, v: bool) -> &mut Self {
        self.0.extend_from_slice(&1i32.to_be_bytes());
        self.0.push(u8::from(v));
        self
    }

    fn opt_bool(&mut self, v: Option<bool>) -> &mut Self {
        match v {
            Some(v) => self.bool(v),
            None => self.null(),
        }
    }

    fn text(&mut self, v: &str) -> &mut Self {
        self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
        self.0.extend_from_slice(v.as_bytes());
        self
    }

    fn opt_text(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.text(v),
            None => self.null(),
        }
    }

    fn jsonb(&mut self, v: &str) -> &mut Self {
        self.0
            .extend_from_slice(&(v.len() as i32 + 1).to_be_bytes());
        self.0.push(1);
        self.0.extend_from_slice(v.as_bytes());
        self
    }

    fn opt_jsonb(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(v) => self.jsonb(v),
            None => self.null(),
        }
    }

    /// A one-dimensional `int8[]` of `n` elements produced by `values`.
    fn i64_array(&mut self, n: usize, values: impl Iterator<Item = i64>) -> &mut Self {
        if n == 0 {
            return self.empty_array(INT8_OID);
        }
        let len = 20 + 12 * n;
        self.0.extend_from_slice(&(len as i32).to_be_bytes());
        self.0.extend_from_slice(&1i32.to_be_bytes());
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.extend_from_slice(&INT8_OID.to_be_bytes());
        self.0.extend_from_slice(&(n as i32).to_be_bytes());
        self.0.extend_from_slice(&1i32.to_be_bytes());
        let mut written = 0;
        for v in values.take(n) {
            self.0.extend_from_slice(&8i32.to_be_bytes());
            self.0.extend_from_slice(&v.to_be_bytes());
            written += 1;
        }
        debug_assert_eq!(written, n, "array length announced {n}, wrote {written}");
        self
    }

    /// A one-dimensional `text[]`.
    fn text_array(&mut self, values: &[String]) -> &mut Self {
        if values.is_empty() {
            return self.empty_array(TEXT_OID);
        }
        let len = 20 + values.iter().map(|v| 4 + v.len()).sum::<usize>();
        self.0.extend_from_slice(&(len as i32).to_be_bytes());
        self.0.extend_from_slice(&1i32.to_be_bytes());
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.extend_from_slice(&TEXT_OID.to_be_bytes());
        self.0
            .extend_from_slice(&(values.len() as i32).to_be_bytes());
        self.0.extend_from_slice(&1i32.to_be_bytes());
        for v in values {
            self.0.extend_from_slice(&(v.len() as i32).to_be_bytes());
            self.0.extend_from_slice(v.as_bytes());
        }
        self
    }

    fn empty_array(&mut self, oid: i32) -> &mut Self {
        self.0.extend_from_slice(&12i32.to_be_bytes());
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.extend_from_slice(&0i32.to_be_bytes());
        self.0.extend_from_slice(&oid.to_be_bytes());
        self
    }
}

fn side(s: Side) -> &'static str {
    s.as_str()
}

/// Append one `orderbook_deltas` tuple.
pub fn encode_delta(buf: &mut Vec<u8>, r: &DeltaRow) {
    Tuple::start(buf, 10)
        .i64(r.exchange_ts)
        .i64(r.received_ts)
        .i16(r.gatherer_id)
        .text(r.ticker.as_str())
        .text(side(r.side))
        .i64(r.price_e6)
        .i64(r.delta_e2)
        .i64(r.sid)
        .i64(r.seq)
        .i32(r.occurrence);
}

/// Append one `trades` tuple.
pub fn encode_trade(buf: &mut Vec<u8>, r: &TradeRow) {
    Tuple::start(buf, 15)
        .i64(r.exchange_ts)
        .i64(r.received_ts)
        .i16(r.gatherer_id)
        .text(r.ticker.as_str())
        .text(r.trade_id.as_str())
        .i64(r.yes_price_e6)
        .i64(r.no_price_e6)
        .i64(r.count_e2)
        .opt_text(r.taker_side.map(side))
        .opt_text(r.taker_outcome_side.map(side))
        .opt_text(r.taker_book_side.map(|b| b.as_str()))
        .opt_bool(r.is_block_trade)
        .text(r.source.as_str())
        .opt_i64(r.sid)
        .opt_i64(r.seq);
}

/// Append one `tickers` tuple.
pub fn encode_ticker(buf: &mut Vec<u8>, r: &TickerRow) {
    Tuple::start(buf, 17)
        .i64(r.exchange_ts)
        .i64(r.received_ts)
        .i16(r.gatherer_id)
        .text(r.ticker.as_str())
        .opt_i64(r.price_e6)
        .opt_i64(r.yes_bid_e6)
        .opt_i64(r.yes_ask_e6)
        .opt_i64(r.yes_bid_size_e2)
        .opt_i64(r.yes_ask_size_e2)
        .opt_i64(r.last_trade_size_e2)
        .opt_i64(r.volume_e2)
        .opt_i64(r.open_interest_e2)
        .opt_i64(r.dollar_volume_e6)
        .opt_i64(r.dollar_open_interest_e6)
        .opt_i64(r.sid)
        .opt_i64(r.seq)
        .i32(r.occurrence);
}

/// Append one `orderbook_snapshots` tuple.
pub fn encode_snapshot(buf: &mut Vec<u8>, r: &SnapshotRow) {
    Tuple::start(buf, 11)
        .i64(r.snapshot_ts)
        .i64(r.received_ts)
        .i16(r.gatherer_id)
        .text(r.ticker.as_str())
        .text(r.source.unwrap_or(Source::Ws).as_str())
        .opt_i64(r.sid)
        .opt_i64(r.seq)
        .i64_array(r.yes.len(), r.yes.iter().map(|l| l.price_e6))
        .i64_array(r.yes.len(), r.yes.iter().map(|l| l.count_e2))
        .i64_array(r.no.len(), r.no.iter().map(|l| l.price_e6))
        .i64_array(r.no.len(), r.no.iter().map(|l| l.count_e2));
}

/// Append one `market_lifecycle` tuple.
pub fn encode_lifecycle(buf: &mut Vec<u8>, r: &LifecycleRow) {
    Tuple::start(buf, 10)
        .i64(r.exchange_ts)
        .i64(r.received_ts)
        .i16(r.gatherer_id)
        .text(r.ticker.as_str())
        .text(&r.event_type)
        .bool(r.mve)
        .jsonb(&r.payload)
        .opt_i64(r.sid)
        .opt_i64(r.seq)
        .i32(r.occurrence);
}

/// Append one `markets` tuple.
pub fn encode_market(buf: &mut Vec<u8>, r: &MarketRow) {
    Tuple::start(buf, 15)
        .text(&r.ticker)
        .text(&r.event_ticker)
        .opt_text(r.series_ticker.as_deref())
        .text(&r.status)
        .opt_text(r.title.as_deref())
        .opt_text(r.yes_sub_title.as_deref())
        .opt_text(r.no_sub_title.as_deref())
        .opt_text(r.market_type.as_deref())
        .opt_i64(r.open_ts)
        .opt_i64(r.close_ts)
        .opt_text(r.price_level_structure.as_deref())
        .opt_jsonb(r.price_ranges.as_deref())
        .opt_jsonb(r.metadata.as_deref())
        .i64(r.updated_ts)
        .i16(r.gatherer_id);
}

/// Append one `events` tuple.
pub fn encode_event(buf: &mut Vec<u8>, r: &EventRow) {
    Tuple::start(buf, 10)
        .text(&r.event_ticker)
        .opt_text(r.series_ticker.as_deref())
        .opt_text(r.title.as_deref())
        .opt_text(r.sub_title.as_deref())
        .opt_text(r.collateral_return_type.as_deref())
        .opt_bool(r.mutually_exclusive)
        .opt_i64(r.strike_date)
        .opt_text(r.strike_period.as_deref())
        .i64(r.updated_ts)
        .i16(r.gatherer_id);
}

/// Append one `sequence_gaps` tuple.
pub fn encode_sequence_gap(buf: &mut Vec<u8>, r: &SequenceGapRow) {
    Tuple::start(buf, 11)
        .i64(r.detected_ts)
        .i16(r.gatherer_id)
        .text(&r.channel)
        .opt_i64(r.sid)
        .opt_i64(r.expected_seq)
        .opt_i64(r.received_seq)
        .text_array(&r.tickers)
        .text(r.repair.as_str())
        .opt_i64(r.repaired_ts)
        .opt_i32(r.backfilled_trades)
        .opt_text(r.note.as_deref());
}

/// A COPY body that does not parse as tuples (a spool record that passed its checksum but was
/// written by a different build, or memory corruption).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed COPY body at byte {offset}: {what}")]
pub struct MalformedBody {
    /// Where parsing stopped.
    pub offset: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// The byte ranges of the tuples of a COPY body (no header or trailer), used to isolate a bad
/// row by bisection.
///
/// # Errors
///
/// [`MalformedBody`] when a count or length runs past the end.
pub fn tuple_ranges(body: &[u8]) -> Result<Vec<core::ops::Range<usize>>, MalformedBody> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let start = pos;
        let fields = read_i16(body, pos)?;
        pos += 2;
        if fields < 0 {
            return Err(MalformedBody {
                offset: start,
                what: "negative field count inside a body",
            });
        }
        for _ in 0..fields {
            let len = read_i32(body, pos)?;
            pos += 4;
            if len >= 0 {
                pos += len as usize;
                if pos > body.len() {
                    return Err(MalformedBody {
                        offset: start,
                        what: "field runs past the end",
                    });
                }
            }
        }
        out.push(start..pos);
    }
    Ok(out)
}

/// The fields of one tuple: `None` for NULL, else the raw value bytes (for reading dead
/// letters).
///
/// # Errors
///
/// [`MalformedBody`] when the tuple is truncated.
pub fn tuple_fields(tuple: &[u8]) -> Result<Vec<Option<&[u8]>>, MalformedBody> {
    let fields = read_i16(tuple, 0)?;
    let mut pos = 2;
    let mut out = Vec::with_capacity(usize::try_from(fields).unwrap_or(0));
    for _ in 0..fields {
        let len = read_i32(tuple, pos)?;
        pos += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = pos + len as usize;
            let value = tuple.get(pos..end).ok_or(MalformedBody {
                offset: pos,
                what: "field runs past the end",
            })?;
            out.push(Some(value));
            pos = end;
        }
    }
    Ok(out)
}

fn read_i16(b: &[u8], at: usize) -> Result<i16, MalformedBody> {
    b.get(at..at + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(i16::from_be_bytes)
        .ok_or(MalformedBody {
            offset: at,
            what: "truncated field count",
        })
}

fn read_i32(b: &[u8], at: usize) -> Result<i32, MalformedBody> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(i32::from_be_bytes)
        .ok_or(MalformedBody {
            offset: at,
            what: "truncated field length",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalshi_wire::Ticker;

    // Checks the exact bytes of one delta tuple against the format, field by field, and that the
    // tuple splitter finds it again.
    #[test]
    fn delta_tuple_bytes() {
        let row = DeltaRow {
            exchange_ts: 1,
            received_ts: 2,
            gatherer_id: 3,
            ticker: Ticker::new("AB").unwrap(),
            side: Side::No,
            price_e6: -4,
            delta_e2: 5,
            sid: 6,
            seq: 7,
            occurrence: 8,
        };
        let mut buf = Vec::new();
        encode_delta(&mut buf, &row);
        let mut want = vec![0, 10];
        let i64f = |w: &mut Vec<u8>, v: i64| {
            w.extend_from_slice(&[0, 0, 0, 8]);
            w.extend_from_slice(&v.to_be_bytes());
        };
        i64f(&mut want, 1);
        i64f(&mut want, 2);
        want.extend_from_slice(&[0, 0, 0, 2, 0, 3]);
        want.extend_from_slice(&[0, 0, 0, 2, b'A', b'B']);
        want.extend_from_slice(&[0, 0, 0, 2, b'n', b'o']);
        for v in [-4, 5, 6, 7] {
            i64f(&mut want, v);
        }
        want.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 8]);
        assert_eq!(buf, want);
        encode_delta(&mut buf, &row);
        let ranges = tuple_ranges(&buf).unwrap();
        assert_eq!(ranges, vec![0..want.len(), want.len()..2 * want.len()]);
        let fields = tuple_fields(&buf[ranges[1].clone()]).unwrap();
        assert_eq!(fields.len(), 10);
        assert_eq!(fields[3], Some(&b"AB"[..]));
        assert!(tuple_ranges(&buf[..buf.len() - 1]).is_err());
    }

    // Checks array and NULL encodings: an empty int8[] is 12 bytes with zero dimensions; a
    // two-element one announces its length and lower bound 1.
    #[test]
    fn arrays_and_nulls() {
        let mut buf = Vec::new();
        Tuple::start(&mut buf, 3)
            .i64_array(0, core::iter::empty())
            .i64_array(2, [7i64, -1].into_iter())
            .opt_i64(None);
        let fields = tuple_fields(&buf).unwrap();
        assert_eq!(fields[0].unwrap(), &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 20]);
        let a = fields[1].unwrap();
        assert_eq!(a.len(), 44);
        assert_eq!(&a[12..20], &[0, 0, 0, 2, 0, 0, 0, 1]);
        assert_eq!(fields[2], None);
        for t in Table::ALL {
            assert_eq!(Table::from_u8(t as u8), Some(t));
        }
        assert_eq!(Table::from_u8(8), None);
    }
}
