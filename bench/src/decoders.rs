//! The product and the baselines behind one trait, so one timing loop serves them all.

use std::hint::black_box;

use kalshi_wire::{Decoded, Decoder, Level, Record};

use crate::baseline::{self, BaselineError, Normalized};

/// One way of turning a frame into normalized records.
pub trait FrameDecoder {
    /// Column label.
    fn name(&self) -> &'static str;

    /// Decodes one frame (which may be used as scratch space) and returns a digest of the
    /// result, or `u64::MAX` when the frame was refused.
    fn decode(&mut self, frame: &mut [u8]) -> u64;

    /// Decodes `count` frames, cycling through `frames` from `start`, and returns the sum of the
    /// digests. Before each decode the pristine frame is copied into `scratch` (the product
    /// parses in place, so it needs the copy; the baselines get it too, for a fair comparison).
    fn run(&mut self, frames: &[Vec<u8>], start: usize, count: usize, scratch: &mut Vec<u8>) -> u64
    where
        Self: Sized,
    {
        let mut sum = 0u64;
        let mut index = start % frames.len();
        for _ in 0..count {
            scratch.clear();
            scratch.extend_from_slice(&frames[index]);
            sum = sum.wrapping_add(self.decode(black_box(scratch.as_mut_slice())));
            index += 1;
            if index == frames.len() {
                index = 0;
            }
        }
        sum
    }
}

/// A digest of a product record.
#[must_use]
pub fn record_checksum(decoded: &Decoded<'_>) -> u64 {
    record_digest(&decoded.record)
}

/// A digest of a product record (the part of [`record_checksum`] that needs no [`Decoded`]).
#[must_use]
pub fn record_digest(record: &Record) -> u64 {
    match record {
        Record::Delta(d) => (d.price_e6 ^ d.delta_e2 ^ d.exchange_ts.unwrap_or(0)) as u64,
        Record::Trade(t) => (t.yes_price_e6 ^ t.count_e2) as u64,
        Record::Ticker(t) => t.yes_bid_e6.unwrap_or(0) as u64,
        Record::Snapshot(s) => u64::from(s.yes_levels + s.no_levels),
        Record::Control(c) => c.code.unwrap_or(c.market_tickers.len() as i64) as u64,
        Record::MarketLifecycle(m) => m.open_ts.or(m.close_ts).unwrap_or(0) as u64,
        other => other.header().seq.map_or(0, |s| s.get()),
    }
}

/// The product: `kalshi_wire::Decoder` (simd-json tape, normalized into records).
#[derive(Debug, Default)]
pub struct Ours {
    /// The decoder under test.
    pub decoder: Decoder,
}

impl FrameDecoder for Ours {
    fn name(&self) -> &'static str {
        "kalshi-wire"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        match &self.decoder.decode(frame) {
            Ok(decoded) => record_checksum(decoded),
            Err(_) => u64::MAX,
        }
    }
}

/// The product through `Decoder::decode_into`: the record is written into a slot kept between
/// frames instead of being returned by value.
#[derive(Debug, Default)]
pub struct OursInto {
    /// The decoder under test.
    pub decoder: Decoder,
    /// The reused record slot.
    pub slot: Record,
}

impl FrameDecoder for OursInto {
    fn name(&self) -> &'static str {
        "kalshi-wire decode_into"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        match self.decoder.decode_into(frame, &mut self.slot) {
            Ok(_) => record_digest(&self.slot),
            Err(_) => u64::MAX,
        }
    }
}

/// The product restricted to its simd-json path (`Decoder::decode_tape_only`): what
/// `kalshi-wire` costs on frames its byte-level fast path declines, and what it cost before the
/// fast path existed.
#[derive(Debug, Default)]
pub struct OursTapeOnly {
    /// The decoder under test.
    pub decoder: Decoder,
}

impl FrameDecoder for OursTapeOnly {
    fn name(&self) -> &'static str {
        "kalshi-wire tape-only"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        match &self.decoder.decode_tape_only(frame) {
            Ok(decoded) => record_checksum(decoded),
            Err(_) => u64::MAX,
        }
    }
}

