// SPDX-License-Identifier: MIT OR Apache-2.0
//! The login conversation: the daemon drives, the module renders.
//!
//! Everything here is plain Rust over two traits, [`Prompter`] (the PAM conversation) and
//! [`Daemon`] (twostepd on the bus), so every decision is unit-tested without PAM or a bus.
//! The one place an [`Outcome`] becomes a PAM code is [`pam_code`].

use std::fmt;

use pam::constants::PamResultCode;
use twostep_proto::{error_name, limits, Accept, Step, Verdict};
use zeroize::Zeroizing;

use crate::args::{FailMode, ModuleArgs};

/// Most prompts one login may show: a daemon that keeps prompting is refused.
pub const MAX_STEPS: usize = 16;

/// What the module tells the user when it refuses an answer without sending it.
pub const MSG_NOT_A_CODE: &str = "twostep: that is not a valid code";
/// What the module tells the user who entered nothing (or whose client cannot prompt).
/// Why not only "run `twostepctl enroll`": for a required user who has no other way in
/// that is circular (issue 20, item 4); where 2FA is required, the next login shows the key
/// again.
pub const MSG_NO_CODE: &str = "twostep: no code entered; login refused. No authenticator \
     app set up yet? Where it is required, log in again and set it up with the key shown; or \
     run `twostepctl enroll` in a session you already have, or ask an administrator.";
/// What the module tells the user when the daemon cannot be reached (fail closed).
pub const MSG_UNREACHABLE: &str =
    "twostep: the second-factor service is not reachable; login refused";
/// What the module tells a user without a second factor when `nullok` is not set.
pub const MSG_NOT_ENROLLED: &str =
    "twostep: this account has no second factor; run `twostepctl enroll` to set one up";
/// The daemon is up but cannot answer for this user now.
pub const MSG_UNAVAILABLE: &str =
    "twostep: the second-factor service cannot check this account now; login refused";
/// The daemon is up but has too much to do.
pub const MSG_BUSY: &str = "twostep: the second-factor service is busy; try again shortly";
/// The daemon said something this module does not understand.
pub const MSG_PROTOCOL: &str =
    "twostep: the second-factor service gave an answer this module does not understand; login refused";

/// The user's answer to a prompt: at most [`limits::MAX_ANSWER_LEN`] bytes, never empty,
/// wiped on drop, never turned into a `String`, never printed.
pub struct Answer(Zeroizing<Vec<u8>>);

impl Answer {
    /// An empty answer: what an acknowledgement sends, whatever was typed.
    pub fn empty() -> Answer {
        Answer(Zeroizing::new(Vec::new()))
    }

    /// At a code prompt, the answer as the code it is typed as: digits with spaces or
    /// dashes (`123 456`) become the digits (`twostep_proto::is_typed_code`, the rule the
    /// daemon and the CLI apply too); anything else, and every other prompt, as typed.
    pub fn as_code(self, accept: Accept) -> Answer {
        let code_prompt = matches!(accept, Accept::Digits { .. } | Accept::DigitsOrText { .. });
        if code_prompt && twostep_proto::is_typed_code(&self.0) {
            Answer(Zeroizing::new(
                twostep_proto::code_digits(&self.0).collect(),
            ))
        } else {
            self
        }
    }

    /// The raw bytes, for the shape check and the bus.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Answer([redacted])")
    }
}

/// What came back from a prompt.
#[derive(Debug)]
pub enum Reply {
    /// A non-empty answer within the length cap.
    Answer(Answer),
    /// No answer (NULL) or an empty one.
    Empty,
    /// Longer than [`limits::MAX_ANSWER_LEN`]: not copied, not looked at.
    TooLong,
}

impl Reply {
    /// Caps the length before anything else looks at (or copies) the bytes.
    pub fn from_bytes(bytes: Option<&[u8]>) -> Reply {
        match bytes {
            Some(b) if b.len() > limits::MAX_ANSWER_LEN => Reply::TooLong,
            None | Some([]) => Reply::Empty,
            Some(b) => Reply::Answer(Answer(Zeroizing::new(b.to_vec()))),
        }
    }
}

/// The conversation function failed (the application hung up, or refused the message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvError;

/// The user's side: the PAM conversation.
pub trait Prompter {
    /// Shows `text` (any text to show, then the prompt) in ONE `PAM_PROMPT_ECHO_OFF`
    /// conversation call and returns the reply.
    ///
    /// # Errors
    /// [`ConvError`] when the conversation itself fails.
    fn prompt_echo_off(&mut self, text: &str) -> Result<Reply, ConvError>;
    /// As [`Prompter::prompt_echo_off`] with `PAM_PROMPT_ECHO_ON`: for answers the user may
    /// see as typed (an email address, a choice between methods).
    ///
    /// # Errors
    /// [`ConvError`] when the conversation itself fails.
    fn prompt_echo_on(&mut self, text: &str) -> Result<Reply, ConvError>;
    /// Shows `text` in ONE `PAM_PROMPT_ECHO_ON` call and waits for Enter; the reply's
    /// content is discarded.
    ///
    /// # Errors
    /// [`ConvError`] when the conversation itself fails.
    fn acknowledge(&mut self, text: &str) -> Result<(), ConvError>;
    /// As [`Prompter::prompt_echo_off`], for a password that is not sent to the daemon
    /// (`forward_pass`): capped at [`crate::modes::MAX_PASSWORD_LEN`] bytes instead of
    /// [`limits::MAX_ANSWER_LEN`]. The default goes through `prompt_echo_off` (and its cap).
    ///
    /// # Errors
    /// [`ConvError`] when the conversation itself fails.
    fn prompt_password(&mut self, text: &str) -> Result<crate::modes::Typed, ConvError> {
        Ok(match self.prompt_echo_off(text)? {
            Reply::Answer(a) => crate::modes::Typed::from_bytes(Some(a.as_bytes())),
            Reply::Empty => crate::modes::Typed::Empty,
            Reply::TooLong => crate::modes::Typed::TooLong,
        })
    }
    /// Shows `text` as `PAM_TEXT_INFO`; best effort.
    fn info(&mut self, text: &str);
    /// Shows `text` as `PAM_ERROR_MSG`; best effort.
    fn error(&mut self, text: &str);
}

/// A login session token from the daemon: bounded, and never printed (it is a capability
/// for this conversation).
pub struct Session(String);

impl Session {
    /// Accepts a token of 1..=[`limits::MAX_SESSION_LEN`] bytes.
    pub fn new(token: String) -> Option<Session> {
        (!token.is_empty() && token.len() <= limits::MAX_SESSION_LEN).then_some(Session(token))
    }

    /// The token `Begin` returned with its first step: empty exactly when that step is
    /// final (nothing will be answered), 1..=MAX_SESSION_LEN bytes otherwise.
    pub fn for_first_step(token: String, first: &Step) -> Option<Session> {
        match first {
            Step::Done { .. } if token.is_empty() => Some(Session(token)),
            Step::Done { .. } => None,
            Step::Prompt { .. } => Session::new(token),
        }
    }

    /// The token as sent back to the daemon.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session([redacted])")
    }
}

