//! What the server sends, as IRC: each JSON event (a [`ServerMsg`]) becomes the lines an IRC
//! client expects, read with the request it answers when it answers one.

use std::collections::BTreeMap;

use super::message::{self, SERVER, channel, is_channel, prefix};
use super::state::{Ctx, MAX_HELD, REFUSED_MARKER, State, Welcome, welcome_burst};
use crate::proto::{ChatMessage, ErrorCode, RoomInfo, ServerMsg, Standing, room_key};

/// Appends the IRC lines for one event to `st.out` (or to what registration holds).
pub fn event(st: &mut State, msg: ServerMsg) {
    match msg {
        ServerMsg::Welcome { name, role, .. } => welcome(st, name, role),
        ServerMsg::Message(m) => chat(st, m),
        ServerMsg::Joined { room, name, .. } => joined(st, &room, &name),
        ServerMsg::Left {
            room, name, reason, ..
        } => left(st, &room, &name, &reason),
        ServerMsg::Users { room, users, away } => members(st, &room, &users, &away),
        ServerMsg::HistoryEnd { room, .. } => {
            if st.names_due.as_deref() == Some(room_key(&room).as_str()) {
                owe_names(st);
            }
        }
        ServerMsg::Rooms { rooms, more } => list(st, &rooms, more),
        // No switch is sent from here: `say` and `me` name their room.
        ServerMsg::Switched { .. } => {}
        ServerMsg::Nick { old, new, .. } => {
            let line = format!(":{} NICK :{new}", prefix(&old));
            message::push(st.sink(), &line);
            if st.nick.as_deref() == Some(old.as_str()) {
                st.nick = Some(new);
            }
        }
        ServerMsg::Presence { name, away, .. } => presence(st, &name, away),
        ServerMsg::Whois {
            name,
            rooms,
            away,
            connected,
        } => whois(st, &name, &rooms, away, &connected),
        ServerMsg::Help { commands } => {
            let me = st.me();
            let mut text = String::from(
                "IRC commands work as usual (see docs/IRC.md); the server's own commands:",
            );
            for c in commands {
                text.push_str(&format!("\n{} - {}", c.usage, c.description));
            }
            message::notice(st.sink(), &me, &text);
        }
        ServerMsg::System { text, .. } => system(st, &text),
        ServerMsg::Error { code, message, .. } => error(st, code, &message),
        ServerMsg::Ping { id } => message::push(&mut st.out, &format!("PING :{id}")),
        ServerMsg::Pong { id } => pong(st, id),
        ServerMsg::Bye { reason, .. } => bye(st, &reason),
    }
    if st.held.len() > MAX_HELD {
        // Registration waited for `CAP END` while the lobby talked: it completes without it.
        st.release();
    }
}

/// Appends a line the hub encoded as IRC already (a channel message's PRIVMSG; `line` without
/// its `\n`), as it is.
pub fn raw(st: &mut State, line: &[u8]) {
    let out = st.sink();
    out.extend_from_slice(line);
    out.push(b'\n');
    if st.held.len() > MAX_HELD {
        st.release();
    }
}

/// Appends a numeric to what the client is sent next (held while registration waits).
fn numeric(st: &mut State, code: &str, rest: &str) {
    let me = st.me();
    message::numeric(st.sink(), code, &me, rest);
}

fn notice(st: &mut State, text: &str) {
    let me = st.me();
    message::notice(st.sink(), &me, text);
}

fn welcome(st: &mut State, name: String, role: Standing) {
    st.nick = Some(name.clone());
    st.registered = true;
    st.hello_out = false;
    st.ready = false;
    if role != Standing::Guest {
        let p = prefix(&name);
        let rest = format!("{p} {name} :You are now logged in as {name}");
        message::numeric(&mut st.out, "900", &name, &rest);
    }
    if std::mem::take(&mut st.via_sasl) {
        message::numeric(&mut st.out, "903", &name, ":SASL authentication successful");
    }
    if st.ready_for_burst() {
        welcome_burst(&mut st.out, &name, &st.settings);
    } else {
        st.welcome = Some(Welcome { name });
    }
}

