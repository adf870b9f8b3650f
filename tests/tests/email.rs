// SPDX-License-Identifier: MIT OR Apache-2.0
//! Codes by email and account mail (issue 13), end to end: a real dbus-daemon, the built
//! twostepd and twostepctl, pamtester with the built module, and a real SMTP server on
//! loopback (Debian's python3-aiosmtpd, `twostep_e2e::smtp`) whose messages the tests read
//! back; a STARTTLS server with a self-signed certificate, trusted through `ca_file` or
//! not; a tarpit; a server that rejects with 550; a port nobody listens on. Needs root.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use twostep_e2e::interact::Interactive;
use twostep_e2e::pam::strerror;
use twostep_e2e::smtp::{self, Mode, Smtp, Tarpit};
use twostep_e2e::{DaemonConfig, PamRun, Stack, User};

const SEND_FAILED: &str = "could not send the code; use your authenticator or a recovery code";

/// Email allowed next to TOTP, mail to `mail` (a `[mail]` table), no cooldown unless set.
fn config(mail: &str, cooldown: u64) -> DaemonConfig {
    DaemonConfig::default()
        .set("policy", "methods", "[\"totp\", \"email\"]")
        .raw(&format!("{mail}cooldown_seconds = {cooldown}\n"))
}

fn address(user: &User) -> String {
    format!("{}@example.org", user.name())
}

/// `twostepctl email set` as the user (not a terminal: no second typing, no prompt) — or,
/// for a user who already has a second factor (a change that needs a proof), as root with
/// `--user` — then `email confirm` with the code from the mail as the user. Returns the
/// confirm output.
fn enrol_email(s: &Stack, server: &Smtp, user: &User) -> String {
    let seen = server.messages().len();
    let out = if s.ctl.status(user)["enrolled"] == true {
        s.ctl.run(
            None,
            &["email", "set", "--user", user.name(), &address(user)],
            b"",
        )
    } else {
        s.ctl
            .run(Some(user.creds()), &["email", "set", &address(user)], b"")
    };
    assert!(out.success(), "{out}");
    let first = user.name().chars().next().unwrap();
    assert!(
        out.stdout.contains(&format!("{first}***@example.org")),
        "{out}"
    );
    let mail = server.wait_message(seen);
    assert_eq!(mail.header("To").as_deref(), Some(address(user).as_str()));
    let code = mail
        .code(6)
        .unwrap_or_else(|| panic!("no 6-digit code in the mail:\n{}", mail.raw));
    let out = s
        .ctl
        .run(Some(user.creds()), &["email", "confirm", &code], b"");
    assert!(out.success(), "{out}");
    // The "address added" notice is posted after the answer: wait for it, so that the
    // messages a test counts next are its own.
    let to = address(user);
    let ok = twostep_e2e::proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
        server.messages().iter().any(|m| {
            m.header("To").as_deref() == Some(to.as_str())
                && m.body()
                    .contains("confirmed as a way to receive login codes")
        })
    });
    assert!(ok, "no address-added notice: {:?}", server.messages());
    out.stdout
}

/// Begin a login, wait for `needle` on the conversation.
fn begin(s: &Stack, user: &User, needle: &str) -> Interactive {
    let mut run = s
        .pam
        .auth(user.name())
        .item("rhost", "192.0.2.10")
        .interactive();
    run.expect_stderr(needle);
    run
}

fn finish(s: &Stack, run: Interactive) -> PamRun {
    PamRun::from_output(run.finish(Duration::from_secs(30)), &s.pam)
}

/// A login by emailed code: begin, read the code from the newest mail, answer it.
fn login_by_mail(s: &Stack, server: &Smtp, user: &User) -> (PamRun, String) {
    let seen = server.messages().len();
    let mut run = begin(s, user, "Code sent to ");
    let code = server.wait_message(seen).code(6).expect("code in the mail");
    run.write_line(&code);
    (finish(s, run), code)
}

