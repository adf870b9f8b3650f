// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 18: the login socket (peer to peer). The module trusts it only when the listener
//! is `bus_uid` (SO_PEERCRED) in a directory that is `bus_uid`'s alone, falls back to the
//! bus only when the socket is absent (ENOENT) or refuses (ECONNREFUSED), and the daemon
//! answers a non-root caller there exactly as on the bus, within bounded connections.
//! (The fail-closed and hostile-caller suites run on both paths: failmode.rs, hostile.rs.)
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use twostep_e2e::pam::strerror;
use twostep_e2e::pamclient::Client;
use twostep_e2e::syslog::Syslog;
use twostep_e2e::transport::{self, Transport};
use twostep_e2e::{proc, unique, Bus, Ctl, Daemon, DaemonConfig, PamService, User};

const LOG_WAIT: Duration = Duration::from_secs(5);

/// A daemon on a new bus serving its login socket, with root's PAM service naming it.
fn p2p_stack() -> (Bus, Daemon, Ctl, PamService) {
    transport::with(Transport::P2p, || {
        let bus = Bus::start();
        let daemon = Daemon::start(&bus);
        let ctl = Ctl::new(&bus);
        let pam = PamService::twostep(bus.address(), "debug");
        (bus, daemon, ctl, pam)
    })
}

/// A root-owned 0755 directory for a socket.
fn socket_dir() -> tempfile::TempDir {
    let dir = unique::temp_dir("p2p-sock");
    unique::chmod(dir.path(), 0o755);
    dir
}

/// A listener run by `user` at `path` (in a root-owned directory: the directory is lent to
/// the user while it binds) that accepts and holds connections, saying nothing.
fn listener_as(user: &User, path: &Path) -> Child {
    let dir = path.parent().expect("dir");
    std::os::unix::fs::chown(dir, Some(user.uid()), None).expect("chown to user");
    let script = "import socket,sys,time\n\
                  s=socket.socket(socket.AF_UNIX)\n\
                  s.bind(sys.argv[1]); s.listen(16)\n\
                  print('ready', flush=True)\n\
                  held=[]\n\
                  while True:\n    c,_=s.accept(); held.append(c)\n";
    let mut cmd = proc::command(Some(user.creds()), "python3");
    cmd.args(["-c", script])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start the fake listener");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("read ready");
    assert_eq!(line.trim(), "ready");
    std::os::unix::fs::chown(dir, Some(0), None).expect("chown back to root");
    child
}

/// A PAM service on `bus` whose module tries the login socket at `socket` first.
fn service_with_socket(bus: &Bus, socket: &Path, extra: &str) -> PamService {
    PamService::twostep(
        bus.address(),
        &format!("socket={} {extra}", socket.display()),
    )
}

#[test]
fn a_login_over_the_socket_never_touches_the_bus_and_succeeds() {
    let (bus, _daemon, ctl, pam) = p2p_stack();
    let user = User::create();
    let e = ctl.enroll(&user);
    let syslog = Syslog::start();
    let socket = transport::login_socket(bus.address());
    let run = Client::user(&pam, user.name())
        .answer(e.code_after(1))
        .syslog(&syslog)
        .run();
    run.assert_code("PAM_SUCCESS");
    let want = format!("connected to {}, served by uid 0", socket.display());
    assert!(
        syslog.wait_for(&[&want], LOG_WAIT).is_some(),
        "the module used the login socket:\n{}",
        syslog.dump()
    );
    assert!(
        syslog.matching(&["using the bus"]).is_empty(),
        "no fallback:\n{}",
        syslog.dump()
    );
    // A wrong code over the socket: refused as on the bus.
    pam.login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
}

