// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's state and its login conversations.
//!
//! Every operation on an account's record runs under that account's lock, so count-and-check
//! is atomic per account; different accounts never wait for each other.
//!
//! Identity: records, locks, sessions, failure counters and replay marks belong to the
//! account, the uid an exact NSS look-up of the name gives, so every name of one uid
//! (`useradd -o`) shares them. A record also carries the name it was made under. When that
//! name no longer resolves to the uid (the uid was re-used by a new account after
//! `userdel`, or the account was renamed), the record is not handed to the new name, nor
//! dropped silently: that uid's logins fail closed with [`Error::FormerAccount`], which
//! tells the admin to run `twostepctl user reset NAME` (the new account then starts without
//! 2FA). See docs/admin.md, "Accounts, uids and re-used uids".
//!
//! Login conversations are bounded per bus connection, per account and in all, root callers
//! included (`[login]` in the config), and end when their connection leaves the bus.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use twostep_config::{Config, RecoveryMode};
use twostep_proto::{limits, Accept, Step, Verdict};

use super::lockout::{self, LockPolicy, LockState};
use super::policy::{self, Requirement};
use super::record::{Record, TotpKey};
use super::recovery::{self, HashPool};
use super::store::{Migration, Store};
use super::totp::{self, Check};
use super::users::{self, Account};
use super::{authz, qr, Error, UnixTime};

/// Login sessions in flight per non-root caller uid (on top of the `[login]` bounds).
const MAX_SESSIONS_PER_CALLER_UID: usize = 16;
/// Unique names of connections that left the bus, remembered so that a Begin still running
/// when its connection left does not leave a session behind (the bus never re-uses a name):
/// at most this many marks; see [`Sessions::forgotten`] for what happens past it.
const MAX_DEPARTED: usize = 4096;
/// Seconds a departure mark is kept beyond the prompt timeout (a Begin that ran longer than
/// this stores a session that has already expired, or is refused; see [`Sessions::forgotten`]).
const DEPARTED_MARGIN_SECS: u64 = 60;
/// argon2 computations at once (one per core on the reference machine).
const HASH_WORKERS: usize = 2;
/// Warn when this few recovery codes are left.
const FEW_RECOVERY_CODES: usize = 3;

/// Who is calling, as the bus reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The caller's unique bus name: a session answers only to the connection that began it.
    pub sender: String,
}

/// Where a login comes from, for audit lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginContext {
    pub service: String,
    pub rhost: String,
    pub tty: String,
}

impl LoginContext {
    /// Keep the known keys, bounded.
    ///
    /// # Errors
    /// Too many entries or an over-long value.
    pub fn from_map(map: &HashMap<String, String>) -> Result<LoginContext, Error> {
        use twostep_proto::login::{CTX_RHOST, CTX_SERVICE, CTX_TTY};
        let bad = || Error::InvalidArgument("malformed login context".into());
        if map.len() > limits::MAX_CONTEXT_ENTRIES {
            return Err(bad());
        }
        let get = |k: &str| -> Result<String, Error> {
            match map.get(k) {
                Some(v) if v.len() > limits::MAX_CONTEXT_LEN || v.chars().any(char::is_control) => {
                    Err(bad())
                }
                Some(v) => Ok(v.clone()),
                None => Ok(String::new()),
            }
        };
        Ok(LoginContext {
            service: get(CTX_SERVICE)?,
            rhost: get(CTX_RHOST)?,
            tty: get(CTX_TTY)?,
        })
    }
}

/// What a session waits for.
enum Awaiting {
    /// A code (or recovery code) of the enrolled user.
    Factor,
    /// The first code of a key created for enrolment at login.
    EnrolConfirm(TotpKey),
    /// Enter, after the recovery codes were shown.
    Acknowledge,
}

struct Session {
    caller: Caller,
    /// The account, resolved by exact NSS look-up when the session began (the name is
    /// the one the login used).
    account: Account,
    ctx: LoginContext,
    expires: UnixTime,
    awaiting: Awaiting,
}

/// Outcome of checking one answer against a user's factors.
#[must_use]
pub(super) enum Factor {
    Totp,
    Recovery {
        left: usize,
    },
    /// Wrong or replayed; the text is for the user, the tag for the audit line.
    Wrong {
        text: String,
        tag: &'static str,
    },
    Locked(String),
}

/// The login conversations in flight, and the connections that left the bus.
#[derive(Default)]
struct Sessions {
    by_id: HashMap<String, Session>,
    departed: HashSet<String>,
    /// The marks in `departed`, oldest first, with the time the connection left.
    departed_order: VecDeque<(String, UnixTime)>,
    /// The latest departure time among the marks dropped (by age or by number). A session
    /// whose Begin (or answer) started at or before it is not stored: its connection may be
    /// one of the forgotten ones, so the call fails closed (try again) instead.
    forgotten: Option<UnixTime>,
}

impl Sessions {
    /// Whether a session of `sender`, begun at `start`, may be stored now.
    ///
    /// # Errors
    /// [`Error::NoSession`] when its connection left; [`Error::Busy`] when that cannot be
    /// told because its mark was dropped under heavy churn.
    fn may_store(&self, sender: &str, start: UnixTime) -> Result<(), Error> {
        if self.departed.contains(sender) {
            // The connection left while this call ran: nobody can answer.
            return Err(Error::NoSession);
        }
        if self.forgotten.is_some_and(|t| start <= t) {
            return Err(Error::Busy(
                "too many connections came and went during this login; try again".into(),
            ));
        }
        Ok(())
    }
}

/// The bounds on login conversations, from `[login]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub per_connection: usize,
    pub per_user: usize,
    pub total: usize,
}

impl SessionLimits {
    fn from_config(c: &Config) -> SessionLimits {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        SessionLimits {
            per_connection: n(c.login.max_sessions_per_connection.get()),
            per_user: n(c.login.max_sessions_per_user.get()),
            total: n(c.login.max_sessions.get()),
        }
    }
}

/// Whether one more session may begin for `uid` on `caller`'s connection next to `open`
/// (live sessions only). Root callers are bound like everyone: per connection, per target
/// account and in all; non-root callers also per caller uid.
///
/// # Errors
/// [`Error::Busy`] naming the bound that was hit (never a user name).
fn admit<'a>(
    open: impl Iterator<Item = (&'a Caller, u32)>,
    caller: &Caller,
    uid: u32,
    limits: SessionLimits,
) -> Result<(), Error> {
    let (mut total, mut connection, mut user, mut caller_uid) = (0, 0, 0, 0);
    for (c, target) in open {
        total += 1;
        connection += usize::from(c.sender == caller.sender);
        user += usize::from(target == uid);
        caller_uid += usize::from(c.uid == caller.uid);
    }
    let busy = |what: &str| {
        Err(Error::Busy(format!(
            "too many login conversations open {what}"
        )))
    };
    if connection >= limits.per_connection {
        return busy("on this connection");
    }
    if user >= limits.per_user {
        return busy("for this account");
    }
    if caller.uid != 0 && caller_uid >= MAX_SESSIONS_PER_CALLER_UID {
        return busy("by this caller");
    }
    if total >= limits.total {
        return busy("in all");
    }
    Ok(())
}

