//! The process around the gateway: listeners, the accept loop with its connection cap, the admin
//! server, the expiry driver, the webhook deliverers, and the one shutdown path with a bounded drain.

use crate::admin;
use crate::apps::Apps;
use crate::config::Config;
use crate::conn;
use crate::conns::Conns;
use crate::expiry;
use crate::gateway::{Gateway, Parts};
use crate::metrics::Metrics;
use crate::presence::embedded::Embedded;
use crate::presence::redis::RedisPresence;
use crate::presence::{Presence, StoreDeps};
use crate::webhook::Webhooks;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout_at, Instant};

/// Listen backlog: bursts of connects must not overflow into SYN retries.
pub const BACKLOG: u32 = 8192;

/// Binds a listener with SO_REUSEADDR and a deep backlog (tokio's default backlog is 128).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The presence store of a config: Redis with a `[cluster]` table, else the embedded one. The one
/// place that asks which store is in use.
pub async fn store_for(
    config: Config,
    deps: StoreDeps,
) -> Result<Arc<dyn Presence>, crate::ServeError> {
    Ok(match &config.cluster {
        None => Arc::new(Embedded::new(deps.metrics)),
        Some(c) => Arc::new(
            RedisPresence::connect(c, deps)
                .await
                .map_err(crate::ServeError::Cluster)?,
        ),
    })
}

/// A gateway with its listeners bound, ready to run.
pub struct Server {
    pub gateway: Arc<Gateway>,
    ws: TcpListener,
    admin: TcpListener,
    stop: watch::Sender<bool>,
    /// SIGHUP, when registered: each one reloads the config file.
    reloads: Option<Reloads>,
}

/// The SIGHUP stream.
pub type Reloads = tokio::signal::unix::Signal;

/// Registers for SIGHUP now (before the announce lines, like [`shutdown_signal`]: a SIGHUP that came
/// before would kill the process with the default action).
pub fn reload_signal() -> Option<Reloads> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

impl Server {
    /// Builds the gateway with its presence store and binds both listeners (must run inside a
    /// tokio runtime).
    pub async fn bind(config: Config) -> Result<Server, crate::ServeError> {
        Server::bind_with(config, store_for).await
    }

    /// [`Server::bind`] with the presence store built by `store` (tests wrap a store with it).
    pub async fn bind_with<F, Fut>(config: Config, store: F) -> Result<Server, crate::ServeError>
    where
        F: FnOnce(Config, StoreDeps) -> Fut,
        Fut: Future<Output = Result<Arc<dyn Presence>, crate::ServeError>>,
    {
        let ws = bind(config.listen).map_err(crate::ServeError::Bind)?;
        let admin = bind(config.admin_listen).map_err(crate::ServeError::Bind)?;
        let app_ids: Vec<u64> = config.apps.iter().map(|a| a.sdk_app_id).collect();
        let metrics = Arc::new(Metrics::new(&app_ids, config.cluster.is_some()));
        let (stop, stop_rx) = watch::channel(false);
        let hooks: Vec<_> = config
            .apps
            .iter()
            .filter_map(|a| a.webhook.clone().map(|w| (a.sdk_app_id, w)))
            .collect();
        let webhooks = Webhooks::start(&hooks, Arc::clone(&metrics), stop_rx);
        let deps = StoreDeps {
            conns: Arc::new(Conns::new(metrics.connections.clone())),
            apps: Arc::new(Apps::new(&config.apps, &config.throttle)),
            webhooks: Arc::new(webhooks),
            metrics,
        };
        let presence = store(config.clone(), deps.clone()).await?;
        let tls = match &config.tls {
            None => None,
            Some(t) => Some(crate::edge::tls::Tls::new(crate::edge::tls::for_config(
                &config, t,
            )?)),
        };
        let edge = crate::edge::Edge {
            tls,
            per_ip: crate::edge::limits::PerIp::new(),
            pending: crate::edge::limits::Pending::new(deps.metrics.pending.clone()),
        };
        let gateway = Arc::new(Gateway::new(Parts {
            config,
            edge,
            apps: deps.apps,
            presence,
            metrics: deps.metrics,
            webhooks: deps.webhooks,
            conns: deps.conns,
        }));
        gateway.set_ws_endpoint(crate::gateway::WsEndpoint {
            addr: ws.local_addr().map_err(crate::ServeError::Bind)?,
            tls: gateway.edge.tls.is_some(),
        });
        Ok(Server {
            gateway,
            ws,
            admin,
            stop,
            reloads: None,
        })
    }

