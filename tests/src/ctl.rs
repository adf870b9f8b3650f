// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl --bus ADDR …` run as a given user.
//!
//! Enrolment protocol: `enroll --json` prints one JSON document
//! `{"pending", "secret", "uri", "algorithm", "digits", "period", "expires", "next"}` and
//! ends, the key pending; `enroll --json --confirm` reads a code line from stdin, confirms,
//! and prints one document `{"active": true, "recovery_codes": [...]}`.

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

    /// Run `args` (a `--json` command that prints the pending key as its one JSON
    /// document and ends), answering `proof` first when given; then the same command with
    /// `--confirm`, given the new key's code of `now + offset` steps. Each run's stdout must
    /// be exactly one JSON document.
    fn try_confirmed(
        &self,
        user: &User,
        args: &[&str],
        proof: Option<&str>,
        offset: i64,
    ) -> Result<Enrolled, String> {
        let proof_line = proof.map(|p| format!("{p}\n")).unwrap_or_default();
        let begin = self.run(Some(user.creds()), args, proof_line.as_bytes());
        if !begin.success() {
            return Err(format!("the key was not made:\n{begin}"));
        }
        let json: serde_json::Value = serde_json::from_str(&begin.stdout)
            .map_err(|e| format!("stdout is not one JSON document ({e}):\n{begin}"))?;
        let field = |k: &str| json.get(k).cloned().unwrap_or(serde_json::Value::Null);
        let (Some(secret), Some(uri), Some(alg), Some(digits), Some(period)) = (
            field("secret").as_str().map(str::to_string),
            field("uri").as_str().map(str::to_string),
            field("algorithm").as_str().and_then(Algorithm::parse),
            field("digits").as_u64(),
            field("period").as_u64(),
        ) else {
            return Err(format!("the key document lacks a field:\n{begin}"));
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
        let mut confirm: Vec<&str> = args.to_vec();
        confirm.push("--confirm");
        let done = self.run(Some(user.creds()), &confirm, format!("{code}\n").as_bytes());
        if !done.success() {
            return Err(format!("the key was not confirmed:\n{done}"));
        }
        let result: serde_json::Value = serde_json::from_str(&done.stdout)
            .map_err(|e| format!("stdout is not one JSON document ({e}):\n{done}"))?;
        if result["active"] != true {
            return Err(format!("the result does not say active:\n{done}"));
        }
        Ok(enrolled)
    }
}
