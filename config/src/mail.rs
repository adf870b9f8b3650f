// SPDX-License-Identifier: MIT OR Apache-2.0
//! `[mail]`: how twostepd sends mail (codes by email, account notices) and what it says.
//!
//! Two transports: `smtp` (a relay by host and port, TLS by STARTTLS or implicit TLS, plain
//! only to a loopback address; an optional login whose password is read from a root-only
//! file, never written here; a CA file for a private relay) and `sendmail` (the host's MTA
//! through its `sendmail` command). `none` (the default) sends nothing: email codes and
//! account mail are then unavailable.
//!
//! The positionless checks ([`Mail::contradictions`]) run with the other contradictions in
//! [`crate::Config::parse`]; the files named here are checked by the daemon's loader
//! (owner and mode need the file system).

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Bounded;

/// The placeholders a template may use: `{user}` (account name), `{host}` (this host's
/// name), `{code}` (the emailed code), `{minutes}` (minutes it stays valid), `{service}`
/// (the PAM service, e.g. `sshd`), `{rhost}` (the remote host, or `-`).
pub const PLACEHOLDERS: [&str; 6] = ["user", "host", "code", "minutes", "service", "rhost"];

/// How mail leaves the host.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// No mail: the `email` method and account mail are off.
    #[default]
    None,
    /// An SMTP relay (`host`, `port`, `tls`, …).
    Smtp,
    /// The host's MTA through `sendmail_command`.
    Sendmail,
}

/// TLS towards the SMTP relay. There is never a fall-back to plain text.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain connection upgraded by STARTTLS, which the server must offer (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain text: only to a loopback address (a local relay), never over a network.
    None,
}

impl TlsMode {
    /// The standard port of the mode: 587, 465, 25.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
            TlsMode::None => 25,
        }
    }
}

/// `[mail]`
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Mail {
    /// `none` (default), `smtp` or `sendmail`.
    pub transport: Transport,
    /// SMTP relay host name or address (also the name its certificate must carry).
    pub host: String,
    /// SMTP port; 0 (default) means the TLS mode's standard port (587, 465, 25).
    pub port: Bounded<0, 65535>,
    /// `starttls` (default), `tls`, or `none` (only when `host` is a loopback address).
    pub tls: TlsMode,
    /// SMTP login name; empty (default): no login.
    pub username: String,
    /// With `username`: the file holding the password (first line), owned by root and not
    /// readable by group or others. Absolute. The password is never written in this file.
    pub password_file: String,
    /// A PEM file of CA certificates trusted in addition to the system's (a private relay).
    /// Absolute; empty (default): the system's CAs only.
    pub ca_file: String,
    /// With `transport = "sendmail"`: the MTA's sendmail command. Absolute.
    pub sendmail_command: PathBuf,
    /// The sender address of every mail; required when mail is on.
    pub from: String,
    /// Seconds one send may take in all (connect, TLS, every SMTP command), 1 to 30;
    /// keep it below pam_twostep's `timeout=` (default 10). Default 5.
    pub timeout_seconds: Bounded<1, 30>,
    /// Digits of an emailed code, 6 to 8. Default 6.
    pub code_digits: Bounded<6, 8>,
    /// How long an emailed code is valid, in seconds (60 to 3600). Default 600.
    pub code_valid_seconds: Bounded<60, 3600>,
    /// Seconds between two codes mailed to one user (0 to 3600). Default 60.
    pub cooldown_seconds: Bounded<0, 3600>,
    /// Codes mailed to one user per hour (1 to 100). Default 10.
    pub max_per_hour: Bounded<1, 100>,
    /// What a user with an authenticator app and an address types at the code prompt to
    /// get a code by email instead: 8 to 16 bytes of lower-case letters and dashes, with at
    /// least one dash (so it is never a code or a recovery code, and every pam_twostep
    /// sends it as the text alternative of a code-or-recovery prompt). Default `by-email`.
    /// Why not an empty answer: pam_twostep ends the conversation on an empty answer
    /// before the daemon sees it (`pam_module/src/flow.rs`), old modules included, so an
    /// empty answer would need a new answer shape that every older module refuses.
    pub request_word: String,
    /// Subject of a code mail (placeholders as [`PLACEHOLDERS`]).
    pub code_subject: String,
    /// Body of a code mail; must contain `{code}`.
    pub code_body: String,
    /// Mail the user when the account is locked after failed attempts. Default true.
    pub notify_locked: bool,
    /// Mail the user when 2FA is switched off or reset (by the user or an admin). Default true.
    pub notify_disabled: bool,
    /// Mail the user when an authenticator or an email address is added or removed.
    /// Default true.
    pub notify_method_changed: bool,
    /// Mail the user when recovery codes are running low (2 or fewer left). Default true.
    pub notify_recovery_low: bool,
    /// Mail the user at a successful login that follows failed attempts. Default true.
    pub notify_failed_logins: bool,
}

