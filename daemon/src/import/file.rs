// SPDX-License-Identifier: MIT OR Apache-2.0
//! Opening another module's file as root without being tricked: the last path component
//! is never followed if it is a symbolic link (`O_NOFOLLOW`), the checks are made on the
//! opened file itself (`fstat`), a FIFO or device never blocks the read (`O_NONBLOCK`),
//! and at most a bound is read. The original is never written.
//!
//! The rules are those of the module that trusted the file: google-authenticator refuses a
//! `~/.google_authenticator` that is not a regular file, is not owned by the user, or has
//! any permission bit beyond `0600` (its default `allowed_perm`).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use zeroize::Zeroizing;

use super::Skip;

/// What a trusted file looks like.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// The uid that must own it.
    pub owner: u32,
    /// Permission bits (of `0o7777`) it may have; any other bit makes it unsafe.
    pub allowed_mode: u32,
    /// Most bytes read; a larger file is malformed.
    pub max_bytes: usize,
}

/// Why a file could not be opened: missing (nothing to import), or a reason to report.
#[derive(Debug, PartialEq, Eq)]
pub enum Open {
    Missing,
    Skipped(Skip),
}

/// Read the file at `path` if it is what `expect` says.
///
/// # Errors
/// [`Open::Missing`] when there is no such file (or a path component is not a
/// directory); [`Open::Skipped`] with [`Skip::Unsafe`] (a symbolic link, not a regular
/// file, another owner, permissions beyond `allowed_mode`), [`Skip::Unreadable`] or
/// [`Skip::Malformed`] (too large, empty).
pub fn read_checked(path: &Path, expect: Expect) -> Result<Zeroizing<Vec<u8>>, Open> {
    let unreadable = |e: std::io::Error| Open::Skipped(Skip::Unreadable(e.to_string()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => Open::Missing,
            Some(libc::ELOOP) => Open::Skipped(Skip::Unsafe(
                "a symbolic link (the module's own file must be a regular file)".into(),
            )),
            _ => unreadable(e),
        })?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.file_type().is_file() {
        return Err(Open::Skipped(Skip::Unsafe("not a regular file".into())));
    }
    if meta.uid() != expect.owner {
        return Err(Open::Skipped(Skip::Unsafe(format!(
            "owned by uid {}, not by uid {}",
            meta.uid(),
            expect.owner
        ))));
    }
    let mode = meta.mode() & 0o7777;
    if mode & !expect.allowed_mode != 0 {
        return Err(Open::Skipped(Skip::Unsafe(format!(
            "permissions {mode:04o} allow more than {:04o} (group or others may read or \
             change it; the old module refused it too)",
            expect.allowed_mode
        ))));
    }
    let limit = u64::try_from(expect.max_bytes).unwrap_or(u64::MAX);
    if meta.len() == 0 || meta.len() > limit {
        return Err(Open::Skipped(Skip::Malformed(format!(
            "{} bytes: 1 to {} expected",
            meta.len(),
            expect.max_bytes
        ))));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() > expect.max_bytes {
        return Err(Open::Skipped(Skip::Malformed(
            "the file grew while read".into(),
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn expect() -> Expect {
        Expect {
            owner: nix::unistd::geteuid().as_raw(),
            allowed_mode: 0o600,
            max_bytes: 64,
        }
    }

    fn write(dir: &Path, name: &str, body: &[u8], mode: u32) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn skipped(r: Result<Zeroizing<Vec<u8>>, Open>) -> String {
        match r {
            Err(Open::Skipped(s)) => s.to_string(),
            other => panic!("{:?}", other.map(|b| b.len())),
        }
    }

    #[test]
    fn what_the_module_would_refuse_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ok = write(d, "ok", b"SECRET\n", 0o400);
        assert_eq!(read_checked(&ok, expect()).unwrap().as_slice(), b"SECRET\n");
        let ok = write(d, "ok2", b"SECRET\n", 0o600);
        assert!(read_checked(&ok, expect()).is_ok());
        for mode in [0o644, 0o640, 0o604, 0o700, 0o4600] {
            let p = write(d, &format!("m{mode:o}"), b"SECRET\n", mode);
            let e = skipped(read_checked(&p, expect()));
            assert!(e.starts_with("unsafe: permissions"), "{e}");
        }
        std::os::unix::fs::symlink(&ok, d.join("link")).unwrap();
        assert!(skipped(read_checked(&d.join("link"), expect())).contains("symbolic link"));
        assert!(skipped(read_checked(d, expect())).contains("not a regular file"));
        let other = Expect {
            owner: expect().owner + 1,
            ..expect()
        };
        assert!(skipped(read_checked(&ok, other)).contains("owned by uid"));
        let big = write(d, "big", &[b'A'; 65], 0o600);
        assert!(skipped(read_checked(&big, expect())).starts_with("malformed"));
        let empty = write(d, "empty", b"", 0o600);
        assert!(skipped(read_checked(&empty, expect())).starts_with("malformed"));
        assert_eq!(read_checked(&d.join("none"), expect()), Err(Open::Missing));
        assert_eq!(read_checked(&ok.join("x"), expect()), Err(Open::Missing));
        nix::unistd::mkfifo(
            &d.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        assert!(skipped(read_checked(&d.join("fifo"), expect())).contains("not a regular"));
    }
}
