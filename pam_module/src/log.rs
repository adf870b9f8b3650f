// SPDX-License-Identifier: MIT OR Apache-2.0
//! Syslog lines: facility authpriv, name `pam_twostep`, one socket per line.
//!
//! No global logger and nothing kept between lines: the host may `dlclose` us or fork at
//! any time. Every failure is ignored: a missing or full `/dev/log` must neither break nor
//! slow a login, and there is never a fallback to the console. Lines carry user, service,
//! remote host and outcome, never an answer or a session token.

use std::fmt::{self, Display};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use syslog::{Facility, Formatter3164, LogFormat, LoggerBackend, Severity};

use crate::flow::LoginContext;

/// The most a line may wait for a stream-type `/dev/log`.
const STREAM_WRITE_TIMEOUT: Duration = Duration::from_millis(100);

/// Sends one line; never fails, never blocks for long, never panics.
pub fn line(severity: Severity, text: &str) {
    // Why catch_unwind here too: this runs in the guard's panic path as well.
    let sent = catch_unwind(AssertUnwindSafe(|| {
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "pam_twostep".into(),
            pid: std::process::id(),
        };
        let Ok(mut logger) = syslog::unix(formatter) else {
            return;
        };
        match &logger.backend {
            // A full datagram queue drops the line instead of stalling the login.
            LoggerBackend::Unix(socket) => {
                let _ = socket.set_nonblocking(true);
            }
            LoggerBackend::UnixStream(stream) => {
                let _ = stream
                    .get_ref()
                    .set_write_timeout(Some(STREAM_WRITE_TIMEOUT));
            }
            LoggerBackend::Udp(..) | LoggerBackend::Tcp(_) => return,
        }
        let _ = logger.formatter.format(&mut logger.backend, severity, text);
    }));
    if let Err(payload) = sent {
        // Dropping a panic payload can itself panic; forget it if so.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(payload))).map_err(std::mem::forget);
    }
}

/// A PAM item or argument, quoted and escaped so it cannot forge a log line.
pub struct Field<'a>(pub Option<&'a str>);

impl Display for Field<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "\"{}\"", s.escape_debug()),
            None => f.write_str("-"),
        }
    }
}

/// Who a login is about, prefixed to every line of that login.
pub struct Log {
    subject: String,
    debug: bool,
}

impl Log {
    /// A log for one call of the module; `debug` enables step-level lines.
    pub fn new(debug: bool) -> Log {
        Log {
            subject: String::new(),
            debug,
        }
    }

    /// Names the login in the following lines.
    pub fn set_subject(&mut self, user: &str, ctx: &LoginContext) {
        self.subject = format!(
            "user={} service={} rhost={} tty={}: ",
            Field(Some(user)),
            Field(ctx.service.as_deref()),
            Field(ctx.rhost.as_deref()),
            Field(ctx.tty.as_deref()),
        );
    }

    /// A step-level line, only with `debug`.
    pub fn debug(&self, text: &str) {
        if self.debug {
            self.emit(Severity::LOG_DEBUG, text);
        }
    }

    pub fn info(&self, text: &str) {
        self.emit(Severity::LOG_INFO, text);
    }

    pub fn notice(&self, text: &str) {
        self.emit(Severity::LOG_NOTICE, text);
    }

    pub fn err(&self, text: &str) {
        self.emit(Severity::LOG_ERR, text);
    }

    pub fn crit(&self, text: &str) {
        self.emit(Severity::LOG_CRIT, text);
    }

    pub fn alert(&self, text: &str) {
        self.emit(Severity::LOG_ALERT, text);
    }

    fn emit(&self, severity: Severity, text: &str) {
        line(severity, &format!("{}{text}", self.subject));
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn fields_cannot_forge_lines() {
        assert_eq!(
            Field(Some("eve\nJan 1 pam_twostep: user=root success")).to_string(),
            "\"eve\\nJan 1 pam_twostep: user=root success\""
        );
        assert_eq!(Field(Some("a\"b")).to_string(), "\"a\\\"b\"");
        assert_eq!(Field(None).to_string(), "-");
    }

    #[test]
    fn the_subject_names_user_service_and_rhost() {
        let mut log = Log::new(false);
        log.set_subject(
            "alice",
            &LoginContext {
                service: Some("sshd".into()),
                rhost: Some("192.0.2.7".into()),
                tty: None,
                app_password: false,
                forward_pass: false,
            },
        );
        assert_eq!(
            log.subject,
            "user=\"alice\" service=\"sshd\" rhost=\"192.0.2.7\" tty=-: "
        );
    }

    #[test]
    fn logging_never_fails_even_without_a_syslog() {
        // Whether or not /dev/log exists here, this must return quietly.
        line(Severity::LOG_DEBUG, "pam_twostep unit test line");
    }
}
