// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fleets (issue 15): three daemons on three private buses sharing one real PostgreSQL
//! (initdb in a temp dir, an unprivileged server user, a loopback port), through real
//! libpam; secrets sealed at rest in both backends; export/import; key rotation.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use twostep_e2e::daemon::write_store_key;
use twostep_e2e::pam::strerror;
use twostep_e2e::postgres::Postgres;
use twostep_e2e::{flows, otp, unique, DaemonConfig, Enrolled, Stack, User};

/// The statement timeout of the fleet tests' daemons (ms).
const STATEMENT_MS: u64 = 1500;

/// Three hosts on one database. Fields drop in order: hosts first, the database last.
struct Fleet {
    hosts: Vec<Stack>,
    pg: Postgres,
}

fn fleet_with(config: DaemonConfig) -> Fleet {
    let pg = Postgres::start();
    let config = pg.store_config(config, STATEMENT_MS);
    let hosts = (0..3)
        .map(|_| Stack::start_with(config.clone(), ""))
        .collect();
    Fleet { hosts, pg }
}

fn lockout(max_failures: u32) -> DaemonConfig {
    DaemonConfig::default()
        .set("lockout", "max_failures", &max_failures.to_string())
        .set("lockout", "lockout_seconds", "600")
        .set("login", "max_sessions_per_user", "64")
}

fn status_u64(s: &Stack, user: &User, key: &str) -> u64 {
    let status = s.ctl.status(user);
    status[key]
        .as_u64()
        .unwrap_or_else(|| panic!("status.{key}: {status}"))
}

