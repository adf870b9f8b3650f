// SPDX-License-Identifier: MIT OR Apache-2.0
//! Consecutive-failure lockout, one counter per user across every second factor (codes,
//! email codes, recovery codes). App passwords have their own (`apppw_lock`, review M4).
//!
//! Every evaluated attempt is durable before it is answered: a wrong one is charged
//! (counted, dated) and a right one resets the count, in the same store transaction that
//! evaluates it, and the answer is given only after that write returned. So a crash or a
//! full disk can lose an attempt only together with its answer, and killing anything
//! mid-check never yields a free guess that was answered. A locked user's code is not
//! evaluated at all.
//!
//! A replayed code is never charged (issue 20, item 17): a code that matches a time step
//! already used on that authenticator — the user's own last accepted code, or any earlier
//! used step — proves the caller saw a real code (typically the user typing the same code
//! again, as sudo's `timestamp_timeout=0` makes common). It is refused and audited as
//! `replayed` (`verify::check`), but not counted: a random guess hits a used step with
//! about the probability it hits the current one (~1e-6 per guess), so a guesser gains
//! nothing.
//!
//! Below `max_failures`, failures older than the window stop counting. From the first lock
//! on, the count stays until a success or an admin unlock: every further failure locks
//! again (twice as long each time with backoff), and [`HARD_LOCK_FAILURES`] consecutive
//! failures lock until an admin unlocks.

use super::record::Record;
use super::UnixTime;

/// A lock state as seconds since the epoch: 0 not locked, `u64::MAX` until an admin
/// unlocks (the shape of the bus's `locked_until`).
pub fn locked_until(state: LockState) -> u64 {
    match state {
        LockState::Open => 0,
        LockState::Until(t) => t.0,
        LockState::UntilUnlocked => u64::MAX,
    }
}

/// What a locked user is told, `None` when not locked.
pub fn locked_message(state: LockState, now: UnixTime) -> Option<String> {
    match state {
        LockState::Open => None,
        LockState::Until(t) => Some(format!(
            "Too many failed attempts: locked for {} more seconds.",
            t.0.saturating_sub(now.0).max(1)
        )),
        LockState::UntilUnlocked => Some(
            "Too many failed attempts: locked until an administrator unlocks the account.".into(),
        ),
    }
}

/// NIST SP 800-63B: at most 100 consecutive failed attempts.
pub const HARD_LOCK_FAILURES: u32 = 100;

#[derive(Clone, Copy, Debug)]
pub struct LockPolicy {
    pub max_failures: u32,
    /// 0: locked until an admin unlocks.
    pub lockout_seconds: u64,
    pub failure_window_seconds: u64,
    pub backoff: bool,
    pub max_lockout_seconds: u64,
}

impl LockPolicy {
    pub fn from_config(c: &twostep_config::Lockout) -> LockPolicy {
        LockPolicy {
            max_failures: u32::try_from(c.max_failures.get()).unwrap_or(u32::MAX),
            lockout_seconds: c.lockout_seconds.get(),
            failure_window_seconds: c.failure_window_seconds.get(),
            backoff: c.backoff,
            max_lockout_seconds: c.max_lockout_seconds.get(),
        }
    }

