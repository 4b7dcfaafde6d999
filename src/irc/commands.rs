//! The commands of a registered client: each becomes JSON requests (with what is needed to
//! read their answers), or is answered here.

use serde_json::json;

use super::client::{lookup, need_more, room_of, to_channel};
use super::message::{self, Message, SERVER, channel, ctcp, is_channel};
use super::state::{Ctx, MAX_MODES, ROOMS_SLACK, State, refused, request};
use crate::proto;

/// The most targets one PRIVMSG, NOTICE or WHOIS takes (MAXTARGETS).
const MAX_TARGETS: usize = 4;

/// The most names one ISON asks about (each is a WHOIS, which costs like a request).
const MAX_ISON: usize = 10;

pub fn command(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let cmd = msg.command.as_str();
    match cmd {
        "NICK" => nick(st, msg, json),
        "JOIN" => join(st, msg, json),
        "PART" => part(st, msg, json),
        "PRIVMSG" | "NOTICE" => privmsg(st, msg, json),
        "NAMES" => names(st, msg, json),
        "TOPIC" => match msg.param(0) {
            None => need_more(st, cmd, json),
            Some(chan) => {
                let chan = message::one_line(chan);
                if msg.param(1).is_some() {
                    st.numeric("482", &format!("{chan} :Rooms have no topics here"));
                } else {
                    st.numeric("331", &format!("{chan} :No topic is set"));
                }
            }
        },
        "LIST" => {
            let filter = msg
                .param(0)
                .map(|p| p.split(',').map(proto::room_key).collect())
                .unwrap_or_default();
            let ctx = Ctx::List {
                filter,
                answered: false,
            };
            request(st, json, &json!({"type": "rooms"}), ctx);
        }
        "WHO" => who(st, msg, json),
        "WHOIS" => {
            let nicks = if msg.params.len() >= 2 {
                msg.param(1)
            } else {
                msg.param(0)
            };
            let Some(nicks) = nicks.filter(|n| !n.is_empty()) else {
                st.numeric("431", ":No nickname given");
                return refused(json);
            };
            for name in nicks.split(',').filter(|n| !n.is_empty()).take(MAX_TARGETS) {
                let ctx = Ctx::Whois {
                    name: message::one_line(name),
                };
                request(st, json, &json!({"type": "whois", "name": name}), ctx);
            }
        }
        "WHOWAS" => {
            let nick = message::one_line(msg.param(0).unwrap_or("*"));
            st.numeric("406", &format!("{nick} :There was no such nickname"));
            st.numeric("369", &format!("{nick} :End of WHOWAS"));
        }
        "AWAY" => match msg.param(0).filter(|r| !r.trim().is_empty()) {
            None => request(st, json, &json!({"type": "back"}), Ctx::Away),
            Some(reason) => match proto::validate_reason(reason) {
                Ok(()) => {
                    let v = json!({"type": "away", "reason": reason});
                    request(st, json, &v, Ctx::Away);
                }
                Err(e) => {
                    st.notice(&format!("not away: {e}"));
                    refused(json);
                }
            },
        },
        "ISON" | "USERHOST" => {
            let ison = cmd == "ISON";
            let most = if ison { MAX_ISON } else { 5 };
            let mut asked: Vec<String> = Vec::new();
            for word in msg.params.iter().flat_map(|p| p.split_whitespace()) {
                if asked.len() < most
                    && proto::validate_name(word).is_ok()
                    && !asked.iter().any(|a| proto::names::same(a, word))
                {
                    asked.push(word.to_string());
                }
            }
            if msg.params.is_empty() {
                return need_more(st, cmd, json);
            }
            if asked.is_empty() {
                let code = if ison { "303" } else { "302" };
                return st.numeric(code, ":");
            }
            lookup(st, asked, ison, json);
        }
        "KICK" => kick(st, msg, json),
        "MODE" => mode(st, msg, json),
        "MUTE" | "UNMUTE" | "BAN" | "UNBAN" | "BANS" | "OP" | "DEOP" => {
            let line = format!("/{} {}", cmd.to_ascii_lowercase(), msg.params.join(" "));
            let target = msg.param(0).unwrap_or("*").to_string();
            moderate(st, cmd, None, target, line.trim_end(), json);
        }
        "MOTD" => st.numeric("422", ":MOTD File is missing"),
        "VERSION" => {
            let version = st.settings.version.replace(' ', "-");
            st.numeric("351", &format!("{version} {SERVER} :chatroom's IRC door"));
        }
        "TIME" => {
            let now = chrono::Utc::now().to_rfc2822();
            st.numeric("391", &format!("{SERVER} :{now}"));
        }
        "HELP" => request(st, json, &json!({"type": "help"}), Ctx::Help),
        "OPER" => {
            st.numeric("491", ":No O-lines: administrators are accounts (see /op)");
            refused(json);
        }
        _ => {
            let cmd = message::one_line(cmd);
            st.numeric("421", &format!("{cmd} :Unknown command"));
            refused(json);
        }
    }
}

