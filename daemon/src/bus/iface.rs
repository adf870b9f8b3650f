// SPDX-License-Identifier: MIT OR Apache-2.0
//! The served interfaces. Each method: identify the caller, run the core off the bus
//! executor (the store fsyncs), map the error.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Semaphore;
use zbus::message::Header;
use zbus::zvariant::{OwnedValue, Value};

use twostep_proto::{Step, WireStep};
use zeroize::Zeroizing;

use super::rate::{left_out, LogThrottle, RateLimit};
use super::Identify;
use crate::core::admin::{Action, UserInfo};
use crate::core::clock_trouble::ClockNote;
use crate::core::engine::LoginContext;
use crate::core::policy::Override;
use crate::core::selfservice::PendingInfo;
use crate::core::services;
use crate::core::state::{AuthenticatorInfo, UserState};
use crate::core::{clock, Caller, Core, Error as CoreError};
use twostep_proto::status_key as key;
use twostep_proto::{limits, repair_key, Error, PendingEnrollment, Properties};

/// Core calls running at once; further calls get `Busy` instead of queueing forever.
const MAX_IN_FLIGHT: usize = 64;
/// Calls in flight on one connection (root included): a PAM transaction or a twostepctl
/// run makes one at a time, so one connection cannot take the whole pool.
const MAX_IN_FLIGHT_PER_CONNECTION: usize = 4;
/// Calls in flight per non-root uid.
const MAX_IN_FLIGHT_PER_UID: usize = 8;

/// Calls in flight per connection and per non-root uid.
#[derive(Default)]
struct InFlight {
    by_sender: HashMap<String, usize>,
    by_uid: HashMap<u32, usize>,
}

/// One admitted call; its counts are released on drop (when the method returns).
pub(super) struct Slot {
    table: Arc<Mutex<InFlight>>,
    sender: String,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = t.by_sender.get_mut(&self.sender) {
            *n -= 1;
            if *n == 0 {
                t.by_sender.remove(&self.sender);
            }
        }
        if let Some(n) = t.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                t.by_uid.remove(&self.uid);
            }
        }
    }
}

#[derive(Clone)]
pub(super) struct Shared {
    core: Arc<Core>,
    identify: Identify,
    in_flight: Arc<Semaphore>,
    per_caller: Arc<Mutex<InFlight>>,
    rate: Arc<RateLimit>,
    /// Rate-limited calls are logged once per uid and interval (`rate::LogThrottle`).
    quiet: Arc<LogThrottle>,
    /// On a peer-to-peer connection of the login endpoint: the caller, identified by
    /// `SO_PEERCRED` when it connected (see `bus::peer`). `None` on the bus.
    peer: Option<Caller>,
    /// With `peer`: the pid `SO_PEERCRED` reported at `connect` (the process that
    /// connected), for a remember window's audit session (`core::services`) as the bus's
    /// `GetConnectionUnixProcessID` gives it there.
    peer_pid: Option<u32>,
}

impl Shared {
    /// The caller, identified by the bus, within its call rate and its calls in flight
    /// (per connection, and per uid unless root); the slot is held until the method returns.
    pub(super) async fn caller(&self, hdr: &Header<'_>) -> Result<(Caller, Slot), Error> {
        let caller = match &self.peer {
            Some(peer) => peer.clone(),
            None => self.identify.caller(hdr).await?,
        };
        let now = std::time::Instant::now();
        if !self.rate.admit(caller.uid, now) {
            if let Some(n) = self.quiet.admit(caller.uid, now) {
                log::warn!(
                    "caller_uid={} outcome=rate-limited{}",
                    caller.uid,
                    left_out(n)
                );
            }
            return Err(Error::Busy("too many calls; slow down".into()));
        }
        let mut t = self
            .per_caller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let on_conn = t.by_sender.get(&caller.sender).copied().unwrap_or(0);
        let of_uid = t.by_uid.get(&caller.uid).copied().unwrap_or(0);
        if on_conn >= MAX_IN_FLIGHT_PER_CONNECTION
            || (caller.uid != 0 && of_uid >= MAX_IN_FLIGHT_PER_UID)
        {
            return Err(Error::Busy("too many calls in flight; slow down".into()));
        }
        *t.by_sender.entry(caller.sender.clone()).or_insert(0) += 1;
        *t.by_uid.entry(caller.uid).or_insert(0) += 1;
        drop(t);
        let slot = Slot {
            table: Arc::clone(&self.per_caller),
            sender: caller.sender.clone(),
            uid: caller.uid,
        };
        Ok((caller, slot))
    }

