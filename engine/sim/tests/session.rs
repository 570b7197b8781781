#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Session protocol behaviour, checked by decoding every emitted frame with kalshi-wire.

use kalshi_sim_core::{Exchange, ExchangeConfig, FrameKind, Outbound, Session, SessionConfig};
use kalshi_wire::{ControlKind, Decoder, Record};

const START_US: i64 = 1_796_000_000_000_000;

fn exchange() -> Exchange {
    let mut exchange = Exchange::new(
        ExchangeConfig {
            delayed_open_per_mille: 0,
            ..ExchangeConfig::default()
        },
        42,
    );
    exchange.step(START_US);
    exchange
}

/// A decoded frame's essentials.
#[derive(Debug)]
struct Frame {
    kind: &'static str,
    control: Option<ControlKind>,
    id: Option<u64>,
    sid: Option<u64>,
    seq: Option<u64>,
    code: Option<i64>,
    message: Option<String>,
    tickers: Vec<String>,
    text: String,
}

fn decode(out: &[Outbound]) -> Vec<Frame> {
    let mut decoder = Decoder::default();
    out.iter()
        .map(|o| {
            let mut bytes = o.text.clone();
            let decoded = decoder.decode(&mut bytes).unwrap();
            let h = *decoded.record.header();
            let (control, code, message, tickers) = match &decoded.record {
                Record::Control(c) => (
                    Some(c.kind),
                    c.code,
                    decoded.aux.opt_text(c.message).map(str::to_owned),
                    decoded
                        .aux
                        .list(c.market_tickers)
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => (None, None, None, Vec::new()),
            };
            assert_eq!(o.seq, h.seq.map(|s| s.get()));
            Frame {
                kind: decoded.record.kind(),
                control,
                id: h.id.map(|v| v.get()),
                sid: h.sid.map(|v| v.get()),
                seq: h.seq.map(|v| v.get()),
                code,
                message,
                tickers,
                text: String::from_utf8(o.text.clone()).unwrap(),
            }
        })
        .collect()
}

fn command(session: &mut Session, exchange: &Exchange, text: &str) -> Vec<Frame> {
    decode(&session.handle_command(START_US, text.as_bytes(), exchange))
}

fn tickers(exchange: &Exchange, n: usize) -> Vec<String> {
    exchange
        .markets()
        .iter()
        .take(n)
        .map(|m| m.ticker.clone())
        .collect()
}

// Subscribe: one `subscribed` per channel with the command id and new sids from 1; snapshots
// seq 1..N per market; then deltas continue the sid's seq; trade/ticker firehose; ticker
// frames carry no seq; the lifecycle channel is global and sequenced.
#[test]
fn subscribe_snapshots_then_deltas() {
    let mut exchange = exchange();
    let mut session = Session::new(SessionConfig::default());
    let t = tickers(&exchange, 3);
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta","trade","ticker","market_lifecycle_v2"],"market_tickers":["{}","{}","{}"],"use_yes_price":false}}}}"#,
            t[0], t[1], t[2]
        ),
    );
    let subscribed: Vec<_> = frames
        .iter()
        .filter(|f| f.control == Some(ControlKind::Subscribed))
        .collect();
    assert_eq!(subscribed.len(), 4);
    assert!(
        subscribed
            .iter()
            .all(|f| f.id == Some(1) && f.seq.is_none())
    );
    assert_eq!(
        subscribed
            .iter()
            .map(|f| f.sid.unwrap())
            .collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let snaps: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == "orderbook_snapshot")
        .collect();
    assert_eq!(snaps.len(), 3);
    assert_eq!(
        snaps.iter().map(|f| f.seq.unwrap()).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(
        snaps
            .iter()
            .all(|f| f.sid == Some(1) && f.id.is_none() && !f.text.contains("\"ts\""))
    );

    let mut out = Vec::new();
    for step in 1..=50 {
        let events = exchange.step(START_US + step * 200_000);
        session.deliver(&exchange, &events, &mut out);
    }
    let frames = decode(&out);
    let mut expected = [0_u64, 3, 0, 0, 0];
    let mut kinds = std::collections::BTreeSet::new();
    for f in &frames {
        kinds.insert(f.kind);
        let sid = f.sid.unwrap();
        if f.kind == "ticker" {
            assert_eq!(sid, 3);
            assert!(f.seq.is_none());
            continue;
        }
        expected[sid as usize] += 1;
        assert_eq!(f.seq, Some(expected[sid as usize]), "{}", f.text);
        match f.kind {
            "orderbook_delta" => {
                assert_eq!(sid, 1);
                assert!(t.iter().any(|x| f.text.contains(x.as_str())));
                assert!(f.text.contains("\"ts\":\"") && f.text.contains("\"ts_ms\":"));
            }
            "trade" => assert_eq!(sid, 2),
            "market_lifecycle" | "event_lifecycle" => assert_eq!(sid, 4),
            other => panic!("unexpected {other}"),
        }
    }
    assert!(
        kinds.contains("orderbook_delta") && kinds.contains("trade") && kinds.contains("ticker")
    );
    // The market filter applies to trade and ticker too.
    assert!(
        frames
            .iter()
            .filter(|f| f.kind == "trade" || f.kind == "ticker")
            .all(|f| t.iter().any(|x| f.text.contains(x.as_str())))
    );
}

