//! The wire format, as pure functions: no sockets, no files, no clocks.
//!
//! One event model ([`ServerMsg`] from the server, [`Hello`] and [`Request`] from a client) has
//! two encodings: *human* lines, readable in `nc`, and *JSON Lines* for programs. The mode is
//! chosen by the client's first line: a JSON object selects JSON, anything else is a name.
//! Everything that decides whether input is acceptable (names, message text, commands) lives
//! here so that the server and its tests agree on one definition.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// The room every client is in after the handshake.
pub const LOBBY: &str = "lobby";

/// The line a server sends first, before it knows the client's mode. JSON clients skip every
/// line that is not a JSON object until their `welcome`.
pub const GREETING: &str =
    "Welcome to chatroom. What is your name? (1-32 letters, digits, _ - .)\n";

/// The line a human-mode client gets after a refused name.
pub const NAME_PROMPT: &str = "What is your name?\n";

/// Names nobody may take, compared case-insensitively: they would let a client pass itself off
/// as the server or its staff.
const RESERVED_NAMES: &[&str] = &[
    "server",
    "admin",
    "administrator",
    "root",
    "system",
    "sysop",
    "operator",
    "moderator",
    "mod",
    "chatroom",
    "nobody",
    "everyone",
    "here",
];

/// The two encodings of the event model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Readable lines for `nc` and people.
    Human = 0,
    /// One JSON object per line, for programs.
    Json = 1,
}

/// The first line of a connection, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub mode: Mode,
    pub name: String,
}

/// What a named client asks for, in either mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A message to the client's current room.
    Say(String),
    /// List the members of the client's room.
    Who,
    /// List the commands.
    Help,
    /// Answer with a `pong`, so a client can measure the round trip or keep the line warm.
    Ping(Option<u64>),
    /// Leave, with an optional reason shown to the others.
    Quit(Option<String>),
}

/// Why a line from a client was refused. Every variant reaches the client as an `error` event
/// with [`ProtocolError::code`] and the `Display` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    NameEmpty,
    NameTooLong { chars: usize },
    NameInvalidChar { ch: char },
    NameReserved { name: String },
    NameTaken { name: String },
    LineTooLong { limit: usize },
    InvalidUtf8 { at: usize },
    ControlChar { ch: char, at: usize },
    EmptyMessage,
    BadJson { detail: String },
    BadRequest { detail: String },
    UnknownCommand { command: String },
    Usage { usage: &'static str },
}

impl ProtocolError {
    /// The stable, machine-readable code of this error (the JSON `code` field).
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::NameEmpty
            | ProtocolError::NameTooLong { .. }
            | ProtocolError::NameInvalidChar { .. } => ErrorCode::NameInvalid,
            ProtocolError::NameReserved { .. } => ErrorCode::NameReserved,
            ProtocolError::NameTaken { .. } => ErrorCode::NameTaken,
            ProtocolError::LineTooLong { .. } => ErrorCode::LineTooLong,
            ProtocolError::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            ProtocolError::ControlChar { .. } => ErrorCode::ControlChar,
            ProtocolError::EmptyMessage => ErrorCode::EmptyMessage,
            ProtocolError::BadJson { .. } => ErrorCode::BadJson,
            ProtocolError::BadRequest { .. } => ErrorCode::BadRequest,
            ProtocolError::UnknownCommand { .. } | ProtocolError::Usage { .. } => {
                ErrorCode::UnknownCommand
            }
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::NameEmpty => write!(f, "a name needs at least one character"),
            ProtocolError::NameTooLong { chars } => write!(
                f,
                "a name has at most {MAX_NAME_CHARS} characters; that one has {chars}"
            ),
            ProtocolError::NameInvalidChar { ch } => write!(
                f,
                "a name may hold letters, digits, '_', '-' and '.', not {}",
                describe_char(*ch)
            ),
            ProtocolError::NameReserved { name } => write!(f, "the name {name} is reserved"),
            ProtocolError::NameTaken { name } => {
                write!(f, "the name {name} is taken by someone connected now")
            }
            ProtocolError::LineTooLong { limit } => write!(
                f,
                "line too long: the limit is {limit} bytes; the line was not sent"
            ),
            ProtocolError::InvalidUtf8 { at } => write!(
                f,
                "the line is not valid UTF-8 (bad byte at offset {at}); it was not sent"
            ),
            ProtocolError::ControlChar { ch, at } => write!(
                f,
                "the message holds the control character {} at character {at}; it was not sent",
                describe_char(*ch)
            ),
            ProtocolError::EmptyMessage => write!(f, "the message is empty; nothing was sent"),
            ProtocolError::BadJson { detail } => {
                write!(f, "the line is not a JSON object: {detail}")
            }
            ProtocolError::BadRequest { detail } => write!(f, "bad request: {detail}"),
            ProtocolError::UnknownCommand { command } => {
                write!(f, "unknown command {command}; /help lists the commands")
            }
            ProtocolError::Usage { usage } => write!(f, "usage: {usage}"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// The `code` field of a JSON `error` event. The set only grows; clients match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NameInvalid,
    NameReserved,
    NameTaken,
    LineTooLong,
    InvalidUtf8,
    ControlChar,
    EmptyMessage,
    BadJson,
    BadRequest,
    UnknownCommand,
    HandshakeTimeout,
    Storage,
    ServerFull,
}

/// One chat message as it was logged: every recipient sees the same fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The `id` column of `messages.csv`.
    pub id: u64,
    /// RFC 3339 UTC with milliseconds, exactly as in `messages.csv`.
    pub ts: String,
    pub room: String,
    pub from: String,
    pub text: String,
}

