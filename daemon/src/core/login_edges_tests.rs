// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 20's login items through the core's conversation, with [`FakeAccounts`] and a
//! [`MemoryStore`]: a prompt answered after its lifetime says so (item 18), and a wrong
//! code at enrolment at login keeps the key (item 4).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use twostep_config::{Bounded, Config, Require};
use twostep_proto::{Step, Verdict};

use super::audit::LoginContext;
use super::login::{EXPIRED_KEEP_SECS, MAX_EXPIRED};
use super::messages;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, Error, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);
const TIMEOUT: u64 = 60;

fn core(require: Require) -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(3);
    c.login.prompt_timeout_seconds = Bounded::new(TIMEOUT);
    c.login.max_sessions = Bounded::new(4096);
    c.policy.require = require;
    let accounts = FakeAccounts::new()
        .with("ann", 1000, &["ann"])
        .with("bob", 1001, &["bob"]);
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

fn done(step: &Step) -> (Verdict, String) {
    match step {
        Step::Done { verdict, message } => (*verdict, message.clone()),
        Step::Prompt { .. } => panic!("a prompt, not a verdict: {step:?}"),
    }
}

/// Item 18: an answer after the prompt's lifetime is refused with "timed out; start
/// again", once; a second try with that id, another connection's try, and an id never
/// issued get the plain "no such session".
#[test]
fn an_answer_after_the_prompt_timeout_says_it_timed_out_once() {
    let c = core(Require::None);
    let secret = enrol(&c, 1000);
    let (id, step) = c
        .begin_login(&caller(0), "ann", LoginContext::default(), T0.plus(30))
        .unwrap();
    assert!(matches!(step, Step::Prompt { .. }));
    let late = T0.plus(30 + TIMEOUT + 5);
    let other = super::Caller {
        uid: 0,
        sender: ":9.9".into(),
    };
    // Another connection learns nothing, and does not use up the mark.
    assert!(matches!(
        c.answer(&other, &id, b"123456", late),
        Err(Error::NoSession)
    ));
    let step = c
        .answer(&caller(0), &id, code(&secret, late).as_bytes(), late)
        .unwrap();
    assert_eq!(
        done(&step),
        (Verdict::Denied, messages::PROMPT_TIMED_OUT.to_owned())
    );
    assert!(matches!(
        c.answer(&caller(0), &id, b"123456", late),
        Err(Error::NoSession)
    ));
    assert!(matches!(
        c.answer(
            &caller(0),
            "00112233445566778899aabbccddeeff",
            b"123456",
            late
        ),
        Err(Error::NoSession)
    ));
    // Nothing was charged or spent: the code still logs in in a new conversation.
    let (id, _) = c
        .begin_login(&caller(0), "ann", LoginContext::default(), late)
        .unwrap();
    let step = c
        .answer(&caller(0), &id, code(&secret, late).as_bytes(), late)
        .unwrap();
    assert_eq!(done(&step).0, Verdict::Success);
}

/// Item 18: the expiry marks are bounded in number and in age, and end with their
/// connection.
#[test]
fn expiry_marks_are_bounded_by_number_age_and_connection() {
    let c = core(Require::None);
    enrol(&c, 1000);
    let begin = |sender: &str, at: UnixTime| {
        let who = super::Caller {
            uid: 0,
            sender: sender.into(),
        };
        let (id, _) = c
            .begin_login(&who, "ann", LoginContext::default(), at)
            .unwrap();
        (who, id)
    };
    // Aged out.
    let (who, id) = begin(":2.1", T0);
    let much_later = T0.plus(TIMEOUT + EXPIRED_KEEP_SECS + 1);
    assert!(matches!(
        c.answer(&who, &id, b"123456", much_later),
        Err(Error::NoSession)
    ));
    // Ended with its connection.
    let (who, id) = begin(":2.2", T0);
    c.end_connection(":2.2");
    assert!(matches!(
        c.answer(&who, &id, b"123456", T0.plus(TIMEOUT + 1)),
        Err(Error::NoSession)
    ));
    // Past the number bound, the oldest marks go first.
    let mut opened = Vec::new();
    for i in 0..MAX_EXPIRED + 8 {
        let at = T0.plus(2 * TIMEOUT + u64::try_from(i / 8).unwrap());
        opened.push(begin(&format!(":3.{i}"), at));
        c.open_sessions(at.plus(TIMEOUT));
    }
    let after = T0.plus(4 * TIMEOUT + u64::try_from(MAX_EXPIRED).unwrap());
    let (first, first_id) = &opened[0];
    assert!(matches!(
        c.answer(first, first_id, b"1", after),
        Err(Error::NoSession)
    ));
    let (last, last_id) = opened.last().unwrap();
    assert_eq!(
        done(&c.answer(last, last_id, b"1", after).unwrap()).1,
        messages::PROMPT_TIMED_OUT
    );
}

