// SPDX-License-Identifier: MIT OR Apache-2.0
//! Enrolment end to end (issue 3): `twostepctl enroll` with piped input and its QR codes,
//! recovery codes at login, moving to a new phone, switching off, enrolment inside a
//! login, and what one user can (not) do to another. Real dbus-daemon with the shipped
//! policy, the built `twostepd`, `libpam_twostep.so` under pamtester, codes from oathtool,
//! QR codes read back with zbarimg.
//!
//! Time: TOTP steps last 30 s. Enrolments confirm with the code of the step before now
//! (after making sure the current step has 5 s left), so the current and the next step
//! (`code_after(1)`, `code_after(2)`) are free for logins without waiting for the clock.
//! Recovery codes cost ~30 ms of argon2id each in the daemon, so configs ask for 3.
#![forbid(unsafe_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use twostep_e2e::ctl::Enrolled;
use twostep_e2e::flows::{self, ACK_PROMPT, ENROL_PROMPT};
use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, qr, unique, DaemonConfig, PamService, Stack, User};

/// Recovery codes per enrolment in these tests (the daemon's default is 10).
const CODES: usize = 3;

fn config() -> DaemonConfig {
    DaemonConfig::default().set("recovery", "count", &CODES.to_string())
}

fn u64_of(v: &serde_json::Value, key: &str) -> u64 {
    v.get(key)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("{key} is not an unsigned number: {v}"))
}

/// A temp dir the user may write into (for `--qr-file`).
fn user_dir(user: &User) -> tempfile::TempDir {
    let dir = unique::temp_dir("qr");
    std::os::unix::fs::chown(dir.path(), Some(user.uid()), Some(user.gid())).expect("chown");
    dir
}

#[track_caller]
fn assert_recovery_codes(codes: &[String], context: &str) {
    assert_eq!(
        codes.len(),
        CODES,
        "expected {CODES} recovery codes:\n{context}"
    );
    for c in codes {
        assert!(flows::is_recovery_code(c), "{c:?}:\n{context}");
    }
    let mut unique = codes.to_vec();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), codes.len(), "duplicate codes:\n{context}");
}

/// The human flow: QR code, key in groups of four, URI, one code typed through a pipe,
/// recovery codes; then the key works for a login through libpam.
#[test]
fn enrol_with_piped_input_then_log_in() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let t = flows::enroll_text(&s.ctl, &user, &[]);
    let out = &t.output;

    // Key grouped in fours: upper-case base32, every group 4 long but the last.
    let groups: Vec<&str> = t.key_grouped.split(' ').collect();
    assert!(groups.len() >= 8, "{out}");
    for (i, g) in groups.iter().enumerate() {
        assert!(
            g.len() == 4 || (i == groups.len() - 1 && !g.is_empty() && g.len() < 4),
            "key not grouped in fours: {:?}\n{out}",
            t.key_grouped
        );
        assert!(
            g.bytes()
                .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)),
            "{out}"
        );
    }
    assert!(t.qr.is_some(), "no QR code drawn:\n{out}");
    assert_recovery_codes(&t.recovery_codes, &out.to_string());

    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(status["pending_enrollment"], false, "{status}");
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        CODES as u64,
        "{status}"
    );

    let e = &t.enrolled;
    s.pam
        .login(user.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam.login(user.name(), &e.code_after(1)).assert_success();

    // A second enrol does not replace an active key: it points at `reset`.
    let again = s.ctl.run(Some(user.creds()), &["enroll", "--json"], b"");
    assert_eq!(again.status.code(), Some(1), "{again}");
    assert!(again.stderr.contains("reset"), "{again}");
    s.pam.login(user.name(), &e.code_after(2)).assert_success();
}

/// A wrong code during `enroll` gets a clear message and another try; the key is active
/// only after the right one.
#[test]
fn enroll_asks_again_after_a_wrong_code() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let pending = flows::begin_json(&s.ctl, &user, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll refused:\n{out}"));
    let now = otp::settled_step(pending.key.period, Duration::from_secs(5));
    let mut key = pending.key.clone();
    key.confirmed_step = now - 1;
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(status["pending_enrollment"], true, "{status}");

    let wrong = key.wrong_code();
    let right = key.code_at_step(now - 1);
    let out = pending.answer(&format!("{wrong}\n{right}"));
    assert!(out.success(), "{out}");
    assert!(out.stderr.contains("not right"), "{out}");
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], true, "{status}");
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_success();
}

