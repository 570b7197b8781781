//! Writer benchmark: kalshi-writer rows/s against `psql` running a raw
//! `COPY ... FROM STDIN (FORMAT binary)` of the very same rows into the same table of the same
//! throwaway cluster, in the same run.
//!
//! `cargo bench -p kalshi-bench --bench writer [-- OPTIONS]`
//!
//! Options (after `--`):
//! * `--write-readme` (or `KALSHI_BENCH_WRITE_README=1`): also write the results between the
//!   writer markers of `bench/README.md`.
//! * `--runs N`: timed runs per cell, alternating writer and psql (default 3; median shown).
//! * `--rows N`: rows per run (default 500,000).
//! * `--no-sweep`: skip the flush-limit sweep.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kalshi_pg_harness::{PgCluster, PgOptions, find_bin_dir};
use kalshi_storage::{MigrateOptions, connect, migrate};
use kalshi_wire::record::{BookSide, Side};
use kalshi_wire::{Ticker, TradeId};
use kalshi_writer::copy::{self, COPY_HEADER, COPY_TRAILER};
use kalshi_writer::{DeltaRow, Row, Source, Table, TradeRow, Writer, WriterConfig};
use prometheus::Registry;

const BEGIN: &str = "<!-- BEGIN WRITER RESULTS -->";
const END: &str = "<!-- END WRITER RESULTS -->";
const DAY_US: i64 = 86_400_000_000;

struct Options {
    write_readme: bool,
    runs: usize,
    rows: usize,
    sweep: bool,
}

fn options() -> Options {
    let mut o = Options {
        write_readme: std::env::var("KALSHI_BENCH_WRITE_README")
            .is_ok_and(|v| v != "0" && !v.is_empty()),
        runs: 3,
        rows: 500_000,
        sweep: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--write-readme" => o.write_readme = true,
            "--runs" => o.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--rows" => o.rows = args.next().and_then(|v| v.parse().ok()).unwrap_or(500_000),
            "--no-sweep" => o.sweep = false,
            _ => {} // cargo bench passes `--bench`.
        }
    }
    o
}

/// A small deterministic generator (splitmix64), so both sides get identical rows.
struct Gen(u64);
impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn tickers() -> Vec<Ticker> {
    let series = [
        "KXBTCD",
        "KXETHD",
        "KXHIGHNY",
        "KXNBAGAME",
        "KXGOLDH",
        "KXMVECROSSCATEGORY",
    ];
    (0..2000)
        .map(|i| {
            Ticker::new(&format!(
                "{}-26JAN{:02}H{:04}-T{}.99",
                series[i % 6],
                i % 28,
                i,
                i * 7
            ))
            .unwrap()
        })
        .collect()
}

fn base_ts() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    now / DAY_US * DAY_US + 3_600_000_000
}

fn deltas(n: usize) -> Vec<DeltaRow> {
    let t = tickers();
    let base = base_ts();
    let mut g = Gen(1);
    (0..n)
        .map(|i| DeltaRow {
            exchange_ts: base + i as i64 * 10,
            received_ts: base + i as i64 * 10 + 1500,
            gatherer_id: 1,
            ticker: t[(g.next() % 2000) as usize],
            side: if g.next().is_multiple_of(2) {
                Side::Yes
            } else {
                Side::No
            },
            price_e6: (g.next() % 99 + 1) as i64 * 10_000,
            delta_e2: (g.next() % 20_000) as i64 - 10_000,
            sid: 1 + (g.next() % 4) as i64,
            seq: i as i64,
            occurrence: 0,
        })
        .collect()
}

