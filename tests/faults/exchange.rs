//! Harness of the exchange and security fault tests (`faults_exchange.rs`): the real
//! `kalshi-sim` and `kalshi-gatherer` binaries (built by `kalshi_cli::platform::service_bin_dir`
//! with the caller's profile), one throwaway PostgreSQL per scenario (kalshi-pg-harness), a
//! metrics recorder whose samples are checked against `monitoring/alerts.yml` by `promtool test
//! rules` (time-dilated as in `faults/promtool.rs`: one ~1 s step is 15 s of rule time), and the
//! truth checks: trades by `kalshi-verify` against the simulator's truth log, books rebuilt from
//! the latest stored snapshot and the later deltas against the simulator's final books.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kalshi_pg_harness::{PgCluster, PgOptions};
use serde_json::Value;

/// Generous bound for things that should happen soon (a hang guard, never a timing check).
pub(crate) const PATIENCE: Duration = Duration::from_secs(240);

/// Rule time per recorded step, in seconds (as `faults/promtool.rs`).
pub(crate) const STEP: u64 = 15;

/// The API key id every scenario starts with (long enough that the gatherer masks it).
pub(crate) const KEY_A: &str = "a7c1e0f2-5d3b-4e8a-9f00-0000000000aa";

/// The admin token the scenarios configure (through the environment).
pub(crate) const ADMIN_TOKEN: &str = "exchange-faults-admin-token-9c1d";

static DIRS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

/// A fresh temporary directory (mode 0700 by the umask of the test user is not assumed: key
/// files get 0600 explicitly).
pub(crate) fn temp_dir(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "kalshi-faults-exchange-{}-{tag}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory of the service binaries (built once per test process).
pub(crate) fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kalshi_cli::platform::service_bin_dir(None).unwrap())
        .clone()
}

/// Sends `bytes` on a fresh connection and reads until the peer closes (or `limit`); returns
/// what came back.
pub(crate) fn raw(addr: &str, bytes: &[u8], limit: Duration) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return Vec::new();
    };
    s.set_read_timeout(Some(limit)).unwrap();
    s.set_write_timeout(Some(limit)).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The status of a raw HTTP answer (0 when there is none).
pub(crate) fn status_of(answer: &[u8]) -> u16 {
    answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 request on a fresh connection; returns status and body (0 when it failed).
pub(crate) fn http(
    addr: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(request, "{name}: {value}\r\n");
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    let answer = raw(addr, request.as_bytes(), Duration::from_secs(60));
    let text = String::from_utf8_lossy(&answer).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status_of(&answer), body)
}

