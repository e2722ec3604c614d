//! The configuration file (contract §9) with its documented defaults, and its validation.
//!
//! Every bound the gateway applies is a field here. Parsing refuses unknown keys, and every error
//! names the file, the key and what is wrong. The development gateway (`imgate serve` without a
//! file) is built by [`Config::development`].

use crate::policy::Policy;
use imgate_proto::{Platform, MAX_FRAME_LIMIT};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

/// A configuration error, already phrased for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {msg}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub msg: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}

/// The whole configuration. Field docs give the defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// WebSocket listener. Default `127.0.0.1:8080`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A new (or logged-out) socket must log in within this many seconds, else close 4000. Default 10.
    #[serde(default = "d_login_timeout")]
    pub login_timeout_secs: u64,
    /// The server pings every this many seconds. Default 25.
    #[serde(default = "d_ping_interval")]
    pub ping_interval_secs: u64,
    /// A socket with no inbound frame for this long is closed with 4001. Default 60.
    #[serde(default = "d_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Largest inbound message after reassembly; larger closes with 1009. Default 65536, at most 1 MiB.
    #[serde(default = "d_max_frame")]
    pub max_frame_bytes: usize,
    /// Largest `send` payload; larger answers 6017. Default 16384.
    #[serde(default = "d_max_payload")]
    pub max_payload_bytes: usize,
    /// Open WebSocket connections at most; further TCP connections are closed at accept. Default 100000.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// Pushes queued for one socket at most before it is closed with 4003. Default 256.
    #[serde(default = "d_outbound_queue")]
    pub outbound_queue: usize,
    /// Bytes waiting to be written to one socket at most before it is closed with 4003. Default 262144.
    #[serde(default = "d_outbound_bytes")]
    pub outbound_bytes: usize,
    /// Read buffer of each socket (bytes); small keeps idle sockets cheap. Default 1024.
    #[serde(default = "d_read_buffer")]
    pub read_buffer_bytes: usize,
    /// How long shutdown waits for sockets to close and webhooks to flush. Default 5.
    #[serde(default = "d_grace")]
    pub shutdown_grace_secs: u64,
    /// Admin HTTP listener. Default `127.0.0.1:8081`.
    #[serde(default = "default_admin_listen")]
    pub admin_listen: SocketAddr,
    /// Bearer token for `/v1/*`. None: `/v1/*` answers 403.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Answer `POST /v1/dev/usersig` (mint UserSigs for the console). Default false; always on for
    /// the development gateway.
    #[serde(default)]
    pub dev_usersig: bool,
    /// The development gateway (`imgate serve` without a file): the console is prefilled with the
    /// admin token. Not a config key.
    #[serde(skip)]
    pub development: bool,
    #[serde(default)]
    pub throttle: ThrottleConfig,
    #[serde(default, rename = "app")]
    pub apps: Vec<AppConfig>,
    /// `[cluster]`: share presence with other nodes through Redis (contract §12).
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
}

/// `[cluster]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]` of the shared Redis (7.0 or later).
    pub redis_url: String,
    /// Unique per live node. Default: host name + a random suffix per process start.
    #[serde(default)]
    pub node_id: Option<String>,
    /// A node silent this long is dead. Default 5000.
    #[serde(default = "d_lease")]
    pub lease_ms: u64,
    /// How often a node renews its lease. Default 1000.
    #[serde(default = "d_heartbeat")]
    pub heartbeat_ms: u64,
    /// Each node re-checks its sockets against Redis this often. Default 10.
    #[serde(default = "d_reconcile")]
    pub reconcile_secs: u64,
    /// Every Redis call is bounded by this; a login past it answers 70169. Default 500.
    #[serde(default = "d_redis_timeout")]
    pub redis_timeout_ms: u64,
}

fn d_lease() -> u64 {
    5000
}
fn d_heartbeat() -> u64 {
    1000
}
fn d_reconcile() -> u64 {
    10
}
fn d_redis_timeout() -> u64 {
    500
}

fn d_login_timeout() -> u64 {
    10
}
fn d_ping_interval() -> u64 {
    25
}
fn d_idle_timeout() -> u64 {
    60
}
fn d_max_frame() -> usize {
    65536
}
fn d_max_payload() -> usize {
    16384
}
fn d_max_connections() -> usize {
    100_000
}
fn d_outbound_queue() -> usize {
    256
}
fn d_outbound_bytes() -> usize {
    256 * 1024
}
fn d_read_buffer() -> usize {
    1024
}
fn d_grace() -> u64 {
    5
}

/// `[throttle]`: failed UserSig verifications per (app, user, client IP) in a sliding window.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failures within the window that trigger 70050. Default 5.
    #[serde(default = "d_max_failures")]
    pub max_failures: u32,
    /// The sliding window in seconds. Default 60.
    #[serde(default = "d_window")]
    pub window_secs: u64,
    /// (app, user, IP) keys tracked at most; the oldest are forgotten first. Default 100000.
    #[serde(default = "d_max_keys")]
    pub max_keys: usize,
}

