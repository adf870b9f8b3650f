// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where a login comes from, and the one audit line per login outcome. Never a code.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use twostep_proto::limits;

use super::authz::Caller;
use super::record::Record;
use super::users::{Account, Accounts};
use super::Error;

/// The `service` of record events that came over D-Bus from `twostepctl` (or another
/// client of the API) rather than from a PAM login: the same word the failure summary
/// uses for them (`Record::last_failure_from`).
pub const SERVICE_CTL: &str = "twostepctl";

/// What kind of thing a record event is, for filters and `--json` (issue 20 item 8). The
/// event's `what` says it in words; this names it in one word.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// An event of a record written before kinds existed (shown as `-`).
    #[default]
    Unknown,
    /// A login's second factor accepted (any method).
    Success,
    /// A wrong answer, charged toward the lock.
    Failure,
    /// A code already used on its authenticator: refused, not charged.
    Replay,
    /// The failure that locked the user.
    Lock,
    /// An admin cleared the failures and the lock.
    Unlock,
    /// An admin forgot the user's factors (or replaced a former account's record).
    Reset,
    /// A first enrolment, a move to a new authenticator, or an authenticator added.
    Enrol,
    /// 2FA switched off (by the user, an admin, a recovery code or the last
    /// authenticator removed), or an authenticator removed.
    Disable,
    /// New recovery codes.
    RecoveryCodes,
    /// The address for codes by email confirmed or removed.
    Email,
    /// An app password created, revoked or used.
    AppPassword,
    /// Any other admin action (require, exempt, toggle, repair, import).
    Admin,
    /// The enrolment grace period started.
    Grace,
    /// Clock trouble seen at a login: a refused code of a step outside the window, or the
    /// host clock behind the record (diagnosis only; the login's own event says what it
    /// was).
    Clock,
}

impl EventKind {
    /// The kind's name as `--json` and `user show` print it (`-` for [`EventKind::Unknown`]).
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Unknown => "-",
            EventKind::Success => "success",
            EventKind::Failure => "failure",
            EventKind::Replay => "replay",
            EventKind::Lock => "lock",
            EventKind::Unlock => "unlock",
            EventKind::Reset => "reset",
            EventKind::Enrol => "enrol",
            EventKind::Disable => "disable",
            EventKind::RecoveryCodes => "recovery-codes",
            EventKind::Email => "email",
            EventKind::AppPassword => "app-password",
            EventKind::Admin => "admin",
            EventKind::Grace => "grace",
            EventKind::Clock => "clock",
        }
    }

    /// For `skip_serializing_if`: an unknown kind is not written.
    pub fn is_unknown(&self) -> bool {
        *self == EventKind::Unknown
    }
}

/// Who acted and from where: what every record event carries besides its time, kind and
/// words (issue 20 item 8). Empty strings are unknown (shown as `-`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The PAM service of a login, or [`SERVICE_CTL`] for a D-Bus call.
    pub service: String,
    /// The remote host of a login (`PAM_RHOST`).
    pub rhost: String,
    /// The terminal of a login (`PAM_TTY`).
    pub tty: String,
    /// The method used or tried (`totp`, `recovery-code`, `email-code`, `app-password`,
    /// several joined by `,` for a failure that matched none).
    pub method: String,
    /// The acting user's name at the time of the event: the user at a login or a
    /// self-service call, the admin for an admin action. Empty: NSS knew no name.
    pub actor: String,
    /// The acting user's uid.
    pub actor_uid: Option<u32>,
    /// The uid of the process that called for a login, when it was not root: a program the
    /// user runs as themselves (a screen locker), which may set service, rhost and tty to
    /// anything, so those are what it said, not what a root PAM application saw.
    pub caller_uid: Option<u32>,
}

impl Source {
    /// A login of `account` from `ctx`: the user acts.
    pub fn login(ctx: &LoginContext, account: &Account) -> Source {
        Source {
            service: ctx.service.clone(),
            rhost: ctx.rhost.clone(),
            tty: ctx.tty.clone(),
            method: String::new(),
            actor: account.name.clone(),
            actor_uid: Some(account.uid),
            caller_uid: (ctx.caller_uid != 0).then_some(ctx.caller_uid),
        }
    }

    /// A self-service D-Bus call of the user whose record this is (the daemon only lets a
    /// caller change its own record): the user acts, over [`SERVICE_CTL`].
    pub fn own(record: &Record) -> Source {
        Source {
            service: SERVICE_CTL.to_owned(),
            actor: record.user.clone(),
            actor_uid: record.uid,
            ..Source::default()
        }
    }

    /// An admin's D-Bus call: the admin acts, named as NSS names `caller.uid` now (the
    /// uid is kept either way).
    pub fn admin(accounts: &dyn Accounts, caller: &Caller) -> Source {
        Source {
            service: SERVICE_CTL.to_owned(),
            actor: accounts
                .by_uid(caller.uid)
                .map(|a| a.name)
                .unwrap_or_default(),
            actor_uid: Some(caller.uid),
            ..Source::default()
        }
    }

    /// A login source with every field set, for tests of what stores and exports carry.
    #[cfg(test)]
    pub fn example() -> Source {
        Source {
            service: "sshd".into(),
            rhost: "203.0.113.9".into(),
            tty: "ssh".into(),
            method: "totp".into(),
            actor: "alice".into(),
            actor_uid: Some(1000),
            caller_uid: Some(1000),
        }
    }

