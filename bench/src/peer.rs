//! The two servers under test, behind one connection type: Rookery (log in
//! over HTTP, then its JSON protocol on `/ws`) and the socket.io peer
//! (engine.io v4 over a raw WebSocket, `?EIO=4&transport=websocket`).
//!
//! Every message the tool sends carries its send time, so any receiver in
//! this process can compute the round trip: in the text for deliveries, in
//! the `ref` for acks.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub const PASSWORD: &str = "bench-password-1";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Rookery,
    Socketio,
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
        if self.kind == PeerKind::Socketio {
            return Ok(String::new());
        }
        let response = http
            .post(format!("http://{}/login", self.addr))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("name={user}&password={PASSWORD}"))
            .send()
            .await
            .context("login request")?;
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

    /// Opens a chat connection as `user` from source address `source`.
    pub async fn connect(
        &self,
        user: &str,
        cookie: &str,
        source: IpAddr,
    ) -> anyhow::Result<Socket> {
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
        Ok(socket)
    }

    pub fn join(&self, room: &str) -> Message {
        match self.kind {
            PeerKind::Rookery => Message::text(json!({"type": "join", "room": room}).to_string()),
            PeerKind::Socketio => socketio_event("join", json!({ "room": room })),
        }
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
        }
    }
}

fn socketio_event(name: &str, data: Value) -> Message {
    Message::text(format!("42{}", json!([name, data])))
}

async fn expect_prefix(socket: &mut Socket, prefix: &str) -> anyhow::Result<()> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .context("socket.io handshake timed out")?
            .context("closed during the socket.io handshake")??;
        if let Message::Text(text) = frame {
            if text.starts_with(prefix) {
                return Ok(());
            }
            bail!("socket.io handshake: expected {prefix}…, got {text}");
        }
    }
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
    fn only_loopback_targets() {
        assert!(Target::parse(PeerKind::Rookery, "http://127.0.0.1:8080").is_ok());
        assert!(Target::parse(PeerKind::Rookery, "http://10.0.0.1:8080").is_err());
        assert!(Target::parse(PeerKind::Rookery, "https://127.0.0.1:8080").is_err());
    }
}
