//! Tick-to-durable latency, measured from outside the collector.
//!
//! * **Send time.** In load mode event `i` carries the virtual exchange time
//!   `start + i / rate`, and the simulator's pacer sends it at `pacing start + i / rate` (later
//!   if the client holds it back). A probe connection (this module, a plain tungstenite client)
//!   subscribes `orderbook_delta` of one market once the collector is subscribed and records
//!   `receive wall time − ts` for every delta: the minimum is the offset between exchange time
//!   and wall time (loopback delivery to an idle client adds a few µs). The send time of any
//!   event is then `ts + offset`. Events the simulator held back behind a slow client count
//!   from their scheduled time, not from when they were finally sent.
//! * **Durable time.** A poller on its own connection reads, every `POLL` ms, the newest
//!   `exchange_ts` committed to `orderbook_deltas`, scanning only the heap pages added since
//!   its last look (a TID range scan on today's partition), so the poll costs the same at any
//!   table size. Every delta with `ts` in `(previous max, new max]` became durable between the
//!   two polls; it is recorded with the later poll's time, so each latency is an **upper
//!   bound**, high by at most one poll interval plus the poll query.
//! * **The split.** The same polls also read the newest `received_ts` committed (the
//!   collector's receive stamp; the gatherer takes it when it decodes the frame, before the row
//!   enters the writer's ring), giving **receive → commit** (ring → commit for the gatherer) by
//!   the same even spread, also an upper bound. **Frame → receive** (frame → ring) is read from
//!   the stored rows themselves after the run: `received_ts − (ts + offset)` over every delta.
//! * Only deltas are timed (85 % of the events); trades and tickers commit in the same
//!   transactions in all the collectors measured here.

use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::Value;
use tungstenite::Message;

/// (poll wall time µs, newest committed `exchange_ts`, newest committed `received_ts`).
type Samples = Vec<(i64, i64, i64)>;

/// Poll interval of the durability poller.
pub(crate) const POLL: Duration = Duration::from_millis(2);

/// What [`Meter::finish`] measured.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Measured {
    /// Tick to durable.
    pub(crate) total: Percentiles,
    /// Receive stamp to durable.
    pub(crate) receive_to_commit: Percentiles,
    /// Exchange time to wall time offset (µs).
    pub(crate) offset: i64,
}

fn wall_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Percentiles of one run, in µs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Percentiles {
    pub(crate) p50: u64,
    pub(crate) p99: u64,
    pub(crate) p999: u64,
    pub(crate) max: u64,
    pub(crate) samples: u64,
}

/// The running probe and poller.
pub(crate) struct Meter {
    stop: Arc<AtomicBool>,
    probe: JoinHandle<Result<Option<i64>>>,
    poller: Option<JoinHandle<Result<Samples>>>,
    first_ts: Arc<std::sync::Mutex<Option<i64>>>,
    /// The probe connection's local address (the simulator's `peer=` for control requests).
    pub(crate) peer: std::net::SocketAddr,
}

