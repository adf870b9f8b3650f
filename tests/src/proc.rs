// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running helper programs: as root or as another uid (`setpriv`), with a clean
//! environment, stdin fed up front, stdout/stderr captured, and a hard timeout.

use std::fmt;
use std::io::{Read, Seek, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A uid/gid pair to run a program as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
}

/// `PATH` given to every program the harness starts.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A `Command` for `program`, run as `creds` (through `setpriv --reuid --regid
/// --clear-groups`, which also drops every capability) or as root when `None`.
///
/// The environment is cleared down to `PATH` and `LC_ALL=C` (so PAM's messages are the
/// English `pam_strerror` texts the assertions compare with). In particular no `DBUS_*`
/// variable leaks from the test runner: every component must get its bus from us.
pub fn command(creds: Option<Creds>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = match creds {
        None => Command::new(program),
        Some(c) => {
            let mut cmd = Command::new("setpriv");
            cmd.arg(format!("--reuid={}", c.uid))
                .arg(format!("--regid={}", c.gid))
                .arg("--clear-groups")
                .arg("--")
                .arg(program);
            cmd
        }
    };
    cmd.env_clear().env("PATH", PATH).env("LC_ALL", "C");
    // Why: the cwd of `cargo test` is the crate dir, readable by all, so a program run
    // as a test user does not fail on an unreadable cwd; pin it anyway.
    cmd.current_dir("/");
    cmd
}

/// What a finished (or killed) program left behind.
#[derive(Debug)]
pub struct Output {
    /// What was run, for messages.
    pub what: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// The program was killed because it ran past its timeout.
    pub timed_out: bool,
}

impl Output {
    /// Exit status 0 and not timed out.
    pub fn success(&self) -> bool {
        self.status.success() && !self.timed_out
    }

    /// Panics with the full transcript unless the program succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "expected success:\n{self}");
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "$ {}\n  status: {}{}, elapsed: {:.3?}",
            self.what,
            self.status,
            if self.timed_out {
                " (KILLED: timed out)"
            } else {
                ""
            },
            self.elapsed
        )?;
        writeln!(f, "  --- stdout ---\n{}", indent(&self.stdout))?;
        write!(f, "  --- stderr ---\n{}", indent(&self.stderr))
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  | {l}\n")).collect()
}

/// Describe a command for messages (program and arguments, lossy).
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Run `cmd` with `stdin` as its whole input, capture its output, and kill it after
/// `timeout`. Output goes to anonymous temp files rather than pipes, so a grandchild that
/// keeps a pipe open cannot hang the harness.
pub fn run(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Output {
    let what = describe(&cmd);
    let mut input = tempfile::tempfile().expect("temp file for stdin");
    input.write_all(stdin).expect("write stdin file");
    input.rewind().expect("rewind stdin file");
    let out = tempfile::tempfile().expect("temp file for stdout");
    let err = tempfile::tempfile().expect("temp file for stderr");
    cmd.stdin(Stdio::from(input))
        .stdout(Stdio::from(out.try_clone().expect("dup")))
        .stderr(Stdio::from(err.try_clone().expect("dup")));
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    drop(cmd); // close our copies of the child's stdio
    let (status, timed_out) = wait_timeout(&mut child, timeout);
    let elapsed = start.elapsed();
    Output {
        what,
        status,
        stdout: read_all(out),
        stderr: read_all(err),
        elapsed,
        timed_out,
    }
}

fn read_all(mut f: std::fs::File) -> String {
    let mut buf = Vec::new();
    f.rewind()
        .and_then(|_| f.read_to_end(&mut buf))
        .expect("read output file");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Wait for `child` at most `timeout`; past it, SIGKILL and reap it. Returns the status
/// and whether it was killed.
pub fn wait_timeout(child: &mut std::process::Child, timeout: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => return (status, false),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                return (child.wait().expect("reap killed child"), true);
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Send `signal` (a name such as `TERM`) to one process, by pid, with `kill(1)`.
/// Why: keeps the harness free of `unsafe` libc calls.
pub fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status()
        .expect("run kill(1)");
    // A process that already exited is fine: the caller reaps it.
    let _ = status;
}

/// Poll `cond` every `every` until it is true or `timeout` passes. Returns whether it
/// became true.
pub fn poll(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}
