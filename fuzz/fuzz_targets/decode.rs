//! Fuzz target: arbitrary bytes into the Kalshi frame decoder.
//!
//! Invariants (checked by `kalshi_wire::invariants::Checker`):
//! * no input panics;
//! * an input that decodes renders back to a wire frame that decodes to the same canonical
//!   record (nothing the decoder keeps is lost or altered by the renderer).
#![no_main]

use kalshi_wire::invariants::Checker;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static CHECKER: std::cell::RefCell<Checker> = std::cell::RefCell::new(Checker::default());
}

fuzz_target!(|data: &[u8]| {
    CHECKER.with(|checker| {
        if let Err(broken) = checker.borrow_mut().check_frame(data) {
            panic!("{broken}");
        }
    });
});
