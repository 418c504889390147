//! The one-pass reading of a client frame: straight from the text into
//! typed fields, with no JSON tree in between, for the frames every client
//! sends thousands of (a `send` or a `direct` of a long text).
//!
//! It only ever accepts: anything it does not read cleanly (a broken or
//! repeated key, an unknown one, a field of the wrong type, a missing one)
//! makes [`read`] answer `None`, and [`super::parse`] reads the frame again
//! the careful way, which says exactly what is wrong. So the two readers
//! must agree on every frame this one accepts; the tests hold them to it.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::client::{ref_too_long, ClientFrame, Delivery, MessageOptions};
use super::json::Strict;

/// Every field of the frames read here, each read as the frame kinds that
/// use it expect it. `resume` (a map of rooms, sent once per reconnect)
/// is left to the careful reader.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a str>,
    room: Option<String>,
    text: Option<String>,
    /// `ref` through the strict reader (repeated keys inside it refused);
    /// `null` is no ref, as for the careful reader.
    reference: Option<Option<Strict>>,
    delivery: Option<Delivery>,
    retry: Option<bool>,
    confirm: Option<bool>,
    to: Option<To>,
    active: Option<bool>,
    before: Option<Option<u64>>,
    limit: Option<Option<u32>>,
    seq: Option<u64>,
}

/// `to`: one user (`direct`) or a list (`group`).
enum To {
    One(String),
    Many(Vec<String>),
}

/// Why this reader gives a frame up to the careful one; never shown.
const UNSURE: &str = "read carefully";

/// The frame in `text`, if it is one this reader is sure of.
pub(super) fn read(text: &str) -> Option<ClientFrame> {
    let fields = serde_json::from_str::<Fields>(text).ok()?;
    fields.into_frame()
}

impl Fields<'_> {
    fn into_frame(self) -> Option<ClientFrame> {
        let reference = self.reference.flatten().map(|Strict(value)| value);
        if reference.as_ref().is_some_and(ref_too_long) {
            return None;
        }
        let delivery = self.delivery.unwrap_or_default();
        let retry = self.retry.unwrap_or(false);
        let options = |reference| MessageOptions {
            reference,
            delivery,
            confirm: self.confirm.unwrap_or(false),
            retry,
        };
        let frame = match self.kind? {
            "join" => ClientFrame::Join { room: self.room? },
            "leave" => ClientFrame::Leave { room: self.room? },
            "send" => ClientFrame::Send {
                room: self.room?,
                text: self.text?,
                reference,
                delivery,
                retry,
            },
            "typing" => ClientFrame::Typing {
                room: self.room?,
                active: self.active?,
            },
            "history" => ClientFrame::History {
                room: self.room?,
                before: self.before.flatten(),
                limit: self.limit.flatten(),
            },
            "direct" => {
                let To::One(to) = self.to? else { return None };
                ClientFrame::Direct {
                    to,
                    text: self.text?,
                    options: options(reference),
                }
            }
            "group" => {
                let To::Many(to) = self.to? else { return None };
                ClientFrame::Group {
                    to,
                    text: self.text?,
                    options: options(reference),
                }
            }
            "fetch_missed" => ClientFrame::FetchMissed {
                limit: self.limit.flatten(),
            },
            "read" => ClientFrame::Read {
                room: self.room?,
                seq: self.seq?,
            },
            "ping" => ClientFrame::Ping,
            _ => return None,
        };
        Some(frame)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

/// Reads `slot` unless it was read already (a repeated key).
fn fill<'de, A, T>(map: &mut A, slot: &mut Option<T>) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::custom(UNSURE));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a client frame")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // Keys written with escapes are not borrowed: the careful reader's.
        while let Some(key) = map.next_key::<&'de str>()? {
            match key {
                "type" => fill(&mut map, &mut fields.kind)?,
                "room" => fill(&mut map, &mut fields.room)?,
                "text" => fill(&mut map, &mut fields.text)?,
                "ref" => fill(&mut map, &mut fields.reference)?,
                "delivery" => fill(&mut map, &mut fields.delivery)?,
                "retry" => fill(&mut map, &mut fields.retry)?,
                "confirm" => fill(&mut map, &mut fields.confirm)?,
                "to" => fill(&mut map, &mut fields.to)?,
                "active" => fill(&mut map, &mut fields.active)?,
                "before" => fill(&mut map, &mut fields.before)?,
                "limit" => fill(&mut map, &mut fields.limit)?,
                "seq" => fill(&mut map, &mut fields.seq)?,
                // An unknown key may repeat: the careful reader decides.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    return Err(de::Error::custom(UNSURE));
                }
            }
        }
        Ok(fields)
    }
}

impl<'de> Deserialize<'de> for To {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ToVisitor;
        impl<'de> Visitor<'de> for ToVisitor {
            type Value = To;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a user name or a list of them")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<To, E> {
                Ok(To::One(value.to_owned()))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<To, E> {
                Ok(To::One(value))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<To, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(To::Many(names))
            }
        }
        deserializer.deserialize_any(ToVisitor)
    }
}
