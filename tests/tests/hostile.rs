// SPDX-License-Identifier: MIT OR Apache-2.0
//! Hostile local users (issue 17, item 2), through the real bus with the shipped policy, as
//! unprivileged uids made for the test. What `enumeration.rs` (Login1.Begin and the
//! name-taking Admin1 methods), `sessions.rs` (unanswered sessions), `harness.rs` (owning
//! the name on a bus without a daemon) and `failmode.rs` already prove is not repeated;
//! this adds:
//! - the methods enumeration.rs leaves out, for another user and for nobody: one refusal;
//!   User1 (no user argument) with another user's valid code as proof touches only the
//!   caller; another connection's session answers like a made-up one;
//! - taking over the daemon's name while it runs (replace flags) is refused;
//! - a flood from many connections of one uid is rate limited, and root's logins for
//!   other users keep working meanwhile;
//! - huge and ill-typed arguments get a clear D-Bus error, the daemon stays up, and its
//!   descriptor count and RSS return near their baseline (read from /proc/PID);
//! - `sudo -E` and `su` with `DBUS_SYSTEM_BUS_ADDRESS` pointing at an always-yes stand-in:
//!   the stand-in is never contacted, with a control run that shows the variable reached
//!   the host and what it ran.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twostep_e2e::bus::TWOSTEP_NAME;
use twostep_e2e::fake_owner::{Answer, FakeOwner, Script};
use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::ns::Namespace;
use twostep_e2e::pty::{Dialog, Driver};
use twostep_e2e::sudo::Sudoers;
use twostep_e2e::{
    artifacts, flows, otp, proc, unique, Bus, Creds, Daemon, PamService, Stack, User,
};

use twostep_e2e::flows::call_paced as paced;

/// The `Error NAME: text` line of a failed call.
fn error_line(r: Result<String, String>, what: &str) -> String {
    let e = r.expect_err(&format!("{what} succeeded"));
    e.lines()
        .find(|l| l.starts_with("Error "))
        .unwrap_or_else(|| panic!("{what}: no D-Bus error: {e}"))
        .to_owned()
}

/// `busctl call` (it marshals structs, which dbus-send cannot) as `creds`.
fn busctl(address: &str, creds: Creds, args: &[&str]) -> Result<String, String> {
    let mut cmd = proc::command(Some(creds), "busctl");
    cmd.arg(format!("--address={address}"))
        .args([
            "--timeout=20",
            "call",
            TWOSTEP_NAME,
            "/org/twostep/Twostep1",
        ])
        .args(args);
    let out = proc::run(cmd, b"", Duration::from_secs(30));
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!("Error {}", out.stderr.trim()))
    }
}