fn nick(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(name) = msg.param(0).filter(|n| !n.is_empty()) else {
        st.numeric("431", ":No nickname given");
        return refused(json);
    };
    if let Err(e) = proto::validate_name(name) {
        let nick = message::one_line(name);
        st.numeric("432", &format!("{nick} :Erroneous nickname: {e}"));
        return refused(json);
    }
    if st.nick.as_deref() == Some(name) {
        return;
    }
    let ctx = Ctx::Nick {
        name: name.to_string(),
    };
    request(st, json, &json!({"type": "nick", "name": name}), ctx);
}

fn join(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(chans) = msg.param(0) else {
        return need_more(st, "JOIN", json);
    };
    if chans == "0" {
        // Leave every channel, and those being joined.
        let mut rooms = st.channels.clone();
        rooms.extend(st.joining.iter().cloned());
        let mut seen = Vec::new();
        let mut refusals = 0;
        for room in rooms {
            let key = proto::room_key(&room);
            if !seen.contains(&key) && !st.parting.contains(&key) && !leave(st, &room, json) {
                refusals += 1;
            }
            seen.push(key);
        }
        if refusals > 0 {
            refused(json);
        }
        return;
    }
    let mut refusals = 0;
    for chan in chans.split(',').filter(|c| !c.is_empty()) {
        let Some(room) = room_of(chan) else {
            let shown = message::one_line(chan);
            if is_channel(chan) {
                st.numeric(
                    "479",
                    &format!(
                        "{shown} :Illegal channel name (1-64 letters, digits, _ - . after the #)"
                    ),
                );
            } else {
                st.numeric(
                    "403",
                    &format!("{shown} :No such channel (channels start with #)"),
                );
            }
            refusals += 1;
            continue;
        };
        let key = proto::room_key(room);
        if st.in_channel(room) {
            continue;
        }
        if st.joining.contains(&key) {
            if st.waits_for(&key, true) {
                continue; // Its answer is on the way.
            }
            st.joining.retain(|j| *j != key);
        }
        if st.joining.len() >= st.settings.max_rooms + ROOMS_SLACK {
            let shown = message::one_line(chan);
            st.numeric(
                "405",
                &format!(
                    "{shown} :You are joining too many channels at once; wait for the answers"
                ),
            );
            refusals += 1;
            continue;
        }
        st.joining.push(key);
        let ctx = Ctx::Join {
            channel: channel(room),
        };
        request(st, json, &json!({"type": "join", "room": room}), ctx);
    }
    if refusals > 0 {
        refused(json);
    }
}

fn part(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(chans) = msg.param(0) else {
        return need_more(st, "PART", json);
    };
    let mut refusals = 0;
    for chan in chans.split(',').filter(|c| !c.is_empty()) {
        // Whether the client is in it is the server's to say (442): a JOIN just sent may
        // not be answered yet.
        match room_of(chan) {
            Some(room) => {
                if !leave(st, room, json) {
                    refusals += 1;
                }
            }
            None => {
                let chan = message::one_line(chan);
                st.numeric("403", &format!("{chan} :No such channel"));
                refusals += 1;
            }
        }
    }
    if refusals > 0 {
        refused(json);
    }
}

