// SPDX-License-Identifier: MIT OR Apache-2.0
//! The versioned login contract (issue 12 item 4): answer shapes named by form on
//! `org.twostep.Login2`, and `org.twostep.Login1` kept for modules older than that.
//!
//! Each combination of old and new, with real components:
//! - new module, new daemon: the built `pam_twostep.so` (through real libpam, the
//!   harness's `twostep-e2e-pam` client) calls `Login2` on the built `twostepd`, and
//!   nothing on `Login1` (its debug lines name the interface it calls);
//! - old client, new daemon: `Login1` as today's module calls it (the harness's zbus
//!   client, the contract's `LoginProxy`) still logs in, with today's kinds and bytes;
//! - new client, new daemon on `Login2` directly: the same login in shapes by form;
//! - new module, old daemon: a stand-in owning the daemon's name that serves `Login1`
//!   only ([`FakeOwner`], as every daemon before Login2): the module falls back to `Login1`,
//!   says so at notice level, and the verdict is the stand-in's.
//!
//! An old module meeting a step `Login1` cannot carry is a unit test in
//! `daemon/src/bus/iface.rs` and `pam_module/src/bus`: today's daemon sends no such step.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::Duration;

use twostep_e2e::client::{Client as BusClient, CALL_TIMEOUT};
use twostep_e2e::fake_owner::{Answer, FakeOwner, Script};
use twostep_e2e::pamclient::Client;
use twostep_e2e::syslog::Syslog;
use twostep_e2e::{Bus, Ctl, Daemon, PamService, User};
use twostep_proto::{Accept, Login2Proxy, Step, Verdict, LOGIN2_INTERFACE, LOGIN_INTERFACE};

/// The module's debug lines arrive within this.
const LOG_WAIT: Duration = Duration::from_secs(5);

/// `Login2.Begin` and `Answer` as a new client calls them, on one connection of root.
struct Login2 {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

impl Login2 {
    fn connect(bus: &Bus) -> Login2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let conn = rt
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, async {
                    zbus::connection::Builder::address(bus.address())?
                        .build()
                        .await
                })
                .await
            })
            .expect("connecting timed out")
            .expect("connect to the bus");
        Login2 { rt, conn }
    }

    fn begin(&self, user: &str) -> (String, Step) {
        self.rt.block_on(async {
            let p = Login2Proxy::new(&self.conn).await.expect("proxy");
            let ctx: HashMap<&str, &str> = [("service", "twostep-e2e")].into_iter().collect();
            let (session, kind, message, prompt, digits, max, echo) =
                tokio::time::timeout(CALL_TIMEOUT, p.begin(user, ctx))
                    .await
                    .expect("Begin timed out")
                    .expect("Login2.Begin");
            let step = Step::from_wire2((kind, message, prompt, digits, max, echo))
                .expect("a Login2 step");
            (session, step)
        })
    }

    fn answer(&self, session: &str, answer: &[u8]) -> Step {
        self.rt.block_on(async {
            let p = Login2Proxy::new(&self.conn).await.expect("proxy");
            let wire = tokio::time::timeout(CALL_TIMEOUT, p.answer(session, answer))
                .await
                .expect("Answer timed out")
                .expect("Login2.Answer");
            Step::from_wire2(wire).expect("a Login2 step")
        })
    }
}

fn verdict(step: &Step) -> Option<Verdict> {
    match step {
        Step::Done { verdict, .. } => Some(*verdict),
        Step::Prompt { .. } => None,
    }
}

#[test]
fn the_built_module_speaks_login2_to_the_daemon() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let pam = PamService::twostep(bus.address(), "debug");
    let syslog = Syslog::start();

    let run = Client::user(&pam, user.name())
        .answer(e.code_after(1))
        .syslog(&syslog)
        .run();
    run.assert_code("PAM_SUCCESS");
    assert_eq!(
        run.prompts(),
        [format!("PROMPT_ECHO_OFF: {}", twostep_e2e::prompts::CODE)],
        "{run}"
    );
    for call in ["Begin", "Answer"] {
        let needle = format!("calling {LOGIN2_INTERFACE}.{call}");
        assert!(
            syslog
                .wait_for(&["pam_twostep", &needle], LOG_WAIT)
                .is_some(),
            "no {needle:?} line:\n{}",
            syslog.dump()
        );
    }
    let login1 = syslog.matching(&[LOGIN_INTERFACE]);
    assert!(login1.is_empty(), "Login1 used:\n{}", login1.join("\n"));

    // A wrong code on the same contract: denied, as before.
    Client::user(&pam, user.name())
        .answer(e.wrong_code())
        .syslog(&syslog)
        .run()
        .assert_code("PAM_AUTH_ERR");
}

