// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-service rules (`[services.NAME]`, issue 20 item 12), applied by the daemon; the
//! module knows nothing of them and sees only verdicts it already knows.
//!
//! - `second_factor = "never"`: the login is answered as for a user without a second
//!   factor (`Verdict::NotEnrolled`: `PAM_IGNORE` with `nullok`), the one existing outcome
//!   that lets the password alone decide. A locked user is still refused. Nothing is
//!   written; the audit line says `not-asked (service rule never)`.
//! - `second_factor = "required"`: [`requirement`] decides as if `[policy] require = "all"`
//!   held on this service; only exemptions (exempt groups, the admin's per-user exempt)
//!   still exempt.
//! - `methods`: [`offered_on`] narrows what a record offers on this service; recovery
//!   codes count only beside an allowed method.
//! - `remember_seconds`: after a second factor accepted on service S ([`remember`], inside
//!   the login's own store transaction), a later login of the same account on S with the
//!   same [`Key`] on this host within the window is let in without a code
//!   ([`begin_rule`], again inside one store transaction that re-checks everything and
//!   dates the success).
//!
//! The key, and why: the account (uid, the record's owner), the service, this host's name,
//! and the remote host **and** the tty, both as the PAM host set them (at least one
//! non-empty). Both, not "rhost, else tty": with sudoers' `pam_rhost` flag (off by default
//! on Linux) sudo sets `PAM_RHOST` to the *local* host name, the same for every terminal
//! of the machine, so rhost alone would let a sudo on any terminal ride on a code typed on
//! another; with the tty too it is per terminal. sshd sets the client address and tty `ssh`; `login` the
//! console tty. The host name is part of the key because fleet hosts share one record
//! (PostgreSQL) while ttys and addresses mean something only on the host that saw them.
//!
//! Only root callers create or use entries: sshd, sudo, su and login run PAM as root and
//! set rhost and tty themselves; a non-root caller (a screen locker) sets them from its own
//! process, which the user controls.
//!
//! Bound to the caller's kernel audit session too, when it has one (the way sudo's
//! `timestamp_type=tty` binds its ticket to the terminal's session): the bus adapter asks
//! the bus for the calling process's pid (`GetConnectionUnixProcessID`) on a service with
//! a window and reads `/proc/PID/sessionid` ([`audit_session`]). `pam_loginuid` gives every
//! login a new session that its processes (the shell, sudo) inherit, so the next login on
//! the same terminal does not match this one's entries. Where no session is set (no
//! `pam_loginuid`; containers; sshd and `login`, whose auth stack runs before
//! `pam_loginuid` sets one) the key is without it, and a tty-keyed entry can be used by the
//! next session on that tty within the window (documented: twostep.toml(5),
//! docs/services.md).
//!
//! An entry ends when its window passes (measured with the window in force now, so a
//! reload that shortens it applies at once), at any failed attempt of the account (every
//! lock is made of failed attempts, and an unlock never revives one: the entry must be
//! younger than the last failure), when the factors are forgotten (`user reset`,
//! `disable`, a switch-off), and when a newer one takes its place; at most
//! [`MAX_REMEMBERED`] per record, oldest dropped first.

use serde::{Deserialize, Serialize};
use twostep_config::{Config, MethodName, SecondFactor, ServiceRule};
use twostep_proto::{Step, Verdict};

use super::audit::{audit, field, EventKind, LoginContext, Source};
use super::authz::Caller;
use super::engine::Core;
use super::lockout::{self, locked_message};
use super::messages;
use super::policy::Requirement;
use super::record::Record;
use super::store::Write;
use super::users::Account;
use super::verify::{self, Method};
use super::{Error, UnixTime};

/// Remembered entries kept per record at most (the oldest goes first).
pub const MAX_REMEMBERED: usize = 16;

/// Told to a user whose methods this service does not accept.
pub const NO_METHOD_HERE: &str = "This service does not accept the second factor you have set \
     up; log in where it is accepted, or ask an administrator.";

/// Told to a user who would enrol at login on a service that does not accept authenticator
/// apps.
pub const NO_ENROLMENT_HERE: &str = "Two-factor authentication must be set up first, and this \
     service cannot set it up: use another login or `twostepctl enroll`.";

