// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-uid call rate for non-root callers: a token bucket, so a local user cannot keep the
//! daemon busy. Root (sshd, sudo, su, login) is not limited here: its logins are paced by
//! the programs themselves and each is charged to the target user's lockout counter.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Calls per second a non-root uid may sustain.
const RATE_PER_SECOND: f64 = 5.0;
/// Calls a non-root uid may make in a burst.
const BURST: f64 = 20.0;
/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 4096;

struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Default)]
pub struct RateLimit {
    buckets: Mutex<HashMap<u32, Bucket>>,
}

impl RateLimit {
    /// Whether `uid` may make one more call at `now`.
    pub fn admit(&self, uid: u32, now: Instant) -> bool {
        if uid == 0 {
            return true;
        }
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_BUCKETS {
            // Full buckets carry no information: drop them.
            buckets.retain(|_, b| refill(b, now) < BURST);
        }
        let b = buckets.entry(uid).or_insert(Bucket {
            tokens: BURST,
            at: now,
        });
        b.tokens = refill(b, now);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn refill(b: &Bucket, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
    (b.tokens + elapsed * RATE_PER_SECOND).min(BURST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills_per_uid_and_root_is_free() {
        let r = RateLimit::default();
        let t0 = Instant::now();
        let admitted = (0..100).filter(|_| r.admit(1000, t0)).count();
        assert_eq!(admitted, 20);
        assert!(r.admit(1001, t0), "another uid has its own bucket");
        assert!((0..1000).all(|_| r.admit(0, t0)));
        assert!(!r.admit(1000, t0 + Duration::from_millis(100)));
        assert!(r.admit(1000, t0 + Duration::from_millis(250)));
    }
}
