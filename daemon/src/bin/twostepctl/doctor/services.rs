// SPDX-License-Identifier: MIT OR Apache-2.0
//! The per-service rules of twostepd's configuration (`[services.NAME]`, issue 20 item
//! 12), each shown with the PAM stack it applies to, and the ones that lower protection
//! where it is easy to miss:
//! - `never` on sshd: logins from the network need the password alone;
//! - `never` on a service without a PAM file of its own: it runs `other`, the stack of
//!   every service without a file, so the rule is keyed by nothing but a name;
//! - `never` where the module line has no `nullok`: the module answers as for a user
//!   without a second factor, which fails without `nullok`, so every login there is refused.
//!
//! A missing configuration file is the daemon's defaults (no rules): nothing to report.

use twostep_config::{Config, SecondFactor, ServiceRule};

use super::findings::{Finding, Loc, Severity};
use super::io::{join, Files};
use super::pam_analysis::analyze_stack;
use super::pam_stack::Loader;

/// The PAM service OpenSSH uses.
const SSHD: &str = "sshd";

/// Findings for the `[services.NAME]` tables of the configuration at `config_path`, against
/// the PAM stacks in `dir`.
pub(super) fn service_rule_findings(
    files: &dyn Files,
    dir: &str,
    config_path: &str,
) -> Vec<Finding> {
    if !files.exists(config_path) {
        return Vec::new();
    }
    let config = match files
        .read(config_path)
        .map_err(|e| format!("{config_path}: {e}"))
        .and_then(|text| {
            Config::parse(&text, std::path::Path::new(config_path))
                .map(|c| (c, text))
                .map_err(|e| e.to_string())
        }) {
        Ok(c) => c,
        Err(e) => {
            return vec![Finding::new(
                Severity::Error,
                "config-invalid",
                format!("twostepd's configuration cannot be used: {e}"),
                None,
            )]
        }
    };
    let (config, text) = config;
    let loader = Loader { files, dir };
    let mut out = Vec::new();
    for (name, rule) in &config.services {
        let name = name.as_str();
        let at = table_line(&text, name).map(|line| Loc {
            file: config_path.to_owned(),
            line,
        });
        let (stack, file) = loader.service(name);
        let (info, _) = analyze_stack(name, &file, &stack);
        let own_file = files.exists(&join(dir, name));
        let reach = if info.modules.is_empty() {
            format!("its PAM stack ({file}) does not reach pam_twostep: no effect")
        } else {
            format!("PAM stack {file}")
        };
        out.push(
            Finding::new(
                Severity::Info,
                "service-rule",
                format!("[services.{name}]: {}; {reach}", describe(rule)),
                at.clone(),
            )
            .service(name),
        );
        if rule.second_factor != SecondFactor::Never || info.modules.is_empty() {
            continue;
        }
        let warn = |kind, message: String| {
            Finding::new(Severity::Warning, kind, message, at.clone()).service(name)
        };
        if name == SSHD {
            out.push(warn(
                "service-never-sshd",
                "second_factor = \"never\" on sshd: SSH logins, reachable from the network, \
                 need only the password"
                    .into(),
            ));
        }
        if !own_file {
            out.push(warn(
                "service-never-other",
                format!(
                    "second_factor = \"never\" on {name}, which has no file in {dir}: its \
                     logins run {file}, the stack of every service without one, and skip \
                     the second factor for any program that names this service"
                ),
            ));
        }
        if info.modules.iter().any(|m| !m.nullok) {
            out.push(warn(
                "service-never-no-nullok",
                format!(
                    "second_factor = \"never\" on {name}, but a pam_twostep line of its stack \
                     has no nullok: the module answers as for a user without a second factor, \
                     which fails without nullok, so every login there is refused"
                ),
            ));
        }
    }
    out
}

