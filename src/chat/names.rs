//! Validation of user and room names, and what a room's name says it is
//! ([`RoomKind`]): the one place that reads `@a:b`.

/// Longest user name, in characters.
pub const MAX_USER_NAME: usize = 32;
/// Longest public room name, in characters.
pub const MAX_ROOM_NAME: usize = 64;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// 1–32 ASCII letters, digits, `_`, `-`, `.`.
pub fn is_valid_user_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_USER_NAME && name.chars().all(is_name_char)
}

/// A public room: 1–64 of the same characters as user names.
pub fn is_valid_public_room(room: &str) -> bool {
    !room.is_empty() && room.len() <= MAX_ROOM_NAME && room.chars().all(is_name_char)
}

/// The room holding the conversation between `a` and `b`: `@a:b`, names
/// sorted, so both sides name it alike.
pub fn direct_room(a: &str, b: &str) -> String {
    let (first, second) = if a <= b { (a, b) } else { (b, a) };
    format!("@{first}:{second}")
}

/// What a room's name says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomKind<'a> {
    /// A room anyone may join: 1–64 name characters.
    Public,
    /// The conversation of two users: `@first:second`, names sorted.
    Direct { first: &'a str, second: &'a str },
}

impl<'a> RoomKind<'a> {
    /// What `room` names; `None` for a name that is no room's.
    pub fn of(room: &'a str) -> Option<Self> {
        if is_valid_public_room(room) {
            return Some(Self::Public);
        }
        let (first, second) = room.strip_prefix('@')?.split_once(':')?;
        let well_formed =
            is_valid_user_name(first) && is_valid_user_name(second) && first <= second;
        well_formed.then_some(Self::Direct { first, second })
    }

    /// The two users of `room` if it is a direct room.
    pub fn direct(room: &'a str) -> Option<(&'a str, &'a str)> {
        match Self::of(room)? {
            Self::Direct { first, second } => Some((first, second)),
            Self::Public => None,
        }
    }

    /// Whether `user` may see a room of this kind: anyone a public room,
    /// its two users a direct one.
    pub fn admits(self, user: &str) -> bool {
        match self {
            Self::Public => true,
            Self::Direct { first, second } => user == first || user == second,
        }
    }
}

/// Whether `user` may see `room`: any public room, or a direct room they are part of.
pub fn may_access(user: &str, room: &str) -> bool {
    RoomKind::of(room).is_some_and(|kind| kind.admits(user))
}

/// The room `room` names when a backend may write a direct room's users in
/// either order (`@bob:alice` is `@alice:bob`); `None` for no room.
pub fn canonical_room(room: &str) -> Option<String> {
    if is_valid_public_room(room) {
        return Some(room.to_owned());
    }
    let (a, b) = room.strip_prefix('@')?.split_once(':')?;
    (is_valid_user_name(a) && is_valid_user_name(b)).then(|| direct_room(a, b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names() {
        assert!(is_valid_user_name("alice_01.x-y"));
        assert!(!is_valid_user_name(""));
        assert!(!is_valid_user_name("has space"));
        assert!(!is_valid_user_name("émile"));
        assert!(!is_valid_user_name(&"a".repeat(33)));
        assert!(is_valid_user_name(&"a".repeat(32)));
    }

    #[test]
    fn direct_rooms_are_symmetric_and_parse_back() {
        assert_eq!(direct_room("bob", "alice"), "@alice:bob");
        assert_eq!(direct_room("alice", "bob"), "@alice:bob");
        assert_eq!(RoomKind::direct("@alice:bob"), Some(("alice", "bob")));
        assert_eq!(RoomKind::direct("@bob:alice"), None, "unsorted names");
        assert_eq!(RoomKind::direct("general"), None);
    }

    #[test]
    fn a_room_name_says_what_it_is() {
        assert_eq!(RoomKind::of("general"), Some(RoomKind::Public));
        assert_eq!(
            RoomKind::of("@alice:bob"),
            Some(RoomKind::Direct {
                first: "alice",
                second: "bob"
            })
        );
        for nothing in [
            "",
            "@",
            "@alice",
            "@alice:",
            "@:bob",
            "@a:b:c",
            "a b",
            "@al ice:bob",
        ] {
            assert_eq!(RoomKind::of(nothing), None, "{nothing:?}");
        }
        assert_eq!(canonical_room("@bob:alice").as_deref(), Some("@alice:bob"));
        assert_eq!(canonical_room("general").as_deref(), Some("general"));
        assert_eq!(canonical_room("@bob:al ice"), None);
    }

    #[test]
    fn access() {
        assert!(may_access("carol", "general"));
        assert!(may_access("alice", "@alice:bob"));
        assert!(!may_access("carol", "@alice:bob"));
        assert!(!may_access("carol", "@nope"));
        assert!(!may_access("carol", "bad room"));
    }
}
