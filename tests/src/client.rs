// SPDX-License-Identifier: MIT OR Apache-2.0
//! An in-process D-Bus client of the daemon (zbus, the contract's own proxies), for tests
//! that need more calls than spawning `dbus-send` per call allows: thousands of login
//! conversations begun and never answered, on connections kept open or dropped at will.
//!
//! Each [`Client`] is one bus connection, driven by a private single-thread runtime, so
//! dropping a `Client` closes exactly that connection (the bus then reports it gone).

use std::collections::HashMap;
use std::time::Duration;

use twostep_proto::{AdminProxy, LoginProxy};

/// How long one call may take before the harness gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One connection to the bus at an address, as the uid of the test process (root).
pub struct Client {
    rt: tokio::runtime::Runtime,
    conn: zbus::Connection,
}

/// A failed call: the D-Bus error name (`org.twostep.Error.Busy`) and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallError {
    pub name: String,
    pub text: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.text)
    }
}

fn call_error(e: zbus::Error) -> CallError {
    match e {
        zbus::Error::MethodError(name, text, _) => CallError {
            name: name.to_string(),
            text: text.unwrap_or_default(),
        },
        other => CallError {
            name: "(transport)".into(),
            text: other.to_string(),
        },
    }
}

impl Client {
    /// Connect to `address` as this process's uid.
    pub fn connect(address: &str) -> Client {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let conn = rt
            .block_on(async {
                tokio::time::timeout(CALL_TIMEOUT, async {
                    zbus::connection::Builder::address(address)?.build().await
                })
                .await
            })
            .unwrap_or_else(|_| panic!("connecting to {address} timed out"))
            .unwrap_or_else(|e| panic!("connect to {address}: {e}"));
        Client { rt, conn }
    }

    /// This connection's unique name on the bus.
    pub fn unique_name(&self) -> String {
        self.conn
            .unique_name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    }

    fn run<T>(
        &self,
        f: impl std::future::Future<Output = zbus::Result<T>>,
    ) -> Result<T, CallError> {
        self.rt.block_on(async {
            match tokio::time::timeout(CALL_TIMEOUT, f).await {
                Ok(r) => r.map_err(call_error),
                Err(_) => Err(CallError {
                    name: "(timeout)".into(),
                    text: format!("no answer within {CALL_TIMEOUT:?}"),
                }),
            }
        })
    }

    /// `Login1.Begin(user, {service: "twostep-e2e"})`: `(session, kind)` of the first step.
    ///
    /// # Errors
    /// The daemon's error.
    pub fn begin(&self, user: &str) -> Result<(String, String), CallError> {
        self.run(async {
            let p = LoginProxy::new(&self.conn).await?;
            let ctx: HashMap<&str, &str> = [("service", "twostep-e2e")].into_iter().collect();
            let (session, kind, _, _, _) = p.begin(user, ctx).await?;
            Ok((session, kind))
        })
    }

    /// `Login1.Answer(session, answer)`: the kind of the next step.
    ///
    /// # Errors
    /// The daemon's error.
    pub fn answer(&self, session: &str, answer: &[u8]) -> Result<String, CallError> {
        self.run(async {
            let p = LoginProxy::new(&self.conn).await?;
            Ok(p.answer(session, answer).await?.0)
        })
    }

    /// Call `method` of `Admin1` that takes a user name (and for `SetRequirement` /
    /// `SetMayToggle` a setting): `ShowUser`, `ResetUser`, `DisableUser`, `SetRequirement`,
    /// `SetMayToggle`, `Unlock`.
    ///
    /// # Errors
    /// The daemon's error.
    ///
    /// # Panics
    /// An unknown method name.
    pub fn admin_user_call(&self, method: &str, user: &str) -> Result<(), CallError> {
        self.run(async {
            let p = AdminProxy::new(&self.conn).await?;
            match method {
                "ShowUser" => p.show_user(user).await.map(|_| ()),
                "ResetUser" => p.reset_user(user).await,
                "DisableUser" => p.disable_user(user).await,
                "SetRequirement" => p.set_requirement(user, "required").await,
                "SetMayToggle" => p.set_may_toggle(user, "deny").await,
                "Unlock" => p.unlock(user).await,
                other => panic!("unknown Admin1 user method {other}"),
            }
        })
    }
}
