// SPDX-License-Identifier: MIT OR Apache-2.0
//! The one error type of the core. Texts name the user and the reason, never a code.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    AccessDenied(String),
    #[error("unknown user {0:?}")]
    UnknownUser(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the record of user {user:?} is unreadable ({reason}); logins for this user fail until an administrator repairs or resets it")]
    CorruptRecord { user: String, reason: String },
    #[error("storage failure for user {user:?}: {reason}")]
    Storage { user: String, reason: String },
    #[error("no such login session (expired, already answered, or not yours)")]
    NoSession,
    #[error("{0}")]
    Busy(String),
    #[error("user {0:?} has no second factor enrolled")]
    NotEnrolled(String),
    #[error(
        "user {0:?} already has an authenticator; use `twostepctl reset` to move to a new one"
    )]
    AlreadyEnrolled(String),
    #[error("no pending enrolment for user {0:?} (never started, or expired): run `twostepctl enroll` again")]
    NoPendingEnrollment(String),
    #[error("wrong code for user {0:?}")]
    WrongCode(String),
    #[error("user {user:?} is locked {until}")]
    Locked { user: String, until: String },
}
