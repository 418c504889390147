//! Hostile clients: each abuse below once made a replica use gigabytes or
//! bypass a limit. Every test asserts the bound (a cut connection, a
//! refusal, the replica's memory) and that a normal user is served right
//! after. The replica is its own process, so its memory can be read.
//!
//! Over 400 lines: one test per abuse, each standing alone.

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

/// A normal user still gets an answer from `replica`: logged in,
/// connected, joined and acked, printed with how long that took.
async fn served(replica: &Replica, name: &str) {
    let started = std::time::Instant::now();
    let client = client_of(replica);
    client.login(name).await;
    let mut ws = client.ws().await;
    ws.join("lobby").await;
    ws.say("lobby", "still served", "ok").await;
    println!(
        "{name}: logged in, joined and acked in {:?}",
        started.elapsed()
    );
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

/// Password guessing is throttled: per account after 5 wrong passwords
/// (429 with `Retry-After`, even with the right one, while the minute
/// refills), per address, and registrations per address; other accounts
/// are served meanwhile (before: no limit at all).
#[actix_web::test]
async fn login_guessing_and_registration_sprees_are_throttled() {
    let _serial = serial().await;
    let replica = Replica::start(
        "throttled",
        &[
            ("LOGIN_FAILURES_PER_MINUTE", "5".into()),
            ("LOGIN_ATTEMPTS_PER_MINUTE", "30".into()),
            ("REGISTRATIONS_PER_HOUR", "3".into()),
        ],
    );
    let victim = client_of(&replica);
    victim.login("victim").await;
    let guesser = client_of(&replica);
    for guess in 0..5 {
        let status = guesser
            .login_with("victim", &format!("guess {guess}"))
            .await
            .status();
        assert_eq!(status, 401, "guess {guess}");
    }
    let throttled = guesser.login_with("victim", "guess 5").await;
    assert_eq!(throttled.status(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        guesser
            .login_with("victim", common::PASSWORD)
            .await
            .status(),
        429,
        "the account waits, whoever asks"
    );
    // Registrations: two more from this address, then 429.
    for name in ["second", "third"] {
        client_of(&replica).login(name).await;
    }
    assert_eq!(
        client_of(&replica)
            .login_with("fourth", common::PASSWORD)
            .await
            .status(),
        429
    );
    // Known accounts still log in from here.
    client_of(&replica).login("second").await;
    // The address: 30 attempts a minute, 12 used so far.
    let mut statuses = Vec::new();
    for _ in 0..20 {
        statuses.push(
            client_of(&replica)
                .login_with("third", "wrong, wrong")
                .await
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let metrics = replica.metrics().await;
    assert!(metrics.value(r#"rookery_logins_total{result="throttled"}"#) >= 3.0);
}

/// 200 wrong-password logins, 64 at a time, with no throttle in the way:
/// at most one hash per core runs at once and a short queue waits, and
/// the hashes' memory goes back to the system, so the replica stays small
/// (before: 75 MB to 3.3 GB; 460 MB after 40 logins one at a time) and a
/// normal login is served.
#[actix_web::test]
async fn concurrent_password_hashing_is_bounded() {
    let _serial = serial().await;
    let replica = Replica::start("hashing", &[]);
    client_of(&replica).login("target").await;
    let before = replica.rss_kib();
    let url = replica.url("/login");
    let flood = async {
        let http = reqwest::Client::new();
        let statuses = futures_util::future::join_all((0..200).map(|n| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                // 64 at a time: each task waits for its turn in its group.
                tokio::time::sleep(Duration::from_millis((n / 64) as u64 * 300)).await;
                let form = [
                    ("name", "target".to_owned()),
                    ("password", format!("wrong {n}")),
                ];
                http.post(&url)
                    .form(&form)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        }))
        .await;
        statuses
            .into_iter()
            .filter_map(Result::ok)
            .collect::<Vec<_>>()
    };
    let normal = async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let started = std::time::Instant::now();
        let status = client_of(&replica)
            .login_with("target", common::PASSWORD)
            .await
            .status();
        (status, started.elapsed())
    };
    let ((statuses, (status, took)), peak) =
        peak_while(&replica, futures_util::future::join(flood, normal)).await;
    println!("a normal login during the flood: {status} in {took:?}");
    // Answered soon either way: served, or refused once it waited half a
    // second for a hashing slot (before the bound it queued behind the
    // flood for 5.5 s).
    assert!(
        status == 303 || status == 503,
        "a normal login during the flood: {status}"
    );
    assert!(
        took < Duration::from_millis(1500),
        "a normal login during the flood waited {took:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&401));
    bounded(
        &replica,
        "200 wrong-password logins, 64 at a time",
        before,
        peak,
        64,
    )
    .await;
}

/// Connections past `MAX_CONNECTIONS` get a clear 503 at once, and a body
/// that trickles in is cut at `BODY_TIMEOUT_SECS`, freeing its connection
/// (before: 1010 slow bodies took every descriptor and every login).
#[actix_web::test]
async fn slow_bodies_are_cut_and_connections_past_the_cap_get_503() {
    use tokio::io::AsyncReadExt;
    let _serial = serial().await;
    let replica = Replica::start(
        "capped",
        &[
            ("MAX_CONNECTIONS", "20".into()),
            ("BODY_TIMEOUT_SECS", "2".into()),
        ],
    );
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nname=",
        replica.addr
    );
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut tcp = tokio::net::TcpStream::connect(replica.addr).await.unwrap();
        tcp.write_all(head.as_bytes()).await.unwrap();
        slow.push(tcp);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The cap is taken: a normal login is refused clearly, not left hanging.
    let started = std::time::Instant::now();
    let refused = client_of(&replica)
        .login_with("normal", common::PASSWORD)
        .await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered at once"
    );
    // The slow bodies are cut at the deadline, whatever they send.
    let mut cut = 0;
    for tcp in &mut slow {
        let _ = tcp.write_all(b"a").await;
        let mut answer = vec![0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut answer)).await;
        if matches!(read, Ok(Ok(_)) | Ok(Err(_))) {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 20,
        "every slow body was answered or closed by its deadline"
    );
    drop(slow);
    tokio::time::sleep(Duration::from_millis(300)).await;
    served(&replica, "normal").await;
    println!(
        "slow bodies: a normal login refused in {:?} while the cap was full",
        started.elapsed()
    );
}

/// One user (or one address) cannot hold unbounded WebSockets: past
/// `WS_PER_USER` the upgrade gets 429, and a closed one frees its place
/// (before: 2000 sockets in 0.7 s).
#[actix_web::test]
async fn websockets_per_user_are_capped() {
    let _serial = serial().await;
    let replica = Replica::start("sockets", &[("WS_PER_USER", "5".into())]);
    let hoarder = client_of(&replica);
    hoarder.login("hoarder").await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(hoarder.ws().await);
    }
    match hoarder.try_ws().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("the sixth socket was not refused: {other:?}"),
    }
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(ws) = hoarder.try_ws().await {
            reopened = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a closed socket frees its place");
    served(&replica, "someone-else").await;
}

/// Logging out closes that login's WebSockets (close 1008 `logged_out`),
/// and only that login's: the same user's other browser stays connected.
#[actix_web::test]
async fn logout_closes_the_logins_websockets() {
    let (_dir, server) = common::TestServer::fresh().await;
    let laptop = Client::logged_in(&server, "carol").await;
    let phone = Client::logged_in(&server, "carol").await;
    let mut on_laptop = laptop.ws().await;
    let mut on_phone = phone.ws().await;
    on_laptop.join("lobby").await;
    on_phone.join("lobby").await;
    let response = laptop
        .http
        .post(server.url("/logout"))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection() || response.status().is_success());
    on_laptop.until_closed(Duration::from_secs(5)).await;
    assert_eq!(on_laptop.close_code, Some(1008));
    assert_eq!(on_laptop.close_reason.as_deref(), Some("logged_out"));
    assert_eq!(on_phone.say("lobby", "still here", "p1").await, 1);
}

/// A login that expires (or is deleted from the store by an operator)
/// ends its open WebSockets within a check period, as a logout does, and
/// its pages ask to log in again; the same user's other login stays.
#[actix_web::test]
async fn an_expired_login_closes_its_websockets_and_its_pages() {
    let (dir, server) = common::TestServer::configured(|c| {
        c.login_recheck_secs = 1;
    })
    .await;
    let laptop = Client::logged_in(&server, "carol").await;
    let mut on_laptop = laptop.ws().await;
    on_laptop.join("lobby").await;
    let database = rusqlite::Connection::open(dir.path().join("rookery.db")).unwrap();
    let expired = database
        .execute("UPDATE sessions SET expires = 1", [])
        .unwrap();
    assert_eq!(expired, 1, "the laptop's login is the only one yet");
    let phone = Client::logged_in(&server, "carol").await;
    let mut on_phone = phone.ws().await;
    on_phone.join("lobby").await;

    on_laptop.until_closed(Duration::from_secs(5)).await;
    assert_eq!(on_laptop.close_code, Some(1008));
    assert_eq!(on_laptop.close_reason.as_deref(), Some("logged_out"));
    let page = laptop.get("/").await;
    assert_eq!(
        page.headers()
            .get(reqwest::header::LOCATION)
            .map(|to| to.to_str().unwrap()),
        Some("/login"),
        "an expired login sees the login page, status {}",
        page.status()
    );
    assert_eq!(on_phone.say("lobby", "still here", "p1").await, 1);

    // An operator revoking the phone's login (its row deleted) ends it too.
    let revoked = database
        .execute("DELETE FROM sessions WHERE expires > 1", [])
        .unwrap();
    assert_eq!(revoked, 1, "the phone's login is the one left");
    on_phone.until_closed(Duration::from_secs(5)).await;
    assert_eq!(on_phone.close_reason.as_deref(), Some("logged_out"));
}

/// A chat connection opened from another site's page (the browser sends
/// its `Origin`) is refused, so a page elsewhere cannot chat as the
/// visitor; the chat's own page and clients that send no `Origin` connect.
#[actix_web::test]
async fn websockets_from_other_sites_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (_dir, server) = common::TestServer::fresh().await;
    let alice = Client::logged_in(&server, "alice").await;
    let upgrade = |origin: &str| {
        let mut request = server
            .url("/ws")
            .replacen("http", "ws", 1)
            .into_client_request()
            .unwrap();
        let headers = request.headers_mut();
        headers.insert("cookie", alice.cookie_header().unwrap().parse().unwrap());
        headers.insert("origin", origin.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    for origin in [
        "http://evil.example",
        "null",
        "http://127.0.0.1.evil.example",
    ] {
        match upgrade(origin).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}")
            }
            other => panic!("{origin}: {:?}", other.map(|_| "connected")),
        }
    }
    let (mut own, _) = upgrade(&server.url("")).await.expect("same origin");
    own.send(Message::Text(
        json!({"type": "join", "room": "lobby"}).to_string().into(),
    ))
    .await
    .unwrap();
    let joined = loop {
        use futures_util::StreamExt;
        match own.next().await.expect("open").unwrap() {
            Message::Text(text) if text.contains("\"joined\"") => break text,
            _ => continue,
        }
    };
    assert!(joined.contains("lobby"), "{joined}");
}

