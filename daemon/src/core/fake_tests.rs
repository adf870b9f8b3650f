// SPDX-License-Identifier: MIT OR Apache-2.0
//! The core's rules for non-root callers, groups and policy, through [`FakeAccounts`] and
//! a [`MemoryStore`]: no root, no NSS, no state directory.

use std::sync::Arc;

use twostep_config::{Bounded, Config, Require};
use twostep_proto::{Step, Verdict};

use super::admin::Action;
use super::audit::LoginContext;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Core, Error, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

fn people() -> FakeAccounts {
    FakeAccounts::new()
        .with("alice", 1000, &["alice", "staff"])
        .with("bob", 1001, &["bob", "wheel"])
        .with("carol", 1002, &["carol", "staff", "contractors"])
}

fn core_with(accounts: FakeAccounts, f: impl FnOnce(&mut Config)) -> (Core, Arc<MemoryStore>) {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(3);
    c.recovery.count = Bounded::new(2);
    f(&mut c);
    let store = Arc::new(MemoryStore::new());
    let core = Core::with_parts(c, Box::new(Arc::clone(&store)), Box::new(accounts));
    (core, store)
}

/// Enrol `uid` as itself; the secret.
fn enrol(core: &Core, uid: u32) -> String {
    let p = core.enroll_begin(&caller(uid), b"", T0).unwrap();
    core.enroll_confirm(&caller(uid), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    p.secret_base32.clone()
}

fn begin(core: &Core, uid: u32, user: &str) -> Result<(String, Step), Error> {
    core.begin_login(&caller(uid), user, LoginContext::default(), T0)
}

fn verdict(step: &Step) -> Option<Verdict> {
    match step {
        Step::Done { verdict, .. } => Some(*verdict),
        Step::Prompt { .. } => None,
    }
}

#[test]
fn a_non_root_caller_checks_only_its_own_account_and_cannot_tell_others_from_nobody() {
    let (core, _) = core_with(people(), |_| {});
    let (_, step) = begin(&core, 1000, "alice").unwrap();
    assert_eq!(verdict(&step), Some(Verdict::NotEnrolled));
    let other = begin(&core, 1000, "bob").unwrap_err();
    let nobody = begin(&core, 1000, "nobody-here").unwrap_err();
    assert!(matches!(other, Error::AccessDenied(_)), "{other}");
    assert_eq!(other.to_string(), nobody.to_string());
    // root may check anyone, and learns who does not exist.
    assert!(begin(&core, 0, "bob").is_ok());
    assert!(matches!(
        begin(&core, 0, "nobody-here"),
        Err(Error::UnknownUser(_))
    ));
    // A malformed name is refused before any look-up, for everyone.
    assert!(matches!(
        begin(&core, 1000, "a\nb"),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn admin_methods_follow_admin_group_membership() {
    let (core, _) = core_with(people(), |c| c.policy.admin_group = "wheel".into());
    assert!(
        core.admin_show(&caller(1001), "alice", T0).is_ok(),
        "bob is in wheel"
    );
    for uid in [1000, 1002, 4242] {
        let e = core.admin_show(&caller(uid), "alice", T0).unwrap_err();
        assert!(matches!(e, Error::AccessDenied(_)), "{uid}: {e}");
        let e = core
            .admin_act(&caller(uid), "alice", Action::Unlock, T0)
            .unwrap_err();
        assert!(matches!(e, Error::AccessDenied(_)), "{uid}: {e}");
    }
    // No admin group: root only.
    let (core, _) = core_with(people(), |c| c.policy.admin_group = String::new());
    assert!(core.admin_show(&caller(1001), "alice", T0).is_err());
    assert!(core.admin_show(&caller(0), "alice", T0).is_ok());
}

#[test]
fn group_policy_requires_members_and_exempt_groups_win() {
    let (core, _) = core_with(people(), |c| {
        c.policy.require = Require::Groups;
        c.policy.groups = vec!["staff".into()];
        c.policy.exempt_groups = vec!["contractors".into()];
    });
    // alice (staff) must enrol inside her login.
    let (id, step) = begin(&core, 1000, "alice").unwrap();
    assert!(!id.is_empty());
    assert!(
        matches!(&step, Step::Prompt { prompt, .. } if prompt.contains("Code from your app")),
        "{step:?}"
    );
    // carol is staff too, but exempt; bob is in no required group.
    for (uid, user) in [(1002, "carol"), (1001, "bob")] {
        let (_, step) = begin(&core, uid, user).unwrap();
        assert_eq!(verdict(&step), Some(Verdict::NotEnrolled), "{user}");
    }
    let status = core.status(&caller(1000), T0).unwrap();
    assert!(status.required && !status.may_toggle);
    // An admin override beats the groups.
    core.admin_act(
        &caller(0),
        "carol",
        Action::Require(super::policy::Override::Required),
        T0,
    )
    .unwrap();
    assert!(verdict(&begin(&core, 1002, "carol").unwrap().1).is_none());
}

#[test]
fn an_account_look_up_outage_is_unavailable_not_busy() {
    let mut down = people();
    down.down = true;
    let (core, _) = core_with(down, |_| {});
    for e in [
        begin(&core, 0, "alice").unwrap_err(),
        core.status(&caller(1000), T0).unwrap_err(),
    ] {
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
    }
}

#[test]
fn a_wrong_code_is_saved_and_answered_wrong_in_one_transaction() {
    let (core, _) = core_with(people(), |_| {});
    let secret = enrol(&core, 1000);
    let (id, _) = begin(&core, 1000, "alice").unwrap();
    let step = core
        .answer(&caller(1000), &id, b"000000", T0.plus(60))
        .unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Denied));
    assert_eq!(core.status(&caller(1000), T0).unwrap().failures, 1);
    // A wrong proof for a self-service change is charged too, and refused.
    let e = core
        .regenerate_recovery(&caller(1000), b"000000", T0.plus(60))
        .unwrap_err();
    assert!(matches!(e, Error::WrongCode(_)), "{e}");
    assert_eq!(core.status(&caller(1000), T0).unwrap().failures, 2);
    // The right code resets the count.
    let (id, _) = begin(&core, 1000, "alice").unwrap();
    let now = T0.plus(90);
    let step = core
        .answer(&caller(1000), &id, code(&secret, now).as_bytes(), now)
        .unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Success));
    assert_eq!(core.status(&caller(1000), now).unwrap().failures, 0);
}

