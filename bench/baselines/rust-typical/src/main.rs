//! A typical Rust Kalshi market-data collector: the baseline of the end-to-end benchmark for
//! "what a competent Rust user writes today".
//!
//! * tokio (multi-threaded runtime), tokio-tungstenite for the feed, reqwest for the REST
//!   market listing;
//! * serde_json deserializing each frame into owned structs (`String` fields) through an
//!   internally tagged enum;
//! * rust_decimal to convert the fixed-point dollar and count strings to integer micro-dollars
//!   and hundredths, chrono for RFC 3339 times;
//! * a bounded tokio mpsc channel to one writer task, which batches rows (5,000 rows or 200 ms)
//!   and inserts each batch in one transaction with multi-row `INSERT ... VALUES` statements of
//!   at most 1,000 rows (prepared once per table and row count) through tokio-postgres.
//!
//! Same tables and units as the platform's gatherer. Differences from a production collector,
//! on purpose: no signed handshake (the benchmark's simulator runs with auth disabled), no
//! reconnect, no sequence-gap handling. When the exchange closes the connection it flushes,
//! prints "drained" on stderr and waits for SIGTERM (so the benchmark can read its CPU time).
//!
//! ```sh
//! typical-collector --ws ws://HOST:PORT/trade-api/ws/v2 --rest http://HOST:PORT/trade-api/v2 \
//!     --db postgresql://USER@HOST:PORT/kalshi [--gatherer-id 1]
//! ```

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};
use tokio_tungstenite::tungstenite::Message;

