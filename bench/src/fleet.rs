// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 15's benchmark: twostep's PostgreSQL store beside its file store, with one daemon
//! and with three daemons (three buses, logins in turn) sharing one database, right and
//! wrong codes, through real libpam (`./scripts/bench --only fleet`).
//!
//! The database is Debian's PostgreSQL 15, `initdb` in the work directory as `nobody`,
//! listening on a unix socket only, with its default settings (fsync and synchronous_commit
//! on: every acknowledged login write is durable, as the file store's fdatasync).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twostepd::core::seal;
use twostepd::core::store::postgres::MIGRATIONS;

use crate::users::{TwostepState, UID_BASE};

/// Where Debian installs the server binaries.
const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The server runs as `nobody`.
const NOBODY: u32 = 65_534;
/// The database superuser the daemons connect as (unix socket, trust): the bench's own
/// server, so least privilege is not the point here.
const ROLE: &str = "twostep";

/// The settings the table states.
pub const SETTINGS: &str = "PostgreSQL 15 (Debian 12), `initdb` defaults (fsync on, \
    synchronous_commit on, shared_buffers 128 MB), unix socket on the same machine, \
    `max_connections` 50; each daemon `pool_size` 4, `statement_timeout_ms` 2000";

/// A PostgreSQL server in `dir`; stopped on drop.
pub struct PgServer {
    child: Child,
    dir: PathBuf,
}

fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={NOBODY}"))
        .arg(format!("--regid={NOBODY}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(Path::new(BIN_DIR).join(program));
    c.current_dir("/");
    c
}

/// Run `cmd` (stdin from /dev/null); its output, or why it failed.
fn run(mut cmd: Command) -> Result<String, String> {
    crate::sys::sh(cmd.stdin(Stdio::null()))
}

impl PgServer {
    /// `initdb` and start in `dir` (created, owned by nobody).
    ///
    /// # Errors
    /// A step failed (the message says which).
    pub fn start(dir: &Path) -> Result<PgServer, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).map_err(|e| e.to_string())?;
        let mut init = as_nobody("initdb");
        init.arg("-D").arg(dir.join("data")).args([
            "-U",
            ROLE,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        run(init)?;
        let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(dir.join("server.log"), Some(NOBODY), Some(NOBODY))
            .map_err(|e| e.to_string())?;
        let mut cmd = as_nobody("postgres");
        crate::sys::die_with_parent(&mut cmd);
        cmd.arg("-D")
            .arg(dir.join("data"))
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=", "-c", "max_connections=50"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        let child = cmd.spawn().map_err(|e| format!("postgres: {e}"))?;
        let pg = PgServer {
            child,
            dir: dir.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mut ready = as_nobody("pg_isready");
            ready.arg("-h").arg(&pg.dir).args(["-U", ROLE, "-q"]);
            if run(ready).is_ok() {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "postgres did not start; see {}",
                    dir.join("server.log").display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        pg.psql_text(&format!("CREATE DATABASE {ROLE};"), "postgres")?;
        pg.psql_text(
            &format!(
                "CREATE TABLE twostep_schema (id boolean PRIMARY KEY DEFAULT true CHECK (id), \
                 version integer NOT NULL);\n{}\nINSERT INTO twostep_schema VALUES (true, {});",
                MIGRATIONS.join("\n"),
                MIGRATIONS.len()
            ),
            ROLE,
        )?;
        Ok(pg)
    }

    /// Run `sql` through psql (from a file nobody can read) in `database`.
    fn psql_text(&self, sql: &str, database: &str) -> Result<String, String> {
        let file = self.dir.join("input.sql");
        std::fs::write(&file, sql).map_err(|e| e.to_string())?;
        std::os::unix::fs::chown(&file, Some(NOBODY), Some(NOBODY)).map_err(|e| e.to_string())?;
        let mut c = as_nobody("psql");
        c.arg("-h")
            .arg(&self.dir)
            .args([
                "-U",
                ROLE,
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-f",
            ])
            .arg(&file);
        run(c)
    }

    /// The `[store]` lines of a daemon on this server (appended to the bench's config,
    /// whose last table is `[store]` with the key file).
    pub fn store_lines(&self) -> String {
        format!(
            "backend = \"postgres\"\nurl = \"host={} user={ROLE} dbname={ROLE}\"\ntls = \"disable\"\n",
            self.dir.display()
        )
    }

    /// Replace every record with those of users `0..size`, sealed as the daemon seals them.
    ///
    /// # Errors
    /// A record cannot be sealed, or psql failed.
    pub fn load(&self, tw: &TwostepState, size: u32) -> Result<(), String> {
        let mut sql = String::from(
            "TRUNCATE twostep_accounts, twostep_enrolled;\n\
             COPY twostep_accounts (uid, record, enrolled, key_ids, generation) FROM STDIN;\n",
        );
        for i in 0..size {
            let value = tw.sealer.encode(&tw.record(i))?;
            let ids: Vec<String> = seal::key_ids_in(&value).into_iter().collect();
            let json = value.to_string().replace('\\', "\\\\");
            let _ = writeln!(sql, "{}\t{json}\tt\t{{{}}}\t1", UID_BASE + i, ids.join(","));
        }
        sql.push_str(
            "\\.\nINSERT INTO twostep_enrolled SELECT uid FROM twostep_accounts;\nANALYZE;\n",
        );
        self.psql_text(&sql, ROLE).map(|_| ())
    }

    /// Write the records of `touched` (bench user indexes) again, as [`PgServer::load`] did.
    ///
    /// # Errors
    /// As [`PgServer::load`].
    pub fn reset(&self, tw: &TwostepState, touched: &[u32]) -> Result<(), String> {
        if touched.is_empty() {
            return Ok(());
        }
        let mut sql = String::from("BEGIN;\n");
        for &i in touched {
            let json = tw
                .sealer
                .encode(&tw.record(i))?
                .to_string()
                .replace('\'', "''");
            let _ = writeln!(
                sql,
                "UPDATE twostep_accounts SET record = '{json}'::jsonb, generation = generation + 1 \
                 WHERE uid = {};",
                UID_BASE + i
            );
        }
        sql.push_str("COMMIT;\n");
        self.psql_text(&sql, ROLE).map(|_| ())
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        // Fast shutdown (SIGINT), then reap.
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
