// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl doctor`: every way the second factor can be skipped or never reached.
//!
//! It reads, and never changes:
//! - the PAM stacks in the PAM directory, for every service, following `@include`, `include`
//!   and `substack` the way libpam does (includes inline, a substack is one entry whose
//!   `done` only ends the substack, jumps count entries at their own level);
//! - sshd's effective configuration (`sshd -T`), with file and line from the config files
//!   (`Include` and `Match` followed), when sshd's PAM stack relies on the module;
//! - sudo's two PAM services (`pam_service`, `pam_login_service` for `sudo -i`) from the
//!   sudoers files: both must exist under their lower-cased names and ask for the code;
//! - twostepd on every bus the module lines name (`bus=`, `bus_uid=`), with its own short
//!   connection: a daemon that is down is one of the findings.
//!
//! Every decision is a pure function over texts ([`analyze_pam`], [`analyze_sshd`],
//! [`daemon_findings`]) with table-driven tests on inline files; the rest is thin I/O.

mod sudoers;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use twostep_proto::module_results;

/// How long the daemon check on one bus may take (connect, name owner, uid, ping).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(3);
/// How long `sshd -T` may take.
const SSHD_TIMEOUT: Duration = Duration::from_secs(15);
/// libpam's `PAM_SUBSTACK_MAX_LEVEL`: deeper includes make the stack fail.
const MAX_INCLUDE_DEPTH: usize = 16;
/// sshd's own limit for nested `Include`.
const MAX_SSHD_INCLUDE_DEPTH: usize = 16;
/// Where sshd resolves relative `Include` paths.
const SSHD_DIR: &str = "/etc/ssh";
/// The PAM service OpenSSH uses (its program name, `sshd` on every distribution).
const SSHD_SERVICE: &str = "sshd";
/// The file names of our module: the packaged name and the name cargo builds.
const MODULE_NAMES: [&str; 2] = ["pam_twostep.so", "libpam_twostep.so"];
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
/// The values a bracketed PAM control may name (`_pam_token_returns` in libpam).
const PAM_VALUES: [&str; 33] = [
    "success",
    "open_err",
    "symbol_err",
    "service_err",
    "system_err",
    "buf_err",
    "perm_denied",
    "auth_err",
    "cred_insufficient",
    "authinfo_unavail",
    "user_unknown",
    "maxtries",
    "new_authtok_reqd",
    "acct_expired",
    "session_err",
    "cred_unavail",
    "cred_expired",
    "cred_err",
    "no_module_data",
    "conv_err",
    "authtok_err",
    "authtok_recover_err",
    "authtok_lock_busy",
    "authtok_disable_aging",
    "try_again",
    "ignore",
    "abort",
    "authtok_expired",
    "module_unknown",
    "bad_item",
    "conv_again",
    "incomplete",
    "default",
];

// ------------------------------------------------------------------------------------------
// Findings

/// How bad a finding is. Errors and warnings make the exit code 1.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Severity {
    /// The second factor can be skipped, or nobody can log in.
    Error,
    /// A risk or a mistake the documentation tells you to fix.
    Warning,
    /// A fact worth knowing; not a problem.
    Info,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// A place in a configuration file.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One thing the doctor found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// A stable identifier (`pam-skips-module`, `sshd-usepam-no`, …) for scripts.
    pub kind: &'static str,
    pub message: String,
    /// The line that causes it, where one does.
    pub at: Option<Loc>,
    /// The include lines through which the services reach `at`.
    pub via: Vec<String>,
    /// The PAM services it concerns.
    pub services: Vec<String>,
}

impl Finding {
    fn new(severity: Severity, kind: &'static str, message: String, at: Option<Loc>) -> Self {
        Finding {
            severity,
            kind,
            message,
            at,
            via: Vec::new(),
            services: Vec::new(),
        }
    }

    fn service(mut self, name: &str) -> Self {
        self.services.push(name.to_owned());
        self
    }
}

/// Findings with the same cause (kind, line, message, severity) become one, with the
/// services and include paths of all of them.
fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut out: Vec<Finding> = Vec::new();
    for f in findings {
        match out.iter_mut().find(|o| {
            o.kind == f.kind && o.at == f.at && o.message == f.message && o.severity == f.severity
        }) {
            Some(o) => {
                o.services.extend(f.services);
                o.via.extend(f.via);
            }
            None => out.push(f),
        }
    }
    for o in &mut out {
        o.services.sort();
        o.services.dedup();
        o.via.sort();
        o.via.dedup();
    }
    out.sort_by(|a, b| (a.severity, &a.at, a.kind).cmp(&(b.severity, &b.at, b.kind)));
    out
}

/// Read access to the machine's files; a map in the tests.
pub trait Files {
    /// The text of the file at `path`.
    ///
    /// # Errors
    /// Why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
    /// The names in directory `dir`, sorted; empty when it cannot be read.
    fn list(&self, dir: &str) -> Vec<String>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
}

/// The real file system.
struct Fs;

impl Files for Fs {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }
}

fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

// ------------------------------------------------------------------------------------------
// PAM: lines, controls, stacks

/// What libpam does with one module's return value.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Ignore,
    Ok,
    Done,
    Bad,
    Die,
    Reset,
    /// Skip this many entries of the same level.
    Jump(usize),
}

/// A control: `required`…, or `[value=action …]`, as libpam resolves it.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Control {
    /// As written.
    text: String,
    explicit: Vec<(String, Action)>,
    /// For the values not named (libpam: `bad` when `default=` is not given).
    default: Action,
}

impl Control {
    /// The four keywords, with libpam's meaning.
    fn keyword(word: &str) -> Option<Control> {
        use Action::{Bad, Die, Done, Ignore, Ok};
        let (explicit, default): (&[(&str, Action)], Action) =
            match word.to_ascii_lowercase().as_str() {
                "required" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Bad,
                ),
                "requisite" => (
                    &[
                        ("success", Ok),
                        ("new_authtok_reqd", Ok),
                        ("ignore", Ignore),
                    ],
                    Die,
                ),
                "optional" => (&[("success", Ok), ("new_authtok_reqd", Ok)], Ignore),
                "sufficient" => (&[("success", Done), ("new_authtok_reqd", Done)], Ignore),
                _ => return None,
            };
        Some(Control {
            text: word.to_owned(),
            explicit: explicit
                .iter()
                .map(|(v, a)| ((*v).to_owned(), *a))
                .collect(),
            default,
        })
    }

    /// `value=action …` (the text between the brackets).
    fn bracket(inner: &str) -> Result<Control, String> {
        let mut explicit = Vec::new();
        let mut default = Action::Bad;
        for pair in inner.split_whitespace() {
            let (value, action) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not value=action"))?;
            let value = value.to_ascii_lowercase();
            if !PAM_VALUES.contains(&value.as_str()) {
                return Err(format!("unknown return value `{value}`"));
            }
            let action = match action.to_ascii_lowercase().as_str() {
                "ignore" => Action::Ignore,
                "ok" => Action::Ok,
                "done" => Action::Done,
                "bad" => Action::Bad,
                "die" => Action::Die,
                "reset" => Action::Reset,
                n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                    match n.parse::<usize>() {
                        // libpam: a jump of 0 is treated as ignore.
                        Ok(0) => Action::Ignore,
                        Ok(n) => Action::Jump(n),
                        Err(_) => return Err(format!("jump `{action}` out of range")),
                    }
                }
                _ => return Err(format!("unknown action `{action}`")),
            };
            if value == "default" {
                default = action;
            } else {
                explicit.push((value, action));
            }
        }
        Ok(Control {
            text: format!(
                "[{}]",
                inner.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            explicit,
            default,
        })
    }

    fn action(&self, value: &str) -> Action {
        self.explicit
            .iter()
            .find(|(v, _)| v == value)
            .map_or(self.default, |(_, a)| *a)
    }
}

