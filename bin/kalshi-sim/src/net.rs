//! The front server: one listener for the WebSocket (`/trade-api/ws/v2`) and REST
//! (`/trade-api/v2/...`), as on Kalshi's hosts.
//!
//! Each accepted connection (plain or TLS) gets a thread that reads HTTP requests with
//! kalshi-http. A WebSocket upgrade request is checked (pause, forced rejection, signature),
//! answered `101` and handed to tungstenite together with any bytes already read past the head;
//! the thread then runs the connection's I/O loop (`ws_loop`). Anything else is a REST
//! request: authenticated when it carries (or needs) the `KALSHI-ACCESS-*` headers,
//! rate-limited by a token bucket per key id (or per client IP when unsigned), optionally
//! delayed, and answered by the exchange thread through `kalshi_sim_core::route`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TryRecvError};
use kalshi_http::{HttpError, Limits, Request, RequestReader, Response, Stream, write_response};
use kalshi_sim_core::{HEARTBEAT_PAYLOAD, Heartbeat, HeartbeatAction, RateLimiter};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error as WsError, Message, Utf8Bytes, WebSocket};

use crate::auth::Auth;
use crate::engine::{ConnLink, EngineMsg, Out, Shared};

/// The WebSocket path.
pub const WS_PATH: &str = "/trade-api/ws/v2";
/// The REST prefix.
pub const REST_PREFIX: &str = "/trade-api/v2";
/// Body of a REST 429 (`protocol.md` §6.9, verbatim).
pub const BODY_429: &str = r#"{"error":"too many requests"}"#;

/// Everything a connection thread needs.
pub struct FrontCtx {
    /// The exchange thread's inbox.
    pub engine: Sender<EngineMsg>,
    /// Fault switches and counters.
    pub shared: Arc<Shared>,
    /// Signature checking (shared with the control endpoint, which registers and revokes keys).
    pub auth: Arc<Auth>,
    /// HTTP limits (head, body, timeouts).
    pub limits: Limits,
    /// Per-connection outbound queue capacity, in batches.
    pub queue_batches: usize,
    /// Ping interval, µs.
    pub heartbeat_us: i64,
    /// Unanswered pings before closing.
    pub missed_pongs_max: u32,
    /// REST bucket: (rate per second, burst, cost); rate 0 = unlimited.
    pub rest_bucket: (u64, u64, u64),
    /// REST buckets by client (key id or IP).
    pub buckets: Mutex<HashMap<String, RateLimiter>>,
    /// Next connection id.
    pub next_conn: AtomicU64,
    /// Process start, for monotonic µs.
    pub epoch: Instant,
}

impl FrontCtx {
    fn mono_us(&self) -> i64 {
        self.epoch.elapsed().as_micros() as i64
    }
}

fn log(message: &str) {
    eprintln!("kalshi-sim: {message}");
}

fn json(status: u16, body: &str) -> Response {
    Response::json(status, body.as_bytes().to_vec())
}

