// SPDX-License-Identifier: MIT OR Apache-2.0
//! sudo's two PAM services (issue 19, fault 10): `pam_service` (`sudo CMD`, `sudo -s`)
//! and `pam_login_service` (`sudo -i`), read from the sudoers files the way sudo reads
//! them (`@include`, `@includedir` and their `#` spellings followed), so the doctor can
//! check that both services exist and both ask for the code.

use super::findings::Loc;
use super::io::{join, Files};

/// sudo's main configuration file.
pub const SUDOERS: &str = "/etc/sudoers";
/// The services sudo uses when sudoers names none (Debian's and Fedora's builds).
pub const DEFAULT_SERVICE: &str = "sudo";
/// See [`DEFAULT_SERVICE`]; `sudo -i`.
pub const DEFAULT_LOGIN_SERVICE: &str = "sudo-i";
/// sudo's own limit for nested includes.
const MAX_DEPTH: usize = 128;

/// Which of the two options a setting sets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SudoOption {
    /// `pam_service`: `sudo CMD`, `sudo -s`, `sudo -e`, `sudo -v`.
    Service,
    /// `pam_login_service`: `sudo -i`.
    LoginService,
}

impl SudoOption {
    /// The sudoers name of the option.
    pub fn name(self) -> &'static str {
        match self {
            SudoOption::Service => "pam_service",
            SudoOption::LoginService => "pam_login_service",
        }
    }
}

/// One `pam_service=` or `pam_login_service=` in a `Defaults` line.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SudoSetting {
    pub at: Loc,
    /// What the `Defaults` line applies to: `""` for everyone, else its binding as
    /// written (`:alice`, `:%admins`, `>root`, `@host`, `!cmd`).
    pub scope: String,
    pub option: SudoOption,
    /// The service name as written (libpam lower-cases it before it looks for the file).
    pub value: String,
}

/// The settings of `path` and every file it includes, in the order sudo reads them.
/// `None` when `path` itself cannot be read (sudo is not installed, or not readable).
pub fn read_sudoers(files: &dyn Files, path: &str) -> Option<Vec<SudoSetting>> {
    let text = files.read(path).ok()?;
    let mut out = Vec::new();
    read_text(files, path, &text, 0, &mut out);
    Some(out)
}

/// The lines of a sudoers file with the number of their first physical line; a backslash
/// at the end joins the next line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if acc.is_empty() {
            start = i + 1;
        }
        match raw.strip_suffix('\\') {
            Some(joined) => {
                acc.push_str(joined);
                acc.push(' ');
            }
            None => {
                acc.push_str(raw);
                out.push((start, std::mem::take(&mut acc)));
            }
        }
    }
    if !acc.is_empty() {
        out.push((start, acc));
    }
    out
}

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(d, _)| d)
}

fn read_text(files: &dyn Files, path: &str, text: &str, depth: usize, out: &mut Vec<SudoSetting>) {
    for (line, raw) in logical_lines(text) {
        let trimmed = raw.trim();
        let mut words = trimmed.split_whitespace();
        let first = words.next().unwrap_or_default();
        let target = words.next().unwrap_or_default().trim_matches('"');
        match first {
            "@include" | "#include" if depth < MAX_DEPTH => {
                let file = join(dir_of(path), target);
                if let Ok(t) = files.read(&file) {
                    read_text(files, &file, &t, depth + 1, out);
                }
            }
            "@includedir" | "#includedir" if depth < MAX_DEPTH => {
                let dir = join(dir_of(path), target);
                // sudo skips names that end in `~` or contain a `.` (editor and package
                // leftovers).
                for name in files.list(&dir) {
                    if name.ends_with('~') || name.contains('.') {
                        continue;
                    }
                    let file = join(&dir, &name);
                    if let Ok(t) = files.read(&file) {
                        read_text(files, &file, &t, depth + 1, out);
                    }
                }
            }
            w if w.starts_with("Defaults") => {
                let scope = w.trim_start_matches("Defaults").to_owned();
                let params = trimmed
                    .get(w.len()..)
                    .unwrap_or_default()
                    .split('#')
                    .next()
                    .unwrap_or_default();
                for param in params.split(',') {
                    let Some((name, value)) = param.split_once('=') else {
                        continue;
                    };
                    let option = match name.trim() {
                        "pam_service" => SudoOption::Service,
                        "pam_login_service" => SudoOption::LoginService,
                        _ => continue,
                    };
                    out.push(SudoSetting {
                        at: Loc {
                            file: path.to_owned(),
                            line,
                        },
                        scope: scope.clone(),
                        option,
                        value: value.trim().trim_matches('"').to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
}

/// The pair of services one group of sudo users gets, and the settings that chose them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SudoPair {
    /// `""` for everyone, else the `Defaults` binding.
    pub scope: String,
    pub service: String,
    pub login_service: String,
    /// The setting that chose each (none: sudo's default).
    pub service_at: Option<Loc>,
    pub login_service_at: Option<Loc>,
}

/// The `(pam_service, pam_login_service)` pair in effect for everyone and for each scope
/// that sets either (a scope inherits what it does not set from the global `Defaults`).
pub fn pairs(settings: &[SudoSetting]) -> Vec<SudoPair> {
    let last = |scope: &str, option: SudoOption| {
        settings
            .iter()
            .rev()
            .find(|s| s.scope == scope && s.option == option)
    };
    let global_service = last("", SudoOption::Service);
    let global_login = last("", SudoOption::LoginService);
    let mut scopes: Vec<&str> = vec![""];
    for s in settings {
        if !scopes.contains(&s.scope.as_str()) {
            scopes.push(&s.scope);
        }
    }
    scopes
        .into_iter()
        .map(|scope| {
            let service = last(scope, SudoOption::Service).or(global_service);
            let login = last(scope, SudoOption::LoginService).or(global_login);
            SudoPair {
                scope: scope.to_owned(),
                service: service.map_or(DEFAULT_SERVICE.to_owned(), |s| s.value.clone()),
                login_service: login.map_or(DEFAULT_LOGIN_SERVICE.to_owned(), |s| s.value.clone()),
                service_at: service.map(|s| s.at.clone()),
                login_service_at: login.map(|s| s.at.clone()),
            }
        })
        .collect()
}