/// Starting enrolment again replaces the pending key: the first key's code no longer
/// confirms, the second one's does.
#[test]
fn starting_enrolment_again_replaces_the_pending_key() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let first = flows::begin_json(&s.ctl, &user, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll refused:\n{out}"));
    let first_key = first.key.clone();
    drop(first); // the user walks away: the key stays pending
    assert_eq!(s.ctl.status(&user)["pending_enrollment"], true);

    let second = flows::begin_json(&s.ctl, &user, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll again refused:\n{out}"));
    assert_ne!(second.key.secret, first_key.secret);
    let now = otp::settled_step(second.key.period, Duration::from_secs(5));
    let mut key = second.key.clone();
    key.confirmed_step = now - 1;
    let out = second.answer(&format!(
        "{}\n{}",
        first_key.code_at_step(now - 1),
        key.code_at_step(now - 1)
    ));
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains("not right"),
        "the replaced key's code must not confirm:\n{out}"
    );
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_success();
}

/// The terminal QR code and the `--qr-file` PNG decode (with zbarimg) to exactly the URI
/// twostepctl printed, which names issuer, user, key and every parameter; the SVG is an
/// SVG picture, written only for the user.
#[test]
fn qr_codes_decode_to_the_exact_uri() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let dir = user_dir(&user);
    let png = dir.path().join("key.png");
    let t = flows::enroll_text(&s.ctl, &user, &["--qr-file", &png.to_string_lossy()]);
    let out = &t.output;

    let secret = flows::ungroup(&t.key_grouped);
    let expected_prefix = format!("otpauth://totp/twostep-test:{}?", user.name());
    assert!(t.uri.starts_with(&expected_prefix), "{}\n{out}", t.uri);
    for (k, v) in [
        ("secret", secret.as_str()),
        ("issuer", "twostep-test"),
        ("algorithm", "SHA1"),
        ("digits", "6"),
        ("period", "30"),
    ] {
        assert_eq!(
            flows::uri_param(&t.uri, k).as_deref(),
            Some(v),
            "{k} in {}",
            t.uri
        );
    }

    // The terminal picture: a 4-module quiet zone of light (block) cells all round.
    let qr_text =
        t.qr.clone()
            .unwrap_or_else(|| panic!("no QR code in the output:\n{out}"));
    let lines: Vec<&str> = qr_text.lines().collect();
    for line in &lines[..2] {
        assert!(
            line.chars().all(|c| c == '█'),
            "quiet zone on top:\n{qr_text}"
        );
    }
    for line in &lines[..lines.len() - 1] {
        let chars: Vec<char> = line.chars().collect();
        assert!(
            chars[..4].iter().all(|c| *c == '█')
                && chars[chars.len() - 4..].iter().all(|c| *c == '█'),
            "quiet zone left and right:\n{qr_text}"
        );
    }
    let from_terminal = qr::decode_terminal(&qr_text, dir.path())
        .unwrap_or_else(|e| panic!("terminal QR code unreadable: {e}\n{qr_text}"));
    assert_eq!(from_terminal, vec![t.uri.clone()], "terminal QR code");

    // The PNG file: 0600, the user's, decodes to the same URI.
    let meta = std::fs::metadata(&png).unwrap_or_else(|e| panic!("{}: {e}\n{out}", png.display()));
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "the picture holds the key"
    );
    assert_eq!(meta.uid(), user.uid());
    assert!(std::fs::read(&png)
        .expect("read png")
        .starts_with(b"\x89PNG\r\n\x1a\n"));
    let from_png = qr::zbarimg(&png).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(from_png, vec![t.uri.clone()], "PNG QR code");
    // The key works.
    s.pam
        .login(user.name(), &t.enrolled.code_after(1))
        .assert_success();

    // SVG by extension, with --no-qr: no picture in the terminal, the file is an SVG.
    let other = User::create();
    let dir2 = user_dir(&other);
    let svg = dir2.path().join("key.svg");
    let t2 = flows::enroll_text(
        &s.ctl,
        &other,
        &["--no-qr", "--qr-file", &svg.to_string_lossy()],
    );
    assert!(t2.qr.is_none(), "--no-qr drew a QR code:\n{}", t2.output);
    let text = std::fs::read_to_string(&svg)
        .unwrap_or_else(|e| panic!("{}: {e}\n{}", svg.display(), t2.output));
    assert!(
        text.trim_start().starts_with("<?xml") || text.trim_start().starts_with("<svg"),
        "{text}"
    );
    assert!(
        text.contains("<svg") && text.trim_end().ends_with("</svg>"),
        "{text}"
    );
    let meta = std::fs::metadata(&svg).expect("svg metadata");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // An unknown extension is a clear refusal, and nothing is enrolled.
    let third = User::create();
    let bad = s.ctl.run(
        Some(third.creds()),
        &["enroll", "--json", "--qr-file", "/tmp/key.gif"],
        b"",
    );
    assert_eq!(bad.status.code(), Some(1), "{bad}");
    assert!(
        bad.stderr.contains(".png") && bad.stderr.contains(".svg"),
        "{bad}"
    );
    assert_eq!(s.ctl.status(&third)["enrolled"], false);
}

