//! A room's stream: what happened in a room, each thing an [`Event`] with
//! its place (`seq`) in the room's order.
//!
//! Every layer speaks of events in these terms and keeps its own shape at
//! its edge: the store turns its rows into events (and a new post into a
//! row), the cluster turns them into envelopes (`cluster/events.rs`), the
//! wire into frames (`chat/wire.rs`). The sequencer orders anything with a
//! `seq` ([`Sequenced`]) and never looks inside. A room's stream holds
//! messages and the changes made to them ([`Body::Edit`], [`Body::Delete`]),
//! each a [`Body`] with its constructor here; the sequencer, the cluster's
//! batching and the stores' append take them unchanged.
//!
//! A message read back from the store is in its current state (edited
//! text, or deleted and without text); the change events stay in the
//! stream, so a client that was away replays them as it replays messages.
//!
//! Fields are private, so each kind of event is made in one place, by its
//! constructor.

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Anything that takes its place in a room's order by its `seq`.
pub trait Sequenced {
    fn seq(&self) -> u64;
}

/// One entry of a room's stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    room: String,
    /// Per room, from 1, without holes; 0 while a fast message is on its
    /// way, before the store gave it one.
    seq: u64,
    /// Unique per event, chosen by the server before storing; what a client
    /// recognises an event by when it sees it twice (a fast message live,
    /// then in history with its seq).
    id: String,
    /// Who did it.
    from: String,
    ts: Millis,
    /// The author's current profile photo: not part of the stream (the
    /// store fills it in on reads, the room on posts).
    avatar: Option<String>,
    body: Body,
}

/// What an event is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Message(Message),
    /// Message `target` (an id) says `text` now.
    Edit {
        target: String,
        text: String,
    },
    /// Message `target` (an id) is taken back: its text is gone.
    Delete {
        target: String,
    },
}

/// A message as the room holds it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Empty once deleted.
    pub text: String,
    /// A direct message that reached its recipient (a connection of theirs
    /// got it, or they fetched it), as the store knows on reads; false on
    /// the way in.
    pub delivered: bool,
    /// When its text was last edited, as the store knows on reads.
    pub edited: Option<Millis>,
    /// Taken back by its author or an operator.
    pub deleted: bool,
}

impl Event {
    /// The one place an event's fields are set; each kind's constructor
    /// below names its body.
    fn new(
        room: impl Into<String>,
        seq: u64,
        id: impl Into<String>,
        from: impl Into<String>,
        ts: Millis,
        body: Body,
    ) -> Self {
        Self {
            room: room.into(),
            seq,
            id: id.into(),
            from: from.into(),
            ts,
            avatar: None,
            body,
        }
    }

    /// A message stored as `seq` of `room`.
    pub fn message(
        room: impl Into<String>,
        seq: u64,
        id: impl Into<String>,
        from: impl Into<String>,
        ts: Millis,
        text: impl Into<String>,
    ) -> Self {
        let message = Message {
            text: text.into(),
            delivered: false,
            edited: None,
            deleted: false,
        };
        Self::new(room, seq, id, from, ts, Body::Message(message))
    }

    /// An edit stored as `seq` of `room`: `from` made message `target`
    /// say `text`.
    pub fn edit(
        room: impl Into<String>,
        seq: u64,
        id: impl Into<String>,
        from: impl Into<String>,
        ts: Millis,
        target: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        let body = Body::Edit {
            target: target.into(),
            text: text.into(),
        };
        Self::new(room, seq, id, from, ts, body)
    }

    /// A delete stored as `seq` of `room`: `from` took message `target` back.
    pub fn delete(
        room: impl Into<String>,
        seq: u64,
        id: impl Into<String>,
        from: impl Into<String>,
        ts: Millis,
        target: impl Into<String>,
    ) -> Self {
        let body = Body::Delete {
            target: target.into(),
        };
        Self::new(room, seq, id, from, ts, body)
    }

    /// A fast message on its way to the members before it is stored: no
    /// seq yet.
    pub fn unstored_message(
        room: impl Into<String>,
        id: impl Into<String>,
        from: impl Into<String>,
        ts: Millis,
        text: impl Into<String>,
    ) -> Self {
        Self::message(room, 0, id, from, ts, text)
    }

    /// With the author's profile photo.
    pub fn with_avatar(mut self, avatar: Option<String>) -> Self {
        self.avatar = avatar;
        self
    }

    /// A direct message the store knows reached its recipient.
    pub fn with_delivered(mut self, delivered: bool) -> Self {
        if let Body::Message(message) = &mut self.body {
            message.delivered = delivered;
        }
        self
    }

