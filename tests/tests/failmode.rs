// SPDX-License-Identifier: MIT OR Apache-2.0
//! `failmode=open` opens only on a daemon that is positively not there, and the module
//! never asks for a user name (issue 19, faults 1 and 5).
//!
//! The rule (DESIGN.md, pam_twostep(8)): fail open only when, before any login call was
//! sent, the fixed socket does not exist or refuses the connection (ENOENT,
//! ECONNREFUSED), or the bus driver itself says the daemon's name has no owner. A
//! timeout, a resource error, any error after the first login call, and any error name
//! sent by anyone but the bus driver fail closed, and every fail-open is logged at alert.
//!
//! Real components: a private dbus-daemon with the shipped policy, the built `twostepd`
//! (or a stand-in owning its name, [`FakeOwner`], to send error names the real daemon
//! never sends), the built module driven through real libpam by pamtester or
//! `twostep-e2e-pam` (for a NULL user, raw-byte user names, no descriptor left).
#![forbid(unsafe_code)]

use std::os::unix::net::UnixListener;
use std::time::Duration;

use twostep_e2e::fake_owner::{Answer, BusError, FakeOwner, Script};
use twostep_e2e::pam::strerror;
use twostep_e2e::pamclient::Client;
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{proc, unique, Bus, Ctl, Daemon, DaemonConfig, PamService, User};

/// The module arguments of the issue: fail open, 2 s per bus call.
const OPEN: &str = "failmode=open timeout=2";

/// The bus answers within this in every test here; the module's own bound is `timeout=2`.
const LOG_WAIT: Duration = Duration::from_secs(5);

fn lockout(max_failures: u32) -> DaemonConfig {
    DaemonConfig::new()
        .set("lockout", "max_failures", &max_failures.to_string())
        .set("lockout", "lockout_seconds", "600")
}

/// A FAIL-OPEN line at authpriv.alert (<81>: facility 10 * 8 + severity 1) naming `user`.
#[track_caller]
fn assert_fail_open_alert(syslog: &Syslog, user: &str, cause: &str) {
    let line = syslog
        .wait_for(&["pam_twostep", "FAIL-OPEN", user], LOG_WAIT)
        .unwrap_or_else(|| panic!("no FAIL-OPEN line for {user}:\n{}", syslog.dump()));
    assert!(line.starts_with("<81>"), "not authpriv.alert: {line}");
    assert!(
        line.contains(cause),
        "the line should name {cause:?}: {line}"
    );
}

/// No FAIL-OPEN line at all.
#[track_caller]
fn assert_no_fail_open(syslog: &Syslog) {
    let lines = syslog.matching(&["FAIL-OPEN"]);
    assert!(lines.is_empty(), "failed open:\n{}", lines.join("\n"));
}

// ----- the daemon is there but does not answer: closed -----

