//! `chat-client`'s logic, shared by its front ends.
//!
//! - `session`: the connection in JSON mode: the handshake, [`Request`](crate::proto::Request)s
//!   out, [`ServerMsg`]s in ([`Session`], [`Link`]). Any front end uses it.
//! - `plain`: the line mode, for scripts and plain terminals, with its exit statuses.
//! - here: the server address, the options, and rendering events as coloured, escape-safe
//!   lines.

use std::hash::{Hash, Hasher};

use chrono::{DateTime, Local};

use crate::proto::{Kind, ServerMsg, printable};

pub mod plain;
pub mod session;
pub mod tui;

pub use plain::{Ending, exit};
pub use session::{Link, Refusal, Session, Welcome, request_json};

/// How the client looks and behaves.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The name to ask for; when absent, the first input line is the name.
    pub name: Option<String>,
    /// ANSI colours in the output.
    pub color: bool,
    /// Input comes from a person at a terminal: prompt, and ask again after a refused name.
    pub interactive: bool,
    /// The password for a registered name (otherwise asked for when the server wants one).
    pub password: Option<String>,
    /// Input and output are one terminal: erase each typed line once sent, since the server's
    /// echo shows it again with its timestamp.
    pub erase_typed: bool,
    /// `--room`: join this room before sending any line.
    pub room: Option<String>,
    /// `--wait`: pace lines to the server's rate limit (resend after a `rate_limited` refusal)
    /// instead of losing them.
    pub wait: bool,
}

/// The port a server address without one gets (the server's default `--bind`).
pub const DEFAULT_PORT: u16 = 5555;

/// A server address as the user typed it, with [`DEFAULT_PORT`] added when it has no port:
/// `localhost` becomes `localhost:5555`, `::1` and `[::1]` become `[::1]:5555`;
/// `host:port` and `[v6]:port` stay as they are. Host names are resolved when connecting.
pub fn server_address(addr: &str) -> String {
    if addr.parse::<std::net::SocketAddr>().is_ok() {
        return addr.to_string();
    }
    // A bare IPv6 address: its colons are not a port.
    if let Ok(std::net::IpAddr::V6(ip)) = addr.parse() {
        return format!("[{ip}]:{DEFAULT_PORT}");
    }
    if let Some(inner) = addr.strip_prefix('[')
        && let Some(rest) = inner.split_once(']').map(|(_, rest)| rest)
    {
        return if rest.is_empty() {
            format!("{addr}:{DEFAULT_PORT}")
        } else {
            addr.to_string()
        };
    }
    match addr.rsplit_once(':') {
        Some(_) => addr.to_string(),
        None => format!("{addr}:{DEFAULT_PORT}"),
    }
}

