//! Operability: the Prometheus endpoint follows what happens, the
//! dashboard and the docs name only metrics that exist, and logs are clean
//! text or JSON lines without secrets. Each replica is its own process, so
//! its metrics are its own.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{serial, Replica};
use common::{Client, Metrics, PASSWORD};
use serde_json::{json, Value};

fn client_of(replica: &Replica) -> Client {
    Client::at(replica.url(""), Arc::new(reqwest::cookie::Jar::default()))
}

/// Scrapes until `done` holds (metrics of a closing connection land a
/// moment after the client sees the close), for at most 5 s.
async fn eventually(replica: &Replica, done: impl Fn(&Metrics) -> bool) -> Metrics {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = replica.metrics().await;
        if done(&metrics) || Instant::now() > deadline {
            return metrics;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every metric family the endpoint exposes.
fn families(metrics: &Metrics) -> BTreeSet<String> {
    metrics
        .text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Names in `text` that look like this project's or the process's metrics.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for start in ["rookery_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(start) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            // `rookery_*` in prose names no metric.
            if !tail[..end].ends_with('_') {
                names.insert(tail[..end].to_owned());
            }
            rest = &tail[end..];
        }
    }
    names
}

#[actix_web::test]
async fn metrics_follow_logins_sends_refusals_and_closes() {
    let _serial = serial().await;
    let replica = Replica::start("metered", &[]);
    // Only on its own address.
    let public = reqwest::get(replica.url("/metrics")).await.unwrap();
    assert_eq!(public.status(), 404, "metrics are not on the public port");

    let before = replica.metrics().await;
    let alice = client_of(&replica);
    alice.login("alice").await;
    let mut ws = alice.ws().await;
    ws.join("lobby").await;
    assert_eq!(ws.say("lobby", "hello", "r1").await, 1);
    let after = replica.metrics().await;
    let grew = |series: &str| after.value(series) - before.value(series);
    assert_eq!(grew(r#"rookery_logins_total{result="registered"}"#), 1.0);
    assert_eq!(after.value("rookery_connections_open"), 1.0);
    assert_eq!(grew("rookery_connections_opened_total"), 1.0);
    assert_eq!(grew(r#"rookery_frames_received_total{type="send"}"#), 1.0);
    assert_eq!(
        grew(r#"rookery_messages_accepted_total{mode="reliable"}"#),
        1.0
    );
    assert_eq!(
        grew(r#"rookery_messages_stored_total{mode="reliable"}"#),
        1.0
    );
    assert_eq!(
        grew(r#"rookery_messages_delivered_total{mode="reliable"}"#),
        1.0,
        "delivered to its one member, the sender"
    );
    assert_eq!(grew("rookery_ack_seconds_count"), 1.0);
    assert_eq!(grew("rookery_delivery_seconds_count"), 1.0);
    assert!(grew("rookery_store_batch_messages_sum") >= 1.0);
    assert_eq!(after.value("rookery_store_backlog_messages"), 0.0);

    // Refusals count under their code.
    ws.send(json!({"type": "send", "room": "elsewhere", "text": "x", "ref": "r2"}))
        .await;
    assert_eq!(ws.recv_type("error").await["code"], "not_joined");
    ws.send_text("{nope").await;
    assert_eq!(ws.recv_type("error").await["code"], "malformed");
    let refused = replica.metrics().await;
    let grew = |series: &str| refused.value(series) - after.value(series);
    assert_eq!(grew(r#"rookery_errors_sent_total{code="not_joined"}"#), 1.0);
    assert_eq!(grew(r#"rookery_errors_sent_total{code="malformed"}"#), 1.0);
    assert_eq!(
        grew(r#"rookery_frames_received_total{type="invalid"}"#),
        1.0
    );

    // A fast message, fanned out before it is stored.
    ws.send(json!({"type": "send", "room": "lobby", "text": "quick", "delivery": "fast"}))
        .await;
    assert_eq!(ws.recv_type("message").await["text"], "quick");
    let fast = replica.metrics().await;
    assert_eq!(
        fast.value(r#"rookery_messages_delivered_total{mode="fast"}"#)
            - refused.value(r#"rookery_messages_delivered_total{mode="fast"}"#),
        1.0
    );

    // A wrong password is counted as such.
    let mallory = client_of(&replica);
    let form = [("name", "alice"), ("password", "not the password")];
    let response = mallory
        .http
        .post(replica.url("/login"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    ws.stream.close(None).await.unwrap();
    let closed = eventually(&replica, |m| m.value("rookery_connections_open") == 0.0).await;
    assert_eq!(closed.value("rookery_connections_open"), 0.0);
    assert_eq!(
        closed.value(r#"rookery_connections_closed_total{reason="client"}"#)
            - before.value(r#"rookery_connections_closed_total{reason="client"}"#),
        1.0
    );
    assert_eq!(
        closed.value(r#"rookery_logins_total{result="wrong_password"}"#)
            - before.value(r#"rookery_logins_total{result="wrong_password"}"#),
        1.0
    );
    assert!(closed.value("process_resident_memory_bytes") > 0.0);
    assert!(closed.value("process_open_fds") > 0.0);
    // Written to a file, not a terminal: no colour codes.
    assert!(!replica.log().contains('\u{1b}'), "{}", replica.log());
}

#[actix_web::test]
async fn json_logs_are_one_object_per_line_and_keep_secrets_out() {
    let _serial = serial().await;
    let replica = Replica::start(
        "json-node",
        &[("LOG_FORMAT", "json".into()), ("RUST_LOG", "debug".into())],
    );
    let secret_text = "the launch code is 0000";
    let bob = client_of(&replica);
    bob.login("bob").await;
    let mut ws = bob.ws().await;
    ws.join("lobby").await;
    ws.say("lobby", secret_text, "s1").await;
    let wrong = "hunter2-is-not-it";
    let response = client_of(&replica)
        .http
        .post(replica.url("/login"))
        .form(&[("name", "bob"), ("password", wrong)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let cookie = bob.cookie_header().unwrap();
    let cookie = cookie.split_once('=').unwrap().1.to_owned();
    ws.stream.close(None).await.unwrap();
    // Every line up to the connection's end, at debug level (the
    // server's and its libraries').
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !replica.log().contains(r#""message":"disconnected""#) {
        assert!(
            std::time::Instant::now() < deadline,
            "no disconnect logged: {}",
            replica.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let log = replica.log();
    let mut lines = 0;
    let mut with_user = 0;
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
        assert_eq!(value["node"], "json-node", "{line}");
        assert!(value["level"].is_string(), "{line}");
        assert!(value["target"].is_string(), "{line}");
        if value["user"] == "bob" {
            with_user += 1;
        }
        lines += 1;
    }
    assert!(lines > 5, "{log}");
    assert!(with_user > 0, "lines about bob name him: {log}");
    for secret in [PASSWORD, wrong, secret_text, cookie.as_str()] {
        assert!(!log.contains(secret), "{secret:?} was logged");
    }
    assert!(!log.contains('\u{1b}'));
}

#[actix_web::test]
async fn the_dashboard_and_the_docs_name_only_metrics_that_exist() {
    let _serial = serial().await;
    let replica = Replica::start("scraped", &[]);
    let metrics = replica.metrics().await;
    let exposed = families(&metrics);
    // Histograms are queried by their series, not their family.
    let series: BTreeSet<String> = exposed
        .iter()
        .flat_map(|name| ["", "_bucket", "_sum", "_count"].map(|suffix| format!("{name}{suffix}")))
        .collect();

    let root = env!("CARGO_MANIFEST_DIR");
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/rookery-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() > 20, "{queried:?}");
    let unknown: Vec<_> = queried.difference(&series).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries {unknown:?}, which do not exist"
    );

    let docs = std::fs::read_to_string(format!("{root}/docs/METRICS.md")).unwrap();
    let documented = metric_names(&docs);
    let ours: BTreeSet<String> = exposed
        .iter()
        .filter(|name| name.starts_with("rookery_"))
        .cloned()
        .collect();
    let undocumented: Vec<_> = ours.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "not in docs/METRICS.md: {undocumented:?}"
    );
    let stale: Vec<_> = documented
        .iter()
        .filter(|name| name.starts_with("rookery_"))
        .filter(|name| !series.contains(*name))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/METRICS.md names {stale:?}, which do not exist"
    );
}
