// SPDX-License-Identifier: MIT OR Apache-2.0
//! The core login scenarios, end to end: a private dbus-daemon with the shipped policy,
//! the built `twostepd`, `libpam_twostep.so` driven by pamtester, codes from oathtool.
//!
//! Time: TOTP steps last 30 s and the daemon runs with `window = 1`. Enrolment confirms
//! with the code of the step before now (see `Ctl::enroll`), so the current and the next
//! step (`code_after(1)`, `code_after(2)`) are two distinct codes a test can spend without
//! waiting for the clock; both stay inside the window for at least 30 s.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use twostep_e2e::bus::TWOSTEP_NAME;
use twostep_e2e::otp;
use twostep_e2e::pam::strerror;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamRun, PamService, Stack, User};

/// "Quickly": an unreachable daemon must not make a login hang; pamtester's own timeout
/// is 30 s.
const QUICK: Duration = Duration::from_secs(5);

fn u64_of(status: &serde_json::Value, key: &str) -> u64 {
    status
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status.{key} is not an unsigned number: {status}"))
}

/// Refused fast with PAM_AUTHINFO_UNAVAIL, telling the user the second-factor service is
/// not reachable.
#[track_caller]
fn assert_unreachable(run: &PamRun) {
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    assert!(
        run.elapsed() < QUICK,
        "took {:?}, not quick:\n{run}",
        run.elapsed()
    );
    let said = run.conversation().to_lowercase();
    assert!(
        ["reach", "unavailable", "not available"]
            .iter()
            .any(|w| said.contains(w)),
        "the module should tell the user the second-factor service is not reachable:\n{run}"
    );
}

#[test]
fn correct_code_is_accepted() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);
    let before = s.ctl.status(&user);
    assert_eq!(before["enrolled"], true, "{before}");

    let run = s.pam.login(user.name(), &e.code_after(1));
    run.assert_success();
    assert!(
        run.conversation().to_lowercase().contains("code"),
        "the module should prompt for a code:\n{run}"
    );
    let after = s.ctl.status(&user);
    assert!(
        twostep_e2e::json::time(&after, "last_success") >= otp::now() - 60,
        "{after}"
    );
    assert_eq!(u64_of(&after, "failures"), 0, "{after}");
}

#[test]
fn wrong_code_is_refused() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);

    s.pam
        .login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    let status = s.ctl.status(&user);
    assert_eq!(u64_of(&status, "failures"), 1, "{status}");
    assert!(
        twostep_e2e::json::time(&status, "last_failure") >= otp::now() - 60,
        "{status}"
    );

    // The user is not locked out by one failure: the right code still works.
    s.pam.login(user.name(), &e.code_after(1)).assert_success();
}

#[test]
fn the_same_code_twice_is_refused() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);
    let code = e.code_after(1);

    s.pam.login(user.name(), &code).assert_success();
    s.pam
        .login(user.name(), &code)
        .assert_refused_with(strerror::AUTH_ERR);
    // A later step's code is still good: the refusal was the replay, nothing else.
    s.pam.login(user.name(), &e.code_after(2)).assert_success();
}

#[test]
fn codes_outside_the_window_are_refused() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);
    // Why settle: the assertions below are about "now"; make sure now has 5 s left.
    let now = otp::settled_step(e.period, Duration::from_secs(5));

    s.pam
        .login(user.name(), &e.code_at_step(now - 2))
        .assert_refused_with(strerror::AUTH_ERR);
    // Two steps ahead is outside `window = 1` as well; unlike the past side, no replay
    // mark can explain this refusal.
    s.pam
        .login(user.name(), &e.code_at_step(now + 2))
        .assert_refused_with(strerror::AUTH_ERR);
    // One step ahead is inside the window.
    s.pam
        .login(user.name(), &e.code_at_step(now + 1))
        .assert_success();
}

/// DESIGN: locked → PAM_MAXTRIES, and a lock means the code is not evaluated at all.
#[test]
fn too_many_failures_lock_out_even_the_right_code() {
    let config = DaemonConfig::default().set("lockout", "max_failures", "3");
    let s = Stack::start_with(config, "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for _ in 0..3 {
        s.pam.login(user.name(), &e.wrong_code()).assert_refused();
    }
    let status = s.ctl.status(&user);
    assert!(
        twostep_e2e::json::time(&status, "locked_until") > otp::now(),
        "{status}"
    );

    s.pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
}

