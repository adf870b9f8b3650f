// SPDX-License-Identifier: MIT OR Apache-2.0
//! Multi-step conversations of the enrolment issue, driven the way a person would: read
//! what `twostepctl` or the PAM module shows, compute the code with oathtool from the key
//! *as shown*, type it.
//!
//! - [`enroll_text`]: `twostepctl enroll` with its human output (QR code, grouped key, URI),
//!   piped stdin;
//! - [`begin_json`]: `twostepctl enroll|reset --json`, stopped after the key line so a test
//!   can act while the new key is pending, then [`PendingKey::confirm`];
//! - [`enrol_at_login`]: enrolment inside a pamtester login (QR and key with the code
//!   prompt, recovery codes with the Enter prompt);
//! - [`call`]: a raw method call to the daemon with `dbus-send`, as any uid.

use std::time::Duration;

use crate::ctl::{Ctl, Enrolled};
use crate::interact::{Interactive, WAIT};
use crate::otp::{self, Algorithm};
use crate::pam::{PamRun, PamService};
use crate::proc::{self, Creds, Output};
use crate::{qr, User};

/// How long a whole twostepctl or pamtester conversation may take.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Margin left in the current time step before a code of the previous step is typed
/// (see [`otp::settled_step`]).
const MARGIN: Duration = Duration::from_secs(5);

