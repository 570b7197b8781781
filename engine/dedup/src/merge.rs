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