fn chat(st: &mut State, m: ChatMessage) {
    let me = st.me();
    let own = m.from == me && !m.history;
    if own {
        // Our own message back (its acknowledgement): the answer to the request.
        let answered = match st.front() {
            Some(Ctx::Message { target }) => match &m.to {
                None => is_channel(target) && room_key(target) == room_key(&m.room),
                Some(to) => crate::proto::names::same(target, to),
            },
            _ => false,
        };
        if answered {
            st.pending.pop_front();
        }
    }
    let tag = st.caps.server_time.then(|| format!("@time={}", m.ts));
    let tag = tag.as_deref();
    match &m.to {
        None => {
            if own && !st.caps.echo_message {
                return;
            }
            let time = st.caps.server_time;
            crate::proto::irc::channel_message(st.sink(), &m, time);
        }
        Some(to) => {
            // Sent by us to someone else: an echo, shown only with echo-message.
            if own && *to != me && !st.caps.echo_message {
                return;
            }
            let target = if m.from == me { to.clone() } else { me };
            let (text, action) = match m.text.strip_prefix(&format!("* {} ", m.from)) {
                Some(rest) => (rest, true),
                None => (m.text.as_str(), false),
            };
            message::privmsg(st.sink(), tag, &m.from, &target, text, action);
        }
    }
}

fn joined(st: &mut State, room: &str, name: &str) {
    let line = format!(":{} JOIN {}", prefix(name), channel(room));
    message::push(st.sink(), &line);
    if st.last_quit.as_deref() == Some(name) {
        st.last_quit = None;
    }
    if st.nick.as_deref() == Some(name) {
        let key = room_key(room);
        st.parting.retain(|p| *p != key);
        st.joining.retain(|p| *p != key);
        if !st.channels.iter().any(|c| room_key(c) == key) {
            st.channels.push(room.to_string());
        }
        st.answered_if(|c| matches!(c, Ctx::Join { channel } if room_key(channel) == key));
        st.names_due = Some(key);
    }
}

fn left(st: &mut State, room: &str, name: &str, reason: &str) {
    let chan = channel(room);
    let p = prefix(name);
    if st.nick.as_deref() == Some(name) {
        let key = room_key(room);
        st.channels.retain(|c| room_key(c) != key);
        st.parting.retain(|c| *c != key);
        st.answered_if(|c| matches!(c, Ctx::Part { channel } if room_key(channel) == key));
        return message::push(st.sink(), &format!(":{p} PART {chan}"));
    }
    let reason = message::one_line(reason);
    let line = if reason == "left" {
        format!(":{p} PART {chan}")
    } else if let Some(by) = expelled_by(&reason) {
        format!(":{} KICK {chan} {name} :{}", prefix(by), kick_text(&reason))
    } else {
        if st.last_quit.as_deref() == Some(name) {
            return; // Told already, in another channel.
        }
        st.last_quit = Some(name.to_string());
        let text = match reason.strip_prefix("quit") {
            Some("") => "Quit".to_string(),
            Some(rest) if rest.starts_with(": ") => format!("Quit{rest}"),
            _ => reason.clone(),
        };
        format!(":{p} QUIT :{text}")
    };
    message::push(st.sink(), &line);
}

/// What a KICK says of a removal: the reason alone (`kicked by boss: spam` is `spam`), since
/// the KICK comes from the one who removed them and clients show both; a ban says so
/// (`banned by boss permanently` is `banned permanently`).
pub fn kick_text(reason: &str) -> String {
    if let Some(rest) = reason.strip_prefix("kicked by ") {
        return match rest.split_once(": ") {
            Some((_, why)) if !why.is_empty() => why.to_string(),
            _ => "kicked".to_string(),
        };
    }
    if let Some(rest) = reason.strip_prefix("banned by ") {
        return match rest.split_once(' ') {
            Some((_, what)) => format!("banned {what}"),
            None => "banned".to_string(),
        };
    }
    reason.to_string()
}

/// Who removed someone, from the reason the room is given (`kicked by boss: spam`, `banned
/// by boss for 1h`).
pub fn expelled_by(reason: &str) -> Option<&str> {
    let rest = reason
        .strip_prefix("kicked by ")
        .or_else(|| reason.strip_prefix("banned by "))?;
    let by = rest.split([':', ' ']).next()?;
    (!by.is_empty()).then_some(by)
}

