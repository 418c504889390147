//! Test harness: a real Rookery server in-process on 127.0.0.1:0, a real
//! HTTP client with a cookie jar, and a real WebSocket client.
//!
//! Over 400 lines: the harness every test binary shares (server, HTTP and
//! WebSocket clients), one place so they stay alike.
#![allow(dead_code)]

pub mod cluster;
pub mod link;
pub mod mongo;
pub mod webhook;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub const PASSWORD: &str = "correct horse battery";

/// The smallest valid PNG (1×1): a profile photo.
pub const PNG: &[u8] = &[
    0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, b'I', b'H', b'D', b'R', 0, 0, 0,
    1, 0, 0, 0, 1, 8, 6, 0, 0, 0, 0x1F, 0x15, 0xC4, 0x89, 0, 0, 0, 0x0A, b'I', b'D', b'A', b'T',
    0x78, 0x9C, 0x63, 0, 1, 0, 0, 5, 0, 1, 0x0D, 0x0A, 0x2D, 0xB4, 0, 0, 0, 0, b'I', b'E', b'N',
    b'D', 0xAE, 0x42, 0x60, 0x82,
];
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a test waits for one frame, pings or not: above every wait a
/// test asks for (a replica's presence expiring, 30 s), far below forever.
const RECV_LIMIT: Duration = Duration::from_secs(60);

pub struct TestServer {
    pub addr: SocketAddr,
    running: Option<rookery::Running>,
}

impl TestServer {
    pub async fn start(data_dir: &Path) -> Self {
        Self::start_with(rookery::Config::local(data_dir)).await
    }

    /// A server on a new temporary data directory, kept alive by the guard.
    pub async fn fresh() -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        let server = Self::start(dir.path()).await;
        (dir, server)
    }

    /// A server on a new temporary data directory with its configuration
    /// changed by `configure`, kept alive by the guard.
    pub async fn configured(
        configure: impl FnOnce(&mut rookery::Config),
    ) -> (tempfile::TempDir, Self) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = rookery::Config::local(dir.path());
        configure(&mut config);
        (dir, Self::start_with(config).await)
    }

    pub async fn start_with(config: rookery::Config) -> Self {
        let running = rookery::start(config).await.expect("server starts");
        let addr = running.addr;
        Self {
            addr,
            running: Some(running),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await.expect("server stops cleanly");
        }
    }
}

/// Runs `work` while `idle` sockets keep reading (answering pings), so
/// they are not dropped as dead during a long wait.
pub async fn with_idle<T>(work: impl std::future::Future<Output = T>, idle: &mut [&mut Ws]) -> T {
    let keep_alive = async {
        loop {
            for ws in idle.iter_mut() {
                ws.keep_alive(Duration::from_millis(100)).await;
            }
        }
    };
    tokio::select! {
        result = work => result,
        _ = keep_alive => unreachable!("keeping alive never ends"),
    }
}

/// A browser-like HTTP client: follows no redirects, keeps cookies.
pub struct Client {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
    /// The `Host` every request names, behind a proxy routing by host.
    pub host: Option<String>,
}

impl Client {
    pub fn new(server: &TestServer) -> Self {
        Self::with_jar(server, Arc::new(Jar::default()))
    }

    pub fn with_jar(server: &TestServer, jar: Arc<Jar>) -> Self {
        Self::at(server.url(""), jar)
    }

    /// A client of the server at `base` (`http://host:port`), keeping its
    /// cookies in `jar` (shared jars act like one browser).
    pub fn at(base: String, jar: Arc<Jar>) -> Self {
        Self::build(base, jar, None)
    }

