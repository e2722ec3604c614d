//! Prometheus metrics (contract §10 `GET /metrics`), on the `prometheus-client` crate.
//!
//! Series: `imgate_connections`, `imgate_sessions{sdk_app_id,platform}`,
//! `imgate_logins_total{sdk_app_id,code}`, `imgate_kicks_total{sdk_app_id,reason}`,
//! `imgate_expiries_total{sdk_app_id}`, `imgate_closes_total{code}`, `imgate_dau{sdk_app_id}`,
//! `imgate_webhook_events_total{sdk_app_id,result}` (result: delivered, failed, dropped).
//!
//! DAU counts distinct users with a successful login since 00:00 UTC; users are kept as 64-bit keyed
//! hashes, one set per app, cleared when the UTC day changes.

use imgate_proto::{Code, KickReason, Platform};
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AppLabel {
    pub sdk_app_id: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabel {
    pub sdk_app_id: u64,
    pub platform: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub sdk_app_id: u64,
    pub code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub sdk_app_id: u64,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabel {
    pub code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    pub sdk_app_id: u64,
    pub result: &'static str,
}

struct Dau {
    day: u64,
    users: HashSet<u64>,
}

/// Every metric of the gateway, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub sessions: Family<PlatformLabel, Gauge>,
    pub logins: Family<CodeLabel, Counter>,
    pub kicks: Family<ReasonLabel, Counter>,
    pub expiries: Family<AppLabel, Counter>,
    pub closes: Family<CloseLabel, Counter>,
    pub dau_gauge: Family<AppLabel, Gauge>,
    pub webhook: Family<WebhookLabel, Counter>,
    /// Sockets not logged in (before or after the upgrade, or logged out again).
    pub pending: Gauge,
    /// Bytes waiting in all the gateway's outbound queues together (set when rendered).
    pub outbound_bytes: Gauge,
    /// Refusals of the per-socket rate limits (`frames`: closed 1008; `requests`: answered 7008).
    pub rate_limited: Family<LimitLabel, Counter>,
    /// Config reloads by result (`applied`, `error`).
    pub reloads: Family<ReloadLabel, Counter>,
    /// Cluster mode: 1 while Redis answers.
    pub redis_up: Gauge,
    /// Cluster mode: live nodes as this node last saw them.
    pub live_nodes: Gauge,
    /// Cluster mode: DAU comes from Redis (a HyperLogLog per app and day), not from this process.
    shared_dau: bool,
    dau: HashMap<u64, Mutex<Dau>>,
    hasher: RandomState,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// `cluster`: whether the node shares presence (adds `redis_up`, `live_nodes`; DAU from Redis).
    pub fn new(apps: &[u64], cluster: bool) -> Metrics {
        let mut registry = Registry::with_prefix("imgate");
        let connections = Gauge::default();
        let sessions = Family::<PlatformLabel, Gauge>::default();
        let logins = Family::<CodeLabel, Counter>::default();
        let kicks = Family::<ReasonLabel, Counter>::default();
        let expiries = Family::<AppLabel, Counter>::default();
        let closes = Family::<CloseLabel, Counter>::default();
        let dau_gauge = Family::<AppLabel, Gauge>::default();
        let webhook = Family::<WebhookLabel, Counter>::default();
        let reloads = Family::<ReloadLabel, Counter>::default();
        let pending = Gauge::default();
        let outbound_bytes = Gauge::default();
        let rate_limited = Family::<LimitLabel, Counter>::default();
        registry.register(
            "pending_sockets",
            "Sockets not logged in (before or after the upgrade, or logged out again)",
            pending.clone(),
        );
        registry.register(
            "outbound_bytes",
            "Bytes waiting in the gateway's outbound queues, all sockets together (kernel buffers not counted)",
            outbound_bytes.clone(),
        );
        registry.register(
            "rate_limited",
            "Per-socket rate limit refusals (frames: closed 1008; requests: answered 7008)",
            rate_limited.clone(),
        );
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "sessions",
            "Logged-in sessions by platform",
            sessions.clone(),
        );
        registry.register("logins", "Login attempts by result code", logins.clone());
        registry.register("kicks", "Sessions kicked, by reason", kicks.clone());
        registry.register(
            "expiries",
            "Sessions ended by UserSig expiry",
            expiries.clone(),
        );
        registry.register(
            "closes",
            "Sockets closed by the gateway, by close code",
            closes.clone(),
        );
        registry.register(
            "dau",
            "Distinct users logged in since 00:00 UTC",
            dau_gauge.clone(),
        );
        registry.register(
            "webhook_events",
            "State.StateChange webhook events by result",
            webhook.clone(),
        );
        registry.register(
            "reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let redis_up = Gauge::default();
        let live_nodes = Gauge::default();
        if cluster {
            registry.register(
                "redis_up",
                "1 while Redis answers (cluster mode)",
                redis_up.clone(),
            );
            registry.register(
                "live_nodes",
                "Live gateway nodes as this node sees them (cluster mode)",
                live_nodes.clone(),
            );
        }
        let mut dau = HashMap::new();
        for &app in apps {
            dau_gauge
                .get_or_create(&AppLabel { sdk_app_id: app })
                .set(0);
            dau.insert(
                app,
                Mutex::new(Dau {
                    day: 0,
                    users: HashSet::new(),
                }),
            );
        }
        Metrics {
            registry,
            connections,
            sessions,
            logins,
            kicks,
            expiries,
            closes,
            dau_gauge,
            webhook,
            reloads,
            pending,
            outbound_bytes,
            rate_limited,
            redis_up,
            live_nodes,
            shared_dau: cluster,
            dau,
            hasher: RandomState::new(),
        }
    }

    /// Counts a login result.
    pub fn count_login(&self, app: u64, code: Code) {
        self.logins
            .get_or_create(&CodeLabel {
                sdk_app_id: app,
                code: code.as_u32(),
            })
            .inc();
    }

    /// Counts a kick.
    pub fn count_kick(&self, app: u64, reason: KickReason) {
        self.kicks
            .get_or_create(&ReasonLabel {
                sdk_app_id: app,
                reason: reason.as_str(),
            })
            .inc();
    }

    /// A session joined this node's presence.
    pub fn session_started(&self, app: u64, platform: Platform) {
        self.sessions_by(app, platform).inc();
    }

    /// A session left this node's presence.
    pub fn session_ended(&self, app: u64, platform: Platform) {
        self.sessions_by(app, platform).dec();
    }

    fn sessions_by(&self, app: u64, platform: Platform) -> Gauge {
        self.sessions
            .get_or_create(&PlatformLabel {
                sdk_app_id: app,
                platform: platform.as_str(),
            })
            .clone()
    }

    /// Counts a session ended by its UserSig's expiry.
    pub fn count_expiry(&self, app: u64) {
        self.expiries
            .get_or_create(&AppLabel { sdk_app_id: app })
            .inc();
    }

    /// Counts a refusal of a per-socket rate limit.
    pub fn count_rate_limited(&self, limit: &'static str) {
        self.rate_limited.get_or_create(&LimitLabel { limit }).inc();
    }

    /// Counts a close the gateway sent.
    pub fn count_close(&self, code: u16) {
        self.closes.get_or_create(&CloseLabel { code }).inc();
    }

    /// Records a successful login for DAU.
    pub fn saw_user(&self, app: u64, user: &str, now_ms: u64) {
        if self.shared_dau {
            return;
        }
        let Some(d) = self.dau.get(&app) else { return };
        let day = now_ms / 86_400_000;
        let mut d = d.lock();
        if d.day != day {
            d.day = day;
            d.users = HashSet::new();
        }
        d.users.insert(self.hasher.hash_one(user));
        self.dau_gauge
            .get_or_create(&AppLabel { sdk_app_id: app })
            .set(d.users.len() as i64);
    }

    /// Sets an app's DAU (cluster mode, from Redis).
    pub fn set_dau(&self, app: u64, n: i64) {
        self.dau_gauge
            .get_or_create(&AppLabel { sdk_app_id: app })
            .set(n);
    }

    /// Refreshes the DAU gauges (a new UTC day with no login yet reads 0).
    fn roll_days(&self, now_ms: u64) {
        if self.shared_dau {
            return;
        }
        let day = now_ms / 86_400_000;
        for (&app, d) in &self.dau {
            let mut d = d.lock();
            if d.day != day {
                d.day = day;
                d.users = HashSet::new();
            }
            self.dau_gauge
                .get_or_create(&AppLabel { sdk_app_id: app })
                .set(d.users.len() as i64);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self, now_ms: u64) -> String {
        self.roll_days(now_ms);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing into a String cannot fail");
        out
    }
}
