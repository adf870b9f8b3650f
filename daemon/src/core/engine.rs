// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's front: [`Core`] owns its parts — [`Settings`], a [`Store`], [`Accounts`],
//! the login [`Sessions`] and the hash pool — and each public method is a few lines over
//! them. Login conversations are in `login` (the verify step in `verify`, texts in
//! `messages`), self-service in `selfservice`, admin operations in `admin`.
//!
//! Every operation on an account's record is one store transaction ([`Core::update`]):
//! count-and-check is atomic per account, and different accounts never wait for each other.
//!
//! Identity: records, locks, sessions, failure counters and replay marks belong to the
//! account, the uid an exact look-up of the name gives, so every name of one uid
//! (`useradd -o`) shares them. A record also carries the name it was made under. When that
//! name no longer resolves to the uid (the uid was re-used by a new account after
//! `userdel`, or the account was renamed), the record is not handed to the new name, nor
//! dropped silently: that uid's logins fail closed with [`Error::FormerAccount`], which
//! tells the admin to run `twostepctl user reset NAME` (the new account then starts without
//! 2FA). See docs/admin.md, "Accounts, uids and re-used uids".

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use twostep_config::Config;
use twostep_proto::Step;
use zeroize::Zeroizing;

pub use super::audit::LoginContext;
pub use super::authz::Caller;
pub use super::login::SessionLimits;

use super::admin::{self, Action, RepairReport, UserInfo};
use super::apppw;
use super::audit::field;
use super::login::{self, Sessions, DEPARTED_MARGIN_SECS};
use super::record::Record;
use super::recovery::HashPool;
use super::selfservice::{self, Confirming, PendingInfo, Status};
use super::settings::Settings;
use super::state::AuthenticatorInfo;
use super::store::{self, FileStore, Migration, Store, Write};
use super::transfer;
use super::users::{Account, Accounts, NssAccounts};
use super::verify;
use super::{Error, UnixTime};

/// argon2 computations at once (one per core on the reference machine).
const HASH_WORKERS: usize = 2;

/// The daemon's state: the parts it owns, each behind its own seam.
pub struct Core {
    settings: Settings,
    store: Box<dyn Store>,
    accounts: Box<dyn Accounts>,
    sessions: Sessions,
    /// Names of name-keyed records not yet moved to their uid because NSS failed at start;
    /// retried before any record is looked at, so another name of the same uid never
    /// misses the record.
    unmigrated: Mutex<Vec<String>>,
    /// Whether name-keyed records were left in the store after the migration at start
    /// (deferred or in conflict): then every record look-up checks that no two names of
    /// its uid have one (see [`Core::legacy_names_of`]); otherwise only a look-up whose
    /// own name has such a record (one `lstat`) does.
    legacy_left: std::sync::atomic::AtomicBool,
    hashes: HashPool,
    /// Where mail goes (`crate::mailer` in the daemon; none in unit tests).
    outbox: std::sync::RwLock<std::sync::Arc<dyn super::mail::Outbox>>,
}

