//! A shard core: one pinned glommio executor owning its markets' WebSocket connections,
//! subscription managers and order books.
//!
//! ## Tasks
//! * The **housekeeping task** (`shard_main`) wakes every [`TICK`]: it applies the control
//!   plane's market assignments (a bounded channel polled on the timer, not per message),
//!   forwards queued messages to the control plane, and publishes the counters every
//!   [`PUBLISH_EVERY`].
//! * One **connection task** per WebSocket (`run_conn`): connect with signed headers, then loop
//!   { send due commands; receive one frame into a reused scratch buffer; decode it in place;
//!   classify it with the `SubscriptionManager`; apply it to the market's book; convert it to a
//!   writer row and push it into this shard's ring }. A full ring is backpressure: the task
//!   stops reading the socket and retries the push until there is room. Reconnects use a
//!   capped, jittered backoff; a 401 stops the process (exit 78).
//!
//! State is shared between the tasks of one executor with `Rc<RefCell<…>>`; borrows never span
//! an await, and nothing is shared with other cores.
//!
//! ## Per-message cost
//! A frame costs one decode (in place), one `handle_frame` (a short scan and a seq compare), one
//! book lookup in a `BTreeMap` keyed by the inline ticker, and one ring push. Counters are plain
//! integers; no allocation happens except for rare rows (lifecycle frames are copied for the
//! control plane) and the first snapshot of a market (its book).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use glommio::timer::Timer;
use glommio::{LocalExecutorBuilder, Placement};
use kalshi_gather::MarketKey;
use kalshi_gather::book::ONE_DOLLAR_E6;
use kalshi_gather::{
    Action, Backoff, Book, Comparison, FailureKind, RetryDecision, SubsConfig, SubscriptionManager,
    Verdict, auth_failure_message,
};
use kalshi_net::{ConnectError, WsConnection, WsEvent};
use kalshi_wire::{Decoder, DecoderConfig, Record, Side};
use kalshi_writer::{DeltaRow, Producer, PushError, Row, Source, TickerRow, TradeRow};

use crate::metrics::ConnCounters;
use crate::setup::{StartError, now_us};
use crate::shared::{ControlMsg, ShardCmd, Shared, WS_SIGNED_PATH};

/// Housekeeping period of a shard (assignment polling, outbox, stop flag).
pub(crate) const TICK: Duration = Duration::from_millis(20);
/// How often a shard publishes its counters to Prometheus.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(500);
/// A connection task wakes at least this often when no frame arrives (timeouts, stop flag).
const CONN_TICK: Duration = Duration::from_millis(50);
/// Control-plane messages a shard keeps while the control channel is full.
const OUTBOX_MAX: usize = 1 << 20;

/// What a shard thread needs.
pub(crate) struct ShardSetup {
    pub(crate) index: usize,
    pub(crate) core: Option<usize>,
    pub(crate) commands: Receiver<ShardCmd>,
    pub(crate) control: Sender<ControlMsg>,
    pub(crate) producer: Producer,
    pub(crate) shared: Arc<Shared>,
    /// This shard also runs the connection of the global lifecycle channels.
    pub(crate) lifecycle: bool,
}

/// Starts a shard executor thread.
///
/// # Errors
/// The executor could not be created (placement, io_uring setup).
pub(crate) fn spawn(setup: ShardSetup) -> Result<glommio::ExecutorJoinHandle<()>, StartError> {
    let placement = match setup.core {
        Some(core) => Placement::Fixed(core),
        None => Placement::Unbound,
    };
    let index = setup.index;
    LocalExecutorBuilder::new(placement)
        .name(&format!("shard-{index}"))
        // Sockets need no registered buffers; keep the locked memory small.
        .io_memory(1 << 20)
        .spawn(move || async move { shard_main(setup).await })
        .map_err(|e| {
            StartError::Runtime(format!(
                "starting shard {index} (glommio executor): {e}; if this mentions memlock, \
                 raise LimitMEMLOCK"
            ))
        })
}

/// The frame buffer capacity a connection keeps between frames (larger frames grow it for the
/// moment; typical frames are well under 4 KiB).
const SCRATCH_KEPT: usize = 64 << 10;

