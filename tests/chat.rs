//! The single-replica chat, end to end, over real HTTP and WebSocket.

mod common;

use std::time::Duration;

use common::{Client, TestServer, PASSWORD};
use serde_json::{json, Value};

#[actix_web::test]
async fn two_users_see_each_others_messages_once_in_sequence() {
    let (_dir, server) = TestServer::fresh().await;
    let (alice, bob) = (Client::new(&server), Client::new(&server));
    alice.login("alice").await;
    bob.login("bob").await;
    let (mut a, mut b) = (alice.ws().await, bob.ws().await);
    a.join("general").await;
    let joined = b.join("general").await;
    assert_eq!(joined["online"], json!(["alice", "bob"]));

    let first = a.say("general", "hello bob", "a1").await;
    let second = a.say("general", "still there?", "a2").await;
    assert_eq!(second, first + 1, "seqs are consecutive");
    let mut received = Vec::new();
    for _ in 0..2 {
        received.push(b.recv_type("message").await);
    }
    let reply = b.say("general", "yes!", "b1").await;
    assert_eq!(reply, second + 1);
    received.push(b.recv_type("message").await);

    let expected = [
        (first, "alice", "hello bob"),
        (second, "alice", "still there?"),
        (reply, "bob", "yes!"),
    ];
    for ((seq, from, text), got) in expected.into_iter().zip(received) {
        assert_eq!(
            (
                got["seq"].as_u64().unwrap(),
                got["from"].as_str().unwrap(),
                got["text"].as_str().unwrap()
            ),
            (seq, from, text)
        );
        assert_eq!(got["room"], "general");
        assert!(got["ts"].as_str().unwrap().ends_with('Z'));
    }
    // alice sees her own two and bob's reply, each exactly once.
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(a.recv_type("message").await["seq"].as_u64().unwrap());
    }
    assert_eq!(seen, vec![first, second, reply]);
    b.none_for("message", Duration::from_millis(300)).await;
    server.stop().await;
}