pub struct Core {
    pub(super) config: RwLock<Arc<Config>>,
    pub(super) issuer: String,
    pub(super) store: Store,
    locks: Mutex<HashMap<u32, Arc<Mutex<()>>>>,
    sessions: Mutex<Sessions>,
    /// Names of name-keyed records not yet moved to their uid because NSS failed at start;
    /// retried before any record is looked at, so another name of the same uid never
    /// misses the record.
    unmigrated: Mutex<Vec<String>>,
    pub(super) hashes: HashPool,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Why: a panic while holding one of these maps leaves it consistent (plain inserts and
    // removals), so poisoning must not take the whole daemon down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// # Errors
    /// The state directory cannot be opened.
    pub fn new(config: Config) -> Result<Core, String> {
        let store = Store::open(&config.daemon.state_dir)?;
        let issuer = if config.totp.issuer.is_empty() {
            nix::unistd::gethostname()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "twostep".into())
        } else {
            config.totp.issuer.clone()
        }
        .replace(':', "-");
        let core = Core {
            config: RwLock::new(Arc::new(config)),
            issuer,
            store,
            locks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(Sessions::default()),
            unmigrated: Mutex::new(Vec::new()),
            hashes: HashPool::new(HASH_WORKERS),
        };
        let legacy = core.store.legacy_names()?;
        core.migrate(legacy);
        Ok(core)
    }

    /// Move name-keyed records to their uid (the layout before records were keyed by
    /// account). A name NSS does not know is left in place and logged (its account is gone;
    /// the record is kept for the admin); a failed look-up is retried later. The names are
    /// grouped by the uid they resolve to: when several names of one uid have a name-keyed
    /// record, none is moved (which one holds the enrolment is the admin's call) and that
    /// uid's logins fail closed (see [`Core::load_unchecked`]).
    fn migrate(&self, names: Vec<String>) {
        let mut retry = Vec::new();
        let mut by_uid: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for name in names {
            match users::by_name(&name) {
                Ok(a) => by_uid.entry(a.uid).or_default().push(name),
                Err(Error::UnknownUser(_)) => {
                    log::warn!(
                        "user={} outcome=not-migrated reason=\"name-keyed record of an account \
                         NSS does not know; left in place\"",
                        field(&name)
                    );
                }
                Err(e) => {
                    log::warn!(
                        "user={} outcome=migration-deferred reason={}",
                        field(&name),
                        field(&e.to_string())
                    );
                    retry.push(name);
                }
            }
        }
        for (uid, names) in by_uid {
            if names.len() > 1 {
                legacy_conflict(uid, &names);
                continue;
            }
            for name in names {
                match self.with_uid_lock(uid, || self.store.migrate_legacy(&name, uid)) {
                    Ok(Migration::Moved(_)) => log::info!(
                        "user={} uid={uid} outcome=migrated (record now keyed by uid)",
                        field(&name)
                    ),
                    Ok(Migration::Nothing) => {}
                    Ok(Migration::Conflict) => log::error!(
                        "user={} uid={uid} outcome=not-migrated reason=\"another name of this uid \
                         has its own record, which stays in force; the name-keyed record is left \
                         in place\"",
                        field(&name)
                    ),
                    Err(e) => log::error!(
                        "user={} outcome=not-migrated reason={}",
                        field(&name),
                        field(&e.to_string())
                    ),
                }
            }
        }
        lock(&self.unmigrated).extend(retry);
    }