#[test]
fn email_enrolment_and_login_by_code_once_and_resend_invalidates_the_old_code() {
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let ann = User::create();
    let shown = enrol_email(&s, &server, &ann);
    assert!(shown.contains("Recovery codes"), "{shown}");
    let status = s.ctl.status(&ann);
    assert_eq!(status["email"], address(&ann), "{status}");
    assert_eq!(status["email_pending"], "", "{status}");
    assert_eq!(status["enrolled"], true, "{status}");
    let out = s.ctl.run(None, &["user", "show", ann.name()], b"");
    assert!(out.stdout.contains(&address(&ann)), "{out}");

    // The prompt names the masked address; the right code logs in, once.
    let (run, code) = login_by_mail(&s, &server, &ann);
    run.assert_success();
    assert!(
        run.conversation().contains("a***@example.org")
            || run.conversation().contains("***@example.org"),
        "{}",
        run.conversation()
    );
    let mut again = begin(&s, &ann, "Code sent to ");
    again.write_line(&code);
    finish(&s, again).assert_refused_with(strerror::AUTH_ERR);

    // A new code invalidates the one before: the first conversation's code is refused
    // after a second conversation had a new one sent; the new one works.
    let seen = server.messages().len();
    let mut first = begin(&s, &ann, "Code sent to ");
    let old = server.wait_message(seen).code(6).unwrap();
    let mut second = begin(&s, &ann, "Code sent to ");
    let new = server.wait_message(seen + 1).code(6).unwrap();
    first.write_line(&old);
    finish(&s, first).assert_refused_with(strerror::AUTH_ERR);
    second.write_line(&new);
    finish(&s, second).assert_success();
}

#[test]
fn wrong_email_codes_lock_and_a_locked_user_gets_no_mail() {
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let bob = User::create();
    enrol_email(&s, &server, &bob);
    for _ in 0..5 {
        let mut run = begin(&s, &bob, "Code sent to ");
        run.write_line("000000");
        finish(&s, run).assert_refused();
    }
    // Locked: the lock notice arrived; a login now mails nothing and says locked.
    std::thread::sleep(Duration::from_millis(300));
    let before = server.messages();
    let notice = before.last().unwrap();
    assert!(notice.body().contains("locked"), "{}", notice.raw);
    let run = s.pam.auth(bob.name()).answer("123456").run();
    run.assert_refused_with(strerror::MAXTRIES);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        server.messages().len(),
        before.len(),
        "a locked user got mail"
    );
}

#[test]
fn by_email_at_the_authenticator_prompt_and_account_mail_after_failures() {
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let cat = User::create();
    let phone = s.ctl.enroll(&cat);
    enrol_email(&s, &server, &cat);
    // The email-added notice went to the new address.
    let added = twostep_e2e::proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        server.messages().iter().any(|m| {
            m.body()
                .contains("confirmed as a way to receive login codes")
        })
    });
    assert!(added, "{:?}", server.messages());

    // Two wrong TOTP codes from 192.0.2.10, then a code asked for by email.
    for _ in 0..2 {
        s.pam
            .auth(cat.name())
            .item("rhost", "192.0.2.10")
            .answer(phone.wrong_code())
            .run()
            .assert_refused_with(strerror::AUTH_ERR);
    }
    let mut run = begin(&s, &cat, "type by-email");
    let seen = server.messages().len();
    run.write_line("by-email");
    run.expect_stderr("Code sent to ");
    let code = server.wait_message(seen).code(6).unwrap();
    run.write_line(&code);
    finish(&s, run).assert_success();
    // The login after failed attempts is told, with the count and the source.
    let ok = twostep_e2e::proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        server.messages().iter().any(|m| {
            m.body()
                .contains("2 failed attempt(s) since your last login, the last from 192.0.2.10")
        })
    });
    assert!(ok, "{:?}", server.messages());

    // Removing the address is told to that address, and saying who.
    let n = server.messages().len();
    let out = s
        .ctl
        .run(None, &["email", "remove", "--user", cat.name()], b"");
    assert!(out.success(), "{out}");
    let removed = server.wait_message(n);
    assert!(removed.body().contains("removed"), "{}", removed.raw);
    assert!(
        removed.body().contains("by an administrator"),
        "{}",
        removed.raw
    );
}

