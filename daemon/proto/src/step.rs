// SPDX-License-Identifier: MIT OR Apache-2.0
//! One step of a login conversation and its two wire forms.
//!
//! The daemon drives, the module renders: a step is text plus a prompt whose answer has a
//! *shape* ([`Accept`]), or a final [`Verdict`]. Shapes are named by form (digits of n,
//! digits or text, text, Enter), never by method, so a new method (email codes, app
//! passwords, choosing a method, typing an email address) needs no change in the module.
//!
//! Two versions of the login interface carry steps:
//! - `org.twostep.Login2` ([`crate::LOGIN2_INTERFACE`], [`WireStep2`]) carries every shape;
//!   the module calls it first.
//! - `org.twostep.Login1` ([`crate::LOGIN_INTERFACE`], [`WireStep`]) is what modules before
//!   Login2 speak. Its kinds are named by method and it can carry only the shapes those
//!   kinds meant ([`Step::to_wire`] says [`NotInLogin1`] for the rest: the daemon then
//!   answers [`crate::error_name::NEEDS_NEWER_MODULE`], an error name the old module does
//!   not know and so fails closed on, with the reason in its log line). A new module on an
//!   old daemon (no Login2) falls back to Login1 (see `pam_module/src/bus`).
//!
//! Decoding is strict on both versions: an unknown kind, a bound outside its range or a
//! field a kind does not use that is not zero is refused ([`UnknownStep`]), so a newer or
//! confused daemon makes the module fail closed rather than guess.

use std::fmt;

use zeroize::Zeroize;

use crate::limits;

/// Fewest digits a [`Accept::Digits`] code may have.
pub const MIN_DIGITS: u8 = 4;
/// Most digits a [`Accept::Digits`] code may have.
pub const MAX_DIGITS: u8 = 10;
/// Shortest text the module sends as the text alternative of [`Accept::DigitsOrText`]:
/// that alternative is a secret the daemon issued (a recovery code, later an app password),
/// never shorter than this, so a mistyped code (five digits, a stray letter) is refused by
/// the module instead of costing an attempt.
pub const MIN_TEXT_ALTERNATIVE: u8 = 8;

/// The one rule for a code as people type it (issue 20 item 5), applied alike by the
/// module, `twostepctl` and the daemon: an answer of ASCII digits with spaces, tabs or
/// dashes between or around them (apps show `123 456`; people add a space) is the code of
/// its digits. Anything else — a recovery code, a request word, text — is left as typed
/// (the daemon reads recovery codes in either case, with or without dashes).
///
/// Returns whether `answer` is such a code; its digits are [`code_digits`].
pub fn is_typed_code(answer: &[u8]) -> bool {
    answer.len() <= limits::MAX_ANSWER_LEN
        && answer.iter().any(u8::is_ascii_digit)
        && answer
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b' ' | b'\t' | b'-'))
}

/// The digits of `answer` (its spaces, tabs and dashes dropped); meant for answers that
/// [`is_typed_code`]. The caller collects them into a buffer it wipes.
pub fn code_digits(answer: &[u8]) -> impl Iterator<Item = u8> + '_ {
    answer.iter().copied().filter(u8::is_ascii_digit)
}
/// The longest recovery code as typed (with its dashes), the text bound of Login1's
/// `prompt-code-or-recovery`.
pub const MAX_RECOVERY_LEN: u8 = 64;

/// What an answer to a prompt may look like, by form; the module enforces it before
/// sending ([`Accept::admits`]) and renders the prompt with the echo it says
/// ([`Accept::echo`]). Every shape is bounded by [`limits::MAX_ANSWER_LEN`] and admits ASCII
/// only, without control characters (so non-UTF-8 bytes are refused too).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Accept {
    /// Exactly `n` ASCII digits ([`MIN_DIGITS`]`..=`[`MAX_DIGITS`]): a TOTP code, an
    /// emailed code. Echo off.
    Digits { n: u8 },
    /// Exactly `n` ASCII digits as above, or text: [`MIN_TEXT_ALTERNATIVE`]`..=max` bytes of
    /// printable ASCII (`0x20..=0x7e`), `max` at most [`limits::MAX_ANSWER_LEN`]. A code or a
    /// recovery code today; a code or an app password later. Echo off.
    DigitsOrText { n: u8, max: u8 },
    /// Free-form text: `1..=max` bytes of printable ASCII, `max` at most
    /// [`limits::MAX_ANSWER_LEN`]. With `echo` on for what the user may see (an email
    /// address, a choice "1 = app, 2 = email"), off for a secret (an app password).
    Text { max: u8, echo: bool },
    /// Nothing to enter: the user confirms having read the text (e.g. recovery codes
    /// shown once) by pressing Enter. Shown with echo on; whatever was typed is discarded
    /// and an empty answer is sent.
    Acknowledge,
}

