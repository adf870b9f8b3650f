// SPDX-License-Identifier: MIT OR Apache-2.0
//! Per-service rules (`core::services`) through [`FakeAccounts`] and a [`MemoryStore`]:
//! `never`, `required`, `methods` and the remember window, with its key and its ends.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use twostep_config::{Bounded, Config, MethodName, SecondFactor, ServiceName, ServiceRule};
use twostep_proto::{Step, Verdict};

use super::admin::Action;
use super::audit::LoginContext;
use super::store::memory::MemoryStore;
use super::test_support::{caller, code};
use super::users::FakeAccounts;
use super::{Caller, Core, UnixTime};

const T0: UnixTime = UnixTime(1_800_000_000);

fn people() -> FakeAccounts {
    FakeAccounts::new()
        .with("alice", 1000, &["alice", "staff"])
        .with("bob", 1001, &["bob"])
        .with("robot", 1003, &["robot", "robots"])
}

fn service(c: &mut Config, name: &str, f: impl FnOnce(&mut ServiceRule)) {
    let mut rule = ServiceRule::default();
    f(&mut rule);
    c.services
        .insert(ServiceName::try_from(name.to_owned()).unwrap(), rule);
}

fn core_with(f: impl FnOnce(&mut Config)) -> Core {
    let mut c = Config::default();
    c.totp.issuer = "test".into();
    c.lockout.max_failures = Bounded::new(3);
    c.recovery.count = Bounded::new(2);
    service(&mut c, "vlock", |r| r.second_factor = SecondFactor::Never);
    service(&mut c, "sudo", |r| r.remember_seconds = Bounded::new(900));
    f(&mut c);
    assert_eq!(c.contradictions(), None);
    let store = Arc::new(MemoryStore::new());
    Core::with_parts(c, Box::new(store), Box::new(people()))
}

/// Enrol `uid` as itself; the secret.
fn enrol(core: &Core, uid: u32) -> String {
    let p = core.enroll_begin(&caller(uid), b"", T0).unwrap();
    core.enroll_confirm(&caller(uid), code(&p.secret_base32, T0).as_bytes(), T0)
        .unwrap();
    p.secret_base32.clone()
}

fn ctx(service: &str, rhost: &str, tty: &str) -> LoginContext {
    LoginContext {
        service: service.into(),
        rhost: rhost.into(),
        tty: tty.into(),
        ..LoginContext::default()
    }
}

fn verdict(step: &Step) -> Option<Verdict> {
    match step {
        Step::Done { verdict, .. } => Some(*verdict),
        Step::Prompt { .. } => None,
    }
}

/// A login by root for `user` from `c` at `now`: the verdict at Begin, or after answering
/// `answer` (when given) at the prompt; `None`: a prompt was left unanswered.
fn login(
    core: &Core,
    user: &str,
    c: &LoginContext,
    answer: Option<&str>,
    now: UnixTime,
) -> Option<Verdict> {
    // A connection of its own, as the module opens one per login.
    static N: AtomicUsize = AtomicUsize::new(0);
    let root = Caller {
        uid: 0,
        sender: format!(":2.{}", N.fetch_add(1, Ordering::Relaxed)),
    };
    let (id, step) = core.begin_login(&root, user, c.clone(), now).unwrap();
    if let Some(v) = verdict(&step) {
        return Some(v);
    }
    let Some(answer) = answer else {
        core.end_connection_at(&root.sender, now);
        return None;
    };
    verdict(&core.answer(&root, &id, answer.as_bytes(), now).unwrap())
}

#[test]
fn a_service_without_a_table_asks_as_before() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let c = ctx("sshd", "192.0.2.7", "ssh");
    assert_eq!(login(&core, "alice", &c, None, T0.plus(60)), None);
    let at = T0.plus(90);
    assert_eq!(
        login(&core, "alice", &c, Some(&code(&secret, at)), at),
        Some(Verdict::Success)
    );
    // No remember window there: asked again at once.
    assert_eq!(login(&core, "alice", &c, None, at.plus(1)), None);
}

