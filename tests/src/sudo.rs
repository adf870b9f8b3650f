// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real `sudo` (the setuid binary) with a private sudoers configuration that nobody
//! else on the machine sees.
//!
//! A [`Sudoers`] is a test-owned file in a temp dir (root, 0440, checked with
//! `visudo -cf`) that selects a test PAM service per user (`Defaults:USER
//! pam_service=SERVICE, pam_login_service=SERVICE`) and gives the user its rule. Each sudo
//! run happens in a private mount namespace ([`Namespace`]) where that file is
//! bind-mounted over `/etc/sudoers`: only that sudo and its children read it. The file has
//! no `@includedir`, so nothing in the machine's `/etc/sudoers.d` applies either.
//!
//! sudo's state goes to the same temp dir (`timestampdir`, `lecture_status_dir`), so the
//! credential cache of one test cannot reach another test or the machine's
//! `/run/sudo/ts`, and no lecture file is left in `/var/lib/sudo/lectured`.
//!
//! `/etc/sudoers`, `/etc/sudoers.d`, `/etc/pam.d/sudo` and sudo's state dirs of the
//! machine are never written. Earlier versions of this harness installed drop-ins in
//! `/etc/sudoers.d`; nothing writes there any more, and leftovers of those versions are
//! not swept here (see [`LEGACY_PREFIX`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::logins::LoginUser;
use crate::ns::Namespace;
use crate::proc::{self, Output};
use crate::syslog::Syslog;
use crate::unique;

/// The machine's sudoers file, which the private file hides in the namespace of one run.
pub const ETC_SUDOERS: &str = "/etc/sudoers";
/// Where the machine's sudo reads drop-ins (`@includedir /etc/sudoers.d` in Debian's
/// `/etc/sudoers`); the private file does not include it.
pub const SUDOERS_D: &str = "/etc/sudoers.d";
/// Prefix of the drop-ins earlier versions of this harness wrote in [`SUDOERS_D`]
/// (`twostep-e2e-<pid>-<counter>-<random>`). Nothing writes them any more; an admin
/// removes leftovers of old crashed runs by hand (`/etc/sudoers.d/twostep-e2e-*`).
pub const LEGACY_PREFIX: &str = "twostep-e2e-";
/// How long one sudo run may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The machine's sudo state: timestamps (credential cache) and lecture files, keyed by
/// user name. The private configuration points sudo elsewhere.
pub const MACHINE_STATE_DIRS: [&str; 2] = ["/run/sudo/ts", "/var/lib/sudo/lectured"];

/// Debian 12's defaults from its `/etc/sudoers` (environment, `PATH`, pty, mail), so a
/// private run behaves like the machine's sudo apart from what the tests set per user.
const BASE_DEFAULTS: &str = "\
Defaults\tenv_reset
Defaults\tmail_badpass
Defaults\tsecure_path=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"
Defaults\tuse_pty
";

/// A private sudoers configuration for one test user, in a temp dir (removed on drop with
/// sudo's state for it). Run sudo against it with [`Sudoers::sudo`],
/// [`Sudoers::sudo_logged`] or [`Sudoers::sudo_in`].
pub struct Sudoers {
    dir: tempfile::TempDir,
    path: PathBuf,
    contents: String,
}

impl Sudoers {
    /// The configuration of the tests: `user` may run anything as anyone after
    /// authenticating through PAM service `service` (for `sudo -i` too:
    /// `pam_login_service`); no tty needed, no cached credentials, one attempt, no mail.
    /// `extra_defaults` (e.g. `"timestamp_timeout=5"`) are appended to the Defaults line.
    pub fn for_user(user: &str, service: &str, extra_defaults: &[&str]) -> Sudoers {
        let mut defaults = vec![
            format!("pam_service={service}"),
            format!("pam_login_service={service}"),
            "!use_pty".into(),
            "timestamp_timeout=0".into(),
            "passwd_tries=1".into(),
            "!mail_badpass".into(),
        ];
        defaults.extend(extra_defaults.iter().map(|d| d.to_string()));
        Sudoers::with_rules(&format!(
            "# twostep e2e: {user} authenticates through PAM service {service}\n\
             Defaults:{user} {}\n\
             {user} ALL=(ALL:ALL) ALL\n",
            defaults.join(", ")
        ))
    }

