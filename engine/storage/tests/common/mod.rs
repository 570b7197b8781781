//! Helpers shared by the storage integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unreachable_pub)]

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_storage::{MigrateOptions, MigrateReport, connect, migrate};
use postgres::Client;
use postgres::error::SqlState;

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;

/// A fresh cluster with the database `kalshi`.
pub fn cluster() -> PgCluster {
    PgCluster::start(PgOptions::default()).unwrap()
}

/// A superuser client on database `db` of `cluster`.
pub fn client(cluster: &PgCluster, db: &str) -> Client {
    connect(&cluster.url(db)).unwrap()
}

/// Migrate database `db` with `opts` and return the report.
pub fn migrated(cluster: &PgCluster, db: &str, opts: &MigrateOptions) -> MigrateReport {
    migrate(&mut client(cluster, db), opts).unwrap()
}

/// The database's idea of now, in microseconds.
pub fn now_us(client: &mut Client) -> i64 {
    client
        .query_one("SELECT unix_now_us()", &[])
        .unwrap()
        .get(0)
}

/// Assert that `result` failed with SQLSTATE `code`.
pub fn assert_sqlstate<T: std::fmt::Debug>(
    result: Result<T, postgres::Error>,
    code: &SqlState,
    what: &str,
) {
    match result {
        Ok(v) => panic!("{what}: expected {code:?}, got Ok({v:?})"),
        Err(e) => assert_eq!(e.code(), Some(code), "{what}: {e}"),
    }
}
