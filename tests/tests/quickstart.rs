// SPDX-License-Identifier: MIT OR Apache-2.0
//! The README's first step on a fresh Debian 12 machine: `scripts/deps` (run by both
//! quick-start commands) names the exact next step when the Rust toolchain is missing or
//! too old (Debian 12's own cargo is 1.63), and the README says the same before the two
//! commands.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::Duration;

use twostep_e2e::{artifacts, proc, unique};

/// The line that installs a toolchain, as both the README and scripts/deps print it.
const RUSTUP: &str = "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal && . \"$HOME/.cargo/env\"";

fn deps(path: &str) -> proc::Output {
    let mut cmd = proc::command(None, artifacts::repo_root().join("scripts/deps"));
    cmd.env("PATH", path);
    proc::run(cmd, b"", Duration::from_secs(600))
}

#[test]
fn deps_names_the_next_step_without_a_toolchain() {
    twostep_e2e::require_root();
    let out = deps("/usr/sbin:/usr/bin:/sbin:/bin");
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("cargo (the Rust toolchain) was not found"),
        "{out}"
    );
    assert!(out.stderr.contains(RUSTUP), "{out}");
}

#[test]
fn deps_refuses_debians_own_cargo_with_the_same_step() {
    twostep_e2e::require_root();
    let dir = unique::temp_dir("oldcargo");
    let cargo = dir.path().join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\necho 'cargo 1.63.0'\n").unwrap();
    unique::chmod(&cargo, 0o755);
    let out = deps(&format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        dir.path().display()
    ));
    assert_eq!(out.status.code(), Some(1), "{out}");
    assert!(
        out.stderr
            .contains("cargo 1.63.0 is too old; twostep needs Rust 1.85"),
        "{out}"
    );
    assert!(out.stderr.contains(RUSTUP), "{out}");
}

#[test]
fn deps_passes_with_the_toolchain_that_built_these_tests() {
    twostep_e2e::require_root();
    let cargo = Path::new(env!("CARGO"));
    let path = format!(
        "{}:/usr/sbin:/usr/bin:/sbin:/bin",
        cargo.parent().unwrap().display()
    );
    deps(&path).assert_success();
}

#[test]
fn readme_says_what_a_fresh_machine_needs_before_the_quick_start() {
    let readme = std::fs::read_to_string(artifacts::repo_root().join("README.md")).unwrap();
    let quick = readme
        .find("./scripts/demo")
        .expect("README has the quick start");
    let needs = readme.find(RUSTUP).expect("README gives the rustup line");
    assert!(
        needs < quick,
        "the toolchain step comes before the two commands"
    );
}