/// `kill -STOP` the daemon: Begin gets no reply within `timeout=2`. That is a hung daemon,
/// not an absent one: refused, for an enrolled user and for a locked one.
fn a_stopped_daemon_is_refused_even_with_failmode_open() {
    let bus = Bus::start();
    let daemon = Daemon::start_with(&bus, lockout(2));
    let ctl = Ctl::new(&bus);
    let pam = PamService::twostep(bus.address(), OPEN);
    let user = User::create();
    let e = ctl.enroll(&user);
    let locked = User::create();
    let l = ctl.enroll(&locked);
    for _ in 0..2 {
        pam.login(locked.name(), &l.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    pam.login(locked.name(), &l.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);

    let pid = daemon.pid().expect("daemon running");
    proc::signal(pid, "STOP");
    let runs = [
        pam.login(user.name(), "000000"),
        pam.login(locked.name(), "000000"),
    ];
    proc::signal(pid, "CONT");
    for run in &runs {
        run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
        assert!(
            run.conversation().contains("not reachable"),
            "the user is told why:\n{run}"
        );
    }

    // Running again: the usual answers.
    pam.login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    pam.login(user.name(), &e.code_after(1)).assert_success();
    pam.login(locked.name(), &l.code_after(2))
        .assert_refused_with(strerror::MAXTRIES);
}

/// The daemon restarts while the code prompt is open: the answer goes to a connection that
/// is gone (the bus driver says so). The login was already under way: refused, whether the
/// daemon came back or not.
fn a_daemon_lost_while_the_prompt_is_open_is_refused_even_with_failmode_open() {
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::twostep(bus.address(), OPEN);
    let user = User::create();
    let e = ctl.enroll(&user);

    for restart in [true, false] {
        let mut run = pam.auth(user.name()).interactive();
        run.expect_stderr(twostep_e2e::prompts::CODE_START);
        if restart {
            daemon.restart();
        } else {
            daemon.stop();
        }
        run.write_line("000000");
        let run = twostep_e2e::PamRun::from_output(run.finish(Duration::from_secs(30)), &pam);
        run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
        if !restart {
            daemon.restart();
        }
    }
    // The right code, typed while the daemon restarts, is refused too; after, it works.
    let mut run = pam.auth(user.name()).interactive();
    run.expect_stderr(twostep_e2e::prompts::CODE_START);
    daemon.restart();
    run.write_line(e.code_after(1));
    twostep_e2e::PamRun::from_output(run.finish(Duration::from_secs(30)), &pam)
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    pam.login(user.name(), &e.code_after(1)).assert_success();
}

/// Whatever owns the daemon's name (and passes the uid check) and answers a login call
/// with an error name that sounds like "unreachable" is there: refused, for Begin and for
/// Answer, and nothing fails open.
fn error_names_from_the_name_owner_never_fail_open() {
    let scripts = BusError::ALL.iter().flat_map(|&e| {
        [
            Script {
                begin: Answer::Error(e),
                answer: Answer::Normally,
            },
            Script {
                begin: Answer::Normally,
                answer: Answer::Error(e),
            },
        ]
    });
    for script in scripts {
        let bus = Bus::start();
        let owner = FakeOwner::start(&bus, script);
        let pam = PamService::twostep(bus.address(), OPEN);
        let syslog = Syslog::start();
        let run = Client::user(&pam, "root")
            .answer("000000")
            .syslog(&syslog)
            .run();
        run.assert_code("PAM_AUTHINFO_UNAVAIL");
        assert_eq!(owner.begins(), 1, "{script:?}\n{run}");
        let answers = usize::from(script.begin == Answer::Normally);
        assert_eq!(owner.answers(), answers, "{script:?}\n{run}");
        assert_no_fail_open(&syslog);
        // The admin learns why failmode=open did not apply.
        let line = syslog.wait_for(&["pam_twostep", "failmode=open does not apply"], LOG_WAIT);
        assert!(line.is_some(), "{script:?}:\n{}", syslog.dump());
    }
}

// ----- siblings: not "absent" either -----

/// A socket that accepts and hangs up during the authentication, and one whose listener
/// never accepts (the bus hung): both are there; refused.
fn a_bus_that_hangs_up_or_hangs_fails_closed() {
    let dir = unique::temp_dir("hangup");

    // Never accepted: connect() succeeds on the backlog, the SASL reply never comes.
    let hung_path = dir.path().join("hung.sock");
    let _hung = UnixListener::bind(&hung_path).expect("bind");
    PamService::twostep(&format!("unix:path={}", hung_path.display()), OPEN)
        .login("root", "000000")
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);

    // Accepted, the first bytes read, then closed in the middle of the authentication.
    let path = dir.path().join("hangup.sock");
    let listener = UnixListener::bind(&path).expect("bind");
    let acceptor = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 16];
        let _ = std::io::Read::read(&mut stream, &mut buf);
    });
    let run =
        PamService::twostep(&format!("unix:path={}", path.display()), OPEN).login("root", "000000");
    acceptor.join().expect("acceptor");
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
}

/// No descriptor left (EMFILE at socket()): a resource error, not an absent daemon.
/// With a descriptor to spare, the same missing socket fails open, as it should.
///
/// Why the module's message is the evidence, not the PAM code: after the module returns,
/// libpam opens its audit socket, fails with EMFILE too, and then answers PAM_SYSTEM_ERR
/// whatever the module said. The module tells the user "not reachable; login refused" only
/// when it fails closed (a fail-open login shows nothing).
fn no_descriptor_left_fails_closed() {
    let dir = unique::temp_dir("emfile");
    let address = format!("unix:path={}", dir.path().join("absent.sock").display());
    let pam = PamService::twostep(&address, OPEN);
    let run = Client::user(&pam, "root")
        .answer("000000")
        .no_fd_left()
        .run();
    assert!(!run.output.timed_out, "{run}");
    assert_ne!(run.code(), Some("PAM_SUCCESS"), "{run}");
    assert!(
        run.conversation().contains(
            &"ERROR_MSG: twostep: the second-factor service is not reachable; login refused"
        ),
        "the module did not fail closed:\n{run}"
    );
    let run = Client::user(&pam, "root").answer("000000").run();
    run.assert_code("PAM_SUCCESS");
    assert!(run.conversation().is_empty(), "{run}");
}

/// A socket the caller may not open (EACCES: in a directory it cannot search) is not a
/// missing one: refused.
fn a_socket_the_caller_cannot_reach_fails_closed() {
    let dir = unique::temp_dir("eacces");
    let path = dir.path().join("bus.sock");
    let _listener = UnixListener::bind(&path).expect("bind");
    unique::chmod(dir.path(), 0o700);
    let pam = PamService::twostep(&format!("unix:path={}", path.display()), OPEN);
    let user = User::create();
    pam.auth(user.name())
        .answer("000000")
        .caller(user.creds())
        .run()
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
}

// ----- absent: open, loudly -----

