//! The byte-level fast path for the frames that make up almost all of the feed.
//!
//! `orderbook_delta`, `trade` and `ticker` frames are over 95% of what a gatherer receives, and
//! Kalshi sends them in one compact shape: no whitespace, no escapes, `type` first, the current
//! fixed-point fields in a stable key order. For such a frame, simd-json's tape costs more than
//! everything else together (`bench/README.md`), so this module reads the frame's bytes directly:
//! it expects each key in Kalshi's usual order (and looks a key up among the known ones when the
//! order differs), and parses decimal strings, identifiers and timestamps straight from the
//! input.
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
pub(crate) fn decode(frame: &[u8]) -> Option<Record> {
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
    let mut header = Header::default();
    let mut record = None;
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
                record = Some(match kind {
                    Kind::Delta => Record::Delta(delta(&mut cursor)?),
                    Kind::Trade => Record::Trade(trade(&mut cursor)?),
                    Kind::Ticker => Record::Ticker(ticker(&mut cursor)?),
                });
            }
        }
    }
    if cursor.at != frame.len() {
        return None;
    }
    let mut record = record?;
    match &mut record {
        Record::Delta(delta) => delta.header = header,
        Record::Trade(trade) => trade.header = header,
        Record::Ticker(ticker) => ticker.header = header,
        _ => return None,
    }
    Some(record)
}

