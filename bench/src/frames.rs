//! Synthetic but realistic Kalshi WebSocket frames, generated deterministically.
//!
//! Every frame follows the field order and value shapes of the recorded fixtures in
//! `tests/data/kalshi/ws_samples.jsonl`; tickers, ids, prices, sizes, sequence numbers and
//! timestamps vary from frame to frame so that a benchmark does not replay one hot frame.

use std::fmt::Write as _;

use kalshi_wire::fixed::write_rfc3339_us;

/// A small deterministic PRNG (SplitMix64); the benchmark needs no statistical quality, only
/// reproducible variety without a dependency.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A market the generator quotes: its ticker and UUID.
#[derive(Clone, Debug)]
struct Market {
    ticker: String,
    id: String,
}

const SERIES: [&str; 14] = [
    "KXBTCD",
    "KXETHD",
    "KXSOLD",
    "KXBTC15M",
    "KXHIGHNY",
    "KXHIGHCHI",
    "KXMLBGAME",
    "KXNBAGAME",
    "KXWTACHALLENGERMATCH",
    "KXGOLDH",
    "KXCRYPTOLEAD15M",
    "KXINXU",
    "FED",
    "KXBTCMINMON-BTC",
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

fn uuid(rng: &mut Rng) -> String {
    let a = rng.next_u64();
    let b = rng.next_u64();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn market(rng: &mut Rng) -> Market {
    let series = SERIES[rng.below(SERIES.len() as u64) as usize];
    let month = MONTHS[rng.below(12) as usize];
    let day = 1 + rng.below(28);
    let hour = rng.below(24);
    let ticker = match rng.below(3) {
        0 => format!(
            "{series}-26{month}{day:02}{hour:02}-T{}.99",
            1000 + rng.below(120_000)
        ),
        1 => format!("{series}-26{month}{day:02}-B{}.5", 20 + rng.below(80)),
        _ => {
            let teams = ["DETCLE", "SDSF", "NYYBOS", "LALBOS", "JIMLEP", "LYSGAU"];
            let team = teams[rng.below(teams.len() as u64) as usize];
            format!("{series}-26{month}{day:02}{team}-{}", &team[..3])
        }
    };
    Market {
        ticker,
        id: uuid(rng),
    }
}

/// Formats `micros` since the epoch as RFC 3339 with `digits` fraction digits (6 or 9; 9 pads
/// with pseudo-nanoseconds as the 2025 frames did).
fn rfc3339(out: &mut String, micros: i64, nanos_extra: Option<u64>) {
    let mut bytes = Vec::with_capacity(32);
    write_rfc3339_us(&mut bytes, micros);
    let text = String::from_utf8(bytes).unwrap_or_default();
    match nanos_extra {
        Some(extra) => {
            let trimmed = text.trim_end_matches('Z');
            let _ = write!(out, "{trimmed}{extra:03}Z");
        }
        None => out.push_str(&text),
    }
}

/// A price in dollars with 4 decimals, from ticks of 1/10000 dollar.
fn dollars(out: &mut String, ticks: u64) {
    let _ = write!(out, "\"{}.{:04}\"", ticks / 10_000, ticks % 10_000);
}

/// A count with 2 decimals, from hundredths.
fn count_fp(out: &mut String, hundredths: i64) {
    let sign = if hundredths < 0 { "-" } else { "" };
    let magnitude = hundredths.unsigned_abs();
    let _ = write!(out, "\"{sign}{}.{:02}\"", magnitude / 100, magnitude % 100);
}

/// A plausible price in ticks of 1/10000 dollar: mostly whole cents, some sub-penny.
fn price_ticks(rng: &mut Rng) -> u64 {
    let cents = 1 + rng.below(99);
    if rng.chance(15) {
        cents * 100 + rng.below(10) * 10
    } else {
        cents * 100
    }
}

/// A plausible size in hundredths: mostly whole contracts, a long tail, some fractional.
fn size_e2(rng: &mut Rng) -> i64 {
    let whole = match rng.below(10) {
        0..=5 => 1 + rng.below(20),
        6..=8 => 1 + rng.below(2_000),
        _ => 1 + rng.below(200_000),
    } as i64;
    if rng.chance(10) {
        whole * 100 + rng.below(100) as i64
    } else {
        whole * 100
    }
}

fn side(rng: &mut Rng) -> &'static str {
    if rng.chance(50) { "yes" } else { "no" }
}

/// The kinds of frame the generator produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Current-format `orderbook_delta` (`price_dollars`, `delta_fp`, `ts`, `ts_ms`).
    Delta,
    /// Legacy (2025) `orderbook_delta`: integer cents and counts, nanosecond `ts`.
    LegacyDelta,
    /// Current-format `trade` (`*_dollars`, `count_fp`, `taker_outcome_side`, ...).
    Trade,
    /// Current-format `ticker`.
    Ticker,
    /// `orderbook_snapshot` with `levels` levels per side, `*_dollars_fp` form.
    Snapshot {
        /// Levels per side.
        levels: usize,
    },
    /// A control frame: `ok` with a ticker list, `subscribed`, or `error`.
    Control,
    /// A `market_lifecycle_v2` frame (`determined`, `activated`, `close_date_updated`).
    Lifecycle,
}

