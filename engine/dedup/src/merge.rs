//! The merge (sans-IO): binary COPY streams in, merged COPY tuples and fingerprints out.
//!
//! A source's rows of a table arrive as one `COPY ... TO STDOUT (FORMAT binary)` stream
//! ([`parse_stream`]). Each tuple is located, its time (field 1) and key (the first
//! `key_fields` fields, see [`crate::spec`]) are found without decoding values, and the tuples
//! are bucketed by range ([`split_ranges`]). [`merge_range`] then combines the sources of one
//! range by the table's [`MergeKind`]:
//!
//! * **Multiset**: for each key, the largest number of copies any one source holds; those
//!   copies are taken from that source and numbered 0..k-1 in `occurrence`. Because copies are
//!   numbered canonically, production's unique key (which includes `occurrence`) accepts
//!   exactly one row per copy, and writing a merge a second time adds nothing.
//! * **Set** and **Upsert**: each key once, from the first source holding it.
//!
//! A `base` (the rows production already holds for the range) turns the merge into a diff:
//! only copies beyond what the base holds are emitted. That is how a returning gatherer's
//! late rows are added to a range that was merged without it.
//!
//! [`Fingerprint`]: a row count and the wrapping sum of the 128-bit xxh3 hashes of the rows,
//! so the order rows come in does not matter, while duplicates do (a sum, not an xor, so two
//! equal rows do not cancel). Per source it hashes whole tuples (any change to a row shows);
//! for the merged result it hashes each key with its occurrence number.

use std::collections::HashMap;

use crate::spec::MergeKind;

/// Signature of a binary COPY stream.
const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A COPY stream or tuple that does not have the expected shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MergeError {
    /// The stream's header or trailer is wrong.
    #[error("malformed COPY stream: {0}")]
    Stream(&'static str),
    /// A tuple is truncated or has the wrong field count or field sizes.
    #[error("malformed COPY tuple at byte {offset}: {what}")]
    Tuple {
        /// Offset of the tuple in the body.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// The tuples of a COPY stream: `stream` without its header and trailer.
///
/// # Errors
///
/// [`MergeError::Stream`] for a wrong signature, a truncated header or a missing trailer.
pub fn parse_stream(stream: &[u8]) -> Result<&[u8], MergeError> {
    if stream.len() < 19 || &stream[..11] != SIGNATURE {
        return Err(MergeError::Stream("bad signature"));
    }
    let ext = u32::from_be_bytes([stream[15], stream[16], stream[17], stream[18]]) as usize;
    let start = 19usize
        .checked_add(ext)
        .filter(|s| *s <= stream.len())
        .ok_or(MergeError::Stream("header extension runs past the end"))?;
    let end = stream.len() - 2;
    if end < start || stream[end..] != [0xff, 0xff] {
        return Err(MergeError::Stream("missing trailer"));
    }
    Ok(&stream[start..end])
}

/// One located tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TupleRef<'a> {
    /// The whole tuple (field count included).
    pub bytes: &'a [u8],
    /// Length of the key: the key is `bytes[2..2 + key_len]`.
    pub key_len: usize,
    /// Field 1, the time column.
    pub time: i64,
}

impl<'a> TupleRef<'a> {
    /// The key bytes.
    #[must_use]
    pub fn key(&self) -> &'a [u8] {
        &self.bytes[2..2 + self.key_len]
    }
}

/// Locate every tuple of `body` (tuples of `fields` fields whose field 1 is a non-null `int8`;
/// with `occurrence_last`, the last field a non-null `int4`).
///
/// # Errors
///
/// [`MergeError::Tuple`] for any deviation.
pub fn parse_tuples(
    body: &[u8],
    fields: usize,
    key_fields: usize,
    occurrence_last: bool,
) -> Result<Vec<TupleRef<'_>>, MergeError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let start = pos;
        let bad = |what| MergeError::Tuple {
            offset: start,
            what,
        };
        let n = read_i16(body, pos).ok_or(bad("truncated field count"))?;
        if usize::try_from(n).ok() != Some(fields) {
            return Err(bad("unexpected field count"));
        }
        pos += 2;
        let mut key_end = pos;
        let mut time = None;
        let mut last_len = -1;
        for f in 0..fields {
            let len = read_i32(body, pos).ok_or(bad("truncated field length"))?;
            pos += 4;
            if len >= 0 {
                let end = pos + len as usize;
                if end > body.len() {
                    return Err(bad("field runs past the end"));
                }
                if f == 1 {
                    let v: [u8; 8] = body[pos..end]
                        .try_into()
                        .map_err(|_| bad("time column is not an int8"))?;
                    time = Some(i64::from_be_bytes(v));
                }
                pos = end;
            }
            last_len = len;
            if f + 1 == key_fields {
                key_end = pos;
            }
        }
        let time = time.ok_or(bad("time column is NULL"))?;
        if occurrence_last && last_len != 4 {
            return Err(bad("last field is not a non-null int4 occurrence"));
        }
        out.push(TupleRef {
            bytes: &body[start..pos],
            key_len: key_end - start - 2,
            time,
        });
    }
    Ok(out)
}