/// The three "absent" conditions still fail open with failmode=open, each with an
/// authpriv.alert FAIL-OPEN line naming the user and the cause; with the default
/// failmode they are refused.
fn an_absent_daemon_fails_open_and_logs_an_alert() {
    let dir = unique::temp_dir("absent");
    // ENOENT.
    let missing = format!("unix:path={}", dir.path().join("missing.sock").display());
    // ECONNREFUSED: a socket file nobody listens on.
    let stale_path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale_path).expect("bind"));
    let stale = format!("unix:path={}", stale_path.display());
    // The bus driver says the name has no owner.
    let bus = Bus::start();
    let cases = [
        (missing.as_str(), "no socket"),
        (stale.as_str(), "refused"),
        (bus.address(), "no owner"),
    ];
    let user = User::create();
    for (address, cause) in cases {
        let open = PamService::twostep(address, OPEN);
        let syslog = Syslog::start();
        let run = Client::user(&open, user.name()).syslog(&syslog).run();
        run.assert_code("PAM_SUCCESS");
        assert!(run.prompts().is_empty(), "no code asked:\n{run}");
        assert_fail_open_alert(&syslog, user.name(), cause);

        let closed = PamService::twostep(address, "timeout=2");
        Client::user(&closed, user.name())
            .run()
            .assert_code("PAM_AUTHINFO_UNAVAIL");
    }
}

/// The package makes twostepd D-Bus activatable. A daemon that the bus starts and that
/// exits (e.g. it refuses an unsafe config file) or hangs is broken, not absent: the login
/// fails closed even with `failmode=open`, and no fail-open alert is logged. Only a name
/// nothing can start is absent (the test above).
fn an_activatable_daemon_that_fails_to_start_fails_closed_even_with_failmode_open() {
    let user = User::create();
    let cases = [
        ("/bin/false", "exits"),
        ("/bin/sleep 30", "hangs past the bus's start timeout"),
    ];
    for (exec, what) in cases {
        let bus = Bus::activatable(exec, Duration::from_secs(1));
        let open = PamService::twostep(bus.address(), "failmode=open timeout=5");
        let syslog = Syslog::start();
        let run = Client::user(&open, user.name()).syslog(&syslog).run();
        run.assert_code("PAM_AUTHINFO_UNAVAIL");
        assert!(run.prompts().is_empty(), "{what}: no code asked:\n{run}");
        assert_no_fail_open(&syslog);
        assert!(
            bus.log()
                .contains("Activating service name='org.twostep.Twostep1'"),
            "{what}: the bus was asked to start the daemon:\n{}",
            bus.log()
        );
    }
}

// ----- the user name (fault 5) -----

/// The module alone (no pam_permit before it, which would ask for a user name itself and
/// set a missing or empty one to "nobody").
fn module_only(bus: &Bus, args: &str) -> PamService {
    PamService::new(&format!(
        "auth required {} bus={} {} {args}\naccount required pam_permit.so\n",
        twostep_e2e::artifacts::pam_module().display(),
        bus.address(),
        twostep_e2e::transport::module_arg(bus.address(), args)
    ))
}

/// No PAM_USER: the module does not prompt for one and does not call the daemon.
fn no_user_is_user_unknown_without_a_prompt_or_a_call() {
    let bus = Bus::start();
    let owner = FakeOwner::start(
        &bus,
        Script {
            begin: Answer::Normally,
            answer: Answer::Normally,
        },
    );
    for args in ["", OPEN] {
        let pam = module_only(&bus, args);
        let user = User::create();
        // Answers a "login:" prompt, should one come.
        let run = Client::no_user(&pam)
            .answer(user.name())
            .answer("000000")
            .run();
        run.assert_code("PAM_USER_UNKNOWN");
        assert!(run.prompts().is_empty(), "the module prompted:\n{run}");
    }
    assert_eq!(owner.begins(), 0, "the daemon was called");
}

/// Odd user names, UTF-8 or not, are all PAM_USER_UNKNOWN, with no prompt and no call.
fn odd_user_names_are_user_unknown_without_a_call() {
    let bus = Bus::start();
    let owner = FakeOwner::start(
        &bus,
        Script {
            begin: Answer::Normally,
            answer: Answer::Normally,
        },
    );
    let pam = module_only(&bus, OPEN);
    let long = "a".repeat(257);
    let names: [&[u8]; 6] = [
        b"\xff\xfe",
        b"ts_\xc3",
        b"",
        b"tab\tname",
        b"esc\x1b[2J",
        long.as_bytes(),
    ];
    for name in names {
        let run = Client::user(&pam, name).answer("000000").run();
        run.assert_code("PAM_USER_UNKNOWN");
        assert!(run.prompts().is_empty(), "{name:?} prompted:\n{run}");
    }
    assert_eq!(owner.begins(), 0, "the daemon was called");
}

// Every test above, on the bus and on the login socket (issue 18).
twostep_e2e::both_transports!(
    a_stopped_daemon_is_refused_even_with_failmode_open,
    a_daemon_lost_while_the_prompt_is_open_is_refused_even_with_failmode_open,
    error_names_from_the_name_owner_never_fail_open,
    a_bus_that_hangs_up_or_hangs_fails_closed,
    no_descriptor_left_fails_closed,
    a_socket_the_caller_cannot_reach_fails_closed,
    an_absent_daemon_fails_open_and_logs_an_alert,
    an_activatable_daemon_that_fails_to_start_fails_closed_even_with_failmode_open,
    no_user_is_user_unknown_without_a_prompt_or_a_call,
    odd_user_names_are_user_unknown_without_a_call,
);
