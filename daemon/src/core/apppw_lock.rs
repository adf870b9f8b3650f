// SPDX-License-Identifier: MIT OR Apache-2.0
//! The app passwords' own failure counter and lock (review M4). Wrong app passwords used to
//! count toward the one `[lockout]` counter, so anyone who knew a user name could lock that
//! user out of SSH, sudo and the console through IMAP. Now they count here, and a lock here
//! refuses app passwords only (`[app_passwords] max_failures`, `lockout_seconds`,
//! `failure_window_seconds`).
//!
//! The rules: a wrong app password within `failure_window_seconds` of the one before adds
//! one, an older one starts the count again at 1; `max_failures` of them lock app passwords
//! for `lockout_seconds`, and the next wrong one after the lock starts again at 1. No
//! escalation and no lock until an admin unlocks: an app password is a 124-bit secret, so a
//! lock only slows a flood (and bounds its argon2 work: a locked user is refused without a
//! hash), while a longer one would only help whoever wants the user's mail cut off. A right
//! app password and an admin's `user unlock` clear the count.

use serde::{Deserialize, Serialize};

use super::record::Record;
use super::UnixTime;

/// Wrong app passwords counted toward their lock (absent from the record while none are).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppPasswordFailures {
    pub failures: u32,
    pub last_failure: UnixTime,
}

/// `[app_passwords] max_failures`, `lockout_seconds`, `failure_window_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppPasswordLockPolicy {
    pub max_failures: u32,
    pub lockout_seconds: u64,
    pub failure_window_seconds: u64,
}

impl AppPasswordLockPolicy {
    /// From the configuration in force.
    pub fn from_config(c: &twostep_config::AppPasswords) -> AppPasswordLockPolicy {
        AppPasswordLockPolicy {
            max_failures: u32::try_from(c.max_failures.get()).unwrap_or(u32::MAX),
            lockout_seconds: c.lockout_seconds.get(),
            failure_window_seconds: c.failure_window_seconds.get(),
        }
    }
}

/// Until when the user's app passwords are locked at `now`; `None`: not locked.
pub fn locked_until(record: &Record, now: UnixTime, p: &AppPasswordLockPolicy) -> Option<UnixTime> {
    let f = record.app_password_failures.as_ref()?;
    if f.failures < p.max_failures {
        return None;
    }
    let until = f.last_failure.plus(p.lockout_seconds);
    (now < until).then_some(until)
}

/// Count a wrong app password; whether this one locked them.
pub fn charge(record: &mut Record, now: UnixTime, p: &AppPasswordLockPolicy) -> bool {
    let live = match &record.app_password_failures {
        Some(f)
            if f.failures < p.max_failures
                && now.0.saturating_sub(f.last_failure.0) < p.failure_window_seconds =>
        {
            f.failures
        }
        _ => 0,
    };
    let failures = live.saturating_add(1);
    record.app_password_failures = Some(AppPasswordFailures {
        failures,
        last_failure: now,
    });
    failures >= p.max_failures
}

/// A right app password, or an admin's unlock: the count starts again.
pub fn clear(record: &mut Record) {
    record.app_password_failures = None;
}

/// What a client is told while app passwords are locked (never why a password was wrong).
pub fn locked_message(until: UnixTime, now: UnixTime) -> String {
    format!(
        "Too many wrong app passwords: app passwords are locked for {} more seconds.",
        until.0.saturating_sub(now.0).max(1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: AppPasswordLockPolicy = AppPasswordLockPolicy {
        max_failures: 3,
        lockout_seconds: 300,
        failure_window_seconds: 900,
    };

    #[test]
    fn max_failures_in_the_window_lock_for_lockout_seconds_then_count_again() {
        let mut r = Record::new("alice");
        assert!(!charge(&mut r, UnixTime(1000), &P));
        assert!(!charge(&mut r, UnixTime(1100), &P));
        assert_eq!(locked_until(&r, UnixTime(1100), &P), None);
        assert!(charge(&mut r, UnixTime(1200), &P));
        assert_eq!(locked_until(&r, UnixTime(1200), &P), Some(UnixTime(1500)));
        assert_eq!(locked_until(&r, UnixTime(1499), &P), Some(UnixTime(1500)));
        assert_eq!(locked_until(&r, UnixTime(1500), &P), None);
        // After the lock: counted from 1 again, never escalated.
        assert!(!charge(&mut r, UnixTime(1600), &P));
        assert_eq!(r.app_password_failures.as_ref().unwrap().failures, 1);
        // The interactive counter is not touched.
        assert_eq!((r.failures, r.last_failure), (0, None));
    }

    #[test]
    fn failures_older_than_the_window_stop_counting_and_clear_resets() {
        let mut r = Record::new("alice");
        charge(&mut r, UnixTime(1000), &P);
        charge(&mut r, UnixTime(1100), &P);
        assert!(!charge(&mut r, UnixTime(1100 + 900), &P));
        assert_eq!(r.app_password_failures.as_ref().unwrap().failures, 1);
        clear(&mut r);
        assert_eq!(r.app_password_failures, None);
        let json = serde_json::to_string(&r).unwrap();
        assert!(!json.contains("app_password_failures"), "{json}");
    }
}
