// SPDX-License-Identifier: MIT OR Apache-2.0
//! Lockout through the real stack (issue 5): a private bus, the built twostepd, the module
//! driven by pamtester, codes from oathtool.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, DaemonConfig, Stack, User};

fn lockout(max_failures: u32, lockout_seconds: u64) -> DaemonConfig {
    DaemonConfig::default()
        .set("lockout", "max_failures", &max_failures.to_string())
        .set("lockout", "lockout_seconds", &lockout_seconds.to_string())
        .set("recovery", "count", "3")
}

fn status_u64(s: &Stack, user: &User, key: &str) -> u64 {
    let status = s.ctl.status(user);
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status.{key}: {status}"))
}

/// Lines of the daemon's log with this outcome for this user.
fn outcomes(s: &Stack, user: &User, outcome: &str) -> usize {
    let needle = format!("user={} ", user.name());
    let tag = format!("outcome={outcome}");
    s.daemon
        .log()
        .lines()
        .filter(|l| l.contains(&needle) && l.ends_with(&tag))
        .count()
}

#[test]
fn locked_user_is_refused_with_maxtries_and_a_message_then_the_lock_ends() {
    let s = Stack::start_with(lockout(3, 3), "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for _ in 0..3 {
        s.pam
            .login(user.name(), &e.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    let run = s.pam.login(user.name(), &e.code_after(1));
    run.assert_refused_with(strerror::MAXTRIES);
    let said = run.conversation();
    assert!(said.contains("locked"), "the user is told: {run}");
    assert_eq!(outcomes(&s, &user, "locked"), 1);
    // Not evaluated while locked: the right code was not spent, and works after the lock.
    std::thread::sleep(Duration::from_secs(4));
    s.pam.login(user.name(), &e.code_after(1)).assert_success();
    assert_eq!(status_u64(&s, &user, "failures"), 0);
    assert_eq!(
        twostep_e2e::json::time(&s.ctl.status(&user), "locked_until"),
        0
    );
}

#[test]
fn zero_lockout_waits_for_an_admin_unlock() {
    let s = Stack::start_with(lockout(2, 0), "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for _ in 0..2 {
        s.pam.login(user.name(), &e.wrong_code()).assert_refused();
    }
    assert_eq!(
        twostep_e2e::json::time(&s.ctl.status(&user), "locked_until"),
        u64::MAX
    );
    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
    let out = s.ctl.run(None, &["user", "unlock", user.name()], b"");
    assert!(out.status.success(), "{out:?}");
    s.pam.login(user.name(), &e.code_after(1)).assert_success();
}

#[test]
fn the_lock_survives_a_restart_and_a_kill9() {
    let mut s = Stack::start_with(lockout(2, 600), "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for _ in 0..2 {
        s.pam.login(user.name(), &e.wrong_code()).assert_refused();
    }
    s.daemon.restart();
    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
    s.daemon.kill9();
    s.daemon.restart();
    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
    assert!(twostep_e2e::json::time(&s.ctl.status(&user), "locked_until") > otp::now() + 500);
}

#[test]
fn parallel_wrong_attempts_never_exceed_max_failures_evaluated() {
    // Why the wider session bound: 50 logins of one user at once would otherwise meet the
    // per-account bound (16 conversations, see sessions.rs) and some be refused as busy
    // before their code is looked at; this test is about the lockout's atomicity.
    let s = Stack::start_with(
        lockout(5, 600).set("login", "max_sessions_per_user", "64"),
        "",
    );
    let user = User::create();
    let e = s.ctl.enroll(&user);
    let wrong = e.wrong_code();
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| scope.spawn(|| s.pam.login(user.name(), &wrong)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("login thread panicked")))
            .collect()
    });
    assert!(runs.iter().all(|r| r.refused()));
    let evaluated = outcomes(&s, &user, "wrong-code");
    let locked = outcomes(&s, &user, "locked");
    assert_eq!(evaluated, 5, "exactly max_failures codes evaluated");
    assert_eq!(
        evaluated + locked,
        50,
        "every attempt answered:\n{}",
        s.daemon.log()
    );
    assert_eq!(status_u64(&s, &user, "failures"), 5);
    let maxtries = runs
        .iter()
        .filter(|r| r.pam_error() == Some(strerror::MAXTRIES))
        .count();
    assert_eq!(maxtries, 45);
}

#[test]
fn recovery_code_failures_count_too() {
    let s = Stack::start_with(lockout(3, 600), "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for guess in [
        "aaaaa-bbbbb-ccccc",
        "ddddd-eeeee-fffff",
        "ggggg-hhhhh-jjjjj",
    ] {
        s.pam
            .login(user.name(), guess)
            .assert_refused_with(strerror::AUTH_ERR);
    }
    assert_eq!(status_u64(&s, &user, "failures"), 3);
    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
}

#[test]
fn a_user_calling_the_daemon_directly_shares_the_counter() {
    // The self-service proof (here `twostepctl disable` with a wrong code, run as the user)
    // is charged to the same counter as PAM logins.
    let s = Stack::start_with(lockout(2, 600), "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    s.pam.login(user.name(), &e.wrong_code()).assert_refused();
    let out = s.ctl.run(
        Some(user.creds()),
        &["disable"],
        format!("{}\n", e.wrong_code()).as_bytes(),
    );
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(status_u64(&s, &user, "failures"), 2);
    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
}