/// One logical line of a PAM file.
#[derive(Clone, PartialEq, Eq, Debug)]
enum PamLine {
    /// `@include FILE`: all lines of FILE, of every type.
    IncludeAll(String),
    /// `TYPE include FILE`.
    Include { ty: String, target: String },
    /// `TYPE substack FILE`.
    Substack { ty: String, target: String },
    Module {
        ty: String,
        /// `-TYPE`: libpam skips the line silently when the module cannot be loaded.
        dash: bool,
        control: Control,
        module: String,
        args: Vec<String>,
    },
    /// libpam cannot use this line and installs an entry that always fails, of type `ty`
    /// (`auth` when the type itself is wrong).
    Broken { ty: String, why: String },
}

/// The logical lines of a PAM file with the number of their first physical line: `#`
/// ends a line, a backslash at its end (with no comment) joins the next one.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if acc.is_empty() {
            start = i + 1;
        }
        let (code, comment) = match raw.split_once('#') {
            Some((code, _)) => (code, true),
            None => (raw, false),
        };
        let trimmed = code.trim_end_matches([' ', '\t']);
        if let Some(joined) = trimmed.strip_suffix('\\').filter(|_| !comment) {
            acc.push_str(joined);
            acc.push(' ');
            continue;
        }
        acc.push_str(code);
        if acc.trim().is_empty() {
            acc.clear();
        } else {
            out.push((start, std::mem::take(&mut acc)));
        }
    }
    if !acc.trim().is_empty() {
        out.push((start, acc));
    }
    out
}

/// Words of a PAM line; `[ … ]` is one word (brackets kept; `\]` inside is `]`).
fn pam_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '[' {
            chars.next();
            word.push('[');
            loop {
                match chars.next() {
                    None => return Err("a `[` without its `]`".into()),
                    Some('\\') if chars.peek() == Some(&']') => {
                        chars.next();
                        word.push(']');
                    }
                    Some(']') => break,
                    Some(c) => word.push(c),
                }
            }
            word.push(']');
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

fn parse_pam_line(line: &str) -> PamLine {
    let words = match pam_words(line) {
        Ok(w) => w,
        Err(why) => {
            return PamLine::Broken {
                ty: "auth".into(),
                why,
            }
        }
    };
    let Some(first) = words.first() else {
        return PamLine::Broken {
            ty: "auth".into(),
            why: "empty line".into(),
        };
    };
    if first.starts_with('@') {
        return match (first.as_str(), words.get(1)) {
            ("@include", Some(target)) => PamLine::IncludeAll(target.clone()),
            _ => PamLine::Broken {
                ty: "auth".into(),
                why: format!("`{first}` is not a PAM directive"),
            },
        };
    }
    let dash = first.starts_with('-');
    let ty = first.trim_start_matches('-').to_ascii_lowercase();
    if !["auth", "account", "password", "session"].contains(&ty.as_str()) {
        return PamLine::Broken {
            ty: "auth".into(),
            why: format!("`{first}` is not a module type"),
        };
    }
    let Some(control) = words.get(1) else {
        return PamLine::Broken {
            ty,
            why: "no control".into(),
        };
    };
    let target = words.get(2).cloned();
    match control.to_ascii_lowercase().as_str() {
        "include" | "substack" => {
            let Some(target) = target else {
                return PamLine::Broken {
                    ty,
                    why: format!("`{control}` without a file"),
                };
            };
            if control.eq_ignore_ascii_case("include") {
                PamLine::Include { ty, target }
            } else {
                PamLine::Substack { ty, target }
            }
        }
        _ => {
            let Some(module) = target else {
                return PamLine::Broken {
                    ty,
                    why: "no module".into(),
                };
            };
            let control =
                if let Some(inner) = control.strip_prefix('[').and_then(|c| c.strip_suffix(']')) {
                    match Control::bracket(inner) {
                        Ok(c) => c,
                        Err(why) => {
                            return PamLine::Broken {
                                ty,
                                why: format!("control {control}: {why}"),
                            }
                        }
                    }
                } else {
                    match Control::keyword(control) {
                        Some(c) => c,
                        None => {
                            return PamLine::Broken {
                                ty,
                                why: format!("unknown control `{control}`"),
                            }
                        }
                    }
                };
            let args = words
                .iter()
                .skip(3)
                .map(|a| {
                    a.strip_prefix('[')
                        .and_then(|a| a.strip_suffix(']'))
                        .unwrap_or(a)
                        .to_owned()
                })
                .collect();
            PamLine::Module {
                ty,
                dash,
                control,
                module,
                args,
            }
        }
    }
}

fn parse_pam(text: &str) -> Vec<(usize, PamLine)> {
    logical_lines(text)
        .into_iter()
        .map(|(n, line)| (n, parse_pam_line(&line)))
        .collect()
}

/// One entry of a flattened `auth` stack, as libpam's handler list holds it.
#[derive(Clone, Debug)]
struct Handler {
    /// Substack depth (0: the service's own level).
    level: usize,
    at: Loc,
    /// The include lines that led here, outermost first.
    via: Vec<String>,
    kind: HandlerKind,
}

#[derive(Clone, Debug)]
enum HandlerKind {
    Module {
        dash: bool,
        control: Control,
        module: String,
        args: Vec<String>,
    },
    /// The marker of a substack; its entries follow at `level + 1`.
    Substack,
    /// libpam installs an entry that always fails.
    Broken(String),
}

impl Handler {
    fn module(&self) -> Option<(&Control, &str)> {
        match &self.kind {
            HandlerKind::Module {
                control, module, ..
            } => Some((control, basename(module))),
            _ => None,
        }
    }

    fn is_twostep(&self) -> bool {
        self.module()
            .is_some_and(|(_, m)| MODULE_NAMES.contains(&m))
    }

    /// The line as an admin would write it, for messages.
    fn text(&self) -> String {
        match &self.kind {
            HandlerKind::Module {
                dash,
                control,
                module,
                args,
            } => {
                let mut s = format!(
                    "{}auth {} {}",
                    if *dash { "-" } else { "" },
                    control.text,
                    module
                );
                for a in args {
                    s.push(' ');
                    s.push_str(a);
                }
                s
            }
            HandlerKind::Substack => "auth substack".into(),
            HandlerKind::Broken(why) => why.clone(),
        }
    }
}

/// Builds the `auth` stack of a service by reading and following its files.
struct Loader<'a> {
    files: &'a dyn Files,
    dir: &'a str,
}

