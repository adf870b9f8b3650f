// SPDX-License-Identifier: MIT OR Apache-2.0
//! The login driver: K workers (threads of one process, or processes that fork one child
//! per login, as sshd does) run PAM transactions against one service until a count, a time
//! limit, or the supply of usable codes runs out.
//!
//! # Which user and which code
//! Replay protection lets each right code through once per user: a user's logins take time
//! steps in ascending order, from `now − window` up to `now + window` (what an authenticator
//! app showing a later code would send), and a user is never in two logins at once (an
//! earlier step arriving after a later one would be a replay). Users are visited in a
//! pseudo-random order that differs per run. A wrong-code login takes a code that matches
//! no step within `window + 1` of now; each user gets at most `wrong_budget` of them per run
//! so that no module's lockout or rate limit is reached (a locked account is a different,
//! cheaper path, measured apart by the flood benchmark).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::otp;
use crate::pam;
use crate::shm::{monotonic_nanos, Shared, UserState};
use crate::stats::Summary;
use crate::users;

/// Threads of one process, or one forked process per login.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Threads,
    Procs,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Threads => "threads",
            Mode::Procs => "procs",
        }
    }
}

/// What a driver run does.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub confdir: PathBuf,
    pub service: String,
    /// Users `0..users` take part.
    pub users: u32,
    /// Right codes (true) or wrong codes.
    pub right: bool,
    pub mode: Mode,
    pub workers: usize,
    pub max_logins: usize,
    /// Run for this long, or longer (up to 4×) until `min_logins` are measured.
    pub seconds: f64,
    #[serde(default)]
    pub min_logins: usize,
    /// Logins at the start that are not counted (connections, caches, lazily started threads).
    pub warmup: usize,
    pub period: u64,
    pub window: u64,
    pub wrong_budget: u64,
    pub seed: u64,
    /// pam_permit: every result is as expected (it accepts anything).
    #[serde(default)]
    pub baseline: bool,
    /// Further services (daemons of one fleet on other buses): logins go to `service` and
    /// these in turn. A user is never in two logins at once, whichever service.
    #[serde(default)]
    pub more_services: Vec<String>,
    /// The users taking part are `offset..offset + users` (names, uids, secrets); `touched`
    /// names them by that index too.
    #[serde(default)]
    pub offset: u32,
    /// Procs mode only: each login's child takes the user's uid (and the bench users' gid)
    /// before `pam_start`, as a screen locker asks for its own user: the daemon sees a
    /// non-root caller.
    #[serde(default)]
    pub as_user: bool,
}

/// What a driver run measured.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Logins measured (after the warm-up).
    pub logins: usize,
    pub warmup: usize,
    /// PAM result names and how often each came back (measured logins only).
    pub codes: BTreeMap<String, usize>,
    /// Logins whose result was what the path expects: success for right codes, a refusal
    /// (`AUTH_ERR`) for wrong ones.
    pub expected: usize,
    pub unexpected: usize,
    /// Logins per second over the measured part.
    pub per_second: f64,
    pub latency: Summary,
    /// `count`, `time` or `codes` (no user had a usable code left).
    pub stopped: String,
    /// Users that had at least one attempt (their state is reset before the next run).
    pub touched: Vec<u32>,
}

