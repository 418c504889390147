//! What replicas tell each other, and the channels it travels on.

use serde::{Deserialize, Serialize};

use crate::event::{Entry, Event, Millis};
use crate::store::Receipt;

/// What a room's copies on other replicas hear from it: its stream (stored
/// events, fast messages), what its members do live (typing, reads,
/// delivery receipts) and who of them is here (presence). Travels on the
/// room's channel, or a direct room's on its two users'.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// Events were stored, in `seq` order.
    Messages {
        room: String,
        #[serde(with = "format::entries")]
        messages: Vec<Entry>,
    },
    /// A `fast` message, fanned out before it is stored.
    Fast {
        room: String,
        #[serde(with = "format::live")]
        message: Event,
    },
    Typing {
        room: String,
        user: String,
        active: bool,
    },
    /// The users of `room` connected to the sending replica (empty: none
    /// any more). Repeated as a heartbeat; with `reply`, replicas that have
    /// the room answer with their own, so a new room learns who is online.
    Presence {
        room: String,
        users: Vec<String>,
        reply: bool,
    },
    /// `user` read `room` up to `seq`.
    Read {
        room: String,
        user: String,
        seq: u64,
    },
    /// Direct messages of `room` reached their recipient; their senders
    /// asked to be told.
    Delivered {
        room: String,
        deliveries: Vec<Receipt>,
    },
}

impl RoomEvent {
    pub fn room(&self) -> &str {
        match self {
            Self::Messages { room, .. }
            | Self::Typing { room, .. }
            | Self::Presence { room, .. }
            | Self::Fast { room, .. }
            | Self::Read { room, .. }
            | Self::Delivered { room, .. } => room,
        }
    }
}

/// What concerns users and replicas rather than one room: sessions and
/// logins ending, budgets spent, backends' questions and disconnects,
/// admins' view of connections. The registry handles it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    /// `SINGLE_SESSION`: `user` opened a connection at `at`; their older
    /// connections elsewhere close.
    SessionOpened { user: String, at: Millis },
    /// The login `login` of `user` logged out: its connections close.
    LoginEnded { user: String, login: String },
    /// For admin users, on [`ADMIN_CHANNEL`]: a connection of `user` opened
    /// or closed on the sending replica.
    UserActivity { user: String, connected: bool },
    /// A backend asks for `user`'s connections, on the user's channel (so
    /// only replicas with one hear it); they answer on the asker's
    /// [`node_channel`] with [`Control::Connections`].
    ConnectionsAsked { user: String, query: u64 },
    Connections {
        query: u64,
        connections: Vec<Connection>,
    },
    /// On [`REPLICAS_CHANNEL`], once a second: users who spent a notable
    /// share of their message budget on the sending replica, and how much;
    /// the others charge it too.
    Spent { spent: Vec<(String, u32)> },
    /// A backend closed `user`'s connections, on [`REPLICAS_CHANNEL`]:
    /// every replica closes its own and refuses new ones until `until`.
    UserDisconnected {
        user: String,
        reason: crate::protocol::Evict,
        until: Millis,
    },
}

/// Everything on the bus: one of the two kinds. Both share the `kind` tag's
/// namespace (the envelope's format predates the split; the golden files
/// hold it), so an envelope names its kind without a wrapper.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Traffic {
    Room(RoomEvent),
    Control(Control),
}

impl From<RoomEvent> for Traffic {
    fn from(event: RoomEvent) -> Self {
        Self::Room(event)
    }
}

impl From<Control> for Traffic {
    fn from(control: Control) -> Self {
        Self::Control(control)
    }
}

/// Where connection activity for admin users travels; subscribed while the
/// replica has an admin connected.
pub const ADMIN_CHANNEL: &str = "rookery.admin";

/// An event as it travels: who sent it, and what.
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    pub(super) node: String,
    pub(super) event: Traffic,
}

/// An envelope on its way out, borrowing what it carries.
#[derive(Serialize)]
struct Outbound<'a> {
    node: &'a str,
    event: &'a Traffic,
}

