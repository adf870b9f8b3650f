// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PostgreSQL store (issue 15): one database shared by every host of a fleet, so an
//! enrolment works everywhere and replay marks, spent recovery codes and lockout hold
//! fleet-wide.
//!
//! # Tables
//!
//! - `twostep_accounts`: one row per account (`uid`), the record as `jsonb` with its
//!   secrets sealed ([`crate::core::seal`]), `enrolled`, the ids of the keys that sealed it
//!   (`key_ids`, for the key check at start) and a `generation` counted up by each write.
//!   Keeping the whole record as `jsonb` means a record field added later (email, app
//!   passwords) needs no schema change.
//! - `twostep_enrolled`: the authoritative enrolment list, written in the same transaction
//!   as the record: an enrolled account whose row is gone fails closed, as a vanished file
//!   does in the file store.
//! - `twostep_schema`: the schema version. The daemon runs the migrations it knows
//!   ([`MIGRATIONS`]) under an advisory lock at its first use of the database, and refuses
//!   a database whose schema is newer than it knows.
//!
//! # One transaction per account operation
//!
//! [`Store::transact`] opens a transaction, takes a transaction-scoped advisory lock on
//! the uid (it also covers an account whose row does not exist yet: two hosts enrolling
//! one account at once), reads the row `FOR UPDATE`, runs the closure, and on
//! [`Write::Save`] writes the row (and the enrolment list) and commits before it returns;
//! `Keep` rolls back. Two hosts can therefore never both accept one code, spend one
//! recovery code, or miss each other's failure count.
//!
//! # Trouble fails closed, and heals
//!
//! Every database step runs on this store's own small tokio runtime, driven from the
//! blocking thread the store call already runs on, and is bounded: getting a connection by
//! `connect_timeout_seconds`, every statement by `statement_timeout_ms` (client side, and
//! as the server's `statement_timeout`). A database that is stopped, unreachable or slow
//! makes the call fail with [`Error::Unavailable`] ("store unavailable: …") within those
//! bounds; the login is refused, never let in. A connection that saw any error is dropped
//! (the server rolls back what it held), and the pool opens new ones on demand, so the
//! daemon works again as soon as the database does, without a restart. Nothing is ever
//! half-written: a write is one transaction.
//!
//! # Why tokio-postgres and deadpool
//!
//! The synchronous `postgres` crate blocks inside its own runtime with no per-call
//! deadline: a database that stops answering (not closing the socket) would hold a login
//! until TCP gives up. With `tokio-postgres` every step is a future, so
//! `tokio::time::timeout` bounds it exactly, and `deadpool-postgres` gives a pool with
//! bounded waits. TLS is rustls (`tokio-postgres-rustls`).

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use serde_json::Value;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;
use twostep_config::{Store as StoreConfig, Tls};

use super::{Store, Write};
use crate::core::record::{Record, RECORD_VERSION};
use crate::core::seal::{self, Sealer};
use crate::core::trust;
use crate::core::users::Account;
use crate::core::Error;

/// The schema version this daemon writes: the number of [`MIGRATIONS`].
pub const SCHEMA_VERSION: i32 = 1;

