//! Decode benchmark: kalshi-wire against serde_json and sonic-rs baselines.
//!
//! `cargo bench -p kalshi-bench --bench decode [-- OPTIONS]`
//!
//! Options (after `--`):
//! * `--write-readme` (or `KALSHI_BENCH_WRITE_README=1`): also write the results between the
//!   markers of `bench/README.md`.
//! * `--runs N` (or `KALSHI_BENCH_RUNS`): timed runs per cell (default 11; the median is shown).
//! * `--run-ms N`: target duration of one run of the product, in ms (default 20).
//! * `--profile DECODER WORKLOAD SECONDS`: only loop one decoder over one workload, for `perf`.
//!   DECODER is `ours`, `kalshi_wire_tape_only`, `copy_only`, `serde_json_tagged`, `serde_json_2pass`,
//!   `sonic_rs_tagged`, `sonic_rs_2pass`, `simd_json_fill_tape` or `simd_json_fill_tape_padded`;
//!   WORKLOAD is a prefix of a row label (`orderbook_delta`, `trade`, `mix`...).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use kalshi_bench::alloc::{AllocCounts, CountingAlloc};
use kalshi_bench::decoders::{
    self, Baseline, CopyOnly, FrameDecoder, Ours, OursInto, OursTapeOnly, TapeOnly, TapePadded,
};
use kalshi_bench::frames::{self, MIX, Workload};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::new();

/// Frames per latency sample in batch mode.
const BATCH: usize = 64;
/// Markers in README.md between which `--write-readme` puts the results.
const BEGIN: &str = "<!-- BEGIN GENERATED RESULTS -->";
const END: &str = "<!-- END GENERATED RESULTS -->";

struct Options {
    write_readme: bool,
    runs: usize,
    run_ms: u64,
    profile: Option<(String, String, f64)>,
}

fn options() -> Options {
    let mut args = std::env::args().skip(1);
    let env = |name: &str| std::env::var(name).ok();
    let mut options = Options {
        write_readme: env("KALSHI_BENCH_WRITE_README").is_some_and(|v| v != "0" && !v.is_empty()),
        runs: env("KALSHI_BENCH_RUNS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(11),
        run_ms: 20,
        profile: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write-readme" => options.write_readme = true,
            "--runs" => options.runs = args.next().and_then(|v| v.parse().ok()).unwrap_or(11),
            "--run-ms" => options.run_ms = args.next().and_then(|v| v.parse().ok()).unwrap_or(20),
            "--profile" => {
                let decoder = args.next().unwrap_or_else(|| "ours".into());
                let workload = args.next().unwrap_or_else(|| "mix".into());
                let seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(10.0);
                options.profile = Some((decoder, workload, seconds));
            }
            // `cargo bench` passes `--bench`; ignore it and anything else.
            _ => {}
        }
    }
    options.runs = options.runs.max(1);
    options
}

/// The decoders in column order: the copy floor, the product, the baselines.
enum Any {
    Copy(CopyOnly),
    Ours(Box<Ours>),
    OursInto(Box<OursInto>),
    OursTapeOnly(Box<OursTapeOnly>),
    Baseline(Baseline),
    Tape(TapeOnly),
    Padded(Box<TapePadded>),
}

impl Any {
    fn all() -> Vec<Any> {
        let mut all = vec![Any::Copy(CopyOnly), Any::Ours(Box::default())];
        all.extend(decoders::baselines().into_iter().map(Any::Baseline));
        all
    }

    /// The product's components, for the breakdown table.
    fn parts() -> Vec<Any> {
        vec![
            Any::Copy(CopyOnly),
            Any::Tape(TapeOnly::default()),
            Any::Padded(Box::default()),
            Any::OursTapeOnly(Box::default()),
            Any::Ours(Box::default()),
            Any::OursInto(Box::default()),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Any::Copy(d) => d.name(),
            Any::Ours(d) => d.name(),
            Any::OursInto(d) => d.name(),
            Any::OursTapeOnly(d) => d.name(),
            Any::Baseline(d) => d.name(),
            Any::Tape(d) => d.name(),
            Any::Padded(d) => d.name(),
        }
    }

    fn key(&self) -> String {
        self.name()
            .replace(['-', ' '], "_")
            .replace("2_pass", "2pass")
    }

