//! Book memory and allocation, measured with a counting global allocator:
//! * 10,000 books of 10–40 levels a side (random, seeded) hold ≤ 2 KiB each on average,
//!   counting the inline struct, the heap blocks the allocator handed out, and a BTreeMap
//!   index entry keyed by ticker, as a shard would keep them;
//! * once a book has its snapshot, deltas that update existing levels, remove levels, or add
//!   levels within the snapshot's headroom perform no allocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use kalshi_gather::book::Book;
use kalshi_wire::{Level, Side, Ticker};
use rand::{Rng, SeedableRng, rngs::StdRng};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls and bytes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn side(rng: &mut StdRng) -> Vec<Level> {
    let n = rng.random_range(10..=40);
    let start = rng.random_range(1..50);
    (0..n)
        .map(|i| Level {
            price_e6: (start + i) * 10_000,
            count_e2: rng.random_range(1..1_000_000),
        })
        .collect()
}

// One test function, so no other test thread allocates while we count.
#[test]
fn memory_per_market_and_no_allocation_per_delta() {
    let mut rng = StdRng::seed_from_u64(3);
    let inputs: Vec<(Ticker, Vec<Level>, Vec<Level>)> = (0..10_000)
        .map(|i| {
            let ticker = Ticker::new(&format!("KXSIM{i:05}-26NOV30-T{}.99", 1000 + i)).unwrap();
            (ticker, side(&mut rng), side(&mut rng))
        })
        .collect();
    let levels: usize = inputs.iter().map(|(_, y, n)| y.len() + n.len()).sum();

    let before = LIVE_BYTES.load(Ordering::Relaxed);
    let mut books: BTreeMap<Ticker, Book> = BTreeMap::new();
    for (ticker, yes, no) in &inputs {
        books
            .entry(*ticker)
            .or_default()
            .apply_snapshot(yes, no)
            .unwrap();
    }
    let heap = LIVE_BYTES.load(Ordering::Relaxed) - before;
    let per_market = heap as f64 / books.len() as f64;
    let book_heap: usize = books.values().map(Book::heap_bytes).sum();
    println!(
        "{} books, {:.1} levels/book: {per_market:.0} B/market total (index + book), \
         book heap {:.0} B/market, {} B inline book",
        books.len(),
        levels as f64 / books.len() as f64,
        book_heap as f64 / books.len() as f64,
        core::mem::size_of::<Book>()
    );
    assert!(per_market <= 2048.0, "{per_market} B per market");

    // Steady state: deltas on existing levels, removals, and additions within headroom.
    let tickers: Vec<Ticker> = inputs.iter().map(|(t, _, _)| *t).collect();
    let mut plan = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        let ticker = tickers[rng.random_range(0..tickers.len())];
        plan.push((ticker, rng.random_bool(0.5), rng.random_range(1..50_i64)));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    let mut applied = 0;
    for (ticker, yes, pick) in &plan {
        let book = books.get_mut(ticker).unwrap();
        let side = if *yes { Side::Yes } else { Side::No };
        let level = book
            .levels(side)
            .nth(*pick as usize % book.levels(side).len().max(1));
        let (price, delta) = match level {
            Some(level) if pick % 3 == 0 => (level.price_e6, -level.count_e2),
            Some(level) => (level.price_e6, pick * 7),
            None => (500_000, 100),
        };
        book.apply_delta(side, price, delta).unwrap();
        applied += 1;
    }
    let during = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    println!("{applied} deltas, {during} allocations");
    assert_eq!(during, 0);
}
