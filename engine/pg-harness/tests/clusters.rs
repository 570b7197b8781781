#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Integration tests of the harness against real PostgreSQL server binaries.

use std::thread;

use kalshi_pg_harness::{PgCluster, PgOptions, process_alive};
use postgres::{Client, NoTls};

fn connect(cluster: &PgCluster) -> Client {
    Client::connect(&cluster.url("kalshi"), NoTls).unwrap()
}

// Checks that two clusters started at the same time from two threads both come up, on different
// ports and directories, each with its own `kalshi` database: it writes a different value into
// each and reads it back from each.
#[test]
fn two_clusters_at_once() {
    let handles: Vec<_> = (0..2)
        .map(|_| thread::spawn(|| PgCluster::start(PgOptions::default()).unwrap()))
        .collect();
    let clusters: Vec<PgCluster> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(clusters[0].port(), clusters[1].port());
    assert_ne!(clusters[0].data_dir(), clusters[1].data_dir());
    for (i, cluster) in clusters.iter().enumerate() {
        assert!(
            cluster
                .url("kalshi")
                .starts_with("postgresql://postgres@127.0.0.1:")
        );
        let mut client = connect(cluster);
        client.batch_execute("CREATE TABLE t (v int); ").unwrap();
        client
            .execute("INSERT INTO t VALUES ($1)", &[&(i as i32)])
            .unwrap();
    }
    for (i, cluster) in clusters.iter().enumerate() {
        let mut client = connect(cluster);
        let v: i32 = client.query_one("SELECT v FROM t", &[]).unwrap().get(0);
        assert_eq!(v, i as i32);
        let db: String = client
            .query_one("SELECT current_database()", &[])
            .unwrap()
            .get(0);
        assert_eq!(db, "kalshi");
    }
}

// Checks stop and start_again: data committed before a fast shutdown is there after a restart
// on the same port, and the cluster reports not running while stopped.
#[test]
fn stop_and_start_again_keeps_data() {
    let mut cluster = PgCluster::start(PgOptions::default()).unwrap();
    let port = cluster.port();
    connect(&cluster)
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('before stop');")
        .unwrap();
    cluster.stop().unwrap();
    assert!(!cluster.is_running());
    assert!(Client::connect(&cluster.url("kalshi"), NoTls).is_err());
    cluster.start_again().unwrap();
    assert!(cluster.is_running());
    assert_eq!(cluster.port(), port);
    let v: String = connect(&cluster)
        .query_one("SELECT v FROM kept", &[])
        .unwrap()
        .get(0);
    assert_eq!(v, "before stop");
    assert!(
        cluster.start_again().is_err(),
        "starting a running cluster must fail"
    );
}

// Checks kill and start_again: SIGKILL with a client connected takes the server down (the
// client's next query fails), the postmaster pid is gone, and after crash recovery committed data
// is still there.
#[test]
fn kill_and_start_again_recovers() {
    let mut cluster = PgCluster::start(PgOptions::default()).unwrap();
    let mut client = connect(&cluster);
    client
        .batch_execute(
            "CREATE TABLE crash (v int); INSERT INTO crash SELECT generate_series(1, 1000);",
        )
        .unwrap();
    let pid = cluster.pid().unwrap();
    cluster.kill().unwrap();
    assert!(!cluster.is_running());
    assert!(!process_alive(pid));
    assert!(client.query_one("SELECT 1", &[]).is_err());
    cluster.start_again().unwrap();
    let n: i64 = connect(&cluster)
        .query_one("SELECT count(*) FROM crash", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

// Checks Drop: after dropping a running cluster (with an open connection, so there is a backend
// process), neither the postmaster nor that backend exists and the temporary directory is gone.
#[test]
fn drop_leaves_nothing_behind() {
    let cluster = PgCluster::start(PgOptions::default()).unwrap();
    let pid = cluster.pid().unwrap();
    let root = cluster.root_dir().to_path_buf();
    let mut client = connect(&cluster);
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert!(process_alive(pid));
    drop(cluster);
    assert!(!process_alive(pid), "postmaster {pid} still alive");
    assert!(
        !process_alive(backend as u32),
        "backend {backend} still alive"
    );
    assert!(!root.exists());
}

// Checks Drop after kill: a killed cluster's backends do not outlive it, by holding a connection
// open across the kill and checking the backend pid afterwards.
#[test]
fn kill_leaves_no_backends() {
    let mut cluster = PgCluster::start(PgOptions::default()).unwrap();
    let mut client = connect(&cluster);
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    cluster.kill().unwrap();
    assert!(!process_alive(backend as u32));
    drop(cluster);
}

// Checks the options: without a database only `postgres` exists, and extra settings reach the
// server (read back with SHOW).
#[test]
fn options_are_applied() {
    let cluster = PgCluster::start(
        PgOptions::default()
            .without_database()
            .setting("work_mem", "7MB"),
    )
    .unwrap();
    let mut client = Client::connect(&cluster.url("postgres"), NoTls).unwrap();
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = 'kalshi'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    let wm: String = client.query_one("SHOW work_mem", &[]).unwrap().get(0);
    assert_eq!(wm, "7MB");
    let fsync: String = client.query_one("SHOW fsync", &[]).unwrap().get(0);
    assert_eq!(fsync, "off");
    assert!(
        cluster
            .conn_string("kalshi", "gatherer")
            .contains("gatherer@127.0.0.1")
    );
}

// Checks the error for missing binaries: pointing bin_dir at an empty directory fails with a
// message that names the `postgresql` package.
#[test]
fn missing_binaries_say_what_to_install() {
    let empty = tempfile::tempdir().unwrap();
    let err = PgCluster::start(PgOptions {
        bin_dir: Some(empty.path().to_path_buf()),
        ..PgOptions::default()
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("apt-get install -y postgresql"), "{msg}");
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
}