impl Meter {
    /// Starts the probe (on `ws_url`, subscribed to the deltas of `tickers`) and, with
    /// `db_url`, the durability poller. The probe is also the run's brake: see
    /// `Sim::end_generation`.
    pub(crate) fn start(
        ws_url: &str,
        tickers: &[String],
        db_url: Option<&str>,
        key: Option<&crate::collector::Key>,
    ) -> Result<Meter> {
        let headers = match key {
            None => Vec::new(),
            Some(key) => {
                let signer = kalshi_auth::SigningKey::from_pem_file(&key.private)?;
                let now_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let path = ws_url
                    .trim_start_matches("ws://")
                    .find('/')
                    .map_or("/", |i| &ws_url.trim_start_matches("ws://")[i..])
                    .to_owned();
                signer.headers(&key.id, now_ms, "GET", &path)?.to_vec()
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let first_ts = Arc::new(std::sync::Mutex::new(None));
        let addr = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let stream =
            TcpStream::connect(&addr).with_context(|| format!("probe: connecting {addr}"))?;
        let peer = stream.local_addr()?;
        let probe = {
            let stop = Arc::clone(&stop);
            let url = ws_url.to_owned();
            let tickers = tickers.to_vec();
            std::thread::spawn(move || probe(stream, &url, &tickers, &headers, &stop))
        };
        let poller = match db_url {
            Some(db_url) => {
                let stop = Arc::clone(&stop);
                let first = Arc::clone(&first_ts);
                let mut db = postgres::Client::connect(db_url, postgres::NoTls)?;
                Some(std::thread::spawn(move || poll(&mut db, &stop, &first)))
            }
            None => None,
        };
        Ok(Meter {
            stop,
            probe,
            poller,
            first_ts,
            peer,
        })
    }

    /// Stops both threads and computes the distribution (deltas are `delta_share` of the
    /// `rate` events per second). `fallback_offset` (from the stored rows) is used when the
    /// probe saw no delta.
    pub(crate) fn finish(
        self,
        rate: u64,
        delta_share: f64,
        fallback_offset: Option<i64>,
    ) -> Result<(Measured, &'static str)> {
        self.stop.store(true, Ordering::SeqCst);
        let offset = self
            .probe
            .join()
            .map_err(|_| anyhow::anyhow!("latency probe panicked"))??;
        let Some(poller) = self.poller else {
            return Ok((Measured::default(), "none"));
        };
        let samples = poller
            .join()
            .map_err(|_| anyhow::anyhow!("latency poller panicked"))??;
        let (offset, source) = match (offset, fallback_offset) {
            (Some(o), _) => (o, "probe"),
            (None, Some(o)) => (o, "stored received_ts"),
            (None, None) => return Ok((Measured::default(), "none")),
        };
        let first = self
            .first_ts
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?
            .unwrap_or(0);
        let per_us = rate as f64 * delta_share / 1e6;
        let total = spread(
            samples.iter().map(|&(at, ts, _)| (at, ts)),
            first.saturating_sub(1),
            offset,
            per_us,
        )?;
        // Receive stamps start at the first row's (≈ first ts + offset).
        let receive_to_commit = spread(
            samples.iter().map(|&(at, _, recv)| (at, recv)),
            (first + offset).saturating_sub(1),
            0,
            per_us,
        )?;
        Ok((
            Measured {
                total,
                receive_to_commit,
                offset,
            },
            source,
        ))
    }
}

/// The distribution of `polled_at − (t + offset)` over events spread evenly in time between
/// successive newest committed values `t`, at `per_us` events per µs.
fn spread(
    samples: impl Iterator<Item = (i64, i64)>,
    mut prev: i64,
    offset: i64,
    per_us: f64,
) -> Result<Percentiles> {
    let mut hist = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    for (polled_at, max_ts) in samples {
        if max_ts <= prev {
            continue;
        }
        // Events spread evenly over (prev, max_ts]: record them in up to 64 slices.
        let span = (max_ts - prev) as f64;
        let slices = 64.min((max_ts - prev) as usize).max(1);
        let events = (span * per_us).max(1.0);
        for k in 1..=slices {
            let ts = prev as f64 + span * k as f64 / slices as f64;
            let latency = (polled_at as f64 - (ts + offset as f64)).max(1.0) as u64;
            let n = (events / slices as f64).round().max(1.0) as u64;
            hist.saturating_record_n(latency, n);
        }
        prev = max_ts;
    }
    Ok(Percentiles::of(&hist))
}

impl Percentiles {
    fn of(hist: &Histogram<u64>) -> Percentiles {
        Percentiles {
            p50: hist.value_at_quantile(0.5),
            p99: hist.value_at_quantile(0.99),
            p999: hist.value_at_quantile(0.999),
            max: hist.max(),
            samples: hist.len(),
        }
    }

    /// Frame → receive from the stored deltas: `received_ts − (exchange_ts + offset)` over
    /// every row of `orderbook_deltas` (exact percentiles, no histogram).
    pub(crate) fn frame_to_receive(db: &mut postgres::Client, offset: i64) -> Result<Percentiles> {
        let row = db.query_one(
            "SELECT percentile_disc(ARRAY[0.5, 0.99, 0.999]::float8[]) \
                 WITHIN GROUP (ORDER BY received_ts - exchange_ts), \
             max(received_ts - exchange_ts), count(*) FROM orderbook_deltas",
            &[],
        )?;
        let q: Option<Vec<i64>> = row.get(0);
        let q = q.unwrap_or_default();
        let at = |i: usize| q.get(i).map_or(0, |v| (v - offset).max(0) as u64);
        let max: Option<i64> = row.get(1);
        let n: i64 = row.get(2);
        Ok(Percentiles {
            p50: at(0),
            p99: at(1),
            p999: at(2),
            max: max.map_or(0, |m| (m - offset).max(0) as u64),
            samples: n as u64,
        })
    }
}

fn probe(
    stream: TcpStream,
    url: &str,
    tickers: &[String],
    headers: &[(&'static str, String)],
    stop: &AtomicBool,
) -> Result<Option<i64>> {
    stream.set_nodelay(true)?;
    // A loaded machine may take a while to answer the handshake; the short timeout (for the
    // stop checks) applies only after it.
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = tungstenite::client::IntoClientRequest::into_client_request(url)?;
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse()?);
    }
    let (mut ws, _) = tungstenite::client(request, stream).context("probe: handshake")?;
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_millis(100)))?;
    let subscribe = serde_json::json!({"id": 1, "cmd": "subscribe", "params": {
        "channels": ["orderbook_delta"], "market_tickers": tickers}});
    ws.send(Message::Text(subscribe.to_string().into()))?;
    let mut best: Option<i64> = None;
    while !stop.load(Ordering::SeqCst) {
        match ws.read() {
            Ok(Message::Text(text)) => {
                let now = wall_us();
                let v: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                if v["type"] == "orderbook_delta"
                    && let Some(ts) = v["msg"]["ts"].as_str()
                    && let Ok(ts) = kalshi_wire::fixed::parse_rfc3339_us(ts.as_bytes())
                {
                    let offset = now - ts;
                    best = Some(best.map_or(offset, |b| b.min(offset)));
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            // The simulator closing at the end of the run.
            Err(_) => break,
        }
    }
    Ok(best)
}

fn poll(
    db: &mut postgres::Client,
    stop: &AtomicBool,
    first: &std::sync::Mutex<Option<i64>>,
) -> Result<Samples> {
    let mut samples = Vec::with_capacity(16_384);
    // Today's partition (where the rows land) once the first row is visible.
    let partition = loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(samples);
        }
        if let Some(row) = db.query_opt(
            "SELECT tableoid::regclass::text, exchange_ts FROM orderbook_deltas LIMIT 1",
            &[],
        )? {
            if let Ok(mut f) = first.lock() {
                *f = Some(row.get(1));
            }
            break row.get::<_, String>(0);
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let query = db.prepare(&format!(
        "SELECT max(exchange_ts), max((ctid::text::point)[0])::bigint, max(received_ts) \
         FROM ONLY {partition} \
         WHERE ctid >= format('(%s,0)', $1::bigint)::tid"
    ))?;
    let mut block: i64 = 0;
    let mut newest = i64::MIN;
    while !stop.load(Ordering::SeqCst) {
        let row = db.query_one(&query, &[&block])?;
        let now = wall_us();
        if let (Some(max_ts), Some(max_block), Some(max_recv)) = (
            row.get::<_, Option<i64>>(0),
            row.get(1),
            row.get::<_, Option<i64>>(2),
        ) {
            block = max_block;
            if max_ts > newest {
                newest = max_ts;
                samples.push((now, max_ts, max_recv));
            }
        }
        std::thread::sleep(POLL);
    }
    Ok(samples)
}
