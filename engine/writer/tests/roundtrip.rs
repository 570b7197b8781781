//! Every row type written by the writer reads back exactly; the role checks around it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity)]

mod common;

use common::*;
use kalshi_storage::MigrateOptions;
use kalshi_wire::record::{BookSide, Level, Side};
use kalshi_wire::{Ticker, TradeId};
use kalshi_writer::{
    ErrorKind, EventRow, MarketRow, Repair, Row, SequenceGapRow, Source, TickerRow, TradeRow,
    Writer,
};
use postgres::error::SqlState;
use prometheus::Registry;
use std::time::Duration;

fn trade(base: i64, i: i64, extreme: bool) -> TradeRow {
    TradeRow {
        exchange_ts: base + i,
        received_ts: if extreme { i64::MAX } else { base + i + 1 },
        gatherer_id: if extreme { i16::MIN } else { 2 },
        ticker: Ticker::new(&"KXMVECROSSCATEGORY-S20261A92736411A-0876414E15B"[..47]).unwrap(),
        trade_id: TradeId::new(&format!("7b1c6a2e-0000-4000-8000-{i:012}")).unwrap(),
        yes_price_e6: if extreme { 1 } else { 560_100 },
        no_price_e6: if extreme { 999_999 } else { 439_900 },
        count_e2: if extreme { i64::MAX } else { 1_234_567 },
        taker_side: if extreme { None } else { Some(Side::No) },
        taker_outcome_side: if extreme { None } else { Some(Side::Yes) },
        taker_book_side: if extreme { None } else { Some(BookSide::Ask) },
        is_block_trade: if extreme { None } else { Some(true) },
        source: if extreme { Source::Rest } else { Source::Ws },
        sid: if extreme { None } else { Some(9) },
        seq: if extreme { None } else { Some(i64::MAX - 1) },
    }
}

