// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 5's fairness benchmark: one process (this one) and the daemon. User B (a pool of
//! users, each right code used once) logs in through real libpam in a closed loop while
//! several threads flood user A with wrong codes — first directly over persistent bus
//! connections (the cheapest attempts an attacker with root can make), then through libpam
//! and the module (one bus connection per attempt, as sshd brute force would). A locks after
//! `max_failures`; from then on the flood meets the locked path. Compared with B alone.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use twostep_proto::LoginProxy;

use crate::driver::{unix_now, Claimer, Mode, Spec as DriverSpec};
use crate::shm::{Shared, UserState};
use crate::stats::Summary;
use crate::{otp, pam, users, verify};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub confdir: PathBuf,
    pub service: String,
    pub bus: String,
    pub users: u32,
    pub flooders: usize,
    pub seconds: f64,
    pub period: u64,
    pub window: u64,
    pub seed: u64,
}

/// One phase: B's latencies and what the flood did meanwhile.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub b: Summary,
    pub b_per_second: f64,
    pub b_failed: usize,
    pub flood_attempts: u64,
    pub flood_per_second: f64,
    /// What A's attempts got: final kinds, error names or PAM codes.
    pub flood_outcomes: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub phases: Vec<Phase>,
    pub touched: Vec<u32>,
}

/// User A is user 0; B's logins use users 1.. (user 0 is kept busy so B never takes it).
///
/// # Errors
/// Shared memory, the runtime or a connection failed.
/// What user B's side of a flood needs: user A is user 0, kept busy so B never takes it;
/// B's logins claim users 1.. through the driver's claimer, with right codes.
pub struct BSide {
    shared: Shared,
    secrets: Vec<[u8; otp::SECRET_BYTES]>,
    dspec: DriverSpec,
    /// The PAM configuration directory and service, as libpam takes them.
    pub confdir: CString,
    pub service: CString,
}

impl BSide {
    /// For `users` users of the bench's state; `timing` = (seconds, period, window, seed).
    ///
    /// # Errors
    /// Shared memory failed, or a path holds a NUL byte.
    pub fn new(
        confdir: &std::path::Path,
        service: &str,
        users: u32,
        timing: (f64, u64, u64, u64),
    ) -> Result<BSide, String> {
        let (seconds, period, window, seed) = timing;
        let n = usize::try_from(users).map_err(|e| e.to_string())?;
        let shared = Shared::new(n, 0)?;
        shared.user(0).store(UserState::BUSY, Ordering::SeqCst);
        Ok(BSide {
            shared,
            secrets: (0..users).map(otp::secret_for).collect(),
            dspec: DriverSpec {
                confdir: confdir.to_path_buf(),
                service: service.to_owned(),
                users,
                right: true,
                mode: Mode::Threads,
                workers: 1,
                max_logins: 0,
                seconds,
                min_logins: 0,
                warmup: 0,
                period,
                window,
                wrong_budget: 0,
                seed,
                baseline: false,
                more_services: Vec::new(),
                offset: 0,
                as_user: false,
            },
            confdir: CString::new(confdir.as_os_str().as_encoded_bytes())
                .map_err(|e| e.to_string())?,
            service: CString::new(service).map_err(|e| e.to_string())?,
        })
    }

    /// The users that had at least one attempt, A (user 0) included.
    pub fn touched(&self) -> Vec<u32> {
        let mut touched = self.shared.touched();
        touched.push(0);
        touched
    }

    /// The claimer B's logins take users from (one for all of B's phases).
    pub fn claimer(&self) -> Claimer<'_> {
        Claimer::new(&self.shared, &self.secrets, true, &self.dspec)
    }
}

/// User B's side of a flood: a closed loop of right-code logins through libpam for
/// `seconds`, users claimed from `claimer`. Returns B's latency summary, logins per second
/// and how many were refused.
pub fn b_logins(
    claimer: &Claimer<'_>,
    confdir: &CString,
    service: &CString,
    seconds: f64,
) -> (Summary, f64, usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut nanos = Vec::new();
    let mut failed = 0;
    let start = Instant::now();
    while Instant::now() < deadline {
        let Some(claim) = claimer.claim() else { break };
        let name =
            CString::new(users::name(u32::try_from(claim.user).unwrap_or(0))).unwrap_or_default();
        let out = pam::login(confdir, service, &name, &claim.code);
        claimer.release(claim.user);
        if out.code != pam::PAM_SUCCESS {
            failed += 1;
        }
        nanos.push(u64::try_from(out.elapsed.as_nanos()).unwrap_or(u64::MAX));
    }
    let rate = nanos.len() as f64 / start.elapsed().as_secs_f64();
    (Summary::from_nanos(&mut nanos), rate, failed)
}

pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let side = BSide::new(
        &spec.confdir,
        &spec.service,
        spec.users,
        (spec.seconds, spec.period, spec.window, spec.seed),
    )?;
    let claimer = side.claimer();
    let (confdir, service) = (&side.confdir, &side.service);
    let a_name = users::name(0);
    let a_secret = otp::secret_for(0);
    let (period, window) = (spec.period, spec.window);
    let wrong_for_a = move |nonce: u64| {
        let cur = unix_now() / period;
        otp::wrong_code(
            &a_secret,
            cur.saturating_sub(window + 1),
            cur + window + 1,
            nonce,
        )
    };

    // B: a closed loop of PAM logins for `seconds`.
    let b_loop = || b_logins(&claimer, confdir, service, spec.seconds);

    let mut phases = Vec::new();

    let (b, rate, failed) = b_loop();
    phases.push(Phase {
        name: "quiet (B alone)".into(),
        b,
        b_per_second: rate,
        b_failed: failed,
        ..Phase::default()
    });

    // Flood over persistent bus connections, from a runtime of `flooders` threads.
    {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(spec.flooders.max(1))
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for f in 0..spec.flooders {
            let conn = rt
                .block_on(async {
                    zbus::connection::Builder::address(spec.bus.as_str())?
                        .build()
                        .await
                })
                .map_err(|e| format!("connect: {e}"))?;
            let (stop, attempts, a_name) =
                (Arc::clone(&stop), Arc::clone(&attempts), a_name.clone());
            handles.push(rt.spawn(async move {
                let mut seen: BTreeMap<String, u64> = BTreeMap::new();
                let Ok(proxy) = LoginProxy::new(&conn).await else {
                    return seen;
                };
                let mut k = f as u64 * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    k += 1;
                    let kind = verify::login(&proxy, &a_name, &wrong_for_a(k)).await;
                    attempts.fetch_add(1, Ordering::Relaxed);
                    *seen.entry(kind).or_insert(0) += 1;
                }
                seen
            }));
        }
        let t = Instant::now();
        let (b, rate, failed) = b_loop();
        stop.store(true, Ordering::SeqCst);
        let elapsed = t.elapsed().as_secs_f64();
        let mut outcomes = BTreeMap::new();
        for h in handles {
            for (k, v) in rt.block_on(h).unwrap_or_default() {
                *outcomes.entry(k).or_insert(0) += v;
            }
        }
        let total = attempts.load(Ordering::SeqCst);
        phases.push(Phase {
            name: format!(
                "{} threads flood A over persistent bus connections",
                spec.flooders
            ),
            b,
            b_per_second: rate,
            b_failed: failed,
            flood_attempts: total,
            flood_per_second: total as f64 / elapsed,
            flood_outcomes: outcomes,
        });
    }

    // Flood through libpam and the module: one bus connection per attempt.
    {
        let stop = AtomicBool::new(false);
        let attempts = AtomicU64::new(0);
        let a_c = CString::new(a_name.as_str()).map_err(|e| e.to_string())?;
        let (phase, outcomes) = std::thread::scope(|s| {
            let mut hs = Vec::new();
            for f in 0..spec.flooders {
                let (stop, attempts, a_c, confdir, service) =
                    (&stop, &attempts, &a_c, &confdir, &service);
                hs.push(s.spawn(move || {
                    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
                    let mut k = 50_000_000 + f as u64 * 1_000_000;
                    while !stop.load(Ordering::Relaxed) {
                        k += 1;
                        let out = pam::login(confdir, service, a_c, &wrong_for_a(k));
                        attempts.fetch_add(1, Ordering::Relaxed);
                        *seen
                            .entry(format!("PAM_{}", pam::code_name(out.code)))
                            .or_insert(0) += 1;
                    }
                    seen
                }));
            }
            let t = Instant::now();
            let (b, rate, failed) = b_loop();
            stop.store(true, Ordering::SeqCst);
            let elapsed = t.elapsed().as_secs_f64();
            let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
            for h in hs {
                for (k, v) in h.join().unwrap_or_default() {
                    *outcomes.entry(k).or_insert(0) += v;
                }
            }
            let total = attempts.load(Ordering::SeqCst);
            (
                Phase {
                    name: format!(
                        "{} threads flood A through libpam + pam_twostep",
                        spec.flooders
                    ),
                    b,
                    b_per_second: rate,
                    b_failed: failed,
                    flood_attempts: total,
                    flood_per_second: total as f64 / elapsed,
                    flood_outcomes: BTreeMap::new(),
                },
                outcomes,
            )
        });
        phases.push(Phase {
            flood_outcomes: outcomes,
            ..phase
        });
    }
    Ok(Outcome {
        phases,
        touched: side.touched(),
    })
}
