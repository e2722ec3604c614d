//! The admin listener's client (`/v1/kick`, `/v1/push`, `/v1/online`, `/metrics`) over
//! [`crate::http`], and the end-of-run checks that the gateway is empty.

use super::*;

/// The admin listener: address and token.
pub(super) struct Admin {
    pub(super) addr: SocketAddr,
    pub(super) token: String,
}

impl Admin {
    /// The admin listener at `url` (`http://HOST:PORT`), resolved to its IPv4 address.
    pub(super) async fn resolve(url: &str, token: &str) -> Option<Admin> {
        let authority = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        tokio::net::lookup_host(authority.as_str())
            .await
            .ok()
            .and_then(|mut a| a.find(SocketAddr::is_ipv4))
            .map(|addr| Admin {
                addr,
                token: token.to_owned(),
            })
    }

    /// One HTTP/1.1 request ([`crate::http::request`]); the status and the body.
    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<(u16, String), Fail> {
        crate::http::request(
            &self.addr.to_string(),
            method,
            path,
            Some(&self.token),
            body,
            EVENT_WAIT,
        )
        .await
        .map_err(|e| format!("admin: {e}"))
    }

    pub(super) async fn json(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> Result<serde_json::Value, Fail> {
        let (status, body) = self.call(method, path, body).await?;
        if status != 200 {
            return Err(format!("admin {path}: HTTP {status}"));
        }
        serde_json::from_str(&body).map_err(|_| format!("admin {path}: not JSON"))
    }
}

/// The value of the gauges the soak checks in a `/metrics` text: connections, sessions (all
/// platforms), pending sockets and outbound bytes (absent series read as 0).
fn gauges(metrics: &str) -> BTreeMap<&'static str, i64> {
    let mut g = BTreeMap::from([
        ("connections", 0),
        ("sessions", 0),
        ("pending_sockets", 0),
        ("outbound_bytes", 0),
    ]);
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("imgate_") else {
            continue;
        };
        let (name, value) = match rest.split_once(' ') {
            Some((n, v)) => (n, v),
            None => continue,
        };
        let name = name.split('{').next().unwrap_or(name);
        let Ok(v) = value.trim().parse::<f64>() else {
            continue;
        };
        if let Some(slot) = g.get_mut(name) {
            *slot += v as i64;
        }
    }
    g
}

/// How many of the population `/v1/online` still lists (500 users a query).
pub(super) async fn still_online(
    admin: &Admin,
    app: u64,
    prefix: &str,
    users: usize,
) -> Result<usize, Fail> {
    let mut online = 0;
    for chunk in (0..users).collect::<Vec<_>>().chunks(500) {
        let mut path = format!("/v1/online?sdk_app_id={app}");
        for u in chunk {
            path.push_str(&format!("&user_id={prefix}{u}"));
        }
        let v = admin.json("GET", &path, "").await?;
        online += v["users"]
            .as_array()
            .map_or(0, |a| a.iter().filter(|u| u["status"] != "Offline").count());
    }
    Ok(online)
}

/// Polls `/metrics` until the gauges read 0 (at most 10 s); the last reading.
pub(super) async fn wait_gauges_zero(admin: &Admin) -> Result<BTreeMap<&'static str, i64>, Fail> {
    let deadline = Instant::now() + EVENT_WAIT;
    loop {
        let (status, body) = admin.call("GET", "/metrics", "").await?;
        if status != 200 {
            return Err(format!("/metrics: HTTP {status}"));
        }
        let g = gauges(&body);
        if g.values().all(|&v| v == 0) || Instant::now() >= deadline {
            return Ok(g);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_sum_the_series() {
        let m = "# HELP imgate_connections Open\nimgate_connections 3\n\
                 imgate_sessions{sdk_app_id=\"1\",platform=\"web\"} 2\n\
                 imgate_sessions{sdk_app_id=\"1\",platform=\"android\"} 1\n\
                 imgate_pending_sockets 0\nimgate_closes_total{code=\"1000\"} 7\n";
        let g = gauges(m);
        assert_eq!(g["connections"], 3);
        assert_eq!(g["sessions"], 3);
        assert_eq!(g["pending_sockets"], 0);
        assert_eq!(g["outbound_bytes"], 0);
    }
}
