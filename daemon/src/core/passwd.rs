// SPDX-License-Identifier: MIT OR Apache-2.0
//! An index of `/etc/passwd` (name → uid, gid; uid → its lines), so that a login's account
//! look-ups (by name, by uid, every name of a uid) do not
//! scan the file line by line (glibc's `files` back end does: 10 ms per look-up at 100,000
//! accounts, ≈ 12 million instructions per login at 10,000; issue 18).
//!
//! # When it answers, and why that is what NSS would answer
//! [`NssAccounts::by_name`](super::users::NssAccounts) asks the index first; the index
//! answers only when all of this holds, and otherwise NSS is asked as before:
//! - `/etc/nsswitch.conf`'s `passwd:` line names `files` first, with no action (`[…]`)
//!   after it: glibc then returns the first matching line of `/etc/passwd` when there is
//!   one, without asking any later source;
//! - every line of `/etc/passwd` is plain: blank, a comment (`#` first), or seven
//!   `:`-separated fields with no leading blank, a name [`check_name`] accepts and decimal
//!   uid and gid that fit in 32 bits. Any other line — which glibc might read differently
//!   from this parser — turns the index off for the whole file;
//! - the name is in the file; the first line with that name wins, as in glibc;
//! - both files are unchanged since the index was built: their device, inode, size, mtime
//!   and ctime (nanoseconds) are compared on every look-up (two `stat` calls), and the file
//!   is read again when they differ. `useradd`/`userdel`/`usermod` rename a new file over
//!   the old one (a new inode); an edit in place changes mtime and ctime. A file that
//!   changes while it is read is not indexed.
//!
//! A name the index does not hold (not local, or the index is off) goes to NSS: absence is
//! never answered from here. Memory: about 80 bytes per account, built at the first look-up
//! (not at start).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use super::users::{check_name, Account};

/// What identifies one version of a file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// Every line of one passwd file: by name (the first line of a name) and by uid (every
/// line of a uid, in file order).
#[derive(Default)]
struct Lines {
    by_name: HashMap<String, (u32, u32)>,
    by_uid: HashMap<u32, Vec<(String, u32)>>,
}

/// The index of one version of the two files; `lines` is `None` when it must not answer.
struct Built {
    passwd: Stamp,
    nsswitch: Option<Stamp>,
    lines: Option<Lines>,
}

/// The index over a `passwd` file and an `nsswitch.conf` (the real ones in the daemon).
pub struct PasswdIndex {
    passwd: PathBuf,
    nsswitch: PathBuf,
    built: Mutex<Option<Built>>,
}

impl PasswdIndex {
    /// An index over these two files, built at the first look-up.
    pub fn new(passwd: PathBuf, nsswitch: PathBuf) -> PasswdIndex {
        PasswdIndex {
            passwd,
            nsswitch,
            built: Mutex::new(None),
        }
    }

    /// The account `name` as glibc's `files` back end would return it, when the index may
    /// answer (see the module doc); `None`: ask NSS.
    pub fn get(&self, name: &str) -> Option<Account> {
        self.with(|lines| {
            let (uid, gid) = *lines.by_name.get(name)?;
            Some(Account {
                name: name.to_owned(),
                uid,
                gid,
            })
        })
    }

    /// The account of `uid` as glibc's `files` back end would return it (its first line),
    /// when the index may answer; `None`: ask NSS.
    pub fn get_uid(&self, uid: u32) -> Option<Account> {
        self.with(|lines| {
            let (name, gid) = lines.by_uid.get(&uid)?.first()?;
            Some(Account {
                name: name.clone(),
                uid,
                gid: *gid,
            })
        })
    }

    /// Every name of `uid` in the file, in file order, at most `max`, when the index may
    /// answer; `None`: read the file.
    pub fn names_of(&self, uid: u32, max: usize) -> Option<Vec<String>> {
        self.with(|lines| {
            Some(
                lines
                    .by_uid
                    .get(&uid)
                    .map(|v| v.iter().take(max).map(|(n, _)| n.clone()).collect())
                    .unwrap_or_default(),
            )
        })
    }

