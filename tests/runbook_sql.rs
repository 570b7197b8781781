//! Every SQL statement in the project's RUNBOOK.md runs against our schema: the ```sql blocks
//! and the `psql -c "..."` commands, on a gatherer database and on a production database.
//! Statements that need TimescaleDB are recognised and skipped on the native path (CI has no
//! TimescaleDB), and the test says how many it skipped; placeholders (`<start>`, `<end>`) are
//! filled with real values.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_storage::MigrateOptions;

fn runbook() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../RUNBOOK.md");
    std::fs::read_to_string(&path).unwrap()
}

/// The statements of the runbook: the bodies of ```sql blocks split on `;`, and the quoted
/// argument of every `psql ... -c "..."` in ```bash blocks.
fn statements(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lang: Option<String> = None;
    let mut block = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("```") {
            match lang.take() {
                Some(l) => {
                    if l == "sql" {
                        for stmt in block.split(';') {
                            let body: String = stmt
                                .lines()
                                .filter(|l| !l.trim_start().starts_with("--"))
                                .collect::<Vec<_>>()
                                .join("\n");
                            if !body.trim().is_empty() {
                                out.push(body.trim().to_owned());
                            }
                        }
                    }
                    block.clear();
                }
                None => lang = Some(rest.trim().to_owned()),
            }
            continue;
        }
        match lang.as_deref() {
            Some("sql") => {
                block.push_str(line);
                block.push('\n');
            }
            Some("bash") if trimmed.starts_with("psql") => {
                if let Some(start) = trimmed.find("-c \"") {
                    let rest = &trimmed[start + 4..];
                    if let Some(end) = rest.rfind('"') {
                        out.push(rest[..end].to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn needs_timescale(stmt: &str) -> bool {
    [
        "timescaledb_information",
        "show_chunks",
        "drop_chunks",
        "hypertable",
        "compress_chunk",
    ]
    .iter()
    .any(|w| stmt.contains(w))
}

fn run_all(role: MigrateOptions) -> (usize, usize) {
    let cluster = PgCluster::start(PgOptions::default()).unwrap();
    let mut client = kalshi_storage::connect(&cluster.url("kalshi")).unwrap();
    kalshi_storage::migrate(&mut client, &role).unwrap();
    let (mut ran, mut skipped) = (0, 0);
    for stmt in statements(&runbook()) {
        if needs_timescale(&stmt) {
            skipped += 1;
            continue;
        }
        let sql = stmt
            .replace("<start>", "1700000000000000")
            .replace("<end>", "1800000000000000");
        // Each statement in its own transaction, rolled back: the retention statements change
        // settings, and a failure must not hide the next statement's result.
        let mut tx = client.transaction().unwrap();
        if let Err(e) = tx.batch_execute(&sql) {
            let detail = e
                .as_db_error()
                .map_or_else(|| e.to_string(), |d| d.message().to_owned());
            panic!("runbook statement failed: {detail}\n---\n{sql}");
        }
        tx.rollback().unwrap();
        ran += 1;
    }
    (ran, skipped)
}

#[test]
fn runbook_sql_runs_on_gatherer_and_production() {
    let all = statements(&runbook());
    assert!(
        all.len() >= 12,
        "found only {} statements: {all:#?}",
        all.len()
    );
    let (ran, skipped) = run_all(MigrateOptions::gatherer());
    assert_eq!(ran + skipped, all.len());
    assert!(ran >= 10, "ran {ran}");
    let (ran_prod, _) = run_all(MigrateOptions::production());
    assert_eq!(ran_prod, ran);
    eprintln!(
        "runbook: {ran} statements ran on both schemas; {skipped} need TimescaleDB and were skipped"
    );
}