/// Migration `n` (1-based) takes the schema from version `n - 1` to `n`.
pub const MIGRATIONS: &[&str] = &["
    CREATE TABLE twostep_accounts (
        uid        bigint PRIMARY KEY CHECK (uid BETWEEN 0 AND 4294967295),
        record     jsonb NOT NULL,
        enrolled   boolean NOT NULL,
        key_ids    text[] NOT NULL,
        generation bigint NOT NULL,
        updated    timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE twostep_enrolled (
        uid bigint PRIMARY KEY CHECK (uid BETWEEN 0 AND 4294967295)
    );
"];

/// The first key of every advisory lock this store takes ("twst").
const LOCK_CLASS: i32 = 0x7477_7374;
/// The advisory lock of the schema migration (accounts use their uid as the second key,
/// as a signed 32-bit number; the migration takes a separate class).
const MIGRATION_CLASS: i32 = 0x7477_736d;

/// The PostgreSQL store (see the module doc).
pub struct PgStore {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    sealer: Arc<Sealer>,
    connect: Duration,
    statement: Duration,
    /// The schema is known to be current and every key the records need is held.
    ready: AtomicBool,
    /// Where the database is, for messages (no password).
    target: String,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Why: dropping a runtime inside another runtime's async context panics.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A readable description of the database: hosts, port and database name.
fn target_of(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!(
        "{}:{} database {}",
        hosts.join(","),
        pg.get_ports()
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(","),
        pg.get_dbname().unwrap_or("(default)")
    )
}

/// The database settings of `[store]`, checked: the url parses and names no password, the
/// password and CA files are safe to trust. Does not connect.
///
/// # Errors
/// A message naming the setting or file and what is wrong.
pub fn connection_config(cfg: &StoreConfig) -> Result<tokio_postgres::Config, String> {
    let mut pg: tokio_postgres::Config = cfg
        .url
        .parse()
        .map_err(|e| format!("[store] url does not parse: {e}"))?;
    if pg.get_password().is_some() {
        return Err("[store] url holds a password: put it in password_file".into());
    }
    if !cfg.password_file.as_os_str().is_empty() {
        let pw = seal::read_private_file(&cfg.password_file, "database password file")?;
        let text = std::str::from_utf8(&pw)
            .map_err(|_| format!("{}: not text", cfg.password_file.display()))?;
        pg.password(text.trim_end_matches(['\n', '\r']));
    }
    let ms = cfg.statement_timeout_ms.get();
    pg.connect_timeout(Duration::from_secs(cfg.connect_timeout_seconds.get()))
        .application_name("twostepd")
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30))
        .options(format!(
            "-c client_min_messages=warning -c statement_timeout={ms} -c lock_timeout={ms} \
             -c idle_in_transaction_session_timeout={}",
            ms.saturating_mul(4).max(5000)
        ));
    pg.ssl_mode(match cfg.tls {
        Tls::Disable => SslMode::Disable,
        Tls::Require | Tls::VerifyFull => SslMode::Require,
    });
    if cfg.tls == Tls::VerifyFull {
        tls_config(cfg)?;
    }
    Ok(pg)
}

/// What `[store] tls` means for the hosts of `[store] url`: `disable` to a host that is not
/// loopback or a unix socket is an error (everything, the sealed secrets' envelopes and
/// every answer, would cross the network in clear, and anyone on the path could change
/// answers); `require` to such a host is a warning (encrypted, but whoever answers is not
/// checked). Nothing for an unparsable url: [`connection_config`] reports it.
pub fn tls_findings(cfg: &StoreConfig) -> Vec<twostep_config::Finding> {
    use twostep_config::Finding;
    if cfg.backend != twostep_config::Backend::Postgres || cfg.tls == Tls::VerifyFull {
        return Vec::new();
    }
    let Ok(pg) = cfg.url.parse::<tokio_postgres::Config>() else {
        return Vec::new();
    };
    let remote: Vec<String> = pg
        .get_hosts()
        .iter()
        .filter_map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) if !is_loopback(name) => Some(name.clone()),
            _ => None,
        })
        .chain(
            pg.get_hostaddrs()
                .iter()
                .filter(|a| !a.is_loopback())
                .map(ToString::to_string),
        )
        .collect();
    if remote.is_empty() {
        return Vec::new();
    }
    let hosts = remote.join(", ");
    match cfg.tls {
        Tls::Disable => vec![Finding::Error(format!(
            "[store] tls = \"disable\" is for loopback or a unix socket only; {hosts} is \
             neither: use \"verify-full\" with ca_file"
        ))],
        _ => vec![Finding::Warning(format!(
            "[store] tls = \"require\" to {hosts} encrypts but does not check who answers; \
             use \"verify-full\" with ca_file"
        ))],
    }
}

