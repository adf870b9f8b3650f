// SPDX-License-Identifier: MIT OR Apache-2.0
//! The store under bad conditions, through the real stack: a full disk and a corrupt
//! record. Nothing is lost, and what cannot be done fails closed with a clear error.
//! Needs root (mount).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use twostep_e2e::pam::strerror;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamService, Stack, User};

/// A small tmpfs, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        twostep_e2e::require_root();
        let dir = twostep_e2e::unique::temp_dir("tmpfs");
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "mount tmpfs on {}", dir.path().display());
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The record file of `user`'s account: records are keyed by uid (`uid-<uid>.rec`).
fn record_path(state: &Path, user: &User) -> PathBuf {
    state.join("users").join(format!("uid-{}.rec", user.uid()))
}

fn state_dir_config(state: &Path) -> DaemonConfig {
    DaemonConfig::default()
        .set(
            "daemon",
            "state_dir",
            &serde_json::to_string(&state.to_string_lossy()).unwrap_or_default(),
        )
        .set("recovery", "count", "2")
}

/// Fill the file system at `dir` until it refuses more.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let _ = Command::new("dd")
        .args(["if=/dev/zero", "bs=4k"])
        .arg(format!("of={}", filler.display()))
        .stderr(std::process::Stdio::null())
        .status();
    filler
}

#[test]
fn a_full_disk_keeps_enrolled_logins_durable_and_refuses_new_records_cleanly() {
    let fs = Tmpfs::mount("512k");
    let state = fs.path().join("state");
    let bus = Bus::start();
    let _daemon = Daemon::start_with(&bus, state_dir_config(&state));
    let pam = PamService::twostep(bus.address(), "");
    let ctl = Ctl::new(&bus);
    let (alice, bob) = (User::create(), User::create());
    let e = ctl.enroll(&alice);
    let filler = fill(fs.path());

    // Alice's record is rewritten in place (no new blocks): her logins go on, and what they
    // change is kept — the code is spent (a replay is refused, not charged: issue 20,
    // item 17), and a wrong code is counted as a failure.
    let code = e.code_after(1);
    pam.login(alice.name(), &code).assert_success();
    let replay = pam.login(alice.name(), &code);
    replay.assert_refused_with(strerror::AUTH_ERR);
    assert!(replay.conversation().contains("already used"), "{replay}");
    assert_eq!(ctl.status(&alice)["failures"], 0);
    pam.login(alice.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    assert_eq!(ctl.status(&alice)["failures"], 1);

    // Bob has no record yet and a new one does not fit: a clear error, nothing half-written,
    // and the daemon goes on answering.
    let out = ctl.run(Some(bob.creds()), &["enroll", "--json"], b"");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("No space left on device"), "{out}");
    let users = std::fs::read_dir(state.join("users"))
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert_eq!(users.len(), 1, "only alice's record: {users:?}");
    assert_eq!(ctl.status(&alice)["enrolled"], true);

    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("remove filler: {e}"));
    let eb = ctl.enroll(&bob);
    pam.login(bob.name(), &eb.code_after(1)).assert_success();
    pam.login(alice.name(), &e.code_after(2)).assert_success();
}

#[test]
fn a_corrupt_record_fails_closed_for_that_user_only() {
    let bus = Bus::start();
    let daemon = Daemon::start_with(&bus, DaemonConfig::default().set("recovery", "count", "2"));
    let pam = PamService::twostep(bus.address(), "nullok");
    let ctl = Ctl::new(&bus);
    let (alice, bob) = (User::create(), User::create());
    let ea = ctl.enroll(&alice);
    let eb = ctl.enroll(&bob);
    let path = record_path(daemon.state_dir(), &alice);
    std::fs::write(&path, b"{\"version\": 1, \"user\": tru").unwrap_or_else(|e| panic!("{e}"));

    // Even with nullok, an unreadable record is not "not enrolled".
    let run = pam.login(alice.name(), &ea.code_after(1));
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    let out = ctl.run(Some(alice.creds()), &["status"], b"");
    assert!(!out.status.success());
    assert!(out.stderr.contains("unreadable"), "{out:?}");
    pam.login(bob.name(), &eb.code_after(1)).assert_success();
    // The daemon never "repairs" it.
    assert_eq!(
        std::fs::read(&path).unwrap_or_default(),
        b"{\"version\": 1, \"user\": tru"
    );
    let log = daemon.log();
    assert!(
        log.contains(alice.name()) && log.contains("unreadable"),
        "{log}"
    );
}

/// Generation, payload length and offset of each slot of a record file.
fn slots(bytes: &[u8]) -> [(u64, usize, usize); 2] {
    let size = bytes.len() / 2;
    let slot = |i: usize| {
        let at = i * size;
        let word = |r: std::ops::Range<usize>| {
            bytes[at + r.start..at + r.end]
                .iter()
                .rev()
                .fold(0u64, |n, b| n << 8 | u64::from(*b))
        };
        (word(8..16), word(16..20) as usize, at)
    };
    [slot(0), slot(1)]
}

/// The newest slot of a record file: (generation, payload length, offset).
fn newest(bytes: &[u8]) -> (u64, usize, usize) {
    let [a, b] = slots(bytes);
    if b.0 > a.0 {
        b
    } else {
        a
    }
}

/// 24-byte slot header, as in the store.
const HEADER: usize = 24;

