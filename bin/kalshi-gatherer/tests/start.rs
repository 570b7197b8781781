//! Start-up and operator-facing behaviour of the real binary: bad inputs give one clear error
//! naming the problem and the documented exit code; `--check-config` masks secrets; a 401 from
//! the exchange is fatal (exit 78) after a clean shutdown; every gatherer metric the runbook
//! uses is served. These need no database: an unreachable one only makes the writer spool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::{Gatherer, GathererConfig, Market, Sim, free_port, keys, temp_dir, wait_until};

fn small_market() -> Market {
    Market {
        series: 2,
        events_per_series: 2,
        markets_per_event: 3,
        actions_per_second: 100,
        new_event_every_secs: 0.0,
        market_lifetime_secs: 600.0,
    }
}

/// A configuration pointing at `rest`/`ws` addresses that need not exist, with an unreachable
/// database.
fn offline_config(dir: &Path, key_file: &Path) -> GathererConfig {
    let port = free_port();
    GathererConfig {
        ws_url: format!("ws://127.0.0.1:{port}/trade-api/ws/v2"),
        rest_url: format!("http://127.0.0.1:{port}/trade-api/v2"),
        key_id: "5f0c7a8e-test-key".to_owned(),
        key_file: key_file.to_path_buf(),
        database_url: format!("postgresql://gatherer@127.0.0.1:{}/kalshi", free_port()),
        spool: dir.join("spool"),
        metrics_port: free_port(),
        health_port: free_port(),
        markets_per_subscription: 100,
        poller_interval_s: 60,
        shard_cores: vec![0],
        writer_core: 1,
        tls_roots: Vec::new(),
        extra: String::new(),
    }
}

