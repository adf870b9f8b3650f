// SPDX-License-Identifier: MIT OR Apache-2.0
//! App passwords: for programs that cannot ask for a code (a mail client against Dovecot's
//! IMAP, an FTP client, a backup script). Each is named, limited to some PAM services, has
//! an expiry (or none, where the config allows it), is shown once, and is revocable.
//!
//! A password reads `abcde-fghjk-mnpqr-stuvw-xyz23-45678`: 30 characters of the recovery
//! codes' 31-letter alphabet without look-alikes, in six groups of five. The first group is
//! the public id (unique within the user's record), the other 25 characters the secret
//! (25 × log2(31) ≈ 124 bits from the OS random source), stored as an argon2id hash. So a
//! check costs exactly one hash: the id picks the one entry to verify against. Input is
//! read case-insensitively, dashes and spaces ignored.
//!
//! The login side (`begin`, `answer`) runs inside the ordinary login conversation: a
//! module in `app_password` mode sends `mode=app-password` in the login context, the daemon
//! answers with a secret text prompt, and the password travels only in `Answer`, after the
//! module has checked who owns the daemon's bus name. Every answer costs one argon2
//! computation whatever the user name (unknown, without app passwords, or with a wrong one)
//! except for a locked user, who is refused without one. Wrong passwords count toward the
//! app passwords' own lock (`apppw_lock`, `[app_passwords] max_failures`; review M4), never
//! toward the codes' `[lockout]`, so a wrong app password at IMAP locks nobody out of SSH;
//! a user locked by `[lockout]` cannot use app passwords either. A right one does not reset
//! the codes' count: a mail client polling every minute would otherwise hand an attacker
//! unlimited guesses at codes. It is still a successful login: its time is the record's
//! `last_success` (`lockout::note_success`), beside the app password's own last use. The
//! argon2 check runs between two store transactions, not inside one (see [`answer`]).

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use twostep_proto::{limits, Accept, Step, Verdict};
use zeroize::Zeroizing;

use super::apppw_lock::{self, AppPasswordLockPolicy};
use super::audit::{audit, field, LoginContext};
use super::authz::{self, Caller};
use super::engine::Core;
use super::lockout::{self, locked_message};
use super::login::{self, Awaiting};
use super::mail;
use super::messages;
use super::record::{self, Record};
use super::recovery::{self, HashPool, ALPHABET};
use super::store::Write;
use super::users::{self, Account};
use super::{Error, UnixTime};

/// Characters of the public id (the first group).
pub const ID_LEN: usize = 5;
/// Characters of the secret part: 25 × log2(31) ≈ 124 bits.
pub const SECRET_LEN: usize = 25;
const GROUP: usize = 5;
/// App passwords one user may have that are neither revoked nor expired.
pub const MAX_LIVE: usize = 16;
/// Entries a record keeps, revoked and expired ones included (the oldest of those go first).
pub const MAX_KEPT: usize = 32;
/// Longest app password name, in bytes.
pub const MAX_NAME: usize = 64;
/// Most services one app password may name.
pub const MAX_SERVICES: usize = 16;
/// Longest PAM service name accepted.
pub const MAX_SERVICE_LEN: usize = 64;
/// `expires_in` meaning "never expires" (where `[app_passwords] allow_never` lets it).
pub const NEVER: u64 = u64::MAX;
/// `expires_in` meaning "the longest validity allowed" (`[app_passwords] max_days`).
pub const LONGEST: u64 = 0;
/// The uid a login conversation for a name NSS does not know is kept under: such names
/// get the same prompt and the same one hash as everyone, and are never accepted.
const NO_ACCOUNT: u32 = u32::MAX;

/// One app password as stored. `Debug` never shows the hash.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AppPassword {
    /// Unique (whatever the case) among the user's app passwords that are not revoked.
    pub name: String,
    /// The public id: the password's first [`ID_LEN`] characters, unique in the record.
    pub id: String,
    /// PHC string of argon2id over the secret part (normalized).
    pub hash: String,
    /// PAM services (`PAM_SERVICE`) it opens, if `[app_passwords] services` also lists them.
    pub services: Vec<String>,
    pub created: UnixTime,
    /// `None`: never expires.
    pub expires: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<UnixTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<LastUse>,
    /// When its expiry was announced (once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_noticed: Option<UnixTime>,
}

impl fmt::Debug for AppPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppPassword")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("hash", &"[redacted]")
            .field("services", &self.services)
            .field("created", &self.created)
            .field("expires", &self.expires)
            .field("revoked", &self.revoked)
            .field("last_used", &self.last_used)
            .field("expiry_noticed", &self.expiry_noticed)
            .finish()
    }
}