const BATCH_ROWS: usize = 5000;
const BATCH_AGE: Duration = Duration::from_millis(200);
const CHUNK_ROWS: usize = 1000;
const CHANNEL_ROWS: usize = 20_000;
const SUBSCRIBE_CHUNK: usize = 10_000;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Frame {
    OrderbookDelta {
        sid: i64,
        seq: i64,
        msg: DeltaMsg,
    },
    Trade {
        sid: i64,
        seq: i64,
        msg: TradeMsg,
    },
    Ticker {
        sid: i64,
        #[serde(default)]
        seq: Option<i64>,
        msg: TickerMsg,
    },
    OrderbookSnapshot {
        sid: i64,
        seq: i64,
        msg: SnapshotMsg,
    },
    Error {
        msg: serde_json::Value,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct DeltaMsg {
    market_ticker: String,
    #[allow(dead_code)]
    market_id: Option<String>,
    price_dollars: String,
    delta_fp: String,
    side: String,
    ts: Option<String>,
    ts_ms: Option<i64>,
}

#[derive(Deserialize)]
struct TradeMsg {
    trade_id: String,
    market_ticker: String,
    yes_price_dollars: String,
    no_price_dollars: String,
    count_fp: String,
    taker_side: Option<String>,
    taker_outcome_side: Option<String>,
    taker_book_side: Option<String>,
    is_block_trade: Option<bool>,
    ts_ms: i64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(serde_json::Number),
    Str(String),
}

#[derive(Deserialize)]
struct TickerMsg {
    market_ticker: String,
    price_dollars: Option<String>,
    yes_bid_dollars: Option<String>,
    yes_ask_dollars: Option<String>,
    volume_fp: Option<String>,
    open_interest_fp: Option<String>,
    yes_bid_size_fp: Option<String>,
    yes_ask_size_fp: Option<String>,
    last_trade_size_fp: Option<String>,
    dollar_volume: Option<NumOrStr>,
    dollar_open_interest: Option<NumOrStr>,
    ts_ms: Option<i64>,
    time: Option<String>,
}

#[derive(Deserialize)]
struct SnapshotMsg {
    market_ticker: String,
    #[serde(default)]
    yes_dollars_fp: Vec<(String, String)>,
    #[serde(default)]
    no_dollars_fp: Vec<(String, String)>,
}

struct DeltaRow {
    exchange_ts: i64,
    received_ts: i64,
    ticker: String,
    side: String,
    price_e6: i64,
    delta_e2: i64,
    sid: i64,
    seq: i64,
}

struct TradeRow {
    exchange_ts: i64,
    received_ts: i64,
    ticker: String,
    trade_id: String,
    yes_price_e6: i64,
    no_price_e6: i64,
    count_e2: i64,
    taker_side: Option<String>,
    taker_outcome_side: Option<String>,
    taker_book_side: Option<String>,
    is_block_trade: Option<bool>,
    sid: i64,
    seq: i64,
}

struct TickerRow {
    exchange_ts: i64,
    received_ts: i64,
    ticker: String,
    values: [Option<i64>; 10],
    sid: i64,
    seq: Option<i64>,
}

struct SnapshotRow {
    received_ts: i64,
    ticker: String,
    sid: i64,
    seq: i64,
    yes_price_e6: Vec<i64>,
    yes_count_e2: Vec<i64>,
    no_price_e6: Vec<i64>,
    no_count_e2: Vec<i64>,
}

enum Row {
    Delta(DeltaRow),
    Trade(TradeRow),
    Ticker(TickerRow),
    Snapshot(SnapshotRow),
}

fn scaled(text: &str, scale: i64) -> Result<i64> {
    let value = Decimal::from_str(text).with_context(|| format!("bad decimal {text:?}"))?;
    (value * Decimal::from(scale))
        .to_i64()
        .with_context(|| format!("decimal out of range {text:?}"))
}

fn dollars(text: &str) -> Result<i64> {
    scaled(text, 1_000_000)
}

fn contracts(text: &str) -> Result<i64> {
    scaled(text, 100)
}

fn opt(text: &Option<String>, f: fn(&str) -> Result<i64>) -> Result<Option<i64>> {
    text.as_deref().map(f).transpose()
}

fn num_or_str(value: &Option<NumOrStr>) -> Result<Option<i64>> {
    match value {
        None => Ok(None),
        Some(NumOrStr::Str(s)) => dollars(s).map(Some),
        Some(NumOrStr::Num(n)) => dollars(&n.to_string()).map(Some),
    }
}

fn rfc3339_us(text: &str) -> Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| format!("bad time {text:?}"))?
        .timestamp_micros())
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn parse(text: &str) -> Result<Option<Row>> {
    let received_ts = now_us();
    let frame: Frame = serde_json::from_str(text)?;
    Ok(match frame {
        Frame::OrderbookDelta { sid, seq, msg } => Some(Row::Delta(DeltaRow {
            exchange_ts: match (&msg.ts, msg.ts_ms) {
                (Some(ts), _) => rfc3339_us(ts)?,
                (None, Some(ms)) => ms * 1000,
                (None, None) => bail!("delta without ts"),
            },
            received_ts,
            price_e6: dollars(&msg.price_dollars)?,
            delta_e2: contracts(&msg.delta_fp)?,
            ticker: msg.market_ticker,
            side: msg.side,
            sid,
            seq,
        })),
        Frame::Trade { sid, seq, msg } => Some(Row::Trade(TradeRow {
            exchange_ts: msg.ts_ms * 1000,
            received_ts,
            yes_price_e6: dollars(&msg.yes_price_dollars)?,
            no_price_e6: dollars(&msg.no_price_dollars)?,
            count_e2: contracts(&msg.count_fp)?,
            ticker: msg.market_ticker,
            trade_id: msg.trade_id,
            taker_side: msg.taker_side,
            taker_outcome_side: msg.taker_outcome_side,
            taker_book_side: msg.taker_book_side,
            is_block_trade: msg.is_block_trade,
            sid,
            seq,
        })),
        Frame::Ticker { sid, seq, msg } => Some(Row::Ticker(TickerRow {
            exchange_ts: match (&msg.time, msg.ts_ms) {
                (Some(t), _) => rfc3339_us(t)?,
                (None, Some(ms)) => ms * 1000,
                (None, None) => bail!("ticker without time"),
            },
            received_ts,
            values: [
                opt(&msg.price_dollars, dollars)?,
                opt(&msg.yes_bid_dollars, dollars)?,
                opt(&msg.yes_ask_dollars, dollars)?,
                opt(&msg.yes_bid_size_fp, contracts)?,
                opt(&msg.yes_ask_size_fp, contracts)?,
                opt(&msg.last_trade_size_fp, contracts)?,
                opt(&msg.volume_fp, contracts)?,
                opt(&msg.open_interest_fp, contracts)?,
                num_or_str(&msg.dollar_volume)?,
                num_or_str(&msg.dollar_open_interest)?,
            ],
            ticker: msg.market_ticker,
            sid,
            seq,
        })),
        Frame::OrderbookSnapshot { sid, seq, msg } => {
            let mut row = SnapshotRow {
                received_ts,
                ticker: msg.market_ticker,
                sid,
                seq,
                yes_price_e6: Vec::new(),
                yes_count_e2: Vec::new(),
                no_price_e6: Vec::new(),
                no_count_e2: Vec::new(),
            };
            for (p, c) in &msg.yes_dollars_fp {
                row.yes_price_e6.push(dollars(p)?);
                row.yes_count_e2.push(contracts(c)?);
            }
            for (p, c) in &msg.no_dollars_fp {
                row.no_price_e6.push(dollars(p)?);
                row.no_count_e2.push(contracts(c)?);
            }
            Some(Row::Snapshot(row))
        }
        Frame::Error { msg } => {
            eprintln!("typical-collector: exchange error: {msg}");
            None
        }
        Frame::Other => None,
    })
}

