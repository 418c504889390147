//! Test harness: a real Rookery server in-process on 127.0.0.1:0, a real
//! HTTP client with a cookie jar, and a real WebSocket client.
#![allow(dead_code)]

pub mod mongo;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::cookie::{CookieStore, Jar};
use serde_json::Value;
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

pub const PASSWORD: &str = "correct horse battery";
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

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

/// A browser-like HTTP client: follows no redirects, keeps cookies.
pub struct Client {
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
    pub base: String,
}

impl Client {
    pub fn new(server: &TestServer) -> Self {
        Self::with_jar(server, Arc::new(Jar::default()))
    }

    pub fn with_jar(server: &TestServer, jar: Arc<Jar>) -> Self {
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            http,
            jar,
            base: server.url(""),
        }
    }

    /// A new client, logged in (registered) as `name`.
    pub async fn logged_in(server: &TestServer, name: &str) -> Self {
        let client = Self::new(server);
        client.login(name).await;
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
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Ws {
            stream,
            backlog: Default::default(),
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

    /// The next JSON frame, skipping pings.
    pub async fn recv(&mut self) -> Value {
        if let Some(frame) = self.backlog.pop_front() {
            return frame;
        }
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next())
                .await
                .expect("a frame within the timeout")
                .expect("the connection is open")
                .expect("a valid frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
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

    /// Whether any frame arrives within `wait`.
    pub async fn quiet_for(&mut self, wait: Duration) -> Option<Value> {
        tokio::time::timeout(wait, self.recv()).await.ok()
    }

    pub async fn join(&mut self, room: &str) -> Value {
        self.send(serde_json::json!({"type": "join", "room": room}))
            .await;
        self.recv_type("joined").await
    }

    /// Sends a message and waits for its ack, returning the acked seq.
    pub async fn say(&mut self, room: &str, text: &str, reference: &str) -> u64 {
        self.send(
            serde_json::json!({"type": "send", "room": room, "text": text, "ref": reference}),
        )
        .await;
        let mut skipped = Vec::new();
        loop {
            let frame = self.recv().await;
            if frame["type"] == "ack" && frame["ref"] == reference {
                // Whatever arrived meanwhile is still there for the test to read.
                for frame in skipped.into_iter().rev() {
                    self.backlog.push_front(frame);
                }
                return frame["seq"].as_u64().unwrap();
            }
            assert_ne!(frame["type"], "error", "send failed: {frame}");
            skipped.push(frame);
        }
    }
}
