// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fuzzers' saved inputs, on the stable toolchain, in every `cargo test`: each file of
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` goes through the same entry
//! point as the libFuzzer target of that name (`fuzz/fuzz_targets/<target>.rs`, run on
//! nightly by `scripts/fuzz`). A crash the fuzzers found is saved under `regressions/`, so
//! it is checked here for ever after without nightly. Needs no root.
#![forbid(unsafe_code)]

use std::path::Path;

use twostep_e2e::artifacts::repo_root;

/// A fuzzing entry point: bytes in, a panic on a broken invariant.
type Entry = fn(&[u8]);

/// Every fuzz target and its entry point.
const TARGETS: [(&str, Entry); 10] = [
    ("config", twostepd::fuzzing::config),
    ("record", twostepd::fuzzing::record),
    (
        "google_authenticator",
        twostepd::fuzzing::google_authenticator,
    ),
    ("oath", twostepd::fuzzing::oath),
    ("core_calls", twostepd::fuzzing::core_calls),
    ("module_args", pam_twostep::fuzzing::args),
    ("module_login", pam_twostep::fuzzing::login),
    ("steps", twostep_proto::fuzzing::steps),
    ("bus_frames", pam_twostep::fuzzing::frames),
    ("sasl", pam_twostep::fuzzing::sasl),
];

/// The files of `dir` (none when it does not exist), sorted.
fn inputs(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .map(|e| e.expect("read corpus dir").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_saved_input_passes_its_target() {
    let fuzz = repo_root().join("fuzz");
    let mut declared: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .collect();
    declared.sort();
    let mut mine: Vec<String> = TARGETS.iter().map(|(n, _)| (*n).to_owned()).collect();
    mine.sort();
    assert_eq!(
        declared, mine,
        "every fuzz target is replayed here, and only those"
    );
    for (name, entry) in TARGETS {
        let seeds = inputs(&fuzz.join("seeds").join(name));
        assert!(!seeds.is_empty(), "fuzz/seeds/{name}/ has no input");
        for file in seeds
            .iter()
            .chain(&inputs(&fuzz.join("regressions").join(name)))
        {
            let bytes = std::fs::read(file).expect("read saved input");
            // A panic names the file: the input to debug with `cargo fuzz run`.
            eprintln!("{name}: {}", file.display());
            entry(&bytes);
        }
    }
}

/// The record seeds named `valid-*` are real records, so the record target starts from
/// inputs that reach past the checksums into the JSON.
#[test]
fn the_valid_record_seeds_decode() {
    for file in inputs(&repo_root().join("fuzz/seeds/record")) {
        if !file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("valid-")
        {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        let json = bytes.get(1..).unwrap();
        let whole = twostepd::core::store::file::file_bytes_of_json(json).unwrap();
        if let Err(e) = twostepd::core::store::file::decode(&whole, 1000) {
            panic!("{}: {e}", file.display());
        }
    }
}
