//! Gatherer core: configuration, order books, per-subscription sequencing, subscription management, request signing.
