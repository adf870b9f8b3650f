// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl --bus ADDR …` run as a given user.
//!
//! Enrolment protocol: `enroll --json` prints ONE line of JSON
//! `{"secret", "uri", "algorithm", "digits", "period"}` and flushes, then reads a code
//! line from stdin and confirms; exit 0 when the method is active.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::otp::{self, Algorithm};
use crate::proc::{self, Creds, Output};
use crate::{artifacts, Bus, User};

/// How long one twostepctl run may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// A client for the daemon on one bus.
#[derive(Clone, Debug)]
pub struct Ctl {
    bus_address: String,
}

/// A confirmed TOTP enrolment, as `enroll --json` described it.
#[derive(Clone, Debug)]
pub struct Enrolled {
    pub user: String,
    pub secret: String,
    pub uri: String,
    pub algorithm: Algorithm,
    pub digits: u32,
    pub period: u64,
    /// The time step whose code confirmed the enrolment. Later logins use steps after it,
    /// so a daemon that marks the confirming step as used (replay) is no problem.
    pub confirmed_step: u64,
}

impl Enrolled {
    /// The code of time step `step`.
    pub fn code_at_step(&self, step: u64) -> String {
        otp::totp_at_step(&self.secret, self.algorithm, self.digits, self.period, step)
    }

    /// The code of `confirmed_step + n` (n = 1: the current step, n = 2: the next one,
    /// both inside `window = 1` for at least one whole period after enrolment).
    pub fn code_after(&self, n: u64) -> String {
        self.code_at_step(self.confirmed_step + n)
    }

    /// The code at unix time `at`.
    pub fn code_at(&self, at: u64) -> String {
        otp::totp(&self.secret, self.algorithm, self.digits, self.period, at)
    }

    /// A code of the right length that no step within ±3 of `confirmed_step + 1` has.
    pub fn wrong_code(&self) -> String {
        let base = self.confirmed_step + 1;
        let avoid: Vec<String> = (base - 3..=base + 3)
            .map(|s| self.code_at_step(s))
            .collect();
        otp::wrong_code(self.digits, &avoid)
    }
}

impl Ctl {
    pub fn new(bus: &Bus) -> Ctl {
        Ctl::for_address(bus.address())
    }

    pub fn for_address(bus_address: &str) -> Ctl {
        Ctl {
            bus_address: bus_address.to_string(),
        }
    }

    /// A `Command` for `twostepctl --bus ADDR <args>` as `creds` (root when `None`), for
    /// runs driven step by step.
    pub fn command(&self, creds: Option<Creds>, args: &[&str]) -> std::process::Command {
        let mut cmd = proc::command(creds, artifacts::twostepctl());
        cmd.arg("--bus").arg(&self.bus_address).args(args);
        cmd
    }

    /// `twostepctl --bus ADDR <args>` as `creds` (root when `None`), with `stdin`.
    pub fn run(&self, creds: Option<Creds>, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = proc::command(creds, artifacts::twostepctl());
        cmd.arg("--bus").arg(&self.bus_address).args(args);
        proc::run(cmd, stdin, TIMEOUT)
    }

