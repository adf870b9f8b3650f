// SPDX-License-Identifier: MIT OR Apache-2.0
//! A test OpenSSH server and the real `ssh` client.
//!
//! [`Sshd`] runs Debian's `/usr/sbin/sshd` on a loopback port with its own config file,
//! host key and PAM service. OpenSSH (9.2 on Debian 12) names its PAM service after the
//! program (`__progname`, from `argv[0]`), so the harness starts it through a symlink named
//! like the service file it writes (`/etc/pam.d/twostep-e2e-<unique>`): the machine's own
//! sshd, its config and `/etc/pam.d/sshd` are never touched. It runs in a private mount
//! namespace only so the module's syslog lines reach a [`Syslog`] the test can read.
//!
//! [`Ssh`] drives the client non-interactively: `SSH_ASKPASS_REQUIRE=force` makes ssh ask
//! an askpass program for every keyboard-interactive prompt, and the harness's askpass
//! (a shell script) records each prompt and answers it: the password, the code, the code
//! of the key shown by an enrolment prompt (with oathtool), or Enter.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::ctl::Enrolled;
use crate::logins::{self, LoginUser};
use crate::ns::Namespace;
use crate::otp::Algorithm;
use crate::proc::{self, Output};
use crate::syslog::Syslog;
use crate::{unique, PamService};

/// The sshd binary of Debian's openssh-server.
pub const SSHD: &str = "/usr/sbin/sshd";
/// What the test command prints on a successful login.
pub const LOGGED_IN: &str = "twostep-e2e-logged-in";
/// How long one ssh client run may take before the harness kills it.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// The `AuthenticationMethods` the test server requires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Methods {
    /// `keyboard-interactive`: PAM asks for the password, then the code.
    KbdInteractive,
    /// `publickey,keyboard-interactive`: a key first, then PAM asks only for the code.
    KeyThenKbdInteractive,
    /// No `AuthenticationMethods` and `PasswordAuthentication yes` as well: the pitfall
    /// docs/sshd.md warns about (sshd's password method runs the same PAM stack but can
    /// only answer prompts with the password).
    PasswordAllowed,
    /// `password` only, keyboard-interactive off: one password prompt, answered by the
    /// client's password (pam_twostep's `forward_pass`).
    PasswordOnly,
}

static SWEEP: std::sync::Once = std::sync::Once::new();

/// Kill the listeners of test sshds whose test process is gone (killed before its drops
/// ran). A listener's title is `twostep-e2e-<pid>-…: <path> -D -e -f <config> [listener] …`.
fn sweep_stale_listeners() {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let title = String::from_utf8_lossy(&cmdline);
        let Some(owner) = title
            .strip_prefix(crate::cleanup::PAM_PREFIX)
            .filter(|_| title.contains("[listener]"))
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{owner}")).exists() {
            for child in logins::descendants(pid) {
                proc::signal(child, "KILL");
            }
            proc::signal(pid, "KILL");
        }
    }
}

/// A running test sshd; on drop its connections and the listener are killed, and the PAM
/// service, the symlink and the temp dir are removed.
pub struct Sshd {
    child: Option<Child>,
    port: u16,
    config: String,
    log: PathBuf,
    keys: PathBuf,
    syslog: Syslog,
    pam: PamService,
    dir: tempfile::TempDir,
}

