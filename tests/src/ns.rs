// SPDX-License-Identifier: MIT OR Apache-2.0
//! Programs in a private mount namespace (`unshare --mount`, propagation private): what the
//! harness mounts there is seen by that program and its children only, never by the rest
//! of the machine, and disappears with the last process.
//!
//! Three uses:
//! - a test PAM file bind-mounted over `/etc/pam.d/su` or `/etc/pam.d/login`, for the
//!   programs whose PAM service name is fixed (the machine's files are not modified: they
//!   are hidden from this one process tree);
//! - a test sudoers file bind-mounted over `/etc/sudoers` for one sudo run (see
//!   [`Sudoers`](crate::sudo::Sudoers));
//! - a [`Syslog`](crate::syslog::Syslog) socket at `/dev/log` (or, on a machine without
//!   `/dev/log`, on a private `/run` at `/run/syslog`, the module's fallback path), so the
//!   test reads what the module logged.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::proc;

/// The script `sh -c` runs inside the namespace before `exec`ing the program.
///
/// Arguments: `$1` syslog socket (may be empty), `$2` number of bind pairs, then the pairs
/// `SRC DST`, then the program and its arguments.
const SCRIPT: &str = r#"set -e
log="$1"; n="$2"; shift 2
while [ "$n" -gt 0 ]; do
  mount --bind "$1" "$2"
  shift 2; n=$((n - 1))
done
if [ -n "$log" ]; then
  if [ -S /dev/log ]; then
    mount --bind "$log" /dev/log
  else
    # No /dev/log to mount over: the module then tries /var/run/syslog (= /run/syslog).
    # A private /run holds it; sshd's privilege-separation dir is made again inside.
    mount -t tmpfs -o mode=0755 twostep-e2e-run /run
    mkdir -m 0755 /run/sshd
    : > /run/syslog
    mount --bind "$log" /run/syslog
  fi
fi
exec "$@"
"#;

/// Describes a program to run in a private mount namespace.
#[derive(Default)]
pub struct Namespace {
    syslog: Option<PathBuf>,
    binds: Vec<(PathBuf, PathBuf)>,
}

impl Namespace {
    pub fn new() -> Namespace {
        Namespace::default()
    }

    /// Let the module's syslog lines reach `socket` (see [`crate::syslog::Syslog`]).
    pub fn syslog(mut self, socket: &Path) -> Namespace {
        self.syslog = Some(socket.to_path_buf());
        self
    }

    /// Bind-mount `src` over `dst` (both must exist).
    pub fn bind(mut self, src: &Path, dst: &Path) -> Namespace {
        self.binds.push((src.to_path_buf(), dst.to_path_buf()));
        self
    }

    /// A `Command` (root, the harness's clean environment) that sets the namespace up and
    /// `exec`s `program`; add the program's arguments to it. The pid of the child is the
    /// pid of `program` (`unshare` and `sh` both `exec`).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        crate::require_root();
        let mut cmd = proc::command(None, "unshare");
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(SCRIPT)
            .arg("twostep-e2e-ns")
            .arg(self.syslog.as_deref().unwrap_or(Path::new("")))
            .arg(self.binds.len().to_string());
        for (src, dst) in &self.binds {
            cmd.arg(src).arg(dst);
        }
        cmd.arg(program);
        cmd
    }
}