fn run(config_text: &str, dir: &Path, args: &[&str]) -> Output {
    let path = dir.join("gatherer.toml");
    std::fs::write(&path, config_text).unwrap();
    Command::new(env!("CARGO_BIN_EXE_kalshi-gatherer"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

// A key file holding garbage, and a valid key file readable by group and others: both refused
// at start with exit 78 and a message naming the setting and the problem; --check-config says
// the same.
#[test]
fn bad_key_files_are_refused() {
    let dir = temp_dir("badkey");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "this is not a key\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = offline_config(&dir, &garbage).toml();
    for args in [&[][..], &["--check-config"][..]] {
        let output = run(&config, &dir, args);
        assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
        let text = stderr(&output);
        assert!(text.contains("exchange.private_key_file"), "{text}");
        assert!(text.contains("garbage.pem"), "{text}");
        assert!(
            text.to_lowercase().contains("pem") || text.contains("key"),
            "{text}"
        );
    }

    let keys = keys(&dir);
    std::fs::set_permissions(&keys.private, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = offline_config(&dir, &keys.private).toml();
    let output = run(&config, &dir, &[]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("exchange.private_key_file"), "{text}");
    assert!(
        text.contains("group") || text.contains("others") || text.contains("permission"),
        "the message must say why the file is refused: {text}"
    );
    let missing = offline_config(&dir, &dir.join("absent.pem")).toml();
    let output = run(&missing, &dir, &[]);
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stderr(&output).contains("absent.pem"),
        "{}",
        stderr(&output)
    );
}

// Invalid values: each error names its key; all are reported at once; exit 78.
#[test]
fn bad_config_values_are_named() {
    let dir = temp_dir("badconfig");
    let keys = keys(&dir);
    let mut config = offline_config(&dir, &keys.private);
    config.extra = "[reconnect]\njitter = 3.5\n".to_owned();
    // A [reconnect] table already exists in the template: a duplicate table is a TOML error.
    let output = run(&config.toml(), &dir, &["--check-config"]);
    assert_eq!(output.status.code(), Some(78));
    assert!(stderr(&output).contains("reconnect"), "{}", stderr(&output));

    let text = config
        .toml()
        // Pinned threads: a core the machine lacks is an error (unpinned, numbers only name
        // the stages).
        .replace("shard_cores = [0]", "shard_cores = [4096]")
        .replace("pin_threads = false", "pin_threads = true")
        .replace(
            "markets_per_subscription = 100",
            "markets_per_subscription = 0",
        )
        .replace("[reconnect]\njitter = 3.5\n", "");
    let output = run(&text, &dir, &[]);
    assert_eq!(output.status.code(), Some(78), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("engine.shard_cores"), "{message}");
    assert!(message.contains("4096"), "{message}");
    assert!(
        message.contains("subscriptions.markets_per_subscription"),
        "{message}"
    );

    let output = run("[exchange]\nenvironment = \"moon\"\n", &dir, &[]);
    assert_eq!(output.status.code(), Some(78));
    assert!(
        stderr(&output).contains("environment"),
        "{}",
        stderr(&output)
    );

    let output = Command::new(env!("CARGO_BIN_EXE_kalshi-gatherer"))
        .args(["--config", "/nonexistent/gatherer.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(stderr(&output).contains("/nonexistent/gatherer.toml"));
}

// An exchange host nobody listens on: exit 69 (unavailable) naming the URL and the setting.
#[test]
fn unreachable_exchange_is_a_clear_error() {
    let dir = temp_dir("unreachable");
    let keys = keys(&dir);
    let config = offline_config(&dir, &keys.private);
    let output = run(&config.toml(), &dir, &[]);
    assert_eq!(output.status.code(), Some(69), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("cannot reach the exchange"), "{text}");
    assert!(text.contains(&config.rest_url), "{text}");
    assert!(text.contains("exchange.rest_url"), "{text}");
}

// --check-config prints the effective configuration with defaults filled in, and never the key
// id or any secret in clear.
#[test]
fn check_config_masks_secrets() {
    let dir = temp_dir("check");
    let keys = keys(&dir);
    let config = offline_config(&dir, &keys.private);
    let output = run(&config.toml(), &dir, &["--check-config"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains("5f0c7a8e-test-key"),
        "key id in clear: {text}"
    );
    assert!(
        text.contains("frame_bytes_max = 4194304"),
        "defaults missing: {text}"
    );
    assert!(text.contains("Ed25519"), "{text}");
    let pem = std::fs::read_to_string(&keys.private).unwrap();
    let body = pem.lines().nth(1).unwrap();
    assert!(!text.contains(body), "private key material printed");
}

// The exchange answers every handshake 401: the gatherer logs one line naming the likely cause,
// counts it, shuts down cleanly and exits 78 (systemd's RestartPreventExitStatus).
#[test]
fn auth_rejection_is_fatal() {
    let dir = temp_dir("auth");
    let keys = keys(&dir);
    let sim = Sim::start(&dir, &keys.id, &keys.public, 3, &small_market());
    sim.control("/reject-auth?on=true");
    let mut config = offline_config(&dir, &keys.private);
    config.ws_url = format!("ws://{}/trade-api/ws/v2", sim.listen);
    config.rest_url = format!("http://{}/trade-api/v2", sim.listen);
    config.key_id.clone_from(&keys.id);
    let mut gatherer = Gatherer::start(&config, &dir, "auth");
    let status = gatherer.wait_exit();
    let log = gatherer.stderr();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("authentication rejected (HTTP 401)"), "{log}");
    assert!(log.contains("not retrying"), "{log}");
    assert_eq!(
        log.matches("authentication rejected").count(),
        2,
        "one log line and the exit message, no retry loop: {log}"
    );
    assert!(log.contains("signature was rejected"), "{log}");
    assert!(!log.contains(&keys.id), "key id in clear in the log");
}

// Every metric name the runbook (../shared/runbook.md) uses for a gatherer, plus the contract
// names of design.md §9 and the dashboard's, is served on /metrics. Listed explicitly, as the
// runbook lives outside the repository:
//   runbook: ws_client_connected, conn_manager_connections (_total, _healthy),
//            ws_client_messages_received_total, writer_inserts_total, writer_errors_total,
//            writer_flush_duration (_seconds)
//   design/brief: ws_client_errors_total, sequence_gaps_total, sequence_gaps_repaired_total,
//            parse_errors_total, frames_dropped_total, book_resyncs_total,
//            book_rest_mismatch_total, rest_requests_total, kalshi_disk_usage_ratio
// /health says 503 while the database is unreachable long enough, with the reason.
#[test]
fn runbook_metrics_are_served() {
    let dir = temp_dir("metrics");
    let keys = keys(&dir);
    let sim = Sim::start(&dir, &keys.id, &keys.public, 5, &small_market());
    let mut config = offline_config(&dir, &keys.private);
    config.ws_url = format!("ws://{}/trade-api/ws/v2", sim.listen);
    config.rest_url = format!("http://{}/trade-api/v2", sim.listen);
    config.key_id.clone_from(&keys.id);
    let mut gatherer = Gatherer::start(&config, &dir, "metrics");
    wait_until("frames", common::PATIENCE, || {
        gatherer.metric("ws_client_messages_received_total") > 100.0
    });
    let text = gatherer.metrics_text();
    for name in [
        "ws_client_connected",
        "conn_manager_connections_total",
        "conn_manager_connections_healthy",
        "ws_client_messages_received_total",
        "writer_inserts_total",
        "writer_errors_total",
        "writer_flush_duration_seconds",
        "ws_client_errors_total",
        "sequence_gaps_total",
        "sequence_gaps_repaired_total",
        "parse_errors_total",
        "frames_dropped_total",
        "book_resyncs_total",
        "book_rest_mismatch_total",
        "rest_requests_total",
        "kalshi_disk_usage_ratio",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} not served:\n{text}"
        );
    }
    assert!(common::metric_value(&text, "ws_client_connected") >= 2.0);
    assert!(
        text.contains("writer_errors_total{type=\"connection\"}"),
        "{text}"
    );
    assert!(text.contains("kind=\"spool\""), "{text}");
    wait_until(
        "/health to report the database writer",
        common::PATIENCE,
        || {
            let (status, body) = gatherer.health();
            status == 503 && body["db_writer_ok"] == false
        },
    );
    let (_, body) = gatherer.health();
    assert_eq!(body["discovery_done"], true, "{body}");
    let status = gatherer.terminate();
    assert!(status.success(), "{}", gatherer.stderr());
}

// POST /admin/poll-market: refused without the bearer token or with a wrong one (401), a bad
// request without a ticker (400), and with the token it takes a REST snapshot now, stores it as
// an `orderbook_snapshots` row with source 'rest', and returns it.
#[test]
fn admin_poll_market_needs_the_token_and_stores_the_snapshot() {
    let dir = temp_dir("admin");
    let keys = keys(&dir);
    let sim = Sim::start(&dir, &keys.id, &keys.public, 9, &small_market());
    let pg = common::postgres();
    let mut admin = common::db(&pg);
    let config = GathererConfig::new(&sim, &keys, &pg.url("kalshi"), &dir);
    let mut gatherer = Gatherer::start(&config, &dir, "admin");
    gatherer.wait_healthy();
    let (_, body) = sim.get("/trade-api/v2/markets?limit=1&status=open");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ticker = page["markets"][0]["ticker"].as_str().unwrap().to_owned();
    let target = format!("/admin/poll-market?ticker={ticker}");

    let (status, body) = common::http(&gatherer.health, "POST", &target, &[]);
    assert_eq!(status, 401, "{body}");
    let wrong = "Bearer not-the-token".to_owned();
    let (status, _) = common::http(
        &gatherer.health,
        "POST",
        &target,
        &[("authorization", &wrong)],
    );
    assert_eq!(status, 401);
    let bearer = format!("Bearer {}", common::ADMIN_TOKEN);
    let auth = [("authorization", bearer.as_str())];
    let (status, _) = common::http(&gatherer.health, "POST", "/admin/poll-market", &auth);
    assert_eq!(status, 400);
    let (status, _) = common::http(&gatherer.health, "GET", &target, &auth);
    assert_eq!(status, 405);

    let before: i64 = admin
        .query_one(
            "SELECT count(*) FROM orderbook_snapshots WHERE ticker = $1 AND source = 'rest'",
            &[&ticker],
        )
        .unwrap()
        .get(0);
    let (status, body) = common::http(&gatherer.health, "POST", &target, &auth);
    assert_eq!(status, 200, "{body}");
    let snapshot: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(body.contains(&ticker), "{snapshot}");
    wait_until("the polled snapshot to be stored", common::PATIENCE, || {
        let now: i64 = admin
            .query_one(
                "SELECT count(*) FROM orderbook_snapshots WHERE ticker = $1 AND source = 'rest'",
                &[&ticker],
            )
            .unwrap()
            .get(0);
        now > before
    });
    let status = gatherer.terminate();
    assert!(status.success(), "{}", gatherer.stderr());
}
