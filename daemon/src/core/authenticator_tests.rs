// SPDX-License-Identifier: MIT OR Apache-2.0
//! Several named authenticators per user, through [`FakeAccounts`] and a [`MemoryStore`]:
//! each logs in, replay protection holds per authenticator, the add and remove rules, and
//! what the user and an admin see.

use std::sync::Arc;

use twostep_config::{Bounded, Config, Require};
use twostep_proto::{Step, Verdict};

use super::audit::LoginContext;
use super::messages;
use super::record::{self, Record, MAX_AUTHENTICATOR_NAME};
use super::selfservice::MAX_AUTHENTICATORS;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, Error, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

fn at(steps: u64) -> UnixTime {
    T0.plus(30 * steps)
}

fn core_with(f: impl FnOnce(&mut Config)) -> Core {
    let accounts = FakeAccounts::new()
        .with("alice", 1000, &["alice", "staff"])
        .with("bob", 1001, &["bob"]);
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(5);
    c.recovery.count = Bounded::new(2);
    f(&mut c);
    let store = Arc::new(MemoryStore::new());
    Core::with_parts(c, Box::new(store), Box::new(accounts))
}

/// Enrol uid 1000 (alice) at `T0` and add "backup" at step 2 with a proof of the first;
/// the two secrets and the recovery codes.
fn two(core: &Core) -> (String, String, Vec<String>) {
    let me = caller(1000);
    let p = core.enroll_begin(&me, b"", T0).unwrap();
    let first = p.secret_base32.clone();
    let codes = core
        .enroll_confirm(&me, code(&first, T0).as_bytes(), T0)
        .unwrap();
    let p = core
        .authenticator_add(&me, "backup", code(&first, at(2)).as_bytes(), at(2))
        .unwrap();
    let second = p.secret_base32.clone();
    core.authenticator_confirm(&me, "backup", code(&second, at(2)).as_bytes(), at(2))
        .unwrap();
    let codes = codes.iter().map(|c| c.to_string()).collect();
    (first, second, codes)
}

fn login(core: &Core, answer: &str, now: UnixTime) -> (Verdict, String) {
    let me = caller(1000);
    let (id, step) = core
        .begin_login(&me, "alice", LoginContext::default(), now)
        .unwrap();
    assert!(matches!(step, Step::Prompt { .. }), "{step:?}");
    match &core.answer(&me, &id, answer.as_bytes(), now).unwrap() {
        Step::Done { verdict, message } => (*verdict, message.clone()),
        other => panic!("{other:?}"),
    }
}

fn names(core: &Core) -> Vec<String> {
    let list = core.authenticators(&caller(1000), T0).unwrap();
    list.into_iter().map(|a| a.name).collect()
}

#[test]
fn each_authenticator_logs_in_and_a_replay_is_refused_on_the_one_that_used_it() {
    let core = core_with(|_| {});
    let (first, second, _) = two(&core);
    assert_eq!(names(&core), ["default", "backup"]);
    let now = at(4);
    assert_eq!(login(&core, &code(&first, now), now).0, Verdict::Success);
    // The same step of the same authenticator again: a replay.
    let (verdict, text) = login(&core, &code(&first, now), now);
    assert_eq!(
        (verdict, text.as_str()),
        (Verdict::Denied, messages::REPLAYED)
    );
    // The same step stays usable on the other authenticator, once.
    assert_eq!(login(&core, &code(&second, now), now).0, Verdict::Success);
    let (verdict, text) = login(&core, &code(&second, now), now);
    assert_eq!(
        (verdict, text.as_str()),
        (Verdict::Denied, messages::REPLAYED)
    );
    // A later step works on both; the failures above were charged and a success resets.
    let later = at(6);
    assert_eq!(
        login(&core, &code(&second, later), later).0,
        Verdict::Success
    );
    assert_eq!(
        login(&core, &code(&first, later), later).0,
        Verdict::Success
    );
    let s = core.status(&caller(1000), later).unwrap();
    assert_eq!(s.failures, 0);
    let used: Vec<u64> = s.authenticators.iter().map(|a| a.last_used).collect();
    assert_eq!(used, [later.0, later.0]);
    let added: Vec<u64> = s.authenticators.iter().map(|a| a.added).collect();
    assert_eq!(added, [T0.0, at(2).0]);
    // The code that confirmed "backup" (step 2) is spent on it.
    assert_eq!(
        login(&core, &code(&second, at(2)), at(2)).0,
        Verdict::Denied
    );
}

