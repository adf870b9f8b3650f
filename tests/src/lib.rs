// SPDX-License-Identifier: MIT OR Apache-2.0
//! End-to-end harness for twostep: a private `dbus-daemon` that includes the shipped bus
//! policy, `twostepd` on a temp state dir, real local users, PAM service files naming the
//! built module by absolute path and driven by `pamtester`, codes from `oathtool`.
//!
//! Every test must run as root. Tests run in parallel threads, so every temp dir, socket,
//! PAM service and user name is unique (pid + counter + random suffix), and every piece
//! cleans up after itself on `Drop`, also while a test panics (and then prints the logs of
//! the bus and the daemon it owned). Leftovers of a killed test process are swept on the
//! next run: see [`cleanup`].
//!
//! The harness never touches the machine's own sshd, sudo or PAM files: it only creates
//! `/etc/pam.d/twostep-e2e-<unique>` files and `ts_<unique>` users, and removes them.
#![forbid(unsafe_code)]

pub mod alias;
pub mod artifacts;
pub mod bus;
pub mod cleanup;
pub mod client;
pub mod ctl;
pub mod daemon;
pub mod documented;
pub mod dovecot;
pub mod fake_owner;
pub mod flows;
pub mod group;
pub mod homes;
pub mod interact;
pub mod json;
pub mod logins;
pub mod ns;
pub mod otp;
pub mod pam;
pub mod pamclient;
pub mod postgres;
pub mod proc;
pub mod prompts;
pub mod pty;
pub mod qr;
pub mod records;
pub mod smtp;
pub mod sshd;
pub mod stack;
pub mod sudo;
pub mod syslog;
pub mod transport;
pub mod unique;
pub mod user;

pub use bus::Bus;
pub use ctl::{Ctl, Enrolled};
pub use daemon::{Daemon, DaemonConfig};
pub use otp::Algorithm;
pub use pam::{PamRun, PamService};
pub use proc::{Creds, Output};
pub use stack::Stack;
pub use user::User;

use std::os::unix::fs::MetadataExt;

/// Panics unless the test process runs as root (uid 0): the harness creates users,
/// writes `/etc/pam.d` and switches uids.
pub fn require_root() {
    // Why: `/proc/self` is owned by the effective uid of the process; no libc call needed.
    let euid = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(u32::MAX);
    assert_eq!(
        euid, 0,
        "the twostep e2e tests must run as root (they create users, write /etc/pam.d \
         and switch uids); run them with `sudo -E cargo test -p twostep-e2e` or in CI as root"
    );
}
