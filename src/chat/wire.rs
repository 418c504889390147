//! How a room's event goes on the wire: the protocol knows nothing of the
//! event model, so the conversion lives here, where both meet.

use crate::event::{Body, Event};
use crate::protocol::{rfc3339, ServerFrame, WireMessage};

/// The frame that shows `event` to a member: a `message`, an `edit` or a
/// `delete`.
pub fn frame(event: &Event) -> ServerFrame<'_> {
    match event.body() {
        Body::Message(message) => ServerFrame::Message(WireMessage {
            room: event.room(),
            // A fast message is seen live before it has one.
            seq: event.stored_seq(),
            id: event.id(),
            from: event.from(),
            avatar: event.avatar(),
            text: event.text(),
            ts: rfc3339(event.ts()),
            delivered: message.delivered,
            edited: message.edited.map(rfc3339),
            deleted: message.deleted,
        }),
        Body::Edit { target, text } => ServerFrame::Edit {
            room: event.room(),
            seq: event.seq(),
            id: target,
            from: event.from(),
            text,
            ts: rfc3339(event.ts()),
        },
        Body::Delete { target } => ServerFrame::Delete {
            room: event.room(),
            seq: event.seq(),
            id: target,
            from: event.from(),
            ts: rfc3339(event.ts()),
        },
    }
}

/// The messages of `events` as a page shows them (history, `joined`),
/// each in its current state; changes are in them already.
pub fn messages(events: &[Event]) -> Vec<WireMessage<'_>> {
    events
        .iter()
        .filter_map(|event| match frame(event) {
            ServerFrame::Message(message) => Some(message),
            _ => None,
        })
        .collect()
}

/// The changes of `events` (edits, deletes) as frames, oldest first.
pub fn changes(events: &[Event]) -> Vec<ServerFrame<'_>> {
    events
        .iter()
        .filter(|event| !event.is_message())
        .map(frame)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::frame;
    use crate::event::Event;

    /// `event` as its frame's JSON.
    fn render(event: &Event) -> Value {
        serde_json::from_str(&frame(event).encode()).unwrap()
    }

    #[test]
    fn messages_render_as_documented() {
        let stored = Event::message(
            "general",
            3,
            "00000000000000ab",
            "alice",
            1_700_000_000_123,
            "<b>hi</b>",
        );
        assert_eq!(
            render(&stored),
            json!({"type":"message","room":"general","seq":3,"id":"00000000000000ab","from":"alice",
                   "avatar":null,"text":"<b>hi</b>","ts":"2023-11-14T22:13:20.123Z"})
        );
        let live_fast =
            Event::unstored_message("general", "00000000000000ab", "alice", 0, "<b>hi</b>");
        assert_eq!(
            render(&live_fast)["seq"],
            Value::Null,
            "a fast message is seen live without a seq"
        );
        let delivered =
            Event::message("@alice:bob", 4, "cd", "alice", 0, "hi").with_delivered(true);
        assert_eq!(
            render(&delivered)["delivered"],
            true,
            "a delivered direct message says so"
        );
    }

    #[test]
    fn changes_render_as_documented() {
        let edit = Event::edit(
            "general",
            5,
            "ef",
            "alice",
            1_700_000_000_123,
            "ab",
            "fixed",
        );
        assert_eq!(
            render(&edit),
            json!({"type":"edit","room":"general","seq":5,"id":"ab","from":"alice","text":"fixed",
                   "ts":"2023-11-14T22:13:20.123Z"})
        );
        let delete = Event::delete("general", 6, "gh", "bob", 1_700_000_000_123, "ab");
        assert_eq!(
            render(&delete),
            json!({"type":"delete","room":"general","seq":6,"id":"ab","from":"bob",
                   "ts":"2023-11-14T22:13:20.123Z"})
        );
        let edited = Event::message("general", 3, "ab", "alice", 0, "fixed")
            .with_edited(Some(1_700_000_000_123));
        assert_eq!(render(&edited)["edited"], "2023-11-14T22:13:20.123Z");
        let deleted = Event::message("general", 3, "ab", "alice", 0, "secret").with_deleted(true);
        let deleted = render(&deleted);
        assert_eq!(deleted["deleted"], true);
        assert!(
            deleted.get("text").is_none(),
            "a deleted message has no text: {deleted}"
        );
    }
}
