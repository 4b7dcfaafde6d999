//! What message text and reasons may hold: no control, escape or invisible characters.

use super::ProtocolError;

/// The longest reason (for `/away`, `/quit`, `/kick`, `/ban`), in characters.
pub const MAX_REASON_CHARS: usize = 200;

/// Checks a reason: what message text may hold, on one line, at most [`MAX_REASON_CHARS`].
/// Reasons are shown inside other lines (`* bob is away: REASON`), where a line break would
/// let the rest pass for a line of its own.
pub fn validate_reason(text: &str) -> Result<(), ProtocolError> {
    validate_text(text)?;
    if text.contains('\n') {
        return Err(ProtocolError::BadRequest {
            detail: "a reason is one line".into(),
        });
    }
    let chars = text.chars().count();
    if chars > MAX_REASON_CHARS {
        return Err(ProtocolError::BadRequest {
            detail: format!(
                "a reason has at most {MAX_REASON_CHARS} characters; that one has {chars}"
            ),
        });
    }
    Ok(())
}

/// The most lines one message (a paste) may have.
pub const MAX_MESSAGE_LINES: usize = 100;

/// Checks message text: not blank, at most [`MAX_MESSAGE_LINES`] lines, and no character that
/// could drive a terminal.
///
/// Refused (the message is rejected whole, never silently altered): C0 controls other than
/// tab and newline, DEL, C1 controls, and the Unicode bidirectional embedding, override and
/// isolate characters (U+202A..U+202E, U+2066..U+2069), which can make a line read backwards.
pub fn validate_text(text: &str) -> Result<(), ProtocolError> {
    if text.trim().is_empty() {
        return Err(ProtocolError::EmptyMessage);
    }
    let lines = text.split('\n').count();
    if lines > MAX_MESSAGE_LINES {
        return Err(ProtocolError::TooManyLines { lines });
    }
    if let Some((at, ch)) = text
        .chars()
        .enumerate()
        .find(|&(_, c)| c != '\t' && c != '\n' && is_dangerous(c))
    {
        return Err(ProtocolError::ControlChar { ch, at });
    }
    if let Some((at, ch)) = text.chars().enumerate().find(|&(_, c)| is_hidden(c)) {
        return Err(ProtocolError::ControlChar { ch, at });
    }
    if text.chars().any(is_tag)
        && let Some((at, ch)) = stray_tag(text)
    {
        return Err(ProtocolError::ControlChar { ch, at });
    }
    if let Some((at, ch)) = stray_selector(text) {
        return Err(ProtocolError::ControlChar { ch, at });
    }
    Ok(())
}

/// True for characters that must never reach a terminal raw: controls, the bidirectional
/// overrides, embeddings and isolates, the invisible direction marks (LRM, RLM, ALM), and the
/// line and paragraph separators U+2028/U+2029 (which some terminals and editors break on).
pub fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{061C}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// Characters that show nothing (Unicode's default-ignorable code points, and the interlinear
/// annotation controls): a message could hide text in them, or two messages that look the same
/// could differ. The joiners U+200C/U+200D (needed by Persian, Indic scripts and emoji) and the
/// variation selectors (one after a character, for emoji and ideographs: see
/// [`stray_selector`]) are allowed; tag characters have their own rule ([`stray_tag`]).
fn is_hidden(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0080}'..='\u{E00FF}'
            | '\u{E01F0}'..='\u{E0FFF}'
    )
}

fn is_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}')
}

/// The first variation selector (its position in characters) that does not directly follow
/// a visible character, or follows another selector: one selects how a character looks; a run
/// of them is hidden text.
fn stray_selector(text: &str) -> Option<(usize, char)> {
    let mut previous: Option<char> = None;
    for (i, c) in text.chars().enumerate() {
        if is_selector(c) && previous.is_none_or(|p| is_selector(p) || p.is_whitespace()) {
            return Some((i, c));
        }
        previous = Some(c);
    }
    None
}

/// A tag character (U+E0000..U+E007F): invisible, so it can hide text inside a message.
fn is_tag(c: char) -> bool {
    ('\u{E0000}'..='\u{E007F}').contains(&c)
}

/// The first tag character (its position in characters) that is not part of an emoji tag
/// sequence: a black flag U+1F3F4, tag letters or digits, then CANCEL TAG U+E007F (the flags
/// of England, Scotland and Wales). Anywhere else tags are hidden text.
fn stray_tag(text: &str) -> Option<(usize, char)> {
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1F3F4}' {
            let start = i + 1;
            let mut end = start;
            while end < chars.len()
                && matches!(chars[end], '\u{E0030}'..='\u{E0039}' | '\u{E0061}'..='\u{E007A}')
            {
                end += 1;
            }
            if end > start && end - start <= 6 && chars.get(end) == Some(&'\u{E007F}') {
                i = end + 1;
                continue;
            }
        } else if is_tag(chars[i]) {
            return Some((i, chars[i]));
        }
        i += 1;
    }
    None
}

/// `text` with every dangerous character (and every tag character) written as a visible
/// `\u{..}` escape.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_printable(&mut out, text);
    out
}

/// Appends [`printable`]`(text)` to `out`, for callers that reuse one buffer (`chat-log`).
pub fn push_printable(out: &mut String, text: &str) {
    // Printable ASCII, most text, is safe as it is.
    if text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        out.push_str(text);
        return;
    }
    for c in text.chars() {
        if is_dangerous(c) || is_tag(c) || is_hidden(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
}

pub(super) fn describe_char(ch: char) -> String {
    if is_dangerous(ch) || ch.is_whitespace() {
        format!("U+{:04X}", ch as u32)
    } else {
        format!("'{ch}' (U+{:04X})", ch as u32)
    }
}
