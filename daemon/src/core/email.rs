// SPDX-License-Identifier: MIT OR Apache-2.0
//! Codes by email: the address (confirmed, or waiting for its confirming code), the one
//! code in force, the throttle, and the protocol of a send ([`send_code`]).
//!
//! Email is the weaker second factor (whoever reads the mailbox can log in with the
//! password alone); the docs say so, and a host allows it only with
//! `[policy] methods = [.., "email"]`.
//!
//! A send is three steps, so that no code is valid that the mail server did not take:
//! 1. one transaction checks the throttle (cooldown, hourly cap; kept in the record, so a
//!    restart does not reset it), records the send and drops the code in force (a new code
//!    invalidates the old one, whether or not the new one arrives);
//! 2. the code is mailed through the core's [`Outbox`](super::mail::Outbox), bounded by the
//!    `[mail]` timeout, never retried;
//! 3. only when the server accepted it, a second transaction stores the code's hash.
//!
//! A send that fails leaves no code and charges nothing to the lockout.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use twostep_config::{Mail, MethodName};
use zeroize::Zeroizing;

use super::audit::{field, LoginContext};
use super::mail::{self, Outgoing, SendError};
use super::record::Record;
use super::store::Write;
use super::users::Account;
use super::{Core, Error, UnixTime};

/// Longest address, in bytes (RFC 5321's path limit less the angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

/// Text when the code could not be sent.
pub const SEND_FAILED: &str = "could not send the code; use your authenticator or a recovery code";
/// Text when a code was sent moments ago (cooldown or hourly cap).
pub const THROTTLED: &str = "a code was sent recently; check your inbox";

/// The email part of a record.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmailState {
    /// The confirmed address: codes for logins go here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// An address waiting for its confirming code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<String>,
    /// The one code in force, hashed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<EmailCode>,
    /// When codes were mailed (sends started) within the last hour, oldest first: the
    /// throttle's state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sent: Vec<UnixTime>,
}

impl fmt::Debug for EmailState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailState")
            .field("address", &self.address)
            .field("pending", &self.pending)
            .field("code", &self.code.as_ref().map(|c| (c.purpose, c.expires)))
            .field("sent", &self.sent)
            .finish()
    }
}

impl EmailState {
    /// Nothing but throttle marks: the address, pending address and code are gone.
    pub fn forget_address(&mut self) {
        self.address = None;
        self.pending = None;
        self.code = None;
    }
}

/// What a code is for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Logging in, mailed to the confirmed address.
    Login,
    /// Confirming the pending address.
    Confirm,
}

/// A mailed code: SHA-256 of a random salt and the code, with its expiry. Why not argon2:
/// a code of 6–8 digits falls to any hash by brute force in moments; what protects it is
/// its short life, its single use and the lockout, and the hash only keeps it out of
/// backups and listings in plain form.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EmailCode {
    pub purpose: Purpose,
    /// Hex, 16 random bytes.
    pub salt: String,
    /// Hex SHA-256 of salt bytes ‖ code.
    pub hash: String,
    pub expires: UnixTime,
}

/// Check an address a user or admin typed: at most [`MAX_ADDRESS_LEN`] bytes, no control
/// characters (CR/LF never reach a header), not starting with `-` (never an option of a
/// sendmail command), and an address by lettre's parser. Returns it trimmed.
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is wrong.
pub fn check_address(address: &str) -> Result<String, Error> {
    let a = address.trim_matches(' ');
    let bad = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "not a usable email address: {why}"
        )))
    };
    if a.is_empty() {
        return bad("empty");
    }
    if a.len() > MAX_ADDRESS_LEN {
        return bad("longer than 254 bytes");
    }
    if a.chars().any(char::is_control) {
        return bad("it contains control characters");
    }
    if a.starts_with('-') {
        return bad("it starts with '-'");
    }
    match a.parse::<lettre::Address>() {
        Ok(_) => Ok(a.to_owned()),
        Err(_) => bad("expected local-part@domain"),
    }
}

