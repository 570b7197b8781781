#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Schema tests against real PostgreSQL clusters: the runbook's SQL, exact round trips of every
//! table, partitioning and retention, and the roles' rights.

mod common;

use common::{DAY_US, assert_sqlstate, client, cluster, migrated, now_us};
use kalshi_storage::{MigrateOptions, connect};
use postgres::Client;
use postgres::error::SqlState;

/// The runbook's plain SQL, verbatim (placeholders `<start>` / `<end>` replaced by integers).
const RUNBOOK_QUERIES: &[&str] = &[
    "SELECT
       date_trunc('minute', to_timestamp(exchange_ts/1000000)) as minute,
       COUNT(*) as trades
   FROM trades
   WHERE ticker = 'EXAMPLE-TICKER'
   GROUP BY 1
   ORDER BY 1;",
    "SELECT snapshot_ts, source
   FROM orderbook_snapshots
   WHERE ticker = 'EXAMPLE-TICKER'
     AND snapshot_ts BETWEEN 1705312800000000 AND 1705314600000000
   ORDER BY snapshot_ts;",
    "SELECT COUNT(*) FROM trades WHERE exchange_ts > extract(epoch from now() - interval '1 minute') * 1000000",
    "SELECT * FROM pg_stat_activity WHERE state != 'idle'",
    "SELECT * FROM pg_stat_activity WHERE state != 'idle' ORDER BY query_start;",
    "SELECT * FROM pg_locks WHERE NOT granted;",
    "SELECT 1",
];

/// Insert one trade of ticker EXAMPLE-TICKER at `ts`.
fn insert_trade(c: &mut Client, ts: i64, trade_id: &str) {
    c.execute(
        "INSERT INTO trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id,
                             yes_price_e6, no_price_e6, count_e2, source)
         VALUES ($1, $1, 1, 'EXAMPLE-TICKER', $2, 550000, 450000, 100, 'ws')",
        &[&ts, &trade_id],
    )
    .unwrap();
}

// Checks that every plain SQL query of the runbook runs verbatim, on a gatherer and on a
// production database, with data in place so the gap finder and the last-minute count return
// the expected numbers.
#[test]
fn runbook_queries_run_verbatim() {
    let pg = cluster();
    let mut admin = client(&pg, "postgres");
    kalshi_storage::ensure_database(&mut admin, "kalshi_prod").unwrap();
    migrated(&pg, "kalshi", &MigrateOptions::gatherer());
    migrated(&pg, "kalshi_prod", &MigrateOptions::production());
    for db in ["kalshi", "kalshi_prod"] {
        let mut c = client(&pg, db);
        let now = now_us(&mut c);
        insert_trade(&mut c, now, "a");
        insert_trade(&mut c, now - 1, "b");
        insert_trade(&mut c, now - 3_600_000_000, "c");
        c.execute(
            "INSERT INTO orderbook_snapshots (snapshot_ts, received_ts, gatherer_id, ticker, source,
                 yes_price_e6, yes_count_e2, no_price_e6, no_count_e2)
             VALUES (1705312800000001, 1705312800000001, 1, 'EXAMPLE-TICKER', 'rest', '{}', '{}', '{}', '{}')",
            &[],
        )
        .unwrap();
        for q in RUNBOOK_QUERIES {
            c.query(*q, &[])
                .unwrap_or_else(|e| panic!("{db}: {q}: {e}"));
        }
        let minutes = c.query(RUNBOOK_QUERIES[0], &[]).unwrap();
        let total: i64 = minutes.iter().map(|r| r.get::<_, i64>(1)).sum();
        assert_eq!(total, 3);
        let recent: i64 = c.query_one(RUNBOOK_QUERIES[2], &[]).unwrap().get(0);
        assert_eq!(recent, 2);
        let snaps = c.query(RUNBOOK_QUERIES[1], &[]).unwrap();
        assert_eq!(snaps.len(), 1);
        assert_eq!(snaps[0].get::<_, String>(1), "rest");
    }
}

