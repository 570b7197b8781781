//! Shared helpers of the gatherer's integration tests: the real `kalshi-sim` and
//! `kalshi-gatherer` binaries, a throwaway PostgreSQL (kalshi-pg-harness), and the checks
//! against the simulator's truth log and final books.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::missing_panics_doc
)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kalshi_pg_harness::{PgCluster, PgOptions};
use serde_json::Value;

/// Generous bound for things that should happen soon (never a timing assertion).
pub const PATIENCE: Duration = Duration::from_secs(180);

static DIRS: AtomicU64 = AtomicU64::new(0);

pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A fresh temporary directory (mode 0700, so key files inside stay private).
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "kalshi-gatherer-test-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory of the workspace's binaries (`target/<profile>`), next to `deps/` where this
/// test executable lives.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    deps.parent().unwrap().to_path_buf()
}

/// The `kalshi-sim` binary, built on first use when missing.
pub fn sim_binary() -> PathBuf {
    let path = bin_dir().join("kalshi-sim");
    if !path.exists() {
        eprintln!("building kalshi-sim (not found at {})", path.display());
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "kalshi-sim", "--bin", "kalshi-sim"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p kalshi-sim failed");
    }
    assert!(
        path.exists(),
        "kalshi-sim not at {}; run `cargo build -p kalshi-sim`",
        path.display()
    );
    path
}

