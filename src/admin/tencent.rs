//! The Tencent REST facade (contract §15): Tencent Cloud IM's server API URLs and JSON shapes on the
//! admin listener, so that backend code written against Tencent works unchanged.
//!
//! `POST /v4/{service}/{command}?sdkappid=N&identifier=ID&usersig=SIG&random=R&contenttype=json`,
//! authenticated the Tencent way (the bearer token plays no part): `ID` must be the app's
//! `admin_identifier` and `SIG` a valid UserSig of that app for `ID`. Every answer is HTTP 200 with
//! `{"ActionStatus":"OK"|"FAIL","ErrorInfo":"...","ErrorCode":N}` plus the command's fields.
//!
//! A request costs what its sender proved: the method and query string are checked first, then the
//! UserSig (no throttle: it counts logins, and an admin backend is not a login), then the command,
//! and only then is the body read, at most [`MAX_BODY_BYTES`] of it (a larger declared
//! `Content-Length` is refused without reading), and parsed with the account lists bounded while
//! they are parsed.
//!
//! Where the contract is silent (all documented in README "Migrating from Tencent Cloud IM"):
//! - a method other than POST, a missing, repeated or malformed query parameter (`random` must be
//!   a 32-bit unsigned integer, `contenttype` must be `json`), a body that is not the command's
//!   JSON, a body over the limit: 70402. An empty `usersig` is the §2 code 70002. The request's
//!   `Content-Type` header is not looked at (Tencent's `contenttype=json` says it);
//! - an unknown command (any other path under `/v4/`): 60009, Tencent's "request resource error,
//!   check the request URL";
//! - the presence store unavailable (cluster mode, Redis down): 70169, as on the WebSocket (§6);
//! - the admin kick revocation (70052) is not checked for the admin identifier: the facade
//!   verifies signatures only and asks the presence store nothing before it is authenticated (an
//!   admin UserSig is retired by rotating the key through `previous_keys`);
//! - `To_Account` entries that break §1 are listed in `ErrorList` with 7003 and not in
//!   `QueryResult`; `To_Account` must hold 1 to 500 strings and `IsNeedDetail` be 0 or 1;
//! - `Accounts` of `multiaccount_import` must hold 1 to 100 strings (Tencent's limit).

use crate::clock;
use crate::gateway::Gateway;
use crate::presence::{InstanceView, KickFilter, Unavailable};
use crate::usersig;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, StreamExt, TryStreamExt};
use imgate_proto::{valid_user_id, Code};
use serde::de::{self, DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// The largest request body read, in bytes: 500 `To_Account` ids of 32 bytes, escaped and
/// pretty-printed, fit many times over.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// `To_Account` entries per `query_online_status` at most.
pub const MAX_QUERY_ACCOUNTS: usize = 500;
/// `Accounts` entries per `multiaccount_import` at most (Tencent's limit).
pub const MAX_IMPORT_ACCOUNTS: usize = 100;
/// Presence look-ups of one `query_online_status` in flight at once.
const QUERY_CONCURRENCY: usize = 16;

/// Tencent's "invalid parameters": a missing or malformed query parameter or body.
pub const INVALID_REQUEST: u32 = 70402;
/// Tencent's "the operator must be an app admin".
pub const NOT_ADMIN: u32 = 70403;
/// Tencent's "request resource error, check the request URL": a command imgate does not have.
pub const UNKNOWN_COMMAND: u32 = 60009;

/// The commands the facade answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Kick,
    QueryOnlineStatus,
    AccountImport,
    MultiaccountImport,
}

impl Command {
    /// The command of a path, `None` for anything else (also under `/v4/`).
    fn of_path(path: &str) -> Option<Command> {
        match path.strip_prefix("/v4/")? {
            "im_open_login_svc/kick" => Some(Command::Kick),
            "openim/query_online_status" => Some(Command::QueryOnlineStatus),
            "im_open_login_svc/account_import" => Some(Command::AccountImport),
            "im_open_login_svc/multiaccount_import" => Some(Command::MultiaccountImport),
            _ => None,
        }
    }
}

