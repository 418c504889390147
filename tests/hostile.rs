//! Hostile clients: each abuse below once made a replica use gigabytes or
//! bypass a limit. Every test asserts the bound (a cut connection, a
//! refusal, the replica's memory) and that a normal user is served right
//! after. The replica is its own process, so its memory can be read.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::cluster::{serial, Replica};
use common::{Client, Ws};
use futures_util::SinkExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024;

fn client_of(replica: &Replica) -> Client {
    Client::at(replica.url(""), Arc::new(reqwest::cookie::Jar::default()))
}

/// A normal user still gets an answer from `replica`.
async fn served(replica: &Replica, name: &str) {
    let client = client_of(replica);
    client.login(name).await;
    let mut ws = client.ws().await;
    ws.join("lobby").await;
    ws.say("lobby", "still served", "ok").await;
}

/// The attack on `replica` cost at most `limit` MiB beyond `before` KiB of
/// resident memory, and a normal user is served right after.
async fn bounded(replica: &Replica, what: &str, before: u64, peak: u64, limit: u64) {
    assert!(
        peak < before + limit * MIB,
        "{what}: memory grew from {before} KiB to {peak} KiB"
    );
    served(replica, "bystander").await;
    println!("{what}: RSS {before} KiB before, {peak} KiB at most");
}

/// Fills `room` with `count` messages of `size` characters, 100 at a
/// time (a client that only writes is a slow reader too).
async fn fill(ws: &mut Ws, room: &str, count: usize, size: usize) {
    ws.join(room).await;
    let text = "x".repeat(size);
    for start in (0..count).step_by(100) {
        let end = (start + 100).min(count);
        for n in start..end {
            ws.send(json!({"type": "send", "room": room, "text": text, "ref": n}))
                .await;
        }
        let mut acked = start;
        while acked < end {
            if ws.recv().await["type"] == "ack" {
                acked += 1;
            }
        }
    }
}

/// Resident memory of `replica` sampled every 100 ms while `work` runs:
/// the highest seen.
async fn peak_while<T>(replica: &Replica, work: impl std::future::Future<Output = T>) -> (T, u64) {
    let mut peak = replica.rss_kib();
    tokio::pin!(work);
    loop {
        tokio::select! {
            done = &mut work => return (done, peak.max(replica.rss_kib())),
            _ = tokio::time::sleep(Duration::from_millis(100)) => peak = peak.max(replica.rss_kib()),
        }
    }
}

