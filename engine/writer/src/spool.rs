//! The disk spool: an append-only, length-prefixed, CRC-checked log of sealed batches.
//!
//! Every sealed batch is appended here *before* its transaction starts (write-ahead), and is
//! forgotten only after the commit that carries its marker in `writer_batches`. So the spool
//! holds exactly the batches that may not be in the database yet: one or two while the database
//! keeps up, everything since the outage while it does not.
//!
//! # Layout
//!
//! A directory holding `LOCK` (held with `flock` by the one writer using the directory),
//! segment files `seg-<first batch id, 20 digits>.ksp` and `dead-letters.ksp`. A segment starts
//! with the 8-byte header `KSPOOL\0\x01` and is a sequence of records:
//!
//! ```text
//! magic u32 LE (0x4C50534B, "KSPL") | payload length u32 LE | CRC-32 (IEEE) of payload u32 LE | payload
//! payload = batch id u64 LE | created µs i64 LE | rows u64 LE | section count u8
//!           | per section: table u8 | rows u32 LE | body length u32 LE | COPY body
//! ```
//!
//! A segment is closed when it would grow past the segment size and deleted once every batch in
//! it has committed. A new segment is started on every open, so appends never touch a file
//! written by a previous process.
//!
//! # Recovery
//!
//! Opening the spool (at [`crate::Writer::start`]) reads every segment and checks every record. At the first record that is
//! incomplete (a crash mid-append), has a bad magic, an impossible length, a CRC mismatch or a
//! payload that does not parse, it truncates the segment there, keeps the intact records before
//! it, and reports the cut in [`SpoolRecovery::problems`]. A torn tail is the normal result of a
//! crash during an append; that batch had not started committing, so nothing acknowledged is
//! lost.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::batch::Batch;
use crate::copy::{TABLE_COUNT, Table};
use crate::error::WriterError;

/// First bytes of every segment: name and format version.
const SEGMENT_HEADER: &[u8; 8] = b"KSPOOL\0\x01";
/// First bytes of every record.
const RECORD_MAGIC: u32 = 0x4C50_534B;
/// Record header: magic, payload length, CRC.
const RECORD_HEADER_LEN: usize = 12;
/// Fixed part of a payload: id, created, rows, section count.
const PAYLOAD_FIXED_LEN: usize = 8 + 8 + 8 + 1;
/// Per-section header: table, rows, length.
const SECTION_HEADER_LEN: usize = 1 + 4 + 4;
/// Largest payload accepted when reading (a sanity bound against garbage lengths).
const PAYLOAD_MAX: u32 = 1 << 30;
/// File name of the dead-letter log.
pub const DEAD_LETTER_FILE: &str = "dead-letters.ksp";

/// Spool settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The directory; created if missing. One writer per directory (enforced by a lock).
    pub dir: PathBuf,
    /// Upper bound on the bytes of all segments. When the next batch would not fit, the writer
    /// stops sealing batches and so stops draining the rings: producers see full rings.
    /// Default 2 GiB.
    pub max_bytes: u64,
    /// Size at which a segment is closed and a new one started. Default 64 MiB.
    pub segment_bytes: u64,
    /// `fdatasync` every append (and the directory on segment creation). Off by default: the
    /// spool then survives a crash of the writer process (the data is in the page cache) but
    /// not of the machine. On costs one `fdatasync` per batch.
    pub fsync: bool,
}

impl SpoolConfig {
    /// Defaults for `dir`.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_bytes: 2 << 30,
            segment_bytes: 64 << 20,
            fsync: false,
        }
    }
}

/// A place where recovery cut a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolProblem {
    /// The segment.
    pub path: PathBuf,
    /// Byte offset of the first bad record; the file was truncated there.
    pub offset: u64,
    /// Bytes removed.
    pub dropped_bytes: u64,
    /// What was wrong.
    pub reason: String,
}

/// What opening the spool found (see [`crate::Writer::recovery`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpoolRecovery {
    /// Segments found.
    pub segments: usize,
    /// Intact batches found (committed or not; the writer asks the database which).
    pub batches: usize,
    /// Rows in them.
    pub rows: u64,
    /// Torn or corrupt tails that were truncated.
    pub problems: Vec<SpoolProblem>,
}