#[test]
fn never_answers_as_for_a_user_without_a_factor_but_refuses_a_locked_one() {
    let core = core_with(|_| {});
    enrol(&core, 1000);
    let c = ctx("vlock", "", "tty2");
    assert_eq!(
        login(&core, "alice", &c, None, T0.plus(60)),
        Some(Verdict::NotEnrolled)
    );
    // Not enrolled and required by policy: still not asked there.
    let required = core_with(|c| c.policy.require = twostep_config::Require::All);
    assert_eq!(
        login(&required, "bob", &c, None, T0),
        Some(Verdict::NotEnrolled)
    );
    // Locked by wrong codes elsewhere: refused on the `never` service too.
    let ssh = ctx("sshd", "192.0.2.7", "ssh");
    for i in 0..3 {
        assert_eq!(
            login(&core, "alice", &ssh, Some("000000"), T0.plus(100 + i)),
            Some(Verdict::Denied)
        );
    }
    assert_eq!(
        login(&core, "alice", &c, None, T0.plus(110)),
        Some(Verdict::Locked)
    );
}

#[test]
fn required_on_a_service_requires_everyone_there_but_the_exempt() {
    let core = core_with(|c| {
        c.policy.exempt_groups = vec!["robots".into()];
        service(c, "sshd", |r| r.second_factor = SecondFactor::Required);
    });
    let ssh = ctx("sshd", "192.0.2.7", "ssh");
    // bob is required by no [policy] rule: on sshd he enrols at login.
    let (_, step) = core
        .begin_login(&caller(0), "bob", ssh.clone(), T0)
        .unwrap();
    assert!(
        matches!(&step, Step::Prompt { message, .. } if message.contains("is required for bob")),
        "{step:?}"
    );
    // Elsewhere nothing changed.
    assert_eq!(
        login(&core, "bob", &ctx("login", "", "tty1"), None, T0),
        Some(Verdict::NotEnrolled)
    );
    // An exempt group still exempts.
    assert_eq!(
        login(&core, "robot", &ssh, None, T0),
        Some(Verdict::NotEnrolled)
    );
    // So does the admin's per-user exempt.
    core.admin_act(
        &caller(0),
        "bob",
        Action::Require(super::policy::Override::Exempt),
        T0,
    )
    .unwrap();
    assert_eq!(
        login(&core, "bob", &ssh, None, T0.plus(1)),
        Some(Verdict::NotEnrolled)
    );
}

#[test]
fn remember_window_is_per_user_service_rhost_and_tty_and_ends() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let pts3 = ctx("sudo", "vm", "/dev/pts/3");
    let t1 = T0.plus(120);
    // First sudo asks; the code opens a window for this tty.
    assert_eq!(login(&core, "alice", &pts3, None, t1), None);
    assert_eq!(
        login(&core, "alice", &pts3, Some(&code(&secret, t1)), t1),
        Some(Verdict::Success)
    );
    // Same place, inside the window: no code.
    assert_eq!(
        login(&core, "alice", &pts3, None, t1.plus(899)),
        Some(Verdict::Success)
    );
    // Another tty, another remote host, another service, another user: asked.
    assert_eq!(
        login(
            &core,
            "alice",
            &ctx("sudo", "vm", "/dev/pts/4"),
            None,
            t1.plus(10)
        ),
        None
    );
    assert_eq!(
        login(
            &core,
            "alice",
            &ctx("sudo", "other", "/dev/pts/3"),
            None,
            t1.plus(10)
        ),
        None
    );
    assert_eq!(
        login(
            &core,
            "alice",
            &ctx("sshd", "vm", "/dev/pts/3"),
            None,
            t1.plus(10)
        ),
        None
    );
    enrol(&core, 1001);
    assert_eq!(login(&core, "bob", &pts3, None, t1.plus(10)), None);
    // The same terminal in another audit session (the next login on it): asked.
    let session = |s| LoginContext {
        audit_session: Some(s),
        caller_uid: 0,
        ..pts3.clone()
    };
    assert_eq!(login(&core, "alice", &session(7), None, t1.plus(11)), None);
    // A window opened in session 7 is that session's alone.
    let t2 = t1.plus(60);
    assert_eq!(
        login(&core, "alice", &session(7), Some(&code(&secret, t2)), t2),
        Some(Verdict::Success)
    );
    assert_eq!(
        login(&core, "alice", &session(7), None, t2.plus(1)),
        Some(Verdict::Success)
    );
    assert_eq!(login(&core, "alice", &session(8), None, t2.plus(2)), None);
    // The window passed: asked again.
    assert_eq!(login(&core, "alice", &pts3, None, t1.plus(900)), None);
}

