// SPDX-License-Identifier: MIT OR Apache-2.0
//! Crash safety (issue 17, item 3), through the real bus and the built daemon:
//! - a bounded loop kill -9s `twostepd` at random moments while logins, recovery-code
//!   logins, wrong codes up to a lock, unlocks, resets and enrolments run concurrently,
//!   restarting it each time; afterwards every record decodes, no used time step or spent
//!   recovery code that the daemon acknowledged came back, no acknowledged lock vanished,
//!   and no enrolment is half there (a record with a key is on the enrolment list; a key
//!   never confirmed does not make its user enrolled);
//! - a full state filesystem (a small tmpfs) and a read-only remount of it: what needs a
//!   new file fails closed with a clear error, nothing is lost, and everything works again
//!   once space is freed or the filesystem is writable.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twostep_e2e::client::Client;
use twostep_e2e::{flows, otp, unique, Bus, Ctl, Daemon, DaemonConfig, User};
use twostepd::core::record::Record;
use twostepd::core::store::file;

/// At most this many kills, and no kill after this long: the loop takes about a minute
/// on 2 cores.
const KILLS: usize = 300;
const LOOP_TIME: Duration = Duration::from_secs(75);
const MAX_FAILURES: u32 = 10;

/// A small xorshift generator seeded from /dev/urandom (the seed is printed).
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = u64::from_str_radix(&unique::random_hex(8), 16).unwrap() | 1;
        eprintln!("crash loop seed {seed:#x}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn config() -> DaemonConfig {
    DaemonConfig::new()
        .set("recovery", "count", "40")
        .set("lockout", "max_failures", &MAX_FAILURES.to_string())
        .set("totp", "period", "15")
}

/// Opens the harness daemons' sealed secrets (their shared store key).
fn sealer() -> twostepd::core::seal::Sealer {
    twostepd::core::seal::Sealer::with_key(twostepd::core::seal::StoreKey::from_bytes(
        &twostep_e2e::daemon::HARNESS_KEY,
    ))
}

/// The record file of `user` in `state`, decoded (panics with the reason).
fn record(state: &Path, user: &User) -> Option<Record> {
    let path = state.join("users").join(file::file_name(user.uid()));
    let bytes = std::fs::read(&path).ok()?;
    Some(
        file::decode_with(&bytes, user.uid(), &sealer())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
}

/// Every record file decodes; the enrolment list names every record with a key, and every
/// listed uid has a record.
fn check_state(state: &Path) -> BTreeSet<u32> {
    let listed: BTreeSet<u32> = std::fs::read_to_string(state.join(file::ENROLLED_FILE))
        .expect("enrolment list")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.parse().expect("uid on the enrolment list"))
        .collect();
    let mut files = BTreeSet::new();
    for entry in std::fs::read_dir(state.join("users")).expect("users dir") {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(uid) = name
            .strip_prefix(file::UID_PREFIX)
            .and_then(|n| n.strip_suffix(file::SUFFIX))
        else {
            panic!("a stray file in users/: {name} (a temporary file left half-written?)");
        };
        let uid: u32 = uid.parse().unwrap();
        let rec = file::decode_with(&std::fs::read(&path).unwrap(), uid, &sealer())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        if !rec.authenticators.is_empty() {
            assert!(
                listed.contains(&uid),
                "{name} has a key but is not on the list"
            );
        }
        files.insert(uid);
    }
    for uid in &listed {
        assert!(
            files.contains(uid),
            "uid {uid} is listed but its record vanished"
        );
    }
    files
}

/// What the daemon acknowledged while it was being killed.
#[derive(Default)]
struct Acked {
    /// The highest time step accepted for the TOTP user, and how many were.
    step: u64,
    logins: u32,
    /// Recovery codes the daemon answered `success` for.
    spent: Vec<String>,
    /// Whether a wrong code was answered `locked`, and how many were answered `denied`.
    locked: bool,
    denied: u32,
}

/// One login conversation as root: begin, answer; the kind of the final step.
fn login(client: &Client, user: &User, answer: &[u8]) -> Option<String> {
    let (session, kind) = client.begin(user.name()).ok()?;
    if !kind.starts_with("prompt") {
        return Some(kind);
    }
    client.answer(&session, answer).ok()
}

