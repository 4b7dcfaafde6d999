//! What an IRC client sends: registration, capabilities, SASL and the local answers (PING,
//! MOTD, TOPIC...) are handled here; everything else becomes JSON requests for the
//! connection's reader. Requests are checked with the same rules the reader applies, so a
//! refusal is an IRC numeric and the reader only ever sees requests it takes.

use serde_json::json;

use super::message::{self, Message, SERVER, channel, is_channel};
use super::state::{
    CAPS, Ctx, MAX_LINES_BEFORE_WELCOME, Sasl, State, bracket, emit, refused, request,
};
use crate::proto;

/// Commands that need registration first (answered 451 before it; others get 421).
const NEED_REGISTRATION: &[&str] = &[
    "JOIN", "PART", "PRIVMSG", "NOTICE", "NAMES", "TOPIC", "LIST", "WHO", "WHOIS", "WHOWAS",
    "AWAY", "ISON", "USERHOST", "KICK", "MODE", "MOTD", "VERSION", "TIME", "HELP", "MUTE",
    "UNMUTE", "BAN", "UNBAN", "BANS", "OP", "DEOP",
];

/// A SASL payload comes in pieces of 400 bytes; a PLAIN one is never longer than this.
const MAX_SASL: usize = 1200;

/// Handles one line from the client (without its `\r\n`): replies go to `st.out`, requests
/// for the reader to `json` (one JSON object a line).
///
/// Every line costs the reader something, as every line on the other doors does: a line
/// answered here (PING, CAP, MOTD...) is handed on as a `pong`, which the reader counts
/// against the connection's lines per second and drops. Before registration the handshake
/// has no such count: past [`MAX_LINES_BEFORE_WELCOME`] such lines are refused (the
/// handshake's flood limit counts them).
pub fn line(st: &mut State, bytes: &[u8], json: &mut Vec<u8>) {
    if !st.registered && st.lines_before_welcome >= MAX_LINES_BEFORE_WELCOME {
        if st.lines_before_welcome == MAX_LINES_BEFORE_WELCOME {
            st.lines_before_welcome += 1;
            st.notice("too many lines before registration: the rest are refused");
        }
        return refused(json);
    }
    let before = json.len();
    handle(st, bytes, json);
    if json.len() > before {
        return;
    }
    if st.registered {
        emit(json, &json!({"type": "pong"}));
    } else {
        st.lines_before_welcome += 1;
    }
}

fn handle(st: &mut State, bytes: &[u8], json: &mut Vec<u8>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        st.notice("that line was not UTF-8, and this server speaks UTF-8 only (UTF8ONLY); it was not sent");
        return refused(json);
    };
    let Some(msg) = message::parse(text) else {
        return;
    };
    match msg.command.as_str() {
        "CAP" => cap(st, &msg, json),
        "AUTHENTICATE" => authenticate(st, &msg, json),
        "PING" => match msg.params.last() {
            Some(token) => message::push(
                &mut st.out,
                &format!(":{SERVER} PONG {SERVER} :{}", message::one_line(token)),
            ),
            None => {
                st.numeric("409", ":No origin specified");
                refused(json);
            }
        },
        "PONG" => {
            if st.registered {
                let id = msg.params.last().and_then(|t| t.parse::<u64>().ok());
                emit(json, &json!({"type": "pong", "id": id}));
            }
        }
        "QUIT" => quit(st, &msg, json),
        // Before registration, or after a SASL login granted before the client's NICK and
        // USER (irssi sends them after CAP END).
        "PASS" | "NICK" | "USER" if !st.registered || st.welcome.is_some() => {
            register(st, &msg, json)
        }
        "PASS" | "USER" => {
            st.numeric("462", ":You may not reregister");
            refused(json);
        }
        cmd if !st.registered => {
            if NEED_REGISTRATION.contains(&cmd) {
                st.numeric("451", ":You have not registered");
            } else {
                st.numeric(
                    "421",
                    &format!("{} :Unknown command", message::one_line(cmd)),
                );
            }
            refused(json);
        }
        _ => super::commands::command(st, &msg, json),
    }
}

/// 461, and the line counts as refused.
pub fn need_more(st: &mut State, command: &str, json: &mut Vec<u8>) {
    st.numeric("461", &format!("{command} :Not enough parameters"));
    refused(json);
}

