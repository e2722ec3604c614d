//! The client's address behind a proxy (contract §14).
//!
//! With `proxy_protocol = true` every connection starts with a PROXY header, v1 (text) or v2
//! (binary), as HAProxy's specification defines; its source address is the client. The header is
//! parsed by the `ppp` crate; this module only reads exactly the header's bytes off the socket (so
//! what follows, a TLS ClientHello or the HTTP upgrade, is left in place) and bounds it: a v1 line is
//! at most 107 bytes, a v2 header's announced length at most [`MAX_V2_BODY`]. A LOCAL command (a
//! load balancer's health check) or an UNKNOWN/unspecified address leaves the TCP peer as the client.
//!
//! Otherwise, when the TCP peer is one of `trusted_proxies`, the client is the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy; an entry that is not an address, or no
//! entry at all, leaves the TCP peer. An untrusted peer's `X-Forwarded-For` is ignored.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header: `PROXY TCP6 <39> <39> <5> <5>\r\n`.
const MAX_V1: usize = 107;
/// The v2 fixed part: 12-byte signature, version/command, family/protocol, 2-byte length.
const V2_FIXED: usize = 16;
/// The largest v2 address-and-TLV block accepted (the format allows 65,535; real proxies send a few
/// hundred bytes at most).
pub const MAX_V2_BODY: usize = 4096;
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// Why a connection's PROXY header was refused (the connection is closed without an answer).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyError {
    #[error("not a PROXY header")]
    NotProxy,
    #[error("invalid PROXY header: {0}")]
    Invalid(String),
    #[error("PROXY v2 header announces {0} bytes (at most {MAX_V2_BODY})")]
    TooLong(usize),
    #[error("connection closed inside the PROXY header")]
    Closed,
}

/// The source address a parsed header names, `None` for LOCAL / UNKNOWN / unspecified / unix.
pub fn source(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    use ppp::{v1, v2, HeaderResult};
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            v1::Addresses::Tcp4(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Tcp6(a) => Some(SocketAddr::new(a.source_address.into(), a.source_port)),
            v1::Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (v2::Command::Local, _) => None,
            (_, v2::Addresses::IPv4(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            (_, v2::Addresses::IPv6(a)) => {
                Some(SocketAddr::new(a.source_address.into(), a.source_port))
            }
            _ => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyError::Invalid(format!("{e:?}"))),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Invalid(format!("{e:?}"))),
    }
}

/// Reads exactly one PROXY header off `io` and returns its bytes (the caller bounds the time).
pub async fn read_header<R: AsyncRead + Unpin>(io: &mut R) -> Result<Vec<u8>, ProxyError> {
    let closed = |_| ProxyError::Closed;
    let mut buf = vec![0u8; 6];
    io.read_exact(&mut buf).await.map_err(closed)?;
    if buf == b"PROXY " {
        // v1: one line, read a byte at a time so nothing after it is consumed.
        let mut b = [0u8; 1];
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= MAX_V1 {
                return Err(ProxyError::Invalid("v1 line longer than 107 bytes".into()));
            }
            io.read_exact(&mut b).await.map_err(closed)?;
            buf.push(b[0]);
        }
        return Ok(buf);
    }
    if buf[..] != V2_SIGNATURE[..6] {
        return Err(ProxyError::NotProxy);
    }
    buf.resize(V2_FIXED, 0);
    io.read_exact(&mut buf[6..]).await.map_err(closed)?;
    if buf[..12] != V2_SIGNATURE[..] {
        return Err(ProxyError::NotProxy);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_V2_BODY {
        return Err(ProxyError::TooLong(len));
    }
    buf.resize(V2_FIXED + len, 0);
    io.read_exact(&mut buf[V2_FIXED..]).await.map_err(closed)?;
    Ok(buf)
}

