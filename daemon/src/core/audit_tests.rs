// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 20 item 8 through the core: every record event carries its kind, the service,
//! remote host and tty of the login, the method, and the acting user's name (the admin's
//! for admin actions); events of older records still read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;

use twostep_config::{Bounded, Config, Require};

use super::admin::Action;
use super::audit::{EventKind, LoginContext};
use super::record::{Event, Record};
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

fn core() -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(2);
    c.policy.require = Require::None;
    let accounts = FakeAccounts::new()
        .with("root", 0, &["root"])
        .with("ann", 1000, &["ann"]);
    Core::with_parts(
        c,
        Box::new(Arc::new(MemoryStore::new())),
        Box::new(accounts),
    )
}

fn ctx() -> LoginContext {
    let map: HashMap<String, String> = [
        ("service", "sshd"),
        ("rhost", "203.0.113.7"),
        ("tty", "ssh"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    LoginContext::from_map(&map).unwrap()
}

/// One login of ann from [`ctx`] answering `answer` at `at`.
fn login(c: &Core, answer: &str, at: UnixTime) {
    let (id, _) = c.begin_login(&caller(0), "ann", ctx(), at).unwrap();
    c.answer(&caller(0), &id, answer.as_bytes(), at).unwrap();
}

fn events(c: &Core) -> Vec<Event> {
    c.admin_show(&caller(0), "ann", T0.plus(600))
        .unwrap()
        .events
}

fn last(c: &Core, kind: EventKind) -> Event {
    events(c)
        .into_iter()
        .rev()
        .find(|e| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind:?} event in {:#?}", events(c)))
}

#[test]
fn login_events_carry_service_rhost_tty_method_and_the_user() {
    let c = core();
    let p = c.enroll_begin(&caller(1000), b"", T0).unwrap();
    let secret = p.secret_base32.clone();
    c.enroll_confirm(&caller(1000), code(&secret, T0).as_bytes(), T0)
        .unwrap();
    let enrol = last(&c, EventKind::Enrol);
    assert_eq!(
        (
            enrol.service.as_str(),
            enrol.actor.as_str(),
            enrol.actor_uid
        ),
        ("twostepctl", "ann", Some(1000))
    );

    let later = T0.plus(60);
    login(&c, &code(&secret, later), later);
    let ok = last(&c, EventKind::Success);
    // The same code again: a replay, its own kind, not a failure.
    login(&c, &code(&secret, later), later.plus(1));
    let replay = last(&c, EventKind::Replay);
    login(&c, "000000", later.plus(2));
    login(&c, "000001", later.plus(3));
    let failure = last(&c, EventKind::Failure);
    let lock = last(&c, EventKind::Lock);
    for (e, method) in [
        (&ok, "totp"),
        (&replay, "totp"),
        (&failure, "totp,recovery-code"),
        (&lock, "totp,recovery-code"),
    ] {
        assert_eq!(
            (
                e.service.as_str(),
                e.rhost.as_str(),
                e.tty.as_str(),
                e.method.as_str(),
                e.actor.as_str(),
                e.actor_uid
            ),
            ("sshd", "203.0.113.7", "ssh", method, "ann", Some(1000)),
            "{e:?}"
        );
    }
    assert!(lock.what.contains("2 failed attempts"), "{lock:?}");
    let failures = events(&c)
        .iter()
        .filter(|e| e.kind == EventKind::Failure)
        .count();
    assert_eq!(failures, 2, "a replay is not a failure: {:#?}", events(&c));
}

#[test]
fn admin_events_name_the_admin_and_keep_the_uid() {
    let c = core();
    let p = c.enroll_begin(&caller(1000), b"", T0).unwrap();
    c.enroll_confirm(&caller(1000), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    c.admin_act(&caller(0), "ann", Action::Unlock, T0.plus(1))
        .unwrap();
    c.admin_act(&caller(0), "ann", Action::Reset, T0.plus(2))
        .unwrap();
    for kind in [EventKind::Unlock, EventKind::Reset] {
        let e = last(&c, kind);
        assert_eq!(
            (e.actor.as_str(), e.actor_uid, e.service.as_str()),
            ("root", Some(0), "twostepctl"),
            "{e:?}"
        );
        assert!(e.what.contains("by root"), "{e:?}");
        assert!(!e.what.contains("uid"), "{e:?}");
    }
}

#[test]
fn events_of_older_records_read_with_empty_fields_and_round_trip() {
    let old = r#"{"version":1,"user":"ann","uid":1000,"pending":null,"failures":0,
        "last_failure":null,"last_success":null,
        "events":[{"at":5,"what":"failed attempt"}]}"#;
    let r: Record = serde_json::from_str(old).unwrap();
    let e = &r.events[0];
    assert_eq!(
        (e.kind, e.service.as_str(), e.actor_uid),
        (EventKind::Unknown, "", None)
    );
    assert_eq!(e.kind.name(), "-");
    // Written back, an old event stays in its old shape (no empty fields added).
    let json = serde_json::to_string(&r).unwrap();
    assert!(
        json.contains(r#"{"at":5,"what":"failed attempt"}"#),
        "{json}"
    );
    // A new event round-trips.
    let mut r = r;
    let from = super::audit::Source::login(
        &ctx(),
        &super::users::Account {
            name: "ann".into(),
            uid: 1000,
            gid: 1000,
        },
    );
    r.note(
        T0,
        EventKind::Failure,
        "failed attempt",
        &from.with_method("totp"),
    );
    let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

/// Review of this round: a user's own process (a non-root caller, as a screen locker is)
/// may claim any service, rhost and tty; its events say which uid called, so they are told
/// from a root PAM application's.
#[test]
fn events_of_a_users_own_process_carry_its_uid() {
    let c = core();
    let p = c.enroll_begin(&caller(1000), b"", T0).unwrap();
    c.enroll_confirm(&caller(1000), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    let at = T0.plus(120);
    let (id, _) = c.begin_login(&caller(1000), "ann", ctx(), at).unwrap();
    c.answer(&caller(1000), &id, b"000000", at).unwrap();
    login(&c, "000001", at.plus(1));
    let fails: Vec<Option<u32>> = events(&c)
        .iter()
        .filter(|e| e.kind == EventKind::Failure)
        .map(|e| e.caller_uid)
        .collect();
    assert_eq!(fails, [Some(1000), None]);
}
