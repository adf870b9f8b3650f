// SPDX-License-Identifier: MIT OR Apache-2.0
//! `pam_twostep.so`: asks twostepd, over D-Bus (its login socket peer to peer, else the
//! system bus; see [`bus`]), for a second factor and renders its steps.
//!
//! The hooks are glue. Decisions live in [`args`] (module arguments) and [`flow`] (the
//! conversation and the one mapping to PAM codes), both unit-tested without PAM or a bus;
//! [`pam_io`] and [`bus`] are the two adapters. Nothing of this module survives a call: no
//! globals, no threads, no logger; the bus connection is opened and closed inside it.
#![deny(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::unreachable,
    clippy::todo,
    clippy::unimplemented,
    clippy::indexing_slicing,
    clippy::disallowed_methods,
    clippy::disallowed_macros
)]

pub mod args;
pub mod bus;
pub mod flow;
#[doc(hidden)]
pub mod fuzzing;
pub mod log;
pub mod modes;
pub mod pam_io;

#[cfg(test)]
mod contract_tests;

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pam::constants::{PamFlag, PamResultCode};
use pam::module::{PamHandle, PamHooks};
use syslog::Severity;

use crate::args::{FailMode, Mode, ModuleArgs};
use crate::bus::BusDaemon;
use crate::flow::{DaemonError, Outcome, Prompter};
use crate::log::{Field, Log};
use crate::pam_io::PamIo;

/// The module, as `pam_hooks!` wants it.
pub struct Twostep;

pam::pam_hooks!(Twostep);

impl PamHooks for Twostep {
    fn sm_authenticate(pamh: &mut PamHandle, args: Vec<&CStr>, flags: PamFlag) -> PamResultCode {
        guard("authenticate", || authenticate(pamh, &args, flags))
    }

    fn sm_setcred(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guard("setcred", || PamResultCode::PAM_SUCCESS)
    }

    fn acct_mgmt(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guard("acct_mgmt", || PamResultCode::PAM_IGNORE)
    }

    fn sm_chauthtok(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guard("chauthtok", || PamResultCode::PAM_IGNORE)
    }

    fn sm_open_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guard("open_session", || PamResultCode::PAM_IGNORE)
    }

    fn sm_close_session(_: &mut PamHandle, _: Vec<&CStr>, _: PamFlag) -> PamResultCode {
        guard("close_session", || PamResultCode::PAM_IGNORE)
    }
}

/// Runs a hook body; a panic becomes `PAM_SYSTEM_ERR` and one syslog line. (pam-bindings'
/// own guard outside this one turns anything that still escapes into `PAM_ABORT`.)
fn guard(hook: &str, body: impl FnOnce() -> PamResultCode) -> PamResultCode {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(code) => code,
        Err(payload) => {
            // The payload is not logged: it is not ours to vouch for.
            let _ = catch_unwind(AssertUnwindSafe(|| drop(payload))).map_err(std::mem::forget);
            log::line(
                Severity::LOG_CRIT,
                &format!("internal error (panic) in pam_sm_{hook}; returning PAM_SYSTEM_ERR"),
            );
            PamResultCode::PAM_SYSTEM_ERR
        }
    }
}

