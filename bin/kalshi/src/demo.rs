//! `kalshi demo`: the whole platform on loopback, checked against the exchange's truth.
//!
//! 1. Makes sure the PostgreSQL server is installed (apt-get when `initdb` is missing) and that
//!    the service binaries are built (`cargo build` of the workspace when they are missing).
//! 2. Starts four throwaway PostgreSQL clusters (three gatherer databases and production) and
//!    migrates them; generates an Ed25519 API key for the simulator to trust.
//! 3. Starts `kalshi-sim` (signed handshakes, truth log, final books), three `kalshi-gatherer`s
//!    and the `kalshi-deduplicator`, each with a generated config file in the work directory.
//! 4. Shows live status until Ctrl-C or `--duration`: messages/s per gatherer, rows written, gaps
//!    found and repaired, dedup lag, and the endpoint URLs.
//! 5. Halts the exchange (no more events), waits for the gatherers to drain and for production
//!    to converge, stops every process with SIGTERM, and checks production (and each gatherer
//!    database) against the truth log with `kalshi-verify`. The exit status is 0 only when
//!    production passes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_verify::{Report, TradeRule, Truth, Window};

/// Arguments of `kalshi demo`.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// Run this long (seconds of wall time), then stop and check. Ctrl-C stops earlier.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    duration: u64,
    /// Simulator seed (the same seed gives the same exchange).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Series in the simulated exchange.
    #[arg(long, default_value_t = 8)]
    series: usize,
    /// Events listed per series at start.
    #[arg(long, default_value_t = 5)]
    events_per_series: usize,
    /// Markets per event.
    #[arg(long, default_value_t = 10)]
    markets_per_event: usize,
    /// Order-flow actions per second across the exchange.
    #[arg(long, default_value_t = 400)]
    actions_per_second: u64,
    /// Keep logs, configs and the truth log here (default: a fresh temporary directory that
    /// is removed at the end unless --keep).
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Keep the work directory.
    #[arg(long)]
    keep: bool,
    /// Directory holding kalshi-sim, kalshi-gatherer and kalshi-deduplicator (default: next to
    /// this binary, built with cargo if missing).
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
    /// How long to wait for production to converge after the exchange halts.
    #[arg(long, value_name = "SECONDS", default_value_t = 180)]
    settle_timeout: u64,
}

const GATHERERS: usize = 3;

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    name: String,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("creating log file {}", log.display()))?;
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
            "demo: {} did not stop within {grace:?}; killing it",
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

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr().context("finding a free port")?.port())
}

