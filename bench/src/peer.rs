//! The servers under test, behind one connection type: Rookery (log in
//! over HTTP, then its JSON protocol on `/ws`), the socket.io peer
//! (engine.io v4 over a raw WebSocket, `?EIO=4&transport=websocket`) and
//! Sockudo (the Pusher protocol, version 7, on `/app/KEY`).
//!
//! Every message the tool sends carries its send time, so any receiver in
//! this process can compute the round trip: in the text for deliveries, in
//! the `ref` for acks.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const PASSWORD: &str = "bench-password-1";

/// The Pusher app `scripts/bench.sh` gives Sockudo (its
/// `SOCKUDO_DEFAULT_APP_*`): the tool signs private-channel subscriptions
/// with the secret, as an application's auth endpoint would.
pub const SOCKUDO_APP_KEY: &str = "rookery-bench-key";
pub const SOCKUDO_APP_SECRET: &str = "rookery-bench-secret";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Rookery,
    Socketio,
    Sockudo,
}

/// What the tool needs from a connection, whichever server it talks to.
#[derive(Debug)]
pub enum Event {
    /// A chat message arrived; `sent` is when this process sent it.
    Message {
        sent: Instant,
    },
    /// The server confirmed a message of ours; `sent` as above.
    Ack {
        sent: Instant,
    },
    /// The server refused a message of ours at once (Rookery's
    /// `overloaded`): backpressure, counted apart from what went missing.
    Refused,
    Other,
}

pub type Socket = WebSocketStream<TcpStream>;

/// The instant every timestamp in messages is relative to.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn stamp() -> u64 {
    epoch().elapsed().as_micros() as u64
}

fn unstamp(micros: u64) -> Instant {
    epoch() + Duration::from_micros(micros)
}

/// A message text of `size` characters that starts with its send time.
pub fn stamped_text(size: usize) -> String {
    let mut text = format!("t{};", stamp());
    while text.len() < size {
        text.push('x');
    }
    text
}

fn text_stamp(text: &str) -> Option<Instant> {
    let digits = text.strip_prefix('t')?.split(';').next()?;
    digits.parse().ok().map(unstamp)
}

/// The session cookie Rookery's answer to `user`'s login set, as a
/// `Cookie` header value.
pub fn session_cookie(user: &str, response: &reqwest::Response) -> anyhow::Result<String> {
    if response.status() != 303 {
        bail!("login of {user} answered {}", response.status());
    }
    let cookie = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with("rookery_session="))
        .context("no session cookie")?;
    Ok(cookie.split(';').next().unwrap_or_default().to_owned())
}

/// Where to connect and from which loopback address (spreading source
/// addresses lifts the ~28k ephemeral-port ceiling per address pair).
#[derive(Clone, Debug)]
pub struct Target {
    pub kind: PeerKind,
    pub addr: SocketAddr,
}

impl Target {
    pub fn parse(kind: PeerKind, url: &str) -> anyhow::Result<Self> {
        let authority = url
            .strip_prefix("http://")
            .context("targets are http://127.0.0.1:PORT")?
            .trim_end_matches('/');
        let addr: SocketAddr = authority.parse().context("target address")?;
        if !addr.ip().is_loopback() {
            bail!(
                "rookery-bench only targets loopback addresses, not {}",
                addr.ip()
            );
        }
        Ok(Self { kind, addr })
    }

    /// Logs `user` in (Rookery; registering on first use) and returns what
    /// a connection needs to present: Rookery's session cookie.
    pub async fn login(&self, http: &reqwest::Client, user: &str) -> anyhow::Result<String> {
        if self.kind != PeerKind::Rookery {
            return Ok(String::new());
        }
        let response = http
            .post(format!("http://{}/login", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("name={user}&password={PASSWORD}"))
            .send()
            .await
            .context("login request")?;
        session_cookie(user, &response)
    }

    /// Opens a chat connection as `user` from source address `source`; with
    /// the connection's id where the protocol names one (Pusher's
    /// `socket_id`, which a private subscription signs).
    pub async fn connect(
        &self,
        user: &str,
        cookie: &str,
        source: IpAddr,
    ) -> anyhow::Result<(Socket, String)> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        let stream = socket.connect(self.addr).await.context("TCP connect")?;
        stream.set_nodelay(true)?;
        let url = match self.kind {
            PeerKind::Rookery => format!("ws://{}/ws", self.addr),
            PeerKind::Socketio => format!(
                "ws://{}/socket.io/?EIO=4&transport=websocket&user={user}",
                self.addr
            ),
            PeerKind::Sockudo => format!(
                "ws://{}/app/{SOCKUDO_APP_KEY}?protocol=7&client=rookery-bench&version=1.0",
                self.addr
            ),
        };
        let mut request = url.into_client_request()?;
        if !cookie.is_empty() {
            request.headers_mut().insert("cookie", cookie.parse()?);
        }
        // Small buffers: tens of thousands of idle connections share this
        // process's memory (tungstenite reads into 128 KiB by default).
        let config = WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (mut socket, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config))
                .await
                .context("WebSocket handshake")?;
        if self.kind == PeerKind::Socketio {
            // engine.io open packet, then connect to the default namespace.
            expect_prefix(&mut socket, "0").await?;
            socket.send(Message::text("40")).await?;
            expect_prefix(&mut socket, "40").await?;
        }
        let mut id = String::new();
        if self.kind == PeerKind::Sockudo {
            let established =
                expect_prefix(&mut socket, r#"{"event":"pusher:connection_established""#).await?;
            id =
                pusher_socket_id(&established).context("no socket_id in connection_established")?;
        }
        Ok((socket, id))
    }

