// SPDX-License-Identifier: MIT OR Apache-2.0
//! Login conversations: how one begins and is answered ([`begin`], [`answer`], the
//! enrolment grace period), what each waits for, their bounds, and their end with their bus
//! connection. The verify step is `verify`; the texts and steps are `messages`.
//!
//! Conversations are bounded per bus connection, per account and in all, root callers
//! included (`[login]` in the config), and end when their connection leaves the bus.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use twostep_config::{Config, RecoveryMode};
use twostep_proto::{Step, Verdict};

use super::audit::{audit, EventKind, LoginContext, Source};
use super::authz::{self, Caller};
use super::email_flows;
use super::engine::{lock, Core};
use super::enrol_at_login;
use super::lockout::{self, locked_message};
use super::mail::{self, Notice};
use super::messages;
use super::record::{Record, TotpKey};
use super::recovery;
use super::store::Write;
use super::totp::{self, Check};
use super::users::{self, Account};
use super::verify::{self, Checked, Method, Used};

/// Recovery codes left at which the user is mailed that they run low.
pub const RECOVERY_LOW: usize = 2;

/// Where a failed attempt came from, for account mail and the next successful login: the
/// remote host, else the service.
pub(super) fn failure_source(ctx: &LoginContext) -> String {
    match (ctx.rhost.is_empty(), ctx.service.is_empty()) {
        (false, _) => ctx.rhost.clone(),
        (true, false) => format!("{} on this host", ctx.service),
        (true, true) => "-".into(),
    }
}
use super::{Error, UnixTime};

/// Login sessions in flight per non-root caller uid (on top of the `[login]` bounds).
pub(crate) const MAX_SESSIONS_PER_CALLER_UID: usize = 16;
/// Unique names of connections that left the bus, remembered so that a Begin still running
/// when its connection left does not leave a session behind (the bus never re-uses a name):
/// at most this many marks (see [`Sessions::end_connection`] for what happens past it).
pub(crate) const MAX_DEPARTED: usize = 4096;
/// Seconds a departure mark is kept beyond the prompt timeout.
pub(crate) const DEPARTED_MARGIN_SECS: u64 = 60;
/// Sessions that expired unanswered, remembered (id and connection only) so that a late
/// answer is told "the code prompt timed out; start again" instead of a bare failure: at
/// most this many marks, each for at most [`EXPIRED_KEEP_SECS`] (issue 20, item 18).
pub(crate) const MAX_EXPIRED: usize = 4096;
/// Seconds an expiry mark is kept after its session expired.
pub(crate) const EXPIRED_KEEP_SECS: u64 = 86_400;

/// What a session waits for.
pub enum Awaiting {
    /// A code (or recovery code) of the enrolled user.
    Factor,
    /// The first code of a key for enrolment at login (the record's pending enrolment,
    /// `enrol_at_login`); `wrong`: wrong codes typed for it in this login so far.
    EnrolConfirm { key: TotpKey, wrong: u32 },
    /// Enter, after the recovery codes were shown.
    Acknowledge,
    /// An app password (`apppw`); `known`: the name is an account NSS knows.
    AppPassword { known: bool },
    /// At an enrolment at login: `1` (authenticator app) or `2` (email).
    Choose,
    /// At an enrolment at login: the email address.
    EmailAddress,
    /// At an enrolment at login: the code mailed to that address.
    EmailConfirm,
}

/// One login conversation.
pub struct Session {
    pub caller: Caller,
    /// The account, resolved by exact look-up when the session began (the name is the one
    /// the login used).
    pub account: Account,
    pub ctx: LoginContext,
    pub expires: UnixTime,
    pub awaiting: Awaiting,
}

/// The bounds on login conversations, from `[login]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionLimits {
    pub per_connection: usize,
    pub per_user: usize,
    pub total: usize,
}

impl SessionLimits {
    /// The bounds in `c`.
    pub fn from_config(c: &Config) -> SessionLimits {
        let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        SessionLimits {
            per_connection: n(c.login.max_sessions_per_connection.get()),
            per_user: n(c.login.max_sessions_per_user.get()),
            total: n(c.login.max_sessions.get()),
        }
    }
}

