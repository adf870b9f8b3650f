// SPDX-License-Identifier: MIT OR Apache-2.0
//! An admin carries a user's enrolment over from another 2FA module (google-authenticator,
//! pam_oath; the files are read and parsed by `twostepctl`, see `crate::import`), so the
//! user keeps their authenticator entries and is not asked to enrol again.
//!
//! Nothing the CLI sends is trusted: every key is checked as an enrolment's would be
//! ([`totp::usable`]: 128 bits or more, digits, period), its digits must be those this
//! host prompts for, names follow [`record::check_name`], and one-time codes must be
//! 8-digit scratch codes. The user's record is then written in ONE transaction: either
//! everything is imported or nothing is. A user who already has an authenticator is left
//! alone unless `replace`; a replace never lowers a replay mark of a key the user keeps,
//! and never revives a one-time code already spent in twostep.

use std::fmt;

use subtle::ConstantTimeEq;
use twostep_config::Algorithm;
use zeroize::Zeroizing;

use super::admin::authorize_admin;
use super::audit::field;
use super::engine::Core;
use super::record::{self, Authenticator, TotpKey};
use super::recovery::{self, StoredCode};
use super::store::Write;
use super::{totp, Caller, Error, UnixTime};
use twostep_proto::{MAX_IMPORT_CODES, MAX_IMPORT_KEYS};

/// One key to import. `Debug` never shows the secret.
#[derive(Clone)]
pub struct ImportedKey {
    /// The authenticator's name in twostep.
    pub name: String,
    /// The raw shared secret.
    pub secret: Zeroizing<Vec<u8>>,
    pub algorithm: Algorithm,
    pub digits: u8,
    /// Seconds per time step.
    pub period: u64,
    /// The last time step (of `period`) the old module accepted, if it kept one.
    pub last_step: Option<u64>,
}

impl fmt::Debug for ImportedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImportedKey")
            .field("name", &self.name)
            .field("secret", &"[redacted]")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .field("last_step", &self.last_step)
            .finish()
    }
}

/// One user's enrolment as another module kept it.
#[derive(Clone, Debug, Default)]
pub struct Imported {
    /// 1 to [`MAX_IMPORT_KEYS`] keys; each becomes an authenticator.
    pub keys: Vec<ImportedKey>,
    /// Unused one-time (scratch) codes, 8 digits each; at most [`MAX_IMPORT_CODES`]. They
    /// become recovery codes, stored hashed.
    pub codes: Vec<Zeroizing<String>>,
}

/// What an import did or, on a dry run, would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The user had no authenticator; the imported enrolment is theirs now.
    Imported,
    /// The user's enrolment was replaced (`replace`).
    Replaced,
}

/// The report of one import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
    /// Authenticators the user has after the import.
    pub authenticators: usize,
    /// Unused recovery codes the user has after the import.
    pub recovery_codes: usize,
    /// The host's window, in steps either side of now.
    pub window: u64,
    /// The host's failures before a lock.
    pub max_failures: u32,
    /// What differs for the user from before, one sentence each (never a secret).
    pub notes: Vec<String>,
}

impl Outcome {
    /// The outcome's name on the wire and in logs.
    pub fn name(self, dry_run: bool) -> &'static str {
        use twostep_proto::import_key as k;
        match (self, dry_run) {
            (Outcome::Imported, false) => k::IMPORTED,
            (Outcome::Replaced, false) => k::REPLACED,
            (Outcome::Imported, true) => k::WOULD_IMPORT,
            (Outcome::Replaced, true) => k::WOULD_REPLACE,
        }
    }
}

