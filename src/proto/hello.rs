//! The first line of a connection: the greeting, the name, and the mode it chooses.

use std::fmt;

use super::{ProtocolError, Standing};

/// The line a server sends first, before it knows the client's mode. JSON clients skip every
/// line that is not a JSON object until their `welcome`.
pub const GREETING: &str =
    "Welcome to chatroom. What is your name? (1-32 letters, digits, _ - .)\n";

/// The line a human-mode client gets after a refused name.
pub const NAME_PROMPT: &str = "What is your name?\n";

/// The encodings of the event model (the codecs): each client has one, and the server encodes
/// each event at most once per encoding, whoever gets it. A new front door with its own wire
/// format adds a variant here and an arm in [`encode`](super::encode); the hub only uses
/// [`Mode::COUNT`], [`Mode::index`] and [`Mode::own_messages`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Readable lines for `nc` and people.
    Human = 0,
    /// One JSON object per line, for programs.
    Json = 1,
    /// For the IRC transport: channel messages as IRC lines, everything else JSON for the
    /// transport to translate ([`irc`](super::irc)). Never chosen by a hello: the server sets it
    /// for a connection on an IRC port, whose hello is JSON.
    Irc = 2,
    /// [`Mode::Irc`] with each channel message tagged `@time=` (the `server-time` capability).
    IrcTime = 3,
}

impl Mode {
    /// How many encodings there are: the size of tables indexed by [`Mode::index`].
    pub const COUNT: usize = 4;

    /// This encoding's place in a table of [`Mode::COUNT`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The encoding in which a sender gets its own room messages back, if at all: a program
    /// takes the copy as the acknowledgement (with the message's id), a person already sees
    /// what they typed, and the IRC transport reads the acknowledgement as JSON (what it shows
    /// of it depends on its `echo-message`).
    pub fn own_messages(self) -> Option<Mode> {
        match self {
            Mode::Human => None,
            Mode::Json | Mode::Irc | Mode::IrcTime => Some(Mode::Json),
        }
    }

    /// The encoding of an IRC connection, with or without `server-time`.
    pub fn irc(server_time: bool) -> Mode {
        if server_time {
            Mode::IrcTime
        } else {
            Mode::Irc
        }
    }
}

/// The first line of a connection, once parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    pub mode: Mode,
    pub name: String,
    /// The password sent with a JSON `hello` (human mode sends it on the next line).
    pub password: Option<String>,
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print a password, not even in a debug log.
        f.debug_struct("Hello")
            .field("mode", &self.mode)
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Who a connection is once its login is checked: the name it asks for, and the account it
/// proved (if any). It has no password field: the password never leaves the connection's
/// thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub mode: Mode,
    pub name: String,
    /// How the client logged in.
    pub standing: Standing,
    /// The account it logged in to (its name as registered); `None` for a guest. Roles and
    /// the name follow the account, never what was typed.
    pub account: Option<String>,
}

impl Identity {
    /// A guest: the name as asked for, no account.
    pub fn guest(mode: Mode, name: String) -> Identity {
        Identity {
            mode,
            name,
            standing: Standing::Guest,
            account: None,
        }
    }

    /// The holder of `account`, under its registered name.
    pub fn account(mode: Mode, account: String, standing: Standing) -> Identity {
        Identity {
            mode,
            name: account.clone(),
            standing,
            account: Some(account),
        }
    }
}

/// Parses the first line of a connection: a JSON `hello` object, or a bare name.
pub fn parse_hello(line: &str) -> Result<Hello, ProtocolError> {
    let trimmed = line.trim();
    if trimmed.starts_with('{') {
        super::json::parse_hello(trimmed)
    } else {
        validate_name(trimmed)?;
        Ok(Hello {
            mode: Mode::Human,
            name: trimmed.to_string(),
            password: None,
        })
    }
}

/// Checks a name: see [`names::validate`](super::names::validate).
pub fn validate_name(name: &str) -> Result<(), ProtocolError> {
    super::names::validate(name).map_err(ProtocolError::Name)
}
