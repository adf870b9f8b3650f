// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's operations: login conversations and self-service, over the store.
//!
//! Every operation on a user's record runs under that user's lock, so count-and-check is
//! atomic per user; different users never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use twostep_config::Config;
use twostep_proto::{limits, Accept, Step, Verdict};

use super::lockout::{self, LockPolicy, LockState};
use super::record::{Pending, Record};
use super::store::Store;
use super::totp::{self, Check};
use super::users::{self, Account};
use super::{authz, Error, UnixTime};

/// How long a login prompt waits for its answer.
const SESSION_SECONDS: u64 = 300;
/// Login sessions in flight, in all.
const MAX_SESSIONS: usize = 4096;
/// Login sessions in flight per non-root caller uid.
const MAX_SESSIONS_PER_UID: usize = 16;

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
        use twostep_proto::login::{CTX_RHOST, CTX_SERVICE, CTX_TTY};
        Ok(LoginContext {
            service: get(CTX_SERVICE)?,
            rhost: get(CTX_RHOST)?,
            tty: get(CTX_TTY)?,
        })
    }
}

struct Session {
    caller: Caller,
    user: Account,
    ctx: LoginContext,
    expires: UnixTime,
}

/// What `enroll_begin` hands the user, once.
pub struct PendingInfo {
    pub secret_base32: String,
    pub uri: String,
    pub algorithm: &'static str,
    pub digits: u8,
    pub period: u64,
    pub expires: UnixTime,
}

/// The state `status` reports.
#[derive(Debug, PartialEq, Eq)]
pub struct Status {
    pub enrolled: bool,
    pub pending: bool,
    pub failures: u32,
    /// 0: not locked; `u64::MAX`: until an admin unlocks.
    pub locked_until: u64,
    pub last_success: u64,
    pub last_failure: u64,
}

