//! The control plane: one plain thread, off the hot path, doing all the REST work and the
//! bookkeeping the shard cores must not.
//!
//! * **Discovery**: `GET /markets` passes (cursor paging) at start and every
//!   `discovery.interval_s`, and again when a lifecycle subscription had a gap; lifecycle frames
//!   forwarded by the shard that carries the lifecycle channels update the same
//!   [`MarketRegistry`]. Its deltas become shard assignments (`Assign`/`Remove`, routed by
//!   `shard_for`) and `markets`/`events` rows.
//! * **Snapshot poller**: every market's REST order book once per `poller.interval_s`, spread
//!   evenly ([`SnapshotPoller`]); stored with `source = 'rest'`, and sent to the owning shard to
//!   compare with its live book (the shard owns the book, so the comparison happens there).
//! * **Trade backfill**: each `Backfill` window of a subscription manager becomes
//!   `GET /markets/trades?ticker=&min_ts=&max_ts=` pages ([`BackfillQueue`]), stored as `trades`
//!   rows with `source = 'rest'` (WebSocket trades have `source = 'ws'` and their sid/seq;
//!   dedup by `trade_id` happens downstream).
//! * **Gap ledger**: `sequence_gaps` is append-only on a gatherer, so each gap gets a row when
//!   it is detected (`repaired_ts` NULL) and a second row, with the same `detected_ts`,
//!   `channel`, `sid` and `expected_seq`, when its repair completes (`repaired_ts`, final
//!   `repair`, `backfilled_trades`). A gap is repaired when there is a row for it with a
//!   `repaired_ts`; both rows carry `gap <id>` in `note`.
//!
//! Every REST read takes a token from one [`RestBudget`] (Kalshi Basic: 20 reads/s) and a 429
//! pauses all reads with a doubling back-off. Rows go to the writer through the control
//! plane's own ring; when it is full they wait in a local backlog and REST work pauses, so
//! nothing is dropped.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use kalshi_gather::poller::BackfillDone;
use kalshi_gather::seq::{GapEvent, Repair};
use kalshi_gather::{
    Action, BackfillCause, BackfillQueue, MarketDelta, MarketInfo, MarketRegistry, RegistryError,
    RestBudget, SnapshotPoller, shard_for,
};
use kalshi_gather::{MarketKey, market_key};
use kalshi_net::{RestClient, RestResponse};
use kalshi_wire::{Decoder, Level, Record, Ticker};
use kalshi_writer::{
    EventRow, MarketRow, Producer, PushError, Row, SequenceGapRow, Source, TradeRow,
};

use crate::setup::{StartError, now_us};
use crate::shared::{ControlMsg, ShardCmd, Shared};

/// Rows waiting for the writer beyond which REST work pauses.
const BACKLOG_PAUSE: usize = 100_000;
/// Delay before retrying a failed discovery page.
const DISCOVERY_RETRY_US: i64 = 2_000_000;
/// Delay between migration attempts while the database was unreachable at start.
const MIGRATE_RETRY_US: i64 = 5_000_000;

/// An admin request for an immediate REST snapshot.
pub(crate) struct AdminRequest {
    pub(crate) ticker: String,
    /// `Ok(json)` or `Err((status, message))`.
    pub(crate) reply: Sender<Result<Vec<u8>, (u16, String)>>,
}

/// What the control plane thread needs.
pub(crate) struct ControlSetup {
    pub(crate) shared: Arc<Shared>,
    pub(crate) shards: Vec<Sender<ShardCmd>>,
    pub(crate) messages: Receiver<ControlMsg>,
    pub(crate) admin: Receiver<AdminRequest>,
    pub(crate) producer: Producer,
    pub(crate) rest: RestClient,
    pub(crate) core: Option<usize>,
    /// The database URL when the start-up migration could not reach the database.
    pub(crate) migration_pending: Option<String>,
    /// Markets the previous run subscribed (backfilled from the resume point when they are not
    /// discovered again).
    pub(crate) previous_markets: Vec<MarketKey>,
    pub(crate) stop: Arc<AtomicBool>,
}

