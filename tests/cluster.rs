//! Several replicas as one chat, for every broker: the same suite runs
//! against Redis, RabbitMQ and NATS (see the macro at the bottom). Replicas
//! are real `rookery` processes sharing one MongoDB-protocol database;
//! brokers are the real servers, killed and restarted by the tests.
//!
//! Over 400 lines: one suite, run once per broker by the macro.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{serial, BrokerKind, Cluster};
use common::{with_idle, Client, Ws};
use reqwest::cookie::Jar;
use serde_json::{json, Value};

fn send_frame(room: &str, text: &str, reference: &str) -> Value {
    json!({"type": "send", "room": room, "text": text, "ref": reference})
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

fn texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// The next `count` messages' texts, each with when it arrived.
async fn arrivals(ws: &mut Ws, count: usize) -> Vec<(String, Instant)> {
    let mut arrived = Vec::with_capacity(count);
    while arrived.len() < count {
        let message = ws.recv_type("message").await;
        arrived.push((message["text"].as_str().unwrap().to_owned(), Instant::now()));
    }
    arrived
}

/// Six users on three replicas all see the same few thousand messages:
/// each exactly once, in `seq` order with no gap; presence and typing
/// cross replicas. Prints the cross-replica latency it observed.
async fn exactly_once_in_order_with_presence_and_typing(kind: BrokerKind) {
    let _serial = serial().await;
    let cluster = Cluster::start(kind, 3).await;
    const USERS: usize = 6;
    const PER_USER: usize = 400;
    let names: Vec<String> = (0..USERS).map(|n| format!("user{n}")).collect();
    let mut sockets = Vec::new();
    for (n, name) in names.iter().enumerate() {
        sockets.push(cluster.user(name, n % 3, "lobby").await.1);
    }
    let everyone: Vec<&str> = names.iter().map(String::as_str).collect();
    for ws in &mut sockets {
        ws.wait_online("lobby", &everyone, Duration::from_secs(20))
            .await;
    }

    sockets[0]
        .send(json!({"type": "typing", "room": "lobby", "active": true}))
        .await;
    for ws in &mut sockets[1..3] {
        let typing = ws.recv_type("typing").await;
        assert_eq!(
            (typing["user"].as_str(), typing["active"].as_bool()),
            (Some("user0"), Some(true))
        );
    }

    // Everyone sends at once, pipelined, then reads the whole room.
    for (n, ws) in sockets.iter_mut().enumerate() {
        for i in 0..PER_USER {
            ws.send(send_frame(
                "lobby",
                &format!("u{n}-{i}"),
                &format!("{n}-{i}"),
            ))
            .await;
        }
    }
    let total = USERS * PER_USER;
    let expected: BTreeSet<String> = (0..USERS)
        .flat_map(|n| (0..PER_USER).map(move |i| format!("u{n}-{i}")))
        .collect();
    let reads = sockets.iter_mut().map(|ws| async move {
        let mut acks = 0;
        let mut messages = Vec::new();
        while messages.len() < total || acks < PER_USER {
            let frame = ws.recv().await;
            match frame["type"].as_str() {
                Some("message") => messages.push(frame),
                Some("ack") => acks += 1,
                Some("error") => panic!("a send failed: {frame}"),
                _ => {}
            }
        }
        messages
    });
    for messages in futures_util::future::join_all(reads).await {
        assert_eq!(
            seqs(&messages),
            (1..=total as u64).collect::<Vec<_>>(),
            "every seq once, in order"
        );
        let got: BTreeSet<String> = texts(&messages).into_iter().collect();
        assert_eq!(got.len(), total, "no message twice");
        assert!(got == expected, "exactly the messages sent");
    }

    // Latency: one sender, paced, read on the two other replicas meanwhile.
    const SAMPLES: usize = 1000;
    let (sender, rest) = sockets.split_at_mut(1);
    let sender = &mut sender[0];
    let sent_at: std::cell::RefCell<HashMap<String, Instant>> = Default::default();
    let send = async {
        for i in 0..SAMPLES {
            let text = format!("lat-{i}");
            sent_at.borrow_mut().insert(text.clone(), Instant::now());
            sender.send(send_frame("lobby", &text, "lat")).await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (node1, node2) = rest.split_at_mut(1);
    let (_, on_node1, on_node2) = tokio::join!(
        send,
        arrivals(&mut node1[0], SAMPLES),
        arrivals(&mut node2[0], SAMPLES)
    );
    let mut latencies: Vec<Duration> = on_node1
        .into_iter()
        .chain(on_node2)
        .map(|(text, at)| at - sent_at.borrow()[&text])
        .collect();
    latencies.sort_unstable();
    eprintln!(
        "{kind:?}: cross-replica latency over {} deliveries: p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap()
    );
    cluster.assert_every_envelope_read().await;
}

/// The broker dies mid-chat and comes back: same-replica chat never
/// stops, and afterwards every member has the whole sequence.
async fn survives_a_broker_outage(kind: BrokerKind) {
    let _serial = serial().await;
    let mut cluster = Cluster::start(kind, 2).await;
    let (_a, mut alice) = cluster.user("alice", 0, "ops").await;
    let (_b, mut bob) = cluster.user("bob", 0, "ops").await;
    let (_c, mut carol) = cluster.user("carol", 1, "ops").await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        ws.wait_online("ops", &["alice", "bob", "carol"], Duration::from_secs(20))
            .await;
    }
    let mut seen: Vec<Vec<Value>> = vec![Vec::new(), Vec::new(), Vec::new()];
    for i in 0..10 {
        alice
            .say("ops", &format!("before-{i}"), &format!("b{i}"))
            .await;
    }
    for (n, ws) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        seen[n].extend(ws.messages(10).await);
    }
    let before = cluster.replicas[0].metrics().await;
    assert_eq!(before.value("rookery_broker_connected"), 1.0);

    cluster.broker.kill();
    with_idle(
        cluster.wait_connected(false),
        &mut [&mut alice, &mut bob, &mut carol],
    )
    .await;
    let during = cluster.replicas[0].metrics().await;
    assert_eq!(
        during.value("rookery_broker_connected"),
        0.0,
        "the gauge shows the outage"
    );
    for i in 0..10 {
        alice
            .say("ops", &format!("during-{i}"), &format!("d{i}"))
            .await;
    }
    // Local chat carries on with the broker down.
    let live = bob.messages(10).await;
    assert_eq!(
        texts(&live),
        (0..10).map(|i| format!("during-{i}")).collect::<Vec<_>>()
    );
    seen[1].extend(live);
    for i in 0..5 {
        carol
            .say("ops", &format!("carol-during-{i}"), &format!("c{i}"))
            .await;
    }

    cluster.broker.spawn();
    with_idle(
        cluster.wait_connected(true),
        &mut [&mut alice, &mut bob, &mut carol],
    )
    .await;
    let after = cluster.replicas[0].metrics().await;
    assert_eq!(after.value("rookery_broker_connected"), 1.0);
    assert!(
        after.value("rookery_broker_reconnects_total")
            > before.value("rookery_broker_reconnects_total"),
        "the reconnect is counted"
    );
    for i in 0..10 {
        alice
            .say("ops", &format!("after-{i}"), &format!("a{i}"))
            .await;
    }
    for (n, ws) in [&mut alice, &mut bob, &mut carol].into_iter().enumerate() {
        let missing = 35 - seen[n].len();
        seen[n].extend(ws.messages(missing).await);
        assert_eq!(
            seqs(&seen[n]),
            (1..=35).collect::<Vec<u64>>(),
            "member {n}: the full sequence, once, in order"
        );
        ws.none_for("message", Duration::from_millis(500)).await;
    }
    assert_eq!(
        texts(&seen[2])[10..20],
        texts(&seen[0])[10..20],
        "the outage's messages reached the other replica"
    );
}

/// A client moves to a replica that is behind it (that replica lost its
/// broker while the client's old one went on) and resumes: it gets
/// nothing it already has, neither in `joined` nor when the lagging
/// replica catches up after the broker returns, and the members who were
/// there all along get the outage's messages once, in order, even with
/// messages arriving while the replica reconnects.
async fn resume_on_a_lagging_replica_repeats_nothing(kind: BrokerKind) {
    let _serial = serial().await;
    let mut cluster = Cluster::start(kind, 2).await;
    let (_a, mut alice) = cluster.user("alice", 0, "lag").await;
    let (_x, mut xavier) = cluster.user("xavier", 1, "lag").await;
    for ws in [&mut alice, &mut xavier] {
        ws.wait_online("lag", &["alice", "xavier"], Duration::from_secs(20))
            .await;
    }
    for i in 1..=3 {
        alice.say("lag", &format!("m{i}"), &format!("r{i}")).await;
    }
    let mut xavier_seen = xavier.messages(3).await;
    alice.messages(3).await;

    cluster.broker.kill();
    with_idle(
        cluster.wait_connected(false),
        &mut [&mut alice, &mut xavier],
    )
    .await;
    for i in 4..=10 {
        alice.say("lag", &format!("m{i}"), &format!("r{i}")).await;
    }
    assert_eq!(seqs(&alice.messages(7).await), (4..=10).collect::<Vec<_>>());

    // Yvonne had everything up to 10 on replica 0 and resumes on replica 1,
    // which stands at 3.
    let yvonne = Client::at(
        cluster.replicas[1].url(""),
        std::sync::Arc::new(reqwest::cookie::Jar::default()),
    );
    yvonne.login("yvonne").await;
    let mut yvonne_ws = yvonne.ws().await;
    yvonne_ws
        .send(json!({"type": "resume", "rooms": {"lag": 10}}))
        .await;
    let joined = yvonne_ws.recv_type("joined").await;
    assert_eq!(joined["history"], json!([]), "{joined}");
    assert_eq!(joined["recovered"], true, "{joined}");

    cluster.broker.spawn();
    // Messages keep coming while replica 1 reconnects and catches up.
    for i in 11..=20 {
        alice.say("lag", &format!("m{i}"), &format!("r{i}")).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    with_idle(
        cluster.wait_connected(true),
        &mut [&mut alice, &mut xavier, &mut yvonne_ws],
    )
    .await;
    for i in 21..=25 {
        alice.say("lag", &format!("m{i}"), &format!("r{i}")).await;
    }
    let yvonne_seen = yvonne_ws.messages(15).await;
    assert_eq!(
        seqs(&yvonne_seen),
        (11..=25).collect::<Vec<_>>(),
        "only what came after 10, once, in order"
    );
    xavier_seen.extend(xavier.messages(22).await);
    assert_eq!(seqs(&xavier_seen), (1..=25).collect::<Vec<_>>());
    for ws in [&mut xavier, &mut yvonne_ws] {
        ws.none_for("message", Duration::from_millis(700)).await;
    }
}

/// A replica is SIGKILLed under its clients: one reconnects elsewhere and
/// resumes without losing or repeating a message; one never comes back and
/// drops out of the online list within the presence bound.
async fn survives_a_replica_crash(kind: BrokerKind) {
    let _serial = serial().await;
    let mut cluster = Cluster::start(kind, 3).await;
    let (xavier_client, mut xavier) = cluster.user("xavier", 0, "crash").await;
    let (_w, mut walter) = cluster.user("walter", 0, "crash").await;
    let (_y, mut yvonne) = cluster.user("yvonne", 1, "crash").await;
    let (_z, mut zoe) = cluster.user("zoe", 2, "crash").await;
    let everyone = ["walter", "xavier", "yvonne", "zoe"];
    for ws in [&mut xavier, &mut walter, &mut yvonne, &mut zoe] {
        ws.wait_online("crash", &everyone, Duration::from_secs(20))
            .await;
    }
    let mut acked = Vec::new();
    for i in 0..10 {
        acked.push(
            yvonne
                .say("crash", &format!("y{i}"), &format!("y{i}"))
                .await,
        );
        acked.push(zoe.say("crash", &format!("z{i}"), &format!("z{i}")).await);
        acked.push(
            xavier
                .say("crash", &format!("x{i}"), &format!("x{i}"))
                .await,
        );
    }
    let mut shown: Vec<Value> = xavier.messages(20).await;

    cluster.replicas[0].kill();
    shown.extend(
        xavier
            .until_closed(Duration::from_secs(20))
            .await
            .into_iter()
            .filter(|f| f["type"] == "message"),
    );
    for i in 10..30 {
        acked.push(
            yvonne
                .say("crash", &format!("y{i}"), &format!("y{i}"))
                .await,
        );
    }

    // The client reconnects to another replica with the same cookie.
    let last = shown.last().map_or(0, |m| m["seq"].as_u64().unwrap());
    let elsewhere = Client::at(cluster.replicas[1].url(""), xavier_client.jar.clone());
    let mut xavier = elsewhere.ws().await;
    shown.extend(xavier.resume("crash", last).await);
    for i in 0..10 {
        acked.push(
            zoe.say("crash", &format!("z-after-{i}"), &format!("za{i}"))
                .await,
        );
    }
    let total = acked.len();
    while shown.len() < total {
        shown.push(xavier.recv_type("message").await);
    }
    acked.sort_unstable();
    assert_eq!(
        seqs(&shown),
        acked,
        "every acked message shown once, in order"
    );
    xavier.none_for("message", Duration::from_millis(500)).await;

    // walter never came back: his replica's presence expires.
    with_idle(
        yvonne.wait_online(
            "crash",
            &["xavier", "yvonne", "zoe"],
            Duration::from_secs(30),
        ),
        &mut [&mut xavier, &mut zoe],
    )
    .await;
}

/// Direct messages between users on different replicas reach every
/// connection of both, once and in order, with no room joined; a third user
/// sees nothing of them.
async fn direct_messages_cross_replicas(kind: BrokerKind) {
    let _serial = serial().await;
    let cluster = Cluster::start(kind, 3).await;
    let (_a, mut alice) = cluster.user("alice", 0, "dm").await;
    let (bob_client, mut bob) = cluster.user("bob", 1, "dm").await;
    let (_c, mut carol) = cluster.user("carol", 2, "dm").await;
    // bob's second tab, on yet another replica.
    let elsewhere = Client::at(cluster.replicas[2].url(""), bob_client.jar.clone());
    let mut bob_too = elsewhere.ws().await;
    for ws in [&mut alice, &mut bob, &mut carol] {
        ws.wait_online("dm", &["alice", "bob", "carol"], Duration::from_secs(20))
            .await;
    }

    let mut acked = Vec::new();
    for i in 0..20 {
        let (from, to, ws) = if i % 2 == 0 {
            ("alice", "bob", &mut alice)
        } else {
            ("bob", "alice", &mut bob)
        };
        let ack = ws
            .direct(to, &format!("{from}:{i}"), &format!("d{i}"))
            .await;
        assert_eq!(ack["room"], "@alice:bob");
        acked.push(ack["seq"].as_u64().unwrap());
    }
    let expected: Vec<String> = (0..20)
        .map(|i| format!("{}:{i}", if i % 2 == 0 { "alice" } else { "bob" }))
        .collect();
    for ws in [&mut alice, &mut bob, &mut bob_too] {
        let messages: Vec<Value> = ws.messages(20).await;
        assert!(messages.iter().all(|m| m["room"] == "@alice:bob"));
        assert_eq!(texts(&messages), expected);
        assert_eq!(seqs(&messages), acked, "once each, in seq order");
    }
    carol.none_for("message", Duration::from_millis(500)).await;
    cluster.assert_every_envelope_read().await;
}

/// Offline messages, delivery confirmations, fast messages, read receipts,
/// admin events and single-session, each crossing replicas: the sender and
/// the recipient are never on the same one.
async fn guarantees_and_policies_cross_replicas(kind: BrokerKind) {
    let _serial = serial().await;
    let extra = [
        ("SINGLE_SESSION", "true".to_owned()),
        ("ADMIN_USERS", "root".to_owned()),
    ];
    let cluster = Cluster::start_with(kind, 2, &extra).await;
    cluster.create_operator("root");
    let (_r, mut root) = cluster.user("root", 0, "lobby").await;
    let (alice_client, mut alice) = cluster.user("alice", 0, "lobby").await;

    // Bob registers on replica 1 and leaves; alice writes to him.
    let bob_client = Client::at(cluster.replicas[1].url(""), Default::default());
    bob_client.login("bob").await;
    alice
        .send(json!({"type": "direct", "to": "bob", "text": "while away", "ref": "w", "confirm": true}))
        .await;
    alice.recv_type("ack").await;

    // He comes back on replica 1: pending, fetched, and alice on replica 0
    // hears it was delivered. Root (admin, replica 0) sees him connect there.
    let mut bob = bob_client.ws().await;
    assert_eq!(bob.recv_type("pending").await["count"], 1);
    bob.send(json!({"type": "fetch_missed"})).await;
    let missed = bob.recv_type("message").await;
    assert_eq!(missed["text"], "while away");
    assert_eq!(bob.recv_type("fetch_missed_complete").await["left"], 0);
    let delivered = alice.recv_type("delivered").await;
    assert_eq!(
        (delivered["ref"].as_str(), delivered["to"].as_str()),
        (Some("w"), Some("bob"))
    );
    let connected = loop {
        let event = root.recv_type("user_connected").await;
        if event["user"] == "bob" {
            break event;
        }
    };
    assert_eq!(connected["node"], cluster.replicas[1].node.as_str());

    // Live, across replicas: delivered as soon as bob's connection has it.
    alice
        .send(json!({"type": "direct", "to": "bob", "text": "live", "ref": "l", "confirm": true}))
        .await;
    assert_eq!(bob.recv_type("message").await["text"], "live");
    assert_eq!(alice.recv_type("delivered").await["ref"], "l");

    // Fast messages and read receipts cross too.
    bob.join("lobby").await;
    alice
        .send(json!({"type": "send", "room": "lobby", "text": "zoom", "delivery": "fast"}))
        .await;
    let fast = bob.recv_type("message").await;
    assert_eq!(
        (fast["text"].as_str(), fast["seq"].clone()),
        (Some("zoom"), Value::Null)
    );
    let seq = alice.say("lobby", "read me", "r").await;
    bob.recv_type("message").await;
    bob.send(json!({"type": "read", "room": "lobby", "seq": seq}))
        .await;
    let read = alice.recv_type("read").await;
    assert_eq!(
        (read["user"].as_str(), read["seq"].as_u64()),
        (Some("bob"), Some(seq))
    );

    // Single session: alice's new connection on replica 1 closes her
    // connection on replica 0.
    let alice_elsewhere = Client::at(cluster.replicas[1].url(""), alice_client.jar.clone());
    let mut newer = alice_elsewhere.ws().await;
    alice.until_closed(Duration::from_secs(10)).await;
    assert_eq!(alice.close_reason.as_deref(), Some("replaced"));
    newer.join("lobby").await;
    newer.say("lobby", "moved", "m").await;
    newer.none_for("error", Duration::from_millis(500)).await;

    // Logging out on replica 0 closes that login's socket on replica 1.
    let response = alice_client
        .http
        .post(cluster.replicas[0].url("/logout"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection() || response.status().is_success());
    newer.until_closed(Duration::from_secs(10)).await;
    assert_eq!(newer.close_reason.as_deref(), Some("logged_out"));
    cluster.assert_every_envelope_read().await;
}

/// Names that are syntax to some broker (`.`, `x.`, `a..b`, sixty-four
/// dots) are only names: their rooms, their users' direct messages and
/// their presence cross replicas, and the broker link stays up for everyone
/// else on both replicas. A room named with a wildcard (`*`, `>`, `#`) is
/// refused as a name and costs the link nothing either.
async fn hostile_names_are_only_names(kind: BrokerKind) {
    let _serial = serial().await;
    let cluster = Cluster::start(kind, 2).await;
    let long = ".".repeat(64);
    let rooms = [".", "a..b", long.as_str()];
    let (_x, mut dotted) = cluster.user("x.", 0, rooms[0]).await;
    let (_d, mut dots) = cluster.user("..", 1, rooms[0]).await;
    for room in &rooms[1..] {
        dotted.join(room).await;
        dots.join(room).await;
    }
    for ws in [&mut dotted, &mut dots] {
        ws.wait_online(".", &["..", "x."], Duration::from_secs(20))
            .await;
    }
    for room in rooms {
        let first = dotted.say(room, "from x.", "a").await;
        let second = dots.say(room, "from ..", "b").await;
        for ws in [&mut dotted, &mut dots] {
            let messages = ws.messages(2).await;
            assert!(messages.iter().all(|m| m["room"] == room), "{messages:?}");
            assert_eq!(texts(&messages), ["from x.", "from .."], "in {room}");
            assert_eq!(seqs(&messages), [first, second], "in {room}");
        }
    }
    let ack = dotted.direct("..", "just us", "dm").await;
    assert_eq!(ack["room"], "@..:x.");
    let received = dots.recv_type("message").await;
    assert_eq!(
        (received["room"].as_str(), received["text"].as_str()),
        (Some("@..:x."), Some("just us"))
    );

    for wildcard in ["*", ">", "#", "a.*", "a.>"] {
        dotted.send(json!({"type": "join", "room": wildcard})).await;
        let refused = dotted.recv_type("error").await;
        assert_eq!(refused["code"], "invalid_room", "{wildcard}: {refused}");
    }

    // The link held for plain users on both replicas.
    let (_a, mut alice) = cluster.user("alice", 0, "lobby").await;
    let (_b, mut bob) = cluster.user("bob", 1, "lobby").await;
    alice
        .wait_online("lobby", &["alice", "bob"], Duration::from_secs(20))
        .await;
    let seq = bob.say("lobby", "still linked", "s").await;
    let message = alice.recv_type("message").await;
    assert_eq!(
        (message["text"].as_str(), message["seq"].as_u64()),
        (Some("still linked"), Some(seq))
    );
    cluster.wait_connected(true).await;
    for replica in &cluster.replicas {
        let metrics = replica.metrics().await;
        assert_eq!(metrics.value("rookery_broker_channels_refused_total"), 0.0);
        assert_eq!(
            metrics.value("rookery_broker_reconnects_total"),
            0.0,
            "{}",
            replica.log()
        );
    }
}

/// Only replicas speak on the cluster bus. A process that reaches the
/// broker publishes what a replica would: a message in a room as an
/// operator, with the room's next seq; a real replica's message it caught
/// and altered (another seq, another text); a disconnect of bob for every
/// replica; a copy with a made-up signature; an envelope larger than any
/// replica sends. None of it is delivered or acted on, each is dropped and
/// counted, and the replicas go on hearing each other.
async fn only_replicas_speak_on_the_bus(kind: BrokerKind) {
    use rookery::cluster::{room_channel, BrokerEvent, REPLICAS_CHANNEL};
    let _serial = serial().await;
    let cluster = Cluster::start(kind, 2).await;
    let (_a, mut alice) = cluster.user("alice", 0, "lobby").await;
    let (_b, mut bob) = cluster.user("bob", 1, "lobby").await;
    alice
        .wait_online("lobby", &["alice", "bob"], Duration::from_secs(20))
        .await;
    let (mut intruder, mut heard) = cluster.broker.intruder().await;
    let lobby = room_channel("lobby");
    intruder.subscribe(&lobby).await.unwrap();

    let first = bob.say("lobby", "first", "1").await;
    assert_eq!(alice.recv_type("message").await["text"], "first");
    let caught = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), heard.recv())
            .await
            .expect("the intruder hears the room's channel")
            .unwrap();
        if let BrokerEvent::Message { payload, .. } = event {
            let text = String::from_utf8_lossy(&payload).into_owned();
            if text.contains("\"text\":\"first\"") {
                break payload;
            }
        }
    };
    // Only the JSON is altered; whatever is in front of it is kept.
    let next = first + 1;
    let at = caught
        .windows(8)
        .position(|window| window == b"{\"node\":")
        .expect("an envelope");
    let body = std::str::from_utf8(&caught[at..])
        .unwrap()
        .replace(&format!("\"seq\":{first},"), &format!("\"seq\":{next},"))
        .replace("\"text\":\"first\"", "\"text\":\"fakes\"");
    let altered = [&caught[..at], body.as_bytes()].concat();
    assert_eq!(altered.len(), caught.len());
    assert_ne!(altered, caught);
    let forged = json!({"node": "intruder", "event": {"kind": "messages", "room": "lobby",
        "messages": [{"room": "lobby", "seq": next, "from": "system:admin", "text": "forged",
                      "ts": 1, "id": "forged1"}]}});
    let kick = json!({"node": "intruder", "event": {"kind": "user_disconnected", "user": "bob",
        "reason": "revoked", "until": 4_102_444_800_000u64}});
    let forged = serde_json::to_vec(&forged).unwrap();
    let kick = serde_json::to_vec(&kick).unwrap();
    let made_up = [vec![0u8; 32], forged.clone()].concat();
    let oversized = [vec![b' '; 600 * 1024], forged.clone()].concat();
    for (channel, payload) in [
        (lobby.as_str(), forged),
        (lobby.as_str(), altered),
        (REPLICAS_CHANNEL, kick),
        (lobby.as_str(), made_up),
        (lobby.as_str(), oversized),
    ] {
        intruder.publish(channel, payload).await.unwrap();
    }

    // Every replica has seen them all (at most 10 s) before bob speaks.
    let dropped = |metrics: &common::Metrics| {
        (
            metrics.value(r#"rookery_broker_dropped_total{reason="signature"}"#),
            metrics.value(r#"rookery_broker_dropped_total{reason="size"}"#),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    for replica in &cluster.replicas {
        while dropped(&replica.metrics().await) < (4.0, 1.0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let seq = bob.say("lobby", "real", "2").await;
    assert_eq!(seq, next);
    let message = alice.recv_type("message").await;
    assert_eq!(
        (
            message["text"].as_str(),
            message["from"].as_str(),
            message["seq"].as_u64()
        ),
        (Some("real"), Some("bob"), Some(next)),
        "a forgery reached alice"
    );
    // Bob was not disconnected, and heard no forgery either.
    let seq = alice.say("lobby", "still here?", "3").await;
    let messages = bob.messages(3).await;
    assert_eq!(texts(&messages), ["first", "real", "still here?"]);
    assert_eq!(seqs(&messages), [first, next, seq]);
    for replica in &cluster.replicas {
        assert_eq!(
            dropped(&replica.metrics().await),
            (4.0, 1.0),
            "{} counts 4 forgeries and 1 oversized",
            replica.node
        );
    }
}

/// A user's message budget is one across replicas: what they spent on
/// one replica is charged on the other within a report period, so two
/// replicas do not give them twice the rate. The report is an ordinary
/// cluster event; one broker shows it.
#[actix_web::test]
async fn a_users_budget_is_one_across_replicas() {
    let _serial = serial().await;
    let extra = [
        ("USER_RATE_LIMIT", "1".to_owned()),
        ("USER_RATE_BURST", "10".to_owned()),
    ];
    let cluster = Cluster::start_with(BrokerKind::Nats, 2, &extra).await;
    let (client, mut here) = cluster.user("ann", 0, "lobby").await;
    let elsewhere = Client::at(cluster.replicas[1].url(""), client.jar.clone());
    let mut there = elsewhere.ws().await;
    there.join("lobby").await;
    for n in 0..10 {
        here.say("lobby", &format!("here {n}"), &format!("h{n}"))
            .await;
    }
    // Reported within a second; by then the other replica's bucket has
    // refilled about two.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for n in 0..10 {
        there
            .send(json!({"type": "send", "room": "lobby", "text": format!("there {n}"), "ref": n}))
            .await;
    }
    let acked = there.acks_and_refusals(10).await.0.len();
    assert!(
        (1..=4).contains(&acked),
        "{acked} of 10 taken on the second replica after the first spent the budget"
    );
}

/// The suite, once per broker, as `<broker>::<case>`.
/// Edits and deletes cross replicas like messages: live, in a replay, in
/// direct rooms; two edits made at once on two replicas end with the one
/// of the later seq everywhere.
async fn edits_and_deletes_cross_replicas(kind: BrokerKind) {
    let _serial = serial().await;
    let cluster = Cluster::start(kind, 2).await;
    let (alice_client, mut alice) = cluster.user("alice", 0, "edits").await;
    let (bob_client, mut bob) = cluster.user("bob", 1, "edits").await;
    for ws in [&mut alice, &mut bob] {
        ws.wait_online("edits", &["alice", "bob"], Duration::from_secs(20))
            .await;
    }
    let first = alice.say("edits", "helo", "a1").await;
    let id = bob.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .send(json!({"type":"edit","room":"edits","id":id,"text":"hello","ref":"e1"}))
        .await;
    assert_eq!(
        alice.recv_type("ack").await["seq"].as_u64(),
        Some(first + 1)
    );
    let edit = bob.recv_type("edit").await;
    assert_eq!(
        (edit["id"].as_str(), edit["text"].as_str()),
        (Some(id.as_str()), Some("hello"))
    );

    // A direct message edited on the sender's replica changes on the
    // recipient's.
    let dm = alice.direct("bob", "see you at 5", "d1").await;
    let dm_id = bob.recv_type("message").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    alice
        .send(json!({"type":"edit","room":dm["room"],"id":dm_id,"text":"see you at 6","ref":"d2"}))
        .await;
    alice.recv_type("ack").await;
    assert_eq!(bob.recv_type("edit").await["text"], "see you at 6");

    // Bob is away while the message is deleted on the other replica.
    drop(bob);
    alice
        .send(json!({"type":"delete","room":"edits","id":id,"ref":"x1"}))
        .await;
    let deleted = alice.recv_type("ack").await["seq"].as_u64().unwrap();
    let mut bob = bob_client.ws().await;
    bob.send(json!({"type":"resume","rooms":{"edits": first + 1}}))
        .await;
    let joined = bob.recv_type("joined").await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let changes = joined["changes"]
        .as_array()
        .expect("the delete is replayed");
    assert_eq!(
        (changes[0]["type"].as_str(), changes[0]["seq"].as_u64()),
        (Some("delete"), Some(deleted)),
        "{joined}"
    );

    // Two tabs of alice on two replicas edit one message at once.
    let target = alice.say("edits", "v0", "a2").await;
    let message = bob.recv_type("message").await;
    assert_eq!(message["seq"].as_u64(), Some(target));
    let target_id = message["id"].as_str().unwrap().to_owned();
    let other = Client::at(cluster.replicas[1].url(""), alice_client.jar.clone());
    let mut alice_too = other.ws().await;
    alice_too.join("edits").await;
    let edit = |text: &str, reference: &str| json!({"type":"edit","room":"edits","id":target_id,"text":text,"ref":reference});
    alice.send(edit("from 0", "c0")).await;
    alice_too.send(edit("from 1", "c1")).await;
    let seq0 = alice.recv_type("ack").await["seq"].as_u64().unwrap();
    let seq1 = alice_too.recv_type("ack").await["seq"].as_u64().unwrap();
    let last = if seq0 > seq1 { "from 0" } else { "from 1" };
    // Every member sees both, in seq order, ending with the later one ...
    let seen: Vec<String> = [bob.recv_type("edit").await, bob.recv_type("edit").await]
        .iter()
        .map(|edit| edit["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen.last().map(String::as_str), Some(last));
    // ... and every replica's history says the same.
    for replica in &cluster.replicas {
        let carol = Client::at(replica.url(""), Arc::new(Jar::default()));
        carol.login("carol").await;
        let page = carol.ws().await.join("edits").await;
        let history = page["history"].as_array().unwrap();
        let message = history
            .iter()
            .find(|m| m["id"] == target_id.as_str())
            .unwrap();
        assert_eq!(message["text"], last, "{page}");
    }
    cluster.assert_every_envelope_read().await;
}

macro_rules! for_each_broker {
    ($($broker:ident => $kind:expr),* $(,)?) => {
        $(
            mod $broker {
                use super::*;

                #[actix_web::test]
                async fn exactly_once_in_order_with_presence_and_typing() {
                    super::exactly_once_in_order_with_presence_and_typing($kind).await;
                }

                #[actix_web::test]
                async fn direct_messages_cross_replicas() {
                    super::direct_messages_cross_replicas($kind).await;
                }

                #[actix_web::test]
                async fn guarantees_and_policies_cross_replicas() {
                    super::guarantees_and_policies_cross_replicas($kind).await;
                }

                #[actix_web::test]
                async fn survives_a_broker_outage() {
                    super::survives_a_broker_outage($kind).await;
                }

                #[actix_web::test]
                async fn resume_on_a_lagging_replica_repeats_nothing() {
                    super::resume_on_a_lagging_replica_repeats_nothing($kind).await;
                }

                #[actix_web::test]
                async fn edits_and_deletes_cross_replicas() {
                    super::edits_and_deletes_cross_replicas($kind).await;
                }

                #[actix_web::test]
                async fn hostile_names_are_only_names() {
                    super::hostile_names_are_only_names($kind).await;
                }

                #[actix_web::test]
                async fn only_replicas_speak_on_the_bus() {
                    super::only_replicas_speak_on_the_bus($kind).await;
                }

                #[actix_web::test]
                async fn survives_a_replica_crash() {
                    super::survives_a_replica_crash($kind).await;
                }
            }
        )*
    };
}

for_each_broker!(
    redis => BrokerKind::Redis,
    rabbitmq => BrokerKind::Rabbitmq,
    nats => BrokerKind::Nats,
);
