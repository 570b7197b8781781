//! Normalized records: what one Kalshi frame means, in the platform's units.
//!
//! Every decoded frame becomes one [`Record`]. The market-data records that dominate the feed
//! ([`Trade`], [`Delta`], [`TickerUpdate`]) are fixed-size `Copy` values with inline identifiers,
//! so they can be pushed through a ring by value. Values of variable size (a snapshot's levels, a
//! lifecycle message's titles, an `ok` frame's ticker list) live in the decoder's reusable
//! [`Aux`] buffers, and records refer to them with [`Text`], [`TextList`] and level counts; a
//! [`Decoded`] pairs a record with the buffers it refers to.
//!
//! Units (see `design.md` §4): prices in micro-dollars (`_e6`), counts in hundredths of a
//! contract (`_e2`), times in microseconds since the Unix epoch (`_ts`). NO-side prices are
//! quoted in the wire's convention, which depends on the subscription's `use_yes_price` flag;
//! the decoder does not know the flag, so it is carried in [`Decoded::use_yes_price`] when the
//! caller supplies it.

use core::num::NonZeroU64;

use crate::inline::{MarketId, Ticker, TradeId};

/// Envelope fields common to every frame. `None` means the frame did not carry the field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// The command id a response echoes (`id`); `0` on the wire means "no id" and decodes as
    /// `None`.
    pub id: Option<NonZeroU64>,
    /// Subscription id. For `subscribed` frames it is taken from `msg.sid`.
    pub sid: Option<NonZeroU64>,
    /// Per-subscription sequence number.
    pub seq: Option<NonZeroU64>,
}

/// A side of Kalshi's two bid books.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Side {
    /// The YES bid book.
    Yes = 0,
    /// The NO bid book.
    No = 1,
}

impl Side {
    /// The wire spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Yes => "yes",
            Side::No => "no",
        }
    }
}

/// The book a taker hit (`taker_book_side`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum BookSide {
    /// The taker bought YES (hit the bid side of the YES book view).
    Bid = 0,
    /// The taker sold YES.
    Ask = 1,
}

impl BookSide {
    /// The wire spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BookSide::Bid => "bid",
            BookSide::Ask => "ask",
        }
    }
}

/// A public trade print (`trade` channel).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trade {
    /// Envelope.
    pub header: Header,
    /// Exchange time in µs (`ts_ms`, else `ts` seconds); `None` when the frame has neither.
    pub exchange_ts: Option<i64>,
    /// YES price in micro-dollars.
    pub yes_price_e6: i64,
    /// NO price in micro-dollars (`yes_price_e6 + no_price_e6 == 1_000_000` on real frames).
    pub no_price_e6: i64,
    /// Contracts traded, in hundredths.
    pub count_e2: i64,
    /// Market ticker.
    pub ticker: Ticker,
    /// Exchange trade id, the dedup key for trades.
    pub trade_id: TradeId,
    /// Deprecated `taker_side`.
    pub taker_side: Option<Side>,
    /// `taker_outcome_side`.
    pub taker_outcome_side: Option<Side>,
    /// `taker_book_side`.
    pub taker_book_side: Option<BookSide>,
    /// `is_block_trade`.
    pub is_block_trade: Option<bool>,
}

/// A signed change to the resting size at one price level (`orderbook_delta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delta {
    /// Envelope.
    pub header: Header,
    /// Exchange time in µs: `ts` (µs precision) when it agrees with `ts_ms`, else `ts_ms`.
    pub exchange_ts: Option<i64>,
    /// Price level in micro-dollars, in the wire's NO-side convention.
    pub price_e6: i64,
    /// Signed size change in hundredths of a contract.
    pub delta_e2: i64,
    /// Which bid book changed.
    pub side: Side,
    /// Market ticker.
    pub ticker: Ticker,
    /// Market id.
    pub market_id: MarketId,
}