/// Serves one accepted connection until it closes.
pub fn serve_connection(ctx: &FrontCtx, mut stream: Stream, peer: SocketAddr) {
    let mut reader = RequestReader::new(ctx.limits.clone());
    loop {
        let request = match reader.read_request(&mut stream, Some(peer)) {
            Ok(request) => request,
            Err(error) => {
                if let Some(response) = error.response() {
                    let _ = write_response(&mut stream, &response, false, false);
                }
                if !matches!(error, HttpError::Closed | HttpError::Timeout) {
                    log(&format!("{peer}: {error}"));
                }
                stream.close();
                return;
            }
        };
        if request.path == WS_PATH {
            if request.is_websocket_upgrade() {
                let answer = handshake(ctx, &request);
                ctx.shared.record_handshake(
                    peer,
                    request.header(crate::auth::HEADER_KEY),
                    answer.as_ref().map_or_else(|r| r.status, |_| 101),
                );
                match answer {
                    Ok(accept) => {
                        let leftover = reader.take_buffered();
                        upgrade(ctx, stream, peer, &accept, leftover);
                    }
                    Err(response) => {
                        let _ = write_response(&mut stream, &response, false, false);
                        stream.close();
                    }
                }
                return;
            }
            let response = Response::text(400, "expected a WebSocket upgrade request\n");
            let _ = write_response(&mut stream, &response, false, false);
            stream.close();
            return;
        }
        let response = rest(ctx, &request);
        let keep_alive = !request.wants_close();
        if write_response(&mut stream, &response, keep_alive, request.method == "HEAD").is_err()
            || !keep_alive
        {
            stream.close();
            return;
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Checks a WebSocket handshake; returns the `Sec-WebSocket-Accept` value or the refusal.
fn handshake(ctx: &FrontCtx, request: &Request) -> Result<String, Response> {
    if ctx.shared.paused.load(Ordering::SeqCst) {
        return Err(json(
            503,
            r#"{"error":{"code":"exchange_paused","message":"exchange is paused"}}"#,
        ));
    }
    if ctx.shared.reject_auth.load(Ordering::SeqCst) {
        ctx.shared.auth_rejections.fetch_add(1, Ordering::Relaxed);
        return Err(json(401, crate::auth::BODY_BAD_SIGNATURE));
    }
    if ctx.shared.ws_429.load(Ordering::SeqCst) {
        return Err(json(429, BODY_429));
    }
    if let Err(body) = ctx.auth.check(request, now_ms()) {
        ctx.shared.auth_rejections.fetch_add(1, Ordering::Relaxed);
        return Err(json(401, body));
    }
    if request.header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Response::text(400, "Sec-WebSocket-Version must be 13\n")
            .with_header("Sec-WebSocket-Version", "13"));
    }
    match request.header("sec-websocket-key").map(str::trim) {
        Some(key) if !key.is_empty() => {
            Ok(tungstenite::handshake::derive_accept_key(key.as_bytes()))
        }
        _ => Err(Response::text(400, "Sec-WebSocket-Key is missing\n")),
    }
}

/// Answers one REST request.
fn rest(ctx: &FrontCtx, request: &Request) -> Response {
    ctx.shared.rest_requests.fetch_add(1, Ordering::Relaxed);
    let Some(rest_path) = request.path.strip_prefix(REST_PREFIX) else {
        return Response::not_found(&request.path);
    };
    if request.method != "GET" && request.method != "HEAD" {
        return Response::method_not_allowed(&request.method, &["GET", "HEAD"]);
    }
    // Market data is public (§2.6); a signed request is still checked, and the private
    // (portfolio) endpoints need a signature.
    let signed = request.header(crate::auth::HEADER_KEY).is_some()
        || request.header(crate::auth::HEADER_SIGNATURE).is_some()
        || request.header(crate::auth::HEADER_TIMESTAMP).is_some();
    if (signed || rest_path.starts_with("/portfolio"))
        && let Err(body) = ctx.auth.check(request, now_ms())
    {
        ctx.shared.auth_rejections.fetch_add(1, Ordering::Relaxed);
        return json(401, body);
    }
    if ctx.shared.take_forced_429() || !take_rest_token(ctx, request) {
        ctx.shared.rest_429.fetch_add(1, Ordering::Relaxed);
        return json(429, BODY_429);
    }
    let delay = ctx.shared.rest_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        std::thread::sleep(Duration::from_millis(delay.min(600_000)));
    }
    let (reply, answer) = crossbeam_channel::bounded(1);
    let msg = EngineMsg::Rest {
        method: "GET".into(),
        target: request.target.clone(),
        reply,
    };
    if ctx
        .engine
        .send_timeout(msg, Duration::from_secs(10))
        .is_err()
    {
        return Response::text(503, "exchange thread unavailable\n");
    }
    match answer.recv_timeout(Duration::from_secs(30)) {
        Ok(response) => Response::json(response.status, response.body),
        Err(_) => Response::text(503, "exchange thread did not answer\n"),
    }
}

/// Takes the request's cost from its client's bucket (key id when signed, else peer IP).
fn take_rest_token(ctx: &FrontCtx, request: &Request) -> bool {
    let (rate, burst, cost) = ctx.rest_bucket;
    if rate == 0 {
        return true;
    }
    let client = match request.header(crate::auth::HEADER_KEY) {
        Some(key) => format!("key:{key}"),
        None => request
            .peer
            .map_or_else(|| "unknown".to_owned(), |p| format!("ip:{}", p.ip())),
    };
    let now = ctx.mono_us();
    let Ok(mut buckets) = ctx.buckets.lock() else {
        return true;
    };
    // Bound the table: forget every idle client when it grows large.
    if buckets.len() > 10_000 {
        buckets.clear();
    }
    buckets
        .entry(client)
        .or_insert_with(|| RateLimiter::new(rate, burst))
        .try_take_n(now, cost)
}