/// The PAM items sent with `Begin`; absent items are omitted.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub struct LoginContext {
    pub service: Option<String>,
    pub rhost: Option<String>,
    pub tty: Option<String>,
    /// `app_password` mode: Begin asks the daemon for an app-password check
    /// (`mode=app-password`), not for a second factor.
    pub app_password: bool,
    /// `forward_pass` mode: Begin says so (`mode=forward-pass`), so the daemon starts
    /// nothing for a password not yet checked.
    pub forward_pass: bool,
}

impl LoginContext {
    /// The `a{ss}` entries, keyed by `twostep_proto::login::CTX_*`.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        use twostep_proto::login::{
            CTX_MODE, CTX_RHOST, CTX_SERVICE, CTX_TTY, MODE_APP_PASSWORD, MODE_FORWARD_PASS,
        };
        let mode = match (self.app_password, self.forward_pass) {
            (true, _) => Some(MODE_APP_PASSWORD),
            (false, true) => Some(MODE_FORWARD_PASS),
            (false, false) => None,
        };
        [
            (CTX_SERVICE, self.service.as_deref()),
            (CTX_RHOST, self.rhost.as_deref()),
            (CTX_TTY, self.tty.as_deref()),
            (CTX_MODE, mode),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

/// Error replies the daemon sends, by name (`twostep_proto::error_name`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ErrorName {
    AccessDenied,
    UnknownUser,
    InvalidArgument,
    Unavailable,
    NoSession,
    Busy,
    NotEnrolled,
    NoPendingEnrollment,
    WrongCode,
    Locked,
}

impl ErrorName {
    const ALL: [(ErrorName, &'static str); 10] = [
        (ErrorName::AccessDenied, error_name::ACCESS_DENIED),
        (ErrorName::UnknownUser, error_name::UNKNOWN_USER),
        (ErrorName::InvalidArgument, error_name::INVALID_ARGUMENT),
        (ErrorName::Unavailable, error_name::UNAVAILABLE),
        (ErrorName::NoSession, error_name::NO_SESSION),
        (ErrorName::Busy, error_name::BUSY),
        (ErrorName::NotEnrolled, error_name::NOT_ENROLLED),
        (
            ErrorName::NoPendingEnrollment,
            error_name::NO_PENDING_ENROLLMENT,
        ),
        (ErrorName::WrongCode, error_name::WRONG_CODE),
        (ErrorName::Locked, error_name::LOCKED),
    ];

    /// The variant for a D-Bus error name, if it is one of ours.
    pub fn from_dbus(name: &str) -> Option<ErrorName> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(variant, _)| *variant)
    }

    /// The D-Bus error name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(variant, _)| *variant == self)
            .map_or("?", |(_, n)| n)
    }
}

/// Why the daemon is positively not there. These are the only conditions `failmode=open`
/// may let a login through on, and each is established before any login call was sent:
/// [`Daemon::begin`] alone can report one ([`BeginError::Absent`]), [`Daemon::answer`]
/// cannot.
///
/// Everything else that keeps the daemon from answering (a timeout, a resource error such
/// as `EMFILE`, `ENOMEM` or `EAGAIN`, a connection lost or refused in any other way, any
/// error after the first login call, any error name not sent by the bus driver) is a
/// [`DaemonError`], and fails closed whatever the service's `failmode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Absence {
    /// `connect()` to the bus socket failed with `ENOENT`: no socket at the `bus=` path.
    NoSocket,
    /// `connect()` to the bus socket failed with `ECONNREFUSED`: nobody listens on it.
    ConnectionRefused,
    /// The bus driver itself (sender `org.freedesktop.DBus`) answered `GetNameOwner` with
    /// `NameHasNoOwner`, also after asking it to start the daemon.
    NoOwner,
}

impl Absence {
    /// Every variant, for exhaustive tests.
    pub const ALL: [Absence; 3] = [
        Absence::NoSocket,
        Absence::ConnectionRefused,
        Absence::NoOwner,
    ];

    /// One log-safe phrase.
    pub fn describe(self) -> &'static str {
        match self {
            Absence::NoSocket => "no socket at the bus address (ENOENT)",
            Absence::ConnectionRefused => "the bus socket refused the connection (ECONNREFUSED)",
            Absence::NoOwner => "the bus says the daemon's name has no owner",
        }
    }
}

/// Why `Begin` started no conversation.
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
pub enum BeginError {
    /// The daemon is positively not there: `failmode` applies.
    Absent(Absence),
    /// Anything else: fails closed.
    Failed(DaemonError),
}

impl From<DaemonError> for BeginError {
    fn from(e: DaemonError) -> BeginError {
        BeginError::Failed(e)
    }
}

/// Why talking to the daemon failed, as the module sees it. No variant is ever a reason to
/// fail open: only an [`Absence`] is.
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
pub enum DaemonError {
    /// The daemon (or the bus) is there but gave no usable answer: no reply within
    /// `timeout=`, a lost or refused connection other than an [`Absence`], a resource
    /// error, a transport error name (`…DBus.Error.NoReply`, `.Timeout`, …) from the name's
    /// owner, an error from the bus driver about a login call.
    Unanswered(String),
    /// The daemon's name is owned by another uid than `bus_uid`: never trusted.
    WrongOwner { uid: u32 },
    /// The daemon answered with one of its named errors.
    Refused(ErrorName),
    /// A reply this module does not understand (unknown step or error, wrong signature).
    Protocol(String),
}

/// Why the module refused an answer without sending it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum BadAnswer {
    Empty,
    TooLong,
    /// Not what the prompt accepts (e.g. not exactly N ASCII digits).
    Shape,
}

/// How a login conversation ended. Exactly one [`pam_code`] per value.
#[must_use]
#[cfg_attr(test, derive(Debug, PartialEq, Eq))]
pub enum Outcome {
    /// The daemon's verdict.
    Verdict(Verdict),
    /// The module refused the answer itself; nothing was sent.
    BadAnswer(BadAnswer),
    /// The daemon is positively not there ([`Absence`]): the one outcome `failmode`
    /// applies to.
    Absent(Absence),
    /// The daemon could not be asked, or refused the request.
    Daemon(DaemonError),
    /// The PAM conversation failed.
    Conversation,
    /// The daemon kept prompting past [`MAX_STEPS`].
    TooManySteps,
}

impl Outcome {
    /// One log-safe phrase: never an answer or a session token.
    pub fn describe(&self) -> String {
        match self {
            Outcome::Verdict(Verdict::Success) => "success".into(),
            Outcome::Verdict(Verdict::Denied) => "denied".into(),
            Outcome::Verdict(Verdict::Locked) => "locked".into(),
            Outcome::Verdict(Verdict::NotEnrolled) => "not enrolled".into(),
            Outcome::BadAnswer(BadAnswer::Empty) => "refused: empty answer".into(),
            Outcome::BadAnswer(BadAnswer::TooLong) => "refused: over-long answer".into(),
            Outcome::BadAnswer(BadAnswer::Shape) => {
                "refused: answer does not have the shape the prompt accepts".into()
            }
            Outcome::Absent(why) => format!("daemon unreachable (absent): {}", why.describe()),
            Outcome::Daemon(DaemonError::Unanswered(why)) => {
                format!("daemon unreachable (no usable answer): {why}")
            }
            Outcome::Daemon(DaemonError::WrongOwner { uid }) => format!(
                "daemon name {} is owned by uid {uid}, not the expected uid; not trusted",
                twostep_proto::BUS_NAME
            ),
            Outcome::Daemon(DaemonError::Refused(name)) => {
                format!("daemon error {}", name.as_str())
            }
            Outcome::Daemon(DaemonError::Protocol(why)) => format!("protocol error: {why}"),
            Outcome::Conversation => "conversation failed".into(),
            Outcome::TooManySteps => format!("daemon sent more than {MAX_STEPS} prompts"),
        }
    }
}

