// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl doctor` end to end (issue 6, item 7): the built twostepctl reads PAM stacks
//! from a temp directory (`--pam-dir`; the machine's `/etc/pam.d` is never written), runs
//! the real `sshd -T -f` on a temp config (`--sshd-config`), and checks the real daemon on
//! a private bus: a clean setup exits 0; every bypass is reported with its file and line
//! and exits 1; a daemon that is down is a finding of its own.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use twostep_e2e::logins::module_line;
use twostep_e2e::proc::{self, Output};
use twostep_e2e::{artifacts, unique, Bus, Daemon};

/// Debian 12's `common-auth` as shipped (pam_unix jumps over pam_deny to pam_permit).
const DEBIAN_COMMON_AUTH: &str = "\
# here are the per-package modules (the \"Primary\" block)
auth\t[success=1 default=ignore]\tpam_unix.so nullok
# here's the fallback if no module succeeds
auth\trequisite\t\t\tpam_deny.so
# prime the stack with a positive return value if there isn't one already;
auth\trequired\t\t\tpam_permit.so
# and here are more per-package modules (the \"Additional\" block)
auth\toptional\t\t\tpam_cap.so
";

/// docs/sshd.md, "Password, then code".
const SSHD_CLEAN: &str = "\
UsePAM yes
KbdInteractiveAuthentication yes
PasswordAuthentication no
AuthenticationMethods keyboard-interactive
";

/// A temp dir holding a PAM directory and an sshd config with its own host key.
struct Setup {
    pam_dir: PathBuf,
    sshd_config: PathBuf,
    host_key: PathBuf,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        twostep_e2e::require_root();
        // sshd -T as root wants its privilege-separation dir (Debian's service makes it).
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = unique::temp_dir("doctor");
        let pam_dir = dir.path().join("pam.d");
        std::fs::create_dir(&pam_dir).expect("create pam.d");
        let host_key = dir.path().join("host_ed25519");
        let mut keygen = proc::command(None, "ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key);
        proc::run(keygen, b"", Duration::from_secs(20)).assert_success();
        let setup = Setup {
            pam_dir,
            sshd_config: dir.path().join("sshd_config"),
            host_key,
            dir,
        };
        setup.sshd(SSHD_CLEAN);
        // The doctor reads no sudoers of the machine's (whatever an admin put there would
        // change its findings): an empty one of our own.
        setup.sudoers("");
        setup
    }

    /// Write the sudoers file the doctor reads (`--sudoers`).
    fn sudoers(&self, text: &str) -> &Self {
        std::fs::write(self.dir.path().join("sudoers"), text).expect("write sudoers");
        self
    }

    /// Write PAM file `name` in the temp PAM dir.
    fn pam(&self, name: &str, text: &str) -> &Self {
        std::fs::write(self.pam_dir.join(name), text).expect("write PAM file");
        self
    }

    /// Write the sshd config: its own host key, then `text`.
    fn sshd(&self, text: &str) -> &Self {
        let config = format!("HostKey {}\n{text}", self.host_key.display());
        std::fs::write(&self.sshd_config, config).expect("write sshd_config");
        self
    }

    /// Remove PAM file `name` from the temp PAM dir.
    fn remove(&self, name: &str) -> &Self {
        std::fs::remove_file(self.pam_dir.join(name)).expect("remove PAM file");
        self
    }

    fn path(&self, name: &str) -> String {
        self.pam_dir.join(name).display().to_string()
    }

    /// `twostepctl --bus BUS doctor --json --pam-dir … --sshd-config …`, parsed.
    fn doctor(&self, bus: &str) -> Doctor {
        let output = self.run(bus, &["--json"]);
        let json = serde_json::from_str(output.stdout.trim())
            .unwrap_or_else(|e| panic!("doctor --json printed no JSON ({e}):\n{output}"));
        Doctor { output, json }
    }

    /// The same, as people read it.
    fn doctor_text(&self, bus: &str) -> Output {
        self.run(bus, &[])
    }

