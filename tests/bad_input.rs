//! Bad input gets a clear error and loses nothing: the connection stays
//! open and later good frames still work.

mod common;

use common::{Client, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

#[actix_web::test]
async fn bad_frames_get_errors_and_the_connection_survives() {
    let (_dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    ws.join("general").await;

    let cases: Vec<(String, &str, serde_json::Value)> = vec![
        ("{not json".into(), "malformed", json!(null)),
        ("[1,2,3]".into(), "malformed", json!(null)),
        (
            json!({"type": "shout", "ref": "u"}).to_string(),
            "unknown_type",
            json!("u"),
        ),
        (
            json!({"text": "no type"}).to_string(),
            "unknown_type",
            json!(null),
        ),
        (
            json!({"type": "send", "room": "general", "ref": 1}).to_string(),
            "invalid_frame",
            json!(1),
        ),
        (
            json!({"type": "send", "room": "general", "text": 5, "ref": 2}).to_string(),
            "invalid_frame",
            json!(2),
        ),
        (
            json!({"type": "send", "room": "general", "text": "   ", "ref": 3}).to_string(),
            "empty_text",
            json!(3),
        ),
        (
            // Zero-width spaces and a Hangul filler: a blank that looks like text.
            json!({"type": "send", "room": "general", "text": "\u{200B}\u{3164}\u{200B}", "ref": 31}).to_string(),
            "empty_text",
            json!(31),
        ),
        (
            // The same key twice means whatever the last says to one parser
            // and the first to another.
            r#"{"type":"send","room":"elsewhere","text":"hi","room":"general","ref":32}"#.into(),
            "malformed",
            json!(null),
        ),
        (
            json!({"type": "send", "room": "general", "text": "x".repeat(4001), "ref": 4})
                .to_string(),
            "text_too_long",
            json!(4),
        ),
        (
            json!({"type": "send", "room": "elsewhere", "text": "hi", "ref": 5}).to_string(),
            "not_joined",
            json!(5),
        ),
        (
            json!({"type": "join", "room": "bad room!"}).to_string(),
            "invalid_room",
            json!(null),
        ),
        (
            json!({"type": "join", "room": "x".repeat(65)}).to_string(),
            "invalid_room",
            json!(null),
        ),
        (
            json!({"type": "direct", "to": "no such/user", "text": "hi", "ref": 6}).to_string(),
            "invalid_user",
            json!(6),
        ),
        (
            json!({"type": "history", "room": "nowhere"}).to_string(),
            "not_joined",
            json!(null),
        ),
        (
            json!({"type": "send", "room": "general", "text": "x", "delivery": "eventually", "ref": 7})
                .to_string(),
            "invalid_frame",
            json!(7),
        ),
        (
            json!({"type": "direct", "to": "bob", "text": "x", "confirm": "yes", "ref": 8}).to_string(),
            "invalid_frame",
            json!(8),
        ),
        (
            json!({"type": "group", "to": "bob", "text": "x", "ref": 9}).to_string(),
            "invalid_frame",
            json!(9),
        ),
        (
            json!({"type": "group", "to": (0..51).map(|n| format!("u{n}")).collect::<Vec<_>>(), "text": "x", "ref": 10})
                .to_string(),
            "invalid_frame",
            json!(10),
        ),
        (
            json!({"type": "read", "room": "general", "seq": -1}).to_string(),
            "invalid_frame",
            json!(null),
        ),
        (
            json!({"type": "read", "room": "nowhere", "seq": 1}).to_string(),
            "not_joined",
            json!(null),
        ),
        (
            json!({"type": "fetch_missed", "limit": "all"}).to_string(),
            "invalid_frame",
            json!(null),
        ),
    ];
    for (frame, code, reference) in cases {
        ws.send_text(&frame).await;
        let error = ws.recv_type("error").await;
        assert_eq!(error["code"], code, "for {frame:.80}: {error}");
        assert_eq!(error["ref"], reference, "for {frame:.80}");
        assert!(!error["message"].as_str().unwrap().is_empty());
    }
    ws.stream
        .send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws.recv_type("error").await["code"], "unsupported");

    // Exactly at the limit is fine, and nothing above was stored.
    let seq = ws.say("general", &"é".repeat(4000), "ok").await;
    assert_eq!(seq, 1, "no refused frame consumed a sequence number");
    server.stop().await;
}

#[actix_web::test]
async fn an_oversized_frame_closes_with_1009() {
    let (_dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    let huge = json!({"type": "send", "room": "general", "text": "x".repeat(70 * 1024)});
    ws.send(huge).await;
    assert_eq!(closed_with(&mut ws).await, CloseCode::Size);
    still_served(&alice).await;
    server.stop().await;
}

/// The code of the close frame the server sends next.
async fn closed_with(ws: &mut common::Ws) -> CloseCode {
    loop {
        match ws.stream.next().await {
            Some(Ok(Message::Close(frame))) => return frame.expect("a close reason").code,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The user is not harmed: a new connection works.
async fn still_served(user: &Client) {
    let mut again = user.ws().await;
    again.join("general").await;
    assert_eq!(again.say("general", "after", "r").await, 1);
}

/// A text frame that is not UTF-8 is refused as the WebSocket protocol
/// says: close code 1007 (invalid payload), not 1002.
#[actix_web::test]
async fn a_text_frame_that_is_not_utf8_closes_with_1007() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let (_dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    let bytes: &[u8] = b"{\"type\":\"ping\",\"x\":\"\xff\xfe\"}";
    let frame = Frame::message(bytes.to_vec(), OpCode::Data(Data::Text), true);
    ws.stream.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, CloseCode::Invalid);
    still_served(&alice).await;
    server.stop().await;
}

#[actix_web::test]
async fn a_burst_over_the_rate_limit_is_refused_then_recovers() {
    let (_dir, server) = TestServer::configured(|c| {
        c.rate_limit = 5;
        c.rate_burst = 5;
    })
    .await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    ws.join("general").await; // one token
    for i in 0..10 {
        ws.send(json!({"type": "send", "room": "general", "text": format!("m{i}"), "ref": i}))
            .await;
    }
    let (acked, limited) = ws.acks_and_refusals(10).await;
    assert_eq!(acked, vec![0, 1, 2, 3], "the burst allowance, in order");
    assert_eq!(limited, (4..10).collect::<Vec<_>>());
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let seq = ws.say("general", "later", "late").await;
    assert_eq!(seq, 5, "refused frames were never stored");
    server.stop().await;
}

/// Pings and binary frames count against the rate limit like text frames
/// (each costs the server an answer): a flood of either gets few answers
/// and ends with 1008 after 100 refused in a row.
#[actix_web::test]
async fn ping_and_binary_floods_are_rate_limited_and_closed() {
    let (_dir, server) = TestServer::configured(|c| {
        c.rate_limit = 5;
        c.rate_burst = 5;
    })
    .await;
    for binary in [false, true] {
        let mut ws = Client::logged_in(&server, "flood").await.ws().await;
        for _ in 0..400 {
            let frame = if binary {
                Message::Binary(vec![0u8; 100].into())
            } else {
                Message::Ping(vec![1u8; 100].into())
            };
            if ws.stream.send(frame).await.is_err() {
                break;
            }
        }
        let mut answers = 0;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let code = loop {
            let next = tokio::time::timeout_at(deadline, ws.stream.next())
                .await
                .expect("the flood ends the connection within 10 s");
            match next {
                Some(Ok(Message::Pong(_) | Message::Text(_))) => answers += 1,
                Some(Ok(Message::Close(close))) => break close.map(|close| u16::from(close.code)),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break None,
            }
        };
        assert_eq!(
            code,
            Some(u16::from(CloseCode::Policy)),
            "binary {binary}: {answers} answers"
        );
        assert!(
            answers <= 10,
            "binary {binary}: {answers} answers to 400 frames"
        );
    }
    let mut other = Client::logged_in(&server, "calm").await.ws().await;
    other.join("general").await;
    other.say("general", "served", "ok").await;
    server.stop().await;
}

/// A flood over the rate limit costs the server no parsing and ends: after
/// 100 refused frames in a row the connection closes with 1008, and others
/// are served. A short refused send still names its `ref`.
#[actix_web::test]
async fn a_flood_over_the_rate_limit_is_closed() {
    let (_dir, server) = TestServer::configured(|c| {
        c.rate_limit = 5;
        c.rate_burst = 5;
    })
    .await;
    let mut ws = Client::logged_in(&server, "flood").await.ws().await;
    ws.join("general").await;
    // The join took one of the five tokens; these take the rest.
    for n in 0..4 {
        ws.send(json!({"type": "typing", "room": "general", "active": n % 2 == 0}))
            .await;
    }
    ws.send(json!({"type": "send", "room": "general", "text": "x", "ref": "late"}))
        .await;
    let refused = ws.recv_type("error").await;
    assert_eq!(
        (refused["code"].as_str(), refused["ref"].as_str()),
        (Some("rate_limited"), Some("late"))
    );
    let big = json!({"type": "send", "room": "general", "text": "y".repeat(60_000)}).to_string();
    let mut closed = false;
    for _ in 0..400 {
        if ws
            .stream
            .send(Message::Text(big.clone().into()))
            .await
            .is_err()
        {
            closed = true;
            break;
        }
    }
    let frames = ws.until_closed(std::time::Duration::from_secs(10)).await;
    assert!(
        closed || ws.close_code.is_some(),
        "the flood ended the connection"
    );
    assert_eq!(
        ws.close_code,
        Some(u16::from(CloseCode::Policy)),
        "{frames:?}"
    );
    let mut other = Client::logged_in(&server, "calm").await.ws().await;
    other.join("general").await;
    other.say("general", "served", "ok").await;
}

/// A user has one message budget whatever number of connections they
/// open: a second connection does not double it. A `group` costs one per
/// recipient, all at once; one larger than the budget ever holds is
/// refused whole, saying so, and nothing of it is stored.
#[actix_web::test]
async fn a_users_connections_share_one_message_budget() {
    let (_dir, server) = TestServer::configured(|c| {
        c.user_rate_limit = 1;
        c.user_rate_burst = 4;
    })
    .await;
    let ann = Client::logged_in(&server, "ann").await;
    let mut first = ann.ws().await;
    let mut second = ann.ws().await;
    first.join("general").await;
    second.join("general").await;
    let send =
        |i: i64| json!({"type": "send", "room": "general", "text": format!("m{i}"), "ref": i});
    for i in 0..3 {
        first.send(send(i)).await;
    }
    assert_eq!(first.acks_and_refusals(3).await, (vec![0, 1, 2], vec![]));
    for i in 3..6 {
        second.send(send(i)).await;
    }
    // The first left one of four (a slow machine may have refilled one
    // more meanwhile); a budget per connection would take all three.
    let (acked, refused) = second.acks_and_refusals(3).await;
    assert!(
        acked.len() <= 2 && !refused.is_empty(),
        "the second connection had only what the first left: {acked:?} {refused:?}"
    );

    for name in ["b1", "b2", "b3", "b4", "b5"] {
        Client::logged_in(&server, name).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;
    second
        .send(
            json!({"type": "group", "to": ["b1", "b2", "b3", "b4", "b5"], "text": "all", "ref": 9}),
        )
        .await;
    let refused = second.recv_type("error").await;
    assert_eq!(
        (refused["code"].as_str(), refused["ref"].as_i64()),
        (Some("rate_limited"), Some(9))
    );
    assert!(
        refused["message"].as_str().unwrap().contains("at once"),
        "{refused}"
    );
    second
        .send(json!({"type": "group", "to": ["b1", "b2", "b3"], "text": "some", "ref": 10}))
        .await;
    assert_eq!(second.acks_and_refusals(3).await.0, vec![10, 10, 10]);
    let mut b4 = Client::logged_in(&server, "b4").await.ws().await;
    b4.none_for("pending", std::time::Duration::from_millis(500))
        .await;
    server.stop().await;
}