fn every_other_method_for_another_user_gets_one_refusal() {
    let s = Stack::start();
    let mallory = User::create();
    let victim = User::create();
    let e = s.ctl.enroll(&victim);
    let missing = format!("ts_nosuch_{}", unique::random_hex(4));
    let a = s.bus.address();

    // Methods enumeration.rs does not call: the same refusal for an existing other user
    // and for a name nobody has.
    let named: Vec<(&str, Vec<String>)> = vec![
        (
            "org.twostep.Login2.Begin",
            vec!["dict:string:string:service,x".into()],
        ),
        ("org.twostep.Admin1.RepairUser", vec!["boolean:true".into()]),
    ];
    for (member, rest) in &named {
        let answer = |name: &str| {
            let mut args = vec![format!("string:{name}")];
            args.extend(rest.iter().cloned());
            error_line(paced(a, mallory.creds(), member, &args), member)
        };
        let nobody = answer(&missing);
        assert!(
            nobody.contains("org.twostep.Error.AccessDenied"),
            "{member}: {nobody}"
        );
        assert_eq!(
            answer(victim.name()),
            nobody,
            "{member} tells a user from nobody"
        );
    }
    let import = |name: &str| {
        let r = busctl(
            a,
            mallory.creds(),
            &[
                "org.twostep.Admin1",
                "ImportEnrolment",
                "sa(saysuubt)asbb",
                name,
                "1",
                "default",
                "3",
                "1",
                "2",
                "3",
                "SHA1",
                "6",
                "30",
                "false",
                "0",
                "0",
                "false",
                "false",
            ],
        );
        error_line(r, "ImportEnrolment")
    };
    // busctl prints the error's text, not its name.
    let nobody = import(&missing);
    assert!(nobody.contains("may not administer"), "{nobody}");
    assert_eq!(
        import(victim.name()),
        nobody,
        "ImportEnrolment tells a user from nobody"
    );
    for member in ["ListUsers", "ListPending", "Reload"] {
        let r = paced(
            a,
            mallory.creds(),
            &format!("org.twostep.Admin1.{member}"),
            &[],
        );
        assert!(
            error_line(r, member).contains("org.twostep.Error.AccessDenied"),
            "{member}"
        );
    }

    // A login root began for the victim, answered from another connection by mallory with
    // the right code: the same answer as a made-up session, and the victim's state is
    // untouched (the session stays root's).
    let root = twostep_e2e::client::Client::connect(a);
    let (session, _) = root
        .begin(victim.name())
        .expect("root begins the victim's login");
    let code = e.code_after(1);
    let answer = |session: &str| {
        let args = [
            format!("string:{session}"),
            flows::bytes_arg(code.as_bytes()),
        ];
        error_line(
            paced(a, mallory.creds(), "org.twostep.Login1.Answer", &args),
            "Answer",
        )
    };
    let made_up = answer("0123456789abcdef0123456789abcdef");
    assert!(made_up.contains("org.twostep.Error.NoSession"), "{made_up}");
    assert_eq!(
        answer(&session),
        made_up,
        "another connection's session is not mallory's"
    );
    let step = root
        .answer(&session, code.as_bytes())
        .expect("root's session still answers");
    assert!(
        step.contains("success"),
        "the code was not spent by mallory's tries: {step}"
    );

    // User1 takes no user name: with the victim's valid code as proof, each acts on the
    // caller's own (empty) record and refuses; the victim stays enrolled.
    let proof = flows::bytes_arg(e.code_after(2).as_bytes());
    for (member, args) in [
        ("Disable", vec![proof.clone()]),
        ("RegenerateRecoveryCodes", vec![proof.clone()]),
        (
            "AuthenticatorAdd",
            vec!["string:mine".into(), proof.clone()],
        ),
        (
            "AuthenticatorRemove",
            vec!["string:default".into(), proof.clone()],
        ),
        (
            "AuthenticatorConfirm",
            vec!["string:default".into(), proof.clone()],
        ),
        ("EnrollConfirm", vec![proof.clone()]),
    ] {
        let r = paced(
            a,
            mallory.creds(),
            &format!("org.twostep.User1.{member}"),
            &args,
        );
        let line = error_line(r, member);
        assert!(
            [
                "NotEnrolled",
                "NoPendingEnrollment",
                "WrongCode",
                "InvalidArgument"
            ]
            .iter()
            .any(|n| line.contains(&format!("org.twostep.Error.{n}"))),
            "{member}: {line}"
        );
    }
    let status = s.ctl.status(&victim);
    assert_eq!(status["enrolled"], true, "{status}");
}

fn taking_over_the_running_daemons_name_is_refused() {
    let s = Stack::start();
    let mallory = User::create();
    let name = format!("string:{TWOSTEP_NAME}");
    // 2 = REPLACE_EXISTING, 6 = REPLACE_EXISTING | DO_NOT_QUEUE, 1 = ALLOW_REPLACEMENT.
    for flags in ["uint32:2", "uint32:6", "uint32:0", "uint32:1"] {
        let denied = s
            .bus
            .call_driver(Some(mallory.creds()), "RequestName", &[&name, flags])
            .expect_err("a user must not own or queue for the daemon's name");
        assert!(denied.contains("AccessDenied"), "{flags}: {denied}");
    }
    assert_eq!(
        s.bus.name_owner_uid(TWOSTEP_NAME),
        Some(0),
        "root's daemon still owns it"
    );
}