impl Sshd {
    /// Start sshd requiring `methods`, with `pam_stack` as its PAM service.
    pub fn start(methods: Methods, pam_stack: &str) -> Sshd {
        crate::require_root();
        SWEEP.call_once(sweep_stale_listeners);
        // sshd's privilege-separation dir; Debian's service creates it at boot.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let pam = PamService::new(pam_stack);
        let dir = unique::temp_dir("sshd");
        unique::chmod(dir.path(), 0o755);
        let host_key = dir.path().join("host_ed25519");
        let mut keygen = proc::command(None, "ssh-keygen");
        keygen
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&host_key);
        proc::run(keygen, b"", Duration::from_secs(20)).assert_success();
        let keys = dir.path().join("authorized_keys");
        std::fs::create_dir(&keys).expect("create authorized_keys dir");
        unique::chmod(&keys, 0o755);
        // The program name is the PAM service name.
        let program = dir.path().join(pam.name());
        std::os::unix::fs::symlink(SSHD, &program).expect("symlink sshd");
        let log = dir.path().join("sshd.log");
        let syslog = Syslog::start();
        let mut sshd = Sshd {
            child: None,
            port: 0,
            config: String::new(),
            log,
            keys,
            syslog,
            pam,
            dir,
        };
        sshd.launch(methods, &program, &host_key);
        sshd
    }

    fn config_text(&self, methods: Methods, port: u16, host_key: &Path) -> String {
        let (pubkey, password, auth) = match methods {
            Methods::KbdInteractive => ("no", "no", "keyboard-interactive"),
            Methods::KeyThenKbdInteractive => ("yes", "no", "publickey,keyboard-interactive"),
            Methods::PasswordAllowed => ("no", "yes", "any"),
            Methods::PasswordOnly => ("no", "yes", "password"),
        };
        let kbd = if methods == Methods::PasswordOnly {
            "no"
        } else {
            "yes"
        };
        format!(
            "# twostep e2e test sshd (service {service})\n\
             Port {port}\n\
             ListenAddress 127.0.0.1\n\
             AddressFamily inet\n\
             HostKey {host_key}\n\
             PidFile {dir}/sshd.pid\n\
             UsePAM yes\n\
             KbdInteractiveAuthentication {kbd}\n\
             PasswordAuthentication {password}\n\
             PubkeyAuthentication {pubkey}\n\
             AuthenticationMethods {auth}\n\
             AuthorizedKeysFile {keys}/%u\n\
             # The key files live under /tmp (world-writable): StrictModes would refuse them.\n\
             StrictModes no\n\
             PermitRootLogin no\n\
             AllowUsers ts_*\n\
             MaxAuthTries 6\n\
             LoginGraceTime 60\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             LogLevel VERBOSE\n",
            service = self.pam.name(),
            host_key = host_key.display(),
            dir = self.dir.path().display(),
            keys = self.keys.display(),
        )
    }

    fn launch(&mut self, methods: Methods, program: &Path, host_key: &Path) {
        let config_path = self.dir.path().join("sshd_config");
        for attempt in 1..=10 {
            // Below Linux's ephemeral range (32768+), so clients' source ports never clash;
            // a port another test holds makes sshd exit, and we take the next.
            let port =
                20000 + u16::from_str_radix(&unique::random_hex(2), 16).expect("hex") % 10000;
            self.config = self.config_text(methods, port, host_key);
            std::fs::write(&config_path, &self.config).expect("write sshd_config");
            let test = {
                let mut c = proc::command(None, program);
                c.arg("-t").arg("-f").arg(&config_path);
                proc::run(c, b"", Duration::from_secs(20))
            };
            assert!(
                test.success(),
                "sshd -t refused the config:\n{test}\n{}",
                self.config
            );
            let log = std::fs::File::create(&self.log).expect("create sshd log");
            let mut cmd = Namespace::new()
                .syslog(self.syslog.socket())
                .command(program);
            cmd.args(["-D", "-e", "-f"])
                .arg(&config_path)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log);
            let mut child = cmd.spawn().expect("start sshd");
            let listening = format!("Server listening on 127.0.0.1 port {port}");
            let mut exited = None;
            proc::poll(Duration::from_secs(20), Duration::from_millis(20), || {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    return true;
                }
                self.log().contains(&listening)
            });
            match exited {
                None if self.log().contains(&listening) => {
                    self.child = Some(child);
                    self.port = port;
                    return;
                }
                None => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("sshd did not listen within 20 s; log:\n{}", self.log());
                }
                Some(status) if self.log().contains("Address already in use") && attempt < 10 => {
                    let _ = status;
                }
                Some(status) => panic!("sshd exited ({status}); log:\n{}", self.log()),
            }
        }
        unreachable!("the loop returns or panics");
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its PAM service name (= the name of the symlink it runs as).
    pub fn service(&self) -> &str {
        self.pam.name()
    }

    /// The PAM stack it uses.
    pub fn pam_stack(&self) -> &str {
        self.pam.contents()
    }

    /// The sshd_config it runs with.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// sshd's own log (`-e`, LogLevel VERBOSE).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the module (and anything else in sshd's process tree) sent to syslog.
    pub fn syslog(&self) -> &Syslog {
        &self.syslog
    }

    /// Let `user` log in with its key (`AuthorizedKeysFile <dir>/%u`).
    pub fn authorize(&self, user: &LoginUser) {
        let path = self.keys.join(user.name());
        std::fs::write(&path, user.public_key()).expect("write authorized key");
        unique::chmod(&path, 0o644);
    }

    /// Start describing an ssh login as `user` (its password; its key if it has one).
    pub fn ssh(&self, user: &LoginUser) -> Ssh {
        let mut ssh = Ssh::to(self.port, user.name()).password(user.password());
        ssh.key = user.key().map(Path::to_path_buf);
        ssh
    }

    /// Everything about this server, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "--- sshd_config ---\n{}\n--- PAM service {} ---\n{}\n--- sshd log ---\n{}\n--- syslog ---\n{}",
            self.config,
            self.service(),
            self.pam.contents(),
            self.log(),
            self.syslog.dump()
        )
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Connections first (each is a child of the listener), then the listener.
            for pid in logins::descendants(child.id()) {
                proc::signal(pid, "KILL");
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "=== test sshd on port {} ===\n{}",
                self.port,
                self.describe()
            );
        }
    }
}