/// A `FAIL` answer.
#[derive(Debug)]
struct Fail {
    code: u32,
    info: String,
}

impl Fail {
    fn new(code: u32, info: impl Into<String>) -> Fail {
        Fail {
            code,
            info: info.into(),
        }
    }

    fn invalid(info: impl Into<String>) -> Fail {
        Fail::new(INVALID_REQUEST, info)
    }

    fn unavailable(e: Unavailable) -> Fail {
        Fail::new(Code::PresenceUnavailable.as_u32(), e.to_string())
    }
}

/// Tencent's envelope, in Tencent's field order, with the command's fields after it.
#[derive(Serialize)]
struct Envelope<T> {
    #[serde(rename = "ActionStatus")]
    action_status: &'static str,
    #[serde(rename = "ErrorInfo")]
    error_info: String,
    #[serde(rename = "ErrorCode")]
    error_code: u32,
    #[serde(flatten)]
    fields: T,
}

/// No fields beyond the envelope.
#[derive(Serialize)]
struct Nothing {}

fn answer<T: Serialize>(e: Envelope<T>) -> Response {
    (StatusCode::OK, Json(e)).into_response()
}

fn ok<T: Serialize>(fields: T) -> Response {
    answer(Envelope {
        action_status: "OK",
        error_info: String::new(),
        error_code: 0,
        fields,
    })
}

fn fail(f: Fail) -> Response {
    tracing::debug!(code = f.code, info = %f.info, "tencent facade: FAIL");
    answer(Envelope {
        action_status: "FAIL",
        error_info: f.info,
        error_code: f.code,
        fields: Nothing {},
    })
}

/// Every `/v4/*` request.
pub async fn handle(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    match run(&gw, req).await {
        Ok(r) => r,
        Err(f) => fail(f),
    }
}

async fn run(gw: &Gateway, req: Request) -> Result<Response, Fail> {
    if req.method() != Method::POST {
        return Err(Fail::invalid(format!(
            "the REST API is called with POST, not {}",
            req.method()
        )));
    }
    let q = Query::parse(req.uri().query().unwrap_or(""))?;
    let app = gw.apps.get(q.sdkappid).ok_or_else(|| {
        Fail::new(
            Code::AppNotConfigured.as_u32(),
            format!("sdkappid {} is not configured", q.sdkappid),
        )
    })?;
    if q.identifier != app.admin_identifier {
        return Err(Fail::new(
            NOT_ADMIN,
            "identifier is not the app admin: the REST API needs the app's admin_identifier",
        ));
    }
    usersig::verify_any(
        &q.usersig,
        Some(&app.keys),
        q.sdkappid,
        &q.identifier,
        clock::now_ms(),
    )
    .map_err(|e| Fail::new(e.code().as_u32(), e.to_string()))?;
    let command = Command::of_path(req.uri().path()).ok_or_else(|| {
        Fail::new(
            UNKNOWN_COMMAND,
            format!(
                "imgate does not implement {}: it answers im_open_login_svc/kick, \
                 openim/query_online_status, im_open_login_svc/account_import and \
                 im_open_login_svc/multiaccount_import",
                req.uri().path().trim_start_matches('/')
            ),
        )
    })?;
    let body = read_body(req).await?;
    let app = q.sdkappid;
    match command {
        Command::Kick => kick(gw, app, &body).await,
        Command::QueryOnlineStatus => query_online_status(gw, app, &body).await,
        Command::AccountImport => account_import(&body),
        Command::MultiaccountImport => multiaccount_import(&body),
    }
}

/// The authentication of a request, from its query string.
#[derive(Debug)]
struct Query {
    sdkappid: u64,
    identifier: String,
    usersig: String,
}

