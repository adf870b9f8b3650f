// SPDX-License-Identifier: MIT OR Apache-2.0
//! The PAM side: the conversation ([`PamIo`] implements [`Prompter`]) and the items a login
//! is about (user, service, remote host, tty), bounded and checked before use.

use std::ffi::CStr;

use pam::constants::{
    PamFlag, PamResultCode, PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON, PAM_SILENT,
    PAM_TEXT_INFO,
};
use pam::conv::Conv;
use pam::items::{AuthTok, RHost, Service, Tty, User};
use pam::module::PamHandle;
use pam::secret::SecretBytes;
use twostep_proto::limits;

use crate::flow::{ConvError, LoginContext, Prompter, Reply};
use crate::log::{Field, Log};

/// Why the module cannot start a login: the PAM code to return and a line for the log.
pub struct Refusal {
    pub code: PamResultCode,
    pub why: String,
}

fn refuse(code: PamResultCode, why: impl Into<String>) -> Refusal {
    Refusal {
        code,
        why: why.into(),
    }
}

/// The application's conversation function.
pub struct PamIo<'a> {
    conv: Conv<'a>,
    /// `PAM_SILENT`: info and error messages are not shown (prompts still are).
    silent: bool,
    log: &'a Log,
}

impl<'a> PamIo<'a> {
    /// Takes the conversation from the handle.
    ///
    /// # Errors
    /// A [`Refusal`] when the application registered no conversation function.
    pub fn new(pamh: &'a PamHandle, flags: PamFlag, log: &'a Log) -> Result<PamIo<'a>, Refusal> {
        match pamh.get_item::<Conv>() {
            Ok(Some(conv)) => Ok(PamIo {
                conv,
                silent: flags & PAM_SILENT != 0,
                log,
            }),
            Ok(None) => Err(refuse(
                PamResultCode::PAM_CONV_ERR,
                "the application has no conversation function",
            )),
            Err(code) => Err(refuse(code, "cannot read PAM_CONV")),
        }
    }

    fn show(&mut self, style: pam::constants::PamMessageStyle, text: &str) {
        if self.silent {
            self.log.debug("PAM_SILENT: message not shown");
            return;
        }
        if let Err(code) = self.conv.send(style, text) {
            self.log
                .debug(&format!("showing a message failed: {code:?}"));
        }
    }
}

impl PamIo<'_> {
    /// One prompt of `style` (echo off or on) and its reply, capped before it is copied.
    fn prompt(
        &mut self,
        style: pam::constants::PamMessageStyle,
        text: &str,
    ) -> Result<Reply, ConvError> {
        match self.conv.send(style, text) {
            Ok(secret) => {
                // The cap comes first; the SecretBytes is wiped when it drops at the end of
                // this arm.
                let reply = Reply::from_bytes(secret.as_ref().map(SecretBytes::as_bytes));
                self.log.debug(match &reply {
                    Reply::Answer(_) => "prompt answered",
                    Reply::Empty => "prompt: no answer",
                    Reply::TooLong => "prompt: over-long answer",
                });
                Ok(reply)
            }
            Err(code) => {
                self.log.err(&format!("conversation failed: {code:?}"));
                Err(ConvError)
            }
        }
    }
}

impl Prompter for PamIo<'_> {
    fn prompt_echo_off(&mut self, text: &str) -> Result<Reply, ConvError> {
        self.prompt(PAM_PROMPT_ECHO_OFF, text)
    }

    fn prompt_echo_on(&mut self, text: &str) -> Result<Reply, ConvError> {
        self.prompt(PAM_PROMPT_ECHO_ON, text)
    }

    fn prompt_password(&mut self, text: &str) -> Result<crate::modes::Typed, ConvError> {
        match self.conv.send(PAM_PROMPT_ECHO_OFF, text) {
            // Capped before it is copied; the SecretBytes is wiped when it drops.
            Ok(secret) => Ok(crate::modes::Typed::from_bytes(
                secret.as_ref().map(SecretBytes::as_bytes),
            )),
            Err(code) => {
                self.log.err(&format!("conversation failed: {code:?}"));
                Err(ConvError)
            }
        }
    }

    fn acknowledge(&mut self, text: &str) -> Result<(), ConvError> {
        match self.conv.send(PAM_PROMPT_ECHO_ON, text) {
            // The reply (wiped on drop) is not looked at.
            Ok(_) => Ok(()),
            Err(code) => {
                self.log.err(&format!("conversation failed: {code:?}"));
                Err(ConvError)
            }
        }
    }

    fn info(&mut self, text: &str) {
        self.show(PAM_TEXT_INFO, text);
    }

    fn error(&mut self, text: &str) {
        self.show(PAM_ERROR_MSG, text);
    }
}

