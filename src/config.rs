//! The configuration file (contract §9) with its documented defaults, and its validation.
//!
//! Every bound the gateway applies is a field here. Parsing refuses unknown keys, and every error
//! names the file, the key and what is wrong. The development gateway (`imgate serve` without a
//! file) is built by [`Config::development`].

use crate::origin::OriginPattern;
use crate::policy::Policy;
use imgate_proto::{Platform, MAX_FRAME_LIMIT};
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// A configuration error, already phrased for the operator: the file, the line when known, the key
/// with its full path (`cluster.lease_ms`, `app[0].max_instances.web`) and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {key}: {msg}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: String,
    pub msg: String,
}

/// The whole configuration (contract §9, §12). Every field has a default ([`Config::default`]);
/// the field docs say what it bounds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// WebSocket listener.
    pub listen: SocketAddr,
    /// A new (or logged-out) socket must log in within this many seconds, else close 4000.
    pub login_timeout_secs: u64,
    /// The server pings every this many seconds.
    pub ping_interval_secs: u64,
    /// A socket with no inbound frame for this long is closed with 4001.
    pub idle_timeout_secs: u64,
    /// Largest inbound message after reassembly; larger closes with 1009. At most 1 MiB.
    pub max_frame_bytes: usize,
    /// Largest `send` payload; larger answers 6017.
    pub max_payload_bytes: usize,
    /// Open WebSocket connections at most; further TCP connections are closed at accept.
    pub max_connections: usize,
    /// Pushes queued for one socket at most before it is closed with 4003.
    pub outbound_queue: usize,
    /// Bytes waiting to be written to one socket at most before it is closed with 4003.
    pub outbound_bytes: usize,
    /// Read buffer of each socket (bytes); small keeps idle sockets cheap.
    pub read_buffer_bytes: usize,
    /// How long shutdown waits for sockets to close and webhooks to flush.
    pub shutdown_grace_secs: u64,
    /// Admin HTTP listener.
    pub admin_listen: SocketAddr,
    /// Bearer token for `/v1/*`. None: `/v1/*` answers 403.
    pub admin_token: Option<String>,
    /// Answer `POST /v1/dev/usersig` (mint UserSigs for the console). Always on for the
    /// development gateway.
    pub dev_usersig: bool,
    /// The development gateway (`imgate serve` without a file): the console is prefilled with the
    /// admin token. Not a config key.
    #[serde(skip)]
    pub development: bool,
    /// The file this was read from (for errors and reloads). Not a config key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// Origins allowed to open sockets (`scheme://host[:port]`, or `*.` for any subdomain); empty:
    /// every Origin. An upgrade without `Origin` is always accepted.
    pub allowed_origins: Vec<OriginPattern>,
    /// Peers (CIDR ranges) whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Every connection on `listen` starts with a PROXY v1 or v2 header naming the client.
    pub proxy_protocol: bool,
    /// Open sockets per client address at most (an IPv6 address counts by its /64); 0: no cap.
    pub max_connections_per_ip: usize,
    /// `[tls]`: `listen` serves wss://.
    pub tls: Option<TlsConfig>,
    /// The HTTP upgrade request (after the PROXY header and TLS) must be complete this long after
    /// accept, or the connection is closed unanswered (§16). 0: off.
    pub upgrade_timeout_secs: u64,
    /// Inbound frames of any kind per socket per second (a burst of twice that); more closes the
    /// socket with 1008 (§16). 0: off.
    pub max_frames_per_sec: u32,
    /// `login`, `logout`, `refresh_sig` and `send` per socket per second, one budget (a burst of
    /// twice that); more answers 7008 (§16). 0: off.
    pub max_requests_per_sec: u32,
    /// Sockets not logged in per client address (IPv6: per /64); more is refused (§16). 0: off.
    pub max_pending_per_ip: usize,
    /// Sockets not logged in, in total; more is refused (§16). Must be below `max_connections`.
    /// 0: off.
    pub max_pending: usize,
    /// Bytes waiting in all the gateway's outbound queues together (kernel buffers not counted);
    /// past it the sockets with the largest queues are closed with 4003 first (§16). 0: off.
    pub max_outbound_total_bytes: usize,
    /// A request head on the admin listener must arrive within this (§16).
    pub admin_header_timeout_secs: u64,
    /// An idle keep-alive connection on the admin listener is closed after this (§16).
    pub admin_idle_timeout_secs: u64,
    /// Open connections on the admin listener at most; more are closed at accept (§16).
    pub admin_max_connections: usize,
    pub throttle: ThrottleConfig,
    #[serde(rename = "app")]
    pub apps: Vec<AppConfig>,
    /// `[cluster]`: share presence with other nodes through Redis (contract §12).
    pub cluster: Option<ClusterConfig>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            login_timeout_secs: 10,
            ping_interval_secs: 25,
            idle_timeout_secs: 60,
            max_frame_bytes: 65536,
            max_payload_bytes: 16384,
            max_connections: 100_000,
            outbound_queue: 256,
            outbound_bytes: 256 * 1024,
            read_buffer_bytes: 1024,
            shutdown_grace_secs: 5,
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_token: None,
            dev_usersig: false,
            development: false,
            source: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            proxy_protocol: false,
            max_connections_per_ip: 0,
            tls: None,
            upgrade_timeout_secs: 5,
            max_frames_per_sec: 200,
            max_requests_per_sec: 20,
            max_pending_per_ip: 64,
            max_pending: 10_000,
            max_outbound_total_bytes: 256 * 1024 * 1024,
            admin_header_timeout_secs: 10,
            admin_idle_timeout_secs: 30,
            admin_max_connections: 256,
            throttle: ThrottleConfig::default(),
            apps: Vec::new(),
            cluster: None,
        }
    }
}

