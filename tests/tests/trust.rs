// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the daemon trusts on disk (issue 19, fault 7), through the real stack: a record
//! that is a link, or has an unsafe mode or owner, fails closed for that user only and is
//! neither read nor written; a state directory or config file with an unsafe owner or mode
//! stops the daemon (and `--check-config`, and a reload) with a message naming the path,
//! what it is and what is expected. Needs root.
#![forbid(unsafe_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use twostep_e2e::pam::strerror;
use twostep_e2e::{artifacts, proc, unique, Bus, Daemon, DaemonConfig, Stack, User};

fn record_path(state: &Path, user: &User) -> PathBuf {
    state.join("users").join(format!("uid-{}.rec", user.uid()))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn chown(path: &Path, uid: u32) {
    std::os::unix::fs::chown(path, Some(uid), None)
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

#[test]
fn a_record_replaced_by_a_symlink_fails_closed_and_its_target_is_untouched() {
    let s = Stack::start_with(
        DaemonConfig::default().set("recovery", "count", "2"),
        "nullok",
    );
    let (alice, bob) = (User::create(), User::create());
    let ea = s.ctl.enroll(&alice);
    let eb = s.ctl.enroll(&bob);
    let path = record_path(s.daemon.state_dir(), &alice);
    // A valid copy of alice's own record outside the state directory: were it followed, a
    // login would succeed and a failure would be written into it.
    let outside = s.daemon.dir().join("outside.rec");
    std::fs::copy(&path, &outside).unwrap_or_else(|e| panic!("{e}"));
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("{e}"));
    std::os::unix::fs::symlink(&outside, &path).unwrap_or_else(|e| panic!("{e}"));
    let before = read(&outside);

    s.pam
        .login(alice.name(), &ea.wrong_code())
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    s.pam
        .login(alice.name(), &ea.code_after(1))
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    assert_eq!(read(&outside), before, "the link's target was written");
    assert!(std::fs::symlink_metadata(&path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false));
    s.pam.login(bob.name(), &eb.code_after(1)).assert_success();

    let log = s.daemon.log();
    let line = log
        .lines()
        .find(|l| l.contains(&path.display().to_string()) && l.contains("symbolic link"))
        .unwrap_or_else(|| panic!("no log line names {} as a link:\n{log}", path.display()));
    assert!(line.contains(&format!("uid {}", alice.uid())), "{line}");
}

#[test]
fn a_record_with_an_unsafe_mode_or_owner_fails_closed_for_that_user_only() {
    let s = Stack::start_with(
        DaemonConfig::default().set("recovery", "count", "2"),
        "nullok",
    );
    let (alice, bob) = (User::create(), User::create());
    let ea = s.ctl.enroll(&alice);
    let eb = s.ctl.enroll(&bob);
    let path = record_path(s.daemon.state_dir(), &alice);
    let good = read(&path);
    for (mode, uid, said) in [
        (0o666, 0, "mode 0666".to_owned()),
        (0o644, 0, "mode 0644".to_owned()),
        (0o600, alice.uid(), format!("owned by uid {}", alice.uid())),
    ] {
        chown(&path, uid);
        chmod(&path, mode);
        let run = s.pam.login(alice.name(), &ea.code_after(1));
        run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
        assert_eq!(read(&path), good, "a refused record was written");
        let log = s.daemon.log();
        assert!(
            log.lines().any(|l| l.contains(&path.display().to_string())
                && l.contains(&said)
                && l.contains("expected")),
            "no log line names {} with {said}:\n{log}",
            path.display()
        );
        assert_eq!(s.ctl.status(&bob)["enrolled"], true);
        // Put right before the next case.
        chown(&path, 0);
        chmod(&path, 0o600);
    }
    // The refusal is per file, not sticky: put right, the same record serves again.
    s.pam
        .login(alice.name(), &ea.code_after(1))
        .assert_success();
    s.pam.login(bob.name(), &eb.code_after(1)).assert_success();
}

/// A config for a daemon whose state directory is `state`.
fn with_state_dir(state: &Path) -> DaemonConfig {
    DaemonConfig::default().set(
        "daemon",
        "state_dir",
        &serde_json::to_string(&state.to_string_lossy()).unwrap_or_default(),
    )
}

/// `twostepd --check-config FILE`.
fn check_config(path: &Path) -> proc::Output {
    let mut cmd = proc::command(None, artifacts::twostepd());
    cmd.arg("--check-config").arg(path);
    proc::run(cmd, b"", Duration::from_secs(30))
}

#[test]
fn an_unsafe_state_directory_stops_the_daemon_with_path_and_expectation() {
    let bus = Bus::start();
    let owner = User::create();
    let cases: [(u32, Option<u32>, &str); 3] = [
        (0o755, None, "mode 0755"),
        (0o711, None, "mode 0711"),
        (0o700, Some(owner.uid()), "owned by uid"),
    ];
    for (mode, uid, said) in cases {
        let dir = unique::temp_dir("state-parent");
        let state = dir.path().join("state");
        std::fs::create_dir(&state).unwrap_or_else(|e| panic!("{e}"));
        if let Some(uid) = uid {
            chown(&state, uid);
        }
        chmod(&state, mode);
        let mut d = Daemon::spawn_nowait(bus.address(), with_state_dir(&state), None);
        let status = d.wait_exit(Duration::from_secs(20));
        let log = d.log();
        assert!(
            status.is_some_and(|s| !s.success()),
            "twostepd served on {} ({mode:04o}):\n{log}",
            state.display()
        );
        for needle in [&state.display().to_string(), said, "expected", "mode 0700"] {
            assert!(log.contains(needle), "{needle:?} not in:\n{log}");
        }
        // Never silently chmod-ed.
        let now = std::fs::metadata(&state).map(|m| m.permissions().mode() & 0o7777);
        assert_eq!(now.ok(), Some(mode));
        // --check-config says so too.
        let out = check_config(d.config_path());
        assert!(!out.success(), "{out}");
        assert!(
            out.stderr.contains(&state.display().to_string()) && out.stderr.contains(said),
            "{out}"
        );
    }
}

#[test]
fn an_unsafe_config_file_stops_the_daemon_and_check_config_and_reload_say_why() {
    let bus = Bus::start();
    let mut d = Daemon::start_with(&bus, DaemonConfig::default());
    let config = d.config_path().to_owned();
    let harness_dir = d.dir().to_owned();
    let someone = User::create();
    assert!(check_config(&config).success());

    // A reload of a file that became writable by others is refused; the daemon goes on.
    chmod(&config, 0o666);
    let out = twostep_e2e::Ctl::new(&bus).run(None, &["reload"], b"");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("unsafe configuration file"), "{out}");
    chmod(&config, 0o644);
    d.stop();

    type Setup = Box<dyn Fn()>;
    let (c1, c2, c3, c4) = (
        config.clone(),
        config.clone(),
        config.clone(),
        harness_dir.clone(),
    );
    let uid = someone.uid();
    let cases: Vec<(&str, Setup, String)> = vec![
        (
            "group-writable",
            Box::new(move || chmod(&c1, 0o664)),
            "mode 0664".into(),
        ),
        (
            "other-writable",
            Box::new(move || chmod(&c2, 0o646)),
            "mode 0646".into(),
        ),
        (
            "owned by a user",
            Box::new(move || chown(&c3, uid)),
            format!("owned by uid {uid}"),
        ),
        (
            "in a group-writable directory",
            Box::new(move || chmod(&c4, 0o775)),
            "mode 0775".into(),
        ),
    ];
    for (what, setup, said) in cases {
        setup();
        let out = check_config(&config);
        assert!(!out.success(), "{what}: --check-config passed:\n{out}");
        assert!(
            out.stderr.contains(&said) && out.stderr.contains("expected"),
            "{what}:\n{out}"
        );

        let mut cmd = proc::command(None, artifacts::twostepd());
        cmd.arg("--config").arg(&config);
        let out = proc::run(cmd, b"", Duration::from_secs(20));
        assert!(
            !out.timed_out,
            "{what}: twostepd started and served:\n{out}"
        );
        assert!(!out.success(), "{what}:\n{out}");
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            all.contains(&config.display().to_string())
                || all.contains(&harness_dir.display().to_string()),
            "{what}: the path is not named:\n{out}"
        );
        assert!(
            all.contains(&said) && all.contains("expected"),
            "{what}:\n{out}"
        );

        // Put right.
        chown(&config, 0);
        chmod(&config, 0o644);
        chmod(&harness_dir, 0o755);
    }
    assert!(check_config(&config).success());
    d.restart();
}
