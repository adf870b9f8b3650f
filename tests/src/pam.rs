// SPDX-License-Identifier: MIT OR Apache-2.0
//! Dedicated PAM service files (`/etc/pam.d/twostep-e2e-<unique>`) driven by `pamtester`.
//!
//! pamtester's conversation reads one answer per line from stdin (buffered: all answers
//! can be written up front), prints prompts and `PAM_ERROR_MSG` to stderr and
//! `PAM_TEXT_INFO` to stdout, and ends with `pamtester: successfully authenticated` on
//! stdout or `pamtester: <pam_strerror>` on stderr (exit 0 / 1).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::proc::{self, Creds};
use crate::{artifacts, cleanup, unique};

/// How long one `pamtester` run may take before the harness kills it.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// `pam_strerror` texts (Linux-PAM 1.5) as pamtester prints them, for asserting which
/// PAM code a stack returned.
pub mod strerror {
    pub const AUTH_ERR: &str = "Authentication failure";
    pub const AUTHINFO_UNAVAIL: &str = "Authentication service cannot retrieve authentication info";
    pub const MAXTRIES: &str = "Have exhausted maximum number of retries for service";
    pub const SYSTEM_ERR: &str = "System error";
    pub const PERM_DENIED: &str = "Permission denied";
    pub const CONV_ERR: &str = "Conversation error";
    pub const USER_UNKNOWN: &str = "User not known to the underlying authentication module";
    pub const ABORT: &str = "Critical error - immediate abort";
}

/// A PAM service file, removed on drop.
#[derive(Debug)]
pub struct PamService {
    name: String,
    path: PathBuf,
    contents: String,
}

impl PamService {
    /// Write `/etc/pam.d/twostep-e2e-<unique>` with `lines` (a full stack).
    pub fn new(lines: &str) -> PamService {
        PamService::named("", lines)
    }

    /// As [`PamService::new`], the name ending in `-<suffix>` (e.g. `imap`: a service named
    /// like the one it stands for); an empty suffix adds nothing.
    pub fn named(suffix: &str, lines: &str) -> PamService {
        crate::require_root();
        cleanup::sweep_once();
        let mut name = format!("{}{}", cleanup::PAM_PREFIX, unique::token());
        if !suffix.is_empty() {
            name = format!("{name}-{suffix}");
        }
        let path = PathBuf::from("/etc/pam.d").join(&name);
        let mut contents = lines.to_string();
        if !contents.ends_with('\n') {
            contents.push('\n');
        }
        std::fs::write(&path, &contents)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        unique::chmod(&path, 0o644);
        PamService {
            name,
            path,
            contents,
        }
    }

    /// `pam_permit` then the built module (absolute path) with `bus=<address>` and
    /// `extra_args`, then `pam_permit` for the account stack.
    pub fn twostep(bus_address: &str, extra_args: &str) -> PamService {
        PamService::new(&twostep_stack(bus_address, extra_args))
    }

    /// The service name to give pamtester.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file's contents, for messages.
    pub fn contents(&self) -> &str {
        &self.contents
    }

    /// Start describing an `authenticate` run for `user`.
    pub fn auth<'a>(&'a self, user: &str) -> Auth<'a> {
        Auth {
            service: self,
            user: user.to_string(),
            answers: Vec::new(),
            caller: None,
            items: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `authenticate` as root for `user`, answering the one prompt with `code`.
    pub fn login(&self, user: &str, code: &str) -> PamRun {
        self.auth(user).answer(code).run()
    }
}

/// The stack of [`PamService::twostep`].
pub fn twostep_stack(bus_address: &str, extra_args: &str) -> String {
    format!(
        "auth required pam_permit.so\n\
         auth required {} bus={bus_address} {} {extra_args}\n\
         account required pam_permit.so\n",
        artifacts::pam_module().display(),
        crate::transport::module_arg(bus_address, extra_args)
    )
}

impl Drop for PamService {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
    }
}

/// One `pamtester … authenticate` run being described.
#[must_use]
pub struct Auth<'a> {
    service: &'a PamService,
    user: String,
    answers: Vec<Vec<u8>>,
    caller: Option<Creds>,
    items: Vec<(String, String)>,
    timeout: Duration,
}