/// Descriptors and resident memory of `pid`, from /proc.
fn fds_and_rss_kib(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    (fds, rss)
}

fn a_flood_of_connections_is_rate_limited_and_roots_logins_go_on() {
    let s = Stack::start();
    let mallory = User::create();
    let victims: Vec<_> = (0..3).map(|_| User::create()).collect();
    let keys: Vec<_> = victims.iter().map(|v| s.ctl.enroll(v)).collect();
    let address = s.bus.address().to_owned();
    let stop = Arc::new(AtomicBool::new(false));
    let flood_started = Instant::now();
    let (calls, busy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Eight threads, each starting a new connection (one dbus-send) per call, as fast as
    // they can, for mallory's own login.
    let flooders: Vec<_> = (0..8)
        .map(|_| {
            let (stop, calls, busy) = (stop.clone(), calls.clone(), busy.clone());
            let (address, creds, me) =
                (address.clone(), mallory.creds(), mallory.name().to_owned());
            let transport = twostep_e2e::transport::current();
            std::thread::spawn(move || {
                let _on = twostep_e2e::transport::Scoped::set(transport);
                while !stop.load(Ordering::Relaxed) {
                    let args = [
                        format!("string:{me}"),
                        "dict:string:string:service,x".into(),
                    ];
                    let r = flows::call(&address, Some(creds), "org.twostep.Login2.Begin", &args);
                    calls.fetch_add(1, Ordering::Relaxed);
                    if r.is_err_and(|e| e.contains("org.twostep.Error.Busy")) {
                        busy.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    // Root's logins for another user, during the flood: each within a few seconds.
    for (victim, key) in victims.iter().zip(&keys) {
        let started = Instant::now();
        s.pam
            .login(victim.name(), &key.code_at(otp::now()))
            .assert_success();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "{}: {took:?}", victim.name());
    }
    stop.store(true, Ordering::Relaxed);
    let flood = flood_started.elapsed();
    for f in flooders {
        f.join().unwrap();
    }
    let (calls, busy) = (calls.load(Ordering::Relaxed), busy.load(Ordering::Relaxed));
    // The daemon's limit for a non-root uid: a burst of 20, then 5 calls a second
    // (bus/rate.rs); a little slack for calls in flight at the edges.
    let admitted = calls - busy;
    let allowed = 20 + 5 * flood.as_secs() as usize + 10;
    assert!(calls > 40, "the flood made only {calls} calls");
    assert!(
        admitted <= allowed,
        "{admitted} of {calls} calls admitted in {flood:?}: not rate limited"
    );
}

fn huge_and_ill_typed_arguments_get_clear_errors_and_cost_nothing_after() {
    let mut s = Stack::start();
    let mallory = User::create();
    let a = s.bus.address().to_owned();
    let pid = s.daemon.pid().expect("daemon pid");
    let _ = paced(&a, mallory.creds(), "org.twostep.User1.Status", &[]);
    let (fds0, rss0) = fds_and_rss_kib(pid);

    let huge_name = "x".repeat(100_000);
    let huge_bytes = flows::bytes_arg(&vec![b'7'; 30_000]);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "org.twostep.Login2.Begin",
            vec![
                format!("string:{huge_name}"),
                "dict:string:string:service,x".into(),
            ],
            "org.twostep.Error.InvalidArgument",
        ),
        (
            "org.twostep.Login2.Begin",
            vec![
                format!("string:{}", mallory.name()),
                format!("dict:string:string:service,{huge_name}"),
            ],
            "org.twostep.Error.InvalidArgument",
        ),
        (
            "org.twostep.Login2.Answer",
            vec![format!("string:{huge_name}"), huge_bytes.clone()],
            "org.twostep.Error.",
        ),
        (
            "org.twostep.User1.AuthenticatorAdd",
            vec![format!("string:{huge_name}"), huge_bytes.clone()],
            "org.twostep.Error.",
        ),
        (
            "org.twostep.User1.EnrollConfirm",
            vec![huge_bytes],
            "org.twostep.Error.",
        ),
        // zbus's own error for a body of another signature.
        (
            "org.twostep.Login2.Begin",
            vec!["int32:7".into()],
            "Signature mismatch",
        ),
        (
            "org.twostep.User1.Nope",
            vec![],
            "org.freedesktop.DBus.Error.UnknownMethod",
        ),
    ];
    for round in 0..6 {
        for (member, args, expected) in &cases {
            let started = Instant::now();
            let line = error_line(paced(&a, mallory.creds(), member, args), member);
            assert!(line.contains(expected), "{member} (round {round}): {line}");
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "{member}: slow answer"
            );
        }
    }
    assert!(
        s.daemon.is_running(),
        "the daemon died:\n{}",
        s.daemon.log()
    );
    // Back near the baseline: no descriptor kept, no memory held per bad call.
    let mut last = (0, 0);
    let settled = proc::poll(Duration::from_secs(10), Duration::from_millis(200), || {
        last = fds_and_rss_kib(pid);
        last.0 <= fds0 + 2 && last.1 <= rss0 + 16 * 1024
    });
    assert!(
        settled,
        "fds {fds0} -> {}, RSS {rss0} KiB -> {} KiB",
        last.0, last.1
    );
    let own = paced(&a, mallory.creds(), "org.twostep.User1.Status", &[]);
    assert!(own.is_ok(), "the daemon still answers: {own:?}");
}

/// A directory holding `system_bus_socket`, a hard link to `bus`'s socket, to be mounted
/// over /run/dbus in a private namespace: the module's default address then reaches it.
fn run_dbus_for(bus: &Bus) -> tempfile::TempDir {
    let dir = unique::temp_dir("run-dbus");
    std::fs::hard_link(bus.socket(), dir.path().join("system_bus_socket"))
        .expect("hard link to the bus socket");
    unique::chmod(dir.path(), 0o755);
    dir
}

/// Password, then the module with no `bus=`: it must use the fixed system bus socket.
fn default_bus_stack() -> PamService {
    PamService::new(&format!(
        "@include common-auth\nauth required {}\n@include common-account\n\
         session required pam_permit.so\npassword required pam_deny.so\n",
        artifacts::pam_module().display()
    ))
}

fn sudo_e_and_su_never_reach_a_bus_named_by_the_environment() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = twostep_e2e::Ctl::new(&bus);
    let run_dbus = run_dbus_for(&bus);
    let impostor_bus = Bus::start();
    let impostor = FakeOwner::start(
        &impostor_bus,
        Script {
            begin: Answer::Yes,
            answer: Answer::Yes,
        },
    );
    let pam = default_bus_stack();
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());
    let var = ("DBUS_SYSTEM_BUS_ADDRESS", impostor_bus.address());
    let ns = || Namespace::new().bind(run_dbus.path(), Path::new("/run/dbus"));

    // sudo -E: the user's rule allows keeping the environment (SETENV).
    let sudoers = Sudoers::with_rules(&format!(
        "Defaults:{u} pam_service={p}, !use_pty, timestamp_timeout=0, passwd_tries=1, !mail_badpass\n\
         {u} ALL=(ALL:ALL) SETENV: ALL\n",
        u = user.name(),
        p = pam.name()
    ));
    let sudo = |code: &str| {
        let mut cmd = sudoers.command(ns(), &user, &["-E", "-S", "-k", "printenv", var.0]);
        cmd.env(var.0, var.1);
        proc::run(
            cmd,
            format!("{}\n{code}\n", user.password()).as_bytes(),
            Duration::from_secs(30),
        )
    };
    let wrong = sudo("000000");
    assert!(!wrong.success(), "a wrong code passed sudo -E:\n{wrong}");
    // Control: the right code; the command printed the variable sudo was given.
    let right = sudo(&e.code_after(1));
    assert!(right.success(), "{right}");
    assert_eq!(
        right.stdout.trim(),
        var.1,
        "the variable reached sudo and its command"
    );

    // su (no `-`: the environment is kept), on a terminal, with the same stack as "su".
    let su = |code: &str| {
        let caller = User::create();
        let dialog = Dialog::new()
            .expect("Password: ")
            .send(user.password())
            .expect(twostep_e2e::prompts::CODE)
            .send(code);
        let driver = Driver::new(&dialog);
        let mut cmd = logins::su_command(
            ns(),
            &pam,
            &caller,
            &driver,
            &[user.name(), "-c", "echo bus=$DBUS_SYSTEM_BUS_ADDRESS"],
        );
        cmd.env(var.0, var.1);
        driver.run(cmd)
    };
    let wrong = su("000000");
    assert!(wrong.completed(), "{wrong}");
    assert_ne!(
        wrong.exit_code(),
        Some(0),
        "a wrong code passed su:\n{wrong}"
    );
    let right = su(&e.code_after(2));
    assert_eq!(right.exit_code(), Some(0), "{right}");
    assert!(
        right.transcript().contains(&format!("bus={}", var.1)),
        "control:\n{right}"
    );

    assert_eq!(
        impostor.begins() + impostor.answers(),
        0,
        "the module reached the impostor"
    );
}

/// twostepd makes itself non-dumpable at start (no core file with secrets): the kernel
/// then gives its /proc/PID files to root even when the daemon runs as another uid, so a
/// process of that same uid cannot read its environment or memory.
fn the_daemon_is_not_dumpable_even_for_its_own_uid() {
    use std::os::unix::fs::MetadataExt;
    let bus = Bus::permissive();
    let owner = User::create();
    let state_owner = twostep_e2e::DaemonConfig::new();
    let daemon = Daemon::start_as(&bus, state_owner, &owner);
    let pid = daemon.pid().expect("daemon pid");
    let status = Path::new("/proc").join(pid.to_string()).join("status");
    let text = std::fs::read_to_string(&status).expect("read /proc/PID/status");
    assert!(
        text.contains(&format!("Uid:\t{}", owner.uid())),
        "not running as {}:\n{text}",
        owner.uid()
    );
    let meta = std::fs::metadata(&status).unwrap();
    assert_eq!(
        meta.uid(),
        0,
        "/proc/{pid}/status belongs to uid {}: the daemon is dumpable",
        meta.uid()
    );
    let mut cat = proc::command(Some(owner.creds()), "cat");
    cat.arg(format!("/proc/{pid}/environ"));
    let out = proc::run(cat, b"", Duration::from_secs(10));
    assert!(
        !out.success(),
        "its own uid read the daemon's environment:\n{out}"
    );
    // Control: an ordinary process of that uid is dumpable, its /proc files its own.
    let mut sleep = proc::command(Some(owner.creds()), "sleep");
    let mut child = sleep.arg("30").spawn().expect("sleep");
    // (setpriv switches uid, which makes it non-dumpable until it execs sleep.)
    let comm = format!("/proc/{}/comm", child.id());
    proc::poll(Duration::from_secs(5), Duration::from_millis(10), || {
        std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "sleep")
    });
    let mine = std::fs::metadata(format!("/proc/{}/status", child.id()))
        .unwrap()
        .uid();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        mine,
        owner.uid(),
        "control: a dumpable process of that uid owns its /proc"
    );
}

// Every test above, on the bus and on the login socket (issue 18).
twostep_e2e::both_transports!(
    every_other_method_for_another_user_gets_one_refusal,
    taking_over_the_running_daemons_name_is_refused,
    a_flood_of_connections_is_rate_limited_and_roots_logins_go_on,
    huge_and_ill_typed_arguments_get_clear_errors_and_cost_nothing_after,
    sudo_e_and_su_never_reach_a_bus_named_by_the_environment,
    the_daemon_is_not_dumpable_even_for_its_own_uid,
);