/// One connection's state, shared by its task and the housekeeping task.
struct Conn {
    id: u64,
    lifecycle: bool,
    manager: SubscriptionManager,
    /// Book and the receive time of its last change.
    books: BTreeMap<MarketKey, (Book, i64)>,
    counters: ConnCounters,
    published: ConnCounters,
    open: bool,
    healthy: bool,
    last_frame_us: i64,
    /// The resume point of the first connection attempt.
    initial_resume_us: Option<i64>,
    /// Start of the window whose trades this connection has not seen (while disconnected, or
    /// connected but not yet fully subscribed after a resume); `None` when fully caught up.
    window_from_us: Option<i64>,
    /// Markets assigned while running (new listings), with their listing time, until their
    /// trade subscription is confirmed. If the connection drops first, their trades since the
    /// listing are backfilled at once (the subscription manager only does it on confirmation,
    /// which may be long after, or never if they close meanwhile).
    listed: BTreeMap<MarketKey, i64>,
}

impl Conn {
    fn invalidate_books(&mut self) {
        for (book, _) in self.books.values_mut() {
            book.invalidate();
        }
    }
}

/// Per-shard context of the executor's tasks.
struct ShardCtx {
    index: usize,
    shared: Arc<Shared>,
    producer: Producer,
    control: Sender<ControlMsg>,
    outbox: RefCell<VecDeque<ControlMsg>>,
    conns: RefCell<Vec<Rc<RefCell<Conn>>>>,
    next_local: Cell<u64>,
    tasks: Cell<usize>,
    market_subs: SubsConfig,
    lifecycle_subs: SubsConfig,
    /// Decode errors logged so far (the first few, then one in 10,000).
    parse_logged: Cell<u64>,
}

impl ShardCtx {
    fn send_control(&self, msg: ControlMsg) {
        let mut outbox = self.outbox.borrow_mut();
        if outbox.is_empty() {
            match self.control.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Full(msg)) => outbox.push_back(msg),
                Err(TrySendError::Disconnected(_)) => return,
            }
        } else {
            outbox.push_back(msg);
        }
        if outbox.len() > OUTBOX_MAX {
            log::error!(
                "shard {}: {} control messages waiting; the control plane is not keeping up",
                self.index,
                outbox.len()
            );
        }
    }

    fn flush_outbox(&self) {
        let mut outbox = self.outbox.borrow_mut();
        while let Some(msg) = outbox.pop_front() {
            match self.control.try_send(msg) {
                Ok(()) => {}
                Err(TrySendError::Full(msg)) => {
                    outbox.push_front(msg);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    outbox.clear();
                    return;
                }
            }
        }
    }

    fn new_conn(&self, lifecycle: bool, initial_resume_us: Option<i64>) -> Rc<RefCell<Conn>> {
        let local = self.next_local.get();
        self.next_local.set(local + 1);
        // Unique within the process; gap ids get 32 bits per connection.
        let id = ((self.index as u64) << 20) | (local & 0xF_FFFF);
        let config = if lifecycle {
            self.lifecycle_subs.clone()
        } else {
            self.market_subs.clone()
        };
        let conn = Rc::new(RefCell::new(Conn {
            id,
            lifecycle,
            manager: SubscriptionManager::new(config, id << 32),
            books: BTreeMap::new(),
            counters: ConnCounters::default(),
            published: ConnCounters::default(),
            open: false,
            healthy: false,
            last_frame_us: 0,
            initial_resume_us,
            window_from_us: initial_resume_us,
            listed: BTreeMap::new(),
        }));
        self.conns.borrow_mut().push(Rc::clone(&conn));
        self.shared.metrics.connections_total.inc();
        self.shared
            .connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        conn
    }
}

fn spawn_conn(ctx: &Rc<ShardCtx>, conn: Rc<RefCell<Conn>>) {
    let ctx = Rc::clone(ctx);
    ctx.tasks.set(ctx.tasks.get() + 1);
    glommio::spawn_local(async move {
        run_conn(&ctx, &conn).await;
        ctx.tasks.set(ctx.tasks.get().saturating_sub(1));
    })
    .detach();
}