    /// Reloads the config file on each signal of `reloads` (SIGHUP).
    pub fn reload_on(mut self, reloads: Option<Reloads>) -> Server {
        self.reloads = reloads;
        self
    }

    pub fn ws_addr(&self) -> io::Result<SocketAddr> {
        self.ws.local_addr()
    }

    pub fn admin_addr(&self) -> io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The WebSocket listener's URL (`ws://` or `wss://`).
    pub fn ws_url(&self) -> io::Result<String> {
        let scheme = if self.gateway.edge.tls.is_some() {
            "wss"
        } else {
            "ws"
        };
        Ok(format!("{scheme}://{}/ws", self.ws_addr()?))
    }

    /// Serves until `shutdown` resolves, then drains: readyz answers 503, accepting stops, every
    /// socket is closed with 1001, queued webhooks are delivered; all within `shutdown_grace_secs`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Server {
            reloads: self_reloads,
            gateway: gw,
            ws,
            admin,
            stop,
        } = self;
        let max_conns = gw.config().max_connections.min(Semaphore::MAX_PERMITS) as u32;
        let permits = Arc::new(Semaphore::new(max_conns as usize));
        let wheel_task = tokio::spawn(expiry::run(Arc::clone(&gw.wheel)));
        let heap_task = tokio::spawn(crate::heap::run(Arc::clone(&gw)));
        let store_tasks = Arc::clone(&gw.presence).spawn();
        let (stop_accept, accept_rx) = watch::channel(false);
        let accept_task = tokio::spawn(accept_loop(
            Arc::clone(&gw),
            ws,
            Arc::clone(&permits),
            accept_rx,
        ));
        let (stop_admin, admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(admin::listener::serve(
            Arc::clone(&gw),
            admin,
            admin::router(Arc::clone(&gw)),
            admin_rx,
        ));
        let reload_task = self_reloads.map(|mut hup| {
            let gw = Arc::clone(&gw);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    let gw = Arc::clone(&gw);
                    // The file is read off the runtime's workers.
                    let _ = tokio::task::spawn_blocking(move || crate::reload::reload(&gw)).await;
                }
            })
        });

        shutdown.await;
        tracing::info!("shutting down: draining connections");
        let deadline = Instant::now() + Duration::from_secs(gw.config().shutdown_grace_secs);
        let _ = stop_accept.send(true);
        let _ = accept_task.await;
        gw.drain();
        if timeout_at(deadline, permits.acquire_many(max_conns))
            .await
            .is_err()
        {
            tracing::warn!(
                open = gw.conns.len(),
                "grace period over with sockets still open"
            );
        }
        let _ = stop.send(true);
        let mut deliverers = gw.webhooks.take_deliverers();
        let flushed = timeout_at(deadline, async {
            while deliverers.join_next().await.is_some() {}
        })
        .await;
        if flushed.is_err() {
            tracing::warn!("grace period over with webhooks still queued");
            deliverers.abort_all();
        }
        wheel_task.abort();
        heap_task.abort();
        gw.presence
            .leave(deadline.saturating_duration_since(Instant::now()))
            .await;
        for t in store_tasks {
            t.abort();
        }
        if let Some(t) = reload_task {
            t.abort();
        }
        let _ = stop_admin.send(true);
        let _ = admin_task.await;
        tracing::info!("stopped");
    }
}

async fn accept_loop(
    gw: Arc<Gateway>,
    listener: TcpListener,
    permits: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::debug!(%peer, "connection cap reached: refused");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let gw = Arc::clone(&gw);
                tokio::spawn(async move {
                    conn::serve(gw, stream, peer).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Registers for ctrl-c and SIGTERM now and returns a future that resolves when either arrives.
///
/// Call it before announcing the listeners: whoever waits for the announce line may signal at once,
/// and a signal that comes before the registration kills the process with the default action
/// instead of draining. (Registration is eager for that reason; must run inside the runtime.)
#[cfg(unix)]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let wait = |registered: io::Result<tokio::signal::unix::Signal>| async move {
            match registered {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(interrupt) => {},
            _ = wait(terminate) => {},
        }
    }
}

/// Resolves on ctrl-c.
#[cfg(not(unix))]
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