impl Query {
    fn parse(query: &str) -> Result<Query, Fail> {
        let (mut sdkappid, mut identifier, mut usersig, mut random, mut contenttype) =
            (None, None, None, None, None);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "sdkappid" => &mut sdkappid,
                "identifier" => &mut identifier,
                "usersig" => &mut usersig,
                "random" => &mut random,
                "contenttype" => &mut contenttype,
                // Tencent's clients add nothing else; anything else is not ours to refuse
                _ => continue,
            };
            if slot.replace(v.into_owned()).is_some() {
                return Err(Fail::invalid(format!(
                    "query parameter {k} is given more than once"
                )));
            }
        }
        fn required(name: &str, v: Option<String>) -> Result<String, Fail> {
            v.ok_or_else(|| Fail::invalid(format!("query parameter {name} is missing")))
        }
        let sdkappid = required("sdkappid", sdkappid)?;
        let identifier = required("identifier", identifier)?;
        let usersig = required("usersig", usersig)?;
        let random = required("random", random)?;
        let contenttype = required("contenttype", contenttype)?;
        let sdkappid = parse_uint::<u64>(&sdkappid)
            .ok_or_else(|| Fail::invalid("query parameter sdkappid must be an unsigned integer"))?;
        if parse_uint::<u32>(&random).is_none() {
            return Err(Fail::invalid(
                "query parameter random must be a 32-bit unsigned integer (0 to 4294967295)",
            ));
        }
        if contenttype != "json" {
            return Err(Fail::invalid("query parameter contenttype must be json"));
        }
        Ok(Query {
            sdkappid,
            identifier,
            usersig,
        })
    }
}

/// Decimal digits only (no sign, no spaces), in range.
fn parse_uint<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The body, at most [`MAX_BODY_BYTES`]; a larger declared length is refused unread.
async fn read_body(req: Request) -> Result<axum::body::Bytes, Fail> {
    let too_large = || Fail::invalid(format!("the request body exceeds {MAX_BODY_BYTES} bytes"));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let body: Body = req.into_body();
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Fail> {
    serde_json::from_slice(body).map_err(|e| Fail::invalid(format!("invalid JSON body: {e}")))
}

/// A user id of a body: 7003 when it breaks contract §1.
fn check_user(field: &str, user: &str) -> Result<(), Fail> {
    if valid_user_id(user) {
        Ok(())
    } else {
        Err(Fail::new(
            Code::InvalidUserId.as_u32(),
            format!("{field} must be 1 to 32 characters of A-Z a-z 0-9 _ -"),
        ))
    }
}

/// A JSON array of 1 to `N` strings; the parse stops at the entry after the `N`th.
struct Accounts<const N: usize>(Vec<String>);

impl<'de, const N: usize> Deserialize<'de> for Accounts<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: usize>(PhantomData<[(); N]>);
        impl<'de, const N: usize> Visitor<'de> for V<N> {
            type Value = Accounts<N>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array of 1 to {N} strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Accounts<N>, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    if v.len() == N {
                        return Err(de::Error::custom(format!("more than {N} accounts")));
                    }
                    v.push(s);
                }
                if v.is_empty() {
                    return Err(de::Error::custom("no accounts"));
                }
                Ok(Accounts(v))
            }
        }
        d.deserialize_seq(V::<N>(PhantomData))
    }
}

// ---------------------------------------------------------------------------------------------
// im_open_login_svc/kick

#[derive(Deserialize)]
struct KickBody {
    #[serde(rename = "UserID")]
    user_id: String,
}

/// As `POST /v1/kick` without a device: every device kicked (4502), the UserSigs minted up to now
/// invalidated (70052).
async fn kick(gw: &Gateway, app: u64, body: &[u8]) -> Result<Response, Fail> {
    let b: KickBody = parse(body)?;
    check_user("UserID", &b.user_id)?;
    gw.presence
        .kick(
            app,
            &b.user_id,
            KickFilter {
                platform: None,
                instance_id: None,
            },
        )
        .await
        .map_err(Fail::unavailable)?;
    Ok(ok(Nothing {}))
}

// ---------------------------------------------------------------------------------------------
// openim/query_online_status

#[derive(Deserialize)]
struct QueryBody {
    #[serde(rename = "To_Account")]
    to_account: Accounts<MAX_QUERY_ACCOUNTS>,
    #[serde(rename = "IsNeedDetail", default)]
    is_need_detail: Option<u64>,
}

