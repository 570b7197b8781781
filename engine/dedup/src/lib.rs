//! # kalshi-dedup: the deduplicator's range-sync stage
//!
//! Three gatherers capture the same exchange events independently, each into its own local
//! database, and each misses a few. This crate merges their captures into production so that
//! production holds every event that any gatherer saw, exactly once (design §6).
//!
//! ## Layout
//!
//! * [`spec`] (sans-IO): per table, the column order, dedup key, time column and merge kind.
//! * [`merge`] (sans-IO): binary COPY streams in; merged tuples and order-independent
//!   [`merge::Fingerprint`]s out. Multiset union for deltas, tickers and lifecycle rows (the
//!   largest count any one gatherer has, numbered in `occurrence`), set union for trades
//!   (`trade_id`) and snapshots (one per gatherer), upsert for the gap ledger.
//! * [`plan`] (sans-IO): gatherer liveness from their durable watermarks, when a range closes,
//!   and which gatherer needs catching up.
//! * [`late`] (sans-IO): the late-row scan, which finds merged ranges that received rows
//!   afterwards, by arrival time.
//! * [`config`]: the TOML configuration, validated at start.
//! * [`service`]: the I/O: reads gatherers with `COPY ... TO STDOUT (FORMAT binary)`, writes
//!   each job (one or more ranges) to production in one transaction together with its
//!   fingerprints and cursors, and keeps going through outages.
//! * [`metrics`], [`http`]: `/metrics`, `/health`, `/admin/recheck`.
//!
//! ## Watermarks
//!
//! A gatherer's durable watermark is `max(batch_id)` of its writer's rows in
//! `writer_batches`. kalshi-writer commits batches in order, each with its marker in the same
//! transaction, and a batch id is the writer's *arrival floor* at sealing: a time by which every
//! ring had been seen empty, so every row pushed before it is in that batch or an earlier one.
//! Producers stamp `received_ts` before they push, so every row the gatherer received before the
//! watermark is committed, give or take the (microseconds) between stamping and pushing, which
//! the grace covers; time spent waiting in a backlogged ring no longer counts. Exchange time precedes receive time, so a range
//! of exchange time `[a, b)` is complete in that gatherer once its watermark passes
//! `b + grace`. The query is an index lookup on the primary key, unlike `max(received_ts)`,
//! which would scan the day's partition (the gatherer tables only have BRIN indexes). When the
//! writer has pruned every marker (an empty spool right after a restart) the last known
//! watermark is kept. An idle gatherer (no rows at all) does not advance its watermark; a
//! gatherer more than `down_after` behind the most advanced one is treated as down.
//!
//! ## Exactly once
//!
//! * A range's rows, its fingerprints in `dedup_ranges` and the cursors in `dedup_watermarks`
//!   commit in one transaction: after a crash the job is simply redone.
//! * Merged copies are numbered canonically (`occurrence` 0..k-1 per key), so production's
//!   unique keys plus `ON CONFLICT DO NOTHING` turn a repeated write into a no-op, and writing
//!   a gatherer's rows over what production holds yields the maximum of the two counts: the
//!   multiset union is idempotent and monotone.
//! * Trades are deduplicated on `trade_id` alone, also against trades production holds at
//!   another `exchange_ts` (the unique index has to include the partition column).
//! * A gatherer that was down is read again from where it left off (minus `late_window`) when
//!   it returns; ranges whose fingerprint for it is unchanged are skipped, changed ones are
//!   merged over production's rows, adding only the missing copies.
//!
//! ## Late rows
//!
//! A row can reach a gatherer's database after its range was merged while the gatherer stays
//! live: REST trade backfills after a gap arrive seconds to minutes late by design, and under
//! load WebSocket frames arrive more than `grace` after the exchange stamped them. Every
//! `late_scan_interval` each live gatherer is asked which ranges below its cursor received
//! rows since its **arrival cursor** (`received_ts`, persisted per gatherer in
//! `dedup_late_cursors`, served by BRIN indexes on `received_ts` on the gatherers); those
//! ranges go through the catch-up path again (fingerprint compare, then only missing copies
//! written), and the cursor advances in the same transaction as the last of them. This is
//! exact however late a row arrives (seconds or days), with the one assumption closing a range
//! already makes: a row is committed before its gatherer's watermark passes its `received_ts`
//! plus `grace`. Rows that the merge of their range is known to have read (arrived before the
//! probed watermark minus grace) are not candidates, so in steady state a scan finds nothing
//! and re-reads nothing. Details in [`late`].
//!
//! ## Lifecycle events
//!
//! Kalshi's lifecycle frames (`market_lifecycle_v2`, `event_lifecycle`) carry no event time,
//! so a gatherer stores its receive time as `exchange_ts`, and the three copies of one event
//! have three different keys. The merge therefore treats lifecycle copies with the same
//! content (ticker, event type, mve, payload without `sid`/`seq`) whose times are at most
//! `lifecycle_tolerance` (default 5 s) apart as one event ([`merge::merge_lifecycle`]):
//!
//! * multiset semantics: per content, each source's copies are matched in time order, each to
//!   the earliest unmatched production copy within the tolerance; an unmatched copy is
//!   written (with its own time). Production ends with, per cluster, the largest count any
//!   one gatherer has: one gatherer's two copies 2 s apart are two events;
//! * across ranges: the job reads production's lifecycle rows from `2 × tolerance` before to
//!   `tolerance` after it, and the sources' rows from `tolerance` before it (those only take
//!   part in the matching, so they keep the production copies they already matched), so a
//!   copy in the previous range counts;
//! * idempotent: a copy production already holds (the same one, or another within the
//!   tolerance) is matched, so a replay writes nothing.
//!
//! Limit: two genuinely distinct events with identical content within the tolerance collapse
//! into one **only if no single gatherer saw both** (a gatherer that saw both has two copies,
//! which the multiset rule keeps). Identical lifecycle payloads within seconds are rare in
//! the first place: `created`, `determined` and `settled` happen once per market;
//! `deactivated`/`activated` repeat only with the opposite event between them, i.e. a market
//! paused, resumed and paused again within the tolerance; `close_date_updated` carries the new
//! date, and a repeat with the same date changes nothing. Missing both copies of such a flap
//! from every gatherer but one each needs two capture losses within seconds. Events whose
//! payload carries their own time never collapse (different times, different content).
//! `lifecycle_tolerance_ms = 0` restores exact-time matching.

pub mod config;
pub mod http;
pub mod late;
pub mod merge;
pub mod metrics;
pub mod plan;
pub mod service;
pub mod spec;

pub use config::{Config, ConfigError, ConfigErrors, DbTarget, GathererTarget};
pub use merge::Fingerprint;
pub use metrics::DedupMetrics;
pub use plan::{GathererStatus, Planner};
pub use service::{DedupError, Deduplicator, HealthSnapshot, Shared, Totals};

/// The `source` of merged results in `dedup_ranges`, and the frontier's name in
/// `dedup_watermarks`. Not allowed as a gatherer name.
pub const MERGED_SOURCE: &str = "merged";
