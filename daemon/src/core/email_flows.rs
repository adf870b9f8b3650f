// SPDX-License-Identifier: MIT OR Apache-2.0
//! Email in logins and in self-service: the first step of a user who may get a code by
//! email, a code asked for at the authenticator prompt (`[mail] request_word`), the
//! choice of a method at an enrolment at login, the confirm step, and the operations behind
//! `twostepctl email set|confirm|remove` and `twostepctl mail test`.
//!
//! These are free functions over `&Core` called by the bus adapter (`bus/email.rs`) and
//! by `login`, so the shared front files stay as they are.

use twostep_proto::{Accept, Step, Verdict};
use zeroize::Zeroizing;

use super::audit::{field, EventKind, LoginContext, Source};
use super::authz::Caller;
use super::email::{self, Purpose, Sent};
use super::lockout::{self, locked_message};
use super::login::Awaiting;
use super::mail::{self, By, Notice, Outgoing};
use super::messages;
use super::record::Record;
use super::recovery;
use super::selfservice::{may_switch_off, prove};
use super::store::Write;
use super::users::Account;
use super::verify::Method;
use super::{Core, Error, UnixTime};

/// Whether this host lets users use email codes ([`email::allowed`]).
pub fn email_allowed(core: &Core) -> bool {
    email::allowed(core)
}

/// The text alternative's bound at code prompts (a recovery code as typed).
const TEXT_MAX: u8 = twostep_proto::MAX_RECOVERY_LEN;

/// The prompt of the choice at an enrolment at login.
pub const CHOOSE_PROMPT: &str = "Choice (1 or 2): ";

fn email_digits(core: &Core) -> u8 {
    u8::try_from(core.settings().config().mail.code_digits.get()).unwrap_or(6)
}

fn code_accept(n: u8, text: bool) -> Accept {
    if text {
        Accept::DigitsOrText { n, max: TEXT_MAX }
    } else {
        Accept::Digits { n }
    }
}

/// The first step for an enrolled user who is not locked: the authenticator prompt (naming
/// `[mail] request_word` when an email code may be asked for), or, for a user whose only method
/// is email, a code mailed now and its prompt.
///
/// # Errors
/// Store errors.
pub fn first_step(
    core: &Core,
    account: &Account,
    record: &Record,
    ctx: &LoginContext,
    now: UnixTime,
) -> Result<Step, Error> {
    let offered = super::services::offered_on(&core.settings().config(), record, &ctx.service);
    let digits = core.settings().digits();
    if !(email::allowed(core) && offered.contains(&Method::Email)) {
        return Ok(messages::first_prompt(&offered, digits));
    }
    if offered.contains(&Method::Totp) {
        return Ok(Step::Prompt {
            message: String::new(),
            prompt: email_request_prompt(
                &core.settings().config().mail.request_word,
                offered.contains(&Method::Recovery),
            ),
            accept: Accept::DigitsOrText {
                n: digits,
                max: TEXT_MAX,
            },
        });
    }
    let sent = email::send_code(core, account, Purpose::Login, None, ctx, now)?;
    Ok(code_prompt(core, &sent, &offered))
}

/// The authenticator prompt that also takes `word` for a code by email; it names recovery
/// codes while one is left (`recovery`), as the plain code prompt does.
fn email_request_prompt(word: &str, recovery: bool) -> String {
    if recovery {
        format!("Verification code or recovery code (or type {word} for a code by email): ")
    } else {
        format!("Verification code (or type {word} for a code by email): ")
    }
}

/// The prompt after a login code was (or was not) sent.
fn code_prompt(core: &Core, sent: &Sent, offered: &[Method]) -> Step {
    let recovery = offered.contains(&Method::Recovery);
    let totp = offered.contains(&Method::Totp);
    match sent {
        Sent::Sent(masked) | Sent::Throttled(masked) => Step::Prompt {
            message: email::refusal(sent).unwrap_or_default().to_owned(),
            prompt: format!("Code sent to {masked}: "),
            accept: code_accept(email_digits(core), recovery),
        },
        Sent::Failed(_) if totp || recovery => Step::Prompt {
            message: email::SEND_FAILED.into(),
            prompt: if totp {
                messages::code_prompt(recovery).into()
            } else {
                "Recovery code: ".into()
            },
            accept: code_accept(core.settings().digits(), recovery),
        },
        Sent::Failed(_) => messages::done(Verdict::Denied, email::SEND_FAILED.into()),
    }
}