/// Where an entry comes from: its line, the include lines that led there, its substack
/// level and include depth.
struct Site<'s> {
    at: &'s Loc,
    via: &'s [String],
    level: usize,
    depth: usize,
}

impl Site<'_> {
    fn handler(&self, kind: HandlerKind) -> Handler {
        Handler {
            level: self.level,
            at: self.at.clone(),
            via: self.via.to_vec(),
            kind,
        }
    }
}

impl Loader<'_> {
    /// The `auth` entries of config `name` appended to `out`.
    ///
    /// # Errors
    /// Why `name` cannot be read (libpam then fails the line that included it).
    fn load(
        &self,
        name: &str,
        level: usize,
        depth: usize,
        via: &[String],
        out: &mut Vec<Handler>,
    ) -> Result<(), String> {
        let path = join(self.dir, name);
        let text = self
            .files
            .read(&path)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        for (line, entry) in parse_pam(&text) {
            let at = Loc {
                file: path.clone(),
                line,
            };
            let site = Site {
                at: &at,
                via,
                level,
                depth,
            };
            match entry {
                PamLine::IncludeAll(target) => self.include(&site, "@include", &target, out),
                PamLine::Include { ty, target } if ty == "auth" => {
                    self.include(&site, "include", &target, out);
                }
                PamLine::Substack { ty, target } if ty == "auth" => {
                    out.push(site.handler(HandlerKind::Substack));
                    self.include(&site, "substack", &target, out);
                }
                PamLine::Module {
                    ty,
                    dash,
                    control,
                    module,
                    args,
                } if ty == "auth" => out.push(site.handler(HandlerKind::Module {
                    dash,
                    control,
                    module,
                    args,
                })),
                PamLine::Broken { ty, why } if ty == "auth" => {
                    out.push(site.handler(HandlerKind::Broken(why)));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `@include`, `include` or `substack` of `target` at `site`; a file that cannot be
    /// read, or nesting too deep, becomes an entry that always fails (as in libpam).
    fn include(&self, site: &Site<'_>, what: &str, target: &str, out: &mut Vec<Handler>) {
        if site.depth + 1 >= MAX_INCLUDE_DEPTH {
            out.push(site.handler(HandlerKind::Broken(format!(
                "{what} {target}: includes nested deeper than {MAX_INCLUDE_DEPTH}"
            ))));
            return;
        }
        let mut via = site.via.to_vec();
        via.push(format!("{} ({what} {target})", site.at));
        let level = site.level + usize::from(what == "substack");
        if let Err(why) = self.load(target, level, site.depth + 1, &via, out) {
            out.push(site.handler(HandlerKind::Broken(format!("{what} {target}: {why}"))));
        }
    }

    /// The `auth` stack libpam runs for `service`, and the file it came from: the
    /// service's own file, or `other` when it has none or it holds no `auth` line.
    fn service(&self, service: &str) -> (Vec<Handler>, String) {
        let mut stack = Vec::new();
        if self.load(service, 0, 0, &[], &mut stack).is_ok() && !stack.is_empty() {
            return (stack, join(self.dir, service));
        }
        let mut other = Vec::new();
        let _ = self.load("other", 0, 0, &[], &mut other);
        (other, join(self.dir, "other"))
    }
}

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

/// The findings for one service's `auth` stack, and what the service reaches.
fn analyze_stack(service: &str, file: &str, stack: &[Handler]) -> (ServiceInfo, Vec<Finding>) {
    let mut out = Vec::new();
    let mut push = |f: Finding, h: &Handler| {
        let mut f = f.service(service);
        f.via = h.via.clone();
        out.push(f);
    };
    for h in stack {
        if let HandlerKind::Broken(why) = &h.kind {
            push(
                Finding::new(
                    Severity::Warning,
                    "pam-broken-line",
                    format!("libpam cannot use this line ({why}): it makes every `auth` of the service fail"),
                    Some(h.at.clone()),
                ),
                h,
            );
        }
    }
    let found: Vec<usize> = (0..stack.len())
        .filter(|&i| stack[i].is_twostep())
        .collect();
    let modules: Vec<ModuleLine> = found.iter().map(|&i| module_line(&stack[i])).collect();
    let password_at = stack.iter().position(|h| {
        h.module()
            .is_some_and(|(_, m)| PASSWORD_MODULES.contains(&m))
    });
    let Some(&t) = found.first() else {
        let info = ServiceInfo {
            name: service.to_owned(),
            file: file.to_owned(),
            modules,
            password_first: false,
        };
        return (info, out);
    };

    // 1. Something before the module ends the stack, or jumps over it, on success.
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
            push(
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
            );
            break;
        }
    }

    // 2. The module's own failure does not fail the stack.
    if let Some((control, _)) = stack[t].module() {
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
        if !let_through.is_empty() {
            push(
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
            );
        }
    }

    // 3. A later `reset` forgets the module's failure.
    for h in stack.iter().skip(t + 1) {
        let Some((control, module)) = h.module() else {
            continue;
        };
        if h.level <= stack[t].level
            && [control.action("success"), control.action("ignore")].contains(&Action::Reset)
        {
            push(
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
            );
        }
    }

    // 4. Asked twice.
    if let Some(&second) = found.get(1) {
        push(
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
        );
    }

    // 5. Before the password.
    let password_first = password_at.is_some_and(|p| p < t);
    if let Some(p) = password_at.filter(|&p| p > t) {
        push(
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
        );
    }

    // 5b. After a failed password (issue 19, fault 10): a wrong password that does not
    // end the stack reaches the code prompt; strangers then lock the user out with wrong
    // codes, and a right code typed after a mistyped password is spent.
    if let Some(p) =
        (0..t).find(|&p| is_password_module(&stack[p]) && runs_after_failure(stack, p, t))
    {
        push(
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
        );
    }

    // 6. Each module line: how it is loaded and its arguments.
    for &i in &found {
        let h = &stack[i];
        let HandlerKind::Module { dash, args, .. } = &h.kind else {
            continue;
        };
        if *dash {
            push(
                Finding::new(
                    Severity::Warning,
                    "pam-module-optional-load",
                    "`-auth`: if pam_twostep cannot be loaded, libpam skips the line without a trace and no code is asked; write `auth`".into(),
                    Some(h.at.clone()),
                ),
                h,
            );
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
                push(f, h);
            }
        }
    }

    let info = ServiceInfo {
        name: service.to_owned(),
        file: file.to_owned(),
        modules,
        password_first,
    };
    (info, out)
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

// ------------------------------------------------------------------------------------------
// sudo

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

// ------------------------------------------------------------------------------------------
// sshd

/// One line of sshd's configuration.
#[derive(Clone, Debug)]
struct SshdLine {
    at: Loc,
    /// Lower case.
    keyword: String,
    args: Vec<String>,
    /// The `Match` block it is in (index into `SshdConfig::blocks`).
    block: Option<usize>,
}

#[derive(Clone, Debug)]
struct MatchBlock {
    at: Loc,
    criteria: String,
}

/// sshd's configuration files as written (for locations and `Match` blocks; the values
/// in force come from `sshd -T`).
#[derive(Clone, Debug, Default)]
pub struct SshdConfig {
    lines: Vec<SshdLine>,
    blocks: Vec<MatchBlock>,
}

/// `Keyword args…` of one sshd config line (`Keyword=value` too), or `None` for blanks
/// and comments. Quotes group words; a word starting with `#` ends the line.
fn sshd_words(line: &str) -> Option<(String, Vec<String>)> {
    let s = line.trim_start();
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let end = s
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(s.len());
    let keyword = s[..end].to_ascii_lowercase();
    let mut rest = s[end..].trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut word = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => {
                    if let Some(n) = chars.next() {
                        word.push(n);
                    }
                }
                (_, c) => word.push(c),
            }
        }
        args.push(word);
    }
    Some((keyword, args))
}