#[derive(Deserialize)]
struct MarketsPage {
    #[serde(default)]
    markets: Vec<Market>,
    #[serde(default)]
    cursor: String,
}

#[derive(Deserialize)]
struct Market {
    ticker: String,
}

async fn list_markets(rest: &str) -> Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut tickers = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: MarketsPage = http
            .get(format!("{rest}/markets?limit=1000&cursor={cursor}"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        tickers.extend(page.markets.into_iter().map(|m| m.ticker));
        if page.cursor.is_empty() {
            return Ok(tickers);
        }
        cursor = page.cursor;
    }
}

const DELTA_COLS: &str =
    "exchange_ts, received_ts, gatherer_id, ticker, side, price_e6, delta_e2, sid, seq";
const TRADE_COLS: &str = "exchange_ts, received_ts, gatherer_id, ticker, trade_id, yes_price_e6, \
     no_price_e6, count_e2, taker_side, taker_outcome_side, taker_book_side, is_block_trade, \
     source, sid, seq";
const TICKER_COLS: &str = "exchange_ts, received_ts, gatherer_id, ticker, price_e6, yes_bid_e6, \
     yes_ask_e6, yes_bid_size_e2, yes_ask_size_e2, last_trade_size_e2, volume_e2, \
     open_interest_e2, dollar_volume_e6, dollar_open_interest_e6, sid, seq";
const SNAPSHOT_COLS: &str = "snapshot_ts, received_ts, gatherer_id, ticker, source, sid, seq, \
     yes_price_e6, yes_count_e2, no_price_e6, no_count_e2";

fn insert_sql(table: &str, columns: &str, width: usize, rows: usize) -> String {
    let mut sql = format!("INSERT INTO {table} ({columns}) VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..width {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * width + c + 1));
        }
        sql.push(')');
    }
    sql
}

struct Writer {
    client: tokio_postgres::Client,
    gatherer_id: i16,
    statements: HashMap<(&'static str, usize), Statement>,
    deltas: Vec<DeltaRow>,
    trades: Vec<TradeRow>,
    tickers: Vec<TickerRow>,
    snapshots: Vec<SnapshotRow>,
    rows_written: u64,
}

impl Writer {
    fn buffered(&self) -> usize {
        self.deltas.len() + self.trades.len() + self.tickers.len() + self.snapshots.len()
    }