/// Whether `answer` at the authenticator prompt asks for a code by email.
pub fn is_request(core: &Core, answer: &[u8]) -> bool {
    answer == core.settings().config().mail.request_word.as_bytes()
}

/// The user asked for a code by email at the authenticator prompt: mail one (unless the
/// user is locked, has no confirmed address, or the host does not allow email: then the
/// answer is `None` and it is checked as any answer). Nothing is charged.
///
/// # Errors
/// Store errors.
pub fn requested(
    core: &Core,
    account: &Account,
    ctx: &LoginContext,
    now: UnixTime,
) -> Result<Option<Step>, Error> {
    let Some(record) = core.load(account)? else {
        return Ok(None);
    };
    let offered = super::services::offered_on(&core.settings().config(), &record, &ctx.service);
    if !(email::allowed(core) && offered.contains(&Method::Email)) {
        return Ok(None);
    }
    let policy = core.settings().lock_policy();
    if let Some(msg) = locked_message(lockout::state(&record, now, &policy), now) {
        return Ok(Some(messages::done(Verdict::Locked, msg)));
    }
    let sent = email::send_code(core, account, Purpose::Login, None, ctx, now)?;
    Ok(Some(code_prompt(core, &sent, &offered)))
}

/// The first step of an enrolment at login on a host that allows email: the choice (when
/// authenticator apps are allowed too) or the address prompt.
pub fn enrol_choice(core: &Core, user: &str) -> (Step, Awaiting) {
    if email::totp_allowed(core) {
        let message = format!(
            "Two-factor authentication is required for {user}. Choose how to prove it:\n  \
             1 = an authenticator app (recommended)\n  \
             2 = a code by email (weaker: whoever reads your mail can log in with your password)"
        );
        let step = Step::Prompt {
            message,
            prompt: CHOOSE_PROMPT.into(),
            accept: Accept::Text { max: 1, echo: true },
        };
        return (step, Awaiting::Choose);
    }
    address_prompt(format!(
        "Two-factor authentication is required for {user}: codes will come by email."
    ))
}

fn address_prompt(message: String) -> (Step, Awaiting) {
    let step = Step::Prompt {
        message,
        prompt: "Email address: ".into(),
        accept: Accept::Text {
            // Why not 254: one answer crosses the bus in at most MAX_ANSWER_LEN bytes;
            // longer addresses are set with `twostepctl email set`.
            max: u8::try_from(twostep_proto::limits::MAX_ANSWER_LEN).unwrap_or(u8::MAX),
            echo: true,
        },
    };
    (step, Awaiting::EmailAddress)
}

/// The answer to the choice: `2` asks for the address; `1` is the caller's (a TOTP key).
/// `None` for `1`.
pub fn chosen(answer: &[u8]) -> Result<Option<(Step, Awaiting)>, Step> {
    match answer {
        b"1" => Ok(None),
        b"2" => Ok(Some(address_prompt(String::new()))),
        _ => Err(messages::done(
            Verdict::Denied,
            "Not a choice. Log in again to start over.".into(),
        )),
    }
}

/// The address typed at an enrolment at login: mail its confirming code.
///
/// # Errors
/// Store errors.
pub fn address_given(
    core: &Core,
    account: &Account,
    ctx: &LoginContext,
    answer: &[u8],
    now: UnixTime,
) -> Result<(Step, Option<Awaiting>), Error> {
    let typed = String::from_utf8_lossy(answer);
    let address = match email::check_address(&typed) {
        Ok(a) => a,
        Err(e) => {
            let text = format!("{e}. Log in again to start over.");
            return Ok((messages::done(Verdict::Denied, text), None));
        }
    };
    match email::send_code(core, account, Purpose::Confirm, Some(address), ctx, now)? {
        Sent::Sent(masked) | Sent::Throttled(masked) => Ok((
            Step::Prompt {
                message: String::new(),
                prompt: format!("Code sent to {masked}: "),
                accept: Accept::Digits {
                    n: email_digits(core),
                },
            },
            Some(Awaiting::EmailConfirm),
        )),
        Sent::Failed(_) => Ok((
            messages::done(
                Verdict::Denied,
                "could not send the code; log in again later, or choose an authenticator app"
                    .into(),
            ),
            None,
        )),
    }
}