    fn run(&self, bus: &str, extra: &[&str]) -> Output {
        let mut cmd = proc::command(None, artifacts::twostepctl());
        cmd.arg("--bus")
            .arg(bus)
            .arg("doctor")
            .arg("--pam-dir")
            .arg(&self.pam_dir)
            .arg("--sshd-config")
            .arg(&self.sshd_config)
            .arg("--sudoers")
            .arg(self.dir.path().join("sudoers"))
            .args(extra);
        proc::run(cmd, b"", Duration::from_secs(60))
    }
}

/// One doctor run.
struct Doctor {
    output: Output,
    json: serde_json::Value,
}

impl Doctor {
    fn findings(&self) -> Vec<&serde_json::Value> {
        self.json["findings"]
            .as_array()
            .expect("findings array")
            .iter()
            .collect()
    }

    /// The findings that are not `info`, as `(severity, kind, file:line)`.
    fn problems(&self) -> Vec<(String, String, String)> {
        self.findings()
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| {
                let at = match (f["file"].as_str(), f["line"].as_u64()) {
                    (Some(file), Some(line)) => format!("{file}:{line}"),
                    _ => String::new(),
                };
                (
                    f["severity"].as_str().unwrap_or("?").to_owned(),
                    f["kind"].as_str().unwrap_or("?").to_owned(),
                    at,
                )
            })
            .collect()
    }

    fn finding(&self, kind: &str) -> &serde_json::Value {
        self.findings()
            .into_iter()
            .find(|f| f["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} finding:\n{}", self.output))
    }

    #[track_caller]
    fn assert_clean(&self) {
        assert!(
            self.output.success() && self.json["ok"] == true,
            "expected a clean report:\n{}",
            self.output
        );
        assert_eq!(self.problems(), vec![], "{}", self.output);
    }

    /// Exit 1, and exactly these problems.
    #[track_caller]
    fn assert_problems(&self, want: &[(&str, &str, &str)]) {
        assert_eq!(
            self.output.status.code(),
            Some(1),
            "expected exit 1:\n{}",
            self.output
        );
        assert_eq!(self.json["ok"], false, "{}", self.output);
        let want: Vec<(String, String, String)> = want
            .iter()
            .map(|(s, k, a)| ((*s).to_owned(), (*k).to_owned(), (*a).to_owned()))
            .collect();
        assert_eq!(self.problems(), want, "{}", self.output);
    }
}

/// The module line of the tests: the built module, on `bus`.
fn module(bus: &Bus, extra: &str) -> String {
    format!("{}\n", module_line(bus.address(), extra))
}

/// `@include common-auth` (Debian's), then the module: docs/sshd.md.
fn password_then_code(setup: &Setup, service: &str, bus: &Bus) {
    setup.pam("common-auth", DEBIAN_COMMON_AUTH).pam(
        service,
        &format!("@include common-auth\n{}", module(bus, "")),
    );
}

#[test]
fn a_clean_setup_exits_0() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    password_then_code(&setup, "sshd", &bus);
    password_then_code(&setup, "sudo", &bus);
    setup.pam(
        "chsh",
        "auth sufficient pam_rootok.so\n@include common-auth\n",
    );

    let d = setup.doctor(bus.address());
    d.assert_clean();
    // What it saw: the module at line 2 of both services, sshd checked, the daemon up.
    let services = d.json["services"].as_array().expect("services");
    let names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, vec!["chsh", "sshd", "sudo"], "{}", d.output);
    assert_eq!(services[1]["twostep"][0]["line"], 2);
    assert_eq!(services[1]["twostep"][0]["failmode"], "closed");
    assert_eq!(d.json["sshd"]["checked"], true, "{}", d.output);
    assert_eq!(d.json["daemon"][0]["running"], true, "{}", d.output);
    assert_eq!(d.finding("daemon-running")["severity"], "info");

    let text = setup.doctor_text(bus.address());
    text.assert_success();
    assert!(text.stdout.contains("no problems found"), "{text}");
    assert!(
        text.stdout.contains(&format!(
            "pam_twostep reached by sshd ({}:2); sudo ({}:2)",
            setup.path("sshd"),
            setup.path("sudo")
        )),
        "{text}"
    );
}

