//! The markdown report.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::{CollectorResult, NEVER, REFERENCE_RATE, Run, Trial};

/// A command's trimmed stdout ("" if it fails).
pub(crate) fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// The load average (1, 5, 15 min).
pub(crate) fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!("load average {}", load.join(" "))
}

/// CPU model, CPU count, PostgreSQL version and the load average now.
pub(crate) fn machine() -> String {
    let model = sh("lscpu", &[])
        .lines()
        .find(|l| l.starts_with("Model name:"))
        .map(|l| l.trim_start_matches("Model name:").trim().to_owned())
        .unwrap_or_default();
    format!(
        "{model}, {} logical CPUs, {}; at the start: {}",
        sh("nproc", &[]),
        sh("psql", &["--version"]),
        load_average()
    )
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn num(v: Option<f64>, decimals: usize) -> String {
    v.map_or("–".into(), |v| {
        if decimals == 0 {
            thousands(v.round() as u64)
        } else {
            format!("{v:.decimals$}")
        }
    })
}

fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1e3)
}

/// A metric's value per collector (None = not measured).
struct Metric<'a> {
    name: String,
    values: Vec<Option<f64>>,
    decimals: usize,
    /// Higher is better (ratios are shown as collector ÷ baseline either way).
    _higher_better: bool,
    ceiling: &'a str,
}

fn cell(r: &CollectorResult, v: Option<f64>, decimals: usize) -> String {
    match (&r.skipped, v) {
        (_, Some(v)) => num(Some(v), decimals),
        (Some(why), None) if why.contains("pending") => "pending".into(),
        (Some(_), None) => "not held (see runs)".into(),
        (None, None) => "–".into(),
    }
}