/// The daemon's side: `org.twostep.Login2` (or `Login1` on a daemon older than that; the
/// steps are the same [`Step`]s either way).
pub trait Daemon {
    /// `Begin(user, context)`: the session token and the first step.
    ///
    /// # Errors
    /// [`BeginError::Absent`] only when the daemon is positively not there and no login
    /// call was sent; [`BeginError::Failed`] when it cannot be asked or refuses.
    fn begin(&self, user: &str, ctx: &LoginContext) -> Result<(Session, Step), BeginError>;

    /// `Answer(session, answer)`: the next step. A login call was sent already, so no
    /// failure here can be an [`Absence`].
    ///
    /// # Errors
    /// [`DaemonError`] when the daemon cannot be reached or refuses.
    fn answer(&self, session: &Session, answer: &Answer) -> Result<Step, DaemonError>;
}

/// Runs one login conversation, shows the module's own closing message if there is one,
/// and returns how it ended. Map the result with [`pam_code`].
pub fn run_login(
    io: &mut impl Prompter,
    daemon: &impl Daemon,
    user: &str,
    ctx: &LoginContext,
    args: &ModuleArgs,
) -> Outcome {
    let outcome = converse(io, daemon, user, ctx);
    if let Some(text) = notice(&outcome, args) {
        io.error(text);
    }
    outcome
}

fn converse(
    io: &mut impl Prompter,
    daemon: &impl Daemon,
    user: &str,
    ctx: &LoginContext,
) -> Outcome {
    let (session, step) = match daemon.begin(user, ctx) {
        Ok(begun) => begun,
        Err(BeginError::Absent(why)) => return Outcome::Absent(why),
        Err(BeginError::Failed(e)) => return Outcome::Daemon(e),
    };
    drive(io, daemon, &session, step, 0)
}

/// Renders `step` and the ones after it until a verdict; `prompts`: prompts shown already.
pub(crate) fn drive(
    io: &mut impl Prompter,
    daemon: &impl Daemon,
    session: &Session,
    mut step: Step,
    mut prompts: usize,
) -> Outcome {
    loop {
        match &step {
            Step::Done { verdict, message } => {
                if !message.is_empty() {
                    match verdict {
                        Verdict::Success => io.info(message),
                        Verdict::Denied | Verdict::Locked | Verdict::NotEnrolled => {
                            io.error(message);
                        }
                    }
                }
                return Outcome::Verdict(*verdict);
            }
            Step::Prompt {
                message,
                prompt,
                accept,
            } => {
                if prompts == MAX_STEPS {
                    return Outcome::TooManySteps;
                }
                prompts += 1;
                // Why one call: OpenSSH shows PAM_TEXT_INFO only when the next prompt
                // arrives, so text always travels with the prompt that follows it.
                // Wiped on drop: the message may show a secret once (a key, recovery codes).
                let text = Zeroizing::new(if message.is_empty() {
                    prompt.clone()
                } else {
                    format!("{message}\n{prompt}")
                });
                let accept = *accept;
                if accept == Accept::Acknowledge {
                    // Nothing typed is kept or sent: the daemon only learns "Enter was pressed".
                    if io.acknowledge(&text).is_err() {
                        return Outcome::Conversation;
                    }
                    step = match daemon.answer(session, &Answer::empty()) {
                        Ok(next) => next,
                        Err(e) => return Outcome::Daemon(e),
                    };
                    continue;
                }
                // No bus work happens while the user types: the connection just sits idle.
                // The echo follows the shape: off for codes and secrets.
                let reply = if accept.echo() {
                    io.prompt_echo_on(&text)
                } else {
                    io.prompt_echo_off(&text)
                };
                let answer = match reply {
                    Err(ConvError) => return Outcome::Conversation,
                    Ok(Reply::Empty) => return Outcome::BadAnswer(BadAnswer::Empty),
                    Ok(Reply::TooLong) => return Outcome::BadAnswer(BadAnswer::TooLong),
                    Ok(Reply::Answer(answer)) => answer.as_code(accept),
                };
                if !accept.admits(answer.as_bytes()) {
                    return Outcome::BadAnswer(BadAnswer::Shape);
                }
                step = match daemon.answer(session, &answer) {
                    Ok(next) => next,
                    Err(e) => return Outcome::Daemon(e),
                };
            }
        }
    }
}

/// The module's own message for an outcome, shown as `PAM_ERROR_MSG` after the conversation.
pub fn notice(outcome: &Outcome, args: &ModuleArgs) -> Option<&'static str> {
    match outcome {
        Outcome::Verdict(Verdict::NotEnrolled) if !args.nullok => Some(MSG_NOT_ENROLLED),
        Outcome::Verdict(_) => None,
        Outcome::BadAnswer(BadAnswer::Empty) => Some(MSG_NO_CODE),
        Outcome::BadAnswer(_) => Some(MSG_NOT_A_CODE),
        Outcome::Absent(_) if fails_open(outcome, args) => None,
        Outcome::Absent(_) => Some(MSG_UNREACHABLE),
        Outcome::Daemon(DaemonError::Unanswered(_) | DaemonError::WrongOwner { .. }) => {
            Some(MSG_UNREACHABLE)
        }
        Outcome::Daemon(DaemonError::Refused(name)) => match name {
            ErrorName::Unavailable => Some(MSG_UNAVAILABLE),
            ErrorName::Busy => Some(MSG_BUSY),
            ErrorName::NotEnrolled => Some(MSG_NOT_ENROLLED),
            ErrorName::AccessDenied
            | ErrorName::UnknownUser
            | ErrorName::InvalidArgument
            | ErrorName::NoSession
            | ErrorName::NoPendingEnrollment
            | ErrorName::WrongCode
            | ErrorName::Locked => None,
        },
        Outcome::Daemon(DaemonError::Protocol(_)) | Outcome::TooManySteps => Some(MSG_PROTOCOL),
        Outcome::Conversation => None,
    }
}

/// Whether `failmode=open` lets this login on without its second factor: only for an
/// [`Outcome::Absent`] (the daemon positively not there, before any login call). The host
/// logs every such login at alert level.
pub fn fails_open(outcome: &Outcome, args: &ModuleArgs) -> bool {
    matches!(outcome, Outcome::Absent(_)) && args.failmode == FailMode::Open
}

