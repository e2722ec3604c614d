//! `allowed_origins` (contract §14): which web pages may open sockets.
//!
//! A pattern is an exact origin, `scheme://host[:port]`, or `scheme://*.domain[:port]`, which matches
//! every subdomain of `domain` at any depth but not `domain` itself. Scheme and host compare without
//! case; a default port (80 for http, 443 for https) is the same as none, as browsers omit it. An
//! upgrade without an `Origin` header (a native app) is always accepted; one whose `Origin` matches
//! no pattern is answered 403. An empty list accepts every origin.

use std::fmt;

/// One `allowed_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Exact(String),
    /// `*.domain`: the domain, without the `*.`.
    SubdomainOf(String),
}

/// An origin split into its parts (lower case, default port removed).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

fn parse_origin(s: &str) -> Result<Origin, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("{s:?}: expected scheme://host[:port]"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("{s:?}: invalid scheme"));
    }
    if rest.is_empty()
        || rest.contains(['/', '?', '#', '@'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{s:?}: expected scheme://host[:port], nothing after the port"
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed [ in the host"))?;
        if !after.is_empty() && !after.starts_with(':') {
            return Err(format!("{s:?}: expected :port after the ]"));
        }
        (format!("[{h}]"), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("{s:?}: empty host"));
    }
    if !host.starts_with('[') && host.contains(':') {
        return Err(format!(
            "{s:?}: a ':' in the host (an IPv6 address goes in [ ])"
        ));
    }
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .map_err(|_| format!("{s:?}: invalid port"))?,
        ),
        None => None,
    };
    let port = port.filter(|&p| Some(p) != default_port(&scheme));
    Ok(Origin {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
    })
}

impl TryFrom<String> for OriginPattern {
    type Error = String;

    fn try_from(s: String) -> Result<OriginPattern, String> {
        let o = parse_origin(&s)?;
        let host = match o.host.strip_prefix("*.") {
            Some(domain) if !domain.is_empty() && !domain.contains('*') => {
                Host::SubdomainOf(domain.to_owned())
            }
            _ if o.host.contains('*') => {
                return Err(format!("{s:?}: a wildcard is only allowed as a leading *."))
            }
            _ => Host::Exact(o.host),
        };
        Ok(OriginPattern {
            scheme: o.scheme,
            host,
            port: o.port,
        })
    }
}

impl<'de> serde::Deserialize<'de> for OriginPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        OriginPattern::try_from(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = match &self.host {
            Host::Exact(h) => h.clone(),
            Host::SubdomainOf(d) => format!("*.{d}"),
        };
        write!(f, "{}://{host}", self.scheme)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl OriginPattern {
    /// Whether an `Origin` header value matches.
    pub fn matches(&self, origin: &str) -> bool {
        let Ok(o) = parse_origin(origin.trim()) else {
            return false; // "null" and other opaque origins match nothing
        };
        if o.scheme != self.scheme || o.port != self.port {
            return false;
        }
        match &self.host {
            Host::Exact(h) => o.host == *h,
            Host::SubdomainOf(d) => o
                .host
                .strip_suffix(d.as_str())
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        }
    }
}

/// Whether an upgrade with this `Origin` (or none) may proceed.
pub fn allowed(patterns: &[OriginPattern], origin: Option<&str>) -> bool {
    match origin {
        None => true,
        Some(_) if patterns.is_empty() => true,
        Some(o) => patterns.iter().any(|p| p.matches(o)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> OriginPattern {
        OriginPattern::try_from(s.to_owned()).unwrap()
    }

    #[test]
    fn exact_and_subdomain_patterns() {
        let exact = p("https://app.example.com");
        assert!(exact.matches("https://app.example.com"));
        assert!(exact.matches("HTTPS://App.Example.COM"));
        assert!(exact.matches("https://app.example.com:443"), "default port");
        assert!(!exact.matches("http://app.example.com"), "scheme");
        assert!(!exact.matches("https://app.example.com:8443"), "port");
        assert!(!exact.matches("https://evil.app.example.com"));
        assert!(!exact.matches("https://app.example.com.evil.org"));
        let sub = p("https://*.example.com");
        assert!(sub.matches("https://a.example.com"));
        assert!(sub.matches("https://a.b.example.com"));
        assert!(!sub.matches("https://example.com"), "not the bare domain");
        assert!(!sub.matches("https://badexample.com"));
        assert!(!sub.matches("https://.example.com"));
        let port = p("http://localhost:8080");
        assert!(port.matches("http://localhost:8080") && !port.matches("http://localhost"));
        let v6 = p("http://[::1]:3000");
        assert!(v6.matches("http://[::1]:3000"));
        for bad in [
            "null",
            "",
            "https://",
            "app.example.com",
            "https://a.example.com/path",
        ] {
            assert!(!exact.matches(bad) && !sub.matches(bad), "{bad:?}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in [
            "example.com",
            "https://",
            "https://a.*.com",
            "https://*",
            "https://app.example.com/",
            "https://app.example.com:99999",
            "https://a:1:443",
            "http://[::1]junk",
            "https://app.example.com\t",
            "://x",
        ] {
            assert!(OriginPattern::try_from(bad.to_owned()).is_err(), "{bad:?}");
        }
        assert_eq!(
            p("HTTPS://*.Example.com:443").to_string(),
            "https://*.example.com"
        );
    }

    #[test]
    fn no_origin_or_no_list_is_allowed() {
        let list = [p("https://app.example.com")];
        assert!(allowed(&list, None));
        assert!(allowed(&[], Some("https://anything.org")));
        assert!(allowed(&list, Some("https://app.example.com")));
        assert!(!allowed(&list, Some("https://other.org")));
    }
}