#[test]
fn mail_failures_are_a_clear_refusal_within_the_timeout_and_totp_logins_go_on() {
    let good = Smtp::start(Mode::Plain);
    let reject = Smtp::start(Mode::Reject);
    let tarpit = Tarpit::start();
    let closed = smtp::closed_port();
    // Enrol against the good server, then point the daemon at each bad one.
    let mut s = Stack::start_with(config(&good.config(None), 0).set("totp", "window", "2"), "");
    let dan = User::create();
    let totp_user = User::create();
    let phone = s.ctl.enroll(&totp_user);
    enrol_email(&s, &good, &dan);
    let timeout = 2;
    let p = phone.confirmed_step;
    for (i, (what, port)) in [
        ("5xx", reject.port()),
        ("tarpit", tarpit.port()),
        ("down", closed),
    ]
    .into_iter()
    .enumerate()
    {
        s.daemon.stop();
        let text = std::fs::read_to_string(s.daemon.config_path()).unwrap();
        let start = text.find("[mail]").unwrap();
        let text = format!(
            "{}{}cooldown_seconds = 0\n",
            &text[..start],
            smtp::plain_config(port, timeout)
        );
        std::fs::write(s.daemon.config_path(), text).unwrap();
        s.daemon.restart();
        // A TOTP user's login runs while the email login waits for the bad server.
        let t0 = Instant::now();
        let email_login = std::thread::scope(|scope| {
            // No answer typed: the prompt after the failure ends the conversation.
            let h = scope.spawn(|| s.pam.auth(dan.name()).run());
            std::thread::sleep(Duration::from_millis(200));
            let t1 = Instant::now();
            s.pam
                .login(totp_user.name(), &phone.code_at_step(p + 1 + i as u64))
                .assert_success();
            assert!(
                t1.elapsed() < Duration::from_secs(timeout),
                "{what}: TOTP login waited"
            );
            h.join().unwrap()
        });
        let took = t0.elapsed();
        eprintln!("{what}: the email login was refused after {took:?}");
        email_login.assert_refused();
        assert!(
            email_login.conversation().contains(SEND_FAILED)
                || email_login.output.stderr.contains(SEND_FAILED),
            "{what}: {}",
            email_login.conversation()
        );
        assert!(
            took < Duration::from_secs(timeout + 3),
            "{what}: took {took:?}"
        );
        // Nothing was charged: the failure count is still zero.
        let out = s
            .ctl
            .run(None, &["user", "show", dan.name(), "--json"], b"");
        let shown: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
        assert_eq!(shown["failures"].as_u64(), Some(0), "{what}: {shown}");
    }
    assert!(tarpit.accepted() > 0, "the tarpit was never reached");
    assert!(reject.messages().is_empty());
}

#[test]
fn starttls_with_a_trusted_certificate_works_and_an_untrusted_one_is_refused_without_fallback() {
    let server = Smtp::start(Mode::StartTls);
    let ca = server.ca_file();
    let trusted = Stack::start_with(config(&server.config(Some(&ca)), 0), "");
    let eve = User::create();
    enrol_email(&trusted, &server, &eve);
    let out = trusted
        .ctl
        .run(None, &["mail", "test", "postmaster@example.org"], b"");
    assert!(out.success() && out.stdout.contains("250"), "{out}");

    // A server that offers no STARTTLS is refused too: never plain text instead.
    let plain = Smtp::start(Mode::Plain);
    let no_tls = plain
        .config(None)
        .replace("tls = \"none\"", "tls = \"starttls\"");
    let downgrade = Stack::start_with(config(&no_tls, 0), "");
    let out = downgrade
        .ctl
        .run(None, &["mail", "test", "postmaster@example.org"], b"");
    assert!(!out.success(), "{out}");
    assert!(plain.messages().is_empty(), "sent in plain text");

    let untrusted = Stack::start_with(config(&server.config(None), 0), "");
    let n = server.messages().len();
    let out = untrusted
        .ctl
        .run(None, &["mail", "test", "postmaster@example.org"], b"");
    assert!(!out.success(), "{out}");
    assert!(out.stderr.contains("mail test failed"), "{out}");
    assert_eq!(
        server.messages().len(),
        n,
        "a message went through without TLS"
    );
}

