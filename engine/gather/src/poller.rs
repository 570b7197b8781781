//! REST read scheduling: the snapshot poller and trade backfill, under one read budget.
//!
//! * [`RestBudget`]: the token bucket for REST reads (Kalshi Basic: 20 reads/s) plus the
//!   shared back-off after HTTP 429 (Kalshi sends no `Retry-After`, so the wait doubles per
//!   consecutive 429 up to a cap and resets on the next success).
//! * [`SnapshotPoller`]: every market's `GET /markets/{ticker}/orderbook` once per interval
//!   (default 15 min). Each market has a fixed phase within the interval, derived from its
//!   ticker's hash, so polls are spread evenly over the interval and a market keeps its slot
//!   across restarts and as other markets come and go. A 429 puts the market back at the head
//!   of the line: it loses its request, never its turn.
//! * [`BackfillQueue`]: `GET /markets/trades?ticker=&min_ts=&max_ts=` windows after gaps and
//!   reconnects, with cursor paging until done. Windows of the same market that overlap are
//!   merged before they are fetched.
//!
//! Everything is sans IO: the caller performs the request and reports the outcome.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::key::MarketKey;

use crate::rate::RateLimiter;
use crate::shard::{fnv1a_64, mix64};

/// The REST read budget shared by the poller, backfill and discovery.
#[derive(Clone, Debug)]
pub struct RestBudget {
    limiter: RateLimiter,
    backoff_base_us: i64,
    backoff_cap_us: i64,
    paused_until_us: i64,
    consecutive_429: u32,
    /// 429 answers seen.
    pub rate_limited_total: u64,
}

impl RestBudget {
    /// `reads_per_second` with `burst`; after a 429 wait `backoff_base_us`, doubling up to
    /// `backoff_cap_us`.
    #[must_use]
    pub fn new(
        reads_per_second: u32,
        burst: u32,
        backoff_base_us: i64,
        backoff_cap_us: i64,
    ) -> Self {
        Self {
            limiter: RateLimiter::new(reads_per_second, burst),
            backoff_base_us: backoff_base_us.max(1),
            backoff_cap_us: backoff_cap_us.max(backoff_base_us.max(1)),
            paused_until_us: i64::MIN,
            consecutive_429: 0,
            rate_limited_total: 0,
        }
    }

    /// Takes one read at `now_us` if allowed.
    pub fn try_take(&mut self, now_us: i64) -> bool {
        now_us >= self.paused_until_us && self.limiter.try_take(now_us)
    }

    /// When the next read may happen.
    #[must_use]
    pub fn next_available_us(&self, now_us: i64) -> Option<i64> {
        self.limiter
            .next_available_us(now_us.max(self.paused_until_us))
    }

    /// The exchange answered 429: pause all reads.
    pub fn rate_limited(&mut self, now_us: i64) {
        self.rate_limited_total += 1;
        let shift = self.consecutive_429.min(20);
        self.consecutive_429 = self.consecutive_429.saturating_add(1);
        let wait = self
            .backoff_base_us
            .saturating_mul(1_i64 << shift)
            .min(self.backoff_cap_us);
        self.paused_until_us = now_us.saturating_add(wait);
        self.limiter.drain(now_us);
    }

    /// A read succeeded: the 429 ladder starts over.
    pub fn succeeded(&mut self) {
        self.consecutive_429 = 0;
    }
}

/// The snapshot poller's schedule. See the module documentation.
#[derive(Clone, Debug)]
pub struct SnapshotPoller {
    interval_us: i64,
    /// (due time, ticker), earliest first.
    due: BTreeSet<(i64, MarketKey)>,
    /// ticker → its due time (to find and move entries).
    markets: BTreeMap<MarketKey, i64>,
    /// Polls handed out and not yet reported: ticker → the due time they had.
    in_flight: BTreeMap<MarketKey, i64>,
}

impl SnapshotPoller {
    /// An empty schedule with one pass per `interval_us` (> 0).
    #[must_use]
    pub fn new(interval_us: i64) -> Self {
        Self {
            interval_us: interval_us.max(1),
            due: BTreeSet::new(),
            markets: BTreeMap::new(),
            in_flight: BTreeMap::new(),
        }
    }

