// SPDX-License-Identifier: MIT OR Apache-2.0
//! The real `sudo` (Debian 12, 1.9.13) end to end: a test user, a private sudoers file
//! that points that user at a test PAM service (`Defaults:USER pam_service=…`),
//! bind-mounted over `/etc/sudoers` in a private mount namespace for each sudo run,
//! `sudo -S` fed the password and the code on stdin, the built module and daemon on a
//! private bus. The machine's `/etc/sudoers`, `/etc/sudoers.d` and `/etc/pam.d/sudo` are
//! never touched (proved by `the_machine_sudo_configuration_is_untouched_while_sudo_runs`).
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use twostep_e2e::documented::{self, DocStack};
use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::ns::Namespace;
use twostep_e2e::proc;
use twostep_e2e::sudo::{self, Sudoers};
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{otp, Bus, Ctl, Daemon, DaemonConfig, Enrolled, Output, PamService};

fn u64_of(status: &serde_json::Value, key: &str) -> u64 {
    status
        .get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status.{key} is not an unsigned number: {status}"))
}

/// Whether daemon log line `l` is the audit line of an attempt by `user` (through
/// `service`, if given): `user=NAME uid=UID service=SERVICE … outcome=…`.
fn is_attempt_of(l: &str, user: &str, service: Option<&str>) -> bool {
    let fields: Vec<&str> = l.split_whitespace().collect();
    fields.contains(&format!("user={user}").as_str())
        && fields.iter().any(|f| match service {
            Some(s) => *f == format!("service={s}"),
            None => f.starts_with("service="),
        })
}

