// SPDX-License-Identifier: MIT OR Apache-2.0
//! Programs on a pseudo-terminal, driven by `expect`: for `su` and `login`, which talk to
//! a terminal (echo off for secrets) and not to pipes.
//!
//! A [`Dialog`] is a list of steps: wait for some text, type a line, type the TOTP code of
//! the key an enrolment prompt just showed (computed with oathtool inside expect), or end
//! the session. The driver prints everything the terminal showed (the transcript) on
//! stdout and exits with the program's exit status, or with 97 (timeout) / 98 (the program
//! ended before the text came) and a `TWOSTEP-E2E-` marker line.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::proc::{self, Output};
use crate::unique;

/// How long one whole terminal session may take before the harness kills it.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The expect driver. argv: dialog file, then the program and its arguments.
const DRIVER: &str = r#"
set timeout 20
log_user 1
set f [open [lindex $argv 0]]
set steps [split [read -nonewline $f] "\n"]
close $f
spawn -noecho {*}[lrange $argv 1 end]
foreach step $steps {
  set parts [split $step "\t"]
  set kind [lindex $parts 0]
  set text [join [lrange $parts 1 end] "\t"]
  switch -- $kind {
    expect {
      expect -exact $text {} timeout { puts "\nTWOSTEP-E2E-TIMEOUT waiting for: $text"; exit 97 } eof { puts "\nTWOSTEP-E2E-EOF waiting for: $text"; catch wait; exit 98 }
    }
    send {
      send -- "$text\r"
    }
    pause {
      after $text
    }
    totp {
      if {![regexp {key by hand: ([A-Z2-7 ]+)} $expect_out(buffer) -> key]} {
        puts "\nTWOSTEP-E2E-NOKEY in the text before the prompt"; exit 96
      }
      set key [string map {" " ""} $key]
      set code [exec oathtool --totp=SHA1 --base32 --digits=6 --time-step-size=30s $key]
      set kf [open $text w]; puts $kf "$key [clock seconds]"; close $kf
      send -- "$code\r"
    }
    end {
      puts "\nTWOSTEP-E2E-END"
      close
      catch wait
      exit 0
    }
  }
}
expect eof {} timeout { puts "\nTWOSTEP-E2E-TIMEOUT waiting for the end"; exit 97 }
set result [wait]
exit [lindex $result 3]
"#;

/// The steps of a terminal session.
#[derive(Clone, Debug, Default)]
pub struct Dialog {
    lines: Vec<String>,
}

impl Dialog {
    pub fn new() -> Dialog {
        Dialog::default()
    }

    fn push(mut self, kind: &str, text: &str) -> Dialog {
        assert!(
            !text.contains('\n') && !text.contains('\r'),
            "dialog text must be one line: {text:?}"
        );
        self.lines.push(format!("{kind}\t{text}"));
        self
    }

    /// Wait until the terminal shows `text`.
    pub fn expect(self, text: &str) -> Dialog {
        self.push("expect", text)
    }

    /// Type `line` and Enter.
    pub fn send(self, line: &str) -> Dialog {
        self.push("send", line)
    }

    /// Wait `ms` milliseconds before the next step: for programs that discard what was
    /// typed before they read (vlock flushes the terminal's input at each prompt).
    pub fn pause(self, ms: u32) -> Dialog {
        self.push("pause", &ms.to_string())
    }

    /// Type the current TOTP code (SHA1, 6 digits, 30 s) of the key shown by hand in the
    /// text before the last expected prompt; the key and the time go to `record`.
    pub fn send_code_of_shown_key(self, record: &Path) -> Dialog {
        self.push("totp", &record.to_string_lossy())
    }

    /// Hang up (the program is killed with the terminal); the run counts as complete.
    pub fn end(self) -> Dialog {
        self.push("end", "")
    }
}

/// A dialog driver ready to run: its files live in a 0755 temp dir, readable by the uid
/// the driver runs as.
pub struct Driver {
    dir: tempfile::TempDir,
}

impl Driver {
    /// Write the driver and `dialog` to a fresh temp dir.
    pub fn new(dialog: &Dialog) -> Driver {
        let dir = unique::temp_dir("pty");
        unique::chmod(dir.path(), 0o755);
        for (name, text) in [
            ("driver.exp", DRIVER.to_string()),
            ("dialog", dialog.lines.join("\n")),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write dialog file");
            unique::chmod(&path, 0o644);
        }
        Driver { dir }
    }

    /// Add `expect -f DRIVER DIALOG` to `cmd` (which runs `expect`, directly or via
    /// setpriv/unshare); append the program and its arguments after this.
    pub fn args(&self, cmd: &mut Command) {
        cmd.arg("-f")
            .arg(self.dir.path().join("driver.exp"))
            .arg(self.dir.path().join("dialog"));
    }

    /// Run `cmd` (built with [`args`](Driver::args) and the program), with a UTF-8 locale
    /// so the terminal shows the QR code's characters.
    pub fn run(&self, mut cmd: Command) -> PtyRun {
        cmd.env("LC_ALL", "C.UTF-8").env("TERM", "dumb");
        PtyRun {
            output: proc::run(cmd, b"", TIMEOUT),
        }
    }
}

/// One terminal session.
pub struct PtyRun {
    pub output: Output,
}

impl PtyRun {
    /// What the terminal showed.
    pub fn transcript(&self) -> &str {
        &self.output.stdout
    }

    /// Every expected text came and the program ended on its own (or the dialog ended it).
    pub fn completed(&self) -> bool {
        !self.output.timed_out
            && ![
                "TWOSTEP-E2E-TIMEOUT",
                "TWOSTEP-E2E-EOF",
                "TWOSTEP-E2E-NOKEY",
            ]
            .iter()
            .any(|m| self.output.stdout.contains(m))
    }

    /// The program's exit status (when [`completed`](PtyRun::completed)).
    pub fn exit_code(&self) -> Option<i32> {
        self.output.status.code()
    }
}

impl fmt::Display for PtyRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.output)
    }
}
