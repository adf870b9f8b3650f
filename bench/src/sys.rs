// SPDX-License-Identifier: MIT OR Apache-2.0
//! The benchmark's private view of the machine: a mount namespace of its own (made by
//! `scripts/bench` with `unshare --mount --propagation private`) in which
//!
//! * `/etc/passwd` is a bind mount of a generated file (the machine's lines plus the bench
//!   users), so the daemon's `getpwnam` goes through glibc's real `files` back end, and
//! * when the machine has no `/dev/log`, `/dev` is an overlay whose only addition is a
//!   discarding syslog receiver at `/dev/log`, so every module's logging costs what it costs
//!   on a machine with a syslog daemon, and nobody outside sees it.
//!
//! Nothing is changed outside the namespace, and everything disappears with it.

use std::collections::BTreeMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Refuse to mount anything unless this process has a mount namespace of its own.
///
/// # Errors
/// The namespace is the machine's (not started through `scripts/bench`).
pub fn require_private_mounts() -> Result<(), String> {
    let mine =
        std::fs::read_link("/proc/self/ns/mnt").map_err(|e| format!("/proc/self/ns/mnt: {e}"))?;
    // The parent is the shell that ran `unshare` (unshare execs us), so it has the machine's
    // namespace; PID 1's may not be readable in a container.
    // SAFETY: getppid has no preconditions.
    let ppid = unsafe { libc::getppid() };
    let parent_path = format!("/proc/{ppid}/ns/mnt");
    let parent = std::fs::read_link(&parent_path)
        .or_else(|_| std::fs::read_link("/proc/1/ns/mnt"))
        .map_err(|e| format!("{parent_path}: {e}"))?;
    if mine == parent {
        return Err(
            "not in a private mount namespace: run ./scripts/bench (it uses \
                    `unshare --mount --propagation private`)"
                .into(),
        );
    }
    Ok(())
}

/// Run a command, failing with its stderr.
///
/// # Errors
/// The command failed or could not start.
pub fn sh(cmd: &mut Command) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bind-mount `file` over `target` (inside the private namespace).
///
/// # Errors
/// Not private, or mount failed.
pub fn bind(file: &Path, target: &Path) -> Result<(), String> {
    require_private_mounts()?;
    sh(Command::new("mount").arg("--bind").arg(file).arg(target)).map(|_| ())
}

/// Undo [`bind`] (or any mount on `target`).
///
/// # Errors
/// umount failed.
pub fn unmount(target: &Path) -> Result<(), String> {
    require_private_mounts()?;
    sh(Command::new("umount").arg(target)).map(|_| ())
}

/// Syslog lines received, by tag (`pam_twostep`, `twostepd`, …).
pub type LogCounts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Where syslog lines go during the run.
pub enum DevLog {
    /// The machine's own `/dev/log` (a syslog daemon): used as it is.
    Machine,
    /// Ours, in the namespace's `/dev` overlay; counts and discards.
    Discarding { counts: LogCounts },
}

