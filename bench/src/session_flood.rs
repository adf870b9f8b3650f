// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 19's session flood: user B (a pool of users, each right code used once) logs in
//! through real libpam in a closed loop while flooding threads, as root, begin login
//! conversations for user A and never answer them — what a script opening `ssh`/`su` logins
//! and hanging up at the code prompt does. Each flooder keeps a ring of open bus connections,
//! begins two conversations on each new one and closes the oldest, so the daemon sees a
//! steady stream of new connections, unanswered prompts and departures. Compared with B alone.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use twostep_proto::LoginProxy;

use crate::flood::{Outcome, Phase};
use crate::users;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub confdir: PathBuf,
    pub service: String,
    pub bus: String,
    pub users: u32,
    pub flooders: usize,
    /// Connections each flooder keeps open.
    pub ring: usize,
    pub seconds: f64,
    pub period: u64,
    pub window: u64,
    pub seed: u64,
}

/// User A is user 0; B's logins use users 1.. (user 0 is kept busy so B never takes it).
///
/// # Errors
/// Shared memory or the runtime failed.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let side = crate::flood::BSide::new(
        &spec.confdir,
        &spec.service,
        spec.users,
        (spec.seconds, spec.period, spec.window, spec.seed),
    )?;
    let claimer = side.claimer();
    let a_name = users::name(0);

    let b_loop = || crate::flood::b_logins(&claimer, &side.confdir, &side.service, spec.seconds);

    let mut phases = Vec::new();
    let (b, rate, failed) = b_loop();
    phases.push(Phase {
        name: "quiet (B alone)".into(),
        b,
        b_per_second: rate,
        b_failed: failed,
        ..Phase::default()
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.flooders.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let begins = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for _ in 0..spec.flooders {
        let (stop, begins, a_name, bus, ring) = (
            Arc::clone(&stop),
            Arc::clone(&begins),
            a_name.clone(),
            spec.bus.clone(),
            spec.ring.max(1),
        );
        handles.push(rt.spawn(async move {
            let mut seen: BTreeMap<String, u64> = BTreeMap::new();
            let mut open: VecDeque<zbus::Connection> = VecDeque::new();
            while !stop.load(Ordering::Relaxed) {
                let conn = match zbus::connection::Builder::address(bus.as_str()) {
                    Ok(b) => b.build().await,
                    Err(e) => Err(e),
                };
                let Ok(conn) = conn else {
                    *seen.entry("connect failed".into()).or_insert(0) += 1;
                    continue;
                };
                if let Ok(proxy) = LoginProxy::new(&conn).await {
                    for _ in 0..2 {
                        let kind = match proxy.begin(&a_name, Default::default()).await {
                            Ok((_, kind, ..)) => format!("prompt ({kind})"),
                            Err(zbus::Error::MethodError(name, _, _)) => name
                                .as_str()
                                .rsplit('.')
                                .next()
                                .unwrap_or_default()
                                .to_owned(),
                            Err(_) => "transport error".into(),
                        };
                        begins.fetch_add(1, Ordering::Relaxed);
                        *seen.entry(kind).or_insert(0) += 1;
                    }
                }
                open.push_back(conn);
                if open.len() > ring {
                    open.pop_front();
                }
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
    let total = begins.load(Ordering::SeqCst);
    phases.push(Phase {
        name: format!(
            "{} root threads begin A's logins and never answer ({} open connections each)",
            spec.flooders, spec.ring
        ),
        b,
        b_per_second: rate,
        b_failed: failed,
        flood_attempts: total,
        flood_per_second: total as f64 / elapsed,
        flood_outcomes: outcomes,
    });
    Ok(Outcome {
        phases,
        touched: side.touched(),
    })
}
