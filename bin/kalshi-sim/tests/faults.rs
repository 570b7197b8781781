#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Faults on demand through the control endpoint, each observed by a plain WebSocket or HTTP
//! client: a skipped seq shows as a jump of exactly 2, a duplicate as a repeated frame, a
//! malformed frame arrives and the stream goes on, close / reset / pause end the connection
//! the documented way, a stall loses nothing (and a long one on a small queue disconnects the
//! slow client), error 25 ends its subscription, forced 401s and 429s, REST delay, book dumps.

mod common;

use std::time::Instant;

use common::{Client, End, Sim, check_seq, open_tickers, read_lines, temp_dir, write_config};
use serde_json::{Value, json};

fn sim(extra: &str) -> Sim {
    let dir = temp_dir("faults");
    let books = dir.join("books.jsonl");
    let config = write_config(
        &dir,
        &format!(
            "seed = 11\nfinal_books = {books:?}\n[auth]\nenabled = false\n[market]\ndelayed_open_per_mille = 0\nactions_per_second = 1000\n{extra}"
        ),
    );
    Sim::start(&["--config", config.to_str().unwrap()])
}

/// A client subscribed to the orderbook of every open market and the ticker firehose;
/// returns it with the orderbook sid.
fn subscribed(sim: &Sim) -> (Client, u64) {
    let tickers = open_tickers(sim);
    let mut client = sim.ws();
    client.command(
        "subscribe",
        Some(json!({"channels": ["orderbook_delta", "ticker"], "market_tickers": tickers})),
    );
    let sid = client.until(|f| f["type"] == "subscribed")["msg"]["sid"]
        .as_u64()
        .unwrap();
    (client, sid)
}

/// Reads until the sid's seq reaches `seq`.
fn read_to_seq(client: &mut Client, sid: u64, seq: u64) {
    client.until(|f| f["sid"] == sid && f["seq"].as_u64().is_some_and(|s| s >= seq));
}

/// The seq values of a sid's frames, in arrival order.
fn seqs(client: &Client, sid: u64) -> Vec<u64> {
    client
        .on_sid(sid)
        .iter()
        .filter_map(|f| f["seq"].as_u64())
        .collect()
}

// skip-seq: the sid's seq jumps by exactly 2 once, and by 1 everywhere else.
#[test]
fn skip_seq() {
    let sim = sim("");
    let (mut client, sid) = subscribed(&sim);
    read_to_seq(&mut client, sid, 5);
    let answer = sim.control(&format!("/skip-seq?peer={}&sid={sid}", client.local));
    assert_eq!(answer["ok"], true);
    let before = seqs(&client, sid).len();
    // Read well past the skip.
    let target = seqs(&client, sid).last().unwrap() + 30;
    read_to_seq(&mut client, sid, target);
    let all = seqs(&client, sid);
    let steps: Vec<u64> = all.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps.iter().filter(|s| **s == 2).count(), 1, "{all:?}");
    assert!(steps.iter().all(|s| *s == 1 || *s == 2), "{all:?}");
    let jump = steps.iter().position(|s| *s == 2).unwrap();
    assert!(jump + 1 >= before, "the gap comes after the request");
}

// duplicate: one frame of the sid arrives twice (same seq, same text); no other repeat.
#[test]
fn duplicate_frame() {
    let sim = sim("");
    let (mut client, sid) = subscribed(&sim);
    read_to_seq(&mut client, sid, 5);
    sim.control(&format!("/duplicate?peer={}&sid={sid}", client.local));
    let target = seqs(&client, sid).last().unwrap() + 30;
    read_to_seq(&mut client, sid, target);
    let frames = client.on_sid(sid);
    let repeats: Vec<_> = frames
        .windows(2)
        .filter(|w| w[0]["seq"].is_u64() && w[0]["seq"] == w[1]["seq"])
        .collect();
    assert_eq!(repeats.len(), 1, "{:?}", seqs(&client, sid));
    assert_eq!(repeats[0][0], repeats[0][1]);
}

