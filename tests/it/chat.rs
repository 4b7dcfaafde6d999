//! Chatting: both modes, late joiners, names, commands, quitting, slow consumers.

use serde_json::json;

use crate::support::{Client, csv_rows, start_server, start_with};

#[test]
fn two_human_clients_chat() {
    let server = start_server();
    let mut alice = server.human("alice");
    let mut bob = server.human("bob");
    assert!(alice.until("bob joined #lobby").starts_with('['));
    alice.send("hello, bob");
    let line = bob.line();
    assert!(
        line.len() > 11 && line.starts_with('[') && line.ends_with("] #lobby alice: hello, bob"),
        "{line:?}"
    );
    bob.send("hi alice");
    let line = alice.line();
    assert!(line.ends_with("] #lobby bob: hi alice"), "{line:?}");
    // A human-mode sender does not get its own line back: the next thing alice sees is the pong.
    alice.nothing_pending(false);
    bob.nothing_pending(false);
}

#[test]
fn json_mode_events_are_typed_with_ids_and_timestamps() {
    let server = start_server();
    let mut carol = Client::connect(server.addr);
    carol.send(r#"{"type":"hello","name":"carol"}"#);
    let welcome = carol.next_of("welcome");
    assert_eq!(welcome["room"], "lobby");
    assert_eq!(welcome["members"], 1);
    assert!(welcome["conn"].as_u64().unwrap() >= 1);
    assert!(welcome["server"].as_str().unwrap().starts_with("chatroom "));
    let joined = carol.json_line();
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["name"], "carol");
    let users = carol.json_line();
    assert_eq!(
        users,
        json!({"type":"users","room":"lobby","users":["carol"]})
    );
    let end = carol.json_line();
    assert_eq!(end, json!({"type":"history_end","room":"lobby","count":0}));

    let mut dave = server.json("dave");
    let joined = carol.json_line();
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["name"], "dave");
    chrono::DateTime::parse_from_rfc3339(joined["ts"].as_str().unwrap()).unwrap();

    dave.send_json(json!({"type":"say","text":"first"}));
    let m = carol.json_line();
    assert_eq!(m["type"], "message");
    assert_eq!(m["from"], "dave");
    assert_eq!(m["text"], "first");
    assert_eq!(m["room"], "lobby");
    let id = m["id"].as_u64().unwrap();
    let ts = m["ts"].as_str().unwrap();
    assert!(ts.ends_with('Z') && ts.len() == 24, "{ts}");
    // The JSON sender gets the same event back: its acknowledgement, with the id.
    let echo = dave.json_line();
    assert_eq!(echo, m);

    dave.send_json(json!({"type":"say","text":"second"}));
    assert_eq!(carol.json_line()["id"].as_u64().unwrap(), id + 1);

    dave.send_json(json!({"type":"quit","reason":"lunch"}));
    let bye = dave.next_of("bye");
    assert!(bye["reason"].as_str().unwrap().contains("left"));
    dave.closed();
    let left = carol.next_of("left");
    assert_eq!(left["name"], "dave");
    assert_eq!(left["reason"], "quit: lunch");
}

#[test]
fn human_and_json_clients_see_the_same_message() {
    let server = start_server();
    let mut human = server.human("hugo");
    let mut machine = server.json("jason");
    human.until("jason joined");
    human.send("mixed company");
    let m = machine.next_of("message");
    assert_eq!(m["from"], "hugo");
    assert_eq!(m["text"], "mixed company");
    machine.send_json(json!({"type":"say","text":"indeed"}));
    assert!(human.line().ends_with("] #lobby jason: indeed"));
}

#[test]
fn a_late_joiner_gets_what_is_said_after_it_joins() {
    let server = start_server();
    let mut alice = server.human("alice");
    let mut bob = server.human("bob");
    alice.until("bob joined");
    alice.send("before carol");
    assert!(bob.line().ends_with("alice: before carol"));

    let mut carol = Client::connect(server.addr);
    carol.line();
    carol.send("carol");
    carol.until("* welcome, carol! you are in lobby with 2 others.");
    assert!(carol.line().ends_with("* carol joined #lobby"));
    assert_eq!(carol.line(), "* 3 in #lobby: alice, bob, carol");
    // What was said before carol joined comes as history, dated, then the marker.
    let old = carol.line();
    assert!(
        old.starts_with("[20") && old.ends_with("] #lobby alice: before carol"),
        "{old:?}"
    );
    assert_eq!(carol.line(), "* end of history of #lobby (1 message)");
    assert!(alice.line().ends_with("* carol joined #lobby"));
    assert!(bob.line().ends_with("* carol joined #lobby"));

    bob.send("after carol");
    assert!(carol.line().ends_with("#lobby bob: after carol"));
    assert!(alice.line().ends_with("#lobby bob: after carol"));
    carol.nothing_pending(false);
}

