// SPDX-License-Identifier: MIT OR Apache-2.0
//! Verification methods in one place: which [`Method`]s a record offers ([`offered`]), and
//! the one verify step ([`check`]) that tries an answer against them in that order, with the
//! lockout charged once around it. Each method's own check is a file beside this one
//! (`verify/totp.rs`: every authenticator of the user, each with its own replay mark;
//! `verify/recovery.rs`: the one-time recovery codes). Texts come from `messages`.
//!
//! Adding a method (email codes, app passwords) = a variant of [`Method`], a file here, and
//! the places the compiler then lists (the exhaustive matches on `Method`).

mod email;
mod recovery;
mod totp;

use twostep_proto::limits;
use zeroize::Zeroizing;

use super::audit::{EventKind, Source};
use super::lockout::{self, locked_message, LockState};
use super::messages;
use super::record::Record;
use super::recovery::HashPool;
use super::settings::Settings;
use super::users::Account;
use super::{Error, UnixTime};

/// A way of proving the second factor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A time-based code of one of the user's authenticators.
    Totp,
    /// One of the user's unused one-time recovery codes.
    Recovery,
    /// The code mailed to the user's confirmed address (`core::email`).
    Email,
}

impl Method {
    /// The method's name in audit lines.
    pub fn name(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::Recovery => "recovery-code",
            Method::Email => "email-code",
        }
    }
}

/// The methods `record` offers, in the order an answer is tried against them: TOTP while
/// any authenticator is confirmed, an email code while an address is confirmed (whether
/// the host allows email is [`check`]'s and the login's business), recovery codes while
/// any is unused. Empty: not enrolled.
pub fn offered(record: &Record) -> Vec<Method> {
    let mut methods = Vec::with_capacity(3);
    if !record.authenticators.is_empty() {
        methods.push(Method::Totp);
    }
    if super::email::has_address(record) {
        methods.push(Method::Email);
    }
    if !methods.is_empty() && super::recovery::left(&record.recovery) > 0 {
        methods.push(Method::Recovery);
    }
    methods
}

/// What an accepted answer used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Used {
    /// A code of the authenticator of this name.
    Authenticator(String),
    /// A recovery code; this many are left unused.
    RecoveryCode { left: usize },
    /// The code mailed to the confirmed address.
    EmailCode,
}

/// A refused answer (charged unless it was a replay): the text for the user; `locked`:
/// this attempt locked the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub text: String,
    pub locked: bool,
}

/// Outcome of checking one answer, named by what happened.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checked {
    /// Accepted by `Method`, using what [`Used`] says; the failure count is reset.
    Accepted(Method, Used),
    /// A code of an authenticator that was already used on it (or an earlier one):
    /// refused but not charged (see [`check`]); `locked` is always false.
    Replayed(Refused),
    /// Matched no method.
    Wrong(Refused),
    /// The user is locked; the answer was not evaluated and nothing was charged.
    Locked(String),
}

impl Checked {
    /// The outcome's name in audit lines.
    pub fn tag(&self) -> &'static str {
        match self {
            Checked::Accepted(Method::Totp, _) => "success",
            Checked::Accepted(Method::Recovery, _) => "success-recovery-code",
            Checked::Accepted(Method::Email, _) => "success-email-code",
            Checked::Replayed(_) => "replayed",
            Checked::Wrong(_) => "wrong-code",
            Checked::Locked(_) => "locked",
        }
    }
}

/// What one method made of an answer.
enum Attempt {
    Accepted(Used),
    /// Matched, but refused as a replay: no later method is tried.
    Replayed,
    NoMatch,
}

/// Check `answer` against the methods `record` offers ([`offered`], in order); a locked
/// user's answer is not evaluated. The record is changed in memory only — a wrong
/// answer charged (count, time, event), a replayed code noted but not charged, a right
/// one resetting the count and setting the
/// authenticator's replay mark and last use, or spending the recovery code — and the
/// CALLER's transaction saves it ([`Write::Save`](super::store::Write) for every outcome
/// but `Locked`) before anything is answered. Nothing is answered if that write fails, so
/// a crash or a full disk can lose an attempt only together with its answer.
///
/// Events carry `from` ([`Source`]) with the method: the replaying one, or for a wrong
/// answer every method tried (joined by `,`); a wrong answer that locks adds a `lock`
/// event.
///
/// # Errors
/// [`Error::NotEnrolled`]; [`Error::CorruptRecord`] when a stored key is unusable.
pub fn check(
    settings: &Settings,
    hashes: &HashPool,
    record: &mut Record,
    answer: &[u8],
    now: UnixTime,
    from: &Source,
) -> Result<Checked, Error> {
    check_on(settings, hashes, record, answer, now, "", from)
}

