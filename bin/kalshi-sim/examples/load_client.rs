//! A plain WebSocket client that measures the frame rate it receives from `kalshi-sim` in load
//! mode (see the Simulator section of `bench/README.md`).
//!
//! ```sh
//! load_client ADDR [SECONDS] [--check]
//! ```
//! Lists the load markets over REST, subscribes `orderbook_delta`, `trade` and `ticker` for all
//! of them on one connection, then counts text frames for SECONDS (default 10) after a
//! one-second warm-up and prints frames/s and MB/s. With `--check` every frame is parsed and
//! each sid's seq must run without a gap (slower: measures the checker too).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;
use tungstenite::Message;

fn get(addr: &str, target: &str) -> anyhow::Result<Value> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(serde_json::from_str(body)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9100".into());
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let check = args.iter().any(|a| a == "--check");

    let mut tickers = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            &addr,
            &format!("/trade-api/v2/markets?limit=1000&cursor={cursor}"),
        )?;
        for m in page["markets"].as_array().into_iter().flatten() {
            tickers.push(m["ticker"].as_str().unwrap_or_default().to_owned());
        }
        cursor = page["cursor"].as_str().unwrap_or_default().to_owned();
        if cursor.is_empty() {
            break;
        }
    }
    let stream = TcpStream::connect(&addr)?;
    stream.set_nodelay(true)?;
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/trade-api/ws/v2"), stream)?;
    let subscribe = serde_json::json!({"id": 1, "cmd": "subscribe", "params": {
        "channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers}});
    ws.send(Message::Text(subscribe.to_string().into()))?;

    let mut last_seq: HashMap<u64, u64> = HashMap::new();
    let mut count = |text: &[u8]| -> anyhow::Result<()> {
        if check {
            let v: Value = serde_json::from_slice(text)?;
            if let (Some(sid), Some(seq)) = (v["sid"].as_u64(), v["seq"].as_u64()) {
                let last = last_seq.entry(sid).or_insert(0);
                anyhow::ensure!(seq == *last + 1, "sid {sid}: seq {seq} after {last}");
                *last = seq;
            }
        }
        Ok(())
    };
    let warmup = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warmup {
        if let Message::Text(t) = ws.read()? {
            count(t.as_bytes())?;
        }
    }
    let (mut frames, mut bytes) = (0_u64, 0_u64);
    let started = Instant::now();
    let length = Duration::from_secs_f64(seconds);
    while started.elapsed() < length {
        if let Message::Text(t) = ws.read()? {
            count(t.as_bytes())?;
            frames += 1;
            bytes += t.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} markets, {frames} frames in {secs:.2} s: {:.0} frames/s, {:.1} MB/s, {:.0} B/frame{}",
        tickers.len(),
        frames as f64 / secs,
        bytes as f64 / secs / 1e6,
        bytes as f64 / frames.max(1) as f64,
        if check { ", seq checked" } else { "" }
    );
    Ok(())
}