/// Generates frames of one or more kinds from a shared market universe and clock.
#[derive(Debug)]
pub struct Generator {
    rng: Rng,
    markets: Vec<Market>,
    seq: u64,
    clock_us: i64,
}

impl Generator {
    /// A generator over `markets` distinct markets.
    #[must_use]
    pub fn new(seed: u64, markets: usize) -> Self {
        let mut rng = Rng::new(seed);
        let markets = (0..markets).map(|_| market(&mut rng)).collect();
        Self {
            rng,
            markets,
            seq: 1000,
            // 2026-06-11T06:29:47.354803Z
            clock_us: 1_781_159_387_354_803,
        }
    }

    fn tick(&mut self) -> (u64, i64) {
        self.seq += 1 + self.rng.below(3);
        self.clock_us += 1 + self.rng.below(5_000) as i64;
        (self.seq, self.clock_us)
    }

    fn pick(&mut self) -> Market {
        let index = self.rng.below(self.markets.len() as u64) as usize;
        self.markets[index].clone()
    }

    /// One frame of `kind`.
    pub fn frame(&mut self, kind: Kind) -> Vec<u8> {
        let mut out = String::with_capacity(512);
        match kind {
            Kind::Delta => self.delta(&mut out),
            Kind::LegacyDelta => self.legacy_delta(&mut out),
            Kind::Trade => self.trade(&mut out),
            Kind::Ticker => self.ticker(&mut out),
            Kind::Snapshot { levels } => self.snapshot(&mut out, levels),
            Kind::Control => self.control(&mut out),
            Kind::Lifecycle => self.lifecycle(&mut out),
        }
        out.into_bytes()
    }