// malformed: a text frame that is not JSON arrives; sequenced data continues without a gap.
#[test]
fn malformed_frame() {
    let sim = sim("");
    let (mut client, sid) = subscribed(&sim);
    read_to_seq(&mut client, sid, 3);
    sim.control(&format!("/malformed?peer={}", client.local));
    let got = client.until(|f| f.as_str().is_some_and(|s| s.starts_with("MALFORMED:")));
    assert!(serde_json::from_str::<Value>(&got.as_str().unwrap()["MALFORMED:".len()..]).is_err());
    let target = seqs(&client, sid).last().unwrap() + 10;
    read_to_seq(&mut client, sid, target);
    check_seq(&client.log);
}

// close: a close frame with the reason; reset: the socket ends without one.
#[test]
fn close_and_reset() {
    let sim = sim("");
    let mut client = sim.ws();
    let local = client.local.clone();
    // The connection is registered once the server has answered a command.
    let id = client.command("list_subscriptions", None);
    client.until(|f| f["id"] == id);
    sim.control(&format!("/close?peer={local}"));
    assert_eq!(
        client.until_end(),
        End::Closed("closed by fault injection".into())
    );

    let mut client = sim.ws();
    let id = client.command("list_subscriptions", None);
    client.until(|f| f["id"] == id);
    sim.control(&format!("/close?peer={}&reset=true", client.local));
    match client.until_end() {
        End::Reset(why) => assert!(
            why.contains("without closing handshake") || why.contains("reset"),
            "{why}"
        ),
        End::Closed(why) => panic!("expected a reset, got a close frame {why:?}"),
    }
    // Unknown connections are named in a 404.
    let (status, body) = common::http(&sim.control, "POST", "/close?conn=999999", &[]);
    assert_eq!(status, 404);
    assert!(body.contains("999999"));
}

// stall: nothing is lost across a short stall (seq stays contiguous); a long stall with a tiny
// outbound queue makes the client "slow", and the server drops it.
#[test]
fn stall() {
    let sim = sim("");
    let (mut client, sid) = subscribed(&sim);
    read_to_seq(&mut client, sid, 3);
    sim.control(&format!("/stall?peer={}&ms=300", client.local));
    let target = seqs(&client, sid).last().unwrap() + 50;
    read_to_seq(&mut client, sid, target);
    check_seq(&client.log);

    let slow = self::sim("[server]\noutbound_queue_batches = 4\n");
    let (mut client, sid) = subscribed(&slow);
    read_to_seq(&mut client, sid, 3);
    slow.control(&format!("/stall?peer={}&ms=600000", client.local));
    assert!(matches!(client.until_end(), End::Reset(_)));
    assert_eq!(slow.stats()["slow_disconnects"], 1);
}

// overflow: error 25 on the sid (with sid and the next seq), and the subscription is gone.
#[test]
fn buffer_overflow() {
    let sim = sim("");
    let (mut client, sid) = subscribed(&sim);
    read_to_seq(&mut client, sid, 3);
    sim.control(&format!("/overflow?peer={}&sid={sid}", client.local));
    let error = client.until(|f| f["type"] == "error");
    assert_eq!(error["sid"], sid);
    assert_eq!(
        error["msg"],
        json!({"code": 25, "msg": "Subscription buffer overflow"})
    );
    check_seq(&client.log);
    let id = client.command("list_subscriptions", None);
    let list = client.until(|f| f["id"] == id);
    assert_eq!(list["msg"], json!([{"channel": "ticker", "sid": 2}]));
    let after = client.log.len();
    // Unknown sids are refused by name.
    let (status, _) = common::http(
        &sim.control,
        "POST",
        &format!("/overflow?peer={}&sid={sid}", client.local),
        &[],
    );
    assert_eq!(status, 404);
    for _ in 0..20 {
        client.until(|f| f["type"] == "ticker");
    }
    assert!(client.log[after..].iter().all(|f| f["sid"] != sid));
}