impl Accept {
    /// Whether `answer` has the shape this prompt accepts. Only ASCII: Rust's `parse`
    /// takes `+123456` and `char::is_numeric` takes non-ASCII digits, neither of which
    /// is a code; no control characters, no bytes above `0x7e`.
    pub fn admits(&self, answer: &[u8]) -> bool {
        if answer.len() > limits::MAX_ANSWER_LEN {
            return false;
        }
        let is_code =
            |n: u8| answer.len() == usize::from(n) && answer.iter().all(u8::is_ascii_digit);
        let is_text = |min: u8, max: u8| {
            (usize::from(min)..=usize::from(max)).contains(&answer.len())
                && answer.iter().all(|b| (0x20..=0x7e).contains(b))
        };
        match *self {
            Accept::Digits { n } => is_code(n),
            Accept::DigitsOrText { n, max } => is_code(n) || is_text(MIN_TEXT_ALTERNATIVE, max),
            Accept::Text { max, .. } => is_text(1, max),
            Accept::Acknowledge => answer.is_empty(),
        }
    }

    /// Whether what the user types is shown: on for [`Accept::Acknowledge`] and
    /// [`Accept::Text`] with `echo`, off for codes and secrets.
    pub fn echo(&self) -> bool {
        match *self {
            Accept::Digits { .. } | Accept::DigitsOrText { .. } => false,
            Accept::Text { echo, .. } => echo,
            Accept::Acknowledge => true,
        }
    }

    /// Whether the bounds are the ones this contract allows (what [`Step::from_wire2`]
    /// checks); the daemon builds only valid shapes.
    pub fn is_valid(&self) -> bool {
        let answer_max = |max: u8| usize::from(max) <= limits::MAX_ANSWER_LEN;
        match *self {
            Accept::Digits { n } => (MIN_DIGITS..=MAX_DIGITS).contains(&n),
            Accept::DigitsOrText { n, max } => {
                (MIN_DIGITS..=MAX_DIGITS).contains(&n)
                    && max >= MIN_TEXT_ALTERNATIVE
                    && answer_max(max)
            }
            Accept::Text { max, .. } => max >= 1 && answer_max(max),
            Accept::Acknowledge => true,
        }
    }
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
///
/// A message may carry a secret shown once (the key of an enrolment at login, new recovery
/// codes): its text is wiped when the step drops and never shown by `Debug` (which gives
/// its length only).
#[derive(Clone, PartialEq, Eq)]
pub enum Step {
    /// Show `message` (may be empty) together with `prompt`, with the echo `accept` says,
    /// and send the answer.
    Prompt {
        message: String,
        prompt: String,
        accept: Accept,
    },
    /// The conversation is over; `message` (may be empty) is shown to the user.
    Done { verdict: Verdict, message: String },
}

impl Drop for Step {
    fn drop(&mut self) {
        match self {
            Step::Prompt {
                message, prompt, ..
            } => {
                message.zeroize();
                prompt.zeroize();
            }
            Step::Done { message, .. } => message.zeroize(),
        }
    }
}

/// Text lengths only: a message may hold a secret shown once.
impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Len(usize);
        impl fmt::Debug for Len {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "<{} bytes>", self.0)
            }
        }
        match self {
            Step::Prompt {
                message,
                prompt,
                accept,
            } => f
                .debug_struct("Prompt")
                .field("message", &Len(message.len()))
                .field("prompt", prompt)
                .field("accept", accept)
                .finish(),
            Step::Done { verdict, message } => f
                .debug_struct("Done")
                .field("verdict", verdict)
                .field("message", &Len(message.len()))
                .finish(),
        }
    }
}

/// The flat Login1 wire form of a [`Step`]: `(s kind, s message, s prompt, u digits)`.
pub type WireStep = (String, String, String, u32);

