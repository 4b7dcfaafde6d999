//! What a client asks for, and the grammar of commands (`/join`, `/ban`, …).

use super::json::parse_json;
use super::*;

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
    /// An emote to a named room the client is in (JSON `me` with a `room`).
    MeIn {
        room: String,
        text: String,
    },
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
        /// `--yes`: the administrator knows the ban covers their own connection.
        confirmed: bool,
    },
    Unban(String),
    Bans,
    Mute {
        name: String,
        duration: Option<std::time::Duration>,
        /// Shown to the room and kept in the `mute` row's detail, like /kick's.
        reason: String,
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
        "/ban NAME|IP|CIDR [DURATION] [REASON] [--yes]",
        "admins: ban (10m, 2h, 7d; none = for good); --yes if it covers you too",
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

/// The word that confirms a `/ban` covering the administrator's own connection.
const YES: &str = "--yes";

/// Parses a line from a named client. `Ok(None)` means "nothing to do" (an empty human line).
pub fn parse_request(mode: Mode, line: &str) -> Result<Option<Request>, ProtocolError> {
    match mode {
        Mode::Human => parse_human(line),
        Mode::Json | Mode::Irc | Mode::IrcTime => parse_json(line).map(Some),
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
            let usage = "/ban NAME|IP|CIDR [DURATION] [REASON] [--yes]";
            let mut words = args.splitn(2, char::is_whitespace);
            let target = words
                .next()
                .filter(|t| !t.is_empty() && *t != YES)
                .ok_or(ProtocolError::Usage { usage })?;
            // `--yes` may stand right after the target, after the duration, or last.
            let mut confirmed = false;
            let mut rest = words.next().unwrap_or("").trim();
            let mut take_yes = |rest: &mut &str| {
                if let Some(more) = rest.strip_prefix(YES)
                    && (more.is_empty() || more.starts_with(char::is_whitespace))
                {
                    *rest = more.trim_start();
                    confirmed = true;
                }
                if let Some(before) = rest.strip_suffix(YES)
                    && (before.is_empty() || before.ends_with(char::is_whitespace))
                {
                    *rest = before.trim_end();
                    confirmed = true;
                }
            };
            take_yes(&mut rest);
            let (duration, reason) = duration_and_reason(rest);
            let mut reason = reason;
            take_yes(&mut reason);
            if !reason.is_empty() {
                validate_reason(reason)?;
            }
            Ok(Request::Ban {
                target: target.to_string(),
                duration,
                reason: reason.to_string(),
                confirmed,
            })
        }
        "/unban" => one_word("/unban TARGET").map(Request::Unban),
        "/bans" => no_args(Request::Bans, "/bans"),
        "/mute" => {
            let usage = "/mute NAME [DURATION] [REASON]";
            let (name, rest) = match args.split_once(char::is_whitespace) {
                Some((n, r)) => (n, r.trim()),
                None if !args.is_empty() => (args, ""),
                None => return Err(ProtocolError::Usage { usage }),
            };
            let (duration, reason) = duration_and_reason(rest);
            if !reason.is_empty() {
                validate_reason(reason)?;
            }
            Ok(Request::Mute {
                name: name.to_string(),
                duration,
                reason: reason.to_string(),
            })
        }
        "/unmute" => one_word("/unmute NAME").map(Request::Unmute),
        "/op" => one_word("/op NAME").map(Request::Op),
        "/deop" => one_word("/deop NAME").map(Request::Deop),
        _ => Err(ProtocolError::UnknownCommand {
            command: printable(cmd),
        }),
    }
}

/// The optional duration and the reason of `/ban` and `/mute` after their target: a first word
/// that is a duration is one; otherwise everything is the reason.
fn duration_and_reason(rest: &str) -> (Option<std::time::Duration>, &str) {
    match rest.split_once(char::is_whitespace) {
        Some((first, more)) => match crate::proto::parse_duration(first) {
            Some(d) => (Some(d), more.trim()),
            None => (None, rest),
        },
        None => match crate::proto::parse_duration(rest) {
            Some(d) => (Some(d), ""),
            None => (None, rest),
        },
    }
}