/// The envelope keys after `type`, in Kalshi's order.
const ENVELOPE_KEYS: [&[u8]; 3] = [b"\"sid\":", b"\"seq\":", b"\"msg\":"];

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
    #[inline]
    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.at)?;
        self.at += 1;
        Some(byte)
    }

    /// Consumes `byte` when it is next.
    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        let found = self.bytes.get(self.at) == Some(&byte);
        self.at += usize::from(found);
        found
    }

    /// Consumes `text` when it comes next; otherwise consumes nothing.
    #[inline]
    fn literal(&mut self, text: &[u8]) -> Option<()> {
        let end = self.at + text.len();
        if self.bytes.get(self.at..end)? == text {
            self.at = end;
            Some(())
        } else {
            None
        }
    }

    /// Consumes one ASCII digit and returns its value.
    #[inline]
    fn digit(&mut self) -> Option<i64> {
        let value = self.bytes.get(self.at)?.wrapping_sub(b'0');
        if value < 10 {
            self.at += 1;
            Some(i64::from(value))
        } else {
            None
        }
    }

    /// A key with its quotes and colon: the index of `keys` it is, trying `keys[expected]`
    /// first. `None` for a key not in `keys`.
    #[inline]
    fn key(&mut self, keys: &[&[u8]], expected: usize) -> Option<usize> {
        if let Some(key) = keys.get(expected)
            && self.literal(key).is_some()
        {
            return Some(expected);
        }
        self.key_lookup(keys)
    }

    /// A key out of the usual order, looked up among `keys`.
    #[cold]
    fn key_lookup(&mut self, keys: &[&[u8]]) -> Option<usize> {
        let index = keys.iter().position(|key| {
            self.bytes
                .get(self.at..self.at + key.len())
                .is_some_and(|text| text == *key)
        })?;
        self.at += keys.get(index)?.len();
        Some(index)
    }

    /// A JSON string of printable ASCII without escapes; returns its content.
    #[inline]
    fn string(&mut self) -> Option<&'f [u8]> {
        if !self.eat(b'"') {
            return None;
        }
        let rest = self.bytes.get(self.at..)?;
        for (offset, &byte) in rest.iter().enumerate() {
            if byte == b'"' {
                self.at += offset + 1;
                return rest.get(..offset);
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
    #[inline]
    fn decimal(&mut self, scale: u32) -> Option<i64> {
        if !self.eat(b'"') {
            return None;
        }
        let negative = self.eat(b'-');
        let mut value = self.digit()?;
        let mut digits = 1 + scale;
        while let Some(digit) = self.digit() {
            digits += 1;
            if digits > DIGITS_MAX {
                return None;
            }
            value = value * 10 + digit;
        }
        let mut fraction = 0;
        if self.eat(b'.') {
            let mut any = false;
            while let Some(digit) = self.digit() {
                any = true;
                if fraction < scale {
                    value = value * 10 + digit;
                    fraction += 1;
                } else if digit != 0 {
                    return None;
                }
            }
            if !any {
                return None;
            }
        }
        if !self.eat(b'"') {
            return None;
        }
        value *= fixed::pow10(scale - fraction);
        Some(if negative { -value } else { value })
    }

    /// A price in dollars as micro-dollars; `None` also when negative.
    #[inline]
    fn dollars(&mut self) -> Option<i64> {
        self.decimal(PRICE_SCALE).filter(|v| *v >= 0)
    }

    /// A contract count in hundredths; `None` also when negative.
    #[inline]
    fn size(&mut self) -> Option<i64> {
        self.decimal(COUNT_SCALE).filter(|v| *v >= 0)
    }

    /// A JSON integer (`-?(0|[1-9][0-9]*)`, at most [`DIGITS_MAX`] digits). The caller checks
    /// what follows (`,` or `}`), which also refuses a fraction, an exponent or a leading zero.
    #[inline]
    fn integer(&mut self) -> Option<i64> {
        let negative = self.eat(b'-');
        let mut value = self.digit()?;
        if value != 0 {
            let mut digits = 1;
            while let Some(digit) = self.digit() {
                digits += 1;
                if digits > DIGITS_MAX {
                    return None;
                }
                value = value * 10 + digit;
            }
        }
        Some(if negative { -value } else { value })
    }

    /// A positive JSON integer (an id or sequence number) of at most 19 digits, which always
    /// fits a `u64`.
    #[inline]
    fn positive(&mut self) -> Option<NonZeroU64> {
        let first = self.digit()?;
        let mut value = first.unsigned_abs();
        if first != 0 {
            let mut digits = 1;
            while let Some(digit) = self.digit() {
                digits += 1;
                if digits > 19 {
                    return None;
                }
                value = value * 10 + digit.unsigned_abs();
            }
        }
        NonZeroU64::new(value)
    }

    /// `"yes"` or `"no"`.
    #[inline]
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
    #[inline]
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
    #[inline]
    fn boolean(&mut self) -> Option<bool> {
        if self.literal(b"true").is_some() {
            Some(true)
        } else if self.literal(b"false").is_some() {
            Some(false)
        } else {
            None
        }
    }

    /// A quoted RFC 3339 timestamp in µs.
    #[inline]
    fn rfc3339(&mut self) -> Option<i64> {
        fixed::parse_rfc3339_us(self.string()?).ok()
    }

    /// An inline identifier: a string within the capacity.
    #[inline]
    fn inline<const N: usize>(&mut self) -> Option<InlineStr<N>> {
        InlineStr::from_ascii(self.string()?)
    }

    /// After a value: `true` when another field follows (`,`), `false` at the end of the
    /// object (`}`); `None` for anything else.
    #[inline]
    fn more(&mut self) -> Option<bool> {
        match self.next()? {
            b',' => Some(true),
            b'}' => Some(false),
            _ => None,
        }
    }
}

/// The exchange time, as `decode::resolve_time` picks it when every present candidate is valid:
/// the precise form when it agrees with the coarser one, else `ts_ms`, else `ts` seconds.
/// `None` when that would overflow (the slow path reports it).
#[inline]
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
#[inline]
fn first_time(seen: &mut u32, index: usize) -> Option<()> {
    let bit = 1u32.checked_shl(index as u32)?;
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// The keys of a current-format delta `msg`, in Kalshi's order.
const DELTA_KEYS: [&[u8]; 7] = [
    b"\"market_ticker\":",
    b"\"market_id\":",
    b"\"price_dollars\":",
    b"\"delta_fp\":",
    b"\"side\":",
    b"\"ts\":",
    b"\"ts_ms\":",
];

/// The `msg` object of an `orderbook_delta`, after its `{`.
fn delta(cursor: &mut Cursor<'_>) -> Option<Delta> {
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
const TRADE_KEYS: [&[u8]; 11] = [
    b"\"trade_id\":",
    b"\"market_ticker\":",
    b"\"yes_price_dollars\":",
    b"\"no_price_dollars\":",
    b"\"count_fp\":",
    b"\"taker_side\":",
    b"\"taker_outcome_side\":",
    b"\"taker_book_side\":",
    b"\"is_block_trade\":",
    b"\"ts\":",
    b"\"ts_ms\":",
];

/// The `msg` object of a `trade`, after its `{`.
fn trade(cursor: &mut Cursor<'_>) -> Option<Trade> {
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
const TICKER_KEYS: [&[u8]; 15] = [
    b"\"market_id\":",
    b"\"market_ticker\":",
    b"\"price_dollars\":",
    b"\"yes_bid_dollars\":",
    b"\"yes_ask_dollars\":",
    b"\"volume_fp\":",
    b"\"open_interest_fp\":",
    b"\"dollar_volume\":",
    b"\"dollar_open_interest\":",
    b"\"yes_bid_size_fp\":",
    b"\"yes_ask_size_fp\":",
    b"\"last_trade_size_fp\":",
    b"\"ts\":",
    b"\"ts_ms\":",
    b"\"time\":",
];

/// The `msg` object of a `ticker`, after its `{`.
fn ticker(cursor: &mut Cursor<'_>) -> Option<TickerUpdate> {
    let (mut ticker, mut market_id) = (None, None);
    let mut out = TickerUpdate {
        header: Header::default(),
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
#[inline]
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

    // Integers: JSON grammar, at most 18 digits, and the caller sees what follows.
    #[test]
    fn integers() {
        let cases: &[(&str, Option<i64>, usize)] = &[
            ("0", Some(0), 1),
            ("-0", Some(0), 2),
            ("05", Some(0), 1),
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