async fn shard_main(setup: ShardSetup) {
    let shared = setup.shared;
    let market_subs = shared.config.subs_config(false);
    let mut lifecycle_subs = shared.config.subs_config(true);
    lifecycle_subs.channels.clear();
    let ctx = Rc::new(ShardCtx {
        index: setup.index,
        shared: Arc::clone(&shared),
        producer: setup.producer,
        control: setup.control,
        outbox: RefCell::new(VecDeque::new()),
        conns: RefCell::new(Vec::new()),
        next_local: Cell::new(0),
        tasks: Cell::new(0),
        market_subs,
        lifecycle_subs,
        parse_logged: Cell::new(0),
    });
    if setup.lifecycle && !ctx.lifecycle_subs.lifecycle_channels.is_empty() {
        let conn = ctx.new_conn(true, None);
        spawn_conn(&ctx, conn);
    }
    let mut published = (0_i64, 0_i64);
    let mut last_publish = Instant::now();
    while !shared.stopping() {
        for _ in 0..256 {
            match setup.commands.try_recv() {
                Ok(cmd) => apply_command(&ctx, cmd),
                Err(_) => break,
            }
        }
        ctx.flush_outbox();
        if last_publish.elapsed() >= PUBLISH_EVERY {
            last_publish = Instant::now();
            publish(&ctx, &mut published);
        }
        glommio::timer::sleep(TICK).await;
    }
    // Stop: the connection tasks see the flag within CONN_TICK, push what they hold and close.
    let deadline = Instant::now() + Duration::from_millis(shared.config.limits.shutdown_timeout_ms);
    while ctx.tasks.get() > 0 && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    ctx.flush_outbox();
    publish(&ctx, &mut published);
    log::info!("shard {}: stopped", ctx.index);
}

fn publish(ctx: &ShardCtx, published: &mut (i64, i64)) {
    let metrics = &ctx.shared.metrics;
    let (mut open, mut healthy, mut last, mut markets) = (0_i64, 0_i64, 0_i64, 0_i64);
    for conn in ctx.conns.borrow().iter() {
        let mut c = conn.borrow_mut();
        if !c.lifecycle {
            markets += c.manager.markets().len() as i64;
        }
        let Conn {
            counters,
            published: p,
            ..
        } = &mut *c;
        counters.publish(p, metrics);
        open += i64::from(c.open);
        healthy += i64::from(c.healthy);
        last = last.max(c.last_frame_us);
    }
    metrics.ws_connected.add(open - published.0);
    metrics.connections_healthy.add(healthy - published.1);
    ctx.shared
        .connections_healthy
        .fetch_add(healthy - published.1, std::sync::atomic::Ordering::Relaxed);
    *published = (open, healthy);
    metrics
        .shard_markets
        .with_label_values(&[&ctx.index.to_string()])
        .set(markets);
    ctx.shared
        .last_frame_us
        .fetch_max(last, std::sync::atomic::Ordering::Relaxed);
}

