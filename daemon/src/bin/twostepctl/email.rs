// SPDX-License-Identifier: MIT OR Apache-2.0
//! `twostepctl email set|confirm|remove` and `twostepctl mail test` over
//! `org.twostep.Email1`.

use std::io::IsTerminal;

use clap::Subcommand;
use twostep_proto::{EmailProxy, Error};

use crate::io::{explain, read_line};

/// `twostepctl email …`
#[derive(Subcommand)]
pub enum EmailCommand {
    /// Use codes by email (the weaker method): the address gets a code to confirm it.
    /// Typed twice when interactive. Admins may set another user's with --user; that user
    /// confirms with `twostepctl email confirm`.
    Set {
        address: String,
        /// Admin: the user whose address this is.
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Confirm your pending address with the code mailed to it (read from stdin when not
    /// given).
    Confirm { code: Option<String> },
    /// Stop using codes by email. Admins: --user NAME.
    Remove {
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
}

/// `twostepctl mail …` (admins).
#[derive(Subcommand)]
pub enum MailCommand {
    /// Send a test message and show the mail server's answer.
    Test { address: String },
}

/// Run `c`.
pub async fn email(conn: &zbus::Connection, c: EmailCommand) -> Result<(), String> {
    let proxy = EmailProxy::new(conn).await.map_err(explain)?;
    match c {
        EmailCommand::Set { address, user } => {
            let interactive = std::io::stdin().is_terminal();
            if interactive {
                let again = read_line("Type the address again: ", true).unwrap_or_default();
                if again.as_str() != address.trim() {
                    return Err("the two addresses differ; nothing was changed".into());
                }
            }
            let own = user.is_none();
            let proof = own_proof(conn, own).await?;
            let masked = proxy
                .set(user.as_deref().unwrap_or(""), &address, proof.as_bytes())
                .await
                .map_err(explain)?;
            outln!("A code was sent to {masked}.");
            if !own {
                outln!("The user confirms it with: twostepctl email confirm");
                return Ok(());
            }
            if !interactive {
                outln!("Confirm it with: twostepctl email confirm CODE");
                return Ok(());
            }
            let code = read_line("Code from the mail: ", true).unwrap_or_default();
            confirm(&proxy, &code).await
        }
        EmailCommand::Confirm { code } => {
            let code = match code {
                Some(c) => zeroize::Zeroizing::new(c),
                None => read_line("Code from the mail: ", false).unwrap_or_default(),
            };
            confirm(&proxy, &code).await
        }
        EmailCommand::Remove { user } => {
            let proof = own_proof(conn, user.is_none()).await?;
            proxy
                .remove(user.as_deref().unwrap_or(""), proof.as_bytes())
                .await
                .map_err(explain)?;
            outln!("Codes by email are off for this account.");
            Ok(())
        }
    }
}

/// For a change to the caller's own account that already has a second factor: a current
/// code or recovery code read from stdin (the daemon refuses the change without one).
/// Empty otherwise.
async fn own_proof(
    conn: &zbus::Connection,
    own: bool,
) -> Result<zeroize::Zeroizing<String>, String> {
    if !own {
        return Ok(zeroize::Zeroizing::new(String::new()));
    }
    let status = twostep_proto::UserProxy::new(conn)
        .await
        .map_err(explain)?
        .status()
        .await
        .map_err(explain)?;
    let enrolled = status
        .get(twostep_proto::status_key::ENROLLED)
        .and_then(|v| bool::try_from(v).ok())
        .unwrap_or(false);
    if enrolled {
        crate::io::read_proof()
    } else {
        Ok(zeroize::Zeroizing::new(String::new()))
    }
}

async fn confirm(proxy: &EmailProxy<'_>, code: &str) -> Result<(), String> {
    let codes = proxy
        .confirm(code.trim().as_bytes())
        .await
        .map_err(|e| match e {
            Error::WrongCode(_) => "that code is not right; nothing changed".to_owned(),
            Error::NoPendingEnrollment(_) => {
                "no address is waiting for confirmation: run `twostepctl email set ADDRESS`".into()
            }
            other => explain(other),
        })?;
    outln!("Your address is confirmed: logins may now send a code to it.");
    if !codes.is_empty() {
        outln!("\nRecovery codes — each logs you in once when mail does not arrive.\nThey are shown only now: write them down.\n");
        for c in &codes {
            outln!("  {c}");
        }
    }
    Ok(())
}

/// Run `c`.
pub async fn mail(conn: &zbus::Connection, c: MailCommand) -> Result<(), String> {
    let proxy = EmailProxy::new(conn).await.map_err(explain)?;
    match c {
        MailCommand::Test { address } => {
            let answer = proxy.test(&address).await.map_err(explain)?;
            outln!("The mail server answered: {answer}");
            Ok(())
        }
    }
}
