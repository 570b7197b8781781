//! The snapshot-aware check ([`check_snapshots`]) against a real database holding a capture
//! with a WebSocket outage: one connection subscribes (snapshots, then deltas with sid and seq),
//! loses everything for ten seconds of exchange time, and a second connection resubscribes
//! (new snapshots, seq from 1 again) in the middle of one exchange microsecond. The exact check
//! must fail on it (deltas were lost for good), the snapshot check must pass, and it must fail
//! on a wrong snapshot, on a delta missing after the latest snapshot and on an extra delta.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kalshi_pg_harness::{PgCluster, PgOptions};
use kalshi_sim_core::{Exchange, ExchangeConfig};
use kalshi_verify::{BookRule, Captures, Report, TradeRule, Truth, Window, check, check_snapshots};
use postgres::Client;
use serde_json::Value;

const START_US: i64 = 1_780_000_000_000_000;

#[derive(Clone)]
struct Delta {
    ts: i64,
    ticker: String,
    side: String,
    price: i64,
    delta: i64,
}

struct Fixture {
    _cluster: PgCluster,
    client: Client,
    truth: Truth,
    window: Window,
    /// Index (in the truth's delta order) of the last delta before the resubscription.
    cut: usize,
    deltas: Vec<Delta>,
    /// The capture streams, loaded before any damage (they stand for the gatherers' own
    /// databases; the damage is to the checked database).
    captures: Captures,
    _dir: std::path::PathBuf,
}

type Books = BTreeMap<String, BTreeMap<(String, i64), i64>>;

fn apply(books: &mut Books, d: &Delta) {
    let book = books.entry(d.ticker.clone()).or_default();
    let size = book.entry((d.side.clone(), d.price)).or_insert(0);
    *size += d.delta;
    if *size == 0 {
        book.remove(&(d.side.clone(), d.price));
    }
}

fn snapshot_row(
    out: &mut String,
    ticker: &str,
    book: &BTreeMap<(String, i64), i64>,
    sid: i64,
    seq: i64,
    received: i64,
) {
    let arr = |side: &str, price: bool| {
        let v: Vec<String> = book
            .iter()
            .filter(|((s, _), _)| s == side)
            .map(|((_, p), c)| if price { p.to_string() } else { c.to_string() })
            .collect();
        format!("{{{}}}", v.join(","))
    };
    writeln!(
        out,
        "{received}\t{received}\t1\t{ticker}\tws\t{sid}\t{seq}\t{}\t{}\t{}\t{}",
        arr("yes", true),
        arr("yes", false),
        arr("no", true),
        arr("no", false)
    )
    .unwrap();
}

