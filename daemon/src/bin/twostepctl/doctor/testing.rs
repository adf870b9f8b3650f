// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the doctor's unit tests share: files in memory and a short form of findings.

use std::collections::BTreeMap;

use super::findings::{Finding, Loc, Severity};
use super::io::{join, Files};
use super::pam_analysis::{ModuleLine, ServiceInfo};

/// Files in memory: absolute path → text.
pub(super) struct Mem(pub(super) BTreeMap<String, String>);

impl Mem {
    pub(super) fn pam(files: &[(&str, &str)]) -> Mem {
        Mem(files
            .iter()
            .map(|(n, t)| (join("/etc/pam.d", n), (*t).to_owned()))
            .collect())
    }

    pub(super) fn with(mut self, path: &str, text: &str) -> Mem {
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

pub(super) const DEBIAN_COMMON_AUTH: &str = "\
# /etc/pam.d/common-auth
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
auth\toptional\t\t\tpam_cap.so
";

/// The module installed where libpam looks for it.
pub(super) fn installed(m: Mem) -> Mem {
    m.with("/usr/lib/x86_64-linux-gnu/security/pam_twostep.so", "")
}

pub(super) fn kinds(findings: &[Finding]) -> Vec<(&'static str, String)> {
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

/// A service whose stack reaches pam_twostep once, on the system bus, at /etc/pam.d/sshd:2.
pub(super) fn stack(password_first: bool) -> ServiceInfo {
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
