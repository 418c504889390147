//! Messaging guarantees on one replica: fast delivery, offline direct
//! messages with `pending` / `fetch_missed`, delivery confirmations, group
//! messages and read receipts. The cross-replica versions are in
//! `cluster.rs`.
//!
//! Over 400 lines: one test per guarantee, each standing alone.

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
    assert_eq!(id.len(), 20, "time (12 hex digits) and 8 random ones");

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
    bob.none_for("message", QUIET).await;
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
    alice.none_for("delivered", QUIET).await;

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
    again.none_for("pending", QUIET).await;
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
    later.none_for("pending", QUIET).await;
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

/// Past the store backlog a reliable send is refused at once with
/// `overloaded` and its `ref`; nothing is lost or half-sent: every send is
/// answered exactly once, what was acked is in history, what was refused
/// is not, and the room takes messages again right after.
#[actix_web::test]
async fn a_full_store_backlog_refuses_sends_with_overloaded_and_loses_nothing() {
    let (_dir, server) = TestServer::configured(|c| {
        c.rate_limit = 0;
        c.user_rate_limit = 0;
        c.store_queue = 4;
    })
    .await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    alice.join("flood").await;

    const SENDS: usize = 300;
    let burst: String = (0..SENDS)
        .map(|n| {
            json!({"type": "send", "room": "flood", "text": format!("m{n}"), "ref": n}).to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    for frame in burst.lines() {
        alice.send_text(frame).await;
    }
    let mut acked = std::collections::BTreeMap::new();
    let mut refused = std::collections::BTreeSet::new();
    while acked.len() + refused.len() < SENDS {
        let frame = alice.recv().await;
        match frame["type"].as_str() {
            Some("ack") => {
                let reference = frame["ref"].as_u64().unwrap();
                assert!(acked
                    .insert(reference, frame["seq"].as_u64().unwrap())
                    .is_none());
                assert!(
                    !refused.contains(&reference),
                    "{reference} acked and refused"
                );
            }
            Some("error") => {
                assert_eq!(frame["code"], "overloaded", "{frame}");
                let reference = frame["ref"].as_u64().unwrap();
                assert!(refused.insert(reference), "{reference} refused twice");
                assert!(
                    !acked.contains_key(&reference),
                    "{reference} acked and refused"
                );
            }
            _ => {}
        }
    }
    assert!(
        !refused.is_empty(),
        "a burst of {SENDS} against a backlog of 4 refuses some"
    );
    assert!(!acked.is_empty());

    let mut history = Vec::new();
    let mut before = None;
    loop {
        alice
            .send(json!({"type": "history", "room": "flood", "before": before, "limit": 100}))
            .await;
        let page = alice.recv_type("history").await["messages"]
            .as_array()
            .unwrap()
            .clone();
        if page.is_empty() {
            break;
        }
        before = page[0]["seq"].as_u64();
        history.splice(0..0, page);
    }
    let stored: Vec<String> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = acked.keys().map(|n| format!("m{n}")).collect();
    assert_eq!(
        stored, expected,
        "exactly the acked messages, in the order sent"
    );
    let seqs: Vec<u64> = history.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=acked.len() as u64).collect::<Vec<_>>());

    assert!(alice.say("flood", "after the burst", "later").await > 0);
    server.stop().await;
}

