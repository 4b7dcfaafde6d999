//! Rooms: their names, and the room everyone starts in.

use super::ProtocolError;
use super::text::describe_char;

/// The room every client is in after the handshake.
pub const LOBBY: &str = "lobby";

/// The longest accepted room name, in characters (without the optional leading `#`).
pub const MAX_ROOM_CHARS: usize = 64;

/// Checks a room name: an optional leading `#`, then 1 to 64 letters, digits, `_`, `-`, `.`.
pub fn validate_room(room: &str) -> Result<(), ProtocolError> {
    let bare = room.strip_prefix('#').unwrap_or(room);
    let chars = bare.chars().count();
    let bad = |detail: String| Err(ProtocolError::RoomInvalid { detail });
    if chars == 0 {
        return bad("it needs at least one character after the optional '#'".into());
    }
    if chars > MAX_ROOM_CHARS {
        return bad(format!(
            "at most {MAX_ROOM_CHARS} characters; that one has {chars}"
        ));
    }
    if let Some(ch) = super::names::invalid_char(bare) {
        return bad(format!(
            "letters, digits, '_', '-' and '.' only, not {}",
            describe_char(ch)
        ));
    }
    Ok(())
}

/// A room's name as shown: without the optional `#`.
pub fn room_display(room: &str) -> &str {
    room.strip_prefix('#').unwrap_or(room)
}

/// The form under which room names are compared: case-insensitive, without the `#`.
pub fn room_key(room: &str) -> String {
    room_display(room).to_lowercase()
}
