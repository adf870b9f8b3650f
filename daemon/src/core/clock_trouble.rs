// SPDX-License-Identifier: MIT OR Apache-2.0
//! Clock trouble made visible (issue 20 item 10). A phone's or the host's clock that is off
//! shows at a login only as "wrong code" (codes of a step outside the window) or "code
//! already used" (the host clock stepped back behind a step already accepted). Both are
//! noticed here, while an answer is checked, and kept in the record as a small bounded
//! [`ClockNote`] that `twostepctl user show`, `status` and `doctor` show.
//!
//! Diagnosis only: the window is never widened, the login's answer, charge and audit tag
//! stay what they are without this, and the extra work is a fixed number of HMACs per
//! wrong numeric answer ([`reach`]), the same whether anything matched or not, so it is
//! neither an oracle nor a timing signal. A guess matches some step outside the window
//! with a chance of about `2 × reach / 10^digits` (4 in 100,000 for 6 digits), so a note
//! says how often its offset was seen: one sighting can be chance, several cannot.

use serde::{Deserialize, Serialize};

use super::audit::{EventKind, Source};
use super::record::Record;
use super::UnixTime;

/// How far from now, in seconds, a refused code is looked for: ten minutes either way.
pub const REACH_SECS: u64 = 600;
/// At most this many steps either way, whatever the period.
pub const MAX_REACH_STEPS: u64 = 20;
/// The host clock counts as stepped back when it reads this many seconds before a time the
/// record already holds (a second factor used, a failure counted). Why not 0: hosts of a
/// fleet sharing one store differ by a few seconds without anything being wrong.
pub const BACKWARDS_TOLERANCE_SECS: u64 = 30;

/// The steps either side of now a refused code of a key with `period` is compared with.
pub fn reach(period: u64) -> u64 {
    (REACH_SECS / period.max(1)).clamp(1, MAX_REACH_STEPS)
}

/// What was seen of clock trouble at this user's logins (both parts bounded in size).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClockNote {
    /// Refused codes that are codes of a step outside the window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skew: Option<Skew>,
    /// The host clock read earlier than a time already in the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backwards: Option<Backwards>,
}

/// A refused code matched a step outside the window.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Skew {
    /// Matched step minus now's step: negative, the app's codes are behind the host clock.
    pub steps: i64,
    /// The key's period, seconds (to say the offset in minutes).
    pub period: u64,
    /// The authenticator whose key matched.
    pub authenticator: String,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    /// Sightings of this offset in a row (a different offset starts again at 1).
    pub times: u32,
}

/// The host clock read `by_secs` seconds before a time the record already held.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Backwards {
    /// The largest step back seen, seconds.
    pub by_secs: u64,
    pub first_seen: UnixTime,
    pub last_seen: UnixTime,
    pub times: u32,
}

impl ClockNote {
    /// Nothing noted (the record field is then left out).
    pub fn is_empty(&self) -> bool {
        self.skew.is_none() && self.backwards.is_none()
    }
}

/// The latest time the record holds from this or another host's clock: a second factor
/// used, a success, a failure.
fn latest_time(record: &Record) -> Option<UnixTime> {
    record
        .authenticators
        .iter()
        .filter_map(|a| a.last_used)
        .chain(record.last_success)
        .chain(record.last_failure)
        .max()
}

/// Whether `now` is more than [`BACKWARDS_TOLERANCE_SECS`] before a time `record` holds:
/// noted, logged and returned (seconds back). Called before an answer is checked, so a
/// "code already used" that follows is explained.
pub fn notice_backwards(record: &mut Record, now: UnixTime, from: &Source) -> Option<u64> {
    let latest = latest_time(record)?;
    let by_secs = latest.0.checked_sub(now.0)?;
    if by_secs <= BACKWARDS_TOLERANCE_SECS {
        return None;
    }
    let note = record.clock.get_or_insert_with(ClockNote::default);
    let b = note.backwards.get_or_insert(Backwards {
        by_secs,
        first_seen: now,
        last_seen: now,
        times: 0,
    });
    b.by_secs = b.by_secs.max(by_secs);
    b.last_seen = now;
    b.times = b.times.saturating_add(1);
    let first = b.times == 1;
    log::warn!(
        "user={} clock=stepped-back seconds={by_secs}: the host clock reads earlier than this \
         user's last recorded login; codes already used are refused until it catches up \
         (check the host's time synchronisation)",
        super::audit::field(&record.user)
    );
    if first {
        record.note(
            now,
            EventKind::Clock,
            format!("the host clock read {by_secs} s earlier than this user's last login"),
            from,
        );
    }
    Some(by_secs)
}

