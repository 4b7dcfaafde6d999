//! Why a line from a client was refused.

use std::fmt;

use super::names::NameError;
use super::text::describe_char;
use super::{ErrorCode, MAX_MESSAGE_LINES};

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
                if super::names::fold(name) == super::names::fold(holder) {
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