/// Whether one more session may begin for `uid` on `caller`'s connection next to `open`
/// (live sessions only). Root callers are bound like everyone: per connection, per target
/// account and in all; non-root callers also per caller uid.
///
/// # Errors
/// [`Error::Busy`] naming the bound that was hit (never a user name).
pub fn admit<'a>(
    open: impl Iterator<Item = (&'a Caller, u32)>,
    caller: &Caller,
    uid: u32,
    limits: SessionLimits,
) -> Result<(), Error> {
    let (mut total, mut connection, mut user, mut caller_uid) = (0, 0, 0, 0);
    for (c, target) in open {
        total += 1;
        connection += usize::from(c.sender == caller.sender);
        user += usize::from(target == uid);
        caller_uid += usize::from(c.uid == caller.uid);
    }
    let busy = |what: &str| {
        Err(Error::Busy(format!(
            "too many login conversations open {what}"
        )))
    };
    if connection >= limits.per_connection {
        return busy("on this connection");
    }
    if user >= limits.per_user {
        return busy("for this account");
    }
    if caller.uid != 0 && caller_uid >= MAX_SESSIONS_PER_CALLER_UID {
        return busy("by this caller");
    }
    if total >= limits.total {
        return busy("in all");
    }
    Ok(())
}

/// The login conversations in flight, and the connections that left the bus.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Session>,
    departed: HashSet<String>,
    /// The marks in `departed`, oldest first, with the time the connection left.
    departed_order: VecDeque<(String, UnixTime)>,
    /// The latest departure time among the marks dropped (by age or by number). A call
    /// that started at or before it stores no session: its connection may be one of the
    /// forgotten ones, so it fails closed (try again) instead.
    forgotten: Option<UnixTime>,
    /// Sessions that expired unanswered: id, the connection's unique name, expiry; oldest
    /// first, at most [`MAX_EXPIRED`], none older than [`EXPIRED_KEEP_SECS`].
    expired: VecDeque<(String, String, UnixTime)>,
}

impl Inner {
    /// Drop expired sessions, keeping a bounded mark of each (see [`MAX_EXPIRED`]).
    fn sweep(&mut self, now: UnixTime) {
        let gone: Vec<String> = self
            .by_id
            .iter()
            .filter(|(_, s)| s.expires <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(s) = self.by_id.remove(&id) {
                self.expired.push_back((id, s.caller.sender, s.expires));
            }
        }
        self.expired
            .retain(|(_, _, at)| at.plus(EXPIRED_KEEP_SECS) >= now);
        while self.expired.len() > MAX_EXPIRED {
            self.expired.pop_front();
        }
    }

    /// Drop expired sessions; refuse a caller whose connection left, or whose call started
    /// before departures this map no longer remembers.
    fn live(&mut self, caller: &Caller, now: UnixTime) -> Result<(), Error> {
        self.sweep(now);
        if self.departed.contains(&caller.sender) {
            return Err(Error::NoSession);
        }
        if self.forgotten.is_some_and(|t| now <= t) {
            return Err(Error::Busy(
                "too many connections came and went during this login; try again".into(),
            ));
        }
        Ok(())
    }

    fn admit(&self, caller: &Caller, uid: u32, limits: SessionLimits) -> Result<(), Error> {
        let open = self.by_id.values().map(|s| (&s.caller, s.account.uid));
        admit(open, caller, uid, limits)
    }
}

impl Sessions {
    /// Whether a session for account `uid` could begin on `caller`'s connection now.
    ///
    /// # Errors
    /// [`Error::NoSession`] when the connection left, [`Error::Busy`] at a bound.
    pub fn room(
        &self,
        caller: &Caller,
        uid: u32,
        limits: SessionLimits,
        now: UnixTime,
    ) -> Result<(), Error> {
        let mut inner = lock(&self.inner);
        inner.live(caller, now)?;
        inner.admit(caller, uid, limits)
    }