pub struct Core {
    config: Config,
    issuer: String,
    store: Store,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    sessions: Mutex<HashMap<String, Session>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        Ok(Core {
            config,
            issuer,
            store,
            locks: Mutex::new(HashMap::new()),
            sessions: Mutex::new(HashMap::new()),
        })
    }

    fn lock_policy(&self) -> LockPolicy {
        LockPolicy::from_config(&self.config.lockout)
    }

    fn digits(&self) -> u8 {
        u8::try_from(self.config.totp.digits.get()).unwrap_or(6)
    }

    /// Run `f` under `user`'s lock.
    fn with_user<T>(&self, user: &str, f: impl FnOnce() -> T) -> T {
        let m = Arc::clone(lock(&self.locks).entry(user.to_owned()).or_default());
        let _held = lock(&m);
        f()
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
        let account = users::by_name(user)?;
        authz::may_run_login(caller.uid, &account)?;
        let record = self.with_user(&account.name, || self.store.load(&account.name))?;
        let Some(record) = record.filter(|r| r.totp.is_some()) else {
            audit(&account, &ctx, caller, "not-enrolled");
            return Ok((String::new(), done(Verdict::NotEnrolled, String::new())));
        };
        if let Some(msg) = locked_message(lockout::state(&record, now, &self.lock_policy()), now) {
            audit(&account, &ctx, caller, "locked");
            return Ok((String::new(), done(Verdict::Locked, msg)));
        }
        let id = self.new_session(caller, account, ctx, now)?;
        let step = Step::Prompt {
            message: String::new(),
            prompt: "Verification code: ".into(),
            accept: Accept::Code {
                digits: self.digits(),
            },
        };
        Ok((id, step))
    }

    fn new_session(
        &self,
        caller: &Caller,
        user: Account,
        ctx: LoginContext,
        now: UnixTime,
    ) -> Result<String, Error> {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.expires > now);
        let mine = sessions
            .values()
            .filter(|s| s.caller.uid == caller.uid)
            .count();
        if sessions.len() >= MAX_SESSIONS || (caller.uid != 0 && mine >= MAX_SESSIONS_PER_UID) {
            return Err(Error::Busy("too many login conversations in flight".into()));
        }
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw).map_err(|e| Error::Busy(format!("random source: {e}")))?;
        let id = hex::encode(raw);
        sessions.insert(
            id.clone(),
            Session {
                caller: caller.clone(),
                user,
                ctx,
                expires: now.plus(SESSION_SECONDS),
            },
        );
        Ok(id)
    }

    /// Answer the prompt of session `id`. The attempt is charged durably before the code
    /// is evaluated; a locked user's code is not evaluated.
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
            match sessions.get(id) {
                Some(s) if s.caller == *caller && s.expires > now => sessions.remove(id),
                _ => None,
            }
        }
        .ok_or(Error::NoSession)?;
        let Session { user, ctx, .. } = session;
        let policy = self.lock_policy();
        let window = self.config.totp.window.get();
        let (verdict, message, outcome) = self.with_user(&user.name, || {
            let Some(mut record) = self.store.load(&user.name)? else {
                return Ok((Verdict::NotEnrolled, String::new(), "not-enrolled"));
            };
            let Some(key) = record.totp.clone() else {
                return Ok((Verdict::NotEnrolled, String::new(), "not-enrolled"));
            };
            if let Some(msg) = locked_message(lockout::state(&record, now, &policy), now) {
                return Ok((Verdict::Locked, msg, "locked"));
            }
            let charge = lockout::charge(&mut record, now, &policy);
            self.store.save(&record)?;
            let code = if answer.len() <= limits::MAX_ANSWER_LEN {
                answer
            } else {
                b""
            };
            let check = totp::check(&key, code, now, window, record.last_step).map_err(|e| {
                Error::CorruptRecord {
                    user: user.name.clone(),
                    reason: e,
                }
            })?;
            match check {
                Check::Accepted { step } => {
                    lockout::succeed(&mut record, charge, now);
                    record.last_step = Some(step);
                    self.store.save(&record)?;
                    Ok((Verdict::Success, String::new(), "success"))
                }
                Check::Replayed | Check::Wrong => {
                    let (text, outcome) = if check == Check::Replayed {
                        (
                            "That code was already used; wait for the next one.",
                            "replayed",
                        )
                    } else {
                        ("Wrong verification code.", "wrong-code")
                    };
                    let msg = match locked_message(lockout::state(&record, now, &policy), now) {
                        Some(lock) => format!("{text} {lock}"),
                        None => text.to_owned(),
                    };
                    Ok((Verdict::Denied, msg, outcome))
                }
            }
        })?;
        audit(&user, &ctx, caller, outcome);
        Ok(done(verdict, message))
    }

    /// Start (or restart) enrolment of the caller's own account.
    ///
    /// # Errors
    /// The caller has no account, already has an authenticator, or the write fails.
    pub fn enroll_begin(&self, caller: &Caller, now: UnixTime) -> Result<PendingInfo, Error> {
        let account = users::by_uid(caller.uid)?;
        let t = &self.config.totp;
        let key =
            totp::new_key(t.algorithm, self.digits(), t.period.get(), now).map_err(Error::Busy)?;
        let uri =
            totp::otpauth_uri(&key, &self.issuer, &account.name).map_err(Error::InvalidArgument)?;
        let expires = now.plus(self.config.enrollment.pending_seconds.get());
        self.with_user(&account.name, || {
            let mut record = self
                .store
                .load(&account.name)?
                .unwrap_or_else(|| Record::new(&account.name));
            if record.totp.is_some() {
                return Err(Error::AlreadyEnrolled(account.name.clone()));
            }
            record.pending = Some(Pending {
                key: key.clone(),
                expires,
            });
            self.store.save(&record)
        })?;
        log::info!("user={} action=enroll-begin", account.name);
        Ok(PendingInfo {
            secret_base32: key.secret.0.clone(),
            uri,
            algorithm: key.algorithm.as_str(),
            digits: key.digits,
            period: key.period,
            expires,
        })
    }

    /// Confirm the caller's pending enrolment with a current code.
    ///
    /// # Errors
    /// No (live) pending enrolment, a wrong code, a failed write.
    pub fn enroll_confirm(&self, caller: &Caller, code: &[u8], now: UnixTime) -> Result<(), Error> {
        let account = users::by_uid(caller.uid)?;
        let window = self.config.totp.window.get();
        let code = if code.len() <= limits::MAX_ANSWER_LEN {
            code
        } else {
            b""
        };
        self.with_user(&account.name, || {
            let mut record = self
                .store
                .load(&account.name)?
                .ok_or_else(|| Error::NoPendingEnrollment(account.name.clone()))?;
            let pending = match record.pending.take() {
                Some(p) if p.expires > now => p,
                _ => return Err(Error::NoPendingEnrollment(account.name.clone())),
            };
            let check = totp::check(&pending.key, code, now, window, record.last_step)
                .map_err(Error::InvalidArgument)?;
            let Check::Accepted { step } = check else {
                return Err(Error::WrongCode(account.name.clone()));
            };
            record.totp = Some(pending.key);
            record.last_step = Some(step);
            self.store.save(&record)
        })?;
        log::info!("user={} action=enroll-confirm outcome=active", account.name);
        Ok(())
    }

    /// The caller's own state.
    ///
    /// # Errors
    /// The caller has no account or the record is unreadable.
    pub fn status(&self, caller: &Caller, now: UnixTime) -> Result<Status, Error> {
        let account = users::by_uid(caller.uid)?;
        let record = self
            .with_user(&account.name, || self.store.load(&account.name))?
            .unwrap_or_else(|| Record::new(&account.name));
        let locked_until = match lockout::state(&record, now, &self.lock_policy()) {
            LockState::Open => 0,
            LockState::Until(t) => t.0,
            LockState::UntilUnlocked => u64::MAX,
        };
        Ok(Status {
            enrolled: record.totp.is_some(),
            pending: record.pending.as_ref().is_some_and(|p| p.expires > now),
            failures: record.failures,
            locked_until,
            last_success: record.last_success.map_or(0, |t| t.0),
            last_failure: record.last_failure.map_or(0, |t| t.0),
        })
    }
}