    /// `status --json` as `user`, parsed; panics with the transcript if it fails or is
    /// not a JSON object with the documented keys.
    #[track_caller]
    pub fn status(&self, user: &User) -> serde_json::Value {
        self.try_status(user).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `status --json` as `user`, parsed.
    ///
    /// # Errors
    /// The transcript when twostepctl fails or prints something else.
    pub fn try_status(&self, user: &User) -> Result<serde_json::Value, String> {
        let out = self.run(Some(user.creds()), &["status", "--json"], b"");
        if !out.success() {
            return Err(format!(
                "twostepctl status failed for {}:\n{out}",
                user.name()
            ));
        }
        let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
            .map_err(|e| format!("status output is not JSON ({e}):\n{out}"))?;
        for &key in twostep_proto::status_key::STATUS {
            if v.get(key).is_none() {
                return Err(format!("status lacks key {key:?}:\n{out}"));
            }
        }
        Ok(v)
    }

    /// Enrol `user` with the code of the step before now.
    ///
    /// Why the previous step: with `window = 1` it is accepted (we first make sure the
    /// current step has at least 5 s left), and it leaves the current and the next step
    /// free for two distinct successful logins without waiting for the clock.
    pub fn enroll(&self, user: &User) -> Enrolled {
        self.enroll_with_offset(user, -1)
    }

    /// Enrol `user`, confirming with the code of `now + offset` steps.
    pub fn enroll_with_offset(&self, user: &User, offset: i64) -> Enrolled {
        self.try_enroll(user, offset)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Enrol `user`, confirming with the code of `now + offset` steps.
    ///
    /// # Errors
    /// A description with twostepctl's output when any part of the protocol fails.
    pub fn try_enroll(&self, user: &User, offset: i64) -> Result<Enrolled, String> {
        self.try_confirmed(user, &["enroll", "--json"], None, offset)
    }

    /// `authenticator add NAME --json` as `user` with `proof` (a current code of one of
    /// their authenticators or a recovery code), confirming the new key with the code of
    /// the step before now; the new authenticator.
    #[track_caller]
    pub fn add_authenticator(&self, user: &User, name: &str, proof: &str) -> Enrolled {
        self.try_confirmed(
            user,
            &["authenticator", "add", name, "--json"],
            Some(proof),
            -1,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Run `args` (a command printing the pending key as one JSON line, then reading a
    /// code), answering `proof` first when given, then the new key's code of `now + offset`
    /// steps.
    fn try_confirmed(
        &self,
        user: &User,
        args: &[&str],
        proof: Option<&str>,
        offset: i64,
    ) -> Result<Enrolled, String> {
        let mut cmd = proc::command(Some(user.creds()), artifacts::twostepctl());
        cmd.arg("--bus").arg(&self.bus_address).args(args);
        let what = proc::describe(&cmd);
        let err_file = tempfile::NamedTempFile::new().expect("temp file");
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file.reopen().expect("reopen"))
            .spawn()
            .map_err(|e| format!("cannot start `{what}`: {e}"))?;
        if let Some(proof) = proof {
            let stdin = child.stdin.as_mut().expect("piped stdin");
            if let Err(e) = stdin.write_all(format!("{proof}\n").as_bytes()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot write the proof to `{what}`: {e}"));
            }
        }
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first);
            lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
        });
        let stderr = || std::fs::read_to_string(err_file.path()).unwrap_or_default();
        let fail = |child: &mut std::process::Child, msg: String| {
            let _ = child.kill();
            let _ = child.wait();
            format!("{msg}\n$ {what}\n--- stderr ---\n{}", stderr())
        };
        let line = match rx.recv_timeout(TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            Ok(other) => {
                return Err(fail(
                    &mut child,
                    format!("enroll printed no JSON line: {other:?}"),
                ))
            }
            Err(_) => {
                return Err(fail(
                    &mut child,
                    format!("enroll printed nothing within {TIMEOUT:?}"),
                ))
            }
        };
        let json: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                return Err(fail(
                    &mut child,
                    format!("enroll line is not JSON ({e}): {line:?}"),
                ))
            }
        };
        let field = |k: &str| json.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let (Some(secret), Some(uri), Some(alg), Some(digits), Some(period)) = (
            field("secret").as_str().map(str::to_string),
            field("uri").as_str().map(str::to_string),
            field("algorithm").as_str().and_then(Algorithm::parse),
            field("digits").as_u64(),
            field("period").as_u64(),
        ) else {
            return Err(fail(
                &mut child,
                format!("enroll JSON lacks a field: {line}"),
            ));
        };
        let now_step = otp::settled_step(period, Duration::from_secs(5));
        let step = now_step
            .checked_add_signed(offset)
            .expect("step offset in range");
        let enrolled = Enrolled {
            user: user.name().to_string(),
            secret,
            uri,
            algorithm: alg,
            digits: u32::try_from(digits).expect("digits fit u32"),
            period,
            confirmed_step: step,
        };
        let code = enrolled.code_at_step(step);
        {
            let mut stdin = child.stdin.take().expect("piped stdin");
            if let Err(e) = stdin.write_all(format!("{code}\n").as_bytes()) {
                return Err(fail(
                    &mut child,
                    format!("cannot write the code to enroll: {e}"),
                ));
            }
        }
        let (status, killed) = proc::wait_timeout(&mut child, TIMEOUT);
        let rest = reader.join().unwrap_or_default();
        if killed || !status.success() {
            return Err(format!(
                "enroll did not finish successfully ({status}{}):\n$ {what}\n--- stdout ---\n{line}\n{rest}\n--- stderr ---\n{}",
                if killed { ", killed after timeout" } else { "" },
                stderr()
            ));
        }
        Ok(enrolled)
    }
}
