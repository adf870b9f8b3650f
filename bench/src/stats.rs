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

#[cfg(test)]
mod tests {
    use super::*;

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
