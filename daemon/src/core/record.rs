// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the daemon keeps per user.

use std::fmt;

use serde::{Deserialize, Serialize};
use twostep_config::Algorithm;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::apppw::AppPassword;
use super::apppw_lock::AppPasswordFailures;
use super::audit::{EventKind, Source};
use super::clock_trouble::ClockNote;
use super::email::EmailState;
use super::policy::Override;
use super::recovery::StoredCode;
use super::services::Remembered;
use super::UnixTime;

/// How many recent events a record keeps for `twostepctl user show`.
pub const MAX_EVENTS: usize = 20;

/// Current format of [`Record`].
pub const RECORD_VERSION: u32 = 1;

/// Longest authenticator name, in bytes.
pub const MAX_AUTHENTICATOR_NAME: usize = 64;

/// The name an authenticator gets when none is given: the one made by `enroll` (or at
/// login), and the one a record of the single-key shape reads as.
pub const DEFAULT_AUTHENTICATOR: &str = "default";

/// One user's state. Unknown fields are refused: a record this daemon does not fully
/// understand fails closed for that user.
///
/// Read through [`OnDisk`]: a record of the earlier single-key shape (`totp` and a record-
/// wide `last_step`) reads as one authenticator named [`DEFAULT_AUTHENTICATOR`] carrying
/// that replay mark; every write is of the current shape (`authenticators`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, try_from = "OnDisk")]
pub struct Record {
    pub version: u32,
    /// The account name the record was made under, for listings and audit, and to tell a
    /// uid re-used by a new account after `userdel` from another name of the same account
    /// (see `engine::Core::check_identity`). File names never carry it.
    pub user: String,
    /// The account (uid) the record belongs to; its file is named by it. `None` only in
    /// records of the earlier, name-keyed layout, which are moved to their uid on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The confirmed authenticators, in the order they were added; empty: not enrolled.
    /// Names are unique within a record.
    #[serde(default)]
    pub authenticators: Vec<Authenticator>,
    /// An enrolment (or an added authenticator) waiting for its confirming code.
    pub pending: Option<Pending>,
    /// Consecutive failures: each evaluated wrong attempt is charged and made durable before
    /// it is answered; a success resets the count.
    pub failures: u32,
    pub last_failure: Option<UnixTime>,
    pub last_success: Option<UnixTime>,
    /// Recovery codes (hashed), used ones kept as spent.
    #[serde(default)]
    pub recovery: Vec<StoredCode>,
    /// An admin's required/exempt override.
    #[serde(default)]
    pub policy_override: Override,
    /// An admin's per-user "may switch 2FA off" setting; `None` follows the config.
    #[serde(default)]
    pub may_toggle: Option<bool>,
    /// When 2FA was first required at a login of this (not enrolled) user: the start of
    /// the enrolment grace period.
    #[serde(default)]
    pub required_since: Option<UnixTime>,
    /// The latest events, oldest first (never a code).
    #[serde(default)]
    pub events: Vec<Event>,
    /// App passwords (hashed), revoked and expired ones kept for listing (see `apppw`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_passwords: Vec<AppPassword>,
    /// Codes by email: the address, a pending one, the code in force, the throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailState>,
    /// Where the latest failed attempt came from (remote host or service), for the mail
    /// at the next successful login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure_from: Option<String>,
    /// Clock trouble seen at this user's logins (issue 20 item 10, `clock_trouble`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockNote>,
    /// Wrong app passwords, counted apart from `failures` (review M4, `apppw_lock`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_password_failures: Option<AppPasswordFailures>,
    /// Second factors remembered per service and place (`[services.NAME]
    /// remember_seconds`, see `core::services`), at most `services::MAX_REMEMBERED`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remembered: Vec<Remembered>,
}

/// Something that happened to the user's second factor: when, what, and who acted from
/// where ([`Source`]). Events of records written before `kind` and the source fields
/// existed read with them empty (shown as `-`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: UnixTime,
    pub what: String,
    /// What kind of event it is, in one word ([`EventKind`]).
    #[serde(default, skip_serializing_if = "EventKind::is_unknown")]
    pub kind: EventKind,
    /// See [`Source::service`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// See [`Source::rhost`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rhost: String,
    /// See [`Source::tty`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tty: String,
    /// See [`Source::method`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// See [`Source::actor`].
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub actor: String,
    /// See [`Source::actor_uid`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_uid: Option<u32>,
    /// See [`Source::caller_uid`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_uid: Option<u32>,
}

