// SPDX-License-Identifier: MIT OR Apache-2.0
//! A private `dbus-daemon` per test.
//!
//! [`Bus::start`] copies the spirit of Debian's `/usr/share/dbus-1/system.conf` (EXTERNAL
//! auth only, everyone may connect and talk to the bus driver, nobody may own a name or
//! send a method call unless a policy file punches a hole) and `<include>`s the *shipped*
//! policy `packaging/dbus/org.twostep.Twostep1.conf` by absolute path, so the tests
//! exercise the real policy. [`Bus::permissive`] lets any user own any name: the setting
//! for "an impostor owns the daemon's name".

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::proc::{self, Creds};
use crate::{artifacts, unique};

/// The daemon's well-known name (kept here, not taken from twostep-proto, so the harness
/// builds on its own; the proto crate defines the same string).
pub const TWOSTEP_NAME: &str = "org.twostep.Twostep1";

/// A running private bus; killed and reaped on drop.
pub struct Bus {
    child: Child,
    socket: PathBuf,
    address: String,
    log: PathBuf,
    // Last: removed after the child is gone.
    dir: tempfile::TempDir,
}

/// Which policy the bus applies.
enum Policy {
    SystemLike,
    Permissive,
}

const HEADER: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">"#;

/// The default context of Debian's system.conf (bookworm), minus service activation,
/// syslog, pid file and the `messagebus` user.
const SYSTEM_DEFAULT_POLICY: &str = concat!(
    include_str!("../data/system-bus-default-policy.xml"),
    r#"  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
"#
);

/// Anyone may connect, own any name, and send anything to anyone.
const PERMISSIVE_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
"#;

impl Bus {
    /// A system-like bus that includes the shipped twostep policy.
    pub fn start() -> Bus {
        Bus::spawn(Policy::SystemLike)
    }

    /// A bus on which any user may own any name and call anything (no shipped policy).
    pub fn permissive() -> Bus {
        Bus::spawn(Policy::Permissive)
    }

    /// A system-like bus on which `org.twostep.Twostep1` is activatable (as the package's
    /// D-Bus activation file makes it) by running `exec` as root, and a start may take
    /// at most `start_timeout` (dbus-daemon's `service_start_timeout`).
    pub fn activatable(exec: &str, start_timeout: Duration) -> Bus {
        Bus::spawn_with(Policy::SystemLike, Some((exec, start_timeout)))
    }

    fn spawn(policy: Policy) -> Bus {
        Bus::spawn_with(policy, None)
    }

