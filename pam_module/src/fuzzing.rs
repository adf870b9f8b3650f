// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzing entry points: bytes in, nothing out, a panic on a broken invariant. Run by the
//! libFuzzer targets under `fuzz/` (nightly) and, on the saved corpus, by
//! `tests/tests/fuzz_corpus.rs` (stable, every `cargo test`). Not an API.
#![allow(clippy::panic)]

use std::cell::RefCell;
use std::ffi::CString;

use twostep_proto::fuzzing::{wire_step, wire_step2, Input};
use twostep_proto::{limits, Accept, Step, UnknownStep};

use crate::args::ModuleArgs;
use crate::flow::{
    pam_code, run_login, Answer, BeginError, ConvError, Daemon, DaemonError, LoginContext, Outcome,
    Prompter, Reply, Session,
};

pub use crate::bus::fuzzing::{frames, sasl};

/// Module arguments as `/etc/pam.d` gives them: NUL-separated words.
pub fn args(data: &[u8]) {
    let words: Vec<CString> = data
        .split(|b| *b == 0)
        .filter_map(|w| CString::new(w).ok())
        .collect();
    let raw: Vec<&std::ffi::CStr> = words.iter().map(CString::as_c_str).collect();
    match ModuleArgs::parse(&raw) {
        Ok(a) => assert!(!a.timeout.is_zero(), "a zero timeout would never wait"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// The login conversation ([`run_login`]) against a daemon whose steps and a user whose
/// answers come from the input. Checks that every answer sent has the shape the prompt
/// before it accepts (an Enter sends nothing), that no answer over the cap is sent, and
/// that only the daemon's success verdict ever maps to `PAM_SUCCESS` (failmode closed).
pub fn login(data: &[u8]) {
    let input = RefCell::new(Input::new(data));
    let daemon = ScriptedDaemon {
        input: &input,
        last: RefCell::new(None),
    };
    let mut user = ScriptedUser { input: &input };
    let args = ModuleArgs::default();
    let outcome = run_login(&mut user, &daemon, "alice", &LoginContext::default(), &args);
    let succeeded = matches!(outcome, Outcome::Verdict(twostep_proto::Verdict::Success));
    let code = pam_code(&outcome, &args);
    assert_eq!(
        code == pam::constants::PamResultCode::PAM_SUCCESS,
        succeeded
    );
    let _ = outcome.describe();
}

struct ScriptedDaemon<'a, 'b> {
    input: &'a RefCell<Input<'b>>,
    /// The accept of the last prompt sent.
    last: RefCell<Option<Accept>>,
}

impl ScriptedDaemon<'_, '_> {
    fn next_step(&self) -> Result<Step, UnknownStep> {
        let mut input = self.input.borrow_mut();
        let step = if input.byte() & 1 == 0 {
            Step::from_wire(wire_step(&mut input))
        } else {
            Step::from_wire2(wire_step2(&mut input))
        };
        *self.last.borrow_mut() = match &step {
            Ok(Step::Prompt { accept, .. }) => Some(*accept),
            _ => None,
        };
        step
    }
}

impl Daemon for ScriptedDaemon<'_, '_> {
    fn begin(&self, _: &str, _: &LoginContext) -> Result<(Session, Step), BeginError> {
        let step = self
            .next_step()
            .map_err(|e| BeginError::Failed(DaemonError::Protocol(e.to_string())))?;
        let token = self.input.borrow_mut().string(100);
        Session::for_first_step(token, &step)
            .map(|s| (s, step))
            .ok_or(BeginError::Failed(DaemonError::Protocol("token".into())))
    }

    fn answer(&self, _: &Session, answer: &Answer) -> Result<Step, DaemonError> {
        let bytes = answer.as_bytes();
        let Some(accept) = *self.last.borrow() else {
            panic!("an answer sent without a prompt");
        };
        assert!(
            bytes.len() <= limits::MAX_ANSWER_LEN,
            "an over-long answer was sent"
        );
        assert!(
            accept.admits(bytes),
            "an answer the prompt does not accept was sent"
        );
        if accept == Accept::Acknowledge {
            assert!(
                bytes.is_empty(),
                "an acknowledgement carried what was typed"
            );
        }
        self.next_step()
            .map_err(|e| DaemonError::Protocol(e.to_string()))
    }
}

struct ScriptedUser<'a, 'b> {
    input: &'a RefCell<Input<'b>>,
}

impl ScriptedUser<'_, '_> {
    fn reply(&mut self) -> Result<Reply, ConvError> {
        let mut input = self.input.borrow_mut();
        match input.byte() {
            0 => Err(ConvError),
            1 => Ok(Reply::from_bytes(None)),
            2 => Ok(Reply::from_bytes(Some(&[b'7'; 2 * limits::MAX_ANSWER_LEN]))),
            _ => Ok(Reply::from_bytes(Some(input.bytes(300)))),
        }
    }
}

impl Prompter for ScriptedUser<'_, '_> {
    fn prompt_echo_off(&mut self, _: &str) -> Result<Reply, ConvError> {
        self.reply()
    }

    fn prompt_echo_on(&mut self, _: &str) -> Result<Reply, ConvError> {
        self.reply()
    }

    fn acknowledge(&mut self, _: &str) -> Result<(), ConvError> {
        self.reply().map(drop)
    }

    fn info(&mut self, _: &str) {}

    fn error(&mut self, _: &str) {}
}
