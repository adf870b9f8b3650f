// SPDX-License-Identifier: MIT OR Apache-2.0
//! Real libpam, in-process: `pam_start_confdir` → `pam_authenticate` → `pam_end`, with a
//! conversation that answers every prompt with the code chosen for this login.
//!
//! `pam_start_confdir` (Linux-PAM ≥ 1.5) reads the service file from a private directory,
//! so the benchmark writes nothing under `/etc/pam.d`.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::time::{Duration, Instant};

pub const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_RHOST: c_int = 4;

/// `struct pam_message`.
#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

/// `struct pam_response`.
#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn =
    extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start_confdir(
        service_name: *const c_char,
        user: *const c_char,
        pam_conversation: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    fn pam_set_item(pamh: *mut c_void, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut c_void, pam_status: c_int) -> c_int;
}

/// What the conversation answers, and what it saw.
#[repr(C)]
struct Answer {
    /// The code, NUL-terminated.
    code: [u8; 7],
    prompts: u32,
    messages: u32,
}

/// The conversation: every prompt (echo on or off) gets the code; text and error messages
/// are counted and get no reply, as a terminal would show them.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || n > 32 || msg.is_null() || resp.is_null() || appdata.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: calloc of n zeroed responses; libpam frees them (and each `resp`) with free().
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    // SAFETY: appdata is the `Answer` that `login` passed in `PamConv`, alive for the whole
    // pam_authenticate call; libpam calls the conversation on the same thread.
    let answer = unsafe { &mut *appdata.cast::<Answer>() };
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of `n` pointers to messages.
        let m = unsafe { *msg.add(i) };
        if m.is_null() {
            continue;
        }
        // SAFETY: `m` points to a valid pam_message for the duration of this call.
        let style = unsafe { (*m).msg_style };
        if style == PAM_PROMPT_ECHO_OFF || style == PAM_PROMPT_ECHO_ON {
            answer.prompts += 1;
            // SAFETY: `code` is NUL-terminated; strdup copies it into malloc'ed memory.
            let dup = unsafe { libc::strdup(answer.code.as_ptr().cast()) };
            if dup.is_null() {
                for j in 0..i {
                    // SAFETY: entries before `i` are ours: NULL or strdup'ed.
                    unsafe { libc::free((*replies.add(j)).resp.cast()) };
                }
                // SAFETY: allocated above with calloc.
                unsafe { libc::free(replies.cast()) };
                return PAM_BUF_ERR;
            }
            // SAFETY: i < n, inside the calloc'ed array.
            unsafe { (*replies.add(i)).resp = dup };
        } else {
            answer.messages += 1;
        }
    }
    // SAFETY: resp is a valid out-pointer (checked non-null above).
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// What one login returned.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// `pam_authenticate`'s result (or `pam_start`'s, if that failed).
    pub code: c_int,
    /// From `pam_start` to the end of `pam_end`.
    pub elapsed: Duration,
    pub prompts: u32,
    pub messages: u32,
}

/// One full PAM transaction for `user` against `service` in `confdir`, answering `code`.
pub fn login(confdir: &CStr, service: &CStr, user: &CStr, code: &[u8; 6]) -> Outcome {
    let mut answer = Answer {
        code: [code[0], code[1], code[2], code[3], code[4], code[5], 0],
        prompts: 0,
        messages: 0,
    };
    let conv = PamConv {
        conv: Some(converse),
        appdata_ptr: (&raw mut answer).cast(),
    };
    let mut pamh: *mut c_void = std::ptr::null_mut();
    let start = Instant::now();
    // SAFETY: every pointer is a valid NUL-terminated string or struct that outlives the
    // transaction; `pamh` is an out-pointer.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS || pamh.is_null() {
        return Outcome {
            code: rc,
            elapsed: start.elapsed(),
            prompts: 0,
            messages: 0,
        };
    }
    let rhost = c"127.0.0.1";
    // SAFETY: pamh is a live handle; libpam copies the item.
    unsafe { pam_set_item(pamh, PAM_RHOST, rhost.as_ptr().cast()) };
    // SAFETY: pamh is a live handle.
    let rc = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: pamh is a live handle, ended exactly once.
    unsafe { pam_end(pamh, rc) };
    Outcome {
        code: rc,
        elapsed: start.elapsed(),
        prompts: answer.prompts,
        messages: answer.messages,
    }
}

/// `pam_strerror`-like short names for the codes the benchmark meets.
pub fn code_name(code: c_int) -> &'static str {
    match code {
        0 => "SUCCESS",
        3 => "SERVICE_ERR",
        4 => "SYSTEM_ERR",
        6 => "PERM_DENIED",
        7 => "AUTH_ERR",
        9 => "AUTHINFO_UNAVAIL",
        10 => "USER_UNKNOWN",
        11 => "MAXTRIES",
        19 => "CONV_ERR",
        25 => "IGNORE",
        26 => "ABORT",
        _ => "OTHER",
    }
}

/// For messages: the name of a C string.
pub fn show(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}