#[test]
fn an_old_client_on_login1_still_logs_in() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let old = BusClient::connect(bus.address());

    // Today's kinds, by method: a code or a recovery code (the user has recovery codes).
    let (session, kind) = old.begin(user.name()).expect("Login1.Begin");
    assert_eq!(kind, "prompt-code-or-recovery");
    assert_eq!(
        old.answer(&session, e.wrong_code().as_bytes()).as_deref(),
        Ok("denied")
    );
    let (session, kind) = old.begin(user.name()).expect("Login1.Begin");
    assert_eq!(kind, "prompt-code-or-recovery");
    assert_eq!(
        old.answer(&session, e.code_after(1).as_bytes()).as_deref(),
        Ok("success")
    );
    // An unenrolled user, optional 2FA: the not-enrolled verdict, no session.
    let other = User::create();
    assert_eq!(
        old.begin(other.name()),
        Ok((String::new(), "not-enrolled".into()))
    );
}

#[test]
fn a_new_client_on_login2_sees_the_same_login_in_shapes_by_form() {
    let bus = Bus::start();
    let _daemon = Daemon::start(&bus);
    let ctl = Ctl::new(&bus);
    let user = User::create();
    let e = ctl.enroll(&user);
    let new = Login2::connect(&bus);

    let (session, step) = new.begin(user.name());
    let Step::Prompt { accept, .. } = &step else {
        panic!("no prompt: {step:?}");
    };
    let digits = u8::try_from(e.digits).expect("digits");
    assert_eq!(
        *accept,
        Accept::DigitsOrText {
            n: digits,
            max: twostep_proto::MAX_RECOVERY_LEN
        }
    );
    assert!(!accept.echo());
    let wrong = new.answer(&session, e.wrong_code().as_bytes());
    assert_eq!(verdict(&wrong), Some(Verdict::Denied), "{wrong:?}");
    let (session, _) = new.begin(user.name());
    let right = new.answer(&session, e.code_after(1).as_bytes());
    assert_eq!(verdict(&right), Some(Verdict::Success), "{right:?}");
}

#[test]
fn the_built_module_falls_back_to_login1_on_a_daemon_without_login2() {
    let bus = Bus::start();
    // Serves Login1 only, as every daemon before Login2: a code prompt, then "denied".
    let owner = FakeOwner::start(
        &bus,
        Script {
            begin: Answer::Normally,
            answer: Answer::Normally,
        },
    );
    let pam = PamService::twostep(bus.address(), "debug");
    let syslog = Syslog::start();
    let run = Client::user(&pam, "root")
        .answer("123456")
        .syslog(&syslog)
        .run();
    // The stand-in's verdict, reached on Login1: the login went through the old contract.
    run.assert_code("PAM_AUTH_ERR");
    assert_eq!(
        run.prompts(),
        [format!(
            "PROMPT_ECHO_OFF: {}",
            twostep_e2e::prompts::CODE_ONLY
        )],
        "{run}"
    );
    assert_eq!(owner.begins(), 1, "{run}");
    assert_eq!(owner.answers(), 1, "{run}");
    let notice = syslog
        .wait_for(
            &["pam_twostep", "does not serve", LOGIN2_INTERFACE],
            LOG_WAIT,
        )
        .unwrap_or_else(|| panic!("no fallback line:\n{}", syslog.dump()));
    assert!(notice.contains(LOGIN_INTERFACE), "{notice}");
    assert!(notice.contains("Upgrade twostepd"), "{notice}");
    let answer = format!("calling {LOGIN_INTERFACE}.Answer");
    assert!(
        !syslog.matching(&[&answer]).is_empty(),
        "no {answer:?} line:\n{}",
        syslog.dump()
    );
}
