//! The deduplicator service: merges the gatherers' databases into the production archive.

fn main() {}