/// One aggregated book level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Level {
    /// Price in micro-dollars.
    pub price_e6: i64,
    /// Resting size in hundredths of a contract.
    pub count_e2: i64,
}

/// A full book for one market (`orderbook_snapshot`). The levels are in [`Aux`], YES first,
/// each side sorted by ascending price.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Envelope. `header.id` is set when the snapshot answers a `get_snapshot` command.
    pub header: Header,
    /// Market ticker.
    pub ticker: Ticker,
    /// Market id (`""` for an unknown or expired market).
    pub market_id: MarketId,
    /// Number of YES levels.
    pub yes_levels: u32,
    /// Number of NO levels.
    pub no_levels: u32,
}

/// Top of book, last trade and volume for one market (`ticker` channel; unsequenced).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickerUpdate {
    /// Envelope.
    pub header: Header,
    /// Exchange time in µs: `time` when it agrees with `ts_ms`, else `ts_ms`, else `ts`.
    pub exchange_ts: Option<i64>,
    /// Market ticker.
    pub ticker: Ticker,
    /// Market id.
    pub market_id: MarketId,
    /// Last traded YES price (`price_dollars`); `None` when absent or `""`.
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
    /// Cumulative dollar volume (whole dollars on the wire).
    pub dollar_volume_e6: Option<i64>,
    /// Dollar open interest (whole dollars on the wire).
    pub dollar_open_interest_e6: Option<i64>,
}

/// A reference to text in [`Aux`]. The default is the empty text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Text {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

/// A scalar kept as its exact text, remembering whether the wire sent a JSON number or a
/// string (so that re-rendering reproduces the same JSON type).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scalar {
    /// The text: a string's content, or a number's shortest round-trip decimal form.
    pub text: Text,
    /// Whether the wire value was a JSON number.
    pub is_number: bool,
}

/// A reference to a list of texts in [`Aux`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TextList {
    pub(crate) start: u32,
    pub(crate) len: u32,
}

impl TextList {
    /// Number of entries.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the list is empty.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A tick-size band of a market's `price_ranges`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceRange {
    /// Start of the band, micro-dollars.
    pub start_e6: i64,
    /// End of the band, micro-dollars.
    pub end_e6: i64,
    /// Tick size, micro-dollars.
    pub step_e6: i64,
}

/// Market metadata carried by lifecycle `created` (`additional_metadata`) and
/// `metadata_updated` frames. Every field is optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MarketMetadata {
    /// `name`.
    pub name: Option<Text>,
    /// `title`.
    pub title: Option<Text>,
    /// `yes_sub_title`.
    pub yes_sub_title: Option<Text>,
    /// `no_sub_title`.
    pub no_sub_title: Option<Text>,
    /// `rules_primary`.
    pub rules_primary: Option<Text>,
    /// `rules_secondary`.
    pub rules_secondary: Option<Text>,
    /// `can_close_early`.
    pub can_close_early: Option<bool>,
    /// `event_ticker`.
    pub event_ticker: Option<Text>,
    /// `expected_expiration_ts`, µs.
    pub expected_expiration_ts: Option<i64>,
    /// `strike_type`.
    pub strike_type: Option<Text>,
    /// `floor_strike`, as the exact decimal text of the wire number.
    pub floor_strike: Option<Scalar>,
    /// `cap_strike`, as exact decimal text.
    pub cap_strike: Option<Scalar>,
    /// `custom_strike`, as compact JSON.
    pub custom_strike: Option<Text>,
}

