// SPDX-License-Identifier: MIT OR Apache-2.0
//! The two modes besides the second-factor login, over the same [`Prompter`] and
//! [`Daemon`] as [`flow`](crate::flow), unit-tested the same way:
//!
//! - `app_password` ([`run_app_password`]): for services that cannot prompt twice (IMAP,
//!   SMTP, FTP). Begin carries `mode=app-password`; the daemon answers with one secret text
//!   prompt (or a verdict: a service it does not allow, a locked user); the module answers
//!   it with the password the user gave (`PAM_AUTHTOK`, or one prompt when a module before
//!   did not set it) and never shows a second prompt. Any other step is a protocol error.
//! - `forward_pass` ([`run_forward_pass`]): for clients that show one password prompt
//!   (sshd with `PasswordAuthentication`, some VPN and GUI clients), as google-
//!   authenticator's `forward_pass` does. One prompt takes the password immediately
//!   followed by the code; the module splits off the code (the digit count the daemon's
//!   prompt names, or a recovery code in its dashed form), sends only the code, and on
//!   success hands the password part to the next module as `PAM_AUTHTOK`. Nothing of the
//!   password reaches the daemon or a log. Why the code is checked before the password
//!   (the next module): the module keeps no state between PAM calls, and a single prompt
//!   leaves no other order; so a wrong password after a right code spends that code, and
//!   wrong codes lock the account without the password (see docs/services.md).

use std::fmt;

use twostep_proto::{Accept, Step, Verdict};
use zeroize::Zeroizing;

use crate::flow::{
    drive, BadAnswer, BeginError, ConvError, Daemon, DaemonError, LoginContext, Outcome, Prompter,
    Reply, Session,
};

/// Longest password-and-code the `forward_pass` prompt takes, in bytes: libpam's
/// `PAM_MAX_RESP_SIZE`.
pub const MAX_PASSWORD_LEN: usize = 512;
/// The one prompt of `forward_pass` when the daemon asks for a code.
pub const FORWARD_PROMPT: &str = "Password and verification code: ";
/// The one prompt of `forward_pass` when recovery codes are accepted too.
pub const FORWARD_PROMPT_RECOVERY: &str =
    "Password and verification code (or password and recovery code): ";
/// The prompt of `forward_pass` when no code is asked (not enrolled and not required, or
/// in the enrolment grace period): the password alone, for the next module.
pub const PASSWORD_PROMPT: &str = "Password: ";
/// What `app_password` mode sends in place of a password that cannot be an app password
/// (printable ASCII, but never of an app password's shape).
const NOT_AN_APP_PASSWORD: &[u8] = b"-";
/// A recovery code as shown and typed in `forward_pass`: three groups of five, dashed.
const RECOVERY_TYPED_LEN: usize = 17;

/// What the user typed at a password prompt: wiped on drop, never printed.
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// The raw bytes, for `PAM_AUTHTOK`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// What came back from [`Prompter::prompt_password`].
#[derive(Debug)]
pub enum Typed {
    /// Non-empty, within [`MAX_PASSWORD_LEN`].
    Given(Password),
    /// No answer (NULL) or an empty one.
    Empty,
    /// Longer than [`MAX_PASSWORD_LEN`]: not copied.
    TooLong,
}

impl Typed {
    /// Caps the length before the bytes are copied.
    pub fn from_bytes(bytes: Option<&[u8]>) -> Typed {
        match bytes {
            Some(b) if b.len() > MAX_PASSWORD_LEN => Typed::TooLong,
            None | Some([]) => Typed::Empty,
            Some(b) => Typed::Given(Password(Zeroizing::new(b.to_vec()))),
        }
    }
}

/// How a mode ended, and the password to hand to the next module as `PAM_AUTHTOK` (only
/// ever with [`Outcome::Verdict`] of success or not-enrolled).
#[must_use]
pub struct Ended {
    pub outcome: Outcome,
    pub authtok: Option<Password>,
}

impl Ended {
    fn with(outcome: Outcome) -> Ended {
        Ended {
            outcome,
            authtok: None,
        }
    }
}

/// Shows a final step's message as the login flow does, and returns its verdict.
fn finish(io: &mut impl Prompter, verdict: Verdict, message: &str) -> Outcome {
    if !message.is_empty() {
        match verdict {
            Verdict::Success => io.info(message),
            Verdict::Denied | Verdict::Locked | Verdict::NotEnrolled => io.error(message),
        }
    }
    Outcome::Verdict(verdict)
}

