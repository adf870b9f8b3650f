// SPDX-License-Identifier: MIT OR Apache-2.0
//! The prompt texts the tests expect, in one place: a test that waits for or checks the
//! code prompt names it from here, so a change of wording is a change of one line.

/// The code prompt of an enrolled user (recovery codes left, as every enrolment makes them).
pub const CODE: &str = "Verification code (or recovery code): ";
/// The code prompt of a user without a recovery code left (all spent, or none made).
pub const CODE_ONLY: &str = "Verification code: ";
/// What every code prompt starts with: for "was a code asked for at all" checks.
pub const CODE_START: &str = "Verification code";
