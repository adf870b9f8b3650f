// SPDX-License-Identifier: MIT OR Apache-2.0
//! Latency summaries (nearest-rank percentiles) and medians across repeated runs.

use serde::{Deserialize, Serialize};

/// Percentiles of one run's latencies, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

/// Nearest-rank percentile of sorted values.
fn rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let n = sorted.len();
    let r = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[r.clamp(1, n) - 1]
}

impl Summary {
    /// From latencies in nanoseconds.
    pub fn from_nanos(values: &mut [u64]) -> Summary {
        values.sort_unstable();
        let ms = |ns: u64| ns as f64 / 1e6;
        let n = values.len();
        let mean = if n == 0 {
            0.0
        } else {
            values.iter().map(|&v| v as f64).sum::<f64>() / n as f64 / 1e6
        };
        Summary {
            n,
            p50: ms(rank(values, 50.0)),
            p90: ms(rank(values, 90.0)),
            p99: ms(rank(values, 99.0)),
            max: ms(values.last().copied().unwrap_or(0)),
            mean,
        }
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A paired comparison of two arms measured in the same rounds (interleaved): the median
/// of each arm, `b − a` of the medians, and a bootstrap percentile interval of that
/// difference (milliseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// Rounds (pairs) compared.
    pub n: usize,
    pub a_p50: f64,
    pub b_p50: f64,
    /// `b_p50 − a_p50`.
    pub diff: f64,
    /// The 2.5th and 97.5th percentiles of the bootstrapped difference.
    pub lo: f64,
    pub hi: f64,
    /// Bootstrap resamples drawn.
    pub resamples: usize,
}

impl PairedDiff {
    /// Whether 0 lies within the interval (the difference is within the noise band).
    pub fn band_holds_zero(&self) -> bool {
        self.lo <= 0.0 && 0.0 <= self.hi
    }
}

/// `median(b) − median(a)` of `pairs` (`(a, b)` measured in one round) with a 95 %
/// bootstrap interval: `resamples` times, draw `pairs.len()` rounds with replacement (a
/// round keeps its two values together, so both arms of a resample saw the same moments of
/// the machine), take the difference of the medians; the interval is the 2.5th and 97.5th
/// percentiles (nearest rank) of those differences. Deterministic for a given `seed`.
/// `None` for fewer than 2 pairs.
pub fn paired_median_diff(pairs: &[(f64, f64)], resamples: usize, seed: u64) -> Option<PairedDiff> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let (a_p50, b_p50) = (median(&a), median(&b));
    let mut rng = SplitMix(seed);
    let mut diffs = Vec::with_capacity(resamples);
    let (mut ra, mut rb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..resamples.max(1) {
        ra.clear();
        rb.clear();
        for _ in 0..n {
            let i = usize::try_from(rng.next_u64() % n as u64).unwrap_or(0);
            ra.push(pairs[i].0);
            rb.push(pairs[i].1);
        }
        diffs.push(median(&rb) - median(&ra));
    }
    diffs.sort_by(f64::total_cmp);
    let pick = |p: f64| {
        let r = ((p / 100.0) * diffs.len() as f64).ceil() as usize;
        diffs[r.clamp(1, diffs.len()) - 1]
    };
    Some(PairedDiff {
        n,
        a_p50,
        b_p50,
        diff: b_p50 - a_p50,
        lo: pick(2.5),
        hi: pick(97.5),
        resamples: diffs.len(),
    })
}

/// SplitMix64: a small deterministic generator for resampling and orders (not for secrets).
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_and_its_band() {
        // b is a + 1 in every round, over a spread of 0..100: the difference is exactly 1
        // and every resample says so.
        let pairs: Vec<(f64, f64)> = (0..100)
            .map(|i| (f64::from(i), f64::from(i) + 1.0))
            .collect();
        let d = paired_median_diff(&pairs, 500, 7).unwrap();
        assert_eq!((d.n, d.resamples), (100, 500));
        assert!((d.diff - 1.0).abs() < 1e-9);
        assert!((d.a_p50 - 49.5).abs() < 1e-9);
        assert!(d.lo <= d.diff && d.diff <= d.hi);
        assert!(!d.band_holds_zero());
        // Two arms drawn from one spread, in shuffled rounds: the band holds 0.
        let mut rng = SplitMix(3);
        let pairs: Vec<(f64, f64)> = (0..400)
            .map(|_| {
                (
                    (rng.next_u64() % 1000) as f64,
                    (rng.next_u64() % 1000) as f64,
                )
            })
            .collect();
        let d = paired_median_diff(&pairs, 1000, 11).unwrap();
        assert!(d.band_holds_zero(), "{d:?}");
        assert!(d.hi - d.lo > 0.0);
        // Deterministic for one seed.
        assert_eq!(paired_median_diff(&pairs, 1000, 11).unwrap(), d);
        assert!(paired_median_diff(&pairs[..1], 10, 1).is_none());
    }

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|x| x * 1_000_000).collect();
        let s = Summary::from_nanos(&mut v);
        assert_eq!(s.n, 100);
        assert_eq!(s.p50, 50.0);
        assert_eq!(s.p90, 90.0);
        assert_eq!(s.p99, 99.0);
        assert_eq!(s.max, 100.0);
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert_eq!(Summary::from_nanos(&mut []).n, 0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }
}
