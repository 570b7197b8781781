//! The exchange thread: the single owner of the [`Exchange`] and of every connection's
//! [`Session`].
//!
//! It steps the exchange on the fixed grid of a [`VirtualClock`] (paced by the wall clock), so
//! the same seed and config give a byte-identical truth log however the threads are scheduled
//! and whatever clients do: nothing a client sends changes the exchange. Connection threads
//! talk to it over one bounded channel ([`EngineMsg`]); it answers each connection over that
//! connection's bounded outbound queue ([`Out`]). A connection whose queue is full is a slow
//! client: it is disconnected with a log line, never buffered without bound.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use kalshi_sim_core::load::{LoadGen, LoadRoute, Pacer};
use kalshi_sim_core::{Exchange, Outbound, RestResponse, Session, SessionConfig, VirtualClock};
use serde_json::{Value, json};

use crate::config::{FaultAction, FaultSpec};

/// State shared by every thread: fault switches set by the control endpoint or the schedule,
/// and counters for `/stats`.
#[derive(Debug, Default)]
pub struct Shared {
    /// Answer every WebSocket handshake 401 (bad signature body).
    pub reject_auth: AtomicBool,
    /// REST requests still to answer 429 (-1 = all until lifted).
    pub force_429: AtomicI64,
    /// Answer every WebSocket handshake 429 (the REST 429 body), as a rate-limited exchange.
    pub ws_429: AtomicBool,
    /// The latest WebSocket handshake attempts (bounded), for `GET /handshakes`.
    pub handshakes: std::sync::Mutex<std::collections::VecDeque<Handshake>>,
    /// Delay before every REST response, ms.
    pub rest_delay_ms: AtomicU64,
    /// The exchange is paused: handshakes are refused with 503.
    pub paused: AtomicBool,
    /// Set on SIGINT/SIGTERM or at the end of `duration_secs` (an `Arc` so that signal
    /// handlers can be registered on it).
    pub stopping: Arc<AtomicBool>,
    /// WebSocket frames handed to sockets.
    pub frames_sent: AtomicU64,
    /// WebSocket connections accepted so far.
    pub ws_connections_total: AtomicU64,
    /// WebSocket connection threads still running (shutdown waits for them to flush).
    pub ws_connections_open: AtomicU64,
    /// REST requests answered (any status).
    pub rest_requests: AtomicU64,
    /// REST 429s.
    pub rest_429: AtomicU64,
    /// 401s (REST and handshakes).
    pub auth_rejections: AtomicU64,
    /// WebSocket commands answered with error 27 (too many requests).
    pub command_rate_limited: AtomicU64,
    /// Connections dropped because their outbound queue was full.
    pub slow_disconnects: AtomicU64,
}

/// Handshake attempts kept for `GET /handshakes` (the oldest are forgotten first).
pub const HANDSHAKES_KEPT: usize = 100_000;

/// One WebSocket handshake attempt, as the server saw it.
#[derive(Clone, Debug)]
pub struct Handshake {
    /// Wall clock, µs since the Unix epoch.
    pub unix_us: i64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The `KALSHI-ACCESS-KEY` header (an API key id, public).
    pub key_id: Option<String>,
    /// The answer: 101, or the refusal's status.
    pub status: u16,
}

impl Shared {
    /// Remembers one handshake attempt.
    pub fn record_handshake(&self, peer: SocketAddr, key_id: Option<&str>, status: u16) {
        let unix_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        if let Ok(mut log) = self.handshakes.lock() {
            if log.len() >= HANDSHAKES_KEPT {
                log.pop_front();
            }
            log.push_back(Handshake {
                unix_us,
                peer,
                key_id: key_id.map(str::to_owned),
                status,
            });
        }
    }

    /// The recorded handshake attempts, oldest first, as JSON.
    #[must_use]
    pub fn handshakes_json(&self) -> Value {
        let Ok(log) = self.handshakes.lock() else {
            return json!([]);
        };
        Value::Array(
            log.iter()
                .map(|h| {
                    json!({
                        "unix_us": h.unix_us,
                        "peer": h.peer.to_string(),
                        "key_id": h.key_id,
                        "status": h.status,
                    })
                })
                .collect(),
        )
    }

