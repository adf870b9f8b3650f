// SPDX-License-Identifier: MIT OR Apache-2.0
//! Wrong code against right code, paired and interleaved (issue 18): is a wrong code at most
//! as dear as a right one, and how large is the noise?
//!
//! # How
//! One run against one daemon, one forked process per login through libpam and the module
//! (as the login driver in procs mode, one worker). Each **round** makes three logins in an
//! order drawn at random per round from the six orders: a right code (`right`), another
//! right code (`right2`, for the A/A control) and a wrong code (`wrong`), each for a
//! different user. So the two arms of every comparison see the same moments of the machine,
//! and no arm always runs first or after the other. The three users are claimed in another
//! random order per round, so no arm gets its own share of user histories (first or third
//! right code of a user, right after a wrong one). The report compares `wrong` with `right`
//! round by round ([`crate::stats::paired_median_diff`]), and `right2` with `right` the same
//! way: what noise alone gives.
//!
//! Users and codes come from the driver's [`Claimer`]s on one shared user state: right codes
//! take each user's time steps in ascending order (replay protection lets each through once),
//! wrong codes at most `wrong_budget` per user (below the lockout), right and wrong attempts
//! counted together.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::driver::{self, ClaimSpec, Claimer};
use crate::otp;
use crate::pam;
use crate::shm::Shared;
use crate::stats::SplitMix;
use crate::users;

/// What a paired run does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub confdir: PathBuf,
    pub service: String,
    /// Users `0..users` take part.
    pub users: u32,
    /// Stop after this long, or after `warmup + max_rounds` rounds.
    pub seconds: f64,
    pub max_rounds: usize,
    /// Rounds at the start that are not kept.
    pub warmup: usize,
    pub period: u64,
    pub window: u64,
    pub wrong_budget: u64,
    pub seed: u64,
}

/// One round's three logins: latencies in nanoseconds, and the order they ran in
/// (`order[i]` is 0 for `right`, 1 for `right2`, 2 for `wrong`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Round {
    pub right: u64,
    pub right2: u64,
    pub wrong: u64,
    pub order: [u8; 3],
}

/// What a paired run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// The rounds kept (after the warm-up).
    pub rounds: Vec<Round>,
    pub warmup: usize,
    /// `right SUCCESS`, `wrong AUTH_ERR`, … over the kept rounds.
    pub codes: BTreeMap<String, usize>,
    /// Kept logins whose result was not the expected one (success for right codes,
    /// `AUTH_ERR` for wrong ones).
    pub unexpected: usize,
    /// `count`, `time` or `codes` (no user had a usable code left).
    pub stopped: String,
    /// Users that had at least one attempt (reset before the next run).
    pub touched: Vec<u32>,
}

/// The six orders of a round's three logins.
const ORDERS: [[u8; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];

/// Run `spec`. Single-threaded (each login is a forked child).
///
/// # Errors
/// Shared memory failed, a name is not a C string, or a child could not be made.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let n = usize::try_from(spec.users).map_err(|e| e.to_string())?;
    let shared = Shared::new(n, 0)?;
    let secrets: Vec<[u8; otp::SECRET_BYTES]> = (0..spec.users).map(otp::secret_for).collect();
    let names: Vec<CString> = (0..spec.users)
        .map(|i| CString::new(users::name(i)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let confdir =
        CString::new(spec.confdir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let service = CString::new(spec.service.as_str()).map_err(|e| e.to_string())?;
    let c = ClaimSpec {
        period: spec.period,
        window: spec.window,
        wrong_budget: spec.wrong_budget,
        seed: spec.seed,
    };
    let right = Claimer::with(&shared, &secrets, true, c);
    let wrong = Claimer::with(&shared, &secrets, false, c);
    let mut rng = SplitMix(spec.seed ^ 0x9a17_ed00);
    let deadline = Instant::now() + Duration::from_secs_f64(spec.seconds);
    let mut out = Outcome::default();
    let mut kept = 0usize;
    let stopped = loop {
        if kept >= spec.max_rounds {
            break "count";
        }
        if Instant::now() >= deadline {
            break "time";
        }
        // Three users at once: each is busy until its login is done, so they differ. Why the
        // claims in a random order too: users are handed out along one permutation, so a
        // fixed order would give each arm its own share of user histories (with 100 users,
        // one right arm got most of the first right code after a wrong one, and the A/A
        // control showed it: −45 µs, band clear of 0).
        let claim_order = ORDERS[usize::try_from(rng.next_u64() % 6).unwrap_or(0)];
        let mut claims: [Option<driver::Claim>; 3] = [None, None, None];
        for &arm in &claim_order {
            let a = usize::from(arm);
            claims[a] = if a == 2 { wrong.claim() } else { right.claim() };
        }
        let [Some(c0), Some(c1), Some(c2)] = claims else {
            for c in claims.iter().flatten() {
                right.release(c.user);
            }
            break "codes";
        };
        let claims = [c0, c1, c2];
        let order = ORDERS[usize::try_from(rng.next_u64() % 6).unwrap_or(0)];
        let mut nanos = [0u64; 3];
        let mut rcs = [-1i32; 3];
        for &arm in &order {
            let a = usize::from(arm);
            let claim = &claims[a];
            let got = driver::forked(None, || {
                let o = pam::login(&confdir, &service, &names[claim.user], &claim.code);
                (
                    u64::try_from(o.elapsed.as_nanos()).unwrap_or(u64::MAX),
                    o.code,
                )
            });
            right.release(claim.user);
            let (ns, rc) = got.ok_or("a login's child process failed")?;
            nanos[a] = ns;
            rcs[a] = rc;
        }
        if out.warmup < spec.warmup {
            out.warmup += 1;
            continue;
        }
        for (a, rc) in rcs.iter().enumerate() {
            let label = if a == 2 { "wrong" } else { "right" };
            let want = if a == 2 { 7 } else { pam::PAM_SUCCESS }; // 7: PAM_AUTH_ERR
            *out.codes
                .entry(format!("{label} {}", pam::code_name(*rc)))
                .or_insert(0) += 1;
            if *rc != want {
                out.unexpected += 1;
            }
        }
        out.rounds.push(Round {
            right: nanos[0],
            right2: nanos[1],
            wrong: nanos[2],
            order,
        });
        kept += 1;
    };
    out.stopped = stopped.to_owned();
    out.touched = shared.touched();
    Ok(out)
}

/// Pairs of latencies in milliseconds, `(a, b)` from one round.
pub type Pairs = Vec<(f64, f64)>;

/// The rounds as `(right, wrong)` and `(right, right2)` pairs in milliseconds: the paired
/// comparison and its A/A control.
pub fn pairs(rounds: &[Round]) -> (Pairs, Pairs) {
    let ms = |ns: u64| ns as f64 / 1e6;
    rounds
        .iter()
        .map(|r| ((ms(r.right), ms(r.wrong)), (ms(r.right), ms(r.right2))))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_order_is_a_permutation_and_all_six_are_there() {
        let mut seen = std::collections::BTreeSet::new();
        for o in ORDERS {
            let mut s = o;
            s.sort_unstable();
            assert_eq!(s, [0, 1, 2]);
            seen.insert(o);
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn pairs_are_in_milliseconds_right_first() {
        let r = Round {
            right: 2_000_000,
            right2: 2_500_000,
            wrong: 1_000_000,
            order: [2, 0, 1],
        };
        let (main, control) = pairs(&[r]);
        assert_eq!(main, vec![(2.0, 1.0)]);
        assert_eq!(control, vec![(2.0, 2.5)]);
    }
}