fn fixture() -> Fixture {
    let mut exchange = Exchange::new(ExchangeConfig::default(), 11);
    for i in 0..=200 {
        exchange.step(START_US + i * 500_000);
    }
    // One directory per fixture: the tests run in parallel in one process, and a shared
    // directory let one test read another's half-written truth log.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("kalshi-verify-snap-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let truth_path = dir.join("truth.jsonl");
    let books_path = dir.join("books.jsonl");
    std::fs::write(&truth_path, exchange.truth_log()).unwrap();
    let mut books = Vec::new();
    exchange.write_final_books(&mut books);
    std::fs::write(&books_path, &books).unwrap();
    let truth = Truth::load(&truth_path, &books_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);

    let mut deltas = Vec::new();
    let mut trades = String::new();
    let from_ts = START_US + 10_000_000;
    for line in String::from_utf8(exchange.truth_log().to_vec())
        .unwrap()
        .lines()
    {
        let v: Value = serde_json::from_str(line).unwrap();
        let r = &v["record"];
        let ts = r["exchange_ts"].as_i64().unwrap_or(0);
        match r["type"].as_str() {
            Some("orderbook_delta") => deltas.push(Delta {
                ts,
                ticker: r["ticker"].as_str().unwrap().to_owned(),
                side: r["side"].as_str().unwrap().to_owned(),
                price: r["price_e6"].as_i64().unwrap(),
                delta: r["delta_e2"].as_i64().unwrap(),
            }),
            // Every trade of the window is stored (REST backfill covers the outage).
            Some("trade") if ts >= from_ts => writeln!(
                trades,
                "{ts}\t{ts}\t1\t{}\t{}\t{}\t{}\t{}\tws",
                r["ticker"].as_str().unwrap(),
                r["trade_id"].as_str().unwrap(),
                r["yes_price_e6"],
                r["no_price_e6"],
                r["count_e2"]
            )
            .unwrap(),
            _ => {}
        }
    }
    // The resubscription lands between two deltas of one market in the same microsecond,
    // somewhere after 40 s.
    let cut = (1..deltas.len())
        .find(|&i| {
            deltas[i].ts >= START_US + 40_000_000
                && deltas[i].ts == deltas[i + 1].ts
                && deltas[i].ticker == deltas[i + 1].ticker
        })
        .expect("no two deltas of one market share a microsecond");
    let outage_from = START_US + 30_000_000;

    // Connection 1: subscribed at `from_ts` (books as of then), deltas until `outage_from`.
    let mut snapshots = String::new();
    let mut rows = String::new();
    let mut books: Books = BTreeMap::new();
    let mut seq = 0;
    let mut subscribed = false;
    for (i, d) in deltas.iter().enumerate() {
        if !subscribed && d.ts > from_ts {
            subscribed = true;
            for (ticker, book) in &books {
                seq += 1;
                snapshot_row(&mut snapshots, ticker, book, 1, seq, from_ts);
            }
        }
        if subscribed && d.ts <= outage_from {
            seq += 1;
            writeln!(
                rows,
                "{}\t{}\t1\t{}\t{}\t{}\t{}\t1\t{seq}",
                d.ts,
                d.ts + 1_000,
                d.ticker,
                d.side,
                d.price,
                d.delta
            )
            .unwrap();
        }
        apply(&mut books, d);
        if i == cut {
            // Connection 2: snapshots of the books after `deltas[cut]`, then the rest.
            seq = 0;
            for (ticker, book) in &books {
                seq += 1;
                snapshot_row(&mut snapshots, ticker, book, 1, seq, d.ts + 2_000);
            }
        }
        if i > cut {
            seq += 1;
            writeln!(
                rows,
                "{}\t{}\t1\t{}\t{}\t{}\t{}\t1\t{seq}",
                d.ts,
                d.ts + 3_000,
                d.ticker,
                d.side,
                d.price,
                d.delta
            )
            .unwrap();
        }
    }
    // `deltas[cut]` itself was captured by another gatherer (merged, as in production).
    let d = &deltas[cut];
    writeln!(
        rows,
        "{}\t{}\t2\t{}\t{}\t{}\t{}\t7\t1",
        d.ts,
        d.ts + 500,
        d.ticker,
        d.side,
        d.price,
        d.delta
    )
    .unwrap();

    let cluster = PgCluster::start(PgOptions::default()).unwrap();
    let mut client = kalshi_storage::connect(&cluster.url("kalshi")).unwrap();
    kalshi_storage::migrate(&mut client, &kalshi_storage::MigrateOptions::gatherer()).unwrap();
    copy(
        &mut client,
        "COPY trades (exchange_ts, received_ts, gatherer_id, ticker, trade_id, yes_price_e6, \
         no_price_e6, count_e2, source) FROM STDIN",
        &trades,
    );
    copy(
        &mut client,
        "COPY orderbook_deltas (exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, \
         delta_e2, sid, seq) FROM STDIN",
        &rows,
    );
    copy(
        &mut client,
        "COPY orderbook_snapshots (snapshot_ts, received_ts, gatherer_id, ticker, source, sid, \
         seq, yes_price_e6, yes_count_e2, no_price_e6, no_count_e2) FROM STDIN",
        &snapshots,
    );
    let mut captures = Captures::new();
    captures.load(&mut client, &truth).unwrap();
    assert!(captures.row_count() > 100);
    Fixture {
        _cluster: cluster,
        client,
        truth,
        window: Window {
            from_ts,
            to_ts: i64::MAX,
        },
        cut,
        deltas,
        captures,
        _dir: dir,
    }
}

fn copy(client: &mut Client, sql: &str, text: &str) {
    use std::io::Write;
    let mut w = client.copy_in(sql).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
}

fn snap(f: &mut Fixture) -> Report {
    let r = check_snapshots(
        &mut f.client,
        &f.truth,
        f.window,
        TradeRule::ExactlyOnce,
        &f.captures,
    )
    .unwrap();
    assert_eq!(r.book_rule, BookRule::LatestSnapshot);
    r
}

#[test]
fn outage_passes_from_snapshots_and_fails_exactly() {
    let mut f = fixture();
    assert!(
        f.deltas.len() - f.cut > 200,
        "the resubscription is too late for a meaningful check"
    );
    let exact = check(&mut f.client, &f.truth, f.window, TradeRule::ExactlyOnce).unwrap();
    assert!(!exact.passed(), "the outage lost deltas for good: {exact}");
    assert!(
        exact.deltas_missing_count > 10 && exact.books_differing_count > 0,
        "{exact}"
    );

    let r = snap(&mut f);
    assert!(r.passed(), "{r}");
    assert_eq!(r.deltas_missing_count, exact.deltas_missing_count, "{r}");
    assert_eq!(
        (r.deltas_unhealed_count, r.deltas_extra_count),
        (0, 0),
        "{r}"
    );
    assert_eq!(r.books_checked, f.truth.market_count());
    assert!(r.books_from_snapshot > 5, "{r}");
}

