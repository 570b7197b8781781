//! The per-connection subscription manager, sans IO.
//!
//! One [`SubscriptionManager`] drives one WebSocket connection's subscriptions. The caller
//! (a shard core's connection task) feeds it decoded frames and the time, and asks it for
//! commands to send and actions to take:
//!
//! ```text
//!   connected(now, resume_from)            after the handshake
//!   poll_transmit(now, &mut buf) -> Some   a command's JSON is in buf: send it
//!   handle_frame(now, &decoded) -> Verdict for every frame received, before using it
//!   handle_timeout(now)                    at or after poll_timeout()
//!   poll_action() -> Some(Action)          after each of the above, until None
//!   disconnected(now)                      when the socket is gone
//!   add_markets / remove_markets           when discovery or lifecycle changes the assignment
//!   request_snapshot(ticker)               when a book reports an integrity error
//! ```
//!
//! ## What it relies on (`protocol.md` §5.4–5.7)
//! * Sids are per connection, starting at 1 on every new connection.
//! * Kalshi merges a repeat `subscribe` to a channel into the connection's existing sid, so
//!   the manager keeps exactly one subscription per channel per connection, created with
//!   `subscribe` (one channel per command, `use_yes_price` always explicit) and grown with
//!   `update_subscription` `add_markets`, in batches, paced by a token bucket.
//! * A repeat subscribe never resyncs. On a seq gap on the `orderbook_delta` sid the manager
//!   asks for `get_snapshot` of every market on it; if that does not complete in time it
//!   unsubscribes and subscribes again (new sid, seq from 1), waiting for `unsubscribed` first
//!   so the new subscribe cannot be merged into the old sid; if that fails, it asks for a
//!   reconnect. A gap on the `trade` sid cannot be repaired over the WebSocket: it becomes a
//!   REST trade backfill window. A gap on a lifecycle sid asks for a REST re-discovery.
//! * Frames from a sid that is not the channel's active one (superseded by a resubscribe, or
//!   never known) are dropped and counted, never applied.
//! * Error 25 (buffer overflow) and 10 (channel error) end the subscription: it is recorded as
//!   a gap and subscribed again. Error 27 (too many requests) and 18 (command timeout) are
//!   retried later; parameter errors are given up loudly.
//!
//! ## Cost
//! [`SubscriptionManager::handle_frame`] on a data frame is a scan of at most five
//! subscriptions, a seq comparison and a few stores: no allocation, no hashing. Everything else
//! (commands, acknowledgements, gaps) is control-path work and may allocate.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kalshi_wire::{Command, ControlKind, Decoded, Record, UpdateAction, encode_command};

use crate::key::{MarketKey, market_key};

use crate::rate::RateLimiter;
use crate::seq::{GapEvent, Repair, SeqOutcome, SeqTracker};

/// A channel the gatherer subscribes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// `orderbook_delta` (snapshots and deltas; market-filtered).
    OrderbookDelta,
    /// `trade` (market-filtered here).
    Trade,
    /// `ticker` (market-filtered here; unsequenced).
    Ticker,
    /// `market_lifecycle_v2` (global; also carries `event_lifecycle`).
    MarketLifecycleV2,
    /// `multivariate_market_lifecycle` (global).
    MultivariateMarketLifecycle,
}

impl Channel {
    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::OrderbookDelta => "orderbook_delta",
            Channel::Trade => "trade",
            Channel::Ticker => "ticker",
            Channel::MarketLifecycleV2 => "market_lifecycle_v2",
            Channel::MultivariateMarketLifecycle => "multivariate_market_lifecycle",
        }
    }

    /// Parses a wire name.
    #[must_use]
    pub fn parse(name: &str) -> Option<Channel> {
        Some(match name {
            "orderbook_delta" => Channel::OrderbookDelta,
            "trade" => Channel::Trade,
            "ticker" => Channel::Ticker,
            "market_lifecycle_v2" => Channel::MarketLifecycleV2,
            "multivariate_market_lifecycle" => Channel::MultivariateMarketLifecycle,
            _ => return None,
        })
    }

    /// Whether the channel is global (takes no market filter).
    #[must_use]
    pub const fn is_global(self) -> bool {
        matches!(
            self,
            Channel::MarketLifecycleV2 | Channel::MultivariateMarketLifecycle
        )
    }
}

/// Per-connection settings (see [`crate::config::Config::subs_config`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubsConfig {
    /// Stamped on [`GapEvent`]s.
    pub gatherer_id: i16,
    /// Market-filtered channels, one subscription each.
    pub channels: Vec<Channel>,
    /// Global channels carried by this connection (usually only one connection has them).
    pub lifecycle_channels: Vec<Channel>,
    /// Most markets on this connection (per subscription = per connection).
    pub markets_per_subscription: usize,
    /// Markets per `subscribe` / `add_markets` / `get_snapshot` command.
    pub markets_per_command: usize,
    /// Command token bucket rate.
    pub commands_per_second: u32,
    /// Command token bucket capacity.
    pub command_burst: u32,
    /// `use_yes_price` sent on every subscribe.
    pub use_yes_price: bool,
    /// Response deadline per command, µs.
    pub response_timeout_us: i64,
    /// Retries of a rate-limited or timed-out command before escalating.
    pub command_retries: u32,
}

impl Default for SubsConfig {
    fn default() -> Self {
        Self {
            gatherer_id: 1,
            channels: vec![Channel::OrderbookDelta, Channel::Trade, Channel::Ticker],
            lifecycle_channels: Vec::new(),
            markets_per_subscription: 500,
            markets_per_command: 100,
            commands_per_second: 10,
            command_burst: 10,
            use_yes_price: false,
            response_timeout_us: 10_000_000,
            command_retries: 3,
        }
    }
}

/// Why a frame was not delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The frame carries no sid.
    NoSid,
    /// The sid is not known on this connection.
    UnknownSid,
    /// The sid was this connection's, but has been replaced (resubscribe) or ended.
    SupersededSid,
    /// A duplicate or out-of-date seq.
    StaleSeq,
}

impl DropReason {
    /// A metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            DropReason::NoSid => "no_sid",
            DropReason::UnknownSid => "unknown_sid",
            DropReason::SupersededSid => "superseded_sid",
            DropReason::StaleSeq => "stale_seq",
        }
    }
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A data frame of an active subscription: store it, apply it to books.
    Deliver {
        /// The subscription's channel.
        channel: Channel,
        /// The NO-side price convention, for `orderbook_delta` frames.
        use_yes_price: Option<bool>,
    },
    /// A control frame (`subscribed`, `ok`, `unsubscribed`, `error`), consumed by the manager.
    /// Store it raw if captures keep control frames.
    Control,
    /// Do not apply or store as data.
    Drop(DropReason),
}

/// Why a reconnect is needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReconnectReason(pub String);

/// Why a trade backfill window exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfillCause {
    /// A seq gap on the trade subscription.
    Gap,
    /// The trade subscription ended (error 25/10, resubscribe).
    Resubscribe,
    /// A new connection (or process start) after a disconnected window.
    Reconnect,
    /// A market added while running (a new listing): its trades between listing and the
    /// trade subscription's confirmation.
    NewMarket,
}

