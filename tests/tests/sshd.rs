// SPDX-License-Identifier: MIT OR Apache-2.0
//! OpenSSH end to end: Debian's real sshd (a test instance on a loopback port, with its own
//! config, host key and PAM service) and the real `ssh` client, driven through
//! `SSH_ASKPASS_REQUIRE=force`; the built module and daemon on a private bus.
//!
//! What each test proves is in its doc comment; the configuration is the one docs/sshd.md
//! shows (see `twostep_e2e::sshd` and `twostep_e2e::logins` for the exact files).
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::sshd::{Methods, Sshd};
use twostep_e2e::{otp, proc, qr, unique, Bus, Ctl, Daemon, DaemonConfig};

/// pam_unix delays every failed stack by ~2 s (±25 %); a refusal "without a hang" is one
/// that comes back well within the module's timeout plus that delay.
const REFUSED_QUICKLY: Duration = Duration::from_secs(8);

fn u64_of(status: &serde_json::Value, key: &str) -> u64 {
    status
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status.{key} is not an unsigned number: {status}"))
}

/// `AuthenticationMethods keyboard-interactive` with `@include common-auth` then the
/// module: the password is asked first, the code second; a wrong password never reaches
/// the second factor; a wrong code is refused with the daemon's message on the client; the
/// right code logs in; the daemon learns sshd's PAM service and the remote host.
#[test]
fn password_then_code() {
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), ""),
    );
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());

    let run = sshd
        .ssh(&user)
        .password("not-the-password")
        .code(&e.code_after(1))
        .run();
    assert!(run.refused(), "a wrong password must be refused:\n{run}");
    assert!(run.prompted("Password: "), "{run}");
    assert!(
        !run.prompted(twostep_e2e::prompts::CODE_START),
        "the code must not be asked after a wrong password (pam_unix is requisite in common-auth):\n{run}"
    );
    assert_eq!(u64_of(&ctl.status(user.user()), "failures"), 0);

    let run = sshd.ssh(&user).code(&e.wrong_code()).run();
    assert!(run.refused(), "a wrong code must be refused:\n{run}");
    assert_eq!(run.prompts.len(), 2, "password, then code:\n{run}");
    assert!(run.prompts[0].ends_with("Password: "), "{run}");
    assert!(
        run.prompts[1].ends_with(twostep_e2e::prompts::CODE),
        "{run}"
    );
    assert!(
        run.client_saw("Wrong verification code."),
        "the daemon's message must reach the ssh client:\n{run}\n{}",
        sshd.describe()
    );
    assert_eq!(u64_of(&ctl.status(user.user()), "failures"), 1);

    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(run.logged_in(), "{run}\n{}", sshd.describe());
    // The audit line's fields, each whole (the line also carries the uid and the tty).
    let audit = [
        format!("user={}", user.name()),
        format!("service={}", sshd.service()),
        "rhost=127.0.0.1".to_string(),
        "outcome=success".to_string(),
    ];
    assert!(
        daemon.log().lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            audit.iter().all(|a| fields.contains(&a.as_str()))
        }),
        "the daemon should log the login with sshd's PAM service and the remote host ({audit:?}):\n{}",
        daemon.log()
    );
}

/// `AuthenticationMethods publickey,keyboard-interactive` with a stack without pam_unix:
/// no key, no prompt at all; with the key, only the code is asked (never a password); a
/// wrong code is refused even with the right key.
#[test]
fn key_then_code_without_password() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::KeyThenKbdInteractive,
        &logins::code_only(bus.address(), ""),
    );
    let user = LoginUser::with_key();
    sshd.authorize(&user);
    let e = ctl.enroll(user.user());

    let run = sshd.ssh(&user).without_key().code(&e.code_after(1)).run();
    assert!(run.refused(), "no key, no login:\n{run}");
    assert!(
        run.prompts.is_empty(),
        "without the key nothing may be prompted:\n{run}"
    );
    assert!(
        run.output.stderr.contains("Permission denied (publickey)"),
        "{run}"
    );

    let run = sshd.ssh(&user).code(&e.wrong_code()).run();
    assert!(run.refused(), "right key, wrong code:\n{run}");
    assert_eq!(run.prompts.len(), 1, "only the code is asked:\n{run}");
    assert!(
        run.prompts[0].ends_with(twostep_e2e::prompts::CODE),
        "{run}"
    );
    assert!(
        sshd.log()
            .contains(&format!("Partial publickey for {}", user.name())),
        "sshd must have accepted the key as the first of two factors:\n{run}\n{}",
        sshd.describe()
    );

    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(run.logged_in(), "{run}\n{}", sshd.describe());
    assert!(
        !run.prompted("assword"),
        "no password prompt with key then code:\n{run}"
    );
}