async fn login_from(server: &common::TestServer, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client_at(server)
        .http
        .post(server.url("/login"))
        .form(&[("name", "alice"), ("password", common::PASSWORD)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

fn session_cookie(response: &reqwest::Response) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().to_owned())
        .find(|cookie| cookie.starts_with("rookery_session="))
        .expect("a session cookie")
}

/// Every page says how it may be used (no sniffing, no framing, scripts
/// from our own files only); over HTTPS, whether the operator says so
/// (`COOKIE_SECURE`) or a trusted proxy does (`X-Forwarded-Proto` with
/// `TRUST_FORWARDED`), the session cookie is `Secure` and HSTS is sent.
/// An untrusted `X-Forwarded-Proto` changes nothing.
#[actix_web::test]
async fn security_headers_and_secure_cookies_over_https() {
    let https = [("x-forwarded-proto", "https")];
    let cases = [
        ("plain", false, false, &[][..], false),
        ("untrusted proxy header", false, false, &https[..], false),
        ("trusted proxy, https", false, true, &https[..], true),
        (
            "trusted proxy, http",
            false,
            true,
            &[("x-forwarded-proto", "http")][..],
            false,
        ),
        ("COOKIE_SECURE", true, false, &[][..], true),
    ];
    for (case, cookie_secure, trust_forwarded, headers, secure) in cases {
        let (_dir, server) = common::TestServer::configured(|c| {
            c.cookie_secure = cookie_secure;
            c.trust_forwarded = trust_forwarded;
        })
        .await;
        let page = client_at(&server).get("/login").await;
        let header = |name: &str| {
            page.headers()
                .get(name)
                .map(|value| value.to_str().unwrap().to_owned())
        };
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
        assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
        let policy = header("content-security-policy").unwrap();
        assert!(
            policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"),
            "{policy}"
        );

        let login = login_from(&server, headers).await;
        assert_eq!(login.status(), 303, "{case}");
        let cookie = session_cookie(&login);
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        assert_eq!(cookie.contains("Secure"), secure, "{case}: {cookie}");
        assert_eq!(
            login.headers().contains_key("strict-transport-security"),
            secure,
            "{case}: HSTS"
        );
        server.stop().await;
    }
}

/// `TRUST_FORWARDED` takes the client's address from the hop the proxy
/// appended to `X-Forwarded-For`: per-address throttles then tell clients
/// behind the proxy apart, and a client cannot pick its address by
/// writing hops of its own in front. Without it the header is ignored.
#[actix_web::test]
async fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
    for trusted in [true, false] {
        let (_dir, server) = common::TestServer::configured(|c| {
            c.trust_forwarded = trusted;
            c.login_attempts_per_minute = 2;
        })
        .await;
        let from = |hops: &'static str| [("x-forwarded-for", hops)];
        for _ in 0..2 {
            assert_eq!(login_from(&server, &from("10.0.0.1")).await.status(), 303);
        }
        assert_eq!(
            login_from(&server, &from("10.0.0.1")).await.status(),
            429,
            "trusted: {trusted}"
        );
        assert_eq!(
            login_from(&server, &from("10.0.0.9, 10.0.0.1"))
                .await
                .status(),
            429,
            "a hop written in front is not the client's address (trusted: {trusted})"
        );
        let other = login_from(&server, &from("10.0.0.2")).await.status();
        assert_eq!(other, if trusted { 303 } else { 429 }, "trusted: {trusted}");
        server.stop().await;
    }
}
