// SPDX-License-Identifier: MIT OR Apache-2.0
//! The daemon's own verification throughput: `clients` zbus connections, each kept open and
//! calling `org.twostep.Login1.Begin` + `Answer` back to back, with the same users and codes
//! as the PAM runs. No libpam, no module, no connection set-up per login: what is left is the
//! round trips and the daemon's work. The connections go through the bus (to the daemon's
//! name) or, with [`Spec::socket`], peer to peer to the login socket (SASL `EXTERNAL`, no
//! `Hello`, messages without a destination, as the module sends them).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use twostep_proto::LoginProxy;

use crate::driver::{Claimer, Spec as DriverSpec};
use crate::otp;
use crate::shm::Shared;
use crate::stats::Summary;
use crate::users;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    pub bus: String,
    /// The login socket: connect there peer to peer instead of to the bus (root only).
    #[serde(default)]
    pub socket: Option<std::path::PathBuf>,
    pub users: u32,
    pub right: bool,
    pub clients: usize,
    pub seconds: f64,
    pub warmup: usize,
    pub period: u64,
    pub window: u64,
    pub wrong_budget: u64,
    pub seed: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    pub logins: usize,
    /// Final step kinds (`success`, `denied`, …) or error names, and how often.
    pub kinds: BTreeMap<String, usize>,
    pub expected: usize,
    pub per_second: f64,
    /// Begin + Answer.
    pub latency: Summary,
    /// The two calls apart (Begin: name look-up, record load, session; Answer: the check and
    /// its durable writes).
    pub begin: Summary,
    pub answer: Summary,
    /// The floor: `org.freedesktop.DBus.Peer.Ping` to the daemon on the same connections
    /// before the logins (on the bus a round trip through dbus-daemon; on either path zbus
    /// answers it without calling any of twostep's code).
    #[serde(default)]
    pub ping: Summary,
    /// Pings per second, all clients together.
    #[serde(default)]
    pub ping_per_second: f64,
    /// Pings answered with an error (still a round trip; counted in the floor).
    #[serde(default)]
    pub ping_errors: usize,
    pub touched: Vec<u32>,
}

/// How long each client pings before its logins.
const PING_SECONDS: f64 = 0.3;

/// The timings of one login over the bus.
pub struct Timed {
    pub kind: String,
    pub begin_nanos: u64,
    pub answer_nanos: u64,
}

/// One Begin + Answer; returns the final kind (or the error's name).
pub async fn login(proxy: &LoginProxy<'_>, user: &str, code: &[u8]) -> String {
    Endpoint::Bus(proxy.clone()).login(user, code).await.kind
}

/// The daemon's login object: through the bus (a proxy to its name) or peer to peer on the
/// login socket (the connection's one peer: calls carry no destination).
pub enum Endpoint<'a> {
    Bus(LoginProxy<'a>),
    Peer(zbus::Connection),
}

impl Endpoint<'_> {
    async fn begin(
        &self,
        user: &str,
        ctx: HashMap<&str, &str>,
    ) -> zbus::Result<(String, String, String, String, u32)> {
        match self {
            Endpoint::Bus(proxy) => proxy.begin(user, ctx).await,
            Endpoint::Peer(conn) => {
                self.peer_call(conn, twostep_proto::login::BEGIN, &(user, ctx))
                    .await
            }
        }
    }

    async fn answer(&self, session: &str, code: &[u8]) -> zbus::Result<twostep_proto::WireStep> {
        match self {
            Endpoint::Bus(proxy) => proxy.answer(session, code).await,
            Endpoint::Peer(conn) => {
                self.peer_call(conn, twostep_proto::login::ANSWER, &(session, code))
                    .await
            }
        }
    }

    async fn peer_call<B, R>(
        &self,
        conn: &zbus::Connection,
        method: &str,
        body: &B,
    ) -> zbus::Result<R>
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
        R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
    {
        let reply = conn
            .call_method(
                None::<&str>,
                twostep_proto::OBJECT_PATH,
                Some(twostep_proto::LOGIN_INTERFACE),
                method,
                body,
            )
            .await?;
        reply.body().deserialize()
    }

    /// `org.freedesktop.DBus.Peer.Ping` to the daemon's object; `Ok(false)` for an error
    /// reply (a round trip all the same).
    async fn ping(&self) -> zbus::Result<bool> {
        let (conn, dest) = match self {
            Endpoint::Bus(proxy) => (proxy.inner().connection(), Some(twostep_proto::BUS_NAME)),
            Endpoint::Peer(conn) => (conn, None),
        };
        match conn
            .call_method(
                dest,
                twostep_proto::OBJECT_PATH,
                Some("org.freedesktop.DBus.Peer"),
                "Ping",
                &(),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(zbus::Error::MethodError(..)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One Begin + Answer, each call timed.
    pub async fn login(&self, user: &str, code: &[u8]) -> Timed {
        let ctx = HashMap::from([
            (twostep_proto::login::CTX_SERVICE, "twostep-bench"),
            (twostep_proto::login::CTX_RHOST, "127.0.0.1"),
        ]);
        let nanos = |t: Instant| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let t = Instant::now();
        let begun = self.begin(user, ctx).await;
        let begin_nanos = nanos(t);
        let t = Instant::now();
        let kind = match begun {
            Ok((session, kind, ..)) if session.is_empty() => kind,
            Ok((session, ..)) => match self.answer(&session, code).await {
                Ok((kind, ..)) => kind,
                Err(e) => error_name(&e),
            },
            Err(e) => error_name(&e),
        };
        Timed {
            kind,
            begin_nanos,
            answer_nanos: nanos(t),
        }
    }
}

/// A connection of a daemon-alone client: to the bus, or peer to peer to `socket`.
async fn connect(spec: &Spec) -> Result<Endpoint<'static>, String> {
    match &spec.socket {
        None => {
            let conn = zbus::connection::Builder::address(spec.bus.as_str())
                .map_err(|e| e.to_string())?
                .build()
                .await
                .map_err(|e| format!("connect: {e}"))?;
            let proxy = LoginProxy::new(&conn)
                .await
                .map_err(|e| format!("proxy: {e}"))?;
            Ok(Endpoint::Bus(proxy))
        }
        Some(path) => {
            let conn = zbus::connection::Builder::address(
                format!("unix:path={}", path.display()).as_str(),
            )
            .map_err(|e| e.to_string())?
            .p2p()
            .auth_mechanism(zbus::AuthMechanism::External)
            .build()
            .await
            .map_err(|e| format!("connect {}: {e}", path.display()))?;
            Ok(Endpoint::Peer(conn))
        }
    }
}

fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, ..) => name.to_string(),
        other => format!("transport: {other}"),
    }
}

