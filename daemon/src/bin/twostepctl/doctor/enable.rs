// SPDX-License-Identifier: MIT OR Apache-2.0
//! Before `pam-auth-update --enable twostep`: what enabling would do to sshd.
//!
//! On stock Debian 12, sshd's PAM stack includes `common-auth` but `sshd_config` says
//! `KbdInteractiveAuthentication no`; once the profile adds the module to `common-auth`,
//! password logins over SSH can no longer answer the code prompt and enrolled users are
//! locked out. So while sshd's stack does not reach the module yet but the profile is
//! installed, the doctor reads the stacks as pam-auth-update would write them (the
//! profile's `Auth:` lines after the last `auth` line of `common-auth`) and reports what
//! sshd's settings would then break, as warnings that say "after enabling".

use super::findings::{Finding, Severity};
use super::io::{join, Files};

/// Debian's pam-auth-update profile of the package.
pub(super) const PROFILE: &str = "/usr/share/pam-configs/twostep";

/// The command the findings speak of.
pub(super) const ENABLE: &str = "pam-auth-update --enable twostep";

/// The files as they are, except `common-auth` of the PAM directory, which has the
/// profile's `auth` lines appended (see [`as_enabled`]).
pub(super) struct Enabled<'a> {
    files: &'a dyn Files,
    common_auth: String,
    text: String,
}

impl Files for Enabled<'_> {
    fn read(&self, path: &str) -> Result<String, String> {
        if path == self.common_auth {
            Ok(self.text.clone())
        } else {
            self.files.read(path)
        }
    }

    fn list(&self, dir: &str) -> Vec<String> {
        self.files.list(dir)
    }

    fn exists(&self, path: &str) -> bool {
        path == self.common_auth || self.files.exists(path)
    }
}

/// The `Auth:` lines of a pam-auth-update profile (continuation lines start with white
/// space), as PAM lines of type `auth`.
fn profile_auth_lines(profile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_auth = false;
    for line in profile.lines() {
        if line.starts_with([' ', '\t']) {
            if in_auth && !line.trim().is_empty() {
                out.push(format!("auth\t{}", line.trim()));
            }
        } else {
            in_auth = line.trim_end() == "Auth:";
        }
    }
    out
}

/// The files as `pam-auth-update --enable twostep` would leave them, when the profile is
/// installed and has `auth` lines; `None` otherwise.
pub(super) fn as_enabled<'a>(files: &'a dyn Files, pam_dir: &str) -> Option<Enabled<'a>> {
    let lines = profile_auth_lines(&files.read(PROFILE).ok()?);
    if lines.is_empty() {
        return None;
    }
    let common_auth = join(pam_dir, "common-auth");
    let mut text = files.read(&common_auth).ok()?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    Some(Enabled {
        files,
        common_auth,
        text,
    })
}

/// A finding about the stacks as enabled, as a warning about the step still to come.
pub(super) fn after_enabling(mut f: Finding) -> Finding {
    if f.severity == Severity::Info {
        return f;
    }
    f.severity = Severity::Warning;
    f.message = format!(
        "after `{ENABLE}`: {} — fix this before enabling (the package ships the sshd \
         settings in /usr/share/twostep/sshd_config.d/twostep.conf)",
        f.message
    );
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::{Mem, DEBIAN_COMMON_AUTH};

    const SHIPPED: &str = include_str!("../../../../../packaging/pam-configs/twostep");

    #[test]
    fn the_shipped_profile_adds_the_module_after_the_password_block() {
        assert_eq!(
            profile_auth_lines(SHIPPED),
            vec!["auth\trequired\tpam_twostep.so nullok"]
        );
        let files = Mem::pam(&[("common-auth", DEBIAN_COMMON_AUTH)]).with(PROFILE, SHIPPED);
        let enabled = as_enabled(&files, "/etc/pam.d").expect("the profile is installed");
        let text = enabled.read("/etc/pam.d/common-auth").unwrap();
        assert!(text.starts_with(DEBIAN_COMMON_AUTH));
        assert!(text.ends_with("auth\trequired\tpam_twostep.so nullok\n"));
        assert!(enabled.read("/etc/pam.d/other").is_err());
    }

    #[test]
    fn without_the_profile_there_is_nothing_to_preview() {
        let files = Mem::pam(&[("common-auth", DEBIAN_COMMON_AUTH)]);
        assert!(as_enabled(&files, "/etc/pam.d").is_none());
        let other = Mem::pam(&[("common-auth", DEBIAN_COMMON_AUTH)])
            .with(PROFILE, "Name: x\nAccount:\n\trequired\tpam_x.so\n");
        assert!(as_enabled(&other, "/etc/pam.d").is_none());
    }
}