    /// `f` on the lines of the current files, read again when they changed; `None` when
    /// the index must not answer.
    fn with<T>(&self, f: impl FnOnce(&Lines) -> Option<T>) -> Option<T> {
        let passwd = Stamp::of(&self.passwd)?;
        let nsswitch = Stamp::of(&self.nsswitch);
        let mut built = super::engine::lock(&self.built);
        let current = built
            .as_ref()
            .is_some_and(|b| b.passwd == passwd && b.nsswitch == nsswitch);
        if !current {
            *built = Some(Built {
                passwd,
                nsswitch,
                lines: self.build(passwd),
            });
        }
        f(built.as_ref()?.lines.as_ref()?)
    }

    /// The names of the passwd file whose stamp is `stamp`, or `None` when the index must
    /// not answer (see the module doc).
    fn build(&self, stamp: Stamp) -> Option<Lines> {
        let conf = std::fs::read_to_string(&self.nsswitch).ok()?;
        if !files_first(&conf) {
            return None;
        }
        let text = std::fs::read_to_string(&self.passwd).ok()?;
        // Why again: a file replaced or edited while it was read is not indexed.
        if Stamp::of(&self.passwd) != Some(stamp) {
            return None;
        }
        parse(&text)
    }
}

/// Whether `nsswitch.conf`'s `passwd:` line names `files` first with no action after it.
fn files_first(conf: &str) -> bool {
    let lines: Vec<&str> = conf
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| l.trim_start().strip_prefix("passwd:"))
        .collect();
    // No passwd line (glibc's default) or several (which one wins): left to NSS.
    let [line] = lines.as_slice() else {
        return false;
    };
    let mut words = line.split_whitespace();
    words.next() == Some("files") && !words.next().is_some_and(|w| w.starts_with('['))
}

/// Name → (uid, gid) of every line, the first line of a name winning; `None` when any
/// line is not plain (see the module doc).
fn parse(text: &str) -> Option<Lines> {
    let mut lines = Lines::default();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        let [name, _, uid, gid, _, _, _] = fields.as_slice() else {
            return None;
        };
        // Why no leading zero: "0100" is uid 100 to glibc but not the text "100".
        let number = |s: &str| -> Option<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            if s.len() > 1 && s.starts_with('0') {
                return None;
            }
            s.parse().ok()
        };
        let (uid, gid) = (number(uid)?, number(gid)?);
        if !plain_name(name) {
            return None;
        }
        lines
            .by_name
            .entry((*name).to_owned())
            .or_insert((uid, gid));
        lines
            .by_uid
            .entry(uid)
            .or_default()
            .push(((*name).to_owned(), gid));
    }
    Some(lines)
}

/// A name no reader can take for anything else: letters, digits, `_`, `.`, `-` (not
/// first), an optional final `$` (Samba machine accounts), within [`check_name`]'s bounds.
/// Why this strict: glibc skips leading blanks and treats `+`/`-` entries specially in some
/// back ends; a name outside this set turns the index off rather than guess.
fn plain_name(name: &str) -> bool {
    let body = name.strip_suffix('$').unwrap_or(name);
    let mut bytes = body.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    first_ok
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && check_name(name).is_ok()
}

/// The index over the machine's `/etc/passwd`.
pub static LOCAL: LazyLock<PasswdIndex> =
    LazyLock::new(|| PasswdIndex::new("/etc/passwd".into(), "/etc/nsswitch.conf".into()));

#[cfg(test)]
mod tests {
    use super::*;

