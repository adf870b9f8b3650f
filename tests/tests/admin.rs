// SPDX-License-Identifier: MIT OR Apache-2.0
//! Policy and the admin CLI end to end (issue 4): who must use 2FA (config, real Unix
//! groups through NSS, per-user overrides), what admins can do to users, who is an admin,
//! what `user list/show` and `locks` report, and reloading the config (SIGHUP and
//! `twostepctl reload`) where a broken file keeps the old policy in force.
//!
//! Groups are real (`groupadd`, `gpasswd`) and removed afterwards. twostepctl runs as test
//! users through `setpriv --clear-groups`: the process has no supplementary groups, so an
//! admin-group member is recognised only if the daemon asks NSS, as it must.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::flows::{self, ENROL_PROMPT};
use twostep_e2e::group::Group;
use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, proc, DaemonConfig, PamService, Stack, User};

/// Recovery codes per enrolment (argon2id costs ~30 ms each in the daemon).
const CODES: usize = 3;

fn config() -> DaemonConfig {
    DaemonConfig::default().set("recovery", "count", &CODES.to_string())
}

fn toml_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// `require = "groups"` with `groups` (and `exempt_groups`).
fn groups_config(groups: &[&str], exempt: &[&str]) -> DaemonConfig {
    config()
        .set("policy", "require", "\"groups\"")
        .set("policy", "groups", &toml_list(groups))
        .set("policy", "exempt_groups", &toml_list(exempt))
}

fn u64_of(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{key} is not an unsigned number: {v}"))
}

fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("{key} is not a string: {v}"))
}

/// A login through `pam` (with `nullok`) that the module lets through without asking
/// anything: not enrolled and not required → PAM_IGNORE, pam_permit decides.
#[track_caller]
fn assert_passes_without_prompt(pam: &PamService, user: &User) {
    let run = pam.auth(user.name()).run();
    run.assert_success();
    assert!(
        !run.output.stderr.contains(ENROL_PROMPT)
            && !run.output.stderr.contains(twostep_e2e::prompts::CODE_START),
        "{} should not be asked anything:\n{run}",
        user.name()
    );
}

/// The login of a not-enrolled `user` opens with the enrolment prompt (the run is then
/// abandoned: nothing is stored until a code confirms it).
#[track_caller]
fn assert_must_enrol(pam: &PamService, user: &User) {
    let p = flows::start_login_enrolment(pam, user.name());
    assert!(p.text.contains(user.name()), "{}", p.text);
}

/// `twostepctl user show NAME --json` as root, parsed.
#[track_caller]
fn show(s: &Stack, user: &User) -> serde_json::Value {
    let out = s
        .ctl
        .run(None, &["user", "show", user.name(), "--json"], b"");
    assert!(out.success(), "{out}");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// A refusal by the daemon's admin check: exit 1 and a message about permission.
#[track_caller]
fn assert_permission_refused(out: &proc::Output) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "expected a refusal (exit 1):\n{out}"
    );
    let said = out.stderr.to_lowercase();
    assert!(
        ["permission", "may not", "not allowed", "denied"]
            .iter()
            .any(|w| said.contains(w)),
        "expected a permission message:\n{out}"
    );
}

/// Run `call` until the daemon stops saying "slow down": non-root callers are rate-limited
/// (a burst of calls, then a few per second), and a test making many calls as one user
/// must pace itself like any client.
fn paced<T>(mut call: impl FnMut() -> T, busy: impl Fn(&T) -> bool) -> T {
    for _ in 0..40 {
        let r = call();
        if !busy(&r) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    call()
}

/// Write the daemon's config file anew with `config` (same state dir and bus).
fn rewrite_config(s: &Stack, config: &DaemonConfig) -> String {
    let text = config.render(s.daemon.state_dir(), s.bus.address());
    let path = s.daemon.config_path();
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, &text).expect("write new config");
    std::fs::rename(&tmp, path).expect("replace config");
    text
}