/// Installs the PostgreSQL server with apt-get when `initdb` cannot be found.
fn ensure_postgres() -> Result<()> {
    if kalshi_pg_harness::find_bin_dir().is_ok() {
        return Ok(());
    }
    eprintln!("demo: PostgreSQL server binaries not found; installing the `postgresql` package");
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

/// The directory with the service binaries, building them with cargo when missing.
fn service_bin_dir(args: &DemoArgs) -> Result<PathBuf> {
    if let Some(dir) = &args.bin_dir {
        for bin in SERVICE_BINARIES {
            if !dir.join(bin).is_file() {
                bail!("--bin-dir {}: {bin} is not there", dir.display());
            }
        }
        return Ok(dir.clone());
    }
    let exe = std::env::current_exe().context("locating this binary")?;
    let dir = exe
        .parent()
        .context("this binary has no parent directory")?
        .to_path_buf();
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
    eprintln!("demo: making sure the service binaries are built (cargo build)");
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
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
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

fn http_get(agent: &ureq::Agent, url: &str) -> Option<(u16, String)> {
    let mut response = agent.get(url).call().ok()?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().ok()?;
    Some((status, body))
}

fn http_post(agent: &ureq::Agent, url: &str) -> Result<(u16, String)> {
    let mut response = agent
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

struct GathererEndpoints {
    metrics: String,
    health: String,
}

struct Sample {
    at: Instant,
    messages: f64,
}

/// Runs the demo.
pub(crate) fn run(args: &DemoArgs) -> Result<()> {
    ensure_postgres()?;
    let bin_dir = service_bin_dir(args)?;
    let (workdir, temporary) = match &args.workdir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("kalshi-demo-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(workdir.join("logs"))
        .with_context(|| format!("creating {}", workdir.display()))?;
    let result = run_in(args, &bin_dir, &workdir);
    if temporary && !args.keep {
        let _ = std::fs::remove_dir_all(&workdir);
    } else {
        eprintln!(
            "demo: logs, configs and the truth log are in {}",
            workdir.display()
        );
    }
    result
}

fn run_in(args: &DemoArgs, bin_dir: &Path, workdir: &Path) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("installing Ctrl-C")?;
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();

    // Databases.
    eprintln!("demo: starting 4 PostgreSQL clusters");
    let mut clusters = Vec::new();
    for i in 0..=GATHERERS {
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
        clusters.push(cluster);
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
        .args(["--seed", &args.seed.to_string()])
        .args(["--series", &args.series.to_string()])
        .args(["--events-per-series", &args.events_per_series.to_string()])
        .args(["--markets-per-event", &args.markets_per_event.to_string()])
        .args(["--actions-per-second", &args.actions_per_second.to_string()])
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
    let admin_token = format!("demo-{:x}", args.seed ^ u64::from(std::process::id()));
    let mut gatherers = Vec::new();
    let mut endpoints = Vec::new();
    for (g, cluster) in clusters.iter().enumerate().skip(1) {
        let dir = workdir.join(format!("gatherer-{g}"));
        std::fs::create_dir_all(dir.join("spool"))
            .with_context(|| format!("creating {}", dir.display()))?;
        let metrics_port = free_port()?;
        let health_port = free_port()?;
        let config = gatherer_config(&GathererConfig {
            id: g,
            ws_url: &ws_url,
            rest_url: &rest_url,
            key: &key,
            db_url: &cluster.conn_string("kalshi", "gatherer"),
            metrics_port,
            health_port,
            spool: &dir.join("spool"),
        });
        let config_path = dir.join("gatherer.toml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("writing {}", config_path.display()))?;
        let mut cmd = Command::new(bin_dir.join("kalshi-gatherer"));
        cmd.arg("--config")
            .arg(&config_path)
            .env("KALSHI_KEY_ID", "demo")
            .env("KALSHI_ADMIN_TOKEN", &admin_token)
            .stdout(Stdio::null());
        gatherers.push(Proc::spawn(
            &format!("gatherer-{g}"),
            cmd,
            &workdir.join(format!("logs/gatherer-{g}.log")),
        )?);
        endpoints.push(GathererEndpoints {
            metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
            health: format!("http://127.0.0.1:{health_port}/health"),
        });
    }

    // Deduplicator.
    let dedup_metrics_port = free_port()?;
    let dedup_health_port = free_port()?;
    let dedup_dir = workdir.join("deduplicator");
    std::fs::create_dir_all(&dedup_dir)
        .with_context(|| format!("creating {}", dedup_dir.display()))?;
    let gatherer_urls: Vec<String> = clusters
        .iter()
        .skip(1)
        .map(|c| c.conn_string("kalshi", "deduplicator"))
        .collect();
    let dedup_config = dedup_config(
        &gatherer_urls,
        &clusters[0].conn_string("kalshi", "deduplicator"),
        dedup_metrics_port,
        dedup_health_port,
    );
    let dedup_config_path = dedup_dir.join("deduplicator.toml");
    std::fs::write(&dedup_config_path, dedup_config)
        .with_context(|| format!("writing {}", dedup_config_path.display()))?;
    let mut dedup_cmd = Command::new(bin_dir.join("kalshi-deduplicator"));
    dedup_cmd
        .arg("--config")
        .arg(&dedup_config_path)
        .stdout(Stdio::null());
    let mut dedup = Proc::spawn(
        "kalshi-deduplicator",
        dedup_cmd,
        &workdir.join("logs/deduplicator.log"),
    )?;
    let dedup_metrics = format!("http://127.0.0.1:{dedup_metrics_port}/metrics");
    let dedup_health = format!("http://127.0.0.1:{dedup_health_port}/health");

    // A Prometheus configuration for exactly these processes, with the project's alert rules
    // (used by scripts/check-prometheus-scrape.sh; handy for anyone with Prometheus at hand).
    let metrics_targets: Vec<(String, String)> = endpoints
        .iter()
        .enumerate()
        .map(|(g, e)| (format!("gatherer-{}", g + 1), e.metrics.clone()))
        .collect();
    let prometheus = prometheus_config(&metrics_targets, &dedup_metrics);
    std::fs::write(workdir.join("prometheus.yml"), prometheus)
        .context("writing the demo's prometheus.yml")?;

    println!("kalshi demo: the platform is up on loopback");
    println!("  exchange (kalshi-sim):  {ws_url}  {rest_url}  control {control}");
    for (g, e) in endpoints.iter().enumerate() {
        println!("  gatherer-{}:  {}  {}", g + 1, e.metrics, e.health);
    }
    println!("  deduplicator:  {dedup_metrics}  {dedup_health}");
    println!("  production database:  psql {}", clusters[0].url("kalshi"));
    for (g, cluster) in clusters.iter().enumerate().skip(1) {
        println!("  gatherer-{g} database:  psql {}", cluster.url("kalshi"));
    }
    println!("  admin token for POST /admin/poll-market: {admin_token}");
    println!("  work directory: {}", workdir.display());

    // Capture is complete once every gatherer is healthy; the checked window starts a little
    // after that in exchange time.
    let started = Instant::now();
    let mut from_ts: Option<i64> = None;
    let mut last: Vec<Option<Sample>> = (0..GATHERERS).map(|_| None).collect();
    let tty = std::io::stdout().is_terminal();
    let mut failure = None;
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(args.duration) {
        std::thread::sleep(Duration::from_secs(2));
        for (proc, name) in gatherers
            .iter_mut()
            .map(|p| (p, "gatherer"))
            .chain([(&mut dedup, "deduplicator"), (&mut sim, "kalshi-sim")])
        {
            if !proc.alive() {
                failure = Some(format!(
                    "{} ({name}) exited early; see {}/logs",
                    proc.name,
                    workdir.display()
                ));
            }
        }
        if failure.is_some() {
            break;
        }
        if from_ts.is_none() {
            let all_healthy = endpoints
                .iter()
                .all(|e| http_get(&agent, &e.health).is_some_and(|(s, _)| s == 200));
            if all_healthy {
                let stats = http_get(&agent, &format!("{control}/stats"))
                    .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok());
                if let Some(now) = stats.and_then(|s| s["exchange_time_us"].as_i64()) {
                    from_ts = Some(now + 3_000_000);
                }
            }
        }
        let status = status_text(&agent, &endpoints, &dedup_metrics, &mut last, from_ts);
        if tty {
            print!("\x1b[2K\r{}", status.replace('\n', "\n\x1b[2K"));
            let lines = status.lines().count();
            print!("\x1b[{}A\r", lines.saturating_sub(1).max(1));
            let _ = std::io::stdout().flush();
        } else {
            println!("{status}");
        }
    }
    if tty {
        println!("\n\n\n\n\n\n");
    }
    if let Some(failure) = failure {
        bail!(failure);
    }
    let Some(from_ts) = from_ts else {
        bail!(
            "the gatherers never all became healthy; see the logs in {}/logs",
            workdir.display()
        );
    };

    // Stop the exchange and let everything drain.
    println!("demo: halting the exchange and waiting for the platform to drain");
    let (status, body) = http_post(&agent, &format!("{control}/halt"))?;
    let halted: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("halt answered {status}: {body}"))?;
    let end_ts = halted["exchange_time_us"]
        .as_i64()
        .context("halt answer has no exchange_time_us")?
        + 1;
    let (status, _) = http_post(&agent, &format!("{control}/dump-books"))?;
    if status != 200 {
        bail!("the simulator could not write its final books ({status})");
    }
    wait_quiet(&agent, &endpoints);

    let truth = Truth::load(&truth_path, &books_path).context("loading the truth log")?;
    let window = Window {
        from_ts,
        to_ts: end_ts,
    };
    let deadline = Instant::now() + Duration::from_secs(args.settle_timeout);
    let mut production =
        kalshi_storage::connect(&clusters[0].url("kalshi")).context("connecting to production")?;
    let report = loop {
        let report = kalshi_verify::check(&mut production, &truth, window, TradeRule::ExactlyOnce)
            .context("checking production")?;
        if report.passed() || Instant::now() >= deadline {
            break report;
        }
        std::thread::sleep(Duration::from_secs(3));
    };

    // Stop the services; a clean exit is part of the check.
    let mut exits = Vec::new();
    for proc in gatherers.iter_mut().chain([&mut dedup]) {
        let status = proc.stop(Duration::from_secs(60));
        exits.push((proc.name.clone(), status));
    }
    sim.stop(Duration::from_secs(10));

    let mut gatherer_reports = Vec::new();
    for (g, cluster) in clusters.iter().enumerate().skip(1) {
        let mut client = kalshi_storage::connect(&cluster.url("kalshi"))
            .with_context(|| format!("connecting to gatherer-{g}'s database"))?;
        let r = kalshi_verify::check(&mut client, &truth, window, TradeRule::OnceFromWebSocket)
            .with_context(|| format!("checking gatherer-{g}'s database"))?;
        gatherer_reports.push(r);
    }
    print_summary(&truth, window, &report, &gatherer_reports, &exits);
    let clean = exits.iter().all(|(_, s)| s.is_some_and(|s| s.success()));
    if !report.passed() {
        bail!("production does not match the exchange's truth");
    }
    if !clean {
        bail!("a service did not exit cleanly on SIGTERM");
    }
    Ok(())
}

/// Waits until no gatherer has received a message for a few seconds (bounded).
fn wait_quiet(agent: &ureq::Agent, endpoints: &[GathererEndpoints]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut previous = None;
    let mut quiet_rounds = 0;
    while Instant::now() < deadline && quiet_rounds < 3 {
        std::thread::sleep(Duration::from_secs(1));
        let total: f64 = endpoints
            .iter()
            .filter_map(|e| http_get(agent, &e.metrics))
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

fn status_text(
    agent: &ureq::Agent,
    endpoints: &[GathererEndpoints],
    dedup_metrics: &str,
    last: &mut [Option<Sample>],
    from_ts: Option<i64>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>12} {:>12} {:>8} {:>9} {:>6}",
        "process", "msgs/s", "messages", "rows", "gaps", "repaired", "conns"
    );
    for (g, e) in endpoints.iter().enumerate() {
        let m = http_get(agent, &e.metrics)
            .map(|(_, b)| parse_metrics(&b))
            .unwrap_or_default();
        let get = |name: &str| m.get(name).copied().unwrap_or(0.0);
        let messages = get("ws_client_messages_received_total");
        let now = Instant::now();
        let rate = match &last[g] {
            Some(s) => {
                let dt = now.duration_since(s.at).as_secs_f64();
                if dt > 0.0 {
                    (messages - s.messages) / dt
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        last[g] = Some(Sample { at: now, messages });
        let _ = writeln!(
            out,
            "{:<12} {:>10.0} {:>12.0} {:>12.0} {:>8.0} {:>9.0} {:>6.0}",
            format!("gatherer-{}", g + 1),
            rate,
            messages,
            get("writer_inserts_total"),
            get("sequence_gaps_total"),
            get("sequence_gaps_repaired_total"),
            get("conn_manager_connections_healthy"),
        );
    }
    let d = http_get(agent, dedup_metrics)
        .map(|(_, b)| parse_metrics(&b))
        .unwrap_or_default();
    let get = |name: &str| d.get(name).copied().unwrap_or(0.0);
    let _ = write!(
        out,
        "deduplicator  lag {:.1} s   rows written {:.0}   production {}   capture window {}",
        get("dedup_sync_lag_seconds"),
        get("dedup_rows_written_total"),
        if get("dedup_rds_connected") > 0.0 {
            "connected"
        } else {
            "not connected"
        },
        if from_ts.is_some() {
            "open"
        } else {
            "waiting for healthy gatherers"
        },
    );
    out
}

fn print_summary(
    truth: &Truth,
    window: Window,
    production: &Report,
    gatherers: &[Report],
    exits: &[(String, Option<ExitStatus>)],
) {
    println!();
    println!("=== kalshi demo summary ===");
    println!(
        "exchange: {} markets, {} trades and {} deltas in the truth log; checked window {:.1} s of exchange time",
        truth.market_count(),
        truth.trade_count(),
        truth.delta_count(),
        (window.to_ts - window.from_ts) as f64 / 1e6
    );
    for (name, status) in exits {
        let text = match status {
            Some(s) if s.success() => "clean exit".to_owned(),
            Some(s) => format!("exit {s}"),
            None => "not stopped".to_owned(),
        };
        println!("{name}: {text}");
    }
    for (g, r) in gatherers.iter().enumerate() {
        println!("gatherer-{} database: {r}", g + 1);
    }
    println!("production: {production}");
}

/// `host:port` of a `http://host:port/metrics` URL.
fn target_of(url: &str) -> &str {
    url.trim_start_matches("http://")
        .trim_end_matches("/metrics")
}

fn prometheus_config(gatherers: &[(String, String)], dedup_metrics: &str) -> String {
    let alerts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../monitoring/alerts.yml");
    let mut out = format!(
        "# Generated by `kalshi demo`: scrapes this demo's processes, with the project's alert rules.\n\
         global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: kalshi-gatherer\n    static_configs:\n",
        alerts.display()
    );
    for (name, url) in gatherers {
        let _ = write!(
            out,
            "      - targets: [\"{}\"]\n        labels: {{instance: {name}}}\n",
            target_of(url)
        );
    }
    let _ = write!(
        out,
        "  - job_name: kalshi-deduplicator\n    static_configs:\n      - targets: [\"{}\"]\n        labels: {{instance: deduplicator}}\n",
        target_of(dedup_metrics)
    );
    out
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
