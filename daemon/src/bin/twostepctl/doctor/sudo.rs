// SPDX-License-Identifier: MIT OR Apache-2.0
//! sudo's two PAM services checked against the PAM directory: each name sudoers sets must
//! have its own file, and `sudo` and `sudo -i` must both ask for the code.

use super::findings::{merge, Finding, Severity};
use super::io::{join, Files};
use super::pam_stack::{Handler, Loader};
use super::sudoers;

/// What one PAM service name leads to.
struct Resolved {
    /// The file libpam reads: the service's own (lower-cased name) or `other`.
    file: String,
    /// The service's own file exists.
    own: bool,
    /// libpam has no `auth` entry at all: every authentication fails.
    empty: bool,
    /// The stack reaches pam_twostep.
    module: bool,
}

fn resolve(files: &dyn Files, dir: &str, name: &str) -> Resolved {
    let lower = name.to_ascii_lowercase();
    let loader = Loader { files, dir };
    let (stack, file) = loader.service(&lower);
    Resolved {
        own: file == join(dir, &lower),
        file,
        empty: stack.is_empty(),
        module: stack.iter().any(Handler::is_twostep),
    }
}

/// sudo's services (issue 19, fault 10): each name sudoers sets must have its PAM file
/// (libpam lower-cases the name; a missing file means `other`), and `sudo -i`'s service
/// must ask for the code when `sudo`'s does (and the other way round).
pub fn sudo_findings(
    files: &dyn Files,
    dir: &str,
    settings: &[sudoers::SudoSetting],
) -> (Vec<Finding>, Vec<sudoers::SudoPair>) {
    let mut out = Vec::new();
    for s in settings {
        let r = resolve(files, dir, &s.value);
        if r.own {
            continue;
        }
        let lower = s.value.to_ascii_lowercase();
        let capitals = if lower == s.value {
            String::new()
        } else {
            format!(
                " (libpam lower-cases service names{})",
                if files.exists(&join(dir, &s.value)) {
                    format!(": {} is never read", join(dir, &s.value))
                } else {
                    String::new()
                }
            )
        };
        let (severity, then) = if r.empty {
            (
                Severity::Warning,
                "which has no auth lines: sudo refuses everyone",
            )
        } else if r.module {
            (Severity::Warning, "which reaches pam_twostep")
        } else {
            (
                Severity::Error,
                "which asks for no code: root for the password alone",
            )
        };
        out.push(
            Finding::new(
                severity,
                "sudo-service-missing",
                format!(
                    "sudoers sets {}={}, but there is no {}{capitals}: libpam uses {}, {then}",
                    s.option.name(),
                    s.value,
                    join(dir, &lower),
                    r.file
                ),
                Some(s.at.clone()),
            )
            .service(&lower),
        );
    }
    let pairs = sudoers::pairs(settings);
    for p in &pairs {
        let service = resolve(files, dir, &p.service);
        let login = resolve(files, dir, &p.login_service);
        let who = if p.scope.is_empty() {
            String::new()
        } else {
            format!(" for Defaults{}", p.scope)
        };
        let (bare, bare_at, what, protected, other_what) =
            if service.module && !login.module && !login.empty {
                (
                    &login,
                    &p.login_service_at,
                    format!(
                        "`sudo -i`{who} authenticates through PAM service `{}`",
                        p.login_service
                    ),
                    &service,
                    format!("`sudo` ({})", p.service),
                )
            } else if login.module && !service.module && !service.empty {
                (
                    &service,
                    &p.service_at,
                    format!(
                        "`sudo`, `sudo -s`{who} authenticate through PAM service `{}`",
                        p.service
                    ),
                    &login,
                    format!("`sudo -i` ({})", p.login_service),
                )
            } else {
                continue;
            };
        out.push(Finding::new(
            Severity::Error,
            "sudo-service-without-module",
            format!(
                "{what} ({}), which does not reach pam_twostep, while {other_what}, {}, does: root for the password alone that way, and the timestamp it leaves lets the other skip the code until it expires; put the module in both, or set pam_service and pam_login_service to services that have it",
                bare.file, protected.file
            ),
            bare_at.clone().or_else(|| p.service_at.clone()).or_else(|| p.login_service_at.clone()),
        ).service(&p.service.to_ascii_lowercase()).service(&p.login_service.to_ascii_lowercase()));
    }
    (merge(out), pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::doctor::pam_analysis::analyze_pam;
    use crate::doctor::testing::{installed, kinds, Mem, DEBIAN_COMMON_AUTH};

    /// Debian 12's /etc/pam.d/sudo-i: its own `@include common-auth`, not `sudo`.
    const DEBIAN_SUDO_I: &str = "session required pam_limits.so\n@include common-auth\n@include common-account\n@include common-session\n";

    fn sudo_kinds(mem: &Mem, sudoers: &str) -> Vec<(&'static str, String)> {
        let settings = sudoers::read_sudoers(mem, sudoers).expect("sudoers readable");
        let (findings, _) = sudo_findings(mem, "/etc/pam.d", &settings);
        kinds(&findings)
    }

    #[test]
    fn sudo_services_are_checked() {
        let with_module = "@include common-auth\nauth required pam_twostep.so\n";
        let base = || {
            installed(Mem::pam(&[
                ("common-auth", DEBIAN_COMMON_AUTH),
                ("other", "@include common-auth\n"),
                ("sudo", with_module),
                ("sudo-i", with_module),
            ]))
            .with(
                "/etc/sudoers",
                "Defaults env_reset\n@includedir /etc/sudoers.d\n",
            )
        };
        // The module in /etc/pam.d/sudo only: `sudo -i` gives root for the password alone.
        let mem = base().with("/etc/pam.d/sudo-i", DEBIAN_SUDO_I);
        assert_eq!(
            sudo_kinds(&mem, "/etc/sudoers"),
            vec![("sudo-service-without-module", String::new())]
        );
        let (f, _) = sudo_findings(&mem, "/etc/pam.d", &[]);
        assert!(
            f[0].message.contains(
                "`sudo -i` authenticates through PAM service `sudo-i` (/etc/pam.d/sudo-i)"
            ),
            "{f:#?}"
        );
        // In both: clean.
        let mem = base();
        assert_eq!(sudo_kinds(&mem, "/etc/sudoers"), vec![]);
        // The old docs/sudo.md drop-in: pam_service only, for alice.
        let drop_in = "Defaults:alice pam_service=sudo-twostep\n";
        let mem = base()
            .with("/etc/pam.d/sudo", "@include common-auth\n")
            .with("/etc/pam.d/sudo-i", DEBIAN_SUDO_I)
            .with("/etc/pam.d/sudo-twostep", with_module)
            .with("/etc/sudoers.d/twostep", drop_in);
        assert_eq!(
            sudo_kinds(&mem, "/etc/sudoers"),
            vec![(
                "sudo-service-without-module",
                "/etc/sudoers.d/twostep:1".to_owned()
            )]
        );
        // The fixed drop-in; an editor backup with a dot is not read by sudo.
        let mem = mem
            .with("/etc/pam.d/sudo-twostep-i", with_module)
            .with(
                "/etc/sudoers.d/twostep",
                "Defaults:alice pam_service=sudo-twostep, pam_login_service=sudo-twostep-i\n",
            )
            .with("/etc/sudoers.d/twostep.bak", drop_in);
        assert_eq!(sudo_kinds(&mem, "/etc/sudoers"), vec![]);
        // A name with capitals: libpam looks for the lower-case file, finds none, uses
        // `other` (the password alone).
        let mem = base().with("/etc/pam.d/Sudo-Twostep", with_module).with(
            "/etc/sudoers.d/twostep",
            "Defaults:alice pam_service=Sudo-Twostep, pam_login_service=Sudo-Twostep\n",
        );
        let settings = sudoers::read_sudoers(&mem, "/etc/sudoers").expect("sudoers");
        let (f, _) = sudo_findings(&mem, "/etc/pam.d", &settings);
        let missing = (
            "sudo-service-missing",
            "/etc/sudoers.d/twostep:1".to_owned(),
        );
        assert_eq!(kinds(&f), vec![missing.clone(), missing]);
        assert_eq!(f[0].severity, Severity::Error);
        assert!(
            f[0].message
                .contains("/etc/pam.d/Sudo-Twostep is never read"),
            "{f:#?}"
        );
        assert!(
            f[0].message
                .contains("libpam uses /etc/pam.d/other, which asks for no code"),
            "{f:#?}"
        );
        let report = analyze_pam(&mem, "/etc/pam.d");
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.kind == "pam-file-never-read"),
            "{:#?}",
            report.findings
        );
        assert!(!report.services.iter().any(|s| s.name == "Sudo-Twostep"));
        // A typo: no such file at all; `other` asks for no code, `sudo -i` does.
        let mem = base().with(
            "/etc/sudoers.d/twostep",
            "Defaults pam_service=sudo-twostpe\n",
        );
        let at = "/etc/sudoers.d/twostep:1".to_owned();
        assert_eq!(
            sudo_kinds(&mem, "/etc/sudoers"),
            vec![
                ("sudo-service-missing", at.clone()),
                ("sudo-service-without-module", at)
            ]
        );
    }

    #[test]
    fn sudoers_lines_and_includes() {
        let mem = Mem(BTreeMap::new())
            .with("/etc/sudoers", "# comment pam_service=no\nDefaults\tenv_reset, pam_service=\"a\" # x\n#include sudoers.local\nDefaults:%admins pam_login_service=b,\\\n  pam_service=c\n")
            .with("/etc/sudoers.local", "Defaults>root pam_login_service = d\n");
        let got: Vec<(String, &str, String, usize)> = sudoers::read_sudoers(&mem, "/etc/sudoers")
            .expect("readable")
            .into_iter()
            .map(|s| (s.scope, s.option.name(), s.value, s.at.line))
            .collect();
        let want: Vec<(String, &str, String, usize)> = vec![
            (String::new(), "pam_service", "a".into(), 2),
            (">root".into(), "pam_login_service", "d".into(), 1),
            (":%admins".into(), "pam_login_service", "b".into(), 4),
            (":%admins".into(), "pam_service", "c".into(), 4),
        ];
        assert_eq!(got, want);
        let settings = sudoers::read_sudoers(&mem, "/etc/sudoers").expect("readable");
        let pairs: Vec<(String, String, String)> = sudoers::pairs(&settings)
            .into_iter()
            .map(|p| (p.scope, p.service, p.login_service))
            .collect();
        assert_eq!(
            pairs,
            vec![
                (String::new(), "a".into(), "sudo-i".into()),
                (">root".into(), "a".into(), "d".into()),
                (":%admins".into(), "c".into(), "b".into()),
            ]
        );
        assert!(sudoers::read_sudoers(&mem, "/etc/no-sudoers").is_none());
    }
}
