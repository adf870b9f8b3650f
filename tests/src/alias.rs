// SPDX-License-Identifier: MIT OR Apache-2.0
//! Accounts that share a uid with another: a second name for an existing uid
//! (`useradd -o -u UID`), and a new account that gets the uid of a deleted one
//! (`userdel` then `useradd -u UID`). Both are deleted on drop, like [`User`].

use crate::proc::{self, Creds};
use crate::user::{self, GECOS_PREFIX};
use crate::{cleanup, unique, User};

/// A local account `ts_<unique>` made with an explicit uid; deleted (by name) on drop.
#[derive(Debug)]
pub struct UidUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl UidUser {
    /// A second name for `of`'s uid (`useradd -o -u <uid>`): same uid, own name.
    pub fn alias_of(of: &User) -> UidUser {
        crate::require_root();
        cleanup::sweep_once();
        let name = unique::user_name();
        let gecos = format!("{GECOS_PREFIX} {}", std::process::id());
        let uid = of.uid().to_string();
        let out = user::accounts_cmd(|| {
            let mut c = proc::command(None, "useradd");
            c.args([
                "-M",
                "-N",
                "-o",
                "-u",
                &uid,
                "-s",
                "/bin/bash",
                "-c",
                &gecos,
                &name,
            ]);
            c
        });
        assert!(out.success(), "useradd -o -u {uid} {name} failed:\n{out}");
        UidUser::looked_up(name)
    }

    /// Delete `old` and create a new account with its uid, in one step (so no other
    /// test's `useradd` takes the freed uid in between).
    pub fn reusing_uid_of(old: User) -> UidUser {
        crate::require_root();
        let name = unique::user_name();
        let gecos = format!("{GECOS_PREFIX} {}", std::process::id());
        let script = format!(
            "userdel {old} 2>/dev/null; getent passwd {old} >/dev/null && exit 10; \
             useradd -M -N -u {uid} -s /bin/bash -c '{gecos}' {name}",
            old = old.name(),
            uid = old.uid(),
        );
        let out = user::accounts_cmd(|| {
            let mut c = proc::command(None, "sh");
            c.args(["-c", &script]);
            c
        });
        assert!(out.success(), "re-using uid {}:\n{out}", old.uid());
        let reused = UidUser::looked_up(name);
        assert_eq!(reused.uid, old.uid());
        // `old` is gone already; its drop finds nothing to delete.
        drop(old);
        reused
    }

    fn looked_up(name: String) -> UidUser {
        let (uid, gid) =
            user::lookup(&name).unwrap_or_else(|| panic!("{name} not in passwd after useradd"));
        UidUser { name, uid, gid }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// uid and gid, for [`proc::command`] and friends.
    pub fn creds(&self) -> Creds {
        Creds {
            uid: self.uid,
            gid: self.gid,
        }
    }
}

impl Drop for UidUser {
    fn drop(&mut self) {
        if let Err(e) = user::delete(&self.name) {
            eprintln!("warning: could not delete test user {}: {e}", self.name);
        }
    }
}
