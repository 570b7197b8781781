//! Which shard core owns a market: a pure, stable function of the ticker.
//!
//! Every piece of state about a market (its subscription, seq tracker and book) lives on exactly
//! one shard core, so the assignment must not depend on anything but the ticker and the number
//! of shards: not on process start order, not on `std`'s randomly seeded hasher, not on the
//! platform's endianness or pointer width. The function is 64-bit FNV-1a over the ticker's UTF-8
//! bytes, finished with the SplitMix64 mixer (FNV-1a alone leaves the high bits of similar
//! tickers correlated), then mapped onto `0..n_shards` by a 128-bit multiply (Lemire's
//! fast range reduction), which is as uniform as modulo without a division. Changing any
//! constant here reshuffles every market between cores, so the expected values are pinned in
//! the tests.

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The 64-bit FNV-1a hash of `bytes` (exposed for tests and tools).
#[must_use]
pub const fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut hash = FNV_OFFSET;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        index += 1;
    }
    hash
}

/// The SplitMix64 finalizer: a bijective avalanche of all 64 bits.
#[must_use]
pub const fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The shard (`0..n_shards`) that owns `ticker`. `n_shards == 0` is treated as 1 (everything on
/// shard 0) rather than dividing by zero; configuration validation refuses zero shards anyway.
#[must_use]
pub fn shard_for(ticker: &str, n_shards: usize) -> usize {
    let n = n_shards.max(1) as u128;
    let hash = mix64(fnv1a_64(ticker.as_bytes())) as u128;
    ((hash * n) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng, rngs::StdRng};

    // Pinned values, computed independently with a Python transcription of the same algorithm.
    // A change here moves markets between cores across a release: it must be deliberate.
    #[test]
    fn shard_for_is_pinned() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(
            fnv1a_64(b"KXGOLDH-26AUG2711-T4615.99"),
            0x235d_9341_664c_9b36
        );
        assert_eq!(fnv1a_64(b"A"), 0xaf63_fc4c_8602_22ec);
        let cases: [(&str, [usize; 6]); 5] = [
            ("", [0, 1, 2, 3, 6, 15]),
            ("KXGOLDH-26AUG2711-T4615.99", [0, 0, 0, 0, 1, 2]),
            ("KXBTCD-25AUG2617-T112999.99", [0, 0, 0, 0, 1, 3]),
            ("KXCPI-26AUG-T1.0", [0, 0, 0, 1, 1, 4]),
            ("A", [0, 1, 1, 2, 3, 8]),
        ];
        for (ticker, expected) in cases {
            let got: Vec<usize> = [1, 2, 3, 4, 7, 16]
                .iter()
                .map(|&n| shard_for(ticker, n))
                .collect();
            assert_eq!(got, expected, "{ticker}");
        }
        assert_eq!(shard_for("A", 0), 0);
    }

    // 100k realistic tickers (series-date-strike shapes, which differ only in a few characters)
    // spread over 2..=16 shards: every shard's count is within 5% of the mean.
    #[test]
    fn shard_for_is_uniform() {
        let mut rng = StdRng::seed_from_u64(7);
        let tickers: Vec<String> = (0..100_000)
            .map(|i| {
                format!(
                    "KX{}-26AUG{:02}{:02}-T{}.{:02}",
                    ["BTCD", "ETH", "GOLDH", "CPI", "MVECROSSCATEGORY"][i % 5],
                    rng.random_range(1..31),
                    rng.random_range(0..24),
                    rng.random_range(1000..200_000),
                    rng.random_range(0..100)
                )
            })
            .collect();
        for n in 2..=16 {
            let mut counts = vec![0usize; n];
            for ticker in &tickers {
                let shard = shard_for(ticker, n);
                assert!(shard < n);
                counts[shard] += 1;
            }
            let mean = tickers.len() as f64 / n as f64;
            for (shard, count) in counts.iter().enumerate() {
                let deviation = (*count as f64 - mean).abs() / mean;
                assert!(deviation < 0.05, "n={n} shard={shard} count={count}");
            }
        }
    }
}
