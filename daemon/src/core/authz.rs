// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who may do what, as pure predicates over the caller's uid as the bus reported it.

use super::users::Account;
use super::Error;

/// Who is calling, as the bus reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    /// The caller's unique bus name: a session answers only to the connection that began it.
    pub sender: String,
}

/// root may run the login check for anyone (sshd, sudo, su, login run PAM as root);
/// anyone else only for itself (screen lockers run PAM as the user).
///
/// # Errors
/// [`Error::AccessDenied`] otherwise.
pub fn may_run_login(caller_uid: u32, target: &Account) -> Result<(), Error> {
    if caller_uid == 0 || caller_uid == target.uid {
        Ok(())
    } else {
        Err(not_for_others(caller_uid))
    }
}

/// The one answer a non-root caller gets for any name that is not one of its own, whether
/// that name exists or not (nothing to enumerate users with).
pub fn not_for_others(caller_uid: u32) -> Error {
    Error::AccessDenied(format!(
        "uid {caller_uid} may run the login check only for its own account"
    ))
}

/// Admin methods: root, or a member of the configured admin group (`groups` are the
/// caller's group names as NSS reports them; an empty `admin_group` means root only).
///
/// # Errors
/// [`Error::AccessDenied`] otherwise.
pub fn may_admin(caller_uid: u32, groups: &[String], admin_group: &str) -> Result<(), Error> {
    if caller_uid == 0 || (!admin_group.is_empty() && groups.iter().any(|g| g == admin_group)) {
        Ok(())
    } else {
        Err(Error::AccessDenied(format!(
            "uid {caller_uid} may not administer twostep (root or group {:?} only)",
            admin_group
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_checks() {
        let alice = Account {
            name: "alice".into(),
            uid: 1000,
            gid: 1000,
        };
        let root = Account {
            name: "root".into(),
            uid: 0,
            gid: 0,
        };
        let cases = [
            (0, &alice, true),
            (1000, &alice, true),
            (1001, &alice, false),
            (0, &root, true),
            (1000, &root, false),
            (u32::MAX, &alice, false),
        ];
        for (caller, target, allowed) in cases {
            assert_eq!(
                may_run_login(caller, target).is_ok(),
                allowed,
                "{caller} → {}",
                target.name
            );
        }
    }

    #[test]
    fn admin_checks() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases = [
            (0, g(&[]), "", true),
            (0, g(&[]), "wheel", true),
            (1000, g(&["wheel"]), "wheel", true),
            (1000, g(&["users"]), "wheel", false),
            (1000, g(&[""]), "", false),
            (1000, g(&["wheelx"]), "wheel", false),
        ];
        for (uid, groups, admin, allowed) in cases {
            assert_eq!(
                may_admin(uid, &groups, admin).is_ok(),
                allowed,
                "{uid} {groups:?} {admin}"
            );
        }
    }
}
