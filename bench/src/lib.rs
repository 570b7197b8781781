//! # kalshi-bench: benchmarks of the platform against baselines run in the same process
//!
//! * [`frames`]: deterministic, realistic Kalshi frames (every message type, a legacy delta, and
//!   a realistic mix).
//! * [`baseline`]: the serde baselines (serde_json and sonic-rs, tagged and two-pass), normalizing
//!   into the same records as the product.
//! * [`decoders`]: the product and the baselines behind one [`decoders::FrameDecoder`] trait.
//! * [`alloc`]: a counting global allocator for allocation-per-frame measurements.
//!
//! The benchmarks themselves are in `benches/` (`cargo bench -p kalshi-bench --bench decode`);
//! see `README.md`.

pub mod alloc;
pub mod baseline;
pub mod decoders;
pub mod frames;
