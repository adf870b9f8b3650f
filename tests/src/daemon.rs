// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepd` on a temp state dir, talking to a private [`Bus`](crate::Bus).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::bus::{self, TWOSTEP_NAME};
use crate::otp::Algorithm;
use crate::proc::{self, Creds};
use crate::{artifacts, unique, Bus, User};

/// How long the daemon may take to own its name.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The daemon's TOML config, as ordered tables of `key = raw TOML value`. The harness
/// fills `daemon.state_dir` and `daemon.bus`; tests override any key with [`set`]
/// or append whole tables with [`raw`].
///
/// [`set`]: DaemonConfig::set
/// [`raw`]: DaemonConfig::raw
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    top: Vec<(String, String)>,
    tables: Vec<(String, Vec<(String, String)>)>,
    tail: String,
}

impl Default for DaemonConfig {
    /// The defaults of the test plan: SHA1, 6 digits, 30 s, window 1, 5 failures → 300 s.
    fn default() -> Self {
        let kv = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        DaemonConfig {
            top: kv(&[("version", "1")]),
            tables: vec![
                ("daemon".into(), Vec::new()),
                (
                    "totp".into(),
                    kv(&[
                        ("algorithm", "\"SHA1\""),
                        ("digits", "6"),
                        ("period", "30"),
                        ("window", "1"),
                        ("issuer", "\"twostep-test\""),
                    ]),
                ),
                (
                    "lockout".into(),
                    kv(&[
                        ("max_failures", "5"),
                        ("lockout_seconds", "300"),
                        ("failure_window_seconds", "900"),
                    ]),
                ),
            ],
            tail: String::new(),
        }
    }
}

