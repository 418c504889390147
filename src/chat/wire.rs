//! How a room's event goes on the wire: the protocol knows nothing of the
//! event model, so the conversion lives here, where both meet.

use crate::event::{Body, Event};
use crate::protocol::{rfc3339, WireMessage};

impl<'a> From<&'a Event> for WireMessage<'a> {
    fn from(event: &'a Event) -> Self {
        let Body::Message(message) = event.body();
        Self {
            room: event.room(),
            // A fast message is seen live before it has one.
            seq: event.stored_seq(),
            id: event.id(),
            from: event.from(),
            avatar: event.avatar(),
            text: &message.text,
            ts: rfc3339(event.ts()),
            delivered: message.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::event::Event;
    use crate::protocol::{ServerFrame, WireMessage};

    /// `message` as the `message` frame's JSON.
    fn render(message: &Event) -> Value {
        serde_json::from_str(&ServerFrame::Message(WireMessage::from(message)).encode()).unwrap()
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
}
