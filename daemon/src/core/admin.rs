// SPDX-License-Identifier: MIT OR Apache-2.0
//! Admin operations: root, or members of the configured admin group.

use twostep_config::Config;

use super::engine::{check_identity, Caller, Core};
use super::lockout;
use super::policy::{self, Override};
use super::record::{Event, Record};
use super::recovery;
use super::selfservice::locked_until;
use super::users::{self, Account};
use super::{authz, Error, UnixTime};

/// One user as an admin sees it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    /// The name the record was made under (differs for another name of the same uid, or a
    /// former account whose uid was re-used; then `error` says so).
    pub enrolled_as: String,
    pub enrolled: bool,
    pub pending: bool,
    pub recovery_left: usize,
    pub required: bool,
    pub why: String,
    pub policy_override: String,
    pub may_toggle: bool,
    pub failures: u32,
    pub locked_until: u64,
    pub last_success: u64,
    pub last_failure: u64,
    /// Set when the record cannot be read: the user's logins fail closed.
    pub error: String,
    pub events: Vec<Event>,
}

/// An admin action on one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forget every factor: the user enrols again (at next login if required).
    Reset,
    /// Switch 2FA off (same effect; if policy still requires it, they enrol again).
    Disable,
    Require(Override),
    /// `None`: follow the config.
    Toggle(Option<bool>),
    Unlock,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Reset => "reset",
            Action::Disable => "disable",
            Action::Require(Override::Required) => "require",
            Action::Require(Override::Exempt) => "exempt",
            Action::Require(Override::Default) => "default",
            Action::Toggle(Some(true)) => "allow-toggle",
            Action::Toggle(Some(false)) => "deny-toggle",
            Action::Toggle(None) => "default-toggle",
            Action::Unlock => "unlock",
        }
    }
}

impl Core {
    /// # Errors
    /// [`Error::AccessDenied`] unless root or in `admin_group`.
    pub fn authorize_admin(&self, caller: &Caller) -> Result<(), Error> {
        if caller.uid == 0 {
            return Ok(());
        }
        let admin_group = self.config().policy.admin_group.clone();
        let groups = match users::by_uid(caller.uid) {
            Ok(account) if !admin_group.is_empty() => users::group_names(&account)?,
            _ => Vec::new(),
        };
        authz::may_admin(caller.uid, &groups, &admin_group)
    }

    /// What an admin sees of `account` (the record read as stored; a record of a former
    /// account is shown, with the reason its logins fail in `error`).
    fn info(&self, account: &Account, now: UnixTime) -> UserInfo {
        let name = account.name.as_str();
        let record = match self.with_user(account.uid, || self.load_unchecked(account)) {
            Ok(r) => r.unwrap_or_else(|| Record::for_account(name, account.uid)),
            Err(e) => {
                return UserInfo {
                    name: name.to_owned(),
                    uid: account.uid,
                    error: e.to_string(),
                    ..UserInfo::default()
                }
            }
        };
        let identity = check_identity(account, &record);
        let requirement = identity
            .as_ref()
            .map_err(|e| Error::Busy(e.to_string()))
            .and_then(|()| self.requirement(account, &record))
            .unwrap_or_else(|e| policy::Requirement {
                required: false,
                why: e.to_string(),
            });
        let config = self.config();
        UserInfo {
            name: name.to_owned(),
            uid: account.uid,
            enrolled_as: record.user.clone(),
            enrolled: record.totp.is_some(),
            pending: record.pending.as_ref().is_some_and(|p| p.expires > now),
            recovery_left: recovery::left(&record.recovery),
            may_toggle: policy::may_toggle(&config.policy, record.may_toggle, &requirement),
            required: requirement.required,
            why: requirement.why,
            policy_override: format!("{:?}", record.policy_override).to_lowercase(),
            failures: record.failures,
            locked_until: locked_until(lockout::state(&record, now, &self.lock_policy())),
            last_success: record.last_success.map_or(0, |t| t.0),
            last_failure: record.last_failure.map_or(0, |t| t.0),
            error: identity.err().map(|e| e.to_string()).unwrap_or_default(),
            events: record.events,
        }
    }

    /// Every user with a record.
    ///
    /// # Errors
    /// Not an admin, or the store cannot be listed.
    pub fn admin_list(&self, caller: &Caller, now: UnixTime) -> Result<Vec<UserInfo>, Error> {
        self.authorize_admin(caller)?;
        let uids = self.store.users().map_err(Error::Busy)?;
        Ok(uids
            .into_iter()
            .map(|uid| self.info_of_uid(uid, now))
            .collect())
    }

