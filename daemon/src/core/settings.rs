// SPDX-License-Identifier: MIT OR Apache-2.0
//! The configuration in force and what the core derives from it: lock policy, code
//! length, new keys, session bounds, the issuer shown in authenticator apps. Replaced whole
//! by a reload.

use std::sync::{Arc, PoisonError, RwLock};

use twostep_config::Config;

use super::audit::field;
use super::lockout::LockPolicy;
use super::login::SessionLimits;
use super::policy::{self, Requirement};
use super::record::{Record, TotpKey};
use super::users::{Account, Accounts};
use super::{totp, Error, UnixTime};

/// The configuration in force (swapped whole by [`Settings::apply`]) and the issuer name.
pub struct Settings {
    config: RwLock<Arc<Config>>,
    issuer: String,
}

impl Settings {
    /// Settings from `config`; the issuer is `[totp] issuer` or the host name (`:` is
    /// replaced, it separates issuer and account in an otpauth label).
    pub fn new(config: Config) -> Settings {
        let issuer = if config.totp.issuer.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "twostep".into())
        } else {
            config.totp.issuer.clone()
        }
        .replace(':', "-");
        Settings {
            config: RwLock::new(Arc::new(config)),
            issuer,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The issuer shown in authenticator apps.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The lockout rules in force.
    pub fn lock_policy(&self) -> LockPolicy {
        LockPolicy::from_config(&self.config().lockout)
    }

    /// Digits of a code of a new key.
    pub fn digits(&self) -> u8 {
        u8::try_from(self.config().totp.digits.get()).unwrap_or(6)
    }

    /// The bounds on login conversations.
    pub fn session_limits(&self) -> SessionLimits {
        SessionLimits::from_config(&self.config())
    }

    /// Seconds a login prompt waits for its answer.
    pub fn prompt_seconds(&self) -> u64 {
        self.config().login.prompt_timeout_seconds.get()
    }

    /// A new TOTP key with the configured parameters.
    ///
    /// # Errors
    /// [`Error::Internal`] when the random source fails.
    pub fn new_key(&self, now: UnixTime) -> Result<TotpKey, Error> {
        let c = self.config();
        totp::new_key(c.totp.algorithm, self.digits(), c.totp.period.get(), now)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Whether `account` must use 2FA, decided for its uid, not for the name used: every
    /// name the account is known by (the name used, the uid's name from `accounts`, the
    /// name on the record, the uid's further names, each confirmed to have this uid) is
    /// looked at; required if any name's groups make it required, exempt only if all are
    /// exempt. An admin override decides alone. With `require = "groups"`, a configured
    /// group that no longer exists fails closed (logged): its members would silently not
    /// be asked.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when a look-up fails or a required group is gone.
    pub fn requirement(
        &self,
        accounts: &dyn Accounts,
        account: &Account,
        record: &Record,
    ) -> Result<Requirement, Error> {
        self.requirement_under(&self.config().policy, accounts, account, record)
    }

    /// [`Settings::requirement`] under `policy` instead of `[policy]` (a service's
    /// `second_factor = "required"`, `core::services`).
    ///
    /// # Errors
    /// As [`Settings::requirement`].
    pub fn requirement_under(
        &self,
        policy: &twostep_config::Policy,
        accounts: &dyn Accounts,
        account: &Account,
        record: &Record,
    ) -> Result<Requirement, Error> {
        if record.policy_override != policy::Override::Default {
            return Ok(policy::requirement(policy, record.policy_override, &[]));
        }
        if policy.require == twostep_config::Require::Groups {
            for group in &policy.groups {
                if !accounts.group_exists(group)? {
                    log::error!(
                        "uid={} group={} outcome=denied reason=\"this required group no longer \
                         exists; users not enrolled cannot log in until it is restored or \
                         removed from policy.groups\"",
                        account.uid,
                        field(group)
                    );
                    return Err(Error::Unavailable(format!(
                        "required group {group:?} does not exist; ask an administrator"
                    )));
                }
            }
        }
        let mut names = vec![account.name.clone()];
        let canonical = accounts.by_uid(account.uid)?.name;
        let further = accounts.other_names(account.uid)?;
        for name in [canonical, record.user.clone()].into_iter().chain(further) {
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        let mut exempt = None;
        for name in &names {
            let groups = if *name == account.name {
                accounts.group_names(account)?
            } else {
                match accounts.by_name(name) {
                    Ok(other) if other.uid == account.uid => accounts.group_names(&other)?,
                    // A record name that no longer has this uid: check_identity refuses it.
                    Ok(_) | Err(Error::UnknownUser(_) | Error::InvalidArgument(_)) => continue,
                    Err(e) => return Err(e),
                }
            };
            let r = policy::requirement(policy, record.policy_override, &groups);
            if r.required {
                return Ok(r);
            }
            exempt.get_or_insert(r);
        }
        Ok(exempt.unwrap_or_else(|| policy::requirement(policy, record.policy_override, &[])))
    }

    /// Put `config` in force. `[daemon]` (state_dir, bus) needs a restart; a change to it
    /// is refused and nothing changes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a change to `[daemon]`.
    pub fn apply(&self, config: Config) -> Result<(), Error> {
        let mut current = self.config.write().unwrap_or_else(PoisonError::into_inner);
        if config.daemon != current.daemon {
            return Err(Error::InvalidArgument(
                "[daemon] state_dir and bus change only with a restart; nothing was reloaded"
                    .into(),
            ));
        }
        if config.store != current.store {
            return Err(Error::InvalidArgument(
                "[store] changes only with a restart (the store key files themselves are \
                 re-read at every reload); nothing was reloaded"
                    .into(),
            ));
        }
        *current = Arc::new(config);
        Ok(())
    }
}
