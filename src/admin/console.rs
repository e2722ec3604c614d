//! The browser console (contract §13): `GET /console` on the admin listener, one page built on the
//! JavaScript SDK to try the gateway, and `POST /v1/dev/usersig`, which mints UserSigs for it.
//!
//! What it owns: serving the page and the SDK (embedded in the binary by `build.rs` from
//! `clients/console/` and `clients/js/src/`, so no files are needed at run time), the page's
//! prefill (`GET /console/config`), and the development minting endpoint. What it does not own: the
//! page's logic (`clients/console/console.js`) and the SDK (`clients/js/`).
//!
//! The page and its config need no token; the config carries the admin token only for the
//! development gateway (no config file), whose admin listener is on loopback by default. Minting
//! needs the admin token and is answered only by the development gateway or with
//! `dev_usersig = true`; otherwise it is 404 like any unknown path.

use super::error::{check_user, parse_body, ApiError};
use crate::gateway::Gateway;
use crate::usersig::{self, DEFAULT_EXPIRE_SECS};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/assets.rs"));
}

/// Served with every console file: the page runs no inline script and talks only to the gateway.
const CSP: &str =
    "default-src 'self'; connect-src 'self' ws: wss: http: https:; style-src 'self'; img-src 'self' data:";

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        _ => "text/plain; charset=utf-8",
    }
}

fn file(files: &[(&str, &'static [u8])], name: &str) -> Response {
    match files.iter().find(|(n, _)| *n == name) {
        Some((n, body)) => (
            [
                (header::CONTENT_TYPE, content_type(n)),
                (header::CONTENT_SECURITY_POLICY, CSP),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            *body,
        )
            .into_response(),
        None => ApiError::new(StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /console`.
pub async fn page() -> Response {
    file(assets::CONSOLE, "index.html")
}

/// `GET /console/{name}`: the page's own files.
pub async fn console_file(Path(name): Path<String>) -> Response {
    file(assets::CONSOLE, &name)
}

/// `GET /console/sdk/{name}`: the SDK modules.
pub async fn sdk_file(Path(name): Path<String>) -> Response {
    file(assets::SDK, &name)
}

/// `GET /console/config`: what the page is prefilled with.
pub async fn config(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let ws_url = gw.ws_endpoint().map(|e| e.url_for(host));
    let cfg = gw.config();
    let body = json!({
        "ws_url": ws_url,
        "sdk_app_id": cfg.apps.first().map(|a| a.sdk_app_id),
        "admin_token": if cfg.development { cfg.admin_token.as_deref() } else { None },
        "dev_usersig": cfg.dev_usersig,
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintBody {
    user_id: String,
    #[serde(default)]
    expire: Option<u64>,
    #[serde(default)]
    sdk_app_id: Option<u64>,
}

/// `POST /v1/dev/usersig` (behind the admin token): mints a UserSig with the app's current key.
pub async fn mint(
    State(gw): State<Arc<Gateway>>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let cfg = gw.config();
    if !cfg.dev_usersig {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not found"));
    }
    let b: MintBody = parse_body(&body)?;
    check_user("user_id", &b.user_id)?;
    let ids = gw.apps.ids();
    let id = match (b.sdk_app_id, ids.as_slice()) {
        (Some(a), _) => a,
        (None, [only]) => *only,
        (None, _) => {
            return Err(ApiError::bad(
                "sdk_app_id is required when several apps are configured",
            ))
        }
    };
    let app = gw.apps.get(id).ok_or_else(|| {
        ApiError::bad(format!(
            "sdk_app_id {} is not configured",
            b.sdk_app_id.unwrap_or(0)
        ))
    })?;
    let expire = b.expire.unwrap_or(DEFAULT_EXPIRE_SECS);
    if expire == 0 || expire > 10 * 365 * 86_400 {
        return Err(ApiError::bad("expire must be 1 to 315360000 seconds"));
    }
    let sig = usersig::generate(
        app.key(),
        app.sdk_app_id,
        &b.user_id,
        expire,
        crate::clock::now_secs(),
        None,
    );
    Ok(axum::Json(json!({ "user_sig": sig })))
}

#[cfg(test)]
mod tests {
    use crate::gateway::WsEndpoint;

    #[test]
    fn ws_url_follows_the_listener_or_the_browser_host() {
        let e = |a: &str, tls| WsEndpoint {
            addr: a.parse().unwrap(),
            tls,
        };
        assert_eq!(
            e("127.0.0.1:8080", false).url_for(Some("127.0.0.1:8081")),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(
            e("0.0.0.0:8080", true).url_for(Some("gw.example.com:8081")),
            "wss://gw.example.com:8080/ws"
        );
        assert_eq!(
            e("[::]:8080", false).url_for(Some("[::1]:8081")),
            "ws://[::1]:8080/ws"
        );
        assert_eq!(e("[::1]:8080", false).url_for(None), "ws://[::1]:8080/ws");
        assert_eq!(
            e("0.0.0.0:8080", false).url_for(None),
            "ws://0.0.0.0:8080/ws"
        );
    }
}
