// SPDX-License-Identifier: MIT OR Apache-2.0
//! Mail servers on loopback for the email tests: Debian's `python3-aiosmtpd` with a handler
//! that writes every message it accepts to a directory the test reads ([`Smtp`]), plain,
//! with STARTTLS (a self-signed certificate made here with `openssl`), or rejecting every
//! recipient with 550; a tarpit that accepts TCP and never says a word ([`Tarpit`]); and a
//! port nobody listens on ([`closed_port`]).

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::unique;

/// Debian's interpreter (the one `python3-aiosmtpd` is installed for), never a `PATH` shim.
pub const PYTHON: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import os, ssl, sys, time
from aiosmtpd.controller import Controller
mode, port, outdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if mode == "reject":
            return "550 5.7.1 rejected by the test server"
        envelope.rcpt_tos.append(address)
        return "250 OK"
    async def handle_DATA(self, server, session, envelope):
        n = time.time_ns()
        tmp = os.path.join(outdir, ".%d.tmp" % n)
        with open(tmp, "wb") as f:
            f.write(("X-Test-Rcpt: %s\r\n" % ",".join(envelope.rcpt_tos)).encode())
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(outdir, "%d.eml" % n))
        return "250 2.0.0 Ok: queued as test"
kw = {}
if mode == "starttls":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    kw = {"tls_context": ctx, "require_starttls": True}
c = Controller(Handler(), hostname="127.0.0.1", port=port, **kw)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// How an [`Smtp`] server behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Plain SMTP, accepts everything.
    Plain,
    /// Requires STARTTLS with a self-signed certificate for 127.0.0.1 ([`Smtp::ca_file`]).
    StartTls,
    /// Answers every RCPT with `550 5.7.1`.
    Reject,
}

/// One aiosmtpd server; stopped on drop.
pub struct Smtp {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    mode: Mode,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().expect("local address").port()
}

/// A loopback port nobody listens on (connections are refused).
pub fn closed_port() -> u16 {
    free_port()
}

/// One received message: the raw text (headers and body) as the server stored it, with
/// line ends as LF.
#[derive(Clone, Debug)]
pub struct Received {
    pub raw: String,
}

impl Received {
    /// The value of header `name` (first one; unfolded), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\n\n").next().unwrap_or_default();
        let mut found: Option<String> = None;
        for line in head.split("\n") {
            if let Some(v) = found.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line.trim_start());
                    continue;
                }
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case(name) {
                    found = Some(v.trim().to_owned());
                }
            }
        }
        found
    }

    /// Every header name, in order.
    pub fn header_names(&self) -> Vec<String> {
        let head = self.raw.split("\n\n").next().unwrap_or_default();
        head.split("\n")
            .filter(|l| !l.starts_with([' ', '\t']))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.to_owned()))
            .collect()
    }

    /// The body (after the blank line), quoted-printable soft breaks undone.
    pub fn body(&self) -> String {
        let body = self.raw.split_once("\n\n").map(|x| x.1).unwrap_or_default();
        body.replace("=\n", "").replace("=3D", "=")
    }

    /// The code of a code mail: the `digits` ASCII digits right after " is " in the body
    /// (the default template's "… is 123456.").
    pub fn code(&self, digits: usize) -> Option<String> {
        let body = self.body();
        body.match_indices(" is ").find_map(|(i, _)| {
            let rest = &body[i + 4..];
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            (n == digits).then(|| rest[..n].to_owned())
        })
    }
}

fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