    /// Run `f` on the blocking pool, bounded by [`MAX_IN_FLIGHT`]; on a login-endpoint
    /// connection, on that connection's own task (see `bus::peer`).
    pub(super) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> Result<T, crate::core::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Error::Busy("too many requests in flight".into()))?;
        if self.peer.is_some()
            && tokio::runtime::Handle::current().runtime_flavor()
                == tokio::runtime::RuntimeFlavor::MultiThread
        {
            // A login-endpoint connection's task runs the core itself: its calls come one
            // at a time and its reply waits for this anyway; `block_in_place` hands this
            // worker's other tasks to another thread meanwhile. A panic becomes the same
            // error as a panic on the blocking pool.
            let _permit = permit;
            let core = &self.core;
            return match tokio::task::block_in_place(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(core)))
            }) {
                Ok(r) => r.map_err(Error::from),
                Err(_) => Err(Error::Unavailable("internal error".into())),
            };
        }
        let core = Arc::clone(&self.core);
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&core)
        })
        .await;
        match joined {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Unavailable("internal error".into())),
        }
    }
}

/// `org.twostep.Login1`: for modules before Login2. Same core, same sessions; a step this
/// interface cannot carry ends in `NeedsNewerModule`.
pub struct LoginIface(Shared);
/// `org.twostep.Login2`: steps with answer shapes named by form.
pub struct Login2Iface(Shared);
pub struct UserIface(Shared);
/// The admin interface also knows the config file, for `Reload`.
pub struct AdminIface(Shared, PathBuf);

impl Shared {
    /// `Begin` of both login interfaces: the session token and the first step.
    pub(super) async fn begin_login(
        &self,
        hdr: &Header<'_>,
        user: String,
        context: HashMap<String, String>,
    ) -> Result<(String, Step), Error> {
        let (caller, _slot) = self.caller(hdr).await?;
        let mut ctx = LoginContext::from_map(&context)?;
        // A remember window is keyed by the caller's audit session too (core::services):
        // one more bus call, only where a window can apply.
        if caller.uid == 0 && services::remembers(&self.core.config(), &ctx.service) {
            let pid = match self.peer {
                Some(_) => self.peer_pid,
                None => self.identify.process_id(hdr).await,
            };
            // No pid, or a session that cannot be read: no window at all (not a weaker key).
            ctx.audit_session = match pid {
                None => Some(services::SESSION_UNKNOWN),
                Some(p) => services::audit_session(p),
            };
        }
        self.run(move |core| core.begin_login(&caller, &user, ctx, clock::now()))
            .await
    }

    /// `Answer` of both login interfaces: the next step.
    pub(super) async fn answer_login(
        &self,
        hdr: &Header<'_>,
        session: String,
        answer: Vec<u8>,
    ) -> Result<Step, Error> {
        let (caller, _slot) = self.caller(hdr).await?;
        if session.len() > limits::MAX_SESSION_LEN {
            return Err(Error::NoSession("no such login session".into()));
        }
        let answer = Zeroizing::new(answer);
        self.run(move |core| core.answer(&caller, &session, &answer, clock::now()))
            .await
    }
}