/// A refused code of `authenticator` matched `steps` steps from now: noted (with the
/// sighting count), logged, and an event for `user show`. Never a code in any of them.
pub fn note_skew(
    record: &mut Record,
    authenticator: &str,
    (steps, period): (i64, u64),
    now: UnixTime,
    from: &Source,
) {
    let note = record.clock.get_or_insert_with(ClockNote::default);
    let times = match &note.skew {
        Some(s) if s.steps == steps && s.authenticator == authenticator => {
            s.times.saturating_add(1)
        }
        _ => 1,
    };
    let first_seen = match &note.skew {
        Some(s) if times > 1 => s.first_seen,
        _ => now,
    };
    note.skew = Some(Skew {
        steps,
        period,
        authenticator: authenticator.to_owned(),
        first_seen,
        last_seen: now,
        times,
    });
    let text = skew_text(steps, period);
    log::warn!(
        "user={} clock=skew steps={steps} authenticator={} times={times}: a refused code is \
         the code of a step {text}; the window was not widened",
        super::audit::field(&record.user),
        super::audit::field(authenticator),
    );
    record.note(
        now,
        EventKind::Clock,
        format!("refused code matched a step {text} (check the phone's or the host's clock)"),
        from,
    );
}

/// A code of this authenticator was accepted: an offset noted for it is over, and so is a
/// clock stepped back (an accepted code is of a step after every step used on it). The
/// events and the log keep what was seen.
pub fn accepted(record: &mut Record, authenticator: &str) {
    if let Some(note) = &mut record.clock {
        note.backwards = None;
        if note
            .skew
            .as_ref()
            .is_some_and(|s| s.authenticator == authenticator)
        {
            note.skew = None;
        }
        if note.is_empty() {
            record.clock = None;
        }
    }
}

/// "4 steps (2 min) behind the host clock" / "… ahead of …".
pub fn skew_text(steps: i64, period: u64) -> String {
    let secs = steps.unsigned_abs().saturating_mul(period);
    format!("{} the host clock", offset_text(steps, secs))
}

/// "4 steps (2 min) behind" / "1 step (30 s) ahead of": `steps` (negative: behind) that
/// span `secs` seconds.
pub fn offset_text(steps: i64, secs: u64) -> String {
    let n = steps.unsigned_abs();
    let span = if secs % 60 == 0 {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    };
    format!(
        "{n} step{} ({span}) {}",
        if n == 1 { "" } else { "s" },
        if steps < 0 { "behind" } else { "ahead of" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reach_is_ten_minutes_bounded() {
        assert_eq!(reach(30), 20);
        assert_eq!(reach(60), 10);
        assert_eq!(reach(1), MAX_REACH_STEPS);
        assert_eq!(reach(0), MAX_REACH_STEPS);
        assert_eq!(reach(3600), 1);
    }

    #[test]
    fn skew_text_says_direction_and_minutes() {
        assert_eq!(skew_text(-4, 30), "4 steps (2 min) behind the host clock");
        assert_eq!(skew_text(1, 30), "1 step (30 s) ahead of the host clock");
    }

    #[test]
    fn the_same_offset_counts_up_and_another_starts_again() {
        let mut r = Record::new("alice");
        note_skew(
            &mut r,
            "default",
            (-4, 30),
            UnixTime(100),
            &Source::default(),
        );
        note_skew(
            &mut r,
            "default",
            (-4, 30),
            UnixTime(200),
            &Source::default(),
        );
        let s = r.clock.as_ref().and_then(|c| c.skew.clone()).unwrap();
        assert_eq!(
            (s.times, s.first_seen, s.last_seen),
            (2, UnixTime(100), UnixTime(200))
        );
        note_skew(
            &mut r,
            "default",
            (5, 30),
            UnixTime(300),
            &Source::default(),
        );
        let s = r.clock.as_ref().and_then(|c| c.skew.clone()).unwrap();
        assert_eq!((s.steps, s.times, s.first_seen), (5, 1, UnixTime(300)));
        accepted(&mut r, "other");
        assert!(r.clock.is_some());
        accepted(&mut r, "default");
        assert_eq!(r.clock, None);
    }

    #[test]
    fn a_clock_before_the_records_latest_time_is_noticed_beyond_the_tolerance() {
        let mut r = Record::new("alice");
        assert_eq!(
            notice_backwards(&mut r, UnixTime(10), &Source::default()),
            None
        );
        r.last_success = Some(UnixTime(1000));
        assert_eq!(
            notice_backwards(&mut r, UnixTime(1000 - 30), &Source::default()),
            None
        );
        assert_eq!(
            notice_backwards(&mut r, UnixTime(2000), &Source::default()),
            None
        );
        assert_eq!(r.clock, None);
        assert_eq!(
            notice_backwards(&mut r, UnixTime(700), &Source::default()),
            Some(300)
        );
        assert_eq!(
            notice_backwards(&mut r, UnixTime(900), &Source::default()),
            Some(100)
        );
        let b = r.clock.and_then(|c| c.backwards).unwrap();
        assert_eq!((b.by_secs, b.times, b.first_seen), (300, 2, UnixTime(700)));
    }
}
