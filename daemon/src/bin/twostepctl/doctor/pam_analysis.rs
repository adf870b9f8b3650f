// SPDX-License-Identifier: MIT OR Apache-2.0
//! The analysis of PAM stacks: every way a service's `auth` stack skips pam_twostep, lets
//! its failure through, or reaches it wrongly ([`analyze_stack`], one function per family
//! of findings), every service of the PAM directory ([`analyze_pam`]), and the
//! `failmode=open` lines ([`failmode_findings`]).

use std::collections::BTreeSet;

use twostep_proto::module_results;

use super::findings::Loc;
use super::findings::{merge, Finding, Severity};
use super::io::{basename, join, Files};
use super::pam_stack::{parse_pam, Action, Handler, HandlerKind, Loader, PamLine};

/// Modules that check a password: the first factor, which must come before the code.
const PASSWORD_MODULES: [&str; 8] = [
    "pam_unix.so",
    "pam_unix2.so",
    "pam_sss.so",
    "pam_ldap.so",
    "pam_krb5.so",
    "pam_winbind.so",
    "pam_pwdb.so",
    "pam_userdb.so",
];
/// Services whose program runs PAM as root on behalf of someone else: there `pam_rootok`
/// (real uid 0) succeeds for everyone.
const ROOT_RUN_SERVICES: [&str; 9] = [
    "sshd",
    "login",
    "remote",
    "gdm-password",
    "lightdm",
    "sddm",
    "cockpit",
    "xrdp-sesman",
    "vsftpd",
];

/// A `pam_twostep` line a service reaches, with the arguments that matter here.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ModuleLine {
    pub at: Loc,
    pub failmode_open: bool,
    pub nullok: bool,
    /// `bus=` (default: the system bus socket).
    pub bus: String,
    /// `bus_uid=` (default 0).
    pub bus_uid: u32,
}

/// What the doctor learned about one PAM service.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceInfo {
    pub name: String,
    /// The file whose `auth` stack libpam runs (the service's own, or `other`).
    pub file: String,
    /// The pam_twostep lines it reaches, in order.
    pub modules: Vec<ModuleLine>,
    /// A password module comes before the first pam_twostep.
    pub password_first: bool,
}

/// Where the stack goes after an action skipped entries: the index of the next entry
/// that runs, or `None` when the stack ends there with its state as it is.
type Landing = Option<usize>;

/// libpam's jump from entry `i` over `n` entries of its level (a substack with its
/// entries counts as one). `None`: a bad jump (past the end of its level), which fails
/// the stack; else the last entry skipped and where the stack goes on.
fn jump(stack: &[Handler], i: usize, n: usize) -> Option<(usize, Landing)> {
    let level = stack.get(i)?.level;
    let mut pos = i;
    let mut left = n;
    while left > 0 && pos + 1 < stack.len() && stack[pos + 1].level >= level {
        pos += 1;
        while pos + 1 < stack.len() && stack[pos + 1].level > level {
            pos += 1;
        }
        left -= 1;
    }
    (left == 0).then(|| (pos, (pos + 1 < stack.len()).then_some(pos + 1)))
}

/// Whether `action` on entry `i` skips entry `t` (`i < t`), and where the stack then
/// goes. `None`: `t` is not skipped.
fn skips(stack: &[Handler], i: usize, action: Action, t: usize) -> Option<Landing> {
    let level = stack.get(i)?.level;
    match action {
        Action::Done => {
            // libpam `decision_made`: the rest at this level and deeper is skipped; at
            // level 0 that is the end of the stack, in a substack the parent goes on.
            let end = (i + 1..stack.len())
                .find(|&j| stack[j].level < level)
                .unwrap_or(stack.len());
            (i < t && t < end).then(|| (level > 0 && end < stack.len()).then_some(end))
        }
        Action::Jump(n) => jump(stack, i, n)
            .filter(|(last, _)| i < t && t <= *last)
            .map(|(_, landing)| landing),
        _ => None,
    }
}

/// Whether the stack certainly fails from `landing` on: it lands on `pam_deny`, which
/// fails, and counts that failure.
fn denies(stack: &[Handler], landing: Landing) -> bool {
    landing
        .and_then(|j| stack.get(j))
        .and_then(Handler::module)
        .is_some_and(|(control, m)| {
            m == "pam_deny.so" && matches!(control.action("auth_err"), Action::Bad | Action::Die)
        })
}

/// What a password module returns when the password is wrong or cannot be checked.
const PASSWORD_FAILURES: [&str; 6] = [
    "auth_err",
    "user_unknown",
    "authinfo_unavail",
    "maxtries",
    "cred_insufficient",
    "authtok_err",
];

fn is_password_module(h: &Handler) -> bool {
    h.module()
        .is_some_and(|(_, m)| PASSWORD_MODULES.contains(&m))
}

