// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 19, fault 2: login conversations begun and never answered must not lock other
//! users out. Root is not exempt: sessions are bounded per connection, per target user and
//! in total, and a connection's sessions end when it leaves the bus.
#![forbid(unsafe_code)]

use std::time::Duration;

use twostep_e2e::client::Client;
use twostep_e2e::{proc, Stack, User};

/// What a script opening `ssh`/`su` logins and hanging up at the code prompt amounts to.
const FLOOD: usize = 4096;

/// Begin `count` conversations for `user` on `conns` root connections, never answering;
/// returns the connections (kept open) and how many Begins got a prompt.
fn flood(address: &str, user: &str, conns: usize, count: usize) -> (Vec<Client>, usize) {
    let clients: Vec<Client> = (0..conns).map(|_| Client::connect(address)).collect();
    let mut opened = 0;
    for i in 0..count {
        if let Ok((session, _)) = clients[i % conns].begin(user) {
            if !session.is_empty() {
                opened += 1;
            }
        }
    }
    (clients, opened)
}

#[test]
fn unanswered_logins_of_one_user_do_not_block_another_users_login() {
    let s = Stack::start();
    let a = User::create();
    let b = User::create();
    let _ea = s.ctl.enroll(&a);
    let eb = s.ctl.enroll(&b);

    // Many connections (ssh attempts) and one connection (a pipelining script).
    let (many, opened_many) = flood(s.bus.address(), a.name(), 64, FLOOD);
    let (one, opened_one) = flood(s.bus.address(), a.name(), 1, FLOOD / 4);
    assert!(opened_many > 0, "the flood opened no session at all");
    assert!(
        opened_one <= 2,
        "one connection (one PAM transaction) held {opened_one} sessions"
    );
    assert!(
        opened_many + opened_one < FLOOD,
        "user A alone held {} sessions",
        opened_many + opened_one
    );

    // B still logs in, through libpam and the module.
    s.pam.login(b.name(), &eb.code_after(1)).assert_success();
    drop((many, one));
}

#[test]
fn a_connections_sessions_end_when_it_leaves_the_bus() {
    let s = Stack::start();
    let a = User::create();
    let ea = s.ctl.enroll(&a);

    let (clients, opened) = flood(s.bus.address(), a.name(), 64, 1024);
    assert!(opened > 0);
    // While the flood holds A's sessions, A's own new conversations are refused...
    let probe = Client::connect(s.bus.address());
    let refused = probe.begin(a.name());
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.name == "org.twostep.Error.Busy"),
        "a user's sessions are not bounded: {refused:?}"
    );
    drop(probe);

    // ...and once those connections are gone, so are their sessions.
    drop(clients);
    let released = proc::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let c = Client::connect(s.bus.address());
        c.begin(a.name()).is_ok()
    });
    assert!(
        released,
        "the sessions of closed connections were kept:\n{}",
        s.daemon.log()
    );
    s.pam.login(a.name(), &ea.code_after(1)).assert_success();
}
