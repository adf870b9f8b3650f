// SPDX-License-Identifier: MIT OR Apache-2.0
//! The harness pieces on their own, against programs we did not write: dbus-daemon with
//! the shipped policy, pamtester with stock modules, useradd/userdel, oathtool. These run
//! before twostepd or the module exist, and tell a harness bug from a product bug.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::bus::TWOSTEP_NAME;
use twostep_e2e::otp::{self, Algorithm};
use twostep_e2e::pam::strerror;
use twostep_e2e::{proc, unique, Bus, PamService, User};

#[test]
fn private_bus_answers_root_and_users() {
    let bus = Bus::start();
    assert!(
        bus.address().starts_with("unix:path=/"),
        "{}",
        bus.address()
    );
    assert!(bus.name_has_owner("org.freedesktop.DBus"));
    assert!(
        !bus.name_has_owner(TWOSTEP_NAME),
        "nobody runs the daemon yet"
    );
    let user = User::create();
    bus.call_driver(Some(user.creds()), "GetId", &[])
        .unwrap_or_else(|e| panic!("a test user cannot reach the bus: {e}\n{}", bus.log()));
}

/// The shipped policy, included by absolute path: only root may own the daemon's name.
#[test]
fn shipped_policy_lets_only_root_own_the_name() {
    let bus = Bus::start();
    let user = User::create();
    let request = format!("string:{TWOSTEP_NAME}");
    let denied = bus
        .call_driver(Some(user.creds()), "RequestName", &[&request, "uint32:0"])
        .expect_err("a test user must not own the daemon's name on the shipped policy");
    assert!(denied.contains("AccessDenied"), "{denied}");
    // Reply 1 = DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER.
    let granted = bus
        .call_driver(None, "RequestName", &[&request, "uint32:0"])
        .unwrap_or_else(|e| panic!("root must own the daemon's name: {e}"));
    assert!(granted.contains("uint32 1"), "{granted}");
    // Other names stay closed (the default context denies own="*").
    let other = bus
        .call_driver(
            Some(user.creds()),
            "RequestName",
            &["string:org.example.Other", "uint32:0"],
        )
        .expect_err("the default policy denies owning other names");
    assert!(other.contains("AccessDenied"), "{other}");
}

#[test]
fn permissive_bus_lets_a_user_own_the_name() {
    let bus = Bus::permissive();
    let user = User::create();
    let reply = bus
        .call_driver(
            Some(user.creds()),
            "RequestName",
            &[&format!("string:{TWOSTEP_NAME}"), "uint32:0"],
        )
        .unwrap_or_else(|e| panic!("permissive bus refused a user: {e}\n{}", bus.log()));
    assert!(reply.contains("uint32 1"), "{reply}");
}

#[test]
fn pamtester_runs_a_permit_only_service() {
    let user = User::create();
    let permit = PamService::new("auth required pam_permit.so\naccount required pam_permit.so\n");
    assert!(permit.name().starts_with("twostep-e2e-"));
    let path = std::path::Path::new("/etc/pam.d").join(permit.name());
    assert!(path.is_file());
    permit.auth(user.name()).run().assert_success();
    // As a non-root caller too (a screen locker runs PAM as the user).
    permit
        .auth(user.name())
        .caller(user.creds())
        .run()
        .assert_success();
    let deny = PamService::new("auth required pam_deny.so\n");
    let run = deny.auth(user.name()).run();
    run.assert_refused_with(strerror::AUTH_ERR);
    assert!(run.elapsed() < Duration::from_secs(5), "{run}");
    drop(permit);
    assert!(!path.exists(), "PamService must remove its file on drop");
}