struct GapState {
    event: GapEvent,
    awaiting_backfill: bool,
    subscriptions_done: bool,
    trades: u64,
    complete: bool,
}

enum FetchError {
    RateLimited,
    Failed(String),
}

struct ControlPlane {
    shared: Arc<Shared>,
    shards: Vec<Sender<ShardCmd>>,
    shard_outbox: Vec<VecDeque<ShardCmd>>,
    rest: RestClient,
    registry: MarketRegistry,
    poller: SnapshotPoller,
    backfill: BackfillQueue,
    budget: RestBudget,
    producer: Producer,
    backlog: VecDeque<Row>,
    decoder: Decoder,
    gaps: BTreeMap<u64, GapState>,
    /// Connection id → its open connection-level gap (its reconnect backfill belongs to it).
    connection_gaps: BTreeMap<u64, u64>,
    /// Lifecycle gaps, repaired by the next discovery pass that starts after them.
    rediscover_gaps: Vec<(u64, i64)>,
    pass_started_us: i64,
    prev_pass_started_us: Option<i64>,
    first_pass_done: bool,
    /// A rediscovery was asked for while a pass was running: run another right after it.
    rediscover_after: bool,
    next_pass_us: i64,
    discovery_retry_us: i64,
    migration_pending: Option<String>,
    previous_markets: Vec<MarketKey>,
    /// Markets to snapshot over REST before the regular schedule (closed while down).
    priority_snapshots: VecDeque<MarketKey>,
    migrate_retry_us: i64,
    gatherer_id: i16,
}

/// Starts the control plane thread.
///
/// # Errors
/// The thread could not be spawned.
pub(crate) fn spawn(setup: ControlSetup) -> Result<std::thread::JoinHandle<()>, StartError> {
    std::thread::Builder::new()
        .name("control".to_owned())
        .spawn(move || {
            if let Some(core) = setup.core
                && !core_affinity::set_for_current(core_affinity::CoreId { id: core })
            {
                log::warn!("control plane: could not pin to core {core}; running unpinned");
            }
            let stop = Arc::clone(&setup.stop);
            let messages = setup.messages.clone();
            let admin = setup.admin.clone();
            let mut plane = ControlPlane::new(setup);
            plane.run(&stop, &messages, &admin);
        })
        .map_err(|e| StartError::Runtime(format!("spawning the control plane thread: {e}")))
}

fn market_row(market: &MarketInfo, gatherer_id: i16) -> MarketRow {
    MarketRow {
        ticker: market.ticker.to_string(),
        event_ticker: market.event_ticker.to_string(),
        series_ticker: market.series_ticker.as_deref().map(str::to_owned),
        status: market.status.to_owned(),
        title: market.title.clone(),
        open_ts: market.open_ts,
        close_ts: market.close_ts,
        metadata: market.mve.then(|| "{\"mve\":true}".to_owned()),
        updated_ts: market.updated_ts,
        gatherer_id,
        ..MarketRow::default()
    }
}

fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn writer_repair(repair: Repair) -> kalshi_writer::Repair {
    match repair {
        Repair::GetSnapshot => kalshi_writer::Repair::GetSnapshot,
        Repair::Resubscribe => kalshi_writer::Repair::Resubscribe,
        Repair::Reconnect => kalshi_writer::Repair::Reconnect,
        Repair::RestBackfill => kalshi_writer::Repair::RestBackfill,
        Repair::None => kalshi_writer::Repair::None,
    }
}

fn levels_json(out: &mut String, levels: &[Level]) {
    out.push('[');
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!("[{},{}]", level.price_e6, level.count_e2));
    }
    out.push(']');
}

