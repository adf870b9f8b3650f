// SPDX-License-Identifier: MIT OR Apache-2.0
//! [`Method::Recovery`](super::Method::Recovery): one unused one-time recovery code, spent
//! when it is accepted.

use super::{Attempt, Used};
use crate::core::record::Record;
use crate::core::recovery::{self, HashPool};
use crate::core::UnixTime;

/// Try `answer` as one of the record's unused recovery codes; an accepted one is marked
/// spent at `now`.
pub(super) fn attempt(
    record: &mut Record,
    answer: &[u8],
    hashes: &HashPool,
    now: UnixTime,
) -> Attempt {
    match recovery::find(answer, &record.recovery, hashes) {
        Some(i) => {
            if let Some(c) = record.recovery.get_mut(i) {
                c.used = Some(now);
            }
            Attempt::Accepted(Used::RecoveryCode {
                left: recovery::left(&record.recovery),
            })
        }
        None => Attempt::NoMatch,
    }
}