/// Default subject of a code mail.
pub const DEFAULT_CODE_SUBJECT: &str = "Your {host} login code";
/// Default body of a code mail.
pub const DEFAULT_CODE_BODY: &str = "Your code for logging in to {host} as {user} ({service} from {rhost}) is {code}.\nIt is valid for {minutes} minutes and works once.\nIf this was not you, your password may be known to someone else: change it.";

impl Default for Mail {
    fn default() -> Self {
        Mail {
            transport: Transport::None,
            host: String::new(),
            port: Bounded::new(0),
            tls: TlsMode::Starttls,
            username: String::new(),
            password_file: String::new(),
            ca_file: String::new(),
            sendmail_command: PathBuf::from("/usr/sbin/sendmail"),
            from: String::new(),
            timeout_seconds: Bounded::new(5),
            code_digits: Bounded::new(6),
            code_valid_seconds: Bounded::new(600),
            cooldown_seconds: Bounded::new(60),
            max_per_hour: Bounded::new(10),
            request_word: "by-email".into(),
            code_subject: DEFAULT_CODE_SUBJECT.into(),
            code_body: DEFAULT_CODE_BODY.into(),
            notify_locked: true,
            notify_disabled: true,
            notify_method_changed: true,
            notify_recovery_low: true,
            notify_failed_logins: true,
        }
    }
}

/// A verification method a host may allow (`[policy] methods`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum MethodName {
    /// Authenticator apps (RFC 6238).
    Totp,
    /// Codes by email (needs `[mail]`).
    Email,
}

impl Mail {
    /// Whether mail is configured at all.
    pub fn enabled(&self) -> bool {
        self.transport != Transport::None
    }

    /// The port in use: `port`, or the TLS mode's standard one.
    pub fn effective_port(&self) -> u16 {
        match u16::try_from(self.port.get()) {
            Ok(0) | Err(_) => self.tls.default_port(),
            Ok(p) => p,
        }
    }

    /// Settings that cannot work together, or that would weaken what they promise.
    pub fn contradictions(&self) -> Option<String> {
        let bad = |m: String| Some(format!("[mail] {m}"));
        for (name, t) in [
            ("code_subject", &self.code_subject),
            ("code_body", &self.code_body),
        ] {
            if let Err(e) = check_template(t) {
                return bad(format!("{name}: {e}"));
            }
        }
        if self.code_subject.contains(['\r', '\n']) {
            return bad("code_subject must be one line".into());
        }
        if !self.code_body.contains("{code}") {
            return bad("code_body must contain {code}".into());
        }
        let w = &self.request_word;
        if !(8..=16).contains(&w.len())
            || !w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            || !w.contains('-')
        {
            return bad(
                "request_word must be 8 to 16 lower-case letters and dashes, with a dash".into(),
            );
        }
        if !self.enabled() {
            return None;
        }
        if self.from.is_empty() || self.from.contains(['\r', '\n']) || self.from.starts_with('-') {
            return bad("from must be set to the sender address (one line)".into());
        }
        for (name, path) in [
            ("password_file", &self.password_file),
            ("ca_file", &self.ca_file),
        ] {
            if !path.is_empty() && !path.starts_with('/') {
                return bad(format!("{name} must be an absolute path"));
            }
        }
        match self.transport {
            Transport::Smtp => self.smtp_contradictions().and_then(bad),
            Transport::Sendmail if !self.sendmail_command.is_absolute() => {
                bad("sendmail_command must be an absolute path".into())
            }
            _ => None,
        }
    }

    fn smtp_contradictions(&self) -> Option<String> {
        if self.host.is_empty() {
            return Some("transport = \"smtp\" needs host".into());
        }
        if self.username.is_empty() != self.password_file.is_empty() {
            return Some("username and password_file go together".into());
        }
        if self.tls == TlsMode::None && !is_loopback(&self.host) {
            return Some(format!(
                "tls = \"none\" sends in plain text: only to a loopback address \
                 (127.0.0.1, ::1, localhost), not to {:?}; use starttls or tls",
                self.host
            ));
        }
        if self.tls == TlsMode::None && !self.username.is_empty() {
            return Some("a login (username) needs tls = \"starttls\" or \"tls\"".into());
        }
        None
    }
}