/// A market lifecycle event (`market_lifecycle_v2` or `multivariate_market_lifecycle`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketLifecycle {
    /// Envelope.
    pub header: Header,
    /// True for `multivariate_market_lifecycle` (MVE markets).
    pub mve: bool,
    /// `event_type` (`created`, `activated`, `deactivated`, `close_date_updated`, `determined`,
    /// `settled`, `price_level_structure_updated`, `metadata_updated`, or a newer one).
    pub event_type: Text,
    /// Market ticker.
    pub ticker: Ticker,
    /// `exchange_index`.
    pub exchange_index: Option<i64>,
    /// `open_ts`, µs.
    pub open_ts: Option<i64>,
    /// `close_ts`, µs.
    pub close_ts: Option<i64>,
    /// `determination_ts`, µs.
    pub determination_ts: Option<i64>,
    /// `settled_ts`, µs.
    pub settled_ts: Option<i64>,
    /// `result` (`yes`, `no`, `scalar`, `""`).
    pub result: Option<Text>,
    /// `settlement_value`, micro-dollars.
    pub settlement_value_e6: Option<i64>,
    /// `is_deactivated`.
    pub is_deactivated: Option<bool>,
    /// `price_level_structure`.
    pub price_level_structure: Option<Text>,
    /// Number of `price_ranges` bands in [`Aux`] (0 when absent).
    pub price_ranges: u32,
    /// Metadata fields.
    pub metadata: MarketMetadata,
}

/// What kind of event-level frame an [`EventLifecycle`] came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `event_lifecycle`: an event was created.
    Created,
    /// `event_fee_update`: an event's fee override changed.
    FeeUpdate,
}

impl EventKind {
    /// The canonical `event_type` spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::FeeUpdate => "fee_update",
        }
    }

    /// The wire `type` this kind comes from.
    #[must_use]
    pub const fn wire_type(self) -> &'static str {
        match self {
            EventKind::Created => "event_lifecycle",
            EventKind::FeeUpdate => "event_fee_update",
        }
    }
}

/// An event-level lifecycle frame (`event_lifecycle` or `event_fee_update`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLifecycle {
    /// Envelope.
    pub header: Header,
    /// Which frame this was.
    pub kind: EventKind,
    /// `event_ticker`.
    pub event_ticker: Text,
    /// `series_ticker`.
    pub series_ticker: Option<Text>,
    /// `title`.
    pub title: Option<Text>,
    /// `subtitle`.
    pub subtitle: Option<Text>,
    /// `collateral_return_type`.
    pub collateral_return_type: Option<Text>,
    /// `exchange_index`.
    pub exchange_index: Option<i64>,
    /// `strike_date`, µs.
    pub strike_date: Option<i64>,
    /// `strike_period`.
    pub strike_period: Option<Text>,
    /// `fee_type_override` (fee updates).
    pub fee_type_override: Option<Text>,
    /// `fee_multiplier_override` as exact decimal text (fee updates).
    pub fee_multiplier_override: Option<Scalar>,
}

/// The control frames of the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlKind {
    /// `subscribed`: a subscription was created (`header.sid` is `msg.sid`).
    Subscribed,
    /// `ok`: an update or repeat subscribe was applied; consumes a seq.
    Ok,
    /// `ok` whose `msg` is the `list_subscriptions` array.
    SubscriptionList,
    /// `unsubscribed`; consumes a seq.
    Unsubscribed,
    /// `error`, with a numeric code.
    Error,
    /// A client command (`{"id","cmd","params"}`) found in a recording: `channel` holds the
    /// command name and `message` the params as compact JSON.
    Command,
}

impl ControlKind {
    /// The canonical `control` spelling.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ControlKind::Subscribed => "subscribed",
            ControlKind::Ok => "ok",
            ControlKind::SubscriptionList => "list_subscriptions",
            ControlKind::Unsubscribed => "unsubscribed",
            ControlKind::Error => "error",
            ControlKind::Command => "command",
        }
    }
}

