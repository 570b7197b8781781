//! The simulator under the benchmark: `kalshi-sim` in load mode as a child process, its control
//! endpoint, and the generator's summary (the truth the zero-loss check compares against).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One market's truth at the end of a run.
#[derive(Debug, Clone)]
pub(crate) struct MarketTruth {
    /// Deltas applied (trade fills included).
    pub(crate) deltas: u64,
    /// Trades printed.
    pub(crate) trades: u64,
    /// Ticker updates emitted.
    pub(crate) tickers: u64,
    /// Final YES levels `(price_e6, count_e2)`, ascending.
    pub(crate) yes: Vec<(i64, i64)>,
    /// Final NO levels (NO-leg prices), ascending.
    pub(crate) no: Vec<(i64, i64)>,
}

/// The load generator's summary, read from the final-books file.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Events generated.
    pub(crate) events: u64,
    /// Deltas, trades and tickers generated.
    pub(crate) deltas: u64,
    pub(crate) trades: u64,
    pub(crate) tickers: u64,
    /// Per market, by ticker.
    pub(crate) markets: HashMap<String, MarketTruth>,
    /// The generator stopped between a trade's fill delta and the trade print: the trade is
    /// counted in `trades` (and in its market's count) but was never sent.
    /// (`deltas + trades + tickers` is then `events + 1`.)
    pub(crate) pending_trade: bool,
}

fn levels(value: &Value) -> Vec<(i64, i64)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair.get(0)?.as_i64()?, pair.get(1)?.as_i64()?)))
        .collect()
}

impl Summary {
    /// Parses the final-books file of a load-mode run.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines();
        let head: Value = serde_json::from_str(lines.next().context("empty final-books file")?)
            .context("final-books header")?;
        let number = |v: &Value, key: &str| -> Result<u64> {
            v[key]
                .as_u64()
                .with_context(|| format!("final-books: {key} missing"))
        };
        let mut summary = Summary {
            events: number(&head, "events")?,
            deltas: number(&head, "deltas")?,
            trades: number(&head, "trades")?,
            tickers: number(&head, "tickers")?,
            markets: HashMap::new(),
            pending_trade: false,
        };
        summary.pending_trade =
            summary.deltas + summary.trades + summary.tickers == summary.events + 1;
        for line in lines {
            let m: Value = serde_json::from_str(line).context("final-books market line")?;
            let ticker = m["ticker"]
                .as_str()
                .context("final-books: ticker missing")?
                .to_owned();
            summary.markets.insert(
                ticker,
                MarketTruth {
                    deltas: number(&m, "market_seq")?,
                    trades: number(&m, "trades")?,
                    tickers: number(&m, "tickers")?,
                    yes: levels(&m["yes"]),
                    no: levels(&m["no"]),
                },
            );
        }
        Ok(summary)
    }
}

/// A running `kalshi-sim` in load mode.
pub(crate) struct Sim {
    child: Child,
    /// The load generator's configuration (to regenerate its stream).
    pub(crate) load: kalshi_sim_core::load::LoadConfig,
    /// WebSocket URL.
    pub(crate) ws_url: String,
    /// REST base URL.
    pub(crate) rest_url: String,
    control: String,
}

