// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 19, fault 4: a caller who may not act on other users learns nothing about which
//! names exist. Every method that takes a user name answers a non-root, non-admin caller
//! identically for a name that does not exist and for an existing other user (enrolled or
//! not): the daemon authorizes before it looks anything up.
#![forbid(unsafe_code)]

use twostep_e2e::flows::call_paced;
use twostep_e2e::{unique, Stack, User};

/// The error dbus-send printed, without its own framing.
fn error_of(r: Result<String, String>, what: &str) -> String {
    let e = r.expect_err(&format!("{what} succeeded"));
    e.lines()
        .find(|l| l.starts_with("Error org.twostep."))
        .unwrap_or_else(|| panic!("{what}: not a daemon error: {e}"))
        .to_owned()
}

fn other_users_and_missing_users_get_the_same_answer() {
    let s = Stack::start();
    let mallory = User::create();
    let enrolled = User::create();
    let plain = User::create();
    s.ctl.enroll(&enrolled);
    let missing = format!("ts_nosuch_{}", unique::random_hex(4));

    let methods: Vec<(&str, Vec<String>)> = vec![
        (
            "org.twostep.Login1.Begin",
            vec!["dict:string:string:service,x".into()],
        ),
        ("org.twostep.Admin1.ShowUser", vec![]),
        ("org.twostep.Admin1.ResetUser", vec![]),
        ("org.twostep.Admin1.DisableUser", vec![]),
        (
            "org.twostep.Admin1.SetRequirement",
            vec!["string:required".into()],
        ),
        (
            "org.twostep.Admin1.SetMayToggle",
            vec!["string:deny".into()],
        ),
        ("org.twostep.Admin1.Unlock", vec![]),
    ];
    for (member, rest) in &methods {
        let answer = |name: &str| {
            let mut args = vec![format!("string:{name}")];
            args.extend(rest.iter().cloned());
            error_of(
                call_paced(s.bus.address(), mallory.creds(), member, &args),
                &format!("{member}({name}) as a non-root user"),
            )
        };
        let for_missing = answer(&missing);
        assert!(
            for_missing.contains("org.twostep.Error.AccessDenied"),
            "{member}: {for_missing}"
        );
        for existing in [enrolled.name(), plain.name()] {
            assert_eq!(
                answer(existing),
                for_missing,
                "{member} tells {existing} (exists) from {missing} (does not)"
            );
        }
    }
    // The caller's own name still works: mallory is not enrolled, nothing to ask.
    let own = call_paced(
        s.bus.address(),
        mallory.creds(),
        "org.twostep.Login1.Begin",
        &[
            format!("string:{}", mallory.name()),
            "dict:string:string:service,x".into(),
        ],
    )
    .expect("Begin for the caller's own name");
    assert!(own.contains("not-enrolled"), "{own}");
}

// On the bus and on the login socket (issue 18): its login methods go peer to peer there.
twostep_e2e::both_transports!(other_users_and_missing_users_get_the_same_answer,);
