//! IRC lines as the hub encodes them ([`Mode::Irc`](super::Mode::Irc)): a channel message
//! becomes its PRIVMSG lines once per batch, shared by every IRC member of the room, and every
//! other event stays a JSON line for the IRC transport (`crate::irc`) to translate with what
//! it knows of its connection. Pure functions, also used by that transport.

use super::{ChatMessage, Kind, ServerMsg};

/// The server's name in every line it sends (`:chatroom 001 ...`), and the host part of
/// every user's prefix (`bob!bob@chatroom`): addresses are not shown.
pub const SERVER: &str = "chatroom";

/// The longest line, `\r\n` included (RFC 1459, Modern IRC): 510 bytes of content.
pub const MAX_LINE: usize = 512;

/// The longest content of a line, without its `\r\n`.
pub const MAX_CONTENT: usize = MAX_LINE - 2;

/// `nick!nick@chatroom`: the source of what a user does.
pub fn prefix(nick: &str) -> String {
    format!("{nick}!{nick}@{SERVER}")
}

/// Appends a line and its `\r\n`, cut at a character boundary to [`MAX_CONTENT`] bytes after
/// its tags: whatever a line is built from (a reason of 200 four-byte characters, a long list),
/// no client receives a longer one, whose rest a client that frames at 512 bytes would read
/// as a line of its own.
pub fn push(out: &mut Vec<u8>, line: &str) {
    let body = match line.strip_prefix('@') {
        Some(_) => line.find(' ').map_or(line.len(), |i| i + 1),
        None => 0,
    };
    let mut end = line.len().min(body + MAX_CONTENT);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&line.as_bytes()[..end]);
    out.extend_from_slice(b"\r\n");
}

/// Appends `text` as PRIVMSG lines from `from` to `target`: one per line of the text, each
/// cut to fit in [`MAX_LINE`]; an action is wrapped as CTCP ACTION. `tag` goes first
/// (`@time=...`), outside the limit as IRCv3 counts it.
pub fn privmsg(
    out: &mut Vec<u8>,
    tag: Option<&str>,
    from: &str,
    target: &str,
    text: &str,
    action: bool,
) {
    let tag = tag.map(|t| format!("{t} ")).unwrap_or_default();
    let head = format!(":{} PRIVMSG {target} :", prefix(from));
    let (open, close) = if action {
        ("\u{1}ACTION ", "\u{1}")
    } else {
        ("", "")
    };
    let room = MAX_CONTENT
        .saturating_sub(head.len() + open.len() + close.len())
        .max(64);
    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
        for chunk in chunks(line, room) {
            push(out, &format!("{tag}{head}{open}{chunk}{close}"));
        }
    }
}

/// Cuts `text` into pieces of at most `max` bytes, at character boundaries (at a space when
/// there is one in the last quarter of a piece).
pub fn chunks(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        if let Some(space) = rest[..cut].rfind(' ')
            && space >= cut - cut / 4
            && space > 0
        {
            cut = space;
        }
        if cut == 0 {
            // One character longer than `max`: cannot happen for max >= 4.
            break;
        }
        out.push(&rest[..cut]);
        rest = rest[cut..].trim_start_matches(' ');
    }
    if !rest.is_empty() || out.is_empty() {
        out.push(rest);
    }
    out
}

/// `#room` for a room's name (which the server shows without its `#`).
pub fn channel(room: &str) -> String {
    format!("#{}", room.strip_prefix('#').unwrap_or(room))
}

/// Encodes `msg` for an IRC connection: a channel message as its PRIVMSG lines (each starting
/// with `:`, or with `@time=` when `time`), anything else as a JSON line (starting with `{`)
/// for the transport to translate. A channel message is the same for every member but its
/// sender, whose copy stays JSON ([`Mode::own_messages`](super::Mode::own_messages)): it is the
/// acknowledgement the transport waits for.
pub fn encode(msg: &ServerMsg, time: bool) -> Vec<u8> {
    match msg {
        ServerMsg::Message(m) if m.to.is_none() => {
            let mut out = Vec::new();
            channel_message(&mut out, m, time);
            out
        }
        _ => super::json::encode_line(msg),
    }
}

/// Appends a channel message's PRIVMSG lines (a `/me` as CTCP ACTION), tagged with its time
/// when `time`.
pub fn channel_message(out: &mut Vec<u8>, m: &ChatMessage, time: bool) {
    let tag = time.then(|| format!("@time={}", m.ts));
    let action = m.kind == Kind::Action;
    privmsg(
        out,
        tag.as_deref(),
        &m.from,
        &channel(&m.room),
        &m.text,
        action,
    );
}