fn repair(s: &Stack, user: &User, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["user", "repair", user.name(), "--json"];
    all.extend_from_slice(args);
    let out = s.ctl.run(None, &all, b"");
    assert!(out.success(), "{out}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn lines(v: &serde_json::Value, key: &str) -> String {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key}: {v}"))
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn bit_rot_in_the_newest_slot_fails_closed_until_a_repair_that_keeps_the_failures() {
    let s = Stack::start_with(
        DaemonConfig::default()
            .set("lockout", "max_failures", "5")
            .set("lockout", "lockout_seconds", "300")
            .set("recovery", "count", "2"),
        "",
    );
    let (alice, bob) = (User::create(), User::create());
    let ea = s.ctl.enroll(&alice);
    let eb = s.ctl.enroll(&bob);
    for _ in 0..4 {
        s.pam
            .login(alice.name(), &ea.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    assert_eq!(s.ctl.status(&alice)["failures"], 4);

    // One bit flips in the newest slot (which holds the 4th failure).
    let path = record_path(s.daemon.state_dir(), &alice);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    let (generation, _, at) = newest(&bytes);
    bytes[at + HEADER + 11] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));

    // Not the older slot's 3 failures: alice fails closed, whatever she types.
    s.pam
        .login(alice.name(), &ea.wrong_code())
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    s.pam
        .login(alice.name(), &ea.code_after(1))
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    let out = s.ctl.run(Some(alice.creds()), &["status"], b"");
    assert!(!out.success() && out.stderr.contains("unreadable"), "{out}");
    assert_eq!(
        std::fs::read(&path).unwrap_or_default(),
        bytes,
        "written to"
    );
    s.pam.login(bob.name(), &eb.code_after(1)).assert_success();
    let log = s.daemon.log();
    assert!(
        log.lines().any(|l| l.contains(alice.name())
            && l.contains(&path.display().to_string())
            && l.contains("checksum mismatch")
            && l.contains("twostepctl user repair")),
        "{log}"
    );

    // Only an admin may repair; a look writes nothing.
    let out = s.ctl.run(
        Some(bob.creds()),
        &["user", "repair", alice.name(), "--yes"],
        b"",
    );
    let said = out.stderr.to_lowercase();
    assert!(
        !out.success()
            && ["permission", "may not", "not allowed", "denied"]
                .iter()
                .any(|w| said.contains(w)),
        "{out}"
    );
    let seen = repair(&s, &alice, &[]);
    assert_eq!(seen["written"], false, "{seen}");
    let slots = lines(&seen, "slots");
    assert!(slots.contains("unreadable (checksum mismatch)"), "{slots}");
    assert!(
        slots.contains(&format!(
            "generation {}, readable: authenticator active, 3 failure(s)",
            generation - 1
        )),
        "{slots}"
    );
    assert!(
        lines(&seen, "may_be_lost").contains(&format!("generation {generation}")),
        "{seen}"
    );
    assert!(
        lines(&seen, "restored").contains("failures 3 → 4"),
        "{seen}"
    );
    assert_eq!(std::fs::read(&path).unwrap_or_default(), bytes);

    // Confirmed: the failure count is back at the acknowledged 4, never 3.
    let done = repair(&s, &alice, &["--yes"]);
    assert_eq!(done["written"], true, "{done}");
    let kept = PathBuf::from(done["kept"].as_str().unwrap_or_default());
    assert_eq!(std::fs::read(&kept).unwrap_or_default(), bytes);
    let st = s.ctl.status(&alice);
    assert_eq!(st["failures"], 4, "{st}");
    assert_eq!(st["recovery_codes_left"], 0, "{st}");
    assert!(s.daemon.log().contains("action=repair outcome=done"));

    // The 5th wrong code locks, and then not even the right code gets in.
    s.pam
        .login(alice.name(), &ea.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(alice.name(), &ea.code_after(2))
        .assert_refused_with(strerror::MAXTRIES);
}

#[test]
fn a_torn_write_of_the_newest_slot_fails_closed_and_a_repair_marks_codes_used() {
    let s = Stack::start_with(DaemonConfig::default().set("recovery", "count", "2"), "");
    let alice = User::create();
    let ea = s.ctl.enroll(&alice);
    s.pam
        .login(alice.name(), &ea.code_after(1))
        .assert_success();
    let path = record_path(s.daemon.state_dir(), &alice);
    let mut bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{e}"));
    // The second half of what the last save wrote never reached the disk.
    let (_, len, at) = newest(&bytes);
    let written = HEADER + len;
    bytes[at + written / 2..at + written].fill(0);
    std::fs::write(&path, &bytes).unwrap_or_else(|e| panic!("{e}"));

    // The documented rule: a torn slot is not told apart from rot; the user fails closed.
    s.pam
        .login(alice.name(), &ea.code_after(2))
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    assert!(s.daemon.log().contains("checksum mismatch"));

    let done = repair(&s, &alice, &["--yes"]);
    assert_eq!(done["written"], true, "{done}");
    assert!(lines(&done, "restored").contains("replay mark"), "{done}");
    let st = s.ctl.status(&alice);
    assert_eq!(
        (st["enrolled"].clone(), st["failures"].clone()),
        (true.into(), 1.into()),
        "{st}"
    );
    // A code that the lost write may have accepted is not accepted again.
    let run = s.pam.login(alice.name(), &ea.code_after(1));
    run.assert_refused_with(strerror::AUTH_ERR);
    // And a second repair finds nothing to do.
    let again = repair(&s, &alice, &[]);
    assert_eq!(again["damage"], "", "{again}");
}