/// Run `spec` and return what it measured.
///
/// # Errors
/// Shared memory or fork failed.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let users = usize::try_from(spec.users).map_err(|e| e.to_string())?;
    let shared = Shared::new(users, spec.max_logins)?;
    let ids = spec.offset..spec.offset + spec.users;
    let names: Vec<CString> = ids
        .clone()
        .map(|i| CString::new(users::name(i)).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let secrets: Vec<[u8; otp::SECRET_BYTES]> = ids.map(otp::secret_for).collect();
    let confdir =
        CString::new(spec.confdir.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string())?;
    let services: Vec<CString> = std::iter::once(&spec.service)
        .chain(&spec.more_services)
        .map(|s| CString::new(s.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let ctx = Ctx {
        spec,
        shared: &shared,
        claimer: Claimer::new(&shared, &secrets, spec.right, spec),
        names: &names,
        confdir: &confdir,
        services: &services,
        deadline: Instant::now() + Duration::from_secs_f64(spec.seconds),
        hard_deadline: Instant::now() + Duration::from_secs_f64(spec.seconds * 4.0),
    };
    match spec.mode {
        Mode::Threads => std::thread::scope(|s| {
            for _ in 0..spec.workers {
                s.spawn(|| ctx.work(|user, code| ctx.login(user, code)));
            }
        }),
        Mode::Procs => run_processes(&ctx)?,
    }
    Ok(summarize(spec, &shared))
}

struct Ctx<'a> {
    spec: &'a Spec,
    shared: &'a Shared,
    claimer: Claimer<'a>,
    names: &'a [CString],
    confdir: &'a CString,
    /// The services logins go to, in turn (one unless a fleet is measured).
    services: &'a [CString],
    /// `seconds` elapsed: stop once `min_logins` were measured.
    deadline: Instant,
    /// Four times that: stop regardless.
    hard_deadline: Instant,
}

/// A claimed login: which user, which code.
pub struct Claim {
    pub user: usize,
    pub code: [u8; 6],
}

/// What a [`Claimer`] needs: TOTP period (s) and window (steps either side), wrong codes
/// per user per run, and the seed of the user order.
#[derive(Clone, Copy, Debug)]
pub struct ClaimSpec {
    pub period: u64,
    pub window: u64,
    pub wrong_budget: u64,
    pub seed: u64,
}

/// Hands out (user, code) pairs as described in the module comment.
pub struct Claimer<'a> {
    pub shared: &'a Shared,
    pub secrets: &'a [[u8; otp::SECRET_BYTES]],
    pub right: bool,
    pub period: u64,
    pub window: u64,
    pub wrong_budget: u64,
    pub seed: u64,
    stride: u64,
}

impl<'a> Claimer<'a> {
    pub fn new(
        shared: &'a Shared,
        secrets: &'a [[u8; otp::SECRET_BYTES]],
        right: bool,
        spec: &Spec,
    ) -> Claimer<'a> {
        let c = ClaimSpec {
            period: spec.period,
            window: spec.window,
            wrong_budget: spec.wrong_budget,
            seed: spec.seed,
        };
        Claimer::with(shared, secrets, right, c)
    }

    /// [`Claimer::new`] with the parameters alone: `spec` gives `period`, `window`,
    /// `wrong_budget` and `seed`.
    pub fn with(
        shared: &'a Shared,
        secrets: &'a [[u8; otp::SECRET_BYTES]],
        right: bool,
        spec: ClaimSpec,
    ) -> Claimer<'a> {
        Claimer {
            shared,
            secrets,
            right,
            period: spec.period,
            window: spec.window,
            wrong_budget: spec.wrong_budget,
            seed: spec.seed,
            stride: stride_for(shared.users(), spec.seed),
        }
    }

    /// The next user with a usable code, marked busy; None after two full passes without one.
    pub fn claim(&self) -> Option<Claim> {
        let h = self.shared.header();
        let n = self.shared.users() as u64;
        for _ in 0..2 * n {
            let k = h.pick.fetch_add(1, Ordering::SeqCst);
            let user =
                usize::try_from(self.seed.wrapping_add(k.wrapping_mul(self.stride)) % n).ok()?;
            if let Some(code) = self.try_user(user, k) {
                return Some(Claim { user, code });
            }
        }
        None
    }

    /// Claim `user` (index into the shared states and secrets), if it has a usable code.
    pub fn try_user(&self, user: usize, nonce: u64) -> Option<[u8; 6]> {
        let word = self.shared.user(user);
        let v = word.load(Ordering::SeqCst);
        if v & UserState::BUSY != 0 {
            return None;
        }
        let attempts = UserState::attempts(v);
        let now = unix_now();
        let cur = now / self.period;
        // Why: in the last two seconds of a step, the oldest step in the window expires
        // before the login reaches the module; do not hand it out then.
        let margin = u64::from(now % self.period + 2 >= self.period);
        let secret = &self.secrets[user];
        let (step, code) = if self.right {
            let last = v & UserState::STEP_MASK;
            let lo = cur.saturating_sub(self.window) + margin;
            let step = if last == 0 { lo } else { (last + 1).max(lo) };
            if step > cur + self.window {
                return None;
            }
            (step, otp::code(secret, step))
        } else {
            if attempts >= self.wrong_budget {
                return None;
            }
            let lo = cur.saturating_sub(self.window + 1);
            let code = otp::wrong_code(secret, lo, cur + self.window + 1, nonce ^ self.seed);
            (v & UserState::STEP_MASK, code)
        };
        let new = UserState::BUSY
            | ((attempts + 1).min(UserState::ATTEMPT_MASK) << UserState::ATTEMPT_SHIFT)
            | (step & UserState::STEP_MASK);
        word.compare_exchange(v, new, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| code)
    }

    pub fn release(&self, user: usize) {
        self.shared
            .user(user)
            .fetch_and(!UserState::BUSY, Ordering::SeqCst);
    }
}

