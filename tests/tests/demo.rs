// SPDX-License-Identifier: MIT OR Apache-2.0
//! The README quick start, `scripts/demo`, end to end: started the way a newcomer starts
//! it (but with the binaries already built, on its own port and user so it cannot clash
//! with a demo someone runs by hand), logged into over SSH with enrolment at the first
//! login and a code at the second, then stopped — once with `--stop`, once with Ctrl-C
//! (SIGINT) — and checked to leave nothing behind.
#![forbid(unsafe_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use twostep_e2e::sshd::{port_closed, Ssh};
use twostep_e2e::{artifacts, proc, qr, unique, user};

const READY: &str = "twostep demo ready";

fn script() -> PathBuf {
    artifacts::repo_root().join("scripts/demo")
}

fn state_dir(port: u16) -> PathBuf {
    PathBuf::from(format!("/run/twostep-demo-{port}"))
}

fn pam_file(port: u16) -> PathBuf {
    PathBuf::from(format!("/etc/pam.d/twostep-demo-sshd-{port}"))
}

/// `scripts/demo --stop --port PORT`.
fn stop(port: u16) -> proc::Output {
    let mut cmd = proc::command(None, script());
    cmd.args(["--stop", "--port", &port.to_string()]);
    proc::run(cmd, b"", Duration::from_secs(30))
}

/// Demos of killed test runs (user `ts_demo_*`, main process gone) are stopped first.
fn sweep() {
    for e in std::fs::read_dir("/run").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(port) = name
            .strip_prefix("twostep-demo-")
            .and_then(|p| p.parse::<u16>().ok())
        else {
            continue;
        };
        let ours =
            std::fs::read_to_string(e.path().join("user")).is_ok_and(|u| u.starts_with("ts_demo_"));
        let alive = std::fs::read_to_string(e.path().join("demo.pid"))
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if ours && !alive {
            let _ = stop(port);
        }
    }
}

/// A running `scripts/demo`; stopped (and its child reaped) on drop.
struct Demo {
    child: Option<Child>,
    port: u16,
    user: String,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Start the demo in the background and wait for its ready line; a port taken
    /// meanwhile by another test makes it retry on another port.
    fn start(user: &str) -> Demo {
        for _ in 0..5 {
            let port = 20000 + u16::from_str_radix(&unique::random_hex(2), 16).unwrap() % 10000;
            if !port_closed(port, Duration::ZERO) {
                continue;
            }
            let dir = unique::temp_dir("demo");
            let output = dir.path().join("demo.out");
            let out = File::create(&output).unwrap();
            let mut cmd = proc::command(None, script());
            cmd.arg("--no-build")
                .arg("--bin-dir")
                .arg(artifacts::target_dir())
                .args(["--port", &port.to_string(), "--user", user])
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out);
            // Fail early with a clear message if the build is missing.
            artifacts::twostepd();
            artifacts::pam_module();
            let child = cmd.spawn().expect("start scripts/demo");
            let mut demo = Demo {
                child: Some(child),
                port,
                user: user.to_string(),
                output,
                _dir: dir,
            };
            let mut exited = false;
            proc::poll(Duration::from_secs(60), Duration::from_millis(50), || {
                exited = matches!(demo.child.as_mut().unwrap().try_wait(), Ok(Some(_)));
                exited || demo.output().contains(READY)
            });
            if demo.output().contains(READY) {
                return demo;
            }
            let text = demo.output();
            if exited && (text.contains("already listens") || text.contains("did not start")) {
                continue; // another test took the port: Drop cleans up, try another
            }
            panic!("scripts/demo did not become ready:\n{text}");
        }
        panic!("scripts/demo could not find a free port in 5 attempts");
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The password the demo printed for its user.
    fn password(&self) -> String {
        self.output()
            .lines()
            .find(|l| l.trim_start().starts_with("password:"))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no password line in:\n{}", self.output()))
    }