/// The user name: the `PAM_USER` item as the application (or a module before this one)
/// set it. Never `pam_get_user`: that prompts for a name when there is none, and this
/// module asks for nothing but what the daemon asks for.
///
/// # Errors
/// A [`Refusal`]: libpam's own code when the item cannot be read; `PAM_USER_UNKNOWN` for
/// no `PAM_USER` at all, and for a name that is empty, not UTF-8, longer than
/// [`limits::MAX_USER_LEN`] or holds control characters.
pub fn read_user(pamh: &PamHandle) -> Result<String, Refusal> {
    match pamh.get_item::<User>() {
        Ok(item) => user_name(item.map(|u| u.0)),
        Err(code) => Err(refuse(code, "cannot read PAM_USER")),
    }
}

/// The checks of [`read_user`] on the raw item (`None`: not set).
fn user_name(raw: Option<&CStr>) -> Result<String, Refusal> {
    let Some(raw) = raw else {
        return Err(refuse(
            PamResultCode::PAM_USER_UNKNOWN,
            "no user name (PAM_USER is not set); the module does not ask for one",
        ));
    };
    match std::str::from_utf8(raw.to_bytes()) {
        Ok(name) => check_user(name.to_owned()),
        Err(_) => {
            let shown = String::from_utf8_lossy(raw.to_bytes());
            let shown: String = shown.chars().take(64).collect();
            Err(refuse(
                PamResultCode::PAM_USER_UNKNOWN,
                format!("user name {} is not UTF-8", Field(Some(&shown))),
            ))
        }
    }
}

fn check_user(name: String) -> Result<String, Refusal> {
    let unknown = |why: &str| {
        let shown: String = name.chars().take(64).collect();
        refuse(
            PamResultCode::PAM_USER_UNKNOWN,
            format!("user name {} {why}", Field(Some(&shown))),
        )
    };
    if name.is_empty() {
        Err(unknown("is empty"))
    } else if name.len() > limits::MAX_USER_LEN {
        Err(unknown("is too long"))
    } else if name.chars().any(char::is_control) {
        Err(unknown("holds control characters"))
    } else {
        Ok(name)
    }
}

/// `PAM_AUTHTOK` as the application or a module before this one set it, capped like an
/// answer (`None`: not set).
///
/// # Errors
/// A [`Refusal`] with libpam's code when the item cannot be read.
pub fn read_authtok(pamh: &PamHandle) -> Result<Option<Reply>, Refusal> {
    match pamh.get_item::<AuthTok>() {
        Ok(item) => Ok(item.map(|t| Reply::from_bytes(Some(t.as_bytes())))),
        Err(code) => Err(refuse(code, "cannot read PAM_AUTHTOK")),
    }
}

/// Set `PAM_AUTHTOK` to `secret` for the modules after this one. libpam copies it.
///
/// # Errors
/// `PAM_AUTH_ERR` for a secret holding a NUL byte (it cannot be a C string);
/// `PAM_SYSTEM_ERR` when libpam refuses the item.
pub fn set_authtok(pamh: &mut PamHandle, secret: &[u8]) -> Result<(), PamResultCode> {
    if secret.contains(&0) {
        return Err(PamResultCode::PAM_AUTH_ERR);
    }
    let mut c = zeroize::Zeroizing::new(Vec::with_capacity(secret.len() + 1));
    c.extend_from_slice(secret);
    c.push(0);
    if ffi::set_authtok(pamh, &c) {
        Ok(())
    } else {
        Err(PamResultCode::PAM_SYSTEM_ERR)
    }
}

/// The one call pam-bindings does not offer: `pam_set_item(PAM_AUTHTOK)` (its `AuthTok`
/// item cannot be built outside it).
#[allow(unsafe_code)]
mod ffi {
    use pam::module::PamHandle;

    /// `PAM_AUTHTOK` in `<security/_pam_types.h>`.
    const PAM_AUTHTOK: nix::libc::c_int = 6;

    #[link(name = "pam")]
    extern "C" {
        fn pam_set_item(
            pamh: *mut PamHandle,
            item_type: nix::libc::c_int,
            item: *const nix::libc::c_void,
        ) -> nix::libc::c_int;
    }

    /// Whether libpam took `nul_terminated`, which must end with its only NUL byte.
    pub(super) fn set_authtok(pamh: &mut PamHandle, nul_terminated: &[u8]) -> bool {
        if nul_terminated.last() != Some(&0)
            || nul_terminated.iter().filter(|b| **b == 0).count() != 1
        {
            return false;
        }
        // SAFETY: `pamh` is the handle libpam passed to this hook, borrowed mutably for the
        // call (no other use of it meanwhile); `nul_terminated` is a valid C string (checked
        // above) that lives until the call returns, and libpam copies it (strdup) before
        // returning, so the caller may wipe it afterwards.
        let rc = unsafe { pam_set_item(pamh, PAM_AUTHTOK, nul_terminated.as_ptr().cast()) };
        rc == 0 // PAM_SUCCESS
    }
}