    /// Store a new session (checked against the bounds again) and return its id, 128
    /// random bits in hex.
    ///
    /// # Errors
    /// As [`Sessions::room`]; [`Error::Internal`] when the random source fails.
    pub fn open(
        &self,
        session: Session,
        limits: SessionLimits,
        now: UnixTime,
    ) -> Result<String, Error> {
        let mut inner = lock(&self.inner);
        // The connection may have left while this Begin ran: nobody could answer.
        inner.live(&session.caller, now)?;
        inner.admit(&session.caller, session.account.uid, limits)?;
        let mut raw = [0u8; 16];
        getrandom::getrandom(&mut raw)
            .map_err(|e| Error::Internal(format!("random source: {e}")))?;
        let id = hex::encode(raw);
        inner.by_id.insert(id.clone(), session);
        Ok(id)
    }

    /// Take session `id` out, if it is `caller`'s and live.
    ///
    /// # Errors
    /// [`Error::PromptTimedOut`] when it was `caller`'s connection's and expired unanswered
    /// (told once: the mark goes); [`Error::NoSession`] otherwise.
    pub fn take(&self, caller: &Caller, id: &str, now: UnixTime) -> Result<Session, Error> {
        let mut inner = lock(&self.inner);
        inner.sweep(now);
        match inner.by_id.get(id) {
            Some(s) if s.caller == *caller => inner.by_id.remove(id).ok_or(Error::NoSession),
            Some(_) => Err(Error::NoSession),
            None => {
                let mark = inner
                    .expired
                    .iter()
                    .position(|(i, sender, _)| i == id && *sender == caller.sender);
                match mark {
                    Some(at) => {
                        inner.expired.remove(at);
                        Err(Error::PromptTimedOut)
                    }
                    None => Err(Error::NoSession),
                }
            }
        }
    }

    /// Put a taken session back under its id (the conversation goes on; it was just taken
    /// out, so it fits its bounds), unless its connection left meanwhile (or may have:
    /// see [`Inner::live`]). `now` is when the answer being handled arrived.
    pub fn put_back(&self, id: &str, session: Session, now: UnixTime) {
        let mut inner = lock(&self.inner);
        if inner.live(&session.caller, now).is_ok() {
            inner.by_id.insert(id.to_owned(), session);
        }
    }

    /// The connection `sender` left the bus at `now`: its conversations end now, and a
    /// call of it still running stores none. Departure marks are kept `keep` seconds (at
    /// least the longest a Begin can run), at most [`MAX_DEPARTED`] of them; dropping one
    /// moves `forgotten` forward, so no call that may belong to it stores a session.
    pub fn end_connection(&self, sender: &str, now: UnixTime, keep: u64) {
        let mut inner = lock(&self.inner);
        inner.by_id.retain(|_, s| s.caller.sender != sender);
        inner.expired.retain(|(_, s, _)| s != sender);
        if inner.departed.insert(sender.to_owned()) {
            inner.departed_order.push_back((sender.to_owned(), now));
        }
        while let Some((old, at)) = inner.departed_order.front().cloned() {
            if inner.departed_order.len() <= MAX_DEPARTED && at.plus(keep) >= now {
                break;
            }
            inner.departed_order.pop_front();
            inner.departed.remove(&old);
            inner.forgotten = Some(inner.forgotten.map_or(at, |t| t.max(at)));
        }
    }

    /// Conversations open now.
    pub fn count(&self, now: UnixTime) -> usize {
        let mut inner = lock(&self.inner);
        inner.sweep(now);
        inner.by_id.len()
    }
}

