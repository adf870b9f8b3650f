// SPDX-License-Identifier: MIT OR Apache-2.0
//! Migrating from libpam-google-authenticator and pam_oath (issue 16): enrolments made and
//! used by the real programs and modules (`google-authenticator`, `pam_google_authenticator`,
//! `pam_oath` through pamtester) are imported with `twostepctl admin import`, and then the
//! same authenticator codes (from `oathtool`) log in through libpam and pam_twostep.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use twostep_e2e::documented::{self, DocStack};
use twostep_e2e::homes::HomeUser;
use twostep_e2e::otp::{self, Algorithm};
use twostep_e2e::{logins, proc, unique, Output, PamService, Stack, User};

/// Run `google-authenticator` as `u` with `args`, writing `~/.google_authenticator`
/// (answering "n" to the questions `-c` still asks).
fn make_ga_file(u: &HomeUser, args: &[&str]) -> PathBuf {
    let path = u.home().join(".google_authenticator");
    let mut cmd = u.user.command("google-authenticator");
    cmd.args(args)
        .args(["-f", "-q", "-C", "-Q", "NONE", "-s"])
        .arg(&path);
    let out = proc::run(cmd, b"n\nn\nn\n", Duration::from_secs(20));
    assert!(path.exists(), "google-authenticator wrote nothing:\n{out}");
    path
}

/// The base32 secret (first line) and the scratch codes of a google-authenticator file.
fn ga_secret_and_codes(path: &Path) -> (String, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let secret = lines.next().unwrap().to_string();
    let codes = lines
        .filter(|l| l.len() == 8 && l.bytes().all(|b| b.is_ascii_digit()))
        .map(str::to_owned)
        .collect();
    (secret, codes)
}

fn code_at_step(secret: &str, step: u64) -> String {
    otp::totp_at_step(secret, Algorithm::Sha1, 6, 30, step)
}

/// `twostepctl admin import …` as root.
fn import(s: &Stack, args: &[&str]) -> Output {
    let mut all = vec!["admin", "import"];
    all.extend_from_slice(args);
    s.ctl.run(None, &all, b"")
}

/// Whether the daemon has an authenticator for `name` (`user show --json`).
fn enrolled(s: &Stack, name: &str) -> bool {
    let out = s.ctl.run(None, &["user", "show", name, "--json"], b"");
    assert!(out.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    v["enrolled"] == "yes" || v["enrolled"] == true
}

/// The line of `out` that starts with `name:`.
fn line_of<'a>(out: &'a Output, name: &str) -> &'a str {
    out.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no line for {name}:\n{out}"))
}

