//! Fuzz target: the decoder's byte-level fast path against its simd-json path.
//!
//! Invariant (checked by `kalshi_wire::invariants::Checker::check_fast_path`): for every input,
//! `Decoder::decode` (fast path first), `Decoder::decode_tape_only` (simd-json only) and
//! `Decoder::decode_into` (into a record slot reused from one input to the next) give identical
//! results: the same record and auxiliary data, or the same error. No input panics.
#![no_main]

use kalshi_wire::invariants::Checker;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CHECKER: std::cell::RefCell<Checker> = std::cell::RefCell::new(Checker::default());
}

fuzz_target!(|data: &[u8]| {
    CHECKER.with(|checker| {
        if let Err(broken) = checker.borrow_mut().check_fast_path(data) {
            panic!("{broken}");
        }
    });
});
