// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus contract between `pam_twostep.so`, `twostepd` and `twostepctl`, defined once.
//!
//! Without features this crate is names, limits and the wire codec of a login step: that is
//! all the PAM module links. The `zbus` feature adds the typed error enum and the proxies
//! used by the daemon, the CLI and the tests.
#![forbid(unsafe_code)]

use std::fmt;

/// Well-known bus name owned by `twostepd` (only root may own it: packaging/dbus policy).
pub const BUS_NAME: &str = "org.twostep.Twostep1";
/// The one object the daemon serves.
pub const OBJECT_PATH: &str = "/org/twostep/Twostep1";
/// Login conversations, driven by the daemon and rendered by the PAM module.
pub const LOGIN_INTERFACE: &str = "org.twostep.Login1";
/// Self-service for the calling user (enrol, status).
pub const USER_INTERFACE: &str = "org.twostep.User1";
/// Admin methods (root or the admin group).
pub const ADMIN_INTERFACE: &str = "org.twostep.Admin1";
/// Prefix of every error name the daemon sends.
pub const ERROR_PREFIX: &str = "org.twostep.Error";

/// The system bus socket: the module's default, never taken from the environment.
pub const SYSTEM_BUS_ADDRESS: &str = "unix:path=/run/dbus/system_bus_socket";

/// Method names of [`LOGIN_INTERFACE`].
pub mod login {
    /// `Begin(s user, a{ss} context) -> (s session, s kind, s message, s prompt, u digits)`.
    /// `session` is empty exactly when the first step is final (nothing to answer).
    pub const BEGIN: &str = "Begin";
    /// `Answer(s session, ay answer) -> (s kind, s message, s prompt, u digits)`
    pub const ANSWER: &str = "Answer";
    /// Context keys the module sends with `Begin`.
    pub const CTX_SERVICE: &str = "service";
    pub const CTX_RHOST: &str = "rhost";
    pub const CTX_TTY: &str = "tty";
}

/// Error names (suffixes of [`ERROR_PREFIX`]) that clients branch on.
pub mod error_name {
    pub const ACCESS_DENIED: &str = "org.twostep.Error.AccessDenied";
    pub const UNKNOWN_USER: &str = "org.twostep.Error.UnknownUser";
    pub const INVALID_ARGUMENT: &str = "org.twostep.Error.InvalidArgument";
    pub const UNAVAILABLE: &str = "org.twostep.Error.Unavailable";
    pub const NO_SESSION: &str = "org.twostep.Error.NoSession";
    pub const BUSY: &str = "org.twostep.Error.Busy";
    pub const NOT_ENROLLED: &str = "org.twostep.Error.NotEnrolled";
    pub const ALREADY_ENROLLED: &str = "org.twostep.Error.AlreadyEnrolled";
    pub const NO_PENDING_ENROLLMENT: &str = "org.twostep.Error.NoPendingEnrollment";
    pub const WRONG_CODE: &str = "org.twostep.Error.WrongCode";
    pub const LOCKED: &str = "org.twostep.Error.Locked";
}

/// The arguments `pam_twostep.so` accepts in `/etc/pam.d` (anything else makes it refuse
/// every login). `twostepctl doctor` checks PAM lines against this same list.
pub mod module_args {
    pub const NAMES: &[&str] = &["bus", "bus_uid", "nullok", "debug", "timeout", "failmode"];
}

/// The PAM results `pam_twostep.so` returns from `pam_sm_authenticate`, by libpam's token
/// names (the `PAM_` constant without its prefix, lower-cased: the words a bracketed control
/// in `/etc/pam.d` uses). `twostepctl doctor` checks stacks against these lists; a unit test
/// in the module (`pam_module/src/contract_tests.rs`) runs the module's code mapping over
/// every outcome and argument set and ties it to them, both ways.
pub mod module_results {
    /// What the module returns when the second factor was *not* proven: a wrong or missing
    /// code, a lock, an unreachable or refusing daemon, a failed conversation, bad module
    /// arguments (`service_err`), an internal error (`system_err`). A stack must fail on
    /// every one of them.
    pub const FAILURES: &[&str] = &[
        "auth_err",
        "maxtries",
        "authinfo_unavail",
        "user_unknown",
        "conv_err",
        "service_err",
        "system_err",
    ];
    /// What the module returns when the login may go on: `success` (the code was proven, or
    /// `failmode=open` let a login through with the daemon absent) and `ignore` (`nullok`
    /// and the user has no second factor and none is required).
    pub const PASSES: &[&str] = &["success", "ignore"];
}