    /// Number of markets scheduled.
    #[must_use]
    pub fn len(&self) -> usize {
        self.markets.len() + self.in_flight.len()
    }

    /// Whether nothing is scheduled.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The market's phase within the interval, µs.
    fn phase(&self, ticker: &str) -> i64 {
        (mix64(fnv1a_64(ticker.as_bytes())) % self.interval_us as u64) as i64
    }

    /// The first time ≥ `now_us` at the market's phase.
    fn next_slot(&self, ticker: &str, now_us: i64) -> i64 {
        let phase = self.phase(ticker);
        let offset = (phase - now_us).rem_euclid(self.interval_us);
        now_us.saturating_add(offset)
    }

    /// Schedules a market (no-op when present).
    pub fn add(&mut self, now_us: i64, ticker: MarketKey) {
        if self.markets.contains_key(&ticker) || self.in_flight.contains_key(&ticker) {
            return;
        }
        let due = self.next_slot(&ticker, now_us);
        self.markets.insert(ticker.clone(), due);
        self.due.insert((due, ticker));
    }

    /// Unschedules a market.
    pub fn remove(&mut self, ticker: &str) {
        if let Some((key, due)) = self.markets.remove_entry(ticker) {
            self.due.remove(&(due, key));
        }
        self.in_flight.remove(ticker);
    }

    /// The next market to poll at `now_us`, if one is due and the budget allows a read. The
    /// caller fetches its book and reports with [`SnapshotPoller::completed`] or
    /// [`SnapshotPoller::rate_limited`].
    pub fn next_due(&mut self, now_us: i64, budget: &mut RestBudget) -> Option<MarketKey> {
        let due = self.due.first().map(|(due, _)| *due)?;
        if due > now_us || !budget.try_take(now_us) {
            return None;
        }
        let (due, ticker) = self.due.pop_first()?;
        self.markets.remove(&ticker);
        self.in_flight.insert(ticker.clone(), due);
        Some(ticker)
    }

    /// When the next poll is due (not considering the budget).
    #[must_use]
    pub fn next_due_us(&self) -> Option<i64> {
        self.due.first().map(|(due, _)| *due)
    }

    /// The poll of `ticker` finished (stored, or failed for a reason other than 429): its next
    /// turn is one interval after this one, or its next slot after `now_us` when the schedule
    /// fell more than an interval behind.
    pub fn completed(&mut self, now_us: i64, ticker: &str) {
        let Some((ticker, due)) = self.in_flight.remove_entry(ticker) else {
            return;
        };
        let mut next = due.saturating_add(self.interval_us);
        if next <= now_us.saturating_sub(self.interval_us) {
            next = self.next_slot(&ticker, now_us);
        }
        self.markets.insert(ticker.clone(), next);
        self.due.insert((next, ticker));
    }

    /// The poll of `ticker` got a 429: the market keeps its original turn (so it is first in
    /// line when reads resume) and the budget pauses.
    pub fn rate_limited(&mut self, now_us: i64, ticker: &str, budget: &mut RestBudget) {
        budget.rate_limited(now_us);
        if let Some((ticker, due)) = self.in_flight.remove_entry(ticker) {
            self.markets.insert(ticker.clone(), due);
            self.due.insert((due, ticker));
        }
    }
}

/// One page request of a trade backfill window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackfillRequest {
    /// The market.
    pub ticker: MarketKey,
    /// `min_ts`, Unix seconds (window start minus the margin, rounded down).
    pub min_ts: i64,
    /// `max_ts`, Unix seconds (window end plus the margin, rounded up).
    pub max_ts: i64,
    /// The cursor of the next page; `None` for the first page.
    pub cursor: Option<String>,
    /// The gaps this window repairs.
    pub gap_ids: Vec<u64>,
    /// Trades returned so far in this window.
    pub trades: u64,
    /// Failed attempts of the current page.
    pub attempts: u32,
}

fn push_encoded(out: &mut String, text: &str) {
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
}