    fn build(base: String, jar: Arc<Jar>, host: Option<&str>) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(host) = host {
            headers.insert(reqwest::header::HOST, host.parse().unwrap());
        }
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            jar,
            base,
            host: host.map(str::to_owned),
        }
    }

    /// A client of the proxy at `base` that routes `host` (traefik in
    /// front of a compose stack), with its own cookies (and so its own
    /// sticky replica).
    pub fn via_proxy(base: String, host: &str) -> Self {
        Self::build(base, Arc::new(Jar::default()), Some(host))
    }

    /// A new client, logged in (registered) as `name`.
    pub async fn logged_in(server: &TestServer, name: &str) -> Self {
        let client = Self::new(server);
        client.login(name).await;
        client
    }

    /// A new client, logged in with an identity-provider token (the auth
    /// webhook decides).
    pub async fn logged_in_via_token(server: &TestServer, name: &str, token: &str) -> Self {
        let client = Self::new(server);
        let response = client
            .http
            .post(format!("{}/login", client.base))
            .form(&[("name", name), ("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "token login of {name}");
        client
    }

    pub async fn login_with(&self, name: &str, password: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/login", self.base))
            .form(&[("name", name), ("password", password)])
            .send()
            .await
            .unwrap()
    }

    pub async fn login(&self, name: &str) {
        let response = self.login_with(name, PASSWORD).await;
        assert_eq!(response.status(), 303, "login of {name} should redirect");
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap()
    }

    pub fn cookie_header(&self) -> Option<String> {
        let url = self.base.parse().unwrap();
        self.jar
            .cookies(&url)
            .map(|value| value.to_str().unwrap().to_owned())
    }

    pub async fn ws(&self) -> Ws {
        self.try_ws().await.expect("WebSocket upgrade")
    }

    pub async fn try_ws(&self) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}/ws", self.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().unwrap();
        if let Some(cookie) = self.cookie_header() {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        if let Some(host) = &self.host {
            request.headers_mut().insert("host", host.parse().unwrap());
        }
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws {
            stream,
            backlog: Default::default(),
            online: Default::default(),
            close_code: None,
            close_reason: None,
        })
    }
}

type Stream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Debug)]
pub struct Ws {
    pub stream: Stream,
    /// Frames read past while waiting for a specific one, in arrival order.
    backlog: std::collections::VecDeque<Value>,
    /// The latest online list per room, from every `joined` and `presence` read.
    online: std::collections::HashMap<String, Value>,
    /// The close code the server sent, once [`Ws::until_closed`] saw it.
    pub close_code: Option<u16>,
    /// The close reason that came with it.
    pub close_reason: Option<String>,
}

impl Ws {
    pub async fn send(&mut self, frame: Value) {
        self.send_text(&frame.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.stream
            .send(Message::Text(text.to_owned().into()))
            .await
            .unwrap();
    }

    /// The next JSON frame, skipping pings: within [`FRAME_TIMEOUT`] of
    /// silence, and [`RECV_LIMIT`] in all (the server's pings must not keep
    /// a test waiting forever for a frame that never comes).
    pub async fn recv(&mut self) -> Value {
        if let Some(frame) = self.backlog.pop_front() {
            return frame;
        }
        let limit = tokio::time::Instant::now() + RECV_LIMIT;
        loop {
            let until = (tokio::time::Instant::now() + FRAME_TIMEOUT).min(limit);
            let message = tokio::time::timeout_at(until, self.stream.next())
                .await
                .expect("a frame within the timeout")
                .expect("the connection is open")
                .expect("a valid frame");
            match message {
                Message::Text(text) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    self.note(&frame);
                    return frame;
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// The next JSON frame before `until`, `None` once the connection has
    /// ended (or the time is up): for clients whose replica may die.
    pub async fn next_before(&mut self, until: tokio::time::Instant) -> Option<Value> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(frame);
        }
        loop {
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).ok()?;
                    self.note(&frame);
                    return Some(frame);
                }
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => return None,
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    fn note(&mut self, frame: &Value) {
        if frame["type"] == "joined" || frame["type"] == "presence" {
            if let Some(room) = frame["room"].as_str() {
                self.online.insert(room.to_owned(), frame["online"].clone());
            }
        }
    }

    /// Reads for `duration`, keeping what arrives for later: an idle client
    /// still answers the server's pings, as a browser would.
    pub async fn keep_alive(&mut self, duration: Duration) {
        let until = tokio::time::Instant::now() + duration;
        while let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, self.stream.next()).await {
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                self.note(&frame);
                self.backlog.push_back(frame);
            }
        }
    }

