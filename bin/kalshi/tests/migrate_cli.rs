//! `kalshi migrate` against a real throwaway PostgreSQL cluster: it creates the database, applies
//! the gatherer schema, is a no-op the second time, refuses to turn a gatherer database into a
//! production one, and names the problem when the server is unreachable or a password file is
//! too open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use kalshi_pg_harness::{PgCluster, PgOptions};

fn migrate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kalshi"))
        .arg("migrate")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn migrate_creates_applies_and_is_idempotent() {
    let cluster = PgCluster::start(PgOptions::default().without_database()).unwrap();
    let url = cluster.url("kalshi");

    let first = migrate(&["--db", &url, "--create-database"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("role gatherer, storage native"), "{stdout}");
    assert!(String::from_utf8_lossy(&first.stderr).contains("created database kalshi"));

    let second = migrate(&["--db", &url]);
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("applied [],"));

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('trades','orderbook_deltas',\
             'orderbook_snapshots','tickers','markets','events','market_lifecycle','sequence_gaps')",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(tables, 8);

    let wrong_role = migrate(&["--db", &url, "--role", "production"]);
    assert!(!wrong_role.status.success());
    assert!(!String::from_utf8_lossy(&wrong_role.stderr).is_empty());
}

#[test]
fn migrate_errors_name_the_problem() {
    // Nothing listens on port 1.
    let unreachable = migrate(&["--db", "postgresql://postgres@127.0.0.1:1/kalshi"]);
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("connecting to"), "{stderr}");

    let dir = std::env::temp_dir().join(format!("kalshi-migrate-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("password");
    std::fs::write(&file, "secret-value\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = migrate(&[
        "--db",
        "postgresql://postgres@127.0.0.1:1/kalshi",
        "--db-password-file",
        file.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&open.stderr);
    assert!(
        stderr.contains("must not be readable or writable by group or others"),
        "{stderr}"
    );
    assert!(!stderr.contains("secret-value"));
    std::fs::remove_dir_all(&dir).unwrap();

    let garbage = migrate(&["--db", "not a url at all ==="]);
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("--db is not a valid"));
}