/// Renders one server event as terminal lines, or `None` for events with nothing to show.
pub fn render(event: &ServerMsg, me: &str, style: &Style) -> Option<String> {
    let text = match event {
        ServerMsg::Message(m) => {
            let from = printable(&m.from);
            let room = printable(&m.room);
            let to = printable(m.to.as_deref().unwrap_or_default());
            let when = if m.history {
                local_date_clock(&m.ts)
            } else {
                local_clock(&m.ts)
            };
            let name = style.sender(&from, from == me);
            let (head, sep, visible_head) = match m.kind {
                Kind::Direct => (
                    format!("{name} -> {to}"),
                    ": ",
                    format!("{from} -> {to}").chars().count(),
                ),
                Kind::Action => (
                    format!("#{room} * {name}"),
                    " ",
                    room.chars().count() + from.chars().count() + 4,
                ),
                Kind::Message => (
                    format!("#{room} {name}"),
                    ": ",
                    room.chars().count() + from.chars().count() + 2,
                ),
            };
            let prefix = format!("[{when}] ");
            let indent = " ".repeat(prefix.chars().count() + visible_head + sep.len());
            let body = m
                .text
                .split('\n')
                .map(printable)
                .collect::<Vec<_>>()
                .join(&format!("\n{indent}"));
            format!("{}{head}{sep}{body}", style.dim(&prefix))
        }
        ServerMsg::HistoryEnd { room, count } => style.system(&format!(
            "end of history of #{} ({})",
            printable(room),
            crate::proto::count(*count, "message", "messages")
        )),
        ServerMsg::Rooms { rooms, .. } => {
            let rooms: Vec<String> = rooms
                .iter()
                .map(|r| format!("#{} ({})", printable(&r.name), r.members))
                .collect();
            style.system(&format!(
                "{}: {}",
                crate::proto::count(rooms.len(), "room", "rooms"),
                rooms.join(", ")
            ))
        }
        ServerMsg::Switched { room } => {
            style.system(&format!("your messages now go to #{}", printable(room)))
        }
        ServerMsg::Nick { ts, old, new } => style.system(&format!(
            "[{}] {} is now known as {}",
            local_clock(ts),
            printable(old),
            printable(new)
        )),
        ServerMsg::Presence { ts, name, away } => {
            let what = match away.as_deref() {
                Some("") => "is away".to_string(),
                Some(r) => format!("is away: {}", printable(r)),
                None => "is back".to_string(),
            };
            style.system(&format!("[{}] {} {what}", local_clock(ts), printable(name)))
        }
        ServerMsg::Whois {
            name,
            rooms,
            away,
            connected,
        } => {
            let rooms: Vec<String> = rooms.iter().map(|r| format!("#{}", printable(r))).collect();
            let away = match away.as_deref() {
                Some("") => "; away".to_string(),
                Some(r) => format!("; away: {}", printable(r)),
                None => String::new(),
            };
            style.system(&format!(
                "{}: in {}; connected since {}{away}",
                printable(name),
                if rooms.is_empty() {
                    "no room".to_string()
                } else {
                    rooms.join(", ")
                },
                local_date_clock(connected)
            ))
        }
        ServerMsg::Joined { ts, room, name } => style.system(&format!(
            "[{}] {} joined #{}",
            local_clock(ts),
            printable(name),
            printable(room)
        )),
        ServerMsg::Left {
            ts,
            room,
            name,
            reason,
        } => style.system(&format!(
            "[{}] {} left #{} ({})",
            local_clock(ts),
            printable(name),
            printable(room),
            printable(reason)
        )),
        ServerMsg::Users { room, users, .. } => {
            let users: Vec<String> = users.iter().map(|u| printable(u)).collect();
            style.system(&format!(
                "{} in {}: {}",
                users.len(),
                printable(room),
                users.join(", ")
            ))
        }
        ServerMsg::Help { commands } => {
            let mut lines = vec![style.system("commands:")];
            for c in commands {
                let usage = printable(&c.usage);
                let desc = printable(&c.description);
                lines.push(style.system(&format!("  {usage:<16} {desc}")));
            }
            lines.join("\n")
        }
        ServerMsg::System { ts, text } => {
            style.system(&format!("[{}] {}", local_clock(ts), printable(text)))
        }
        ServerMsg::Bye { ts, reason } => style.system(&format!(
            "[{}] disconnected: {}",
            local_clock(ts),
            printable(reason)
        )),
        ServerMsg::Error { message, .. } => style.error(&printable(message)),
        ServerMsg::Pong { .. } => style.system("pong"),
        ServerMsg::Welcome { .. } | ServerMsg::Ping { .. } => return None,
    };
    Some(text + "\n")
}

