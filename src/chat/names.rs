//! Validation of user and room names, and the naming of direct rooms.

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

/// The two participants of a well-formed direct room name.
pub fn direct_participants(room: &str) -> Option<(&str, &str)> {
    let (first, second) = room.strip_prefix('@')?.split_once(':')?;
    let well_formed = is_valid_user_name(first) && is_valid_user_name(second) && first <= second;
    well_formed.then_some((first, second))
}

/// Whether `user` may see `room`: any public room, or a direct room they are part of.
pub fn may_access(user: &str, room: &str) -> bool {
    match direct_participants(room) {
        Some((first, second)) => user == first || user == second,
        None => is_valid_public_room(room),
    }
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
        assert_eq!(direct_participants("@alice:bob"), Some(("alice", "bob")));
        assert_eq!(direct_participants("@bob:alice"), None, "unsorted names");
        assert_eq!(direct_participants("general"), None);
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
