//! A hostile member against the translation, without sockets: refusals for the rate that
//! leave the order of answers uncertain, floods of JOIN and PART, lines answered here, and
//! capabilities changed after registration.

use super::state::{MAX_LINES_BEFORE_WELCOME, MAX_PENDING, ROOMS_SLACK};
use super::tests::{event, registered, send, state, types};
use crate::proto::{ChatMessage, ErrorCode, Kind, ServerMsg};

fn joined(room: &str) -> ServerMsg {
    ServerMsg::Joined {
        ts: "t".into(),
        room: room.into(),
        name: "alice".into(),
    }
}

fn slow_down() -> ServerMsg {
    ServerMsg::Error {
        code: ErrorCode::RateLimited,
        message: "slow down: too many requests; retry in 0.2 s".into(),
        retry_after_ms: Some(200),
    }
}

fn whois(name: &str) -> ServerMsg {
    ServerMsg::Whois {
        name: name.into(),
        rooms: vec!["ops".into()],
        away: None,
        connected: "2026-11-24T11:00:00Z".into(),
    }
}

/// Finding 1: the ping after a WHOIS refused for the rate ends the WHOIS (318), and an
/// ACTION never trusts a room the server did not confirm.
#[test]
fn a_refused_ping_ends_its_request_and_an_action_never_trusts_a_stale_room() {
    let mut st = registered();
    let reqs = send(&mut st, &["WHOIS bob"]);
    assert_eq!(types(&reqs), ["whois", "ping"]);
    event(&mut st, whois("bob"));
    // No pong will come: the ping was refused.
    let lines = event(&mut st, slow_down());
    assert!(
        lines.iter().any(|l| l.contains(" 318 alice bob ")),
        "{lines:?}"
    );
    assert_eq!(st.pending.len(), 0);

    // An ACTION names its room: whatever the server takes as current, it goes to #lobby.
    let reqs = send(&mut st, &["PRIVMSG #lobby :\u{1}ACTION waves\u{1}"]);
    assert_eq!(
        reqs,
        vec![serde_json::json!({"type": "me", "room": "lobby", "text": "waves"})]
    );
}

/// Finding 1: a request forgotten past the limit never makes a later answer read as another
/// room's.
#[test]
fn a_forgotten_request_never_labels_an_answer_with_another_room() {
    let mut st = registered();
    send(&mut st, &["PRIVMSG #ops :first"]);
    for i in 0..MAX_PENDING + 50 {
        send(&mut st, &[&format!("PRIVMSG #lobby :flood {i}")]);
    }
    assert!(st.pending.len() <= MAX_PENDING, "{}", st.pending.len());
    // The answer to the first message comes at last: it must not be shown as #lobby's.
    let muted = ServerMsg::failure(ErrorCode::Muted, "you are muted".into());
    let lines = event(&mut st, muted);
    assert!(
        !lines.iter().any(|l| l.contains("#lobby")),
        "read as another room's: {lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("you are muted")),
        "{lines:?}"
    );
    // An ACTION names its room; in doubt, a ping follows it, whose pong makes the order
    // certain again and ends what came before.
    let reqs = send(&mut st, &["PRIVMSG #ops :\u{1}ACTION nods\u{1}"]);
    assert_eq!(types(&reqs), ["me", "ping"], "{reqs:?}");
    assert_eq!(reqs[0]["room"], "ops");
    let id = reqs.iter().find(|r| r["type"] == "ping").unwrap()["id"].as_u64();
    event(&mut st, ServerMsg::Pong { id });
    assert!(st.pending.len() <= 1, "{}", st.pending.len());
}

/// Finding 2: JOIN and PART floods, answered or not, keep what the state holds bounded.
#[test]
fn join_and_part_floods_keep_the_state_bounded() {
    let mut st = registered();
    let most = state(false).settings.max_rooms + ROOMS_SLACK;
    for i in 0..3_000 {
        send(&mut st, &[&format!("JOIN #r{i}"), &format!("PART #p{i}")]);
        if i % 3 == 0 {
            // Some are refused for the rate, their pings too.
            event(&mut st, slow_down());
            event(&mut st, slow_down());
        }
        assert!(st.joining.len() <= most, "{} joining", st.joining.len());
        assert!(st.parting.len() <= most, "{} parting", st.parting.len());
        assert!(st.pending.len() <= MAX_PENDING);
    }
    // The same channel again and again is one entry.
    let mut st = registered();
    for _ in 0..1_000 {
        send(&mut st, &["PART #same", "JOIN #again"]);
    }
    assert_eq!(st.parting.len(), 1);
    assert_eq!(st.joining.len(), 1);
}

