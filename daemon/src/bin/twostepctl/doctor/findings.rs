// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the doctor reports: [`Finding`]s with a [`Severity`] and a place ([`Loc`]), and
//! [`merge`], which makes one finding of the same cause reached by several services.

use std::fmt;

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
    pub(super) fn name(self) -> &'static str {
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
    pub(super) fn new(
        severity: Severity,
        kind: &'static str,
        message: String,
        at: Option<Loc>,
    ) -> Self {
        Finding {
            severity,
            kind,
            message,
            at,
            via: Vec::new(),
            services: Vec::new(),
        }
    }

    pub(super) fn service(mut self, name: &str) -> Self {
        self.services.push(name.to_owned());
        self
    }
}

/// Findings with the same cause (kind, line, message, severity) become one, with the
/// services and include paths of all of them.
pub(super) fn merge(findings: Vec<Finding>) -> Vec<Finding> {
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
