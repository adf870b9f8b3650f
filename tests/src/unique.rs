// SPDX-License-Identifier: MIT OR Apache-2.0
//! Names that cannot collide between parallel tests, parallel test binaries or a previous
//! run that was killed: pid + per-process counter + random suffix.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A few random bytes from the kernel, as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

fn next() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// `<pid>-<counter>-<random>`: unique in this process and across processes.
pub fn token() -> String {
    format!("{}-{}-{}", std::process::id(), next(), random_hex(3))
}

/// A login name for a test user: `ts_<pid>_<counter><random>`, lower case, at most 32
/// characters (Debian's `useradd` NAME_REGEX and `LOGIN_NAME_MAX`).
pub fn user_name() -> String {
    let name = format!("ts_{}_{}{}", std::process::id(), next(), random_hex(2));
    assert!(name.len() <= 32, "user name too long: {name}");
    name
}

/// A fresh temp directory under the system temp dir, mode 0700, removed on drop.
pub fn temp_dir(label: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("twostep-e2e-{}-{label}-", token()))
        .tempdir()
        .expect("create temp dir")
}

/// Set `path`'s permission bits.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}
