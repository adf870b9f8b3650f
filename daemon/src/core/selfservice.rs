// SPDX-License-Identifier: MIT OR Apache-2.0
//! What users do for themselves: enrol, move to a new phone, add and remove named
//! authenticators, new recovery codes, switch off, status. The user is always the caller's own account (by uid); every change to an
//! active second factor needs a current code or a recovery code. These are the bodies of
//! `Core`'s self-service methods (`engine` delegates here); each change is one store
//! transaction.

use zeroize::{Zeroize, Zeroizing};

use super::audit::{field, EventKind, Source};
use super::engine::Core;
use super::mail::{self, Notice};
use super::policy;
use super::record::{self, Authenticator, Pending, Record};
use super::recovery;
use super::state::{AuthenticatorInfo, UserState};
use super::store::Write;
use super::users::Account;
use super::verify::Checked;
use super::{totp, Caller, Error, UnixTime};

/// Most authenticators one user may have. Why so few: each one is tried at every login, so
/// each guess can match `(2 × window + 1) × authenticators` codes while the lockout allows
/// the same number of guesses — five authenticators make a guess five times likelier.
pub const MAX_AUTHENTICATORS: usize = 5;

/// What `enroll_begin` hands the user, once. The secret and the URI are wiped on drop;
/// there is no `Debug`.
pub struct PendingInfo {
    pub secret_base32: String,
    pub uri: String,
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    pub expires: UnixTime,
}

impl Drop for PendingInfo {
    fn drop(&mut self) {
        self.secret_base32.zeroize();
        self.uri.zeroize();
    }
}

/// The caller's own state: the one user summary ([`UserState`]).
pub type Status = UserState;