/// `*` and `?` as glob(3) matches them in one path component.
fn wildmatch(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            wildmatch(rest, name) || (!name.is_empty() && wildmatch(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, n))) => wildmatch(rest, n),
        (Some((p, rest)), Some((c, n))) if p == c => wildmatch(rest, n),
        _ => false,
    }
}

/// The files an `Include` argument names, in glob(3) order.
fn sshd_include(files: &dyn Files, arg: &str) -> Vec<String> {
    let path = join(SSHD_DIR, arg);
    let Some((dir, pattern)) = path.rsplit_once('/') else {
        return Vec::new();
    };
    if !pattern.contains(['*', '?']) {
        return if files.exists(&path) {
            vec![path]
        } else {
            Vec::new()
        };
    }
    files
        .list(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.') || pattern.starts_with('.'))
        .filter(|n| wildmatch(pattern.as_bytes(), n.as_bytes()))
        .map(|n| format!("{dir}/{n}"))
        .collect()
}

/// Reads sshd's configuration from `path`, following `Include`.
pub fn read_sshd_config(files: &dyn Files, path: &str) -> SshdConfig {
    let mut config = SshdConfig::default();
    read_sshd_into(files, path, 0, None, &mut config);
    config
}

fn read_sshd_into(
    files: &dyn Files,
    path: &str,
    depth: usize,
    block: Option<usize>,
    config: &mut SshdConfig,
) {
    if depth > MAX_SSHD_INCLUDE_DEPTH {
        return;
    }
    let Ok(text) = files.read(path) else {
        return;
    };
    // Why: sshd restores the Match state after an included file.
    let mut current = block;
    for (i, raw) in text.lines().enumerate() {
        let Some((keyword, args)) = sshd_words(raw) else {
            continue;
        };
        let at = Loc {
            file: path.to_owned(),
            line: i + 1,
        };
        match keyword.as_str() {
            "match" => {
                config.blocks.push(MatchBlock {
                    at,
                    criteria: args.join(" "),
                });
                current = Some(config.blocks.len() - 1);
            }
            "include" => {
                for arg in &args {
                    for file in sshd_include(files, arg) {
                        read_sshd_into(files, &file, depth + 1, current, config);
                    }
                }
            }
            _ => config.lines.push(SshdLine {
                at,
                keyword,
                args,
                block: current,
            }),
        }
    }
}

/// The keywords sshd treats as the same setting.
fn aliases(keyword: &str) -> &'static [&'static str] {
    match keyword {
        "kbdinteractiveauthentication" | "challengeresponseauthentication" => &[
            "kbdinteractiveauthentication",
            "challengeresponseauthentication",
        ],
        "usepam" => &["usepam"],
        "passwordauthentication" => &["passwordauthentication"],
        "pubkeyauthentication" => &["pubkeyauthentication"],
        "hostbasedauthentication" => &["hostbasedauthentication"],
        "gssapiauthentication" => &["gssapiauthentication"],
        "permitemptypasswords" => &["permitemptypasswords"],
        "authenticationmethods" => &["authenticationmethods"],
        _ => &[],
    }
}

impl SshdConfig {
    /// Where the value in force outside `Match` blocks was set: sshd keeps the first.
    fn locate(&self, keyword: &str) -> Option<Loc> {
        let names = aliases(keyword);
        self.lines
            .iter()
            .find(|l| l.block.is_none() && names.contains(&l.keyword.as_str()))
            .map(|l| l.at.clone())
    }
}

/// `sshd -T` output as `keyword → value` (lower case; the first line of a keyword).
pub fn parse_sshd_t(text: &str) -> BTreeMap<String, String> {
    let mut values = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.trim().splitn(2, ' ');
        let (Some(k), v) = (parts.next(), parts.next()) else {
            continue;
        };
        if k.is_empty() {
            continue;
        }
        values
            .entry(k.to_ascii_lowercase())
            .or_insert_with(|| v.unwrap_or("").trim().to_ascii_lowercase());
    }
    if let Some(v) = values.get("challengeresponseauthentication").cloned() {
        values
            .entry("kbdinteractiveauthentication".into())
            .or_insert(v);
    }
    values
}

/// The authentication methods sshd knows, with the keyword that enables each.
const METHODS: [(&str, &str); 6] = [
    ("publickey", "pubkeyauthentication"),
    ("hostbased", "hostbasedauthentication"),
    ("gssapi-with-mic", "gssapiauthentication"),
    ("password", "passwordauthentication"),
    ("keyboard-interactive", "kbdinteractiveauthentication"),
    ("none", "permitemptypasswords"),
];

/// The methods that run the PAM `auth` stack (with `UsePAM yes`).
fn runs_pam(method: &str) -> bool {
    matches!(method, "keyboard-interactive" | "password" | "none")
}

struct SshdValues<'a>(&'a BTreeMap<String, String>);

impl SshdValues<'_> {
    fn yes(&self, keyword: &str, default: bool) -> bool {
        self.0
            .get(keyword)
            .map_or(default, |v| matches!(v.as_str(), "yes" | "true"))
    }

    fn enabled(&self, method: &str) -> bool {
        match method {
            "publickey" => self.yes("pubkeyauthentication", true),
            "hostbased" => self.yes("hostbasedauthentication", false),
            "gssapi-with-mic" => self.yes("gssapiauthentication", false),
            "password" => self.yes("passwordauthentication", true),
            "keyboard-interactive" => self.yes("kbdinteractiveauthentication", true),
            "none" => {
                self.yes("permitemptypasswords", false) && self.yes("passwordauthentication", true)
            }
            _ => false,
        }
    }

    /// `None` for `any`; else the lists, each a set of method names.
    fn method_lists(&self) -> Option<Vec<Vec<String>>> {
        let v = self
            .0
            .get("authenticationmethods")
            .map_or("any", String::as_str);
        if v == "any" || v.is_empty() {
            return None;
        }
        Some(
            v.split_whitespace()
                .map(|list| {
                    list.split(',')
                        .map(|m| m.split(':').next().unwrap_or(m).to_owned())
                        .collect()
                })
                .collect(),
        )
    }

    /// The method lists a client can complete: `any` means every enabled method alone.
    fn usable_lists(&self) -> (bool, Vec<Vec<String>>) {
        match self.method_lists() {
            None => (
                true,
                METHODS
                    .iter()
                    .filter(|(m, _)| self.enabled(m))
                    .map(|(m, _)| vec![(*m).to_owned()])
                    .collect(),
            ),
            Some(lists) => (
                false,
                lists
                    .into_iter()
                    .filter(|l| l.iter().all(|m| self.enabled(m)))
                    .collect(),
            ),
        }
    }
}

