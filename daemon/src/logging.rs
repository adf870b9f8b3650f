// SPDX-License-Identifier: MIT OR Apache-2.0
//! Audit and diagnostics: syslog facility authpriv, plus stderr (the daemon always runs in
//! the foreground; systemd or the operator's terminal collects it).
//!
//! **Logging never blocks a login.** A syslog socket whose receiver stops reading (a stuck
//! journald or rsyslogd: the datagram queue fills and `send` blocks), or a stderr pipe
//! nobody drains, would otherwise stall every thread that logs, and every login logs. So
//! each sink is a [`Sink`]: a bounded queue ([`QUEUE_LINES`] lines) drained by a thread of
//! its own. [`log::Log::log`] only formats the line and offers it to each queue without
//! waiting; a full queue, or a line the target refuses, is dropped and counted. When the
//! sink drains again it first writes how many lines it dropped (at warning level), and the
//! first drop of a run is announced on the *other* sink with the next line logged, so a
//! stuck syslog shows up on stderr (the journal's other input under systemd) at once.
//!
//! One difference between the two: a logging call waits (at most [`HEALTHY_WAIT`]) for
//! stderr to take its line while stderr is healthy, so the line is out before the reply that
//! follows it, as with a plain write; a wait that runs out starts an outage, and no call
//! waits again until stderr takes a line. Syslog is never waited for.
//!
//! The syslog socket additionally has a send timeout ([`SEND_TIMEOUT`]), so its thread
//! notices a stuck receiver and keeps counting rather than sleeping on one line forever; a
//! missing `/dev/log` is retried at most every [`RETRY`], with lines dropped (and counted)
//! meanwhile. Transport and RFC 3164 framing are the `syslog` crate's.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// Lines a sink holds while its receiver does not take them; more are dropped and counted.
pub const QUEUE_LINES: usize = 1024;
/// How long one syslog send may wait for a full receiver before the line counts as dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_millis(200);
/// How often a missing or failed syslog socket is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// One line on its way to a sink, or a request to say when everything before it is out.
enum Msg {
    Line { level: log::Level, text: String },
    Flush(std::sync::mpsc::Sender<()>),
}

/// How long [`log::Log::flush`] waits for each sink at exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a logging call waits for a healthy stderr to take its line (see the module doc).
pub const HEALTHY_WAIT: Duration = Duration::from_millis(500);

/// Where a sink's thread writes; `Err` counts the line as dropped.
pub trait Target: Send + 'static {
    /// Write one line at `level`.
    ///
    /// # Errors
    /// The line did not get through (receiver full, gone, or timed out).
    fn write_line(&mut self, level: log::Level, text: &str) -> std::io::Result<()>;
}

/// A bounded queue and the thread that drains it into a [`Target`].
pub struct Sink {
    name: &'static str,
    tx: SyncSender<Msg>,
    drops: Arc<Drops>,
}

/// Lines a sink lost since it last reported, and the announcement of an outage.
#[derive(Default)]
struct Drops {
    count: AtomicU64,
    /// In an outage that has been (or is about to be) announced; cleared when a line gets
    /// through again, so each outage is announced once.
    outage: AtomicBool,
    /// The other sink should say so with the next line logged.
    announce: AtomicBool,
}

impl Drops {
    /// Count `n` lost lines. A *stuck* receiver (`loud`) is announced once per outage; a
    /// receiver that is simply not there (no syslog daemon on this host) is not.
    fn add(&self, n: u64, loud: bool) {
        self.count.fetch_add(n, Ordering::Relaxed);
        if loud && !self.outage.swap(true, Ordering::Relaxed) {
            self.announce.store(true, Ordering::Relaxed);
        }
    }

    fn recovered(&self) {
        self.outage.store(false, Ordering::Relaxed);
    }
}

