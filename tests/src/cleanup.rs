// SPDX-License-Identifier: MIT OR Apache-2.0
//! Sweeping what a previous, killed test process left behind: `/etc/pam.d/twostep-e2e-*`
//! files and `ts_*` users whose creating pid is gone.
//!
//! Only entries that carry our marks are touched: PAM files named
//! `twostep-e2e-<pid>-<counter>-<random>` and users whose GECOS field is
//! `twostep-e2e <pid>`. An entry whose pid is alive is left alone (it may belong to a
//! test binary running next to us); `Drop` is what cleans up in the normal case.

use std::path::Path;
use std::sync::Once;

use crate::user::{self, GECOS_PREFIX};

/// Prefix of every PAM service file the harness writes.
pub const PAM_PREFIX: &str = "twostep-e2e-";

static SWEEP: Once = Once::new();

/// Sweep once per process.
pub fn sweep_once() {
    SWEEP.call_once(sweep);
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove leftovers whose creating process no longer exists.
pub fn sweep() {
    if let Ok(entries) = std::fs::read_dir("/etc/pam.d") {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PAM_PREFIX) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if !alive(pid) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        let (Some(name), Some(gecos)) = (f.first(), f.get(4)) else {
            continue;
        };
        let Some(pid) = gecos
            .strip_prefix(GECOS_PREFIX)
            .and_then(|r| r.strip_prefix(' '))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if name.starts_with("ts_") && !alive(pid) {
            if let Err(e) = user::delete(name) {
                eprintln!("warning: could not sweep stale test user {name}: {e}");
            }
        }
    }
}