fn outcomes(daemon: &Daemon, user: &str) -> usize {
    daemon
        .log()
        .lines()
        .filter(|l| is_attempt_of(l, user, None) && l.contains("outcome="))
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
    let sudoers = Sudoers::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());

    let out = sudoers.sudo(
        &user,
        &["-S", "-k", "true"],
        &format!("wrong-{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(!out.success(), "a wrong password must be refused:\n{out}");
    assert!(
        !out.stderr.contains(twostep_e2e::prompts::CODE_START),
        "no code prompt after a wrong password:\n{out}"
    );

    let out = sudoers.sudo(
        &user,
        &["-S", "-k", "id", "-u"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "0", "the command ran as root:\n{out}");
    let password_prompt = out
        .stderr
        .find(&format!("[sudo] password for {}", user.name()));
    let code_prompt = out.stderr.find(twostep_e2e::prompts::CODE);
    assert!(
        matches!((password_prompt, code_prompt), (Some(p), Some(c)) if p < c),
        "password prompt, then code prompt, on stderr:\n{out}"
    );
    assert!(
        daemon
            .log()
            .lines()
            .any(|l| is_attempt_of(l, user.name(), Some(pam.name()))
                && l.contains("outcome=success")),
        "user={} service={} outcome=success missing from the daemon log:\n{}",
        user.name(),
        pam.name(),
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
    let sudoers = Sudoers::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());

    let out = sudoers.sudo(
        &user,
        &["-S", "-k", "echo", "ran"],
        &format!("{}\n{}\n", user.password(), e.wrong_code()),
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.stderr.contains(twostep_e2e::prompts::CODE), "{out}");
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
    let sudoers = Sudoers::for_user(user.name(), pam.name(), &[]);
    let e = ctl.enroll(user.user());
    let syslog = Syslog::start();

    let out = sudoers.sudo_logged(
        &user,
        &["-S", "-k", "true"],
        &format!("{}\n{}\n", user.password(), e.wrong_code()),
        &syslog,
    );
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains(twostep_e2e::prompts::CODE),
        "prompts are shown:\n{out}"
    );
    assert!(
        !out.stderr.contains("Wrong verification code"),
        "sudo 1.9.13 passes PAM_SILENT: the module's message is not shown:\n{out}"
    );
    assert!(twostep_e2e::json::time(&ctl.status(user.user()), "locked_until") > otp::now());

    let out = sudoers.sudo_logged(
        &user,
        &["-S", "-k", "true"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
        &syslog,
    );
    assert!(!out.success(), "locked: {out}");
    assert!(
        !out.stderr.contains(twostep_e2e::prompts::CODE_START),
        "{out}"
    );
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
    // What docs/sudo.md tells a user who only sees "Sorry, try again.": the lock, why,
    // and what it blocks.
    let status = ctl.run(Some(user.user().creds()), &["status"], b"");
    status.assert_success();
    assert!(
        status
            .stdout
            .contains("— after 1 failed attempt, the last at ")
            && status
                .stdout
                .contains("(SSH, sudo, su, the console) is refused")
            && status
                .stdout
                .contains("sudo shows it only as \"Sorry, try again.\"")
            && status
                .stdout
                .contains(&format!("twostepctl user unlock {}", user.name())),
        "{status}"
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
    let sudoers = Sudoers::for_user(
        user.name(),
        pam.name(),
        &["timestamp_timeout=5", "timestamp_type=global"],
    );
    let e = ctl.enroll(user.user());

    let out = sudoers.sudo(
        &user,
        &["-S", "true"],
        &format!("{}\n{}\n", user.password(), e.code_after(1)),
    );
    assert!(out.success(), "{out}");
    let asked = outcomes(&daemon, user.name());
    assert_eq!(asked, 1, "{}", daemon.log());

    let out = sudoers.sudo(&user, &["-n", "true"], "");
    assert!(
        out.success(),
        "within timestamp_timeout sudo runs without asking:\n{out}"
    );
    assert_eq!(
        outcomes(&daemon, user.name()),
        asked,
        "the cached run must not have reached the module"
    );

    sudoers.sudo(&user, &["-K"], "").assert_success();
    let out = sudoers.sudo(&user, &["-n", "true"], "");
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
    let sudoers = Sudoers::for_user(user.name(), pam.name(), &[]);
    let syslog = Syslog::start();
    let out = sudoers.sudo_logged(
        &user,
        &["-S", "-k", "echo", "ran"],
        &format!("{}\n123456\n", user.password()),
        &syslog,
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(!out.stdout.contains("ran"), "{out}");
    assert!(out.elapsed < Duration::from_secs(8), "{out}");
    assert!(
        !out.stderr.contains(twostep_e2e::prompts::CODE_START),
        "{out}"
    );
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
    let code_prompt = out.stderr.find(twostep_e2e::prompts::CODE);
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
    assert!(out.stderr.contains(twostep_e2e::prompts::CODE), "{out}");
    assert_eq!(u64_of(&ctl.status(user.user()), "failures"), 1);

    let out = run(
        &["-S", "-k", "-i", "echo", "ran"],
        &format!("wrong-{}\n{}\n", user.password(), e.wrong_code()),
    );
    assert!(!out.success(), "sudo -i with a wrong password: {out}");
    assert!(
        !out.stderr.contains(twostep_e2e::prompts::CODE_START),
        "{out}"
    );
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
    let sudoers = Sudoers::with_head(user.name(), &head.join("\n"));
    let e = ctl.enroll(user.user());
    sudo_i_and_sudo_s_ask(&ctl, &user, &e, &|args, stdin| {
        sudoers.sudo(&user, args, stdin)
    });
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
    let sudoers = Sudoers::with_head(user.name(), "");
    let e = ctl.enroll(user.user());
    let pam_d = Path::new("/etc/pam.d");
    let run = |args: &[&str], stdin: &str| {
        let ns = Namespace::new()
            .bind(&pam_d.join(sudo_file.name()), &pam_d.join("sudo"))
            .bind(&pam_d.join(sudo_i_file.name()), &pam_d.join("sudo-i"));
        sudoers.sudo_in(ns, &user, args, stdin)
    };
    sudo_i_and_sudo_s_ask(&ctl, &user, &e, &run);
}

/// What the machine's own sudo reads and keeps, as far as one test user is concerned.
struct MachineSudo {
    /// The bytes of `/etc/sudoers`.
    sudoers: Vec<u8>,
    /// Every file of `/etc/sudoers.d` (name → bytes), except drop-ins of other test
    /// processes that run an older harness (another checkout on this machine): those come
    /// and go while this test runs. Drop-ins of this process are kept, so any would show.
    drop_ins: BTreeMap<String, Vec<u8>>,
    /// The user's files in the machine's sudo state dirs (timestamps, lectures).
    user_state: Vec<String>,
    /// What the machine's sudo says about the user (`sudo -n -l -U USER`, as root, outside
    /// any private namespace).
    listed: String,
}

impl MachineSudo {
    /// Take the snapshot for `user`.
    fn of(user: &str) -> MachineSudo {
        let own = format!("{}{}-", sudo::LEGACY_PREFIX, std::process::id());
        let mut drop_ins = BTreeMap::new();
        for e in std::fs::read_dir(sudo::SUDOERS_D)
            .expect("list /etc/sudoers.d")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(sudo::LEGACY_PREFIX) && !name.starts_with(&own) {
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap_or_default();
            drop_ins.insert(name, bytes);
        }
        let user_state = sudo::MACHINE_STATE_DIRS
            .iter()
            .map(|d| Path::new(d).join(user))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        let mut list = proc::command(None, "sudo");
        list.args(["-n", "-l", "-U", user]);
        let out = proc::run(list, b"", sudo::TIMEOUT);
        MachineSudo {
            sudoers: std::fs::read(sudo::ETC_SUDOERS).expect("read /etc/sudoers"),
            drop_ins,
            user_state,
            listed: format!("{:?} {}{}", out.status.code(), out.stdout, out.stderr),
        }
    }

    /// Panics (saying `when` and what differs) unless the machine looks as in `before`.
    fn assert_same_as(&self, before: &MachineSudo, when: &str) {
        assert!(
            self.sudoers == before.sudoers,
            "{when}: the machine's /etc/sudoers changed:\n{}",
            String::from_utf8_lossy(&self.sudoers)
        );
        let names = |m: &MachineSudo| m.drop_ins.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(self),
            names(before),
            "{when}: the machine's /etc/sudoers.d changed"
        );
        for (name, bytes) in &self.drop_ins {
            assert!(
                before.drop_ins.get(name) == Some(bytes),
                "{when}: /etc/sudoers.d/{name} changed:\n{}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            self.user_state, before.user_state,
            "{when}: the user's state in the machine's sudo dirs"
        );
        assert_eq!(
            self.listed, before.listed,
            "{when}: what the machine's sudo grants the user"
        );
    }
}

/// The standards: tests never touch the machine's sudo configuration. While a sudo run
/// with the private configuration is in progress (authenticated with password and code,
/// its command waiting), and after it, the machine's `/etc/sudoers` and `/etc/sudoers.d`
/// are byte for byte what they were, the machine's sudo does not know the user, and
/// sudo's credential cache went to the private timestamp dir, not `/run/sudo/ts`; inside
/// the run, `/etc/sudoers` is the private file.
#[test]
fn the_machine_sudo_configuration_is_untouched_while_sudo_runs() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let before = MachineSudo::of(user.name());
    assert!(
        before.listed.contains("not allowed to run sudo"),
        "a new user has no sudo rule on the machine: {}",
        before.listed
    );
    // A cached credential (global: no tty) makes sudo write a timestamp file.
    let sudoers = Sudoers::for_user(
        user.name(),
        pam.name(),
        &["timestamp_timeout=5", "timestamp_type=global"],
    );
    MachineSudo::of(user.name()).assert_same_as(&before, "after writing the config");
    let e = ctl.enroll(user.user());

    const READY: &str = "twostep-e2e-ready";
    let mut cmd = sudoers.command(
        Namespace::new(),
        &user,
        &[
            "-S",
            "sh",
            "-c",
            &format!("cat /etc/sudoers; echo {READY}; read line; echo \"got $line\""),
        ],
    );
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start sudo");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut text);
        text
    });
    // sudo -S reads its answers one byte at a time: the rest of stdin is the command's.
    write!(stdin, "{}\n{}\n", user.password(), e.code_after(1)).expect("feed sudo");
    let mut seen = Vec::new();
    let ready = loop {
        match rx.recv_timeout(sudo::TIMEOUT) {
            Ok(line) if line == READY => break true,
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    if !ready {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "sudo never ran its command:\nstdout: {}\nstderr: {}",
            seen.join("\n"),
            errors.join().unwrap_or_default()
        );
    }
    assert_eq!(
        seen.join("\n").trim_end(),
        sudoers.contents().trim_end(),
        "inside the run /etc/sudoers is the private file"
    );

    // During the run: the machine sees none of it.
    MachineSudo::of(user.name()).assert_same_as(&before, "while sudo runs");
    assert!(
        sudoers.timestamp_dir().join(user.name()).exists(),
        "the credential cache is in the private timestamp dir"
    );

    writeln!(stdin, "done").expect("release the command");
    drop(stdin);
    let (status, killed) = proc::wait_timeout(&mut child, sudo::TIMEOUT);
    // The reader ends when the command's stdout closes.
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(sudo::TIMEOUT) {
        rest.push(line);
    }
    let stderr = errors.join().unwrap_or_default();
    assert!(
        status.success() && !killed,
        "sudo: {status:?}\n{}\n{stderr}",
        rest.join("\n")
    );
    assert_eq!(rest, ["got done"], "the command read its input: {stderr}");

    MachineSudo::of(user.name()).assert_same_as(&before, "after the run");
    drop(sudoers);
    MachineSudo::of(user.name()).assert_same_as(&before, "after the config is gone");
}
