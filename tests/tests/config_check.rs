// SPDX-License-Identifier: MIT OR Apache-2.0
//! Settings that protect nobody are refused everywhere the configuration is read:
//! `twostepd --check-config`, start-up, `twostepctl reload` and SIGHUP. A misspelt required
//! group must never silently switch 2FA off for the real group.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::group::Group;
use twostep_e2e::{artifacts, proc, unique};
use twostep_e2e::{Bus, Daemon, DaemonConfig, PamService, Stack, User};

/// A group name that no NSS source has.
fn no_such_group() -> String {
    format!("nogrp_{}", unique::token().replace('-', "_"))
}

fn groups(names: &[&str]) -> DaemonConfig {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    DaemonConfig::default()
        .set("policy", "require", "\"groups\"")
        .set("policy", "groups", &format!("[{}]", quoted.join(", ")))
}

/// `twostepd --check-config` on `text`.
fn check(text: &str) -> proc::Output {
    let dir = unique::temp_dir("check");
    let path = dir.path().join("twostep.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = proc::command(None, artifacts::twostepd());
    cmd.arg("--check-config").arg(&path);
    proc::run(cmd, b"", Duration::from_secs(30))
}

fn render(config: &DaemonConfig) -> String {
    let state = unique::temp_dir("state");
    config.render(state.path(), "unix:path=/nonexistent/bus.sock")
}

#[test]
fn check_config_refuses_settings_that_protect_nobody() {
    let missing = no_such_group();
    let cases: Vec<(String, &str, String)> = vec![
        (
            "a required group that does not exist".into(),
            "does not exist",
            render(&groups(&[&missing])),
        ),
        (
            "require = groups without groups".into(),
            "groups is empty",
            render(&DaemonConfig::default().set("policy", "require", "\"groups\"")),
        ),
        (
            "groups with require = none".into(),
            "nobody is required",
            render(&DaemonConfig::default().set("policy", "groups", "[\"root\"]")),
        ),
        (
            "a group both required and exempt".into(),
            "in both groups and exempt_groups",
            render(&groups(&["root"]).set("policy", "exempt_groups", "[\"root\"]")),
        ),
        (
            "a relative state_dir".into(),
            "not an absolute path",
            "version = 1\n[daemon]\nstate_dir = \"var/lib/twostep\"\n".into(),
        ),
        (
            "window = 10 (±5 minutes of codes)".into(),
            "out of range 0..=2",
            render(&DaemonConfig::default().set("totp", "window", "10")),
        ),
    ];
    for (what, needle, text) in cases {
        let out = check(&text);
        assert_eq!(out.status.code(), Some(1), "{what} must be refused:\n{out}");
        assert!(
            out.stderr.contains(needle),
            "{what}: expected {needle:?}:\n{out}"
        );
        assert!(!out.stdout.contains(": ok"), "{what}:\n{out}");
    }

    // Control: an existing group is fine; unknown exempt/admin groups only widen the
    // protection, so they are warnings and the file is usable.
    let out = check(&render(
        &groups(&["root"])
            .set("policy", "exempt_groups", &format!("[\"{missing}\"]"))
            .set("policy", "admin_group", &format!("\"{missing}\"")),
    ));
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(": ok"), "{out}");
    assert!(
        out.stderr.contains("warning:") && out.stderr.contains("exempts nobody"),
        "{out}"
    );
    assert!(out.stderr.contains("only root"), "{out}");
}

#[test]
fn the_daemon_refuses_to_start_on_a_misspelt_required_group() {
    let bus = Bus::start();
    let missing = no_such_group();
    let mut d = Daemon::spawn_nowait(bus.address(), groups(&[&missing]), None);
    let status = d
        .wait_exit(Duration::from_secs(10))
        .expect("twostepd should exit on its own");
    assert!(!status.success(), "{status}\n{}", d.log());
    assert!(
        d.log()
            .contains(&format!("group \"{missing}\" does not exist")),
        "the reason must name the group:\n{}",
        d.log()
    );
}

#[test]
fn a_warning_is_logged_at_start() {
    let bus = Bus::start();
    let missing = no_such_group();
    let config =
        DaemonConfig::default().set("policy", "exempt_groups", &format!("[\"{missing}\"]"));
    let d = Daemon::start_with(&bus, config);
    let logged = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        d.log().contains("warn: ") && d.log().contains("exempts nobody")
    });
    assert!(logged, "{}", d.log());
}

/// A reload (twostepctl and SIGHUP) onto a misspelt required group is refused; the real
/// group's members keep being asked for the code.
#[test]
fn reload_onto_a_misspelt_required_group_keeps_the_old_policy() {
    let staff = Group::create();
    let user = User::create();
    staff.add(&user);
    let good = groups(&[staff.name()]);
    let s = Stack::start_with(good, "nullok");
    assert_eq!(s.ctl.status(&user)["required"], true);

    let typo = format!("{}x", staff.name());
    let path = s.daemon.config_path().to_path_buf();
    let text = groups(&[&typo]).render(s.daemon.state_dir(), s.bus.address());
    std::fs::write(&path, text).expect("rewrite config");

    let out = s.ctl.run(None, &["reload"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("\"{typo}\" does not exist")),
        "{out}"
    );
    assert_eq!(
        s.ctl.status(&user)["required"],
        true,
        "old policy must stay"
    );

    let pid = s.daemon.pid().expect("pid");
    proc::signal(pid, "HUP");
    let refused = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        s.daemon.log().contains("reload refused")
    });
    assert!(refused, "{}", s.daemon.log());
    assert_eq!(
        s.ctl.status(&user)["required"],
        true,
        "old policy must stay"
    );
    // The login path agrees: the member is still asked to enrol, not let through.
    let pam: &PamService = &s.pam;
    let run = pam.login(user.name(), "");
    assert!(!run.succeeded(), "{run}");
}