impl BackfillRequest {
    /// Path and query relative to the REST base URL.
    #[must_use]
    pub fn path(&self) -> String {
        let mut path = String::from("/markets/trades?ticker=");
        push_encoded(&mut path, &self.ticker);
        path.push_str(&format!(
            "&min_ts={}&max_ts={}&limit=1000",
            self.min_ts, self.max_ts
        ));
        if let Some(cursor) = &self.cursor {
            path.push_str("&cursor=");
            push_encoded(&mut path, cursor);
        }
        path
    }
}

/// A finished backfill of one gap (every window of it done).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackfillDone {
    /// The gap.
    pub gap_id: u64,
    /// Trades fetched over all its windows (duplicates of captured trades included; dedup
    /// by `trade_id` happens downstream).
    pub trades: u64,
    /// False when a window was given up after repeated failures.
    pub complete: bool,
    /// When, µs.
    pub done_ts: i64,
}

/// Trade backfill work. See the module documentation.
#[derive(Clone, Debug)]
pub struct BackfillQueue {
    margin_us: i64,
    attempts_max: u32,
    queue: VecDeque<BackfillRequest>,
    in_flight: Vec<BackfillRequest>,
    /// gap → (windows outstanding, trades so far, all complete).
    gaps: BTreeMap<u64, (u32, u64, bool)>,
    done: VecDeque<BackfillDone>,
}

impl BackfillQueue {
    /// A queue widening windows by `margin_us` on both sides and giving a page up after
    /// `attempts_max` failures.
    #[must_use]
    pub fn new(margin_us: i64, attempts_max: u32) -> Self {
        Self {
            margin_us: margin_us.max(0),
            attempts_max: attempts_max.max(1),
            queue: VecDeque::new(),
            in_flight: Vec::new(),
            gaps: BTreeMap::new(),
            done: VecDeque::new(),
        }
    }

