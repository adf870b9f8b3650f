// SPDX-License-Identifier: MIT OR Apache-2.0
//! `su` and `login` on a terminal, end to end: the real programs (util-linux `su`,
//! shadow's `login`) on a pseudo-terminal driven by `expect`, the built module and daemon on
//! a private bus.
//!
//! Both programs have a fixed PAM service name ("su", "login"), so a test service cannot
//! be selected by name as with sshd or sudo. Instead each run happens in a private mount
//! namespace in which the test's PAM file is bind-mounted over `/etc/pam.d/su` or
//! `/etc/pam.d/login`: the real program reads our stack, under its real service name,
//! while the machine's files stay untouched and every other process still sees them. See
//! docs/su-login.md.
#![forbid(unsafe_code)]

use std::path::Path;

use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::ns::Namespace;
use twostep_e2e::pty::{Dialog, Driver, PtyRun};
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{unique, Bus, Ctl, Daemon, DaemonConfig, PamService, User};

/// `su TARGET -c 'echo su-ok-$(id -un)'` typed by `caller` on a terminal, with `pam`
/// standing in for /etc/pam.d/su.
fn su(pam: &PamService, caller: &User, target: &LoginUser, dialog: &Dialog) -> PtyRun {
    let driver = Driver::new(dialog);
    let cmd = logins::su_command(
        Namespace::new(),
        pam,
        caller,
        &driver,
        &[target.name(), "-c", "echo su-ok-$(id -un)"],
    );
    driver.run(cmd)
}

/// `login TARGET` run by root on a terminal (what getty does), with `pam` standing in for
/// /etc/pam.d/login; `driver` holds the dialog.
fn login(pam: &PamService, target: &LoginUser, driver: &Driver, syslog: &Syslog) -> PtyRun {
    let mut cmd = Namespace::new()
        .bind(
            &Path::new("/etc/pam.d").join(pam.name()),
            Path::new("/etc/pam.d/login"),
        )
        .syslog(syslog.socket())
        .command("expect");
    driver.args(&mut cmd);
    cmd.args(["login", target.name()]);
    driver.run(cmd)
}

fn audit_has(daemon: &Daemon, needles: &[&str]) -> bool {
    daemon
        .log()
        .lines()
        .any(|l| needles.iter().all(|n| l.contains(n)))
}

/// A user types `su OTHER` on a terminal: the password, then the code, each with echo off
/// (neither appears in what the terminal shows); the command runs as OTHER; the daemon
/// sees PAM service "su" and the caller's terminal.
fn su_asks_for_password_then_code_on_a_terminal() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let caller = User::create();
    let target = LoginUser::create();
    let e = ctl.enroll(target.user());
    let code = e.code_after(1);

    let run = su(
        &pam,
        &caller,
        &target,
        &Dialog::new()
            .expect("Password: ")
            .send(target.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(&code),
    );
    assert!(run.completed(), "{run}");
    assert_eq!(run.exit_code(), Some(0), "{run}");
    assert!(
        run.transcript()
            .contains(&format!("su-ok-{}", target.name())),
        "the command must run as the target:\n{run}"
    );
    assert!(
        !run.transcript().contains(&code) && !run.transcript().contains(target.password()),
        "the code and the password must not be echoed on the terminal:\n{run}"
    );
    assert!(
        audit_has(
            &daemon,
            &[
                &format!("user={}", target.name()),
                "service=su ",
                "tty=/dev/pts/",
                "outcome=success"
            ]
        ),
        "the daemon should see service su and the terminal:\n{}",
        daemon.log()
    );
}

/// A wrong code under su: refused ("su: Authentication failure", exit 1) and the daemon's
/// message is shown on the terminal.
fn su_refuses_a_wrong_code_and_says_so() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let caller = User::create();
    let target = LoginUser::create();
    let e = ctl.enroll(target.user());

    let run = su(
        &pam,
        &caller,
        &target,
        &Dialog::new()
            .expect("Password: ")
            .send(target.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(&e.wrong_code()),
    );
    assert!(run.completed(), "{run}");
    assert_eq!(run.exit_code(), Some(1), "{run}");
    assert!(
        run.transcript().contains("Wrong verification code."),
        "{run}"
    );
    assert!(
        run.transcript().contains("su: Authentication failure"),
        "{run}"
    );
    assert!(!run.transcript().contains("su-ok-"), "{run}");
}