/// One run of the `ssh` client being described.
#[must_use]
pub struct Ssh {
    port: u16,
    user: String,
    password: Option<String>,
    code: Option<String>,
    key: Option<PathBuf>,
    preferred: String,
    known_hosts: Option<PathBuf>,
    timeout: Duration,
    /// A program that prints the emailed code (answers `Code sent to …: `).
    mail_code: Option<String>,
}

/// The askpass program: records every prompt (separated by `\x1e`) and answers it from the
/// files next to it. `$1` is the prompt, with ssh's `(user@host) ` in front.
const ASKPASS: &str = r#"#!/bin/sh
d="$(dirname "$0")"
printf '%s\036' "$1" >> "$d/prompts"
case "$1" in
  *"Code from your app: ")
    key=$(printf '%s\n' "$1" | sed -n 's/.*key by hand: //p' | tr -d ' ')
    now=$(date +%s)
    printf '%s %s\n' "$key" "$now" > "$d/enrolled"
    exec oathtool --totp=SHA1 --base32 --digits=6 --time-step-size=30s --now="@$now" "$key" ;;
  *"Verification code"*": ")
    [ -f "$d/code" ] && exec cat "$d/code" ;;
  *"Code sent to "*)
    [ -x "$d/mailcode" ] && exec "$d/mailcode" ;;
  *"Press Enter"*)
    echo; exit 0 ;;
  *"assword: ")
    [ -f "$d/password" ] && exec cat "$d/password" ;;
esac
echo "unexpected prompt" >> "$d/unexpected"
exit 1
"#;

impl Ssh {
    /// `user@127.0.0.1:port`, no password, no code, no key yet.
    pub fn to(port: u16, user: &str) -> Ssh {
        Ssh {
            port,
            user: user.to_string(),
            password: None,
            code: None,
            key: None,
            preferred: "publickey,keyboard-interactive".into(),
            known_hosts: None,
            timeout: CLIENT_TIMEOUT,
            mail_code: None,
        }
    }