#[test]
fn not_enrolled_is_refused_unless_nullok() {
    let s = Stack::start();
    let nullok = PamService::twostep(s.bus.address(), "nullok");
    let plain = User::create();
    let enrolled = User::create();
    let e = s.ctl.enroll(&enrolled);

    s.pam.login(plain.name(), "123456").assert_refused();
    // pam_permit before us, PAM_IGNORE from us: the stack succeeds.
    nullok
        .auth(plain.name())
        .answer("123456")
        .run()
        .assert_success();
    // nullok does not open the door for a user who has a second factor.
    nullok
        .login(enrolled.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    nullok
        .login(enrolled.name(), &e.code_after(1))
        .assert_success();
}

#[test]
fn daemon_not_running_is_refused_quickly() {
    let bus = Bus::start();
    assert!(!bus.name_has_owner(TWOSTEP_NAME));
    let pam = PamService::twostep(bus.address(), "");
    let user = User::create();
    assert_unreachable(&pam.login(user.name(), "123456"));
}

#[test]
fn the_daemon_exits_when_its_bus_goes_away() {
    // A service manager restarts it against the new bus; a kept, dead connection would look
    // alive and answer nobody.
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus);
    drop(bus);
    let status = daemon.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| !s.success()),
        "twostepd did not exit with a failure: {status:?}\n{}",
        daemon.log()
    );
    assert!(
        daemon.log().contains("lost the connection to the bus"),
        "{}",
        daemon.log()
    );
}

#[test]
fn bus_socket_absent_is_refused_quickly() {
    let dir = twostep_e2e::unique::temp_dir("nobus");
    let address = format!("unix:path={}", dir.path().join("absent.sock").display());
    let pam = PamService::twostep(&address, "");
    let user = User::create();
    assert_unreachable(&pam.login(user.name(), "123456"));
}

#[test]
fn failmode_open_admits_only_when_the_daemon_is_down() {
    let bus = Bus::start();
    let open = PamService::twostep(bus.address(), "failmode=open");
    let user = User::create();
    let run = open.login(user.name(), "123456");
    run.assert_success();
    assert!(run.elapsed() < QUICK, "{run}");

    // With the daemon up, failmode=open changes nothing about a wrong code.
    let _daemon = Daemon::start(&bus);
    let e = Ctl::new(&bus).enroll(&user);
    open.login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    open.login(user.name(), &e.code_after(1)).assert_success();
}

/// DESIGN: a non-root caller may run the login checks only for its own user.
#[test]
fn a_user_cannot_check_codes_for_another_user() {
    let s = Stack::start();
    let mallory = User::create();
    let victim = User::create();
    let e = s.ctl.enroll(&victim);
    let code = e.code_after(1);

    s.pam
        .auth(victim.name())
        .answer(&code)
        .caller(mallory.creds())
        .run()
        .assert_refused();
    // The refused call touched nothing of the victim's: no failure to lock them out with,
    // and the code was not spent.
    let status = s.ctl.status(&victim);
    assert_eq!(u64_of(&status, "failures"), 0, "{status}");
    s.pam.login(victim.name(), &code).assert_success();
}

/// A screen locker runs PAM as the user: checking one's own code is allowed.
#[test]
fn a_user_may_check_their_own_code() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);
    s.pam
        .auth(user.name())
        .answer(e.code_after(1))
        .caller(user.creds())
        .run()
        .assert_success();
}

/// The module checks that the daemon's name is owned by uid 0 before trusting any answer.
#[test]
fn a_daemon_name_owned_by_a_user_is_not_trusted() {
    let bus = Bus::permissive();
    // Users before daemons: a daemon running as `rogue` must be gone before userdel.
    let rogue = User::create();
    let other = User::create();
    let pam = PamService::twostep(bus.address(), "");
    let nullok = PamService::twostep(bus.address(), "nullok");
    let mut fake = Daemon::start_as(&bus, DaemonConfig::default(), &rogue);
    assert_eq!(bus.name_owner_uid(TWOSTEP_NAME), Some(rogue.uid()));

    // The rogue daemon would say "success" for a right code …
    let e = Ctl::new(&bus).enroll(&rogue);
    let run = pam.login(rogue.name(), &e.code_after(1));
    run.assert_refused();
    assert!(run.elapsed() < QUICK, "{run}");
    // … and "not enrolled" (→ PAM_IGNORE with nullok) for anyone else.
    nullok.login(other.name(), "123456").assert_refused();
    fake.kill9();

    // Control: the same permissive bus with a root daemon is trusted.
    let _real = Daemon::start(&bus);
    assert_eq!(bus.name_owner_uid(TWOSTEP_NAME), Some(0));
    nullok.login(other.name(), "123456").assert_success();
}

