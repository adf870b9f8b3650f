// SPDX-License-Identifier: MIT OR Apache-2.0
//! The D-Bus contract as served is the contract as committed: the built `twostepd`, on a
//! real `dbus-daemon` with the shipped policy, is introspected (as a non-root user, as any
//! client would) and its `org.twostep.*` interfaces are compared with
//! `packaging/dbus/org.twostep.Twostep1.xml`, which clients and reviewers read. A change of
//! the wire (a method, an argument, a type) therefore shows up as a diff of that file in
//! review, never silently. The interface and method names the module and the CLI compile
//! against (`twostep-proto`) are checked against it too.
//!
//! To accept an intended change: run this test; on a mismatch it writes the served XML
//! next to the committed file as `….xml.served` and prints the `mv` to run.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::{artifacts, proc, Stack, User};

const COMMITTED: &str = "packaging/dbus/org.twostep.Twostep1.xml";

/// The `<interface name="org.twostep.…">` blocks of an introspection document, each line
/// trimmed, blank lines and comments dropped.
fn twostep_interfaces(xml: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut inside, mut comment) = (false, false);
    for line in xml.lines().map(str::trim) {
        if line.starts_with("<!--") {
            comment = true;
        }
        if comment {
            comment = !line.ends_with("-->");
            continue;
        }
        if line.starts_with("<interface name=\"org.twostep.") {
            inside = true;
        }
        if inside && !line.is_empty() {
            out.push(line.to_string());
        }
        if line == "</interface>" {
            inside = false;
        }
    }
    out
}

/// `lines` indented by nesting, for the committed file.
fn indent(lines: &[String]) -> String {
    let mut depth = 1;
    let mut out = String::new();
    for l in lines {
        if l.starts_with("</") {
            depth -= 1;
        }
        out.push_str(&"  ".repeat(depth));
        out.push_str(l);
        out.push('\n');
        if !l.starts_with("</") && !l.ends_with("/>") {
            depth += 1;
        }
    }
    out
}

/// The daemon's introspection document, fetched with `dbus-send` as `user`.
fn introspect(s: &Stack, user: &User) -> String {
    let mut cmd = proc::command(Some(user.creds()), "dbus-send");
    cmd.arg(format!("--bus={}", s.bus.address()))
        .arg("--print-reply=literal")
        .arg("--reply-timeout=5000")
        .arg("--dest=org.twostep.Twostep1")
        .arg("/org/twostep/Twostep1")
        .arg("org.freedesktop.DBus.Introspectable.Introspect");
    let out = proc::run(cmd, b"", Duration::from_secs(10));
    assert!(out.success(), "Introspect failed:\n{out}");
    out.stdout
}

#[test]
fn served_interfaces_match_the_committed_introspection_xml() {
    let s = Stack::start();
    let anyone = User::create();
    let served = introspect(&s, &anyone);
    let path = artifacts::repo_root().join(COMMITTED);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let (want, got) = (twostep_interfaces(&committed), twostep_interfaces(&served));
    if want != got {
        let new = path.with_extension("xml.served");
        let doc = format!(
            "<!-- SPDX-License-Identifier: MIT OR Apache-2.0 -->\n\
             <!-- The D-Bus contract of twostepd, as served (checked by tests/tests/contract.rs). -->\n\
             <node name=\"/org/twostep/Twostep1\">\n{}</node>\n",
            indent(&got)
        );
        std::fs::write(&new, doc).expect("write served xml");
        panic!(
            "the served contract differs from {COMMITTED}.\n\
             If the change is intended: mv {} {}\n\
             served:\n{}\n\ncommitted:\n{}",
            new.display(),
            path.display(),
            got.join("\n"),
            want.join("\n")
        );
    }
    // The names the module and the CLI compile against are the served ones.
    for name in [
        twostep_proto::LOGIN_INTERFACE,
        twostep_proto::LOGIN2_INTERFACE,
        twostep_proto::USER_INTERFACE,
        twostep_proto::ADMIN_INTERFACE,
        twostep_proto::APP_PASSWORD_INTERFACE,
    ] {
        assert!(
            got.contains(&format!("<interface name=\"{name}\">")),
            "{name} is not served"
        );
    }
    for method in [twostep_proto::login::BEGIN, twostep_proto::login::ANSWER] {
        assert!(
            got.contains(&format!("<method name=\"{method}\">")),
            "Login1.{method} is not served"
        );
    }
}