/// After `max_failures` wrong codes over SSH the user is locked: the next login is refused
/// before any code is asked, and the daemon's lock message reaches the ssh client.
#[test]
fn lockout_message_reaches_the_client() {
    let bus = Bus::start();
    let config = DaemonConfig::default().set("lockout", "max_failures", "2");
    let _daemon = Daemon::start_with(&bus, config);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), ""),
    );
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());
    for _ in 0..2 {
        let run = sshd.ssh(&user).code(&e.wrong_code()).run();
        assert!(run.refused(), "{run}");
    }
    assert!(twostep_e2e::json::time(&ctl.status(user.user()), "locked_until") > otp::now());

    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(
        run.refused(),
        "a locked user must be refused, right code or not:\n{run}"
    );
    assert!(
        run.client_saw("Too many failed attempts: locked"),
        "the lock message must reach the ssh client:\n{run}\n{}",
        sshd.describe()
    );
    assert!(
        !run.prompted(twostep_e2e::prompts::CODE_START),
        "a locked user is not asked for a code:\n{run}"
    );
}

/// With `require = "all"`, a user without a second factor enrols during the SSH login:
/// the QR code reaches the client intact (it decodes, with zbarimg, to the key shown next
/// to it), the code typed from that key is accepted, the recovery codes are shown with an
/// Enter prompt, the login succeeds; the next login asks for a code of that key.
#[test]
fn enrolment_at_login_over_ssh() {
    let bus = Bus::start();
    let config = DaemonConfig::default().set("policy", "require", "\"all\"");
    let _daemon = Daemon::start_with(&bus, config);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), ""),
    );
    let user = LoginUser::create();
    assert_eq!(ctl.status(user.user())["enrolled"], false);

    let run = sshd.ssh(&user).run();
    assert!(run.logged_in(), "{run}\n{}", sshd.describe());
    assert_eq!(
        run.prompts.len(),
        3,
        "password, enrolment, recovery codes:\n{run}"
    );
    let enrol = &run.prompts[1];
    assert!(enrol.ends_with("Code from your app: "), "{run}");
    let e = run
        .enrolled
        .clone()
        .unwrap_or_else(|| panic!("no key was read from the enrolment prompt:\n{run}"));
    let picture = qr::find_terminal_qr(enrol)
        .unwrap_or_else(|| panic!("no QR code in the enrolment prompt the client got:\n{run}"));
    let dir = unique::temp_dir("ssh-qr");
    let decoded = qr::decode_terminal(&picture, dir.path())
        .unwrap_or_else(|err| panic!("the QR code that reached ssh does not decode: {err}\n{run}"));
    assert!(
        decoded.iter().any(|uri| uri.starts_with("otpauth://totp/")
            && uri.contains(&format!("secret={}", e.secret))),
        "the QR code should hold the key shown by hand ({}): {decoded:?}",
        e.secret
    );
    let ack = &run.prompts[2];
    assert!(
        ack.ends_with("Press Enter once you have saved them: "),
        "{run}"
    );
    assert!(ack.contains("recovery codes"), "{run}");
    assert_eq!(ctl.status(user.user())["enrolled"], true);

    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(
        run.logged_in(),
        "the enrolled key must work at the next login:\n{run}"
    );
    assert!(
        run.prompts[1].ends_with(twostep_e2e::prompts::CODE),
        "{run}"
    );
}

/// failmode=closed (the default), the daemon not running: the SSH login is refused
/// without a hang and the client is told why; with the bus itself gone, the same. The
/// module logs the cause.
#[test]
fn daemon_down_refuses_ssh_with_the_cause() {
    let bus = Bus::start();
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), ""),
    );
    let user = LoginUser::create();

    let run = sshd.ssh(&user).code("123456").run();
    assert!(run.refused(), "{run}");
    assert!(
        run.elapsed() < REFUSED_QUICKLY,
        "took {:?}:\n{run}",
        run.elapsed()
    );
    assert!(
        run.client_saw("second-factor service is not reachable"),
        "the cause must reach the ssh client:\n{run}\n{}",
        sshd.describe()
    );
    assert!(!run.prompted(twostep_e2e::prompts::CODE_START), "{run}");
    let logged = sshd.syslog().wait_for(
        &["pam_twostep", user.name(), "PAM_AUTHINFO_UNAVAIL"],
        Duration::from_secs(5),
    );
    assert!(
        logged.is_some(),
        "the module should log the unreachable daemon:\n{}",
        sshd.syslog().dump()
    );

    drop(bus);
    let run = sshd.ssh(&user).code("123456").run();
    assert!(run.refused(), "{run}");
    assert!(
        run.elapsed() < REFUSED_QUICKLY,
        "took {:?}:\n{run}",
        run.elapsed()
    );
    assert!(
        run.client_saw("second-factor service is not reachable"),
        "{run}"
    );
}

