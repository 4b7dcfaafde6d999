//! The rows of `messages.csv` and `data.csv`, typed: their columns by name, the kind of a
//! message, the event of a connection row, and why a connection ended.
//!
//! The column names and the strings written are the public interface (see the README): the
//! enums here only name them, so the files read and write exactly as before.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::proto::Kind;

/// The header of `messages.csv`.
pub const MESSAGES_HEADER: &str = "id,timestamp,room,sender,recipient,kind,text";
/// The header of `data.csv`.
pub const CONNECTIONS_HEADER: &str = "timestamp,event,conn,ip,port,thread,name,detail";
/// The file name of the message log inside the data directory.
pub const MESSAGES_FILE: &str = "messages.csv";
/// The file name of the connection log inside the data directory.
pub const CONNECTIONS_FILE: &str = "data.csv";

/// The columns of `messages.csv`, by position, for reading raw records.
pub mod message_column {
    pub const ID: usize = 0;
    pub const TIMESTAMP: usize = 1;
    pub const ROOM: usize = 2;
    pub const SENDER: usize = 3;
    pub const RECIPIENT: usize = 4;
    pub const KIND: usize = 5;
    pub const TEXT: usize = 6;
    /// How many columns a row has.
    pub const COUNT: usize = 7;
}

/// The columns of `data.csv`, by position, for reading raw records.
pub mod connection_column {
    pub const TIMESTAMP: usize = 0;
    pub const EVENT: usize = 1;
    pub const CONN: usize = 2;
    /// How many columns a row has.
    pub const COUNT: usize = 8;
}

/// One row of `messages.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub id: u64,
    pub timestamp: String,
    pub room: String,
    pub sender: String,
    pub recipient: String,
    pub kind: Kind,
    pub text: String,
}

/// One row of `data.csv`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnRecord {
    pub timestamp: String,
    pub event: ConnEvent,
    /// Empty for server-wide events (`start`, `stop`).
    pub conn: Option<u64>,
    pub ip: String,
    pub port: Option<u16>,
    pub thread: String,
    pub name: String,
    pub detail: String,
}

/// What a `data.csv` row records: the `event` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnEvent {
    /// The server started (`detail`: version and address).
    Start,
    /// The server stopped.
    Stop,
    /// A connection was accepted.
    Connect,
    /// A connection took a name (`detail`: guest, member or admin).
    Named,
    /// A guest changed its name (`detail`: `old -> new`).
    Nick,
    /// A login failed (`name`: the name tried).
    LoginFailed,
    /// A connection ended (`detail`: a [`Disconnect`]).
    Disconnect,
    Kick,
    Ban,
    Unban,
    Mute,
    Unmute,
    Op,
    Deop,
    /// An event this version does not know (a newer server's, or a hand edit): kept as is.
    Other(String),
}

impl ConnEvent {
    const NAMED: [(ConnEvent, &'static str); 14] = [
        (ConnEvent::Start, "start"),
        (ConnEvent::Stop, "stop"),
        (ConnEvent::Connect, "connect"),
        (ConnEvent::Named, "named"),
        (ConnEvent::Nick, "nick"),
        (ConnEvent::LoginFailed, "login_failed"),
        (ConnEvent::Disconnect, "disconnect"),
        (ConnEvent::Kick, "kick"),
        (ConnEvent::Ban, "ban"),
        (ConnEvent::Unban, "unban"),
        (ConnEvent::Mute, "mute"),
        (ConnEvent::Unmute, "unmute"),
        (ConnEvent::Op, "op"),
        (ConnEvent::Deop, "deop"),
    ];

    /// The `event` column's value.
    pub fn as_str(&self) -> &str {
        if let ConnEvent::Other(s) = self {
            return s;
        }
        Self::NAMED
            .iter()
            .find(|(e, _)| e == self)
            .map_or("", |(_, s)| s)
    }

    /// The event a column names.
    pub fn parse(s: &str) -> ConnEvent {
        Self::NAMED
            .iter()
            .find(|(_, name)| *name == s)
            .map_or_else(|| ConnEvent::Other(s.to_string()), |(e, _)| e.clone())
    }
}

impl fmt::Display for ConnEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ConnEvent {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ConnEvent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<ConnEvent, D::Error> {
        let s = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ConnEvent::parse(&s))
    }
}

/// Why a connection ended: the `detail` of its `disconnect` row, what the others in its rooms
/// are told, and what the person leaving is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disconnect {
    /// `/quit`, with the reason given.
    Quit(Option<String>),
    /// `/quit` before choosing a name.
    QuitDuringHandshake,
    /// The client closed the connection.
    Closed,
    /// The client closed the connection in the middle of a line.
    ClosedMidLine,
    /// The client closed the connection before choosing a name.
    ClosedDuringHandshake,
    /// The connection was reset.
    Reset,
    /// Reading failed otherwise.
    ReadError(String),
    /// No name (or TLS handshake, or password) within the handshake timeout.
    HandshakeTimeout,
    /// A JSON client did not answer a ping.
    NoPingAnswer,
    /// A human-mode client said nothing for the idle timeout.
    Idle,
    /// A client spoke plain text to the TLS port.
    PlainTextOnTls,
    /// Too many lines refused in a row.
    Flooding,
    /// Its outbox was full: it does not read what it is sent.
    SlowConsumer,
    /// Kicked, banned or signed out by the server: `why` reads after "was", as in
    /// "kicked by alice: spam".
    Expelled(String),
    /// Its account logged in again, from connection `by` at `peer`, which took the name over:
    /// whoever has the password may end a session left behind (a dropped network holds a
    /// human-mode name until its idle timeout).
    TakenOver { by: u64, peer: SocketAddr },
    /// The server stopped while it was connected.
    ServerShutdown,
    /// The server was stopping when it tried to join.
    ServerStopping,
    /// The server could not start a thread for it.
    NoThread(String),
}

