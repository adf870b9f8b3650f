// SPDX-License-Identifier: MIT OR Apache-2.0
//! Login conversations in flight: what each waits for, their bounds, and their end with
//! their bus connection.
//!
//! Conversations are bounded per bus connection, per account and in all, root callers
//! included (`[login]` in the config), and end when their connection leaves the bus.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;

use twostep_config::Config;

use super::audit::LoginContext;
use super::authz::Caller;
use super::engine::lock;
use super::record::TotpKey;
use super::users::Account;
use super::{Error, UnixTime};

/// Login sessions in flight per non-root caller uid (on top of the `[login]` bounds).
pub(crate) const MAX_SESSIONS_PER_CALLER_UID: usize = 16;
/// Unique names of connections that left the bus, remembered so that a Begin still running
/// when its connection left does not leave a session behind (the bus never re-uses a name).
const MAX_DEPARTED: usize = 4096;

/// What a session waits for.
pub enum Awaiting {
    /// A code (or recovery code) of the enrolled user.
    Factor,
    /// The first code of a key created for enrolment at login.
    EnrolConfirm(TotpKey),
    /// Enter, after the recovery codes were shown.
    Acknowledge,
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
    departed_order: VecDeque<String>,
}

impl Inner {
    /// Drop expired sessions; refuse a caller whose connection left.
    fn live(&mut self, caller: &Caller, now: UnixTime) -> Result<(), Error> {
        self.by_id.retain(|_, s| s.expires > now);
        if self.departed.contains(&caller.sender) {
            return Err(Error::NoSession);
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
    pub fn take(&self, caller: &Caller, id: &str, now: UnixTime) -> Option<Session> {
        let mut inner = lock(&self.inner);
        match inner.by_id.get(id) {
            Some(s) if s.caller == *caller && s.expires > now => inner.by_id.remove(id),
            _ => None,
        }
    }

    /// Put a taken session back under its id (the conversation goes on; it was just taken
    /// out, so it fits its bounds), unless its connection left meanwhile.
    pub fn put_back(&self, id: &str, session: Session) {
        let mut inner = lock(&self.inner);
        if !inner.departed.contains(&session.caller.sender) {
            inner.by_id.insert(id.to_owned(), session);
        }
    }

    /// The connection `sender` left the bus: its conversations end now, and a Begin of it
    /// still running stores none.
    pub fn end_connection(&self, sender: &str) {
        let mut inner = lock(&self.inner);
        inner.by_id.retain(|_, s| s.caller.sender != sender);
        if inner.departed.insert(sender.to_owned()) {
            inner.departed_order.push_back(sender.to_owned());
        }
        while inner.departed_order.len() > MAX_DEPARTED {
            if let Some(old) = inner.departed_order.pop_front() {
                inner.departed.remove(&old);
            }
        }
    }

    /// Conversations open now.
    pub fn count(&self, now: UnixTime) -> usize {
        let mut inner = lock(&self.inner);
        inner.by_id.retain(|_, s| s.expires > now);
        inner.by_id.len()
    }
}