#[test]
fn a_google_authenticator_enrolment_keeps_its_codes_replay_mark_and_scratch_codes() {
    let s = Stack::start();
    let u = HomeUser::create();
    let name = u.name().to_owned();
    let path = make_ga_file(
        &u,
        &["-t", "-d", "-r", "3", "-R", "30", "-w", "3", "-e", "5"],
    );
    let (secret, codes) = ga_secret_and_codes(&path);
    assert_eq!(codes.len(), 5);

    // The user logs in once through pam_google_authenticator: it records the step.
    let step = otp::settled_step(30, Duration::from_secs(25));
    let ga = PamService::new(&format!(
        "auth required pam_google_authenticator.so secret={} noskewadj\n\
         account required pam_permit.so\n",
        path.display()
    ));
    ga.login(&name, &code_at_step(&secret, step))
        .assert_success();
    let used = std::fs::read(&path).unwrap();
    assert!(
        String::from_utf8_lossy(&used).contains(&format!("\" DISALLOW_REUSE {step}")),
        "{}",
        String::from_utf8_lossy(&used)
    );

    // A dry run says what would happen and changes nothing.
    let dry = import(
        &s,
        &[
            "google-authenticator",
            "--dry-run",
            "--user",
            &name,
            path.to_str().unwrap(),
        ],
    );
    assert!(dry.success(), "{dry}");
    assert!(
        line_of(&dry, &name).contains("would-import (1 authenticator(s), 5 recovery code(s))"),
        "{dry}"
    );
    assert!(
        dry.stdout.contains("RATE_LIMIT"),
        "the rate limit difference is reported:\n{dry}"
    );
    assert!(!enrolled(&s, &name));

    let out = import(
        &s,
        &[
            "google-authenticator",
            "--user",
            &name,
            path.to_str().unwrap(),
        ],
    );
    assert!(out.success(), "{out}");
    assert!(line_of(&out, &name).contains(": imported"), "{out}");
    assert!(
        out.stdout.contains("Summary: 1 imported; 0 skipped."),
        "{out}"
    );
    assert!(
        !out.stdout.contains(&secret) && !out.stdout.contains(&codes[0]),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        used,
        "the original file is never changed"
    );
    assert!(enrolled(&s, &name));

    // The step google-authenticator used is refused; the next one logs in.
    s.pam
        .login(&name, &code_at_step(&secret, step))
        .assert_refused();
    s.pam
        .login(&name, &code_at_step(&secret, step + 1))
        .assert_success();
    // A scratch code logs in once.
    s.pam.login(&name, &codes[2]).assert_success();
    s.pam.login(&name, &codes[2]).assert_refused();

    // Again (the user's own file, by --user alone): the user is enrolled, nothing changes,
    // and that is not a failure.
    let again = import(&s, &["google-authenticator", "--user", &name]);
    assert!(again.success(), "{again}");
    assert!(
        line_of(&again, &name).contains("skipped, already enrolled"),
        "{again}"
    );
    s.pam.login(&name, &codes[2]).assert_refused();

    // Replace: the twostep replay mark (step + 1) and the spent code stay.
    let replaced = import(
        &s,
        &[
            "google-authenticator",
            "--replace",
            "--user",
            &name,
            path.to_str().unwrap(),
        ],
    );
    assert!(replaced.success(), "{replaced}");
    assert!(
        line_of(&replaced, &name).contains("replaced (1 authenticator(s), 4 recovery code(s))"),
        "{replaced}"
    );
    s.pam
        .login(&name, &code_at_step(&secret, step + 1))
        .assert_refused();
    s.pam.login(&name, &codes[2]).assert_refused();
    s.pam.login(&name, &codes[3]).assert_success();
}