/// Open a login conversation for `user`.
///
/// # Errors
/// Unknown user, a caller that may not check this user, an unreadable record, too
/// many sessions.
pub fn begin(
    core: &Core,
    caller: &Caller,
    user: &str,
    mut ctx: LoginContext,
    now: UnixTime,
) -> Result<(String, Step), Error> {
    ctx.caller_uid = caller.uid;
    if ctx.app_password {
        return super::apppw::begin(core, caller, user, ctx, now);
    }
    // The account is the uid of an exact look-up: every name of one uid is one
    // account. A non-root caller may act only for its own uid, and gets the same answer
    // for a name that does not exist as for another user's (nothing to enumerate).
    let account = if caller.uid == 0 {
        core.accounts().by_name(user)?
    } else {
        users::check_name(user)?;
        match core.accounts().by_name(user) {
            Ok(a) if authz::may_run_login(caller.uid, &a).is_ok() => a,
            _ => return Err(authz::not_for_others(caller.uid)),
        }
    };
    // Cheap refusal before any record is read: a flood of conversations nobody answers
    // costs little, and the bounds are checked again when the session is stored.
    let limits = core.settings().session_limits();
    core.sessions().room(caller, account.uid, limits, now)?;
    let user = account.name.as_str();
    let record = core
        .load(&account)?
        .unwrap_or_else(|| Record::for_account(user, account.uid));
    // Per-service rules (`[services.NAME]`): `never`, methods none of the user's, a
    // remembered second factor.
    if let Some(step) = super::services::begin_rule(core, caller, &account, &record, &ctx, now)? {
        return Ok((String::new(), step));
    }
    if ctx.forward_pass {
        return begin_forward_pass(core, caller, &account, &record, ctx, now);
    }
    if !record.enrolled() {
        let required = super::services::requirement(core, &account, &record, &ctx)?;
        if !required.required {
            audit(&account, &ctx, caller, "not-enrolled");
            return Ok((
                String::new(),
                messages::done(Verdict::NotEnrolled, String::new()),
            ));
        }
        if let Some(reminder) = grace(core, &account, &ctx, now)? {
            audit(&account, &ctx, caller, "success (enrolment grace)");
            return Ok((String::new(), messages::done(Verdict::Success, reminder)));
        }
        let config = core.settings().config();
        if !super::services::allows(&config, &ctx.service, Method::Totp) {
            audit(
                &account,
                &ctx,
                caller,
                "not-enrolled (service rule methods)",
            );
            return Ok((
                String::new(),
                messages::done(Verdict::Denied, super::services::NO_ENROLMENT_HERE.into()),
            ));
        }
        audit(&account, &ctx, caller, "enrolment-started");
        if email_flows::email_allowed(core)
            && super::services::allows(&config, &ctx.service, Method::Email)
        {
            let (step, awaiting) = email_flows::enrol_choice(core, user);
            let id = new_session(core, caller, &account, ctx, now, awaiting)?;
            return Ok((id, step));
        }
        let (key, again) = enrol_at_login::key(core, &account, now)?;
        let step = messages::enrolment_prompt(&key, core.settings().issuer(), user, again)?;
        let id = new_session(
            core,
            caller,
            &account,
            ctx,
            now,
            Awaiting::EnrolConfirm { key, wrong: 0 },
        )?;
        return Ok((id, step));
    }
    let policy = core.settings().lock_policy();
    if let Some(msg) = locked_message(lockout::state(&record, now, &policy), now) {
        audit(&account, &ctx, caller, "locked");
        return Ok((String::new(), messages::done(Verdict::Locked, msg)));
    }
    let step = email_flows::first_step(core, &account, &record, &ctx, now)?;
    if let Step::Done { .. } = step {
        audit(&account, &ctx, caller, "email-code-not-sent");
        return Ok((String::new(), step));
    }
    let id = new_session(core, caller, &account, ctx, now, Awaiting::Factor)?;
    Ok((id, step))
}