/// Whether `bytes` are only lines the hub encoded as IRC (every line starts with `:` or `@`),
/// which may go to the socket as they are; JSON lines (`{`) need the transport.
pub fn pre_encoded(bytes: &[u8]) -> bool {
    let line_start = |b: Option<&u8>| matches!(b, Some(b':' | b'@'));
    if !line_start(bytes.first()) {
        return false;
    }
    memchr::memchr_iter(b'\n', bytes).all(|i| i + 1 == bytes.len() || line_start(bytes.get(i + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Mode, encode};

    fn message(to: Option<&str>, text: &str, kind: Kind) -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            id: 7,
            ts: "2026-11-26T10:00:00.000Z".into(),
            room: if to.is_some() {
                String::new()
            } else {
                "Lobby".into()
            },
            from: "ann".into(),
            to: to.map(String::from),
            kind,
            text: text.into(),
            history: false,
        })
    }

    #[test]
    fn channel_messages_are_irc_lines_and_everything_else_json() {
        let m = message(None, "hi\nthere", Kind::Message);
        assert_eq!(
            encode(&m, Mode::Irc),
            b":ann!ann@chatroom PRIVMSG #Lobby :hi\r\n:ann!ann@chatroom PRIVMSG #Lobby :there\r\n"
        );
        assert_eq!(
            encode(&message(None, "waves", Kind::Action), Mode::IrcTime),
            "@time=2026-11-26T10:00:00.000Z :ann!ann@chatroom PRIVMSG #Lobby :\u{1}ACTION waves\u{1}\r\n"
                .as_bytes()
        );
        // A direct message needs the connection's own nick: JSON, for the transport.
        let dm = message(Some("bob"), "psst", Kind::Direct);
        assert_eq!(encode(&dm, Mode::Irc), encode(&dm, Mode::Json));
        let ping = ServerMsg::Ping { id: 3 };
        assert_eq!(encode(&ping, Mode::IrcTime), encode(&ping, Mode::Json));
    }

    #[test]
    fn only_bytes_of_irc_lines_alone_are_pre_encoded() {
        let irc = encode(&message(None, "a\nb", Kind::Message), Mode::Irc);
        let json = encode(&ServerMsg::Ping { id: 1 }, Mode::Irc);
        assert!(pre_encoded(&irc));
        assert!(pre_encoded(&encode(
            &message(None, "a", Kind::Message),
            Mode::IrcTime
        )));
        assert!(!pre_encoded(&json));
        assert!(!pre_encoded(&[irc.clone(), json.clone()].concat()));
        assert!(!pre_encoded(&[json, irc.clone()].concat()));
        assert!(!pre_encoded(b""));
        // Text that looks like JSON stays inside its PRIVMSG line.
        assert!(pre_encoded(&encode(
            &message(None, "{\"type\":\"bye\"}", Kind::Message),
            Mode::Irc
        )));
    }

    #[test]
    fn no_line_is_longer_than_512_bytes_after_its_tags() {
        let mut out = Vec::new();
        let reason = "\u{1F600}".repeat(200);
        push(&mut out, &format!(":eve!eve@chatroom QUIT :{reason}"));
        assert!(
            out.len() <= MAX_LINE && out.len() > MAX_LINE - 8,
            "{}",
            out.len()
        );
        assert!(out.ends_with(b"\r\n"));
        assert!(std::str::from_utf8(&out).is_ok());
        let mut out = Vec::new();
        let long = "x".repeat(600);
        push(
            &mut out,
            &format!("@time=2026-11-26T10:00:00.000Z :a PRIVMSG #b :{long}"),
        );
        let text = String::from_utf8(out).unwrap();
        let (tag, rest) = text.split_once(' ').unwrap();
        assert_eq!(tag, "@time=2026-11-26T10:00:00.000Z");
        assert_eq!(rest.len(), MAX_LINE);
        assert!(rest.ends_with("\r\n"));
    }

    #[test]
    fn a_sender_gets_its_own_channel_messages_as_json_or_not_at_all() {
        assert_eq!(Mode::Irc.own_messages(), Some(Mode::Json));
        assert_eq!(Mode::IrcTime.own_messages(), Some(Mode::Json));
        assert_eq!(Mode::Json.own_messages(), Some(Mode::Json));
        assert_eq!(Mode::Human.own_messages(), None);
        assert_eq!(Mode::irc(true), Mode::IrcTime);
    }
}
