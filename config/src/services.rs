// SPDX-License-Identifier: MIT OR Apache-2.0
//! `[services.NAME]`: per-PAM-service rules (issue 20, item 12). A service without a table
//! behaves exactly as `[policy]` says; a table can require a second factor on that service
//! for everyone, switch the module off there (`never`), narrow the methods it accepts, and
//! let a second factor proven on it count again for a while from the same place
//! (`remember_seconds`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Bounded, MethodName};

/// The longest remember window: 12 hours. Longer is a second factor per working day, not
/// per login; use `never` if that is what is meant.
pub const MAX_REMEMBER_SECONDS: u64 = 43_200;

/// Longest service name accepted (Linux-PAM has no limit; file names in `/etc/pam.d` are
/// short, and the name travels in every login context, itself bounded).
pub const MAX_SERVICE_NAME: usize = 64;

/// The `[services]` tables, by service name.
pub type Services = BTreeMap<ServiceName, ServiceRule>;

/// A PAM service name (`PAM_SERVICE`, the file name in `/etc/pam.d`): 1 to 64 of
/// `a-z 0-9 . _ - +`, not starting with a dot, and not `other`.
///
/// Why lower case only: Linux-PAM's `pam_start` lowercases the service name, so
/// `PAM_SERVICE` is never `Sudo`; a table named so would never apply. Why not `other`:
/// services without a file of their own run `/etc/pam.d/other`, but their `PAM_SERVICE`
/// stays their own name, so a `[services.other]` table would not cover them.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    /// The name as `PAM_SERVICE` carries it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-+".contains(c);
        if s.is_empty() || s.len() > MAX_SERVICE_NAME {
            return Err(format!(
                "service name {s:?}: 1 to {MAX_SERVICE_NAME} characters"
            ));
        }
        if s.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "service name {s:?}: write it in lower case (libpam lowercases PAM_SERVICE, \
                 so this table would never apply)"
            ));
        }
        if !s.chars().all(ok_char) || s.starts_with('.') {
            return Err(format!(
                "service name {s:?}: use the file name in /etc/pam.d (a-z, 0-9, '.', '_', \
                 '-', '+'; not starting with '.')"
            ));
        }
        if s == "other" {
            return Err(
                "service name \"other\": services without a file in /etc/pam.d run the \
                 \"other\" stack but keep their own PAM_SERVICE name; name them instead"
                    .into(),
            );
        }
        Ok(ServiceName(s))
    }
}

impl From<ServiceName> for String {
    fn from(n: ServiceName) -> String {
        n.0
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `[services.NAME] second_factor`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SecondFactor {
    /// As `[policy]` says (default): enrolled users are asked; users it requires and who
    /// have no factor enrol at login.
    #[default]
    Policy,
    /// Required of every user on this service, as if `[policy] require = "all"` held here:
    /// only an exemption (`exempt_groups`, `twostepctl user exempt`) still exempts.
    Required,
    /// Never asked on this service: the module answers as for a user without a second
    /// factor (`PAM_IGNORE` with `nullok`), so the password alone decides. A locked user is
    /// still refused.
    Never,
}

impl SecondFactor {
    /// The value as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            SecondFactor::Policy => "policy",
            SecondFactor::Required => "required",
            SecondFactor::Never => "never",
        }
    }
}

/// One `[services.NAME]` table.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceRule {
    /// `"policy"` (default), `"required"` or `"never"`.
    pub second_factor: SecondFactor,
    /// The methods this service accepts, a subset of `[policy] methods`; absent: all of
    /// them. Recovery codes are accepted wherever one of the user's methods is.
    pub methods: Option<Vec<MethodName>>,
    /// Seconds, 0 to 43200 (12 h), during which a second factor proven on this service
    /// counts again for the same user on this service from the same place (remote host,
    /// tty and the caller's audit session, as the daemon sees them), on this host only;
    /// 0 (default): off.
    pub remember_seconds: Bounded<0, MAX_REMEMBER_SECONDS>,
}

impl Default for ServiceRule {
    fn default() -> Self {
        ServiceRule {
            second_factor: SecondFactor::Policy,
            methods: None,
            remember_seconds: Bounded::new(0),
        }
    }
}

impl ServiceRule {
    /// Whether this service accepts `method` (before the host's own `[policy] methods`).
    pub fn allows(&self, method: MethodName) -> bool {
        self.methods.as_ref().is_none_or(|m| m.contains(&method))
    }
}

/// `[services.*]` tables that contradict `[policy] methods`: a method the host does not
/// allow, no method at all, a method twice, or a remember window on a service that never
/// asks.
pub fn contradictions(services: &Services, host_methods: &[MethodName]) -> Option<String> {
    for (name, rule) in services {
        let bad = |m: String| Some(format!("[services.{name}] {m}"));
        if let Some(m) = &rule.methods {
            if m.is_empty() {
                return bad(
                    "methods is empty: no login could pass; use second_factor = \"never\" to \
                     switch the second factor off there, or name a method"
                        .into(),
                );
            }
            if m.iter().enumerate().any(|(i, x)| m[..i].contains(x)) {
                return bad("methods names a method twice".into());
            }
            if let Some(x) = m.iter().find(|x| !host_methods.contains(x)) {
                return bad(format!(
                    "methods names {:?}, which [policy] methods does not allow on this host",
                    method_str(*x)
                ));
            }
        }
        if rule.second_factor == SecondFactor::Never && rule.remember_seconds.get() > 0 {
            return bad(
                "remember_seconds with second_factor = \"never\": nothing is asked there, \
                 so nothing can be remembered; remove one of them"
                    .into(),
            );
        }
        if rule.second_factor == SecondFactor::Never && rule.methods.is_some() {
            return bad(
                "methods with second_factor = \"never\": nothing is asked there; remove one \
                 of them"
                    .into(),
            );
        }
    }
    None
}