/// Writes the 101 response and runs the WebSocket.
fn upgrade(ctx: &FrontCtx, mut stream: Stream, peer: SocketAddr, accept: &str, leftover: Vec<u8>) {
    let head = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    if stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.flush())
        .is_err()
    {
        return;
    }
    if let Err(e) = stream.tcp().set_nonblocking(true) {
        log(&format!("{peer}: cannot make the socket non-blocking: {e}"));
        return;
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(1 << 20))
        .max_frame_size(Some(1 << 20))
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(usize::MAX);
    let ws = WebSocket::from_partially_read(stream, leftover, Role::Server, Some(config));
    let id = ctx.next_conn.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = crossbeam_channel::bounded(ctx.queue_batches);
    let kill = Arc::new(AtomicBool::new(false));
    let frames_sent = Arc::new(AtomicU64::new(0));
    let link = ConnLink {
        id,
        peer,
        tx,
        kill: Arc::clone(&kill),
        frames_sent: Arc::clone(&frames_sent),
    };
    if ctx
        .engine
        .send_timeout(EngineMsg::Open(link), Duration::from_secs(10))
        .is_err()
    {
        return;
    }
    ctx.shared
        .ws_connections_total
        .fetch_add(1, Ordering::Relaxed);
    ctx.shared
        .ws_connections_open
        .fetch_add(1, Ordering::SeqCst);
    let end = ws_loop(ctx, ws, id, &rx, &kill, &frames_sent);
    ctx.shared
        .ws_connections_open
        .fetch_sub(1, Ordering::SeqCst);
    log(&format!("connection {id} ({peer}) ended: {end}"));
    let _ = ctx
        .engine
        .send_timeout(EngineMsg::Closed { conn: id }, Duration::from_secs(10));
}

fn would_block(e: &WsError) -> bool {
    matches!(e, WsError::Io(io) if io.kind() == io::ErrorKind::WouldBlock)
}

