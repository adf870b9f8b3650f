// SPDX-License-Identifier: MIT OR Apache-2.0
//! The enrolment list is authoritative (issue 12, item 2): an enrolled account whose record
//! file vanished is not "not enrolled". Its logins fail closed — even on a `nullok` service —
//! with a log line naming the account, other accounts are unaffected, and `twostepctl user
//! reset` is the admin's way out. Needs root.
#![forbid(unsafe_code)]

use twostep_e2e::pam::strerror;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamService, User};

#[test]
fn a_vanished_record_of_an_enrolled_user_fails_closed_even_with_nullok() {
    let bus = Bus::start();
    let mut daemon =
        Daemon::start_with(&bus, DaemonConfig::default().set("recovery", "count", "2"));
    let pam = PamService::twostep(bus.address(), "nullok");
    let ctl = Ctl::new(&bus);
    let (alice, bob, carol) = (User::create(), User::create(), User::create());
    let ea = ctl.enroll(&alice);
    let eb = ctl.enroll(&bob);
    let path = daemon
        .state_dir()
        .join("users")
        .join(format!("uid-{}.rec", alice.uid()));
    std::fs::remove_file(&path).unwrap_or_else(|e| panic!("remove {}: {e}", path.display()));

    // Not "not enrolled": nullok does not let alice in with the password alone.
    let run = pam.login(alice.name(), &ea.code_after(1));
    run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    let log = daemon.log();
    assert!(
        log.contains(alice.name()) && log.contains("missing"),
        "a log line names the account and says why: {log}"
    );
    // Other users are unaffected: bob logs in with his code, carol (never enrolled) passes
    // nullok as before.
    pam.login(bob.name(), &eb.code_after(1)).assert_success();
    pam.auth(carol.name()).run().assert_success();

    // The list survives a restart.
    daemon.restart();
    pam.login(alice.name(), &ea.code_after(2))
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    pam.login(bob.name(), &eb.code_after(2)).assert_success();

    // The admin's way out: a reset starts alice over without 2FA.
    let out = ctl.run(None, &["user", "reset", alice.name()], b"");
    assert!(out.success(), "{out}");
    pam.auth(alice.name()).run().assert_success();
    assert_eq!(ctl.status(&alice)["enrolled"], false);
}
