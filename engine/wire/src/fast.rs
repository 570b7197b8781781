//! The byte-level fast path for the frames that make up almost all of the feed.
//!
//! `orderbook_delta`, `trade` and `ticker` frames are over 95% of what a gatherer receives, and
//! Kalshi sends them in one compact shape: no whitespace, no escapes, `type` first, the current
//! fixed-point fields in a stable key order. For such a frame, simd-json's tape costs more than
//! everything else together (`bench/README.md`), so this module reads the frame's bytes directly:
//! first as a straight sequence of `,"key":value` steps in Kalshi's usual order (each key one
//! constant-length compare, each value written straight into the record), and, when the order
//! differs or a key is missing, again with each key looked up among the known ones. It parses
//! decimal strings, identifiers and timestamps straight from the input.
//!
//! It is strict, not tolerant: it accepts a frame only when it is sure that the simd-json path
//! ([`crate::Decoder::decode_tape_only`]) would produce exactly the same [`Record`]. Anything
//! else makes [`decode`] return `None` ("not handled here"), and the caller decodes the frame
//! with the simd-json path, which then also produces the error, if there is one. In particular
//! the fast path declines:
//! * any whitespace, any backslash (escape), any byte outside printable ASCII inside a string;
//! * a `type` that is not the first key, an envelope key other than `sid`, `seq` and `msg`;
//! * an unknown or repeated key, a legacy (cents) key, a `null`;
//! * a JSON number where a string is documented, or a string where a number is;
//! * a number with a fraction or exponent, or more than 18 digits; a decimal string with more
//!   digits than 18 in its unit, or with digits beyond the unit's precision that are not zero;
//! * every value the simd-json path refuses (a negative price, a `sid` of 0, a ticker over its
//!   capacity, a missing required field, an invalid timestamp) — those frames take the slow path
//!   so that the error is the one it reports.
//!
//! The equivalence of the two paths is tested over the recorded fixtures and several hundred
//! thousand generated and mutated frames (`tests/randomized.rs`), and fuzzed by the `fast_equiv`
//! cargo-fuzz target; both compare the two paths' complete results.
//!
//! Every byte access is bounds-checked (`get`), and all arithmetic is on values bounded so that
//! it cannot overflow, so no input can make this module panic.

use core::num::NonZeroU64;

use crate::fixed::{self, COUNT_SCALE, MICROS_PER_MILLI, MICROS_PER_SECOND, PRICE_SCALE};
use crate::inline::InlineStr;
use crate::record::{BookSide, Delta, Header, Record, Side, TickerUpdate, Trade};

/// Most decimal digits a value may have in its unit (integer digits plus the unit's scale): with
/// at most 18, the value is below `10^18 < i64::MAX`, so it is accumulated without overflow
/// checks.
const DIGITS_MAX: u32 = 18;

/// Decodes `frame` when it is a delta, trade or ticker frame in the plain current format;
/// `None` means "not handled here: use the simd-json path". The frame is only read.
#[inline(always)]
pub(crate) fn decode(frame: &[u8]) -> Option<Record> {
    let mut record = Record::default();
    decode_into(frame, &mut record)?;
    Some(record)
}

/// [`decode`] into `slot`, which is overwritten only in part when the frame is declined
/// (`None`): its content is then unspecified. When `slot` already holds a record of the frame's
/// kind, its fields are overwritten in place, so a reused slot is never moved or copied whole.
#[inline(always)]
pub(crate) fn decode_into(frame: &[u8], slot: &mut Record) -> Option<()> {
    let mut cursor = Cursor {
        bytes: frame,
        at: 0,
    };
    cursor.literal(b"{\"type\":\"")?;
    let kind = if cursor.literal(b"orderbook_delta\"").is_some() {
        Kind::Delta
    } else if cursor.literal(b"trade\"").is_some() {
        Kind::Trade
    } else if cursor.literal(b"ticker\"").is_some() {
        Kind::Ticker
    } else {
        return None;
    };
    let after_type = cursor.at;
    let header = match envelope_in_order(&mut cursor, kind, slot) {
        Envelope::Read(header) => header,
        Envelope::OutOfOrder => {
            cursor.at = after_type;
            envelope_any_order(&mut cursor, kind, slot)?
        }
        Envelope::Declined => return None,
    };
    match slot {
        Record::Delta(delta) => delta.header = header,
        Record::Trade(trade) => trade.header = header,
        Record::Ticker(ticker) => ticker.header = header,
        _ => return None,
    }
    Some(())
}

/// What [`envelope_in_order`] found.
enum Envelope {
    /// The frame, read; its envelope.
    Read(Header),
    /// Not the usual shape: [`envelope_any_order`] decides.
    OutOfOrder,
    /// The message itself was declined. [`envelope_any_order`] would read it from the same
    /// position, and decline it too.
    Declined,
}

/// The rest of a frame after its `type`, as Kalshi sends it: `,"sid":N,"seq":N,"msg":{...}}`
/// (ticker frames have no `seq`), with the message read into `slot`. It is the special case of
/// [`envelope_any_order`] where every key comes in its usual place.
#[inline(always)]
fn envelope_in_order(cursor: &mut Cursor<'_>, kind: Kind, slot: &mut Record) -> Envelope {
    let Some((sid, seq)) = envelope_head(cursor) else {
        return Envelope::OutOfOrder;
    };
    if message(cursor, kind, slot).is_none() {
        return Envelope::Declined;
    }
    if cursor.tag(b"}").is_none() || cursor.at != cursor.bytes.len() {
        return Envelope::OutOfOrder;
    }
    Envelope::Read(Header {
        id: None,
        sid: Some(sid),
        seq,
    })
}

/// `,"sid":N[,"seq":N],"msg":{`: the `sid` and the `seq`, if any.
#[inline(always)]
fn envelope_head(cursor: &mut Cursor<'_>) -> Option<(NonZeroU64, Option<NonZeroU64>)> {
    cursor.tag(b",\"sid\":")?;
    let sid = cursor.positive()?;
    let seq = if cursor.tag(b",\"seq\":").is_some() {
        Some(cursor.positive()?)
    } else {
        None
    };
    cursor.tag(b",\"msg\":{")?;
    Some((sid, seq))
}