/// How the loop should end.
enum Ending {
    /// Send a close frame and wait briefly for the reply.
    Close(&'static str),
    /// Drop the socket without a close frame.
    Reset(&'static str),
    /// The connection is already gone.
    Gone(String),
}

/// The connection's I/O loop on a non-blocking socket: write queued batches (until the socket
/// pushes back), send pings, read client frames and forward them to the exchange thread; when
/// idle, wait on the outbound queue for up to 2 ms. Returns why it ended.
fn ws_loop(
    ctx: &FrontCtx,
    mut ws: WebSocket<Stream>,
    id: u64,
    rx: &crossbeam_channel::Receiver<Out>,
    kill: &AtomicBool,
    frames_sent: &AtomicU64,
) -> String {
    let mut heartbeat = Heartbeat::new(ctx.mono_us(), ctx.heartbeat_us, ctx.missed_pongs_max);
    let mut pending: Option<Out> = None;
    let mut stalled_until: Option<Instant> = None;
    let mut write_blocked = false;
    let ending = 'conn: loop {
        if kill.load(Ordering::SeqCst) {
            break Ending::Reset("outbound queue full (slow client)");
        }
        let now = Instant::now();
        if stalled_until.is_some_and(|t| now >= t) {
            stalled_until = None;
        }
        let stalled = stalled_until.is_some();
        let mut progressed = false;
        if write_blocked && !stalled {
            match ws.flush() {
                Ok(()) => {
                    write_blocked = false;
                    progressed = true;
                }
                Err(e) if would_block(&e) => {}
                Err(e) => break Ending::Gone(format!("write failed: {e}")),
            }
        }
        if !stalled && !write_blocked {
            for _ in 0..64 {
                let out = match pending.take() {
                    Some(out) => out,
                    None => match rx.try_recv() {
                        Ok(out) => out,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            break 'conn Ending::Close("exchange thread ended");
                        }
                    },
                };
                progressed = true;
                match out {
                    Out::Frames(batch) => {
                        for frame in batch.frames() {
                            // A frame that is not UTF-8 is a fault injection
                            // (`/malformed?kind=invalid-utf8`): sent as a raw text frame.
                            let message = match Utf8Bytes::try_from(frame.clone()) {
                                Ok(text) => Message::Text(text),
                                Err(_) => Message::Frame(Frame::message(
                                    frame,
                                    OpCode::Data(Data::Text),
                                    true,
                                )),
                            };
                            match ws.write(message) {
                                Ok(()) => {}
                                Err(e) if would_block(&e) => write_blocked = true,
                                Err(e) => break 'conn Ending::Gone(format!("write failed: {e}")),
                            }
                        }
                        frames_sent.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        ctx.shared
                            .frames_sent
                            .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    }
                    Out::Close {
                        reset: true,
                        reason,
                    } => break 'conn Ending::Reset(reason),
                    Out::Close {
                        reset: false,
                        reason,
                    } => break 'conn Ending::Close(reason),
                    Out::Stall { ms } => {
                        stalled_until = Some(now + Duration::from_millis(ms));
                        break;
                    }
                }
                if write_blocked {
                    break;
                }
            }
            if !write_blocked && stalled_until.is_none() {
                match ws.flush() {
                    Ok(()) => {}
                    Err(e) if would_block(&e) => write_blocked = true,
                    Err(e) => break Ending::Gone(format!("write failed: {e}")),
                }
            }
        }
        if stalled_until.is_none() {
            match heartbeat.poll(ctx.mono_us()) {
                HeartbeatAction::Idle => {}
                HeartbeatAction::SendPing => {
                    match ws.write(Message::Ping(HEARTBEAT_PAYLOAD.to_vec().into())) {
                        Ok(()) => {}
                        Err(e) if would_block(&e) => write_blocked = true,
                        Err(e) => break Ending::Gone(format!("ping failed: {e}")),
                    }
                    if !write_blocked {
                        match ws.flush() {
                            Ok(()) => {}
                            Err(e) if would_block(&e) => write_blocked = true,
                            Err(e) => break Ending::Gone(format!("ping failed: {e}")),
                        }
                    }
                }
                HeartbeatAction::Close => {
                    break Ending::Close("too many unanswered pings");
                }
            }
        }
        for _ in 0..64 {
            match ws.read() {
                Ok(Message::Text(text)) => {
                    progressed = true;
                    let msg = EngineMsg::Text {
                        conn: id,
                        text: text.as_bytes().to_vec(),
                    };
                    if ctx
                        .engine
                        .send_timeout(msg, Duration::from_secs(10))
                        .is_err()
                    {
                        break 'conn Ending::Close("exchange thread unavailable");
                    }
                }
                Ok(Message::Binary(bytes)) => {
                    progressed = true;
                    let msg = EngineMsg::Text {
                        conn: id,
                        text: bytes.to_vec(),
                    };
                    if ctx
                        .engine
                        .send_timeout(msg, Duration::from_secs(10))
                        .is_err()
                    {
                        break 'conn Ending::Close("exchange thread unavailable");
                    }
                }
                Ok(Message::Pong(_)) => heartbeat.on_pong(),
                Ok(Message::Ping(_) | Message::Frame(_)) => progressed = true,
                Ok(Message::Close(_)) => progressed = true,
                Err(e) if would_block(&e) => break,
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    break 'conn Ending::Gone("closed by the client".into());
                }
                Err(e) => break 'conn Ending::Gone(format!("read failed: {e}")),
            }
        }
        if !progressed {
            let wait = Duration::from_millis(2);
            if stalled_until.is_none() && !write_blocked && pending.is_none() {
                match rx.recv_timeout(wait) {
                    Ok(out) => pending = Some(out),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        break Ending::Close("exchange thread ended");
                    }
                }
            } else {
                std::thread::sleep(wait);
            }
        }
    };
    match ending {
        Ending::Gone(why) => why,
        Ending::Reset(why) => {
            let _ = ws.get_ref().tcp().shutdown(std::net::Shutdown::Both);
            format!("reset without a close frame: {why}")
        }
        Ending::Close(why) => {
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: why.into(),
            }));
            // Drive the close handshake (each read also flushes what is still buffered), then
            // drop the socket. The wait is generous: frames still buffered here were counted as
            // sent, and a slow client must get them before the close, or a truth check would
            // see them lost.
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                match ws.read() {
                    Ok(_) => {}
                    Err(e) if would_block(&e) => std::thread::sleep(Duration::from_millis(2)),
                    Err(_) => break,
                }
            }
            ws.get_mut().close();
            format!("closed: {why}")
        }
    }
}
