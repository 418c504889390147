//! The server API (`/api/v1`) as a backend uses it: against two real
//! replicas on Redis and one MongoDB-protocol database for what crosses
//! replicas, and against one embedded-store server for keys, bad input and
//! the OpenAPI document.
//!
//! Over 400 lines: one suite per endpoint group, sharing the two replicas
//! it starts.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{serial, BrokerKind, Cluster};
use common::{Client, TestServer};
use reqwest::header::AUTHORIZATION;
use serde_json::{json, Value};

const KEY: &str = "test-key-0123456789abcdef";
const OTHER_KEY: &str = "second-key-fedcba9876543210";

/// Message frames that arrive within `wait` (other frames are skipped).
async fn more_messages(ws: &mut common::Ws, wait: Duration) -> Vec<Value> {
    let mut more = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    while let Ok(frame) = tokio::time::timeout_at(until, ws.recv()).await {
        if frame["type"] == "message" {
            more.push(frame);
        }
    }
    more
}

/// A backend of the server at `base`.
struct Backend {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Backend {
    fn new(base: String) -> Self {
        Self {
            http: reqwest::Client::new(),
            base,
            key: KEY.to_owned(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}/api/v1{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {}", self.key))
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .unwrap();
        answer(response).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .unwrap();
        answer(response).await
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

/// Across two replicas: a publish through replica 0 reaches members on
/// replica 1 exactly once, in `seq` order, with the response's `seq`; a
/// retried publish stores once; presence and connections cover both
/// replicas; a direct message to an offline user waits for their login;
/// a disconnect closes the user's sockets on both and refuses reconnects.
#[actix_web::test]
async fn a_backend_publishes_inspects_and_disconnects_across_replicas() {
    let _serial = serial().await;
    let cluster = Cluster::start_with(BrokerKind::Redis, 2, &[("API_KEYS", KEY.to_owned())]).await;
    let api = Backend::new(cluster.replicas[0].url(""));
    let (_alice_client, mut alice) = cluster.user("alice", 1, "news").await;
    let (_bob_client, mut bob) = cluster.user("bob", 0, "news").await;

    // A wrong key is refused, and neither it nor the real one is logged.
    let wrong = "wrong-but-plausible-key-42424242";
    let mut intruder = Backend::new(cluster.replicas[0].url(""));
    intruder.key = wrong.to_owned();
    assert_eq!(intruder.get("/rooms/news/presence").await.0, 401);
    let log = cluster.replicas[0].log();
    assert!(log.contains("refused an API request"), "{log}");

    // Presence: both replicas' members, asked of replica 0; and of a room
    // only replica 1 runs, which replica 0 starts to ask.
    let (status, presence) = api.get("/rooms/news/presence").await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(presence["online"], json!(["alice", "bob"]));
    alice.join("lobby").await;
    let (status, presence) = api.get("/rooms/lobby/presence").await;
    assert_eq!(status, 200, "{presence}");
    assert_eq!(
        presence["online"],
        json!(["alice"]),
        "replica 1's member, seen from replica 0"
    );

    // Publishes from a system sender and as a user, interleaved with a
    // member's own message: one sequence, everyone sees it once, in order.
    let mut expected = Vec::new();
    for n in 0..20 {
        let (status, published) = api
            .post(
                "/rooms/news/messages",
                json!({"system": "deploys", "text": format!("release {n}")}),
            )
            .await;
        assert_eq!(status, 201, "{published}");
        assert_eq!(published["room"], "news");
        expected.push((published["seq"].as_u64().unwrap(), format!("release {n}")));
        if n == 10 {
            let seq = bob.say("news", "between", "b1").await;
            expected.push((seq, "between".to_owned()));
        }
    }
    let (status, as_user) = api
        .post(
            "/rooms/news/messages",
            json!({"from": "bob", "text": "from bob's backend"}),
        )
        .await;
    assert_eq!(status, 201, "{as_user}");
    expected.push((
        as_user["seq"].as_u64().unwrap(),
        "from bob's backend".to_owned(),
    ));
    expected.sort();
    let wanted: Vec<u64> = expected.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        wanted,
        (wanted[0]..wanted[0] + wanted.len() as u64).collect::<Vec<_>>(),
        "the API's seqs and the member's are one sequence without holes"
    );
    for ws in [&mut alice, &mut bob] {
        let got = ws.messages(expected.len()).await;
        assert_eq!(seqs(&got), wanted, "each once, in seq order");
        assert_eq!(got[0]["from"], "system:deploys");
        let texts: Vec<&str> = got.iter().map(|m| m["text"].as_str().unwrap()).collect();
        let want: Vec<&str> = expected.iter().map(|(_, text)| text.as_str()).collect();
        assert_eq!(texts, want);
        let more = more_messages(ws, Duration::from_millis(500)).await;
        assert_eq!(more, Vec::<Value>::new(), "nothing twice");
    }

    // A retry with the same Idempotency-Key is the same message.
    let keyed = |n: u32| {
        api.request(reqwest::Method::POST, "/rooms/news/messages")
            .header("Idempotency-Key", format!("order-{n}"))
            .json(&json!({"system": "orders", "text": "order 7 paid"}))
    };
    let (first_status, first) = answer(keyed(7).send().await.unwrap()).await;
    let (again_status, again) = answer(keyed(7).send().await.unwrap()).await;
    assert_eq!((first_status, again_status), (201, 201), "{first} {again}");
    assert_eq!(first["seq"], again["seq"]);
    assert_eq!(first["id"], again["id"]);
    let (_, other) = answer(keyed(8).send().await.unwrap()).await;
    assert_eq!(
        other["seq"].as_u64(),
        first["seq"].as_u64().map(|s| s + 1),
        "another key is another message"
    );
    let got = alice.messages(2).await;
    assert_eq!(
        seqs(&got),
        [
            first["seq"].as_u64().unwrap(),
            other["seq"].as_u64().unwrap()
        ]
    );
    let more = more_messages(&mut alice, Duration::from_millis(500)).await;
    assert_eq!(
        more,
        Vec::<Value>::new(),
        "the retry was not delivered again"
    );
    assert_eq!(seqs(&bob.messages(2).await), seqs(&got));

    // A broadcast: each room stores its copy with its own seq.
    let (status, sent) = api
        .post(
            "/broadcast",
            json!({"rooms": ["news", "lobby"], "system": "ops", "text": "maintenance"}),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    let results = sent["results"].as_array().unwrap();
    assert_eq!(
        (results[0]["room"].as_str(), results[1]["room"].as_str()),
        (Some("news"), Some("lobby"))
    );
    let mut got: Vec<(String, u64)> = alice
        .messages(2)
        .await
        .iter()
        .map(|m| {
            (
                m["room"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<(String, u64)> = results
        .iter()
        .map(|r| {
            (
                r["room"].as_str().unwrap().to_owned(),
                r["seq"].as_u64().unwrap(),
            )
        })
        .collect();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        bob.messages(1).await[0]["text"],
        "maintenance",
        "bob is in news only"
    );
    // A key makes even a `fast` publish stored first: only then is its
    // repeat recognised.
    let mut stored = Vec::new();
    for _ in 0..2 {
        let response = api
            .request(reqwest::Method::POST, "/rooms/elsewhere/messages")
            .header("Idempotency-Key", "f1")
            .json(&json!({"system": "x", "text": "fast", "fast": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "stored, not only sent");
        let body: Value = response.json().await.unwrap();
        stored.push(body["seq"].as_u64().expect("a seq"));
    }
    assert_eq!(stored, [1, 1], "the repeat is the first one");

    // History through the other replica: the same messages, paged by seq.
    let history_api = Backend::new(cluster.replicas[1].url(""));
    let (status, page) = history_api.get("/rooms/news/messages?limit=3").await;
    assert_eq!(status, 200, "{page}");
    let newest = seqs(page["messages"].as_array().unwrap());
    assert_eq!(newest.len(), 3);
    assert_eq!(
        newest,
        [
            first["seq"].as_u64().unwrap(),
            other["seq"].as_u64().unwrap(),
            results[0]["seq"].as_u64().unwrap()
        ],
        "the keyed pair, then the broadcast's copy"
    );
    assert_eq!(page["more"], true);
    let (_, older) = history_api
        .get(&format!(
            "/rooms/news/messages?before={}&limit=2",
            newest[0]
        ))
        .await;
    assert_eq!(
        seqs(older["messages"].as_array().unwrap()),
        [newest[0] - 2, newest[0] - 1]
    );
    let (_, after) = history_api
        .get(&format!("/rooms/news/messages?after={}", newest[1]))
        .await;
    assert_eq!(seqs(after["messages"].as_array().unwrap()), [newest[2]]);
    assert_eq!(after["more"], false);
    // Both: the range between, oldest first.
    let (_, between) = history_api
        .get(&format!(
            "/rooms/news/messages?after={}&before={}&limit=1",
            newest[0] - 3,
            newest[2]
        ))
        .await;
    assert_eq!(
        seqs(between["messages"].as_array().unwrap()),
        [newest[0] - 2]
    );
    assert_eq!(between["more"], true);
    let (_, between) = history_api
        .get(&format!(
            "/rooms/news/messages?after={}&before={}",
            newest[0] - 3,
            newest[2]
        ))
        .await;
    assert_eq!(
        seqs(between["messages"].as_array().unwrap()),
        [newest[0] - 2, newest[0] - 1, newest[0], newest[1]]
    );
    assert_eq!(between["more"], false);

    // A direct message to carol, who is registered but offline: it waits
    // for her, and her login on the other replica fetches it.
    let carol_client = Client::at(cluster.replicas[1].url(""), Default::default());
    carol_client.login("carol").await;
    let (status, sent) = api
        .post(
            "/users/carol/messages",
            json!({"from": "bob", "text": "your invoice"}),
        )
        .await;
    assert_eq!(status, 201, "{sent}");
    assert_eq!(sent["room"], "@bob:carol");
    // The conversation by either order of its names.
    let (status, page) = api.get("/rooms/@carol:bob/messages").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        (page["room"].as_str(), page["messages"][0]["text"].as_str()),
        (Some("@bob:carol"), Some("your invoice"))
    );
    let (status, _) = api
        .post(
            "/users/nobody/messages",
            json!({"from": "bob", "text": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    // Bob's own connection sees his conversation too.
    let echoed = bob.recv_type("message").await;
    assert_eq!(
        (echoed["room"].as_str(), echoed["seq"].as_u64()),
        (Some("@bob:carol"), sent["seq"].as_u64())
    );
    let mut carol = carol_client.ws().await;
    assert_eq!(carol.recv_type("pending").await["count"], 1);
    carol.send(json!({"type": "fetch_missed"})).await;
    let missed = carol.recv_type("message").await;
    assert_eq!(
        (missed["text"].as_str(), missed["from"].as_str()),
        (Some("your invoice"), Some("bob"))
    );
    assert_eq!(carol.recv_type("fetch_missed_complete").await["left"], 0);

    // Alice's connections, asked of the replica she is not on; then a
    // second connection of hers on replica 0.
    let alice_again = Client::at(cluster.replicas[0].url(""), Arc::clone(&_alice_client.jar));
    let mut alice_second = alice_again.ws().await;
    alice_second.join("news").await;
    let (status, connections) = api.get("/users/alice/connections").await;
    assert_eq!(status, 200, "{connections}");
    let nodes: BTreeSet<&str> = connections["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, BTreeSet::from(["node0", "node1"]), "{connections}");
    assert_eq!(connections["connections"][0]["rooms"], json!(["news"]));

    // Disconnect: both of her sockets close with the reason, and for the
    // refusal period a new one is closed at once, on either replica.
    let (status, disconnected) = api
        .post(
            "/users/alice/disconnect",
            json!({"reason": "disconnected", "refuse_seconds": 30}),
        )
        .await;
    assert_eq!(status, 200, "{disconnected}");
    assert!(disconnected["refused_until"].is_string());
    assert_eq!(disconnected["everywhere"], true);
    for ws in [&mut alice, &mut alice_second] {
        ws.until_closed(Duration::from_secs(5)).await;
        assert_eq!(
            (ws.close_code, ws.close_reason.as_deref()),
            (Some(1008), Some("disconnected"))
        );
    }
    let mut refused = _alice_client.ws().await;
    refused.until_closed(Duration::from_secs(5)).await;
    assert_eq!(
        refused.close_reason.as_deref(),
        Some("disconnected"),
        "refused on replica 1 too"
    );
    // Bob was not touched.
    bob.send(json!({"type": "ping"})).await;
    assert_eq!(bob.recv_type("pong").await["type"], "pong");
    let (_, connections) = api.get("/users/alice/connections").await;
    assert_eq!(connections["connections"], json!([]));
    // The real key, used all along, and the wrong one: in no log.
    for replica in &cluster.replicas {
        let log = replica.log();
        assert!(
            !log.contains(wrong) && !log.contains(KEY),
            "a key in the log:\n{log}"
        );
    }
}

fn server_with_keys(dir: &std::path::Path, keys: &[&str], rate: u32) -> rookery::Config {
    let mut config = rookery::Config::local(dir);
    config.api_keys = keys.iter().map(|key| key.parse().unwrap()).collect();
    config.api_rate_limit = rate;
    config
}

/// Without keys the API does not exist; with them, a wrong or missing key
/// is 401 and never logged, and each key has its own rate.
#[actix_web::test]
async fn keys_guard_the_api_and_it_is_off_without_them() {
    let (_dir, plain) = TestServer::fresh().await;
    let off = Backend::new(plain.url(""));
    assert_eq!(off.get("/openapi.json").await.0, 404);
    assert_eq!(
        off.post(
            "/rooms/general/messages",
            json!({"system": "x", "text": "hi"})
        )
        .await
        .0,
        404
    );
    plain.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(server_with_keys(dir.path(), &[KEY, OTHER_KEY], 5)).await;
    let mut api = Backend::new(server.url(""));
    let wrong = "wrong-key-aaaaaaaaaaaaaaaaaaaaaaaa";
    for key in [wrong, "", KEY.trim_end_matches('f')] {
        api.key = key.to_owned();
        let (status, body) = api
            .post(
                "/rooms/general/messages",
                json!({"system": "x", "text": "hi"}),
            )
            .await;
        assert_eq!(status, 401, "{key:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let response = reqwest::Client::new()
        .get(server.url("/api/v1/rooms/general/presence"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no Authorization header");
    assert_eq!(response.headers()["www-authenticate"], "Bearer");

    // Rate: 5 per second per key; the other key is not affected.
    api.key = KEY.to_owned();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        statuses.push(api.get("/rooms/general/presence").await.0);
    }
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    api.key = OTHER_KEY.to_owned();
    assert_eq!(api.get("/rooms/general/presence").await.0, 200);
    // A broadcast costs one per room: 6 rooms can never fit a burst of 5,
    // which is bad input, not a reason to retry.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rooms: Vec<String> = (0..6).map(|n| format!("r{n}")).collect();
    let (status, body) = api
        .post(
            "/broadcast",
            json!({"rooms": rooms, "system": "x", "text": "all"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    // Two at once: a burst of 5 pays for one of them. Sent one after the
    // other, the first one's fsynced writes on a slow disk would refill
    // the bucket before the second arrived.
    let three = |text: &str| json!({"rooms": ["r0", "r1", "r2"], "system": "x", "text": text});
    let (first, second) = tokio::join!(
        api.post("/broadcast", three("all")),
        api.post("/broadcast", three("more"))
    );
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(statuses, [200, 429], "{} / {}", first.1, second.1);
    server.stop().await;
}

/// Bad input is a 400 that says what was wrong, and stores nothing.
#[actix_web::test]
async fn bad_input_is_refused_with_what_was_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(server_with_keys(dir.path(), &[KEY], 0)).await;
    let api = Backend::new(server.url(""));
    Client::logged_in(&server, "dora").await;
    let cases = [
        (json!({"text": "no sender"}), "bad_request"),
        (
            json!({"system": "a", "from": "dora", "text": "both"}),
            "bad_request",
        ),
        (json!({"system": "not valid!", "text": "x"}), "bad_request"),
        (
            json!({"system": "a", "text": "x", "colour": "red"}),
            "bad_request",
        ),
        (json!({"system": "a", "text": " \u{200b} "}), "empty_text"),
        (
            json!({"system": "a", "text": "x".repeat(4001)}),
            "text_too_long",
        ),
        (json!({"system": "a", "text": 5}), "bad_request"),
    ];
    for (body, code) in cases {
        let (status, answer) = api.post("/rooms/general/messages", body.clone()).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}: {answer}"
        );
        assert!(!answer["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, answer) = api
        .post(
            "/rooms/general/messages",
            json!({"from": "ghost", "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("unknown_user"))
    );
    for room in ["@dora:dora", "has%20space", &"r".repeat(65)] {
        let (status, answer) = api
            .post(
                &format!("/rooms/{room}/messages"),
                json!({"system": "a", "text": "x"}),
            )
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (400, Some("invalid_room")),
            "{room}: {answer}"
        );
    }
    // A repeated key is refused, not resolved one way or the other.
    let response = api
        .request(reqwest::Method::POST, "/rooms/general/messages")
        .header("content-type", "application/json")
        .body(r#"{"system":"a","text":"one","text":"two"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = api
        .request(reqwest::Method::POST, "/rooms/general/messages")
        .body(vec![b' '; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let response = api
        .request(reqwest::Method::POST, "/rooms/general/messages")
        .header("Idempotency-Key", "k".repeat(101))
        .json(&json!({"system": "a", "text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    for query in ["limit=0", "limit=101", "before=-1", "page=2"] {
        let (status, answer) = api.get(&format!("/rooms/general/messages?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let (status, answer) = api.get("/rooms/general/messages").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("unknown_room")),
        "nothing was stored"
    );
    let (status, _) = api
        .post("/users/dora/disconnect", json!({"refuse_seconds": 86401}))
        .await;
    assert_eq!(status, 400);
    let (status, _) = api.get("/users/ghost/connections").await;
    assert_eq!(status, 404);
    let (status, body) = api.get("/no/such/route").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    server.stop().await;
}

fn validator() -> PathBuf {
    if let Some(path) = std::env::var_os("OPENAPI_SPEC_VALIDATOR") {
        return path.into();
    }
    let cached = PathBuf::from(std::env::var_os("HOME").expect("HOME"))
        .join(".cache/rookery/validate/bin/openapi-spec-validator");
    assert!(
        cached.exists(),
        "openapi-spec-validator is missing: scripts/test.sh installs it (or set OPENAPI_SPEC_VALIDATOR)"
    );
    cached
}

/// The OpenAPI document is valid (checked by `openapi-spec-validator`)
/// and lists every route the API serves.
#[actix_web::test]
async fn the_openapi_document_is_valid_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(server_with_keys(dir.path(), &[KEY], 0)).await;
    let document: Value = reqwest::get(server.url("/api/v1/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.stop().await;
    let routes: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, operations)| {
            operations
                .as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect();
    // What the router serves, from the table it is built from.
    let served: BTreeSet<(String, String)> = rookery::http::api::served()
        .into_iter()
        .map(|(method, path)| (method.as_str().to_lowercase(), path))
        .collect();
    assert_eq!(served.len(), 7);
    assert_eq!(routes, served);
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document.to_string()).unwrap();
    let output = std::process::Command::new(validator())
        .arg(&file)
        .output()
        .expect("openapi-spec-validator runs");
    assert!(
        output.status.success(),
        "the document is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A backend reads messages as they are now: edited text with its time,
/// deleted ones in their place without text, and no edits or deletes as
/// messages of their own, paging back or catching up.
#[actix_web::test]
async fn the_api_shows_messages_edited_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(server_with_keys(dir.path(), &[KEY], 100)).await;
    let mut alice = Client::logged_in(&server, "alice").await.ws().await;
    alice.join("notes").await;
    let kept = alice.say("notes", "draft", "a1").await;
    let gone = alice.say("notes", "oops", "a2").await;
    let ids: Vec<String> = {
        let page = alice.join("notes").await;
        page["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    alice
        .send(json!({"type":"edit","room":"notes","id":ids[0],"text":"final","ref":"e"}))
        .await;
    alice.recv_type("ack").await;
    alice
        .send(json!({"type":"delete","room":"notes","id":ids[1],"ref":"d"}))
        .await;
    alice.recv_type("ack").await;

    let api = Backend::new(server.url(""));
    for path in ["/rooms/notes/messages", "/rooms/notes/messages?after=0"] {
        let (status, page) = api.get(path).await;
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().unwrap();
        assert_eq!(seqs(messages), [kept, gone], "{path}: {page}");
        assert_eq!(messages[0]["text"], "final");
        assert!(messages[0]["edited"].is_string(), "{page}");
        assert_eq!(messages[1]["deleted"], true);
        assert!(messages[1].get("text").is_none(), "{page}");
    }
    server.stop().await;
}