    /// Answer the password prompt with `password`.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_string());
        self
    }

    /// Answer the code prompt (`prompts::CODE`, `prompts::CODE_ONLY`) with `code`.
    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_string());
        self
    }

    /// Answer `Code sent to …: ` by running the shell script `script` (it prints the code
    /// it read from the mail; see `smtp::Smtp::code_script`).
    pub fn mail_code(mut self, script: &str) -> Self {
        self.mail_code = Some(script.to_string());
        self
    }

    /// The client's `PreferredAuthentications` (default
    /// `publickey,keyboard-interactive`).
    pub fn preferred(mut self, methods: &str) -> Self {
        self.preferred = methods.to_string();
        self
    }

    /// Trust exactly the host keys in `file` (`StrictHostKeyChecking=yes`) instead of any
    /// key: the login fails if the server's key is not in it.
    pub fn known_hosts(mut self, file: &Path) -> Self {
        self.known_hosts = Some(file.to_path_buf());
        self
    }

    /// Do not offer a key.
    pub fn without_key(mut self) -> Self {
        self.key = None;
        self
    }

    /// Run `ssh … user@127.0.0.1 echo LOGGED_IN`.
    pub fn run(self) -> SshRun {
        let dir = unique::temp_dir("ssh");
        let askpass = dir.path().join("askpass");
        std::fs::write(&askpass, ASKPASS).expect("write askpass");
        unique::chmod(&askpass, 0o700);
        if let Some(p) = &self.password {
            std::fs::write(dir.path().join("password"), format!("{p}\n")).expect("write");
        }
        if let Some(c) = &self.code {
            std::fs::write(dir.path().join("code"), format!("{c}\n")).expect("write");
        }
        if let Some(script) = &self.mail_code {
            let path = dir.path().join("mailcode");
            std::fs::write(&path, script).expect("write mailcode");
            unique::chmod(&path, 0o700);
        }
        let mut cmd = proc::command(None, "ssh");
        cmd.env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            // Why: in the C locale ssh shows non-ASCII prompt text (the QR code's block
            // characters) as octal escapes; a UTF-8 locale shows it as sent.
            .env("LC_ALL", "C.UTF-8")
            .args(["-F", "/dev/null", "-T", "-p"])
            .arg(self.port.to_string())
            .args(["-o", "GlobalKnownHostsFile=/dev/null"]);
        match &self.known_hosts {
            Some(file) => {
                cmd.args(["-o", "StrictHostKeyChecking=yes", "-o"])
                    .arg(format!("UserKnownHostsFile={}", file.display()));
            }
            None => {
                cmd.args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ]);
            }
        }
        cmd.args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "BatchMode=no",
            "-o",
            "NumberOfPasswordPrompts=1",
            "-o",
            "ConnectTimeout=10",
        ])
        .arg("-o")
        .arg(format!("PreferredAuthentications={}", self.preferred));
        match &self.key {
            Some(key) => {
                cmd.arg("-i").arg(key);
            }
            None => {
                cmd.args(["-o", "PubkeyAuthentication=no"]);
            }
        }
        cmd.arg(format!("{}@127.0.0.1", self.user))
            .args(["echo", LOGGED_IN]);
        let output = proc::run(cmd, b"", self.timeout);
        let prompts = std::fs::read(dir.path().join("prompts"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .split('\u{1e}')
                    .filter(|p| !p.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let enrolled = std::fs::read_to_string(dir.path().join("enrolled"))
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace();
                let (secret, at) = (it.next()?.to_string(), it.next()?.parse::<u64>().ok()?);
                Some(Enrolled {
                    user: self.user.clone(),
                    secret,
                    uri: String::new(),
                    algorithm: Algorithm::Sha1,
                    digits: 6,
                    period: 30,
                    confirmed_step: at / 30,
                })
            });
        let unexpected = dir.path().join("unexpected").exists();
        SshRun {
            output,
            prompts,
            enrolled,
            unexpected_prompt: unexpected,
        }
    }
}

/// What one ssh client run did.
pub struct SshRun {
    pub output: Output,
    /// Every prompt the askpass program was asked, in order (with ssh's `(user@host) `).
    pub prompts: Vec<String>,
    /// The key an enrolment prompt showed, with the step of the code that was typed.
    pub enrolled: Option<Enrolled>,
    /// The askpass program saw a prompt it had no answer for.
    pub unexpected_prompt: bool,
}

impl SshRun {
    /// ssh exited 0 and the remote command ran.
    pub fn logged_in(&self) -> bool {
        self.output.success() && self.output.stdout.contains(LOGGED_IN)
    }

    /// ssh finished on its own (not killed) without running the command.
    pub fn refused(&self) -> bool {
        !self.output.timed_out
            && !self.output.status.success()
            && !self.output.stdout.contains(LOGGED_IN)
    }

    /// Whether `text` reached the client: in a prompt or in what ssh printed (the
    /// keyboard-interactive instruction text, where sshd puts PAM messages that come
    /// without a prompt).
    pub fn client_saw(&self, text: &str) -> bool {
        self.output.stderr.contains(text) || self.prompts.iter().any(|p| p.contains(text))
    }

    /// Whether any prompt contains `text`.
    pub fn prompted(&self, text: &str) -> bool {
        self.prompts.iter().any(|p| p.contains(text))
    }

    pub fn elapsed(&self) -> Duration {
        self.output.elapsed
    }
}

impl std::fmt::Display for SshRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.output)?;
        writeln!(
            f,
            "  --- prompts the client was shown ({}) ---",
            self.prompts.len()
        )?;
        for p in &self.prompts {
            writeln!(f, "  > {}", p.replace('\n', "\n  > "))?;
        }
        if self.unexpected_prompt {
            writeln!(f, "  (askpass saw a prompt it had no answer for)")?;
        }
        Ok(())
    }
}

/// Wait until nothing listens on 127.0.0.1:`port` any more (at most `timeout`).
pub fn port_closed(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_millis(200),
        )
        .is_err()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