#[test]
fn unsafe_malformed_and_counter_based_files_are_reported_and_skipped() {
    let s = Stack::start();
    let good = HomeUser::create();
    let readable = HomeUser::create();
    let malformed = HomeUser::create();
    let hotp = HomeUser::create();
    let linked = HomeUser::create();
    let good_path = make_ga_file(&good, &["-t", "-d", "-e", "2"]);
    let p = make_ga_file(&readable, &["-t", "-d"]);
    unique::chmod(&p, 0o644);
    let p = make_ga_file(&malformed, &["-t", "-d"]);
    unique::chmod(&p, 0o600);
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("not a scratch code\n");
    std::fs::write(&p, text).unwrap();
    make_ga_file(&hotp, &["-c"]);
    // A link to another user's file: the importer never follows it.
    std::os::unix::fs::symlink(&good_path, linked.home().join(".google_authenticator")).unwrap();
    std::os::unix::fs::lchown(
        linked.home().join(".google_authenticator"),
        Some(linked.user.uid()),
        None,
    )
    .unwrap();
    let paths: Vec<PathBuf> = [&good, &readable, &malformed, &hotp, &linked]
        .iter()
        .map(|u| u.home().join(".google_authenticator"))
        .collect();
    let before: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();

    let mut args = vec!["google-authenticator"];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    let out = import(&s, &args);
    assert!(!out.success(), "skips are a failure:\n{out}");
    assert!(line_of(&out, good.name()).contains("imported"), "{out}");
    for (u, want) in [
        (&readable, "skipped, unsafe: "),
        (&malformed, "skipped, malformed: "),
        (&hotp, "skipped, unsupported: "),
        (&linked, "skipped, unsafe: "),
    ] {
        let line = line_of(&out, u.name());
        assert!(line.contains(want), "{line}");
        assert!(!enrolled(&s, u.name()), "{line}");
    }
    assert!(
        line_of(&out, readable.name()).contains("permissions 0644"),
        "{out}"
    );
    assert!(line_of(&out, malformed.name()).contains("line "), "{out}");
    assert!(line_of(&out, hotp.name()).contains("HOTP"), "{out}");
    assert!(
        line_of(&out, linked.name()).contains("symbolic link"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("Summary: 1 imported; 4 skipped (1 malformed, 2 unsafe, 1 unsupported)."),
        "{out}"
    );
    let after: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert_eq!(before, after, "no file is changed");

    // Every user's file through NSS: ours are found by their home directories. (Other
    // tests' users have no file; the summary counts may include theirs.)
    let all = import(&s, &["google-authenticator", "--dry-run"]);
    assert!(
        line_of(&all, good.name()).contains("skipped, already enrolled"),
        "{all}"
    );
    assert!(
        line_of(&all, readable.name()).contains("skipped, unsafe: "),
        "{all}"
    );
    assert!(
        line_of(&all, hotp.name()).contains("skipped, unsupported: "),
        "{all}"
    );

    // The daemon decides by the caller's uid: a user importing their own file is refused.
    let own = [
        "admin",
        "import",
        "google-authenticator",
        "--user",
        good.name(),
        good_path.to_str().unwrap(),
    ];
    let out = s.ctl.run(Some(good.user.creds()), &own, b"");
    assert!(
        !out.success() && out.stderr.contains("may not administer"),
        "{out}"
    );

    // A file of no user's home needs --user.
    let dir = unique::temp_dir("loose");
    let loose = dir.path().join("ga");
    std::fs::copy(&good_path, &loose).unwrap();
    let out = import(&s, &["google-authenticator", loose.to_str().unwrap()]);
    assert!(!out.success() && out.stderr.contains("--user"), "{out}");
}

#[test]
fn a_pam_oath_usersfile_keeps_its_codes_and_last_used_step() {
    let s = Stack::start();
    let used = User::create();
    let fresh = User::create();
    let counter = User::create();
    let (k1, k2) = (
        "3132333435363738393031323334353637383930",
        "00112233445566778899aabbccddeeff",
    );
    let dir = unique::temp_dir("oath");
    let file = dir.path().join("users.oath");
    std::fs::write(
        &file,
        format!(
            "# pam_oath users\nHOTP/T30 {} - {k1}\nHOTP/T30/6 {} - {k2}\nHOTP {} - {k1}\n",
            used.name(),
            fresh.name(),
            counter.name()
        ),
    )
    .unwrap();
    unique::chmod(&file, 0o600);
    let b32 = |hex: &str| {
        let out = proc::run(
            {
                let mut c = proc::command(None, "oathtool");
                c.args(["--totp", "-v", hex]);
                c
            },
            b"",
            Duration::from_secs(10),
        );
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Base32 secret: "))
            .unwrap()
            .to_owned()
    };
    let (s1, s2) = (b32(k1), b32(k2));

    // One login through pam_oath writes the last-use fields for `used`.
    let step = otp::settled_step(30, Duration::from_secs(25));
    let oath = PamService::new(&format!(
        "auth required pam_oath.so usersfile={} window=1\naccount required pam_permit.so\n",
        file.display()
    ));
    oath.login(used.name(), &code_at_step(&s1, step))
        .assert_success();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(used.name()) && l.ends_with('L')),
        "{text}"
    );

    let dry = import(&s, &["oath", "--dry-run", file.to_str().unwrap()]);
    assert!(line_of(&dry, used.name()).contains("would-import"), "{dry}");
    assert!(!enrolled(&s, used.name()) && !enrolled(&s, fresh.name()));

    let out = import(&s, &["oath", file.to_str().unwrap()]);
    assert!(!out.success(), "the HOTP user is not imported:\n{out}");
    assert!(
        line_of(&out, used.name()).contains("imported (1 authenticator(s), 0 recovery code(s))"),
        "{out}"
    );
    assert!(line_of(&out, fresh.name()).contains("imported"), "{out}");
    assert!(
        line_of(&out, counter.name()).contains("skipped, unsupported: line 4"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("Summary: 2 imported; 1 skipped (1 unsupported)."),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        text,
        "the usersfile is never changed"
    );

    // pam_oath's last step is refused; the next logs in. The other user's current code works.
    s.pam
        .login(used.name(), &code_at_step(&s1, step))
        .assert_refused();
    s.pam
        .login(used.name(), &code_at_step(&s1, step + 1))
        .assert_success();
    s.pam
        .login(fresh.name(), &code_at_step(&s2, step + 1))
        .assert_success();
    assert!(!enrolled(&s, counter.name()));

    // Idempotent: nothing changes on a second run.
    let again = import(&s, &["oath", file.to_str().unwrap()]);
    assert!(
        line_of(&again, used.name()).contains("skipped, already enrolled"),
        "{again}"
    );
    s.pam
        .login(used.name(), &code_at_step(&s1, step + 1))
        .assert_refused();

    // A usersfile others may read is refused as a whole.
    unique::chmod(&file, 0o644);
    let out = import(&s, &["oath", "--dry-run", file.to_str().unwrap()]);
    assert!(
        !out.success() && out.stderr.contains("unsafe: permissions 0644"),
        "{out}"
    );
}

