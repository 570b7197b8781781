//! The whole platform on loopback: four throwaway PostgreSQL clusters (three gatherer databases
//! and production, migrated), `kalshi-sim` (signed handshakes, truth log, final books), three
//! `kalshi-gatherer`s and the `kalshi-deduplicator`, each with a generated config file in a work
//! directory. Used by `kalshi demo` and by the fault suite (`tests/faults_*.rs`).
//!
//! Every process is a [`Service`] that can be killed (SIGKILL), stopped (SIGTERM) and started
//! again with the same config, spool and log file; every database is a [`PgCluster`] that can be
//! stopped and started again on the same port. [`Platform::halt_and_verify`] ends a run: it
//! halts the exchange, waits for the platform to drain, stops the services and checks
//! production (and each gatherer database) against the simulator's truth log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_verify::{Captures, Report, TradeRule, Truth, Window};

/// How [`Platform::halt_and_verify_with`] checks the books (re-exported from kalshi-verify).
pub use kalshi_verify::BookRule;

/// Number of gatherers the platform runs.
pub const GATHERERS: usize = 3;

/// The simulated exchange and where the platform keeps its files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Simulator seed (the same seed gives the same exchange).
    pub seed: u64,
    /// Series in the simulated exchange.
    pub series: usize,
    /// Events listed per series at start.
    pub events_per_series: usize,
    /// Markets per event.
    pub markets_per_event: usize,
    /// Order-flow actions per second across the exchange.
    pub actions_per_second: u64,
    /// Logs, configs, spools and the truth log go here (created if missing).
    pub workdir: PathBuf,
    /// Directory holding the service binaries (default: next to the running binary, built with
    /// cargo when run from this workspace).
    pub bin_dir: Option<PathBuf>,
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc> {
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log file {}", log.display()))?;
        command.stderr(log_file);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name} ({command:?})"))?;
        Ok(Proc {
            name: name.to_owned(),
            child: Some(child),
        })
    }

    fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGTERM, then wait up to `grace`, then SIGKILL. Returns the exit status.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "platform: {} did not stop within {grace:?}; killing it",
            self.name
        );
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// One service process (a gatherer or the deduplicator): how to start it, its endpoints, and
/// the running process if any.
pub struct Service {
    name: String,
    program: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    proc: Option<Proc>,
    /// `http://127.0.0.1:PORT/metrics`.
    pub metrics_url: String,
    /// `http://127.0.0.1:PORT/health`.
    pub health_url: String,
}

impl Service {
    /// The service's name (`gatherer-1`, ..., `kalshi-deduplicator`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The generated config file.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// The log file (stderr of every run, appended).
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts the process (again) with the same config, environment and log file.
    ///
    /// # Errors
    /// When it is already running, or cannot be spawned.
    pub fn start(&mut self) -> Result<()> {
        if self.alive() {
            bail!("{} is already running", self.name);
        }
        let mut cmd = Command::new(&self.program);
        cmd.arg("--config").arg(&self.config).stdout(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.proc = Some(Proc::spawn(&self.name, cmd, &self.log)?);
        Ok(())
    }

    /// Whether the process is running.
    pub fn alive(&mut self) -> bool {
        self.proc.as_mut().is_some_and(Proc::alive)
    }

    /// SIGKILL (no chance to flush or clean up), as a fault.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.kill())
    }

    /// SIGTERM, waiting up to `grace` for a clean exit (then SIGKILL). Returns the exit status.
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        self.proc.take().and_then(|mut p| p.stop(grace))
    }
}

/// A gatherer and its local database.
pub struct Gatherer {
    /// The gatherer process.
    pub service: Service,
    /// Its local PostgreSQL cluster.
    pub db: PgCluster,
    /// Its spool directory.
    pub spool: PathBuf,
}

/// What [`Platform::scrape`] got from one process.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// Prometheus job (`kalshi-gatherer` or `kalshi-deduplicator`).
    pub job: &'static str,
    /// Instance (`gatherer-1`..`gatherer-3`, `deduplicator`).
    pub instance: String,
    /// The metrics page, or `None` when the scrape failed (Prometheus' `up` = 0).
    pub body: Option<String>,
}

/// The outcome of [`Platform::halt_and_verify`].
pub struct Reports {
    /// The exchange's truth.
    pub truth: Truth,
    /// The checked window of exchange time.
    pub window: Window,
    /// Production against the truth (exactly once).
    pub production: Report,
    /// Each gatherer's database against the truth (once from the WebSocket).
    pub gatherers: Vec<Report>,
    /// How each service exited on SIGTERM (`None`: it was not running).
    pub exits: Vec<(String, Option<ExitStatus>)>,
}