/// Confirm the pending address with `answer`. On success the address is the user's, and
/// recovery codes are made when the user has none left (shown once: returned). A wrong
/// code is charged to the lockout when `charge` (self-service); at an enrolment at login
/// (where a wrong first TOTP code is not charged either) it is not, and the code is gone.
///
/// # Errors
/// [`Error::NoPendingEnrollment`] without a pending address, [`Error::WrongCode`],
/// [`Error::Locked`], store errors. Events carry `from` (the login's source at a login;
/// `None`: a D-Bus call of the user).
pub fn confirm(
    core: &Core,
    account: &Account,
    answer: &[u8],
    charge: bool,
    by: By,
    now: UnixTime,
    from: Option<&Source>,
) -> Result<Vec<Zeroizing<String>>, Error> {
    let before = core.load(account)?.unwrap_or_default();
    let codes = if recovery::left(&before.recovery) == 0 {
        let count = usize::try_from(core.config().recovery.count.get()).unwrap_or(10);
        Some(recovery::generate(count, core.hashes()).map_err(|e| Error::Internal(e.to_string()))?)
    } else {
        None
    };
    let policy = core.settings().lock_policy();
    let (shown, record) = core.update(account, |record| {
        if let Some(msg) = locked_message(lockout::state(record, now, &policy), now) {
            let e = Error::Locked {
                user: account.name.clone(),
                until: msg,
            };
            return (Write::Keep, Err(e));
        }
        let Some(state) = record.email.as_mut().filter(|s| s.pending.is_some()) else {
            return (
                Write::Keep,
                Err(Error::NoPendingEnrollment(account.name.clone())),
            );
        };
        if !email::matches(state, Purpose::Confirm, answer, now) {
            if !charge {
                // Why: not charged, so one guess per code; the next try needs a new mail
                // (throttled), and a guess per login conversation never adds up.
                state.code = None;
                return (Write::Save, Err(Error::WrongCode(account.name.clone())));
            }
            lockout::charge(record, now, &policy);
            record.last_failure_from = Some("twostepctl".into());
            let from = from.cloned().unwrap_or_else(|| Source::own(record));
            record.note(
                now,
                EventKind::Failure,
                "failed attempt (email confirm)",
                &from.with_method("email-code"),
            );
            return (Write::Save, Err(Error::WrongCode(account.name.clone())));
        }
        state.address = state.pending.take();
        state.code = None;
        let mut shown = Vec::new();
        if recovery::left(&record.recovery) == 0 {
            if let Some((s, stored)) = codes {
                record.recovery = stored;
                shown = s;
            }
        }
        let from = from.cloned().unwrap_or_else(|| Source::own(record));
        record.note(
            now,
            EventKind::Email,
            "email address confirmed",
            &from.with_method("email-code"),
        );
        if !charge {
            // At an enrolment at login this is a successful login (issue 20, item 9).
            lockout::note_success(record, now);
        }
        (Write::Save, Ok((shown, record.clone())))
    })?;
    log::info!("user={} email=confirmed", field(&account.name));
    let old = before.email.as_ref().and_then(|e| e.address.clone());
    let new = record.email.as_ref().and_then(|e| e.address.clone());
    if old.is_some() && old != new {
        // The address that was replaced learns of it (its owner may not have asked).
        mail::notify(core, account, &before, Notice::Email { added: false, by });
    }
    mail::notify(core, account, &record, Notice::Email { added: true, by });
    Ok(shown)
}