/// The entries that can run next after entry `i` took `action`; empty: the stack ends.
/// `die` and `done` end a substack only (libpam); a bad jump fails the stack.
fn next_entries(stack: &[Handler], i: usize, action: Action) -> Vec<usize> {
    let level = stack.get(i).map_or(0, |h| h.level);
    let following = Some(i + 1).filter(|&j| j < stack.len());
    match action {
        Action::Ok | Action::Bad | Action::Ignore | Action::Reset => {
            following.into_iter().collect()
        }
        Action::Jump(n) => jump(stack, i, n)
            .and_then(|(_, landing)| landing)
            .into_iter()
            .collect(),
        Action::Die | Action::Done if level == 0 => Vec::new(),
        Action::Die | Action::Done => (i + 1..stack.len())
            .find(|&j| stack[j].level < level)
            .into_iter()
            .collect(),
    }
}

/// Whether entry `t` can run after the password module at `p` failed. Every way the
/// entries in between may return is followed, except that `pam_deny` only fails,
/// `pam_permit` only succeeds, and another password module that succeeds means the
/// password was right after all (only its failures are followed).
fn runs_after_failure(stack: &[Handler], p: usize, t: usize) -> bool {
    let failures = |i: usize| -> Vec<Action> {
        stack[i].module().map_or_else(Vec::new, |(control, _)| {
            PASSWORD_FAILURES
                .iter()
                .map(|v| control.action(v))
                .collect()
        })
    };
    let mut todo: Vec<usize> = failures(p)
        .into_iter()
        .flat_map(|a| next_entries(stack, p, a))
        .collect();
    let mut seen = vec![false; stack.len()];
    while let Some(j) = todo.pop() {
        if j == t {
            return true;
        }
        if std::mem::replace(&mut seen[j], true) {
            continue;
        }
        let h = &stack[j];
        let actions: Vec<Action> = match &h.kind {
            HandlerKind::Substack => vec![Action::Ok],
            HandlerKind::Broken(_) => vec![Action::Bad],
            HandlerKind::Module { control, .. } => match h.module().map(|(_, m)| m) {
                _ if is_password_module(h) => failures(j),
                Some("pam_deny.so") => vec![control.action("auth_err")],
                Some("pam_permit.so") => vec![control.action("success")],
                _ => control
                    .explicit
                    .iter()
                    .map(|(_, a)| *a)
                    .chain([control.default])
                    .collect(),
            },
        };
        for a in actions {
            todo.extend(next_entries(stack, j, a));
        }
    }
    false
}

fn pam_code_name(value: &str) -> String {
    format!("PAM_{}", value.to_ascii_uppercase())
}

/// The findings for one service's `auth` stack, and what the service reaches: one function
/// per family of findings, in this order.
pub(super) fn analyze_stack(
    service: &str,
    file: &str,
    stack: &[Handler],
) -> (ServiceInfo, Vec<Finding>) {
    let mut out = broken_lines(stack);
    let found: Vec<usize> = (0..stack.len())
        .filter(|&i| stack[i].is_twostep())
        .collect();
    let modules: Vec<ModuleLine> = found.iter().map(|&i| module_line(&stack[i])).collect();
    let password_at = stack.iter().position(|h| {
        h.module()
            .is_some_and(|(_, m)| PASSWORD_MODULES.contains(&m))
    });
    let mut password_first = false;
    if let Some(&t) = found.first() {
        password_first = password_at.is_some_and(|p| p < t);
        out.extend(skipped_on_success(service, stack, t));
        out.extend(module_failure_ignored(stack, t));
        out.extend(reset_after_module(stack, t));
        out.extend(module_twice(stack, &found));
        out.extend(module_before_password(stack, t, password_at));
        out.extend(module_after_failed_password(stack, t));
        out.extend(module_line_findings(stack, &found));
    }
    let out = out.into_iter().map(|f| f.service(service)).collect();
    let info = ServiceInfo {
        name: service.to_owned(),
        file: file.to_owned(),
        modules,
        password_first,
    };
    (info, out)
}

/// `f` at entry `h`: with the include lines that led there.
fn at_entry(mut f: Finding, h: &Handler) -> Finding {
    f.via = h.via.clone();
    f
}

/// Lines libpam cannot use: each makes every `auth` of the service fail.
fn broken_lines(stack: &[Handler]) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in stack {
        if let HandlerKind::Broken(why) = &h.kind {
            out.push(at_entry(
                Finding::new(
                    Severity::Warning,
                    "pam-broken-line",
                    format!("libpam cannot use this line ({why}): it makes every `auth` of the service fail"),
                    Some(h.at.clone()),
                ),
                h,
            ));
        }
    }
    out
}

