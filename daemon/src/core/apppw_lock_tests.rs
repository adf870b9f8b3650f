// SPDX-License-Identifier: MIT OR Apache-2.0
//! Review M4 through the core's login conversation: wrong app passwords lock app passwords
//! only (their own counter, `[app_passwords] max_failures`), never the codes; the argon2
//! check runs outside the store transaction, and an entry revoked while it ran is not
//! used. [`FakeAccounts`] and a [`MemoryStore`] behind a wrapper that times transactions.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twostep_config::{Bounded, Config};
use twostep_proto::{Step, Verdict};

use super::apppw::{NewAppPassword, LONGEST};
use super::audit::LoginContext;
use super::record::Record;
use super::store::memory::MemoryStore;
use super::store::{Store, Write};
use super::test_support::{caller, code};
use super::users::{Account, FakeAccounts};
use super::{Core, Error, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

type Hook = Box<dyn FnOnce(&mut Record) + Send>;

/// A memory store that remembers its longest transaction, and can change a record just
/// before the next transaction (as another host would, between a read and a write).
#[derive(Default)]
struct Watched {
    inner: MemoryStore,
    longest: Mutex<Duration>,
    before_next: Mutex<Option<Hook>>,
}

impl Store for Watched {
    fn load(&self, who: &Account) -> Result<Option<Record>, Error> {
        self.inner.load(who)
    }
    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error> {
        self.inner.load_uid(uid)
    }
    fn list(&self) -> Result<Vec<u32>, Error> {
        self.inner.list()
    }
    fn remove(&self, uid: u32) -> Result<(), Error> {
        self.inner.remove(uid)
    }
    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> Write,
    ) -> Result<(), Error> {
        let hook = self.before_next.lock().unwrap().take();
        if let Some(hook) = hook {
            let mut hook = Some(hook);
            self.inner.transact(who, &mut |slot| {
                if let (Some(r), Some(h)) = (slot.as_mut(), hook.take()) {
                    h(r);
                }
                Write::Save
            })?;
        }
        let start = Instant::now();
        let done = self.inner.transact(who, f);
        let took = start.elapsed();
        let mut longest = self.longest.lock().unwrap();
        *longest = (*longest).max(took);
        done
    }
    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error> {
        self.inner.replace_vanished(who, fresh)
    }
}

fn core(store: &Arc<Watched>) -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(3);
    c.app_passwords.services = vec!["imap-t".into()];
    c.app_passwords.max_failures = Bounded::new(4);
    c.app_passwords.lockout_seconds = Bounded::new(600);
    let accounts = FakeAccounts::new().with("alice", 1000, &["alice"]);
    Core::with_parts(c, Box::new(Arc::clone(store)), Box::new(accounts))
}