/// `[tls]`: PEM files for the WebSocket listener.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]` of the shared Redis (7.0 or later). Required.
    pub redis_url: String,
    /// Unique per live node. Default: host name + a random suffix per process start.
    pub node_id: Option<String>,
    /// A node silent this long is dead.
    pub lease_ms: u64,
    /// How often a node renews its lease.
    pub heartbeat_ms: u64,
    /// Each node re-checks its sockets against Redis this often.
    pub reconcile_secs: u64,
    /// Every Redis call is bounded by this; a login past it answers 70169.
    pub redis_timeout_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            redis_url: String::new(),
            node_id: None,
            lease_ms: 5000,
            heartbeat_ms: 1000,
            reconcile_secs: 10,
            redis_timeout_ms: 500,
        }
    }
}

/// `[throttle]`: failed UserSig verifications per (app, user, client IP) in a sliding window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// Failures within the window that trigger 70050.
    pub max_failures: u32,
    /// The sliding window in seconds.
    pub window_secs: u64,
    /// (app, user, IP) keys tracked at most; the oldest are forgotten first (never a throttled one).
    pub max_keys: usize,
    /// Failures from one client address within the window after which every attempt from it
    /// answers 70050, for any user (an IPv6 address counts by its /64). 0: off.
    pub max_failures_per_ip: u32,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 5,
            window_secs: 60,
            max_keys: 100_000,
            max_failures_per_ip: 100,
        }
    }
}

/// One `[[app]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppConfig {
    /// Required.
    pub sdk_app_id: u64,
    /// The app's secret key (raw UTF-8 bytes are the HMAC key). Required. UserSigs are minted with it.
    pub key: String,
    /// Keys being rotated out: UserSigs signed with them still verify (contract §14).
    pub previous_keys: Vec<String>,
    /// The identifier whose UserSig authenticates the Tencent REST facade (contract §15).
    pub admin_identifier: String,
    /// `single`, `dual` (default), `triple` or `multi`. Exclusive with `groups`.
    pub policy: Option<String>,
    /// Custom exclusive groups, e.g. `[["android","iphone"],["web"]]`; unlisted platforms are alone.
    pub groups: Option<Vec<Vec<String>>>,
    /// Per-platform instance caps; unlisted platforms: 1.
    pub max_instances: BTreeMap<String, u32>,
    pub webhook: Option<WebhookConfig>,
}

impl Default for AppConfig {
    fn default() -> AppConfig {
        AppConfig {
            sdk_app_id: 0,
            key: String::new(),
            previous_keys: Vec::new(),
            admin_identifier: "administrator".into(),
            policy: None,
            groups: None,
            max_instances: BTreeMap::new(),
            webhook: None,
        }
    }
}

/// `[app.webhook]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` URL the State.StateChange callbacks are POSTed to. Required.
    pub url: String,
    /// Events queued at most before new ones are dropped (and counted).
    pub queue: usize,
    /// Delivery attempts per event.
    pub attempts: u32,
    /// Per-attempt timeout in milliseconds.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            url: String::new(),
            queue: 10_000,
            attempts: 4,
            timeout_ms: 2000,
        }
    }
}

