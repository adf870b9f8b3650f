// SPDX-License-Identifier: MIT OR Apache-2.0
//! The email method's rules with a controlled clock, over a [`MemoryStore`],
//! [`FakeAccounts`] and an outbox that records what it is given or fails as told: expiry,
//! single use, a new code invalidating the old, no code left after a failed send, nothing
//! charged for a failed send, the throttle, and the locked user who gets no mail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};

use twostep_config::mail::Transport;
use twostep_config::{Bounded, Config, Mail, MethodName};
use twostep_proto::{Step, Verdict};

use super::audit::LoginContext;
use super::mail::{Outbox, Outgoing, SendError};
use super::store::memory::MemoryStore;
use super::test_support::caller;
use super::users::FakeAccounts;
use super::UnixTime;
use super::{email_flows, Core};

const T0: UnixTime = UnixTime(1_800_000_000);

/// Records every message; fails every send while `fail` holds an error.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Outgoing>>,
    fail: Mutex<Option<SendError>>,
}

impl Outbox for Recorder {
    fn send(&self, _: &Mail, mail: Outgoing) -> Result<String, SendError> {
        if let Some(e) = self.fail.lock().unwrap().clone() {
            return Err(e);
        }
        self.sent.lock().unwrap().push(mail);
        Ok("250 ok".into())
    }
    fn post(&self, _: &Mail, mail: Outgoing, _: String) {
        self.sent.lock().unwrap().push(mail);
    }
}

impl Recorder {
    fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
    /// The code of the newest code mail.
    fn code(&self) -> String {
        let sent = self.sent.lock().unwrap();
        let body = &sent
            .iter()
            .rev()
            .find(|m| m.body.contains(" is "))
            .unwrap()
            .body;
        let at = body.find(" is ").unwrap() + 4;
        body[at..at + 6].to_owned()
    }
}

fn setup(cooldown: u64) -> (Core, Arc<Recorder>) {
    let (core, outbox, _) = setup_with_codes(cooldown);
    (core, outbox)
}

/// [`setup`], and the recovery codes ann got when her address was confirmed.
fn setup_with_codes(cooldown: u64) -> (Core, Arc<Recorder>, Vec<String>) {
    let mut c = Config::default();
    c.lockout.max_failures = Bounded::new(3);
    c.login.prompt_timeout_seconds = Bounded::new(3600);
    c.policy.methods = vec![MethodName::Totp, MethodName::Email];
    c.mail = Mail {
        transport: Transport::Smtp,
        host: "127.0.0.1".into(),
        from: "t@example.org".into(),
        cooldown_seconds: Bounded::new(cooldown),
        ..Mail::default()
    };
    let accounts = FakeAccounts::new().with("ann", 1000, &["ann"]);
    let core = Core::with_parts(c, Box::new(MemoryStore::new()), Box::new(accounts));
    let outbox = Arc::new(Recorder::default());
    core.set_outbox(outbox.clone());
    email_flows::set(&core, &caller(1000), "", "ann@example.org", b"", T0).unwrap();
    let code = outbox.code();
    let codes = email_flows::confirm_own(&core, &caller(1000), code.as_bytes(), T0).unwrap();
    let codes = codes.iter().map(|c| c.to_string()).collect();
    (core, outbox, codes)
}

/// Begin a login at `at`; the session and its first step.
fn begin(core: &Core, at: UnixTime) -> (String, Step) {
    core.begin_login(&caller(0), "ann", LoginContext::default(), at)
        .unwrap()
}

fn verdict(step: &Step) -> Option<Verdict> {
    match step {
        Step::Done { verdict, .. } => Some(*verdict),
        Step::Prompt { .. } => None,
    }
}

fn answer(core: &Core, id: &str, code: &str, at: UnixTime) -> Step {
    core.answer(&caller(0), id, code.as_bytes(), at).unwrap()
}

#[test]
fn a_code_works_once_and_not_after_it_expires() {
    let (core, outbox) = setup(0);
    let (id, _) = begin(&core, T0);
    let code = outbox.code();
    assert_eq!(
        verdict(&answer(&core, &id, &code, T0.plus(5))),
        Some(Verdict::Success)
    );
    let (id, _) = begin(&core, T0.plus(10));
    assert_eq!(
        verdict(&answer(&core, &id, &code, T0.plus(11))),
        Some(Verdict::Denied)
    );

    let (id, _) = begin(&core, T0.plus(20));
    let code = outbox.code();
    // 600 s later the code is gone (the session is kept alive by a long prompt timeout).
    let late = T0.plus(20 + 600);
    assert_eq!(
        verdict(&answer(&core, &id, &code, late)),
        Some(Verdict::Denied)
    );
    // One second earlier it would have worked.
    let (id, _) = begin(&core, late);
    let code = outbox.code();
    assert_eq!(
        verdict(&answer(&core, &id, &code, late.plus(599))),
        Some(Verdict::Success)
    );
}