/// Lock `m`, whether or not a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Why: a panic while holding one of these maps leaves it consistent (plain inserts and
    // removals), so poisoning must not take the whole daemon down.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Core {
    /// The core over the file store in `[daemon] state_dir` and NSS accounts.
    ///
    /// # Errors
    /// The state directory cannot be opened.
    pub fn new(config: Config) -> Result<Core, String> {
        let store = FileStore::open(&config.daemon.state_dir)?;
        Ok(Core::with_parts(
            config,
            Box::new(store),
            Box::new(NssAccounts),
        ))
    }

    /// The core over `store` and `accounts` (records of the earlier, name-keyed layout in a
    /// file store are moved to their uid now).
    pub fn with_parts(config: Config, store: Box<dyn Store>, accounts: Box<dyn Accounts>) -> Core {
        let core = Core {
            settings: Settings::new(config),
            store,
            accounts,
            sessions: Sessions::default(),
            unmigrated: Mutex::new(Vec::new()),
            legacy_left: std::sync::atomic::AtomicBool::new(false),
            hashes: HashPool::new(HASH_WORKERS),
            outbox: std::sync::RwLock::new(std::sync::Arc::new(super::mail::NoMail)),
        };
        let legacy = match core.store.files().map(FileStore::legacy_names) {
            Some(Ok(names)) => names,
            Some(Err(e)) => {
                log::error!("cannot list name-keyed records: {e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        core.migrate(legacy);
        core
    }

    /// Move name-keyed records to their uid (the layout before records were keyed by
    /// account). A name NSS does not know is left in place and logged (its account is gone;
    /// the record is kept for the admin); a failed look-up is retried later. The names are
    /// grouped by the uid they resolve to: when several names of one uid have a name-keyed
    /// record, none is moved (which one holds the enrolment is the admin's call) and that
    /// uid's logins fail closed (see [`Core::load_unchecked`]).
    fn migrate(&self, names: Vec<String>) {
        let Some(files) = self.store.files() else {
            return;
        };
        let mut retry = Vec::new();
        let mut by_uid: std::collections::BTreeMap<u32, Vec<String>> = Default::default();
        for name in names {
            match self.accounts.by_name(&name) {
                Ok(a) => by_uid.entry(a.uid).or_default().push(name),
                Err(Error::UnknownUser(_)) => log::warn!(
                    "user={} outcome=not-migrated reason=\"name-keyed record of an account NSS \
                     does not know; left in place\"",
                    field(&name)
                ),
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
            if let [name] = names.as_slice() {
                self.migrate_one(files, name, uid);
            } else {
                legacy_conflict(uid, &names);
            }
        }
        lock(&self.unmigrated).extend(retry);
        let left = files.legacy_names().map_or(true, |n| !n.is_empty());
        self.legacy_left
            .store(left, std::sync::atomic::Ordering::Relaxed);
    }

    fn migrate_one(&self, files: &FileStore, name: &str, uid: u32) {
        match files.migrate_legacy(name, uid) {
            Ok(Migration::Moved(_)) => log::info!(
                "user={} uid={uid} outcome=migrated (record now keyed by uid)",
                field(name)
            ),
            Ok(Migration::Nothing) => {}
            Ok(Migration::Conflict) => log::error!(
                "user={} uid={uid} outcome=not-migrated reason=\"another name of this uid has \
                 its own record, which stays in force; the name-keyed record is left in place\"",
                field(name)
            ),
            Err(e) => log::error!(
                "user={} outcome=not-migrated reason={}",
                field(name),
                field(&e.to_string())
            ),
        }
    }

    /// The names with a name-keyed (legacy) record that resolve to `uid`.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the records cannot be listed or a look-up fails.
    fn legacy_names_of(&self, files: &FileStore, uid: u32) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for name in files.legacy_names().map_err(Error::Unavailable)? {
            match self.accounts.by_name(&name) {
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
        self.settings.config()
    }

    pub(super) fn settings(&self) -> &Settings {
        &self.settings
    }

    pub(super) fn accounts(&self) -> &dyn Accounts {
        &*self.accounts
    }

    pub(super) fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub(super) fn hashes(&self) -> &HashPool {
        &self.hashes
    }

    pub(super) fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub(super) fn outbox(&self) -> std::sync::Arc<dyn super::mail::Outbox> {
        std::sync::Arc::clone(&self.outbox.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Send mail through `outbox` from now on (the daemon's mailer).
    pub fn set_outbox(&self, outbox: std::sync::Arc<dyn super::mail::Outbox>) {
        *self.outbox.write().unwrap_or_else(PoisonError::into_inner) = outbox;
    }

    /// Put `config` in force (policy, TOTP parameters for new keys, lockout, recovery,
    /// login bounds), without asking who: for the daemon's own SIGHUP. `[daemon]` needs a
    /// restart; a change to it is refused.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a change that needs a restart.
    pub fn apply_config(&self, config: Config) -> Result<(), Error> {
        self.settings.apply(config)
    }

    /// The record of `account` as stored (moved from the name-keyed layout on first use),
    /// without the identity check.
    pub(super) fn load_unchecked(&self, account: &Account) -> Result<Option<Record>, Error> {
        self.migrate_deferred();
        self.no_legacy_conflict(account)?;
        self.store.load(account)
    }

    /// Every name of the uid, not only the one used: one name's old (name-keyed) record
    /// must never hide another's, so several of them fail closed until the admin picks
    /// one. Checked before any read or transaction that could migrate one of them.
    ///
    /// # Errors
    /// [`Error::CorruptRecord`] naming the files; a failed look-up.
    fn no_legacy_conflict(&self, account: &Account) -> Result<(), Error> {
        if let Some(files) = self.store.files().filter(|f| {
            self.legacy_left.load(std::sync::atomic::Ordering::Relaxed)
                || f.has_legacy_record(&account.name)
        }) {
            let names = self.legacy_names_of(files, account.uid)?;
            if names.len() > 1 {
                return Err(Error::CorruptRecord {
                    user: format!("{} (uid {})", account.name, account.uid),
                    reason: legacy_conflict(account.uid, &names),
                });
            }
        }
        Ok(())
    }

    /// The record of `account`, checked to belong to it (see [`check_identity`]).
    ///
    /// # Errors
    /// An unreadable or vanished record, or [`Error::FormerAccount`].
    pub(super) fn load(&self, account: &Account) -> Result<Option<Record>, Error> {
        let record = self.load_unchecked(account)?;
        if let Some(r) = &record {
            check_identity(self.accounts(), account, r)?;
        }
        Ok(record)
    }

    /// One transaction on `account`'s record (a new one if it has none), checked to belong
    /// to it: `f` changes it, says whether to save, and what to answer. The answer is
    /// returned only after the save it asked for is durable.
    ///
    /// # Errors
    /// An unreadable or vanished record, [`Error::FormerAccount`], a failed write, or `f`'s
    /// own error (saved first when `f` says so).
    pub(super) fn update<T>(
        &self,
        account: &Account,
        f: impl FnOnce(&mut Record) -> (Write, Result<T, Error>),
    ) -> Result<T, Error> {
        self.migrate_deferred();
        self.no_legacy_conflict(account)?;
        store::update(self.store(), account, |slot| {
            let record =
                slot.get_or_insert_with(|| Record::for_account(&account.name, account.uid));
            match check_identity(self.accounts(), account, record) {
                Ok(()) => f(record),
                Err(e) => (Write::Keep, Err(e)),
            }
        })
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
        login::begin(self, caller, user, ctx, now)
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
        login::answer(self, caller, id, answer, now)
    }

    /// Check `answer` against `record`'s factors, charging the lockout (see
    /// [`verify::check`]; events from `from`); the caller's transaction saves.
    pub(super) fn verify_factor(
        &self,
        record: &mut Record,
        answer: &[u8],
        now: UnixTime,
        from: &super::audit::Source,
    ) -> Result<verify::Checked, Error> {
        verify::check(&self.settings, &self.hashes, record, answer, now, from)
    }

    /// The connection `sender` left the bus: its login conversations end now, and a Begin
    /// of it still running stores none.
    pub fn end_connection(&self, sender: &str) {
        self.end_connection_at(sender, super::clock::now());
    }

    /// [`Core::end_connection`] at time `now`: departure marks are kept for the prompt
    /// timeout plus [`DEPARTED_MARGIN_SECS`].
    pub(super) fn end_connection_at(&self, sender: &str, now: UnixTime) {
        let keep = self
            .settings
            .prompt_seconds()
            .saturating_add(DEPARTED_MARGIN_SECS);
        self.sessions.end_connection(sender, now, keep);
    }

    /// Login conversations open now (for tests and diagnostics).
    pub fn open_sessions(&self, now: UnixTime) -> usize {
        self.sessions.count(now)
    }

    /// Start enrolment of the caller's own account, or — with `proof` — move an enrolled
    /// account to a new authenticator (see [`selfservice::enroll_begin`]).
    ///
    /// # Errors
    /// Already enrolled without proof, a wrong proof, a lock, a failed write.
    pub fn enroll_begin(
        &self,
        caller: &Caller,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<PendingInfo, Error> {
        selfservice::enroll_begin(self, caller, proof, now)
    }

    /// Confirm the caller's pending key with a current code; a first enrolment returns the
    /// new recovery codes (shown once).
    ///
    /// # Errors
    /// No live pending key, a wrong code, a failed write.
    pub fn enroll_confirm(
        &self,
        caller: &Caller,
        code: &[u8],
        now: UnixTime,
    ) -> Result<Vec<Zeroizing<String>>, Error> {
        selfservice::confirm(self, caller, code, Confirming::Enrolment, now)
    }

    /// Start adding an authenticator called `name` beside the caller's others; `proof` is a
    /// current code of any of them or a recovery code (see
    /// [`selfservice::authenticator_add`]).
    ///
    /// # Errors
    /// Not enrolled, an invalid or taken name, a wrong proof, a lock, a failed write.
    pub fn authenticator_add(
        &self,
        caller: &Caller,
        name: &str,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<PendingInfo, Error> {
        selfservice::authenticator_add(self, caller, name, proof, now)
    }

    /// Confirm the authenticator being added as `name` with a current code of it.
    ///
    /// # Errors
    /// No live pending authenticator of that name, a wrong code, a name taken meanwhile, a
    /// failed write.
    pub fn authenticator_confirm(
        &self,
        caller: &Caller,
        name: &str,
        code: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        selfservice::confirm(self, caller, code, Confirming::Added(name), now).map(drop)
    }

    /// The caller's authenticators (name, added, last used).
    ///
    /// # Errors
    /// The caller has no account or the record is unreadable.
    pub fn authenticators(
        &self,
        caller: &Caller,
        now: UnixTime,
    ) -> Result<Vec<AuthenticatorInfo>, Error> {
        selfservice::authenticators(self, caller, now)
    }

    /// Remove the caller's authenticator `name`; `proof` is a code of another of them or a
    /// recovery code; the last one only as `disable` (see
    /// [`selfservice::authenticator_remove`]).
    ///
    /// # Errors
    /// No such authenticator, the last one while 2FA may not be switched off, a wrong
    /// proof, a lock, a failed write.
    pub fn authenticator_remove(
        &self,
        caller: &Caller,
        name: &str,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<(), Error> {
        selfservice::authenticator_remove(self, caller, name, proof, now)
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
        selfservice::regenerate_recovery(self, caller, proof, now)
    }

    /// Switch 2FA off for the caller, when policy lets them.
    ///
    /// # Errors
    /// Required by policy, toggling denied, a wrong proof, a lock, a failed write.
    pub fn disable(&self, caller: &Caller, proof: &[u8], now: UnixTime) -> Result<(), Error> {
        selfservice::disable(self, caller, proof, now)
    }

    /// The caller's own state.
    ///
    /// # Errors
    /// The caller has no account or the record is unreadable.
    pub fn status(&self, caller: &Caller, now: UnixTime) -> Result<Status, Error> {
        selfservice::status(self, caller, now)
    }

    /// # Errors
    /// [`Error::AccessDenied`] unless root or in `admin_group`.
    pub fn authorize_admin(&self, caller: &Caller) -> Result<(), Error> {
        admin::authorize_admin(self, caller)
    }

    /// Every user with a record (or on the enrolment list).
    ///
    /// # Errors
    /// Not an admin, or the store cannot be listed.
    pub fn admin_list(&self, caller: &Caller, now: UnixTime) -> Result<Vec<UserInfo>, Error> {
        admin::admin_list(self, caller, now)
    }

    /// Users the policy requires who have no factor yet (see `admin::admin_pending`).
    ///
    /// # Errors
    /// Not an admin; NSS, `/etc/passwd` or the store cannot be read.
    pub fn admin_pending(&self, caller: &Caller, now: UnixTime) -> Result<Vec<UserInfo>, Error> {
        admin::admin_pending(self, caller, now)
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
        admin::admin_show(self, caller, name, now)
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
        admin::admin_act(self, caller, name, action, now)
    }

    /// For an admin: read the configuration with `load` (only once authorized) and put it
    /// in force ([`Core::apply_config`]).
    ///
    /// # Errors
    /// Not an admin, `load`'s error, or a change that needs a restart.
    pub fn reload(
        &self,
        caller: &Caller,
        load: impl FnOnce() -> Result<Config, Error>,
    ) -> Result<(), Error> {
        admin::reload(self, caller, load)
    }

    /// Create an app password for the caller (see `apppw::create`); `proof` is a current
    /// code or a recovery code. The password is in the result, once.
    ///
    /// # Errors
    /// Not enrolled, a bad or taken name, a service or expiry the config refuses, a wrong
    /// proof, a lock, a failed write.
    pub fn app_password_create(
        &self,
        caller: &Caller,
        new: &apppw::NewAppPassword<'_>,
        proof: &[u8],
        now: UnixTime,
    ) -> Result<apppw::Created, Error> {
        apppw::create(self, caller, new, proof, now)
    }

    /// The caller's app passwords (revoked and expired ones too; never a hash).
    ///
    /// # Errors
    /// The caller has no account or the record is unreadable.
    pub fn app_passwords(&self, caller: &Caller) -> Result<Vec<apppw::AppPasswordInfo>, Error> {
        apppw::list(self, caller)
    }

    /// Revoke the caller's app password named by `key` (name or id).
    ///
    /// # Errors
    /// No such app password, an unreadable record, a failed write.
    pub fn app_password_revoke(
        &self,
        caller: &Caller,
        key: &str,
        now: UnixTime,
    ) -> Result<apppw::AppPasswordInfo, Error> {
        apppw::revoke(self, caller, key, now)
    }

    /// An admin's view of `user`'s app passwords.
    ///
    /// # Errors
    /// Not an admin, no such user, an unreadable record.
    pub fn admin_app_passwords(
        &self,
        caller: &Caller,
        user: &str,
    ) -> Result<Vec<apppw::AppPasswordInfo>, Error> {
        apppw::admin_list(self, caller, user)
    }

    /// An admin revokes `user`'s app password named by `key` (name or id).
    ///
    /// # Errors
    /// Not an admin, no such user or app password, an unreadable record, a failed write.
    pub fn admin_app_password_revoke(
        &self,
        caller: &Caller,
        user: &str,
        key: &str,
        now: UnixTime,
    ) -> Result<apppw::AppPasswordInfo, Error> {
        apppw::admin_revoke(self, caller, user, key, now)
    }

    /// Announce (log and mark, once) the app passwords expiring within `[app_passwords]
    /// notice_days`; the notices, for a mailer (see [`apppw::expiry_notices`]).
    ///
    /// # Errors
    /// The store cannot be listed.
    pub fn app_password_notices(&self, now: UnixTime) -> Result<Vec<apppw::Notice>, Error> {
        apppw::expiry_notices(self, now)
    }

    /// Show a damaged record slot by slot and what a repair writes; with `confirm`, write
    /// it (a file-store capability, see [`admin::admin_repair`]).
    ///
    /// # Errors
    /// Not an admin; no such user; no record; an untrusted file; with `confirm`, nothing
    /// readable to restore from or a failed write.
    pub fn admin_repair(
        &self,
        caller: &Caller,
        name: &str,
        confirm: bool,
        now: UnixTime,
    ) -> Result<RepairReport, Error> {
        admin::admin_repair(self, caller, name, confirm, now)
    }

    /// Write every account to `out` with its secrets sealed (see [`transfer::export`]).
    ///
    /// # Errors
    /// As [`transfer::export`].
    pub fn export_records(
        &self,
        caller: &Caller,
        out: &mut dyn std::io::Write,
    ) -> Result<transfer::ExportReport, Error> {
        transfer::export(caller, self.store(), out)
    }

    /// Add the accounts of an export (see [`transfer::import`]).
    ///
    /// # Errors
    /// As [`transfer::import`].
    pub fn import_records(
        &self,
        caller: &Caller,
        input: &mut dyn std::io::BufRead,
        dry_run: bool,
    ) -> Result<transfer::ImportReport, Error> {
        transfer::import(caller, self.store(), input, dry_run)
    }

    /// Read the store key files again (see [`crate::core::seal::Sealer::reload`]): part
    /// of every reload.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a key file is not usable (the keys in force stay).
    pub fn reload_keys(&self) -> Result<(), Error> {
        match self.store.sealer() {
            Some(sealer) => sealer.reload().map_err(Error::InvalidArgument),
            None => Ok(()),
        }
    }

    /// Re-seal every record with the key in `new_key` (see [`transfer::rotate_key`]).
    ///
    /// # Errors
    /// As [`transfer::rotate_key`].
    pub fn rotate_key(
        &self,
        caller: &Caller,
        new_key: &std::path::Path,
    ) -> Result<transfer::RotateReport, Error> {
        transfer::rotate_key(caller, self.store(), new_key)
    }
}

/// Whether `record` belongs to `account`: it was made under this name, or under another
/// name that `accounts` still gives this uid (`useradd -o`: one account, several names). A
/// record made under a name that no longer resolves to this uid belongs to a former
/// account.
///
/// # Errors
/// [`Error::FormerAccount`]; [`Error::Unavailable`] when the look-up fails (fail closed,
/// try again).
pub(super) fn check_identity(
    accounts: &dyn Accounts,
    account: &Account,
    record: &Record,
) -> Result<(), Error> {
    if record.user == account.name {
        return Ok(());
    }
    match accounts.by_name(&record.user) {
        Ok(a) if a.uid == account.uid => Ok(()),
        Err(e @ (Error::Unavailable(_) | Error::Busy(_))) => Err(e),
        _ => Err(Error::FormerAccount {
            uid: account.uid,
            enrolled_as: record.user.clone(),
            now: account.name.clone(),
        }),
    }
}

/// The admin message for a uid with name-keyed records under several names: logged as
/// `uid=N outcome=not-migrated reason="…"`, and returned (an error's reason).
fn legacy_conflict(uid: u32, names: &[String]) -> String {
    let files: Vec<String> = names
        .iter()
        .map(|n| format!("{} ({n})", store::file::legacy_file_name(n)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::login::{admit, Awaiting, MAX_SESSIONS_PER_CALLER_UID};
    use crate::core::users::Account;
    use twostep_config::Bounded;
    use twostep_proto::Step;
    use twostep_proto::{Accept, Verdict};

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
        p.secret_base32.clone()
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
        let limits = c.settings().session_limits();
        // 4096 Begins for one account from 1024 root connections, never answered.
        let mut opened = 0;
        for i in 0..4096 {
            let caller = conn(0, &format!(":9.{}", i % 1024));
            if login::new_session(
                &c,
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
        login::new_session(
            &c,
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
                login::new_session(
                    &c,
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
            login::new_session(
                &c,
                &conn(0, ":9.3"),
                &flooded,
                LoginContext::default(),
                T0,
                Awaiting::Factor
            ),
            Err(Error::NoSession)
        ));
        login::new_session(
            &c,
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

    /// Issue 20, item 17: replays, of the last accepted code or of an earlier used step,
    /// are refused with their own text and never counted toward lockout.
    #[test]
    fn replays_are_refused_but_never_charged() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let secret = enrol(&c);
        let now = T0.plus(60);
        let ok = code(&secret, now);
        assert_eq!(
            verdict(&login(&c, &root(), ok.as_bytes(), now)),
            Verdict::Success
        );
        for _ in 0..10 {
            let step = login(&c, &root(), ok.as_bytes(), now);
            assert_eq!(verdict(&step), Verdict::Denied);
            assert!(
                matches!(&step, Step::Done { message, .. } if message == crate::core::messages::REPLAYED),
                "{step:?}"
            );
        }
        // The step before, used by nobody but below the mark: a replay too, uncharged.
        let before = UnixTime(now.0 - 30);
        let old = code(&secret, before);
        for _ in 0..5 {
            assert_eq!(
                verdict(&login(&c, &root(), old.as_bytes(), now)),
                Verdict::Denied
            );
        }
        let status = c.status(&root(), now).unwrap();
        assert_eq!(status.failures, 0);
        assert_eq!(status.locked_until, 0);
        // A wrong code is still charged.
        assert_eq!(
            verdict(&login(&c, &root(), b"000000", now)),
            Verdict::Denied
        );
        assert_eq!(c.status(&root(), now).unwrap().failures, 1);
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
        } = &step
        else {
            panic!()
        };
        assert_eq!(*v, Verdict::Success);
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
        } = &step
        else {
            panic!()
        };
        assert_eq!(*accept, Accept::Digits { n: 6 });
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
        // A wrong code enrols nothing (the prompt comes again: issue 20, item 4).
        let step = c.answer(&root(), &id, b"000000", T0).unwrap();
        assert!(matches!(step, Step::Prompt { .. }), "{step:?}");
        assert!(!c.status(&root(), T0).unwrap().enrolled);
        // Again, with the right code: recovery codes, Enter, success.
        let (id, step) = c
            .begin_login(&root(), "root", LoginContext::default(), T0)
            .unwrap();
        let Step::Prompt { message, .. } = &step else {
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
        assert_eq!(
            secret, secret2,
            "the pending key is kept (issue 20, item 4)"
        );
        let step = c
            .answer(&root(), &id, code(&secret2, T0).as_bytes(), T0)
            .unwrap();
        let Step::Prompt {
            message, accept, ..
        } = &step
        else {
            panic!()
        };
        assert_eq!(*accept, Accept::Acknowledge);
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
        assert!(list[0].state.enrolled);
        c.admin_act(&root(), "root", super::super::admin::Action::Reset, T0)
            .unwrap();
        let info = c.admin_show(&root(), "root", T0).unwrap();
        assert!(!info.state.enrolled);
        assert!(info
            .events
            .iter()
            .any(|e| e.what.contains("admin reset by root") && e.actor_uid == Some(0)));
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
        } = &step
        else {
            panic!()
        };
        assert_eq!(*v, Verdict::Success);
        assert!(
            message.contains("2 days") && message.contains("twostepctl enroll"),
            "{message}"
        );
        let later = T0.plus(86_400 + 1);
        let step = login(&c, &root(), b"", later);
        let Step::Done { message, .. } = &step else {
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
    fn a_begin_outlived_by_many_departures_stores_no_session() {
        use super::login::MAX_DEPARTED;
        let dir = tempfile::tempdir().unwrap();
        let c = core(dir.path());
        let slow = conn(0, ":7.1");
        let open = |caller: &Caller, uid: u32, at: UnixTime| {
            login::new_session(
                &c,
                caller,
                &account(uid),
                LoginContext::default(),
                at,
                Awaiting::Factor,
            )
        };
        // The slow Begin starts at T0; its connection leaves, then more than MAX_DEPARTED
        // others leave before it stores its session.
        c.end_connection_at(&slow.sender, T0);
        for i in 0..=MAX_DEPARTED {
            c.end_connection_at(&format!(":7.{}", i + 2), T0.plus(1));
        }
        assert!(
            open(&slow, 1001, T0).is_err(),
            "a session was stored for a departed connection"
        );
        assert_eq!(c.open_sessions(T0), 0);
        // A Begin that started after the forgotten departures is stored as usual.
        open(&conn(0, ":7.99999"), 1001, T0.plus(2)).unwrap();
        // Marks also age out (after the prompt timeout and a margin), with the same effect.
        let keep = c.settings().prompt_seconds() + DEPARTED_MARGIN_SECS;
        let late = T0.plus(keep + 10);
        c.end_connection_at(":6.1", late);
        c.end_connection_at(":6.2", late.plus(keep + 1));
        assert!(open(&conn(0, ":6.1"), 1002, late).is_err());
    }
}