fn apply_command(ctx: &Rc<ShardCtx>, cmd: ShardCmd) {
    match cmd {
        ShardCmd::Assign {
            tickers,
            listed_at_us,
            resume_from_us,
        } => {
            let mut rest = tickers;
            // The first discovery pass after a restart (`resume_from_us` set) may assign its
            // markets in several commands. A new connection's resume window covers the markets
            // it starts with; one added to an existing connection, whose window may be closed
            // already, is backfilled from the resume point like a newly listed market, or its
            // trades between the resume point and its subscription would be lost.
            let listed_on_existing = match (listed_at_us, resume_from_us) {
                (Some(listed), Some(resume)) => Some(listed.min(resume)),
                (listed, resume) => listed.or(resume),
            };
            for conn in ctx.conns.borrow().iter() {
                if rest.is_empty() {
                    break;
                }
                let mut c = conn.borrow_mut();
                if c.lifecycle || c.manager.free_slots() == 0 {
                    continue;
                }
                let overflow = c.manager.add_markets(&rest, listed_on_existing);
                note_listed(ctx, &mut c, &rest, &overflow, listed_on_existing);
                rest = overflow;
            }
            while !rest.is_empty() {
                let conn = ctx.new_conn(false, resume_from_us);
                let overflow = {
                    let mut c = conn.borrow_mut();
                    let overflow = c.manager.add_markets(&rest, listed_at_us);
                    note_listed(ctx, &mut c, &rest, &overflow, listed_at_us);
                    overflow
                };
                if overflow.len() == rest.len() {
                    log::error!("shard {}: a new connection took no markets", ctx.index);
                    break;
                }
                rest = overflow;
                spawn_conn(ctx, conn);
            }
        }
        ShardCmd::Remove { tickers } => {
            for conn in ctx.conns.borrow().iter() {
                let mut c = conn.borrow_mut();
                if c.lifecycle {
                    continue;
                }
                // A market leaving while this connection has an open window (down, or not yet
                // resubscribed) would lose that window's trades: backfill it up to now.
                if let Some(from_us) = c.window_from_us {
                    let assigned: BTreeSet<&MarketKey> = c.manager.markets().collect();
                    let confirmed: BTreeSet<&MarketKey> =
                        c.manager.confirmed(kalshi_gather::Channel::Trade).collect();
                    let unseen: Vec<MarketKey> = tickers
                        .iter()
                        .filter(|t| assigned.contains(t) && (!c.open || !confirmed.contains(t)))
                        .cloned()
                        .collect();
                    if !unseen.is_empty() {
                        ctx.send_control(ControlMsg::Action {
                            conn: c.id,
                            action: Action::Backfill {
                                gap_id: None,
                                tickers: unseen,
                                from_us,
                                to_us: now_us(),
                                cause: kalshi_gather::BackfillCause::Reconnect,
                            },
                        });
                    }
                }
                for ticker in &tickers {
                    c.books.remove(ticker);
                    c.listed.remove(ticker);
                }
                c.manager.remove_markets(&tickers);
            }
        }
        ShardCmd::Compare {
            ticker,
            yes,
            no,
            requested_us,
        } => compare(ctx, &ticker, &yes, &no, requested_us),
    }
}

fn note_listed(
    ctx: &ShardCtx,
    c: &mut Conn,
    offered: &[MarketKey],
    overflow: &[MarketKey],
    listed_at_us: Option<i64>,
) {
    let Some(at) = listed_at_us else {
        return;
    };
    let overflow: BTreeSet<&MarketKey> = overflow.iter().collect();
    let taken: Vec<MarketKey> = offered
        .iter()
        .filter(|t| !overflow.contains(t))
        .cloned()
        .collect();
    for ticker in &taken {
        c.listed.entry(ticker.clone()).or_insert(at);
    }
    // Assigned to a connection that is down: nothing will be confirmed until it is back, so
    // fetch the window since the listing now (the reconnect window covers what follows).
    if !c.open && !taken.is_empty() {
        ctx.send_control(ControlMsg::Action {
            conn: c.id,
            action: Action::Backfill {
                gap_id: None,
                tickers: taken,
                from_us: at,
                to_us: now_us(),
                cause: kalshi_gather::BackfillCause::NewMarket,
            },
        });
    }
}

/// Forgets listing times of markets now confirmed on the trade subscription.
fn prune_listed(c: &mut Conn) {
    if c.listed.is_empty() {
        return;
    }
    let confirmed: Vec<MarketKey> = c
        .manager
        .confirmed(kalshi_gather::Channel::Trade)
        .filter(|t| c.listed.contains_key(*t))
        .cloned()
        .collect();
    for ticker in confirmed {
        c.listed.remove(&ticker);
    }
}

/// The connection dropped: markets listed while running and not yet confirmed on the trade
/// subscription get their window from the listing backfilled now.
fn backfill_unconfirmed_listings(ctx: &ShardCtx, c: &mut Conn, now: i64) {
    prune_listed(c);
    let mut by_start: BTreeMap<i64, Vec<MarketKey>> = BTreeMap::new();
    for (ticker, at) in &c.listed {
        by_start.entry(*at).or_default().push(ticker.clone());
    }
    for (from_us, tickers) in by_start {
        ctx.send_control(ControlMsg::Action {
            conn: c.id,
            action: Action::Backfill {
                gap_id: None,
                tickers,
                from_us,
                to_us: now,
                cause: kalshi_gather::BackfillCause::NewMarket,
            },
        });
    }
}