/// Something before the module (at `t`) ends the stack, or jumps over it, on success.
fn skipped_on_success(service: &str, stack: &[Handler], t: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, h) in stack.iter().enumerate().take(t) {
        let Some((control, module)) = h.module() else {
            continue;
        };
        for value in ["success", "ignore"] {
            let action = control.action(value);
            let Some(landing) = skips(stack, i, action, t) else {
                continue;
            };
            if denies(stack, landing) {
                continue;
            }
            let how = match action {
                Action::Done if h.level == 0 => "ends the auth stack",
                Action::Done => "ends its substack",
                _ => "jumps over pam_twostep",
            };
            let when = if value == "success" {
                format!("when {module} succeeds")
            } else {
                format!("when {module} returns PAM_IGNORE")
            };
            let (severity, note) = if module == "pam_rootok.so"
                && !ROOT_RUN_SERVICES.contains(&service)
            {
                (
                    Severity::Info,
                    " (pam_rootok succeeds only for a caller whose real uid is 0: root needs no code here)",
                )
            } else if module == "pam_rootok.so" {
                (
                    Severity::Error,
                    " (this program runs PAM as root, so pam_rootok succeeds for everyone)",
                )
            } else {
                (Severity::Error, "")
            };
            out.push(at_entry(
                Finding::new(
                    severity,
                    "pam-skips-module",
                    format!(
                        "`{}` {how} {when}: pam_twostep never runs and no code is asked{note}",
                        h.text(),
                    ),
                    Some(h.at.clone()),
                ),
                h,
            ));
            break;
        }
    }
    out
}

/// The module's own failure (any of [`module_results::FAILURES`]) does not fail the
/// stack.
fn module_failure_ignored(stack: &[Handler], t: usize) -> Vec<Finding> {
    let Some((control, _)) = stack[t].module() else {
        return Vec::new();
    };
    let mut let_through = Vec::new();
    for &value in module_results::FAILURES {
        let action = control.action(value);
        let landing = match action {
            Action::Ignore | Action::Reset => Some(t + 1).filter(|&j| j < stack.len()),
            // A jump records nothing; a bad jump fails the stack.
            Action::Jump(n) => match jump(stack, t, n) {
                Some((_, landing)) => landing,
                None => continue,
            },
            _ => continue,
        };
        if !denies(stack, landing) {
            let_through.push(pam_code_name(value));
        }
    }
    if let_through.is_empty() {
        return Vec::new();
    }
    vec![at_entry(
        Finding::new(
            Severity::Error,
            "pam-module-failure-ignored",
            format!(
                "`{}`: a failed second factor ({}) does not fail the stack, so the login can succeed without the code; use `required`",
                stack[t].text(),
                let_through.join(", ")
            ),
            Some(stack[t].at.clone()),
        ),
        &stack[t],
    )]
}

/// A later `reset` forgets the module's failure.
fn reset_after_module(stack: &[Handler], t: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    for h in stack.iter().skip(t + 1) {
        let Some((control, module)) = h.module() else {
            continue;
        };
        if h.level <= stack[t].level
            && [control.action("success"), control.action("ignore")].contains(&Action::Reset)
        {
            out.push(at_entry(
                Finding::new(
                    Severity::Error,
                    "pam-reset-after-module",
                    format!(
                        "`{}` resets the stack's state after pam_twostep when {module} succeeds: a failed code is forgotten",
                        h.text()
                    ),
                    Some(h.at.clone()),
                ),
                h,
            ));
        }
    }
    out
}

/// Asked twice (`found`: the module's entries, in order).
fn module_twice(stack: &[Handler], found: &[usize]) -> Vec<Finding> {
    let (Some(&t), Some(&second)) = (found.first(), found.get(1)) else {
        return Vec::new();
    };
    vec![at_entry(
        Finding::new(
            Severity::Warning,
            "pam-module-twice",
            format!(
                "pam_twostep runs twice in this stack (first at {}): users are asked for two codes",
                stack[t].at
            ),
            Some(stack[second].at.clone()),
        ),
        &stack[second],
    )]
}

/// Before the password (the first password module, at `password_at`).
fn module_before_password(stack: &[Handler], t: usize, password_at: Option<usize>) -> Vec<Finding> {
    let Some(p) = password_at.filter(|&p| p > t) else {
        return Vec::new();
    };
    // Why none for `app_password`: the module is that service's password check (a password
    // module after it, with `nullok`, serves users without a second factor). Why a warning
    // only for `forward_pass`: it must come first (one prompt carries both), and
    // docs/services.md states this cost.
    let has = |arg: &str| {
        matches!(&stack[t].kind, HandlerKind::Module { args, .. }
            if args.iter().any(|a| a == arg))
    };
    if has("app_password") {
        return Vec::new();
    }
    if has("forward_pass") {
        return vec![at_entry(
            Finding::new(
                Severity::Warning,
                "pam-module-before-password",
                format!(
                    "pam_twostep forward_pass checks the code before the password module ({}): \
                     wrong codes from anyone who knows a user name count towards that user's \
                     lockout, and a right code typed with a wrong password is spent; prefer \
                     keyboard-interactive where the client supports it",
                    stack[p].at
                ),
                Some(stack[t].at.clone()),
            ),
            &stack[t],
        )];
    }
    vec![at_entry(
        Finding::new(
            Severity::Error,
            "pam-module-before-password",
            format!(
                "pam_twostep runs before the password module ({}): anyone who knows a user name can make the daemon count wrong codes and lock that user out",
                stack[p].at
            ),
            Some(stack[t].at.clone()),
        ),
        &stack[t],
    )]
}