    async fn statement(
        &mut self,
        table: &'static str,
        columns: &str,
        width: usize,
        rows: usize,
    ) -> Result<Statement> {
        if let Some(s) = self.statements.get(&(table, rows)) {
            return Ok(s.clone());
        }
        let s = self
            .client
            .prepare(&insert_sql(table, columns, width, rows))
            .await?;
        self.statements.insert((table, rows), s.clone());
        Ok(s)
    }

    async fn flush(&mut self) -> Result<()> {
        if self.buffered() == 0 {
            return Ok(());
        }
        let deltas = std::mem::take(&mut self.deltas);
        let trades = std::mem::take(&mut self.trades);
        let tickers = std::mem::take(&mut self.tickers);
        let snapshots = std::mem::take(&mut self.snapshots);
        let g = self.gatherer_id;
        let ws = "ws";
        self.client.batch_execute("BEGIN").await?;
        for chunk in deltas.chunks(CHUNK_ROWS) {
            let st = self
                .statement("orderbook_deltas", DELTA_COLS, 9, chunk.len())
                .await?;
            let mut p: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 9);
            for r in chunk {
                p.extend_from_slice(&[
                    &r.exchange_ts,
                    &r.received_ts,
                    &g,
                    &r.ticker,
                    &r.side,
                    &r.price_e6,
                    &r.delta_e2,
                    &r.sid,
                    &r.seq,
                ]);
            }
            self.client.execute(&st, &p).await?;
        }
        for chunk in trades.chunks(CHUNK_ROWS) {
            let st = self
                .statement("trades", TRADE_COLS, 15, chunk.len())
                .await?;
            let mut p: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 15);
            for r in chunk {
                p.extend_from_slice(&[
                    &r.exchange_ts,
                    &r.received_ts,
                    &g,
                    &r.ticker,
                    &r.trade_id,
                    &r.yes_price_e6,
                    &r.no_price_e6,
                    &r.count_e2,
                    &r.taker_side,
                    &r.taker_outcome_side,
                    &r.taker_book_side,
                    &r.is_block_trade,
                    &ws,
                    &r.sid,
                    &r.seq,
                ]);
            }
            self.client.execute(&st, &p).await?;
        }
        for chunk in tickers.chunks(CHUNK_ROWS) {
            let st = self
                .statement("tickers", TICKER_COLS, 16, chunk.len())
                .await?;
            let mut p: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 16);
            for r in chunk {
                p.extend_from_slice(&[&r.exchange_ts, &r.received_ts, &g, &r.ticker]);
                for v in &r.values {
                    p.push(v);
                }
                p.extend_from_slice(&[&r.sid, &r.seq]);
            }
            self.client.execute(&st, &p).await?;
        }
        for chunk in snapshots.chunks(CHUNK_ROWS) {
            let st = self
                .statement("orderbook_snapshots", SNAPSHOT_COLS, 11, chunk.len())
                .await?;
            let mut p: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(chunk.len() * 11);
            for r in chunk {
                p.extend_from_slice(&[
                    &r.received_ts,
                    &r.received_ts,
                    &g,
                    &r.ticker,
                    &ws,
                    &r.sid,
                    &r.seq,
                    &r.yes_price_e6,
                    &r.yes_count_e2,
                    &r.no_price_e6,
                    &r.no_count_e2,
                ]);
            }
            self.client.execute(&st, &p).await?;
        }
        self.client.batch_execute("COMMIT").await?;
        self.rows_written += (deltas.len() + trades.len() + tickers.len() + snapshots.len()) as u64;
        Ok(())
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Row>) -> Result<u64> {
        let mut oldest: Option<Instant> = None;
        loop {
            let deadline = oldest.map(|t| t + BATCH_AGE);
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d.into(), rx.recv()).await {
                    Ok(r) => r,
                    Err(_) => {
                        self.flush().await?;
                        oldest = None;
                        continue;
                    }
                },
                None => rx.recv().await,
            };
            let Some(row) = next else {
                self.flush().await?;
                return Ok(self.rows_written);
            };
            match row {
                Row::Delta(r) => self.deltas.push(r),
                Row::Trade(r) => self.trades.push(r),
                Row::Ticker(r) => self.tickers.push(r),
                Row::Snapshot(r) => self.snapshots.push(r),
            }
            oldest.get_or_insert_with(Instant::now);
            if self.buffered() >= BATCH_ROWS {
                self.flush().await?;
                oldest = None;
            }
        }
    }
}