// Checks exact round trips: one row into every table, with i64::MIN / i64::MAX in the *_e6 and
// *_e2 columns and microsecond timestamps, read back unchanged; plus the views' exact NUMERIC and
// timestamptz conversions of a realistic row.
#[test]
fn every_table_round_trips_exactly() {
    let pg = cluster();
    migrated(&pg, "kalshi", &MigrateOptions::production());
    let mut c = client(&pg, "kalshi");
    let (lo, hi) = (i64::MIN, i64::MAX);
    let ts: i64 = 1_705_312_800_123_457; // 2024-01-15T10:00:00.123457Z
    let rx: i64 = ts + 1_999;

    c.execute(
        "INSERT INTO trades VALUES ($1, $2, 3, 'KX-A', 't-1', $3, $4, $3, 'yes', 'no', 'bid', true, 'rest', $4, $3)",
        &[&ts, &rx, &hi, &lo],
    )
    .unwrap();
    let r = c.query_one("SELECT * FROM trades", &[]).unwrap();
    assert_eq!(r.get::<_, i64>("exchange_ts"), ts);
    assert_eq!(r.get::<_, i64>("received_ts"), rx);
    assert_eq!(r.get::<_, i16>("gatherer_id"), 3);
    assert_eq!(r.get::<_, i64>("yes_price_e6"), hi);
    assert_eq!(r.get::<_, i64>("no_price_e6"), lo);
    assert_eq!(r.get::<_, i64>("count_e2"), hi);
    assert_eq!(
        r.get::<_, Option<String>>("taker_side").as_deref(),
        Some("yes")
    );
    assert_eq!(
        r.get::<_, Option<String>>("taker_outcome_side").as_deref(),
        Some("no")
    );
    assert_eq!(
        r.get::<_, Option<String>>("taker_book_side").as_deref(),
        Some("bid")
    );
    assert_eq!(r.get::<_, Option<bool>>("is_block_trade"), Some(true));
    assert_eq!(r.get::<_, String>("source"), "rest");
    assert_eq!(r.get::<_, Option<i64>>("sid"), Some(lo));
    assert_eq!(r.get::<_, Option<i64>>("seq"), Some(hi));

    c.execute(
        "INSERT INTO orderbook_deltas (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, delta_e2, sid, seq)
         VALUES ($1, $2, -32768, 'KX-A', 'no', $3, $4, $3, $4)",
        &[&ts, &rx, &hi, &lo],
    )
    .unwrap();
    let r = c.query_one("SELECT * FROM orderbook_deltas", &[]).unwrap();
    assert_eq!(r.get::<_, i64>("exchange_ts"), ts);
    assert_eq!(r.get::<_, i16>("gatherer_id"), i16::MIN);
    assert_eq!(r.get::<_, String>("side"), "no");
    assert_eq!(r.get::<_, i64>("price_e6"), hi);
    assert_eq!(r.get::<_, i64>("delta_e2"), lo);
    assert_eq!(r.get::<_, i64>("sid"), hi);
    assert_eq!(r.get::<_, i64>("seq"), lo);
    assert_eq!(r.get::<_, i32>("occurrence"), 0);

    let prices = vec![lo, 0, hi];
    let counts = vec![hi, 1, lo];
    c.execute(
        "INSERT INTO orderbook_snapshots VALUES ($1, $2, 32767, 'KX-A', 'ws', 7, 8, $3, $4, $4, $3)",
        &[&ts, &rx, &prices, &counts],
    )
    .unwrap();
    let r = c
        .query_one("SELECT * FROM orderbook_snapshots", &[])
        .unwrap();
    assert_eq!(r.get::<_, i64>("snapshot_ts"), ts);
    assert_eq!(r.get::<_, i16>("gatherer_id"), i16::MAX);
    assert_eq!(r.get::<_, Vec<i64>>("yes_price_e6"), prices);
    assert_eq!(r.get::<_, Vec<i64>>("yes_count_e2"), counts);
    assert_eq!(r.get::<_, Vec<i64>>("no_price_e6"), counts);
    assert_eq!(r.get::<_, Vec<i64>>("no_count_e2"), prices);
    // Mismatched level arrays are refused.
    assert_sqlstate(
        c.execute(
            "INSERT INTO orderbook_snapshots VALUES ($1, $1, 1, 'KX-A', 'ws', NULL, NULL, '{1}', '{}', '{}', '{}')",
            &[&ts],
        ),
        &SqlState::CHECK_VIOLATION,
        "ragged snapshot",
    );

    c.execute(
        "INSERT INTO tickers VALUES ($1, $2, 1, 'KX-A', $3, $4, $3, $4, $3, $4, $3, $4, $3, $4, NULL, NULL)",
        &[&ts, &rx, &hi, &lo],
    )
    .unwrap();
    let r = c.query_one("SELECT * FROM tickers", &[]).unwrap();
    assert_eq!(r.get::<_, i64>("exchange_ts"), ts);
    for (i, col) in [
        "price_e6",
        "yes_bid_e6",
        "yes_ask_e6",
        "yes_bid_size_e2",
        "yes_ask_size_e2",
        "last_trade_size_e2",
        "volume_e2",
        "open_interest_e2",
        "dollar_volume_e6",
        "dollar_open_interest_e6",
    ]
    .iter()
    .enumerate()
    {
        let want = if i % 2 == 0 { hi } else { lo };
        assert_eq!(r.get::<_, Option<i64>>(*col), Some(want), "{col}");
    }
    assert_eq!(r.get::<_, Option<i64>>("sid"), None);

    c.execute(
        "INSERT INTO market_lifecycle (exchange_ts, received_ts, gatherer_id, ticker, event_type, mve, payload, sid, seq)
         VALUES ($1, $2, 2, 'KX-A', 'determined', true, '{\"result\":\"yes\",\"n\":12345678901234567890}', $3, $4)",
        &[&ts, &rx, &hi, &lo],
    )
    .unwrap();
    let r = c
        .query_one("SELECT exchange_ts, event_type, mve, payload::text, sid, seq, payload_md5 IS NOT NULL FROM market_lifecycle", &[])
        .unwrap();
    assert_eq!(r.get::<_, i64>(0), ts);
    assert_eq!(r.get::<_, String>(1), "determined");
    assert!(r.get::<_, bool>(2));
    assert_eq!(
        r.get::<_, String>(3),
        r#"{"n": 12345678901234567890, "result": "yes"}"#
    );
    assert_eq!(r.get::<_, Option<i64>>(4), Some(hi));
    assert_eq!(r.get::<_, Option<i64>>(5), Some(lo));
    assert!(r.get::<_, bool>(6));

    c.execute(
        "INSERT INTO markets VALUES ('KX-A', 'KX', 'KXS', 'active', 'Will A?', 'Yes A', 'No A', 'binary',
                 $1, $2, 'linear_cent', '[{\"start\":\"0.01\"}]', '{\"k\":1}', $3, 1)",
        &[&lo, &hi, &rx],
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT open_ts, close_ts, updated_ts, price_ranges::text FROM markets",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (lo, hi, rx)
    );
    assert_eq!(r.get::<_, String>(3), r#"[{"start": "0.01"}]"#);

    c.execute(
        "INSERT INTO events VALUES ('KX', 'KXS', 'Event', 'Sub', 'binary', true, $1, 'day', $2, 1)",
        &[&hi, &rx],
    )
    .unwrap();
    let r = c
        .query_one("SELECT strike_date, mutually_exclusive FROM events", &[])
        .unwrap();
    assert_eq!(r.get::<_, Option<i64>>(0), Some(hi));
    assert_eq!(r.get::<_, Option<bool>>(1), Some(true));

    let tickers = vec!["KX-A".to_owned(), "KX-B".to_owned()];
    let id: i64 = c
        .query_one(
            "INSERT INTO sequence_gaps (detected_ts, gatherer_id, channel, sid, expected_seq, received_seq, tickers, repair)
             VALUES ($1, 1, 'orderbook_delta', 4, $2, $3, $4, 'get_snapshot') RETURNING id",
            &[&ts, &lo, &hi, &tickers],
        )
        .unwrap()
        .get(0);
    c.execute(
        "UPDATE sequence_gaps SET repaired_ts = $1, backfilled_trades = 12 WHERE id = $2",
        &[&rx, &id],
    )
    .unwrap();
    let r = c.query_one("SELECT expected_seq, received_seq, tickers, repaired_ts, backfilled_trades FROM sequence_gaps", &[]).unwrap();
    assert_eq!(r.get::<_, Option<i64>>(0), Some(lo));
    assert_eq!(r.get::<_, Option<i64>>(1), Some(hi));
    assert_eq!(r.get::<_, Vec<String>>(2), tickers);
    assert_eq!(r.get::<_, Option<i64>>(3), Some(rx));
    assert_eq!(r.get::<_, Option<i32>>(4), Some(12));
    assert_sqlstate(
        c.execute(
            "INSERT INTO sequence_gaps (detected_ts, gatherer_id, channel, repair) VALUES (1, 1, 'x', 'magic')",
            &[],
        ),
        &SqlState::CHECK_VIOLATION,
        "unknown repair",
    );

    c.execute(
        "INSERT INTO dedup_watermarks (gatherer, table_name, watermark_ts) VALUES ('g1', 'trades', $1)",
        &[&hi],
    )
    .unwrap();
    c.execute(
        "INSERT INTO dedup_ranges (table_name, range_start, range_end, source, row_count, fingerprint)
         VALUES ('trades', $1, $2, 'merged', $2, '\\x00ff')",
        &[&lo, &hi],
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT range_start, range_end, row_count, fingerprint FROM dedup_ranges",
            &[],
        )
        .unwrap();
    assert_eq!(
        (r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)),
        (lo, hi, hi)
    );
    assert_eq!(r.get::<_, Vec<u8>>(3), vec![0x00, 0xff]);
    let w: i64 = c
        .query_one("SELECT watermark_ts FROM dedup_watermarks", &[])
        .unwrap()
        .get(0);
    assert_eq!(w, hi);

    // Views: exact decimals and microsecond-exact times on a realistic row.
    c.execute(
        "INSERT INTO trades VALUES ($1, $1, 1, 'KX-V', 't-2', 550001, 449999, 1234, NULL, NULL, NULL, NULL, 'ws', NULL, NULL)",
        &[&ts],
    )
    .unwrap();
    let r = c
        .query_one(
            "SELECT yes_price::text, no_price::text, count::text,
                    (extract(epoch FROM exchange_time) * 1000000)::bigint,
                    to_char(exchange_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')
               FROM trades_v WHERE trade_id = 't-2'",
            &[],
        )
        .unwrap();
    assert_eq!(r.get::<_, String>(0), "0.550001");
    assert_eq!(r.get::<_, String>(1), "0.449999");
    assert_eq!(r.get::<_, String>(2), "12.34");
    assert_eq!(r.get::<_, i64>(3), ts);
    assert_eq!(r.get::<_, String>(4), "2024-01-15 10:00:00.123457");
    for view in [
        "orderbook_deltas_v",
        "orderbook_snapshots_v",
        "tickers_v",
        "market_lifecycle_v",
        "sequence_gaps_v",
    ] {
        c.query(&format!("SELECT * FROM {view} WHERE false"), &[])
            .unwrap();
    }
    let r = c
        .query_one(
            "SELECT yes_price::text[]::text FROM orderbook_snapshots_v",
            &[],
        )
        .unwrap();
    assert_eq!(
        r.get::<_, String>(0),
        "{-9223372036854.775808,0.000000,9223372036854.775807}"
    );
}