/// `require = "groups"`: a member of a required group enrols at login; a non-member and a
/// member of an exempt group pass with `nullok`. Membership is looked up at check time.
#[test]
fn group_requirement_enrols_members_at_login_and_lets_others_pass_with_nullok() {
    let staff = Group::create();
    let robots = Group::create();
    let member = User::create();
    let outsider = User::create();
    let exempt = User::create();
    staff.add(&member);
    staff.add(&exempt);
    robots.add(&exempt);
    let s = Stack::start_with(groups_config(&[staff.name()], &[robots.name()]), "");
    let nullok = PamService::twostep(s.bus.address(), "nullok");

    assert_passes_without_prompt(&nullok, &outsider);
    assert_passes_without_prompt(&nullok, &exempt);
    // Control: without nullok a not-enrolled user is refused.
    s.pam.auth(outsider.name()).run().assert_refused();
    let st = s.ctl.status(&outsider);
    assert_eq!(st["required"], false, "{st}");
    assert_eq!(s.ctl.status(&exempt)["required"], false);

    let e = flows::enrol_at_login(&nullok, member.name());
    e.run.assert_success();
    assert!(e.first_prompt.contains(ENROL_PROMPT), "{}", e.run);
    let st = s.ctl.status(&member);
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(st["required"], true, "{st}");
    let why = show(&s, &member);
    assert!(str_of(&why, "why").contains(staff.name()), "{why}");
    nullok
        .login(member.name(), &e.enrolled.code_after(1))
        .assert_success();

    // Joining the group later makes the requirement apply at the next login.
    staff.add(&outsider);
    assert_must_enrol(&nullok, &outsider);
}

/// An admin's `exempt` override wins over a required group; `default` gives the decision
/// back to the config; `require` wins over not being in any group.
#[test]
fn exempt_override_wins_over_the_group() {
    let staff = Group::create();
    let member = User::create();
    let outsider = User::create();
    staff.add(&member);
    let s = Stack::start_with(groups_config(&[staff.name()], &[]), "");
    let nullok = PamService::twostep(s.bus.address(), "nullok");
    assert_must_enrol(&nullok, &member);

    let out = s.ctl.run(None, &["user", "exempt", member.name()], b"");
    assert!(out.success(), "{out}");
    assert!(
        out.stdout.contains(member.name()),
        "messages name the user:\n{out}"
    );
    assert_passes_without_prompt(&nullok, &member);
    let v = show(&s, &member);
    assert_eq!(v["required"], false, "{v}");
    assert_eq!(str_of(&v, "override"), "exempt", "{v}");
    assert!(str_of(&v, "why").contains("override"), "{v}");

    let out = s.ctl.run(None, &["user", "default", member.name()], b"");
    assert!(out.success(), "{out}");
    assert_must_enrol(&nullok, &member);

    assert_passes_without_prompt(&nullok, &outsider);
    let out = s.ctl.run(None, &["user", "require", outsider.name()], b"");
    assert!(out.success(), "{out}");
    assert_must_enrol(&nullok, &outsider);
    assert_eq!(str_of(&show(&s, &outsider), "override"), "required");
}

/// `user reset` (lost phone): the user's key and recovery codes are forgotten, and since
/// 2FA is required they enrol again at their next login through libpam.
#[test]
fn admin_reset_forces_re_enrolment_at_next_login() {
    let s = Stack::start_with(config().set("policy", "require", "\"all\""), "");
    let user = User::create();
    let (old, old_codes) = flows::enroll_json(&s.ctl, &user);
    s.pam.login(user.name(), &old_codes[0]).assert_success();

    let out = s.ctl.run(None, &["user", "reset", user.name()], b"");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(user.name()), "{out}");
    let st = s.ctl.status(&user);
    assert_eq!(st["enrolled"], false, "{st}");
    assert_eq!(u64_of(&st, "recovery_codes_left"), 0, "{st}");

    let e = flows::enrol_at_login(&s.pam, user.name());
    e.run.assert_success();
    assert_ne!(
        e.enrolled.secret, old.secret,
        "re-enrolment must make a new key"
    );
    assert_eq!(e.recovery_codes.len(), CODES, "{}", e.run);

    // Only the new factors work.
    s.pam
        .login(user.name(), &old_codes[1])
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(user.name(), &old.code_after(1))
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(user.name(), &e.enrolled.code_after(1))
        .assert_success();
    let v = show(&s, &user);
    let events = v["events"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(
        events
            .iter()
            .any(|e| e["what"].as_str().is_some_and(|w| w.contains("reset"))),
        "the reset should be in the user's events: {v}"
    );
}

