// SPDX-License-Identifier: MIT OR Apache-2.0
//! [`Method::Email`](super::Method::Email): the login code mailed to the user's confirmed
//! address (`core::email`), single use: taken out of the record when it is accepted.

use super::{Attempt, Used};
use crate::core::email::{self, Purpose};
use crate::core::record::Record;
use crate::core::UnixTime;

/// Try `answer` as the record's live login code; an accepted one is gone afterwards.
pub(super) fn attempt(record: &mut Record, answer: &[u8], now: UnixTime) -> Attempt {
    let Some(state) = record.email.as_mut() else {
        return Attempt::NoMatch;
    };
    if email::matches(state, Purpose::Login, answer, now) {
        state.code = None;
        Attempt::Accepted(Used::EmailCode)
    } else {
        Attempt::NoMatch
    }
}