impl DevLog {
    /// Use the machine's `/dev/log` if there is one; otherwise put a discarding receiver
    /// at `/dev/log` inside the namespace (`/dev` becomes an overlay of itself with a tmpfs
    /// upper layer under `work`).
    ///
    /// # Errors
    /// Not private, or a mount or the socket failed.
    pub fn provide(work: &Path) -> Result<DevLog, String> {
        if std::fs::symlink_metadata("/dev/log").is_ok() {
            return Ok(DevLog::Machine);
        }
        require_private_mounts()?;
        let layer = work.join("dev-overlay");
        std::fs::create_dir_all(&layer).map_err(|e| format!("{}: {e}", layer.display()))?;
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&layer))?;
        let (upper, workdir) = (layer.join("upper"), layer.join("work"));
        for d in [&upper, &workdir] {
            std::fs::create_dir(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        sh(Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o"])
            .arg(format!(
                "lowerdir=/dev,upperdir={},workdir={}",
                upper.display(),
                workdir.display()
            ))
            .arg("/dev"))?;
        let socket = UnixDatagram::bind("/dev/log").map_err(|e| format!("bind /dev/log: {e}"))?;
        set_rcvbuf(&socket, 8 << 20);
        let counts: LogCounts = Arc::default();
        let c = Arc::clone(&counts);
        std::thread::Builder::new()
            .name("devlog".into())
            .spawn(move || drain(&socket, &c))
            .map_err(|e| e.to_string())?;
        Ok(DevLog::Discarding { counts })
    }

    /// A copy of the counts so far (empty for the machine's syslog).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        match self {
            DevLog::Machine => BTreeMap::new(),
            DevLog::Discarding { counts } => counts.lock().map(|m| m.clone()).unwrap_or_default(),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            DevLog::Machine => "the machine's own /dev/log (its syslog daemon)",
            DevLog::Discarding { .. } => {
                "a discarding receiver at /dev/log, private to the benchmark's mount namespace \
                 (this machine has no /dev/log)"
            }
        }
    }
}

fn set_rcvbuf(socket: &UnixDatagram, bytes: i32) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt on our own socket with a valid int option value.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const bytes).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

fn drain(socket: &UnixDatagram, counts: &LogCounts) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = socket.recv(&mut buf) {
        let tag = tag_of(&buf[..n]);
        if let Ok(mut m) = counts.lock() {
            *m.entry(tag).or_insert(0) += 1;
        }
    }
}

/// The tag of an RFC 3164 line as glibc and the `syslog` crate send it:
/// `<PRI>Mmm dd hh:mm:ss TAG[PID]: text` (a hostname may precede the tag).
pub fn tag_of(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let after_pri = text.split_once('>').map_or(text.as_ref(), |(_, r)| r);
    // Skip "Mmm dd hh:mm:ss " (15 characters and a space).
    let rest = after_pri.get(16..).unwrap_or("");
    rest.split(':')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .last()
        .unwrap_or("")
        .split('[')
        .next()
        .unwrap_or("")
        .to_owned()
}

/// `VmHWM` and `VmRSS` of a process, in KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Size in bytes and relocation count (`readelf -r`) of a shared object, and its NEEDED libs.
pub fn elf_facts(path: &Path) -> (u64, usize, Vec<String>) {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let relocs = sh(Command::new("readelf").arg("-rW").arg(path))
        .map(|out| {
            // "Relocation section '.rela.dyn' at offset 0x… contains N entries:"
            out.lines()
                .filter_map(|l| l.split(" contains ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .filter_map(|n| n.parse::<usize>().ok())
                .sum()
        })
        .unwrap_or(0);
    let needed = sh(Command::new("readelf").arg("-dW").arg(path))
        .map(|out| {
            out.lines()
                .filter(|l| l.contains("(NEEDED)"))
                .filter_map(|l| {
                    l.split('[')
                        .nth(1)
                        .map(|s| s.trim_end_matches(']').to_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    (size, relocs, needed)
}

/// Children die with the orchestrator (SIGKILL when it exits), so a killed run leaves no
/// daemon or driver behind.
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches only the child being set up.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Where the system's PAM modules live.
pub fn pam_module_dir() -> PathBuf {
    PathBuf::from("/usr/lib/x86_64-linux-gnu/security")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_tags() {
        assert_eq!(
            tag_of(b"<85>Jan  1 00:00:00 pam_twostep[42]: user=x"),
            "pam_twostep"
        );
        assert_eq!(
            tag_of(b"<38>Jan 12 10:11:12 tsb-ga(pam_google_authenticator)[7]: Accepted"),
            "tsb-ga(pam_google_authenticator)"
        );
        assert_eq!(
            tag_of(b"<86>Jan 12 10:11:12 twostepd[1]: serving"),
            "twostepd"
        );
    }
}