/// Waits for `cond` (a hang guard of `PATIENCE`, not a timing check).
pub(crate) fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < PATIENCE,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sums every sample of `name` (any labels) whose label text contains `filter`.
pub(crate) fn metric_sum(text: &str, name: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An API key pair (Ed25519: fast to sign in debug builds), private key 0600.
pub(crate) struct Key {
    pub(crate) id: String,
    pub(crate) private: PathBuf,
    pub(crate) public: PathBuf,
}

pub(crate) fn key(dir: &Path, id: &str) -> Key {
    let private = dir.join(format!("{id}.pem"));
    let public = dir.join(format!("{id}.pub.pem"));
    kalshi_auth::generate(kalshi_auth::KeyKind::Ed25519, &private, &public).unwrap();
    Key {
        id: id.to_owned(),
        private,
        public,
    }
}

/// The simulated exchange of a scenario.
pub(crate) struct Market {
    pub(crate) series: usize,
    pub(crate) events_per_series: usize,
    pub(crate) markets_per_event: usize,
    pub(crate) actions_per_second: u64,
    /// WebSocket commands per second per connection (error 27 past it) and the burst.
    pub(crate) commands_per_second: u32,
    pub(crate) command_burst: u32,
}

/// A running simulator; killed on drop.
pub(crate) struct Sim {
    child: Child,
    pub(crate) listen: String,
    pub(crate) control: String,
}

impl Sim {
    pub(crate) fn start(dir: &Path, keys: &[&Key], seed: u64, market: &Market) -> Sim {
        let mut key_lines = String::new();
        for k in keys {
            let _ = writeln!(key_lines, "\"{}\" = \"{}\"", k.id, k.public.display());
        }
        let config = format!(
            r#"seed = {seed}
truth_log = "{truth}"
final_books = "{books}"
[server]
listen = "127.0.0.1:0"
control = "127.0.0.1:0"
heartbeat_secs = 5.0
[auth]
enabled = true
[auth.keys]
{key_lines}
[rest]
rate_per_sec = 2000
burst = 2000
cost = 10
[session]
market_limit = 1000
commands_per_second = {cps}
command_burst = {burst}
[market]
series = {series}
events_per_series = {events}
markets_per_event = {per_event}
actions_per_second = {actions}
new_event_every_secs = 0.0
market_lifetime_secs = 3600.0
determine_delay_secs = 2.0
settle_delay_secs = 2.0
delayed_open_per_mille = 0
"#,
            truth = dir.join("truth.jsonl").display(),
            books = dir.join("books.jsonl").display(),
            cps = market.commands_per_second,
            burst = market.command_burst,
            series = market.series,
            events = market.events_per_series,
            per_event = market.markets_per_event,
            actions = market.actions_per_second,
        );
        let path = dir.join("sim.toml");
        std::fs::write(&path, config).unwrap();
        let stderr = std::fs::File::create(dir.join("sim.stderr")).unwrap();
        let mut child = Command::new(bin_dir().join("kalshi-sim"))
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
        }
    }

    /// POST on the control endpoint; panics unless 200. Returns the JSON answer.
    pub(crate) fn control(&self, target: &str) -> Value {
        let (status, body) = http(&self.control, "POST", target, &[]);
        assert_eq!(status, 200, "sim control {target}: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    pub(crate) fn stats(&self) -> Value {
        let (status, body) = http(&self.control, "GET", "/stats", &[]);
        assert_eq!(status, 200, "sim /stats: {body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Every handshake attempt so far: (unix µs, key id, status).
    pub(crate) fn handshakes(&self) -> Vec<(i64, String, u16)> {
        let (status, body) = http(&self.control, "GET", "/handshakes", &[]);
        assert_eq!(status, 200, "sim /handshakes: {body}");
        let list: Value = serde_json::from_str(&body).unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["unix_us"].as_i64().unwrap(),
                    h["key_id"].as_str().unwrap_or("").to_owned(),
                    h["status"].as_u64().unwrap() as u16,
                )
            })
            .collect()
    }

    /// A market ticker of the exchange.
    pub(crate) fn a_ticker(&self) -> String {
        let (_, body) = http(
            &self.listen,
            "GET",
            "/trade-api/v2/markets?limit=1&status=open",
            &[],
        );
        let page: Value = serde_json::from_str(&body).unwrap();
        page["markets"][0]["ticker"].as_str().unwrap().to_owned()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gatherer configuration.
#[derive(Clone)]
pub(crate) struct GConfig {
    pub(crate) ws_url: String,
    pub(crate) rest_url: String,
    pub(crate) key_id: String,
    pub(crate) key_file: PathBuf,
    pub(crate) database_url: String,
    pub(crate) spool: PathBuf,
    pub(crate) metrics_port: u16,
    pub(crate) health_port: u16,
    pub(crate) markets_per_subscription: usize,
    pub(crate) backoff_base_ms: u64,
    pub(crate) backoff_cap_ms: u64,
    pub(crate) jitter: f64,
    pub(crate) frame_bytes_max: usize,
}

impl GConfig {
    pub(crate) fn new(sim: &Sim, key: &Key, database_url: &str, dir: &Path) -> Self {
        Self {
            ws_url: format!("ws://{}/trade-api/ws/v2", sim.listen),
            rest_url: format!("http://{}/trade-api/v2", sim.listen),
            key_id: key.id.clone(),
            key_file: key.private.clone(),
            database_url: database_url.to_owned(),
            spool: dir.join("spool"),
            metrics_port: free_port(),
            health_port: free_port(),
            markets_per_subscription: 150,
            backoff_base_ms: 100,
            backoff_cap_ms: 1000,
            jitter: 0.5,
            frame_bytes_max: 4 << 20,
        }
    }

    pub(crate) fn toml(&self) -> String {
        format!(
            r#"[exchange]
environment = "sim"
ws_url = "{ws}"
rest_url = "{rest}"
key_id = "{key_id}"
private_key_file = "{key}"

[database]
url = "{db}"
gatherer_id = 1

[engine]
shard_cores = [0]
writer_core = 1
pin_threads = false

[subscriptions]
markets_per_subscription = {per_sub}
markets_per_command = {per_command}
commands_per_second = 50
command_burst = 50
response_timeout_ms = 3000

[reconnect]
backoff_base_ms = {base}
backoff_cap_ms = {cap}
jitter = {jitter}
healthy_after_ms = 2000

[poller]
interval_s = 86400
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
admin_token_env = "KALSHI_FAULTS_ADMIN_TOKEN"

[spool]
dir = "{spool}"

[writer]
flush_age_ms = 50

[limits]
liveness_timeout_ms = 15000
db_connect_timeout_ms = 1000
shutdown_timeout_ms = 90000
frame_bytes_max = {frame_max}
"#,
            ws = self.ws_url,
            rest = self.rest_url,
            key_id = self.key_id,
            key = self.key_file.display(),
            db = self.database_url,
            per_sub = self.markets_per_subscription,
            per_command = self.markets_per_subscription.min(50),
            base = self.backoff_base_ms,
            cap = self.backoff_cap_ms,
            jitter = self.jitter,
            metrics = self.metrics_port,
            health = self.health_port,
            spool = self.spool.display(),
            frame_max = self.frame_bytes_max,
        )
    }
}

/// A running `kalshi-gatherer`; killed on drop.
pub(crate) struct Gatherer {
    child: Option<Child>,
    pub(crate) metrics: String,
    pub(crate) health: String,
    pub(crate) stderr_path: PathBuf,
}

impl Gatherer {
    /// Starts the gatherer (`RUST_LOG=debug`: every reconnect attempt is logged with its delay).
    pub(crate) fn start(config: &GConfig, dir: &Path, tag: &str) -> Gatherer {
        let path = dir.join(format!("gatherer-{tag}.toml"));
        std::fs::write(&path, config.toml()).unwrap();
        let stderr_path = dir.join(format!("gatherer-{tag}.stderr"));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(bin_dir().join("kalshi-gatherer"))
            .arg("--config")
            .arg(&path)
            .env("KALSHI_FAULTS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "debug")
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

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Fails the test (with the log's tail) if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
            let log = self.stderr();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!("kalshi-gatherer exited ({status}):\n{tail}");
        }
    }

    pub(crate) fn health_status(&mut self) -> u16 {
        self.assert_running();
        http(&self.health, "GET", "/health", &[]).0
    }

    pub(crate) fn wait_healthy(&mut self) {
        wait_until("the gatherer to be healthy", || self.health_status() == 200);
    }

    /// The /metrics text (empty while the endpoint is not up).
    pub(crate) fn metrics_text(&mut self) -> String {
        self.assert_running();
        let (status, body) = http(&self.metrics, "GET", "/metrics", &[]);
        if status == 200 { body } else { String::new() }
    }

    pub(crate) fn metric(&mut self, name: &str, filter: &str) -> f64 {
        let text = self.metrics_text();
        metric_sum(&text, name, filter)
    }

    /// SIGTERM, then wait for the exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit()
    }

    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
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

/// Simulator, database and one gatherer.
pub(crate) struct Scenario {
    pub(crate) dir: PathBuf,
    pub(crate) sim: Sim,
    pub(crate) pg: PgCluster,
    pub(crate) config: GConfig,
    pub(crate) gatherer: Gatherer,
}

impl Scenario {
    /// Starts everything with key [`KEY_A`]. The resume file is seeded with the simulator's
    /// start, so the gatherer backfills the trades before its first subscription and the whole
    /// truth log is expected.
    pub(crate) fn start(
        tag: &str,
        seed: u64,
        market: &Market,
        tweak: impl FnOnce(&mut GConfig),
    ) -> Scenario {
        let dir = temp_dir(tag);
        let key = key(&dir, KEY_A);
        let pg = PgCluster::start(PgOptions::default()).unwrap();
        let sim_start = now_us();
        let sim = Sim::start(&dir, &[&key], seed, market);
        let mut config = GConfig::new(&sim, &key, &pg.url("kalshi"), &dir);
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

    pub(crate) fn db(&self) -> postgres::Client {
        kalshi_storage::connect(&self.pg.url("kalshi")).unwrap()
    }

    /// Lets the exchange trade on for `secs` seconds, failing if the gatherer exits.
    pub(crate) fn run_for(&mut self, secs: u64) {
        for _ in 0..secs * 5 {
            self.gatherer.assert_running();
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Ends the run: halts the exchange (no more events; connections stay), writes its final
    /// books, waits until the gatherer's database passes the trade check against the truth log
    /// (every trade present, none twice from the WebSocket, none wrong), stops the gatherer with
    /// SIGTERM (exit 0), and checks the books and the gap ledger. Returns the trade count.
    pub(crate) fn finish_and_verify(&mut self) -> usize {
        self.sim.control("/halt");
        self.sim.control("/dump-books");
        let truth = kalshi_verify::Truth::load(
            &self.dir.join("truth.jsonl"),
            &self.dir.join("books.jsonl"),
        )
        .unwrap();
        let window = kalshi_verify::Window {
            from_ts: 0,
            to_ts: i64::MAX,
        };
        let mut client = self.db();
        let start = Instant::now();
        let report = loop {
            self.gatherer.assert_running();
            let report = kalshi_verify::check(
                &mut client,
                &truth,
                window,
                kalshi_verify::TradeRule::OnceFromWebSocket,
            )
            .unwrap();
            let trades_ok = report.trades_missing_count == 0
                && report.trades_duplicated_count == 0
                && report.trades_wrong_count == 0;
            if trades_ok || start.elapsed() > PATIENCE {
                break report;
            }
            std::thread::sleep(Duration::from_secs(1));
        };
        assert!(
            report.trades_missing_count == 0
                && report.trades_duplicated_count == 0
                && report.trades_wrong_count == 0,
            "trades against the truth log:\n{report}\n{}",
            self.gatherer.stderr()
        );
        assert!(
            report.trades_expected > 50,
            "only {} trades",
            report.trades_expected
        );
        // Gaps: every detected gap has its repaired row.
        let start = Instant::now();
        loop {
            let open = unrepaired_gaps(&mut client);
            if open.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "gaps never repaired: {open:?}\n{}",
                self.gatherer
                    .stderr()
                    .lines()
                    .filter(|l| !l.contains(" DEBUG "))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let status = self.gatherer.terminate();
        assert!(
            status.success(),
            "gatherer exit {status}:\n{}",
            self.gatherer.stderr()
        );
        let log = self.gatherer.stderr();
        assert!(!log.contains("panicked"), "a thread panicked:\n{log}");
        let books = final_books(&self.dir.join("books.jsonl"));
        let compared = check_books(&mut client, &books);
        assert!(compared > 0, "no book compared");
        report.trades_expected
    }
}

impl Drop for Scenario {
    /// Removes the work directory (logs, spool, truth log, promtool files) when the test passed;
    /// a failed test leaves it for inspection (its path is in the failure messages).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "faults_exchange: work directory kept: {}",
                self.dir.display()
            );
        }
    }
}

/// A book: (side, price_e6) → count_e2.
pub(crate) type Book = BTreeMap<(String, i64), i64>;

/// The simulator's final books file: ticker → book.
pub(crate) fn final_books(path: &Path) -> BTreeMap<String, Book> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut books = BTreeMap::new();
    for line in text.lines() {
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

/// Rebuilds each market's book from its latest stored WebSocket snapshot plus the later deltas
/// of the same subscription and compares it with the simulator's final book (a single gatherer
/// cannot hold the deltas of its outages, so kalshi-verify's delta replay does not apply; the
/// resync snapshot is what makes its book right again). Returns how many were compared.
pub(crate) fn check_books(client: &mut postgres::Client, truth: &BTreeMap<String, Book>) -> usize {
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
        let sid: Option<i64> = row.get(2);
        let seq: Option<i64> = row.get(3);
        books.insert(ticker, (row.get(1), sid.unwrap(), seq.unwrap(), book));
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
        assert!(size >= 0, "{ticker}: level {key:?} went negative");
        if size == 0 {
            book.remove(&key);
        } else {
            book.insert(key, size);
        }
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
            let gaps: Vec<String> = client
                .query(
                    "SELECT detected_ts || ' ' || channel || ' sid ' || coalesce(sid::text, '-') \
                     || ' ' || coalesce(repair, '-') || ' repaired ' || coalesce(repaired_ts::text, '-') \
                     FROM sequence_gaps WHERE $1 = ANY (tickers) ORDER BY detected_ts",
                    &[ticker],
                )
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            panic!(
                "book of {ticker} differs from the simulator's final book:\n stored {book:?}\n truth  {expected:?}\n \
                 snapshots {snapshots:?}\n {} deltas, the last {:?}\n gaps {gaps:?}",
                deltas.len(),
                &deltas[deltas.len().saturating_sub(12)..]
            );
        }
        compared += 1;
    }
    compared
}

/// Gaps detected but never repaired (a detection row with no repaired row of the same gap).
pub(crate) fn unrepaired_gaps(client: &mut postgres::Client) -> Vec<String> {
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

/// Repaired gaps detected at or after `since_us`: (channel, repair, backfilled trades,
/// repaired_ts).
pub(crate) fn repaired_gaps_since(
    client: &mut postgres::Client,
    since_us: i64,
) -> Vec<(String, String, i64, i64)> {
    client
        .query(
            "SELECT channel, repair, coalesce(backfilled_trades, 0)::bigint, repaired_ts \
             FROM sequence_gaps WHERE repaired_ts IS NOT NULL AND detected_ts >= $1",
            &[&since_us],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// Scrapes one gatherer's /metrics about once a second on a background thread, keeping the
/// samples of `names` plus `up`, labelled `job="kalshi-gatherer", instance="gatherer-1"` as the
/// project's Prometheus config labels them.
pub(crate) struct Recorder {
    steps: Arc<Mutex<Vec<BTreeMap<String, f64>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Recorder {
    pub(crate) fn start(metrics_addr: &str, names: &[&'static str]) -> Recorder {
        let steps = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let steps = Arc::clone(&steps);
            let stop = Arc::clone(&stop);
            let addr = metrics_addr.to_owned();
            let names = names.to_vec();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let started = Instant::now();
                    let answer = raw(
                        &addr,
                        format!(
                            "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                        Duration::from_secs(5),
                    );
                    let base = "job=\"kalshi-gatherer\",instance=\"gatherer-1\"";
                    let mut sample = BTreeMap::new();
                    let up = status_of(&answer) == 200;
                    sample.insert(format!("up{{{base}}}"), if up { 1.0 } else { 0.0 });
                    if up {
                        let text = String::from_utf8_lossy(&answer).into_owned();
                        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                        for line in body.lines().filter(|l| !l.starts_with('#')) {
                            let Some((series, value)) = line.rsplit_once(' ') else {
                                continue;
                            };
                            let (name, labels) = match series.split_once('{') {
                                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                                None => (series, ""),
                            };
                            if !names.contains(&name) {
                                continue;
                            }
                            let Ok(v) = value.parse::<f64>() else {
                                continue;
                            };
                            let key = if labels.is_empty() {
                                format!("{name}{{{base}}}")
                            } else {
                                format!("{name}{{{base},{labels}}}")
                            };
                            sample.insert(key, v);
                        }
                    }
                    steps.lock().unwrap().push(sample);
                    if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
                        std::thread::sleep(rest);
                    }
                }
            })
        };
        Recorder {
            steps,
            stop,
            thread: Some(thread),
        }
    }

    /// The index of the next step (steps recorded so far).
    pub(crate) fn mark(&self) -> usize {
        self.steps.lock().unwrap().len()
    }

    /// Waits until at least `n` more steps are recorded.
    pub(crate) fn wait_steps(&self, n: usize) {
        let target = self.mark() + n;
        wait_until("recorder steps", || self.mark() >= target);
    }

    /// Stops recording; returns the samples.
    pub(crate) fn finish(mut self) -> Vec<BTreeMap<String, f64>> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.steps.lock().unwrap())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// promtool's path; fails the test, saying so, when it is not installed.
pub(crate) fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("promtool"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed: the fault tests evaluate the alert rules with it. \
                 Install it with scripts/check-monitoring.sh (Debian package `prometheus`)."
            )
        })
}

/// monitoring/alerts.yml without its `annotations:` blocks (their rendered text is tested by
/// monitoring/alerts_test.yml), written into `dir`.
fn rules_without_annotations(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../monitoring/alerts.yml");
    let text = std::fs::read_to_string(&source).unwrap();
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(level) = skipping {
            if line.trim().is_empty() || indent > level {
                continue;
            }
            skipping = None;
        }
        if line.trim() == "annotations:" {
            skipping = Some(indent);
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    let path = dir.join("alerts-without-annotations.yml");
    std::fs::write(&path, out).unwrap();
    path
}

/// Runs `promtool test rules` over the recorded `steps`: `alert` must fire at step `firing_at`
/// with exactly the alerts `expected` (labels besides `alertname`; empty: must not fire), and be
/// quiet at each step of `quiet_at`.
pub(crate) fn check_alert(
    dir: &Path,
    scenario: &str,
    steps: &[BTreeMap<String, f64>],
    alert: &str,
    firing_at: usize,
    expected: &[&[(&str, &str)]],
    quiet_at: &[usize],
) {
    let promtool = promtool();
    let rules = rules_without_annotations(dir);
    let mut test = format!(
        "# Generated by faults_exchange ({scenario}): one sample per {STEP}s of rule time\n\
         # (time-dilated: one sample was ~1 s of wall time).\n\
         rule_files:\n  - {}\nevaluation_interval: {STEP}s\ntests:\n  - name: '{scenario}'\n    interval: {STEP}s\n    input_series:\n",
        rules.display()
    );
    let keys: BTreeSet<&String> = steps.iter().flat_map(|s| s.keys()).collect();
    for key in keys {
        let mut values = Vec::new();
        let mut present = false;
        for s in steps {
            match s.get(key) {
                Some(v) => {
                    values.push(format!("{v}"));
                    present = true;
                }
                None if present => {
                    values.push("stale".to_owned());
                    present = false;
                }
                None => values.push("_".to_owned()),
            }
        }
        let _ = writeln!(
            test,
            "      - series: '{}'\n        values: '{}'",
            key.replace('\'', "''"),
            values.join(" ")
        );
    }
    test.push_str("    alert_rule_test:\n");
    let _ = writeln!(
        test,
        "      - eval_time: {}s\n        alertname: {alert}\n        exp_alerts:{}",
        firing_at as u64 * STEP,
        if expected.is_empty() { " []" } else { "" }
    );
    for labels in expected {
        let rendered: Vec<String> = labels.iter().map(|(k, v)| format!("{k}: '{v}'")).collect();
        let _ = writeln!(test, "          - exp_labels: {{{}}}", rendered.join(", "));
    }
    for q in quiet_at {
        let _ = writeln!(
            test,
            "      - eval_time: {}s\n        alertname: {alert}\n        exp_alerts: []",
            *q as u64 * STEP
        );
    }
    let path = dir.join(format!("{scenario}-{alert}.promtool-test.yml"));
    std::fs::write(&path, &test).unwrap();
    let output = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{scenario}: promtool says {alert} did not behave as expected (firing at step {firing_at} with {expected:?}, quiet at {quiet_at:?}); test file {}\n{}\n{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "faults_exchange: {scenario}: promtool confirms {alert} (firing at step {firing_at}: {expected:?}; quiet at {quiet_at:?})"
    );
}
