// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the daemon trusts on disk (issue 19, fault 7). Nothing it reads for a security
//! decision is used unless only root (or the daemon's own uid) could have written it.
//!
//! The rule, in the manner of sshd's `StrictModes`, for a path the daemon reads (the
//! config file, the state directory):
//!
//! - every directory on the way from `/` to it, and every symbolic link followed on the
//!   way (each hop of each link is walked, not just the final target), is owned by root or
//!   by the daemon's effective uid;
//! - no such directory is writable by group or others, unless it is sticky (`/tmp`): in a
//!   sticky directory only an entry's owner can rename or remove it, and every entry we
//!   pass is owned by root or the daemon, as checked;
//! - the config file itself is a regular file owned by root or the daemon's uid and not
//!   writable by group or others.
//!
//! The state directory and record files have stricter rules of their own (owner exactly the
//! daemon's uid, no bits at all for group or others): see [`super::store`].

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed at most while resolving one path (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The daemon's effective uid.
pub fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Whether `uid` may own something the daemon trusts: root or the daemon itself.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

/// Who may own it, as said in messages.
pub fn expected_owner() -> String {
    match euid() {
        0 => "root".to_owned(),
        uid => format!("root or uid {uid} (this daemon)"),
    }
}

/// `0o644`-style text of a mode's permission bits (with set-id and sticky bits).
pub fn mode_text(mode: u32) -> String {
    format!("{:04o}", mode & 0o7777)
}

/// What a file is, for messages.
pub fn kind_text(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// `path (a directory, owner uid 1000, mode 0775)`.
pub fn describe(path: &Path, meta: &Metadata) -> String {
    format!(
        "{} ({}, owned by uid {}, mode {})",
        path.display(),
        kind_text(meta),
        meta.uid(),
        mode_text(meta.mode())
    )
}

/// A directory on the way to something trusted: owned by a trusted uid and writable by
/// nobody else (unless sticky).
fn check_dir_on_way(path: &Path, meta: &Metadata, target: &Path) -> Result<(), String> {
    let sticky = meta.mode() & 0o1000 != 0;
    let others_write = meta.mode() & 0o022 != 0;
    if !meta.is_dir() || !trusted_owner(meta.uid()) || (others_write && !sticky) {
        return Err(format!(
            "unsafe path to {}: {}; expected every directory on the way to be owned by {} \
             and not writable by group or others (or sticky, like /tmp)",
            target.display(),
            describe(path, meta),
            expected_owner()
        ));
    }
    Ok(())
}

/// Resolve `path` as the kernel would, checking every directory passed and every symbolic
/// link followed. Returns the resolved path (no links left) and the metadata of what it
/// names (not followed: the caller checks its own rules on it).
///
/// # Errors
/// A message naming the unsafe directory or link, its owner and mode, and what is expected;
/// or why the path cannot be resolved (`NotFound` errors of the final component are
/// returned as `Ok(None)` metadata so that a caller may create it).
pub fn resolve(path: &Path) -> Result<(PathBuf, Option<Metadata>), String> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
            .join(path)
    };
    // Components still to walk, the next one last.
    let mut todo: Vec<OsString> = Vec::new();
    push_components(&mut todo, &absolute);
    let mut at = PathBuf::from("/");
    let root = fs::symlink_metadata(&at).map_err(|e| format!("cannot inspect /: {e}"))?;
    check_dir_on_way(&at, &root, path)?;
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name.as_bytes() == b".." {
            // `at` holds no links, so its parent is the real parent.
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let meta = match fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && todo.is_empty() => {
                return Ok((next, None))
            }
            Err(e) => return Err(format!("cannot inspect {}: {e}", next.display())),
        };
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_LINKS {
                return Err(format!("too many symbolic links in {}", path.display()));
            }
            // The link lives in `at`, already checked; who owns the link matters in a
            // sticky directory, so it must be trusted too.
            if !trusted_owner(meta.uid()) {
                return Err(format!(
                    "unsafe path to {}: {} is owned by uid {}, expected {}",
                    path.display(),
                    next.display(),
                    meta.uid(),
                    expected_owner()
                ));
            }
            let target = fs::read_link(&next)
                .map_err(|e| format!("cannot read link {}: {e}", next.display()))?;
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            push_components(&mut todo, &target);
            continue;
        }
        if !todo.is_empty() {
            check_dir_on_way(&next, &meta, path)?;
        }
        at = next;
        if todo.is_empty() {
            return Ok((at, Some(meta)));
        }
    }
    // The path named `/` itself (or ended in `..`).
    let meta =
        fs::symlink_metadata(&at).map_err(|e| format!("cannot inspect {}: {e}", at.display()))?;
    Ok((at, Some(meta)))
}