#[test]
fn sufficient_pam_unix_before_the_module_is_reported_with_file_and_line() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    setup.pam(
        "sshd",
        &format!(
            "# sufficient: a right password ends the stack\nauth sufficient pam_unix.so\n{}",
            module(&bus, "")
        ),
    );
    let d = setup.doctor(bus.address());
    let at = format!("{}:2", setup.path("sshd"));
    // A wrong password goes on to the module too (`sufficient` ignores a failure).
    d.assert_problems(&[
        ("error", "pam-module-after-failed-password", &at),
        ("error", "pam-skips-module", &at),
    ]);
    let f = d.finding("pam-skips-module");
    assert_eq!(f["services"], serde_json::json!(["sshd"]));
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`auth sufficient pam_unix.so` ends the auth stack"),
        "{}",
        d.output
    );

    let text = setup.doctor_text(bus.address());
    assert_eq!(text.status.code(), Some(1), "{text}");
    assert!(text.stdout.contains(&format!("error   {at}: ")), "{text}");
    assert!(text.stderr.contains("2 error(s)"), "{text}");
}

#[test]
fn success_done_before_the_module_is_reported() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    setup.pam(
        "sshd",
        &format!(
            "auth requisite pam_unix.so\n\
             auth [success=done default=ignore] pam_faillock.so authsucc\n{}",
            module(&bus, "")
        ),
    );
    let d = setup.doctor(bus.address());
    d.assert_problems(&[(
        "error",
        "pam-skips-module",
        &format!("{}:2", setup.path("sshd")),
    )]);
}

#[test]
fn includes_and_substacks_are_followed() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    // The module reached only through an include chain and a substack: clean.
    setup
        .pam("common-auth", DEBIAN_COMMON_AUTH)
        .pam(
            "twostep-auth",
            &format!("@include common-auth\n{}", module(&bus, "")),
        )
        .pam(
            "sshd",
            "auth include twostep-auth\naccount required pam_permit.so\n",
        )
        .pam("sudo", "auth substack twostep-auth\n");
    let d = setup.doctor(bus.address());
    d.assert_clean();
    for s in d.json["services"].as_array().expect("services") {
        assert_eq!(
            s["twostep"][0]["file"],
            setup.path("twostep-auth").as_str(),
            "{}",
            d.output
        );
    }

    // A jump over the module inside the @include'd file (the module inserted after
    // pam_unix with the jump widened to reach pam_permit), reported once with every
    // service and the include lines that lead there.
    setup.pam(
        "common-auth",
        &format!(
            "auth [success=2 default=ignore] pam_unix.so nullok\n{}auth requisite pam_deny.so\nauth required pam_permit.so\n",
            module(&bus, "")
        ),
    );
    setup.pam("twostep-auth", "@include common-auth\n");
    let d = setup.doctor(bus.address());
    let at = format!("{}:1", setup.path("common-auth"));
    // On a wrong password, `default=ignore` goes on to the module as well.
    d.assert_problems(&[
        ("error", "pam-module-after-failed-password", &at),
        ("error", "pam-skips-module", &at),
    ]);
    let f = d.finding("pam-skips-module");
    assert_eq!(
        f["services"],
        serde_json::json!(["sshd", "sudo"]),
        "{}",
        d.output
    );
    let via: Vec<&str> = f["via"]
        .as_array()
        .expect("via")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for want in [
        format!("{}:1 (include twostep-auth)", setup.path("sshd")),
        format!("{}:1 (substack twostep-auth)", setup.path("sudo")),
        format!("{}:1 (@include common-auth)", setup.path("twostep-auth")),
    ] {
        assert!(via.contains(&want.as_str()), "{want} not in {via:?}");
    }

    // A `sufficient` inside a substack ends only the substack: the module after it runs
    // (no pam-skips-module) — but so it does when the password failed: `die` in a
    // substack ends only the substack, so the code is asked after a wrong password.
    setup.remove("common-auth").remove("twostep-auth");
    setup
        .pam(
            "password-auth",
            "auth sufficient pam_unix.so\nauth requisite pam_deny.so\n",
        )
        .pam(
            "sudo",
            &format!("auth substack password-auth\n{}", module(&bus, "")),
        )
        .pam("sshd", "auth required pam_unix.so\n");
    let d = setup.doctor(bus.address());
    d.assert_problems(&[(
        "error",
        "pam-module-after-failed-password",
        &format!("{}:1", setup.path("password-auth")),
    )]);
    // … but before the module inside the same substack, it skips it.
    setup.pam(
        "password-auth",
        &format!("auth sufficient pam_unix.so\n{}", module(&bus, "")),
    );
    setup.pam(
        "sudo",
        "auth substack password-auth\nauth required pam_permit.so\n",
    );
    let d = setup.doctor(bus.address());
    let at = format!("{}:1", setup.path("password-auth"));
    d.assert_problems(&[
        ("error", "pam-module-after-failed-password", &at),
        ("error", "pam-skips-module", &at),
    ]);
}

