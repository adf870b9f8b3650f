// SPDX-License-Identifier: MIT OR Apache-2.0
//! Test users with a home directory of their own, for the files other 2FA modules keep
//! there (`~/.google_authenticator`): the home is a fresh temp directory, set with
//! `usermod -d`, owned by the user with mode 0700 (inside a 0755 directory, so the user
//! can reach it, as `pam_google_authenticator` does after dropping to the user's uid).

use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};

use crate::proc;
use crate::unique;
use crate::user::{accounts_cmd, User};

/// A [`User`] whose home directory exists; both are removed on drop (user first).
pub struct HomeUser {
    pub user: User,
    home: PathBuf,
    _dir: tempfile::TempDir,
}

impl HomeUser {
    /// A fresh user with a fresh home directory.
    pub fn create() -> HomeUser {
        let user = User::create();
        let dir = unique::temp_dir("home");
        unique::chmod(dir.path(), 0o755);
        let home = dir.path().join(user.name());
        std::fs::create_dir(&home).expect("create home");
        chown(&home, Some(user.uid()), Some(user.gid())).expect("chown home");
        unique::chmod(&home, 0o700);
        let out = accounts_cmd(|| {
            let mut c = proc::command(None, "usermod");
            c.args(["-d", &home.display().to_string(), user.name()]);
            c
        });
        assert!(out.success(), "usermod -d failed:\n{out}");
        HomeUser {
            user,
            home,
            _dir: dir,
        }
    }

    pub fn name(&self) -> &str {
        self.user.name()
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }
}