/// The keys of the `a{sv}` dicts the daemon returns: `User1.Status` (the first nine),
/// `Admin1.ListUsers` and `Admin1.ShowUser` (all of them; [`EVENTS`](status_key::EVENTS)
/// only in `ShowUser`). Times are Unix seconds, 0 = never/none, `u64::MAX` = until unlocked.
pub mod status_key {
    /// `b`: the user has a confirmed second factor.
    pub const ENROLLED: &str = "enrolled";
    /// `b`: an enrolment was begun and not yet confirmed (or expired).
    pub const PENDING_ENROLLMENT: &str = "pending_enrollment";
    /// `u`: unused recovery codes.
    pub const RECOVERY_CODES_LEFT: &str = "recovery_codes_left";
    /// `b`: policy requires a second factor for this user.
    pub const REQUIRED: &str = "required";
    /// `b`: the user may switch 2FA off themselves.
    pub const MAY_TOGGLE: &str = "may_toggle";
    /// `u`: failed attempts counted toward the lock.
    pub const FAILURES: &str = "failures";
    /// `t`: locked until this time.
    pub const LOCKED_UNTIL: &str = "locked_until";
    /// `t`: the last successful second factor.
    pub const LAST_SUCCESS: &str = "last_success";
    /// `t`: the last failed attempt.
    pub const LAST_FAILURE: &str = "last_failure";
    /// `s` (admin only): the account name.
    pub const USER: &str = "user";
    /// `u` (admin only): the account's uid.
    pub const UID: &str = "uid";
    /// `s` (admin only): the name the record was enrolled under.
    pub const ENROLLED_AS: &str = "enrolled_as";
    /// `s` (admin only): why 2FA is or is not required.
    pub const WHY: &str = "why";
    /// `s` (admin only): the per-user requirement override (`required`, `exempt`, `default`).
    pub const OVERRIDE: &str = "override";
    /// `s` (admin only): why the record cannot be read (empty: readable).
    pub const ERROR: &str = "error";
    /// `a(ts)` (`ShowUser` only): the latest events, oldest first.
    pub const EVENTS: &str = "events";
    /// The keys of `User1.Status`.
    pub const STATUS: &[&str] = &[
        ENROLLED,
        PENDING_ENROLLMENT,
        RECOVERY_CODES_LEFT,
        REQUIRED,
        MAY_TOGGLE,
        FAILURES,
        LOCKED_UNTIL,
        LAST_SUCCESS,
        LAST_FAILURE,
    ];
    /// The keys an admin sees of every user (`Admin1.ListUsers` entries): those of
    /// [`STATUS`] and these; `Admin1.ShowUser` adds [`EVENTS`].
    pub const ADMIN_EXTRA: &[&str] = &[USER, UID, ENROLLED_AS, WHY, OVERRIDE, ERROR];
}

/// The keys of the `a{sv}` dict `Admin1.RepairUser` returns.
pub mod repair_key {
    /// `s`: the record file.
    pub const PATH: &str = "path";
    /// `s`: what is damaged (empty: intact, nothing to do).
    pub const DAMAGE: &str = "damage";
    /// `as`: what each slot holds.
    pub const SLOTS: &str = "slots";
    /// `as`: what a repair may lose.
    pub const MAY_BE_LOST: &str = "may_be_lost";
    /// `as`: what a repair restores.
    pub const RESTORED: &str = "restored";
    /// `b`: the repair was written.
    pub const WRITTEN: &str = "written";
    /// `s`: where the damaged file was kept.
    pub const KEPT: &str = "kept";
    /// Every key, in the order above.
    pub const ALL: &[&str] = &[PATH, DAMAGE, SLOTS, MAY_BE_LOST, RESTORED, WRITTEN, KEPT];
}