/// A recovery code opens the prompt once; the module then says how many are left
/// (PAM_TEXT_INFO: pamtester prints it on stdout). The same code again is refused.
#[test]
fn recovery_code_logs_in_once_and_says_how_many_are_left() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let (_key, codes) = flows::enroll_json(&s.ctl, &user);
    assert_recovery_codes(&codes, "enroll --json");

    let run = s.pam.login(user.name(), &codes[0]);
    run.assert_success();
    let left = format!("{} recovery codes left", CODES - 1);
    assert!(
        run.output.stdout.contains(&left),
        "expected {left:?} as info:\n{run}"
    );
    // Few left: the user is told how to make new ones.
    assert!(
        run.output.stdout.contains("twostepctl recovery-codes"),
        "expected a warning with {} codes left:\n{run}",
        CODES - 1
    );

    let again = s.pam.login(user.name(), &codes[0]);
    again.assert_refused_with(strerror::AUTH_ERR);
    let status = s.ctl.status(&user);
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        (CODES - 1) as u64,
        "{status}"
    );
    assert_eq!(u64_of(&status, "failures"), 1, "{status}");

    // The others still work, and the count goes down.
    let run = s.pam.login(user.name(), &codes[1]);
    run.assert_success();
    assert!(
        run.output
            .stdout
            .contains(&format!("{} recovery code left", CODES - 2)),
        "{run}"
    );
}

/// Several logins race with the same recovery code: exactly one gets in.
#[test]
fn racing_logins_with_one_recovery_code_admit_exactly_one() {
    const RACERS: usize = 6;
    // Room for every losing racer's failure without a lock changing the verdicts.
    let s = Stack::start_with(config().set("lockout", "max_failures", "20"), "");
    let user = User::create();
    let (_key, codes) = flows::enroll_json(&s.ctl, &user);
    let code = codes[0].clone();

    let barrier = std::sync::Barrier::new(RACERS);
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..RACERS)
            .map(|_| {
                let (barrier, pam, code, name) = (&barrier, &s.pam, &code, user.name());
                scope.spawn(move || {
                    barrier.wait();
                    pam.login(name, code)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .collect()
    });
    let won = runs.iter().filter(|r| r.succeeded()).count();
    let transcript: String = runs.iter().map(|r| format!("{r}\n")).collect();
    assert_eq!(
        won, 1,
        "exactly one login may spend the code:\n{transcript}"
    );
    for r in runs.iter().filter(|r| !r.succeeded()) {
        assert_eq!(r.pam_error(), Some(strerror::AUTH_ERR), "{r}");
    }
    let status = s.ctl.status(&user);
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        (CODES - 1) as u64,
        "{status}"
    );
}

/// `reset` (new phone): the old key keeps working while the new one is pending; after
/// the new one is confirmed only the new one works, and the recovery codes stay.
///
/// Runs with `window = 2` so five distinct time steps are usable without waiting.
#[test]
fn reset_keeps_the_old_key_until_the_new_one_is_confirmed() {
    let s = Stack::start_with(config().set("totp", "window", "2"), "");
    let user = User::create();
    let old = s.ctl.enroll_with_offset(&user, -2);
    let c = old.confirmed_step + 2; // now

    // Proof: the old app's code.
    let pending = flows::begin_json(&s.ctl, &user, "reset", Some(&old.code_at_step(c - 1)))
        .unwrap_or_else(|out| panic!("reset refused a valid proof:\n{out}"));
    assert_ne!(pending.key.secret, old.secret, "reset must make a new key");
    assert!(
        twostep_e2e::json::time(&pending.json, "expires") > 0,
        "{}",
        pending.json
    );
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(status["pending_enrollment"], true, "{status}");

    // While the new key waits for its first code, the old one still logs in.
    s.pam
        .login(user.name(), &old.code_at_step(c))
        .assert_success();

    let (new, out, second) = pending.confirm_at(c + 1);
    assert!(out.success(), "confirming the new key failed:\n{out}");
    let second = second.unwrap_or_else(|| panic!("no confirmation line:\n{out}"));
    assert_eq!(second["active"], true, "{out}");
    assert_eq!(
        second["recovery_codes"].as_array().map(Vec::len),
        Some(0),
        "a new phone gets no new recovery codes:\n{out}"
    );

    // Only the new key now: the old key's next code (never used, inside the window) is
    // refused, the new key's is accepted.
    s.pam
        .login(user.name(), &old.code_at_step(c + 2))
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(user.name(), &new.code_at_step(c + 2))
        .assert_success();
    let status = s.ctl.status(&user);
    assert_eq!(status["pending_enrollment"], false, "{status}");
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        CODES as u64,
        "{status}"
    );
}