/// Whether `host` names the loopback interface: `localhost` or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Check that `template` uses only [`PLACEHOLDERS`] (`{name}`) and no other braces.
///
/// # Errors
/// A sentence naming the unknown placeholder or the stray brace.
pub fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err("a '}' without its '{'".into());
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err("a '{' without its '}'".into());
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; known: {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
            ));
        }
        rest = &after[close + 1..];
    }
    Ok(())
}

/// Fill `template`'s placeholders from `values` (`(name, value)` pairs). Checked templates
/// only ([`check_template`]); an unknown placeholder is left as written.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, crate::ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    const SMTP: &str = "[mail]\ntransport = \"smtp\"\nfrom = \"twostep@example.org\"\n";

    #[test]
    fn defaults_send_nothing_and_allow_totp_only() {
        let c = parse("").unwrap();
        assert!(!c.mail.enabled());
        assert_eq!(c.policy.methods, vec![MethodName::Totp]);
        assert_eq!(c.mail.effective_port(), 587);
    }

    #[test]
    fn plain_text_only_to_loopback() {
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.8.9.10"] {
            let t = format!("{SMTP}host = \"{host}\"\ntls = \"none\"\n");
            assert!(parse(&t).is_ok(), "{host}");
        }
        for host in ["mail.example.org", "192.0.2.1", "localhost.example.org"] {
            let t = format!("{SMTP}host = \"{host}\"\ntls = \"none\"\n");
            let e = parse(&t).unwrap_err();
            assert!(e.message.contains("only to a loopback"), "{host}: {e}");
        }
        let t = format!("{SMTP}host = \"mail.example.org\"\n");
        assert_eq!(parse(&t).unwrap().mail.effective_port(), 587);
    }

    #[test]
    fn mail_settings_that_cannot_work_are_errors() {
        let cases = [
            ("[mail]\ntransport = \"smtp\"\nhost = \"h\"\n", "from must be set"),
            (SMTP, "needs host"),
            (
                &format!("{SMTP}host = \"h\"\nusername = \"u\"\n"),
                "go together",
            ),
            (
                &format!("{SMTP}host = \"h\"\npassword_file = \"rel/pw\"\nusername = \"u\"\n"),
                "absolute",
            ),
            (
                &format!("{SMTP}host = \"::1\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"/p\"\n"),
                "needs tls",
            ),
            (
                "[mail]\ntransport = \"sendmail\"\nfrom = \"a@b\"\nsendmail_command = \"sendmail\"\n",
                "absolute",
            ),
            ("[mail]\ncode_body = \"no code here\"\n", "must contain {code}"),
            ("[mail]\ncode_subject = \"{nope}\"\n", "unknown placeholder {nope}"),
            ("[mail]\ncode_body = \"{code\"\n", "without its '}'"),
            ("[mail]\ncode_subject = \"a\\nb {code}\"\n", "one line"),
            ("[mail]\nrequest_word = \"email\"\n", "request_word"),
            ("[mail]\nrequest_word = \"byemailplease\"\n", "request_word"),
            ("[mail]\nrequest_word = \"by-mail-2\"\n", "request_word"),
            ("[policy]\nmethods = [\"email\"]\n", "needs [mail]"),
            ("[policy]\nmethods = []\n", "at least one"),
        ];
        for (text, needle) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
        assert!(parse("[policy]\nmethods = [\"sms\"]\n")
            .unwrap_err()
            .message
            .contains("unknown variant"));
        let ok = format!(
            "{SMTP}host = \"mail.example.org\"\n[policy]\nmethods = [\"totp\", \"email\"]\n"
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn templates_fill_known_placeholders() {
        assert_eq!(
            fill(
                "{user} on {host}: {code} {x}",
                &[("user", "a"), ("host", "h"), ("code", "1")]
            ),
            "a on h: 1 {x}"
        );
        assert!(check_template(DEFAULT_CODE_BODY).is_ok());
        assert!(check_template(DEFAULT_CODE_SUBJECT).is_ok());
        assert!(check_template("}").is_err());
    }
}