/// The running platform. Dropping it stops every process and removes the clusters.
pub struct Platform {
    agent: ureq::Agent,
    sim: Proc,
    /// The gatherers, in order (`gatherer-1` first).
    pub gatherers: Vec<Gatherer>,
    /// The deduplicator.
    pub dedup: Service,
    /// Production PostgreSQL.
    pub production: PgCluster,
    /// `http://host:port` of the simulator's control endpoint.
    pub control: String,
    /// The simulator's WebSocket URL.
    pub ws_url: String,
    /// The simulator's REST base URL.
    pub rest_url: String,
    /// The gatherers' admin token (`Authorization: Bearer ...`).
    pub admin_token: String,
    /// The work directory.
    pub workdir: PathBuf,
    truth_path: PathBuf,
    books_path: PathBuf,
}

/// A free loopback port (bound and released).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// Installs the PostgreSQL server with apt-get when `initdb` cannot be found.
///
/// # Errors
/// When apt-get fails, or the binaries are still missing afterwards.
pub fn ensure_postgres() -> Result<()> {
    if kalshi_pg_harness::find_bin_dir().is_ok() {
        return Ok(());
    }
    eprintln!(
        "platform: PostgreSQL server binaries not found; installing the `postgresql` package"
    );
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let apt = |args: &[&str]| -> Result<()> {
        let mut cmd = if is_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let status = cmd.status().context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-q"])?;
    apt(&[
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        "postgresql",
    ])?;
    kalshi_pg_harness::find_bin_dir()
        .map(|_| ())
        .context("PostgreSQL was installed but its binaries are still not found")
}

const SERVICE_BINARIES: [&str; 3] = ["kalshi-sim", "kalshi-gatherer", "kalshi-deduplicator"];

/// The directory with the service binaries: `explicit` when given (checked), else the directory
/// of the running binary (or of the test binary's `deps/`), building them with cargo when run
/// from this workspace so that they are never older than the caller.
///
/// # Errors
/// When a binary is missing or the build fails.
pub fn service_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        for bin in SERVICE_BINARIES {
            if !dir.join(bin).is_file() {
                bail!("--bin-dir {}: {bin} is not there", dir.display());
            }
        }
        return Ok(dir.to_path_buf());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut dir = exe
        .parent()
        .context("this binary has no parent directory")?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir = dir
            .parent()
            .context("unexpected test binary location")?
            .to_path_buf();
    }
    // Built from this workspace: build the rest the same way (same target dir and profile), so
    // that they are never older than this binary (a no-op when they are up to date). A binary
    // installed elsewhere uses the service binaries next to it as they are.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !workspace.join("Cargo.lock").is_file() {
        for bin in SERVICE_BINARIES {
            if !dir.join(bin).is_file() {
                bail!(
                    "{bin} is not next to this binary in {}; use --bin-dir",
                    dir.display()
                );
            }
        }
        return Ok(dir);
    }
    let target_dir = dir.parent().context("unexpected binary location")?;
    let release = dir.file_name().is_some_and(|n| n == "release");
    eprintln!("platform: making sure the service binaries are built (cargo build)");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&workspace)
        .args(["build", "--locked", "--target-dir"])
        .arg(target_dir);
    for bin in SERVICE_BINARIES {
        cmd.args(["-p", bin]);
    }
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the service binaries failed ({status})");
    }
    Ok(dir)
}

/// Sums every sample of each metric name (labels ignored) in a Prometheus text page.
pub fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = match line.rsplit_once(' ') {
            Some(pair) => pair,
            None => continue,
        };
        let name = series.split('{').next().unwrap_or(series);
        if let Ok(v) = value.parse::<f64>() {
            *out.entry(name.to_owned()).or_insert(0.0) += v;
        }
    }
    out
}

fn migrate_cluster(i: usize) -> Result<PgCluster> {
    let cluster = PgCluster::start(PgOptions::default())
        .with_context(|| format!("starting PostgreSQL cluster {i}"))?;
    let mut client = kalshi_storage::connect(&cluster.url("kalshi"))
        .with_context(|| format!("connecting to cluster {i}"))?;
    let options = if i == 0 {
        kalshi_storage::MigrateOptions::production()
    } else {
        kalshi_storage::MigrateOptions::gatherer()
    };
    kalshi_storage::migrate(&mut client, &options)
        .with_context(|| format!("migrating cluster {i}"))?;
    client
        .batch_execute("ALTER ROLE gatherer LOGIN; ALTER ROLE deduplicator LOGIN;")
        .context("allowing the service roles to log in")?;
    Ok(cluster)
}

