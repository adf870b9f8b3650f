// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl … | head` (issue 20 item 13): a reader that stops reading is not an error.
//! Every subcommand that prints, with its standard output a real pipe whose reader has
//! already gone, exits as it would with a reader (no panic, no "Broken pipe", no exit 101)
//! and prints nothing about it on stderr.
//!
//! Why a reader that is gone before twostepctl starts: every write then fails with EPIPE,
//! so the test does not depend on how much fits in the pipe's buffer or on timing.
#![forbid(unsafe_code)]

use std::io::Read;
use std::process::{Command, Stdio};

use twostep_e2e::ctl::TIMEOUT;
use twostep_e2e::proc::{self, Creds};
use twostep_e2e::{artifacts, unique, Stack, User};

/// The write end of a pipe whose read end is closed: the reader (`true`) has exited.
fn pipe_without_reader() -> Stdio {
    let mut reader = Command::new("true")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn true");
    // Taken before waiting: `wait` would close it.
    let write_end = reader.stdin.take().expect("pipe to true");
    let status = reader.wait().expect("wait for true");
    assert!(status.success(), "true failed: {status}");
    Stdio::from(write_end)
}

/// Exit code and stderr of `cmd` with `stdout` as given and no stdin.
fn run(mut cmd: Command, stdout: Stdio) -> (Option<i32>, String) {
    let what = proc::describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let (status, killed) = proc::wait_timeout(&mut child, TIMEOUT);
    assert!(!killed, "{what} ran past its timeout; stderr:\n{err}");
    (status.code(), err)
}

/// `make()` run once with a reader that reads everything, once with a reader that is gone:
/// the same exit code, and nothing about the pipe on stderr.
#[track_caller]
fn quiet_without_reader(make: &dyn Fn() -> Command) {
    let what = proc::describe(&make());
    let (with_reader, _) = run(make(), Stdio::null());
    let (without, err) = run(make(), pipe_without_reader());
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("EPIPE"),
        "{what} with its reader gone printed:\n{err}"
    );
    assert_ne!(without, Some(101), "{what} panicked:\n{err}");
    assert_eq!(
        without, with_reader,
        "{what}: exit code without a reader differs from the one with a reader; stderr:\n{err}"
    );
}

#[test]
fn commands_without_a_daemon_exit_quietly_when_the_reader_is_gone() {
    twostep_e2e::require_root();
    let ctl = artifacts::twostepctl();
    for shell in ["bash", "zsh", "fish"] {
        quiet_without_reader(&|| {
            let mut cmd = proc::command(None, &ctl);
            cmd.args(["completions", shell]);
            cmd
        });
    }
    // doctor on a PAM directory of its own (nothing names a bus: no daemon is asked).
    let temp = unique::temp_dir("output");
    let dir = temp.path();
    std::fs::write(
        dir.join("login"),
        "auth [success=done default=ignore] pam_permit.so\nauth required pam_deny.so\n",
    )
    .expect("write PAM file");
    for json in [false, true] {
        quiet_without_reader(&|| {
            let mut cmd = proc::command(None, &ctl);
            cmd.arg("doctor").arg("--pam-dir").arg(dir);
            cmd.arg("--sshd-config").arg(dir.join("no_sshd_config"));
            cmd.arg("--sudoers").arg(dir.join("no_sudoers"));
            if json {
                cmd.arg("--json");
            }
            cmd
        });
    }
}

#[test]
fn daemon_commands_exit_quietly_when_the_reader_is_gone() {
    twostep_e2e::require_root();
    let s = Stack::start();
    let user = User::create();
    s.ctl.enroll(&user);
    let as_user = Some(user.creds());
    let cases: Vec<(Option<Creds>, Vec<&str>)> = vec![
        (as_user, vec!["status"]),
        (as_user, vec!["status", "--json"]),
        (as_user, vec!["recovery-codes", "--count"]),
        (as_user, vec!["recovery-codes", "--count", "--json"]),
        (None, vec!["user", "list"]),
        (None, vec!["user", "list", "--json"]),
        (None, vec!["user", "show", user.name()]),
        (None, vec!["user", "show", user.name(), "--json"]),
        (None, vec!["user", "unlock", user.name()]),
        (None, vec!["user", "repair", user.name()]),
        (None, vec!["user", "repair", user.name(), "--json"]),
        (None, vec!["locks"]),
        (None, vec!["locks", "--json"]),
        (None, vec!["reload"]),
    ];
    for (creds, args) in &cases {
        quiet_without_reader(&|| s.ctl.command(*creds, args));
    }
}

#[test]
fn any_other_write_error_still_fails() {
    twostep_e2e::require_root();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("open /dev/full");
    let mut cmd = proc::command(None, artifacts::twostepctl());
    cmd.args(["completions", "bash"]);
    let (code, err) = run(cmd, Stdio::from(full));
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("cannot write to standard output") && !err.contains("panicked"),
        "{err}"
    );
}
