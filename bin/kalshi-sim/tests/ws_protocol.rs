#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The WebSocket protocol over a real socket with a plain tungstenite client, checked against
//! `protocol.md` §5: subscribed/ok/unsubscribed shapes, per-sid seq with acks consuming seq,
//! repeat-subscribe, update_subscription, every error code the simulator produces, firehose
//! channels, heartbeats.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{Sim, check_seq, open_tickers, sid_of, temp_dir, write_config};
use serde_json::{Value, json};

/// The error table of `protocol.md` §5.5.
fn spec_message(code: i64) -> &'static str {
    match code {
        1 => "Unable to process message",
        2 => "Params required",
        3 => "Channels required",
        4 => "Subscription IDs required",
        5 => "Unknown command",
        7 => "Unknown subscription ID",
        8 => "Unknown channel name",
        10 => "Channel error",
        11 => "Invalid parameter",
        12 => "Exactly one subscription ID is required",
        13 => "Unsupported action",
        14 => "Market Ticker required",
        15 => "Action required",
        25 => "Subscription buffer overflow",
        26 => "Subscription market limit exceeded",
        27 => "Too many requests",
        other => panic!("code {other} is not in the table"),
    }
}

fn sim(extra: &str) -> Sim {
    let dir = temp_dir("ws");
    let config = write_config(
        &dir,
        &format!(
            "seed = 7\n[auth]\nenabled = false\n[market]\ndelayed_open_per_mille = 0\nactions_per_second = 400\n{extra}"
        ),
    );
    Sim::start(&["--config", config.to_str().unwrap()])
}

fn is_error(frame: &Value, id: u64) -> bool {
    frame["type"] == "error" && frame["id"] == id
}