/// A step on Login1, or `NeedsNewerModule` when that interface cannot carry it. The old
/// module does not know that error name and fails closed with its text in its log line;
/// it is never sent a verdict the daemon did not reach.
fn login1_step(step: &Step) -> Result<WireStep, Error> {
    step.to_wire().map_err(|e| {
        log::warn!(
            "outcome=needs-newer-module a login step has a shape {} cannot carry; the \
             caller's pam_twostep predates {}",
            twostep_proto::LOGIN_INTERFACE,
            twostep_proto::LOGIN2_INTERFACE
        );
        Error::NeedsNewerModule(e.to_string())
    })
}

#[zbus::interface(name = "org.twostep.Login1")]
impl LoginIface {
    /// Open a login conversation for `user`: `(session, kind, message, prompt, digits)`.
    async fn begin(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        context: HashMap<String, String>,
    ) -> Result<(String, String, String, String, u32), Error> {
        let (id, step) = self.0.begin_login(&hdr, user, context).await?;
        let (kind, message, prompt, digits) = login1_step(&step)?;
        Ok((id, kind, message, prompt, digits))
    }

    /// Answer the current prompt: `(kind, message, prompt, digits)`.
    async fn answer(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        session: String,
        answer: Vec<u8>,
    ) -> Result<(String, String, String, u32), Error> {
        let step = self.0.answer_login(&hdr, session, answer).await?;
        login1_step(&step)
    }
}

// The reply types are spelled out as tuples (not `WireStep2`) so that the introspection
// data lists them as separate out arguments, as the message bodies carry them.
#[zbus::interface(name = "org.twostep.Login2")]
impl Login2Iface {
    /// Open a login conversation for `user`:
    /// `(session, kind, message, prompt, digits, max, echo)`.
    async fn begin(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        context: HashMap<String, String>,
    ) -> Result<(String, String, String, String, u32, u32, bool), Error> {
        let (id, step) = self.0.begin_login(&hdr, user, context).await?;
        let (kind, message, prompt, digits, max, echo) = step.to_wire2();
        Ok((id, kind, message, prompt, digits, max, echo))
    }

    /// Answer the current prompt: `(kind, message, prompt, digits, max, echo)`.
    async fn answer(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        session: String,
        answer: Vec<u8>,
    ) -> Result<(String, String, String, u32, u32, bool), Error> {
        let step = self.0.answer_login(&hdr, session, answer).await?;
        Ok(step.to_wire2())
    }
}

#[zbus::interface(name = "org.twostep.User1")]
impl UserIface {
    /// Start enrolment, or with `proof` move to a new authenticator.
    async fn enroll_begin(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        proof: Vec<u8>,
    ) -> Result<PendingEnrollment, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        let p = self
            .0
            .run(move |core| core.enroll_begin(&caller, &proof, clock::now()))
            .await?;
        Ok(pending_enrollment(p))
    }

    /// Confirm the pending key; returns recovery codes on a first enrolment.
    async fn enroll_confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        code: Vec<u8>,
    ) -> Result<Vec<String>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let code = Zeroizing::new(code);
        let codes = self
            .0
            .run(move |core| core.enroll_confirm(&caller, &code, clock::now()))
            .await?;
        Ok(codes.iter().map(|c| c.to_string()).collect())
    }

    /// New recovery codes; the old ones die at once.
    async fn regenerate_recovery_codes(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        proof: Vec<u8>,
    ) -> Result<Vec<String>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        let codes = self
            .0
            .run(move |core| core.regenerate_recovery(&caller, &proof, clock::now()))
            .await?;
        Ok(codes.iter().map(|c| c.to_string()).collect())
    }

    /// Switch 2FA off for the caller.
    async fn disable(&self, #[zbus(header)] hdr: Header<'_>, proof: Vec<u8>) -> Result<(), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        self.0
            .run(move |core| core.disable(&caller, &proof, clock::now()))
            .await
    }

    /// The calling user's state.
    async fn status(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Properties, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let s = self
            .0
            .run(move |core| core.status(&caller, clock::now()))
            .await?;
        let mut m = Props::default();
        m.put_state(s);
        Ok(m.0)
    }

    /// Start adding an authenticator called `name`; `proof` is a current code of any of the
    /// caller's authenticators or a recovery code.
    async fn authenticator_add(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        proof: Vec<u8>,
    ) -> Result<PendingEnrollment, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        let p = self
            .0
            .run(move |core| core.authenticator_add(&caller, &name, &proof, clock::now()))
            .await?;
        Ok(pending_enrollment(p))
    }

    /// Confirm the authenticator being added as `name` with a current code of it.
    async fn authenticator_confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        code: Vec<u8>,
    ) -> Result<(), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let code = Zeroizing::new(code);
        self.0
            .run(move |core| core.authenticator_confirm(&caller, &name, &code, clock::now()))
            .await
    }

    /// The caller's authenticators: name, added, last used (0 = never).
    async fn authenticator_list(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<(String, u64, u64)>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let list = self
            .0
            .run(move |core| core.authenticators(&caller, clock::now()))
            .await?;
        Ok(authenticator_tuples(list))
    }

    /// Remove the authenticator `name`; `proof` is a code of another one or a recovery code.
    async fn authenticator_remove(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        name: String,
        proof: Vec<u8>,
    ) -> Result<(), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let proof = Zeroizing::new(proof);
        self.0
            .run(move |core| core.authenticator_remove(&caller, &name, &proof, clock::now()))
            .await
    }
}