/// A user reconnecting while direct messages keep arriving sends `resume`
/// one round trip after the socket opens; the new connection must see the
/// conversation continue exactly once, in order: live messages must not
/// overtake the replay.
#[actix_web::test]
async fn direct_messages_continue_once_and_in_order_across_reconnects() {
    let (_dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let bob = Client::logged_in(&server, "bob").await;
    let mut alice_ws = alice.ws().await;
    let mut bob_ws = bob.ws().await;
    let mut last = alice_ws.direct("bob", "first", "d0").await["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(bob_ws.recv_type("message").await["seq"], last);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        actix_web::rt::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                alice_ws
                    .send(json!({"type": "direct", "to": "bob", "text": format!("n{n}"), "ref": n}))
                    .await;
                alice_ws.keep_alive(Duration::from_millis(50)).await;
            }
        })
    };
    for _ in 0..6 {
        // Bob reads for a while, then his connection drops.
        let mut seen = Vec::new();
        while seen.len() < 5 {
            let message = bob_ws.recv_type("message").await;
            seen.push(message["seq"].as_u64().unwrap());
        }
        for seq in &seen {
            assert_eq!(*seq, last + 1, "in order, each once: {seen:?} after {last}");
            last = *seq;
        }
        drop(bob_ws);
        bob_ws = bob.ws().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        bob_ws
            .send(json!({"type": "resume", "rooms": {"@alice:bob": last}}))
            .await;
        // Everything the new connection shows, in the order it arrives:
        // live messages before `joined`, then the replay.
        let frames = until_type(&mut bob_ws, "joined").await;
        let joined = frames.last().unwrap().clone();
        assert_eq!(joined["recovered"], true, "{joined}");
        let shown: Vec<u64> = frames
            .iter()
            .filter(|f| f["type"] == "message")
            .chain(joined["history"].as_array().unwrap())
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        for seq in &shown {
            assert_eq!(
                *seq,
                last + 1,
                "continues where bob was, once each: {shown:?}"
            );
            last = *seq;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.unwrap();
    server.stop().await;
}

/// A client that never got its answer (the connection broke, or
/// `store_uncertain`) sends the same frame again with `"retry":true`, from
/// a new connection: the message it had sent is acked again under its seq,
/// nobody receives it twice, and a retry of one that was never stored is
/// stored. Without the flag the same ref and text make a new message.
#[actix_web::test]
async fn a_retried_send_is_stored_once_and_acked_with_the_first_seq() {
    let (_dir, server) = TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut first = alice.ws().await;
    let mut bob = Client::logged_in(&server, "bob").await.ws().await;
    first.join("lobby").await;
    bob.join("lobby").await;
    assert_eq!(first.say("lobby", "hello", "m1").await, 1);
    drop(first);

    let mut again = alice.ws().await;
    again.join("lobby").await;
    let retry = |text: &str, reference: &str| json!({"type": "send", "room": "lobby", "text": text, "ref": reference, "retry": true});
    again.send(retry("hello", "m1")).await;
    let ack = again.recv_type("ack").await;
    assert_eq!(
        (ack["ref"].as_str(), ack["seq"].as_u64()),
        (Some("m1"), Some(1))
    );
    again.send(retry("never sent", "m2")).await;
    let ack = again.recv_type("ack").await;
    assert_eq!(
        (ack["ref"].as_str(), ack["seq"].as_u64()),
        (Some("m2"), Some(2))
    );
    assert_eq!(
        again.say("lobby", "hello", "m1").await,
        3,
        "no retry flag: a new message"
    );

    let received: Vec<(u64, String)> = bob
        .messages(3)
        .await
        .iter()
        .map(|m| {
            (
                m["seq"].as_u64().unwrap(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        received,
        [
            (1, "hello".into()),
            (2, "never sent".into()),
            (3, "hello".into())
        ]
    );
    bob.none_for("message", QUIET).await;

    // A direct message the same way, and a retry that names no ref.
    let mut carol = Client::logged_in(&server, "carol").await.ws().await;
    let direct = json!({"type": "direct", "to": "carol", "text": "psst", "ref": "d1"});
    assert_eq!(again.direct("carol", "psst", "d1").await["seq"], 1);
    let mut retried = direct.clone();
    retried["retry"] = json!(true);
    again.send(retried).await;
    assert_eq!(again.recv_type("ack").await["seq"], 1);
    assert_eq!(carol.recv_type("message").await["text"], "psst");
    carol.none_for("message", QUIET).await;
    again
        .send(json!({"type": "send", "room": "lobby", "text": "x", "retry": true}))
        .await;
    assert_eq!(again.recv_type("error").await["code"], "invalid_frame");
}

/// A replica frozen longer than the client timeout (SIGSTOP: a paused VM,
/// a stalled host) keeps its connections when it thaws: its clients did
/// nothing wrong, so the silence is not held against them.
#[actix_web::test]
async fn a_replica_frozen_past_the_client_timeout_keeps_its_connections() {
    let _serial = common::cluster::serial().await;
    let replica = common::cluster::Replica::start("frozen", &[]);
    let client = Client::at(
        replica.url(""),
        std::sync::Arc::new(reqwest::cookie::Jar::default()),
    );
    client.login("sleeper").await;
    let mut ws = client.ws().await;
    ws.join("lobby").await;
    replica.freeze(true);
    let frozen_for = rookery::ws::session::CLIENT_TIMEOUT + Duration::from_secs(3);
    ws.keep_alive(frozen_for).await;
    replica.freeze(false);
    // Past the next two heartbeats, answering pings as any client does.
    ws.keep_alive(rookery::ws::session::HEARTBEAT_INTERVAL * 2)
        .await;
    assert_eq!(ws.say("lobby", "still here", "after-thaw").await, 1);
    assert!(
        !replica.log().contains("answered no ping in time"),
        "{}",
        replica.log()
    );
}

/// One system call of a replica, as `strace -ttt -y` prints it.
struct Syscall {
    at: f64,
    name: String,
    /// The file the call was about, if any.
    path: String,
}

fn syscalls(trace: &str) -> Vec<Syscall> {
    trace
        .lines()
        .filter_map(|line| {
            // `PID SECONDS.MICROS name(FD</path>, ...) = result`, the pid
            // padded with spaces to a width.
            let (_pid, rest) = line.trim_start().split_once(' ')?;
            let (at, call) = rest.trim_start().split_once(' ')?;
            let at = at.parse().ok()?;
            let (name, rest) = call.split_once('(')?;
            let path = rest
                .split_once('<')
                .and_then(|(_, rest)| rest.split_once('>'))
                .map_or("", |(path, _)| path);
            Some(Syscall {
                at,
                name: name.to_owned(),
                path: path.to_owned(),
            })
        })
        .collect()
}

fn now_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// An `ack` from the embedded store means the message reached the disk,
/// not only the OS: between each send and its ack, the replica wrote the
/// message to SQLite's WAL and then fsynced the WAL (read with strace, as
/// the kernel saw it). A commit the OS merely buffered would be lost to
/// power loss or an OS crash after the ack.
#[actix_web::test]
async fn an_ack_comes_after_the_message_reached_the_disk() {
    let _serial = common::cluster::serial().await;
    let replica = common::cluster::Replica::start("durable", &[]);
    let client = Client::at(
        replica.url(""),
        std::sync::Arc::new(reqwest::cookie::Jar::default()),
    );
    client.login("careful").await;
    let mut ws = client.ws().await;
    ws.join("lobby").await;

    let dir = tempfile::tempdir().unwrap();
    let trace_path = dir.path().join("trace");
    let mut strace = std::process::Command::new("strace")
        .args([
            "-f",
            "-ttt",
            "-y",
            "-e",
            "trace=write,pwrite64,fsync,fdatasync",
            "-o",
        ])
        .arg(&trace_path)
        .args(["-p", &replica.pid().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("strace runs (scripts/test.sh installs it)");
    // strace says so on stderr once every thread is attached.
    {
        use std::io::BufRead;
        let stderr = std::io::BufReader::new(strace.stderr.take().unwrap());
        let mut lines = stderr.lines();
        let attached = lines.next().expect("strace reports attaching").unwrap();
        assert!(attached.contains("attached"), "{attached}");
        std::thread::spawn(move || lines.for_each(drop));
    }

    let mut windows = Vec::new();
    for n in 0..5 {
        let sent = now_seconds();
        ws.say("lobby", &format!("durable {n}"), &n.to_string())
            .await;
        windows.push((sent, now_seconds()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    std::process::Command::new("kill")
        .args(["-INT", &strace.id().to_string()])
        .status()
        .unwrap();
    strace.wait().unwrap();

    let trace = std::fs::read_to_string(&trace_path).unwrap();
    let calls = syscalls(&trace);
    let wal = |call: &&Syscall| call.path.ends_with("rookery.db-wal");
    for (n, (sent, acked)) in windows.into_iter().enumerate() {
        let during: Vec<&Syscall> = calls
            .iter()
            .filter(|call| call.at >= sent && call.at <= acked)
            .filter(wal)
            .collect();
        let written = during
            .iter()
            .rposition(|call| call.name.contains("write"))
            .unwrap_or_else(|| {
                panic!("message {n} was not written to the WAL before its ack:\n{trace}")
            });
        assert!(
            during[written..]
                .iter()
                .any(|call| matches!(call.name.as_str(), "fsync" | "fdatasync")),
            "message {n} was acked before the WAL was fsynced:\n{trace}"
        );
    }
}

/// With `RETENTION_MESSAGES`, a room keeps its newest messages only: a
/// newcomer's history starts at the oldest kept, a client resuming from
/// before it is told `recovered:false` (never a silent hole), and the
/// room's seq goes on.
#[actix_web::test]
async fn retention_keeps_the_newest_and_a_resume_from_before_says_so() {
    let (_dir, server) = TestServer::configured(|c| {
        c.retention_messages = 3;
        c.retention_check_secs = 1;
    })
    .await;
    let alice = Client::logged_in(&server, "alice").await;
    let mut ws = alice.ws().await;
    ws.join("kept").await;
    for n in 1..=6 {
        ws.say("kept", &format!("m{n}"), &format!("r{n}")).await;
    }
    let bob = Client::logged_in(&server, "bob").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let history = loop {
        let mut newcomer = bob.ws().await;
        let joined = newcomer.join("kept").await;
        let seqs: Vec<u64> = joined["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        if seqs.len() == 3 || std::time::Instant::now() > deadline {
            break seqs;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(history, [4, 5, 6], "the newest three are kept");
    let mut back = bob.ws().await;
    back.send(json!({"type": "resume", "rooms": {"kept": 1}}))
        .await;
    let joined = back.recv_type("joined").await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(ws.say("kept", "m7", "r7").await, 7);
    server.stop().await;
}
