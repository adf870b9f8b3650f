// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 19, fault 3: the daemon knows accounts by uid, not by name. Every name of one uid
//! (`useradd -o -u`) shares one record: its code, failures, lock and replay mark. A record
//! written by an earlier version (keyed by name) keeps working. A uid that comes back for
//! a new account after `userdel` neither inherits the old enrolment nor is refused
//! silently: logins fail closed with a message for the admin, who resets the record.
#![forbid(unsafe_code)]

use twostep_e2e::alias::UidUser;
use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, DaemonConfig, Stack, User};

fn u64_of(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{key} is not an unsigned number: {v}"))
}

#[test]
fn a_second_name_of_an_enrolled_uid_is_asked_for_the_code_and_shares_its_state() {
    let config = DaemonConfig::default().set("lockout", "max_failures", "3");
    let s = Stack::start_with(config, "nullok");
    let user = User::create();
    let e = s.ctl.enroll(&user);
    let alias = UidUser::alias_of(&user);

    // On the shipped nullok stack: the alias is asked for the code, not let through.
    let run = s.pam.auth(alias.name()).answer(e.wrong_code()).run();
    run.assert_refused_with(strerror::AUTH_ERR);
    assert!(
        run.conversation()
            .contains(twostep_e2e::prompts::CODE_START),
        "the alias was not asked for the code:\n{run}"
    );
    // Its failure is the account's failure.
    assert_eq!(u64_of(&s.ctl.status(&user), "failures"), 1);
    s.pam
        .login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);

    // A code spent under one name is spent under the other (replay).
    let code = e.code_after(1);
    s.pam.login(alias.name(), &code).assert_success();
    assert_eq!(u64_of(&s.ctl.status(&user), "failures"), 0);
    s.pam
        .login(user.name(), &code)
        .assert_refused_with(strerror::AUTH_ERR);

    // And the lock: three failures under either name lock both.
    for name in [user.name(), alias.name(), user.name()] {
        s.pam.login(name, &e.wrong_code()).assert_refused();
    }
    s.pam
        .login(alias.name(), &e.code_after(2))
        .assert_refused_with(strerror::MAXTRIES);
    s.pam
        .login(user.name(), &e.code_after(2))
        .assert_refused_with(strerror::MAXTRIES);
}

#[test]
fn a_record_written_by_name_before_the_change_still_works() {
    let mut s = Stack::start_with(DaemonConfig::default(), "nullok");
    let user = User::create();
    // A record in the format of the earlier, name-keyed store: `<hex(name)>.rec`.
    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let record = twostep_e2e::records::with_key(user.name(), secret);
    twostep_e2e::records::write_name_keyed(s.daemon.state_dir(), user.name(), &record);

    let code = |step: u64| otp::totp_at_step(secret, otp::Algorithm::Sha1, 6, 30, step);
    let now = otp::settled_step(30, std::time::Duration::from_secs(5));
    s.pam
        .login(user.name(), "000000")
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam.login(user.name(), &code(now)).assert_success();
    // The replay mark and the failure were kept, wherever the record lives now (a replay
    // is refused uncharged, issue 20 item 17; the wrong code after it is charged).
    s.pam
        .login(user.name(), &code(now))
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(user.name(), "000000")
        .assert_refused_with(strerror::AUTH_ERR);
    assert_eq!(u64_of(&s.ctl.status(&user), "failures"), 1);
    // After a restart too.
    s.daemon.restart();
    s.pam.login(user.name(), &code(now + 1)).assert_success();
    assert_eq!(u64_of(&s.ctl.status(&user), "failures"), 0);
}

#[test]
fn a_reused_uid_neither_inherits_the_enrolment_nor_is_refused_silently() {
    let s = Stack::start_with(DaemonConfig::default(), "nullok");
    let old = User::create();
    let e = s.ctl.enroll(&old);
    let old_name = old.name().to_owned();
    let new = UidUser::reusing_uid_of(old);

    // The old account's code does not open the new account, nor does nullok let it through
    // without one: it fails closed...
    let run = s.pam.login(new.name(), &e.code_after(1));
    run.assert_refused();
    assert!(!run.succeeded());
    let run = s.pam.auth(new.name()).run();
    run.assert_refused();
    // ...and the admin is told what happened and what to do.
    let log = s.daemon.log();
    assert!(
        log.contains(&old_name)
            && log.contains(new.name())
            && log.contains("twostepctl user reset"),
        "no clear message for the admin:\n{log}"
    );
    let show = s
        .ctl
        .run(None, &["user", "show", new.name(), "--json"], b"");
    assert!(show.stdout.contains(&old_name), "{show}");

    // The admin resets the record: the new account starts without 2FA (nullok lets it in),
    // and the old key is gone for good.
    let reset = s.ctl.run(None, &["user", "reset", new.name()], b"");
    assert!(reset.success(), "{reset}");
    s.pam.auth(new.name()).run().assert_success();
    let status = s.ctl.run(Some(new.creds()), &["status", "--json"], b"");
    assert!(status.success(), "{status}");
    let status: serde_json::Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert_eq!(status["enrolled"], false, "{status}");
}
