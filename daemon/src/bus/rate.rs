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

/// Seconds between two log lines about one uid's refused calls or connections.
pub const LOG_EVERY_SECS: u64 = 10;

/// One log line per uid per [`LOG_EVERY_SECS`] for refusals that a caller can repeat at
/// will (rate-limited calls, refused connections): each line says how many were not
/// logged before it, so a flood of refusals cannot push the audit lines of other logins
/// out of the log's queue (or past journald's rate limit).
#[derive(Default)]
pub struct LogThrottle {
    by_uid: Mutex<HashMap<u32, (Instant, u64)>>,
}

impl LogThrottle {
    /// `Some(n)`: log this refusal now, saying `n` were left out since the last line;
    /// `None`: count it and stay silent.
    pub fn admit(&self, uid: u32, now: Instant) -> Option<u64> {
        let mut m = self
            .by_uid
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if m.len() >= MAX_BUCKETS {
            m.retain(|_, (at, _)| now.saturating_duration_since(*at).as_secs() < LOG_EVERY_SECS);
        }
        match m.get_mut(&uid) {
            Some((at, left_out))
                if now.saturating_duration_since(*at).as_secs() < LOG_EVERY_SECS =>
            {
                *left_out += 1;
                None
            }
            Some((at, left_out)) => {
                let n = std::mem::take(left_out);
                *at = now;
                Some(n)
            }
            None => {
                m.insert(uid, (now, 0));
                Some(0)
            }
        }
    }
}

/// The end of a throttled log line: `""`, or how many refusals were left out before it.
pub fn left_out(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" left_out={n}")
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
    fn refusals_are_logged_once_per_interval_with_the_count_left_out() {
        let t = LogThrottle::default();
        let t0 = Instant::now();
        assert_eq!(t.admit(1000, t0), Some(0));
        assert_eq!((0..5000).filter_map(|_| t.admit(1000, t0)).count(), 0);
        assert_eq!(t.admit(1001, t0), Some(0), "per uid");
        let later = t0 + Duration::from_secs(LOG_EVERY_SECS);
        assert_eq!(t.admit(1000, later), Some(5000));
        assert_eq!(t.admit(1000, later), None);
    }

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
