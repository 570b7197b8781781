//! Errors, and the classification of database errors into the `writer_errors_total{type}`
//! labels.
//!
//! # Classification
//!
//! | `type` | What | Examples (SQLSTATE) | What the writer does |
//! |---|---|---|---|
//! | `connection` | the database cannot be reached or dropped the session | no SQLSTATE (refused, reset, EOF, TLS, protocol), class `08`, `57P01`–`57P03` (shutdown, cannot connect now), class `53` (out of resources), `58` (system), `XX` (internal) | drop the connection, keep spooling, reconnect with backoff, replay in order |
//! | `timeout` | the statement was cancelled or could not get a lock in time, or the transaction was rolled back for serialization | `57014` query_canceled (statement_timeout), `55P03` lock_not_available (lock_timeout), class `40` (deadlock, serialization) | roll back, keep the batch in the spool, retry after a backoff |
//! | `constraint` | the data or the schema is wrong | class `23` (integrity: unique, not null, check), class `22` (data: bad JSON, NUL in text, out of range) — *row-level*; class `42` (undefined table/column, insufficient privilege), `0A` and anything else — *schema-level* | row-level: isolate the bad rows by bisection with savepoints, commit the rest, move the bad rows to the dead-letter log; schema-level: keep the batch, retry after a backoff, log an error each time (an operator must fix the schema or grants; the spool fills and then backpressure stops ingest, nothing is dropped) |

use std::fmt;
use std::path::PathBuf;

use postgres::error::SqlState;

use crate::copy::Table;

/// The `type` label of `writer_errors_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The database is unreachable or the session broke.
    Connection,
    /// Rejected data, or a schema/permission mismatch.
    Constraint,
    /// A statement or lock timeout, or a rolled-back serialization conflict.
    Timeout,
}

impl ErrorKind {
    /// The label value.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Connection => "connection",
            ErrorKind::Constraint => "constraint",
            ErrorKind::Timeout => "timeout",
        }
    }

    /// Every kind, for initializing the metric's label set.
    pub const ALL: [ErrorKind; 3] = [
        ErrorKind::Connection,
        ErrorKind::Constraint,
        ErrorKind::Timeout,
    ];
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Classify a client error (see the module table).
#[must_use]
pub fn classify(err: &postgres::Error) -> ErrorKind {
    if err.is_closed() {
        return ErrorKind::Connection;
    }
    match err.code() {
        None => ErrorKind::Connection,
        Some(code) => classify_sqlstate(code),
    }
}

/// Classify a SQLSTATE (see the module table).
#[must_use]
pub fn classify_sqlstate(code: &SqlState) -> ErrorKind {
    let s = code.code();
    if *code == SqlState::QUERY_CANCELED || *code == SqlState::LOCK_NOT_AVAILABLE {
        return ErrorKind::Timeout;
    }
    match s.get(..2).unwrap_or("") {
        "08" | "53" | "58" | "XX" => ErrorKind::Connection,
        "57" => ErrorKind::Connection,
        "40" => ErrorKind::Timeout,
        _ => ErrorKind::Constraint,
    }
}

/// Whether a constraint-class error is about particular rows (class 22 or 23), so that
/// isolating the rows can succeed, as opposed to the schema or permissions.
#[must_use]
pub fn is_row_level(err: &postgres::Error) -> bool {
    matches!(
        err.code().map(|c| c.code().get(..2).unwrap_or("")),
        Some("22" | "23")
    )
}

/// A database failure, with what the writer was doing.
#[derive(Debug)]
pub struct DbFailure {
    /// The classification.
    pub kind: ErrorKind,
    /// The SQLSTATE, when the server sent one.
    pub sqlstate: Option<String>,
    /// The table being written, when the failure concerns one.
    pub table: Option<Table>,
    /// The batch.
    pub batch_id: Option<u64>,
    /// What the writer was doing.
    pub action: &'static str,
    /// The server's message with detail, or the client error.
    pub message: String,
}

impl DbFailure {
    /// Describe `err` raised while doing `action`.
    pub(crate) fn new(
        err: &postgres::Error,
        action: &'static str,
        table: Option<Table>,
        batch_id: Option<u64>,
    ) -> Self {
        let message = match err.as_db_error() {
            Some(db) => {
                let mut m = db.message().to_owned();
                if let Some(d) = db.detail() {
                    m.push_str(" (detail: ");
                    m.push_str(d);
                    m.push(')');
                }
                if let Some(c) = db.constraint() {
                    m.push_str(" (constraint: ");
                    m.push_str(c);
                    m.push(')');
                }
                m
            }
            None => err.to_string(),
        };
        Self {
            kind: classify(err),
            sqlstate: err.code().map(|c| c.code().to_owned()),
            table,
            batch_id,
            action,
            message,
        }
    }
}

impl fmt::Display for DbFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writer {} error while {}", self.kind, self.action)?;
        if let Some(t) = self.table {
            write!(f, " (table {})", t.name())?;
        }
        if let Some(b) = self.batch_id {
            write!(f, " (batch {b})")?;
        }
        if let Some(s) = &self.sqlstate {
            write!(f, ": SQLSTATE {s}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Errors of the writer that stop it or refuse its start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriterError {
    /// A configuration value is out of range.
    #[error("invalid writer configuration {key}: {reason}")]
    Config {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A spool file operation failed.
    #[error("writer spool: could not {action} {}: {source}", path.display())]
    SpoolIo {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Another writer holds the spool directory.
    #[error(
        "writer spool directory {} is locked by another writer process; each writer needs its own",
        dir.display()
    )]
    SpoolLocked {
        /// The directory.
        dir: PathBuf,
    },
    /// A spool record that passed recovery could not be read back intact.
    #[error("writer spool: record at byte {offset} of {} is corrupt: {reason}", path.display())]
    SpoolCorrupt {
        /// The segment.
        path: PathBuf,
        /// The record offset.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Pinning the writer thread failed.
    #[error("could not pin the writer thread to core {core}: {reason}")]
    Pin {
        /// The core.
        core: usize,
        /// Why.
        reason: String,
    },
    /// The thread could not be started.
    #[error("could not start the writer thread: {0}")]
    Spawn(std::io::Error),
    /// The writer thread panicked (a bug).
    #[error("the writer thread panicked: {0}")]
    Panicked(String),
    /// An internal invariant failed (a bug).
    #[error("writer internal error: {0}")]
    Internal(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;

    // Checks the documented mapping on representative SQLSTATEs of each class.
    #[test]
    fn sqlstate_mapping() {
        let c = |s: &str| classify_sqlstate(&SqlState::from_code(s));
        assert_eq!(c("57014"), ErrorKind::Timeout);
        assert_eq!(c("55P03"), ErrorKind::Timeout);
        assert_eq!(c("40P01"), ErrorKind::Timeout);
        assert_eq!(c("08006"), ErrorKind::Connection);
        assert_eq!(c("57P01"), ErrorKind::Connection);
        assert_eq!(c("53100"), ErrorKind::Connection);
        assert_eq!(c("23505"), ErrorKind::Constraint);
        assert_eq!(c("22P02"), ErrorKind::Constraint);
        assert_eq!(c("42501"), ErrorKind::Constraint);
        assert_eq!(c("42P01"), ErrorKind::Constraint);
    }
}
