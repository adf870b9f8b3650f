// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl app-password …` (the caller's own) and `twostepctl user app-password …`
//! (admins, any user's). The daemon checks everything; this asks and prints.

use clap::Subcommand;
use serde_json::json;
use twostep_proto::{AppPasswordEntry, AppPasswordProxy, APP_PASSWORD_LONGEST, APP_PASSWORD_NEVER};

use crate::io::{explain, json_time, read_proof, when};

#[derive(Subcommand)]
pub enum Command {
    /// Create an app password for programs that cannot ask for a code (a mail client, an
    /// FTP client, a backup script). Needs a current code or a recovery code. The password
    /// is printed once: copy it into the program now; it cannot be shown again.
    Create {
        /// A name to recognise it by ("laptop mail"), unique among yours.
        name: String,
        /// The PAM services it opens, comma-separated or repeated (e.g. dovecot); each must
        /// be one the host accepts app passwords on (`[app_passwords] services`).
        #[arg(
            long = "service",
            value_name = "SERVICE",
            value_delimiter = ',',
            required = true
        )]
        services: Vec<String>,
        /// How long it is valid: a duration such as 90d, 12h or 30m, or `never` (where the
        /// host allows it). Default: the longest the host allows (`[app_passwords] max_days`).
        #[arg(long, value_name = "DURATION|never")]
        expires: Option<String>,
        /// Print JSON (the password included) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Your app passwords: name, id, services, created, expires, last use (service and
    /// remote host); revoked and expired ones too.
    List {
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Revoke one of your app passwords at once, by its name or its id.
    Revoke {
        #[arg(value_name = "NAME|ID")]
        key: String,
    },
}

/// The admin commands under `twostepctl user app-password`.
#[derive(Subcommand)]
pub enum AdminCommand {
    /// A user's app passwords.
    List {
        user: String,
        /// Print one JSON document instead of text (times in RFC 3339, UTC).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a user's app password at once, by its name or its id.
    Revoke {
        user: String,
        #[arg(value_name = "NAME|ID")]
        key: String,
    },
}

/// `--expires` as the daemon's `expires_in` (seconds, or the longest/never markers).
fn expires_in(text: Option<&str>) -> Result<u64, String> {
    match text.map(str::trim) {
        None => Ok(APP_PASSWORD_LONGEST),
        Some("never") => Ok(APP_PASSWORD_NEVER),
        Some(t) => match humantime::parse_duration(t) {
            Ok(d) if d.as_secs() > 0 && d.as_secs() < APP_PASSWORD_NEVER => Ok(d.as_secs()),
            _ => Err(format!(
                "--expires {t:?}: give a duration such as 90d, 12h or 30m, or never"
            )),
        },
    }
}

pub async fn run(conn: &zbus::Connection, cmd: Command) -> Result<(), String> {
    let proxy = AppPasswordProxy::new(conn).await.map_err(explain)?;
    match cmd {
        Command::Create {
            name,
            services,
            expires,
            json,
        } => {
            let expires_in = expires_in(expires.as_deref())?;
            let proof = read_proof()?;
            let services: Vec<&str> = services.iter().map(String::as_str).collect();
            let (password, entry) = proxy
                .create(&name, &services, expires_in, proof.as_bytes())
                .await
                .map_err(explain)?;
            let password = zeroize::Zeroizing::new(password);
            if json {
                let mut v = to_json(&entry);
                v["password"] = json!(password.as_str());
                crate::io::out_secret_json(v);
            } else {
                outln!(
                    "App password {:?} for {}:",
                    entry.name,
                    entry.services.join(", ")
                );
                outln!();
                crate::io::out_secret(zeroize::Zeroizing::new(format!(
                    "    {}\n",
                    password.as_str()
                )));
                outln!();
                outln!("It is shown only now: enter it in the program as its password.");
                outln!(
                    "Expires: {}. Revoke it with `twostepctl app-password revoke {}`.",
                    when(entry.expires),
                    entry.id
                );
            }
            Ok(())
        }
        Command::List { json } => {
            let list = proxy.list().await.map_err(explain)?;
            print_list(&list, json);
            Ok(())
        }
        Command::Revoke { key } => {
            let entry = proxy.revoke(&key).await.map_err(explain)?;
            outln!("app password {:?} ({}) revoked", entry.name, entry.id);
            Ok(())
        }
    }
}

pub async fn admin(conn: &zbus::Connection, cmd: AdminCommand) -> Result<(), String> {
    let proxy = AppPasswordProxy::new(conn).await.map_err(explain)?;
    match cmd {
        AdminCommand::List { user, json } => {
            let list = proxy
                .list_user(&user)
                .await
                .map_err(|e| format!("{user}: {}", explain(e)))?;
            print_list(&list, json);
        }
        AdminCommand::Revoke { user, key } => {
            let entry = proxy
                .revoke_user(&user, &key)
                .await
                .map_err(|e| format!("{user}: {}", explain(e)))?;
            outln!(
                "{user}: app password {:?} ({}) revoked",
                entry.name,
                entry.id
            );
        }
    }
    Ok(())
}

fn to_json(e: &AppPasswordEntry) -> serde_json::Value {
    json!({
        "name": e.name,
        "id": e.id,
        "services": e.services,
        "created": json_time(e.created),
        "expires": json_time(e.expires),
        "revoked": json_time(e.revoked),
        "last_used": json_time(e.last_used),
        "last_service": e.last_service,
        "last_rhost": e.last_rhost,
    })
}

fn print_list(list: &[AppPasswordEntry], json: bool) {
    if json {
        let v: Vec<serde_json::Value> = list.iter().map(to_json).collect();
        crate::io::out_json(&serde_json::Value::Array(v));
        return;
    }
    if list.is_empty() {
        outln!("no app passwords");
        return;
    }
    for e in list {
        let state = if e.revoked != 0 {
            format!("revoked {}", when(e.revoked))
        } else if e.expires == 0 {
            "never expires".to_owned()
        } else {
            format!("expires {}", when(e.expires))
        };
        outln!(
            "{} ({})  services: {}  {state}",
            e.name,
            e.id,
            e.services.join(",")
        );
        let used = if e.last_used == 0 {
            "never".to_owned()
        } else {
            let from = if e.last_rhost.is_empty() {
                String::new()
            } else {
                format!(" from {}", e.last_rhost)
            };
            format!("{} via {}{from}", when(e.last_used), e.last_service)
        };
        outln!("    created {}, last used {used}", when(e.created));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_arguments() {
        assert_eq!(expires_in(None), Ok(APP_PASSWORD_LONGEST));
        assert_eq!(expires_in(Some("never")), Ok(APP_PASSWORD_NEVER));
        assert_eq!(expires_in(Some("90d")), Ok(90 * 86_400));
        assert_eq!(expires_in(Some("12h")), Ok(12 * 3600));
        assert_eq!(expires_in(Some("5s")), Ok(5));
        for bad in ["0s", "soon", "-1d", ""] {
            assert!(expires_in(Some(bad)).is_err(), "{bad}");
        }
    }
}