/// PAM_SERVICE, PAM_RHOST and PAM_TTY. An absent or empty item is omitted.
///
/// # Errors
/// A [`Refusal`] (`PAM_AUTH_ERR`) when an item is present but over-long, not UTF-8 or holds
/// control characters. Why refuse rather than omit: a daemon policy may treat "no rhost" as
/// a local login, so a remote host must never vanish because it looks odd.
pub fn read_context(pamh: &PamHandle) -> Result<LoginContext, Refusal> {
    let item_err = |code| refuse(code, "cannot read a PAM item");
    let service = pamh.get_item::<Service>().map_err(item_err)?;
    let rhost = pamh.get_item::<RHost>().map_err(item_err)?;
    let tty = pamh.get_item::<Tty>().map_err(item_err)?;
    Ok(LoginContext {
        service: context_value("PAM_SERVICE", service.map(|i| i.0))?,
        rhost: context_value("PAM_RHOST", rhost.map(|i| i.0))?,
        tty: context_value("PAM_TTY", tty.map(|i| i.0))?,
        app_password: false,
        forward_pass: false,
    })
}

fn context_value(item: &str, raw: Option<&CStr>) -> Result<Option<String>, Refusal> {
    let bad = |why: &str| refuse(PamResultCode::PAM_AUTH_ERR, format!("{item} {why}"));
    let Some(raw) = raw else { return Ok(None) };
    let bytes = raw.to_bytes();
    if bytes.is_empty() {
        return Ok(None);
    }
    if bytes.len() > limits::MAX_CONTEXT_LEN {
        return Err(bad("is too long"));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| bad("is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(bad("holds control characters"));
    }
    Ok(Some(text.to_owned()))
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
    use std::ffi::CString;

    fn value(bytes: &[u8]) -> Result<Option<String>, PamResultCode> {
        let c = CString::new(bytes).unwrap();
        context_value("PAM_RHOST", Some(&c)).map_err(|r| r.code)
    }

    #[test]
    fn context_items() {
        assert_eq!(context_value("PAM_TTY", None).ok().unwrap(), None);
        assert_eq!(value(b""), Ok(None));
        assert_eq!(value(b"192.0.2.7"), Ok(Some("192.0.2.7".into())));
        assert_eq!(value(b"h\xc3\xa9te"), Ok(Some("h\u{e9}te".into())));
        let at_cap = vec![b'a'; limits::MAX_CONTEXT_LEN];
        assert_eq!(
            value(&at_cap),
            Ok(Some("a".repeat(limits::MAX_CONTEXT_LEN)))
        );
        for bad in [
            &vec![b'a'; limits::MAX_CONTEXT_LEN + 1][..],
            b"\xff\xfe",
            b"evil\nhost",
            b"esc\x1b[2J",
        ] {
            assert_eq!(value(bad), Err(PamResultCode::PAM_AUTH_ERR), "{bad:?}");
        }
    }

    #[test]
    fn raw_user_items() {
        let code = |raw: Option<&[u8]>| {
            let c = raw.map(|r| CString::new(r).unwrap());
            user_name(c.as_deref()).map_err(|r| r.code)
        };
        assert_eq!(code(Some(b"alice")), Ok("alice".into()));
        assert_eq!(code(Some("j\u{f6}rg".as_bytes())), Ok("j\u{f6}rg".into()));
        // No name, and every odd one: the same answer, never PAM_SYSTEM_ERR.
        for raw in [
            None,
            Some(&b""[..]),
            Some(b"\xff\xfe"),
            Some(b"ts_\xc3"),
            Some(b"a\nb"),
            Some(&[b'a'; limits::MAX_USER_LEN + 1][..]),
        ] {
            assert_eq!(code(raw), Err(PamResultCode::PAM_USER_UNKNOWN), "{raw:?}");
        }
        let why = user_name(Some(&CString::new(&b"\xff\nforged"[..]).unwrap()))
            .err()
            .unwrap()
            .why;
        assert!(!why.contains('\n'), "{why}");
    }

    #[test]
    fn user_names() {
        assert_eq!(check_user("alice".into()).ok(), Some("alice".into()));
        let at_cap = "a".repeat(limits::MAX_USER_LEN);
        assert_eq!(check_user(at_cap.clone()).ok(), Some(at_cap));
        for bad in [
            String::new(),
            "a".repeat(limits::MAX_USER_LEN + 1),
            "root\nuser=eve".into(),
            "tab\tname".into(),
        ] {
            let refusal = check_user(bad.clone()).err().unwrap();
            assert_eq!(refusal.code, PamResultCode::PAM_USER_UNKNOWN, "{bad:?}");
            assert!(
                !refusal.why.contains('\n') && refusal.why.len() < 120,
                "{}",
                refusal.why
            );
        }
    }
}
