// SPDX-License-Identifier: MIT OR Apache-2.0
//! The module's PAM results are the ones the contract lists
//! (`twostep_proto::module_results`), which `twostepctl doctor` checks stacks against: a code
//! the module can return but doctor does not know about would let a stack that skips the
//! second factor pass the check. Tied both ways, as `args.rs` ties the argument names:
//! every code the module can return is listed (in the right list), and every listed code is
//! one the module returns.
//!
//! Sources of codes: [`pam_code`] over every [`Outcome`] × every argument set that changes
//! it; [`guard`](crate::guard) (a panic); and the hooks and PAM adapters (`lib.rs`,
//! `pam_io.rs`), whose codes are literal `PamResultCode::…` values read from their source.
//! (A code libpam itself hands back from `pam_get_item` is passed through unchanged; it is
//! libpam's, not ours.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use pam::constants::PamResultCode;
use twostep_proto::{module_results, Verdict};

use crate::args::{FailMode, ModuleArgs};
use crate::flow::{fails_open, pam_code, Absence, BadAnswer, DaemonError, ErrorName, Outcome};

/// libpam's token name of a code: `PAM_AUTH_ERR` → `auth_err`.
fn token(code: &PamResultCode) -> String {
    let name = format!("{code:?}");
    name.strip_prefix("PAM_")
        .unwrap_or_else(|| panic!("{name} is not a PAM_ name"))
        .to_ascii_lowercase()
}

/// Every outcome, one of each shape. [`listed`] makes the compiler refuse this file when a
/// variant is added anywhere in the outcome's tree until it is added here.
fn every_outcome() -> Vec<Outcome> {
    let mut all: Vec<Outcome> = [
        Verdict::Success,
        Verdict::Denied,
        Verdict::Locked,
        Verdict::NotEnrolled,
    ]
    .into_iter()
    .map(Outcome::Verdict)
    .collect();
    all.extend(
        [BadAnswer::Empty, BadAnswer::TooLong, BadAnswer::Shape]
            .into_iter()
            .map(Outcome::BadAnswer),
    );
    all.extend(Absence::ALL.into_iter().map(Outcome::Absent));
    all.push(Outcome::Daemon(DaemonError::Unanswered("no reply".into())));
    all.push(Outcome::Daemon(DaemonError::WrongOwner { uid: 1000 }));
    all.push(Outcome::Daemon(DaemonError::Protocol("odd reply".into())));
    all.extend(
        [
            ErrorName::AccessDenied,
            ErrorName::UnknownUser,
            ErrorName::InvalidArgument,
            ErrorName::Unavailable,
            ErrorName::NoSession,
            ErrorName::Busy,
            ErrorName::NotEnrolled,
            ErrorName::NoPendingEnrollment,
            ErrorName::WrongCode,
            ErrorName::Locked,
        ]
        .into_iter()
        .map(|n| Outcome::Daemon(DaemonError::Refused(n))),
    );
    all.push(Outcome::Conversation);
    all.push(Outcome::TooManySteps);
    for o in &all {
        listed(o);
    }
    all
}

/// Exhaustive on purpose (no `_`): a new variant must be added to [`every_outcome`].
fn listed(o: &Outcome) {
    match o {
        Outcome::Verdict(
            Verdict::Success | Verdict::Denied | Verdict::Locked | Verdict::NotEnrolled,
        )
        | Outcome::BadAnswer(BadAnswer::Empty | BadAnswer::TooLong | BadAnswer::Shape)
        | Outcome::Absent(Absence::NoSocket | Absence::ConnectionRefused | Absence::NoOwner)
        | Outcome::Daemon(
            DaemonError::Unanswered(_)
            | DaemonError::WrongOwner { .. }
            | DaemonError::Protocol(_)
            | DaemonError::Refused(
                ErrorName::AccessDenied
                | ErrorName::UnknownUser
                | ErrorName::InvalidArgument
                | ErrorName::Unavailable
                | ErrorName::NoSession
                | ErrorName::Busy
                | ErrorName::NotEnrolled
                | ErrorName::NoPendingEnrollment
                | ErrorName::WrongCode
                | ErrorName::Locked,
            ),
        )
        | Outcome::Conversation
        | Outcome::TooManySteps => {}
    }
}

/// Every combination of the arguments [`pam_code`] reads (`nullok`, `failmode`).
fn every_args() -> Vec<ModuleArgs> {
    let mut all = Vec::new();
    for nullok in [false, true] {
        for failmode in [FailMode::Closed, FailMode::Open] {
            all.push(ModuleArgs {
                nullok,
                failmode,
                ..ModuleArgs::default()
            });
        }
    }
    all
}

/// The `PamResultCode::PAM_…` values named in a source file before its `mod tests`.
fn literal_codes(source: &str) -> BTreeSet<String> {
    let code = source.split("\nmod tests {").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for (i, _) in code.match_indices("PamResultCode::PAM_") {
        let rest = &code[i + "PamResultCode::PAM_".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        found.insert(name.to_ascii_lowercase());
    }
    found
}

fn set(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn pam_code_returns_only_listed_codes_and_passes_only_a_proven_or_allowed_login() {
    let (failures, passes) = (set(module_results::FAILURES), set(module_results::PASSES));
    for outcome in every_outcome() {
        for args in every_args() {
            let code = token(&pam_code(&outcome, &args));
            let allowed = matches!(outcome, Outcome::Verdict(Verdict::Success))
                || (matches!(outcome, Outcome::Verdict(Verdict::NotEnrolled)) && args.nullok)
                || fails_open(&outcome, &args);
            if allowed {
                assert!(passes.contains(&code), "{outcome:?} {args:?}: {code}");
            } else {
                assert!(failures.contains(&code), "{outcome:?} {args:?}: {code}");
            }
        }
    }
}

#[test]
fn the_contract_lists_exactly_the_codes_the_module_returns() {
    let mut returned = BTreeSet::new();
    for outcome in every_outcome() {
        for args in every_args() {
            returned.insert(token(&pam_code(&outcome, &args)));
        }
    }
    returned.insert(token(&crate::guard("contract_test", || {
        panic!("a deliberate panic")
    })));
    let hooks = literal_codes(include_str!("lib.rs"));
    let adapters = literal_codes(include_str!("pam_io.rs"));
    // The scan finds what it should: the hooks' own codes are there.
    assert!(
        hooks.contains("service_err") && hooks.contains("system_err"),
        "{hooks:?}"
    );
    assert!(adapters.contains("user_unknown"), "{adapters:?}");
    returned.extend(hooks);
    returned.extend(adapters);

    let (failures, passes) = (set(module_results::FAILURES), set(module_results::PASSES));
    assert!(failures.is_disjoint(&passes));
    let listed: BTreeSet<String> = failures.union(&passes).cloned().collect();
    assert_eq!(
        returned, listed,
        "the module's PAM codes (left) and twostep_proto::module_results (right) differ"
    );
}