    /// The names with a name-keyed (legacy) record that NSS resolves to `uid`.
    ///
    /// # Errors
    /// [`Error::Busy`] when the records cannot be listed or NSS fails (fail closed).
    fn legacy_names_of(&self, uid: u32) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for name in self.store.legacy_names().map_err(Error::Busy)? {
            match users::by_name(&name) {
                Ok(a) if a.uid == uid => names.push(name),
                Ok(_) | Err(Error::UnknownUser(_) | Error::InvalidArgument(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(names)
    }

    /// Retry the migrations NSS made us defer (cheap when there are none).
    fn migrate_deferred(&self) {
        let names = std::mem::take(&mut *lock(&self.unmigrated));
        if !names.is_empty() {
            self.migrate(names);
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn lock_policy(&self) -> LockPolicy {
        LockPolicy::from_config(&self.config().lockout)
    }

    pub(super) fn digits(&self) -> u8 {
        u8::try_from(self.config().totp.digits.get()).unwrap_or(6)
    }

    /// Run `f` under the lock of account `uid` (after any deferred migration, so the
    /// record `f` looks for is where it belongs).
    pub(super) fn with_user<T>(&self, uid: u32, f: impl FnOnce() -> T) -> T {
        self.migrate_deferred();
        self.with_uid_lock(uid, f)
    }

    fn with_uid_lock<T>(&self, uid: u32, f: impl FnOnce() -> T) -> T {
        let m = Arc::clone(lock(&self.locks).entry(uid).or_default());
        let out = {
            let _held = lock(&m);
            f()
        };
        // Drop the entry when nobody else holds it, so names tried once (unknown users
        // through sshd, say) do not accumulate. Others clone it only under the map lock.
        let mut map = lock(&self.locks);
        if Arc::strong_count(&m) == 2 {
            map.remove(&uid);
        }
        out
    }

    /// The record of `account` as stored (moved from the name-keyed layout on first use),
    /// without the identity check. The caller holds the account's lock.
    pub(super) fn load_unchecked(&self, account: &Account) -> Result<Option<Record>, Error> {
        // The store knows records by uid; errors name the account as the login named it.
        let named = |e: Error| match e {
            Error::CorruptRecord { reason, .. } => Error::CorruptRecord {
                user: format!("{} (uid {})", account.name, account.uid),
                reason,
            },
            Error::Storage { reason, .. } => Error::Storage {
                user: format!("{} (uid {})", account.name, account.uid),
                reason,
            },
            other => other,
        };
        if let Some(r) = self.store.load(account.uid).map_err(named)? {
            return Ok(Some(r));
        }
        // Every name of the uid, not only the one used: one name's old record must never
        // hide another's, so several of them fail closed until the admin picks one.
        let legacy = self.legacy_names_of(account.uid)?;
        let name = match legacy.as_slice() {
            [] => return Ok(None),
            [one] => one.as_str(),
            several => {
                return Err(named(Error::CorruptRecord {
                    user: String::new(),
                    reason: legacy_conflict(account.uid, several),
                }));
            }
        };
        match self
            .store
            .migrate_legacy(name, account.uid)
            .map_err(named)?
        {
            Migration::Moved(r) => {
                log::info!(
                    "user={} uid={} outcome=migrated (record now keyed by uid)",
                    field(name),
                    account.uid
                );
                Ok(Some(*r))
            }
            Migration::Nothing | Migration::Conflict => self.store.load(account.uid).map_err(named),
        }
    }

    /// The record of `account`, checked to belong to it (see [`Core::check_identity`]).
    /// The caller holds the account's lock.
    ///
    /// # Errors
    /// An unreadable record, or [`Error::FormerAccount`].
    pub(super) fn load(&self, account: &Account) -> Result<Option<Record>, Error> {
        let record = self.load_unchecked(account)?;
        if let Some(r) = &record {
            check_identity(account, r)?;
        }
        Ok(record)
    }

    /// Load `account`'s record under its lock (a new one if it has none), change it with
    /// `f`, and save it if `f` says so.
    pub(super) fn update<T>(
        &self,
        account: &Account,
        f: impl FnOnce(&mut Record) -> Result<(T, bool), Error>,
    ) -> Result<T, Error> {
        self.with_user(account.uid, || {
            let mut record = self
                .load(account)?
                .unwrap_or_else(|| Record::for_account(&account.name, account.uid));
            let (out, changed) = f(&mut record)?;
            if changed {
                self.store.save(&record)?;
            }
            Ok(out)
        })
    }

    /// Whether `account` must use 2FA, decided for its uid: every name the account is
    /// known by (the name used, the uid's name from NSS, the name on the record, the
    /// uid's other names in /etc/passwd, each confirmed by NSS) is looked at; required if
    /// any name's groups make it required, exempt only if all are exempt. An admin override
    /// decides alone.
    ///
    /// # Errors
    /// [`Error::Busy`] (fail closed) when a group look-up fails, or when a configured
    /// required group no longer resolves while the policy depends on it (logged).
    pub(super) fn requirement(
        &self,
        account: &Account,
        record: &Record,
    ) -> Result<Requirement, Error> {
        let config = self.config();
        let policy = &config.policy;
        if record.policy_override != policy::Override::Default {
            // The admin's override decides; no name's groups matter.
            return Ok(policy::requirement(policy, record.policy_override, &[]));
        }
        if policy.require == twostep_config::Require::Groups {
            for group in &policy.groups {
                match nix::unistd::Group::from_name(group) {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        log::error!(
                            "uid={} group={} outcome=denied reason=\"this required group no \
                             longer exists; users not enrolled cannot log in until the group \
                             is restored or removed from policy.groups\"",
                            account.uid,
                            field(group)
                        );
                        return Err(Error::Busy(format!(
                            "required group {group:?} does not exist; ask an administrator"
                        )));
                    }
                    Err(e) => {
                        return Err(Error::Busy(format!("group look-up failed: {e}")));
                    }
                }
            }
        }
        let mut names = vec![account.name.clone()];
        let by_uid = users::by_uid(account.uid)?;
        let local = users::local_names_of(account.uid)?;
        for name in [by_uid.name, record.user.clone()].into_iter().chain(local) {
            if !name.is_empty() && !names.contains(&name) {
                names.push(name);
            }
        }
        let mut exempt = None;
        for name in &names {
            let groups = if *name == account.name {
                users::group_names(account)?
            } else {
                match users::by_name(name) {
                    Ok(other) if other.uid == account.uid => users::group_names(&other)?,
                    // A record name that no longer has this uid: check_identity refuses it.
                    Ok(_) | Err(Error::UnknownUser(_)) => continue,
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

    /// A new TOTP key with the configured parameters.
    pub(super) fn new_key(&self, now: UnixTime) -> Result<TotpKey, Error> {
        let c = self.config();
        totp::new_key(c.totp.algorithm, self.digits(), c.totp.period.get(), now)
            .map_err(Error::Busy)
    }

    /// Check `answer` against the user's factors (TOTP, then recovery codes); a locked
    /// user's answer is not evaluated. Every evaluated attempt costs exactly one durable
    /// write, made before anything about it is answered: a wrong answer is charged (count,
    /// time, event) and saved here; on success the record is changed in memory (counter
    /// reset, replay mark or spent recovery code) and the CALLER saves it, together with its
    /// own changes, before answering. Nothing is answered if that write fails, so a crash or
    /// a full disk can lose an attempt only together with its answer. The user's lock, held
    /// by the caller, makes evaluate-and-write atomic against concurrent attempts.
    pub(super) fn verify_factor(
        &self,
        record: &mut Record,
        answer: &[u8],
        now: UnixTime,
    ) -> Result<Factor, Error> {
        let policy = self.lock_policy();
        let config = self.config();
        if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
            return Ok(Factor::Locked(msg));
        }
        let Some(key) = record.totp.clone() else {
            return Err(Error::NotEnrolled(record.user.clone()));
        };
        let answer = if answer.len() <= limits::MAX_ANSWER_LEN {
            answer
        } else {
            b""
        };
        let corrupt = |reason: String| Error::CorruptRecord {
            user: record.user.clone(),
            reason,
        };
        let is_code = answer.iter().all(u8::is_ascii_digit);
        let check = if is_code {
            totp::check(
                &key,
                answer,
                now,
                config.totp.window.get(),
                record.last_step,
            )
            .map_err(corrupt)?
        } else {
            Check::Wrong
        };
        let outcome = match check {
            Check::Accepted { step } => {
                record.last_step = Some(step);
                Factor::Totp
            }
            Check::Replayed => Factor::Wrong {
                text: "That code was already used; wait for the next one.".into(),
                tag: "replayed",
            },
            Check::Wrong => match recovery::find(answer, &record.recovery, &self.hashes) {
                Some(i) => {
                    if let Some(c) = record.recovery.get_mut(i) {
                        c.used = Some(now);
                    }
                    Factor::Recovery {
                        left: recovery::left(&record.recovery),
                    }
                }
                None => Factor::Wrong {
                    text: "Wrong verification code.".into(),
                    tag: "wrong-code",
                },
            },
        };
        if let Factor::Totp | Factor::Recovery { .. } = outcome {
            lockout::succeed(record, now);
        }
        Ok(match outcome {
            Factor::Wrong { text, tag } => {
                lockout::charge(record, now, &policy);
                record.note(now, "failed attempt");
                self.store.save(record)?;
                let text = match locked_message(lockout::state(record, now, &policy), now) {
                    Some(lock) => {
                        self.notify_locked(record, now);
                        format!("{text} {lock}")
                    }
                    None => text,
                };
                Factor::Wrong { text, tag }
            }
            other => other,
        })
    }

    /// The user was just locked. Mail to the user goes here once mail is configured (the
    /// email issue); until then the lock is logged for the admin.
    fn notify_locked(&self, record: &Record, now: UnixTime) {
        let until = match lockout::state(record, now, &self.lock_policy()) {
            LockState::Until(t) => t.0.to_string(),
            LockState::UntilUnlocked => "unlock".into(),
            LockState::Open => return,
        };
        log::warn!(
            "user={} outcome=locked failures={} until={until}",
            field(&record.user),
            record.failures
        );
    }

    /// Open a login conversation for `user`.
    ///
    /// # Errors
    /// Unknown user, a caller that may not check this user, an unreadable record, too
    /// many sessions.
    pub fn begin_login(
        &self,
        caller: &Caller,
        user: &str,
        ctx: LoginContext,
        now: UnixTime,
    ) -> Result<(String, Step), Error> {
        users::check_name(user)?;
        // The account is the uid of an exact NSS look-up: every name of one uid is one
        // account. A non-root caller may act only for its own uid, and gets the same answer
        // for a name that does not exist as for another user's (nothing to enumerate).
        let account = if caller.uid == 0 {
            users::by_name(user)?
        } else {
            match users::by_name(user) {
                Ok(a) if authz::may_run_login(caller.uid, &a).is_ok() => a,
                _ => return Err(authz::not_for_others(caller.uid)),
            }
        };
        // Cheap refusal before any record is read: a flood of conversations nobody answers
        // costs little, and the bounds are checked again when the session is stored.
        self.session_room(caller, account.uid, now)?;
        let user = account.name.as_str();
        let record = self
            .with_user(account.uid, || self.load(&account))?
            .unwrap_or_else(|| Record::for_account(user, account.uid));
        if record.totp.is_none() {
            let required = self.requirement(&account, &record)?;
            if !required.required {
                audit(&account, &ctx, caller, "not-enrolled");
                return Ok((String::new(), done(Verdict::NotEnrolled, String::new())));
            }
            if let Some(reminder) = self.grace(&account, now)? {
                audit(&account, &ctx, caller, "success (enrolment grace)");
                return Ok((String::new(), done(Verdict::Success, reminder)));
            }
            audit(&account, &ctx, caller, "enrolment-started");
            let key = self.new_key(now)?;
            let step = self.enrolment_prompt(&key, user)?;
            let id = self.new_session(caller, &account, ctx, now, Awaiting::EnrolConfirm(key))?;
            return Ok((id, step));
        }
        if let Some(msg) = locked_message(lockout::state(&record, now, &self.lock_policy()), now) {
            audit(&account, &ctx, caller, "locked");
            return Ok((String::new(), done(Verdict::Locked, msg)));
        }
        let digits = self.digits();
        let accept = if recovery::left(&record.recovery) > 0 {
            Accept::DigitsOrText {
                n: digits,
                max: twostep_proto::MAX_RECOVERY_LEN,
            }
        } else {
            Accept::Digits { n: digits }
        };
        let step = Step::Prompt {
            message: String::new(),
            prompt: "Verification code: ".into(),
            accept,
        };
        let id = self.new_session(caller, &account, ctx, now, Awaiting::Factor)?;
        Ok((id, step))
    }

    /// Within the enrolment grace period: the reminder to show. Starts the period at the
    /// first login that needs it (durably).
    fn grace(&self, account: &Account, now: UnixTime) -> Result<Option<String>, Error> {
        let user = account.name.as_str();
        let days = self.config().policy.enroll_grace_days.get();
        if days == 0 {
            return Ok(None);
        }
        let since = self.update(account, |r| {
            if r.totp.is_some() {
                return Ok((None, false));
            }
            match r.required_since {
                Some(t) => Ok((Some(t), false)),
                None => {
                    r.required_since = Some(now);
                    r.note(now, "2FA required: enrolment grace period started");
                    Ok((Some(now), true))
                }
            }
        })?;
        let Some(since) = since else { return Ok(None) };
        let end = since.plus(days.saturating_mul(86_400));
        if now >= end {
            return Ok(None);
        }
        let left = (end.0 - now.0).div_ceil(86_400);
        Ok(Some(format!(
            "Two-factor authentication is required for {user}: set it up with \
             `twostepctl enroll`. Without it, logins stop working in {left} day{}.",
            if left == 1 { "" } else { "s" }
        )))
    }

    fn enrolment_prompt(&self, key: &TotpKey, user: &str) -> Result<Step, Error> {
        let uri = totp::otpauth_uri(key, &self.issuer, user).map_err(Error::InvalidArgument)?;
        let picture = qr::terminal(&uri).map_err(Error::Busy)?;
        let message = format!(
            "Two-factor authentication is required for {user}. Set it up now:\n\
             scan this QR code with an authenticator app,\n\n{picture}\n\n\
             or enter this key by hand: {}\n({}, {} digits, every {} s, time-based)",
            totp::group4(&key.secret.0),
            key.algorithm.as_str(),
            key.digits,
            key.period
        );
        Ok(Step::Prompt {
            message,
            prompt: "Code from your app: ".into(),
            accept: Accept::Digits { n: key.digits },
        })
    }

    fn session_limits(&self) -> SessionLimits {
        SessionLimits::from_config(&self.config())
    }

    fn prompt_seconds(&self) -> u64 {
        self.config().login.prompt_timeout_seconds.get()
    }

    /// Whether a session for account `uid` could begin on `caller`'s connection now.
    fn session_room(&self, caller: &Caller, uid: u32, now: UnixTime) -> Result<(), Error> {
        let mut sessions = lock(&self.sessions);
        sessions.by_id.retain(|_, s| s.expires > now);
        if sessions.departed.contains(&caller.sender) {
            return Err(Error::NoSession);
        }
        let open = sessions.by_id.values().map(|s| (&s.caller, s.account.uid));
        admit(open, caller, uid, self.session_limits())
    }

    fn new_session(
        &self,
        caller: &Caller,
        account: &Account,
        ctx: LoginContext,
        now: UnixTime,
        awaiting: Awaiting,
    ) -> Result<String, Error> {
        let limits = self.session_limits();
        let expires = now.plus(self.prompt_seconds());
        let mut sessions = lock(&self.sessions);
        sessions.by_id.retain(|_, s| s.expires > now);
        sessions.may_store(&caller.sender, now)?;
        let open = sessions.by_id.values().map(|s| (&s.caller, s.account.uid));
        admit(open, caller, account.uid, limits)?;
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).map_err(|e| Error::Busy(format!("random source: {e}")))?;
        let id = hex::encode(raw);
        sessions.by_id.insert(
            id.clone(),
            Session {
                caller: caller.clone(),
                account: account.clone(),
                ctx,
                expires,
                awaiting,
            },
        );
        Ok(id)
    }

    /// The connection `sender` left the bus: its login conversations end now, and a Begin
    /// of it still running stores none.
    pub fn end_connection(&self, sender: &str) {
        self.end_connection_at(sender, super::clock::now());
    }

    /// [`Core::end_connection`] at time `now`. Departure marks are kept for the prompt
    /// timeout plus [`DEPARTED_MARGIN_SECS`], at most [`MAX_DEPARTED`] of them; dropping one
    /// moves [`Sessions::forgotten`] forward, so no call that may belong to it stores a
    /// session.
    fn end_connection_at(&self, sender: &str, now: UnixTime) {
        let keep = self.prompt_seconds().saturating_add(DEPARTED_MARGIN_SECS);
        let mut sessions = lock(&self.sessions);
        sessions.by_id.retain(|_, s| s.caller.sender != sender);
        if sessions.departed.insert(sender.to_owned()) {
            sessions.departed_order.push_back((sender.to_owned(), now));
        }
        while let Some((old, at)) = sessions.departed_order.front().cloned() {
            if sessions.departed_order.len() <= MAX_DEPARTED && at.plus(keep) >= now {
                break;
            }
            sessions.departed_order.pop_front();
            sessions.departed.remove(&old);
            sessions.forgotten = Some(sessions.forgotten.map_or(at, |t| t.max(at)));
        }
    }

    /// Login conversations open now (for tests and diagnostics).
    pub fn open_sessions(&self, now: UnixTime) -> usize {
        let mut sessions = lock(&self.sessions);
        sessions.by_id.retain(|_, s| s.expires > now);
        sessions.by_id.len()
    }

    /// Answer the prompt of session `id`.
    ///
    /// # Errors
    /// No such session (or not this caller's), an unreadable record, a failed write.
    pub fn answer(
        &self,
        caller: &Caller,
        id: &str,
        answer: &[u8],
        now: UnixTime,
    ) -> Result<Step, Error> {
        let session = {
            let mut sessions = lock(&self.sessions);
            match sessions.by_id.get(id) {
                Some(s) if s.caller == *caller && s.expires > now => sessions.by_id.remove(id),
                _ => None,
            }
        }
        .ok_or(Error::NoSession)?;
        let (step, next) = match session.awaiting {
            Awaiting::Factor => (
                self.answer_factor(caller, &session.account, &session.ctx, answer, now)?,
                None,
            ),
            Awaiting::EnrolConfirm(ref key) => {
                let key = key.clone();
                self.answer_enrolment(caller, &session.account, &session.ctx, key, answer, now)?
            }
            Awaiting::Acknowledge => {
                audit(&session.account, &session.ctx, caller, "success (enrolled)");
                (done(Verdict::Success, String::new()), None)
            }
        };
        if let Some(awaiting) = next {
            // The conversation goes on under the same session id (it was just taken out,
            // so it fits its bounds), unless its connection left meanwhile.
            let expires = now.plus(self.prompt_seconds());
            let mut sessions = lock(&self.sessions);
            if sessions.may_store(&caller.sender, now).is_ok() {
                sessions.by_id.insert(
                    id.to_owned(),
                    Session {
                        awaiting,
                        expires,
                        ..session
                    },
                );
            }
        }
        Ok(step)
    }

    fn answer_factor(
        &self,
        caller: &Caller,
        account: &Account,
        ctx: &LoginContext,
        answer: &[u8],
        now: UnixTime,
    ) -> Result<Step, Error> {
        let mode = self.config().recovery.mode;
        let (step, outcome) = self.with_user(account.uid, || {
            let Some(mut record) = self.load(account)? else {
                return Ok((done(Verdict::NotEnrolled, String::new()), "not-enrolled"));
            };
            if record.totp.is_none() {
                return Ok((done(Verdict::NotEnrolled, String::new()), "not-enrolled"));
            }
            Ok(match self.verify_factor(&mut record, answer, now)? {
                Factor::Totp => {
                    record.note(now, login_event("success", ctx));
                    self.store.save(&record)?;
                    (done(Verdict::Success, String::new()), "success")
                }
                Factor::Recovery { left } => {
                    let msg = if mode == RecoveryMode::Disables2fa {
                        record.forget_factors();
                        record.note(now, "recovery code used: 2FA switched off");
                        "Recovery code accepted. Two-factor authentication is now off for your \
                         account: set it up again with `twostepctl enroll`."
                            .to_owned()
                    } else {
                        record.note(now, login_event("success (recovery code)", ctx));
                        recovery_left_message(left)
                    };
                    self.store.save(&record)?;
                    (done(Verdict::Success, msg), "success-recovery-code")
                }
                Factor::Wrong { text, tag } => (done(Verdict::Denied, text), tag),
                Factor::Locked(msg) => (done(Verdict::Locked, msg), "locked"),
            })
        })?;
        audit(account, ctx, caller, outcome);
        Ok(step)
    }

    /// Confirm a key made for enrolment at login; on success the next step shows the
    /// recovery codes and waits for Enter.
    fn answer_enrolment(
        &self,
        caller: &Caller,
        account: &Account,
        ctx: &LoginContext,
        key: TotpKey,
        answer: &[u8],
        now: UnixTime,
    ) -> Result<(Step, Option<Awaiting>), Error> {
        let config = self.config();
        let check = totp::check(&key, answer, now, config.totp.window.get(), None)
            .map_err(Error::InvalidArgument)?;
        let user = account.name.as_str();
        let Check::Accepted { step } = check else {
            audit(account, ctx, caller, "enrolment-wrong-code");
            let text = "That code is not right. Log in again to start over, or set up your \
                        authenticator with `twostepctl enroll`.";
            return Ok((done(Verdict::Denied, text.into()), None));
        };
        let count = usize::try_from(config.recovery.count.get()).unwrap_or(10);
        let (shown, stored) = recovery::generate(count, &self.hashes).map_err(Error::Busy)?;
        self.update(account, |record| {
            if record.totp.is_some() {
                // Enrolled meanwhile (another login or twostepctl): keep that one.
                return Err(Error::AlreadyEnrolled(user.to_owned()));
            }
            record.totp = Some(key);
            record.pending = None;
            record.last_step = Some(record.last_step.map_or(step, |s| s.max(step)));
            record.recovery = stored;
            record.note(now, login_event("enrolled at login", ctx));
            Ok(((), true))
        })?;
        audit(account, ctx, caller, "enrolled");
        let codes: Vec<&str> = shown.iter().map(|c| c.as_str()).collect();
        let message = format!(
            "Your authenticator is set up. These recovery codes each log you in once if you \
             lose your phone. They are shown only now: write them down or store them safely.\n\n  {}\n",
            codes.join("\n  ")
        );
        Ok((
            Step::Prompt {
                message,
                prompt: "Press Enter once you have saved them: ".into(),
                accept: Accept::Acknowledge,
            },
            Some(Awaiting::Acknowledge),
        ))
    }
}

/// The admin message for a uid with name-keyed records under several names: logged as
/// `uid=N outcome=not-migrated reason="…"`, and returned (the error's reason).
fn legacy_conflict(uid: u32, names: &[String]) -> String {
    let files: Vec<String> = names
        .iter()
        .map(|n| format!("{} ({n})", super::store::legacy_file_name(n)))
        .collect();
    let why = format!(
        "several names of this uid have an old name-keyed record: {}; none is moved and \
         logins of this uid fail closed until an administrator removes all but the right one \
         from the users directory",
        files.join(", ")
    );
    log::error!("uid={uid} outcome=not-migrated reason={}", field(&why));
    why
}

fn done(verdict: Verdict, message: String) -> Step {
    Step::Done { verdict, message }
}

fn recovery_left_message(left: usize) -> String {
    let mut msg = format!(
        "Recovery code accepted. {left} recovery code{} left.",
        if left == 1 { "" } else { "s" }
    );
    if left <= FEW_RECOVERY_CODES {
        msg.push_str(" Generate new ones soon with `twostepctl recovery-codes`.");
    }
    msg
}

fn login_event(what: &str, ctx: &LoginContext) -> String {
    format!(
        "{what} service={} rhost={}",
        field(&ctx.service),
        field(&ctx.rhost)
    )
}

pub(super) fn locked_message(state: LockState, now: UnixTime) -> Option<String> {
    match state {
        LockState::Open => None,
        LockState::Until(t) => Some(format!(
            "Too many failed attempts: locked for {} more seconds.",
            t.0.saturating_sub(now.0).max(1)
        )),
        LockState::UntilUnlocked => Some(
            "Too many failed attempts: locked until an administrator unlocks the account.".into(),
        ),
    }
}

/// Whether `record` belongs to `account`: it was made under this name, or under another
/// name that NSS still gives this uid (`useradd -o`: one account, several names). A record
/// made under a name that no longer resolves to this uid belongs to a former account.
///
/// # Errors
/// [`Error::FormerAccount`]; [`Error::Busy`] when NSS fails (fail closed, try again).
pub(super) fn check_identity(account: &Account, record: &Record) -> Result<(), Error> {
    if record.user == account.name {
        return Ok(());
    }
    match users::by_name(&record.user) {
        Ok(a) if a.uid == account.uid => Ok(()),
        Err(Error::Busy(why)) => Err(Error::Busy(why)),
        _ => Err(Error::FormerAccount {
            uid: account.uid,
            enrolled_as: record.user.clone(),
            now: account.name.clone(),
        }),
    }
}

/// One audit line per login outcome: who, from where, what. Never a code.
fn audit(account: &Account, ctx: &LoginContext, caller: &Caller, outcome: &str) {
    log::info!(
        "user={} uid={} service={} rhost={} tty={} caller_uid={} outcome={}",
        field(&account.name),
        account.uid,
        field(&ctx.service),
        field(&ctx.rhost),
        field(&ctx.tty),
        caller.uid,
        outcome
    );
}

/// One value of an audit or log line (`key=value`), written so that no value can be read
/// as more than one field: an empty value is `-`; a value holding a space, `=`, `"`, `\\`,
/// a non-ASCII or control character (or `-` itself) is put in double quotes, with `"` and
/// `\\` escaped by a backslash and control characters as `\u{..}`. Every log line and
/// record event that carries a name or a client-supplied value goes through here.
pub(super) fn field(value: &str) -> std::borrow::Cow<'_, str> {
    if value.is_empty() {
        return "-".into();
    }
    let plain = value != "-"
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '=' && c != '"' && c != '\\');
    if plain {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    out.push('"');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use twostep_config::Bounded;
    use twostep_proto::Step;

    const T0: UnixTime = UnixTime(1_800_000_000);

    fn core(dir: &std::path::Path) -> Core {
        let mut c = Config::default();
        c.daemon.state_dir = dir.join("state");
        c.lockout.max_failures = Bounded::new(3);
        c.recovery.count = Bounded::new(10);
        c.totp.issuer = "test".into();
        Core::new(c).unwrap()
    }

    fn root() -> Caller {
        Caller {
            uid: 0,
            sender: ":1.1".into(),
        }
    }

    fn code(secret: &str, at: UnixTime) -> String {
        let raw = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 0, 30, raw, None, String::new())
            .unwrap()
            .generate(at.0)
    }

    /// Enrol root (the caller's own account) and return the secret.
    fn enrol(core: &Core) -> String {
        let p = core.enroll_begin(&root(), b"", T0).unwrap();
        assert!(p.uri.starts_with("otpauth://totp/test:root?"));
        let codes = core
            .enroll_confirm(&root(), code(&p.secret_base32, T0).as_bytes(), T0)
            .unwrap();
        assert_eq!(codes.len() as u64, core.config().recovery.count.get());
        p.secret_base32
    }

    fn login(core: &Core, caller: &Caller, answer: &[u8], now: UnixTime) -> Step {
        let (id, step) = core
            .begin_login(caller, "root", LoginContext::default(), now)
            .unwrap();
        match step {
            Step::Prompt { .. } => core.answer(caller, &id, answer, now).unwrap(),
            done => done,
        }
    }

    fn verdict(step: &Step) -> Verdict {
        match step {
            Step::Done { verdict, .. } => *verdict,
            Step::Prompt { .. } => Verdict::Denied,
        }
    }

    fn account(uid: u32) -> Account {
        Account {
            name: format!("u{uid}"),
            uid,
            gid: uid,
        }
    }

    fn conn(uid: u32, sender: &str) -> Caller {
        Caller {
            uid,
            sender: sender.into(),
        }
    }

    #[test]
    fn session_bounds_hold_for_root_per_connection_per_account_and_in_all() {
        let limits = SessionLimits {
            per_connection: 2,
            per_user: 3,
            total: 5,
        };
        let open = |v: &[(Caller, u32)]| v.iter().map(|(c, u)| (c.clone(), *u)).collect::<Vec<_>>();
        let check = |v: &[(Caller, u32)], c: &Caller, uid: u32| {
            let o = open(v);
            admit(o.iter().map(|(c, u)| (c, *u)), c, uid, limits).is_ok()
        };
        let a = conn(0, ":1.1");
        let b = conn(0, ":1.2");
        let c = conn(0, ":1.3");
        // Per connection, root too.
        assert!(check(&[(a.clone(), 1)], &a, 1));
        assert!(!check(&[(a.clone(), 1), (a.clone(), 2)], &a, 3));
        // Per target account, whatever the connection.
        let three_for_1 = [(a.clone(), 1), (b.clone(), 1), (c.clone(), 1)];
        assert!(!check(&three_for_1, &conn(0, ":1.4"), 1));
        assert!(check(&three_for_1, &conn(0, ":1.4"), 2), "another account");
        // In all.
        let five = [
            (a.clone(), 1),
            (b.clone(), 2),
            (c.clone(), 3),
            (conn(0, ":1.4"), 4),
            (conn(0, ":1.5"), 5),
        ];
        assert!(!check(&five, &conn(0, ":1.6"), 6));
        // Non-root callers also per caller uid.
        let mine: Vec<(Caller, u32)> = (0..MAX_SESSIONS_PER_CALLER_UID)
            .map(|i| (conn(1000, &format!(":2.{i}")), 1000))
            .collect();
        let roomy = SessionLimits {
            per_connection: 2,
            per_user: 1000,
            total: 1000,
        };
        let o = open(&mine);
        assert!(admit(
            o.iter().map(|(c, u)| (c, *u)),
            &conn(1000, ":3.0"),
            1000,
            roomy
        )
        .is_err());
    }

    #[test]
    fn a_flood_of_unanswered_logins_leaves_room_for_others_and_ends_with_its_connection() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let flooded = account(0);
        let limits = c.session_limits();
        // 4096 Begins for one account from 1024 root connections, never answered.
        let mut opened = 0;
        for i in 0..4096 {
            let caller = conn(0, &format!(":9.{}", i % 1024));
            if c.new_session(
                &caller,
                &flooded,
                LoginContext::default(),
                T0,
                Awaiting::Factor,
            )
            .is_ok()
            {
                opened += 1;
            }
        }
        assert_eq!(opened, limits.per_user);
        assert_eq!(c.open_sessions(T0), limits.per_user);
        // Another account still gets its conversation.
        let other = conn(0, ":8.1");
        c.new_session(
            &other,
            &account(1000),
            LoginContext::default(),
            T0,
            Awaiting::Factor,
        )
        .unwrap();
        // One connection holds at most its bound.
        let one = conn(0, ":8.2");
        let on_one = (0..10)
            .filter(|_| {
                c.new_session(
                    &one,
                    &account(1001),
                    LoginContext::default(),
                    T0,
                    Awaiting::Factor,
                )
                .is_ok()
            })
            .count();
        assert_eq!(on_one, limits.per_connection);
        // The flooding connections leave: their sessions end, and a Begin still running
        // for a departed connection stores nothing.
        for i in 0..1024 {
            c.end_connection(&format!(":9.{i}"));
        }
        assert_eq!(c.open_sessions(T0), 1 + limits.per_connection);
        assert!(matches!(
            c.new_session(
                &conn(0, ":9.3"),
                &flooded,
                LoginContext::default(),
                T0,
                Awaiting::Factor
            ),
            Err(Error::NoSession)
        ));
        c.new_session(
            &conn(0, ":8.3"),
            &flooded,
            LoginContext::default(),
            T0,
            Awaiting::Factor,
        )
        .unwrap();
        // And unanswered sessions expire after the configured prompt timeout.
        let later = T0.plus(c.config().login.prompt_timeout_seconds.get());
        assert_eq!(c.open_sessions(later), 0);
    }

    #[test]
    fn not_enrolled_is_a_verdict() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let (_, step) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        assert_eq!(verdict(&step), Verdict::NotEnrolled);
    }

    #[test]
    fn correct_code_once_then_replay_refused() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let secret = enrol(&c);
        // The confirming code's step is spent already.
        let now = T0;
        assert_eq!(
            verdict(&login(&c, &root(), code(&secret, now).as_bytes(), now)),
            Verdict::Denied
        );
        let next = now.plus(30);
        let ok = code(&secret, next);
        assert_eq!(
            verdict(&login(&c, &root(), ok.as_bytes(), next)),
            Verdict::Success
        );
        assert_eq!(
            verdict(&login(&c, &root(), ok.as_bytes(), next)),
            Verdict::Denied
        );
        // Survives a restart: a new Core on the same state directory.
        let c2 = core(d.path());
        assert_eq!(
            verdict(&login(&c2, &root(), ok.as_bytes(), next)),
            Verdict::Denied
        );
        let later = next.plus(30);
        let ok2 = code(&secret, later);
        assert_eq!(
            verdict(&login(&c2, &root(), ok2.as_bytes(), later)),
            Verdict::Success
        );
        assert_eq!(c2.status(&root(), later).unwrap().failures, 0);
    }

    #[test]
    fn lockout_refuses_without_evaluating() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let secret = enrol(&c);
        let now = T0.plus(60);
        for _ in 0..3 {
            assert_eq!(
                verdict(&login(&c, &root(), b"000000", now)),
                Verdict::Denied
            );
        }
        let ok = code(&secret, now);
        let step = login(&c, &root(), ok.as_bytes(), now);
        assert_eq!(verdict(&step), Verdict::Locked);
        // The right code was not spent: after the lock it still works.
        let s = c.status(&root(), now).unwrap();
        assert_eq!(s.failures, 3);
        assert_eq!(s.locked_until, now.0 + 300);
        let after = now.plus(300);
        let ok = code(&secret, after);
        assert_eq!(
            verdict(&login(&c, &root(), ok.as_bytes(), after)),
            Verdict::Success
        );
    }

