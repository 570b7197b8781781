//! Shared test helpers: start the real `kalshi-sim` binary on free loopback ports, talk to it
//! with a plain tungstenite client and raw HTTP.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

/// Generous bound for anything that should happen "soon" (never asserted on, only to avoid
/// hanging forever).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// Exchange start time used by tests that want reproducible output (2026-11-30T00:00:00Z).
pub const START_US: i64 = 1_796_000_000_000_000;

static DIRS: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary directory for this test process.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir =
        std::env::temp_dir().join(format!("kalshi-sim-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running simulator process; killed on drop.
pub struct Sim {
    pub child: Child,
    pub listen: String,
    pub control: String,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Sim {
    /// Starts the binary with `args` (plus free ports) and waits for its ready line.
    pub fn start(args: &[&str]) -> Sim {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kalshi-sim"));
        command
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut text);
            text
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = match serde_json::from_str(&line) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = child.wait();
                let stderr = stderr.join().unwrap_or_default();
                panic!("no ready line ({e}): {line:?}; stderr: {stderr}");
            }
        };
        Sim {
            child,
            listen: ready["listen"].as_str().unwrap().to_owned(),
            control: ready["control"].as_str().unwrap_or("").to_owned(),
            stderr: Some(stderr),
        }
    }

    /// Waits for the process to exit on its own (e.g. `--duration`); returns its stderr.
    pub fn wait(mut self) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kalshi-sim failed: {status}");
                break;
            }
            assert!(Instant::now() < deadline, "kalshi-sim did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stderr.take().unwrap().join().unwrap()
    }

    /// Sends SIGTERM (via `kill`) and waits for a clean exit; returns stderr.
    pub fn terminate(self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait()
    }

    /// A WebSocket client with extra handshake headers.
    pub fn ws_with(&self, headers: &[(&str, String)]) -> Result<Client, (u16, String)> {
        connect_ws(&self.listen, headers)
    }

    /// A WebSocket client (unsigned; for `--no-auth` sims).
    pub fn ws(&self) -> Client {
        self.ws_with(&[]).unwrap()
    }

    /// GET on the REST/WS listener.
    pub fn get(&self, target: &str) -> (u16, String) {
        http(&self.listen, "GET", target, &[])
    }

    /// GET with headers.
    pub fn get_with(&self, target: &str, headers: &[(&str, String)]) -> (u16, String) {
        http(&self.listen, "GET", target, headers)
    }

    /// POST on the control endpoint; panics unless 200.
    pub fn control(&self, target: &str) -> Value {
        let (status, body) = http(&self.control, "POST", target, &[]);
        assert_eq!(status, 200, "{target}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// GET /stats on the control endpoint.
    pub fn stats(&self) -> Value {
        let (status, body) = http(&self.control, "GET", "/stats", &[]);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub fn http(addr: &str, method: &str, target: &str, headers: &[(&str, String)]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

/// Splits a raw `Connection: close` response into status and body.
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// A plain WebSocket client over TCP (or any stream).
pub struct Client<S: Read + Write = TcpStream> {
    pub ws: WebSocket<S>,
    /// The client's local address (the peer the server sees).
    pub local: String,
    /// Every text frame received, in order.
    pub log: Vec<Value>,
    /// Raw text of frames that were not JSON.
    pub malformed: Vec<String>,
    /// Ping payloads received.
    pub pings: Vec<Vec<u8>>,
    next_id: u64,
}

pub fn connect_ws(listen: &str, headers: &[(&str, String)]) -> Result<Client, (u16, String)> {
    let stream = TcpStream::connect(listen).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let local = stream.local_addr().unwrap().to_string();
    let mut request = format!("ws://{listen}/trade-api/ws/v2")
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tungstenite::client(request, stream) {
        Ok((ws, _)) => Ok(Client::new(ws, local)),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(e) => panic!("handshake failed: {e}"),
    }
}

/// What ended a read.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// A close frame with this reason.
    Closed(String),
    /// The socket ended without a close frame.
    Reset(String),
}

impl<S: Read + Write> Client<S> {
    pub fn new(ws: WebSocket<S>, local: String) -> Self {
        Self {
            ws,
            local,
            log: Vec::new(),
            malformed: Vec::new(),
            pings: Vec::new(),
            next_id: 1,
        }
    }

    /// Sends a command with the next id; returns the id.
    pub fn command(&mut self, cmd: &str, params: Option<Value>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let mut value = serde_json::json!({"id": id, "cmd": cmd});
        if let Some(params) = params {
            value["params"] = params;
        }
        self.send_raw(&value.to_string());
        id
    }

    pub fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).unwrap();
    }

    /// Reads the next message; `Err` when the connection ended.
    pub fn next(&mut self) -> Result<Value, End> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(text)) => match serde_json::from_str::<Value>(&text) {
                    Ok(value) => {
                        self.log.push(value.clone());
                        return Ok(value);
                    }
                    Err(_) => {
                        self.malformed.push(text.to_string());
                        return Ok(Value::String(format!("MALFORMED:{text}")));
                    }
                },
                Ok(Message::Ping(payload)) => self.pings.push(payload.to_vec()),
                Ok(Message::Close(frame)) => {
                    return Err(End::Closed(
                        frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                    ));
                }
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => {
                    return Err(End::Closed(String::new()));
                }
                Err(e) => return Err(End::Reset(e.to_string())),
            }
        }
    }

    /// Reads (recording text frames) until a Ping arrives; returns its payload.
    pub fn wait_ping(&mut self) -> Vec<u8> {
        loop {
            match self.ws.read().unwrap() {
                Message::Ping(payload) => {
                    self.pings.push(payload.to_vec());
                    return payload.to_vec();
                }
                Message::Text(text) => {
                    if let Ok(value) = serde_json::from_str(&text) {
                        self.log.push(value);
                    }
                }
                _ => {}
            }
        }
    }

    /// Reads until `pred` matches a frame; returns it.
    pub fn until(&mut self, mut pred: impl FnMut(&Value) -> bool) -> Value {
        loop {
            let frame = self
                .next()
                .unwrap_or_else(|e| panic!("connection ended: {e:?}"));
            if pred(&frame) {
                return frame;
            }
        }
    }

    /// Reads until the connection ends; returns how.
    pub fn until_end(&mut self) -> End {
        loop {
            if let Err(end) = self.next() {
                return end;
            }
        }
    }

    /// Frames received so far that carry this sid.
    pub fn on_sid(&self, sid: u64) -> Vec<&Value> {
        self.log.iter().filter(|f| sid_of(f) == Some(sid)).collect()
    }
}

