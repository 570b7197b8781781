//! One gatherer against the simulator and its own local PostgreSQL: the cheap rig of the
//! single-gatherer fault tests (`tests/faults_single.rs`). Much smaller than the whole platform
//! (`kalshi_cli::platform`): one cluster, one `kalshi-sim`, one `kalshi-gatherer`, so that a
//! fault that concerns only one gatherer host (its database, its disk, its memory) can be
//! injected without starting four clusters and five services.
//!
//! What it offers:
//! * [`Rig::start`]: the simulator (signed auth, truth log), a migrated-on-start local database,
//!   and the gatherer with a generated config, healthy;
//! * [`Recorder`]: one scrape of the gatherer per step, recorded as Prometheus series with
//!   `job="kalshi-gatherer", instance="gatherer-1"` (plus `up`), and evaluated against
//!   `monitoring/alerts.yml` with `promtool test rules`, time-dilated exactly as the platform
//!   suite's recorder (`faults/promtool.rs`, whose rule preparation is copied here because its
//!   recorder scrapes a `Platform`): one step of about one second counts as 15 s of rule time;
//! * [`Rig::finish`]: halts the exchange, waits until the gatherer has stored the truth log's
//!   trades, stops it with SIGTERM and checks the database with `kalshi-verify`;
//! * [`Tmpfs`] and [`MemoryCgroup`]: privileged fault fixtures that report why they are not
//!   available ([`skip`]) instead of failing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_verify::{Report, TradeRule, Truth, Window};

/// Rule time per recorded step, in seconds (as in `faults/promtool.rs`).
pub(crate) const STEP: u64 = 15;

/// Bound against hanging (never a timing assertion).
pub(crate) const PATIENCE: Duration = Duration::from_secs(240);

/// The instance label of the one gatherer.
pub(crate) const INSTANCE: &str = "gatherer-1";

static DIRS: AtomicU64 = AtomicU64::new(0);

/// Prints why a scenario cannot run here. The test then returns without failing: a missing
/// privilege is not a defect of the code under test, but it must never look like a pass.
pub(crate) fn skip(scenario: &str, reason: &str) {
    say(&format!("faults: SKIPPED {scenario}: {reason}"));
}