// Repeat subscribe: `ok` on the existing sid consuming a seq, with the merged full list, and
// snapshots only for newly added markets; a pure repeat adds nothing but the ok.
#[test]
fn repeat_subscribe_and_update_subscription() {
    let exchange = exchange();
    let mut session = Session::new(SessionConfig::default());
    let t = tickers(&exchange, 4);
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}","{}"]}}}}"#,
            t[0], t[1]
        ),
    );
    assert_eq!(frames.len(), 3);
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":2,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}","{}"]}}}}"#,
            t[1], t[2]
        ),
    );
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].control, Some(ControlKind::Ok));
    assert_eq!(
        (frames[0].id, frames[0].sid, frames[0].seq),
        (Some(2), Some(1), Some(3))
    );
    assert_eq!(
        frames[0].tickers,
        vec![t[0].clone(), t[1].clone(), t[2].clone()]
    );
    assert_eq!(frames[1].kind, "orderbook_snapshot");
    assert_eq!(frames[1].seq, Some(4));
    assert!(frames[1].text.contains(t[2].as_str()));
    // Pure repeat: just the ok.
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":3,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}"]}}}}"#,
            t[0]
        ),
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].seq, Some(5));
    // add_markets with the singular `sid`: ok then a snapshot, seq continuing.
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":4,"cmd":"update_subscription","params":{{"sid":1,"market_tickers":["{}"],"action":"add_markets"}}}}"#,
            t[3]
        ),
    );
    assert_eq!(frames.len(), 2);
    assert_eq!(
        (frames[0].control, frames[0].seq),
        (Some(ControlKind::Ok), Some(6))
    );
    assert_eq!(frames[0].tickers.len(), 4);
    assert_eq!(
        (frames[1].kind, frames[1].seq),
        ("orderbook_snapshot", Some(7))
    );
    // delete_markets with `sids:[1]`.
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":5,"cmd":"update_subscription","params":{{"sids":[1],"market_tickers":["{}"],"action":"delete_markets"}}}}"#,
            t[0]
        ),
    );
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0].seq, Some(8));
    assert_eq!(
        frames[0].tickers,
        vec![t[1].clone(), t[2].clone(), t[3].clone()]
    );
    // get_snapshot: snapshots carrying the command id, consuming seq, no ok.
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":6,"cmd":"update_subscription","params":{{"sids":[1],"market_tickers":["{}","{}"],"action":"get_snapshot"}}}}"#,
            t[1], t[2]
        ),
    );
    assert_eq!(frames.len(), 2);
    assert!(
        frames
            .iter()
            .all(|f| f.kind == "orderbook_snapshot" && f.id == Some(6))
    );
    assert_eq!((frames[0].seq, frames[1].seq), (Some(9), Some(10)));
    // list_subscriptions, then unsubscribe consuming a seq.
    let frames = command(
        &mut session,
        &exchange,
        r#"{"id":7,"cmd":"list_subscriptions"}"#,
    );
    assert_eq!(frames[0].control, Some(ControlKind::SubscriptionList));
    assert_eq!(
        frames[0].text,
        r#"{"type":"ok","id":7,"msg":[{"channel":"orderbook_delta","sid":1}]}"#
    );
    let frames = command(
        &mut session,
        &exchange,
        r#"{"id":8,"cmd":"unsubscribe","params":{"sids":[1]}}"#,
    );
    assert_eq!(frames[0].control, Some(ControlKind::Unsubscribed));
    assert_eq!(
        (frames[0].id, frames[0].sid, frames[0].seq),
        (Some(8), Some(1), Some(11))
    );
    // A new subscription gets a new sid with seq from 1.
    let frames = command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":9,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}"]}}}}"#,
            t[0]
        ),
    );
    assert_eq!((frames[0].sid, frames[1].seq), (Some(2), Some(1)));
}