/// The latest accepted use of an app password.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LastUse {
    pub at: UnixTime,
    /// `PAM_SERVICE` of that login.
    pub service: String,
    /// `PAM_RHOST` of that login (empty: none given).
    pub rhost: String,
}

impl AppPassword {
    /// Neither revoked nor expired at `now`.
    pub fn live(&self, now: UnixTime) -> bool {
        self.revoked.is_none() && self.expires.is_none_or(|e| now < e)
    }
}

/// What a user or an admin sees of one app password (never the hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPasswordInfo {
    pub name: String,
    pub id: String,
    pub services: Vec<String>,
    pub created: UnixTime,
    pub expires: Option<UnixTime>,
    pub revoked: Option<UnixTime>,
    pub last_used: Option<LastUse>,
}

impl From<&AppPassword> for AppPasswordInfo {
    fn from(a: &AppPassword) -> AppPasswordInfo {
        AppPasswordInfo {
            name: a.name.clone(),
            id: a.id.clone(),
            services: a.services.clone(),
            created: a.created,
            expires: a.expires,
            revoked: a.revoked,
            last_used: a.last_used.clone(),
        }
    }
}

/// A new app password: the password (shown once, wiped on drop) and its entry.
pub struct Created {
    pub password: Zeroizing<String>,
    pub info: AppPasswordInfo,
}

/// What a create asks for.
pub struct NewAppPassword<'a> {
    pub name: &'a str,
    pub services: &'a [String],
    /// Seconds from now; [`LONGEST`] or [`NEVER`].
    pub expires_in: u64,
}

/// Lower-case, dashes and spaces removed; `None` unless it has the shape of an app password.
fn normalize(input: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if input.len() > limits::MAX_ANSWER_LEN {
        return None;
    }
    let v = Zeroizing::new(
        input
            .iter()
            .filter(|b| **b != b'-' && **b != b' ')
            .map(u8::to_ascii_lowercase)
            .collect::<Vec<u8>>(),
    );
    (v.len() == ID_LEN + SECRET_LEN && v.iter().all(|b| ALPHABET.contains(b))).then_some(v)
}

/// A fresh password whose id `taken` does not refuse: (shown form, id, hash of the secret).
///
/// # Errors
/// [`Error::Internal`] when the random source or argon2 fails.
fn generate(
    pool: &HashPool,
    taken: impl Fn(&str) -> bool,
) -> Result<(Zeroizing<String>, String, String), Error> {
    let internal = |e: recovery::CodesError| Error::Internal(e.to_string());
    for _ in 0..64 {
        let raw = recovery::random_chars(ID_LEN + SECRET_LEN).map_err(internal)?;
        let (id, secret) = raw.split_at(ID_LEN);
        let id = String::from_utf8_lossy(id).into_owned();
        if taken(&id) {
            continue;
        }
        let hash = recovery::hash(secret, pool).map_err(internal)?;
        let shown = Zeroizing::new(
            raw.chunks(GROUP)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-"),
        );
        return Ok((shown, id, hash));
    }
    Err(Error::Internal("no free app password id".into()))
}

/// A hash of random bytes with the same parameters, computed once: what an answer that
/// names no usable entry is verified against, so that it costs what a real check costs.
fn dummy_hash(pool: &HashPool) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let raw = recovery::random_chars(SECRET_LEN).ok();
        let secret = raw
            .as_deref()
            .map_or(&b"twostep-dummy"[..], |r| r.as_slice());
        recovery::hash(secret, pool).unwrap_or_default()
    })
}

/// Index of the entry of `entries` that `input` opens for `service` at `now`: live, naming
/// `service`, and matching. Always exactly one argon2 computation (against a dummy hash when
/// `input` is malformed or names no usable entry), so the time taken does not tell them apart.
pub fn find(
    entries: &[AppPassword],
    input: &[u8],
    service: &str,
    now: UnixTime,
    pool: &HashPool,
) -> Option<usize> {
    let code = normalize(input);
    let target = code.as_ref().and_then(|c| {
        let id = c.get(..ID_LEN)?;
        entries.iter().position(|e| {
            e.id.as_bytes() == id && e.live(now) && e.services.iter().any(|s| s == service)
        })
    });
    match (code, target.and_then(|i| entries.get(i).map(|e| (i, e)))) {
        (Some(c), Some((i, entry))) => {
            recovery::verify(c.get(ID_LEN..).unwrap_or_default(), &entry.hash, pool).then_some(i)
        }
        (c, _) => {
            // Why bounded: argon2's cost grows with the input; the wire does not bound it.
            let capped = input.get(..limits::MAX_ANSWER_LEN).unwrap_or(input);
            let burn = c.as_deref().map_or(capped, |c| c.as_slice());
            let _ = recovery::verify(burn, dummy_hash(pool), pool);
            None
        }
    }
}

