//! The deduplicator's range-sync stage: reads closed ranges from every gatherer database, merges them exactly, and feeds the writer core that writes production.
