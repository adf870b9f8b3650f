// SPDX-License-Identifier: MIT OR Apache-2.0
//! Review of the issue-19 fixes (findings 1, 2 and 5, siblings of faults 3 and 9): whether a
//! user must use 2FA, and which record is theirs, is decided for the uid, never for the one
//! name a login happens to use; what cannot be decided fails closed.
//!
//! - The group policy looks at every name of the account (the name used, the uid's own
//!   name, the record's name): a second name (`useradd -o`) of a required member is
//!   required too.
//! - Old name-keyed records of several names of one uid are not migrated first-come: that
//!   uid's logins fail closed, and the log names the files for the admin.
//! - A required group that disappears after the config was loaded refuses users without
//!   a key (and says so in the log) instead of silently requiring nobody.
#![forbid(unsafe_code)]

use twostep_e2e::alias::UidUser;
use twostep_e2e::client::Client;
use twostep_e2e::group::Group;
use twostep_e2e::pam::strerror;
use twostep_e2e::{otp, DaemonConfig, Stack, User};

fn groups_policy(group: &Group) -> DaemonConfig {
    DaemonConfig::default()
        .set("policy", "require", "\"groups\"")
        .set("policy", "groups", &format!("[\"{}\"]", group.name()))
}

#[test]
fn a_second_name_of_a_required_group_member_is_required_too() {
    let g = Group::create();
    let s = Stack::start_with(groups_policy(&g), "nullok");
    let member = User::create();
    g.add(&member);
    let alias = UidUser::alias_of(&member);

    // Both names get the same answer: enrolment, not "not enrolled".
    for name in [member.name(), alias.name()] {
        let begun = Client::connect(s.bus.address()).begin(name);
        let (session, _) = begun.unwrap_or_else(|e| panic!("Begin for {name}: {e:?}"));
        assert!(
            !session.is_empty(),
            "{name} was not asked to enrol:\n{}",
            s.daemon.log()
        );
    }
    let log = s.daemon.log();
    assert!(
        !log.contains("outcome=not-enrolled"),
        "a name of a required member was let through as not enrolled:\n{log}"
    );
    // On the shipped nullok stack the alias does not get in with the password alone.
    let run = s.pam.auth(alias.name()).run();
    assert!(
        !run.succeeded(),
        "the alias of a required, unenrolled member passed without 2FA:\n{run}\n{}",
        s.daemon.log()
    );
    assert!(
        run.conversation()
            .contains("Two-factor authentication is required"),
        "the alias was not offered enrolment:\n{run}"
    );
}

#[test]
fn a_second_name_of_an_unrequired_user_stays_unrequired() {
    // The per-uid decision does not make anyone required who is not.
    let g = Group::create();
    let s = Stack::start_with(groups_policy(&g), "nullok");
    let user = User::create();
    let alias = UidUser::alias_of(&user);
    s.pam.auth(alias.name()).run().assert_success();
    s.pam.auth(user.name()).run().assert_success();
}

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// Old-format records: `user`'s with a key, `alias`'s without one (switched off). The
/// file names, in that order.
fn write_legacy_pair(s: &Stack, user: &User, alias: &UidUser) -> Vec<String> {
    let enrolled = twostep_e2e::records::with_key(user.name(), SECRET);
    let mut off = twostepd::core::record::Record::new(alias.name());
    off.note(
        twostepd::core::UnixTime(otp::now() - 100),
        twostepd::core::audit::EventKind::Disable,
        "switched off by the user",
        &twostepd::core::audit::Source::own(&off),
    );
    let mut files = Vec::new();
    for (name, record) in [(user.name(), &enrolled), (alias.name(), &off)] {
        files.push(twostep_e2e::records::write_name_keyed(
            s.daemon.state_dir(),
            name,
            record,
        ));
    }
    files
}

#[test]
fn old_records_under_two_names_of_one_uid_are_not_migrated_at_start() {
    let mut s = Stack::start_with(DaemonConfig::default(), "nullok");
    let user = User::create();
    let alias = UidUser::alias_of(&user);
    let files = write_legacy_pair(&s, &user, &alias);
    s.daemon.restart();
    let users = s.daemon.state_dir().join("users");
    for file in &files {
        assert!(
            users.join(file).exists(),
            "{file} was migrated at start although another name of the uid has one:\n{}",
            s.daemon.log()
        );
    }
    for name in [user.name(), alias.name()] {
        s.pam
            .auth(name)
            .run()
            .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    }
}

