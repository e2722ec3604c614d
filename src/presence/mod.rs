//! Presence: where logged-in sessions live, behind one interface chosen once at start-up.
//!
//! [`Presence`] has two implementations: [`embedded::Embedded`], the sharded in-process
//! [`registry`], and [`redis::RedisPresence`], presence shared by several nodes through one Redis
//! (contract §12). Both keep the same promises:
//! - a login is all or nothing: on `Err` nothing changed and nobody was kicked; on `Ok` the victims
//!   are removed and told (on this node at once, on others through their node);
//! - a login is fenced on the session it takes over on its own socket (a re-login of the same user
//!   in place, or an account switch): when that session was evicted meanwhile the login is
//!   [`Refused::Superseded`], changes nothing, and the socket's own kick closes it;
//! - the admin revocation (70052) lives in the store, checked atomically with the login;
//! - `logout` never waits (a shared store is updated in the background).
//!
//! The session state machine ([`crate::session`]) has one implementation per request on top of
//! this trait; nothing else asks which store is in use.

pub mod embedded;
pub mod redis;
pub mod registry;

use crate::outbox::{ConnId, Delivery, Outbox};
use crate::policy::Policy;
use imgate_proto::{Code, Platform};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use registry::KickFilter;

/// What a store is built from (never the gateway itself, which is built around the store).
#[derive(Debug, Clone)]
pub struct StoreDeps {
    pub conns: Arc<crate::conns::Conns>,
    pub apps: Arc<crate::apps::Apps>,
    pub webhooks: Arc<crate::webhook::Webhooks>,
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// A boxed future, as the trait returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A logged-in session as its socket knows it: enough for any store to find it (a store that needs
/// more, such as the instance id, keeps it in its own index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionRef<'a> {
    pub app: u64,
    pub user: &'a str,
    pub platform: Platform,
    pub session: u64,
}

/// What a login takes over on its own socket.
#[derive(Debug, Clone, Copy)]
pub enum Prior<'a> {
    /// The socket was logged out.
    None,
    /// The socket's session of the same user: updated in place, never kicked.
    Relogin(SessionRef<'a>),
    /// The socket's session of another user (or app): logged out by the login (not a kick).
    Switch(SessionRef<'a>),
}

/// A verified login to admit.
#[derive(Debug)]
pub struct LoginRequest<'a> {
    pub app: u64,
    pub user: &'a str,
    pub platform: Platform,
    pub instance_id: Option<&'a str>,
    /// The socket logging in.
    pub conn: &'a Arc<Outbox>,
    /// `TLS.time + TLS.expire` of the UserSig.
    pub expire_at: u64,
    /// `TLS.time` of the UserSig (checked against the revocation).
    pub tls_time: u64,
    pub now_ms: u64,
    pub policy: &'a Policy,
    pub prior: Prior<'a>,
}

/// An admitted login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    pub session: u64,
    /// The platforms of the devices it evicted, one per device (for the webhook).
    pub kicked: Vec<Platform>,
}

/// Why a login or refresh changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The UserSig was revoked by the admin kick API (70052).
    Revoked,
    /// The shared store did not answer in time (70169; retryable).
    Unavailable,
    /// The session this login takes over was evicted meanwhile: no response; its kick closes the
    /// socket.
    Superseded,
}

impl Refused {
    /// The response code, `None` for [`Refused::Superseded`] (which gets no response).
    pub fn code(self) -> Option<Code> {
        match self {
            Refused::Revoked => Some(Code::SigRevoked),
            Refused::Unavailable => Some(Code::PresenceUnavailable),
            Refused::Superseded => None,
        }
    }
}

/// The shared store is unreachable (the admin API answers 503).
#[derive(Debug, Clone, thiserror::Error)]
#[error("presence store unavailable: {0}")]
pub struct Unavailable(pub String);

/// One instance as `GET /v1/online` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceView {
    pub platform: Platform,
    pub instance_id: Option<String>,
    pub login_at_ms: u64,
    pub expire_at: u64,
}

/// Where logged-in sessions live. Chosen once at start-up; see the module docs for the promises.
pub trait Presence: Send + Sync + std::fmt::Debug + 'static {
    /// Admits a login: the policy applies, the victims are removed and told.
    fn login<'a>(&'a self, req: LoginRequest<'a>) -> BoxFuture<'a, Result<Admitted, Refused>>;

    /// Ends a session (logout, UserSig expiry, close): true when it was still registered, false
    /// when a kick removed it first. Never waits.
    fn logout(&self, s: SessionRef<'_>) -> bool;

    /// The socket acted on a kick of its session: whatever this node still indexes of it goes.
    fn evicted(&self, s: SessionRef<'_>);

    /// A refreshed UserSig: `Revoked` when the admin kick invalidated it; nothing changes on `Err`.
    fn refresh<'a>(
        &'a self,
        s: SessionRef<'a>,
        expire_at: u64,
        tls_time: u64,
    ) -> BoxFuture<'a, Result<(), Refused>>;

    /// Delivers a message to every logged-in socket of `to` but the connection `skip`; the count
    /// of sockets that took it.
    fn deliver<'a>(
        &'a self,
        app: u64,
        to: &'a str,
        skip: Option<ConnId>,
        d: Arc<Delivery>,
    ) -> BoxFuture<'a, Result<u32, Unavailable>>;

    /// Delivers to this process's sockets only (what a node can do without its shared store).
    fn deliver_here(&self, app: u64, to: &str, skip: Option<ConnId>, d: &Arc<Delivery>) -> u32;

    /// Admin kick (close 4502); a whole-user kick also revokes the user's UserSigs minted up to now.
    fn kick<'a>(
        &'a self,
        app: u64,
        user: &'a str,
        which: KickFilter<'a>,
    ) -> BoxFuture<'a, Result<usize, Unavailable>>;

    /// The user's live instances, in login order.
    fn instances<'a>(
        &'a self,
        app: u64,
        user: &'a str,
    ) -> BoxFuture<'a, Result<Vec<InstanceView>, Unavailable>>;

    /// Starts the store's background tasks (none for the embedded store).
    fn spawn(self: Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }

    /// At shutdown, after the sockets closed: lets the store finish its background writes and
    /// leave, within `within`.
    fn leave(&self, within: std::time::Duration) -> BoxFuture<'_, ()> {
        let _ = within;
        Box::pin(std::future::ready(()))
    }
}