fn d_max_failures() -> u32 {
    5
}
fn d_window() -> u64 {
    60
}
fn d_max_keys() -> usize {
    100_000
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: d_max_failures(),
            window_secs: d_window(),
            max_keys: d_max_keys(),
        }
    }
}

/// One `[[app]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub sdk_app_id: u64,
    /// The app's secret key (raw UTF-8 bytes are the HMAC key).
    pub key: String,
    /// `single`, `dual` (default), `triple` or `multi`. Exclusive with `groups`.
    #[serde(default)]
    pub policy: Option<String>,
    /// Custom exclusive groups, e.g. `[["android","iphone"],["web"]]`; unlisted platforms are alone.
    #[serde(default)]
    pub groups: Option<Vec<Vec<String>>>,
    /// Per-platform instance caps; unlisted platforms: 1.
    #[serde(default)]
    pub max_instances: BTreeMap<String, u32>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// `[app.webhook]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` URL the State.StateChange callbacks are POSTed to.
    pub url: String,
    /// Events queued at most before new ones are dropped (and counted). Default 10000.
    #[serde(default = "d_webhook_queue")]
    pub queue: usize,
    /// Delivery attempts per event. Default 4.
    #[serde(default = "d_webhook_attempts")]
    pub attempts: u32,
    /// Per-attempt timeout in milliseconds. Default 2000.
    #[serde(default = "d_webhook_timeout")]
    pub timeout_ms: u64,
}