/// The side-by-side stack docs/migrating.md shows, as documented (rendered onto the test's
/// bus): twostep answers for its users, the old module for the others, and nobody passes
/// with less than before.
#[test]
fn the_documented_side_by_side_stack_never_lowers_a_users_factors() {
    let s = Stack::start();
    let block = documented::blocks(Path::new("docs/migrating.md"))
        .into_iter()
        .find(|b| b.contains("pam_twostep.so") && b.contains("pam_google_authenticator.so"))
        .expect("docs/migrating.md shows the side-by-side stack");
    let stack = PamService::new(&DocStack { block }.render(s.bus.address()));
    let with_password = || {
        let u = HomeUser::create();
        let password = format!("Pw-{}-x", unique::random_hex(8));
        logins::set_password(u.name(), &password);
        (u, password)
    };
    let (imported, pw_i) = with_password();
    let (old_only, pw_o) = with_password();
    let (neither, pw_n) = with_password();
    let path_i = make_ga_file(&imported, &["-t", "-d", "-e", "1"]);
    let path_o = make_ga_file(&old_only, &["-t", "-d", "-e", "1"]);
    let (secret_i, _) = ga_secret_and_codes(&path_i);
    let (secret_o, _) = ga_secret_and_codes(&path_o);
    let out = import(&s, &["google-authenticator", path_i.to_str().unwrap()]);
    assert!(out.success(), "{out}");
    let step = otp::settled_step(30, Duration::from_secs(25));
    let login = |u: &HomeUser, answers: &[&str]| {
        let mut a = stack.auth(u.name());
        for x in answers {
            a = a.answer(x);
        }
        a.run()
    };
    let wrong = |secret: &str| {
        otp::wrong_code(
            6,
            &[step - 1, step, step + 1].map(|t| code_at_step(secret, t)),
        )
    };

    // Imported: twostep decides; a wrong code is final (the old module is no second chance,
    // even with the right old code after it).
    login(
        &imported,
        &[&pw_i, &wrong(&secret_i), &code_at_step(&secret_i, step)],
    )
    .assert_refused();
    login(&imported, &[&pw_i, &code_at_step(&secret_i, step)]).assert_success();
    // Not imported: the old module decides, with its own code.
    login(&old_only, &[&pw_o, &wrong(&secret_o)]).assert_refused();
    login(&old_only, &[&pw_o, &code_at_step(&secret_o, step)]).assert_success();
    // Neither: as before (the old line's nullok).
    login(&neither, &[&pw_n]).assert_success();
    // A wrong password never reaches a code.
    let run = login(&old_only, &["wrong", &code_at_step(&secret_o, step + 1)]);
    run.assert_refused();
}