fn begin(daemon: &impl Daemon, user: &str, ctx: &LoginContext) -> Result<(Session, Step), Outcome> {
    daemon.begin(user, ctx).map_err(|e| match e {
        BeginError::Absent(why) => Outcome::Absent(why),
        BeginError::Failed(e) => Outcome::Daemon(e),
    })
}

/// `app_password` mode: one app-password check. `authtok` is `PAM_AUTHTOK` as a module
/// before this one (or the application) set it; without it the module prompts once, and
/// the typed password is returned for `PAM_AUTHTOK` (so `pam_unix try_first_pass` after a
/// not-enrolled user with `nullok` does not prompt again). Without `nullok` a user the
/// daemon reports as not enrolled is refused as a wrong password is (`Denied`, no text):
/// the answer does not tell such a name from an unknown one.
pub fn run_app_password(
    io: &mut impl Prompter,
    daemon: &impl Daemon,
    user: &str,
    ctx: &LoginContext,
    authtok: Option<Reply>,
    nullok: bool,
) -> Ended {
    let ctx = LoginContext {
        app_password: true,
        ..ctx.clone()
    };
    let (session, step) = match begin(daemon, user, &ctx) {
        Ok(begun) => begun,
        Err(outcome) => return Ended::with(outcome),
    };
    let (prompt, accept) = match &step {
        Step::Done { verdict, message } => return Ended::with(finish(io, *verdict, message)),
        Step::Prompt {
            prompt,
            accept: accept @ Accept::Text { echo: false, .. },
            ..
        } => (prompt.clone(), *accept),
        Step::Prompt { .. } => {
            return Ended::with(Outcome::Daemon(DaemonError::Protocol(
                "app_password mode: the daemon asked for something other than a secret text \
                 (is it older than app passwords?)"
                    .into(),
            )))
        }
    };
    let prompted = authtok.is_none();
    let reply = match authtok {
        Some(r) => r,
        None => match io.prompt_echo_off(&prompt) {
            Ok(r) => r,
            Err(ConvError) => return Ended::with(Outcome::Conversation),
        },
    };
    // What cannot be an app password (not printable ASCII, over-long) is still answered, with
    // a placeholder that never is one: the daemon's verdict then tells a user without a
    // second factor (`NotEnrolled`: with `nullok` the typed password goes on to the next
    // module, e.g. an account password with non-ASCII characters) from everyone else, who is
    // refused and charged as for any wrong password.
    let typed = match reply {
        Reply::Answer(a) => Some(a),
        Reply::Empty => return Ended::with(Outcome::BadAnswer(BadAnswer::Empty)),
        Reply::TooLong => None,
    };
    let placeholder = match Reply::from_bytes(Some(NOT_AN_APP_PASSWORD)) {
        Reply::Answer(a) => a,
        Reply::Empty | Reply::TooLong => return Ended::with(Outcome::BadAnswer(BadAnswer::Shape)),
    };
    let answer = match &typed {
        Some(a) if accept.admits(a.as_bytes()) => a,
        Some(_) | None => &placeholder,
    };
    let outcome = match daemon.answer(&session, answer) {
        Ok(step) => match &step {
            Step::Done {
                verdict: Verdict::NotEnrolled,
                ..
            } if !nullok => Outcome::Verdict(Verdict::Denied),
            Step::Done { verdict, message } => finish(io, *verdict, message),
            Step::Prompt { .. } => Outcome::Daemon(DaemonError::Protocol(
                "app_password mode: a second prompt".into(),
            )),
        },
        Err(e) => Outcome::Daemon(e),
    };
    let passes = matches!(
        outcome,
        Outcome::Verdict(Verdict::Success | Verdict::NotEnrolled)
    );
    let authtok = typed
        .filter(|_| prompted && passes)
        .map(|a| Password(Zeroizing::new(a.as_bytes().to_vec())));
    Ended { outcome, authtok }
}