/// Run `spec`.
///
/// # Errors
/// The runtime, shared memory or a connection failed.
pub fn run(spec: &Spec) -> Result<Outcome, String> {
    let n = usize::try_from(spec.users).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared::new(n, 0)?);
    let secrets: Arc<Vec<[u8; otp::SECRET_BYTES]>> =
        Arc::new((0..spec.users).map(otp::secret_for).collect());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.clients.max(1))
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    type ClientOut = (Vec<u64>, Vec<(u64, Timed)>, usize);
    let per_client: Vec<ClientOut> = rt.block_on(async {
        let ping_deadline = Instant::now() + Duration::from_secs_f64(PING_SECONDS);
        let deadline = ping_deadline + Duration::from_secs_f64(spec.seconds);
        let mut tasks = Vec::new();
        for _ in 0..spec.clients {
            let endpoint = connect(spec).await?;
            let shared = Arc::clone(&shared);
            let secrets = Arc::clone(&secrets);
            let spec = spec.clone();
            tasks.push(tokio::spawn(async move {
                let (mut pings, mut out, mut ping_errors) = (Vec::new(), Vec::new(), 0usize);
                while Instant::now() < ping_deadline {
                    let t = Instant::now();
                    match endpoint.ping().await {
                        Ok(answered) => ping_errors += usize::from(!answered),
                        Err(_) => break,
                    }
                    pings.push(u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX));
                }
                let dspec = driver_spec(&spec);
                let claimer = Claimer::new(&shared, &secrets, spec.right, &dspec);
                while Instant::now() < deadline {
                    let Some(claim) = claimer.claim() else { break };
                    let name = users::name(u32::try_from(claim.user).unwrap_or(0));
                    let timed = endpoint.login(&name, &claim.code).await;
                    claimer.release(claim.user);
                    out.push((crate::shm::monotonic_nanos(), timed));
                }
                (pings, out, ping_errors)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.push(t.await.map_err(|e| e.to_string())?);
        }
        Ok::<_, String>(all)
    })?;
    let mut pings: Vec<u64> = per_client
        .iter()
        .flat_map(|c| c.0.iter().copied())
        .collect();
    let ping_per_second = pings.len() as f64 / PING_SECONDS;
    let ping_errors = per_client.iter().map(|c| c.2).sum();
    let mut all: Vec<(u64, Timed)> = per_client.into_iter().flat_map(|c| c.1).collect();
    all.sort_by_key(|r| r.0);
    let warmup = spec.warmup.min(all.len().saturating_sub(2));
    let measured = &all[warmup..];
    let want = if spec.right { "success" } else { "denied" };
    let mut kinds = BTreeMap::new();
    for r in measured {
        *kinds.entry(r.1.kind.clone()).or_insert(0) += 1;
    }
    let mut nanos: Vec<u64> = measured
        .iter()
        .map(|r| r.1.begin_nanos + r.1.answer_nanos)
        .collect();
    let mut begin: Vec<u64> = measured.iter().map(|r| r.1.begin_nanos).collect();
    let mut answer: Vec<u64> = measured.iter().map(|r| r.1.answer_nanos).collect();
    let per_second = match (measured.first(), measured.last()) {
        (Some(a), Some(b)) if b.0 > a.0 => (measured.len() - 1) as f64 / ((b.0 - a.0) as f64 / 1e9),
        _ => 0.0,
    };
    Ok(Outcome {
        logins: measured.len(),
        expected: kinds.get(want).copied().unwrap_or(0),
        kinds,
        per_second,
        latency: Summary::from_nanos(&mut nanos),
        begin: Summary::from_nanos(&mut begin),
        answer: Summary::from_nanos(&mut answer),
        ping: Summary::from_nanos(&mut pings),
        ping_per_second,
        ping_errors,
        touched: shared.touched(),
    })
}

fn driver_spec(spec: &Spec) -> DriverSpec {
    DriverSpec {
        confdir: std::path::PathBuf::new(),
        service: String::new(),
        users: spec.users,
        right: spec.right,
        mode: crate::driver::Mode::Threads,
        workers: spec.clients,
        max_logins: 0,
        seconds: spec.seconds,
        min_logins: 0,
        warmup: spec.warmup,
        period: spec.period,
        window: spec.window,
        wrong_budget: spec.wrong_budget,
        seed: spec.seed,
        baseline: false,
        more_services: Vec::new(),
        offset: 0,
        as_user: false,
    }
}