/// Names of the partitions of `table`.
fn partitions(c: &mut Client, table: &str) -> Vec<String> {
    c.query(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
          WHERE i.inhparent = $1::text::regclass ORDER BY 1",
        &[&table],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The partition name for the UTC day containing `us`.
fn day_name(c: &mut Client, table: &str, us: i64) -> String {
    c.query_one(
        "SELECT $1::text || '_p' || to_char(timestamp 'epoch' + $2::bigint * interval '1 microsecond', 'YYYYMMDD')",
        &[&table, &us],
    )
    .unwrap()
    .get(0)
}

/// Which partition a row landed in.
fn partition_of(c: &mut Client, table: &str, trade_or_ts: i64) -> String {
    let col = if table == "orderbook_snapshots" {
        "snapshot_ts"
    } else {
        "exchange_ts"
    };
    c.query_one(
        &format!("SELECT tableoid::regclass::text FROM {table} WHERE {col} = $1"),
        &[&trade_or_ts],
    )
    .unwrap()
    .get(0)
}

// Checks the daily partitions and retention: after migrating a gatherer, every time-series table
// has partitions for yesterday..today+3 and a default partition; partitions made for a day 20 days
// ago (by running the maintenance function with an earlier "now") are dropped for
// orderbook_deltas (7-day retention) by the next normal run, while trades (no retention) keep
// theirs.
#[test]
fn partitions_ahead_and_retention() {
    let pg = cluster();
    let report = migrated(&pg, "kalshi", &MigrateOptions::gatherer());
    let mut c = client(&pg, "kalshi");
    let now = now_us(&mut c);
    let today = now - now.rem_euclid(DAY_US);
    for table in kalshi_storage::TIME_SERIES_TABLES {
        let parts = partitions(&mut c, table);
        assert!(parts.contains(&format!("{table}_default")), "{parts:?}");
        for d in -1..=3 {
            let name = day_name(&mut c, table, today + d * DAY_US);
            assert!(
                parts.contains(&name),
                "{table}: {name} missing from {parts:?}"
            );
        }
        assert_eq!(parts.len(), 6, "{parts:?}");
    }
    assert_eq!(report.partition_changes.len(), 5 * 5);

    // An old day, created as if it were 20 days ago.
    let past = today - 20 * DAY_US;
    let created = c
        .query("SELECT * FROM kalshi_maintain_partitions(0, $1)", &[&past])
        .unwrap();
    assert_eq!(
        created.len(),
        5 * 2,
        "yesterday and today of 20 days ago, 5 tables"
    );
    let old_delta = day_name(&mut c, "orderbook_deltas", past);
    let old_trade = day_name(&mut c, "trades", past);
    c.execute(
        "INSERT INTO orderbook_deltas (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, delta_e2, sid, seq)
         VALUES ($1, $1, 1, 'T', 'yes', 1, 1, 1, 1)",
        &[&(past + 5)],
    )
    .unwrap();
    insert_trade(&mut c, past + 5, "old");
    assert_eq!(
        partition_of(&mut c, "orderbook_deltas", past + 5),
        old_delta
    );

    let changes = kalshi_storage::maintain_partitions(&mut c, 3).unwrap();
    let dropped: Vec<String> = changes
        .iter()
        .filter(|ch| ch.action == "dropped")
        .map(|ch| ch.partition_table.clone().unwrap())
        .collect();
    assert_eq!(dropped.len(), 2, "{changes:?}");
    assert!(dropped.iter().all(|p| p.starts_with("orderbook_deltas_p")));
    assert!(dropped.contains(&old_delta));
    assert!(!partitions(&mut c, "orderbook_deltas").contains(&old_delta));
    assert!(partitions(&mut c, "trades").contains(&old_trade));
    let deltas: i64 = c
        .query_one("SELECT count(*) FROM orderbook_deltas", &[])
        .unwrap()
        .get(0);
    assert_eq!(deltas, 0);
    let trades: i64 = c
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    assert_eq!(trades, 1);

    // The retention boundary: the partition 7 days before today is kept, the one 8 days before
    // is dropped.
    c.query(
        "SELECT * FROM kalshi_maintain_partitions(0, $1)",
        &[&(today - 7 * DAY_US)],
    )
    .unwrap();
    let keep = day_name(&mut c, "orderbook_deltas", today - 7 * DAY_US);
    let gone = day_name(&mut c, "orderbook_deltas", today - 8 * DAY_US);
    kalshi_storage::maintain_partitions(&mut c, 3).unwrap();
    let parts = partitions(&mut c, "orderbook_deltas");
    assert!(parts.contains(&keep), "{parts:?}");
    assert!(!parts.contains(&gone), "{parts:?}");
}

// Checks the DEFAULT partition safety net: rows far outside the created partitions (the epoch,
// a 2023 replay, ten days in the future) are accepted; maintenance then gives the 2023 trade its
// own daily partition (moved out of the default), leaves the epoch and the future rows in the
// default until their day enters the window, moves the future row when it does, and deletes a
// 2023 delta from the default partition because it is beyond the deltas' retention.
#[test]
fn default_partition_catches_and_releases_rows() {
    let pg = cluster();
    migrated(&pg, "kalshi", &MigrateOptions::gatherer());
    let mut c = client(&pg, "kalshi");
    let now = now_us(&mut c);
    let replay: i64 = 1_672_574_400_000_000; // 2023-01-01T12:00:00Z
    let future = now + 10 * DAY_US;
    for (ts, id) in [
        (0, "epoch"),
        (replay, "replay"),
        (future, "future"),
        (i64::MAX, "max"),
    ] {
        insert_trade(&mut c, ts, id);
        assert_eq!(partition_of(&mut c, "trades", ts), "trades_default");
    }
    c.execute(
        "INSERT INTO orderbook_deltas (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, delta_e2, sid, seq)
         VALUES ($1, $1, 1, 'T', 'yes', 1, 1, 1, 1)",
        &[&replay],
    )
    .unwrap();

    let changes = kalshi_storage::maintain_partitions(&mut c, 3).unwrap();
    assert!(
        changes.iter().any(|ch| ch.action == "created_from_default"
            && ch.partition_table.as_deref() == Some("trades_p20230101")),
        "{changes:?}"
    );
    assert_eq!(partition_of(&mut c, "trades", replay), "trades_p20230101");
    assert_eq!(partition_of(&mut c, "trades", 0), "trades_default");
    assert_eq!(partition_of(&mut c, "trades", future), "trades_default");
    assert_eq!(partition_of(&mut c, "trades", i64::MAX), "trades_default");
    let deltas: i64 = c
        .query_one("SELECT count(*) FROM orderbook_deltas", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        deltas, 0,
        "a delta older than retention is deleted from the default partition"
    );

    // Eight days later the future row's day is within today+3: its partition takes it over.
    c.query(
        "SELECT * FROM kalshi_maintain_partitions(3, $1)",
        &[&(now + 8 * DAY_US)],
    )
    .unwrap();
    let want = day_name(&mut c, "trades", future);
    assert_eq!(partition_of(&mut c, "trades", future), want);
    let total: i64 = c
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    assert_eq!(total, 4, "no row lost while moving");
}

// Checks least privilege with real logins. On a gatherer database the `gatherer` role can insert
// and read trades, log a gap, and run partition maintenance, but cannot delete, truncate, alter,
// drop or create tables. On a production database it cannot read or write anything, including
// the deduplicator's state tables. `kalshi_reader` can read but not insert; `deduplicator` can
// only read gatherer databases and writes production and its state.
#[test]
fn roles_have_least_privilege() {
    let pg = cluster();
    let mut admin = client(&pg, "postgres");
    kalshi_storage::ensure_database(&mut admin, "kalshi_prod").unwrap();
    migrated(&pg, "kalshi", &MigrateOptions::gatherer());
    migrated(&pg, "kalshi_prod", &MigrateOptions::production());
    admin
        .batch_execute("ALTER ROLE gatherer LOGIN; ALTER ROLE kalshi_reader LOGIN; ALTER ROLE deduplicator LOGIN;")
        .unwrap();
    let login = |db: &str, user: &str| connect(&pg.conn_string(db, user)).unwrap();
    let denied = &SqlState::INSUFFICIENT_PRIVILEGE;

    // gatherer on its own database.
    let mut g = login("kalshi", "gatherer");
    let now = now_us(&mut g);
    insert_trade(&mut g, now, "g-1");
    let n: i64 = g
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    g.execute(
        "INSERT INTO sequence_gaps (detected_ts, gatherer_id, channel, sid, expected_seq, received_seq, repair)
         VALUES ($1, 1, 'orderbook_delta', 1, 5, 9, 'get_snapshot')",
        &[&now],
    )
    .unwrap();
    g.execute("UPDATE sequence_gaps SET repaired_ts = $1", &[&now])
        .unwrap();
    g.execute(
        "INSERT INTO markets (ticker, event_ticker, status, updated_ts, gatherer_id) VALUES ('M', 'E', 'active', 1, 1)
         ON CONFLICT (ticker) DO UPDATE SET status = excluded.status",
        &[],
    )
    .unwrap();
    g.query("SELECT * FROM kalshi_maintain_partitions(3)", &[])
        .unwrap();
    // A service running as gatherer can run an up-to-date migration (it only reads).
    let again = kalshi_storage::migrate(&mut g, &MigrateOptions::gatherer()).unwrap();
    assert!(again.applied.is_empty());
    for q in RUNBOOK_QUERIES {
        g.query(*q, &[])
            .unwrap_or_else(|e| panic!("gatherer: {q}: {e}"));
    }
    assert_sqlstate(
        g.execute("DELETE FROM trades", &[]),
        denied,
        "gatherer DELETE",
    );
    assert_sqlstate(
        g.execute("UPDATE trades SET count_e2 = 0", &[]),
        denied,
        "gatherer UPDATE",
    );
    assert_sqlstate(
        g.execute("TRUNCATE trades", &[]),
        denied,
        "gatherer TRUNCATE",
    );
    assert_sqlstate(g.execute("DROP TABLE trades", &[]), denied, "gatherer DROP");
    assert_sqlstate(
        g.execute("ALTER TABLE trades ADD COLUMN x int", &[]),
        denied,
        "gatherer ALTER",
    );
    assert_sqlstate(
        g.execute("CREATE TABLE mine (x int)", &[]),
        denied,
        "gatherer CREATE",
    );
    assert_sqlstate(
        g.execute("DROP TABLE trades_default", &[]),
        denied,
        "gatherer DROP partition",
    );
    assert_sqlstate(
        g.execute("UPDATE kalshi_retention SET retention_days = NULL", &[]),
        denied,
        "gatherer changing retention",
    );
    assert_sqlstate(
        g.query(
            "SELECT kalshi_create_day_partition('trades', 'exchange_ts', 0, 1, 'x')",
            &[],
        ),
        denied,
        "gatherer calling the internal partition function",
    );

    // gatherer on production: nothing, dedup state included.
    let mut gp = login("kalshi_prod", "gatherer");
    for q in [
        "SELECT * FROM dedup_watermarks",
        "SELECT * FROM dedup_ranges",
        "INSERT INTO dedup_watermarks (gatherer, table_name, watermark_ts) VALUES ('g', 't', 1)",
        "DELETE FROM dedup_ranges",
        "SELECT * FROM trades",
        "INSERT INTO trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id, yes_price_e6, no_price_e6, count_e2, source)
         VALUES (1, 1, 1, 'T', 'x', 1, 1, 1, 'ws')",
        "DROP TABLE dedup_ranges",
    ] {
        assert_sqlstate(gp.execute(q, &[]), denied, q);
    }

    // kalshi_reader: read only, everywhere.
    for db in ["kalshi", "kalshi_prod"] {
        let mut r = login(db, "kalshi_reader");
        r.query("SELECT * FROM trades_v", &[]).unwrap();
        r.query("SELECT * FROM sequence_gaps", &[]).unwrap();
        assert_sqlstate(
            r.execute(
                "INSERT INTO trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id, yes_price_e6, no_price_e6, count_e2, source)
                 VALUES (1, 1, 1, 'T', 'x', 1, 1, 1, 'ws')",
                &[],
            ),
            denied,
            "reader INSERT",
        );
        assert_sqlstate(
            r.execute("DELETE FROM markets", &[]),
            denied,
            "reader DELETE",
        );
        assert_sqlstate(
            r.query("SELECT * FROM kalshi_maintain_partitions(3)", &[]),
            denied,
            "reader maintenance",
        );
    }
    let mut rp = login("kalshi_prod", "kalshi_reader");
    rp.query("SELECT * FROM dedup_ranges", &[]).unwrap();
    assert_sqlstate(
        rp.execute("DELETE FROM dedup_ranges", &[]),
        denied,
        "reader DELETE state",
    );

    // deduplicator: reads gatherers, writes production and its state.
    let mut dg = login("kalshi", "deduplicator");
    let n: i64 = dg
        .query_one("SELECT count(*) FROM trades", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    assert_sqlstate(
        dg.execute("DELETE FROM trades", &[]),
        denied,
        "deduplicator deleting on a gatherer",
    );
    let mut dp = login("kalshi_prod", "deduplicator");
    insert_trade(&mut dp, now, "g-1");
    dp.execute(
        "INSERT INTO dedup_watermarks (gatherer, table_name, watermark_ts) VALUES ('g1', 'trades', $1)
         ON CONFLICT (gatherer, table_name) DO UPDATE SET watermark_ts = excluded.watermark_ts",
        &[&now],
    )
    .unwrap();
    dp.execute(
        "INSERT INTO dedup_ranges (table_name, range_start, range_end, source, row_count, fingerprint)
         VALUES ('trades', 0, $1, 'g1', 1, '\\x01')",
        &[&now],
    )
    .unwrap();
    dp.query("SELECT * FROM kalshi_maintain_partitions(3)", &[])
        .unwrap();
    let again = kalshi_storage::migrate(&mut dp, &MigrateOptions::production()).unwrap();
    assert!(again.applied.is_empty());
    assert_sqlstate(
        dp.execute("DROP TABLE trades", &[]),
        denied,
        "deduplicator DROP",
    );
}

// Checks the move-out-of-default path on production, where partitions carry unique indexes and
// market_lifecycle has a generated column: a 2023 trade and lifecycle row inserted into the
// default partitions are moved into new daily partitions by maintenance, keep their values
// (including the generated payload_md5), and the unique key still rejects a duplicate afterwards.
#[test]
fn production_default_rows_move_with_indexes() {
    let pg = cluster();
    migrated(&pg, "kalshi", &MigrateOptions::production());
    let mut c = client(&pg, "kalshi");
    let replay: i64 = 1_672_574_400_000_000; // 2023-01-01T12:00:00Z
    insert_trade(&mut c, replay, "replayed");
    c.execute(
        "INSERT INTO market_lifecycle (exchange_ts, received_ts, gatherer_id, ticker, event_type, payload)
         VALUES ($1, $1, 1, 'KX-A', 'settled', '{\"result\":\"no\"}')",
        &[&replay],
    )
    .unwrap();
    let md5_before: String = c
        .query_one("SELECT payload_md5::text FROM market_lifecycle", &[])
        .unwrap()
        .get(0);

    kalshi_storage::maintain_partitions(&mut c, 3).unwrap();
    assert_eq!(partition_of(&mut c, "trades", replay), "trades_p20230101");
    assert_eq!(
        partition_of(&mut c, "market_lifecycle", replay),
        "market_lifecycle_p20230101"
    );
    let md5_after: String = c
        .query_one("SELECT payload_md5::text FROM market_lifecycle", &[])
        .unwrap()
        .get(0);
    assert_eq!(md5_before, md5_after);
    let inserted = c
        .execute(
            "INSERT INTO trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id,
                                 yes_price_e6, no_price_e6, count_e2, source)
             VALUES ($1, $1, 2, 'EXAMPLE-TICKER', 'replayed', 550000, 450000, 100, 'rest')
             ON CONFLICT DO NOTHING",
            &[&replay],
        )
        .unwrap();
    assert_eq!(inserted, 0, "the moved partition enforces the dedup key");
}