    /// Takes one forced 429 if any is pending.
    pub fn take_forced_429(&self) -> bool {
        let mut current = self.force_429.load(Ordering::SeqCst);
        loop {
            if current == 0 {
                return false;
            }
            if current < 0 {
                return true;
            }
            match self.force_429.compare_exchange(
                current,
                current - 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

/// Several WebSocket text frames in one buffer (one allocation per batch, not per frame).
#[derive(Clone, Debug)]
pub struct Batch {
    /// The frames' bytes, back to back.
    pub bytes: Bytes,
    /// End offset of each frame in `bytes`.
    pub ends: Vec<u32>,
}

impl Batch {
    /// Packs rendered frames.
    #[must_use]
    pub fn from_outbound(frames: &[Outbound]) -> Self {
        let total: usize = frames.iter().map(|f| f.text.len()).sum();
        let mut bytes = Vec::with_capacity(total);
        let mut ends = Vec::with_capacity(frames.len());
        for frame in frames {
            bytes.extend_from_slice(&frame.text);
            ends.push(bytes.len() as u32);
        }
        Self {
            bytes: Bytes::from(bytes),
            ends,
        }
    }

    /// The frames, as zero-copy slices.
    pub fn frames(&self) -> impl Iterator<Item = Bytes> + '_ {
        let mut start = 0_usize;
        self.ends.iter().map(move |&end| {
            let end = end as usize;
            let frame = self.bytes.slice(start..end);
            start = end;
            frame
        })
    }

    /// Number of frames.
    #[must_use]
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

/// What the exchange thread tells one connection.
#[derive(Clone, Debug)]
pub enum Out {
    /// Send these text frames, in order.
    Frames(Batch),
    /// Close: with a close frame (1001 going away), or a reset without one.
    Close {
        /// No close frame: shut the socket down.
        reset: bool,
        /// Why (logged; the close frame's reason).
        reason: &'static str,
    },
    /// Stop writing (frames and pings) for this long; reading continues.
    Stall {
        /// Milliseconds.
        ms: u64,
    },
}

/// A connection's handle, given to the exchange thread when the WebSocket opens.
#[derive(Debug)]
pub struct ConnLink {
    /// Connection id (unique per process).
    pub id: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its outbound queue.
    pub tx: Sender<Out>,
    /// Set when the connection must drop at once (its queue is full).
    pub kill: Arc<AtomicBool>,
    /// Frames its writer has handed to the socket.
    pub frames_sent: Arc<AtomicU64>,
}

/// Which connections a control command targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// Every connection.
    All,
    /// One, by id.
    Conn(u64),
}

/// What `/malformed` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedKind {
    /// Truncated JSON (the session's own malformed frame).
    Truncated,
    /// A text frame whose payload is not UTF-8.
    InvalidUtf8,
    /// A delta frame whose `msg` nests arrays `depth` deep.
    Nested {
        /// Nesting depth.
        depth: u32,
    },
    /// A well-formed delta frame padded to `bytes` bytes.
    Oversized {
        /// Frame size.
        bytes: u32,
    },
}

impl MalformedKind {
    /// The frame's payload (`None`: the session's truncated frame).
    #[must_use]
    pub fn payload(self) -> Option<Vec<u8>> {
        match self {
            MalformedKind::Truncated => None,
            MalformedKind::InvalidUtf8 => {
                let mut text =
                    br#"{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"market_ticker":""#
                        .to_vec();
                text.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]);
                text.extend_from_slice(br#""}}"#);
                Some(text)
            }
            MalformedKind::Nested { depth } => {
                let depth = depth as usize;
                let mut text = br#"{"type":"orderbook_delta","sid":1,"seq":1,"msg":"#.to_vec();
                text.resize(text.len() + depth, b'[');
                text.resize(text.len() + depth, b']');
                text.push(b'}');
                Some(text)
            }
            MalformedKind::Oversized { bytes } => {
                let head = br#"{"type":"orderbook_delta","sid":1,"seq":1,"msg":{"pad":""#;
                let tail = br#""}}"#;
                let mut text = head.to_vec();
                let pad = (bytes as usize).saturating_sub(head.len() + tail.len());
                text.resize(text.len() + pad, b'x');
                text.extend_from_slice(tail);
                Some(text)
            }
        }
    }
}

/// A command for the exchange thread from the control endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlCmd {
    /// Connections, subscriptions, counters.
    Stats,
    /// Close connections.
    Close {
        /// Which.
        target: Target,
        /// Without a close frame.
        reset: bool,
    },
    /// Drop the next sequenced frame of `sid` (a seq gap).
    SkipSeq {
        /// Which connections.
        target: Target,
        /// Subscription.
        sid: u64,
    },
    /// Send a malformed frame.
    Malformed {
        /// Which connections.
        target: Target,
        /// What is wrong with it.
        kind: MalformedKind,
    },
    /// Stop writing for `ms`.
    Stall {
        /// Which connections.
        target: Target,
        /// Milliseconds.
        ms: u64,
    },
    /// Error 25 on `sid` (the subscription is dropped).
    Overflow {
        /// Which connections.
        target: Target,
        /// Subscription.
        sid: u64,
    },
    /// Error 10 on `sid` (the subscription is dropped).
    ChannelError {
        /// Which connections.
        target: Target,
        /// Subscription.
        sid: u64,
    },
    /// Send the next frame of `sid` twice.
    Duplicate {
        /// Which connections.
        target: Target,
        /// Subscription.
        sid: u64,
    },
    /// Pause the exchange and close every WebSocket.
    Pause,
    /// Resume the exchange.
    Resume,
    /// Stop generating exchange events for good (the clock stops; connections, heartbeats,
    /// commands and REST go on). Used to end a run so that clients can catch up and be checked
    /// against a truth log that no longer grows.
    Halt,
    /// Write the final books now; reply with them.
    DumpBooks,
}