/// Sends `frame` until a write fails (the replica cut the connection) or
/// `within` passes; whether it was cut.
async fn sends_until_cut(ws: &mut Ws, frame: &str, every: Duration, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if ws
            .stream
            .send(Message::Text(frame.to_owned().into()))
            .await
            .is_err()
        {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

/// One socket that never reads asks 20 times a second for the replay of a
/// room of 500 messages of 4000 characters (2 MB each answer): replays are
/// refused while 4 MiB wait for it, and it is cut once it has answered no
/// ping for 15 s. The replica stays small (before: 2.6 GB in 11 s).
#[actix_web::test]
async fn replays_for_a_client_that_never_reads_are_bounded_and_it_is_cut() {
    let _serial = serial().await;
    let replica = Replica::start("hostile", &[]);
    let writer = client_of(&replica);
    writer.login("writer").await;
    fill(&mut writer.ws().await, "big", 500, 4000).await;
    let before = replica.rss_kib();

    let attacker = client_of(&replica);
    attacker.login("attacker").await;
    let mut ws = attacker.ws().await;
    let resume = json!({"type": "resume", "rooms": {"big": 0}}).to_string();
    let attack = sends_until_cut(
        &mut ws,
        &resume,
        Duration::from_millis(50),
        Duration::from_secs(40),
    );
    let (cut, peak) = peak_while(&replica, attack).await;
    assert!(cut, "a client that reads nothing is cut off");
    bounded(
        &replica,
        "replays to a client that never reads",
        before,
        peak,
        160,
    )
    .await;
}

/// A member of a busy room that never reads is cut once 16 MiB wait for
/// it, long before its heartbeat would time out, and others are served.
#[actix_web::test]
async fn a_member_that_never_reads_is_cut_at_the_byte_limit() {
    let _serial = serial().await;
    let replica = Replica::start("hostile", &[]);
    let attacker = client_of(&replica);
    attacker.login("attacker").await;
    let mut stuck = attacker.ws().await;
    stuck.join("busy").await;
    let before = replica.rss_kib();
    let writer = client_of(&replica);
    writer.login("writer").await;
    let mut ws = writer.ws().await;
    let started = std::time::Instant::now();
    let (_, peak) = peak_while(&replica, fill(&mut ws, "busy", 6000, 4000)).await;
    // 24 MB were posted: past the limit, the stuck member is gone.
    let cut = sends_until_cut(
        &mut stuck,
        r#"{"type":"typing","room":"busy","active":true}"#,
        Duration::from_millis(100),
        Duration::from_secs(5),
    )
    .await;
    assert!(cut, "the member that read nothing was cut");
    assert!(
        started.elapsed() < rookery::ws::session::CLIENT_TIMEOUT,
        "by the byte limit, not the heartbeat"
    );
    let metrics = replica.metrics().await;
    assert_eq!(
        metrics.value(r#"rookery_connections_closed_total{reason="slow"}"#),
        1.0,
        "the cut is counted as a slow client"
    );
    bounded(&replica, "a stuck member of a busy room", before, peak, 160).await;
}

/// A frame header announcing 2^30 bytes, then bytes at wire speed: the
/// frame is refused on its declared length, before its payload is buffered
/// (before: 1.16 GB before the close).
#[actix_web::test]
async fn a_frame_announcing_a_gigabyte_is_refused_on_its_header() {
    let _serial = serial().await;
    let replica = Replica::start("hostile", &[]);
    let attacker = client_of(&replica);
    attacker.login("attacker").await;
    let ws = attacker.ws().await;
    let before = replica.rss_kib();
    let mut tcp = match ws.stream.into_inner() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("loopback is plain TCP"),
    };
    // FIN + text, masked, 64-bit length 2^30, then a mask key.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(1u64 << 30).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    let chunk = vec![b'a'; 64 * 1024];
    let mut written: u64 = 0;
    let sending = async {
        // Until the replica cuts the connection (or 30 s pass).
        while tcp.write_all(&chunk).await.is_ok() {
            written += chunk.len() as u64;
        }
    };
    let (cut, peak) = peak_while(
        &replica,
        tokio::time::timeout(Duration::from_secs(30), sending),
    )
    .await;
    assert!(
        cut.is_ok(),
        "the connection was cut ({written} bytes went in)"
    );
    println!("gigabyte frame: cut after {written} bytes");
    bounded(&replica, "a gigabyte frame", before, peak, 64).await;
}

/// `resume` cannot join more rooms than `join` can (before: one frame of
/// 5000 rooms gave 5000 `joined`).
#[actix_web::test]
async fn a_resume_cannot_exceed_the_room_limit() {
    let (_dir, server) = common::TestServer::fresh().await;
    let mut ws = Client::logged_in(&server, "greedy").await.ws().await;
    let rooms = |range: std::ops::Range<usize>| -> serde_json::Map<String, serde_json::Value> {
        range.map(|n| (format!("r{n}"), json!(0))).collect()
    };
    ws.send(json!({"type": "resume", "rooms": rooms(0..5000)}))
        .await;
    let refused = ws.recv().await;
    assert_eq!(refused["code"], "invalid_room", "{refused}");

    ws.join("first").await;
    ws.send(json!({"type": "resume", "rooms": rooms(0..100)}))
        .await;
    let (mut joined, mut errors) = (0, 0);
    while joined + errors < 100 {
        match ws.recv().await["type"].as_str() {
            Some("joined") => joined += 1,
            Some("error") => errors += 1,
            _ => {}
        }
    }
    assert_eq!(
        (joined, errors),
        (99, 1),
        "100 rooms at most, the first one included"
    );
}

/// A form on another site cannot log a browser in (as the attacker) or a
/// user out: POSTs whose `Origin` or `Referer` is another site are 403.
/// Same-site POSTs and clients that send neither header still work.
#[actix_web::test]
async fn cross_site_posts_are_refused() {
    let (_dir, server) = common::TestServer::fresh().await;
    let victim = Client::logged_in(&server, "victim").await;
    let own = server.url("");
    let post = |client: &Client, path: &str, origin: Option<(&'static str, String)>| {
        let mut request = client
            .http
            .post(format!("{}{path}", client.base))
            .form(&[("name", "attacker"), ("password", common::PASSWORD)]);
        if let Some((header, value)) = origin {
            request = request.header(header, value);
        }
        request.send()
    };
    for origin in [
        ("origin", "http://evil.example".to_owned()),
        ("origin", "null".to_owned()),
        ("referer", "http://evil.example/page".to_owned()),
    ] {
        for path in ["/login", "/logout"] {
            let status = post(&victim, path, Some(origin.clone()))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 403, "{path} {origin:?}");
        }
    }
    assert_eq!(
        victim.get("/").await.status(),
        200,
        "still logged in as the victim"
    );
    let same = ("origin", own.clone());
    assert_eq!(
        post(&client_at(&server), "/login", Some(same))
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(
        post(&client_at(&server), "/login", None)
            .await
            .unwrap()
            .status(),
        303
    );
    assert_eq!(
        post(&victim, "/logout", Some(("referer", format!("{own}/"))))
            .await
            .unwrap()
            .status(),
        303
    );
}

fn client_at(server: &common::TestServer) -> Client {
    Client::new(server)
}
