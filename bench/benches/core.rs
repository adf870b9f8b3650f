// SPDX-License-Identifier: MIT OR Apache-2.0
//! `cargo bench -p twostep-bench`: the daemon's verification core — TOTP check (right and
//! wrong code, window 1 and 10) and recovery-code check at the configured argon2id cost —
//! calling `twostepd::core::{totp, recovery}` directly. Prints the median time per call.
//! The same figures appear in BENCHMARKS.md (`./scripts/bench`).

fn main() {
    // `cargo test --benches` runs bench targets with `--bench`-less arguments; keep it quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    match twostep_bench::micro::core(if quick { 1 } else { 3 }) {
        Ok(results) => {
            for m in results {
                println!(
                    "{:<70} {:>12.2} µs/call  ({} calls)",
                    m.name, m.micros, m.calls
                );
            }
        }
        Err(e) => {
            eprintln!("core benchmark: {e}");
            std::process::exit(1);
        }
    }
}