    /// `n` frames of `kind`.
    pub fn frames(&mut self, kind: Kind, n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|_| self.frame(kind)).collect()
    }

    fn delta(&mut self, out: &mut String) {
        let market = self.pick();
        let (seq, us) = self.tick();
        let sid = 1 + self.rng.below(4);
        let _ = write!(
            out,
            r#"{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{}","market_id":"{}","price_dollars":"#,
            market.ticker, market.id
        );
        dollars(out, price_ticks(&mut self.rng));
        out.push_str(r#","delta_fp":"#);
        let size = size_e2(&mut self.rng);
        count_fp(out, if self.rng.chance(45) { -size } else { size });
        let _ = write!(out, r#","side":"{}","ts":""#, side(&mut self.rng));
        rfc3339(out, us, None);
        let _ = write!(out, r#"","ts_ms":{}}}}}"#, us.div_euclid(1000));
    }

    fn legacy_delta(&mut self, out: &mut String) {
        let market = self.pick();
        let (seq, us) = self.tick();
        // The 2025 era: a year earlier.
        let us = us - 300 * 86_400 * 1_000_000;
        let sid = 1 + self.rng.below(4);
        let price = 1 + self.rng.below(99);
        let delta = (1 + self.rng.below(500)) as i64;
        let delta = if self.rng.chance(45) { -delta } else { delta };
        let _ = write!(
            out,
            r#"{{"type":"orderbook_delta","sid":{sid},"seq":{seq},"msg":{{"market_ticker":"{}","market_id":"{}","price":{price},"delta":{delta},"side":"{}","ts":""#,
            market.ticker,
            market.id,
            side(&mut self.rng)
        );
        let nanos = self.rng.below(1000);
        rfc3339(out, us, Some(nanos));
        out.push_str("\"}}");
    }

    fn trade(&mut self, out: &mut String) {
        let market = self.pick();
        let (seq, us) = self.tick();
        let trade_id = uuid(&mut self.rng);
        let yes = price_ticks(&mut self.rng);
        let no = 10_000 - yes;
        let _ = write!(
            out,
            r#"{{"type":"trade","sid":5,"seq":{seq},"msg":{{"trade_id":"{trade_id}","market_ticker":"{}","yes_price_dollars":"#,
            market.ticker
        );
        dollars(out, yes);
        out.push_str(r#","no_price_dollars":"#);
        dollars(out, no);
        out.push_str(r#","count_fp":"#);
        count_fp(out, size_e2(&mut self.rng));
        let taker = side(&mut self.rng);
        let book = if taker == "yes" { "bid" } else { "ask" };
        let block = self.rng.chance(2);
        let ms = us.div_euclid(1000);
        let _ = write!(
            out,
            r#","taker_side":"{taker}","taker_outcome_side":"{taker}","taker_book_side":"{book}","is_block_trade":{block},"ts":{},"ts_ms":{ms}}}}}"#,
            ms / 1000
        );
    }

    fn ticker(&mut self, out: &mut String) {
        let market = self.pick();
        let (_, us) = self.tick();
        let sid = 11;
        let bid = price_ticks(&mut self.rng).min(9_800);
        let ask = (bid + 100 * (1 + self.rng.below(5))).min(10_000);
        let last = bid + (ask - bid) / 2;
        let volume = size_e2(&mut self.rng) * 37;
        let open_interest = volume / 2;
        let _ = write!(
            out,
            r#"{{"type":"ticker","sid":{sid},"msg":{{"market_id":"{}","market_ticker":"{}","price_dollars":"#,
            market.id, market.ticker
        );
        dollars(out, last);
        out.push_str(r#","yes_bid_dollars":"#);
        dollars(out, bid);
        out.push_str(r#","yes_ask_dollars":"#);
        dollars(out, ask);
        out.push_str(r#","volume_fp":"#);
        count_fp(out, volume);
        out.push_str(r#","open_interest_fp":"#);
        count_fp(out, open_interest);
        let _ = write!(
            out,
            r#","dollar_volume":{},"dollar_open_interest":{},"yes_bid_size_fp":"#,
            volume / 200,
            open_interest / 200
        );
        count_fp(out, size_e2(&mut self.rng));
        out.push_str(r#","yes_ask_size_fp":"#);
        count_fp(out, size_e2(&mut self.rng));
        out.push_str(r#","last_trade_size_fp":"#);
        count_fp(out, size_e2(&mut self.rng));
        let ms = us.div_euclid(1000);
        let _ = write!(out, r#","ts":{},"ts_ms":{ms},"time":""#, ms / 1000);
        rfc3339(out, us, None);
        out.push_str("\"}}");
    }

    fn snapshot(&mut self, out: &mut String, levels: usize) {
        let market = self.pick();
        let (seq, _) = self.tick();
        let _ = write!(
            out,
            r#"{{"type":"orderbook_snapshot","sid":2,"seq":{seq},"msg":{{"market_ticker":"{}","market_id":"{}""#,
            market.ticker, market.id
        );
        for name in ["yes_dollars_fp", "no_dollars_fp"] {
            let _ = write!(out, r#","{name}":["#);
            // Ascending distinct prices; sub-penny steps when the book is deep.
            let step = if levels > 90 { 10 } else { 100 };
            let mut price = step * (1 + self.rng.below(10));
            for level in 0..levels {
                if level > 0 {
                    out.push(',');
                }
                out.push('[');
                dollars(out, price);
                out.push(',');
                count_fp(out, size_e2(&mut self.rng));
                out.push(']');
                price += step
                    * if levels > 90 {
                        1
                    } else {
                        1 + self.rng.below(2)
                    };
            }
            out.push(']');
        }
        out.push_str("}}");
    }

    fn control(&mut self, out: &mut String) {
        let id = 1 + self.rng.below(200);
        match self.rng.below(4) {
            0 | 1 => {
                let (seq, _) = self.tick();
                let _ = write!(
                    out,
                    r#"{{"type":"ok","id":{id},"sid":{},"seq":{seq},"msg":{{"market_tickers":["#,
                    1 + self.rng.below(8)
                );
                for i in 0..1 + self.rng.below(4) {
                    if i > 0 {
                        out.push(',');
                    }
                    let market = self.pick();
                    let _ = write!(out, "\"{}\"", market.ticker);
                }
                out.push_str("]}}");
            }
            2 => {
                let channels = ["orderbook_delta", "trade", "ticker", "market_lifecycle_v2"];
                let channel = channels[self.rng.below(4) as usize];
                let _ = write!(
                    out,
                    r#"{{"type":"subscribed","id":{id},"msg":{{"channel":"{channel}","sid":{}}}}}"#,
                    1 + self.rng.below(8)
                );
            }
            _ => {
                let errors = [
                    (6, "Already subscribed"),
                    (7, "Unknown subscription ID"),
                    (8, "Unknown channel name"),
                ];
                let (code, msg) = errors[self.rng.below(3) as usize];
                let _ = write!(
                    out,
                    r#"{{"type":"error","id":{id},"msg":{{"code":{code},"msg":"{msg}"}}}}"#
                );
            }
        }
    }

    fn lifecycle(&mut self, out: &mut String) {
        let market = self.pick();
        let (seq, us) = self.tick();
        let seconds = us.div_euclid(1_000_000);
        let _ = write!(
            out,
            r#"{{"type":"market_lifecycle_v2","sid":13,"seq":{seq},"msg":{{"market_ticker":"{}","#,
            market.ticker
        );
        match self.rng.below(3) {
            0 => {
                let result = side(&mut self.rng);
                let _ = write!(
                    out,
                    r#""determination_ts":{seconds},"result":"{result}","event_type":"determined"}}}}"#
                );
            }
            1 => {
                let _ = write!(
                    out,
                    r#""event_type":"activated","open_ts":{seconds},"close_ts":{}}}}}"#,
                    seconds + 86_400
                );
            }
            _ => {
                let _ = write!(
                    out,
                    r#""event_type":"close_date_updated","close_ts":{}}}}}"#,
                    seconds + 3_600
                );
            }
        }
    }
}

/// A named set of pristine frames a benchmark cycles through.
#[derive(Debug)]
pub struct Workload {
    /// Row label.
    pub name: &'static str,
    /// The frames.
    pub frames: Vec<Vec<u8>>,
}

impl Workload {
    /// Mean frame size in bytes.
    #[must_use]
    pub fn mean_bytes(&self) -> f64 {
        let total: usize = self.frames.iter().map(Vec::len).sum();
        total as f64 / self.frames.len().max(1) as f64
    }

    /// Largest frame, in bytes.
    #[must_use]
    pub fn max_bytes(&self) -> usize {
        self.frames.iter().map(Vec::len).max().unwrap_or(0)
    }
}

/// The composition of the realistic mix, in parts per thousand.
pub const MIX: [(Kind, u32); 7] = [
    (Kind::Delta, 700),
    (Kind::Ticker, 150),
    (Kind::Trade, 100),
    (Kind::Snapshot { levels: 5 }, 36),
    (Kind::Snapshot { levels: 100 }, 4),
    (Kind::Control, 5),
    (Kind::Lifecycle, 5),
];

/// Frames drawn from [`MIX`] in random order.
pub fn mix(generator: &mut Generator, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let mut roll = generator.rng.below(1000) as u32;
            let mut kind = Kind::Delta;
            for (candidate, weight) in MIX {
                if roll < weight {
                    kind = candidate;
                    break;
                }
                roll -= weight;
            }
            generator.frame(kind)
        })
        .collect()
}

/// The benchmark's workloads: one per message type, a legacy delta, and the mix.
#[must_use]
pub fn workloads() -> Vec<Workload> {
    let mut generator = Generator::new(0x5EED_CAFE, 2_000);
    let n = 4096;
    vec![
        Workload {
            name: "orderbook_delta",
            frames: generator.frames(Kind::Delta, n),
        },
        Workload {
            name: "trade",
            frames: generator.frames(Kind::Trade, n),
        },
        Workload {
            name: "ticker",
            frames: generator.frames(Kind::Ticker, n),
        },
        Workload {
            name: "snapshot (5/side)",
            frames: generator.frames(Kind::Snapshot { levels: 5 }, n),
        },
        Workload {
            name: "snapshot (100/side)",
            frames: generator.frames(Kind::Snapshot { levels: 100 }, 512),
        },
        Workload {
            name: "control (ok/subscribed/error)",
            frames: generator.frames(Kind::Control, n),
        },
        Workload {
            name: "legacy delta (cents)",
            frames: generator.frames(Kind::LegacyDelta, n),
        },
        Workload {
            name: "mix",
            frames: mix(&mut generator, 2 * n),
        },
    ]
}