/// The commands `/help` lists, with their one-line descriptions.
pub const COMMANDS: &[(&str, &str)] = &[
    ("/who", "list the people in your room"),
    ("/help", "show this list"),
    ("/quit [REASON]", "leave the chat"),
    ("//TEXT", "send a message that starts with '/'"),
];

/// Everything the server sends, before encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The handshake succeeded.
    Welcome {
        /// The connection id, as in the `conn` column of `data.csv`.
        conn: u64,
        name: String,
        room: String,
        /// How many are in the room, this client included.
        members: usize,
        server: String,
    },
    Message(ChatMessage),
    Joined {
        ts: String,
        room: String,
        name: String,
    },
    Left {
        ts: String,
        room: String,
        name: String,
        reason: String,
    },
    Users {
        room: String,
        users: Vec<String>,
    },
    Help {
        commands: Vec<HelpEntry>,
    },
    System {
        ts: String,
        text: String,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// The last event of a connection: the server closes it right after.
    Bye {
        ts: String,
        reason: String,
    },
}

/// One line of `/help`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HelpEntry {
    pub usage: String,
    pub description: String,
}

impl ServerMsg {
    /// The error event for a refused line.
    pub fn error(err: &ProtocolError) -> ServerMsg {
        ServerMsg::Error {
            code: err.code(),
            message: err.to_string(),
        }
    }

    /// The `/help` answer.
    pub fn help() -> ServerMsg {
        ServerMsg::Help {
            commands: COMMANDS
                .iter()
                .map(|(usage, description)| HelpEntry {
                    usage: usage.to_string(),
                    description: description.to_string(),
                })
                .collect(),
        }
    }
}

/// Encodes `msg` for a client in `mode`, ending with `\n`.
pub fn encode(msg: &ServerMsg, mode: Mode) -> Vec<u8> {
    match mode {
        Mode::Json => {
            let mut out = serde_json::to_vec(msg).expect("server messages always serialize");
            out.push(b'\n');
            out
        }
        Mode::Human => encode_human(msg).into_bytes(),
    }
}

fn encode_human(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Welcome {
            name,
            room,
            members,
            ..
        } => {
            let others = match members.saturating_sub(1) {
                0 => "nobody else".to_string(),
                1 => "1 other".to_string(),
                n => format!("{n} others"),
            };
            format!(
                "* welcome, {name}! you are in {room} with {others}. /help lists the commands.\n"
            )
        }
        ServerMsg::Message(m) => {
            let prefix = format!("[{}] {}: ", clock(&m.ts), m.from);
            let mut out = String::with_capacity(prefix.len() + m.text.len() + 1);
            out.push_str(&prefix);
            // Continuation lines of a multi-line message are indented under the first, so
            // every line on the reader's screen belongs visibly to its sender.
            let indent = " ".repeat(prefix.chars().count());
            for (i, line) in m.text.split('\n').enumerate() {
                if i > 0 {
                    out.push('\n');
                    out.push_str(&indent);
                }
                out.push_str(line);
            }
            out.push('\n');
            out
        }
        ServerMsg::Joined { ts, room, name } => {
            format!("[{}] * {name} joined {room}\n", clock(ts))
        }
        ServerMsg::Left {
            ts,
            room,
            name,
            reason,
        } => format!("[{}] * {name} left {room} ({reason})\n", clock(ts)),
        ServerMsg::Users { room, users } => {
            format!("* {} in {room}: {}\n", users.len(), users.join(", "))
        }
        ServerMsg::Help { commands } => {
            let mut out = String::from("* commands:\n");
            for c in commands {
                out.push_str(&format!("*   {:<16} {}\n", c.usage, c.description));
            }
            out
        }
        ServerMsg::System { ts, text } => format!("[{}] * {text}\n", clock(ts)),
        ServerMsg::Error { message, .. } => format!("! {message}\n"),
        ServerMsg::Pong { .. } => "* pong\n".to_string(),
        ServerMsg::Bye { ts, reason } => format!("[{}] * disconnected: {reason}\n", clock(ts)),
    }
}

