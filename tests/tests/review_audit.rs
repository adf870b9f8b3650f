// SPDX-License-Identifier: MIT OR Apache-2.0
//! Review of the issue-19 fixes (finding 3): audit lines and record events are
//! `key=value` fields, and a value that a client chose (the login context's service, rhost
//! and tty; user names) can never be read as another field: such values are quoted, with
//! `"` and `\` escaped. An unprivileged user's `Begin` cannot forge `outcome=` or `user=`.
#![forbid(unsafe_code)]

use twostep_e2e::flows;
use twostep_e2e::{DaemonConfig, Stack, User};

/// The `key=value` fields of one line, as a log parser reads them: fields are separated by
/// spaces; a value in double quotes runs to the closing quote, `\` escaping the next
/// character. Words without `=` are skipped.
fn fields(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == ' ' || c == '=' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if chars.peek() != Some(&'=') {
            continue;
        }
        chars.next();
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

fn count(fields: &[(String, String)], key: &str) -> usize {
    fields.iter().filter(|(k, _)| k == key).count()
}

fn value<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

const FORGED_SERVICE: &str = "sshd outcome=success user=root uid=0 caller_uid=0";
const FORGED_RHOST: &str = "10.0.0.1\" outcome=success user=\"root";
const FORGED_TTY: &str = "pts/0 x=\\\" outcome=success";

#[test]
fn a_users_begin_cannot_forge_fields_in_the_audit_line() {
    let s = Stack::start_with(DaemonConfig::default(), "");
    let a = User::create();
    let context = format!(
        "dict:string:string:service,{FORGED_SERVICE},rhost,{FORGED_RHOST},tty,{FORGED_TTY}"
    );
    let reply = flows::call(
        s.bus.address(),
        Some(a.creds()),
        "org.twostep.Login1.Begin",
        &[format!("string:{}", a.name()), context],
    );
    assert!(reply.is_ok(), "Begin as the user: {reply:?}");

    let log = s.daemon.log();
    let audit: Vec<Vec<(String, String)>> = log
        .lines()
        .map(fields)
        .filter(|f| count(f, "caller_uid") > 0)
        .collect();
    let mine: Vec<&Vec<(String, String)>> = audit
        .iter()
        .filter(|f| value(f, "service") == Some(FORGED_SERVICE))
        .collect();
    assert_eq!(
        mine.len(),
        1,
        "the Begin's audit line was not parsed whole:\n{log}"
    );
    for f in &audit {
        for key in [
            "user",
            "uid",
            "service",
            "rhost",
            "tty",
            "caller_uid",
            "outcome",
        ] {
            assert!(
                count(f, key) <= 1,
                "a line carries {key} twice: {f:?}\n{log}"
            );
        }
    }
    let f = mine[0];
    assert_eq!(value(f, "user"), Some(a.name()), "{f:?}");
    assert_eq!(value(f, "uid"), Some(a.uid().to_string().as_str()), "{f:?}");
    assert_eq!(
        value(f, "caller_uid"),
        Some(a.uid().to_string().as_str()),
        "{f:?}"
    );
    assert_eq!(value(f, "rhost"), Some(FORGED_RHOST), "{f:?}");
    assert_eq!(value(f, "tty"), Some(FORGED_TTY), "{f:?}");
    assert_eq!(value(f, "outcome"), Some("not-enrolled"), "{f:?}");
}

#[test]
fn a_forged_rhost_cannot_forge_fields_in_the_events_user_show_lists() {
    let s = Stack::start_with(DaemonConfig::default(), "");
    let a = User::create();
    let key = s.ctl.enroll(&a);
    s.pam
        .auth(a.name())
        .answer(key.code_after(1))
        .item("rhost", FORGED_RHOST)
        .run()
        .assert_success();
    // JSON: the event's rhost is the forged text, whole, in its own field.
    let out = s.ctl.run(None, &["user", "show", a.name(), "--json"], b"");
    assert!(out.success(), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    let events = v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {v}"));
    let login = events
        .iter()
        .find(|e| e["kind"] == "success")
        .unwrap_or_else(|| panic!("no login event: {v}"));
    assert_eq!(login["rhost"], FORGED_RHOST, "{v}");
    assert_eq!(login["service"], s.pam.name(), "{v}");
    // Text: the event line's `key=value` fields read the forged rhost as one value.
    let out = s.ctl.run(None, &["user", "show", a.name()], b"");
    assert!(out.success(), "{out}");
    let login = out
        .stdout
        .lines()
        .map(fields)
        .find(|f| count(f, "rhost") > 0 && value(f, "service") == Some(s.pam.name()))
        .unwrap_or_else(|| panic!("no login event line:\n{out}"));
    assert_eq!(value(&login, "rhost"), Some(FORGED_RHOST), "{out}");
    assert_eq!(count(&login, "rhost"), 1, "{out}");
    assert_eq!(count(&login, "outcome"), 0, "{out}");
    assert_eq!(count(&login, "user"), 0, "{out}");

    // The audit line of that login names the user once and its real outcome.
    let log = s.daemon.log();
    let line = log
        .lines()
        .map(fields)
        .find(|f| value(f, "rhost") == Some(FORGED_RHOST))
        .unwrap_or_else(|| panic!("no audit line with the rhost:\n{log}"));
    assert_eq!(count(&line, "outcome"), 1, "{line:?}");
    assert_eq!(count(&line, "user"), 1, "{line:?}");
    assert_eq!(value(&line, "outcome"), Some("success"), "{line:?}");
}
