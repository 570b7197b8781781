//! The collector under test: how each one is started, and its CPU time and memory from /proc.
//!
//! The harness is collector-agnostic. A collector is started with the simulator's WebSocket
//! and REST URLs and the database URL; it must subscribe `orderbook_delta`, `trade` and
//! `ticker` for every market the REST listing returns, write rows into the gatherer schema
//! (`orderbook_deltas`, `trades`, `tickers`, `orderbook_snapshots`) with `gatherer_id` 1, and
//! keep running after the exchange closes the connection until it is sent SIGTERM (so that
//! its CPU time can be read after its last commit).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::sim::{Sim, signal};

/// Which collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// bench/baselines/python/collector.py in its venv.
    Python {
        /// The venv's python.
        python: PathBuf,
        /// collector.py.
        script: PathBuf,
    },
    /// bench/baselines/rust-typical, built.
    RustTypical {
        /// The typical-collector binary.
        bin: PathBuf,
    },
    /// The platform's `kalshi-gatherer`.
    Gatherer {
        /// The kalshi-gatherer binary.
        bin: PathBuf,
        /// Shard cores (1 or 2; the writer is on core 1 either way, so with 2 shards it shares
        /// a core with the second shard).
        shards: usize,
        /// Confine the process to these CPUs (`taskset -c`), e.g. "0" for one core.
        cpus: Option<&'static str>,
    },
}

/// A collector of the comparison.
#[derive(Debug, Clone)]
pub(crate) struct Collector {
    /// Column name in the report.
    pub(crate) name: &'static str,
    /// How to start it.
    pub(crate) kind: Kind,
}

/// The API key a collector signs with (the gatherer; the baselines connect unsigned).
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// Key id (KALSHI-ACCESS-KEY).
    pub(crate) id: String,
    /// Private key file (mode 0600).
    pub(crate) private: PathBuf,
    /// Public key file, registered in the simulator's `[auth.keys]`.
    pub(crate) public: PathBuf,
}

impl Collector {
    /// Whether the collector subscribes all `markets` before the simulator's first event
    /// (one subscribe command on one connection), so that it must store every event.
    pub(crate) fn subscribes_before_first_event(&self, markets: usize) -> bool {
        match self.kind {
            Kind::Python { .. } | Kind::RustTypical { .. } => {
                markets <= crate::check::SUBSCRIBE_CHUNK
            }
            Kind::Gatherer { .. } => false,
        }
    }