    /// The same, with `method`.
    #[must_use]
    pub fn with_method(&self, method: &str) -> Source {
        Source {
            method: method.to_owned(),
            ..self.clone()
        }
    }

    /// The actor for an event's words: the name, else `uid N`, else `-`.
    pub fn actor_display(&self) -> String {
        Source::actor_text(&self.actor, self.actor_uid)
    }

    /// The actor for text: the name, else `uid N`, else `-`.
    pub fn actor_text(actor: &str, uid: Option<u32>) -> String {
        match (actor, uid) {
            ("", Some(uid)) => format!("uid {uid}"),
            ("", None) => "-".to_owned(),
            (name, _) => name.to_owned(),
        }
    }
}

/// Where a login comes from, for audit lines (absent values are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginContext {
    pub service: String,
    pub rhost: String,
    pub tty: String,
    /// The module asked for an app-password check (`mode=app-password`), not for a
    /// second factor.
    pub app_password: bool,
    /// The module runs `forward_pass` (`mode=forward-pass`): the password is not checked
    /// yet, so this login starts nothing (`login::begin`).
    pub forward_pass: bool,
    /// The kernel audit session of the calling process (`/proc/PID/sessionid`, set by
    /// `pam_loginuid` at a login and inherited by its processes), when the transport knows
    /// the caller's pid and the session is set. Filled by the adapter for logins on a
    /// service with a remember window (`core::services`), never from the module's context.
    pub audit_session: Option<u32>,
    /// The uid of the calling process (the bus's or `SO_PEERCRED`'s), set by the core when
    /// the login begins; 0 (root) by default.
    pub caller_uid: u32,
}

impl LoginContext {
    /// Keep the known keys, bounded.
    ///
    /// # Errors
    /// Too many entries or an over-long value.
    pub fn from_map(map: &HashMap<String, String>) -> Result<LoginContext, Error> {
        use twostep_proto::login::{CTX_RHOST, CTX_SERVICE, CTX_TTY};
        let bad = || Error::InvalidArgument("malformed login context".into());
        if map.len() > limits::MAX_CONTEXT_ENTRIES {
            return Err(bad());
        }
        let get = |k: &str| -> Result<String, Error> {
            match map.get(k) {
                Some(v)
                    if v.len() > limits::MAX_CONTEXT_LEN
                        || v.chars().any(|c| c.is_control() || invisible(c)) =>
                {
                    Err(bad())
                }
                Some(v) => Ok(v.clone()),
                None => Ok(String::new()),
            }
        };
        let (app_password, forward_pass) =
            match map.get(twostep_proto::login::CTX_MODE).map(String::as_str) {
                None => (false, false),
                Some(twostep_proto::login::MODE_APP_PASSWORD) => (true, false),
                Some(twostep_proto::login::MODE_FORWARD_PASS) => (false, true),
                Some(_) => return Err(bad()),
            };
        Ok(LoginContext {
            service: get(CTX_SERVICE)?,
            rhost: get(CTX_RHOST)?,
            tty: get(CTX_TTY)?,
            app_password,
            forward_pass,
            audit_session: None,
            caller_uid: 0,
        })
    }
}

/// The `lock` event of the wrong answer (from `from`) that just locked the user.
pub fn note_lock(record: &mut Record, now: super::UnixTime, from: &Source) {
    let what = format!("locked after {} failed attempts", record.failures);
    record.note(now, EventKind::Lock, what, from);
}

/// One audit line per login outcome: who, from where, what. Never a code.
pub fn audit(account: &Account, ctx: &LoginContext, caller: &Caller, outcome: &str) {
    log::info!(
        "user={} uid={} service={} rhost={} tty={} caller_uid={} outcome={}",
        field(&account.name),
        account.uid,
        field(&ctx.service),
        field(&ctx.rhost),
        field(&ctx.tty),
        caller.uid,
        outcome
    );
}

/// Characters that change how text around them is shown without showing themselves: the
/// bidirectional controls (they can reorder what an admin reads) and zero-width ones.
pub fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// One value of an audit or log line (`key=value`), written so that no value can be read
/// as more than one field: an empty value is `-`; a value holding a space, `=`, `"`, `\\`,
/// a non-ASCII or control character (or `-` itself) is put in double quotes, with `"` and
/// `\\` escaped by a backslash and control and [`invisible`] characters as `\u{..}`. Every log line and
/// record event that carries a name or a client-supplied value goes through here.
pub fn field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.is_empty() {
        return "-".into();
    }
    let plain = value != "-"
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '=' && c != '"' && c != '\\');
    if plain {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() || invisible(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.push('"');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_fields_cannot_carry_another_field() {
        assert_eq!(field(""), "-");
        assert_eq!(field("sshd"), "sshd");
        assert_eq!(field("-"), "\"-\"");
        assert_eq!(
            field("sshd outcome=success user=root"),
            "\"sshd outcome=success user=root\""
        );
        assert_eq!(field("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(field("j\u{e9}r\u{f4}me"), "\"j\u{e9}r\u{f4}me\"");
        assert_eq!(field("x\" outcome=success"), "\"x\\\" outcome=success\"");
        // A right-to-left override or a zero-width space is shown, not obeyed.
        assert_eq!(field("a\u{202E}b"), "\"a\\u{202e}b\"");
        assert_eq!(field("a\u{200B}b"), "\"a\\u{200b}b\"");
    }
}