/// A message to the exchange thread.
#[derive(Debug)]
pub enum EngineMsg {
    /// A WebSocket opened.
    Open(ConnLink),
    /// A client text frame.
    Text {
        /// Connection id.
        conn: u64,
        /// The frame.
        text: Vec<u8>,
    },
    /// A connection ended.
    Closed {
        /// Connection id.
        conn: u64,
    },
    /// A REST request (already authenticated and rate-limited).
    Rest {
        /// Method.
        method: String,
        /// Path and query.
        target: String,
        /// Where to answer.
        reply: Sender<RestResponse>,
    },
    /// A control command.
    Control {
        /// The command.
        cmd: ControlCmd,
        /// Where to answer: status and JSON body.
        reply: Sender<(u16, Vec<u8>)>,
    },
}

struct Conn {
    link: ConnLink,
    session: Session,
    /// Load mode: this connection's routing table and the frames rendered for it this turn.
    route: LoadRoute,
    buf: Vec<u8>,
    ends: Vec<u32>,
}

/// Load mode state: the generator and its pacer.
pub struct LoadMode {
    /// The event generator (also the market source for commands and REST).
    pub source: LoadGen,
    /// Target events per second.
    pub rate: u64,
    pacer: Option<Pacer>,
    /// Events generated while paced.
    generated: u64,
    /// Whether the pacer is running (someone is subscribed).
    pacing: bool,
}

impl LoadMode {
    /// Load mode over `gen` at `rate` events per second.
    #[must_use]
    pub fn new(source: LoadGen, rate: u64) -> Self {
        Self {
            source,
            rate,
            pacer: None,
            generated: 0,
            pacing: false,
        }
    }
}

/// Most load events generated per turn of the loop (bounds one batch per connection).
const LOAD_EVENTS_PER_TURN: u64 = 1024;

/// Settings of the exchange thread.
#[derive(Debug)]
pub struct EngineSettings {
    /// Exchange time of the first step, µs.
    pub start_us: i64,
    /// Step grid, µs.
    pub tick_us: i64,
    /// Exchange time to run, µs (0 = until stopped).
    pub duration_us: i64,
    /// Exchange µs per wall µs.
    pub speed: f64,
    /// Truth log file.
    pub truth_log: Option<PathBuf>,
    /// Final books file.
    pub final_books: Option<PathBuf>,
    /// Per-connection session limits.
    pub session: SessionConfig,
    /// Scheduled faults.
    pub faults: Vec<FaultSpec>,
}

