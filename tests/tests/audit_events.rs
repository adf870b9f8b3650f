// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 20 item 8 through real libpam (pamtester), a real daemon and twostepctl: a
//! successful login, a replayed code, failed attempts, the lock and an admin reset are
//! each an event with its kind, the PAM service, remote host and tty, the method and the
//! acting user's name (the admin's for the reset) — in `user show` and `user show
//! --json`, with times as RFC 3339 in JSON and `YYYY-MM-DD HH:MM:SS UTC` in text; the
//! daemon's lock line carries its `until=` as RFC 3339, not as epoch seconds, and its admin
//! line the admin's name.
#![forbid(unsafe_code)]

use twostep_e2e::json;
use twostep_e2e::{otp, DaemonConfig, Stack, User};

const RHOST: &str = "198.51.100.23";
const TTY: &str = "pts/7";

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn failures_replays_locks_and_admin_resets_name_where_from_and_who() {
    twostep_e2e::require_root();
    let s = Stack::start_with(
        DaemonConfig::default().set("lockout", "max_failures", "3"),
        "",
    );
    let user = User::create();
    let key = s.ctl.enroll(&user);
    let before = otp::now() - 5;
    let login = |answer: &str| {
        s.pam
            .auth(user.name())
            .answer(answer)
            .item("rhost", RHOST)
            .item("tty", TTY)
            .run()
    };
    let code = key.code_after(1);
    login(&code).assert_success();
    // The same code again: a replay (its own kind, not charged).
    login(&code).assert_refused();
    // Three wrong codes: the third locks.
    for _ in 0..3 {
        login(&key.wrong_code()).assert_refused();
    }
    let out = s.ctl.run(None, &["user", "reset", user.name()], b"");
    assert!(out.success(), "{out}");

    // --json: one document; each event with its kind, source and actor; RFC 3339 times.
    let out = s
        .ctl
        .run(None, &["user", "show", user.name(), "--json"], b"");
    assert!(out.success(), "{out}");
    let v = json::one_document(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let events = v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {v}"));
    for e in events {
        let at = e["at"].as_str().unwrap_or_else(|| panic!("at: {e}"));
        assert!(is_rfc3339_utc(at), "{e}");
        assert!(json::time(e, "at") >= before, "{e}");
    }
    let of_kind = |kind: &str| -> Vec<&serde_json::Value> {
        events.iter().filter(|e| e["kind"] == kind).collect()
    };
    for (kind, count, method) in [
        ("success", 1, "totp"),
        ("replay", 1, "totp"),
        ("failure", 3, "totp,recovery-code"),
        ("lock", 1, "totp,recovery-code"),
    ] {
        let list = of_kind(kind);
        assert_eq!(list.len(), count, "{kind} events: {v}");
        for e in list {
            assert_eq!(e["service"], s.pam.name(), "{e}");
            assert_eq!(e["rhost"], RHOST, "{e}");
            assert_eq!(e["tty"], TTY, "{e}");
            assert_eq!(e["method"], method, "{e}");
            assert_eq!(e["actor"], user.name(), "{e}");
            assert_eq!(e["actor_uid"], user.uid(), "{e}");
        }
    }
    let reset = of_kind("reset");
    assert_eq!(reset.len(), 1, "{v}");
    assert_eq!(reset[0]["actor"], "root", "{v}");
    assert_eq!(reset[0]["actor_uid"], 0, "{v}");
    assert_eq!(reset[0]["service"], "twostepctl", "{v}");
    assert!(
        reset[0]["what"]
            .as_str()
            .is_some_and(|w| w.contains("by root")),
        "{v}"
    );
    // The summary's times are RFC 3339 too (the reset forgot the failures: null).
    assert_eq!(json::time(&v, "last_failure"), 0, "{v}");
    assert!(json::time(&v, "last_success") >= before, "{v}");

    // Text: the same, times for people, the source as key=value.
    let out = s.ctl.run(None, &["user", "show", user.name()], b"");
    assert!(out.success(), "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    let line_of = |kind: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().nth(3) == Some(kind))
            .unwrap_or_else(|| panic!("no {kind} event line:\n{out}"))
    };
    for kind in ["success", "replay", "failure", "lock"] {
        let l = line_of(kind);
        for part in [
            format!("service={}", s.pam.name()),
            format!("rhost={RHOST}"),
            format!("tty={TTY}"),
            "method=totp".to_owned(),
            format!("by={}", user.name()),
        ] {
            assert!(l.contains(&part), "{kind}: {part} missing in {l:?}");
        }
        assert!(l.contains(" UTC "), "{l:?}");
    }
    let l = line_of("reset");
    assert!(
        l.contains("by=root") && l.contains("service=twostepctl"),
        "{l:?}"
    );
    assert!(
        !out.stdout.split_whitespace().any(is_rfc3339_utc),
        "text output shows RFC 3339, not the people's form:\n{out}"
    );

    // The daemon's lock line: until= is RFC 3339.
    let log = s.daemon.log();
    let lock = log
        .lines()
        .find(|l| l.contains(&format!("user={} outcome=locked failures=", user.name())))
        .unwrap_or_else(|| panic!("no lock line:\n{log}"));
    let until = lock
        .split_whitespace()
        .find_map(|f| f.strip_prefix("until="))
        .unwrap_or_else(|| panic!("no until= in {lock:?}"));
    assert!(is_rfc3339_utc(until), "{lock:?}");
    // The admin's log line names the admin, not only the uid.
    assert!(
        log.contains(&format!(
            "admin_uid=0 admin=root user={} action=reset outcome=done",
            user.name()
        )),
        "{log}"
    );
}

/// An event without a remote host or tty (a D-Bus call: enrolment by twostepctl) shows
/// `-` for them in text and empty strings in JSON; its actor is the user.
#[test]
fn a_self_service_event_shows_dashes_for_what_it_lacks() {
    twostep_e2e::require_root();
    let s = Stack::start();
    let user = User::create();
    s.ctl.enroll(&user);
    let out = s.ctl.run(None, &["user", "show", user.name()], b"");
    assert!(out.success(), "{out}");
    let enrol = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().nth(3) == Some("enrol"))
        .unwrap_or_else(|| panic!("no enrol event:\n{out}"));
    for part in [
        "service=twostepctl",
        "rhost=-",
        "tty=-",
        "method=totp",
        &format!("by={}", user.name()),
    ] {
        assert!(enrol.contains(part), "{part} missing in {enrol:?}");
    }
    let out = s
        .ctl
        .run(None, &["user", "show", user.name(), "--json"], b"");
    let v = json::one_document(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let e = v["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["kind"] == "enrol"))
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!((&e["rhost"], &e["tty"]), (&"".into(), &"".into()), "{e}");
    assert_eq!(e["actor"], user.name(), "{e}");
}
