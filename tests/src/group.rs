// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real local groups, created with `groupadd`, filled with `gpasswd -a`, removed with
//! `groupdel`. The daemon resolves groups through NSS at check time, so membership changes
//! take effect without restarting anything.
//!
//! Names are `tsg_<pid>-<counter>-<random>` (at most 32 characters); a group whose pid is
//! gone is a leftover of a killed test process and is swept on the first create.

use std::sync::Once;
use std::time::Duration;

use crate::proc;
use crate::unique;
use crate::user::{accounts_cmd, User};

/// Prefix of every test group.
pub const GROUP_PREFIX: &str = "tsg_";

static SWEEP: Once = Once::new();

/// A local group, deleted on drop.
#[derive(Debug)]
pub struct Group {
    name: String,
    /// Deleted already by [`Group::delete_now`].
    deleted: std::cell::Cell<bool>,
}

impl Group {
    /// Create a fresh, empty group.
    pub fn create() -> Group {
        crate::require_root();
        SWEEP.call_once(sweep);
        let name = format!("{GROUP_PREFIX}{}", unique::token());
        assert!(name.len() <= 32, "group name too long: {name}");
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "groupadd");
            c.arg(&name);
            c
        });
        assert!(out.success(), "groupadd {name} failed:\n{out}");
        Group {
            name,
            deleted: std::cell::Cell::new(false),
        }
    }

    /// Delete the group now (`groupdel`), as an admin or a directory change would while
    /// the daemon runs; the drop then has nothing left to do.
    pub fn delete_now(&self) {
        let out = delete(&self.name);
        assert!(out.success(), "groupdel {} failed:\n{out}", self.name);
        self.deleted.set(true);
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Add `user` to the group (`gpasswd -a`).
    pub fn add(&self, user: &User) {
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "gpasswd");
            c.args(["-a", user.name(), &self.name]);
            c
        });
        assert!(
            out.success(),
            "gpasswd -a {} {} failed:\n{out}",
            user.name(),
            self.name
        );
        assert!(
            self.members().iter().any(|m| m == user.name()),
            "{} not listed in {} after gpasswd -a",
            user.name(),
            self.name
        );
    }

    /// Add the account named `name` (a [`crate::alias::UidUser`], say) to the group.
    pub fn add_name(&self, name: &str) {
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "gpasswd");
            c.args(["-a", name, &self.name]);
            c
        });
        assert!(
            out.success(),
            "gpasswd -a {name} {} failed:\n{out}",
            self.name
        );
    }

    /// Remove `user` from the group (`gpasswd -d`).
    pub fn remove(&self, user: &User) {
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "gpasswd");
            c.args(["-d", user.name(), &self.name]);
            c
        });
        assert!(
            out.success(),
            "gpasswd -d {} {} failed:\n{out}",
            user.name(),
            self.name
        );
    }

    /// The members `getent group` lists.
    pub fn members(&self) -> Vec<String> {
        let mut c = proc::command(None, "getent");
        c.args(["group", &self.name]);
        let out = proc::run(c, b"", Duration::from_secs(10));
        out.stdout
            .trim_end()
            .split(':')
            .nth(3)
            .unwrap_or_default()
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .collect()
    }
}

fn delete(name: &str) -> proc::Output {
    accounts_cmd(|| {
        let mut c = proc::command(None, "groupdel");
        c.arg(name);
        c
    })
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.deleted.get() {
            return;
        }
        let out = delete(&self.name);
        if !out.success() {
            eprintln!("warning: could not delete test group {}:\n{out}", self.name);
        }
    }
}

/// Remove test groups whose creating process is gone.
fn sweep() {
    let text = std::fs::read_to_string("/etc/group").unwrap_or_default();
    for line in text.lines() {
        let Some(name) = line.split(':').next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(GROUP_PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = delete(name);
        }
    }
}