/// Whether the record has an app password that is neither revoked nor expired.
pub fn has_live(record: &Record, now: UnixTime) -> bool {
    record.app_passwords.iter().any(|a| a.live(now))
}

/// The app passwords of `record` whose expiry should be announced now: live, expiring
/// within `days` days of `now`, not announced before. Indexes into `record.app_passwords`.
/// `days == 0`: none.
pub fn notices_due(record: &Record, now: UnixTime, days: u64) -> Vec<usize> {
    if days == 0 {
        return Vec::new();
    }
    let horizon = now.plus(days.saturating_mul(86_400));
    record
        .app_passwords
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            a.live(now) && a.expiry_noticed.is_none() && a.expires.is_some_and(|e| e <= horizon)
        })
        .map(|(i, _)| i)
        .collect()
}

/// One expiry notice: whose app password, which, and when it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub user: String,
    pub uid: u32,
    pub name: String,
    pub id: String,
    pub expires: UnixTime,
}

/// Check a new app password name: what [`record::check_name`] accepts, of letters, digits,
/// spaces and ASCII punctuation other than `:` only, at most [`MAX_NAME`] bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] saying what is wrong.
fn check_new_name(name: &str) -> Result<(), Error> {
    let plain = |c: char| c.is_alphanumeric() || c == ' ' || (c.is_ascii_punctuation() && c != ':');
    if record::check_name(name).is_err() || !name.chars().all(plain) {
        return Err(Error::InvalidArgument(format!(
            "an app password name is 1 to {MAX_NAME} bytes of letters, digits, spaces and \
             punctuation other than `:`, not starting or ending with a space"
        )));
    }
    Ok(())
}

/// The services of a new app password: 1 to [`MAX_SERVICES`] names, each one that
/// `[app_passwords] services` lists (duplicates dropped).
///
/// # Errors
/// [`Error::InvalidArgument`] naming the first service refused.
fn check_services(services: &[String], allowed: &[String]) -> Result<Vec<String>, Error> {
    if services.is_empty() || services.len() > MAX_SERVICES {
        return Err(Error::InvalidArgument(format!(
            "an app password names 1 to {MAX_SERVICES} PAM services"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(services.len());
    for s in services {
        if s.is_empty() || s.len() > MAX_SERVICE_LEN || !s.chars().all(|c| c.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(format!(
                "a PAM service name is 1 to {MAX_SERVICE_LEN} printable ASCII characters"
            )));
        }
        if !allowed.contains(s) {
            return Err(Error::InvalidArgument(format!(
                "service {} does not accept app passwords on this host ([app_passwords] \
                 services: {})",
                field(s),
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            )));
        }
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    Ok(out)
}

/// When a new app password expires (`None`: never), from `expires_in` and the config.
///
/// # Errors
/// [`Error::InvalidArgument`] for `never` where it is not allowed, or longer than allowed.
fn expiry(
    expires_in: u64,
    config: &twostep_config::AppPasswords,
    now: UnixTime,
) -> Result<Option<UnixTime>, Error> {
    let longest = config.max_days.get().saturating_mul(86_400);
    match expires_in {
        NEVER if config.allow_never => Ok(None),
        NEVER => Err(Error::InvalidArgument(format!(
            "app passwords on this host must expire, after at most {} days \
             ([app_passwords] allow_never = false)",
            config.max_days.get()
        ))),
        LONGEST => Ok(Some(now.plus(longest))),
        s if s > longest => Err(Error::InvalidArgument(format!(
            "app passwords on this host are valid for at most {} days ([app_passwords] max_days)",
            config.max_days.get()
        ))),
        s => Ok(Some(now.plus(s))),
    }
}

/// The entry `key` names among the record's not-revoked ones: its id, or its name
/// (whatever the case).
fn position(record: &Record, key: &str) -> Option<usize> {
    let folded = key.to_lowercase();
    record
        .app_passwords
        .iter()
        .position(|a| a.revoked.is_none() && (a.id == key || a.name.to_lowercase() == folded))
}

/// Drop the oldest revoked or expired entries beyond [`MAX_KEPT`] - 1 (room for one more).
fn prune(record: &mut Record, now: UnixTime) {
    while record.app_passwords.len() >= MAX_KEPT {
        let Some(i) = record.app_passwords.iter().position(|a| !a.live(now)) else {
            return;
        };
        record.app_passwords.remove(i);
    }
}

/// Create an app password for the caller: `proof` is a current code or a recovery code
/// (spent). The password is returned once and never again.
///
/// # Errors
/// Not enrolled, a bad name, a name in use, a service or expiry the config refuses, too
/// many app passwords, a wrong proof, a lock, a failed write.
pub(super) fn create(
    core: &Core,
    caller: &Caller,
    new: &NewAppPassword<'_>,
    proof: &[u8],
    now: UnixTime,
) -> Result<Created, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    let config = core.config();
    check_new_name(new.name)?;
    let services = check_services(new.services, &config.app_passwords.services)?;
    let expires = expiry(new.expires_in, &config.app_passwords, now)?;
    let created = core.update(&account, |record| {
        if !record.enrolled() {
            return (Write::Keep, Err(Error::NotEnrolled(account.name.clone())));
        }
        if position(record, new.name).is_some() {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(format!(
                    "{} already has an app password of that name",
                    account.name
                ))),
            );
        }
        if record.app_passwords.iter().filter(|a| a.live(now)).count() >= MAX_LIVE {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(format!(
                    "{} already has {MAX_LIVE} app passwords; revoke one first",
                    account.name
                ))),
            );
        }
        if proof.is_empty() {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(
                    "creating an app password needs a current code or a recovery code".into(),
                )),
            );
        }
        if let Err((write, e)) = super::selfservice::prove(core, record, proof, now) {
            return (write, Err(e));
        }
        // An id is unique in the record and never another entry's name (or this one's), so
        // `revoke NAME|ID` names one entry.
        let taken = |id: &str| {
            new.name.to_lowercase() == id
                || record
                    .app_passwords
                    .iter()
                    .any(|a| a.id == id || a.name.to_lowercase() == id)
        };
        let (password, id, hash) = match generate(core.hashes(), taken) {
            Ok(g) => g,
            Err(e) => return (Write::Keep, Err(e)),
        };
        prune(record, now);
        let entry = AppPassword {
            name: new.name.to_owned(),
            id,
            hash,
            services: services.clone(),
            created: now,
            expires,
            revoked: None,
            last_used: None,
            expiry_noticed: None,
        };
        let info = AppPasswordInfo::from(&entry);
        let from = super::audit::Source::own(record).with_method("app-password");
        record.note(
            now,
            super::audit::EventKind::AppPassword,
            format!(
                "app password created: name={} id={} services={}",
                field(&entry.name),
                entry.id,
                field(&entry.services.join(","))
            ),
            &from,
        );
        record.app_passwords.push(entry);
        (Write::Save, Ok(Created { password, info }))
    })?;
    log::info!(
        "user={} action=app-password-create app_password={} id={} services={} expires={} \
         outcome=created",
        field(&account.name),
        field(&created.info.name),
        created.info.id,
        field(&created.info.services.join(",")),
        created
            .info
            .expires
            .map_or("never".to_owned(), super::timefmt::rfc3339)
    );
    Ok(created)
}