fn enrol(core: &Core) -> String {
    let p = core.enroll_begin(&caller(1000), b"", T0).unwrap();
    core.enroll_confirm(&caller(1000), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    p.secret_base32.clone()
}

fn create(core: &Core, secret: &str, at: UnixTime) -> String {
    let services = vec!["imap-t".to_owned()];
    let new = NewAppPassword {
        name: "mail",
        services: &services,
        expires_in: LONGEST,
    };
    core.app_password_create(&caller(1000), &new, code(secret, at).as_bytes(), at)
        .unwrap()
        .password
        .to_string()
}

fn ctx(app_password: bool) -> LoginContext {
    LoginContext {
        service: if app_password { "imap-t" } else { "sshd" }.into(),
        rhost: "192.0.2.9".into(),
        tty: String::new(),
        app_password,
        forward_pass: false,
        audit_session: None,
        caller_uid: 0,
    }
}

/// One login as root (`app_password`: in app-password mode at `imap-t`, else a code login
/// at `sshd`): the verdict and the text.
fn login(core: &Core, app_password: bool, answer: &[u8], now: UnixTime) -> (Verdict, String) {
    let (id, step) = core
        .begin_login(&caller(0), "alice", ctx(app_password), now)
        .unwrap();
    let step = match step {
        Step::Prompt { .. } => core.answer(&caller(0), &id, answer, now).unwrap(),
        done => done,
    };
    match &step {
        Step::Done {
            verdict, message, ..
        } => (*verdict, message.clone()),
        Step::Prompt { .. } => panic!("a second prompt"),
    }
}

/// A core over a watched store, alice enrolled at `T0` with an app password for `imap-t`
/// made at `T0 + 30`: the store, the core, her TOTP secret, the app password.
fn setup() -> (Arc<Watched>, Core, String, String) {
    let store = Arc::new(Watched::default());
    let core = core(&store);
    let secret = enrol(&core);
    let pw = create(&core, &secret, T0.plus(30));
    (store, core, secret, pw)
}

#[test]
fn wrong_app_passwords_lock_app_passwords_and_never_the_codes() {
    let (_store, core, secret, pw) = setup();
    let t1 = T0.plus(30);

    // More wrong app passwords than `[lockout] max_failures` (3): the codes' count stays 0.
    for i in 0..3 {
        let (v, text) = login(
            &core,
            true,
            b"aaaaa-bbbbb-ccccc-ddddd-eeeee-fffff",
            t1.plus(i),
        );
        assert_eq!((v, text.as_str()), (Verdict::Denied, ""));
    }
    let (v, text) = login(&core, true, b"wrong", t1.plus(3));
    assert_eq!(v, Verdict::Denied);
    assert!(
        text.contains("app passwords are locked for 600 more seconds"),
        "{text}"
    );
    let s = core.status(&caller(1000), t1.plus(3)).unwrap();
    assert_eq!(
        (s.failures, s.app_password_failures, s.locked_until),
        (0, 4, 0)
    );
    assert_eq!(s.app_password_locked_until, t1.plus(603).0);

    // Locked: the right app password is refused (at Begin, before any hash) ...
    let (v, text) = login(&core, true, pw.as_bytes(), t1.plus(4));
    assert_eq!(v, Verdict::Locked);
    assert!(text.contains("app passwords are locked"), "{text}");
    // ... and the codes work: a code login at sshd.
    let (v, _) = login(
        &core,
        false,
        code(&secret, t1.plus(60)).as_bytes(),
        t1.plus(60),
    );
    assert_eq!(v, Verdict::Success);

    // After the lock: the right one opens, and the count starts again.
    let after = t1.plus(603);
    assert_eq!(login(&core, true, pw.as_bytes(), after).0, Verdict::Success);
    let s = core.status(&caller(1000), after).unwrap();
    assert_eq!(
        (s.app_password_failures, s.app_password_locked_until),
        (0, 0)
    );
}

#[test]
fn a_user_locked_by_wrong_codes_cannot_use_app_passwords_and_unlock_clears_both() {
    let (_store, core, _secret, pw) = setup();
    let t1 = T0.plus(30);
    for _ in 0..4 {
        let _ = login(&core, true, b"wrong", t1);
    }
    for _ in 0..3 {
        assert_eq!(login(&core, false, b"000000", t1).0, Verdict::Denied);
    }
    assert_eq!(login(&core, true, pw.as_bytes(), t1).0, Verdict::Locked);
    core.admin_act(&caller(0), "alice", super::admin::Action::Unlock, t1)
        .unwrap();
    let s = core.status(&caller(1000), t1).unwrap();
    assert_eq!((s.failures, s.app_password_failures), (0, 0));
    assert_eq!(login(&core, true, pw.as_bytes(), t1).0, Verdict::Success);
}

#[test]
fn the_hash_runs_outside_the_transaction_and_a_revoke_meanwhile_wins() {
    let (store, core, _secret, pw) = setup();
    let t1 = T0.plus(30);

    // What one check costs, for comparison (same parameters, same pool).
    let started = Instant::now();
    let _ = super::recovery::verify(
        b"x",
        &super::recovery::hash(b"y", core.hashes()).unwrap(),
        core.hashes(),
    );
    let one_hash = started.elapsed();

    *store.longest.lock().unwrap() = Duration::ZERO;
    assert_eq!(login(&core, true, pw.as_bytes(), t1).0, Verdict::Success);
    assert_eq!(login(&core, true, b"wrong", t1).0, Verdict::Denied);
    let longest = *store.longest.lock().unwrap();
    assert!(
        longest * 4 < one_hash,
        "a transaction took {longest:?}; one hash takes {one_hash:?}"
    );

    // Revoked by someone else between the read and the write: refused, not charged, not
    // marked as used.
    let before = core
        .status(&caller(1000), t1)
        .unwrap()
        .app_password_failures;
    *store.before_next.lock().unwrap() = Some(Box::new(move |r: &mut Record| {
        for e in &mut r.app_passwords {
            e.revoked = Some(t1);
        }
    }));
    let t2 = t1.plus(5);
    let (v, text) = login(&core, true, pw.as_bytes(), t2);
    assert_eq!((v, text.as_str()), (Verdict::Denied, ""));
    let s = core.status(&caller(1000), t2).unwrap();
    assert_eq!(s.app_password_failures, before);
    let list = core.app_passwords(&caller(1000)).unwrap();
    assert!(
        list[0].last_used.as_ref().is_some_and(|u| u.at == t1),
        "{list:?}"
    );
}