impl Envelope {
    /// `event` from `node` as bodies of at most `limit` bytes: a batch of
    /// messages too large for one is split (each part still in `seq`
    /// order); anything else that does not fit is left out (`Err` with its
    /// size), as it would be refused on arrival.
    pub(super) fn encode(node: &str, event: &Traffic, limit: usize) -> Vec<Result<Vec<u8>, usize>> {
        let body = serde_json::to_vec(&Outbound { node, event }).expect("cluster events serialize");
        if body.len() <= limit {
            return vec![Ok(body)];
        }
        match event {
            Traffic::Room(RoomEvent::Messages { room, messages }) if messages.len() > 1 => {
                let (first, second) = messages.split_at(messages.len() / 2);
                [first, second]
                    .into_iter()
                    .flat_map(|part| {
                        let part = Traffic::Room(RoomEvent::Messages {
                            room: room.clone(),
                            messages: part.to_vec(),
                        });
                        Self::encode(node, &part, limit)
                    })
                    .collect()
            }
            _ => vec![Err(body.len())],
        }
    }
}

/// How a room's events travel between replicas: each one flat, as every
/// release since the cluster began writes and reads it (the golden files in
/// `tests/golden/cluster/` hold it), with the transport's `fast` beside the
/// event's own fields. A field added here must be optional on the way in.
mod format {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::event::{Body, Entry, Event, Millis};

    #[derive(Serialize)]
    struct Out<'a> {
        room: &'a str,
        seq: u64,
        from: &'a str,
        text: &'a str,
        ts: Millis,
        avatar: Option<&'a str>,
        id: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        fast: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        delivered: bool,
        /// Absent for a message; a build before changes existed reads a
        /// change as a message (its seq keeps that replica's order whole).
        #[serde(skip_serializing_if = "Option::is_none")]
        kind: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        target: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        edited: Option<Millis>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        deleted: bool,
    }

    #[derive(Deserialize)]
    struct In {
        room: String,
        seq: u64,
        from: String,
        text: String,
        ts: Millis,
        avatar: Option<String>,
        #[serde(default)]
        id: String,
        #[serde(default)]
        fast: bool,
        #[serde(default)]
        delivered: bool,
        #[serde(default)]
        kind: Option<String>,
        #[serde(default)]
        target: Option<String>,
        #[serde(default)]
        edited: Option<Millis>,
        #[serde(default)]
        deleted: bool,
    }

    const EDIT: &str = "edit";
    const DELETE: &str = "delete";

    fn out(event: &Event, fast: bool) -> Out<'_> {
        let (kind, text, delivered, edited, deleted) = match event.body() {
            Body::Message(message) => (
                None,
                message.text.as_str(),
                message.delivered,
                message.edited,
                message.deleted,
            ),
            Body::Edit { text, .. } => (Some(EDIT), text.as_str(), false, None, false),
            Body::Delete { .. } => (Some(DELETE), "", false, None, false),
        };
        Out {
            room: event.room(),
            seq: event.stored_seq().unwrap_or(0),
            from: event.from(),
            text,
            ts: event.ts(),
            avatar: event.avatar(),
            id: event.id(),
            fast,
            delivered,
            kind,
            target: event.target(),
            edited,
            deleted,
        }
    }

    impl In {
        fn into_entry(self) -> Entry {
            let target = self.target.unwrap_or_default();
            let (room, id, from) = (self.room, self.id, self.from);
            let event = match self.kind.as_deref() {
                Some(EDIT) => Event::edit(room, self.seq, id, from, self.ts, target, self.text),
                Some(DELETE) => Event::delete(room, self.seq, id, from, self.ts, target),
                _ => Event::message(room, self.seq, id, from, self.ts, self.text)
                    .with_delivered(self.delivered)
                    .with_edited(self.edited)
                    .with_deleted(self.deleted),
            };
            Entry {
                event: event.with_avatar(self.avatar),
                fast: self.fast,
            }
        }
    }

    /// Stored events, in `seq` order.
    pub(super) mod entries {
        use super::*;

        pub fn serialize<S: Serializer>(entries: &[Entry], to: S) -> Result<S::Ok, S::Error> {
            to.collect_seq(entries.iter().map(|entry| out(&entry.event, entry.fast)))
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Vec<Entry>, D::Error> {
            let read: Vec<In> = Vec::deserialize(from)?;
            Ok(read.into_iter().map(In::into_entry).collect())
        }
    }

    /// A fast message before it is stored.
    pub(super) mod live {
        use super::*;

        pub fn serialize<S: Serializer>(event: &Event, to: S) -> Result<S::Ok, S::Error> {
            out(event, true).serialize(to)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(from: D) -> Result<Event, D::Error> {
            Ok(In::deserialize(from)?.into_entry().event)
        }
    }
}

/// One open connection of a user, as a replica reports it to another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// The replica holding it.
    pub node: String,
    pub connected_at: Millis,
    /// The rooms it is a member of, sorted.
    pub rooms: Vec<String>,
}