/// A spooled batch not known to be committed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) id: u64,
    pub(crate) created_us: i64,
    pub(crate) rows: u64,
    segment: u64,
    offset: u64,
}

#[derive(Debug)]
struct Segment {
    key: u64,
    path: PathBuf,
    bytes: u64,
    uncommitted: usize,
}

/// The spool (see the module documentation).
#[derive(Debug)]
pub(crate) struct Spool {
    cfg: SpoolConfig,
    _lock: File,
    segments: VecDeque<Segment>,
    /// The segment being appended to (always `segments.back()` when set).
    active: Option<BufWriter<File>>,
    pending: VecDeque<Pending>,
    total_bytes: u64,
    /// Read handle of the last segment read from, by key.
    reader: Option<(u64, File)>,
    read_buf: Vec<u8>,
}

fn io_err(action: &'static str, path: &Path, source: std::io::Error) -> WriterError {
    WriterError::SpoolIo {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl Spool {
    /// Open (or create) the spool in `cfg.dir`, lock it, and recover what is there.
    pub(crate) fn open(cfg: SpoolConfig) -> Result<(Spool, SpoolRecovery), WriterError> {
        fs::create_dir_all(&cfg.dir)
            .map_err(|e| io_err("create the spool directory", &cfg.dir, e))?;
        let lock_path = cfg.dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("open the spool lock file", &lock_path, e))?;
        lock.try_lock().map_err(|_| WriterError::SpoolLocked {
            dir: cfg.dir.clone(),
        })?;

        let mut names: Vec<(u64, PathBuf)> = fs::read_dir(&cfg.dir)
            .map_err(|e| io_err("list the spool directory", &cfg.dir, e))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name
                    .strip_prefix("seg-")?
                    .strip_suffix(".ksp")?
                    .parse()
                    .ok()?;
                Some((key, e.path()))
            })
            .collect();
        names.sort();

        let mut spool = Spool {
            cfg,
            _lock: lock,
            segments: VecDeque::new(),
            active: None,
            pending: VecDeque::new(),
            total_bytes: 0,
            reader: None,
            read_buf: Vec::new(),
        };
        let mut recovery = SpoolRecovery {
            segments: names.len(),
            ..SpoolRecovery::default()
        };
        for (key, path) in names {
            let (entries, good_len, problem) = scan_segment(&path)?;
            if let Some(problem) = problem {
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("open a damaged spool segment", &path, e))?;
                file.set_len(good_len)
                    .map_err(|e| io_err("truncate a damaged spool segment", &path, e))?;
                file.sync_all()
                    .map_err(|e| io_err("sync a truncated spool segment", &path, e))?;
                recovery.problems.push(problem);
            }
            if entries.is_empty() {
                fs::remove_file(&path)
                    .map_err(|e| io_err("remove an empty spool segment", &path, e))?;
                continue;
            }
            recovery.batches += entries.len();
            for (id, created_us, rows, offset) in &entries {
                recovery.rows += rows;
                spool.pending.push_back(Pending {
                    id: *id,
                    created_us: *created_us,
                    rows: *rows,
                    segment: key,
                    offset: *offset,
                });
            }
            spool.total_bytes += good_len;
            spool.segments.push_back(Segment {
                key,
                path,
                bytes: good_len,
                uncommitted: entries.len(),
            });
        }
        Ok((spool, recovery))
    }

    /// The spool's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.cfg.dir
    }

    /// Bytes of all segments.
    pub(crate) fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Batches not known to be committed, oldest first.
    pub(crate) fn pending(&self) -> &VecDeque<Pending> {
        &self.pending
    }

    /// The largest batch id in the spool.
    pub(crate) fn max_id(&self) -> Option<u64> {
        self.pending.iter().map(|p| p.id).max()
    }

    /// The smallest batch id that may still be in a segment file (committed or not).
    pub(crate) fn oldest_id_on_disk(&self) -> Option<u64> {
        self.segments.front().map(|s| s.key)
    }

    /// Whether a batch of `body_bytes` fits under the size bound. An empty spool always accepts
    /// one batch, so that a batch larger than the bound cannot wedge the writer.
    pub(crate) fn has_room(&self, body_bytes: usize) -> bool {
        let need =
            (RECORD_HEADER_LEN + PAYLOAD_FIXED_LEN + TABLE_COUNT * SECTION_HEADER_LEN + body_bytes)
                as u64;
        self.pending.is_empty() || self.total_bytes + need <= self.cfg.max_bytes
    }

    /// Append a sealed batch (its `id` and `created_us` set).
    pub(crate) fn append(&mut self, batch: &Batch) -> Result<(), WriterError> {
        let sections: Vec<(Table, &crate::batch::Section)> = batch.tables().collect();
        let payload_len = PAYLOAD_FIXED_LEN
            + sections
                .iter()
                .map(|(_, s)| SECTION_HEADER_LEN + s.body.len())
                .sum::<usize>();
        let record_len = (RECORD_HEADER_LEN + payload_len) as u64;

        let roll = match self.segments.back() {
            Some(seg) => {
                self.active.is_none()
                    || (seg.bytes > SEGMENT_HEADER.len() as u64
                        && seg.bytes + record_len > self.cfg.segment_bytes)
            }
            None => true,
        };
        if roll {
            self.close_active()?;
            self.create_segment(batch.id)?;
        }

        let mut fixed = [0u8; PAYLOAD_FIXED_LEN];
        fixed[..8].copy_from_slice(&batch.id.to_le_bytes());
        fixed[8..16].copy_from_slice(&batch.created_us.to_le_bytes());
        fixed[16..24].copy_from_slice(&batch.rows().to_le_bytes());
        fixed[24] = sections.len() as u8;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&fixed);
        let mut headers = Vec::with_capacity(sections.len());
        for (table, s) in &sections {
            let mut h = [0u8; SECTION_HEADER_LEN];
            h[0] = *table as u8;
            h[1..5].copy_from_slice(&s.rows.to_le_bytes());
            h[5..9].copy_from_slice(&(s.body.len() as u32).to_le_bytes());
            crc.update(&h);
            crc.update(&s.body);
            headers.push(h);
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        head[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
        head[8..12].copy_from_slice(&crc.finalize().to_le_bytes());

        let (key, path, offset) = match self.segments.back() {
            Some(seg) => (seg.key, seg.path.clone(), seg.bytes),
            None => return Err(WriterError::Internal("spool has no active segment")),
        };
        let Some(out) = self.active.as_mut() else {
            return Err(WriterError::Internal("spool has no active segment"));
        };
        let written = (|| -> std::io::Result<()> {
            out.write_all(&head)?;
            out.write_all(&fixed)?;
            for ((_, s), h) in sections.iter().zip(&headers) {
                out.write_all(h)?;
                out.write_all(&s.body)?;
            }
            out.flush()?;
            if self.cfg.fsync {
                out.get_ref().sync_data()?;
            }
            Ok(())
        })();
        if let Err(source) = written {
            // Cut the partial record so the segment stays well-formed, and start over in a new
            // segment next time.
            if let Some(w) = self.active.take() {
                let (file, _) = w.into_parts();
                let _ignored = file.set_len(offset);
            }
            return Err(io_err("append a batch to spool segment", &path, source));
        }
        if let Some(seg) = self.segments.back_mut() {
            seg.bytes += record_len;
            seg.uncommitted += 1;
        }
        self.total_bytes += record_len;
        self.pending.push_back(Pending {
            id: batch.id,
            created_us: batch.created_us,
            rows: batch.rows(),
            segment: key,
            offset,
        });
        Ok(())
    }

    fn create_segment(&mut self, key: u64) -> Result<(), WriterError> {
        let path = self.cfg.dir.join(format!("seg-{key:020}.ksp"));
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("create spool segment", &path, e))?;
        if let Err(e) = file.write_all(SEGMENT_HEADER) {
            // Disk full: leave no untracked file behind, or every retry with the same key
            // would fail on it with "File exists" for good.
            drop(file);
            let _ignored = fs::remove_file(&path);
            return Err(io_err("write the header of spool segment", &path, e));
        }
        if self.cfg.fsync {
            file.sync_all()
                .map_err(|e| io_err("sync spool segment", &path, e))?;
            if let Ok(dir) = File::open(&self.cfg.dir) {
                let _ignored = dir.sync_all();
            }
        }
        self.total_bytes += SEGMENT_HEADER.len() as u64;
        self.segments.push_back(Segment {
            key,
            path,
            bytes: SEGMENT_HEADER.len() as u64,
            uncommitted: 0,
        });
        self.active = Some(BufWriter::with_capacity(256 << 10, file));
        Ok(())
    }

    /// Stop appending to the active segment; delete every segment that holds nothing
    /// uncommitted. That includes one left without an active writer by a failed append (disk
    /// full), whose key the retry of the same batch would otherwise collide with.
    fn close_active(&mut self) -> Result<(), WriterError> {
        self.active = None;
        self.delete_drained()?;
        Ok(())
    }

    /// Delete closed segments with nothing uncommitted. Returns how many were deleted.
    fn delete_drained(&mut self) -> Result<usize, WriterError> {
        let active_key = if self.active.is_some() {
            self.segments.back().map(|s| s.key)
        } else {
            None
        };
        let mut deleted = 0;
        let mut i = 0;
        while i < self.segments.len() {
            let seg = &self.segments[i];
            if seg.uncommitted == 0 && Some(seg.key) != active_key {
                fs::remove_file(&seg.path)
                    .map_err(|e| io_err("delete committed spool segment", &seg.path, e))?;
                self.total_bytes -= seg.bytes;
                if self.reader.as_ref().is_some_and(|(k, _)| *k == seg.key) {
                    self.reader = None;
                }
                self.segments.remove(i);
                deleted += 1;
            } else {
                i += 1;
            }
        }
        Ok(deleted)
    }

    /// Record that batch `id` is committed. Returns the number of segment files deleted as a
    /// result (their markers can then be pruned).
    pub(crate) fn mark_committed(&mut self, id: u64) -> Result<usize, WriterError> {
        let Some(pos) = self.pending.iter().position(|p| p.id == id) else {
            return Ok(0);
        };
        let Some(p) = self.pending.remove(pos) else {
            return Ok(0);
        };
        if let Some(seg) = self.segments.iter_mut().find(|s| s.key == p.segment) {
            seg.uncommitted = seg.uncommitted.saturating_sub(1);
        }
        self.delete_drained()
    }

    /// Read pending batch `p` back into `into`.
    pub(crate) fn read(&mut self, p: &Pending, into: &mut Batch) -> Result<(), WriterError> {
        let Some(seg) = self.segments.iter().find(|s| s.key == p.segment) else {
            return Err(WriterError::Internal("pending batch without its segment"));
        };
        let path = seg.path.clone();
        if let Some(w) = self.active.as_mut() {
            w.flush()
                .map_err(|e| io_err("flush spool segment", &path, e))?;
        }
        if self.reader.as_ref().is_none_or(|(k, _)| *k != p.segment) {
            let file = File::open(&path).map_err(|e| io_err("open spool segment", &path, e))?;
            self.reader = Some((p.segment, file));
        }
        let Some((_, file)) = self.reader.as_mut() else {
            return Err(WriterError::Internal("spool reader vanished"));
        };
        file.seek(SeekFrom::Start(p.offset))
            .map_err(|e| io_err("seek in spool segment", &path, e))?;
        let mut head = [0u8; RECORD_HEADER_LEN];
        file.read_exact(&mut head)
            .map_err(|e| io_err("read a record header from spool segment", &path, e))?;
        let (len, crc) =
            parse_record_header(&head).map_err(|reason| WriterError::SpoolCorrupt {
                path: path.clone(),
                offset: p.offset,
                reason,
            })?;
        self.read_buf.resize(len as usize, 0);
        file.read_exact(&mut self.read_buf)
            .map_err(|e| io_err("read a record from spool segment", &path, e))?;
        if crc32fast::hash(&self.read_buf) != crc {
            return Err(WriterError::SpoolCorrupt {
                path,
                offset: p.offset,
                reason: "CRC mismatch on re-read".to_owned(),
            });
        }
        parse_payload(&self.read_buf, Some(into)).map_err(|reason| WriterError::SpoolCorrupt {
            path,
            offset: p.offset,
            reason,
        })?;
        Ok(())
    }
}

