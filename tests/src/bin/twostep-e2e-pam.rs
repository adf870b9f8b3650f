// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostep-e2e-pam`: a minimal PAM application over the real libpam, for what pamtester
//! cannot do: `pam_start` with a NULL user (no `PAM_USER` at all), a user name that is
//! raw bytes (not UTF-8), and an authentication that starts with no file descriptor left
//! (`RLIMIT_NOFILE` lowered after `pam_start`, so the first `socket()` a module makes
//! fails with `EMFILE`).
//!
//! ```text
//! twostep-e2e-pam SERVICE (--user NAME | --no-user) [--no-fd-left]
//! ```
//!
//! The conversation reads one answer per line from stdin (end of input: the conversation
//! fails) and reports every message on stderr, one line each, prefixed by its style:
//! `PROMPT_ECHO_OFF: `, `PROMPT_ECHO_ON: `, `ERROR_MSG: `, `TEXT_INFO: `. The last line on
//! stdout is `result: <PAM code name> <number>: <pam_strerror>`; the exit status is 0 for
//! `PAM_SUCCESS`, 1 for any other result, 2 for a usage or setup error.
//!
//! [`twostep_e2e::pamclient`] drives it.

use std::ffi::{c_char, c_int, c_void, CStr, CString, OsString};
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStringExt;
use std::process::ExitCode;

/// `struct pam_message` (Linux-PAM `security/_pam_types.h`).
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

/// `struct pam_conv`.
#[repr(C)]
struct PamConv {
    conv: extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int,
    appdata_ptr: *mut c_void,
}

/// `pam_handle_t`, opaque.
#[repr(C)]
struct PamHandle {
    _private: [u8; 0],
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        pamh: *mut *mut PamHandle,
    ) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

const PAM_SUCCESS: c_int = 0;
const PAM_BUF_ERR: c_int = 5;
const PAM_CONV_ERR: c_int = 19;
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

/// Linux-PAM's result codes by number (`security/_pam_types.h`).
const CODE_NAMES: [&str; 32] = [
    "PAM_SUCCESS",
    "PAM_OPEN_ERR",
    "PAM_SYMBOL_ERR",
    "PAM_SERVICE_ERR",
    "PAM_SYSTEM_ERR",
    "PAM_BUF_ERR",
    "PAM_PERM_DENIED",
    "PAM_AUTH_ERR",
    "PAM_CRED_INSUFFICIENT",
    "PAM_AUTHINFO_UNAVAIL",
    "PAM_USER_UNKNOWN",
    "PAM_MAXTRIES",
    "PAM_NEW_AUTHTOK_REQD",
    "PAM_ACCT_EXPIRED",
    "PAM_SESSION_ERR",
    "PAM_CRED_UNAVAIL",
    "PAM_CRED_EXPIRED",
    "PAM_CRED_ERR",
    "PAM_NO_MODULE_DATA",
    "PAM_CONV_ERR",
    "PAM_AUTHTOK_ERR",
    "PAM_AUTHTOK_RECOVERY_ERR",
    "PAM_AUTHTOK_LOCK_BUSY",
    "PAM_AUTHTOK_DISABLE_AGING",
    "PAM_TRY_AGAIN",
    "PAM_IGNORE",
    "PAM_ABORT",
    "PAM_AUTHTOK_EXPIRED",
    "PAM_MODULE_UNKNOWN",
    "PAM_BAD_ITEM",
    "PAM_CONV_AGAIN",
    "PAM_INCOMPLETE",
];

fn code_name(code: c_int) -> &'static str {
    usize::try_from(code)
        .ok()
        .and_then(|i| CODE_NAMES.get(i))
        .copied()
        .unwrap_or("PAM_UNKNOWN_CODE")
}

/// The next answer from stdin, without its newline; `None` at the end of input.
fn next_answer() -> Option<Vec<u8>> {
    let mut line = Vec::new();
    match std::io::stdin().lock().read_until(b'\n', &mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            Some(line)
        }
    }
}