/// The exchange thread's state.
pub struct Engine {
    exchange: Exchange,
    clock: VirtualClock,
    conns: BTreeMap<u64, Conn>,
    settings: EngineSettings,
    shared: Arc<Shared>,
    truth: Option<BufWriter<File>>,
    /// Scheduled faults, sorted by time, with their absolute exchange time.
    schedule: Vec<(i64, FaultSpec)>,
    scratch: Vec<Outbound>,
    load: Option<LoadMode>,
    epoch: Instant,
    /// Set by [`ControlCmd::Halt`]: no more steps.
    halted: bool,
}

fn log(message: &str) {
    eprintln!("kalshi-sim: {message}");
}

impl Engine {
    /// Builds the exchange thread's state; opens the truth log file.
    ///
    /// # Errors
    /// The truth log file cannot be created.
    pub fn new(
        exchange: Exchange,
        settings: EngineSettings,
        shared: Arc<Shared>,
    ) -> std::io::Result<Self> {
        let truth = match &settings.truth_log {
            Some(path) => Some(BufWriter::with_capacity(1 << 16, File::create(path)?)),
            None => None,
        };
        let mut schedule: Vec<(i64, FaultSpec)> = settings
            .faults
            .iter()
            .map(|f| (settings.start_us + (f.at_secs * 1e6) as i64, f.clone()))
            .collect();
        schedule.sort_by_key(|(at, _)| *at);
        Ok(Self {
            exchange,
            clock: VirtualClock::new(settings.start_us, settings.tick_us),
            conns: BTreeMap::new(),
            settings,
            shared,
            truth,
            schedule,
            scratch: Vec::new(),
            load: None,
            epoch: Instant::now(),
            halted: false,
        })
    }

    /// Switches to load mode: frames come from `load` instead of the market model (which
    /// stays idle), commands and REST are answered from the load universe.
    #[must_use]
    pub fn with_load(mut self, load: LoadMode) -> Self {
        self.load = Some(load);
        self
    }

    /// Virtual time for session command buckets in load mode.
    fn load_now_us(&self) -> i64 {
        self.settings.start_us + self.epoch.elapsed().as_micros() as i64
    }