impl Ctx<'_> {
    fn stop(&self, why: u32) {
        let h = self.shared.header();
        if h.stop.swap(1, Ordering::SeqCst) == 0 {
            h.why.store(why, Ordering::SeqCst);
        }
    }

    /// The worker loop; `login` performs one login and returns (latency, PAM code), or None
    /// when the login could not be run at all.
    fn work(&self, login: impl Fn(usize, &[u8; 6]) -> Option<(u64, i32)>) {
        let h = self.shared.header();
        while h.stop.load(Ordering::SeqCst) == 0 {
            let now = Instant::now();
            let measured = usize::try_from(h.started.load(Ordering::SeqCst))
                .unwrap_or(usize::MAX)
                .saturating_sub(self.spec.warmup);
            if (now >= self.deadline && measured >= self.spec.min_logins)
                || now >= self.hard_deadline
            {
                self.stop(2);
                break;
            }
            let Some(claim) = self.claimer.claim() else {
                self.stop(3);
                break;
            };
            let i = usize::try_from(h.started.fetch_add(1, Ordering::SeqCst)).unwrap_or(usize::MAX);
            if i >= self.shared.slots() {
                self.claimer.release(claim.user);
                self.stop(1);
                break;
            }
            if let Some((nanos, code)) = login(claim.user, &claim.code) {
                let slot = self.shared.slot(i);
                slot.nanos.store(nanos, Ordering::SeqCst);
                slot.code.store(code, Ordering::SeqCst);
                slot.finish.store(monotonic_nanos(), Ordering::SeqCst);
                slot.done.store(1, Ordering::SeqCst);
            }
            self.claimer.release(claim.user);
            if i + 1 >= self.shared.slots() {
                self.stop(1);
            }
        }
    }

    fn login(&self, user: usize, code: &[u8; 6]) -> Option<(u64, i32)> {
        // The login's number picks the service: round robin over the fleet's daemons.
        let n = self.shared.header().started.load(Ordering::SeqCst);
        let service = self
            .services
            .get(usize::try_from(n).unwrap_or(0) % self.services.len().max(1))?;
        let out = pam::login(self.confdir, service, &self.names[user], code);
        Some((
            u64::try_from(out.elapsed.as_nanos()).unwrap_or(u64::MAX),
            out.code,
        ))
    }
}

/// K worker processes, each forking one child per login (the child runs the PAM
/// transaction and writes its result into shared memory).
fn run_processes(ctx: &Ctx<'_>) -> Result<(), String> {
    let mut workers = Vec::new();
    for _ in 0..ctx.spec.workers {
        // SAFETY: this process is single-threaded here (the driver runs as its own process
        // and has started no thread), so the child may do anything.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            ctx.stop(3);
            break;
        }
        if pid == 0 {
            ctx.work(|user, code| fork_one(ctx, user, code));
            // SAFETY: leave the worker without running destructors or atexit handlers that
            // belong to the parent (the shared mapping stays the parent's to unmap).
            unsafe { libc::_exit(0) };
        }
        workers.push(pid);
    }
    for pid in workers {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    if ctx.shared.header().why.load(Ordering::SeqCst) == 0 {
        return Err("no worker process could be started".into());
    }
    Ok(())
}

/// One login in a fresh child process; returns what the child measured.
fn fork_one(ctx: &Ctx<'_>, user: usize, code: &[u8; 6]) -> Option<(u64, i32)> {
    let uid = ctx
        .spec
        .as_user
        .then(|| users::UID_BASE + ctx.spec.offset + u32::try_from(user).unwrap_or(0));
    forked(uid, || ctx.login(user, code).unwrap_or((0, -1)))
}

