//! Three replicas behind real traefik, configured by the project's own
//! `traefik/dynamic.yml`: the sticky cookie pins a browser to one replica,
//! WebSockets pass through, and when the pinned replica dies the browser
//! lands on another one and resumes without losing a message.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{serial, BrokerKind, Cluster, Traefik};
use common::{with_idle, Client, Ws};
use reqwest::cookie::Jar;
use serde_json::Value;

const AFFINITY_COOKIE: &str = "rookery_affinity";
const FAILOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// The node that answered `/healthz` through the proxy for this client.
async fn node_behind_proxy(client: &Client) -> String {
    let health: Value = client.get("/healthz").await.json().await.unwrap();
    health["node"].as_str().unwrap().to_owned()
}

/// Opens a WebSocket through the proxy, retrying while traefik still
/// answers 502 for a replica its health check has not yet seen die.
async fn ws_through_proxy(client: &Client) -> Ws {
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    loop {
        match client.try_ws().await {
            Ok(ws) => return ws,
            Err(error) => assert!(
                Instant::now() < deadline,
                "no WebSocket through traefik: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_websockets_and_failover() {
    let _serial = serial().await;
    let mut cluster = Cluster::start(BrokerKind::Redis, 3).await;
    let backends: Vec<_> = cluster.replicas.iter().map(|r| r.addr).collect();
    let traefik = Traefik::start(&backends);
    traefik.routing().await;
    let proxy = format!("http://{}", traefik.addr);

    // Without the cookie, traefik spreads requests over the replicas…
    let anonymous = reqwest::Client::new();
    let mut seen = BTreeSet::new();
    for _ in 0..9 {
        let health: Value = anonymous
            .get(format!("{proxy}/healthz"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        seen.insert(health["node"].as_str().unwrap().to_owned());
    }
    assert!(
        seen.len() > 1,
        "requests without a cookie all reached {seen:?}\n{}",
        traefik.log()
    );

    // …and with it, every request of one browser reaches the same replica.
    let alice = Client::at(proxy.clone(), Arc::new(Jar::default()));
    alice.login("alice").await;
    let cookies = alice.cookie_header().unwrap_or_default();
    assert!(
        cookies.contains(AFFINITY_COOKIE),
        "traefik set no affinity cookie: {cookies}"
    );
    let pinned = node_behind_proxy(&alice).await;
    for _ in 0..10 {
        assert_eq!(node_behind_proxy(&alice).await, pinned);
    }
    let pinned_index = cluster
        .replicas
        .iter()
        .position(|r| r.node == pinned)
        .unwrap();

    // A WebSocket through traefik reaches the pinned replica and chats with
    // a user on another one.
    let other = (pinned_index + 1) % cluster.replicas.len();
    let (_bob_client, mut bob) = cluster.user("bob", other, "lobby").await;
    let mut alice_ws = ws_through_proxy(&alice).await;
    alice_ws.join("lobby").await;
    with_idle(
        alice_ws.wait_online("lobby", &["alice", "bob"], Duration::from_secs(20)),
        &mut [&mut bob],
    )
    .await;
    let mut acked = vec![bob.say("lobby", "hi alice", "b0").await];
    acked.push(alice_ws.say("lobby", "hi bob", "a0").await);
    let mut shown: Vec<Value> = alice_ws.messages(2).await;
    assert_eq!(bob.messages(2).await.len(), 2);

    // The pinned replica dies; bob keeps talking meanwhile.
    cluster.replicas[pinned_index].kill();
    alice_ws.until_closed(Duration::from_secs(20)).await;
    for i in 0..5 {
        acked.push(
            bob.say("lobby", &format!("while away {i}"), &format!("b{}", i + 1))
                .await,
        );
    }

    // The same browser comes back through traefik: it lands on a live
    // replica, is still logged in, and resumes from its last seq.
    let last = shown.last().unwrap()["seq"].as_u64().unwrap();
    let mut alice_ws = ws_through_proxy(&alice).await;
    shown.extend(alice_ws.resume("lobby", last).await);
    let texts: Vec<&str> = shown.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(
        texts,
        [
            "hi alice",
            "hi bob",
            "while away 0",
            "while away 1",
            "while away 2",
            "while away 3",
            "while away 4"
        ]
    );
    let seqs: Vec<u64> = shown.iter().map(|m| m["seq"].as_u64().unwrap()).collect();
    acked.sort_unstable();
    assert_eq!(seqs, acked, "every acked message once, in order");

    // traefik re-pinned the browser to a live replica, and it stays there.
    let repinned = node_behind_proxy(&alice).await;
    assert_ne!(repinned, pinned);
    for _ in 0..5 {
        assert_eq!(node_behind_proxy(&alice).await, repinned);
    }
    bob.say("lobby", "welcome back", "b9").await;
    let after = with_idle(alice_ws.recv_type("message"), &mut [&mut bob]).await;
    assert_eq!(after["text"], "welcome back");
}