/// An admin or self-service write (here `user unlock` of the key-less name) must not move
/// one name's old record either: every transaction checks the uid's other names first.
#[test]
fn a_write_does_not_migrate_one_of_two_old_records_of_one_uid() {
    let s = Stack::start_with(DaemonConfig::default(), "nullok");
    let user = User::create();
    let alias = UidUser::alias_of(&user);
    let files = write_legacy_pair(&s, &user, &alias);
    let users = s.daemon.state_dir().join("users");
    let out = s.ctl.run(None, &["user", "unlock", alias.name()], b"");
    assert_eq!(out.status.code(), Some(1), "{out}");
    for file in &files {
        assert!(users.join(file).exists(), "{file} was moved or removed");
    }
    for name in [user.name(), alias.name()] {
        s.pam
            .auth(name)
            .run()
            .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    }
}

#[test]
fn old_records_under_two_names_of_one_uid_fail_closed_instead_of_first_come() {
    let s = Stack::start_with(DaemonConfig::default(), "nullok");
    let user = User::create();
    let alias = UidUser::alias_of(&user);
    let secret = SECRET;
    let files = write_legacy_pair(&s, &user, &alias);
    let users = s.daemon.state_dir().join("users");

    // The alias comes first: its key-less record must not become the uid's record.
    s.pam
        .auth(alias.name())
        .run()
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    // The enrolled user is not let in with the password alone, nor with a code: the
    // admin decides which record is right.
    s.pam
        .auth(user.name())
        .run()
        .assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    let now = otp::settled_step(30, std::time::Duration::from_secs(5));
    let code = otp::totp_at_step(secret, otp::Algorithm::Sha1, 6, 30, now);
    s.pam.login(user.name(), &code).assert_refused();
    let log = s.daemon.log();
    for file in &files {
        assert!(
            log.contains(file.as_str()),
            "the log does not name {file}:\n{log}"
        );
        assert!(users.join(file).exists(), "{file} was moved or removed");
    }

    // The admin removes the alias's stale record: the enrolment is migrated as before.
    std::fs::remove_file(users.join(&files[1])).expect("remove the alias's old record");
    s.pam.login(user.name(), &code).assert_success();
    s.pam
        .login(
            alias.name(),
            &otp::totp_at_step(secret, otp::Algorithm::Sha1, 6, 30, now + 1),
        )
        .assert_success();
}

#[test]
fn a_required_group_deleted_after_load_fails_closed_for_users_without_a_key() {
    let g = Group::create();
    let s = Stack::start_with(groups_policy(&g), "nullok");
    let member = User::create();
    g.add(&member);
    let enrolled = User::create();
    g.add(&enrolled);
    let e = s.ctl.enroll(&enrolled);
    let outsider = User::create();
    // While the group exists, a non-member without a key passes the nullok stack.
    s.pam.auth(outsider.name()).run().assert_success();

    g.delete_now();
    // Now nobody can tell who is required: users without a key are refused, not let in.
    for name in [member.name(), outsider.name()] {
        let run = s.pam.auth(name).run();
        run.assert_refused_with(strerror::AUTHINFO_UNAVAIL);
    }
    let log = s.daemon.log();
    assert!(
        log.contains(&format!("group={} outcome=denied", g.name()))
            && log.contains("this required group no longer exists"),
        "the missing group is not logged:\n{log}"
    );
    // Enrolled users keep using 2FA as before.
    s.pam
        .login(enrolled.name(), &e.code_after(1))
        .assert_success();
    s.pam
        .login(enrolled.name(), &e.wrong_code())
        .assert_refused_with(strerror::AUTH_ERR);
}

#[test]
fn login_and_self_service_agree_when_only_the_second_name_is_a_member() {
    // The uid's first name is in no required group; its second name is. Neither the
    // login under the first name nor self-service (which knows the caller by uid, so by
    // the first name) may treat the uid as not required.
    let g = Group::create();
    let config = groups_policy(&g).set("policy", "may_toggle", "true");
    let s = Stack::start_with(config, "nullok");
    let user = User::create();
    let alias = UidUser::alias_of(&user);
    g.add_name(alias.name());

    let run = s.pam.auth(user.name()).run();
    assert!(
        !run.succeeded(),
        "the first name of a required uid passed without 2FA:\n{run}\n{}",
        s.daemon.log()
    );
    let e = s.ctl.enroll(&user);
    let out = s.ctl.run(
        Some(user.creds()),
        &["disable"],
        format!("{}\n", e.code_after(1)).as_bytes(),
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "2FA was switched off for a required uid:\n{out}"
    );
    assert!(out.stderr.contains("required"), "{out}");
    assert_eq!(s.ctl.status(&user)["enrolled"], true);
}
