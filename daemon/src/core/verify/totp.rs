// SPDX-License-Identifier: MIT OR Apache-2.0
//! [`Method::Totp`](super::Method::Totp): a code of any of the user's authenticators, each
//! with its own replay mark.

use super::Attempt;
use crate::core::audit::Source;
use crate::core::clock_trouble;
use crate::core::record::Record;
use crate::core::totp::{self, Check};
use crate::core::{Error, UnixTime};

/// Try `answer` as a code of each authenticator in turn. The first that accepts it gets
/// its replay mark set to the matched step and its last use to `now`. A code matching a
/// step already used on an authenticator is a replay only when no other accepts it.
///
/// # Errors
/// [`Error::CorruptRecord`] when a stored key is unusable (fails closed).
pub(super) fn attempt(
    record: &mut Record,
    answer: &[u8],
    now: UnixTime,
    window: u64,
) -> Result<Attempt, Error> {
    if !answer.iter().all(u8::is_ascii_digit) {
        return Ok(Attempt::NoMatch);
    }
    let mut replayed = false;
    let user = &record.user;
    for a in &mut record.authenticators {
        let check = totp::check(&a.key, answer, now, window, a.last_step).map_err(|e| {
            Error::CorruptRecord {
                user: user.clone(),
                reason: e.to_string(),
            }
        })?;
        match check {
            Check::Accepted { step } => {
                a.last_step = Some(step);
                a.last_used = Some(now);
                let name = a.name.clone();
                clock_trouble::accepted(record, &name);
                return Ok(Attempt::Accepted(super::Used::Authenticator(name)));
            }
            Check::Replayed => replayed = true,
            Check::Wrong => {}
        }
    }
    Ok(if replayed {
        Attempt::Replayed
    } else {
        Attempt::NoMatch
    })
}

/// Diagnosis of a refused numeric answer (issue 20 item 10, `clock_trouble`): whether it is
/// the code of a step outside the window of one of the authenticators, within
/// [`clock_trouble::reach`]; noted in the record when it is. Every authenticator's whole
/// range is computed (no early exit), so the work does not depend on the answer. The answer
/// stays refused and charged as it was.
///
/// # Errors
/// [`Error::CorruptRecord`] when a stored key is unusable (fails closed).
pub(super) fn diagnose(
    record: &mut Record,
    answer: &[u8],
    now: UnixTime,
    window: u64,
    from: &Source,
) -> Result<(), Error> {
    if !answer.iter().all(u8::is_ascii_digit) {
        return Ok(());
    }
    let mut found: Option<(String, i64, u64)> = None;
    for a in &record.authenticators {
        let reach = clock_trouble::reach(a.key.period);
        let offset =
            totp::offset_outside_window(&a.key, answer, now, window, reach).map_err(|e| {
                Error::CorruptRecord {
                    user: record.user.clone(),
                    reason: e.to_string(),
                }
            })?;
        if let (None, Some(steps)) = (&found, offset) {
            found = Some((a.name.clone(), steps, a.key.period));
        }
    }
    if let Some((name, steps, period)) = found {
        clock_trouble::note_skew(record, &name, (steps, period), now, from);
    }
    Ok(())
}
