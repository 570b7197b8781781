//! The frame decoder: frame bytes in, [`Record`] out.
//!
//! Two paths give the same result:
//! * the fast path (`fast.rs`) reads `orderbook_delta`, `trade` and `ticker` frames in Kalshi's
//!   plain current shape straight from their bytes, and declines anything else;
//! * the general path parses the frame in place with simd-json into a reusable tape (no DOM is
//!   built) and walks the tape once, reading only the fields it knows and skipping the rest.
//!
//! [`Decoder::decode`] tries the fast path first and falls back to the general one;
//! [`Decoder::decode_tape_only`] always takes the general path (the reference the fast path is
//! tested against). The decoder keeps its parser buffers, tape and [`Aux`] between calls, so
//! after the first few frames of each size a steady stream allocates nothing.
//!
//! It understands the three formats Kalshi has used (see `protocol.md` §3 and §5.16):
//! * current (since 2026-03-12): `*_dollars` price strings and `*_fp` count strings;
//! * transitional (2025-09 to 2026-03): cents integers next to `_dollars` and `_fp` fields;
//! * legacy (before 2025-09): integer cents and integer counts only.
//!
//! When several forms of one value are present, the most precise wins (`_dollars_fp`, then
//! `_dollars`, then cents). A JSON number is accepted wherever a string is documented, and a
//! numeric string wherever a number is. Unknown fields are skipped; an unknown `type` is a
//! [`Record::Unknown`], not an error.

use core::num::NonZeroU64;

use simd_json::{Node, StaticNode, Tape};

use crate::error::{DecodeError, json_error};
use crate::fixed::{
    self, COUNT_SCALE, FixedError, MICROS_PER_MILLI, MICROS_PER_SECOND, PRICE_SCALE,
};
use crate::inline::InlineStr;
use crate::record::{
    Aux, BookSide, Control, ControlKind, Decoded, Delta, EventKind, EventLifecycle, Header, Level,
    MarketLifecycle, MarketMetadata, PriceRange, Record, Scalar, Side, Snapshot, Text, TextList,
    TickerUpdate, Trade, Unknown,
};

/// Decoder limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderConfig {
    /// Largest frame accepted, in bytes. Default 4 MiB: a `list_subscriptions` reply or an `ok`
    /// ack for a 10k-market subscription is about 0.5 MB, and the largest real books are a few
    /// tens of KB.
    pub frame_bytes_max: usize,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            frame_bytes_max: 4 << 20,
        }
    }
}

/// Counters kept by a decoder. Exported to metrics by the owner, off the hot path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DecoderStats {
    /// Frames given to [`Decoder::decode`].
    pub frames: u64,
    /// Frames that failed to decode.
    pub errors: u64,
    /// Frames with an unknown `type`.
    pub unknown: u64,
    /// Frames decoded by the byte-level fast path (the rest went through simd-json). A drop in
    /// this share means Kalshi changed the shape of its hot frames.
    pub fast_path: u64,
}

/// A reusable, allocation-free (in steady state) Kalshi frame decoder. One per shard core.
pub struct Decoder {
    config: DecoderConfig,
    buffers: simd_json::Buffers,
    tape: Tape<'static>,
    aux: Aux,
    trades: Vec<Trade>,
    stats: DecoderStats,
}

/// One page of `GET /markets/trades`, decoded by [`Decoder::decode_rest_trades`].
#[derive(Debug)]
pub struct TradesPage<'d> {
    /// The trades, in the order the exchange listed them (newest first). They carry no
    /// sid/seq; `exchange_ts` is `created_time`.
    pub trades: &'d [Trade],
    /// The cursor of the next page; `None` when this is the last page (`""` or absent).
    pub cursor: Option<&'d str>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecoderConfig::default())
    }
}