    /// The next frame of `kind`; others (presence, typing...) are dropped.
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// Reads frames until the server closes the connection (or it breaks),
    /// returning them; panics if it stays open past `within`.
    pub async fn until_closed(&mut self, within: Duration) -> Vec<Value> {
        let mut frames: Vec<Value> = self.backlog.drain(..).collect();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .expect("the connection closes within the timeout");
            match next {
                Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(close))) => {
                    self.close_reason = close.as_ref().map(|close| close.reason.to_string());
                    self.close_code = close.map(|close| u16::from(close.code));
                    return frames;
                }
                Some(Err(_)) | None => return frames,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// `count` message frames, in arrival order; other frames are dropped.
    pub async fn messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            messages.push(self.recv_type("message").await);
        }
        messages
    }

    /// Waits until `room`'s online list (from `joined` or `presence`) is `users`.
    pub async fn wait_online(&mut self, room: &str, users: &[&str], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let wanted = serde_json::json!(users);
        if self.online.get(room) == Some(&wanted) {
            return;
        }
        let mut last = Value::Null;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| panic!("{room} never showed {users:?} online; last: {last}"));
            if (frame["type"] == "presence" || frame["type"] == "joined") && frame["room"] == room {
                if frame["online"] == wanted {
                    return;
                }
                last = frame["online"].clone();
            }
        }
    }

    /// Every frame that arrives within `wait`: the whole window is read,
    /// so what follows a first, harmless frame is seen too. Panics if the
    /// connection ends meanwhile.
    pub async fn frames_for(&mut self, wait: Duration) -> Vec<Value> {
        let until = tokio::time::Instant::now() + wait;
        let mut frames: Vec<Value> = self.backlog.drain(..).collect();
        loop {
            match tokio::time::timeout_at(until, self.stream.next()).await {
                Err(_) => return frames,
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame: Value = serde_json::from_str(&text).unwrap();
                    self.note(&frame);
                    frames.push(frame);
                }
                Ok(Some(Ok(Message::Close(close)))) => {
                    panic!("the connection closed ({close:?}) after {frames:?}")
                }
                Ok(Some(Err(err))) => panic!("the connection broke ({err}) after {frames:?}"),
                Ok(None) => panic!("the connection ended after {frames:?}"),
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Asserts that no frame of `kind` arrives within `wait`, whatever
    /// else does.
    pub async fn none_for(&mut self, kind: &str, wait: Duration) {
        let frames = self.frames_for(wait).await;
        assert!(
            frames.iter().all(|frame| frame["type"] != kind),
            "a {kind} frame arrived: {frames:?}"
        );
    }

    /// Resumes `room` after `since` (the last seq shown), returning the
    /// replayed messages.
    pub async fn resume(&mut self, room: &str, since: u64) -> Vec<Value> {
        self.send(serde_json::json!({"type": "resume", "rooms": {room: since}}))
            .await;
        let joined = self.recv_type("joined").await;
        joined["history"].as_array().unwrap().clone()
    }

    /// Answers to `count` sends with integer refs, in arrival order: the
    /// refs acked and the refs refused as `rate_limited` (any other error
    /// fails the test).
    pub async fn acks_and_refusals(&mut self, count: usize) -> (Vec<i64>, Vec<i64>) {
        let (mut acked, mut limited) = (Vec::new(), Vec::new());
        while acked.len() + limited.len() < count {
            let frame = self.recv().await;
            match frame["type"].as_str() {
                Some("ack") => acked.push(frame["ref"].as_i64().unwrap()),
                Some("error") => {
                    assert_eq!(frame["code"], "rate_limited", "{frame}");
                    limited.push(frame["ref"].as_i64().unwrap());
                }
                _ => {}
            }
        }
        (acked, limited)
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"type": "join", "room": room}))
            .await;
        self.recv_type("joined").await
    }

    /// Sends a message and waits for its ack, returning the acked seq.
    pub async fn say(&mut self, room: &str, text: &str, reference: &str) -> u64 {
        let frame =
            serde_json::json!({"type": "send", "room": room, "text": text, "ref": reference});
        self.acked(frame, reference).await["seq"].as_u64().unwrap()
    }

    /// Sends a direct message and waits for its ack, returning the ack.
    pub async fn direct(&mut self, to: &str, text: &str, reference: &str) -> Value {
        let frame = serde_json::json!({"type": "direct", "to": to, "text": text, "ref": reference});
        self.acked(frame, reference).await
    }

    /// Sends `frame` and waits for the ack of `reference`; what arrives
    /// meanwhile stays there for the test to read.
    async fn acked(&mut self, frame: Value, reference: &str) -> Value {
        self.send(frame).await;
        let mut skipped = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "ack" && frame["ref"] == reference {
                for frame in skipped.into_iter().rev() {
                    self.backlog.push_front(frame);
                }
                return frame;
            }
            assert_ne!(frame["type"], "error", "send failed: {frame}");
            skipped.push(frame);
        }
    }
}

/// One scrape of a replica's `/metrics`.
pub struct Metrics {
    pub text: String,
}

impl Metrics {
    pub async fn scrape(addr: SocketAddr) -> Self {
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("the metrics endpoint answers");
        assert!(response.status().is_success());
        Self {
            text: response.text().await.unwrap(),
        }
    }

    /// The value of one series, written as in the text format
    /// (`name{label="value"}`); 0 for a series that is absent.
    pub fn value(&self, series: &str) -> f64 {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                (name == series).then(|| value.parse().unwrap())
            })
            .unwrap_or(0.0)
    }
}
