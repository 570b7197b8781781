//! # kalshi-gather: the gatherer's core, sans IO
//!
//! Everything the gatherer decides, with none of its I/O: no sockets, no threads, no clock, no
//! randomness of its own. Time comes in as `now_us` arguments (µs since the Unix epoch), random
//! jitter from seeded generators, frames as decoded [`kalshi_wire::Record`]s; decisions come out
//! as values (commands to send, actions to take, rows to write). The binary wires these to
//! glommio shard executors, WebSockets, the COPY writer and the HTTP endpoints.
//!
//! ## Layout
//! * [`config`]: the gatherer's TOML configuration, validated with errors that name the key.
//! * [`key`]: [`MarketKey`], the shared ticker that long-lived per-market state is keyed by.
//! * [`shard`]: [`shard_for`], the pure ticker → shard-core function.
//! * [`book`]: the compact per-market [`Book`] and its integrity checks.
//! * [`seq`]: per-subscription [`SeqTracker`] and the [`GapEvent`] ledger row.
//! * [`subs`]: the per-connection [`SubscriptionManager`] (commands, sids, resync plans).
//! * [`backoff`]: reconnect [`Backoff`] and connection failure classification.
//! * [`registry`]: the [`MarketRegistry`] of open markets (REST discovery + lifecycle).
//! * [`poller`]: the REST snapshot [`SnapshotPoller`] schedule and trade [`BackfillQueue`].
//! * [`rate`]: the integer token bucket [`RateLimiter`] shared by commands and REST reads.

pub mod backoff;
pub mod book;
pub mod config;
pub mod key;
pub mod poller;
pub mod rate;
pub mod registry;
pub mod seq;
pub mod shard;
pub mod subs;

pub use backoff::{Backoff, BackoffConfig, FailureKind, RetryDecision, auth_failure_message};
pub use book::{Book, BookError, BookState, Comparison, LevelDifference};
pub use config::{Config, ConfigError, ConfigErrors};
pub use key::{MarketKey, market_key};
pub use poller::{BackfillDone, BackfillQueue, BackfillRequest, RestBudget, SnapshotPoller};
pub use rate::RateLimiter;
pub use registry::{EventInfo, MarketDelta, MarketInfo, MarketRegistry, RegistryError};
pub use seq::{GapEvent, Repair, SeqOutcome, SeqTracker};
pub use shard::shard_for;
pub use subs::{
    Action, BackfillCause, Channel, CommandKind, DropReason, Sent, SubsConfig, SubsStats,
    SubscriptionManager, Verdict,
};