/// One sshd rule's verdict, before it gets a location.
struct SshdIssue {
    severity: Severity,
    kind: &'static str,
    message: String,
    /// The keyword whose line is the cause.
    keyword: &'static str,
}

/// The rules over sshd's values, for a PAM stack that reaches pam_twostep.
/// `password_first`: the stack checks a password before the code.
fn sshd_rules(values: &BTreeMap<String, String>, password_first: bool) -> Vec<SshdIssue> {
    let v = SshdValues(values);
    let mut out = Vec::new();
    if !v.yes("usepam", false) {
        out.push(SshdIssue {
            severity: Severity::Error,
            kind: "sshd-usepam-no",
            message: "UsePAM no: sshd never runs the PAM stack, so pam_twostep is never reached and a password or key alone logs in".into(),
            keyword: "usepam",
        });
        return out;
    }
    if !v.yes("kbdinteractiveauthentication", true) {
        out.push(SshdIssue {
            severity: Severity::Error,
            kind: "sshd-kbdinteractive-no",
            message: "KbdInteractiveAuthentication no: PAM prompts never reach the client, so the code cannot be asked (keyboard-interactive logins are impossible; password logins fail for users with a second factor)".into(),
            keyword: "kbdinteractiveauthentication",
        });
    }
    let (any, lists) = v.usable_lists();
    for list in &lists {
        if !list.iter().any(|m| runs_pam(m)) {
            let shown = list.join(",");
            let (message, keyword) = if any {
                let keyword = METHODS
                    .iter()
                    .find(|(m, _)| *m == shown)
                    .map_or("authenticationmethods", |(_, k)| *k);
                (
                    format!("AuthenticationMethods any with `{shown}` enabled: `{shown}` alone logs in, sshd never runs the PAM stack and no code is asked; require `{shown},keyboard-interactive`"),
                    keyword,
                )
            } else {
                (
                    format!("AuthenticationMethods `{shown}` lets a user in with {shown} alone: sshd never runs the PAM stack and no code is asked"),
                    "authenticationmethods",
                )
            };
            out.push(SshdIssue {
                severity: Severity::Error,
                kind: "sshd-method-without-pam",
                message,
                keyword,
            });
        }
    }
    if !password_first {
        for list in &lists {
            let first_factor = list.iter().any(|m| !runs_pam(m));
            if list.iter().any(|m| m == "keyboard-interactive") && !first_factor {
                let shown = if any {
                    "AuthenticationMethods any".to_owned()
                } else {
                    format!("AuthenticationMethods `{}`", list.join(","))
                };
                out.push(SshdIssue {
                    severity: Severity::Error,
                    kind: "sshd-code-alone",
                    message: format!("sshd's PAM stack asks only for the code (no password module before pam_twostep), and {shown} lets keyboard-interactive in on its own: the code alone logs in; use `AuthenticationMethods publickey,keyboard-interactive`"),
                    keyword: "authenticationmethods",
                });
            }
        }
    }
    if lists.iter().any(|l| l.iter().any(|m| m == "password")) {
        out.push(SshdIssue {
            severity: Severity::Warning,
            kind: "sshd-password-authentication",
            message: "PasswordAuthentication yes: sshd's password method runs the PAM stack but can only answer the code prompt with the password, so clients that prefer it fail for users with a second factor (and a 6-digit password counts as a wrong code); pam_twostep lives in the keyboard-interactive path: set it to no".into(),
            keyword: "passwordauthentication",
        });
    }
    out
}

/// The findings about sshd: its values in force (`sshd -T`) and each `Match` block that
/// changes them, for a PAM stack `stack` that reaches pam_twostep.
pub fn analyze_sshd(
    values: &BTreeMap<String, String>,
    config: &SshdConfig,
    stack: &ServiceInfo,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let global = sshd_rules(values, stack.password_first);
    let global_keys: BTreeSet<(&str, String)> =
        global.iter().map(|i| (i.kind, i.message.clone())).collect();
    for issue in &global {
        let at = config.locate(issue.keyword);
        let message = if at.is_none() {
            format!(
                "{} (sshd's default: not set in its configuration files)",
                issue.message
            )
        } else {
            issue.message.clone()
        };
        out.push(Finding::new(issue.severity, issue.kind, message, at).service(&stack.name));
    }
    for (b, block) in config.blocks.iter().enumerate() {
        let mut changed = values.clone();
        let mut set_here: BTreeMap<&'static str, Loc> = BTreeMap::new();
        for line in config.lines.iter().filter(|l| l.block == Some(b)) {
            let Some(&canonical) = aliases(&line.keyword).first() else {
                continue;
            };
            if set_here.contains_key(canonical) {
                continue;
            }
            set_here.insert(canonical, line.at.clone());
            changed.insert(
                canonical.to_owned(),
                line.args.join(" ").to_ascii_lowercase(),
            );
        }
        if set_here.is_empty() {
            continue;
        }
        for issue in sshd_rules(&changed, stack.password_first) {
            if global_keys.contains(&(issue.kind, issue.message.clone())) {
                continue;
            }
            let at = set_here
                .get(issue.keyword)
                .cloned()
                .unwrap_or_else(|| block.at.clone());
            out.push(
                Finding::new(
                    issue.severity,
                    issue.kind,
                    format!(
                        "{} — for connections matching `Match {}` ({})",
                        issue.message, block.criteria, block.at
                    ),
                    Some(at),
                )
                .service(&stack.name),
            );
        }
    }
    merge(out)
}

// ------------------------------------------------------------------------------------------
// The daemon

/// What the daemon check found on one bus.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DaemonState {
    /// The name is owned by `uid` and the owner answered a ping.
    Running { uid: u32 },
    /// The bus itself cannot be reached.
    NoBus(String),
    /// Nobody owns the daemon's name.
    NotRunning,
    /// The owner does not answer in time (stopped, overloaded).
    NoAnswer(String),
}