impl DaemonConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `table.key` to a raw TOML value (`"\"SHA256\""`, `"8"`, `"true"`); an empty
    /// `table` means the top level. Adds the table or key if missing.
    pub fn set(mut self, table: &str, key: &str, toml_value: &str) -> Self {
        let entries = if table.is_empty() {
            &mut self.top
        } else {
            match self.tables.iter().position(|(t, _)| t == table) {
                Some(i) => &mut self.tables[i].1,
                None => {
                    self.tables.push((table.to_string(), Vec::new()));
                    &mut self.tables.last_mut().expect("just pushed").1
                }
            }
        };
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some(e) => e.1 = toml_value.to_string(),
            None => entries.push((key.to_string(), toml_value.to_string())),
        }
        self
    }

    /// Remove `table.key` (to test a default).
    pub fn unset(mut self, table: &str, key: &str) -> Self {
        if let Some((_, entries)) = self.tables.iter_mut().find(|(t, _)| t == table) {
            entries.retain(|(k, _)| k != key);
        }
        self
    }

    /// Append raw TOML text at the end (new tables, arrays of tables).
    pub fn raw(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self.tail.push('\n');
        self
    }

    /// The raw value of `table.key`, if set.
    pub fn get(&self, table: &str, key: &str) -> Option<&str> {
        self.tables
            .iter()
            .find(|(t, _)| t == table)
            .and_then(|(_, e)| e.iter().find(|(k, _)| k == key))
            .map(|(_, v)| v.as_str())
    }

    /// The TOTP parameters this config asks for (as written; defaults of the test plan
    /// when a key was removed).
    pub fn totp_algorithm(&self) -> Algorithm {
        self.get("totp", "algorithm")
            .and_then(|v| Algorithm::parse(v.trim_matches('"')))
            .unwrap_or(Algorithm::Sha1)
    }

    /// Render with the harness-owned keys filled in.
    pub fn render(&self, state_dir: &Path, bus_address: &str) -> String {
        let s = |v: &str| serde_json::to_string(v).expect("string to TOML/JSON string");
        let mut cfg = self.clone();
        if cfg.get("daemon", "state_dir").is_none() {
            cfg = cfg.set("daemon", "state_dir", &s(&state_dir.to_string_lossy()));
        }
        if cfg.get("daemon", "bus").is_none() {
            cfg = cfg.set("daemon", "bus", &s(bus_address));
        }
        if cfg.get("daemon", "login_socket").is_none() {
            let socket = crate::transport::daemon_socket(bus_address).unwrap_or_default();
            cfg = cfg.set("daemon", "login_socket", &s(&socket.to_string_lossy()));
        }
        if cfg.get("store", "key_file").is_none() {
            let key = shared_store_key();
            cfg = cfg.set("store", "key_file", &s(&key.to_string_lossy()));
        }
        let mut out = String::new();
        for (k, v) in &cfg.top {
            out.push_str(&format!("{k} = {v}\n"));
        }
        for (t, entries) in &cfg.tables {
            out.push_str(&format!("\n[{t}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out.push('\n');
        out.push_str(&cfg.tail);
        out
    }
}

/// The store key every harness daemon uses unless its config names another: one fixed key
/// (test data) in a root-only file under the temp directory, written once (atomically, the
/// same bytes by every test process).
pub fn shared_store_key() -> PathBuf {
    let path = std::env::temp_dir().join("twostep-e2e-store.key");
    if std::fs::read(&path)
        .map(|b| b != HARNESS_KEY)
        .unwrap_or(true)
    {
        write_store_key(&path, &HARNESS_KEY);
    }
    path
}

/// The bytes of [`shared_store_key`].
pub const HARNESS_KEY: [u8; 32] = *b"twostep e2e harness store key!!!";

/// Write `key` to `path` (mode 0600): a temporary file renamed into place.
pub fn write_store_key(path: &Path, key: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .expect("create store key");
    f.write_all(key).expect("write store key");
    drop(f);
    std::fs::rename(&tmp, path).expect("install store key");
}

/// A `twostepd` process (or none, between [`stop`](Daemon::stop) and
/// [`restart`](Daemon::restart)). Killed on drop; its stderr is printed if the test
/// panicked.
pub struct Daemon {
    child: Option<Child>,
    bus_address: String,
    run_as: Option<Creds>,
    /// A socket the daemon sees as `/dev/log` (private mount namespace), if any.
    syslog: Option<PathBuf>,
    config_path: PathBuf,
    state_dir: PathBuf,
    log: PathBuf,
    /// The login socket this daemon serves ([`crate::transport`]), if any.
    login_socket: Option<PathBuf>,
    starts: u32,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

impl Daemon {
    /// Start as root with the default config and wait until it owns its name.
    pub fn start(bus: &Bus) -> Daemon {
        Daemon::start_with(bus, DaemonConfig::default())
    }

    /// Start as root with `config`.
    pub fn start_with(bus: &Bus, config: DaemonConfig) -> Daemon {
        Daemon::spawn(bus.address(), config, None)
    }

    /// Start as `user` (setpriv), with a state dir that user owns. On the shipped policy
    /// the daemon cannot own its name then; use [`Bus::permissive`].
    pub fn start_as(bus: &Bus, config: DaemonConfig, user: &User) -> Daemon {
        Daemon::spawn(bus.address(), config, Some(user.creds()))
    }

    /// Start as root with `config`, in a private mount namespace where `/dev/log` is
    /// `syslog_socket` (see [`crate::syslog`]); waits until it owns its name.
    pub fn start_with_syslog(bus: &Bus, config: DaemonConfig, syslog_socket: &Path) -> Daemon {
        let mut d = Daemon::prepare(bus.address(), &config, None);
        d.syslog = Some(syslog_socket.to_path_buf());
        d.launch();
        d.wait_ready();
        d
    }

    /// Write the config, start (as `run_as`, or root) and wait until it owns its name.
    pub fn spawn(bus_address: &str, config: DaemonConfig, run_as: Option<Creds>) -> Daemon {
        let mut d = Daemon::prepare(bus_address, &config, run_as);
        d.launch();
        d.wait_ready();
        d
    }

    /// Like [`spawn`](Daemon::spawn) but returns right after starting the process; for
    /// tests that expect the daemon to refuse to start. Use
    /// [`wait_ready`](Daemon::wait_ready) or [`wait_exit`](Daemon::wait_exit) next.
    pub fn spawn_nowait(bus_address: &str, config: DaemonConfig, run_as: Option<Creds>) -> Daemon {
        let mut d = Daemon::prepare(bus_address, &config, run_as);
        d.launch();
        d
    }

    fn prepare(bus_address: &str, config: &DaemonConfig, run_as: Option<Creds>) -> Daemon {
        crate::require_root();
        let dir = unique::temp_dir("daemon");
        // Why: a daemon run as a test user must read its config inside this dir.
        unique::chmod(dir.path(), 0o755);
        let state_dir = dir.path().join("state");
        std::fs::create_dir(&state_dir).expect("create state dir");
        unique::chmod(&state_dir, 0o700);
        if let Some(c) = run_as {
            std::os::unix::fs::chown(&state_dir, Some(c.uid), Some(c.gid))
                .expect("chown state dir");
        }
        let config_path = dir.path().join("twostep.toml");
        let mut config = config.clone();
        if let (Some(c), None) = (run_as, config.get("store", "key_file")) {
            // A daemon run as a test user reads a key of its own.
            let key = dir.path().join("store.key");
            write_store_key(&key, &[0x5a; 32]);
            std::os::unix::fs::chown(&key, Some(c.uid), Some(c.gid)).expect("chown store key");
            let quoted = serde_json::to_string(&key.to_string_lossy()).expect("quote");
            config = config.set("store", "key_file", &quoted);
        }
        std::fs::write(&config_path, config.render(&state_dir, bus_address)).expect("write config");
        unique::chmod(&config_path, 0o644);
        let log = dir.path().join("twostepd.log");
        let login_socket = crate::transport::daemon_socket(bus_address)
            .filter(|_| config.get("daemon", "login_socket").is_none());
        if let (Some(socket), Some(c)) = (&login_socket, run_as) {
            // A daemon run as a test user needs the socket's directory to be its own.
            let dir = socket.parent().expect("socket dir");
            let _ = std::fs::create_dir(dir);
            unique::chmod(dir, 0o755);
            std::os::unix::fs::chown(dir, Some(c.uid), Some(c.gid)).expect("chown socket dir");
        }
        Daemon {
            login_socket,
            child: None,
            bus_address: bus_address.to_string(),
            run_as,
            syslog: None,
            config_path,
            state_dir,
            log,
            starts: 0,
            dir,
        }
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "twostepd is already running");
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open daemon log");
        let _ = writeln!(log, "=== harness: start #{} ===", self.starts);
        let mut cmd = match &self.syslog {
            Some(socket) => crate::ns::Namespace::new()
                .syslog(socket)
                .command(artifacts::twostepd()),
            None => proc::command(self.run_as, artifacts::twostepd()),
        };
        for var in ["RUST_LOG", "RUST_BACKTRACE"] {
            if let Some(v) = std::env::var_os(var) {
                cmd.env(var, v);
            }
        }
        cmd.arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        self.child = Some(cmd.spawn().expect("start twostepd"));
    }

    /// Wait until the process we started owns `org.twostep.Twostep1` (polling every
    /// 20 ms, up to 10 s); panics with the daemon's log otherwise.
    pub fn wait_ready(&mut self) {
        let pid = self.pid().expect("twostepd not started");
        let mut exited = None;
        let ready = proc::poll(START_TIMEOUT, Duration::from_millis(20), || {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
            }
            // Why: check the owner is *this* process: after kill -9 the bus may still
            // list the old connection for a moment.
            bus::name_has_owner(&self.bus_address, TWOSTEP_NAME)
                && bus::name_owner_pid(&self.bus_address, TWOSTEP_NAME) == Some(pid)
                && self.login_socket.as_ref().is_none_or(|s| socket_listens(s))
        });
        if let Some(status) = exited {
            self.child = None;
            panic!(
                "twostepd exited during startup ({status}); log:\n{}",
                self.log()
            );
        }
        assert!(
            ready,
            "twostepd did not own {TWOSTEP_NAME} within {START_TIMEOUT:?}; log:\n{}",
            self.log()
        );
    }

    /// Wait (at most `timeout`) for the process to exit on its own; returns its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let (status, killed) = proc::wait_timeout(&mut child, timeout);
        (!killed).then_some(status)
    }

    /// The pid of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is alive (not exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, reap, and wait until the bus has dropped its name.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.wait_name_released();
    }

    /// SIGTERM and wait up to 10 s (then SIGKILL); returns the exit status of a clean exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        proc::signal(child.id(), "TERM");
        let (status, killed) = proc::wait_timeout(&mut child, Duration::from_secs(10));
        self.wait_name_released();
        (!killed).then_some(status)
    }

    /// Start again on the same config and state dir (after [`kill9`](Daemon::kill9) or
    /// [`stop`](Daemon::stop)); waits until it owns its name.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.launch();
        self.wait_ready();
    }

    fn wait_name_released(&self) {
        let released = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
            !bus::name_has_owner(&self.bus_address, TWOSTEP_NAME)
        });
        assert!(
            released,
            "the bus still lists an owner of {TWOSTEP_NAME} 10 s after the daemon died"
        );
    }

    /// The state dir (kept across restarts).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The config file written for this daemon.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Everything the daemon wrote to stdout/stderr, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The harness temp dir holding config, log and state.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Whether something accepts connections on the unix socket at `path`.
fn socket_listens(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "=== twostepd log ({}) ===\n{}",
                self.config_path.display(),
                self.log()
            );
        }
    }
}