/// The flat Login2 wire form of a [`Step`]:
/// `(s kind, s message, s prompt, u digits, u max, b echo)`.
///
/// | kind | digits | max | echo |
/// |---|---|---|---|
/// | `prompt-digits` | n | 0 | false |
/// | `prompt-digits-or-text` | n | max | false |
/// | `prompt-text` | 0 | max | echo |
/// | `prompt-acknowledge` | 0 | 0 | false |
/// | `success`, `denied`, `locked`, `not-enrolled` (prompt empty) | 0 | 0 | false |
///
/// Every field a kind does not use is zero (or false, or empty); anything else is refused.
pub type WireStep2 = (String, String, String, u32, u32, bool);

/// Step kinds on the wire.
mod kind {
    // Login1: named by method.
    pub const PROMPT_CODE: &str = "prompt-code";
    pub const PROMPT_CODE_OR_RECOVERY: &str = "prompt-code-or-recovery";
    // Login2: named by form.
    pub const PROMPT_DIGITS: &str = "prompt-digits";
    pub const PROMPT_DIGITS_OR_TEXT: &str = "prompt-digits-or-text";
    pub const PROMPT_TEXT: &str = "prompt-text";
    // Both.
    pub const PROMPT_ACKNOWLEDGE: &str = "prompt-acknowledge";
    pub const SUCCESS: &str = "success";
    pub const DENIED: &str = "denied";
    pub const LOCKED: &str = "locked";
    pub const NOT_ENROLLED: &str = "not-enrolled";
}

/// Digits a Login1 code prompt may carry: what modules before Login2 accept.
const LOGIN1_DIGITS: std::ops::RangeInclusive<u8> = 6..=8;

/// A step kind or shape this side of the contract does not know.
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownStep;

impl fmt::Display for UnknownStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown or malformed login step from the daemon")
    }
}

impl std::error::Error for UnknownStep {}

/// A step that Login1 cannot carry: a shape modules before Login2 cannot render.
#[derive(Debug, PartialEq, Eq)]
pub struct NotInLogin1;

impl fmt::Display for NotInLogin1 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this login needs a newer pam_twostep (one that speaks {})",
            crate::LOGIN2_INTERFACE
        )
    }
}

impl std::error::Error for NotInLogin1 {}

impl Verdict {
    fn kind(self) -> &'static str {
        match self {
            Verdict::Success => kind::SUCCESS,
            Verdict::Denied => kind::DENIED,
            Verdict::Locked => kind::LOCKED,
            Verdict::NotEnrolled => kind::NOT_ENROLLED,
        }
    }

    fn from_kind(k: &str) -> Option<Verdict> {
        match k {
            kind::SUCCESS => Some(Verdict::Success),
            kind::DENIED => Some(Verdict::Denied),
            kind::LOCKED => Some(Verdict::Locked),
            kind::NOT_ENROLLED => Some(Verdict::NotEnrolled),
            _ => None,
        }
    }
}

impl Step {
    /// Encode for Login1, for modules before Login2: codes of 6 to 8 digits, a code or a
    /// recovery code (any [`Accept::DigitsOrText`] with such a code: the old module admits
    /// recovery-code-shaped text there, lower-case letters, digits and dashes, 8..=64
    /// bytes), Enter, and every verdict.
    ///
    /// # Errors
    /// [`NotInLogin1`] for [`Accept::Text`] and for codes of other lengths.
    pub fn to_wire(&self) -> Result<WireStep, NotInLogin1> {
        match self {
            Step::Prompt {
                message,
                prompt,
                accept,
            } => {
                let (k, digits) = match *accept {
                    Accept::Digits { n } if LOGIN1_DIGITS.contains(&n) => (kind::PROMPT_CODE, n),
                    Accept::DigitsOrText { n, .. } if LOGIN1_DIGITS.contains(&n) => {
                        (kind::PROMPT_CODE_OR_RECOVERY, n)
                    }
                    Accept::Acknowledge => (kind::PROMPT_ACKNOWLEDGE, 0),
                    Accept::Digits { .. } | Accept::DigitsOrText { .. } | Accept::Text { .. } => {
                        return Err(NotInLogin1)
                    }
                };
                Ok((k.into(), message.clone(), prompt.clone(), u32::from(digits)))
            }
            Step::Done { verdict, message } => {
                Ok((verdict.kind().into(), message.clone(), String::new(), 0))
            }
        }
    }

