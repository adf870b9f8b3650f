// SPDX-License-Identifier: MIT OR Apache-2.0
//! What users do for themselves: enrol, move to a new phone, new recovery codes, switch
//! off, status. The user is always the caller's own account (by uid); every change to an
//! active second factor needs a current code or a recovery code.

use zeroize::Zeroizing;

use super::engine::{field, Caller, Core, Factor};
use super::lockout::{self, LockState};
use super::policy;
use super::record::{Pending, Record};
use super::recovery;
use super::users::{self, Account};
use super::{totp, Error, UnixTime};

/// What `enroll_begin` hands the user, once.
pub struct PendingInfo {
    pub secret_base32: String,
    pub uri: String,
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    pub expires: UnixTime,
}

/// The caller's own state.
#[derive(Debug, PartialEq, Eq)]
pub struct Status {
    pub enrolled: bool,
    pub pending: bool,
    pub recovery_left: usize,
    pub required: bool,
    pub may_toggle: bool,
    pub failures: u32,
    /// 0: not locked; `u64::MAX`: until an admin unlocks.
    pub locked_until: u64,
    pub last_success: u64,
    pub last_failure: u64,
}

pub fn locked_until(state: LockState) -> u64 {
    match state {
        LockState::Open => 0,
        LockState::Until(t) => t.0,
        LockState::UntilUnlocked => u64::MAX,
    }
}

impl Core {
    /// Prove the caller holds a factor: a current code or an unused recovery code (which is
    /// spent). Counts against the lockout like a login.
    fn prove(&self, record: &mut Record, proof: &[u8], now: UnixTime) -> Result<(), Error> {
        match self.verify_factor(record, proof, now)? {
            Factor::Totp | Factor::Recovery { .. } => Ok(()),
            Factor::Wrong { tag, .. } => {
                log::info!("user={} action=prove outcome={tag}", field(&record.user));
                Err(Error::WrongCode(record.user.clone()))
            }
            Factor::Locked(msg) => Err(Error::Locked {
                user: record.user.clone(),
                until: msg,
            }),
        }
    }

    fn recovery_codes(&self) -> Result<(Vec<Zeroizing<String>>, Vec<recovery::StoredCode>), Error> {
        let count = usize::try_from(self.config().recovery.count.get()).unwrap_or(10);
        recovery::generate(count, &self.hashes).map_err(Error::Busy)
    }