/// What every replica holds: events for the whole cluster.
pub const REPLICAS_CHANNEL: &str = "rookery.replicas";

/// One replica's own channel: answers to its questions.
pub fn node_channel(node: &str) -> String {
    format!("rookery.node.{}", segment(node))
}

pub fn room_channel(room: &str) -> String {
    format!("rookery.room.{}", segment(room))
}

pub fn user_channel(user: &str) -> String {
    format!("rookery.user.{}", segment(user))
}

/// Longest channel a broker is asked for, in bytes: RabbitMQ's limit for a
/// routing key. Every channel built here fits (names are bounded and at
/// most triple in length when encoded).
pub const MAX_CHANNEL: usize = 255;

/// A name as one token of a channel. Names come from users and may hold
/// what a broker reads as syntax: NATS splits subjects at `.` and refuses
/// empty tokens (`x.`, `a..b`) and wildcards (`*`, `>`); AMQP topic keys
/// read `#` alike. Everything but ASCII letters, digits, `_` and `-`
/// is written `%XX` (each UTF-8 byte), so distinct names stay distinct
/// channels and no name is syntax on any broker.
fn segment(name: &str) -> std::borrow::Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if !name.is_empty() && name.bytes().all(plain) {
        return name.into();
    }
    let mut encoded = String::with_capacity(name.len() * 3 + 1);
    if name.is_empty() {
        // An empty token is itself invalid on NATS.
        encoded.push('%');
    }
    for byte in name.bytes() {
        if plain(byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded.into()
}

/// Whether every broker takes `channel` as one literal subject or routing
/// key: dot-separated non-empty tokens of printable ASCII with no wildcard
/// (`*`, `>`, `#`), at most [`MAX_CHANNEL`] bytes. The driver refuses any
/// other before it reaches the broker, so one bad channel fails alone
/// instead of taking the broker link down with it.
pub fn is_valid_channel(channel: &str) -> bool {
    channel.len() <= MAX_CHANNEL
        && channel.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'>' | b'#'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_make_valid_distinct_channels() {
        let names = [
            ".", "..", "x.", ".x", "a..b", "a.b", "a%2Eb", "*", ">", "#", "a b", "", "@a:b", "é",
            "%",
        ];
        let long = "x.".repeat(32);
        let channels: Vec<String> = names
            .iter()
            .copied()
            .chain([long.as_str()])
            .flat_map(|name| [room_channel(name), user_channel(name), node_channel(name)])
            .collect();
        for channel in &channels {
            assert!(is_valid_channel(channel), "{channel}");
        }
        let distinct: std::collections::HashSet<_> = channels.iter().collect();
        assert_eq!(distinct.len(), channels.len(), "two names share a channel");
    }

    fn message(seq: u64, text: &str) -> Event {
        Event::message("lobby", seq, format!("m{seq}"), "alice", 0, text)
    }

    #[test]
    fn a_batch_too_large_for_one_envelope_travels_in_order_in_several() {
        let text = "\u{1}".repeat(4000);
        let messages: Vec<Entry> = (1..=256)
            .map(|seq| Entry::new(message(seq, &text)))
            .collect();
        let limit = 100_000;
        let bodies = Envelope::encode(
            "n1",
            &Traffic::Room(RoomEvent::Messages {
                room: "lobby".into(),
                messages,
            }),
            limit,
        );
        assert!(bodies.len() > 1);
        let mut seqs = Vec::new();
        for body in bodies {
            let body = body.expect("every part fits");
            assert!(body.len() <= limit);
            let envelope: Envelope = serde_json::from_slice(&body).unwrap();
            assert_eq!(envelope.node, "n1");
            let Traffic::Room(RoomEvent::Messages { room, messages }) = envelope.event else {
                panic!("a part is a batch of messages");
            };
            assert_eq!(room, "lobby");
            seqs.extend(messages.iter().map(|m| m.event.stored_seq().unwrap()));
            assert!(messages
                .iter()
                .all(|m| m.event.text() == Some(text.as_str())));
        }
        assert_eq!(seqs, (1..=256).collect::<Vec<_>>());
    }

    #[test]
    fn changes_cross_the_bus_whole_and_messages_as_before() {
        use crate::event::{Entry, Event};
        let messages = vec![
            Entry::new(Event::message("lobby", 1, "ab", "alice", 5, "hi")),
            Entry::new(Event::edit("lobby", 2, "cd", "alice", 6, "ab", "hello")),
            Entry::new(Event::delete("lobby", 3, "ef", "bob", 7, "ab")),
            Entry::new(Event::message("lobby", 4, "gh", "bob", 8, "x").with_edited(Some(9))),
            Entry::new(Event::message("lobby", 5, "ij", "bob", 8, "gone").with_deleted(true)),
        ];
        let traffic = Traffic::Room(RoomEvent::Messages {
            room: "lobby".into(),
            messages: messages.clone(),
        });
        let body = serde_json::to_value(Envelope {
            node: "n1".into(),
            event: traffic,
        })
        .unwrap();
        // A message carries no field a build before changes did not know.
        let first = &body["event"]["messages"][0];
        assert!(
            first.get("kind").is_none() && first.get("target").is_none(),
            "{first}"
        );
        assert_eq!(body["event"]["messages"][1]["kind"], "edit");
        let back: Envelope = serde_json::from_value(body).unwrap();
        let Traffic::Room(RoomEvent::Messages { messages: read, .. }) = back.event else {
            panic!("a batch");
        };
        assert_eq!(read, messages);
    }

    #[test]
    fn an_event_that_cannot_be_split_is_left_out() {
        let users: Vec<String> = (0..100).map(|n| format!("user{n}")).collect();
        let presence = Traffic::Room(RoomEvent::Presence {
            room: "lobby".into(),
            users,
            reply: false,
        });
        let encoded = Envelope::encode("n1", &presence, 100);
        assert!(matches!(encoded[..], [Err(size)] if size > 100));
        let encoded = Envelope::encode("n1", &presence, 10_000);
        assert!(matches!(encoded[..], [Ok(_)]));
    }

    /// One envelope of every kind, as replicas publish them. The files in
    /// `tests/golden/cluster/` were written by the release before the event
    /// model (`GOLDEN_WRITE=1 cargo test --lib golden`) and never change:
    /// a rolling upgrade has both releases on one broker.
    fn golden_events() -> Vec<(&'static str, Traffic)> {
        let direct = Event::message(
            "@alice:bob",
            7,
            "m7",
            "alice",
            0,
            "see you <b>soon</b> \u{e9}",
        )
        .with_avatar(Some("/avatars/00ff.png".into()));
        let fast = Event::unstored_message("lobby", "m0", "alice", 0, "quick");
        let delivered =
            Event::message("@alice:bob", 8, "m8", "alice", 0, "read me").with_delivered(true);
        vec![
            (
                "messages",
                RoomEvent::Messages {
                    room: "@alice:bob".into(),
                    messages: vec![Entry::new(direct), Entry::new(delivered)],
                }
                .into(),
            ),
            (
                "messages_stored_fast",
                RoomEvent::Messages {
                    room: "lobby".into(),
                    messages: vec![Entry {
                        event: message(9, "quick"),
                        fast: true,
                    }],
                }
                .into(),
            ),
            (
                "fast",
                RoomEvent::Fast {
                    room: "lobby".into(),
                    message: fast,
                }
                .into(),
            ),
            (
                "typing",
                RoomEvent::Typing {
                    room: "lobby".into(),
                    user: "alice".into(),
                    active: true,
                }
                .into(),
            ),
            (
                "presence",
                RoomEvent::Presence {
                    room: "lobby".into(),
                    users: vec!["alice".into(), "bob".into()],
                    reply: true,
                }
                .into(),
            ),
            (
                "read",
                RoomEvent::Read {
                    room: "@alice:bob".into(),
                    user: "bob".into(),
                    seq: 8,
                }
                .into(),
            ),
            (
                "delivered",
                RoomEvent::Delivered {
                    room: "@alice:bob".into(),
                    deliveries: vec![Receipt {
                        room: "@alice:bob".into(),
                        seq: 7,
                        from: "alice".into(),
                        to: "bob".into(),
                        confirm: "\"r1\"".into(),
                    }],
                }
                .into(),
            ),
            (
                "session_opened",
                Control::SessionOpened {
                    user: "alice".into(),
                    at: 1_700_000_000_123,
                }
                .into(),
            ),
            (
                "login_ended",
                Control::LoginEnded {
                    user: "alice".into(),
                    login: "9f86d081884c7d65".into(),
                }
                .into(),
            ),
            (
                "user_activity",
                Control::UserActivity {
                    user: "alice".into(),
                    connected: false,
                }
                .into(),
            ),
            (
                "connections_asked",
                Control::ConnectionsAsked {
                    user: "alice".into(),
                    query: 42,
                }
                .into(),
            ),
            (
                "connections",
                Control::Connections {
                    query: 42,
                    connections: vec![Connection {
                        node: "n2".into(),
                        connected_at: 1_700_000_000_000,
                        rooms: vec!["@alice:bob".into(), "lobby".into()],
                    }],
                }
                .into(),
            ),
            (
                "spent",
                Control::Spent {
                    spent: vec![("alice".into(), 120), ("bob".into(), 64)],
                }
                .into(),
            ),
            (
                "user_disconnected",
                Control::UserDisconnected {
                    user: "mallory".into(),
                    reason: crate::protocol::Evict::Revoked,
                    until: 1_700_000_060_000,
                }
                .into(),
            ),
        ]
    }

    #[test]
    fn envelopes_are_the_golden_files_both_ways() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/cluster");
        let write = std::env::var_os("GOLDEN_WRITE").is_some();
        for (name, event) in golden_events() {
            let path = dir.join(format!("{name}.json"));
            let [Ok(body)] = &Envelope::encode("n1", &event, usize::MAX)[..] else {
                panic!("{name} encodes as one body");
            };
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, body).unwrap();
            }
            let golden = std::fs::read(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            assert_eq!(
                String::from_utf8_lossy(body),
                String::from_utf8_lossy(&golden),
                "{name}: this release writes what the previous one reads"
            );
            let read: Envelope = serde_json::from_slice(&golden)
                .unwrap_or_else(|e| panic!("{name}: the previous release's envelope reads: {e}"));
            assert_eq!(read.node, "n1");
            let [Ok(again)] = &Envelope::encode(&read.node, &read.event, usize::MAX)[..] else {
                panic!("{name} encodes again");
            };
            assert_eq!(again, &golden, "{name}: nothing is lost on the way in");
        }
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(room_channel("general"), "rookery.room.general");
        assert_eq!(user_channel("alice_01-x"), "rookery.user.alice_01-x");
        assert_eq!(room_channel("a.b"), "rookery.room.a%2Eb");
    }

    #[test]
    fn broker_syntax_is_not_a_valid_channel() {
        for bad in [
            "rookery.room.",
            "rookery..x",
            "rookery.*",
            "rookery.>",
            "a.#",
            "a b",
        ] {
            assert!(!is_valid_channel(bad), "{bad}");
        }
        assert!(!is_valid_channel(&"x".repeat(MAX_CHANNEL + 1)));
        assert!(is_valid_channel(REPLICAS_CHANNEL) && is_valid_channel(ADMIN_CHANNEL));
    }
}