#[test]
fn failmode_open_is_a_warning_and_an_error_while_the_daemon_is_down() {
    let bus = Bus::start();
    let mut daemon = Daemon::start(&bus);
    let setup = Setup::new();
    setup.pam("common-auth", DEBIAN_COMMON_AUTH).pam(
        "sshd",
        &format!("@include common-auth\n{}", module(&bus, "failmode=open")),
    );
    let at = format!("{}:2", setup.path("sshd"));
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("warning", "pam-failmode-open", &at)]);

    daemon.stop();
    let d = setup.doctor(bus.address());
    d.assert_problems(&[
        ("error", "daemon-not-running", ""),
        ("error", "pam-failmode-open", &at),
    ]);
    let f = d.finding("pam-failmode-open");
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("skip the code right now"),
        "{}",
        d.output
    );
}

/// (name, sshd config after the host key, expected problems as (severity, kind, line)).
type SshdCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str, usize)]);

#[test]
fn sshd_settings_that_skip_the_code_are_reported_with_their_line() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    password_then_code(&setup, "sshd", &bus);
    // Line numbers count the HostKey line the setup writes first.
    let cases: &[SshdCase] = &[
        ("docs: password then code", SSHD_CLEAN, &[]),
        (
            "KbdInteractiveAuthentication no while the stack has the module",
            "UsePAM yes\nKbdInteractiveAuthentication no\nPasswordAuthentication no\nPubkeyAuthentication no\n",
            &[("error", "sshd-kbdinteractive-no", 3)],
        ),
        (
            "the first value wins: a later `KbdInteractiveAuthentication no` changes nothing",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods keyboard-interactive\nKbdInteractiveAuthentication no\n",
            &[],
        ),
        (
            "UsePAM no",
            "UsePAM no\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\n",
            &[("error", "sshd-usepam-no", 2)],
        ),
        (
            "AuthenticationMethods publickey alone",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication yes\nAuthenticationMethods publickey\n",
            &[("error", "sshd-method-without-pam", 6)],
        ),
        (
            "AuthenticationMethods any: a key alone",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nPubkeyAuthentication yes\n",
            &[("error", "sshd-method-without-pam", 5)],
        ),
        (
            "PasswordAuthentication yes",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication yes\nPubkeyAuthentication no\n",
            &[("warning", "sshd-password-authentication", 4)],
        ),
        (
            "a Match block that lets a key alone in",
            "UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods keyboard-interactive\nMatch User backup\n  AuthenticationMethods publickey\n",
            &[("error", "sshd-method-without-pam", 7)],
        ),
    ];
    let config = setup.sshd_config.display().to_string();
    for (name, text, want) in cases {
        setup.sshd(text);
        let d = setup.doctor(bus.address());
        check(name, &d, want, &config);
    }
    // sshd itself refuses a config whose AuthenticationMethods cannot be satisfied: the
    // doctor says so with sshd's words.
    setup.sshd(
        "UsePAM yes\nKbdInteractiveAuthentication no\nAuthenticationMethods keyboard-interactive\n",
    );
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("error", "sshd-unavailable", "")]);
    assert!(
        d.finding("sshd-unavailable")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("AuthenticationMethods cannot be satisfied"),
        "{}",
        d.output
    );

    // A key-then-code stack (no password module) with keyboard-interactive alone: the
    // code alone logs in.
    setup.pam("sshd", &module(&bus, ""));
    setup.sshd(SSHD_CLEAN);
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("error", "sshd-code-alone", &format!("{config}:5"))]);
    setup.sshd("UsePAM yes\nKbdInteractiveAuthentication yes\nPasswordAuthentication no\nAuthenticationMethods publickey,keyboard-interactive\n");
    setup.doctor(bus.address()).assert_clean();
}