/// The rule in words.
fn describe(rule: &ServiceRule) -> String {
    let factor = match rule.second_factor {
        SecondFactor::Policy => "second factor as [policy] says".to_owned(),
        SecondFactor::Required => "second factor required of everyone".to_owned(),
        SecondFactor::Never => "second factor never asked".to_owned(),
    };
    let methods = match &rule.methods {
        None => String::new(),
        Some(m) => {
            let names: Vec<&str> = m
                .iter()
                .map(|x| match x {
                    twostep_config::MethodName::Totp => "totp",
                    twostep_config::MethodName::Email => "email",
                })
                .collect();
            format!(", methods {}", names.join(", "))
        }
    };
    let remember = match rule.remember_seconds.get() {
        0 => String::new(),
        s => format!(", remembered for {s} s per user, tty and remote host"),
    };
    format!("{factor}{methods}{remember}")
}

/// The 1-based line of the `[services.NAME]` table header in `text`.
fn table_line(text: &str, name: &str) -> Option<usize> {
    let forms = [
        format!("[services.{name}]"),
        format!("[services.\"{name}\"]"),
        format!("[services.'{name}']"),
    ];
    text.lines()
        .position(|l| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            forms.iter().any(|f| l.starts_with(f.as_str()))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::super::testing::Mem;
    use super::*;

    const CONFIG: &str = "/etc/twostep/twostep.toml";
    const WITH_NULLOK: &str = "auth required pam_unix.so\nauth required pam_twostep.so nullok\n";
    const WITHOUT_NULLOK: &str = "auth required pam_unix.so\nauth required pam_twostep.so\n";

    fn kinds(f: &[Finding]) -> Vec<(&'static str, Vec<String>)> {
        f.iter().map(|x| (x.kind, x.services.clone())).collect()
    }

    #[test]
    fn no_configuration_file_no_findings() {
        let files = Mem::pam(&[("sshd", WITH_NULLOK)]);
        assert!(service_rule_findings(&files, "/etc/pam.d", CONFIG).is_empty());
    }

    #[test]
    fn every_rule_is_shown_and_never_where_it_is_risky_is_a_warning() {
        let files = Mem::pam(&[
            ("sshd", WITH_NULLOK),
            ("sudo", WITH_NULLOK),
            ("login", WITHOUT_NULLOK),
            ("other", WITH_NULLOK),
            ("cron", "auth required pam_unix.so\n"),
        ])
        .with(
            CONFIG,
            "[services.sudo]\nremember_seconds = 900\n\
             [services.sshd]\nsecond_factor = \"never\"\n\
             [services.login]\nsecond_factor = \"never\"\n\
             [services.screen]\nsecond_factor = \"never\"\n\
             [services.cron]\nsecond_factor = \"required\"\n",
        );
        let f = service_rule_findings(&files, "/etc/pam.d", CONFIG);
        let s = |n: &str| vec![n.to_owned()];
        assert_eq!(
            kinds(&f),
            vec![
                ("service-rule", s("cron")),
                ("service-rule", s("login")),
                ("service-never-no-nullok", s("login")),
                ("service-rule", s("screen")),
                ("service-never-other", s("screen")),
                ("service-rule", s("sshd")),
                ("service-never-sshd", s("sshd")),
                ("service-rule", s("sudo")),
            ],
            "{f:#?}"
        );
        assert!(
            f[0].message.contains("does not reach pam_twostep"),
            "{f:#?}"
        );
        let sudo = &f[7];
        assert!(sudo.message.contains("remembered for 900 s"), "{sudo:?}");
        assert_eq!(sudo.at.as_ref().map(|a| a.line), Some(1));
        assert!(f[4].message.contains("/etc/pam.d/other"), "{f:#?}");
        assert!(f
            .iter()
            .filter(|x| x.kind != "service-rule")
            .all(|x| x.severity == Severity::Warning));
    }

    #[test]
    fn an_unusable_configuration_is_an_error() {
        let files = Mem::pam(&[("sshd", WITH_NULLOK)])
            .with(CONFIG, "[services.Sudo]\nsecond_factor = \"never\"\n");
        let f = service_rule_findings(&files, "/etc/pam.d", CONFIG);
        assert_eq!(kinds(&f), vec![("config-invalid", vec![])]);
        assert!(f[0].message.contains("twostep.toml:1:"), "{f:?}");
    }
}
