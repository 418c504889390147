//! Messaging guarantees on one replica: fast delivery, offline direct
//! messages with `pending` / `fetch_missed`, delivery confirmations, group
//! messages and read receipts. The cross-replica versions are in
//! `cluster.rs`.

mod common;

use std::time::Duration;

use common::{Client, TestServer, Ws};
use serde_json::{json, Value};

const QUIET: Duration = Duration::from_millis(500);

/// Frames until one of `kind` arrives, returning them all (it last).
async fn until_type(ws: &mut Ws, kind: &str) -> Vec<Value> {
    let mut frames = Vec::new();
    loop {
        let frame = ws.recv().await;
        let done = frame["type"] == kind;
        frames.push(frame);
        if done {
            return frames;
        }
    }
}

/// Sends `fetch_missed` and returns the messages and `left`.
async fn fetch_missed(ws: &mut Ws, limit: u32) -> (Vec<Value>, u64) {
    ws.send(json!({"type": "fetch_missed", "limit": limit}))
        .await;
    let frames = until_type(ws, "fetch_missed_complete").await;
    let left = frames.last().unwrap()["left"].as_u64().unwrap();
    let messages = frames
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();
    (messages, left)
}

fn texts(messages: &[Value]) -> Vec<&str> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect()
}

#[actix_web::test]
async fn fast_messages_arrive_at_once_without_ack_and_later_in_history_under_the_same_id() {
    let (_dir, server) = TestServer::fresh().await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    let mut bob = Client::logged_in(&server, "bob").await.ws().await;
    alice.join("lobby").await;
    bob.join("lobby").await;

    alice
        .send(json!({"type": "send", "room": "lobby", "text": "quick", "ref": "f1", "delivery": "fast"}))
        .await;
    let live = bob.recv_type("message").await;
    assert_eq!(live["text"], "quick");
    assert_eq!(live["seq"], Value::Null, "seen live before it has a seq");
    let id = live["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 16);

    // A reliable message after it: the sender's next ack is for that one
    // (the fast one is never acked), and the receiver does not get the fast
    // one a second time once it is stored.
    let seq = alice.say("lobby", "sure", "r1").await;
    assert_eq!(seq, 2, "the fast message took seq 1 when stored");
    let next = bob.recv_type("message").await;
    assert_eq!(
        (next["text"].as_str(), next["seq"].as_u64()),
        (Some("sure"), Some(2))
    );

    let history = Client::logged_in(&server, "carol")
        .await
        .ws()
        .await
        .join("lobby")
        .await;
    let stored = &history["history"][0];
    assert_eq!(
        (
            stored["text"].as_str(),
            stored["seq"].as_u64(),
            stored["id"].as_str()
        ),
        (Some("quick"), Some(1), Some(id.as_str())),
        "history has the fast message with a seq, under the id it was seen with"
    );
    assert!(bob
        .quiet_for(QUIET)
        .await
        .is_none_or(|f| f["type"] != "message"));
}

#[actix_web::test]
async fn direct_messages_wait_for_an_offline_user_and_are_fetched_once_in_pages() {
    let (_dir, server) = TestServer::fresh().await;
    // Bob registers and leaves: no connection anywhere.
    Client::logged_in(&server, "bob").await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    alice.direct("bob", "one", "d1").await;
    alice
        .send(json!({"type": "direct", "to": "bob", "text": "two", "ref": "d2", "confirm": true}))
        .await;
    until_type(&mut alice, "ack").await;
    alice.direct("bob", "three", "d3").await;
    assert!(
        alice
            .quiet_for(QUIET)
            .await
            .is_none_or(|f| f["type"] != "delivered"),
        "nothing is delivered while bob is away"
    );

    let bob_client = Client::new(&server);
    bob_client.login("bob").await;
    let mut bob = bob_client.ws().await;
    let pending = bob.recv_type("pending").await;
    assert_eq!(pending["count"], 3);

    let (first, left) = fetch_missed(&mut bob, 2).await;
    assert_eq!(texts(&first), ["one", "two"], "oldest first");
    assert_eq!(left, 1);
    assert!(first
        .iter()
        .all(|m| m["room"] == "@alice:bob" && m["seq"].is_u64()));
    // Fetching "two" delivered it: alice asked to be told.
    let delivered = alice.recv_type("delivered").await;
    assert_eq!(
        (
            delivered["ref"].as_str(),
            delivered["to"].as_str(),
            delivered["seq"].as_u64()
        ),
        (Some("d2"), Some("bob"), Some(2))
    );

    let (second, left) = fetch_missed(&mut bob, 2).await;
    assert_eq!(texts(&second), ["three"]);
    assert_eq!(left, 0);
    let (none, left) = fetch_missed(&mut bob, 2).await;
    assert!(none.is_empty(), "nothing is handed out twice: {none:?}");
    assert_eq!(left, 0);

    // Delivered now: a new connection has nothing pending.
    let mut again = bob_client.ws().await;
    assert!(again
        .quiet_for(QUIET)
        .await
        .is_none_or(|f| f["type"] != "pending"));
}

#[actix_web::test]
async fn a_recipient_online_gets_it_live_and_the_sender_hears_it_was_delivered() {
    let (_dir, server) = TestServer::fresh().await;
    let bob_client = Client::logged_in(&server, "bob").await;
    let mut bob = bob_client.ws().await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    alice
        .send(json!({"type": "direct", "to": "bob", "text": "hi", "ref": 9, "confirm": true}))
        .await;
    let frames = until_type(&mut alice, "delivered").await;
    let ack = frames
        .iter()
        .find(|f| f["type"] == "ack")
        .expect("acked before delivered");
    let delivered = frames.last().unwrap();
    assert_eq!(delivered["ref"], 9);
    assert_eq!(delivered["to"], "bob");
    assert_eq!(delivered["seq"], ack["seq"]);
    assert_eq!(bob.recv_type("message").await["text"], "hi");

    // Reached bob live: not pending for his next connection, not fetched.
    drop(bob);
    let mut later = bob_client.ws().await;
    assert!(later
        .quiet_for(QUIET)
        .await
        .is_none_or(|f| f["type"] != "pending"));
    let (missed, left) = fetch_missed(&mut later, 10).await;
    assert!(missed.is_empty());
    assert_eq!(left, 0);
}

#[actix_web::test]
async fn a_group_message_reaches_each_recipient_in_their_own_direct_room() {
    let (_dir, server) = TestServer::fresh().await;
    let mut bob = Client::logged_in(&server, "bob").await.ws().await;
    let carol = Client::logged_in(&server, "carol").await; // offline
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;

    alice
        .send(json!({"type": "group", "to": ["bob", "carol", "bob"], "text": "team", "ref": "g"}))
        .await;
    let mut acked = Vec::new();
    while acked.len() < 2 {
        let ack = alice.recv_type("ack").await;
        assert_eq!(ack["ref"], "g");
        acked.push(ack["room"].as_str().unwrap().to_owned());
    }
    acked.sort();
    assert_eq!(
        acked,
        ["@alice:bob", "@alice:carol"],
        "one ack per recipient, duplicates merged"
    );
    let got = bob.recv_type("message").await;
    assert_eq!(
        (got["room"].as_str(), got["text"].as_str()),
        (Some("@alice:bob"), Some("team"))
    );

    let mut carol_ws = carol.ws().await;
    assert_eq!(carol_ws.recv_type("pending").await["count"], 1);
    let (missed, _) = fetch_missed(&mut carol_ws, 10).await;
    assert_eq!(missed[0]["room"], "@alice:carol");

    // Unknown recipients are refused one by one; a bad name refuses all.
    alice
        .send(json!({"type": "group", "to": ["bob", "nobody"], "text": "x", "ref": "g2"}))
        .await;
    let frames = until_type(&mut alice, "error").await;
    assert_eq!(frames.last().unwrap()["code"], "unknown_user");
    alice
        .send(json!({"type": "group", "to": ["bob", "no spaces"], "text": "x", "ref": "g3"}))
        .await;
    let error = alice.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("invalid_user"), Some("g3"))
    );
    alice
        .send(json!({"type": "group", "to": [], "text": "x", "ref": "g4"}))
        .await;
    assert_eq!(alice.recv_type("error").await["code"], "invalid_frame");
}

