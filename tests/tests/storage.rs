// SPDX-License-Identifier: MIT OR Apache-2.0
//! The store under bad conditions, through the real stack: a full disk and a corrupt
//! record. Nothing is lost, and what cannot be done fails closed with a clear error.
//! Needs root (mount).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use twostep_e2e::pam::strerror;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamService, User};

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
    // change is kept — the code is spent, and the replay is counted as a failure.
    let code = e.code_after(1);
    pam.login(alice.name(), &code).assert_success();
    let replay = pam.login(alice.name(), &code);
    replay.assert_refused_with(strerror::AUTH_ERR);
    assert!(replay.conversation().contains("already used"), "{replay}");
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