#[test]
fn kill_9_at_random_moments_loses_nothing_acknowledged() {
    let bus = Bus::start();
    let mut daemon = Daemon::start_with(&bus, config());
    let ctl = Ctl::new(&bus);
    let (totp, rec, lockee, cycler) = (
        Arc::new(User::create()),
        Arc::new(User::create()),
        Arc::new(User::create()),
        Arc::new(User::create()),
    );
    let totp_key = ctl.enroll(&totp);
    let (_, codes) = flows::enroll_json(&ctl, &rec);
    let _ = ctl.enroll(&lockee);
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let address = bus.address().to_owned();
    let mut workers = Vec::new();

    // Logins with a code of each step the window allows, in turn: 15 s steps, so a few
    // accepted steps a minute; a step answered only by a killed daemon is skipped.
    let (a, s, ad, t) = (address.clone(), stop.clone(), acked.clone(), totp.clone());
    workers.push(std::thread::spawn(move || {
        let client = Client::connect(&a);
        let mut next = 0;
        while !s.load(Ordering::Relaxed) {
            let now = otp::now() / totp_key.period;
            let step = next.max(now - 1);
            if step > now + 1 {
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
            match login(&client, &t, totp_key.code_at_step(step).as_bytes()).as_deref() {
                Some("success") => {
                    let mut ad = ad.lock().unwrap();
                    ad.step = ad.step.max(step);
                    ad.logins += 1;
                    next = step + 1;
                }
                Some(_) => next = step + 1,
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }));
    // Recovery codes, each tried until the daemon answers it.
    let (a, s, ad, r) = (address.clone(), stop.clone(), acked.clone(), rec.clone());
    workers.push(std::thread::spawn(move || {
        let client = Client::connect(&a);
        let mut codes = codes.into_iter();
        let mut code = codes.next();
        while let (false, Some(c)) = (s.load(Ordering::Relaxed), code.clone()) {
            match login(&client, &r, c.as_bytes()).as_deref() {
                Some("success") => {
                    ad.lock().unwrap().spent.push(c);
                    code = codes.next();
                    std::thread::sleep(Duration::from_millis(500));
                }
                Some(_) => code = codes.next(), // spent by an unacknowledged try
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }));
    // Wrong codes up to a lock.
    let (a, s, ad, l) = (address.clone(), stop.clone(), acked.clone(), lockee.clone());
    workers.push(std::thread::spawn(move || {
        let client = Client::connect(&a);
        while !s.load(Ordering::Relaxed) {
            match login(&client, &l, b"000000").as_deref() {
                Some("denied") => ad.lock().unwrap().denied += 1,
                Some("locked") => ad.lock().unwrap().locked = true,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }));
    // Unlock, reset and enrol again, as admin and user.
    let (a, s) = (address.clone(), stop.clone());
    let cycler_name = cycler.name().to_owned();
    let cycler_ctl = Ctl::for_address(&a);
    let c2 = Arc::clone(&cycler);
    workers.push(std::thread::spawn(move || {
        let client = Client::connect(&a);
        while !s.load(Ordering::Relaxed) {
            let _ = client.admin_user_call("Unlock", &cycler_name);
            let _ = client.admin_user_call("ResetUser", &cycler_name);
            let _ = cycler_ctl.try_enroll(&c2, -1);
        }
    }));

    let mut rng = Rng::new();
    let started = Instant::now();
    let mut kills = 0;
    while kills < KILLS && started.elapsed() < LOOP_TIME {
        std::thread::sleep(Duration::from_millis(5 + rng.below(150)));
        daemon.kill9();
        kills += 1;
        daemon.restart();
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker");
    }
    eprintln!("{kills} kills in {:?}", started.elapsed());
    assert!(kills >= 100, "only {kills} kills in {LOOP_TIME:?}");
    daemon.kill9();

    let state = daemon.state_dir().to_owned();
    check_state(&state);
    let acked = acked.lock().unwrap();
    let r = record(&state, &totp).expect("the TOTP user's record");
    let mark = r
        .authenticators
        .iter()
        .filter_map(|a| a.last_step)
        .max()
        .unwrap_or(0);
    assert!(
        mark >= acked.step,
        "replay mark {mark} below the acknowledged step {}",
        acked.step
    );
    let l = record(&state, &lockee).expect("the locked user's record");
    assert!(
        l.failures >= acked.denied.min(MAX_FAILURES),
        "{} < {}",
        l.failures,
        acked.denied
    );
    if acked.locked {
        assert!(
            l.failures >= MAX_FAILURES,
            "an acknowledged lock vanished: {}",
            l.failures
        );
    }

    daemon.restart();
    let client = Client::connect(bus.address());
    for code in &acked.spent {
        let again = login(&client, &rec, code.as_bytes());
        assert_ne!(
            again.as_deref(),
            Some("success"),
            "a spent recovery code came back"
        );
    }
    eprintln!(
        "acknowledged: {} logins up to step {}, {} recovery codes spent, {} denied, locked {}",
        acked.logins,
        acked.step,
        acked.spent.len(),
        acked.denied,
        acked.locked
    );
    check_cycler(&client, &state, &cycler);
}

/// The reset-and-enrol user: a record with no confirmed key leaves it not enrolled (a
/// pending key is not an enrolment), one with a key is enrolled.
fn check_cycler(client: &Client, state: &Path, cycler: &User) {
    let r = record(state, cycler);
    let has_key = r.as_ref().is_some_and(|r| !r.authenticators.is_empty());
    let (_, kind) = client
        .begin(cycler.name())
        .expect("begin for the cycled user");
    if has_key {
        assert!(kind.starts_with("prompt"), "enrolled, yet {kind}");
    } else {
        assert_eq!(
            kind, "not-enrolled",
            "a key never confirmed counts as an enrolment"
        );
    }
}

/// A tmpfs mounted over a daemon's state directory (contents copied in), unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn over(state: &Path, size: &str) -> SmallFs {
        let keep = unique::temp_dir("state-copy");
        let mut cmd = twostep_e2e::proc::command(None, "sh");
        cmd.args([
            "-ec",
            "cp -a \"$1\"/. \"$2\"/ && mount -t tmpfs -o size=\"$3\",mode=0700 \
             twostep-e2e-state \"$1\" && cp -a \"$2\"/. \"$1\"/",
            "sh",
        ])
        .arg(state)
        .arg(keep.path())
        .arg(size);
        twostep_e2e::proc::run(cmd, b"", Duration::from_secs(20)).assert_success();
        SmallFs(state.to_owned())
    }

    fn sh(&self, script: &str) -> twostep_e2e::Output {
        let mut cmd = twostep_e2e::proc::command(None, "sh");
        cmd.args(["-ec", script, "sh"]).arg(&self.0);
        twostep_e2e::proc::run(cmd, b"", Duration::from_secs(20))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = self.sh("umount -l \"$1\"");
    }
}

/// Begin and answer as root; the final kind, or the daemon's error.
fn try_login(client: &Client, user: &User, answer: &[u8]) -> Result<String, String> {
    let (session, kind) = client.begin(user.name()).map_err(|e| e.to_string())?;
    if !kind.starts_with("prompt") {
        return Ok(kind);
    }
    client.answer(&session, answer).map_err(|e| e.to_string())
}

#[test]
fn a_full_or_read_only_state_filesystem_fails_closed_and_recovers() {
    let bus = Bus::start();
    let mut daemon = Daemon::start_with(&bus, DaemonConfig::new().set("recovery", "count", "2"));
    let ctl = Ctl::new(&bus);
    let (alice, bob) = (User::create(), User::create());
    let key = ctl.enroll(&alice);
    daemon.stop();
    let state = daemon.state_dir().to_owned();
    // Declared after the daemon: unmounted before the daemon's dir is removed.
    let fs = SmallFs::over(&state, "1m");
    daemon.restart();
    let client = Client::connect(bus.address());
    let step = otp::now() / 30;

    // Full: a new record cannot be written; the enrolment fails with a clear error and
    // nothing else changes.
    fs.sh("dd if=/dev/zero of=\"$1\"/filler bs=64k 2>/dev/null || true")
        .assert_success();
    let before = record(&state, &alice).expect("alice's record");
    let refused = ctl
        .try_enroll(&bob, -1)
        .expect_err("an enrolment on a full disk");
    assert!(refused.contains("No space left on device"), "{refused}");
    assert!(record(&state, &bob).is_none_or(|r| r.authenticators.is_empty()));
    // An enrolled user's record is written in place (same blocks): logins go on, and a
    // wrong code is still charged durably (see store/file.rs).
    assert_eq!(
        try_login(&client, &alice, b"000000").as_deref(),
        Ok("denied")
    );
    assert_eq!(
        record(&state, &alice).unwrap().failures,
        before.failures + 1
    );
    let code = key.code_at_step(step);
    assert_eq!(
        try_login(&client, &alice, code.as_bytes()).as_deref(),
        Ok("success")
    );
    check_state(&state);
    // Space freed: the enrolment works.
    fs.sh("rm \"$1\"/filler").assert_success();
    let _ = ctl
        .try_enroll(&bob, -1)
        .expect("an enrolment once space is free");

    // Read-only: a login that must write (the replay mark) fails closed with a clear
    // error, and the record is untouched.
    let before = std::fs::read(state.join("users").join(file::file_name(alice.uid()))).unwrap();
    fs.sh("mount -o remount,ro \"$1\"").assert_success();
    let code = key.code_at_step(step + 1);
    let refused =
        try_login(&client, &alice, code.as_bytes()).expect_err("a login on a read-only disk");
    assert!(refused.contains("Read-only file system"), "{refused}");
    let after = std::fs::read(state.join("users").join(file::file_name(alice.uid()))).unwrap();
    assert!(
        before == after,
        "the record changed on a read-only filesystem"
    );
    fs.sh("mount -o remount,rw \"$1\"").assert_success();
    assert_eq!(
        try_login(&client, &alice, code.as_bytes()).as_deref(),
        Ok("success")
    );
    check_state(&state);
    drop(client);
    daemon.stop();
}
