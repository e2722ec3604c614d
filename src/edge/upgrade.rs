//! The HTTP upgrade request of a WebSocket (RFC 6455 §4.2), parsed by `httparse` and checked: the
//! path `/ws` (else 404), a GET with `Upgrade: websocket` and `Connection: upgrade`, HTTP/1.1, a
//! `Sec-WebSocket-Key` of 16 bytes in base64 (else 400), `Sec-WebSocket-Version: 13` (else 426). A
//! pure function of the request head, so the fuzzer drives it directly ([`parse`]); reading the head
//! off the socket is bounded by [`MAX_REQUEST_HEAD`] (else 431).

use base64::Engine as _;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Largest request head accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;

/// What a valid upgrade request says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upgrade {
    /// `Sec-WebSocket-Key`, for the `Sec-WebSocket-Accept` answer.
    pub key: String,
    pub origin: Option<String>,
    /// Every `X-Forwarded-For` value, in order.
    pub forwarded_for: Vec<String>,
}

/// An HTTP answer that refuses the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub why: &'static str,
}

impl Refusal {
    pub const fn new(status: u16, why: &'static str) -> Refusal {
        Refusal { status, why }
    }

    /// The whole HTTP response (the connection is closed after it).
    pub fn response(&self) -> Vec<u8> {
        let reason = match self.status {
            400 => "Bad Request",
            403 => "Forbidden",
            404 => "Not Found",
            426 => "Upgrade Required",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            _ => "Error",
        };
        let extra = if self.status == 426 {
            "Sec-WebSocket-Version: 13\r\n"
        } else {
            ""
        };
        let body = format!("{}\n", self.why);
        format!(
            "HTTP/1.1 {} {reason}\r\n{extra}Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.status,
            body.len()
        )
        .into_bytes()
    }
}