/// Every app password of `account` (revoked and expired ones too), oldest first.
fn list_of(core: &Core, account: &Account) -> Result<Vec<AppPasswordInfo>, Error> {
    let record = core.load(account)?;
    Ok(record
        .map(|r| r.app_passwords.iter().map(AppPasswordInfo::from).collect())
        .unwrap_or_default())
}

/// Revoke the app password of `account` that `key` names (id or name); `by` says who, for
/// the record's event (`None`: the user themselves).
fn revoke_of(
    core: &Core,
    account: &Account,
    key: &str,
    by: Option<super::audit::Source>,
    now: UnixTime,
) -> Result<AppPasswordInfo, Error> {
    let info = core.update(account, |record| {
        let Some(i) = position(record, key) else {
            return (
                Write::Keep,
                Err(Error::InvalidArgument(format!(
                    "{} has no app password of that name or id (or it is revoked already)",
                    account.name
                ))),
            );
        };
        let Some(entry) = record.app_passwords.get_mut(i) else {
            return (Write::Keep, Err(Error::Internal("index".into())));
        };
        entry.revoked = Some(now);
        let info = AppPasswordInfo::from(&*entry);
        let (from, by_admin) = match &by {
            Some(admin) => (admin.clone(), " by an admin"),
            None => (super::audit::Source::own(record), ""),
        };
        record.note(
            now,
            super::audit::EventKind::AppPassword,
            format!(
                "app password revoked{by_admin}: name={} id={}",
                field(&info.name),
                info.id
            ),
            &from,
        );
        (Write::Save, Ok(info))
    })?;
    log::info!(
        "user={} action=app-password-revoke app_password={} id={} by={} outcome=revoked",
        field(&account.name),
        field(&info.name),
        info.id,
        if by.is_none() { "user" } else { "admin" }
    );
    Ok(info)
}