/// `HH:MM:SS` out of an RFC 3339 timestamp, or the whole string if it is not one.
fn clock(ts: &str) -> &str {
    ts.get(11..19).unwrap_or(ts)
}

/// Parses the first line of a connection: a JSON `hello` object, or a bare name.
pub fn parse_hello(line: &str) -> Result<Hello, ProtocolError> {
    let trimmed = line.trim();
    if trimmed.starts_with('{') {
        let req: JsonHello = from_json(trimmed)?;
        if req.kind != "hello" {
            return Err(ProtocolError::BadRequest {
                detail: format!("the first request must be \"hello\", not {:?}", req.kind),
            });
        }
        validate_name(&req.name)?;
        Ok(Hello {
            mode: Mode::Json,
            name: req.name,
        })
    } else {
        validate_name(trimmed)?;
        Ok(Hello {
            mode: Mode::Human,
            name: trimmed.to_string(),
        })
    }
}

/// Parses a line from a named client. `Ok(None)` means "nothing to do" (an empty human line).
pub fn parse_request(mode: Mode, line: &str) -> Result<Option<Request>, ProtocolError> {
    match mode {
        Mode::Human => parse_human(line),
        Mode::Json => parse_json(line).map(Some),
    }
}

fn parse_human(line: &str) -> Result<Option<Request>, ProtocolError> {
    if line.trim().is_empty() {
        return Ok(None);
    }
    if let Some(rest) = line.strip_prefix("//") {
        let text = format!("/{rest}");
        validate_text(&text)?;
        return Ok(Some(Request::Say(text)));
    }
    if line.starts_with('/') {
        return parse_command(line).map(Some);
    }
    validate_text(line)?;
    Ok(Some(Request::Say(line.to_string())))
}

/// Parses a `/command args` line; both modes share it (JSON through `{"type":"command"}`).
pub fn parse_command(line: &str) -> Result<Request, ProtocolError> {
    let line = line.trim();
    let (cmd, args) = match line.split_once(char::is_whitespace) {
        Some((cmd, args)) => (cmd, args.trim()),
        None => (line, ""),
    };
    let no_args = |req: Request, usage: &'static str| {
        if args.is_empty() {
            Ok(req)
        } else {
            Err(ProtocolError::Usage { usage })
        }
    };
    match cmd.to_ascii_lowercase().as_str() {
        "/who" | "/users" | "/names" => no_args(Request::Who, "/who"),
        "/help" | "/?" => Ok(Request::Help),
        "/quit" | "/exit" | "/bye" => {
            if args.is_empty() {
                Ok(Request::Quit(None))
            } else {
                validate_text(args)?;
                Ok(Request::Quit(Some(args.to_string())))
            }
        }
        "/ping" => Ok(Request::Ping(None)),
        _ => Err(ProtocolError::UnknownCommand {
            command: printable(cmd),
        }),
    }
}

#[derive(Deserialize)]
struct JsonHello {
    #[serde(rename = "type")]
    kind: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum JsonRequest {
    Say {
        text: String,
    },
    Command {
        line: String,
    },
    Who,
    Help,
    Ping {
        #[serde(default)]
        id: Option<u64>,
    },
    Quit {
        #[serde(default)]
        reason: Option<String>,
    },
}

fn parse_json(line: &str) -> Result<Request, ProtocolError> {
    let req: JsonRequest = from_json(line)?;
    Ok(match req {
        JsonRequest::Say { text } => {
            validate_text(&text)?;
            Request::Say(text)
        }
        JsonRequest::Command { line } => {
            if !line.starts_with('/') {
                return Err(ProtocolError::BadRequest {
                    detail: "a command line starts with '/'".to_string(),
                });
            }
            parse_command(&line)?
        }
        JsonRequest::Who => Request::Who,
        JsonRequest::Help => Request::Help,
        JsonRequest::Ping { id } => Request::Ping(id),
        JsonRequest::Quit { reason } => {
            if let Some(r) = &reason {
                validate_text(r)?;
            }
            Request::Quit(reason)
        }
    })
}

/// Deserializes a JSON object, telling "not JSON at all" apart from "JSON of the wrong shape".
fn from_json<'a, T: Deserialize<'a>>(line: &'a str) -> Result<T, ProtocolError> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| ProtocolError::BadJson {
            detail: e.to_string(),
        })?;
    if !value.is_object() {
        return Err(ProtocolError::BadJson {
            detail: "expected an object like {\"type\":\"say\",\"text\":\"hi\"}".to_string(),
        });
    }
    serde_json::from_str(line).map_err(|e| ProtocolError::BadRequest {
        detail: e.to_string(),
    })
}

