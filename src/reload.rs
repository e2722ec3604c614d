//! Live reload (contract §14): `SIGHUP` or `POST /v1/reload` re-reads the config file given with
//! `--config` and applies what can change while sockets stay open.
//!
//! Applied live: `[[app]]` (added, removed, key, previous_keys, policy, groups, max_instances,
//! webhook, admin_identifier) and `[throttle]`, as one snapshot a login sees whole or not at all;
//! the timeouts and limits, for sockets opened afterwards (each socket keeps the configuration it
//! opened under); `allowed_origins`, `trusted_proxies`, `max_connections_per_ip`, `admin_token`,
//! `dev_usersig`; and the `[tls]` certificate and key, read again also when renewed in place (new
//! handshakes use them). A removed app's sessions are closed as an admin kick (4502). Not applied:
//! `listen`, `admin_listen`, `proxy_protocol`, `max_connections`, `[cluster]`, and adding or
//! removing `[tls]`: a reload that changes them keeps the running values and names them.
//!
//! All or nothing: the file is read, validated and its certificate loaded before anything is
//! swapped; a bad file changes nothing and its error names the file and the key.

use crate::config::{Config, ConfigError};
use crate::gateway::Gateway;
use crate::metrics::ReloadLabel;
use crate::outbox::Event;
use std::collections::HashSet;

/// What a reload applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// Keys whose change needs a restart (their running values were kept).
    pub not_applied: Vec<&'static str>,
    /// Apps removed (their sessions on this node were closed as an admin kick).
    pub removed_apps: Vec<u64>,
}

/// Re-reads the config file and applies it; on `Err` nothing changed.
pub fn reload(gw: &Gateway) -> Result<Reloaded, ConfigError> {
    let r = apply(gw);
    let result = if r.is_ok() { "applied" } else { "error" };
    gw.metrics
        .reloads
        .get_or_create(&ReloadLabel { result })
        .inc();
    match &r {
        Ok(done) => {
            tracing::info!(not_applied = ?done.not_applied, removed_apps = ?done.removed_apps, "configuration reloaded")
        }
        Err(e) => tracing::warn!("configuration not reloaded: {e}"),
    }
    r
}

fn apply(gw: &Gateway) -> Result<Reloaded, ConfigError> {
    let running = gw.config();
    let Some(path) = running.source.clone() else {
        return Err(ConfigError {
            file: running.file_name(),
            line: None,
            key: "(file)".into(),
            msg: "the development gateway has no config file to reload".into(),
        });
    };
    let mut next = Config::load(&path)?;
    // Fitted to the open-files limit as at start, so that an unchanged file changes nothing.
    if let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) {
        next.fit_open_files(soft);
    }
    let not_applied = keep_running(&running, &mut next);
    // The certificate is read now, so that a bad one fails the reload before anything changed.
    let tls = match (&gw.edge.tls, &next.tls) {
        (Some(_), Some(t)) => Some(crate::edge::tls::for_config(&next, t)?),
        _ => None,
    };
    // From here on nothing fails.
    let hooks: Vec<_> = next
        .apps
        .iter()
        .filter_map(|a| a.webhook.clone().map(|w| (a.sdk_app_id, w)))
        .collect();
    let kept: HashSet<u64> = next.apps.iter().map(|a| a.sdk_app_id).collect();
    let removed_apps: Vec<u64> = gw
        .apps
        .ids()
        .into_iter()
        .filter(|a| !kept.contains(a))
        .collect();
    gw.apps.replace(&next.apps, &next.throttle);
    gw.webhooks.reload(&hooks);
    if let (Some(acceptor), Some(config)) = (&gw.edge.tls, tls) {
        acceptor.replace(config);
    }
    gw.set_config(next);
    for &app in &removed_apps {
        gw.conns.broadcast(Event::AppRemoved { app });
    }
    Ok(Reloaded {
        not_applied,
        removed_apps,
    })
}

/// Puts the running value back into `next` for every key that cannot change live, and names the
/// ones that differed.
fn keep_running(running: &Config, next: &mut Config) -> Vec<&'static str> {
    let mut kept = Vec::new();
    if next.listen != running.listen {
        next.listen = running.listen;
        kept.push("listen");
    }
    if next.admin_listen != running.admin_listen {
        next.admin_listen = running.admin_listen;
        kept.push("admin_listen");
    }
    if next.proxy_protocol != running.proxy_protocol {
        next.proxy_protocol = running.proxy_protocol;
        kept.push("proxy_protocol");
    }
    if next.max_connections != running.max_connections {
        next.max_connections = running.max_connections;
        kept.push("max_connections");
    }
    if next.cluster != running.cluster {
        next.cluster = running.cluster.clone();
        kept.push("cluster");
    }
    if next.tls.is_some() != running.tls.is_some() {
        next.tls = running.tls.clone();
        kept.push("tls");
    }
    kept
}