/// What a person does: `twostepctl reset`, type the old app's current code, scan, type
/// the new app's current code — all within one 30 s step. The new key's code was never
/// used, so it must be accepted.
#[test]
fn reset_accepts_the_new_apps_code_from_the_same_time_step_as_the_proof() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let old = s.ctl.enroll(&user);
    let now = old.confirmed_step + 1;
    let pending = flows::begin_json(&s.ctl, &user, "reset", Some(&old.code_at_step(now)))
        .unwrap_or_else(|out| panic!("reset refused a valid proof:\n{out}"));
    let (new, out, _) = pending.confirm_at(now);
    assert!(
        out.success(),
        "the new app's current code was refused after proving with the old app's code of \
         the same time step:\n{out}"
    );
    s.pam
        .login(user.name(), &new.code_at_step(now + 1))
        .assert_success();
}

/// `reset` with a recovery code as proof spends that code; with a wrong proof nothing
/// starts.
#[test]
fn reset_with_a_recovery_code_spends_it_and_a_wrong_proof_starts_nothing() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let (old, codes) = flows::enroll_json(&s.ctl, &user);

    let refused = flows::begin_json(&s.ctl, &user, "reset", Some(&old.wrong_code()));
    let out = match refused {
        Ok(p) => panic!("reset accepted a wrong proof: {}", p.json),
        Err(out) => out,
    };
    assert_eq!(out.status.code(), Some(1), "{out}");
    let status = s.ctl.status(&user);
    assert_eq!(status["pending_enrollment"], false, "{status}");

    let pending = flows::begin_json(&s.ctl, &user, "reset", Some(&codes[0]))
        .unwrap_or_else(|out| panic!("reset refused a recovery code:\n{out}"));
    let now = otp::settled_step(pending.key.period, Duration::from_secs(5));
    let (new, out, _) = pending.confirm_at(now);
    assert!(out.success(), "{out}");
    let status = s.ctl.status(&user);
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        (CODES - 1) as u64,
        "{status}"
    );
    s.pam
        .login(user.name(), &codes[0])
        .assert_refused_with(strerror::AUTH_ERR);
    s.pam
        .login(user.name(), &new.code_at_step(now + 1))
        .assert_success();
}