fn compare(
    ctx: &ShardCtx,
    ticker: &str,
    yes: &[kalshi_wire::Level],
    no: &[kalshi_wire::Level],
    requested_us: i64,
) {
    let metrics = &ctx.shared.metrics;
    let use_yes_price = ctx.market_subs.use_yes_price;
    for conn in ctx.conns.borrow().iter() {
        let c = conn.borrow();
        let Some((book, changed_us)) = c.books.get(ticker) else {
            continue;
        };
        if *changed_us >= requested_us {
            metrics
                .book_rest_compared
                .with_label_values(&["skipped"])
                .inc();
            return;
        }
        match book.compare(yes, no, use_yes_price) {
            Comparison::Equal => {
                metrics
                    .book_rest_compared
                    .with_label_values(&["equal"])
                    .inc();
            }
            Comparison::NotLive => {
                metrics
                    .book_rest_compared
                    .with_label_values(&["skipped"])
                    .inc();
            }
            Comparison::Differ(differences) => {
                metrics
                    .book_rest_compared
                    .with_label_values(&["differ"])
                    .inc();
                metrics.book_rest_mismatch.inc();
                log::warn!(
                    "book of {ticker} differs from its REST snapshot at {} levels (first: {:?})",
                    differences.len(),
                    differences.first()
                );
            }
        }
        return;
    }
}

/// How a session ended.
enum End {
    Stop,
    Failed(ConnectError),
    Silent,
    Reconnect(String),
}

fn failure_kind(error: &ConnectError) -> FailureKind {
    match error {
        ConnectError::Auth { .. } => FailureKind::Auth401,
        ConnectError::RateLimited { .. } => FailureKind::RateLimited429,
        ConnectError::Protocol(_) => FailureKind::Protocol,
        ConnectError::Http { status, .. } => kalshi_gather::backoff::classify_http_status(*status),
        _ => FailureKind::Transport,
    }
}

/// Sleeps until `until_us` (wall clock), waking every 100 ms to honour the stop flag.
async fn sleep_until(shared: &Shared, until_us: i64) {
    loop {
        if shared.stopping() {
            return;
        }
        let left = until_us.saturating_sub(now_us());
        if left <= 0 {
            return;
        }
        glommio::timer::sleep(Duration::from_micros(left.min(100_000) as u64)).await;
    }
}

