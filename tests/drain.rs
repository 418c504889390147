//! SIGTERM drains a replica: it turns not ready, refuses new WebSockets,
//! tells its clients to reconnect elsewhere, stores what was in flight and
//! exits cleanly, and the clients, resuming on another replica, end with
//! every message once.

mod common;

use std::time::Duration;

use common::cluster::{serial, BrokerKind, Cluster};
use common::Client;
use serde_json::{json, Value};

/// Long enough that the test sees the draining replica before it exits:
/// clients that do not leave are closed after half of it.
const SHUTDOWN_TIMEOUT_SECS: u64 = 6;
/// WebSocket close code for "service restart".
const SERVICE_RESTART: u16 = 1012;

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_draining_replica_move_without_loss() {
    let _serial = serial().await;
    let env = [("SHUTDOWN_TIMEOUT", SHUTDOWN_TIMEOUT_SECS.to_string())];
    let mut cluster = Cluster::start_with(BrokerKind::Redis, 2, &env).await;
    let (alice_client, mut alice) = cluster.user("alice", 0, "drain").await;
    let (carol_client, mut carol) = cluster.user("carol", 0, "drain").await;
    let (_bob_client, mut bob) = cluster.user("bob", 1, "drain").await;
    for ws in [&mut alice, &mut carol, &mut bob] {
        ws.wait_online("drain", &["alice", "bob", "carol"], Duration::from_secs(20))
            .await;
    }
    let mut acked = Vec::new();
    for i in 0..3 {
        acked.push(bob.say("drain", &format!("b{i}"), &format!("b{i}")).await);
        acked.push(alice.say("drain", &format!("a{i}"), &format!("a{i}")).await);
    }

    // alice's last message is still in flight when the SIGTERM lands.
    alice
        .send(json!({"type": "send", "room": "drain", "text": "in flight", "ref": "last"}))
        .await;
    cluster.replicas[0].terminate();

    // alice is told to move, and still gets her in-flight message's ack
    // and the message itself.
    let mut alice_frames = Vec::new();
    let (mut told, mut in_flight_acked, mut in_flight_shown) = (false, None, false);
    while !(told && in_flight_acked.is_some() && in_flight_shown) {
        let frame = alice.recv().await;
        told |= frame["type"] == "reconnect";
        if frame["type"] == "ack" && frame["ref"] == "last" {
            in_flight_acked = frame["seq"].as_u64();
        }
        in_flight_shown |= frame["type"] == "message" && frame["text"] == "in flight";
        alice_frames.push(frame);
    }
    acked.push(in_flight_acked.unwrap());

    // The draining replica is out of rotation, but still alive for carol.
    let draining = &cluster.replicas[0];
    let ready = reqwest::get(draining.url("/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "a draining replica is not ready");
    let reason: Value = ready.json().await.unwrap();
    assert!(
        reason["reason"].as_str().unwrap().contains("draining"),
        "{reason}"
    );
    let refused = alice_client.try_ws().await;
    assert!(refused.is_err(), "a draining replica accepts no WebSocket");

    // alice moves to the other replica at once and resumes there.
    drop(alice);
    let mut shown: Vec<Value> = alice_frames
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();
    for i in 3..6 {
        acked.push(bob.say("drain", &format!("b{i}"), &format!("b{i}")).await);
    }
    let last = *seqs(&shown).last().unwrap();
    let elsewhere = Client::at(cluster.replicas[1].url(""), alice_client.jar.clone());
    let mut alice = elsewhere.ws().await;
    shown.extend(alice.resume("drain", last).await);

    // carol ignores the request: the replica closes her connection itself.
    let carol_frames = carol
        .until_closed(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS))
        .await;
    assert_eq!(carol.close_code, Some(SERVICE_RESTART));
    assert!(carol_frames.iter().any(|f| f["type"] == "reconnect"));
    let mut carol_shown: Vec<Value> = carol_frames
        .into_iter()
        .filter(|f| f["type"] == "message")
        .collect();

    // The replica exits by itself, successfully, within its timeout.
    let status = cluster.replicas[0]
        .exited_within(Duration::from_secs(SHUTDOWN_TIMEOUT_SECS + 5))
        .await
        .expect("the drained replica exits within its shutdown timeout");
    assert!(status.success(), "exit status {status}");
    let log = cluster.replicas[0].log();
    assert!(log.contains("drained"), "{log}");

    // carol comes back on the other replica too.
    let carol_last = seqs(&carol_shown).last().copied().unwrap_or(0);
    let elsewhere = Client::at(cluster.replicas[1].url(""), carol_client.jar.clone());
    let mut carol = elsewhere.ws().await;
    carol_shown.extend(carol.resume("drain", carol_last).await);

    acked.push(bob.say("drain", "after", "after").await);
    shown.push(alice.recv_type("message").await);
    carol_shown.push(carol.recv_type("message").await);
    acked.sort_unstable();
    assert_eq!(
        seqs(&shown),
        acked,
        "alice: every acked message once, in order"
    );
    assert_eq!(
        seqs(&carol_shown),
        acked,
        "carol: every acked message once, in order"
    );
}