fn method_str(m: MethodName) -> &'static str {
    match m {
        MethodName::Totp => "totp",
        MethodName::Email => "email",
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::{Config, ConfigError};

    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn no_table_means_no_rule() {
        let c = parse("").unwrap();
        assert!(c.services.is_empty());
    }

    #[test]
    fn tables_parse() {
        let c = parse(
            "[services.sudo]\nremember_seconds = 900\n\
             [services.vlock]\nsecond_factor = \"never\"\n\
             [services.sshd]\nsecond_factor = \"required\"\nmethods = [\"totp\"]\n",
        )
        .unwrap();
        let get = |n: &str| &c.services[&ServiceName::try_from(n.to_owned()).unwrap()];
        assert_eq!(get("sudo").remember_seconds.get(), 900);
        assert_eq!(get("sudo").second_factor, SecondFactor::Policy);
        assert!(get("sudo").allows(MethodName::Email));
        assert_eq!(get("vlock").second_factor, SecondFactor::Never);
        assert_eq!(get("sshd").second_factor, SecondFactor::Required);
        assert!(get("sshd").allows(MethodName::Totp));
        assert!(!get("sshd").allows(MethodName::Email));
    }

    #[test]
    fn bad_values_and_keys_carry_file_line_and_column() {
        let cases = [
            (
                "[services.sudo]\nremember = \"15m\"\n",
                2,
                1,
                "unknown field",
            ),
            (
                "[services.sudo]\nremember_seconds = 43201\n",
                2,
                20,
                "out of range 0..=43200",
            ),
            (
                "[services.sudo]\nsecond_factor = \"sometimes\"\n",
                2,
                17,
                "unknown variant",
            ),
            (
                "[services.sudo]\nmethods = [\"sms\"]\n",
                2,
                12,
                "unknown variant",
            ),
        ];
        for (text, line, column, needle) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_their_line() {
        for (name, needle) in [
            ("Sudo", "lower case"),
            ("su do", "file name in /etc/pam.d"),
            (".hidden", "file name in /etc/pam.d"),
            ("a/b", "file name in /etc/pam.d"),
            ("other", "keep their own PAM_SERVICE"),
        ] {
            let text = format!("# a comment\n[services.\"{name}\"]\nsecond_factor = \"never\"\n");
            let e = parse(&text).unwrap_err();
            assert!(e.message.contains(needle), "{name:?}: {e}");
            assert_eq!(e.line, 2, "{name:?}: {e}");
        }
        let long = "a".repeat(MAX_SERVICE_NAME + 1);
        assert!(parse(&format!("[services.{long}]\n")).is_err());
        for ok in [
            "sshd",
            "sudo-i",
            "runuser-l",
            "polkit-1",
            "gdm-password",
            "a.b_c+d",
        ] {
            assert!(parse(&format!("[services.\"{ok}\"]\n")).is_ok(), "{ok}");
        }
    }

    /// The TOML of every ```` ```toml ```` block of `text` (Markdown), and of every roff
    /// `.nf` … `.fi` block that holds a `[services.` table.
    fn toml_blocks(text: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Option<String> = None;
        for line in text.lines() {
            match (&mut current, line.trim()) {
                (None, "```toml" | ".nf") => current = Some(String::new()),
                (Some(b), "```" | ".fi") => {
                    if line.trim() == "```" || b.contains("[services.") {
                        out.push(std::mem::take(b));
                    }
                    current = None;
                }
                (Some(b), _) => {
                    b.push_str(line);
                    b.push('\n');
                }
                (None, _) => {}
            }
        }
        out
    }

    #[test]
    fn documented_examples_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut seen = 0;
        for doc in [
            "docs/services.md",
            "docs/sudo.md",
            "packaging/man/twostep.toml.5.in",
        ] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for block in toml_blocks(&text)
                .iter()
                .filter(|b| b.contains("[services."))
            {
                let c = parse(block).unwrap_or_else(|e| panic!("{doc}:\n{block}\n{e}"));
                assert!(!c.services.is_empty(), "{doc}");
                seen += 1;
            }
        }
        assert_eq!(seen, 3, "one example in each document");
    }

    #[test]
    fn contradictions_are_errors() {
        for (text, needle) in [
            ("[services.sudo]\nmethods = []\n", "methods is empty"),
            (
                "[services.sudo]\nmethods = [\"totp\", \"totp\"]\n",
                "a method twice",
            ),
            (
                "[services.sudo]\nmethods = [\"email\"]\n",
                "[policy] methods does not allow",
            ),
            (
                "[services.vlock]\nsecond_factor = \"never\"\nremember_seconds = 60\n",
                "nothing can be remembered",
            ),
            (
                "[services.vlock]\nsecond_factor = \"never\"\nmethods = [\"totp\"]\n",
                "nothing is asked there",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(needle), "{text:?}: {e}");
            assert!(e.message.starts_with("[services."), "{e}");
        }
    }
}
