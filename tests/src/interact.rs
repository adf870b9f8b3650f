// SPDX-License-Identifier: MIT OR Apache-2.0
//! A program driven step by step through pipes: wait for some text on its stdout or
//! stderr, then write the next line. For conversations whose answers depend on what the
//! program said first (a code computed from the key an enrolment prompt shows).
//!
//! Prompts rarely end in a newline, so output is collected in chunks as it arrives, not
//! line by line.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proc::{self, Output};

/// How long [`Interactive::wait_for`] waits by default.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running program with piped stdin, stdout and stderr; killed and reaped on drop.
pub struct Interactive {
    what: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
    start: Instant,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => into
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buf[..n]),
            }
        }
    })
}

impl Interactive {
    /// Start `cmd` (built with [`proc::command`]) with all three streams piped.
    pub fn spawn(mut cmd: Command) -> Interactive {
        let what = proc::describe(&cmd);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let out = Arc::new(Mutex::new(Vec::new()));
        let err = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().expect("piped stdout"), Arc::clone(&out)),
            collect(child.stderr.take().expect("piped stderr"), Arc::clone(&err)),
        ];
        Interactive {
            what,
            stdin: child.stdin.take(),
            child: Some(child),
            out,
            err,
            readers,
            start: Instant::now(),
        }
    }

    /// Everything written to stdout so far (lossy UTF-8).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Everything written to stderr so far (lossy UTF-8).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// The transcript so far, for messages.
    pub fn transcript(&self) -> String {
        format!(
            "$ {}\n  --- stdout ---\n{}\n  --- stderr ---\n{}",
            self.what,
            self.stdout(),
            self.stderr()
        )
    }

    /// Wait (at most `timeout`) until `done(stdout, stderr)` holds.
    ///
    /// # Errors
    /// The transcript, when the program exits first or the time runs out.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&str, &str) -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.stdout(), &self.stderr()) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // Let the readers drain what the program wrote before it exited.
                std::thread::sleep(Duration::from_millis(50));
                if done(&self.stdout(), &self.stderr()) {
                    return Ok(());
                }
                return Err(format!(
                    "the program exited ({status}) before the expected output:\n{}",
                    self.transcript()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the expected output did not come within {timeout:?}:\n{}",
                    self.transcript()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Wait until stderr contains `needle`; panics with the transcript otherwise.
    #[track_caller]
    pub fn expect_stderr(&mut self, needle: &str) -> String {
        self.wait_for(WAIT, |_, e| e.contains(needle))
            .unwrap_or_else(|e| panic!("waiting for {needle:?} on stderr: {e}"));
        self.stderr()
    }

    /// Wait until stdout contains `needle`; panics with the transcript otherwise.
    #[track_caller]
    pub fn expect_stdout(&mut self, needle: &str) -> String {
        self.wait_for(WAIT, |o, _| o.contains(needle))
            .unwrap_or_else(|e| panic!("waiting for {needle:?} on stdout: {e}"));
        self.stdout()
    }

    /// Write `bytes` and a newline to stdin (a program that already exited is fine: the
    /// outcome shows in [`finish`](Interactive::finish)).
    pub fn write_line(&mut self, bytes: impl AsRef<[u8]>) {
        if let Some(stdin) = self.stdin.as_mut() {
            let mut line = bytes.as_ref().to_vec();
            line.push(b'\n');
            let _ = stdin.write_all(&line).and_then(|()| stdin.flush());
        }
    }

    /// Close stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Close stdin, wait (at most `timeout`, then kill) and return everything it did.
    pub fn finish(mut self, timeout: Duration) -> Output {
        self.close_stdin();
        let mut child = self.child.take().expect("child present until finish");
        let (status, timed_out) = proc::wait_timeout(&mut child, timeout);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            what: self.what.clone(),
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
            elapsed: self.start.elapsed(),
            timed_out,
        }
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        self.stdin = None;
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("=== interactive program ===\n{}", self.transcript());
            }
        }
    }
}