/// The conversation function: see the file's documentation.
extern "C" fn converse(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    _appdata: *mut c_void,
) -> c_int {
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 || msg.is_null() || resp.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: calloc of n zeroed `pam_response`s; libpam frees the array and each `resp`
    // with free(3), so they must come from malloc.
    let replies =
        unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) }.cast::<PamResponse>();
    if replies.is_null() {
        return PAM_BUF_ERR;
    }
    let mut stderr = std::io::stderr().lock();
    for i in 0..n {
        // SAFETY: Linux-PAM passes `msg` as an array of `num_msg` pointers to messages,
        // each valid for the duration of this call.
        let m = unsafe { &**msg.add(i) };
        let text = if m.msg.is_null() {
            String::new()
        } else {
            // SAFETY: a message text is a NUL-terminated string owned by the caller.
            unsafe { CStr::from_ptr(m.msg) }
                .to_string_lossy()
                .into_owned()
        };
        let style = match m.msg_style {
            PAM_PROMPT_ECHO_OFF => "PROMPT_ECHO_OFF",
            PAM_PROMPT_ECHO_ON => "PROMPT_ECHO_ON",
            PAM_ERROR_MSG => "ERROR_MSG",
            PAM_TEXT_INFO => "TEXT_INFO",
            _ => "OTHER",
        };
        let _ = writeln!(stderr, "{style}: {}", text.replace('\n', "\\n"));
        if matches!(m.msg_style, PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON) {
            let answer = next_answer().and_then(|a| CString::new(a).ok());
            let Some(answer) = answer else {
                let _ = writeln!(stderr, "(no answer left: the conversation fails)");
                free_replies(replies, n);
                return PAM_CONV_ERR;
            };
            // SAFETY: strdup copies the NUL-terminated answer into malloc'ed memory,
            // which libpam frees; `replies` has `n` entries and `i < n`.
            unsafe {
                let copy = libc::strdup(answer.as_ptr());
                if copy.is_null() {
                    free_replies(replies, n);
                    return PAM_BUF_ERR;
                }
                (*replies.add(i)).resp = copy;
            }
        }
    }
    // SAFETY: `resp` is a valid out-pointer given by libpam.
    unsafe { *resp = replies };
    PAM_SUCCESS
}

/// Frees a reply array of `n` entries made by [`converse`].
fn free_replies(replies: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: `replies` holds `n` entries, each `resp` NULL or from strdup.
        unsafe { libc::free((*replies.add(i)).resp.cast()) };
    }
    // SAFETY: from calloc above.
    unsafe { libc::free(replies.cast()) };
}

/// The lowest file descriptor number not in use: the one the next `open` gets.
fn lowest_free_fd() -> Option<u64> {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null").ok()?;
    u64::try_from(probe.as_raw_fd()).ok()
    // `probe` closes here, so that number is free again.
}

fn usage() -> ExitCode {
    eprintln!("usage: twostep-e2e-pam SERVICE (--user NAME | --no-user) [--no-fd-left]");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(service) = args.next() else {
        return usage();
    };
    let mut user: Option<Option<OsString>> = None;
    let mut no_fd_left = false;
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--user") => match args.next() {
                Some(name) => user = Some(Some(name)),
                None => return usage(),
            },
            Some("--no-user") => user = Some(None),
            Some("--no-fd-left") => no_fd_left = true,
            _ => return usage(),
        }
    }
    let Some(user) = user else {
        return usage();
    };
    let Ok(service) = CString::new(service.into_vec()) else {
        return usage();
    };
    let user = match user.map(|u| CString::new(u.into_vec())) {
        None => None,
        Some(Ok(u)) => Some(u),
        Some(Err(_)) => return usage(),
    };
    let conv = PamConv {
        conv: converse,
        appdata_ptr: std::ptr::null_mut(),
    };
    let mut pamh: *mut PamHandle = std::ptr::null_mut();
    // SAFETY: valid C strings (or NULL for the user), a conversation that lives until
    // pam_end, and an out-pointer for the handle.
    let started = unsafe {
        pam_start(
            service.as_ptr(),
            user.as_ref().map_or(std::ptr::null(), |u| u.as_ptr()),
            &conv,
            &mut pamh,
        )
    };
    if started != PAM_SUCCESS || pamh.is_null() {
        eprintln!("pam_start failed: {} {started}", code_name(started));
        return ExitCode::from(2);
    }
    if no_fd_left {
        // pam_start has read the service file and loaded its modules: from here on every
        // new descriptor (the module's socket() first) fails with EMFILE.
        let Some(limit) = lowest_free_fd() else {
            eprintln!("cannot find the lowest free descriptor");
            return ExitCode::from(2);
        };
        let rlim = libc::rlimit {
            rlim_cur: limit,
            rlim_max: limit,
        };
        // SAFETY: setrlimit with a valid struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rlim) } != 0 {
            eprintln!("setrlimit failed: {}", std::io::Error::last_os_error());
            return ExitCode::from(2);
        }
    }
    // SAFETY: a handle from pam_start.
    let result = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: pam_strerror returns a static (or handle-owned) NUL-terminated string.
    let text = unsafe {
        let s = pam_strerror(pamh, result);
        if s.is_null() {
            String::new()
        } else {
            CStr::from_ptr(s).to_string_lossy().into_owned()
        }
    };
    println!("result: {} {result}: {text}", code_name(result));
    // SAFETY: the handle is not used after this.
    unsafe { pam_end(pamh, result) };
    if result == PAM_SUCCESS {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