    /// A fresh Ed25519 key in `dir` for collectors that sign their handshake (made with
    /// `kalshi-sim keygen`).
    pub(crate) fn key(&self, sim_bin: &Path, dir: &Path) -> Result<Option<Key>> {
        if !matches!(self.kind, Kind::Gatherer { .. }) {
            return Ok(None);
        }
        let key = Key {
            id: "e2e00000-0000-4000-8000-000000000001".to_owned(),
            private: dir.join("key.pem"),
            public: dir.join("key.pub.pem"),
        };
        let out = Command::new(sim_bin)
            .args(["keygen", "--kind", "ed25519", "--private"])
            .arg(&key.private)
            .arg("--public")
            .arg(&key.public)
            .output()?;
        if !out.status.success() {
            bail!(
                "kalshi-sim keygen: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Some(key))
    }

    /// Starts the collector against `sim` and the database `db_url`; its output goes to
    /// `dir/<name>.log`.
    pub(crate) fn spawn(
        &self,
        sim: &Sim,
        db_url: &str,
        dir: &Path,
        key: Option<&Key>,
    ) -> Result<Child> {
        let log = std::fs::File::create(dir.join(format!("{}.log", self.name)))?;
        let common = |cmd: &mut Command| {
            cmd.args(["--ws", &sim.ws_url, "--rest", &sim.rest_url, "--db", db_url])
                .args(["--gatherer-id", "1"]);
        };
        let mut cmd = match &self.kind {
            Kind::Python { python, script } => {
                let mut c = Command::new(python);
                c.arg(script);
                common(&mut c);
                c
            }
            Kind::RustTypical { bin } => {
                let mut c = Command::new(bin);
                common(&mut c);
                c
            }
            Kind::Gatherer { bin, shards, cpus } => {
                if !bin.exists() {
                    bail!(
                        "pending: {} does not exist (kalshi-gatherer not built on this branch)",
                        bin.display()
                    );
                }
                let key = key.context("the gatherer needs a key")?;
                let config = dir.join("gatherer.toml");
                // The gatherer refuses two stages on one core, so with two shards the writer
                // gets "core" 2: unpinned (pin_threads = false), it shares the two CPUs.
                let writer_core = if *shards >= 2 { 2 } else { 1 };
                std::fs::write(
                    &config,
                    gatherer_config(sim, db_url, dir, key, *shards, writer_core)?,
                )?;
                let mut c = match cpus {
                    Some(cpus) => {
                        // taskset execs the gatherer: the child's pid is the gatherer's.
                        let mut c = Command::new("taskset");
                        c.args(["-c", cpus]).arg(bin);
                        c
                    }
                    None => Command::new(bin),
                };
                c.arg("--config")
                    .arg(&config)
                    .env("RUST_LOG", "warn")
                    .env("E2E_GATHERER_ADMIN_TOKEN", "e2e-admin-token-not-secret");
                c
            }
        };
        cmd.stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting collector {}", self.name))
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The kalshi-gatherer configuration of one run (engine/gather/gatherer.example.toml): the
/// simulator's URLs, the run's key, the throwaway database, `shards` shard cores (0, or 0 and 1)
/// and the writer core (1), no REST poller (its snapshots would be extra rows), subscriptions
/// as fast as the simulator allows. With two shards the markets are split over two
/// connections of at most 500 markets each so that both shards have work.
fn gatherer_config(
    sim: &Sim,
    db_url: &str,
    dir: &Path,
    key: &Key,
    shards: usize,
    writer_core: usize,
) -> Result<String> {
    let (shard_cores, per_subscription) = if shards >= 2 {
        ("[0, 1]", 500)
    } else {
        ("[0]", 1000)
    };
    Ok(format!(
        r#"[exchange]
environment = "sim"
ws_url = "{ws}"
rest_url = "{rest}"
key_id = "{key_id}"
private_key_file = "{private}"

[database]
url = "{db_url}"
gatherer_id = 1

[engine]
shard_cores = {shard_cores}
writer_core = {writer_core}
pin_threads = false

[subscriptions]
markets_per_subscription = {per_subscription}
markets_per_command = {per_subscription}
commands_per_second = 1000
command_burst = 1000

[poller]
enabled = false

[http]
metrics_addr = "127.0.0.1:{metrics}"
health_addr = "127.0.0.1:{health}"
admin_token_env = "E2E_GATHERER_ADMIN_TOKEN"

[spool]
dir = "{spool}"
"#,
        ws = sim.ws_url,
        rest = sim.rest_url,
        key_id = key.id,
        private = key.private.display(),
        metrics = free_port()?,
        health = free_port()?,
        spool = dir.join("spool").display(),
    ))
}

/// Stops a collector: SIGTERM, then SIGKILL after 5 s.
pub(crate) fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    signal(child.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Clock ticks per second of /proc/<pid>/stat times.
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// utime + stime of a process (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 ("state").
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// cutime + cstime of a process (its waited-for children), in clock ticks.
fn reaped_children_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let cutime: u64 = fields.get(13)?.parse().ok()?;
    let cstime: u64 = fields.get(14)?.parse().ok()?;
    Some(cutime + cstime)
}

/// (VmRSS, VmHWM) of a process, in KiB.
pub(crate) fn memory_kib(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU of a process tree one level deep, in clock ticks: `parent`'s utime + stime + cutime +
/// cstime (the last two hold its children that have exited and been reaped: a backend whose
/// client disconnected) plus utime + stime of its live children (PostgreSQL's backends and
/// auxiliary processes under the postmaster).
pub(crate) fn tree_cpu_ticks(parent: u32) -> u64 {
    let mut total = cpu_ticks(parent).unwrap_or(0) + reaped_children_ticks(parent).unwrap_or(0);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(close) = text.rfind(')') else {
            continue;
        };
        let ppid = text[close + 2..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) {
            total += cpu_ticks(pid).unwrap_or(0);
        }
    }
    total
}
