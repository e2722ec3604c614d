//! The console's gateway side (contract §13): `GET /console/config` prefills the page, and
//! `POST /v1/dev/usersig` mints UserSigs on the development gateway or with `dev_usersig = true`.
//! The page itself is tested in a real browser by `clients/js` (scripts/test-js.sh).

mod common;
use common::*;
use serde_json::json;

#[tokio::test]
async fn the_development_gateway_prefills_the_console_and_mints_working_sigs() {
    let (gw, printed) = Gateway::start_dev();
    let token = printed
        .iter()
        .find_map(|l| l.strip_prefix("admin token: "))
        .expect("the development gateway prints its admin token")
        .to_owned();
    let (status, cfg) = http(&gw.admin_url, "GET", "/console/config", None, None).await;
    assert_eq!(status, 200, "{cfg}");
    assert_eq!(cfg["ws_url"], gw.ws_url.as_str());
    assert_eq!(cfg["sdk_app_id"], APP);
    assert_eq!(cfg["admin_token"], token.as_str());
    assert_eq!(cfg["dev_usersig"], true);

    let body = json!({"user_id": "alice", "expire": 600}).to_string();
    let (status, _) = http(
        &gw.admin_url,
        "POST",
        "/v1/dev/usersig",
        None,
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 401, "minting needs the admin token");
    let (status, v) = http(
        &gw.admin_url,
        "POST",
        "/v1/dev/usersig",
        Some(&token),
        Some(body),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let user_sig = v["user_sig"].as_str().expect("a user_sig").to_owned();
    let mut c = gw.client().await;
    let r = c.login_with_sig("alice", "web", None, &user_sig).await;
    assert_eq!(r["code"], 0, "the minted UserSig logs in: {r}");
    let expire_at = r["data"]["expire_at"].as_u64().unwrap();
    let now = now_secs();
    assert!(
        (now + 598..=now + 601).contains(&expire_at),
        "expire honoured: {expire_at}"
    );

    for (bad, what) in [
        (json!({"user_id": "a b"}), "bad user id"),
        (json!({"user_id": "alice", "sdk_app_id": 7}), "unknown app"),
        (json!({"user_id": "alice", "expire": 0}), "zero expire"),
        (json!({"user": "alice"}), "unknown field"),
    ] {
        let (status, v) = http(
            &gw.admin_url,
            "POST",
            "/v1/dev/usersig",
            Some(&token),
            Some(bad.to_string()),
        )
        .await;
        assert_eq!(status, 400, "{what}: {v}");
        assert!(v["error"].is_string(), "{what}: {v}");
    }
}

#[tokio::test]
async fn a_configured_gateway_mints_only_with_dev_usersig_and_never_shows_its_token() {
    let gw = Gateway::start();
    let (status, cfg) = http(&gw.admin_url, "GET", "/console/config", None, None).await;
    assert_eq!(status, 200);
    assert!(cfg["admin_token"].is_null(), "{cfg}");
    assert_eq!(cfg["dev_usersig"], false);
    assert_eq!(cfg["ws_url"], gw.ws_url.as_str());
    let (status, v) = gw
        .admin_post("/v1/dev/usersig", &json!({"user_id": "alice"}))
        .await;
    assert_eq!(status, 404, "{v}");
    assert!(v["error"].is_string());

    let gw = Gateway::start_with(&config("dev_usersig = true", ""));
    let (status, v) = gw
        .admin_post(
            "/v1/dev/usersig",
            &json!({"user_id": "bob", "sdk_app_id": APP}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let mut c = gw.client().await;
    let r = c
        .login_with_sig("bob", "android", None, v["user_sig"].as_str().unwrap())
        .await;
    assert_eq!(r["code"], 0, "{r}");
}