    /// Decode a Login1 step (from a daemon older than Login2). A code prompt becomes
    /// [`Accept::Digits`], a code-or-recovery prompt [`Accept::DigitsOrText`] with
    /// [`MAX_RECOVERY_LEN`].
    ///
    /// # Errors
    /// [`UnknownStep`] for an unknown kind, a code length outside 6..=8 or over-long text.
    pub fn from_wire(wire: WireStep) -> Result<Step, UnknownStep> {
        let (k, message, prompt, digits) = wire;
        if message.len() + prompt.len() > limits::MAX_TEXT_LEN {
            return Err(UnknownStep);
        }
        let code_digits = || match u8::try_from(digits) {
            Ok(d) if LOGIN1_DIGITS.contains(&d) => Ok(d),
            _ => Err(UnknownStep),
        };
        let accept = match k.as_str() {
            kind::PROMPT_CODE => Accept::Digits { n: code_digits()? },
            kind::PROMPT_CODE_OR_RECOVERY => Accept::DigitsOrText {
                n: code_digits()?,
                max: MAX_RECOVERY_LEN,
            },
            kind::PROMPT_ACKNOWLEDGE => Accept::Acknowledge,
            other => {
                let verdict = Verdict::from_kind(other).ok_or(UnknownStep)?;
                return Ok(Step::Done { verdict, message });
            }
        };
        Ok(Step::Prompt {
            message,
            prompt,
            accept,
        })
    }

    /// Encode for Login2: every step (see [`WireStep2`]).
    pub fn to_wire2(&self) -> WireStep2 {
        match self {
            Step::Prompt {
                message,
                prompt,
                accept,
            } => {
                let (k, digits, max, echo) = match *accept {
                    Accept::Digits { n } => (kind::PROMPT_DIGITS, n, 0, false),
                    Accept::DigitsOrText { n, max } => (kind::PROMPT_DIGITS_OR_TEXT, n, max, false),
                    Accept::Text { max, echo } => (kind::PROMPT_TEXT, 0, max, echo),
                    Accept::Acknowledge => (kind::PROMPT_ACKNOWLEDGE, 0, 0, false),
                };
                (
                    k.into(),
                    message.clone(),
                    prompt.clone(),
                    u32::from(digits),
                    u32::from(max),
                    echo,
                )
            }
            Step::Done { verdict, message } => (
                verdict.kind().into(),
                message.clone(),
                String::new(),
                0,
                0,
                false,
            ),
        }
    }

    /// Decode a Login2 step. Strict: see [`WireStep2`] and [`Accept::is_valid`].
    ///
    /// # Errors
    /// [`UnknownStep`] for an unknown kind (also Login1's method-named kinds), a bound out
    /// of range, a field the kind does not use that is set, or over-long text.
    pub fn from_wire2(wire: WireStep2) -> Result<Step, UnknownStep> {
        let (k, message, prompt, digits, max, echo) = wire;
        if message.len() + prompt.len() > limits::MAX_TEXT_LEN {
            return Err(UnknownStep);
        }
        let small = |v: u32| u8::try_from(v).map_err(|_| UnknownStep);
        let (n, max) = (small(digits)?, small(max)?);
        let accept = match (k.as_str(), n, max, echo) {
            (kind::PROMPT_DIGITS, n, 0, false) => Accept::Digits { n },
            (kind::PROMPT_DIGITS_OR_TEXT, n, max, false) => Accept::DigitsOrText { n, max },
            (kind::PROMPT_TEXT, 0, max, echo) => Accept::Text { max, echo },
            (kind::PROMPT_ACKNOWLEDGE, 0, 0, false) => Accept::Acknowledge,
            (other, 0, 0, false) if prompt.is_empty() => {
                let verdict = Verdict::from_kind(other).ok_or(UnknownStep)?;
                return Ok(Step::Done { verdict, message });
            }
            _ => return Err(UnknownStep),
        };
        if !accept.is_valid() {
            return Err(UnknownStep);
        }
        Ok(Step::Prompt {
            message,
            prompt,
            accept,
        })
    }
}

