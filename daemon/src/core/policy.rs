// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who must use a second factor, and who may switch it off.

use twostep_config::{Policy, Require};

/// Whether a user must use 2FA, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub required: bool,
    pub why: String,
}

/// An admin's per-user override, stored in the user's record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Override {
    #[default]
    Default,
    Required,
    Exempt,
}

/// Decide from the config, the user's groups and the admin override (which wins).
pub fn requirement(policy: &Policy, over: Override, groups: &[String]) -> Requirement {
    let r = |required, why: String| Requirement { required, why };
    match over {
        Override::Required => return r(true, "admin override".into()),
        Override::Exempt => return r(false, "admin override (exempt)".into()),
        Override::Default => {}
    }
    if let Some(g) = groups.iter().find(|g| policy.exempt_groups.contains(g)) {
        return r(false, format!("exempt group {g}"));
    }
    match policy.require {
        Require::None => r(false, "not required by config".into()),
        Require::All => r(true, "config: require = all".into()),
        Require::Groups => match groups.iter().find(|g| policy.groups.contains(g)) {
            Some(g) => r(true, format!("group {g}")),
            None => r(false, "in no required group".into()),
        },
    }
}

/// Whether the user may switch their own 2FA off.
pub fn may_toggle(policy: &Policy, user_setting: Option<bool>, required: &Requirement) -> bool {
    !required.required && user_setting.unwrap_or(policy.may_toggle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requirement_table() {
        let p = Policy {
            require: Require::Groups,
            groups: groups(&["staff"]),
            exempt_groups: groups(&["robots"]),
            ..Policy::default()
        };
        let all = Policy {
            require: Require::All,
            ..p.clone()
        };
        let none = Policy::default();
        let cases = [
            (&p, Override::Default, groups(&["staff"]), true),
            (&p, Override::Default, groups(&["users"]), false),
            (&p, Override::Default, groups(&["staff", "robots"]), false),
            (&p, Override::Exempt, groups(&["staff"]), false),
            (&p, Override::Required, groups(&["robots"]), true),
            (&all, Override::Default, groups(&["users"]), true),
            (&all, Override::Default, groups(&["robots"]), false),
            (&none, Override::Default, groups(&["staff"]), false),
            (&none, Override::Required, groups(&[]), true),
        ];
        for (policy, over, g, required) in cases {
            let r = requirement(policy, over, &g);
            assert_eq!(
                r.required, required,
                "{:?} {over:?} {g:?}: {}",
                policy.require, r.why
            );
        }
    }

    #[test]
    fn toggling() {
        let p = Policy::default();
        let req = Requirement {
            required: true,
            why: String::new(),
        };
        let free = Requirement {
            required: false,
            why: String::new(),
        };
        assert!(may_toggle(&p, None, &free));
        assert!(!may_toggle(&p, None, &req));
        assert!(!may_toggle(&p, Some(false), &free));
        let strict = Policy {
            may_toggle: false,
            ..Policy::default()
        };
        assert!(!may_toggle(&strict, None, &free));
        assert!(may_toggle(&strict, Some(true), &free));
    }
}
