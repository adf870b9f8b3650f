// SPDX-License-Identifier: MIT OR Apache-2.0
//! The user summary, built once from a record: what `twostepctl status` shows the user and
//! what an admin sees in `user show` / `user list` (admin extras beside it in
//! `admin::UserInfo`). Both `User1.Status` and the admin dicts are written from it.

use twostep_config::Config;

use super::apppw_lock::{self, AppPasswordLockPolicy};
use super::clock_trouble::ClockNote;
use super::lockout::{self, locked_until, LockPolicy};
use super::policy::{self, Requirement};
use super::record::Record;
use super::recovery;
use super::UnixTime;

/// One authenticator as the user and admins see it (never its key).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthenticatorInfo {
    pub name: String,
    /// When it was confirmed, Unix seconds.
    pub added: u64,
    /// Its latest accepted code, Unix seconds; 0 = never.
    pub last_used: u64,
}

/// A user's second-factor state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserState {
    /// At least one confirmed authenticator.
    pub enrolled: bool,
    /// An enrolment (or an added authenticator) waits for its confirming code.
    pub pending: bool,
    pub recovery_left: usize,
    pub required: bool,
    pub may_toggle: bool,
    pub failures: u32,
    /// 0: not locked; `u64::MAX`: until an admin unlocks.
    pub locked_until: u64,
    /// Unix seconds; 0 = never.
    pub last_success: u64,
    /// Unix seconds; 0 = never.
    pub last_failure: u64,
    /// The confirmed authenticators, in the order they were added.
    pub authenticators: Vec<AuthenticatorInfo>,
    /// The confirmed address for codes by email; empty: none.
    pub email: String,
    /// An address waiting for its confirming code; empty: none.
    pub email_pending: String,
    /// Clock trouble seen at this user's logins (`clock_trouble`); `None`: none.
    pub clock: Option<ClockNote>,
    /// Wrong app passwords counted toward their own lock (`apppw_lock`).
    pub app_password_failures: u32,
    /// App passwords locked until, Unix seconds; 0: not locked.
    pub app_password_locked_until: u64,
}

impl UserState {
    /// The state of `record` at `now`, under `requirement` (from the settings) and the
    /// policy and lockout of `config` / `lock`.
    pub fn from_record(
        record: &Record,
        requirement: &Requirement,
        config: &Config,
        lock: &LockPolicy,
        now: UnixTime,
    ) -> UserState {
        UserState {
            enrolled: record.enrolled(),
            pending: record.pending.as_ref().is_some_and(|p| p.expires > now),
            recovery_left: recovery::left(&record.recovery),
            required: requirement.required,
            may_toggle: policy::may_toggle(&config.policy, record.may_toggle, requirement),
            failures: record.failures,
            locked_until: locked_until(lockout::state(record, now, lock)),
            last_success: record.last_success.map_or(0, |t| t.0),
            last_failure: record.last_failure.map_or(0, |t| t.0),
            authenticators: record
                .authenticators
                .iter()
                .map(|a| AuthenticatorInfo {
                    name: a.name.clone(),
                    added: a.added.0,
                    last_used: a.last_used.map_or(0, |t| t.0),
                })
                .collect(),
            email: email_field(record, |e| e.address.as_ref()),
            email_pending: email_field(record, |e| e.pending.as_ref()),
            clock: record.clock.clone(),
            app_password_failures: record
                .app_password_failures
                .as_ref()
                .map_or(0, |f| f.failures),
            app_password_locked_until: apppw_lock::locked_until(
                record,
                now,
                &AppPasswordLockPolicy::from_config(&config.app_passwords),
            )
            .map_or(0, |t| t.0),
        }
    }
}

fn email_field(
    record: &Record,
    f: impl Fn(&super::email::EmailState) -> Option<&String>,
) -> String {
    record
        .email
        .as_ref()
        .and_then(f)
        .cloned()
        .unwrap_or_default()
}
