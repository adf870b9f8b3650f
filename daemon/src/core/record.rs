// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the daemon keeps per user.

use std::fmt;

use serde::{Deserialize, Serialize};
use twostep_config::Algorithm;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::policy::Override;
use super::recovery::StoredCode;
use super::UnixTime;

/// How many recent events a record keeps for `twostepctl user show`.
pub const MAX_EVENTS: usize = 20;

/// Current format of [`Record`].
pub const RECORD_VERSION: u32 = 1;

/// One user's state. Unknown fields are refused: a record this daemon does not fully
/// understand fails closed for that user.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
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
    /// The confirmed authenticator, if any.
    pub totp: Option<TotpKey>,
    /// An enrolment waiting for its confirming code.
    pub pending: Option<Pending>,
    /// Highest time step accepted so far: it and every earlier step are refused (replay).
    pub last_step: Option<u64>,
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
}

/// Something that happened to the user's second factor.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub at: UnixTime,
    pub what: String,
}

impl Record {
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

    /// Remember an event, keeping the latest [`MAX_EVENTS`].
    pub fn note(&mut self, at: UnixTime, what: impl Into<String>) {
        self.events.push(Event {
            at,
            what: what.into(),
        });
        let excess = self.events.len().saturating_sub(MAX_EVENTS);
        self.events.drain(..excess);
    }

    /// Forget every factor (the user enrols again); overrides stay.
    pub fn forget_factors(&mut self) {
        self.totp = None;
        self.pending = None;
        self.recovery.clear();
        self.failures = 0;
        self.last_failure = None;
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

/// A started, unconfirmed enrolment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub key: TotpKey,
    pub expires: UnixTime,
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
        r.totp = Some(key.clone());
        r.pending = Some(Pending {
            key,
            expires: UnixTime(2),
        });
        let shown = format!("{r:?} {r:#?}");
        assert!(!shown.contains("GEZDG"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }
}
