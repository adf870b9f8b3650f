// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl doctor`: every way the second factor can be skipped or never reached.
//!
//! It reads, and never changes:
//! - the PAM stacks in the PAM directory, for every service, following `@include`, `include`
//!   and `substack` the way libpam does (includes inline, a substack is one entry whose
//!   `done` only ends the substack, jumps count entries at their own level);
//! - sshd's effective configuration (`sshd -T`), with file and line from the config files
//!   (`Include` and `Match` followed), when sshd's PAM stack relies on the module — or
//!   would rely on it once the package's pam-auth-update profile is enabled (`enable`:
//!   the findings then say "after `pam-auth-update --enable twostep`");
//! - sudo's two PAM services (`pam_service`, `pam_login_service` for `sudo -i`) from the
//!   sudoers files: both must exist under their lower-cased names and ask for the code;
//! - the screen and console lockers that are installed (`lockers`): a one-field locker
//!   whose stack asks for the code, and lockers without a PAM file (they use `other`);
//! - twostepd's per-service rules (`[services.NAME]` in `--config`), with the stack each
//!   applies to, and `never` where it is risky (`services`);
//! - twostepd on every bus the module lines name (`bus=`, `bus_uid=`), with its own short
//!   connection: a daemon that is down is one of the findings.
//!
//! Every decision is a pure function over texts ([`analyze_pam`], [`analyze_sshd`],
//! [`daemon_findings`]) with table-driven tests on inline files; the rest is thin I/O.
//!
//! By concern: `findings` (what is reported), `pam_stack` (PAM lines, controls and the
//! stack libpam builds), `pam_analysis` (the ways around the module, one function per
//! family), `sshd`, `sudoers` (reading sudo's files) and `sudo` (its two services),
//! `daemon` (the daemon on each bus), `io` (files, `sshd -T`); this file runs them and
//! prints the [`Report`]. The module's PAM codes come from `twostep_proto::module_results`.

mod clock;
mod daemon;
mod enable;
mod findings;
mod io;
mod lockers;
mod pam_analysis;
mod pam_stack;
mod services;
mod sshd;
mod sudo;
mod sudoers;
#[cfg(test)]
mod testing;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use daemon::{check_daemon, daemon_findings, DaemonState};
use findings::{merge, Finding, Severity};
use io::{find_sshd, sshd_effective, Fs};
use pam_analysis::{analyze_pam, analyze_stack, failmode_findings, ServiceInfo};
use pam_stack::Loader;
use sshd::{analyze_sshd, read_sshd_config, SSHD_DIR};
use sudo::sudo_findings;

/// The PAM service OpenSSH uses (its program name, `sshd` on every distribution).
const SSHD_SERVICE: &str = "sshd";

/// The sudoers file, and the service pairs found there (`None`: not readable).
type SudoCheck = (String, Option<Vec<sudoers::SudoPair>>);

/// What `run` checked about sshd, for the report.
enum SshdCheck {
    Checked { config: String },
    Skipped(String),
}

/// The whole report.
struct Report {
    pam_dir: String,
    services: Vec<ServiceInfo>,
    findings: Vec<Finding>,
    sshd: SshdCheck,
    /// The sudoers file, and the service pairs found there (`None`: not readable).
    sudo: SudoCheck,
    daemons: Vec<(String, u32, DaemonState)>,
}

