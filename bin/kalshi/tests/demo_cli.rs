//! `kalshi demo` end to end: four PostgreSQL clusters, the simulator, three gatherers and the
//! deduplicator; the run must end with production (and every gatherer database) matching the
//! exchange's truth log, and every service exiting cleanly on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn demo_passes_its_truth_check() {
    let workdir = std::env::temp_dir().join(format!("kalshi-demo-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&workdir);
    let output = Command::new(env!("CARGO_BIN_EXE_kalshi"))
        .args([
            "demo",
            "--duration",
            "25",
            "--settle-timeout",
            "150",
            "--keep",
        ])
        .arg("--workdir")
        .arg(&workdir)
        // A smaller exchange than the default keeps the test quick on a shared 2-core machine.
        .args([
            "--series",
            "5",
            "--events-per-series",
            "4",
            "--markets-per-event",
            "8",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let logs = |name: &str| {
        std::fs::read_to_string(workdir.join("logs").join(name))
            .unwrap_or_default()
            .lines()
            .rev()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(
        output.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}\n--- dedup log tail\n{}\n--- gatherer-1 log tail\n{}",
        output.status,
        logs("deduplicator.log"),
        logs("gatherer-1.log")
    );
    // The summary's verdicts, from the demo's own check against the truth log.
    assert!(stdout.contains("production: PASS"), "{stdout}");
    for g in 1..=3 {
        assert!(
            stdout.contains(&format!("gatherer-{g} database: PASS")),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("gatherer-{g}: clean exit")),
            "{stdout}"
        );
    }
    assert!(
        stdout.contains("kalshi-deduplicator: clean exit"),
        "{stdout}"
    );
    // Something was actually captured and checked.
    let trades_line = stdout
        .lines()
        .skip_while(|l| !l.starts_with("production:"))
        .nth(1)
        .unwrap();
    let expected: u64 = trades_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        expected > 100,
        "only {expected} trades checked: {trades_line}"
    );
    let _ = std::fs::remove_dir_all(&workdir);
}
