// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the real login programs (sshd, sudo, su, login) need on top of [`User`]: a real
//! password (`chpasswd`), optionally an SSH key pair, and PAM stacks written the way an
//! admin writes them on Debian (`@include common-auth`, then the module).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::proc;
use crate::user::accounts_cmd;
use crate::{artifacts, unique, User};

/// A test user with a password and, on request, an ed25519 key pair.
pub struct LoginUser {
    password: String,
    key: Option<PathBuf>,
    // Drop order: the key dir, then the user.
    dir: tempfile::TempDir,
    user: User,
}

impl LoginUser {
    /// A fresh `ts_*` user with a random password.
    pub fn create() -> LoginUser {
        let user = User::create();
        let password = format!("Pw-{}-x", unique::random_hex(8));
        set_password(user.name(), &password);
        let dir = unique::temp_dir("login-user");
        LoginUser {
            password,
            key: None,
            dir,
            user,
        }
    }

    /// Like [`create`](LoginUser::create), with an ed25519 key pair (no passphrase) made by
    /// `ssh-keygen`.
    pub fn with_key() -> LoginUser {
        let mut u = LoginUser::create();
        let key = u.dir.path().join("id_ed25519");
        let mut cmd = proc::command(None, "ssh-keygen");
        cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", u.user.name(), "-f"])
            .arg(&key);
        proc::run(cmd, b"", Duration::from_secs(20)).assert_success();
        u.key = Some(key);
        u
    }

    pub fn user(&self) -> &User {
        &self.user
    }

    pub fn name(&self) -> &str {
        self.user.name()
    }

    pub fn password(&self) -> &str {
        &self.password
    }

    /// The private key file, if the user has one.
    pub fn key(&self) -> Option<&Path> {
        self.key.as_deref()
    }

    /// The public key line (`ssh-ed25519 AAAA… name`).
    pub fn public_key(&self) -> String {
        let key = self.key.as_ref().expect("this user has no key pair");
        std::fs::read_to_string(key.with_extension("pub")).expect("read public key")
    }
}

/// `chpasswd` for `name` (retried while another process holds the shadow lock).
pub fn set_password(name: &str, password: &str) {
    let line = format!("{name}:{password}\n");
    let out = accounts_cmd(|| {
        let mut c = proc::command(None, "sh");
        // Why sh: accounts_cmd takes a Command without stdin; the password goes through a
        // pipe from printf, never argv of chpasswd (argv of sh is only visible to root
        // for this short moment on a test machine).
        c.args(["-c", "printf '%s' \"$1\" | chpasswd", "sh", &line]);
        c
    });
    assert!(out.success(), "chpasswd for {name} failed:\n{out}");
}

/// The module's line: `auth required <built module> bus=<address> <extra args>`.
pub fn module_line(bus_address: &str, extra_args: &str) -> String {
    format!(
        "auth required {} bus={bus_address} {} {extra_args}",
        artifacts::pam_module().display(),
        crate::transport::module_arg(bus_address, extra_args)
    )
}

/// Password, then code: Debian's `common-auth` (pam_unix) followed by the module, as
/// docs/sshd.md, docs/sudo.md and docs/su-login.md show it.
pub fn password_then_code(bus_address: &str, extra_args: &str) -> String {
    format!(
        "# twostep e2e: password (common-auth), then the second factor\n\
         @include common-auth\n\
         {}\n\
         @include common-account\n\
         session required pam_permit.so\n\
         password required pam_deny.so\n",
        module_line(bus_address, extra_args)
    )
}

/// Code only: for sshd with `AuthenticationMethods publickey,keyboard-interactive`, where
/// the key is the first factor and PAM asks only for the code.
pub fn code_only(bus_address: &str, extra_args: &str) -> String {
    format!(
        "# twostep e2e: the key was checked by sshd; PAM asks only for the code\n\
         {}\n\
         @include common-account\n\
         session required pam_permit.so\n\
         password required pam_deny.so\n",
        module_line(bus_address, extra_args)
    )
}

/// The parent pid of `pid` from `/proc/<pid>/stat`.
fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Every live descendant of `root` (children first found, then theirs).
pub fn descendants(root: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, ppid(pid)?)))
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    found.remove(0);
    found
}

/// `su ARGS` typed by `caller` on a terminal under `expect` (`driver` holds the dialog),
/// with the PAM file of `pam` bind-mounted over `/etc/pam.d/su` in the namespace `ns`.
pub fn su_command(
    ns: crate::ns::Namespace,
    pam: &crate::PamService,
    caller: &User,
    driver: &crate::pty::Driver,
    args: &[&str],
) -> std::process::Command {
    let c = caller.creds();
    let mut cmd = ns
        .bind(
            &Path::new("/etc/pam.d").join(pam.name()),
            Path::new("/etc/pam.d/su"),
        )
        .command("setpriv");
    cmd.arg(format!("--reuid={}", c.uid))
        .arg(format!("--regid={}", c.gid))
        .args(["--clear-groups", "--", "expect"]);
    driver.args(&mut cmd);
    cmd.arg("su").args(args);
    cmd
}
