// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where the built binaries and the shipped files are.
//!
//! The e2e crate cannot make cargo build another package's binaries (artifact dependencies
//! are unstable), so the workspace must be built first: `cargo build --workspace`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The cargo target profile dir the running test binary lives in: the parent of the
/// parent of `current_exe()` (`target/debug/deps/core-1234` → `target/debug`).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf()
}

/// The repository root (`CARGO_MANIFEST_DIR/..`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn built(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace` first (the e2e tests drive the built \
         twostepd, twostepctl and libpam_twostep.so; cargo does not build them for us)",
        path.display()
    );
    warn_if_stale(&path);
    path
}

/// `target/<profile>/twostepd`.
pub fn twostepd() -> PathBuf {
    built("twostepd")
}

/// `target/<profile>/twostepctl`.
pub fn twostepctl() -> PathBuf {
    built("twostepctl")
}

/// `target/<profile>/libpam_twostep.so`.
pub fn pam_module() -> PathBuf {
    built("libpam_twostep.so")
}

/// The shipped bus policy, `packaging/dbus/org.twostep.Twostep1.conf`.
pub fn bus_policy() -> PathBuf {
    let path = repo_root().join("packaging/dbus/org.twostep.Twostep1.conf");
    assert!(
        path.is_file(),
        "shipped bus policy missing: {}",
        path.display()
    );
    path
}

/// Print a warning once per binary when it is older than the newest source file of the
/// crates it is built from: a stale binary makes an e2e failure very confusing.
fn warn_if_stale(binary: &Path) {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static WARNED: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);
    let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
    if !warned
        .get_or_insert_with(HashSet::new)
        .insert(binary.to_path_buf())
    {
        return;
    }
    let Ok(built_at) = binary.metadata().and_then(|m| m.modified()) else {
        return;
    };
    let root = repo_root();
    let newest = ["config", "daemon", "pam_module"]
        .iter()
        .filter_map(|d| newest_rs(&root.join(d)))
        .max();
    if let Some((changed_at, file)) = newest {
        if changed_at > built_at {
            eprintln!(
                "warning: {} is older than {}: run `cargo build --workspace` again",
                binary.display(),
                file.display()
            );
        }
    }
}

fn newest_rs(dir: &Path) -> Option<(SystemTime, PathBuf)> {
    let mut best: Option<(SystemTime, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
            } else if p.extension().is_some_and(|x| x == "rs" || x == "toml") {
                if let Ok(m) = meta.modified() {
                    if best.as_ref().is_none_or(|(t, _)| m > *t) {
                        best = Some((m, p));
                    }
                }
            }
        }
    }
    best
}