impl Sim {
    /// Starts `bin` in load mode at `rate` events/s over `markets` markets, auth off, no
    /// session or REST limits, files in `dir`.
    pub(crate) fn start(
        bin: &Path,
        dir: &Path,
        rate: u64,
        markets: usize,
        key: Option<&crate::collector::Key>,
    ) -> Result<Sim> {
        let books = dir.join("final-books.jsonl");
        let start_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64 * 1_000_000);
        let auth = match key {
            None => "[auth]\nenabled = false\n".to_owned(),
            Some(key) => format!(
                "[auth]\nenabled = true\n[auth.keys]\n{:?} = {:?}\n",
                key.id,
                key.public.display().to_string()
            ),
        };
        let config = dir.join("sim.toml");
        std::fs::write(
            &config,
            format!(
                "seed = 1\nstart_time_us = {start_us}\nfinal_books = {books:?}\n\
                 [server]\nlisten = \"127.0.0.1:0\"\ncontrol = \"127.0.0.1:0\"\n\
                 missed_pongs_max = 0\nprint_ready = true\n\
                 {auth}\
                 [rest]\nrate_per_sec = 0\n\
                 [session]\nmarket_limit = 1000000\ncommands_per_second = 0\n\
                 [load]\nrate = {rate}\nmarkets = {markets}\n",
                books = books.display().to_string()
            ),
        )?;
        let log = std::fs::File::create(dir.join("sim.log"))?;
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading the simulator's ready line")?;
        let ready: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.join("sim.log")).unwrap_or_default();
                bail!("the simulator did not start: {line:?} {log}");
            }
        };
        let text = |key: &str| ready[key].as_str().unwrap_or_default().to_owned();
        Ok(Sim {
            child,
            load: kalshi_sim_core::load::LoadConfig {
                seed: 1,
                markets,
                rate_per_sec: rate,
                start_us,
                ..kalshi_sim_core::load::LoadConfig::default()
            },
            ws_url: text("ws_url"),
            rest_url: text("rest_url"),
            control: text("control"),
        })
    }

    /// `GET /stats` of the control endpoint.
    pub(crate) fn stats(&self) -> Result<Value> {
        let body = ureq::get(&format!("http://{}/stats", self.control))
            .call()?
            .body_mut()
            .read_to_string()?;
        Ok(serde_json::from_str(&body)?)
    }

    /// `POST /close?conn=all`: every connection gets a close frame (the snapshot storm).
    pub(crate) fn close_all(&self) -> Result<()> {
        ureq::post(&format!("http://{}/close?conn=all", self.control))
            .send_empty()
            .context("POST /close")?;
        Ok(())
    }

    /// Waits until load pacing has started (a client subscribed); returns the events
    /// generated at that moment.
    pub(crate) fn wait_pacing(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            // The exchange thread may be too busy with a large subscribe to answer (503).
            if let Ok(stats) = self.stats()
                && stats["load"]["pacing"].as_bool() == Some(true)
            {
                return Ok(stats["load"]["events"].as_u64().unwrap_or(0));
            }
            if Instant::now() > deadline || crate::stopped() {
                bail!("no client subscribed within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ends generation without closing anything: the probe connection (`brake`, see
    /// `latency::Meter`) is stalled for good (`POST /stall`), so its queue fills and the
    /// simulator's backpressure stops the generator within about 128 of its turns, while the
    /// collector's connections stay open and drain at the collector's pace. Once the event
    /// count has not moved for 300 ms, `POST /dump-books` returns the generator's summary.
    /// Returns the summary and when generation was first seen stopped. (Closing the
    /// connections instead — `POST /pause`, or stopping the process — would cut off whatever a
    /// backed-up client had not read within the simulator's 2 s close deadline.)
    pub(crate) fn end_generation(&self, brake: std::net::SocketAddr) -> Result<(Summary, Instant)> {
        // `POST /halt` stops load generation for good (kalshi-sim answers from the generating
        // thread, so nothing is generated after the answer); the stalled brake below is kept
        // for simulators without it. Without the halt, a generator starved of CPU for over
        // 300 ms looked stopped and resumed after the summary was taken.
        ureq::post(&format!("http://{}/halt", self.control))
            .send_empty()
            .context("POST /halt")?;
        ureq::post(&format!(
            "http://{}/stall?peer={brake}&ms=86400000",
            self.control
        ))
        .send_empty()
        .context("POST /stall")?;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = (u64::MAX, Instant::now());
        loop {
            if let Ok(stats) = self.stats() {
                let events = stats["load"]["events"].as_u64().unwrap_or(0);
                if events != last.0 {
                    last = (events, Instant::now());
                } else if last.1.elapsed() >= Duration::from_millis(300) {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("the generator did not stop within 120 s of stalling the brake");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut response = ureq::post(&format!("http://{}/dump-books", self.control))
            .send_empty()
            .context("POST /dump-books")?;
        let body = response
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_string()?;
        Ok((Summary::parse(&body)?, last.1))
    }

    /// Stops the process (SIGINT), waiting up to 30 s.
    pub(crate) fn stop(mut self) -> Result<()> {
        signal(self.child.id(), "INT");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!("the simulator did not stop within 30 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends a signal with kill(1) (the benchmark has no libc binding of its own).
pub(crate) fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    // The summary of a real generator, through the simulator's own writer: counts, books, and
    // the pending-trade flag exactly when a trade's print has not been emitted yet.
    #[test]
    fn parses_the_generators_summary() {
        let config = kalshi_sim_core::load::LoadConfig {
            markets: 3,
            ..kalshi_sim_core::load::LoadConfig::default()
        };
        let mut load = kalshi_sim_core::load::LoadGen::new(config).unwrap();
        let mut saw_pending = false;
        for _ in 0..2_000 {
            let event = load.next_event();
            let mut text = Vec::new();
            load.write_summary(&mut text);
            let summary = Summary::parse(std::str::from_utf8(&text).unwrap()).unwrap();
            let truth = load.summary();
            assert_eq!(summary.events, truth.events);
            assert_eq!(summary.deltas, truth.deltas);
            assert_eq!(summary.markets.len(), 3);
            // The fill delta of a trade is emitted first; its print is still pending.
            let is_fill = matches!(
                event.kind,
                kalshi_sim_core::load::LoadEventKind::Delta { delta_e2, .. } if delta_e2 < 0
            );
            if summary.pending_trade {
                assert!(is_fill, "pending trade after a non-fill event {event:?}");
                saw_pending = true;
            }
            let m = &truth.markets[0];
            let parsed = &summary.markets[&m.ticker];
            assert_eq!(parsed.deltas, m.market_seq);
            assert_eq!(parsed.trades, m.trades);
            let yes: Vec<(i64, i64)> = m.yes.iter().map(|l| (l.price_e6, l.count_e2)).collect();
            assert_eq!(parsed.yes, yes);
        }
        assert!(saw_pending);
    }

    #[test]
    fn rejects_a_truncated_summary() {
        assert!(Summary::parse("").is_err());
        assert!(Summary::parse("{\"events\":1}\n").is_err());
    }
}