#[actix_web::test]
async fn history_on_join_and_scroll_back() {
    let (_dir, server) = TestServer::configured(|c| {
        c.rate_limit = 0;
        c.user_rate_limit = 0;
    })
    .await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut a = alice.ws().await;
    a.join("archive").await;
    for i in 1..=70 {
        a.say("archive", &format!("m{i}"), &format!("r{i}")).await;
    }

    let bob = Client::logged_in(&server, "bob").await;
    let mut b = bob.ws().await;
    let joined = b.join("archive").await;
    let history = joined["history"].as_array().unwrap();
    assert_eq!(history.len(), 50, "join brings the latest 50");
    assert_eq!(history[0]["seq"], 21);
    assert_eq!(history[49]["text"], "m70");

    b.send(json!({"type": "history", "room": "archive", "before": 21, "limit": 15}))
        .await;
    let older = b.recv_type("history").await;
    let seqs: Vec<u64> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (6..=20).collect::<Vec<_>>(),
        "oldest first, just before the cursor"
    );

    b.send(json!({"type": "history", "room": "archive", "before": 6, "limit": 100}))
        .await;
    assert_eq!(
        b.recv_type("history").await["messages"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
    b.send(json!({"type": "history", "room": "archive", "before": 1}))
        .await;
    assert_eq!(
        b.recv_type("history").await["messages"],
        json!([]),
        "nothing before the first"
    );
    server.stop().await;
}

#[actix_web::test]
async fn typing_and_presence_reach_the_other_members() {
    let (_dir, server) = TestServer::fresh().await;
    let (alice, bob) = (Client::new(&server), Client::new(&server));
    alice.login("alice").await;
    bob.login("bob").await;
    let mut a = alice.ws().await;
    a.join("lobby").await;
    let mut b = bob.ws().await;
    b.join("lobby").await;
    assert_eq!(
        a.recv_type("presence").await["online"],
        json!(["alice", "bob"])
    );

    b.send(json!({"type": "typing", "room": "lobby", "active": true}))
        .await;
    let typing = a.recv_type("typing").await;
    assert_eq!(
        typing,
        json!({"type": "typing", "room": "lobby", "user": "bob", "active": true})
    );

    // A second tab of bob's changes nothing about who is online...
    let mut b2 = bob.ws().await;
    b2.join("lobby").await;
    // ...and bob leaving with one tab open keeps him online.
    b.send(json!({"type": "leave", "room": "lobby"})).await;
    drop(b);
    drop(b2);
    assert_eq!(a.recv_type("presence").await["online"], json!(["alice"]));
    server.stop().await;
}

#[actix_web::test]
async fn direct_messages_reach_every_tab_of_both_users_only() {
    let (_dir, server) = TestServer::fresh().await;
    let (alice, bob, carol) = (
        Client::new(&server),
        Client::new(&server),
        Client::new(&server),
    );
    alice.login("alice").await;
    bob.login("bob").await;
    carol.login("carol").await;
    let (mut a, mut b1, mut b2, mut c) = (
        alice.ws().await,
        bob.ws().await,
        bob.ws().await,
        carol.ws().await,
    );

    a.send(json!({"type": "direct", "to": "bob", "text": "psst", "ref": "d1"}))
        .await;
    let ack = a.recv_type("ack").await;
    assert_eq!(
        ack,
        json!({"type": "ack", "ref": "d1", "room": "@alice:bob", "seq": 1})
    );
    for ws in [&mut b1, &mut b2, &mut a] {
        let message = ws.recv_type("message").await;
        assert_eq!(
            (
                message["room"].as_str(),
                message["from"].as_str(),
                message["text"].as_str()
            ),
            (Some("@alice:bob"), Some("alice"), Some("psst"))
        );
    }
    assert!(
        c.frames_for(Duration::from_millis(300)).await.is_empty(),
        "carol sees nothing"
    );

    // Carol cannot read their conversation; bob can open it and see the history.
    c.send(json!({"type": "join", "room": "@alice:bob"})).await;
    assert_eq!(c.recv_type("error").await["code"], "invalid_room");
    let joined = b1.join("@alice:bob").await;
    assert_eq!(joined["history"][0]["text"], "psst");

    // A reply from bob, and a message to nobody.
    b1.send(json!({"type": "direct", "to": "alice", "text": "hi!", "ref": 2}))
        .await;
    assert_eq!(b1.recv_type("ack").await["seq"], 2);
    assert_eq!(a.recv_type("message").await["text"], "hi!");
    a.send(json!({"type": "direct", "to": "nobody", "text": "hello?", "ref": "d3"}))
        .await;
    let error = a.recv_type("error").await;
    assert_eq!(
        (error["code"].as_str(), error["ref"].as_str()),
        (Some("unknown_user"), Some("d3"))
    );
    server.stop().await;
}

#[actix_web::test]
async fn history_and_login_survive_a_restart() {
    let (dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut a = alice.ws().await;
    a.join("general").await;
    let seq = a.say("general", "remember me", "x").await;
    drop(a);
    server.stop().await;

    let server = TestServer::start(dir.path()).await;
    // Same cookie jar, new process state, new port: still logged in.
    let again = Client::with_jar(&server, alice.jar.clone());
    let cookie = alice.cookie_header().unwrap();
    again
        .jar
        .add_cookie_str(&cookie, &server.url("/").parse().unwrap());
    let page = again.get("/").await;
    assert_eq!(page.status(), 200, "the session survived the restart");
    assert!(page.text().await.unwrap().contains("data-user=\"alice\""));
    let mut a = again.ws().await;
    let joined = a.join("general").await;
    let last = &joined["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        (last["seq"].as_u64(), last["text"].as_str()),
        (Some(seq), Some("remember me"))
    );
    assert_eq!(
        a.say("general", "and after", "y").await,
        seq + 1,
        "seq continues without a gap"
    );
    server.stop().await;
}

#[actix_web::test]
async fn login_rules() {
    let (_dir, server) = TestServer::fresh().await;
    let anonymous = Client::new(&server);
    let page = anonymous.get("/").await;
    assert_eq!(
        (
            page.status().as_u16(),
            page.headers()["location"].to_str().unwrap()
        ),
        (303, "/login")
    );
    let ws = anonymous.try_ws().await.unwrap_err();
    assert!(ws.to_string().contains("401"), "{ws}");

    let alice = Client::logged_in(&server, "alice").await;
    let cookie_before = alice.cookie_header().unwrap();
    let set_cookie = alice.login_with("alice", PASSWORD).await;
    let header = set_cookie.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );
    assert_ne!(
        alice.cookie_header().unwrap(),
        cookie_before,
        "session id rotates at login"
    );

    let mallory = Client::new(&server);
    let wrong = mallory.login_with("alice", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("Wrong password"));
    assert_eq!(mallory.get("/").await.status(), 303, "still logged out");

    for bad in ["", "has space", "<script>", &"x".repeat(33)] {
        assert_eq!(
            mallory.login_with(bad, PASSWORD).await.status(),
            400,
            "name {bad:?}"
        );
    }
    assert_eq!(
        mallory.login_with("newbie", "short").await.status(),
        400,
        "weak password"
    );

    // The page says which it means: a mistyped name is not registered,
    // a taken one is not logged into by "Create account"; and a name that
    // differs from a taken one only in case is refused.
    let post = |name: &'static str, action: &'static str| {
        mallory
            .http
            .post(server.url("/login"))
            .form(&[("name", name), ("password", PASSWORD), ("action", action)])
            .send()
    };
    let typo = post("alcie", "login").await.unwrap();
    assert_eq!(typo.status(), 401);
    assert!(typo.text().await.unwrap().contains("No account is called"));
    assert_eq!(
        post("alcie", "login").await.unwrap().status(),
        401,
        "still no account"
    );
    assert_eq!(post("alice", "register").await.unwrap().status(), 409);
    assert_eq!(post("Alice", "register").await.unwrap().status(), 400);
    assert_eq!(post("carla", "register").await.unwrap().status(), 303);

    let logout = alice.http.post(server.url("/logout")).send().await.unwrap();
    assert_eq!(logout.status(), 303);
    assert_eq!(alice.get("/").await.status(), 303, "logged out");
    server.stop().await;
}

#[actix_web::test]
async fn health_endpoints() {
    let (_dir, server) = TestServer::fresh().await;
    let client = Client::new(&server);
    let live: serde_json::Value = client.get("/healthz").await.json().await.unwrap();
    assert_eq!(live["status"], "ok");
    assert!(!live["node"].as_str().unwrap().is_empty());
    let ready = client.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    server.stop().await;
}

/// A crowd joining at once reaches members as a few presence updates, not
/// one per join (which grows with the square of the crowd), and the last
/// one names everybody.
#[actix_web::test]
async fn a_burst_of_joins_is_announced_in_a_few_presence_frames() {
    const CROWD: usize = 40;
    let (_dir, server) = TestServer::fresh().await;
    let watcher = Client::logged_in(&server, "watcher").await;
    let mut w = watcher.ws().await;
    w.join("hall").await;
    let mut crowd = Vec::new();
    for i in 0..CROWD {
        let client = Client::logged_in(&server, &format!("guest{i}")).await;
        crowd.push(client);
    }
    let mut sockets = Vec::new();
    for client in &crowd {
        sockets.push(client.ws().await);
    }
    for ws in &mut sockets {
        ws.send(json!({"type": "join", "room": "hall"})).await;
    }
    let mut frames = 0;
    let mut last = json!(null);
    // Until presence settles: nothing for half a second.
    loop {
        let arrived = w.frames_for(Duration::from_millis(500)).await;
        if arrived.is_empty() {
            break;
        }
        for frame in arrived.iter().filter(|frame| frame["type"] == "presence") {
            frames += 1;
            last = frame["online"].clone();
        }
    }
    assert_eq!(last.as_array().map(Vec::len), Some(CROWD + 1), "{last}");
    assert!(
        frames < CROWD / 4,
        "{frames} presence frames for {CROWD} joins"
    );
    server.stop().await;
}

#[actix_web::test]
async fn messages_are_edited_and_deleted_live_in_history_and_in_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = rookery::Config::local(dir.path());
    config.admin_users = vec!["root".into()];
    rookery::server::create_operator_account(&config, "root", PASSWORD)
        .await
        .unwrap();
    let server = TestServer::start_with(config).await;
    let (alice, bob) = (
        Client::logged_in(&server, "alice").await,
        Client::logged_in(&server, "bob").await,
    );
    let (mut a, mut b) = (alice.ws().await, bob.ws().await);
    a.join("general").await;
    b.join("general").await;
    let first = a.say("general", "helo", "a1").await;
    let id = b.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    a.send(json!({"type":"edit","room":"general","id":id,"text":"hello","ref":"e1"}))
        .await;
    let ack = a.recv_type("ack").await;
    assert_eq!(
        (ack["ref"].clone(), ack["seq"].as_u64()),
        (json!("e1"), Some(first + 1))
    );
    let edit = b.recv_type("edit").await;
    assert_eq!(
        (
            edit["id"].as_str(),
            edit["text"].as_str(),
            edit["seq"].as_u64(),
            edit["from"].as_str()
        ),
        (
            Some(id.as_str()),
            Some("hello"),
            Some(first + 1),
            Some("alice")
        )
    );

    // Only the author changes a message; what is not there cannot be.
    let bobs_edit = json!({"type":"edit","room":"general","id":id,"text":"mine now","ref":"b1"});
    assert_eq!(refused(&mut b, bobs_edit).await, "forbidden");
    let bobs_delete = json!({"type":"delete","room":"general","id":id,"ref":"b2"});
    assert_eq!(refused(&mut b, bobs_delete).await, "forbidden");
    let unknown = json!({"type":"edit","room":"general","id":"0000","text":"x","ref":"a2"});
    assert_eq!(refused(&mut a, unknown).await, "not_found");
    let blank = json!({"type":"edit","room":"general","id":id,"text":" ","ref":"a3"});
    assert_eq!(refused(&mut a, blank).await, "empty_text");
    let elsewhere = json!({"type":"delete","room":"random","id":id,"ref":"a4"});
    assert_eq!(refused(&mut a, elsewhere).await, "not_joined");
    let long_id = json!({"type":"delete","room":"general","id":"x".repeat(65),"ref":"a5"});
    assert_eq!(refused(&mut a, long_id).await, "invalid_frame");

    // Bob goes away having seen the edit; the delete and a new message
    // come back to him in the replay.
    drop(b);
    a.send(json!({"type":"delete","room":"general","id":id,"ref":"d1"}))
        .await;
    assert_eq!(a.recv_type("ack").await["seq"].as_u64(), Some(first + 2));
    assert_eq!(a.recv_type("delete").await["id"], id.as_str());
    let after = a.say("general", "after", "a6").await;
    let mut b = bob.ws().await;
    b.send(json!({"type":"resume","rooms":{"general": first + 1}}))
        .await;
    let joined = b.recv_type("joined").await;
    assert_eq!(joined["recovered"], true);
    let replayed: Vec<u64> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(replayed, [after]);
    let changes = joined["changes"]
        .as_array()
        .expect("the delete is replayed");
    assert_eq!(changes.len(), 1, "{joined}");
    assert_eq!(
        (
            changes[0]["type"].as_str(),
            changes[0]["id"].as_str(),
            changes[0]["seq"].as_u64()
        ),
        (Some("delete"), Some(id.as_str()), Some(first + 2))
    );

    // A fresh page shows the message where it was, deleted, without text.
    let carol = Client::logged_in(&server, "carol").await;
    let mut c = carol.ws().await;
    let page = c.join("general").await;
    assert!(
        page.get("changes").is_none(),
        "a fresh join needs no changes: {page}"
    );
    let history = page["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "the changes are in their message: {page}");
    assert_eq!(history[0]["deleted"], true);
    assert!(history[0].get("text").is_none(), "{}", history[0]);
    assert_eq!(history[1]["text"], "after");

    // An operator deletes anyone's message; an edit of it shows in history.
    let root = Client::logged_in(&server, "root").await;
    let mut r = root.ws().await;
    r.join("general").await;
    let later = b.say("general", "bob's", "b3").await;
    let bobs_id = r.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.send(json!({"type":"edit","room":"general","id":bobs_id,"text":"bob's, fixed","ref":"b4"}))
        .await;
    b.recv_type("ack").await;
    c.send(json!({"type":"history","room":"general"})).await;
    let page = c.recv_type("history").await;
    let edited = &page["messages"].as_array().unwrap()[2];
    assert_eq!(
        (edited["seq"].as_u64(), edited["text"].as_str()),
        (Some(later), Some("bob's, fixed"))
    );
    assert!(edited["edited"].is_string(), "{edited}");
    r.send(json!({"type":"delete","room":"general","id":bobs_id,"ref":"r1"}))
        .await;
    r.recv_type("ack").await;
    assert_eq!(b.recv_type("delete").await["from"], "root");
    server.stop().await;
}

/// Sends `frame` and returns the code of the error that answers it.
async fn refused(ws: &mut common::Ws, frame: Value) -> String {
    let reference = frame["ref"].clone();
    ws.send(frame).await;
    let error = ws.recv_type("error").await;
    assert_eq!(error["ref"], reference, "{error}");
    error["code"].as_str().unwrap().to_owned()
}