    /// [`Core::info`] of a record found by its uid: the account is the name the record was
    /// made under if NSS still gives it this uid, otherwise whoever has the uid now.
    fn info_of_uid(&self, uid: u32, now: UnixTime) -> UserInfo {
        let stored = self.with_user(uid, || self.store.load(uid));
        let made_under = match &stored {
            Ok(Some(r)) => r.user.clone(),
            Ok(None) => String::new(),
            Err(e) => {
                return UserInfo {
                    name: format!("uid {uid}"),
                    uid,
                    error: e.to_string(),
                    ..UserInfo::default()
                }
            }
        };
        let account = match users::by_name(&made_under) {
            Ok(a) if a.uid == uid => a,
            _ => match users::by_uid(uid) {
                Ok(a) => a,
                Err(_) => {
                    return UserInfo {
                        name: made_under.clone(),
                        uid,
                        enrolled_as: made_under,
                        error: format!(
                            "no account has uid {uid} any more; `twostepctl user reset` applies \
                             once one does"
                        ),
                        ..UserInfo::default()
                    }
                }
            },
        };
        self.info(&account, now)
    }

    /// One user (who need not have a record yet).
    ///
    /// # Errors
    /// Not an admin, or no such user.
    pub fn admin_show(
        &self,
        caller: &Caller,
        name: &str,
        now: UnixTime,
    ) -> Result<UserInfo, Error> {
        self.authorize_admin(caller)?;
        let account = users::by_name(name)?;
        Ok(self.info(&account, now))
    }

    /// Apply `action` to `name`.
    ///
    /// # Errors
    /// Not an admin, no such user, an unreadable record, a failed write.
    pub fn admin_act(
        &self,
        caller: &Caller,
        name: &str,
        action: Action,
        now: UnixTime,
    ) -> Result<(), Error> {
        self.authorize_admin(caller)?;
        let account: Account = users::by_name(name)?;
        if action == Action::Reset {
            self.replace_former_record(caller, &account, now)?;
        }
        self.update(&account, |r| {
            match action {
                Action::Reset | Action::Disable => r.forget_factors(),
                Action::Require(o) => r.policy_override = o,
                Action::Toggle(t) => r.may_toggle = t,
                Action::Unlock => {
                    r.failures = 0;
                    r.last_failure = None;
                }
            }
            r.note(
                now,
                format!("admin {} by uid {}", action.name(), caller.uid),
            );
            Ok(((), true))
        })?;
        log::info!(
            "admin_uid={} user={} action={} outcome=done",
            caller.uid,
            account.name,
            action.name()
        );
        Ok(())
    }

    /// A reset of an account whose uid carries a former account's record (see
    /// `engine::check_identity`): the record is replaced by a fresh one of this account, so
    /// the old enrolment, counters and overrides are gone and nothing is inherited.
    fn replace_former_record(
        &self,
        caller: &Caller,
        account: &Account,
        now: UnixTime,
    ) -> Result<(), Error> {
        self.with_user(account.uid, || {
            let Some(old) = self.load_unchecked(account)? else {
                return Ok(());
            };
            match check_identity(account, &old) {
                Err(Error::FormerAccount { .. }) => {}
                other => return other,
            }
            let mut fresh = Record::for_account(&account.name, account.uid);
            fresh.note(
                now,
                format!(
                    "admin reset by uid {}: record of former account {:?} dropped",
                    caller.uid, old.user
                ),
            );
            self.store.save(&fresh)?;
            log::warn!(
                "admin_uid={} user={} uid={} action=reset outcome=former-record-dropped enrolled_as={}",
                caller.uid,
                account.name,
                account.uid,
                old.user
            );
            Ok(())
        })
    }

    /// Put `config` in force (policy, TOTP parameters for new keys, lockout, recovery).
    /// `state_dir` and `bus` need a restart; a change to them is refused.
    ///
    /// # Errors
    /// Not an admin, or a change that needs a restart.
    pub fn reload(&self, caller: &Caller, config: Config) -> Result<(), Error> {
        self.authorize_admin(caller)?;
        let current = self.config();
        if config.daemon != current.daemon {
            return Err(Error::InvalidArgument(
                "[daemon] state_dir and bus change only with a restart; nothing was reloaded"
                    .into(),
            ));
        }
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::sync::Arc::new(config);
        log::info!("admin_uid={} action=reload outcome=done", caller.uid);
        Ok(())
    }
}