impl Platform {
    /// Starts everything (PostgreSQL is installed and the service binaries built first when
    /// needed). Returns once every process is spawned; see [`Platform::all_healthy`].
    ///
    /// # Errors
    /// When a cluster, the key, a config file or a process cannot be set up.
    pub fn start(options: &Options) -> Result<Platform> {
        ensure_postgres()?;
        let bin_dir = service_bin_dir(options.bin_dir.as_deref())?;
        let workdir = options.workdir.clone();
        std::fs::create_dir_all(workdir.join("logs"))
            .with_context(|| format!("creating {}", workdir.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .into();

        eprintln!("platform: starting 4 PostgreSQL clusters");
        let production = migrate_cluster(0)?;
        let mut gatherer_dbs = Vec::new();
        for i in 1..=GATHERERS {
            gatherer_dbs.push(migrate_cluster(i)?);
        }

        // The API key the simulator trusts and the gatherers sign with.
        let key = workdir.join("kalshi-key.pem");
        let public = workdir.join("kalshi-key.pub.pem");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(&public);
        kalshi_auth::generate(kalshi_auth::KeyKind::Ed25519, &key, &public)
            .context("generating the demo API key")?;

        // The exchange.
        let truth_path = workdir.join("truth.jsonl");
        let books_path = workdir.join("final-books.jsonl");
        let mut sim_cmd = Command::new(bin_dir.join("kalshi-sim"));
        sim_cmd
            .args(["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0"])
            .args(["--seed", &options.seed.to_string()])
            .args(["--series", &options.series.to_string()])
            .args([
                "--events-per-series",
                &options.events_per_series.to_string(),
            ])
            .args([
                "--markets-per-event",
                &options.markets_per_event.to_string(),
            ])
            .args([
                "--actions-per-second",
                &options.actions_per_second.to_string(),
            ])
            .arg("--keys")
            .arg(format!("demo={}", public.display()))
            .arg("--truth-log")
            .arg(&truth_path)
            .arg("--final-books")
            .arg(&books_path)
            .stdout(Stdio::piped());
        let mut sim = Proc::spawn("kalshi-sim", sim_cmd, &workdir.join("logs/sim.log"))?;
        let ready = {
            let stdout = sim
                .child
                .as_mut()
                .and_then(|c| c.stdout.take())
                .context("no stdout from kalshi-sim")?;
            let mut line = String::new();
            BufReader::new(stdout)
                .read_line(&mut line)
                .context("reading kalshi-sim's ready line")?;
            serde_json::from_str::<serde_json::Value>(&line).with_context(|| {
                format!(
                    "kalshi-sim did not start (see {}/logs/sim.log)",
                    workdir.display()
                )
            })?
        };
        let ws_url = ready["ws_url"].as_str().context("no ws_url")?.to_owned();
        let rest_url = ready["rest_url"]
            .as_str()
            .context("no rest_url")?
            .to_owned();
        let control = format!(
            "http://{}",
            ready["control"].as_str().context("no control address")?
        );

        // Gatherers.
        let admin_token = format!("demo-{:x}", options.seed ^ u64::from(std::process::id()));
        let mut gatherers = Vec::new();
        for (i, db) in gatherer_dbs.into_iter().enumerate() {
            let g = i + 1;
            let dir = workdir.join(format!("gatherer-{g}"));
            let spool = dir.join("spool");
            std::fs::create_dir_all(&spool)
                .with_context(|| format!("creating {}", dir.display()))?;
            let metrics_port = free_port()?;
            let health_port = free_port()?;
            let config = gatherer_config(&GathererConfig {
                id: g,
                ws_url: &ws_url,
                rest_url: &rest_url,
                key: &key,
                db_url: &db.conn_string("kalshi", "gatherer"),
                metrics_port,
                health_port,
                spool: &spool,
            });
            let config_path = dir.join("gatherer.toml");
            std::fs::write(&config_path, config)
                .with_context(|| format!("writing {}", config_path.display()))?;
            let mut service = Service {
                name: format!("gatherer-{g}"),
                program: bin_dir.join("kalshi-gatherer"),
                config: config_path,
                env: vec![
                    ("KALSHI_KEY_ID".into(), "demo".into()),
                    ("KALSHI_ADMIN_TOKEN".into(), admin_token.clone()),
                ],
                log: workdir.join(format!("logs/gatherer-{g}.log")),
                proc: None,
                metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
                health_url: format!("http://127.0.0.1:{health_port}/health"),
            };
            service.start()?;
            gatherers.push(Gatherer { service, db, spool });
        }

        // Deduplicator.
        let dedup_metrics_port = free_port()?;
        let dedup_health_port = free_port()?;
        let dedup_dir = workdir.join("deduplicator");
        std::fs::create_dir_all(&dedup_dir)
            .with_context(|| format!("creating {}", dedup_dir.display()))?;
        let gatherer_urls: Vec<String> = gatherers
            .iter()
            .map(|g| g.db.conn_string("kalshi", "deduplicator"))
            .collect();
        let dedup_config = dedup_config(
            &gatherer_urls,
            &production.conn_string("kalshi", "deduplicator"),
            dedup_metrics_port,
            dedup_health_port,
        );
        let dedup_config_path = dedup_dir.join("deduplicator.toml");
        std::fs::write(&dedup_config_path, dedup_config)
            .with_context(|| format!("writing {}", dedup_config_path.display()))?;
        let mut dedup = Service {
            name: "kalshi-deduplicator".into(),
            program: bin_dir.join("kalshi-deduplicator"),
            config: dedup_config_path,
            env: Vec::new(),
            log: workdir.join("logs/deduplicator.log"),
            proc: None,
            metrics_url: format!("http://127.0.0.1:{dedup_metrics_port}/metrics"),
            health_url: format!("http://127.0.0.1:{dedup_health_port}/health"),
        };
        dedup.start()?;

        let platform = Platform {
            agent,
            sim,
            gatherers,
            dedup,
            production,
            control,
            ws_url,
            rest_url,
            admin_token,
            workdir,
            truth_path,
            books_path,
        };
        // A Prometheus configuration for exactly these processes, with the project's alert
        // rules (used by scripts/check-prometheus-scrape.sh).
        std::fs::write(
            platform.workdir.join("prometheus.yml"),
            platform.prometheus_config(),
        )
        .context("writing the platform's prometheus.yml")?;
        Ok(platform)
    }

    /// GET a URL: `(status, body)`, or `None` when the request failed.
    pub fn get(&self, url: &str) -> Option<(u16, String)> {
        let mut response = self.agent.get(url).call().ok()?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().ok()?;
        Some((status, body))
    }

    /// POST an empty body to a URL: `(status, body)`.
    ///
    /// # Errors
    /// When the request fails.
    pub fn post(&self, url: &str) -> Result<(u16, String)> {
        let mut response = self
            .agent
            .post(url)
            .send_empty()
            .with_context(|| format!("POST {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("reading the answer of POST {url}"))?;
        Ok((status, body))
    }

    /// POST to the simulator's control endpoint (`path` like `/pause` or
    /// `/skip-seq?conn=all&sid=1`); fails unless it answers 200.
    ///
    /// # Errors
    /// When the request fails or is refused.
    pub fn control(&self, path: &str) -> Result<serde_json::Value> {
        let (status, body) = self.post(&format!("{}{path}", self.control))?;
        if status != 200 {
            bail!("control {path} answered {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("control {path} answered {body}"))
    }

    /// The simulator's `/stats`.
    pub fn sim_stats(&self) -> Option<serde_json::Value> {
        self.get(&format!("{}/stats", self.control))
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
    }

    /// The exchange's clock (µs), from `/stats`.
    pub fn exchange_time_us(&self) -> Option<i64> {
        self.sim_stats()
            .and_then(|s| s["exchange_time_us"].as_i64())
    }

    /// Whether every gatherer answers 200 on `/health`.
    pub fn all_healthy(&self) -> bool {
        self.gatherers.iter().all(|g| {
            self.get(&g.service.health_url)
                .is_some_and(|(s, _)| s == 200)
        })
    }

    /// The name of a process that died unexpectedly (a service that was started and is no
    /// longer running, or the simulator), if any.
    pub fn exited(&mut self) -> Option<String> {
        if !self.sim.alive() {
            return Some("kalshi-sim".into());
        }
        for s in self
            .gatherers
            .iter_mut()
            .map(|g| &mut g.service)
            .chain([&mut self.dedup])
        {
            if s.proc.is_some() && !s.alive() {
                return Some(s.name.clone());
            }
        }
        None
    }

    /// Scrapes every service's `/metrics` once (a failed scrape is Prometheus' `up` = 0).
    pub fn scrape(&self) -> Vec<Scrape> {
        let mut out = Vec::new();
        for g in &self.gatherers {
            out.push(Scrape {
                job: "kalshi-gatherer",
                instance: g.service.name.clone(),
                body: self
                    .get(&g.service.metrics_url)
                    .filter(|(s, _)| *s == 200)
                    .map(|(_, b)| b),
            });
        }
        out.push(Scrape {
            job: "kalshi-deduplicator",
            instance: "deduplicator".into(),
            body: self
                .get(&self.dedup.metrics_url)
                .filter(|(s, _)| *s == 200)
                .map(|(_, b)| b),
        });
        out
    }

    /// Waits until no gatherer has received a message for a few seconds (bounded).
    pub fn wait_quiet(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut previous = None;
        let mut quiet_rounds = 0;
        while Instant::now() < deadline && quiet_rounds < 3 {
            std::thread::sleep(Duration::from_secs(1));
            let total: f64 = self
                .gatherers
                .iter()
                .filter_map(|g| self.get(&g.service.metrics_url))
                .map(|(_, body)| {
                    parse_metrics(&body)
                        .get("ws_client_messages_received_total")
                        .copied()
                        .unwrap_or(0.0)
                })
                .sum();
            if previous == Some(total) {
                quiet_rounds += 1;
            } else {
                quiet_rounds = 0;
            }
            previous = Some(total);
        }
    }

    /// Ends the run: halts the exchange, writes its final books, waits for the gatherers to
    /// drain and for production to pass the truth check over `[from_ts, halt]` (up to
    /// `settle_timeout`), stops every service with SIGTERM (up to 60 s each) and the
    /// simulator, then checks each gatherer database. Books are checked with
    /// [`BookRule::LatestSnapshot`] (see [`Platform::halt_and_verify_with`]).
    ///
    /// # Errors
    /// When the simulator refuses, the truth log cannot be loaded or a database query fails.
    /// A failed check is not an error: see [`Reports`].
    pub fn halt_and_verify(&mut self, from_ts: i64, settle_timeout: Duration) -> Result<Reports> {
        self.halt_and_verify_with(from_ts, settle_timeout, BookRule::LatestSnapshot)
    }

    /// [`Platform::halt_and_verify`] with a chosen book rule: [`BookRule::LatestSnapshot`] (the
    /// default: each market's latest stored WebSocket snapshot plus the later deltas, placed
    /// through the gatherers' own capture streams; deltas lost in a WebSocket outage must be
    /// healed by a resync) or [`BookRule::Exact`] (every delta of the window stored; only
    /// for runs without WebSocket outages).
    ///
    /// # Errors
    /// As [`Platform::halt_and_verify`].
    pub fn halt_and_verify_with(
        &mut self,
        from_ts: i64,
        settle_timeout: Duration,
        books: BookRule,
    ) -> Result<Reports> {
        let halted = self.control("/halt")?;
        let end_ts = halted["exchange_time_us"]
            .as_i64()
            .context("halt answer has no exchange_time_us")?
            + 1;
        let (status, _) = self.post(&format!("{}/dump-books", self.control))?;
        if status != 200 {
            bail!("the simulator could not write its final books ({status})");
        }
        self.wait_quiet();

        let truth =
            Truth::load(&self.truth_path, &self.books_path).context("loading the truth log")?;
        let window = Window {
            from_ts,
            to_ts: end_ts,
        };
        let deadline = Instant::now() + settle_timeout;
        let mut production = kalshi_storage::connect(&self.production.url("kalshi"))
            .context("connecting to production")?;
        let report = loop {
            let report = self
                .check_database(
                    &mut production,
                    &truth,
                    window,
                    TradeRule::ExactlyOnce,
                    books,
                )
                .context("checking production")?;
            if report.passed() || Instant::now() >= deadline {
                break report;
            }
            std::thread::sleep(Duration::from_secs(3));
        };

        // Stop the services; a clean exit is part of the check.
        let mut exits = Vec::new();
        for s in self
            .gatherers
            .iter_mut()
            .map(|g| &mut g.service)
            .chain([&mut self.dedup])
        {
            let status = s.terminate(Duration::from_secs(60));
            exits.push((s.name.clone(), status));
        }
        self.sim.stop(Duration::from_secs(10));

        let mut gatherer_reports = Vec::new();
        for g in &self.gatherers {
            let mut client = kalshi_storage::connect(&g.db.url("kalshi"))
                .with_context(|| format!("connecting to {}'s database", g.service.name))?;
            let r = self
                .check_database(
                    &mut client,
                    &truth,
                    window,
                    TradeRule::OnceFromWebSocket,
                    books,
                )
                .with_context(|| format!("checking {}'s database", g.service.name))?;
            gatherer_reports.push(r);
        }
        Ok(Reports {
            truth,
            window,
            production: report,
            gatherers: gatherer_reports,
            exits,
        })
    }

    /// The gatherers' capture streams (every delta with its gatherer, sid and seq), read from
    /// each gatherer's own database: what places a stored snapshot among the deltas.
    ///
    /// # Errors
    /// When a gatherer database cannot be read.
    pub fn captures(&self, truth: &Truth) -> Result<Captures> {
        let mut captures = Captures::new();
        for g in &self.gatherers {
            let mut client = kalshi_storage::connect(&g.db.url("kalshi"))
                .with_context(|| format!("connecting to {}'s database", g.service.name))?;
            captures
                .load(&mut client, truth)
                .with_context(|| format!("reading {}'s capture", g.service.name))?;
        }
        Ok(captures)
    }

    fn check_database(
        &self,
        client: &mut postgres::Client,
        truth: &Truth,
        window: Window,
        rule: TradeRule,
        books: BookRule,
    ) -> Result<Report> {
        Ok(match books {
            BookRule::Exact => kalshi_verify::check(client, truth, window, rule)?,
            BookRule::LatestSnapshot => {
                let captures = self.captures(truth)?;
                kalshi_verify::check_snapshots(client, truth, window, rule, &captures)?
            }
        })
    }

    fn prometheus_config(&self) -> String {
        let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring/alerts.yml");
        let mut out = format!(
            "# Generated by `kalshi demo`: scrapes this demo's processes, with the project's alert rules.\n\
             global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: kalshi-gatherer\n    static_configs:\n",
            alerts.display()
        );
        for g in &self.gatherers {
            let _ = write!(
                out,
                "      - targets: [\"{}\"]\n        labels: {{instance: {}}}\n",
                target_of(&g.service.metrics_url),
                g.service.name
            );
        }
        let _ = write!(
            out,
            "  - job_name: kalshi-deduplicator\n    static_configs:\n      - targets: [\"{}\"]\n        labels: {{instance: deduplicator}}\n",
            target_of(&self.dedup.metrics_url)
        );
        out
    }
}

/// `host:port` of a `http://host:port/metrics` URL.
fn target_of(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
}

struct GathererConfig<'a> {
    id: usize,
    ws_url: &'a str,
    rest_url: &'a str,
    key: &'a Path,
    db_url: &'a str,
    metrics_port: u16,
    health_port: u16,
    spool: &'a Path,
}

fn gatherer_config(c: &GathererConfig<'_>) -> String {
    format!(
        r#"# Generated by `kalshi demo` for gatherer-{id}.
[exchange]
environment = "sim"
ws_url = "{ws}"
rest_url = "{rest}"
key_id_env = "KALSHI_KEY_ID"
private_key_file = "{key}"

[database]
url = "{db}"
gatherer_id = {id}

[engine]
shard_cores = [0]
writer_core = 1
pin_threads = false

[poller]
interval_s = 60

[discovery]
interval_s = 30

[http]
metrics_addr = "127.0.0.1:{mp}"
health_addr = "127.0.0.1:{hp}"
admin_token_env = "KALSHI_ADMIN_TOKEN"

[spool]
dir = "{spool}"
"#,
        id = c.id,
        ws = c.ws_url,
        rest = c.rest_url,
        key = c.key.display(),
        db = c.db_url,
        mp = c.metrics_port,
        hp = c.health_port,
        spool = c.spool.display(),
    )
}

fn dedup_config(
    gatherers: &[String],
    production: &str,
    metrics_port: u16,
    health_port: u16,
) -> String {
    let mut out = format!(
        "# Generated by `kalshi demo`.\n[production]\nurl = \"{production}\"\n\n\
         [sync]\n# The demo's production database starts empty: begin just before now.\n\
         start_lookback_secs = 10\n\n\
         [http]\nmetrics_listen = \"127.0.0.1:{metrics_port}\"\n\
         health_listen = \"127.0.0.1:{health_port}\"\n"
    );
    for (i, url) in gatherers.iter().enumerate() {
        let _ = write!(
            out,
            "\n[[gatherer]]\nname = \"gatherer-{}\"\nurl = \"{url}\"\n",
            i + 1
        );
    }
    out
}