#[test]
fn the_throttle_holds_across_a_daemon_restart() {
    let server = Smtp::start(Mode::Plain);
    let mut s = Stack::start_with(config(&server.config(None), 60), "");
    let fay = User::create();
    enrol_email(&s, &server, &fay);
    // The confirming code was the last send: the cooldown runs. A login now, and after a
    // restart, mails nothing and says so.
    let n = server.messages().len();
    s.daemon.restart();
    let mut run = begin(&s, &fay, "Code sent to ");
    let text = run.expect_stderr("check your inbox");
    assert!(text.contains("a code was sent recently"), "{text}");
    run.write_line("000000");
    finish(&s, run).assert_refused();
    std::thread::sleep(Duration::from_millis(300));
    let codes: Vec<_> = server.messages()[n..]
        .iter()
        .filter(|m| m.code(6).is_some() && m.body().contains("valid for"))
        .cloned()
        .collect();
    assert!(codes.is_empty(), "mailed during the cooldown: {codes:?}");
}

#[test]
fn line_breaks_in_an_address_never_reach_a_header() {
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let gil = User::create();
    for bad in [
        format!("{}@example.org\r\nBcc: evil@example.org", gil.name()),
        format!("{}@example.org\nBcc: evil@example.org", gil.name()),
        "-oQ/tmp/x@example.org".to_owned(),
    ] {
        let out = s
            .ctl
            .run(Some(gil.creds()), &["email", "set", "--", &bad], b"");
        assert!(!out.success(), "{bad:?}: {out}");
        assert!(out.stderr.contains("not a usable email address"), "{out}");
    }
    assert!(server.messages().is_empty());
    // A mail that does go out has exactly the headers lettre wrote.
    enrol_email(&s, &server, &gil);
    for m in server.messages() {
        let names = m.header_names();
        assert!(
            !names.iter().any(|n| n.eq_ignore_ascii_case("bcc")),
            "{names:?}"
        );
    }
}

#[test]
fn enrolment_at_login_by_email_through_libpam() {
    let server = Smtp::start(Mode::Plain);
    let config = config(&server.config(None), 0).set("policy", "require", "\"all\"");
    let s = Stack::start_with(config, "");
    let hal = User::create();
    let mut run = begin(&s, &hal, "Choice (1 or 2)");
    run.write_line("2");
    run.expect_stderr("Email address: ");
    run.write_line(address(&hal));
    run.expect_stderr("Code sent to ");
    let code = server.wait_message(0).code(6).unwrap();
    run.write_line(&code);
    run.expect_stderr("recovery codes");
    run.write_line("");
    finish(&s, run).assert_success();
    // The login that enrolled is a successful login (issue 20, item 9).
    let status = s.ctl.status(&hal);
    assert!(
        twostep_e2e::json::time(&status, "last_success") > 0,
        "{status}"
    );
    // Enrolled by email now: the next login mails a code.
    let (run, _) = login_by_mail(&s, &server, &hal);
    run.assert_success();
}

#[test]
fn the_sendmail_transport_through_nullmailer_delivers_a_login_code() {
    let server = Smtp::start(Mode::Plain);
    let mta = smtp::Nullmailer::start(server.port());
    let mail = format!(
        "[mail]\ntransport = \"sendmail\"\nsendmail_command = {:?}\nfrom = \"twostep@test.invalid\"\n",
        mta.sendmail().to_string_lossy()
    );
    let s = Stack::start_with(config(&mail, 0), "");
    let ida = User::create();
    enrol_email(&s, &server, &ida);
    let (run, _) = login_by_mail(&s, &server, &ida);
    run.assert_success();
}