async fn run_conn(ctx: &Rc<ShardCtx>, conn: &Rc<RefCell<Conn>>) {
    let shared = &ctx.shared;
    let (id, lifecycle, mut resume) = {
        let c = conn.borrow();
        (c.id, c.lifecycle, c.initial_resume_us)
    };
    let seed = id ^ (now_us() as u64).rotate_left(17);
    let mut backoff = match Backoff::new(shared.config.backoff_config(), seed) {
        Ok(backoff) => backoff,
        Err(e) => {
            shared.fail(StartError::Config(format!("reconnect: {e}")));
            return;
        }
    };
    let frame_bytes_max = shared.config.limits.frame_bytes_max;
    let mut decoder = Decoder::new(DecoderConfig { frame_bytes_max });
    let mut scratch: Vec<u8> = Vec::with_capacity(SCRATCH_KEPT);
    let mut raw: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::with_capacity(4096);
    let mut failures = 0_u64;
    let mut first = true;
    while !shared.stopping() {
        let now = now_us();
        let headers = match shared.key.headers(
            &shared.key_id,
            (now / 1000).max(0) as u64,
            "GET",
            WS_SIGNED_PATH,
        ) {
            Ok(h) => h,
            Err(e) => {
                shared.fail(StartError::Config(format!("signing the handshake: {e}")));
                return;
            }
        };
        let mut ws = match WsConnection::connect(&shared.ws_url, &headers, &shared.ws_config).await
        {
            Ok(ws) => ws,
            Err(error) => {
                shared
                    .metrics
                    .ws_errors
                    .with_label_values(&[error.kind()])
                    .inc();
                if let ConnectError::Auth { body } = &error {
                    let message = auth_failure_message(
                        body.as_bytes(),
                        shared.config.exchange.environment.as_str(),
                        &kalshi_gather::config::mask(&shared.key_id),
                    );
                    shared.fail(StartError::Auth(message));
                    return;
                }
                if error.is_fatal() {
                    shared.fail(StartError::Config(format!("exchange.ws_url: {error}")));
                    return;
                }
                failures += 1;
                let now = now_us();
                let decision = backoff.on_failure(now, failure_kind(&error));
                let retry_ms = match decision {
                    RetryDecision::RetryAt(at) => (at - now) / 1000,
                    RetryDecision::Stop => -1,
                };
                // Every attempt at debug level (the reconnect schedule, for diagnosis and the
                // fault tests); the first three and every 20th at warn.
                if failures <= 3 || failures.is_multiple_of(20) {
                    log::warn!(
                        "connection {id}: connecting to {} failed ({} times): {error}; retrying in {retry_ms} ms",
                        shared.ws_url.as_string(),
                        failures
                    );
                } else {
                    log::debug!(
                        "connection {id}: connecting failed ({failures} times): {error}; retrying in {retry_ms} ms"
                    );
                }
                match decision {
                    RetryDecision::RetryAt(at) => sleep_until(shared, at).await,
                    RetryDecision::Stop => return,
                }
                continue;
            }
        };
        failures = 0;
        let now = now_us();
        backoff.on_connected(now);
        {
            let mut c = conn.borrow_mut();
            c.open = true;
            c.last_frame_us = now;
            let resume_from = resume.take();
            if resume_from.is_none() {
                c.window_from_us = None;
            }
            c.manager.connected(now, resume_from);
        }
        if lifecycle && !first {
            ctx.send_control(ControlMsg::LifecycleResumed);
        }
        first = false;
        let end = session(
            ctx,
            conn,
            &mut ws,
            &mut decoder,
            &mut scratch,
            &mut raw,
            &mut out,
        )
        .await;
        ws.close().await;
        let now = now_us();
        {
            let mut c = conn.borrow_mut();
            c.open = false;
            c.healthy = false;
            backfill_unconfirmed_listings(ctx, &mut c, now);
            c.manager.disconnected(now);
            c.invalidate_books();
            if !lifecycle {
                let from = c.manager.last_frame_us().unwrap_or(now);
                resume = Some(from);
                c.window_from_us = Some(c.window_from_us.map_or(from, |w| w.min(from)));
            }
        }
        let kind = match end {
            End::Stop => break,
            End::Failed(error) => {
                shared
                    .metrics
                    .ws_errors
                    .with_label_values(&[error.kind()])
                    .inc();
                log::warn!("connection {id}: lost: {error}");
                failure_kind(&error)
            }
            End::Silent => {
                shared
                    .metrics
                    .ws_errors
                    .with_label_values(&["timeout"])
                    .inc();
                log::warn!(
                    "connection {id}: no frame for {} ms; reconnecting",
                    shared.config.limits.liveness_timeout_ms
                );
                FailureKind::Transport
            }
            End::Reconnect(reason) => {
                shared
                    .metrics
                    .ws_errors
                    .with_label_values(&["protocol"])
                    .inc();
                log::warn!("connection {id}: reconnecting: {reason}");
                FailureKind::Protocol
            }
        };
        let now = now_us();
        let decision = backoff.on_failure(now, kind);
        if let RetryDecision::RetryAt(at) = decision {
            log::debug!("connection {id}: reconnecting in {} ms", (at - now) / 1000);
        }
        match decision {
            RetryDecision::RetryAt(at) => sleep_until(shared, at).await,
            RetryDecision::Stop => break,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    ctx: &Rc<ShardCtx>,
    conn: &Rc<RefCell<Conn>>,
    ws: &mut WsConnection,
    decoder: &mut Decoder,
    scratch: &mut Vec<u8>,
    raw: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> End {
    let shared = &ctx.shared;
    let mut tick = Timer::new(CONN_TICK);
    let mut lifecycle_scratch = Vec::new();
    loop {
        if shared.stopping() {
            return End::Stop;
        }
        let now = now_us();
        // Commands due.
        loop {
            let sent = conn.borrow_mut().manager.poll_transmit(now, out);
            if sent.is_none() {
                break;
            }
            conn.borrow_mut().counters.commands += 1;
            let text = String::from_utf8_lossy(out);
            if let Err(e) = ws.send_text(&text).await {
                return End::Failed(e);
            }
        }
        if let Some(end) = drain_actions(ctx, conn) {
            return end;
        }
        let event = futures_lite::future::or(async { Some(ws.recv(scratch).await) }, async {
            (&mut tick).await;
            None
        })
        .await;
        match event {
            None => {
                tick = Timer::new(CONN_TICK);
                let mut c = conn.borrow_mut();
                c.manager.handle_timeout(now_us());
                c.healthy = c.open && c.manager.is_fully_subscribed();
                if c.healthy {
                    c.window_from_us = None;
                }
                prune_listed(&mut c);
            }
            Some(Err(e)) => return End::Failed(e),
            Some(Ok(WsEvent::Silent)) => return End::Silent,
            Some(Ok(WsEvent::Control)) => {}
            Some(Ok(WsEvent::Binary)) => conn.borrow_mut().counters.parse_error("binary_frame"),
            Some(Ok(WsEvent::Text)) => {
                let row = {
                    let mut c = conn.borrow_mut();
                    handle_text(ctx, &mut c, decoder, scratch, raw, &mut lifecycle_scratch)
                };
                // A rare large frame (a subscription's answer listing its markets, a deep
                // snapshot) grows the buffers; give that memory back rather than keep it per
                // connection for the life of the process.
                for buffer in [&mut *scratch, &mut *raw] {
                    if buffer.capacity() > SCRATCH_KEPT {
                        buffer.clear();
                        buffer.shrink_to(SCRATCH_KEPT);
                    }
                }
                if let Some(row) = row {
                    push_row(ctx, conn, row).await;
                }
            }
        }
    }
}

/// Pushes a row into the shard's ring, waiting while it is full (backpressure: the socket is
/// not read meanwhile). Never drops a row while the writer runs.
async fn push_row(ctx: &ShardCtx, conn: &RefCell<Conn>, row: Row) {
    let mut row = row;
    let mut waited = false;
    let mut stop_deadline: Option<Instant> = None;
    loop {
        match ctx.producer.try_push(row) {
            Ok(()) => return,
            Err(PushError::Full(r)) => {
                row = r;
                if !waited {
                    waited = true;
                    conn.borrow_mut().counters.ring_full += 1;
                }
                if ctx.shared.stopping() {
                    let deadline = *stop_deadline.get_or_insert_with(|| {
                        Instant::now()
                            + Duration::from_millis(ctx.shared.config.limits.shutdown_timeout_ms)
                    });
                    if Instant::now() >= deadline {
                        log::error!(
                            "shard {}: the writer ring stayed full through shutdown; a row is lost",
                            ctx.index
                        );
                        return;
                    }
                }
                glommio::timer::sleep(Duration::from_micros(500)).await;
            }
            Err(PushError::Closed(_)) => {
                ctx.shared.fail(StartError::Runtime(
                    "the database writer stopped; cannot store rows".to_owned(),
                ));
                return;
            }
        }
    }
}

/// Forwards the subscription manager's actions; handles the local ones.
fn drain_actions(ctx: &ShardCtx, conn: &RefCell<Conn>) -> Option<End> {
    let mut end = None;
    let mut c = conn.borrow_mut();
    let id = c.id;
    while let Some(action) = c.manager.poll_action() {
        match &action {
            Action::Gap(gap) if gap.channel == "orderbook_delta" => {
                for name in &gap.tickers {
                    if let Some((book, _)) = c.books.get_mut(name.as_str()) {
                        book.invalidate();
                    }
                }
            }
            Action::Reconnect(reason) => {
                end = Some(End::Reconnect(reason.0.clone()));
                continue;
            }
            Action::CommandRejected {
                channel,
                code,
                message,
                tickers,
            } => {
                log::error!(
                    "connection {id}: the exchange refused a {} command for {} markets: error {code} {message}",
                    channel.as_str(),
                    tickers.len()
                );
                continue;
            }
            Action::ServerError { code, message } => {
                log::warn!("connection {id}: exchange error {code}: {message}");
                continue;
            }
            _ => {}
        }
        ctx.send_control(ControlMsg::Action { conn: id, action });
    }
    end
}

/// Handles one text frame; returns the row to store, if any.
fn handle_text(
    ctx: &ShardCtx,
    c: &mut Conn,
    decoder: &mut Decoder,
    scratch: &mut [u8],
    raw: &mut Vec<u8>,
    lifecycle_scratch: &mut Vec<u8>,
) -> Option<Row> {
    let now = now_us();
    c.counters.messages += 1;
    c.last_frame_us = now;
    if c.lifecycle {
        raw.clear();
        raw.extend_from_slice(scratch);
    }
    let decoded = match decoder.decode(scratch) {
        Ok(decoded) => decoded,
        Err(error) => {
            c.counters.parse_error(error.kind());
            let logged = ctx.parse_logged.get();
            ctx.parse_logged.set(logged + 1);
            if logged < 10 || logged.is_multiple_of(10_000) {
                log::warn!("connection {}: undecodable frame skipped: {error}", c.id);
            }
            return None;
        }
    };
    let gatherer_id = ctx.shared.config.database.gatherer_id;
    match c.manager.handle_frame(now, &decoded) {
        Verdict::Drop(reason) => {
            c.counters.drop_frame(reason);
            None
        }
        Verdict::Control => None,
        Verdict::Deliver { use_yes_price, .. } => {
            let yes_price = use_yes_price.unwrap_or(false);
            match &decoded.record {
                Record::Snapshot(s) => {
                    // A market's first snapshot on this connection: its key is the one the
                    // subscription manager holds (shared, not a new allocation).
                    if !c.books.contains_key(s.ticker.as_str()) {
                        let key = c.manager.market_key(s.ticker.as_str());
                        c.books.insert(key, (Book::default(), now));
                    }
                    let entry = c.books.get_mut(s.ticker.as_str())?;
                    if let Err(error) = entry
                        .0
                        .apply_snapshot(decoded.yes_levels(), decoded.no_levels())
                    {
                        log::warn!("snapshot of {} rejected by the book: {error:?}", s.ticker);
                    }
                    entry.1 = now;
                    let mut row = ctx.producer.snapshot_row();
                    row.fill_from_wire(&decoded, gatherer_id, now, Source::Ws)
                        .ok()?;
                    if yes_price {
                        // Stored NO levels are NO-leg prices (sql/README.md).
                        for level in &mut row.no {
                            level.price_e6 = ONE_DOLLAR_E6 - level.price_e6;
                        }
                        row.no.reverse();
                    }
                    Some(Row::Snapshot(row))
                }
                Record::Delta(d) => {
                    let mut row = match DeltaRow::from_wire(d, gatherer_id, now) {
                        Ok(row) => row,
                        Err(_) => {
                            c.counters.parse_error("delta_without_seq");
                            return None;
                        }
                    };
                    let needs_resync = match c.books.get_mut(d.ticker.as_str()) {
                        Some((book, changed)) => {
                            *changed = now;
                            book.apply_delta(d.side, d.price_e6, d.delta_e2)
                                .err()
                                .is_some_and(|e| e.needs_resync())
                        }
                        None => true,
                    };
                    if needs_resync {
                        c.counters.resyncs += 1;
                        c.manager.request_snapshot(d.ticker.as_str());
                    }
                    if yes_price && d.side == Side::No {
                        row.price_e6 = ONE_DOLLAR_E6 - row.price_e6;
                    }
                    Some(Row::Delta(row))
                }
                Record::Trade(t) => Some(Row::Trade(TradeRow::from_wire(
                    t,
                    gatherer_id,
                    now,
                    Source::Ws,
                ))),
                Record::Ticker(t) => Some(Row::Ticker(TickerRow::from_wire(t, gatherer_id, now))),
                Record::MarketLifecycle(_) => {
                    let mut row = ctx.producer.lifecycle_row();
                    row.fill_from_wire(&decoded, gatherer_id, now, lifecycle_scratch)
                        .ok()?;
                    if c.lifecycle {
                        ctx.send_control(ControlMsg::Lifecycle {
                            raw: raw.clone(),
                            received_us: now,
                        });
                    }
                    Some(Row::Lifecycle(row))
                }
                Record::EventLifecycle(_) => {
                    if c.lifecycle {
                        ctx.send_control(ControlMsg::Lifecycle {
                            raw: raw.clone(),
                            received_us: now,
                        });
                    }
                    None
                }
                Record::Unknown(_) => {
                    c.counters.unknown_type += 1;
                    None
                }
                Record::Control(_) => None,
            }
        }
    }
}