/// `a***@example.com`: the first character of the local part, then `***`.
pub fn mask(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// Whether this host lets users use email codes.
pub fn allowed(core: &Core) -> bool {
    let c = core.settings().config();
    c.mail.enabled() && c.policy.methods.contains(&MethodName::Email)
}

/// Whether this host allows authenticator apps (enrolment at login offers them).
pub fn totp_allowed(core: &Core) -> bool {
    core.settings()
        .config()
        .policy
        .methods
        .contains(&MethodName::Totp)
}

fn random_hex(n: usize) -> Result<String, Error> {
    let mut raw = vec![0u8; n];
    getrandom::getrandom(&mut raw).map_err(|e| Error::Internal(format!("random source: {e}")))?;
    Ok(hex::encode(raw))
}

/// A new code of `digits` digits, uniformly drawn.
fn new_code(digits: u32) -> Result<Zeroizing<String>, Error> {
    let modulus = 10u64.pow(digits);
    // Why the bound: rejection sampling keeps every code equally likely.
    let limit = u64::MAX - u64::MAX % modulus;
    loop {
        let mut raw = [0u8; 8];
        getrandom::getrandom(&mut raw)
            .map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let v = u64::from_le_bytes(raw);
        if v < limit {
            let width = usize::try_from(digits).unwrap_or(8);
            return Ok(Zeroizing::new(format!("{:0width$}", v % modulus)));
        }
    }
}

fn hash(salt_hex: &str, code: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(hex::decode(salt_hex).unwrap_or_default());
    h.update(code);
    hex::encode(h.finalize())
}

/// Whether `answer` is the live code for `purpose` (constant-time comparison).
pub fn matches(state: &EmailState, purpose: Purpose, answer: &[u8], now: UnixTime) -> bool {
    let Some(code) = &state.code else {
        return false;
    };
    if code.purpose != purpose || code.expires <= now || answer.is_empty() {
        return false;
    }
    let got = hash(&code.salt, answer);
    bool::from(got.as_bytes().ct_eq(code.hash.as_bytes()))
}

/// Whether the throttle lets one more code go to this user now (pruning marks older than
/// an hour).
fn throttled(state: &mut EmailState, m: &Mail, now: UnixTime) -> bool {
    state.sent.retain(|t| t.plus(3600) > now && *t <= now);
    let cooling = state
        .sent
        .last()
        .is_some_and(|t| t.plus(m.cooldown_seconds.get()) > now);
    let capped = u64::try_from(state.sent.len()).unwrap_or(u64::MAX) >= m.max_per_hour.get();
    cooling || capped
}

/// How a send ended, for the caller to word.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The server took it: the code is in force; the masked address it went to.
    Sent(String),
    /// Throttled: nothing was sent; a code sent earlier may still be in force. The masked
    /// address.
    Throttled(String),
    /// The send failed: no code is in force.
    Failed(SendError),
}

/// Mail a new code for `purpose` to `account` (a login code to the confirmed address, a
/// confirming code to the pending one, which `new_address` sets first). `ctx` fills the
/// template's service and remote host.
///
/// # Errors
/// No address to send to ([`Error::NotEnrolled`]), store errors.
pub fn send_code(
    core: &Core,
    account: &Account,
    purpose: Purpose,
    new_address: Option<String>,
    ctx: &LoginContext,
    now: UnixTime,
) -> Result<Sent, Error> {
    let config = core.settings().config();
    let m = &config.mail;
    let target = core.update(account, |record| {
        let state = record.email.get_or_insert_with(EmailState::default);
        if let Some(a) = &new_address {
            if state.pending.as_ref() != Some(a) {
                // Why: a code for another address (or a login code) must not confirm this
                // one. The same address again keeps a code in force when throttled.
                state.code = None;
            }
            state.pending = Some(a.clone());
        }
        let to = match purpose {
            Purpose::Login => state.address.clone(),
            Purpose::Confirm => state.pending.clone(),
        };
        let Some(to) = to else {
            let keep = if new_address.is_some() {
                Write::Save
            } else {
                Write::Keep
            };
            return (keep, Err(Error::NotEnrolled(account.name.clone())));
        };
        if throttled(state, m, now) {
            let write = if new_address.is_some() {
                Write::Save
            } else {
                Write::Keep
            };
            return (write, Ok(Err(to)));
        }
        state.sent.push(now);
        state.code = None;
        (Write::Save, Ok(Ok(to)))
    })?;
    let to = match target {
        Ok(to) => to,
        Err(to) => {
            log::info!("user={} email-code=throttled", field(&account.name));
            return Ok(Sent::Throttled(mask(&to)));
        }
    };
    let code = new_code(u32::try_from(m.code_digits.get()).unwrap_or(6))?;
    let minutes = m.code_valid_seconds.get().div_ceil(60).to_string();
    let host = mail::host_name();
    let (subject, body) = mail::code_mail(
        m,
        &[
            ("user", &account.name),
            ("host", &host),
            ("code", &code),
            ("minutes", &minutes),
            (
                "service",
                if ctx.service.is_empty() {
                    "twostepctl"
                } else {
                    &ctx.service
                },
            ),
            (
                "rhost",
                if ctx.rhost.is_empty() {
                    "-"
                } else {
                    &ctx.rhost
                },
            ),
        ],
    );
    let mail = Outgoing {
        to: to.clone(),
        subject,
        body,
    };
    if let Err(e) = core.outbox().send(m, mail) {
        log::warn!(
            "user={} email-code=send-failed reason={}",
            field(&account.name),
            field(&e.to_string())
        );
        return Ok(Sent::Failed(e));
    }
    let salt = random_hex(16)?;
    let stored = EmailCode {
        purpose,
        hash: hash(&salt, code.as_bytes()),
        salt,
        expires: now.plus(m.code_valid_seconds.get()),
    };
    core.update(account, |record| {
        let state = record.email.get_or_insert_with(EmailState::default);
        let still = match purpose {
            Purpose::Login => state.address.as_deref() == Some(to.as_str()),
            Purpose::Confirm => state.pending.as_deref() == Some(to.as_str()),
        };
        if !still {
            // The address changed while the mail was out: that code confirms nothing.
            return (Write::Keep, Ok(()));
        }
        state.code = Some(stored);
        (Write::Save, Ok(()))
    })?;
    log::info!(
        "user={} email-code=sent purpose={purpose:?}",
        field(&account.name)
    );
    Ok(Sent::Sent(mask(&to)))
}