/// `disable` with a wrong code changes nothing; with the right one 2FA is off.
#[test]
fn disable_with_a_wrong_code_changes_nothing() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let (key, codes) = flows::enroll_json(&s.ctl, &user);

    for wrong in [key.wrong_code(), "aaaaa-bbbbb-ccccc".to_string()] {
        let out = s.ctl.run(
            Some(user.creds()),
            &["disable"],
            format!("{wrong}\n").as_bytes(),
        );
        assert_eq!(out.status.code(), Some(1), "{out}");
        let status = s.ctl.status(&user);
        assert_eq!(status["enrolled"], true, "{status}");
        assert_eq!(
            u64_of(&status, "recovery_codes_left"),
            CODES as u64,
            "{status}"
        );
    }
    // No proof at all: refused as well.
    let out = s.ctl.run(Some(user.creds()), &["disable"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_success();
    s.pam.login(user.name(), &codes[0]).assert_success();

    // Control: the right code switches it off.
    let out = s.ctl.run(
        Some(user.creds()),
        &["disable"],
        format!("{}\n", key.code_after(2)).as_bytes(),
    );
    assert!(out.success(), "{out}");
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(u64_of(&status, "recovery_codes_left"), 0, "{status}");
    // Not enrolled and not required: refused without nullok, as for anyone not enrolled.
    s.pam
        .login(user.name(), &key.code_after(2))
        .assert_refused();
}

/// `recovery-codes` makes a new set (needs a code); the old set dies at once.
#[test]
fn regenerating_recovery_codes_kills_the_old_ones() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let (key, old_codes) = flows::enroll_json(&s.ctl, &user);
    s.pam.login(user.name(), &old_codes[0]).assert_success();

    // Without a valid proof: nothing changes.
    let out = s.ctl.run(
        Some(user.creds()),
        &["recovery-codes", "--json"],
        format!("{}\n", key.wrong_code()).as_bytes(),
    );
    assert_eq!(out.status.code(), Some(1), "{out}");

    let out = s.ctl.run(
        Some(user.creds()),
        &["recovery-codes", "--json"],
        format!("{}\n", key.code_after(1)).as_bytes(),
    );
    assert!(out.success(), "{out}");
    let v: serde_json::Value = serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"));
    let new_codes: Vec<String> = v["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("{out}"))
        .iter()
        .map(|c| c.as_str().expect("string").to_string())
        .collect();
    assert_recovery_codes(&new_codes, &out.to_string());
    assert!(new_codes.iter().all(|c| !old_codes.contains(c)), "{out}");

    let count = s.ctl.run(
        Some(user.creds()),
        &["recovery-codes", "--count", "--json"],
        b"",
    );
    assert!(count.success(), "{count}");
    let v: serde_json::Value = serde_json::from_str(count.stdout.trim()).expect("JSON");
    assert_eq!(u64_of(&v, "recovery_codes_left"), CODES as u64, "{count}");

    for old in &old_codes[1..] {
        s.pam
            .login(user.name(), old)
            .assert_refused_with(strerror::AUTH_ERR);
    }
    let run = s.pam.login(user.name(), &new_codes[0]);
    run.assert_success();
    assert!(
        run.output
            .stdout
            .contains(&format!("{} recovery codes left", CODES - 1)),
        "{run}"
    );
}

/// `[recovery] mode = "disables-2fa"`: a recovery code logs in and switches 2FA off; the
/// user must enrol again.
#[test]
fn disables_2fa_mode_recovery_code_switches_2fa_off() {
    let s = Stack::start_with(config().set("recovery", "mode", "\"disables-2fa\""), "");
    let nullok = PamService::twostep(s.bus.address(), "nullok");
    let user = User::create();
    let (key, codes) = flows::enroll_json(&s.ctl, &user);

    let run = s.pam.login(user.name(), &codes[0]);
    run.assert_success();
    assert!(
        run.output.stdout.contains("twostepctl enroll"),
        "the user should learn 2FA is off and how to set it up again:\n{run}"
    );
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(u64_of(&status, "recovery_codes_left"), 0, "{status}");
    // Off means off: the old key and the other codes are gone; not required, so nullok
    // lets the user through without a prompt.
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_refused();
    s.pam.login(user.name(), &codes[1]).assert_refused();
    nullok.login(user.name(), "").assert_success();
    // And enrolling again works (confirmed with the current step: see
    // `reset_accepts_the_new_apps_code_from_the_same_time_step_as_the_proof` for the
    // previous one).
    let pending = flows::begin_json(&s.ctl, &user, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll after 2FA was switched off:\n{out}"));
    let now = otp::settled_step(pending.key.period, Duration::from_secs(5));
    let (again, out, _) = pending.confirm_at(now);
    assert!(out.success(), "{out}");
    s.pam
        .login(user.name(), &again.code_at_step(now + 1))
        .assert_success();
}

/// `require = "all"`: a user without a second factor enrols inside the login. One echo-off
/// prompt carries the QR code, the key and "Code from your app: "; one echo-on prompt
/// carries the recovery codes; then the login succeeds and the user is enrolled.
#[test]
fn enrolment_at_login_shows_qr_and_recovery_codes_then_logs_in() {
    let s = Stack::start_with(config().set("policy", "require", "\"all\""), "");
    let user = User::create();
    let e = flows::enrol_at_login(&s.pam, user.name());
    e.run.assert_success();
    let first = &e.first_prompt;

    // The QR code in the prompt decodes to an otpauth URI of this user with the key shown.
    let qr_text = qr::find_terminal_qr(first)
        .unwrap_or_else(|| panic!("no QR code with the enrolment prompt:\n{}", e.run));
    let dir = unique::temp_dir("qr");
    let decoded = qr::decode_terminal(&qr_text, dir.path())
        .unwrap_or_else(|err| panic!("QR code in the prompt unreadable: {err}\n{qr_text}"));
    assert_eq!(decoded.len(), 1, "{decoded:?}");
    let uri = &decoded[0];
    assert!(
        uri.starts_with(&format!("otpauth://totp/twostep-test:{}?", user.name())),
        "{uri}"
    );
    assert_eq!(
        flows::uri_param(uri, "secret").as_deref(),
        Some(e.enrolled.secret.as_str())
    );
    // Text and prompt travel in one conversation call: the prompt ends the QR/key text.
    let qr_at = first.find(&qr_text).expect("QR in text");
    let prompt_at = first.rfind(ENROL_PROMPT).expect("prompt in text");
    assert!(qr_at < prompt_at, "{first}");

    assert_recovery_codes(&e.recovery_codes, &e.run.to_string());
    assert!(e.second_prompt.contains(ACK_PROMPT), "{}", e.run);

    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(status["required"], true, "{status}");
    assert_eq!(
        u64_of(&status, "recovery_codes_left"),
        CODES as u64,
        "{status}"
    );
    // The key and the recovery codes shown are the real ones.
    s.pam
        .login(user.name(), &e.enrolled.code_after(1))
        .assert_success();
    let run = s.pam.login(user.name(), &e.recovery_codes[0]);
    run.assert_success();
    assert!(
        run.output
            .stdout
            .contains(&format!("{} recovery codes left", CODES - 1)),
        "{run}"
    );
}

/// Issue 20, item 4: wrong codes at the enrolment prompt may be retried inside the same
/// login (three tries in all, never charged); after the last one the login is refused with
/// a hint that is not the circular "run `twostepctl enroll`", the user stays unenrolled, and
/// the key is kept: the next login shows the same key, whose code then enrols.
#[test]
fn wrong_codes_at_the_enrolment_prompt_keep_the_key_for_the_next_login() {
    let s = Stack::start_with(config().set("policy", "require", "\"all\""), "");
    let user = User::create();
    let mut p = flows::start_login_enrolment(&s.pam, user.name());
    let now = otp::settled_step(p.key.period, Duration::from_secs(5));
    let mut key: Enrolled = p.key.clone();
    key.confirmed_step = now - 1;
    for (i, left) in [(1, "2 tries left"), (2, "1 try left")] {
        p.run.write_line(key.wrong_code());
        p.run
            .wait_for(flows::TIMEOUT, |_, err| {
                err.matches(ENROL_PROMPT).count() == i + 1 && err.contains(left)
            })
            .unwrap_or_else(|t| panic!("no second chance ({left}):\n{t}"));
    }
    p.run.write_line(key.wrong_code());
    let run = twostep_e2e::PamRun::from_output(p.run.finish(flows::TIMEOUT), &s.pam);
    run.assert_refused_with(strerror::AUTH_ERR);
    assert!(!run.output.stderr.contains(ACK_PROMPT), "{run}");
    let said = run.conversation();
    assert!(said.contains("Your key stays ready"), "{run}");
    assert!(
        !said.contains("twostepctl enroll"),
        "the hint must not be the circular `twostepctl enroll`:\n{run}"
    );

    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], false, "{status}");
    assert_eq!(u64_of(&status, "failures"), 0, "{status}");
    // The key is no factor: its code alone does not log in (the login enrols instead) …
    // … and the next login shows the very same key, saying so; its code enrols.
    let next = flows::start_login_enrolment(&s.pam, user.name());
    assert_eq!(next.key.secret, key.secret, "the pending key must be kept");
    assert!(
        next.text.contains("same key as at your last login"),
        "{}",
        next.text
    );
    drop(next);
    let e = flows::enrol_at_login(&s.pam, user.name());
    e.run.assert_success();
    assert_eq!(e.enrolled.secret, key.secret);
    assert_eq!(s.ctl.status(&user)["enrolled"], true);
}

