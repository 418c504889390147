//! How a stored message goes on the wire: the protocol knows nothing of
//! the store, so the conversion lives here, where both meet.

use crate::protocol::{rfc3339, WireMessage};
use crate::store::StoredMessage;

impl<'a> From<&'a StoredMessage> for WireMessage<'a> {
    fn from(message: &'a StoredMessage) -> Self {
        Self {
            room: &message.room,
            seq: (!message.fast).then_some(message.seq),
            id: &message.id,
            from: &message.from,
            avatar: message.avatar.as_deref(),
            text: &message.text,
            ts: rfc3339(message.ts),
            delivered: message.delivered,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::protocol::{ServerFrame, WireMessage};
    use crate::store::StoredMessage;

    /// `message` as the `message` frame's JSON.
    fn render(message: &StoredMessage) -> Value {
        serde_json::from_str(&ServerFrame::Message(WireMessage::from(message)).encode()).unwrap()
    }

    #[test]
    fn messages_render_as_documented() {
        let stored = StoredMessage {
            room: "general".into(),
            seq: 3,
            from: "alice".into(),
            text: "<b>hi</b>".into(),
            ts: 1_700_000_000_123,
            avatar: None,
            id: "00000000000000ab".into(),
            fast: false,
            delivered: false,
        };
        assert_eq!(
            render(&stored),
            json!({"type":"message","room":"general","seq":3,"id":"00000000000000ab","from":"alice",
                   "avatar":null,"text":"<b>hi</b>","ts":"2023-11-14T22:13:20.123Z"})
        );
        let live_fast = StoredMessage {
            fast: true,
            ..stored
        };
        assert_eq!(
            render(&live_fast)["seq"],
            Value::Null,
            "a fast message is seen live without a seq"
        );
        let delivered = StoredMessage {
            room: "@alice:bob".into(),
            delivered: true,
            ..live_fast
        };
        assert_eq!(
            render(&delivered)["delivered"],
            true,
            "a delivered direct message says so"
        );
    }
}