struct Args {
    ws: String,
    rest: String,
    db: String,
    gatherer_id: i16,
}

fn args() -> Result<Args> {
    let mut a = Args {
        ws: String::new(),
        rest: String::new(),
        db: String::new(),
        gatherer_id: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(key) = it.next() {
        let value = it.next().with_context(|| format!("{key} needs a value"))?;
        match key.as_str() {
            "--ws" => a.ws = value,
            "--rest" => a.rest = value,
            "--db" => a.db = value,
            "--gatherer-id" => a.gatherer_id = value.parse().context("--gatherer-id")?,
            _ => bail!("unknown argument {key}"),
        }
    }
    if a.ws.is_empty() || a.rest.is_empty() || a.db.is_empty() {
        bail!("usage: typical-collector --ws URL --rest URL --db URL [--gatherer-id N]");
    }
    Ok(a)
}

/// One connection: subscribes `tickers`, parses every frame into rows for the writer until
/// the exchange closes. Returns (messages, bad frames).
async fn read(url: String, tickers: Vec<String>, tx: mpsc::Sender<Row>) -> Result<(u64, u64)> {
    let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let (mut sink, mut stream) = ws.split();
    let subscribe = serde_json::json!({"id": 1, "cmd": "subscribe", "params": {
        "channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers}});
    sink.send(Message::Text(subscribe.to_string().into()))
        .await?;
    let (mut messages, mut bad) = (0_u64, 0_u64);
    while let Some(message) = stream.next().await {
        let text = match message {
            Ok(Message::Text(t)) => t,
            Ok(Message::Ping(p)) => {
                sink.send(Message::Pong(p)).await?;
                continue;
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => continue,
            Err(e) => {
                eprintln!("typical-collector: connection: {e}");
                break;
            }
        };
        messages += 1;
        match parse(text.as_str()) {
            Ok(Some(row)) => {
                if tx.send(row).await.is_err() {
                    bail!("writer stopped");
                }
            }
            Ok(None) => {}
            Err(e) => {
                bad += 1;
                if bad <= 10 {
                    eprintln!("typical-collector: bad frame ({e:#})");
                }
            }
        }
    }
    Ok((messages, bad))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    let tickers = list_markets(&args.rest).await?;
    eprintln!("typical-collector: {} markets", tickers.len());

    let (client, connection) = tokio_postgres::connect(&args.db, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("typical-collector: database connection: {e}");
        }
    });
    let writer = Writer {
        client,
        gatherer_id: args.gatherer_id,
        statements: HashMap::new(),
        deltas: Vec::new(),
        trades: Vec::new(),
        tickers: Vec::new(),
        snapshots: Vec::new(),
        rows_written: 0,
    };
    let (tx, rx) = mpsc::channel(CHANNEL_ROWS);
    let writer = tokio::spawn(writer.run(rx));

    // The exchange refuses WebSocket messages over 1 MiB and merges repeat subscribes
    // slowly: one connection per SUBSCRIBE_CHUNK markets, one subscribe command each.
    let mut readers = Vec::new();
    for chunk in tickers.chunks(SUBSCRIBE_CHUNK) {
        readers.push(tokio::spawn(read(
            args.ws.clone(),
            chunk.to_vec(),
            tx.clone(),
        )));
    }
    let (mut messages, mut bad) = (0_u64, 0_u64);
    for reader in readers {
        let (m, b) = reader.await??;
        messages += m;
        bad += b;
    }
    drop(tx);
    let rows = writer.await??;
    eprintln!("typical-collector: drained: {messages} messages, {rows} rows, {bad} bad frames");
    tokio::signal::ctrl_c().await.ok();
    Ok(())
}