/// The rest of a frame after its `type`, with the envelope keys in any order (each at most
/// once, `msg` required), and the message read into `slot`; returns the envelope.
#[cold]
fn envelope_any_order(cursor: &mut Cursor<'_>, kind: Kind, slot: &mut Record) -> Option<Header> {
    let mut header = Header::default();
    let (mut seen, mut expected) = (0, 0);
    loop {
        match cursor.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
        // `sid` and `seq` are positive integers; `sid: 0`, `seq: 0` or a repeated key goes to
        // the slow path (which reports the first two as errors).
        let index = cursor.key(&ENVELOPE_KEYS, expected)?;
        first_time(&mut seen, index)?;
        expected = index + 1;
        match index {
            0 => header.sid = Some(cursor.positive()?),
            1 => header.seq = Some(cursor.positive()?),
            _ => {
                if !cursor.eat(b'{') {
                    return None;
                }
                message(cursor, kind, slot)?;
            }
        }
    }
    // The `msg` object is required (the slot may hold an older record of the same kind).
    if cursor.at != cursor.bytes.len() || seen & 0b100 == 0 {
        return None;
    }
    Some(header)
}

/// The `msg` object of a `kind` frame, after its `{`, into `slot` (all but the header).
#[inline(always)]
fn message(cursor: &mut Cursor<'_>, kind: Kind, slot: &mut Record) -> Option<()> {
    match kind {
        Kind::Delta => delta(cursor, delta_slot(slot)?),
        Kind::Trade => trade(cursor, trade_slot(slot)?),
        Kind::Ticker => ticker(cursor, ticker_slot(slot)?),
    }
}

/// The envelope no frame has yet.
const NO_HEADER: Header = Header {
    id: None,
    sid: None,
    seq: None,
};

/// A delta to start a slot with (every field is overwritten).
const EMPTY_DELTA: Delta = Delta {
    header: NO_HEADER,
    exchange_ts: None,
    price_e6: 0,
    delta_e2: 0,
    side: Side::Yes,
    ticker: InlineStr::empty(),
    market_id: InlineStr::empty(),
};

/// A trade to start a slot with (every field is overwritten).
const EMPTY_TRADE: Trade = Trade {
    header: NO_HEADER,
    exchange_ts: None,
    yes_price_e6: 0,
    no_price_e6: 0,
    count_e2: 0,
    ticker: InlineStr::empty(),
    trade_id: InlineStr::empty(),
    taker_side: None,
    taker_outcome_side: None,
    taker_book_side: None,
    is_block_trade: None,
};

/// A ticker update with every field absent.
const EMPTY_TICKER: TickerUpdate = TickerUpdate {
    header: NO_HEADER,
    exchange_ts: None,
    ticker: InlineStr::empty(),
    market_id: InlineStr::empty(),
    price_e6: None,
    yes_bid_e6: None,
    yes_ask_e6: None,
    yes_bid_size_e2: None,
    yes_ask_size_e2: None,
    last_trade_size_e2: None,
    volume_e2: None,
    open_interest_e2: None,
    dollar_volume_e6: None,
    dollar_open_interest_e6: None,
};

/// The delta in `slot`, which is made one first when it holds another kind of record.
#[inline(always)]
fn delta_slot(slot: &mut Record) -> Option<&mut Delta> {
    if !matches!(slot, Record::Delta(_)) {
        *slot = Record::Delta(EMPTY_DELTA);
    }
    match slot {
        Record::Delta(delta) => Some(delta),
        _ => None,
    }
}

/// The trade in `slot`, which is made one first when it holds another kind of record.
#[inline(always)]
fn trade_slot(slot: &mut Record) -> Option<&mut Trade> {
    if !matches!(slot, Record::Trade(_)) {
        *slot = Record::Trade(EMPTY_TRADE);
    }
    match slot {
        Record::Trade(trade) => Some(trade),
        _ => None,
    }
}

/// The ticker update in `slot`, which is made one first when it holds another kind of record.
#[inline(always)]
fn ticker_slot(slot: &mut Record) -> Option<&mut TickerUpdate> {
    if !matches!(slot, Record::Ticker(_)) {
        *slot = Record::Ticker(EMPTY_TICKER);
    }
    match slot {
        Record::Ticker(ticker) => Some(ticker),
        _ => None,
    }
}

/// The envelope keys after `type`, in Kalshi's order.
const ENVELOPE_KEYS: [Key; 3] = [key(b"\"sid\":"), key(b"\"seq\":"), key(b"\"msg\":")];

#[derive(Clone, Copy)]
enum Kind {
    Delta,
    Trade,
    Ticker,
}

/// A read position in the frame.
struct Cursor<'f> {
    bytes: &'f [u8],
    at: usize,
}

impl<'f> Cursor<'f> {
    /// The next byte, consumed.
    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// Consumes `byte` when it is next.
    #[inline(always)]
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// Consumes `text` when it comes next; otherwise consumes nothing.
    #[inline(always)]
    fn literal(&mut self, text: &[u8]) -> Option<()> {
        let end = self.at + text.len();
        if self.bytes.get(self.at..end)? == text {
            self.at = end;
            Some(())
        } else {
            None
        }
    }

    /// Consumes the run of ASCII digits at the cursor and returns its value and length, or
    /// `None` when the run is longer than `max` (at most 19, so the value fits a `u64`).
    #[inline(always)]
    fn digits(&mut self, max: u32) -> Option<(u64, u32)> {
        debug_assert!(max <= 19);
        let (mut value, mut count) = (0u64, 0u32);
        loop {
            let word = match self.bytes.get(self.at..self.at + 8) {
                Some(chunk) => u64::from_le_bytes(chunk.try_into().ok()?),
                None => match self.last_word() {
                    Some(word) => word,
                    None => return self.digits_tail(value, count, max),
                },
            };
            let (run, run_value) = eight_digits(word);
            count += run;
            if count > max {
                return None;
            }
            // value < 10^(count - run), so the result is below 10^count <= 10^19 < 2^64.
            value = value * POW10_U64.get(run as usize)? + run_value;
            self.at += run as usize;
            if run < 8 {
                return Some((value, count));
            }
        }
    }