/// The findings for each bus checked: `(address, expected owner uid, state)`.
pub fn daemon_findings(
    checks: &[(String, u32, DaemonState)],
    services: &[ServiceInfo],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (bus, want_uid, state) in checks {
        let users: Vec<String> = services
            .iter()
            .filter(|s| s.modules.iter().any(|m| &m.bus == bus))
            .map(|s| s.name.clone())
            .collect();
        let consequence = if users.is_empty() {
            String::new()
        } else {
            let open = services
                .iter()
                .any(|s| s.modules.iter().any(|m| &m.bus == bus && m.failmode_open));
            format!(
                ": logins through {} are refused{}",
                users.join(", "),
                if open {
                    " (or, with failmode=open, let in without a code)"
                } else {
                    ""
                }
            )
        };
        let (severity, kind, message) = match state {
            DaemonState::Running { uid } if uid == want_uid => (
                Severity::Info,
                "daemon-running",
                format!("twostepd answers on {bus} (name owned by uid {uid})"),
            ),
            DaemonState::Running { uid } => (
                Severity::Error,
                "daemon-wrong-owner",
                format!("{} on {bus} is owned by uid {uid}, but the module expects uid {want_uid}: it refuses to talk to it{consequence}", twostep_proto::BUS_NAME),
            ),
            DaemonState::NotRunning => (
                Severity::Error,
                "daemon-not-running",
                format!("twostepd is not running on {bus} (nobody owns {}){consequence}", twostep_proto::BUS_NAME),
            ),
            DaemonState::NoBus(why) => (
                Severity::Error,
                "daemon-not-running",
                format!("cannot reach the bus {bus} ({why}), so twostepd cannot be reached{consequence}"),
            ),
            DaemonState::NoAnswer(why) => (
                Severity::Error,
                "daemon-no-answer",
                format!("twostepd on {bus} does not answer ({why}){consequence}"),
            ),
        };
        let mut f = Finding::new(severity, kind, message, None);
        f.services = users;
        out.push(f);
    }
    out
}

async fn check_daemon(address: &str) -> DaemonState {
    match tokio::time::timeout(DAEMON_TIMEOUT, check_daemon_inner(address)).await {
        Ok(state) => state,
        Err(_) => DaemonState::NoAnswer(format!("no answer within {DAEMON_TIMEOUT:?}")),
    }
}

async fn check_daemon_inner(address: &str) -> DaemonState {
    let conn = match zbus::connection::Builder::address(address) {
        Ok(b) => match b.method_timeout(DAEMON_TIMEOUT).build().await {
            Ok(c) => c,
            Err(e) => return DaemonState::NoBus(e.to_string()),
        },
        Err(e) => return DaemonState::NoBus(format!("bad address: {e}")),
    };
    let dbus = match zbus::fdo::DBusProxy::new(&conn).await {
        Ok(p) => p,
        Err(e) => return DaemonState::NoBus(e.to_string()),
    };
    let Ok(name) = zbus::names::BusName::try_from(twostep_proto::BUS_NAME) else {
        return DaemonState::NotRunning;
    };
    let owner = match dbus.get_name_owner(name).await {
        Ok(o) => o,
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => return DaemonState::NotRunning,
        Err(e) => return DaemonState::NoAnswer(e.to_string()),
    };
    let uid = match dbus
        .get_connection_unix_user(zbus::names::BusName::Unique(owner.clone().into()))
        .await
    {
        Ok(uid) => uid,
        Err(e) => return DaemonState::NoAnswer(e.to_string()),
    };
    let ping = async {
        zbus::fdo::PeerProxy::builder(&conn)
            .destination(owner.clone())?
            .path(twostep_proto::OBJECT_PATH)?
            .build()
            .await?
            .ping()
            .await
    };
    match ping.await {
        Ok(()) => DaemonState::Running { uid },
        Err(e) => DaemonState::NoAnswer(e.to_string()),
    }
}

// ------------------------------------------------------------------------------------------
// I/O: sshd -T, the report, the command

/// The sshd binary: on PATH, or where distributions put it.
fn find_sshd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sshd"))
        .chain(
            ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
                .iter()
                .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// Runs `cmd` with a time limit; stdout or a description of the failure.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what} failed ({s}): {}", stderr.trim())),
        None => Err(format!("{what} did not finish within {limit:?}")),
    }
}