fn d_webhook_queue() -> usize {
    10_000
}
fn d_webhook_attempts() -> u32 {
    4
}
fn d_webhook_timeout() -> u64 {
    2000
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "(file)".into(),
            msg: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "(syntax)".into());
            ConfigError {
                file: file.to_owned(),
                key,
                msg: e.message().to_owned(),
            }
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// The development gateway: defaults, and one app with the given key.
    pub fn development(sdk_app_id: u64, key: String, admin_token: String) -> Config {
        let mut cfg: Config = toml::from_str("").expect("the empty config parses");
        cfg.admin_token = Some(admin_token);
        cfg.dev_usersig = true;
        cfg.development = true;
        cfg.apps.push(AppConfig {
            sdk_app_id,
            key,
            policy: None,
            groups: None,
            max_instances: BTreeMap::new(),
            webhook: None,
        });
        cfg
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| ConfigError {
            file: file.to_owned(),
            key: key.to_owned(),
            msg,
        };
        let positive = [
            ("login_timeout_secs", self.login_timeout_secs as usize),
            ("ping_interval_secs", self.ping_interval_secs as usize),
            ("idle_timeout_secs", self.idle_timeout_secs as usize),
            ("max_frame_bytes", self.max_frame_bytes),
            ("max_payload_bytes", self.max_payload_bytes),
            ("max_connections", self.max_connections),
            ("outbound_queue", self.outbound_queue),
            ("outbound_bytes", self.outbound_bytes),
            ("read_buffer_bytes", self.read_buffer_bytes),
            ("throttle.max_failures", self.throttle.max_failures as usize),
            ("throttle.window_secs", self.throttle.window_secs as usize),
            ("throttle.max_keys", self.throttle.max_keys),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(err(key, "must be greater than 0".into()));
            }
        }
        if self.max_frame_bytes > MAX_FRAME_LIMIT {
            return Err(err(
                "max_frame_bytes",
                format!("must be at most {MAX_FRAME_LIMIT}"),
            ));
        }
        if self.read_buffer_bytes < 128 {
            return Err(err("read_buffer_bytes", "must be at least 128".into()));
        }
        if let Some(t) = &self.admin_token {
            if t.is_empty() {
                return Err(err(
                    "admin_token",
                    "must not be empty (omit it to disable /v1/*)".into(),
                ));
            }
        }
        if let Some(c) = &self.cluster {
            if !c.redis_url.starts_with("redis://") {
                return Err(err(
                    "cluster.redis_url",
                    format!("{:?}: a redis:// URL is expected", c.redis_url),
                ));
            }
            if let Some(id) = &c.node_id {
                let ok = (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
                if !ok {
                    return Err(err(
                        "cluster.node_id",
                        "1 to 64 characters of A-Z a-z 0-9 - _ .".into(),
                    ));
                }
            }
            for (key, v) in [
                ("cluster.lease_ms", c.lease_ms),
                ("cluster.heartbeat_ms", c.heartbeat_ms),
                ("cluster.reconcile_secs", c.reconcile_secs),
                ("cluster.redis_timeout_ms", c.redis_timeout_ms),
            ] {
                if v == 0 {
                    return Err(err(key, "must be greater than 0".into()));
                }
            }
            if c.heartbeat_ms >= c.lease_ms {
                return Err(err(
                    "cluster.heartbeat_ms",
                    "must be shorter than cluster.lease_ms".into(),
                ));
            }
        }
        if self.apps.is_empty() {
            return Err(err("app", "at least one [[app]] is required".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let at = |k: &str| format!("app[{i}].{k}");
            if !seen.insert(app.sdk_app_id) {
                return Err(err(
                    &at("sdk_app_id"),
                    format!("{} is configured twice", app.sdk_app_id),
                ));
            }
            if app.key.is_empty() {
                return Err(err(&at("key"), "must not be empty".into()));
            }
            app.policy().map_err(|(k, m)| err(&at(&k), m))?;
            if let Some(w) = &app.webhook {
                if !w.url.starts_with("http://") {
                    return Err(err(
                        &at("webhook.url"),
                        format!("{:?}: only http:// URLs are supported", w.url),
                    ));
                }
                if w.queue == 0 || w.attempts == 0 || w.timeout_ms == 0 {
                    return Err(err(
                        &at("webhook"),
                        "queue, attempts and timeout_ms must be greater than 0".into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl AppConfig {
    /// Builds the app's policy; an error names the key (relative to the app) and the problem.
    pub fn policy(&self) -> Result<Policy, (String, String)> {
        let mut policy = match (&self.policy, &self.groups) {
            (Some(_), Some(_)) => {
                return Err((
                    "policy".into(),
                    "give either policy or groups, not both".into(),
                ))
            }
            (Some(name), None) => Policy::preset(name).ok_or_else(|| {
                (
                    "policy".into(),
                    format!("{name:?} is not one of single, dual, triple, multi"),
                )
            })?,
            (None, Some(groups)) => {
                let mut parsed = Vec::with_capacity(groups.len());
                for (g, group) in groups.iter().enumerate() {
                    let mut ps = Vec::with_capacity(group.len());
                    for name in group {
                        ps.push(Platform::parse(name).ok_or_else(|| {
                            (
                                format!("groups[{g}]"),
                                format!("{name:?} is not a platform"),
                            )
                        })?);
                    }
                    parsed.push(ps);
                }
                Policy::custom(&parsed).map_err(|m| ("groups".to_owned(), m))?
            }
            (None, None) => Policy::preset("dual").expect("dual is a preset"),
        };
        for (name, &n) in &self.max_instances {
            let p = Platform::parse(name).ok_or_else(|| {
                (
                    format!("max_instances.{name}"),
                    format!("{name:?} is not a platform"),
                )
            })?;
            if n == 0 {
                return Err((format!("max_instances.{name}"), "must be at least 1".into()));
            }
            policy.set_max_instances(p, n);
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, "test.toml")
    }

    const APP: &str = "[[app]]\nsdk_app_id = 1400000000\nkey = \"k\"\n";

    #[test]
    fn defaults_match_the_contract() {
        let c = parse(APP).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(
            (
                c.login_timeout_secs,
                c.ping_interval_secs,
                c.idle_timeout_secs
            ),
            (10, 25, 60)
        );
        assert_eq!((c.max_frame_bytes, c.max_payload_bytes), (65536, 16384));
        assert_eq!((c.throttle.max_failures, c.throttle.window_secs), (5, 60));
        assert!(c.admin_token.is_none());
    }

    #[test]
    fn the_contract_example_parses() {
        let c = parse(
            r#"
listen = "127.0.0.1:8080"
login_timeout_secs = 10
ping_interval_secs = 25
idle_timeout_secs = 60
max_frame_bytes = 65536
max_payload_bytes = 16384
admin_listen = "127.0.0.1:8081"
admin_token = "a long random secret"

[throttle]
max_failures = 5
window_secs = 60

[[app]]
sdk_app_id = 1400000000
key = "the app's secret key"
policy = "dual"
[app.max_instances]
web = 10
android = 3
[app.webhook]
url = "http://127.0.0.1:9000/im/callback"
"#,
        )
        .unwrap();
        let p = c.apps[0].policy().unwrap();
        assert_eq!(p.max_instances(Platform::Web), 10);
        assert_eq!(p.max_instances(Platform::Android), 3);
        assert_eq!(p.max_instances(Platform::Mac), 1);
    }

    #[test]
    fn errors_name_file_key_and_problem() {
        let e = parse(&format!("{APP}policy = \"quad\"\n")).unwrap_err();
        assert_eq!(e.file, "test.toml");
        assert_eq!(e.key, "app[0].policy");
        assert!(e.msg.contains("quad"), "{e}");

        let e = parse(&format!("{APP}[app.max_instances]\nweb = 0\n")).unwrap_err();
        assert_eq!(e.key, "app[0].max_instances.web");

        let e = parse(&format!("{APP}groups = [[\"android\",\"ios\"]]\n")).unwrap_err();
        assert_eq!(e.key, "app[0].groups[0]");

        let e = parse(&format!("max_frame_bytes = 0\n{APP}")).unwrap_err();
        assert_eq!(e.key, "max_frame_bytes");

        let e = parse(&format!("lisen = \"127.0.0.1:1\"\n{APP}")).unwrap_err();
        assert!(e.msg.contains("lisen"), "{e}");
        assert!(e.to_string().starts_with("test.toml: line 1: "), "{e}");

        let e = parse("").unwrap_err();
        assert_eq!(e.key, "app");

        let e = parse(&format!("{APP}{APP}")).unwrap_err();
        assert_eq!(e.key, "app[1].sdk_app_id");

        let e = parse(&format!("{APP}groups = [[\"web\"],[\"web\",\"mac\"]]\n")).unwrap_err();
        assert_eq!(e.key, "app[0].groups");
    }
}