impl core::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Creates a decoder with buffers sized for typical frames; they grow on demand.
    #[must_use]
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            buffers: simd_json::Buffers::new(4096),
            tape: Tape(Vec::with_capacity(256)),
            aux: Aux::default(),
            trades: Vec::new(),
            stats: DecoderStats::default(),
        }
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Decodes one frame. The frame's bytes are used as scratch space (strings are unescaped in
    /// place), so its content is unspecified afterwards.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the problem; the decoder stays usable for the next frame.
    pub fn decode(&mut self, frame: &mut [u8]) -> Result<Decoded<'_>, DecodeError> {
        self.decode_with(frame, None)
    }

    /// Decodes one frame into `record`, a slot the caller keeps between frames (or one in the
    /// queue the record goes to), and returns the record's variable-size parts. This is
    /// [`Decoder::decode`] without moving the record out: on the fast path, when `record`
    /// already holds a record of the frame's kind, only its fields are written, which saves
    /// copying a whole [`Record`] (376 bytes) per frame. The record is the same as
    /// [`Decoder::decode`]'s.
    ///
    /// # Errors
    /// As [`Decoder::decode`]. After an error the content of `record` is unspecified (it may
    /// be partly overwritten); it is still a valid [`Record`].
    pub fn decode_into(
        &mut self,
        frame: &mut [u8],
        record: &mut Record,
    ) -> Result<&Aux, DecodeError> {
        self.stats.frames += 1;
        if frame.len() <= self.config.frame_bytes_max
            && crate::fast::decode_into(frame, record).is_some()
        {
            self.aux.clear();
            self.stats.fast_path += 1;
            return Ok(&self.aux);
        }
        let decoded = self.with_tape(frame, |walker| walker.frame());
        *record = self.finish(decoded, None)?.record;
        Ok(&self.aux)
    }

    /// Decodes one frame through simd-json only, never the byte-level fast path. The result is
    /// the same as [`Decoder::decode`]'s for every input (that is what the equivalence tests and
    /// the `fast_equiv` fuzz target check); this entry point exists to run those checks and to
    /// measure the difference.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn decode_tape_only(&mut self, frame: &mut [u8]) -> Result<Decoded<'_>, DecodeError> {
        self.stats.frames += 1;
        let record = self.with_tape(frame, |walker| walker.frame());
        self.finish(record, None)
    }

    /// Like [`Decoder::decode`], recording the subscription's `use_yes_price` flag in the result.
    ///
    /// # Errors
    /// As [`Decoder::decode`].
    pub fn decode_with(
        &mut self,
        frame: &mut [u8],
        use_yes_price: Option<bool>,
    ) -> Result<Decoded<'_>, DecodeError> {
        self.stats.frames += 1;
        if frame.len() <= self.config.frame_bytes_max
            && let Some(record) = crate::fast::decode(frame)
        {
            self.aux.clear();
            self.stats.fast_path += 1;
            return Ok(Decoded {
                record,
                aux: &self.aux,
                use_yes_price,
            });
        }
        let record = self.with_tape(frame, |walker| walker.frame());
        self.finish(record, use_yes_price)
    }

    /// Counts the outcome and pairs a record with the buffers.
    #[inline]
    fn finish(
        &mut self,
        record: Result<Record, DecodeError>,
        use_yes_price: Option<bool>,
    ) -> Result<Decoded<'_>, DecodeError> {
        match record {
            Ok(record) => {
                if matches!(record, Record::Unknown(_)) {
                    self.stats.unknown += 1;
                }
                Ok(Decoded {
                    record,
                    aux: &self.aux,
                    use_yes_price,
                })
            }
            Err(error) => {
                self.stats.errors += 1;
                Err(error)
            }
        }
    }

    /// Decodes a REST `GET /markets/{ticker}/orderbook` body (any of its three historical
    /// shapes: `orderbook_fp`, the transitional `orderbook` + `orderbook_fp`, or the old
    /// `orderbook` with cents) into a [`Record::Snapshot`] for `ticker`. NO levels are in NO-leg
    /// price, as REST always quotes them; `use_yes_price` is therefore `Some(false)`.
    ///
    /// # Errors
    /// As [`Decoder::decode`]; a body with no book at all is `MissingField("orderbook_fp")`.
    pub fn decode_rest_orderbook(
        &mut self,
        body: &mut [u8],
        ticker: &str,
    ) -> Result<Decoded<'_>, DecodeError> {
        let ticker = InlineStr::new(ticker).ok_or(DecodeError::TooLong {
            field: "ticker",
            limit: crate::inline::Ticker::CAPACITY,
        })?;
        let record = self.with_tape(body, |walker| walker.rest_orderbook(ticker))?;
        Ok(Decoded {
            record,
            aux: &self.aux,
            use_yes_price: Some(false),
        })
    }

    /// Decodes a REST `GET /markets/trades` (or `/historical/trades`) page.
    ///
    /// # Errors
    /// As [`Decoder::decode`], naming the field of the first bad trade.
    pub fn decode_rest_trades(&mut self, body: &mut [u8]) -> Result<TradesPage<'_>, DecodeError> {
        let mut trades = core::mem::take(&mut self.trades);
        trades.clear();
        let result = self.with_tape(body, |walker| walker.rest_trades(&mut trades));
        self.trades = trades;
        let cursor = result?;
        Ok(TradesPage {
            trades: &self.trades,
            cursor: cursor.map(|c| self.aux.text(c)).filter(|c| !c.is_empty()),
        })
    }

    /// Parses `input` into the reused tape and runs `walk` over it.
    fn with_tape<T>(
        &mut self,
        input: &mut [u8],
        walk: impl FnOnce(&mut Walker<'_, '_, '_>) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if input.len() > self.config.frame_bytes_max {
            return Err(DecodeError::FrameTooLarge {
                len: input.len(),
                limit: self.config.frame_bytes_max,
            });
        }
        self.aux.clear();
        let mut tape: Tape<'_> = core::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let parsed = simd_json::fill_tape(input, &mut self.buffers, &mut tape);
        let outcome = match parsed {
            Ok(()) => Ok(walk(&mut Walker {
                nodes: &tape.0,
                aux: &mut self.aux,
            })),
            Err(error) => Err(error),
        };
        self.tape = tape.reset();
        match outcome {
            Ok(result) => result,
            Err(error) => Err(json_error(&error, input)),
        }
    }
}

/// Number of tape nodes the value at `at` occupies.
fn span(nodes: &[Node<'_>], at: usize) -> usize {
    match nodes.get(at) {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

/// Iterates the `(key, value index)` pairs of an object on the tape.
struct Fields<'t, 'i> {
    nodes: &'t [Node<'i>],
    position: usize,
    remaining: usize,
}

impl<'i> Iterator for Fields<'_, 'i> {
    type Item = (&'i str, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let Some(Node::String(key)) = self.nodes.get(self.position) else {
            self.remaining = 0;
            return None;
        };
        let value = self.position + 1;
        self.position = value + span(self.nodes, value);
        Some((key, value))
    }
}

/// Iterates the value indices of an array on the tape.
struct Elements<'t, 'i> {
    nodes: &'t [Node<'i>],
    position: usize,
    remaining: usize,
}

impl Iterator for Elements<'_, '_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 || self.position >= self.nodes.len() {
            return None;
        }
        self.remaining -= 1;
        let value = self.position;
        self.position = value + span(self.nodes, value);
        Some(value)
    }
}

/// Timestamp candidates of one frame, resolved by [`resolve_time`].
#[derive(Default)]
struct TimeFields {
    /// The most precise form (`ts` string on deltas, `time` on tickers), µs.
    precise: Option<Result<i64, DecodeError>>,
    /// `ts_ms`.
    millis: Option<i64>,
    /// `ts` in whole seconds.
    seconds: Option<i64>,
}

/// Picks the exchange time: the precise form when it agrees with the coarser one, else the
/// millisecond field, else the seconds field. A malformed deprecated field is only an error when
/// nothing better is present.
fn resolve_time(time: TimeFields, field_ms: &'static str) -> Result<Option<i64>, DecodeError> {
    let overflow = |field| DecodeError::Value {
        field,
        reason: FixedError::Overflow,
    };
    let precise = match time.precise {
        Some(Ok(us)) => Some(us),
        Some(Err(error)) if time.millis.is_none() && time.seconds.is_none() => return Err(error),
        _ => None,
    };
    if let Some(ms) = time.millis {
        if let Some(us) = precise.filter(|us| us.div_euclid(MICROS_PER_MILLI) == ms) {
            return Ok(Some(us));
        }
        return ms
            .checked_mul(MICROS_PER_MILLI)
            .map(Some)
            .ok_or(overflow(field_ms));
    }
    if let Some(seconds) = time.seconds {
        if let Some(us) = precise.filter(|us| us.div_euclid(MICROS_PER_SECOND) == seconds) {
            return Ok(Some(us));
        }
        return seconds
            .checked_mul(MICROS_PER_SECOND)
            .map(Some)
            .ok_or(overflow("msg.ts"));
    }
    Ok(precise)
}

fn seconds_to_us(seconds: Option<i64>, field: &'static str) -> Result<Option<i64>, DecodeError> {
    seconds
        .map(|s| {
            s.checked_mul(MICROS_PER_SECOND).ok_or(DecodeError::Value {
                field,
                reason: FixedError::Overflow,
            })
        })
        .transpose()
}

