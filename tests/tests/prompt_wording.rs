// SPDX-License-Identifier: MIT OR Apache-2.0
//! The code prompt says a recovery code may go there while one is left (issue 20 item 5),
//! and only then: through a real PAM login, before and after the last recovery code is
//! spent. Needs root.
#![forbid(unsafe_code)]

use twostep_e2e::pamclient::Client;
use twostep_e2e::{flows, prompts, DaemonConfig, Stack, User};

#[test]
fn the_prompt_names_recovery_codes_while_one_is_left() {
    twostep_e2e::require_root();
    let s = Stack::start_with(DaemonConfig::default().set("recovery", "count", "1"), "");
    let user = User::create();
    let (key, codes) = flows::enroll_json(&s.ctl, &user);
    assert_eq!(codes.len(), 1);

    // One recovery code left: the prompt says so, and it is taken there.
    let run = Client::user(&s.pam, user.name()).answer(&codes[0]).run();
    run.assert_code("PAM_SUCCESS");
    let expected = format!("PROMPT_ECHO_OFF: {}", prompts::CODE);
    assert_eq!(run.prompts(), [expected.as_str()], "{run}");
    assert_ne!(prompts::CODE, prompts::CODE_ONLY);
    assert!(prompts::CODE.contains("recovery code"));

    // All spent: the plain code prompt.
    let run = Client::user(&s.pam, user.name())
        .answer(key.code_after(1))
        .run();
    run.assert_code("PAM_SUCCESS");
    let expected = format!("PROMPT_ECHO_OFF: {}", prompts::CODE_ONLY);
    assert_eq!(run.prompts(), [expected.as_str()], "{run}");
    assert!(!prompts::CODE_ONLY.contains("recovery"));
}