#[actix_web::test]
async fn read_receipts_reach_members_and_come_back_with_the_room() {
    let (_dir, server) = TestServer::fresh().await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    let bob_client = Client::logged_in(&server, "bob").await;
    let mut bob = bob_client.ws().await;
    alice.join("lobby").await;
    bob.join("lobby").await;
    alice.say("lobby", "one", "1").await;
    let seq = alice.say("lobby", "two", "2").await;

    bob.send(json!({"type": "read", "room": "lobby", "seq": seq}))
        .await;
    let read = alice.recv_type("read").await;
    assert_eq!(
        (
            read["room"].as_str(),
            read["user"].as_str(),
            read["seq"].as_u64()
        ),
        (Some("lobby"), Some("bob"), Some(seq))
    );
    // Past the end is clamped: nobody has read what was not sent.
    bob.send(json!({"type": "read", "room": "lobby", "seq": 1000}))
        .await;
    assert_eq!(alice.recv_type("read").await["seq"], seq);
    // Not joined: refused.
    bob.send(json!({"type": "read", "room": "elsewhere", "seq": 1}))
        .await;
    assert_eq!(bob.recv_type("error").await["code"], "not_joined");

    let rejoined = Client::logged_in(&server, "carol")
        .await
        .ws()
        .await
        .join("lobby")
        .await;
    assert_eq!(rejoined["read"], json!([{"user": "bob", "seq": seq}]));
}
