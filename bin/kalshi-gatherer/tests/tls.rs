//! Capture over `wss`/`https` with verified certificates: the simulator serves TLS with a
//! certificate made here by rcgen, and the gatherer trusts it only through
//! `exchange.tls_root_files`. A certificate from an unknown CA is refused at start with an
//! error that names the setting and the certificate problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{
    Gatherer, GathererConfig, Market, Sim, check_books, check_trades, db, keys, now_us, postgres,
    temp_dir,
};

/// A self-signed certificate for `localhost`: (certificate PEM, key PEM) files in `dir`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (cert_path, key_path)
}

fn market() -> Market {
    Market {
        series: 3,
        events_per_series: 5,
        markets_per_event: 4,
        actions_per_second: 300,
        new_event_every_secs: 3.0,
        market_lifetime_secs: 15.0,
    }
}

/// The simulator's URLs by host name (the certificate is for `localhost`).
fn tls_urls(sim: &Sim, config: &mut GathererConfig) {
    let port = sim.listen.rsplit(':').next().unwrap();
    config.ws_url = format!("wss://localhost:{port}/trade-api/ws/v2");
    config.rest_url = format!("https://localhost:{port}/trade-api/v2");
}

// Over wss with the simulator's certificate trusted: the run's trades are all stored exactly
// once and the books rebuild to the simulator's.
#[test]
fn capture_over_wss_with_verified_certificates() {
    let dir = temp_dir("tls");
    let keys = keys(&dir);
    let (cert, key) = certificate(&dir, "sim");
    let pg = postgres();
    let sim_start = now_us();
    let sim = Sim::start_with(
        &dir,
        &keys.id,
        &keys.public,
        31,
        &market(),
        Some((&cert, &key)),
    );
    let mut config = GathererConfig::new(&sim, &keys, &pg.url("kalshi"), &dir);
    tls_urls(&sim, &mut config);
    config.tls_roots = vec![cert];
    std::fs::create_dir_all(&config.spool).unwrap();
    std::fs::write(
        config.spool.join("gatherer-resume"),
        format!("{}\n", sim_start - 1_000_000),
    )
    .unwrap();
    let mut gatherer = Gatherer::start(&config, &dir, "tls");
    gatherer.wait_healthy();
    for _ in 0..15 * 5 {
        gatherer.assert_running();
        std::thread::sleep(Duration::from_millis(200));
    }
    sim.control("/pause");
    let books = sim.books();
    let truth = sim.truth_trades();
    let mut client = db(&pg);
    let start = Instant::now();
    while !common::missing_trades(&truth, &common::stored_trades(&mut client)).is_empty() {
        gatherer.assert_running();
        assert!(
            start.elapsed() < common::PATIENCE,
            "trades still missing:\n{}",
            gatherer.stderr()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let status = gatherer.terminate();
    assert!(status.success(), "{}", gatherer.stderr());
    let (trades, _, _) = check_trades(&truth, &mut client);
    let compared = check_books(&mut client, &books);
    assert!(trades > 200, "only {trades} trades");
    assert!(compared > 20, "only {compared} books");
    println!("wss: {trades} trades, {compared} books");
}

// The simulator's certificate is not trusted: with another CA's certificate as the extra root,
// and with none (Mozilla roots only), the gatherer refuses to start (exit 69, the exchange is
// unreachable) and says why: the peer's certificate is invalid. A root file that holds no
// certificate is a configuration error (exit 78) naming the setting.
#[test]
fn unknown_certificate_authority_is_refused() {
    let dir = temp_dir("tls-refused");
    let keys = keys(&dir);
    let (cert, key) = certificate(&dir, "sim");
    let (other, _) = certificate(&dir, "other");
    let sim = Sim::start_with(
        &dir,
        &keys.id,
        &keys.public,
        32,
        &market(),
        Some((&cert, &key)),
    );
    for (tag, roots) in [("other", vec![other]), ("none", Vec::new())] {
        let mut config = GathererConfig::new(
            &sim,
            &keys,
            "postgresql://gatherer@127.0.0.1:1/kalshi",
            &dir,
        );
        tls_urls(&sim, &mut config);
        config.tls_roots = roots;
        let mut gatherer = Gatherer::start(&config, &dir, tag);
        let status = gatherer.wait_exit();
        let log = gatherer.stderr();
        assert_eq!(status.code(), Some(69), "{tag}: {log}");
        assert!(log.contains("exchange.rest_url"), "{tag}: {log}");
        // rustls names the reason: `UnknownIssuer` with no matching root, `BadSignature` when a
        // root of the same name (both rcgen defaults) did not sign it.
        assert!(
            log.contains("invalid peer certificate"),
            "{tag}: the error does not name the certificate problem: {log}"
        );
    }
    let not_pem = dir.join("not-a-cert.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let mut config = GathererConfig::new(
        &sim,
        &keys,
        "postgresql://gatherer@127.0.0.1:1/kalshi",
        &dir,
    );
    tls_urls(&sim, &mut config);
    config.tls_roots = vec![not_pem];
    let mut gatherer = Gatherer::start(&config, &dir, "not-pem");
    let status = gatherer.wait_exit();
    let log = gatherer.stderr();
    assert_eq!(status.code(), Some(78), "{log}");
    assert!(log.contains("exchange.tls_root_files"), "{log}");
    assert!(log.contains("not-a-cert.pem"), "{log}");
}