/// A control frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// Envelope.
    pub header: Header,
    /// Which control frame.
    pub kind: ControlKind,
    /// `msg.channel` of a `subscribed` frame.
    pub channel: Option<Text>,
    /// `msg.code` of an `error` frame.
    pub code: Option<i64>,
    /// `msg.msg` of an `error` frame.
    pub message: Option<Text>,
    /// `msg.market_ticker` of an `error` frame.
    pub market_ticker: Option<Text>,
    /// `msg.market_tickers` (`ok`, `error`).
    pub market_tickers: TextList,
    /// `msg.market_ids` (`ok` on the ticker channel).
    pub market_ids: TextList,
    /// Number of `(channel, sid)` pairs of a subscription list, in [`Aux`].
    pub subscriptions: u32,
}

/// A frame whose `type` this decoder does not know (private channels, newer channels). It is
/// reported, not rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// Envelope.
    pub header: Header,
    /// The wire `type`.
    pub wire_type: Text,
}

/// One decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// `trade`.
    Trade(Trade),
    /// `orderbook_delta`.
    Delta(Delta),
    /// `orderbook_snapshot`.
    Snapshot(Snapshot),
    /// `ticker`.
    Ticker(TickerUpdate),
    /// `market_lifecycle_v2` / `multivariate_market_lifecycle`.
    MarketLifecycle(MarketLifecycle),
    /// `event_lifecycle` / `event_fee_update`.
    EventLifecycle(EventLifecycle),
    /// `subscribed`, `ok`, `unsubscribed`, `error`.
    Control(Control),
    /// Any other `type`.
    Unknown(Unknown),
}

/// A placeholder: an [`Unknown`] record with no envelope and an empty `type`, for instance the
/// first content of a slot that [`crate::Decoder::decode_into`] then reuses.
impl Default for Record {
    fn default() -> Self {
        Record::Unknown(Unknown {
            header: Header::default(),
            wire_type: Text::default(),
        })
    }
}

impl Record {
    /// The envelope of any record.
    #[must_use]
    pub const fn header(&self) -> &Header {
        match self {
            Record::Trade(r) => &r.header,
            Record::Delta(r) => &r.header,
            Record::Snapshot(r) => &r.header,
            Record::Ticker(r) => &r.header,
            Record::MarketLifecycle(r) => &r.header,
            Record::EventLifecycle(r) => &r.header,
            Record::Control(r) => &r.header,
            Record::Unknown(r) => &r.header,
        }
    }

    /// The canonical record `type` (`design.md` §9).
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Record::Trade(_) => "trade",
            Record::Delta(_) => "orderbook_delta",
            Record::Snapshot(_) => "orderbook_snapshot",
            Record::Ticker(_) => "ticker",
            Record::MarketLifecycle(_) => "market_lifecycle",
            Record::EventLifecycle(_) => "event_lifecycle",
            Record::Control(_) => "control",
            Record::Unknown(_) => "unknown",
        }
    }
}

/// Variable-size parts of the last decoded record. Owned by the decoder and reused, so that a
/// steady stream of frames allocates nothing once the buffers have grown to the largest frame.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Aux {
    pub(crate) arena: String,
    pub(crate) texts: Vec<Text>,
    pub(crate) levels: Vec<Level>,
    pub(crate) ranges: Vec<PriceRange>,
    pub(crate) subscriptions: Vec<(Text, u64)>,
}

