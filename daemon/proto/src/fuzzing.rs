// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzing entry points: bytes in, nothing out, a panic on a broken invariant. Run by the
//! libFuzzer targets under `fuzz/` (nightly) and, on the saved corpus, by
//! `tests/tests/fuzz_corpus.rs` (stable, every `cargo test`). Not an API.

use crate::limits;
use crate::step::{is_recovery_shape, Accept, Step, WireStep, WireStep2};

/// Reads typed values off fuzzer bytes; past the end everything is zero or empty, so every
/// input is a complete script.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input(data)
    }

    /// Whether every byte was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The next byte (0 past the end).
    pub fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }

    /// The next little-endian u32 (missing bytes are 0).
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `max` bytes: a length byte (scaled to `max`), then that many bytes.
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = usize::from(self.byte()) * max.max(1) / 255;
        let (taken, rest) = self.0.split_at(want.min(self.0.len()));
        self.0 = rest;
        taken
    }

    /// As [`Input::bytes`], as text (invalid UTF-8 replaced).
    pub fn string(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// The rest of the bytes.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// A wire kind: one of the known names most of the time, anything otherwise.
pub fn kind(input: &mut Input<'_>) -> String {
    const KINDS: [&str; 10] = [
        "prompt-code",
        "prompt-code-or-recovery",
        "prompt-digits",
        "prompt-digits-or-text",
        "prompt-text",
        "prompt-acknowledge",
        "success",
        "denied",
        "locked",
        "not-enrolled",
    ];
    let pick = usize::from(input.byte());
    match KINDS.get(pick % 12) {
        Some(k) => (*k).to_owned(),
        None => input.string(32),
    }
}

/// A Login1 step as the daemon could send it.
pub fn wire_step(input: &mut Input<'_>) -> WireStep {
    (
        kind(input),
        input.string(600),
        input.string(80),
        u32::from(input.byte()),
    )
}

/// A Login2 step as the daemon could send it.
pub fn wire_step2(input: &mut Input<'_>) -> WireStep2 {
    let small = |input: &mut Input<'_>| match input.byte() {
        250 => input.u32(),
        b => u32::from(b % 80),
    };
    (
        kind(input),
        input.string(600),
        input.string(80),
        small(input),
        small(input),
        input.byte() & 1 == 1,
    )
}

/// Step decoding (both wire versions) and the answer-shape check: whatever the daemon
/// sends, a decoded step encodes back to itself, and an admitted answer has the shape its
/// prompt names and fits the module's answer cap.
pub fn steps(data: &[u8]) {
    let mut input = Input::new(data);
    while !input.is_empty() {
        let step = if input.byte() & 1 == 0 {
            Step::from_wire(wire_step(&mut input)).inspect(|s| {
                if let Ok(wire) = s.to_wire() {
                    assert_eq!(Step::from_wire(wire).as_ref(), Ok(s), "Login1 round trip");
                }
            })
        } else {
            Step::from_wire2(wire_step2(&mut input))
        };
        let answer = input.bytes(300);
        let _ = is_recovery_shape(answer);
        let Ok(step) = step else { continue };
        assert_eq!(
            Step::from_wire2(step.to_wire2()).as_ref(),
            Ok(&step),
            "Login2 round trip"
        );
        if let Step::Prompt { accept, .. } = step {
            assert!(accept.is_valid(), "a decoded prompt has a valid shape");
            if accept.admits(answer) {
                check_admitted(accept, answer);
            }
        }
    }
}

fn check_admitted(accept: Accept, answer: &[u8]) {
    assert!(answer.len() <= limits::MAX_ANSWER_LEN);
    match accept {
        Accept::Digits { n } => {
            assert!(answer.len() == usize::from(n) && answer.iter().all(u8::is_ascii_digit));
        }
        Accept::DigitsOrText { max, .. } | Accept::Text { max, .. } => {
            assert!(!answer.is_empty() && answer.len() <= usize::from(max.max(10)));
            assert!(answer.iter().all(|b| (0x20..=0x7e).contains(b)));
        }
        Accept::Acknowledge => assert!(answer.is_empty()),
    }
}