/// Wait (10 s) for a mail to `user` whose body contains `needle`.
#[track_caller]
fn notice(server: &Smtp, needle: &str) -> smtp::Received {
    let mut found = None;
    let ok = twostep_e2e::proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        found = server
            .messages()
            .into_iter()
            .find(|m| m.body().contains(needle));
        found.is_some()
    });
    assert!(ok, "no mail saying {needle:?}: {:?}", server.messages());
    found.unwrap()
}

#[test]
fn account_mail_tells_each_change_and_who_made_it() {
    let server = Smtp::start(Mode::Plain);
    let config = config(&server.config(None), 0)
        .set("totp", "window", "2")
        .set("recovery", "count", "3");
    let s = Stack::start_with(config, "");

    // An email-only user: recovery codes from the confirmation; using one leaves 2.
    let jo = User::create();
    let shown = enrol_email(&s, &server, &jo);
    let codes: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| l.len() > 8 && l.contains('-') && !l.contains(' '))
        .collect();
    assert_eq!(codes.len(), 3, "{shown}");
    let mut run = begin(&s, &jo, "Code sent to ");
    run.write_line(codes[0]);
    finish(&s, run).assert_success();
    let low = notice(&server, "Only 2 recovery code(s) are left");
    assert_eq!(low.header("To").as_deref(), Some(address(&jo).as_str()));
    let subject = low.header("Subject").unwrap_or_default();
    assert!(subject.ends_with("recovery codes running low"), "{subject}");

    // A user with an app and an address: adding an authenticator, then switching off.
    let kim = User::create();
    let phone = s.ctl.enroll(&kim);
    enrol_email(&s, &server, &kim);
    let p = phone.confirmed_step;
    s.ctl
        .add_authenticator(&kim, "tablet", &phone.code_at_step(p + 1));
    let added = notice(&server, "The authenticator app \"tablet\" was added by you");
    assert_eq!(added.header("To").as_deref(), Some(address(&kim).as_str()));
    let out = s.ctl.run(
        Some(kim.creds()),
        &["disable"],
        format!("{}\n", phone.code_at_step(p + 2)).as_bytes(),
    );
    assert!(out.success(), "{out}");
    let off = notice(&server, "switched off or reset by you");
    assert_eq!(off.header("To").as_deref(), Some(address(&kim).as_str()));

    // An admin sets a user's address; only the user can confirm it, with the mailed code;
    // another user may not set it.
    let lee = User::create();
    let out = s.ctl.run(
        Some(kim.creds()),
        &["email", "set", "--user", lee.name(), &address(&lee)],
        b"",
    );
    assert!(!out.success(), "{out}");
    let n = server.messages().len();
    let out = s.ctl.run(
        None,
        &["email", "set", "--user", lee.name(), &address(&lee)],
        b"",
    );
    assert!(
        out.success() && out.stdout.contains("twostepctl email confirm"),
        "{out}"
    );
    let code = server.wait_message(n).code(6).unwrap();
    let out = s
        .ctl
        .run(Some(lee.creds()), &["email", "confirm", &code], b"");
    assert!(out.success(), "{out}");
    notice(&server, "confirmed as a way to receive login codes by you");
    // An admin's reset says so.
    let out = s.ctl.run(None, &["user", "reset", lee.name()], b"");
    assert!(out.success(), "{out}");
    let reset = notice(&server, "switched off or reset by an administrator");
    assert_eq!(reset.header("To").as_deref(), Some(address(&lee).as_str()));
}

