// SPDX-License-Identifier: MIT OR Apache-2.0
//! Console and screen lockers (issue 20 item 19, docs/screen-lockers.md).
//!
//! Debian's `vlock` and `screen` ship no PAM file, so libpam runs their services through
//! `/etc/pam.d/other`. The real `vlock` (setuid root: it runs PAM as root, not as the user)
//! on a terminal, with the test's stack bind-mounted over `/etc/pam.d/other` in a private
//! mount namespace, shows each prompt in turn: the password, then the code. `twostepctl
//! doctor` names the installed lockers that fall back to `other`, and warns about the
//! one-field locker (`screen`) whose stack would ask for a code it cannot type.
#![forbid(unsafe_code)]

use std::path::Path;

use twostep_e2e::logins::{self, LoginUser};
use twostep_e2e::ns::Namespace;
use twostep_e2e::pty::{Dialog, Driver, PtyRun};
use twostep_e2e::{proc, unique, Bus, Ctl, Daemon, PamService};

/// `vlock` typed by `user` on a terminal, with `pam` standing in for /etc/pam.d/other.
fn vlock(pam: &PamService, user: &LoginUser, dialog: &Dialog) -> PtyRun {
    let driver = Driver::new(dialog);
    let c = user.user().creds();
    let mut cmd = Namespace::new()
        .bind(
            &Path::new("/etc/pam.d").join(pam.name()),
            Path::new("/etc/pam.d/other"),
        )
        .command("setpriv");
    cmd.arg(format!("--reuid={}", c.uid))
        .arg(format!("--regid={}", c.gid))
        .args(["--clear-groups", "--", "expect"]);
    driver.args(&mut cmd);
    cmd.arg("vlock");
    driver.run(cmd)
}

/// One unlock attempt at vlock's prompts: Enter, the password, the code. Each answer waits
/// a moment: vlock discards what was typed before it reads.
fn unlock(dialog: Dialog, password: &str, code: &str) -> Dialog {
    dialog
        .expect("Please press [ENTER] to unlock.")
        .pause(300)
        .send("")
        .expect("Password: ")
        .pause(300)
        .send(password)
        .expect(twostep_e2e::prompts::CODE)
        .pause(300)
        .send(code)
}

fn vlock_without_a_pam_file_of_its_own_asks_for_password_then_code_through_other() {
    assert!(
        Path::new("/usr/sbin/vlock-main").exists(),
        "vlock is not installed (scripts/deps installs it)"
    );
    let bus = Bus::start();
    let daemon = Daemon::start(&bus);
    let pam = PamService::new(&logins::password_then_code(bus.address(), ""));
    let user = LoginUser::create();
    let e = Ctl::new(&bus).enroll(user.user());

    let run = vlock(
        &pam,
        &user,
        &unlock(
            unlock(Dialog::new(), user.password(), &e.wrong_code())
                .expect("Wrong verification code.")
                // vlock then offers root the unlock; a wrong password fails it.
                .expect("root's Password: ")
                .pause(300)
                .send(&format!("not-root-{}", unique::random_hex(8))),
            user.password(),
            &e.code_after(1),
        ),
    );
    assert!(run.completed(), "{run}");
    assert_eq!(
        run.exit_code(),
        Some(0),
        "vlock unlocks with the code:\n{run}"
    );
    let log = daemon.log();
    assert!(
        log.lines()
            .any(|l| l.contains(&format!("user={}", user.name()))
                && l.contains("service=vlock ")
                && l.contains("outcome=success")),
        "the daemon sees PAM service vlock:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("service=vlock ") && l.contains("outcome=wrong-code")),
        "the wrong code was refused first:\n{log}"
    );
}

fn doctor_names_the_lockers_that_fall_back_to_other() {
    twostep_e2e::require_root();
    for b in ["/usr/bin/screen", "/usr/sbin/vlock-main"] {
        assert!(
            Path::new(b).exists(),
            "{b} is not installed (scripts/deps installs it)"
        );
    }
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let dir = unique::temp_dir("lockerpam");
    for name in ["common-auth", "common-account"] {
        std::fs::copy(Path::new("/etc/pam.d").join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(
        dir.path().join("other"),
        logins::password_then_code(bus.address(), ""),
    )
    .unwrap();
    let pam_dir = dir.path().display().to_string();
    let out = proc::run(
        {
            let mut c = Ctl::new(&bus).command(None, &["doctor", "--pam-dir", &pam_dir]);
            c.args(["--sudoers", "/dev/null"]);
            c
        },
        b"",
        twostep_e2e::ctl::TIMEOUT,
    );
    let other = format!("{pam_dir}/other");
    assert!(
        out.stdout.contains(&format!(
            "screen (/usr/bin/screen) has no PAM file of its own ({pam_dir}/screen) and uses {other}, which asks for the code, but it has one password field"
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "vlock (/usr/sbin/vlock-main) has no PAM file of its own ({pam_dir}/vlock) and uses {other}, which asks for the code; it shows each prompt"
        )),
        "{out}"
    );
}

// On the bus and on the login socket (issue 18).
twostep_e2e::both_transports!(
    vlock_without_a_pam_file_of_its_own_asks_for_password_then_code_through_other,
    doctor_names_the_lockers_that_fall_back_to_other,
);