/// The caller's app passwords.
///
/// # Errors
/// The caller has no account or the record is unreadable.
pub(super) fn list(core: &Core, caller: &Caller) -> Result<Vec<AppPasswordInfo>, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    list_of(core, &account)
}

/// Revoke the caller's app password named by `key` (its name or its id). Needs no proof:
/// it only takes access away.
///
/// # Errors
/// No such app password, an unreadable record, a failed write.
pub(super) fn revoke(
    core: &Core,
    caller: &Caller,
    key: &str,
    now: UnixTime,
) -> Result<AppPasswordInfo, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    revoke_of(core, &account, key, None, now)
}

/// An admin's view of `user`'s app passwords.
///
/// # Errors
/// Not an admin, no such user, an unreadable record.
pub(super) fn admin_list(
    core: &Core,
    caller: &Caller,
    user: &str,
) -> Result<Vec<AppPasswordInfo>, Error> {
    super::admin::authorize_admin(core, caller)?;
    let account = core.accounts().by_name(user)?;
    list_of(core, &account)
}

/// An admin revokes `user`'s app password named by `key`.
///
/// # Errors
/// Not an admin, no such user or app password, an unreadable record, a failed write.
pub(super) fn admin_revoke(
    core: &Core,
    caller: &Caller,
    user: &str,
    key: &str,
    now: UnixTime,
) -> Result<AppPasswordInfo, Error> {
    super::admin::authorize_admin(core, caller)?;
    let account = core.accounts().by_name(user)?;
    let by = super::audit::Source::admin(core.accounts(), caller);
    revoke_of(core, &account, key, Some(by), now)
}

/// The prompt of an app-password login: a secret of printable ASCII, echo off.
fn prompt() -> Step {
    Step::Prompt {
        message: String::new(),
        prompt: messages::APP_PASSWORD_PROMPT.into(),
        accept: Accept::Text {
            max: u8::try_from(limits::MAX_ANSWER_LEN).unwrap_or(u8::MAX),
            echo: false,
        },
    }
}

/// Open an app-password login for `user` (the context's `mode` asked for it): refused at
/// once on a service `[app_passwords] services` does not list, and for a locked user;
/// otherwise one secret prompt, for every name (a name NSS does not know included, when
/// root asks), answered by [`answer`].
///
/// # Errors
/// As `login::begin`: a caller that may not check this user, a failed look-up, an
/// unreadable record, too many sessions.
pub(super) fn begin(
    core: &Core,
    caller: &Caller,
    user: &str,
    ctx: LoginContext,
    now: UnixTime,
) -> Result<(String, Step), Error> {
    users::check_name(user)?;
    let (account, known) = match core.accounts().by_name(user) {
        Ok(a) if authz::may_run_login(caller.uid, &a).is_ok() => (a, true),
        Err(Error::UnknownUser(_)) if caller.uid == 0 => (
            Account {
                name: user.to_owned(),
                uid: NO_ACCOUNT,
                gid: NO_ACCOUNT,
            },
            false,
        ),
        Ok(_) | Err(Error::UnknownUser(_)) => return Err(authz::not_for_others(caller.uid)),
        Err(e) => return Err(e),
    };
    let config = core.config();
    if !config.app_passwords.services.contains(&ctx.service) {
        log::warn!(
            "user={} service={} caller_uid={} outcome=app-password-refused reason=\"this \
             service is not in [app_passwords] services\"",
            field(user),
            field(&ctx.service),
            caller.uid
        );
        return Ok((
            String::new(),
            messages::done(Verdict::Denied, String::new()),
        ));
    }
    let limits = core.settings().session_limits();
    core.sessions().room(caller, account.uid, limits, now)?;
    if known {
        if let Some(record) = core.load(&account)? {
            if let Some(step) = lock_refusal(core, &record, now) {
                audit(&account, &ctx, caller, "app-password-locked");
                return Ok((String::new(), step));
            }
        }
    }
    let id = login::new_session(
        core,
        caller,
        &account,
        ctx,
        now,
        Awaiting::AppPassword { known },
    )?;
    Ok((id, prompt()))
}

