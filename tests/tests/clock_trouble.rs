// SPDX-License-Identifier: MIT OR Apache-2.0
//! Clock trouble made visible (issue 20 item 10): a phone whose clock is minutes behind
//! gives codes (from `oathtool` at the shifted time) that a real PAM login refuses and
//! charges exactly like a wrong code, never widening the window; the daemon logs the
//! offset (never the code), `twostepctl user show`, the user's own `status` and `doctor`
//! name it. Needs root.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::{artifacts, otp, proc, Stack, User};

#[test]
fn codes_of_a_phone_four_minutes_behind_are_refused_and_named() {
    twostep_e2e::require_root();
    let s = Stack::start();
    let user = User::create();
    let key = s.ctl.enroll(&user);
    assert_eq!(key.period, 30);
    // Ten seconds left in the step at least: the steps `wrong` avoids stay around now.
    let now = otp::settled_step(key.period, Duration::from_secs(10));
    // The phone 4 minutes behind: oathtool's code of the time 240 s ago, computed at each
    // use (so a step boundary between two uses cannot change the offset).
    let behind = || key.code_at(otp::now() - 240);
    // Wrong over the whole ±10 minutes the daemon looks at, so only `behind` is noted.
    let near: Vec<String> = (now - 25..=now + 25).map(|s| key.code_at_step(s)).collect();
    let wrong = otp::wrong_code(key.digits, &near);

    // A wrong code, then the shifted one: the same refusal, both charged.
    let w = s.pam.login(user.name(), &wrong);
    w.assert_refused();
    let first = behind();
    let b = s.pam.login(user.name(), &first);
    b.assert_refused();
    assert_eq!(b.pam_error(), w.pam_error());
    assert_eq!(b.conversation(), w.conversation());
    let status = s.ctl.status(&user);
    assert_eq!(status["failures"], 2, "{status}");
    assert_eq!(status["clock_skew"], -8, "{status}");
    assert_eq!(status["clock_skew_seconds"], -240, "{status}");

    // The admin's view names it.
    let shown = s.ctl.run(None, &["user", "show", user.name()], b"");
    assert!(shown.success(), "{shown}");
    assert!(
        shown
            .stdout
            .contains("are 8 steps (4 min) behind the host clock (seen once"),
        "{shown}"
    );
    let json = s
        .ctl
        .run(None, &["user", "show", user.name(), "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("JSON");
    assert_eq!(v["clock_skew"], -8, "{json}");
    assert_eq!(v["clock_skew_authenticator"], "default", "{json}");

    // The user's own status says it too.
    let own = s.ctl.run(Some(user.creds()), &["status"], b"");
    assert!(
        own.stdout
            .contains("codes from your app \"default\" are 8 steps"),
        "{own}"
    );

    // Logged with the offset, never the code.
    let log = s.daemon.log();
    assert!(
        log.contains("clock=skew steps=-8"),
        "no clock line in the log:\n{log}"
    );
    assert!(!log.contains(&first), "the code is in the log:\n{log}");

    // Seen again: a second sighting, and doctor warns about this user's phone.
    s.pam.login(user.name(), &behind()).assert_refused();
    let pam_dir = tempfile::tempdir().expect("temp dir");
    let sudoers = pam_dir.path().join("sudoers");
    std::fs::write(&sudoers, "").expect("sudoers");
    let mut cmd = proc::command(None, artifacts::twostepctl());
    cmd.arg("--bus")
        .arg(s.bus.address())
        .arg("doctor")
        .arg("--json")
        .arg("--pam-dir")
        .arg(pam_dir.path())
        .arg("--sudoers")
        .arg(&sudoers);
    let doctor = proc::run(cmd, b"", Duration::from_secs(60));
    let report: serde_json::Value =
        serde_json::from_str(doctor.stdout.trim()).expect("doctor JSON");
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "clock-user-skew")
        .unwrap_or_else(|| panic!("no clock finding:\n{doctor}"))
        .clone();
    assert_eq!(finding["severity"], "warning", "{doctor}");
    let message = finding["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("{}'s app", user.name()))
            && message.contains("8 steps (4 min) behind")
            && message.contains("seen 2 times"),
        "{message}"
    );

    // A right code still works, and ends the note.
    s.pam
        .login(user.name(), &key.code_at_step(now))
        .assert_success();
    let status = s.ctl.status(&user);
    assert_eq!(
        (status["clock_skew"].clone(), status["failures"].clone()),
        (0.into(), 0.into()),
        "{status}"
    );
}