/// The secret shown in an enrolment prompt (`… key by hand: ABCD EFGH …`).
fn shown_key(step: &Step) -> String {
    let Step::Prompt { message, .. } = step else {
        panic!("not a prompt: {step:?}")
    };
    let line = message
        .lines()
        .find_map(|l| l.split_once("key by hand: ").map(|(_, k)| k))
        .unwrap();
    line.split_whitespace().collect()
}

/// Item 4: at an enrolment at login, wrong codes may be retried [`TRIES`] times in all,
/// uncharged; the key stays pending and the next login (within `pending_seconds`) shows
/// it again, until it expires; a key started with `twostepctl enroll` is the one shown.
#[test]
fn enrolment_at_login_retries_and_keeps_its_key() {
    use super::enrol_at_login::TRIES;
    let c = core(Require::All);
    let (id, step) = c
        .begin_login(&caller(0), "ann", LoginContext::default(), T0)
        .unwrap();
    let secret = shown_key(&step);
    let wrong = if code(&secret, T0) == "000000" {
        "000001"
    } else {
        "000000"
    };
    for i in 1..=TRIES {
        let step = c.answer(&caller(0), &id, wrong.as_bytes(), T0).unwrap();
        match &step {
            Step::Prompt { message, .. } if i < TRIES => {
                assert!(message.contains("left"), "{message}")
            }
            Step::Done {
                verdict: Verdict::Denied,
                message,
            } if i == TRIES => {
                assert_eq!(message, messages::ENROL_WRONG_CODE);
                assert!(!message.contains("twostepctl"));
            }
            other => panic!("try {i}: {other:?}"),
        }
    }
    let status = c.status(&caller(1000), T0).unwrap();
    assert_eq!(status.failures, 0);
    assert!(!status.enrolled);
    // The next login shows the same key, which enrols.
    let later = T0.plus(60);
    let (id, step) = c
        .begin_login(&caller(0), "ann", LoginContext::default(), later)
        .unwrap();
    assert_eq!(shown_key(&step), secret);
    let step = c
        .answer(&caller(0), &id, code(&secret, later).as_bytes(), later)
        .unwrap();
    assert!(
        matches!(step, Step::Prompt { .. }),
        "recovery codes: {step:?}"
    );
    let status = c.status(&caller(1000), later).unwrap();
    assert!(status.enrolled && !status.pending);
    assert!(status.last_success > 0, "item 9");

    // Past `pending_seconds` a new key is made; one from `twostepctl enroll` is reused.
    let life = c.config().enrollment.pending_seconds.get();
    let (_, step) = c
        .begin_login(&caller(0), "bob", LoginContext::default(), T0)
        .unwrap();
    let first = shown_key(&step);
    let (_, step) = c
        .begin_login(
            &caller(0),
            "bob",
            LoginContext::default(),
            T0.plus(life + 1),
        )
        .unwrap();
    let second = shown_key(&step);
    assert_ne!(first, second);
    let cli = c
        .enroll_begin(&caller(1001), b"", T0.plus(life + 2))
        .unwrap();
    let (_, step) = c
        .begin_login(
            &caller(0),
            "bob",
            LoginContext::default(),
            T0.plus(life + 3),
        )
        .unwrap();
    assert_eq!(shown_key(&step), cli.secret_base32);
}

/// Item 9: a login let through in the enrolment grace period is a successful login too:
/// `last_success` is its time.
#[test]
fn a_grace_period_login_is_the_last_success() {
    let mut c = Config::default();
    c.policy.require = Require::All;
    c.policy.enroll_grace_days = Bounded::new(7);
    let accounts = FakeAccounts::new().with("ann", 1000, &["ann"]);
    let c = Core::with_parts(
        c,
        Box::new(Arc::new(MemoryStore::new())),
        Box::new(accounts),
    );
    for at in [T0, T0.plus(90)] {
        let (_, step) = c
            .begin_login(&caller(0), "ann", LoginContext::default(), at)
            .unwrap();
        assert_eq!(done(&step).0, Verdict::Success);
        assert_eq!(c.status(&caller(1000), at).unwrap().last_success, at.0);
    }
}