/// Check `password` as an app password of `account` for the context's service. A locked
/// user is refused without a hash; everyone else costs one: unknown names and users
/// without a live app password against a dummy, computed outside any store transaction.
/// Success records the last use (service and remote host); a wrong one is charged to the
/// app passwords' own lock (`apppw_lock`), not to the codes' lockout. A user who is not enrolled, has no
/// live app password and is not required gets `NotEnrolled` (with `nullok` the module
/// passes them on to the next module, e.g. `pam_unix`; without it the module refuses them
/// exactly as a wrong password). Refusals carry no text, except the lock's.
///
/// # Errors
/// An unreadable record, a failed look-up or write.
pub(super) fn answer(
    core: &Core,
    caller: &Caller,
    account: &Account,
    known: bool,
    ctx: &LoginContext,
    password: &[u8],
    now: UnixTime,
) -> Result<Step, Error> {
    // Why no text: a refusal reads the same whatever the reason (unknown name, no app
    // password, a wrong one); only a lock, reached by an existing user, says more.
    let denied = || messages::done(Verdict::Denied, String::new());
    if !known {
        let _ = find(&[], password, &ctx.service, now, core.hashes());
        audit(account, ctx, caller, "app-password-wrong (unknown user)");
        return Ok(denied());
    }
    let record = core
        .load(account)?
        .unwrap_or_else(|| Record::for_account(&account.name, account.uid));
    if !record.enrolled() && !has_live(&record, now) {
        if let Some(step) = lock_refusal(core, &record, now) {
            audit(account, ctx, caller, "app-password-locked");
            return Ok(step);
        }
        let _ = find(&[], password, &ctx.service, now, core.hashes());
        let required = core
            .settings()
            .requirement(core.accounts(), account, &record)?;
        if required.required {
            audit(account, ctx, caller, "app-password-wrong (not enrolled)");
            return Ok(denied());
        }
        audit(account, ctx, caller, "app-password-not-enrolled");
        return Ok(messages::done(Verdict::NotEnrolled, String::new()));
    }
    if let Some(step) = lock_refusal(core, &record, now) {
        audit(account, ctx, caller, "app-password-locked");
        return Ok(step);
    }
    // Why the hash is computed outside the store transaction (review M4): argon2 takes tens
    // of milliseconds, and on PostgreSQL a transaction holds a pooled connection (and the
    // user's row) all along. So: read, verify, then a second short transaction records the
    // result, after checking again that the user is not locked and that the entry that
    // matched is still there, unchanged and usable (a revoke in between wins).
    let matched = find(
        &record.app_passwords,
        password,
        &ctx.service,
        now,
        core.hashes(),
    )
    .and_then(|i| record.app_passwords.get(i))
    .map(|e| (e.id.clone(), e.hash.clone()));
    drop(record);
    let pw_policy = AppPasswordLockPolicy::from_config(&core.config().app_passwords);
    let (step, outcome, locked) = core.update(account, |record| {
        if let Some(step) = lock_refusal(core, record, now) {
            return (Write::Keep, Ok((step, "app-password-locked", None)));
        }
        let Some((id, hash)) = &matched else {
            // Why not `[lockout]`: a wrong app password counts toward the app passwords'
            // own lock only (review M4), never toward the codes' (`apppw_lock`).
            let locked_now = apppw_lock::charge(record, now, &pw_policy);
            let from = super::audit::Source::login(ctx, account).with_method("app-password");
            record.note(
                now,
                super::audit::EventKind::Failure,
                "failed app password attempt",
                &from,
            );
            if locked_now {
                record.note(
                    now,
                    super::audit::EventKind::Lock,
                    "app passwords locked after wrong app passwords (codes are not affected)",
                    &from,
                );
            }
            let until = apppw_lock::locked_until(record, now, &pw_policy);
            let (step, locked) = match until {
                Some(until) if locked_now => (
                    messages::done(
                        Verdict::Denied,
                        format!(
                            "{} {}",
                            messages::APP_PASSWORD_WRONG,
                            apppw_lock::locked_message(until, now)
                        ),
                    ),
                    Some(until),
                ),
                _ => (denied(), None),
            };
            return (Write::Save, Ok((step, "app-password-wrong", locked)));
        };
        let entry = record.app_passwords.iter_mut().find(|e| {
            &e.id == id && &e.hash == hash && e.live(now) && e.services.contains(&ctx.service)
        });
        let Some(entry) = entry else {
            // Revoked (or replaced) while its hash was checked: refused, not a guess.
            return (Write::Keep, Ok((denied(), "app-password-revoked", None)));
        };
        entry.last_used = Some(LastUse {
            at: now,
            service: ctx.service.clone(),
            rhost: ctx.rhost.clone(),
        });
        // Dated as the user's last success, the codes' count kept (see the module doc); the
        // app passwords' own count starts again.
        lockout::note_success(record, now);
        apppw_lock::clear(record);
        let step = messages::done(Verdict::Success, String::new());
        (Write::Save, Ok((step, "app-password-success", None)))
    })?;
    if let Some(until) = locked {
        log::warn!(
            "user={} outcome=app-passwords-locked failures={} until={} (codes are not \
             affected)",
            field(&account.name),
            pw_policy.max_failures,
            super::timefmt::rfc3339(until)
        );
    }
    audit(account, ctx, caller, outcome);
    Ok(step)
}

