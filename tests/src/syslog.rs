// SPDX-License-Identifier: MIT OR Apache-2.0
//! A private syslog socket: a datagram socket in a temp dir whose lines the test can read.
//!
//! The module logs to `/dev/log` (then `/var/run/syslog`), a path shared by the whole
//! machine. A program started through [`crate::ns`] with a [`Syslog`] sees this socket at
//! that path, inside its own mount namespace only, so a test can assert what the module
//! logged (e.g. the `FAIL-OPEN` alert) without a syslog daemon and without touching the
//! machine's logging.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::{proc, unique};

/// A fresh datagram socket `log.sock` (mode 0666) in a 0755 temp dir labelled `label`.
fn bind(label: &str) -> (tempfile::TempDir, PathBuf, UnixDatagram) {
    let dir = unique::temp_dir(label);
    unique::chmod(dir.path(), 0o755);
    let path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&path)
        .unwrap_or_else(|e| panic!("bind syslog socket {}: {e}", path.display()));
    // Why: a module running as a user (screen locker, su's caller side) may log too.
    unique::chmod(&path, 0o666);
    (dir, path, socket)
}

/// A listening syslog socket; the reader thread stops on drop.
pub struct Syslog {
    path: PathBuf,
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
    // Last: removed after the reader is gone.
    _dir: tempfile::TempDir,
}

impl Syslog {
    /// Bind a fresh socket (mode 0666, in a 0755 temp dir) and start collecting lines.
    pub fn start() -> Syslog {
        let (dir, path, socket) = bind("syslog");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("set read timeout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (lines, stop) = (Arc::clone(&lines), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let line = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
                        lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    }
                }
            })
        };
        Syslog {
            path,
            lines,
            stop,
            reader: Some(reader),
            _dir: dir,
        }
    }

    /// The socket to bind-mount over `/dev/log`.
    pub fn socket(&self) -> &Path {
        &self.path
    }

    /// Every line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The lines that contain every one of `needles`.
    pub fn matching(&self, needles: &[&str]) -> Vec<String> {
        self.lines()
            .into_iter()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .collect()
    }

    /// Wait (at most `timeout`) for a line containing every one of `needles`.
    pub fn wait_for(&self, needles: &[&str], timeout: Duration) -> Option<String> {
        let mut found = None;
        proc::poll(timeout, Duration::from_millis(20), || {
            found = self.matching(needles).into_iter().next();
            found.is_some()
        });
        found
    }

    /// All lines, one per line, for messages.
    pub fn dump(&self) -> String {
        self.lines().join("\n")
    }
}

/// A syslog socket whose receiver never reads: once the kernel's datagram queue
/// (`net.unix.max_dgram_qlen`, 10 by default) is full, every `send` to it blocks — what a
/// stuck journald or rsyslogd looks like to a program that logs.
pub struct StuckSyslog {
    path: PathBuf,
    _socket: UnixDatagram,
    // Last: removed after the socket is closed.
    _dir: tempfile::TempDir,
}

impl StuckSyslog {
    /// Bind a fresh socket (mode 0666) that nobody will ever read.
    pub fn start() -> StuckSyslog {
        let (dir, path, socket) = bind("stuck-syslog");
        StuckSyslog {
            path,
            _socket: socket,
            _dir: dir,
        }
    }

    /// The socket to bind-mount over `/dev/log`.
    pub fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for Syslog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}