impl Report {
    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn json(&self) -> serde_json::Value {
        let findings: Vec<serde_json::Value> = self
            .findings
            .iter()
            .map(|f| {
                serde_json::json!({
                    "severity": f.severity.name(),
                    "kind": f.kind,
                    "message": f.message,
                    "file": f.at.as_ref().map(|a| a.file.clone()),
                    "line": f.at.as_ref().map(|a| a.line),
                    "via": f.via,
                    "services": f.services,
                })
            })
            .collect();
        let services: Vec<serde_json::Value> = self
            .services
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "file": s.file,
                    "twostep": s.modules.iter().map(|m| serde_json::json!({
                        "file": m.at.file,
                        "line": m.at.line,
                        "failmode": if m.failmode_open { "open" } else { "closed" },
                        "nullok": m.nullok,
                        "bus": m.bus,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let sshd = match &self.sshd {
            SshdCheck::Checked { config } => serde_json::json!({"checked": true, "config": config}),
            SshdCheck::Skipped(why) => serde_json::json!({"checked": false, "why": why}),
        };
        let daemons: Vec<serde_json::Value> = self
            .daemons
            .iter()
            .map(|(bus, uid, state)| {
                let (running, owner, problem) = match state {
                    DaemonState::Running { uid: owner } => (owner == uid, Some(*owner), None),
                    DaemonState::NotRunning => (false, None, Some("not running".to_owned())),
                    DaemonState::NoBus(e) | DaemonState::NoAnswer(e) => {
                        (false, None, Some(e.clone()))
                    }
                };
                serde_json::json!({"bus": bus, "expected_uid": uid, "running": running, "owner_uid": owner, "problem": problem})
            })
            .collect();
        let sudo = match &self.sudo {
            (file, Some(pairs)) => serde_json::json!({
                "checked": true,
                "sudoers": file,
                "services": pairs.iter().map(|p| serde_json::json!({
                    "scope": p.scope,
                    "pam_service": p.service,
                    "pam_login_service": p.login_service,
                })).collect::<Vec<_>>(),
            }),
            (file, None) => serde_json::json!({"checked": false, "sudoers": file}),
        };
        serde_json::json!({
            "ok": self.count(Severity::Error) + self.count(Severity::Warning) == 0,
            "sudo": sudo,
            "errors": self.count(Severity::Error),
            "warnings": self.count(Severity::Warning),
            "pam_dir": self.pam_dir,
            "findings": findings,
            "services": services,
            "sshd": sshd,
            "daemon": daemons,
        })
    }

    fn text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        for f in &self.findings {
            let _ = match &f.at {
                Some(at) => writeln!(s, "{:<8}{at}: {}", f.severity.name(), f.message),
                None => writeln!(s, "{:<8}{}", f.severity.name(), f.message),
            };
            if !f.services.is_empty() {
                let _ = writeln!(s, "        services: {}", f.services.join(", "));
            }
            for v in &f.via {
                let _ = writeln!(s, "        via {v}");
            }
        }
        // Services grouped by the module lines they reach.
        let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        let mut without = Vec::new();
        for svc in &self.services {
            if svc.modules.is_empty() {
                without.push(svc.name.as_str());
            } else {
                let at: Vec<String> = svc.modules.iter().map(|m| m.at.to_string()).collect();
                groups.entry(at.join(", ")).or_default().push(&svc.name);
            }
        }
        let _ = writeln!(s);
        let reached: Vec<String> = groups
            .iter()
            .map(|(at, names)| format!("{} ({at})", names.join(", ")))
            .collect();
        let _ = writeln!(
            s,
            "PAM ({}): pam_twostep reached by {}",
            self.pam_dir,
            if reached.is_empty() {
                "no service".to_owned()
            } else {
                reached.join("; ")
            }
        );
        if !without.is_empty() {
            let _ = writeln!(s, "     not by: {}", without.join(", "));
        }
        let _ = match &self.sshd {
            SshdCheck::Checked { config } => writeln!(s, "sshd: checked (sshd -T, {config})"),
            SshdCheck::Skipped(why) => writeln!(s, "sshd: not checked: {why}"),
        };
        let _ = match &self.sudo {
            (file, Some(pairs)) => {
                let list: Vec<String> = pairs
                    .iter()
                    .map(|p| {
                        format!(
                            "{}{} and {} (-i)",
                            if p.scope.is_empty() {
                                String::new()
                            } else {
                                format!("Defaults{}: ", p.scope)
                            },
                            p.service,
                            p.login_service
                        )
                    })
                    .collect();
                writeln!(s, "sudo: checked ({file}): {}", list.join("; "))
            }
            (file, None) => writeln!(s, "sudo: not checked: cannot read {file}"),
        };
        let (errors, warnings) = (self.count(Severity::Error), self.count(Severity::Warning));
        let _ = if errors + warnings == 0 {
            writeln!(s, "no problems found")
        } else {
            writeln!(
                s,
                "{errors} error{}, {warnings} warning{}",
                if errors == 1 { "" } else { "s" },
                if warnings == 1 { "" } else { "s" }
            )
        };
        s
    }
}

/// `twostepctl doctor`: prints the report; an error (exit 1) when anything is wrong.
///
/// # Errors
/// A one-line summary when a finding is an error or a warning; `pam_dir` not a directory;
/// a `sudoers` file named but unreadable.
pub async fn run(
    json: bool,
    pam_dir: &Path,
    sshd_config: Option<&Path>,
    sudoers: Option<&Path>,
    bus: Option<&str>,
    config: &Path,
) -> Result<(), String> {
    let dir = pam_dir.to_string_lossy().into_owned();
    if !pam_dir.is_dir() {
        return Err(format!("{dir} is not a directory"));
    }
    let files = Fs;
    let pam = analyze_pam(&files, &dir);
    let mut findings = pam.findings;

    let (f, sshd) = check_sshd(&files, &dir, sshd_config);
    findings.extend(f);

    findings.extend(lockers::locker_findings(&files, &dir));

    findings.extend(services::service_rule_findings(
        &files,
        &dir,
        &config.to_string_lossy(),
    ));

    let (f, sudo) = check_sudo(&files, &dir, sudoers)?;
    findings.extend(f);

    let (f, daemons) = check_daemons(&pam.services, bus).await;
    findings.extend(f);
    findings.extend(clock::check(&daemons).await);

    let report = Report {
        pam_dir: dir,
        services: pam.services,
        findings: merge(findings),
        sshd,
        sudo,
        daemons,
    };
    if json {
        crate::io::out_json(&report.json());
    } else {
        crate::io::out(&report.text());
    }
    let (errors, warnings) = (
        report.count(Severity::Error),
        report.count(Severity::Warning),
    );
    if errors + warnings == 0 {
        Ok(())
    } else {
        Err(format!(
            "{errors} error(s) and {warnings} warning(s): the second factor can be skipped or is not reached"
        ))
    }
}

/// sshd, when its PAM stack relies on the module (or a config was named): `sshd -T` and
/// the config files against the rules of [`analyze_sshd`].
fn check_sshd(files: &Fs, dir: &str, sshd_config: Option<&Path>) -> (Vec<Finding>, SshdCheck) {
    let mut findings = Vec::new();
    let loader = Loader { files, dir };
    let (stack, file) = loader.service(SSHD_SERVICE);
    let (sshd_stack, _) = analyze_stack(SSHD_SERVICE, &file, &stack);
    let not_protected = || {
        Finding::new(
            Severity::Info,
            "sshd-not-protected",
            format!("sshd's PAM stack ({file}) does not reach pam_twostep: SSH logins have no second factor"),
            None,
        )
        .service(SSHD_SERVICE)
    };
    // Not reached yet, but the package's pam-auth-update profile is installed: judge sshd
    // against the stack as enabling the profile would write it (enable.rs).
    let enabled = if sshd_stack.modules.is_empty() {
        enable::as_enabled(files, dir)
    } else {
        None
    };
    let preview = enabled.as_ref().and_then(|e| {
        let (stack, file) = Loader { files: e, dir }.service(SSHD_SERVICE);
        let (info, _) = analyze_stack(SSHD_SERVICE, &file, &stack);
        (!info.modules.is_empty()).then_some(info)
    });
    if sshd_stack.modules.is_empty() && preview.is_none() && sshd_config.is_none() {
        findings.push(not_protected());
        let check = SshdCheck::Skipped(format!("its PAM stack ({file}) does not use pam_twostep"));
        return (findings, check);
    }
    let check = match find_sshd() {
        None if sshd_config.is_none() => SshdCheck::Skipped("sshd is not installed".into()),
        None => {
            findings.push(Finding::new(
                Severity::Error,
                "sshd-unavailable",
                "sshd is not installed: cannot read its effective configuration".into(),
                None,
            ));
            SshdCheck::Skipped("sshd is not installed".into())
        }
        Some(binary) => {
            let config_path = sshd_config.map_or_else(
                || format!("{SSHD_DIR}/sshd_config"),
                |p| p.to_string_lossy().into_owned(),
            );
            match sshd_effective(&binary, sshd_config) {
                Ok(values) => {
                    let config = read_sshd_config(files, &config_path);
                    if let Some(stack) = &preview {
                        findings.push(not_protected());
                        findings.extend(
                            analyze_sshd(&values, &config, stack)
                                .into_iter()
                                .map(enable::after_enabling),
                        );
                    } else if sshd_stack.modules.is_empty() {
                        findings.push(not_protected());
                    } else {
                        findings.extend(analyze_sshd(&values, &config, &sshd_stack));
                    }
                    SshdCheck::Checked {
                        config: config_path,
                    }
                }
                Err(e) => {
                    findings.push(Finding::new(
                        Severity::Error,
                        "sshd-unavailable",
                        format!("cannot read sshd's effective configuration: {e}"),
                        None,
                    ));
                    SshdCheck::Skipped(e)
                }
            }
        }
    };
    (findings, check)
}

/// The sudoers file read and sudo's two services checked: the findings, the file, and the
/// service pairs found (`None`: the default file is not readable; then sudo is skipped).
///
/// # Errors
/// A `sudoers` file named on the command line that cannot be read.
fn check_sudo(
    files: &Fs,
    dir: &str,
    sudoers: Option<&Path>,
) -> Result<(Vec<Finding>, SudoCheck), String> {
    let sudoers_file = sudoers.map_or_else(
        || sudoers::SUDOERS.to_owned(),
        |p| p.to_string_lossy().into_owned(),
    );
    match sudoers::read_sudoers(files, &sudoers_file) {
        Some(settings) => {
            let (f, pairs) = sudo_findings(files, dir, &settings);
            Ok((f, (sudoers_file, Some(pairs))))
        }
        None if sudoers.is_some() => Err(format!("cannot read {sudoers_file}")),
        None => Ok((Vec::new(), (sudoers_file, None))),
    }
}

/// The daemon on every bus the module lines name (and `--bus`; the system bus when there
/// is none), and the `failmode=open` lines whose daemon is down.
async fn check_daemons(
    services: &[ServiceInfo],
    bus: Option<&str>,
) -> (Vec<Finding>, Vec<(String, u32, DaemonState)>) {
    let mut targets: BTreeSet<(String, u32)> = services
        .iter()
        .flat_map(|s| s.modules.iter().map(|m| (m.bus.clone(), m.bus_uid)))
        .collect();
    if let Some(b) = bus {
        targets.insert((b.to_owned(), 0));
    }
    if targets.is_empty() {
        targets.insert((twostep_proto::SYSTEM_BUS_ADDRESS.to_owned(), 0));
    }
    let mut daemons = Vec::new();
    for (address, uid) in targets {
        let state = check_daemon(&address).await;
        daemons.push((address, uid, state));
    }
    let down: BTreeSet<String> = daemons
        .iter()
        .filter(|(_, uid, s)| !matches!(s, DaemonState::Running { uid: owner } if owner == uid))
        .map(|(b, _, _)| b.clone())
        .collect();
    let mut findings = daemon_findings(&daemons, services);
    findings.extend(failmode_findings(services, &down));
    (findings, daemons)
}