    fn index(passwd: &str, nsswitch: &str) -> (tempfile::TempDir, PasswdIndex) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("passwd"), passwd).unwrap();
        std::fs::write(dir.path().join("nsswitch.conf"), nsswitch).unwrap();
        let ix = PasswdIndex::new(dir.path().join("passwd"), dir.path().join("nsswitch.conf"));
        (dir, ix)
    }

    const FILES: &str = "# comment\npasswd:         files systemd\ngroup: files\n";

    #[test]
    fn plain_lines_are_answered_first_one_winning() {
        let (_d, ix) = index(
            "root:x:0:0:root:/root:/bin/bash\n# a comment\n\nalice:x:1000:100::/home/a:/bin/sh\nalice:x:0:0::/:/bin/sh\nhost1$:x:2000:100::/:/bin/false\nfirst.last-2:x:1001:100::/:/bin/sh\n",
            FILES,
        );
        assert_eq!(ix.get("host1$").unwrap().uid, 2000);
        assert_eq!(ix.get("first.last-2").unwrap().uid, 1001);
        let a = ix.get("alice").unwrap();
        assert_eq!((a.name.as_str(), a.uid, a.gid), ("alice", 1000, 100));
        assert_eq!(ix.get("root").unwrap().uid, 0);
        assert!(ix.get("bob").is_none(), "absence is NSS's to answer");
        // By uid: the first line of the uid, as getpwuid; every name of it, in file order.
        let r = ix.get_uid(0).unwrap();
        assert_eq!((r.name.as_str(), r.gid), ("root", 0));
        assert_eq!(ix.names_of(0, 64).unwrap(), ["root", "alice"]);
        assert_eq!(ix.names_of(0, 1).unwrap(), ["root"]);
        assert_eq!(ix.get_uid(1000).unwrap().gid, 100);
        assert!(ix.get_uid(4242).is_none(), "absence is NSS's to answer");
        assert_eq!(ix.names_of(4242, 64).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn any_line_glibc_might_read_otherwise_turns_the_index_off() {
        for odd in [
            " mallory:x:0:0::/:/bin/sh",
            "mallory:x:0:0::/",
            "mallory:x:0:0::/:/bin/sh:extra",
            "mallory:x:+0:0::/:/bin/sh",
            "mallory:x: 0:0::/:/bin/sh",
            "mallory:x:0x0:0::/:/bin/sh",
            "mallory:x:99999999999:0::/:/bin/sh",
            "+mallory::::::",
            "-@netgroup::::::",
            "mal lory:x:0:0::/:/bin/sh",
            "mallory :x:0:0::/:/bin/sh",
            "-mallory:x:0:0::/:/bin/sh",
            "mallory:x:00:0::/:/bin/sh",
        ] {
            let (_d, ix) = index(
                &format!("root:x:0:0:root:/root:/bin/bash\n{odd}\nalice:x:1000:100::/:/bin/sh\n"),
                FILES,
            );
            assert!(ix.get("alice").is_none(), "{odd:?} must turn the index off");
            assert!(ix.get("root").is_none(), "{odd:?} must turn the index off");
            assert!(ix.get_uid(0).is_none(), "{odd:?} must turn the index off");
            assert!(
                ix.names_of(0, 64).is_none(),
                "{odd:?} must turn the index off"
            );
        }
    }

    #[test]
    fn only_files_first_without_an_action_lets_the_index_answer() {
        let passwd = "alice:x:1000:100::/:/bin/sh\n";
        for (conf, answers) in [
            ("passwd: files\n", true),
            ("passwd: files systemd\n", true),
            ("passwd:\tfiles # local first\n", true),
            ("passwd: sss files\n", false),
            ("passwd: compat\n", false),
            ("passwd: files [SUCCESS=continue] ldap\n", false),
            ("passwd: files\npasswd: ldap files\n", false),
            ("passwd: ldap files\npasswd: files\n", false),
            ("# passwd: files\n", false),
            ("group: files\n", false),
        ] {
            let (_d, ix) = index(passwd, conf);
            assert_eq!(ix.get("alice").is_some(), answers, "{conf:?}");
        }
    }

    #[test]
    fn a_changed_file_is_read_again() {
        let (d, ix) = index("alice:x:1000:100::/:/bin/sh\n", FILES);
        assert_eq!(ix.get("alice").unwrap().uid, 1000);
        // As useradd/userdel do: a new file renamed over the old one.
        std::fs::write(d.path().join("passwd.new"), "alice:x:1001:100::/:/bin/sh\n").unwrap();
        std::fs::rename(d.path().join("passwd.new"), d.path().join("passwd")).unwrap();
        assert_eq!(ix.get("alice").unwrap().uid, 1001);
        // An edit in place.
        std::fs::write(d.path().join("passwd"), "bob:x:1002:100::/:/bin/sh\n").unwrap();
        assert!(ix.get("alice").is_none());
        assert_eq!(ix.get("bob").unwrap().uid, 1002);
        // nsswitch.conf changed to put another source first.
        std::fs::write(d.path().join("nsswitch.conf"), "passwd: ldap files\n").unwrap();
        assert!(ix.get("bob").is_none());
        // No passwd file: NSS answers.
        std::fs::remove_file(d.path().join("passwd")).unwrap();
        assert!(ix.get("bob").is_none());
    }
}