/// Only the copy of the frame into the scratch buffer: the floor under every column.
#[derive(Debug, Default)]
pub struct CopyOnly;

impl FrameDecoder for CopyOnly {
    fn name(&self) -> &'static str {
        "copy only"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        u64::from(frame.first().copied().unwrap_or(0))
    }
}

/// simd-json's `fill_tape` alone (stage 1 + stage 2, including its internal padded copy of the
/// input), as kalshi-wire calls it, with no walk of the tape: the parser's share of the product.
#[allow(missing_debug_implementations)]
pub struct TapeOnly {
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

impl Default for TapeOnly {
    fn default() -> Self {
        Self {
            buffers: simd_json::Buffers::new(4096),
            tape: simd_json::Tape(Vec::with_capacity(256)),
        }
    }
}

impl FrameDecoder for TapeOnly {
    fn name(&self) -> &'static str {
        "simd-json fill_tape"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        let mut tape = core::mem::replace(&mut self.tape, simd_json::Tape(Vec::new())).reset();
        let ok = simd_json::fill_tape(frame, &mut self.buffers, &mut tape).is_ok();
        let nodes = tape.0.len() as u64;
        self.tape = tape.reset();
        if ok { nodes } else { u64::MAX }
    }
}

/// simd-json's `fill_tape_padded`: the caller's buffer carries the SIMD padding, so simd-json
/// skips its own copy of the input. Shows what kalshi-wire would save by switching to it.
#[allow(missing_debug_implementations)]
pub struct TapePadded {
    inner: TapeOnly,
    padded: Vec<u8>,
}

impl Default for TapePadded {
    fn default() -> Self {
        Self {
            inner: TapeOnly::default(),
            padded: Vec::with_capacity(1 << 16),
        }
    }
}

impl FrameDecoder for TapePadded {
    fn name(&self) -> &'static str {
        "simd-json fill_tape_padded"
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        // Only used through `run`, which copies straight into the padded buffer.
        self.inner.decode(frame)
    }

    fn run(&mut self, frames: &[Vec<u8>], start: usize, count: usize, _: &mut Vec<u8>) -> u64 {
        let mut sum = 0u64;
        let mut index = start % frames.len();
        for _ in 0..count {
            let frame = &frames[index];
            let len = frame.len();
            self.padded.clear();
            self.padded.extend_from_slice(frame);
            self.padded.resize(len + simd_json::INPUT_PADDING, b' ');
            let inner = &mut self.inner;
            let mut tape = core::mem::replace(&mut inner.tape, simd_json::Tape(Vec::new())).reset();
            let padded = black_box(self.padded.as_mut_slice());
            let ok =
                simd_json::fill_tape_padded(padded, len, &mut inner.buffers, &mut tape).is_ok();
            sum = sum.wrapping_add(if ok { tape.0.len() as u64 } else { u64::MAX });
            inner.tape = tape.reset();
            index += 1;
            if index == frames.len() {
                index = 0;
            }
        }
        sum
    }
}

/// A baseline strategy: a function from frame to normalized record.
pub type BaselineFn = fn(&[u8], &mut Vec<Level>) -> Result<Normalized, BaselineError>;

/// A serde baseline, with its reusable snapshot-level scratch vector.
#[derive(Debug)]
pub struct Baseline {
    name: &'static str,
    parse: BaselineFn,
    /// Levels of the last snapshot.
    pub levels: Vec<Level>,
}

impl Baseline {
    /// serde_json into the tagged enum.
    #[must_use]
    pub fn serde_json_tagged() -> Self {
        Self::new("serde_json tagged", baseline::serde_json_tagged)
    }

    /// serde_json, two-pass (envelope with `&RawValue`, then `msg`).
    #[must_use]
    pub fn serde_json_two_pass() -> Self {
        Self::new("serde_json 2-pass", baseline::serde_json_two_pass)
    }

