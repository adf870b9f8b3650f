// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real local users, created with `useradd` and removed with `userdel`.

use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use crate::proc::{self, Creds};
use crate::{cleanup, unique};

/// The GECOS field of every test user: `twostep-e2e <pid>`, so [`cleanup`] can tell our
/// leftovers (from a killed test process) from anyone else's accounts.
pub const GECOS_PREFIX: &str = "twostep-e2e";

/// Why: `useradd`/`userdel` lock /etc/passwd and fail (not wait) when it is locked, so
/// threads of this process take turns; other processes are handled by retrying.
static ACCOUNTS: Mutex<()> = Mutex::new(());

/// A local user `ts_<unique>` without home directory (`useradd -M -N`: primary group is
/// the `users` group), deleted on drop.
#[derive(Debug)]
pub struct User {
    name: String,
    uid: u32,
    gid: u32,
}

impl User {
    /// Create a fresh user.
    pub fn create() -> User {
        crate::require_root();
        cleanup::sweep_once();
        let name = unique::user_name();
        let gecos = format!("{GECOS_PREFIX} {}", std::process::id());
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "useradd");
            c.args(["-M", "-N", "-s", "/bin/bash", "-c", &gecos, &name]);
            c
        });
        assert!(out.success(), "useradd {name} failed:\n{out}");
        let (uid, gid) =
            lookup(&name).unwrap_or_else(|| panic!("{name} not in passwd after useradd"));
        User { name, uid, gid }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// uid and gid, for [`proc::command`] and friends.
    pub fn creds(&self) -> Creds {
        Creds {
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// A `Command` running `program` as this user (`setpriv --reuid --regid
    /// --clear-groups --`), with the harness's clean environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        proc::command(Some(self.creds()), program)
    }
}

impl Drop for User {
    fn drop(&mut self) {
        if let Err(e) = delete(&self.name) {
            eprintln!("warning: could not delete test user {}: {e}", self.name);
        }
    }
}

/// Run `user(mod|add|del)` built by `make`, retrying while another process holds the
/// account files' lock (`useradd` exit 10 / "cannot lock").
pub(crate) fn accounts_cmd(make: impl Fn() -> Command) -> proc::Output {
    let _turn = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let out = proc::run(make(), b"", Duration::from_secs(30));
        let locked = out.stderr.contains("lock") || out.status.code() == Some(10);
        if out.success() || !locked || attempt >= 20 {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50 * attempt));
    }
}

/// `userdel name`, retried on lock contention; `userdel -f` when processes of the user are
/// still around (they are ours: a daemon or pamtester started as the user).
pub(crate) fn delete(name: &str) -> Result<(), String> {
    let out = accounts_cmd(|| {
        let mut c = proc::command(None, "userdel");
        c.arg(name);
        c
    });
    if out.success() || lookup(name).is_none() {
        return Ok(());
    }
    let forced = accounts_cmd(|| {
        let mut c = proc::command(None, "userdel");
        c.args(["-f", name]);
        c
    });
    if forced.success() || lookup(name).is_none() {
        Ok(())
    } else {
        Err(format!("{out}\n{forced}"))
    }
}

/// uid and gid of `name` from `getent passwd`.
pub fn lookup(name: &str) -> Option<(u32, u32)> {
    let mut c = proc::command(None, "getent");
    c.args(["passwd", name]);
    let out = proc::run(c, b"", Duration::from_secs(10));
    if !out.success() {
        return None;
    }
    let fields: Vec<&str> = out.stdout.trim_end().split(':').collect();
    match fields.as_slice() {
        [n, _, uid, gid, ..] if *n == name => Some((uid.parse().ok()?, gid.parse().ok()?)),
        _ => None,
    }
}
