//! The human encoding: readable lines for `nc` and people.

use super::*;

pub(super) fn encode_human(msg: &ServerMsg) -> String {
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
            format!(
                "* end of history of #{room} ({})\n",
                super::count(*count, "message", "messages")
            )
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
            format!(
                "* {}: {}{rest}\n",
                super::count(total, "room", "rooms"),
                listed.join(", ")
            )
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
