// SPDX-License-Identifier: MIT OR Apache-2.0
//! `--json` output is one JSON document and nothing else, for every command (issue 20
//! item 15), with every time in RFC 3339 (item 8).
//!
//! The commands are found by walking twostepctl's own command tree (`--help` of every
//! subcommand, as clap prints it): a command that takes `--json` and is missing from
//! [`cases`] fails the test, so a new one cannot be forgotten. Each is run against a real
//! daemon on a private bus, and its standard output is parsed whole with
//! `serde_json::from_str`.
#![forbid(unsafe_code)]

use twostep_e2e::proc::Creds;
use twostep_e2e::{artifacts, flows, otp, proc, unique, DaemonConfig, Stack, User};

/// The subcommand paths of twostepctl whose `--help` lists `--json`, found by walking
/// the tree from the top (`help` itself left out).
fn json_commands() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let mut cmd = proc::command(None, artifacts::twostepctl());
        cmd.args(&path).arg("--help");
        let out = proc::run(cmd, b"", twostep_e2e::ctl::TIMEOUT);
        assert!(out.success(), "{out}");
        let mut in_commands = false;
        for line in out.stdout.lines() {
            if line.starts_with("Commands:") {
                in_commands = true;
                continue;
            }
            if in_commands {
                match line.split_whitespace().next() {
                    Some(name) if line.starts_with("  ") => {
                        if name != "help" {
                            let mut sub = path.clone();
                            sub.push(name.to_owned());
                            todo.push(sub);
                        }
                    }
                    _ => in_commands = false,
                }
            }
            if line.trim_start().starts_with("--json") {
                found.push(path.clone());
            }
        }
    }
    found.sort();
    found
}

/// One run: as whom (root when `None`), the arguments, stdin.
struct Case {
    creds: Option<Creds>,
    args: Vec<String>,
    stdin: String,
}

fn case(creds: Option<Creds>, args: &[&str], stdin: &str) -> Case {
    Case {
        creds,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        stdin: stdin.to_owned(),
    }
}

