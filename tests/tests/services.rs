// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-service rules (issue 20 item 12) through real libpam (pamtester), a private bus and
//! a root twostepd: a service without a table asks as before; `second_factor = "never"`
//! asks nothing (and still refuses a locked user); `remember_seconds` lets the same user on
//! the same service from the same tty and remote host in without a code for the window,
//! and nowhere else; a bad table is refused with file:line:column. Needs root.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use twostep_e2e::pam::{strerror, twostep_stack};
use twostep_e2e::{artifacts, proc, unique};
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamRun, PamService, User};

/// The remember window of the test service, in seconds.
const WINDOW: u64 = 5;

struct Services {
    plain: PamService,
    never: PamService,
    /// `never`, on a stack whose module line has no `nullok`.
    never_strict: PamService,
    remember: PamService,
    ctl: Ctl,
    daemon: Daemon,
    _bus: Bus,
}

/// Three services on one daemon: one without a table, one `never`, one with a
/// [`WINDOW`]-second remember window (`extra`: more TOML).
fn start(extra: &str) -> Services {
    let bus = Bus::start();
    let stack = twostep_stack(bus.address(), "nullok");
    let plain = PamService::named("plain", &stack);
    let never = PamService::named("never", &stack);
    let remember = PamService::named("remember", &stack);
    let never_strict = PamService::named("never-strict", &twostep_stack(bus.address(), ""));
    let config = DaemonConfig::default()
        .set("totp", "window", "2")
        .raw(&format!(
            "[services.\"{}\"]\nsecond_factor = \"never\"\n\
             [services.\"{}\"]\nsecond_factor = \"never\"\n\
             [services.\"{}\"]\nremember_seconds = {WINDOW}\n{extra}",
            never.name(),
            never_strict.name(),
            remember.name()
        ));
    let daemon = Daemon::start_with(&bus, config);
    let ctl = Ctl::new(&bus);
    Services {
        plain,
        never,
        never_strict,
        remember,
        ctl,
        daemon,
        _bus: bus,
    }
}

/// A login on `service` from `tty` (and `rhost`, when not empty), answering `answer`.
fn login(service: &PamService, user: &User, tty: &str, rhost: &str, answer: &str) -> PamRun {
    let mut auth = service.auth(user.name()).item("tty", tty).answer(answer);
    if !rhost.is_empty() {
        auth = auth.item("rhost", rhost);
    }
    auth.run()
}

/// Whether the run was asked for a code.
fn asked(run: &PamRun) -> bool {
    run.conversation().contains("Verification code")
}

#[test]
fn a_service_without_a_table_asks_and_never_asks_nothing() {
    let s = start("");
    let user = User::create();
    let key = s.ctl.enroll(&user);

    let run = login(&s.plain, &user, "/dev/pts/41", "", &key.code_after(1));
    run.assert_success();
    assert!(asked(&run), "{}", run.conversation());

    // `never`: no prompt, the password (pam_permit here) alone decides.
    let run = s.never.auth(user.name()).item("tty", "/dev/tty5").run();
    run.assert_success();
    assert!(!asked(&run), "{}", run.conversation());
    assert_eq!(run.conversation().trim(), "", "nothing shown");
    let log = s.daemon.log();
    assert!(
        log.lines().any(|l| l.contains(user.name())
            && l.contains(&format!("service={}", s.never.name()))
            && l.contains("outcome=not-asked (service rule never)")),
        "{log}"
    );

    // Without nullok the module's "no second factor" answer fails the stack (doctor warns).
    let run = s
        .never_strict
        .auth(user.name())
        .item("tty", "/dev/tty5")
        .run();
    run.assert_refused_with(strerror::AUTH_ERR);
    assert!(!asked(&run), "{}", run.conversation());

    // A locked user is refused there too.
    for _ in 0..5 {
        login(&s.plain, &user, "/dev/pts/41", "", &key.wrong_code()).assert_refused();
    }
    let run = s.never.auth(user.name()).item("tty", "/dev/tty5").run();
    run.assert_refused_with(strerror::MAXTRIES);
}

