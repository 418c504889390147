//! Integration hooks against a real webhook receiver on 127.0.0.1:0 (see
//! `common::webhook`): auth, authorize, validity, events with admin users,
//! and single-session; each with the receiver down as well. The
//! cross-replica single-session case is in `cluster.rs`.

mod common;

use std::time::Duration;

use common::webhook::Webhook;
use common::{Client, TestServer, PASSWORD};
use serde_json::json;

/// Close code for "policy violation": revoked and replaced connections.
const POLICY: u16 = 1008;

#[actix_web::test]
async fn the_auth_webhook_decides_who_logs_in_and_as_whom() {
    let hook = Webhook::start(|body| {
        let by_password = body["password"] == "sesame";
        let by_token = body["token"] == "t0k3n";
        json!({"allowed": by_password || by_token, "name": format!("ext_{}", body["name"].as_str().unwrap())})
    });
    let (_dir, server) =
        TestServer::configured(|c| c.auth_webhook_url = Some(hook.url.clone())).await;

    let client = Client::new(&server);
    let response = client.login_with("ann", "sesame").await;
    assert_eq!(response.status(), 303, "allowed: redirected into the chat");
    let mut ws = client.ws().await;
    ws.join("lobby").await;
    ws.say("lobby", "hello", "1").await;
    let mut other = Client::logged_in_via_token(&server, "ben", "t0k3n")
        .await
        .ws()
        .await;
    let joined = other.join("lobby").await;
    assert_eq!(
        joined["history"][0]["from"], "ext_ann",
        "logged in under the name the hook returned"
    );

    let refused = Client::new(&server);
    assert_eq!(
        refused.login_with("ann", "wrong password").await.status(),
        401
    );
    assert!(
        refused.try_ws().await.is_err(),
        "a refused login opens no chat"
    );

    let received = hook.received();
    assert_eq!(received[0], json!({"name": "ann", "password": "sesame"}));
    assert_eq!(received[1], json!({"name": "ben", "token": "t0k3n"}));
}

#[actix_web::test]
async fn logins_are_denied_while_the_auth_webhook_is_down() {
    let (_dir, server) =
        TestServer::configured(|c| c.auth_webhook_url = Some(Webhook::down())).await;
    let client = Client::new(&server);
    assert_eq!(client.login_with("ann", PASSWORD).await.status(), 503);
    assert!(client.try_ws().await.is_err());
}

#[actix_web::test]
async fn the_authorize_webhook_gates_direct_messages_and_joins_and_its_allows_are_cached() {
    let hook = Webhook::start(
        |body| json!({"allowed": body["to"] != "mallory" && body["room"] != "secret"}),
    );
    let (_dir, server) =
        TestServer::configured(|c| c.authorize_webhook_url = Some(hook.url.clone())).await;
    Client::logged_in(&server, "bob").await;
    Client::logged_in(&server, "mallory").await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;

    alice.direct("bob", "hi", "1").await;
    alice.direct("bob", "again", "2").await;
    alice
        .send(json!({"type": "direct", "to": "mallory", "text": "psst", "ref": "3"}))
        .await;
    let error = alice.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("forbidden"), Some("3"))
    );
    alice.send(json!({"type": "join", "room": "secret"})).await;
    assert_eq!(alice.recv_type("error").await["code"], "forbidden");
    assert_eq!(alice.join("lobby").await["room"], "lobby");

    let asked = hook.received();
    assert_eq!(
        asked,
        [
            json!({"from": "alice", "to": "bob"}),
            json!({"from": "alice", "to": "mallory"}),
            json!({"from": "alice", "room": "secret"}),
            json!({"from": "alice", "room": "lobby"}),
        ],
        "the second message to bob reused the cached allow"
    );
    // Nothing reached mallory: she has nothing pending.
    let mallory = Client::new(&server);
    mallory.login("mallory").await;
    let mut ws = mallory.ws().await;
    ws.none_for("pending", Duration::from_millis(400)).await;
}