    /// Runs until stopped (SIGINT/SIGTERM through [`Shared::stopping`], the end of the
    /// configured duration, or every sender gone). Writes the final books before returning.
    pub fn run(mut self, rx: &Receiver<EngineMsg>) {
        if self.load.is_some() {
            self.run_load(rx);
            self.finish();
            return;
        }
        let wall_start = Instant::now();
        let speed = if self.settings.speed > 0.0 {
            self.settings.speed
        } else {
            1.0
        };
        loop {
            let elapsed_us = wall_start.elapsed().as_micros() as f64 * speed;
            let virtual_now = self.settings.start_us.saturating_add(elapsed_us as i64);
            // Step every due grid instant (bounded per turn so messages are still served).
            for _ in 0..1000 {
                if self.halted {
                    break;
                }
                let Some(instant) = self.clock.take_due(virtual_now) else {
                    break;
                };
                self.tick(instant);
                if self.settings.duration_us > 0
                    && instant - self.settings.start_us >= self.settings.duration_us
                {
                    self.shared.stopping.store(true, Ordering::SeqCst);
                    break;
                }
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                break;
            }
            let next = self.clock.next_instant();
            let wait_us = ((next - virtual_now).max(0) as f64 / speed) as u64;
            let wait = Duration::from_micros(wait_us.min(50_000));
            match rx.recv_timeout(wait) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        self.finish();
    }

    /// The load-mode loop: while some connection is subscribed to load markets (and the
    /// exchange is not paused), generate the events the pacer grants, render each into every
    /// subscribed connection's batch, and queue the batches; serve messages in between.
    fn run_load(&mut self, rx: &Receiver<EngineMsg>) {
        let duration = Duration::from_micros(self.settings.duration_us.max(0) as u64);
        let started = Instant::now();
        let mut truth_line = Vec::with_capacity(512);
        loop {
            if self.settings.duration_us > 0 && started.elapsed() >= duration {
                self.shared.stopping.store(true, Ordering::SeqCst);
            }
            if self.shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            let Some(load) = self.load.as_mut() else {
                return;
            };
            let active =
                !self.exchange.is_paused() && self.conns.values().any(|c| c.route.is_active());
            // Backpressure: while any subscribed connection's queue is over half full, generate
            // nothing (the pacer keeps the backlog); the achieved rate then shows what the
            // slowest client can take. A load-mode benchmark measures throughput, it does not
            // disconnect its client.
            let backed_up = self.conns.values().any(|c| {
                c.route.is_active()
                    && c.link.tx.len() * 2 >= c.link.tx.capacity().unwrap_or(usize::MAX)
            });
            let mut due = 0;
            // `POST /halt` ends generation for good (connections and commands go on), so a
            // benchmark can read a final summary while its client catches up.
            if active && !backed_up && !self.halted {
                let now = self.epoch.elapsed().as_micros() as i64;
                let pacer = load.pacer.get_or_insert_with(|| Pacer::new(load.rate));
                load.pacing = true;
                due = pacer.take_due(now, LOAD_EVENTS_PER_TURN);
                for _ in 0..due {
                    let event = load.source.next_event();
                    if let Some(truth) = &mut self.truth {
                        truth_line.clear();
                        load.source.write_truth_line(&event, &mut truth_line);
                        if truth.write_all(&truth_line).is_err() {
                            log("truth log write failed, stopping the log");
                            self.truth = None;
                        }
                    }
                    for conn in self.conns.values_mut() {
                        let start = conn.buf.len();
                        if let Some(rendered) = conn.route.render(
                            &load.source,
                            &event,
                            &mut conn.session,
                            &mut conn.buf,
                        ) {
                            conn.ends.push(conn.buf.len() as u32);
                            if rendered.duplicate {
                                conn.buf.extend_from_within(start..);
                                conn.ends.push(conn.buf.len() as u32);
                            }
                        }
                    }
                }
                load.generated += due;
                let ids: Vec<u64> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| !c.ends.is_empty())
                    .map(|(id, _)| *id)
                    .collect();
                for id in ids {
                    let Some(conn) = self.conns.get_mut(&id) else {
                        continue;
                    };
                    let batch = Batch {
                        bytes: Bytes::from(core::mem::replace(
                            &mut conn.buf,
                            Vec::with_capacity(64 * 1024),
                        )),
                        ends: core::mem::take(&mut conn.ends),
                    };
                    self.send(id, Out::Frames(batch));
                }
            } else if !active {
                // Nobody listening: pacing restarts when someone subscribes.
                load.pacer = None;
                load.pacing = false;
            }
            if due > 0 {
                // Serve what is waiting without sleeping, then generate more.
                for _ in 0..64 {
                    match rx.try_recv() {
                        Ok(msg) => self.handle(msg),
                        Err(_) => break,
                    }
                }
                continue;
            }
            if let Some(truth) = &mut self.truth {
                let _ = truth.flush();
            }
            match rx.recv_timeout(Duration::from_millis(1)) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// One grid instant: due scheduled faults, the step, delivery, truth log.
    fn tick(&mut self, instant: i64) {
        while self.schedule.first().is_some_and(|(at, _)| *at <= instant) {
            let (_, fault) = self.schedule.remove(0);
            self.apply_fault(&fault);
        }
        let events = self.exchange.step(instant);
        let chunk = self.exchange.take_truth_log();
        if let Some(truth) = &mut self.truth
            && let Err(e) = truth.write_all(&chunk).and_then(|()| truth.flush())
        {
            log(&format!("truth log write failed, stopping the log: {e}"));
            self.truth = None;
        }
        if events.is_empty() {
            return;
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            let mut out = core::mem::take(&mut self.scratch);
            out.clear();
            if let Some(conn) = self.conns.get_mut(&id) {
                conn.session.deliver(&self.exchange, &events, &mut out);
            }
            self.send_frames(id, &out);
            self.scratch = out;
        }
    }

    fn apply_fault(&mut self, fault: &FaultSpec) {
        log(&format!(
            "scheduled fault at {} s: {:?}",
            fault.at_secs, fault.action
        ));
        let all = Target::All;
        let cmd = match fault.action {
            FaultAction::CloseAll => ControlCmd::Close {
                target: all,
                reset: false,
            },
            FaultAction::ResetAll => ControlCmd::Close {
                target: all,
                reset: true,
            },
            FaultAction::Pause => ControlCmd::Pause,
            FaultAction::Resume => ControlCmd::Resume,
            FaultAction::SkipSeq => ControlCmd::SkipSeq {
                target: all,
                sid: fault.sid,
            },
            FaultAction::Malformed => ControlCmd::Malformed {
                target: all,
                kind: MalformedKind::Truncated,
            },
            FaultAction::Stall => ControlCmd::Stall {
                target: all,
                ms: fault.ms,
            },
            FaultAction::Overflow => ControlCmd::Overflow {
                target: all,
                sid: fault.sid,
            },
            FaultAction::ChannelError => ControlCmd::ChannelError {
                target: all,
                sid: fault.sid,
            },
            FaultAction::Duplicate => ControlCmd::Duplicate {
                target: all,
                sid: fault.sid,
            },
            FaultAction::RejectAuth => {
                self.shared.reject_auth.store(true, Ordering::SeqCst);
                return;
            }
            FaultAction::AcceptAuth => {
                self.shared.reject_auth.store(false, Ordering::SeqCst);
                return;
            }
            FaultAction::Force429 => {
                self.shared.force_429.store(fault.count, Ordering::SeqCst);
                return;
            }
            FaultAction::RestDelay => {
                self.shared.rest_delay_ms.store(fault.ms, Ordering::SeqCst);
                return;
            }
        };
        let _ = self.control(cmd);
    }

    /// Queues frames for one connection; drops the connection if its queue is full.
    fn send_frames(&mut self, id: u64, frames: &[Outbound]) {
        if frames.is_empty() {
            return;
        }
        self.send(id, Out::Frames(Batch::from_outbound(frames)));
    }

    fn send(&mut self, id: u64, out: Out) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        match conn.link.tx.try_send(out) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                log(&format!(
                    "connection {id} ({}): outbound queue full ({} batches); disconnecting the slow client",
                    conn.link.peer,
                    conn.link.tx.capacity().unwrap_or(0)
                ));
                conn.link.kill.store(true, Ordering::SeqCst);
                self.shared.slow_disconnects.fetch_add(1, Ordering::Relaxed);
                self.conns.remove(&id);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.conns.remove(&id);
            }
        }
    }

    fn handle(&mut self, msg: EngineMsg) {
        match msg {
            EngineMsg::Open(link) => {
                let id = link.id;
                self.conns.insert(
                    id,
                    Conn {
                        link,
                        session: Session::new(self.settings.session.clone()),
                        route: LoadRoute::new(),
                        buf: Vec::new(),
                        ends: Vec::new(),
                    },
                );
            }
            EngineMsg::Text { conn, text } => {
                let frames = if let Some(load) = &self.load {
                    let now = self.load_now_us();
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    let frames = c.session.handle_command_on(now, &text, &load.source);
                    c.route.refresh(&load.source, &c.session);
                    frames
                } else {
                    let now = self.exchange.now_us().max(self.settings.start_us);
                    let Some(c) = self.conns.get_mut(&conn) else {
                        return;
                    };
                    c.session.handle_command(now, &text, &self.exchange)
                };
                let limited = frames
                    .iter()
                    .filter(|f| {
                        f.kind == kalshi_sim_core::FrameKind::Error
                            && f.text.windows(17).any(|w| w == b"Too many requests")
                    })
                    .count();
                if limited > 0 {
                    self.shared
                        .command_rate_limited
                        .fetch_add(limited as u64, Ordering::Relaxed);
                }
                // Frames rendered by load mode this turn go out before the command's answer.
                self.flush_load_batch(conn);
                self.send_frames(conn, &frames);
            }
            EngineMsg::Closed { conn } => {
                self.conns.remove(&conn);
            }
            EngineMsg::Rest {
                method,
                target,
                reply,
            } => {
                let response = match &self.load {
                    Some(load) => kalshi_sim_core::route_load(&load.source, &method, &target),
                    None => kalshi_sim_core::route(&self.exchange, &method, &target),
                };
                let _ = reply.send(response);
            }
            EngineMsg::Control { cmd, reply } => {
                let answer = self.control(cmd);
                let _ = reply.send(answer);
            }
        }
    }

    /// Sends a connection's pending load frames (none outside load mode).
    fn flush_load_batch(&mut self, id: u64) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        if conn.ends.is_empty() {
            return;
        }
        let batch = Batch {
            bytes: Bytes::from(core::mem::take(&mut conn.buf)),
            ends: core::mem::take(&mut conn.ends),
        };
        self.send(id, Out::Frames(batch));
    }

    fn targets(&self, target: Target) -> Result<Vec<u64>, (u16, Vec<u8>)> {
        match target {
            Target::All => Ok(self.conns.keys().copied().collect()),
            Target::Conn(id) if self.conns.contains_key(&id) => Ok(vec![id]),
            Target::Conn(id) => Err(json_reply(
                404,
                &json!({"error": format!("unknown connection {id}")}),
            )),
        }
    }

    /// Applies a control command; returns the HTTP status and JSON body to answer with.
    fn control(&mut self, cmd: ControlCmd) -> (u16, Vec<u8>) {
        let ok = |ids: &[u64]| json_reply(200, &json!({"ok": true, "connections": ids}));
        match cmd {
            ControlCmd::Stats => json_reply(200, &self.stats()),
            ControlCmd::Close { target, reset } => match self.targets(target) {
                Ok(ids) => {
                    for id in &ids {
                        self.send(
                            *id,
                            Out::Close {
                                reset,
                                reason: "closed by fault injection",
                            },
                        );
                        self.conns.remove(id);
                    }
                    ok(&ids)
                }
                Err(reply) => reply,
            },
            ControlCmd::Malformed { target, kind } => match self.targets(target) {
                Ok(ids) => {
                    for id in &ids {
                        if let Some(c) = self.conns.get(id) {
                            let mut frame = c.session.fault_malformed_frame();
                            if let Some(text) = kind.payload() {
                                frame.text = text;
                            }
                            self.send_frames(*id, &[frame]);
                        }
                    }
                    ok(&ids)
                }
                Err(reply) => reply,
            },
            ControlCmd::Stall { target, ms } => match self.targets(target) {
                Ok(ids) => {
                    for id in &ids {
                        self.send(*id, Out::Stall { ms });
                    }
                    ok(&ids)
                }
                Err(reply) => reply,
            },
            ControlCmd::SkipSeq { target, sid }
            | ControlCmd::Duplicate { target, sid }
            | ControlCmd::Overflow { target, sid }
            | ControlCmd::ChannelError { target, sid } => match self.targets(target) {
                Ok(ids) => {
                    let mut hit = Vec::new();
                    for id in &ids {
                        let Some(c) = self.conns.get_mut(id) else {
                            continue;
                        };
                        let frame = match cmd {
                            ControlCmd::SkipSeq { .. } => {
                                c.session.fault_skip_seq(sid).then_some(None)
                            }
                            ControlCmd::Duplicate { .. } => {
                                c.session.fault_duplicate_next(sid).then_some(None)
                            }
                            ControlCmd::Overflow { .. } => {
                                c.session.fault_buffer_overflow(sid).map(Some)
                            }
                            _ => c.session.fault_channel_error(sid).map(Some),
                        };
                        match frame {
                            Some(Some(frame)) => {
                                self.send_frames(*id, &[frame]);
                                hit.push(*id);
                            }
                            Some(None) => hit.push(*id),
                            None => {}
                        }
                    }
                    if hit.is_empty() && target != Target::All {
                        json_reply(404, &json!({"error": format!("unknown sid {sid}")}))
                    } else {
                        ok(&hit)
                    }
                }
                Err(reply) => reply,
            },
            ControlCmd::Pause => {
                self.exchange.set_paused(true);
                self.shared.paused.store(true, Ordering::SeqCst);
                let ids: Vec<u64> = self.conns.keys().copied().collect();
                for id in &ids {
                    self.send(
                        *id,
                        Out::Close {
                            reset: false,
                            reason: "exchange paused",
                        },
                    );
                    self.conns.remove(id);
                }
                ok(&ids)
            }
            ControlCmd::Halt => {
                self.halted = true;
                json_reply(
                    200,
                    &json!({"ok": true, "halted": true, "exchange_time_us": self.exchange.now_us()}),
                )
            }
            ControlCmd::Resume => {
                self.exchange.set_paused(false);
                self.shared.paused.store(false, Ordering::SeqCst);
                ok(&[])
            }
            ControlCmd::DumpBooks => {
                let mut books = Vec::new();
                match &self.load {
                    Some(load) => load.source.write_summary(&mut books),
                    None => self.exchange.write_final_books(&mut books),
                }
                if let Some(path) = &self.settings.final_books
                    && let Err(e) = std::fs::write(path, &books)
                {
                    return json_reply(
                        500,
                        &json!({"error": format!("writing {}: {e}", path.display())}),
                    );
                }
                (200, books)
            }
        }
    }

    fn stats(&self) -> Value {
        let connections: Vec<Value> = self
            .conns
            .iter()
            .map(|(id, c)| {
                let subs: Vec<Value> = c
                    .session
                    .subscriptions()
                    .iter()
                    .map(|(sid, channel)| json!({"sid": sid, "channel": channel.as_str()}))
                    .collect();
                json!({
                    "id": id,
                    "peer": c.link.peer.to_string(),
                    "subscriptions": subs,
                    "frames_sent": c.link.frames_sent.load(Ordering::Relaxed),
                })
            })
            .collect();
        let s = &self.shared;
        let load = self.load.as_ref().map(|l| {
            json!({
                "target_rate": l.rate,
                "events": l.generated,
                "pacing": l.pacing,
            })
        });
        json!({
            "load": load,
            "connections": connections,
            "exchange_time_us": self.exchange.now_us(),
            "ticks": self.clock.ticks_taken(),
            "markets": self.exchange.markets().len(),
            "trades": self.exchange.trades().len(),
            "paused": self.exchange.is_paused(),
            "frames_sent": s.frames_sent.load(Ordering::Relaxed),
            "ws_connections_total": s.ws_connections_total.load(Ordering::Relaxed),
            "rest_requests": s.rest_requests.load(Ordering::Relaxed),
            "rest_429": s.rest_429.load(Ordering::Relaxed),
            "auth_rejections": s.auth_rejections.load(Ordering::Relaxed),
            "slow_disconnects": s.slow_disconnects.load(Ordering::Relaxed),
            "reject_auth": s.reject_auth.load(Ordering::Relaxed),
            "ws_429": s.ws_429.load(Ordering::Relaxed),
            "command_rate_limited": s.command_rate_limited.load(Ordering::Relaxed),
            "force_429": s.force_429.load(Ordering::Relaxed),
            "rest_delay_ms": s.rest_delay_ms.load(Ordering::Relaxed),
        })
    }

    /// Flushes the truth log, writes the final books, closes every connection.
    fn finish(&mut self) {
        if let Some(truth) = &mut self.truth
            && let Err(e) = truth.flush()
        {
            log(&format!("truth log flush failed: {e}"));
        }
        if let Some(path) = &self.settings.final_books {
            let mut books = Vec::new();
            match &self.load {
                Some(load) => load.source.write_summary(&mut books),
                None => self.exchange.write_final_books(&mut books),
            }
            match std::fs::write(path, &books) {
                Ok(()) => log(&format!(
                    "final books of {} markets written to {}",
                    self.exchange.markets().len(),
                    path.display()
                )),
                Err(e) => log(&format!("writing final books to {}: {e}", path.display())),
            }
        }
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            self.send(
                id,
                Out::Close {
                    reset: false,
                    reason: "simulator shutting down",
                },
            );
        }
        self.conns.clear();
    }
}

fn json_reply(status: u16, value: &Value) -> (u16, Vec<u8>) {
    (status, serde_json::to_vec(value).unwrap_or_default())
}
