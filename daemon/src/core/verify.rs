// SPDX-License-Identifier: MIT OR Apache-2.0
//! The verify step: one answer checked against a record's factors (TOTP, then recovery
//! codes), with the lockout charged once around it. Texts come from `messages`. The methods
//! are here and nowhere else, so a `Method` enum and more authenticators start from this
//! file.

use twostep_proto::limits;

use super::lockout::{self, locked_message, LockState};
use super::messages;
use super::record::Record;
use super::recovery::{self, HashPool};
use super::settings::Settings;
use super::totp::{self, Check};
use super::users::Account;
use super::{Error, UnixTime};

/// Outcome of checking one answer against a user's factors.
#[must_use]
pub enum Factor {
    Totp,
    Recovery {
        left: usize,
    },
    /// Wrong or replayed, and charged; the text is for the user, the tag for the audit
    /// line; `locked`: this attempt locked the user.
    Wrong {
        text: String,
        tag: &'static str,
        locked: bool,
    },
    Locked(String),
}

fn wrong(text: &str, tag: &'static str) -> Factor {
    Factor::Wrong {
        text: text.to_owned(),
        tag,
        locked: false,
    }
}

/// Check `answer` against the user's factors (TOTP, then recovery codes); a locked
/// user's answer is not evaluated. The record is changed in memory only — a wrong
/// answer charged (count, time, event), a right one resetting the count and setting
/// the replay mark or spending the recovery code — and the CALLER's transaction saves
/// it ([`Write::Save`] for every outcome but `Locked`) before anything is answered.
/// Nothing is answered if that write fails, so a crash or a full disk can lose an
/// attempt only together with its answer.
///
/// # Errors
/// [`Error::NotEnrolled`]; [`Error::CorruptRecord`] when the stored key is unusable.
pub fn check(
    settings: &Settings,
    hashes: &HashPool,
    record: &mut Record,
    answer: &[u8],
    now: UnixTime,
) -> Result<Factor, Error> {
    let policy = settings.lock_policy();
    let config = settings.config();
    if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
        return Ok(Factor::Locked(msg));
    }
    let Some(key) = record.totp.clone() else {
        return Err(Error::NotEnrolled(record.user.clone()));
    };
    let answer = if answer.len() <= limits::MAX_ANSWER_LEN {
        answer
    } else {
        b""
    };
    let corrupt = |e: totp::KeyError| Error::CorruptRecord {
        user: record.user.clone(),
        reason: e.to_string(),
    };
    let is_code = answer.iter().all(u8::is_ascii_digit);
    let check = if is_code {
        totp::check(
            &key,
            answer,
            now,
            config.totp.window.get(),
            record.last_step,
        )
        .map_err(corrupt)?
    } else {
        Check::Wrong
    };
    let outcome = match check {
        Check::Accepted { step } => {
            record.last_step = Some(step);
            Factor::Totp
        }
        Check::Replayed => wrong(
            "That code was already used; wait for the next one.",
            "replayed",
        ),
        Check::Wrong => match recovery::find(answer, &record.recovery, hashes) {
            Some(i) => {
                if let Some(c) = record.recovery.get_mut(i) {
                    c.used = Some(now);
                }
                Factor::Recovery {
                    left: recovery::left(&record.recovery),
                }
            }
            None => wrong(messages::WRONG_CODE, "wrong-code"),
        },
    };
    Ok(match outcome {
        Factor::Totp | Factor::Recovery { .. } => {
            lockout::succeed(record, now);
            outcome
        }
        Factor::Wrong { text, tag, .. } => {
            lockout::charge(record, now, &policy);
            record.note(now, "failed attempt");
            match locked_message(lockout::state(record, now, &policy), now) {
                Some(lock) => Factor::Wrong {
                    text: format!("{text} {lock}"),
                    tag,
                    locked: true,
                },
                None => Factor::Wrong {
                    text,
                    tag,
                    locked: false,
                },
            }
        }
        other => other,
    })
}

/// The user was just locked (and that is durable). Mail to the user goes here once
/// mail is configured (the email issue); until then the lock is logged for the admin.
pub fn notify_locked(settings: &Settings, account: &Account, record: &Record, now: UnixTime) {
    let until = match lockout::state(record, now, &settings.lock_policy()) {
        LockState::Until(t) => t.0.to_string(),
        LockState::UntilUnlocked => "unlock".into(),
        LockState::Open => return,
    };
    log::warn!(
        "user={} outcome=locked failures={} until={until}",
        super::audit::field(&account.name),
        record.failures
    );
}