/// A receiver that hangs, fails, answers garbage or 8 MiB, or redirects is
/// no decision: the login is refused with 503 within the hook timeout (the
/// redirect is not followed, the huge answer not read past 64 KiB), and
/// the same for a direct message with the authorize hook, which is refused
/// with `authorization_unavailable`.
#[actix_web::test]
async fn a_broken_receiver_is_no_decision_and_costs_a_timeout_at_most() {
    use common::webhook::Misbehaviour;
    const TIMEOUT: Duration = Duration::from_millis(500);
    for how in Misbehaviour::ALL {
        let (auth, _auth) = Webhook::misbehaving(how);
        let (authorize, _authorize) = Webhook::misbehaving(how);
        let (_dir, server) = TestServer::configured(|c| {
            c.auth_webhook_url = Some(auth);
            c.webhook_timeout_ms = TIMEOUT.as_millis() as u64;
        })
        .await;
        let started = std::time::Instant::now();
        let status = Client::new(&server)
            .login_with("ann", PASSWORD)
            .await
            .status();
        let took = started.elapsed();
        assert_eq!(status, 503, "{how:?}: the login is refused");
        assert!(took < TIMEOUT * 4, "{how:?}: the login took {took:?}");
        server.stop().await;

        let (_dir, server) = TestServer::configured(|c| {
            c.authorize_webhook_url = Some(authorize);
            c.webhook_timeout_ms = TIMEOUT.as_millis() as u64;
        })
        .await;
        Client::logged_in(&server, "bob").await;
        let mut alice = Client::logged_in(&server, "alice").await.ws().await;
        let started = std::time::Instant::now();
        alice
            .send(json!({"type": "direct", "to": "bob", "text": "hi", "ref": "x"}))
            .await;
        let error = alice.recv_type("error").await;
        let took = started.elapsed();
        assert_eq!(
            (error["code"].as_str(), error["ref"].as_str()),
            (Some("authorization_unavailable"), Some("x")),
            "{how:?}"
        );
        assert!(took < TIMEOUT * 4, "{how:?}: the refusal took {took:?}");
        server.stop().await;
    }
}

#[actix_web::test]
async fn messages_are_refused_while_the_authorize_webhook_is_down() {
    let (_dir, server) =
        TestServer::configured(|c| c.authorize_webhook_url = Some(Webhook::down())).await;
    Client::logged_in(&server, "bob").await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    alice
        .send(json!({"type": "direct", "to": "bob", "text": "hi", "ref": "x"}))
        .await;
    let error = alice.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("authorization_unavailable"), Some("x"))
    );
    alice.send(json!({"type": "join", "room": "lobby"})).await;
    assert_eq!(
        alice.recv_type("error").await["code"],
        "authorization_unavailable"
    );
}

#[actix_web::test]
async fn users_the_validity_webhook_reports_invalid_are_disconnected_as_revoked() {
    let hook = Webhook::start(|_| json!({"invalid": ["bob"]}));
    let (_dir, server) = TestServer::configured(|c| {
        c.validity_webhook_url = Some(hook.url.clone());
        c.validity_interval_secs = 1;
    })
    .await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    let bob_client = Client::logged_in(&server, "bob").await;
    let mut bob = bob_client.ws().await;

    bob.until_closed(Duration::from_secs(5)).await;
    assert_eq!(bob.close_code, Some(POLICY));
    assert_eq!(bob.close_reason.as_deref(), Some("revoked"));
    let asked = hook.received();
    let users = asked.last().unwrap()["users"].as_array().unwrap().clone();
    assert!(
        users.contains(&json!("alice")) && users.contains(&json!("bob")),
        "{asked:?}"
    );
    assert!(asked.last().unwrap()["node"].is_string());

    // Reconnecting at once does not bring bob back before the next check.
    let mut back = bob_client.ws().await;
    back.until_closed(Duration::from_secs(2)).await;
    assert_eq!(back.close_reason.as_deref(), Some("revoked"));
    alice.join("lobby").await;
    alice.say("lobby", "still here", "1").await;
}

#[actix_web::test]
async fn nobody_is_disconnected_while_the_validity_webhook_is_down() {
    let (_dir, server) = TestServer::configured(|c| {
        c.validity_webhook_url = Some(Webhook::down());
        c.validity_interval_secs = 1;
    })
    .await;
    let mut bob = Client::logged_in(&server, "bob").await.ws().await;
    // Three checks fail meanwhile; the connection stays usable.
    bob.keep_alive(Duration::from_millis(2500)).await;
    bob.join("lobby").await;
    bob.say("lobby", "fine", "1").await;
}