    /// Joins `room` on connection `id` (see [`Target::connect`]). On
    /// Sockudo a room is a private channel: only a private (or presence)
    /// channel carries client events, Pusher's member-to-member messages.
    pub fn join(&self, room: &str, id: &str) -> Message {
        match self.kind {
            PeerKind::Rookery => Message::text(json!({"type": "join", "room": room}).to_string()),
            PeerKind::Socketio => socketio_event("join", json!({ "room": room })),
            PeerKind::Sockudo => {
                let channel = format!("private-{room}");
                let signature = pusher_signature(SOCKUDO_APP_SECRET, id, &channel);
                Message::text(
                    json!({"event": "pusher:subscribe", "data": {
                        "channel": channel,
                        "auth": format!("{SOCKUDO_APP_KEY}:{signature}"),
                    }})
                    .to_string(),
                )
            }
        }
    }

    /// Whether a member's message reaches the member who sent it: not on
    /// Pusher, whose client events skip their sender.
    pub fn echoes(&self) -> bool {
        self.kind != PeerKind::Sockudo
    }

    /// A message to `room`, stored before it is fanned out (reliable);
    /// acked when `ack` is set.
    pub fn send(&self, room: &str, text: String, ack: bool) -> Message {
        let reference = ack.then(stamp);
        match self.kind {
            PeerKind::Rookery => Message::text(
                json!({"type": "send", "room": room, "text": text, "ref": reference}).to_string(),
            ),
            PeerKind::Socketio => socketio_event(
                "send",
                json!({"room": room, "text": text, "ref": reference}),
            ),
            // A client event: no ack in the Pusher protocol.
            PeerKind::Sockudo => Message::text(
                json!({"event": "client-message", "channel": format!("private-{room}"), "data": text})
                    .to_string(),
            ),
        }
    }

    /// A direct message to `user`; acked when `ack` is set, otherwise sent
    /// on Rookery's fast path.
    pub fn direct(&self, user: &str, text: String, ack: bool) -> Message {
        let reference = ack.then(stamp);
        match self.kind {
            PeerKind::Rookery => Message::text(
                json!({"type": "direct", "to": user, "text": text, "ref": reference, "delivery": delivery(ack)})
                    .to_string(),
            ),
            PeerKind::Socketio => socketio_event(
                "direct",
                json!({"to": user, "text": text, "ref": reference}),
            ),
            PeerKind::Sockudo => {
                unreachable!("main refuses linker on Sockudo: Pusher has no direct messages")
            }
        }
    }

    /// What an incoming frame means; socket.io pings are answered through
    /// `reply`.
    pub fn decode(&self, message: &Message) -> (Event, Option<Message>) {
        let Message::Text(text) = message else {
            return (Event::Other, None);
        };
        match self.kind {
            PeerKind::Rookery => (decode_rookery(text), None),
            PeerKind::Socketio => decode_socketio(text),
            PeerKind::Sockudo => decode_pusher(text),
        }
    }

    /// What an incoming frame means, once a socket.io ping among them has
    /// been answered on `tx`. A failed answer is ignored here: the broken
    /// connection shows on the next read.
    pub async fn answer<S>(&self, message: &Message, tx: &mut S) -> Event
    where
        S: futures_util::Sink<Message> + Unpin,
    {
        let (event, reply) = self.decode(message);
        if let Some(reply) = reply {
            let _ = tx.send(reply).await;
        }
        event
    }

    /// Whether joining is confirmed by this frame (Rookery's `joined`, the
    /// peer's `joined` event).
    pub fn is_joined(&self, message: &Message) -> bool {
        let Message::Text(text) = message else {
            return false;
        };
        match self.kind {
            PeerKind::Rookery => text.starts_with(r#"{"type":"joined""#),
            PeerKind::Socketio => text.starts_with(r#"42["joined""#),
            PeerKind::Sockudo => text.contains(r#""pusher_internal:subscription_succeeded""#),
        }
    }
}

fn socketio_event(name: &str, data: Value) -> Message {
    Message::text(format!("42{}", json!([name, data])))
}

/// The handshake's next text frame, which must start with `prefix`.
async fn expect_prefix(socket: &mut Socket, prefix: &str) -> anyhow::Result<String> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("handshake timed out")?
            .context("closed during the handshake")??;
        if let Message::Text(text) = frame {
            if text.starts_with(prefix) {
                return Ok(text.to_string());
            }
            bail!("handshake: expected {prefix}…, got {text}");
        }
    }
}

/// A Pusher frame's `data`, which the protocol sends JSON-encoded in a
/// string (a client event's data as its sender gave it).
fn pusher_data(frame: &Value) -> Option<Value> {
    match &frame["data"] {
        Value::String(text) => {
            Some(serde_json::from_str(text).unwrap_or(Value::String(text.clone())))
        }
        Value::Null => None,
        other => Some(other.clone()),
    }
}

/// What an application's auth endpoint answers for a private channel:
/// the hex HMAC-SHA256 of `socket_id:channel` under the app's secret.
fn pusher_signature(secret: &str, socket_id: &str, channel: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{socket_id}:{channel}").as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn pusher_socket_id(established: &str) -> Option<String> {
    let frame: Value = serde_json::from_str(established).ok()?;
    Some(pusher_data(&frame)?["socket_id"].as_str()?.to_owned())
}

/// Rookery's delivery mode for a message that is (not) acked: socket.io
/// has no store, so without acks the fair comparison is the fast path.
fn delivery(ack: bool) -> &'static str {
    if ack {
        "reliable"
    } else {
        "fast"
    }
}

