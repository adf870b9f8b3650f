// SPDX-License-Identifier: MIT OR Apache-2.0
//! The key of an enrolment at login (issue 20, item 4): kept as the record's pending
//! enrolment (as `twostepctl enroll` keeps its key, `selfservice`), so a login that ends
//! without confirming it — a wrong code, a closed terminal — does not throw it away: the
//! next login within `[enrollment] pending_seconds` shows the same key, and the entry the
//! phone already has keeps working. Inside one login a wrong first code may be retried
//! [`TRIES`] times in all; wrong codes here are never charged to the lockout (the key is
//! not yet a factor of the user), so the bound per login is what limits them.

use twostep_proto::{Accept, Step, Verdict};

use super::engine::Core;
use super::messages;
use super::record::{Pending, TotpKey};
use super::store::Write;
use super::users::Account;
use super::{Error, UnixTime};

/// Codes one login may try at the enrolment prompt.
pub const TRIES: u32 = 3;

/// The key to show at an enrolment at login of `account`: the record's pending enrolment
/// when it is live (started at an earlier login or by `twostepctl enroll`), else a new
/// one, stored as the pending enrolment for `[enrollment] pending_seconds` (durably,
/// before it is shown). Returns the key and whether it was shown before.
///
/// # Errors
/// The random source fails; the record cannot be read or written.
pub fn key(core: &Core, account: &Account, now: UnixTime) -> Result<(TotpKey, bool), Error> {
    let fresh = core.settings().new_key(now)?;
    let lifetime = core.config().enrollment.pending_seconds.get();
    core.update(account, |record| match &record.pending {
        Some(p) if p.name.is_none() && p.expires > now => (Write::Keep, Ok((p.key.clone(), true))),
        _ => {
            record.pending = Some(Pending {
                key: fresh.clone(),
                expires: now.plus(lifetime),
                name: None,
                replay_mark: None,
            });
            (Write::Save, Ok((fresh.clone(), false)))
        }
    })
}

/// The step after the `wrong`-th wrong code at the enrolment prompt of `key`: the prompt
/// again while tries are left, else the end of this login, saying that the key stays
/// ready for the next one.
pub fn after_wrong(key: &TotpKey, wrong: u32) -> Step {
    let left = TRIES.saturating_sub(wrong);
    if left == 0 {
        return messages::done(Verdict::Denied, messages::ENROL_WRONG_CODE.to_owned());
    }
    Step::Prompt {
        message: format!(
            "That code is not right ({left} {} left). Type the code your app shows now for \
             this key; if it never works, check that the phone's clock is set automatically.",
            if left == 1 { "try" } else { "tries" }
        ),
        prompt: messages::ENROL_PROMPT.into(),
        accept: Accept::Digits { n: key.digits },
    }
}