impl Sink {
    /// Start the thread that writes into `target`, named `twostepd-log-<name>`.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn spawn(name: &'static str, queue: usize, target: impl Target) -> std::io::Result<Sink> {
        let (tx, rx) = sync_channel(queue);
        let drops = Arc::new(Drops::default());
        let counter = Arc::clone(&drops);
        std::thread::Builder::new()
            .name(format!("twostepd-log-{name}"))
            .spawn(move || drain(&rx, target, &counter))?;
        Ok(Sink { name, tx, drops })
    }

    /// Offer a line without waiting; a full queue drops it and counts it.
    pub fn offer(&self, level: log::Level, text: &str) {
        let line = Msg::Line {
            level,
            text: text.to_owned(),
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(line) {
            self.drops.add(1, true);
        }
    }

    /// Lines dropped (queue full, or the target refused them) and not yet reported by the
    /// sink's thread.
    pub fn dropped(&self) -> u64 {
        self.drops.count.load(Ordering::Relaxed)
    }

    /// Wait, at most `timeout`, until every line offered before this call is written (or
    /// dropped). Returns whether that happened in time.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (done, wait) = std::sync::mpsc::channel();
        let mut msg = Msg::Flush(done);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => return false,
            }
        }
        wait.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .is_ok()
    }

    /// While the sink takes lines, wait (at most `timeout`) until this line is out; in an
    /// outage, return at once. A wait that runs out starts an outage: no later call waits
    /// until a line gets through again.
    pub fn wait_while_healthy(&self, timeout: Duration) {
        if !self.drops.outage.load(Ordering::Relaxed) && !self.flush(timeout) {
            self.drops.add(0, true);
        }
    }

    /// `true` once after this sink started dropping lines: time to say so elsewhere.
    fn take_announcement(&self) -> bool {
        self.drops.announce.swap(false, Ordering::Relaxed)
    }
}

/// The sink thread: before each line, report what was dropped since the last report.
fn drain(rx: &Receiver<Msg>, mut target: impl Target, drops: &Drops) {
    while let Ok(msg) = rx.recv() {
        let (level, text) = match msg {
            Msg::Line { level, text } => (level, text),
            Msg::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let lost = drops.count.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let note = format!("{lost} log lines were dropped: this log did not take them in time");
            if let Err(e) = target.write_line(log::Level::Warn, &note) {
                drops.add(lost, is_stuck(&e));
            }
        }
        match target.write_line(level, &text) {
            Ok(()) => drops.recovered(),
            Err(e) => drops.add(1, is_stuck(&e)),
        }
    }
}

/// Whether a refused line means a receiver that is there but not taking lines (worth
/// announcing), rather than no receiver at all.
fn is_stuck(e: &std::io::Error) -> bool {
    e.kind() != std::io::ErrorKind::NotConnected
}

/// stderr, one `write_all` per line so lines of concurrent threads never interleave.
struct Stderr;

impl Target for Stderr {
    fn write_line(&mut self, level: log::Level, text: &str) -> std::io::Result<()> {
        let lower = level.as_str().to_lowercase();
        std::io::stderr().write_all(format!("twostepd: {lower}: {text}\n").as_bytes())
    }
}

/// The local syslog socket (`/dev/log`, then the `syslog` crate's fallbacks), reconnected
/// at most every [`RETRY`].
pub struct Syslog {
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    last_try: Option<Instant>,
    path: Option<std::path::PathBuf>,
}

impl Syslog {
    /// The host's syslog socket.
    pub fn system() -> Syslog {
        Syslog {
            logger: None,
            last_try: None,
            path: None,
        }
    }

    /// A socket at `path` (tests).
    pub fn at(path: &std::path::Path) -> Syslog {
        Syslog {
            logger: None,
            last_try: None,
            path: Some(path.to_owned()),
        }
    }

    fn connect(&self) -> Option<Logger<LoggerBackend, Formatter3164>> {
        let formatter = Formatter3164 {
            facility: Facility::LOG_AUTHPRIV,
            hostname: None,
            process: "twostepd".into(),
            pid: std::process::id(),
        };
        let logger = match &self.path {
            None => syslog::unix(formatter),
            Some(p) => syslog::unix_custom(formatter, p),
        }
        .ok()?;
        // Why: a receiver that stops reading makes a datagram `send` block; the timeout
        // turns that into a counted drop instead of a thread asleep on one line.
        let timed = match &logger.backend {
            LoggerBackend::Unix(s) => s.set_write_timeout(Some(SEND_TIMEOUT)).is_ok(),
            LoggerBackend::UnixStream(s) => {
                s.get_ref().set_write_timeout(Some(SEND_TIMEOUT)).is_ok()
            }
            _ => true,
        };
        timed.then_some(logger)
    }
}