#[test]
fn nothing_is_remembered_without_a_place_or_for_a_non_root_caller() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let nowhere = ctx("sudo", "", "");
    let t1 = T0.plus(120);
    assert_eq!(
        login(&core, "alice", &nowhere, Some(&code(&secret, t1)), t1),
        Some(Verdict::Success)
    );
    assert_eq!(login(&core, "alice", &nowhere, None, t1.plus(5)), None);
    // The user's own process (a locker) proves a code: nothing is remembered for it.
    let pts = ctx("sudo", "", "/dev/pts/9");
    let t2 = T0.plus(150);
    let (id, _) = core
        .begin_login(&caller(1000), "alice", pts.clone(), t2)
        .unwrap();
    let step = core
        .answer(&caller(1000), &id, code(&secret, t2).as_bytes(), t2)
        .unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Success));
    assert_eq!(login(&core, "alice", &pts, None, t2.plus(5)), None);
    // And a non-root caller never uses one made by root.
    let t3 = T0.plus(180);
    assert_eq!(
        login(&core, "alice", &pts, Some(&code(&secret, t3)), t3),
        Some(Verdict::Success)
    );
    let (_, step) = core
        .begin_login(&caller(1000), "alice", pts.clone(), t3.plus(1))
        .unwrap();
    assert_eq!(verdict(&step), None);
    assert_eq!(
        login(&core, "alice", &pts, None, t3.plus(2)),
        Some(Verdict::Success)
    );
    // A forward_pass login (the code checked before the password): nothing remembered.
    let fwd = LoginContext {
        forward_pass: true,
        ..ctx("sudo", "", "/dev/pts/8")
    };
    let t0 = T0.plus(210);
    assert_eq!(
        login(&core, "alice", &fwd, Some(&code(&secret, t0)), t0),
        Some(Verdict::Success)
    );
    assert_eq!(login(&core, "alice", &fwd, None, t0.plus(1)), None);
}

