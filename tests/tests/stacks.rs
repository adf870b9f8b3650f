// SPDX-License-Identifier: MIT OR Apache-2.0
//! Every PAM stack the documentation shows, through real libpam (pamtester, a dedicated
//! service file) — issue 19, fault 10: the code is asked only after a correct password.
//!
//! For each documented stack that checks a password first (README.md, docs/*.md,
//! packaging/README.md — Debian and Fedora —, the man pages, and the common-auth that
//! `pam-auth-update --enable twostep` writes from the shipped profile):
//! - wrong password + wrong code → refused, the code never asked, nothing charged (a
//!   stranger cannot lock the user out);
//! - wrong password + right code → refused, nothing charged, the code not spent: the same
//!   code then logs in with the right password;
//! - right password + wrong code → refused and charged.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use twostep_e2e::documented::{self, DocStack};
use twostep_e2e::logins::LoginUser;
use twostep_e2e::proc;
use twostep_e2e::{artifacts, unique, Bus, Ctl, Daemon, Enrolled, PamService};

fn failures(ctl: &Ctl, user: &LoginUser) -> u64 {
    let status = ctl.status(user.user());
    status
        .get("failures")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("status.failures is not a number: {status}"))
}

/// The three checks on one stack; `Err` says which one failed and what pamtester saw.
fn check(pam: &PamService, ctl: &Ctl, user: &LoginUser, e: &Enrolled) -> Result<(), String> {
    let wrong_password = format!("wrong-{}", user.password());

    let run = pam
        .auth(user.name())
        .answer(&wrong_password)
        .answer(e.wrong_code())
        .run();
    if !run.refused()
        || run
            .conversation()
            .contains(twostep_e2e::prompts::CODE_START)
    {
        return Err(format!(
            "wrong password + wrong code: must be refused before the code is asked:\n{run}"
        ));
    }
    let n = failures(ctl, user);
    if n != 0 {
        return Err(format!(
            "wrong password + wrong code charged the user ({n} failures): a stranger can lock them out:\n{run}"
        ));
    }

    let code = e.code_after(1);
    let run = pam
        .auth(user.name())
        .answer(&wrong_password)
        .answer(&code)
        .run();
    if !run.refused() {
        return Err(format!(
            "wrong password + right code must be refused:\n{run}"
        ));
    }
    let n = failures(ctl, user);
    if n != 0 {
        return Err(format!(
            "wrong password + right code charged the user ({n} failures):\n{run}"
        ));
    }
    let run = pam
        .auth(user.name())
        .answer(user.password())
        .answer(&code)
        .run();
    if !run.succeeded() {
        return Err(format!(
            "right password + the code typed after a wrong password must log in (the code must not have been spent):\n{run}"
        ));
    }

    let run = pam
        .auth(user.name())
        .answer(user.password())
        .answer(e.wrong_code())
        .run();
    if !run.refused()
        || !run
            .conversation()
            .contains(twostep_e2e::prompts::CODE_START)
    {
        return Err(format!(
            "right password + wrong code: must ask for the code and refuse:\n{run}"
        ));
    }
    let n = failures(ctl, user);
    if n != 1 {
        return Err(format!(
            "right password + wrong code must be charged once, the user has {n} failures:\n{run}"
        ));
    }
    Ok(())
}

/// One fresh enrolled user per stack, so the counts of one stack do not mix with another's.
/// The user is handed back so that it outlives every other stack's check: a user deleted
/// while the daemon runs frees its uid, and a user created next with that uid would meet
/// the first one's record (a re-used uid fails closed by design).
fn check_stack(ctl: &Ctl, source: &str, text: &str) -> (Result<(), String>, LoginUser) {
    let pam = PamService::new(text);
    let user = LoginUser::create();
    let e = ctl.enroll(user.user());
    let result = check(&pam, ctl, &user, &e).map_err(|why| format!("{source}: {why}"));
    (result, user)
}