#[test]
fn adding_needs_a_valid_new_name_a_proof_and_a_code_of_the_new_key() {
    let core = core_with(|_| {});
    let me = caller(1000);
    // Not enrolled yet: enrol first.
    assert!(matches!(
        core.authenticator_add(&me, "x", b"123456", T0),
        Err(Error::NotEnrolled(_))
    ));
    let (first, _, _) = two(&core);
    let now = at(5);
    let proof = code(&first, now);
    let long = "n".repeat(MAX_AUTHENTICATOR_NAME + 1);
    for bad in [
        "",
        "a\nb",
        "tab\there",
        " lead",
        "backup",
        "default",
        long.as_str(),
    ] {
        let e = core
            .authenticator_add(&me, bad, proof.as_bytes(), now)
            .err()
            .unwrap_or_else(|| panic!("{bad:?} accepted"));
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad:?}: {e}");
    }
    let ok = "n".repeat(MAX_AUTHENTICATOR_NAME);
    assert!(record::check_name(&ok).is_ok());
    assert!(record::check_name("Pixel 8 — work").is_ok());
    // No proof, a wrong proof (charged).
    assert!(matches!(
        core.authenticator_add(&me, "token", b"", now),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        core.authenticator_add(&me, "token", b"000000", now),
        Err(Error::WrongCode(_))
    ));
    assert_eq!(core.status(&me, now).unwrap().failures, 1);
    // A right proof; a wrong code of the new key is refused and changes nothing.
    let p = core
        .authenticator_add(&me, "token", proof.as_bytes(), now)
        .unwrap();
    assert!(core.status(&me, now).unwrap().pending);
    assert!(matches!(
        core.authenticator_confirm(&me, "token", code(&first, at(6)).as_bytes(), at(6)),
        Err(Error::WrongCode(_))
    ));
    // A confirm for another name (a second `add` elsewhere) finds nothing to confirm.
    assert!(matches!(
        core.authenticator_confirm(
            &me,
            "other",
            code(&p.secret_base32, at(6)).as_bytes(),
            at(6)
        ),
        Err(Error::NoPendingEnrollment(_))
    ));
    // `enroll confirm` does not confirm an added key (it would replace the others).
    assert!(matches!(
        core.enroll_confirm(&me, code(&p.secret_base32, at(6)).as_bytes(), at(6)),
        Err(Error::NoPendingEnrollment(_))
    ));
    core.authenticator_confirm(
        &me,
        "token",
        code(&p.secret_base32, at(6)).as_bytes(),
        at(6),
    )
    .unwrap();
    assert_eq!(names(&core), ["default", "backup", "token"]);
    assert!(!core.status(&me, at(6)).unwrap().pending);
    // Nothing pending: nothing to confirm.
    assert!(matches!(
        core.authenticator_confirm(
            &me,
            "token",
            code(&p.secret_base32, at(7)).as_bytes(),
            at(7)
        ),
        Err(Error::NoPendingEnrollment(_))
    ));
    // At most MAX_AUTHENTICATORS.
    for i in 3..MAX_AUTHENTICATORS {
        let t = at(10 + 2 * i as u64);
        let p = core
            .authenticator_add(&me, &format!("t{i}"), code(&first, t).as_bytes(), t)
            .unwrap();
        core.authenticator_confirm(
            &me,
            &format!("t{i}"),
            code(&p.secret_base32, t).as_bytes(),
            t,
        )
        .unwrap();
    }
    let t = at(100);
    assert!(matches!(
        core.authenticator_add(&me, "one-more", code(&first, t).as_bytes(), t),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn removing_needs_another_authenticators_code_and_never_drops_the_last_while_required() {
    let core = core_with(|c| {
        c.policy.require = Require::Groups;
        c.policy.groups = vec!["staff".into()];
    });
    let me = caller(1000);
    let (first, second, recovery) = two(&core);
    // A code of the one being removed does not count (and is charged).
    let now = at(5);
    assert!(matches!(
        core.authenticator_remove(&me, "backup", code(&second, now).as_bytes(), now),
        Err(Error::WrongCode(_))
    ));
    assert_eq!(names(&core), ["default", "backup"]);
    assert_eq!(core.status(&me, now).unwrap().failures, 1);
    assert!(matches!(
        core.authenticator_remove(&me, "nope", code(&first, now).as_bytes(), now),
        Err(Error::InvalidArgument(_))
    ));
    // A code of another one does.
    core.authenticator_remove(&me, "backup", code(&first, now).as_bytes(), now)
        .unwrap();
    assert_eq!(names(&core), ["default"]);
    assert_eq!(
        login(&core, &code(&second, at(7)), at(7)).0,
        Verdict::Denied
    );
    // The last one, while 2FA is required: refused, even with a recovery code.
    let e = core
        .authenticator_remove(&me, "default", recovery[0].as_bytes(), at(8))
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied(_)), "{e}");
    assert!(e.to_string().contains("required"), "{e}");
    assert_eq!(names(&core), ["default"]);
    // A recovery code is a proof for removing one of two.
    let t = at(10);
    let p = core
        .authenticator_add(&me, "spare", code(&first, t).as_bytes(), t)
        .unwrap();
    core.authenticator_confirm(&me, "spare", code(&p.secret_base32, t).as_bytes(), t)
        .unwrap();
    core.authenticator_remove(&me, "default", recovery[0].as_bytes(), at(11))
        .unwrap();
    assert_eq!(names(&core), ["spare"]);
}