/// One HTTP/1.1 request on a fresh connection; returns status and body.
pub fn http(addr: &str, method: &str, target: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// Waits for `cond`, failing after `limit` (a bound against hanging, not a timing check).
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The market model of a scenario.
pub struct Market {
    pub series: usize,
    pub events_per_series: usize,
    pub markets_per_event: usize,
    pub actions_per_second: u64,
    pub new_event_every_secs: f64,
    pub market_lifetime_secs: f64,
}

/// A running simulator; killed on drop.
pub struct Sim {
    child: Child,
    pub listen: String,
    pub control: String,
    pub dir: PathBuf,
}

impl Sim {
    pub fn start(dir: &Path, key_id: &str, public_key: &Path, seed: u64, market: &Market) -> Sim {
        Self::start_with(dir, key_id, public_key, seed, market, None)
    }

    /// Starts the simulator; with `tls` (certificate chain and key PEM files) it serves
    /// `wss`/`https` only.
    pub fn start_with(
        dir: &Path,
        key_id: &str,
        public_key: &Path,
        seed: u64,
        market: &Market,
        tls: Option<(&Path, &Path)>,
    ) -> Sim {
        let tls_lines = tls.map_or_else(String::new, |(cert, key)| {
            format!(
                "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
                cert.display(),
                key.display()
            )
        });
        let config = format!(
            r#"seed = {seed}
truth_log = "{truth}"
final_books = "{books}"
[server]
listen = "127.0.0.1:0"
control = "127.0.0.1:0"
heartbeat_secs = 5.0
{tls_lines}[auth]
enabled = true
[auth.keys]
"{key_id}" = "{public}"
[rest]
rate_per_sec = 2000
burst = 2000
cost = 10
[session]
market_limit = 1000
commands_per_second = 100
command_burst = 200
[market]
series = {series}
events_per_series = {events}
markets_per_event = {per_event}
actions_per_second = {actions}
new_event_every_secs = {every}
market_lifetime_secs = {lifetime}
determine_delay_secs = 2.0
settle_delay_secs = 2.0
delayed_open_per_mille = 0
"#,
            truth = dir.join("truth.jsonl").display(),
            books = dir.join("books.jsonl").display(),
            public = public_key.display(),
            series = market.series,
            events = market.events_per_series,
            per_event = market.markets_per_event,
            actions = market.actions_per_second,
            every = market.new_event_every_secs,
            lifetime = market.market_lifetime_secs,
        );
        let path = dir.join("sim.toml");
        std::fs::write(&path, config).unwrap();
        let stderr = std::fs::File::create(dir.join("sim.stderr")).unwrap();
        let mut child = Command::new(sim_binary())
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "kalshi-sim gave no ready line ({e}): {line:?}; stderr: {}",
                std::fs::read_to_string(dir.join("sim.stderr")).unwrap_or_default()
            )
        });
        Sim {
            child,
            listen: ready["listen"].as_str().unwrap().to_owned(),
            control: ready["control"].as_str().unwrap().to_owned(),
            dir: dir.to_path_buf(),
        }
    }

    /// POST on the control endpoint; panics unless 200.
    pub fn control(&self, target: &str) -> String {
        let (status, body) = http(&self.control, "POST", target, &[]);
        assert_eq!(status, 200, "sim control {target}: {body}");
        body
    }

    pub fn get(&self, target: &str) -> (u16, String) {
        http(&self.listen, "GET", target, &[])
    }

    /// GET on the control endpoint (`/stats`, `/handshakes`).
    pub fn get_control(&self, target: &str) -> (u16, String) {
        http(&self.control, "GET", target, &[])
    }

    /// Every trade id of the truth log so far, with its ticker.
    pub fn truth_trades(&self) -> BTreeMap<String, String> {
        let text = std::fs::read_to_string(self.dir.join("truth.jsonl")).unwrap_or_default();
        let mut trades = BTreeMap::new();
        for line in text.lines() {
            let Ok(value) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            let record = &value["record"];
            if record["type"] == "trade" {
                trades.insert(
                    record["trade_id"].as_str().unwrap().to_owned(),
                    record["ticker"].as_str().unwrap().to_owned(),
                );
            }
        }
        trades
    }

    /// The books now (`POST /dump-books`): ticker → book.
    pub fn books(&self) -> BTreeMap<String, Book> {
        let body = self.control("/dump-books");
        let mut books = BTreeMap::new();
        for line in body.lines() {
            let value: Value = serde_json::from_str(line).unwrap();
            let record = &value["record"];
            let mut book = Book::new();
            for side in ["yes", "no"] {
                for level in record[side].as_array().unwrap() {
                    book.insert(
                        (side.to_owned(), level[0].as_i64().unwrap()),
                        level[1].as_i64().unwrap(),
                    );
                }
            }
            books.insert(record["ticker"].as_str().unwrap().to_owned(), book);
        }
        books
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A book: (side, price_e6) → count_e2.
pub type Book = BTreeMap<(String, i64), i64>;

/// Test credentials: an Ed25519 key pair (fast to sign in debug builds).
pub struct Keys {
    pub id: String,
    pub private: PathBuf,
    pub public: PathBuf,
}

pub fn keys(dir: &Path) -> Keys {
    let private = dir.join("kalshi-key.pem");
    let public = dir.join("kalshi-key.pub.pem");
    kalshi_auth::generate(kalshi_auth::KeyKind::Ed25519, &private, &public).unwrap();
    Keys {
        id: "7f3e2c1a-0000-4000-8000-00000000gath".to_owned(),
        private,
        public,
    }
}

/// A gatherer configuration for tests.
pub struct GathererConfig {
    pub ws_url: String,
    pub rest_url: String,
    pub key_id: String,
    pub key_file: PathBuf,
    pub database_url: String,
    pub spool: PathBuf,
    pub metrics_port: u16,
    pub health_port: u16,
    pub markets_per_subscription: usize,
    pub poller_interval_s: u64,
    /// `engine.shard_cores` (threads are not pinned, so these only name the shards).
    pub shard_cores: Vec<usize>,
    pub writer_core: usize,
    /// `exchange.tls_root_files`.
    pub tls_roots: Vec<PathBuf>,
    pub extra: String,
}

impl GathererConfig {
    pub fn new(sim: &Sim, keys: &Keys, database_url: &str, dir: &Path) -> Self {
        Self {
            ws_url: format!("ws://{}/trade-api/ws/v2", sim.listen),
            rest_url: format!("http://{}/trade-api/v2", sim.listen),
            key_id: keys.id.clone(),
            key_file: keys.private.clone(),
            database_url: database_url.to_owned(),
            spool: dir.join("spool"),
            metrics_port: free_port(),
            health_port: free_port(),
            markets_per_subscription: 150,
            poller_interval_s: 20,
            shard_cores: vec![0],
            writer_core: 1,
            tls_roots: Vec::new(),
            extra: String::new(),
        }
    }

    pub fn toml(&self) -> String {
        let roots: Vec<String> = self
            .tls_roots
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        format!(
            r#"[exchange]
environment = "sim"
ws_url = "{ws}"
rest_url = "{rest}"
key_id = "{key_id}"
private_key_file = "{key}"
tls_root_files = [{roots}]

[database]
url = "{db}"
gatherer_id = 3

[engine]
shard_cores = {shards:?}
writer_core = {writer}
pin_threads = false

[subscriptions]
markets_per_subscription = {per_sub}
markets_per_command = 50
commands_per_second = 50
command_burst = 50
response_timeout_ms = 3000

[reconnect]
backoff_base_ms = 100
backoff_cap_ms = 1000
healthy_after_ms = 2000

[poller]
interval_s = {poll}
reads_per_second = 150
read_burst = 150
rate_limited_backoff_ms = 200
rate_limited_backoff_cap_ms = 2000
backfill_margin_s = 2

[discovery]
interval_s = 15

[http]
metrics_addr = "127.0.0.1:{metrics}"
health_addr = "127.0.0.1:{health}"
admin_token_env = "KALSHI_TEST_ADMIN_TOKEN"

[spool]
dir = "{spool}"

[writer]
flush_age_ms = 50

[limits]
liveness_timeout_ms = 15000
db_connect_timeout_ms = 1000
shutdown_timeout_ms = 90000
{extra}"#,
            ws = self.ws_url,
            rest = self.rest_url,
            key_id = self.key_id,
            key = self.key_file.display(),
            roots = roots.join(", "),
            shards = self.shard_cores,
            writer = self.writer_core,
            db = self.database_url,
            per_sub = self.markets_per_subscription,
            poll = self.poller_interval_s,
            metrics = self.metrics_port,
            health = self.health_port,
            spool = self.spool.display(),
            extra = self.extra,
        )
    }
}

/// The admin token the tests configure (through the environment).
pub const ADMIN_TOKEN: &str = "test-admin-token-5b8e";

/// A running `kalshi-gatherer`; killed on drop.
pub struct Gatherer {
    child: Option<Child>,
    pub metrics: String,
    pub health: String,
    pub stderr_path: PathBuf,
}

impl Gatherer {
    pub fn start(config: &GathererConfig, dir: &Path, tag: &str) -> Gatherer {
        let path = dir.join(format!("gatherer-{tag}.toml"));
        std::fs::write(&path, config.toml()).unwrap();
        let stderr_path = dir.join(format!("gatherer-{tag}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        // KALSHI_GATHERER_WRAPPER runs the binary under a profiler (e.g. `heaptrack -o FILE`);
        // signals and `/proc` readings then go to the gatherer, the wrapper's child.
        let wrapper = std::env::var("KALSHI_GATHERER_WRAPPER").unwrap_or_default();
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut command = Command::new(program);
                command
                    .args(words)
                    .arg(env!("CARGO_BIN_EXE_kalshi-gatherer"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_kalshi-gatherer")),
        };
        let child = command
            .arg("--config")
            .arg(&path)
            .env("KALSHI_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        Gatherer {
            child: Some(child),
            metrics: format!("127.0.0.1:{}", config.metrics_port),
            health: format!("127.0.0.1:{}", config.health_port),
            stderr_path,
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Fails the test (with the log) if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            panic!("kalshi-gatherer exited ({status}):\n{}", self.stderr());
        }
    }

    pub fn health(&mut self) -> (u16, Value) {
        self.assert_running();
        let (status, body) = http(&self.health, "GET", "/health", &[]);
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub fn wait_healthy(&mut self) {
        let start = Instant::now();
        loop {
            let (status, body) = self.health();
            if status == 200 {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "gatherer not healthy: {body}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The /metrics text (empty while the endpoint is not up yet).
    pub fn metrics_text(&mut self) -> String {
        self.assert_running();
        let (status, body) = http(&self.metrics, "GET", "/metrics", &[]);
        if status == 200 { body } else { String::new() }
    }

    /// The value of an unlabelled metric (or the sum over its labels).
    pub fn metric(&mut self, name: &str) -> f64 {
        let text = self.metrics_text();
        metric_value(&text, name)
    }

    /// The gatherer's process id (while running): the child, or under
    /// KALSHI_GATHERER_WRAPPER the wrapper's child that runs the gatherer binary.
    pub fn pid(&self) -> Option<u32> {
        let pid = self.child.as_ref().map(Child::id)?;
        if std::env::var("KALSHI_GATHERER_WRAPPER").is_err() {
            return Some(pid);
        }
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(candidate) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat =
                std::fs::read_to_string(format!("/proc/{candidate}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            let exe = std::fs::read_link(format!("/proc/{candidate}/exe")).unwrap_or_default();
            if ppid == Some(pid) && exe.to_string_lossy().contains("kalshi-gatherer") {
                return Some(candidate);
            }
        }
        Some(pid)
    }

    /// SIGTERM, then wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "kalshi-gatherer did not exit:\n{}",
                std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Gatherer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sums every sample of `name` (any labels) in a Prometheus text exposition.
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A throwaway PostgreSQL with a `kalshi` database.
pub fn postgres() -> PgCluster {
    PgCluster::start(PgOptions::default()).unwrap()
}

pub fn db(pg: &PgCluster) -> postgres::Client {
    kalshi_storage::connect(&pg.url("kalshi")).unwrap()
}

/// Trade ids in `trades`: trade_id → (ws rows, rest rows).
pub fn stored_trades(client: &mut postgres::Client) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for row in client
        .query("SELECT trade_id, source FROM trades", &[])
        .unwrap()
    {
        let id: String = row.get(0);
        let source: String = row.get(1);
        let entry = out.entry(id).or_default();
        if source == "ws" {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    out
}

/// Truth trades missing from the database.
pub fn missing_trades(
    truth: &BTreeMap<String, String>,
    stored: &BTreeMap<String, (usize, usize)>,
) -> Vec<String> {
    truth
        .keys()
        .filter(|id| !stored.contains_key(*id))
        .cloned()
        .collect()
}

/// The trade checks: every truth trade stored, none stored over the WebSocket twice, nothing
/// stored that the exchange never traded. Returns (truth trades, ws-only, backfilled).
pub fn check_trades(
    truth: &BTreeMap<String, String>,
    client: &mut postgres::Client,
) -> (usize, usize, usize) {
    let stored = stored_trades(client);
    let missing = missing_trades(truth, &stored);
    assert!(
        missing.is_empty(),
        "{} of {} truth trades missing, e.g. {:?}",
        missing.len(),
        truth.len(),
        missing
            .iter()
            .take(5)
            .map(|id| (id, &truth[id]))
            .collect::<Vec<_>>()
    );
    let doubled: Vec<_> = stored.iter().filter(|(_, (ws, _))| *ws > 1).collect();
    assert!(
        doubled.is_empty(),
        "{} trades stored twice from the WebSocket, e.g. {:?}",
        doubled.len(),
        doubled.first()
    );
    let foreign: Vec<_> = stored
        .keys()
        .filter(|id| !truth.contains_key(*id))
        .collect();
    assert!(
        foreign.is_empty(),
        "trades not in the truth log: {foreign:?}"
    );
    let by_rest = stored.values().filter(|(_, rest)| *rest > 0).count();
    let ws_only = stored
        .values()
        .filter(|(ws, rest)| *ws == 1 && *rest == 0)
        .count();
    (truth.len(), ws_only, by_rest)
}

/// Rebuilds each market's book from its latest stored WebSocket snapshot plus the later deltas
/// of the same subscription, and compares it with the simulator's book: every market the
/// gatherer stored a snapshot of (still subscribed, or left after it closed, when no more order
/// flow can change it). Every market still subscribed must have one. Returns how many were
/// compared.
pub fn check_books(client: &mut postgres::Client, truth: &BTreeMap<String, Book>) -> usize {
    let live: BTreeSet<String> = client
        .query(
            "SELECT ticker FROM markets WHERE status IN ('initialized', 'active', 'inactive')",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let snapshots = client
        .query(
            "SELECT DISTINCT ON (ticker) ticker, received_ts, sid, seq, yes_price_e6, yes_count_e2, \
             no_price_e6, no_count_e2 FROM orderbook_snapshots WHERE source = 'ws' \
             ORDER BY ticker, received_ts DESC, seq DESC",
            &[],
        )
        .unwrap();
    let mut books: BTreeMap<String, (i64, i64, i64, Book)> = BTreeMap::new();
    for row in snapshots {
        let ticker: String = row.get(0);
        let mut book = Book::new();
        for (side, prices, counts) in [("yes", 4, 5), ("no", 6, 7)] {
            let prices: Vec<i64> = row.get(prices);
            let counts: Vec<i64> = row.get(counts);
            for (p, c) in prices.into_iter().zip(counts) {
                book.insert((side.to_owned(), p), c);
            }
        }
        let received: i64 = row.get(1);
        let sid: Option<i64> = row.get(2);
        let seq: Option<i64> = row.get(3);
        books.insert(ticker, (received, sid.unwrap(), seq.unwrap(), book));
    }
    let deltas = client
        .query(
            "SELECT ticker, received_ts, sid, seq, side, price_e6, delta_e2 FROM orderbook_deltas \
             ORDER BY ticker, seq",
            &[],
        )
        .unwrap();
    for row in deltas {
        let ticker: String = row.get(0);
        let Some((received, sid, seq, book)) = books.get_mut(&ticker) else {
            continue;
        };
        let (d_received, d_sid, d_seq): (i64, i64, i64) = (row.get(1), row.get(2), row.get(3));
        if d_sid != *sid || d_seq <= *seq || d_received < *received {
            continue;
        }
        let side: String = row.get(4);
        let key = (side, row.get::<_, i64>(5));
        let size = book.get(&key).copied().unwrap_or(0) + row.get::<_, i64>(6);
        assert!(
            size >= 0,
            "{ticker}: level {key:?} went negative in the stored stream"
        );
        if size == 0 {
            book.remove(&key);
        } else {
            book.insert(key, size);
        }
    }
    // A REST snapshot requested after a market's last stored delta was received and after its
    // latest WebSocket snapshot (a market that closed while the gatherer was down) is its
    // latest state. A REST snapshot's `snapshot_ts` is its request time: one whose request
    // was in flight when a delta arrived may or may not include that delta, so it is not used
    // (comparing its receive time instead made this check flaky on a loaded machine).
    let rest = client
        .query(
            "SELECT DISTINCT ON (s.ticker) s.ticker, s.snapshot_ts, s.yes_price_e6, s.yes_count_e2, \
             s.no_price_e6, s.no_count_e2 FROM orderbook_snapshots s WHERE s.source = 'rest' \
             AND s.snapshot_ts > coalesce((SELECT max(d.received_ts) FROM orderbook_deltas d \
             WHERE d.ticker = s.ticker), 0) \
             ORDER BY s.ticker, s.snapshot_ts DESC",
            &[],
        )
        .unwrap();
    for row in rest {
        let ticker: String = row.get(0);
        let received: i64 = row.get(1);
        // A market never subscribed (listed in the last moments) has only poller snapshots.
        if (live.contains(&ticker) && !books.contains_key(&ticker))
            || books
                .get(&ticker)
                .is_some_and(|(ws_received, ..)| *ws_received > received)
        {
            continue;
        }
        let mut book = Book::new();
        for (side, prices, counts) in [("yes", 2, 3), ("no", 4, 5)] {
            let prices: Vec<i64> = row.get(prices);
            let counts: Vec<i64> = row.get(counts);
            for (p, c) in prices.into_iter().zip(counts) {
                book.insert((side.to_owned(), p), c);
            }
        }
        books.insert(ticker, (received, 0, 0, book));
    }
    // A market listed in the last moments before the final pause may not have been
    // subscribed yet (its trades are backfilled; it has no book to compare): report them.
    let unsubscribed = live.iter().filter(|t| !books.contains_key(*t)).count();
    if unsubscribed > 0 {
        println!("{unsubscribed} live markets had no snapshot yet at the end");
    }
    let mut compared = 0;
    for (ticker, (_, _, _, book)) in &books {
        let expected = truth
            .get(ticker)
            .unwrap_or_else(|| panic!("{ticker} is not a simulator market"));
        if book != expected {
            let snapshots: Vec<(i64, Option<i64>, Option<i64>, String)> = client
                .query(
                    "SELECT received_ts, sid, seq, source FROM orderbook_snapshots \
                     WHERE ticker = $1 ORDER BY received_ts",
                    &[ticker],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                .collect();
            let deltas: Vec<(i64, i64, i64)> = client
                .query(
                    "SELECT received_ts, sid, seq FROM orderbook_deltas WHERE ticker = $1 \
                     ORDER BY received_ts",
                    &[ticker],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1), r.get(2)))
                .collect();
            let market: Vec<(String, i64)> = client
                .query(
                    "SELECT status, updated_ts FROM markets WHERE ticker = $1",
                    &[ticker],
                )
                .unwrap()
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let gaps: Vec<String> = client
                .query(
                    "SELECT channel || ' sid ' || coalesce(sid::text, '-') || ' ' || \
                     coalesce(expected_seq::text, '-') || '->' || coalesce(received_seq::text, '-') \
                     || ' ' || coalesce(repair, '-') FROM sequence_gaps ORDER BY detected_ts",
                    &[],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .unwrap_or_default();
            panic!(
                "book of {ticker} differs from the simulator's:\n stored {book:?}\n truth {expected:?}\n market {market:?}\n snapshots {snapshots:?}\n last deltas {:?}\n gaps {gaps:?}",
                &deltas[deltas.len().saturating_sub(8)..]
            );
        }
        compared += 1;
    }
    compared
}

/// Gaps detected but never repaired: detection rows with no row of the same gap carrying a
/// `repaired_ts`.
pub fn unrepaired_gaps(client: &mut postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT d.channel || ' sid ' || coalesce(d.sid::text, '-') || ': ' || coalesce(d.note, '') \
             FROM sequence_gaps d WHERE d.repaired_ts IS NULL AND NOT EXISTS ( \
               SELECT 1 FROM sequence_gaps r WHERE r.gatherer_id = d.gatherer_id \
               AND r.detected_ts = d.detected_ts AND r.channel = d.channel \
               AND r.sid IS NOT DISTINCT FROM d.sid AND r.repaired_ts IS NOT NULL)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// (channel, repair) of every repaired gap.
pub fn repaired_gaps(client: &mut postgres::Client) -> Vec<(String, String)> {
    client
        .query(
            "SELECT channel, repair FROM sequence_gaps WHERE repaired_ts IS NOT NULL",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A whole scenario: simulator, database, gatherer.
pub struct Scenario {
    pub dir: PathBuf,
    pub sim: Sim,
    pub pg: PgCluster,
    pub config: GathererConfig,
    pub gatherer: Gatherer,
}

impl Scenario {
    /// Starts everything. The resume file is seeded with the simulator's start, so the
    /// gatherer backfills the trades of the seconds before its first subscription: the truth
    /// log's every trade is then expected.
    pub fn start(
        tag: &str,
        seed: u64,
        market: &Market,
        tweak: impl FnOnce(&mut GathererConfig),
    ) -> Scenario {
        let dir = temp_dir(tag);
        let keys = keys(&dir);
        let pg = postgres();
        let sim_start = now_us();
        let sim = Sim::start(&dir, &keys.id, &keys.public, seed, market);
        let mut config = GathererConfig::new(&sim, &keys, &pg.url("kalshi"), &dir);
        tweak(&mut config);
        std::fs::create_dir_all(&config.spool).unwrap();
        std::fs::write(
            config.spool.join("gatherer-resume"),
            format!("{}\n", sim_start - 1_000_000),
        )
        .unwrap();
        let mut gatherer = Gatherer::start(&config, &dir, "1");
        gatherer.wait_healthy();
        Scenario {
            dir,
            sim,
            pg,
            config,
            gatherer,
        }
    }

    /// Halts the exchange (no more events; connections stay open), waits until every truth
    /// trade is stored, every connection is fully subscribed and every frame read, stops the
    /// gatherer with SIGTERM (asserting a clean exit) and returns the truth.
    ///
    /// Not `/pause`: pausing closes every connection and refuses handshakes, so a connection
    /// that was down or resubscribing at that moment (a reconnect after a liveness timeout on
    /// a loaded machine) could never bring its markets' books up to date, and their deltas
    /// since the drop are gone for good: a failure of the test's ending, not of the gatherer
    /// (seen in the scale test at a load average of ~12).
    pub fn finish(&mut self) -> (BTreeMap<String, String>, BTreeMap<String, Book>) {
        self.finish_with(|_, _| {})
    }

    /// Waits until the gatherer has read every text frame the (halted) simulator wrote.
    ///
    /// Every trade being stored does not mean every delta is: a market's trades and deltas may
    /// travel on different connections, and a trade may have come by REST backfill. SIGTERM
    /// stops reading, so a delta still in a socket then would be missing from the stored book
    /// (the race behind an earlier one-delta book mismatch). Frames written into a connection
    /// that then died are never read; when neither count has moved for 5 s the wait ends.
    fn wait_frames_read(&mut self) {
        let start = Instant::now();
        let mut last = (f64::NAN, f64::NAN);
        let mut still_since = Instant::now();
        loop {
            let (_, stats) = self.sim.get_control("/stats");
            let sent = serde_json::from_str::<Value>(&stats)
                .ok()
                .and_then(|v| v["frames_sent"].as_f64())
                .unwrap_or(f64::NAN);
            let read = self.gatherer.metric("ws_client_messages_received_total");
            if read >= sent {
                return;
            }
            if (sent, read) != last {
                last = (sent, read);
                still_since = Instant::now();
            } else if still_since.elapsed() > Duration::from_secs(5) {
                eprintln!("frames: {sent} sent, {read} read; the rest went to closed connections");
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the gatherer read {read} of {sent} frames:\n{}",
                self.gatherer.stderr()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// [`Scenario::finish`], running `check` (with the gatherer and the database) once every
    /// truth trade is stored and before the gatherer is stopped; the exchange is halted then.
    pub fn finish_with(
        &mut self,
        check: impl FnOnce(&mut Gatherer, &mut postgres::Client),
    ) -> (BTreeMap<String, String>, BTreeMap<String, Book>) {
        self.sim.control("/halt");
        let books = self.sim.books();
        let truth = self.sim.truth_trades();
        let mut client = db(&self.pg);
        let start = Instant::now();
        loop {
            self.gatherer.assert_running();
            let stored = stored_trades(&mut client);
            let last_missing = missing_trades(&truth, &stored);
            if last_missing.is_empty() {
                break;
            }
            if start.elapsed() > PATIENCE {
                let mut detail = String::new();
                for id in last_missing.iter().take(5) {
                    let ticker = &truth[id];
                    let rows = client
                        .query(
                            "SELECT status, updated_ts FROM markets WHERE ticker = $1",
                            &[ticker],
                        )
                        .unwrap();
                    let status: Vec<(String, i64)> =
                        rows.iter().map(|r| (r.get(0), r.get(1))).collect();
                    detail.push_str(&format!("{id} {ticker} market rows {status:?}\n"));
                }
                let text = std::fs::read_to_string(self.dir.join("truth.jsonl")).unwrap();
                for line in text.lines() {
                    if last_missing
                        .iter()
                        .take(5)
                        .any(|id| line.contains(id.as_str()))
                    {
                        detail.push_str(line);
                        detail.push('\n');
                    }
                }
                panic!(
                    "{} truth trades still missing:\n{detail}\n{}",
                    last_missing.len(),
                    self.gatherer.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.gatherer.wait_healthy();
        self.wait_frames_read();
        check(&mut self.gatherer, &mut client);
        let status = self.gatherer.terminate();
        assert!(
            status.success(),
            "gatherer exit {status}:\n{}",
            self.gatherer.stderr()
        );
        let log = self.gatherer.stderr();
        assert!(!log.contains("panicked"), "a thread panicked:\n{log}");
        (truth, books)
    }
}
