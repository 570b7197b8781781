//! Fixed-capacity strings stored inside records.
//!
//! Hot-path records (trades, deltas, tickers) travel through lock-free rings by value, so their
//! identifiers live inline rather than on the heap. The capacities are chosen from what Kalshi
//! sends: the longest ticker seen in the recorded fixtures is 47 bytes (an MVE combo market),
//! trade and market ids are 36-byte UUIDs. A longer value is a decode error that names the field
//! and the limit; it is never truncated.

use core::fmt;

/// A UTF-8 string of at most `N` bytes (`N` ≤ 255), stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InlineStr<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    const CAPACITY_FITS_IN_U8: () = assert!(N <= u8::MAX as usize);

    /// Capacity in bytes.
    pub const CAPACITY: usize = N;

    /// The empty string.
    #[must_use]
    pub const fn empty() -> Self {
        let () = Self::CAPACITY_FITS_IN_U8;
        Self {
            len: 0,
            bytes: [0; N],
        }
    }

    /// Copies `text` in, or returns `None` when it is longer than the capacity.
    #[must_use]
    pub fn new(text: &str) -> Option<Self> {
        let mut out = Self::empty();
        let slot = out.bytes.get_mut(..text.len())?;
        slot.copy_from_slice(text.as_bytes());
        out.len = text.len() as u8;
        Some(out)
    }

    /// Copies ASCII `bytes` in, or returns `None` when they are longer than the capacity or
    /// not all ASCII.
    #[inline]
    pub(crate) fn from_ascii(bytes: &[u8]) -> Option<Self> {
        if !bytes.is_ascii() {
            return None;
        }
        let mut out = Self::empty();
        out.bytes.get_mut(..bytes.len())?.copy_from_slice(bytes);
        out.len = bytes.len() as u8;
        Some(out)
    }

    /// Builds the string from the first `len` bytes of `window`, which the caller has checked
    /// are ASCII, or returns `None` when `len` is over the capacity. Reading a whole fixed-size
    /// window, eight bytes at a time, and zeroing what lies beyond `len` costs a few dozen
    /// instructions, where a variable-length copy costs a call and a loop.
    #[inline(always)]
    pub(crate) fn from_ascii_window(window: &[u8; 64], len: usize) -> Option<Self> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        if len > N {
            return None;
        }
        // Every index and `len` are below 64, so `(index | 0x80) - len` cannot borrow across
        // bytes, and its top bit says `index >= len`.
        let len_bytes = ONES * len as u64;
        let mut padded = [0u8; 64];
        for (chunk, (out, word)) in padded
            .chunks_exact_mut(8)
            .zip(window.chunks_exact(8))
            .enumerate()
        {
            let index = ONES * 8 * chunk as u64 + 0x0706_0504_0302_0100;
            let beyond = ((index | (ONES * 0x80)) - len_bytes) & (ONES * 0x80);
            let keep = !((beyond >> 7) * 0xFF);
            let word = u64::from_le_bytes(word.try_into().unwrap_or_default()) & keep;
            out.copy_from_slice(&word.to_le_bytes());
        }
        let mut bytes = [0u8; N];
        bytes.copy_from_slice(padded.get(..N)?);
        Some(Self {
            len: len as u8,
            bytes,
        })
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // The bytes were copied from a `&str` of exactly `len` bytes, so they are valid UTF-8;
        // the fallback can only be reached through memory corruption.
        core::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }

    /// Length in bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the string is empty.
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for InlineStr<N> {
    fn default() -> Self {
        Self::empty()
    }
}

impl<const N: usize> fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for InlineStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A market ticker (`KXGOLDH-26AUG2711-T4615.99`), at most 63 bytes.
pub type Ticker = InlineStr<63>;
/// A trade id (UUID-shaped, sometimes shortened by recorders), at most 47 bytes.
pub type TradeId = InlineStr<47>;
/// A market id (UUID, `""` for unknown markets), at most 47 bytes.
pub type MarketId = InlineStr<47>;

#[cfg(test)]
mod tests {
    use super::*;

    // Round trip, capacity limit, and the size the rings depend on.
    #[test]
    fn inline_str_limits() {
        let ticker = Ticker::new("KXMVECROSSCATEGORY-S20261A92736411A-0876414E15B").unwrap();
        assert_eq!(
            ticker.as_str(),
            "KXMVECROSSCATEGORY-S20261A92736411A-0876414E15B"
        );
        assert!(Ticker::new(&"A".repeat(63)).is_some());
        assert!(Ticker::new(&"A".repeat(64)).is_none());
        assert_eq!(core::mem::size_of::<Ticker>(), 64);
        assert_eq!(core::mem::size_of::<TradeId>(), 48);
        assert!(Ticker::empty().is_empty());
    }

    // The fixed-window copy equals the plain copy for every length, whatever the window holds
    // beyond the string, and refuses what is over the capacity.
    #[test]
    fn window_copy_equals_plain_copy() {
        let mut window = [0u8; 64];
        for (index, byte) in window.iter_mut().enumerate() {
            *byte = b'!' + (index * 7 % 90) as u8;
        }
        for fill in [0u8, b'"', 0x7F, 0xFF] {
            for len in 0..=64 {
                let mut window = window;
                window[len..].fill(fill);
                let text = &window[..len];
                assert_eq!(
                    Ticker::from_ascii_window(&window, len),
                    Ticker::from_ascii(text),
                    "{len}"
                );
                assert_eq!(
                    TradeId::from_ascii_window(&window, len),
                    TradeId::from_ascii(text),
                    "{len}"
                );
            }
        }
    }
}
