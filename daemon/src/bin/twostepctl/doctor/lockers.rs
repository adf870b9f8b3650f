// SPDX-License-Identifier: MIT OR Apache-2.0
//! Screen and console lockers that are installed, and what their PAM service does with the
//! module (docs/screen-lockers.md has the same table for people).
//!
//! A locker names a PAM service; libpam falls back to `other` when that file is missing
//! (Debian's `screen` and `vlock` ship none). Two kinds of lockers:
//! - **one field** (GNU screen, i3lock, swaylock): the locker reads one password and
//!   answers *every* prompt with it, so a stack that asks for the code can never unlock,
//!   and a password of exactly the code's length is checked as a code;
//! - **conversation** (vlock, xscreensaver 6, GNOME's unlock dialog): each prompt is shown
//!   in turn, so password and code work as at `login`.

use super::findings::{Finding, Severity};
use super::io::{join, Files};
use super::pam_analysis::analyze_stack;
use super::pam_stack::Loader;

/// How a locker answers the PAM conversation.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Prompts {
    /// One password field; every prompt gets the same answer.
    OneField,
    /// Each prompt is shown and answered in turn.
    Conversation,
}

/// A locker: its PAM service name, the files that show it is installed, how it prompts.
struct Locker {
    service: &'static str,
    binaries: &'static [&'static str],
    prompts: Prompts,
}

/// The lockers the doctor knows (service names from each program's source or package).
const LOCKERS: &[Locker] = &[
    Locker {
        service: "screen",
        binaries: &["/usr/bin/screen"],
        prompts: Prompts::OneField,
    },
    Locker {
        service: "vlock",
        binaries: &["/usr/sbin/vlock-main"],
        prompts: Prompts::Conversation,
    },
    Locker {
        service: "i3lock",
        binaries: &["/usr/bin/i3lock"],
        prompts: Prompts::OneField,
    },
    Locker {
        service: "swaylock",
        binaries: &["/usr/bin/swaylock"],
        prompts: Prompts::OneField,
    },
    Locker {
        service: "xscreensaver",
        binaries: &["/usr/bin/xscreensaver"],
        prompts: Prompts::Conversation,
    },
    Locker {
        service: "gdm-password",
        binaries: &["/usr/bin/gnome-shell"],
        prompts: Prompts::Conversation,
    },
];

/// Findings for the installed lockers whose stack reaches pam_twostep, or that have no PAM
/// file of their own (they use `other`).
pub(super) fn locker_findings(files: &dyn Files, dir: &str) -> Vec<Finding> {
    let loader = Loader { files, dir };
    let mut out = Vec::new();
    for locker in LOCKERS {
        let Some(binary) = locker.binaries.iter().find(|b| files.exists(b)) else {
            continue;
        };
        let own = join(dir, locker.service);
        let falls_back = !files.exists(&own);
        let (stack, file) = loader.service(locker.service);
        let (info, _) = analyze_stack(locker.service, &file, &stack);
        let asks_code = !info.modules.is_empty();
        let whose = if falls_back {
            format!(
                "{} ({binary}) has no PAM file of its own ({own}) and uses {file}",
                locker.service
            )
        } else {
            format!("{} ({binary}) uses {file}", locker.service)
        };
        let finding = match (locker.prompts, asks_code) {
            (Prompts::OneField, true) => Finding::new(
                Severity::Warning,
                "locker-one-field",
                format!(
                    "{whose}, which asks for the code, but it has one password field: it can \
                     never unlock, and a password of the code's length is checked as a wrong \
                     code; give it its own stack without pam_twostep (docs/screen-lockers.md)"
                ),
                None,
            ),
            (Prompts::Conversation, true) if falls_back => Finding::new(
                Severity::Info,
                "locker-uses-other",
                format!(
                    "{whose}, which asks for the code; it shows each prompt, so password and \
                     code work (a file of its own keeps it that way when `other` changes)"
                ),
                None,
            ),
            (_, false) if falls_back => Finding::new(
                Severity::Info,
                "locker-uses-other",
                format!("{whose}, which does not ask for the code"),
                None,
            ),
            _ => continue,
        };
        out.push(finding.service(locker.service));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::{Mem, DEBIAN_COMMON_AUTH};

    const WITH_TWOSTEP: &str = "@include common-auth\nauth required pam_twostep.so\n";

    fn kinds(files: &Mem) -> Vec<(String, &'static str, Severity)> {
        locker_findings(files, "/etc/pam.d")
            .into_iter()
            .map(|f| (f.services.join(","), f.kind, f.severity))
            .collect()
    }

    #[test]
    fn one_field_lockers_that_fall_back_to_an_other_that_asks_for_the_code_are_named() {
        let files = Mem::pam(&[("common-auth", DEBIAN_COMMON_AUTH), ("other", WITH_TWOSTEP)])
            .with("/usr/bin/screen", "")
            .with("/usr/sbin/vlock-main", "");
        assert_eq!(
            kinds(&files),
            vec![
                ("screen".into(), "locker-one-field", Severity::Warning),
                ("vlock".into(), "locker-uses-other", Severity::Info),
            ]
        );
        let text = &locker_findings(&files, "/etc/pam.d")[0].message;
        assert!(
            text.starts_with("screen (/usr/bin/screen) has no PAM file of its own (/etc/pam.d/screen) and uses /etc/pam.d/other"),
            "{text}"
        );
    }

    #[test]
    fn a_locker_with_its_own_stack_without_the_module_is_fine() {
        let files = Mem::pam(&[
            ("common-auth", DEBIAN_COMMON_AUTH),
            ("other", WITH_TWOSTEP),
            ("screen", "auth required pam_unix.so\n"),
            ("i3lock", WITH_TWOSTEP),
        ])
        .with("/usr/bin/screen", "")
        .with("/usr/bin/i3lock", "");
        assert_eq!(
            kinds(&files),
            vec![("i3lock".into(), "locker-one-field", Severity::Warning)]
        );
    }

    #[test]
    fn lockers_that_are_not_installed_are_not_reported() {
        let files = Mem::pam(&[("common-auth", DEBIAN_COMMON_AUTH), ("other", WITH_TWOSTEP)]);
        assert!(kinds(&files).is_empty());
    }
}