fn pending_enrollment(mut p: PendingInfo) -> PendingEnrollment {
    PendingEnrollment {
        // Taken, not copied: no unwiped copy stays behind.
        secret_base32: std::mem::take(&mut p.secret_base32),
        otpauth_uri: std::mem::take(&mut p.uri),
        algorithm: p.algorithm.to_owned(),
        digits: u32::from(p.digits),
        period: u32::try_from(p.period).unwrap_or(u32::MAX),
        expires_at: p.expires.0,
    }
}

fn authenticator_tuples(list: Vec<AuthenticatorInfo>) -> Vec<(String, u64, u64)> {
    list.into_iter()
        .map(|a| (a.name, a.added, a.last_used))
        .collect()
}

#[derive(Default)]
struct Props(Properties);

impl Props {
    fn put<'a>(&mut self, k: &str, v: impl Into<Value<'a>>) {
        if let Ok(v) = OwnedValue::try_from(v.into()) {
            self.0.insert(k.to_owned(), v);
        }
    }

    /// The keys of [`key::STATUS`], from the one user summary.
    fn put_state(&mut self, s: UserState) {
        self.put(key::ENROLLED, s.enrolled);
        self.put(key::PENDING_ENROLLMENT, s.pending);
        self.put(key::RECOVERY_CODES_LEFT, count(s.recovery_left));
        self.put(key::REQUIRED, s.required);
        self.put(key::MAY_TOGGLE, s.may_toggle);
        self.put(key::FAILURES, s.failures);
        self.put(key::LOCKED_UNTIL, s.locked_until);
        self.put(key::LAST_SUCCESS, s.last_success);
        self.put(key::LAST_FAILURE, s.last_failure);
        self.put(key::AUTHENTICATORS, authenticator_tuples(s.authenticators));
        self.put(key::EMAIL, s.email);
        self.put(key::EMAIL_PENDING, s.email_pending);
        self.put_clock(s.clock.unwrap_or_default());
        self.put(key::APP_PASSWORD_FAILURES, s.app_password_failures);
        self.put(key::APP_PASSWORD_LOCKED_UNTIL, s.app_password_locked_until);
    }

    /// The `clock_*` keys (0 / empty: nothing seen).
    fn put_clock(&mut self, c: ClockNote) {
        let skew = c.skew.as_ref();
        let steps = skew.map_or(0, |s| s.steps);
        let period = skew.map_or(0, |s| i64::try_from(s.period).unwrap_or(i64::MAX));
        self.put(key::CLOCK_SKEW, steps);
        self.put(key::CLOCK_SKEW_SECONDS, steps.saturating_mul(period));
        self.put(key::CLOCK_SKEW_TIMES, skew.map_or(0, |s| s.times));
        self.put(key::CLOCK_SKEW_SEEN, skew.map_or(0, |s| s.last_seen.0));
        self.put(
            key::CLOCK_SKEW_AUTHENTICATOR,
            skew.map(|s| s.authenticator.clone()).unwrap_or_default(),
        );
        let back = c.backwards.as_ref();
        self.put(key::CLOCK_BACK, back.map_or(0, |b| b.by_secs));
        self.put(key::CLOCK_BACK_SEEN, back.map_or(0, |b| b.last_seen.0));
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// One record event as a dict of [`twostep_proto::event_key`].
fn event_props(e: crate::core::record::Event) -> Properties {
    use twostep_proto::event_key as ek;
    let mut m = Props::default();
    m.put(ek::AT, e.at.0);
    m.put(ek::WHAT, e.what);
    m.put(ek::KIND, e.kind.name());
    m.put(ek::SERVICE, e.service);
    m.put(ek::RHOST, e.rhost);
    m.put(ek::TTY, e.tty);
    m.put(ek::METHOD, e.method);
    m.put(ek::ACTOR, e.actor);
    if let Some(uid) = e.actor_uid {
        m.put(ek::ACTOR_UID, uid);
    }
    if let Some(uid) = e.caller_uid {
        m.put(ek::CALLER_UID, uid);
    }
    m.0
}

fn user_props(u: UserInfo, with_events: bool) -> Properties {
    let mut m = Props::default();
    m.put(key::USER, u.name);
    m.put(key::UID, u.uid);
    m.put(key::ENROLLED_AS, u.enrolled_as);
    m.put_state(u.state);
    m.put(key::WHY, u.why);
    m.put(key::OVERRIDE, u.policy_override);
    m.put(key::ERROR, u.error);
    if with_events {
        let events: Vec<Properties> = u.events.into_iter().map(event_props).collect();
        m.put(key::EVENTS, events);
        if !u.remembered.is_empty() {
            let windows: Vec<(String, String, String, u64)> = u
                .remembered
                .into_iter()
                .map(|(service, rhost, tty, until)| (service, rhost, tty, until.0))
                .collect();
            m.put(key::REMEMBERED, windows);
        }
    }
    m.0
}

#[zbus::interface(name = "org.twostep.Admin1")]
impl AdminIface {
    /// Every user with a record.
    async fn list_users(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Vec<Properties>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let users = self
            .0
            .run(move |core| core.admin_list(&caller, clock::now()))
            .await?;
        Ok(users.into_iter().map(|u| user_props(u, false)).collect())
    }

    /// Users the policy requires who have not enrolled yet (the roll-out view).
    async fn list_pending(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<Vec<Properties>, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let users = self
            .0
            .run(move |core| core.admin_pending(&caller, clock::now()))
            .await?;
        Ok(users.into_iter().map(|u| user_props(u, false)).collect())
    }

    /// One user, with the latest events.
    async fn show_user(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<Properties, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let u = self
            .0
            .run(move |core| core.admin_show(&caller, &user, clock::now()))
            .await?;
        Ok(user_props(u, true))
    }

    async fn reset_user(&self, #[zbus(header)] hdr: Header<'_>, user: String) -> Result<(), Error> {
        self.act(&hdr, user, Action::Reset).await
    }

    async fn disable_user(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
    ) -> Result<(), Error> {
        self.act(&hdr, user, Action::Disable).await
    }

    async fn set_requirement(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        requirement: String,
    ) -> Result<(), Error> {
        let o = match requirement.as_str() {
            "required" => Override::Required,
            "exempt" => Override::Exempt,
            "default" => Override::Default,
            _ => {
                return Err(Error::InvalidArgument(
                    "requirement must be required, exempt or default".into(),
                ))
            }
        };
        self.act(&hdr, user, Action::Require(o)).await
    }

    async fn set_may_toggle(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        setting: String,
    ) -> Result<(), Error> {
        let t = match setting.as_str() {
            "allow" => Some(true),
            "deny" => Some(false),
            "default" => None,
            _ => {
                return Err(Error::InvalidArgument(
                    "setting must be allow, deny or default".into(),
                ))
            }
        };
        self.act(&hdr, user, Action::Toggle(t)).await
    }

    async fn unlock(&self, #[zbus(header)] hdr: Header<'_>, user: String) -> Result<(), Error> {
        self.act(&hdr, user, Action::Unlock).await
    }

    /// Re-read the configuration file; an invalid one is refused and the old one stays.
    async fn reload(&self, #[zbus(header)] hdr: Header<'_>) -> Result<(), Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let path = self.1.clone();
        self.0
            .run(move |core| {
                core.reload(&caller, || {
                    let loaded = crate::configfile::load(&path)
                        .map_err(|e| CoreError::InvalidArgument(format!("config refused: {e}")))?;
                    crate::configfile::log_warnings(&loaded);
                    Ok(loaded.config)
                })?;
                core.reload_keys()
            })
            .await
    }

    /// Show a damaged record slot by slot and what a repair writes; with `confirm`, write it.
    async fn repair_user(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        confirm: bool,
    ) -> Result<Properties, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let r = self
            .0
            .run(move |core| core.admin_repair(&caller, &user, confirm, clock::now()))
            .await?;
        let mut m = Props::default();
        m.put(repair_key::PATH, r.path);
        m.put(repair_key::DAMAGE, r.damage);
        m.put(repair_key::SLOTS, r.slots);
        m.put(repair_key::MAY_BE_LOST, r.may_be_lost);
        m.put(repair_key::RESTORED, r.restored);
        m.put(repair_key::WRITTEN, r.written);
        m.put(repair_key::KEPT, r.kept);
        Ok(m.0)
    }

    /// Carry `user`'s enrolment over from another 2FA module (`bus/import.rs`).
    async fn import_enrolment(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        keys: Vec<twostep_proto::ImportKey>,
        codes: Vec<String>,
        replace: bool,
        dry_run: bool,
    ) -> Result<Properties, Error> {
        let (caller, _slot) = self.0.caller(&hdr).await?;
        let imported = super::import::decode(keys, codes)?;
        let r = self
            .0
            .run(move |core| {
                let now = clock::now();
                crate::core::import::import(core, &caller, &user, &imported, replace, dry_run, now)
            })
            .await?;
        Ok(super::import::reply(r))
    }
}

