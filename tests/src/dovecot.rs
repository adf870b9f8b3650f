// SPDX-License-Identifier: MIT OR Apache-2.0
//! A test Dovecot IMAP server and a real IMAP client.
//!
//! [`Dovecot`] runs Debian's `dovecot` (dovecot-imapd) in the foreground with its own
//! configuration file, `base_dir`, `state_dir`, log and mail directory under a temp dir,
//! listening on a loopback port, with `passdb pam` naming the test's PAM service. Nothing of
//! the machine's own Dovecot (`/etc/dovecot`, `/run/dovecot`) is read or touched. The
//! auth cache is off (Dovecot's default), so every login reaches PAM.
//!
//! [`imap_login`] logs in with Python's `imaplib` (the password on stdin, never in argv).

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::proc::{self, Output};
use crate::unique;

/// Debian's dovecot binary.
pub const DOVECOT: &str = "/usr/sbin/dovecot";
/// What the client prints after a successful LOGIN.
pub const LOGGED_IN: &str = "IMAP-LOGGED-IN";

/// A running test Dovecot; stopped (and its temp dir removed) on drop.
pub struct Dovecot {
    child: Option<Child>,
    port: u16,
    config: String,
    dir: tempfile::TempDir,
}

impl Dovecot {
    /// Start Dovecot with `passdb pam` on the PAM service `pam_service`; logins map to
    /// `uid`/`gid` (a static userdb: mail is stored under the temp dir).
    pub fn start(pam_service: &str, uid: u32, gid: u32) -> Dovecot {
        crate::require_root();
        let dir = unique::temp_dir("dovecot");
        unique::chmod(dir.path(), 0o755);
        for sub in ["run", "state", "mail"] {
            let p = dir.path().join(sub);
            std::fs::create_dir(&p).expect("create dovecot dir");
            unique::chmod(&p, if sub == "mail" { 0o1777 } else { 0o755 });
        }
        let mut d = Dovecot {
            child: None,
            port: 0,
            config: String::new(),
            dir,
        };
        d.launch(pam_service, uid, gid);
        d
    }

    fn config_text(&self, pam_service: &str, uid: u32, gid: u32, port: u16) -> String {
        let dir = self.dir.path().display();
        format!(
            "# twostep e2e test dovecot (PAM service {pam_service})\n\
             base_dir = {dir}/run\n\
             state_dir = {dir}/state\n\
             instance_name = {pam_service}\n\
             protocols = imap\n\
             listen = 127.0.0.1\n\
             ssl = no\n\
             disable_plaintext_auth = no\n\
             auth_mechanisms = plain login\n\
             auth_verbose = yes\n\
             auth_failure_delay = 0\n\
             log_path = {dir}/dovecot.log\n\
             mail_location = maildir:{dir}/mail/%u\n\
             passdb {{\n  driver = pam\n  args = {pam_service}\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={dir}/mail/%u\n}}\n\
             service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    \
             port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        )
    }

    fn launch(&mut self, pam_service: &str, uid: u32, gid: u32) {
        let config_path = self.dir.path().join("dovecot.conf");
        let log = self.dir.path().join("dovecot.log");
        for attempt in 1..=10 {
            let port = 30000 + u16::from_str_radix(&unique::random_hex(2), 16).expect("hex") % 2000;
            self.config = self.config_text(pam_service, uid, gid, port);
            std::fs::write(&config_path, &self.config).expect("write dovecot.conf");
            let mut cmd = proc::command(None, DOVECOT);
            cmd.arg("-F")
                .arg("-c")
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let mut child = cmd.spawn().expect("start dovecot");
            let mut exited = None;
            let up = proc::poll(Duration::from_secs(20), Duration::from_millis(50), || {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            });
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            match exited {
                None if up => {
                    self.child = Some(child);
                    self.port = port;
                    return;
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("dovecot did not listen within 20 s; log:\n{text}");
                }
                Some(_) if text.contains("in use") && attempt < 10 => {}
                Some(status) => panic!(
                    "dovecot exited ({status}); config:\n{}\nlog:\n{text}",
                    self.config
                ),
            }
        }
        unreachable!("the loop returns or panics");
    }

    /// The loopback port of its IMAP listener.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its log (auth results included), for messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// Its configuration file, for messages.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Where it keeps its files.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the master stops its children (auth, imap-login) and exits.
            proc::signal(child.id(), "TERM");
            let _ = proc::wait_timeout(&mut child, Duration::from_secs(10));
        }
        if std::thread::panicking() {
            eprintln!("=== dovecot log ===\n{}", self.log());
        }
    }
}

/// The IMAP client: `LOGIN user password` (password on stdin), then `LOGOUT`.
const CLIENT: &str = r#"
import imaplib, sys
port, user = int(sys.argv[1]), sys.argv[2]
password = sys.stdin.readline().rstrip("\n")
c = imaplib.IMAP4("127.0.0.1", port, timeout=30)
try:
    c.login(user, password)
except imaplib.IMAP4.error as e:
    print("REFUSED", e)
    sys.exit(1)
print("IMAP-LOGGED-IN")
c.logout()
"#;

/// Log in to `port` as `user` with `password` through python3's `imaplib`; the output
/// holds [`LOGGED_IN`] on success.
pub fn imap_login(port: u16, user: &str, password: &str) -> Output {
    let mut cmd = proc::command(None, "python3");
    cmd.arg("-c").arg(CLIENT).arg(port.to_string()).arg(user);
    proc::run(
        cmd,
        format!("{password}\n").as_bytes(),
        Duration::from_secs(60),
    )
}