/// Every admin command, run by a user outside the admin group, is refused by the daemon
/// (exit 1, a permission message; raw D-Bus calls get AccessDenied) and changes nothing.
/// A member of `admin_group` is allowed — until removed from the group.
#[test]
fn non_admins_are_refused_and_admin_group_members_are_allowed() {
    let admins = Group::create();
    let admin = User::create();
    let mallory = User::create();
    let victim = User::create();
    admins.add(&admin);
    let s = Stack::start_with(
        config().set("policy", "admin_group", &format!("\"{}\"", admins.name())),
        "",
    );
    s.ctl.enroll(&victim);
    let v = victim.name();

    let commands: Vec<Vec<&str>> = vec![
        vec!["user", "list"],
        vec!["user", "list", "--json"],
        vec!["user", "show", v],
        vec!["user", "reset", v],
        vec!["user", "disable", v],
        vec!["user", "require", v],
        vec!["user", "exempt", v],
        vec!["user", "default", v],
        vec!["user", "allow-toggle", v],
        vec!["user", "deny-toggle", v],
        vec!["user", "unlock", v],
        vec!["locks"],
        vec!["locks", "--json"],
        vec!["reload"],
    ];
    for args in &commands {
        let out = paced(
            || s.ctl.run(Some(mallory.creds()), args, b""),
            |out| out.stderr.contains("slow down") || out.stderr.contains("Error.Busy"),
        );
        assert_permission_refused(&out);
        assert!(!out.stdout.contains(v), "{out}");
    }
    // The daemon refuses, not just the CLI.
    let name = format!("string:{v}");
    let raw: Vec<(&str, Vec<String>)> = vec![
        ("ListUsers", vec![]),
        ("ShowUser", vec![name.clone()]),
        ("ResetUser", vec![name.clone()]),
        ("DisableUser", vec![name.clone()]),
        ("SetRequirement", vec![name.clone(), "string:exempt".into()]),
        ("SetMayToggle", vec![name.clone(), "string:allow".into()]),
        ("Unlock", vec![name.clone()]),
        ("Reload", vec![]),
    ];
    for (method, args) in &raw {
        let member = format!("org.twostep.Admin1.{method}");
        let err = paced(
            || flows::call(s.bus.address(), Some(mallory.creds()), &member, args),
            |r| {
                r.as_ref()
                    .is_err_and(|e| e.contains("org.twostep.Error.Busy"))
            },
        )
        .expect_err(&format!("{method} as a non-admin"));
        assert!(
            err.contains("org.twostep.Error.AccessDenied"),
            "{method}: {err}"
        );
    }
    let st = show(&s, &victim);
    assert_eq!(st["enrolled"], true, "{st}");
    assert_eq!(str_of(&st, "override"), "default", "{st}");
    assert_eq!(st["may_toggle"], true, "{st}");

    // The admin group member may.
    let out = s
        .ctl
        .run(Some(admin.creds()), &["user", "list", "--json"], b"");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(v), "{out}");
    for args in [
        vec!["user", "deny-toggle", v],
        vec!["user", "require", v],
        vec!["reload"],
        vec!["locks", "--json"],
    ] {
        let out = s.ctl.run(Some(admin.creds()), &args, b"");
        assert!(out.success(), "admin-group member refused:\n{out}");
    }
    let st = show(&s, &victim);
    assert_eq!(st["may_toggle"], false, "{st}");
    assert_eq!(str_of(&st, "override"), "required", "{st}");
    let out = s.ctl.run(Some(admin.creds()), &["user", "reset", v], b"");
    assert!(out.success(), "{out}");
    assert_eq!(show(&s, &victim)["enrolled"], false);

    // Membership is checked at call time.
    admins.remove(&admin);
    let out = s.ctl.run(Some(admin.creds()), &["user", "list"], b"");
    assert_permission_refused(&out);
}