/// 353 and 366 for a channel.
fn names_reply(st: &mut State, room: &str, users: &[String]) {
    let chan = channel(room);
    let me = st.me();
    let head = format!(":{SERVER} 353 {me} = {chan} :");
    let mut line = head.clone();
    for user in users {
        if line.len() + user.len() + 1 > message::MAX_CONTENT && line.len() > head.len() {
            message::push(st.sink(), line.trim_end());
            line = head.clone();
        }
        line.push_str(user);
        line.push(' ');
    }
    if line.len() > head.len() {
        message::push(st.sink(), line.trim_end());
    }
    numeric(st, "366", &format!("{chan} :End of /NAMES list"));
}

/// The end of the member list owed after a join, when the server sent none (a room above
/// `--notice-limit`).
fn owe_names(st: &mut State) {
    if let Some(key) = st.names_due.take() {
        let room = st
            .channels
            .iter()
            .find(|c| room_key(c) == key)
            .cloned()
            .unwrap_or(key);
        numeric(
            st,
            "366",
            &format!("{} :End of /NAMES list", channel(&room)),
        );
    }
}

fn members(st: &mut State, room: &str, users: &[String], away: &BTreeMap<String, String>) {
    let key = room_key(room);
    if st.names_due.as_deref() == Some(key.as_str()) {
        st.names_due = None;
        return names_reply(st, room, users);
    }
    st.answered_if(|c| match c {
        Ctx::Who { mask } => is_channel(mask) && room_key(mask) == key,
        c => matches!(c, Ctx::Names { .. }),
    });
    match st.pending.peek_mut().map(|p| &mut p.ctx) {
        Some(Ctx::Who { mask }) if is_channel(mask) && room_key(mask) == key => {
            let chan = channel(room);
            for user in users {
                let here = if away.contains_key(user) { 'G' } else { 'H' };
                let rest = format!("{chan} {user} {SERVER} {SERVER} {user} {here} :0 {user}");
                numeric(st, "352", &rest);
            }
        }
        Some(Ctx::Names { answered, .. }) => {
            *answered = true;
            names_reply(st, room, users);
        }
        _ => names_reply(st, room, users),
    }
}

fn list(st: &mut State, rooms: &[RoomInfo], more: usize) {
    let filter = match st.pending.front_mut().map(|p| &mut p.ctx) {
        Some(Ctx::List { filter, answered }) => {
            *answered = true;
            filter.clone()
        }
        _ => Vec::new(),
    };
    numeric(st, "321", "Channel :Users  Name");
    for r in rooms {
        if filter.is_empty() || filter.contains(&room_key(&r.name)) {
            let rest = format!("{} {} :", channel(&r.name), r.members);
            numeric(st, "322", &rest);
        }
    }
    if more > 0 && filter.is_empty() {
        notice(st, &format!("and {more} more rooms with fewer members"));
    }
    numeric(st, "323", ":End of /LIST");
}

fn presence(st: &mut State, name: &str, away: Option<String>) {
    if st.nick.as_deref() == Some(name) {
        if matches!(st.front(), Some(Ctx::Away)) {
            st.pending.pop_front();
        }
        match away {
            Some(_) => numeric(st, "306", ":You have been marked as being away"),
            None => numeric(st, "305", ":You are no longer marked as being away"),
        }
        return;
    }
    if st.caps.away_notify {
        let line = match away {
            Some(reason) => format!(":{} AWAY :{}", prefix(name), message::one_line(&reason)),
            None => format!(":{} AWAY", prefix(name)),
        };
        message::push(st.sink(), &line);
    }
}

