// SPDX-License-Identifier: MIT OR Apache-2.0
//! Admin operations: root, or members of the configured admin group. These are the bodies
//! of `Core`'s admin methods (`engine` delegates here); each change is one store transaction,
//! and the repair is the file store's own capability (`FileStore`, reached through
//! `Store::files`: slots and damaged copies are the file format's).

use twostep_config::{Config, Require};

use super::audit::{field, EventKind, Source};
use super::engine::{check_identity, Core};
use super::lockout;
use super::policy::{self, Override};
use super::record::{Event, Record};
use super::state::UserState;
use super::store::{SlotView, Write};
use super::users::Account;
use super::{authz, Caller, Error, UnixTime};

/// One user as an admin sees it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: u32,
    /// The name the record was made under (differs for another name of the same uid, or a
    /// former account whose uid was re-used; then `error` says so).
    pub enrolled_as: String,
    /// The state the user sees too (built by [`UserState::from_record`]).
    pub state: UserState,
    pub why: String,
    pub policy_override: String,
    /// Set when the record cannot be read: the user's logins fail closed.
    pub error: String,
    pub events: Vec<Event>,
    /// The remember windows in force on this host: service, remote host, tty, end
    /// (`core::services::active`).
    pub remembered: Vec<(String, String, String, UnixTime)>,
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
    /// The kind of the record event the action leaves.
    fn kind(self) -> EventKind {
        match self {
            Action::Reset => EventKind::Reset,
            Action::Disable => EventKind::Disable,
            Action::Unlock => EventKind::Unlock,
            Action::Require(_) | Action::Toggle(_) => EventKind::Admin,
        }
    }

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

/// # Errors
/// [`Error::AccessDenied`] unless root or in `admin_group`.
pub(super) fn authorize_admin(core: &Core, caller: &Caller) -> Result<(), Error> {
    if caller.uid == 0 {
        return Ok(());
    }
    let admin_group = core.config().policy.admin_group.clone();
    let groups = match core.accounts().by_uid(caller.uid) {
        Ok(account) if !admin_group.is_empty() => core.accounts().group_names(&account)?,
        _ => Vec::new(),
    };
    authz::may_admin(caller.uid, &groups, &admin_group)
}

