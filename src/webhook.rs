//! State.StateChange webhooks (contract §11): one bounded queue and one delivery task per app.
//!
//! [`Webhooks::emit`] never waits: it puts the event in the app's queue or, when the queue is full,
//! drops it and counts the drop. The delivery task POSTs each event with up to `attempts` tries and
//! exponential backoff, several events in flight at once, so a slow receiver delays nothing but its
//! own queue. On shutdown the queue is closed and what is in it is delivered within the grace period.

use crate::config::WebhookConfig;
use crate::metrics::{Metrics, WebhookLabel};
use arc_swap::ArcSwap;
use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use imgate_proto::Platform;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Events delivered concurrently per app.
const IN_FLIGHT: usize = 16;

/// The `Info.Action` / `Info.Reason` pairs of contract §11.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `Login` / `Register`.
    Login,
    /// `Logout` / `Unregister`: logout, account switch, UserSig expiry.
    Logout,
    /// `Disconnect` / `LinkClose`: the socket closed.
    LinkClose,
    /// `Disconnect` / `TimeOut`: idle timeout.
    TimeOut,
}

impl Change {
    fn action_reason(self) -> (&'static str, &'static str) {
        match self {
            Change::Login => ("Login", "Register"),
            Change::Logout => ("Logout", "Unregister"),
            Change::LinkClose => ("Disconnect", "LinkClose"),
            Change::TimeOut => ("Disconnect", "TimeOut"),
        }
    }
}

/// One state change of a session.
#[derive(Debug, Clone)]
pub struct StateChange {
    pub app: u64,
    pub user: String,
    pub platform: Platform,
    pub client_ip: IpAddr,
    pub change: Change,
    /// Platforms of the devices a login kicked (one entry per device).
    pub kicked: Vec<Platform>,
    pub event_time_ms: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Body<'a> {
    callback_command: &'static str,
    event_time: u64,
    info: Info<'a>,
    kicked_device: Vec<Kicked>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Info<'a> {
    action: &'static str,
    #[serde(rename = "To_Account")]
    to_account: &'a str,
    reason: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Kicked {
    platform: &'static str,
}

impl StateChange {
    /// The callback URL for this event (the configured URL plus Tencent's query parameters).
    pub fn url(&self, base: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{sep}SdkAppid={}&CallbackCommand=State.StateChange&contenttype=json&ClientIP={}&OptPlatform={}",
            self.app,
            self.client_ip,
            self.platform.tencent_name()
        )
    }

    /// The JSON body of contract §11.
    pub fn body(&self) -> Vec<u8> {
        let (action, reason) = self.change.action_reason();
        serde_json::to_vec(&Body {
            callback_command: "State.StateChange",
            event_time: self.event_time_ms,
            info: Info {
                action,
                to_account: &self.user,
                reason,
            },
            kicked_device: self
                .kicked
                .iter()
                .map(|p| Kicked {
                    platform: p.tencent_name(),
                })
                .collect(),
        })
        .expect("webhook bodies always serialise")
    }
}

/// Each user may hold at most this share of an app's queue (1/8): one user flooding state changes
/// cannot take the room other users' events need (contract §16).
const USER_SHARE: usize = 8;

/// What an app's queue and its delivery task share.
#[derive(Debug)]
struct Shared {
    cfg: ArcSwap<WebhookConfig>,
    /// Events queued per user (by a keyed hash), for the per-user share.
    queued: DashMap<u64, u32>,
    per_user: u32,
}

/// One app's queue.
#[derive(Debug)]
struct Queue {
    tx: mpsc::Sender<(u64, StateChange)>,
    shared: Arc<Shared>,
    /// The queue's size (a reload that changes it starts a new queue).
    size: usize,
}

/// The webhook queues of every app that has one; a reload adds, changes and removes them.
#[derive(Debug)]
pub struct Webhooks {
    queues: ArcSwap<HashMap<u64, Arc<Queue>>>,
    metrics: Arc<Metrics>,
    stop: tokio::sync::watch::Receiver<bool>,
    tasks: Mutex<Deliverers>,
    hasher: RandomState,
}

/// Handles of the delivery tasks, for the shutdown drain.
pub type Deliverers = JoinSet<()>;