#[test]
fn a_failure_a_lock_a_reset_or_a_shorter_window_ends_what_was_remembered() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let pts = ctx("sudo", "vm", "/dev/pts/3");
    let ssh = ctx("sshd", "192.0.2.7", "ssh");
    let remembered = |at: UnixTime| {
        assert_eq!(
            login(&core, "alice", &pts, Some(&code(&secret, at)), at),
            Some(Verdict::Success)
        );
        assert_eq!(
            login(&core, "alice", &pts, None, at.plus(1)),
            Some(Verdict::Success)
        );
    };
    // A wrong code anywhere ends it.
    remembered(T0.plus(120));
    assert_eq!(
        login(&core, "alice", &ssh, Some("000000"), T0.plus(125)),
        Some(Verdict::Denied)
    );
    assert_eq!(login(&core, "alice", &pts, None, T0.plus(126)), None);
    // A lock, then an unlock: not revived.
    remembered(T0.plus(180));
    for i in 0..3 {
        login(&core, "alice", &ssh, Some("000000"), T0.plus(185 + i));
    }
    assert_eq!(
        login(&core, "alice", &pts, None, T0.plus(190)),
        Some(Verdict::Locked)
    );
    core.admin_act(&caller(0), "alice", Action::Unlock, T0.plus(191))
        .unwrap();
    assert_eq!(login(&core, "alice", &pts, None, T0.plus(192)), None);
    // A reset drops every entry (and the factor with it).
    remembered(T0.plus(240));
    core.admin_act(&caller(0), "alice", Action::Reset, T0.plus(245))
        .unwrap();
    let show = core.admin_show(&caller(0), "alice", T0.plus(246)).unwrap();
    assert!(!show.state.enrolled);
    let rec = core
        .load(&core.accounts().by_name("alice").unwrap())
        .unwrap()
        .unwrap();
    assert!(rec.remembered.is_empty());
    // A reload that shortens the window applies at once.
    let secret = enrol(&core, 1000);
    let at = T0.plus(300);
    assert_eq!(
        login(&core, "alice", &pts, Some(&code(&secret, at)), at),
        Some(Verdict::Success)
    );
    let mut shorter = (*core.config()).clone();
    shorter
        .services
        .get_mut(&ServiceName::try_from("sudo".to_owned()).unwrap())
        .unwrap()
        .remember_seconds = Bounded::new(30);
    core.apply_config(shorter).unwrap();
    assert_eq!(
        login(&core, "alice", &pts, None, at.plus(29)),
        Some(Verdict::Success)
    );
    assert_eq!(login(&core, "alice", &pts, None, at.plus(30)), None);
}

#[test]
fn remembered_entries_are_bounded_and_keyed_by_host() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    for i in 0..(super::services::MAX_REMEMBERED as u64 + 5) {
        let at = T0.plus(120 + 30 * i);
        let c = ctx("sudo", "vm", &format!("/dev/pts/{i}"));
        assert_eq!(
            login(&core, "alice", &c, Some(&code(&secret, at)), at),
            Some(Verdict::Success)
        );
    }
    let account = core.accounts().by_name("alice").unwrap();
    let mut rec = core.load(&account).unwrap().unwrap();
    assert_eq!(rec.remembered.len(), super::services::MAX_REMEMBERED);
    // The oldest went first.
    assert_eq!(rec.remembered[0].tty, "/dev/pts/5");
    // An entry another host of the fleet made never matches here.
    let last = rec.remembered.last().unwrap().clone();
    let now = last.at.plus(1);
    let c = ctx("sudo", "vm", &last.tty);
    assert_eq!(login(&core, "alice", &c, None, now), Some(Verdict::Success));
    core.update(&account, |r| {
        for e in &mut r.remembered {
            e.host = "another-host".into();
        }
        (super::store::Write::Save, Ok(()))
    })
    .unwrap();
    rec = core.load(&account).unwrap().unwrap();
    assert!(rec.remembered.iter().all(|e| e.host == "another-host"));
    assert_eq!(login(&core, "alice", &c, None, now.plus(1)), None);
}

/// Keeps every mail (the code mails' bodies hold the code).
#[derive(Default)]
struct Kept(std::sync::Mutex<Vec<super::mail::Outgoing>>);

impl super::mail::Outbox for Kept {
    fn send(
        &self,
        _: &twostep_config::Mail,
        mail: super::mail::Outgoing,
    ) -> Result<String, super::mail::SendError> {
        self.0.lock().unwrap().push(mail);
        Ok("250 ok".into())
    }
    fn post(&self, _: &twostep_config::Mail, mail: super::mail::Outgoing, _: String) {
        self.0.lock().unwrap().push(mail);
    }
}

impl Kept {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn code(&self) -> String {
        let sent = self.0.lock().unwrap();
        let body = &sent.last().unwrap().body;
        let at = body.find(" is ").unwrap() + 4;
        body[at..at + 6].to_owned()
    }
}