impl AdminIface {
    async fn act(&self, hdr: &Header<'_>, user: String, action: Action) -> Result<(), Error> {
        let (caller, _slot) = self.0.caller(hdr).await?;
        self.0
            .run(move |core| core.admin_act(&caller, &user, action, clock::now()))
            .await
    }
}

/// Serve the interfaces on `conn` and take the well-known name (failing if it is owned).
/// `config_path` is what `Reload` re-reads.
///
/// # Errors
/// The bus refuses the object or the name.
pub async fn serve(
    conn: &zbus::Connection,
    core: Arc<Core>,
    config_path: PathBuf,
) -> zbus::Result<(Identify, super::peer::LoginServing)> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let gone = Arc::clone(&core);
    // Why: a login conversation lives no longer than the connection that began it.
    let identify = Identify::new(dbus).on_gone(move |name| gone.end_connection(name));
    let shared = Shared {
        core,
        identify: identify.clone(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        per_caller: Arc::default(),
        rate: Arc::new(RateLimit::default()),
        quiet: Arc::new(LogThrottle::default()),
        peer: None,
        peer_pid: None,
    };
    let login = super::peer::LoginServing {
        core: Arc::clone(&shared.core),
        shared: shared.clone(),
    };
    let server = conn.object_server();
    server
        .at(twostep_proto::OBJECT_PATH, LoginIface(shared.clone()))
        .await?;
    server
        .at(twostep_proto::OBJECT_PATH, Login2Iface(shared.clone()))
        .await?;
    server
        .at(twostep_proto::OBJECT_PATH, UserIface(shared.clone()))
        .await?;
    server
        .at(
            twostep_proto::OBJECT_PATH,
            super::apppw::AppPasswordIface(shared.clone()),
        )
        .await?;
    server
        .at(
            twostep_proto::OBJECT_PATH,
            super::email::EmailIface(shared.clone()),
        )
        .await?;
    server
        .at(
            twostep_proto::OBJECT_PATH,
            super::store::StoreIface(shared.clone()),
        )
        .await?;
    server
        .at(twostep_proto::OBJECT_PATH, AdminIface(shared, config_path))
        .await?;
    let reply = conn
        .request_name_with_flags(
            twostep_proto::BUS_NAME,
            zbus::fdo::RequestNameFlags::DoNotQueue.into(),
        )
        .await?;
    match reply {
        zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner => {
            Ok((identify, login))
        }
        _ => Err(zbus::Error::NameTaken),
    }
}