/// Writes a line to the real standard error, past the test harness's output capture, so that
/// it shows in a CI log of passing tests too (SKIPPED notices, measured recovery times).
pub(crate) fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A fresh work directory under the system temp dir (world-traversable, so that a tablespace
/// directory below it can be reached by the `postgres` user).
pub(crate) fn work_dir(tag: &str) -> PathBuf {
    let n = DIRS.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("kalshi-faults1-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The service binaries (built once per test process, in this target dir and profile).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| kalshi_cli::platform::service_bin_dir(None).unwrap())
}

/// One HTTP/1.1 request on a fresh connection: (status, body); status 0 when it failed.
pub(crate) fn http(addr: &str, method: &str, target: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
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

/// Sum of every sample of `name` whose labels contain `labels` (e.g. `type="timeout"`; empty:
/// every sample), in a Prometheus text page.
pub(crate) fn metric(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            if !(rest.starts_with(' ') || rest.starts_with('{')) {
                return None;
            }
            let (series, value) = l.rsplit_once(' ')?;
            if !labels.is_empty() && !series.contains(labels) {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// The simulated exchange.
pub(crate) struct Market {
    pub(crate) series: usize,
    pub(crate) events_per_series: usize,
    pub(crate) markets_per_event: usize,
    pub(crate) actions_per_second: u64,
}

/// A small exchange: 24 markets, 300 actions/s.
pub(crate) fn small_market() -> Market {
    Market {
        series: 3,
        events_per_series: 2,
        markets_per_event: 4,
        actions_per_second: 300,
    }
}

struct Sim {
    child: Child,
    control: String,
    ws_url: String,
    rest_url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gatherer process and how to start it again.
pub(crate) struct Gatherer {
    child: Option<Child>,
    config: PathBuf,
    log: PathBuf,
    /// `127.0.0.1:PORT` of /metrics.
    pub(crate) metrics: String,
    /// `127.0.0.1:PORT` of /health.
    pub(crate) health: String,
}

impl Gatherer {
    /// Starts the process (again) with the same config, spool and log file.
    pub(crate) fn start(&mut self) {
        assert!(self.child.is_none(), "the gatherer is already running");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bin_dir().join("kalshi-gatherer"))
            .arg("--config")
            .arg(&self.config)
            .env("KALSHI_KEY_ID", "faults")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The log so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test, with the log, when the process has exited.
    pub(crate) fn assert_running(&mut self) {
        let child = self.child.as_mut().unwrap();
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kalshi-gatherer exited ({status}):\n{}", self.log());
        }
    }

    /// Waits for /health 200.
    pub(crate) fn wait_healthy(&mut self) {
        let start = Instant::now();
        loop {
            self.assert_running();
            if http(&self.health, "GET", "/health").0 == 200 {
                return;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "gatherer not healthy: {:?}\n{}",
                http(&self.health, "GET", "/health"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the process to exit (bounded) and returns its status.
    pub(crate) fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                start.elapsed() < limit,
                "kalshi-gatherer did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The exit status when the process has exited (it is then no longer running).
    pub(crate) fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }

    /// SIGTERM and wait for the exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        let pid = self.pid().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_exit(PATIENCE)
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

/// Settings of one rig.
pub(crate) struct RigOptions {
    pub(crate) seed: u64,
    pub(crate) market: Market,
    /// The spool directory (default: `spool` in the work dir).
    pub(crate) spool: Option<PathBuf>,
    /// Extra TOML lines appended to the gatherer config's `[database]` table.
    pub(crate) database_extra: String,
    /// Extra TOML lines appended to the gatherer config's `[writer]` table.
    pub(crate) writer_extra: String,
}

impl RigOptions {
    pub(crate) fn new(seed: u64) -> RigOptions {
        RigOptions {
            seed,
            market: small_market(),
            spool: None,
            database_extra: String::new(),
            writer_extra: String::new(),
        }
    }
}

/// The simulator, one local PostgreSQL and one gatherer. Everything is stopped on drop.
pub(crate) struct Rig {
    pub(crate) dir: PathBuf,
    pub(crate) gatherer: Gatherer,
    sim: Sim,
    pub(crate) pg: PgCluster,
    /// The gatherer's spool directory.
    pub(crate) spool: PathBuf,
    /// Exchange time once the gatherer was healthy plus 2 s: capture is complete from here.
    pub(crate) from_ts: i64,
}

impl Rig {
    /// Starts the database, the exchange and the gatherer, and waits until it is healthy.
    pub(crate) fn start(tag: &str, options: RigOptions) -> Rig {
        let dir = work_dir(tag);
        let pg = PgCluster::start(PgOptions::default()).unwrap();
        let key = dir.join("kalshi-key.pem");
        let public = dir.join("kalshi-key.pub.pem");
        kalshi_auth::generate(kalshi_auth::KeyKind::Ed25519, &key, &public).unwrap();
        let m = &options.market;
        let sim_log = std::fs::File::create(dir.join("sim.log")).unwrap();
        let mut child = Command::new(bin_dir().join("kalshi-sim"))
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--seed", &options.seed.to_string()])
            .args(["--series", &m.series.to_string()])
            .args(["--events-per-series", &m.events_per_series.to_string()])
            .args(["--markets-per-event", &m.markets_per_event.to_string()])
            .args(["--actions-per-second", &m.actions_per_second.to_string()])
            .arg("--keys")
            .arg(format!("faults={}", public.display()))
            .arg("--truth-log")
            .arg(dir.join("truth.jsonl"))
            .arg("--final-books")
            .arg(dir.join("final-books.jsonl"))
            .stdout(Stdio::piped())
            .stderr(sim_log)
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let ready: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!(
                "kalshi-sim gave no ready line ({e}): {line:?}; log: {}",
                std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default()
            )
        });
        let sim = Sim {
            child,
            control: ready["control"].as_str().unwrap().to_owned(),
            ws_url: ready["ws_url"].as_str().unwrap().to_owned(),
            rest_url: ready["rest_url"].as_str().unwrap().to_owned(),
        };
        let spool = options.spool.unwrap_or_else(|| dir.join("spool"));
        std::fs::create_dir_all(&spool).unwrap();
        let metrics_port = free_port();
        let health_port = free_port();
        let config = format!(
            r#"[exchange]
environment = "sim"
ws_url = "{ws}"
rest_url = "{rest}"
key_id_env = "KALSHI_KEY_ID"
private_key_file = "{key}"

[database]
url = "{db}"
gatherer_id = 1
{database_extra}

[engine]
shard_cores = [0]
writer_core = 1
pin_threads = false

[reconnect]
backoff_base_ms = 100
backoff_cap_ms = 1000
healthy_after_ms = 2000

[poller]
interval_s = 60
backfill_margin_s = 2

[discovery]
interval_s = 15

[http]
metrics_addr = "127.0.0.1:{metrics_port}"
health_addr = "127.0.0.1:{health_port}"

[spool]
dir = "{spool}"

[writer]
flush_age_ms = 100
{writer_extra}

[limits]
db_connect_timeout_ms = 1000
shutdown_timeout_ms = 90000
"#,
            ws = sim.ws_url,
            rest = sim.rest_url,
            key = key.display(),
            db = pg.url("kalshi"),
            database_extra = options.database_extra,
            writer_extra = options.writer_extra,
            spool = spool.display(),
        );
        let config_path = dir.join("gatherer.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut gatherer = Gatherer {
            child: None,
            config: config_path,
            log: dir.join("gatherer.log"),
            metrics: format!("127.0.0.1:{metrics_port}"),
            health: format!("127.0.0.1:{health_port}"),
        };
        gatherer.start();
        gatherer.wait_healthy();
        std::thread::sleep(Duration::from_secs(2));
        let mut rig = Rig {
            dir,
            gatherer,
            sim,
            pg,
            spool,
            from_ts: 0,
        };
        rig.from_ts = rig.exchange_time_us();
        rig
    }

    /// The exchange's clock, µs.
    pub(crate) fn exchange_time_us(&self) -> i64 {
        let (status, body) = http(&self.sim.control, "GET", "/stats");
        assert_eq!(status, 200, "sim /stats: {body}");
        let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
        stats["exchange_time_us"].as_i64().unwrap()
    }

    /// A superuser session on the local database.
    pub(crate) fn db(&self) -> postgres::Client {
        kalshi_storage::connect(&self.pg.url("kalshi")).unwrap()
    }

    /// Ends the run: halts the exchange and writes its final books, waits (bounded) until the
    /// local database passes the truth check over `[from_ts, halt]` (trades only when
    /// `trades_only`: a scenario in which the WebSocket stream itself was interrupted repairs
    /// trades by backfill but books by snapshot, not by replaying the lost deltas), stops the
    /// gatherer with SIGTERM (exit 0 expected) and returns the final report.
    pub(crate) fn finish(&mut self, trades_only: bool) -> Report {
        let (status, body) = http(&self.sim.control, "POST", "/halt");
        assert_eq!(status, 200, "sim /halt: {body}");
        let halted: serde_json::Value = serde_json::from_str(&body).unwrap();
        let to_ts = halted["exchange_time_us"].as_i64().unwrap() + 1;
        let (status, body) = http(&self.sim.control, "POST", "/dump-books");
        assert_eq!(status, 200, "sim /dump-books: {body}");
        let truth = Truth::load(
            &self.dir.join("truth.jsonl"),
            &self.dir.join("final-books.jsonl"),
        )
        .unwrap();
        let window = Window {
            from_ts: self.from_ts,
            to_ts,
        };
        let ok = |r: &Report| {
            if trades_only {
                r.trades_missing_count == 0
                    && r.trades_duplicated_count == 0
                    && r.trades_wrong_count == 0
            } else {
                r.passed()
            }
        };
        let start = Instant::now();
        let mut client = self.db();
        loop {
            self.gatherer.assert_running();
            let report =
                kalshi_verify::check(&mut client, &truth, window, TradeRule::OnceFromWebSocket)
                    .unwrap();
            if ok(&report) {
                break;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the local database never passed the truth check:\n{report}\n{}",
                self.gatherer.log()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        let status = self.gatherer.terminate();
        assert!(status.success(), "gatherer exit {status}");
        let log = self.gatherer.log();
        assert!(!log.contains("panicked"), "a thread panicked:\n{log}");
        let report =
            kalshi_verify::check(&mut client, &truth, window, TradeRule::OnceFromWebSocket)
                .unwrap();
        assert!(ok(&report), "truth check failed after the stop:\n{report}");
        assert!(
            report.trades_expected > 50,
            "only {} trades in the window: the run proves little",
            report.trades_expected
        );
        report
    }

    /// (gaps detected, gaps never repaired) in `sequence_gaps` (a detection and its repair are
    /// two rows with the same detection; see tests/README.md).
    pub(crate) fn gaps(&self) -> (i64, i64) {
        let row = self
            .db()
            .query_one(
                "SELECT count(DISTINCT (detected_ts, channel, sid)), \
                        count(DISTINCT (detected_ts, channel, sid)) FILTER (WHERE NOT EXISTS ( \
                            SELECT 1 FROM sequence_gaps r WHERE r.detected_ts = g.detected_ts \
                            AND r.channel = g.channel AND r.sid IS NOT DISTINCT FROM g.sid \
                            AND r.repaired_ts IS NOT NULL)) \
                 FROM sequence_gaps g",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    }
}

impl Drop for Rig {
    /// Removes the work directory (truth log, logs) after a passing test; keeps it for the
    /// post-mortem of a failing one.
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("faults: work directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Samples of selected metrics of the one gatherer, one column per step.
pub(crate) struct Recorder {
    names: Vec<&'static str>,
    steps: Vec<BTreeMap<String, f64>>,
    /// The last page scraped (empty when the scrape failed).
    pub(crate) last: String,
}

/// One expected firing alert: its labels other than `alertname`.
pub(crate) type Labels = Vec<(&'static str, String)>;

impl Recorder {
    /// Records the metrics named in `names` (and `up`).
    pub(crate) fn new(names: &[&'static str]) -> Recorder {
        Recorder {
            names: names.to_vec(),
            steps: Vec::new(),
            last: String::new(),
        }
    }

    /// Number of steps recorded (the index of the next one).
    pub(crate) fn len(&self) -> usize {
        self.steps.len()
    }

    /// Scrapes the gatherer once and sleeps the rest of about one second.
    pub(crate) fn step(&mut self, gatherer: &Gatherer) {
        let started = Instant::now();
        let base = format!("job=\"kalshi-gatherer\",instance=\"{INSTANCE}\"");
        let mut sample = BTreeMap::new();
        let (status, body) = http(&gatherer.metrics, "GET", "/metrics");
        let body = if status == 200 { body } else { String::new() };
        sample.insert(
            format!("up{{{base}}}"),
            if status == 200 { 1.0 } else { 0.0 },
        );
        for line in body.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if !self.names.contains(&name) {
                continue;
            }
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            if !v.is_finite() {
                continue;
            }
            let key = if labels.is_empty() {
                format!("{name}{{{base}}}")
            } else {
                format!("{name}{{{base},{labels}}}")
            };
            sample.insert(key, v);
        }
        self.steps.push(sample);
        self.last = body;
        if let Some(rest) = Duration::from_secs(1).checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }

    /// Records steps until `done` holds for the last page scraped; panics after `limit`
    /// steps. Returns the steps taken.
    pub(crate) fn until(
        &mut self,
        gatherer: &Gatherer,
        limit: usize,
        what: &str,
        mut done: impl FnMut(&str) -> bool,
    ) -> usize {
        for n in 1..=limit {
            self.step(gatherer);
            if done(&self.last) {
                return n;
            }
        }
        panic!(
            "{what}: not reached within {limit} steps; last page:\n{}",
            self.last
        );
    }

    /// The value of a recorded series at `step` (`key` as recorded, without job/instance:
    /// e.g. `writer_errors_total{type="timeout"}`).
    pub(crate) fn value(&self, step: usize, name: &str, labels: &str) -> Option<f64> {
        let base = format!("job=\"kalshi-gatherer\",instance=\"{INSTANCE}\"");
        let key = if labels.is_empty() {
            format!("{name}{{{base}}}")
        } else {
            format!("{name}{{{base},{labels}}}")
        };
        self.steps.get(step)?.get(&key).copied()
    }

    fn input_series(&self) -> String {
        let keys: BTreeSet<&String> = self.steps.iter().flat_map(|s| s.keys()).collect();
        let mut out = String::new();
        for key in keys {
            let mut values = Vec::new();
            let mut present = false;
            for s in &self.steps {
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
                out,
                "      - series: '{}'\n        values: '{}'",
                key.replace('\'', "''"),
                values.join(" ")
            );
        }
        out
    }

    /// Runs promtool over the recording: `alert` fires at step `firing_at` with exactly the
    /// alerts `expected`, and is quiet at each step of `quiet_at`. Returns false (after saying
    /// SKIPPED) when promtool is not installed; panics with promtool's output when it
    /// disagrees.
    pub(crate) fn check(
        &self,
        dir: &Path,
        scenario: &str,
        alert: &str,
        firing_at: usize,
        expected: &[Labels],
        quiet_at: &[usize],
    ) -> bool {
        let Some(promtool) = promtool() else {
            skip(
                &format!("{scenario} (alert {alert} only)"),
                "promtool is not installed (scripts/check-monitoring.sh installs it, Debian \
                 package `prometheus`); the metric checks ran, the alert rule was not evaluated",
            );
            return false;
        };
        let rules = rules_without_annotations(dir);
        let mut test = format!(
            "# Generated by the single-gatherer fault tests ({scenario}): series recorded from a live\n\
             # gatherer, one sample per {STEP}s of rule time (time-dilated: one sample was ~1 s of wall time).\n\
             rule_files:\n  - {}\nevaluation_interval: {STEP}s\ntests:\n  - name: '{scenario}'\n    interval: {STEP}s\n    input_series:\n",
            rules.display()
        );
        test.push_str(&self.input_series());
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
            "{scenario}: promtool says {alert} did not behave as expected (firing at step {firing_at}, quiet at {quiet_at:?}); test file {}\n{}\n{}",
            path.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        say(&format!(
            "faults: {scenario}: promtool confirms {alert} {expected:?} at step {firing_at}, quiet at steps {quiet_at:?}"
        ));
        true
    }
}

/// The labels of one expected alert.
pub(crate) fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// promtool's path, when installed.
fn promtool() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("promtool"))
            .find(|p| p.is_file())
    })
}

/// monitoring/alerts.yml without its `annotations:` blocks (their rendered text is tested in
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

/// A tmpfs mounted for one scenario; unmounted on drop.
pub(crate) struct Tmpfs {
    pub(crate) path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2m`) at `path` (created), owned by `owner` when given.
    /// Err(reason) when this machine does not allow it (not root, mount refused).
    pub(crate) fn mount(path: &Path, size: &str, owner: Option<&str>) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755")])
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let tmpfs = Tmpfs {
            path: path.to_path_buf(),
        };
        if let Some(owner) = owner {
            let status = Command::new("chown")
                .arg(format!("{owner}:{owner}"))
                .arg(path)
                .status()
                .map_err(|e| format!("cannot run chown: {e}"))?;
            if !status.success() {
                return Err(format!("chown {owner} {} failed", path.display()));
            }
        }
        Ok(tmpfs)
    }

    /// Fills the file system with `name` but for `leave` bytes. Returns the filler's size.
    pub(crate) fn fill_leaving(&self, name: &str, leave: u64) -> u64 {
        let written = self.fill(name);
        let size = written.saturating_sub(leave);
        std::fs::File::options()
            .write(true)
            .open(self.path.join(name))
            .unwrap()
            .set_len(size)
            .unwrap();
        size
    }

    /// Fills the file system with `name` until the write fails (no space left).
    pub(crate) fn fill(&self, name: &str) -> u64 {
        let mut f = std::fs::File::create(self.path.join(name)).unwrap();
        let chunk = vec![0x5au8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => written += n as u64,
            }
        }
        let _ = f.sync_all();
        written
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.path).status();
        if !status.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        // The mount point and its scenario directory, when empty.
        let _ = std::fs::remove_dir(&self.path);
        if let Some(parent) = self.path.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// A cgroup v1 memory controller group for one scenario, a child of this process's own memory
/// group (so that the machine's accounting of the test still holds it); removed on drop.
pub(crate) struct MemoryCgroup {
    pub(crate) path: PathBuf,
    parent: PathBuf,
}

impl MemoryCgroup {
    /// Creates `<this process's memory group>/<name>`. Err(reason) when there is no cgroup v1
    /// memory controller or it cannot be written.
    pub(crate) fn create(name: &str) -> Result<MemoryCgroup, String> {
        let root = Path::new("/sys/fs/cgroup/memory");
        if !root.join("memory.limit_in_bytes").is_file() {
            return Err(
                "no cgroup v1 memory controller at /sys/fs/cgroup/memory (cgroup v2 only, or \
                 not mounted)"
                    .to_owned(),
            );
        }
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                let mut parts = l.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.trim_start_matches('/').to_owned())
            })
            .unwrap_or_default();
        let parent = root.join(own);
        let path = parent.join(name);
        std::fs::create_dir(&path)
            .map_err(|e| format!("cannot create the memory cgroup {}: {e}", path.display()))?;
        Ok(MemoryCgroup { path, parent })
    }

    /// Writes `value` into the control file `file`.
    pub(crate) fn write(&self, file: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(self.path.join(file), value)
    }

    /// Reads a control file.
    pub(crate) fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    /// A number from a control file (0 when unreadable).
    pub(crate) fn number(&self, file: &str) -> u64 {
        self.read(file).trim().parse().unwrap_or(0)
    }

    /// The `oom_kill` count of `memory.oom_control` (0 when the kernel does not report it).
    pub(crate) fn oom_kills(&self) -> u64 {
        self.read("memory.oom_control")
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Move anything left back to the parent group, then remove the group.
        let procs = self.read("cgroup.procs");
        for pid in procs.lines() {
            let _ = std::fs::write(self.parent.join("cgroup.procs"), pid);
        }
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "faults: could not remove the cgroup {}",
            self.path.display()
        );
    }
}