    #[test]
    fn other_callers_and_sessions_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let secret = enrol(&c);
        let nobody = Caller {
            uid: 65534,
            sender: ":1.9".into(),
        };
        let r = c.begin_login(&nobody, "root", LoginContext::default(), T0);
        assert!(matches!(r, Err(Error::AccessDenied(_))));
        // A session answers only to the connection that began it.
        let (id, _) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        let thief = Caller {
            uid: 0,
            sender: ":1.2".into(),
        };
        let now = T0.plus(30);
        let ok = code(&secret, now);
        assert!(matches!(
            c.answer(&thief, &id, ok.as_bytes(), now),
            Err(Error::NoSession)
        ));
        // ...and only once.
        let step = c.answer(&root(), &id, ok.as_bytes(), now).unwrap();
        assert_eq!(verdict(&step), Verdict::Success);
        assert!(matches!(
            c.answer(&root(), &id, ok.as_bytes(), now),
            Err(Error::NoSession)
        ));
        let r = c.begin_login(&root(), "no-such-user-xyz", LoginContext::default(), T0);
        assert!(matches!(r, Err(Error::UnknownUser(_))));
    }

    #[test]
    fn corrupt_record_fails_closed_and_is_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        enrol(&c);
        let path = d
            .path()
            .join("state/users")
            .join(super::super::store::file_name(0));
        std::fs::write(&path, b"{garbage").unwrap();
        let r = c.begin_login(&root(), "root", LoginContext::default(), T0);
        assert!(matches!(r, Err(Error::CorruptRecord { .. })));
        assert!(matches!(
            c.enroll_begin(&root(), b"", T0),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{garbage");
    }

    #[test]
    fn enrolment_needs_the_right_code_in_time() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let p = c.enroll_begin(&root(), b"", T0).unwrap();
        assert!(matches!(
            c.enroll_confirm(&root(), b"000000", T0),
            Err(Error::WrongCode(_))
        ));
        assert!(!c.status(&root(), T0).unwrap().enrolled);
        let late = T0.plus(601);
        let r = c.enroll_confirm(&root(), code(&p.secret_base32, late).as_bytes(), late);
        assert!(matches!(r, Err(Error::NoPendingEnrollment(_))));
        // Starting again replaces the pending key.
        let p2 = c.enroll_begin(&root(), b"", late).unwrap();
        assert_ne!(p2.secret_base32, p.secret_base32);
        c.enroll_confirm(&root(), code(&p2.secret_base32, late).as_bytes(), late)
            .unwrap();
        assert!(matches!(
            c.enroll_begin(&root(), b"", late),
            Err(Error::AlreadyEnrolled(_))
        ));
    }

    fn core_with(dir: &std::path::Path, f: impl FnOnce(&mut Config)) -> Core {
        let mut c = Config::default();
        c.daemon.state_dir = dir.join("state");
        c.lockout.max_failures = Bounded::new(3);
        c.recovery.count = Bounded::new(3);
        c.totp.issuer = "test".into();
        f(&mut c);
        Core::new(c).unwrap()
    }

    #[test]
    fn recovery_code_logs_in_once_and_says_how_many_are_left() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |_| {});
        let p = c.enroll_begin(&root(), b"", T0).unwrap();
        let codes = c
            .enroll_confirm(&root(), code(&p.secret_base32, T0).as_bytes(), T0)
            .unwrap();
        let rc = codes[0].as_bytes();
        let (id, step) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        assert!(matches!(
            step,
            Step::Prompt {
                accept: Accept::DigitsOrText {
                    n: 6,
                    max: twostep_proto::MAX_RECOVERY_LEN
                },
                ..
            }
        ));
        let step = c.answer(&root(), &id, rc, T0).unwrap();
        let Step::Done {
            verdict: v,
            message,
        } = step
        else {
            panic!()
        };
        assert_eq!(v, Verdict::Success);
        assert!(message.contains("2 recovery codes left"), "{message}");
        assert!(message.contains("twostepctl recovery-codes"), "{message}");
        assert_eq!(verdict_of(login(&c, &root(), rc, T0)), Verdict::Denied);
        assert_eq!(c.status(&root(), T0).unwrap().recovery_left, 2);
    }

    fn verdict_of(step: Step) -> Verdict {
        verdict(&step)
    }

    #[test]
    fn disables_2fa_mode_switches_off_on_use() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |c| {
            c.recovery.mode = twostep_config::RecoveryMode::Disables2fa;
        });
        let p = c.enroll_begin(&root(), b"", T0).unwrap();
        let codes = c
            .enroll_confirm(&root(), code(&p.secret_base32, T0).as_bytes(), T0)
            .unwrap();
        assert_eq!(
            verdict_of(login(&c, &root(), codes[1].as_bytes(), T0)),
            Verdict::Success
        );
        let s = c.status(&root(), T0).unwrap();
        assert!(!s.enrolled);
        assert_eq!(s.recovery_left, 0);
    }

    #[test]
    fn required_user_enrols_inside_the_login() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |c| {
            c.policy.require = twostep_config::Require::All
        });
        let (id, step) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        let Step::Prompt {
            message, accept, ..
        } = step
        else {
            panic!()
        };
        assert_eq!(accept, Accept::Digits { n: 6 });
        assert!(message.contains('█'), "QR code in the text");
        let key_line = message
            .lines()
            .find(|l| l.contains("enter this key by hand"))
            .unwrap();
        let secret: String = key_line
            .rsplit(':')
            .next()
            .unwrap()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        // A wrong code refuses and enrols nothing.
        let step = c.answer(&root(), &id, b"000000", T0).unwrap();
        assert_eq!(verdict(&step), Verdict::Denied);
        assert!(!c.status(&root(), T0).unwrap().enrolled);
        // Again, with the right code: recovery codes, Enter, success.
        let (id, step) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        let Step::Prompt { message, .. } = step else {
            panic!()
        };
        let key_line = message
            .lines()
            .find(|l| l.contains("enter this key by hand"))
            .unwrap();
        let secret2: String = key_line
            .rsplit(':')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        assert_ne!(secret, secret2, "every enrolment gets a new key");
        let step = c
            .answer(&root(), &id, code(&secret2, T0).as_bytes(), T0)
            .unwrap();
        let Step::Prompt {
            message, accept, ..
        } = step
        else {
            panic!()
        };
        assert_eq!(accept, Accept::Acknowledge);
        assert_eq!(message.lines().filter(|l| l.trim().len() == 17).count(), 3);
        let step = c.answer(&root(), &id, b"", T0).unwrap();
        assert_eq!(verdict(&step), Verdict::Success);
        let s = c.status(&root(), T0).unwrap();
        assert!(s.enrolled && s.required && s.recovery_left == 3);
        // The confirming code is spent.
        assert_eq!(
            verdict_of(login(&c, &root(), code(&secret2, T0).as_bytes(), T0)),
            Verdict::Denied
        );
    }

    #[test]
    fn reset_keeps_the_old_key_until_confirmed_and_needs_proof() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |_| {});
        let old = enrol(&c);
        assert!(matches!(
            c.enroll_begin(&root(), b"", T0),
            Err(Error::AlreadyEnrolled(_))
        ));
        let t1 = T0.plus(30);
        assert!(matches!(
            c.enroll_begin(&root(), b"000000", t1),
            Err(Error::WrongCode(_))
        ));
        let p = c
            .enroll_begin(&root(), code(&old, t1).as_bytes(), t1)
            .unwrap();
        // Old key still logs in until the new one is confirmed.
        let t2 = T0.plus(60);
        assert_eq!(
            verdict_of(login(&c, &root(), code(&old, t2).as_bytes(), t2)),
            Verdict::Success
        );
        let t3 = T0.plus(90);
        let shown = c
            .enroll_confirm(&root(), code(&p.secret_base32, t3).as_bytes(), t3)
            .unwrap();
        assert!(shown.is_empty(), "a new phone keeps the recovery codes");
        let t4 = T0.plus(120);
        assert_eq!(
            verdict_of(login(&c, &root(), code(&old, t4).as_bytes(), t4)),
            Verdict::Denied
        );
        let t5 = T0.plus(150);
        assert_eq!(
            verdict_of(login(
                &c,
                &root(),
                code(&p.secret_base32, t5).as_bytes(),
                t5
            )),
            Verdict::Success
        );
    }

    #[test]
    fn disable_obeys_policy_and_needs_the_right_code() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |_| {});
        let secret = enrol(&c);
        let t1 = T0.plus(30);
        assert!(matches!(
            c.disable(&root(), b"000000", t1),
            Err(Error::WrongCode(_))
        ));
        assert!(c.status(&root(), t1).unwrap().enrolled);
        c.admin_act(
            &root(),
            "root",
            super::super::admin::Action::Toggle(Some(false)),
            t1,
        )
        .unwrap();
        let r = c.disable(&root(), code(&secret, t1).as_bytes(), t1);
        assert!(matches!(r, Err(Error::AccessDenied(_))), "{r:?}");
        c.admin_act(
            &root(),
            "root",
            super::super::admin::Action::Toggle(None),
            t1,
        )
        .unwrap();
        c.disable(&root(), code(&secret, t1).as_bytes(), t1)
            .unwrap();
        assert!(!c.status(&root(), t1).unwrap().enrolled);
    }

    #[test]
    fn admin_methods_need_root_or_the_admin_group() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |c| c.policy.admin_group = "root".into());
        enrol(&c);
        let nobody = Caller {
            uid: 65534,
            sender: ":1.5".into(),
        };
        assert!(matches!(
            c.admin_list(&nobody, T0),
            Err(Error::AccessDenied(_))
        ));
        let r = c.admin_act(&nobody, "root", super::super::admin::Action::Reset, T0);
        assert!(matches!(r, Err(Error::AccessDenied(_))));
        let list = c.admin_list(&root(), T0).unwrap();
        assert_eq!(list.len(), 1);
        assert!(list[0].enrolled);
        c.admin_act(&root(), "root", super::super::admin::Action::Reset, T0)
            .unwrap();
        let info = c.admin_show(&root(), "root", T0).unwrap();
        assert!(!info.enrolled);
        assert!(info
            .events
            .iter()
            .any(|e| e.what.contains("admin reset by uid 0")));
    }

    #[test]
    fn enrolment_grace_lets_a_required_user_in_with_a_reminder_until_it_ends() {
        let d = tempfile::tempdir().unwrap();
        let c = core_with(d.path(), |c| {
            c.policy.require = twostep_config::Require::All;
            c.policy.enroll_grace_days = Bounded::new(2);
        });
        let step = login(&c, &root(), b"", T0);
        let Step::Done {
            verdict: v,
            message,
        } = step
        else {
            panic!()
        };
        assert_eq!(v, Verdict::Success);
        assert!(
            message.contains("2 days") && message.contains("twostepctl enroll"),
            "{message}"
        );
        let later = T0.plus(86_400 + 1);
        let Step::Done { message, .. } = login(&c, &root(), b"", later) else {
            panic!()
        };
        assert!(message.contains("1 day."), "{message}");
        // After the grace period: enrolment at login.
        let (_, step) = c
            .begin_login(
                &root(),
                "root",
                LoginContext::default(),
                T0.plus(2 * 86_400),
            )
            .unwrap();
        assert!(matches!(step, Step::Prompt { .. }));
    }
    #[test]
    fn audit_fields_cannot_carry_another_field() {
        assert_eq!(field(""), "-");
        assert_eq!(field("sshd"), "sshd");
        assert_eq!(field("-"), "\"-\"");
        assert_eq!(
            field("sshd outcome=success user=root"),
            "\"sshd outcome=success user=root\""
        );
        assert_eq!(field("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(field("j\u{e9}r\u{f4}me"), "\"j\u{e9}r\u{f4}me\"");
        let ctx = LoginContext {
            service: "sshd outcome=success".into(),
            rhost: "x\" outcome=success".into(),
            tty: String::new(),
        };
        assert_eq!(
            login_event("failed", &ctx),
            "failed service=\"sshd outcome=success\" rhost=\"x\\\" outcome=success\""
        );
    }

    #[test]
    fn a_begin_outlived_by_many_departures_stores_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let c = core(dir.path());
        let slow = conn(0, ":7.1");
        // The slow Begin starts at T0; its connection leaves, then more than MAX_DEPARTED
        // others leave before it stores its session.
        c.end_connection_at(&slow.sender, T0);
        for i in 0..=MAX_DEPARTED {
            c.end_connection_at(&format!(":7.{}", i + 2), T0.plus(1));
        }
        let stored = c.new_session(
            &slow,
            &account(1001),
            LoginContext::default(),
            T0,
            Awaiting::Factor,
        );
        assert!(
            stored.is_err(),
            "a session was stored for a departed connection"
        );
        assert_eq!(c.open_sessions(T0), 0);
        // A Begin that started after the forgotten departures is stored as usual.
        c.new_session(
            &conn(0, ":7.99999"),
            &account(1001),
            LoginContext::default(),
            T0.plus(2),
            Awaiting::Factor,
        )
        .unwrap();
        // Marks also age out (after the prompt timeout and a margin), with the same effect.
        let keep = c.prompt_seconds() + DEPARTED_MARGIN_SECS;
        let late = T0.plus(keep + 10);
        c.end_connection_at(":6.1", late);
        c.end_connection_at(":6.2", late.plus(keep + 1));
        let aged = c.new_session(
            &conn(0, ":6.1"),
            &account(1002),
            LoginContext::default(),
            late,
            Awaiting::Factor,
        );
        assert!(aged.is_err());
    }
}