    /// The fewer than eight bytes left at the cursor, as a word whose missing top bytes are
    /// zeros (not digits), read from the frame's last eight bytes; `None` when the frame is
    /// shorter than that.
    #[inline(always)]
    fn last_word(&self) -> Option<u64> {
        let len = self.bytes.len();
        let last: [u8; 8] = self.bytes.get(len.checked_sub(8)?..)?.try_into().ok()?;
        let missing = 8 - len.checked_sub(self.at)?.min(8);
        Some(
            u64::from_le_bytes(last)
                .checked_shr(8 * missing as u32)
                .unwrap_or(0),
        )
    }

    /// [`Cursor::digits`] over the last few bytes of a frame shorter than eight bytes, one at
    /// a time.
    #[cold]
    fn digits_tail(&mut self, mut value: u64, mut count: u32, max: u32) -> Option<(u64, u32)> {
        while let Some(digit) = self.bytes.get(self.at).and_then(|b| {
            let d = b.wrapping_sub(b'0');
            (d < 10).then_some(d)
        }) {
            count += 1;
            if count > max {
                return None;
            }
            value = value * 10 + u64::from(digit);
            self.at += 1;
        }
        Some((value, count))
    }

    /// The run of digits of a JSON integer's magnitude (`0|[1-9][0-9]*`, at most `max`
    /// digits). A leading zero followed by more digits is not JSON: `None`.
    #[inline(always)]
    fn magnitude(&mut self, max: u32) -> Option<u64> {
        let first = *self.bytes.get(self.at)?;
        let (value, count) = self.digits(max)?;
        if count == 0 || (first == b'0' && count > 1) {
            return None;
        }
        Some(value)
    }

    /// A key with its quotes and colon: the index of `keys` it is, trying `keys[expected]`
    /// first. `None` for a key not in `keys`.
    #[inline(always)]
    fn key(&mut self, keys: &[Key], expected: usize) -> Option<usize> {
        if let Some(key) = keys.get(expected)
            && self.key_here(key)
        {
            self.at += key.text.len();
            return Some(expected);
        }
        self.key_lookup(keys)
    }