/// Run `login` in a fresh child process (as the user `as_uid`, with the bench users' gid and
/// no supplementary groups, when given) and return the (latency in ns, PAM code) it
/// measured; `None` when the child could not be made or wrote nothing. Call only from a
/// single-threaded process.
pub fn forked(as_uid: Option<u32>, login: impl FnOnce() -> (u64, i32)) -> Option<(u64, i32)> {
    // The child writes (latency, code) to a pipe; the worker stores it in the slot.
    let mut fds = [0i32; 2];
    // SAFETY: a valid two-element out array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: the caller is single-threaded (see above).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        // SAFETY: closing our own descriptors.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        return None;
    }
    if pid == 0 {
        if let Some(uid) = as_uid {
            // SAFETY: plain system calls in the single-threaded child; if either fails the
            // child leaves at once without a login.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(users::GID) != 0
                    || libc::setuid(uid) != 0
                {
                    libc::_exit(1);
                }
            }
        }
        let (nanos, rc) = login();
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&nanos.to_le_bytes());
        buf[8..].copy_from_slice(&rc.to_le_bytes());
        // SAFETY: writing 12 bytes from a live buffer to our pipe, then leaving at once.
        unsafe {
            libc::write(fds[1], buf.as_ptr().cast(), buf.len());
            libc::_exit(0);
        }
    }
    // SAFETY: the parent's copy of the write end is not needed.
    unsafe { libc::close(fds[1]) };
    let mut buf = [0u8; 12];
    // SAFETY: reading at most 12 bytes into a live buffer.
    let got = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), buf.len()) };
    let mut status = 0;
    // SAFETY: our descriptor and our child.
    unsafe {
        libc::close(fds[0]);
        libc::waitpid(pid, &mut status, 0);
    }
    if got != 12 {
        return None;
    }
    let nanos = u64::from_le_bytes(buf[..8].try_into().ok()?);
    let rc = i32::from_le_bytes(buf[8..].try_into().ok()?);
    Some((nanos, rc))
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A stride coprime to `n`, so `seed + k·stride mod n` visits every user once per pass.
fn stride_for(n: usize, seed: u64) -> u64 {
    let n = n.max(1) as u64;
    let mut s = (seed | 1).wrapping_mul(0x9E37_79B9) % n.max(2);
    s = s.max(1);
    while gcd(s, n) != 1 {
        s += 1;
    }
    s
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn summarize(spec: &Spec, shared: &Shared) -> Outcome {
    let mut results = shared.results();
    let warmup = spec.warmup.min(results.len().saturating_sub(1));
    let measured = results.split_off(warmup);
    let mut nanos: Vec<u64> = measured.iter().map(|r| r.nanos).collect();
    let mut codes = BTreeMap::new();
    let mut expected = 0;
    for r in &measured {
        *codes.entry(pam::code_name(r.code).to_owned()).or_insert(0) += 1;
        let ok = if spec.baseline {
            true
        } else if spec.right {
            r.code == pam::PAM_SUCCESS
        } else {
            r.code == 7 // PAM_AUTH_ERR
        };
        if ok {
            expected += 1;
        }
    }
    // Throughput over the measured part: from the last warm-up login's finish to the last finish.
    let mut finishes: Vec<u64> = results.iter().chain(&measured).map(|r| r.finish).collect();
    finishes.sort_unstable();
    let per_second = if measured.len() >= 2 && finishes.len() > warmup {
        let start = if warmup > 0 {
            finishes[warmup - 1]
        } else {
            finishes[0]
        };
        let end = finishes[finishes.len() - 1];
        let counted = if warmup > 0 {
            measured.len()
        } else {
            measured.len() - 1
        };
        if end > start {
            counted as f64 / ((end - start) as f64 / 1e9)
        } else {
            0.0
        }
    } else {
        0.0
    };
    let stopped = match shared.header().why.load(Ordering::SeqCst) {
        1 => "count",
        2 => "time",
        3 => "codes",
        _ => "?",
    };
    Outcome {
        logins: measured.len(),
        warmup,
        expected,
        unexpected: measured.len() - expected,
        codes,
        per_second,
        latency: Summary::from_nanos(&mut nanos),
        stopped: stopped.to_owned(),
        touched: shared
            .touched()
            .into_iter()
            .map(|i| i + spec.offset)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strides_visit_everyone() {
        for n in [1usize, 2, 100, 10_000, 99_991] {
            for seed in [0u64, 1, 12345] {
                let s = stride_for(n, seed);
                assert_eq!(gcd(s, n as u64), 1, "n={n} s={s}");
            }
        }
        let n = 100u64;
        let s = stride_for(100, 7);
        let mut seen: Vec<u64> = (0..n).map(|k| (7 + k * s) % n).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 100);
    }
}