/// The console: `login` on a terminal asks for the password, then the code, then starts
/// the user's shell; the daemon sees service "login" and the terminal.
fn login_on_a_terminal_asks_for_password_then_code() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let target = LoginUser::create();
    let e = ctl.enroll(target.user());
    let code = e.code_after(1);
    let syslog = Syslog::start();

    let driver = Driver::new(
        &Dialog::new()
            .expect("Password: ")
            .send(target.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(&code)
            .expect("$ ")
            .send("echo login-ok-$(id -un); exit"),
    );
    let run = login(&pam, &target, &driver, &syslog);
    assert!(run.completed(), "{run}\n--- syslog ---\n{}", syslog.dump());
    assert!(
        run.transcript()
            .contains(&format!("login-ok-{}", target.name())),
        "the shell must run as the user:\n{run}"
    );
    assert!(
        !run.transcript().contains(&code),
        "the code must not be echoed:\n{run}"
    );
    assert!(
        audit_has(
            &daemon,
            &[
                &format!("user={}", target.name()),
                "service=login ",
                "outcome=success"
            ]
        ),
        "{}",
        daemon.log()
    );
}

/// A wrong code at the console: "Login incorrect", no shell, the daemon's message shown.
fn login_refuses_a_wrong_code() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let target = LoginUser::create();
    let e = ctl.enroll(target.user());
    let syslog = Syslog::start();

    let driver = Driver::new(
        &Dialog::new()
            .expect("Password: ")
            .send(target.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(&e.wrong_code())
            .expect("Login incorrect")
            .end(),
    );
    let run = login(&pam, &target, &driver, &syslog);
    assert!(run.completed(), "{run}");
    assert!(
        run.transcript().contains("Wrong verification code."),
        "{run}"
    );
    assert!(!run.transcript().contains("login-ok-"), "{run}");
}

/// First login at the console with `require = "all"`: the QR code and the key are shown on
/// the terminal, the code typed from the key shown is accepted, the recovery codes wait for
/// Enter (an echo-on prompt), and the shell starts.
fn enrolment_at_the_console() {
    let bus = Bus::start();
    let config = DaemonConfig::default().set("policy", "require", "\"all\"");
    let _daemon = Daemon::start_with(&bus, config);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let target = LoginUser::create();
    let syslog = Syslog::start();

    let dialog = Dialog::new().expect("Password: ").send(target.password());
    let records = unique::temp_dir("enrol-record");
    let record = records.path().join("enrolled");
    let driver = Driver::new(
        &dialog
            .expect("Code from your app: ")
            .send_code_of_shown_key(&record)
            .expect("Press Enter once you have saved them: ")
            .send("")
            .expect("$ ")
            .send("echo login-ok-$(id -un); exit"),
    );
    let run = login(&pam, &target, &driver, &syslog);
    assert!(run.completed(), "{run}");
    assert!(
        run.transcript()
            .contains(&format!("login-ok-{}", target.name())),
        "{run}"
    );
    assert!(
        run.transcript().contains('█') && run.transcript().contains("key by hand:"),
        "the QR code and the key must be shown on the terminal:\n{run}"
    );
    assert!(run.transcript().contains("recovery codes"), "{run}");
    assert!(
        std::fs::read_to_string(&record).is_ok(),
        "the driver typed a code of the shown key"
    );
    assert_eq!(ctl.status(target.user())["enrolled"], true);
}

// On the bus and on the login socket (issue 18).
twostep_e2e::both_transports!(
    su_asks_for_password_then_code_on_a_terminal,
    su_refuses_a_wrong_code_and_says_so,
    login_on_a_terminal_asks_for_password_then_code,
    login_refuses_a_wrong_code,
    enrolment_at_the_console,
);
