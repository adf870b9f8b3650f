// SPDX-License-Identifier: MIT OR Apache-2.0
//! Several named authenticators per user (issue 12, item 8), end to end: a real
//! dbus-daemon, the built twostepd and twostepctl, pamtester with the built module, and
//! oathtool codes. Enrol two, log in with each, replay protection per authenticator, the
//! remove rules, what `authenticator list` and `user show` show, and a record written in
//! the single-key shape of the release before keeps working as "default". Needs root.
#![forbid(unsafe_code)]

use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, DaemonConfig, Stack, User};

/// The names in a JSON array of authenticators.
fn names(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn listed(s: &Stack, user: &User) -> serde_json::Value {
    let out = s.ctl.run(
        Some(user.creds()),
        &["authenticator", "list", "--json"],
        b"",
    );
    assert!(out.success(), "{out}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}:\n{out}"))
}

#[test]
fn two_authenticators_each_log_in_replay_is_per_authenticator_and_the_remove_rules_hold() {
    // Window 2 so that the steps this test spends stay inside it without waiting; every
    // user must use 2FA, so the last authenticator cannot be removed.
    let config = DaemonConfig::default()
        .set("totp", "window", "2")
        .set("policy", "require", "\"all\"");
    let s = Stack::start_with(config, "");
    let alice = User::create();
    let phone = s.ctl.enroll(&alice);
    // Steps are counted from the phone's confirming step `p`; with window 2 every step
    // used below (p + 1 to p + 3) is inside the window for the whole test, whichever
    // step the backup was confirmed with (p or p + 1).
    let p = phone.confirmed_step;
    // The proof for adding spends the phone's step p + 1.
    let backup = s
        .ctl
        .add_authenticator(&alice, "backup token", &phone.code_at_step(p + 1));
    assert_eq!(names(&listed(&s, &alice)), ["default", "backup token"]);

    // Each logs in; the same code again is a replay on the one that used it, and the
    // step one of them used stays usable, once, on the other (its own mark).
    s.pam
        .login(alice.name(), &phone.code_at_step(p + 2))
        .assert_success();
    s.pam
        .login(alice.name(), &phone.code_at_step(p + 2))
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(alice.name(), &backup.code_at_step(p + 2))
        .assert_success();
    s.pam
        .login(alice.name(), &backup.code_at_step(p + 2))
        .assert_refused_with(strerror::AUTH_ERR);

    // Both show their last use, to the user and to an admin.
    let list = listed(&s, &alice);
    for a in list.as_array().unwrap() {
        assert!(twostep_e2e::json::time(a, "added") > 0, "{list}");
        assert!(twostep_e2e::json::time(a, "last_used") > 0, "{list}");
    }
    let out = s
        .ctl
        .run(None, &["user", "show", alice.name(), "--json"], b"");
    assert!(out.success(), "{out}");
    let shown: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(names(&shown["authenticators"]), ["default", "backup token"]);
    let out = s.ctl.run(None, &["user", "show", alice.name()], b"");
    assert!(
        out.success() && out.stdout.contains("backup token"),
        "{out}"
    );
    let out = s.ctl.run(None, &["user", "list"], b"");
    assert!(out.success() && out.stdout.contains("totp(2)"), "{out}");
    let status = s.ctl.status(&alice);
    assert_eq!(
        names(&status["authenticators"]),
        ["default", "backup token"]
    );

    // Removing needs a code of ANOTHER authenticator: the backup's own code is refused.
    let out = s.ctl.run(
        Some(alice.creds()),
        &["authenticator", "remove", "backup token"],
        format!("{}\n", backup.code_at_step(p + 3)).as_bytes(),
    );
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("another"), "{out}");
    assert_eq!(names(&listed(&s, &alice)), ["default", "backup token"]);
    let out = s.ctl.run(
        Some(alice.creds()),
        &["authenticator", "remove", "backup token"],
        format!("{}\n", phone.code_at_step(p + 3)).as_bytes(),
    );
    assert!(out.success(), "{out}");
    assert_eq!(names(&listed(&s, &alice)), ["default"]);
    // The removed one's codes no longer log in.
    s.pam
        .login(alice.name(), &backup.code_at_step(p + 3))
        .assert_refused_with(strerror::AUTH_ERR);

    // The last one while 2FA is required: refused, whatever the proof.
    let out = s.ctl.run(
        Some(alice.creds()),
        &["authenticator", "remove", "default"],
        format!("{}\n", phone.wrong_code()).as_bytes(),
    );
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("required"), "{out}");
    assert_eq!(names(&listed(&s, &alice)), ["default"]);
    // A name that is not printable is refused before anything happens.
    let out = s.ctl.run(
        Some(alice.creds()),
        &["authenticator", "add", "bad\u{7}name", "--json"],
        format!("{}\n", phone.wrong_code()).as_bytes(),
    );
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("printable"), "{out}");
}

#[test]
fn a_record_in_the_single_key_shape_keeps_working_as_default() {
    // Window 2 so that the steps this test spends stay inside it without waiting.
    let mut s = Stack::start_with(DaemonConfig::default().set("totp", "window", "2"), "");
    let alice = User::create();
    // Enrolled through the daemon (the enrolment list names her), then her record file is
    // replaced by one in the shape the previous release wrote: one `totp` key and a
    // record-wide replay mark at the current step.
    s.ctl.enroll(&alice);
    s.daemon.stop();
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let step = otp::settled_step(30, std::time::Duration::from_secs(5));
    let created = otp::now() - 3600;
    let old = format!(
        r#"{{"version":1,"user":"{user}","uid":{uid},"totp":{{"secret":"{secret}","algorithm":"SHA1","digits":6,"period":30,"created":{created}}},"pending":null,"last_step":{step},"failures":0,"last_failure":null,"last_success":null,"recovery":[],"policy_override":"default","may_toggle":null,"required_since":null,"events":[]}}"#,
        user = alice.name(),
        uid = alice.uid(),
    );
    let path = s
        .daemon
        .state_dir()
        .join("users")
        .join(format!("uid-{}.rec", alice.uid()));
    let bytes = twostepd::core::store::file_bytes_of_json(old.as_bytes()).expect("bytes");
    std::fs::write(&path, bytes).expect("write the old record");
    twostep_e2e::unique::chmod(&path, 0o600);
    s.daemon.restart();

    // It reads as one authenticator named "default" carrying the replay mark.
    assert_eq!(names(&listed(&s, &alice)), ["default"]);
    let code = |step: u64| otp::totp_at_step(secret, otp::Algorithm::Sha1, 6, 30, step);
    s.pam
        .login(alice.name(), &code(step))
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam.login(alice.name(), &code(step + 1)).assert_success();
    // Written back in the current shape; still one authenticator with its last use.
    let written = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
    assert!(written.contains("\"authenticators\""), "{written}");
    let list = listed(&s, &alice);
    assert!(twostep_e2e::json::time(&list[0], "last_used") > 0, "{list}");
    // And it takes a second authenticator like any other (its marked steps are spent).
    let backup = s.ctl.add_authenticator(&alice, "backup", &code(step + 2));
    assert_eq!(names(&listed(&s, &alice)), ["default", "backup"]);
    s.pam
        .login(alice.name(), &backup.code_after(1))
        .assert_success();
}