/// Something the caller must do. Drain with [`SubscriptionManager::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A gap was detected: write a `sequence_gaps` row; for `orderbook_delta`, mark the books
    /// of `tickers` invalid (a resync is under way); count it.
    Gap(GapEvent),
    /// The repair of a gap moved to a stronger one.
    GapEscalated {
        /// [`GapEvent::gap_id`].
        gap_id: u64,
        /// The new repair.
        repair: Repair,
    },
    /// A gap was repaired (the ledger row's `repaired_ts`).
    GapRepaired {
        /// [`GapEvent::gap_id`].
        gap_id: u64,
        /// How.
        repair: Repair,
        /// When, µs.
        repaired_ts: i64,
    },
    /// Fetch trades of `tickers` between `from_us` and `to_us` over REST (see
    /// [`crate::poller::BackfillQueue`]).
    Backfill {
        /// The gap this repairs, if it is one.
        gap_id: Option<u64>,
        /// Markets.
        tickers: Vec<MarketKey>,
        /// Window start, µs.
        from_us: i64,
        /// Window end, µs.
        to_us: i64,
        /// Why.
        cause: BackfillCause,
    },
    /// A lifecycle subscription had a gap: run REST discovery now.
    Rediscover,
    /// Drop this connection and make a new one (with backoff).
    Reconnect(ReconnectReason),
    /// The exchange refused a command for good; log loudly. The markets are not subscribed on
    /// this channel.
    CommandRejected {
        /// The channel.
        channel: Channel,
        /// Kalshi's error code.
        code: i64,
        /// Kalshi's message.
        message: String,
        /// The markets of the command.
        tickers: Vec<MarketKey>,
    },
    /// An error frame that belongs to no command or subscription; log it.
    ServerError {
        /// Kalshi's error code.
        code: i64,
        /// Kalshi's message.
        message: String,
    },
}

/// Counters, exported by the owner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubsStats {
    /// Data frames delivered.
    pub delivered: u64,
    /// Frames dropped: no sid.
    pub dropped_no_sid: u64,
    /// Frames dropped: unknown sid.
    pub dropped_unknown_sid: u64,
    /// Frames dropped: superseded sid.
    pub dropped_superseded_sid: u64,
    /// Frames dropped: stale or duplicate seq.
    pub dropped_stale_seq: u64,
    /// Seq gaps (and subscriptions lost to errors 25/10).
    pub gaps: u64,
    /// Commands sent.
    pub commands_sent: u64,
    /// Commands that timed out.
    pub command_timeouts: u64,
    /// Error 27 answers.
    pub rate_limited: u64,
    /// Error frames of any code.
    pub errors: u64,
    /// `get_snapshot` commands sent.
    pub snapshot_requests: u64,
    /// Resubscribes (unsubscribe + subscribe).
    pub resubscribes: u64,
    /// Reconnects asked for.
    pub reconnects: u64,
}

/// A command sent, for logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Command id.
    pub id: u64,
    /// The channel it concerns (`None` for `unsubscribe`).
    pub channel: Option<Channel>,
    /// Which command.
    pub kind: CommandKind,
    /// Markets in it.
    pub markets: usize,
}

/// The kinds of command the manager sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    /// `subscribe`.
    Subscribe,
    /// `update_subscription` `add_markets`.
    AddMarkets,
    /// `update_subscription` `delete_markets`.
    DeleteMarkets,
    /// `update_subscription` `get_snapshot`.
    GetSnapshot,
    /// `unsubscribe`.
    Unsubscribe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubState {
    /// No subscription on the server; reconcile subscribes.
    Idle,
    /// `subscribe` queued or sent.
    Subscribing,
    /// Active with a sid.
    Active,
    /// `unsubscribe` of the old sid queued or sent; subscribe again after `unsubscribed`.
    Unsubscribing,
    /// Given up (the exchange refused the subscribe); never retried on this connection.
    Failed,
}

#[derive(Debug)]
struct Sub {
    channel: Channel,
    state: SubState,
    sid: Option<u64>,
    tracker: SeqTracker,
    confirmed: BTreeSet<MarketKey>,
    rejected: BTreeSet<MarketKey>,
    /// Receive time of the last in-order sequenced frame.
    last_frame_us: Option<i64>,
    /// A trade backfill window is open from this time until every market is confirmed.
    backfill_from_us: Option<i64>,
    backfill_cause: BackfillCause,
    /// The gap whose repair is this resubscribe.
    resubscribe_gap: Option<u64>,
}

#[derive(Clone, Debug)]
struct Planned {
    kind: CommandKind,
    sub: usize,
    markets: Vec<MarketKey>,
    /// For `unsubscribe`: the sid. Otherwise resolved at send time.
    sid: Option<u64>,
    gap_id: Option<u64>,
    attempt: u32,
    not_before_us: i64,
}

#[derive(Debug)]
struct Pending {
    id: u64,
    planned: Planned,
    deadline_us: i64,
    /// `get_snapshot`: markets whose snapshot has not arrived yet.
    awaiting: BTreeSet<MarketKey>,
}

/// How many superseded sids are remembered to label dropped frames.
const RETIRED_SIDS_MAX: usize = 64;

/// The subscription manager of one connection. See the module documentation.
#[derive(Debug)]
pub struct SubscriptionManager {
    config: SubsConfig,
    limiter: RateLimiter,
    next_id: u64,
    next_gap_id: u64,
    connected: bool,
    desired: BTreeSet<MarketKey>,
    subs: Vec<Sub>,
    retired: VecDeque<u64>,
    queue: VecDeque<Planned>,
    pending: Vec<Pending>,
    snapshot_wanted: BTreeSet<MarketKey>,
    actions: VecDeque<Action>,
    /// Open gaps being repaired by `get_snapshot`: gap id → markets still awaited.
    snapshot_gaps: BTreeMap<u64, BTreeSet<MarketKey>>,
    /// The connection-level gap of the last reconnect, repaired when all markets are back.
    reconnect_gap: Option<u64>,
    /// Gaps whose `get_snapshot` repair was cut short by a disconnect: the next connection's
    /// fresh subscriptions (each with its snapshot) repair them, once fully subscribed.
    repaired_by_reconnect: Vec<u64>,
    /// Markets added while running whose trades must be backfilled from this time until their
    /// trade subscription is confirmed.
    new_market_from: BTreeMap<MarketKey, i64>,
    stats: SubsStats,
}

fn retry_delay_us(attempt: u32) -> i64 {
    1_000_000_i64 << attempt.min(6)
}

impl SubscriptionManager {
    /// A manager for one connection, with no markets yet. `gap_id_base` seeds this manager's
    /// gap ids (give each connection a distinct range, e.g. `connection_index << 40`, so that
    /// ids are unique within the process).
    #[must_use]
    pub fn new(config: SubsConfig, gap_id_base: u64) -> Self {
        let subs = config
            .channels
            .iter()
            .chain(&config.lifecycle_channels)
            .map(|&channel| Sub {
                channel,
                state: SubState::Idle,
                sid: None,
                tracker: SeqTracker::new_subscription(),
                confirmed: BTreeSet::new(),
                rejected: BTreeSet::new(),
                last_frame_us: None,
                backfill_from_us: None,
                backfill_cause: BackfillCause::Reconnect,
                resubscribe_gap: None,
            })
            .collect();
        Self {
            limiter: RateLimiter::new(config.commands_per_second, config.command_burst),
            config,
            next_id: 1,
            next_gap_id: gap_id_base,
            connected: false,
            desired: BTreeSet::new(),
            subs,
            retired: VecDeque::new(),
            queue: VecDeque::new(),
            pending: Vec::new(),
            snapshot_wanted: BTreeSet::new(),
            actions: VecDeque::new(),
            snapshot_gaps: BTreeMap::new(),
            reconnect_gap: None,
            repaired_by_reconnect: Vec::new(),
            new_market_from: BTreeMap::new(),
            stats: SubsStats::default(),
        }
    }

