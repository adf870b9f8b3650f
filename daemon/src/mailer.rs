// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's [`Outbox`]: lettre's SMTP and sendmail transports on a few worker threads
//! of their own, off the bus executor and the blocking pool.
//!
//! - **Bounded**: [`WORKERS`] threads take jobs from a queue of [`QUEUE`]; when it is full
//!   a send is refused at once ([`SendError::Busy`]), never queued behind a stalled server.
//! - **Hard timeout**: lettre's SMTP timeout (every connect, read and write) is
//!   `[mail] timeout_seconds`; the caller of [`Outbox::send`] waits at most that (plus a
//!   hand-over margin) for its own job and gives up after, whatever the worker is doing. A
//!   job whose caller gave up before a worker took it is dropped unsent.
//! - **Never retried, never downgraded**: one attempt per message; `starttls` is lettre's
//!   `Tls::Required` (no STARTTLS offered, or a certificate not trusted: refused), `tls` is
//!   `Tls::Wrapper`, plain text only where the config allows it (loopback).
//! - The transport is built per message from the configuration in force, so a reload
//!   applies to the next message; the SMTP password is read from its file then.

use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SendmailTransport, SmtpTransport, Transport};
use twostep_config::mail::{TlsMode, Transport as Kind};
use twostep_config::Mail;

use crate::core::audit::field;
use crate::core::mail::{wait_limit, Outbox, Outgoing, SendError};
use crate::core::seal::read_private_file;

/// Mail worker threads: sends in flight at once.
pub const WORKERS: usize = 4;
/// Jobs waiting for a worker; one more is refused at once.
pub const QUEUE: usize = 16;

struct Job {
    settings: Mail,
    mail: Outgoing,
    /// Where the answer goes; `None` for posted mail (logged under `what`).
    reply: Option<mpsc::Sender<Result<String, SendError>>>,
    what: String,
    /// Past it, nobody waits: the job is dropped unsent.
    deadline: Instant,
}

/// The lettre outbox and its workers (which live as long as the daemon).
pub struct Mailer {
    queue: SyncSender<Job>,
}

impl Mailer {
    /// Start the workers.
    ///
    /// # Errors
    /// A worker thread cannot be started.
    pub fn start() -> Result<Arc<Mailer>, String> {
        let (tx, rx) = mpsc::sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..WORKERS {
            let rx = Arc::clone(&rx);
            thread::Builder::new()
                .name(format!("mail-{i}"))
                .spawn(move || work(&rx))
                .map_err(|e| format!("cannot start a mail worker: {e}"))?;
        }
        Ok(Arc::new(Mailer { queue: tx }))
    }

    fn enqueue(&self, job: Job) -> Result<(), SendError> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SendError::Busy,
            TrySendError::Disconnected(_) => SendError::Failed("the mailer stopped".into()),
        })
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let guard = rx.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if Instant::now() >= job.deadline {
            log::warn!(
                "mail dropped unsent ({}): waited too long for a worker",
                job.what
            );
            continue;
        }
        let result = deliver(&job.settings, &job.mail);
        match job.reply {
            Some(reply) => {
                // The caller may have given up: then nobody reads it.
                let _ = reply.send(result);
            }
            None => match result {
                Ok(answer) => log::info!("mail sent ({}) server={}", job.what, field(&answer)),
                Err(e) => log::warn!(
                    "mail failed ({}) reason={}",
                    job.what,
                    field(&e.to_string())
                ),
            },
        }
    }
}

impl Outbox for Mailer {
    fn send(&self, settings: &Mail, mail: Outgoing) -> Result<String, SendError> {
        if !settings.enabled() {
            return Err(SendError::NotConfigured);
        }
        let wait = wait_limit(settings);
        let (tx, rx) = mpsc::channel();
        self.enqueue(Job {
            settings: settings.clone(),
            mail,
            reply: Some(tx),
            what: String::new(),
            deadline: Instant::now() + wait,
        })?;
        match rx.recv_timeout(wait) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(SendError::TimedOut),
            Err(RecvTimeoutError::Disconnected) => {
                Err(SendError::Failed("the mail worker gave no answer".into()))
            }
        }
    }

    fn post(&self, settings: &Mail, mail: Outgoing, what: String) {
        if !settings.enabled() {
            return;
        }
        // A posted mail may wait for a worker longer than a login would.
        let deadline = Instant::now() + wait_limit(settings) * 4;
        if let Err(e) = self.enqueue(Job {
            settings: settings.clone(),
            mail,
            reply: None,
            what: what.clone(),
            deadline,
        }) {
            log::warn!("mail not sent ({what}) reason={}", field(&e.to_string()));
        }
    }
}

