// SPDX-License-Identifier: MIT OR Apache-2.0
//! Drives `twostep-e2e-pam` (this crate's `src/bin/twostep-e2e-pam.rs`), a small PAM
//! application over the real libpam for what pamtester cannot express: no user at all
//! (`pam_start(service, NULL, …)`), a user name of raw bytes, an authentication that starts
//! with no file descriptor left. Optionally inside a private mount namespace whose
//! `/dev/log` is a [`Syslog`], to read what the module logged.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::ns::Namespace;
use crate::pam::{PamService, DEFAULT_TIMEOUT};
use crate::proc::{self, Output};
use crate::syslog::Syslog;

/// The built client: next to the test binaries' parent (`target/<profile>/`); cargo builds
/// it with the integration tests of this crate.
pub fn client_path() -> PathBuf {
    let path = crate::artifacts::target_dir().join("twostep-e2e-pam");
    assert!(
        path.is_file(),
        "{} is missing: it is built with this crate's tests (`cargo test -p twostep-e2e`)",
        path.display()
    );
    path
}

/// One authentication being described.
#[must_use]
pub struct Client<'a> {
    service: &'a PamService,
    user: Option<Vec<u8>>,
    answers: Vec<Vec<u8>>,
    no_fd_left: bool,
    syslog: Option<&'a Syslog>,
}

impl<'a> Client<'a> {
    /// `pam_start(service, user, …)`, user given as raw bytes.
    pub fn user(service: &'a PamService, user: impl AsRef<[u8]>) -> Client<'a> {
        Client {
            service,
            user: Some(user.as_ref().to_vec()),
            answers: Vec::new(),
            no_fd_left: false,
            syslog: None,
        }
    }

    /// `pam_start(service, NULL, …)`: no `PAM_USER` at all.
    pub fn no_user(service: &'a PamService) -> Client<'a> {
        Client {
            user: None,
            ..Client::user(service, b"")
        }
    }

    /// One line of input: the answer to the next prompt.
    pub fn answer(mut self, bytes: impl AsRef<[u8]>) -> Self {
        self.answers.push(bytes.as_ref().to_vec());
        self
    }

    /// Lower `RLIMIT_NOFILE` after `pam_start` so that the next descriptor the process
    /// opens (the module's socket) fails with `EMFILE`.
    pub fn no_fd_left(mut self) -> Self {
        self.no_fd_left = true;
        self
    }

    /// Run in a private mount namespace whose `/dev/log` is `syslog`.
    pub fn syslog(mut self, syslog: &'a Syslog) -> Self {
        self.syslog = Some(syslog);
        self
    }

    /// Run it (killed after pamtester's default timeout).
    pub fn run(self) -> ClientRun {
        let program = client_path();
        let mut cmd = match self.syslog {
            Some(log) => Namespace::new().syslog(log.socket()).command(&program),
            None => proc::command(None, &program),
        };
        cmd.arg(self.service.name());
        match &self.user {
            Some(u) => cmd.arg("--user").arg(OsStr::from_bytes(u)),
            None => cmd.arg("--no-user"),
        };
        if self.no_fd_left {
            cmd.arg("--no-fd-left");
        }
        let mut stdin = Vec::new();
        for a in &self.answers {
            stdin.extend_from_slice(a);
            stdin.push(b'\n');
        }
        ClientRun {
            output: proc::run(cmd, &stdin, DEFAULT_TIMEOUT),
            service: self.service.contents().to_string(),
        }
    }
}

/// What one client run did.
#[derive(Debug)]
pub struct ClientRun {
    pub output: Output,
    service: String,
}

impl ClientRun {
    /// The name of the PAM code `pam_authenticate` returned (`PAM_USER_UNKNOWN`…), if the
    /// client got that far.
    pub fn code(&self) -> Option<&str> {
        self.output
            .stdout
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("result: "))
            .and_then(|r| r.split_whitespace().next())
    }

    /// Every conversation message, one per line, as `STYLE: text`.
    pub fn conversation(&self) -> Vec<&str> {
        self.output
            .stderr
            .lines()
            .filter(|l| {
                [
                    "PROMPT_ECHO_OFF: ",
                    "PROMPT_ECHO_ON: ",
                    "ERROR_MSG: ",
                    "TEXT_INFO: ",
                ]
                .iter()
                .any(|p| l.starts_with(p))
            })
            .collect()
    }

    /// The prompts shown (echo on or off).
    pub fn prompts(&self) -> Vec<&str> {
        self.conversation()
            .into_iter()
            .filter(|l| l.starts_with("PROMPT_"))
            .collect()
    }

    /// Finished on its own with exactly this PAM code.
    #[track_caller]
    pub fn assert_code(&self, code: &str) -> &Self {
        assert!(!self.output.timed_out, "killed by the harness:\n{self}");
        assert_eq!(self.code(), Some(code), "unexpected PAM result:\n{self}");
        self
    }

    /// How long it ran.
    pub fn elapsed(&self) -> Duration {
        self.output.elapsed
    }
}

impl fmt::Display for ClientRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.output)?;
        write!(f, "  --- PAM service ---\n{}", self.service)
    }
}