fn push_components(todo: &mut Vec<OsString>, path: &Path) {
    let mut names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    names.reverse();
    todo.extend(names);
}

/// Check that the configuration file at `path` is safe to believe.
///
/// # Errors
/// A message for the operator naming the path, what it is (owner, mode) and what is
/// expected: a regular file owned by root (or the daemon's uid), not writable by group or
/// others, reached only through safe directories and links.
pub fn check_config_file(path: &Path) -> Result<(), String> {
    let (resolved, meta) = resolve(path)?;
    let Some(meta) = meta else {
        return Err(format!("{}: no such file", path.display()));
    };
    if !meta.is_file() || !trusted_owner(meta.uid()) || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "unsafe configuration file {}: expected a regular file owned by {}, not writable \
             by group or others (mode 0644 or stricter)",
            describe(&resolved, &meta),
            expected_owner()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use twostep_config::Config;

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn config_in(dir: &Path) -> PathBuf {
        let p = dir.join("twostep.toml");
        fs::write(&p, "version = 1\n").unwrap();
        chmod(&p, 0o644);
        p
    }

    fn root_test() -> tempfile::TempDir {
        // Why root: only root can hand files to another uid (CI runs tests as root).
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let d = tempfile::tempdir().unwrap();
        chmod(d.path(), 0o755);
        d
    }

    #[test]
    fn a_root_owned_private_config_is_trusted() {
        let d = root_test();
        let p = config_in(d.path());
        check_config_file(&p).unwrap();
        chmod(&p, 0o600);
        check_config_file(&p).unwrap();
        assert_eq!(Config::load(&p).unwrap(), Config::default());
    }

    #[test]
    fn a_writable_or_foreign_config_is_refused_with_path_owner_and_mode() {
        let d = root_test();
        let p = config_in(d.path());
        for mode in [0o664, 0o646, 0o666] {
            chmod(&p, mode);
            let e = check_config_file(&p).unwrap_err();
            assert!(e.contains(&p.display().to_string()), "{e}");
            assert!(e.contains(&format!("mode {mode:04o}")), "{e}");
            assert!(e.contains("owned by root"), "{e}");
            assert!(check_config_file(&p).is_err());
        }
        chmod(&p, 0o644);
        std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
        let e = check_config_file(&p).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
    }

    #[test]
    fn an_unsafe_directory_or_link_on_the_way_is_refused() {
        let d = root_test();
        let sub = d.path().join("etc");
        fs::create_dir(&sub).unwrap();
        let p = config_in(&sub);
        // Group-writable parent.
        chmod(&sub, 0o775);
        let e = check_config_file(&p).unwrap_err();
        assert!(
            e.contains(&sub.display().to_string()) && e.contains("0775"),
            "{e}"
        );
        // Parent owned by someone else.
        chmod(&sub, 0o755);
        std::os::unix::fs::chown(&sub, Some(65534), None).unwrap();
        let e = check_config_file(&p).unwrap_err();
        assert!(e.contains("owned by uid 65534"), "{e}");
        std::os::unix::fs::chown(&sub, Some(0), None).unwrap();
        check_config_file(&p).unwrap();

        // A link from a safe place through an unsafe one: every hop is checked.
        let open = d.path().join("open");
        fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        symlink(&p, open.join("hop")).unwrap();
        let link = d.path().join("link.toml");
        symlink(open.join("hop"), &link).unwrap();
        let e = check_config_file(&link).unwrap_err();
        assert!(e.contains(&open.display().to_string()), "{e}");
        // A link in a safe place to a safe file is fine, relative or absolute.
        let good = d.path().join("good.toml");
        symlink("etc/../etc/twostep.toml", &good).unwrap();
        check_config_file(&good).unwrap();
        // A sticky world-writable directory (like /tmp) is fine for root's entries only.
        chmod(&open, 0o1777);
        check_config_file(&link).unwrap();
        let foreign = open.join("foreign");
        symlink(&p, &foreign).unwrap();
        std::os::unix::fs::lchown(&foreign, Some(65534), None).unwrap();
        let e = check_config_file(&foreign).unwrap_err();
        assert!(e.contains("uid 65534"), "{e}");
    }

    #[test]
    fn not_a_file_is_refused() {
        let d = root_test();
        let e = check_config_file(d.path()).unwrap_err();
        assert!(e.contains("a directory"), "{e}");
        let e = check_config_file(&d.path().join("missing.toml")).unwrap_err();
        assert!(e.contains("no such file"), "{e}");
    }
}
