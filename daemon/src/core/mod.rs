// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's logic: plain Rust over values, no bus and no async runtime in sight.
//! Every function that needs "now" takes it as a parameter.
//!
//! [`Core`] (`engine`) is the front over the parts it owns: `settings` (the configuration
//! in force), `store` (records, one transaction per account), `users` (accounts behind the
//! `Accounts` trait), `login` (conversations in flight) and the recovery-code hash pool.
//! `selfservice` and `admin` are its user and admin operations, `authz` who may do what,
//! `audit` the login audit line. `verify` is the one place for verification methods (the
//! `Method` enum, what a record offers, one check with the lockout around it; one file per
//! method beside it), `messages` every text a user reads, and `state` the user summary
//! built once from a record for both the user's `status` and an admin's view. `apppw` is app
//! passwords: their record entries, create/list/revoke, the app-password login (a mode of
//! the login conversation, not a second-factor `Method`) and the expiry notices.

pub mod admin;
pub mod apppw;
pub mod apppw_lock;
pub mod audit;
pub mod authz;
pub mod clock;
pub mod clock_trouble;
pub mod email;
pub mod email_flows;
pub mod engine;
pub mod enrol_at_login;
pub mod error;
pub mod import;
pub mod lockout;
pub mod login;
pub mod mail;
pub mod messages;
pub mod passwd;
pub mod policy;
pub mod qr;
pub mod record;
pub mod recovery;
pub mod seal;
pub mod selfservice;
pub mod services;
pub mod settings;
pub mod state;
pub mod store;
pub mod timefmt;
pub mod totp;
pub mod transfer;
pub mod trust;
pub mod users;
pub mod verify;

#[cfg(test)]
mod apppw_lock_tests;
#[cfg(test)]
mod apppw_tests;
#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod authenticator_tests;
#[cfg(test)]
mod clock_trouble_tests;
#[cfg(test)]
mod email_tests;
#[cfg(test)]
mod fake_tests;
#[cfg(test)]
mod login_edges_tests;
#[cfg(test)]
mod secret_debug_tests;
#[cfg(test)]
mod services_tests;
#[cfg(test)]
mod test_support;

pub use authz::Caller;
pub use clock::UnixTime;
pub use engine::Core;
pub use error::Error;