/// What a user gets from a `forward_pass` Begin (review finding H1): the password arrives
/// with the code and is checked only by the modules after this one, so whoever knows a user
/// name could otherwise start an enrolment (and confirm a key of their own), mail a code
/// (and cancel the one in force) or start a grace period. Here nothing starts and nothing
/// is written: an enrolled user gets the code prompt of their authenticators and recovery
/// codes (never a mailed code); a required user without a factor is let through only
/// inside a grace period already running, and otherwise told to set it up elsewhere.
fn begin_forward_pass(
    core: &Core,
    caller: &Caller,
    account: &Account,
    record: &Record,
    ctx: LoginContext,
    now: UnixTime,
) -> Result<(String, Step), Error> {
    if !record.enrolled() {
        let required = super::services::requirement(core, account, record, &ctx)?;
        if !required.required {
            audit(account, &ctx, caller, "not-enrolled");
            return Ok((
                String::new(),
                messages::done(Verdict::NotEnrolled, String::new()),
            ));
        }
        let days = core.settings().config().policy.enroll_grace_days.get();
        if let Some(end) = record
            .required_since
            .map(|since| since.plus(days.saturating_mul(86_400)))
            .filter(|end| days > 0 && now < *end)
        {
            audit(account, &ctx, caller, "success (enrolment grace)");
            let left = (end.0 - now.0).div_ceil(86_400);
            let reminder = messages::grace_reminder(&account.name, left);
            return Ok((String::new(), messages::done(Verdict::Success, reminder)));
        }
        audit(account, &ctx, caller, "not-enrolled (forward_pass)");
        return Ok((
            String::new(),
            messages::done(Verdict::Denied, messages::FORWARD_PASS_ENROL.into()),
        ));
    }
    let policy = core.settings().lock_policy();
    if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
        audit(account, &ctx, caller, "locked");
        return Ok((String::new(), messages::done(Verdict::Locked, msg)));
    }
    let config = core.settings().config();
    let offered: Vec<Method> = super::services::offered_on(&config, record, &ctx.service)
        .into_iter()
        .filter(|m| *m != Method::Email)
        .collect();
    if offered.is_empty() {
        audit(account, &ctx, caller, "no-code-method (forward_pass)");
        return Ok((
            String::new(),
            messages::done(Verdict::Denied, messages::FORWARD_PASS_NO_CODE.into()),
        ));
    }
    let step = messages::first_prompt(&offered, core.settings().digits());
    let id = new_session(core, caller, account, ctx, now, Awaiting::Factor)?;
    Ok((id, step))
}

/// Within the enrolment grace period: the reminder to show. Starts the period at the
/// first login that needs it (durably).
fn grace(
    core: &Core,
    account: &Account,
    ctx: &LoginContext,
    now: UnixTime,
) -> Result<Option<String>, Error> {
    let user = account.name.as_str();
    let days = core.settings().config().policy.enroll_grace_days.get();
    if days == 0 {
        return Ok(None);
    }
    let since = core.update(account, |r| {
        if r.enrolled() {
            return (Write::Keep, Ok(None));
        }
        let (since, mut write) = match r.required_since {
            Some(t) => (t, Write::Keep),
            None => {
                r.required_since = Some(now);
                r.note(
                    now,
                    EventKind::Grace,
                    "2FA required: enrolment grace period started",
                    &Source::login(ctx, account),
                );
                (now, Write::Save)
            }
        };
        if now < since.plus(days.saturating_mul(86_400)) {
            // A login let through in the grace period is a successful login too.
            lockout::note_success(r, now);
            write = Write::Save;
        }
        (write, Ok(Some(since)))
    })?;
    let Some(since) = since else { return Ok(None) };
    let end = since.plus(days.saturating_mul(86_400));
    if now >= end {
        return Ok(None);
    }
    let left = (end.0 - now.0).div_ceil(86_400);
    Ok(Some(messages::grace_reminder(user, left)))
}

/// Store a new conversation of `account` on `caller`'s connection, waiting for
/// `awaiting`; its id.
pub(super) fn new_session(
    core: &Core,
    caller: &Caller,
    account: &Account,
    ctx: LoginContext,
    now: UnixTime,
    awaiting: Awaiting,
) -> Result<String, Error> {
    let session = Session {
        caller: caller.clone(),
        account: account.clone(),
        ctx,
        expires: now.plus(core.settings().prompt_seconds()),
        awaiting,
    };
    core.sessions()
        .open(session, core.settings().session_limits(), now)
}