/// The code typed at an enrolment at login: confirm, then show the recovery codes (if new).
///
/// # Errors
/// Store errors.
pub fn confirm_at_login(
    core: &Core,
    account: &Account,
    ctx: &LoginContext,
    answer: &[u8],
    now: UnixTime,
) -> Result<(Step, Option<Awaiting>), Error> {
    let from = Source::login(ctx, account);
    match confirm(core, account, answer, false, By::User, now, Some(&from)) {
        Ok(shown) if shown.is_empty() => {
            Ok((messages::done(Verdict::Success, String::new()), None))
        }
        Ok(shown) => Ok((codes_shown(&shown), Some(Awaiting::Acknowledge))),
        Err(Error::WrongCode(_)) => Ok((
            messages::done(Verdict::Denied, messages::ENROL_EMAIL_WRONG_CODE.into()),
            None,
        )),
        Err(e) => Err(e),
    }
}

/// The new recovery codes after an address was confirmed at login; waits for Enter.
fn codes_shown(shown: &[Zeroizing<String>]) -> Step {
    let codes: Vec<&str> = shown.iter().map(|c| c.as_str()).collect();
    Step::Prompt {
        message: format!(
            "Your email address is confirmed: logins send a code to it. These recovery codes \
             each log you in once when mail does not arrive. They are shown only now: write \
             them down or store them safely.\n\n  {}\n",
            codes.join("\n  ")
        ),
        prompt: "Press Enter once you have saved them: ".into(),
        accept: Accept::Acknowledge,
    }
}

/// The account `caller` acts on: its own (`user` empty), or `user`'s for an admin.
fn target(core: &Core, caller: &Caller, user: &str) -> Result<(Account, By), Error> {
    if user.is_empty() {
        return Ok((core.accounts().by_uid(caller.uid)?, By::User));
    }
    match core.accounts().by_name(user) {
        Ok(account) if account.uid == caller.uid => Ok((account, By::User)),
        // Why authorize first: a non-admin learns nothing about other names (unknown and
        // someone else's get the same refusal).
        other => {
            super::admin::authorize_admin(core, caller)?;
            Ok((other?, By::Admin))
        }
    }
}

/// `twostepctl email set ADDRESS` (or an admin's `--user NAME`): the address becomes
/// pending and its confirming code is mailed; the masked address.
///
/// # Errors
/// Email not allowed on this host, a bad address, throttled, a failed send (with the
/// reason), authorization and store errors.
pub fn set(
    core: &Core,
    caller: &Caller,
    user: &str,
    address: &str,
    proof: &[u8],
    now: UnixTime,
) -> Result<String, Error> {
    if !email::allowed(core) {
        return Err(Error::InvalidArgument(
            "this host does not allow codes by email ([policy] methods, [mail])".into(),
        ));
    }
    let (account, by) = target(core, caller, user)?;
    let address = email::check_address(address)?;
    if by == By::User {
        prove_change(core, &account, proof, now)?;
    }
    let ctx = LoginContext::default();
    match email::send_code(core, &account, Purpose::Confirm, Some(address), &ctx, now)? {
        Sent::Sent(masked) => Ok(masked),
        Sent::Throttled(_) => Err(Error::Busy(email::THROTTLED.into())),
        Sent::Failed(e) => Err(Error::Unavailable(format!("could not send the code: {e}"))),
    }
}

/// `twostepctl email confirm CODE`: the recovery codes made now (empty when the user has
/// some already).
///
/// # Errors
/// As [`confirm`].
pub fn confirm_own(
    core: &Core,
    caller: &Caller,
    code: &[u8],
    now: UnixTime,
) -> Result<Vec<Zeroizing<String>>, Error> {
    let account = core.accounts().by_uid(caller.uid)?;
    confirm(core, &account, code, true, By::User, now, None)
}

/// A user changing the email factor of an account that already has a second factor
/// proves they hold one, as for every other change to an active factor (selfservice.rs):
/// a current code of an authenticator app or an unused recovery code — never a code mailed
/// to the address being changed. Nothing to prove for an account without a factor.
///
/// # Errors
/// [`Error::InvalidArgument`] without a proof; a wrong proof (charged), a lock, store
/// errors.
fn prove_change(core: &Core, account: &Account, proof: &[u8], now: UnixTime) -> Result<(), Error> {
    core.update(account, |record| {
        if !record.enrolled() {
            return (Write::Keep, Ok(()));
        }
        if proof.is_empty() {
            return (Write::Keep, Err(Error::InvalidArgument(NEEDS_PROOF.into())));
        }
        without_email(record, |record| match prove(core, record, proof, now) {
            Ok(()) => (Write::Save, Ok(())),
            Err((write, e)) => (write, Err(e)),
        })
    })
}

