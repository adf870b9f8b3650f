// SPDX-License-Identifier: MIT OR Apache-2.0
//! What users do for themselves: enrol, move to a new phone, new recovery codes, switch
//! off, status. The user is always the caller's own account (by uid); every change to an
//! active second factor needs a current code or a recovery code. These are the bodies of
//! `Core`'s self-service methods (`engine` delegates here); each change is one store
//! transaction.

use zeroize::Zeroizing;

use super::audit::field;
use super::engine::{Core, Factor};
use super::lockout::{self, locked_until};
use super::policy;
use super::record::{Pending, Record};
use super::recovery;
use super::store::Write;
use super::{totp, Caller, Error, UnixTime};

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

/// Prove the caller holds a factor: a current code or an unused recovery code (which is
/// spent). Counts against the lockout like a login. On failure: the error, and whether
/// the transaction must still save (a charged wrong attempt).
fn prove(
    core: &Core,
    record: &mut Record,
    proof: &[u8],
    now: UnixTime,
) -> Result<(), (Write, Error)> {
    match core.verify_factor(record, proof, now) {
        Err(e) => Err((Write::Keep, e)),
        Ok(Factor::Totp | Factor::Recovery { .. }) => Ok(()),
        Ok(Factor::Wrong { tag, .. }) => {
            log::info!("user={} action=prove outcome={tag}", field(&record.user));
            Err((Write::Save, Error::WrongCode(record.user.clone())))
        }
        Ok(Factor::Locked(msg)) => Err((
            Write::Keep,
            Error::Locked {
                user: record.user.clone(),
                until: msg,
            },
        )),
    }
}

fn recovery_codes(
    core: &Core,
) -> Result<(Vec<Zeroizing<String>>, Vec<recovery::StoredCode>), Error> {
    let count = usize::try_from(core.config().recovery.count.get()).unwrap_or(10);
    recovery::generate(count, core.hashes()).map_err(|e| Error::Internal(e.to_string()))
}

/// Start enrolment of the caller's own account, or — with `proof` — move an enrolled
/// account to a new authenticator (the old one keeps working until the new one is
/// confirmed). Starting again replaces a pending key.
///
/// # Errors
/// Already enrolled without proof, a wrong proof, a lock, a failed write.
pub(super) fn enroll_begin(
    core: &Core,
    caller: &Caller,
    proof: &[u8],
    now: UnixTime,
) -> Result<PendingInfo, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let key = core.settings().new_key(now)?;
    let uri = totp::otpauth_uri(&key, core.settings().issuer(), &account.name)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let expires = now.plus(core.config().enrollment.pending_seconds.get());
    let pending = Pending {
        key: key.clone(),
        expires,
    };
    let replacing = core.update(&account, |record| {
        let replacing = record.totp.is_some();
        if replacing {
            if proof.is_empty() {
                return (
                    Write::Keep,
                    Err(Error::AlreadyEnrolled(account.name.clone())),
                );
            }
            if let Err((write, e)) = prove(core, record, proof, now) {
                return (write, Err(e));
            }
        }
        record.pending = Some(pending);
        (Write::Save, Ok(replacing))
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
pub(super) fn enroll_confirm(
    core: &Core,
    caller: &Caller,
    code: &[u8],
    now: UnixTime,
) -> Result<Vec<Zeroizing<String>>, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let window = core.config().totp.window.get();
    let code = if code.len() <= twostep_proto::limits::MAX_ANSWER_LEN {
        code
    } else {
        b""
    };
    let shown = core.update(&account, |record| {
        let pending = match &record.pending {
            Some(p) if p.expires > now => p.clone(),
            _ => {
                return (
                    Write::Keep,
                    Err(Error::NoPendingEnrollment(account.name.clone())),
                )
            }
        };
        // Why no replay mark here: the mark belongs to the old key's codes; this key's
        // codes were never used (the old key may have spent the same time step as proof).
        let step = match totp::check(&pending.key, code, now, window, None) {
            Ok(totp::Check::Accepted { step }) => step,
            Ok(_) => return (Write::Keep, Err(Error::WrongCode(account.name.clone()))),
            Err(e) => {
                let user = account.name.clone();
                let reason = e.to_string();
                return (Write::Keep, Err(Error::CorruptRecord { user, reason }));
            }
        };
        let first = record.totp.is_none() || recovery::left(&record.recovery) == 0;
        let shown = if first {
            match recovery_codes(core) {
                Ok((shown, stored)) => {
                    record.recovery = stored;
                    shown
                }
                Err(e) => return (Write::Keep, Err(e)),
            }
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
        (Write::Save, Ok(shown))
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
pub(super) fn regenerate_recovery(
    core: &Core,
    caller: &Caller,
    proof: &[u8],
    now: UnixTime,
) -> Result<Vec<Zeroizing<String>>, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let shown = core.update(&account, |record| {
        if record.totp.is_none() {
            return (Write::Keep, Err(Error::NotEnrolled(account.name.clone())));
        }
        if let Err((write, e)) = prove(core, record, proof, now) {
            return (write, Err(e));
        }
        let (shown, stored) = match recovery_codes(core) {
            Ok(codes) => codes,
            Err(e) => return (Write::Keep, Err(e)),
        };
        record.recovery = stored;
        record.note(now, "new recovery codes");
        (Write::Save, Ok(shown))
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
pub(super) fn disable(
    core: &Core,
    caller: &Caller,
    proof: &[u8],
    now: UnixTime,
) -> Result<(), Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    core.update(&account, |record| {
        if record.totp.is_none() {
            return (Write::Keep, Err(Error::NotEnrolled(account.name.clone())));
        }
        let required = match core
            .settings()
            .requirement(core.accounts(), &account, record)
        {
            Ok(r) => r,
            Err(e) => return (Write::Keep, Err(e)),
        };
        if !policy::may_toggle(&core.config().policy, record.may_toggle, &required) {
            let why = if required.required {
                format!(
                    "two-factor authentication is required for you ({})",
                    required.why
                )
            } else {
                "your administrator does not let you switch it off".to_owned()
            };
            return (
                Write::Keep,
                Err(Error::AccessDenied(format!(
                    "cannot switch 2FA off for {}: {why}",
                    account.name
                ))),
            );
        }
        if let Err((write, e)) = prove(core, record, proof, now) {
            return (write, Err(e));
        }
        record.forget_factors();
        record.note(now, "switched off by the user");
        (Write::Save, Ok(()))
    })?;
    log::info!("user={} action=disable outcome=off", field(&account.name));
    Ok(())
}

/// The caller's own state.
///
/// # Errors
/// The caller has no account or the record is unreadable.
pub(super) fn status(core: &Core, caller: &Caller, now: UnixTime) -> Result<Status, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let record = core
        .load(&account)?
        .unwrap_or_else(|| Record::for_account(&account.name, account.uid));
    let required = core
        .settings()
        .requirement(core.accounts(), &account, &record)?;
    let state = lockout::state(&record, now, &core.settings().lock_policy());
    Ok(Status {
        enrolled: record.totp.is_some(),
        pending: record.pending.as_ref().is_some_and(|p| p.expires > now),
        recovery_left: recovery::left(&record.recovery),
        may_toggle: policy::may_toggle(&core.config().policy, record.may_toggle, &required),
        required: required.required,
        failures: record.failures,
        locked_until: locked_until(state),
        last_success: record.last_success.map_or(0, |t| t.0),
        last_failure: record.last_failure.map_or(0, |t| t.0),
    })
}