/// Sends a PART; false (and nothing sent) when too many are waiting for their answers.
fn leave(st: &mut State, room: &str, json: &mut Vec<u8>) -> bool {
    let key = proto::room_key(room);
    if !st.parting.contains(&key) {
        if st.parting.len() >= st.settings.max_rooms + ROOMS_SLACK {
            let chan = message::one_line(&channel(room));
            st.notice(&format!(
                "{chan}: too many channels being left at once; wait for the answers"
            ));
            return false;
        }
        st.parting.push(key.clone());
    }
    let ctx = Ctx::Part {
        channel: channel(room),
    };
    request(st, json, &json!({"type": "leave", "room": room}), ctx);
    true
}

fn privmsg(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let notice = msg.command == "NOTICE";
    let Some(targets) = msg.param(0).filter(|t| !t.is_empty()) else {
        st.numeric("411", &format!(":No recipient given ({})", msg.command));
        return refused(json);
    };
    let Some(text) = msg.param(1).filter(|t| !t.is_empty()) else {
        st.numeric("412", ":No text to send");
        return refused(json);
    };
    let (text, action) = match ctcp(text) {
        Some((verb, arg)) if verb == "ACTION" => (arg, true),
        Some((verb, _)) => {
            // A CTCP query (VERSION, PING...) or a reply to one: nothing to deliver it as.
            if !notice {
                let verb = message::one_line(&verb);
                st.notice(&format!(
                    "CTCP {verb} is not supported here; it was not sent"
                ));
            }
            return;
        }
        None => (text, false),
    };
    for target in targets
        .split(',')
        .filter(|t| !t.is_empty())
        .take(MAX_TARGETS)
    {
        let shown = message::one_line(target);
        if is_channel(target) {
            if let Err(e) = proto::validate_text(text) {
                st.numeric("404", &format!("{shown} :Cannot send to channel: {e}"));
                refused(json);
                continue;
            }
            to_channel(st, target, text, action, json);
            continue;
        }
        if proto::validate_name(target).is_err() {
            // NickServ and the rest are reserved names: nobody can hold one to collect what
            // clients send them by habit (IDENTIFY and a password).
            let why = if target.to_ascii_lowercase().ends_with("serv") {
                "No such nick: this server has no services; log in with PASS or SASL"
            } else {
                "No such nick/channel"
            };
            st.numeric("401", &format!("{shown} :{why}"));
            refused(json);
            continue;
        }
        // A direct message has no emote kind: an action is sent as `* NICK text`, which an
        // IRC recipient sees as an action again.
        let text = if action {
            format!("* {} {text}", st.me())
        } else {
            text.to_string()
        };
        if let Err(e) = proto::validate_text(&text) {
            st.notice(&format!("not sent to {shown}: {e}"));
            refused(json);
            continue;
        }
        let ctx = Ctx::Message {
            target: target.to_string(),
        };
        request(
            st,
            json,
            &json!({"type": "msg", "to": target, "text": text}),
            ctx,
        );
    }
}

fn names(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(chans) = msg.param(0) else {
        return st.numeric("366", "* :End of /NAMES list");
    };
    for chan in chans.split(',').filter(|c| !c.is_empty()) {
        match room_of(chan) {
            Some(room) => {
                let ctx = Ctx::Names {
                    channel: channel(room),
                    answered: false,
                };
                request(st, json, &json!({"type": "who", "room": room}), ctx);
            }
            None => {
                let chan = message::one_line(chan);
                st.numeric("366", &format!("{chan} :End of /NAMES list"));
            }
        }
    }
}

fn who(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let mask = msg.param(0).unwrap_or("*");
    if let Some(room) = room_of(mask) {
        let ctx = Ctx::Who {
            mask: channel(room),
        };
        request(st, json, &json!({"type": "who", "room": room}), ctx);
    } else if !is_channel(mask) && proto::validate_name(mask).is_ok() {
        let ctx = Ctx::Who {
            mask: mask.to_string(),
        };
        request(st, json, &json!({"type": "whois", "name": mask}), ctx);
    } else {
        let mask = message::one_line(mask);
        st.numeric("315", &format!("{mask} :End of WHO list"));
    }
}

