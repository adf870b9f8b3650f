// SPDX-License-Identifier: MIT OR Apache-2.0
//! Admin operations: root, or members of the configured admin group.

use twostep_config::Config;

use super::engine::{Caller, Core};
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

    fn info(&self, name: &str, now: UnixTime) -> UserInfo {
        let record = match self.with_user(name, || self.store.load(name)) {
            Ok(r) => r.unwrap_or_else(|| Record::new(name)),
            Err(e) => {
                return UserInfo {
                    name: name.to_owned(),
                    error: e.to_string(),
                    ..UserInfo::default()
                }
            }
        };
        let requirement = users::by_name(name)
            .and_then(|account| self.requirement(&account, &record))
            .unwrap_or_else(|e| policy::Requirement {
                required: false,
                why: e.to_string(),
            });
        let config = self.config();
        UserInfo {
            name: name.to_owned(),
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
            error: String::new(),
            events: record.events,
        }
    }

    /// Every user with a record.
    ///
    /// # Errors
    /// Not an admin, or the store cannot be listed.
    pub fn admin_list(&self, caller: &Caller, now: UnixTime) -> Result<Vec<UserInfo>, Error> {
        self.authorize_admin(caller)?;
        let names = self.store.users().map_err(Error::Busy)?;
        Ok(names.iter().map(|n| self.info(n, now)).collect())
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
        Ok(self.info(&account.name, now))
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
        self.update(&account.name, |r| {
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
