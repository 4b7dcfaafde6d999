//! The translation, without sockets: client lines in, JSON requests and replies out; JSON
//! events in, IRC lines out.

use serde_json::Value;

use super::message::{self, MAX_LINE};
use super::state::{Settings, State};
use super::{ban_target, client, plain_credentials, server};
use crate::proto::{ChatMessage, ErrorCode, Kind, ServerMsg, Standing};

pub(super) fn state(tls: bool) -> State {
    State::new(Settings {
        tls,
        version: "chatroom 0.1.0".into(),
        max_rooms: 100,
    })
}

/// Feeds client lines; returns the JSON requests they made.
pub(super) fn send(st: &mut State, lines: &[&str]) -> Vec<Value> {
    let mut json = Vec::new();
    for line in lines {
        client::line(st, line.as_bytes(), &mut json);
    }
    String::from_utf8(json)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Feeds one server event; returns the IRC lines it made (and whatever else was queued).
pub(super) fn event(st: &mut State, msg: ServerMsg) -> Vec<String> {
    server::event(st, msg);
    take(st)
}

/// The lines queued for the client.
pub(super) fn take(st: &mut State) -> Vec<String> {
    let out = std::mem::take(&mut st.out);
    String::from_utf8(out)
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn welcome(name: &str) -> ServerMsg {
    ServerMsg::Welcome {
        conn: 1,
        name: name.into(),
        room: "lobby".into(),
        members: 1,
        role: Standing::Guest,
        server: "chatroom 0.1.0".into(),
    }
}

/// A client registered as `alice`, in #lobby and #ops, nothing pending.
pub(super) fn registered() -> State {
    let mut st = state(false);
    send(&mut st, &["NICK alice", "USER a 0 * :Alice"]);
    event(&mut st, welcome("alice"));
    for room in ["lobby", "ops"] {
        let joined = ServerMsg::Joined {
            ts: "t".into(),
            room: room.into(),
            name: "alice".into(),
        };
        event(&mut st, joined);
        event(&mut st, history_end(room));
    }
    st
}

fn history_end(room: &str) -> ServerMsg {
    ServerMsg::HistoryEnd {
        room: room.into(),
        count: 0,
    }
}

fn message(from: &str, room: &str, to: Option<&str>, text: &str, kind: Kind) -> ServerMsg {
    ServerMsg::Message(ChatMessage {
        id: 1,
        ts: "2026-11-24T11:46:31.022Z".into(),
        room: room.into(),
        from: from.into(),
        to: to.map(Into::into),
        kind,
        text: text.into(),
        history: false,
    })
}

fn error(code: ErrorCode, text: &str) -> ServerMsg {
    ServerMsg::failure(code, text.into())
}

pub(super) fn types(reqs: &[Value]) -> Vec<String> {
    reqs.iter()
        .map(|r| r["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn lines_parse_with_tags_sources_and_trailing_parameters() {
    let m = message::parse("@time=x :alice!a@h privmsg #ops :hello there").unwrap();
    assert_eq!(m.command, "PRIVMSG");
    assert_eq!(m.params, vec!["#ops", "hello there"]);
    let m = message::parse("USER  a 0 * :Real Name").unwrap();
    assert_eq!(m.params, vec!["a", "0", "*", "Real Name"]);
    let m = message::parse("PRIVMSG #a ::-)").unwrap();
    assert_eq!(m.params, vec!["#a", ":-)"]);
    assert!(message::parse("").is_none());
    assert!(message::parse(":only-a-source").is_none());
    let many = format!("CMD {}", "p ".repeat(20));
    assert_eq!(message::parse(&many).unwrap().params.len(), 15);
}

#[test]
fn long_and_multi_line_messages_become_lines_of_at_most_512_bytes() {
    let mut out = Vec::new();
    let text = format!(
        "{}\nsecond line\n\n{}",
        "é".repeat(400),
        "word ".repeat(200)
    );
    message::privmsg(&mut out, None, "alice", "#ops", &text, true);
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.split_terminator("\r\n").collect();
    assert!(lines.len() >= 5, "{lines:?}");
    for line in &lines {
        assert!(line.len() + 2 <= MAX_LINE, "{} bytes: {line}", line.len());
        assert!(line.starts_with(":alice!alice@chatroom PRIVMSG #ops :\u{1}ACTION "));
        assert!(line.ends_with('\u{1}'));
    }
    assert!(lines.iter().any(|l| l.contains("second line")));
}

#[test]
fn sasl_plain_credentials_are_read_from_base64() {
    assert_eq!(message::base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(message::base64_decode("aGk").unwrap(), b"hi");
    assert!(message::base64_decode("a$==").is_none());
    // "\0bob\0secret" and "bob\0bob\0secret"
    assert_eq!(
        plain_credentials("AGJvYgBzZWNyZXQ="),
        Some(("bob".into(), "secret".into()))
    );
    assert_eq!(
        plain_credentials("Ym9iAGJvYgBzZWNyZXQ="),
        Some(("bob".into(), "secret".into()))
    );
    // "carol\0bob\0secret": another authorization identity is refused.
    assert_eq!(plain_credentials("Y2Fyb2wAYm9iAHNlY3JldA=="), None);
}

#[test]
fn ban_masks_become_names_or_addresses() {
    assert_eq!(ban_target("bob").as_deref(), Some("bob"));
    assert_eq!(ban_target("bob!*@*").as_deref(), Some("bob"));
    assert_eq!(
        ban_target("*!*@203.0.113.7").as_deref(),
        Some("203.0.113.7")
    );
    assert_eq!(ban_target("*!*@10.0.0.0/8").as_deref(), Some("10.0.0.0/8"));
    assert_eq!(ban_target("*!*@*"), None);
    assert_eq!(ban_target("b*b"), None);
    assert_eq!(ban_target("*!*@*.example.org"), None);
}

#[test]
fn registration_sends_the_hello_once_nick_and_user_are_in() {
    let mut st = state(false);
    assert!(send(&mut st, &["NICK alice"]).is_empty());
    let reqs = send(&mut st, &["USER a 0 * :Alice"]);
    assert_eq!(
        reqs,
        vec![serde_json::json!({"type":"hello","name":"alice"})]
    );
    let lines = event(&mut st, welcome("alice"));
    let codes: Vec<&str> = lines.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(codes, ["001", "002", "003", "004", "005", "422"]);
    assert!(lines[4].contains("CASEMAPPING=ascii") && lines[4].contains("NICKLEN=32"));
    assert!(lines[4].contains("CHANNELLEN=65") && lines[4].contains("PREFIX=(o)@"));
}

#[test]
fn capability_negotiation_holds_registration_until_cap_end() {
    let mut st = state(false);
    send(&mut st, &["CAP LS 302"]);
    assert_eq!(
        take(&mut st),
        [":chatroom CAP * LS :away-notify echo-message server-time"]
    );
    let reqs = send(
        &mut st,
        &[
            "PASS hunter22",
            "NICK alice",
            "USER a 0 * :A",
            "CAP REQ :echo-message sasl",
        ],
    );
    assert!(reqs.is_empty());
    // sasl is not offered on the plain port: the whole request is refused.
    assert_eq!(take(&mut st), [":chatroom CAP * NAK :echo-message sasl"]);
    send(&mut st, &["CAP REQ :echo-message"]);
    assert_eq!(take(&mut st), [":chatroom CAP * ACK :echo-message"]);
    let reqs = send(&mut st, &["CAP END"]);
    assert_eq!(
        reqs,
        vec![serde_json::json!({"type":"hello","name":"alice","password":"hunter22"})]
    );
    assert!(st.caps.echo_message);
}

#[test]
fn a_refused_hello_is_a_numeric_and_a_new_nick_tries_again() {
    let mut st = state(false);
    send(&mut st, &["NICK bob", "USER b 0 * :B"]);
    let lines = event(
        &mut st,
        error(ErrorCode::NameTaken, "the name bob is taken"),
    );
    assert_eq!(lines, [":chatroom 433 * bob :the name bob is taken"]);
    let lines = event(
        &mut st,
        error(ErrorCode::LoginFailed, "invalid name or password"),
    );
    assert!(lines[0].starts_with(":chatroom 464 * :"), "{lines:?}");
    assert_eq!(send(&mut st, &["NICK bob_"])[0]["name"], "bob_");
    // A command before the welcome is refused (and counted by the reader).
    st.hello_out = false;
    let reqs = send(&mut st, &["JOIN #ops"]);
    assert_eq!(types(&reqs), ["irc-refused"]);
    assert_eq!(take(&mut st), [":chatroom 451 * :You have not registered"]);
}

#[test]
fn sasl_plain_is_refused_on_the_plain_port_and_logs_in_over_tls() {
    let mut st = state(false);
    send(&mut st, &["CAP LS 302", "AUTHENTICATE PLAIN"]);
    let lines = take(&mut st);
    assert!(lines[1].starts_with(":chatroom 904 * :"), "{lines:?}");

    let mut st = state(true);
    send(&mut st, &["CAP LS 302"]);
    assert!(take(&mut st)[0].ends_with("server-time sasl=PLAIN"));
    send(&mut st, &["NICK zed", "USER z 0 * :Z", "CAP REQ :sasl"]);
    assert_eq!(send(&mut st, &["AUTHENTICATE PLAIN"]), Vec::<Value>::new());
    assert_eq!(take(&mut st).last().unwrap(), "AUTHENTICATE +");
    let reqs = send(&mut st, &["AUTHENTICATE AGJvYgBzZWNyZXQ="]);
    assert_eq!(
        reqs,
        vec![serde_json::json!({"type":"hello","name":"bob","password":"secret"})]
    );
    // Granted before CAP END: 900 and 903 now, the welcome only after CAP END.
    let mut granted = welcome("bob");
    if let ServerMsg::Welcome { role, .. } = &mut granted {
        *role = Standing::Member;
    }
    let lines = event(&mut st, granted);
    assert!(lines[0].starts_with(":chatroom 900 bob bob!bob@chatroom bob :"));
    assert!(lines[1].starts_with(":chatroom 903 bob :"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    let joined = ServerMsg::Joined {
        ts: "t".into(),
        room: "lobby".into(),
        name: "bob".into(),
    };
    assert!(event(&mut st, joined).is_empty());
    send(&mut st, &["CAP END"]);
    let lines = take(&mut st);
    assert!(lines[0].starts_with(":chatroom 001 bob "));
    assert_eq!(lines.last().unwrap(), ":bob!bob@chatroom JOIN #lobby");
}

#[test]
fn a_sasl_login_before_nick_and_user_waits_for_them() {
    // irssi's order: SASL first, CAP END, then NICK and USER.
    let mut st = state(true);
    send(
        &mut st,
        &["CAP LS 302", "CAP REQ :sasl", "AUTHENTICATE PLAIN"],
    );
    let reqs = send(&mut st, &["AUTHENTICATE AGNhcm9sAHB3"]);
    assert_eq!(reqs[0]["name"], "carol");
    take(&mut st);
    let lines = event(&mut st, welcome("carol"));
    assert_eq!(
        lines,
        [":chatroom 903 carol :SASL authentication successful"]
    );
    send(&mut st, &["CAP END"]);
    assert!(take(&mut st).is_empty());
    let reqs = send(&mut st, &["NICK whatever", "USER carol 0 * :Carol"]);
    assert_eq!(
        types(&reqs),
        ["pong", "pong"],
        "answered here, counted by the reader"
    );
    let lines = take(&mut st);
    assert!(lines[0].starts_with(":chatroom 001 carol "), "{lines:?}");
    assert!(!lines.iter().any(|l| l.contains(" 462 ")));
    // Registered now: USER again is refused.
    send(&mut st, &["USER carol 0 * :Carol"]);
    assert!(take(&mut st)[0].contains(" 462 carol "));
}

#[test]
fn a_failed_sasl_login_is_904() {
    let mut st = state(true);
    send(
        &mut st,
        &[
            "CAP REQ :sasl",
            "AUTHENTICATE PLAIN",
            "AUTHENTICATE AGJvYgB4",
        ],
    );
    take(&mut st);
    let lines = event(
        &mut st,
        error(ErrorCode::LoginFailed, "invalid name or password"),
    );
    assert!(lines[0].starts_with(":chatroom 904 * :SASL authentication failed"));
    assert!(!st.hello_out);
}

#[test]
fn messages_map_both_ways_and_our_own_echo_is_dropped() {
    let mut st = registered();
    let reqs = send(&mut st, &["PRIVMSG #ops,bob :hi there"]);
    assert_eq!(
        reqs[0],
        serde_json::json!({"type":"say","room":"ops","text":"hi there"})
    );
    assert_eq!(
        reqs[1],
        serde_json::json!({"type":"msg","to":"bob","text":"hi there"})
    );
    assert_eq!(st.pending.len(), 2);
    assert!(
        event(
            &mut st,
            message("alice", "ops", None, "hi there", Kind::Message)
        )
        .is_empty()
    );
    assert!(
        event(
            &mut st,
            message("alice", "", Some("bob"), "hi there", Kind::Direct)
        )
        .is_empty()
    );
    assert!(st.pending.is_empty());
    let lines = event(&mut st, message("bob", "ops", None, "waves", Kind::Action));
    assert_eq!(
        lines,
        [":bob!bob@chatroom PRIVMSG #ops :\u{1}ACTION waves\u{1}"]
    );
    let lines = event(
        &mut st,
        message("bob", "", Some("alice"), "psst", Kind::Direct),
    );
    assert_eq!(lines, [":bob!bob@chatroom PRIVMSG alice :psst"]);
    let lines = event(
        &mut st,
        message("bob", "", Some("alice"), "* bob pokes", Kind::Direct),
    );
    assert_eq!(
        lines,
        [":bob!bob@chatroom PRIVMSG alice :\u{1}ACTION pokes\u{1}"]
    );
}

#[test]
fn an_action_names_its_channel() {
    let mut st = registered();
    for room in ["ops", "lobby", "elsewhere"] {
        let reqs = send(
            &mut st,
            &[&format!("PRIVMSG #{room} :\u{1}ACTION waves\u{1}")],
        );
        let want = serde_json::json!({"type": "me", "room": room, "text": "waves"});
        assert_eq!(reqs, vec![want]);
    }
    // The server refuses a room the client is not in: 404.
    take(&mut st);
    for room in ["ops", "lobby"] {
        event(&mut st, message("alice", room, None, "waves", Kind::Action));
    }
    let lines = event(
        &mut st,
        error(ErrorCode::NotInRoom, "you are not in elsewhere"),
    );
    assert!(lines[0].contains(" 404 alice #elsewhere "), "{lines:?}");
    // To a nick: a direct message that reads as an action.
    let reqs = send(&mut st, &["PRIVMSG bob :\u{1}ACTION pokes\u{1}"]);
    assert_eq!(reqs[0]["text"], "* alice pokes");
}

#[test]
fn a_whois_ends_with_318_at_its_pong_and_an_unknown_nick_is_401() {
    let mut st = registered();
    let reqs = send(&mut st, &["WHOIS ghost"]);
    assert_eq!(types(&reqs), ["whois", "ping"]);
    let id = reqs[1]["id"].as_u64();
    let lines = event(&mut st, error(ErrorCode::NoSuchUser, "nobody named ghost"));
    assert_eq!(lines, [":chatroom 401 alice ghost :No such nick/channel"]);
    let lines = event(&mut st, ServerMsg::Pong { id });
    assert_eq!(lines, [":chatroom 318 alice ghost :End of /WHOIS list"]);
    assert!(st.pending.is_empty());
}

#[test]
fn who_and_names_read_the_same_member_list_differently() {
    let mut st = registered();
    let users = || ServerMsg::Users {
        room: "ops".into(),
        users: vec!["alice".into(), "bob".into()],
        away: [("bob".to_string(), "lunch".to_string())].into(),
    };
    let reqs = send(&mut st, &["WHO #ops", "NAMES #ops"]);
    assert_eq!(types(&reqs), ["who", "ping", "who", "ping"]);
    let lines = event(&mut st, users());
    assert_eq!(
        lines[1],
        ":chatroom 352 alice #ops bob chatroom chatroom bob G :0 bob"
    );
    let lines = event(
        &mut st,
        ServerMsg::Pong {
            id: reqs[1]["id"].as_u64(),
        },
    );
    assert_eq!(lines, [":chatroom 315 alice #ops :End of WHO list"]);
    let lines = event(&mut st, users());
    assert_eq!(
        lines,
        [
            ":chatroom 353 alice = #ops :alice bob",
            ":chatroom 366 alice #ops :End of /NAMES list"
        ]
    );
    assert!(
        event(
            &mut st,
            ServerMsg::Pong {
                id: reqs[3]["id"].as_u64()
            }
        )
        .is_empty()
    );
}

#[test]
fn a_join_gets_its_member_list_even_in_a_room_too_big_for_one() {
    let mut st = registered();
    let reqs = send(&mut st, &["JOIN #big"]);
    assert_eq!(reqs[0], serde_json::json!({"type":"join","room":"big"}));
    let joined = ServerMsg::Joined {
        ts: "t".into(),
        room: "big".into(),
        name: "alice".into(),
    };
    assert_eq!(event(&mut st, joined), [":alice!alice@chatroom JOIN #big"]);
    // No `users` (above --notice-limit): the end of history ends the names.
    let lines = event(&mut st, history_end("big"));
    assert_eq!(lines, [":chatroom 366 alice #big :End of /NAMES list"]);
    assert!(st.in_channel("#big"));
}

#[test]
fn others_leaving_read_as_part_quit_or_kick() {
    let mut st = registered();
    let left = |room: &str, reason: &str| ServerMsg::Left {
        ts: "t".into(),
        room: room.into(),
        name: "bob".into(),
        reason: reason.into(),
    };
    assert_eq!(
        event(&mut st, left("ops", "left")),
        [":bob!bob@chatroom PART #ops"]
    );
    assert_eq!(
        event(&mut st, left("ops", "quit: lunch")),
        [":bob!bob@chatroom QUIT :Quit: lunch"]
    );
    // The same quit seen in a second shared channel is one QUIT.
    assert!(event(&mut st, left("lobby", "quit: lunch")).is_empty());
    assert_eq!(
        event(&mut st, left("ops", "kicked by boss: spam")),
        [":boss!boss@chatroom KICK #ops bob :spam"]
    );
}

#[test]
fn errors_become_numerics_by_what_was_asked() {
    let mut st = registered();
    send(&mut st, &["KICK #ops bob :bye"]);
    let lines = event(
        &mut st,
        error(ErrorCode::NotAllowed, "only administrators may use /kick"),
    );
    assert!(
        lines[0].starts_with(":chatroom 482 alice #ops :"),
        "{lines:?}"
    );
    let mut st = registered();
    send(&mut st, &["NICK bob"]);
    let lines = event(&mut st, error(ErrorCode::NameTaken, "taken"));
    assert_eq!(lines, [":chatroom 433 alice bob :taken"]);
    let mut st = registered();
    send(&mut st, &["PRIVMSG #ops :hi"]);
    let lines = event(&mut st, error(ErrorCode::Muted, "you are muted"));
    assert_eq!(lines, [":chatroom 404 alice #ops :you are muted"]);
    assert!(st.pending.is_empty());
    // The reader's answer to a line refused here is not shown twice.
    let marker = error(
        ErrorCode::BadRequest,
        "unknown variant `irc-refused`, expected ...",
    );
    assert!(event(&mut st, marker).is_empty());
}

#[test]
fn local_commands_are_answered_and_refusals_counted() {
    let mut st = registered();
    let reqs = send(
        &mut st,
        &[
            "PING :abc",
            "TOPIC #ops",
            "MODE #ops",
            "FROB",
            "PRIVMSG #ops",
        ],
    );
    let counted = ["pong", "pong", "pong", "irc-refused", "irc-refused"];
    assert_eq!(types(&reqs), counted);
    assert_eq!(
        take(&mut st),
        [
            ":chatroom PONG chatroom :abc",
            ":chatroom 331 alice #ops :No topic is set",
            ":chatroom 324 alice #ops +",
            ":chatroom 421 alice FROB :Unknown command",
            ":chatroom 412 alice :No text to send",
        ]
    );
    let reqs = send(
        &mut st,
        &["PONG :7", "MODE #ops +o bob", "MODE #ops -b *!*@10.0.0.1"],
    );
    assert_eq!(reqs[0], serde_json::json!({"type":"pong","id":7}));
    assert_eq!(reqs[1]["line"], "/op bob");
    assert_eq!(reqs[3]["line"], "/unban 10.0.0.1");
}

#[test]
fn presence_ping_away_and_bye_are_rendered() {
    let mut st = registered();
    let ping = event(&mut st, ServerMsg::Ping { id: 3 });
    assert_eq!(ping, ["PING :3"]);
    let away = |name: &str, away: Option<&str>| ServerMsg::Presence {
        ts: "t".into(),
        name: name.into(),
        away: away.map(Into::into),
    };
    // Without away-notify others' away status is not pushed; our own is 306/305.
    assert!(event(&mut st, away("bob", Some("lunch"))).is_empty());
    st.caps.away_notify = true;
    assert_eq!(
        event(&mut st, away("bob", Some("lunch"))),
        [":bob!bob@chatroom AWAY :lunch"]
    );
    assert!(event(&mut st, away("alice", Some("x")))[0].contains(" 306 alice "));
    let system = ServerMsg::System {
        ts: "t".into(),
        text: "bob is away: lunch".into(),
    };
    assert_eq!(event(&mut st, system), [":chatroom 301 alice bob :lunch"]);
    let bye = ServerMsg::Bye {
        ts: "t".into(),
        reason: "you were kicked by boss: spam".into(),
    };
    let lines = event(&mut st, bye);
    assert_eq!(lines[0], ":boss!boss@chatroom KICK #lobby alice :spam");
    assert_eq!(
        lines.last().unwrap(),
        "ERROR :Closing Link: you were kicked by boss: spam"
    );
}