/// `twostepd --check-config` on `[mail]` settings, the password and CA files among them.
#[test]
fn check_config_validates_the_mail_settings_and_their_files() {
    use twostep_e2e::{artifacts, proc, unique};
    let dir = unique::temp_dir("mailcheck");
    let state = unique::temp_dir("state");
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "secret\n").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let smtp =
        "[mail]\ntransport = \"smtp\"\nhost = \"smtp.example.org\"\nfrom = \"t@example.org\"\n";
    let check = |mail: &str| {
        let text = DaemonConfig::default()
            .set("policy", "methods", "[\"totp\", \"email\"]")
            .raw(mail)
            .render(
                &state.path().join("state"),
                "unix:path=/nonexistent/bus.sock",
            );
        let path = dir.path().join("twostep.toml");
        std::fs::write(&path, text).unwrap();
        let mut cmd = proc::command(None, artifacts::twostepd());
        cmd.arg("--check-config").arg(&path);
        proc::run(cmd, b"", Duration::from_secs(30))
    };
    let pw_line = format!(
        "username = \"u\"\npassword_file = {:?}\n",
        pw.to_string_lossy()
    );
    twostep_e2e::unique::chmod(&pw, 0o644);
    for (mail, needle) in [
        (format!("{smtp}{pw_line}"), "mode 0600 or stricter"),
        (
            format!("{smtp}ca_file = {:?}\n", ca.to_string_lossy()),
            "ca_file",
        ),
        (
            "[mail]\ntransport = \"smtp\"\nhost = \"192.0.2.1\"\ntls = \"none\"\nfrom = \"t@example.org\"\n".into(),
            "only to a loopback address",
        ),
        ("".into(), "needs [mail]"),
        (
            "[mail]\ntransport = \"sendmail\"\nfrom = \"t@example.org\"\nsendmail_command = \"/nonexistent/sendmail\"\n".into(),
            "does not exist",
        ),
    ] {
        let out = check(&mail);
        assert!(!out.success(), "{mail}: {out}");
        assert!(out.stderr.contains(needle) || out.stdout.contains(needle), "{needle}: {out}");
    }
    twostep_e2e::unique::chmod(&pw, 0o600);
    let out = check(&format!("{smtp}{pw_line}"));
    assert!(out.success(), "{out}");
}

/// OpenSSH end to end: Debian's sshd with the password-then-code stack, the real ssh
/// client; the second factor is the code the daemon mailed, read from the mail by the
/// client's askpass.
#[test]
fn login_by_email_code_through_real_sshd() {
    use twostep_e2e::logins::{self, LoginUser};
    use twostep_e2e::sshd::{Methods, Sshd};
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let sshd = Sshd::start(
        Methods::KbdInteractive,
        &logins::password_then_code(s.bus.address(), ""),
    );
    let user = LoginUser::create();
    enrol_email(&s, &server, user.user());
    let seen = server.messages().len();
    let run = sshd.ssh(&user).mail_code(&server.code_script(seen)).run();
    assert!(run.logged_in(), "{run}\n{}", sshd.describe());
    assert!(run.prompted("Code sent to "), "{run}");
    // The code went to the user's address once; sshd's service and host are in it.
    let codes: Vec<_> = server.messages()[seen..]
        .iter()
        .filter(|m| m.code(6).is_some())
        .cloned()
        .collect();
    assert_eq!(codes.len(), 1, "{codes:?}");
    assert!(
        codes[0].body().contains("from 127.0.0.1"),
        "{}",
        codes[0].raw
    );
}

/// `twostepctl email set` on a terminal asks for the address again: a difference changes
/// nothing (no mail); the same address twice sends the code and asks for it.
#[test]
fn email_set_on_a_terminal_asks_for_the_address_twice() {
    use twostep_e2e::proc;
    use twostep_e2e::pty::{Dialog, Driver};
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(config(&server.config(None), 0), "");
    let kai = User::create();
    let run_ctl = |dialog: &Dialog| {
        let driver = Driver::new(dialog);
        let c = kai.creds();
        let mut cmd = proc::command(None, "setpriv");
        cmd.arg(format!("--reuid={}", c.uid))
            .arg(format!("--regid={}", c.gid))
            .args(["--clear-groups", "--", "expect"]);
        driver.args(&mut cmd);
        cmd.arg(twostep_e2e::artifacts::twostepctl()).args([
            "--bus",
            s.bus.address(),
            "email",
            "set",
            &address(&kai),
        ]);
        driver.run(cmd)
    };
    let run = run_ctl(
        &Dialog::new()
            .expect("Type the address again: ")
            .send("someone-else@example.org"),
    );
    assert!(run.completed(), "{run}");
    assert_eq!(run.exit_code(), Some(1), "{run}");
    assert!(
        run.transcript().contains("the two addresses differ"),
        "{run}"
    );
    assert!(server.messages().is_empty());

    let run = run_ctl(
        &Dialog::new()
            .expect("Type the address again: ")
            .send(&address(&kai))
            .expect("Code from the mail: ")
            .end(),
    );
    assert!(run.completed(), "{run}");
    let code = server.wait_message(0).code(6).unwrap();
    let out = s
        .ctl
        .run(Some(kai.creds()), &["email", "confirm", &code], b"");
    assert!(out.success(), "{out}");
}