#[test]
fn every_json_command_prints_exactly_one_json_document() {
    twostep_e2e::require_root();
    // A service name app passwords may open (never logged in to here: no PAM file).
    let imap = format!("ts-json-imap-{}", unique::token());
    let config = DaemonConfig::default()
        .set("app_passwords", "services", &format!("[\"{imap}\"]"))
        .set("lockout", "max_failures", "20");
    let s = Stack::start_with(config, "");
    let user = User::create();
    let fresh = User::create();
    let (_key, codes) = flows::enroll_json(&s.ctl, &user);
    let me = Some(user.creds());
    let temp = unique::temp_dir("json-output");
    let pam_dir = temp.path().join("pam.d");
    std::fs::create_dir(&pam_dir).expect("pam dir");
    std::fs::write(pam_dir.join("login"), "auth required pam_unix.so\n").expect("pam file");
    let sudoers = temp.path().join("sudoers");
    std::fs::write(&sudoers, "").expect("sudoers");
    let sudoers = sudoers.to_string_lossy().into_owned();
    let pam_dir = pam_dir.to_string_lossy().into_owned();
    let proof = |i: usize| format!("{}\n", codes[i]);

    // Every command with --json, how to run it. A key made by a `--json` run is confirmed
    // by the `--confirm` run right after it (the code is computed between the runs).
    let cases: Vec<(&str, Vec<Case>)> = vec![
        ("status", vec![case(me, &["status", "--json"], "")]),
        (
            "recovery-codes",
            vec![case(me, &["recovery-codes", "--count", "--json"], "")],
        ),
        (
            "authenticator list",
            vec![case(me, &["authenticator", "list", "--json"], "")],
        ),
        (
            "app-password create",
            vec![case(
                me,
                &[
                    "app-password",
                    "create",
                    "mail",
                    "--service",
                    &imap,
                    "--json",
                ],
                &proof(0),
            )],
        ),
        (
            "app-password list",
            vec![case(me, &["app-password", "list", "--json"], "")],
        ),
        (
            "user list",
            vec![case(None, &["user", "list", "--json"], "")],
        ),
        (
            "user list --pending",
            vec![case(None, &["user", "list", "--pending", "--json"], "")],
        ),
        (
            "user show",
            vec![case(None, &["user", "show", user.name(), "--json"], "")],
        ),
        (
            "user repair",
            vec![case(None, &["user", "repair", user.name(), "--json"], "")],
        ),
        (
            "user app-password list",
            vec![case(
                None,
                &["user", "app-password", "list", user.name(), "--json"],
                "",
            )],
        ),
        ("locks", vec![case(None, &["locks", "--json"], "")]),
        (
            "doctor",
            vec![case(
                None,
                &[
                    "doctor",
                    "--json",
                    "--pam-dir",
                    &pam_dir,
                    "--sshd-config",
                    "/nonexistent/sshd_config",
                    "--sudoers",
                    &sudoers,
                ],
                "",
            )],
        ),
    ];
    let mut covered: Vec<Vec<String>> = Vec::new();
    for (name, runs) in &cases {
        covered.push(
            name.split(' ')
                .take_while(|w| !w.starts_with("--"))
                .map(str::to_owned)
                .collect(),
        );
        for c in runs {
            let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
            let out = s.ctl.run(c.creds, &args, c.stdin.as_bytes());
            let doc = twostep_e2e::json::one_document(&out.stdout)
                .unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
            // doctor exits 1 on findings; its report is still the one document.
            if *name != "doctor" {
                assert!(out.success(), "{name}:\n{out}");
            }
            assert!(doc.is_object() || doc.is_array(), "{name}: {doc}");
        }
    }

    // The three that make a key: one document with the key, then (--confirm) one with
    // the result; the secrets shown once are fields of those documents.
    let key_runs: [(&str, Option<&User>, Vec<&str>, String); 3] = [
        (
            "enroll",
            Some(&fresh),
            vec!["enroll", "--json"],
            String::new(),
        ),
        (
            "authenticator add",
            None,
            vec!["authenticator", "add", "second", "--json"],
            proof(1),
        ),
        ("reset", None, vec!["reset", "--json"], proof(2)),
    ];
    for (name, who, args, stdin) in key_runs {
        let who = who.unwrap_or(&user);
        covered.push(name.split(' ').map(str::to_owned).collect());
        let out = s.ctl.run(Some(who.creds()), &args, stdin.as_bytes());
        assert!(out.success(), "{name}:\n{out}");
        let doc = twostep_e2e::json::one_document(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{out}"));
        for k in ["secret", "uri", "algorithm", "digits", "period", "next"] {
            assert!(doc.get(k).is_some(), "{name}: no {k} in {doc}");
        }
        assert!(
            twostep_e2e::json::time(&doc, "expires") > otp::now(),
            "{doc}"
        );
        let secret = doc["secret"].as_str().expect("secret");
        let step = otp::settled_step(30, std::time::Duration::from_secs(5)) - 1;
        let code = otp::totp_at_step(secret, twostep_e2e::Algorithm::Sha1, 6, 30, step);
        let mut confirm = args.clone();
        confirm.push("--confirm");
        let out = s
            .ctl
            .run(Some(who.creds()), &confirm, format!("{code}\n").as_bytes());
        assert!(out.success(), "{name} --confirm:\n{out}");
        let doc = twostep_e2e::json::one_document(&out.stdout)
            .unwrap_or_else(|e| panic!("{name} --confirm: {e}\n{out}"));
        assert_eq!(doc["active"], true, "{name}: {doc}");
        if name == "enroll" {
            let codes = doc["recovery_codes"].as_array().expect("recovery_codes");
            assert!(!codes.is_empty(), "{doc}");
        }
    }

    // New recovery codes (last: the old ones stop working): one document with them.
    covered.push(vec!["recovery-codes".into()]);
    let out = s
        .ctl
        .run(me, &["recovery-codes", "--json"], proof(3).as_bytes());
    assert!(out.success(), "{out}");
    let doc = twostep_e2e::json::one_document(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        doc["recovery_codes"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "{doc}"
    );

    // A failure in --json mode: nothing on stdout, the reason on stderr, exit 1.
    let out = s.ctl.run(
        None,
        &["user", "show", "ts_no_such_user_json", "--json"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(out.stdout, "", "{out}");
    assert!(!out.stderr.is_empty(), "{out}");

    // Every command the tree offers --json on was run above (and the walk does see them).
    covered.sort();
    covered.dedup();
    let found = json_commands();
    for known in [
        &["status"][..],
        &["enroll"],
        &["user", "show"],
        &["authenticator", "add"],
    ] {
        assert!(
            found.iter().any(|p| p == known),
            "the walk of the command tree missed {known:?}: {found:?}"
        );
    }
    for path in found {
        assert!(
            covered.contains(&path),
            "twostepctl {} takes --json but this test does not run it: add it to the cases",
            path.join(" ")
        );
    }
}
