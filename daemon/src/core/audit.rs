// SPDX-License-Identifier: MIT OR Apache-2.0
//! Where a login comes from, and the one audit line per login outcome. Never a code.

use std::collections::HashMap;

use twostep_proto::limits;

use super::authz::Caller;
use super::users::Account;
use super::Error;

/// Where a login comes from, for audit lines (absent values are empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoginContext {
    pub service: String,
    pub rhost: String,
    pub tty: String,
}

impl LoginContext {
    /// Keep the known keys, bounded.
    ///
    /// # Errors
    /// Too many entries or an over-long value.
    pub fn from_map(map: &HashMap<String, String>) -> Result<LoginContext, Error> {
        use twostep_proto::login::{CTX_RHOST, CTX_SERVICE, CTX_TTY};
        let bad = || Error::InvalidArgument("malformed login context".into());
        if map.len() > limits::MAX_CONTEXT_ENTRIES {
            return Err(bad());
        }
        let get = |k: &str| -> Result<String, Error> {
            match map.get(k) {
                Some(v) if v.len() > limits::MAX_CONTEXT_LEN || v.chars().any(char::is_control) => {
                    Err(bad())
                }
                Some(v) => Ok(v.clone()),
                None => Ok(String::new()),
            }
        };
        Ok(LoginContext {
            service: get(CTX_SERVICE)?,
            rhost: get(CTX_RHOST)?,
            tty: get(CTX_TTY)?,
        })
    }
}

/// One audit line per login outcome: who, from where, what. Never a code.
pub fn audit(account: &Account, ctx: &LoginContext, caller: &Caller, outcome: &str) {
    log::info!(
        "user={} uid={} service={} rhost={} tty={} caller_uid={} outcome={}",
        account.name,
        account.uid,
        or_dash(&ctx.service),
        or_dash(&ctx.rhost),
        or_dash(&ctx.tty),
        caller.uid,
        outcome
    );
}

/// A record event for a login: what, and from which service and host.
pub fn login_event(what: &str, ctx: &LoginContext) -> String {
    format!(
        "{what} service={} rhost={}",
        or_dash(&ctx.service),
        or_dash(&ctx.rhost)
    )
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