    /// Whether `key` comes next, compared eight bytes at a time.
    #[inline(always)]
    fn key_here(&self, key: &Key) -> bool {
        let mut at = self.at;
        for (word, mask) in key.words.iter().zip(&key.masks) {
            if *mask == 0 {
                break;
            }
            let Some(chunk) = self.bytes.get(at..at + 8) else {
                return self.bytes.get(self.at..self.at + key.text.len()) == Some(key.text);
            };
            let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
                return false;
            };
            if u64::from_le_bytes(chunk) & mask != *word {
                return false;
            }
            at += 8;
        }
        true
    }

    /// A key out of the usual order, looked up among `keys`.
    #[cold]
    fn key_lookup(&mut self, keys: &[Key]) -> Option<usize> {
        let index = keys.iter().position(|key| {
            self.bytes
                .get(self.at..self.at + key.text.len())
                .is_some_and(|text| text == key.text)
        })?;
        self.at += keys.get(index)?.text.len();
        Some(index)
    }

    /// A JSON string of printable ASCII without escapes; returns its content.
    #[inline(always)]
    fn string(&mut self) -> Option<&'f [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let start = self.at;
        let rest = self.bytes.get(start..)?;
        // Eight bytes at a time while they are all plain.
        let mut offset = 0;
        while let Some(chunk) = rest.get(offset..offset + 8) {
            let word = u64::from_le_bytes(chunk.try_into().ok()?);
            let special = special_bytes(word);
            if special != 0 {
                // The lowest flagged byte is a true hit (see `special_bytes`).
                offset += (special.trailing_zeros() / 8) as usize;
                break;
            }
            offset += 8;
        }
        for (index, &byte) in rest.get(offset..)?.iter().enumerate() {
            if byte == b'"' {
                let end = offset + index;
                self.at = start + end + 1;
                return rest.get(..end);
            }
            if !(0x20..0x80).contains(&byte) || byte == b'\\' {
                return None;
            }
        }
        None
    }

    /// A quoted plain decimal (`"-?[0-9]+(\.[0-9]+)?"`) in units of `10^-scale`, exactly as
    /// [`fixed::parse_decimal`] converts it; `None` when it would not convert, or has more than
    /// [`DIGITS_MAX`] digits in the unit.
    #[inline(always)]
    fn decimal(&mut self, scale: u32) -> Option<i64> {
        if !self.eat(b'"') {
            return None;
        }
        let negative = self.eat(b'-');
        let (integer, integer_digits) = self.digits(DIGITS_MAX - scale)?;
        if integer_digits == 0 {
            return None;
        }
        let unit = *POW10_U64.get(scale as usize)?;
        let mut value = integer * unit;
        if self.eat(b'.') {
            let (fraction, fraction_digits) = self.digits(DIGITS_MAX)?;
            if fraction_digits == 0 {
                return None;
            }
            value += if fraction_digits <= scale {
                fraction * POW10_U64.get((scale - fraction_digits) as usize)?
            } else {
                // Digits beyond the unit's precision must all be zeros.
                let excess = *POW10_U64.get((fraction_digits - scale) as usize)?;
                if fraction % excess != 0 {
                    return None;
                }
                fraction / excess
            };
        }
        if !self.eat(b'"') {
            return None;
        }
        // value < 10^18: integer < 10^(18 - scale) and the fraction < 10^scale.
        let value = i64::try_from(value).ok()?;
        Some(if negative { -value } else { value })
    }

    /// A price in dollars as micro-dollars; `None` also when negative.
    #[inline(always)]
    fn dollars(&mut self) -> Option<i64> {
        self.decimal(PRICE_SCALE).filter(|v| *v >= 0)
    }

    /// A contract count in hundredths; `None` also when negative.
    #[inline(always)]
    fn size(&mut self) -> Option<i64> {
        self.decimal(COUNT_SCALE).filter(|v| *v >= 0)
    }

    /// A JSON integer (`-?(0|[1-9][0-9]*)`, at most [`DIGITS_MAX`] digits). The caller checks
    /// what follows (`,` or `}`), which also refuses a fraction or an exponent.
    #[inline(always)]
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-');
        let value = i64::try_from(self.magnitude(DIGITS_MAX)?).ok()?;
        Some(if negative { -value } else { value })
    }

    /// A positive JSON integer (an id or sequence number) of at most 19 digits, which always
    /// fits a `u64`.
    #[inline(always)]
    fn positive(&mut self) -> Option<NonZeroU64> {
        NonZeroU64::new(self.magnitude(19)?)
    }

    /// `"yes"` or `"no"`.
    #[inline(always)]
    fn side(&mut self) -> Option<Side> {
        if self.literal(b"\"yes\"").is_some() {
            Some(Side::Yes)
        } else if self.literal(b"\"no\"").is_some() {
            Some(Side::No)
        } else {
            None
        }
    }

    /// `"bid"` or `"ask"`.
    #[inline(always)]
    fn book_side(&mut self) -> Option<BookSide> {
        if self.literal(b"\"bid\"").is_some() {
            Some(BookSide::Bid)
        } else if self.literal(b"\"ask\"").is_some() {
            Some(BookSide::Ask)
        } else {
            None
        }
    }

    /// `true` or `false`.
    #[inline(always)]
    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else if self.literal(b"false").is_some() {
            Some(false)
        } else {
            None
        }
    }

    /// A quoted RFC 3339 timestamp in µs, as [`fixed::parse_rfc3339_us`] converts it.
    #[inline(always)]
    fn rfc3339(&mut self) -> Option<i64> {
        let start = self.at;
        if let Some(micros) = self.rfc3339_utc() {
            return Some(micros);
        }
        self.at = start;
        fixed::parse_rfc3339_us(self.string()?).ok()
    }

    /// The shape Kalshi sends, `"YYYY-MM-DDTHH:MM:SS[.fraction]Z"`, read at fixed offsets;
    /// `None` for any other shape (the caller then uses the general parser) or an invalid date.
    #[inline(always)]
    fn rfc3339_utc(&mut self) -> Option<i64> {
        let head: [u8; 20] = self.bytes.get(self.at..self.at + 20)?.try_into().ok()?;
        let two = |high: u8, low: u8| {
            let (high, low) = (high.wrapping_sub(b'0'), low.wrapping_sub(b'0'));
            (high < 10 && low < 10).then(|| i64::from(high * 10 + low))
        };
        if head[0] != b'"'
            || head[5] != b'-'
            || head[8] != b'-'
            || head[11] != b'T'
            || head[14] != b':'
            || head[17] != b':'
        {
            return None;
        }
        let year = two(head[1], head[2])? * 100 + two(head[3], head[4])?;
        let month = two(head[6], head[7])? as u32;
        let day = two(head[9], head[10])? as u32;
        let hour = two(head[12], head[13])?;
        let minute = two(head[15], head[16])?;
        let second = two(head[18], head[19])?;
        if !(1..=12).contains(&month)
            || day == 0
            || day > fixed::days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return None;
        }
        self.at += 20;
        let mut micros = 0;
        if self.eat(b'.') {
            let (fraction, digits) = self.digits(DIGITS_MAX)?;
            if digits == 0 {
                return None;
            }
            // Digits finer than a microsecond are truncated, as the general parser does.
            micros = if digits <= 6 {
                fraction * POW10_U64.get(6 - digits as usize)?
            } else {
                fraction / POW10_U64.get(digits as usize - 6)?
            };
        }
        self.literal(b"Z\"")?;
        let days = fixed::days_from_civil(year, month, day);
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
        Some(seconds * MICROS_PER_SECOND + i64::try_from(micros).ok()?)
    }

    /// An inline identifier: a string (as [`Cursor::string`] reads it) within the capacity.
    #[inline(always)]
    fn inline<const N: usize>(&mut self) -> Option<InlineStr<N>> {
        // The 64 bytes after the opening quote hold any string that fits the capacity (at most
        // 63 bytes) and its closing quote. They are there unless the string ends the frame.
        let Some(window) = self.bytes.get(self.at + 1..self.at + 65) else {
            return InlineStr::from_ascii(self.string()?);
        };
        let window: &[u8; 64] = window.try_into().ok()?;
        if self.bytes.get(self.at) != Some(&b'"') {
            return None;
        }
        let mut end = window.len();
        for (index, chunk) in window.chunks_exact(8).enumerate() {
            let special = special_bytes(u64::from_le_bytes(chunk.try_into().ok()?));
            if special != 0 {
                // The lowest flagged byte is a true hit (see `special_bytes`).
                end = 8 * index + (special.trailing_zeros() / 8) as usize;
                break;
            }
        }
        // The string ends at the first special byte only when that is a quote; any other
        // (an escape, a control or non-ASCII byte), or none within the window, declines.
        if window.get(end) != Some(&b'"') {
            return None;
        }
        self.at += end + 2;
        InlineStr::from_ascii_window(window, end)
    }

    /// Consumes `text` (a key, with what surrounds it) when it comes next; `None` otherwise.
    /// The length is a constant, so the comparison is a few word compares.
    #[inline(always)]
    fn tag<const N: usize>(&mut self, text: &[u8; N]) -> Option<()> {
        let end = self.at + N;
        let here: &[u8; N] = self.bytes.get(self.at..end)?.try_into().ok()?;
        if here != text {
            return None;
        }
        self.at = end;
        Some(())
    }

    /// After a value: `true` when another field follows (`,`), `false` at the end of the
    /// object (`}`); `None` for anything else.
    #[inline(always)]
    fn more(&mut self) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }
}

/// A key with its quotes and colon (`"side":`), also as up to three little-endian words and
/// masks, to compare eight bytes at a time.
struct Key {
    text: &'static [u8],
    words: [u64; 3],
    masks: [u64; 3],
}