// pause: WebSockets close ("exchange paused"), REST reports the exchange inactive, new
// handshakes are refused 503; resume undoes it.
#[test]
fn pause_and_resume() {
    let sim = sim("");
    let mut client = sim.ws();
    let id = client.command("list_subscriptions", None);
    client.until(|f| f["id"] == id);
    sim.control("/pause");
    assert_eq!(client.until_end(), End::Closed("exchange paused".into()));
    let (status, body) = sim.get("/trade-api/v2/exchange/status");
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"exchange_active": false, "trading_active": false})
    );
    let (status, _) = sim
        .ws_with(&[])
        .map(|_| (101, String::new()))
        .unwrap_or_else(|e| e);
    assert_eq!(status, 503);
    sim.control("/resume");
    let (_, body) = sim.get("/trade-api/v2/exchange/status");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"exchange_active": true, "trading_active": true})
    );
    let mut client = sim.ws();
    let id = client.command("list_subscriptions", None);
    client.until(|f| f["id"] == id);
}

// reject-auth: handshakes answer 401 with the bad-signature body until lifted.
#[test]
fn reject_auth() {
    let sim = sim("");
    sim.control("/reject-auth?on=true");
    let (status, body) = sim
        .ws_with(&[])
        .map(|_| (101, String::new()))
        .unwrap_or_else(|e| e);
    assert_eq!(status, 401);
    assert_eq!(
        body,
        r#"{"error":{"code":"authentication_error","message":"authentication_error","details":"INCORRECT_API_KEY_SIGNATURE"}}"#
    );
    sim.control("/reject-auth?on=false");
    sim.ws();
}

// force-429: exactly the next N REST requests get 429 with the documented body; rest-delay
// delays a response by at least the configured time.
#[test]
fn forced_429_and_delay() {
    let sim = sim("");
    sim.control("/force-429?count=2");
    for _ in 0..2 {
        assert_eq!(
            sim.get("/trade-api/v2/exchange/status"),
            (429, r#"{"error":"too many requests"}"#.to_owned())
        );
    }
    assert_eq!(sim.get("/trade-api/v2/exchange/status").0, 200);
    sim.control("/rest-delay?ms=300");
    let started = Instant::now();
    assert_eq!(sim.get("/trade-api/v2/exchange/status").0, 200);
    assert!(started.elapsed().as_millis() >= 300);
    sim.control("/rest-delay?ms=0");
    let (status, body) = common::http(&sim.control, "POST", "/force-429?count=x", &[]);
    assert_eq!(status, 400);
    assert!(body.contains("count"), "{body}");
}

// dump-books: the answer is the books, also written to the final books file; one line per
// listed market, in the truth-log wrapper.
#[test]
fn dump_books() {
    let sim = sim("");
    let (status, body) = common::http(&sim.control, "POST", "/dump-books", &[]);
    assert_eq!(status, 200);
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let markets = sim.stats()["markets"].as_u64().unwrap() as usize;
    assert!(!lines.is_empty() && lines.len() <= markets);
    for line in &lines {
        assert_eq!(line["record"]["type"], "orderbook_snapshot");
        assert!(line["market_seq"].is_u64());
    }
    let stats = sim.stats();
    assert!(stats["connections"].is_array());
    let from_file = read_lines(&find_books(&sim));
    assert_eq!(from_file, lines);
    let (status, _) = common::http(&sim.control, "GET", "/dump-books", &[]);
    assert_eq!(status, 405);
}

fn find_books(sim: &Sim) -> std::path::PathBuf {
    // The config sits next to the books file; find it through the process's command line.
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", sim.child.id())).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let config = args
        .iter()
        .position(|a| a == "--config")
        .map(|i| std::path::PathBuf::from(&args[i + 1]))
        .unwrap();
    config.with_file_name("books.jsonl")
}

// Scheduled faults from the config file happen at their exchange time: a skip on sid 1 shows
// as one seq jump of 2, then close_all closes the connection with a close frame.
#[test]
fn scheduled_faults() {
    let sim = sim(
        "[[faults]]\nat_secs = 3.0\naction = \"skip_seq\"\nsid = 1\n[[faults]]\nat_secs = 4.0\naction = \"close_all\"\n",
    );
    let (mut client, sid) = subscribed(&sim);
    assert_eq!(sid, 1);
    assert_eq!(
        client.until_end(),
        End::Closed("closed by fault injection".into())
    );
    let all = seqs(&client, sid);
    let steps: Vec<u64> = all.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(steps.iter().filter(|s| **s == 2).count(), 1, "{all:?}");
    assert!(steps.iter().all(|s| *s == 1 || *s == 2));
}