// One subscribe with three channels gives three `subscribed` frames with the command id and
// distinct sids (no top-level sid/seq); snapshots come first on the orderbook sid at seq 1..N;
// a repeat subscribe answers `ok` on the existing sid with the merged list and snapshots only
// the new market; add/delete/get_snapshot behave as documented; `unsubscribed` carries sid,
// seq and id; every sid's seq runs 1, 2, 3 … with the acks included; tickers carry no seq.
#[test]
fn subscriptions_and_seq() {
    let sim = sim("");
    let tickers = open_tickers(&sim);
    assert!(tickers.len() >= 4, "{tickers:?}");
    let (a, b, c, d) = (&tickers[0], &tickers[1], &tickers[2], &tickers[3]);
    let mut client = sim.ws();

    let id = client.command(
        "subscribe",
        Some(json!({"channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": [a, b]})),
    );
    let mut subscribed = Vec::new();
    while subscribed.len() < 3 {
        let f = client.until(|f| f["type"] == "subscribed");
        assert_eq!(f["id"], id);
        assert!(f.get("sid").is_none() && f.get("seq").is_none(), "{f}");
        subscribed.push((
            f["msg"]["channel"].as_str().unwrap().to_owned(),
            f["msg"]["sid"].as_u64().unwrap(),
        ));
    }
    let channels: Vec<&str> = subscribed.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(channels, ["orderbook_delta", "trade", "ticker"]);
    let sids: Vec<u64> = subscribed.iter().map(|(_, s)| *s).collect();
    assert_eq!(sids, [1, 2, 3], "sids are per connection, from 1");
    let ob = sids[0];

    // The first two sequenced frames on the orderbook sid are the snapshots of a and b (they
    // may already have arrived between the `subscribed` frames).
    while client
        .on_sid(ob)
        .iter()
        .filter(|f| f["seq"].is_u64())
        .count()
        < 2
    {
        client.next().unwrap();
    }
    let sequenced: Vec<Value> = client
        .on_sid(ob)
        .into_iter()
        .filter(|f| f["seq"].is_u64())
        .cloned()
        .collect();
    let (first, second) = (&sequenced[0], &sequenced[1]);
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("orderbook_snapshot"), Some(1))
    );
    assert_eq!(
        (second["type"].as_str(), second["seq"].as_u64()),
        (Some("orderbook_snapshot"), Some(2))
    );
    assert_eq!(first["msg"]["market_ticker"], a.as_str());
    assert_eq!(second["msg"]["market_ticker"], b.as_str());
    assert!(first.get("id").is_none(), "a subscribe snapshot has no id");

    // Repeat subscribe with b (known) and c (new).
    let id = client.command(
        "subscribe",
        Some(json!({"channels": ["orderbook_delta"], "market_tickers": [b, c]})),
    );
    let ok = client.until(|f| f["id"] == id);
    assert_eq!(
        ok["type"], "ok",
        "repeat subscribe is idempotent, never error 6: {ok}"
    );
    assert_eq!(ok["sid"], ob);
    assert_eq!(ok["msg"]["market_tickers"], json!([a, b, c]));
    let snap = client.until(|f| sid_of(f) == Some(ob) && f["seq"].is_u64());
    assert_eq!(snap["type"], "orderbook_snapshot");
    assert_eq!(
        snap["msg"]["market_ticker"],
        c.as_str(),
        "only the new market is snapshotted"
    );
    assert_eq!(snap["seq"].as_u64(), ok["seq"].as_u64().map(|s| s + 1));

    // add_markets d: ok with the full list, then d's snapshot on the same sid.
    let id = client.command(
        "update_subscription",
        Some(json!({"sid": ob, "action": "add_markets", "market_tickers": [d]})),
    );
    let ok = client.until(|f| f["id"] == id);
    assert_eq!(
        (ok["type"].as_str(), ok["sid"].as_u64()),
        (Some("ok"), Some(ob))
    );
    assert_eq!(ok["msg"]["market_tickers"], json!([a, b, c, d]));
    let snap = client.until(|f| sid_of(f) == Some(ob) && f["seq"].is_u64());
    assert_eq!(snap["msg"]["market_ticker"], d.as_str());

    // delete_markets a (the one-element `sids` form).
    let id = client.command(
        "update_subscription",
        Some(json!({"sids": [ob], "action": "delete_markets", "market_tickers": [a]})),
    );
    let ok = client.until(|f| f["id"] == id);
    assert_eq!(ok["msg"]["market_tickers"], json!([b, c, d]));
    let deleted_at = client.log.len();

    // get_snapshot b: a snapshot carrying the command id, on the same sid.
    let id = client.command(
        "update_subscription",
        Some(json!({"sid": ob, "action": "get_snapshot", "market_tickers": [b]})),
    );
    let snap = client.until(|f| f["id"] == id);
    assert_eq!(snap["type"], "orderbook_snapshot");
    assert_eq!(snap["sid"], ob);
    assert_eq!(snap["msg"]["market_ticker"], b.as_str());

    // list_subscriptions: an `ok` with the array, no seq.
    let id = client.command("list_subscriptions", None);
    let list = client.until(|f| f["id"] == id);
    assert_eq!(list["type"], "ok");
    assert!(list.get("seq").is_none());
    assert_eq!(
        list["msg"],
        json!([{"channel": "orderbook_delta", "sid": 1}, {"channel": "trade", "sid": 2}, {"channel": "ticker", "sid": 3}])
    );

    let id = client.command("unsubscribe", Some(json!({"sids": [ob]})));
    let unsub = client.until(|f| f["id"] == id);
    assert_eq!(unsub["type"], "unsubscribed");
    assert_eq!(unsub["sid"], ob);
    assert!(unsub["seq"].is_u64());

    // Ground truth over everything received: contiguous seq per sid (acks included), tickers
    // unsequenced, no deltas for a market outside the subscription.
    let last = check_seq(&client.log);
    assert_eq!(last[&ob], unsub["seq"].as_u64().unwrap());
    for (index, f) in client.log.iter().enumerate() {
        match f["type"].as_str() {
            Some("ticker") => assert!(f.get("seq").is_none(), "{f}"),
            Some("orderbook_delta") => {
                let t = f["msg"]["market_ticker"].as_str().unwrap();
                let allowed: Vec<&str> = if index < deleted_at {
                    vec![a, b, c, d]
                } else {
                    vec![b, c, d]
                };
                assert!(allowed.contains(&t), "delta for {t} at {index}");
                assert!(
                    f["msg"]["ts"].is_string() && f["msg"]["ts_ms"].is_u64(),
                    "{f}"
                );
            }
            Some("error") => panic!("unexpected error {f}"),
            _ => {}
        }
    }
}

