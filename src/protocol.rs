//! The wire format, as pure functions: no sockets, no files, no clocks.
//!
//! One event model ([`ServerMsg`] from the server, [`Hello`] and [`Request`] from a client) has
//! two encodings: *human* lines, readable in `nc`, and *JSON Lines* for programs. The mode is
//! chosen by the client's first line: a JSON object selects JSON, anything else is a name.
//! Everything that decides whether input is acceptable (names, message text, commands) lives
//! here so that the server and its tests agree on one definition.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::names::MAX_NAME_CHARS;
use crate::names::NameError;

/// The room every client is in after the handshake.
pub const LOBBY: &str = "lobby";

/// The line a server sends first, before it knows the client's mode. JSON clients skip every
/// line that is not a JSON object until their `welcome`.
pub const GREETING: &str =
    "Welcome to chatroom. What is your name? (1-32 letters, digits, _ - .)\n";

/// The line a human-mode client gets after a refused name.
pub const NAME_PROMPT: &str = "What is your name?\n";

/// The two encodings of the event model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Readable lines for `nc` and people.
    Human = 0,
    /// One JSON object per line, for programs.
    Json = 1,
}

/// The first line of a connection, once parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    pub mode: Mode,
    pub name: String,
    /// The password sent with a JSON `hello` (human mode sends it on the next line).
    pub password: Option<String>,
    /// How the client logged in; set by the server after checking the password.
    pub standing: Standing,
    /// The account it logged in to (its name as registered); `None` for a guest. Roles and
    /// the name follow the account, never what was typed.
    pub account: Option<String>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a password, not even in a debug log.
        f.debug_struct("Hello")
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .field("standing", &self.standing)
            .field("account", &self.account)
            .finish()
    }
}

/// How a connected client logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standing {
    /// No account (open servers only).
    #[default]
    Guest,
    Member,
    Admin,
}

impl Standing {
    pub fn as_str(self) -> &'static str {
        match self {
            Standing::Guest => "guest",
            Standing::Member => "member",
            Standing::Admin => "admin",
        }
    }
}

/// What a named client asks for, in either mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// A message to the client's current room.
    Say(String),
    /// A message to a named room the client is in (JSON `say` with a `room`).
    SayIn {
        room: String,
        text: String,
    },
    /// An emote (`/me waves`) to the current room.
    Me(String),
    /// A direct message.
    Msg {
        to: String,
        text: String,
    },
    /// A direct message to whoever last sent us one.
    Reply(String),
    /// Join (creating it if new) and make it the current room.
    Join(String),
    /// Leave the named room, or the current one.
    Leave(Option<String>),
    /// The rooms and how many are in each.
    Rooms,
    /// The members of the named room, or of the current one.
    Who(Option<String>),
    /// Make a room the client is in the current one.
    Switch(String),
    /// Change name.
    Nick(String),
    /// Mark as away, with an optional reason; `Back` clears it.
    Away(Option<String>),
    Back,
    /// What is known of someone connected.
    Whois(String),
    /// The last N messages of the current room again.
    History(Option<usize>),
    /// Moderation (administrators only).
    Kick {
        name: String,
        reason: String,
    },
    Ban {
        target: String,
        duration: Option<std::time::Duration>,
        reason: String,
    },
    Unban(String),
    Bans,
    Mute {
        name: String,
        duration: Option<std::time::Duration>,
    },
    Unmute(String),
    Op(String),
    Deop(String),
    /// List the commands.
    Help,
    /// Answer with a `pong`, so a client can measure the round trip or keep the line warm.
    Ping(Option<u64>),
    /// The answer to the server's `ping`; any line shows the client is alive.
    Pong,
    /// Human mode: the following lines, up to one holding only `.`, are one message.
    Paste,
    /// Leave, with an optional reason shown to the others.
    Quit(Option<String>),
}

/// Why a line from a client was refused. Every variant reaches the client as an `error` event
/// with [`ProtocolError::code`] and the `Display` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// A name that may not be used (its characters, its length, a reserved name).
    Name(NameError),
    /// Someone connected holds the name, or one that looks like it (`holder`).
    NameTaken {
        name: String,
        holder: String,
    },
    RoomInvalid {
        detail: String,
    },
    LineTooLong {
        limit: usize,
    },
    InvalidUtf8 {
        at: usize,
    },
    ControlChar {
        ch: char,
        at: usize,
    },
    EmptyMessage,
    TooManyLines {
        lines: usize,
    },
    BadJson {
        detail: String,
    },
    BadRequest {
        detail: String,
    },
    UnknownCommand {
        command: String,
    },
    Usage {
        usage: &'static str,
    },
}

