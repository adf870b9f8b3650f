// SPDX-License-Identifier: MIT OR Apache-2.0
//! TOTP codes from `oathtool` (oath-toolkit), an implementation we did not write.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::proc;

/// The HMAC of a TOTP secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Parse the config/JSON spelling (`SHA1`, `SHA256`, `SHA512`, any case).
    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.to_ascii_uppercase().as_str() {
            "SHA1" => Some(Algorithm::Sha1),
            "SHA256" => Some(Algorithm::Sha256),
            "SHA512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// The spelling used by the config file and `oathtool --totp=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The TOTP code of `secret_base32` at unix time `at`, computed by
/// `oathtool --totp=ALG -b --digits=D --time-step-size=Ps --now=@AT -`.
/// The secret goes through stdin, not argv, so `ps` never shows it.
pub fn totp(
    secret_base32: &str,
    algorithm: Algorithm,
    digits: u32,
    period: u64,
    at: u64,
) -> String {
    let mut cmd = proc::command(None, "oathtool");
    cmd.arg(format!("--totp={algorithm}"))
        .arg("--base32")
        .arg(format!("--digits={digits}"))
        .arg(format!("--time-step-size={period}s"))
        .arg(format!("--now=@{at}"))
        .arg("-");
    let out = proc::run(
        cmd,
        format!("{secret_base32}\n").as_bytes(),
        Duration::from_secs(10),
    );
    assert!(out.success(), "oathtool failed:\n{out}");
    let code = out.stdout.trim().to_string();
    assert!(
        code.len() == digits as usize && code.bytes().all(|b| b.is_ascii_digit()),
        "unexpected oathtool output {code:?}"
    );
    code
}

/// The code of time step `step` (any time inside the step gives the same code).
pub fn totp_at_step(
    secret_base32: &str,
    algorithm: Algorithm,
    digits: u32,
    period: u64,
    step: u64,
) -> String {
    totp(secret_base32, algorithm, digits, period, step * period)
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The current time step, but never one that ends within `margin`: when fewer than
/// `margin` remain in the current step, sleep into the next one (at most `margin`).
///
/// Why: a code of step `now - 1` is accepted with `window = 1` only until the current step
/// ends; tests that use it first make sure the step has time left, so they never race a
/// step boundary. Codes of `now` and `now + 1` need no margin: they stay inside the
/// window for at least a whole period.
pub fn settled_step(period: u64, margin: Duration) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let period_d = Duration::from_secs(period);
    let into = Duration::from_nanos((now.as_nanos() % period_d.as_nanos()) as u64);
    let left = period_d - into;
    if left < margin {
        std::thread::sleep(left + Duration::from_millis(50));
        return settled_step(period, margin);
    }
    now.as_secs() / period
}

/// A code of `digits` digits that is none of `avoid` (the codes a window would accept).
pub fn wrong_code(digits: u32, avoid: &[String]) -> String {
    (0..10u64)
        .map(|d| d.to_string().repeat(digits as usize))
        .find(|c| !avoid.contains(c))
        .expect("ten candidate codes cannot all be in a small window")
}
