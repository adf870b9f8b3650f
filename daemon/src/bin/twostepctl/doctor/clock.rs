// SPDX-License-Identifier: MIT OR Apache-2.0
//! Clock trouble over every user (issue 20 item 10): the daemon notes, per user, refused
//! codes that are codes of a step outside the window and a host clock read earlier than a
//! login already recorded (see `core::clock_trouble`). One user's offset points at that
//! user's phone; the same offset at several users, or a clock stepped back, at the host.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value as Json;
use twostep_proto::status_key as key;

use super::daemon::DaemonState;
use super::findings::{Finding, Severity};
use crate::clock::ClockView;
use twostepd::core::clock_trouble::offset_text;

/// How long reading the users from one daemon may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(5);

/// The findings of the clock notes of `users` (name and what was seen).
pub fn clock_findings(users: &[(String, ClockView)]) -> Vec<Finding> {
    let mut out = Vec::new();
    let back: Vec<&(String, ClockView)> = users.iter().filter(|(_, v)| v.back != 0).collect();
    if let Some(worst) = back.iter().map(|(_, v)| v.back).max() {
        let names: Vec<&str> = back.iter().map(|(n, _)| n.as_str()).collect();
        out.push(Finding::new(
            Severity::Warning,
            "clock-stepped-back",
            format!(
                "the host clock read up to {worst} s earlier than logins already recorded \
                 (at the logins of {}): codes already used are refused until it catches up; \
                 check the host's time synchronisation",
                names.join(", ")
            ),
            None,
        ));
    }
    let mut by_offset: BTreeMap<i64, Vec<&(String, ClockView)>> = BTreeMap::new();
    for u in users.iter().filter(|(_, v)| v.skew != 0) {
        by_offset.entry(u.1.skew).or_default().push(u);
    }
    for (steps, list) in by_offset {
        let seconds = list[0].1.skew_seconds.unsigned_abs();
        let names: Vec<&str> = list.iter().map(|(n, _)| n.as_str()).collect();
        let offset = offset_text(steps, seconds);
        if list.len() >= 2 {
            out.push(Finding::new(
                Severity::Warning,
                "clock-host-skew",
                format!(
                    "refused codes of {} users ({}) are all {offset} the host clock: the \
                     host's clock is likely off; check its time synchronisation",
                    list.len(),
                    names.join(", ")
                ),
                None,
            ));
            continue;
        }
        let (name, v) = list[0];
        // Why a single sighting is only info: a wrong guess is the code of some step
        // within ten minutes about once in 25,000 guesses of 6 digits.
        let severity = if v.skew_times >= 2 {
            Severity::Warning
        } else {
            Severity::Info
        };
        out.push(Finding::new(
            severity,
            "clock-user-skew",
            format!(
                "codes from {name}'s app \"{}\" are {offset} the host clock (seen {} time{} \
                 in a row): check the phone's or the host's clock; such codes are refused",
                v.skew_authenticator,
                v.skew_times,
                if v.skew_times == 1 { "" } else { "s" }
            ),
            None,
        ));
    }
    out
}

/// The users of the daemon on `address` with their clock notes (needs an administrator).
///
/// # Errors
/// The bus or the call failed (not an administrator, no answer in time).
pub async fn read_users(address: &str) -> Result<Vec<(String, ClockView)>, String> {
    let call = async {
        let conn = zbus::connection::Builder::address(address)?
            .method_timeout(LIST_TIMEOUT)
            .build()
            .await?;
        let admin = twostep_proto::AdminProxy::new(&conn).await?;
        admin.list_users().await
    };
    let users = tokio::time::timeout(LIST_TIMEOUT, call)
        .await
        .map_err(|_| format!("no answer within {LIST_TIMEOUT:?}"))?
        .map_err(|e| e.to_string())?;
    Ok(users
        .iter()
        .map(|p| {
            let u: Json = Json::Object(
                p.iter()
                    .map(|(k, v)| (k.clone(), crate::admin::to_json(v)))
                    .collect(),
            );
            let name = u
                .get(key::USER)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            (name, ClockView::from_json(&u))
        })
        .collect())
}

/// The clock findings of every daemon that answers; one info line for a daemon whose
/// users cannot be read (doctor run without root).
pub async fn check(daemons: &[(String, u32, DaemonState)]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (bus, uid, state) in daemons {
        if !matches!(state, DaemonState::Running { uid: owner } if owner == uid) {
            continue;
        }
        match read_users(bus).await {
            Ok(users) => out.extend(clock_findings(&users)),
            Err(why) => out.push(Finding::new(
                Severity::Info,
                "clock-not-checked",
                format!("clock trouble at logins not checked on {bus}: {why}"),
                None,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skew(steps: i64, times: u32) -> ClockView {
        ClockView {
            skew: steps,
            skew_seconds: steps * 30,
            skew_times: times,
            skew_seen: 1,
            skew_authenticator: "default".into(),
            ..ClockView::default()
        }
    }

    #[test]
    fn one_users_offset_points_at_the_phone_several_at_the_host() {
        assert!(clock_findings(&[("a".into(), ClockView::default())]).is_empty());

        let f = clock_findings(&[("alice".into(), skew(-4, 1))]);
        assert_eq!(
            (f[0].severity, f[0].kind),
            (Severity::Info, "clock-user-skew")
        );
        assert!(f[0]
            .message
            .contains("alice's app \"default\" are 4 steps (2 min) behind"));
        let f = clock_findings(&[("alice".into(), skew(-4, 3))]);
        assert_eq!(f[0].severity, Severity::Warning);

        let f = clock_findings(&[
            ("alice".into(), skew(6, 1)),
            ("bob".into(), skew(6, 1)),
            ("carol".into(), skew(-2, 2)),
        ]);
        let kinds: Vec<_> = f.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, ["clock-user-skew", "clock-host-skew"], "{f:?}");
        assert!(f[1]
            .message
            .contains("2 users (alice, bob) are all 6 steps (3 min) ahead of"));

        let back = ClockView {
            back: 300,
            back_seen: 1,
            ..ClockView::default()
        };
        let f = clock_findings(&[("alice".into(), back)]);
        assert_eq!(
            (f[0].severity, f[0].kind),
            (Severity::Warning, "clock-stepped-back")
        );
        assert!(f[0].message.contains("300 s earlier"));
    }
}