    /// Runs `count` frames (monomorphized per decoder: no dynamic dispatch per frame).
    fn run(
        &mut self,
        frames: &[Vec<u8>],
        start: usize,
        count: usize,
        scratch: &mut Vec<u8>,
    ) -> u64 {
        match self {
            Any::Copy(d) => d.run(frames, start, count, scratch),
            Any::Ours(d) => d.run(frames, start, count, scratch),
            Any::OursInto(d) => d.run(frames, start, count, scratch),
            Any::OursTapeOnly(d) => d.run(frames, start, count, scratch),
            Any::Baseline(d) => d.run(frames, start, count, scratch),
            Any::Tape(d) => d.run(frames, start, count, scratch),
            Any::Padded(d) => d.run(frames, start, count, scratch),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Interquartile range as a fraction of the median: the run-to-run noise of a cell.
fn spread(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    let q = |p: f64| ((n - 1) as f64 * p).round() as usize;
    let (q1, q3) = (values[q(0.25)], values[q(0.75)]);
    let m = median(values);
    if m > 0.0 { (q3 - q1) / m } else { 0.0 }
}

struct Timing {
    /// Per decoder (column order): median ns/frame and IQR/median.
    ns: Vec<(f64, f64)>,
}

/// Frames per timed run: whole passes over the workload, about `run_ms` of the product.
fn calibrate(workload: &Workload, run_ms: u64, scratch: &mut Vec<u8>) -> usize {
    let mut ours = Ours::default();
    let frames = &workload.frames;
    black_box(ours.run(frames, 0, frames.len(), scratch));
    let start = Instant::now();
    black_box(ours.run(frames, 0, frames.len(), scratch));
    let per_pass = start.elapsed().as_secs_f64();
    let passes = ((run_ms as f64 / 1000.0) / per_pass).ceil().max(1.0) as usize;
    passes * frames.len()
}

fn time_workload(
    workload: &Workload,
    mut decoders: Vec<Any>,
    options: &Options,
    scratch: &mut Vec<u8>,
) -> Timing {
    let count = calibrate(workload, options.run_ms, scratch);
    let frames = &workload.frames;
    // Warm up: grow every buffer and train the predictors on this workload.
    for decoder in &mut decoders {
        black_box(decoder.run(frames, 0, 2 * frames.len(), scratch));
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(options.runs); decoders.len()];
    // Interleave decoders within each round so that background load hits all columns alike.
    for round in 0..options.runs {
        for (column, decoder) in decoders.iter_mut().enumerate() {
            let start = Instant::now();
            black_box(decoder.run(frames, round * 7, count, scratch));
            let elapsed = start.elapsed();
            samples[column].push(elapsed.as_nanos() as f64 / count as f64);
        }
    }
    Timing {
        ns: samples
            .iter_mut()
            .map(|s| {
                let spread = spread(s);
                (median(s), spread)
            })
            .collect(),
    }
}

fn count_allocations(workload: &Workload, scratch: &mut Vec<u8>) -> Vec<(f64, f64)> {
    let frames = &workload.frames;
    Any::all()
        .into_iter()
        .skip(1)
        .map(|mut decoder| {
            // Steady state: every buffer has seen every frame of the workload twice.
            black_box(decoder.run(frames, 0, 2 * frames.len(), scratch));
            let before = ALLOC.snapshot();
            black_box(decoder.run(frames, 0, frames.len(), scratch));
            let used: AllocCounts = ALLOC.snapshot().since(before);
            let n = frames.len() as f64;
            (used.total() as f64 / n, used.bytes as f64 / n)
        })
        .collect()
}

struct Latency {
    name: &'static str,
    mode: &'static str,
    histogram: Histogram<u64>,
}

fn latency(workload: &Workload, samples: usize, scratch: &mut Vec<u8>) -> (Vec<Latency>, f64) {
    let frames = &workload.frames;
    // Cost of one `Instant::now()` pair, to read the per-frame figures with.
    let mut overhead: Vec<f64> = (0..10_000)
        .map(|_| {
            let a = Instant::now();
            let b = Instant::now();
            (b - a).as_nanos() as f64
        })
        .collect();
    let timer_ns = median(&mut overhead);
    let mut out = Vec::new();
    for mut decoder in Any::all().into_iter().skip(1) {
        black_box(decoder.run(frames, 0, 2 * frames.len(), scratch));
        let mut single = Histogram::<u64>::new_with_bounds(1, 3_600_000_000_000, 3).unwrap();
        let mut batch = single.clone();
        let mut index = 0;
        for _ in 0..samples {
            let start = Instant::now();
            black_box(decoder.run(frames, index, 1, scratch));
            single.saturating_record(start.elapsed().as_nanos() as u64);
            index = (index + 1) % frames.len();
        }
        for _ in 0..samples / BATCH {
            let start = Instant::now();
            black_box(decoder.run(frames, index, BATCH, scratch));
            let per_frame = start.elapsed().as_nanos() as u64 / BATCH as u64;
            batch.saturating_record(per_frame.max(1));
            index = (index + BATCH) % frames.len();
        }
        out.push(Latency {
            name: decoder.name(),
            mode: "per frame",
            histogram: single,
        });
        out.push(Latency {
            name: decoder.name(),
            mode: "batch of 64 ÷ 64",
            histogram: batch,
        });
    }
    (out, timer_ns)
}

/// The share of `frames` that `Decoder::decode` takes through its byte-level fast path.
fn fast_share(frames: &[Vec<u8>]) -> f64 {
    let mut decoder = kalshi_wire::Decoder::default();
    for frame in frames {
        let _ = decoder.decode(&mut frame.clone());
    }
    let stats = decoder.stats();
    stats.fast_path as f64 / stats.frames.max(1) as f64
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let rustc =
        std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
    format!("{model}, {cores} logical CPUs, {rustc}")
}

fn profile(decoder: &str, workload: &str, seconds: f64) {
    let workloads = frames::workloads();
    let workload = workloads
        .iter()
        .find(|w| w.name.starts_with(workload))
        .expect("no such workload");
    let mut any = Any::all()
        .into_iter()
        .chain(Any::parts())
        .find(|d| d.key() == decoder || (decoder == "ours" && matches!(d, Any::Ours(_))))
        .expect("no such decoder");
    let mut scratch = Vec::with_capacity(1 << 16);
    let frames = &workload.frames;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut total = 0usize;
    while Instant::now() < deadline {
        black_box(any.run(frames, 0, frames.len(), &mut scratch));
        total += frames.len();
    }
    eprintln!(
        "profiled {} on {}: {total} frames in {seconds} s ({:.1} ns/frame)",
        any.name(),
        workload.name,
        seconds * 1e9 / total as f64
    );
}

fn main() {
    let options = options();
    if let Some((decoder, workload, seconds)) = &options.profile {
        profile(decoder, workload, *seconds);
        return;
    }
    let workloads = frames::workloads();
    let mut scratch = Vec::with_capacity(1 << 16);
    for workload in &workloads {
        let compared = decoders::verify(&workload.frames).unwrap_or_else(|e| panic!("{e}"));
        eprintln!(
            "{}: {} frames, outputs identical across decoders ({compared} comparisons)",
            workload.name,
            workload.frames.len()
        );
    }
    let names: Vec<&str> = Any::all().iter().map(Any::name).collect();

    let mut out = String::new();
    let started = Instant::now();
    let _ = writeln!(out, "Machine: {}.  ", machine());
    let _ = writeln!(
        out,
        "Profile: `bench` (release + debug info, thin LTO, codegen-units = 1). Each cell is the \
         median of {} timed runs of ~{} ms (of the product; baselines run the same frame count), \
         decoders interleaved within each round; `±` is the interquartile range of those runs \
         relative to the median. Every figure includes copying the pristine frame into the parse \
         buffer (the `copy` column alone).\n",
        options.runs, options.run_ms
    );

    // Throughput table.
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| workload | frames | mean B | copy ns | **kalshi-wire ns** | {} |",
        names[2..]
            .iter()
            .map(|n| format!("{n} ns (×)"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(
        table,
        "|---|--:|--:|--:|--:|{}",
        "--:|".repeat(names.len() - 2)
    );
    let mut mbps = String::new();
    let _ = writeln!(
        mbps,
        "| workload | kalshi-wire MB/s | {} |",
        names[2..]
            .iter()
            .map(|n| format!("{n} MB/s"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(mbps, "|---|--:|{}", "--:|".repeat(names.len() - 2));
    for workload in &workloads {
        let timing = time_workload(workload, Any::all(), &options, &mut scratch);
        let bytes = workload.mean_bytes();
        let (ours, ours_spread) = timing.ns[1];
        let cells: Vec<String> = timing.ns[2..]
            .iter()
            .map(|(ns, s)| format!("{ns:.0} ±{:.0}% ({:.2}×)", s * 100.0, ns / ours))
            .collect();
        let _ = writeln!(
            table,
            "| {} | {} | {bytes:.0} | {:.0} | **{ours:.0}** ±{:.0}% | {} |",
            workload.name,
            workload.frames.len(),
            timing.ns[0].0,
            ours_spread * 100.0,
            cells.join(" | ")
        );
        let rates: Vec<String> = timing.ns[1..]
            .iter()
            .map(|(ns, _)| format!("{:.0}", bytes / ns * 1000.0))
            .collect();
        let _ = writeln!(mbps, "| {} | {} |", workload.name, rates.join(" | "));
        eprintln!("timed {} ({:.0?} so far)", workload.name, started.elapsed());
    }
    let _ = writeln!(out, "#### Time per frame (ns, lower is better)\n");
    let _ = writeln!(
        out,
        "`(×)` = baseline ns ÷ kalshi-wire ns: above 1 means kalshi-wire is faster.\n"
    );
    out.push_str(&table);
    let _ = writeln!(
        out,
        "\n#### Throughput (MB/s of frame JSON, including the copy)\n"
    );
    out.push_str(&mbps);

    // Allocations.
    let _ = writeln!(
        out,
        "\n#### Heap allocations per frame in steady state (allocations, bytes)\n"
    );
    let _ = writeln!(out, "| workload | {} |", names[1..].to_vec().join(" | "));
    let _ = writeln!(out, "|---|{}", "--:|".repeat(names.len() - 1));
    for workload in &workloads {
        let counts = count_allocations(workload, &mut scratch);
        let cells: Vec<String> = counts
            .iter()
            .map(|(n, b)| format!("{n:.2} ({b:.0} B)"))
            .collect();
        let _ = writeln!(out, "| {} | {} |", workload.name, cells.join(" | "));
    }

    // Breakdown.
    let _ = writeln!(
        out,
        "\n#### Where kalshi-wire's time goes (ns per frame, medians)\n\n`fill_tape` is \
         simd-json's stage 1 + stage 2 exactly as kalshi-wire's simd-json path calls it (including \
         simd-json's own padded copy of the input), with no walk of the tape; `fill_tape_padded` \
         is the same parse from a caller-padded buffer (no internal copy). `tape-only` is \
         `Decoder::decode_tape_only` (the simd-json path alone, i.e. kalshi-wire without its \
         byte-level fast path), and `walk + normalize` = tape-only − fill_tape. `kalshi-wire` is \
         `Decoder::decode` (fast path first; frames it declines go through the simd-json path), \
         `decode_into` is `Decoder::decode_into` (the same, writing the record into a slot kept \
         between frames instead of returning it by value), and `fast path` is the share of the \
         workload's frames the fast path decoded.\n"
    );
    let _ = writeln!(
        out,
        "| workload | copy | fill_tape (incl. copy) | fill_tape_padded (incl. copy) | tape-only | \
         walk + normalize | **kalshi-wire** | decode_into | fast path |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for workload in &workloads {
        let t = time_workload(workload, Any::parts(), &options, &mut scratch);
        let [copy, tape, padded, tape_only, ours, into] = [
            t.ns[0].0, t.ns[1].0, t.ns[2].0, t.ns[3].0, t.ns[4].0, t.ns[5].0,
        ];
        let _ = writeln!(
            out,
            "| {} | {copy:.0} | {tape:.0} | {padded:.0} | {tape_only:.0} | {:.0} | **{ours:.0}** | \
             {into:.0} | {:.0}% |",
            workload.name,
            tape_only - tape,
            fast_share(&workload.frames) * 100.0
        );
    }

    // Latency.
    let mix = workloads.iter().find(|w| w.name == "mix").unwrap();
    let (latencies, timer_ns) = latency(mix, 1 << 19, &mut scratch);
    let _ = writeln!(
        out,
        "\n#### Latency per frame, realistic mix (ns)\n\n`per frame`: one `Instant` pair around \
         each copy+decode; it includes the timer's own cost, {timer_ns:.0} ns per pair on this \
         machine, and its tail includes interrupts and preemption. `batch`: 64 consecutive frames \
         timed together and divided by 64, which removes the timer cost but averages within the \
         batch (a single slow frame is diluted 64×). {} frames per decoder.\n",
        1 << 19
    );
    let _ = writeln!(out, "| decoder | mode | p50 | p90 | p99 | p99.9 | max |");
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|");
    for l in &latencies {
        let h = &l.histogram;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            l.name,
            l.mode,
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.max()
        );
    }
    let mix_text: Vec<String> = MIX
        .iter()
        .map(|(kind, per_mille)| format!("{:.1}% {kind:?}", f64::from(*per_mille) / 10.0))
        .collect();
    let _ = writeln!(out, "\nMix composition: {}.", mix_text.join(", "));

    println!("{out}");
    eprintln!("total {:.1?}", started.elapsed());
    if options.write_readme {
        write_readme(&out);
    }
}

fn write_readme(results: &str) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    let readme = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{results}\n{END}");
    let updated = match (readme.find(BEGIN), readme.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{block}{}", &readme[..begin], &readme[end + END.len()..])
        }
        _ => format!("{readme}\n{block}\n"),
    };
    std::fs::write(path, updated).expect("write README.md");
    eprintln!("wrote results to {path}");
}