    /// Windows waiting or in flight.
    #[must_use]
    pub fn len(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// Whether there is no work.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a window `[from_us, to_us]` for each market. A window overlapping a queued,
    /// not-yet-started window of the same market is merged into it.
    pub fn push(&mut self, gap_id: Option<u64>, tickers: &[MarketKey], from_us: i64, to_us: i64) {
        let (from_us, to_us) = (from_us.min(to_us), from_us.max(to_us));
        let min_ts = from_us.saturating_sub(self.margin_us).div_euclid(1_000_000);
        let max_ts = to_us
            .saturating_add(self.margin_us)
            .saturating_add(999_999)
            .div_euclid(1_000_000);
        for ticker in tickers {
            let merged = self.queue.iter_mut().find(|r| {
                r.ticker == *ticker
                    && r.cursor.is_none()
                    && r.min_ts <= max_ts
                    && min_ts <= r.max_ts
            });
            match merged {
                Some(request) => {
                    request.min_ts = request.min_ts.min(min_ts);
                    request.max_ts = request.max_ts.max(max_ts);
                    if let Some(gap) = gap_id
                        && !request.gap_ids.contains(&gap)
                    {
                        request.gap_ids.push(gap);
                        self.gaps.entry(gap).or_insert((0, 0, true)).0 += 1;
                    }
                }
                None => {
                    if let Some(gap) = gap_id {
                        self.gaps.entry(gap).or_insert((0, 0, true)).0 += 1;
                    }
                    self.queue.push_back(BackfillRequest {
                        ticker: ticker.clone(),
                        min_ts,
                        max_ts,
                        cursor: None,
                        gap_ids: gap_id.into_iter().collect(),
                        trades: 0,
                        attempts: 0,
                    });
                }
            }
        }
    }

    /// The next page to fetch, if the budget allows; report it with
    /// [`BackfillQueue::page_done`], [`BackfillQueue::rate_limited`] or
    /// [`BackfillQueue::failed`].
    pub fn next_request(
        &mut self,
        now_us: i64,
        budget: &mut RestBudget,
    ) -> Option<BackfillRequest> {
        if self.queue.is_empty() || !budget.try_take(now_us) {
            return None;
        }
        let request = self.queue.pop_front()?;
        self.in_flight.push(request.clone());
        Some(request)
    }

    fn take_in_flight(&mut self, request: &BackfillRequest) -> Option<BackfillRequest> {
        let position = self.in_flight.iter().position(|r| {
            r.ticker == request.ticker && r.min_ts == request.min_ts && r.cursor == request.cursor
        })?;
        Some(self.in_flight.swap_remove(position))
    }

    fn finish(&mut self, now_us: i64, request: &BackfillRequest, complete: bool) {
        for gap in &request.gap_ids {
            if let Some(entry) = self.gaps.get_mut(gap) {
                entry.0 = entry.0.saturating_sub(1);
                entry.1 += request.trades;
                entry.2 &= complete;
                if entry.0 == 0 {
                    let (_, trades, complete) = *entry;
                    self.gaps.remove(gap);
                    self.done.push_back(BackfillDone {
                        gap_id: *gap,
                        trades,
                        complete,
                        done_ts: now_us,
                    });
                }
            }
        }
    }

    /// A page came back with `trades` trades and the next cursor (`None` on the last page).
    /// A cursor equal to the one just used ends the window (a loop, not progress).
    pub fn page_done(
        &mut self,
        now_us: i64,
        request: &BackfillRequest,
        trades: u64,
        next_cursor: Option<&str>,
    ) {
        let Some(mut request) = self.take_in_flight(request) else {
            return;
        };
        request.trades += trades;
        request.attempts = 0;
        match next_cursor.filter(|c| !c.is_empty()) {
            Some(cursor) if request.cursor.as_deref() != Some(cursor) => {
                request.cursor = Some(cursor.to_owned());
                self.queue.push_front(request);
            }
            Some(_) => self.finish(now_us, &request, false),
            None => self.finish(now_us, &request, true),
        }
    }

    /// The page got a 429: pause the budget and retry the same page first.
    pub fn rate_limited(
        &mut self,
        now_us: i64,
        request: &BackfillRequest,
        budget: &mut RestBudget,
    ) {
        budget.rate_limited(now_us);
        if let Some(request) = self.take_in_flight(request) {
            self.queue.push_front(request);
        }
    }

    /// The page failed otherwise: retry it later, or give the window up after `attempts_max`.
    pub fn failed(&mut self, now_us: i64, request: &BackfillRequest) {
        let Some(mut request) = self.take_in_flight(request) else {
            return;
        };
        request.attempts += 1;
        if request.attempts >= self.attempts_max {
            self.finish(now_us, &request, false);
        } else {
            self.queue.push_back(request);
        }
    }

    /// The next finished gap backfill (for the ledger's `repaired_ts`/`backfilled_trades`).
    pub fn poll_done(&mut self) -> Option<BackfillDone> {
        self.done.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticker(i: usize) -> MarketKey {
        crate::key::market_key(&format!("KXT-{i:04}"))
    }

    // 1,000 markets over a 100 s interval under a 20/s budget, stepped every 10 ms for three
    // intervals: every market is polled once per interval at a fixed phase, polls are spread
    // evenly (no second has more than the budget allows, and each tenth of the interval gets
    // about a tenth of the polls), and a 429 costs the market its request, not its turn.
    #[test]
    fn spread_evenly_and_429_keeps_the_turn() {
        let interval = 100_000_000;
        let mut poller = SnapshotPoller::new(interval);
        let mut budget = RestBudget::new(20, 20, 1_000_000, 8_000_000);
        let t0 = 1_000_000_000_000;
        for i in 0..1_000 {
            poller.add(t0, ticker(i));
        }
        assert_eq!(poller.len(), 1_000);
        let mut polls: BTreeMap<MarketKey, Vec<i64>> = BTreeMap::new();
        let mut per_second: BTreeMap<i64, u32> = BTreeMap::new();
        let mut limited: Option<MarketKey> = None;
        let mut first_after_pause = None;
        let mut now = t0;
        while now < t0 + 3 * interval {
            while let Some(t) = poller.next_due(now, &mut budget) {
                if now >= t0 + interval + interval / 2 && limited.is_none() {
                    poller.rate_limited(now, &t, &mut budget);
                    limited = Some(t);
                    continue;
                }
                if limited.is_some() && first_after_pause.is_none() {
                    first_after_pause = Some(t.clone());
                }
                budget.succeeded();
                poller.completed(now, &t);
                polls.entry(t).or_default().push(now);
                *per_second.entry((now - t0) / 1_000_000).or_default() += 1;
            }
            now += 10_000;
        }
        assert_eq!(
            first_after_pause, limited,
            "the rate-limited market goes first"
        );
        assert_eq!(budget.rate_limited_total, 1);
        for (t, times) in &polls {
            assert_eq!(times.len(), 3, "{t}");
            for pair in times.windows(2) {
                let spacing = pair[1] - pair[0];
                // One interval apart, give or take the 1 s pause after the 429 and queueing.
                assert!((spacing - interval).abs() <= 1_500_000, "{t}: {spacing}");
            }
        }
        assert!(per_second.values().all(|&n| n <= 20 + 20));
        for tenth in 0..10 {
            let n: u32 = per_second
                .iter()
                .filter(|(s, _)| (**s % 100) / 10 == tenth)
                .map(|(_, n)| *n)
                .sum();
            assert!((240..=360).contains(&n), "tenth {tenth}: {n}");
        }
        poller.remove(&ticker(0));
        assert_eq!(poller.len(), 999);
    }

    // Windows of one market that overlap are merged; paging follows cursors; a gap is done
    // when all its windows are; a repeated cursor ends a window as incomplete; failures retry
    // then give up.
    #[test]
    fn backfill_windows() {
        let mut queue = BackfillQueue::new(5_000_000, 2);
        let mut budget = RestBudget::new(100, 100, 1_000_000, 2_000_000);
        let a = crate::key::market_key("KXA-1.5");
        let b = crate::key::market_key("KX B");
        queue.push(Some(1), &[a.clone(), b.clone()], 100_000_000, 110_000_000);
        queue.push(Some(2), std::slice::from_ref(&a), 108_000_000, 130_500_000);
        assert_eq!(queue.len(), 2);
        let first = queue.next_request(0, &mut budget).unwrap();
        assert_eq!(
            first.path(),
            "/markets/trades?ticker=KXA-1.5&min_ts=95&max_ts=136&limit=1000"
        );
        assert_eq!(first.gap_ids, vec![1, 2]);
        queue.page_done(0, &first, 1_000, Some("c/1"));
        let second = queue.next_request(0, &mut budget).unwrap();
        assert_eq!(
            second.path(),
            "/markets/trades?ticker=KXA-1.5&min_ts=95&max_ts=136&limit=1000&cursor=c%2F1"
        );
        queue.rate_limited(0, &second, &mut budget);
        assert!(queue.next_request(500_000, &mut budget).is_none());
        let second = queue.next_request(1_000_000, &mut budget).unwrap();
        assert_eq!(second.cursor.as_deref(), Some("c/1"));
        queue.page_done(1, &second, 7, None);
        // Gap 2 had only market a: done, with both pages' trades.
        assert_eq!(
            queue.poll_done(),
            Some(BackfillDone {
                gap_id: 2,
                trades: 1_007,
                complete: true,
                done_ts: 1
            })
        );
        assert_eq!(queue.poll_done(), None);
        let third = queue.next_request(1_000_000, &mut budget).unwrap();
        assert_eq!(third.ticker, b);
        assert!(third.path().starts_with("/markets/trades?ticker=KX%20B&"));
        queue.failed(2, &third);
        let third = queue.next_request(1_000_000, &mut budget).unwrap();
        queue.page_done(3, &third, 3, Some("same"));
        let fourth = queue.next_request(1_000_000, &mut budget).unwrap();
        queue.page_done(4, &fourth, 2, Some("same"));
        assert_eq!(
            queue.poll_done(),
            Some(BackfillDone {
                gap_id: 1,
                trades: 1_012,
                complete: false,
                done_ts: 4
            })
        );
        assert!(queue.is_empty());
        // Give up after the attempts.
        queue.push(Some(9), std::slice::from_ref(&a), 0, 1);
        let r = queue.next_request(2_000_000, &mut budget).unwrap();
        queue.failed(5, &r);
        let r = queue.next_request(2_000_000, &mut budget).unwrap();
        queue.failed(6, &r);
        assert_eq!(queue.poll_done().map(|d| d.complete), Some(false));
    }
}