/// What an admin sees of `account` (the record read as stored; a record of a former
/// account is shown, with the reason its logins fail in `error`).
fn info(core: &Core, account: &Account, now: UnixTime) -> UserInfo {
    let name = account.name.as_str();
    let record = match core.load_unchecked(account) {
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
    let identity = check_identity(core.accounts(), account, &record);
    let requirement = identity
        .as_ref()
        .map_err(|e| Error::Unavailable(e.to_string()))
        .and_then(|()| {
            core.settings()
                .requirement(core.accounts(), account, &record)
        })
        .unwrap_or_else(|e| policy::Requirement {
            required: false,
            why: e.to_string(),
        });
    let state = UserState::from_record(
        &record,
        &requirement,
        &core.config(),
        &core.settings().lock_policy(),
        now,
    );
    let host = super::services::host_name();
    let remembered = super::services::active(&record, &core.config(), now)
        .into_iter()
        .filter(|(e, _)| host.as_deref() == Some(e.host.as_str()))
        .map(|(e, until)| (e.service, e.rhost, e.tty, until))
        .collect();
    UserInfo {
        remembered,
        name: name.to_owned(),
        uid: account.uid,
        enrolled_as: record.user.clone(),
        state,
        why: requirement.why,
        policy_override: format!("{:?}", record.policy_override).to_lowercase(),
        error: identity.err().map(|e| e.to_string()).unwrap_or_default(),
        events: record.events,
    }
}

/// Every user with a record.
///
/// # Errors
/// Not an admin, or the store cannot be listed.
pub(super) fn admin_list(
    core: &Core,
    caller: &Caller,
    now: UnixTime,
) -> Result<Vec<UserInfo>, Error> {
    authorize_admin(core, caller)?;
    let uids = core.store().list()?;
    Ok(uids
        .into_iter()
        .map(|uid| info_of_uid(core, uid, now))
        .collect())
}

/// The roll-out view: every user the policy requires who has no factor yet — the members
/// of the required groups (`require = "groups"`) or the local accounts of people
/// (`require = "all"`), and anyone with a record (an admin's `require` override, a grace
/// period begun at a login), by name, one entry per uid.
///
/// # Errors
/// Not an admin; NSS, `/etc/passwd` or the store cannot be read.
pub(super) fn admin_pending(
    core: &Core,
    caller: &Caller,
    now: UnixTime,
) -> Result<Vec<UserInfo>, Error> {
    authorize_admin(core, caller)?;
    let policy = core.config().policy.clone();
    let mut names = std::collections::BTreeSet::new();
    match policy.require {
        Require::None => {}
        Require::All => names.extend(core.accounts().local_people()?),
        Require::Groups => {
            for g in &policy.groups {
                names.extend(core.accounts().group_members(g)?);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let with_record = core
        .store()
        .list()?
        .into_iter()
        .map(|uid| info_of_uid(core, uid, now));
    let by_name = names.into_iter().filter_map(|n| {
        let account = core.accounts().by_name(&n).ok()?;
        Some(info(core, &account, now))
    });
    for u in with_record.chain(by_name) {
        if u.error.is_empty() && u.state.required && !u.state.enrolled && seen.insert(u.uid) {
            out.push(u);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// [`Core::info`] of a record found by its uid: the account is the name the record was
/// made under if NSS still gives it this uid, otherwise whoever has the uid now.
fn info_of_uid(core: &Core, uid: u32, now: UnixTime) -> UserInfo {
    let stored = core.store().load_uid(uid);
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
    let account = match core.accounts().by_name(&made_under) {
        Ok(a) if a.uid == uid => a,
        _ => match core.accounts().by_uid(uid) {
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
    info(core, &account, now)
}

/// One user (who need not have a record yet).
///
/// # Errors
/// Not an admin, or no such user.
pub(super) fn admin_show(
    core: &Core,
    caller: &Caller,
    name: &str,
    now: UnixTime,
) -> Result<UserInfo, Error> {
    authorize_admin(core, caller)?;
    let account = core.accounts().by_name(name)?;
    Ok(info(core, &account, now))
}

/// Apply `action` to `name`.
///
/// # Errors
/// Not an admin, no such user, an unreadable record, a failed write.
pub(super) fn admin_act(
    core: &Core,
    caller: &Caller,
    name: &str,
    action: Action,
    now: UnixTime,
) -> Result<(), Error> {
    authorize_admin(core, caller)?;
    let account: Account = core.accounts().by_name(name)?;
    let by = Source::admin(core.accounts(), caller);
    if action == Action::Reset {
        replace_vanished_record(core, caller, &account, now)?;
        replace_former_record(core, caller, &account, now)?;
    }
    let before = matches!(action, Action::Reset | Action::Disable)
        .then(|| super::mail::before(core, &account))
        .flatten();
    core.update(&account, |r| {
        match action {
            Action::Reset | Action::Disable => r.forget_factors(),
            Action::Require(o) => r.policy_override = o,
            Action::Toggle(t) => r.may_toggle = t,
            // Why the last failure stays: the lock depends on the count alone (a count of
            // 0 is never locked), and `user show`'s "Last failure" must agree with the
            // failed attempts its events list.
            Action::Unlock => {
                r.failures = 0;
                super::apppw_lock::clear(r);
            }
        }
        r.note(
            now,
            action.kind(),
            format!("admin {} by {}", action.name(), by.actor_display()),
            &by,
        );
        (Write::Save, Ok(()))
    })?;
    log::info!(
        "admin_uid={} admin={} user={} action={} outcome=done",
        caller.uid,
        field(&by.actor_display()),
        field(&account.name),
        action.name()
    );
    if let Some(old) = before {
        let notice = super::mail::Notice::Disabled {
            by: super::mail::By::Admin,
        };
        super::mail::notify(core, &account, &old, notice);
    }
    Ok(())
}

/// A reset of an account whose uid carries a former account's record (see
/// `engine::check_identity`): the record is replaced by a fresh one of this account, so
/// the old enrolment, counters and overrides are gone and nothing is inherited.
fn replace_former_record(
    core: &Core,
    caller: &Caller,
    account: &Account,
    now: UnixTime,
) -> Result<(), Error> {
    let dropped = crate::core::store::update(core.store(), account, |slot| {
        let Some(old) = slot.as_mut() else {
            return (Write::Keep, Ok(None));
        };
        match check_identity(core.accounts(), account, old) {
            Err(Error::FormerAccount { .. }) => {}
            other => return (Write::Keep, other.map(|()| None)),
        }
        let enrolled_as = old.user.clone();
        let mut fresh = Record::for_account(&account.name, account.uid);
        let by = Source::admin(core.accounts(), caller);
        fresh.note(
            now,
            EventKind::Reset,
            format!(
                "admin reset by {}: record of former account {enrolled_as:?} dropped",
                by.actor_display()
            ),
            &by,
        );
        *old = fresh;
        (Write::Save, Ok(Some(enrolled_as)))
    })?;
    if let Some(enrolled_as) = dropped {
        log::warn!(
            "admin_uid={} user={} uid={} action=reset outcome=former-record-dropped enrolled_as={}",
            caller.uid,
            field(&account.name),
            account.uid,
            field(&enrolled_as),
        );
    }
    Ok(())
}

/// A reset of an enrolled account whose record vanished (see the store's enrolment
/// list): a fresh record without a factor takes its place, and the account leaves the
/// list, so its logins stop failing closed.
fn replace_vanished_record(
    core: &Core,
    caller: &Caller,
    account: &Account,
    now: UnixTime,
) -> Result<(), Error> {
    let mut fresh = Record::for_account(&account.name, account.uid);
    let by = Source::admin(core.accounts(), caller);
    fresh.note(
        now,
        EventKind::Reset,
        format!(
            "admin reset by {}: the enrolled account's record had vanished",
            by.actor_display()
        ),
        &by,
    );
    if core.store().replace_vanished(account, &fresh)? {
        log::warn!(
            "admin_uid={} admin={} user={} uid={} action=reset outcome=vanished-record-replaced",
            caller.uid,
            field(&by.actor_display()),
            field(&account.name),
            account.uid,
        );
    }
    Ok(())
}

/// For an admin: read the configuration with `load` (only once the caller is
/// authorized: nobody else makes the daemon read or judge the file) and put it in force
/// ([`Core::apply_config`]).
///
/// # Errors
/// Not an admin, `load`'s error, or a change that needs a restart.
pub(super) fn reload(
    core: &Core,
    caller: &Caller,
    load: impl FnOnce() -> Result<Config, Error>,
) -> Result<(), Error> {
    authorize_admin(core, caller)?;
    core.apply_config(load()?)?;
    log::info!("admin_uid={} action=reload outcome=done", caller.uid);
    Ok(())
}

/// What `twostepctl user repair` shows and, when confirmed, did (issue 19, fault 8). The
/// rule it applies is in `store`'s module doc and in `docs/storage.md`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The record file.
    pub path: String,
    /// Why the user fails closed; empty when the record is intact (nothing to repair).
    pub damage: String,
    /// One line per slot: what it holds.
    pub slots: Vec<String>,
    /// What the damaged write may have held that no repair can know.
    pub may_be_lost: Vec<String>,
    /// The record the repair writes (or wrote), one line per fact; empty when none can be.
    pub restored: Vec<String>,
    /// Whether the repaired record was written (only when confirmed).
    pub written: bool,
    /// Where the damaged file was kept (when written).
    pub kept: String,
}

/// A time for the repair report (people read it; `timefmt::human`), `never` for none.
fn at(t: Option<UnixTime>) -> String {
    t.map_or_else(|| "never".to_owned(), super::timefmt::human)
}

/// One line about a readable record.
fn summary(r: &Record, now: UnixTime, p: &lockout::LockPolicy) -> String {
    let lock = match lockout::state(r, now, p) {
        lockout::LockState::Open => "not locked".to_owned(),
        lockout::LockState::Until(t) => format!("locked until {}", at(Some(t))),
        lockout::LockState::UntilUnlocked => "locked until an admin unlocks".to_owned(),
    };
    let unused = r.recovery.iter().filter(|c| c.used.is_none()).count();
    let mark = |s: Option<u64>| s.map_or("none".to_owned(), |s| format!("time step {s}"));
    let (state, marks) = match r.authenticators.as_slice() {
        [] => ("not set up".to_owned(), "replay mark none".to_owned()),
        [one] => (
            "active".to_owned(),
            format!("replay mark {}", mark(one.last_step)),
        ),
        all => {
            let each: Vec<String> = all
                .iter()
                .map(|a| format!("{} {}", field(&a.name), mark(a.last_step)))
                .collect();
            (
                format!("active ({} of them)", all.len()),
                format!("replay marks {}", each.join(", ")),
            )
        }
    };
    format!(
        "authenticator {state}, {} failure(s) (last {}), {lock}, {marks}, {unused} of {} \
         recovery code(s) unused, last success {}",
        r.failures,
        at(r.last_failure),
        r.recovery.len(),
        at(r.last_success),
    )
}

/// The record a repair writes from the newest readable slot `base`: nothing that the one
/// write which may have been lost could have done is undone (see `store`'s module doc).
/// Returns it with one line per change.
///
/// - one more failure, dated `now`: the count and any lock are never lowered or shortened;
/// - the replay mark at the current time step plus `window` for every key on the record:
///   no code that could have been accepted before `now` is accepted again;
/// - every unused recovery code marked spent at `now`: the lost write may have spent one.
pub fn conservative(base: &Record, now: UnixTime, window: u64) -> (Record, Vec<String>) {
    let mut r = base.clone();
    let mut changes = Vec::new();
    r.failures = base.failures.saturating_add(1);
    r.last_failure = Some(base.last_failure.map_or(now, |t| t.max(now)));
    changes.push(format!(
        "failures {} → {}, the last one dated now (a lock is never lowered or shortened)",
        base.failures, r.failures
    ));
    // Each key's mark is in its own time steps (its period). Why the pending key gets one:
    // a lost write may have used it; the mark carries over when it is confirmed.
    if let Some(p) = r.pending.as_mut() {
        let mark = (now.0 / p.key.period.max(1)).saturating_add(window);
        let moved = p.replay_mark.map_or(mark, |s| s.max(mark));
        if Some(moved) != p.replay_mark {
            changes.push(format!(
                "replay mark of the pending key → time step {moved}: codes up to now plus \
                 the window are refused"
            ));
        }
        p.replay_mark = Some(moved);
    }
    for a in &mut r.authenticators {
        let mark = (now.0 / a.key.period.max(1)).saturating_add(window);
        let moved = a.last_step.map_or(mark, |s| s.max(mark));
        if Some(moved) != a.last_step {
            changes.push(format!(
                "replay mark of {} → time step {moved}: codes up to now plus the window are \
                 refused",
                field(&a.name)
            ));
        }
        a.last_step = Some(moved);
    }
    let mut spent = 0;
    for c in r.recovery.iter_mut().filter(|c| c.used.is_none()) {
        c.used = Some(now);
        spent += 1;
    }
    if spent > 0 {
        changes.push(format!(
            "{spent} unused recovery code(s) marked spent: the user makes new ones \
             (`twostepctl recovery-codes`)"
        ));
    }
    (r, changes)
}

/// Show what `name`'s damaged record holds, slot by slot, and what a repair would
/// write; with `confirm`, write it (keeping the damaged file beside it).
///
/// # Errors
/// Not an admin; no such user; no record; a record file that is not trusted (type,
/// owner, mode: fixed by hand, never read through); with `confirm`, a record with no
/// readable slot or a failed write.
pub(super) fn admin_repair(
    core: &Core,
    caller: &Caller,
    name: &str,
    confirm: bool,
    now: UnixTime,
) -> Result<RepairReport, Error> {
    core.authorize_admin(caller)?;
    let account: Account = core.accounts().by_name(name)?;
    let user = account.name.as_str();
    let policy = core.settings().lock_policy();
    let window = core.config().totp.window.get();
    // Why a file-store capability: slots, generations and damaged copies are the file
    // format's; another store keeps its own integrity rules.
    let Some(files) = core.store().files() else {
        return Err(Error::InvalidArgument(
            "this store has no record files to repair".into(),
        ));
    };
    files.with_uid_lock(account.uid, || {
        let Some(seen) = files.inspect(account.uid)? else {
            return Err(Error::InvalidArgument(format!(
                "user {user:?} has no record; nothing to repair"
            )));
        };
        let mut report = RepairReport {
            path: seen.path.display().to_string(),
            damage: seen.damage.clone().unwrap_or_default(),
            ..RepairReport::default()
        };
        for (i, s) in seen.slots.iter().enumerate() {
            report.slots.push(match s {
                SlotView::Readable {
                    generation,
                    record: Ok(r),
                } => format!(
                    "slot {i}: generation {generation}, readable: {}",
                    summary(r, now, &policy)
                ),
                SlotView::Readable {
                    generation,
                    record: Err(e),
                } => format!("slot {i}: generation {generation}, checksum holds but {e}"),
                SlotView::Empty => format!("slot {i}: empty (zeros)"),
                SlotView::Unreadable(why) => format!("slot {i}: unreadable ({why})"),
            });
        }
        if seen.damage.is_none() {
            return Ok(report);
        }
        let Some((index, generation, base)) = seen.newest_readable() else {
            report.may_be_lost.push(
                "no slot is readable: the user's factors, counters and replay marks are \
                 lost. Move the file away and have the user enrol again."
                    .to_owned(),
            );
            if confirm {
                return Err(Error::InvalidArgument(format!(
                    "no slot of {user:?}'s record is readable; there is nothing to \
                     restore from (see {})",
                    report.path
                )));
            }
            return Ok(report);
        };
        report.may_be_lost = vec![
            format!(
                "The damaged slot may have held the latest acknowledged write \
                 (generation {}): one change on top of slot {index} (generation \
                 {generation}), which one is unknown.",
                generation.saturating_add(1)
            ),
            "It may have been a failed attempt, a successful login, a spent recovery \
             code, new recovery codes, an enrolment or a move to a new authenticator, \
             an authenticator added or removed, 2FA switched off, or an admin change \
             (reset, unlock, require, exempt, toggle)."
                .to_owned(),
            "The repair makes the first three safe (below). If the user moved to a new \
             authenticator, removed one (a lost phone comes back) or was reset just \
             before the damage, that change is lost: ask the user, and run \
             `twostepctl user reset` if in doubt."
                .to_owned(),
        ];
        for e in base.events.iter().rev().take(3) {
            report
                .may_be_lost
                .push(format!("last event in slot {index}: {} {}", at(Some(e.at)), e.what));
        }
        let (mut repaired, changes) = conservative(base, now, window);
        let by = Source::admin(core.accounts(), caller);
        repaired.note(
            now,
            EventKind::Admin,
            format!(
                "admin repair by {}: restored generation {generation}; {}",
                by.actor_display(),
                changes.join("; ")
            ),
            &by,
        );
        report.restored = changes;
        report
            .restored
            .push(format!("then: {}", summary(&repaired, now, &policy)));
        if confirm {
            let kept = files.replace_damaged(
                &repaired,
                generation.saturating_add(2),
                now,
            )?;
            report.written = true;
            report.kept = kept.display().to_string();
            log::warn!(
                "admin_uid={} user={} action=repair outcome=done restored_generation={generation} kept={}",
                caller.uid,
                field(user),
                field(&report.kept)
            );
        }
        Ok(report)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Secret, TotpKey};
    use crate::core::recovery::StoredCode;

    fn key(period: u64) -> TotpKey {
        TotpKey {
            secret: Secret("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into()),
            algorithm: twostep_config::Algorithm::SHA1,
            digits: 6,
            period,
            created: UnixTime(1),
        }
    }

    fn code(id: &str, used: Option<u64>) -> StoredCode {
        StoredCode {
            id: id.into(),
            hash: "h".into(),
            used: used.map(UnixTime),
        }
    }

    #[test]
    fn a_repair_never_lowers_failures_locks_replay_marks_or_revives_codes() {
        let policy = lockout::LockPolicy {
            max_failures: 5,
            lockout_seconds: 300,
            failure_window_seconds: 900,
            backoff: false,
            max_lockout_seconds: 3600,
        };
        let now = UnixTime(3_000_000);
        let mut base = Record::new("alice");
        base.replace_authenticators(key(30), 99_999, UnixTime(1));
        base.failures = 3;
        base.last_failure = Some(UnixTime(2_999_990));
        base.recovery = vec![code("abc", Some(5)), code("def", None), code("ghk", None)];
        let (r, changes) = conservative(&base, now, 1);
        // The lost write may have been the 4th failure: it counts.
        assert_eq!(r.failures, 4);
        assert_eq!(r.last_failure, Some(now));
        // Any code accepted up to now (±1 step) is refused from here on.
        assert_eq!(r.highest_step(), Some(3_000_000 / 30 + 1));
        assert!(r.recovery.iter().all(|c| c.used.is_some()));
        assert_eq!(r.recovery[0].used, Some(UnixTime(5)));
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(r.authenticators[0].key, base.authenticators[0].key);

        // From 4 failures, one more locks: the repaired record is locked from now.
        base.failures = 4;
        let (r, _) = conservative(&base, now, 1);
        assert_eq!(
            lockout::state(&r, now, &policy),
            lockout::LockState::Until(now.plus(300))
        );
        // A lock already running is not shortened; a later replay mark is kept.
        base.failures = 7;
        base.last_failure = Some(now.plus(10));
        base.authenticators[0].last_step = Some(u64::MAX - 1);
        let (r, _) = conservative(&base, now, 1);
        assert_eq!((r.failures, r.last_failure), (8, Some(now.plus(10))));
        assert_eq!(r.highest_step(), Some(u64::MAX - 1));

        // A pending key with another period moves the mark for that period too.
        let mut pending = Record::new("bob");
        pending.pending = Some(crate::core::record::Pending {
            key: key(15),
            expires: now.plus(600),
            name: None,
            replay_mark: None,
        });
        let (r, _) = conservative(&pending, now, 2);
        let mark = r.pending.as_ref().and_then(|p| p.replay_mark);
        assert_eq!(mark, Some(3_000_000 / 15 + 2));
        // Nothing enrolled: no replay mark to move, and none invented.
        let (r, _) = conservative(&Record::new("carol"), now, 1);
        assert_eq!((r.failures, r.highest_step()), (1, None));
    }
}
