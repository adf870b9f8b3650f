// SPDX-License-Identifier: MIT OR Apache-2.0
//! A private `dbus-daemon` (system-bus-like policy plus the shipped twostep policy, as the
//! end-to-end tests use) and `twostepd` on it, started, timed and stopped by the benchmark.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Debian's system.conf default context, minus activation, syslog and the messagebus user:
/// the same file the end-to-end tests use; the shipped policy is `<include>`d after it.
const SYSTEM_DEFAULT_POLICY: &str = include_str!("../../tests/data/system-bus-default-policy.xml");

/// A running dbus-daemon; killed on drop.
pub struct Bus {
    child: Child,
    pub address: String,
}

impl Bus {
    /// Start one listening on `dir/bus.sock`, including `policy` (the shipped file).
    ///
    /// # Errors
    /// It did not start or its socket did not appear within 10 s.
    pub fn start(dir: &Path, policy: &Path) -> Result<Bus, String> {
        let socket = dir.join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let config = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig>\n  \
             <type>system</type>\n  <auth>EXTERNAL</auth>\n  <listen>{address}</listen>\n\
             {SYSTEM_DEFAULT_POLICY}  <include>{}</include>\n</busconfig>\n",
            policy.display()
        );
        let config_path = dir.join("bus.conf");
        std::fs::write(&config_path, config).map_err(|e| e.to_string())?;
        let log = File::create(dir.join("bus.log")).map_err(|e| e.to_string())?;
        let mut cmd = Command::new("dbus-daemon");
        crate::sys::die_with_parent(&mut cmd);
        let child = cmd
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("dbus-daemon: {e}"))?;
        let mut bus = Bus { child, address };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            if Instant::now() > deadline || bus.child.try_wait().ok().flatten().is_some() {
                return Err(format!(
                    "dbus-daemon did not come up; see {}",
                    dir.join("bus.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(bus)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The twostepd configuration the benchmark uses (the same TOTP parameters as the peers;
/// lockout after 10 consecutive failures, like the peers' `RATE_LIMIT 10 30`), with the
/// store key beside the state directory ([`store_key_path`], made when missing).
pub fn config_text(state_dir: &Path, bus_address: &str, window: u64) -> String {
    let key = store_key_path(state_dir);
    if let Err(e) = ensure_store_key(&key) {
        eprintln!("bench: {e}");
    }
    format!(
        "[daemon]\nstate_dir = \"{}\"\nbus = \"{bus_address}\"\n{}\n\
         [totp]\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\nwindow = {window}\n\n\
         [lockout]\nmax_failures = 10\nlockout_seconds = 300\nfailure_window_seconds = 900\n\n\
         [recovery]\ncount = 10\nmode = \"single-use\"\n\n\
         [store]\nkey_file = \"{}\"\n",
        state_dir.display(),
        login_socket_line(state_dir),
        key.display()
    )
}

/// The login socket of the daemon on `state_dir` (issue 18): `run/login.sock` beside it, in
/// a directory the daemon creates (root, 0755), never the machine's `/run/twostep`.
pub fn login_socket(state_dir: &Path) -> PathBuf {
    state_dir.with_file_name("run").join("login.sock")
}

/// The `login_socket = "…"` line of [`config_text`].
pub fn login_socket_line(state_dir: &Path) -> String {
    format!("login_socket = \"{}\"\n", login_socket(state_dir).display())
}

/// The store key of the daemon on `state_dir`: `store.key` beside it.
pub fn store_key_path(state_dir: &Path) -> PathBuf {
    state_dir.with_file_name("store.key")
}

/// Write 32 random bytes to `path` (0600) unless it exists.
///
/// # Errors
/// The random source or the write failed.
pub fn ensure_store_key(path: &Path) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    let mut key = [0u8; 32];
    getrandom::getrandom(&mut key).map_err(|e| format!("random: {e}"))?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(&key))
        .map_err(|e| format!("store key {}: {e}", path.display()))
}

/// A running twostepd; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Twostepd {
    child: Child,
    /// From spawn until its bus name had an owner.
    pub startup: Duration,
    /// How long a SIGTERM may take before SIGKILL.
    grace: Duration,
}

impl Twostepd {
    /// Start `bin --config config`, logging stderr to `log`, and wait until it owns its name
    /// (`startup`) and has finished its first app-password notice round (which reads every
    /// record).
    ///
    /// # Errors
    /// It exited or did not take its name within 10 s.
    pub fn start(
        bin: &Path,
        config: &Path,
        log: &Path,
        bus: &BusClient,
    ) -> Result<Twostepd, String> {
        Twostepd::start_under(&[], bin, config, log, bus, Duration::from_secs(60))
    }

    /// [`Twostepd::start`] as the program `wrapper[0]` with its arguments `wrapper[1..]`
    /// before the daemon's command line (valgrind), waiting up to `limit` for its name and
    /// as long again for its exit on SIGTERM.
    ///
    /// # Errors
    /// It exited or did not take its name within `limit`.
    pub fn start_under(
        wrapper: &[&str],
        bin: &Path,
        config: &Path,
        log: &Path,
        bus: &BusClient,
        limit: Duration,
    ) -> Result<Twostepd, String> {
        let log_file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let log_start = std::fs::metadata(log).map_or(0, |m| m.len());
        let started = Instant::now();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        crate::sys::die_with_parent(&mut cmd);
        let child = cmd
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let mut d = Twostepd {
            child,
            startup: Duration::ZERO,
            grace: limit.max(Duration::from_secs(5)),
        };
        let deadline = started + limit;
        loop {
            if d.startup.is_zero() && bus.has_owner(twostep_proto::BUS_NAME) {
                d.startup = started.elapsed();
            }
            // Why wait for it: the daemon's first app-password notice round reads every
            // record right after start; logins measured during it would measure that.
            if !d.startup.is_zero() {
                if notice_rounds(log, log_start) > 0 {
                    return Ok(d);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Ok(Some(status)) = d.child.try_wait() {
                return Err(format!("twostepd exited ({status}); see {}", log.display()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "twostepd did not take its bus name and finish its first notice round \
                     within {limit:?}; see {}",
                    log.display()
                ));
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop it and wait until its name is gone.
    pub fn stop(mut self, bus: &BusClient) {
        self.terminate();
        let deadline = Instant::now() + self.grace;
        while bus.has_owner(twostep_proto::BUS_NAME) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn terminate(&mut self) {
        let Ok(pid) = i32::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: signalling our own child, which has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Twostepd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.terminate();
        }
    }
}

/// The app-password notice rounds twostepd has finished, by its log lines after byte
/// `from` (it runs one at start, then hourly).
fn notice_rounds(log: &Path, from: u64) -> usize {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    let Ok(mut f) = File::open(log) else { return 0 };
    if f.seek(SeekFrom::Start(from)).is_err() || f.read_to_string(&mut text).is_err() {
        return 0;
    }
    text.matches("action=app-password-notices outcome=").count()
}

/// A bus connection of the orchestrator, for `NameHasOwner` and the enrolment check.
pub struct BusClient {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl BusClient {
    /// # Errors
    /// Cannot connect.
    pub fn connect(address: &str) -> Result<BusClient, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        // Why retry: dbus-daemon's socket file appears at bind(), a moment before listen().
        let deadline = Instant::now() + Duration::from_secs(5);
        let conn = loop {
            match rt.block_on(async { zbus::connection::Builder::address(address)?.build().await })
            {
                Ok(c) => break c,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("connect {address}: {e}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        Ok(BusClient { rt, conn })
    }

    /// `org.freedesktop.DBus.Peer.Ping` to `name`; whether it answered.
    pub fn ping(&self, name: &str) -> bool {
        self.rt.block_on(async {
            self.conn
                .call_method(
                    Some(name),
                    twostep_proto::OBJECT_PATH,
                    Some("org.freedesktop.DBus.Peer"),
                    "Ping",
                    &(),
                )
                .await
                .is_ok()
        })
    }

    pub fn has_owner(&self, name: &str) -> bool {
        self.rt.block_on(async {
            let Ok(proxy) = zbus::fdo::DBusProxy::new(&self.conn).await else {
                return false;
            };
            let Ok(name) = zbus::names::BusName::try_from(name) else {
                return false;
            };
            proxy.name_has_owner(name).await.unwrap_or(false)
        })
    }
}

/// Paths of the built artifacts.
pub struct Artifacts {
    pub twostepd: PathBuf,
    pub twostepctl: PathBuf,
    pub module: PathBuf,
    pub policy: PathBuf,
}

impl Artifacts {
    /// Next to this binary (target/release) and in the repository (`packaging/`).
    ///
    /// # Errors
    /// Something is missing.
    pub fn find(repo: &Path) -> Result<Artifacts, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe
            .parent()
            .ok_or("no directory of the bench binary")?
            .to_path_buf();
        let a = Artifacts {
            twostepd: dir.join("twostepd"),
            twostepctl: dir.join("twostepctl"),
            module: dir.join("libpam_twostep.so"),
            policy: repo.join("packaging/dbus/org.twostep.Twostep1.conf"),
        };
        for p in [&a.twostepd, &a.twostepctl, &a.module, &a.policy] {
            if !p.exists() {
                return Err(format!(
                    "{} is missing (build with cargo build --release)",
                    p.display()
                ));
            }
        }
        Ok(a)
    }
}