// Checks that every row type the writer knows reads back exactly, as written by a writer that
// logs in as `gatherer`: fixed-point extremes, NULLs, µs timestamps, empty and 100-level arrays,
// jsonb with non-ASCII text, text arrays; and that markets/events are upserted newest-wins
// (an older update arriving later changes nothing). Ground truth is the rows themselves,
// compared column by column with what SELECT returns.
#[test]
fn every_table_round_trips_exactly() {
    let pg = cluster(&MigrateOptions::gatherer());
    let mut admin = client(&pg);
    admin.batch_execute("ALTER ROLE gatherer LOGIN").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = pg.conn_string("kalshi", "gatherer");
    let (writer, producers) =
        Writer::start(config(&url, "g1", dir.path()), &Registry::new()).unwrap();
    let p = &producers[0];
    let base = base_ts();

    let trades = [trade(base, 1, false), trade(base, 2, true)];
    let deltas = [delta(base, 0), {
        let mut d = delta(base, 1);
        d.price_e6 = i64::MIN;
        d.delta_e2 = -1;
        d.occurrence = i32::MAX;
        d
    }];
    let ticker_full = TickerRow {
        exchange_ts: base,
        received_ts: base + 1,
        gatherer_id: 3,
        ticker: Ticker::new("T-1").unwrap(),
        price_e6: Some(1),
        yes_bid_e6: Some(2),
        yes_ask_e6: Some(3),
        yes_bid_size_e2: Some(4),
        yes_ask_size_e2: Some(5),
        last_trade_size_e2: Some(6),
        volume_e2: Some(7),
        open_interest_e2: Some(8),
        dollar_volume_e6: Some(9),
        dollar_open_interest_e6: Some(10),
        sid: Some(11),
        seq: Some(12),
        occurrence: 13,
    };
    let ticker_empty = TickerRow {
        price_e6: None,
        yes_bid_e6: None,
        yes_ask_e6: None,
        yes_bid_size_e2: None,
        yes_ask_size_e2: None,
        last_trade_size_e2: None,
        volume_e2: None,
        open_interest_e2: None,
        dollar_volume_e6: None,
        dollar_open_interest_e6: None,
        sid: None,
        seq: None,
        occurrence: 0,
        exchange_ts: base + 1,
        ..ticker_full
    };
    let mut snap = p.snapshot_row();
    snap.snapshot_ts = base;
    snap.received_ts = base + 5;
    snap.gatherer_id = 1;
    snap.ticker = Ticker::new("S-1").unwrap();
    snap.source = Some(Source::Rest);
    snap.yes = (0..100)
        .map(|i| Level {
            price_e6: 10_000 * i + 1,
            count_e2: 100 * i + 7,
        })
        .collect();
    snap.no = Vec::new();
    let snap_expect = (*snap).clone();
    let mut life = p.lifecycle_row();
    life.exchange_ts = base;
    life.received_ts = base + 2;
    life.gatherer_id = 1;
    life.ticker = Ticker::new("L-1").unwrap();
    life.event_type = "settled".into();
    life.mve = true;
    life.payload =
        r#"{"type":"market_lifecycle","title":"Größer als 5 € — ✓","n":1.50,"a":[1,null]}"#.into();
    life.seq = Some(4);
    let life_expect = (*life).clone();
    let market_new = MarketRow {
        ticker: "M-1".into(),
        event_ticker: "E-1".into(),
        series_ticker: Some("S".into()),
        status: "active".into(),
        title: Some("title".into()),
        open_ts: Some(base),
        price_ranges: Some(r#"[{"start":"0.00","end":"1.00","step":"0.01"}]"#.into()),
        updated_ts: base + 100,
        gatherer_id: 1,
        ..MarketRow::default()
    };
    let market_old = MarketRow {
        status: "initialized".into(),
        updated_ts: base + 50,
        ..market_new.clone()
    };
    let event = EventRow {
        event_ticker: "E-1".into(),
        mutually_exclusive: Some(false),
        strike_date: Some(base),
        updated_ts: base,
        gatherer_id: 1,
        ..EventRow::default()
    };
    let gap = SequenceGapRow {
        detected_ts: base,
        gatherer_id: 1,
        channel: "orderbook_delta".into(),
        sid: Some(3),
        expected_seq: Some(10),
        received_seq: Some(12),
        tickers: vec!["A".into(), "B-ü".into()],
        repair: Repair::GetSnapshot,
        repaired_ts: None,
        backfilled_trades: Some(0),
        note: None,
    };

    let rows: Vec<Row> = vec![
        Row::Trade(trades[0]),
        Row::Trade(trades[1]),
        Row::Delta(deltas[0]),
        Row::Delta(deltas[1]),
        Row::Ticker(ticker_full),
        Row::Ticker(ticker_empty),
        Row::Snapshot(snap),
        Row::Lifecycle(life),
        Row::Market(Box::new(market_new.clone())),
        Row::Market(Box::new(market_old)),
        Row::Event(Box::new(event.clone())),
        Row::SequenceGap(Box::new(gap.clone())),
    ];
    for row in rows {
        p.push_wait(row, Duration::from_secs(10)).unwrap();
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_committed, 12, "{report:?}");
    assert_eq!(report.pending_batches, 0);

    let mut c = admin;
    let got: Vec<TradeRow> = c
        .query("SELECT * FROM trades ORDER BY exchange_ts", &[])
        .unwrap()
        .iter()
        .map(|r| TradeRow {
            exchange_ts: r.get("exchange_ts"),
            received_ts: r.get("received_ts"),
            gatherer_id: r.get("gatherer_id"),
            ticker: Ticker::new(r.get("ticker")).unwrap(),
            trade_id: TradeId::new(r.get("trade_id")).unwrap(),
            yes_price_e6: r.get("yes_price_e6"),
            no_price_e6: r.get("no_price_e6"),
            count_e2: r.get("count_e2"),
            taker_side: side(r.get("taker_side")),
            taker_outcome_side: side(r.get("taker_outcome_side")),
            taker_book_side: r.get::<_, Option<&str>>("taker_book_side").map(|s| {
                if s == "bid" {
                    BookSide::Bid
                } else {
                    BookSide::Ask
                }
            }),
            is_block_trade: r.get("is_block_trade"),
            source: if r.get::<_, &str>("source") == "ws" {
                Source::Ws
            } else {
                Source::Rest
            },
            sid: r.get("sid"),
            seq: r.get("seq"),
        })
        .collect();
    assert_eq!(got, trades);
    // The view presents exact dollars: 0.560100.
    let dollars: String = c
        .query_one(
            "SELECT yes_price::text FROM trades_v WHERE trade_id = $1",
            &[&trades[0].trade_id.as_str()],
        )
        .unwrap()
        .get(0);
    assert_eq!(dollars, "0.560100");

    let got: Vec<(i64, i64, i16, String, String, i64, i64, i64, i64, i32)> = c
        .query("SELECT * FROM orderbook_deltas ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
                r.get(8),
                r.get(9),
            )
        })
        .collect();
    let want: Vec<_> = deltas
        .iter()
        .map(|d| {
            (
                d.exchange_ts,
                d.received_ts,
                d.gatherer_id,
                d.ticker.as_str().to_owned(),
                d.side.as_str().to_owned(),
                d.price_e6,
                d.delta_e2,
                d.sid,
                d.seq,
                d.occurrence,
            )
        })
        .collect();
    assert_eq!(got, want);

    let tickers: Vec<TickerRow> = c
        .query("SELECT * FROM tickers ORDER BY exchange_ts", &[])
        .unwrap()
        .iter()
        .map(|r| TickerRow {
            exchange_ts: r.get("exchange_ts"),
            received_ts: r.get("received_ts"),
            gatherer_id: r.get("gatherer_id"),
            ticker: Ticker::new(r.get("ticker")).unwrap(),
            price_e6: r.get("price_e6"),
            yes_bid_e6: r.get("yes_bid_e6"),
            yes_ask_e6: r.get("yes_ask_e6"),
            yes_bid_size_e2: r.get("yes_bid_size_e2"),
            yes_ask_size_e2: r.get("yes_ask_size_e2"),
            last_trade_size_e2: r.get("last_trade_size_e2"),
            volume_e2: r.get("volume_e2"),
            open_interest_e2: r.get("open_interest_e2"),
            dollar_volume_e6: r.get("dollar_volume_e6"),
            dollar_open_interest_e6: r.get("dollar_open_interest_e6"),
            sid: r.get("sid"),
            seq: r.get("seq"),
            occurrence: r.get("occurrence"),
        })
        .collect();
    assert_eq!(tickers, [ticker_full, ticker_empty]);

    let r = c
        .query_one("SELECT * FROM orderbook_snapshots", &[])
        .unwrap();
    assert_eq!(r.get::<_, i64>("snapshot_ts"), snap_expect.snapshot_ts);
    assert_eq!(r.get::<_, i64>("received_ts"), snap_expect.received_ts);
    assert_eq!(r.get::<_, &str>("ticker"), "S-1");
    assert_eq!(r.get::<_, &str>("source"), "rest");
    assert_eq!(r.get::<_, Option<i64>>("sid"), None);
    let yes_p: Vec<i64> = r.get("yes_price_e6");
    let yes_c: Vec<i64> = r.get("yes_count_e2");
    let no_p: Vec<i64> = r.get("no_price_e6");
    let no_c: Vec<i64> = r.get("no_count_e2");
    assert_eq!(
        yes_p,
        snap_expect
            .yes
            .iter()
            .map(|l| l.price_e6)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        yes_c,
        snap_expect
            .yes
            .iter()
            .map(|l| l.count_e2)
            .collect::<Vec<_>>()
    );
    assert!(no_p.is_empty() && no_c.is_empty());

    let r = c
        .query_one(
            "SELECT exchange_ts, received_ts, ticker, event_type, mve, payload::text, sid, seq, occurrence,
                    payload_md5 IS NOT NULL FROM market_lifecycle",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), life_expect.exchange_ts);
    assert_eq!(r.get::<_, i64>(1), life_expect.received_ts);
    assert_eq!(r.get::<_, &str>(2), "L-1");
    assert_eq!(r.get::<_, &str>(3), "settled");
    assert!(r.get::<_, bool>(4));
    let stored: serde_json::Value = serde_json::from_str(r.get::<_, &str>(5)).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&life_expect.payload).unwrap();
    assert_eq!(stored, sent);
    assert_eq!(r.get::<_, Option<i64>>(6), None);
    assert_eq!(r.get::<_, Option<i64>>(7), Some(4));
    assert!(r.get::<_, bool>(9));

    // The newer market state wins even though the older one was written after it.
    let r = c
        .query_one(
            "SELECT status, updated_ts, open_ts, price_ranges::text, title FROM markets WHERE ticker = 'M-1'",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, &str>(0), "active");
    assert_eq!(r.get::<_, i64>(1), market_new.updated_ts);
    assert_eq!(r.get::<_, Option<i64>>(2), Some(base));
    let pr: serde_json::Value = serde_json::from_str(r.get::<_, &str>(3)).unwrap();
    assert_eq!(pr[0]["step"], "0.01");
    let r = c
        .query_one(
            "SELECT mutually_exclusive, strike_date, title FROM events WHERE event_ticker = 'E-1'",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, Option<bool>>(0), Some(false));
    assert_eq!(r.get::<_, Option<i64>>(1), Some(base));
    assert_eq!(r.get::<_, Option<&str>>(2), None);
    let r = c
        .query_one(
            "SELECT detected_ts, channel, sid, expected_seq, received_seq, tickers, repair, repaired_ts, backfilled_trades, note FROM sequence_gaps",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), base);
    assert_eq!(r.get::<_, &str>(1), "orderbook_delta");
    assert_eq!(r.get::<_, Option<i64>>(3), Some(10));
    assert_eq!(r.get::<_, Vec<String>>(5), gap.tickers);
    assert_eq!(r.get::<_, &str>(6), "get_snapshot");
    assert_eq!(r.get::<_, Option<i64>>(7), None);
    assert_eq!(r.get::<_, Option<i32>>(8), Some(0));

    // Markers: one per committed batch, row counts adding up.
    let rows: i64 = c
        .query_one(
            "SELECT coalesce(sum(row_count), 0)::bigint FROM writer_batches WHERE writer_id = 'g1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 12);
}