#[actix_web::test]
async fn connection_events_reach_the_events_webhook_and_admin_connections() {
    let hook = Webhook::start(|_| json!({}));
    let dir = tempfile::tempdir().unwrap();
    let mut config = rookery::Config::local(dir.path());
    config.events_webhook_url = Some(hook.url.clone());
    // "ops" was registered through the form before it became an admin's
    // name: that account stays an ordinary one.
    let early = TestServer::start_with(config.clone()).await;
    Client::logged_in(&early, "ops").await;
    early.stop().await;
    config.admin_users = vec!["root".into(), "ops".into()];
    let server = TestServer::start_with(config.clone()).await;
    assert_eq!(
        Client::new(&server)
            .login_with("root", common::PASSWORD)
            .await
            .status(),
        400,
        "an admin's name cannot be registered through the form"
    );
    server.stop().await;
    rookery::server::create_operator_account(&config, "root", common::PASSWORD)
        .await
        .unwrap();
    let server = TestServer::start_with(config.clone()).await;
    let mut root = Client::logged_in(&server, "root").await.ws().await;
    let bob = Client::logged_in(&server, "bob").await.ws().await;
    // Admins see every connection, their own included.
    assert_eq!(root.recv_type("user_connected").await["user"], "root");
    let connected = root.recv_type("user_connected").await;
    assert_eq!(connected["user"], "bob");
    let node = connected["node"].as_str().unwrap().to_owned();
    drop(bob);
    let disconnected = root.recv_type("user_disconnected").await;
    assert_eq!(
        (disconnected["user"].as_str(), disconnected["node"].as_str()),
        (Some("bob"), Some(node.as_str()))
    );

    let events = hook.wait_for(3, Duration::from_secs(5)).await;
    let summary: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().into(),
                e["user"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("user_connected".into(), "root".into()),
            ("user_connected".into(), "bob".into()),
            ("user_disconnected".into(), "bob".into()),
        ]
    );
    assert!(events
        .iter()
        .all(|e| e["node"] == node.as_str() && e["ts"].is_i64()));

    // Not an admin: no connection events.
    let squatter_client = Client::logged_in(&server, "ops").await;
    let mut squatter = squatter_client.ws().await;
    let mut carol = Client::logged_in(&server, "carol").await.ws().await;
    let _dave = Client::logged_in(&server, "dave").await.ws().await;
    carol
        .none_for("user_connected", Duration::from_millis(400))
        .await;
    // A squatted admin name gets no connection events.
    squatter
        .none_for("user_connected", Duration::from_millis(300))
        .await;
    // The operator takes "ops" over: the squatter's login is over too.
    rookery::server::create_operator_account(&config, "ops", "the operator's own")
        .await
        .unwrap();
    let photo = reqwest::multipart::Form::new().part(
        "avatar",
        reqwest::multipart::Part::bytes(common::PNG.to_vec()).file_name("me.png"),
    );
    let upload = squatter_client
        .http
        .post(server.url("/avatar"))
        .multipart(photo)
        .send()
        .await
        .unwrap();
    assert_eq!(
        upload.status(),
        401,
        "the squatter's login cannot set the operator's photo"
    );
    assert!(
        squatter_client.try_ws().await.is_err(),
        "no new chat connection"
    );
    assert_eq!(
        squatter_client.get("/").await.status(),
        303,
        "sent to log in"
    );
}

#[actix_web::test]
async fn events_are_dropped_not_queued_forever_while_the_events_webhook_is_down() {
    let (_dir, server) =
        TestServer::configured(|c| c.events_webhook_url = Some(Webhook::down())).await;
    let mut ws = Client::logged_in(&server, "bob").await.ws().await;
    ws.join("lobby").await;
    ws.say("lobby", "chat goes on", "1").await;
}

fn events_dropped() -> u64 {
    rookery::metrics::get()
        .webhook_calls
        .with_label_values(&["events", "dropped"])
        .get()
}

/// A receiver slower than the events: at most `EVENTS_QUEUE` wait (and
/// one in flight), the rest are dropped and counted, chat does not wait,
/// and what was kept arrives in order, followed by events from after the
/// backlog cleared.
#[actix_web::test]
async fn a_slow_events_webhook_holds_at_most_the_queue_and_counts_the_rest() {
    let hook = Webhook::start(|_| {
        std::thread::sleep(Duration::from_millis(500));
        json!({})
    });
    let url = hook.url.clone();
    let (_dir, server) = TestServer::configured(|c| {
        c.events_webhook_url = Some(url);
        c.events_queue = 3;
    })
    .await;
    let dropped_before = events_dropped();
    let eve = Client::logged_in(&server, "eve").await;
    for _ in 0..10 {
        let mut ws = eve.ws().await;
        ws.join("lobby").await;
        ws.stream.close(None).await.unwrap();
    }
    let mut talker = eve.ws().await;
    talker.join("lobby").await;
    talker.say("lobby", "chat did not wait", "1").await;
    // 21 events: one in flight, 3 queued, the rest dropped (a few slip in
    // as the receiver takes one every half second). Each is sent or
    // counted, once the receiver has taken what was kept.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let dropped = loop {
        let dropped = events_dropped() - dropped_before;
        if hook.received().len() as u64 + dropped == 21 {
            break dropped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} received and {dropped} dropped of 21",
            hook.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(dropped >= 5, "{dropped} dropped: the queue was bounded");
    let kept = hook.received();
    drop(talker);
    let all = hook.wait_for(kept.len() + 1, Duration::from_secs(5)).await;
    assert_eq!(
        all.last().unwrap()["type"],
        "user_disconnected",
        "later events still go"
    );
}

#[actix_web::test]
async fn with_single_session_a_new_connection_replaces_the_old_one() {
    let (_dir, server) = TestServer::configured(|c| c.single_session = true).await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut first = alice.ws().await;
    first.join("lobby").await;
    let mut second = alice.ws().await;
    first.until_closed(Duration::from_secs(5)).await;
    assert_eq!(first.close_code, Some(POLICY));
    assert_eq!(first.close_reason.as_deref(), Some("replaced"));
    second.join("lobby").await;
    second.say("lobby", "only me", "1").await;
    // Other users are not affected.
    let mut bob = Client::logged_in(&server, "bob").await.ws().await;
    bob.join("lobby").await;
    second.none_for("error", Duration::from_millis(300)).await;
}