impl Webhooks {
    /// Starts one delivery task per configured webhook. `stop` closes the queues for the drain.
    pub fn start(
        apps: &[(u64, WebhookConfig)],
        metrics: Arc<Metrics>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Webhooks {
        let w = Webhooks {
            queues: ArcSwap::from_pointee(HashMap::new()),
            metrics,
            stop,
            tasks: Mutex::new(JoinSet::new()),
            hasher: RandomState::new(),
        };
        w.reload(apps);
        w
    }

    /// Applies a new set of webhooks: an unchanged queue stays as it is (with its events), a
    /// changed URL, attempts or timeout applies to the next event, a changed queue size starts a
    /// new queue (the old one is delivered and its task ends), a removed webhook's queue is
    /// delivered and its task ends.
    pub fn reload(&self, apps: &[(u64, WebhookConfig)]) {
        let old = self.queues.load_full();
        let mut next = HashMap::with_capacity(apps.len());
        for (app, cfg) in apps {
            let q = match old.get(app) {
                Some(q) if q.size == cfg.queue => {
                    if **q.shared.cfg.load() != *cfg {
                        q.shared.cfg.store(Arc::new(cfg.clone()));
                    }
                    Arc::clone(q)
                }
                _ => self.spawn_queue(*app, cfg),
            };
            next.insert(*app, q);
        }
        self.queues.store(Arc::new(next));
    }

    fn spawn_queue(&self, app: u64, cfg: &WebhookConfig) -> Arc<Queue> {
        let (tx, rx) = mpsc::channel(cfg.queue);
        let shared = Arc::new(Shared {
            cfg: ArcSwap::from_pointee(cfg.clone()),
            queued: DashMap::new(),
            per_user: u32::try_from((cfg.queue / USER_SHARE).max(1)).unwrap_or(u32::MAX),
        });
        self.tasks.lock().spawn(deliver(
            app,
            Arc::clone(&shared),
            rx,
            Arc::clone(&self.metrics),
            self.stop.clone(),
        ));
        Arc::new(Queue {
            tx,
            shared,
            size: cfg.queue,
        })
    }

    /// The delivery tasks, for the shutdown drain (taken once).
    pub fn take_deliverers(&self) -> Deliverers {
        std::mem::take(&mut *self.tasks.lock())
    }

    /// Whether the app has a webhook (so callers can skip building events nobody receives).
    pub fn enabled(&self, app: u64) -> bool {
        self.queues.load().contains_key(&app)
    }

    /// Queues a state change of a session, stamped now, for its app's webhook if it has one (the
    /// event is not even built otherwise).
    pub fn state_change(
        &self,
        app: u64,
        user: &str,
        platform: Platform,
        client_ip: IpAddr,
        change: Change,
        kicked: Vec<Platform>,
    ) {
        if !self.enabled(app) {
            return;
        }
        self.emit(StateChange {
            app,
            user: user.to_owned(),
            platform,
            client_ip,
            change,
            kicked,
            event_time_ms: crate::clock::now_ms(),
        });
    }

    /// Queues an event for its app's webhook, if it has one. Never waits; returns false when the
    /// event was dropped: the queue was full or closed, or its user already holds its share.
    pub fn emit(&self, event: StateChange) -> bool {
        let queues = self.queues.load();
        let Some(q) = queues.get(&event.app) else {
            return true;
        };
        let app = event.app;
        let user = self.hasher.hash_one(&event.user);
        let admitted = {
            let mut n = q.shared.queued.entry(user).or_insert(0);
            if *n >= q.shared.per_user {
                false
            } else {
                *n += 1;
                true
            }
        };
        if admitted && q.tx.try_send((user, event)).is_ok() {
            return true;
        }
        if admitted {
            taken(&q.shared, user);
        }
        self.metrics
            .webhook
            .get_or_create(&WebhookLabel {
                sdk_app_id: app,
                result: "dropped",
            })
            .inc();
        false
    }
}

/// An event of `user` left the queue.
fn taken(shared: &Shared, user: u64) {
    shared.queued.remove_if_mut(&user, |_, n| {
        *n = n.saturating_sub(1);
        *n == 0
    });
}

async fn deliver(
    app: u64,
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<(u64, StateChange)>,
    metrics: Arc<Metrics>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let mut in_flight = JoinSet::new();
    let mut stopping = *stop.borrow();
    if stopping {
        rx.close();
    }
    loop {
        while in_flight.len() >= IN_FLIGHT {
            in_flight.join_next().await;
        }
        let event = tokio::select! {
            e = rx.recv() => e,
            _ = stop.changed(), if !stopping => {
                stopping = true;
                rx.close(); // take nothing new; what is queued is still received below
                continue;
            }
        };
        let Some((user, event)) = event else { break };
        taken(&shared, user);
        let cfg = shared.cfg.load_full();
        let (client, metrics) = (client.clone(), Arc::clone(&metrics));
        in_flight.spawn(async move {
            let ok = post_with_retries(&client, &cfg, &event).await;
            metrics
                .webhook
                .get_or_create(&WebhookLabel {
                    sdk_app_id: app,
                    result: if ok { "delivered" } else { "failed" },
                })
                .inc();
        });
    }
    while in_flight.join_next().await.is_some() {}
}

async fn post_with_retries(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    cfg: &WebhookConfig,
    event: &StateChange,
) -> bool {
    let url = event.url(&cfg.url);
    let body = Bytes::from(event.body());
    let mut backoff = Duration::from_millis(100);
    for attempt in 1..=cfg.attempts {
        let req = match hyper::Request::post(&url)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body.clone()))
        {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(app = event.app, %url, "webhook URL is invalid: {e}");
                return false;
            }
        };
        let timeout = Duration::from_millis(cfg.timeout_ms);
        match tokio::time::timeout(timeout, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => return true,
            Ok(Ok(resp)) => {
                tracing::debug!(app = event.app, attempt, status = %resp.status(), "webhook refused")
            }
            Ok(Err(e)) => tracing::debug!(app = event.app, attempt, "webhook failed: {e}"),
            Err(_) => tracing::debug!(app = event.app, attempt, "webhook timed out"),
        }
        if attempt < cfg.attempts {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
    tracing::warn!(
        app = event.app,
        "webhook event dropped after {} attempts",
        cfg.attempts
    );
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_url_have_tencent_shape() {
        let e = StateChange {
            app: 1400000000,
            user: "alice".into(),
            platform: Platform::Iphone,
            client_ip: "127.0.0.1".parse().unwrap(),
            change: Change::Login,
            kicked: vec![Platform::Android, Platform::Web],
            event_time_ms: 1700000000123,
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"CallbackCommand":"State.StateChange","EventTime":1700000000123u64,
                "Info":{"Action":"Login","To_Account":"alice","Reason":"Register"},
                "KickedDevice":[{"Platform":"Android"},{"Platform":"Web"}]})
        );
        assert_eq!(
            e.url("http://h:9/cb"),
            "http://h:9/cb?SdkAppid=1400000000&CallbackCommand=State.StateChange&contenttype=json&ClientIP=127.0.0.1&OptPlatform=iOS"
        );
    }
}