fn inline<const N: usize>(
    text: Option<&str>,
    field: &'static str,
) -> Result<InlineStr<N>, DecodeError> {
    let text = text.ok_or(DecodeError::MissingField { field })?;
    InlineStr::new(text).ok_or(DecodeError::TooLong { field, limit: N })
}

fn inline_or_empty<const N: usize>(
    text: Option<&str>,
    field: &'static str,
) -> Result<InlineStr<N>, DecodeError> {
    match text {
        None => Ok(InlineStr::empty()),
        Some(text) => InlineStr::new(text).ok_or(DecodeError::TooLong { field, limit: N }),
    }
}

fn non_negative(value: Option<i64>, field: &'static str) -> Result<Option<i64>, DecodeError> {
    match value {
        Some(v) if v < 0 => Err(DecodeError::Negative { field }),
        other => Ok(other),
    }
}

/// A price derived as one dollar minus the other leg; a leg above one dollar makes it invalid.
fn derived_price(value: i64, field: &'static str) -> Result<i64, DecodeError> {
    if value < 0 {
        return Err(DecodeError::Invalid { field });
    }
    Ok(value)
}

/// First present value of a list of alternatives, most precise first.
fn first(candidates: &[Option<i64>]) -> Option<i64> {
    candidates.iter().find_map(|c| *c)
}

struct Walker<'t, 'i, 'a> {
    nodes: &'t [Node<'i>],
    aux: &'a mut Aux,
}