impl Smtp {
    /// Start a server in `mode` on a free loopback port and wait until it accepts.
    pub fn start(mode: Mode) -> Smtp {
        let dir = unique::temp_dir("smtp");
        let mail = dir.path().join("mail");
        std::fs::create_dir(&mail).expect("mail dir");
        let script = dir.path().join("server.py");
        std::fs::write(&script, SERVER).expect("write server.py");
        let port = free_port();
        let mut cmd = Command::new(PYTHON);
        cmd.arg(&script)
            .arg(match mode {
                Mode::Plain => "plain",
                Mode::StartTls => "starttls",
                Mode::Reject => "reject",
            })
            .arg(port.to_string())
            .arg(&mail);
        if mode == Mode::StartTls {
            let (cert, key) = self_signed(dir.path());
            cmd.arg(cert).arg(key);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start aiosmtpd (python3-aiosmtpd, see scripts/deps)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read aiosmtpd's ready line");
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        Smtp {
            child,
            port,
            dir,
            mode,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A shell script that waits (10 s) for a message beyond the `seen` ones and prints
    /// the code in it (as [`Received::code`], 6 digits): for programs that answer prompts
    /// themselves (the ssh client's askpass).
    pub fn code_script(&self, seen: usize) -> String {
        format!(
            "#!/bin/sh\nexec {PYTHON} - <<'EOF'\n\
             import os, re, time, quopri\n\
             d = {dir:?}\n\
             end = time.time() + 10\n\
             while time.time() < end:\n\
             \x20   names = sorted(n for n in os.listdir(d) if n.endswith('.eml'))\n\
             \x20   if len(names) > {seen}:\n\
             \x20       raw = open(os.path.join(d, names[-1]), 'rb').read().replace(b'\\r', b'')\n\
             \x20       body = quopri.decodestring(raw.split(b'\\n\\n', 1)[1]).decode()\n\
             \x20       print(re.search(r' is (\\d{{6}})', body).group(1))\n\
             \x20       break\n\
             \x20   time.sleep(0.05)\n\
             EOF\n",
            dir = self.dir.path().join("mail").to_string_lossy()
        )
    }

    /// The certificate to trust (STARTTLS mode).
    pub fn ca_file(&self) -> PathBuf {
        assert_eq!(
            self.mode,
            Mode::StartTls,
            "only the STARTTLS server has one"
        );
        self.dir.path().join("cert.pem")
    }

    /// The messages received so far, oldest first.
    pub fn messages(&self) -> Vec<Received> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mail"))
            .expect("read mail dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| Received {
                // Why: SMTP carries CRLF, a sendmail pipe LF; one form for the parsing.
                raw: std::fs::read_to_string(p)
                    .expect("read a message")
                    .replace('\r', ""),
            })
            .collect()
    }

    /// Wait (at most 10 s) until more than `seen` messages arrived; the newest.
    #[track_caller]
    pub fn wait_message(&self, seen: usize) -> Received {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let all = self.messages();
            if all.len() > seen {
                return all.last().cloned().expect("non-empty");
            }
            assert!(
                Instant::now() < deadline,
                "no new message after {seen} within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `[mail]` table for a daemon sending here (plain, or STARTTLS trusting
    /// `ca_file` when given).
    pub fn config(&self, ca_file: Option<&Path>) -> String {
        let tls = match self.mode {
            Mode::StartTls => "starttls",
            Mode::Plain | Mode::Reject => "none",
        };
        let mut t = format!(
            "[mail]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"{tls}\"\nfrom = \"twostep@test.invalid\"\ntimeout_seconds = 3\n",
            self.port
        );
        if let Some(ca) = ca_file {
            t.push_str(&format!("ca_file = {:?}\n", ca.to_string_lossy()));
        }
        t
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that accepts TCP connections and then says nothing, ever; closed on drop.
pub struct Tarpit {
    port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Tarpit {
    /// Start it on a free loopback port.
    pub fn start() -> Tarpit {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the tarpit");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (s, h) = (Arc::clone(&stop), Arc::clone(&held));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => h.lock().unwrap_or_else(|e| e.into_inner()).push(stream),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Tarpit {
            port,
            stop,
            held,
            thread: Some(thread),
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.held.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Tarpit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A `[mail]` table for plain SMTP to 127.0.0.1:`port` with `timeout_seconds`.
pub fn plain_config(port: u16, timeout_seconds: u64) -> String {
    format!(
        "[mail]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\nfrom = \"twostep@test.invalid\"\ntimeout_seconds = {timeout_seconds}\n"
    )
}

/// The host's MTA for the `sendmail` transport: Debian's nullmailer relaying to an [`Smtp`]
/// server, inside a private mount namespace (its own `/etc/nullmailer` and spool, bind-
/// mounted over the machine's, which are never touched). `nullmailer-send` runs in that
/// namespace for the life of this value; [`Nullmailer::sendmail`] is a wrapper script that
/// runs nullmailer's real `/usr/sbin/sendmail` in the same namespace (`nsenter`), so the
/// daemon's `sendmail_command` goes through nullmailer-queue (setuid mail) and
/// nullmailer-send's SMTP client like on a host whose MTA is nullmailer.
pub struct Nullmailer {
    child: Child,
    dir: tempfile::TempDir,
}

impl Nullmailer {
    /// Start nullmailer-send relaying to 127.0.0.1:`port`.
    pub fn start(port: u16) -> Nullmailer {
        crate::require_root();
        let dir = unique::temp_dir("nullmailer");
        let etc = dir.path().join("etc");
        let spool = dir.path().join("spool");
        std::fs::create_dir(&etc).expect("etc");
        std::fs::write(
            etc.join("remotes"),
            format!("127.0.0.1 smtp --port={port}\n"),
        )
        .expect("remotes");
        std::fs::write(etc.join("me"), "twostep-e2e.invalid\n").expect("me");
        std::fs::write(etc.join("defaultdomain"), "twostep-e2e.invalid\n").expect("domain");
        std::fs::write(etc.join("adminaddr"), "").expect("adminaddr");
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-c")
                .arg(script)
                .output()
                .expect("run sh");
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let s = spool.to_string_lossy();
        // The temp dir is 0700 root: nullmailer-queue (setuid mail) must reach its spool.
        sh(&format!(
            "chmod 0755 '{d}' && mkdir -p '{s}/queue' '{s}/tmp' '{s}/failed' && mkfifo '{s}/trigger' \
             && chown -R mail:root '{s}' && chmod 0750 '{s}/queue' '{s}/tmp' && chmod 0622 '{s}/trigger'",
            d = dir.path().display()
        ));
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(
                "mount --bind \"$1\" /etc/nullmailer && mount --bind \"$2\" /var/spool/nullmailer \
                 && exec /usr/sbin/nullmailer-send",
            )
            .arg("twostep-e2e-nullmailer")
            .arg(&etc)
            .arg(&spool)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nullmailer-send (nullmailer, see scripts/deps)");
        let wrapper = dir.path().join("sendmail");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec nsenter --mount --target {} -- /usr/sbin/sendmail \"$@\"\n",
                child.id()
            ),
        )
        .expect("wrapper");
        crate::unique::chmod(&wrapper, 0o755);
        // Wait until the namespace's mounts are in place (the spool shows our fifo).
        let target = child.id();
        let ok = crate::proc::poll(Duration::from_secs(5), Duration::from_millis(20), || {
            Command::new("nsenter")
                .args([
                    "--mount",
                    "--target",
                    &target.to_string(),
                    "--",
                    "cat",
                    "/etc/nullmailer/me",
                ])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("twostep-e2e"))
        });
        assert!(ok, "nullmailer's namespace did not come up");
        Nullmailer { child, dir }
    }

    /// The `sendmail_command` for the daemon.
    pub fn sendmail(&self) -> PathBuf {
        self.dir.path().join("sendmail")
    }
}

impl Drop for Nullmailer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