    /// The counters.
    #[must_use]
    pub const fn stats(&self) -> SubsStats {
        self.stats
    }

    /// The markets assigned to this connection.
    pub fn markets(&self) -> impl ExactSizeIterator<Item = &MarketKey> + '_ {
        self.desired.iter()
    }

    /// How many more markets fit on this connection.
    #[must_use]
    pub fn free_slots(&self) -> usize {
        self.config
            .markets_per_subscription
            .saturating_sub(self.desired.len())
    }

    /// The active sid of `channel`, if subscribed.
    #[must_use]
    pub fn active_sid(&self, channel: Channel) -> Option<u64> {
        self.subs
            .iter()
            .find(|s| s.channel == channel && s.state == SubState::Active)
            .and_then(|s| s.sid)
    }

    /// Markets the exchange confirmed on `channel`.
    pub fn confirmed(&self, channel: Channel) -> impl Iterator<Item = &MarketKey> + '_ {
        self.subs
            .iter()
            .filter(move |s| s.channel == channel)
            .flat_map(|s| s.confirmed.iter())
    }

    /// Whether every assigned market is confirmed on every market channel and every global
    /// channel is active.
    #[must_use]
    pub fn is_fully_subscribed(&self) -> bool {
        self.subs.iter().all(|s| {
            s.state == SubState::Active
                && (s.channel.is_global() || self.desired.iter().all(|t| s.confirmed.contains(t)))
        })
    }

    /// Assigns markets to this connection (from discovery or lifecycle). Markets beyond
    /// [`SubscriptionManager::free_slots`] are not taken and are returned, for another
    /// connection. `listed_at_us` is given for markets that appeared while running (a
    /// `created` lifecycle event, a later discovery pass): their trades from then until the
    /// trade subscription covers them are backfilled ([`BackfillCause::NewMarket`]).
    pub fn add_markets(
        &mut self,
        tickers: &[MarketKey],
        listed_at_us: Option<i64>,
    ) -> Vec<MarketKey> {
        let mut overflow = Vec::new();
        let has_trade = self.subs.iter().any(|s| s.channel == Channel::Trade);
        for ticker in tickers {
            if self.desired.contains(ticker) {
                continue;
            }
            if self.desired.len() >= self.config.markets_per_subscription {
                overflow.push(ticker.clone());
            } else {
                self.desired.insert(ticker.clone());
                if let Some(from_us) = listed_at_us
                    && has_trade
                {
                    self.new_market_from.insert(ticker.clone(), from_us);
                }
            }
        }
        self.reconcile();
        overflow
    }

    /// Removes markets from this connection (settled, or moved).
    pub fn remove_markets(&mut self, tickers: &[MarketKey]) {
        for ticker in tickers {
            self.desired.remove(ticker);
            self.snapshot_wanted.remove(ticker);
            self.new_market_from.remove(ticker);
        }
        self.reconcile();
    }

    /// The shared key of `ticker` when this manager has it assigned (no allocation), else a
    /// new one.
    #[must_use]
    pub fn market_key(&self, ticker: &str) -> MarketKey {
        self.desired
            .get(ticker)
            .cloned()
            .unwrap_or_else(|| market_key(ticker))
    }

    /// Asks for a fresh snapshot of one market (its book reported an integrity error). Batched
    /// with other requests into `get_snapshot` commands; ignored for a market not on the
    /// active `orderbook_delta` subscription (its next subscription brings a snapshot anyway).
    pub fn request_snapshot(&mut self, ticker: &str) {
        let awaited = self
            .pending
            .iter()
            .any(|p| p.planned.kind == CommandKind::GetSnapshot && p.awaiting.contains(ticker));
        let on_book = self
            .subs
            .iter()
            .filter(|s| s.channel == Channel::OrderbookDelta)
            .find_map(|s| s.confirmed.get(ticker));
        if let Some(key) = on_book
            && !awaited
        {
            self.snapshot_wanted.insert(key.clone());
        }
    }

    /// The connection is up. `resume_from_us` is the start of the window this gatherer did not
    /// see (the previous connection's last frame, or the previous run's last stored trade); with
    /// it, a connection-level gap is recorded and every market's trades are backfilled from
    /// there up to the moment its trade subscription is confirmed.
    pub fn connected(&mut self, now_us: i64, resume_from_us: Option<i64>) {
        self.connected = true;
        if let Some(resume_us) = resume_from_us {
            // A window still open from an earlier connection (dropped before its trade
            // subscription was confirmed, so nothing of it was backfilled yet) starts earlier
            // than this resume point, which is only that connection's last frame or its end.
            // Replacing it would lose the trades between the two.
            let from_us = self
                .subs
                .iter()
                .filter(|s| s.channel == Channel::Trade)
                .filter_map(|s| s.backfill_from_us)
                .fold(resume_us, i64::min);
            let gap_id = self.new_gap_id();
            self.reconnect_gap = Some(gap_id);
            self.stats.gaps += 1;
            self.actions.push_back(Action::Gap(GapEvent {
                gap_id,
                detected_ts: now_us,
                gatherer_id: self.config.gatherer_id,
                channel: "connection".to_owned(),
                sid: None,
                expected_seq: None,
                received_seq: None,
                tickers: self.desired.iter().map(|t| t.to_string()).collect(),
                repair: Repair::Reconnect,
                repaired_ts: None,
                backfilled_trades: None,
                note: Some(format!("not connected since {from_us} µs")),
            }));
            for sub in &mut self.subs {
                if sub.channel == Channel::Trade {
                    sub.backfill_from_us = Some(from_us);
                    sub.backfill_cause = BackfillCause::Reconnect;
                }
            }
        }
        self.reconcile();
    }

    /// The connection is gone. Every subscription ends (sids are per connection); trade
    /// windows stay open from each subscription's last frame. Pending commands are forgotten.
    /// Call [`SubscriptionManager::connected`] on the next connection with
    /// [`SubscriptionManager::last_frame_us`] as the resume point.
    pub fn disconnected(&mut self, now_us: i64) {
        self.connected = false;
        for sub in &mut self.subs {
            if sub.channel == Channel::Trade && sub.backfill_from_us.is_none() {
                sub.backfill_from_us = Some(sub.last_frame_us.unwrap_or(now_us));
            }
            sub.state = SubState::Idle;
            sub.sid = None;
            sub.confirmed.clear();
            sub.tracker = SeqTracker::new_subscription();
        }
        self.retired.clear();
        self.queue.clear();
        self.pending.clear();
        self.snapshot_wanted.clear();
        // A `get_snapshot` repair in flight is gone with the connection; the resubscription on
        // the next one brings every book's snapshot, so that is what repairs the gap now.
        for gap_id in core::mem::take(&mut self.snapshot_gaps).into_keys() {
            self.actions.push_back(Action::GapEscalated {
                gap_id,
                repair: Repair::Reconnect,
            });
            self.repaired_by_reconnect.push(gap_id);
        }
    }

    /// The receive time of the last sequenced frame on any subscription, the natural resume
    /// point after a disconnect.
    #[must_use]
    pub fn last_frame_us(&self) -> Option<i64> {
        self.subs.iter().filter_map(|s| s.last_frame_us).max()
    }

    /// The next action, if any.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`SubscriptionManager::handle_timeout`] or
    /// [`SubscriptionManager::poll_transmit`] next has work: the earliest response deadline, or
    /// when the next queued command may be sent.
    #[must_use]
    pub fn poll_timeout(&self, now_us: i64) -> Option<i64> {
        let deadline = self.pending.iter().map(|p| p.deadline_us).min();
        let send = if self.connected && (!self.queue.is_empty() || !self.snapshot_wanted.is_empty())
        {
            let ready = self
                .queue
                .iter()
                .map(|p| p.not_before_us)
                .min()
                .unwrap_or(now_us)
                .max(now_us);
            self.limiter.next_available_us(ready)
        } else {
            None
        };
        match (deadline, send) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires overdue commands: retries, or escalates.
    pub fn handle_timeout(&mut self, now_us: i64) {
        let mut index = 0;
        while index < self.pending.len() {
            if self.pending[index].deadline_us <= now_us {
                let pending = self.pending.swap_remove(index);
                self.stats.command_timeouts += 1;
                self.fail(now_us, pending, None);
            } else {
                index += 1;
            }
        }
    }

    /// Encodes the next command into `out` (cleared first) if one is due and the rate limit
    /// allows it, and returns what was sent. Call until `None` after every event.
    pub fn poll_transmit(&mut self, now_us: i64, out: &mut Vec<u8>) -> Option<Sent> {
        if !self.connected {
            return None;
        }
        self.flush_snapshot_requests();
        loop {
            let position = self.queue.iter().position(|p| p.not_before_us <= now_us)?;
            // Resolve the sid now: the subscription may have changed since this was planned.
            let planned = self.queue.get(position)?;
            let sid = match planned.kind {
                CommandKind::Subscribe => None,
                CommandKind::Unsubscribe => planned.sid,
                _ => {
                    let sub = self.subs.get(planned.sub)?;
                    if sub.state != SubState::Active {
                        // Obsolete: a new subscription will carry these markets.
                        self.queue.remove(position);
                        continue;
                    }
                    sub.sid
                }
            };
            if !self.limiter.try_take(now_us) {
                return None;
            }
            let mut planned = self.queue.remove(position)?;
            planned.sid = sid;
            let id = self.next_id;
            self.next_id += 1;
            let channel = self.subs.get(planned.sub).map(|s| s.channel);
            self.encode(id, &planned, channel, out);
            self.stats.commands_sent += 1;
            if planned.kind == CommandKind::GetSnapshot {
                self.stats.snapshot_requests += 1;
            }
            let sent = Sent {
                id,
                channel: (planned.kind != CommandKind::Unsubscribe)
                    .then_some(channel)
                    .flatten(),
                kind: planned.kind,
                markets: planned.markets.len(),
            };
            let awaiting = if planned.kind == CommandKind::GetSnapshot {
                planned.markets.iter().cloned().collect()
            } else {
                BTreeSet::new()
            };
            self.pending.push(Pending {
                id,
                planned,
                deadline_us: now_us.saturating_add(self.config.response_timeout_us),
                awaiting,
            });
            return Some(sent);
        }
    }

    fn encode(&self, id: u64, planned: &Planned, channel: Option<Channel>, out: &mut Vec<u8>) {
        out.clear();
        let tickers: Vec<&str> = planned.markets.iter().map(|t| &**t).collect();
        let channel_name = [channel.map_or("", Channel::as_str)];
        let sid = planned.sid.unwrap_or(0);
        let command = match planned.kind {
            CommandKind::Subscribe => Command::Subscribe {
                id,
                channels: &channel_name,
                market_tickers: &tickers,
                use_yes_price: self.config.use_yes_price,
                send_initial_snapshot: None,
                skip_ticker_ack: None,
            },
            CommandKind::Unsubscribe => Command::Unsubscribe {
                id,
                sids: core::slice::from_ref(&sid),
            },
            kind => Command::UpdateSubscription {
                id,
                sid,
                action: match kind {
                    CommandKind::AddMarkets => UpdateAction::AddMarkets,
                    CommandKind::DeleteMarkets => UpdateAction::DeleteMarkets,
                    _ => UpdateAction::GetSnapshot,
                },
                market_tickers: &tickers,
                index_ids: &[],
                underlying_tickers: &[],
                send_initial_snapshot: None,
            },
        };
        encode_command(&command, out);
    }

    fn flush_snapshot_requests(&mut self) {
        if self.snapshot_wanted.is_empty() {
            return;
        }
        let Some(index) = self
            .subs
            .iter()
            .position(|s| s.channel == Channel::OrderbookDelta && s.state == SubState::Active)
        else {
            self.snapshot_wanted.clear();
            return;
        };
        let wanted: Vec<MarketKey> = core::mem::take(&mut self.snapshot_wanted)
            .into_iter()
            .collect();
        for chunk in wanted.chunks(self.config.markets_per_command.max(1)) {
            self.queue.push_back(Planned {
                kind: CommandKind::GetSnapshot,
                sub: index,
                markets: chunk.to_vec(),
                sid: None,
                gap_id: None,
                attempt: 0,
                not_before_us: i64::MIN,
            });
        }
    }

    fn new_gap_id(&mut self) -> u64 {
        let id = self.next_gap_id;
        self.next_gap_id += 1;
        id
    }

    fn in_flight(&self, sub: usize, kind: CommandKind) -> BTreeSet<MarketKey> {
        self.queue
            .iter()
            .filter(|p| p.sub == sub && p.kind == kind)
            .chain(
                self.pending
                    .iter()
                    .map(|p| &p.planned)
                    .filter(|p| p.sub == sub && p.kind == kind),
            )
            .flat_map(|p| p.markets.iter().cloned())
            .collect()
    }

    /// Plans the commands that bring each subscription to the assigned market set.
    fn reconcile(&mut self) {
        if !self.connected {
            return;
        }
        let batch = self.config.markets_per_command.max(1);
        for index in 0..self.subs.len() {
            let (state, global) = (self.subs[index].state, self.subs[index].channel.is_global());
            match state {
                SubState::Idle => {
                    let markets: Vec<MarketKey> = if global {
                        Vec::new()
                    } else {
                        let rejected = &self.subs[index].rejected;
                        self.desired
                            .iter()
                            .filter(|t| !rejected.contains(*t))
                            .take(batch)
                            .cloned()
                            .collect()
                    };
                    if global || !markets.is_empty() {
                        self.subs[index].state = SubState::Subscribing;
                        self.queue.push_back(Planned {
                            kind: CommandKind::Subscribe,
                            sub: index,
                            markets,
                            sid: None,
                            gap_id: None,
                            attempt: 0,
                            not_before_us: i64::MIN,
                        });
                    }
                }
                SubState::Active if !global => {
                    let adding = self.in_flight(index, CommandKind::AddMarkets);
                    let deleting = self.in_flight(index, CommandKind::DeleteMarkets);
                    let sub = &self.subs[index];
                    let to_add: Vec<MarketKey> = self
                        .desired
                        .iter()
                        .filter(|t| {
                            !sub.confirmed.contains(*t)
                                && !sub.rejected.contains(*t)
                                && !adding.contains(*t)
                        })
                        .cloned()
                        .collect();
                    let to_delete: Vec<MarketKey> = sub
                        .confirmed
                        .iter()
                        .filter(|t| !self.desired.contains(*t) && !deleting.contains(*t))
                        .cloned()
                        .collect();
                    for (kind, markets) in [
                        (CommandKind::DeleteMarkets, to_delete),
                        (CommandKind::AddMarkets, to_add),
                    ] {
                        for chunk in markets.chunks(batch) {
                            self.queue.push_back(Planned {
                                kind,
                                sub: index,
                                markets: chunk.to_vec(),
                                sid: None,
                                gap_id: None,
                                attempt: 0,
                                not_before_us: i64::MIN,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn sub_of_sid(&self, sid: u64) -> Option<usize> {
        self.subs
            .iter()
            .position(|s| s.sid == Some(sid) && s.state == SubState::Active)
    }

    /// Classifies one decoded frame received at `now_us` and updates the subscription state.
    /// Call for every frame, before using it; then drain [`SubscriptionManager::poll_action`].
    pub fn handle_frame(&mut self, now_us: i64, decoded: &Decoded<'_>) -> Verdict {
        if let Record::Control(control) = &decoded.record {
            self.handle_control(now_us, control, decoded);
            return Verdict::Control;
        }
        let header = *decoded.record.header();
        let Some(sid) = header.sid.map(core::num::NonZeroU64::get) else {
            self.stats.dropped_no_sid += 1;
            return Verdict::Drop(DropReason::NoSid);
        };
        let Some(index) = self.sub_of_sid(sid) else {
            return Verdict::Drop(self.drop_sid(sid));
        };
        match self.subs[index].tracker.observe(header.seq) {
            SeqOutcome::InOrder => self.subs[index].last_frame_us = Some(now_us),
            SeqOutcome::Unsequenced => {}
            SeqOutcome::Stale { .. } => {
                self.stats.dropped_stale_seq += 1;
                return Verdict::Drop(DropReason::StaleSeq);
            }
            SeqOutcome::Gap { expected, got } => {
                self.on_gap(now_us, index, Some(expected), Some(got), None);
                self.subs[index].last_frame_us = Some(now_us);
            }
        }
        if let (Record::Snapshot(snapshot), Some(id)) = (&decoded.record, header.id) {
            self.snapshot_answered(now_us, id.get(), snapshot.ticker.as_str());
        }
        self.stats.delivered += 1;
        let channel = self.subs[index].channel;
        Verdict::Deliver {
            channel,
            use_yes_price: (channel == Channel::OrderbookDelta)
                .then_some(self.config.use_yes_price),
        }
    }

    fn drop_sid(&mut self, sid: u64) -> DropReason {
        if self.retired.contains(&sid) {
            self.stats.dropped_superseded_sid += 1;
            DropReason::SupersededSid
        } else {
            self.stats.dropped_unknown_sid += 1;
            DropReason::UnknownSid
        }
    }

    fn retire(&mut self, index: usize) -> Option<u64> {
        let sub = &mut self.subs[index];
        let sid = sub.sid.take()?;
        if self.retired.len() == RETIRED_SIDS_MAX {
            self.retired.pop_front();
        }
        self.retired.push_back(sid);
        Some(sid)
    }

    fn snapshot_answered(&mut self, now_us: i64, id: u64, ticker: &str) {
        let Some(position) = self.pending.iter().position(|p| p.id == id) else {
            return;
        };
        let pending = &mut self.pending[position];
        pending.awaiting.remove(ticker);
        let gap_id = pending.planned.gap_id;
        if pending.awaiting.is_empty() {
            self.pending.swap_remove(position);
        }
        if let Some(gap_id) = gap_id
            && let Some(awaiting) = self.snapshot_gaps.get_mut(&gap_id)
        {
            awaiting.remove(ticker);
            if awaiting.is_empty() {
                self.snapshot_gaps.remove(&gap_id);
                self.actions.push_back(Action::GapRepaired {
                    gap_id,
                    repair: Repair::GetSnapshot,
                    repaired_ts: now_us,
                });
            }
        }
    }

    /// Records a gap on subscription `index` and starts its repair. `received` is `None` when
    /// the subscription ended instead (errors 25 and 10).
    fn on_gap(
        &mut self,
        now_us: i64,
        index: usize,
        expected: Option<u64>,
        received: Option<u64>,
        note: Option<String>,
    ) {
        self.stats.gaps += 1;
        let gap_id = self.new_gap_id();
        let sub = &self.subs[index];
        let channel = sub.channel;
        let tickers: Vec<MarketKey> = sub.confirmed.iter().cloned().collect();
        let ended = received.is_none();
        let repair = match (channel, ended) {
            (_, true) => Repair::Resubscribe,
            (Channel::OrderbookDelta, false) => Repair::GetSnapshot,
            (Channel::Trade, false) => Repair::RestBackfill,
            _ => Repair::None,
        };
        self.actions.push_back(Action::Gap(GapEvent {
            gap_id,
            detected_ts: now_us,
            gatherer_id: self.config.gatherer_id,
            channel: channel.as_str().to_owned(),
            sid: sub.sid,
            expected_seq: expected,
            received_seq: received,
            tickers: tickers.iter().map(|t| t.to_string()).collect(),
            repair,
            repaired_ts: None,
            backfilled_trades: None,
            note,
        }));
        if channel == Channel::Trade && !ended {
            self.actions.push_back(Action::Backfill {
                gap_id: Some(gap_id),
                tickers,
                from_us: sub.last_frame_us.unwrap_or(now_us),
                to_us: now_us,
                cause: BackfillCause::Gap,
            });
        } else if channel.is_global() {
            self.actions.push_back(Action::Rediscover);
            if ended {
                self.resubscribe(index, Some(gap_id), false);
            }
        } else if ended {
            self.resubscribe(index, Some(gap_id), false);
        } else if channel == Channel::OrderbookDelta {
            self.snapshot_gaps
                .insert(gap_id, tickers.iter().cloned().collect());
            for chunk in tickers.chunks(self.config.markets_per_command.max(1)) {
                self.queue.push_back(Planned {
                    kind: CommandKind::GetSnapshot,
                    sub: index,
                    markets: chunk.to_vec(),
                    sid: None,
                    gap_id: Some(gap_id),
                    attempt: 0,
                    not_before_us: i64::MIN,
                });
            }
            if tickers.is_empty() {
                self.snapshot_gaps.remove(&gap_id);
            }
        }
    }

    /// Ends subscription `index` and subscribes again after the old sid is gone. With
    /// `still_on_server`, an `unsubscribe` is sent first and the new subscribe waits for it.
    fn resubscribe(&mut self, index: usize, gap_id: Option<u64>, still_on_server: bool) {
        self.stats.resubscribes += 1;
        let old = self.retire(index);
        let sub = &mut self.subs[index];
        if sub.channel == Channel::Trade && sub.backfill_from_us.is_none() {
            sub.backfill_from_us = sub.last_frame_us;
            sub.backfill_cause = BackfillCause::Resubscribe;
        }
        sub.confirmed.clear();
        sub.tracker = SeqTracker::new_subscription();
        sub.resubscribe_gap = gap_id.or(sub.resubscribe_gap);
        // Obsolete commands for the old subscription.
        self.queue
            .retain(|p| p.sub != index || p.kind == CommandKind::Unsubscribe);
        self.pending
            .retain(|p| p.planned.sub != index || p.planned.kind == CommandKind::Unsubscribe);
        match old {
            Some(sid) if still_on_server => {
                self.subs[index].state = SubState::Unsubscribing;
                self.queue.push_front(Planned {
                    kind: CommandKind::Unsubscribe,
                    sub: index,
                    markets: Vec::new(),
                    sid: Some(sid),
                    gap_id: None,
                    attempt: 0,
                    not_before_us: i64::MIN,
                });
            }
            _ => {
                self.subs[index].state = SubState::Idle;
                self.reconcile();
            }
        }
    }

    fn reconnect(&mut self, reason: String) {
        self.stats.reconnects += 1;
        self.actions
            .push_back(Action::Reconnect(ReconnectReason(reason)));
    }

    /// A command failed (timeout when `code` is `None`, else an error code).
    fn fail(&mut self, now_us: i64, pending: Pending, code: Option<i64>) {
        let mut planned = pending.planned;
        let retryable = matches!(code, None | Some(18) | Some(27));
        let channel = self.subs.get(planned.sub).map(|s| s.channel);
        match planned.kind {
            CommandKind::Unsubscribe => {
                // The old sid is retired either way; go on with the new subscription.
                if let Some(sub) = self.subs.get_mut(planned.sub)
                    && sub.state == SubState::Unsubscribing
                {
                    sub.state = SubState::Idle;
                    self.reconcile();
                }
            }
            CommandKind::GetSnapshot if code.is_none() || !retryable => {
                // get_snapshot did not complete: fall back to unsubscribe + subscribe.
                if let Some(gap_id) = planned.gap_id {
                    self.snapshot_gaps.remove(&gap_id);
                    self.actions.push_back(Action::GapEscalated {
                        gap_id,
                        repair: Repair::Resubscribe,
                    });
                }
                if self
                    .subs
                    .get(planned.sub)
                    .is_some_and(|s| s.state == SubState::Active)
                {
                    self.resubscribe(planned.sub, planned.gap_id, true);
                }
            }
            _ if retryable && planned.attempt < self.config.command_retries => {
                planned.attempt += 1;
                planned.not_before_us = now_us.saturating_add(retry_delay_us(planned.attempt));
                // Re-resolve the sid at send time.
                if planned.kind != CommandKind::Unsubscribe {
                    planned.sid = None;
                }
                self.queue.push_back(planned);
            }
            CommandKind::Subscribe if retryable => {
                if let Some(gap_id) = self.subs.get(planned.sub).and_then(|s| s.resubscribe_gap) {
                    self.actions.push_back(Action::GapEscalated {
                        gap_id,
                        repair: Repair::Reconnect,
                    });
                }
                self.reconnect(format!(
                    "subscribe to {} got no answer after {} attempts",
                    channel.map_or("?", Channel::as_str),
                    planned.attempt + 1
                ));
            }
            _ if retryable => {
                self.reconnect(format!(
                    "{:?} on {} got no answer after {} attempts",
                    planned.kind,
                    channel.map_or("?", Channel::as_str),
                    planned.attempt + 1
                ));
            }
            _ => {}
        }
    }

    fn handle_control(
        &mut self,
        now_us: i64,
        control: &kalshi_wire::Control,
        decoded: &Decoded<'_>,
    ) {
        let header = control.header;
        let id = header.id.map(core::num::NonZeroU64::get);
        let sid = header.sid.map(core::num::NonZeroU64::get);
        // A control frame with a seq consumes it on its subscription (`ok`, `unsubscribed`,
        // subscription-scoped `error`).
        if let Some(sid) = sid
            && header.seq.is_some()
            && let Some(index) = self.sub_of_sid(sid)
        {
            match self.subs[index].tracker.observe(header.seq) {
                SeqOutcome::Gap { expected, got } => {
                    self.on_gap(now_us, index, Some(expected), Some(got), None);
                    self.subs[index].last_frame_us = Some(now_us);
                }
                SeqOutcome::InOrder => self.subs[index].last_frame_us = Some(now_us),
                SeqOutcome::Stale { .. } | SeqOutcome::Unsequenced => {}
            }
        }
        let position = id.and_then(|id| self.pending.iter().position(|p| p.id == id));
        match control.kind {
            ControlKind::Subscribed => {
                let channel = control
                    .channel
                    .map(|c| decoded.aux.text(c))
                    .and_then(Channel::parse);
                if let (Some(position), Some(sid)) = (position, sid) {
                    let pending = self.pending.swap_remove(position);
                    let index = pending.planned.sub;
                    if channel.is_some_and(|c| Some(c) != self.subs.get(index).map(|s| s.channel)) {
                        self.actions.push_back(Action::ServerError {
                            code: 0,
                            message: format!("subscribed to an unexpected channel, sid {sid}"),
                        });
                    }
                    self.activate(now_us, index, sid, &pending.planned.markets, true);
                }
            }
            ControlKind::Ok => {
                if let Some(position) = position {
                    let pending = self.pending.swap_remove(position);
                    self.acknowledged(now_us, pending, sid, decoded, control);
                }
            }
            ControlKind::Unsubscribed => {
                if let Some(position) = position {
                    let pending = self.pending.swap_remove(position);
                    if let Some(sub) = self.subs.get_mut(pending.planned.sub)
                        && sub.state == SubState::Unsubscribing
                    {
                        sub.state = SubState::Idle;
                    }
                    self.reconcile();
                }
            }
            ControlKind::Error => {
                self.stats.errors += 1;
                let code = control.code.unwrap_or(0);
                let message = control
                    .message
                    .map(|m| decoded.aux.text(m).to_owned())
                    .unwrap_or_default();
                self.handle_error(now_us, position, sid, code, message);
            }
            ControlKind::SubscriptionList | ControlKind::Command => {}
        }
    }

    fn activate(
        &mut self,
        now_us: i64,
        index: usize,
        sid: u64,
        markets: &[MarketKey],
        fresh: bool,
    ) {
        let Some(sub) = self.subs.get_mut(index) else {
            return;
        };
        sub.state = SubState::Active;
        sub.sid = Some(sid);
        if fresh {
            sub.tracker = SeqTracker::new_subscription();
        }
        if let Some(gap_id) = sub.resubscribe_gap.take() {
            self.actions.push_back(Action::GapRepaired {
                gap_id,
                repair: Repair::Resubscribe,
                repaired_ts: now_us,
            });
        }
        self.confirm(now_us, index, markets);
        self.reconcile();
    }

    /// Markets confirmed on subscription `index`: close their part of an open trade window.
    fn confirm(&mut self, now_us: i64, index: usize, markets: &[MarketKey]) {
        let Some(sub) = self.subs.get_mut(index) else {
            return;
        };
        sub.confirmed.extend(markets.iter().cloned());
        if sub.channel == Channel::Trade && !self.new_market_from.is_empty() {
            let mut by_start: BTreeMap<i64, Vec<MarketKey>> = BTreeMap::new();
            for ticker in markets {
                if let Some(from_us) = self.new_market_from.remove(ticker) {
                    by_start.entry(from_us).or_default().push(ticker.clone());
                }
            }
            // A reconnect window covers these markets from its start; a market listed before
            // that start (assigned, then the connection dropped before its confirmation) still
            // needs its own window from the listing.
            let window = sub.backfill_from_us;
            for (from_us, tickers) in by_start {
                if window.is_none_or(|start| from_us < start) {
                    self.actions.push_back(Action::Backfill {
                        gap_id: None,
                        tickers,
                        from_us,
                        to_us: now_us,
                        cause: BackfillCause::NewMarket,
                    });
                }
            }
        }
        if let Some(from_us) = sub.backfill_from_us
            && !markets.is_empty()
        {
            self.actions.push_back(Action::Backfill {
                gap_id: None,
                tickers: markets.to_vec(),
                from_us,
                to_us: now_us,
                cause: sub.backfill_cause,
            });
            if self.desired.iter().all(|t| sub.confirmed.contains(t)) {
                sub.backfill_from_us = None;
            }
        }
        if let Some(gap_id) = self.reconnect_gap
            && self.is_fully_subscribed()
        {
            self.reconnect_gap = None;
            self.actions.push_back(Action::GapRepaired {
                gap_id,
                repair: Repair::Reconnect,
                repaired_ts: now_us,
            });
        }
        if self.connected && !self.repaired_by_reconnect.is_empty() && self.is_fully_subscribed() {
            for gap_id in core::mem::take(&mut self.repaired_by_reconnect) {
                self.actions.push_back(Action::GapRepaired {
                    gap_id,
                    repair: Repair::Reconnect,
                    repaired_ts: now_us,
                });
            }
        }
    }

    fn acknowledged(
        &mut self,
        now_us: i64,
        pending: Pending,
        sid: Option<u64>,
        decoded: &Decoded<'_>,
        control: &kalshi_wire::Control,
    ) {
        let index = pending.planned.sub;
        match pending.planned.kind {
            CommandKind::AddMarkets => self.confirm(now_us, index, &pending.planned.markets),
            CommandKind::DeleteMarkets => {
                if let Some(sub) = self.subs.get_mut(index) {
                    for ticker in &pending.planned.markets {
                        sub.confirmed.remove(ticker);
                    }
                }
            }
            CommandKind::Subscribe => {
                // A repeat subscribe merged into a subscription the server already had: adopt
                // its sid, joining its seq stream where it is now.
                if let Some(sid) = sid {
                    let listed: Vec<MarketKey> = decoded
                        .aux
                        .list(control.market_tickers)
                        .filter(|t| kalshi_wire::Ticker::new(t).is_some())
                        .map(market_key)
                        .collect();
                    if let Some(sub) = self.subs.get_mut(index) {
                        sub.tracker = SeqTracker::unanchored();
                        let _ = sub.tracker.observe(control.header.seq);
                    }
                    let markets = if listed.is_empty() {
                        pending.planned.markets
                    } else {
                        listed
                    };
                    self.activate(now_us, index, sid, &markets, false);
                }
            }
            CommandKind::GetSnapshot | CommandKind::Unsubscribe => {}
        }
        self.reconcile();
    }

    fn handle_error(
        &mut self,
        now_us: i64,
        position: Option<usize>,
        sid: Option<u64>,
        code: i64,
        message: String,
    ) {
        if code == 27 {
            self.stats.rate_limited += 1;
            self.limiter.drain(now_us);
        }
        // Errors 25 and 10 end a subscription: record the loss, subscribe again.
        if matches!(code, 10 | 25)
            && let Some(index) = sid.and_then(|sid| self.sub_of_sid(sid))
        {
            let expected = self.subs[index].tracker.last().map_or(1, |l| l + 1);
            self.on_gap(
                now_us,
                index,
                Some(expected),
                None,
                Some(format!("error {code}: {message}")),
            );
            return;
        }
        let Some(position) = position else {
            self.actions
                .push_back(Action::ServerError { code, message });
            return;
        };
        let pending = self.pending.swap_remove(position);
        let index = pending.planned.sub;
        match code {
            18 | 27 => self.fail(now_us, pending, Some(code)),
            7 if pending.planned.kind != CommandKind::Unsubscribe => {
                // The server no longer knows the sid: the subscription is gone.
                if self
                    .subs
                    .get(index)
                    .is_some_and(|s| s.state == SubState::Active)
                {
                    let expected = self.subs[index].tracker.last().map_or(1, |l| l + 1);
                    self.on_gap(
                        now_us,
                        index,
                        Some(expected),
                        None,
                        Some(format!("error 7: {message}")),
                    );
                }
            }
            _ if pending.planned.kind == CommandKind::Unsubscribe => {
                self.fail(now_us, pending, Some(code));
            }
            _ if pending.planned.kind == CommandKind::GetSnapshot => {
                self.fail(now_us, pending, Some(code));
            }
            _ => {
                // Parameter and permission errors: retrying cannot help. Say so loudly and keep
                // these markets out of this channel's reconciliation.
                let channel = self
                    .subs
                    .get(index)
                    .map_or(Channel::OrderbookDelta, |s| s.channel);
                if let Some(sub) = self.subs.get_mut(index) {
                    sub.rejected.extend(pending.planned.markets.iter().cloned());
                    if pending.planned.kind == CommandKind::Subscribe {
                        sub.state = if sub.channel.is_global() {
                            SubState::Failed
                        } else {
                            SubState::Idle
                        };
                    }
                }
                self.actions.push_back(Action::CommandRejected {
                    channel,
                    code,
                    message,
                    tickers: pending.planned.markets,
                });
                self.reconcile();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kalshi_wire::Decoder;

    fn manager() -> SubscriptionManager {
        let config = SubsConfig {
            channels: vec![Channel::OrderbookDelta],
            markets_per_command: 2,
            command_retries: 1,
            response_timeout_us: 1_000_000,
            ..SubsConfig::default()
        };
        SubscriptionManager::new(config, 0)
    }

    fn feed(manager: &mut SubscriptionManager, now: i64, frame: &str) -> Verdict {
        let mut decoder = Decoder::default();
        let mut bytes = frame.as_bytes().to_vec();
        let decoded = decoder.decode(&mut bytes).unwrap();
        manager.handle_frame(now, &decoded)
    }

    fn sent(manager: &mut SubscriptionManager, now: i64) -> Vec<String> {
        let mut out = Vec::new();
        let mut all = Vec::new();
        while manager.poll_transmit(now, &mut out).is_some() {
            all.push(String::from_utf8(out.clone()).unwrap());
        }
        all
    }

    fn actions(manager: &mut SubscriptionManager) -> Vec<Action> {
        core::iter::from_fn(|| manager.poll_action()).collect()
    }

    fn tickers(names: &[&str]) -> Vec<MarketKey> {
        names.iter().map(|n| market_key(n)).collect()
    }

    // The command sequence: one subscribe per channel with the first batch and an explicit
    // use_yes_price, add_markets batches after `subscribed`, control frames consuming seq,
    // delete_markets on removal, and frames from an unknown sid dropped.
    #[test]
    fn commands_and_control_frames() {
        let mut m = manager();
        assert!(m.add_markets(&tickers(&["A", "B", "C"]), None).is_empty());
        assert!(sent(&mut m, 0).is_empty(), "nothing before connected");
        m.connected(0, None);
        assert_eq!(
            sent(&mut m, 0),
            [
                r#"{"id":1,"cmd":"subscribe","params":{"channels":["orderbook_delta"],"market_tickers":["A","B"],"use_yes_price":false}}"#
            ]
        );
        assert_eq!(
            feed(
                &mut m,
                1,
                r#"{"type":"subscribed","id":1,"msg":{"channel":"orderbook_delta","sid":4}}"#
            ),
            Verdict::Control
        );
        assert_eq!(m.active_sid(Channel::OrderbookDelta), Some(4));
        assert_eq!(
            sent(&mut m, 1),
            [
                r#"{"id":2,"cmd":"update_subscription","params":{"sids":[4],"market_tickers":["C"],"action":"add_markets"}}"#
            ]
        );
        let snapshot = r#"{"type":"orderbook_snapshot","sid":4,"seq":1,"msg":{"market_ticker":"A","market_id":"x"}}"#;
        assert_eq!(
            feed(&mut m, 2, snapshot),
            Verdict::Deliver {
                channel: Channel::OrderbookDelta,
                use_yes_price: Some(false)
            }
        );
        assert_eq!(
            feed(&mut m, 2, snapshot),
            Verdict::Drop(DropReason::StaleSeq)
        );
        assert_eq!(
            feed(
                &mut m,
                2,
                r#"{"type":"ok","id":2,"sid":4,"seq":2,"msg":{"market_tickers":["A","B","C"]}}"#
            ),
            Verdict::Control
        );
        assert!(m.is_fully_subscribed());
        assert_eq!(
            feed(
                &mut m,
                2,
                r#"{"type":"orderbook_snapshot","sid":9,"seq":1,"msg":{"market_ticker":"A","market_id":"x"}}"#
            ),
            Verdict::Drop(DropReason::UnknownSid)
        );
        // seq 3 follows the ok's 2: no gap.
        feed(
            &mut m,
            3,
            r#"{"type":"orderbook_snapshot","sid":4,"seq":3,"msg":{"market_ticker":"C","market_id":"x"}}"#,
        );
        assert!(actions(&mut m).is_empty());
        m.remove_markets(&tickers(&["B"]));
        assert_eq!(
            sent(&mut m, 3),
            [
                r#"{"id":3,"cmd":"update_subscription","params":{"sids":[4],"market_tickers":["B"],"action":"delete_markets"}}"#
            ]
        );
        assert_eq!(m.stats().delivered, 2);
        assert_eq!(m.stats().dropped_unknown_sid, 1);
    }

    // A parameter error is given up loudly and not retried; a rate-limit error is retried after
    // a delay; a subscribe with no answer is retried, then a reconnect is asked for.
    #[test]
    fn error_codes_and_timeouts() {
        let mut m = manager();
        m.add_markets(&tickers(&["A", "B", "C"]), None);
        m.connected(0, None);
        assert_eq!(sent(&mut m, 0).len(), 1);
        feed(
            &mut m,
            1,
            r#"{"type":"error","id":1,"msg":{"code":11,"msg":"Invalid parameter"}}"#,
        );
        let rejected = actions(&mut m);
        assert!(
            matches!(&rejected[..], [Action::CommandRejected { code: 11, tickers, .. }] if tickers.len() == 2),
            "{rejected:?}"
        );
        // The rejected markets stay out; the next subscribe carries only C.
        let next = sent(&mut m, 1);
        assert_eq!(next.len(), 1);
        assert!(next[0].contains(r#""market_tickers":["C"]"#), "{next:?}");
        feed(
            &mut m,
            2,
            r#"{"type":"error","id":2,"msg":{"code":27,"msg":"Too many requests"}}"#,
        );
        assert!(sent(&mut m, 2).is_empty(), "retried only after the delay");
        assert_eq!(m.poll_timeout(2), Some(2_000_002));
        assert_eq!(sent(&mut m, 2_000_002).len(), 1);
        // No answer to the retry: retries are used up, so a reconnect is asked for.
        m.handle_timeout(3_000_002);
        let reconnect = actions(&mut m);
        assert!(
            matches!(&reconnect[..], [Action::Reconnect(_)]),
            "{reconnect:?}"
        );
        assert_eq!(m.stats().rate_limited, 1);
        assert_eq!(m.stats().command_timeouts, 1);
        // An error that belongs to nothing is reported for the log.
        feed(
            &mut m,
            4,
            r#"{"type":"error","msg":{"code":1,"msg":"Unable to process message"}}"#,
        );
        assert!(matches!(
            &actions(&mut m)[..],
            [Action::ServerError { code: 1, .. }]
        ));
    }

    // A connection dropped before its trade subscription was confirmed leaves its resume
    // window open; the next connection's later resume point must not replace it, or the trades
    // in between are never backfilled (seen as lost start-window trades under heavy load).
    #[test]
    fn unconfirmed_resume_window_survives_a_reconnect() {
        let config = SubsConfig {
            channels: vec![Channel::Trade],
            markets_per_command: 10,
            ..SubsConfig::default()
        };
        let mut m = SubscriptionManager::new(config, 0);
        m.add_markets(&tickers(&["A", "B"]), None);
        m.connected(5_000, Some(1_000));
        assert_eq!(sent(&mut m, 5_000).len(), 1);
        // Dropped before `subscribed`: no frame ever came, so the shard resumes from the drop.
        m.disconnected(9_000);
        assert!(
            actions(&mut m)
                .iter()
                .all(|a| !matches!(a, Action::Backfill { .. })),
            "nothing confirmed, nothing backfilled yet"
        );
        m.connected(12_000, Some(m.last_frame_us().unwrap_or(9_000)));
        assert_eq!(sent(&mut m, 12_000).len(), 1);
        feed(
            &mut m,
            13_000,
            r#"{"type":"subscribed","id":2,"msg":{"channel":"trade","sid":1}}"#,
        );
        feed(
            &mut m,
            13_000,
            r#"{"type":"ok","id":2,"sid":1,"seq":1,"msg":{"market_tickers":["A","B"]}}"#,
        );
        let backfills: Vec<(i64, usize)> = actions(&mut m)
            .iter()
            .filter_map(|a| match a {
                Action::Backfill {
                    from_us, tickers, ..
                } => Some((*from_us, tickers.len())),
                _ => None,
            })
            .collect();
        assert_eq!(backfills, [(1_000, 2)], "from the first resume point");
    }
}