    /// Start enrolment of the caller's own account, or — with `proof` — move an enrolled
    /// account to a new authenticator (the old one keeps working until the new one is
    /// confirmed). Starting again replaces a pending key.
    ///
    /// # Errors
    /// Already enrolled without proof, a wrong proof, a lock, a failed write.
    pub fn enroll_begin(
        &self,
        caller: &Caller,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<PendingInfo, Error> {
        let account = users::by_uid(caller.uid)?;
        let key = self.new_key(now)?;
        let uri =
            totp::otpauth_uri(&key, &self.issuer, &account.name).map_err(Error::InvalidArgument)?;
        let expires = now.plus(self.config().enrollment.pending_seconds.get());
        let pending = Pending {
            key: key.clone(),
            expires,
        };
        let replacing = self.with_user(account.uid, || {
            let mut record = self
                .load(&account)?
                .unwrap_or_else(|| Record::for_account(&account.name, account.uid));
            let replacing = record.totp.is_some();
            if replacing {
                if proof.is_empty() {
                    return Err(Error::AlreadyEnrolled(account.name.clone()));
                }
                self.prove(&mut record, proof, now)?;
            }
            record.pending = Some(pending);
            self.store.save(&record)?;
            Ok(replacing)
        })?;
        log::info!(
            "user={} action={} outcome=pending",
            field(&account.name),
            if replacing {
                "reset-begin"
            } else {
                "enroll-begin"
            }
        );
        Ok(PendingInfo {
            secret_base32: key.secret.0.clone(),
            uri,
            algorithm: key.algorithm.as_str(),
            digits: key.digits,
            period: key.period,
            expires,
        })
    }

    /// Confirm the caller's pending key with a current code: it becomes the active one.
    /// A first enrolment also returns the new recovery codes (shown once); a move to a
    /// new phone keeps the existing ones and returns none.
    ///
    /// # Errors
    /// No live pending key, a wrong code, a failed write.
    pub fn enroll_confirm(
        &self,
        caller: &Caller,
        code: &[u8],
        now: UnixTime,
    ) -> Result<Vec<Zeroizing<String>>, Error> {
        let account = users::by_uid(caller.uid)?;
        let window = self.config().totp.window.get();
        let code = if code.len() <= twostep_proto::limits::MAX_ANSWER_LEN {
            code
        } else {
            b""
        };
        let shown = self.with_user(account.uid, || {
            let mut record = self
                .load(&account)?
                .ok_or_else(|| Error::NoPendingEnrollment(account.name.clone()))?;
            let pending = match &record.pending {
                Some(p) if p.expires > now => p.clone(),
                _ => return Err(Error::NoPendingEnrollment(account.name.clone())),
            };
            // Why no replay mark here: the mark belongs to the old key's codes; this key's
            // codes were never used (the old key may have spent the same time step as proof).
            let check = totp::check(&pending.key, code, now, window, None)
                .map_err(Error::InvalidArgument)?;
            let totp::Check::Accepted { step } = check else {
                return Err(Error::WrongCode(account.name.clone()));
            };
            let first = record.totp.is_none() || recovery::left(&record.recovery) == 0;
            let shown = if first {
                let (shown, stored) = self.recovery_codes()?;
                record.recovery = stored;
                shown
            } else {
                Vec::new()
            };
            record.totp = Some(pending.key);
            record.pending = None;
            record.last_step = Some(record.last_step.map_or(step, |last| last.max(step)));
            record.note(
                now,
                if first {
                    "enrolled"
                } else {
                    "new authenticator"
                },
            );
            self.store.save(&record)?;
            Ok(shown)
        })?;
        log::info!(
            "user={} action=enroll-confirm outcome=active",
            field(&account.name)
        );
        Ok(shown)
    }

    /// New recovery codes for the caller; the old ones stop working at once.
    ///
    /// # Errors
    /// Not enrolled, a wrong proof, a lock, a failed write.
    pub fn regenerate_recovery(
        &self,
        caller: &Caller,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<Vec<Zeroizing<String>>, Error> {
        let account = users::by_uid(caller.uid)?;
        let shown = self.with_user(account.uid, || {
            let mut record = self.enrolled_record(&account)?;
            self.prove(&mut record, proof, now)?;
            let (shown, stored) = self.recovery_codes()?;
            record.recovery = stored;
            record.note(now, "new recovery codes");
            self.store.save(&record)?;
            Ok(shown)
        })?;
        log::info!(
            "user={} action=recovery-codes outcome=regenerated",
            field(&account.name)
        );
        Ok(shown)
    }

    /// Switch 2FA off for the caller, when policy lets them.
    ///
    /// # Errors
    /// Required by policy, toggling denied, a wrong proof, a lock, a failed write.
    pub fn disable(&self, caller: &Caller, proof: &[u8], now: UnixTime) -> Result<(), Error> {
        let account = users::by_uid(caller.uid)?;
        self.with_user(account.uid, || {
            let mut record = self.enrolled_record(&account)?;
            let required = self.requirement(&account, &record)?;
            if !policy::may_toggle(&self.config().policy, record.may_toggle, &required) {
                let why = if required.required {
                    format!(
                        "two-factor authentication is required for you ({})",
                        required.why
                    )
                } else {
                    "your administrator does not let you switch it off".to_owned()
                };
                return Err(Error::AccessDenied(format!(
                    "cannot switch 2FA off for {}: {why}",
                    account.name
                )));
            }
            self.prove(&mut record, proof, now)?;
            record.forget_factors();
            record.note(now, "switched off by the user");
            self.store.save(&record)
        })?;
        log::info!("user={} action=disable outcome=off", field(&account.name));
        Ok(())
    }

    fn enrolled_record(&self, account: &Account) -> Result<Record, Error> {
        match self.load(account)? {
            Some(r) if r.totp.is_some() => Ok(r),
            _ => Err(Error::NotEnrolled(account.name.clone())),
        }
    }

    /// The caller's own state.
    ///
    /// # Errors
    /// The caller has no account or the record is unreadable.
    pub fn status(&self, caller: &Caller, now: UnixTime) -> Result<Status, Error> {
        let account = users::by_uid(caller.uid)?;
        let record = self
            .with_user(account.uid, || self.load(&account))?
            .unwrap_or_else(|| Record::for_account(&account.name, account.uid));
        let required = self.requirement(&account, &record)?;
        let state = lockout::state(&record, now, &self.lock_policy());
        Ok(Status {
            enrolled: record.totp.is_some(),
            pending: record.pending.as_ref().is_some_and(|p| p.expires > now),
            recovery_left: recovery::left(&record.recovery),
            may_toggle: policy::may_toggle(&self.config().policy, record.may_toggle, &required),
            required: required.required,
            failures: record.failures,
            locked_until: locked_until(state),
            last_success: record.last_success.map_or(0, |t| t.0),
            last_failure: record.last_failure.map_or(0, |t| t.0),
        })
    }
}