    /// sonic-rs into the tagged enum.
    #[must_use]
    pub fn sonic_tagged() -> Self {
        Self::new("sonic-rs tagged", baseline::sonic_tagged)
    }

    /// sonic-rs, two-pass (envelope with `LazyValue`, then `msg`).
    #[must_use]
    pub fn sonic_two_pass() -> Self {
        Self::new("sonic-rs 2-pass", baseline::sonic_two_pass)
    }

    fn new(name: &'static str, parse: BaselineFn) -> Self {
        Self {
            name,
            parse,
            levels: Vec::with_capacity(256),
        }
    }

    /// Parses and normalizes one frame.
    ///
    /// # Errors
    /// As the underlying baseline function.
    pub fn normalize(&mut self, frame: &[u8]) -> Result<Normalized, BaselineError> {
        (self.parse)(frame, &mut self.levels)
    }
}

impl FrameDecoder for Baseline {
    fn name(&self) -> &'static str {
        self.name
    }

    fn decode(&mut self, frame: &mut [u8]) -> u64 {
        match (self.parse)(frame, &mut self.levels) {
            Ok(normalized) => normalized.checksum(),
            Err(_) => u64::MAX,
        }
    }
}

/// The four baselines, in column order.
#[must_use]
pub fn baselines() -> Vec<Baseline> {
    vec![
        Baseline::serde_json_tagged(),
        Baseline::serde_json_two_pass(),
        Baseline::sonic_tagged(),
        Baseline::sonic_two_pass(),
    ]
}

/// Checks that the product and every baseline decode every frame, that for deltas, trades,
/// tickers and snapshots (levels included) they produce identical records, and that the
/// product's fast path, simd-json path and `decode_into` agree exactly on every frame.
///
/// # Errors
/// A description of the first frame on which they disagree.
pub fn verify(frames: &[Vec<u8>]) -> Result<usize, String> {
    let mut ours = Decoder::default();
    let mut tape_only = Decoder::default();
    let mut into = Decoder::default();
    let mut slot = Record::default();
    let mut baselines = baselines();
    let mut compared = 0;
    for pristine in frames {
        let text = String::from_utf8_lossy(pristine).into_owned();
        let mut frame = pristine.clone();
        let mut again = pristine.clone();
        let decoded = ours
            .decode(&mut frame)
            .map_err(|e| format!("kalshi-wire refused {text}: {e}"))?;
        let reference = tape_only.decode_tape_only(&mut again);
        if Ok(decoded) != reference {
            return Err(format!(
                "kalshi-wire's two paths disagree on {text}:\n  decode: {decoded:?}\n  tape-only: {reference:?}"
            ));
        }
        let mut third = pristine.clone();
        let aux = into
            .decode_into(&mut third, &mut slot)
            .map_err(|e| format!("kalshi-wire decode_into refused {text}: {e}"))?;
        if slot != decoded.record || aux != decoded.aux {
            return Err(format!(
                "kalshi-wire's decode_into disagrees on {text}:\n  decode: {decoded:?}\n  decode_into: {slot:?}"
            ));
        }
        for baseline in &mut baselines {
            let name = baseline.name;
            let normalized = baseline
                .normalize(pristine)
                .map_err(|e| format!("{name} refused {text}: {e:?}"))?;
            let same = match (&decoded.record, &normalized) {
                (Record::Delta(a), Normalized::Delta(b)) => a == b,
                (Record::Trade(a), Normalized::Trade(b)) => a == b,
                (Record::Ticker(a), Normalized::Ticker(b)) => a == b,
                (Record::Snapshot(a), Normalized::Snapshot(b)) => {
                    a == b && decoded.aux.levels() == baseline.levels.as_slice()
                }
                (Record::Control(_), Normalized::Control { .. })
                | (Record::MarketLifecycle(_), Normalized::Lifecycle { .. }) => true,
                _ => false,
            };
            if !same {
                return Err(format!(
                    "{name} disagrees on {text}:\n  ours: {:?}\n  {name}: {normalized:?}",
                    decoded.record
                ));
            }
            compared += 1;
        }
    }
    Ok(compared)
}