/// Renders the whole report.
pub(crate) fn render(run: &Run) -> String {
    let (plan, results, ceilings) = (&run.plan, &run.results[..], &run.ceilings);
    let took = Duration::from_secs_f64(run.took_secs);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# End-to-end benchmark ({} mode), {}\n",
        plan.mode, run.date
    );
    let _ = writeln!(
        o,
        "Machine: {}. Run took {:.1} min. Chain: `kalshi-sim` (load mode, {} markets, 85 % deltas / 5 % trades / 10 % tickers, auth off) → collector → throwaway PostgreSQL (gatherer schema, native partitions, `fsync=off`, `synchronous_commit=on`, `shared_buffers=256MB`), all on this machine.\n",
        run.machine,
        took.as_secs_f64() / 60.0,
        plan.markets
    );

    let by = |name: &str| results.iter().find(|r| r.name == name);
    let sustained = |r: &CollectorResult| r.sustained.as_ref().map(|t| t.rate as f64);
    fn at(r: &CollectorResult, share: usize) -> Option<&Trial> {
        r.latency.get(share)
    }
    let metrics: Vec<Metric<'_>> = vec![
        Metric {
            name: format!("sustained msgs/s, zero loss, {} s", plan.confirm_secs),
            values: results.iter().map(sustained).collect(),
            decimals: 0,
            _higher_better: true,
            ceiling: "",
        },
        Metric {
            name: "core-µs per message at the sustained rate".into(),
            values: results
                .iter()
                .map(|r| r.sustained.as_ref().map(|t| t.cpu_us_per_msg))
                .collect(),
            decimals: 1,
            _higher_better: false,
            ceiling: "",
        },
        Metric {
            name: "PostgreSQL core-µs per message at the sustained rate".into(),
            values: results
                .iter()
                .map(|r| r.sustained.as_ref().map(|t| t.db_cpu_us_per_msg))
                .collect(),
            decimals: 1,
            _higher_better: false,
            ceiling: "",
        },
        Metric {
            name: "collector + PostgreSQL core-µs per message at the sustained rate".into(),
            values: results
                .iter()
                .map(|r| {
                    r.sustained
                        .as_ref()
                        .map(|t| t.cpu_us_per_msg + t.db_cpu_us_per_msg)
                })
                .collect(),
            decimals: 1,
            _higher_better: false,
            ceiling: "",
        },
        Metric {
            name: "cores used at the sustained rate".into(),
            values: results
                .iter()
                .map(|r| r.sustained.as_ref().map(|t| t.cores))
                .collect(),
            decimals: 2,
            _higher_better: false,
            ceiling: "",
        },
        Metric {
            name: "core-µs per message at 50 % of sustained".into(),
            values: results
                .iter()
                .map(|r| at(r, 1).map(|t| t.cpu_us_per_msg))
                .collect(),
            decimals: 1,
            _higher_better: false,
            ceiling: "",
        },
        Metric {
            name: "p99 tick-to-durable ms at 50 % of sustained".into(),
            values: results
                .iter()
                .map(|r| at(r, 1).and_then(|t| t.latency).map(|p| p.p99 as f64 / 1e3))
                .collect(),
            decimals: 1,
            _higher_better: false,
            ceiling: "",
        },
    ];
    let mut metrics = metrics;
    for (i, markets) in plan.memory_markets.iter().enumerate() {
        metrics.push(Metric {
            name: format!("peak RSS MiB, {} markets", thousands(*markets as u64)),
            values: results
                .iter()
                .map(|r| r.memory.get(i).map(|t| t.hwm_kib as f64 / 1024.0))
                .collect(),
            decimals: 0,
            _higher_better: false,
            ceiling: "",
        });
    }

    let _ = writeln!(o, "## Summary\n");
    let mut head = String::from("| metric |");
    let mut rule = String::from("|---|");
    for r in results {
        let _ = write!(head, " {} |", r.name);
        rule.push_str("--:|");
    }
    let pairs: Vec<(usize, usize)> = {
        let mut p = Vec::new();
        for (i, a) in results.iter().enumerate() {
            for (j, b) in results.iter().enumerate() {
                let order = |n: &str| match n {
                    "gatherer" => 2,
                    "rust-typical" => 1,
                    _ => 0,
                };
                if order(&a.name) > order(&b.name) {
                    p.push((i, j));
                }
            }
        }
        p.sort_by_key(|(i, j)| (std::cmp::Reverse(*i), *j));
        p
    };
    for (i, j) in &pairs {
        let _ = write!(head, " {} ÷ {} |", results[*i].name, results[*j].name);
        rule.push_str("--:|");
    }
    let _ = writeln!(o, "{head}\n{rule}");
    for m in &metrics {
        let mut line = format!("| {}{} |", m.name, m.ceiling);
        for (r, v) in results.iter().zip(&m.values) {
            let _ = write!(line, " {} |", cell(r, *v, m.decimals));
        }
        for (i, j) in &pairs {
            let _ = write!(line, " {} |", ratio(m.values[*i], m.values[*j]));
        }
        let _ = writeln!(o, "{line}");
    }
    let _ = writeln!(o);

    targets(&mut o, results);

    let _ = writeln!(o, "## Physical ceilings\n");
    let _ = writeln!(
        o,
        "| ceiling | msgs/s | {} |",
        results
            .iter()
            .map(|r| format!("{} ÷ ceiling", r.name))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(o, "|---|--:|{}", "--:|".repeat(results.len()));
    for (name, value) in [
        (
            "simulator send rate alone (`load_client`, unpaced, 1 connection)",
            ceilings.sim_frames_per_sec,
        ),
        (
            "psql raw `COPY … FROM STDIN (FORMAT binary)` of the same rows",
            ceilings.copy_rows_per_sec,
        ),
    ] {
        let _ = writeln!(
            o,
            "| {name} | {} | {} |",
            num(value, 0),
            results
                .iter()
                .map(|r| ratio(sustained(r), value))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    let _ = writeln!(
        o,
        "\nSimulator alone: {}  \nCOPY: {}\n",
        ceilings.sim_note, ceilings.copy_note
    );

    let _ = writeln!(
        o,
        "## Tick-to-durable latency (ms, upper bounds; see method)\n"
    );
    let _ = writeln!(
        o,
        "| collector | load | msgs/s | p50 | p99 | p99.9 | max | deltas timed | core-µs/msg | offset from |"
    );
    let _ = writeln!(o, "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|");
    for r in results {
        for (t, share) in r.latency.iter().zip(["10 %", "50 %", "90 %"]) {
            if let Some(p) = t.latency {
                let _ = writeln!(
                    o,
                    "| {} | {share} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                    r.name,
                    thousands(t.rate),
                    ms(p.p50),
                    ms(p.p99),
                    ms(p.p999),
                    ms(p.max),
                    thousands(p.samples),
                    t.cpu_us_per_msg,
                    t.latency_source
                );
            }
        }
        if let Some(t) = &r.at_reference
            && let Some(p) = t.latency
        {
            let _ = writeln!(
                o,
                "| {} | fixed {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                r.name,
                thousands(REFERENCE_RATE),
                thousands(t.rate),
                ms(p.p50),
                ms(p.p99),
                ms(p.p999),
                ms(p.max),
                thousands(p.samples),
                t.cpu_us_per_msg,
                t.latency_source
            );
        }
        if let Some(t) = &r.sustained
            && let Some(p) = t.latency
        {
            let _ = writeln!(
                o,
                "| {} | 100 % (sustained run) | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
                r.name,
                thousands(t.rate),
                ms(p.p50),
                ms(p.p99),
                ms(p.p999),
                ms(p.max),
                thousands(p.samples),
                t.cpu_us_per_msg,
                t.latency_source
            );
        }
    }
    let _ = writeln!(o);

    extras(&mut o, run);

    let _ = writeln!(o, "## Every run\n");
    let _ = writeln!(
        o,
        "| collector | phase | target msgs/s | markets | s | achieved msgs/s | zero loss | drain s | core-µs/msg | PostgreSQL core-µs/msg | cores | RSS at end MiB | peak RSS MiB | held |"
    );
    let _ = writeln!(
        o,
        "|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|---|"
    );
    let row = |o: &mut String, name: &str, phase: &str, t: &Trial| {
        let _ = writeln!(
            o,
            "| {name} | {phase} | {} | {} | {:.0} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {} | {} | {} |",
            thousands(t.rate),
            thousands(t.markets as u64),
            t.secs,
            thousands(t.achieved.round() as u64),
            match (&t.loss, t.exact_counts) {
                (None, true) => "yes".to_owned(),
                (None, false) => "yes (books; counts ≤)".to_owned(),
                (Some(l), _) => format!("**no**: {}", l.chars().take(160).collect::<String>()),
            },
            if t.drain_secs < NEVER {
                format!("{:.2}", t.drain_secs)
            } else {
                "never".into()
            },
            t.cpu_us_per_msg,
            t.db_cpu_us_per_msg,
            t.cores,
            t.rss_kib / 1024,
            t.hwm_kib / 1024,
            if t.held() { "yes" } else { "no" }
        );
    };
    for r in results {
        if let Some(why) = &r.skipped {
            let _ = writeln!(
                o,
                "| {} | not measured: {} | | | | | | | | | | | | |",
                r.name,
                why.replace('|', "/")
            );
        }
        for t in &r.ladder {
            row(&mut o, &r.name, "search", t);
        }
        if let Some(t) = &r.sustained {
            row(&mut o, &r.name, "sustained", t);
        }
        for t in &r.latency {
            row(&mut o, &r.name, "latency", t);
        }
        if let Some(t) = &r.at_reference {
            row(&mut o, &r.name, "latency @50k", t);
        }
        for t in &r.memory {
            row(&mut o, &r.name, "memory", t);
        }
        for (layout, t) in &r.scaling {
            row(&mut o, &r.name, &format!("scaling: {layout}"), t);
        }
        for t in &r.market_cost {
            row(&mut o, &r.name, "cost by markets", t);
        }
    }
    let _ = writeln!(o);
    let _ = by;
    let _ = writeln!(
        o,
        "## Method (short; bench/README.md \"End to end\" has the details)\n\n\
         * **Held** = the simulator generated ≥ 97 % of the target rate over the window (it pauses \
           generation while the client's queue is half full, so a slow collector lowers the achieved \
           rate instead of losing frames), every row was stored within 1 s + 2 % of the window after generation stopped, \
           and the zero-loss check passed: per market, stored deltas, trades and tickers equal the \
           generator's counts, exactly one WebSocket snapshot per market, and snapshot + Σ stored deltas \
           per (side, price) equals the generator's final book. Search windows {}s, ladder: double until \
           not held, then bisect to within 12 %; the sustained run takes 90 % of the best rate for {} s (if it \
           is not held: again at 10 % less or 97 % of what it absorbed, whichever is lower, at most twice; if none is held, the other phases still run).\n\
         * **CPU** = utime + stime of the collector process (all threads) from /proc/PID/stat, from the \
           moment the simulator saw the subscription to the moment the last row was visible, divided by \
           the messages (events + one snapshot per market). **PostgreSQL CPU** = the same for every \
           process of the cluster (postmaster and children: the collector's backend, WAL writer, \
           checkpointer; the harness's own polling queries are included, the same for every collector).\n\
         * **Latency** = from the event's scheduled send time (exchange `ts` + the wall-clock offset a \
           probe connection measured) to the first {} ms poll that sees it committed in \
           `orderbook_deltas`: an upper bound, high by up to one poll interval.\n\
         * **RSS** = VmHWM of the collector process at the end of a run at min(2,000, sustained/2) msgs/s.\n",
        plan.search_secs,
        plan.confirm_secs,
        crate::latency::POLL.as_millis()
    );
    o
}

/// The acceptance targets for the gatherer, met or by how much not.
fn targets(o: &mut String, results: &[CollectorResult]) {
    let by = |name: &str| results.iter().find(|r| r.name == name);
    let sustained = |name: &str| {
        by(name)
            .and_then(|r| r.sustained.as_ref())
            .map(|t| t.rate as f64)
    };
    let _ = writeln!(o, "## Against the issue's targets (kalshi-gatherer)\n");
    let Some(g) = by("gatherer") else {
        let _ = writeln!(o, "The gatherer was not part of this run.\n");
        return;
    };
    if let Some(why) = &g.skipped {
        let _ = writeln!(o, "Pending: {why}\n");
        return;
    }
    if let Some(why) = &g.unconfirmed {
        let _ = writeln!(o, "Sustained rate: {why} (see every run).\n");
    }
    let _ = writeln!(o, "| target | measured | met? |\n|---|---|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "not measured",
    };
    let gs = sustained("gatherer");
    let _ = writeln!(
        o,
        "| ≥ 250,000 msgs/s sustained, zero loss | {} msgs/s | {} |",
        num(gs, 0),
        verdict(gs.map(|v| v >= 250_000.0))
    );
    let p99 = g
        .at_reference
        .as_ref()
        .and_then(|t| t.latency)
        .map(|p| p.p99 as f64 / 1e3);
    let _ = writeln!(
        o,
        "| p99 tick-to-durable ≤ 25 ms at 50,000 msgs/s | {} ms (upper bound) | {} |",
        num(p99, 1),
        verdict(p99.map(|v| v <= 25.0))
    );
    for (name, want) in [("python", 20.0), ("rust-typical", 3.0)] {
        let r = match (gs, sustained(name)) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let _ = writeln!(
            o,
            "| ≥ {want}× the {name} collector's sustained rate | {} | {} |",
            r.map_or("–".into(), |v| format!("{v:.2}×")),
            verdict(r.map(|v| v >= want))
        );
    }
    let cpu = g.sustained.as_ref().map(|t| t.cpu_us_per_msg);
    let _ = writeln!(
        o,
        "| ≤ 3 core-µs per message | {} at the sustained rate{} | {} |",
        num(cpu, 2),
        g.latency.get(1).map_or(String::new(), |t| format!(
            ", {:.2} at 50 %",
            t.cpu_us_per_msg
        )),
        verdict(cpu.map(|v| v <= 3.0))
    );
    let storm = g.storm.as_ref();
    let _ = writeln!(
        o,
        "| {}-market snapshot storm resynced in ≤ 5 s | {} | {} |\n",
        storm.map_or("10k".into(), |s| thousands(s.markets as u64)),
        storm.map_or("not measured".into(), |s| if s.resync_secs < NEVER {
            format!(
                "{:.2} s (RSS peak {} MiB)",
                s.resync_secs,
                s.rss_peak_kib / 1024
            )
        } else {
            format!(
                "not resynced within 120 s ({} of {} markets)",
                s.resynced, s.markets
            )
        }),
        verdict(storm.map(|s| s.resync_secs <= 5.0 && s.markets >= 10_000))
    );
}

/// Latency split, snapshot storm, scaling, cost by markets, deduplicator.
fn extras(o: &mut String, run: &Run) {
    let _ = writeln!(
        o,
        "## Latency split (ms): frame → ring and ring → commit\n\n\
         Frame → ring = the collector's `received_ts` − the event's scheduled send time, over every \
         stored delta (exact). Ring → commit = poll time − `received_ts` of the newest committed \
         row (upper bound, like the total). For the baselines `received_ts` is taken when the \
         frame is decoded, so the split is frame → decode and decode → commit.\n"
    );
    let _ = writeln!(
        o,
        "| collector | msgs/s | frame→ring p50 | p99 | p99.9 | max | ring→commit p50 | p99 | p99.9 | max |"
    );
    let _ = writeln!(o, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in &run.results {
        for t in r
            .latency
            .iter()
            .chain(r.at_reference.iter())
            .chain(r.sustained.iter())
        {
            if let (Some(a), Some(b)) = (t.frame_to_ring, t.ring_to_commit) {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.name,
                    thousands(t.rate),
                    ms(a.p50),
                    ms(a.p99),
                    ms(a.p999),
                    ms(a.max),
                    ms(b.p50),
                    ms(b.p99),
                    ms(b.p999),
                    ms(b.max)
                );
            }
        }
    }
    let _ = writeln!(o);
    for r in &run.results {
        if let Some(s) = &r.storm {
            let _ = writeln!(
                o,
                "## Snapshot storm ({})\n\n\
                 {} markets subscribed, {} msgs/s flowing; `POST /close?conn=all` closes every \
                 connection; resynced = every market has a WebSocket snapshot received after the \
                 close committed in `orderbook_snapshots`.\n\n\
                 | markets | cold start to all snapshots s | close to all resynced s | markets resynced | markets with deltas after | RSS peak during resync MiB | HWM before → after MiB | core-s during resync |\n\
                 |--:|--:|--:|--:|--:|--:|--:|--:|\n\
                 | {} | {:.2} | {} | {} | {} | {} | {} → {} | {:.2} |\n",
                r.name,
                thousands(s.markets as u64),
                thousands(s.rate),
                thousands(s.markets as u64),
                s.cold_secs,
                if s.resync_secs < NEVER {
                    format!("{:.2}", s.resync_secs)
                } else {
                    "never".into()
                },
                thousands(s.resynced),
                thousands(s.markets_with_deltas_after),
                s.rss_peak_kib / 1024,
                s.hwm_before_kib / 1024,
                s.hwm_after_kib / 1024,
                s.cpu_secs
            );
        }
        if !r.scaling.is_empty() {
            let _ = writeln!(
                o,
                "## Scaling ({}): engine layout at saturation\n\n\
                 Target 1,000,000 msgs/s for {} s: the simulator's backpressure brings the rate \
                 down to what the collector absorbs; zero loss is checked as everywhere.\n\n\
                 | layout | achieved msgs/s | zero loss | core-µs/msg | PostgreSQL core-µs/msg | cores |\n\
                 |---|--:|---|--:|--:|--:|",
                r.name, run.plan.scaling_secs
            );
            for (layout, t) in &r.scaling {
                let _ = writeln!(
                    o,
                    "| {layout} | {} | {} | {:.2} | {:.2} | {:.2} |",
                    thousands(t.achieved.round() as u64),
                    if t.loss.is_none() { "yes" } else { "**no**" },
                    t.cpu_us_per_msg,
                    t.db_cpu_us_per_msg,
                    t.cores
                );
            }
            let _ = writeln!(o);
        }
        if !r.market_cost.is_empty() || !r.latency.is_empty() {
            let _ = writeln!(
                o,
                "## Cost growth ({}): core-µs per message by rate and by markets\n\n\
                 | markets | msgs/s | core-µs/msg | PostgreSQL core-µs/msg | cores |\n\
                 |--:|--:|--:|--:|--:|",
                r.name
            );
            let mut all: Vec<&Trial> = r
                .latency
                .iter()
                .chain(r.at_reference.iter())
                .chain(r.sustained.iter())
                .chain(r.market_cost.iter())
                .chain(r.memory.iter())
                .collect();
            all.sort_by_key(|t| (t.markets, t.rate));
            for t in all {
                let _ = writeln!(
                    o,
                    "| {} | {} | {:.2} | {:.2} | {:.2} |",
                    thousands(t.markets as u64),
                    thousands(t.rate),
                    t.cpu_us_per_msg,
                    t.db_cpu_us_per_msg,
                    t.cores
                );
            }
            let _ = writeln!(o);
        }
    }
    let _ = writeln!(o, "## Deduplicator\n");
    match &run.dedup {
        Some(d) => {
            let _ = writeln!(
                o,
                "Three gatherer databases with the same {} delta rows each, merged into production \
                 (engine/dedup/tests/bench.rs, run by this invocation), against raw binary COPY of \
                 the same rows into production's indexed table (psql-equivalent COPY, same cluster \
                 settings):\n\n\
                 | merged rows/s (wall, start-up included) | merged rows/s (inside merge jobs) | raw COPY rows/s into production | merge (jobs) ÷ raw COPY |\n\
                 |--:|--:|--:|--:|\n\
                 | {} | {} | {} | {:.2}× |\n\n`{}`\n",
                thousands(d.rows),
                thousands(d.wall_rows_per_sec.round() as u64),
                thousands(d.job_rows_per_sec.round() as u64),
                thousands(d.raw_copy_rows_per_sec.round() as u64),
                d.job_rows_per_sec / d.raw_copy_rows_per_sec.max(1.0),
                d.line
            );
        }
        None => {
            let _ = writeln!(o, "Not measured: {}\n", run.dedup_note);
        }
    }
}