#[test]
fn a_socket_served_by_another_uid_is_refused_and_the_bus_is_not_tried() {
    // A working daemon on the bus, with an enrolled user: a fallback would let the login in.
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let mallory = User::create();
    let dir = socket_dir();
    let socket = dir.path().join("login.sock");
    let mut fake = listener_as(&mallory, &socket);
    for extra in ["", "failmode=open timeout=2"] {
        let pam = service_with_socket(&bus, &socket, extra);
        let syslog = Syslog::start();
        let run = Client::user(&pam, user.name())
            .answer(e.code_after(1))
            .syslog(&syslog)
            .run();
        run.assert_code("PAM_AUTHINFO_UNAVAIL");
        assert!(run.prompts().is_empty(), "no code asked:\n{run}");
        let want = format!("served by uid {}, not uid 0", mallory.uid());
        assert!(
            syslog.wait_for(&[&want], LOG_WAIT).is_some(),
            "an alert names the impostor:\n{}",
            syslog.dump()
        );
    }
    // Control: the same user and code through the bus alone.
    let bus_only = PamService::twostep(bus.address(), "socket=none");
    bus_only
        .login(user.name(), &e.code_after(2))
        .assert_success();
    let _ = fake.kill();
    let _ = fake.wait();
}

#[test]
fn a_socket_in_a_directory_others_may_write_or_own_is_refused() {
    let bus = Bus::start();
    let dir = socket_dir();
    let run_dir = dir.path().join("run");
    let socket = run_dir.join("login.sock");
    let quoted = serde_json::to_string(&socket.to_string_lossy()).expect("quote");
    let _daemon = Daemon::start_with(
        &bus,
        DaemonConfig::default().set("daemon", "login_socket", &quoted),
    );
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let pam = service_with_socket(&bus, &socket, "");
    // As the daemon made it: trusted.
    pam.login(user.name(), &e.code_after(1)).assert_success();
    let other = User::create();
    let cases = ["group-writable", "world-writable", "owned by another user"];
    for (i, what) in cases.iter().enumerate() {
        match i {
            0 => unique::chmod(&run_dir, 0o775),
            1 => unique::chmod(&run_dir, 0o777),
            _ => {
                unique::chmod(&run_dir, 0o755);
                std::os::unix::fs::chown(&run_dir, Some(other.uid()), None).expect("chown");
            }
        }
        let run = pam.login(user.name(), &e.code_after(i as u64 + 2));
        run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
        assert!(
            !run.conversation().contains("Verification code"),
            "{what}: no code asked:\n{run}"
        );
    }
}

#[test]
fn an_absent_socket_falls_back_to_the_bus() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let dir = socket_dir();
    let missing = dir.path().join("nosuch").join("login.sock");
    let pam = service_with_socket(&bus, &missing, "debug");
    let syslog = Syslog::start();
    Client::user(&pam, user.name())
        .answer(e.code_after(1))
        .syslog(&syslog)
        .run()
        .assert_code("PAM_SUCCESS");
    assert!(
        syslog
            .wait_for(&["no login socket at", "using the bus"], LOG_WAIT)
            .is_some(),
        "{}",
        syslog.dump()
    );
}

#[test]
fn a_stale_socket_nobody_listens_on_falls_back_to_the_bus() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let dir = socket_dir();
    let stale: PathBuf = dir.path().join("login.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    assert!(stale.exists(), "the socket file stays");
    let pam = service_with_socket(&bus, &stale, "");
    pam.login(user.name(), &e.code_after(1)).assert_success();
}

