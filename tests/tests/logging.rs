// SPDX-License-Identifier: MIT OR Apache-2.0
//! Logging never blocks a login: `twostepd` whose `/dev/log` receiver never reads (a stuck
//! journald or rsyslogd) keeps answering logins, and says on stderr that syslog is not
//! taking lines. The daemon runs in a private mount namespace, so the machine's logging is
//! never touched.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::pam::strerror;
use twostep_e2e::proc;
use twostep_e2e::syslog::StuckSyslog;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamService, User};

#[test]
fn a_syslog_that_never_reads_does_not_wedge_logins() {
    let stuck = StuckSyslog::start();
    let bus = Bus::start();
    // Enough failures allowed that every wrong code below is evaluated, not locked out.
    let config = DaemonConfig::default().set("lockout", "max_failures", "100");
    let daemon = Daemon::start_with_syslog(&bus, config, stuck.socket());
    let pam = PamService::twostep(bus.address(), "timeout=5");
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);

    // The socket queue holds 10 datagrams; every login logs at least one line. Far more
    // logins than that: each must get its verdict, not the module's timeout.
    let attempts = 40;
    for _ in 0..attempts {
        pam.login(user.name(), &e.wrong_code())
            .assert_refused_with(strerror::AUTH_ERR);
    }
    pam.login(user.name(), &e.code_after(1)).assert_success();
    let status = ctl.status(&user);
    assert_eq!(status["failures"], 0, "{status}");
    assert!(
        twostep_e2e::json::time(&status, "last_success") > 0,
        "the success was recorded: {status}"
    );

    // stderr has the lines syslog could not take.
    let found = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        daemon.log().contains("syslog is not taking log lines")
    });
    assert!(found, "no notice of the stuck syslog:\n{}", daemon.log());
}