#[test]
fn a_new_code_invalidates_the_old_one() {
    let (core, outbox) = setup(0);
    let (first, _) = begin(&core, T0);
    let old = outbox.code();
    let (second, _) = begin(&core, T0.plus(1));
    let new = outbox.code();
    assert_ne!(old, new);
    assert_eq!(
        verdict(&answer(&core, &first, &old, T0.plus(2))),
        Some(Verdict::Denied)
    );
    assert_eq!(
        verdict(&answer(&core, &second, &new, T0.plus(3))),
        Some(Verdict::Success)
    );
}

#[test]
fn a_failed_send_leaves_no_code_and_charges_nothing() {
    let (core, outbox) = setup(0);
    let (id, _) = begin(&core, T0);
    let code = outbox.code();
    *outbox.fail.lock().unwrap() = Some(SendError::TimedOut);
    // A second login's send fails: the first code is gone too, and the answer says why.
    let (_, step) = begin(&core, T0.plus(1));
    match &step {
        Step::Prompt { message, .. } => assert!(message.contains("could not send the code")),
        Step::Done { message, .. } => assert!(message.contains("could not send the code")),
    }
    assert_eq!(
        verdict(&answer(&core, &id, &code, T0.plus(2))),
        Some(Verdict::Denied)
    );
    let info = core.admin_show(&caller(0), "ann", T0.plus(3)).unwrap();
    assert_eq!(
        info.state.failures, 1,
        "only the one evaluated wrong answer counts"
    );
}

#[test]
fn the_throttle_answers_without_mailing_and_a_locked_user_gets_no_mail() {
    let (core, outbox) = setup(60);
    // The confirmation code started the cooldown.
    let n = outbox.count();
    let (id, step) = begin(&core, T0.plus(30));
    match &step {
        Step::Prompt { message, .. } => assert!(message.contains("sent recently"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(outbox.count(), n);
    assert_eq!(
        verdict(&answer(&core, &id, "000000", T0.plus(31))),
        Some(Verdict::Denied)
    );
    for i in 0..2 {
        let (id, _) = begin(&core, T0.plus(100 + i * 61));
        let _ = answer(&core, &id, "000000", T0.plus(101 + i * 61));
    }
    let n = outbox.count();
    let (id, step) = begin(&core, T0.plus(400));
    assert_eq!(verdict(&step), Some(Verdict::Locked), "{step:?}");
    assert!(id.is_empty());
    // The lock notice went out; nothing since.
    assert_eq!(outbox.count(), n);
    assert!(outbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.subject.ends_with("account locked")));
}

#[test]
fn a_wrong_confirming_code_at_login_spends_that_code() {
    let (core, outbox, codes) = setup_with_codes(0);
    let account = core.accounts().by_uid(1000).unwrap();
    let proof = codes[0].as_bytes();
    email_flows::set(
        &core,
        &caller(1000),
        "",
        "ann2@example.org",
        proof,
        T0.plus(5),
    )
    .unwrap();
    let right = outbox.code();
    let wrong = if right == "000000" {
        "000001"
    } else {
        "000000"
    };
    let (step, next) = email_flows::confirm_at_login(
        &core,
        &account,
        &LoginContext::default(),
        wrong.as_bytes(),
        T0.plus(6),
    )
    .unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Denied));
    assert!(next.is_none());
    // The right code no longer confirms: one guess per mailed code.
    let r = email_flows::confirm_own(&core, &caller(1000), right.as_bytes(), T0.plus(7));
    assert!(matches!(r, Err(super::Error::WrongCode(_))), "{r:?}");
}

#[test]
fn a_host_that_allows_only_email_refuses_authenticator_enrolment() {
    let (core, _) = setup(0);
    let mut c = (*core.settings().config()).clone();
    c.policy.methods = vec![MethodName::Email];
    core.apply_config(c).unwrap();
    let r = core.enroll_begin(&caller(1000), b"", T0);
    assert!(
        matches!(r, Err(super::Error::InvalidArgument(_))),
        "{:?}",
        r.err()
    );
}

