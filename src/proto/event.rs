//! The server's events: messages, notices, replies, roles and error codes.

use serde::{Deserialize, Serialize};

use super::{COMMANDS, ProtocolError};

/// How a connected client logged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
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

/// The `code` field of a JSON `error` event. The set only grows; clients match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
    /// A `/ban` that covers the administrator's own connection, sent without `--yes`.
    ConfirmationNeeded,
    /// A code this version does not know (a newer server's); never sent.
    #[serde(other)]
    Other,
}

/// One chat message as it was logged: every recipient sees the same fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The `id` column of `messages.csv`.
    pub id: u64,
    /// RFC 3339 UTC with milliseconds, exactly as in `messages.csv`.
    pub ts: String,
    /// The room's name; empty for a direct message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub room: String,
    pub from: String,
    /// The recipient of a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `message`, `action` (an emote) or `direct`, as in the `kind` column.
    pub kind: Kind,
    pub text: String,
    /// Sent again from the log on joining or on `/history`, not live.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub history: bool,
}

/// What kind of message a row is: the `kind` column of `messages.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// The most rooms a `rooms` answer lists (the ones with the most members): on a server of
/// ten thousand rooms the whole list would be a megabyte for anyone to ask for.
pub const MAX_ROOMS_LISTED: usize = 100;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// One room in a `rooms` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    pub name: String,
    pub members: usize,
}

/// Everything the server sends, before encoding; clients decode it back (`chat-client`), and
/// skip an event they do not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
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
        #[serde(default, skip_serializing_if = "is_zero")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        away: Option<String>,
    },
    Whois {
        name: String,
        rooms: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
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
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// The server checks that a quiet JSON client is still there; answer with `pong`.
    Ping {
        id: u64,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    /// The last event of a connection: the server closes it right after.
    Bye {
        ts: String,
        reason: String,
    },
}

/// One line of `/help`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