#[test]
fn methods_narrow_what_a_service_accepts() {
    let core = core_with(|c| {
        c.policy.methods = vec![MethodName::Totp, MethodName::Email];
        c.mail = twostep_config::Mail {
            transport: twostep_config::mail::Transport::Smtp,
            host: "127.0.0.1".into(),
            from: "t@example.org".into(),
            cooldown_seconds: Bounded::new(0),
            ..twostep_config::Mail::default()
        };
        service(c, "sshd", |r| r.methods = Some(vec![MethodName::Totp]));
        service(c, "webmail", |r| r.methods = Some(vec![MethodName::Email]));
    });
    let outbox = Arc::new(Kept::default());
    core.set_outbox(outbox.clone());
    // bob: email only.
    super::email_flows::set(&core, &caller(1001), "", "bob@example.org", b"", T0).unwrap();
    super::email_flows::confirm_own(&core, &caller(1001), outbox.code().as_bytes(), T0).unwrap();
    // alice: an authenticator app only.
    let secret = enrol(&core, 1000);
    let ssh = ctx("sshd", "192.0.2.7", "ssh");
    let webmail = ctx("webmail", "192.0.2.7", "");
    let failures = |name: &str| {
        core.admin_show(&caller(0), name, T0.plus(500))
            .unwrap()
            .state
            .failures
    };

    // bob on sshd (totp only): refused before any prompt, no mail, nothing counted.
    let mails = outbox.count();
    let (_, step) = core
        .begin_login(&caller(0), "bob", ssh.clone(), T0.plus(60))
        .unwrap();
    assert!(
        matches!(&step, Step::Done { verdict: Verdict::Denied, message } if message == super::services::NO_METHOD_HERE),
        "{step:?}"
    );
    assert_eq!(outbox.count(), mails);
    assert_eq!(failures("bob"), 0);
    // bob on webmail (email only): the code is mailed and works.
    let at = T0.plus(70);
    let (id, step) = core
        .begin_login(&caller(0), "bob", webmail.clone(), at)
        .unwrap();
    assert!(
        matches!(&step, Step::Prompt { prompt, .. } if prompt.starts_with("Code sent to")),
        "{step:?}"
    );
    let step = core
        .answer(&caller(0), &id, outbox.code().as_bytes(), at)
        .unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Success));

    // alice on webmail: refused, nothing counted; on sshd her code works.
    let (_, step) = core.begin_login(&caller(0), "alice", webmail, at).unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Denied));
    assert_eq!(failures("alice"), 0);
    assert_eq!(
        login(&core, "alice", &ssh, Some(&code(&secret, at)), at),
        Some(Verdict::Success)
    );

    // alice adds an address: on sshd the prompt does not offer a mailed code, and the
    // request word is not taken as one (no mail).
    super::email_flows::set(
        &core,
        &caller(1000),
        "",
        "alice@example.org",
        code(&secret, T0.plus(90)).as_bytes(),
        T0.plus(90),
    )
    .unwrap();
    super::email_flows::confirm_own(&core, &caller(1000), outbox.code().as_bytes(), T0.plus(90))
        .unwrap();
    let at = T0.plus(120);
    let (id, step) = core
        .begin_login(&caller(0), "alice", ssh.clone(), at)
        .unwrap();
    assert!(
        matches!(&step, Step::Prompt { prompt, .. } if prompt == "Verification code (or recovery code): "),
        "{step:?}"
    );
    let mails = outbox.count();
    let word = core.config().mail.request_word.clone();
    let step = core.answer(&caller(0), &id, word.as_bytes(), at).unwrap();
    assert_eq!(verdict(&step), Some(Verdict::Denied), "{step:?}");
    assert_eq!(outbox.count(), mails);
    // Elsewhere she is offered the mailed code.
    let (_, step) = core
        .begin_login(&caller(0), "alice", ctx("login", "", "tty1"), at)
        .unwrap();
    assert!(
        matches!(&step, Step::Prompt { prompt, .. } if prompt.contains(&word)),
        "{step:?}"
    );
}

