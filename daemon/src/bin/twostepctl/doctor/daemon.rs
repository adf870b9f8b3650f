// SPDX-License-Identifier: MIT OR Apache-2.0
//! twostepd on a bus: its own short connection (name owner, owner's uid, ping), and the
//! findings for each bus the module lines name.

use std::time::Duration;

use super::findings::{Finding, Severity};
use super::pam_analysis::ServiceInfo;

/// How long the daemon check on one bus may take (connect, name owner, uid, ping).
const DAEMON_TIMEOUT: Duration = Duration::from_secs(3);

/// What the daemon check found on one bus.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DaemonState {
    /// The name is owned by `uid` and the owner answered a ping.
    Running { uid: u32 },
    /// The bus itself cannot be reached.
    NoBus(String),
    /// Nobody owns the daemon's name.
    NotRunning,
    /// The owner does not answer in time (stopped, overloaded).
    NoAnswer(String),
}

/// The findings for each bus checked: `(address, expected owner uid, state)`.
pub fn daemon_findings(
    checks: &[(String, u32, DaemonState)],
    services: &[ServiceInfo],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for (bus, want_uid, state) in checks {
        let users: Vec<String> = services
            .iter()
            .filter(|s| s.modules.iter().any(|m| &m.bus == bus))
            .map(|s| s.name.clone())
            .collect();
        let consequence = if users.is_empty() {
            String::new()
        } else {
            let open = services
                .iter()
                .any(|s| s.modules.iter().any(|m| &m.bus == bus && m.failmode_open));
            format!(
                ": logins through {} are refused{}",
                users.join(", "),
                if open {
                    " (or, with failmode=open, let in without a code)"
                } else {
                    ""
                }
            )
        };
        let (severity, kind, message) = match state {
            DaemonState::Running { uid } if uid == want_uid => (
                Severity::Info,
                "daemon-running",
                format!("twostepd answers on {bus} (name owned by uid {uid})"),
            ),
            DaemonState::Running { uid } => (
                Severity::Error,
                "daemon-wrong-owner",
                format!("{} on {bus} is owned by uid {uid}, but the module expects uid {want_uid}: it refuses to talk to it{consequence}", twostep_proto::BUS_NAME),
            ),
            DaemonState::NotRunning => (
                Severity::Error,
                "daemon-not-running",
                format!("twostepd is not running on {bus} (nobody owns {}){consequence}", twostep_proto::BUS_NAME),
            ),
            DaemonState::NoBus(why) => (
                Severity::Error,
                "daemon-not-running",
                format!("cannot reach the bus {bus} ({why}), so twostepd cannot be reached{consequence}"),
            ),
            DaemonState::NoAnswer(why) => (
                Severity::Error,
                "daemon-no-answer",
                format!("twostepd on {bus} does not answer ({why}){consequence}"),
            ),
        };
        let mut f = Finding::new(severity, kind, message, None);
        f.services = users;
        out.push(f);
    }
    out
}

pub(super) async fn check_daemon(address: &str) -> DaemonState {
    match tokio::time::timeout(DAEMON_TIMEOUT, check_daemon_inner(address)).await {
        Ok(state) => state,
        Err(_) => DaemonState::NoAnswer(format!("no answer within {DAEMON_TIMEOUT:?}")),
    }
}

async fn check_daemon_inner(address: &str) -> DaemonState {
    let conn = match zbus::connection::Builder::address(address) {
        Ok(b) => match b.method_timeout(DAEMON_TIMEOUT).build().await {
            Ok(c) => c,
            Err(e) => return DaemonState::NoBus(e.to_string()),
        },
        Err(e) => return DaemonState::NoBus(format!("bad address: {e}")),
    };
    let dbus = match zbus::fdo::DBusProxy::new(&conn).await {
        Ok(p) => p,
        Err(e) => return DaemonState::NoBus(e.to_string()),
    };
    let Ok(name) = zbus::names::BusName::try_from(twostep_proto::BUS_NAME) else {
        return DaemonState::NotRunning;
    };
    let owner = match dbus.get_name_owner(name).await {
        Ok(o) => o,
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => return DaemonState::NotRunning,
        Err(e) => return DaemonState::NoAnswer(e.to_string()),
    };
    let uid = match dbus
        .get_connection_unix_user(zbus::names::BusName::Unique(owner.clone().into()))
        .await
    {
        Ok(uid) => uid,
        Err(e) => return DaemonState::NoAnswer(e.to_string()),
    };
    let ping = async {
        zbus::fdo::PeerProxy::builder(&conn)
            .destination(owner.clone())?
            .path(twostep_proto::OBJECT_PATH)?
            .build()
            .await?
            .ping()
            .await
    };
    match ping.await {
        Ok(()) => DaemonState::Running { uid },
        Err(e) => DaemonState::NoAnswer(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::testing::stack;

    #[test]
    fn daemon_states_become_findings() {
        let services = vec![stack(true)];
        let sys = twostep_proto::SYSTEM_BUS_ADDRESS.to_owned();
        let cases: &[(DaemonState, Severity, &str)] = &[
            (
                DaemonState::Running { uid: 0 },
                Severity::Info,
                "daemon-running",
            ),
            (
                DaemonState::Running { uid: 1000 },
                Severity::Error,
                "daemon-wrong-owner",
            ),
            (
                DaemonState::NotRunning,
                Severity::Error,
                "daemon-not-running",
            ),
            (
                DaemonState::NoBus("refused".into()),
                Severity::Error,
                "daemon-not-running",
            ),
            (
                DaemonState::NoAnswer("timeout".into()),
                Severity::Error,
                "daemon-no-answer",
            ),
        ];
        for (state, severity, kind) in cases {
            let f = daemon_findings(&[(sys.clone(), 0, state.clone())], &services);
            assert_eq!((f[0].severity, f[0].kind), (*severity, *kind), "{state:?}");
            if *severity == Severity::Error {
                assert!(
                    f[0].message.contains("logins through sshd are refused"),
                    "{}",
                    f[0].message
                );
            }
        }
    }
}