impl Aux {
    /// Empties every buffer, keeping their capacity. Builders (the simulator, tests) call this
    /// before assembling a record's variable-size parts; the decoder does it per frame.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.texts.clear();
        self.levels.clear();
        self.ranges.clear();
        self.subscriptions.clear();
    }

    /// Stores `text` and returns its reference.
    pub fn push_text(&mut self, text: &str) -> Text {
        let start = self.arena.len() as u32;
        self.arena.push_str(text);
        Text {
            start,
            len: text.len() as u32,
        }
    }

    /// Stores a list of texts and returns its reference.
    pub fn push_list<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) -> TextList {
        let start = self.texts.len() as u32;
        for item in items {
            let text = self.push_text(item);
            self.texts.push(text);
        }
        TextList {
            start,
            len: self.texts.len() as u32 - start,
        }
    }

    /// Stores a snapshot's levels (YES side, then NO side) and returns the two counts for
    /// [`Snapshot::yes_levels`] and [`Snapshot::no_levels`]. Call on a cleared `Aux`: a snapshot's
    /// levels start at the beginning of the level buffer.
    pub fn push_levels(&mut self, yes: &[Level], no: &[Level]) -> (u32, u32) {
        self.levels.extend_from_slice(yes);
        self.levels.extend_from_slice(no);
        (yes.len() as u32, no.len() as u32)
    }

    /// Stores a `price_ranges` band; the record's `price_ranges` count is the number pushed.
    pub fn push_price_range(&mut self, range: PriceRange) {
        self.ranges.push(range);
    }

    /// Stores a `(channel, sid)` pair of a subscription list.
    pub fn push_subscription(&mut self, channel: &str, sid: u64) {
        let channel = self.push_text(channel);
        self.subscriptions.push((channel, sid));
    }

    /// The text a [`Text`] refers to.
    #[must_use]
    pub fn text(&self, text: Text) -> &str {
        let start = text.start as usize;
        self.arena
            .get(start..start + text.len as usize)
            .unwrap_or("")
    }

    /// The text of an optional scalar.
    #[must_use]
    pub fn scalar(&self, scalar: Option<Scalar>) -> Option<&str> {
        scalar.map(|s| self.text(s.text))
    }

    /// The text of an optional reference.
    #[must_use]
    pub fn opt_text(&self, text: Option<Text>) -> Option<&str> {
        text.map(|t| self.text(t))
    }

    /// The entries of a [`TextList`].
    pub fn list(&self, list: TextList) -> impl ExactSizeIterator<Item = &str> + '_ {
        let start = list.start as usize;
        self.texts
            .get(start..start + list.len as usize)
            .unwrap_or(&[])
            .iter()
            .map(|t| self.text(*t))
    }

    /// All levels of the last snapshot, YES side first.
    #[must_use]
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// The `price_ranges` bands of the last lifecycle record.
    #[must_use]
    pub fn price_ranges(&self) -> &[PriceRange] {
        &self.ranges
    }

    /// The `(channel, sid)` pairs of the last subscription list.
    pub fn subscriptions(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        self.subscriptions.iter().map(|(c, s)| (self.text(*c), *s))
    }
}

/// A record together with the buffers its variable-size parts live in. Valid until the next
/// decode on the same decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded<'d> {
    /// The record.
    pub record: Record,
    /// Its variable-size parts.
    pub aux: &'d Aux,
    /// The subscription's `use_yes_price` flag, when the caller knows it; it says in which
    /// convention NO-side prices are quoted.
    pub use_yes_price: Option<bool>,
}

impl Decoded<'_> {
    /// YES levels of a snapshot (empty for other records).
    #[must_use]
    pub fn yes_levels(&self) -> &[Level] {
        match &self.record {
            Record::Snapshot(s) => self.aux.levels.get(..s.yes_levels as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// NO levels of a snapshot (empty for other records).
    #[must_use]
    pub fn no_levels(&self) -> &[Level] {
        match &self.record {
            Record::Snapshot(s) => {
                let start = s.yes_levels as usize;
                self.aux
                    .levels
                    .get(start..start + s.no_levels as usize)
                    .unwrap_or(&[])
            }
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The hot records stay small enough to move through rings by value. A change here changes
    // ring memory and must be deliberate.
    #[test]
    fn record_sizes() {
        assert_eq!(core::mem::size_of::<Header>(), 24);
        assert_eq!(core::mem::size_of::<Trade>(), 184);
        assert_eq!(core::mem::size_of::<Delta>(), 176);
        assert_eq!(core::mem::size_of::<TickerUpdate>(), 312);
        // Dominated by the rare lifecycle variant; hot paths move the inner records.
        assert_eq!(core::mem::size_of::<Record>(), 376);
    }
}