/// The user's text for a send that did not put a code in force.
pub fn refusal(sent: &Sent) -> Option<&'static str> {
    match sent {
        Sent::Sent(_) => None,
        Sent::Throttled(_) => Some(THROTTLED),
        Sent::Failed(_) => Some(SEND_FAILED),
    }
}

/// Whether `record` has a confirmed address.
pub fn has_address(record: &Record) -> bool {
    record.email.as_ref().is_some_and(|e| e.address.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked() {
        assert_eq!(
            check_address(" ann@example.com ").unwrap(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann@example.com\r\nBcc: eve@example.org",
            "ann\n@example.com",
            "-oQ/tmp@example.com",
            "no-at-sign",
            "a@",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(check_address(&long).is_err());
    }

    #[test]
    fn masks_keep_the_first_character_and_the_domain() {
        assert_eq!(mask("ann@example.com"), "a***@example.com");
        assert_eq!(mask("x"), "***");
    }

    #[test]
    fn codes_have_their_digits_and_match_once_hashed() {
        for d in 6..=8 {
            let c = new_code(d).unwrap();
            assert_eq!(c.len(), d as usize);
            assert!(c.bytes().all(|b| b.is_ascii_digit()));
        }
        let salt = random_hex(16).unwrap();
        let state = EmailState {
            code: Some(EmailCode {
                purpose: Purpose::Login,
                hash: hash(&salt, b"123456"),
                salt,
                expires: UnixTime(100),
            }),
            ..EmailState::default()
        };
        assert!(matches(&state, Purpose::Login, b"123456", UnixTime(99)));
        assert!(
            !matches(&state, Purpose::Login, b"123456", UnixTime(100)),
            "expired"
        );
        assert!(!matches(&state, Purpose::Confirm, b"123456", UnixTime(99)));
        assert!(!matches(&state, Purpose::Login, b"123457", UnixTime(99)));
        assert!(!format!("{state:?}").contains(&state.code.as_ref().unwrap().hash));
    }

    #[test]
    fn throttle_has_a_cooldown_and_an_hourly_cap() {
        let m = Mail::default();
        let mut s = EmailState::default();
        assert!(!throttled(&mut s, &m, UnixTime(10_000)));
        s.sent.push(UnixTime(10_000));
        assert!(throttled(&mut s, &m, UnixTime(10_059)));
        assert!(!throttled(&mut s, &m, UnixTime(10_060)));
        s.sent = (0..10).map(|i| UnixTime(10_000 + i * 60)).collect();
        assert!(throttled(&mut s, &m, UnixTime(10_000 + 9 * 60 + 61)));
        assert!(!throttled(&mut s, &m, UnixTime(13_601)), "an hour later");
        assert_eq!(s.sent.len(), 9);
    }
}