/// Whether `s` looks like a recovery code as the daemon prints them: three groups of five
/// lower-case letters or digits joined by dashes (`abcde-fghjk-mnpqr`).
pub fn is_recovery_code(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 3
        && groups.iter().all(|g| {
            g.len() == 5
                && g.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Every recovery-code-shaped word of `text`, in order.
pub fn recovery_codes_in(text: &str) -> Vec<String> {
    text.split_whitespace()
        .filter(|w| is_recovery_code(w))
        .map(str::to_string)
        .collect()
}

/// The (undecoded) value of query parameter `name` of an `otpauth://` URI.
pub fn uri_param(uri: &str, name: &str) -> Option<String> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// A key as people read it (`ABCD EFGH …`) as one base32 string.
pub fn ungroup(key: &str) -> String {
    key.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The text of the first line of `text` that contains `marker`, after the marker, trimmed.
pub fn after(text: &str, marker: &str) -> Option<String> {
    text.lines().find_map(|l| {
        l.split_once(marker)
            .map(|(_, rest)| rest.trim().to_string())
    })
}

/// A key with the parameters of `uri` (secret from the URI too), `confirmed_step` 0.
///
/// # Panics
/// When the URI lacks a parameter.
pub fn key_from_uri(user: &str, uri: &str) -> Enrolled {
    let p = |n: &str| uri_param(uri, n).unwrap_or_else(|| panic!("URI lacks {n}: {uri}"));
    Enrolled {
        user: user.to_string(),
        secret: p("secret"),
        uri: uri.to_string(),
        algorithm: Algorithm::parse(&p("algorithm"))
            .unwrap_or_else(|| panic!("URI algorithm unknown: {uri}")),
        digits: p("digits").parse().expect("digits is a number"),
        period: p("period").parse().expect("period is a number"),
        confirmed_step: 0,
    }
}

/// What `twostepctl enroll` (human output) showed and did.
#[derive(Debug)]
pub struct TextEnrolment {
    /// The key as typed from the grouped key line, confirmed with the previous step's code.
    pub enrolled: Enrolled,
    /// The line after `URI:`.
    pub uri: String,
    /// The key line as printed (groups of four).
    pub key_grouped: String,
    /// The half-block QR code, if one was drawn.
    pub qr: Option<String>,
    /// The recovery codes printed after confirming.
    pub recovery_codes: Vec<String>,
    pub output: Output,
}

/// `twostepctl enroll <extra>` as `user` with piped stdin: read the key from the human
/// output, answer with the code of the step before now (as [`Ctl::enroll`] does), and
/// read the recovery codes. Panics with the transcript unless it exits 0.
pub fn enroll_text(ctl: &Ctl, user: &User, extra: &[&str]) -> TextEnrolment {
    let mut args = vec!["enroll"];
    args.extend_from_slice(extra);
    let mut run = Interactive::spawn(ctl.command(Some(user.creds()), &args));
    run.expect_stderr("code your app shows");
    // Why wait for stdout too: the two pipes are read by separate threads, so the prompt
    // on stderr may be seen before the key printed earlier on stdout.
    if run
        .wait_for(WAIT, |out, _| {
            out.lines().any(|l| l.trim_start().starts_with("URI: "))
        })
        .is_err()
    {
        panic!("no URI line in the enrol output:\n{}", run.transcript());
    }
    let shown = run.stdout();
    let key_grouped = after(&shown, "Or type the key by hand:")
        .unwrap_or_else(|| panic!("no key line in the enrol output:\n{}", run.transcript()));
    let uri = after(&shown, "URI: ")
        .unwrap_or_else(|| panic!("no URI line in the enrol output:\n{}", run.transcript()));
    let qr = qr::find_terminal_qr(&shown);
    let mut enrolled = key_from_uri(user.name(), &uri);
    // The code comes from the key as a person would type it, not from the URI.
    enrolled.secret = ungroup(&key_grouped);
    let step = otp::settled_step(enrolled.period, MARGIN) - 1;
    enrolled.confirmed_step = step;
    run.write_line(enrolled.code_at_step(step));
    let output = run.finish(TIMEOUT);
    assert!(output.success(), "enroll failed:\n{output}");
    let recovery_codes = recovery_codes_in(&output.stdout);
    TextEnrolment {
        enrolled,
        uri,
        key_grouped,
        qr,
        recovery_codes,
        output,
    }
}

/// `twostepctl enroll|reset --json` has run: its one JSON document showed the new key,
/// which is pending.
pub struct PendingKey {
    ctl: Ctl,
    creds: crate::proc::Creds,
    subcommand: String,
    /// The key document.
    pub json: serde_json::Value,
    /// The pending key (`confirmed_step` 0 until [`confirm_at`](PendingKey::confirm_at)).
    pub key: Enrolled,
}

/// Run `twostepctl <subcommand> --json` as `user`, writing `proof` first (for `reset`):
/// the key, from stdout parsed whole as one JSON document.
///
/// # Errors
/// The run, when twostepctl refuses (exits non-zero) to make a key.
pub fn begin_json(
    ctl: &Ctl,
    user: &User,
    subcommand: &str,
    proof: Option<&str>,
) -> Result<PendingKey, Output> {
    let stdin = proof.map(|p| format!("{p}\n")).unwrap_or_default();
    let out = ctl.run(
        Some(user.creds()),
        &[subcommand, "--json"],
        stdin.as_bytes(),
    );
    if !out.success() {
        return Err(out);
    }
    let json: serde_json::Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{out}"));
    let uri = json["uri"]
        .as_str()
        .unwrap_or_else(|| panic!("no uri in {json}"))
        .to_string();
    let mut key = key_from_uri(user.name(), &uri);
    key.secret = json["secret"]
        .as_str()
        .unwrap_or_else(|| panic!("no secret in {json}"))
        .to_string();
    Ok(PendingKey {
        ctl: ctl.clone(),
        creds: user.creds(),
        subcommand: subcommand.to_owned(),
        json,
        key,
    })
}

impl PendingKey {
    /// Run `<subcommand> --json --confirm` with the code of time step `step` of the
    /// pending key. Returns the key (confirmed at `step`), the output and its stdout parsed
    /// as one JSON document (`None` when it is not one, e.g. after a refusal).
    pub fn confirm_at(self, step: u64) -> (Enrolled, Output, Option<serde_json::Value>) {
        let mut key = self.key.clone();
        key.confirmed_step = step;
        let output = self.answer(&key.code_at_step(step));
        let doc = serde_json::from_str(&output.stdout).ok();
        (key, output, doc)
    }

    /// Run `<subcommand> --json --confirm` with `answer` (lines) on stdin instead of a code.
    pub fn answer(self, answer: &str) -> Output {
        self.ctl.run(
            Some(self.creds),
            &[&self.subcommand, "--json", "--confirm"],
            format!("{answer}\n").as_bytes(),
        )
    }
}

/// A full first enrolment with `enroll --json`, confirmed with the code of the step before
/// now: the key and the recovery codes. Panics with the transcript on any failure.
pub fn enroll_json(ctl: &Ctl, user: &User) -> (Enrolled, Vec<String>) {
    let pending = begin_json(ctl, user, "enroll", None)
        .unwrap_or_else(|out| panic!("enroll --json refused:\n{out}"));
    let step = otp::settled_step(pending.key.period, MARGIN) - 1;
    let (key, output, second) = pending.confirm_at(step);
    assert!(
        output.success(),
        "enroll --json --confirm failed:\n{output}"
    );
    let second = second.unwrap_or_else(|| panic!("stdout is not one JSON document:\n{output}"));
    assert_eq!(second["active"], true, "{output}");
    let codes: Vec<String> = second["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("no recovery_codes array:\n{output}"))
        .iter()
        .map(|c| c.as_str().expect("recovery code is a string").to_string())
        .collect();
    (key, codes)
}

/// The key and its parameters from the text of an enrolment-at-login prompt
/// (`… key by hand: ABCD EFGH …` and `(SHA1, 6 digits, every 30 s, time-based)`),
/// `confirmed_step` 0.
pub fn key_from_prompt(user: &str, text: &str) -> Option<Enrolled> {
    let secret = ungroup(&after(text, "key by hand:")?);
    let params = text
        .lines()
        .find(|l| l.contains("digits") && l.contains("every"))?;
    let words: Vec<&str> = params
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let algorithm = words.iter().find_map(|w| Algorithm::parse(w))?;
    let number_before = |unit: &str| {
        words
            .windows(2)
            .find(|w| w[1] == unit)
            .and_then(|w| w[0].parse::<u64>().ok())
    };
    Some(Enrolled {
        user: user.to_string(),
        uri: String::new(),
        secret,
        algorithm,
        digits: u32::try_from(number_before("digits")?).ok()?,
        period: number_before("s")?,
        confirmed_step: 0,
    })
}

/// The prompt pamtester shows (on stderr) for the first code of an enrolment at login.
pub const ENROL_PROMPT: &str = "Code from your app: ";
/// The prompt after the recovery codes.
pub const ACK_PROMPT: &str = "Press Enter once you have saved them: ";

/// A pamtester login stopped at the enrolment prompt.
pub struct LoginEnrolmentPrompt {
    pub run: Interactive,
    /// Everything the module said up to and including the code prompt.
    pub text: String,
    /// The key parsed from that text.
    pub key: Enrolled,
}

/// Start `pamtester SERVICE user authenticate` (as root) and wait for the enrolment
/// prompt; panics with the transcript if it does not come or shows no key.
pub fn start_login_enrolment(pam: &PamService, user: &str) -> LoginEnrolmentPrompt {
    let mut run = pam.auth(user).interactive();
    let text = run.expect_stderr(ENROL_PROMPT);
    let key = key_from_prompt(user, &text)
        .unwrap_or_else(|| panic!("no key in the enrolment prompt:\n{}", run.transcript()));
    LoginEnrolmentPrompt { run, text, key }
}

/// A finished enrolment at login.
#[derive(Debug)]
pub struct LoginEnrolment {
    /// The key from the prompt, confirmed with the code of the step before now.
    pub enrolled: Enrolled,
    /// The text that came with the code prompt (QR code and key).
    pub first_prompt: String,
    /// The text that came with the Enter prompt (recovery codes).
    pub second_prompt: String,
    pub recovery_codes: Vec<String>,
    pub run: PamRun,
}

/// Enrol `user` inside a pamtester login: read the key from the prompt, answer with the
/// code of the step before now, read the recovery codes, press Enter. Panics with the
/// transcript if a prompt does not come; the verdict is left to the caller.
pub fn enrol_at_login(pam: &PamService, user: &str) -> LoginEnrolment {
    let LoginEnrolmentPrompt {
        mut run,
        text,
        mut key,
    } = start_login_enrolment(pam, user);
    let step = otp::settled_step(key.period, MARGIN) - 1;
    key.confirmed_step = step;
    run.write_line(key.code_at_step(step));
    let all = run.expect_stderr(ACK_PROMPT);
    let second_prompt = all.get(text.len()..).unwrap_or_default().to_string();
    let recovery_codes = recovery_codes_in(&second_prompt);
    run.write_line("");
    let output = run.finish(TIMEOUT);
    LoginEnrolment {
        enrolled: key,
        first_prompt: text,
        second_prompt,
        recovery_codes,
        run: PamRun::from_output(output, pam),
    }
}

/// `array:byte:…` for dbus-send.
pub fn bytes_arg(bytes: &[u8]) -> String {
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("array:byte:{}", list.join(","))
}

/// Call `member` (`org.twostep.User1.Status`) on the daemon's object with dbus-send as
/// `creds` (root when `None`), returning the `--print-reply` output. On
/// [`Transport::P2p`](crate::transport::Transport), a login method (`org.twostep.Login…`) goes
/// peer to peer to the daemon's login socket (`dbus-send --peer`), everything else to the bus.
///
/// # Errors
/// dbus-send's stderr and stdout when the call fails (an error reply included).
pub fn call(
    address: &str,
    creds: Option<Creds>,
    member: &str,
    args: &[String],
) -> Result<String, String> {
    let mut cmd = proc::command(creds, "dbus-send");
    if crate::transport::current() == crate::transport::Transport::P2p
        && member.starts_with("org.twostep.Login")
    {
        let socket = crate::transport::login_socket(address);
        cmd.arg(format!("--peer=unix:path={}", socket.display()));
    } else {
        cmd.arg(format!("--bus={address}"))
            .arg(format!("--dest={}", crate::bus::TWOSTEP_NAME));
    }
    cmd.arg("--print-reply")
        .arg("--reply-timeout=20000")
        .arg("/org/twostep/Twostep1")
        .arg(member)
        .args(args);
    let out = proc::run(cmd, b"", TIMEOUT);
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{}{}", out.stderr, out.stdout))
    }
}

/// [`call`], retrying while the daemon's per-uid rate limit answers `Busy` (for up to
/// about 10 s).
///
/// # Errors
/// As [`call`], for the last try.
pub fn call_paced(
    address: &str,
    as_: Creds,
    member: &str,
    args: &[String],
) -> Result<String, String> {
    for _ in 0..40 {
        let r = call(address, Some(as_), member, args);
        if !r
            .as_ref()
            .is_err_and(|e| e.contains("org.twostep.Error.Busy"))
        {
            return r;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    call(address, Some(as_), member, args)
}