#[test]
fn remember_lets_the_same_place_in_for_the_window_only() {
    let s = start("");
    let user = User::create();
    let key = s.ctl.enroll(&user);
    let other = User::create();
    s.ctl.enroll(&other);
    let (tty, rhost) = ("/dev/pts/42", "192.0.2.9");

    // First login asks; the code opens the window.
    let run = login(&s.remember, &user, tty, rhost, &key.code_after(1));
    run.assert_success();
    assert!(asked(&run), "{}", run.conversation());
    let opened = Instant::now();

    // Same user, service, tty and remote host within the window: no code.
    let run = login(&s.remember, &user, tty, rhost, "");
    run.assert_success();
    assert!(!asked(&run), "{}", run.conversation());

    // Another tty, another remote host, another service: asked (a word is not a code:
    // refused by the module, nothing counted, so the window stays).
    for (service, tty, rhost) in [
        (&s.remember, "/dev/pts/43", rhost),
        (&s.remember, tty, "192.0.2.10"),
        (&s.remember, tty, ""),
        (&s.plain, tty, rhost),
    ] {
        let run = login(service, &user, tty, rhost, "hello");
        run.assert_refused();
        assert!(asked(&run), "{tty} {rhost}: {}", run.conversation());
    }
    // Another user at the same place: asked.
    let run = login(&s.remember, &other, tty, rhost, "hello");
    run.assert_refused();
    assert!(asked(&run), "{}", run.conversation());

    // Still inside: no code (what the refusals above did not end).
    assert!(
        opened.elapsed() < Duration::from_secs(WINDOW),
        "the checks took too long to test the window"
    );
    let run = login(&s.remember, &user, tty, rhost, "");
    run.assert_success();
    assert!(!asked(&run), "{}", run.conversation());

    // After the window: asked again.
    std::thread::sleep(Duration::from_secs(WINDOW + 1).saturating_sub(opened.elapsed()));
    let run = login(&s.remember, &user, tty, rhost, "hello");
    run.assert_refused();
    assert!(asked(&run), "{}", run.conversation());

    // Nothing was counted, and the audit line names the rule that let the login in.
    let status = s.ctl.status(&user);
    assert_eq!(status["failures"].as_u64(), Some(0), "{status}");
    let log = s.daemon.log();
    let line = log
        .lines()
        .find(|l| {
            l.contains(user.name())
                && l.contains(&format!("service rule remember_seconds={WINDOW}"))
        })
        .unwrap_or_else(|| panic!("no audit line for the remembered login:\n{log}"));
    assert!(
        line.contains(&format!("service={}", s.remember.name())),
        "{line}"
    );
    assert!(line.contains("tty=/dev/pts/42"), "{line}");
}

#[test]
fn a_locked_user_is_refused_inside_the_window() {
    let s = start("");
    let user = User::create();
    let key = s.ctl.enroll(&user);
    let tty = "/dev/pts/44";
    login(&s.remember, &user, tty, "", &key.code_after(1)).assert_success();
    for _ in 0..5 {
        login(&s.plain, &user, "/dev/pts/45", "", &key.wrong_code()).assert_refused();
    }
    let run = login(&s.remember, &user, tty, "", "");
    run.assert_refused_with(strerror::MAXTRIES);
    // An unlock does not bring the window back.
    let out = s.ctl.run(None, &["user", "unlock", user.name()], b"");
    assert!(out.success(), "{out}");
    let run = login(&s.remember, &user, tty, "", "hello");
    run.assert_refused();
    assert!(asked(&run), "{}", run.conversation());
}

#[test]
fn a_remember_window_needs_a_tty_or_a_remote_host() {
    let s = start("");
    let user = User::create();
    let key = s.ctl.enroll(&user);
    // pamtester sets no tty and no rhost unless told.
    s.remember
        .auth(user.name())
        .answer(key.code_after(1))
        .run()
        .assert_success();
    let run = s.remember.auth(user.name()).answer("hello").run();
    run.assert_refused();
    assert!(asked(&run), "{}", run.conversation());
}