/// Bounds on what crosses the bus, enforced on both sides.
pub mod limits {
    /// Longest user name accepted (Linux allows 32; NSS back ends may allow more).
    pub const MAX_USER_LEN: usize = 256;
    /// Longest answer the module sends and the daemon reads.
    pub const MAX_ANSWER_LEN: usize = 128;
    /// Longest context value (service, rhost, tty).
    pub const MAX_CONTEXT_LEN: usize = 256;
    /// Most context entries.
    pub const MAX_CONTEXT_ENTRIES: usize = 8;
    /// Longest text (message + prompt) the module renders.
    pub const MAX_TEXT_LEN: usize = 16 * 1024;
    /// Longest session token.
    pub const MAX_SESSION_LEN: usize = 64;
}

/// What an answer to a prompt may look like; the module enforces it before sending.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accept {
    /// Exactly `digits` ASCII digits.
    Code { digits: u8 },
    /// A code as above, or a recovery code (lower-case letters, digits and dashes).
    CodeOrRecovery { digits: u8 },
    /// Nothing to enter: the user confirms having read the text (e.g. recovery codes
    /// shown once) by pressing Enter. Shown with echo on; whatever was typed is discarded
    /// and an empty answer is sent.
    Acknowledge,
}

/// The end of a login conversation.
#[must_use]
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Verdict {
    /// The second factor is proven.
    Success,
    /// A wrong or malformed answer.
    Denied,
    /// Too many failures: the code was not evaluated.
    Locked,
    /// The user has no second factor and none is required.
    NotEnrolled,
}

/// One step of a login conversation, as the daemon sends it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Step {
    /// Show `message` (may be empty) together with `prompt`, echo off, and send the answer.
    Prompt {
        message: String,
        prompt: String,
        accept: Accept,
    },
    /// The conversation is over; `message` (may be empty) is shown to the user.
    Done { verdict: Verdict, message: String },
}

/// The flat wire form of a [`Step`]: `(s kind, s message, s prompt, u digits)`.
pub type WireStep = (String, String, String, u32);

mod kind {
    pub const PROMPT_CODE: &str = "prompt-code";
    pub const PROMPT_CODE_OR_RECOVERY: &str = "prompt-code-or-recovery";
    pub const PROMPT_ACKNOWLEDGE: &str = "prompt-acknowledge";
    pub const SUCCESS: &str = "success";
    pub const DENIED: &str = "denied";
    pub const LOCKED: &str = "locked";
    pub const NOT_ENROLLED: &str = "not-enrolled";
}

/// A step kind or shape this side of the contract does not know.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownStep;

impl fmt::Display for UnknownStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown or malformed login step from the daemon")
    }
}

impl std::error::Error for UnknownStep {}

impl Step {
    /// Encode for the bus.
    pub fn to_wire(&self) -> WireStep {
        match self {
            Step::Prompt {
                message,
                prompt,
                accept,
            } => {
                let (k, digits) = match accept {
                    Accept::Code { digits } => (kind::PROMPT_CODE, *digits),
                    Accept::CodeOrRecovery { digits } => (kind::PROMPT_CODE_OR_RECOVERY, *digits),
                    Accept::Acknowledge => (kind::PROMPT_ACKNOWLEDGE, 0),
                };
                (k.into(), message.clone(), prompt.clone(), u32::from(digits))
            }
            Step::Done { verdict, message } => {
                let k = match verdict {
                    Verdict::Success => kind::SUCCESS,
                    Verdict::Denied => kind::DENIED,
                    Verdict::Locked => kind::LOCKED,
                    Verdict::NotEnrolled => kind::NOT_ENROLLED,
                };
                (k.into(), message.clone(), String::new(), 0)
            }
        }
    }

    /// Decode from the bus. Anything unknown or out of bounds is an error, so a newer or
    /// confused daemon makes the module fail closed rather than guess.
    ///
    /// # Errors
    /// [`UnknownStep`] for an unknown kind, a code length outside 6..=8 or over-long text.
    pub fn from_wire(wire: WireStep) -> Result<Step, UnknownStep> {
        let (k, message, prompt, digits) = wire;
        if message.len() + prompt.len() > limits::MAX_TEXT_LEN {
            return Err(UnknownStep);
        }
        let code_digits = || match u8::try_from(digits) {
            Ok(d @ 6..=8) => Ok(d),
            _ => Err(UnknownStep),
        };
        let done = |verdict| {
            Ok(Step::Done {
                verdict,
                message: message.clone(),
            })
        };
        match k.as_str() {
            kind::PROMPT_CODE => Ok(Step::Prompt {
                accept: Accept::Code {
                    digits: code_digits()?,
                },
                message,
                prompt,
            }),
            kind::PROMPT_CODE_OR_RECOVERY => Ok(Step::Prompt {
                accept: Accept::CodeOrRecovery {
                    digits: code_digits()?,
                },
                message,
                prompt,
            }),
            kind::PROMPT_ACKNOWLEDGE => Ok(Step::Prompt {
                accept: Accept::Acknowledge,
                message,
                prompt,
            }),
            kind::SUCCESS => done(Verdict::Success),
            kind::DENIED => done(Verdict::Denied),
            kind::LOCKED => done(Verdict::Locked),
            kind::NOT_ENROLLED => done(Verdict::NotEnrolled),
            _ => Err(UnknownStep),
        }
    }
}