/// Answer the prompt of session `id`.
///
/// # Errors
/// No such session (or not this caller's), an unreadable record, a failed write.
pub fn answer(
    core: &Core,
    caller: &Caller,
    id: &str,
    answer: &[u8],
    now: UnixTime,
) -> Result<Step, Error> {
    let session = match core.sessions().take(caller, id, now) {
        Ok(s) => s,
        // Why a verdict, not an error: the module shows a verdict's text, so the user
        // reads why (issue 20, item 18), whatever the module's version.
        Err(Error::PromptTimedOut) => {
            return Ok(messages::done(
                Verdict::Denied,
                messages::PROMPT_TIMED_OUT.to_owned(),
            ))
        }
        Err(e) => return Err(e),
    };
    let (step, next) = match session.awaiting {
        Awaiting::Factor if email_flows::is_request(core, answer) => {
            match email_flows::requested(core, &session.account, &session.ctx, now)? {
                Some(step @ Step::Prompt { .. }) => (step, Some(Awaiting::Factor)),
                Some(step) => (step, None),
                None => (
                    answer_factor(core, caller, &session.account, &session.ctx, answer, now)?,
                    None,
                ),
            }
        }
        Awaiting::Choose => match email_flows::chosen(answer) {
            Ok(Some((step, awaiting))) => (step, Some(awaiting)),
            Ok(None) => {
                let (key, again) = enrol_at_login::key(core, &session.account, now)?;
                let step = messages::enrolment_prompt(
                    &key,
                    core.settings().issuer(),
                    &session.account.name,
                    again,
                )?;
                (step, Some(Awaiting::EnrolConfirm { key, wrong: 0 }))
            }
            Err(step) => (step, None),
        },
        Awaiting::EmailAddress => {
            email_flows::address_given(core, &session.account, &session.ctx, answer, now)?
        }
        Awaiting::EmailConfirm => {
            let (step, next) =
                email_flows::confirm_at_login(core, &session.account, &session.ctx, answer, now)?;
            let outcome = if next.is_some()
                || matches!(
                    step,
                    Step::Done {
                        verdict: Verdict::Success,
                        ..
                    }
                ) {
                "enrolled (email)"
            } else {
                "enrolment-wrong-code"
            };
            audit(&session.account, &session.ctx, caller, outcome);
            (step, next)
        }
        Awaiting::Factor => (
            answer_factor(core, caller, &session.account, &session.ctx, answer, now)?,
            None,
        ),
        Awaiting::EnrolConfirm { ref key, wrong } => {
            let key = key.clone();
            answer_enrolment(
                core,
                caller,
                &session.account,
                &session.ctx,
                (key, wrong),
                answer,
                now,
            )?
        }
        Awaiting::Acknowledge => {
            audit(&session.account, &session.ctx, caller, "success (enrolled)");
            (messages::done(Verdict::Success, String::new()), None)
        }
        Awaiting::AppPassword { known } => (
            super::apppw::answer(
                core,
                caller,
                &session.account,
                known,
                &session.ctx,
                answer,
                now,
            )?,
            None,
        ),
    };
    if let Some(awaiting) = next {
        let expires = now.plus(core.settings().prompt_seconds());
        core.sessions().put_back(
            id,
            Session {
                awaiting,
                expires,
                ..session
            },
            now,
        );
    }
    Ok(step)
}