/// After a failed password (issue 19, fault 10): a wrong password that does not end
/// the stack reaches the code prompt; strangers then lock the user out with wrong codes,
/// and a right code typed after a mistyped password is spent.
fn module_after_failed_password(stack: &[Handler], t: usize) -> Vec<Finding> {
    let Some(p) =
        (0..t).find(|&p| is_password_module(&stack[p]) && runs_after_failure(stack, p, t))
    else {
        return Vec::new();
    };
    vec![at_entry(
        Finding::new(
            Severity::Error,
            "pam-module-after-failed-password",
            format!(
                "`{}`: when the password is wrong the stack goes on to pam_twostep, which asks for the code anyway: anyone who knows a user name can lock that user out with wrong codes, and a right code typed after a wrong password is spent; end the stack on a failed password (`requisite`, `[success=ok default=die]`, or Debian's `@include common-auth`)",
                stack[p].text(),
            ),
            Some(stack[p].at.clone()),
        ),
        &stack[p],
    )]
}

/// Each module line: how it is loaded and its arguments.
fn module_line_findings(stack: &[Handler], found: &[usize]) -> Vec<Finding> {
    let mut out = Vec::new();
    for &i in found {
        let h = &stack[i];
        let HandlerKind::Module { dash, args, .. } = &h.kind else {
            continue;
        };
        if *dash {
            out.push(at_entry(
                Finding::new(
                    Severity::Warning,
                    "pam-module-optional-load",
                    "`-auth`: if pam_twostep cannot be loaded, libpam skips the line without a trace and no code is asked; write `auth`".into(),
                    Some(h.at.clone()),
                ),
                h,
            ));
        }
        for arg in args {
            let key = arg.split_once('=').map_or(arg.as_str(), |(k, _)| k);
            let finding = match key {
                "nullok" => Some(Finding::new(
                    Severity::Info,
                    "pam-nullok",
                    "nullok: users the daemon does not require a second factor of, and who have none, log in without a code".into(),
                    Some(h.at.clone()),
                )),
                k if twostep_proto::module_args::NAMES.contains(&k) => None,
                _ => Some(Finding::new(
                    Severity::Error,
                    "pam-bad-argument",
                    format!("`{arg}` is not an argument pam_twostep knows: it refuses every login of the service (PAM_SERVICE_ERR)"),
                    Some(h.at.clone()),
                )),
            };
            if let Some(f) = finding {
                out.push(at_entry(f, h));
            }
        }
    }
    out
}

fn module_line(h: &Handler) -> ModuleLine {
    let mut line = ModuleLine {
        at: h.at.clone(),
        failmode_open: false,
        nullok: false,
        bus: twostep_proto::SYSTEM_BUS_ADDRESS.to_owned(),
        bus_uid: 0,
    };
    if let HandlerKind::Module { args, .. } = &h.kind {
        for arg in args {
            match arg.split_once('=') {
                Some(("failmode", v)) => line.failmode_open = v == "open",
                Some(("bus", v)) => v.clone_into(&mut line.bus),
                Some(("bus_uid", v)) => line.bus_uid = v.parse().unwrap_or(0),
                None if arg == "nullok" => line.nullok = true,
                _ => {}
            }
        }
    }
    line
}

/// Whether a file in the PAM directory may be a service (not a backup or package leftover).
fn is_service_name(name: &str) -> bool {
    const LEFTOVERS: [&str; 9] = [
        ".dpkg-", ".ucf-", ".rpmnew", ".rpmsave", ".rpmorig", ".bak", ".orig", ".old", ".swp",
    ];
    !name.starts_with('.') && !name.ends_with('~') && !LEFTOVERS.iter().any(|l| name.contains(l))
}

/// Whether an included file is a shared fragment rather than a service of its own
/// (`common-auth`, `system-auth`, `password-auth`, `postlogin`…). `su-l` includes `su`
/// and `sudo-i` includes `sudo`: those stay services.
fn is_fragment_name(name: &str) -> bool {
    name.starts_with("common-")
        || name.starts_with("system-")
        || name.ends_with("-auth")
        || name == "postlogin"
}

/// The result of reading the PAM directory.
#[derive(Clone, Debug)]
pub struct PamReport {
    pub services: Vec<ServiceInfo>,
    pub findings: Vec<Finding>,
}