/// Builds a [`Key`] at compile time; `text` is at most 24 bytes.
const fn key(text: &'static [u8]) -> Key {
    assert!(!text.is_empty() && text.len() <= 24);
    let mut words = [0u64; 3];
    let mut masks = [0u64; 3];
    let mut index = 0;
    while index < text.len() {
        let shift = 8 * (index % 8);
        words[index / 8] |= (text[index] as u64) << shift;
        masks[index / 8] |= 0xFF << shift;
        index += 1;
    }
    Key { text, words, masks }
}

/// `10^n` for `n` in `0..=19`.
const POW10_U64: [u64; 20] = {
    let mut table = [1u64; 20];
    let mut n = 1;
    while n < 20 {
        table[n] = table[n - 1] * 10;
        n += 1;
    }
    table
};

/// The leading ASCII digits of `word` (eight frame bytes, the first in the lowest byte): how
/// many there are (0 to 8), and their value.
#[inline(always)]
const fn eight_digits(word: u64) -> (u32, u64) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // A byte is a digit when its high nibble is 3 and adding 6 keeps it so (low nibble <= 9).
    // Carries from adding 6 to a byte >= 0xFA, and from the flag computation below, only
    // corrupt bytes above a non-digit, so the lowest flag is exact.
    let high = (word & (ONES * 0xF0)) ^ (ONES * 0x30);
    let low = (word.wrapping_add(ONES * 0x06) & (ONES * 0xF0)) ^ (ONES * 0x30);
    let not_digit = high | low;
    let flags = (not_digit.wrapping_add(ONES * 0x7F) | not_digit) & (ONES * 0x80);
    let count = flags.trailing_zeros() / 8;
    if count == 0 {
        return (0, 0);
    }
    // The digits' values, moved to the top bytes so that the bytes before them read as zeros,
    // then combined pairwise: 8 x 1 digit -> 4 x 2 -> 2 x 4 -> 1 x 8.
    let mut value = (word & (ONES * 0x0F)) << (64 - 8 * count);
    value = (value.wrapping_mul(10).wrapping_add(value >> 8)) & 0x00FF_00FF_00FF_00FF;
    value = (value.wrapping_mul(100).wrapping_add(value >> 16)) & 0x0000_FFFF_0000_FFFF;
    value = (value.wrapping_mul(10_000).wrapping_add(value >> 32)) & 0xFFFF_FFFF;
    (count, value)
}

/// Flags (with bit 7 of the byte) the bytes of `word` that end or disqualify a plain string:
/// `"`, `\\`, a control byte below 0x20, or a byte of 0x80 or above. A flag may also be set on a
/// plain byte, but only above (at a higher address than) a byte that is truly special, since
/// false flags come from a borrow out of a special byte; so the lowest flag is always a true one.
#[inline(always)]
const fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * b'"' as u64);
    let backslash = word ^ (ONES * b'\\' as u64);
    let quote_zero = quote.wrapping_sub(ONES) & !quote;
    let backslash_zero = backslash.wrapping_sub(ONES) & !backslash;
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (quote_zero | backslash_zero | control | word) & HIGH
}

/// The exchange time, as `decode::resolve_time` picks it when every present candidate is valid:
/// the precise form when it agrees with the coarser one, else `ts_ms`, else `ts` seconds.
/// `None` when that would overflow (the slow path reports it).
#[inline(always)]
fn resolve_time(
    precise: Option<i64>,
    millis: Option<i64>,
    seconds: Option<i64>,
) -> Option<Option<i64>> {
    if let Some(ms) = millis {
        if let Some(us) = precise.filter(|us| us.div_euclid(MICROS_PER_MILLI) == ms) {
            return Some(Some(us));
        }
        return ms.checked_mul(MICROS_PER_MILLI).map(Some);
    }
    if let Some(seconds) = seconds {
        if let Some(us) = precise.filter(|us| us.div_euclid(MICROS_PER_SECOND) == seconds) {
            return Some(Some(us));
        }
        return seconds.checked_mul(MICROS_PER_SECOND).map(Some);
    }
    Some(precise)
}