/// The keys of `imported` as twostep keys, each checked as an enrolment's would be.
///
/// # Errors
/// [`Error::InvalidArgument`] saying which key and why (never the secret).
fn checked_keys(
    imported: &Imported,
    host_digits: u8,
    now: UnixTime,
) -> Result<Vec<(String, TotpKey, Option<u64>)>, Error> {
    let bad = |msg: String| Err(Error::InvalidArgument(msg));
    if imported.keys.is_empty() {
        return bad("an import needs at least one key".into());
    }
    if imported.keys.len() > MAX_IMPORT_KEYS {
        return bad(format!(
            "{} keys: at most {MAX_IMPORT_KEYS} authenticators per user",
            imported.keys.len()
        ));
    }
    let mut keys: Vec<(String, TotpKey, Option<u64>)> = Vec::with_capacity(imported.keys.len());
    for k in &imported.keys {
        record::check_name(&k.name).map_err(Error::InvalidArgument)?;
        if keys
            .iter()
            .any(|(n, ..)| n.to_lowercase() == k.name.to_lowercase())
        {
            return bad(format!("two keys are named {:?}", k.name));
        }
        if k.digits != host_digits {
            return bad(format!(
                "key {:?} makes {}-digit codes; this host asks for {host_digits} digits \
                 ([totp] digits)",
                k.name, k.digits
            ));
        }
        let secret = totp::secret_from_raw(&k.secret)
            .map_err(|_| Error::Internal("base32 encoding".into()))?;
        let key = TotpKey {
            secret,
            algorithm: k.algorithm,
            digits: k.digits,
            period: k.period,
            created: now,
        };
        if let Err(e) = totp::usable(&key) {
            return bad(format!(
                "key {:?} is not usable ({e}); twostep needs a secret of at least 128 bits, \
                 6 to 8 digits and a non-zero period",
                k.name
            ));
        }
        keys.push((k.name.clone(), key, k.last_step));
    }
    Ok(keys)
}

/// The one-time codes of `imported`, checked: 8 digits each, none twice.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the code's position (never the code).
fn checked_codes(imported: &Imported) -> Result<Vec<&[u8]>, Error> {
    if imported.codes.len() > MAX_IMPORT_CODES {
        return Err(Error::InvalidArgument(format!(
            "{} one-time codes: at most {MAX_IMPORT_CODES}",
            imported.codes.len()
        )));
    }
    let mut codes: Vec<&[u8]> = Vec::with_capacity(imported.codes.len());
    for (i, c) in imported.codes.iter().enumerate() {
        let c = c.as_bytes();
        if recovery::scratch_code(c).is_none() {
            return Err(Error::InvalidArgument(format!(
                "one-time code {} is not 8 digits (10000000 to 99999999)",
                i + 1
            )));
        }
        if codes.iter().any(|d| bool::from(d.ct_eq(c))) {
            return Err(Error::InvalidArgument(format!(
                "one-time code {} appears twice",
                i + 1
            )));
        }
        codes.push(c);
    }
    Ok(codes)
}

/// Whether two keys share a secret (compared as raw bytes, in constant time).
fn same_secret(a: &TotpKey, b: &TotpKey) -> bool {
    let raw = |k: &TotpKey| {
        totp_rs::Secret::Encoded(k.secret.0.clone())
            .to_bytes()
            .map(Zeroizing::new)
    };
    match (raw(a), raw(b)) {
        (Ok(a), Ok(b)) => a.len() == b.len() && bool::from(a.ct_eq(&b)),
        _ => false,
    }
}