/// `twostepd --check-config` on `text`.
fn check(text: &str) -> proc::Output {
    let dir = unique::temp_dir("check");
    let path = dir.path().join("twostep.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = proc::command(None, artifacts::twostepd());
    cmd.arg("--check-config").arg(&path);
    proc::run(cmd, b"", Duration::from_secs(30))
}

#[test]
fn bad_service_tables_are_refused_with_their_place() {
    for (text, place, needle) in [
        (
            "version = 1\n[services.sudo]\nremember = \"15m\"\n",
            ":3:1:",
            "unknown field `remember`",
        ),
        (
            "version = 1\n[services.sudo]\nremember_seconds = 86400\n",
            ":3:20:",
            "out of range 0..=43200",
        ),
        (
            "version = 1\n[services.Sudo]\nsecond_factor = \"never\"\n",
            ":2:",
            "lower case",
        ),
        (
            "version = 1\n[services.sudo]\nmethods = [\"email\"]\n",
            "",
            "[services.sudo] methods names \"email\"",
        ),
    ] {
        let out = check(text);
        assert!(!out.success(), "{text:?} accepted: {out}");
        let err = format!("{}{}", out.stderr, out.stdout);
        assert!(err.contains(needle), "{text:?}: {err}");
        assert!(
            err.contains(&format!("twostep.toml{place}")),
            "{text:?}: {err}"
        );
    }
    let state = unique::temp_dir("state");
    unique::chmod(state.path(), 0o700);
    let config = DaemonConfig::default().raw(
        "[services.sudo]\nremember_seconds = 900\n[services.vlock]\nsecond_factor = \"never\"\n",
    );
    let text = config.render(state.path(), "unix:path=/nonexistent/bus.sock");
    let ok = check(&text);
    assert!(ok.success(), "{ok}");
}

#[test]
fn doctor_lists_the_rules_and_warns_about_never_where_it_is_risky() {
    let dir = unique::temp_dir("doctor");
    let pam_dir = dir.path().join("pam.d");
    std::fs::create_dir(&pam_dir).expect("create pam.d");
    let module = artifacts::pam_module();
    let with_nullok = format!(
        "auth required pam_unix.so\nauth required {} nullok\n",
        module.display()
    );
    let without = format!(
        "auth required pam_unix.so\nauth required {}\n",
        module.display()
    );
    for (name, text) in [
        ("sudo", &with_nullok),
        ("login", &without),
        ("other", &with_nullok),
    ] {
        std::fs::write(pam_dir.join(name), text).expect("write pam file");
    }
    // sshd -T as root wants its privilege-separation dir (sshd falls back to `other` here).
    std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
    let config = dir.path().join("twostep.toml");
    std::fs::write(
        &config,
        "version = 1\n[services.sudo]\nremember_seconds = 900\n\
         [services.login]\nsecond_factor = \"never\"\n\
         [services.screen]\nsecond_factor = \"never\"\n",
    )
    .expect("write config");
    let mut cmd = proc::command(None, artifacts::twostepctl());
    cmd.args([
        "--bus",
        "unix:path=/nonexistent/bus.sock",
        "doctor",
        "--json",
    ])
    .arg("--pam-dir")
    .arg(&pam_dir)
    .arg("--config")
    .arg(&config);
    let out = proc::run(cmd, b"", Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(1), "{out}");
    let report: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    let mut found: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["kind"].as_str().unwrap_or("").starts_with("service-"))
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or("").to_owned(),
                f["services"][0].as_str().unwrap_or("").to_owned(),
                f["severity"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    found.sort();
    let f = |k: &str, s: &str, sev: &str| (k.to_owned(), s.to_owned(), sev.to_owned());
    assert_eq!(
        found,
        vec![
            f("service-never-no-nullok", "login", "warning"),
            f("service-never-other", "screen", "warning"),
            f("service-rule", "login", "info"),
            f("service-rule", "screen", "info"),
            f("service-rule", "sudo", "info"),
        ],
        "{out}"
    );
    // The text report shows each rule with the line of its table.
    let mut cmd = proc::command(None, artifacts::twostepctl());
    cmd.args(["--bus", "unix:path=/nonexistent/bus.sock", "doctor"])
        .arg("--pam-dir")
        .arg(&pam_dir)
        .arg("--config")
        .arg(&config);
    let out = proc::run(cmd, b"", Duration::from_secs(60));
    let text = out.stdout.clone();
    assert!(
        text.contains(&format!(
            "{}:2: [services.sudo]: second factor as [policy] says, remembered for 900 s",
            config.display()
        )),
        "{out}"
    );
}

/// `script` run by `sh` as root in a new kernel audit session (as `pam_loginuid` starts one
/// at every login: writing `/proc/self/loginuid` gives the shell a new session id, which
/// the processes it starts inherit).
fn in_new_session(script: &str) -> proc::Output {
    let mut cmd = proc::command(None, "sh");
    cmd.arg("-c").arg(format!(
        "echo 0 >/proc/self/loginuid || exit 99\n\
         read s </proc/self/sessionid; echo \"session=$s\" >&2\n{script}"
    ));
    let out = proc::run(cmd, b"", Duration::from_secs(60));
    assert_ne!(
        out.status.code(),
        Some(99),
        "cannot start an audit session (needs root with CAP_AUDIT_CONTROL): {out}"
    );
    out
}

// On the bus the pid comes from `GetConnectionUnixProcessID`, on the login socket from
// `SO_PEERCRED`: both paths (issue 18).
twostep_e2e::both_transports!(a_window_is_bound_to_the_callers_audit_session);

fn a_window_is_bound_to_the_callers_audit_session() {
    let s = start("");
    let user = User::create();
    let key = s.ctl.enroll(&user);
    let pamtester = |tty: &str| {
        format!(
            "pamtester -v -Itty={tty} {} {} authenticate",
            s.remember.name(),
            user.name()
        )
    };
    let tty = "/dev/pts/46";
    // One session: a code, then the same terminal again without one.
    let out = in_new_session(&format!(
        "echo {} | {p} || exit 1\n{p} </dev/null || exit 2",
        key.code_after(1),
        p = pamtester(tty)
    ));
    assert!(out.success(), "{out}");
    assert_eq!(
        out.stderr.matches("Verification code").count(),
        1,
        "asked again in the same session: {out}"
    );
    assert!(!out.stderr.contains("session=4294967295"), "{out}");
    // The next session on the same terminal, inside the window: asked.
    let out = in_new_session(&format!("echo hello | {}", pamtester(tty)));
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("Verification code"), "{out}");
    let log = s.daemon.log();
    assert_eq!(
        log.matches("service rule remember_seconds").count(),
        1,
        "{log}"
    );
}

