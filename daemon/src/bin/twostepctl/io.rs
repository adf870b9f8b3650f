// SPDX-License-Identifier: MIT OR Apache-2.0
//! Connecting, reading codes, explaining errors, printing times, and standard output.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Mutex, PoisonError};

use twostep_proto::Error;
use zbus::DBusError;
use zeroize::Zeroizing;

/// Print to standard output through [`out`]: `outln!("{x}")` like `println!`, never a
/// panic when the reader has gone.
macro_rules! outln {
    () => {
        $crate::io::out("\n")
    };
    ($($arg:tt)*) => {
        $crate::io::out(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// What became of standard output: `None` while it takes writes.
static STDOUT_END: Mutex<Option<Ended>> = Mutex::new(None);

/// Why standard output takes no more writes.
#[derive(Clone, Debug)]
enum Ended {
    /// The reader went away (`EPIPE`: `twostepctl … | head`). Not an error: the rest of the
    /// output is dropped and the command ends as it would have.
    ReaderGone,
    /// Any other write error (a full disk, an I/O error): the command fails with it.
    Failed(String),
}

/// Everything a command prints on standard output goes through here (via [`outln!`]).
///
/// Why not `println!`: it panics when the reader has gone ("failed printing to stdout:
/// Broken pipe", exit 101). Here `EPIPE` ends the output quietly; any other write error is
/// kept for [`finish_output`] to report. After either, further output is dropped.
pub fn out(text: &str) {
    out_bytes(text.as_bytes());
}

/// [`out`] for bytes (completion scripts).
pub fn out_bytes(bytes: &[u8]) {
    let mut end = STDOUT_END.lock().unwrap_or_else(PoisonError::into_inner);
    if end.is_some() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(bytes) {
        *end = Some(ended(&e));
    }
}

fn ended(e: &std::io::Error) -> Ended {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ended::ReaderGone
    } else {
        Ended::Failed(e.to_string())
    }
}

/// Flush standard output (e.g. before waiting for input); errors as in [`out`].
pub fn flush_output() {
    let mut end = STDOUT_END.lock().unwrap_or_else(PoisonError::into_inner);
    if end.is_some() {
        return;
    }
    if let Err(e) = std::io::stdout().lock().flush() {
        *end = Some(ended(&e));
    }
}

/// Flush standard output at the end of a command.
///
/// # Errors
/// The text of a write error other than a reader that went away (which is success).
pub fn finish_output() -> Result<(), String> {
    flush_output();
    match STDOUT_END
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
    {
        None | Some(Ended::ReaderGone) => Ok(()),
        Some(Ended::Failed(e)) => Err(format!("cannot write to standard output: {e}")),
    }
}

/// Print `twostepctl: MSG` on stderr; the failure exit code.
pub fn fail(msg: &str) -> ExitCode {
    eprintln!("twostepctl: {msg}");
    ExitCode::FAILURE
}

pub async fn connect(bus: Option<&str>) -> Result<zbus::Connection, String> {
    let builder = match bus {
        None => zbus::connection::Builder::system(),
        Some(a) => zbus::connection::Builder::address(a),
    }
    .map_err(|e| format!("bad bus address: {e}"))?;
    builder
        .build()
        .await
        .map_err(|e| format!("cannot reach the bus ({e}); is dbus running?"))
}

/// A person-readable message for a failed call: the daemon's own text where it sent one.
pub fn explain(e: impl Into<Error>) -> String {
    match e.into() {
        Error::ZBus(zbus::Error::MethodError(name, text, _)) => match name.as_str() {
            "org.freedesktop.DBus.Error.ServiceUnknown"
            | "org.freedesktop.DBus.Error.NameHasNoOwner" => {
                "twostepd is not running (nobody owns org.twostep.Twostep1 on this bus)".into()
            }
            // D-Bus activation: the bus tried to start twostepd and it exited, was killed,
            // could not be run, or did not claim its name within the bus's start timeout.
            n if n.starts_with("org.freedesktop.DBus.Error.Spawn.")
                || n == "org.freedesktop.DBus.Error.TimedOut" =>
            {
                format!(
                    "twostepd could not start ({}): check `twostepd --check-config {}` \
                     and its log (journalctl -u twostepd)",
                    text.unwrap_or_else(|| n.to_string()),
                    twostep_config::DEFAULT_PATH
                )
            }
            "org.freedesktop.DBus.Error.AccessDenied" => {
                format!("the bus refused the call: {}", text.unwrap_or_default())
            }
            _ => format!("{name}: {}", text.unwrap_or_default()),
        },
        Error::ZBus(inner) => format!("bus error: {inner}"),
        other => other
            .description()
            .map_or_else(|| other.name().to_string(), str::to_owned),
    }
}

/// Read one line from stdin (after a prompt on stderr when interactive or asked to).
/// `None` at end of input.
pub fn read_line(prompt: &str, show_prompt: bool) -> Option<Zeroizing<String>> {
    let stdin = std::io::stdin();
    if show_prompt || stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
    }
    let mut line = Zeroizing::new(String::new());
    match stdin.lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(Zeroizing::new(line.trim().to_owned())),
    }
}