fn whois(st: &mut State, name: &str, rooms: &[String], away: Option<String>, connected: &str) {
    match st.pending.front_mut().map(|p| &mut p.ctx) {
        Some(Ctx::Lookup { found, .. }) => {
            found.push((name.to_string(), away.is_some()));
            return;
        }
        Some(Ctx::Who { mask }) if !is_channel(mask) => {
            let here = if away.is_some() { 'G' } else { 'H' };
            let rest = format!("* {name} {SERVER} {SERVER} {name} {here} :0 {name}");
            return numeric(st, "352", &rest);
        }
        _ => {}
    }
    numeric(st, "311", &format!("{name} {name} {SERVER} * :{name}"));
    numeric(
        st,
        "312",
        &format!("{name} {SERVER} :chatroom, connected since {connected}"),
    );
    if !rooms.is_empty() {
        // As many lines as the list needs, each within 512 bytes.
        let me = st.me();
        let room = message::MAX_CONTENT - format!(":{SERVER} 319 {me} {name} :").len();
        let mut line = String::new();
        for chan in rooms.iter().map(|r| channel(r)) {
            if !line.is_empty() && line.len() + 1 + chan.len() > room {
                numeric(st, "319", &format!("{name} :{line}"));
                line.clear();
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(&chan);
        }
        numeric(st, "319", &format!("{name} :{line}"));
    }
    if let Some(reason) = away {
        numeric(
            st,
            "301",
            &format!("{name} :{}", message::one_line(&reason)),
        );
    }
    if !matches!(st.front(), Some(Ctx::Whois { .. })) {
        numeric(st, "318", &format!("{name} :End of /WHOIS list"));
    }
}

/// `NAME is away[: REASON]`: what the server tells the sender of a direct message to someone
/// away.
pub fn away_notice(text: &str) -> Option<(&str, &str)> {
    let (name, rest) = text.split_once(" is away")?;
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    match rest {
        "" => Some((name, "")),
        _ => rest.strip_prefix(": ").map(|reason| (name, reason)),
    }
}

fn system(st: &mut State, text: &str) {
    if let Some((name, reason)) = away_notice(text) {
        let reason = message::one_line(reason);
        return numeric(st, "301", &format!("{name} :{reason}"));
    }
    notice(st, text);
}

fn error(st: &mut State, code: ErrorCode, text: &str) {
    if code == ErrorCode::BadRequest && text.contains(REFUSED_MARKER) {
        return; // A line refused here, counted by the reader; the client was answered.
    }
    if !st.registered {
        return hello_refused(st, code, text);
    }
    let text = message::one_line(text);
    let (ctx, ended) = st.blame(code == ErrorCode::RateLimited);
    use ErrorCode as E;
    match (code, &ctx) {
        (E::Muted, Some(Ctx::Message { target })) if is_channel(target) => {
            numeric(st, "404", &format!("{target} :{text}"))
        }
        (E::NoSuchUser, Some(Ctx::Message { target })) => {
            numeric(st, "401", &format!("{target} :No such nick/channel"))
        }
        (E::NoSuchUser, Some(Ctx::Whois { name })) => {
            numeric(st, "401", &format!("{name} :No such nick/channel"))
        }
        (E::NoSuchUser | E::NoSuchAccount, Some(Ctx::Moderation { target, .. })) => {
            numeric(st, "401", &format!("{target} :{text}"))
        }
        (E::NoSuchUser, Some(Ctx::Lookup { .. } | Ctx::Who { .. }))
        | (E::NoSuchRoom, Some(Ctx::Names { .. } | Ctx::Who { .. })) => {}
        (E::NotInRoom | E::NoRoom, Some(Ctx::Message { target })) => numeric(
            st,
            "404",
            &format!("{target} :Cannot send to channel: {text}"),
        ),
        (E::NotInRoom, Some(Ctx::Part { channel })) => {
            numeric(st, "442", &format!("{channel} :You're not on that channel"))
        }
        (
            E::NotAllowed,
            Some(Ctx::Moderation {
                channel: Some(c), ..
            }),
        ) => numeric(
            st,
            "482",
            &format!("{c} :You're not channel operator: {text}"),
        ),
        (E::NotAllowed, Some(Ctx::Moderation { channel: None, .. })) => {
            numeric(st, "481", &format!(":Permission Denied: {text}"))
        }
        (E::NameTaken, Some(Ctx::Nick { name })) => numeric(st, "433", &format!("{name} :{text}")),
        (
            E::NameInvalid | E::NameReserved | E::Banned | E::Muted | E::NotAllowed,
            Some(Ctx::Nick { name }),
        ) => numeric(st, "432", &format!("{name} :{text}")),
        (E::TooManyRooms, Some(Ctx::Join { channel })) => {
            numeric(st, "405", &format!("{channel} :{text}"))
        }
        (E::RoomInvalid, Some(Ctx::Join { channel })) => {
            numeric(st, "479", &format!("{channel} :{text}"))
        }
        (E::UnknownCommand, Some(Ctx::Moderation { command, .. })) => {
            numeric(st, "421", &format!("{command} :{text}"))
        }
        _ => notice(st, &text),
    }
    for p in ended {
        st.settle(&p);
        finish(st, p.ctx);
    }
}

/// The answer to a hello that was refused: the client may try again (another NICK, PASS,
/// AUTHENTICATE).
fn hello_refused(st: &mut State, code: ErrorCode, text: &str) {
    st.hello_out = false;
    let sasl = std::mem::take(&mut st.via_sasl);
    let nick = st.nick.clone().unwrap_or_else(|| "*".into());
    let text = message::one_line(text);
    let out = &mut st.out;
    use ErrorCode as E;
    match code {
        E::PasswordRequired | E::LoginFailed | E::LoginLocked | E::LoginBusy if sasl => {
            message::numeric(
                out,
                "904",
                "*",
                &format!(":SASL authentication failed: {text}"),
            )
        }
        E::NameTaken => message::numeric(out, "433", "*", &format!("{nick} :{text}")),
        E::NameInvalid | E::NameReserved => {
            message::numeric(out, "432", "*", &format!("{nick} :{text}"))
        }
        E::PasswordRequired | E::LoginFailed | E::LoginLocked => {
            message::numeric(out, "464", "*", &format!(":Password incorrect: {text}"))
        }
        E::Banned => message::numeric(out, "465", "*", &format!(":{text}")),
        E::HandshakeTimeout => {
            message::push(out, &format!("ERROR :Closing Link: {text}"));
            st.closed = true;
        }
        _ => message::notice(out, "*", &text),
    }
}

/// A pong for one of the pings that end a request's answer: what ends that answer (318,
/// 315...), for it and for any request before it still waiting.
fn pong(st: &mut State, id: Option<u64>) {
    // A join's member list is owed only until the next pong: the join's events are all in.
    if st.names_due.is_some() {
        owe_names(st);
    }
    let Some(id) = id else { return };
    for p in st.pending.through(id) {
        st.settle(&p);
        finish(st, p.ctx);
    }
}

/// The last numerics of a request that is over (what [`State::settle`] leaves to the client).
fn finish(st: &mut State, ctx: Ctx) {
    match ctx {
        Ctx::Whois { name } => numeric(st, "318", &format!("{name} :End of /WHOIS list")),
        Ctx::Who { mask } => numeric(st, "315", &format!("{mask} :End of WHO list")),
        Ctx::Names {
            channel,
            answered: false,
        } => numeric(st, "366", &format!("{channel} :End of /NAMES list")),
        Ctx::List {
            answered: false, ..
        } => numeric(st, "323", ":End of /LIST"),
        Ctx::Lookup { ison, found, .. } => {
            let words: Vec<String> = if ison {
                found.into_iter().map(|(n, _)| n).collect()
            } else {
                found
                    .into_iter()
                    .map(|(n, away)| format!("{n}={}{n}@{SERVER}", if away { '-' } else { '+' }))
                    .collect()
            };
            let code = if ison { "303" } else { "302" };
            numeric(st, code, &format!(":{}", words.join(" ")));
        }
        _ => {}
    }
}

/// The last event: a KICK from each channel when an administrator removed the client, then
/// ERROR.
fn bye(st: &mut State, reason: &str) {
    // Nothing held is worth sending now.
    st.welcome = None;
    st.held.clear();
    let reason = message::one_line(reason);
    if let Some(why) = reason.strip_prefix("you were ")
        && let Some(by) = expelled_by(why)
    {
        let me = st.me();
        for room in st.channels.clone() {
            let text = kick_text(why);
            let line = format!(":{} KICK {} {me} :{text}", prefix(by), channel(&room));
            message::push(&mut st.out, &line);
        }
    }
    message::push(&mut st.out, &format!("ERROR :Closing Link: {reason}"));
    st.closed = true;
}
