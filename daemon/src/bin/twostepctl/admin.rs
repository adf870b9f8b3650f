// SPDX-License-Identifier: MIT OR Apache-2.0
//! Admin commands. The daemon authorizes them (root or the admin group); this only asks.

use clap::Subcommand;
use serde_json::{json, Value as Json};
use twostep_proto::status_key as key;
use twostep_proto::{event_key, repair_key, AdminProxy, Properties};
use zbus::zvariant::Value;

use crate::io::{explain, json_time, out_json, when};
use twostepd::core::audit::field;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Every user twostep knows, with methods, policy, lock and last activity. With
    /// --pending: the users the policy requires who have not enrolled yet (members of the
    /// required groups, or with `require = "all"` the local accounts of people).
    List {
        /// Only the required users without a second factor (the roll-out view).
        #[arg(long)]
        pending: bool,
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// One user, with their latest events.
    Show {
        name: String,
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Forget the user's factors (lost phone): they enrol again, at next login if required.
    Reset { name: String },
    /// Switch 2FA off for the user (if policy still requires it, they enrol again).
    Disable { name: String },
    /// Require 2FA for the user, whatever the config says.
    Require { name: String },
    /// Exempt the user from 2FA requirements, whatever the config says.
    Exempt { name: String },
    /// Drop the user's required/exempt override: the config decides.
    Default { name: String },
    /// Let the user switch their own 2FA off (when not required).
    AllowToggle { name: String },
    /// Do not let the user switch their own 2FA off.
    DenyToggle { name: String },
    /// Clear the user's failed attempts and lock.
    Unlock { name: String },
    /// A user's app passwords: list, revoke.
    #[command(subcommand)]
    AppPassword(crate::apppw::AdminCommand),
    /// A user whose record is damaged fails closed: show what each copy of the record
    /// holds and what a repair writes; with --yes write it (failures, locks and replay
    /// marks never go back; unused recovery codes are marked spent).
    Repair {
        name: String,
        /// Write the repaired record (the damaged file is kept beside it).
        #[arg(long)]
        yes: bool,
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(conn: &zbus::Connection, cmd: UserCommand) -> Result<(), String> {
    let admin = AdminProxy::new(conn).await.map_err(explain)?;
    let (name, done, result) = match cmd {
        UserCommand::List {
            pending: true,
            json,
        } => return pending(&admin, json).await,
        UserCommand::List {
            pending: false,
            json,
        } => return list(&admin, json, false).await,
        UserCommand::Show { name, json } => return show(&admin, &name, json).await,
        UserCommand::Repair { name, yes, json } => return repair(&admin, &name, yes, json).await,
        UserCommand::AppPassword(c) => return crate::apppw::admin(conn, c).await,
        UserCommand::Reset { name } => {
            let r = admin.reset_user(&name).await;
            (name, "factors forgotten; they enrol again", r)
        }
        UserCommand::Disable { name } => {
            let r = admin.disable_user(&name).await;
            (name, "2FA switched off", r)
        }
        UserCommand::Require { name } => {
            let r = admin.set_requirement(&name, "required").await;
            (name, "2FA now required", r)
        }
        UserCommand::Exempt { name } => {
            let r = admin.set_requirement(&name, "exempt").await;
            (name, "now exempt from 2FA requirements", r)
        }
        UserCommand::Default { name } => {
            let r = admin.set_requirement(&name, "default").await;
            (name, "requirement follows the config again", r)
        }
        UserCommand::AllowToggle { name } => {
            let r = admin.set_may_toggle(&name, "allow").await;
            (name, "may switch 2FA off", r)
        }
        UserCommand::DenyToggle { name } => {
            let r = admin.set_may_toggle(&name, "deny").await;
            (name, "may not switch 2FA off", r)
        }
        UserCommand::Unlock { name } => {
            let r = admin.unlock(&name).await;
            (name, "unlocked", r)
        }
    };
    result.map_err(|e| format!("{name}: {}", explain(e)))?;
    outln!("{name}: {done}");
    Ok(())
}

pub async fn locks(conn: &zbus::Connection, json: bool) -> Result<(), String> {
    let admin = AdminProxy::new(conn).await.map_err(explain)?;
    list(&admin, json, true).await
}

pub async fn reload(conn: &zbus::Connection) -> Result<(), String> {
    let admin = AdminProxy::new(conn).await.map_err(explain)?;
    admin.reload().await.map_err(explain)?;
    outln!("configuration reloaded");
    Ok(())
}

/// A bus value as JSON, times as the daemon sent them (Unix seconds): the text output
/// reads them; [`for_output`] makes them RFC 3339 for `--json`.
pub(crate) fn to_json(v: &Value<'_>) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::U32(n) => json!(n),
        Value::U64(n) => json!(n),
        Value::I64(n) => json!(n),
        Value::Str(s) => json!(s.as_str()),
        Value::Value(inner) => to_json(inner),
        // An event of `events` aa{sv} (keys of `twostep_proto::event_key`).
        Value::Dict(d) => Json::Object(
            d.iter()
                .map(|(k, v)| {
                    let k = <&str>::try_from(k).unwrap_or_default().to_owned();
                    (k, to_json(v))
                })
                .collect(),
        ),
        Value::Array(a) => Json::Array(
            a.iter()
                .map(|e| match e {
                    // `authenticators` a(stt): name, added, last used.
                    Value::Structure(s) => {
                        let f = s.fields();
                        let name = f
                            .first()
                            .and_then(|v| <&str>::try_from(v).ok())
                            .unwrap_or("");
                        let added = f.get(1).and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
                        let used = f.get(2).and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
                        json!({ "name": name, "added": added, "last_used": used })
                    }
                    other => to_json(other),
                })
                .collect(),
        ),
        other => json!(other.to_string()),
    }
}

fn object(p: &Properties) -> Json {
    Json::Object(
        p.iter()
            .map(|(k, v)| {
                let j = if k == key::REMEMBERED {
                    remembered_json(v)
                } else {
                    to_json(v)
                };
                (k.clone(), j)
            })
            .collect(),
    )
}

/// `remembered` a(ssst): service, remote host, tty, until.
fn remembered_json(v: &Value<'_>) -> Json {
    let Value::Array(a) = v else {
        return json!([]);
    };
    Json::Array(
        a.iter()
            .filter_map(|e| match e {
                Value::Structure(s) => {
                    let f = s.fields();
                    let text = |i: usize| f.get(i).and_then(|v| <&str>::try_from(v).ok());
                    let until = f.get(3).and_then(|v| u64::try_from(v).ok());
                    Some(json!({
                        "service": text(0)?,
                        "rhost": text(1)?,
                        "tty": text(2)?,
                        "until": until?,
                    }))
                }
                _ => None,
            })
            .collect(),
    )
}

/// A user dict of [`object`] as `--json` prints it: every time RFC 3339 or `null`
/// ([`json_time`]): the lock, last success and failure, each authenticator's `added` and
/// `last_used`, each event's `at`.
fn for_output(mut u: Json) -> Json {
    let time = |v: &mut Json, k: &str| {
        if let Some(x) = v.get_mut(k) {
            *x = json_time(x.as_u64().unwrap_or(0));
        }
    };
    for k in [
        key::LOCKED_UNTIL,
        key::LAST_SUCCESS,
        key::LAST_FAILURE,
        key::CLOCK_SKEW_SEEN,
        key::CLOCK_BACK_SEEN,
        key::APP_PASSWORD_LOCKED_UNTIL,
    ] {
        time(&mut u, k);
    }
    if let Some(Json::Array(list)) = u.get_mut(key::AUTHENTICATORS) {
        for a in list {
            time(a, "added");
            time(a, "last_used");
        }
    }
    if let Some(Json::Array(list)) = u.get_mut(key::EVENTS) {
        for e in list {
            time(e, event_key::AT);
        }
    }
    if let Some(Json::Array(list)) = u.get_mut(key::REMEMBERED) {
        for r in list {
            time(r, "until");
        }
    }
    u
}

fn s(p: &Json, k: &str) -> String {
    match p.get(k) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Bool(b)) => if *b { "yes" } else { "no" }.into(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The `authenticators` of a user dict (as JSON objects: name, added, last_used).
fn authenticators(p: &Json) -> &[Json] {
    match p.get(key::AUTHENTICATORS) {
        Some(Json::Array(a)) => a,
        _ => &[],
    }
}

fn t(p: &Json, k: &str) -> u64 {
    p.get(k).and_then(Json::as_u64).unwrap_or(0)
}

async fn list(admin: &AdminProxy<'_>, json: bool, locked_only: bool) -> Result<(), String> {
    let users: Vec<Json> = admin
        .list_users()
        .await
        .map_err(explain)?
        .iter()
        .map(object)
        .filter(|u| !locked_only || t(u, key::LOCKED_UNTIL) != 0)
        .collect();
    if json {
        out_json(&Json::Array(users.into_iter().map(for_output).collect()));
        return Ok(());
    }
    if users.is_empty() {
        outln!(
            "{}",
            if locked_only {
                "No user is locked."
            } else {
                "No users yet."
            }
        );
        return Ok(());
    }
    outln!(
        "{:<16} {:<8} {:<9} {:<30} {:>8} {:<23} {:<23} {:<23}",
        "USER",
        "METHODS",
        "REQUIRED",
        "WHY",
        "RECOVERY",
        "LOCKED UNTIL",
        "LAST SUCCESS",
        "LAST FAILURE"
    );
    for u in &users {
        let methods = if !s(u, key::ERROR).is_empty() {
            "UNREADABLE".to_owned()
        } else if s(u, key::ENROLLED) == "yes" {
            match authenticators(u).len() {
                0 | 1 => "totp".to_owned(),
                n => format!("totp({n})"),
            }
        } else {
            "-".to_owned()
        };
        let locked = match t(u, key::LOCKED_UNTIL) {
            0 => "-".to_owned(),
            x => when(x),
        };
        outln!(
            "{:<16} {:<8} {:<9} {:<30} {:>8} {:<23} {:<23} {:<23}",
            s(u, key::USER),
            methods,
            s(u, key::REQUIRED),
            s(u, key::WHY),
            s(u, key::RECOVERY_CODES_LEFT),
            locked,
            when(t(u, key::LAST_SUCCESS)),
            when(t(u, key::LAST_FAILURE)),
        );
    }
    Ok(())
}

/// `user list --pending`: who still has to enrol.
async fn pending(admin: &AdminProxy<'_>, json: bool) -> Result<(), String> {
    let users: Vec<Json> = admin
        .list_pending()
        .await
        .map_err(explain)?
        .iter()
        .map(object)
        .collect();
    if json {
        out_json(&Json::Array(users.into_iter().map(for_output).collect()));
        return Ok(());
    }
    if users.is_empty() {
        outln!("Every user the policy requires has a second factor.");
        return Ok(());
    }
    outln!("{:<16} {:>7} {:<30} {:<8}", "USER", "UID", "WHY", "STARTED");
    for u in &users {
        outln!(
            "{:<16} {:>7} {:<30} {:<8}",
            s(u, key::USER),
            s(u, key::UID),
            s(u, key::WHY),
            if s(u, key::PENDING_ENROLLMENT) == "yes" {
                "yes"
            } else {
                "no"
            },
        );
    }
    outln!(
        "\n{} required user{} without a second factor (STARTED: an enrolment waits for its \
         first code).",
        users.len(),
        if users.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

async fn show(admin: &AdminProxy<'_>, name: &str, json: bool) -> Result<(), String> {
    let p = admin
        .show_user(name)
        .await
        .map_err(|e| format!("{name}: {}", explain(e)))?;
    let u = object(&p);
    if json {
        out_json(&for_output(u));
        return Ok(());
    }
    if !s(&u, key::ERROR).is_empty() {
        outln!(
            "User:             {name}\nRecord:           UNREADABLE: {}",
            s(&u, key::ERROR)
        );
        return Ok(());
    }
    outln!("User:             {}", s(&u, key::USER));
    outln!(
        "Authenticator:    {}",
        if authenticators(&u).is_empty() {
            "not set up"
        } else {
            "active"
        }
    );
    for (label, k) in [
        ("Email:", key::EMAIL),
        ("Email pending:", key::EMAIL_PENDING),
    ] {
        if !s(&u, k).is_empty() {
            outln!("{label:<18}{}", s(&u, k));
        }
    }
    for a in authenticators(&u) {
        outln!(
            "  {}: added {}, last used {}",
            s(a, "name"),
            when(t(a, "added")),
            when(t(a, "last_used"))
        );
    }
    outln!("Recovery codes:   {} left", s(&u, key::RECOVERY_CODES_LEFT));
    outln!(
        "Required:         {} ({})",
        s(&u, key::REQUIRED),
        s(&u, key::WHY)
    );
    outln!("Override:         {}", s(&u, key::OVERRIDE));
    outln!("May switch off:   {}", s(&u, key::MAY_TOGGLE));
    outln!("Failed attempts:  {}", s(&u, key::FAILURES));
    let locked = t(&u, key::LOCKED_UNTIL);
    outln!(
        "Locked:           {}",
        if locked == 0 {
            "no".into()
        } else {
            format!("until {}", when(locked))
        }
    );
    outln!("Last success:     {}", when(t(&u, key::LAST_SUCCESS)));
    outln!("Last failure:     {}", when(t(&u, key::LAST_FAILURE)));
    let pw_failures = t(&u, key::APP_PASSWORD_FAILURES);
    if pw_failures != 0 {
        let pw_locked = t(&u, key::APP_PASSWORD_LOCKED_UNTIL);
        outln!(
            "App passwords:    {pw_failures} wrong{}",
            if pw_locked == 0 {
                String::new()
            } else {
                format!(", locked until {} (codes not affected)", when(pw_locked))
            }
        );
    }
    for line in crate::clock::ClockView::from_json(&u).lines("this user's") {
        outln!("Clock:            {line}");
    }
    if let Some(Json::Array(windows)) = u.get(key::REMEMBERED) {
        outln!("Remembered (no code asked until the end, from that place on this host):");
        for w in windows {
            outln!(
                "  {} from {} on {} until {}",
                field(&s(w, "service")),
                field(&s(w, "rhost")),
                field(&s(w, "tty")),
                when(t(w, "until"))
            );
        }
    }
    if let Some(Json::Array(events)) = u.get(key::EVENTS) {
        outln!("Recent events:");
        for e in events {
            outln!("  {}", event_line(e));
        }
    }
    Ok(())
}

/// One event of `user show`: time, kind, words, then where from and who, as `key=value`
/// (values quoted as in log lines, so a client-supplied host cannot read as another
/// field; `-` unknown, as in events of older records).
fn event_line(e: &Json) -> String {
    use twostepd::core::audit::{field, Source};
    let actor = Source::actor_text(
        &s(e, event_key::ACTOR),
        e.get(event_key::ACTOR_UID)
            .and_then(Json::as_u64)
            .and_then(|u| u32::try_from(u).ok()),
    );
    let kind = match s(e, event_key::KIND) {
        k if k.is_empty() => "-".to_owned(),
        k => k,
    };
    // A login called by a process that was not root: its place is what it said.
    let caller = e
        .get(event_key::CALLER_UID)
        .and_then(Json::as_u64)
        .map_or_else(String::new, |u| {
            format!(" caller_uid={u} (place as it said)")
        });
    format!(
        "{}  {kind:<14} {}  service={} rhost={} tty={} method={} by={}{caller}",
        when(t(e, event_key::AT)),
        s(e, event_key::WHAT),
        field(&s(e, event_key::SERVICE)),
        field(&s(e, event_key::RHOST)),
        field(&s(e, event_key::TTY)),
        field(&s(e, event_key::METHOD)),
        if actor == "-" {
            actor
        } else {
            field(&actor).into_owned()
        },
    )
}

async fn repair(admin: &AdminProxy<'_>, name: &str, yes: bool, json: bool) -> Result<(), String> {
    let p = admin
        .repair_user(name, yes)
        .await
        .map_err(|e| format!("{name}: {}", explain(e)))?;
    let text = |k: &str| {
        p.get(k)
            .and_then(|v| <&str>::try_from(&**v).ok())
            .unwrap_or("")
            .to_owned()
    };
    let lines = |k: &str| -> Vec<String> {
        match p.get(k).map(|v| &**v) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|e| <&str>::try_from(e).ok().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        }
    };
    let written = p
        .get(repair_key::WRITTEN)
        .and_then(|v| bool::try_from(&**v).ok())
        .unwrap_or(false);
    let (path, damage, kept) = (
        text(repair_key::PATH),
        text(repair_key::DAMAGE),
        text(repair_key::KEPT),
    );
    let (slots, may_be_lost, restored) = (
        lines(repair_key::SLOTS),
        lines(repair_key::MAY_BE_LOST),
        lines(repair_key::RESTORED),
    );
    if json {
        let r = json!({
            "user": name, "path": path, "damage": damage, "slots": slots,
            "may_be_lost": may_be_lost, "restored": restored, "written": written, "kept": kept,
        });
        out_json(&r);
        return Ok(());
    }
    outln!("Record of {name}: {path}");
    for l in &slots {
        outln!("  {l}");
    }
    if damage.is_empty() {
        outln!("The record is intact: nothing to repair.");
        return Ok(());
    }
    outln!("Damage: {damage}");
    outln!("What may have been lost:");
    for l in &may_be_lost {
        outln!("  {l}");
    }
    if restored.is_empty() {
        outln!("Nothing can be restored from this file.");
        return Ok(());
    }
    outln!("The repair writes the readable state, and:");
    for l in &restored {
        outln!("  {l}");
    }
    if written {
        outln!("Written. The damaged file is kept as {kept}");
    } else {
        outln!("Nothing was written. To write it: twostepctl user repair {name} --yes");
    }
    Ok(())
}