/// Marks key `index` as seen; `None` when it was already.
#[inline(always)]
fn first_time(seen: &mut u32, index: usize) -> Option<()> {
    let bit = 1u32.checked_shl(index as u32)?;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// The keys of a current-format delta `msg`, in Kalshi's order.
const DELTA_KEYS: [Key; 7] = [
    key(b"\"market_ticker\":"),
    key(b"\"market_id\":"),
    key(b"\"price_dollars\":"),
    key(b"\"delta_fp\":"),
    key(b"\"side\":"),
    key(b"\"ts\":"),
    key(b"\"ts_ms\":"),
];

/// The `msg` object of an `orderbook_delta`, after its `{`, into `out` (all but its header).
/// `out` is left partly overwritten when this returns `None`.
#[inline(always)]
fn delta(cursor: &mut Cursor<'_>, out: &mut Delta) -> Option<()> {
    let start = cursor.at;
    if delta_in_order(cursor, out).is_some() {
        return Some(());
    }
    cursor.at = start;
    *out = delta_any_order(cursor)?;
    Some(())
}

/// A delta `msg` exactly as Kalshi sends it today: every current field, in [`DELTA_KEYS`]
/// order, read straight into `out` (all but its header). It is the special case of
/// [`delta_any_order`] where every key comes in its expected place, and reads the same.
#[inline(always)]
fn delta_in_order(cursor: &mut Cursor<'_>, out: &mut Delta) -> Option<()> {
    cursor.tag(b"\"market_ticker\":")?;
    out.ticker = cursor.inline()?;
    cursor.tag(b",\"market_id\":")?;
    out.market_id = cursor.inline()?;
    cursor.tag(b",\"price_dollars\":")?;
    out.price_e6 = cursor.dollars()?;
    cursor.tag(b",\"delta_fp\":")?;
    out.delta_e2 = cursor.decimal(COUNT_SCALE)?;
    cursor.tag(b",\"side\":")?;
    out.side = cursor.side()?;
    cursor.tag(b",\"ts\":")?;
    let precise = cursor.rfc3339()?;
    cursor.tag(b",\"ts_ms\":")?;
    let millis = cursor.integer()?;
    cursor.tag(b"}")?;
    out.exchange_ts = resolve_time(Some(precise), Some(millis), None)?;
    Some(())
}

/// The `msg` object of an `orderbook_delta`, after its `{`, with its keys in any order.
#[cold]
fn delta_any_order(cursor: &mut Cursor<'_>) -> Option<Delta> {
    let (mut ticker, mut market_id, mut price_e6, mut delta_e2, mut side) =
        (None, None, None, None, None);
    let (mut precise, mut millis) = (None, None);
    let mut seen = 0;
    let mut expected = 0;
    loop {
        let index = cursor.key(&DELTA_KEYS, expected)?;
        first_time(&mut seen, index)?;
        expected = index + 1;
        match index {
            0 => ticker = Some(cursor.inline()?),
            1 => market_id = Some(cursor.inline()?),
            2 => price_e6 = Some(cursor.dollars()?),
            3 => delta_e2 = Some(cursor.decimal(COUNT_SCALE)?),
            4 => side = Some(cursor.side()?),
            5 => precise = Some(cursor.rfc3339()?),
            _ => millis = Some(cursor.integer()?),
        }
        if !cursor.more()? {
            break;
        }
    }
    Some(Delta {
        header: Header::default(),
        exchange_ts: resolve_time(precise, millis, None)?,
        price_e6: price_e6?,
        delta_e2: delta_e2?,
        side: side?,
        ticker: ticker?,
        market_id: market_id.unwrap_or_default(),
    })
}

/// The keys of a current-format trade `msg`, in Kalshi's order.
const TRADE_KEYS: [Key; 11] = [
    key(b"\"trade_id\":"),
    key(b"\"market_ticker\":"),
    key(b"\"yes_price_dollars\":"),
    key(b"\"no_price_dollars\":"),
    key(b"\"count_fp\":"),
    key(b"\"taker_side\":"),
    key(b"\"taker_outcome_side\":"),
    key(b"\"taker_book_side\":"),
    key(b"\"is_block_trade\":"),
    key(b"\"ts\":"),
    key(b"\"ts_ms\":"),
];

/// The `msg` object of a `trade`, after its `{`, into `out` (all but its header). `out` is
/// left partly overwritten when this returns `None`.
#[inline(always)]
fn trade(cursor: &mut Cursor<'_>, out: &mut Trade) -> Option<()> {
    let start = cursor.at;
    if trade_in_order(cursor, out).is_some() {
        return Some(());
    }
    cursor.at = start;
    *out = trade_any_order(cursor)?;
    Some(())
}

/// A trade `msg` exactly as Kalshi sends it today: every current field, in [`TRADE_KEYS`]
/// order, read straight into `out` (all but its header). What it accepts,
/// [`trade_any_order`] reads the same way: it is the special case where every key comes in
/// its expected place, with `exchange_ts` from `ts_ms` (`ts`, in seconds, is then only
/// checked to be a valid integer, as `resolve_time` ignores it).
#[inline(always)]
fn trade_in_order(cursor: &mut Cursor<'_>, out: &mut Trade) -> Option<()> {
    cursor.tag(b"\"trade_id\":")?;
    out.trade_id = cursor.inline()?;
    cursor.tag(b",\"market_ticker\":")?;
    out.ticker = cursor.inline()?;
    cursor.tag(b",\"yes_price_dollars\":")?;
    out.yes_price_e6 = cursor.dollars()?;
    cursor.tag(b",\"no_price_dollars\":")?;
    out.no_price_e6 = cursor.dollars()?;
    cursor.tag(b",\"count_fp\":")?;
    out.count_e2 = cursor.size()?;
    cursor.tag(b",\"taker_side\":")?;
    out.taker_side = Some(cursor.side()?);
    cursor.tag(b",\"taker_outcome_side\":")?;
    out.taker_outcome_side = Some(cursor.side()?);
    cursor.tag(b",\"taker_book_side\":")?;
    out.taker_book_side = Some(cursor.book_side()?);
    cursor.tag(b",\"is_block_trade\":")?;
    out.is_block_trade = Some(cursor.boolean()?);
    cursor.tag(b",\"ts\":")?;
    cursor.integer()?;
    cursor.tag(b",\"ts_ms\":")?;
    let millis = cursor.integer()?;
    cursor.tag(b"}")?;
    out.exchange_ts = Some(millis.checked_mul(MICROS_PER_MILLI)?);
    Some(())
}

/// The `msg` object of a `trade`, after its `{`, with its keys in any order.
#[cold]
fn trade_any_order(cursor: &mut Cursor<'_>) -> Option<Trade> {
    let (mut ticker, mut trade_id, mut yes, mut no, mut count_e2) = (None, None, None, None, None);
    let (mut taker_side, mut taker_outcome_side, mut taker_book_side) = (None, None, None);
    let mut is_block_trade = None;
    let (mut seconds, mut millis) = (None, None);
    let mut seen = 0;
    let mut expected = 0;
    loop {
        let index = cursor.key(&TRADE_KEYS, expected)?;
        first_time(&mut seen, index)?;
        expected = index + 1;
        match index {
            0 => trade_id = Some(cursor.inline()?),
            1 => ticker = Some(cursor.inline()?),
            2 => yes = Some(cursor.dollars()?),
            3 => no = Some(cursor.dollars()?),
            4 => count_e2 = Some(cursor.size()?),
            5 => taker_side = Some(cursor.side()?),
            6 => taker_outcome_side = Some(cursor.side()?),
            7 => taker_book_side = Some(cursor.book_side()?),
            8 => is_block_trade = Some(cursor.boolean()?),
            9 => seconds = Some(cursor.integer()?),
            _ => millis = Some(cursor.integer()?),
        }
        if !cursor.more()? {
            break;
        }
    }
    let one_dollar = fixed::pow10(PRICE_SCALE);
    // A missing leg is one dollar minus the other; a leg above one dollar would make it
    // negative, which the slow path refuses.
    let (yes_price_e6, no_price_e6) = match (yes, no) {
        (Some(yes), Some(no)) => (yes, no),
        (Some(yes), None) => (yes, Some(one_dollar - yes).filter(|v| *v >= 0)?),
        (None, Some(no)) => (Some(one_dollar - no).filter(|v| *v >= 0)?, no),
        (None, None) => return None,
    };
    Some(Trade {
        header: Header::default(),
        exchange_ts: resolve_time(None, millis, seconds)?,
        yes_price_e6,
        no_price_e6,
        count_e2: count_e2?,
        ticker: ticker?,
        trade_id: trade_id?,
        taker_side,
        taker_outcome_side,
        taker_book_side,
        is_block_trade,
    })
}

/// The keys of a current-format ticker `msg`, in Kalshi's order.
const TICKER_KEYS: [Key; 15] = [
    key(b"\"market_id\":"),
    key(b"\"market_ticker\":"),
    key(b"\"price_dollars\":"),
    key(b"\"yes_bid_dollars\":"),
    key(b"\"yes_ask_dollars\":"),
    key(b"\"volume_fp\":"),
    key(b"\"open_interest_fp\":"),
    key(b"\"dollar_volume\":"),
    key(b"\"dollar_open_interest\":"),
    key(b"\"yes_bid_size_fp\":"),
    key(b"\"yes_ask_size_fp\":"),
    key(b"\"last_trade_size_fp\":"),
    key(b"\"ts\":"),
    key(b"\"ts_ms\":"),
    key(b"\"time\":"),
];

/// The `msg` object of a `ticker`, after its `{`, into `out` (all but its header). `out` is
/// left partly overwritten when this returns `None`.
#[inline(always)]
fn ticker(cursor: &mut Cursor<'_>, out: &mut TickerUpdate) -> Option<()> {
    let start = cursor.at;
    if ticker_in_order(cursor, out).is_some() {
        return Some(());
    }
    cursor.at = start;
    *out = ticker_any_order(cursor)?;
    Some(())
}

/// A ticker `msg` exactly as Kalshi sends it today: every current field, in [`TICKER_KEYS`]
/// order, read straight into `out` (all but its header). It is the special case of
/// [`ticker_any_order`] where every key comes in its expected place, and reads the same.
#[inline(always)]
fn ticker_in_order(cursor: &mut Cursor<'_>, out: &mut TickerUpdate) -> Option<()> {
    cursor.tag(b"\"market_id\":")?;
    out.market_id = cursor.inline()?;
    cursor.tag(b",\"market_ticker\":")?;
    out.ticker = cursor.inline()?;
    cursor.tag(b",\"price_dollars\":")?;
    // 2025 frames sent "" for a market that never traded: no price.
    out.price_e6 = if cursor.literal(b"\"\"").is_some() {
        None
    } else {
        Some(cursor.dollars()?)
    };
    cursor.tag(b",\"yes_bid_dollars\":")?;
    out.yes_bid_e6 = Some(cursor.dollars()?);
    cursor.tag(b",\"yes_ask_dollars\":")?;
    out.yes_ask_e6 = Some(cursor.dollars()?);
    cursor.tag(b",\"volume_fp\":")?;
    out.volume_e2 = Some(cursor.size()?);
    cursor.tag(b",\"open_interest_fp\":")?;
    out.open_interest_e2 = Some(cursor.size()?);
    cursor.tag(b",\"dollar_volume\":")?;
    out.dollar_volume_e6 = Some(whole_dollars(cursor)?);
    cursor.tag(b",\"dollar_open_interest\":")?;
    out.dollar_open_interest_e6 = Some(whole_dollars(cursor)?);
    cursor.tag(b",\"yes_bid_size_fp\":")?;
    out.yes_bid_size_e2 = Some(cursor.size()?);
    cursor.tag(b",\"yes_ask_size_fp\":")?;
    out.yes_ask_size_e2 = Some(cursor.size()?);
    cursor.tag(b",\"last_trade_size_fp\":")?;
    out.last_trade_size_e2 = Some(cursor.size()?);
    cursor.tag(b",\"ts\":")?;
    let seconds = cursor.integer()?;
    cursor.tag(b",\"ts_ms\":")?;
    let millis = cursor.integer()?;
    cursor.tag(b",\"time\":")?;
    let precise = cursor.rfc3339()?;
    cursor.tag(b"}")?;
    out.exchange_ts = resolve_time(Some(precise), Some(millis), Some(seconds))?;
    Some(())
}

/// The `msg` object of a `ticker`, after its `{`, with its keys in any order.
#[cold]
fn ticker_any_order(cursor: &mut Cursor<'_>) -> Option<TickerUpdate> {
    let (mut ticker, mut market_id) = (None, None);
    let mut out = EMPTY_TICKER;
    let (mut precise, mut millis, mut seconds) = (None, None, None);
    let mut seen = 0;
    let mut expected = 0;
    loop {
        let index = cursor.key(&TICKER_KEYS, expected)?;
        first_time(&mut seen, index)?;
        expected = index + 1;
        match index {
            0 => market_id = Some(cursor.inline()?),
            1 => ticker = Some(cursor.inline()?),
            // 2025 frames sent "" for a market that never traded: no price.
            2 if cursor.literal(b"\"\"").is_some() => {}
            2 => out.price_e6 = Some(cursor.dollars()?),
            3 => out.yes_bid_e6 = Some(cursor.dollars()?),
            4 => out.yes_ask_e6 = Some(cursor.dollars()?),
            5 => out.volume_e2 = Some(cursor.size()?),
            6 => out.open_interest_e2 = Some(cursor.size()?),
            // Whole dollars (a JSON integer, signed).
            7 => out.dollar_volume_e6 = Some(whole_dollars(cursor)?),
            8 => out.dollar_open_interest_e6 = Some(whole_dollars(cursor)?),
            9 => out.yes_bid_size_e2 = Some(cursor.size()?),
            10 => out.yes_ask_size_e2 = Some(cursor.size()?),
            11 => out.last_trade_size_e2 = Some(cursor.size()?),
            12 => seconds = Some(cursor.integer()?),
            13 => millis = Some(cursor.integer()?),
            _ => precise = Some(cursor.rfc3339()?),
        }
        if !cursor.more()? {
            break;
        }
    }
    out.exchange_ts = resolve_time(precise, millis, seconds)?;
    out.ticker = ticker?;
    out.market_id = market_id.unwrap_or_default();
    Some(out)
}

/// A JSON integer of whole dollars, as micro-dollars.
#[inline(always)]
fn whole_dollars(cursor: &mut Cursor<'_>) -> Option<i64> {
    cursor.integer()?.checked_mul(fixed::pow10(PRICE_SCALE))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decimal(text: &str, scale: u32) -> Option<i64> {
        let quoted = format!("\"{text}\"");
        let mut cursor = Cursor {
            bytes: quoted.as_bytes(),
            at: 0,
        };
        cursor.decimal(scale).filter(|_| cursor.at == quoted.len())
    }

    // The fast decimal parse agrees with `fixed::parse_decimal` wherever it accepts, and
    // declines exactly the inputs it cannot take without checks.
    #[test]
    fn decimal_agrees_with_parse_decimal() {
        let texts = [
            "0.5600",
            "0.999999",
            "1",
            "0.017500",
            "82.12",
            "-15.82",
            "-0.00",
            "0.5000000",
            "0.1234567",
            "9.731",
            "",
            "-",
            ".5",
            "5.",
            "+5",
            "1e-2",
            "0x10",
            "1 ",
            "007.50",
            "999999999999",
            "9999999999999",
            "999999999999.999999",
            "9999999999999999.99",
            "99999999999999999.99",
            "1.5.5",
            "--1",
        ];
        for text in texts {
            for scale in [0, 2, 4, 6] {
                let slow = fixed::parse_decimal(text.as_bytes(), scale).ok();
                let fast = decimal(text, scale);
                if let Some(fast) = fast {
                    assert_eq!(Some(fast), slow, "{text} at scale {scale}");
                }
                let digits = text
                    .split('.')
                    .next()
                    .map_or(0, |i| i.trim_start_matches('-').len());
                if slow.is_some() && digits as u32 + scale <= DIGITS_MAX {
                    assert_eq!(fast, slow, "{text} at scale {scale} declined");
                }
            }
        }
        assert_eq!(decimal("9999999999999", 6), None);
        assert_eq!(
            decimal("999999999999.999999", 6),
            Some(999_999_999_999_999_999)
        );
    }

    // The eight-byte scan flags exactly the bytes that end or disqualify a string, at least at
    // the lowest flagged position, for every byte value in every lane.
    #[test]
    fn special_bytes_lowest_flag_is_exact() {
        let special = |b: u8| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
        for lane in 0..8 {
            for byte in 0..=255u8 {
                for filler in [b'a', b'"', 0, 0xff, b'0'] {
                    let mut bytes = [b'K'; 8];
                    bytes[lane] = byte;
                    for slot in bytes.iter_mut().skip(lane + 1) {
                        *slot = filler;
                    }
                    let flags = special_bytes(u64::from_le_bytes(bytes));
                    let first = bytes.iter().position(|b| special(*b));
                    let lowest = (flags != 0).then(|| (flags.trailing_zeros() / 8) as usize);
                    assert_eq!(lowest, first, "{bytes:?}");
                }
            }
        }
    }

    // The eight-digit scan agrees with a byte-at-a-time reference on words mixing digits with
    // the bytes around the digit range and bytes that carry.
    #[test]
    fn eight_digits_agrees_with_bytewise() {
        let alphabet = [
            b'0',
            b'1',
            b'5',
            b'9',
            b'/',
            b':',
            b'"',
            b'.',
            b'-',
            0,
            0x39 + 6,
            0xF9,
            0xFA,
            0xFF,
            0x80,
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bytes = [0u8; 8];
            let digits_first = (state >> 60) as usize % 9;
            for (index, slot) in bytes.iter_mut().enumerate() {
                let pick = ((state >> (index * 4)) & 0xF) as usize;
                *slot = if index < digits_first {
                    b'0' + (pick % 10) as u8
                } else {
                    alphabet[pick % alphabet.len()]
                };
            }
            let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
            let value = bytes[..count]
                .iter()
                .fold(0u64, |v, b| v * 10 + u64::from(b - b'0'));
            assert_eq!(
                eight_digits(u64::from_le_bytes(bytes)),
                (count as u32, value),
                "{bytes:?}"
            );
        }
    }

    // The fixed-layout timestamp reader agrees with the general parser, and hands every other
    // shape to it.
    #[test]
    fn rfc3339_agrees_with_the_general_parser() {
        for text in [
            "2026-08-27T13:56:23.996443Z",
            "2026-06-11T06:29:47.42784Z",
            "2025-08-12T21:00:32.539836022Z",
            "2022-11-22T20:44:01Z",
            "2022-11-22T22:44:01+02:00",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "2024-02-29T00:00:00Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9999999999999999999999Z",
            "2025-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:60Z",
            "2026-01-01t00:00:00z",
            "2026-01-01 00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01",
            "",
        ] {
            let quoted = format!("\"{text}\"");
            let mut cursor = Cursor {
                bytes: quoted.as_bytes(),
                at: 0,
            };
            let fast = cursor.rfc3339().filter(|_| cursor.at == quoted.len());
            assert_eq!(
                fast,
                fixed::parse_rfc3339_us(text.as_bytes()).ok(),
                "{text}"
            );
        }
    }

    // Integers: JSON grammar, at most 18 digits, and the caller sees what follows.
    #[test]
    fn integers() {
        let cases: &[(&str, Option<i64>, usize)] = &[
            ("0", Some(0), 1),
            ("-0", Some(0), 2),
            ("05", None, 0),
            ("12345678", Some(12_345_678), 8),
            ("123456789}", Some(123_456_789), 9),
            ("-1234567890123456", Some(-1_234_567_890_123_456), 17),
            ("1787838983996", Some(1_787_838_983_996), 13),
            ("-12,", Some(-12), 3),
            ("999999999999999999", Some(999_999_999_999_999_999), 18),
            ("9999999999999999999", None, 0),
            ("-", None, 0),
            ("x", None, 0),
        ];
        for &(text, value, consumed) in cases {
            let mut cursor = Cursor {
                bytes: text.as_bytes(),
                at: 0,
            };
            let got = cursor.integer();
            assert_eq!(got, value, "{text}");
            if got.is_some() {
                assert_eq!(cursor.at, consumed, "{text}");
            }
        }
    }
}