fn parse_record_header(head: &[u8; RECORD_HEADER_LEN]) -> Result<(u32, u32), String> {
    let word = |i: usize| u32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
    if word(0) != RECORD_MAGIC {
        return Err(format!("bad record magic {:#010x}", word(0)));
    }
    let len = word(4);
    if (len as usize) < PAYLOAD_FIXED_LEN || len > PAYLOAD_MAX {
        return Err(format!("impossible record length {len}"));
    }
    Ok((len, word(8)))
}

/// Parse a payload; fill `into` when given. Returns (id, created, rows).
fn parse_payload(p: &[u8], mut into: Option<&mut Batch>) -> Result<(u64, i64, u64), String> {
    let u64_at = |i: usize| p.get(i..i + 8).and_then(|s| <[u8; 8]>::try_from(s).ok());
    let (Some(id), Some(created), Some(rows), Some(&count)) =
        (u64_at(0), u64_at(8), u64_at(16), p.get(24))
    else {
        return Err("payload shorter than its fixed part".to_owned());
    };
    let (id, created, rows) = (
        u64::from_le_bytes(id),
        i64::from_le_bytes(created),
        u64::from_le_bytes(rows),
    );
    if let Some(b) = into.as_deref_mut() {
        b.clear();
        b.id = id;
        b.created_us = created;
    }
    let mut pos = PAYLOAD_FIXED_LEN;
    let mut total = 0u64;
    for _ in 0..count {
        let Some(h) = p.get(pos..pos + SECTION_HEADER_LEN) else {
            return Err("section header runs past the payload".to_owned());
        };
        let table = Table::from_u8(h[0]).ok_or_else(|| format!("unknown table id {}", h[0]))?;
        let srows = u32::from_le_bytes([h[1], h[2], h[3], h[4]]);
        let len = u32::from_le_bytes([h[5], h[6], h[7], h[8]]) as usize;
        pos += SECTION_HEADER_LEN;
        let Some(body) = p.get(pos..pos + len) else {
            return Err(format!("section of {} runs past the payload", table.name()));
        };
        pos += len;
        total += u64::from(srows);
        if let Some(b) = into.as_deref_mut() {
            let s = &mut b.sections[table as usize];
            s.rows = srows;
            s.body.extend_from_slice(body);
        }
    }
    if pos != p.len() {
        return Err("trailing bytes after the last section".to_owned());
    }
    if total != rows {
        return Err(format!(
            "row count {rows} does not match its sections ({total})"
        ));
    }
    Ok((id, created, rows))
}

