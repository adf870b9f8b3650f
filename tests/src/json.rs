// SPDX-License-Identifier: MIT OR Apache-2.0
//! Reading `twostepctl --json` output: one document per run, times in RFC 3339.

/// `--json`'s latest time, standing for "locked until an administrator unlocks".
pub const UNTIL_UNLOCKED: &str = "9999-12-31T23:59:59Z";

/// The time `v[key]` as Unix seconds: `null` is 0 (never, not locked),
/// [`UNTIL_UNLOCKED`] is `u64::MAX`; panics unless it is `null` or an RFC 3339 string
/// in UTC (`…Z`) — a number is refused, so this checks the format too.
#[track_caller]
pub fn time(v: &serde_json::Value, key: &str) -> u64 {
    match v.get(key) {
        Some(serde_json::Value::Null) => 0,
        Some(serde_json::Value::String(s)) if s == UNTIL_UNLOCKED => u64::MAX,
        Some(serde_json::Value::String(s)) if s.ends_with('Z') => humantime::parse_rfc3339(s)
            .unwrap_or_else(|e| panic!("{key} is not RFC 3339 ({e}): {v}"))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_else(|e| panic!("{key} is before 1970 ({e}): {v}"))
            .as_secs(),
        _ => panic!("{key} is neither null nor an RFC 3339 UTC time: {v}"),
    }
}

/// Parse `stdout` whole as exactly one JSON document (what every `--json` command
/// prints); the error says what else was there.
///
/// # Errors
/// The parse error with the text.
pub fn one_document(stdout: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(stdout).map_err(|e| format!("not one JSON document ({e}): {stdout:?}"))
}