/// The refusal of an app-password login while the user is locked: by `[lockout]` (too many
/// wrong codes: every login of the user is refused) or by the app passwords' own lock
/// (`apppw_lock`: only app passwords are refused). `None`: not locked.
fn lock_refusal(core: &Core, record: &Record, now: UnixTime) -> Option<Step> {
    let policy = core.settings().lock_policy();
    if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
        return Some(messages::done(Verdict::Locked, msg));
    }
    let pw_policy = AppPasswordLockPolicy::from_config(&core.config().app_passwords);
    apppw_lock::locked_until(record, now, &pw_policy)
        .map(|until| messages::done(Verdict::Locked, apppw_lock::locked_message(until, now)))
}

/// Find the app passwords whose expiry is due to be announced (`[app_passwords]
/// notice_days`), mark each as announced (durably, once), log one line each, and return
/// them (for a mailer to send). Records that cannot be read or accounts that no longer
/// resolve are skipped and logged.
///
/// # Errors
/// The store cannot be listed.
pub fn expiry_notices(core: &Core, now: UnixTime) -> Result<Vec<Notice>, Error> {
    let days = core.config().app_passwords.notice_days.get();
    if days == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for uid in core.store().list()? {
        let account = match core.accounts().by_uid(uid) {
            Ok(a) => a,
            Err(e) => {
                log::warn!(
                    "uid={uid} action=app-password-notice outcome=skipped reason={}",
                    field(&e.to_string())
                );
                continue;
            }
        };
        let notices = core.update(&account, |record| {
            let due = notices_due(record, now, days);
            if due.is_empty() {
                return (Write::Keep, Ok(Vec::new()));
            }
            let mut notices = Vec::with_capacity(due.len());
            for i in due {
                if let Some(a) = record.app_passwords.get_mut(i) {
                    a.expiry_noticed = Some(now);
                    notices.push(Notice {
                        user: account.name.clone(),
                        uid,
                        name: a.name.clone(),
                        id: a.id.clone(),
                        expires: a.expires.unwrap_or(now),
                    });
                }
            }
            (Write::Save, Ok(notices))
        });
        match notices {
            Ok(n) => {
                for notice in &n {
                    mail::notify_account(
                        core,
                        &account,
                        mail::Notice::AppPasswordExpiring {
                            name: notice.name.clone(),
                            id: notice.id.clone(),
                            expires: super::timefmt::human(notice.expires),
                        },
                    );
                }
                out.extend(n);
            }
            Err(e) => log::warn!(
                "user={} action=app-password-notice outcome=skipped reason={}",
                field(&account.name),
                field(&e.to_string())
            ),
        }
    }
    for n in &out {
        log::info!(
            "user={} action=app-password-notice app_password={} id={} expires={} \
             outcome=expiry-announced",
            field(&n.user),
            field(&n.name),
            n.id,
            super::timefmt::rfc3339(n.expires)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, hash: String, services: &[&str]) -> AppPassword {
        AppPassword {
            name: format!("n-{id}"),
            id: id.into(),
            hash,
            services: services.iter().map(|s| (*s).to_owned()).collect(),
            created: UnixTime(100),
            expires: Some(UnixTime(1000)),
            revoked: None,
            last_used: None,
            expiry_noticed: None,
        }
    }

    #[test]
    fn passwords_carry_their_id_and_open_only_their_entry_for_their_services() {
        let pool = HashPool::new(2);
        let (shown, id, hash) = generate(&pool, |_| false).unwrap();
        assert_eq!(shown.len(), 35, "six groups of five with dashes");
        assert_eq!(shown.matches('-').count(), 5);
        assert!(shown.starts_with(&id));
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains(&shown[6..]));
        // ≥ 100 bits in the secret part.
        assert!(SECRET_LEN as f64 * (ALPHABET.len() as f64).log2() >= 100.0);
        let entries = vec![
            entry("aaaaa", "x".into(), &["imap"]),
            entry(&id, hash, &["imap", "smtp"]),
        ];
        let now = UnixTime(500);
        assert_eq!(
            find(&entries, shown.as_bytes(), "imap", now, &pool),
            Some(1)
        );
        assert_eq!(
            find(&entries, shown.as_bytes(), "smtp", now, &pool),
            Some(1)
        );
        // Upper case, spaces instead of dashes: the same password.
        let loose = shown.to_uppercase().replace('-', " ");
        assert_eq!(
            find(&entries, loose.as_bytes(), "imap", now, &pool),
            Some(1)
        );
        // Another service, expired, revoked, a wrong secret, junk: refused.
        assert_eq!(find(&entries, shown.as_bytes(), "sshd", now, &pool), None);
        assert_eq!(
            find(&entries, shown.as_bytes(), "imap", UnixTime(1000), &pool),
            None
        );
        let mut revoked = entries.clone();
        revoked[1].revoked = Some(UnixTime(400));
        assert_eq!(find(&revoked, shown.as_bytes(), "imap", now, &pool), None);
        let mut wrong = shown.as_bytes().to_vec();
        let last = wrong.len() - 1;
        wrong[last] = if wrong[last] == b'a' { b'b' } else { b'a' };
        assert_eq!(find(&entries, &wrong, "imap", now, &pool), None);
        for junk in [&b""[..], b"123456", &[0xff; 30], &[b'a'; 1000]] {
            assert_eq!(find(&entries, junk, "imap", now, &pool), None);
        }
    }

    #[test]
    fn every_refusal_costs_one_hash_like_a_check() {
        let pool = HashPool::new(1);
        let (shown, id, hash) = generate(&pool, |_| false).unwrap();
        let entries = vec![entry(&id, hash, &["imap"])];
        let _ = dummy_hash(&pool);
        // The fastest of three runs: the machine may be busy with other work.
        let time = |input: &[u8], entries: &[AppPassword]| {
            (0..3)
                .map(|_| {
                    let t = std::time::Instant::now();
                    let _ = find(entries, input, "imap", UnixTime(500), &pool);
                    t.elapsed()
                })
                .min()
                .unwrap()
        };
        let right = time(shown.as_bytes(), &entries);
        for (input, entries) in [
            (&b"not a password"[..], &entries[..]),
            (shown.as_bytes(), &[][..]),
            (shown.as_bytes(), &entries[..]),
        ] {
            let t = time(input, entries);
            assert!(
                t * 5 > right && t < right * 5,
                "a refusal took {t:?}, a check {right:?}"
            );
        }
    }

    #[test]
    fn debug_never_shows_the_hash() {
        let e = entry("abcde", "$argon2id$secret-hash".into(), &["imap"]);
        let shown = format!("{e:?} {e:#?}");
        assert!(!shown.contains("secret-hash"), "{shown}");
    }

    #[test]
    fn notices_are_due_once_within_the_window() {
        let mut r = Record::for_account("alice", 1000);
        r.app_passwords = vec![
            entry("aaaaa", String::new(), &["imap"]),
            AppPassword {
                expires: None,
                ..entry("bbbbb", String::new(), &["imap"])
            },
            AppPassword {
                expires: Some(UnixTime(100_000_000)),
                ..entry("ccccc", String::new(), &["imap"])
            },
            AppPassword {
                revoked: Some(UnixTime(200)),
                ..entry("ddddd", String::new(), &["imap"])
            },
        ];
        assert_eq!(notices_due(&r, UnixTime(500), 7), vec![0]);
        assert!(notices_due(&r, UnixTime(500), 0).is_empty());
        // Not before the window, not after expiry, not twice.
        assert!(notices_due(&r, UnixTime(0), 0).is_empty());
        assert!(notices_due(&r, UnixTime(1000), 7).is_empty());
        r.app_passwords[0].expiry_noticed = Some(UnixTime(500));
        assert!(notices_due(&r, UnixTime(600), 7).is_empty());
        let far = UnixTime(100_000_000 - 86_400);
        assert_eq!(notices_due(&r, far, 1), vec![2]);
        assert!(notices_due(&r, UnixTime(far.0 - 1), 1).is_empty());
    }

    #[test]
    fn expiry_follows_the_config() {
        let mut c = twostep_config::AppPasswords::default();
        let now = UnixTime(1000);
        assert_eq!(
            expiry(LONGEST, &c, now).unwrap(),
            Some(now.plus(365 * 86_400))
        );
        assert_eq!(expiry(5, &c, now).unwrap(), Some(now.plus(5)));
        assert!(expiry(NEVER, &c, now).is_err());
        assert!(expiry(366 * 86_400, &c, now).is_err());
        c.allow_never = true;
        assert_eq!(expiry(NEVER, &c, now).unwrap(), None);
    }

    #[test]
    fn services_must_be_allowed_by_the_host() {
        let allowed = vec!["dovecot".to_owned(), "vsftpd".to_owned()];
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            check_services(&s(&["dovecot", "dovecot"]), &allowed).unwrap(),
            s(&["dovecot"])
        );
        assert!(check_services(&s(&["sshd"]), &allowed).is_err());
        assert!(check_services(&[], &allowed).is_err());
        assert!(check_services(&s(&["dove cot"]), &allowed).is_err());
        let e = check_services(&s(&["sshd"]), &[]).unwrap_err().to_string();
        assert!(e.contains("none"), "{e}");
    }
}