    /// How long the lock after the `failures`-th consecutive failure lasts; `None` = until
    /// an admin unlocks.
    fn duration(&self, failures: u32) -> Option<u64> {
        if self.lockout_seconds == 0 || failures >= HARD_LOCK_FAILURES {
            return None;
        }
        if !self.backoff {
            return Some(self.lockout_seconds);
        }
        let doublings = failures.saturating_sub(self.max_failures).min(63);
        let d = self.lockout_seconds.saturating_mul(1u64 << doublings);
        Some(d.min(self.max_lockout_seconds.max(self.lockout_seconds)))
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

/// Failures that still count at `now`.
fn live_failures(rec: &Record, now: UnixTime, p: &LockPolicy) -> u32 {
    if rec.failures >= p.max_failures {
        return rec.failures; // locked at least once: sticky until success or unlock
    }
    match rec.last_failure {
        Some(t) if now.0.saturating_sub(t.0) < p.failure_window_seconds => rec.failures,
        _ => 0,
    }
}

/// A lock lasts its full time even when that is longer than the failure window.
pub fn state(rec: &Record, now: UnixTime, p: &LockPolicy) -> LockState {
    if rec.failures < p.max_failures && rec.failures < HARD_LOCK_FAILURES {
        return LockState::Open;
    }
    let Some(last) = rec.last_failure else {
        return LockState::Open;
    };
    match p.duration(rec.failures) {
        None => LockState::UntilUnlocked,
        Some(d) if now < last.plus(d) => LockState::Until(last.plus(d)),
        Some(_) => LockState::Open,
    }
}

/// Count a failed attempt. Its source (`last_failure_from`) is unknown until the caller,
/// who knows it, sets it.
pub fn charge(rec: &mut Record, now: UnixTime, p: &LockPolicy) {
    rec.failures = live_failures(rec, now, p).saturating_add(1);
    rec.last_failure = Some(now);
    rec.last_failure_from = None;
}

/// A successful attempt with a factor of the user (a code, an email code, a recovery code)
/// resets the counter and is dated.
pub fn succeed(rec: &mut Record, now: UnixTime) {
    rec.failures = 0;
    note_success(rec, now);
}

/// A successful login that proved no existing factor — an enrolment at login (TOTP or
/// email), an app password, a login in the enrolment grace period — is dated
/// (`last_success`: every successful login counts, issue 20 item 9) but keeps the count:
/// an app password must not reset it (a mail client polling every minute would otherwise
/// hand a guesser unlimited tries at codes; see `apppw`).
pub fn note_success(rec: &mut Record, now: UnixTime) {
    rec.last_success = Some(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: LockPolicy = LockPolicy {
        max_failures: 3,
        lockout_seconds: 300,
        failure_window_seconds: 900,
        backoff: false,
        max_lockout_seconds: 86_400,
    };

    fn fail(r: &mut Record, t: u64, p: &LockPolicy) {
        charge(r, UnixTime(t), p);
    }

    #[test]
    fn locks_after_max_failures_and_expires() {
        let mut r = Record::new("a");
        for i in 0..3 {
            assert_eq!(state(&r, UnixTime(100 + i), &P), LockState::Open);
            fail(&mut r, 100 + i, &P);
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
        // Expiry does not reset the consecutive count: one more failure locks again,
        // even after the window.
        fail(&mut r, 5000, &P);
        assert_eq!(r.failures, 4);
        assert_eq!(
            state(&r, UnixTime(5001), &P),
            LockState::Until(UnixTime(5300))
        );
    }

    #[test]
    fn success_resets_the_count() {
        let mut r = Record::new("a");
        fail(&mut r, 10, &P);
        fail(&mut r, 15, &P);
        assert_eq!(r.failures, 2);
        succeed(&mut r, UnixTime(20));
        assert_eq!(r.failures, 0);
        assert_eq!(r.last_failure, Some(UnixTime(15)));
        assert_eq!(r.last_success, Some(UnixTime(20)));
    }

    #[test]
    fn old_failures_stop_counting_before_a_lock() {
        let mut r = Record::new("a");
        fail(&mut r, 0, &P);
        fail(&mut r, 1, &P);
        fail(&mut r, 1000, &P);
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
            fail(&mut r, t, &p);
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
            fail(&mut r, t, &p);
        }
        assert_eq!(state(&r, UnixTime(899), &p), LockState::UntilUnlocked);
        assert_eq!(state(&r, UnixTime(1_000_000), &p), LockState::UntilUnlocked);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_then_hundred_failures_hard_lock() {
        let p = LockPolicy {
            backoff: true,
            lockout_seconds: 60,
            max_lockout_seconds: 600,
            ..P
        };
        let mut r = Record::new("a");
        let mut t = 0;
        let mut durations = Vec::new();
        while r.failures < HARD_LOCK_FAILURES {
            assert_eq!(
                state(&r, UnixTime(t), &p),
                LockState::Open,
                "at {}",
                r.failures
            );
            fail(&mut r, t, &p);
            match state(&r, UnixTime(t), &p) {
                LockState::Until(u) => {
                    durations.push(u.0 - t);
                    t = u.0;
                }
                LockState::Open => t += 1,
                LockState::UntilUnlocked => break,
            }
        }
        assert_eq!(&durations[..6], &[60, 120, 240, 480, 600, 600]);
        assert_eq!(r.failures, HARD_LOCK_FAILURES);
        assert_eq!(
            state(&r, UnixTime(u64::MAX / 2), &p),
            LockState::UntilUnlocked
        );
    }

    #[test]
    fn hundred_failures_hard_lock_without_backoff_too() {
        let p = LockPolicy {
            max_failures: 100,
            ..P
        };
        let mut r = Record::new("a");
        for t in 0..100 {
            fail(&mut r, t, &p);
        }
        assert_eq!(state(&r, UnixTime(1_000_000), &p), LockState::UntilUnlocked);
    }
}
