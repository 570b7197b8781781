//! The library side of the operator CLI: [`platform`], the whole platform (simulator, three
//! gatherers, deduplicator, four PostgreSQL clusters) on loopback, used by `kalshi demo` and by
//! the fault suite in `tests/`.

pub mod platform;
