// SPDX-License-Identifier: MIT OR Apache-2.0
//! core::Error → the contract's named errors, in one exhaustive match, so a new variant
//! cannot reach the bus unnamed.

use crate::core::Error as Core;
use twostep_proto::Error as Wire;

impl From<Core> for Wire {
    fn from(e: Core) -> Wire {
        let text = e.to_string();
        match e {
            Core::AccessDenied(_) => Wire::AccessDenied(text),
            Core::UnknownUser(_) => Wire::UnknownUser(text),
            Core::InvalidArgument(_) => Wire::InvalidArgument(text),
            Core::CorruptRecord { .. }
            | Core::Storage { .. }
            | Core::FormerAccount { .. }
            | Core::Unavailable(_)
            | Core::Internal(_) => {
                log::error!("{text}");
                Wire::Unavailable(text)
            }
            Core::NoSession | Core::PromptTimedOut => Wire::NoSession(text),
            Core::Busy(_) => Wire::Busy(text),
            Core::NotEnrolled(_) => Wire::NotEnrolled(text),
            Core::AlreadyEnrolled(_) => Wire::AlreadyEnrolled(text),
            Core::NoPendingEnrollment(_) => Wire::NoPendingEnrollment(text),
            Core::WrongCode(_) => Wire::WrongCode(text),
            Core::Locked { .. } => Wire::Locked(text),
        }
    }
}