/// Asserts one sshd case: exit 0 and no problems, or exit 1 and exactly `want`.
#[track_caller]
fn check(name: &str, d: &Doctor, want: &[(&str, &str, usize)], config: &str) {
    {
        let want: Vec<(&str, &str, String)> = want
            .iter()
            .map(|(s, k, line)| (*s, *k, format!("{config}:{line}")))
            .collect();
        let want: Vec<(&str, &str, &str)> =
            want.iter().map(|(s, k, a)| (*s, *k, a.as_str())).collect();
        if want.is_empty() {
            assert!(
                d.output.success() && d.problems().is_empty(),
                "case {name}:\n{}",
                d.output
            );
        } else {
            assert_eq!(
                d.output.status.code(),
                Some(1),
                "case {name}:\n{}",
                d.output
            );
            let got = d.problems();
            let got: Vec<(&str, &str, &str)> = got
                .iter()
                .map(|(s, k, a)| (s.as_str(), k.as_str(), a.as_str()))
                .collect();
            assert_eq!(got, want, "case {name}:\n{}", d.output);
        }
    }
}

#[test]
fn sshd_without_a_readable_host_key_is_still_checked() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    password_then_code(&setup, "sshd", &bus);
    // sshd -T refuses to run without a host key it can load; doctor retries with a
    // throw-away one and never touches the named file.
    let missing = setup.dir.path().join("no-such-key");
    std::fs::write(
        &setup.sshd_config,
        format!(
            "HostKey {}\nUsePAM yes\nKbdInteractiveAuthentication no\n\
             PasswordAuthentication no\nPubkeyAuthentication no\n",
            missing.display()
        ),
    )
    .expect("write sshd_config");
    let d = setup.doctor(bus.address());
    d.assert_problems(&[(
        "error",
        "sshd-kbdinteractive-no",
        &format!("{}:3", setup.sshd_config.display()),
    )]);
    assert_eq!(d.json["sshd"]["checked"], true, "{}", d.output);
}

#[test]
fn daemon_down_is_a_finding_and_up_is_not() {
    let bus = Bus::start();
    let setup = Setup::new();
    password_then_code(&setup, "sshd", &bus);

    // The bus, but no daemon on it.
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("error", "daemon-not-running", "")]);
    let f = d.finding("daemon-not-running");
    assert_eq!(f["services"], serde_json::json!(["sshd"]), "{}", d.output);
    assert!(
        f["message"]
            .as_str()
            .unwrap_or_default()
            .contains("logins through sshd are refused"),
        "{}",
        d.output
    );
    assert_eq!(d.json["daemon"][0]["running"], false);

    // The daemon up.
    let mut daemon = Daemon::start(&bus);
    let d = setup.doctor(bus.address());
    d.assert_clean();
    assert_eq!(d.json["daemon"][0]["owner_uid"], 0, "{}", d.output);

    // Stopped again, then the bus gone as well: quick, and named.
    daemon.stop();
    setup
        .doctor(bus.address())
        .assert_problems(&[("error", "daemon-not-running", "")]);
    let address = bus.address().to_owned();
    drop(daemon);
    drop(bus);
    let d = setup.doctor(&address);
    d.assert_problems(&[("error", "daemon-not-running", "")]);
    assert!(
        d.finding("daemon-not-running")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot reach the bus"),
        "{}",
        d.output
    );
    assert!(d.output.elapsed < Duration::from_secs(20), "{}", d.output);
}