/// The shared state for one peer-to-peer connection of the login endpoint for `caller`:
/// the same core, limits (in flight, call rate) and sessions as on the bus; only the caller
/// comes from the socket (see `bus::peer`).
pub(super) fn peer_shared(shared: &Shared, caller: Caller, pid: Option<u32>) -> Shared {
    Shared {
        peer: Some(caller),
        peer_pid: pid,
        ..shared.clone()
    }
}

/// One message on a peer-to-peer connection of the login endpoint (`bus::peer`): `Begin`
/// and `Answer` of `org.twostep.Login1` and `org.twostep.Login2` at
/// [`twostep_proto::OBJECT_PATH`], and `org.freedesktop.DBus.Peer.Ping`, answered with the
/// same bodies and errors as the object server gives them on the bus (the methods above
/// share their code with it); another member of the login interfaces gets `UnknownMethod`,
/// any other interface `UnknownInterface`; a message of another type is dropped.
///
/// Why not zbus's object server on this connection: it hands every call to two more tasks
/// (its dispatcher, then one task per call) before the core runs; here the calls of one
/// PAM transaction come one at a time, read and answered by the connection's own task.
///
/// # Errors
/// Only a reply that could not be sent (the connection is gone).
pub(super) async fn peer_call(
    shared: &Shared,
    conn: &zbus::Connection,
    msg: &zbus::Message,
) -> zbus::Result<()> {
    use twostep_proto::{LOGIN2_INTERFACE, LOGIN_INTERFACE};
    use zbus::message::{Flags, Type};
    let hdr = msg.header();
    if hdr.message_type() != Type::MethodCall {
        return Ok(());
    }
    let at_object = hdr
        .path()
        .is_some_and(|p| p.as_str() == twostep_proto::OBJECT_PATH);
    let interface = hdr.interface().map(|i| i.as_str());
    let member = hdr.member().map(|m| m.as_str());
    let body = msg.body();
    let bad_args = |e: zbus::Error| zbus::fdo::Error::InvalidArgs(e.to_string());
    let reply = match (interface, member) {
        (Some("org.freedesktop.DBus.Peer"), Some("Ping")) => Ok(Reply::Empty),
        (Some(i), Some("Begin"))
            if at_object && (i == LOGIN_INTERFACE || i == LOGIN2_INTERFACE) =>
        {
            match body.deserialize::<(String, HashMap<String, String>)>() {
                Err(e) => Err(bad_args(e)),
                Ok((user, context)) => Ok(match shared.begin_login(&hdr, user, context).await {
                    Err(e) => Reply::Error(e),
                    Ok((id, step)) if i == LOGIN2_INTERFACE => {
                        let (kind, message, prompt, digits, max, echo) = step.to_wire2();
                        Reply::Begin2((id, kind, message, prompt, digits, max, echo))
                    }
                    Ok((id, step)) => match login1_step(&step) {
                        Ok((kind, message, prompt, digits)) => {
                            Reply::Begin1((id, kind, message, prompt, digits))
                        }
                        Err(e) => Reply::Error(e),
                    },
                }),
            }
        }
        (Some(i), Some("Answer"))
            if at_object && (i == LOGIN_INTERFACE || i == LOGIN2_INTERFACE) =>
        {
            match body.deserialize::<(String, Vec<u8>)>() {
                Err(e) => Err(bad_args(e)),
                Ok((session, answer)) => {
                    Ok(match shared.answer_login(&hdr, session, answer).await {
                        Err(e) => Reply::Error(e),
                        Ok(step) if i == LOGIN2_INTERFACE => Reply::Answer2(step.to_wire2()),
                        Ok(step) => match login1_step(&step) {
                            Ok(wire) => Reply::Answer1(wire),
                            Err(e) => Reply::Error(e),
                        },
                    })
                }
            }
        }
        (Some(i), _) if at_object && (i == LOGIN_INTERFACE || i == LOGIN2_INTERFACE) => Err(
            zbus::fdo::Error::UnknownMethod(format!("{i} has no such method")),
        ),
        _ => Err(zbus::fdo::Error::UnknownInterface(format!(
            "{} is not served on the login socket",
            interface.unwrap_or("(no interface)")
        ))),
    };
    if hdr.primary().flags().contains(Flags::NoReplyExpected) {
        return Ok(());
    }
    match reply {
        Ok(Reply::Empty) => conn.reply(&hdr, &()).await,
        Ok(Reply::Begin1(b)) => conn.reply(&hdr, &b).await,
        Ok(Reply::Begin2(b)) => conn.reply(&hdr, &b).await,
        Ok(Reply::Answer1(b)) => conn.reply(&hdr, &b).await,
        Ok(Reply::Answer2(b)) => conn.reply(&hdr, &b).await,
        Ok(Reply::Error(e)) => conn.reply_dbus_error(&hdr, e).await,
        Err(e) => conn.reply_dbus_error(&hdr, e).await,
    }
}