/// `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The rustls configuration of `[store] tls`.
fn tls_config(cfg: &StoreConfig) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match cfg.tls {
        Tls::VerifyFull => {
            let roots = ca_roots(&cfg.ca_file)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// The certificate authorities of `ca_file` (PEM), trusted as the config file is.
fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    use rustls_pki_types::pem::PemObject;
    trust::check_config_file(path).map_err(|e| format!("[store] ca_file: {e}"))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("[store] ca_file {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "[store] ca_file {} holds no certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// `tls = "require"`: encrypt, and check the handshake's signatures, but not who signed the
/// server's certificate (libpq's `sslmode=require`). Use `verify-full` wherever the network
/// between host and database is not trusted.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A database failure as the core reports it: the store is unavailable (fails closed).
fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("store unavailable: {what}: {e}"))
}

/// How errors name an account at the store's level.
fn account(uid: u32) -> String {
    format!("uid {uid}")
}

/// The uid as the database keeps it.
fn key(uid: u32) -> i64 {
    i64::from(uid)
}

/// The uid as the second key of its advisory lock (the same 32 bits, signed).
fn lock_key(uid: u32) -> i32 {
    i32::from_ne_bytes(uid.to_ne_bytes())
}

impl PgStore {
    /// A store over the database of `[store]`, sealing with `sealer`. Connects once to
    /// create or migrate the schema and check the keys; a database that cannot be reached
    /// now is not an error (the daemon starts and answers "store unavailable" until it
    /// can), a schema newer than this daemon or a record sealed with a key it lacks is.
    ///
    /// # Errors
    /// The settings are invalid (see [`connection_config`]), the runtime cannot start, or
    /// the database is reachable and refuses this daemon (schema, keys).
    pub fn open(cfg: &StoreConfig, sealer: Arc<Sealer>) -> Result<PgStore, String> {
        let pg = connection_config(cfg)?;
        let target = target_of(&pg);
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match cfg.tls {
            Tls::Disable => Manager::from_config(pg, NoTls, manager_config),
            Tls::Require | Tls::VerifyFull => Manager::from_config(
                pg,
                tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(cfg)?),
                manager_config,
            ),
        };
        let connect = Duration::from_secs(cfg.connect_timeout_seconds.get());
        let pool = Pool::builder(manager)
            .max_size(usize::try_from(cfg.pool_size.get()).unwrap_or(4))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(connect))
            .create_timeout(Some(connect))
            .recycle_timeout(Some(connect))
            .build()
            .map_err(|e| format!("database pool: {e}"))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("twostep-pg")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the database runtime: {e}"))?;
        let store = PgStore {
            runtime: Some(runtime),
            pool,
            sealer,
            connect,
            statement: Duration::from_millis(cfg.statement_timeout_ms.get()),
            ready: AtomicBool::new(false),
            target,
        };
        match store.block(async |_| Ok(())) {
            Ok(()) => Ok(store),
            Err(Error::Unavailable(why)) if !why.contains("refuses") => {
                log::error!(
                    "database {} not usable at start ({why}); logins fail closed until it is",
                    store.target
                );
                Ok(store)
            }
            Err(e) => Err(format!("database {}: {e}", store.target)),
        }
    }

    /// Bound one database step by the statement timeout.
    async fn step<T, E: std::fmt::Display>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.statement, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(unavailable(what, e)),
            Err(_) => Err(unavailable(
                what,
                format!("no answer within {} ms", self.statement.as_millis()),
            )),
        }
    }

    /// Run `body` on a pooled connection on this store's runtime, from the calling
    /// (blocking) thread: the schema is made current first. A connection that saw an error
    /// is dropped (its server session ends and rolls back).
    fn block<T>(
        &self,
        body: impl AsyncFnOnce(&mut Object) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let Some(rt) = self.runtime.as_ref() else {
            return Err(Error::Internal("the database runtime is gone".into()));
        };
        rt.block_on(async {
            let mut client = match tokio::time::timeout(self.connect, self.pool.get()).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(unavailable(&format!("connect to {}", self.target), e)),
                Err(_) => {
                    return Err(unavailable(
                        &format!("connect to {}", self.target),
                        format!("no connection within {} s", self.connect.as_secs()),
                    ))
                }
            };
            let out = match self.ensure_ready(&mut client).await {
                Ok(()) => body(&mut client).await,
                Err(e) => Err(e),
            };
            if out.is_err() {
                drop(Object::take(client));
            }
            out
        })
    }

    /// Create or migrate the schema and check the keys, once (until it succeeds).
    async fn ensure_ready(&self, client: &mut Object) -> Result<(), Error> {
        if self.ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let tx = self.step("begin", client.transaction()).await?;
        self.step(
            "lock the schema",
            tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&MIGRATION_CLASS]),
        )
        .await?;
        self.step(
            "create the schema table",
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS twostep_schema (
                     id boolean PRIMARY KEY DEFAULT true CHECK (id),
                     version integer NOT NULL
                 )",
            ),
        )
        .await?;
        let found: i32 = self
            .step(
                "read the schema version",
                tx.query_opt("SELECT version FROM twostep_schema", &[]),
            )
            .await?
            .map_or(0, |row| row.get(0));
        if found > SCHEMA_VERSION {
            return Err(Error::Unavailable(format!(
                "store unavailable: the database refuses this daemon: its schema is version \
                 {found}, newer than this twostepd knows ({SCHEMA_VERSION}); upgrade twostepd"
            )));
        }
        let first = usize::try_from(found).unwrap_or(0);
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(first) {
            self.step("migrate the schema", tx.batch_execute(sql))
                .await?;
            log::info!(
                "database {}: schema migrated to version {}",
                self.target,
                i + 1
            );
        }
        if found < SCHEMA_VERSION {
            self.step(
                "record the schema version",
                tx.execute(
                    "INSERT INTO twostep_schema (id, version) VALUES (true, $1)
                     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version",
                    &[&SCHEMA_VERSION],
                ),
            )
            .await?;
        }
        let rows = self
            .step(
                "read the key ids",
                tx.query("SELECT DISTINCT unnest(key_ids) FROM twostep_accounts", &[]),
            )
            .await?;
        self.step("commit the schema", tx.commit()).await?;
        let missing: Vec<String> = rows
            .iter()
            .map(|r| r.get::<_, String>(0))
            .filter(|id| !self.sealer.holds(id))
            .collect();
        let held = self.sealer.key_ids();
        if !missing.is_empty() {
            return Err(Error::Unavailable(format!(
                "store unavailable: the database refuses this daemon: records are sealed with \
                 store key(s) {} which this host does not have (it holds {}); copy the \
                 fleet's key file to this host",
                missing.join(", "),
                held.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// The record stored as `value` for `uid`, opened and checked.
    fn decode(&self, uid: u32, value: Value) -> Result<Record, Error> {
        let corrupt = |reason: String| {
            log::error!("record of uid {uid} in the database fails closed: {reason}");
            Error::CorruptRecord {
                user: account(uid),
                reason,
            }
        };
        // Why: every daemon of a fleet seals with the store key, and an import seals too, so
        // the database never holds a secret in clear; one found there was put there by
        // someone who can write the database without the key (a key they know, planted
        // for an enrolled user). The file store still reads records written before sealing.
        if seal::has_plain_secret(&value) {
            return Err(corrupt(
                "a secret is stored unsealed, which no twostepd writes to the database                  (tampering?): run `twostepctl user reset` for this user after checking"
                    .into(),
            ));
        }
        let record = self.sealer.decode(value).map_err(corrupt)?;
        if record.version != RECORD_VERSION {
            return Err(corrupt(format!(
                "unknown record version {}",
                record.version
            )));
        }
        if record.uid != Some(uid) {
            return Err(corrupt("record belongs to another account".into()));
        }
        Ok(record)
    }

    /// Lock account `uid` for the rest of `tx` and read its row and whether it is listed.
    /// Why one step: the three statements are pipelined (sent at once, run in order by the
    /// server: the reads run once the lock is held), one round trip with cached statements.
    async fn lock_and_read(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        uid: u32,
    ) -> Result<(Option<Value>, bool), Error> {
        let (lock, read, listed) = self
            .step("prepare", async {
                tokio::try_join!(
                    tx.prepare_cached("SELECT pg_advisory_xact_lock($1, $2)"),
                    tx.prepare_cached(
                        "SELECT record FROM twostep_accounts WHERE uid = $1 FOR UPDATE"
                    ),
                    tx.prepare_cached("SELECT 1 FROM twostep_enrolled WHERE uid = $1"),
                )
            })
            .await?;
        let (k, lk) = (key(uid), lock_key(uid));
        let lock_args: [&(dyn ToSql + Sync); 2] = [&LOCK_CLASS, &lk];
        let uid_args: [&(dyn ToSql + Sync); 1] = [&k];
        let (_, row, listed) = self
            .step("lock and read the account", async {
                tokio::try_join!(
                    tx.execute(&lock, &lock_args),
                    tx.query_opt(&read, &uid_args),
                    tx.query_opt(&listed, &uid_args),
                )
            })
            .await?;
        Ok((row.map(|r| r.get(0)), listed.is_some()))
    }

    /// Write `record` of `uid` and keep the enrolment list in step, inside `tx` (both
    /// statements pipelined).
    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        uid: u32,
        record: &Record,
    ) -> Result<(), Error> {
        if record.uid != Some(uid) {
            return Err(Error::Storage {
                user: account(uid),
                reason: "record of another account".into(),
            });
        }
        let value = self
            .sealer
            .encode(record)
            .map_err(|reason| Error::Storage {
                user: account(uid),
                reason,
            })?;
        let ids: Vec<String> = seal::key_ids_in(&value).into_iter().collect();
        let enrolled = record.enrolled();
        let list = if enrolled {
            "INSERT INTO twostep_enrolled (uid) VALUES ($1) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM twostep_enrolled WHERE uid = $1"
        };
        let (upsert, list) = self
            .step("prepare", async {
                tokio::try_join!(
                    tx.prepare_cached(
                        "INSERT INTO twostep_accounts (uid, record, enrolled, key_ids, generation)
                         VALUES ($1, $2, $3, $4, 1)
                         ON CONFLICT (uid) DO UPDATE SET record = EXCLUDED.record,
                             enrolled = EXCLUDED.enrolled, key_ids = EXCLUDED.key_ids,
                             generation = twostep_accounts.generation + 1, updated = now()"
                    ),
                    tx.prepare_cached(list),
                )
            })
            .await?;
        let k = key(uid);
        let upsert_args: [&(dyn ToSql + Sync); 4] = [&k, &value, &enrolled, &ids];
        let uid_args: [&(dyn ToSql + Sync); 1] = [&k];
        self.step("write the record and the enrolment list", async {
            tokio::try_join!(
                tx.execute(&upsert, &upsert_args),
                tx.execute(&list, &uid_args),
            )
        })
        .await?;
        Ok(())
    }
}

fn vanished(who: &str) -> Error {
    let reason = "the account is enrolled but its record is missing from the database; an \
                  administrator restores the row or runs `twostepctl user reset`"
        .to_owned();
    log::error!(
        "record of user={} fails closed: {reason}",
        crate::core::audit::field(who)
    );
    Error::CorruptRecord {
        user: who.to_owned(),
        reason,
    }
}

impl Store for PgStore {
    fn load(&self, who: &Account) -> Result<Option<Record>, Error> {
        let (row, listed) = self.block(async |c| {
            let read = self
                .step(
                    "prepare",
                    c.prepare_cached(
                        "SELECT a.record, e.uid IS NOT NULL
                         FROM (SELECT $1::bigint AS uid) q
                         LEFT JOIN twostep_accounts a USING (uid)
                         LEFT JOIN twostep_enrolled e USING (uid)",
                    ),
                )
                .await?;
            let rows = self
                .step("read the record", c.query_opt(&read, &[&key(who.uid)]))
                .await?;
            Ok(rows.map_or((None, false), |r| (r.get::<_, Option<Value>>(0), r.get(1))))
        })?;
        match row {
            Some(v) => self.decode(who.uid, v).map(Some),
            None if listed => Err(vanished(&format!("{} (uid {})", who.name, who.uid))),
            None => Ok(None),
        }
    }

    fn load_uid(&self, uid: u32) -> Result<Option<Record>, Error> {
        let row = self.block(async |c| {
            self.step(
                "read the record",
                c.query_opt(
                    "SELECT record FROM twostep_accounts WHERE uid = $1",
                    &[&key(uid)],
                ),
            )
            .await
        })?;
        row.map(|r| self.decode(uid, r.get(0))).transpose()
    }

    fn list(&self) -> Result<Vec<u32>, Error> {
        let rows = self.block(async |c| {
            self.step(
                "list the accounts",
                c.query(
                    "SELECT uid FROM twostep_accounts UNION SELECT uid FROM twostep_enrolled \
                     ORDER BY 1",
                    &[],
                ),
            )
            .await
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| u32::try_from(r.get::<_, i64>(0)).ok())
            .collect())
    }

    fn remove(&self, uid: u32) -> Result<(), Error> {
        self.block(async |c| {
            let tx = self.step("begin", c.transaction()).await?;
            self.lock_and_read(&tx, uid).await?;
            for sql in [
                "DELETE FROM twostep_accounts WHERE uid = $1",
                "DELETE FROM twostep_enrolled WHERE uid = $1",
            ] {
                self.step("remove the record", tx.execute(sql, &[&key(uid)]))
                    .await?;
            }
            self.step("commit", tx.commit()).await
        })
    }

    fn transact(
        &self,
        who: &Account,
        f: &mut dyn FnMut(&mut Option<Record>) -> Write,
    ) -> Result<(), Error> {
        self.block(async |c| {
            let tx = self.step("begin", c.transaction()).await?;
            let (row, listed) = self.lock_and_read(&tx, who.uid).await?;
            let mut record = match row {
                Some(v) => Some(self.decode(who.uid, v)?),
                None if listed => return Err(vanished(&format!("{} (uid {})", who.name, who.uid))),
                None => None,
            };
            match (f(&mut record), record) {
                (Write::Save, Some(r)) => {
                    self.write(&tx, who.uid, &r).await?;
                    self.step("commit", tx.commit()).await
                }
                _ => self.step("roll back", tx.rollback()).await,
            }
        })
    }

    fn replace_vanished(&self, who: &Account, fresh: &Record) -> Result<bool, Error> {
        self.block(async |c| {
            let tx = self.step("begin", c.transaction()).await?;
            let (row, listed) = self.lock_and_read(&tx, who.uid).await?;
            if row.is_some() || !listed {
                self.step("roll back", tx.rollback()).await?;
                return Ok(false);
            }
            self.write(&tx, who.uid, fresh).await?;
            self.step(
                "take the account off the enrolment list",
                tx.execute(
                    "DELETE FROM twostep_enrolled WHERE uid = $1",
                    &[&key(who.uid)],
                ),
            )
            .await?;
            self.step("commit", tx.commit()).await?;
            Ok(true)
        })
    }

    fn sealer(&self) -> Option<&Sealer> {
        Some(&self.sealer)
    }

    fn key_ids(&self) -> Result<BTreeSet<String>, Error> {
        let rows = self.block(async |c| {
            self.step(
                "read the key ids",
                c.query("SELECT DISTINCT unnest(key_ids) FROM twostep_accounts", &[]),
            )
            .await
        })?;
        Ok(rows.iter().map(|r| r.get::<_, String>(0)).collect())
    }

    fn reseal(&self, uid: u32) -> Result<bool, Error> {
        self.block(async |c| {
            let tx = self.step("begin", c.transaction()).await?;
            let (row, _) = self.lock_and_read(&tx, uid).await?;
            let Some(value) = row.filter(|v| self.sealer.needs_reseal(v)) else {
                self.step("roll back", tx.rollback()).await?;
                return Ok(false);
            };
            let record = self.decode(uid, value)?;
            self.write(&tx, uid, &record).await?;
            self.step("commit", tx.commit()).await?;
            Ok(true)
        })
    }
}
