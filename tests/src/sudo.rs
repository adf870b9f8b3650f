// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real `sudo` with a test PAM service, selected per user by a sudoers drop-in
//! (`Defaults:USER pam_service=SERVICE`), so `/etc/sudoers` and `/etc/pam.d/sudo` stay as
//! they are.
//!
//! A drop-in is checked with `visudo -cf` before it is installed (written under a name
//! with a dot, which `@includedir` skips, then renamed), the whole configuration is checked
//! with `visudo -c` after, and the file is removed on drop: a broken drop-in would break
//! sudo for everyone on the machine. Drop-ins of a killed test process are swept.

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::Duration;

use crate::logins::LoginUser;
use crate::ns::Namespace;
use crate::proc::{self, Output};
use crate::syslog::Syslog;
use crate::unique;

/// Where sudo reads drop-ins (`@includedir /etc/sudoers.d` in Debian's /etc/sudoers).
pub const SUDOERS_D: &str = "/etc/sudoers.d";
/// Prefix of every drop-in the harness writes: `twostep-e2e-<pid>-<counter>-<random>`.
pub const PREFIX: &str = "twostep-e2e-";
/// How long one sudo run may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

static SWEEP: Once = Once::new();

/// Remove drop-ins whose creating process is gone.
fn sweep() {
    let Ok(entries) = std::fs::read_dir(SUDOERS_D) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split(['-', '.']).next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// An installed sudoers drop-in, removed on drop (with the user's timestamp file).
pub struct SudoersDropIn {
    path: PathBuf,
    contents: String,
    user: String,
}

impl SudoersDropIn {
    /// The drop-in of the tests: `user` may run anything as anyone after authenticating
    /// through PAM service `service` (for `sudo -i` too: `pam_login_service`); no tty
    /// needed, no cached credentials, one attempt, no mail. `extra_defaults` (e.g.
    /// `"!pam_silent"`) are appended to the Defaults line.
    pub fn for_user(user: &str, service: &str, extra_defaults: &[&str]) -> SudoersDropIn {
        let mut defaults = vec![
            format!("pam_service={service}"),
            format!("pam_login_service={service}"),
            "!use_pty".into(),
            "timestamp_timeout=0".into(),
            "passwd_tries=1".into(),
            "!mail_badpass".into(),
        ];
        defaults.extend(extra_defaults.iter().map(|d| d.to_string()));
        SudoersDropIn::install(
            user,
            &format!(
                "# twostep e2e: {user} authenticates through PAM service {service}\n\
                 Defaults:{user} {}\n\
                 {user} ALL=(ALL:ALL) ALL\n",
                defaults.join(", ")
            ),
        )
    }

    /// `user` may run anything as anyone, with the test defaults of
    /// [`for_user`](SudoersDropIn::for_user) but no PAM service named: the `Defaults` lines
    /// of `head` (e.g. a documented drop-in) decide which services sudo uses.
    pub fn with_head(user: &str, head: &str) -> SudoersDropIn {
        SudoersDropIn::install(
            user,
            &format!(
                "# twostep e2e\n{head}\n\
                 Defaults:{user} !use_pty, timestamp_timeout=0, passwd_tries=1, !mail_badpass\n\
                 {user} ALL=(ALL:ALL) ALL\n"
            ),
        )
    }

    /// Check `contents` with `visudo -cf`, install it, check the whole configuration.
    pub fn install(user: &str, contents: &str) -> SudoersDropIn {
        crate::require_root();
        SWEEP.call_once(sweep);
        let name = format!("{PREFIX}{}", unique::token());
        let path = Path::new(SUDOERS_D).join(&name);
        // A name with a dot is skipped by @includedir: nothing reads it half-written.
        let staging = Path::new(SUDOERS_D).join(format!("{name}.staging"));
        std::fs::write(&staging, contents).expect("write sudoers drop-in");
        unique::chmod(&staging, 0o440);
        let mut check = proc::command(None, "visudo");
        check.arg("-cf").arg(&staging);
        let out = proc::run(check, b"", Duration::from_secs(20));
        if !out.success() {
            let _ = std::fs::remove_file(&staging);
            panic!("visudo refused the drop-in:\n{out}\n{contents}");
        }
        std::fs::rename(&staging, &path).expect("install sudoers drop-in");
        let drop_in = SudoersDropIn {
            path,
            contents: contents.to_string(),
            user: user.to_string(),
        };
        let mut all = proc::command(None, "visudo");
        all.arg("-c");
        let out = proc::run(all, b"", Duration::from_secs(20));
        // On failure, drop removes the file while the panic unwinds.
        assert!(out.success(), "visudo -c fails with the drop-in:\n{out}");
        drop_in
    }

    /// The file's contents, for messages.
    pub fn contents(&self) -> &str {
        &self.contents
    }

    /// The installed file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SudoersDropIn {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
        // sudo's per-user timestamp file (timestamp_timeout > 0 leaves one).
        let _ = std::fs::remove_file(Path::new("/run/sudo/ts").join(&self.user));
    }
}

/// `sudo ARGS` run as `user` (setpriv, clean environment, no tty), with `stdin`.
pub fn sudo(user: &LoginUser, args: &[&str], stdin: &str) -> Output {
    let mut cmd = user.user().command("sudo");
    cmd.args(args);
    proc::run(cmd, stdin.as_bytes(), TIMEOUT)
}

/// Like [`sudo`], in a private mount namespace whose `/dev/log` is `syslog`, so the test
/// sees what the module logged (sudo itself logs there too).
pub fn sudo_logged(user: &LoginUser, args: &[&str], stdin: &str, syslog: &Syslog) -> Output {
    sudo_in(Namespace::new().syslog(syslog.socket()), user, args, stdin)
}

/// Like [`sudo`], in the private mount namespace `ns` (e.g. with test stacks bind-mounted
/// over `/etc/pam.d/sudo` and `/etc/pam.d/sudo-i`: only this sudo sees them).
pub fn sudo_in(ns: Namespace, user: &LoginUser, args: &[&str], stdin: &str) -> Output {
    let creds = user.user().creds();
    let mut cmd = ns.command("setpriv");
    cmd.arg(format!("--reuid={}", creds.uid))
        .arg(format!("--regid={}", creds.gid))
        .args(["--clear-groups", "--", "sudo"])
        .args(args);
    proc::run(cmd, stdin.as_bytes(), TIMEOUT)
}