    /// `user` may run anything as anyone, with the test defaults of
    /// [`for_user`](Sudoers::for_user) but no PAM service named: the `Defaults` lines of
    /// `head` (e.g. a documented drop-in) decide which services sudo uses.
    pub fn with_head(user: &str, head: &str) -> Sudoers {
        Sudoers::with_rules(&format!(
            "# twostep e2e\n{head}\n\
             Defaults:{user} !use_pty, timestamp_timeout=0, passwd_tries=1, !mail_badpass\n\
             {user} ALL=(ALL:ALL) ALL\n"
        ))
    }

    /// A private sudoers file: Debian's defaults, sudo's state dirs in the temp dir, root's
    /// rule, then `rules` (sudoers syntax). Written root-owned 0440 and checked with
    /// `visudo -cf`; panics (with the text) if visudo refuses it.
    pub fn with_rules(rules: &str) -> Sudoers {
        crate::require_root();
        let dir = unique::temp_dir("sudoers");
        let ts = dir.path().join("ts");
        let lectured = dir.path().join("lectured");
        // sudo wants both owned by root and not writable by group or others.
        for d in [&ts, &lectured] {
            std::fs::create_dir(d).expect("create sudo state dir");
            unique::chmod(d, 0o700);
        }
        let contents = format!(
            "# twostep e2e: private sudoers, bind-mounted over {ETC_SUDOERS} for one sudo run\n\
             {BASE_DEFAULTS}\
             Defaults\ttimestampdir=\"{}\", lecture_status_dir=\"{}\"\n\
             root\tALL=(ALL:ALL) ALL\n\
             {rules}",
            ts.display(),
            lectured.display()
        );
        let path = dir.path().join("sudoers");
        std::fs::write(&path, &contents).expect("write private sudoers");
        // sudo refuses a sudoers file not owned by root or writable by others.
        unique::chmod(&path, 0o440);
        let mut check = proc::command(None, "visudo");
        check.arg("-cf").arg(&path);
        let out = proc::run(check, b"", Duration::from_secs(20));
        assert!(
            out.success(),
            "visudo refused the private sudoers:\n{out}\n{contents}"
        );
        Sudoers {
            dir,
            path,
            contents,
        }
    }

    /// The whole file, for messages.
    pub fn contents(&self) -> &str {
        &self.contents
    }

    /// The private sudoers file (in the temp dir).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// sudo's private timestamp dir (`timestampdir`): `<dir>/<user>` is the credential
    /// cache of `user`.
    pub fn timestamp_dir(&self) -> PathBuf {
        self.dir.path().join("ts")
    }

    /// `ns` with the private file bind-mounted over `/etc/sudoers`.
    pub fn namespace(&self, ns: Namespace) -> Namespace {
        ns.bind(&self.path, Path::new(ETC_SUDOERS))
    }

    /// `sudo ARGS` run as `user` (setpriv, clean environment, no tty) with `stdin`, in a
    /// private mount namespace that sees this configuration as `/etc/sudoers`.
    pub fn sudo(&self, user: &LoginUser, args: &[&str], stdin: &str) -> Output {
        self.sudo_in(Namespace::new(), user, args, stdin)
    }

    /// Like [`sudo`](Sudoers::sudo), with `/dev/log` being `syslog` in the namespace, so
    /// the test sees what the module logged (sudo itself logs there too).
    pub fn sudo_logged(
        &self,
        user: &LoginUser,
        args: &[&str],
        stdin: &str,
        syslog: &Syslog,
    ) -> Output {
        self.sudo_in(Namespace::new().syslog(syslog.socket()), user, args, stdin)
    }

    /// Like [`sudo`](Sudoers::sudo), in the private mount namespace `ns` (e.g. with test
    /// stacks bind-mounted over `/etc/pam.d/sudo` and `/etc/pam.d/sudo-i`), to which the
    /// private `/etc/sudoers` is added.
    pub fn sudo_in(&self, ns: Namespace, user: &LoginUser, args: &[&str], stdin: &str) -> Output {
        let cmd = self.command(ns, user, args);
        proc::run(cmd, stdin.as_bytes(), TIMEOUT)
    }

    /// The `Command` [`sudo_in`](Sudoers::sudo_in) runs, for a test that drives the
    /// process itself (e.g. keeps it running while it looks at the machine).
    pub fn command(&self, ns: Namespace, user: &LoginUser, args: &[&str]) -> std::process::Command {
        let creds = user.user().creds();
        let mut cmd = self.namespace(ns).command("setpriv");
        cmd.arg(format!("--reuid={}", creds.uid))
            .arg(format!("--regid={}", creds.gid))
            .args(["--clear-groups", "--", "sudo"])
            .args(args);
        cmd
    }
}