impl Accept {
    /// Whether `answer` has the shape this prompt accepts. Only ASCII: Rust's `parse`
    /// takes `+123456` and `char::is_numeric` takes non-ASCII digits, neither of which
    /// is a code.
    pub fn admits(&self, answer: &[u8]) -> bool {
        let is_code = |digits: u8| {
            answer.len() == usize::from(digits) && answer.iter().all(u8::is_ascii_digit)
        };
        match *self {
            Accept::Code { digits } => is_code(digits),
            Accept::CodeOrRecovery { digits } => is_code(digits) || is_recovery_shape(answer),
            Accept::Acknowledge => answer.is_empty(),
        }
    }
}

/// Shape of a recovery code as typed: lower-case ASCII letters, digits and dashes,
/// 8 to 64 characters.
pub fn is_recovery_shape(answer: &[u8]) -> bool {
    (8..=64).contains(&answer.len())
        && answer
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(feature = "zbus")]
mod typed;
#[cfg(feature = "zbus")]
pub use typed::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn all_steps() -> Vec<Step> {
        let mut v = vec![
            Step::Prompt {
                message: "hello".into(),
                prompt: "Verification code: ".into(),
                accept: Accept::Code { digits: 6 },
            },
            Step::Prompt {
                message: String::new(),
                prompt: "Code: ".into(),
                accept: Accept::CodeOrRecovery { digits: 8 },
            },
            Step::Prompt {
                message: "codes".into(),
                prompt: "Press Enter: ".into(),
                accept: Accept::Acknowledge,
            },
        ];
        for verdict in [
            Verdict::Success,
            Verdict::Denied,
            Verdict::Locked,
            Verdict::NotEnrolled,
        ] {
            v.push(Step::Done {
                verdict,
                message: "m".into(),
            });
        }
        v
    }

    #[test]
    fn every_step_survives_the_wire() {
        for step in all_steps() {
            assert_eq!(Step::from_wire(step.to_wire()), Ok(step));
        }
    }

    #[test]
    fn unknown_or_malformed_steps_are_refused() {
        let cases: Vec<WireStep> = vec![
            ("prompt-password".into(), String::new(), "x".into(), 6),
            ("".into(), String::new(), String::new(), 0),
            ("prompt-code".into(), String::new(), "x".into(), 5),
            ("prompt-code".into(), String::new(), "x".into(), 9),
            ("prompt-code".into(), String::new(), "x".into(), 256 + 6),
            (
                "success".into(),
                "x".repeat(limits::MAX_TEXT_LEN + 1),
                String::new(),
                0,
            ),
        ];
        for wire in cases {
            assert_eq!(Step::from_wire(wire), Err(UnknownStep));
        }
    }

    #[test]
    fn codes_are_ascii_digits_of_the_exact_length() {
        let six = Accept::Code { digits: 6 };
        assert!(six.admits(b"123456"));
        for bad in [
            &b"12345"[..],
            b"1234567",
            b"+12345",
            b" 123456",
            b"12345a",
            b"",
            "١٢٣٤٥٦".as_bytes(),
            b"\xff\xfe\xfd\xfc\xfb\xfa",
        ] {
            assert!(!six.admits(bad), "{bad:?}");
        }
        let either = Accept::CodeOrRecovery { digits: 6 };
        assert!(either.admits(b"123456"));
        assert!(either.admits(b"abcd-2345-wxyz"));
        assert!(!either.admits(b"ABCD-2345-WXYZ"));
        assert!(!either.admits(b"short"));
        assert!(!either.admits(&[b'a'; 65]));
    }
}
