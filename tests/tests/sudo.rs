// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real `sudo` (Debian 12, 1.9.13) end to end: a test user, a sudoers drop-in that
//! points that user at a test PAM service (`Defaults:USER pam_service=…`), `sudo -S` fed
//! the password and the code on stdin, the built module and daemon on a private bus.
//! `/etc/sudoers` and `/etc/pam.d/sudo` are never touched.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use twostep_e2e::documented::{self, DocStack};
use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::ns::Namespace;
use twostep_e2e::sudo::{sudo, sudo_in, sudo_logged, SudoersDropIn};
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{otp, Bus, Ctl, Daemon, DaemonConfig, Enrolled, Output, PamService};

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

/// The PAM file docs/sudo.md shows under the caption `` `/etc/pam.d/NAME` ``, for the
/// built module on `bus`.
fn documented_service(name: &str, bus: &Bus) -> PamService {
    let block = documented::block("docs/sudo.md", &format!("`/etc/pam.d/{name}`"));
    PamService::new(&DocStack { block }.render(bus.address()))
}

/// One `sudo -S -k MODE id -u` run as `user` (`run` decides where), fed the password and
/// the code: the password prompt, then the code prompt, then root.
fn asks_password_then_code(
    mode: &str,
    user: &LoginUser,
    code: &str,
    run: &dyn Fn(&[&str], &str) -> Output,
) {
    let out = run(
        &["-S", "-k", mode, "id", "-u"],
        &format!("{}\n{code}\n", user.password()),
    );
    assert!(out.success(), "sudo {mode}: {out}");
    assert_eq!(out.stdout.trim(), "0", "sudo {mode} ran as root:\n{out}");
    let password_prompt = out
        .stderr
        .find(&format!("[sudo] password for {}", user.name()));
    let code_prompt = out.stderr.find("Verification code: ");
    assert!(
        matches!((password_prompt, code_prompt), (Some(p), Some(c)) if p < c),
        "sudo {mode} must ask for the password, then the code:\n{out}"
    );
}

/// `sudo -i` and `sudo -s` each ask for the code; a wrong code on `sudo -i` is refused
/// and counted; a wrong password on `sudo -i` never reaches the code.
fn sudo_i_and_sudo_s_ask(
    ctl: &Ctl,
    user: &LoginUser,
    e: &Enrolled,
    run: &dyn Fn(&[&str], &str) -> Output,
) {
    asks_password_then_code("-i", user, &e.code_after(1), run);
    asks_password_then_code("-s", user, &e.code_after(2), run);

    let out = run(
        &["-S", "-k", "-i", "echo", "ran"],
        &format!("{}\n{}\n", user.password(), e.wrong_code()),
    );
    assert!(!out.success(), "sudo -i with a wrong code: {out}");
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.stderr.contains("Verification code: "), "{out}");
    assert_eq!(u64_of(&ctl.status(user.user()), "failures"), 1);

    let out = run(
        &["-S", "-k", "-i", "echo", "ran"],
        &format!("wrong-{}\n{}\n", user.password(), e.wrong_code()),
    );
    assert!(!out.success(), "sudo -i with a wrong password: {out}");
    assert!(!out.stderr.contains("Verification code"), "{out}");
    assert_eq!(
        u64_of(&ctl.status(user.user()), "failures"),
        1,
        "a wrong password must not be charged"
    );
}

/// Issue 19, fault 10: the drop-in of docs/sudo.md (read from the page, with the user and
/// the services renamed) must cover `sudo -i` (`pam_login_service`) as well as `sudo -s`
/// (`pam_service`); with `pam_service` alone, `sudo -i` gave root for the password alone.
#[test]
fn sudo_i_and_sudo_s_ask_for_the_code_with_the_documented_drop_in() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let service = documented_service("sudo-twostep", &bus);
    let login_service = documented_service("sudo-twostep-i", &bus);
    let user = LoginUser::create();
    let drop_in = documented::block("docs/sudo.md", "`/etc/sudoers.d/twostep`");
    let head: Vec<String> = drop_in
        .lines
        .iter()
        .filter(|l| l.starts_with("Defaults"))
        .map(|l| {
            l.replace("alice", user.name())
                .replace("sudo-twostep-i", login_service.name())
                .replace("sudo-twostep", service.name())
        })
        .collect();
    assert!(!head.is_empty(), "no Defaults line in:\n{}", drop_in.text());
    let _sudoers = SudoersDropIn::with_head(user.name(), &head.join("\n"));
    let e = ctl.enroll(user.user());
    sudo_i_and_sudo_s_ask(&ctl, &user, &e, &|args, stdin| sudo(&user, args, stdin));
}

/// The other way docs/sudo.md shows: the module in `/etc/pam.d/sudo` and
/// `/etc/pam.d/sudo-i` (sudo's default service names). The page's two blocks are
/// bind-mounted over the real files in a private mount namespace, so only the sudo run
/// there sees them; the drop-in names no service.
#[test]
fn sudo_i_asks_for_the_code_with_the_documented_sudo_and_sudo_i_files() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let sudo_file = documented_service("sudo", &bus);
    let sudo_i_file = documented_service("sudo-i", &bus);
    let user = LoginUser::create();
    let _sudoers = SudoersDropIn::with_head(user.name(), "");
    let e = ctl.enroll(user.user());
    let pam_d = Path::new("/etc/pam.d");
    let run = |args: &[&str], stdin: &str| {
        let ns = Namespace::new()
            .bind(&pam_d.join(sudo_file.name()), &pam_d.join("sudo"))
            .bind(&pam_d.join(sudo_i_file.name()), &pam_d.join("sudo-i"));
        sudo_in(ns, &user, args, stdin)
    };
    sudo_i_and_sudo_s_ask(&ctl, &user, &e, &run);
}