fn read_i16(b: &[u8], at: usize) -> Option<i16> {
    b.get(at..at + 2)
        .and_then(|s| <[u8; 2]>::try_from(s).ok())
        .map(i16::from_be_bytes)
}

fn read_i32(b: &[u8], at: usize) -> Option<i32> {
    b.get(at..at + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map(i32::from_be_bytes)
}

/// Bucket `tuples` into the `count` ranges of `width` µs starting at `lo`. Tuples outside
/// `[lo, lo + count * width)` are returned separately (a source answered for the wrong
/// bounds; the caller treats that as an error).
#[must_use]
pub fn split_ranges<'a>(
    tuples: &[TupleRef<'a>],
    lo: i64,
    width: i64,
    count: usize,
) -> (Vec<Vec<TupleRef<'a>>>, usize) {
    let mut out = vec![Vec::new(); count];
    let mut outside = 0;
    for t in tuples {
        let i = (t.time - lo).div_euclid(width.max(1));
        match usize::try_from(i).ok().filter(|i| *i < count) {
            Some(i) if t.time >= lo => out[i].push(*t),
            _ => outside += 1,
        }
    }
    (out, outside)
}

/// Row count and order-independent hash of a set of rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// Rows.
    pub count: u64,
    /// Wrapping sum of the rows' 128-bit hashes.
    pub hash: u128,
}

impl Fingerprint {
    /// Add one row's bytes.
    pub fn add(&mut self, bytes: &[u8]) {
        self.count += 1;
        self.hash = self.hash.wrapping_add(xxhash_rust::xxh3::xxh3_128(bytes));
    }

    /// Add a key with its occurrence number (merged fingerprints).
    pub fn add_keyed(&mut self, key: &[u8], occurrence: u32) {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(key);
        h.update(&occurrence.to_be_bytes());
        self.count += 1;
        self.hash = self.hash.wrapping_add(h.digest128());
    }

    /// The fingerprint of whole tuples.
    #[must_use]
    pub fn of_tuples(tuples: &[TupleRef<'_>]) -> Self {
        let mut f = Self::default();
        for t in tuples {
            f.add(t.bytes);
        }
        f
    }

    /// The stored form (`dedup_ranges.fingerprint`): 16 bytes, big-endian.
    #[must_use]
    pub fn hash_bytes(&self) -> [u8; 16] {
        self.hash.to_be_bytes()
    }

    /// From the stored form; `None` when `bytes` is not 16 bytes long.
    #[must_use]
    pub fn from_stored(count: i64, bytes: &[u8]) -> Option<Self> {
        let b: [u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            count: u64::try_from(count).ok()?,
            hash: u128::from_be_bytes(b),
        })
    }
}