/// What a non-root caller (a screen locker runs PAM as the user) sees for another user,
/// enrolled, not enrolled or missing, and for itself: on the login socket exactly what it
/// sees on the bus.
#[test]
fn a_non_root_caller_gets_the_same_answers_on_both_paths() {
    let answers = |t: Transport| {
        transport::with(t, || {
            let bus = Bus::start();
            let daemon = Daemon::start(&bus);
            let ctl = Ctl::new(&bus);
            let pam = PamService::twostep(bus.address(), "");
            let mallory = User::create();
            let m = ctl.enroll(&mallory);
            let enrolled = User::create();
            ctl.enroll(&enrolled);
            let plain = User::create();
            let missing = format!("ts_nosuch_{}", unique::random_hex(4));
            let mut seen = Vec::new();
            for (who, name) in [
                ("enrolled other", enrolled.name().to_owned()),
                ("plain other", plain.name().to_owned()),
                ("missing", missing.clone()),
            ] {
                let run = pam
                    .auth(&name)
                    .caller(mallory.creds())
                    .answer("123456")
                    .run();
                let text = run
                    .conversation()
                    .replace(&name, "<user>")
                    .replace(mallory.name(), "<caller>");
                seen.push(format!("{who}: {:?} {text}", run.pam_error()));
                // The daemon's own answer, by name and text (dbus-send goes over the login
                // socket on Transport::P2p).
                for member in ["org.twostep.Login1.Begin", "org.twostep.Login2.Begin"] {
                    let r = twostep_e2e::flows::call_paced(
                        bus.address(),
                        mallory.creds(),
                        member,
                        &[
                            format!("string:{name}"),
                            "dict:string:string:service,x".into(),
                        ],
                    );
                    let line = r
                        .unwrap_or_else(|e| e)
                        .replace(&name, "<user>")
                        .replace(&format!("uid {}", mallory.uid()), "uid <caller>");
                    let line = line
                        .lines()
                        .find(|l| l.starts_with("Error "))
                        .unwrap_or(&line)
                        .to_owned();
                    seen.push(format!("{who} {member}: {line}"));
                }
            }
            let own = pam
                .auth(mallory.name())
                .caller(mallory.creds())
                .answer(m.code_after(1))
                .run();
            seen.push(format!("own: {:?} {}", own.pam_error(), own.succeeded()));
            drop(daemon);
            seen
        })
    };
    let on_bus = answers(Transport::Bus);
    let on_socket = answers(Transport::P2p);
    assert_eq!(on_bus, on_socket);
    assert!(
        on_bus.last().is_some_and(|l| l.ends_with("true")),
        "{on_bus:?}"
    );
}

/// Open file descriptors of `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn many_connections_from_one_user_are_bounded_and_roots_logins_go_on() {
    let (bus, daemon, ctl, pam) = p2p_stack();
    let socket = transport::login_socket(bus.address());
    let user = User::create();
    let e = ctl.enroll(&user);
    let pid = daemon.pid().expect("running");
    let before = fds(pid);
    let mallory = User::create();
    // 300 connections held open, silent (no authentication).
    let script = "import socket,sys,time\n\
                  held=[]\n\
                  for i in range(300):\n    c=socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); held.append(c)\n\
                  print('held', flush=True)\n\
                  time.sleep(60)\n";
    let mut cmd = proc::command(Some(mallory.creds()), "python3");
    cmd.args(["-c", script])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut flood = cmd.spawn().expect("start the flood");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flood.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("read");
    assert_eq!(line.trim(), "held");
    std::thread::sleep(Duration::from_millis(300));
    let during = fds(pid);
    // Each admitted connection holds its socket and a pidfd of the peer (zbus asks for
    // the peer's credentials with SO_PEERPIDFD): two descriptors, for at most 16 of them.
    assert!(
        during <= before + 2 * 16 + 4,
        "the daemon holds {during} descriptors (was {before}) for one user's 300 connections"
    );
    // Root's logins go on meanwhile.
    pam.login(user.name(), &e.code_after(1)).assert_success();
    let _ = flood.kill();
    let _ = flood.wait();
    let settled = proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        fds(pid) <= before + 2
    });
    assert!(settled, "descriptors released: {} (was {before})", fds(pid));
    pam.login(user.name(), &e.code_after(2)).assert_success();
}

/// `dbus-send --peer` to the login socket as `creds` (root when `None`).
fn peer_call(
    socket: &Path,
    creds: Option<twostep_e2e::Creds>,
    member: &str,
    args: &[&str],
) -> String {
    let mut cmd = proc::command(creds, "dbus-send");
    cmd.arg(format!("--peer=unix:path={}", socket.display()))
        .args([
            "--print-reply",
            "--reply-timeout=10000",
            "/org/twostep/Twostep1",
            member,
        ])
        .args(args);
    let out = proc::run(cmd, b"", Duration::from_secs(20));
    format!("{}{}", out.stdout, out.stderr)
}

