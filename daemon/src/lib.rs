// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd: the root daemon that owns every secret and decides every login.
//!
//! `core` is the logic (no bus); `bus` is the thin D-Bus adapter; `configfile` reads and
//! checks the configuration; `import` reads other 2FA modules' enrolments (for
//! `twostepctl admin import`); `mailer` sends mail (lettre) for the core; `notices` runs
//! the periodic app-password expiry notices; `logging` sends audit lines to syslog
//! (authpriv) and stderr.
#![forbid(unsafe_code)]

pub mod bus;
pub mod clockwatch;
pub mod configfile;
pub mod core;
#[doc(hidden)]
pub mod fuzzing;
pub mod import;
pub mod logging;
pub mod mailer;
pub mod notices;