    fn spawn_with(policy: Policy, activation: Option<(&str, Duration)>) -> Bus {
        crate::require_root();
        let dir = unique::temp_dir("bus");
        // Why: test users (twostepctl, pamtester run as a user, a daemon run as a user)
        // must reach the socket; dbus-daemon makes the socket itself 0777.
        unique::chmod(dir.path(), 0o755);
        let socket = dir.path().join("bus.sock");
        let address = format!("unix:path={}", socket.display());
        let body = match policy {
            Policy::SystemLike => format!(
                "{SYSTEM_DEFAULT_POLICY}  <include>{}</include>\n",
                artifacts::bus_policy().display()
            ),
            Policy::Permissive => PERMISSIVE_POLICY.to_string(),
        };
        let mut activation_config = String::new();
        if let Some((exec, timeout)) = activation {
            let services = dir.path().join("services");
            std::fs::create_dir(&services).expect("create service dir");
            std::fs::write(
                services.join(format!("{}.service", crate::bus::TWOSTEP_NAME)),
                format!(
                    "[D-BUS Service]\nName={}\nExec={exec}\nUser=root\n",
                    crate::bus::TWOSTEP_NAME
                ),
            )
            .expect("write activation file");
            activation_config = format!(
                "  <servicedir>{}</servicedir>\n  \
                 <limit name=\"service_start_timeout\">{}</limit>\n",
                services.display(),
                timeout.as_millis()
            );
        }
        let config = format!(
            "{HEADER}\n<busconfig>\n  <type>system</type>\n  <auth>EXTERNAL</auth>\n  \
             <listen>{address}</listen>\n{activation_config}{body}</busconfig>\n"
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).expect("write bus config");
        let log = dir.path().join("bus.log");
        let log_file = std::fs::File::create(&log).expect("create bus log");
        let child = proc::command(None, "dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .arg("--nofork")
            .arg("--print-address")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup"))
            .stderr(log_file)
            .spawn()
            .expect("start dbus-daemon (is it installed?)");
        let mut bus = Bus {
            child,
            socket,
            address,
            log,
            dir,
        };
        let ready = proc::poll(Duration::from_secs(10), Duration::from_millis(20), || {
            bus.exited().is_none()
                && bus.socket.exists()
                && bus.call_driver(None, "GetId", &[]).is_ok()
        });
        assert!(
            ready,
            "dbus-daemon did not come up within 10 s (exit: {:?}); log:\n{}",
            bus.exited(),
            bus.log()
        );
        bus
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// `unix:path=/tmp/…/bus.sock`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The socket file.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The temp dir holding the socket, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The bus's own output (address line and warnings).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Call a method of the bus driver with `dbus-send` (as `creds`, or root), returning
    /// its `--print-reply` output or the error text.
    ///
    /// # Errors
    /// The stderr of `dbus-send` when the call fails.
    pub fn call_driver(
        &self,
        creds: Option<Creds>,
        method: &str,
        args: &[&str],
    ) -> Result<String, String> {
        dbus_send(&self.address, creds, method, args)
    }

    /// `NameHasOwner(name)`.
    pub fn name_has_owner(&self, name: &str) -> bool {
        name_has_owner(&self.address, name)
    }

    /// The unique name owning `name`, if any.
    pub fn name_owner(&self, name: &str) -> Option<String> {
        name_owner(&self.address, name)
    }

    /// The uid of the connection owning `name`, if any (`GetConnectionUnixUser`).
    pub fn name_owner_uid(&self, name: &str) -> Option<u32> {
        let owner = self.name_owner(name)?;
        let reply = self
            .call_driver(None, "GetConnectionUnixUser", &[&format!("string:{owner}")])
            .ok()?;
        parse_reply(&reply, "uint32").and_then(|v| v.parse().ok())
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("=== dbus-daemon log ({}) ===\n{}", self.address, self.log());
        }
    }
}

/// `dbus-send --print-reply` to the bus driver at `address`.
///
/// # Errors
/// The stderr of `dbus-send` when the call fails.
pub fn dbus_send(
    address: &str,
    creds: Option<Creds>,
    method: &str,
    args: &[&str],
) -> Result<String, String> {
    let mut cmd: Command = proc::command(creds, "dbus-send");
    cmd.arg(format!("--bus={address}"))
        .arg("--print-reply")
        .arg("--reply-timeout=5000")
        .arg("--dest=org.freedesktop.DBus")
        .arg("/org/freedesktop/DBus")
        .arg(format!("org.freedesktop.DBus.{method}"))
        .args(args);
    let out = proc::run(cmd, b"", Duration::from_secs(10));
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!("{}{}", out.stderr, out.stdout))
    }
}

/// `NameHasOwner(name)` on the bus at `address` (false when the bus is unreachable).
pub fn name_has_owner(address: &str, name: &str) -> bool {
    dbus_send(address, None, "NameHasOwner", &[&format!("string:{name}")])
        .ok()
        .and_then(|r| parse_reply(&r, "boolean"))
        .is_some_and(|v| v == "true")
}

/// The unique name owning `name` on the bus at `address`.
pub fn name_owner(address: &str, name: &str) -> Option<String> {
    let reply = dbus_send(address, None, "GetNameOwner", &[&format!("string:{name}")]).ok()?;
    parse_reply(&reply, "string").map(|s| s.trim_matches('"').to_string())
}

/// The pid of the process owning `name` (`GetConnectionUnixProcessID`).
pub fn name_owner_pid(address: &str, name: &str) -> Option<u32> {
    let owner = name_owner(address, name)?;
    let reply = dbus_send(
        address,
        None,
        "GetConnectionUnixProcessID",
        &[&format!("string:{owner}")],
    )
    .ok()?;
    parse_reply(&reply, "uint32").and_then(|v| v.parse().ok())
}

/// The value of the first `<ty> <value>` line of a `dbus-send --print-reply` output.
fn parse_reply(reply: &str, ty: &str) -> Option<String> {
    reply.lines().find_map(|l| {
        l.trim()
            .strip_prefix(ty)
            .and_then(|rest| rest.strip_prefix(' '))
            .map(|v| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::parse_reply;

    #[test]
    fn replies_are_parsed() {
        let r = "method return time=1 sender=org.freedesktop.DBus -> destination=:1.0 serial=3 reply_serial=2\n   boolean false\n";
        assert_eq!(parse_reply(r, "boolean").as_deref(), Some("false"));
        let r = "method return …\n   string \":1.7\"\n";
        assert_eq!(parse_reply(r, "string").as_deref(), Some("\":1.7\""));
        assert_eq!(
            parse_reply("   uint32 1000\n", "uint32").as_deref(),
            Some("1000")
        );
        assert_eq!(parse_reply("   uint32 1000\n", "boolean"), None);
    }
}