/// Every service in `dir`: its stack, what it reaches, and every way around the module.
pub fn analyze_pam(files: &dyn Files, dir: &str) -> PamReport {
    let loader = Loader { files, dir };
    let mut findings = Vec::new();
    let mut names: Vec<String> = files
        .list(dir)
        .into_iter()
        .filter(|n| is_service_name(n))
        .filter(|n| files.read(&join(dir, n)).is_ok())
        .collect();
    // libpam lower-cases the service name before it looks for the file: a file with a
    // capital letter is never a service (issue 19, fault 10).
    names.retain(|n| {
        if *n == n.to_ascii_lowercase() {
            return true;
        }
        findings.push(Finding::new(
            Severity::Warning,
            "pam-file-never-read",
            format!(
                "{}: libpam lower-cases service names, so no program ever reads this file; a program configured with the name `{n}` reads {} instead, or {} when that does not exist",
                join(dir, n),
                join(dir, &n.to_ascii_lowercase()),
                join(dir, "other")
            ),
            None,
        ));
        false
    });
    let mut included = BTreeSet::new();
    for name in &names {
        let text = files.read(&join(dir, name)).unwrap_or_default();
        for (_, line) in parse_pam(&text) {
            match line {
                PamLine::IncludeAll(t)
                | PamLine::Include { target: t, .. }
                | PamLine::Substack { target: t, .. } => {
                    included.insert(basename(&t).to_owned());
                }
                _ => {}
            }
        }
    }
    let mut services = Vec::new();
    for name in names
        .iter()
        .filter(|n| !(included.contains(*n) && is_fragment_name(n)))
    {
        let (stack, file) = loader.service(name);
        let (info, f) = analyze_stack(name, &file, &stack);
        services.push(info);
        findings.extend(f);
        // The module file itself.
        for h in stack.iter().filter(|h| h.is_twostep()) {
            let HandlerKind::Module { dash, module, .. } = &h.kind else {
                continue;
            };
            if module_exists(files, module) {
                continue;
            }
            let message = if *dash {
                format!("{module} is not installed, and `-auth` makes libpam skip it without a trace: no code is asked")
            } else {
                format!("{module} is not installed: libpam fails every login of these services")
            };
            let mut f = Finding::new(
                Severity::Error,
                "pam-module-missing",
                message,
                Some(h.at.clone()),
            )
            .service(name);
            f.via = h.via.clone();
            findings.push(f);
        }
    }
    if !services.iter().any(|s| !s.modules.is_empty()) {
        findings.push(Finding::new(
            Severity::Warning,
            "pam-module-nowhere",
            format!(
                "no PAM service in {dir} reaches pam_twostep: no login asks for a second factor"
            ),
            None,
        ));
    }
    PamReport {
        services,
        findings: merge(findings),
    }
}

/// Whether libpam finds module `name` (a path, or a name in its module directories).
fn module_exists(files: &dyn Files, name: &str) -> bool {
    if name.starts_with('/') {
        return files.exists(name);
    }
    let mut dirs: Vec<String> = [
        "/lib/security",
        "/lib64/security",
        "/usr/lib/security",
        "/usr/lib64/security",
    ]
    .iter()
    .map(|d| (*d).to_owned())
    .collect();
    for base in ["/lib", "/usr/lib"] {
        for d in files.list(base) {
            if d.contains("-linux-") {
                dirs.push(format!("{base}/{d}/security"));
            }
        }
    }
    dirs.iter().any(|d| files.exists(&join(d, name)))
}

