//! One HTTP/1.1 request on its own connection, through hyper's client connection: the admin
//! listener's client for the soak, the chaos run (`imgate-chaos`) and the integration tests.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// `method path` on `base` (`http://host:port` or `host:port`), with `Authorization: Bearer token`
/// when given, and `body` with `Content-Type: application/json` on every method but GET and HEAD. The status and the body (lossy
/// UTF-8), or what failed; the whole exchange is bounded by `within`.
pub async fn request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
    within: Duration,
) -> Result<(u16, String), String> {
    let host = base.trim_start_matches("http://").trim_end_matches('/');
    let exchange = async {
        let stream = TcpStream::connect(host)
            .await
            .map_err(|e| format!("connect {host}: {:?}", e.kind()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        // Drives the connection; it ends with the exchange (or when `sender` is dropped).
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        if let Some(t) = token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if method != "GET" && method != "HEAD" {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| format!("request {method} {path}: {e}"))?;
        let answer = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = answer.status().as_u16();
        let bytes = answer
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: body: {e}"))?
            .to_bytes();
        drop(sender);
        driver.abort();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(within, exchange)
        .await
        .map_err(|_| format!("{method} {path}: no answer within {within:?}"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that reads one request head and answers `answer`; the request it read.
    async fn one_shot(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_chunked_answer_and_the_headers_sent() {
        let (addr, server) = one_shot(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await;
        let (status, body) = request(
            &format!("http://{addr}"),
            "GET",
            "/v1/online?user_id=a",
            Some("tok"),
            "",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((status, body.as_str()), (200, "hello world"));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(
            head.starts_with("get /v1/online?user_id=a http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains("authorization: bearer tok\r\n"), "{head}");
        assert!(!head.contains("content-type"), "{head}");
    }

    #[tokio::test]
    async fn a_body_with_its_length_and_a_server_that_never_answers() {
        let (addr, server) =
            one_shot("HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}").await;
        let (status, body) = request(
            &addr,
            "POST",
            "/v1/kick",
            None,
            "{\"a\":1}",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!((status, body.as_str()), (404, "{}"));
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.contains("content-length: 7\r\n"), "{head}");
        assert!(
            head.contains("content-type: application/json\r\n"),
            "{head}"
        );

        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let err = request(&addr, "GET", "/", None, "", Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
        drop(silent);
    }
}