impl Auth<'_> {
    /// One line of stdin: the answer to the next prompt (raw bytes: may be non-UTF-8,
    /// empty or huge; a newline is added).
    pub fn answer(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.answers.push(bytes.as_ref().to_vec());
        self
    }

    /// Run pamtester as this uid/gid instead of root (a screen locker runs PAM as the user).
    pub fn caller(mut self, creds: Creds) -> Self {
        self.caller = Some(creds);
        self
    }

    /// Set a PAM item with `pamtester -I name=value` (`rhost`, `tty`, `ruser`).
    pub fn item(mut self, name: &str, value: &str) -> Self {
        self.items.push((name.to_string(), value.to_string()));
        self
    }

    /// Kill pamtester after `timeout` (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    fn command(&self) -> std::process::Command {
        let mut cmd = proc::command(self.caller, "pamtester");
        cmd.arg("-v");
        for (k, v) in &self.items {
            cmd.arg(format!("-I{k}={v}"));
        }
        cmd.args([self.service.name(), &self.user, "authenticate"]);
        cmd
    }

    /// Start it without waiting, to answer prompts one by one after reading them (answers
    /// given with [`answer`](Auth::answer) are written first). Finish with
    /// [`Interactive::finish`](crate::interact::Interactive::finish) and
    /// [`PamRun::from_output`].
    pub fn interactive(self) -> crate::interact::Interactive {
        let mut run = crate::interact::Interactive::spawn(self.command());
        for a in &self.answers {
            run.write_line(a);
        }
        run
    }

    /// Run it.
    pub fn run(self) -> PamRun {
        let cmd = self.command();
        let mut stdin = Vec::new();
        for a in &self.answers {
            stdin.extend_from_slice(a);
            stdin.push(b'\n');
        }
        let output = proc::run(cmd, &stdin, self.timeout);
        PamRun {
            output,
            service: self.service.contents.clone(),
        }
    }
}

/// The outcome of one pamtester run.
#[derive(Debug)]
pub struct PamRun {
    pub output: proc::Output,
    service: String,
}

impl PamRun {
    /// Wrap the output of a pamtester run started by other means (e.g. driven step by step
    /// with [`Interactive`](crate::interact::Interactive)) against `service`.
    pub fn from_output(output: proc::Output, service: &PamService) -> PamRun {
        PamRun {
            output,
            service: service.contents.clone(),
        }
    }

    /// pamtester reported success (exit 0 and "successfully authenticated").
    pub fn succeeded(&self) -> bool {
        self.output.success()
            && self
                .output
                .stdout
                .contains("pamtester: successfully authenticated")
    }

    /// pamtester finished on its own (not killed) and reported a failure.
    pub fn refused(&self) -> bool {
        !self.output.timed_out && !self.output.status.success()
    }

    /// The `pam_strerror` text of the failure pamtester printed, if any. (After a prompt
    /// answered without a message following it, pamtester's line continues the prompt's:
    /// `Password: pamtester: Authentication failure`.)
    pub fn pam_error(&self) -> Option<&str> {
        self.output
            .stderr
            .lines()
            .rev()
            .filter_map(|l| l.split_once("pamtester: ").map(|(_, r)| r))
            .find(|l| !l.starts_with("invoking ") && !l.starts_with("performing "))
    }

    /// What the PAM modules said to the user (prompts, info and error messages): stdout and
    /// stderr without pamtester's own lines.
    pub fn conversation(&self) -> String {
        self.output
            .stdout
            .lines()
            .chain(self.output.stderr.lines())
            .filter(|l| !l.starts_with("pamtester: "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// How long pamtester ran.
    pub fn elapsed(&self) -> Duration {
        self.output.elapsed
    }

    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.succeeded(), "expected PAM success:\n{self}");
        self
    }

    /// Refused by PAM (not killed by the harness' timeout).
    #[track_caller]
    pub fn assert_refused(&self) -> &Self {
        assert!(self.refused(), "expected PAM to refuse:\n{self}");
        self
    }

    /// Refused with this `pam_strerror` text (see [`strerror`]).
    #[track_caller]
    pub fn assert_refused_with(&self, pam_error: &str) -> &Self {
        self.assert_refused();
        assert_eq!(
            self.pam_error(),
            Some(pam_error),
            "unexpected PAM result:\n{self}"
        );
        self
    }
}

impl fmt::Display for PamRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.output)?;
        write!(f, "  --- PAM service ---\n{}", self.service)
    }
}