/// Finding 3: a JOIN answered by an error or refused for the rate (its ping too) leaves the
/// channel joinable.
#[test]
fn a_channel_stays_joinable_after_a_refused_join() {
    let mut st = registered();
    assert_eq!(types(&send(&mut st, &["JOIN #x"])), ["join", "ping"]);
    event(&mut st, slow_down());
    event(&mut st, slow_down());
    let reqs = send(&mut st, &["JOIN #x"]);
    assert_eq!(types(&reqs), ["join", "ping"], "JOIN #x ignored");

    let mut st = registered();
    send(&mut st, &["JOIN #y"]);
    let full = ServerMsg::failure(ErrorCode::TooManyRooms, "you are in 100 rooms".into());
    assert!(event(&mut st, full)[0].contains(" 405 alice #y "));
    event(&mut st, slow_down());
    assert_eq!(types(&send(&mut st, &["JOIN #y"])), ["join", "ping"]);
    // And once joined, it is a channel like any other.
    event(&mut st, joined("y"));
    assert!(st.in_channel("#y"));
}

/// Finding 4: every line answered here is handed on to be counted; before registration,
/// where nothing counts them, they are refused past a limit.
#[test]
fn lines_answered_here_are_counted() {
    let mut st = registered();
    for line in [
        "PING :x",
        "CAP LS",
        "CAP LIST",
        "TOPIC #ops",
        "MODE #ops",
        "MODE alice",
        "MOTD",
        "VERSION",
        "TIME",
        "WHOWAS bob",
        "PRIVMSG bob :\u{1}VERSION\u{1}",
        "",
        ":alice",
    ] {
        let reqs = send(&mut st, &[line]);
        assert!(!reqs.is_empty(), "{line:?} was not handed on");
    }

    let mut st = state(false);
    let mut refused = 0;
    for _ in 0..500 {
        let reqs = send(&mut st, &["PING :x"]);
        refused += types(&reqs).iter().filter(|t| *t == "irc-refused").count();
    }
    let out = String::from_utf8(std::mem::take(&mut st.out)).unwrap();
    let pongs = out.matches(" PONG ").count();
    assert!(
        pongs <= MAX_LINES_BEFORE_WELCOME as usize,
        "{pongs} answered"
    );
    assert_eq!(refused, 500 - pongs);
}

/// Finding 8: `server-time` is fixed at registration; the other capabilities still change.
#[test]
fn server_time_cannot_change_after_registration() {
    let mut st = state(false);
    send(&mut st, &["CAP REQ :server-time"]);
    assert!(event(&mut st, ServerMsg::Pong { id: None })[0].contains(" ACK "));
    assert!(st.caps.server_time);

    let mut st = registered();
    for (req, verdict) in [
        ("CAP REQ :server-time", "NAK"),
        ("CAP REQ :echo-message server-time", "NAK"),
        ("CAP REQ :echo-message away-notify", "ACK"),
        ("CAP REQ :-echo-message", "ACK"),
        ("CAP REQ :-server-time", "ACK"),
    ] {
        send(&mut st, &[req]);
        let lines = event(&mut st, ServerMsg::Pong { id: None });
        assert!(
            lines[0].contains(&format!(" {verdict} ")),
            "{req}: {lines:?}"
        );
    }
    assert!(!st.caps.server_time && st.caps.away_notify && !st.caps.echo_message);
    st.caps.server_time = true;
    send(&mut st, &["CAP REQ :-server-time"]);
    assert!(event(&mut st, ServerMsg::Pong { id: None })[0].contains(" NAK "));
    assert!(st.caps.server_time);
}

/// Finding 6, this side: an AWAY refused (muted) is a notice, read as the AWAY's answer.
#[test]
fn a_refused_away_is_a_notice_of_its_own() {
    let mut st = registered();
    send(&mut st, &["PRIVMSG #ops :hi"]);
    event(
        &mut st,
        ServerMsg::Message(ChatMessage {
            id: 1,
            ts: "t".into(),
            room: "ops".into(),
            from: "alice".into(),
            to: None,
            kind: Kind::Message,
            text: "hi".into(),
            history: false,
        }),
    );
    assert_eq!(types(&send(&mut st, &["AWAY :spam here"])), ["away"]);
    let muted = ServerMsg::failure(ErrorCode::Muted, "you are muted".into());
    let lines = event(&mut st, muted);
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].contains(" NOTICE alice :you are muted"),
        "{lines:?}"
    );
    assert_eq!(st.pending.len(), 0);
}