/// What merging one range of one table did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RangeMerge {
    /// Rows read from the sources (not counting the base).
    pub rows_in: u64,
    /// Rows emitted (to be written).
    pub rows_out: u64,
    /// Fingerprint of the merged result (base included): keys with occurrence numbers.
    pub merged: Fingerprint,
}

/// Merge one range of one table: `sources` in priority order, optionally over `base` (rows
/// production already holds, which are not emitted again). Emitted tuples are appended to
/// `out` (a COPY body), multiset tuples with their `occurrence` set.
pub fn merge_range(
    kind: MergeKind,
    sources: &[&[TupleRef<'_>]],
    base: Option<&[TupleRef<'_>]>,
    out: &mut Vec<u8>,
) -> RangeMerge {
    // The gap ledger takes newer content for keys production has: never diffed away.
    let base = if kind == MergeKind::Upsert {
        None
    } else {
        base
    };
    let mut r = RangeMerge {
        rows_in: sources.iter().map(|s| s.len() as u64).sum(),
        ..RangeMerge::default()
    };
    let cap = sources.iter().map(|s| s.len()).max().unwrap_or(0);
    // key -> (copies in base, best count, best source)
    let mut best: HashMap<&[u8], (u32, u32, usize)> = HashMap::with_capacity(cap);
    if let Some(base) = base {
        for t in base {
            let e = best.entry(t.key()).or_insert((0, 0, usize::MAX));
            e.0 += 1;
            e.1 = e.0;
        }
    }
    let mut counts: HashMap<&[u8], u32> = HashMap::with_capacity(cap);
    for (i, source) in sources.iter().enumerate() {
        counts.clear();
        for t in source.iter() {
            *counts.entry(t.key()).or_insert(0) += 1;
        }
        for (key, n) in &counts {
            let n = match kind {
                MergeKind::Multiset => *n,
                MergeKind::Set | MergeKind::Upsert => 1,
            };
            let e = best.entry(key).or_insert((0, 0, usize::MAX));
            if n > e.1 {
                e.1 = n;
                e.2 = i;
            }
        }
    }
    for (key, (_, n, _)) in &best {
        for occ in 0..*n {
            match kind {
                MergeKind::Multiset => r.merged.add_keyed(key, occ),
                MergeKind::Set | MergeKind::Upsert => r.merged.add(key),
            }
        }
    }
    // Emit, per source in order, the copies it was chosen for, beyond the base.
    let mut seen: HashMap<&[u8], u32> = HashMap::with_capacity(cap);
    for (i, source) in sources.iter().enumerate() {
        seen.clear();
        for t in source.iter() {
            let Some(&(base_n, n, src)) = best.get(t.key()) else {
                continue;
            };
            if src != i {
                continue;
            }
            let occ = seen.entry(t.key()).or_insert(0);
            let this = *occ;
            *occ += 1;
            if this < base_n || this >= n {
                continue;
            }
            out.extend_from_slice(t.bytes);
            if kind == MergeKind::Multiset {
                let at = out.len() - 4;
                out[at..].copy_from_slice(&(this as i32).to_be_bytes());
            }
            r.rows_out += 1;
        }
    }
    r
}

/// One lifecycle copy offered to [`merge_lifecycle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LifeCopy<'a> {
    /// The tuple (lifecycle column order, see [`crate::spec`]).
    pub tuple: TupleRef<'a>,
    /// Whether it may be written when production has no copy for it. Copies outside the
    /// ranges being merged (the look-back before the job, ranges whose fingerprint did not
    /// change) only take part in the matching.
    pub eligible: bool,
}

/// What [`merge_lifecycle`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LifeMerge {
    /// Copies written.
    pub rows_out: u64,
    /// Eligible copies recognised as an event production already holds at another time
    /// (within the tolerance, not at the same microsecond).
    pub matched_fuzzy: u64,
}

/// The content of a lifecycle key: the key without its time field (ticker, then event type,
/// mve and payload), as two slices. `None` when the key does not have that shape.
fn life_content<'a>(t: &TupleRef<'a>) -> Option<(&'a [u8], &'a [u8])> {
    let key = t.key();
    let len0 = i32::from_be_bytes(key.get(0..4)?.try_into().ok()?);
    let end0 = 4 + usize::try_from(len0).unwrap_or(0);
    let time_end = end0 + 4 + 8;
    if key.len() < time_end {
        return None;
    }
    Some((&key[..end0], &key[time_end..]))
}