#[derive(Serialize)]
struct QueryFields {
    #[serde(rename = "QueryResult")]
    query_result: Vec<QueryEntry>,
    #[serde(rename = "ErrorList")]
    error_list: Vec<ErrorEntry>,
}

#[derive(Serialize)]
struct QueryEntry {
    #[serde(rename = "To_Account")]
    to_account: String,
    #[serde(rename = "Status")]
    status: &'static str,
    #[serde(rename = "Detail", skip_serializing_if = "Option::is_none")]
    detail: Option<Vec<DetailEntry>>,
}

#[derive(Serialize)]
struct DetailEntry {
    #[serde(rename = "Platform")]
    platform: &'static str,
    #[serde(rename = "Status")]
    status: &'static str,
}

#[derive(Serialize)]
struct ErrorEntry {
    #[serde(rename = "To_Account")]
    to_account: String,
    #[serde(rename = "ErrorCode")]
    error_code: u32,
}

async fn query_online_status(gw: &Gateway, app: u64, body: &[u8]) -> Result<Response, Fail> {
    let b: QueryBody = parse(body)?;
    let detail = match b.is_need_detail {
        None | Some(0) => false,
        Some(1) => true,
        Some(_) => return Err(Fail::invalid("IsNeedDetail must be 0 or 1")),
    };
    let (valid, invalid): (Vec<String>, Vec<String>) =
        b.to_account.0.into_iter().partition(|u| valid_user_id(u));
    let found: Vec<(String, Vec<InstanceView>)> = stream::iter(valid)
        .map(|user| async move {
            let r = gw.presence.instances(app, &user).await;
            r.map(|instances| (user, instances))
        })
        .buffered(QUERY_CONCURRENCY)
        .try_collect()
        .await
        .map_err(Fail::unavailable)?;
    let query_result = found
        .into_iter()
        .map(|(user, instances)| QueryEntry {
            to_account: user,
            status: if instances.is_empty() {
                "Offline"
            } else {
                "Online"
            },
            detail: (detail && !instances.is_empty()).then(|| {
                instances
                    .iter()
                    .map(|i| DetailEntry {
                        platform: i.platform.tencent_name(),
                        status: "Online",
                    })
                    .collect()
            }),
        })
        .collect();
    let error_list = invalid
        .into_iter()
        .map(|user| ErrorEntry {
            to_account: user,
            error_code: Code::InvalidUserId.as_u32(),
        })
        .collect();
    Ok(ok(QueryFields {
        query_result,
        error_list,
    }))
}

// ---------------------------------------------------------------------------------------------
// im_open_login_svc/account_import, im_open_login_svc/multiaccount_import

#[derive(Deserialize)]
struct AccountImportBody {
    #[serde(rename = "UserID")]
    user_id: String,
    // accepted and not kept: imgate keeps no profiles
    #[serde(rename = "Nick", default)]
    _nick: Option<String>,
    #[serde(rename = "FaceUrl", default)]
    _face_url: Option<String>,
}

/// Accounts register themselves at their first login: this only validates the id.
fn account_import(body: &[u8]) -> Result<Response, Fail> {
    let b: AccountImportBody = parse(body)?;
    check_user("UserID", &b.user_id)?;
    Ok(ok(Nothing {}))
}

#[derive(Deserialize)]
struct MultiaccountImportBody {
    #[serde(rename = "Accounts")]
    accounts: Accounts<MAX_IMPORT_ACCOUNTS>,
}

#[derive(Serialize)]
struct MultiaccountImportFields {
    #[serde(rename = "FailAccounts")]
    fail_accounts: Vec<String>,
}