fn side(s: Option<&str>) -> Option<Side> {
    s.map(|s| if s == "yes" { Side::Yes } else { Side::No })
}

fn assert_denied<T: std::fmt::Debug>(result: Result<T, postgres::Error>, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected SQLSTATE 42501, got Ok({v:?})"),
        Err(e) => assert_eq!(
            e.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{what}: {e}"
        ),
    }
}

// Checks least privilege around the writer: on its own database `gatherer` can write rows and
// markers through the writer, but cannot update, truncate, alter or drop `writer_batches` or the
// data tables, or read a partition directly (SQLSTATE 42501 each). In production it cannot read
// or write anything; a writer running there as `gatherer` gets 42501 on its marker insert, which
// is classified as `constraint`, and keeps the batch in its spool rather than dropping it.
#[test]
fn gatherer_role_is_confined() {
    let pg = cluster(&MigrateOptions::gatherer());
    let mut admin = client(&pg);
    kalshi_storage::ensure_database(&mut admin, "kalshi_prod").unwrap();
    kalshi_storage::migrate(
        &mut kalshi_storage::connect(&pg.url("kalshi_prod")).unwrap(),
        &MigrateOptions::production(),
    )
    .unwrap();
    admin.batch_execute("ALTER ROLE gatherer LOGIN").unwrap();

    let mut g = kalshi_storage::connect(&pg.conn_string("kalshi", "gatherer")).unwrap();
    g.execute(
        "INSERT INTO writer_batches (writer_id, batch_id, row_count) VALUES ('x', 1, 0)",
        &[],
    )
    .unwrap();
    for q in [
        "UPDATE writer_batches SET row_count = 5",
        "TRUNCATE writer_batches",
        "ALTER TABLE writer_batches ADD COLUMN x int",
        "DROP TABLE writer_batches",
        "DELETE FROM orderbook_deltas",
        "UPDATE orderbook_deltas SET delta_e2 = 0",
        "TRUNCATE trades",
        "ALTER TABLE orderbook_deltas DROP COLUMN occurrence",
        "SELECT * FROM orderbook_deltas_default",
        "INSERT INTO orderbook_deltas_default (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, delta_e2, sid, seq) VALUES (1,1,1,'T','yes',1,1,1,1)",
        "DELETE FROM markets",
        "CREATE TABLE mine (x int)",
    ] {
        assert_denied(g.execute(q, &[]), q);
    }

    let mut gp = kalshi_storage::connect(&pg.conn_string("kalshi_prod", "gatherer")).unwrap();
    for q in [
        "SELECT * FROM writer_batches",
        "SELECT * FROM trades",
        "SELECT * FROM dedup_watermarks",
        "INSERT INTO writer_batches (writer_id, batch_id, row_count) VALUES ('x', 1, 0)",
    ] {
        assert_denied(gp.execute(q, &[]), q);
    }

    // A writer misconfigured to write production as gatherer: denied, classified, kept.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(
        &pg.conn_string("kalshi_prod", "gatherer"),
        "wrong-db",
        dir.path(),
    );
    cfg.shutdown_timeout = Duration::from_millis(300);
    let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
    let base = base_ts();
    for seq in 0..10 {
        producers[0]
            .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(10))
            .unwrap();
    }
    wait_until("a constraint error", Duration::from_secs(60), || {
        writer.metrics().errors_of(ErrorKind::Constraint) > 0
    });
    let report = writer.shutdown().unwrap();
    assert_eq!(report.rows_committed, 0);
    assert_eq!(report.pending_rows, 10, "{report:?}");
    let failure = report.last_failure.unwrap();
    assert!(
        failure.contains("42501") && failure.contains("writer_batches"),
        "{failure}"
    );
    assert!(
        kalshi_writer::read_dead_letters(dir.path())
            .unwrap()
            .is_empty()
    );
}

