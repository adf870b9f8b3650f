// SPDX-License-Identifier: MIT OR Apache-2.0
//! One rule for code formats everywhere (issue 20 item 5): a code typed the way apps show
//! it (`123 456`, a stray space, `123-456`) is the code, at a login through libpam and as
//! the proof `twostepctl` asks for; an answer no method could take (a word, a code of the
//! wrong length) is refused without counting toward the lockout. Needs root.
#![forbid(unsafe_code)]

use twostep_e2e::{DaemonConfig, Stack, User};

fn failures(s: &Stack, user: &User) -> u64 {
    s.ctl.status(user)["failures"].as_u64().expect("failures")
}

#[test]
fn codes_typed_in_groups_work_and_malformed_answers_are_not_counted() {
    let s = Stack::start_with(DaemonConfig::default().set("totp", "window", "2"), "");
    let user = User::create();
    let key = s.ctl.enroll(&user);

    let code = key.code_after(1);
    let spaced = format!("{} {}", &code[..3], &code[3..]);
    s.pam.login(user.name(), &spaced).assert_success();
    let code = key.code_after(2);
    s.pam
        .login(user.name(), &format!(" {code}"))
        .assert_success();
    assert_eq!(failures(&s, &user), 0);

    // The daemon applies the rule too: the CLI's proof, dashed.
    let dashed = {
        let c = key.code_after(3);
        format!("{}-{}", &c[..3], &c[3..])
    };
    let out = s.ctl.run(
        Some(user.creds()),
        &["recovery-codes"],
        format!("{dashed}\n").as_bytes(),
    );
    assert!(out.success(), "{out}");
    assert_eq!(failures(&s, &user), 0);

    // Not a code at all: refused, nothing counted (the module refuses a word at a digits
    // prompt itself; the daemon does not count one it gets as a proof).
    s.pam.login(user.name(), "hello").assert_refused();
    let out = s
        .ctl
        .run(Some(user.creds()), &["recovery-codes"], b"hello\n");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(failures(&s, &user), 0);
    // A wrong code is still counted.
    s.pam.login(user.name(), &key.wrong_code()).assert_refused();
    assert_eq!(failures(&s, &user), 1);
}