#[test]
fn a_wrong_snapshot_fails() {
    let mut f = fixture();
    // One level of the latest snapshot of a market with a non-empty YES side.
    f.client
        .execute(
            "UPDATE orderbook_snapshots SET yes_count_e2[1] = yes_count_e2[1] + 100 \
             WHERE ctid = (SELECT ctid FROM orderbook_snapshots \
                           WHERE cardinality(yes_count_e2) > 0 \
                           ORDER BY received_ts DESC, seq DESC LIMIT 1)",
            &[],
        )
        .unwrap();
    let r = snap(&mut f);
    assert_eq!((r.books_differing_count, r.passed()), (1, false), "{r}");
    assert_eq!(r.deltas_unhealed_count, 0, "{r}");
}

#[test]
fn a_delta_missing_after_the_snapshot_fails() {
    let mut f = fixture();
    // The last delta: no snapshot is after it.
    let last = f.deltas.last().unwrap().clone();
    let n = f
        .client
        .execute(
            "DELETE FROM orderbook_deltas WHERE ctid = (SELECT ctid FROM orderbook_deltas \
             WHERE ticker = $1 AND exchange_ts = $2 AND side = $3 AND price_e6 = $4 \
             AND delta_e2 = $5 LIMIT 1)",
            &[&last.ticker, &last.ts, &last.side, &last.price, &last.delta],
        )
        .unwrap();
    assert_eq!(n, 1);
    let r = snap(&mut f);
    assert!(!r.passed(), "{r}");
    assert_eq!(r.deltas_unhealed_count, 1, "{r}");
    assert!(r.deltas_unhealed[0].starts_with(&last.ticker), "{r}");
}

#[test]
fn the_other_gatherers_copy_at_the_cut_counts_once() {
    let mut f = fixture();
    // Without the other gatherer's copy of the delta the snapshot already holds, nothing
    // changes (it is before the snapshot, healed).
    let d = f.deltas[f.cut].clone();
    f.client
        .execute("DELETE FROM orderbook_deltas WHERE gatherer_id = 2", &[])
        .unwrap();
    assert!(snap(&mut f).passed());
    // The first delta after the snapshot, in the same microsecond, lost: it is after the
    // snapshot, so the loss is not healed and the book differs.
    let next = f.deltas[f.cut + 1].clone();
    assert_eq!(next.ts, d.ts);
    f.client
        .execute(
            "DELETE FROM orderbook_deltas WHERE ctid = (SELECT ctid FROM orderbook_deltas \
             WHERE gatherer_id = 1 AND ticker = $1 AND exchange_ts = $2 AND side = $3 \
             AND price_e6 = $4 AND delta_e2 = $5 ORDER BY seq DESC LIMIT 1)",
            &[&next.ticker, &next.ts, &next.side, &next.price, &next.delta],
        )
        .unwrap();
    let r = snap(&mut f);
    assert!(!r.passed(), "{r}");
    assert_eq!(
        (r.deltas_unhealed_count, r.books_differing_count),
        (1, 1),
        "{r}"
    );
}

#[test]
fn an_extra_delta_fails_and_a_healed_loss_passes() {
    let mut f = fixture();
    // A delta lost during connection 1 (before the resubscription): healed.
    let early = f
        .deltas
        .iter()
        .find(|d| d.ts > f.window.from_ts + 5_000_000)
        .unwrap()
        .clone();
    f.client
        .execute(
            "DELETE FROM orderbook_deltas WHERE ctid = (SELECT ctid FROM orderbook_deltas \
             WHERE ticker = $1 AND exchange_ts = $2 AND side = $3 AND price_e6 = $4 \
             AND delta_e2 = $5 LIMIT 1)",
            &[
                &early.ticker,
                &early.ts,
                &early.side,
                &early.price,
                &early.delta,
            ],
        )
        .unwrap();
    let r = snap(&mut f);
    assert!(r.passed(), "{r}");
    // A doubled delta after the resubscription: extra, and the book differs.
    f.client
        .execute(
            "INSERT INTO orderbook_deltas SELECT * FROM orderbook_deltas WHERE exchange_ts > $1 \
             ORDER BY exchange_ts DESC, seq DESC LIMIT 1",
            &[&f.deltas[f.cut].ts],
        )
        .unwrap();
    let r = snap(&mut f);
    assert!(!r.passed(), "{r}");
    assert_eq!(
        (r.deltas_extra_count, r.books_differing_count),
        (1, 1),
        "{r}"
    );
}

#[test]
fn snapshots_of_an_unloaded_gatherer_are_not_used() {
    let mut f = fixture();
    let r = check_snapshots(
        &mut f.client,
        &f.truth,
        f.window,
        TradeRule::ExactlyOnce,
        &Captures::new(),
    )
    .unwrap();
    // Without captures every book falls back to the exact rule, which the outage breaks.
    assert_eq!(r.books_from_snapshot, 0, "{r}");
    assert!(!r.passed(), "{r}");
}