impl Disconnect {
    /// The `detail` column of the `disconnect` row.
    pub fn detail(&self) -> String {
        match self {
            Disconnect::Quit(None) => "quit".into(),
            Disconnect::Quit(Some(r)) => format!("quit: {r}"),
            Disconnect::QuitDuringHandshake => "quit during handshake".into(),
            Disconnect::Closed => "closed".into(),
            Disconnect::ClosedMidLine => "closed mid-line".into(),
            Disconnect::ClosedDuringHandshake => "closed during handshake".into(),
            Disconnect::Reset => "connection reset".into(),
            Disconnect::ReadError(e) => format!("read error: {e}"),
            Disconnect::HandshakeTimeout => "handshake timeout".into(),
            Disconnect::NoPingAnswer => format!("timeout: {}", self.told()),
            Disconnect::Idle => format!("timeout: {}", self.told()),
            Disconnect::PlainTextOnTls => "plain text on the TLS port".into(),
            Disconnect::Flooding => "flooding".into(),
            Disconnect::SlowConsumer => "slow consumer: outbox full".into(),
            Disconnect::Expelled(why) => why.clone(),
            Disconnect::TakenOver { by, .. } => format!("taken over by conn {by}"),
            Disconnect::ServerShutdown => "server shutdown".into(),
            Disconnect::ServerStopping => "server stopping".into(),
            Disconnect::NoThread(e) => format!("refused: no thread: {e}"),
        }
    }

    /// What the others in its rooms see (`* bob left (REASON)`): no more than they need.
    pub fn public(&self) -> String {
        match self {
            Disconnect::Quit(_) => self.detail(),
            Disconnect::SlowConsumer => "too slow to keep up".into(),
            Disconnect::HandshakeTimeout | Disconnect::NoPingAnswer | Disconnect::Idle => {
                "timed out".into()
            }
            Disconnect::Flooding => "disconnected for flooding".into(),
            Disconnect::TakenOver { .. } => "logged in again".into(),
            Disconnect::Expelled(why) if why.starts_with("kicked") || why.starts_with("banned") => {
                why.clone()
            }
            _ => "connection closed".into(),
        }
    }

    /// What the person leaving is told, in its `bye`.
    pub fn told(&self) -> String {
        match self {
            Disconnect::Quit(_) => "you left; goodbye".into(),
            Disconnect::QuitDuringHandshake => "you left before choosing a name".into(),
            Disconnect::NoPingAnswer => "no answer to a ping".into(),
            Disconnect::Idle => "idle for too long".into(),
            Disconnect::Expelled(why) => format!("you were {why}"),
            Disconnect::TakenOver { peer, .. } => {
                format!("you logged in from another connection ({peer}); this session is closed")
            }
            Disconnect::ServerShutdown | Disconnect::ServerStopping => {
                "the server is shutting down".into()
            }
            _ => self.detail(),
        }
    }
}

impl fmt::Display for Disconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_read_back_as_written_and_unknown_ones_are_kept() {
        for (e, s) in ConnEvent::NAMED.iter() {
            assert_eq!(ConnEvent::parse(s), *e);
            assert_eq!(e.as_str(), *s);
        }
        assert_eq!(ConnEvent::parse("rename").as_str(), "rename");
        let header = CONNECTIONS_HEADER.split(',').count();
        assert_eq!(header, connection_column::COUNT);
        assert_eq!(MESSAGES_HEADER.split(',').count(), message_column::COUNT);
    }

    #[test]
    fn reasons_keep_their_log_text_and_tell_others_less() {
        let cases = [
            (
                Disconnect::Quit(Some("lunch".into())),
                "quit: lunch",
                "quit: lunch",
            ),
            (Disconnect::Idle, "timeout: idle for too long", "timed out"),
            (
                Disconnect::SlowConsumer,
                "slow consumer: outbox full",
                "too slow to keep up",
            ),
            (
                Disconnect::Flooding,
                "flooding",
                "disconnected for flooding",
            ),
            (
                Disconnect::Expelled("kicked by boss: spam".into()),
                "kicked by boss: spam",
                "kicked by boss: spam",
            ),
            (
                Disconnect::TakenOver {
                    by: 7,
                    peer: "192.0.2.1:5000".parse().unwrap(),
                },
                "taken over by conn 7",
                "logged in again",
            ),
            (
                Disconnect::ReadError("EIO".into()),
                "read error: EIO",
                "connection closed",
            ),
        ];
        for (reason, detail, public) in cases {
            assert_eq!(reason.detail(), detail);
            assert_eq!(reason.public(), public);
        }
        assert_eq!(
            Disconnect::Expelled("kicked by boss".into()).told(),
            "you were kicked by boss"
        );
        let taken = Disconnect::TakenOver {
            by: 7,
            peer: "192.0.2.1:5000".parse().unwrap(),
        };
        assert_eq!(
            taken.told(),
            "you logged in from another connection (192.0.2.1:5000); this session is closed"
        );
    }
}