/// A daemon that owns its name but never answers (SIGSTOP) holds the login no longer than
/// the module's `timeout=` (2 s here): refused with the cause on the client; once the
/// daemon runs again, logins work.
#[test]
fn hung_daemon_is_bounded_by_the_module_timeout() {
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), "timeout=2"),
    );
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());
    let pid = daemon.pid().expect("daemon running");

    proc::signal(pid, "STOP");
    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    proc::signal(pid, "CONT");
    assert!(run.refused(), "{run}");
    assert!(
        run.elapsed() >= Duration::from_secs(2),
        "refused before the timeout ran out? {:?}\n{run}",
        run.elapsed()
    );
    assert!(
        run.elapsed() < Duration::from_secs(2) + REFUSED_QUICKLY,
        "the module's timeout=2 did not bound the wait: {:?}\n{run}",
        run.elapsed()
    );
    assert!(
        run.client_saw("second-factor service is not reachable"),
        "{run}"
    );

    assert!(daemon.is_running());
    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(run.logged_in(), "after SIGCONT logins work again:\n{run}");
}

/// failmode=open on this sshd's own service, daemon down: the login passes on the password
/// alone, no code is asked, and the module logs a FAIL-OPEN alert naming the user.
#[test]
fn failmode_open_lets_ssh_in_and_logs_loudly() {
    let bus = Bus::start();
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(bus.address(), "failmode=open"),
    );
    let user = LoginUser::create();

    let run = sshd.ssh(&user).run();
    assert!(run.logged_in(), "{run}\n{}", sshd.describe());
    assert!(run.elapsed() < REFUSED_QUICKLY, "{run}");
    assert!(!run.prompted(twostep_e2e::prompts::CODE_START), "{run}");
    let alert = sshd
        .syslog()
        .wait_for(
            &["pam_twostep", "FAIL-OPEN", user.name()],
            Duration::from_secs(5),
        )
        .unwrap_or_else(|| {
            panic!(
                "no FAIL-OPEN line from the module in syslog:\n{}",
                sshd.syslog().dump()
            )
        });
    // <1xx>: facility authpriv (10) * 8 + severity alert (1) = 81.
    assert!(
        alert.starts_with("<81>"),
        "expected an authpriv.alert line: {alert}"
    );
    assert!(alert.contains(sshd.service()), "{alert}");

    // The same service with the daemon up asks for the code as usual.
    let _daemon = Daemon::start(&bus);
    let e = Ctl::new(&bus).enroll(user.user());
    let run = sshd.ssh(&user).code(&e.wrong_code()).run();
    assert!(
        run.refused(),
        "failmode=open must not admit a wrong code:\n{run}"
    );
    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(run.logged_in(), "{run}");
}

/// `PasswordAuthentication yes` is no way around the code: sshd's password method runs the
/// same PAM stack, and its conversation can only answer every hidden prompt with the
/// password, which the module refuses as a code. The user gets in through
/// keyboard-interactive only, code included.
#[test]
fn password_authentication_cannot_skip_the_code() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let sshd = Sshd::start(
        Methods::PasswordAllowed,
        &logins::password_then_code(bus.address(), ""),
    );
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());

    let run = sshd
        .ssh(&user)
        .preferred("password")
        .code(&e.code_after(1))
        .run();
    assert!(
        run.refused(),
        "the password method must not log in:\n{run}\n{}",
        sshd.describe()
    );
    assert!(run.prompted("password: "), "{run}");
    assert!(!run.prompted(twostep_e2e::prompts::CODE_START), "{run}");
    assert!(
        sshd.log()
            .contains(&format!("Failed password for {}", user.name())),
        "{}",
        sshd.describe()
    );

    let run = sshd.ssh(&user).code(&e.code_after(1)).run();
    assert!(run.logged_in(), "{run}");
}
