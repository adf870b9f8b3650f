// SPDX-License-Identifier: MIT OR Apache-2.0
//! Who may do what, as pure predicates over the caller's uid as the bus reported it.

use super::users::Account;
use super::Error;

/// root may run the login check for anyone (sshd, sudo, su, login run PAM as root);
/// anyone else only for itself (screen lockers run PAM as the user).
///
/// # Errors
/// [`Error::AccessDenied`] otherwise.
pub fn may_run_login(caller_uid: u32, target: &Account) -> Result<(), Error> {
    if caller_uid == 0 || caller_uid == target.uid {
        Ok(())
    } else {
        Err(Error::AccessDenied(format!(
            "uid {caller_uid} may not run the login check for another user"
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
        };
        let root = Account {
            name: "root".into(),
            uid: 0,
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
}
