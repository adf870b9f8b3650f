// SPDX-License-Identifier: MIT OR Apache-2.0
//! Fuzzing entry points for what the module reads off the socket (see `crate::fuzzing`).

use twostep_proto::login;

use super::conn::{frame_len, parse_frame, sasl_reply};
use super::{classify, read_step, reply_result, route, unique_owner, Pending, Version};

/// Bytes from the bus after authentication: framed ([`frame_len`]), parsed by rustbus
/// ([`parse_frame`]), routed against two pending calls, then read as the module reads a
/// reply (error, `GetNameOwner`, a step of either version after `Begin` or `Answer`).
pub fn frames(data: &[u8]) {
    let pending = [Pending::bus(2), Pending::to(3, ":1.7")];
    let mut rest = data;
    while let Ok(Some(len)) = frame_len(rest) {
        let Some((frame, after)) = rest.split_at_checked(len) else {
            return;
        };
        rest = after;
        let Ok(msg) = parse_frame(frame) else {
            continue;
        };
        let _ = route(&msg, &pending);
        match reply_result(msg) {
            Ok(msg) => {
                let _ = unique_owner(&msg);
                for version in [Version::Login2, Version::Login1] {
                    let _ = super::expect_signature(&msg, version, login::BEGIN);
                    let mut parser = msg.body.parser();
                    if parser.get::<String>().is_ok() {
                        let _ = read_step(&mut parser, version, login::BEGIN);
                    }
                    let _ = read_step(&mut msg.body.parser(), version, login::ANSWER);
                }
            }
            Err(super::CallError::Reply { name, message }) => {
                let _ = classify(&name, &message);
            }
            Err(_) => {}
        }
    }
}

/// The bus's answer to the module's `AUTH EXTERNAL` line.
pub fn sasl(data: &[u8]) {
    if let Some(Ok(len)) = sasl_reply(data) {
        assert!(len <= data.len() && data.get(..len).is_some_and(|l| l.starts_with(b"OK ")));
    }
}
