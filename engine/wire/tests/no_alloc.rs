//! Steady state allocates nothing: after one warm-up pass over every recorded frame, decoding
//! them all again (and writing their canonical records into a reused buffer), with
//! `Decoder::decode` and with `Decoder::decode_into`, performs zero heap allocations. A counting global allocator observes every allocation of this test binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use kalshi_wire::{Decoder, Record, write_canonical};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn steady_state_decoding_does_not_allocate() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/data/kalshi/ws_samples.jsonl"
    );
    let frames: Vec<Vec<u8>> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::to_vec(&value["payload"]).unwrap()
        })
        .collect();
    let mut decoder = Decoder::default();
    let mut scratch: Vec<Vec<u8>> = frames.clone();
    let mut out = Vec::with_capacity(1 << 16);
    let mut slot = Record::default();
    let mut pass = |decoder: &mut Decoder, scratch: &mut Vec<Vec<u8>>, out: &mut Vec<u8>| {
        for (frame, pristine) in scratch.iter_mut().zip(&frames) {
            frame.copy_from_slice(pristine);
            out.clear();
            if let Ok(decoded) = decoder.decode(frame) {
                write_canonical(&decoded, out);
            }
            frame.copy_from_slice(pristine);
            let _ = decoder.decode_into(frame, &mut slot);
        }
    };
    pass(&mut decoder, &mut scratch, &mut out);
    pass(&mut decoder, &mut scratch, &mut out);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..100 {
        pass(&mut decoder, &mut scratch, &mut out);
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocations,
        0,
        "{allocations} allocations in 100 passes of {} frames",
        frames.len()
    );
}