/// The one mapping from an outcome to a PAM code.
pub fn pam_code(outcome: &Outcome, args: &ModuleArgs) -> PamResultCode {
    use PamResultCode::{
        PAM_AUTHINFO_UNAVAIL, PAM_AUTH_ERR, PAM_CONV_ERR, PAM_IGNORE, PAM_MAXTRIES, PAM_SUCCESS,
        PAM_USER_UNKNOWN,
    };
    match outcome {
        Outcome::Verdict(Verdict::Success) => PAM_SUCCESS,
        Outcome::Verdict(Verdict::Denied) => PAM_AUTH_ERR,
        Outcome::Verdict(Verdict::Locked) => PAM_MAXTRIES,
        Outcome::Verdict(Verdict::NotEnrolled) => {
            if args.nullok {
                PAM_IGNORE
            } else {
                PAM_AUTH_ERR
            }
        }
        Outcome::BadAnswer(_) => PAM_AUTH_ERR,
        // The one place failmode applies: a daemon positively not there.
        Outcome::Absent(_) if fails_open(outcome, args) => PAM_SUCCESS,
        Outcome::Absent(_) => PAM_AUTHINFO_UNAVAIL,
        // A daemon that is there but does not answer, or an impostor: never a reason to
        // fail open.
        Outcome::Daemon(DaemonError::Unanswered(_) | DaemonError::WrongOwner { .. }) => {
            PAM_AUTHINFO_UNAVAIL
        }
        Outcome::Daemon(DaemonError::Refused(name)) => match name {
            // The daemon is up and fails closed for this user: failmode does not apply.
            ErrorName::Unavailable | ErrorName::Busy => PAM_AUTHINFO_UNAVAIL,
            ErrorName::UnknownUser => PAM_USER_UNKNOWN,
            ErrorName::Locked => PAM_MAXTRIES,
            // Only the not-enrolled *verdict* says "and none is required"; the error does
            // not, so nullok does not apply to it.
            ErrorName::NotEnrolled
            | ErrorName::AccessDenied
            | ErrorName::InvalidArgument
            | ErrorName::NoSession
            | ErrorName::NoPendingEnrollment
            | ErrorName::WrongCode => PAM_AUTH_ERR,
        },
        Outcome::Daemon(DaemonError::Protocol(_)) | Outcome::TooManySteps => PAM_AUTH_ERR,
        Outcome::Conversation => PAM_CONV_ERR,
    }
}