/// Checks a name: 1 to 32 letters, digits, `_`, `-` or `.`, and not reserved.
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    let chars = name.chars().count();
    if chars == 0 {
        return Err(ProtocolError::NameEmpty);
    }
    if chars > MAX_NAME_CHARS {
        return Err(ProtocolError::NameTooLong { chars });
    }
    if let Some(ch) = name
        .chars()
        .find(|&c| !(c.is_alphanumeric() || c == '_' || c == '-' || c == '.'))
    {
        return Err(ProtocolError::NameInvalidChar { ch });
    }
    let folded = name_key(name);
    if RESERVED_NAMES.contains(&folded.as_str()) {
        return Err(ProtocolError::NameReserved {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// The form under which names are compared: two names that differ only in case are one name.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
}

/// Checks message text: not blank, and no character that could drive a terminal.
///
/// Refused (the message is rejected whole, never silently altered): C0 controls other than
/// tab and newline, DEL, C1 controls, and the Unicode bidirectional embedding, override and
/// isolate characters (U+202A..U+202E, U+2066..U+2069), which can make a line read backwards.
pub fn validate_text(text: &str) -> Result<(), ProtocolError> {
    if text.trim().is_empty() {
        return Err(ProtocolError::EmptyMessage);
    }
    if let Some((at, ch)) = text
        .chars()
        .enumerate()
        .find(|&(_, c)| c != '\t' && c != '\n' && is_dangerous(c))
    {
        return Err(ProtocolError::ControlChar { ch, at });
    }
    Ok(())
}

/// True for characters that must never reach a terminal raw.
pub fn is_dangerous(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every dangerous character written as a visible `\u{..}` escape.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_dangerous(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn describe_char(ch: char) -> String {
    if is_dangerous(ch) || ch.is_whitespace() {
        format!("U+{:04X}", ch as u32)
    } else {
        format!("'{ch}' (U+{:04X})", ch as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            id: 7,
            ts: "2026-11-23T16:04:05.123Z".to_string(),
            room: "lobby".to_string(),
            from: "alice".to_string(),
            text: text.to_string(),
        })
    }

    #[test]
    fn hello_bare_name_is_human() {
        assert_eq!(
            parse_hello("alice\r").unwrap(),
            Hello {
                mode: Mode::Human,
                name: "alice".into()
            }
        );
    }

    #[test]
    fn hello_json_object_is_json() {
        let h = parse_hello(r#"{"type":"hello","name":"Bob.2"}"#).unwrap();
        assert_eq!(h.mode, Mode::Json);
        assert_eq!(h.name, "Bob.2");
    }

    #[test]
    fn hello_json_wrong_type_or_shape() {
        assert_eq!(
            parse_hello(r#"{"type":"say","name":"x"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse_hello(r#"{"type":"hello","name":5}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadRequest
        );
        assert_eq!(parse_hello("{oops").unwrap_err().code(), ErrorCode::BadJson);
    }

    #[test]
    fn names_are_checked() {
        assert!(validate_name("a").is_ok());
        assert!(validate_name("Zoë_o-k.9").is_ok());
        assert!(validate_name(&"x".repeat(32)).is_ok());
        assert_eq!(
            validate_name(&"x".repeat(33)),
            Err(ProtocolError::NameTooLong { chars: 33 })
        );
        assert_eq!(validate_name(""), Err(ProtocolError::NameEmpty));
        assert_eq!(
            validate_name("a b"),
            Err(ProtocolError::NameInvalidChar { ch: ' ' })
        );
        assert_eq!(
            validate_name("a\u{1b}"),
            Err(ProtocolError::NameInvalidChar { ch: '\u{1b}' })
        );
        assert_eq!(
            validate_name("Admin").unwrap_err().code(),
            ErrorCode::NameReserved
        );
        assert_eq!(
            validate_name("SERVER").unwrap_err().code(),
            ErrorCode::NameReserved
        );
    }

    #[test]
    fn human_lines() {
        assert_eq!(
            parse_request(Mode::Human, "hello, world").unwrap(),
            Some(Request::Say("hello, world".into()))
        );
        assert_eq!(parse_request(Mode::Human, "   ").unwrap(), None);
        assert_eq!(
            parse_request(Mode::Human, "//etc/passwd").unwrap(),
            Some(Request::Say("/etc/passwd".into()))
        );
        assert_eq!(
            parse_request(Mode::Human, "/WHO").unwrap(),
            Some(Request::Who)
        );
        assert_eq!(
            parse_request(Mode::Human, "/quit gone fishing").unwrap(),
            Some(Request::Quit(Some("gone fishing".into())))
        );
        assert_eq!(
            parse_request(Mode::Human, "/who lobby").unwrap_err(),
            ProtocolError::Usage { usage: "/who" }
        );
        assert_eq!(
            parse_request(Mode::Human, "/frobnicate")
                .unwrap_err()
                .code(),
            ErrorCode::UnknownCommand
        );
    }

    #[test]
    fn json_requests() {
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"say","text":"a,\"b\"\nc"}"#).unwrap(),
            Some(Request::Say("a,\"b\"\nc".into()))
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"command","line":"/who"}"#).unwrap(),
            Some(Request::Who)
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"ping","id":3}"#).unwrap(),
            Some(Request::Ping(Some(3)))
        );
        assert_eq!(
            parse_request(Mode::Json, "[1,2]").unwrap_err().code(),
            ErrorCode::BadJson
        );
        assert_eq!(
            parse_request(Mode::Json, "plain text").unwrap_err().code(),
            ErrorCode::BadJson
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"say","text":1}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadRequest
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"launch"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::BadRequest
        );
    }

    #[test]
    fn dangerous_text_is_refused() {
        for bad in [
            "a\u{1b}[31m",
            "\u{7}",
            "x\u{85}",
            "x\u{202E}cba",
            "\u{2066}",
            "a\rb",
            "\u{7f}",
        ] {
            assert_eq!(
                validate_text(bad).unwrap_err().code(),
                ErrorCode::ControlChar,
                "{bad:?}"
            );
        }
        assert!(validate_text("tab\tand\nnewline ok, ünïcödé ok 😀").is_ok());
        assert_eq!(validate_text(" \t "), Err(ProtocolError::EmptyMessage));
        assert_eq!(
            validate_text("ab\u{1b}"),
            Err(ProtocolError::ControlChar {
                ch: '\u{1b}',
                at: 2
            })
        );
    }

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\u{1b}[0m\u{202E}"), "a\\u{1b}[0m\\u{202e}");
        assert_eq!(printable("plain ü"), "plain ü");
    }

    #[test]
    fn human_encoding_names_the_sender() {
        let out = String::from_utf8(encode(&msg("hello"), Mode::Human)).unwrap();
        assert_eq!(out, "[16:04:05] alice: hello\n");
        let out = String::from_utf8(encode(&msg("one\ntwo"), Mode::Human)).unwrap();
        assert_eq!(out, "[16:04:05] alice: one\n                  two\n");
    }

    #[test]
    fn json_encoding_is_typed() {
        let out = String::from_utf8(encode(&msg("hi"), Mode::Json)).unwrap();
        assert!(out.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["id"], 7);
        assert_eq!(v["ts"], "2026-11-23T16:04:05.123Z");
        assert_eq!(v["from"], "alice");
        assert_eq!(v["room"], "lobby");
        let err = ServerMsg::error(&ProtocolError::LineTooLong { limit: 10 });
        let v: serde_json::Value = serde_json::from_slice(&encode(&err, Mode::Json)).unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "line_too_long");
        let v: serde_json::Value =
            serde_json::from_slice(&encode(&ServerMsg::Pong { id: None }, Mode::Json)).unwrap();
        assert_eq!(v, serde_json::json!({"type":"pong"}));
    }

    #[test]
    fn every_error_has_a_human_line() {
        let err = ServerMsg::error(&ProtocolError::NameTaken { name: "bob".into() });
        assert_eq!(
            String::from_utf8(encode(&err, Mode::Human)).unwrap(),
            "! the name bob is taken by someone connected now\n"
        );
    }
}