/// A second factor proven on `service` from (`rhost`, `tty`) on `host`, at `at`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Remembered {
    /// This host's name when it was made (records are shared by a fleet's hosts).
    pub host: String,
    pub service: String,
    pub rhost: String,
    pub tty: String,
    /// The caller's kernel audit session, when it had one (see [`audit_session`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u32>,
    /// When the second factor was accepted.
    pub at: UnixTime,
    /// [`factors_stamp`] of the record when it was made: a window ends when the user's
    /// factors change (a new or removed authenticator, new recovery codes, another mail
    /// address), the remedy for a leaked key. Absent (older entries): never matches.
    #[serde(default)]
    pub factors: String,
}

/// A digest of `record`'s factors (each authenticator's name, creation and key time; each
/// recovery code's id and hash; the mail address): it changes whenever one is replaced,
/// added or removed. SHA-256, first 16 bytes in hex; no secret goes in (hashes and names).
pub fn factors_stamp(record: &Record) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for a in &record.authenticators {
        h.update(b"a\0");
        h.update(a.name.as_bytes());
        h.update(a.added.0.to_be_bytes());
        h.update(a.key.created.0.to_be_bytes());
    }
    for c in &record.recovery {
        h.update(b"r\0");
        h.update(c.id.as_bytes());
        h.update(c.hash.as_bytes());
    }
    if let Some(address) = record.email.as_ref().and_then(|e| e.address.as_ref()) {
        h.update(b"m\0");
        h.update(address.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `LoginContext::audit_session` when the adapter could not tell the caller's session (no
/// pid from the transport, `/proc/PID/sessionid` unreadable): then no window is made or
/// used, rather than a key without the session (the kernel's own "unset",
/// 4294967295, is read as no session, `None`).
pub const SESSION_UNKNOWN: u32 = u32::MAX;

/// The place a login comes from, as far as a remember window is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub host: String,
    pub service: String,
    pub rhost: String,
    pub tty: String,
    pub session: Option<u32>,
}

impl Key {
    /// The key of a login from `ctx` on this host; `None` when neither rhost nor tty is set
    /// (nothing tells one place from another) or the service is unnamed.
    pub fn of(ctx: &LoginContext) -> Option<Key> {
        if ctx.service.is_empty()
            || (ctx.rhost.is_empty() && ctx.tty.is_empty())
            || ctx.audit_session == Some(SESSION_UNKNOWN)
        {
            return None;
        }
        Some(Key {
            host: host_name()?,
            service: ctx.service.clone(),
            rhost: ctx.rhost.clone(),
            tty: ctx.tty.clone(),
            session: ctx.audit_session,
        })
    }

    fn matches(&self, r: &Remembered) -> bool {
        r.host == self.host
            && r.service == self.service
            && r.rhost == self.rhost
            && r.tty == self.tty
            && r.session == self.session
    }
}

/// Whether logins on `service` may use a remember window: then the adapter looks up the
/// caller's audit session ([`audit_session`]) for the key.
pub fn remembers(config: &Config, service: &str) -> bool {
    rule(config, service).is_some_and(|r| r.remember_seconds.get() > 0)
}

/// The kernel audit session of process `pid` (`/proc/PID/sessionid`): `None` when it is
/// unset (4294967295: no `pam_loginuid` in the process's ancestry), [`SESSION_UNKNOWN`]
/// when it cannot be read.
///
/// Why it can be trusted for the key: the pid is the one the kernel gave the bus (or the
/// peer socket) when the calling process connected, and a root PAM application (sudo, su)
/// waits inside the call for the answer, so the process is alive while this is read; its
/// session is inherited from the login that started the terminal session and changes at
/// every new login (`pam_loginuid`), which is what keeps the next session on the same
/// terminal from using this one's window.
pub fn audit_session(pid: u32) -> Option<u32> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/sessionid")) else {
        return Some(SESSION_UNKNOWN);
    };
    match text.trim().parse::<u32>() {
        Ok(u32::MAX) => None,
        Ok(s) => Some(s),
        Err(_) => Some(SESSION_UNKNOWN),
    }
}