fn multiaccount_import(body: &[u8]) -> Result<Response, Fail> {
    let b: MultiaccountImportBody = parse(body)?;
    let fail_accounts = b
        .accounts
        .0
        .into_iter()
        .filter(|u| !valid_user_id(u))
        .collect();
    Ok(ok(MultiaccountImportFields { fail_accounts }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_matched_exactly() {
        assert_eq!(
            Command::of_path("/v4/im_open_login_svc/kick"),
            Some(Command::Kick)
        );
        assert_eq!(
            Command::of_path("/v4/openim/query_online_status"),
            Some(Command::QueryOnlineStatus)
        );
        for p in [
            "/v4/im_open_login_svc/kick/",
            "/v4/im_open_login_svc/Kick",
            "/v4/openim/sendmsg",
            "/v4/openim",
            "/v3/im_open_login_svc/kick",
            "/v4//im_open_login_svc/kick",
        ] {
            assert_eq!(Command::of_path(p), None, "{p}");
        }
    }

    fn code(query: &str) -> Option<u32> {
        Query::parse(query).err().map(|f| f.code)
    }

    #[test]
    fn query_parameters_are_all_required_once_and_well_formed() {
        let good = "sdkappid=1400000000&identifier=administrator&usersig=x&random=99999999&contenttype=json";
        let q = Query::parse(good).unwrap();
        assert_eq!(
            (q.sdkappid, &*q.identifier, &*q.usersig),
            (1_400_000_000, "administrator", "x")
        );
        assert!(Query::parse(&format!("{good}&extra=1")).is_ok());
        assert!(Query::parse(&good.replace("99999999", "4294967295")).is_ok());
        assert!(Query::parse(&good.replace("99999999", "0")).is_ok());
        for name in ["sdkappid", "identifier", "usersig", "random", "contenttype"] {
            let without: Vec<&str> = good.split('&').filter(|kv| !kv.starts_with(name)).collect();
            assert_eq!(
                code(&without.join("&")),
                Some(INVALID_REQUEST),
                "without {name}"
            );
            assert_eq!(
                code(&format!("{good}&{name}=1")),
                Some(INVALID_REQUEST),
                "{name} twice"
            );
        }
        for (from, to) in [
            ("sdkappid=1400000000", "sdkappid=abc"),
            ("sdkappid=1400000000", "sdkappid=-1"),
            ("sdkappid=1400000000", "sdkappid=+1"),
            ("sdkappid=1400000000", "sdkappid="),
            ("sdkappid=1400000000", "sdkappid=99999999999999999999999"),
            ("random=99999999", "random=4294967296"),
            ("random=99999999", "random=x"),
            ("random=99999999", "random="),
            ("contenttype=json", "contenttype=xml"),
        ] {
            assert_eq!(code(&good.replace(from, to)), Some(INVALID_REQUEST), "{to}");
        }
        assert_eq!(code(""), Some(INVALID_REQUEST));
    }

    #[test]
    fn account_lists_are_bounded_while_parsed() {
        #[derive(Deserialize)]
        struct B {
            a: Accounts<3>,
        }
        let ok: B = serde_json::from_str(r#"{"a":["x","y","z"]}"#).unwrap();
        assert_eq!(ok.a.0, ["x", "y", "z"]);
        for bad in [
            r#"{"a":["x","y","z","w"]}"#,
            r#"{"a":[]}"#,
            r#"{"a":null}"#,
            r#"{"a":"x"}"#,
            r#"{"a":[1]}"#,
            r#"{}"#,
        ] {
            assert!(serde_json::from_str::<B>(bad).is_err(), "{bad}");
        }
        // the entry after the limit ends the parse: what follows is never looked at
        let e = serde_json::from_str::<B>(r#"{"a":["x","y","z","w",!!!"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("more than 3"), "{e}");
    }

    #[test]
    fn the_envelope_is_in_tencent_order() {
        let body = serde_json::to_string(&Envelope {
            action_status: "OK",
            error_info: String::new(),
            error_code: 0,
            fields: MultiaccountImportFields {
                fail_accounts: vec!["a b".into()],
            },
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"ActionStatus":"OK","ErrorInfo":"","ErrorCode":0,"FailAccounts":["a b"]}"#
        );
        let body = serde_json::to_string(&Envelope {
            action_status: "FAIL",
            error_info: "x".into(),
            error_code: 70402,
            fields: Nothing {},
        })
        .unwrap();
        assert_eq!(
            body,
            r#"{"ActionStatus":"FAIL","ErrorInfo":"x","ErrorCode":70402}"#
        );
    }
}