/// What a change to the email factor without a proof is told.
pub const NEEDS_PROOF: &str = "changing the email address of an account with a second factor \
    needs a current code from your authenticator app or a recovery code";

/// Run `f` with `record`'s mailed code in force taken out (so a mailed code cannot prove a
/// change of the address it was mailed to; the address stays, so recovery codes still
/// count), and put it back.
fn without_email<T>(record: &mut Record, f: impl FnOnce(&mut Record) -> T) -> T {
    let code = record.email.as_mut().and_then(|e| e.code.take());
    let out = f(record);
    if let Some(e) = record.email.as_mut() {
        e.code = code;
    }
    out
}

/// `twostepctl email remove` (an admin: `--user NAME`): the address, a pending one and
/// the code in force are gone; the throttle stays. The user's own removal needs a proof
/// ([`prove_change`]); removing the address of an account whose only factor it is switches
/// 2FA off, so it is refused as `disable` is (required by policy, toggling denied) and
/// forgets every factor.
///
/// # Errors
/// Authorization, a missing or wrong proof, policy, store errors.
pub fn remove(
    core: &Core,
    caller: &Caller,
    user: &str,
    proof: &[u8],
    now: UnixTime,
) -> Result<(), Error> {
    let (account, by) = target(core, caller, user)?;
    let admin = (by != By::User).then(|| Source::admin(core.accounts(), caller));
    let before = core.load(&account)?;
    let had = before.as_ref().filter(|r| email::has_address(r)).cloned();
    let switched_off = core.update(&account, |record| {
        if record.email.is_none() {
            return (Write::Keep, Ok(false));
        }
        let only_factor = email::has_address(record) && record.authenticators.is_empty();
        if by == By::User && record.enrolled() {
            if only_factor {
                let doing = "remove your only second factor (switch 2FA off)";
                if let Err(e) = may_switch_off(core, &account, record, doing) {
                    return (Write::Keep, Err(e));
                }
            }
            if proof.is_empty() {
                return (Write::Keep, Err(Error::InvalidArgument(NEEDS_PROOF.into())));
            }
            let proved = without_email(record, |record| prove(core, record, proof, now));
            if let Err((write, e)) = proved {
                return (write, Err(e));
            }
        }
        if only_factor {
            record.forget_factors();
            let from = admin.clone().unwrap_or_else(|| Source::own(record));
            record.note(
                now,
                EventKind::Disable,
                "email address removed: 2FA switched off",
                &from,
            );
            return (Write::Save, Ok(true));
        }
        if let Some(state) = record.email.as_mut() {
            state.forget_address();
        }
        let from = admin.clone().unwrap_or_else(|| Source::own(record));
        record.note(now, EventKind::Email, "email address removed", &from);
        (Write::Save, Ok(false))
    })?;
    log::info!(
        "user={} email=removed{}",
        field(&account.name),
        if switched_off { " 2fa=off" } else { "" }
    );
    if let Some(old) = had {
        // Mailed to the address that was removed: its owner learns of it.
        let notice = if switched_off {
            Notice::Disabled { by }
        } else {
            Notice::Email { added: false, by }
        };
        mail::notify(core, &account, &old, notice);
    }
    Ok(())
}

/// `twostepctl mail test ADDRESS` (admins): one test message; the server's answer.
///
/// # Errors
/// Not an admin, a bad address, mail not configured, the send's failure.
pub fn test(core: &Core, caller: &Caller, address: &str) -> Result<String, Error> {
    super::admin::authorize_admin(core, caller)?;
    let to = email::check_address(address)?;
    let config = core.settings().config();
    let host = mail::host_name();
    let mail = Outgoing {
        to,
        subject: mail::one_line(&format!("{host}: twostep test message")),
        body: format!("This is a test message from twostepd on {host}.\n"),
    };
    core.outbox()
        .send(&config.mail, mail)
        .map_err(|e| Error::Unavailable(format!("mail test failed: {e}")))
}