/// Prove the caller holds a factor: a current code or an unused recovery code (which is
/// spent). Counts against the lockout like a login (a replayed code is refused, not
/// charged). On failure: the error, and whether the transaction must still save (a
/// charged wrong attempt, a noted replay).
pub(super) fn prove(
    core: &Core,
    record: &mut Record,
    proof: &[u8],
    now: UnixTime,
) -> Result<(), (Write, Error)> {
    let from = super::audit::Source::own(record);
    let checked = match core.verify_factor(record, proof, now, &from) {
        Err(e) => return Err((Write::Keep, e)),
        Ok(c) => c,
    };
    let tag = checked.tag();
    match checked {
        Checked::Accepted(..) => Ok(()),
        Checked::Replayed(_) | Checked::Wrong(_) => {
            if let Checked::Wrong(_) = checked {
                record.last_failure_from = Some("twostepctl".into());
            }
            log::info!("user={} action=prove outcome={tag}", field(&record.user));
            Err((Write::Save, Error::WrongCode(record.user.clone())))
        }
        Checked::Locked(msg) => Err((
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
    let (pending, info) = new_pending(core, &account.name, None, now)?;
    let replacing = core.update(&account, |record| {
        let replacing = record.enrolled();
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
    Ok(info)
}

/// A fresh key waiting for its confirming code (labelled `label` in authenticator apps;
/// `name`: the authenticator it will become, `None` for an enrolment), and what the user
/// is shown of it, once.
///
/// # Errors
/// [`Error::InvalidArgument`] when `[policy] methods` leaves out `totp`;
/// [`Error::Internal`] when the random source or the URI fails.
fn new_pending(
    core: &Core,
    label: &str,
    name: Option<&str>,
    now: UnixTime,
) -> Result<(Pending, PendingInfo), Error> {
    if !super::email::totp_allowed(core) {
        return Err(Error::InvalidArgument(
            "this host does not allow authenticator apps ([policy] methods)".into(),
        ));
    }
    let key = core.settings().new_key(now)?;
    let uri = totp::otpauth_uri(&key, core.settings().issuer(), label)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let expires = now.plus(core.config().enrollment.pending_seconds.get());
    let info = PendingInfo {
        secret_base32: key.secret.0.clone(),
        uri,
        algorithm: key.algorithm.as_str(),
        digits: key.digits,
        period: key.period,
        expires,
    };
    let pending = Pending {
        key,
        expires,
        name: name.map(str::to_owned),
        replay_mark: None,
    };
    Ok((pending, info))
}

/// Which pending key a confirm is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Confirming<'a> {
    /// `enroll` / a move to a new phone: the key replaces every authenticator.
    Enrolment,
    /// `authenticator add NAME`: the key pending under this name joins the others (a
    /// confirm for another name — a second `add` replaced the pending key meanwhile — finds
    /// nothing to confirm, so nobody is told the wrong name is active).
    Added(&'a str),
}

/// Confirm the caller's pending key with a current code: with [`Confirming::Enrolment`]
/// it becomes the one active authenticator (a first enrolment also returns the new
/// recovery codes, shown once; a move to a new phone keeps the existing ones and returns
/// none); with [`Confirming::Added`] it joins the others under its name (returns none).
///
/// # Errors
/// No live pending key of that kind, a wrong code, a name taken meanwhile, a failed write.
pub(super) fn confirm(
    core: &Core,
    caller: &Caller,
    code: &[u8],
    kind: Confirming,
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
            Some(p)
                if p.expires > now
                    && match kind {
                        Confirming::Enrolment => p.name.is_none(),
                        Confirming::Added(name) => p.name.as_deref() == Some(name),
                    } =>
            {
                p.clone()
            }
            _ => {
                return (
                    Write::Keep,
                    Err(Error::NoPendingEnrollment(account.name.clone())),
                )
            }
        };
        // Why no replay mark here: the marks belong to the other keys' codes; this key's
        // codes were never used (an old key may have spent the same time step as proof).
        let step = match totp::check(&pending.key, code, now, window, None) {
            Ok(totp::Check::Accepted { step }) => pending.replay_mark.map_or(step, |m| m.max(step)),
            Ok(_) => return (Write::Keep, Err(Error::WrongCode(account.name.clone()))),
            Err(e) => {
                let user = account.name.clone();
                let reason = e.to_string();
                return (Write::Keep, Err(Error::CorruptRecord { user, reason }));
            }
        };
        if let Some(name) = pending.name {
            if let Err(e) = check_addable(&account, record, &name) {
                return (Write::Keep, Err(e));
            }
            let from = Source::own(record).with_method("totp");
            record.note(
                now,
                EventKind::Enrol,
                format!("authenticator added: name={}", field(&name)),
                &from,
            );
            record.authenticators.push(Authenticator {
                name,
                key: pending.key,
                added: now,
                last_used: None,
                last_step: Some(step),
            });
            record.pending = None;
            return (Write::Save, Ok(Vec::new()));
        }
        let first = !record.enrolled() || recovery::left(&record.recovery) == 0;
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
        record.replace_authenticators(pending.key, step, now);
        record.pending = None;
        let from = Source::own(record).with_method("totp");
        record.note(
            now,
            EventKind::Enrol,
            if first {
                "enrolled"
            } else {
                "new authenticator"
            },
            &from,
        );
        (Write::Save, Ok(shown))
    })?;
    let action = match kind {
        Confirming::Enrolment => "enroll-confirm",
        Confirming::Added(_) => "authenticator-confirm",
    };
    log::info!(
        "user={} action={action} outcome=active",
        field(&account.name)
    );
    if let Confirming::Added(name) = &kind {
        let (name, added, by) = (name.to_string(), true, mail::By::User);
        mail::notify_account(core, &account, Notice::Authenticator { name, added, by });
    }
    Ok(shown)
}

/// May an authenticator called `name` join `record`: enrolled, a valid name not in use,
/// fewer than [`MAX_AUTHENTICATORS`].
fn check_addable(account: &Account, record: &Record, name: &str) -> Result<(), Error> {
    check_new_name(name)?;
    if !record.enrolled() {
        return Err(Error::NotEnrolled(account.name.clone()));
    }
    let folded = name.to_lowercase();
    if record
        .authenticators
        .iter()
        .any(|a| a.name.to_lowercase() == folded)
    {
        return Err(Error::InvalidArgument(format!(
            "{} already has an authenticator of that name",
            account.name
        )));
    }
    if record.authenticators.len() >= MAX_AUTHENTICATORS {
        return Err(Error::InvalidArgument(format!(
            "{} already has {MAX_AUTHENTICATORS} authenticators; remove one first",
            account.name
        )));
    }
    Ok(())
}

/// A name for a new authenticator: what [`record::check_name`] accepts, made of letters,
/// digits, spaces and ASCII punctuation other than `:` only — no invisible, format or
/// direction-changing characters that would let two entries look alike or scramble an
/// admin's listing, and no `:` (the otpauth URI's label separator). Names already stored
/// are read with the looser [`record::check_name`], so no existing record fails.
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is wrong.
fn check_new_name(name: &str) -> Result<(), Error> {
    record::check_name(name).map_err(Error::InvalidArgument)?;
    let allowed =
        |c: char| c.is_alphanumeric() || c == ' ' || (c.is_ascii_punctuation() && c != ':');
    if name.chars().all(allowed) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(
            "an authenticator name holds letters, digits, spaces and punctuation other than \
             `:` only"
                .into(),
        ))
    }
}