/// Issue 20, item 4: one wrong code, then the right one, in the same login: enrolled.
#[test]
fn a_wrong_code_at_the_enrolment_prompt_may_be_retried_in_the_same_login() {
    let s = Stack::start_with(config().set("policy", "require", "\"all\""), "");
    let user = User::create();
    let mut p = flows::start_login_enrolment(&s.pam, user.name());
    let step = otp::settled_step(p.key.period, Duration::from_secs(5)) - 1;
    let mut key: Enrolled = p.key.clone();
    key.confirmed_step = step;
    p.run.write_line(key.wrong_code());
    p.run
        .wait_for(flows::TIMEOUT, |_, err| {
            err.matches(ENROL_PROMPT).count() == 2
        })
        .unwrap_or_else(|t| panic!("no second chance:\n{t}"));
    p.run.write_line(key.code_at_step(step));
    p.run.expect_stderr(ACK_PROMPT);
    p.run.write_line("");
    let run = twostep_e2e::PamRun::from_output(p.run.finish(flows::TIMEOUT), &s.pam);
    run.assert_success();
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], true, "{status}");
    assert_eq!(u64_of(&status, "failures"), 0, "{status}");
    s.pam
        .login(user.name(), &key.code_at_step(step + 1))
        .assert_success();
}

/// The issue: a client that cannot show text, or a user who answers the enrolment prompt
/// with nothing, gets a clear refusal that names `twostepctl enroll`.
#[test]
fn an_empty_answer_at_the_enrolment_prompt_names_twostepctl_enroll() {
    let s = Stack::start_with(config().set("policy", "require", "\"all\""), "");
    let user = User::create();
    let run = s.pam.auth(user.name()).answer("").run();
    run.assert_refused();
    assert!(
        run.output.stderr.contains(ENROL_PROMPT),
        "expected the enrolment prompt first:\n{run}"
    );
    let status = s.ctl.status(&user);
    assert_eq!(status["enrolled"], false, "{status}");
    let after_prompt = run
        .output
        .stderr
        .rsplit(ENROL_PROMPT)
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        after_prompt.contains("twostepctl enroll"),
        "the refusal after an empty answer should name `twostepctl enroll`; it said:\n{after_prompt}\n{run}"
    );
    // … and not only that, which is circular for a required user with no other way in
    // (issue 20, item 4): the next login shows the key again.
    assert!(
        after_prompt.contains("log in again and set it up"),
        "{after_prompt}\n{run}"
    );
}

