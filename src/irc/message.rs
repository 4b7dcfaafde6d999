//! IRC lines: parsing what a client sends, and building what it is sent. Pure functions.
//! What the hub encodes itself (a channel message as PRIVMSG lines) is in
//! [`proto::irc`](crate::proto::irc), and used from there.

pub use crate::proto::irc::{
    MAX_CONTENT, MAX_LINE, SERVER, channel, chunks, prefix, privmsg, push,
};

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