/// Issue 14's expiry notice by mail: an app password that expires within
/// `[app_passwords] notice_days` is announced to the user's confirmed address once (at the
/// daemon's start and hourly after; a second start sends nothing more), naming it.
#[test]
fn an_expiring_app_password_is_announced_by_mail_once() {
    let server = Smtp::start(Mode::Plain);
    let config = config(&server.config(None), 0)
        .set("totp", "window", "2")
        .set("app_passwords", "services", "[\"imap-notice\"]")
        .set("app_passwords", "notice_days", "7");
    let mut s = Stack::start_with(config, "");
    let ann = User::create();
    let key = s.ctl.enroll(&ann);
    enrol_email(&s, &server, &ann);
    for (name, expires, step) in [("soon", "2d", 1), ("later", "30d", 2)] {
        let out = s.ctl.run(
            Some(ann.creds()),
            &[
                "app-password",
                "create",
                name,
                "--service",
                "imap-notice",
                "--expires",
                expires,
            ],
            format!("{}\n", key.code_after(step)).as_bytes(),
        );
        assert!(out.success(), "{out}");
    }
    s.daemon.restart();
    let mail = notice(&server, "Your app password \"soon\"");
    assert_eq!(mail.header("To").as_deref(), Some(address(&ann).as_str()));
    assert!(
        mail.header("Subject")
            .is_some_and(|s| s.ends_with("app password expires soon")),
        "{}",
        mail.raw
    );
    s.daemon.restart();
    let round = |log: &str| {
        log.matches("action=app-password-notices outcome=done")
            .count()
    };
    let ran = twostep_e2e::proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        round(&s.daemon.log()) >= 2
    });
    assert!(ran, "{}", s.daemon.log());
    let about = |m: &smtp::Received| m.body().contains("Your app password");
    assert_eq!(
        server.messages().iter().filter(|m| about(m)).count(),
        1,
        "one notice, for \"soon\" only: {:?}",
        server.messages()
    );
}

/// Review finding H2 end to end: a user with an authenticator changes or removes their
/// address only with a current code (twostepctl reads it), never without one.
#[test]
fn changing_the_address_of_an_account_with_a_factor_needs_a_code() {
    let server = Smtp::start(Mode::Plain);
    let s = Stack::start_with(
        config(&server.config(None), 0).set("totp", "window", "2"),
        "",
    );
    let ann = User::create();
    let key = s.ctl.enroll(&ann);
    let seen = server.messages().len();
    let out = s.ctl.run(
        Some(ann.creds()),
        &["email", "set", "mallory@example.org"],
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert_eq!(
        server.messages().len(),
        seen,
        "nothing mailed without a code"
    );
    let out = s.ctl.run(
        Some(ann.creds()),
        &["email", "set", &address(&ann)],
        format!("{}\n", key.code_after(1)).as_bytes(),
    );
    assert!(out.success(), "{out}");
    let code = server.wait_message(seen).code(6).unwrap();
    let out = s
        .ctl
        .run(Some(ann.creds()), &["email", "confirm", &code], b"");
    assert!(out.success(), "{out}");
    let out = s.ctl.run(Some(ann.creds()), &["email", "remove"], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    let st = s.ctl.status(&ann);
    assert_eq!(st["email"], address(&ann), "{st}");
    let out = s.ctl.run(
        Some(ann.creds()),
        &["email", "remove"],
        format!("{}\n", key.code_after(2)).as_bytes(),
    );
    assert!(out.success(), "{out}");
}