/// PASS, NICK and USER before registration.
fn register(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(first) = msg.param(0).filter(|p| !p.is_empty()) else {
        if msg.command == "NICK" {
            st.numeric("431", ":No nickname given");
            return refused(json);
        }
        return need_more(st, &msg.command, json);
    };
    if st.registered {
        // Granted by SASL, the welcome held: the account's name is the nick.
        match msg.command.as_str() {
            "NICK" => st.nick_given = true,
            "USER" => st.user = true,
            _ => {}
        }
        return st.release_when_ready();
    }
    match msg.command.as_str() {
        "PASS" => st.pass = Some(first.to_string()),
        "NICK" => {
            if let Err(e) = proto::validate_name(first) {
                let nick = message::one_line(first);
                st.numeric("432", &format!("{nick} :Erroneous nickname: {e}"));
                return refused(json);
            }
            st.nick = Some(first.to_string());
            st.nick_given = true;
        }
        _ => {
            if msg.params.len() < 4 {
                return need_more(st, "USER", json);
            }
            st.user = true;
        }
    }
    st.ready = true;
    try_register(st, json);
}

/// Sends the hello once NICK and USER are in, capability negotiation is over and nothing
/// else waits (a hello, a SASL exchange).
pub fn try_register(st: &mut State, json: &mut Vec<u8>) {
    if st.registered || st.hello_out || !st.ready || st.negotiating || !st.user {
        return;
    }
    if st.sasl != Sasl::Idle {
        return;
    }
    let Some(nick) = st.nick.clone() else {
        return;
    };
    let mut hello = json!({"type": "hello", "name": nick});
    if let Some(password) = &st.pass {
        hello["password"] = json!(password);
    }
    emit(json, &hello);
    st.hello_out = true;
    st.ready = false;
    st.via_sasl = false;
}

/// The capabilities this connection offers, as `CAP LS` lists them.
fn offered(st: &State, v302: bool) -> Vec<&'static str> {
    let mut caps = CAPS.to_vec();
    if st.settings.tls {
        caps.push(if v302 { "sasl=PLAIN" } else { "sasl" });
    }
    caps
}

fn cap(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(sub) = msg.param(0).map(str::to_ascii_uppercase) else {
        return need_more(st, "CAP", json);
    };
    let me = st.me();
    match sub.as_str() {
        "LS" => {
            if !st.registered {
                st.negotiating = true;
            }
            let v302 = msg.param(1).and_then(|v| v.parse::<u32>().ok()) >= Some(302);
            let list = offered(st, v302).join(" ");
            message::push(&mut st.out, &format!(":{SERVER} CAP {me} LS :{list}"));
        }
        "LIST" => {
            let list = st.caps.names().join(" ");
            message::push(&mut st.out, &format!(":{SERVER} CAP {me} LIST :{list}"));
        }
        "REQ" => {
            if !st.registered {
                st.negotiating = true;
            }
            let wanted = msg.param(1).unwrap_or("").trim();
            let known = offered(st, false);
            let all_known = !wanted.is_empty()
                && wanted
                    .split_whitespace()
                    .all(|c| known.contains(&c.strip_prefix('-').unwrap_or(c)));
            // Messages are encoded for a connection at registration, with their time or
            // without: server-time cannot change after that.
            let fixed = st.registered || st.hello_out;
            let changes_time = wanted
                .split_whitespace()
                .any(|c| match c.strip_prefix('-') {
                    Some("server-time") => st.caps.server_time,
                    _ => c == "server-time" && !st.caps.server_time,
                });
            let verdict = if all_known && !(fixed && changes_time) {
                for c in wanted.split_whitespace() {
                    match c.strip_prefix('-') {
                        Some(off) => st.caps.set(off, false),
                        None => st.caps.set(c, true),
                    };
                }
                "ACK"
            } else {
                "NAK"
            };
            let wanted = message::one_line(wanted);
            message::push(
                &mut st.out,
                &format!(":{SERVER} CAP {me} {verdict} :{wanted}"),
            );
        }
        "END" => {
            if st.negotiating {
                st.negotiating = false;
                st.ready = true;
            }
            try_register(st, json);
            st.release_when_ready();
        }
        other => {
            let other = message::one_line(other);
            st.numeric("410", &format!("{other} :Invalid CAP command"));
            refused(json);
        }
    }
}

