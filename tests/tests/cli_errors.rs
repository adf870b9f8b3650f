// SPDX-License-Identifier: MIT OR Apache-2.0
//! What `twostepctl` says when the bus cannot start twostepd (issue 20 item 14): with the
//! package, twostepd is D-Bus activated; a broken config makes the started daemon exit, and
//! the bus then answers `org.freedesktop.DBus.Error.Spawn.ChildExited`. The CLI turns every
//! such activation failure (and a start that outlives the bus's timeout) into one sentence
//! that names what to run, not a raw D-Bus error name.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::bus::Bus;
use twostep_e2e::ctl::Ctl;
use twostep_e2e::{artifacts, unique};

#[test]
fn a_daemon_the_bus_cannot_start_is_explained_with_the_command_to_run() {
    twostep_e2e::require_root();
    let dir = unique::temp_dir("brokencfg");
    unique::chmod(dir.path(), 0o755);
    let config = dir.path().join("twostep.toml");
    std::fs::write(&config, "version = 1\n[policy]\nrequire = \n").unwrap();
    let broken = format!(
        "{} --config {}",
        artifacts::twostepd().display(),
        config.display()
    );
    let cases = [
        (broken.as_str(), "a broken config: the daemon exits"),
        ("/bin/sleep 30", "a start past the bus's timeout"),
    ];
    for (exec, what) in cases {
        let bus = Bus::activatable(exec, Duration::from_secs(1));
        let out = Ctl::new(&bus).run(None, &["status"], b"");
        assert_eq!(out.status.code(), Some(1), "{what}:\n{out}");
        assert!(
            out.stderr.contains("twostepd could not start (")
                && out
                    .stderr
                    .contains("check `twostepd --check-config /etc/twostep/twostep.toml`"),
            "{what}: the CLI names what to run:\n{out}"
        );
        assert!(
            !out.stderr.contains("org.freedesktop.DBus.Error"),
            "{what}: no raw D-Bus error name:\n{out}"
        );
        assert!(
            bus.log()
                .contains("Activating service name='org.twostep.Twostep1'"),
            "{what}: the bus was asked to start the daemon:\n{}",
            bus.log()
        );
    }
}