impl ProtocolError {
    /// The stable, machine-readable code of this error (the JSON `code` field).
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::Name(NameError::Reserved { .. }) => ErrorCode::NameReserved,
            ProtocolError::Name(_) => ErrorCode::NameInvalid,
            ProtocolError::NameTaken { .. } => ErrorCode::NameTaken,
            ProtocolError::RoomInvalid { .. } => ErrorCode::RoomInvalid,
            ProtocolError::LineTooLong { .. } => ErrorCode::LineTooLong,
            ProtocolError::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            ProtocolError::ControlChar { .. } => ErrorCode::ControlChar,
            ProtocolError::EmptyMessage => ErrorCode::EmptyMessage,
            ProtocolError::TooManyLines { .. } => ErrorCode::TooManyLines,
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
            ProtocolError::Name(e) => write!(f, "{e}"),
            ProtocolError::NameTaken { name, holder } => {
                if crate::names::fold(name) == crate::names::fold(holder) {
                    write!(f, "the name {name} is taken by someone connected now")
                } else {
                    write!(
                        f,
                        "the name {name} looks like {holder}, who is connected now"
                    )
                }
            }
            ProtocolError::RoomInvalid { detail } => write!(f, "bad room name: {detail}"),
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
            ProtocolError::TooManyLines { lines } => write!(
                f,
                "a message has at most {MAX_MESSAGE_LINES} lines; that one has {lines}; it was not sent"
            ),
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
    TooManyConnections,
    ConnectionRate,
    RoomInvalid,
    NoSuchRoom,
    NotInRoom,
    NoRoom,
    NoSuchUser,
    NoReplyTarget,
    TooManyLines,
    RateLimited,
    PasswordRequired,
    LoginFailed,
    LoginLocked,
    LoginBusy,
    TooManyRooms,
    NotAllowed,
    Banned,
    Muted,
    NoSuchAccount,
}

/// One chat message as it was logged: every recipient sees the same fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// The `id` column of `messages.csv`.
    pub id: u64,
    /// RFC 3339 UTC with milliseconds, exactly as in `messages.csv`.
    pub ts: String,
    /// The room's name; empty for a direct message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub room: String,
    pub from: String,
    /// The recipient of a direct message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `message`, `action` (an emote) or `direct`, as in the `kind` column.
    pub kind: Kind,
    pub text: String,
    /// Sent again from the log on joining or on `/history`, not live.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// What kind of message a row is: the `kind` column of `messages.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Message,
    Action,
    Direct,
}

impl Kind {
    /// The `kind` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Message => "message",
            Kind::Action => "action",
            Kind::Direct => "direct",
        }
    }

    /// The kind named by a `kind` column, if it is one we know.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "message" => Some(Kind::Message),
            "action" => Some(Kind::Action),
            "direct" => Some(Kind::Direct),
            _ => None,
        }
    }
}

/// The commands `/help` lists, with their one-line descriptions.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "/join ROOM",
        "join a room (created if new) and make it your current room",
    ),
    ("/leave [ROOM]", "leave a room (default: the current one)"),
    (
        "/switch ROOM",
        "send your plain lines to another room you are in",
    ),
    ("/rooms", "list the rooms and how many are in each"),
    ("/who [ROOM]", "list the people in a room, with away status"),
    ("/msg NAME TEXT", "send a direct message only NAME sees"),
    (
        "/reply TEXT",
        "answer the last person who sent you a direct message",
    ),
    ("/me ACTION", "an emote: /me waves shows as * you waves"),
    ("/nick NAME", "change your name"),
    ("/away [REASON]", "mark yourself away"),
    ("/back", "clear away"),
    (
        "/whois NAME",
        "rooms, away status and connection time of someone",
    ),
    (
        "/history [N]",
        "the last N messages of the current room again",
    ),
    ("/kick NAME [REASON]", "admins: disconnect someone"),
    (
        "/ban NAME|IP|CIDR [DURATION] [REASON]",
        "admins: ban (10m, 2h, 7d; none = for good)",
    ),
    ("/unban TARGET", "admins: lift a ban"),
    ("/bans", "admins: list the bans"),
    ("/mute NAME [DURATION]", "admins: stop someone's messages"),
    ("/unmute NAME", "admins: let them speak again"),
    ("/op NAME", "admins: make an account an administrator"),
    ("/deop NAME", "admins: make an administrator a member"),
    ("/help", "show this list"),
    ("/quit [REASON]", "leave the chat"),
    ("//TEXT", "send a message that starts with '/'"),
];