/// Whether an address is one of the trusted proxies.
pub fn is_trusted(trusted: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    trusted.iter().any(|n| n.contains(&ip))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The client address of an upgrade from `peer` with these `X-Forwarded-For` header values (in
/// the order they came).
pub fn client_address<'a>(
    trusted: &[IpNet],
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a str>,
) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut hops: Vec<&str> = Vec::new();
    for value in forwarded_for {
        hops.extend(value.split(','));
    }
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop.trim()) else {
            return peer;
        };
        if !is_trusted(trusted, ip) {
            return canonical(ip);
        }
    }
    peer
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn parse_hop(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_peers() {
        let t = nets(&["127.0.0.1/32", "10.0.0.0/8"]);
        let lb: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        let c = |peer, v: &[&str]| client_address(&t, peer, v.iter().copied()).to_string();
        assert_eq!(
            c(stranger, &["1.1.1.1"]),
            "203.0.113.9",
            "untrusted peer: ignored"
        );
        assert_eq!(c(lb, &[]), "10.1.2.3", "no header: the peer");
        assert_eq!(c(lb, &["1.1.1.1"]), "1.1.1.1");
        assert_eq!(
            c(lb, &["6.6.6.6, 1.1.1.1, 10.0.0.7"]),
            "1.1.1.1",
            "right-most untrusted"
        );
        assert_eq!(
            c(lb, &["6.6.6.6", "1.1.1.1,10.0.0.7"]),
            "1.1.1.1",
            "several headers"
        );
        assert_eq!(
            c(lb, &["10.0.0.8, 10.0.0.7"]),
            "10.1.2.3",
            "all trusted: the peer"
        );
        assert_eq!(
            c(lb, &["6.6.6.6, garbage"]),
            "10.1.2.3",
            "a bad entry: the peer"
        );
        assert_eq!(c(lb, &["[2001:db8::1]:443"]), "2001:db8::1");
        assert_eq!(c(lb, &["1.1.1.1:8080"]), "1.1.1.1");
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(
            c(mapped, &["1.1.1.1"]),
            "1.1.1.1",
            "a mapped peer is its IPv4"
        );
    }

    #[tokio::test]
    async fn headers_are_read_exactly_and_bounded() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /ws";
        let mut r = &v1[..];
        let h = read_header(&mut r).await.unwrap();
        assert_eq!(r, b"GET /ws", "what follows stays unread");
        assert_eq!(
            source(&h).unwrap(),
            Some("192.0.2.7:56324".parse().unwrap())
        );
        let mut r = &b"PROXY UNKNOWN\r\n"[..];
        assert_eq!(source(&read_header(&mut r).await.unwrap()).unwrap(), None);
        let mut r = &b"GET /ws HTTP/1.1\r\n"[..];
        assert_eq!(read_header(&mut r).await, Err(ProxyError::NotProxy));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        let mut r = long.as_bytes();
        assert!(matches!(
            read_header(&mut r).await,
            Err(ProxyError::Invalid(_))
        ));
        let mut r = &b"PROXY TCP4 1.2.3.4"[..];
        assert_eq!(read_header(&mut r).await, Err(ProxyError::Closed));
        // v2: PROXY, TCP over IPv4, 12 address bytes, then a TLV
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11, 0x00, 15]);
        v2.extend([203, 0, 113, 5, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        v2.extend([0x04, 0x00, 0x00]); // a NOOP TLV
        v2.extend(b"\x16\x03\x01");
        let mut r = &v2[..];
        let h = read_header(&mut r).await.unwrap();
        assert_eq!(r, b"\x16\x03\x01");
        assert_eq!(
            source(&h).unwrap(),
            Some("203.0.113.5:8080".parse().unwrap())
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0x00, 0x00]);
        assert_eq!(
            source(&read_header(&mut &local[..]).await.unwrap()).unwrap(),
            None
        );
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend([0x21, 0x11, 0xff, 0xff]);
        assert_eq!(
            read_header(&mut &huge[..]).await,
            Err(ProxyError::TooLong(65535))
        );
        let mut bad = V2_SIGNATURE.to_vec();
        bad.extend([0x99, 0x11, 0x00, 0x00]);
        let h = read_header(&mut &bad[..]).await.unwrap();
        assert!(source(&h).is_err(), "version 9 is refused by the parser");
    }
}