/// This host, as a remember window's key names it: its machine id (`/etc/machine-id`, else
/// D-Bus's `/var/lib/dbus/machine-id`) and the host name (cloned images may share a name,
/// or even a machine id). `None` when no machine id can be read: then no window is made or
/// used.
pub fn host_name() -> Option<String> {
    let id = ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| {
            let id = std::fs::read_to_string(p).ok()?;
            let id = id.trim().to_owned();
            (!id.is_empty()).then_some(id)
        })?;
    let name = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    Some(format!("{id}/{name}"))
}

/// The rule of `service`, if it has a table.
pub fn rule<'c>(config: &'c Config, service: &str) -> Option<&'c ServiceRule> {
    config
        .services
        .iter()
        .find(|(name, _)| name.as_str() == service)
        .map(|(_, r)| r)
}

/// Whether `service` accepts `method` (recovery codes: always; [`offered_on`] drops them
/// when nothing else is left).
pub fn allows(config: &Config, service: &str, method: Method) -> bool {
    let name = match method {
        Method::Totp => MethodName::Totp,
        Method::Email => MethodName::Email,
        Method::Recovery => return true,
    };
    rule(config, service).is_none_or(|r| r.allows(name))
}

/// What `record` offers on `service` ([`verify::offered`] narrowed by the service's
/// `methods`): empty when none of the user's own methods is accepted there.
pub fn offered_on(config: &Config, record: &Record, service: &str) -> Vec<Method> {
    let methods: Vec<Method> = verify::offered(record)
        .into_iter()
        .filter(|m| allows(config, service, *m))
        .collect();
    if methods.iter().all(|m| *m == Method::Recovery) {
        return Vec::new();
    }
    methods
}

/// Whether `account` must use a second factor on `ctx.service`: `[policy]`, or with
/// `second_factor = "required"` as if `[policy] require = "all"` (exemptions still hold).
///
/// # Errors
/// As [`Settings::requirement`](super::settings::Settings::requirement).
pub fn requirement(
    core: &Core,
    account: &Account,
    record: &Record,
    ctx: &LoginContext,
) -> Result<Requirement, Error> {
    let config = core.settings().config();
    let accounts = core.accounts();
    match rule(&config, &ctx.service).map(|r| r.second_factor) {
        Some(SecondFactor::Required) => {
            let mut policy = config.policy.clone();
            policy.require = twostep_config::Require::All;
            policy.groups.clear();
            let r = core
                .settings()
                .requirement_under(&policy, accounts, account, record)?;
            Ok(Requirement {
                why: if r.required {
                    format!("service {}: second_factor = required", ctx.service)
                } else {
                    r.why
                },
                ..r
            })
        }
        _ => core.settings().requirement(accounts, account, record),
    }
}

/// What the service's rule decides before any code is asked, if anything: `never` (the
/// not-enrolled verdict; locked users refused), a user none of whose methods the service
/// accepts (refused), or a remembered second factor (success, dated in the record).
/// `None`: go on as usual. App-password logins never come here.
///
/// # Errors
/// Store errors.
pub fn begin_rule(
    core: &Core,
    caller: &Caller,
    account: &Account,
    record: &Record,
    ctx: &LoginContext,
    now: UnixTime,
) -> Result<Option<Step>, Error> {
    let config = core.settings().config();
    let Some(rule) = rule(&config, &ctx.service) else {
        return Ok(None);
    };
    let policy = core.settings().lock_policy();
    let locked = locked_message(lockout::state(record, now, &policy), now);
    if rule.second_factor == SecondFactor::Never {
        if let Some(msg) = locked.filter(|_| record.enrolled()) {
            audit(account, ctx, caller, "locked");
            return Ok(Some(messages::done(Verdict::Locked, msg)));
        }
        audit(account, ctx, caller, "not-asked (service rule never)");
        return Ok(Some(messages::done(Verdict::NotEnrolled, String::new())));
    }
    if !record.enrolled() || locked.is_some() {
        // Not enrolled: the requirement decides (`requirement`); locked: refused as usual.
        return Ok(None);
    }
    if offered_on(&config, record, &ctx.service).is_empty() {
        audit(account, ctx, caller, "refused (service rule methods)");
        return Ok(Some(messages::done(
            Verdict::Denied,
            NO_METHOD_HERE.to_owned(),
        )));
    }
    let window = rule.remember_seconds.get();
    // Why not in forward_pass mode: such a Begin comes before the password is checked
    // (review H1: it starts and writes nothing), so it neither uses a window nor shows
    // whether one is open.
    let Some(key) = Key::of(ctx).filter(|_| window > 0 && caller.uid == 0 && !ctx.forward_pass)
    else {
        return Ok(None);
    };
    if !record
        .remembered
        .iter()
        .any(|r| key.matches(r) && live(r, record, window, now))
    {
        return Ok(None);
    }
    // Decided again inside the transaction: a lock, a reset or a failure between the load
    // and now wins.
    let hit = core.update(account, |r| {
        let locked = locked_message(lockout::state(r, now, &policy), now).is_some();
        let Some(at) = r
            .remembered
            .iter()
            .filter(|e| key.matches(e) && live(e, r, window, now))
            .map(|e| e.at)
            .max()
            .filter(|_| r.enrolled() && !locked)
        else {
            return (Write::Keep, Ok(None));
        };
        lockout::note_success(r, now);
        r.note(
            now,
            EventKind::Success,
            format!("second factor remembered (window of {window} s)"),
            &Source::login(ctx, account).with_method("remembered"),
        );
        (Write::Save, Ok(Some(at)))
    })?;
    let Some(at) = hit else { return Ok(None) };
    audit(
        account,
        ctx,
        caller,
        &format!(
            "success (service rule remember_seconds={window}, second factor at {} s ago)",
            now.0.saturating_sub(at.0)
        ),
    );
    Ok(Some(messages::done(Verdict::Success, String::new())))
}