/// A current code or recovery code, to prove the user holds a factor.
pub fn read_proof() -> Result<Zeroizing<String>, String> {
    read_line(
        "Current code from your authenticator app (or a recovery code): ",
        true,
    )
    .filter(|c| !c.is_empty())
    .ok_or_else(|| "no code given; nothing was changed".to_owned())
}

/// The name of the user running twostepctl (the real uid), or the uid when NSS has none.
pub fn own_name() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Unix seconds as a time for people (`2026-11-30 03:12:45 UTC`, the one rule of
/// `timefmt::human`); 0 is "never".
pub fn when(t: u64) -> String {
    match t {
        0 => "never".into(),
        u64::MAX => "until an administrator unlocks".into(),
        t => twostepd::core::timefmt::human(twostepd::core::UnixTime(t)),
    }
}

/// Unix seconds as a `--json` time: RFC 3339 in UTC (`2026-11-30T03:12:45Z`), `null`
/// for 0 (never, not locked). `u64::MAX` (locked until an administrator unlocks) is the
/// latest RFC 3339 time, `9999-12-31T23:59:59Z`.
pub fn json_time(t: u64) -> serde_json::Value {
    match t {
        0 => serde_json::Value::Null,
        t => twostepd::core::timefmt::rfc3339(twostepd::core::UnixTime(t)).into(),
    }
}

/// Print `v` as the one JSON document of a `--json` command: on one line, then a newline.
/// A `--json` command prints nothing else on standard output (hints and prompts go to
/// standard error; a failure prints its message there, nothing here, and exits non-zero).
pub fn out_json(v: &serde_json::Value) {
    out(&format!("{v}\n"));
}

/// [`out_json`] for a document that holds a secret shown once (a key, recovery codes, an
/// app password): the document's strings and the rendered line are wiped after writing.
/// (Copies in the standard library's stdout buffer and in the terminal are out of reach.)
pub fn out_secret_json(mut v: serde_json::Value) {
    out_secret(Zeroizing::new(format!("{v}\n")));
    wipe_json(&mut v);
}

/// [`out`] for text that holds a secret: wiped after writing.
pub fn out_secret(text: Zeroizing<String>) {
    out(&text);
}

/// Every string in `v` overwritten with zeros (keys too are rebuilt empty).
fn wipe_json(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::String(s) => zeroize::Zeroize::zeroize(s),
        serde_json::Value::Array(a) => a.iter_mut().for_each(wipe_json),
        serde_json::Value::Object(m) => m.values_mut().for_each(wipe_json),
        _ => {}
    }
}

pub fn manpage(cmd: &clap::Command, dir: &Path) -> Result<(), String> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| e.to_string())?;
    std::fs::write(dir.join("twostepctl.1"), buf).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_document_is_wiped_after_use() {
        let mut v = serde_json::json!({
            "secret": "GEZDGNBVGY3TQOJQ",
            "recovery_codes": ["k3m9-x7q2-p4w8", "r5t6-y8u1-i9o0"],
            "digits": 6,
        });
        wipe_json(&mut v);
        assert!(!v.to_string().contains("GEZDG"), "{v}");
        assert!(!v.to_string().contains("k3m9"), "{v}");
        assert_eq!(v["digits"], 6);
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(when(0), "never");
        assert_eq!(when(1), "1970-01-01 00:00:01 UTC");
        assert_eq!(when(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(when(u64::MAX), "until an administrator unlocks");
        assert_eq!(json_time(0), serde_json::Value::Null);
        assert_eq!(json_time(1_796_008_365), "2026-11-30T03:12:45Z");
        assert_eq!(json_time(u64::MAX), "9999-12-31T23:59:59Z");
    }
}