    /// The pids the demo recorded for what it started (and its own).
    fn pids(&self) -> Vec<u32> {
        ["demo", "dbus", "twostepd", "sshd", "tail"]
            .iter()
            .map(|w| {
                let f = state_dir(self.port).join(format!("{w}.pid"));
                std::fs::read_to_string(&f)
                    .unwrap_or_else(|e| panic!("{}: {e}", f.display()))
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// Wait for the demo's main process to exit; its exit status.
    fn wait(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("demo still running");
        let (status, killed) = proc::wait_timeout(&mut child, Duration::from_secs(30));
        assert!(!killed, "scripts/demo did not exit:\n{}", self.output());
        status
    }

    /// Assert that nothing the demo created is left.
    fn assert_gone(&self, pids: &[u32]) {
        let out = self.output();
        assert!(
            !state_dir(self.port).exists(),
            "{} left behind:\n{out}",
            state_dir(self.port).display()
        );
        assert!(
            !pam_file(self.port).exists(),
            "PAM service left behind:\n{out}"
        );
        assert_eq!(user::lookup(&self.user), None, "user left behind:\n{out}");
        assert!(
            !Path::new("/home").join(&self.user).exists(),
            "home directory left behind"
        );
        for pid in pids {
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "process {pid} left running:\n{out}"
            );
        }
        assert!(
            port_closed(self.port, Duration::from_secs(5)),
            "port still open"
        );
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== scripts/demo output ===\n{}", self.output());
        }
        if self.child.is_some() || state_dir(self.port).exists() {
            let _ = stop(self.port);
        }
        if let Some(mut child) = self.child.take() {
            let (_, _) = proc::wait_timeout(&mut child, Duration::from_secs(20));
        }
    }
}

/// The quick start: the demo comes up, the demo user enrols at the first SSH login (QR
/// code on the client, code, recovery codes, Enter), logs in with a code the second time;
/// `scripts/demo --stop` then removes processes, user, home, PAM service and state.
#[test]
fn demo_login_with_enrolment_then_stop() {
    twostep_e2e::require_root();
    sweep();
    let user = format!("ts_demo_{}_{}", std::process::id(), unique::random_hex(2));
    let mut demo = Demo::start(&user);
    let out = demo.output();
    // Every command the demo prints works when pasted: the ssh line pins this run's host
    // key (a strict client with only that file logs in), and the status line runs as the
    // demo user.
    let known_hosts = state_dir(demo.port).join("known_hosts");
    let ssh_line = format!(
        "ssh -o UserKnownHostsFile={} -p {} {user}@127.0.0.1",
        known_hosts.display(),
        demo.port
    );
    assert!(
        out.contains(&ssh_line),
        "the demo must print how to log in:\n{out}"
    );
    let status_line = out
        .lines()
        .find_map(|l| l.split_once(&format!("as {user}:")).map(|(_, c)| c.trim()))
        .unwrap_or_else(|| panic!("the demo must print a status command:\n{out}"))
        .to_string();
    let password = demo.password();
    let pids = demo.pids();
    assert!(pam_file(demo.port).exists());
    // Its own login socket, in its own directory, named by its PAM line: demos side by side
    // (and the package's daemon) each keep theirs.
    let socket = state_dir(demo.port).join("login/login.sock");
    assert!(socket.exists(), "no demo login socket {}", socket.display());
    let pam = std::fs::read_to_string(pam_file(demo.port)).unwrap_or_default();
    assert!(
        pam.contains(&format!("socket={}", socket.display())),
        "{pam}"
    );

    let run = Ssh::to(demo.port, &user)
        .known_hosts(&known_hosts)
        .password(&password)
        .run();
    assert!(
        run.logged_in(),
        "first login (enrolment):\n{run}\n{}",
        demo.output()
    );
    assert!(
        run.prompts
            .iter()
            .any(|p| qr::find_terminal_qr(p).is_some()),
        "the QR code must reach the ssh client:\n{run}"
    );
    assert!(
        run.prompts
            .iter()
            .any(|p| p.contains("on a light one it shows inverted")),
        "the prompt says what to do when the QR code shows inverted:\n{run}"
    );
    assert!(
        run.prompted("Press Enter once you have saved them: "),
        "{run}"
    );
    let e = run
        .enrolled
        .clone()
        .expect("the enrolment prompt showed a key");

    let run = Ssh::to(demo.port, &user)
        .password(&password)
        .code(&e.code_after(1))
        .run();
    assert!(run.logged_in(), "second login (code):\n{run}");
    assert!(run.prompted(twostep_e2e::prompts::CODE), "{run}");
    let status = proc::run(
        {
            let mut c = proc::command(None, "runuser");
            c.args(["-u", &user, "--", "sh", "-c", &status_line]);
            c
        },
        b"",
        Duration::from_secs(20),
    );
    status.assert_success();
    assert!(
        status.stdout.contains("Last success"),
        "the printed status command, run as {user}:\n{status}"
    );
    let wrong = Ssh::to(demo.port, &user)
        .password(&password)
        .code(&e.wrong_code())
        .run();
    assert!(wrong.refused(), "{wrong}");

    let stopped = stop(demo.port);
    stopped.assert_success();
    let status = demo.wait();
    assert!(
        status.success(),
        "the demo should exit 0 when stopped:\n{}",
        demo.output()
    );
    assert!(
        demo.output().contains("outcome=enrolled"),
        "{}",
        demo.output()
    );
    demo.assert_gone(&pids);
}

/// Ctrl-C (SIGINT to the demo) tears everything down as well.
#[test]
fn demo_ctrl_c_removes_everything() {
    twostep_e2e::require_root();
    sweep();
    let user = format!("ts_demo_{}_{}", std::process::id(), unique::random_hex(2));
    let mut demo = Demo::start(&user);
    let pids = demo.pids();
    proc::signal(pids[0], "INT");
    let status = demo.wait();
    assert!(status.success(), "{}", demo.output());
    assert!(
        demo.output().contains("stopping the demo"),
        "{}",
        demo.output()
    );
    demo.assert_gone(&pids);
}
