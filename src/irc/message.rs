//! IRC lines: parsing what a client sends, and building what it is sent. Pure functions.

/// The server's name in every line it sends (`:chatroom 001 ...`), and the host part of
/// every user's prefix (`bob!bob@chatroom`): addresses are not shown.
pub const SERVER: &str = "chatroom";

/// The longest line, `\r\n` included (RFC 1459, Modern IRC): 510 bytes of content.
pub const MAX_LINE: usize = 512;

/// The longest content of a line, without its `\r\n`.
pub const MAX_CONTENT: usize = MAX_LINE - 2;

/// One parsed client line: the command (upper case) and its parameters, the trailing one
/// (after ` :`) last. Tags and a source prefix are skipped: a client has nothing to say in them.
#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub command: String,
    pub params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// The parameter at `i`, if given.
    pub fn param(&self, i: usize) -> Option<&'a str> {
        self.params.get(i).copied()
    }
}

/// Parses a line (without its `\r\n`); `None` for a line with no command.
pub fn parse(line: &str) -> Option<Message<'_>> {
    let mut rest = line.trim_start_matches(' ');
    for marker in ['@', ':'] {
        if rest.starts_with(marker) {
            rest = rest.split_once(' ')?.1.trim_start_matches(' ');
        }
    }
    let (command, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if command.is_empty() {
        return None;
    }
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches(' ');
        if rest.is_empty() {
            break;
        }
        if let Some(trailing) = rest.strip_prefix(':') {
            params.push(trailing);
            break;
        }
        // RFC 2812: at most 15 parameters; the 15th takes the rest.
        if params.len() == 14 {
            params.push(rest);
            break;
        }
        match rest.split_once(' ') {
            Some((p, more)) => {
                params.push(p);
                rest = more;
            }
            None => {
                params.push(rest);
                break;
            }
        }
    }
    Some(Message {
        command: command.to_ascii_uppercase(),
        params,
    })
}

/// `nick!nick@chatroom`: the source of what a user does.
pub fn prefix(nick: &str) -> String {
    format!("{nick}!{nick}@{SERVER}")
}

/// Text made safe for a trailing parameter: one line, no NUL.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if matches!(c, '\r' | '\n' | '\0') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Appends a line and its `\r\n`.
pub fn push(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a numeric reply from the server: `:chatroom CODE TARGET REST`. `rest` holds the
/// parameters as they are sent (the trailing one with its `:`).
pub fn numeric(out: &mut Vec<u8>, code: &str, target: &str, rest: &str) {
    push(out, &format!(":{SERVER} {code} {target} {rest}"));
}

/// Appends a NOTICE from the server to `target`, one line per line of `text`.
pub fn notice(out: &mut Vec<u8>, target: &str, text: &str) {
    for line in text.split('\n').filter(|l| !l.trim().is_empty()) {
        let head = format!(":{SERVER} NOTICE {target} :");
        for chunk in chunks(line, MAX_CONTENT.saturating_sub(head.len()).max(64)) {
            push(out, &format!("{head}{chunk}"));
        }
    }
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

/// A CTCP message (`\x01VERB args\x01`): the verb (upper case) and its argument.
pub fn ctcp(text: &str) -> Option<(String, &str)> {
    let inner = text.strip_prefix('\u{1}')?;
    let inner = inner.strip_suffix('\u{1}').unwrap_or(inner);
    let (verb, arg) = inner.split_once(' ').unwrap_or((inner, ""));
    Some((verb.to_ascii_uppercase(), arg))
}

/// Whether `target` names a channel (`#room`), as CHANTYPES=# says.
pub fn is_channel(target: &str) -> bool {
    target.starts_with('#')
}

/// `#room` for a room's name (which the server shows without its `#`).
pub fn channel(room: &str) -> String {
    format!("#{}", room.strip_prefix('#').unwrap_or(room))
}

/// Decodes standard base64 (RFC 4648, with or without padding); `None` if it is not base64.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for group in body.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in group.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    Some(out)
}