/// A record as stored, in either shape: the current one (`authenticators`) or the earlier
/// single-key one (`totp`, `last_step`). Both at once is refused (fails closed).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    user: String,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    authenticators: Option<Vec<Authenticator>>,
    /// Earlier shape: the one confirmed key.
    #[serde(default)]
    totp: Option<TotpKey>,
    /// Earlier shape: the record-wide replay mark.
    #[serde(default)]
    last_step: Option<u64>,
    pending: Option<Pending>,
    failures: u32,
    last_failure: Option<UnixTime>,
    last_success: Option<UnixTime>,
    #[serde(default)]
    recovery: Vec<StoredCode>,
    #[serde(default)]
    policy_override: Override,
    #[serde(default)]
    may_toggle: Option<bool>,
    #[serde(default)]
    required_since: Option<UnixTime>,
    #[serde(default)]
    events: Vec<Event>,
    #[serde(default)]
    app_passwords: Vec<AppPassword>,
    email: Option<EmailState>,
    #[serde(default)]
    last_failure_from: Option<String>,
    #[serde(default)]
    clock: Option<ClockNote>,
    #[serde(default)]
    app_password_failures: Option<AppPasswordFailures>,
    #[serde(default)]
    remembered: Vec<Remembered>,
}

impl TryFrom<OnDisk> for Record {
    type Error = String;

    fn try_from(d: OnDisk) -> Result<Record, String> {
        let authenticators = match (d.authenticators, d.totp) {
            (Some(_), Some(_)) => {
                return Err("record holds both `authenticators` and `totp`".into());
            }
            (Some(list), None) => {
                if d.last_step.is_some() {
                    return Err("record holds both `authenticators` and `last_step`".into());
                }
                for (i, a) in list.iter().enumerate() {
                    check_name(&a.name)?;
                    if list[..i].iter().any(|b| b.name == a.name) {
                        return Err("record holds two authenticators of one name".into());
                    }
                }
                list
            }
            (None, Some(key)) => vec![Authenticator {
                name: DEFAULT_AUTHENTICATOR.to_owned(),
                added: key.created,
                key,
                last_used: None,
                last_step: d.last_step,
            }],
            // Why a mark without a key is dropped: it only guarded the codes of a key
            // that is gone; a new key's codes were never used.
            (None, None) => Vec::new(),
        };
        // Every key must be usable before any answer is checked: otherwise a guess that
        // reached an unusable key would end in an error, uncharged, while the other keys
        // still accept codes.
        for key in authenticators
            .iter()
            .map(|a| &a.key)
            .chain(d.pending.iter().map(|p| &p.key))
        {
            super::totp::usable(key).map_err(|e| format!("a stored key is unusable: {e}"))?;
        }
        Ok(Record {
            version: d.version,
            user: d.user,
            uid: d.uid,
            authenticators,
            pending: d.pending,
            failures: d.failures,
            last_failure: d.last_failure,
            last_success: d.last_success,
            recovery: d.recovery,
            policy_override: d.policy_override,
            may_toggle: d.may_toggle,
            required_since: d.required_since,
            events: d.events,
            app_passwords: d.app_passwords,
            email: d.email,
            last_failure_from: d.last_failure_from,
            clock: d.clock,
            app_password_failures: d.app_password_failures,
            remembered: d.remembered,
        })
    }
}

/// Check an authenticator name: 1 to [`MAX_AUTHENTICATOR_NAME`] bytes of printable
/// characters (no control characters), not starting or ending with a space.
///
/// # Errors
/// A sentence saying what is wrong (the name itself is not repeated).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an authenticator name cannot be empty".into());
    }
    if name.len() > MAX_AUTHENTICATOR_NAME {
        return Err(format!(
            "an authenticator name has at most {MAX_AUTHENTICATOR_NAME} bytes"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("an authenticator name holds printable characters only".into());
    }
    if name.trim() != name {
        return Err("an authenticator name cannot start or end with a space".into());
    }
    Ok(())
}

impl Record {
    /// Enrolled: at least one confirmed authenticator, or a confirmed email address.
    pub fn enrolled(&self) -> bool {
        !self.authenticators.is_empty() || super::email::has_address(self)
    }

    /// The authenticator called `name`.
    pub fn authenticator(&self, name: &str) -> Option<&Authenticator> {
        self.authenticators.iter().find(|a| a.name == name)
    }

    /// The highest replay mark over every authenticator.
    pub fn highest_step(&self) -> Option<u64> {
        self.authenticators.iter().filter_map(|a| a.last_step).max()
    }

    /// Make `key` the one authenticator (named [`DEFAULT_AUTHENTICATOR`]), confirmed with
    /// time step `step` (of `key`'s own period) at `now`: a first enrolment or a move to a
    /// new phone. Its replay mark is `step`: the marks it replaces count steps of other
    /// keys — other secrets, perhaps other periods (`[totp] period` may have changed since),
    /// so carrying them over could put the new key's mark decades ahead.
    pub fn replace_authenticators(&mut self, key: TotpKey, step: u64, now: UnixTime) {
        self.authenticators = vec![Authenticator {
            name: DEFAULT_AUTHENTICATOR.to_owned(),
            key,
            added: now,
            last_used: None,
            last_step: Some(step),
        }];
    }

    /// An empty record of `user` without a uid (the earlier, name-keyed layout; tests and
    /// tools). The daemon makes records with [`Record::for_account`].
    pub fn new(user: &str) -> Record {
        Record {
            version: RECORD_VERSION,
            user: user.to_owned(),
            ..Record::default()
        }
    }

    /// An empty record of the account `uid`, made under the name `user`.
    pub fn for_account(user: &str, uid: u32) -> Record {
        Record {
            uid: Some(uid),
            ..Record::new(user)
        }
    }

    /// Remember an event of `kind` done by `from`, keeping the latest [`MAX_EVENTS`].
    pub fn note(&mut self, at: UnixTime, kind: EventKind, what: impl Into<String>, from: &Source) {
        let Source {
            service,
            rhost,
            tty,
            method,
            actor,
            actor_uid,
            caller_uid,
        } = from.clone();
        self.events.push(Event {
            at,
            what: what.into(),
            kind,
            service,
            rhost,
            tty,
            method,
            actor,
            actor_uid,
            caller_uid,
        });
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
    }

    /// Forget every factor (the user enrols again); overrides stay.
    pub fn forget_factors(&mut self) {
        self.authenticators.clear();
        self.pending = None;
        self.recovery.clear();
        // Why the throttle stays: switching off and on again must not reset it.
        if let Some(e) = &mut self.email {
            e.forget_address();
        }
        self.failures = 0;
        self.last_failure = None;
        self.remembered.clear();
    }
}

/// A TOTP key and its parameters.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TotpKey {
    pub secret: Secret,
    pub algorithm: Algorithm,
    pub digits: u8,
    pub period: u64,
    pub created: UnixTime,
}