/// Import `imported` as `user`'s enrolment (root only).
///
/// Why root and not the admin group: an import installs keys and one-time codes the
/// importer knows, for any account (root's and other admins' included) and without the
/// user confirming anything — more than an admin-group member may do elsewhere (an address
/// an admin sets, the user confirms). Reading the users' 0600 files needs root anyway.
/// The user is told by mail (an authenticator added by an administrator) where mail is on.
///
/// # Errors
/// [`Error::AccessDenied`] unless root; [`Error::UnknownUser`]; [`Error::InvalidArgument`]
/// for anything unusable in `imported`; [`Error::AlreadyEnrolled`] when the user has an
/// authenticator and not `replace`; an unreadable record or a failed write (then nothing
/// was written).
pub fn import(
    core: &Core,
    caller: &Caller,
    user: &str,
    imported: &Imported,
    replace: bool,
    dry_run: bool,
    now: UnixTime,
) -> Result<Report, Error> {
    // Non-admins get the one refusal every admin method gives; admins other than root
    // are told why this one is root's.
    authorize_admin(core, caller)?;
    if caller.uid != 0 {
        return Err(Error::AccessDenied(
            "importing enrolments needs root: it installs keys the importer knows".into(),
        ));
    }
    let account = core.accounts().by_name(user)?;
    let by = super::audit::Source::admin(core.accounts(), caller);
    let settings = core.settings();
    let keys = checked_keys(imported, settings.digits(), now)?;
    let codes = checked_codes(imported)?;
    let config = core.config();
    let window = config.totp.window.get();
    // Why a look first: hashing is the slow part, and an import run again meets every
    // user enrolled (the transaction checks again).
    if !replace && core.load(&account)?.is_some_and(|r| r.enrolled()) {
        return Err(Error::AlreadyEnrolled(account.name.clone()));
    }
    // Why hashed before the transaction: argon2 takes a while, and the user's logins
    // wait for the lock.
    let hashed: Vec<StoredCode> = if dry_run {
        Vec::new()
    } else {
        recovery::import_scratch(&codes, core.hashes())
            .map_err(|e| Error::Internal(e.to_string()))?
    };
    let report = core.update(&account, |r| {
        let outcome = if r.enrolled() {
            if !replace {
                return (
                    Write::Keep,
                    Err(Error::AlreadyEnrolled(account.name.clone())),
                );
            }
            Outcome::Replaced
        } else {
            Outcome::Imported
        };
        let mut notes = Vec::new();
        let authenticators: Vec<Authenticator> = keys
            .iter()
            .map(|(name, key, mark)| {
                // Why: the file is not updated by twostep logins, so a key the user keeps
                // may have been used here since the file's mark; never go back.
                let kept = r
                    .authenticators
                    .iter()
                    .filter(|a| a.key.period == key.period && same_secret(&a.key, key))
                    .filter_map(|a| a.last_step)
                    .max();
                let last_step = match (*mark, kept) {
                    (Some(m), Some(k)) => Some(m.max(k)),
                    (m, k) => m.or(k),
                };
                let current = now.0 / key.period;
                if let Some(s) = last_step.filter(|s| *s > current.saturating_add(window)) {
                    notes.push(format!(
                        "key {name:?}: its last used time step is {} step(s) ahead of this \
                         host's clock; its codes are refused until then",
                        s - current
                    ));
                }
                Authenticator {
                    name: name.clone(),
                    key: key.clone(),
                    added: now,
                    last_used: None,
                    last_step,
                }
            })
            .collect();
        // Why: the old module's file still lists a code the user spent here; it stays
        // spent (then it is the time it was spent).
        let spent: Vec<Option<UnixTime>> = codes
            .iter()
            .map(|code| match outcome {
                Outcome::Imported => None,
                Outcome::Replaced => recovery::find_spent_scratch(code, &r.recovery, core.hashes())
                    .and_then(|i| r.recovery.get(i))
                    .and_then(|c| c.used),
            })
            .collect();
        if outcome == Outcome::Replaced {
            let dropped = recovery::left(&r.recovery);
            if dropped > 0 {
                notes.push(format!(
                    "{dropped} unused recovery code(s) of the twostep enrolment are dropped"
                ));
            }
        }
        let recovery_left = spent.iter().filter(|s| s.is_none()).count();
        let mut recovery = if dry_run { Vec::new() } else { hashed.clone() };
        for (new, used) in recovery.iter_mut().zip(&spent) {
            new.used = *used;
        }
        if recovery_left == 0 {
            notes.push(
                "no one-time codes: the user has no recovery code until they make some \
                 (twostepctl recovery-codes)"
                    .into(),
            );
        }
        let report = Report {
            outcome,
            dry_run,
            authenticators: authenticators.len(),
            recovery_codes: recovery_left,
            window,
            max_failures: settings.lock_policy().max_failures,
            notes,
        };
        if dry_run {
            return (Write::Keep, Ok(report));
        }
        r.authenticators = authenticators;
        r.recovery = recovery;
        r.pending = None;
        r.note(
            now,
            super::audit::EventKind::Enrol,
            format!(
                "enrolment {} by {} ({} authenticator(s), {} one-time code(s))",
                if outcome == Outcome::Replaced {
                    "replaced by an import"
                } else {
                    "imported"
                },
                by.actor_display(),
                report.authenticators,
                report.recovery_codes
            ),
            &by,
        );
        (Write::Save, Ok(report))
    })?;
    log::info!(
        "admin_uid={} admin={} user={} action=import outcome={}",
        caller.uid,
        field(&by.actor_display()),
        field(&account.name),
        report.outcome.name(dry_run)
    );
    if !dry_run {
        for (name, _, _) in &keys {
            let notice = super::mail::Notice::Authenticator {
                name: name.clone(),
                added: true,
                by: super::mail::By::Admin,
            };
            super::mail::notify_account(core, &account, notice);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use twostep_config::Config;
    use twostep_proto::{Step, Verdict};

    use super::*;
    use crate::core::audit::LoginContext;
    use crate::core::record::Record;
    use crate::core::store::memory::MemoryStore;
    use crate::core::store::Store;
    use crate::core::test_support::{caller, code};
    use crate::core::users::FakeAccounts;

    const T0: UnixTime = UnixTime(1_800_000_000);
    const SECRET: &[u8] = b"12345678901234567890";

    fn key(name: &str, secret: &[u8], last_step: Option<u64>) -> ImportedKey {
        ImportedKey {
            name: name.into(),
            secret: Zeroizing::new(secret.to_vec()),
            algorithm: Algorithm::SHA1,
            digits: 6,
            period: 30,
            last_step,
        }
    }

    fn with_keys(keys: Vec<ImportedKey>) -> Imported {
        Imported {
            keys,
            codes: Vec::new(),
        }
    }

    fn core() -> (Core, Arc<MemoryStore>) {
        let accounts = FakeAccounts::new()
            .with("root", 0, &["root"])
            .with("alice", 1000, &["alice"])
            .with("bob", 1001, &["bob"])
            .with("carol", 1002, &["carol", "twostep-admins"]);
        let store = Arc::new(MemoryStore::new());
        let mut config = Config::default();
        config.policy.admin_group = "twostep-admins".into();
        let core = Core::with_parts(config, Box::new(Arc::clone(&store)), Box::new(accounts));
        (core, store)
    }

    fn base32(raw: &[u8]) -> String {
        totp::secret_from_raw(raw).unwrap().0.clone()
    }

    /// One login of `user` (as root) answering `answer` at `now`: the verdict.
    fn login(core: &Core, user: &str, answer: &str, now: UnixTime) -> Verdict {
        let (id, step) = core
            .begin_login(&caller(0), user, LoginContext::default(), now)
            .unwrap();
        assert!(matches!(step, Step::Prompt { .. }), "{step:?}");
        match core
            .answer(&caller(0), &id, answer.as_bytes(), now)
            .unwrap()
        {
            Step::Done { verdict, .. } => verdict,
            Step::Prompt { .. } => panic!("a second prompt"),
        }
    }

    fn stored(core: &Core, store: &MemoryStore, user: &str) -> Option<Record> {
        store.load(&core.accounts().by_name(user).unwrap()).unwrap()
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let k = key("a", b"SECRETSECRETSECRET", None);
        let all = Imported {
            keys: vec![k.clone()],
            codes: vec![Zeroizing::new("12345678".into())],
        };
        let shown = format!("{k:?} {all:?}");
        assert!(!shown.contains("SECRETSECRET"), "{shown}");
        assert!(!shown.contains("83, 69"), "{shown}"); // nor its bytes
    }

    #[test]
    fn keys_are_checked_as_an_enrolment_would_be() {
        assert_eq!(
            checked_keys(&with_keys(vec![key("phone", SECRET, Some(5))]), 6, T0)
                .unwrap()
                .len(),
            1
        );
        let cases: Vec<(Imported, u8, &str)> = vec![
            (Imported::default(), 6, "at least one key"),
            (
                with_keys(vec![key("phone", &SECRET[..10], None)]),
                6,
                "128 bits",
            ),
            (
                with_keys(vec![key("phone", SECRET, None)]),
                8,
                "this host asks for 8 digits",
            ),
            (
                with_keys(vec![key("a", SECRET, None), key("A", SECRET, None)]),
                6,
                "two keys",
            ),
            (with_keys(vec![key("", SECRET, None)]), 6, "empty"),
            (
                with_keys(
                    (0..6)
                        .map(|i| key(&format!("k{i}"), SECRET, None))
                        .collect(),
                ),
                6,
                "at most 5",
            ),
        ];
        for (imported, digits, want) in cases {
            let e = checked_keys(&imported, digits, T0).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
            assert!(!e.contains("1234567890") && !e.contains("GEZDG"), "{e}");
        }
    }

    #[test]
    fn codes_must_be_eight_digits_and_distinct() {
        let with = |codes: &[&str]| Imported {
            keys: vec![],
            codes: codes
                .iter()
                .map(|c| Zeroizing::new((*c).to_owned()))
                .collect(),
        };
        assert_eq!(
            checked_codes(&with(&["12345678", "87654321"]))
                .unwrap()
                .len(),
            2
        );
        for (codes, want) in [
            (&["1234567"][..], "code 1 is not 8 digits"),
            (&["12345678", "01234567"][..], "code 2 is not 8 digits"),
            (&["12345678", "+2345678"][..], "code 2"),
            (&["12345678", "12345678"][..], "appears twice"),
        ] {
            let e = checked_codes(&with(codes)).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!e.contains("2345678"), "{e}");
        }
        let eleven: Vec<String> = (0..11).map(|i| format!("1000000{i}")).collect();
        let eleven: Vec<&str> = eleven.iter().map(String::as_str).collect();
        assert!(checked_codes(&with(&eleven)).is_err());
    }

    /// Review finding M3: an import installs keys the importer knows, so only root may —
    /// not a user, and not a member of the admin group either (who could otherwise take
    /// over root's second factor).
    #[test]
    fn only_root_imports() {
        let (core, store) = core();
        for (who, target) in [(1001, "alice"), (1002, "alice"), (1002, "root")] {
            let e = import(
                &core,
                &caller(who),
                target,
                &with_keys(vec![key("k", SECRET, None)]),
                true,
                false,
                T0,
            )
            .unwrap_err();
            assert!(
                matches!(e, Error::AccessDenied(_)),
                "{who} -> {target}: {e}"
            );
            assert!(stored(&core, &store, target).is_none());
        }
    }

    #[test]
    fn an_import_logs_in_with_the_same_codes_keeps_the_replay_mark_and_spends_codes_once() {
        let (core, store) = core();
        let now = T0;
        let step = now.0 / 30;
        let imported = Imported {
            // The old module last accepted the current step.
            keys: vec![key("google-authenticator", SECRET, Some(step))],
            codes: vec![
                Zeroizing::new("12345678".into()),
                Zeroizing::new("23456789".into()),
            ],
        };
        // A dry run writes nothing.
        let dry = import(&core, &caller(0), "alice", &imported, false, true, now).unwrap();
        assert_eq!(
            (dry.outcome, dry.dry_run, dry.recovery_codes),
            (Outcome::Imported, true, 2)
        );
        assert!(stored(&core, &store, "alice").is_none());
        let r = import(&core, &caller(0), "alice", &imported, false, false, now).unwrap();
        assert_eq!(
            (r.outcome, r.authenticators, r.recovery_codes),
            (Outcome::Imported, 1, 2)
        );
        let secret = base32(SECRET);
        // The step the old module used is refused; the next one logs in.
        assert_eq!(
            login(&core, "alice", &code(&secret, now), now),
            Verdict::Denied
        );
        let next = UnixTime(now.0 + 30);
        assert_eq!(
            login(&core, "alice", &code(&secret, next), next),
            Verdict::Success
        );
        // A scratch code logs in once.
        let later = UnixTime(now.0 + 300);
        assert_eq!(login(&core, "alice", "23456789", later), Verdict::Success);
        assert_eq!(login(&core, "alice", "23456789", later), Verdict::Denied);
        // Again: already enrolled, nothing changes.
        let before = stored(&core, &store, "alice");
        let e = import(&core, &caller(0), "alice", &imported, false, false, later).unwrap_err();
        assert!(matches!(e, Error::AlreadyEnrolled(_)), "{e}");
        assert_eq!(stored(&core, &store, "alice"), before);
        // A dry run of the replace counts the spent code out too, and writes nothing.
        let dry = import(&core, &caller(0), "alice", &imported, true, true, later).unwrap();
        assert_eq!((dry.outcome, dry.recovery_codes), (Outcome::Replaced, 1));
        assert_eq!(stored(&core, &store, "alice"), before);
        // Replace: the mark of the kept key does not go back, the spent code stays spent.
        let r = import(&core, &caller(0), "alice", &imported, true, false, later).unwrap();
        assert_eq!((r.outcome, r.recovery_codes), (Outcome::Replaced, 1));
        let after = stored(&core, &store, "alice").unwrap();
        assert_eq!(after.authenticators[0].last_step, Some(step + 1));
        assert_eq!(login(&core, "alice", "23456789", later), Verdict::Denied);
        assert_eq!(
            login(&core, "alice", &code(&secret, next), later),
            Verdict::Denied
        );
        let fresh = UnixTime(later.0 + 600);
        assert_eq!(login(&core, "alice", "12345678", fresh), Verdict::Success);
    }

    #[test]
    fn a_refused_import_writes_nothing() {
        let (core, store) = core();
        let bad = Imported {
            keys: vec![key("k", SECRET, None)],
            codes: vec![Zeroizing::new("1234".into())],
        };
        assert!(import(&core, &caller(0), "bob", &bad, false, false, T0).is_err());
        assert!(stored(&core, &store, "bob").is_none());
        let e = import(
            &core,
            &caller(0),
            "nobody",
            &with_keys(vec![key("k", SECRET, None)]),
            false,
            false,
            T0,
        )
        .unwrap_err();
        assert!(matches!(e, Error::UnknownUser(_)), "{e}");
    }
}