// Each error code the simulator produces, with the documented message and the command id.
#[test]
fn error_codes() {
    let sim = sim("[session]\nmarket_limit = 3\n");
    let tickers = open_tickers(&sim);
    let mut client = sim.ws();
    let expect = |client: &mut common::Client, command: Value, code: i64| {
        let id = command["id"].as_u64().unwrap();
        client.send_raw(&command.to_string());
        let f = client.until(|f| is_error(f, id));
        assert_eq!(f["msg"]["code"], code, "{command} -> {f}");
        assert_eq!(f["msg"]["msg"], spec_message(code), "{f}");
    };
    expect(&mut client, json!({"id": 1, "cmd": "subscribe"}), 2);
    expect(
        &mut client,
        json!({"id": 2, "cmd": "subscribe", "params": {}}),
        3,
    );
    expect(
        &mut client,
        json!({"id": 3, "cmd": "frobnicate", "params": {}}),
        5,
    );
    expect(
        &mut client,
        json!({"id": 4, "cmd": "unsubscribe", "params": {"sids": [99]}}),
        7,
    );
    expect(
        &mut client,
        json!({"id": 5, "cmd": "subscribe", "params": {"channels": ["ticker_v2"]}}),
        8,
    );
    expect(
        &mut client,
        json!({"id": 6, "cmd": "subscribe", "params": {"channels": ["ticker"], "market_ticker": tickers[0], "market_tickers": [tickers[1]]}}),
        11,
    );
    expect(
        &mut client,
        json!({"id": 7, "cmd": "update_subscription", "params": {"sids": [1, 2], "action": "add_markets", "market_tickers": [tickers[0]]}}),
        12,
    );
    expect(
        &mut client,
        json!({"id": 8, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"]}}),
        14,
    );
    expect(
        &mut client,
        json!({"id": 9, "cmd": "subscribe", "params": {"channels": ["orderbook_delta"], "market_tickers": &tickers[..4]}}),
        26,
    );
    // Unparseable text: error 1 without an id.
    client.send_raw("this is not json");
    let f = client.until(|f| f["type"] == "error" && f["msg"]["code"] == 1);
    assert_eq!(f["msg"]["msg"], spec_message(1));
    assert!(f.get("id").is_none());
    // None of these created a subscription.
    let id = client.command("list_subscriptions", None);
    let list = client.until(|f| f["id"] == id);
    assert_eq!(list["msg"], json!([]));
}

// Error 27: with a bucket of 2 commands refilled at 1 per second, the third of ten commands
// sent back to back is refused (unless seconds pass between them); every command is answered.
#[test]
fn command_rate_limit() {
    let sim = sim("[session]\ncommands_per_second = 1\ncommand_burst = 2\n");
    let mut client = sim.ws();
    let ids: Vec<u64> = (0..10)
        .map(|_| client.command("list_subscriptions", None))
        .collect();
    let mut limited = 0;
    for id in ids {
        let f = client.until(|f| f["id"] == id);
        if f["type"] == "error" {
            assert_eq!(f["msg"]["code"], 27);
            assert_eq!(f["msg"]["msg"], spec_message(27));
            limited += 1;
        } else {
            assert_eq!(f["type"], "ok");
        }
    }
    assert!(limited >= 1, "no error 27 in 10 commands");
}

// `trade` without a market filter is the firehose: trades of several markets arrive on one
// sid; `market_lifecycle_v2` is global.
#[test]
fn firehose() {
    let sim = sim("");
    let mut client = sim.ws();
    client.command("subscribe", Some(json!({"channels": ["trade"]})));
    let sid = client.until(|f| f["type"] == "subscribed")["msg"]["sid"]
        .as_u64()
        .unwrap();
    let mut markets = std::collections::BTreeSet::new();
    while markets.len() < 3 {
        let f = client.until(|f| f["type"] == "trade");
        assert_eq!(f["sid"], sid);
        let msg = &f["msg"];
        let yes = common::fixed(msg["yes_price_dollars"].as_str().unwrap(), 4);
        let no = common::fixed(msg["no_price_dollars"].as_str().unwrap(), 4);
        assert_eq!(yes + no, 10_000, "yes + no = 1: {f}");
        for key in [
            "trade_id",
            "count_fp",
            "taker_side",
            "taker_outcome_side",
            "taker_book_side",
            "ts",
            "ts_ms",
        ] {
            assert!(msg.get(key).is_some(), "trade without {key}: {f}");
        }
        markets.insert(msg["market_ticker"].as_str().unwrap().to_owned());
    }
    check_seq(&client.log);
}

// The server pings with payload "heartbeat" at the configured interval.
#[test]
fn heartbeat_ping() {
    let sim = sim("[server]\nheartbeat_secs = 0.2\n");
    let mut client = sim.ws();
    assert_eq!(client.wait_ping(), b"heartbeat");
}

// A client that never answers pings is closed after `missed_pongs_max` of them, with a close
// frame naming the reason. Raw socket: the handshake key and accept value are RFC 6455's
// example.
#[test]
fn missed_pongs_close() {
    let sim = sim("[server]\nheartbeat_secs = 0.1\nmissed_pongs_max = 2\n");
    let mut s = TcpStream::connect(&sim.listen).unwrap();
    s.set_read_timeout(Some(common::PATIENCE)).unwrap();
    s.write_all(
        b"GET /trade-api/ws/v2 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(
        text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{text}"
    );
    // Ping frames: opcode 0x9 (FIN set: 0x89), 9-byte payload "heartbeat".
    assert!(
        raw.windows(11).any(|w| w == b"\x89\x09heartbeat"),
        "no ping in {text}"
    );
    // Close frame: 0x88, then the status code and reason.
    let close = raw.iter().position(|b| *b == 0x88).expect("no close frame");
    assert!(String::from_utf8_lossy(&raw[close..]).contains("too many unanswered pings"));
}

// Non-upgrade requests to the WS path, wrong versions and unknown REST paths are refused
// with a clear status.
#[test]
fn bad_handshakes() {
    let sim = sim("");
    let (status, body) = sim.get("/trade-api/ws/v2");
    assert_eq!(status, 400, "{body}");
    let (status, body) = common::http(
        &sim.listen,
        "GET",
        "/trade-api/ws/v2",
        &[
            ("Upgrade", "websocket".into()),
            ("Connection", "Upgrade".into()),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==".into()),
            ("Sec-WebSocket-Version", "8".into()),
        ],
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Sec-WebSocket-Version"));
    let (status, _) = sim.get("/nowhere");
    assert_eq!(status, 404);
}