impl fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpKey")
            .field("secret", &self.secret)
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("created", &self.created)
            .finish()
    }
}

/// One named authenticator (a phone app, a hardware OATH token, a password manager).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Authenticator {
    /// Unique within the record; see [`check_name`].
    pub name: String,
    pub key: TotpKey,
    /// When it was confirmed.
    pub added: UnixTime,
    /// Its latest accepted login or proof.
    #[serde(default)]
    pub last_used: Option<UnixTime>,
    /// Highest time step accepted from this authenticator: it and every earlier step are
    /// refused on it (replay); another authenticator's codes are not affected.
    #[serde(default)]
    pub last_step: Option<u64>,
}

/// A started, unconfirmed enrolment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub key: TotpKey,
    pub expires: UnixTime,
    /// `Some`: an authenticator of this name is being added beside the others
    /// (`authenticator add`); `None`: the key replaces them all (enrolment, new phone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A replay mark the key starts from when it is confirmed (set by a repair: a lost
    /// write may have used the key); in the key's own time steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_mark: Option<u64>,
}

/// Raw key bytes, stored base32; wiped on drop and never shown by `Debug`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let key = TotpKey {
            secret: Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: UnixTime(1),
        };
        let mut r = Record::new("alice");
        r.replace_authenticators(key.clone(), 1, UnixTime(1));
        r.pending = Some(Pending {
            key,
            expires: UnixTime(2),
            name: None,
            replay_mark: None,
        });
        let shown = format!("{r:?} {r:#?}");
        assert!(!shown.contains("GEZDG"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn a_record_with_any_unusable_key_is_unreadable_as_a_whole() {
        let good = TotpKey {
            secret: Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            created: UnixTime(1),
        };
        let base = {
            let mut r = Record::for_account("alice", 1000);
            r.replace_authenticators(good.clone(), 1, UnixTime(1));
            r
        };
        let round = |r: &Record| serde_json::from_str::<Record>(&serde_json::to_string(r).unwrap());
        assert!(round(&base).is_ok());
        let bad_keys = [
            TotpKey {
                secret: Secret("AAAA".into()),
                ..good.clone()
            },
            TotpKey {
                secret: Secret("not base32!".into()),
                ..good.clone()
            },
            TotpKey {
                digits: 9,
                ..good.clone()
            },
            TotpKey {
                period: 0,
                ..good.clone()
            },
        ];
        for bad in bad_keys {
            // As a second authenticator, behind a good one.
            let mut r = base.clone();
            r.authenticators.push(Authenticator {
                name: "second".into(),
                key: bad.clone(),
                added: UnixTime(1),
                last_used: None,
                last_step: None,
            });
            let e = round(&r).unwrap_err().to_string();
            assert!(e.contains("unusable"), "{e}");
            // As a pending key.
            let mut r = base.clone();
            r.pending = Some(Pending {
                key: bad,
                expires: UnixTime(2),
                name: None,
                replay_mark: None,
            });
            assert!(round(&r).is_err());
        }
    }
}
