// SPDX-License-Identifier: MIT OR Apache-2.0
//! Account look-ups through NSS, by exact name or uid only.

use super::Error;
use twostep_proto::limits::MAX_USER_LEN;

/// A local account as NSS reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Check a user name as received from a client: bounded, no NUL, no control characters.
///
/// # Errors
/// [`Error::InvalidArgument`] for an empty, over-long or odd name.
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_USER_LEN || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument("malformed user name".into()));
    }
    Ok(())
}

/// Look `name` up exactly.
///
/// # Errors
/// [`Error::UnknownUser`] when NSS has no such user, [`Error::Busy`] when NSS fails.
pub fn by_name(name: &str) -> Result<Account, Error> {
    check_name(name)?;
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) if u.name == name => Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(_) => Err(Error::UnknownUser(name.to_owned())),
        Err(e) => Err(Error::Busy(format!("user database look-up failed: {e}"))),
    }
}

/// Look `uid` up.
///
/// # Errors
/// [`Error::AccessDenied`] when the uid has no account (nothing to manage).
pub fn by_uid(uid: u32) -> Result<Account, Error> {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(None) => Err(Error::AccessDenied(format!("uid {uid} has no account"))),
        Err(e) => Err(Error::Busy(format!("user database look-up failed: {e}"))),
    }
}

/// The other names of `uid` in the local account file (`/etc/passwd`): the second names
/// `useradd -o -u UID` makes, which NSS's by-uid look-up never returns. Names only; the
/// caller checks each with [`by_name`]. At most [`MAX_LOCAL_NAMES`] are returned.
///
/// # Errors
/// [`Error::Busy`] when the file cannot be read (fail closed).
pub fn local_names_of(uid: u32) -> Result<Vec<String>, Error> {
    let text = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Error::Busy(format!("cannot read /etc/passwd: {e}")))?;
    let uid = uid.to_string();
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            (parts.nth(1)? == uid && check_name(name).is_ok()).then(|| name.to_owned())
        })
        .take(MAX_LOCAL_NAMES)
        .collect())
}

/// Bound on the local names of one uid that are looked at.
pub const MAX_LOCAL_NAMES: usize = 64;

/// The names of the groups `account` belongs to (primary and supplementary), through NSS,
/// so LDAP/SSSD groups count.
///
/// A gid NSS has no group for (a dangling primary gid) has no name and is skipped; a
/// failed look-up is an error, never a missing group (a required member must not become
/// "not required" because the group database hiccupped).
///
/// # Errors
/// [`Error::Busy`] when NSS fails, for the list or for any one of the groups.
pub fn group_names(account: &Account) -> Result<Vec<String>, Error> {
    let name = std::ffi::CString::new(account.name.as_str())
        .map_err(|_| Error::InvalidArgument("malformed user name".into()))?;
    let gids = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(account.gid))
        .map_err(|e| Error::Busy(format!("group look-up failed: {e}")))?;
    let mut names = Vec::with_capacity(gids.len());
    for gid in gids {
        match nix::unistd::Group::from_gid(gid) {
            Ok(Some(g)) => names.push(g.name),
            Ok(None) => {}
            Err(e) => {
                return Err(Error::Busy(format!(
                    "group look-up failed for gid {}: {e}",
                    gid.as_raw()
                )))
            }
        }
    }
    Ok(names)
}