/// pam_oath (oath-toolkit's module, not ours) with a code from oathtool: proves that the
/// answer reaches the module through pamtester's stdin, and that a replay is refused by a
/// known-good implementation.
#[test]
fn harness_drives_a_known_good_totp_module() {
    let installed = ["/usr/lib", "/lib", "/usr/lib64", "/lib64"]
        .iter()
        .any(|root| {
            std::fs::read_dir(root)
                .into_iter()
                .flatten()
                .flatten()
                .any(|d| d.path().join("security/pam_oath.so").is_file())
                || std::path::Path::new(root)
                    .join("security/pam_oath.so")
                    .is_file()
        });
    assert!(
        installed,
        "pam_oath.so not found: `apt-get install libpam-oath` (scripts/deps should list it)"
    );
    let user = User::create();
    let dir = unique::temp_dir("oath");
    let users_file = dir.path().join("users.oath");
    // Hex of the RFC 6238 SHA1 key "12345678901234567890".
    std::fs::write(
        &users_file,
        format!(
            "HOTP/T30/6 {} - 3132333435363738393031323334353637383930\n",
            user.name()
        ),
    )
    .unwrap();
    let svc = PamService::new(&format!(
        "auth required pam_oath.so usersfile={} window=2 digits=6\n",
        users_file.display()
    ));
    let code = otp::totp(
        "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
        Algorithm::Sha1,
        6,
        30,
        otp::now(),
    );
    let run = svc.login(user.name(), &code);
    run.assert_success();
    assert!(run.conversation().contains("One-time password"), "{run}");
    svc.login(user.name(), &code).assert_refused();
    svc.login(user.name(), "").assert_refused();
}

#[test]
fn users_are_created_and_removed() {
    let user = User::create();
    let name = user.name().to_string();
    assert!(name.starts_with("ts_") && name.len() <= 32, "{name}");
    assert!(user.uid() != 0);
    assert_eq!(
        twostep_e2e::user::lookup(&name),
        Some((user.uid(), user.gid()))
    );
    let out = proc::run(user.command("id"), b"", Duration::from_secs(10));
    out.assert_success();
    assert!(
        out.stdout.contains(&format!("uid={}({name})", user.uid())),
        "{out}"
    );
    assert!(
        !out.stdout.contains("groups=0"),
        "setpriv must clear root's groups: {out}"
    );
    drop(user);
    assert_eq!(twostep_e2e::user::lookup(&name), None, "userdel on drop");
}

#[test]
fn users_can_be_created_in_parallel() {
    let names: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let u = User::create();
                    u.name().to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for n in &names {
        assert_eq!(twostep_e2e::user::lookup(n), None, "{n} left behind");
    }
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "names must be unique: {names:?}");
}

/// RFC 6238 appendix B, 8 digits.
#[test]
fn oathtool_matches_rfc6238_vectors() {
    let sha1 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let sha256 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA====";
    let sha512 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNA=";
    let cases = [
        (sha1, Algorithm::Sha1, 59, "94287082"),
        (sha256, Algorithm::Sha256, 59, "46119246"),
        (sha512, Algorithm::Sha512, 59, "90693936"),
        (sha1, Algorithm::Sha1, 1_111_111_109, "07081804"),
        (sha256, Algorithm::Sha256, 1_111_111_109, "68084774"),
        (sha512, Algorithm::Sha512, 20_000_000_000, "47863826"),
    ];
    for (secret, alg, at, want) in cases {
        assert_eq!(otp::totp(secret, alg, 8, 30, at), want, "{alg} at {at}");
    }
    assert_eq!(otp::totp(sha1, Algorithm::Sha1, 6, 30, 59), "287082");
    assert_eq!(
        otp::totp_at_step(sha1, Algorithm::Sha1, 8, 30, 1),
        "94287082"
    );
}

#[test]
fn timeouts_kill_and_report() {
    let mut cmd = proc::command(None, "sleep");
    cmd.arg("10");
    let out = proc::run(cmd, b"", Duration::from_millis(200));
    assert!(out.timed_out && !out.success(), "{out}");
    assert!(out.elapsed < Duration::from_secs(5), "{out}");
}

#[test]
fn daemon_config_renders_harness_keys() {
    let cfg = twostep_e2e::DaemonConfig::default()
        .set("totp", "algorithm", "\"SHA256\"")
        .set("lockout", "max_failures", "50")
        .raw("[extra]\nkey = 1");
    let text = cfg.render(
        std::path::Path::new("/tmp/x y/state"),
        "unix:path=/tmp/b.sock",
    );
    for want in [
        "version = 1\n",
        "[daemon]\nstate_dir = \"/tmp/x y/state\"\nbus = \"unix:path=/tmp/b.sock\"\n",
        "algorithm = \"SHA256\"\n",
        "window = 1\n",
        "max_failures = 50\n",
        "failure_window_seconds = 900\n",
        "[extra]\nkey = 1\n",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert_eq!(cfg.totp_algorithm(), Algorithm::Sha256);
}