fn done(verdict: Verdict, message: String) -> Step {
    Step::Done { verdict, message }
}

fn locked_message(state: LockState, now: UnixTime) -> Option<String> {
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

/// One audit line per login outcome: who, from where, what. Never a code.
fn audit(user: &Account, ctx: &LoginContext, caller: &Caller, outcome: &str) {
    log::info!(
        "user={} service={} rhost={} tty={} caller_uid={} outcome={}",
        user.name,
        or_dash(&ctx.service),
        or_dash(&ctx.rhost),
        or_dash(&ctx.tty),
        caller.uid,
        outcome
    );
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twostep_config::Bounded;

    const T0: UnixTime = UnixTime(1_800_000_000);

    fn core(dir: &std::path::Path) -> Core {
        let mut c = Config::default();
        c.daemon.state_dir = dir.join("state");
        c.lockout.max_failures = Bounded::new(3);
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
        let p = core.enroll_begin(&root(), T0).unwrap();
        assert!(p.uri.starts_with("otpauth://totp/test:root?"));
        core.enroll_confirm(&root(), code(&p.secret_base32, T0).as_bytes(), T0)
            .unwrap();
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
            .join(format!("{}.json", hex::encode("root")));
        std::fs::write(&path, b"{garbage").unwrap();
        let r = c.begin_login(&root(), "root", LoginContext::default(), T0);
        assert!(matches!(r, Err(Error::CorruptRecord { .. })));
        assert!(matches!(
            c.enroll_begin(&root(), T0),
            Err(Error::CorruptRecord { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"{garbage");
    }

    #[test]
    fn enrolment_needs_the_right_code_in_time() {
        let d = tempfile::tempdir().unwrap();
        let c = core(d.path());
        let p = c.enroll_begin(&root(), T0).unwrap();
        assert!(matches!(
            c.enroll_confirm(&root(), b"000000", T0),
            Err(Error::WrongCode(_))
        ));
        assert!(!c.status(&root(), T0).unwrap().enrolled);
        let late = T0.plus(601);
        let r = c.enroll_confirm(&root(), code(&p.secret_base32, late).as_bytes(), late);
        assert!(matches!(r, Err(Error::NoPendingEnrollment(_))));
        // Starting again replaces the pending key.
        let p2 = c.enroll_begin(&root(), late).unwrap();
        assert_ne!(p2.secret_base32, p.secret_base32);
        c.enroll_confirm(&root(), code(&p2.secret_base32, late).as_bytes(), late)
            .unwrap();
        assert!(matches!(
            c.enroll_begin(&root(), late),
            Err(Error::AlreadyEnrolled(_))
        ));
    }
}