#[test]
fn removing_the_last_when_not_required_is_switching_off_by_the_disable_rules() {
    // bob is not required; may he switch off? Denied by config first.
    let core = core_with(|c| c.policy.may_toggle = false);
    let bob = caller(1001);
    let p = core.enroll_begin(&bob, b"", T0).unwrap();
    core.enroll_confirm(&bob, code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    let now = at(3);
    let e = core
        .authenticator_remove(&bob, "default", code(&p.secret_base32, now).as_bytes(), now)
        .unwrap_err();
    assert!(matches!(e, Error::AccessDenied(_)), "{e}");
    assert!(core.status(&bob, now).unwrap().enrolled);

    let core = core_with(|c| c.policy.may_toggle = true);
    let p = core.enroll_begin(&bob, b"", T0).unwrap();
    core.enroll_confirm(&bob, code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    assert!(matches!(
        core.authenticator_remove(&bob, "default", b"000000", now),
        Err(Error::WrongCode(_))
    ));
    core.authenticator_remove(&bob, "default", code(&p.secret_base32, now).as_bytes(), now)
        .unwrap();
    let s = core.status(&bob, now).unwrap();
    assert!(!s.enrolled && s.authenticators.is_empty() && s.recovery_left == 0);
}

#[test]
fn a_new_phone_replaces_every_authenticator_and_admins_see_them() {
    let core = core_with(|_| {});
    let me = caller(1000);
    let (first, second, _) = two(&core);
    let info = core.admin_show(&caller(0), "alice", at(3)).unwrap();
    let shown: Vec<&str> = info
        .state
        .authenticators
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(shown, ["default", "backup"]);
    let listed = core.admin_list(&caller(0), at(3)).unwrap();
    assert_eq!(listed[0].state, info.state);
    assert_eq!(info.state, core.status(&me, at(3)).unwrap());
    // `enroll --reset` with a proof of either: the new key is the one authenticator.
    let now = at(4);
    let p = core
        .enroll_begin(&me, code(&second, now).as_bytes(), now)
        .unwrap();
    core.enroll_confirm(&me, code(&p.secret_base32, at(5)).as_bytes(), at(5))
        .unwrap();
    assert_eq!(names(&core), ["default"]);
    assert_eq!(login(&core, &code(&first, at(7)), at(7)).0, Verdict::Denied);
    assert_eq!(
        login(&core, &code(&p.secret_base32, at(7)), at(7)).0,
        Verdict::Success
    );
}

#[test]
fn a_record_of_the_single_key_shape_reads_as_one_authenticator_named_default() {
    let key = serde_json::json!({
        "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        "algorithm": "SHA1",
        "digits": 6,
        "period": 30,
        "created": 5
    });
    let old = serde_json::json!({
        "version": 1,
        "user": "alice",
        "uid": 1000,
        "totp": key,
        "pending": null,
        "last_step": 77,
        "failures": 1,
        "last_failure": null,
        "last_success": null,
    });
    let r: Record = serde_json::from_value(old.clone()).unwrap();
    assert_eq!(r.authenticators.len(), 1);
    let a = &r.authenticators[0];
    assert_eq!((a.name.as_str(), a.last_step), ("default", Some(77)));
    assert_eq!((a.added, a.last_used, r.failures), (UnixTime(5), None, 1));
    // Written back in the new shape, which reads as the same record.
    let new = serde_json::to_value(&r).unwrap();
    assert!(
        new.get("totp").is_none() && new.get("last_step").is_none(),
        "{new}"
    );
    assert_eq!(serde_json::from_value::<Record>(new).unwrap(), r);
    // Not enrolled in the old shape: no authenticator.
    let mut off = old.clone();
    off["totp"] = serde_json::Value::Null;
    let r: Record = serde_json::from_value(off).unwrap();
    assert!(!r.enrolled());
    // Both shapes at once, or a duplicate or invalid name: refused (fails closed).
    let mut both = serde_json::to_value(&r).unwrap();
    both["totp"] = key.clone();
    assert!(serde_json::from_value::<Record>(both).is_err());
    let one = serde_json::json!({"name": "a", "key": key, "added": 1});
    for list in [
        vec![one.clone(), one.clone()],
        vec![serde_json::json!({"name": "a\n", "key": key, "added": 1})],
    ] {
        let mut dup = serde_json::to_value(Record::new("alice")).unwrap();
        dup["authenticators"] = serde_json::Value::Array(list);
        assert!(serde_json::from_value::<Record>(dup).is_err());
    }
}

/// A move to a new phone after `[totp] period` changed: the new key's replay mark is its
/// own confirming step, not the old key's (steps of another period), so it keeps working.
#[test]
fn a_new_phone_after_a_period_change_is_not_locked_out_by_the_old_keys_mark() {
    let code60 = |secret: &str, t: UnixTime| {
        let raw = totp_rs::Secret::Encoded(secret.into()).to_bytes().unwrap();
        totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 0, 60, raw, None, String::new())
            .unwrap()
            .generate(t.0)
    };
    let core = core_with(|_| {});
    let me = caller(1000);
    let p = core.enroll_begin(&me, b"", T0).unwrap();
    let old = p.secret_base32.clone();
    core.enroll_confirm(&me, code(&old, T0).as_bytes(), T0)
        .unwrap();
    assert_eq!(login(&core, &code(&old, at(2)), at(2)).0, Verdict::Success);
    let mut c = (*core.config()).clone();
    c.totp.period = Bounded::new(60);
    core.apply_config(c).unwrap();
    let p = core
        .enroll_begin(&me, code(&old, at(4)).as_bytes(), at(4))
        .unwrap();
    let new = p.secret_base32.clone();
    core.enroll_confirm(&me, code60(&new, at(4)).as_bytes(), at(4))
        .unwrap();
    let later = at(8);
    assert_eq!(
        login(&core, &code60(&new, later), later).0,
        Verdict::Success,
        "the new key's codes must log in"
    );
}

#[test]
fn new_names_exclude_look_alikes_invisible_characters_and_colons() {
    let core = core_with(|_| {});
    let (first, _, _) = two(&core);
    let me = caller(1000);
    for bad in [
        "default\u{200b}",
        "DEFAULT",
        "Backup",
        "work:laptop",
        "phone\u{202e}enohp",
        "x\u{feff}",
    ] {
        let proof = code(&first, at(10));
        let got = core.authenticator_add(&me, bad, proof.as_bytes(), at(10));
        assert!(
            matches!(got, Err(Error::InvalidArgument(_))),
            "{bad:?}: {:?}",
            got.map(|_| ())
        );
    }
    // Letters of any script and ordinary punctuation are fine.
    let proof = code(&first, at(11));
    core.authenticator_add(&me, "Jérôme's phone (2)", proof.as_bytes(), at(11))
        .unwrap();
}