/// Whether entry `e` still counts: inside the `window` in force and younger than the last
/// failed attempt.
fn live(e: &Remembered, record: &Record, window: u64, now: UnixTime) -> bool {
    now < e.at.plus(window)
        && e.at <= now
        && record.last_failure.is_none_or(|f| f < e.at)
        && e.factors == factors_stamp(record)
}

/// A second factor was just accepted for this login: remember it when the service has a
/// window, the caller is root, the login has a key and is not in `forward_pass` mode. Called inside the login's store
/// transaction (saved with the success); drops entries that no longer count.
pub fn remember(
    record: &mut Record,
    config: &Config,
    caller: &Caller,
    ctx: &LoginContext,
    now: UnixTime,
) {
    prune(record, config, now);
    let window = rule(config, &ctx.service).map_or(0, |r| r.remember_seconds.get());
    // Why not in forward_pass mode: there the code is checked before the password (review
    // H1: such a login starts nothing), so a right code says nothing of the password yet.
    let Some(key) = Key::of(ctx).filter(|_| window > 0 && caller.uid == 0 && !ctx.forward_pass)
    else {
        return;
    };
    record.remembered.retain(|r| !key.matches(r));
    while record.remembered.len() >= MAX_REMEMBERED {
        record.remembered.remove(0);
    }
    record.remembered.push(Remembered {
        host: key.host,
        service: key.service,
        rhost: key.rhost,
        tty: key.tty,
        session: key.session,
        at: now,
        factors: factors_stamp(record),
    });
    log::info!(
        "user={} service={} rhost={} tty={} session={} action=remember seconds={window}",
        field(&record.user),
        field(&ctx.service),
        field(&ctx.rhost),
        field(&ctx.tty),
        ctx.audit_session
            .map_or_else(|| "-".to_owned(), |s| s.to_string())
    );
}

/// Drop the entries that no longer count under `config` at `now`.
pub fn prune(record: &mut Record, config: &Config, now: UnixTime) {
    let last_failure = record.last_failure;
    record.remembered.retain(|e| {
        let window = rule(config, &e.service).map_or(0, |r| r.remember_seconds.get());
        now < e.at.plus(window) && e.at <= now && last_failure.is_none_or(|f| f < e.at)
    });
}

/// The entries that count now, with the end of each window, for `user show`.
pub fn active(record: &Record, config: &Config, now: UnixTime) -> Vec<(Remembered, UnixTime)> {
    record
        .remembered
        .iter()
        .filter_map(|e| {
            let window = rule(config, &e.service).map_or(0, |r| r.remember_seconds.get());
            live(e, record, window, now).then(|| (e.clone(), e.at.plus(window)))
        })
        .collect()
}
