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
    /// The caller's login session expired unanswered (`[login] prompt_timeout_seconds`);
    /// `login::answer` turns it into a refusal that says so.
    #[error("the code prompt timed out; start again")]
    PromptTimedOut,
    /// Out of capacity (login sessions, work in flight): try again shortly.
    #[error("{0}")]
    Busy(String),
    /// A service the daemon depends on failed (NSS): fails closed, try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The daemon itself failed (random source, hashing, QR code): fails closed.
    #[error("internal error: {0}")]
    Internal(String),
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
    /// The record of this uid was made for an account name that no longer has this uid:
    /// the uid was re-used after `userdel` (or the account renamed). Fails closed.
    #[error(
        "uid {uid} is now {now:?}, but its twostep record was made for {enrolled_as:?}, which \
         no longer has this uid (uid re-used after userdel, or a renamed account); logins of \
         {now:?} fail until an administrator runs `twostepctl user reset {now}` (the account \
         then starts without 2FA and the old enrolment is dropped)"
    )]
    FormerAccount {
        uid: u32,
        enrolled_as: String,
        now: String,
    },
}