/// Self-service acts on the caller's own account, decided by the uid the bus reports:
/// there is no way to name another user. Called with dbus-send as user A, each User1
/// method either acts on A or is refused, and B's state and codes are untouched; A may
/// not even begin B's login check.
#[test]
fn a_user_cannot_enrol_reset_or_disable_another_user() {
    let s = Stack::start_with(config().set("lockout", "max_failures", "20"), "");
    let a = User::create();
    let b = User::create();
    let key_a = s.ctl.enroll(&a);
    let (key_b, codes_b) = flows::enroll_json(&s.ctl, &b);
    let addr = s.bus.address();
    let as_a = Some(a.creds());
    let b_code = key_b.code_after(1);
    let b_proofs = [
        flows::bytes_arg(b_code.as_bytes()),
        flows::bytes_arg(codes_b[0].as_bytes()),
    ];

    // There is no CLI flag for another user.
    for args in [
        &["enroll", "--user", b.name()][..],
        &["disable", b.name()][..],
        &["status", b.name()][..],
    ] {
        let out = s.ctl.run(as_a, args, b"");
        assert_eq!(out.status.code(), Some(2), "usage error expected:\n{out}");
    }

    // B's proofs are checked against A's factors (and fail): B is untouched.
    for proof in &b_proofs {
        for member in [
            "org.twostep.User1.EnrollBegin",
            "org.twostep.User1.Disable",
            "org.twostep.User1.RegenerateRecoveryCodes",
        ] {
            let r = flows::call(addr, as_a, member, std::slice::from_ref(proof));
            let err = r.expect_err(&format!("{member} as A with B's proof must fail"));
            assert!(
                err.contains("org.twostep.Error.WrongCode"),
                "{member}: {err}"
            );
        }
    }
    // Confirm with B's code: A has nothing pending.
    let err = flows::call(
        addr,
        as_a,
        "org.twostep.User1.EnrollConfirm",
        &[b_proofs[0].clone()],
    )
    .expect_err("EnrollConfirm without a pending key");
    assert!(err.contains("NoPendingEnrollment"), "{err}");
    // A's status is A's.
    let st = flows::call(addr, as_a, "org.twostep.User1.Status", &[]).expect("status");
    assert!(st.contains("enrolled"), "{st}");

    let status_b = s.ctl.status(&b);
    assert_eq!(status_b["enrolled"], true, "{status_b}");
    assert_eq!(status_b["pending_enrollment"], false, "{status_b}");
    assert_eq!(u64_of(&status_b, "failures"), 0, "{status_b}");
    assert_eq!(
        u64_of(&status_b, "recovery_codes_left"),
        CODES as u64,
        "{status_b}"
    );
    let status_a = s.ctl.status(&a);
    assert!(
        u64_of(&status_a, "failures") >= 6,
        "A paid for the attempts: {status_a}"
    );

    // With A's own proof, the methods act on A: the new key is A's, and disabling switches
    // A off, not B.
    let a_code = key_a.code_after(1);
    let reply = flows::call(
        addr,
        as_a,
        "org.twostep.User1.EnrollBegin",
        &[flows::bytes_arg(a_code.as_bytes())],
    )
    .unwrap_or_else(|e| panic!("A's own reset: {e}"));
    assert!(
        reply.contains(&format!("twostep-test:{}?", a.name())) && !reply.contains(b.name()),
        "{reply}"
    );
    let reply = flows::call(
        addr,
        as_a,
        "org.twostep.User1.Disable",
        &[flows::bytes_arg(key_a.code_after(2).as_bytes())],
    );
    reply.unwrap_or_else(|e| panic!("A's own disable: {e}"));
    assert_eq!(s.ctl.status(&a)["enrolled"], false);
    // A first enrolment (no proof) is A's too.
    let reply = flows::call(
        addr,
        as_a,
        "org.twostep.User1.EnrollBegin",
        &[flows::bytes_arg(b"")],
    )
    .unwrap_or_else(|e| panic!("A's own enrolment: {e}"));
    assert!(
        reply.contains(&format!("twostep-test:{}?", a.name())) && !reply.contains(b.name()),
        "{reply}"
    );
    assert_eq!(s.ctl.status(&a)["pending_enrollment"], true);
    let status_b = s.ctl.status(&b);
    assert_eq!(status_b["enrolled"], true, "{status_b}");
    assert_eq!(status_b["pending_enrollment"], false, "{status_b}");

    // A may not run B's login check at all.
    let err = flows::call(
        addr,
        as_a,
        "org.twostep.Login1.Begin",
        &[
            format!("string:{}", b.name()),
            "dict:string:string:service,x".into(),
        ],
    )
    .expect_err("Login1.Begin for B as A");
    assert!(err.contains("org.twostep.Error.AccessDenied"), "{err}");

    // B's code and recovery code were never spent by any of this.
    s.pam.login(b.name(), &b_code).assert_success();
    let run = s.pam.login(b.name(), &codes_b[0]);
    run.assert_success();
}