#[test]
fn malformed_answers_are_refused_and_the_daemon_keeps_serving() {
    // Room for every malformed attempt below without reaching the lockout.
    let config = DaemonConfig::default().set("lockout", "max_failures", "50");
    let mut s = Stack::start_with(config, "");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    let code = e.code_after(1);

    let huge = code.repeat(10 * 1024 / code.len() + 1);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "10 KB of digits starting with the right code",
            huge.into_bytes(),
        ),
        ("non-UTF-8", vec![0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa]),
        ("empty", Vec::new()),
        ("right code plus a digit", format!("{code}0").into_bytes()),
        // (A right code with a leading space is the code: issue 20 item 5, typed_codes.rs.)
        (
            "right code with a letter in front",
            format!("x{code}").into_bytes(),
        ),
        ("Arabic-Indic digits", "١٢٣٤٥٦".as_bytes().to_vec()),
    ];
    for (what, answer) in cases {
        let run = s.pam.auth(user.name()).answer(&answer).run();
        assert!(
            run.refused() && !run.succeeded(),
            "{what} must be refused:\n{run}"
        );
        assert!(
            s.daemon.is_running(),
            "twostepd died on {what}:\n{}",
            s.daemon.log()
        );
    }
    s.pam.login(user.name(), &code).assert_success();
}

/// kill -9 while several users log in; after a restart every record is readable, a code
/// accepted before the kill stays spent, a fresh code works, and no failure was lost.
#[test]
fn kill9_during_logins_loses_nothing() {
    // The config caps max_failures at 100; the stream below stays under it.
    let config = DaemonConfig::default().set("lockout", "max_failures", "100");
    let mut s = Stack::start_with(config, "");
    let users: Vec<User> = (0..3).map(|_| User::create()).collect();
    let enrolled: Vec<_> = users.iter().map(|u| s.ctl.enroll(u)).collect();
    for (u, e) in users.iter().zip(&enrolled) {
        s.pam.login(u.name(), &e.code_after(1)).assert_success();
    }

    let stop = AtomicBool::new(false);
    let denied = Mutex::new(vec![0u64; users.len()]);
    let attempts = Mutex::new(0u64);
    let while_down = Mutex::new(0u64);
    std::thread::scope(|scope| {
        for (i, (u, e)) in users.iter().zip(&enrolled).enumerate() {
            let (stop, denied, attempts, while_down, pam) =
                (&stop, &denied, &attempts, &while_down, &s.pam);
            scope.spawn(move || {
                let replay = e.code_after(1);
                let wrong = e.wrong_code();
                let mut n = 0u64;
                while !stop.load(Ordering::SeqCst) && n < 60 {
                    let code = if n % 2 == 0 { &wrong } else { &replay };
                    let run = pam.login(u.name(), code);
                    assert!(!run.succeeded(), "a wrong or spent code got in:\n{run}");
                    assert!(!run.output.timed_out, "{run}");
                    // Only wrong codes are charged; a replay is refused uncharged
                    // (issue 20, item 17).
                    if code == &wrong && run.pam_error() == Some(strerror::AUTH_ERR) {
                        denied.lock().unwrap()[i] += 1;
                    }
                    if run.pam_error() == Some(strerror::AUTHINFO_UNAVAIL) {
                        *while_down.lock().unwrap() += 1;
                    }
                    *attempts.lock().unwrap() += 1;
                    n += 1;
                    std::thread::sleep(Duration::from_millis(30));
                }
            });
        }
        std::thread::sleep(Duration::from_millis(600));
        s.daemon.kill9();
        std::thread::sleep(Duration::from_millis(200));
        s.daemon.restart();
        std::thread::sleep(Duration::from_millis(600));
        stop.store(true, Ordering::SeqCst);
    });
    let denied = denied.into_inner().unwrap();
    assert!(
        denied.iter().all(|d| *d > 0),
        "the stream should have reached the daemon for every user: {denied:?} of {} attempts",
        attempts.into_inner().unwrap()
    );
    // The stream really ran across the outage.
    assert!(
        *while_down.lock().unwrap() > 0,
        "no login saw the daemon down"
    );

    for ((u, e), denied) in users.iter().zip(&enrolled).zip(denied) {
        let status = s
            .ctl
            .try_status(u)
            .unwrap_or_else(|err| panic!("record of {} unreadable after kill -9: {err}", u.name()));
        assert_eq!(status["enrolled"], true, "{status}");
        // Every refusal the daemon answered was durable before it answered.
        assert!(
            u64_of(&status, "failures") >= denied,
            "{}: {denied} refusals answered, status {status}",
            u.name()
        );
        s.pam
            .login(u.name(), &e.code_after(1))
            .assert_refused_with(strerror::AUTH_ERR);
        s.pam.login(u.name(), &e.code_after(2)).assert_success();
    }
    assert!(s.daemon.is_running(), "{}", s.daemon.log());
}