impl ControlPlane {
    fn new(setup: ControlSetup) -> Self {
        let config = &setup.shared.config;
        let n = config.engine.shard_cores.len().max(1);
        let ms = |v: u64| i64::try_from(v.saturating_mul(1_000)).unwrap_or(i64::MAX);
        Self {
            shard_outbox: (0..n).map(|_| VecDeque::new()).collect(),
            shards: setup.shards,
            rest: setup.rest,
            registry: MarketRegistry::new(
                n,
                config.discovery.page_limit,
                config.discovery.include_mve,
            ),
            poller: SnapshotPoller::new(ms(config.poller.interval_s.saturating_mul(1_000))),
            backfill: BackfillQueue::new(
                ms(config.poller.backfill_margin_s.saturating_mul(1_000)),
                5,
            ),
            budget: RestBudget::new(
                config.poller.reads_per_second,
                config.poller.read_burst,
                ms(config.poller.rate_limited_backoff_ms),
                ms(config.poller.rate_limited_backoff_cap_ms),
            ),
            producer: setup.producer,
            backlog: VecDeque::new(),
            decoder: Decoder::default(),
            gaps: BTreeMap::new(),
            connection_gaps: BTreeMap::new(),
            rediscover_gaps: Vec::new(),
            pass_started_us: 0,
            prev_pass_started_us: None,
            first_pass_done: false,
            rediscover_after: false,
            next_pass_us: i64::MIN,
            discovery_retry_us: i64::MIN,
            migration_pending: setup.migration_pending,
            previous_markets: setup.previous_markets,
            priority_snapshots: VecDeque::new(),
            migrate_retry_us: now_us().saturating_add(MIGRATE_RETRY_US),
            gatherer_id: config.database.gatherer_id,
            shared: setup.shared,
        }
    }

    fn run(
        &mut self,
        stop: &AtomicBool,
        messages: &Receiver<ControlMsg>,
        admin: &Receiver<AdminRequest>,
    ) {
        while !stop.load(Ordering::Acquire) {
            let now = now_us();
            for _ in 0..10_000 {
                match messages.try_recv() {
                    Ok(msg) => self.handle_message(now, msg),
                    Err(_) => break,
                }
            }
            while let Ok(request) = admin.try_recv() {
                self.handle_admin(&request);
            }
            self.flush_backlog();
            self.flush_shards();
            self.retry_migration(now);
            let mut busy = false;
            if self.backlog.len() < BACKLOG_PAUSE {
                busy |= self.step_discovery(now);
                busy |= self.step_backfill(now);
                busy |= self.step_poller(now);
            }
            self.shared.metrics.markets.set(self.registry.len() as i64);
            if !busy {
                match messages.recv_timeout(Duration::from_millis(10)) {
                    Ok(msg) => self.handle_message(now_us(), msg),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                }
            }
        }
        // Shards have stopped: store what they sent last, then hand every row to the writer.
        let now = now_us();
        while let Ok(msg) = messages.try_recv() {
            self.handle_message(now, msg);
        }
        let deadline = std::time::Instant::now()
            + Duration::from_millis(self.shared.config.limits.shutdown_timeout_ms);
        while !self.backlog.is_empty() && std::time::Instant::now() < deadline {
            self.flush_backlog();
            std::thread::sleep(Duration::from_millis(2));
        }
        if !self.backlog.is_empty() {
            log::error!(
                "control plane: {} rows could not be handed to the writer before shutdown",
                self.backlog.len()
            );
        }
        log::info!("control plane: stopped");
    }

    // ---- writer and shard channels -------------------------------------------------------

