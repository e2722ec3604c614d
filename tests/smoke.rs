//! The shortest end-to-end path: boot, log in, be kicked by a newer login.
mod common;
use common::*;

#[tokio::test]
async fn login_and_kick_end_to_end() {
    let gw = Gateway::start();
    let mut a = gw.logged_in("alice", "android", None).await;
    let mut b = gw.logged_in("alice", "iphone", None).await;
    let push = a.recv().await;
    assert_eq!(push["type"], "kicked_offline");
    assert_eq!(push["reason"], "multi_device");
    assert_eq!(push["by_platform"], "iphone");
    a.expect_close(4501).await;
    let r = b
        .request(serde_json::json!({"type":"get_login_user"}))
        .await;
    assert_eq!(r["data"]["user_id"], "alice");
}
