// SPDX-License-Identifier: MIT OR Apache-2.0
//! A real PostgreSQL server (Debian's `postgresql` package) for the fleet tests: `initdb`
//! in a temp dir as a fresh unprivileged user, `postgres` on a loopback port with its unix
//! socket in the temp dir, a role `twostep` with a password (scram-sha-256 over TCP) and a
//! database `twostep` it owns. Stopped and removed on drop, with its user.
//!
//! Layout of the temp dir (root-owned, 0755): `pg/` (the server user's: data, socket,
//! log) and `root/` (root's, 0700: the password file the daemons read).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{proc, unique, DaemonConfig, User};

/// Where Debian installs the server binaries.
pub const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// The database and role the daemons use.
pub const DATABASE: &str = "twostep";
pub const ROLE: &str = "twostep";

/// A running (or stopped) PostgreSQL server.
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    password: String,
    pg_dir: PathBuf,
    root_dir: PathBuf,
    /// The server offers TLS (see [`Postgres::enable_tls`]).
    tls: bool,
    user: User,
    // Last: removed after the server is gone.
    dir: tempfile::TempDir,
}

fn bin(name: &str) -> PathBuf {
    Path::new(BIN_DIR).join(name)
}

impl Postgres {
    /// `initdb`, start, create the role and database; panics with the server's log on
    /// failure.
    pub fn start() -> Postgres {
        crate::require_root();
        let user = User::create();
        let dir = unique::temp_dir("pg");
        unique::chmod(dir.path(), 0o755);
        let pg_dir = dir.path().join("pg");
        let root_dir = dir.path().join("root");
        std::fs::create_dir(&pg_dir).expect("create pg dir");
        std::fs::create_dir(&root_dir).expect("create root dir");
        unique::chmod(&root_dir, 0o700);
        std::os::unix::fs::chown(&pg_dir, Some(user.uid()), Some(user.gid())).expect("chown");
        unique::chmod(&pg_dir, 0o700);
        let out = proc::run(
            {
                let mut c = user.command(bin("initdb"));
                c.arg("-D")
                    .arg(pg_dir.join("data"))
                    .args(["-U", "admin", "-A", "trust", "--auth-host=scram-sha-256"])
                    .args(["-E", "UTF8", "--locale=C", "--no-sync"]);
                c
            },
            b"",
            Duration::from_secs(120),
        );
        assert!(out.success(), "initdb failed:\n{out}");
        let password = unique::random_hex(16);
        let pw_file = root_dir.join("db.password");
        std::fs::write(&pw_file, format!("{password}\n")).expect("write password file");
        unique::chmod(&pw_file, 0o600);
        let mut pg = Postgres {
            child: None,
            port: 0,
            password,
            pg_dir,
            root_dir,
            tls: false,
            user,
            dir,
        };
        pg.launch_on_free_port();
        // The least-privilege setup of docs/fleet.md: the role owns its schema only.
        pg.psql_as_admin(
            "postgres",
            &format!(
                "CREATE ROLE {ROLE} LOGIN PASSWORD '{}';\nCREATE DATABASE {DATABASE};\n",
                pg.password
            ),
        );
        pg.psql_as_admin(
            DATABASE,
            &format!(
                "REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;\n\
                 GRANT CONNECT ON DATABASE {DATABASE} TO {ROLE};\n\
                 REVOKE ALL ON SCHEMA public FROM PUBLIC;\n\
                 CREATE SCHEMA twostep AUTHORIZATION {ROLE};\n\
                 ALTER ROLE {ROLE} SET search_path = twostep;\n"
            ),
        );
        pg
    }

    fn socket_dir(&self) -> PathBuf {
        self.pg_dir.clone()
    }

    fn log_path(&self) -> PathBuf {
        self.pg_dir.join("server.log")
    }