#[test]
fn the_socket_serves_the_login_interfaces_and_nothing_else_even_to_root() {
    let (bus, _daemon, ctl, _pam) = p2p_stack();
    let socket = transport::login_socket(bus.address());
    let user = User::create();
    ctl.enroll(&user);
    for (member, args) in [
        ("org.twostep.User1.Status", vec![]),
        (
            "org.twostep.Admin1.ShowUser",
            vec![format!("string:{}", user.name())],
        ),
        ("org.twostep.Admin1.Reload", vec![]),
        ("org.twostep.Store1.Export", vec![]),
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = peer_call(&socket, None, member, &args);
        assert!(
            out.contains("org.freedesktop.DBus.Error.UnknownInterface")
                || out.contains("org.freedesktop.DBus.Error.UnknownMethod"),
            "{member} over the login socket: {out}"
        );
    }
    // The login interface itself answers (root may begin for anyone).
    let out = peer_call(
        &socket,
        None,
        "org.twostep.Login2.Begin",
        &[
            &format!("string:{}", user.name()),
            "dict:string:string:service,x",
        ],
    );
    assert!(out.contains("method return"), "{out}");
    // A member the login interface does not have; Peer.Ping, answered as zbus does.
    let out = peer_call(&socket, None, "org.twostep.Login2.Status", &[]);
    assert!(
        out.contains("org.freedesktop.DBus.Error.UnknownMethod"),
        "{out}"
    );
    let out = peer_call(&socket, None, "org.freedesktop.DBus.Peer.Ping", &[]);
    assert!(out.contains("method return"), "{out}");
}

/// A peer that sends a header claiming a huge message, or passes a descriptor, or never
/// authenticates: its connection is closed, and the daemon holds no memory for it.
#[test]
fn a_hostile_peer_is_cut_off_and_costs_nothing() {
    let (bus, daemon, ctl, pam) = p2p_stack();
    let socket = transport::login_socket(bus.address());
    let user = User::create();
    let e = ctl.enroll(&user);
    let pid = daemon.pid().expect("running");
    let rss = || -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
            })
            .and_then(|k| k.parse().ok())
            .unwrap_or(0)
    };
    let rss0 = rss();
    let mallory = User::create();
    // Each case prints how the daemon ended the connection: "closed" (EOF) within 8 s.
    let script = r#"
import os, socket, struct, sys, time
path = sys.argv[1]
auth = b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\nBEGIN\r\n"
def ends(c):
    c.settimeout(8)
    try:
        while True:
            b = c.recv(65536)
            if not b:
                return "closed"
    except socket.timeout:
        return "open"
    except OSError:
        return "closed"
# 1. A method call whose header claims a body of 128 MiB (minus a little).
c = socket.socket(socket.AF_UNIX); c.connect(path)
c.sendall(auth + b"l\x01\x00\x01" + struct.pack("<II", (1 << 27) - 64, 1) + struct.pack("<I", 0))
print("huge", ends(c), flush=True)
# 2. A descriptor passed with the first message bytes.
c = socket.socket(socket.AF_UNIX); c.connect(path)
c.sendall(auth)
c.sendmsg([b"l\x01\x00\x01\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00"],
          [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("i", 0))])
print("fd", ends(c), flush=True)
# 3. An endless SASL line.
c = socket.socket(socket.AF_UNIX); c.connect(path)
try:
    c.sendall(b"\0AUTH EXTERNAL " + b"3" * 100000)
except OSError:
    pass
