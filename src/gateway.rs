//! The shared state of one gateway process: what every socket and the admin API use.
//!
//! It holds the configuration, the app table, the presence store chosen at start-up (behind
//! [`Presence`]), the expiry wheel, the failed-verification throttle, metrics, webhooks and the
//! connection table. Its own operations are the ones that combine several of them: verifying a
//! UserSig with the throttle, scheduling expiries, opening and closing sockets.
//!
//! What it does not own: any socket. Sockets own their [`Session`](crate::session::Session); this
//! holds [`Outbox`] handles only, through the connection table, the store and the wheel.

use crate::apps::{Apps, Snapshot};
use crate::clock;
use crate::config::Config;
use crate::conns::Conns;
use crate::edge::Edge;
use crate::expiry::{SharedWheel, Wheel, WheelKey};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::presence::Presence;
use crate::throttle::Throttle;
use crate::usersig::{self, Decoded};
use crate::webhook::Webhooks;
use arc_swap::ArcSwap;
use imgate_proto::Code;
use parking_lot::Mutex;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};

/// Where the page connects: the WebSocket listener's address and scheme.
#[derive(Debug, Clone, Copy)]
pub struct WsEndpoint {
    pub addr: SocketAddr,
    pub tls: bool,
}

impl WsEndpoint {
    /// The URL a browser that reached the admin listener as `host` uses: the listener's own address,
    /// or, when it listens on every interface, the host name the browser used with the WS port.
    pub fn url_for(&self, host: Option<&str>) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        let ip = self.addr.ip();
        let hostname = match host.map(host_without_port) {
            Some(h) if ip.is_unspecified() && !h.is_empty() => h.to_owned(),
            _ if ip.is_ipv6() => format!("[{ip}]"),
            _ => ip.to_string(),
        };
        format!("{scheme}://{hostname}:{}/ws", self.addr.port())
    }
}

fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .map_or(host, |h| &host[..h.len() + 2]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Everything the sockets and the admin API share.
#[derive(Debug)]
pub struct Gateway {
    /// The running configuration; a reload swaps it. Sockets take a snapshot when they open.
    config: ArcSwap<Config>,
    /// TLS, per-address counts: what the edge keeps between connections.
    pub edge: Edge,
    pub apps: Arc<Apps>,
    pub presence: Arc<dyn Presence>,
    pub wheel: Arc<SharedWheel>,
    pub throttle: Throttle,
    pub metrics: Arc<Metrics>,
    pub webhooks: Arc<Webhooks>,
    pub conns: Arc<Conns>,
    /// The WebSocket listener, once bound (for the console's prefill).
    ws_endpoint: OnceLock<WsEndpoint>,
}

/// The parts a gateway is assembled from (the store is built from the same parts first).
#[derive(Debug)]
pub struct Parts {
    pub config: Config,
    pub edge: Edge,
    pub apps: Arc<Apps>,
    pub presence: Arc<dyn Presence>,
    pub metrics: Arc<Metrics>,
    pub webhooks: Arc<Webhooks>,
    pub conns: Arc<Conns>,
}

impl Gateway {
    pub fn new(p: Parts) -> Gateway {
        Gateway {
            wheel: Arc::new(Mutex::new(Wheel::new(clock::now_secs()))),
            throttle: Throttle::new(),
            config: ArcSwap::from_pointee(p.config),
            edge: p.edge,
            apps: p.apps,
            presence: p.presence,
            metrics: p.metrics,
            webhooks: p.webhooks,
            conns: p.conns,
            ws_endpoint: OnceLock::new(),
        }
    }

    /// The running configuration.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Makes `config` the running configuration (a reload).
    pub fn set_config(&self, config: Config) {
        self.config.store(Arc::new(config));
    }

    /// Records where the WebSocket listener is bound.
    pub fn set_ws_endpoint(&self, e: WsEndpoint) {
        let _ = self.ws_endpoint.set(e);
    }

    /// The WebSocket listener, once bound.
    pub fn ws_endpoint(&self) -> Option<WsEndpoint> {
        self.ws_endpoint.get().copied()
    }

    /// A new socket's outbox, registered in the connection table; `cfg` bounds its deliveries:
    /// half its queue (messages and bytes) may be others' messages, the rest is for its own
    /// responses and pushes.
    pub fn open_conn(&self, ip: IpAddr, cfg: &Config) -> Arc<Outbox> {
        self.conns
            .open(ip, cfg.outbound_queue / 2 + 1, cfg.outbound_bytes / 2)
    }

    /// The socket is gone.
    pub fn close_conn(&self, outbox: &Outbox) {
        self.conns.close(outbox);
    }

    /// Starts the drain: readyz turns 503 and every socket is told to close with 1001.
    pub fn drain(&self) {
        self.conns.drain();
    }

    pub fn is_draining(&self) -> bool {
        self.conns.is_draining()
    }

    /// Verifies a UserSig for a login or refresh in the order of contract §2, but for the
    /// revocation (70052), which the presence store checks atomically with the login. Failures
    /// count in the throttle. `Err` carries the code and a description for the response.
    /// `snap` is the login's snapshot of the apps and the throttle settings; an app it does not
    /// have is 70020.
    pub fn verify(
        &self,
        snap: &Snapshot,
        app: u64,
        user: &str,
        user_sig: &str,
        ip: IpAddr,
        now_ms: u64,
    ) -> Result<Decoded, (Code, String)> {
        let p = &snap.throttle;
        if self.throttle.is_blocked(p, app, user, ip, now_ms) {
            return Err((Code::Throttled, Code::Throttled.desc().to_owned()));
        }
        let keys = snap.app(app).map(|a| &a.keys[..]);
        let result = usersig::verify_any(user_sig, keys, app, user, now_ms)
            .map_err(|e| (e.code(), e.to_string()));
        if result.is_err() {
            self.throttle.record_failure(p, app, user, ip, now_ms);
        }
        result
    }

    /// Schedules an expiry push for a session.
    pub fn schedule_expiry(&self, expire_at: u64, outbox: &Arc<Outbox>, session: u64) -> WheelKey {
        self.wheel
            .lock()
            .schedule(expire_at, (Arc::clone(outbox), session))
    }

    pub fn cancel_expiry(&self, key: WheelKey) {
        // Drop the outbox clone after the lock is released.
        let removed = self.wheel.lock().cancel(key);
        drop(removed);
    }
}