type Entries = Vec<(u64, i64, u64, u64)>;

/// Read a whole segment. Returns the intact records (id, created, rows, offset), the length of
/// the intact prefix, and the problem that ended it, if any.
fn scan_segment(path: &Path) -> Result<(Entries, u64, Option<SpoolProblem>), WriterError> {
    let file = File::open(path).map_err(|e| io_err("open spool segment", path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| io_err("stat spool segment", path, e))?
        .len();
    let mut r = BufReader::with_capacity(1 << 20, file);
    let problem = |offset: u64, reason: String| SpoolProblem {
        path: path.to_path_buf(),
        offset,
        dropped_bytes: file_len - offset,
        reason,
    };
    let mut header = [0u8; 8];
    if file_len < 8 || r.read_exact(&mut header).is_err() || &header != SEGMENT_HEADER {
        return Ok((
            Vec::new(),
            0,
            Some(problem(0, "missing or bad segment header".to_owned())),
        ));
    }
    let mut entries = Vec::new();
    let mut offset = SEGMENT_HEADER.len() as u64;
    let mut payload = Vec::new();
    while offset < file_len {
        if file_len - offset < RECORD_HEADER_LEN as u64 {
            return Ok((
                entries,
                offset,
                Some(problem(offset, "torn record header".to_owned())),
            ));
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        r.read_exact(&mut head)
            .map_err(|e| io_err("read spool segment", path, e))?;
        let (len, crc) = match parse_record_header(&head) {
            Ok(v) => v,
            Err(reason) => return Ok((entries, offset, Some(problem(offset, reason)))),
        };
        if file_len - offset - (RECORD_HEADER_LEN as u64) < u64::from(len) {
            return Ok((
                entries,
                offset,
                Some(problem(
                    offset,
                    format!("torn record: {len} payload bytes announced"),
                )),
            ));
        }
        payload.resize(len as usize, 0);
        r.read_exact(&mut payload)
            .map_err(|e| io_err("read spool segment", path, e))?;
        if crc32fast::hash(&payload) != crc {
            return Ok((
                entries,
                offset,
                Some(problem(offset, "CRC mismatch".to_owned())),
            ));
        }
        match parse_payload(&payload, None) {
            Ok((id, created, rows)) => entries.push((id, created, rows, offset)),
            Err(reason) => return Ok((entries, offset, Some(problem(offset, reason)))),
        }
        offset += (RECORD_HEADER_LEN + len as usize) as u64;
    }
    Ok((entries, offset, None))
}

/// A row the database rejected, kept in the dead-letter log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The batch it came from.
    pub batch_id: u64,
    /// Its table.
    pub table: Table,
    /// The SQLSTATE of the rejection.
    pub sqlstate: String,
    /// The server's message.
    pub message: String,
    /// The tuple in binary COPY format (field count, then fields); see
    /// [`crate::copy::tuple_fields`].
    pub tuple: Vec<u8>,
}

/// Append dead letters to `dir/dead-letters.ksp` and sync it.
pub(crate) fn append_dead_letters(dir: &Path, letters: &[DeadLetter]) -> Result<u64, WriterError> {
    let path = dir.join(DEAD_LETTER_FILE);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| io_err("open the dead-letter log", &path, e))?;
    let mut out = BufWriter::new(file);
    let mut written = 0u64;
    for l in letters {
        let msg = l.message.as_bytes();
        let msg = &msg[..msg.len().min(u16::MAX as usize)];
        let mut payload = Vec::with_capacity(8 + 1 + 5 + 2 + msg.len() + l.tuple.len());
        payload.extend_from_slice(&l.batch_id.to_le_bytes());
        payload.push(l.table as u8);
        let mut state = [b' '; 5];
        for (d, s) in state.iter_mut().zip(l.sqlstate.bytes()) {
            *d = s;
        }
        payload.extend_from_slice(&state);
        payload.extend_from_slice(&(msg.len() as u16).to_le_bytes());
        payload.extend_from_slice(msg);
        payload.extend_from_slice(&l.tuple);
        let mut head = [0u8; RECORD_HEADER_LEN];
        head[..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        head[4..8].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[8..12].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.write_all(&head)
            .and_then(|()| out.write_all(&payload))
            .map_err(|e| io_err("append to the dead-letter log", &path, e))?;
        written += (head.len() + payload.len()) as u64;
    }
    out.flush()
        .map_err(|e| io_err("write the dead-letter log", &path, e))?;
    out.get_ref()
        .sync_data()
        .map_err(|e| io_err("sync the dead-letter log", &path, e))?;
    Ok(written)
}

/// Read the dead-letter log of spool directory `dir` (empty when there is none). A torn tail
/// is ignored.
///
/// # Errors
///
/// [`WriterError::SpoolIo`] when the file exists but cannot be read.
pub fn read_dead_letters(dir: &Path) -> Result<Vec<DeadLetter>, WriterError> {
    let path = dir.join(DEAD_LETTER_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read the dead-letter log", &path, e)),
    };
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(head) = bytes
        .get(pos..pos + RECORD_HEADER_LEN)
        .and_then(|h| <[u8; RECORD_HEADER_LEN]>::try_from(h).ok())
    {
        let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
        let Some(p) = bytes.get(pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + len) else {
            break;
        };
        if u32::from_le_bytes([head[0], head[1], head[2], head[3]]) != RECORD_MAGIC
            || crc32fast::hash(p) != crc
            || p.len() < 16
        {
            break;
        }
        let batch_id = u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]);
        let Some(table) = Table::from_u8(p[8]) else {
            break;
        };
        let sqlstate = String::from_utf8_lossy(&p[9..14]).trim().to_owned();
        let mlen = usize::from(u16::from_le_bytes([p[14], p[15]]));
        let Some(message) = p.get(16..16 + mlen) else {
            break;
        };
        out.push(DeadLetter {
            batch_id,
            table,
            sqlstate,
            message: String::from_utf8_lossy(message).into_owned(),
            tuple: p[16 + mlen..].to_vec(),
        });
        pos += RECORD_HEADER_LEN + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{DeltaRow, Row};
    use kalshi_wire::Ticker;
    use kalshi_wire::record::Side;

    fn batch(id: u64, rows: i64) -> Batch {
        let mut b = Batch::default();
        for seq in 0..rows {
            b.add(&Row::Delta(DeltaRow {
                exchange_ts: seq,
                received_ts: seq,
                gatherer_id: 1,
                ticker: Ticker::new("T").unwrap(),
                side: Side::Yes,
                price_e6: 1,
                delta_e2: 1,
                sid: 1,
                seq,
                occurrence: 0,
            }));
        }
        b.id = id;
        b.created_us = 42;
        b
    }

    // Checks append, re-read, commit and segment deletion across segment roll-over, and that a
    // reopened spool finds exactly the uncommitted batches again.
    #[test]
    fn append_read_commit_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = SpoolConfig::new(dir.path());
        cfg.segment_bytes = 4096;
        let (mut spool, rec) = Spool::open(cfg.clone()).unwrap();
        assert_eq!(rec.batches, 0);
        for id in 1..=10 {
            spool.append(&batch(id, 20)).unwrap();
        }
        assert_eq!(spool.pending().len(), 10);
        let mut back = Batch::default();
        let p = spool.pending()[3];
        spool.read(&p, &mut back).unwrap();
        assert_eq!(back.id, 4);
        assert_eq!(back.sections[1].body, batch(4, 20).sections[1].body);
        for id in 1..=6 {
            spool.mark_committed(id).unwrap();
        }
        drop(spool);
        let (spool, rec) = Spool::open(cfg).unwrap();
        assert!(rec.problems.is_empty());
        let ids: Vec<u64> = spool.pending().iter().map(|p| p.id).collect();
        // Segments holding only committed batches were deleted; a segment with an uncommitted
        // batch keeps its committed neighbours (the database's markers sort them out).
        assert!(ids.ends_with(&[7, 8, 9, 10]), "{ids:?}");
        assert!(ids.iter().all(|id| *id >= 4));
    }

    // Checks recovery from a torn tail: cutting the last record in half keeps every record
    // before it and reports the cut with its offset.
    #[test]
    fn torn_tail_is_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig::new(dir.path());
        let (mut spool, _) = Spool::open(cfg.clone()).unwrap();
        for id in 1..=3 {
            spool.append(&batch(id, 5)).unwrap();
        }
        let third = spool.pending()[2].offset;
        drop(spool);
        let seg = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .find(|e| e.file_name().to_string_lossy().starts_with("seg-"))
            .unwrap()
            .path();
        let len = fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 7).unwrap();
        drop(f);
        let (spool, rec) = Spool::open(cfg).unwrap();
        assert_eq!(rec.batches, 2);
        assert_eq!(rec.problems.len(), 1);
        assert_eq!(rec.problems[0].offset, third);
        assert_eq!(fs::metadata(&seg).unwrap().len(), third);
        assert_eq!(spool.pending().len(), 2);
    }
}