fn authenticate(pamh: &mut PamHandle, raw_args: &[&CStr], flags: PamFlag) -> PamResultCode {
    let args = match ModuleArgs::parse(raw_args) {
        Ok(args) => args,
        Err(e) => {
            log::line(
                Severity::LOG_ERR,
                &format!(
                    "{e}; check the pam_twostep line in /etc/pam.d; returning PAM_SERVICE_ERR"
                ),
            );
            return PamResultCode::PAM_SERVICE_ERR;
        }
    };
    let mut log = Log::new(args.debug);
    let user = match pam_io::read_user(pamh) {
        Ok(user) => user,
        Err(refusal) => {
            log.err(&format!("{}; returning {:?}", refusal.why, refusal.code));
            return refusal.code;
        }
    };
    let ctx = match pam_io::read_context(pamh) {
        Ok(ctx) => ctx,
        Err(refusal) => {
            log.set_subject(&user, &flow::LoginContext::default());
            log.err(&format!("{}; returning {:?}", refusal.why, refusal.code));
            return refusal.code;
        }
    };
    log.set_subject(&user, &ctx);
    let authtok = match args.mode {
        Mode::AppPassword => match pam_io::read_authtok(pamh) {
            Ok(t) => t,
            Err(refusal) => {
                log.err(&format!("{}; returning {:?}", refusal.why, refusal.code));
                return refusal.code;
            }
        },
        Mode::SecondFactor | Mode::ForwardPass => None,
    };
    let ended = {
        let mut io = match PamIo::new(pamh, flags, &log) {
            Ok(io) => io,
            Err(refusal) => {
                log.err(&format!("{}; returning {:?}", refusal.why, refusal.code));
                return refusal.code;
            }
        };
        let daemon = BusDaemon::new(&args, &log);
        let ended = match args.mode {
            Mode::SecondFactor => modes::Ended {
                outcome: flow::run_login(&mut io, &daemon, &user, &ctx, &args),
                authtok: None,
            },
            Mode::AppPassword => {
                modes::run_app_password(&mut io, &daemon, &user, &ctx, authtok, args.nullok)
            }
            Mode::ForwardPass => {
                modes::run_forward_pass(&mut io, &daemon, &user, &ctx, args.nullok)
            }
        };
        if args.mode != Mode::SecondFactor {
            if let Some(text) = flow::notice(&ended.outcome, &args) {
                io.error(text);
            }
        }
        ended
        // The connection closes here, before the module returns.
    };
    let mut code = flow::pam_code(&ended.outcome, &args);
    if let Some(password) = ended.authtok {
        // Why only now: the conversation (which borrows the handle) is over.
        if let Err(e) = pam_io::set_authtok(pamh, password.as_bytes()) {
            log.err(&format!(
                "cannot set PAM_AUTHTOK for the next module: {e:?}"
            ));
            code = e;
        }
    }
    audit(&log, &ended.outcome, &code, &args);
    code
}

/// The one line per login: outcome and PAM code, at a severity that matches. A login let
/// on by `failmode=open` is an alert.
fn audit(log: &Log, outcome: &Outcome, code: &PamResultCode, args: &ModuleArgs) {
    let mode = match args.mode {
        Mode::SecondFactor => "",
        Mode::AppPassword => "app_password: ",
        Mode::ForwardPass => "forward_pass: ",
    };
    let text = format!("{mode}{}; returning {code:?}", outcome.describe());
    if flow::fails_open(outcome, args) {
        log.alert(&format!(
            "FAIL-OPEN: second factor NOT checked ({text}; bus={}) because failmode=open",
            Field(Some(&args.bus))
        ));
        return;
    }
    match outcome {
        Outcome::Verdict(twostep_proto::Verdict::Success) => log.info(&text),
        Outcome::Daemon(DaemonError::Unanswered(_)) if args.failmode == FailMode::Open => {
            log.err(&format!(
                "{text}; failmode=open does not apply: the daemon is there but gave no answer"
            ));
        }
        Outcome::Absent(_)
        | Outcome::Daemon(DaemonError::Unanswered(_) | DaemonError::Protocol(_))
        | Outcome::TooManySteps => log.err(&text),
        Outcome::Daemon(DaemonError::WrongOwner { .. }) => log.crit(&text),
        Outcome::Verdict(_)
        | Outcome::BadAnswer(_)
        | Outcome::Daemon(DaemonError::Refused(_))
        | Outcome::Conversation => log.notice(&text),
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_hook_body_becomes_pam_system_err() {
        assert_eq!(
            guard("test", || panic!("boom")),
            PamResultCode::PAM_SYSTEM_ERR
        );
        assert_eq!(
            guard("test", || PamResultCode::PAM_IGNORE),
            PamResultCode::PAM_IGNORE
        );
    }
}