impl Target for Syslog {
    fn write_line(&mut self, level: log::Level, text: &str) -> std::io::Result<()> {
        if self.logger.is_none() && self.last_try.is_none_or(|t| t.elapsed() >= RETRY) {
            self.last_try = Some(Instant::now());
            self.logger = self.connect();
        }
        let Some(l) = self.logger.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let sent = match level {
            log::Level::Error => l.err(text),
            log::Level::Warn => l.warning(text),
            log::Level::Info => l.info(text),
            log::Level::Debug | log::Level::Trace => l.debug(text),
        };
        sent.map_err(|e| {
            // A timeout means the receiver is slow, not gone: keep the socket. Anything
            // else (receiver restarted, socket removed): reconnect later.
            let timed_out = matches!(&e, syslog::Error::Io(io)
                if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
            if !timed_out {
                self.logger = None;
            }
            std::io::Error::other(e.to_string())
        })
    }
}

/// The daemon's logger: every line to stderr and to syslog, never waiting for either.
pub struct AuditLog {
    stderr: Sink,
    syslog: Sink,
    level: log::LevelFilter,
}

impl AuditLog {
    /// A logger over the two given sinks.
    pub fn new(stderr: Sink, syslog: Sink, level: log::LevelFilter) -> AuditLog {
        AuditLog {
            stderr,
            syslog,
            level,
        }
    }

    /// The two sinks, for tests and reports.
    pub fn sinks(&self) -> [&Sink; 2] {
        [&self.stderr, &self.syslog]
    }
}

impl log::Log for AuditLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level && !m.target().starts_with("zbus") || m.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = record.args().to_string();
        let level = record.level();
        for (sink, other) in [(&self.stderr, &self.syslog), (&self.syslog, &self.stderr)] {
            sink.offer(level, &line);
            if sink.take_announcement() {
                let note = format!(
                    "{} is not taking log lines; dropping and counting them until it does",
                    sink.name
                );
                other.offer(log::Level::Warn, &note);
            }
        }
        // Why: stderr is what the service manager (and the tests) read; while it takes
        // lines, a line is out before the reply that follows it, as with a plain write.
        self.stderr.wait_while_healthy(HEALTHY_WAIT);
    }

    /// Wait (at most [`FLUSH_TIMEOUT`] per sink) until the lines logged so far are out:
    /// called before the daemon exits, so its last words (why it cannot start) are kept.
    fn flush(&self) {
        for sink in self.sinks() {
            sink.flush(FLUSH_TIMEOUT);
        }
    }
}