/// A terminal session of `user` under expect (`dialog`) in a new kernel audit session (as a
/// login through `pam_loginuid` starts one), with `sudoers` seen as `/etc/sudoers`.
fn terminal(
    sudoers: &twostep_e2e::sudo::Sudoers,
    user: &twostep_e2e::logins::LoginUser,
    dialog: &twostep_e2e::pty::Dialog,
) -> twostep_e2e::pty::PtyRun {
    let driver = twostep_e2e::pty::Driver::new(dialog);
    let c = user.user().creds();
    let mut cmd = sudoers
        .namespace(twostep_e2e::ns::Namespace::new())
        .command("sh");
    cmd.arg("-c")
        .arg("echo 0 >/proc/self/loginuid || exit 99; exec \"$@\"")
        .arg("twostep-e2e-session")
        .arg("setpriv")
        .arg(format!("--reuid={}", c.uid))
        .arg(format!("--regid={}", c.gid))
        .args(["--clear-groups", "--", "expect"]);
    driver.args(&mut cmd);
    cmd.arg("sh");
    driver.run(cmd)
}

/// The case with the real sudo on a terminal: the first sudo asks for the password
/// and the code, a second sudo in the same session within the window asks for the password
/// only; a new session on a terminal (the next login) is asked for the code again.
#[test]
fn sudo_within_the_window_asks_for_the_password_only() {
    use twostep_e2e::logins::{self, LoginUser};
    use twostep_e2e::pty::Dialog;
    use twostep_e2e::sudo::Sudoers;

    let bus = Bus::start();
    let pam = PamService::named("sudo", &logins::password_then_code(bus.address(), ""));
    let daemon = Daemon::start_with(
        &bus,
        DaemonConfig::default().raw(&format!(
            "[services.\"{}\"]\nremember_seconds = 120\n",
            pam.name()
        )),
    );
    let ctl = Ctl::new(&bus);
    let user = LoginUser::create();
    let sudoers = Sudoers::for_user(user.name(), pam.name(), &[]);
    let key = ctl.enroll(user.user());

    let run = terminal(
        &sudoers,
        &user,
        &Dialog::new()
            .expect("$ ")
            .send("sudo true && echo first-ok")
            .expect("password for")
            .send(user.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(&key.code_after(1))
            .expect("first-ok")
            .expect("$ ")
            .send("sudo true && echo second-ok")
            .expect("password for")
            .send(user.password())
            .expect("second-ok")
            .expect("$ ")
            .send("exit"),
    );
    assert!(run.completed(), "{run}\n--- daemon ---\n{}", daemon.log());
    assert_eq!(
        run.transcript().matches("Verification code").count(),
        1,
        "{run}"
    );
    assert_eq!(run.exit_code(), Some(0), "{run}");
    // An admin sees the window in force.
    let out = ctl.run(None, &["user", "show", user.name()], b"");
    assert!(out.success(), "{out}");
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with(pam.name()))
        .unwrap_or_else(|| panic!("no remembered window shown:\n{out}"));
    assert!(line.contains("from - on /dev/pts/"), "{line}");
    assert!(out.stdout.contains("Remembered"), "{out}");
    let out = ctl.run(None, &["user", "show", "--json", user.name()], b"");
    let shown: serde_json::Value = serde_json::from_str(out.stdout.trim()).expect("json");
    assert_eq!(shown["remembered"][0]["service"], pam.name(), "{shown}");
    assert!(
        twostep_e2e::json::time(&shown["remembered"][0], "until") > 0,
        "{shown}"
    );

    // The next session (another login on a terminal, maybe the same pts): asked again.
    let run = terminal(
        &sudoers,
        &user,
        &Dialog::new()
            .expect("$ ")
            .send("sudo true && echo third-ok")
            .expect("password for")
            .send(user.password())
            .expect(twostep_e2e::prompts::CODE)
            .end(),
    );
    assert!(run.completed(), "{run}\n--- daemon ---\n{}", daemon.log());
    let log = daemon.log();
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(user.name()) && l.contains("service rule remember_seconds=120"))
            .count(),
        1,
        "{log}"
    );
}
