// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the user reads, and the login steps that carry it: every user-facing text of a
//! login and every `Step` the core builds are here.

use zeroize::Zeroizing;

use twostep_proto::{Accept, Step, Verdict};

use super::record::TotpKey;
use super::verify::Method;
use super::{qr, totp, Error, UnixTime};

/// Warn when this few recovery codes are left.
const FEW_RECOVERY_CODES: usize = 3;

/// A replayed code (refused, not counted toward lockout).
pub const REPLAYED: &str = "This code was already used; wait for the next one.";
/// An answer to a code prompt that waited longer than `[login] prompt_timeout_seconds`.
pub const PROMPT_TIMED_OUT: &str = "The code prompt timed out; start again.";
/// A wrong code or recovery code.
pub const WRONG_CODE: &str = "Wrong verification code.";

/// An answer no method could take (issue 20 item 5): refused, not counted.
pub const NOT_A_CODE: &str = "That is not a verification code (nothing was counted).";
/// The last wrong first code a login allows for a key made for enrolment at login
/// (`enrol_at_login`): the key stays pending, so the next login shows the same one.
pub const ENROL_WRONG_CODE: &str = "That code is not right. Your key stays ready: log in \
                                    again and type the code of the entry you just added (the \
                                    same key is shown again for a while).";
/// A wrong code mailed for an email enrolment at login (that code is spent).
pub const ENROL_EMAIL_WRONG_CODE: &str =
    "That code is not right. Log in again to get a new code by email.";
/// The prompt for the first code of a key at an enrolment at login.
pub const ENROL_PROMPT: &str = "Code from your app: ";
/// A recovery code was used and `[recovery] mode = "disables-2fa"`.
pub const RECOVERY_SWITCHED_OFF: &str = "Recovery code accepted. Two-factor authentication is \
                                         now off for your account: set it up again with \
                                         `twostepctl enroll`.";

/// The prompt of an app-password login (`pam_twostep.so app_password`).
pub const APP_PASSWORD_PROMPT: &str = "Password: ";
/// An app password refused with the attempt that locked the user (other refusals carry no
/// text, so that they read the same whatever the reason).
pub const APP_PASSWORD_WRONG: &str = "Wrong password.";

/// The end of a conversation.
pub fn done(verdict: Verdict, message: String) -> Step {
    Step::Done { verdict, message }
}

/// A required user without a factor at a `forward_pass` service: enrolment needs a client
/// that shows prompts one by one.
pub const FORWARD_PASS_ENROL: &str = "Two-factor authentication must be set up first: \
    log in where each prompt is shown (e.g. SSH with keyboard-interactive) or run \
    `twostepctl enroll`.";

/// An email-only user at a `forward_pass` service: a mailed code cannot arrive before the
/// one prompt is answered.
pub const FORWARD_PASS_NO_CODE: &str = "This service takes the password and the code in \
    one prompt, which codes by email cannot serve: use an authenticator app or a recovery \
    code.";

/// The code prompt when no recovery code is left (all spent, or none made).
pub const CODE_PROMPT: &str = "Verification code: ";
/// The code prompt while a recovery code is left (issue 20 item 5: the prompt says one may
/// go there). Short, for sudo's and ssh's one-line prompts.
pub const CODE_OR_RECOVERY_PROMPT: &str = "Verification code (or recovery code): ";

/// [`CODE_OR_RECOVERY_PROMPT`] when `recovery` (a recovery code is left and taken here),
/// else [`CODE_PROMPT`].
pub fn code_prompt(recovery: bool) -> &'static str {
    if recovery {
        CODE_OR_RECOVERY_PROMPT
    } else {
        CODE_PROMPT
    }
}

/// The first prompt for an enrolled, unlocked user, from the methods the record offers
/// (`verify::offered`): a code of `digits` digits, or a recovery code while any is left
/// (and then the prompt says so).
pub fn first_prompt(offered: &[Method], digits: u8) -> Step {
    let mut accept = Accept::Digits { n: digits };
    let mut recovery = false;
    for method in offered {
        match method {
            Method::Totp | Method::Email => {}
            Method::Recovery => {
                recovery = true;
                accept = Accept::DigitsOrText {
                    n: digits,
                    max: twostep_proto::MAX_RECOVERY_LEN,
                };
            }
        }
    }
    Step::Prompt {
        message: String::new(),
        prompt: code_prompt(recovery).into(),
        accept,
    }
}