/// A private temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| e.to_string())?;
        let path = std::env::temp_dir().join(format!(
            "twostepctl-doctor-{}-{}",
            std::process::id(),
            hex::encode(random)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sshd -T [-f CONFIG]`. sshd loads its host keys even for `-T`; where it finds none it
/// can read (not root, or a fresh machine), it is run again with a throw-away key.
fn sshd_effective(sshd: &Path, config: Option<&Path>) -> Result<BTreeMap<String, String>, String> {
    let command = |extra: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(sshd);
        cmd.arg("-T");
        if let Some(c) = config {
            cmd.arg("-f").arg(c);
        }
        cmd.args(extra);
        cmd
    };
    match run_bounded(command(&[]), SSHD_TIMEOUT) {
        Ok(out) => Ok(parse_sshd_t(&out)),
        Err(e) if e.contains("no hostkeys available") => {
            let dir = TempDir::new()?;
            let key = dir.0.join("host_ed25519");
            let mut keygen = Command::new("ssh-keygen");
            keygen
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key);
            run_bounded(keygen, SSHD_TIMEOUT)
                .map_err(|k| format!("{e}; and no throw-away host key: {k}"))?;
            let option = format!("HostKey={}", key.display());
            let out = run_bounded(
                command(&[std::ffi::OsStr::new("-o"), std::ffi::OsStr::new(&option)]),
                SSHD_TIMEOUT,
            )?;
            Ok(parse_sshd_t(&out))
        }
        Err(e) => Err(e),
    }
}

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
    sudo: (String, Option<Vec<sudoers::SudoPair>>),
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
/// A one-line summary when a finding is an error or a warning.
pub async fn run(
    json: bool,
    pam_dir: &Path,
    sshd_config: Option<&Path>,
    sudoers: Option<&Path>,
    bus: Option<&str>,
) -> Result<(), String> {
    let dir = pam_dir.to_string_lossy().into_owned();
    if !pam_dir.is_dir() {
        return Err(format!("{dir} is not a directory"));
    }
    let files = Fs;
    let pam = analyze_pam(&files, &dir);
    let mut findings = pam.findings;

    // sshd, when its stack relies on the module (or a config was named).
    let loader = Loader {
        files: &files,
        dir: &dir,
    };
    let (stack, file) = loader.service(SSHD_SERVICE);
    let (sshd_stack, _) = analyze_stack(SSHD_SERVICE, &file, &stack);
    let sshd = if sshd_stack.modules.is_empty() && sshd_config.is_none() {
        findings.push(
            Finding::new(
                Severity::Info,
                "sshd-not-protected",
                format!("sshd's PAM stack ({file}) does not reach pam_twostep: SSH logins have no second factor"),
                None,
            )
            .service(SSHD_SERVICE),
        );
        SshdCheck::Skipped(format!("its PAM stack ({file}) does not use pam_twostep"))
    } else {
        match find_sshd() {
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
                        let config = read_sshd_config(&files, &config_path);
                        if sshd_stack.modules.is_empty() {
                            findings.push(
                                Finding::new(
                                    Severity::Info,
                                    "sshd-not-protected",
                                    format!("sshd's PAM stack ({file}) does not reach pam_twostep: SSH logins have no second factor"),
                                    None,
                                )
                                .service(SSHD_SERVICE),
                            );
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
        }
    };

    // sudo's two services.
    let sudoers_file = sudoers.map_or_else(
        || sudoers::SUDOERS.to_owned(),
        |p| p.to_string_lossy().into_owned(),
    );
    let sudo_pairs = match sudoers::read_sudoers(&files, &sudoers_file) {
        Some(settings) => {
            let (f, pairs) = sudo_findings(&files, &dir, &settings);
            findings.extend(f);
            Some(pairs)
        }
        None if sudoers.is_some() => {
            return Err(format!("cannot read {sudoers_file}"));
        }
        None => None,
    };

    // The daemon on every bus the module lines name (and --bus).
    let mut targets: BTreeSet<(String, u32)> = pam
        .services
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
    findings.extend(daemon_findings(&daemons, &pam.services));
    findings.extend(failmode_findings(&pam.services, &down));

    let report = Report {
        pam_dir: dir,
        services: pam.services,
        findings: merge(findings),
        sshd,
        sudo: (sudoers_file, sudo_pairs),
        daemons,
    };
    if json {
        outln!("{}", report.json());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Files in memory: absolute path → text.
    struct Mem(BTreeMap<String, String>);

    impl Mem {
        fn pam(files: &[(&str, &str)]) -> Mem {
            Mem(files
                .iter()
                .map(|(n, t)| (join("/etc/pam.d", n), (*t).to_owned()))
                .collect())
        }

        fn with(mut self, path: &str, text: &str) -> Mem {
            self.0.insert(path.to_owned(), text.to_owned());
            self
        }
    }

    impl Files for Mem {
        fn read(&self, path: &str) -> Result<String, String> {
            self.0
                .get(path)
                .cloned()
                .ok_or_else(|| "No such file".into())
        }

        fn list(&self, dir: &str) -> Vec<String> {
            let prefix = format!("{}/", dir.trim_end_matches('/'));
            let mut names: Vec<String> = self
                .0
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|rest| rest.split('/').next().unwrap_or(rest).to_owned())
                .collect();
            names.dedup();
            names
        }

        fn exists(&self, path: &str) -> bool {
            self.0
                .keys()
                .any(|k| k == path || k.starts_with(&format!("{path}/")))
        }
    }

    const DEBIAN_COMMON_AUTH: &str = "\
# /etc/pam.d/common-auth
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
auth\toptional\t\t\tpam_cap.so
";

    /// The module installed where libpam looks for it.
    fn installed(m: Mem) -> Mem {
        m.with("/usr/lib/x86_64-linux-gnu/security/pam_twostep.so", "")
    }

    fn kinds(findings: &[Finding]) -> Vec<(&'static str, String)> {
        findings
            .iter()
            .filter(|f| f.severity != Severity::Info)
            .map(|f| {
                (
                    f.kind,
                    f.at.as_ref().map(ToString::to_string).unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn pam_lines_parse_like_libpam() {
        let text = "#%PAM-1.0\n\
                    auth  [success=done default=ignore]  pam_faillock.so authsucc\n\
                    -auth sufficient pam_x.so a [b c\\]d] # comment\n\
                    @include common-auth\n\
                    auth include system-auth\n\
                    AUTH substack sub\n\
                    auth required \\\n   pam_twostep.so nullok\n\
                    auth requried pam_y.so\n\
                    bogus required pam_z.so\n\
                    account required\n";
        let lines = parse_pam(text);
        let shapes: Vec<(usize, String)> = lines
            .iter()
            .map(|(n, l)| {
                let s = match l {
                    PamLine::IncludeAll(t) => format!("@include {t}"),
                    PamLine::Include { ty, target } => format!("{ty} include {target}"),
                    PamLine::Substack { ty, target } => format!("{ty} substack {target}"),
                    PamLine::Module {
                        ty,
                        dash,
                        control,
                        module,
                        args,
                    } => format!(
                        "{}{ty} {} {module} {:?}",
                        if *dash { "-" } else { "" },
                        control.text,
                        args
                    ),
                    PamLine::Broken { ty, why } => format!("broken {ty}: {why}"),
                };
                (*n, s)
            })
            .collect();
        let want: Vec<(usize, String)> = vec![
            (
                2,
                "auth [success=done default=ignore] pam_faillock.so [\"authsucc\"]".into(),
            ),
            (3, "-auth sufficient pam_x.so [\"a\", \"b c]d\"]".into()),
            (4, "@include common-auth".into()),
            (5, "auth include system-auth".into()),
            (6, "auth substack sub".into()),
            (7, "auth required pam_twostep.so [\"nullok\"]".into()),
            (9, "broken auth: unknown control `requried`".into()),
            (10, "broken auth: `bogus` is not a module type".into()),
            (11, "broken account: no module".into()),
        ];
        assert_eq!(shapes, want);
    }

    #[test]
    fn controls_resolve_like_libpam() {
        use Action::*;
        let cases: &[(&str, &[(&str, Action)])] = &[
            (
                "required",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Bad)],
            ),
            (
                "requisite",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Die)],
            ),
            (
                "optional",
                &[("success", Ok), ("ignore", Ignore), ("auth_err", Ignore)],
            ),
            (
                "sufficient",
                &[("success", Done), ("ignore", Ignore), ("auth_err", Ignore)],
            ),
            (
                "[success=1 default=ignore]",
                &[("success", Jump(1)), ("auth_err", Ignore)],
            ),
            (
                "[success=done default=ignore]",
                &[("success", Done), ("maxtries", Ignore)],
            ),
            ("[default=done]", &[("success", Done), ("ignore", Done)]),
            (
                "[success=ok]",
                &[("success", Ok), ("auth_err", Bad), ("ignore", Bad)],
            ),
            (
                "[success=0 default=die]",
                &[("success", Ignore), ("auth_err", Die)],
            ),
            (
                "[success=ok authinfo_unavail=ignore default=bad]",
                &[("authinfo_unavail", Ignore), ("auth_err", Bad)],
            ),
        ];
        for (text, expect) in cases {
            let control = match text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
                Some(inner) => Control::bracket(inner).unwrap(),
                None => Control::keyword(text).unwrap(),
            };
            for (value, action) in *expect {
                assert_eq!(control.action(value), *action, "{text} {value}");
            }
        }
        assert!(Control::bracket("success=maybe").is_err());
        assert!(Control::bracket("sucess=ok").is_err());
        assert!(Control::bracket("success=+1").is_err());
    }

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

    fn sshd_values(overrides: &[(&str, &str)]) -> BTreeMap<String, String> {
        // Debian 12 with the docs' drop-in: password then code.
        let mut text = String::from(
            "usepam yes\nkbdinteractiveauthentication yes\npasswordauthentication no\npubkeyauthentication yes\nhostbasedauthentication no\ngssapiauthentication no\npermitemptypasswords no\nauthenticationmethods keyboard-interactive\n",
        );
        for (k, v) in overrides {
            text = text
                .lines()
                .filter(|l| !l.starts_with(&format!("{k} ")))
                .map(|l| format!("{l}\n"))
                .collect();
            text.push_str(&format!("{k} {v}\n"));
        }
        parse_sshd_t(&text)
    }

    fn stack(password_first: bool) -> ServiceInfo {
        ServiceInfo {
            name: "sshd".into(),
            file: "/etc/pam.d/sshd".into(),
            modules: vec![ModuleLine {
                at: Loc {
                    file: "/etc/pam.d/sshd".into(),
                    line: 2,
                },
                failmode_open: false,
                nullok: false,
                bus: twostep_proto::SYSTEM_BUS_ADDRESS.into(),
                bus_uid: 0,
            }],
            password_first,
        }
    }

    #[test]
    fn sshd_rules_table() {
        // (name, `sshd -T` values changed, password before the code, expected kinds)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool, &'a [&'a str]);
        let cases: &[Case] = &[
            ("docs: password then code", &[], true, &[]),
            (
                "docs: key then code",
                &[("authenticationmethods", "publickey,keyboard-interactive")],
                false,
                &[],
            ),
            ("UsePAM no", &[("usepam", "no")], true, &["sshd-usepam-no"]),
            (
                "KbdInteractiveAuthentication no",
                &[("kbdinteractiveauthentication", "no")],
                true,
                &["sshd-kbdinteractive-no"],
            ),
            (
                "old name ChallengeResponseAuthentication no",
                &[
                    ("challengeresponseauthentication", "no"),
                    ("kbdinteractiveauthentication", "no"),
                ],
                true,
                &["sshd-kbdinteractive-no"],
            ),
            (
                "AuthenticationMethods publickey",
                &[("authenticationmethods", "publickey")],
                true,
                &["sshd-method-without-pam"],
            ),
            (
                "AuthenticationMethods any with keys on (Debian's default)",
                &[("authenticationmethods", "any")],
                true,
                &["sshd-method-without-pam"],
            ),
            (
                "any with keys off and password off: fine",
                &[
                    ("authenticationmethods", "any"),
                    ("pubkeyauthentication", "no"),
                ],
                true,
                &[],
            ),
            (
                "PasswordAuthentication yes with any",
                &[
                    ("authenticationmethods", "any"),
                    ("pubkeyauthentication", "no"),
                    ("passwordauthentication", "yes"),
                ],
                true,
                &["sshd-password-authentication"],
            ),
            (
                "code-only stack with keyboard-interactive alone",
                &[],
                false,
                &["sshd-code-alone"],
            ),
            (
                "a list that cannot be completed is ignored",
                &[("authenticationmethods", "hostbased keyboard-interactive")],
                true,
                &[],
            ),
            (
                "submethods are stripped",
                &[(
                    "authenticationmethods",
                    "publickey,keyboard-interactive:pam",
                )],
                false,
                &[],
            ),
        ];
        for (name, overrides, password_first, want) in cases {
            let values = sshd_values(overrides);
            let got: Vec<&str> = sshd_rules(&values, *password_first)
                .iter()
                .map(|i| i.kind)
                .collect();
            assert_eq!(&got, want, "case: {name}");
        }
    }

    #[test]
    fn sshd_findings_point_at_the_line_in_force() {
        let mem = Mem(BTreeMap::new())
            .with(
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\nMatch User backup\n  AuthenticationMethods publickey\nMatch all\n",
            )
            .with(
                "/etc/ssh/sshd_config.d/10-twostep.conf",
                "# twostep\nUsePAM yes\nChallengeResponseAuthentication=no\nAuthenticationMethods \"keyboard-interactive\"\n",
            )
            .with("/etc/ssh/sshd_config.d/.hidden.conf", "UsePAM no\n")
            .with("/etc/ssh/sshd_config.d/readme", "UsePAM no\n");
        let config = read_sshd_config(&mem, "/etc/ssh/sshd_config");
        let values = sshd_values(&[("kbdinteractiveauthentication", "no")]);
        let found = analyze_sshd(&values, &config, &stack(true));
        let got: Vec<(&str, String)> = found
            .iter()
            .map(|f| {
                (
                    f.kind,
                    f.at.as_ref().map(ToString::to_string).unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "sshd-method-without-pam",
                    "/etc/ssh/sshd_config:5".to_owned()
                ),
                (
                    "sshd-kbdinteractive-no",
                    "/etc/ssh/sshd_config.d/10-twostep.conf:3".to_owned()
                ),
            ]
        );
        assert!(found[0]
            .message
            .contains("`Match User backup` (/etc/ssh/sshd_config:4)"));
        assert_eq!(found[0].services, vec!["sshd"]);
    }

    #[test]
    fn sshd_default_values_say_so() {
        let config = SshdConfig::default();
        let values = sshd_values(&[("authenticationmethods", "any")]);
        let found = analyze_sshd(&values, &config, &stack(true));
        assert_eq!(found.len(), 1);
        assert!(found[0].at.is_none());
        assert!(
            found[0].message.contains("sshd's default"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn sshd_words_and_globs() {
        type Words<'a> = Option<(&'a str, &'a [&'a str])>;
        let cases: &[(&str, Words)] = &[
            ("  # comment", None),
            ("", None),
            ("UsePAM yes", Some(("usepam", &["yes"]))),
            ("UsePAM=yes", Some(("usepam", &["yes"]))),
            ("UsePAM = yes # why", Some(("usepam", &["yes"]))),
            (
                "AuthorizedKeysFile \"/a b/%u\" .ssh/x",
                Some(("authorizedkeysfile", &["/a b/%u", ".ssh/x"])),
            ),
        ];
        for (line, want) in cases {
            let got = sshd_words(line);
            let want = want.map(|(k, a)| {
                (
                    k.to_owned(),
                    a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                )
            });
            assert_eq!(got, want, "{line:?}");
        }
        assert!(wildmatch(b"*.conf", b"10-a.conf"));
        assert!(!wildmatch(b"*.conf", b"10-a.conf.bak"));
        assert!(wildmatch(b"a?c", b"abc"));
    }

    #[test]
    fn sshd_t_output_parses() {
        let v = parse_sshd_t("port 22\nusepam yes\nchallengeresponseauthentication no\nauthenticationmethods publickey,password keyboard-interactive\nhostkey /a\nhostkey /b\n");
        assert_eq!(v["usepam"], "yes");
        assert_eq!(v["kbdinteractiveauthentication"], "no");
        assert_eq!(v["hostkey"], "/a");
        let lists = SshdValues(&v).method_lists().unwrap();
        assert_eq!(
            lists,
            vec![vec!["publickey", "password"], vec!["keyboard-interactive"]]
        );
    }

    #[test]
    fn daemon_states_become_findings() {
        let services = vec![stack(true)];
        let sys = twostep_proto::SYSTEM_BUS_ADDRESS.to_owned();
        let cases: &[(DaemonState, Severity, &str)] = &[
            (
                DaemonState::Running { uid: 0 },
                Severity::Info,
                "daemon-running",
            ),
            (
                DaemonState::Running { uid: 1000 },
                Severity::Error,
                "daemon-wrong-owner",
            ),
            (
                DaemonState::NotRunning,
                Severity::Error,
                "daemon-not-running",
            ),
            (
                DaemonState::NoBus("refused".into()),
                Severity::Error,
                "daemon-not-running",
            ),
            (
                DaemonState::NoAnswer("timeout".into()),
                Severity::Error,
                "daemon-no-answer",
            ),
        ];
        for (state, severity, kind) in cases {
            let f = daemon_findings(&[(sys.clone(), 0, state.clone())], &services);
            assert_eq!((f[0].severity, f[0].kind), (*severity, *kind), "{state:?}");
            if *severity == Severity::Error {
                assert!(
                    f[0].message.contains("logins through sshd are refused"),
                    "{}",
                    f[0].message
                );
            }
        }
    }
}