/// Nothing returns a confirmed secret: not status (CLI, JSON, raw D-Bus), not the admin
/// views, not a second EnrollBegin, not the daemon's log. Recovery codes neither.
#[test]
fn no_method_returns_a_confirmed_secret() {
    let s = Stack::start_with(config(), "");
    let user = User::create();
    let (key, codes) = flows::enroll_json(&s.ctl, &user);
    s.pam
        .login(user.name(), &key.code_after(1))
        .assert_success();
    s.pam.login(user.name(), &codes[0]).assert_success();
    let addr = s.bus.address();

    let mut said: Vec<(String, String)> = Vec::new();
    let mut ctl = |label: &str, creds, args: &[&str]| {
        let out = s.ctl.run(creds, args, b"");
        said.push((label.to_string(), format!("{}{}", out.stdout, out.stderr)));
    };
    ctl("status", Some(user.creds()), &["status"]);
    ctl("status --json", Some(user.creds()), &["status", "--json"]);
    ctl(
        "recovery-codes --count",
        Some(user.creds()),
        &["recovery-codes", "--count"],
    );
    ctl("enroll again", Some(user.creds()), &["enroll", "--json"]);
    ctl("user show", None, &["user", "show", user.name()]);
    ctl(
        "user show --json",
        None,
        &["user", "show", user.name(), "--json"],
    );
    ctl("user list --json", None, &["user", "list", "--json"]);
    ctl("user list", None, &["user", "list"]);
    ctl("locks --json", None, &["locks", "--json"]);
    let raw = |member: &str, creds: Option<twostep_e2e::Creds>, args: &[String]| match flows::call(
        addr, creds, member, args,
    ) {
        Ok(r) | Err(r) => r,
    };
    said.push((
        "User1.Status".into(),
        raw("org.twostep.User1.Status", Some(user.creds()), &[]),
    ));
    said.push((
        "User1.EnrollBegin (no proof)".into(),
        raw(
            "org.twostep.User1.EnrollBegin",
            Some(user.creds()),
            &[flows::bytes_arg(b"")],
        ),
    ));
    said.push((
        "Admin1.ShowUser".into(),
        raw(
            "org.twostep.Admin1.ShowUser",
            None,
            &[format!("string:{}", user.name())],
        ),
    ));
    said.push((
        "Admin1.ListUsers".into(),
        raw("org.twostep.Admin1.ListUsers", None, &[]),
    ));
    said.push((
        "Introspect".into(),
        raw("org.freedesktop.DBus.Introspectable.Introspect", None, &[]),
    ));
    said.push(("twostepd log".into(), s.daemon.log()));

    let secret = key.secret.to_uppercase();
    let grouped: String = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    for (label, text) in &said {
        let upper = text.to_uppercase();
        assert!(
            !upper.contains(&secret) && !upper.contains(&grouped) && !upper.contains(&secret[..16]),
            "{label} shows the secret:\n{text}"
        );
        for c in &codes {
            assert!(
                !text.contains(c.as_str()),
                "{label} shows a recovery code:\n{text}"
            );
            assert!(
                !text.contains(&c.replace('-', "")),
                "{label} shows a recovery code:\n{text}"
            );
        }
    }
    // The probes really reached the daemon (a broken probe would prove nothing).
    let show = &said
        .iter()
        .find(|(l, _)| l == "user show --json")
        .expect("probe")
        .1;
    assert!(show.contains("\"enrolled\":true"), "{show}");
    let again = &said
        .iter()
        .find(|(l, _)| l == "enroll again")
        .expect("probe")
        .1;
    assert!(again.contains("reset"), "{again}");
}