#[test]
fn a_required_user_does_not_enrol_at_login_where_apps_are_not_accepted() {
    let core = core_with(|c| {
        c.policy.require = twostep_config::Require::All;
        c.policy.methods = vec![MethodName::Totp, MethodName::Email];
        c.mail.transport = twostep_config::mail::Transport::Sendmail;
        c.mail.from = "t@example.org".into();
        service(c, "webmail", |r| r.methods = Some(vec![MethodName::Email]));
    });
    let (_, step) = core
        .begin_login(&caller(0), "bob", ctx("webmail", "192.0.2.7", ""), T0)
        .unwrap();
    assert!(
        matches!(&step, Step::Done { verdict: Verdict::Denied, message } if message == super::services::NO_ENROLMENT_HERE),
        "{step:?}"
    );
}

#[test]
fn an_admin_sees_the_windows_in_force() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let pts = ctx("sudo", "", "/dev/pts/3");
    let at = T0.plus(120);
    assert_eq!(
        login(&core, "alice", &pts, Some(&code(&secret, at)), at),
        Some(Verdict::Success)
    );
    let shown = core.admin_show(&caller(0), "alice", at.plus(1)).unwrap();
    assert_eq!(
        shown.remembered,
        vec![(
            "sudo".to_owned(),
            String::new(),
            "/dev/pts/3".to_owned(),
            at.plus(900)
        )]
    );
    // Over, or ended by a failed attempt: not shown.
    let shown = core.admin_show(&caller(0), "alice", at.plus(900)).unwrap();
    assert!(shown.remembered.is_empty());
    let ssh = ctx("sshd", "192.0.2.7", "ssh");
    login(&core, "alice", &ssh, Some("000000"), at.plus(5));
    let shown = core.admin_show(&caller(0), "alice", at.plus(6)).unwrap();
    assert!(shown.remembered.is_empty());
}

/// Review of this round: a window ends when the user's factors change. Whoever opened one
/// with a leaked key (password and key, over ssh from their address) must not keep logging
/// in from there with the password alone once the user has replaced the key.
#[test]
fn a_window_ends_when_the_authenticator_is_replaced() {
    let core = core_with(|c| service(c, "sshd", |r| r.remember_seconds = Bounded::new(900)));
    let old = enrol(&core, 1000);
    let ssh = ctx("sshd", "198.51.100.7", "ssh");
    let t1 = T0.plus(120);
    assert_eq!(
        login(&core, "alice", &ssh, Some(&code(&old, t1)), t1),
        Some(Verdict::Success)
    );
    assert_eq!(
        login(&core, "alice", &ssh, None, t1.plus(1)),
        Some(Verdict::Success),
        "the window is open"
    );
    // Alice moves to a new key (proof with the old one, confirm the new one).
    let t2 = T0.plus(180);
    let p = core
        .enroll_begin(&caller(1000), code(&old, t2).as_bytes(), t2)
        .unwrap();
    core.enroll_confirm(&caller(1000), code(&p.secret_base32, t2).as_bytes(), t2)
        .unwrap();
    assert_eq!(
        login(&core, "alice", &ssh, None, t2.plus(1)),
        None,
        "asked again"
    );
}

/// Review of this round: a `forward_pass` Begin (the password not checked yet) neither uses
/// a window nor writes anything (review H1), so it also shows nothing of whether one is open.
#[test]
fn a_forward_pass_begin_uses_no_window_and_writes_nothing() {
    let core = core_with(|_| {});
    let secret = enrol(&core, 1000);
    let pts = ctx("sudo", "", "/dev/pts/3");
    let t1 = T0.plus(120);
    assert_eq!(
        login(&core, "alice", &pts, Some(&code(&secret, t1)), t1),
        Some(Verdict::Success)
    );
    let account = core.accounts().by_name("alice").unwrap();
    let before = core.load(&account).unwrap().unwrap();
    let fwd = LoginContext {
        forward_pass: true,
        ..pts.clone()
    };
    assert_eq!(
        login(&core, "alice", &fwd, None, t1.plus(5)),
        None,
        "a prompt"
    );
    let after = core.load(&account).unwrap().unwrap();
    assert_eq!(
        (after.last_success, after.events.len()),
        (before.last_success, before.events.len())
    );
}
