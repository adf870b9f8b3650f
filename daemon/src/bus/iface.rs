// SPDX-License-Identifier: MIT OR Apache-2.0
//! The served interfaces. Each method: identify the caller, run the core off the bus
//! executor (the store fsyncs), map the error.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Semaphore;
use zbus::message::Header;
use zbus::zvariant::{OwnedValue, Value};

use super::Identify;
use crate::core::engine::LoginContext;
use crate::core::{clock, Core};
use twostep_proto::{limits, Error, PendingEnrollment, Properties};

/// Core calls running at once; further calls get `Busy` instead of queueing forever.
const MAX_IN_FLIGHT: usize = 64;

#[derive(Clone)]
struct Shared {
    core: Arc<Core>,
    identify: Identify,
    in_flight: Arc<Semaphore>,
}

impl Shared {
    /// Run `f` on the blocking pool, bounded by [`MAX_IN_FLIGHT`].
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Core) -> Result<T, crate::core::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let permit = Arc::clone(&self.in_flight)
            .try_acquire_owned()
            .map_err(|_| Error::Busy("too many requests in flight".into()))?;
        let core = Arc::clone(&self.core);
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&core)
        })
        .await;
        match joined {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::Unavailable("internal error".into())),
        }
    }
}

pub struct LoginIface(Shared);
pub struct UserIface(Shared);

#[zbus::interface(name = "org.twostep.Login1")]
impl LoginIface {
    /// Open a login conversation for `user`: `(session, kind, message, prompt, digits)`.
    async fn begin(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        user: String,
        context: HashMap<String, String>,
    ) -> Result<(String, String, String, String, u32), Error> {
        let caller = self.0.identify.caller(&hdr).await?;
        let ctx = LoginContext::from_map(&context)?;
        let (id, step) = self
            .0
            .run(move |core| core.begin_login(&caller, &user, ctx, clock::now()))
            .await?;
        let (kind, message, prompt, digits) = step.to_wire();
        Ok((id, kind, message, prompt, digits))
    }

    /// Answer the current prompt: `(kind, message, prompt, digits)`.
    async fn answer(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        session: String,
        answer: Vec<u8>,
    ) -> Result<(String, String, String, u32), Error> {
        let caller = self.0.identify.caller(&hdr).await?;
        if session.len() > limits::MAX_SESSION_LEN {
            return Err(Error::NoSession("no such login session".into()));
        }
        let answer = zeroize::Zeroizing::new(answer);
        let step = self
            .0
            .run(move |core| core.answer(&caller, &session, &answer, clock::now()))
            .await?;
        Ok(step.to_wire())
    }
}

#[zbus::interface(name = "org.twostep.User1")]
impl UserIface {
    /// Start (or restart) enrolment of the calling user.
    async fn enroll_begin(
        &self,
        #[zbus(header)] hdr: Header<'_>,
    ) -> Result<PendingEnrollment, Error> {
        let caller = self.0.identify.caller(&hdr).await?;
        let p = self
            .0
            .run(move |core| core.enroll_begin(&caller, clock::now()))
            .await?;
        Ok((
            p.secret_base32,
            p.uri,
            p.algorithm.to_owned(),
            u32::from(p.digits),
            u32::try_from(p.period).unwrap_or(u32::MAX),
            p.expires.0,
        ))
    }

    /// Confirm the pending enrolment with a current code.
    async fn enroll_confirm(
        &self,
        #[zbus(header)] hdr: Header<'_>,
        code: Vec<u8>,
    ) -> Result<(), Error> {
        let caller = self.0.identify.caller(&hdr).await?;
        let code = zeroize::Zeroizing::new(code);
        self.0
            .run(move |core| core.enroll_confirm(&caller, &code, clock::now()))
            .await
    }

    /// The calling user's state.
    async fn status(&self, #[zbus(header)] hdr: Header<'_>) -> Result<Properties, Error> {
        let caller = self.0.identify.caller(&hdr).await?;
        let s = self
            .0
            .run(move |core| core.status(&caller, clock::now()))
            .await?;
        let mut m = Properties::new();
        let mut put = |k: &str, v: Value<'_>| {
            if let Ok(v) = OwnedValue::try_from(v) {
                m.insert(k.to_owned(), v);
            }
        };
        put("enrolled", s.enrolled.into());
        put("pending_enrollment", s.pending.into());
        put("method", if s.enrolled { "totp" } else { "" }.into());
        put("failures", s.failures.into());
        put("locked_until", s.locked_until.into());
        put("last_success", s.last_success.into());
        put("last_failure", s.last_failure.into());
        Ok(m)
    }
}

/// Serve both interfaces on `conn` and take the well-known name (failing if it is owned).
///
/// # Errors
/// The bus refuses the object or the name.
pub async fn serve(conn: &zbus::Connection, core: Arc<Core>) -> zbus::Result<()> {
    let dbus = zbus::fdo::DBusProxy::new(conn).await?;
    let shared = Shared {
        core,
        identify: Identify::new(dbus),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let server = conn.object_server();
    server
        .at(twostep_proto::OBJECT_PATH, LoginIface(shared.clone()))
        .await?;
    server
        .at(twostep_proto::OBJECT_PATH, UserIface(shared))
        .await?;
    let reply = conn
        .request_name_with_flags(
            twostep_proto::BUS_NAME,
            zbus::fdo::RequestNameFlags::DoNotQueue.into(),
        )
        .await?;
    match reply {
        zbus::fdo::RequestNameReply::PrimaryOwner | zbus::fdo::RequestNameReply::AlreadyOwner => {
            Ok(())
        }
        _ => Err(zbus::Error::NameTaken),
    }
}