fn decode_rookery(text: &str) -> Event {
    // Only the fields the measurement needs; skip everything else cheaply.
    if text.starts_with(r#"{"type":"message""#) {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if let Some(sent) = value["text"].as_str().and_then(text_stamp) {
            return Event::Message { sent };
        }
    } else if text.starts_with(r#"{"type":"ack""#) {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        if let Some(sent) = value["ref"].as_u64() {
            return Event::Ack {
                sent: unstamp(sent),
            };
        }
    } else if text.starts_with(r#"{"type":"error","code":"overloaded""#) {
        return Event::Refused;
    }
    Event::Other
}

fn decode_socketio(text: &str) -> (Event, Option<Message>) {
    if text == "2" {
        return (Event::Other, Some(Message::text("3")));
    }
    let Some(payload) = text.strip_prefix("42") else {
        return (Event::Other, None);
    };
    let value: Value = serde_json::from_str(payload).unwrap_or(Value::Null);
    let event = match value[0].as_str() {
        Some("message") => value[1]["text"]
            .as_str()
            .and_then(text_stamp)
            .map_or(Event::Other, |sent| Event::Message { sent }),
        Some("ack") => value[1]["ref"]
            .as_u64()
            .map_or(Event::Other, |sent| Event::Ack {
                sent: unstamp(sent),
            }),
        _ => Event::Other,
    };
    (event, None)
}

fn decode_pusher(text: &str) -> (Event, Option<Message>) {
    if text.starts_with(r#"{"event":"pusher:ping""#) {
        let pong = json!({"event": "pusher:pong", "data": {}}).to_string();
        return (Event::Other, Some(Message::text(pong)));
    }
    if !text.contains(r#""event":"client-message""#) {
        return (Event::Other, None);
    }
    let frame: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let event = match pusher_data(&frame) {
        Some(Value::String(text)) => {
            text_stamp(&text).map_or(Event::Other, |sent| Event::Message { sent })
        }
        _ => Event::Other,
    };
    (event, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_carry_their_send_time() {
        let before = Instant::now();
        let text = stamped_text(1000);
        assert_eq!(text.len(), 1000);
        let sent = text_stamp(&text).unwrap();
        assert!(sent + Duration::from_millis(1) >= before && sent <= Instant::now());
    }

    #[test]
    fn pusher_frames_decode() {
        let established = r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"123.456\",\"activity_timeout\":120}"}"#;
        assert_eq!(pusher_socket_id(established).as_deref(), Some("123.456"));
        let text = stamped_text(100);
        let delivered =
            json!({"event": "client-message", "channel": "private-fanout", "data": text})
                .to_string();
        assert!(matches!(decode_pusher(&delivered).0, Event::Message { .. }));
        let (_, pong) = decode_pusher(r#"{"event":"pusher:ping","data":{}}"#);
        assert!(pong.is_some_and(|pong| pong.to_text().unwrap().contains("pusher:pong")));
    }

    #[test]
    fn pusher_subscriptions_are_signed() {
        let target = Target::parse(PeerKind::Sockudo, "http://127.0.0.1:6001").unwrap();
        let Message::Text(subscribe) = target.join("fanout", "123.456") else {
            panic!()
        };
        let frame: Value = serde_json::from_str(&subscribe).unwrap();
        assert_eq!(frame["data"]["channel"], "private-fanout");
        // Pusher's documented example (secret 7ad3773142a6692b25b8).
        assert_eq!(
            pusher_signature("7ad3773142a6692b25b8", "1234.1234", "private-foobar"),
            "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"
        );
        let expected = pusher_signature(SOCKUDO_APP_SECRET, "123.456", "private-fanout");
        assert_eq!(
            frame["data"]["auth"],
            format!("{SOCKUDO_APP_KEY}:{expected}")
        );
    }

    #[test]
    fn only_loopback_targets() {
        assert!(Target::parse(PeerKind::Rookery, "http://127.0.0.1:8080").is_ok());
        assert!(Target::parse(PeerKind::Rookery, "http://10.0.0.1:8080").is_err());
        assert!(Target::parse(PeerKind::Rookery, "https://127.0.0.1:8080").is_err());
    }
}