/// Split what was typed at the `forward_pass` prompt into (password, code) for a prompt
/// that accepts `accept`: a recovery code in its dashed form (`xxxxx-xxxxx-xxxxx`) at the
/// end where recovery codes are accepted, else the last `n` ASCII digits. The password part
/// must not be empty. `None`: no code at the end (refused without asking the daemon).
pub fn split(typed: &[u8], accept: Accept) -> Option<(&[u8], &[u8])> {
    let (n, recovery) = match accept {
        Accept::Digits { n } => (usize::from(n), false),
        Accept::DigitsOrText { n, .. } => (usize::from(n), true),
        Accept::Text { .. } | Accept::Acknowledge => return None,
    };
    if recovery && typed.len() > RECOVERY_TYPED_LEN {
        let (password, tail) = typed.split_at(typed.len() - RECOVERY_TYPED_LEN);
        let dashed = tail.iter().enumerate().all(|(i, b)| {
            if i == 5 || i == 11 {
                *b == b'-'
            } else {
                b.is_ascii_lowercase() || b.is_ascii_digit()
            }
        });
        if dashed {
            return Some((password, tail));
        }
    }
    if typed.len() <= n {
        return None;
    }
    let (password, code) = typed.split_at(typed.len() - n);
    code.iter()
        .all(u8::is_ascii_digit)
        .then_some((password, code))
}