fn trades(n: usize) -> Vec<TradeRow> {
    let t = tickers();
    let base = base_ts();
    let mut g = Gen(2);
    (0..n)
        .map(|i| {
            let yes = (g.next() % 99 + 1) as i64 * 10_000;
            TradeRow {
                exchange_ts: base + i as i64 * 10,
                received_ts: base + i as i64 * 10 + 900,
                gatherer_id: 1,
                ticker: t[(g.next() % 2000) as usize],
                trade_id: TradeId::new(&format!(
                    "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                    g.next() as u32,
                    g.next() as u16,
                    g.next() % 4096,
                    g.next() % 4096,
                    g.next() % (1 << 48)
                ))
                .unwrap(),
                yes_price_e6: yes,
                no_price_e6: 1_000_000 - yes,
                count_e2: (g.next() % 100_000) as i64,
                taker_side: Some(Side::Yes),
                taker_outcome_side: Some(Side::No),
                taker_book_side: Some(BookSide::Bid),
                is_block_trade: Some(false),
                source: Source::Ws,
                sid: Some(3),
                seq: Some(i as i64),
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Kind {
    Deltas,
    Trades,
}

impl Kind {
    fn table(self) -> Table {
        match self {
            Kind::Deltas => Table::OrderbookDeltas,
            Kind::Trades => Table::Trades,
        }
    }
}

struct Data {
    kind: Kind,
    deltas: Vec<DeltaRow>,
    trades: Vec<TradeRow>,
}

impl Data {
    fn len(&self) -> usize {
        self.deltas.len().max(self.trades.len())
    }
    fn row(&self, i: usize) -> Row {
        match self.kind {
            Kind::Deltas => Row::Delta(self.deltas[i]),
            Kind::Trades => Row::Trade(self.trades[i]),
        }
    }
    /// The complete binary COPY stream of the rows, as psql will send it.
    fn copy_file(&self, path: &Path) -> usize {
        let mut buf = Vec::with_capacity(self.len() * 200);
        buf.extend_from_slice(COPY_HEADER);
        for i in 0..self.len() {
            match self.kind {
                Kind::Deltas => copy::encode_delta(&mut buf, &self.deltas[i]),
                Kind::Trades => copy::encode_trade(&mut buf, &self.trades[i]),
            }
        }
        buf.extend_from_slice(COPY_TRAILER);
        std::fs::write(path, &buf).unwrap();
        buf.len()
    }
}

struct Bench {
    pg: PgCluster,
    psql: std::path::PathBuf,
    tmp: tempfile::TempDir,
}

impl Bench {
    fn reset(&self, table: Table) {
        let mut c = connect(&self.pg.url("kalshi")).unwrap();
        c.batch_execute(&format!(
            "TRUNCATE {}; TRUNCATE writer_batches; CHECKPOINT;",
            table.name()
        ))
        .unwrap();
        let n: i64 = c
            .query_one(&format!("SELECT count(*) FROM {}", table.name()), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0);
    }

    fn count(&self, table: Table) -> i64 {
        let mut c = connect(&self.pg.url("kalshi")).unwrap();
        c.query_one(&format!("SELECT count(*) FROM {}", table.name()), &[])
            .unwrap()
            .get(0)
    }

    /// Seconds for psql to COPY the file into the table.
    fn psql(&self, data: &Data, file: &Path) -> f64 {
        let table = data.kind.table();
        self.reset(table);
        let sql = format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            table.name(),
            table.columns().join(", ")
        );
        let start = Instant::now();
        let out = Command::new(&self.psql)
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args([
                "-p",
                &self.pg.port().to_string(),
                "-U",
                "postgres",
                "-d",
                "kalshi",
            ])
            .args(["-c", &sql])
            .stdin(std::fs::File::open(file).unwrap())
            .stdout(Stdio::null())
            .output()
            .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(self.count(table), data.len() as i64);
        secs
    }

    /// Seconds for the writer to take the rows from a producer thread and commit them all.
    fn writer(&self, data: &Data, batch_rows: usize, fsync: bool) -> f64 {
        let table = data.kind.table();
        self.reset(table);
        let spool = self.tmp.path().join("spool");
        let _ = std::fs::remove_dir_all(&spool);
        let mut cfg = WriterConfig::new(self.pg.url("kalshi"), "bench", &spool);
        cfg.batch_rows_max = batch_rows;
        cfg.spool.fsync = fsync;
        let (writer, producers) = Writer::start(cfg, &Registry::new()).unwrap();
        let producer = producers.into_iter().next().unwrap();
        let start = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..data.len() {
                    producer
                        .push_wait(data.row(i), Duration::from_secs(600))
                        .unwrap();
                }
            });
        });
        let report = writer.shutdown().unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(report.rows_committed, data.len() as u64, "{report:?}");
        assert_eq!(self.count(table), data.len() as i64);
        secs
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let o = options();
    let pg = PgCluster::start(
        PgOptions::default()
            .setting("shared_buffers", "256MB")
            .setting("max_wal_size", "8GB")
            .setting("checkpoint_timeout", "30min"),
    )
    .unwrap();
    migrate(
        &mut connect(&pg.url("kalshi")).unwrap(),
        &MigrateOptions::gatherer(),
    )
    .unwrap();
    let bench = Bench {
        pg,
        psql: find_bin_dir().unwrap().join("psql"),
        tmp: tempfile::tempdir().unwrap(),
    };
    let mut out = String::new();
    writeln!(
        out,
        "{} rows per run, median of {} runs (writer and psql alternating), one throwaway cluster \
         (fsync off, synchronous_commit on, shared_buffers 256MB), table without unique indexes \
         (gatherer schema), writer defaults (batch_rows_max 50,000, 8 MiB, 200 ms, spool without fsync).\n",
        o.rows, o.runs
    )
    .unwrap();
    writeln!(
        out,
        "| table | bytes/row | psql COPY rows/s | writer rows/s | writer / psql |"
    )
    .unwrap();
    writeln!(out, "|---|---:|---:|---:|---:|").unwrap();
    let sets = [
        Data {
            kind: Kind::Deltas,
            deltas: deltas(o.rows),
            trades: Vec::new(),
        },
        Data {
            kind: Kind::Trades,
            deltas: Vec::new(),
            trades: trades(o.rows),
        },
    ];
    for data in &sets {
        let file = bench.tmp.path().join("copy.bin");
        let bytes = data.copy_file(&file);
        let (mut ps, mut ws) = (Vec::new(), Vec::new());
        for run in 0..o.runs {
            if run.is_multiple_of(2) {
                ps.push(bench.psql(data, &file));
                ws.push(bench.writer(data, 50_000, false));
            } else {
                ws.push(bench.writer(data, 50_000, false));
                ps.push(bench.psql(data, &file));
            }
        }
        let (p, w) = (median(ps.clone()), median(ws.clone()));
        let n = data.len() as f64;
        let line = format!(
            "| {} | {:.0} | {:.0} | {:.0} | {:.2} |",
            data.kind.table().name(),
            bytes as f64 / n,
            n / p,
            n / w,
            p / w
        );
        eprintln!("{line}   (psql runs {ps:.3?} s, writer runs {ws:.3?} s)");
        writeln!(out, "{line}").unwrap();
    }

    if o.sweep {
        writeln!(
            out,
            "\nFlush limit sweep (deltas, one run each, same cluster): rows/s by `batch_rows_max`, \
             and the cost of `spool.fsync`.\n"
        )
        .unwrap();
        writeln!(out, "| batch_rows_max | spool fsync | writer rows/s |").unwrap();
        writeln!(out, "|---:|---|---:|").unwrap();
        let data = &sets[0];
        for (rows, fsync) in [
            (1_000, false),
            (5_000, false),
            (20_000, false),
            (50_000, false),
            (100_000, false),
            (50_000, true),
            (5_000, true),
        ] {
            let w = bench.writer(data, rows, fsync);
            let line = format!(
                "| {rows} | {} | {:.0} |",
                if fsync { "on" } else { "off" },
                data.len() as f64 / w
            );
            eprintln!("{line}");
            writeln!(out, "{line}").unwrap();
        }
    }

    println!("{out}");
    if o.write_readme {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).unwrap();
        let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
            panic!("README.md has no writer result markers");
        };
        let updated = format!("{}{BEGIN}\n{out}{}", &readme[..a], &readme[b..]);
        std::fs::File::create(path)
            .unwrap()
            .write_all(updated.as_bytes())
            .unwrap();
    }
}