// Every error code with its documented message, echoing the command id.
#[test]
fn error_codes() {
    let exchange = exchange();
    let mut session = Session::new(SessionConfig {
        market_limit: 2,
        ..SessionConfig::default()
    });
    let t = tickers(&exchange, 3);
    command(
        &mut session,
        &exchange,
        &format!(
            r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}"]}}}}"#,
            t[0]
        ),
    );
    let cases: Vec<(String, i64, &str)> = vec![
        ("{not json".into(), 1, "Unable to process message"),
        (r#"{"id":2,"cmd":"subscribe"}"#.into(), 2, "Params required"),
        (r#"{"id":3,"cmd":"subscribe","params":{"channels":[]}}"#.into(), 3, "Channels required"),
        (r#"{"id":4,"cmd":"bogus","params":{}}"#.into(), 5, "Unknown command"),
        (r#"{"id":5,"cmd":"unsubscribe","params":{"sids":[99]}}"#.into(), 7, "Unknown subscription ID"),
        (r#"{"id":6,"cmd":"subscribe","params":{"channels":["ticker_v2"]}}"#.into(), 8, "Unknown channel name"),
        (r#"{"id":7,"cmd":"subscribe","params":{"channels":["trade"],"market_tickers":"X"}}"#.into(), 11, "Invalid parameter"),
        (r#"{"id":8,"cmd":"update_subscription","params":{"sids":[1,2],"action":"add_markets","market_tickers":["X"]}}"#.into(), 12, "Exactly one subscription ID is required"),
        (r#"{"id":9,"cmd":"update_subscription","params":{"action":"add_markets","market_tickers":["X"]}}"#.into(), 12, "Exactly one subscription ID is required"),
        (r#"{"id":10,"cmd":"update_subscription","params":{"sid":1,"action":"explode","market_tickers":["X"]}}"#.into(), 13, "Unsupported action"),
        (r#"{"id":11,"cmd":"subscribe","params":{"channels":["orderbook_delta"]}}"#.into(), 14, "Market Ticker required"),
        (r#"{"id":12,"cmd":"update_subscription","params":{"sid":1,"market_tickers":["X"]}}"#.into(), 15, "Action required"),
        (format!(r#"{{"id":13,"cmd":"update_subscription","params":{{"sid":1,"action":"add_markets","market_tickers":["{}","{}"]}}}}"#, t[1], t[2]), 26, "Subscription market limit exceeded"),
        (r#"{"id":14,"cmd":"update_subscription","params":{"sid":7,"action":"add_markets","market_tickers":["X"]}}"#.into(), 7, "Unknown subscription ID"),
    ];
    for (text, code, message) in cases {
        let frames = command(&mut session, &exchange, &text);
        assert_eq!(frames.len(), 1, "{text}");
        let f = &frames[0];
        assert_eq!(f.control, Some(ControlKind::Error), "{text}");
        assert_eq!(f.code, Some(code), "{text}");
        assert_eq!(f.message.as_deref(), Some(message), "{text}");
        let expected_id: Option<u64> = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["id"].as_u64());
        assert_eq!(f.id, expected_id, "{text}");
        assert!(f.sid.is_none() && f.seq.is_none());
    }
    // Error 27: the token bucket empties, then refills with time.
    let mut limited = Session::new(SessionConfig {
        commands_per_second: 1,
        command_burst: 2,
        ..SessionConfig::default()
    });
    let list = br#"{"id":20,"cmd":"list_subscriptions"}"#;
    assert_eq!(
        decode(&limited.handle_command(START_US, list, &exchange))[0].control,
        Some(ControlKind::SubscriptionList)
    );
    assert_eq!(
        decode(&limited.handle_command(START_US, list, &exchange))[0].control,
        Some(ControlKind::SubscriptionList)
    );
    let f = &decode(&limited.handle_command(START_US, list, &exchange))[0];
    assert_eq!(
        (f.code, f.id, f.message.as_deref()),
        (Some(27), Some(20), Some("Too many requests"))
    );
    let f = &decode(&limited.handle_command(START_US + 1_000_000, list, &exchange))[0];
    assert_eq!(f.control, Some(ControlKind::SubscriptionList));
}

// use_yes_price: NO levels and NO deltas in YES-leg price, still ascending; empty sides are
// omitted; an unknown ticker gets an empty snapshot with market_id "".
#[test]
fn use_yes_price_and_empty_snapshots() {
    let mut exchange = exchange();
    let t = tickers(&exchange, 1);
    let market = exchange.market(&t[0]).unwrap().clone();
    let mut plain = Session::new(SessionConfig::default());
    let mut yes = Session::new(SessionConfig::default());
    let sub = |flag: bool| {
        format!(
            r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta"],"market_tickers":["{}","KXNOPE-1"],"use_yes_price":{flag}}}}}"#,
            t[0]
        )
    };
    let a = plain.handle_command(START_US, sub(false).as_bytes(), &exchange);
    let b = yes.handle_command(START_US, sub(true).as_bytes(), &exchange);
    let mut decoder = Decoder::default();
    let mut bytes = a[1].text.clone();
    let d = decoder.decode(&mut bytes).unwrap();
    let no_plain: Vec<_> = d.no_levels().to_vec();
    assert_eq!(no_plain, market.book.levels(kalshi_wire::Side::No));
    let mut bytes = b[1].text.clone();
    let d = decoder.decode(&mut bytes).unwrap();
    let no_yes: Vec<_> = d.no_levels().to_vec();
    assert_eq!(no_yes.len(), no_plain.len());
    assert!(no_yes.windows(2).all(|w| w[0].price_e6 < w[1].price_e6));
    for level in &no_yes {
        assert!(
            no_plain
                .iter()
                .any(|p| p.price_e6 == 1_000_000 - level.price_e6 && p.count_e2 == level.count_e2)
        );
    }
    let empty = String::from_utf8(a[2].text.clone()).unwrap();
    assert_eq!(
        empty,
        r#"{"type":"orderbook_snapshot","sid":1,"seq":2,"msg":{"market_ticker":"KXNOPE-1","market_id":""}}"#
    );
    // Deltas: NO-side deltas differ by the leg convention, YES-side ones are identical.
    let (mut oa, mut ob) = (Vec::new(), Vec::new());
    for step in 1..=100 {
        let events = exchange.step(START_US + step * 200_000);
        plain.deliver(&exchange, &events, &mut oa);
        yes.deliver(&exchange, &events, &mut ob);
    }
    assert_eq!(oa.len(), ob.len());
    let mut saw_no = false;
    for (x, y) in oa.iter().zip(&ob) {
        let mut bx = x.text.clone();
        let rx = decoder.decode(&mut bx).unwrap().record;
        let mut by = y.text.clone();
        let ry = decoder.decode(&mut by).unwrap().record;
        let (Record::Delta(dx), Record::Delta(dy)) = (rx, ry) else {
            panic!()
        };
        assert_eq!(dx.header.seq, dy.header.seq);
        if dx.side == kalshi_wire::Side::No {
            saw_no = true;
            assert_eq!(dy.price_e6, 1_000_000 - dx.price_e6);
        } else {
            assert_eq!(dy.price_e6, dx.price_e6);
        }
    }
    assert!(saw_no);
}

// Faults: a skipped seq leaves a gap of one; error 25 carries the sid, is terminal and drops
// the subscription; a malformed frame fails to decode.
#[test]
fn faults() {
    let mut exchange = exchange();
    let mut session = Session::new(SessionConfig::default());
    command(
        &mut session,
        &exchange,
        r#"{"id":1,"cmd":"subscribe","params":{"channels":["trade"]}}"#,
    );
    assert!(session.fault_skip_seq(1));
    assert!(!session.fault_skip_seq(9));
    let mut out = Vec::new();
    for step in 1..=100 {
        let events = exchange.step(START_US + step * 200_000);
        session.deliver(&exchange, &events, &mut out);
    }
    let decoded = decode(&out);
    let markets: std::collections::BTreeSet<&str> = decoded
        .iter()
        .map(|f| {
            let start = f.text.find("\"market_ticker\":\"").unwrap() + 17;
            &f.text[start..start + f.text[start..].find('"').unwrap()]
        })
        .collect();
    assert!(markets.len() > 5, "firehose covers many markets");
    let seqs: Vec<u64> = decoded.iter().map(|f| f.seq.unwrap()).collect();
    assert!(seqs.len() > 3);
    assert_eq!(seqs[0], 2);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    let overflow = session.fault_buffer_overflow(1).unwrap();
    assert!(overflow.terminal);
    let f = &decode(std::slice::from_ref(&overflow))[0];
    assert_eq!((f.code, f.sid), (Some(25), Some(1)));
    assert_eq!(f.message.as_deref(), Some("Subscription buffer overflow"));
    assert_eq!(f.seq, Some(seqs.last().unwrap() + 1));
    assert!(session.subscriptions().is_empty());
    let frames = command(
        &mut session,
        &exchange,
        r#"{"id":2,"cmd":"unsubscribe","params":{"sids":[1]}}"#,
    );
    assert_eq!(frames[0].code, Some(7));
    let malformed = session.fault_malformed_frame();
    assert_eq!(malformed.kind, FrameKind::Malformed);
    let mut bytes = malformed.text.clone();
    assert!(Decoder::default().decode(&mut bytes).is_err());
}

// Error 4 (no sids), error 6 is retired (a repeat subscribe of every channel answers ok, never
// an error), error 10 and 25 faults are terminal and sid-scoped, and a duplicated frame repeats
// its seq exactly once.
#[test]
fn more_errors_and_faults() {
    let mut exchange = exchange();
    let mut session = Session::new(SessionConfig::default());
    for text in [
        r#"{"id":1,"cmd":"unsubscribe","params":{}}"#,
        r#"{"id":1,"cmd":"unsubscribe","params":{"sids":[]}}"#,
    ] {
        let f = &command(&mut session, &exchange, text)[0];
        assert_eq!(
            (f.code, f.message.as_deref(), f.id),
            (Some(4), Some("Subscription IDs required"), Some(1))
        );
    }
    let t = tickers(&exchange, 2);
    let subscribe = format!(
        r#"{{"id":2,"cmd":"subscribe","params":{{"channels":["orderbook_delta","trade","ticker","market_lifecycle_v2","multivariate_market_lifecycle"],"market_tickers":["{}","{}"]}}}}"#,
        t[0], t[1]
    );
    let first = command(&mut session, &exchange, &subscribe);
    assert_eq!(
        first
            .iter()
            .filter(|f| f.control == Some(ControlKind::Subscribed))
            .count(),
        5
    );
    let again = command(&mut session, &exchange, &subscribe);
    assert_eq!(again.len(), 5, "one ok per channel, no snapshots");
    assert!(
        again
            .iter()
            .all(|f| f.control == Some(ControlKind::Ok) && f.code.is_none())
    );
    // Every ok burns a seq on its sid (the simulator's rule; for the unsequenced ticker channel
    // this is not confirmed against Kalshi).
    assert!(again.iter().all(|f| f.seq.is_some()));

    // Duplicate the next delta on sid 1.
    assert!(session.fault_duplicate_next(1));
    assert!(!session.fault_duplicate_next(99));
    let mut out = Vec::new();
    for step in 1..=200 {
        let events = exchange.step(START_US + step * 100_000);
        session.deliver(&exchange, &events, &mut out);
    }
    let frames = decode(&out);
    let sid1: Vec<u64> = frames
        .iter()
        .filter(|f| f.sid == Some(1))
        .map(|f| f.seq.unwrap())
        .collect();
    assert!(sid1.len() > 3);
    let repeats = sid1.windows(2).filter(|w| w[0] == w[1]).count();
    assert_eq!(repeats, 1);
    assert!(sid1.windows(2).all(|w| w[1] == w[0] || w[1] == w[0] + 1));

    // Error 10 on sid 2 (trade): scoped, terminal, consumes a seq, drops the subscription.
    let last_trade_seq = frames
        .iter()
        .filter(|f| f.sid == Some(2))
        .filter_map(|f| f.seq)
        .max()
        .unwrap_or(2);
    let error = session.fault_channel_error(2).unwrap();
    assert!(error.terminal);
    let f = &decode(std::slice::from_ref(&error))[0];
    assert_eq!(
        (f.code, f.sid, f.seq, f.message.as_deref()),
        (
            Some(10),
            Some(2),
            Some(last_trade_seq + 1),
            Some("Channel error")
        )
    );
    assert!(session.fault_channel_error(2).is_none());
    assert!(!session.subscriptions().iter().any(|(sid, _)| *sid == 2));
}

// Untrusted input: mutated and random command texts never panic, and every reply decodes.
#[test]
fn garbage_commands_never_panic() {
    use rand::{Rng, SeedableRng};
    let exchange = exchange();
    let load = kalshi_sim_core::LoadGen::new(kalshi_sim_core::LoadConfig {
        markets: 5,
        ..kalshi_sim_core::LoadConfig::default()
    })
    .unwrap();
    let t = tickers(&exchange, 2);
    let seeds = [
        format!(
            r#"{{"id":1,"cmd":"subscribe","params":{{"channels":["orderbook_delta","ticker"],"market_tickers":["{}","{}"],"use_yes_price":true,"send_initial_snapshot":true}}}}"#,
            t[0], t[1]
        ),
        r#"{"id":2,"cmd":"update_subscription","params":{"sids":[1],"market_tickers":["A"],"action":"get_snapshot"}}"#.to_owned(),
        r#"{"id":3,"cmd":"unsubscribe","params":{"sids":[1,2,3]}}"#.to_owned(),
        r#"{"id":4,"cmd":"list_subscriptions"}"#.to_owned(),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(77);
    let alphabet = br#"{}[]":,0123456789-.eE truefalsnul\ abcdefghijklmnopqrstuvwxyz_"#;
    let mut session = Session::new(SessionConfig {
        commands_per_second: 0,
        ..SessionConfig::default()
    });
    for round in 0..20_000 {
        let mut text = seeds[round % seeds.len()].clone().into_bytes();
        for _ in 0..rng.random_range(0..4) {
            let at = rng.random_range(0..text.len());
            match rng.random_range(0..3) {
                0 => text[at] = alphabet[rng.random_range(0..alphabet.len())],
                1 => {
                    text.remove(at);
                }
                _ => text.insert(at, alphabet[rng.random_range(0..alphabet.len())]),
            }
        }
        let replies = if round % 2 == 0 {
            session.handle_command(START_US, &text, &exchange)
        } else {
            session.handle_command_on(START_US, &text, &load)
        };
        decode(&replies);
    }
    for target in [
        "",
        "/",
        "?",
        "/markets?limit=-5&cursor=%zz",
        "/markets/%/orderbook?depth=-1",
        "/markets/trades?min_ts=99999999999999999999",
    ] {
        let _ = kalshi_sim_core::route(&exchange, "GET", target);
        let _ = kalshi_sim_core::route_load(&load, "GET", target);
    }
}
