// SPDX-License-Identifier: MIT OR Apache-2.0
//! Clock trouble the daemon saw at a user's logins (issue 20 item 10), as `status` and
//! `user show` print it, and `doctor`'s host-level reading of it over every user.

use serde_json::Value as Json;
use twostep_proto::status_key as key;
use twostep_proto::Properties;

use twostepd::core::clock_trouble::offset_text;

use crate::io::{json_time, when};

/// The `clock_*` keys of one user's dict (0 / empty: nothing seen).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockView {
    /// Steps from the host clock of a refused code (negative: behind).
    pub skew: i64,
    pub skew_seconds: i64,
    pub skew_times: u32,
    pub skew_seen: u64,
    pub skew_authenticator: String,
    /// Seconds the host clock read before the user's last recorded login.
    pub back: u64,
    pub back_seen: u64,
}

impl ClockView {
    /// From a dict as JSON (`admin`'s form of it).
    pub fn from_json(u: &Json) -> ClockView {
        let i = |k: &str| u.get(k).and_then(Json::as_i64).unwrap_or(0);
        let t = |k: &str| u.get(k).and_then(Json::as_u64).unwrap_or(0);
        ClockView {
            skew: i(key::CLOCK_SKEW),
            skew_seconds: i(key::CLOCK_SKEW_SECONDS),
            skew_times: u32::try_from(t(key::CLOCK_SKEW_TIMES)).unwrap_or(u32::MAX),
            skew_seen: t(key::CLOCK_SKEW_SEEN),
            skew_authenticator: u
                .get(key::CLOCK_SKEW_AUTHENTICATOR)
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned(),
            back: t(key::CLOCK_BACK),
            back_seen: t(key::CLOCK_BACK_SEEN),
        }
    }

    /// From the dict itself (`User1.Status`).
    pub fn from_props(p: &Properties) -> ClockView {
        let i = |k: &str| p.get(k).and_then(|v| i64::try_from(v).ok()).unwrap_or(0);
        let t = |k: &str| p.get(k).and_then(|v| u64::try_from(v).ok()).unwrap_or(0);
        ClockView {
            skew: i(key::CLOCK_SKEW),
            skew_seconds: i(key::CLOCK_SKEW_SECONDS),
            skew_times: p
                .get(key::CLOCK_SKEW_TIMES)
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(0),
            skew_seen: t(key::CLOCK_SKEW_SEEN),
            skew_authenticator: p
                .get(key::CLOCK_SKEW_AUTHENTICATOR)
                .and_then(|v| <&str>::try_from(&**v).ok())
                .unwrap_or_default()
                .to_owned(),
            back: t(key::CLOCK_BACK),
            back_seen: t(key::CLOCK_BACK_SEEN),
        }
    }

    /// The keys for `status --json`.
    pub fn json_pairs(&self) -> serde_json::Map<String, Json> {
        let mut m = serde_json::Map::new();
        m.insert(key::CLOCK_SKEW.into(), self.skew.into());
        m.insert(key::CLOCK_SKEW_SECONDS.into(), self.skew_seconds.into());
        m.insert(key::CLOCK_SKEW_TIMES.into(), self.skew_times.into());
        m.insert(key::CLOCK_SKEW_SEEN.into(), json_time(self.skew_seen));
        m.insert(
            key::CLOCK_SKEW_AUTHENTICATOR.into(),
            self.skew_authenticator.clone().into(),
        );
        m.insert(key::CLOCK_BACK.into(), self.back.into());
        m.insert(key::CLOCK_BACK_SEEN.into(), json_time(self.back_seen));
        m
    }

    /// What to print (nothing when nothing was seen); `whose`: "this user's" or "your".
    pub fn lines(&self, whose: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.skew != 0 {
            out.push(format!(
                "codes from {whose} app \"{}\" are {} the host clock ({} in a row, last {}): \
                 check the phone's or the host's clock; such codes are refused",
                self.skew_authenticator,
                offset_text(self.skew, self.skew_seconds.unsigned_abs()),
                times(self.skew_times),
                when(self.skew_seen),
            ));
        }
        if self.back != 0 {
            out.push(format!(
                "the host clock read {} s earlier than {whose} last recorded login (last {}): \
                 codes already used are refused until it catches up; check the host's time \
                 synchronisation",
                self.back,
                when(self.back_seen),
            ));
        }
        out
    }
}

fn times(n: u32) -> String {
    if n == 1 {
        "seen once".into()
    } else {
        format!("seen {n} times")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_seen_prints_nothing_and_a_skew_names_steps_and_direction() {
        assert!(ClockView::default().lines("your").is_empty());
        let v = ClockView::from_json(&serde_json::json!({
            "clock_skew": -4, "clock_skew_seconds": -120, "clock_skew_times": 2,
            "clock_skew_seen": 1, "clock_skew_authenticator": "default",
            "clock_back": 0, "clock_back_seen": 0,
        }));
        let lines = v.lines("this user's");
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].contains("are 4 steps (2 min) behind the host clock (seen 2 times"),
            "{lines:?}"
        );
        let v = ClockView {
            back: 300,
            back_seen: 1,
            ..ClockView::default()
        };
        assert!(v.lines("your")[0].contains("300 s earlier than your last"));
    }
}