fn kick(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let (Some(chan), Some(nicks)) = (msg.param(0), msg.param(1)) else {
        return need_more(st, "KICK", json);
    };
    let reason = msg.param(2).unwrap_or("").trim();
    for nick in nicks.split(',').filter(|n| !n.is_empty()).take(MAX_TARGETS) {
        let line = format!("/kick {nick} {reason}");
        moderate(
            st,
            "KICK",
            Some(chan),
            nick.to_string(),
            line.trim_end(),
            json,
        );
    }
}

/// MODE: a channel's modes are +b (our bans) and +o (our administrators); a user has none.
fn mode(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(target) = msg.param(0) else {
        return need_more(st, "MODE", json);
    };
    let shown = message::one_line(target);
    if !is_channel(target) {
        let mine = st
            .nick
            .as_deref()
            .is_some_and(|n| proto::names::same(n, target));
        if !mine {
            st.numeric("502", ":Can't change mode for other users");
            return refused(json);
        }
        if msg.param(1).is_none() {
            st.numeric("221", "+");
        }
        // Asked to set a user mode: there are none to set, and nothing changes.
        return;
    }
    let Some(modes) = msg.param(1) else {
        return st.numeric("324", &format!("{shown} +"));
    };
    let mut args = msg.params.iter().skip(2);
    let mut adding = true;
    let mut listed = false;
    // At most `MODES` changes a line (ISUPPORT), and one 472: a line is not a way to have the
    // server write many.
    let mut changes = 0;
    for c in modes.chars() {
        if !matches!(c, '+' | '-') {
            changes += 1;
            if changes > MAX_MODES {
                st.notice(&format!("at most {MAX_MODES} mode changes a line (MODES)"));
                return refused(json);
            }
        }
        match c {
            '+' => adding = true,
            '-' => adding = false,
            'b' => match args.next() {
                None if !listed => {
                    listed = true;
                    st.numeric("368", &format!("{shown} :End of channel ban list"));
                }
                None => {}
                Some(mask) => match ban_target(mask) {
                    Some(t) => {
                        let verb = if adding { "/ban" } else { "/unban" };
                        let line = format!("{verb} {t}");
                        moderate(st, "MODE", Some(target), t, &line, json);
                    }
                    None => {
                        st.notice(&format!(
                            "{}: ban masks here are NICK, NICK!*@*, *!*@ADDRESS or *!*@CIDR",
                            message::one_line(mask)
                        ));
                        refused(json);
                    }
                },
            },
            'o' => match args.next() {
                Some(nick) => {
                    let verb = if adding { "/op" } else { "/deop" };
                    let line = format!("{verb} {nick}");
                    moderate(st, "MODE", Some(target), nick.to_string(), &line, json);
                }
                None => need_more(st, "MODE", json),
            },
            other => {
                st.numeric("472", &format!("{other} :is unknown mode char to me"));
                return refused(json);
            }
        }
    }
}

/// What a ban mask bans here: a name (`bob`, `bob!*@*`) or an address or network
/// (`*!*@203.0.113.7`, `*!*@203.0.113.0/24`); `None` for a mask this server cannot ban.
pub fn ban_target(mask: &str) -> Option<String> {
    let Some((nick, host)) = mask.split_once('!').map(|(n, rest)| {
        let host = rest.split_once('@').map_or("*", |(_, h)| h);
        (n, host)
    }) else {
        if mask.contains(['*', '?', '@']) {
            return None;
        }
        return Some(mask.to_string());
    };
    match (nick, host) {
        ("*", "*") => None,
        ("*", host) if !host.contains(['*', '?']) => Some(host.to_string()),
        (nick, "*") if !nick.contains(['*', '?']) => Some(nick.to_string()),
        _ => None,
    }
}

/// Sends a moderation command line (`/kick bob`, `/ban 203.0.113.7`), checked first as the
/// reader checks it.
fn moderate(
    st: &mut State,
    command: &str,
    channel: Option<&str>,
    target: String,
    line: &str,
    json: &mut Vec<u8>,
) {
    if let Err(e) = proto::parse_command(line) {
        st.notice(&format!("{command}: {e}"));
        return refused(json);
    }
    let ctx = Ctx::Moderation {
        command: command.to_string(),
        channel: channel.map(message::one_line),
        target: message::one_line(&target),
    };
    request(st, json, &json!({"type": "command", "line": line}), ctx);
}