/// The `101 Switching Protocols` answer to an upgrade with this key.
pub fn accept(key: &str) -> Vec<u8> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Parses and checks a complete request head (up to and including the blank line).
pub fn parse(head: &[u8]) -> Result<Upgrade, Refusal> {
    const BAD: Refusal = Refusal::new(400, "bad request");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Err(BAD);
    }
    let path = req.path.unwrap_or("");
    if path.split('?').next() != Some("/ws") {
        return Err(Refusal::new(
            404,
            "not found: the WebSocket endpoint is /ws",
        ));
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &str, token: &str| {
        header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let expected = Refusal::new(
        400,
        "a WebSocket upgrade request (HTTP/1.1 GET) is expected",
    );
    if req.method != Some("GET")
        || req.version != Some(1)
        || !has_token("upgrade", "websocket")
        || !has_token("connection", "upgrade")
    {
        return Err(expected);
    }
    let key = header("sec-websocket-key").map(str::trim).unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD.decode(key);
    if !decoded.is_ok_and(|k| k.len() == 16) {
        return Err(Refusal::new(
            400,
            "Sec-WebSocket-Key must be 16 bytes in base64",
        ));
    }
    if header("sec-websocket-version").map(str::trim) != Some("13") {
        return Err(Refusal::new(426, "Sec-WebSocket-Version 13 is expected"));
    }
    let forwarded_for = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("x-forwarded-for"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .map(str::to_owned)
        .collect();
    Ok(Upgrade {
        key: key.to_owned(),
        origin: header("origin").map(str::to_owned),
        forwarded_for,
    })
}

/// Why no request head could be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// The connection closed or failed first: nothing to answer.
    Gone,
    /// The head is larger than [`MAX_REQUEST_HEAD`]: answer this.
    TooLarge(Refusal),
}

/// Reads a request head; returns it and the bytes read past it (the client's first frames).
pub async fn read_head<S: AsyncRead + Unpin>(io: &mut S) -> Result<(Vec<u8>, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() >= MAX_REQUEST_HEAD {
            return Err(ReadError::TooLarge(Refusal::new(
                431,
                "request head too large",
            )));
        }
        let mut chunk = [0u8; 1024];
        let n = io.read(&mut chunk).await.map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        // Look for the blank line only where this chunk can have completed it.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(pos) = buf[from..].windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(from + pos + 4);
            return Ok((buf, rest));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn req(line: &str, headers: &[&str]) -> Vec<u8> {
        let mut s = format!("{line}\r\nHost: x\r\n");
        for h in headers {
            s.push_str(h);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        s.into_bytes()
    }

    fn good() -> Vec<&'static str> {
        vec![
            "Upgrade: websocket",
            "Connection: keep-alive, Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    }

    #[test]
    fn a_valid_upgrade_and_its_headers() {
        let mut h = good();
        h.extend([
            "Origin: https://app.example.com",
            "X-Forwarded-For: 1.1.1.1",
            "x-forwarded-for: 2.2.2.2",
        ]);
        let u = parse(&req("GET /ws?x=1 HTTP/1.1", &h)).unwrap();
        assert_eq!(u.key, KEY);
        assert_eq!(u.origin.as_deref(), Some("https://app.example.com"));
        assert_eq!(u.forwarded_for, ["1.1.1.1", "2.2.2.2"]);
        let a = String::from_utf8(accept(KEY)).unwrap();
        assert!(
            a.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "{a}"
        );
    }

    #[test]
    fn every_refusal_has_its_status() {
        let status = |line: &str, h: &[&str]| parse(&req(line, h)).unwrap_err().status;
        assert_eq!(status("GET /other HTTP/1.1", &good()), 404);
        assert_eq!(status("POST /ws HTTP/1.1", &good()), 400);
        assert_eq!(status("GET /ws HTTP/1.0", &good()), 400, "HTTP/1.0");
        let without = |name: &str| {
            good()
                .into_iter()
                .filter(|h| !h.starts_with(name))
                .collect::<Vec<_>>()
        };
        assert_eq!(status("GET /ws HTTP/1.1", &without("Upgrade")), 400);
        assert_eq!(status("GET /ws HTTP/1.1", &without("Connection")), 400);
        assert_eq!(
            status("GET /ws HTTP/1.1", &without("Sec-WebSocket-Key")),
            400
        );
        assert_eq!(
            status("GET /ws HTTP/1.1", &without("Sec-WebSocket-Version")),
            426
        );
        for bad_key in [
            "Sec-WebSocket-Key: c2hvcnQ=",
            "Sec-WebSocket-Key: not base64!!",
            "Sec-WebSocket-Key: ",
        ] {
            let mut h = without("Sec-WebSocket-Key");
            h.push(bad_key);
            assert_eq!(status("GET /ws HTTP/1.1", &h), 400, "{bad_key}");
        }
        assert_eq!(parse(b"garbage\r\n\r\n").unwrap_err().status, 400);
        assert_eq!(
            parse(b"GET /ws HTTP/1.1\r\n").unwrap_err().status,
            400,
            "incomplete"
        );
        let r = String::from_utf8(Refusal::new(426, "v").response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\n"));
    }

    #[tokio::test]
    async fn heads_are_read_with_what_follows_and_bounded() {
        let mut r = &b"GET /ws HTTP/1.1\r\nA: b\r\n\r\n\x81\x05hello"[..];
        let (head, rest) = read_head(&mut r).await.unwrap();
        assert!(head.ends_with(b"\r\n\r\n"));
        assert_eq!(rest, b"\x81\x05hello");
        let big = vec![b'a'; MAX_REQUEST_HEAD + 10];
        let mut r = &big[..];
        assert!(matches!(
            read_head(&mut r).await,
            Err(ReadError::TooLarge(_))
        ));
        let mut r = &b"GET / HTTP/1.1\r\n"[..];
        assert_eq!(read_head(&mut r).await, Err(ReadError::Gone));
    }
}
