//! Measures how fast one core generates and renders load-mode frames for one connection
//! subscribed to `orderbook_delta` (all markets), `trade` and `ticker`.
//!
//! `cargo run --release -p kalshi-sim-core --example load_rate -- [markets] [frames]`

use std::time::Instant;

use kalshi_sim_core::{LoadConfig, LoadGen, LoadRoute, Session, SessionConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let markets: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let frames: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let mut load = match LoadGen::new(LoadConfig {
        markets,
        ..LoadConfig::default()
    }) {
        Ok(load) => load,
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    let mut session = Session::new(SessionConfig {
        market_limit: markets,
        ..SessionConfig::default()
    });
    let tickers: Vec<String> = load.tickers();
    let command = format!(
        r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":{},"use_yes_price":false}}}}"#,
        serde_json::to_string(&tickers).unwrap_or_default()
    );
    let replies = session.handle_command_on(0, command.as_bytes(), &load);
    let replies2 = session.handle_command_on(
        0,
        br#"{"id":2,"cmd":"subscribe","params":{"channels":["trade","ticker"]}}"#,
        &load,
    );
    eprintln!(
        "subscribed: {} + {} reply frames",
        replies.len(),
        replies2.len()
    );
    let mut route = LoadRoute::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut bytes = 0_u64;
    let mut sent = 0_u64;
    let started = Instant::now();
    for _ in 0..frames {
        buf.clear();
        if load
            .next_frame(&mut route, &mut session, &mut buf)
            .is_some()
        {
            sent += 1;
            bytes += buf.len() as u64;
            std::hint::black_box(&buf);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = route.stats();
    println!(
        "markets={markets} frames={sent} seconds={seconds:.3} rate={:.0} msgs/s ({:.1} ns/msg) avg_bytes={:.0} MB/s={:.1} deltas={} trades={} tickers={}",
        sent as f64 / seconds,
        seconds * 1e9 / sent.max(1) as f64,
        bytes as f64 / sent.max(1) as f64,
        bytes as f64 / seconds / 1e6,
        stats.deltas,
        stats.trades,
        stats.tickers
    );
}
