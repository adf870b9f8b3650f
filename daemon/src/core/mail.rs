// SPDX-License-Identifier: MIT OR Apache-2.0
//! Mail as the core sees it: an [`Outbox`] that takes one message and says what the mail
//! server answered, and the account mail users get ([`Notice`], [`notify`]).
//!
//! The core never talks SMTP: the daemon hands it an `Outbox` (`crate::mailer`, built on
//! lettre, with its own bounded workers and a hard timeout). A code mail is [`Outbox::send`]
//! (the login waits for its own send, bounded); account mail is [`Outbox::post`] (nobody
//! waits; a failure is logged and never blocks the event that caused it).
//!
//! Adding a kind of account mail (e.g. "an app password expires soon") = a variant of
//! [`Notice`], its switch in [`Notice::enabled`] and its text in [`Notice::text`].

use std::time::Duration;

use twostep_config::mail::fill;
use twostep_config::Mail;

use super::audit::field;
use super::record::Record;
use super::users::Account;
use super::Core;

/// One message to one address. `to` is checked ([`super::email::check_address`]);
/// `subject` is one line without control characters.
#[derive(Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// The body (a code mail holds the code) is wiped on drop.
impl Drop for Outgoing {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

impl std::fmt::Debug for Outgoing {
    // Why: the body of a code mail holds the code; it never goes to a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Why a message was not handed to the mail server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Mail is not configured (`[mail] transport = "none"`).
    NotConfigured,
    /// Every mail worker is busy: refused at once, never queued behind a stalled server.
    Busy,
    /// No answer within the timeout (a server that accepts TCP and stalls).
    TimedOut,
    /// The server refused (4xx/5xx, with its answer), could not be reached, or its
    /// certificate was not trusted; the reason, without the message's content.
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotConfigured => f.write_str("mail is not configured ([mail] transport)"),
            SendError::Busy => f.write_str("every mail worker is busy"),
            SendError::TimedOut => f.write_str("the mail server did not answer in time"),
            SendError::Failed(why) => f.write_str(why),
        }
    }
}

/// Where the core's mail goes.
pub trait Outbox: Send + Sync {
    /// Hand `mail` to the server configured in `settings` and wait for its answer, at
    /// most `settings.timeout_seconds`. Never retried.
    ///
    /// # Errors
    /// [`SendError`]; on any error the message may or may not have reached the server.
    fn send(&self, settings: &Mail, mail: Outgoing) -> Result<String, SendError>;

    /// Queue `mail` without waiting; the outcome is logged under `what` (never the body).
    fn post(&self, settings: &Mail, mail: Outgoing, what: String);
}

/// The outbox of a core without a mailer (unit tests, and before the daemon sets one).
pub struct NoMail;

impl Outbox for NoMail {
    fn send(&self, _: &Mail, _: Outgoing) -> Result<String, SendError> {
        Err(SendError::NotConfigured)
    }
    fn post(&self, _: &Mail, _: Outgoing, what: String) {
        log::warn!("mail not sent ({what}): no mailer");
    }
}

/// Who did something to an account, for account mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    /// The user.
    User,
    /// An admin (root or a member of the admin group).
    Admin,
}

impl By {
    fn phrase(self) -> &'static str {
        match self {
            By::User => "by you (from your own account)",
            By::Admin => "by an administrator",
        }
    }
}

/// Something that happened to an account that its owner hears about by mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// Locked after failed attempts; `until` is the sentence saying how long.
    Locked { until: String },
    /// Two-factor authentication was switched off or reset.
    Disabled { by: By },
    /// An authenticator app was added or removed (`added`), named.
    Authenticator { name: String, added: bool, by: By },
    /// An email address was confirmed or removed (`added`).
    Email { added: bool, by: By },
    /// Only this many recovery codes are left.
    RecoveryLow { left: usize },
    /// A login succeeded after `failures` failed attempts, the last one from `from`.
    LoginAfterFailures { failures: u32, from: String },
    /// The app password `name` (public id `id`) expires at `expires` (`timefmt::human`, UTC);
    /// sent once, `[app_passwords] notice_days` before (switched off by 0 there).
    AppPasswordExpiring {
        name: String,
        id: String,
        expires: String,
    },
}

