// SPDX-License-Identifier: MIT OR Apache-2.0
//! The doctor's thin I/O: reading files ([`Files`], a map in the tests), running
//! `sshd -T` with a time limit and, where it needs one, a throw-away host key.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::sshd::parse_sshd_t;

/// How long `sshd -T` may take.
const SSHD_TIMEOUT: Duration = Duration::from_secs(15);

/// Read access to the machine's files; a map in the tests.
pub trait Files {
    /// The text of the file at `path`.
    ///
    /// # Errors
    /// Why it cannot be read.
    fn read(&self, path: &str) -> Result<String, String>;
    /// The names in directory `dir`, sorted; empty when it cannot be read.
    fn list(&self, dir: &str) -> Vec<String>;
    /// Whether `path` exists.
    fn exists(&self, path: &str) -> bool;
}

/// The real file system.
pub(super) struct Fs;

impl Files for Fs {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| e.to_string())
    }

    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }

    fn exists(&self, path: &str) -> bool {
        Path::new(path).exists()
    }
}

pub(super) fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_owned()
    } else {
        format!("{}/{name}", dir.trim_end_matches('/'))
    }
}

pub(super) fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The sshd binary: on PATH, or where distributions put it.
pub(super) fn find_sshd() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("sshd"))
        .chain(
            ["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"]
                .iter()
                .map(PathBuf::from),
        )
        .find(|p| p.is_file())
}

/// Runs `cmd` with a time limit; stdout or a description of the failure.
pub(super) fn run_bounded(mut cmd: Command, limit: Duration) -> Result<String, String> {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let reader = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            if let Some(mut r) = r {
                let _ = r.read_to_string(&mut s);
            }
            s
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(stdout),
        Some(s) => Err(format!("{what} failed ({s}): {}", stderr.trim())),
        None => Err(format!("{what} did not finish within {limit:?}")),
    }
}

/// A private temporary directory, removed on drop.
pub(super) struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let mut random = [0u8; 8];
        getrandom::getrandom(&mut random).map_err(|e| e.to_string())?;
        let path = std::env::temp_dir().join(format!(
            "twostepctl-doctor-{}-{}",
            std::process::id(),
            hex::encode(random)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `sshd -T [-f CONFIG]`. sshd loads its host keys even for `-T`; where it finds none it
/// can read (not root, or a fresh machine), it is run again with a throw-away key.
pub(super) fn sshd_effective(
    sshd: &Path,
    config: Option<&Path>,
) -> Result<BTreeMap<String, String>, String> {
    let command = |extra: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(sshd);
        cmd.arg("-T");
        if let Some(c) = config {
            cmd.arg("-f").arg(c);
        }
        cmd.args(extra);
        cmd
    };
    match run_bounded(command(&[]), SSHD_TIMEOUT) {
        Ok(out) => Ok(parse_sshd_t(&out)),
        Err(e) if e.contains("no hostkeys available") => {
            let dir = TempDir::new()?;
            let key = dir.0.join("host_ed25519");
            let mut keygen = Command::new("ssh-keygen");
            keygen
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(&key);
            run_bounded(keygen, SSHD_TIMEOUT)
                .map_err(|k| format!("{e}; and no throw-away host key: {k}"))?;
            let option = format!("HostKey={}", key.display());
            let out = run_bounded(
                command(&[std::ffi::OsStr::new("-o"), std::ffi::OsStr::new(&option)]),
                SSHD_TIMEOUT,
            )?;
            Ok(parse_sshd_t(&out))
        }
        Err(e) => Err(e),
    }
}