/// The line (1-based) of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The key path of a deserialisation error (serde_path_to_error's, `.` for the document itself).
fn key_path(path: &serde_path_to_error::Path) -> String {
    match path.to_string() {
        p if p == "." => "(document)".into(),
        p => p,
    }
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: None,
            key: "(file)".into(),
            msg: format!("cannot read: {e}"),
        })?;
        let mut cfg = Config::parse(&text, &file)?;
        cfg.source = Some(path.to_owned());
        Ok(cfg)
    }

    /// Lowers `max_connections` (and `max_pending` below it) so that it, `admin_max_connections`
    /// and a reserve of 64 descriptors fit `limit` open files; `Some((was, now))` when it did.
    pub fn fit_open_files(&mut self, limit: u64) -> Option<(usize, usize)> {
        const RESERVED: u64 = 64;
        let admin = self.admin_max_connections as u64;
        if self.max_connections as u64 + admin + RESERVED <= limit {
            return None;
        }
        let was = self.max_connections;
        let fits = limit.saturating_sub(admin + RESERVED).max(2) as usize;
        self.max_connections = fits;
        if self.max_pending >= fits {
            self.max_pending = fits / 2;
        }
        Some((was, fits))
    }

    /// The name of the file in errors (`(development)` without one).
    pub fn file_name(&self) -> String {
        self.source
            .as_ref()
            .map_or_else(|| "(development)".into(), |p| p.display().to_string())
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let syntax = |e: toml::de::Error| ConfigError {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)),
            key: "(syntax)".into(),
            msg: e.message().to_owned(),
        };
        let de = toml::Deserializer::parse(text).map_err(syntax)?;
        let cfg: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let inner = e.inner();
            ConfigError {
                file: file.to_owned(),
                line: inner.span().map(|s| line_of(text, s.start)),
                key: key_path(e.path()),
                msg: inner.message().to_owned(),
            }
        })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// The development gateway: defaults, and one app with the given key.
    pub fn development(sdk_app_id: u64, key: String, admin_token: String) -> Config {
        Config {
            admin_token: Some(admin_token),
            dev_usersig: true,
            development: true,
            apps: vec![AppConfig {
                sdk_app_id,
                key,
                ..AppConfig::default()
            }],
            ..Config::default()
        }
    }

    fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let err = |key: &str, msg: String| ConfigError {
            file: file.to_owned(),
            line: None,
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
        if self.max_pending != 0 && self.max_pending >= self.max_connections {
            return Err(err(
                "max_pending",
                format!(
                    "must be below max_connections ({}), so that sockets waiting to log in can never take every slot",
                    self.max_connections
                ),
            ));
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
            if c.redis_url.is_empty() {
                return Err(err("cluster.redis_url", "is required".into()));
            }
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
            if app.sdk_app_id == 0 {
                return Err(err(
                    &at("sdk_app_id"),
                    "is required (a positive integer)".into(),
                ));
            }
            if app.key.is_empty() {
                return Err(err(&at("key"), "is required and must not be empty".into()));
            }
            if let Some(k) = app.previous_keys.iter().position(String::is_empty) {
                return Err(err(
                    &at(&format!("previous_keys[{k}]")),
                    "must not be empty".into(),
                ));
            }
            if !imgate_proto::valid_user_id(&app.admin_identifier) {
                return Err(err(
                    &at("admin_identifier"),
                    "must be 1 to 32 characters of A-Z a-z 0-9 _ -".into(),
                ));
            }
            app.policy().map_err(|(k, m)| err(&at(&k), m))?;
            if let Some(w) = &app.webhook {
                if w.url.is_empty() {
                    return Err(err(&at("webhook.url"), "is required".into()));
                }
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
        assert_eq!(e.key, "lisen");
        assert!(e.to_string().starts_with("test.toml:1: lisen: "), "{e}");

        let e = parse("").unwrap_err();
        assert_eq!(e.key, "app");

        let e = parse(&format!("{APP}{APP}")).unwrap_err();
        assert_eq!(e.key, "app[1].sdk_app_id");

        let e = parse(&format!("{APP}groups = [[\"web\"],[\"web\",\"mac\"]]\n")).unwrap_err();
        assert_eq!(e.key, "app[0].groups");
    }

    #[test]
    fn type_errors_name_the_full_key_path_and_the_line() {
        let e = parse(&format!(
            "{APP}\n[cluster]\nredis_url = \"redis://127.0.0.1:1\"\nlease_ms = \"soon\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.key, "cluster.lease_ms");
        assert_eq!(e.line, Some(7), "{e}");
        assert!(
            e.to_string().starts_with("test.toml:7: cluster.lease_ms: "),
            "{e}"
        );

        let e = parse(&format!("{APP}[app.max_instances]\nweb = \"ten\"\n")).unwrap_err();
        assert_eq!(e.key, "app[0].max_instances.web");
        assert_eq!(e.line, Some(5));

        let e = parse(&format!("{APP}{APP}[app.webhook]\nurl = 7\n")).unwrap_err();
        assert_eq!(e.key, "app[1].webhook.url");

        let e = parse(&format!("login_timeout_secs = -1\n{APP}")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("login_timeout_secs", Some(1)));

        let e = parse(&format!("[throttle]\nmax_failurs = 3\n{APP}")).unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("throttle.max_failurs", Some(2)));

        let e = parse("[[app]]\nkey = \"k\"\n").unwrap_err();
        assert_eq!(e.key, "app[0].sdk_app_id");
        let e = parse("listen = \n").unwrap_err();
        assert_eq!((e.key.as_str(), e.line), ("(syntax)", Some(1)));
    }

    #[test]
    fn the_development_config_has_every_default() {
        let d = Config::development(7, "k".into(), "t".into());
        let parsed = parse("[[app]]\nsdk_app_id = 7\nkey = \"k\"\n").unwrap();
        assert_eq!(
            format!("{:?}", d.throttle),
            format!("{:?}", parsed.throttle)
        );
        assert_eq!(d.login_timeout_secs, parsed.login_timeout_secs);
        assert!(d.development && d.dev_usersig && !parsed.development);
    }
}
