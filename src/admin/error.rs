//! The error answers every admin route shares: a status and `{"error": "..."}`, and the checks of
//! request bodies and parameters that produce them.

use crate::gateway::Gateway;
use crate::presence::Unavailable;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use imgate_proto::valid_user_id;
use serde::Deserialize;
use serde_json::{json, Value};

pub type ApiResult = Result<Json<Value>, ApiError>;

/// An error answer: status and message, rendered as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> ApiError {
        ApiError(status, msg.into())
    }

    pub fn bad(msg: impl Into<String>) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

/// A JSON body.
pub fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// The shared presence store is unreachable: 503.
pub fn unavailable(e: Unavailable) -> ApiError {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

pub fn check_app(gw: &Gateway, app: u64) -> Result<(), ApiError> {
    if gw.apps.contains(app) {
        Ok(())
    } else {
        Err(ApiError::bad(format!("sdk_app_id {app} is not configured")))
    }
}

pub fn check_user(field: &str, user: &str) -> Result<(), ApiError> {
    if valid_user_id(user) {
        Ok(())
    } else {
        Err(ApiError::bad(format!(
            "{field} must be 1 to 32 characters of A-Z a-z 0-9 _ -"
        )))
    }
}
