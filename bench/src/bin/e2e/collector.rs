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

impl Collector {
    /// Starts the collector against `sim` and the database `db_url`; its output goes to `log`.
    pub(crate) fn spawn(&self, sim: &Sim, db_url: &str, dir: &Path) -> Result<Child> {
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
            Kind::Gatherer { bin } => {
                // HOOK (gatherer): write a kalshi-gatherer config for this run (environment
                // "sim", ws_url/rest_url from `sim`, database.url = db_url, gatherer_id = 1,
                // shard_cores/writer_core for this box, a generated Ed25519 key registered in
                // the simulator's [auth.keys], markets_per_command large and
                // commands_per_second high so every market is subscribed before the first
                // event counts; see Sim::start) and start `bin --config FILE`.
                bail!(
                    "the kalshi-gatherer column is pending: {} is not wired into the harness yet",
                    bin.display()
                );
            }
        };
        cmd.stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting collector {}", self.name))
    }
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

/// utime + stime of every process whose parent is `parent` (PostgreSQL's backends and
/// auxiliary processes under the postmaster), plus the parent's own, in clock ticks.
pub(crate) fn tree_cpu_ticks(parent: u32) -> u64 {
    let mut total = cpu_ticks(parent).unwrap_or(0);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return total;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
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
