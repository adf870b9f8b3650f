// SPDX-License-Identifier: MIT OR Apache-2.0
//! Account look-ups, by exact name or uid only, behind [`Accounts`]: [`NssAccounts`] asks
//! NSS (so LDAP/SSSD accounts and groups count); [`FakeAccounts`] is a table for unit tests,
//! so the core's rules for non-root callers, groups and policy run without root.

use std::collections::BTreeMap;

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

/// Where accounts and their groups come from.
pub trait Accounts: Send + Sync {
    /// The account named exactly `name` (checked with [`check_name`] first).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a malformed name, [`Error::UnknownUser`] when there is
    /// no such account, [`Error::Unavailable`] when the look-up fails.
    fn by_name(&self, name: &str) -> Result<Account, Error>;

    /// The account of `uid`.
    ///
    /// # Errors
    /// [`Error::AccessDenied`] when the uid has no account (nothing to manage),
    /// [`Error::Unavailable`] when the look-up fails.
    fn by_uid(&self, uid: u32) -> Result<Account, Error>;

    /// The names of the groups `account` belongs to (primary and supplementary). A gid
    /// with no group (a dangling primary gid) has no name and is left out; a failed
    /// look-up is an error, never a missing group.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the look-up fails, for the list or for any one group.
    fn group_names(&self, account: &Account) -> Result<Vec<String>, Error>;

    /// Further names of `uid` that the account database lists (the second names
    /// `useradd -o -u UID` makes, which a by-uid look-up never returns), at most
    /// [`MAX_OTHER_NAMES`]. Names only: callers confirm each with [`Accounts::by_name`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the database cannot be read.
    fn other_names(&self, uid: u32) -> Result<Vec<String>, Error>;

    /// Whether the group `name` exists.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the look-up fails.
    fn group_exists(&self, name: &str) -> Result<bool, Error>;

    /// For admin views only (it enumerates): the names group `name` lists as members, and
    /// the local accounts (`/etc/passwd`) whose primary group it is; empty when there is no
    /// such group.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the look-up fails or `/etc/passwd` cannot be read.
    fn group_members(&self, name: &str) -> Result<Vec<String>, Error>;

    /// For admin views only: the local accounts of people (`/etc/passwd`): uid 0 and uids
    /// from [`FIRST_PERSON_UID`], without `nobody` ([`NOBODY_UID`]).
    ///
    /// # Errors
    /// [`Error::Unavailable`] when `/etc/passwd` cannot be read.
    fn local_people(&self) -> Result<Vec<String>, Error>;
}

/// The first uid of a person's account (Debian's `UID_MIN` in login.defs).
pub const FIRST_PERSON_UID: u32 = 1000;

/// `nobody` on Debian and most distributions.
pub const NOBODY_UID: u32 = 65534;

/// The (name, uid, gid) of each well-formed line of `/etc/passwd`.
fn local_passwd() -> Result<Vec<(String, u32, u32)>, Error> {
    let text = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Error::Unavailable(format!("cannot read /etc/passwd: {e}")))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.split(':');
            let name = parts.next()?;
            let uid = parts.nth(1)?.parse().ok()?;
            let gid = parts.next()?.parse().ok()?;
            check_name(name)
                .is_ok()
                .then(|| (name.to_owned(), uid, gid))
        })
        .collect())
}

/// Bound on the further names of one uid that are looked at.
pub const MAX_OTHER_NAMES: usize = 64;

/// Accounts through NSS.
#[derive(Clone, Copy, Debug, Default)]
pub struct NssAccounts;

fn nss_failed(what: &str, e: nix::Error) -> Error {
    Error::Unavailable(format!("{what} failed: {e}"))
}

impl Accounts for NssAccounts {
    /// From the index of `/etc/passwd` when it may answer ([`super::passwd`]: O(1), the
    /// same answer glibc's `files` back end gives), otherwise through NSS.
    fn by_name(&self, name: &str) -> Result<Account, Error> {
        check_name(name)?;
        if let Some(account) = super::passwd::LOCAL.get(name) {
            return Ok(account);
        }
        by_name(name)
    }

