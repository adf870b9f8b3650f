// SPDX-License-Identifier: MIT OR Apache-2.0
//! Consecutive-failure lockout, one counter per user across every factor.
//!
//! An attempt is charged (counted as a failure and stored durably) before its code is
//! evaluated, and refunded on success, so killing anything mid-check never yields a free
//! guess. A locked user's code is not evaluated at all.

use super::record::Record;
use super::UnixTime;

#[derive(Clone, Copy, Debug)]
pub struct LockPolicy {
    pub max_failures: u32,
    /// 0: locked until an admin unlocks.
    pub lockout_seconds: u64,
    pub failure_window_seconds: u64,
}

impl LockPolicy {
    pub fn from_config(c: &twostep_config::Lockout) -> LockPolicy {
        LockPolicy {
            max_failures: u32::try_from(c.max_failures.get()).unwrap_or(u32::MAX),
            lockout_seconds: c.lockout_seconds.get(),
            failure_window_seconds: c.failure_window_seconds.get(),
        }
    }
}

/// Whether the user is locked now.
#[must_use]
#[derive(Debug, PartialEq, Eq)]
pub enum LockState {
    Open,
    /// Locked until this time.
    Until(UnixTime),
    /// Locked until an admin unlocks.
    UntilUnlocked,
}

/// Failures that still count at `now` (older ones fell out of the window).
fn live_failures(rec: &Record, now: UnixTime, p: &LockPolicy) -> u32 {
    match rec.last_failure {
        Some(t) if now.0.saturating_sub(t.0) < p.failure_window_seconds => rec.failures,
        _ => 0,
    }
}

/// A lock lasts its full time even when that is longer than the failure window; the
/// window only decides whether failures that did not lock keep counting.
pub fn state(rec: &Record, now: UnixTime, p: &LockPolicy) -> LockState {
    if rec.failures < p.max_failures {
        return LockState::Open;
    }
    let Some(last) = rec.last_failure else {
        return LockState::Open;
    };
    if p.lockout_seconds == 0 {
        return LockState::UntilUnlocked;
    }
    let until = last.plus(p.lockout_seconds);
    if now < until {
        LockState::Until(until)
    } else {
        LockState::Open
    }
}

/// What to restore if the charged attempt succeeds.
#[must_use]
#[derive(Debug)]
pub struct Charge {
    prev_last_failure: Option<UnixTime>,
}

/// Count the attempt as a failure (before evaluating it).
pub fn charge(rec: &mut Record, now: UnixTime, p: &LockPolicy) -> Charge {
    let prev = rec.last_failure;
    rec.failures = live_failures(rec, now, p).saturating_add(1);
    rec.last_failure = Some(now);
    Charge {
        prev_last_failure: prev,
    }
}

/// The charged attempt succeeded: a success resets the counter.
pub fn succeed(rec: &mut Record, charge: Charge, now: UnixTime) {
    rec.failures = 0;
    rec.last_failure = charge.prev_last_failure;
    rec.last_success = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LockPolicy = LockPolicy {
        max_failures: 3,
        lockout_seconds: 300,
        failure_window_seconds: 900,
    };

    #[test]
    fn locks_after_max_failures_and_expires() {
        let mut r = Record::new("a");
        for i in 0..3 {
            assert_eq!(state(&r, UnixTime(100 + i), &P), LockState::Open);
            let _ = charge(&mut r, UnixTime(100 + i), &P);
        }
        assert_eq!(
            state(&r, UnixTime(103), &P),
            LockState::Until(UnixTime(402))
        );
        assert_eq!(
            state(&r, UnixTime(401), &P),
            LockState::Until(UnixTime(402))
        );
        assert_eq!(state(&r, UnixTime(402), &P), LockState::Open);
        // Expiry does not reset the consecutive count: one more failure locks again.
        let _ = charge(&mut r, UnixTime(500), &P);
        assert_eq!(
            state(&r, UnixTime(501), &P),
            LockState::Until(UnixTime(800))
        );
    }

    #[test]
    fn success_resets_and_refunds() {
        let mut r = Record::new("a");
        let _ = charge(&mut r, UnixTime(10), &P);
        let c = charge(&mut r, UnixTime(20), &P);
        assert_eq!(r.failures, 2);
        succeed(&mut r, c, UnixTime(20));
        assert_eq!(r.failures, 0);
        assert_eq!(r.last_failure, Some(UnixTime(10)));
        assert_eq!(r.last_success, Some(UnixTime(20)));
    }

    #[test]
    fn old_failures_stop_counting() {
        let mut r = Record::new("a");
        let _ = charge(&mut r, UnixTime(0), &P);
        let _ = charge(&mut r, UnixTime(1), &P);
        let _ = charge(&mut r, UnixTime(1000), &P);
        assert_eq!(r.failures, 1);
        assert_eq!(state(&r, UnixTime(1001), &P), LockState::Open);
    }

    #[test]
    fn a_lock_longer_than_the_window_holds() {
        let p = LockPolicy {
            lockout_seconds: 3600,
            failure_window_seconds: 60,
            ..P
        };
        let mut r = Record::new("a");
        for t in 0..3 {
            let _ = charge(&mut r, UnixTime(t), &p);
        }
        assert_eq!(
            state(&r, UnixTime(3000), &p),
            LockState::Until(UnixTime(3602))
        );
        assert_eq!(state(&r, UnixTime(3602), &p), LockState::Open);
    }

    #[test]
    fn zero_lockout_waits_for_an_admin() {
        let p = LockPolicy {
            lockout_seconds: 0,
            ..P
        };
        let mut r = Record::new("a");
        for t in 0..3 {
            let _ = charge(&mut r, UnixTime(t), &p);
        }
        assert_eq!(state(&r, UnixTime(899), &p), LockState::UntilUnlocked);
        assert_eq!(state(&r, UnixTime(1_000_000), &p), LockState::UntilUnlocked);
    }
}
