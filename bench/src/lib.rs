// SPDX-License-Identifier: MIT OR Apache-2.0
//! Login benchmarks for twostep, side by side with pam_google_authenticator and pam_oath.
//!
//! `scripts/bench` is the one command: it runs [`run`] (the orchestrator) inside a private
//! mount namespace. The pieces: [`driver`] (real libpam in-process, K threads or one forked
//! process per login), [`verify`] (the daemon's own throughput over persistent bus
//! connections), [`flood`] (wrong codes for one user while another logs in), [`micro`] (the
//! verification core) and [`report`] (the tables of BENCHMARKS.md).

pub mod callgrind;
pub mod daemon;
pub mod driver;
pub mod fleet;
pub mod flood;
pub mod micro;
pub mod otp;
pub mod paired;
pub mod pam;
pub mod report;
pub mod run;
pub mod session_flood;
pub mod shm;
pub mod stats;
pub mod sys;
pub mod users;
pub mod verify;