/// `user list --json` and `user show --json` parse and report enrolment, requirement and
/// why, override, recovery codes, lock, last success and failure, and (show) the events,
/// with the PAM service and remote host of a login. Unknown users and usage errors get
/// exit codes 1 and 2.
#[test]
fn user_list_and_show_json_report_the_right_fields() {
    let staff = Group::create();
    let enrolled = User::create();
    let forced = User::create();
    staff.add(&enrolled);
    let s = Stack::start_with(groups_config(&[staff.name()], &[]), "");
    let key = s.ctl.enroll(&enrolled);
    s.pam
        .auth(enrolled.name())
        .answer(key.wrong_code())
        .item("rhost", "198.51.100.7")
        .run()
        .assert_refused();
    s.pam
        .auth(enrolled.name())
        .answer(key.code_after(1))
        .item("rhost", "198.51.100.7")
        .run()
        .assert_success();
    let out = s.ctl.run(None, &["user", "require", forced.name()], b"");
    assert!(out.success(), "{out}");

    let out = s.ctl.run(None, &["user", "list", "--json"], b"");
    assert!(out.success(), "{out}");
    let list: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let users = list
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"));
    let find = |u: &User| {
        users
            .iter()
            .find(|x| x["user"] == u.name())
            .unwrap_or_else(|| panic!("{} not listed:\n{out}", u.name()))
            .clone()
    };
    let recent = otp::now() - 120;
    let e = find(&enrolled);
    for key in [
        "user",
        "enrolled",
        "pending_enrollment",
        "recovery_codes_left",
        "required",
        "why",
        "override",
        "may_toggle",
        "failures",
        "locked_until",
        "last_success",
        "last_failure",
    ] {
        assert!(e.get(key).is_some(), "list entry lacks {key}: {e}");
    }
    assert_eq!(e["enrolled"], true, "{e}");
    assert_eq!(e["required"], true, "{e}");
    assert!(str_of(&e, "why").contains(staff.name()), "{e}");
    assert_eq!(str_of(&e, "override"), "default", "{e}");
    assert_eq!(u64_of(&e, "recovery_codes_left"), CODES as u64, "{e}");
    assert_eq!(u64_of(&e, "failures"), 0, "{e}");
    assert_eq!(twostep_e2e::json::time(&e, "locked_until"), 0, "{e}");
    assert!(twostep_e2e::json::time(&e, "last_success") >= recent, "{e}");
    assert!(twostep_e2e::json::time(&e, "last_failure") >= recent, "{e}");
    assert!(e.get("error").is_none_or(|x| x == ""), "{e}");

    let f = find(&forced);
    assert_eq!(f["enrolled"], false, "{f}");
    assert_eq!(f["required"], true, "{f}");
    assert_eq!(str_of(&f, "override"), "required", "{f}");
    assert!(str_of(&f, "why").contains("override"), "{f}");
    assert_eq!(twostep_e2e::json::time(&f, "last_success"), 0, "{f}");

    let v = show(&s, &enrolled);
    assert_eq!(v["user"], enrolled.name(), "{v}");
    assert_eq!(v["enrolled"], true, "{v}");
    let events = v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events: {v}"));
    for ev in events {
        assert!(twostep_e2e::json::time(ev, "at") >= recent, "{v}");
        assert!(ev["what"].is_string(), "{v}");
    }
    let whats: Vec<&str> = events.iter().filter_map(|e| e["what"].as_str()).collect();
    assert!(whats.iter().any(|w| w.contains("enrolled")), "{whats:?}");
    assert!(
        events.iter().any(|e| e["kind"] == "success"
            && e["service"] == s.pam.name()
            && e["rhost"] == "198.51.100.7"),
        "the login success with its service and rhost should be an event: {v}"
    );
    assert!(whats.iter().any(|w| w.contains("fail")), "{whats:?}");
    let f = show(&s, &forced);
    let whats: Vec<&str> = f["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{f}"))
        .iter()
        .filter_map(|e| e["what"].as_str())
        .collect();
    assert!(
        whats
            .iter()
            .any(|w| w.contains("require") && w.contains("by root")),
        "the admin action and who did it should be an event: {whats:?}"
    );

    // The readable forms name the users too.
    let table = s.ctl.run(None, &["user", "list"], b"");
    assert!(table.success(), "{table}");
    assert!(
        table.stdout.contains(enrolled.name()) && table.stdout.contains(forced.name()),
        "{table}"
    );
    let text = s.ctl.run(None, &["user", "show", enrolled.name()], b"");
    assert!(
        text.success() && text.stdout.contains("198.51.100.7"),
        "{text}"
    );

    // Exit codes: an unknown user is a refusal (1) naming the user; usage errors are 2.
    let out = s.ctl.run(None, &["user", "show", "ts_no_such_user_x"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains("ts_no_such_user_x"), "{out}");
    for args in [
        &["user", "show"][..],
        &["user", "frobnicate", "x"],
        &["user", "list", "--bogus"],
    ] {
        let out = s.ctl.run(None, args, b"");
        assert_eq!(out.status.code(), Some(2), "{out}");
    }
}

