// SPDX-License-Identifier: MIT OR Apache-2.0
//! Audit and diagnostics: syslog facility authpriv, plus stderr (the daemon always runs in
//! the foreground; systemd or the operator's terminal collects it).
//!
//! A missing `/dev/log` never stops or slows the daemon: the socket is retried at most
//! every few seconds, and lines are dropped meanwhile (stderr still has them).

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

const RETRY: Duration = Duration::from_secs(5);

struct Syslog {
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    last_try: Option<Instant>,
}

pub struct AuditLog {
    syslog: Mutex<Syslog>,
    level: log::LevelFilter,
}

fn connect() -> Option<Logger<LoggerBackend, Formatter3164>> {
    syslog::unix(Formatter3164 {
        facility: Facility::LOG_AUTHPRIV,
        hostname: None,
        process: "twostepd".into(),
        pid: std::process::id(),
    })
    .ok()
}

impl log::Log for AuditLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level && !m.target().starts_with("zbus") || m.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = format!("{}", record.args());
        // One write per line, so lines from concurrent threads never interleave.
        let _ = std::io::stderr().write_all(
            format!(
                "twostepd: {}: {line}\n",
                record.level().as_str().to_lowercase()
            )
            .as_bytes(),
        );
        let mut s = self
            .syslog
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.logger.is_none() && s.last_try.is_none_or(|t| t.elapsed() >= RETRY) {
            s.last_try = Some(Instant::now());
            s.logger = connect();
        }
        if let Some(l) = s.logger.as_mut() {
            let sent = match record.level() {
                log::Level::Error => l.err(&line),
                log::Level::Warn => l.warning(&line),
                log::Level::Info => l.info(&line),
                log::Level::Debug | log::Level::Trace => l.debug(&line),
            };
            if sent.is_err() {
                s.logger = None;
            }
        }
    }

    fn flush(&self) {}
}

/// Install the logger once, at start-up.
pub fn init(debug: bool) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let logger = AuditLog {
        syslog: Mutex::new(Syslog {
            logger: None,
            last_try: None,
        }),
        level,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}
