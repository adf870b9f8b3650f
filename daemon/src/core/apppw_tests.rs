// SPDX-License-Identifier: MIT OR Apache-2.0
//! App passwords through the core's login conversation, with [`FakeAccounts`] and a
//! [`MemoryStore`]: create, use for its service, other services, expiry, revoke, lockout,
//! unknown users, admin views.

use std::sync::Arc;

use twostep_config::{Bounded, Config};
use twostep_proto::{Accept, Step, Verdict};

use super::apppw::{NewAppPassword, LONGEST, NEVER};
use super::audit::LoginContext;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, Error, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

fn core() -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(3);
    c.app_passwords.max_failures = Bounded::new(3);
    c.app_passwords.services = vec!["imap-t".into(), "smtp-t".into()];
    let accounts = FakeAccounts::new()
        .with("alice", 1000, &["alice"])
        .with("bob", 1001, &["bob"])
        .with("admin", 1002, &["admin"]);
    Core::with_parts(
        c,
        Box::new(Arc::new(MemoryStore::new())),
        Box::new(accounts),
    )
}

fn enrol(core: &Core, uid: u32) -> String {
    let p = core.enroll_begin(&caller(uid), b"", T0).unwrap();
    core.enroll_confirm(&caller(uid), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    p.secret_base32.clone()
}

fn ctx(service: &str) -> LoginContext {
    LoginContext {
        service: service.into(),
        rhost: "192.0.2.9".into(),
        tty: String::new(),
        app_password: true,
        forward_pass: false,
        audit_session: None,
        caller_uid: 0,
    }
}

/// One app-password login as root: the verdict.
fn login(core: &Core, user: &str, service: &str, password: &[u8], now: UnixTime) -> Verdict {
    let (id, step) = core
        .begin_login(&caller(0), user, ctx(service), now)
        .unwrap();
    let step = match step {
        Step::Prompt { accept, .. } => {
            assert_eq!(
                accept,
                Accept::Text {
                    max: 128,
                    echo: false
                }
            );
            core.answer(&caller(0), &id, password, now).unwrap()
        }
        done => done,
    };
    match step {
        Step::Done { verdict, .. } => verdict,
        Step::Prompt { .. } => panic!("a second prompt"),
    }
}

fn create(
    core: &Core,
    secret: &str,
    name: &str,
    services: &[&str],
    expires_in: u64,
    at: UnixTime,
) -> Result<String, Error> {
    let services: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
    let new = NewAppPassword {
        name,
        services: &services,
        expires_in,
    };
    core.app_password_create(&caller(1000), &new, code(secret, at).as_bytes(), at)
        .map(|c| c.password.to_string())
}

#[test]
fn an_app_password_opens_its_services_repeatedly_and_nothing_else() {
    let core = core();
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    let pw = create(&core, &secret, "phone mail", &["imap-t"], LONGEST, t1).unwrap();
    for i in 0..3 {
        assert_eq!(
            login(&core, "alice", "imap-t", pw.as_bytes(), t1.plus(i)),
            Verdict::Success
        );
    }
    let list = core.app_passwords(&caller(1000)).unwrap();
    assert_eq!(list.len(), 1);
    let used = list[0].last_used.clone().unwrap();
    assert_eq!(
        (used.at, used.service.as_str(), used.rhost.as_str()),
        (t1.plus(2), "imap-t", "192.0.2.9")
    );
    assert_eq!(list[0].expires, Some(t1.plus(365 * 86_400)));
    // Another service the host allows but the password does not name; a service the host
    // does not allow at all; another user; the TOTP code as password.
    assert_eq!(
        login(&core, "alice", "smtp-t", pw.as_bytes(), t1),
        Verdict::Denied
    );
    assert_eq!(
        login(&core, "alice", "sshd", pw.as_bytes(), t1),
        Verdict::Denied
    );
    assert_eq!(
        login(&core, "bob", "imap-t", pw.as_bytes(), t1),
        Verdict::NotEnrolled
    );
    // One wrong answer was charged to alice's app passwords, not to her codes (review M4;
    // the sshd one was refused before any answer).
    let s = core.status(&caller(1000), t1).unwrap();
    assert_eq!((s.failures, s.app_password_failures), (0, 1));
    // A success resets the app passwords' count (never the codes': see `apppw`).
    assert_eq!(
        login(&core, "alice", "imap-t", pw.as_bytes(), t1),
        Verdict::Success
    );
    let s = core.status(&caller(1000), t1).unwrap();
    assert_eq!((s.failures, s.app_password_failures), (0, 0));
}

#[test]
fn expired_and_revoked_passwords_are_refused() {
    let core = core();
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    let short = create(&core, &secret, "short", &["imap-t"], 5, t1).unwrap();
    assert_eq!(
        login(&core, "alice", "imap-t", short.as_bytes(), t1.plus(4)),
        Verdict::Success
    );
    assert_eq!(
        login(&core, "alice", "imap-t", short.as_bytes(), t1.plus(5)),
        Verdict::Denied
    );
    let t2 = T0.plus(60);
    let long = create(&core, &secret, "long", &["imap-t", "smtp-t"], LONGEST, t2).unwrap();
    assert_eq!(
        login(&core, "alice", "smtp-t", long.as_bytes(), t2),
        Verdict::Success
    );
    let id = &long[..5];
    let revoked = core.app_password_revoke(&caller(1000), id, t2).unwrap();
    assert_eq!(revoked.name, "long");
    assert_eq!(
        login(&core, "alice", "smtp-t", long.as_bytes(), t2),
        Verdict::Denied
    );
    assert!(matches!(
        core.app_password_revoke(&caller(1000), "long", t2),
        Err(Error::InvalidArgument(_))
    ));
    // The name is free again.
    let t3 = T0.plus(90);
    create(&core, &secret, "LONG", &["imap-t"], 60, t3).unwrap();
}

#[test]
fn create_needs_proof_and_obeys_the_config() {
    let core = core();
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    let services = vec!["imap-t".to_owned()];
    let new = |name, expires_in| NewAppPassword {
        name,
        services: &services,
        expires_in,
    };
    assert!(matches!(
        core.app_password_create(&caller(1000), &new("a", LONGEST), b"", t1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        core.app_password_create(&caller(1000), &new("a", LONGEST), b"000000", t1),
        Err(Error::WrongCode(_))
    ));
    assert!(matches!(
        create(&core, &secret, "a", &["imap-t"], NEVER, t1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        create(&core, &secret, "a", &["sshd"], LONGEST, t1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        create(&core, &secret, "bad:name", &["imap-t"], LONGEST, t1),
        Err(Error::InvalidArgument(_))
    ));
    // Not enrolled: nothing to prove with.
    let services = vec!["imap-t".to_owned()];
    let r = core.app_password_create(
        &caller(1001),
        &NewAppPassword {
            name: "x",
            services: &services,
            expires_in: LONGEST,
        },
        b"123456",
        t1,
    );
    assert!(
        matches!(r, Err(Error::NotEnrolled(_))),
        "{r:?}",
        r = r.err()
    );
}

#[test]
fn wrong_passwords_lock_and_a_locked_user_is_refused_before_any_hash() {
    let core = core();
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    let pw = create(&core, &secret, "m", &["imap-t"], LONGEST, t1).unwrap();
    for _ in 0..3 {
        assert_eq!(
            login(&core, "alice", "imap-t", b"the-account-password", t1),
            Verdict::Denied
        );
    }
    // Locked at Begin: no prompt, the right password is not even asked for.
    let (id, step) = core
        .begin_login(&caller(0), "alice", ctx("imap-t"), t1)
        .unwrap();
    assert!(id.is_empty());
    assert!(matches!(
        step,
        Step::Done {
            verdict: Verdict::Locked,
            ..
        }
    ));
    assert_eq!(
        login(&core, "alice", "imap-t", pw.as_bytes(), t1.plus(300)),
        Verdict::Success
    );
}

#[test]
fn unknown_names_get_the_same_prompt_and_are_refused() {
    let core = core();
    let (id, step) = core
        .begin_login(&caller(0), "nobody-here", ctx("imap-t"), T0)
        .unwrap();
    assert!(matches!(step, Step::Prompt { .. }));
    let step = core
        .answer(&caller(0), &id, b"abcde-fghjk-mnpqr-stuvw-xyz23-45678", T0)
        .unwrap();
    assert!(matches!(
        step,
        Step::Done {
            verdict: Verdict::Denied,
            ..
        }
    ));
    // A non-root caller learns nothing about other names.
    let other = core
        .begin_login(&caller(1000), "bob", ctx("imap-t"), T0)
        .unwrap_err();
    let nobody = core
        .begin_login(&caller(1000), "nobody-here", ctx("imap-t"), T0)
        .unwrap_err();
    assert_eq!(other.to_string(), nobody.to_string());
}

#[test]
fn admins_list_and_revoke_any_users_app_passwords() {
    let mut c = Config::default();
    c.app_passwords.services = vec!["imap-t".into()];
    c.policy.admin_group = "admin".into();
    let accounts = FakeAccounts::new().with("alice", 1000, &["alice"]).with(
        "carol",
        1003,
        &["carol", "admin"],
    );
    let core = Core::with_parts(
        c,
        Box::new(Arc::new(MemoryStore::new())),
        Box::new(accounts),
    );
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    let pw = create(&core, &secret, "m", &["imap-t"], LONGEST, t1).unwrap();
    assert!(matches!(
        core.admin_app_passwords(&caller(1000), "alice"),
        Err(Error::AccessDenied(_))
    ));
    let list = core.admin_app_passwords(&caller(1003), "alice").unwrap();
    assert_eq!(list.len(), 1);
    core.admin_app_password_revoke(&caller(1003), "alice", "m", t1)
        .unwrap();
    assert_eq!(
        login(&core, "alice", "imap-t", pw.as_bytes(), t1),
        Verdict::Denied
    );
    let list = core.app_passwords(&caller(1000)).unwrap();
    assert_eq!(list[0].revoked, Some(t1));
}

#[test]
fn expiry_notices_are_marked_once() {
    let core = core();
    let secret = enrol(&core, 1000);
    let t1 = T0.plus(30);
    create(&core, &secret, "soon", &["imap-t"], 3 * 86_400, t1).unwrap();
    create(
        &core,
        &secret,
        "later",
        &["imap-t"],
        30 * 86_400,
        t1.plus(30),
    )
    .unwrap();
    let n = core.app_password_notices(t1.plus(60)).unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!((n[0].user.as_str(), n[0].name.as_str()), ("alice", "soon"));
    assert!(core.app_password_notices(t1.plus(120)).unwrap().is_empty());
    let n = core.app_password_notices(t1.plus(24 * 86_400)).unwrap();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].name, "later");
}