/// The `failmode=open` lines, as errors where the daemon on their bus is down right now.
pub fn failmode_findings(services: &[ServiceInfo], down: &BTreeSet<String>) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in services {
        for m in s.modules.iter().filter(|m| m.failmode_open) {
            let (severity, now) = if down.contains(&m.bus) {
                (
                    Severity::Error,
                    " — and it is not reachable now: these logins skip the code right now",
                )
            } else {
                (Severity::Warning, "")
            };
            out.push(
                Finding::new(
                    severity,
                    "pam-failmode-open",
                    format!("failmode=open: whenever twostepd cannot be reached on {}, logins through this service skip the second factor{now}", m.bus),
                    Some(m.at.clone()),
                )
                .service(&s.name),
            );
        }
    }
    merge(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::{installed, kinds, Mem, DEBIAN_COMMON_AUTH};

    /// (name, files, expected non-info findings as (kind, file:line)).
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>);

    #[test]
    fn pam_stacks() {
        let cases: Vec<Case> = vec![
            (
                "debian: common-auth then the module",
                vec![
                    ("common-auth", DEBIAN_COMMON_AUTH),
                    ("sshd", "@include common-auth\nauth required pam_twostep.so\naccount required pam_unix.so\n"),
                ],
                vec![],
            ),
            (
                "sufficient pam_unix before the module",
                vec![("sshd", "auth sufficient pam_unix.so\nauth required pam_twostep.so\n")],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/sshd:1"),
                    ("pam-skips-module", "/etc/pam.d/sshd:1"),
                ],
            ),
            (
                "success=done before the module (faillock authsucc pattern)",
                vec![("sudo", "auth requisite pam_unix.so\nauth [success=done default=ignore] pam_faillock.so authsucc\nauth required pam_twostep.so\n")],
                vec![("pam-skips-module", "/etc/pam.d/sudo:2")],
            ),
            (
                "jump over the module into pam_permit (module inserted after pam_unix in common-auth)",
                vec![
                    ("common-auth", "auth [success=2 default=ignore] pam_unix.so\nauth required pam_twostep.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n"),
                    ("login", "@include common-auth\n"),
                ],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/common-auth:1"),
                    ("pam-skips-module", "/etc/pam.d/common-auth:1"),
                ],
            ),
            (
                "jump of 1 over the module lands on pam_deny: safe",
                vec![("login", "auth [success=1 default=ignore] pam_unix.so\nauth required pam_twostep.so\nauth requisite pam_deny.so\nauth required pam_permit.so\n")],
                vec![("pam-module-after-failed-password", "/etc/pam.d/login:1")],
            ),
            (
                "gentoo system-auth: jump of 1 skips faillock authfail, module appended: safe",
                vec![
                    ("system-auth", "auth required pam_env.so\nauth requisite pam_faillock.so preauth\nauth [success=1 new_authtok_reqd=1 ignore=ignore default=bad] pam_unix.so try_first_pass nullok\nauth [default=die] pam_faillock.so authfail\nauth optional pam_permit.so\nauth required pam_twostep.so\n"),
                    ("sshd", "auth include system-auth\n"),
                ],
                vec![],
            ),
            (
                "gentoo system-auth with the module right after pam_unix: jumped over",
                vec![
                    ("system-auth", "auth required pam_env.so\nauth requisite pam_faillock.so preauth\nauth [success=1 new_authtok_reqd=1 ignore=ignore default=bad] pam_unix.so try_first_pass nullok\nauth required pam_twostep.so\nauth [default=die] pam_faillock.so authfail\nauth optional pam_permit.so\n"),
                    ("sshd", "auth include system-auth\n"),
                ],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/system-auth:3"),
                    ("pam-skips-module", "/etc/pam.d/system-auth:3"),
                ],
            ),
            (
                "sufficient in an @include'd file reaches every service",
                vec![
                    ("common-auth", "auth sufficient pam_unix.so\n"),
                    ("sshd", "@include common-auth\nauth required pam_twostep.so\n"),
                    ("sudo", "@include common-auth\nauth required pam_twostep.so\n"),
                ],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/common-auth:1"),
                    ("pam-skips-module", "/etc/pam.d/common-auth:1"),
                ],
            ),
            (
                "substack: sufficient inside ends only the substack, the module after it runs",
                vec![
                    ("password-auth", "auth sufficient pam_unix.so\nauth required pam_deny.so\n"),
                    ("sshd", "auth substack password-auth\nauth required pam_twostep.so\n"),
                ],
                vec![("pam-module-after-failed-password", "/etc/pam.d/password-auth:1")],
            ),
            (
                "substack: sufficient before the module inside the same substack",
                vec![
                    ("password-auth", "auth sufficient pam_unix.so\nauth required pam_twostep.so\n"),
                    ("sshd", "auth substack password-auth\nauth required pam_permit.so\n"),
                ],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/password-auth:1"),
                    ("pam-skips-module", "/etc/pam.d/password-auth:1"),
                ],
            ),
            (
                "substack counts as one entry for a jump",
                vec![
                    ("password-auth", "auth requisite pam_unix.so\nauth optional pam_cap.so\n"),
                    ("sshd", "auth [success=1 default=ignore] pam_env.so\nauth substack password-auth\nauth required pam_twostep.so\n"),
                ],
                vec![("pam-module-after-failed-password", "/etc/pam.d/password-auth:1")],
            ),
            (
                "the module optional or sufficient: its failure is ignored",
                vec![
                    ("sshd", "auth requisite pam_unix.so\nauth sufficient pam_twostep.so\nauth required pam_permit.so\n"),
                    ("sudo", "auth requisite pam_unix.so\nauth optional pam_twostep.so\n"),
                ],
                vec![
                    ("pam-module-failure-ignored", "/etc/pam.d/sshd:2"),
                    ("pam-module-failure-ignored", "/etc/pam.d/sudo:2"),
                ],
            ),
            (
                "sufficient module followed by pam_deny: its failure still fails",
                vec![("sshd", "auth requisite pam_unix.so\nauth sufficient pam_twostep.so\nauth requisite pam_deny.so\n")],
                vec![],
            ),
            (
                "authinfo_unavail=ignore lets an unreachable daemon through",
                vec![("sshd", "auth requisite pam_unix.so\nauth [success=ok authinfo_unavail=ignore default=bad] pam_twostep.so\n")],
                vec![("pam-module-failure-ignored", "/etc/pam.d/sshd:2")],
            ),
            (
                "the module twice (profile in common-auth and a line in sudo)",
                vec![
                    ("common-auth", "auth requisite pam_unix.so\nauth required pam_twostep.so nullok\n"),
                    ("sudo", "@include common-auth\nauth required pam_twostep.so\n"),
                ],
                vec![("pam-module-twice", "/etc/pam.d/sudo:2")],
            ),
            (
                "the module before the password",
                vec![("login", "auth required pam_twostep.so\nauth requisite pam_unix.so\n")],
                vec![("pam-module-before-password", "/etc/pam.d/login:1")],
            ),
            (
                "forward_pass before the password (its documented order; a warning)",
                vec![("vpn", "auth requisite pam_twostep.so forward_pass\nauth requisite pam_unix.so use_first_pass\n")],
                vec![("pam-module-before-password", "/etc/pam.d/vpn:1")],
            ),
            (
                "app_password: sufficient, then pam_deny (docs/services.md)",
                vec![("dovecot", "auth sufficient pam_twostep.so app_password\nauth requisite pam_deny.so\naccount required pam_unix.so\n")],
                vec![],
            ),
            (
                "app_password with nullok, then pam_unix for users without 2FA (docs/services.md)",
                vec![("dovecot", "auth [success=done ignore=ignore default=die] pam_twostep.so app_password nullok\nauth required pam_unix.so try_first_pass\n")],
                vec![],
            ),
            (
                "-auth and an unknown argument",
                vec![("sshd", "auth requisite pam_unix.so\n-auth required pam_twostep.so nulok\n")],
                vec![
                    ("pam-bad-argument", "/etc/pam.d/sshd:2"),
                    ("pam-module-optional-load", "/etc/pam.d/sshd:2"),
                ],
            ),
            (
                "a missing include fails the stack",
                vec![("sshd", "@include commn-auth\nauth required pam_twostep.so\n")],
                vec![("pam-broken-line", "/etc/pam.d/sshd:1")],
            ),
            (
                "pam_rootok in su: only root, harmless; in sshd: everyone",
                vec![
                    ("su", "auth sufficient pam_rootok.so\nauth requisite pam_unix.so\nauth required pam_twostep.so\n"),
                    ("sshd", "auth sufficient pam_rootok.so\nauth requisite pam_unix.so\nauth required pam_twostep.so\n"),
                ],
                vec![("pam-skips-module", "/etc/pam.d/sshd:1")],
            ),
            (
                "no module anywhere",
                vec![("common-auth", DEBIAN_COMMON_AUTH), ("sshd", "@include common-auth\n")],
                vec![("pam-module-nowhere", "")],
            ),
            (
                "a service without auth lines uses other",
                vec![
                    ("other", "auth sufficient pam_permit.so\nauth required pam_twostep.so\n"),
                    ("chpasswd", "password required pam_unix.so\n"),
                ],
                vec![("pam-skips-module", "/etc/pam.d/other:1")],
            ),
            (
                "reset after the module forgets its failure",
                vec![("sshd", "auth requisite pam_unix.so\nauth required pam_twostep.so\nauth [success=reset default=ignore] pam_env.so\nauth required pam_permit.so\n")],
                vec![("pam-reset-after-module", "/etc/pam.d/sshd:3")],
            ),
            (
                "ignore=done after a success ends the stack",
                vec![("sshd", "auth requisite pam_unix.so\nauth [success=ok ignore=done default=bad] pam_succeed_if.so user ingroup x\nauth required pam_twostep.so\n")],
                vec![("pam-skips-module", "/etc/pam.d/sshd:2")],
            ),
            (
                "issue 19: required pam_unix goes on to the code after a wrong password",
                vec![("sshd", "auth required pam_unix.so\nauth required pam_twostep.so\n")],
                vec![("pam-module-after-failed-password", "/etc/pam.d/sshd:1")],
            ),
            (
                "issue 19: requisite pam_unix, or [success=ok default=die], ends it",
                vec![
                    ("sshd", "auth requisite pam_unix.so\nauth required pam_twostep.so\n"),
                    ("sudo", "auth [success=ok default=die] pam_unix.so\nauth required pam_twostep.so\n"),
                ],
                vec![],
            ),
            (
                "issue 19: Fedora's sufficient pam_unix, the module after pam_deny",
                vec![("system-auth", "auth required pam_env.so\nauth sufficient pam_unix.so nullok\nauth required pam_deny.so\nauth required pam_twostep.so\n"), ("sudo", "auth include system-auth\n")],
                vec![
                    ("pam-module-after-failed-password", "/etc/pam.d/system-auth:2"),
                    ("pam-skips-module", "/etc/pam.d/system-auth:2"),
                ],
            ),
            (
                "issue 19: the Fedora stack of packaging/README.md",
                vec![("system-auth", "auth required pam_env.so\nauth required pam_faildelay.so delay=2000000\nauth requisite pam_unix.so nullok\nauth required pam_twostep.so nullok\n"), ("sudo", "auth include system-auth\n")],
                vec![],
            ),
            (
                "issue 19: pam_faillock's documented pattern, the module after it",
                vec![("sshd", "auth required pam_faillock.so preauth\nauth [success=1 default=bad] pam_unix.so\nauth [default=die] pam_faillock.so authfail\nauth required pam_twostep.so\n")],
                vec![],
            ),
            (
                "issue 19: two password modules as alternatives (pam-auth-update Primary block)",
                vec![
                    ("common-auth", "auth [success=2 default=ignore] pam_unix.so nullok\nauth [success=1 default=ignore] pam_sss.so use_first_pass\nauth requisite pam_deny.so\nauth required pam_permit.so\nauth required pam_twostep.so nullok\n"),
                    ("sshd", "@include common-auth\n"),
                ],
                vec![],
            ),
            (
                "issue 19: a failed substack does not end the parent: the module after it runs",
                vec![
                    ("system-auth", "auth requisite pam_unix.so\n"),
                    ("su", "auth substack system-auth\nauth required pam_twostep.so\n"),
                ],
                vec![("pam-module-after-failed-password", "/etc/pam.d/system-auth:1")],
            ),
            (
                "jump past the end of the stack is a bad jump (fails), not a bypass",
                vec![("sshd", "auth requisite pam_unix.so\nauth [success=2 default=ignore] pam_env.so\nauth required pam_twostep.so\n")],
                vec![],
            ),
        ];
        for (name, files, want) in cases {
            let mem = installed(Mem::pam(&files));
            let report = analyze_pam(&mem, "/etc/pam.d");
            let got = kinds(&report.findings);
            let want: Vec<(&str, String)> =
                want.iter().map(|(k, a)| (*k, (*a).to_owned())).collect();
            assert_eq!(got, want, "case: {name}\n{:#?}", report.findings);
        }
    }

    #[test]
    fn findings_name_services_and_include_paths() {
        let mem = installed(Mem::pam(&[
            ("common-auth", "auth sufficient pam_unix.so\n"),
            (
                "sshd",
                "# sshd\n@include common-auth\nauth required pam_twostep.so\n",
            ),
            (
                "sudo",
                "auth include common-auth\nauth required pam_twostep.so\n",
            ),
            ("chsh", "auth required pam_unix.so\n"),
        ]));
        let report = analyze_pam(&mem, "/etc/pam.d");
        let f = report
            .findings
            .iter()
            .find(|f| f.kind == "pam-skips-module")
            .unwrap();
        assert_eq!(f.services, vec!["sshd", "sudo"]);
        assert_eq!(
            f.via,
            vec![
                "/etc/pam.d/sshd:2 (@include common-auth)",
                "/etc/pam.d/sudo:1 (include common-auth)"
            ]
        );
        assert!(
            f.message.contains(
                "`auth sufficient pam_unix.so` ends the auth stack when pam_unix.so succeeds"
            ),
            "{}",
            f.message
        );
        // common-auth is a fragment, not a service; chsh is a service without the module.
        let names: Vec<&str> = report.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["chsh", "sshd", "sudo"]);
        assert!(report.services[0].modules.is_empty());
        assert!(report.services[1].password_first);
    }

    #[test]
    fn module_lines_carry_their_arguments() {
        let mem = installed(Mem::pam(&[(
            "sshd",
            "auth requisite pam_unix.so\nauth required /opt/x/libpam_twostep.so bus=unix:path=/tmp/b.sock failmode=open nullok bus_uid=1000\n",
        )]))
        .with("/opt/x/libpam_twostep.so", "");
        let report = analyze_pam(&mem, "/etc/pam.d");
        let m = &report.services[0].modules[0];
        assert_eq!(
            (m.bus.as_str(), m.bus_uid, m.failmode_open, m.nullok),
            ("unix:path=/tmp/b.sock", 1000, true, true)
        );
        assert_eq!(kinds(&report.findings), vec![]);
        let up = failmode_findings(&report.services, &BTreeSet::new());
        assert_eq!(
            (up[0].severity, up[0].kind),
            (Severity::Warning, "pam-failmode-open")
        );
        let down = failmode_findings(
            &report.services,
            &["unix:path=/tmp/b.sock".to_owned()].into_iter().collect(),
        );
        assert_eq!(down[0].severity, Severity::Error);
        assert_eq!(
            down[0].at.as_ref().unwrap().to_string(),
            "/etc/pam.d/sshd:2"
        );
    }

    #[test]
    fn a_missing_module_file_is_found() {
        let mem = Mem::pam(&[
            (
                "sshd",
                "auth required pam_unix.so\nauth required pam_twostep.so\n",
            ),
            (
                "sudo",
                "auth required pam_unix.so\n-auth required /nowhere/pam_twostep.so\n",
            ),
        ]);
        let report = analyze_pam(&mem, "/etc/pam.d");
        let missing: Vec<String> = report
            .findings
            .iter()
            .filter(|f| f.kind == "pam-module-missing")
            .map(|f| f.message.clone())
            .collect();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing.iter().any(|m| m.contains("without a trace")));
    }
}
