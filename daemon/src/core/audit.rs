// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where a login comes from, and the one audit line per login outcome. Never a code.

use std::collections::HashMap;

use twostep_proto::limits;

use super::authz::Caller;
use super::users::Account;
use super::Error;

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
                Some(v) if v.len() > limits::MAX_CONTEXT_LEN || v.chars().any(char::is_control) => {
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
        })
    }
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

/// A record event for a login: what, and from which service and host.
pub fn login_event(what: &str, ctx: &LoginContext) -> String {
    format!(
        "{what} service={} rhost={}",
        field(&ctx.service),
        field(&ctx.rhost)
    )
}

/// One value of an audit or log line (`key=value`), written so that no value can be read
/// as more than one field: an empty value is `-`; a value holding a space, `=`, `"`, `\\`,
/// a non-ASCII or control character (or `-` itself) is put in double quotes, with `"` and
/// `\\` escaped by a backslash and control characters as `\u{..}`. Every log line and
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
            c if c.is_control() => out.extend(c.escape_unicode()),
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
        let ctx = LoginContext {
            service: "sshd outcome=success".into(),
            rhost: "x\" outcome=success".into(),
            tty: String::new(),
            app_password: false,
            forward_pass: false,
            audit_session: None,
        };
        assert_eq!(
            login_event("failed", &ctx),
            "failed service=\"sshd outcome=success\" rhost=\"x\\\" outcome=success\""
        );
    }
}