#[test]
fn every_documented_stack_asks_for_the_code_only_after_a_correct_password() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let stacks = documented::pam_stacks();
    let (checked, code_only): (Vec<&DocStack>, Vec<&DocStack>) =
        stacks.iter().partition(|s| s.password_first());
    let sources: Vec<&str> = checked.iter().map(|s| s.block.source.as_str()).collect();
    eprintln!("password-then-code stacks: {sources:#?}");
    eprintln!(
        "code-only stacks (key then code, tested in sshd.rs): {:#?}",
        code_only
            .iter()
            .map(|s| s.block.source.as_str())
            .collect::<Vec<_>>()
    );
    let mut problems = Vec::new();
    // The README's example, a sudo file, a Fedora (authselect) stack and the Debian
    // common-auth of packaging/README.md are among them.
    for want in ["README.md:", "docs/sudo.md:", "packaging/README.md:"] {
        if !sources.iter().any(|s| s.starts_with(want)) {
            problems.push(format!("no stack from {want} found"));
        }
    }
    if !checked.iter().any(|s| s.block.contains("pam_faildelay.so")) {
        problems.push("the Fedora (authselect) stack of packaging/README.md is missing".into());
    }
    // Each stack in a thread of its own: a wrong password costs pam_unix's failure delay
    // (about 2 s) several times per stack.
    let results: Vec<(Result<(), String>, LoginUser)> = std::thread::scope(|scope| {
        let handles: Vec<_> = checked
            .iter()
            .map(|s| {
                let (ctl, text) = (&ctl, s.render(bus.address()));
                scope.spawn(move || check_stack(ctl, &s.block.source, &text))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a stack check panicked"))
            .collect()
    });
    for (result, _user) in &results {
        if let Err(why) = result {
            problems.push(why.clone());
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} documented stacks let a wrong password reach the code:\n\n{}",
        problems.len(),
        checked.len(),
        problems.join("\n\n")
    );
}

/// The shipped pam-auth-update profile, enabled the way an admin does it, in a scratch root
/// (copies of /etc/pam.d/common-*, /var/lib/pam, the profiles and the debconf database: the
/// machine's own stack is never touched). The profile's module name is the only change:
/// the built module on the test's bus.
fn pam_auth_update_common_auth(bus_address: &str) -> String {
    let scratch = unique::temp_dir("pam-auth-update");
    let root = scratch.path();
    for dir in ["etc/pam.d", "var/lib/pam", "usr/share/pam-configs"] {
        std::fs::create_dir_all(root.join(dir)).expect("create scratch dirs");
    }
    let copy_dir = |from: &str, to: &str, only: &dyn Fn(&str) -> bool| {
        for e in std::fs::read_dir(from).expect("read dir").flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if only(&name) && e.path().is_file() {
                std::fs::copy(e.path(), root.join(to).join(&name)).expect("copy");
            }
        }
    };
    copy_dir("/etc/pam.d", "etc/pam.d", &|n| n.starts_with("common-"));
    copy_dir("/var/lib/pam", "var/lib/pam", &|_| true);
    copy_dir("/usr/share/pam-configs", "usr/share/pam-configs", &|n| {
        n != "twostep"
    });
    let profile =
        std::fs::read_to_string(artifacts::repo_root().join("packaging/pam-configs/twostep"))
            .expect("read the shipped profile");
    assert!(profile.contains("pam_twostep.so"), "{profile}");
    let profile = profile.replace(
        "pam_twostep.so",
        &format!("{} bus={bus_address}", artifacts::pam_module().display()),
    );
    std::fs::write(root.join("usr/share/pam-configs/twostep"), profile).expect("write profile");
    let debconf = root.join("debconf.dat");
    std::fs::copy("/var/cache/debconf/config.dat", &debconf).expect("copy debconf db");

    let mut cmd = proc::command(None, "pam-auth-update");
    cmd.env("DEBIAN_FRONTEND", "noninteractive")
        .env(
            "DEBCONF_DB_REPLACE",
            format!("File{{{}}}", debconf.display()),
        )
        .arg("--root")
        .arg(root)
        .args(["--enable", "twostep"]);
    proc::run(cmd, b"", Duration::from_secs(60)).assert_success();
    std::fs::read_to_string(Path::new(root).join("etc/pam.d/common-auth"))
        .expect("read the common-auth pam-auth-update wrote")
}

#[test]
fn the_pam_auth_update_profile_asks_for_the_code_only_after_a_correct_password() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let common_auth = pam_auth_update_common_auth(bus.address());
    let auth: Vec<&str> = common_auth
        .lines()
        .filter(|l| l.starts_with("auth"))
        .collect();
    let at = auth
        .iter()
        .position(|l| l.contains("libpam_twostep.so"))
        .unwrap_or_else(|| panic!("the profile added no module line:\n{common_auth}"));
    let deny = auth
        .iter()
        .position(|l| l.contains("pam_deny.so"))
        .unwrap_or_else(|| panic!("no pam_deny in common-auth:\n{common_auth}"));
    assert!(
        deny < at && auth[at].split_whitespace().nth(1) == Some("required"),
        "the module must be `required` after the primary block's pam_deny:\n{common_auth}"
    );
    let text = format!(
        "# twostep e2e: common-auth as pam-auth-update --enable twostep writes it\n{common_auth}"
    );
    if let (Err(why), _user) = check_stack(&ctl, "packaging/pam-configs/twostep", &text) {
        panic!("{why}");
    }
}

/// The sudoers drop-ins the docs show set both `pam_service` and `pam_login_service`, to
/// services with lower-case names (libpam lower-cases the name before it looks for the
/// file: any capital letter means the `other` stack).
#[test]
fn documented_sudoers_drop_ins_name_both_services_in_lower_case() {
    let drop_ins = documented::sudoers_drop_ins();
    assert!(!drop_ins.is_empty(), "no sudoers drop-in in the docs");
    for b in drop_ins {
        for line in b.lines.iter().filter(|l| l.starts_with("Defaults")) {
            assert!(
                line.contains("pam_login_service="),
                "{}: `{line}` sets pam_service but not pam_login_service: `sudo -i` would use sudo-i without the code",
                b.source
            );
            for value in line
                .split([' ', ','])
                .filter_map(|w| w.split_once('=').map(|(_, v)| v))
            {
                assert_eq!(
                    value,
                    value.to_ascii_lowercase(),
                    "{}: `{line}`: a service name with capitals matches no PAM file",
                    b.source
                );
            }
        }
    }
}