/// Install the logger once, at start-up. If a sink's thread cannot be started, lines for
/// it are dropped (counted) rather than written in the caller's thread.
pub fn init(debug: bool) {
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    };
    let (Ok(stderr), Ok(syslog)) = (
        Sink::spawn("stderr", QUEUE_LINES, Stderr),
        Sink::spawn("syslog", QUEUE_LINES, Syslog::system()),
    ) else {
        let _ = std::io::stderr().write_all(b"twostepd: error: cannot start the log threads\n");
        return;
    };
    if log::set_boxed_logger(Box::new(AuditLog::new(stderr, syslog, level))).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;
    use std::os::unix::net::UnixDatagram;
    use std::sync::Mutex;

    /// A target that records lines and can be told to refuse them.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<(Vec<String>, bool)>>);

    impl Target for Recorder {
        fn write_line(&mut self, _: log::Level, text: &str) -> std::io::Result<()> {
            let mut g = self.0.lock().unwrap();
            if g.1 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            g.0.push(text.to_owned());
            Ok(())
        }
    }

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        // A bounded wait for the sink thread, not a speed assertion.
        for _ in 0..1000 {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("not reached within 10 s: {what}");
    }

    fn record(log: &AuditLog, text: &str) {
        log.log(
            &log::Record::builder()
                .level(log::Level::Info)
                .target("twostepd")
                .args(format_args!("{text}"))
                .build(),
        );
    }

    #[test]
    fn a_syslog_receiver_that_never_reads_does_not_block_the_caller() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        // Bound, never read: after the kernel's datagram queue fills, `send` would block.
        let _receiver = UnixDatagram::bind(&path).unwrap();
        let out = Recorder::default();
        let log = AuditLog::new(
            Sink::spawn("stderr", 10_000, out.clone()).unwrap(),
            Sink::spawn("syslog", 16, Syslog::at(&path)).unwrap(),
            log::LevelFilter::Info,
        );
        // Far more lines than the socket queue and the sink's queue hold together: if
        // logging waited for the receiver, this loop would never end.
        let lines = 5000;
        for i in 0..lines {
            record(&log, &format!("line {i}"));
        }
        wait_until("syslog drops counted", || log.sinks()[1].dropped() > 0);
        // The other sink was told at once, and still has every line.
        wait_until("stderr has every line", || {
            out.0.lock().unwrap().0.len() > lines
        });
        let got = out.0.lock().unwrap().0.clone();
        assert!(got
            .iter()
            .any(|l| l.contains("syslog is not taking log lines")));
        assert!(got.iter().any(|l| l == "line 4999"));
    }

    #[test]
    fn drops_are_reported_when_the_sink_catches_up() {
        let target = Recorder::default();
        target.0.lock().unwrap().1 = true; // refuse everything
        let sink = Sink::spawn("test", 4, target.clone()).unwrap();
        for i in 0..50 {
            sink.offer(log::Level::Info, &format!("lost {i}"));
        }
        wait_until("every line dropped", || sink.dropped() == 50);
        target.0.lock().unwrap().1 = false;
        sink.offer(log::Level::Info, "back");
        wait_until("the report and the line", || {
            target.0.lock().unwrap().0.len() == 2
        });
        let got = target.0.lock().unwrap().0.clone();
        assert_eq!(
            got,
            vec![
                "50 log lines were dropped: this log did not take them in time".to_owned(),
                "back".to_owned()
            ]
        );
        assert_eq!(sink.dropped(), 0);
    }

    #[test]
    fn a_healthy_sink_is_waited_for_and_a_stuck_one_only_once() {
        let target = Recorder::default();
        let sink = Sink::spawn("test", 64, target.clone()).unwrap();
        sink.offer(log::Level::Info, "first");
        sink.wait_while_healthy(Duration::from_secs(10));
        // Out before the call returned.
        assert_eq!(target.0.lock().unwrap().0, vec!["first".to_owned()]);

        // A sink whose thread is stuck: the first wait runs out and starts an outage; the
        // next call does not wait at all (it returns although the thread is still stuck).
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        struct Stuck(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);
        impl Target for Stuck {
            fn write_line(&mut self, _: log::Level, _: &str) -> std::io::Result<()> {
                let _ = self.0.lock().unwrap().recv();
                Ok(())
            }
        }
        let stuck = Sink::spawn("stuck", 64, Stuck(std::sync::Mutex::new(rx))).unwrap();
        stuck.offer(log::Level::Info, "held");
        stuck.wait_while_healthy(Duration::from_millis(50));
        assert!(stuck.drops.outage.load(Ordering::Relaxed));
        stuck.offer(log::Level::Info, "next");
        stuck.wait_while_healthy(Duration::from_secs(3600));
        drop(tx);
    }

    #[test]
    fn flush_waits_for_the_lines_already_offered() {
        let target = Recorder::default();
        let sink = Sink::spawn("test", 64, target.clone()).unwrap();
        for i in 0..20 {
            sink.offer(log::Level::Info, &format!("line {i}"));
        }
        assert!(sink.flush(Duration::from_secs(10)));
        assert_eq!(target.0.lock().unwrap().0.len(), 20);
    }

    #[test]
    fn a_missing_syslog_socket_is_a_counted_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Syslog::at(&dir.path().join("absent.sock"));
        assert!(s.write_line(log::Level::Info, "x").is_err());
    }
}
