//! Contract §14 end to end: running at the edge (key rotation so far; TLS, origins, client
//! addresses, per-IP caps and live reload join this file as they land).

mod common;
use common::*;

/// A UserSig signed with the app's key or with one of its `previous_keys` verifies; any other key
/// is 70009. Minting (`/v1/dev/usersig`) always uses `key`.
#[tokio::test]
async fn previous_keys_still_verify_during_a_rotation() {
    let old = KEY;
    let new = "the-new-key-after-rotation";
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nadmin_token = \"{TOKEN}\"\ndev_usersig = true\n\n[[app]]\nsdk_app_id = {APP}\nkey = \"{new}\"\nprevious_keys = [\"older-still\", \"{old}\"]\n"
    );
    let gw = Gateway::start_with(&text);
    let signed = |key: &str, user: &str| {
        imgate::usersig::generate(
            &imgate::usersig::SigKey::new(key),
            APP,
            user,
            600,
            now_secs(),
            None,
        )
    };
    for (key, want) in [
        (new, 0),
        (old, 0),
        ("older-still", 0),
        ("a-wrong-key", 70009),
    ] {
        let mut c = gw.client().await;
        let r = c
            .login_with_sig("alice", "web", None, &signed(key, "alice"))
            .await;
        assert_eq!(r["code"], want, "{key}: {r}");
    }
    let (status, v) = gw
        .admin_post("/v1/dev/usersig", &serde_json::json!({"user_id": "bob"}))
        .await;
    assert_eq!(status, 200, "{v}");
    let minted = v["user_sig"].as_str().unwrap();
    let d = imgate::usersig::decode(minted).unwrap();
    let only_new = imgate::usersig::SigKey::new(new);
    assert!(d.signature_matches(&only_new), "minted with key");
}
