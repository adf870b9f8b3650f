// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's own watch on the host clock (issue 20 item 10): every [`PERIOD`] the wall
//! clock's advance is compared with the monotonic clock's, and a step of more than
//! [`TOLERANCE_SECS`] is logged, whether or not anyone logs in. A step back makes codes
//! already used refused ("already used") until the clock catches up; the logins themselves
//! are diagnosed per user by `core::clock_trouble` (shown by `user show` and `doctor`).

use std::time::{Duration, Instant};

use crate::core::clock::{self, UnixTime};
use crate::core::clock_trouble::BACKWARDS_TOLERANCE_SECS;

/// Time between two looks at the clocks.
pub const PERIOD: Duration = Duration::from_secs(30);
/// A difference between the two clocks' advance up to this many seconds is not a step.
pub const TOLERANCE_SECS: u64 = BACKWARDS_TOLERANCE_SECS;

/// How far the wall clock stepped between two looks: its advance from `last` to `now`
/// minus the monotonic clock's `elapsed`, in seconds (negative: back); `None` within
/// [`TOLERANCE_SECS`].
pub fn stepped(last: UnixTime, now: UnixTime, elapsed: Duration) -> Option<i64> {
    let wall = i128::from(now.0) - i128::from(last.0);
    let step = wall - i128::from(elapsed.as_secs());
    (step.unsigned_abs() > u128::from(TOLERANCE_SECS))
        .then(|| i64::try_from(step).unwrap_or(if step < 0 { i64::MIN } else { i64::MAX }))
}

/// Run for ever, logging each step of the wall clock (back: a warning; forward: a notice,
/// as a suspend and resume looks the same).
pub async fn run() {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (clock::now(), Instant::now());
    loop {
        tick.tick().await;
        let now = (clock::now(), Instant::now());
        match stepped(last.0, now.0, now.1.duration_since(last.1)) {
            Some(s) if s < 0 => log::warn!(
                "clock=stepped-back seconds={}: the host clock was set back; codes already \
                 used are refused until it catches up (check the host's time synchronisation)",
                s.unsigned_abs()
            ),
            Some(s) => log::info!(
                "clock=stepped-forward seconds={s}: the host clock moved ahead of the monotonic \
                 clock (a suspend and resume, or the clock was set forward)"
            ),
            None => {}
        }
        last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_beyond_the_tolerance_either_way_are_reported() {
        let t = UnixTime(1_800_000_000);
        let thirty = Duration::from_secs(30);
        assert_eq!(stepped(t, t.plus(30), thirty), None);
        assert_eq!(stepped(t, t.plus(31), thirty), None); // a second of rounding
        assert_eq!(stepped(t, t.plus(60), thirty), None); // exactly the tolerance
        assert_eq!(stepped(t, t.plus(61), thirty), Some(31));
        assert_eq!(stepped(t, UnixTime(t.0 - 270), thirty), Some(-300));
        assert_eq!(stepped(t, t, thirty), None);
        assert_eq!(
            stepped(UnixTime(u64::MAX), UnixTime(0), thirty),
            Some(i64::MIN)
        );
    }
}