#[test]
fn a_vanished_record_of_an_enrolled_account_fails_closed_until_an_admin_reset() {
    let (core, store) = core_with(people(), |_| {});
    enrol(&core, 1000);
    enrol(&core, 1001);
    store.lose(1000);
    let e = begin(&core, 1000, "alice").unwrap_err();
    assert!(matches!(e, Error::CorruptRecord { .. }), "{e}");
    assert!(
        begin(&core, 1001, "bob").unwrap().1
            != Step::Done {
                verdict: Verdict::NotEnrolled,
                message: String::new()
            }
    );
    // The admin sees it, and a reset is the way out.
    assert!(!core
        .admin_show(&caller(0), "alice", T0)
        .unwrap()
        .error
        .is_empty());
    core.admin_act(&caller(0), "alice", Action::Reset, T0)
        .unwrap();
    let (_, step) = begin(&core, 1000, "alice").unwrap();
    assert_eq!(verdict(&step), Some(Verdict::NotEnrolled));
}

#[test]
fn sighup_applies_a_config_without_a_caller_and_reload_needs_an_admin() {
    let (core, _) = core_with(people(), |c| c.policy.admin_group = "wheel".into());
    let mut next = (*core.config()).clone();
    next.lockout.max_failures = Bounded::new(7);
    let e = core.reload(&caller(1000), || Ok(next.clone())).unwrap_err();
    assert!(matches!(e, Error::AccessDenied(_)), "{e}");
    assert_eq!(core.config().lockout.max_failures.get(), 3);
    core.reload(&caller(1001), || Ok(next.clone())).unwrap();
    assert_eq!(core.config().lockout.max_failures.get(), 7);
    next.lockout.max_failures = Bounded::new(9);
    core.apply_config(next.clone()).unwrap();
    assert_eq!(core.config().lockout.max_failures.get(), 9);
    // A non-admin's reload never even reads the file.
    let mut read = false;
    let _ = core.reload(&caller(1000), || {
        read = true;
        Ok(next.clone())
    });
    assert!(!read);
}
