// SPDX-License-Identifier: MIT OR Apache-2.0
//! Clock trouble (issue 20 item 10) through whole logins with the injected clock: a code
//! of a step outside the window stays a wrong code (same answer, same charge) and is named
//! in the admin's view; a host clock stepped back behind an accepted login is noted beside
//! the replay it causes. [`FakeAccounts`] and a [`MemoryStore`]: no root.

use std::sync::Arc;

use twostep_config::{Bounded, Config};
use twostep_proto::{Step, Verdict};

use super::audit::{LoginContext, Source};
use super::clock_trouble::ClockNote;
use super::record::Record;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);
const ALICE: u32 = 1000;

fn core() -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(10);
    let accounts = FakeAccounts::new().with("alice", ALICE, &["alice"]);
    Core::with_parts(
        c,
        Box::new(Arc::new(MemoryStore::new())),
        Box::new(accounts),
    )
}

fn enrol(core: &Core) -> String {
    let p = core.enroll_begin(&caller(ALICE), b"", T0).unwrap();
    core.enroll_confirm(&caller(ALICE), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    p.secret_base32.clone()
}

fn login(core: &Core, answer: &str, now: UnixTime) -> Step {
    let (id, step) = core
        .begin_login(&caller(ALICE), "alice", LoginContext::default(), now)
        .unwrap();
    assert!(matches!(step, Step::Prompt { .. }), "{step:?}");
    core.answer(&caller(ALICE), &id, answer.as_bytes(), now)
        .unwrap()
}

fn clock(core: &Core, now: UnixTime) -> (Option<ClockNote>, u32, Vec<String>) {
    let info = core.admin_show(&caller(0), "alice", now).unwrap();
    (
        info.state.clock,
        info.state.failures,
        info.events.into_iter().map(|e| e.what).collect(),
    )
}

/// A 6-digit code that is no code of `secret` within `reach` steps of `now` (so the test
/// compares with a truly wrong code).
fn truly_wrong(secret: &str, now: UnixTime) -> String {
    let near: Vec<String> = (0..=60)
        .map(|i| code(secret, UnixTime(now.0 - 900 + i * 30)))
        .collect();
    (0..10)
        .map(|d| d.to_string().repeat(6))
        .find(|c| !near.contains(c))
        .unwrap()
}

#[test]
fn a_code_outside_the_window_is_refused_like_a_wrong_one_and_its_offset_is_named() {
    let core = core();
    let secret = enrol(&core);
    let t1 = T0.plus(3600);
    // A truly wrong code first: what the user sees and what is charged.
    let wrong = login(&core, &truly_wrong(&secret, t1), t1);
    let (note, failures, _) = clock(&core, t1);
    assert_eq!((note, failures), (None, 1));

    // The app 4 steps (2 min) behind: refused with the very same answer, charged the same.
    let behind = code(&secret, UnixTime(t1.0 - 4 * 30));
    let t2 = t1.plus(1);
    assert_eq!(login(&core, &behind, t2), wrong);
    let (note, failures, events) = clock(&core, t2);
    assert_eq!(failures, 2);
    let skew = note.unwrap().skew.unwrap();
    assert_eq!(
        (skew.steps, skew.times, skew.authenticator.as_str()),
        (-4, 1, "default")
    );
    assert!(
        events
            .iter()
            .any(|e| e.contains("4 steps (2 min) behind the host clock")),
        "{events:?}"
    );
    // Seen again: counted.
    let t3 = t1.plus(2);
    assert_eq!(login(&core, &behind, t3), wrong);
    let skew = clock(&core, t3).0.unwrap().skew.unwrap();
    assert_eq!((skew.steps, skew.times, skew.first_seen), (-4, 2, t2));
    assert!(events.iter().all(|e| !e.contains(&behind)));

    // Ahead by 7 steps: a new offset, counted from 1.
    let ahead = code(&secret, UnixTime(t1.0 + 7 * 30));
    assert_eq!(login(&core, &ahead, t3), wrong);
    let skew = clock(&core, t3).0.unwrap().skew.unwrap();
    assert_eq!((skew.steps, skew.times), (7, 1));

    // A right code ends it; the events keep what was seen.
    let ok = login(&core, &code(&secret, t3), t3);
    assert!(matches!(
        ok,
        Step::Done {
            verdict: Verdict::Success,
            ..
        }
    ));
    let (note, failures, _) = clock(&core, t3);
    assert_eq!((note, failures), (None, 0));
}

#[test]
fn a_code_beyond_ten_minutes_is_only_wrong_and_the_window_is_never_widened() {
    let core = core();
    let secret = enrol(&core);
    let t1 = T0.plus(3600);
    // 21 steps is past the reach (20 steps of 30 s): nothing noted.
    let far = code(&secret, UnixTime(t1.0 - 21 * 30));
    let refused = login(&core, &far, t1);
    assert!(matches!(
        refused,
        Step::Done {
            verdict: Verdict::Denied,
            ..
        }
    ));
    assert_eq!(clock(&core, t1).0, None);
    // Two steps behind with window 1: refused (noted), however often it is seen.
    let two = code(&secret, UnixTime(t1.0 - 2 * 30));
    for i in 0..3 {
        let step = login(&core, &two, t1.plus(i));
        assert!(
            matches!(
                step,
                Step::Done {
                    verdict: Verdict::Denied,
                    ..
                }
            ),
            "{step:?}"
        );
    }
    assert_eq!(clock(&core, t1).0.unwrap().skew.unwrap().times, 3);
}

#[test]
fn a_host_clock_stepped_back_is_noted_beside_the_replay_it_causes() {
    let core = core();
    let secret = enrol(&core);
    // Late in its step, so 40 s back is the step before (inside the window).
    let t1 = T0.plus(3625);
    let c = code(&secret, t1);
    assert!(matches!(
        login(&core, &c, t1),
        Step::Done {
            verdict: Verdict::Success,
            ..
        }
    ));
    // The host clock steps back 40 s: the phone's code (of t1's step, still right by the
    // phone) is inside the window, on a step already used: "already used", not charged.
    let back = UnixTime(t1.0 - 40);
    let replay = login(&core, &c, back);
    match &replay {
        Step::Done { verdict, message } => {
            assert_eq!(*verdict, Verdict::Denied);
            assert!(message.contains("already used"), "{message}");
        }
        Step::Prompt { .. } => panic!("{replay:?}"),
    }
    let (note, failures, events) = clock(&core, back);
    assert_eq!(failures, 0);
    let b = note.unwrap().backwards.unwrap();
    assert_eq!((b.by_secs, b.times, b.last_seen), (40, 1, back));
    assert!(
        events.iter().any(|e| e.contains("40 s earlier")),
        "{events:?}"
    );
    // Within the tolerance (a fleet's hosts differ by seconds): nothing more noted.
    let slight = UnixTime(t1.0 - 10);
    let _ = login(&core, &c, slight);
    assert_eq!(clock(&core, slight).0.unwrap().backwards.unwrap().times, 1);
    // Once the clock is right again, the next accepted code ends it.
    let later = t1.plus(90);
    let _ = login(&core, &code(&secret, later), later);
    assert_eq!(clock(&core, later).0, None);
}

#[test]
fn the_note_round_trips_and_a_record_without_it_reads_unchanged() {
    let mut r = Record::for_account("alice", ALICE);
    let plain = serde_json::to_string(&r).unwrap();
    assert!(!plain.contains("clock"), "{plain}");
    super::clock_trouble::note_skew(&mut r, "default", (-4, 30), T0, &Source::default());
    super::clock_trouble::notice_backwards(&mut r, T0, &Source::default());
    r.last_success = Some(T0.plus(100));
    super::clock_trouble::notice_backwards(&mut r, T0, &Source::default());
    let json = serde_json::to_string(&r).unwrap();
    let back: Record = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert!(back.clock.unwrap().backwards.is_some());
    let old: Record = serde_json::from_str(&plain).unwrap();
    assert_eq!(old.clock, None);
}