    /// Everything the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn launch_on_free_port(&mut self) {
        for _ in 0..10 {
            let port = 30000 + u16::from_str_radix(&unique::random_hex(2), 16).expect("hex") % 2000;
            self.port = port;
            if self.launch() {
                return;
            }
        }
        panic!("postgres found no free port; log:\n{}", self.log());
    }

    /// Start on `self.port`; false when the port was taken.
    fn launch(&mut self) -> bool {
        assert!(self.child.is_none(), "postgres is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open server log");
        std::os::unix::fs::chown(
            self.log_path(),
            Some(self.user.uid()),
            Some(self.user.gid()),
        )
        .expect("chown log");
        let mut cmd = self.user.command(bin("postgres"));
        cmd.arg("-D")
            .arg(self.pg_dir.join("data"))
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir())
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=60",
            ])
            // Why: test speed on a shared machine; the daemons' durability is theirs.
            .args(["-c", "fsync=off"])
            .args(if self.tls {
                vec![
                    "-c".to_owned(),
                    "ssl=on".to_owned(),
                    "-c".to_owned(),
                    format!("ssl_cert_file={}", self.pg_dir.join("server.crt").display()),
                    "-c".to_owned(),
                    format!("ssl_key_file={}", self.pg_dir.join("server.key").display()),
                ]
            } else {
                Vec::new()
            })
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log);
        let mut child = cmd.spawn().expect("start postgres");
        let mut exited = false;
        let ready = proc::poll(Duration::from_secs(30), Duration::from_millis(50), || {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                return true;
            }
            self.is_ready()
        });
        if exited {
            if self.log().contains("Address already in use") {
                return false;
            }
            panic!("postgres exited at start; log:\n{}", self.log());
        }
        assert!(
            ready,
            "postgres not ready within 30 s; log:\n{}",
            self.log()
        );
        self.child = Some(child);
        true
    }

    fn is_ready(&self) -> bool {
        let mut c = proc::command(None, bin("pg_isready"));
        c.arg("-h").arg(self.socket_dir()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "admin",
            "-d",
            "postgres",
            "-q",
        ]);
        proc::run(c, b"", Duration::from_secs(5)).success()
    }

    /// Stop the server (fast shutdown: sessions are ended, their transactions rolled back).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            proc::signal(child.id(), "INT");
            let (_, killed) = proc::wait_timeout(&mut child, Duration::from_secs(30));
            assert!(!killed, "postgres did not stop within 30 s");
        }
    }

    /// Start again on the same data directory and port.
    pub fn restart(&mut self) {
        self.stop();
        assert!(self.launch(), "port {} taken on restart", self.port);
    }

    /// Freeze the server (SIGSTOP to every process of it): connections stay open, nothing
    /// answers — a database that is "slow" for as long as it lasts.
    pub fn pause(&self) {
        self.signal_all("STOP");
    }

    /// Undo [`Postgres::pause`].
    pub fn resume(&self) {
        self.signal_all("CONT");
    }

    /// Signal the postmaster we started and every process it forked (by pid).
    fn signal_all(&self, signal: &str) {
        let Some(main) = self.child.as_ref().map(Child::id) else {
            return;
        };
        proc::signal(main, signal);
        for pid in children_of(main) {
            proc::signal(pid, signal);
        }
    }

    /// Run `sql` through `psql` as the server's superuser on the unix socket, in
    /// `database`; the output (unaligned, tuples only). Panics on failure.
    pub fn psql_as_admin(&self, database: &str, sql: &str) -> String {
        let out = proc::run(
            self.psql_command(database),
            sql.as_bytes(),
            Duration::from_secs(60),
        );
        assert!(out.success(), "psql failed:\n{out}\n{sql}");
        out.stdout
    }

    /// `psql` as the superuser on the unix socket, reading SQL from stdin.
    pub fn psql_command(&self, database: &str) -> Command {
        let mut c = self.user.command(bin("psql"));
        c.arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", "admin", "-d", database])
            .args(["-v", "ON_ERROR_STOP=1", "-A", "-t", "-q"]);
        c
    }

    /// A `psql` session kept open (stdin piped): for holding a lock while a test acts.
    pub fn session(&self) -> Session {
        let mut c = self.psql_command(DATABASE);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Session(Some(c.spawn().expect("start psql")))
    }

    /// `pg_dump` of the twostep database (plain SQL).
    pub fn dump(&self) -> String {
        let mut c = self.user.command(bin("pg_dump"));
        c.arg("-h").arg(self.socket_dir()).args([
            "-p",
            &self.port.to_string(),
            "-U",
            "admin",
            DATABASE,
        ]);
        let out = proc::run(c, b"", Duration::from_secs(60));
        assert!(out.success(), "pg_dump failed:\n{out}");
        out.stdout
    }

    /// `config` with `[store]` pointing at this server (TCP on loopback, password file,
    /// no TLS), with the given statement timeout.
    pub fn store_config(&self, config: DaemonConfig, statement_timeout_ms: u64) -> DaemonConfig {
        let q = |s: &str| serde_json::to_string(s).expect("quote");
        config
            .set("store", "backend", "\"postgres\"")
            .set(
                "store",
                "url",
                &q(&format!(
                    "host=127.0.0.1 port={} user={ROLE} dbname={DATABASE}",
                    self.port
                )),
            )
            .set(
                "store",
                "password_file",
                &q(&self.root_dir.join("db.password").to_string_lossy()),
            )
            .set("store", "tls", "\"disable\"")
            .set("store", "connect_timeout_seconds", "2")
            .set(
                "store",
                "statement_timeout_ms",
                &statement_timeout_ms.to_string(),
            )
    }

    /// Give the server a certificate for `localhost` and 127.0.0.1 signed by a fresh test
    /// CA (EC P-256, openssl), and restart it with TLS on. Returns the CA's PEM file
    /// (root-owned, for `ca_file`).
    pub fn enable_tls(&mut self) -> PathBuf {
        let ca = self.new_ca("ca");
        let key = self.root_dir.join("server.key");
        let csr = self.root_dir.join("server.csr");
        let ext = self.root_dir.join("server.ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").expect("write ext");
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &csr.to_string_lossy(),
            "-subj",
            "/CN=localhost",
        ]);
        let crt = self.root_dir.join("server.crt");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr.to_string_lossy(),
            "-CA",
            &ca.to_string_lossy(),
            "-CAkey",
            &ca.with_extension("key").to_string_lossy(),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext.to_string_lossy(),
            "-out",
            &crt.to_string_lossy(),
        ]);
        for (from, to) in [(&key, "server.key"), (&crt, "server.crt")] {
            let dest = self.pg_dir.join(to);
            std::fs::copy(from, &dest).expect("copy server file");
            std::os::unix::fs::chown(&dest, Some(self.user.uid()), Some(self.user.gid()))
                .expect("chown server file");
            unique::chmod(&dest, 0o600);
        }
        self.tls = true;
        self.restart();
        ca
    }

    /// A fresh self-signed CA in the root-owned dir: its certificate (`<name>.pem`, 0644;
    /// the key beside it as `<name>.key`, 0600).
    pub fn new_ca(&self, name: &str) -> PathBuf {
        let pem = self.root_dir.join(format!("{name}.pem"));
        let key = self.root_dir.join(format!("{name}.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key.to_string_lossy(),
            "-out",
            &pem.to_string_lossy(),
            "-days",
            "2",
            "-subj",
            &format!("/CN=twostep-e2e {name}"),
        ]);
        unique::chmod(&pem, 0o644);
        pem
    }

    /// `config` for this server over TLS: host name `localhost` (the certificate's name),
    /// `tls` mode and `ca_file`.
    pub fn store_config_tls(
        &self,
        config: DaemonConfig,
        statement_timeout_ms: u64,
        tls: &str,
        ca_file: &Path,
    ) -> DaemonConfig {
        let q = |s: &str| serde_json::to_string(s).expect("quote");
        self.store_config(config, statement_timeout_ms)
            .set(
                "store",
                "url",
                &q(&format!(
                    "postgresql://{ROLE}@localhost:{}/{DATABASE}",
                    self.port
                )),
            )
            .set("store", "tls", &q(tls))
            .set("store", "ca_file", &q(&ca_file.to_string_lossy()))
    }

    /// How many of the daemons' sessions use TLS, and how many there are.
    pub fn daemon_sessions_tls(&self) -> (u32, u32) {
        let out = self.psql_as_admin(
            "postgres",
            "SELECT count(*) FILTER (WHERE s.ssl), count(*) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'twostepd';",
        );
        let mut parts = out.trim().split('|').map(|n| n.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// The harness temp dir of this server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Run `openssl ARGS` as root; panics on failure.
fn openssl(args: &[&str]) {
    let mut c = proc::command(None, "openssl");
    c.args(args);
    let out = proc::run(c, b"", Duration::from_secs(60));
    assert!(out.success(), "openssl failed:\n{out}");
}

/// The pids whose parent is `parent` (from `/proc/<pid>/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    // Fields after the command name (in parentheses): state, ppid, …
                    let rest = stat.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// An open `psql` session; ended (and its locks released) on drop.
pub struct Session(Option<Child>);

impl Session {
    /// Send `sql` (a complete statement with its `;`).
    pub fn send(&mut self, sql: &str) {
        if let Some(stdin) = self.0.as_mut().and_then(|c| c.stdin.as_mut()) {
            stdin
                .write_all(format!("{sql}\n").as_bytes())
                .expect("write to psql");
            stdin.flush().expect("flush psql");
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            drop(child.stdin.take());
            let (_, _) = proc::wait_timeout(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            proc::signal(child.id(), "QUIT");
            let (_, killed) = proc::wait_timeout(&mut child, Duration::from_secs(20));
            if killed {
                eprintln!("warning: postgres did not stop within 20 s");
            }
        }
        if std::thread::panicking() {
            eprintln!("=== postgres log ===\n{}", self.log());
        }
    }
}