/// `YYYY-MM-DD HH:MM:SS` in local time, for history (which may be from another day).
fn local_date_clock(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| {
            t.with_timezone(&Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| "---------- --:--:--".to_string())
}

/// `HH:MM:SS` in local time, from an RFC 3339 timestamp.
fn local_clock(ts: &str) -> String {
    DateTime::parse_from_rfc3339(ts)
        .map(|t| t.with_timezone(&Local).format("%H:%M:%S").to_string())
        .unwrap_or_else(|_| "--:--:--".to_string())
}

/// Terminal styling; every method returns plain text when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// A sender's name in its own stable colour; our own name in bold.
    pub fn sender(&self, name: &str, is_me: bool) -> String {
        const PALETTE: [&str; 6] = ["31", "32", "33", "34", "35", "36"];
        let mut h = std::collections::hash_map::DefaultHasher::new();
        name.to_lowercase().hash(&mut h);
        let colour = PALETTE[(h.finish() % PALETTE.len() as u64) as usize];
        if is_me {
            self.paint(&format!("1;{colour}"), name)
        } else {
            self.paint(colour, name)
        }
    }

    pub fn system(&self, text: &str) -> String {
        self.paint("2", &format!("* {text}"))
    }

    pub fn error(&self, text: &str) -> String {
        self.paint("1;31", &format!("! {text}"))
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ErrorCode;
    use serde_json::json;

    #[test]
    fn a_server_address_without_a_port_gets_the_default_one() {
        for (typed, meant) in [
            ("localhost", "localhost:5555"),
            ("chat.example.org", "chat.example.org:5555"),
            ("localhost:6000", "localhost:6000"),
            ("127.0.0.1", "127.0.0.1:5555"),
            ("127.0.0.1:6000", "127.0.0.1:6000"),
            ("::1", "[::1]:5555"),
            ("[::1]", "[::1]:5555"),
            ("[::1]:6000", "[::1]:6000"),
        ] {
            assert_eq!(server_address(typed), meant, "{typed}");
        }
    }

    fn typed(v: serde_json::Value) -> ServerMsg {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn events_a_newer_server_may_send_are_skipped_not_fatal() {
        assert!(serde_json::from_str::<ServerMsg>(r#"{"type":"reaction","emoji":"+1"}"#).is_err());
        let err: ServerMsg =
            serde_json::from_str(r#"{"type":"error","code":"brand_new","message":"x"}"#).unwrap();
        assert!(matches!(
            err,
            ServerMsg::Error {
                code: ErrorCode::Other,
                ..
            }
        ));
    }

    #[test]
    fn rendering_is_escape_safe_and_plain_without_colour() {
        let style = Style { color: false };
        let ev = json!({"type":"message","id":1,"ts":"2026-11-23T16:04:05.123Z","room":"lobby",
                        "from":"mallory","kind":"message","text":"hi\u{1b}[2J\nsecond"});
        let out = render(&typed(ev), "me", &style).unwrap();
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("#lobby mallory: hi\\u{1b}[2J\n"), "{out:?}");
        let first = out.lines().next().unwrap();
        let indent = out.lines().nth(1).unwrap().len() - "second".len();
        assert_eq!(
            &first[indent..indent + 2],
            "hi",
            "continuation aligned: {out:?}"
        );
        let dm = json!({"type":"message","id":2,"ts":"2026-11-23T16:04:05.123Z",
                        "from":"bob","to":"me","kind":"direct","text":"psst"});
        assert!(
            render(&typed(dm), "me", &style)
                .unwrap()
                .ends_with("bob -> me: psst\n")
        );
        let me_action = json!({"type":"message","id":3,"ts":"2026-11-23T16:04:05.123Z","room":"ops",
                        "from":"bob","kind":"action","text":"waves"});
        assert!(
            render(&typed(me_action), "me", &style)
                .unwrap()
                .ends_with("#ops * bob waves\n")
        );
        let err = json!({"type":"error","code":"name_taken","message":"taken"});
        assert_eq!(render(&typed(err), "me", &style).unwrap(), "! taken\n");
    }

    #[test]
    fn colour_is_stable_per_sender() {
        let style = Style { color: true };
        assert_eq!(
            style.sender("Bob", false),
            style.sender("bob", false).replace("bob", "Bob")
        );
        assert!(style.sender("bob", true).starts_with("\x1b[1;"));
    }
}
