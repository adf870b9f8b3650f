// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's logic: plain Rust over values, no bus and no async runtime in sight.
//! Every function that needs "now" takes it as a parameter.

pub mod admin;
pub mod authz;
pub mod clock;
pub mod engine;
pub mod error;
pub mod lockout;
pub mod policy;
pub mod qr;
pub mod record;
pub mod recovery;
pub mod selfservice;
pub mod store;
pub mod totp;
pub mod trust;
pub mod users;

pub use clock::UnixTime;
pub use engine::{Caller, Core};
pub use error::Error;