#[test]
fn names_collide_case_insensitively_and_can_be_chosen_again() {
    let server = start_server();
    let _bob = server.human("bob");
    let mut other = Client::connect(server.addr);
    other.line();
    other.send("BOB");
    assert_eq!(
        other.line(),
        "! the name BOB is taken by someone connected now"
    );
    assert_eq!(other.line(), "What is your name?");
    other.send("admin");
    assert_eq!(
        other.line(),
        "! the name admin is reserved (or looks like a reserved name)"
    );
    assert_eq!(other.line(), "What is your name?");
    other.send("two words");
    assert!(other.line().starts_with("! a name may hold letters"));
    other.line();
    other.send(&"x".repeat(33));
    assert!(other.line().contains("at most 32 characters"));
    other.line();
    other.send("bob2");
    other.until("* welcome, bob2!");

    let mut j = Client::connect(server.addr);
    j.send(r#"{"type":"hello","name":"Bob"}"#);
    let err = j.next_of("error");
    assert_eq!(err["code"], "name_taken");
    j.send(r#"{"type":"hello","name":"server"}"#);
    assert_eq!(j.next_of("error")["code"], "name_reserved");
    j.send(r#"{"type":"hello","name":"bob3"}"#);
    j.next_of("welcome");
}

#[test]
fn pipelined_lines_are_answered_after_the_welcome() {
    let server = start_server();
    let mut c = Client::connect(server.addr);
    c.send_raw(b"speedy\n/help\n/bogus\n");
    c.line();
    assert!(
        c.line().starts_with("* welcome, speedy!"),
        "{:#?}",
        c.transcript
    );
    assert!(c.line().ends_with("* speedy joined #lobby"));
    assert_eq!(c.line(), "* 1 in #lobby: speedy");
    assert_eq!(c.line(), "* end of history of #lobby (0 messages)");
    // The help (from the broadcaster) and the refusal (from the connection's own thread)
    // both come, in either order.
    let (mut help, mut refused) = (false, false);
    while !(help && refused) {
        let line = c.line();
        help |= line == "* commands:";
        refused |= line.contains("unknown command /bogus");
    }
}

#[test]
fn quit_at_the_name_prompt_leaves_politely() {
    let server = start_server();
    let mut c = Client::connect(server.addr);
    c.line();
    c.send("/quit");
    let rest = c.closed();
    assert!(
        rest.contains("disconnected: you left before choosing a name"),
        "{rest:?}"
    );
}

#[test]
fn a_name_is_free_again_after_its_owner_leaves() {
    let server = start_server();
    let mut first = server.human("erin");
    first.send("/quit");
    assert!(first.line().contains("disconnected: you left"));
    first.closed();
    // The broadcaster handles the quit before this hello: both go through its one channel
    // in order, and the quit was sent first.
    let mut again = server.json("erin");
    again.nothing_pending(true);
}

#[test]
fn help_who_and_unknown_commands() {
    let server = start_server();
    let mut a = server.human("ann");
    a.send("/help");
    assert_eq!(a.line(), "* commands:");
    let mut listed = Vec::new();
    for _ in 0..chatroom::proto::COMMANDS.len() {
        listed.push(a.line());
    }
    for cmd in [
        "/join", "/leave", "/switch", "/rooms", "/who", "/msg", "/reply", "/me", "/nick", "/away",
        "/back", "/whois", "/history", "/help", "/quit", "//TEXT",
    ] {
        assert!(
            listed.iter().any(|l| l.contains(cmd)),
            "{cmd} missing from {listed:#?}"
        );
    }
    a.send("/who");
    assert_eq!(a.line(), "* 1 in #lobby: ann");
    a.send("/dance wildly");
    assert_eq!(
        a.line(),
        "! unknown command /dance; /help lists the commands"
    );
    a.send("/who two words");
    assert_eq!(a.line(), "! usage: /who [ROOM]");
    a.send("/who nowhere");
    assert_eq!(a.line(), "! there is no room nowhere");
    a.send("//said to nobody");
    // The pong comes through the broadcaster after the message: a barrier.
    a.nothing_pending(false);
    let mut b = server.human("ben");
    a.send("//slash at the start");
    assert!(b.line().ends_with("ann: /slash at the start"));

    let mut j = server.json("jim");
    j.send_json(json!({"type":"command","line":"/who"}));
    let users = j.next_of("users");
    assert_eq!(users["users"], json!(["ann", "ben", "jim"]));
    j.send_json(json!({"type":"help"}));
    let help = j.json_line();
    assert_eq!(help["type"], "help");
    assert!(help["commands"].as_array().unwrap().len() >= 4);
    j.send_json(json!({"type":"command","line":"/nope"}));
    assert_eq!(j.json_line()["code"], "unknown_command");
}

#[test]
fn quit_with_a_reason_tells_the_room_and_logs_it() {
    let mut server = start_server();
    let mut a = server.human("amy");
    let mut b = server.human("bo");
    a.until("bo joined");
    b.send("/quit off to lunch");
    assert!(b.line().ends_with("* disconnected: you left; goodbye"));
    b.closed();
    assert!(a.line().ends_with("* bo left #lobby (quit: off to lunch)"));
    server.stop();
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .any(|r| r[1] == "disconnect" && r[6] == "bo" && r[7] == "quit: off to lunch"),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r[1] == "disconnect" && r[6] == "amy" && r[7] == "server shutdown"),
        "{rows:#?}"
    );
}

/// A client that stops reading is disconnected once its outbox fills; the others receive every
/// message, in order, and nobody waits for the slow one.
#[test]
fn a_slow_consumer_is_dropped_and_does_not_delay_the_others() {
    let server = start_with(|c| c.limits.outbox_kib = 256);
    let mut slow = server.json("sloth");
    let mut fast = server.json("hare");
    let mut sender = server.human("talker");
    fast.until(r#""name":"talker""#);

    let body = "z".repeat(3900);
    let total = 5000;
    let window = 50;
    let mut next = 0;
    let mut last_id = 0;
    let mut saw_left = false;
    // The sender floods in windows the fast reader keeps up with; only the one that never
    // reads falls behind.
    for start in (0..total).step_by(window) {
        let mut batch = String::new();
        for i in start..start + window {
            batch.push_str(&format!("{i:06} {body}\n"));
        }
        sender.send_raw(batch.as_bytes());
        while next < start + window {
            let v = fast.json_line();
            match v["type"].as_str() {
                Some("message") => {
                    let text = v["text"].as_str().unwrap();
                    assert_eq!(&text[..6], format!("{next:06}"), "out of order or lost");
                    let id = v["id"].as_u64().unwrap();
                    assert!(id > last_id);
                    last_id = id;
                    next += 1;
                }
                Some("left") => {
                    assert_eq!(v["name"], "sloth");
                    assert_eq!(v["reason"], "too slow to keep up");
                    saw_left = true;
                }
                other => fast.fail(&format!("unexpected event {other:?}")),
            }
        }
    }
    if !saw_left {
        fast.until(r#""name":"sloth""#);
    }
    // The slow client's socket is shut: after whatever the kernel had buffered, it ends.
    slow.stream
        .set_read_timeout(Some(crate::support::TIMEOUT))
        .unwrap();
    slow.closed();
    sender.until("* sloth left #lobby (too slow to keep up)");
    sender.nothing_pending(false);
    // Rows are written before the notices they cause are delivered.
    let rows = csv_rows(&server.read("data.csv"));
    let dropped: Vec<_> = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[6] == "sloth")
        .collect();
    assert_eq!(dropped.len(), 1, "{rows:#?}");
    assert_eq!(dropped[0][7], "slow consumer: outbox full");
    assert!(!rows.iter().any(|r| r[1] == "disconnect" && r[6] == "hare"));
}