/// [`check`] at a login on PAM service `service`: only the methods its `[services.NAME]
/// methods` accepts are tried (`core::services::offered_on`); when none of the user's is,
/// the answer is refused uncharged.
///
/// # Errors
/// As [`check`].
pub fn check_on(
    settings: &Settings,
    hashes: &HashPool,
    record: &mut Record,
    answer: &[u8],
    now: UnixTime,
    service: &str,
    from: &Source,
) -> Result<Checked, Error> {
    let policy = settings.lock_policy();
    if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
        return Ok(Checked::Locked(msg));
    }
    // Diagnosis only (issue 20 item 10): a host clock behind the record's latest login
    // turns codes of now into "already used"; noted so `user show` and `doctor` say why.
    super::clock_trouble::notice_backwards(record, now, from);
    let email_allowed = {
        let c = settings.config();
        c.mail.enabled()
            && c.policy
                .methods
                .contains(&twostep_config::MethodName::Email)
    };
    let config = settings.config();
    let here = super::services::offered_on(&config, record, service);
    if offered(record).is_empty() {
        return Err(Error::NotEnrolled(record.user.clone()));
    }
    if here.is_empty() {
        // Why not charged: no answer could pass here (the service's methods), so none is
        // a guess; `services::begin_rule` normally refuses before any prompt.
        return Ok(Checked::Wrong(Refused {
            text: super::services::NO_METHOD_HERE.to_owned(),
            locked: false,
        }));
    }
    // Why kept for an email-only user on a host that stopped allowing email: the user stays
    // enrolled (fails closed); recovery codes still work, the email code does not.
    let methods: Vec<Method> = here
        .into_iter()
        .filter(|m| *m != Method::Email || email_allowed)
        .collect();
    // One rule for what people type (issue 20 item 5, `twostep_proto::is_typed_code`):
    // `123 456` is the code 123456 here as in the module and the CLI.
    let typed: Zeroizing<Vec<u8>>;
    let answer = if twostep_proto::is_typed_code(answer) {
        typed = Zeroizing::new(twostep_proto::code_digits(answer).collect());
        &typed[..]
    } else {
        answer
    };
    // Why not charged: an answer no method could ever take (not a code of any length a
    // method uses, not recovery-code shaped, over-long) is a typing slip, not a guess.
    if !could_be_a_code(answer) {
        return Ok(Checked::Wrong(Refused {
            text: messages::NOT_A_CODE.to_owned(),
            locked: false,
        }));
    }
    let window = settings.config().totp.window.get();
    let mut attempt = Attempt::NoMatch;
    let mut replayed_by = "";
    for &method in &methods {
        attempt = match method {
            Method::Totp => totp::attempt(record, answer, now, window)?,
            Method::Recovery => recovery::attempt(record, answer, hashes, now),
            Method::Email => email::attempt(record, answer, now),
        };
        match attempt {
            Attempt::Accepted(used) => {
                lockout::succeed(record, now);
                // Why: a mailed code asked for this login (or an earlier one) must not stay
                // usable for the rest of its life once the user is in by another method.
                if let Some(email) = record.email.as_mut() {
                    email.code = None;
                }
                return Ok(Checked::Accepted(method, used));
            }
            Attempt::Replayed => {
                replayed_by = method.name();
                break;
            }
            Attempt::NoMatch => {}
        }
    }
    if let Attempt::Replayed = attempt {
        // Why not charged (issue 20, item 17): a code that matches a step already used on
        // that authenticator proves the caller saw a real code (typically the user typing
        // the same code again, as sudo's `timestamp_timeout=0` makes common). A guess hits
        // a used step with about the chance it hits the current one, so leaving replays
        // uncharged gives a guesser nothing. Refused, audited as `replayed`, noted.
        record.note(
            now,
            EventKind::Replay,
            "replayed code refused (not counted toward lockout)",
            &from.with_method(replayed_by),
        );
        return Ok(Checked::Replayed(Refused {
            text: messages::REPLAYED.to_owned(),
            locked: false,
        }));
    }
    if methods.contains(&Method::Totp) {
        // Diagnosis only (issue 20 item 10): the answer stays wrong and charged below.
        totp::diagnose(record, answer, now, window, from)?;
    }
    let text = messages::WRONG_CODE;
    lockout::charge(record, now, &policy);
    let tried: Vec<&str> = methods.iter().map(|m| m.name()).collect();
    let from = from.with_method(&tried.join(","));
    record.note(now, EventKind::Failure, "failed attempt", &from);
    let refused = match locked_message(lockout::state(record, now, &policy), now) {
        Some(lock) => {
            super::audit::note_lock(record, now, &from);
            Refused {
                text: format!("{text} {lock}"),
                locked: true,
            }
        }
        None => Refused {
            text: text.to_owned(),
            locked: false,
        },
    };
    Ok(Checked::Wrong(refused))
}

/// Whether `answer` has the shape of something a method takes: 6 to 8 digits (TOTP and
/// email codes, imported 8-digit one-time codes), a recovery code as typed (any case, with
/// or without dashes), at most [`limits::MAX_ANSWER_LEN`] bytes.
fn could_be_a_code(answer: &[u8]) -> bool {
    if answer.len() > limits::MAX_ANSWER_LEN {
        return false;
    }
    let digits = answer.iter().all(u8::is_ascii_digit)
        && (usize::from(twostep_proto::MIN_DIGITS)..=usize::from(twostep_proto::MAX_DIGITS))
            .contains(&answer.len());
    digits || super::recovery::looks_like_code(answer)
}

/// The user was just locked (and that is durable): logged for the admin. The user's mail
/// about it is `mail::Notice::Locked`, sent by the login beside this call.
pub fn notify_locked(settings: &Settings, account: &Account, record: &Record, now: UnixTime) {
    let until = match lockout::state(record, now, &settings.lock_policy()) {
        LockState::Until(t) => super::timefmt::rfc3339(t),
        LockState::UntilUnlocked => "unlock".into(),
        LockState::Open => return,
    };
    log::warn!(
        "user={} outcome=locked failures={} until={until}",
        super::audit::field(&account.name),
        record.failures
    );
}