    fn push(&mut self, row: Row) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(row);
            return;
        }
        match self.producer.try_push(row) {
            Ok(()) => {}
            Err(PushError::Full(row)) => self.backlog.push_back(row),
            Err(PushError::Closed(row)) => {
                self.backlog.push_back(row);
            }
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(row) = self.backlog.pop_front() {
            match self.producer.try_push(row) {
                Ok(()) => {}
                Err(e) => {
                    self.backlog.push_front(e.into_row());
                    return;
                }
            }
        }
    }

    fn send_shard(&mut self, shard: usize, cmd: ShardCmd) {
        let Some(outbox) = self.shard_outbox.get_mut(shard) else {
            return;
        };
        if outbox.is_empty() {
            match self.shards[shard].try_send(cmd) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => {}
                Err(TrySendError::Full(cmd)) => outbox.push_back(cmd),
            }
        } else {
            outbox.push_back(cmd);
        }
    }

    fn flush_shards(&mut self) {
        for (shard, outbox) in self.shard_outbox.iter_mut().enumerate() {
            while let Some(cmd) = outbox.pop_front() {
                match self.shards[shard].try_send(cmd) {
                    Ok(()) => {}
                    Err(TrySendError::Full(cmd)) => {
                        outbox.push_front(cmd);
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => {
                        outbox.clear();
                        break;
                    }
                }
            }
        }
    }

    // ---- REST ------------------------------------------------------------------------------

    fn get(&self, endpoint: &str, path: &str, signed: bool) -> Result<RestResponse, String> {
        let headers = if signed {
            let signed_path = self.rest.signed_path(path);
            match self.shared.key.headers(
                &self.shared.key_id,
                (now_us() / 1000).max(0) as u64,
                "GET",
                &signed_path,
            ) {
                Ok(h) => h.to_vec(),
                Err(e) => return Err(format!("signing: {e}")),
            }
        } else {
            Vec::new()
        };
        let result = self.rest.get(path, &headers);
        let status = match &result {
            Ok(r) => r.status.to_string(),
            Err(_) => "error".to_owned(),
        };
        self.shared
            .metrics
            .rest_requests
            .with_label_values(&[endpoint, &status])
            .inc();
        result.map_err(|e| e.to_string())
    }

    fn retry_migration(&mut self, now: i64) {
        let Some(url) = &self.migration_pending else {
            return;
        };
        if now < self.migrate_retry_us {
            return;
        }
        self.migrate_retry_us = now.saturating_add(MIGRATE_RETRY_US);
        let timeout = Duration::from_millis(self.shared.config.limits.db_connect_timeout_ms);
        match crate::migrate(url, timeout) {
            Ok(()) => {
                log::info!("database reachable again: migrations applied");
                self.migration_pending = None;
            }
            Err(e) => log::warn!("database migration still pending: {e}"),
        }
    }

    // ---- discovery -------------------------------------------------------------------------

    fn request_rediscovery(&mut self, now: i64) {
        if self.registry.discovery_running() {
            self.rediscover_after = true;
        } else {
            self.next_pass_us = self.next_pass_us.min(now);
        }
    }

    fn step_discovery(&mut self, now: i64) -> bool {
        if !self.registry.discovery_running() {
            if now < self.next_pass_us {
                return false;
            }
            self.registry.begin_discovery();
            self.pass_started_us = now;
        }
        if now < self.discovery_retry_us {
            return false;
        }
        let Some(path) = self.registry.discovery_request() else {
            return false;
        };
        if !self.budget.try_take(now) {
            return false;
        }
        match self.get("markets", &path, false) {
            Ok(response) if response.status == 200 => {
                self.budget.succeeded();
                match self.registry.handle_discovery_page(now, &response.body) {
                    Ok(()) => {}
                    Err(RegistryError::CursorLoop(cursor)) => {
                        log::error!("discovery: cursor {cursor:?} repeated; pass aborted");
                        self.next_pass_us = now.saturating_add(DISCOVERY_RETRY_US);
                    }
                    Err(e) => {
                        log::warn!("discovery: {path}: {e}; retrying");
                        self.discovery_retry_us = now.saturating_add(DISCOVERY_RETRY_US);
                    }
                }
            }
            Ok(response) if response.status == 429 => self.budget.rate_limited(now),
            Ok(response) => {
                log::warn!(
                    "discovery: {path} answered {}: {}",
                    response.status,
                    response.body_excerpt()
                );
                self.discovery_retry_us = now.saturating_add(DISCOVERY_RETRY_US);
            }
            Err(e) => {
                log::warn!("discovery: {e}");
                self.discovery_retry_us = now.saturating_add(DISCOVERY_RETRY_US);
            }
        }
        // Markets of a later pass were listed after the previous pass began.
        let listed_at = if self.first_pass_done {
            self.prev_pass_started_us
        } else {
            None
        };
        self.apply_deltas(now, listed_at);
        if !self.registry.discovery_running() && self.next_pass_us <= now {
            self.pass_complete(now);
        }
        true
    }

    fn pass_complete(&mut self, now: i64) {
        let interval = i64::try_from(self.shared.config.discovery.interval_s)
            .unwrap_or(86_400)
            .saturating_mul(1_000_000);
        self.next_pass_us = if core::mem::take(&mut self.rediscover_after) {
            now
        } else {
            now.saturating_add(interval)
        };
        self.prev_pass_started_us = Some(self.pass_started_us);
        self.shared.metrics.discovery_passes.inc();
        if !self.first_pass_done {
            self.first_pass_done = true;
            self.shared.discovery_done.store(true, Ordering::Release);
            log::info!("discovery: {} markets subscribed", self.registry.len());
            let previous = core::mem::take(&mut self.previous_markets);
            if let Some(resume) = self.shared.resume_from_us {
                let gone: Vec<MarketKey> = previous
                    .into_iter()
                    .filter(|t| self.registry.get(t).is_none())
                    .collect();
                if !gone.is_empty() {
                    log::info!(
                        "{} markets of the previous run closed while it was down; backfilling their trades",
                        gone.len()
                    );
                    self.backfill.push(None, &gone, resume, now);
                    // Their books changed while nobody watched: store each final book once.
                    self.priority_snapshots.extend(gone);
                }
            }
        }
        let started = self.pass_started_us;
        let mut repaired = Vec::new();
        self.rediscover_gaps.retain(|&(gap, detected)| {
            if detected <= started {
                repaired.push(gap);
                false
            } else {
                true
            }
        });
        for gap in repaired {
            if let Some(state) = self.gaps.get_mut(&gap) {
                state.subscriptions_done = true;
            }
            self.finish_gap(gap, now);
        }
    }

    fn apply_deltas(&mut self, now: i64, listed_at: Option<i64>) {
        let n = self.shards.len();
        let mut adds: Vec<Vec<MarketKey>> = vec![Vec::new(); n];
        let mut removes: Vec<Vec<MarketKey>> = vec![Vec::new(); n];
        let mut rows = Vec::new();
        while let Some(delta) = self.registry.poll_delta() {
            match delta {
                MarketDelta::Added { shard, market } => {
                    if let Some(list) = adds.get_mut(shard) {
                        list.push(market.ticker.clone());
                    }
                    if self.shared.config.poller.enabled {
                        self.poller.add(now, market.ticker.clone());
                    }
                    rows.push(Row::Market(Box::new(market_row(&market, self.gatherer_id))));
                }
                MarketDelta::Updated { market } => {
                    rows.push(Row::Market(Box::new(market_row(&market, self.gatherer_id))));
                }
                MarketDelta::Removed { shard, market } => {
                    self.poller.remove(&market.ticker);
                    rows.push(Row::Market(Box::new(market_row(&market, self.gatherer_id))));
                    if let Some(list) = removes.get_mut(shard) {
                        list.push(market.ticker);
                    }
                }
                MarketDelta::Event(event) => {
                    rows.push(Row::Event(Box::new(EventRow {
                        event_ticker: event.event_ticker,
                        series_ticker: event.series_ticker,
                        title: event.title,
                        sub_title: event.sub_title,
                        collateral_return_type: event.collateral_return_type,
                        mutually_exclusive: None,
                        strike_date: event.strike_date,
                        strike_period: event.strike_period,
                        updated_ts: event.updated_ts,
                        gatherer_id: self.gatherer_id,
                    })));
                }
            }
        }
        for row in rows {
            self.push(row);
        }
        let resume = if self.first_pass_done {
            None
        } else {
            self.shared.resume_from_us
        };
        for (shard, tickers) in removes.into_iter().enumerate() {
            if !tickers.is_empty() {
                self.send_shard(shard, ShardCmd::Remove { tickers });
            }
        }
        for (shard, tickers) in adds.into_iter().enumerate() {
            if !tickers.is_empty() {
                self.send_shard(
                    shard,
                    ShardCmd::Assign {
                        tickers,
                        listed_at_us: listed_at,
                        resume_from_us: resume,
                    },
                );
            }
        }
    }

    // ---- messages from shards --------------------------------------------------------------

    fn handle_message(&mut self, now: i64, msg: ControlMsg) {
        match msg {
            ControlMsg::Action { conn, action } => self.handle_action(now, conn, action),
            ControlMsg::Lifecycle {
                mut raw,
                received_us,
            } => {
                // A market first seen in a `created` event was listed then; one first seen in
                // any other event (its `created` was missed, e.g. while the lifecycle
                // connection was down) was listed at the latest when the previous discovery
                // pass began, or it would have been found by it.
                let mut listed_at = received_us;
                match self.decoder.decode(&mut raw) {
                    Ok(decoded) => match &decoded.record {
                        Record::MarketLifecycle(record) => {
                            if decoded.aux.text(record.event_type) != "created" {
                                listed_at = self
                                    .prev_pass_started_us
                                    .map_or(received_us, |p| p.min(received_us));
                            }
                            self.registry
                                .apply_market_lifecycle(received_us, record, decoded.aux);
                        }
                        Record::EventLifecycle(record) => {
                            self.registry
                                .apply_event_lifecycle(received_us, record, decoded.aux);
                        }
                        _ => {}
                    },
                    Err(e) => log::warn!("control plane: lifecycle frame not decodable: {e}"),
                }
                self.apply_deltas(now, Some(listed_at));
            }
            ControlMsg::LifecycleResumed => {
                log::info!("lifecycle connection back: rediscovering markets");
                self.request_rediscovery(now);
            }
        }
    }

    fn handle_action(&mut self, now: i64, conn: u64, action: Action) {
        match action {
            Action::Gap(event) => {
                self.shared.metrics.gaps.inc();
                log::warn!(
                    "gap {}: {} sid {:?} expected {:?} got {:?} ({} markets); repair {}",
                    event.gap_id,
                    event.channel,
                    event.sid,
                    event.expected_seq,
                    event.received_seq,
                    event.tickers.len(),
                    event.repair.as_str()
                );
                self.write_gap(&event, None, None, true);
                if event.channel == "connection" {
                    self.connection_gaps.insert(conn, event.gap_id);
                }
                if event.repair == Repair::None {
                    self.rediscover_gaps.push((event.gap_id, event.detected_ts));
                }
                let subscriptions_done = event.repair == Repair::RestBackfill;
                self.gaps.insert(
                    event.gap_id,
                    GapState {
                        event,
                        awaiting_backfill: false,
                        subscriptions_done,
                        trades: 0,
                        complete: true,
                    },
                );
            }
            Action::GapEscalated { gap_id, repair } => {
                if let Some(state) = self.gaps.get_mut(&gap_id) {
                    log::warn!("gap {gap_id}: repair escalated to {}", repair.as_str());
                    state.event.repair = repair;
                }
            }
            Action::GapRepaired {
                gap_id,
                repair,
                repaired_ts,
            } => {
                self.connection_gaps.retain(|_, g| *g != gap_id);
                if let Some(state) = self.gaps.get_mut(&gap_id) {
                    state.event.repair = repair;
                    state.subscriptions_done = true;
                    if !state.awaiting_backfill {
                        self.finish_gap(gap_id, repaired_ts);
                    }
                }
            }
            Action::Backfill {
                gap_id,
                tickers,
                from_us,
                to_us,
                cause,
            } => {
                let gap = gap_id.or_else(|| {
                    (cause == BackfillCause::Reconnect)
                        .then(|| self.connection_gaps.get(&conn).copied())
                        .flatten()
                });
                let gap = gap.filter(|g| self.gaps.contains_key(g));
                if let Some(state) = gap.and_then(|g| self.gaps.get_mut(&g)) {
                    state.awaiting_backfill = true;
                }
                self.backfill.push(gap, &tickers, from_us, to_us);
            }
            Action::Rediscover => self.request_rediscovery(now),
            Action::Reconnect(_) | Action::CommandRejected { .. } | Action::ServerError { .. } => {}
        }
    }

    fn backfill_done(&mut self, done: BackfillDone) {
        let Some(state) = self.gaps.get_mut(&done.gap_id) else {
            return;
        };
        state.awaiting_backfill = false;
        state.trades += done.trades;
        state.complete &= done.complete;
        if state.subscriptions_done {
            self.finish_gap(done.gap_id, done.done_ts);
        }
    }

    fn finish_gap(&mut self, gap_id: u64, repaired_ts: i64) {
        let Some(state) = self.gaps.remove(&gap_id) else {
            return;
        };
        let backfilled = (state.event.repair == Repair::RestBackfill || state.trades > 0)
            .then(|| i32::try_from(state.trades).unwrap_or(i32::MAX));
        if state.complete {
            self.shared.metrics.gaps_repaired.inc();
            self.write_gap(&state.event, Some(repaired_ts), backfilled, false);
        } else {
            log::error!("gap {gap_id}: trade backfill gave up; the gap stays unrepaired");
            let mut event = state.event;
            event.note = Some(format!(
                "{}backfill incomplete",
                event.note.map(|n| n + "; ").unwrap_or_default()
            ));
            self.write_gap(&event, None, backfilled, false);
        }
    }

    fn write_gap(
        &mut self,
        event: &GapEvent,
        repaired_ts: Option<i64>,
        backfilled: Option<i32>,
        detection: bool,
    ) {
        let what = if detection { "detected" } else { "repair" };
        let note = match &event.note {
            Some(note) => format!("gap {} {what}; {note}", event.gap_id),
            None => format!("gap {} {what}", event.gap_id),
        };
        let id = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        self.push(Row::SequenceGap(Box::new(SequenceGapRow {
            detected_ts: event.detected_ts,
            gatherer_id: event.gatherer_id,
            channel: event.channel.clone(),
            sid: id(event.sid),
            expected_seq: id(event.expected_seq),
            received_seq: id(event.received_seq),
            tickers: event.tickers.clone(),
            repair: writer_repair(event.repair),
            repaired_ts,
            backfilled_trades: backfilled,
            note: Some(note),
        })));
    }

    // ---- backfill ---------------------------------------------------------------------------

    fn step_backfill(&mut self, now: i64) -> bool {
        let Some(request) = self.backfill.next_request(now, &mut self.budget) else {
            return false;
        };
        let path = request.path();
        match self.get("trades", &path, false) {
            Ok(response) if response.status == 200 => {
                self.budget.succeeded();
                let mut body = response.body;
                let received = now_us();
                let outcome = match self.decoder.decode_rest_trades(&mut body) {
                    Ok(page) => {
                        let rows: Vec<Row> = page
                            .trades
                            .iter()
                            .map(|t| {
                                Row::Trade(TradeRow::from_wire(
                                    t,
                                    self.gatherer_id,
                                    received,
                                    Source::Rest,
                                ))
                            })
                            .collect();
                        Ok((rows, page.cursor.map(str::to_owned)))
                    }
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok((rows, cursor)) => {
                        let n = rows.len() as u64;
                        self.shared.metrics.backfill_trades.inc_by(n);
                        for row in rows {
                            self.push(row);
                        }
                        self.backfill
                            .page_done(now_us(), &request, n, cursor.as_deref());
                    }
                    Err(e) => {
                        log::warn!("backfill: {path}: undecodable page: {e}");
                        self.backfill.failed(now, &request);
                    }
                }
            }
            Ok(response) if response.status == 429 => {
                self.backfill.rate_limited(now, &request, &mut self.budget);
            }
            Ok(response) => {
                log::warn!(
                    "backfill: {path} answered {}: {}",
                    response.status,
                    response.body_excerpt()
                );
                self.backfill.failed(now, &request);
            }
            Err(e) => {
                log::warn!("backfill: {e}");
                self.backfill.failed(now, &request);
            }
        }
        while let Some(done) = self.backfill.poll_done() {
            self.backfill_done(done);
        }
        true
    }

    // ---- snapshots --------------------------------------------------------------------------

    fn step_poller(&mut self, now: i64) -> bool {
        if let Some(ticker) = self.priority_snapshots.front().cloned()
            && self.budget.try_take(now)
        {
            match self.fetch_snapshot(&ticker) {
                Err(FetchError::RateLimited) => self.budget.rate_limited(now),
                Err(FetchError::Failed(e)) => {
                    log::warn!("snapshot of closed market {ticker}: {e}");
                    self.priority_snapshots.pop_front();
                }
                Ok(_) => {
                    self.priority_snapshots.pop_front();
                }
            }
            return true;
        }
        let Some(ticker) = self.poller.next_due(now, &mut self.budget) else {
            return false;
        };
        match self.fetch_snapshot(&ticker) {
            Ok(_) => {
                self.budget.succeeded();
                self.poller.completed(now_us(), &ticker);
            }
            Err(FetchError::RateLimited) => {
                self.poller.rate_limited(now, &ticker, &mut self.budget);
            }
            Err(FetchError::Failed(e)) => {
                log::warn!("poller: {ticker}: {e}");
                self.poller.completed(now_us(), &ticker);
            }
        }
        true
    }

    /// Fetches, stores and compares one REST snapshot; returns it as JSON.
    fn fetch_snapshot(&mut self, ticker: &str) -> Result<Vec<u8>, FetchError> {
        let path = format!("/markets/{}/orderbook", url_encode(ticker));
        let requested_us = now_us();
        let response = self
            .get("orderbook", &path, true)
            .map_err(FetchError::Failed)?;
        if response.status == 429 {
            return Err(FetchError::RateLimited);
        }
        if response.status != 200 {
            return Err(FetchError::Failed(format!(
                "HTTP {}: {}",
                response.status,
                response.body_excerpt()
            )));
        }
        let received = now_us();
        let mut body = response.body;
        let decoded = self
            .decoder
            .decode_rest_orderbook(&mut body, ticker)
            .map_err(|e| FetchError::Failed(format!("undecodable order book: {e}")))?;
        let mut row = self.producer.snapshot_row();
        row.fill_from_wire(&decoded, self.gatherer_id, received, Source::Rest)
            .map_err(|e| FetchError::Failed(e.to_string()))?;
        row.sid = None;
        row.seq = None;
        // The exchange took this snapshot somewhere between the request and the response: it
        // holds every change received before the request, and maybe some received while it
        // was in flight. `snapshot_ts` is the request time, so that "snapshot_ts after a
        // delta's received_ts" means the snapshot includes that delta.
        row.snapshot_ts = requested_us;
        let mut json = format!(
            "{{\"ticker\":\"{}\",\"snapshot_ts\":{},\"source\":\"rest\",\"gatherer_id\":{},\"yes\":",
            ticker, received, self.gatherer_id
        );
        levels_json(&mut json, &row.yes);
        json.push_str(",\"no\":");
        levels_json(&mut json, &row.no);
        json.push_str("}\n");
        let shard = shard_for(ticker, self.shards.len());
        let compare = ShardCmd::Compare {
            ticker: market_key(ticker),
            yes: row.yes.clone(),
            no: row.no.clone(),
            requested_us,
        };
        self.send_shard(shard, compare);
        self.push(Row::Snapshot(row));
        self.shared.metrics.rest_snapshots.inc();
        Ok(json.into_bytes())
    }

    fn handle_admin(&mut self, request: &AdminRequest) {
        let answer = match Ticker::new(request.ticker.trim()) {
            Some(ticker) if !request.ticker.trim().is_empty() => {
                match self.fetch_snapshot(ticker.as_str()) {
                    Ok(json) => Ok(json),
                    Err(FetchError::RateLimited) => {
                        self.budget.rate_limited(now_us());
                        Err((
                            503,
                            "the exchange answered 429 (rate limited); retry later".to_owned(),
                        ))
                    }
                    Err(FetchError::Failed(e)) => Err((502, e)),
                }
            }
            _ => Err((
                400,
                format!("ticker {:?} is not a valid ticker", request.ticker),
            )),
        };
        let _ = request.reply.try_send(answer);
    }
}