/// A writer with nothing to write still commits an empty batch (its marker) every
/// `idle_commit`, so its durable watermark (the newest `writer_batches` id) keeps moving.
#[test]
fn idle_writer_advances_its_watermark() {
    let pg = cluster(&MigrateOptions::gatherer());
    let mut admin = client(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&pg.url("kalshi"), "idle", dir.path());
    cfg.idle_commit = Some(Duration::from_millis(50));
    let (writer, _producers) = Writer::start(cfg, &Registry::new()).unwrap();
    let newest = |admin: &mut postgres::Client| -> (i64, Option<i64>) {
        let row = admin
            .query_one(
                "SELECT count(*), max(batch_id)::bigint FROM writer_batches WHERE writer_id = 'idle'",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut first = None;
    loop {
        let (count, max) = newest(&mut admin);
        if let Some(max) = max {
            match first {
                None => first = Some(max),
                Some(f) if max > f => break,
                Some(_) => {}
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "watermark stuck: {count} markers"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = writer.shutdown().unwrap();
    assert_eq!(report.pending_batches, 0);
    // Empty batches wrote no data rows.
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM orderbook_deltas", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
}

/// Group commit: with `batch_age_max` far away (10 minutes) and `batch_rows_max` far above the
/// rows pushed, rows still reach the database while the writer runs, because an idle database
/// and drained rings seal the open batch after `batch_linger`. The same rows with the linger
/// switched off stay in the open batch until shutdown.
#[test]
fn group_commit_seals_without_waiting_for_the_age_limit() {
    let pg = cluster(&MigrateOptions::gatherer());
    let mut admin = client(&pg);
    let base = base_ts();
    let count = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one("SELECT count(*) FROM orderbook_deltas", &[])
            .unwrap()
            .get(0)
    };
    for linger in [Some(Duration::from_millis(5)), None] {
        admin.batch_execute("TRUNCATE orderbook_deltas").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&pg.url("kalshi"), "linger", dir.path());
        cfg.batch_rows_max = 100_000;
        cfg.batch_age_max = Duration::from_secs(600);
        cfg.idle_commit = None;
        cfg.batch_linger = linger;
        let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
        for seq in 0..10 {
            producers[0]
                .push_wait(Row::Delta(delta(base, seq)), Duration::from_secs(10))
                .unwrap();
        }
        if linger.is_some() {
            wait_until("group commit", Duration::from_secs(60), || {
                count(&mut admin) == 10
            });
        } else {
            // Give a linger every chance to act, then check that nothing was committed.
            std::thread::sleep(Duration::from_millis(500));
            assert_eq!(count(&mut admin), 0, "a batch sealed without a linger");
        }
        let report = writer.shutdown().unwrap();
        assert_eq!(report.rows_committed, 10, "{report:?}");
        assert_eq!(count(&mut admin), 10);
    }
}