/// The most rooms a `rooms` answer lists (the ones with the most members): on a server of
/// ten thousand rooms the whole list would be a megabyte for anyone to ask for.
pub const MAX_ROOMS_LISTED: usize = 100;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One room in a `rooms` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: usize,
}

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
        /// `guest`, `member` or `admin`.
        role: Standing,
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
        /// Away reasons of the members who are away, by name.
        #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        away: std::collections::BTreeMap<String, String>,
    },
    /// The end of the history sent on joining or for `/history`.
    HistoryEnd {
        room: String,
        count: usize,
    },
    Rooms {
        rooms: Vec<RoomInfo>,
        /// Rooms in use but not listed: only the [`MAX_ROOMS_LISTED`] with the most members are.
        #[serde(skip_serializing_if = "is_zero")]
        more: usize,
    },
    /// Plain lines now go to this room.
    Switched {
        room: String,
    },
    Nick {
        ts: String,
        old: String,
        new: String,
    },
    /// Someone went away (`away` set) or came back (`away` absent).
    Presence {
        ts: String,
        name: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        away: Option<String>,
    },
    Whois {
        name: String,
        rooms: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        away: Option<String>,
        /// When the connection was made.
        connected: String,
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
        /// For `rate_limited`: when the next message will be accepted.
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The server checks that a quiet JSON client is still there; answer with `pong`.
    Ping {
        id: u64,
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
        ServerMsg::failure(err.code(), err.to_string())
    }

    /// An error event with no retry hint.
    pub fn failure(code: ErrorCode, message: String) -> ServerMsg {
        ServerMsg::Error {
            code,
            message,
            retry_after_ms: None,
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
    let line = encode_human_line(msg);
    if matches!(msg, ServerMsg::Message(_) | ServerMsg::Help { .. }) {
        return line;
    }
    // Every other event is one line. A field that holds a line break anyway (a reason from
    // an older log, a hand-edited file) has its continuation indented, so no text from a
    // client can ever start a line of its own and pass for the server's or someone else's.
    let body = line.strip_suffix('\n').unwrap_or(&line);
    if body.contains('\n') {
        format!("{}\n", body.replace('\n', "\n    "))
    } else {
        line
    }
}

fn encode_human_line(msg: &ServerMsg) -> String {
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
            // History shows the date too: it may be from another day.
            let when = if m.history {
                m.ts.get(..19).unwrap_or(&m.ts).replacen('T', " ", 1)
            } else {
                clock(&m.ts).to_string()
            };
            let prefix = match (m.kind, &m.to) {
                (Kind::Direct, Some(to)) => format!("[{when}] {} -> {to}: ", m.from),
                (Kind::Action, _) => format!("[{when}] #{} * {} ", m.room, m.from),
                _ => format!("[{when}] #{} {}: ", m.room, m.from),
            };
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
            format!("[{}] * {name} joined #{room}\n", clock(ts))
        }
        ServerMsg::Left {
            ts,
            room,
            name,
            reason,
        } => format!("[{}] * {name} left #{room} ({reason})\n", clock(ts)),
        ServerMsg::Users { room, users, away } => {
            let listed: Vec<String> = users
                .iter()
                .map(|u| match away.get(u) {
                    Some(r) if r.is_empty() => format!("{u} (away)"),
                    Some(r) => format!("{u} (away: {})", quoted(r)),
                    None => u.clone(),
                })
                .collect();
            format!("* {} in #{room}: {}\n", users.len(), listed.join(", "))
        }
        ServerMsg::HistoryEnd { room, count } => {
            format!("* end of history of #{room} ({count} messages)\n")
        }
        ServerMsg::Rooms { rooms, more } => {
            let listed: Vec<String> = rooms
                .iter()
                .map(|r| format!("#{} ({})", r.name, r.members))
                .collect();
            let total = rooms.len() + more;
            let rest = match more {
                0 => String::new(),
                n => format!(", and {n} smaller ones"),
            };
            format!("* {total} rooms: {}{rest}\n", listed.join(", "))
        }
        ServerMsg::Switched { room } => format!("* your messages now go to #{room}\n"),
        ServerMsg::Nick { ts, old, new } => {
            format!("[{}] * {old} is now known as {new}\n", clock(ts))
        }
        ServerMsg::Presence { ts, name, away } => match away {
            Some(r) if r.is_empty() => format!("[{}] * {name} is away\n", clock(ts)),
            Some(r) => format!("[{}] * {name} is away: {r}\n", clock(ts)),
            None => format!("[{}] * {name} is back\n", clock(ts)),
        },
        ServerMsg::Whois {
            name,
            rooms,
            away,
            connected,
        } => {
            let rooms: Vec<String> = rooms.iter().map(|r| format!("#{r}")).collect();
            let away = match away {
                Some(r) if r.is_empty() => "; away".to_string(),
                Some(r) => format!("; away: {}", quoted(r)),
                None => String::new(),
            };
            format!(
                "* {name}: in {}; connected since {connected}{away}\n",
                if rooms.is_empty() {
                    "no room".to_string()
                } else {
                    rooms.join(", ")
                }
            )
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
        ServerMsg::Ping { .. } => "* ping: are you there?\n".to_string(),
        ServerMsg::Bye { ts, reason } => format!("[{}] * disconnected: {reason}\n", clock(ts)),
    }
}

/// A reason inside a list, in quotes (and its own quotes escaped), so that none can pass for
/// more of the list: `bob (away: "brb), alice, ceo (away: x")` is one member, not three.
fn quoted(reason: &str) -> String {
    format!("\"{}\"", reason.replace('\\', "\\\\").replace('"', "\\\""))
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
            password: req.password,
            standing: Standing::Guest,
            account: None,
        })
    } else {
        validate_name(trimmed)?;
        Ok(Hello {
            mode: Mode::Human,
            name: trimmed.to_string(),
            password: None,
            standing: Standing::Guest,
            account: None,
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
    // Splits "NAME REST" for commands that take a word and then text.
    let word_and_text = |usage: &'static str| -> Result<(String, String), ProtocolError> {
        let (word, text) = args
            .split_once(char::is_whitespace)
            .ok_or(ProtocolError::Usage { usage })?;
        let text = text.trim_start();
        validate_text(text)?;
        Ok((word.to_string(), text.to_string()))
    };
    let one_word = |usage: &'static str| -> Result<String, ProtocolError> {
        if args.is_empty() || args.contains(char::is_whitespace) {
            Err(ProtocolError::Usage { usage })
        } else {
            Ok(args.to_string())
        }
    };
    let optional_word = |usage: &'static str| -> Result<Option<String>, ProtocolError> {
        if args.is_empty() {
            Ok(None)
        } else {
            one_word(usage).map(Some)
        }
    };
    let text = |usage: &'static str| -> Result<String, ProtocolError> {
        if args.is_empty() {
            return Err(ProtocolError::Usage { usage });
        }
        validate_text(args)?;
        Ok(args.to_string())
    };
    let optional_reason = || -> Result<Option<String>, ProtocolError> {
        if args.is_empty() {
            Ok(None)
        } else {
            validate_reason(args)?;
            Ok(Some(args.to_string()))
        }
    };
    match cmd.to_ascii_lowercase().as_str() {
        "/join" | "/j" => {
            let room = one_word("/join ROOM")?;
            validate_room(&room)?;
            Ok(Request::Join(room))
        }
        "/leave" | "/part" => {
            let room = optional_word("/leave [ROOM]")?;
            if let Some(r) = &room {
                validate_room(r)?;
            }
            Ok(Request::Leave(room))
        }
        "/switch" | "/go" => {
            let room = one_word("/switch ROOM")?;
            validate_room(&room)?;
            Ok(Request::Switch(room))
        }
        "/rooms" | "/list" => no_args(Request::Rooms, "/rooms"),
        "/who" | "/users" | "/names" => {
            let room = optional_word("/who [ROOM]")?;
            if let Some(r) = &room {
                validate_room(r)?;
            }
            Ok(Request::Who(room))
        }
        "/msg" | "/tell" | "/dm" => {
            let (to, text) = word_and_text("/msg NAME TEXT")?;
            Ok(Request::Msg { to, text })
        }
        "/reply" | "/r" => text("/reply TEXT").map(Request::Reply),
        "/me" => text("/me ACTION").map(Request::Me),
        "/nick" => {
            let name = one_word("/nick NAME")?;
            validate_name(&name)?;
            Ok(Request::Nick(name))
        }
        "/away" => optional_reason().map(Request::Away),
        "/back" => no_args(Request::Back, "/back"),
        "/whois" => one_word("/whois NAME").map(Request::Whois),
        "/history" => {
            if args.is_empty() {
                Ok(Request::History(None))
            } else {
                args.parse::<usize>()
                    .map(|n| Request::History(Some(n)))
                    .map_err(|_| ProtocolError::Usage {
                        usage: "/history [N]",
                    })
            }
        }
        "/help" | "/?" => Ok(Request::Help),
        "/quit" | "/exit" | "/bye" => optional_reason().map(Request::Quit),
        "/ping" => Ok(Request::Ping(None)),
        "/paste" => no_args(Request::Paste, "/paste"),
        "/kick" => {
            let (name, reason) = match args.split_once(char::is_whitespace) {
                Some((n, r)) => (n, r.trim()),
                None if !args.is_empty() => (args, ""),
                None => {
                    return Err(ProtocolError::Usage {
                        usage: "/kick NAME [REASON]",
                    });
                }
            };
            if !reason.is_empty() {
                validate_reason(reason)?;
            }
            Ok(Request::Kick {
                name: name.to_string(),
                reason: reason.to_string(),
            })
        }
        "/ban" => {
            let usage = "/ban NAME|IP|CIDR [DURATION] [REASON]";
            let mut words = args.splitn(2, char::is_whitespace);
            let target = words
                .next()
                .filter(|t| !t.is_empty())
                .ok_or(ProtocolError::Usage { usage })?;
            let rest = words.next().unwrap_or("").trim();
            let (duration, reason) = match rest.split_once(char::is_whitespace) {
                Some((first, more)) => match crate::bans::parse_duration(first) {
                    Some(d) => (Some(d), more.trim()),
                    None => (None, rest),
                },
                None => match crate::bans::parse_duration(rest) {
                    Some(d) => (Some(d), ""),
                    None => (None, rest),
                },
            };
            if !reason.is_empty() {
                validate_reason(reason)?;
            }
            Ok(Request::Ban {
                target: target.to_string(),
                duration,
                reason: reason.to_string(),
            })
        }
        "/unban" => one_word("/unban TARGET").map(Request::Unban),
        "/bans" => no_args(Request::Bans, "/bans"),
        "/mute" => {
            let usage = "/mute NAME [DURATION]";
            match args.split_whitespace().collect::<Vec<_>>()[..] {
                [name] => Ok(Request::Mute {
                    name: name.into(),
                    duration: None,
                }),
                [name, d] => crate::bans::parse_duration(d)
                    .map(|d| Request::Mute {
                        name: name.into(),
                        duration: Some(d),
                    })
                    .ok_or(ProtocolError::Usage { usage }),
                _ => Err(ProtocolError::Usage { usage }),
            }
        }
        "/unmute" => one_word("/unmute NAME").map(Request::Unmute),
        "/op" => one_word("/op NAME").map(Request::Op),
        "/deop" => one_word("/deop NAME").map(Request::Deop),
        _ => Err(ProtocolError::UnknownCommand {
            command: printable(cmd),
        }),
    }
}

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
    if let Some(ch) = crate::names::invalid_char(bare) {
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

#[derive(Deserialize)]
struct JsonHello {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    #[serde(default)]
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum JsonRequest {
    Say {
        text: String,
        #[serde(default)]
        room: Option<String>,
    },
    Me {
        text: String,
    },
    Msg {
        to: String,
        text: String,
    },
    Reply {
        text: String,
    },
    Join {
        room: String,
    },
    Leave {
        #[serde(default)]
        room: Option<String>,
    },
    Rooms,
    Who {
        #[serde(default)]
        room: Option<String>,
    },
    Switch {
        room: String,
    },
    Nick {
        name: String,
    },
    Away {
        #[serde(default)]
        reason: Option<String>,
    },
    Back,
    Whois {
        name: String,
    },
    History {
        #[serde(default)]
        n: Option<usize>,
    },
    Command {
        line: String,
    },
    Help,
    Ping {
        #[serde(default)]
        id: Option<u64>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        id: Option<u64>,
    },
    Quit {
        #[serde(default)]
        reason: Option<String>,
    },
}

fn parse_json(line: &str) -> Result<Request, ProtocolError> {
    let req: JsonRequest = from_json(line)?;
    let checked = |text: String| validate_text(&text).map(|()| text);
    let checked_room = |room: String| validate_room(&room).map(|()| room);
    let reason = |text: Option<String>| text.map(|t| validate_reason(&t).map(|()| t)).transpose();
    Ok(match req {
        JsonRequest::Say { text, room: None } => Request::Say(checked(text)?),
        JsonRequest::Say {
            text,
            room: Some(room),
        } => Request::SayIn {
            room: checked_room(room)?,
            text: checked(text)?,
        },
        JsonRequest::Me { text } => Request::Me(checked(text)?),
        JsonRequest::Msg { to, text } => Request::Msg {
            to,
            text: checked(text)?,
        },
        JsonRequest::Reply { text } => Request::Reply(checked(text)?),
        JsonRequest::Join { room } => Request::Join(checked_room(room)?),
        JsonRequest::Leave { room } => Request::Leave(room.map(checked_room).transpose()?),
        JsonRequest::Rooms => Request::Rooms,
        JsonRequest::Who { room } => Request::Who(room.map(checked_room).transpose()?),
        JsonRequest::Switch { room } => Request::Switch(checked_room(room)?),
        JsonRequest::Nick { name } => {
            validate_name(&name)?;
            Request::Nick(name)
        }
        JsonRequest::Away { reason: r } => Request::Away(reason(r)?),
        JsonRequest::Back => Request::Back,
        JsonRequest::Whois { name } => Request::Whois(name),
        JsonRequest::History { n } => Request::History(n),
        JsonRequest::Command { line } => {
            if !line.starts_with('/') {
                return Err(ProtocolError::BadRequest {
                    detail: "a command line starts with '/'".to_string(),
                });
            }
            match parse_command(&line)? {
                Request::Paste => {
                    return Err(ProtocolError::BadRequest {
                        detail: "/paste is for human mode; in JSON, a say's text may hold newlines"
                            .into(),
                    });
                }
                req => req,
            }
        }
        JsonRequest::Help => Request::Help,
        JsonRequest::Ping { id } => Request::Ping(id),
        JsonRequest::Pong { .. } => Request::Pong,
        JsonRequest::Quit { reason: r } => Request::Quit(reason(r)?),
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

/// Checks a name: see [`crate::names::validate`].
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    crate::names::validate(name).map_err(ProtocolError::Name)
}

/// The form under which names are the same name: see [`crate::names::key`].
pub fn name_key(name: &str) -> String {
    crate::names::key(name)
}

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
    for c in text.chars() {
        if is_dangerous(c) || is_tag(c) || is_hidden(c) {
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

    fn chat(text: &str) -> ChatMessage {
        ChatMessage {
            id: 7,
            ts: "2026-11-23T16:04:05.123Z".to_string(),
            room: "lobby".to_string(),
            from: "alice".to_string(),
            to: None,
            kind: Kind::Message,
            text: text.to_string(),
            history: false,
        }
    }

    fn msg(text: &str) -> ServerMsg {
        ServerMsg::Message(chat(text))
    }

    #[test]
    fn hello_bare_name_is_human() {
        let h = parse_hello("alice\r").unwrap();
        assert_eq!((h.mode, h.name.as_str()), (Mode::Human, "alice"));
    }

    #[test]
    fn hello_json_object_is_json() {
        let h = parse_hello(r#"{"type":"hello","name":"Bob.2"}"#).unwrap();
        assert_eq!(h.mode, Mode::Json);
        assert_eq!(h.name, "Bob.2");
        let h = parse_hello(r#"{"type":"hello","name":"bob","password":"s3cret"}"#).unwrap();
        assert_eq!(h.password.as_deref(), Some("s3cret"));
        assert!(
            !format!("{h:?}").contains("s3cret"),
            "passwords never reach a log"
        );
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
            Err(ProtocolError::Name(NameError::TooLong { chars: 33 }))
        );
        assert_eq!(
            validate_name(""),
            Err(ProtocolError::Name(NameError::Empty))
        );
        assert_eq!(
            validate_name("a b"),
            Err(ProtocolError::Name(NameError::InvalidChar { ch: ' ' }))
        );
        assert_eq!(
            validate_name("a\u{1b}"),
            Err(ProtocolError::Name(NameError::InvalidChar { ch: '\u{1b}' }))
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
            Some(Request::Who(None))
        );
        assert_eq!(
            parse_request(Mode::Human, "/quit gone fishing").unwrap(),
            Some(Request::Quit(Some("gone fishing".into())))
        );
        assert_eq!(
            parse_request(Mode::Human, "/who two rooms").unwrap_err(),
            ProtocolError::Usage {
                usage: "/who [ROOM]"
            }
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
            Some(Request::Who(None))
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"who"}"#).unwrap(),
            Some(Request::Who(None))
        );
        assert_eq!(
            parse_request(Mode::Json, r##"{"type":"say","text":"hi","room":"#Ops"}"##).unwrap(),
            Some(Request::SayIn {
                room: "#Ops".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"msg","to":"bob","text":"psst"}"#).unwrap(),
            Some(Request::Msg {
                to: "bob".into(),
                text: "psst".into()
            })
        );
        assert_eq!(
            parse_request(Mode::Json, r#"{"type":"join","room":"bad room"}"#)
                .unwrap_err()
                .code(),
            ErrorCode::RoomInvalid
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
    fn room_commands_and_names() {
        let cmd = |l: &str| parse_command(l);
        assert_eq!(cmd("/join #Ops"), Ok(Request::Join("#Ops".into())));
        assert_eq!(cmd("/leave"), Ok(Request::Leave(None)));
        assert_eq!(cmd("/part ops"), Ok(Request::Leave(Some("ops".into()))));
        assert_eq!(cmd("/switch dev"), Ok(Request::Switch("dev".into())));
        assert_eq!(cmd("/rooms"), Ok(Request::Rooms));
        assert_eq!(
            cmd("/msg bob  hi there, bob"),
            Ok(Request::Msg {
                to: "bob".into(),
                text: "hi there, bob".into()
            })
        );
        assert_eq!(cmd("/reply ok"), Ok(Request::Reply("ok".into())));
        assert_eq!(cmd("/me waves"), Ok(Request::Me("waves".into())));
        assert_eq!(cmd("/nick ally"), Ok(Request::Nick("ally".into())));
        assert_eq!(cmd("/away lunch"), Ok(Request::Away(Some("lunch".into()))));
        assert_eq!(cmd("/back"), Ok(Request::Back));
        assert_eq!(cmd("/whois bob"), Ok(Request::Whois("bob".into())));
        assert_eq!(cmd("/history 10"), Ok(Request::History(Some(10))));
        for (line, usage) in [
            ("/join", "/join ROOM"),
            ("/join a b", "/join ROOM"),
            ("/msg bob", "/msg NAME TEXT"),
            ("/me", "/me ACTION"),
            ("/history ten", "/history [N]"),
            ("/switch", "/switch ROOM"),
        ] {
            assert_eq!(cmd(line), Err(ProtocolError::Usage { usage }), "{line}");
        }
        assert_eq!(
            cmd("/nick admin").unwrap_err().code(),
            ErrorCode::NameReserved
        );
        assert_eq!(cmd("/join #").unwrap_err().code(), ErrorCode::RoomInvalid);
        assert_eq!(cmd("/join a/b").unwrap_err().code(), ErrorCode::RoomInvalid);
        assert!(validate_room(&format!("#{}", "r".repeat(64))).is_ok());
        assert!(validate_room(&"r".repeat(65)).is_err());
        assert_eq!(room_key("#Ops"), "ops");
        assert_eq!(room_display("#Ops"), "Ops");
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
        assert_eq!(out, "[16:04:05] #lobby alice: hello\n");
        let out = String::from_utf8(encode(&msg("one\ntwo"), Mode::Human)).unwrap();
        assert_eq!(
            out,
            "[16:04:05] #lobby alice: one\n                         two\n"
        );
        let action = ServerMsg::Message(ChatMessage {
            kind: Kind::Action,
            ..chat("waves")
        });
        assert_eq!(
            String::from_utf8(encode(&action, Mode::Human)).unwrap(),
            "[16:04:05] #lobby * alice waves\n"
        );
        let dm = ServerMsg::Message(ChatMessage {
            kind: Kind::Direct,
            room: String::new(),
            to: Some("bob".into()),
            ..chat("psst")
        });
        assert_eq!(
            String::from_utf8(encode(&dm, Mode::Human)).unwrap(),
            "[16:04:05] alice -> bob: psst\n"
        );
        let old = ServerMsg::Message(ChatMessage {
            history: true,
            ..chat("earlier")
        });
        assert_eq!(
            String::from_utf8(encode(&old, Mode::Human)).unwrap(),
            "[2026-11-23 16:04:05] #lobby alice: earlier\n"
        );
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
        assert_eq!(v["kind"], "message");
        assert!(v.get("history").is_none() && v.get("to").is_none(), "{v}");
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
        let err = ServerMsg::error(&ProtocolError::NameTaken {
            name: "bob".into(),
            holder: "Bob".into(),
        });
        assert_eq!(
            String::from_utf8(encode(&err, Mode::Human)).unwrap(),
            "! the name bob is taken by someone connected now\n"
        );
    }
    #[test]
    fn hidden_and_direction_characters_are_refused() {
        for (text, ch) in [
            ("a\u{200F}b", '\u{200F}'),
            ("a\u{200E}b", '\u{200E}'),
            ("a\u{061C}b", '\u{061C}'),
            ("a\u{2028}b", '\u{2028}'),
            ("a\u{2029}b", '\u{2029}'),
            ("hi\u{E0041}\u{E0042}", '\u{E0041}'),
            // A tag sequence that is not a flag's.
            ("\u{1F3F4}\u{E0041}\u{E007F}", '\u{E0041}'),
            ("x\u{E007F}", '\u{E007F}'),
            ("a\u{200B}b", '\u{200B}'),
            ("a\u{2060}b", '\u{2060}'),
            ("a\u{FEFF}b", '\u{FEFF}'),
            ("a\u{3164}b", '\u{3164}'),
            ("a\u{00AD}b", '\u{00AD}'),
            ("a\u{206A}b", '\u{206A}'),
            ("a\u{FFF9}b", '\u{FFF9}'),
            ("a\u{180E}b", '\u{180E}'),
            ("hi\u{E0100}\u{E0101}", '\u{E0101}'),
            ("\u{FE0F}start", '\u{FE0F}'),
        ] {
            assert!(
                matches!(validate_text(text), Err(ProtocolError::ControlChar { ch: c, .. }) if c == ch),
                "{text:?}: {:?}",
                validate_text(text)
            );
        }
        // The flag of England is a tag sequence, and welcome.
        let england = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F}";
        assert_eq!(validate_text(&format!("go {england}!")), Ok(()));
        // A red heart is a heart and a variation selector; a family is joined with ZWJ.
        assert_eq!(
            validate_text("\u{2764}\u{FE0F} \u{1F468}\u{200D}\u{1F469}"),
            Ok(())
        );
        assert_eq!(validate_text("می\u{200C}خواهم"), Ok(()), "a Persian ZWNJ");
        assert!(!printable("a\u{E0041}").contains('\u{E0041}'));
    }

    #[test]
    fn reasons_are_one_short_line() {
        assert_eq!(validate_reason("lunch"), Ok(()));
        assert!(validate_reason("a\nb").is_err());
        assert!(validate_reason(&"x".repeat(MAX_REASON_CHARS + 1)).is_err());
        assert!(parse_command("/away back\nsoon").is_err());
        let away = r#"{"type":"away","reason":"x\n[12:00:00] #lobby boss: hi"}"#;
        assert!(parse_request(Mode::Json, away).is_err());
        let quit = r#"{"type":"quit","reason":"bye\nforged"}"#;
        assert!(parse_request(Mode::Json, quit).is_err());
        assert!(parse_command("/kick bob spam\nforged").is_err());
    }

    #[test]
    fn json_clients_cannot_paste() {
        let paste = r#"{"type":"command","line":"/paste"}"#;
        assert_eq!(
            parse_request(Mode::Json, paste).unwrap_err().code(),
            ErrorCode::BadRequest
        );
    }

    /// However a field came to hold a line break, a human-mode reader sees it indented under
    /// the line it belongs to, never as a line of its own.
    #[test]
    fn no_field_starts_a_line_of_its_own() {
        let forged = "x\n[12:00:00] #lobby boss: send me your password";
        let events = [
            ServerMsg::Presence {
                ts: "2026-11-23T12:00:00.000Z".into(),
                name: "eve".into(),
                away: Some(forged.into()),
            },
            ServerMsg::Bye {
                ts: "2026-11-23T12:00:00.000Z".into(),
                reason: forged.into(),
            },
            ServerMsg::Whois {
                name: "eve".into(),
                rooms: vec!["lobby".into()],
                away: Some(forged.into()),
                connected: "2026-11-23T12:00:00.000Z".into(),
            },
            ServerMsg::System {
                ts: "2026-11-23T12:00:00.000Z".into(),
                text: forged.into(),
            },
            msg(forged),
        ];
        for event in events {
            let text = String::from_utf8(encode(&event, Mode::Human)).unwrap();
            for line in text.lines().skip(1) {
                assert!(line.starts_with(' '), "{text:?}");
            }
        }
    }
}

/// Property tests: the parsers never panic, whatever arrives, and what they accept is safe.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsing_any_text_never_panics(line in "\\PC*") {
            let _ = parse_hello(&line);
            let _ = parse_request(Mode::Human, &line);
            let _ = parse_request(Mode::Json, &line);
            let _ = parse_command(&line);
        }

        #[test]
        fn parsing_json_shaped_input_never_panics(
            kind in "(say|me|msg|reply|join|leave|rooms|who|switch|nick|away|back|whois|history|command|help|ping|pong|quit|hello|x)",
            key in "(text|room|to|name|n|id|line|reason|type|zzz)",
            value in prop_oneof![
                Just("null".to_string()),
                Just("[]".to_string()),
                Just("{}".to_string()),
                any::<i64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|f| f.to_string()),
                "\\PC{0,40}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            ],
        ) {
            let line = format!(r#"{{"type":"{kind}","{key}":{value}}}"#);
            let _ = parse_hello(&line);
            let _ = parse_request(Mode::Json, &line);
        }

        /// Whatever a request carries once accepted is text that cannot drive a terminal.
        #[test]
        fn accepted_text_is_safe(text in any::<String>()) {
            let json = serde_json::json!({"type": "say", "text": text}).to_string();
            if let Ok(Some(Request::Say(t))) = parse_request(Mode::Json, &json) {
                prop_assert!(t.chars().all(|c| c == '\n' || c == '\t' || !is_dangerous(c)));
                prop_assert!(!t.trim().is_empty());
                // And it encodes in both modes without panicking.
                let msg = ServerMsg::Message(ChatMessage {
                    id: 1,
                    ts: "2026-11-23T16:04:05.123Z".into(),
                    room: "lobby".into(),
                    from: "a".into(),
                    to: None,
                    kind: Kind::Message,
                    text: t,
                    history: false,
                });
                let human = encode(&msg, Mode::Human);
                prop_assert!(!human.contains(&0x1b));
                encode(&msg, Mode::Json);
            }
        }

        #[test]
        fn printable_output_is_always_safe(text in any::<String>()) {
            prop_assert!(!printable(&text).chars().any(is_dangerous));
        }
    }
}