/// The reply bodies of [`peer_call`], as the interfaces above declare them.
enum Reply {
    Empty,
    Begin1((String, String, String, String, u32)),
    Begin2((String, String, String, String, u32, u32, bool)),
    Answer1(WireStep),
    Answer2(twostep_proto::WireStep2),
    Error(Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use twostep_proto::{error_name, Accept, Verdict};
    use zbus::DBusError;

    fn prompt(accept: Accept) -> Step {
        Step::Prompt {
            message: String::new(),
            prompt: "Verification code: ".into(),
            accept,
        }
    }

    #[test]
    fn login1_carries_todays_steps_unchanged() {
        let code = login1_step(&prompt(Accept::Digits { n: 6 })).unwrap();
        assert_eq!(
            code,
            (
                "prompt-code".into(),
                String::new(),
                "Verification code: ".into(),
                6
            )
        );
        let either = login1_step(&prompt(Accept::DigitsOrText {
            n: 8,
            max: twostep_proto::MAX_RECOVERY_LEN,
        }))
        .unwrap();
        assert_eq!(
            (either.0.as_str(), either.3),
            ("prompt-code-or-recovery", 8)
        );
        let ack = login1_step(&prompt(Accept::Acknowledge)).unwrap();
        assert_eq!(ack.0, "prompt-acknowledge");
        let done = login1_step(&Step::Done {
            verdict: Verdict::Locked,
            message: "m".into(),
        })
        .unwrap();
        assert_eq!(done, ("locked".into(), "m".into(), String::new(), 0));
    }

    #[test]
    fn a_step_login1_cannot_carry_is_a_named_error_not_a_verdict() {
        for accept in [
            Accept::Text {
                max: 64,
                echo: true,
            },
            Accept::Text {
                max: 64,
                echo: false,
            },
            Accept::Digits { n: 4 },
            Accept::DigitsOrText { n: 10, max: 64 },
        ] {
            let e = login1_step(&prompt(accept)).unwrap_err();
            assert_eq!(e.name().as_str(), error_name::NEEDS_NEWER_MODULE);
            let Error::NeedsNewerModule(text) = e else {
                panic!("{accept:?}");
            };
            assert!(text.contains("needs a newer pam_twostep"), "{text}");
        }
    }
}