/// A frame's sid: top level, or `msg.sid` for `subscribed`.
pub fn sid_of(frame: &Value) -> Option<u64> {
    frame["sid"].as_u64().or_else(|| {
        (frame["type"] == "subscribed")
            .then(|| frame["msg"]["sid"].as_u64())
            .flatten()
    })
}

/// Checks that the sequenced frames of every sid in `log` carry seq 1, 2, 3, … with no gap or
/// repeat; returns the last seq per sid.
pub fn check_seq(log: &[Value]) -> std::collections::BTreeMap<u64, u64> {
    let mut last = std::collections::BTreeMap::new();
    for frame in log {
        if let (Some(sid), Some(seq)) = (frame["sid"].as_u64(), frame["seq"].as_u64()) {
            let expected = last.get(&sid).copied().unwrap_or(0) + 1;
            assert_eq!(
                seq,
                expected,
                "sid {sid}: seq {seq} after {}: {frame}",
                expected - 1
            );
            last.insert(sid, seq);
        }
    }
    last
}

/// Market tickers listed by the REST API (first page of up to 1000, status open).
pub fn open_tickers(sim: &Sim) -> Vec<String> {
    let (status, body) = sim.get("/trade-api/v2/markets?status=open&limit=1000");
    assert_eq!(status, 200, "{body}");
    let value: Value = serde_json::from_str(&body).unwrap();
    value["markets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["ticker"].as_str().unwrap().to_owned())
        .collect()
}

/// Reads a JSON-lines file.
pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Exact decimal text ("0.7900", "-15.82") to an integer in units of 10^-`scale`.
pub fn fixed(text: &str, scale: u32) -> i64 {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    assert!(frac.len() <= scale as usize, "{text}: too many decimals");
    let mut value: i64 = whole.parse::<i64>().unwrap() * 10_i64.pow(scale);
    if !frac.is_empty() {
        value += frac.parse::<i64>().unwrap() * 10_i64.pow(scale - frac.len() as u32);
    }
    if negative { -value } else { value }
}

/// A book: side -> price_e6 -> count_e2.
pub type Book = std::collections::BTreeMap<(String, i64), i64>;

/// Applies a signed change; removes the level at zero; panics on a negative size.
pub fn apply(book: &mut Book, side: &str, price_e6: i64, delta_e2: i64) {
    let key = (side.to_owned(), price_e6);
    let size = book.get(&key).copied().unwrap_or(0) + delta_e2;
    assert!(size >= 0, "level {key:?} went negative");
    if size == 0 {
        book.remove(&key);
    } else {
        book.insert(key, size);
    }
}

/// The final books file as ticker -> (market_seq, book).
pub fn final_books(path: &Path) -> std::collections::BTreeMap<String, (u64, Book)> {
    read_lines(path)
        .into_iter()
        .map(|line| {
            let record = &line["record"];
            let mut book = Book::new();
            for side in ["yes", "no"] {
                for level in record[side].as_array().unwrap() {
                    book.insert(
                        (side.to_owned(), level[0].as_i64().unwrap()),
                        level[1].as_i64().unwrap(),
                    );
                }
            }
            (
                record["ticker"].as_str().unwrap().to_owned(),
                (line["market_seq"].as_u64().unwrap(), book),
            )
        })
        .collect()
}

/// Writes a config file and returns its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("sim.toml");
    std::fs::write(&path, text).unwrap();
    path
}