/// Start adding an authenticator called `name` beside the caller's others; `proof` is a
/// current code of any of them or a recovery code. Confirmed with
/// [`confirm`]`(…, Confirming::Added(name), …)`; starting again replaces a pending key.
///
/// # Errors
/// Not enrolled, an invalid or taken name, no proof, a wrong proof, a lock, a failed write.
pub(super) fn authenticator_add(
    core: &Core,
    caller: &Caller,
    name: &str,
    proof: &[u8],
    now: UnixTime,
) -> Result<PendingInfo, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    // Checked before the key URI is built from it (and again under the lock).
    check_new_name(name)?;
    let label = format!("{} ({name})", account.name);
    let (pending, info) = new_pending(core, &label, Some(name), now)?;
    core.update(&account, |record| {
        if let Err(e) = check_addable(&account, record, name) {
            return (Write::Keep, Err(e));
        }
        if proof.is_empty() {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(
                    "adding an authenticator needs a current code or a recovery code".into(),
                )),
            );
        }
        if let Err((write, e)) = prove(core, record, proof, now) {
            return (write, Err(e));
        }
        record.pending = Some(pending);
        (Write::Save, Ok(()))
    })?;
    log::info!(
        "user={} action=authenticator-add authenticator={} outcome=pending",
        field(&account.name),
        field(name)
    );
    Ok(info)
}

/// The caller's authenticators (name, added, last used; never a key).
///
/// # Errors
/// The caller has no account or the record is unreadable.
pub(super) fn authenticators(
    core: &Core,
    caller: &Caller,
    now: UnixTime,
) -> Result<Vec<AuthenticatorInfo>, Error> {
    Ok(status(core, caller, now)?.authenticators)
}

/// Refuse switching 2FA off for `account` (by `doing`, e.g. "switch 2FA off") unless
/// policy lets the user.
pub(super) fn may_switch_off(
    core: &Core,
    account: &Account,
    record: &Record,
    doing: &str,
) -> Result<(), Error> {
    let required = core
        .settings()
        .requirement(core.accounts(), account, record)?;
    if policy::may_toggle(&core.config().policy, record.may_toggle, &required) {
        return Ok(());
    }
    let why = if required.required {
        format!(
            "two-factor authentication is required for you ({})",
            required.why
        )
    } else {
        "your administrator does not let you switch it off".to_owned()
    };
    Err(Error::AccessDenied(format!(
        "cannot {doing} for {}: {why}",
        account.name
    )))
}