/// Every way the secret of `e` could appear in stored bytes: base32 (as shown, and
/// lower case), the raw key bytes, and their hex.
fn secret_forms(e: &Enrolled) -> Vec<Vec<u8>> {
    let raw = base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &e.secret)
        .unwrap_or_else(|| panic!("the secret is not base32: {}", e.secret));
    assert!(raw.len() >= 16, "a short secret");
    vec![
        e.secret.as_bytes().to_vec(),
        e.secret.to_lowercase().into_bytes(),
        hex::encode(&raw).into_bytes(),
        raw,
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir`, read.
fn files_under(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

fn assert_no_secret(e: &Enrolled, what: &str, bytes: &[u8]) {
    for form in secret_forms(e) {
        assert!(
            !contains(bytes, &form),
            "{what} holds the secret of {} in clear",
            e.user
        );
    }
}

#[test]
fn enrol_on_one_host_log_in_on_another_and_a_code_is_spent_fleet_wide() {
    let f = fleet_with(DaemonConfig::default());
    let [a, b, c] = [&f.hosts[0], &f.hosts[1], &f.hosts[2]];
    let user = User::create();
    let e = a.ctl.enroll(&user);
    let code = e.code_after(1);
    b.pam.login(user.name(), &code).assert_success();
    a.pam
        .login(user.name(), &code)
        .assert_refused_with(strerror::AUTH_ERR);
    c.pam
        .login(user.name(), &code)
        .assert_refused_with(strerror::AUTH_ERR);
    // The next code works anywhere (here: C), and the record is the same on every host:
    // replays are refused without a charge.
    c.pam.login(user.name(), &e.code_after(2)).assert_success();
    assert_eq!(status_u64(a, &user, "failures"), 0);
    assert_eq!(a.ctl.status(&user)["enrolled"], true);
}

#[test]
fn failures_spread_over_the_hosts_lock_everywhere_and_an_unlock_from_any_frees() {
    let f = fleet_with(lockout(3));
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    for host in &f.hosts {
        host.pam
            .login(user.name(), &e.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    for host in &f.hosts {
        host.pam
            .login(user.name(), &e.code_after(1))
            .assert_refused_with(strerror::MAXTRIES);
    }
    let out = f.hosts[2]
        .ctl
        .run(None, &["user", "unlock", user.name()], b"");
    assert!(out.success(), "{out}");
    f.hosts[0]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
}

/// `n` logins of `user` answering `answer` at once, spread over the hosts in turn.
fn race(f: &Fleet, user: &User, answer: &str, n: usize) -> Vec<twostep_e2e::PamRun> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let host = &f.hosts[i % f.hosts.len()];
                scope.spawn(move || host.pam.login(user.name(), answer))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("login thread panicked")))
            .collect()
    })
}

#[test]
fn fifty_concurrent_logins_with_one_code_over_three_hosts_succeed_once() {
    let f = fleet_with(lockout(100));
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    let code = e.code_after(1);
    let runs = race(&f, &user, &code, 50);
    let ok = runs.iter().filter(|r| r.succeeded()).count();
    assert_eq!(ok, 1, "exactly one login may use the code");
    assert!(
        runs.iter()
            .filter(|r| !r.succeeded())
            .all(|r| r.pam_error() == Some(strerror::AUTH_ERR)),
        "every other attempt is a plain refusal"
    );
}

#[test]
fn one_recovery_code_raced_on_three_hosts_is_spent_once() {
    let f = fleet_with(lockout(100));
    let user = User::create();
    let (_key, codes) = flows::enroll_json(&f.hosts[0].ctl, &user);
    let code = codes[0].clone();
    let runs = race(&f, &user, &code, 12);
    assert_eq!(runs.iter().filter(|r| r.succeeded()).count(), 1);
    assert_eq!(
        status_u64(&f.hosts[1], &user, "recovery_codes_left"),
        codes.len() as u64 - 1
    );
}

#[test]
fn a_stopped_or_frozen_database_refuses_in_time_and_the_fleet_heals_without_restarts() {
    let mut f = fleet_with(DaemonConfig::default());
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    f.hosts[1]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();

    // Stopped: connections refused.
    f.pg.stop();
    let started = Instant::now();
    let run = f.hosts[2].pam.login(user.name(), &e.code_after(2));
    assert!(!run.succeeded(), "a login without the database: {run:?}");
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "refused after {:?}, past the module's 10 s",
        started.elapsed()
    );
    let status = f.hosts[2].ctl.try_status(&user).unwrap_err();
    assert!(status.contains("store unavailable"), "{status}");
    // A service whose module fails open when the daemon is unreachable still fails closed:
    // the daemon answered; its store did not.
    let open = twostep_e2e::PamService::twostep(f.hosts[2].bus.address(), "failmode=open");
    let run = open.login(user.name(), &e.code_after(2));
    assert!(
        !run.succeeded(),
        "failmode=open let a login in without the store: {run:?}"
    );

    // Back: the same daemons work again.
    f.pg.restart();
    f.hosts[2]
        .pam
        .login(user.name(), &e.code_after(2))
        .assert_success();

    // Frozen (slow): connections open, nothing answers.
    f.pg.pause();
    let started = Instant::now();
    let run = f.hosts[0].pam.login(user.name(), &e.wrong_code());
    let took = started.elapsed();
    f.pg.resume();
    assert!(
        !run.succeeded(),
        "a login while the database hangs: {run:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "refused after {took:?}, past the module's 10 s"
    );
    assert!(
        f.hosts[0].daemon.log().contains("store unavailable"),
        "{}",
        f.hosts[0].daemon.log()
    );
    // Thawed: the wrong code answered "unavailable" was charged at most once (it may
    // have committed just before the deadline), and logins work with the next code.
    assert!(status_u64(&f.hosts[1], &user, "failures") <= 1);
    let next = e.confirmed_step + 3;
    while otp::now() / 30 + 1 < next {
        std::thread::sleep(Duration::from_millis(200));
    }
    f.hosts[0]
        .pam
        .login(user.name(), &e.code_at_step(next))
        .assert_success();
}

#[test]
fn a_daemon_killed_mid_transaction_leaves_no_lock_and_no_lost_or_doubled_charge() {
    let mut f = fleet_with(lockout(10));
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    // Two answered wrong attempts: charged once each.
    for host in &f.hosts[1..] {
        host.pam
            .login(user.name(), &e.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    // Hold the account's lock from outside, so host A's transaction waits inside it.
    let mut session = f.pg.session();
    session.send(&format!(
        "SELECT pg_advisory_lock({}, {});",
        0x7477_7374,
        user.uid() as i32
    ));
    std::thread::sleep(Duration::from_millis(300));
    std::thread::scope(|scope| {
        let a = &f.hosts[0];
        let wrong = e.wrong_code();
        let name = user.name().to_owned();
        let login = scope.spawn(move || a.pam.login(&name, &wrong));
        // The transaction has begun and waits for the lock.
        let waiting = (0..40).any(|_| {
            std::thread::sleep(Duration::from_millis(25));
            f.pg.psql_as_admin(
                "twostep",
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND application_name = 'twostepd';",
            )
            .trim()
                == "1"
        });
        assert!(waiting, "host A's transaction never waited for the lock");
        // Why kill9 on a copy of the pid: the Stack is shared with the login thread.
        twostep_e2e::proc::signal(a.daemon.pid().expect("running"), "KILL");
        let run = login.join().expect("login thread");
        assert!(!run.succeeded());
    });
    drop(session);
    f.hosts[0].daemon.kill9();
    // No session of the dead daemon lingers in a transaction.
    let lingering = f.pg.psql_as_admin(
        "twostep",
        "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' \
         OR wait_event_type = 'Lock';",
    );
    assert_eq!(lingering.trim(), "0");
    // The other hosts go on at once, with exactly the two answered charges.
    let started = Instant::now();
    assert_eq!(status_u64(&f.hosts[1], &user, "failures"), 2);
    assert!(started.elapsed() < Duration::from_secs(5));
    f.hosts[0].daemon.restart();
    f.hosts[0]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
    assert_eq!(status_u64(&f.hosts[2], &user, "failures"), 0);
}

#[test]
fn an_export_of_the_file_store_imports_into_postgres_and_logs_in() {
    let old = Stack::start();
    let user = User::create();
    let e = old.ctl.enroll(&user);
    let dir = unique::temp_dir("export");
    let file = dir.path().join("accounts.twostep");
    let out = old
        .ctl
        .run(None, &["admin", "export", &file.to_string_lossy()], b"");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("exported 1 account"), "{out}");
    let exported = std::fs::read(&file).expect("read export");
    assert_no_secret(&e, "the export", &exported);

    let f = fleet_with(DaemonConfig::default());
    let dry = f.hosts[0].ctl.run(
        None,
        &[
            "admin",
            "import",
            "twostep",
            "--dry-run",
            &file.to_string_lossy(),
        ],
        b"",
    );
    assert!(dry.success(), "{dry}");
    assert!(dry.stdout.contains("would create 1 account"), "{dry}");
    assert_eq!(f.hosts[1].ctl.status(&user)["enrolled"], false);
    let real = f.hosts[0].ctl.run(
        None,
        &["admin", "import", "twostep", &file.to_string_lossy()],
        b"",
    );
    assert!(real.success(), "{real}");
    assert!(real.stdout.contains("created 1 account"), "{real}");
    // The same file again: nothing to change.
    let again = f.hosts[2].ctl.run(
        None,
        &[
            "admin",
            "import",
            "twostep",
            "--dry-run",
            &file.to_string_lossy(),
        ],
        b"",
    );
    assert!(again.stdout.contains("1 already the same"), "{again}");
    f.hosts[1]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
    // Once the record moved on (a replay mark), the old export is a conflict, left alone.
    let stale = f.hosts[2].ctl.run(
        None,
        &["admin", "import", "twostep", &file.to_string_lossy()],
        b"",
    );
    assert!(stale.stdout.contains("1 conflict(s)"), "{stale}");
    f.hosts[1]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_refused_with(strerror::AUTH_ERR);
    // Not root: refused.
    let denied = f.hosts[0].ctl.run(
        Some(user.creds()),
        &["admin", "export", "/nonexistent/x"],
        b"",
    );
    assert!(!denied.success());
}

#[test]
fn neither_the_database_dump_nor_a_state_directory_holds_a_secret_in_clear() {
    let f = fleet_with(DaemonConfig::default());
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    // A pending key too (an enrolment waiting for its confirming code).
    let waiting = User::create();
    let pending = flows::begin_json(&f.hosts[1].ctl, &waiting, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll --json refused:\n{out}"));
    f.hosts[2]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
    let dump = f.pg.dump();
    assert!(
        dump.contains("twostep_accounts"),
        "the dump holds the table"
    );
    assert!(dump.contains("\"key\""), "the dump holds sealed secrets");
    assert_no_secret(&e, "the database dump", dump.as_bytes());
    assert!(
        dump.contains("pending"),
        "the dump holds the pending enrolment"
    );
    assert_no_secret(&pending.key, "the database dump", dump.as_bytes());
    for host in &f.hosts {
        for (path, bytes) in files_under(host.daemon.state_dir()) {
            assert_no_secret(&e, &path, &bytes);
        }
    }
}

#[test]
fn the_file_store_seals_secrets_and_old_plaintext_records_log_in_and_get_sealed() {
    let s = Stack::start();
    let user = User::create();
    let e = s.ctl.enroll(&user);
    for (path, bytes) in files_under(s.daemon.state_dir()) {
        assert_no_secret(&e, &path, &bytes);
    }
    // A record written before sealing (the secret in clear), put in place by hand.
    let old_user = User::create();
    let secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    let mut record = twostep_e2e::records::with_key(old_user.name(), secret);
    record.uid = Some(old_user.uid());
    let path = s
        .daemon
        .state_dir()
        .join("users")
        .join(twostepd::core::store::file_name(old_user.uid()));
    std::fs::write(
        &path,
        twostepd::core::store::file_bytes(&record).expect("bytes"),
    )
    .expect("write record");
    unique::chmod(&path, 0o600);
    assert!(contains(&std::fs::read(&path).unwrap(), secret.as_bytes()));
    let old = Enrolled {
        user: old_user.name().to_owned(),
        secret: secret.to_owned(),
        uri: String::new(),
        algorithm: twostep_e2e::Algorithm::Sha1,
        digits: 6,
        period: 30,
        confirmed_step: otp::settled_step(30, Duration::from_secs(3)) - 1,
    };
    s.pam
        .login(old_user.name(), &old.code_after(1))
        .assert_success();
    assert_no_secret(
        &old,
        "the record after its next write",
        &std::fs::read(&path).unwrap(),
    );
}

#[test]
fn rotate_key_reseals_every_record_and_a_daemon_without_the_key_refuses_to_start() {
    let mut s = Stack::start_with(lockout(100), "");
    let users: Vec<User> = (0..2).map(|_| User::create()).collect();
    let keys: Vec<Enrolled> = users.iter().map(|u| s.ctl.enroll(u)).collect();
    let new_key = s.daemon.dir().join("new.key");
    write_store_key(&new_key, &[0x42; 32]);
    // Logins go on while the records are re-sealed: every one is evaluated (a plain wrong
    // code), none fails on the store.
    let (out, during) = std::thread::scope(|scope| {
        let logins = scope.spawn(|| {
            (0..20)
                .map(|i| s.pam.login(users[i % 2].name(), &keys[i % 2].wrong_code()))
                .collect::<Vec<_>>()
        });
        let out = s.ctl.run(
            None,
            &["admin", "rotate-key", &new_key.to_string_lossy()],
            b"",
        );
        (out, logins.join().expect("login thread"))
    });
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains("2 record(s) re-sealed"), "{out}");
    for run in &during {
        run.assert_refused_with(strerror::AUTH_ERR);
    }
    let new_id = twostepd::core::seal::StoreKey::from_bytes(&[0x42; 32])
        .id()
        .to_owned();
    let old_id = twostepd::core::seal::StoreKey::from_bytes(&twostep_e2e::daemon::HARNESS_KEY)
        .id()
        .to_owned();
    for (path, bytes) in files_under(&s.daemon.state_dir().join("users")) {
        assert!(contains(&bytes, new_id.as_bytes()), "{path} not re-sealed");
        assert!(
            !contains(&bytes, old_id.as_bytes()),
            "{path} still sealed with the old key"
        );
    }
    // Logins keep working on the running daemon.
    for (u, k) in users.iter().zip(&keys) {
        s.pam.login(u.name(), &k.code_after(1)).assert_success();
    }
    // Restarted on the old key only: refused, naming the key it lacks.
    s.daemon.stop();
    let mut refused = twostep_e2e::Daemon::spawn_nowait(
        s.bus.address(),
        DaemonConfig::default().set(
            "daemon",
            "state_dir",
            &serde_json::to_string(&s.daemon.state_dir().to_string_lossy()).unwrap(),
        ),
        None,
    );
    let status = refused.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|st| !st.success()), "{}", refused.log());
    assert!(refused.log().contains(&new_id), "{}", refused.log());
    // With the new key as the key file: starts, logins work.
    let text = std::fs::read_to_string(s.daemon.config_path()).unwrap();
    let shared = twostep_e2e::daemon::shared_store_key();
    std::fs::write(
        s.daemon.config_path(),
        text.replace(&*shared.to_string_lossy(), &new_key.to_string_lossy()),
    )
    .unwrap();
    s.daemon.restart();
    s.pam
        .login(users[0].name(), &keys[0].code_after(2))
        .assert_success();
}

#[test]
fn a_database_with_a_newer_schema_is_refused_at_start() {
    let pg = Postgres::start();
    let config = pg.store_config(DaemonConfig::default(), STATEMENT_MS);
    let s = Stack::start_with(config.clone(), "");
    drop(s);
    pg.psql_as_admin(
        "twostep",
        "UPDATE twostep.twostep_schema SET version = version + 1;",
    );
    let bus = twostep_e2e::Bus::start();
    let mut d = twostep_e2e::Daemon::spawn_nowait(bus.address(), config, None);
    let status = d.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|st| !st.success()), "{}", d.log());
    assert!(d.log().contains("newer than this twostepd"), "{}", d.log());
}

#[test]
fn tls_verify_full_checks_the_servers_certificate_and_require_only_encrypts() {
    let mut pg = Postgres::start();
    let ca = pg.enable_tls();
    let wrong_ca = pg.new_ca("other");
    // verify-full with the CA that signed the server's certificate: works, over TLS.
    let s = Stack::start_with(
        pg.store_config_tls(DaemonConfig::default(), STATEMENT_MS, "verify-full", &ca),
        "",
    );
    let user = User::create();
    let e = s.ctl.enroll(&user);
    s.pam.login(user.name(), &e.code_after(1)).assert_success();
    let (tls, all) = pg.daemon_sessions_tls();
    assert!(
        all > 0 && tls == all,
        "{tls} of {all} daemon sessions use TLS"
    );
    // verify-full with another CA: the server is not believed; logins fail closed, in time.
    let wrong = Stack::start_with(
        pg.store_config_tls(
            DaemonConfig::default(),
            STATEMENT_MS,
            "verify-full",
            &wrong_ca,
        ),
        "",
    );
    let started = Instant::now();
    let run = wrong.pam.login(user.name(), &e.code_after(2));
    assert!(!run.succeeded(), "{run:?}");
    assert!(started.elapsed() < Duration::from_secs(9));
    assert!(
        wrong.daemon.log().contains("store unavailable"),
        "{}",
        wrong.daemon.log()
    );
    // require: encrypts without checking who signed (the wrong CA does not matter).
    let require = Stack::start_with(
        pg.store_config_tls(DaemonConfig::default(), STATEMENT_MS, "require", &wrong_ca),
        "",
    );
    require
        .pam
        .login(user.name(), &e.code_after(2))
        .assert_success();
}

#[test]
fn a_daemon_started_while_the_database_is_down_starts_and_heals() {
    let mut pg = Postgres::start();
    let config = pg.store_config(DaemonConfig::default(), STATEMENT_MS);
    pg.stop();
    let s = Stack::start_with(config, "");
    let user = User::create();
    let status = s.ctl.try_status(&user).unwrap_err();
    assert!(status.contains("store unavailable"), "{status}");
    pg.restart();
    let e = s.ctl.enroll(&user);
    s.pam.login(user.name(), &e.code_after(1)).assert_success();
}

#[test]
fn check_config_checks_the_store_settings_without_contacting_the_database() {
    let dir = unique::temp_dir("check-store");
    let pw = dir.path().join("db.password");
    std::fs::write(&pw, "secret\n").unwrap();
    unique::chmod(&pw, 0o600);
    let base = DaemonConfig::default()
        .set("store", "backend", "\"postgres\"")
        .set("store", "tls", "\"require\"")
        .set(
            "store",
            "password_file",
            &serde_json::to_string(&pw.to_string_lossy()).unwrap(),
        );
    let check = |config: &DaemonConfig| {
        let path = dir.path().join("twostep.toml");
        std::fs::write(
            &path,
            config.render(&dir.path().join("state"), "unix:path=/nonexistent/bus.sock"),
        )
        .unwrap();
        let mut cmd = twostep_e2e::proc::command(None, twostep_e2e::artifacts::twostepd());
        cmd.arg("--check-config").arg(&path);
        twostep_e2e::proc::run(cmd, b"", Duration::from_secs(30))
    };
    // Port 1 on loopback: nothing listens; the check does not connect.
    let good = base.clone().set(
        "store",
        "url",
        "\"postgresql://twostep@127.0.0.1:1/twostep\"",
    );
    let out = check(&good);
    assert!(out.success(), "{out}");
    assert!(
        !out.stderr.contains("warning"),
        "require on loopback: {out}"
    );
    // Review M2: over the network, `require` encrypts without checking who answers (a
    // warning), and `disable` sends everything in clear (refused, as documented).
    let remote = |tls: &str| {
        base.clone().set("store", "tls", tls).set(
            "store",
            "url",
            "\"postgresql://twostep@192.0.2.7:5432/twostep\"",
        )
    };
    let out = check(&remote("\"require\""));
    assert!(
        out.success() && out.stderr.contains("warning") && out.stderr.contains("verify-full"),
        "{out}"
    );
    let out = check(&remote("\"disable\""));
    assert!(!out.success() && out.stderr.contains("loopback"), "{out}");
    let local_clear = base.clone().set("store", "tls", "\"disable\"").set(
        "store",
        "url",
        "\"host=localhost,::1 user=twostep\"",
    );
    let out = check(&local_clear);
    assert!(out.success() && !out.stderr.contains("warning"), "{out}");
    let with_password = base.clone().set(
        "store",
        "url",
        "\"postgresql://twostep:hunter2@127.0.0.1/twostep\"",
    );
    let out = check(&with_password);
    assert!(
        !out.success() && out.stderr.contains("password_file"),
        "{out}"
    );
    unique::chmod(&pw, 0o644);
    let out = check(&good);
    assert!(
        !out.success() && out.stderr.contains("unsafe database password file"),
        "{out}"
    );
    let unparsable = base.set("store", "url", "\"postgresql://[::1\"");
    unique::chmod(&pw, 0o600);
    let out = check(&unparsable);
    assert!(!out.success() && out.stderr.contains("url"), "{out}");
}

#[test]
fn a_key_rotation_on_a_fleet_keeps_every_host_logging_in() {
    let pg = Postgres::start();
    let keys = unique::temp_dir("keys");
    let key_file = keys.path().join("store.key");
    write_store_key(&key_file, &[0x11; 32]);
    let quoted = serde_json::to_string(&key_file.to_string_lossy()).unwrap();
    let config = pg
        .store_config(DaemonConfig::default(), STATEMENT_MS)
        .set("store", "key_file", &quoted);
    let hosts: Vec<Stack> = (0..2)
        .map(|_| Stack::start_with(config.clone(), ""))
        .collect();
    let user = User::create();
    let e = hosts[0].ctl.enroll(&user);
    // 1. The new key on every host as store.key.new (after they started).
    let new = keys.path().join("store.key.new");
    write_store_key(&new, &[0x22; 32]);
    // 2. Rotate on host A: every record sealed with the new key.
    let out = hosts[0]
        .ctl
        .run(None, &["admin", "rotate-key", &new.to_string_lossy()], b"");
    assert!(out.success(), "{out}");
    let new_id = twostepd::core::seal::StoreKey::from_bytes(&[0x22; 32])
        .id()
        .to_owned();
    let old_id = twostepd::core::seal::StoreKey::from_bytes(&[0x11; 32])
        .id()
        .to_owned();
    let ids = pg.psql_as_admin(
        "twostep",
        "SELECT DISTINCT unnest(key_ids) FROM twostep.twostep_accounts;",
    );
    assert_eq!(ids.trim(), new_id, "{ids}");
    // Host B opens the re-sealed record (it finds store.key.new by itself).
    hosts[1]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
    // (B still seals its own writes with its key file until step 3: docs/fleet.md.)
    assert!(pg.dump().contains(&old_id));
    // 3. Install the new key everywhere and reload: B seals with it too.
    std::fs::rename(&key_file, keys.path().join("store.key.old")).unwrap();
    std::fs::rename(&new, &key_file).unwrap();
    twostep_e2e::proc::signal(hosts[1].daemon.pid().unwrap(), "HUP");
    std::thread::sleep(Duration::from_millis(300));
    hosts[1]
        .pam
        .login(user.name(), &e.code_after(2))
        .assert_success();
    let ids = pg.psql_as_admin(
        "twostep",
        "SELECT DISTINCT unnest(key_ids) FROM twostep.twostep_accounts;",
    );
    assert_eq!(ids.trim(), new_id, "{ids}");
}

/// Review M2: someone who can write the database but holds no store key plants a key they
/// know, in clear, in an enrolled user's record. The database only ever holds sealed
/// secrets (every daemon of a fleet seals with the store key), so a record with a secret in
/// clear is tampering: that user's logins fail closed, with the planted key's codes too.
#[test]
fn a_secret_planted_in_clear_in_the_database_is_refused() {
    let f = fleet_with(DaemonConfig::default());
    let user = User::create();
    let e = f.hosts[0].ctl.enroll(&user);
    f.hosts[1]
        .pam
        .login(user.name(), &e.code_after(1))
        .assert_success();
    let planted = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let sql = format!(
        "UPDATE twostep.twostep_accounts SET record = jsonb_set(jsonb_set(record, \
         '{{authenticators,0,key,secret}}', '\"{planted}\"'), \
         '{{authenticators,0,last_step}}', 'null') WHERE uid = {};",
        user.uid()
    );
    f.pg.psql_as_admin("twostep", &sql);
    let code = otp::totp(planted, otp::Algorithm::Sha1, 6, 30, otp::now());
    for host in &f.hosts {
        host.pam
            .login(user.name(), &code)
            .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    }
    let log = f.hosts[2].daemon.log();
    assert!(log.contains("stored unsealed"), "{log}");
    assert!(!log.contains(planted), "{log}");
}