print("sasl", ends(c), flush=True)
# 4. A bare line feed first (zbus's SASL reader indexes the byte before it).
c = socket.socket(socket.AF_UNIX); c.connect(path)
c.sendall(b"\n")
print("newline", ends(c), flush=True)
# 5. Silence: closed once the authentication time is over.
c = socket.socket(socket.AF_UNIX); c.connect(path)
print("silent", ends(c), flush=True)
"#;
    let mut cmd = proc::command(Some(mallory.creds()), "python3");
    cmd.args(["-c", script]).arg(&socket);
    let out = proc::run(cmd, b"", Duration::from_secs(60));
    assert!(out.success(), "{out}");
    for case in ["huge", "fd", "sasl", "newline", "silent"] {
        assert!(
            out.stdout.contains(&format!("{case} closed")),
            "{case}: the connection stays open:\n{out}"
        );
    }
    assert!(rss() <= rss0 + 16 * 1024, "RSS {rss0} KiB -> {} KiB", rss());
    let mut daemon = daemon;
    assert!(daemon.is_running(), "the daemon died:\n{}", daemon.log());
    pam.login(user.name(), &e.code_after(1)).assert_success();
}

/// Connecting fails with something other than ENOENT or ECONNREFUSED (here EACCES: a
/// screen locker, as the user, in front of a directory it may not enter), or the listener
/// (root) never answers: both fail closed, and the bus, where the daemon would answer, is
/// not tried.
#[test]
fn a_socket_that_refuses_access_or_hangs_fails_closed_without_the_bus() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    // EACCES for the user.
    let dir = socket_dir();
    let closed = dir.path().join("private");
    std::fs::create_dir(&closed).expect("mkdir");
    unique::chmod(&closed, 0o700);
    let inside = closed.join("login.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&inside).expect("bind");
    let pam = service_with_socket(&bus, &inside, "failmode=open timeout=2");
    let run = pam
        .auth(user.name())
        .caller(user.creds())
        .answer(e.code_after(1))
        .run();
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    // A root listener that accepts and says nothing.
    let hang_dir = socket_dir();
    let hang = hang_dir.path().join("login.sock");
    let _silent = std::os::unix::net::UnixListener::bind(&hang).expect("bind");
    let pam = service_with_socket(&bus, &hang, "failmode=open timeout=2");
    let run = pam.login(user.name(), &e.code_after(1));
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    // Control: the bus alone lets the same user in with that code (it was never sent).
    PamService::twostep(bus.address(), "socket=none")
        .login(user.name(), &e.code_after(1))
        .assert_success();
}

/// An authenticated connection that then says nothing is closed once the prompt timeout
/// (here 10 s) and 30 s more have passed.
#[test]
fn an_idle_connection_is_closed_after_the_prompt_timeout() {
    let (bus, daemon) = transport::with(Transport::P2p, || {
        let bus = Bus::start();
        let config = DaemonConfig::default().set("login", "prompt_timeout_seconds", "10");
        let daemon = Daemon::start_with(&bus, config);
        (bus, daemon)
    });
    let socket = transport::login_socket(bus.address());
    let script = r#"
import os, socket, sys, time
c = socket.socket(socket.AF_UNIX); c.connect(sys.argv[1])
c.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\nBEGIN\r\n")
c.settimeout(60)
ok = c.recv(100)
assert ok.startswith(b"OK "), ok
t = time.monotonic()
try:
    rest = c.recv(100)
except OSError:
    rest = b""
print("closed after", int(time.monotonic() - t), "s" if not rest else "with data", flush=True)
"#;
    let mallory = User::create();
    let mut cmd = proc::command(Some(mallory.creds()), "python3");
    cmd.args(["-c", script]).arg(&socket);
    let out = proc::run(cmd, b"", Duration::from_secs(90));
    assert!(out.success(), "{out}\n{}", daemon.log());
    let secs: u64 = out
        .stdout
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((38..=45).contains(&secs), "closed after {secs} s:\n{out}");
}

