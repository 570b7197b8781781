//! The binary's configuration handling: a good file passes `--check-config`; a bad one exits
//! 78 with every problem named by its key; a world-readable password file is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kalshi-deduplicator"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

// A valid file (password from a 0600 file) passes; the same file with the password file made
// group-readable, an inline password, an unknown key and a bad range width each exit 78 with
// a message naming the key; a missing file exits 78 too.
#[test]
fn check_config_and_bad_config() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let good = format!(
        "[production]\nurl = \"postgresql://deduplicator@127.0.0.1:5432/kalshi\"\n\
         password_file = \"{}\"\n\
         [[gatherer]]\nname = \"gatherer-1\"\nurl = \"postgresql://deduplicator@127.0.0.1:5433/kalshi\"\n",
        pw.display()
    );
    let file = dir.path().join("dedup.toml");
    std::fs::write(&file, &good).unwrap();
    let f = file.to_str().unwrap();
    let (code, out) = run(&["--config", f, "--check-config"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is valid"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, out) = run(&["--config", f, "--check-config"]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("production.password_file"), "{out}");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();

    for (bad, key) in [
        (
            good.replace(
                "deduplicator@127.0.0.1:5432",
                "deduplicator:pw@127.0.0.1:5432",
            ),
            "production.url",
        ),
        (
            format!("{good}[sync]\nrange_width_ms = 0\n"),
            "sync.range_width_ms",
        ),
        (format!("{good}[sync]\nwidth = 5\n"), "width"),
        (
            good.replace("name = \"gatherer-1\"", "name = \"merged\""),
            "gatherer[0].name",
        ),
    ] {
        std::fs::write(&file, &bad).unwrap();
        let (code, out) = run(&["--config", f]);
        assert_eq!(code, 78, "{out}");
        assert!(out.contains(key), "{key} not named in: {out}");
    }
    let (code, out) = run(&["--config", "/nonexistent/dedup.toml"]);
    assert_eq!(code, 78, "{out}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split(' ').nth(1)?.parse().ok()?;
    Some((code, out.split_once("\r\n\r\n")?.1.to_owned()))
}

// The binary against real databases: it migrates production at start, serves /health with
// a `gatherers` field and /metrics with the runbook's names, and exits 0 on SIGTERM.
#[test]
fn runs_and_stops_on_sigterm() {
    use kalshi_pg_harness::{PgCluster, PgOptions};
    let gatherer = PgCluster::start(PgOptions::default()).unwrap();
    kalshi_storage::migrate(
        &mut kalshi_storage::connect(&gatherer.url("kalshi")).unwrap(),
        &kalshi_storage::MigrateOptions::gatherer(),
    )
    .unwrap();
    let prod = PgCluster::start(PgOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mp, hp) = (free_port(), free_port());
    let file = dir.path().join("dedup.toml");
    std::fs::write(
        &file,
        format!(
            "[production]\nurl = \"{}\"\n[[gatherer]]\nname = \"gatherer-1\"\nurl = \"{}\"\n\
             [http]\nmetrics_listen = \"127.0.0.1:{mp}\"\nhealth_listen = \"127.0.0.1:{hp}\"\n",
            prod.url("kalshi"),
            gatherer.url("kalshi")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kalshi-deduplicator"))
        .args(["--config", file.to_str().unwrap()])
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let body = loop {
        assert!(start.elapsed().as_secs() < 60, "no /health");
        if let Some((_, body)) = get(hp, "/health")
            && body.contains("\"reachable\":true")
        {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["production"]["reachable"], true, "{body}");
    assert!(v["gatherers"]["gatherer-1"].is_object(), "{body}");
    let (code, metrics) = get(mp, "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "dedup_sync_lag_seconds",
        "dedup_gatherer_health",
        "dedup_rds_connected 1",
    ] {
        assert!(metrics.contains(name), "{name}: {metrics}");
    }
    let migrated: i64 = kalshi_storage::connect(&prod.url("kalshi"))
        .unwrap()
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert!(migrated >= 5);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}
