// SPDX-License-Identifier: MIT OR Apache-2.0
//! `forward_pass` runs BEFORE the password module (docs/services.md: `auth requisite
//! pam_twostep.so forward_pass` then `pam_unix use_first_pass`), so its Begin must start
//! nothing for whoever knows only a user name (security review, finding H1): no enrolment
//! at login (whose key an attacker could confirm), no pending key stored, no grace period
//! begun. A required user without a factor is told to set it up where each prompt is
//! shown. Through real libpam with the documented stack. Needs root.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::documented;
use twostep_e2e::logins::LoginUser;
use twostep_e2e::{Bus, Ctl, Daemon, DaemonConfig, PamService};

#[test]
fn forward_pass_starts_no_enrolment_for_a_name_alone() {
    let bus = Bus::start();
    let stack = documented::pam_stacks()
        .into_iter()
        .filter(|s| s.block.source.starts_with("docs/services.md:"))
        .find(|s| s.block.lines.iter().any(|l| l.contains("forward_pass")))
        .expect("the forward_pass stack of docs/services.md");
    let pam = PamService::named("fwd", &stack.render(bus.address()));
    let daemon = Daemon::start_with(
        &bus,
        DaemonConfig::default()
            .set("policy", "require", "\"all\"")
            .set("policy", "enroll_grace_days", "3"),
    );
    let ctl = Ctl::new(&bus);
    let victim = LoginUser::create();

    // The attacker knows the name only: no key is shown, the login is refused.
    let mut run = pam.auth(victim.name()).interactive();
    run.close_stdin();
    let out = run.finish(Duration::from_secs(30));
    assert!(!out.status.success(), "{out}");
    assert!(
        !out.stderr.contains("key by hand") && !out.stdout.contains("key by hand"),
        "no enrolment key before the password:\n{out}"
    );
    assert!(
        out.stderr.contains("must be set up first") || out.stdout.contains("must be set up first"),
        "the user is told where to set it up:\n{out}"
    );
    let status = ctl.status(victim.user());
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(
        status["pending_enrollment"], false,
        "no key stored: {status}"
    );
    assert!(
        daemon.log().contains("not-enrolled (forward_pass)"),
        "{}",
        daemon.log()
    );
    // No grace period was begun by it: a normal login starts the grace now.
    assert!(!daemon.log().contains("grace"), "{}", daemon.log());
}
