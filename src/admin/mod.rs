//! The admin HTTP API (contract §10) on its own listener, built with axum.
//!
//! `/v1/*` needs `Authorization: Bearer <admin_token>` (compared in constant time): a missing or
//! wrong token is 401, and a gateway configured without a token answers 403. `/metrics`, `/healthz`
//! and `/readyz` need no token. Bodies and errors are JSON; a bad body or parameter is 400 and an
//! unknown path 404, each with `{"error":"..."}`.

mod console;
mod error;
pub mod listener;
mod tencent;

pub use error::{ApiError, ApiResult};

use crate::clock;
use crate::gateway::Gateway;
use crate::outbox::Delivery;
use crate::presence::KickFilter;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use error::{check_app, check_user, parse_body, unavailable};
use imgate_proto::valid_instance_id;
use imgate_proto::Platform;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Users per `GET /v1/online` at most.
pub const MAX_ONLINE_USERS: usize = 500;

/// The admin router.
pub fn router(gw: Arc<Gateway>) -> Router {
    let v1 = Router::new()
        .route("/v1/kick", post(kick))
        .route("/v1/online", get(online))
        .route("/v1/push", post(push))
        .route("/v1/reload", post(reload))
        .route("/v1/dev/usersig", post(console::mint))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&gw), auth));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/console", get(console::page))
        .route("/console/config", get(console::config))
        .route("/console/sdk/{name}", get(console::sdk_file))
        .route("/console/{name}", get(console::console_file))
        .route("/v4/{*path}", axum::routing::any(tencent::handle))
        .merge(v1)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::map_response(json_errors))
        .with_state(gw)
}

/// Every error answer is JSON (contract §16): those axum makes itself (405 for a known path with
/// another method, 413 for a body over the limit, 400 for a bad extractor) get `{"error": ...}`.
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let why = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase();
    let mut out = ApiError::new(status, why).into_response();
    for (k, v) in resp.headers() {
        if k == header::ALLOW {
            out.headers_mut().insert(k, v.clone());
        }
    }
    out
}

async fn auth(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let cfg = gw.config();
    let Some(token) = cfg.admin_token.as_deref() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "the admin API is disabled: no admin_token is configured",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong Authorization: Bearer token",
        )
        .into_response()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KickBody {
    sdk_app_id: u64,
    user_id: String,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    instance_id: Option<String>,
}

async fn kick(State(gw): State<Arc<Gateway>>, body: Bytes) -> ApiResult {
    let b: KickBody = parse_body(&body)?;
    check_app(&gw, b.sdk_app_id)?;
    check_user("user_id", &b.user_id)?;
    let platform = match b.platform.as_deref() {
        None => None,
        Some(p) => Some(
            Platform::parse(p).ok_or_else(|| ApiError::bad(format!("{p:?} is not a platform")))?,
        ),
    };
    if let Some(i) = b.instance_id.as_deref() {
        if !valid_instance_id(i) {
            return Err(ApiError::bad(
                "instance_id must be 1 to 64 printable ASCII characters without space",
            ));
        }
    }
    let kicked = gw
        .presence
        .kick(
            b.sdk_app_id,
            &b.user_id,
            KickFilter {
                platform,
                instance_id: b.instance_id.as_deref(),
            },
        )
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "kicked": kicked })))
}

async fn online(State(gw): State<Arc<Gateway>>, RawQuery(query): RawQuery) -> ApiResult {
    let query = query.unwrap_or_default();
    let mut app = None;
    let mut users = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "sdk_app_id" => {
                app = Some(
                    v.parse::<u64>()
                        .map_err(|_| ApiError::bad("sdk_app_id must be an unsigned integer"))?,
                )
            }
            "user_id" => {
                check_user("user_id", &v)?;
                users.push(v.into_owned());
            }
            other => return Err(ApiError::bad(format!("unknown parameter {other:?}"))),
        }
    }
    let app = app.ok_or_else(|| ApiError::bad("sdk_app_id is required"))?;
    check_app(&gw, app)?;
    if users.is_empty() || users.len() > MAX_ONLINE_USERS {
        return Err(ApiError::bad(format!(
            "give 1 to {MAX_ONLINE_USERS} user_id parameters"
        )));
    }
    let mut out = Vec::with_capacity(users.len());
    for user in users {
        let instances = gw
            .presence
            .instances(app, &user)
            .await
            .map_err(unavailable)?;
        let status = if instances.is_empty() {
            "Offline"
        } else {
            "Online"
        };
        let list: Vec<Value> = instances
            .iter()
            .map(|i| {
                json!({
                    "platform": i.platform.as_str(),
                    "instance_id": i.instance_id,
                    "login_at_ms": i.login_at_ms,
                    "expire_at": i.expire_at,
                })
            })
            .collect();
        out.push(json!({ "user_id": user, "status": status, "instances": list }));
    }
    Ok(Json(json!({ "users": out })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    sdk_app_id: u64,
    to: String,
    payload: String,
}

async fn push(State(gw): State<Arc<Gateway>>, body: Bytes) -> ApiResult {
    let b: PushBody = parse_body(&body)?;
    check_app(&gw, b.sdk_app_id)?;
    check_user("to", &b.to)?;
    let max = gw.config().max_payload_bytes;
    if b.payload.len() > max {
        return Err(ApiError::bad(format!(
            "payload exceeds max_payload_bytes ({max})"
        )));
    }
    let delivery = Arc::new(Delivery {
        from: "@admin".into(),
        from_platform: None,
        payload: b.payload,
    });
    let delivered = gw
        .presence
        .deliver(b.sdk_app_id, &b.to, None, delivery)
        .await
        .map_err(unavailable)?;
    Ok(Json(json!({ "delivered": delivered })))
}

/// `POST /v1/reload`: re-reads the config file (contract §14); 400 with the error when it is bad.
async fn reload(State(gw): State<Arc<Gateway>>) -> ApiResult {
    let done = tokio::task::spawn_blocking(move || crate::reload::reload(&gw))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(Json(json!({
        "applied": true,
        "not_applied": done.not_applied,
        "removed_apps": done.removed_apps,
    })))
}

async fn metrics(State(gw): State<Arc<Gateway>>) -> Response {
    gw.metrics
        .outbound_bytes
        .set(gw.conns.outbound_bytes() as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.metrics.render(clock::now_ms()),
    )
        .into_response()
}

async fn readyz(State(gw): State<Arc<Gateway>>) -> Response {
    if gw.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        (StatusCode::OK, "ready\n").into_response()
    }
}