    /// From the index of `/etc/passwd` when it may answer ([`super::passwd`]), otherwise
    /// through NSS.
    fn by_uid(&self, uid: u32) -> Result<Account, Error> {
        if let Some(account) = super::passwd::LOCAL.get_uid(uid) {
            return Ok(account);
        }
        match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
            Ok(Some(u)) => Ok(Account {
                name: u.name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }),
            Ok(None) => Err(Error::AccessDenied(format!("uid {uid} has no account"))),
            Err(e) => Err(nss_failed("user database look-up", e)),
        }
    }

    fn group_names(&self, account: &Account) -> Result<Vec<String>, Error> {
        let name = std::ffi::CString::new(account.name.as_str())
            .map_err(|_| Error::InvalidArgument("malformed user name".into()))?;
        let gids = nix::unistd::getgrouplist(&name, nix::unistd::Gid::from_raw(account.gid))
            .map_err(|e| nss_failed("group look-up", e))?;
        let mut names = Vec::with_capacity(gids.len());
        for gid in gids {
            match nix::unistd::Group::from_gid(gid) {
                Ok(Some(g)) => names.push(g.name),
                Ok(None) => {}
                // Why: a required member must not become "not required" because the group
                // database hiccupped.
                Err(e) => return Err(nss_failed(&format!("look-up of gid {gid}"), e)),
            }
        }
        Ok(names)
    }

    /// The local account file (`/etc/passwd`): NSS has no "every name of a uid" call, and
    /// `useradd -o` writes its second names there.
    fn other_names(&self, uid: u32) -> Result<Vec<String>, Error> {
        // The index of the same file holds the same names when it may answer.
        if let Some(names) = super::passwd::LOCAL.names_of(uid, MAX_OTHER_NAMES) {
            return Ok(names);
        }
        let text = std::fs::read_to_string("/etc/passwd")
            .map_err(|e| Error::Unavailable(format!("cannot read /etc/passwd: {e}")))?;
        let uid = uid.to_string();
        Ok(text
            .lines()
            .filter_map(|line| {
                let mut parts = line.split(':');
                let name = parts.next()?;
                (parts.nth(1)? == uid && check_name(name).is_ok()).then(|| name.to_owned())
            })
            .take(MAX_OTHER_NAMES)
            .collect())
    }

    fn group_exists(&self, name: &str) -> Result<bool, Error> {
        nix::unistd::Group::from_name(name)
            .map(|g| g.is_some())
            .map_err(|e| nss_failed("group look-up", e))
    }

    fn group_members(&self, name: &str) -> Result<Vec<String>, Error> {
        let Some(group) =
            nix::unistd::Group::from_name(name).map_err(|e| nss_failed("group look-up", e))?
        else {
            return Ok(Vec::new());
        };
        let gid = group.gid.as_raw();
        let mut names = group.mem;
        names.extend(
            local_passwd()?
                .into_iter()
                .filter(|(_, _, g)| *g == gid)
                .map(|(n, _, _)| n),
        );
        Ok(names)
    }

    fn local_people(&self) -> Result<Vec<String>, Error> {
        Ok(local_passwd()?
            .into_iter()
            .filter(|(_, uid, _)| *uid == 0 || (*uid >= FIRST_PERSON_UID && *uid != NOBODY_UID))
            .map(|(n, _, _)| n)
            .collect())
    }
}

/// Look `name` up exactly through NSS (what [`NssAccounts::by_name`] does; the benchmark
/// times it on its own).
///
/// # Errors
/// As [`Accounts::by_name`].
pub fn by_name(name: &str) -> Result<Account, Error> {
    check_name(name)?;
    match nix::unistd::User::from_name(name) {
        Ok(Some(u)) if u.name == name => Ok(Account {
            name: u.name,
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }),
        Ok(_) => Err(Error::UnknownUser(name.to_owned())),
        Err(e) => Err(nss_failed("user database look-up", e)),
    }
}

/// A fixed table of accounts and group memberships, for unit tests. Names map to uids
/// (several names may share one uid); `down` makes every look-up fail as an NSS outage does.
#[derive(Clone, Debug, Default)]
pub struct FakeAccounts {
    /// Name → account.
    pub accounts: BTreeMap<String, Account>,
    /// Account name → the names of its groups.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Every look-up fails ([`Error::Unavailable`]).
    pub down: bool,
}

impl FakeAccounts {
    /// An empty table.
    pub fn new() -> FakeAccounts {
        FakeAccounts::default()
    }

    /// Add account `name` with `uid` (gid = uid) in `groups`.
    #[must_use]
    pub fn with(mut self, name: &str, uid: u32, groups: &[&str]) -> FakeAccounts {
        self.accounts.insert(
            name.to_owned(),
            Account {
                name: name.to_owned(),
                uid,
                gid: uid,
            },
        );
        self.groups.insert(
            name.to_owned(),
            groups.iter().map(|g| (*g).to_owned()).collect(),
        );
        self
    }

    fn up(&self) -> Result<(), Error> {
        if self.down {
            return Err(Error::Unavailable("user database look-up failed".into()));
        }
        Ok(())
    }
}

impl Accounts for FakeAccounts {
    fn by_name(&self, name: &str) -> Result<Account, Error> {
        check_name(name)?;
        self.up()?;
        self.accounts
            .get(name)
            .cloned()
            .ok_or_else(|| Error::UnknownUser(name.to_owned()))
    }

    fn by_uid(&self, uid: u32) -> Result<Account, Error> {
        self.up()?;
        self.accounts
            .values()
            .find(|a| a.uid == uid)
            .cloned()
            .ok_or_else(|| Error::AccessDenied(format!("uid {uid} has no account")))
    }

    fn group_names(&self, account: &Account) -> Result<Vec<String>, Error> {
        self.up()?;
        Ok(self.groups.get(&account.name).cloned().unwrap_or_default())
    }

    fn other_names(&self, uid: u32) -> Result<Vec<String>, Error> {
        self.up()?;
        Ok(self
            .accounts
            .values()
            .filter(|a| a.uid == uid)
            .map(|a| a.name.clone())
            .collect())
    }

    fn group_exists(&self, name: &str) -> Result<bool, Error> {
        self.up()?;
        Ok(self.groups.values().flatten().any(|g| g == name))
    }

    fn group_members(&self, name: &str) -> Result<Vec<String>, Error> {
        self.up()?;
        Ok(self
            .groups
            .iter()
            .filter(|(_, gs)| gs.iter().any(|g| g == name))
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn local_people(&self) -> Result<Vec<String>, Error> {
        self.up()?;
        Ok(self
            .accounts
            .values()
            .filter(|a| a.uid == 0 || (a.uid >= FIRST_PERSON_UID && a.uid != NOBODY_UID))
            .map(|a| a.name.clone())
            .collect())
    }
}