/// Review finding H2: the email factor of an account that has a second factor changes only
/// with a proof (a recovery code or an authenticator's code, never a mailed code), and
/// removing an email-only user's address is switching 2FA off: refused where policy
/// requires 2FA, and it forgets every factor where allowed.
#[test]
fn the_email_factor_changes_only_with_a_proof_and_removing_the_last_one_is_a_switch_off() {
    let (core, outbox, codes) = setup_with_codes(0);
    let me = caller(1000);
    // No proof: refused, nothing mailed, the address unchanged.
    let sent = outbox.count();
    let r = email_flows::set(&core, &me, "", "mallory@example.org", b"", T0.plus(1));
    assert!(matches!(r, Err(super::Error::InvalidArgument(_))), "{r:?}");
    assert_eq!(outbox.count(), sent);
    let r = email_flows::remove(&core, &me, "", b"", T0.plus(1));
    assert!(matches!(r, Err(super::Error::InvalidArgument(_))), "{r:?}");
    // A code mailed to the address does not prove a change of that address.
    let (id, _) = begin(&core, T0.plus(2));
    let _ = answer(&core, &id, "by-email", T0.plus(2));
    let mailed = outbox.code();
    let r = email_flows::remove(&core, &me, "", mailed.as_bytes(), T0.plus(3));
    assert!(matches!(r, Err(super::Error::WrongCode(_))), "{r:?}");
    // Required by policy: removing the only factor is refused even with a proof.
    let mut c = (*core.settings().config()).clone();
    c.policy.require = twostep_config::Require::All;
    core.apply_config(c.clone()).unwrap();
    let r = email_flows::remove(&core, &me, "", codes[1].as_bytes(), T0.plus(4));
    assert!(matches!(r, Err(super::Error::AccessDenied(_))), "{r:?}");
    assert!(core.status(&me, T0.plus(4)).unwrap().enrolled);
    // Not required: with a recovery code it switches 2FA off, and says so by mail.
    c.policy.require = twostep_config::Require::None;
    core.apply_config(c).unwrap();
    email_flows::remove(&core, &me, "", codes[1].as_bytes(), T0.plus(5)).unwrap();
    let st = core.status(&me, T0.plus(5)).unwrap();
    assert!(!st.enrolled && st.recovery_left == 0, "{st:?}");
    assert!(outbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.to == "ann@example.org" && m.body.contains("switched off")));
}

/// A replaced address is told: confirming a new one mails the old one.
#[test]
fn a_replaced_address_is_told() {
    let (core, outbox, codes) = setup_with_codes(0);
    let me = caller(1000);
    email_flows::set(
        &core,
        &me,
        "",
        "ann2@example.org",
        codes[0].as_bytes(),
        T0.plus(1),
    )
    .unwrap();
    let code = outbox.code();
    email_flows::confirm_own(&core, &me, code.as_bytes(), T0.plus(2)).unwrap();
    assert!(outbox
        .sent
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.to == "ann@example.org" && m.body.contains("was removed")));
}

/// Review finding M1: the code in force is not recoverable from the record as a sealing
/// store writes it (its hash is sealed like the TOTP secrets), and it still works.
#[test]
fn the_code_in_force_is_sealed_in_the_stored_record() {
    let (core, outbox) = setup(0);
    let (id, _) = begin(&core, T0.plus(120));
    let mailed = outbox.code();
    let ann = core.accounts().by_name("ann").unwrap();
    let record = core.load(&ann).unwrap().unwrap();
    let sealer = super::seal::Sealer::with_key(super::seal::StoreKey::from_bytes(&[9; 32]));
    let row = sealer.encode(&record).unwrap();
    let stored = &row["email"]["code"];
    assert!(stored["hash"].is_object(), "the hash is sealed: {stored}");
    assert!(!row
        .to_string()
        .contains(&record.email.as_ref().unwrap().code.as_ref().unwrap().hash));
    assert_eq!(sealer.decode(row).unwrap().email, record.email);
    let step = answer(&core, &id, &mailed, T0.plus(121));
    assert_eq!(verdict(&step), Some(twostep_proto::Verdict::Success));
}

/// A mailed code does not outlive a login by another method: after a recovery code opens
/// the login, the code mailed for it is no longer in force.
#[test]
fn a_login_by_another_method_ends_the_mailed_code() {
    let (core, _outbox, codes) = setup_with_codes(0);
    let ann = core.accounts().by_name("ann").unwrap();
    let in_force = |core: &Core| {
        let record = core.load(&ann).unwrap().unwrap();
        record.email.unwrap().code.is_some()
    };
    let (id, _) = begin(&core, T0.plus(120));
    assert!(in_force(&core), "the login mailed a code");
    let step = answer(&core, &id, &codes[0], T0.plus(121));
    assert_eq!(verdict(&step), Some(twostep_proto::Verdict::Success));
    assert!(!in_force(&core), "the mailed code ended with the login");
}
