//! The rings from the producers (shard cores) to the writer, and the producers' handle.
//!
//! One bounded lock-free [`ArrayQueue`] per producer carries [`Row`]s by value. Boxed rows of
//! variable size come back through a second, per-producer free-list queue after the writer has
//! encoded them, so a producer that takes its boxes from [`Producer::snapshot_row`] and
//! [`Producer::lifecycle_row`] allocates nothing in steady state. Neither side takes a lock or
//! makes a system call per row.
//!
//! A full ring is backpressure: [`Producer::try_push`] hands the row back, never drops it. A
//! shard core reacts by not reading its sockets until there is room (glommio tasks poll
//! `try_push` and yield); plain threads may use [`Producer::push_wait`], which spins briefly and
//! then sleeps in short steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::rows::{LifecycleRow, Row, SnapshotRow};

/// Recycled boxes kept per producer and kind.
pub(crate) const FREE_LIST_CAPACITY: usize = 1024;

/// State shared by the writer thread and every producer.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Set by [`crate::Writer::shutdown`]: drain, flush, commit, exit.
    pub(crate) stop: AtomicBool,
    /// Cleared when the writer thread exits, for whatever reason.
    pub(crate) running: AtomicBool,
    /// Rows in batches appended to the spool since start: acknowledged rows.
    pub(crate) rows_spooled: AtomicU64,
}

/// The queues of one producer.
#[derive(Debug)]
pub(crate) struct RingSet {
    pub(crate) rows: ArrayQueue<Row>,
    pub(crate) free_snapshots: ArrayQueue<Box<SnapshotRow>>,
    pub(crate) free_lifecycles: ArrayQueue<Box<LifecycleRow>>,
}

impl RingSet {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            rows: ArrayQueue::new(capacity),
            free_snapshots: ArrayQueue::new(FREE_LIST_CAPACITY),
            free_lifecycles: ArrayQueue::new(FREE_LIST_CAPACITY),
        }
    }

    /// Give an encoded row's box back to its producer (dropped when the free list is full).
    pub(crate) fn recycle(&self, row: Row) {
        match row {
            Row::Snapshot(b) => {
                let _full = self.free_snapshots.push(b);
            }
            Row::Lifecycle(b) => {
                let _full = self.free_lifecycles.push(b);
            }
            _ => {}
        }
    }
}

/// Why a push did not happen. The row is handed back either way.
#[derive(Debug)]
pub enum PushError {
    /// The ring is full: backpressure. Try again later.
    Full(Row),
    /// The writer has stopped (shut down or failed); nothing will drain the ring.
    Closed(Row),
}

impl PushError {
    /// The row that was not pushed.
    #[must_use]
    pub fn into_row(self) -> Row {
        match self {
            PushError::Full(r) | PushError::Closed(r) => r,
        }
    }
}

/// A producer's end of its ring to the writer. One per shard core; `Send`, not `Clone`.
#[derive(Debug)]
pub struct Producer {
    index: usize,
    rings: Arc<RingSet>,
    shared: Arc<Shared>,
}

impl Producer {
    pub(crate) fn new(index: usize, rings: Arc<RingSet>, shared: Arc<Shared>) -> Self {
        Self {
            index,
            rings,
            shared,
        }
    }

    /// This producer's index (the `producer` label of the ring occupancy gauge).
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// Push a row without waiting.
    ///
    /// # Errors
    ///
    /// [`PushError::Full`] when the ring is full (backpressure), [`PushError::Closed`] when
    /// the writer is no longer running; the row comes back in both.
    // The row comes back by value so that a full ring costs no allocation.
    #[allow(clippy::result_large_err)]
    pub fn try_push(&self, row: Row) -> Result<(), PushError> {
        if !self.shared.running.load(Ordering::Acquire) {
            return Err(PushError::Closed(row));
        }
        self.rings.rows.push(row).map_err(PushError::Full)
    }

    /// Push a row, waiting up to `timeout` for room: spins for a few microseconds, then sleeps
    /// in 100 µs steps.
    ///
    /// # Errors
    ///
    /// As [`Producer::try_push`], after the timeout for [`PushError::Full`].
    #[allow(clippy::result_large_err)]
    pub fn push_wait(&self, row: Row, timeout: Duration) -> Result<(), PushError> {
        let mut row = match self.try_push(row) {
            Ok(()) => return Ok(()),
            Err(PushError::Full(r)) => r,
            Err(closed) => return Err(closed),
        };
        let deadline = Instant::now() + timeout;
        let mut spins = 0u32;
        loop {
            if spins < 64 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::sleep(Duration::from_micros(100));
            }
            row = match self.try_push(row) {
                Ok(()) => return Ok(()),
                Err(PushError::Full(r)) => r,
                Err(closed) => return Err(closed),
            };
            if spins >= 64 && Instant::now() >= deadline {
                return Err(PushError::Full(row));
            }
        }
    }

    /// A snapshot row to fill: a recycled one when available (its level buffers keep their
    /// capacity; contents are stale), else a new one.
    #[must_use]
    pub fn snapshot_row(&self) -> Box<SnapshotRow> {
        self.rings.free_snapshots.pop().unwrap_or_default()
    }

    /// A lifecycle row to fill: recycled when available, else new.
    #[must_use]
    pub fn lifecycle_row(&self) -> Box<LifecycleRow> {
        self.rings.free_lifecycles.pop().unwrap_or_default()
    }

    /// Rows waiting in this producer's ring.
    #[must_use]
    pub fn len(&self) -> usize {
        self.rings.rows.len()
    }

    /// Whether the ring is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rings.rows.is_empty()
    }

    /// The ring's capacity.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.rings.rows.capacity()
    }

    /// Whether the writer thread is still running.
    #[must_use]
    pub fn writer_running(&self) -> bool {
        self.shared.running.load(Ordering::Acquire)
    }
}