    /// A message as last edited at `edited` (its text is the edited one).
    pub fn with_edited(mut self, edited: Option<Millis>) -> Self {
        if let Body::Message(message) = &mut self.body {
            message.edited = edited;
        }
        self
    }

    /// A message that was taken back: it keeps its place and loses its text.
    pub fn with_deleted(mut self, deleted: bool) -> Self {
        if let Body::Message(message) = &mut self.body {
            message.deleted = deleted;
            if deleted {
                message.text.clear();
            }
        }
        self
    }

    pub fn room(&self) -> &str {
        &self.room
    }

    /// Its seq; 0 before it is stored.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Its seq; `None` before it is stored.
    pub fn stored_seq(&self) -> Option<u64> {
        (self.seq != 0).then_some(self.seq)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn from(&self) -> &str {
        &self.from
    }

    pub fn ts(&self) -> Millis {
        self.ts
    }

    pub fn avatar(&self) -> Option<&str> {
        self.avatar.as_deref()
    }

    pub fn body(&self) -> &Body {
        &self.body
    }

    /// A direct message that reached its recipient, as last read.
    pub fn delivered(&self) -> bool {
        matches!(&self.body, Body::Message(message) if message.delivered)
    }

    /// What a message (or an edit) says; `None` for a deleted message and
    /// an event without text.
    pub fn text(&self) -> Option<&str> {
        match &self.body {
            Body::Message(message) if !message.deleted => Some(&message.text),
            Body::Edit { text, .. } => Some(text),
            Body::Message(_) | Body::Delete { .. } => None,
        }
    }

    /// A message, rather than a change to one.
    pub fn is_message(&self) -> bool {
        matches!(self.body, Body::Message(_))
    }

    /// The message a change is made to.
    pub fn target(&self) -> Option<&str> {
        match &self.body {
            Body::Edit { target, .. } | Body::Delete { target } => Some(target),
            Body::Message(_) => None,
        }
    }
}

impl Sequenced for Event {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// An event as rooms and replicas hand it on: `fast` when its members had
/// it live before it was stored, so its stored copy only moves the room's
/// sequence on. A transport fact, not part of the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub event: Event,
    pub fast: bool,
}

impl Entry {
    /// An event the members have not seen.
    pub fn new(event: Event) -> Self {
        Self { event, fast: false }
    }
}

impl Sequenced for Entry {
    fn seq(&self) -> u64 {
        self.event.seq
    }
}

/// The first and last `seq` of `events`.
pub fn seq_span<T: Sequenced>(events: &[T]) -> Option<(u64, u64)> {
    events
        .first()
        .zip(events.last())
        .map(|(first, last)| (first.seq(), last.seq()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fast_message_has_no_seq_until_stored() {
        let live = Event::unstored_message("lobby", "ab", "alice", 5, "hi");
        assert_eq!(live.stored_seq(), None);
        let stored = Event::message("lobby", 3, "ab", "alice", 5, "hi");
        assert_eq!(stored.stored_seq(), Some(3));
        assert_eq!(Entry::new(stored).seq(), 3);
    }

    #[test]
    fn what_the_store_adds_on_reads_is_not_the_event() {
        let plain = Event::message("@alice:bob", 1, "ab", "alice", 5, "hi");
        let read = plain
            .clone()
            .with_avatar(Some("/avatars/1.png".into()))
            .with_delivered(true);
        assert_eq!(read.avatar(), Some("/avatars/1.png"));
        assert!(read.delivered());
        assert_eq!((read.id(), read.seq()), (plain.id(), plain.seq()));
    }

    #[test]
    fn a_deleted_message_keeps_its_place_and_loses_its_text() {
        let deleted = Event::message("lobby", 4, "ab", "alice", 5, "secret").with_deleted(true);
        assert_eq!(deleted.text(), None);
        let Body::Message(message) = deleted.body() else {
            panic!("still a message");
        };
        assert!(message.text.is_empty(), "the text is gone, not hidden");
        assert_eq!(deleted.seq(), 4);
    }

    #[test]
    fn changes_name_their_message_and_are_no_messages() {
        let edit = Event::edit("lobby", 5, "cd", "alice", 6, "ab", "fixed");
        assert_eq!((edit.target(), edit.text()), (Some("ab"), Some("fixed")));
        assert!(!edit.is_message());
        let delete = Event::delete("lobby", 6, "ef", "alice", 7, "ab");
        assert_eq!((delete.target(), delete.text()), (Some("ab"), None));
        // What only a message has does nothing to a change.
        assert!(!edit.clone().with_delivered(true).delivered());
    }
}