/// Remove the caller's authenticator `name`. `proof` is a current code of ANOTHER of
/// their authenticators or a recovery code (a code of the one removed is wrong here, and
/// charged as such). The last one is removed only as `disable` would switch 2FA off: never
/// while 2FA is required or switching off is denied, with the same proof rules as
/// `disable` (any current code or a recovery code), and it forgets every factor.
///
/// # Errors
/// Not enrolled, no such authenticator, the last one while 2FA may not be switched off, a
/// wrong proof, a lock, a failed write.
pub(super) fn authenticator_remove(
    core: &Core,
    caller: &Caller,
    name: &str,
    proof: &[u8],
    now: UnixTime,
) -> Result<(), Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let before = mail::before(core, &account);
    let switched_off = core.update(&account, |record| {
        if !record.enrolled() {
            return (Write::Keep, Err(Error::NotEnrolled(account.name.clone())));
        }
        let Some(i) = record.authenticators.iter().position(|a| a.name == name) else {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(format!(
                    "{} has no authenticator of that name",
                    account.name
                ))),
            );
        };
        if record.authenticators.len() == 1 {
            let doing = "remove the last authenticator (switch 2FA off)";
            if let Err(e) = may_switch_off(core, &account, record, doing) {
                return (Write::Keep, Err(e));
            }
            if let Err((write, e)) = prove(core, record, proof, now) {
                return (write, Err(e));
            }
            record.forget_factors();
            let from = Source::own(record);
            record.note(
                now,
                EventKind::Disable,
                "last authenticator removed: 2FA switched off",
                &from,
            );
            return (Write::Save, Ok(true));
        }
        // The proof is checked without the authenticator being removed: its own codes do
        // not count. It is put back at its place before anything is saved.
        let removed = record.authenticators.remove(i);
        if let Err((write, e)) = prove(core, record, proof, now) {
            record.authenticators.insert(i, removed);
            return (write, Err(e));
        }
        let from = Source::own(record);
        record.note(
            now,
            EventKind::Disable,
            format!("authenticator removed: name={}", field(&removed.name)),
            &from,
        );
        (Write::Save, Ok(false))
    })?;
    log::info!(
        "user={} action=authenticator-remove authenticator={} outcome={}",
        field(&account.name),
        field(name),
        if switched_off { "off" } else { "removed" }
    );
    let by = mail::By::User;
    match (switched_off, before) {
        (true, Some(old)) => mail::notify(core, &account, &old, Notice::Disabled { by }),
        (true, None) => {}
        (false, _) => {
            let (name, added) = (name.to_owned(), false);
            mail::notify_account(core, &account, Notice::Authenticator { name, added, by });
        }
    }
    Ok(())
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
        if !record.enrolled() {
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
        let from = Source::own(record);
        record.note(now, EventKind::RecoveryCodes, "new recovery codes", &from);
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
    let before = mail::before(core, &account);
    core.update(&account, |record| {
        if !record.enrolled() {
            return (Write::Keep, Err(Error::NotEnrolled(account.name.clone())));
        }
        if let Err(e) = may_switch_off(core, &account, record, "switch 2FA off") {
            return (Write::Keep, Err(e));
        }
        if let Err((write, e)) = prove(core, record, proof, now) {
            return (write, Err(e));
        }
        record.forget_factors();
        let from = Source::own(record);
        record.note(now, EventKind::Disable, "switched off by the user", &from);
        (Write::Save, Ok(()))
    })?;
    log::info!("user={} action=disable outcome=off", field(&account.name));
    if let Some(old) = before {
        mail::notify(
            core,
            &account,
            &old,
            Notice::Disabled { by: mail::By::User },
        );
    }
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
    Ok(UserState::from_record(
        &record,
        &required,
        &core.config(),
        &core.settings().lock_policy(),
        now,
    ))
}