/// The enrolment at login: QR code and key of `key` for `user`, asking for its first code.
///
/// # Errors
/// [`Error::Internal`] when the URI or the QR code cannot be made.
// Why no colours in the login's QR code (the CLI pins them): the picture travels in PAM
// prompt text, and clients such as OpenSSH's print control characters escaped, so an ANSI
// colour sequence would arrive as literal `\033[…` text. The text says what to do instead.
/// `again`: the key was shown at an earlier login (still pending): the text says so.
pub fn enrolment_prompt(
    key: &TotpKey,
    issuer: &str,
    user: &str,
    again: bool,
) -> Result<Step, Error> {
    let uri = totp::otpauth_uri(key, issuer, user).map_err(|e| Error::Internal(e.to_string()))?;
    let picture = qr::terminal(&uri).map_err(Error::Internal)?;
    let again = if again {
        "This is the same key as at your last login: if your app has its entry already, just \
         type its code.\n"
    } else {
        ""
    };
    let message = format!(
        "Two-factor authentication is required for {user}. Set it up now:\n{again}\
         scan this QR code with an authenticator app,\n\n{picture}\n\n\
         (it is drawn for a dark terminal background: on a light one it shows inverted,\n\
         which some apps cannot read; then type the key instead)\n\
         or enter this key by hand: {}\n({}, {} digits, every {} s, time-based)",
        totp::group4(&key.secret.0),
        key.algorithm.as_str(),
        key.digits,
        key.period
    );
    Ok(Step::Prompt {
        message,
        prompt: ENROL_PROMPT.into(),
        accept: Accept::Digits { n: key.digits },
    })
}

/// The new recovery codes, shown once after an enrolment at login; waits for Enter.
pub fn codes_shown(shown: &[Zeroizing<String>]) -> Step {
    let codes: Vec<&str> = shown.iter().map(|c| c.as_str()).collect();
    let message = format!(
        "Your authenticator is set up. These recovery codes each log you in once if you \
         lose your phone. They are shown only now: write them down or store them safely.\n\n  {}\n",
        codes.join("\n  ")
    );
    Step::Prompt {
        message,
        prompt: "Press Enter once you have saved them: ".into(),
        accept: Accept::Acknowledge,
    }
}

/// A recovery code was accepted; `left` remain.
pub fn recovery_left(left: usize) -> String {
    let mut msg = format!(
        "Recovery code accepted. {left} recovery code{} left.",
        if left == 1 { "" } else { "s" }
    );
    if left <= FEW_RECOVERY_CODES {
        msg.push_str(" Generate new ones soon with `twostepctl recovery-codes`.");
    }
    msg
}

/// Within the enrolment grace period: `left` days before logins of `user` stop working.
pub fn grace_reminder(user: &str, left: u64) -> String {
    format!(
        "Two-factor authentication is required for {user}: set it up with \
         `twostepctl enroll`. Without it, logins stop working in {left} day{}.",
        if left == 1 { "" } else { "s" }
    )
}

/// Shown at a successful login when there were failed attempts since the last success
/// (issue 20, item 11): how many, and the last one's time (UTC) and source (`from`: the
/// remote host, "SERVICE on this host", or `twostepctl`; `None` when unknown).
pub fn failures_since(failures: u32, last: Option<UnixTime>, from: Option<&str>) -> String {
    let mut msg = format!(
        "{failures} failed attempt{} since your last successful login",
        if failures == 1 { "" } else { "s" }
    );
    if let Some(t) = last {
        let at = super::timefmt::human(t);
        msg.push_str(&format!(", the last at {at}"));
    }
    if let Some(from) = from.filter(|f| !f.is_empty() && *f != "-") {
        msg.push_str(&format!(" from {from}"));
    }
    msg.push_str(". If that was not you, tell your administrator.");
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_prompt_names_recovery_codes_only_while_one_is_left() {
        let prompt = |offered: &[Method]| match &first_prompt(offered, 6) {
            Step::Prompt { prompt, accept, .. } => (prompt.clone(), *accept),
            done => panic!("{done:?}"),
        };
        let (text, accept) = prompt(&[Method::Totp, Method::Recovery]);
        assert_eq!(text, "Verification code (or recovery code): ");
        assert!(matches!(accept, Accept::DigitsOrText { n: 6, .. }));
        let (text, accept) = prompt(&[Method::Totp]);
        assert_eq!(text, "Verification code: ");
        assert_eq!(accept, Accept::Digits { n: 6 });
    }

    #[test]
    fn failures_since_says_how_many_when_and_from_where() {
        assert_eq!(
            failures_since(3, Some(UnixTime(1_800_000_000)), Some("192.0.2.9")),
            "3 failed attempts since your last successful login, the last at \
             2027-01-15 08:00:00 UTC from 192.0.2.9. If that was not you, tell your \
             administrator."
        );
        assert_eq!(
            failures_since(1, None, Some("-")),
            "1 failed attempt since your last successful login. If that was not you, tell \
             your administrator."
        );
    }
}