impl<'t, 'i> Walker<'t, 'i, '_> {
    fn fields(&self, at: usize, field: &'static str) -> Result<Fields<'t, 'i>, DecodeError> {
        match self.nodes.get(at) {
            Some(Node::Object { len, .. }) => Ok(Fields {
                nodes: self.nodes,
                position: at + 1,
                remaining: *len,
            }),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "an object",
            }),
        }
    }

    fn elements(&self, at: usize, field: &'static str) -> Result<Elements<'t, 'i>, DecodeError> {
        match self.nodes.get(at) {
            Some(Node::Array { len, .. }) => Ok(Elements {
                nodes: self.nodes,
                position: at + 1,
                remaining: *len,
            }),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "an array",
            }),
        }
    }

    fn is_null(&self, at: usize) -> bool {
        matches!(self.nodes.get(at), Some(Node::Static(StaticNode::Null)))
    }

    fn string(&self, at: usize, field: &'static str) -> Result<Option<&'i str>, DecodeError> {
        match self.nodes.get(at) {
            Some(Node::String(text)) => Ok(Some(text)),
            Some(Node::Static(StaticNode::Null)) => Ok(None),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "a string",
            }),
        }
    }

    fn integer(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        match self.nodes.get(at) {
            Some(Node::Static(StaticNode::I64(v))) => Ok(Some(*v)),
            Some(Node::Static(StaticNode::U64(v))) => {
                i64::try_from(*v).map(Some).map_err(|_| DecodeError::Value {
                    field,
                    reason: FixedError::Overflow,
                })
            }
            Some(Node::String(text)) => fixed::parse_decimal(text.as_bytes(), 0)
                .map(Some)
                .map_err(|reason| DecodeError::Value { field, reason }),
            Some(Node::Static(StaticNode::Null)) => Ok(None),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "an integer",
            }),
        }
    }

    /// A positive id or sequence number; 0 and negatives are invalid.
    fn positive(&self, at: usize, field: &'static str) -> Result<Option<NonZeroU64>, DecodeError> {
        let value = match self.nodes.get(at) {
            Some(Node::Static(StaticNode::U64(v))) => *v,
            Some(Node::Static(StaticNode::I64(_))) => return Err(DecodeError::Invalid { field }),
            _ => match self.integer(at, field)? {
                Some(v) => u64::try_from(v).map_err(|_| DecodeError::Invalid { field })?,
                None => return Ok(None),
            },
        };
        NonZeroU64::new(value)
            .map(Some)
            .ok_or(DecodeError::Invalid { field })
    }

    fn boolean(&self, at: usize, field: &'static str) -> Result<Option<bool>, DecodeError> {
        match self.nodes.get(at) {
            Some(Node::Static(StaticNode::Bool(b))) => Ok(Some(*b)),
            Some(Node::String("true")) => Ok(Some(true)),
            Some(Node::String("false")) => Ok(Some(false)),
            Some(Node::Static(StaticNode::Null)) => Ok(None),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "a boolean",
            }),
        }
    }

    /// A decimal in units of `10^-scale`: a decimal string, a JSON float (exact through its
    /// shortest text), or a JSON integer of whole units.
    fn decimal(
        &self,
        at: usize,
        field: &'static str,
        scale: u32,
    ) -> Result<Option<i64>, DecodeError> {
        let converted = match self.nodes.get(at) {
            Some(Node::String(text)) => fixed::parse_decimal(text.as_bytes(), scale),
            Some(Node::Static(StaticNode::F64(v))) => fixed::float_to_fixed(*v, scale),
            Some(Node::Static(StaticNode::I64(v))) => fixed::whole_to_fixed(*v, scale),
            Some(Node::Static(StaticNode::U64(v))) => i64::try_from(*v)
                .map_err(|_| FixedError::Overflow)
                .and_then(|v| fixed::whole_to_fixed(v, scale)),
            Some(Node::Static(StaticNode::Null)) => return Ok(None),
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "a decimal string or number",
                });
            }
        };
        converted
            .map(Some)
            .map_err(|reason| DecodeError::Value { field, reason })
    }

    /// A price in dollars, as micro-dollars; never negative.
    fn dollars(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        non_negative(self.decimal(at, field, PRICE_SCALE)?, field)
    }

    /// A legacy price in cents (possibly fractional), as micro-dollars; never negative.
    fn cents(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        non_negative(self.decimal(at, field, PRICE_SCALE - 2)?, field)
    }

    /// A contract count (`_fp` string or legacy integer), in hundredths.
    fn count(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        self.decimal(at, field, COUNT_SCALE)
    }

    fn side(&self, at: usize, field: &'static str) -> Result<Option<Side>, DecodeError> {
        match self.string(at, field)? {
            Some("yes") => Ok(Some(Side::Yes)),
            Some("no") => Ok(Some(Side::No)),
            None => Ok(None),
            Some(_) => Err(DecodeError::Invalid { field }),
        }
    }

    fn book_side(&self, at: usize, field: &'static str) -> Result<Option<BookSide>, DecodeError> {
        match self.string(at, field)? {
            Some("bid") => Ok(Some(BookSide::Bid)),
            Some("ask") => Ok(Some(BookSide::Ask)),
            None => Ok(None),
            Some(_) => Err(DecodeError::Invalid { field }),
        }
    }

    /// An RFC 3339 string in µs; a JSON number is taken as Unix seconds.
    fn rfc3339(&self, at: usize, field: &'static str) -> Option<Result<i64, DecodeError>> {
        match self.nodes.get(at) {
            Some(Node::String(text)) => Some(
                fixed::parse_rfc3339_us(text.as_bytes())
                    .map_err(|reason| DecodeError::Value { field, reason }),
            ),
            Some(Node::Static(StaticNode::Null)) => None,
            _ => Some(
                self.integer(at, field)
                    .and_then(|s| seconds_to_us(s, field))
                    .and_then(|us| us.ok_or(DecodeError::MissingField { field })),
            ),
        }
    }

    fn text(&mut self, at: usize, field: &'static str) -> Result<Option<Text>, DecodeError> {
        Ok(self.string(at, field)?.map(|s| self.aux.push_text(s)))
    }

    /// Any scalar as its exact text (numbers through their shortest round-trip form), with
    /// whether it was a number.
    fn scalar_text(
        &mut self,
        at: usize,
        field: &'static str,
    ) -> Result<Option<Scalar>, DecodeError> {
        use core::fmt::Write as _;
        let start = self.aux.arena.len();
        let (written, is_number) = match self.nodes.get(at) {
            Some(Node::String(text)) => {
                self.aux.arena.push_str(text);
                (Ok(()), false)
            }
            // Negative zero prints as "-0", which reads back as the integer 0; write 0.
            Some(Node::Static(StaticNode::F64(v))) if *v == 0.0 => {
                self.aux.arena.push('0');
                (Ok(()), true)
            }
            Some(Node::Static(StaticNode::F64(v))) if v.is_finite() => {
                (write!(self.aux.arena, "{v}"), true)
            }
            Some(Node::Static(StaticNode::I64(v))) => (write!(self.aux.arena, "{v}"), true),
            Some(Node::Static(StaticNode::U64(v))) => (write!(self.aux.arena, "{v}"), true),
            Some(Node::Static(StaticNode::Null)) => return Ok(None),
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "a string or number",
                });
            }
        };
        written.map_err(|_| DecodeError::Invalid { field })?;
        Ok(Some(Scalar {
            text: Text {
                start: start as u32,
                len: (self.aux.arena.len() - start) as u32,
            },
            is_number,
        }))
    }

    /// Any JSON value, re-serialized compactly.
    fn json_text(&mut self, at: usize) -> Option<Text> {
        if self.is_null(at) {
            return None;
        }
        let start = self.aux.arena.len();
        crate::json::write_tape_value(self.nodes, at, &mut self.aux.arena);
        Some(Text {
            start: start as u32,
            len: (self.aux.arena.len() - start) as u32,
        })
    }

    fn text_list(&mut self, at: usize, field: &'static str) -> Result<TextList, DecodeError> {
        if self.is_null(at) {
            return Ok(TextList::default());
        }
        let start = self.aux.texts.len() as u32;
        for element in self.elements(at, field)? {
            let text = self.string(element, field)?.ok_or(DecodeError::WrongType {
                field,
                expected: "an array of strings",
            })?;
            let reference = self.aux.push_text(text);
            self.aux.texts.push(reference);
        }
        Ok(TextList {
            start,
            len: self.aux.texts.len() as u32 - start,
        })
    }

    /// Parses the whole frame.
    fn frame(&mut self) -> Result<Record, DecodeError> {
        let Some(Node::Object { len, .. }) = self.nodes.first() else {
            return Err(DecodeError::NotObject);
        };
        let fields = Fields {
            nodes: self.nodes,
            position: 1,
            remaining: *len,
        };
        let mut header = Header::default();
        let mut wire_type = None;
        let mut msg = None;
        let (mut command, mut params) = (None, None);
        for (key, at) in fields {
            match key {
                "type" => wire_type = self.string(at, "type")?,
                "cmd" => command = self.string(at, "cmd")?,
                "params" => params = Some(at),
                "sid" => header.sid = self.positive(at, "sid")?,
                "seq" => header.seq = self.positive(at, "seq")?,
                "id" => {
                    // `id: 0` means "no id" (protocol.md §5.4).
                    header.id = match self.integer(at, "id")? {
                        None => None,
                        Some(v) => NonZeroU64::new(
                            u64::try_from(v).map_err(|_| DecodeError::Invalid { field: "id" })?,
                        ),
                    }
                }
                "msg" => msg = Some(at).filter(|at| !self.is_null(*at)),
                _ => {}
            }
        }
        let wire_type = match (wire_type, command) {
            (Some(wire_type), _) => wire_type,
            // A client command (a recorded session holds both directions).
            (None, Some(command)) => return Ok(self.command(header, command, params)),
            (None, None) => return Err(DecodeError::MissingField { field: "type" }),
        };
        let need_msg = || msg.ok_or(DecodeError::MissingField { field: "msg" });
        Ok(match wire_type {
            "orderbook_delta" => Record::Delta(self.delta(header, need_msg()?)?),
            "trade" => Record::Trade(self.trade(header, need_msg()?)?),
            "ticker" => Record::Ticker(self.ticker(header, need_msg()?)?),
            "orderbook_snapshot" => Record::Snapshot(self.snapshot(header, need_msg()?)?),
            "market_lifecycle_v2" => {
                Record::MarketLifecycle(self.market_lifecycle(header, need_msg()?, false)?)
            }
            "multivariate_market_lifecycle" => {
                Record::MarketLifecycle(self.market_lifecycle(header, need_msg()?, true)?)
            }
            "event_lifecycle" => {
                Record::EventLifecycle(self.event(header, need_msg()?, EventKind::Created)?)
            }
            "event_fee_update" => {
                Record::EventLifecycle(self.event(header, need_msg()?, EventKind::FeeUpdate)?)
            }
            "subscribed" => Record::Control(self.control(header, msg, ControlKind::Subscribed)?),
            "ok" => Record::Control(self.control(header, msg, ControlKind::Ok)?),
            "unsubscribed" => {
                Record::Control(self.control(header, msg, ControlKind::Unsubscribed)?)
            }
            "error" => Record::Control(self.control(header, msg, ControlKind::Error)?),
            other => Record::Unknown(Unknown {
                header,
                wire_type: self.aux.push_text(other),
            }),
        })
    }

    fn delta(&mut self, header: Header, msg: usize) -> Result<Delta, DecodeError> {
        let (mut ticker, mut market_id, mut side) = (None, None, None);
        let (mut price_dollars, mut price_cents) = (None, None);
        let (mut delta_fp, mut delta_whole) = (None, None);
        let mut time = TimeFields::default();
        for (key, at) in self.fields(msg, "msg")? {
            match key {
                "market_ticker" => ticker = self.string(at, "msg.market_ticker")?,
                "market_id" => market_id = self.string(at, "msg.market_id")?,
                "price_dollars" => price_dollars = self.dollars(at, "msg.price_dollars")?,
                "price" => price_cents = self.cents(at, "msg.price")?,
                "delta_fp" => delta_fp = self.count(at, "msg.delta_fp")?,
                "delta" => delta_whole = self.count(at, "msg.delta")?,
                "side" => side = self.side(at, "msg.side")?,
                "ts" => time.precise = self.rfc3339(at, "msg.ts"),
                "ts_ms" => time.millis = self.integer(at, "msg.ts_ms")?,
                _ => {}
            }
        }
        Ok(Delta {
            header,
            exchange_ts: resolve_time(time, "msg.ts_ms")?,
            price_e6: first(&[price_dollars, price_cents]).ok_or(DecodeError::MissingField {
                field: "msg.price_dollars",
            })?,
            delta_e2: first(&[delta_fp, delta_whole]).ok_or(DecodeError::MissingField {
                field: "msg.delta_fp",
            })?,
            side: side.ok_or(DecodeError::MissingField { field: "msg.side" })?,
            ticker: inline(ticker, "msg.market_ticker")?,
            market_id: inline_or_empty(market_id, "msg.market_id")?,
        })
    }

    fn trade(&mut self, header: Header, msg: usize) -> Result<Trade, DecodeError> {
        let (mut ticker, mut trade_id) = (None, None);
        let (mut yes_dollars, mut yes_cents, mut no_dollars, mut no_cents) =
            (None, None, None, None);
        let (mut count_fp, mut count_whole) = (None, None);
        let (mut taker_side, mut taker_outcome_side, mut taker_book_side) = (None, None, None);
        let mut is_block_trade = None;
        let mut time = TimeFields::default();
        for (key, at) in self.fields(msg, "msg")? {
            match key {
                "market_ticker" | "ticker" => ticker = self.string(at, "msg.market_ticker")?,
                "trade_id" => trade_id = self.string(at, "msg.trade_id")?,
                "yes_price_dollars" => yes_dollars = self.dollars(at, "msg.yes_price_dollars")?,
                "yes_price" => yes_cents = self.cents(at, "msg.yes_price")?,
                "no_price_dollars" => no_dollars = self.dollars(at, "msg.no_price_dollars")?,
                "no_price" => no_cents = self.cents(at, "msg.no_price")?,
                "count_fp" => count_fp = self.count(at, "msg.count_fp")?,
                "count" => count_whole = self.count(at, "msg.count")?,
                "taker_side" => taker_side = self.side(at, "msg.taker_side")?,
                "taker_outcome_side" => {
                    taker_outcome_side = self.side(at, "msg.taker_outcome_side")?;
                }
                "taker_book_side" => {
                    taker_book_side = self.book_side(at, "msg.taker_book_side")?;
                }
                "is_block_trade" => is_block_trade = self.boolean(at, "msg.is_block_trade")?,
                "ts_ms" => time.millis = self.integer(at, "msg.ts_ms")?,
                "ts" => time.seconds = self.integer(at, "msg.ts")?,
                _ => {}
            }
        }
        let yes = first(&[yes_dollars, yes_cents]);
        let no = first(&[no_dollars, no_cents]);
        let one_dollar = fixed::pow10(PRICE_SCALE);
        let (yes_price_e6, no_price_e6) = match (yes, no) {
            (Some(yes), Some(no)) => (yes, no),
            (Some(yes), None) => (
                yes,
                derived_price(one_dollar - yes, "msg.no_price_dollars")?,
            ),
            (None, Some(no)) => (derived_price(one_dollar - no, "msg.yes_price_dollars")?, no),
            (None, None) => {
                return Err(DecodeError::MissingField {
                    field: "msg.yes_price_dollars",
                });
            }
        };
        let count_e2 = first(&[count_fp, count_whole]).ok_or(DecodeError::MissingField {
            field: "msg.count_fp",
        })?;
        Ok(Trade {
            header,
            exchange_ts: resolve_time(time, "msg.ts_ms")?,
            yes_price_e6,
            no_price_e6,
            count_e2: non_negative(Some(count_e2), "msg.count_fp")?.unwrap_or(0),
            ticker: inline(ticker, "msg.market_ticker")?,
            trade_id: inline(trade_id, "msg.trade_id")?,
            taker_side,
            taker_outcome_side,
            taker_book_side,
            is_block_trade,
        })
    }

    fn ticker(&mut self, header: Header, msg: usize) -> Result<TickerUpdate, DecodeError> {
        let (mut ticker, mut market_id) = (None, None);
        let mut out = TickerUpdate {
            header,
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
        let (mut price_cents, mut bid_cents, mut ask_cents) = (None, None, None);
        let (mut volume_whole, mut open_interest_whole) = (None, None);
        let mut time = TimeFields::default();
        for (key, at) in self.fields(msg, "msg")? {
            match key {
                "market_ticker" => ticker = self.string(at, "msg.market_ticker")?,
                "market_id" => market_id = self.string(at, "msg.market_id")?,
                // 2025 frames sent "" for a market that never traded.
                "price_dollars" if matches!(self.nodes.get(at), Some(Node::String(""))) => {}
                "price_dollars" => out.price_e6 = self.dollars(at, "msg.price_dollars")?,
                "price" => price_cents = self.cents(at, "msg.price")?,
                "yes_bid_dollars" => out.yes_bid_e6 = self.dollars(at, "msg.yes_bid_dollars")?,
                "yes_bid" => bid_cents = self.cents(at, "msg.yes_bid")?,
                "yes_ask_dollars" => out.yes_ask_e6 = self.dollars(at, "msg.yes_ask_dollars")?,
                "yes_ask" => ask_cents = self.cents(at, "msg.yes_ask")?,
                "yes_bid_size_fp" => {
                    out.yes_bid_size_e2 = self.size(at, "msg.yes_bid_size_fp")?;
                }
                "yes_ask_size_fp" => {
                    out.yes_ask_size_e2 = self.size(at, "msg.yes_ask_size_fp")?;
                }
                "last_trade_size_fp" => {
                    out.last_trade_size_e2 = self.size(at, "msg.last_trade_size_fp")?;
                }
                "volume_fp" => out.volume_e2 = self.size(at, "msg.volume_fp")?,
                "volume" => volume_whole = self.size(at, "msg.volume")?,
                "open_interest_fp" => {
                    out.open_interest_e2 = self.size(at, "msg.open_interest_fp")?;
                }
                "open_interest" => open_interest_whole = self.size(at, "msg.open_interest")?,
                "dollar_volume" => {
                    out.dollar_volume_e6 = self.decimal(at, "msg.dollar_volume", PRICE_SCALE)?;
                }
                "dollar_open_interest" => {
                    out.dollar_open_interest_e6 =
                        self.decimal(at, "msg.dollar_open_interest", PRICE_SCALE)?;
                }
                "ts_ms" => time.millis = self.integer(at, "msg.ts_ms")?,
                "ts" => time.seconds = self.integer(at, "msg.ts")?,
                "time" => time.precise = self.rfc3339(at, "msg.time"),
                _ => {}
            }
        }
        out.price_e6 = out.price_e6.or(price_cents);
        out.yes_bid_e6 = out.yes_bid_e6.or(bid_cents);
        out.yes_ask_e6 = out.yes_ask_e6.or(ask_cents);
        out.volume_e2 = out.volume_e2.or(volume_whole);
        out.open_interest_e2 = out.open_interest_e2.or(open_interest_whole);
        out.exchange_ts = resolve_time(time, "msg.ts_ms")?;
        out.ticker = inline(ticker, "msg.market_ticker")?;
        out.market_id = inline_or_empty(market_id, "msg.market_id")?;
        Ok(out)
    }

    fn size(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        non_negative(self.count(at, field)?, field)
    }

    fn snapshot(&mut self, header: Header, msg: usize) -> Result<Snapshot, DecodeError> {
        let (mut ticker, mut market_id) = (None, None);
        // Per side: (_dollars_fp, _dollars, cents) value indices.
        let mut yes: [Option<usize>; 3] = [None; 3];
        let mut no: [Option<usize>; 3] = [None; 3];
        for (key, at) in self.fields(msg, "msg")? {
            let present = Some(at).filter(|at| !self.is_null(*at));
            match key {
                "market_ticker" => ticker = self.string(at, "msg.market_ticker")?,
                "market_id" => market_id = self.string(at, "msg.market_id")?,
                "yes_dollars_fp" => yes[0] = present,
                "yes_dollars" => yes[1] = present,
                "yes" => yes[2] = present,
                "no_dollars_fp" => no[0] = present,
                "no_dollars" => no[1] = present,
                "no" => no[2] = present,
                _ => {}
            }
        }
        let ticker = inline(ticker, "msg.market_ticker")?;
        let market_id = inline_or_empty(market_id, "msg.market_id")?;
        let yes_levels =
            self.side_levels(yes, ["msg.yes_dollars_fp", "msg.yes_dollars", "msg.yes"])?;
        let no_levels = self.side_levels(no, ["msg.no_dollars_fp", "msg.no_dollars", "msg.no"])?;
        Ok(Snapshot {
            header,
            ticker,
            market_id,
            yes_levels,
            no_levels,
        })
    }

    /// Appends one side's levels (from its most precise representation) to `aux.levels`, sorted
    /// by ascending price, and returns how many there were.
    fn side_levels(
        &mut self,
        forms: [Option<usize>; 3],
        fields: [&'static str; 3],
    ) -> Result<u32, DecodeError> {
        let Some((form, at)) = forms
            .iter()
            .enumerate()
            .find_map(|(i, at)| Some((i, (*at)?)))
        else {
            return Ok(0);
        };
        let field = fields[form];
        let start = self.aux.levels.len();
        for level in self.elements(at, field)? {
            let mut pair = self.elements(level, field)?;
            let (Some(price_at), Some(count_at), None) = (pair.next(), pair.next(), pair.next())
            else {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "[price, count] pairs",
                });
            };
            let price = if form == 2 {
                self.cents(price_at, field)?
            } else {
                self.dollars(price_at, field)?
            };
            let count = self.size(count_at, field)?;
            let (Some(price_e6), Some(count_e2)) = (price, count) else {
                return Err(DecodeError::MissingField { field });
            };
            self.aux.levels.push(Level { price_e6, count_e2 });
        }
        let levels = &mut self.aux.levels[start..];
        if !levels.is_sorted_by_key(|l| l.price_e6) {
            levels.sort_unstable_by_key(|l| l.price_e6);
        }
        Ok((self.aux.levels.len() - start) as u32)
    }

    fn market_lifecycle(
        &mut self,
        header: Header,
        msg: usize,
        mve: bool,
    ) -> Result<MarketLifecycle, DecodeError> {
        let (mut ticker, mut event_type) = (None, None);
        let mut out = MarketLifecycle {
            header,
            mve,
            event_type: Text { start: 0, len: 0 },
            ticker: InlineStr::empty(),
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
        for (key, at) in self.fields(msg, "msg")? {
            match key {
                "market_ticker" => ticker = self.string(at, "msg.market_ticker")?,
                "event_type" => event_type = self.text(at, "msg.event_type")?,
                "exchange_index" => out.exchange_index = self.integer(at, "msg.exchange_index")?,
                "open_ts" => out.open_ts = self.epoch_seconds(at, "msg.open_ts")?,
                "close_ts" => out.close_ts = self.epoch_seconds(at, "msg.close_ts")?,
                "determination_ts" => {
                    out.determination_ts = self.epoch_seconds(at, "msg.determination_ts")?;
                }
                "settled_ts" => out.settled_ts = self.epoch_seconds(at, "msg.settled_ts")?,
                "result" => out.result = self.text(at, "msg.result")?,
                "settlement_value" => {
                    out.settlement_value_e6 =
                        self.decimal(at, "msg.settlement_value", PRICE_SCALE)?;
                }
                "is_deactivated" => out.is_deactivated = self.boolean(at, "msg.is_deactivated")?,
                "price_level_structure" => {
                    out.price_level_structure = self.text(at, "msg.price_level_structure")?;
                }
                "price_ranges" => out.price_ranges = self.price_ranges(at)?,
                "additional_metadata" if !self.is_null(at) => {
                    for (key, at) in self.fields(at, "msg.additional_metadata")? {
                        self.metadata_field(&mut out.metadata, key, at)?;
                    }
                }
                _ => self.metadata_field(&mut out.metadata, key, at)?,
            }
        }
        out.ticker = inline(ticker, "msg.market_ticker")?;
        out.event_type = event_type.ok_or(DecodeError::MissingField {
            field: "msg.event_type",
        })?;
        Ok(out)
    }

    fn epoch_seconds(&self, at: usize, field: &'static str) -> Result<Option<i64>, DecodeError> {
        seconds_to_us(self.integer(at, field)?, field)
    }

    fn metadata_field(
        &mut self,
        metadata: &mut MarketMetadata,
        key: &str,
        at: usize,
    ) -> Result<(), DecodeError> {
        match key {
            "name" => metadata.name = self.text(at, "msg.name")?,
            "title" => metadata.title = self.text(at, "msg.title")?,
            "yes_sub_title" => metadata.yes_sub_title = self.text(at, "msg.yes_sub_title")?,
            "no_sub_title" => metadata.no_sub_title = self.text(at, "msg.no_sub_title")?,
            "rules_primary" => metadata.rules_primary = self.text(at, "msg.rules_primary")?,
            "rules_secondary" => metadata.rules_secondary = self.text(at, "msg.rules_secondary")?,
            "can_close_early" => {
                metadata.can_close_early = self.boolean(at, "msg.can_close_early")?;
            }
            "event_ticker" => metadata.event_ticker = self.text(at, "msg.event_ticker")?,
            "expected_expiration_ts" => {
                metadata.expected_expiration_ts =
                    self.epoch_seconds(at, "msg.expected_expiration_ts")?;
            }
            "strike_type" => metadata.strike_type = self.text(at, "msg.strike_type")?,
            "floor_strike" => metadata.floor_strike = self.scalar_text(at, "msg.floor_strike")?,
            "cap_strike" => metadata.cap_strike = self.scalar_text(at, "msg.cap_strike")?,
            "custom_strike" => metadata.custom_strike = self.json_text(at),
            _ => {}
        }
        Ok(())
    }

    fn price_ranges(&mut self, at: usize) -> Result<u32, DecodeError> {
        const FIELD: &str = "msg.price_ranges";
        if self.is_null(at) {
            return Ok(0);
        }
        let start = self.aux.ranges.len();
        for band in self.elements(at, FIELD)? {
            let mut range = PriceRange {
                start_e6: 0,
                end_e6: 0,
                step_e6: 0,
            };
            for (key, at) in self.fields(band, FIELD)? {
                let value = self.dollars(at, FIELD)?.unwrap_or(0);
                match key {
                    "start" => range.start_e6 = value,
                    "end" => range.end_e6 = value,
                    "step" => range.step_e6 = value,
                    _ => {}
                }
            }
            self.aux.ranges.push(range);
        }
        Ok((self.aux.ranges.len() - start) as u32)
    }

    fn event(
        &mut self,
        header: Header,
        msg: usize,
        kind: EventKind,
    ) -> Result<EventLifecycle, DecodeError> {
        let mut event_ticker = None;
        let mut out = EventLifecycle {
            header,
            kind,
            event_ticker: Text { start: 0, len: 0 },
            series_ticker: None,
            title: None,
            subtitle: None,
            collateral_return_type: None,
            exchange_index: None,
            strike_date: None,
            strike_period: None,
            fee_type_override: None,
            fee_multiplier_override: None,
        };
        for (key, at) in self.fields(msg, "msg")? {
            match key {
                "event_ticker" => event_ticker = self.text(at, "msg.event_ticker")?,
                "series_ticker" => out.series_ticker = self.text(at, "msg.series_ticker")?,
                "title" => out.title = self.text(at, "msg.title")?,
                "subtitle" => out.subtitle = self.text(at, "msg.subtitle")?,
                "collateral_return_type" => {
                    out.collateral_return_type = self.text(at, "msg.collateral_return_type")?;
                }
                "exchange_index" => out.exchange_index = self.integer(at, "msg.exchange_index")?,
                "strike_date" => out.strike_date = self.epoch_seconds(at, "msg.strike_date")?,
                "strike_period" => out.strike_period = self.text(at, "msg.strike_period")?,
                "fee_type_override" if kind == EventKind::FeeUpdate => {
                    out.fee_type_override = self.text(at, "msg.fee_type_override")?;
                }
                "fee_multiplier_override" if kind == EventKind::FeeUpdate => {
                    out.fee_multiplier_override =
                        self.scalar_text(at, "msg.fee_multiplier_override")?;
                }
                _ => {}
            }
        }
        out.event_ticker = event_ticker.ok_or(DecodeError::MissingField {
            field: "msg.event_ticker",
        })?;
        Ok(out)
    }

    fn command(&mut self, header: Header, command: &str, params: Option<usize>) -> Record {
        let command = self.aux.push_text(command);
        let params = params.and_then(|at| self.json_text(at));
        Record::Control(Control {
            header,
            kind: ControlKind::Command,
            channel: Some(command),
            code: None,
            message: params,
            market_ticker: None,
            market_tickers: TextList::default(),
            market_ids: TextList::default(),
            subscriptions: 0,
        })
    }

    fn control(
        &mut self,
        mut header: Header,
        msg: Option<usize>,
        mut kind: ControlKind,
    ) -> Result<Control, DecodeError> {
        let mut out = Control {
            header,
            kind,
            channel: None,
            code: None,
            message: None,
            market_ticker: None,
            market_tickers: TextList::default(),
            market_ids: TextList::default(),
            subscriptions: 0,
        };
        let Some(msg) = msg else {
            return match kind {
                ControlKind::Subscribed => Err(DecodeError::MissingField { field: "msg" }),
                ControlKind::Error => Err(DecodeError::MissingField { field: "msg.code" }),
                _ => Ok(out),
            };
        };
        if kind == ControlKind::Ok && matches!(self.nodes.get(msg), Some(Node::Array { .. })) {
            kind = ControlKind::SubscriptionList;
            for entry in self.elements(msg, "msg")? {
                let (mut channel, mut sid) = (None, None);
                for (key, at) in self.fields(entry, "msg[]")? {
                    match key {
                        "channel" => channel = self.text(at, "msg[].channel")?,
                        "sid" => sid = self.positive(at, "msg[].sid")?,
                        _ => {}
                    }
                }
                let channel = channel.ok_or(DecodeError::MissingField {
                    field: "msg[].channel",
                })?;
                let sid = sid.ok_or(DecodeError::MissingField { field: "msg[].sid" })?;
                self.aux.subscriptions.push((channel, sid.get()));
            }
            out.kind = kind;
            out.subscriptions = self.aux.subscriptions.len() as u32;
            return Ok(out);
        }
        // Only the fields each kind documents are read, so that a record says exactly what the
        // protocol gives that kind of frame.
        let (subscribed, ok, error) = (
            kind == ControlKind::Subscribed,
            kind == ControlKind::Ok,
            kind == ControlKind::Error,
        );
        if subscribed || ok || error {
            for (key, at) in self.fields(msg, "msg")? {
                match key {
                    "channel" if subscribed => out.channel = self.text(at, "msg.channel")?,
                    "sid" if subscribed => {
                        let sid = self.positive(at, "msg.sid")?;
                        header.sid = header.sid.or(sid);
                    }
                    "code" if error => out.code = self.integer(at, "msg.code")?,
                    "msg" if error => out.message = self.text(at, "msg.msg")?,
                    "market_ticker" if error => {
                        out.market_ticker = self.text(at, "msg.market_ticker")?;
                    }
                    "market_tickers" if ok || error => {
                        out.market_tickers = self.text_list(at, "msg.market_tickers")?;
                    }
                    "market_ids" if ok => out.market_ids = self.text_list(at, "msg.market_ids")?,
                    _ => {}
                }
            }
        }
        out.header = header;
        match kind {
            ControlKind::Subscribed if header.sid.is_none() => {
                Err(DecodeError::MissingField { field: "msg.sid" })
            }
            ControlKind::Error if out.code.is_none() => {
                Err(DecodeError::MissingField { field: "msg.code" })
            }
            _ => Ok(out),
        }
    }

    /// The `orderbook_fp` (preferred) or legacy `orderbook` object of a REST book body, or the
    /// body itself when it is bare.
    fn rest_orderbook(&mut self, ticker: crate::inline::Ticker) -> Result<Record, DecodeError> {
        let (mut fp, mut legacy) = (None, None);
        let mut bare = false;
        for (key, at) in self.fields(0, "body")? {
            match key {
                "orderbook_fp" if !self.is_null(at) => fp = Some(at),
                "orderbook" if !self.is_null(at) => legacy = Some(at),
                "yes_dollars" | "no_dollars" | "yes" | "no" => bare = true,
                _ => {}
            }
        }
        let book = match (fp, legacy) {
            (Some(at), _) | (None, Some(at)) => at,
            (None, None) if bare => 0,
            (None, None) => {
                return Err(DecodeError::MissingField {
                    field: "orderbook_fp",
                });
            }
        };
        // Per side: (`*_dollars` with fixed-point counts or integer counts, cents).
        let mut yes: [Option<usize>; 3] = [None; 3];
        let mut no: [Option<usize>; 3] = [None; 3];
        for (key, at) in self.fields(book, "orderbook_fp")? {
            let present = Some(at).filter(|at| !self.is_null(*at));
            match key {
                "yes_dollars" => yes[1] = present,
                "yes" => yes[2] = present,
                "no_dollars" => no[1] = present,
                "no" => no[2] = present,
                _ => {}
            }
        }
        let yes_levels = self.side_levels(
            yes,
            [
                "orderbook_fp.yes_dollars",
                "orderbook_fp.yes_dollars",
                "orderbook.yes",
            ],
        )?;
        let no_levels = self.side_levels(
            no,
            [
                "orderbook_fp.no_dollars",
                "orderbook_fp.no_dollars",
                "orderbook.no",
            ],
        )?;
        Ok(Record::Snapshot(Snapshot {
            header: Header::default(),
            ticker,
            market_id: InlineStr::empty(),
            yes_levels,
            no_levels,
        }))
    }

    /// The trades of a REST page into `out`; returns the cursor.
    fn rest_trades(&mut self, out: &mut Vec<Trade>) -> Result<Option<Text>, DecodeError> {
        let (mut trades, mut cursor) = (None, None);
        for (key, at) in self.fields(0, "body")? {
            match key {
                "trades" => trades = Some(at).filter(|at| !self.is_null(*at)),
                "cursor" => cursor = self.text(at, "cursor")?,
                _ => {}
            }
        }
        if let Some(at) = trades {
            for element in self.elements(at, "trades")? {
                out.push(self.rest_trade(element)?);
            }
        }
        Ok(cursor)
    }

    fn rest_trade(&mut self, at: usize) -> Result<Trade, DecodeError> {
        let (mut ticker, mut trade_id, mut created) = (None, None, None);
        let (mut yes_dollars, mut yes_cents, mut no_dollars, mut no_cents) =
            (None, None, None, None);
        let (mut count_fp, mut count_whole) = (None, None);
        let (mut taker_side, mut taker_outcome_side, mut taker_book_side) = (None, None, None);
        let mut is_block_trade = None;
        for (key, at) in self.fields(at, "trades[]")? {
            match key {
                "ticker" | "market_ticker" => ticker = self.string(at, "trades[].ticker")?,
                "trade_id" => trade_id = self.string(at, "trades[].trade_id")?,
                "created_time" => created = self.rfc3339(at, "trades[].created_time"),
                "yes_price_dollars" => {
                    yes_dollars = self.dollars(at, "trades[].yes_price_dollars")?;
                }
                "yes_price" | "price" => yes_cents = self.cents(at, "trades[].yes_price")?,
                "no_price_dollars" => no_dollars = self.dollars(at, "trades[].no_price_dollars")?,
                "no_price" => no_cents = self.cents(at, "trades[].no_price")?,
                "count_fp" => count_fp = self.size(at, "trades[].count_fp")?,
                "count" => count_whole = self.size(at, "trades[].count")?,
                "taker_side" => taker_side = self.side(at, "trades[].taker_side")?,
                "taker_outcome_side" => {
                    taker_outcome_side = self.side(at, "trades[].taker_outcome_side")?;
                }
                "taker_book_side" => {
                    taker_book_side = self.book_side(at, "trades[].taker_book_side")?;
                }
                "is_block_trade" => {
                    is_block_trade = self.boolean(at, "trades[].is_block_trade")?;
                }
                _ => {}
            }
        }
        let one_dollar = fixed::pow10(PRICE_SCALE);
        let (yes_price_e6, no_price_e6) = match (
            first(&[yes_dollars, yes_cents]),
            first(&[no_dollars, no_cents]),
        ) {
            (Some(yes), Some(no)) => (yes, no),
            (Some(yes), None) => (yes, derived_price(one_dollar - yes, "trades[].no_price")?),
            (None, Some(no)) => (derived_price(one_dollar - no, "trades[].yes_price")?, no),
            (None, None) => {
                return Err(DecodeError::MissingField {
                    field: "trades[].yes_price_dollars",
                });
            }
        };
        Ok(Trade {
            header: Header::default(),
            exchange_ts: created.transpose()?,
            yes_price_e6,
            no_price_e6,
            count_e2: first(&[count_fp, count_whole]).ok_or(DecodeError::MissingField {
                field: "trades[].count_fp",
            })?,
            ticker: inline(ticker, "trades[].ticker")?,
            trade_id: inline(trade_id, "trades[].trade_id")?,
            taker_side,
            taker_outcome_side,
            taker_book_side,
            is_block_trade,
        })
    }
}
