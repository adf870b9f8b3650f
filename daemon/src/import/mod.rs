// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading other 2FA modules' enrolments, for `twostepctl admin import`: bytes in, a typed
//! result or a reasoned refusal out. The parsers ([`google_authenticator::parse`],
//! [`oath::parse`]) are pure functions (no I/O, no clock, no time zone), so they can be
//! fuzzed; [`file::read_checked`] opens a file the way the modules themselves would accept
//! it. What the parsers return becomes [`crate::core::import::Imported`], which the daemon
//! checks again before it writes anything.
//!
//! twostep has time-based codes (TOTP) only: a counter-based (HOTP) enrolment is reported
//! and skipped, never half-imported (see `docs/migrating.md`).

pub mod file;
pub mod google_authenticator;
pub mod oath;

use std::fmt;

/// Why an enrolment (a file, a user, a line) is not imported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The file or line is not in the format (what is wrong, and where).
    Malformed(String),
    /// The format is understood, but twostep cannot carry it over (HOTP, an option that
    /// would change how codes are checked).
    Unsupported(String),
    /// The file is not one the old module would trust (owner, permissions, type, link).
    Unsafe(String),
    /// The file cannot be read.
    Unreadable(String),
}

impl Skip {
    /// The kind, for summaries: `malformed`, `unsupported`, `unsafe`, `unreadable`.
    pub fn kind(&self) -> &'static str {
        match self {
            Skip::Malformed(_) => "malformed",
            Skip::Unsupported(_) => "unsupported",
            Skip::Unsafe(_) => "unsafe",
            Skip::Unreadable(_) => "unreadable",
        }
    }

    /// The reason, without the kind.
    pub fn reason(&self) -> &str {
        match self {
            Skip::Malformed(r) | Skip::Unsupported(r) | Skip::Unsafe(r) | Skip::Unreadable(r) => r,
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind(), self.reason())
    }
}

/// The time steps either side of now that a window accepts, `(early, late)`.
pub type Reach = (u64, u64);

/// A note for the user's report when the old module accepted codes further from now than
/// this host does (`host_window` steps either side).
pub fn window_note(module: &str, reach: Reach, host_window: u64) -> Option<String> {
    let (early, late) = reach;
    (early > host_window || late > host_window).then(|| {
        format!(
            "{module} accepted codes up to {early} step(s) early and {late} late; this host \
             accepts {host_window} either side ([totp] window): a phone whose clock is off by \
             more is refused"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes and random edits of real files: every input gets an answer (a value
    /// or a reason), never a panic. (The fuzzing issue runs these parsers for longer.)
    #[test]
    fn the_parsers_answer_every_input() {
        let seeds: [&[u8]; 3] = [
            b"XWZKIC3HG75BD3NLXFQULYIOBU\n\" RATE_LIMIT 3 30 1700000000\n\" WINDOW_SIZE 3\n\
              \" DISALLOW_REUSE 56666666\n\" TIME_SKEW -2\n\" STEP_SIZE 30\n\" TOTP_AUTH\n\
              49133232\n49061488\n",
            b"HOTP/T30/8\talice\t-\t3132333435363738393031323334353637383930\t-1\t12345678\t\
              2026-11-30T00:00:30L\nHOTP bob + 00\n# c\n",
            b"",
        ];
        let mut noise = [0u8; 4096];
        for round in 0..2000 {
            getrandom::getrandom(&mut noise).unwrap();
            let seed = seeds[round % seeds.len()];
            let mut input = seed.to_vec();
            // A few random edits: overwrite, insert, truncate.
            for chunk in noise[..24].chunks(3) {
                let (op, at, byte) = (chunk[0] % 3, usize::from(chunk[1]), chunk[2]);
                let at = if input.is_empty() {
                    0
                } else {
                    at % input.len()
                };
                match op {
                    0 if !input.is_empty() => input[at] = byte,
                    1 => input.insert(at, byte),
                    _ => input.truncate(at.max(1)),
                }
            }
            let _ = google_authenticator::parse(&input);
            let _ = oath::parse(&input);
            let len = usize::from(noise[30]) * 8;
            let _ = google_authenticator::parse(&noise[..len]);
            if let Ok(f) = oath::parse(&noise[..len]) {
                for tokens in f.users.values().flatten() {
                    let _ = oath::to_imported(tokens, oath::local_to_epoch);
                }
            }
        }
    }
}