impl Notice {
    /// The kind's name in log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Locked { .. } => "locked",
            Notice::Disabled { .. } => "disabled",
            Notice::Authenticator { .. } => "authenticator",
            Notice::Email { .. } => "email",
            Notice::RecoveryLow { .. } => "recovery-low",
            Notice::LoginAfterFailures { .. } => "failed-logins",
            Notice::AppPasswordExpiring { .. } => "app-password-expiry",
        }
    }

    /// Whether `[mail]` switches this kind on.
    pub fn enabled(&self, m: &Mail) -> bool {
        match self {
            Notice::Locked { .. } => m.notify_locked,
            Notice::Disabled { .. } => m.notify_disabled,
            Notice::Authenticator { .. } | Notice::Email { .. } => m.notify_method_changed,
            Notice::RecoveryLow { .. } => m.notify_recovery_low,
            Notice::LoginAfterFailures { .. } => m.notify_failed_logins,
            // Why always: `[app_passwords] notice_days = 0` is its switch, checked before.
            Notice::AppPasswordExpiring { .. } => true,
        }
    }

    /// Subject and body for `user` on `host`.
    pub fn text(&self, user: &str, host: &str) -> (String, String) {
        let (subject, what) = match self {
            Notice::Locked { until } => (
                "account locked",
                format!("Your account was locked after too many wrong verification codes. {until}"),
            ),
            Notice::Disabled { by } => (
                "two-factor authentication switched off",
                format!("Two-factor authentication was switched off or reset {}.", by.phrase()),
            ),
            Notice::Authenticator { name, added, by } => (
                if *added { "authenticator added" } else { "authenticator removed" },
                format!(
                    "The authenticator app {name:?} was {} {}.",
                    if *added { "added" } else { "removed" },
                    by.phrase()
                ),
            ),
            Notice::Email { added, by } => (
                if *added { "email address added" } else { "email address removed" },
                format!(
                    "This email address was {} as a way to receive login codes {}.",
                    if *added { "confirmed" } else { "removed" },
                    by.phrase()
                ),
            ),
            Notice::RecoveryLow { left } => (
                "recovery codes running low",
                format!(
                    "Only {left} recovery code(s) are left. Make new ones with: twostepctl recovery-codes"
                ),
            ),
            Notice::LoginAfterFailures { failures, from } => (
                "login after failed attempts",
                format!(
                    "{failures} failed attempt(s) since your last login, the last from {from}."
                ),
            ),
            Notice::AppPasswordExpiring { name, id, expires } => (
                "app password expires soon",
                format!(
                    "Your app password {name:?} (id {id}) expires at {expires}; after that the \
                     program that uses it can no longer log in. Make a new one before then: \
                     twostepctl app-password create NAME --service SERVICE"
                ),
            ),
        };
        let body = format!(
            "Hello {user},\n\n{what}\n\nAccount {user} on {host}.\nIf this was not you, tell your administrator.\n"
        );
        (format!("{host}: {subject}"), body)
    }
}

/// Replace control characters (CR, LF, …) by `?`: what may go into a header.
pub fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Mail `notice` to `account`'s confirmed address (from `record`), if mail is on and the
/// kind is switched on; nothing otherwise. Never waits, never fails: the outcome is logged.
pub fn notify(core: &Core, account: &Account, record: &Record, notice: Notice) {
    let config = core.settings().config();
    let Some(to) = record.email.as_ref().and_then(|e| e.address.clone()) else {
        return;
    };
    if !config.mail.enabled() || !notice.enabled(&config.mail) {
        return;
    }
    let (subject, body) = notice.text(&account.name, &host_name());
    let what = format!("notice={} user={}", notice.kind(), field(&account.name));
    core.outbox().post(
        &config.mail,
        Outgoing {
            to,
            subject: one_line(&subject),
            body,
        },
        what,
    );
}

/// As [`notify`], with `account`'s record as stored now (after the change it tells of).
pub fn notify_account(core: &Core, account: &Account, notice: Notice) {
    if let Ok(Some(record)) = core.load(account) {
        notify(core, account, &record, notice);
    }
}

/// The record as stored before a change that removes the address (2FA switched off): the
/// notice goes to the address the user had.
pub fn before(core: &Core, account: &Account) -> Option<Record> {
    core.load(account).ok().flatten()
}

/// This host's name, for mail texts.
pub fn host_name() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "this host".into())
}

/// Subject and body of a code mail from the `[mail]` templates; every value is made one
/// line first, so nothing a user or a remote host chose can start a header.
pub fn code_mail(m: &Mail, values: &[(&str, &str)]) -> (String, String) {
    let clean: Vec<(&str, String)> = values.iter().map(|(k, v)| (*k, one_line(v))).collect();
    let refs: Vec<(&str, &str)> = clean.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (
        one_line(&fill(&m.code_subject, &refs)),
        fill(&m.code_body, &refs),
    )
}

/// The longest a caller waits for one send: the configured timeout plus a margin for the
/// worker hand-over.
pub fn wait_limit(m: &Mail) -> Duration {
    Duration::from_secs(m.timeout_seconds.get()) + Duration::from_millis(500)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_lose_line_breaks() {
        let m = Mail {
            code_subject: "{user} {rhost} {code}".into(),
            ..Mail::default()
        };
        let (s, b) = code_mail(
            &m,
            &[
                ("user", "eve\r\nBcc: x@y"),
                ("rhost", "h\n"),
                ("code", "123456"),
            ],
        );
        assert_eq!(s, "eve??Bcc: x@y h? 123456");
        assert!(!s.contains(['\r', '\n']));
        assert!(b.contains("123456"));
    }

    #[test]
    fn notices_say_who() {
        let (s, b) = Notice::Disabled { by: By::Admin }.text("ann", "h1");
        assert_eq!(s, "h1: two-factor authentication switched off");
        assert!(b.contains("by an administrator"), "{b}");
        let (_, b) = Notice::LoginAfterFailures {
            failures: 3,
            from: "192.0.2.10".into(),
        }
        .text("ann", "h1");
        assert!(b.contains("3 failed attempt(s) since your last login, the last from 192.0.2.10"));
    }
}