/// A fake daemon on a login socket, run as root: it says `OK` to the authentication, then
/// answers the first call (Begin) as `mode` says: `error:NAME` (an error reply of that
/// name), `hangup` (closes the connection) or `silent` (holds it).
fn fake_daemon(path: &Path, mode: &str) -> Child {
    let script = r#"
import socket, struct, sys
path, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(8)
print("ready", flush=True)
held = []
def pad(b, n):
    return b + b"\0" * (-len(b) % n)
def field(code, sig, value):
    out = bytes([code, len(sig)]) + sig.encode() + b"\0"
    if sig == "u":
        out = pad(out, 4) + struct.pack("<I", value)
    elif sig == "s":
        out = pad(out, 4) + struct.pack("<I", len(value)) + value.encode() + b"\0"
    elif sig == "g":
        out += bytes([len(value)]) + value.encode() + b"\0"
    return out
def error(serial, name, text):
    body = struct.pack("<I", len(text)) + text.encode() + b"\0"
    fields = b""
    for f in [field(4, "s", name), field(5, "u", serial), field(8, "g", "s")]:
        fields = pad(fields, 8) + f
    head = b"l\x03\x01\x01" + struct.pack("<III", len(body), 1, len(fields)) + fields
    return pad(head, 8) + body
while True:
    c, _ = s.accept(); held.append(c)
    buf = b""
    while b"BEGIN\r\n" not in buf or len(buf.split(b"BEGIN\r\n", 1)[1]) < 16:
        chunk = c.recv(65536)
        if not chunk:
            break
        buf += chunk
    c.sendall(b"OK " + b"0123456789abcdef" * 2 + b"\r\n")
    msg = buf.split(b"BEGIN\r\n", 1)[1]
    serial = struct.unpack("<I", msg[8:12])[0]
    if mode.startswith("error:"):
        c.sendall(error(serial, mode[6:], "fake"))
    elif mode == "hangup":
        c.close()
"#;
    let mut cmd = proc::command(None, "python3");
    cmd.args(["-c", script])
        .arg(path)
        .arg(mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().expect("start the fake daemon");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut line,
    )
    .expect("read ready");
    assert_eq!(line.trim(), "ready");
    child
}

/// Whatever a (root) daemon on the login socket answers that is not a verdict — a transport
/// error name ("no owner", "no reply", "service unknown"), an unknown name, a hang-up, or
/// nothing — fails closed, whatever `failmode=`; and the bus, where the real daemon would let
/// the user in, is not tried.
#[test]
fn anything_but_an_answer_on_the_socket_fails_closed_even_with_failmode_open() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    // As on the bus: a transport error name, a hang-up or silence is "no usable answer"
    // (PAM_AUTHINFO_UNAVAIL), any other name a protocol error (PAM_AUTH_ERR); never absent.
    let unavail = "PAM_AUTHINFO_UNAVAIL";
    for (mode, want) in [
        ("error:org.freedesktop.DBus.Error.NameHasNoOwner", unavail),
        ("error:org.freedesktop.DBus.Error.ServiceUnknown", unavail),
        ("error:org.freedesktop.DBus.Error.NoReply", unavail),
        (
            "error:org.freedesktop.DBus.Error.AccessDenied",
            "PAM_AUTH_ERR",
        ),
        ("error:org.twostep.Error.SomethingNew", "PAM_AUTH_ERR"),
        ("hangup", unavail),
        ("silent", unavail),
    ] {
        let dir = socket_dir();
        let socket = dir.path().join("login.sock");
        let mut fake = fake_daemon(&socket, mode);
        let pam = service_with_socket(&bus, &socket, "failmode=open timeout=2");
        let run = Client::user(&pam, user.name())
            .answer(e.code_after(1))
            .run();
        let _ = fake.kill();
        let _ = fake.wait();
        assert_eq!(run.code(), Some(want), "{mode}:\n{run}");
        assert!(run.prompts().is_empty(), "{mode}: a code was asked:\n{run}");
    }
    // Control: the same code through the bus alone.
    PamService::twostep(bus.address(), "socket=none")
        .login(user.name(), &e.code_after(1))
        .assert_success();
}