/// Build the message and hand it to the configured transport, once.
fn deliver(m: &Mail, mail: &Outgoing) -> Result<String, SendError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| SendError::Failed(format!("{what}: {e}"));
    let from: Mailbox = m.from.parse().map_err(|e| failed("[mail] from", &e))?;
    let to: Mailbox = mail.to.parse().map_err(|e| failed("recipient", &e))?;
    let message = Message::builder()
        .from(from)
        .to(to)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.clone())
        .map_err(|e| failed("message", &e))?;
    match m.transport {
        Kind::None => Err(SendError::NotConfigured),
        Kind::Sendmail => SendmailTransport::new_with_command(&m.sendmail_command)
            .send(&message)
            .map(|()| "accepted by the sendmail command".to_owned())
            .map_err(|e| failed("sendmail", &e)),
        Kind::Smtp => {
            let transport = smtp_transport(m)?;
            match transport.send(&message) {
                Ok(response) => Ok(format!(
                    "{} {}",
                    response.code(),
                    response.message().collect::<Vec<_>>().join(" ")
                )),
                Err(e) if e.is_timeout() => Err(SendError::TimedOut),
                Err(e) => Err(failed("smtp", &e)),
            }
        }
    }
}

fn smtp_transport(m: &Mail) -> Result<SmtpTransport, SendError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| SendError::Failed(format!("{what}: {e}"));
    let host = m.host.trim_start_matches('[').trim_end_matches(']');
    let tls = match m.tls {
        TlsMode::None => Tls::None,
        mode => {
            let mut params = TlsParameters::builder(host.to_owned());
            if !m.ca_file.is_empty() {
                let pem = std::fs::read(&m.ca_file).map_err(|e| failed(&m.ca_file, &e))?;
                let cert = Certificate::from_pem(&pem).map_err(|e| failed(&m.ca_file, &e))?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build().map_err(|e| failed("tls", &e))?;
            if mode == TlsMode::Tls {
                Tls::Wrapper(params)
            } else {
                Tls::Required(params)
            }
        }
    };
    let mut builder = SmtpTransport::builder_dangerous(host)
        .port(m.effective_port())
        .tls(tls)
        .timeout(Some(Duration::from_secs(m.timeout_seconds.get())));
    if !m.username.is_empty() {
        // Read at every send with the checks of every private file (root's, mode 0600,
        // trusted directories, no links), so a file made readable later is refused too;
        // our copy is wiped (lettre keeps its own for the connection's life).
        let bytes = read_private_file(Path::new(&m.password_file), "[mail] password_file")
            .map_err(SendError::Failed)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| {
            SendError::Failed(format!(
                "[mail] password_file {}: not text",
                m.password_file
            ))
        })?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        builder = builder.credentials(Credentials::new(m.username.clone(), password));
    }
    Ok(builder.build())
}

/// What `twostepd --check-config` adds for `[mail]`: the password file must be a regular
/// file owned by root and not readable by group or others; the CA file must be readable
/// PEM; the sendmail command must exist.
pub fn check_files(m: &Mail) -> Vec<String> {
    let mut out = Vec::new();
    if !m.enabled() {
        return out;
    }
    if !m.password_file.is_empty() {
        if let Err(e) = read_private_file(Path::new(&m.password_file), "[mail] password_file") {
            out.push(e);
        }
    }
    if !m.ca_file.is_empty() {
        match std::fs::read(&m.ca_file) {
            Ok(pem) => {
                if let Err(e) = Certificate::from_pem(&pem) {
                    out.push(format!("[mail] ca_file {}: {e}", m.ca_file));
                }
            }
            Err(e) => out.push(format!("[mail] ca_file {}: {e}", m.ca_file)),
        }
    }
    if m.transport == Kind::Sendmail && !m.sendmail_command.is_file() {
        out.push(format!(
            "[mail] sendmail_command {} does not exist",
            m.sendmail_command.display()
        ));
    }
    out
}