/// A user locked after `max_failures` wrong codes: `locks --json` lists them (and no one
/// else).
#[test]
fn locks_json_lists_a_locked_user() {
    let s = Stack::start_with(config().set("lockout", "max_failures", "2"), "");
    let locked = User::create();
    let fine = User::create();
    let key = s.ctl.enroll(&locked);
    let fine_key = s.ctl.enroll(&fine);
    s.pam
        .login(fine.name(), &fine_key.code_after(1))
        .assert_success();

    let out = s.ctl.run(None, &["locks", "--json"], b"");
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout.trim(), "[]", "nobody is locked yet:\n{out}");

    for _ in 0..2 {
        s.pam
            .login(locked.name(), &key.wrong_code())
            .assert_refused();
    }
    s.pam
        .login(locked.name(), &key.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);

    let out = s.ctl.run(None, &["locks", "--json"], b"");
    assert!(out.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let list = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array:\n{out}"));
    assert_eq!(list.len(), 1, "{out}");
    assert_eq!(list[0]["user"], locked.name(), "{out}");
    assert!(
        twostep_e2e::json::time(&list[0], "locked_until") > otp::now(),
        "{out}"
    );
    assert_eq!(u64_of(&list[0], "failures"), 2, "{out}");

    let text = s.ctl.run(None, &["locks"], b"");
    assert!(text.success(), "{text}");
    assert!(text.stdout.contains(locked.name()), "{text}");
    assert!(!text.stdout.contains(fine.name()), "{text}");
}

/// `user unlock` clears a lock: the right code, refused while locked (and not spent),
/// works afterwards.
#[test]
fn unlock_clears_a_lock() {
    let s = Stack::start_with(config().set("lockout", "max_failures", "2"), "");
    let user = User::create();
    let key = s.ctl.enroll(&user);
    for _ in 0..2 {
        s.pam.login(user.name(), &key.wrong_code()).assert_refused();
    }
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_refused_with(strerror::MAXTRIES);
    let st = s.ctl.status(&user);
    assert!(
        twostep_e2e::json::time(&st, "locked_until") > otp::now(),
        "{st}"
    );
    let last_failure = twostep_e2e::json::time(&st, "last_failure");

    let out = s.ctl.run(None, &["user", "unlock", user.name()], b"");
    assert!(out.success(), "{out}");
    assert!(out.stdout.contains(user.name()), "{out}");
    let st = s.ctl.status(&user);
    assert_eq!(twostep_e2e::json::time(&st, "locked_until"), 0, "{st}");
    assert_eq!(u64_of(&st, "failures"), 0, "{st}");
    // The summary agrees with the events (issue 20 item 20): the failures happened, and
    // the unlock does not make "Last failure" say never.
    assert_eq!(
        twostep_e2e::json::time(&st, "last_failure"),
        last_failure,
        "{st}"
    );
    let show = s.ctl.run(None, &["user", "show", user.name()], b"");
    assert!(show.success(), "{show}");
    assert!(show.stdout.contains("failed attempt"), "{show}");
    assert!(!show.stdout.contains("Last failure:     never"), "{show}");
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_success();
    let out = s.ctl.run(None, &["locks", "--json"], b"");
    assert_eq!(out.stdout.trim(), "[]", "{out}");
}

