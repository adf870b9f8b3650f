// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real `sudo` (Debian 12, 1.9.13) end to end: a test user, a sudoers drop-in that
//! points that user at a test PAM service (`Defaults:USER pam_service=…`), `sudo -S` fed
//! the password and the code on stdin, the built module and daemon on a private bus.
//! `/etc/sudoers` and `/etc/pam.d/sudo` are never touched.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::sudo::{sudo, sudo_logged, SudoersDropIn};
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{otp, Bus, Ctl, Daemon, DaemonConfig, PamService};

fn u64_of(status: &serde_json::Value, key: &str) -> u64 {
    status
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status.{key} is not an unsigned number: {status}"))
}

fn outcomes(daemon: &Daemon, user: &str) -> usize {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains(&format!("user={user} service=")) && l.contains("outcome="))
        .count()
}

/// `sudo -S -k true` asks for the password, then the code, and runs the command; the
/// daemon sees sudo's PAM service. A wrong password never reaches the code prompt.
#[test]
fn sudo_asks_for_password_then_code() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let _sudoers = SudoersDropIn::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());

    let out = sudo(
        &user,
        &["-S", "-k", "true"],
        &format!("wrong-{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(!out.success(), "a wrong password must be refused:\n{out}");
    assert!(
        !out.stderr.contains("Verification code"),
        "no code prompt after a wrong password:\n{out}"
    );

    let out = sudo(
        &user,
        &["-S", "-k", "id", "-u"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "0", "the command ran as root:\n{out}");
    let password_prompt = out
        .stderr
        .find(&format!("[sudo] password for {}", user.name()));
    let code_prompt = out.stderr.find("Verification code: ");
    assert!(
        matches!((password_prompt, code_prompt), (Some(p), Some(c)) if p < c),
        "password prompt, then code prompt, on stderr:\n{out}"
    );
    let audit = format!("user={} service={}", user.name(), pam.name());
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| l.contains(&audit) && l.contains("outcome=success")),
        "{audit} outcome=success missing from the daemon log:\n{}",
        daemon.log()
    );
}

/// A wrong code is refused (sudo's "incorrect password attempt", exit 1), counted by the
/// daemon, and the command does not run.
#[test]
fn sudo_refuses_a_wrong_code() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let _sudoers = SudoersDropIn::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());

    let out = sudo(
        &user,
        &["-S", "-k", "echo", "ran"],
        &format!("{}\n{}\n", user.password(), e.wrong_code()),
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.stderr.contains("Verification code: "), "{out}");
    assert!(out.stderr.contains("incorrect password attempt"), "{out}");
    assert_eq!(u64_of(&ctl.status(user.user()), "failures"), 1);
}

/// Debian 12's sudo (1.9.13) always calls `pam_authenticate` with PAM_SILENT (the sudoers
/// option `pam_silent` to change that only exists from sudo 1.9.16), and the module honours
/// it: messages that come without a prompt (wrong code, locked) are not shown; prompts are.
/// A locked user is still refused before any code is asked, and the cause is in syslog.
#[test]
fn sudo_is_silent_about_the_cause_which_goes_to_syslog() {
    let bus = Bus::start();
    let config = DaemonConfig::default().set("lockout", "max_failures", "1");
    let _daemon = Daemon::start_with(&bus, config);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let _sudoers = SudoersDropIn::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());
    let syslog = Syslog::start();

    let out = sudo_logged(
        &user,
        &["-S", "-k", "true"],
        &format!("{}\n{}\n", user.password(), e.wrong_code()),
        &syslog,
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("Verification code: "),
        "prompts are shown:\n{out}"
    );
    assert!(
        !out.stderr.contains("Wrong verification code"),
        "sudo 1.9.13 passes PAM_SILENT: the module's message is not shown:\n{out}"
    );
    assert!(u64_of(&ctl.status(user.user()), "locked_until") > otp::now());

    let out = sudo_logged(
        &user,
        &["-S", "-k", "true"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
        &syslog,
    );
    assert!(!out.success(), "locked: {out}");
    assert!(!out.stderr.contains("Verification code"), "{out}");
    assert!(!out.stderr.contains("Too many failed attempts"), "{out}");
    let line = syslog.wait_for(
        &["pam_twostep", user.name(), "locked; returning PAM_MAXTRIES"],
        Duration::from_secs(5),
    );
    assert!(
        line.is_some(),
        "the cause must be in syslog for the admin:\n{}",
        syslog.dump()
    );
}

/// sudo's own credential cache: with `timestamp_timeout` > 0, a second sudo within the
/// timeout runs without asking PAM at all — no password and no code — until `sudo -K`.
/// This is why docs/sudo.md discusses `timestamp_timeout`.
#[test]
fn sudo_timestamp_cache_skips_the_second_factor() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    // Why global: without a tty sudo keys the cache by parent pid, which differs per run.
    let _sudoers = SudoersDropIn::for_user(
        user.name(),
        pam.name(),
        &["timestamp_timeout=5", "timestamp_type=global"],
    );
    let e = ctl.enroll(user.user());

    let out = sudo(
        &user,
        &["-S", "true"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(out.success(), "{out}");
    let asked = outcomes(&daemon, user.name());
    assert_eq!(asked, 1, "{}", daemon.log());

    let out = sudo(&user, &["-n", "true"], "");
    assert!(
        out.success(),
        "within timestamp_timeout sudo runs without asking:\n{out}"
    );
    assert_eq!(
        outcomes(&daemon, user.name()),
        asked,
        "the cached run must not have reached the module"
    );

    sudo(&user, &["-K"], "").assert_success();
    let out = sudo(&user, &["-n", "true"], "");
    assert!(
        !out.success(),
        "after sudo -K authentication is needed again:\n{out}"
    );
    assert!(out.stderr.contains("password is required"), "{out}");
}

/// failmode=closed with the daemon down: sudo is refused quickly, the command never runs,
/// and the module logs why (sudo does not show it: PAM_SILENT).
#[test]
fn sudo_with_the_daemon_down_is_refused() {
    let bus = Bus::start();
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let _sudoers = SudoersDropIn::for_user(user.name(), pam.name(), &[]);
    let syslog = Syslog::start();
    let out = sudo_logged(
        &user,
        &["-S", "-k", "echo", "ran"],
        &format!("{}\n123456\n", user.password()),
        &syslog,
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.elapsed < Duration::from_secs(8), "{out}");
    assert!(!out.stderr.contains("Verification code"), "{out}");
    let line = syslog.wait_for(
        &[
            "pam_twostep",
            user.name(),
            "daemon unreachable",
            "PAM_AUTHINFO_UNAVAIL",
        ],
        Duration::from_secs(5),
    );
    assert!(line.is_some(), "{}", syslog.dump());
}