/// Read the last four bytes of a tuple as an `int4` (the `occurrence` of multiset tables).
#[must_use]
pub fn last_i32(t: &TupleRef<'_>) -> i32 {
    let n = t.bytes.len();
    t.bytes
        .get(n.saturating_sub(4)..)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, i32::from_be_bytes)
}

/// Merge lifecycle copies whose time is the gatherer's receive time (see the crate
/// documentation, "Lifecycle events"): copies with the same content (ticker, event type, mve,
/// payload) whose times are at most `tolerance_us` apart are the same event.
///
/// `base` holds production's copies around the job (`[lo - 2·tol, hi + tol)`), `sources` each
/// source's copies of `[lo - tol, hi)`. Per content, each source in turn matches its copies in
/// time order against production's (base plus what this call emitted), each to the earliest
/// unmatched production copy within the tolerance (greedy in time order, which finds a maximum
/// matching on a line); an eligible copy left unmatched is emitted, with its own time and the
/// next free `occurrence` for that exact time. Afterwards every source's copies have distinct
/// partners in production: production holds, for every cluster of an event, the largest count
/// any one source has. A copy production already holds is matched, so merging again emits
/// nothing.
pub fn merge_lifecycle(
    sources: &[Vec<LifeCopy<'_>>],
    base: &[TupleRef<'_>],
    tolerance_us: i64,
    out: &mut Vec<u8>,
) -> LifeMerge {
    type Content<'a> = (&'a [u8], &'a [u8]);
    struct Group<'a> {
        /// Production's copies: (time, matched by the current source), sorted by time.
        prod: Vec<(i64, bool)>,
        /// Copies at each exact time (the next free occurrence).
        at: HashMap<i64, i32>,
        /// Per source, its copies.
        by_source: Vec<Vec<LifeCopy<'a>>>,
    }
    let tol = tolerance_us.max(0);
    let mut groups: HashMap<Content<'_>, Group<'_>> = HashMap::new();
    let mut order: Vec<Content<'_>> = Vec::new();
    for t in base {
        let Some(c) = life_content(t) else { continue };
        let g = groups.entry(c).or_insert_with(|| {
            order.push(c);
            Group {
                prod: Vec::new(),
                at: HashMap::new(),
                by_source: vec![Vec::new(); sources.len()],
            }
        });
        g.prod.push((t.time, false));
        let n = g.at.entry(t.time).or_insert(0);
        *n = (*n).max(last_i32(t).saturating_add(1));
    }
    for (si, source) in sources.iter().enumerate() {
        for copy in source {
            // A key without the expected shape cannot be matched; the caller's tuples come
            // from the lifecycle column order, so this does not happen.
            let Some(c) = life_content(&copy.tuple) else {
                continue;
            };
            let g = groups.entry(c).or_insert_with(|| {
                order.push(c);
                Group {
                    prod: Vec::new(),
                    at: HashMap::new(),
                    by_source: vec![Vec::new(); sources.len()],
                }
            });
            g.by_source[si].push(*copy);
        }
    }
    let mut r = LifeMerge::default();
    for c in &order {
        let Some(g) = groups.get_mut(c) else { continue };
        g.prod.sort_by_key(|p| p.0);
        for si in 0..sources.len() {
            let mut copies = std::mem::take(&mut g.by_source[si]);
            copies.sort_by_key(|x| x.tuple.time);
            for p in g.prod.iter_mut() {
                p.1 = false;
            }
            for copy in &copies {
                let t = copy.tuple.time;
                let lo = t.saturating_sub(tol);
                let hi = t.saturating_add(tol);
                let found = g
                    .prod
                    .iter()
                    .position(|&(pt, used)| !used && pt >= lo && pt <= hi);
                if let Some(i) = found {
                    g.prod[i].1 = true;
                    if copy.eligible && g.prod[i].0 != t {
                        r.matched_fuzzy += 1;
                    }
                    continue;
                }
                if !copy.eligible {
                    continue;
                }
                let occ = g.at.entry(t).or_insert(0);
                out.extend_from_slice(copy.tuple.bytes);
                let at = out.len() - 4;
                out[at..].copy_from_slice(&occ.to_be_bytes());
                *occ += 1;
                r.rows_out += 1;
                let pos = g.prod.partition_point(|p| p.0 <= t);
                g.prod.insert(pos, (t, true));
            }
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-field tuple: key text, time int8, payload int8, occurrence int4.
    fn tuple(buf: &mut Vec<u8>, key: &str, time: i64, payload: i64, occ: i32) {
        buf.extend_from_slice(&4i16.to_be_bytes());
        buf.extend_from_slice(&(key.len() as i32).to_be_bytes());
        buf.extend_from_slice(key.as_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&time.to_be_bytes());
        buf.extend_from_slice(&8i32.to_be_bytes());
        buf.extend_from_slice(&payload.to_be_bytes());
        buf.extend_from_slice(&4i32.to_be_bytes());
        buf.extend_from_slice(&occ.to_be_bytes());
    }

    fn body(rows: &[(&str, i64, i64)]) -> Vec<u8> {
        let mut b = Vec::new();
        for (k, t, p) in rows {
            tuple(&mut b, k, *t, *p, 0);
        }
        b
    }

    /// (key, time, occurrence) of every tuple of a merged body, sorted.
    fn rows_of(out: &[u8]) -> Vec<(String, i64, i32)> {
        let mut v: Vec<_> = parse_tuples(out, 4, 2, true)
            .unwrap()
            .iter()
            .map(|t| {
                let f = kalshi_writer::copy::tuple_fields(t.bytes).unwrap();
                (
                    String::from_utf8(f[0].unwrap().to_vec()).unwrap(),
                    t.time,
                    i32::from_be_bytes(f[3].unwrap().try_into().unwrap()),
                )
            })
            .collect();
        v.sort();
        v
    }

    // Two identical events in one microsecond seen by one source, once by another, and an
    // event only the second saw: the multiset union keeps both copies (occurrence 0 and 1) and
    // the lone event; the key is (text, time), so the payload field does not split keys.
    #[test]
    fn multiset_union_keeps_multiplicity() {
        let a = body(&[("x", 10, 1), ("x", 10, 1), ("y", 11, 1)]);
        let b = body(&[("x", 10, 2), ("z", 12, 2)]);
        let ta = parse_tuples(&a, 4, 2, true).unwrap();
        let tb = parse_tuples(&b, 4, 2, true).unwrap();
        let mut out = Vec::new();
        let r = merge_range(MergeKind::Multiset, &[&ta, &tb], None, &mut out);
        assert_eq!(r.rows_in, 5);
        assert_eq!(r.rows_out, 4);
        assert_eq!(r.merged.count, 4);
        assert_eq!(
            rows_of(&out),
            vec![
                ("x".into(), 10, 0),
                ("x".into(), 10, 1),
                ("y".into(), 11, 0),
                ("z".into(), 12, 0)
            ]
        );
        // Order of sources and of rows does not change the merged fingerprint.
        let b_rev = body(&[("z", 12, 2), ("x", 10, 2)]);
        let tbr = parse_tuples(&b_rev, 4, 2, true).unwrap();
        let mut out2 = Vec::new();
        let r2 = merge_range(MergeKind::Multiset, &[&tbr, &ta], None, &mut out2);
        assert_eq!(r2.merged, r.merged);
        assert_eq!(rows_of(&out2), rows_of(&out));
    }

    // With the merged result as base, merging again emits nothing (a replayed range changes
    // nothing); a source with one more copy emits exactly that copy, numbered after the base.
    #[test]
    fn base_turns_merge_into_diff() {
        let a = body(&[("x", 10, 1), ("x", 10, 1)]);
        let ta = parse_tuples(&a, 4, 2, true).unwrap();
        let mut merged = Vec::new();
        let first = merge_range(MergeKind::Multiset, &[&ta], None, &mut merged);
        let base = parse_tuples(&merged, 4, 2, true).unwrap();
        let mut out = Vec::new();
        let again = merge_range(MergeKind::Multiset, &[&ta], Some(&base), &mut out);
        assert_eq!(again.rows_out, 0);
        assert!(out.is_empty());
        assert_eq!(again.merged, first.merged);
        let c = body(&[("x", 10, 3), ("x", 10, 3), ("x", 10, 3)]);
        let tc = parse_tuples(&c, 4, 2, true).unwrap();
        let more = merge_range(MergeKind::Multiset, &[&tc], Some(&base), &mut out);
        assert_eq!(more.rows_out, 1);
        assert_eq!(rows_of(&out), vec![("x".into(), 10, 2)]);
        assert_eq!(more.merged.count, 3);
    }

    fn copies<'a>(ts: &[TupleRef<'a>], eligible: bool) -> Vec<LifeCopy<'a>> {
        ts.iter()
            .map(|t| LifeCopy {
                tuple: *t,
                eligible,
            })
            .collect()
    }

    // Lifecycle copies of one event at different receive times (within the tolerance) are
    // written once; the same content far apart is two events; merging the result again writes
    // nothing.
    #[test]
    fn lifecycle_copies_within_tolerance_are_one_event() {
        let a = body(&[("x", 1000, 1), ("x", 10_000, 1), ("y", 1000, 1)]);
        let b = body(&[("x", 1300, 2), ("y", 1400, 2)]);
        let c = body(&[("x", 900, 3), ("x", 10_200, 3)]);
        let (ta, tb, tc) = (
            parse_tuples(&a, 4, 2, true).unwrap(),
            parse_tuples(&b, 4, 2, true).unwrap(),
            parse_tuples(&c, 4, 2, true).unwrap(),
        );
        let srcs = vec![copies(&ta, true), copies(&tb, true), copies(&tc, true)];
        let mut out = Vec::new();
        let r = merge_lifecycle(&srcs, &[], 500, &mut out);
        assert_eq!(r.rows_out, 3);
        assert_eq!(r.matched_fuzzy, 4);
        assert_eq!(
            rows_of(&out),
            vec![
                ("x".into(), 1000, 0),
                ("x".into(), 10_000, 0),
                ("y".into(), 1000, 0)
            ]
        );
        let base = parse_tuples(&out, 4, 2, true).unwrap();
        let mut again = Vec::new();
        let r2 = merge_lifecycle(&srcs, &base, 500, &mut again);
        assert_eq!(r2.rows_out, 0);
        assert!(again.is_empty());
        // Tolerance 0: exact times only.
        let mut exact = Vec::new();
        let r3 = merge_lifecycle(&srcs, &[], 0, &mut exact);
        assert_eq!(r3.rows_out, 7);
    }

    // Multiset: one source's two copies within the tolerance are two events, and another
    // source's single copy matches one of them; two copies at one microsecond are numbered by
    // occurrence after production's; a copy before the job (not eligible) takes its production
    // partner, so the eligible one after it is not collapsed into that partner.
    #[test]
    fn lifecycle_multiset_occurrence_and_lookback() {
        let a = body(&[("x", 1000, 1), ("x", 1200, 1)]);
        let b = body(&[("x", 1100, 2)]);
        let ta = parse_tuples(&a, 4, 2, true).unwrap();
        let tb = parse_tuples(&b, 4, 2, true).unwrap();
        let mut out = Vec::new();
        let r = merge_lifecycle(&[copies(&tb, true), copies(&ta, true)], &[], 500, &mut out);
        assert_eq!(r.rows_out, 2, "{:?}", rows_of(&out));

        let prod = body(&[("z", 1000, 0)]);
        let tp = parse_tuples(&prod, 4, 2, true).unwrap();
        let s = body(&[("z", 1000, 1), ("z", 1000, 1)]);
        let ts = parse_tuples(&s, 4, 2, true).unwrap();
        let mut out = Vec::new();
        merge_lifecycle(&[copies(&ts, true)], &tp, 500, &mut out);
        assert_eq!(rows_of(&out), vec![("z".into(), 1000, 1)]);

        let prod = body(&[("w", 950, 0)]);
        let tp = parse_tuples(&prod, 4, 2, true).unwrap();
        let before = body(&[("w", 900, 1)]);
        let inside = body(&[("w", 1100, 1)]);
        let tb = parse_tuples(&before, 4, 2, true).unwrap();
        let ti = parse_tuples(&inside, 4, 2, true).unwrap();
        let mut src = copies(&tb, false);
        src.extend(copies(&ti, true));
        let mut out = Vec::new();
        merge_lifecycle(&[src], &tp, 500, &mut out);
        assert_eq!(rows_of(&out), vec![("w".into(), 1100, 0)]);
        // Without the look-back copy the second event would be taken for the first.
        let mut out = Vec::new();
        merge_lifecycle(&[copies(&ti, true)], &tp, 500, &mut out);
        assert!(out.is_empty());
    }

    // Set tables keep each key once; the first source holding a key supplies its row.
    #[test]
    fn set_union_keeps_one() {
        let a = body(&[("t1", 10, 1), ("t1", 10, 1)]);
        let b = body(&[("t1", 10, 2), ("t2", 11, 2)]);
        let ta = parse_tuples(&a, 4, 1, false).unwrap();
        let tb = parse_tuples(&b, 4, 1, false).unwrap();
        let mut out = Vec::new();
        let r = merge_range(MergeKind::Set, &[&ta, &tb], None, &mut out);
        assert_eq!(r.rows_out, 2);
        let got = parse_tuples(&out, 4, 1, false).unwrap();
        let payloads: Vec<i64> = got
            .iter()
            .map(|t| {
                let f = kalshi_writer::copy::tuple_fields(t.bytes).unwrap();
                i64::from_be_bytes(f[2].unwrap().try_into().unwrap())
            })
            .collect();
        assert_eq!(payloads, vec![1, 2]);
    }

    // Stream framing, range bucketing and malformed input: nothing panics, errors name the
    // problem.
    #[test]
    fn framing_and_errors() {
        let mut s = kalshi_writer::copy::COPY_HEADER.to_vec();
        let b = body(&[("x", 5, 0), ("y", 25, 0), ("z", 40, 0)]);
        s.extend_from_slice(&b);
        s.extend_from_slice(kalshi_writer::copy::COPY_TRAILER);
        let got = parse_stream(&s).unwrap();
        assert_eq!(got, &b[..]);
        let t = parse_tuples(got, 4, 1, true).unwrap();
        let (ranges, outside) = split_ranges(&t, 0, 10, 3);
        assert_eq!(
            ranges.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![1, 0, 1]
        );
        assert_eq!(outside, 1);
        assert!(parse_stream(b"PGCOPY").is_err());
        assert!(parse_stream(&s[..s.len() - 1]).is_err());
        for cut in 0..b.len() {
            let _ = parse_tuples(&b[..cut], 4, 1, true);
        }
        assert!(parse_tuples(&b[..b.len() - 1], 4, 1, true).is_err());
        assert!(parse_tuples(&b, 3, 1, true).is_err());
        let fp = Fingerprint::of_tuples(&t);
        assert_eq!(Fingerprint::from_stored(3, &fp.hash_bytes()), Some(fp));
        assert_eq!(Fingerprint::from_stored(3, &[1, 2]), None);
    }
}
