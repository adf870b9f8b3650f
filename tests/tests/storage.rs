// SPDX-License-Identifier: MIT OR Apache-2.0
//! The store under bad conditions, through the real stack: a full disk and a corrupt
//! record. Each fails closed with a clear error and loses nothing. Needs root (mount).
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

fn record_path(state: &Path, user: &str) -> PathBuf {
    let hex: String = user.bytes().map(|b| format!("{b:02x}")).collect();
    state.join("users").join(format!("{hex}.json"))
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
fn a_full_disk_refuses_cleanly_and_spends_nothing() {
    let fs = Tmpfs::mount("512k");
    let state = fs.path().join("state");
    let bus = Bus::start();
    let _daemon = Daemon::start_with(&bus, state_dir_config(&state));
    let pam = PamService::twostep(bus.address(), "");
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let before = std::fs::read(record_path(&state, user.name())).unwrap_or_default();

    let filler = fill(fs.path());
    let code = e.code_after(1);
    let run = pam.login(user.name(), &code);
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    assert!(
        run.conversation().contains("cannot check this account now"),
        "a clear message:\n{run}"
    );
    // Nothing lost or half-written, and the daemon still answers.
    assert_eq!(
        std::fs::read(record_path(&state, user.name())).unwrap_or_default(),
        before
    );
    assert_eq!(ctl.status(&user)["enrolled"], true);

    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("remove filler: {e}"));
    // The refused attempt spent nothing: the same code works now.
    pam.login(user.name(), &code).assert_success();
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
    let path = record_path(daemon.state_dir(), alice.name());
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