/// SASL PLAIN (RFC 4616), on the TLS port only: the credentials become the hello.
fn authenticate(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    let Some(arg) = msg.param(0) else {
        return need_more(st, "AUTHENTICATE", json);
    };
    if st.registered {
        st.numeric("907", ":You have already authenticated");
        return;
    }
    if !st.settings.tls {
        st.numeric(
            "904",
            ":SASL authentication failed: SASL PLAIN is offered only on the TLS port",
        );
        return;
    }
    if !st.caps.sasl || st.hello_out {
        st.numeric(
            "904",
            ":SASL authentication failed: ask for it first (CAP REQ :sasl)",
        );
        return;
    }
    if arg == "*" {
        st.sasl = Sasl::Idle;
        st.numeric("906", ":SASL authentication aborted");
        return;
    }
    let payload = match &mut st.sasl {
        Sasl::Idle => {
            if arg.eq_ignore_ascii_case("PLAIN") {
                st.sasl = Sasl::Payload(String::new());
                message::push(&mut st.out, "AUTHENTICATE +");
            } else {
                st.numeric("908", "PLAIN :are available SASL mechanisms");
                st.numeric("904", ":SASL authentication failed: only PLAIN is offered");
            }
            return;
        }
        Sasl::Payload(so_far) => {
            if arg != "+" {
                so_far.push_str(arg);
            }
            if arg.len() == 400 && so_far.len() < MAX_SASL {
                return; // More to come.
            }
            std::mem::take(so_far)
        }
    };
    st.sasl = Sasl::Idle;
    match plain_credentials(&payload) {
        Some((name, password)) => {
            emit(
                json,
                &json!({"type": "hello", "name": name, "password": password}),
            );
            st.hello_out = true;
            st.via_sasl = true;
            st.ready = false;
        }
        None => st.numeric(
            "904",
            ":SASL authentication failed: send base64 of authzid NUL authcid NUL password",
        ),
    }
}

/// The account name and password of a SASL PLAIN payload (`authzid\0authcid\0password`, in
/// base64); an authorization identity, if given, must be the account itself.
pub fn plain_credentials(payload: &str) -> Option<(String, String)> {
    let bytes = message::base64_decode(payload)?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || proto::validate_name(authcid).is_err() || password.is_empty() {
        return None;
    }
    if !authzid.is_empty() && !proto::names::same(authzid, authcid) {
        return None;
    }
    Some((authcid.to_string(), password.to_string()))
}

fn quit(st: &mut State, msg: &Message<'_>, json: &mut Vec<u8>) {
    if !st.registered && !st.hello_out {
        // The handshake takes `/quit` before a name, in any mode.
        json.extend_from_slice(b"/quit\n");
        return;
    }
    let reason = msg
        .param(0)
        .filter(|r| !r.trim().is_empty() && proto::validate_reason(r).is_ok());
    emit(json, &json!({"type": "quit", "reason": reason}));
}

/// A channel's room name for a JSON request (without the `#`), if it is one.
pub fn room_of(target: &str) -> Option<&str> {
    (is_channel(target) && proto::validate_room(target).is_ok()).then(|| &target[1..])
}

/// Sends an ACTION or a message to a channel the client is in.
pub fn to_channel(st: &mut State, target: &str, text: &str, action: bool, json: &mut Vec<u8>) {
    let Some(room) = room_of(target) else {
        st.numeric(
            "403",
            &format!("{} :No such channel", message::one_line(target)),
        );
        return refused(json);
    };
    let chan = channel(room);
    // Both name their room: nothing depends on which room the server takes as current.
    let kind = if action { "me" } else { "say" };
    let v = json!({"type": kind, "room": room, "text": text});
    request(st, json, &v, Ctx::Message { target: chan })
}

/// Sends a WHOIS for each of `names` and one ping after them all (ISON, USERHOST).
pub fn lookup(st: &mut State, names: Vec<String>, ison: bool, json: &mut Vec<u8>) {
    for name in &names {
        emit(json, &json!({"type": "whois", "name": name}));
    }
    let ctx = Ctx::Lookup {
        ison,
        asked: names,
        found: Vec::new(),
        missing: 0,
    };
    bracket(st, json, ctx);
}