/// `forward_pass` mode: one prompt for the password and the code; on success the password
/// part is returned for `PAM_AUTHTOK`. A user the daemon asks no code of (not enrolled and
/// not required, or in the enrolment grace period) is asked for the password alone, which
/// is passed on the same way. Steps after the code (e.g. recovery codes shown after an
/// enrolment at login) are rendered as in a normal login.
pub fn run_forward_pass(
    io: &mut impl Prompter,
    daemon: &impl Daemon,
    user: &str,
    ctx: &LoginContext,
    nullok: bool,
) -> Ended {
    let ctx = LoginContext {
        forward_pass: true,
        ..ctx.clone()
    };
    let (session, step) = match begin(daemon, user, &ctx) {
        Ok(begun) => begun,
        Err(outcome) => return Ended::with(outcome),
    };
    let (message, accept) = match &step {
        Step::Done { verdict, message } => {
            let verdict = *verdict;
            let outcome = finish(io, verdict, message);
            let wants_password = match verdict {
                Verdict::Success => true,
                Verdict::NotEnrolled => nullok,
                Verdict::Denied | Verdict::Locked => false,
            };
            if !wants_password {
                return Ended::with(outcome);
            }
            return match io.prompt_password(PASSWORD_PROMPT) {
                Ok(Typed::Given(p)) => Ended {
                    outcome,
                    authtok: Some(p),
                },
                Ok(Typed::Empty) => Ended::with(Outcome::BadAnswer(BadAnswer::Empty)),
                Ok(Typed::TooLong) => Ended::with(Outcome::BadAnswer(BadAnswer::TooLong)),
                Err(ConvError) => Ended::with(Outcome::Conversation),
            };
        }
        Step::Prompt {
            message,
            accept: accept @ (Accept::Digits { .. } | Accept::DigitsOrText { .. }),
            ..
        } => (Zeroizing::new(message.clone()), *accept),
        Step::Prompt { .. } => {
            return Ended::with(Outcome::Daemon(DaemonError::Protocol(
                "forward_pass mode: the daemon's first prompt is not for a code".into(),
            )))
        }
    };
    let prompt = match accept {
        Accept::DigitsOrText { .. } => FORWARD_PROMPT_RECOVERY,
        _ => FORWARD_PROMPT,
    };
    // Why one call: OpenSSH shows PAM_TEXT_INFO only when the next prompt arrives.
    let text = if message.is_empty() {
        prompt.to_owned()
    } else {
        format!("{}\n{prompt}", message.as_str())
    };
    let typed = match io.prompt_password(&text) {
        Ok(Typed::Given(p)) => p,
        Ok(Typed::Empty) => return Ended::with(Outcome::BadAnswer(BadAnswer::Empty)),
        Ok(Typed::TooLong) => return Ended::with(Outcome::BadAnswer(BadAnswer::TooLong)),
        Err(ConvError) => return Ended::with(Outcome::Conversation),
    };
    let Some((password, code)) = split(typed.as_bytes(), accept) else {
        return Ended::with(Outcome::BadAnswer(BadAnswer::Shape));
    };
    let code = match Reply::from_bytes(Some(code)) {
        Reply::Answer(a) if accept.admits(a.as_bytes()) => a,
        _ => return Ended::with(Outcome::BadAnswer(BadAnswer::Shape)),
    };
    let password = Password(Zeroizing::new(password.to_vec()));
    drop(typed);
    let next = match daemon.answer(&session, &code) {
        Ok(next) => next,
        Err(e) => return Ended::with(Outcome::Daemon(e)),
    };
    drop(code);
    let outcome = drive(io, daemon, &session, next, 1);
    let authtok = matches!(outcome, Outcome::Verdict(Verdict::Success)).then_some(password);
    Ended { outcome, authtok }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;
    use crate::args::ModuleArgs;
    use crate::flow::tests::{Call, Conv, FakeDaemon, ScriptedPrompter};
    use crate::flow::{pam_code, ErrorName};
    use pam::constants::PamResultCode;

    #[test]
    fn a_password_and_a_step_showing_a_secret_are_redacted_in_debug() {
        let password = Password(Zeroizing::new(b"hunter2-hunter2".to_vec()));
        let step = Step::Prompt {
            message: "your recovery codes: k3m9-x7q2-p4w8".into(),
            prompt: "Press Enter: ".into(),
            accept: Accept::Acknowledge,
        };
        let shown = format!("{password:?} {step:?} {step:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("k3m9"), "{shown}");
    }

    fn ctx(app_password: bool) -> LoginContext {
        LoginContext {
            service: Some("imap-t".into()),
            rhost: Some("192.0.2.7".into()),
            tty: None,
            app_password,
            forward_pass: false,
        }
    }

    fn secret_prompt() -> Step {
        Step::Prompt {
            message: String::new(),
            prompt: "Password: ".into(),
            accept: Accept::Text {
                max: 128,
                echo: false,
            },
        }
    }

    fn code_prompt(accept: Accept) -> Step {
        Step::Prompt {
            message: String::new(),
            prompt: "Verification code: ".into(),
            accept,
        }
    }

    fn done(verdict: Verdict) -> Step {
        Step::Done {
            verdict,
            message: String::new(),
        }
    }

    fn begin(app_password: bool, step: Step) -> Call {
        Call::Begin {
            user: "alice",
            ctx: ctx(app_password),
            reply: Ok(("s-1", step)),
        }
    }

    fn answer(answer: &'static [u8], reply: Step) -> Call {
        Call::Answer {
            session: "s-1",
            answer,
            reply: Ok(reply),
        }
    }

    fn app(conv: Vec<Conv>, calls: Vec<Call>, authtok: Option<&[u8]>) -> Ended {
        let mut io = ScriptedPrompter::new(conv);
        let daemon = FakeDaemon::new(calls);
        let authtok = authtok.map(|b| Reply::from_bytes(Some(b)));
        run_app_password(&mut io, &daemon, "alice", &ctx(false), authtok, true)
    }

    #[test]
    fn app_password_uses_pam_authtok_without_prompting() {
        let pw: &[u8] = b"abcde-fghjk-mnpqr-stuvw-xyz23-45678";
        let e = app(
            vec![],
            vec![
                begin(true, secret_prompt()),
                answer(
                    b"abcde-fghjk-mnpqr-stuvw-xyz23-45678",
                    done(Verdict::Success),
                ),
            ],
            Some(pw),
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Success));
        assert!(e.authtok.is_none(), "PAM_AUTHTOK was set already");
    }

    #[test]
    fn app_password_prompts_once_and_passes_the_typed_password_on() {
        let e = app(
            vec![Conv::Prompt("Password: ", Some(b"typed-secret".to_vec()))],
            vec![
                begin(true, secret_prompt()),
                answer(b"typed-secret", done(Verdict::NotEnrolled)),
            ],
            None,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::NotEnrolled));
        assert_eq!(e.authtok.unwrap().as_bytes(), b"typed-secret");
        // Without nullok: refused as a wrong password, with no message of its own.
        let mut io = ScriptedPrompter::new(vec![Conv::Prompt("Password: ", Some(b"pw".to_vec()))]);
        let daemon = FakeDaemon::new(vec![
            begin(true, secret_prompt()),
            answer(b"pw", done(Verdict::NotEnrolled)),
        ]);
        let e = run_app_password(&mut io, &daemon, "alice", &ctx(false), None, false);
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Denied));
        assert!(e.authtok.is_none());
        // Refused: nothing passed on.
        let e = app(
            vec![
                Conv::Prompt("Password: ", Some(b"wrong".to_vec())),
                Conv::Error("Wrong password."),
            ],
            vec![
                begin(true, secret_prompt()),
                answer(
                    b"wrong",
                    Step::Done {
                        verdict: Verdict::Denied,
                        message: "Wrong password.".into(),
                    },
                ),
            ],
            None,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Denied));
        assert!(e.authtok.is_none());
    }

    #[test]
    fn app_password_fails_closed_on_anything_but_one_secret_prompt() {
        // An older daemon that ignores the mode asks for a code: never answered.
        let e = app(
            vec![],
            vec![begin(true, code_prompt(Accept::Digits { n: 6 }))],
            Some(b"123456"),
        );
        assert!(matches!(
            e.outcome,
            Outcome::Daemon(DaemonError::Protocol(_))
        ));
        assert_eq!(
            pam_code(&e.outcome, &ModuleArgs::default()),
            PamResultCode::PAM_AUTH_ERR
        );
        // A second prompt after the password.
        let e = app(
            vec![],
            vec![
                begin(true, secret_prompt()),
                answer(b"pw-123456", secret_prompt()),
            ],
            Some(b"pw-123456"),
        );
        assert!(matches!(
            e.outcome,
            Outcome::Daemon(DaemonError::Protocol(_))
        ));
        // Locked before any password: none asked for, none sent.
        let e = app(vec![], vec![begin(true, done(Verdict::Locked))], Some(b"x"));
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Locked));
        // What cannot be an app password is not sent: a placeholder is, so that a user
        // without a second factor still gets the daemon's NotEnrolled (and, prompted, the
        // typed password goes on to the next module).
        let e = app(
            vec![],
            vec![
                begin(true, secret_prompt()),
                answer(b"-", done(Verdict::Denied)),
            ],
            Some(b"tab\there"),
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Denied));
        let umlaut = "p\u{e4}sswort".as_bytes().to_vec();
        let e = app(
            vec![Conv::Prompt("Password: ", Some(umlaut.clone()))],
            vec![
                begin(true, secret_prompt()),
                answer(b"-", done(Verdict::NotEnrolled)),
            ],
            None,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::NotEnrolled));
        assert_eq!(e.authtok.unwrap().as_bytes(), &umlaut[..]);
        let e = app(
            vec![],
            vec![
                begin(true, secret_prompt()),
                answer(b"-", done(Verdict::Denied)),
            ],
            Some(&[b'a'; 200]),
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Denied));
        // A daemon error keeps its meaning.
        let e = app(
            vec![],
            vec![Call::Begin {
                user: "alice",
                ctx: ctx(true),
                reply: Err(BeginError::Failed(DaemonError::Refused(ErrorName::Busy))),
            }],
            Some(b"x"),
        );
        assert_eq!(
            e.outcome,
            Outcome::Daemon(DaemonError::Refused(ErrorName::Busy))
        );
    }

    #[test]
    fn forward_pass_splits_off_the_code_or_a_recovery_code() {
        let six = Accept::Digits { n: 6 };
        let either = Accept::DigitsOrText { n: 6, max: 64 };
        assert_eq!(
            split(b"hunter2123456", six),
            Some((&b"hunter2"[..], &b"123456"[..]))
        );
        assert_eq!(
            split(b"pass word 8123456", six),
            Some((&b"pass word 8"[..], &b"123456"[..]))
        );
        assert_eq!(split(b"123456", six), None, "no password");
        assert_eq!(split(b"hunter2", six), None, "no code");
        assert_eq!(split(b"hunter12345x", six), None);
        assert_eq!(
            split(b"hunter2abcde-fghjk-23456", either),
            Some((&b"hunter2"[..], &b"abcde-fghjk-23456"[..]))
        );
        // Without recovery codes offered, a recovery-shaped tail is not a code.
        assert_eq!(split(b"hunter2abcde-fghjk-23456", six), None);
        // A six-digit tail is never read as a recovery code (its sixth-last byte is a dash).
        assert_eq!(
            split(b"abcde-fghjk-123456", either),
            Some((&b"abcde-fghjk-"[..], &b"123456"[..]))
        );
        assert_eq!(
            split(b"abcde-fghjk-23456", either),
            None,
            "a recovery code alone"
        );
        assert_eq!(
            split(b"pw12345678", Accept::Digits { n: 8 }),
            Some((&b"pw"[..], &b"12345678"[..]))
        );
    }

    fn fwd(conv: Vec<Conv>, calls: Vec<Call>, nullok: bool) -> Ended {
        let mut io = ScriptedPrompter::new(conv);
        // Every forward_pass Begin says so (mode=forward-pass): the daemon starts nothing.
        let calls = calls
            .into_iter()
            .map(|c| match c {
                Call::Begin { user, ctx, reply } => Call::Begin {
                    user,
                    ctx: LoginContext {
                        forward_pass: true,
                        ..ctx
                    },
                    reply,
                },
                other => other,
            })
            .collect();
        let daemon = FakeDaemon::new(calls);
        run_forward_pass(&mut io, &daemon, "alice", &ctx(false), nullok)
    }

    #[test]
    fn forward_pass_sends_only_the_code_and_passes_only_the_password_on() {
        let e = fwd(
            vec![Conv::Prompt(
                FORWARD_PROMPT,
                Some(b"s3cret pw654321".to_vec()),
            )],
            vec![
                begin(false, code_prompt(Accept::Digits { n: 6 })),
                answer(b"654321", done(Verdict::Success)),
            ],
            false,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Success));
        assert_eq!(e.authtok.unwrap().as_bytes(), b"s3cret pw");
        // A wrong code: refused, nothing passed on.
        let e = fwd(
            vec![
                Conv::Prompt(FORWARD_PROMPT, Some(b"s3cret pw000000".to_vec())),
                Conv::Error("Wrong verification code."),
            ],
            vec![
                begin(false, code_prompt(Accept::Digits { n: 6 })),
                answer(
                    b"000000",
                    Step::Done {
                        verdict: Verdict::Denied,
                        message: "Wrong verification code.".into(),
                    },
                ),
            ],
            false,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Denied));
        assert!(e.authtok.is_none());
        // A recovery code after the password.
        let e = fwd(
            vec![Conv::Prompt(
                FORWARD_PROMPT_RECOVERY,
                Some(b"pwabcde-fghjk-23456".to_vec()),
            )],
            vec![
                begin(false, code_prompt(Accept::DigitsOrText { n: 6, max: 64 })),
                answer(b"abcde-fghjk-23456", done(Verdict::Success)),
            ],
            false,
        );
        assert_eq!(e.authtok.unwrap().as_bytes(), b"pw");
        // No code at the end: nothing is sent.
        let e = fwd(
            vec![Conv::Prompt(
                FORWARD_PROMPT,
                Some(b"only-a-password".to_vec()),
            )],
            vec![begin(false, code_prompt(Accept::Digits { n: 6 }))],
            false,
        );
        assert_eq!(e.outcome, Outcome::BadAnswer(BadAnswer::Shape));
        assert!(e.authtok.is_none());
    }

    #[test]
    fn forward_pass_asks_the_password_alone_when_no_code_is_asked() {
        let e = fwd(
            vec![Conv::Prompt(PASSWORD_PROMPT, Some(b"pw".to_vec()))],
            vec![begin(false, done(Verdict::NotEnrolled))],
            true,
        );
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::NotEnrolled));
        assert_eq!(e.authtok.unwrap().as_bytes(), b"pw");
        // Without nullok, or locked: no prompt, nothing passed on.
        let e = fwd(
            vec![],
            vec![begin(false, done(Verdict::NotEnrolled))],
            false,
        );
        assert!(e.authtok.is_none());
        let e = fwd(vec![], vec![begin(false, done(Verdict::Locked))], true);
        assert_eq!(e.outcome, Outcome::Verdict(Verdict::Locked));
        assert!(e.authtok.is_none());
    }

    #[test]
    fn typed_passwords_are_capped_and_never_printed() {
        assert!(matches!(
            Typed::from_bytes(Some(&[b'a'; MAX_PASSWORD_LEN + 1])),
            Typed::TooLong
        ));
        assert!(matches!(Typed::from_bytes(Some(b"")), Typed::Empty));
        let Typed::Given(p) = Typed::from_bytes(Some(b"hunter2")) else {
            panic!()
        };
        assert_eq!(format!("{p:?}"), "Password([redacted])");
    }
}