/// The user's own `disable` is refused while policy requires 2FA for them or an admin
/// denied toggling (the code given is not even spent); allowed otherwise.
#[test]
fn self_disable_follows_requirement_and_toggle_settings() {
    let staff = Group::create();
    let user = User::create();
    let s = Stack::start_with(groups_config(&[staff.name()], &[]), "");
    let key = s.ctl.enroll(&user);
    let code = key.code_after(1);
    let disable = |s: &Stack| {
        s.ctl.run(
            Some(user.creds()),
            &["disable"],
            format!("{code}\n").as_bytes(),
        )
    };

    let out = s.ctl.run(None, &["user", "deny-toggle", user.name()], b"");
    assert!(out.success(), "{out}");
    assert_eq!(s.ctl.status(&user)["may_toggle"], false);
    let out = disable(&s);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains("does not let you"), "{out}");
    assert_eq!(s.ctl.status(&user)["enrolled"], true);

    let out = s.ctl.run(None, &["user", "allow-toggle", user.name()], b"");
    assert!(out.success(), "{out}");
    staff.add(&user);
    let st = s.ctl.status(&user);
    assert_eq!(st["required"], true, "{st}");
    assert_eq!(st["may_toggle"], false, "{st}");
    let out = disable(&s);
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(out.stderr.contains("required"), "{out}");
    assert_eq!(s.ctl.status(&user)["enrolled"], true);

    staff.remove(&user);
    let out = disable(&s);
    assert!(
        out.success(),
        "the refused attempts must not have spent the code:\n{out}"
    );
    assert_eq!(s.ctl.status(&user)["enrolled"], false);
}

/// The 1-based line of the first line of `text` containing `needle`, and the 1-based
/// column where `value` starts on it.
fn position(text: &str, needle: &str, value: &str) -> (usize, usize) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in:\n{text}"));
    (i + 1, line.find(value).expect("value on the line") + 1)
}

/// `twostepctl reload` with a broken file: exit 1 with `file:line:col: message`, and the old
/// policy stays in force (status and the login path). A valid file is then put in force;
/// users who enrolled keep 2FA when the requirement is switched off.
#[test]
fn ctl_reload_refuses_a_broken_file_and_keeps_the_old_policy() {
    let all = config().set("policy", "require", "\"all\"");
    let s = Stack::start_with(all.clone(), "");
    let nullok = PamService::twostep(s.bus.address(), "nullok");
    let plain = User::create();
    let enrolled = User::create();
    let key = s.ctl.enroll(&enrolled);
    assert_eq!(s.ctl.status(&plain)["required"], true);

    let broken = all.clone().set("policy", "require", "\"sometimes\"");
    let text = rewrite_config(&s, &broken);
    let (line, col) = position(&text, "require = \"sometimes\"", "\"sometimes\"");
    let out = s.ctl.run(None, &["reload"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    let at = format!("{}:{line}:{col}:", s.daemon.config_path().display());
    assert!(
        out.stderr.contains(&at),
        "expected {at:?} in the message:\n{out}"
    );
    assert!(out.stderr.contains("sometimes"), "{out}");

    assert_eq!(
        s.ctl.status(&plain)["required"],
        true,
        "old policy must stay"
    );
    assert_must_enrol(&nullok, &plain);

    // A syntax error is refused the same way.
    rewrite_config(&s, &all);
    let path = s.daemon.config_path().to_path_buf();
    let mut text = std::fs::read_to_string(&path).expect("config");
    text.push_str("\n[policy\n");
    std::fs::write(&path, &text).expect("write");
    let out = s.ctl.run(None, &["reload"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr.contains(&format!("{}:", path.display())),
        "{out}"
    );
    assert_eq!(s.ctl.status(&plain)["required"], true);

    // Control: a valid file is put in force.
    rewrite_config(&s, &config().set("policy", "require", "\"none\""));
    let out = s.ctl.run(None, &["reload"], b"");
    assert!(out.success(), "{out}");
    assert_eq!(s.ctl.status(&plain)["required"], false);
    assert_passes_without_prompt(&nullok, &plain);
    // Enrolled users keep using 2FA when the requirement is switched off.
    nullok
        .login(enrolled.name(), &key.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    nullok
        .login(enrolled.name(), &key.code_after(1))
        .assert_success();
}

/// SIGHUP with a broken file: the daemon logs the refusal, keeps running and keeps the old
/// policy; a valid file is put in force by the next SIGHUP.
#[test]
fn sighup_with_a_broken_file_keeps_the_old_policy() {
    let all = config().set("policy", "require", "\"all\"");
    let mut s = Stack::start_with(all.clone(), "");
    let user = User::create();
    let pid = s.daemon.pid().expect("daemon pid");
    let refusals = |s: &Stack| s.daemon.log().matches("reload refused").count();

    let text = rewrite_config(&s, &all.clone().set("policy", "require", "\"sometimes\""));
    let (line, col) = position(&text, "require = \"sometimes\"", "\"sometimes\"");
    proc::signal(pid, "HUP");
    let logged = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        refusals(&s) == 1
    });
    assert!(
        logged,
        "no refusal logged after SIGHUP:\n{}",
        s.daemon.log()
    );
    let at = format!("{}:{line}:{col}:", s.daemon.config_path().display());
    assert!(
        s.daemon.log().contains(&at),
        "expected {at:?}:\n{}",
        s.daemon.log()
    );
    assert!(s.daemon.is_running(), "{}", s.daemon.log());
    assert_eq!(
        s.ctl.status(&user)["required"],
        true,
        "old policy must stay"
    );

    // Control: a valid file is put in force by SIGHUP.
    rewrite_config(&s, &config().set("policy", "require", "\"none\""));
    proc::signal(pid, "HUP");
    let applied = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        s.ctl.status(&user)["required"] == false
    });
    assert!(
        applied,
        "SIGHUP did not apply a valid file:\n{}",
        s.daemon.log()
    );

    // And a broken one after that keeps *that* policy.
    rewrite_config(&s, &all.set("policy", "require", "\"sometimes\""));
    proc::signal(pid, "HUP");
    let logged = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        refusals(&s) == 2
    });
    assert!(logged, "{}", s.daemon.log());
    assert_eq!(s.ctl.status(&user)["required"], false);
    assert!(s.daemon.is_running(), "{}", s.daemon.log());
}