/// A short description of a step for `debug` lines (kinds and sizes, no text).
pub fn describe_step(step: &Step) -> String {
    match step {
        Step::Prompt {
            message, accept, ..
        } => format!("prompt ({accept:?}, {} bytes of text)", message.len()),
        Step::Done { verdict, message } => {
            format!("done ({verdict:?}, {} bytes of text)", message.len())
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use twostep_proto::Accept;

    // ----- scripted test doubles (kanidm's TestHandler pattern) -----

    /// One expected conversation call and what it returns.
    pub(crate) enum Conv {
        /// Expect a PAM_PROMPT_ECHO_OFF call with exactly this text; reply with these bytes
        /// (None = NULL answer).
        Prompt(&'static str, Option<Vec<u8>>),
        /// Expect a PAM_PROMPT_ECHO_ON call with exactly this text; reply with these bytes.
        PromptEchoOn(&'static str, Option<Vec<u8>>),
        /// Expect a prompt and make the conversation fail.
        PromptFails(&'static str),
        /// Expect a PAM_PROMPT_ECHO_ON acknowledgement with exactly this text.
        Ack(&'static str),
        Info(&'static str),
        Error(&'static str),
    }

    pub(crate) struct ScriptedPrompter {
        script: VecDeque<Conv>,
    }

    impl ScriptedPrompter {
        pub(crate) fn new(script: Vec<Conv>) -> Self {
            ScriptedPrompter {
                script: script.into(),
            }
        }
        fn next(&mut self, what: &str) -> Conv {
            self.script
                .pop_front()
                .unwrap_or_else(|| panic!("unscripted conversation call: {what}"))
        }
    }

    impl Prompter for ScriptedPrompter {
        fn prompt_echo_off(&mut self, text: &str) -> Result<Reply, ConvError> {
            match self.next(&format!("prompt {text:?}")) {
                Conv::Prompt(want, reply) => {
                    assert_eq!(text, want, "prompt text");
                    Ok(Reply::from_bytes(reply.as_deref()))
                }
                Conv::PromptFails(want) => {
                    assert_eq!(text, want, "prompt text");
                    Err(ConvError)
                }
                Conv::PromptEchoOn(want, _) => {
                    panic!("expected an echo-on prompt {want:?}, got echo off {text:?}")
                }
                Conv::Ack(want) => panic!("expected ack {want:?}, got prompt {text:?}"),
                Conv::Info(want) => panic!("expected info {want:?}, got prompt {text:?}"),
                Conv::Error(want) => panic!("expected error {want:?}, got prompt {text:?}"),
            }
        }
        fn prompt_echo_on(&mut self, text: &str) -> Result<Reply, ConvError> {
            match self.next(&format!("echo-on prompt {text:?}")) {
                Conv::PromptEchoOn(want, reply) => {
                    assert_eq!(text, want, "prompt text");
                    Ok(Reply::from_bytes(reply.as_deref()))
                }
                _ => panic!("unexpected echo-on prompt {text:?}"),
            }
        }
        fn acknowledge(&mut self, text: &str) -> Result<(), ConvError> {
            match self.next(&format!("ack {text:?}")) {
                Conv::Ack(want) => {
                    assert_eq!(text, want, "ack text");
                    Ok(())
                }
                _ => panic!("unexpected acknowledgement {text:?}"),
            }
        }
        fn info(&mut self, text: &str) {
            match self.next(&format!("info {text:?}")) {
                Conv::Info(want) => assert_eq!(text, want, "info text"),
                _ => panic!("unexpected info {text:?}"),
            }
        }
        fn error(&mut self, text: &str) {
            match self.next(&format!("error {text:?}")) {
                Conv::Error(want) => assert_eq!(text, want, "error text"),
                _ => panic!("unexpected error message {text:?}"),
            }
        }
    }

    impl Drop for ScriptedPrompter {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                assert!(
                    self.script.is_empty(),
                    "{} scripted conversation calls never happened",
                    self.script.len()
                );
            }
        }
    }

    /// One expected daemon call and what it returns.
    pub(crate) enum Call {
        Begin {
            user: &'static str,
            ctx: LoginContext,
            reply: Result<(&'static str, Step), BeginError>,
        },
        Answer {
            session: &'static str,
            answer: &'static [u8],
            reply: Result<Step, DaemonError>,
        },
    }

    pub(crate) struct FakeDaemon {
        script: RefCell<VecDeque<Call>>,
    }

    impl FakeDaemon {
        pub(crate) fn new(script: Vec<Call>) -> Self {
            FakeDaemon {
                script: RefCell::new(script.into()),
            }
        }
        fn next(&self, what: &str) -> Call {
            self.script
                .borrow_mut()
                .pop_front()
                .unwrap_or_else(|| panic!("unscripted daemon call: {what}"))
        }
    }

    impl Daemon for FakeDaemon {
        fn begin(&self, user: &str, ctx: &LoginContext) -> Result<(Session, Step), BeginError> {
            match self.next(&format!("Begin({user})")) {
                Call::Begin {
                    user: want_user,
                    ctx: want_ctx,
                    reply,
                } => {
                    assert_eq!(user, want_user);
                    assert_eq!(ctx, &want_ctx);
                    reply.map(|(s, step)| (Session::new(s.into()).unwrap(), step))
                }
                Call::Answer { .. } => panic!("expected Answer, got Begin"),
            }
        }
        fn answer(&self, session: &Session, answer: &Answer) -> Result<Step, DaemonError> {
            match self.next("Answer") {
                Call::Answer {
                    session: want_session,
                    answer: want_answer,
                    reply,
                } => {
                    assert_eq!(session.as_str(), want_session);
                    assert_eq!(answer.as_bytes(), want_answer);
                    reply
                }
                Call::Begin { .. } => panic!("expected Begin, got Answer"),
            }
        }
    }

    impl Drop for FakeDaemon {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                let left = self.script.borrow().len();
                assert!(left == 0, "{left} scripted daemon calls never happened");
            }
        }
    }

    // ----- helpers -----

    fn ctx() -> LoginContext {
        LoginContext {
            service: Some("sshd".into()),
            rhost: Some("192.0.2.7".into()),
            tty: Some("ssh".into()),
            app_password: false,
            forward_pass: false,
        }
    }

    fn code_prompt(message: &str) -> Step {
        Step::Prompt {
            message: message.into(),
            prompt: "Verification code: ".into(),
            accept: Accept::Digits { n: 6 },
        }
    }

    fn done(verdict: Verdict, message: &str) -> Step {
        Step::Done {
            verdict,
            message: message.into(),
        }
    }

    fn begin(reply: Result<(&'static str, Step), BeginError>) -> Call {
        Call::Begin {
            user: "alice",
            ctx: ctx(),
            reply,
        }
    }

    fn answer(answer: &'static [u8], reply: Result<Step, DaemonError>) -> Call {
        Call::Answer {
            session: "s-1",
            answer,
            reply,
        }
    }

    fn args() -> ModuleArgs {
        ModuleArgs::default()
    }

    fn run(conv: Vec<Conv>, calls: Vec<Call>, args: &ModuleArgs) -> Outcome {
        let mut io = ScriptedPrompter::new(conv);
        let daemon = FakeDaemon::new(calls);
        run_login(&mut io, &daemon, "alice", &ctx(), args)
    }

    fn bytes(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    // ----- one test per step kind and per verdict -----

    #[test]
    fn session_token_is_empty_exactly_when_the_first_step_is_final() {
        let final_step = done(Verdict::NotEnrolled, "");
        assert!(Session::for_first_step(String::new(), &final_step).is_some());
        assert!(Session::for_first_step("x".into(), &final_step).is_none());
        assert!(Session::for_first_step(String::new(), &code_prompt("")).is_none());
        assert!(Session::for_first_step("s-1".into(), &code_prompt("")).is_some());
        let long = "x".repeat(limits::MAX_SESSION_LEN + 1);
        assert!(Session::for_first_step(long, &code_prompt("")).is_none());
    }

    #[test]
    fn code_prompt_then_success() {
        let outcome = run(
            vec![
                Conv::Prompt("Verification code: ", bytes("123456")),
                Conv::Info("Welcome back."),
            ],
            vec![
                begin(Ok(("s-1", code_prompt("")))),
                answer(b"123456", Ok(done(Verdict::Success, "Welcome back."))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_SUCCESS);
    }

    #[test]
    fn acknowledgement_shows_its_text_and_sends_nothing_typed() {
        let ack = Step::Prompt {
            message: "Recovery codes:\n  abc-defgh-jkmnp".into(),
            prompt: "Press Enter: ".into(),
            accept: Accept::Acknowledge,
        };
        let outcome = run(
            vec![
                Conv::Prompt("Code from your app: ", bytes("123456")),
                Conv::Ack("Recovery codes:\n  abc-defgh-jkmnp\nPress Enter: "),
            ],
            vec![
                begin(Ok((
                    "s-1",
                    Step::Prompt {
                        message: String::new(),
                        prompt: "Code from your app: ".into(),
                        accept: Accept::Digits { n: 6 },
                    },
                ))),
                answer(b"123456", Ok(ack)),
                answer(b"", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn text_travels_in_the_same_call_as_its_prompt() {
        let outcome = run(
            vec![Conv::Prompt(
                "Scan this QR code.\nVerification code: ",
                bytes("654321"),
            )],
            vec![
                begin(Ok(("s-1", code_prompt("Scan this QR code.")))),
                answer(b"654321", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn code_or_recovery_prompt_admits_a_recovery_code() {
        let step = Step::Prompt {
            message: String::new(),
            prompt: "Code or recovery code: ".into(),
            accept: Accept::DigitsOrText { n: 8, max: 64 },
        };
        let outcome = run(
            vec![Conv::Prompt(
                "Code or recovery code: ",
                bytes("abcd-2345-wxyz"),
            )],
            vec![
                begin(Ok(("s-1", step))),
                answer(b"abcd-2345-wxyz", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn several_prompts_in_a_row() {
        let outcome = run(
            vec![
                Conv::Prompt("Verification code: ", bytes("111111")),
                Conv::Prompt(
                    "Wrong code, try again.\nVerification code: ",
                    bytes("222222"),
                ),
            ],
            vec![
                begin(Ok(("s-1", code_prompt("")))),
                answer(b"111111", Ok(code_prompt("Wrong code, try again."))),
                answer(b"222222", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn denied_shows_the_daemon_message_as_an_error() {
        let outcome = run(
            vec![
                Conv::Prompt("Verification code: ", bytes("000000")),
                Conv::Error("Wrong code."),
            ],
            vec![
                begin(Ok(("s-1", code_prompt("")))),
                answer(b"000000", Ok(done(Verdict::Denied, "Wrong code."))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Denied));
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn locked_before_any_prompt() {
        let outcome = run(
            vec![Conv::Error("Too many failures; try again in 5 minutes.")],
            vec![begin(Ok((
                "s-1",
                done(
                    Verdict::Locked,
                    "Too many failures; try again in 5 minutes.",
                ),
            )))],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Locked));
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_MAXTRIES);
    }

    #[test]
    fn not_enrolled_with_nullok_is_ignored_quietly() {
        let nullok = ModuleArgs {
            nullok: true,
            ..args()
        };
        let outcome = run(
            vec![],
            vec![begin(Ok(("s-1", done(Verdict::NotEnrolled, ""))))],
            &nullok,
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::NotEnrolled));
        assert_eq!(pam_code(&outcome, &nullok), PamResultCode::PAM_IGNORE);
    }

    #[test]
    fn not_enrolled_without_nullok_tells_the_user_to_enrol() {
        let outcome = run(
            vec![Conv::Error(MSG_NOT_ENROLLED)],
            vec![begin(Ok(("s-1", done(Verdict::NotEnrolled, ""))))],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::NotEnrolled));
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_AUTH_ERR);
        assert!(MSG_NOT_ENROLLED.contains("twostepctl enroll"));
    }

    #[test]
    fn success_without_a_prompt_shows_nothing() {
        let outcome = run(
            vec![],
            vec![begin(Ok(("s-1", done(Verdict::Success, ""))))],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    // ----- answers the module refuses without sending -----

    fn refused(reply: Option<Vec<u8>>, why: BadAnswer) {
        let notice = if why == BadAnswer::Empty {
            MSG_NO_CODE
        } else {
            MSG_NOT_A_CODE
        };
        let outcome = run(
            vec![
                Conv::Prompt("Verification code: ", reply),
                Conv::Error(notice),
            ],
            vec![begin(Ok(("s-1", code_prompt(""))))],
            &args(),
        );
        assert_eq!(outcome, Outcome::BadAnswer(why));
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn an_over_long_answer_is_refused_unsent() {
        refused(
            Some(vec![b'1'; limits::MAX_ANSWER_LEN + 1]),
            BadAnswer::TooLong,
        );
    }

    #[test]
    fn non_digit_answers_are_refused_unsent() {
        for bad in ["12345a", "+12345", "123456\n", "1234567", "12345", "١٢٣٤٥٦"] {
            refused(bytes(bad), BadAnswer::Shape);
        }
        refused(Some(b"\xff\xfe\xfd\xfc\xfb\xfa".to_vec()), BadAnswer::Shape);
        // At the cap exactly: still refused by its shape, not by its length.
        refused(Some(vec![b'1'; limits::MAX_ANSWER_LEN]), BadAnswer::Shape);
    }

    /// Issue 20 item 5: a code typed the way apps show it (groups with a space or a dash,
    /// a stray space) is sent as its digits — the rule the daemon and the CLI apply too.
    #[test]
    fn codes_typed_in_groups_are_sent_as_their_digits() {
        for typed in ["123 456", " 123456", "123-456", "123456 ", "12 34 56"] {
            let outcome = run(
                vec![Conv::Prompt("Verification code: ", bytes(typed))],
                vec![
                    begin(Ok(("s-1", code_prompt("")))),
                    answer(b"123456", Ok(done(Verdict::Success, ""))),
                ],
                &args(),
            );
            assert_eq!(outcome, Outcome::Verdict(Verdict::Success), "{typed:?}");
        }
    }

    // ----- shapes by form: echo follows the shape, every shape is checked -----

    fn text_prompt(prompt: &str, max: u8, echo: bool) -> Step {
        Step::Prompt {
            message: String::new(),
            prompt: prompt.into(),
            accept: Accept::Text { max, echo },
        }
    }

    #[test]
    fn text_for_the_eyes_is_asked_with_echo_on() {
        // Choosing a method, then typing an email address: both visible as typed.
        let outcome = run(
            vec![
                Conv::PromptEchoOn("1 = authenticator app, 2 = email\nChoice: ", bytes("2")),
                Conv::PromptEchoOn("Email address: ", bytes("alice@example.org")),
                Conv::Prompt("Code from your email: ", bytes("12345678")),
            ],
            vec![
                begin(Ok((
                    "s-1",
                    Step::Prompt {
                        message: "1 = authenticator app, 2 = email".into(),
                        prompt: "Choice: ".into(),
                        accept: Accept::Text { max: 1, echo: true },
                    },
                ))),
                answer(b"2", Ok(text_prompt("Email address: ", 64, true))),
                answer(
                    b"alice@example.org",
                    Ok(Step::Prompt {
                        message: String::new(),
                        prompt: "Code from your email: ".into(),
                        accept: Accept::Digits { n: 8 },
                    }),
                ),
                answer(b"12345678", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn a_secret_text_is_asked_with_echo_off() {
        let outcome = run(
            vec![Conv::Prompt("App password: ", bytes("Tr0ub4dor &3"))],
            vec![
                begin(Ok(("s-1", text_prompt("App password: ", 64, false)))),
                answer(b"Tr0ub4dor &3", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn code_or_text_admits_a_recovery_code_as_the_daemon_takes_it() {
        // Upper case, no dashes: the daemon's recovery check takes it; the module sends it.
        let step = Step::Prompt {
            message: String::new(),
            prompt: "Code or recovery code: ".into(),
            accept: Accept::DigitsOrText { n: 6, max: 64 },
        };
        let outcome = run(
            vec![Conv::Prompt(
                "Code or recovery code: ",
                bytes("ABCD2345WXYZ"),
            )],
            vec![
                begin(Ok(("s-1", step))),
                answer(b"ABCD2345WXYZ", Ok(done(Verdict::Success, ""))),
            ],
            &args(),
        );
        assert_eq!(outcome, Outcome::Verdict(Verdict::Success));
    }

    #[test]
    fn text_outside_its_shape_is_refused_unsent() {
        let cases: [(&'static str, Vec<u8>, u8); 7] = [
            ("Email address: ", b"a@b.c\n".to_vec(), 64),
            ("Email address: ", b"a\tb@c.d".to_vec(), 64),
            ("Email address: ", b"\x1b[2Ja@b.c".to_vec(), 64),
            ("Email address: ", b"a@b.c\x7f".to_vec(), 64),
            ("Email address: ", "café@b.c".as_bytes().to_vec(), 64),
            ("Email address: ", b"\xff\xfe".to_vec(), 64),
            ("Email address: ", vec![b'a'; 65], 64),
        ];
        for (prompt, reply, max) in cases {
            for echo in [true, false] {
                let conv = if echo {
                    Conv::PromptEchoOn(prompt, Some(reply.clone()))
                } else {
                    Conv::Prompt(prompt, Some(reply.clone()))
                };
                let outcome = run(
                    vec![conv, Conv::Error(MSG_NOT_A_CODE)],
                    vec![begin(Ok(("s-1", text_prompt(prompt, max, echo))))],
                    &args(),
                );
                assert_eq!(outcome, Outcome::BadAnswer(BadAnswer::Shape), "{reply:?}");
                assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_AUTH_ERR);
            }
        }
        // Empty is "no answer", whatever the echo.
        let outcome = run(
            vec![
                Conv::PromptEchoOn("Email address: ", None),
                Conv::Error(MSG_NO_CODE),
            ],
            vec![begin(Ok(("s-1", text_prompt("Email address: ", 64, true))))],
            &args(),
        );
        assert_eq!(outcome, Outcome::BadAnswer(BadAnswer::Empty));
    }

    #[test]
    fn empty_and_missing_answers_are_refused_unsent() {
        refused(bytes(""), BadAnswer::Empty);
        refused(None, BadAnswer::Empty);
    }

    #[test]
    fn a_failed_conversation_ends_the_login() {
        let outcome = run(
            vec![Conv::PromptFails("Verification code: ")],
            vec![begin(Ok(("s-1", code_prompt(""))))],
            &args(),
        );
        assert_eq!(outcome, Outcome::Conversation);
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_CONV_ERR);
    }

    // ----- a looping daemon -----

    #[test]
    fn the_number_of_prompts_is_capped() {
        let mut conv = Vec::new();
        let mut calls = vec![begin(Ok(("s-1", code_prompt(""))))];
        for _ in 0..MAX_STEPS {
            conv.push(Conv::Prompt("Verification code: ", bytes("123456")));
            calls.push(answer(b"123456", Ok(code_prompt(""))));
        }
        conv.push(Conv::Error(MSG_PROTOCOL));
        let outcome = run(conv, calls, &args());
        assert_eq!(outcome, Outcome::TooManySteps);
        assert_eq!(pam_code(&outcome, &args()), PamResultCode::PAM_AUTH_ERR);
    }

    #[test]
    fn a_verdict_after_the_last_allowed_prompt_counts() {
        let mut conv = Vec::new();
        let mut calls = vec![begin(Ok(("s-1", code_prompt(""))))];
        for i in 0..MAX_STEPS {
            conv.push(Conv::Prompt("Verification code: ", bytes("123456")));
            let next = if i + 1 == MAX_STEPS {
                done(Verdict::Success, "")
            } else {
                code_prompt("")
            };
            calls.push(answer(b"123456", Ok(next)));
        }
        assert_eq!(
            run(conv, calls, &args()),
            Outcome::Verdict(Verdict::Success)
        );
    }

    // ----- the daemon cannot be asked -----

    fn unanswered() -> DaemonError {
        DaemonError::Unanswered("no reply within timeout=".into())
    }

    fn open() -> ModuleArgs {
        ModuleArgs {
            failmode: FailMode::Open,
            ..args()
        }
    }

    #[test]
    fn an_absent_daemon_fails_closed_with_a_message() {
        for why in Absence::ALL {
            let outcome = run(
                vec![Conv::Error(MSG_UNREACHABLE)],
                vec![begin(Err(BeginError::Absent(why)))],
                &args(),
            );
            assert_eq!(outcome, Outcome::Absent(why));
            assert_eq!(
                pam_code(&outcome, &args()),
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            );
        }
    }

    #[test]
    fn an_absent_daemon_with_failmode_open_lets_the_login_through_silently() {
        for why in Absence::ALL {
            let outcome = run(vec![], vec![begin(Err(BeginError::Absent(why)))], &open());
            assert_eq!(outcome, Outcome::Absent(why));
            assert_eq!(pam_code(&outcome, &open()), PamResultCode::PAM_SUCCESS);
        }
    }

    #[test]
    fn a_daemon_that_does_not_answer_begin_fails_closed_even_with_failmode_open() {
        for args in [args(), open()] {
            let outcome = run(
                vec![Conv::Error(MSG_UNREACHABLE)],
                vec![begin(Err(unanswered().into()))],
                &args,
            );
            assert_eq!(outcome, Outcome::Daemon(unanswered()));
            assert_eq!(
                pam_code(&outcome, &args),
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            );
        }
    }

    #[test]
    fn losing_the_daemon_mid_conversation_fails_closed_even_with_failmode_open() {
        for args in [args(), open()] {
            let outcome = run(
                vec![
                    Conv::Prompt("Verification code: ", bytes("123456")),
                    Conv::Error(MSG_UNREACHABLE),
                ],
                vec![
                    begin(Ok(("s-1", code_prompt("")))),
                    answer(b"123456", Err(unanswered())),
                ],
                &args,
            );
            assert_eq!(outcome, Outcome::Daemon(unanswered()));
            assert_eq!(
                pam_code(&outcome, &args),
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            );
        }
    }

    #[test]
    fn a_wrong_owner_never_fails_open() {
        let open = ModuleArgs {
            failmode: FailMode::Open,
            ..args()
        };
        let outcome = run(
            vec![Conv::Error(MSG_UNREACHABLE)],
            vec![begin(Err(DaemonError::WrongOwner { uid: 1000 }.into()))],
            &open,
        );
        assert_eq!(
            pam_code(&outcome, &open),
            PamResultCode::PAM_AUTHINFO_UNAVAIL
        );
    }

    #[test]
    fn daemon_errors_show_their_message() {
        let cases = [
            (ErrorName::Unavailable, Some(MSG_UNAVAILABLE)),
            (ErrorName::Busy, Some(MSG_BUSY)),
            (ErrorName::NotEnrolled, Some(MSG_NOT_ENROLLED)),
            (ErrorName::UnknownUser, None),
            (ErrorName::AccessDenied, None),
        ];
        for (name, message) in cases {
            let conv = message.map(Conv::Error).into_iter().collect();
            let outcome = run(
                conv,
                vec![begin(Err(DaemonError::Refused(name).into()))],
                &args(),
            );
            assert_eq!(outcome, Outcome::Daemon(DaemonError::Refused(name)));
        }
    }

    // ----- the one mapping, over every variant -----

    #[test]
    fn pam_code_table() {
        use PamResultCode::*;
        let closed = ModuleArgs::default();
        let nullok = ModuleArgs {
            nullok: true,
            ..closed.clone()
        };
        let open = ModuleArgs {
            failmode: FailMode::Open,
            ..closed.clone()
        };
        let open_nullok = ModuleArgs {
            nullok: true,
            failmode: FailMode::Open,
            ..closed.clone()
        };
        let refused = |n| Outcome::Daemon(DaemonError::Refused(n));
        // (outcome, closed, nullok, failmode=open, both)
        let table: Vec<(Outcome, [PamResultCode; 4])> = vec![
            (
                Outcome::Verdict(Verdict::Success),
                [PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS, PAM_SUCCESS],
            ),
            (
                Outcome::Verdict(Verdict::Denied),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::Verdict(Verdict::Locked),
                [PAM_MAXTRIES, PAM_MAXTRIES, PAM_MAXTRIES, PAM_MAXTRIES],
            ),
            (
                Outcome::Verdict(Verdict::NotEnrolled),
                [PAM_AUTH_ERR, PAM_IGNORE, PAM_AUTH_ERR, PAM_IGNORE],
            ),
            (
                Outcome::BadAnswer(BadAnswer::Empty),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::BadAnswer(BadAnswer::TooLong),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::BadAnswer(BadAnswer::Shape),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::Absent(Absence::NoSocket),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_SUCCESS,
                    PAM_SUCCESS,
                ],
            ),
            (
                Outcome::Absent(Absence::ConnectionRefused),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_SUCCESS,
                    PAM_SUCCESS,
                ],
            ),
            (
                Outcome::Absent(Absence::NoOwner),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_SUCCESS,
                    PAM_SUCCESS,
                ],
            ),
            (
                Outcome::Daemon(DaemonError::Unanswered("x".into())),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                ],
            ),
            (
                Outcome::Daemon(DaemonError::WrongOwner { uid: 1000 }),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                ],
            ),
            (
                refused(ErrorName::Unavailable),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                ],
            ),
            (
                refused(ErrorName::Busy),
                [
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                    PAM_AUTHINFO_UNAVAIL,
                ],
            ),
            (
                refused(ErrorName::UnknownUser),
                [
                    PAM_USER_UNKNOWN,
                    PAM_USER_UNKNOWN,
                    PAM_USER_UNKNOWN,
                    PAM_USER_UNKNOWN,
                ],
            ),
            (
                refused(ErrorName::Locked),
                [PAM_MAXTRIES, PAM_MAXTRIES, PAM_MAXTRIES, PAM_MAXTRIES],
            ),
            (
                refused(ErrorName::NotEnrolled),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                refused(ErrorName::AccessDenied),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                refused(ErrorName::InvalidArgument),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                refused(ErrorName::NoSession),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                refused(ErrorName::NoPendingEnrollment),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                refused(ErrorName::WrongCode),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::Daemon(DaemonError::Protocol("x".into())),
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
            (
                Outcome::Conversation,
                [PAM_CONV_ERR, PAM_CONV_ERR, PAM_CONV_ERR, PAM_CONV_ERR],
            ),
            (
                Outcome::TooManySteps,
                [PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR, PAM_AUTH_ERR],
            ),
        ];
        // Every absence and every variant of every error name is in the table.
        for why in Absence::ALL {
            assert!(
                table.iter().any(|(o, _)| *o == Outcome::Absent(why)),
                "{why:?} missing"
            );
        }
        for (name, _) in ErrorName::ALL {
            assert!(
                table.iter().any(|(o, _)| *o == refused(name)),
                "{name:?} missing"
            );
        }
        for (outcome, want) in &table {
            for (args, want) in [&closed, &nullok, &open, &open_nullok].iter().zip(want) {
                assert_eq!(pam_code(outcome, args), *want, "{outcome:?} with {args:?}");
            }
            assert!(!outcome.describe().is_empty());
        }
    }

    /// Every [`DaemonError`] variant. The `match` is exhaustive, so a new variant does not
    /// compile until it is listed here, and so is checked by the tests below.
    fn every_daemon_error() -> Vec<DaemonError> {
        let all = vec![
            DaemonError::Unanswered(String::new()),
            DaemonError::WrongOwner { uid: 0 },
            DaemonError::Protocol(String::new()),
        ]
        .into_iter()
        .chain(ErrorName::ALL.iter().map(|(n, _)| DaemonError::Refused(*n)))
        .collect::<Vec<_>>();
        for e in &all {
            match e {
                DaemonError::Unanswered(_)
                | DaemonError::WrongOwner { .. }
                | DaemonError::Refused(_)
                | DaemonError::Protocol(_) => {}
            }
        }
        all
    }

    #[test]
    fn only_three_outcomes_ever_let_a_login_on() {
        // Exhaustive over the outcome shapes: SUCCESS or IGNORE only for the daemon's success,
        // a not-enrolled verdict with nullok, or an absent daemon (an `Absence`: no socket,
        // a refused connection, no owner, all before any login call) with failmode=open.
        // No `DaemonError` (a timeout, a lost connection, an error name, an impostor…) ever
        // does, whatever the arguments.
        let all_args = [
            ModuleArgs::default(),
            ModuleArgs {
                nullok: true,
                failmode: FailMode::Open,
                ..ModuleArgs::default()
            },
        ];
        let mut outcomes = vec![
            Outcome::Verdict(Verdict::Denied),
            Outcome::Verdict(Verdict::Locked),
            Outcome::BadAnswer(BadAnswer::Empty),
            Outcome::BadAnswer(BadAnswer::TooLong),
            Outcome::BadAnswer(BadAnswer::Shape),
            Outcome::Conversation,
            Outcome::TooManySteps,
        ];
        outcomes.extend(every_daemon_error().into_iter().map(Outcome::Daemon));
        for args in &all_args {
            for outcome in &outcomes {
                let code = pam_code(outcome, args);
                assert!(
                    code != PamResultCode::PAM_SUCCESS && code != PamResultCode::PAM_IGNORE,
                    "{outcome:?} gave {code:?}"
                );
            }
        }
        // And an absence lets a login on only with failmode=open.
        for why in Absence::ALL {
            let outcome = Outcome::Absent(why);
            assert_eq!(
                pam_code(&outcome, &ModuleArgs::default()),
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            );
            let nullok = ModuleArgs {
                nullok: true,
                ..ModuleArgs::default()
            };
            assert_eq!(
                pam_code(&outcome, &nullok),
                PamResultCode::PAM_AUTHINFO_UNAVAIL
            );
        }
    }

    #[test]
    fn notices() {
        let closed = ModuleArgs::default();
        let open = ModuleArgs {
            failmode: FailMode::Open,
            nullok: true,
            ..closed.clone()
        };
        let absent = Outcome::Absent(Absence::NoSocket);
        assert_eq!(notice(&absent, &closed), Some(MSG_UNREACHABLE));
        assert_eq!(notice(&absent, &open), None);
        let unanswered = Outcome::Daemon(DaemonError::Unanswered("x".into()));
        assert_eq!(notice(&unanswered, &closed), Some(MSG_UNREACHABLE));
        assert_eq!(notice(&unanswered, &open), Some(MSG_UNREACHABLE));
        let not_enrolled = Outcome::Verdict(Verdict::NotEnrolled);
        assert_eq!(notice(&not_enrolled, &closed), Some(MSG_NOT_ENROLLED));
        assert_eq!(notice(&not_enrolled, &open), None);
        assert_eq!(notice(&Outcome::Verdict(Verdict::Success), &closed), None);
        assert_eq!(
            notice(&Outcome::Daemon(DaemonError::WrongOwner { uid: 5 }), &open),
            Some(MSG_UNREACHABLE)
        );
        assert_eq!(
            MSG_UNREACHABLE,
            "twostep: the second-factor service is not reachable; login refused"
        );
    }

    // ----- small pieces -----

    #[test]
    fn replies_are_capped_before_anything_else() {
        assert!(matches!(Reply::from_bytes(None), Reply::Empty));
        assert!(matches!(Reply::from_bytes(Some(b"")), Reply::Empty));
        assert!(matches!(
            Reply::from_bytes(Some(&[b'a'; limits::MAX_ANSWER_LEN + 1])),
            Reply::TooLong
        ));
        match Reply::from_bytes(Some(&[b'7'; limits::MAX_ANSWER_LEN])) {
            Reply::Answer(a) => assert_eq!(a.as_bytes().len(), limits::MAX_ANSWER_LEN),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let Reply::Answer(answer) = Reply::from_bytes(Some(b"314159")) else {
            panic!("no answer");
        };
        let shown = format!("{answer:?} {:?}", Reply::Answer(Answer(answer.0.clone())));
        assert!(!shown.contains("314159"), "{shown}");
        assert!(shown.contains("redacted"));
        let session = Session::new("secret-token".into()).unwrap();
        assert!(!format!("{session:?}").contains("secret-token"));
    }

    #[test]
    fn session_tokens_are_bounded() {
        assert!(Session::new(String::new()).is_none());
        assert!(Session::new("x".repeat(limits::MAX_SESSION_LEN)).is_some());
        assert!(Session::new("x".repeat(limits::MAX_SESSION_LEN + 1)).is_none());
    }

    #[test]
    fn context_entries_omit_absent_items() {
        let partial = LoginContext {
            service: Some("sudo".into()),
            rhost: None,
            tty: Some("/dev/pts/3".into()),
            app_password: false,
            forward_pass: false,
        };
        assert_eq!(
            partial.entries(),
            vec![("service", "sudo"), ("tty", "/dev/pts/3")]
        );
        assert!(LoginContext::default().entries().is_empty());
    }

    #[test]
    fn error_names_round_trip() {
        for (variant, name) in ErrorName::ALL {
            assert_eq!(ErrorName::from_dbus(name), Some(variant));
            assert_eq!(variant.as_str(), name);
        }
        assert_eq!(ErrorName::from_dbus("org.twostep.Error.Nope"), None);
        assert_eq!(
            ErrorName::from_dbus("org.freedesktop.DBus.Error.AccessDenied"),
            None
        );
    }

    #[test]
    fn descriptions_carry_no_secrets() {
        let step = Step::Prompt {
            message: "secret-qr-payload".into(),
            prompt: "Code: ".into(),
            accept: Accept::Digits { n: 6 },
        };
        assert!(!describe_step(&step).contains("secret"));
    }
}