fn answer_factor(
    core: &Core,
    caller: &Caller,
    account: &Account,
    ctx: &LoginContext,
    answer: &[u8],
    now: UnixTime,
) -> Result<Step, Error> {
    let mode = core.settings().config().recovery.mode;
    let mut notices = Vec::new();
    let (step, outcome, locked) = core.update(account, |record| {
        let prior = (record.failures, record.last_failure_from.clone());
        // Told at this login if it succeeds (issue 20, item 11).
        let since = (record.failures > 0).then(|| {
            messages::failures_since(
                record.failures,
                record.last_failure,
                record.last_failure_from.as_deref(),
            )
        });
        if !record.enrolled() {
            let step = messages::done(Verdict::NotEnrolled, String::new());
            return (Write::Keep, Ok((step, "not-enrolled", None)));
        }
        let from = Source::login(ctx, account);
        let checked = match verify::check_on(
            core.settings(),
            core.hashes(),
            record,
            answer,
            now,
            &ctx.service,
            &from,
        ) {
            Ok(c) => c,
            Err(e) => return (Write::Keep, Err(e)),
        };
        let tag = checked.tag();
        // A success may start a remember window; a failure ends every one (`services`).
        if let Checked::Accepted(..) = checked {
            super::services::remember(record, &core.settings().config(), caller, ctx, now);
        } else {
            super::services::prune(record, &core.settings().config(), now);
        }
        let answered = match checked {
            Checked::Accepted(method, Used::Authenticator(_) | Used::EmailCode) => {
                if prior.0 > 0 {
                    notices.push(Notice::LoginAfterFailures {
                        failures: prior.0,
                        from: prior.1.unwrap_or_else(|| "-".into()),
                    });
                }
                record.note(
                    now,
                    EventKind::Success,
                    "success",
                    &from.with_method(method.name()),
                );
                (
                    messages::done(Verdict::Success, since.unwrap_or_default()),
                    tag,
                    None,
                )
            }
            Checked::Accepted(_, Used::RecoveryCode { left }) => {
                let msg = if mode == RecoveryMode::Disables2fa {
                    record.forget_factors();
                    record.note(
                        now,
                        EventKind::Disable,
                        "recovery code used: 2FA switched off",
                        &from.with_method(Method::Recovery.name()),
                    );
                    messages::RECOVERY_SWITCHED_OFF.to_owned()
                } else {
                    record.note(
                        now,
                        EventKind::Success,
                        "success (recovery code)",
                        &from.with_method(Method::Recovery.name()),
                    );
                    if left <= RECOVERY_LOW {
                        notices.push(Notice::RecoveryLow { left });
                    }
                    messages::recovery_left(left)
                };
                let msg = match since {
                    Some(since) => format!("{msg}\n{since}"),
                    None => msg,
                };
                (messages::done(Verdict::Success, msg), tag, None)
            }
            Checked::Replayed(refused) => {
                (messages::done(Verdict::Denied, refused.text), tag, None)
            }
            Checked::Wrong(refused) => {
                record.last_failure_from = Some(failure_source(ctx));
                (
                    messages::done(Verdict::Denied, refused.text),
                    tag,
                    refused.locked.then(|| record.clone()),
                )
            }
            Checked::Locked(msg) => {
                return (
                    Write::Keep,
                    Ok((messages::done(Verdict::Locked, msg), "locked", None)),
                )
            }
        };
        (Write::Save, Ok(answered))
    })?;
    if let Some(record) = locked {
        verify::notify_locked(core.settings(), account, &record, now);
        let policy = core.settings().lock_policy();
        let until = locked_message(lockout::state(&record, now, &policy), now).unwrap_or_default();
        mail::notify(core, account, &record, Notice::Locked { until });
    }
    if !notices.is_empty() {
        if let Ok(Some(record)) = core.load(account) {
            for n in notices {
                mail::notify(core, account, &record, n);
            }
        }
    }
    audit(account, ctx, caller, outcome);
    Ok(step)
}

/// Confirm a key made for enrolment at login; on success the next step shows the
/// recovery codes and waits for Enter.
fn answer_enrolment(
    core: &Core,
    caller: &Caller,
    account: &Account,
    ctx: &LoginContext,
    (key, wrong): (TotpKey, u32),
    answer: &[u8],
    now: UnixTime,
) -> Result<(Step, Option<Awaiting>), Error> {
    let config = core.settings().config();
    let check = totp::check(&key, answer, now, config.totp.window.get(), None)
        .map_err(|e| Error::Internal(e.to_string()))?;
    let user = account.name.as_str();
    let Check::Accepted { step } = check else {
        // Not charged (the key is no factor yet), bounded per login; the key stays pending.
        audit(account, ctx, caller, "enrolment-wrong-code");
        let wrong = wrong.saturating_add(1);
        let step = enrol_at_login::after_wrong(&key, wrong);
        let next =
            matches!(step, Step::Prompt { .. }).then_some(Awaiting::EnrolConfirm { key, wrong });
        return Ok((step, next));
    };
    let count = usize::try_from(config.recovery.count.get()).unwrap_or(10);
    let (shown, stored) =
        recovery::generate(count, core.hashes()).map_err(|e| Error::Internal(e.to_string()))?;
    core.update(account, |record| {
        if record.enrolled() {
            // Enrolled meanwhile (another login or twostepctl): keep that one.
            return (Write::Keep, Err(Error::AlreadyEnrolled(user.to_owned())));
        }
        record.replace_authenticators(key, step, now);
        record.pending = None;
        record.recovery = stored;
        lockout::note_success(record, now);
        record.note(
            now,
            EventKind::Enrol,
            "enrolled at login",
            &Source::login(ctx, account).with_method(Method::Totp.name()),
        );
        (Write::Save, Ok(()))
    })?;
    audit(account, ctx, caller, "enrolled");
    Ok((messages::codes_shown(&shown), Some(Awaiting::Acknowledge)))
}