/// The roll-out view (issue 20 item 7): `user list --pending` lists the users the policy
/// requires who have no second factor yet — members of a required group found through
/// NSS (its member list, and accounts whose primary group it is), and users an admin
/// required by override — and not the enrolled, the exempt or those not required.
#[test]
fn user_list_pending_shows_required_users_who_have_not_enrolled() {
    let staff = Group::create();
    let robots = Group::create();
    let (enrolled, waiting, exempt, outsider, forced) = (
        User::create(),
        User::create(),
        User::create(),
        User::create(),
        User::create(),
    );
    for u in [&enrolled, &waiting, &exempt] {
        staff.add(u);
    }
    robots.add(&exempt);
    let s = Stack::start_with(groups_config(&[staff.name()], &[robots.name()]), "");
    s.ctl.enroll(&enrolled);
    let out = s.ctl.run(None, &["user", "require", forced.name()], b"");
    assert!(out.success(), "{out}");

    let pending = |s: &Stack| -> Vec<String> {
        let out = s
            .ctl
            .run(None, &["user", "list", "--pending", "--json"], b"");
        assert!(out.success(), "{out}");
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("one JSON document");
        v.as_array()
            .expect("a list")
            .iter()
            .map(|u| str_of(u, "user").to_owned())
            .collect()
    };
    let names = pending(&s);
    assert!(names.contains(&waiting.name().to_owned()), "{names:?}");
    assert!(names.contains(&forced.name().to_owned()), "{names:?}");
    for u in [&enrolled, &exempt, &outsider] {
        assert!(
            !names.contains(&u.name().to_owned()),
            "{}: {names:?}",
            u.name()
        );
    }
    let text = s.ctl.run(None, &["user", "list", "--pending"], b"");
    assert!(text.success(), "{text}");
    assert!(
        text.stdout.contains(waiting.name())
            && text.stdout.contains(&format!("group {}", staff.name()))
            && text
                .stdout
                .contains("required users without a second factor"),
        "{text}"
    );
    // Not an admin: refused.
    let out = s
        .ctl
        .run(Some(waiting.creds()), &["user", "list", "--pending"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");

    // A group that is the users' primary group (useradd -N: "users"), not in its member
    // list: found through /etc/passwd.
    let getent = proc::run(
        {
            let mut c = proc::command(None, "getent");
            c.args(["group", &outsider.gid().to_string()]);
            c
        },
        b"",
        Duration::from_secs(10),
    );
    getent.assert_success();
    let primary = getent.stdout.split(':').next().unwrap().to_owned();
    let s = Stack::start_with(groups_config(&[&primary], &[]), "");
    let names = pending(&s);
    assert!(names.contains(&outsider.name().to_owned()), "{names:?}");
}