/// Shape of a recovery code as typed: lower-case ASCII letters, digits and dashes,
/// 8 to [`MAX_RECOVERY_LEN`] characters. (What modules before Login2 admit as the text of
/// a Login1 `prompt-code-or-recovery`; the daemon's own check is more lenient.)
pub fn is_recovery_shape(answer: &[u8]) -> bool {
    (8..=usize::from(MAX_RECOVERY_LEN)).contains(&answer.len())
        && answer
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts() -> Vec<Step> {
        [
            Verdict::Success,
            Verdict::Denied,
            Verdict::Locked,
            Verdict::NotEnrolled,
        ]
        .into_iter()
        .map(|verdict| Step::Done {
            verdict,
            message: "m".into(),
        })
        .collect()
    }

    fn prompt(accept: Accept) -> Step {
        Step::Prompt {
            message: "hello".into(),
            prompt: "Answer: ".into(),
            accept,
        }
    }

    /// The steps both versions carry.
    fn login1_steps() -> Vec<Step> {
        let mut v = vec![
            prompt(Accept::Digits { n: 6 }),
            prompt(Accept::Digits { n: 8 }),
            prompt(Accept::DigitsOrText {
                n: 8,
                max: MAX_RECOVERY_LEN,
            }),
            prompt(Accept::Acknowledge),
        ];
        v.extend(verdicts());
        v
    }

    /// Steps only Login2 carries.
    fn login2_only_steps() -> Vec<Step> {
        vec![
            prompt(Accept::Digits { n: MIN_DIGITS }),
            prompt(Accept::Digits { n: MAX_DIGITS }),
            prompt(Accept::DigitsOrText {
                n: 10,
                max: MIN_TEXT_ALTERNATIVE,
            }),
            prompt(Accept::Text { max: 1, echo: true }),
            prompt(Accept::Text {
                max: 128,
                echo: false,
            }),
        ]
    }

    #[test]
    fn every_step_survives_login2() {
        for step in login1_steps().into_iter().chain(login2_only_steps()) {
            assert_eq!(Step::from_wire2(step.to_wire2()), Ok(step));
        }
    }

    #[test]
    fn every_login1_step_survives_login1() {
        for step in login1_steps() {
            assert_eq!(Step::from_wire(step.to_wire().unwrap()), Ok(step));
        }
    }

    #[test]
    fn login1_carries_what_old_modules_render_and_nothing_else() {
        // Today's daemon steps keep their Login1 bytes.
        let wire = |accept| prompt(accept).to_wire().unwrap();
        assert_eq!(wire(Accept::Digits { n: 6 }).0, "prompt-code");
        assert_eq!(wire(Accept::Digits { n: 6 }).3, 6);
        let either = wire(Accept::DigitsOrText {
            n: 6,
            max: MAX_RECOVERY_LEN,
        });
        assert_eq!(
            (either.0.as_str(), either.3),
            ("prompt-code-or-recovery", 6)
        );
        assert_eq!(wire(Accept::Acknowledge).0, "prompt-acknowledge");
        for step in login2_only_steps() {
            assert_eq!(step.to_wire(), Err(NotInLogin1), "{step:?}");
        }
        assert!(NotInLogin1
            .to_string()
            .contains("needs a newer pam_twostep"));
    }

    #[test]
    fn unknown_or_malformed_login1_steps_are_refused() {
        let cases: Vec<WireStep> = vec![
            ("prompt-password".into(), String::new(), "x".into(), 6),
            ("".into(), String::new(), String::new(), 0),
            ("prompt-code".into(), String::new(), "x".into(), 5),
            ("prompt-code".into(), String::new(), "x".into(), 9),
            ("prompt-code".into(), String::new(), "x".into(), 256 + 6),
            (
                "prompt-code-or-recovery".into(),
                String::new(),
                "x".into(),
                0,
            ),
            // Login2's kinds are not Login1's.
            ("prompt-digits".into(), String::new(), "x".into(), 6),
            ("prompt-text".into(), String::new(), "x".into(), 0),
            (
                "success".into(),
                "x".repeat(limits::MAX_TEXT_LEN + 1),
                String::new(),
                0,
            ),
        ];
        for wire in cases {
            assert_eq!(Step::from_wire(wire.clone()), Err(UnknownStep), "{wire:?}");
        }
    }

    #[test]
    fn unknown_or_malformed_login2_steps_are_refused() {
        let w = |k: &str, prompt: &str, digits: u32, max: u32, echo: bool| -> WireStep2 {
            (k.into(), String::new(), prompt.into(), digits, max, echo)
        };
        let cases: Vec<WireStep2> = vec![
            // Unknown kinds, Login1's method names among them.
            w("prompt-password", "x", 6, 0, false),
            w("prompt-code", "x", 6, 0, false),
            w("prompt-code-or-recovery", "x", 6, 64, false),
            w("", "", 0, 0, false),
            w("Success", "", 0, 0, false),
            // Digits out of range, or beyond u8.
            w("prompt-digits", "x", 3, 0, false),
            w("prompt-digits", "x", 11, 0, false),
            w("prompt-digits", "x", 256 + 6, 0, false),
            w("prompt-digits", "x", 0, 0, false),
            // Fields the kind does not use.
            w("prompt-digits", "x", 6, 64, false),
            w("prompt-digits", "x", 6, 0, true),
            w("prompt-digits-or-text", "x", 6, 64, true),
            w("prompt-text", "x", 6, 64, false),
            w("prompt-acknowledge", "x", 6, 0, false),
            w("prompt-acknowledge", "x", 0, 1, false),
            w("prompt-acknowledge", "x", 0, 0, true),
            w("denied", "", 6, 0, false),
            w("denied", "", 0, 1, false),
            w("success", "", 0, 0, true),
            w("success", "a prompt on a verdict", 0, 0, false),
            // Text bounds.
            w("prompt-digits-or-text", "x", 6, 7, false),
            w("prompt-digits-or-text", "x", 6, 129, false),
            w("prompt-digits-or-text", "x", 6, 256 + 64, false),
            w("prompt-digits-or-text", "x", 3, 64, false),
            w("prompt-text", "x", 0, 0, true),
            w("prompt-text", "x", 0, 129, true),
        ];
        for wire in cases {
            assert_eq!(Step::from_wire2(wire.clone()), Err(UnknownStep), "{wire:?}");
        }
        let long = (
            "success".into(),
            "x".repeat(limits::MAX_TEXT_LEN),
            "y".into(),
            0,
            0,
            false,
        );
        assert_eq!(Step::from_wire2(long), Err(UnknownStep));
    }

    #[test]
    fn codes_are_ascii_digits_of_the_exact_length() {
        let six = Accept::Digits { n: 6 };
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
        let either = Accept::DigitsOrText {
            n: 6,
            max: MAX_RECOVERY_LEN,
        };
        assert!(either.admits(b"123456"));
        assert!(either.admits(b"abcd-2345-wxyz"));
        // Recovery codes as the daemon takes them: upper case, no dashes.
        assert!(either.admits(b"ABCD2345WXYZ"));
        assert!(!either.admits(b"short"));
        assert!(!either.admits(b"12345"));
        assert!(!either.admits(&[b'a'; 65]));
        // The old module's recovery shape stays what it was.
        assert!(is_recovery_shape(b"abcd-2345-wxyz"));
        assert!(!is_recovery_shape(b"ABCD-2345-WXYZ"));
        assert!(!is_recovery_shape(b"short"));
        assert!(!is_recovery_shape(&[b'a'; 65]));
    }

    #[test]
    fn text_is_printable_ascii_within_its_bounds() {
        let email = Accept::Text {
            max: 64,
            echo: true,
        };
        assert!(email.admits(b"a@example.org"));
        assert!(email.admits(b"1"));
        assert!(email.admits(b"two words"));
        for bad in [
            &b""[..],
            b"tab\there",
            b"new\nline",
            b"nul\0",
            b"del\x7f",
            b"esc\x1b[2J",
            "café@example.org".as_bytes(),
            b"\xff\xfe",
            &[b'a'; 65],
        ] {
            assert!(!email.admits(bad), "{bad:?}");
        }
        let either = Accept::DigitsOrText { n: 6, max: 32 };
        for bad in [
            &b"pass\tword"[..],
            b"pass\x7fword",
            &[b'a'; 33],
            b"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
        ] {
            assert!(!either.admits(bad), "{bad:?}");
        }
        // The cap holds whatever a shape says.
        let huge = Accept::Text {
            max: u8::MAX,
            echo: false,
        };
        assert!(!huge.is_valid());
        assert!(!huge.admits(&[b'a'; limits::MAX_ANSWER_LEN + 1]));
    }

    #[test]
    fn acknowledge_admits_only_nothing() {
        assert!(Accept::Acknowledge.admits(b""));
        assert!(!Accept::Acknowledge.admits(b"x"));
    }

    #[test]
    fn echo_follows_the_shape() {
        assert!(!Accept::Digits { n: 6 }.echo());
        assert!(!Accept::DigitsOrText { n: 6, max: 64 }.echo());
        assert!(!Accept::Text {
            max: 64,
            echo: false
        }
        .echo());
        assert!(Accept::Text {
            max: 64,
            echo: true
        }
        .echo());
        assert!(Accept::Acknowledge.echo());
    }
}