/// Issue 19, fault 10: the README's old stack (`auth required pam_unix.so`, then the
/// module) asks for the code after a wrong password; `requisite` does not.
#[test]
fn a_module_reached_after_a_failed_password_is_reported() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    setup.pam(
        "sshd",
        &format!("auth required pam_unix.so\n{}", module(&bus, "")),
    );
    let d = setup.doctor(bus.address());
    d.assert_problems(&[(
        "error",
        "pam-module-after-failed-password",
        &format!("{}:1", setup.path("sshd")),
    )]);
    assert!(
        d.finding("pam-module-after-failed-password")["message"]
            .as_str()
            .unwrap_or_default()
            .contains("when the password is wrong the stack goes on to pam_twostep"),
        "{}",
        d.output
    );
    setup.pam(
        "sshd",
        &format!("auth requisite pam_unix.so\n{}", module(&bus, "")),
    );
    setup.doctor(bus.address()).assert_clean();
}

/// Issue 19, fault 10: sudo's login service (`sudo -i`) without the module while `sudo`
/// has it, a sudoers service name with no PAM file (capitals, typo), and a PAM file libpam
/// never reads; each gone in the fixed setup.
#[test]
fn sudo_services_without_the_module_are_reported() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let setup = Setup::new();
    password_then_code(&setup, "sudo", &bus);
    setup.pam("other", "@include common-auth\n").pam(
        "sudo-i",
        "session required pam_limits.so\n@include common-auth\n",
    );
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("error", "sudo-service-without-module", "")]);
    assert_eq!(d.json["sudo"]["checked"], true, "{}", d.output);
    password_then_code(&setup, "sudo-i", &bus);
    setup.doctor(bus.address()).assert_clean();

    // The drop-in of the old docs/sudo.md: pam_service only.
    let sudoers = setup.dir.path().join("sudoers").display().to_string();
    let drop_ins = setup.dir.path().join("sudoers.d");
    std::fs::create_dir(&drop_ins).expect("create sudoers.d");
    setup.sudoers(&format!("@includedir {}\n", drop_ins.display()));
    let drop_in = drop_ins.join("twostep");
    // sudo's own files as Debian ships them (no module); alice's service has it.
    setup
        .pam("sudo", "@include common-auth\n")
        .pam("sudo-i", "@include common-auth\n");
    password_then_code(&setup, "sudo-twostep", &bus);
    std::fs::write(&drop_in, "Defaults:alice pam_service=sudo-twostep\n").expect("write");
    let at = format!("{}:1", drop_in.display());
    let d = setup.doctor(bus.address());
    d.assert_problems(&[("error", "sudo-service-without-module", &at)]);
    // The fixed one.
    password_then_code(&setup, "sudo-twostep-i", &bus);
    std::fs::write(
        &drop_in,
        "Defaults:alice pam_service=sudo-twostep, pam_login_service=sudo-twostep-i\n",
    )
    .expect("write");
    setup.doctor(bus.address()).assert_clean();

    // Capitals: libpam looks for the lower-case name, finds no file, uses `other`.
    setup.remove("sudo-twostep").remove("sudo-twostep-i");
    password_then_code(&setup, "Sudo-Twostep", &bus);
    std::fs::write(
        &drop_in,
        "Defaults:alice pam_service=Sudo-Twostep, pam_login_service=Sudo-Twostep\n",
    )
    .expect("write");
    let d = setup.doctor(bus.address());
    d.assert_problems(&[
        ("error", "sudo-service-missing", &at),
        ("error", "sudo-service-missing", &at),
        ("warning", "pam-file-never-read", ""),
        // Only the misnamed file had the module: no service reaches it.
        ("warning", "pam-module-nowhere", ""),
    ]);
    assert!(
        d.output.stdout.contains("which asks for no code"),
        "{}",
        d.output
    );
    assert!(
        d.json["sudo"]["sudoers"] == sudoers.as_str(),
        "{}",
        d.output
    );
}
