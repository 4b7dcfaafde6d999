//! Rooms, direct messages, presence and history: every command, in both modes.

use serde_json::json;

use crate::support::{Client, csv_rows, start_in, start_server, start_with};

#[test]
fn join_creates_a_room_and_messages_stay_in_their_room() {
    let server = start_server();
    let mut alice = server.human("alice");
    let mut bob = server.human("bob");
    let mut carol = server.human("carol");
    alice.until("carol joined");
    bob.until("carol joined");

    alice.send("/join #Ops");
    assert!(alice.line().ends_with("* alice joined #Ops"));
    assert_eq!(alice.line(), "* 1 in #Ops: alice");
    assert_eq!(alice.line(), "* end of history of #Ops (0 messages)");
    // Room names are case-insensitive; the first spelling is kept.
    bob.send("/join ops");
    assert!(bob.line().ends_with("* bob joined #Ops"));
    assert_eq!(bob.line(), "* 2 in #Ops: alice, bob");
    bob.until("* end of history of #Ops");
    assert!(alice.line().ends_with("* bob joined #Ops"));

    alice.send("ops only");
    assert!(bob.line().ends_with("] #Ops alice: ops only"));
    // Carol, in the lobby only, sees nothing of it.
    carol.nothing_pending(false);
    // Alice's plain lines go to her current room; /switch changes it.
    alice.send("/switch lobby");
    assert_eq!(alice.line(), "* your messages now go to #lobby");
    alice.send("lobby again");
    assert!(carol.line().ends_with("] #lobby alice: lobby again"));
    assert!(bob.line().ends_with("] #lobby alice: lobby again"));
    // /join of a room you are in just switches to it.
    alice.send("/join OPS");
    assert_eq!(alice.line(), "* your messages now go to #Ops");

    let rows = csv_rows(&server.read("messages.csv"));
    let rooms: Vec<&str> = rows.iter().map(|r| r[2].as_str()).collect();
    assert_eq!(rooms, ["Ops", "lobby"]);
}

#[test]
fn a_client_in_two_rooms_gets_both_with_room_names() {
    let server = start_server();
    let mut j = server.json("jay");
    let mut a = server.human("amy");
    j.send_json(json!({"type":"join","room":"dev"}));
    assert_eq!(j.next_of("history_end")["room"], "dev");
    a.send("/join dev");
    a.until("* end of history of #dev");
    a.send("in dev");
    a.send("/switch lobby");
    a.until("now go to #lobby");
    a.send("in lobby");
    let first = j.next_of("message");
    let second = j.next_of("message");
    assert_eq!(
        (first["room"].as_str(), first["text"].as_str()),
        (Some("dev"), Some("in dev"))
    );
    assert_eq!(
        (second["room"].as_str(), second["text"].as_str()),
        (Some("lobby"), Some("in lobby"))
    );
    // JSON `say` can name the room; it must be one the client is in.
    j.send_json(json!({"type":"say","room":"Dev","text":"to dev"}));
    assert_eq!(j.next_of("message")["room"], "dev");
    assert!(a.until("jay: to dev").contains("#dev"));
    j.send_json(json!({"type":"say","room":"ops","text":"nope"}));
    let err = j.next_of("error");
    assert_eq!(err["code"], "not_in_room");
    // So can `me`, whatever the current room is (dev, jay's last join).
    j.send_json(json!({"type":"me","room":"lobby","text":"waves in the lobby"}));
    let m = j.next_of("message");
    assert_eq!(
        (m["room"].as_str(), m["kind"].as_str()),
        (Some("lobby"), Some("action"))
    );
    assert!(a.until("waves in the lobby").contains("* jay"));
    j.send_json(json!({"type":"me","room":"ops","text":"nope"}));
    assert_eq!(j.next_of("error")["code"], "not_in_room");
}

#[test]
fn leave_rooms_and_who_and_switch_errors() {
    let server = start_server();
    let mut a = server.human("ann");
    let mut b = server.human("ben");
    a.until("ben joined");
    a.send("/join dev");
    a.until("end of history of #dev");
    b.send("/join dev");
    b.until("end of history of #dev");
    a.until("ben joined #dev");

    a.send("/rooms");
    assert_eq!(a.line(), "* 2 rooms: #dev (2), #lobby (2)");
    a.send("/who lobby");
    assert_eq!(a.line(), "* 2 in #lobby: ann, ben");
    a.send("/switch nowhere");
    assert_eq!(a.line(), "! you are not in nowhere; /join nowhere first");

    // Leaving the current room moves plain lines to the room joined before it.
    b.send("/leave");
    assert!(b.line().ends_with("* ben left #dev (left)"));
    assert_eq!(b.line(), "* your messages now go to #lobby");
    assert!(a.line().ends_with("* ben left #dev (left)"));
    b.send("/leave dev");
    assert_eq!(b.line(), "! you are not in dev; /join dev first");
    b.send("/leave lobby");
    assert!(b.line().ends_with("* ben left #lobby (left)"));
    b.send("anyone?");
    assert_eq!(b.line(), "! you are in no room; /join ROOM first");
    a.send("/rooms");
    assert_eq!(a.until("rooms:"), "* 2 rooms: #dev (1), #lobby (1)");

    let mut j = server.json("jo");
    j.send_json(json!({"type":"rooms"}));
    let rooms = j.next_of("rooms");
    assert_eq!(
        rooms["rooms"],
        json!([{"name":"dev","members":1},{"name":"lobby","members":2}])
    );
    j.send_json(json!({"type":"leave","room":"lobby"}));
    let left = j.next_of("left");
    assert_eq!(
        (left["name"].as_str(), left["room"].as_str()),
        (Some("jo"), Some("lobby"))
    );
}

#[test]
fn direct_messages_reach_only_the_two_people_and_never_a_room() {
    let mut server = start_server();
    let mut alice = server.human("alice");
    let mut bob = server.json("bob");
    let mut carol = server.human("carol");
    alice.until("carol joined");

    alice.send("/msg BOB meet me at 5, \"usual place\"");
    let dm = bob.next_of("message");
    assert_eq!(dm["kind"], "direct");
    assert_eq!(dm["from"], "alice");
    assert_eq!(dm["to"], "bob");
    assert_eq!(dm["text"], "meet me at 5, \"usual place\"");
    assert!(dm.get("room").is_none(), "{dm}");
    // The sender sees it too, as confirmation.
    assert!(
        alice
            .line()
            .ends_with("] alice -> bob: meet me at 5, \"usual place\"")
    );
    // /reply goes back to whoever sent the last direct message.
    bob.send_json(json!({"type":"reply","text":"ok"}));
    assert!(alice.line().ends_with("] bob -> alice: ok"));
    assert_eq!(bob.next_of("message")["text"], "ok");
    alice.send("/msg nobody hello?");
    assert_eq!(alice.line(), "! nobody named nobody is connected");
    carol.send("/reply anyone");
    assert_eq!(
        carol.line(),
        "! nobody connected now has sent you a direct message; use /msg NAME TEXT"
    );
    // Carol saw none of it, and joining later shows no direct message as history.
    carol.nothing_pending(false);
    let mut dave = server.human("dave");
    assert!(
        !dave
            .transcript
            .iter()
            .any(|l| l.contains("usual place") || l.contains("ok"))
    );
    dave.nothing_pending(false);

    server.stop();
    let rows = csv_rows(&server.read("messages.csv"));
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][2..6], ["", "alice", "bob", "direct"]);
    assert_eq!(&rows[1][2..6], ["", "bob", "alice", "direct"]);
    // After a restart, a room's history still holds no direct message.
    let server = start_in(&server.dir, |_| {});
    let eve = server.json("eve");
    assert!(
        !eve.transcript.iter().any(|l| l.contains("direct")),
        "{:#?}",
        eve.transcript
    );
}

#[test]
fn emotes_nick_away_back_and_whois() {
    let mut server = start_server();
    let mut a = server.human("alice");
    let mut b = server.json("bob");
    a.until("bob joined");

    a.send("/me waves");
    let m = b.next_of("message");
    assert_eq!(
        (m["kind"].as_str(), m["text"].as_str()),
        (Some("action"), Some("waves"))
    );

    // A taken name is refused, case-insensitively; a free one is taken and announced.
    a.send("/nick BOB");
    assert_eq!(a.line(), "! the name BOB is taken by someone connected now");
    a.send("/nick alicia");
    assert!(a.line().ends_with("* alice is now known as alicia"));
    let nick = b.next_of("nick");
    assert_eq!(
        (nick["old"].as_str(), nick["new"].as_str()),
        (Some("alice"), Some("alicia"))
    );
    // The old name is free again, the new one is taken.
    let _other = server.human("alice");
    b.send_json(json!({"type":"nick","name":"Alicia"}));
    assert_eq!(b.next_of("error")["code"], "name_taken");

    b.send_json(json!({"type":"away","reason":"lunch"}));
    assert_eq!(b.next_of("presence")["away"], "lunch");
    assert!(a.until("bob is away").ends_with("* bob is away: lunch"));
    a.send("/who");
    assert_eq!(
        a.line(),
        "* 3 in #lobby: alice, alicia, bob (away: \"lunch\")"
    );
    b.send_json(json!({"type":"who"}));
    let users = b.next_of("users");
    assert_eq!(users["away"], json!({"bob":"lunch"}));
    // A direct message to someone away tells the sender.
    a.send("/msg bob are you there?");
    assert!(a.until("bob is away").ends_with("* bob is away: lunch"));
    a.send("/whois bob");
    let whois = a.until("* bob: in");
    assert!(
        whois.contains("in #lobby; connected since 20") && whois.ends_with("; away: \"lunch\""),
        "{whois}"
    );
    b.send_json(json!({"type":"back"}));
    assert!(a.until("bob is back").ends_with("* bob is back"));
    b.send_json(json!({"type":"whois","name":"alicia"}));
    let w = b.next_of("whois");
    assert_eq!(w["rooms"], json!(["lobby"]));
    assert!(w.get("away").is_none());
    a.send("/whois ghost");
    assert_eq!(a.line(), "! nobody named ghost is connected");

    server.stop();
    let rows = csv_rows(&server.read("data.csv"));
    let nick = rows.iter().find(|r| r[1] == "nick").expect("a nick row");
    assert_eq!(
        (nick[6].as_str(), nick[7].as_str()),
        ("alicia", "alice -> alicia")
    );
    let kinds: Vec<String> = csv_rows(&server.read("messages.csv"))
        .iter()
        .map(|r| r[5].clone())
        .collect();
    assert_eq!(kinds, ["action", "direct"]);
}

#[test]
fn history_on_join_in_order_marked_and_ended_and_on_request() {
    let server = start_with(|c| c.chat.history = 3);
    let mut a = server.human("alice");
    a.send("/join dev");
    a.until("end of history of #dev");
    for i in 1..=5 {
        a.send(&format!("dev message {i}"));
    }
    a.nothing_pending(false);

    let mut j = server.json("jay");
    j.send_json(json!({"type":"join","room":"dev"}));
    let mut texts = Vec::new();
    loop {
        let v = j.json_line();
        match v["type"].as_str() {
            Some("message") => {
                assert_eq!(v["history"], true, "{v}");
                texts.push(v["text"].as_str().unwrap().to_string());
            }
            Some("history_end") => {
                assert_eq!(v["count"], 3);
                assert_eq!(v["room"], "dev");
                break;
            }
            _ => {}
        }
    }
    assert_eq!(texts, ["dev message 3", "dev message 4", "dev message 5"]);
    // A live message after that is not marked.
    a.send("live");
    let live = j.next_of("message");
    assert!(live.get("history").is_none());
    // /history N asks again, up to what is kept.
    a.until("jay joined #dev");
    a.send("/history 2");
    let h1 = a.line();
    let h2 = a.line();
    assert!(
        h1.ends_with("#dev alice: dev message 5") && h2.ends_with("#dev alice: live"),
        "{h1} {h2}"
    );
    assert_eq!(a.line(), "* end of history of #dev (2 messages)");
    a.send("/history 1000");
    assert_eq!(
        a.until("end of history"),
        "* end of history of #dev (6 messages)"
    );
}

#[test]
fn history_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), |_| {});
    let mut a = server.human("alice");
    a.send("/join ops");
    a.until("end of history of #ops");
    a.send("before the restart, with a comma");
    a.send("/me restarts the server");
    a.nothing_pending(false);
    server.stop();

    let server = start_in(dir.path(), |_| {});
    let mut b = server.json("bob");
    b.send_json(json!({"type":"join","room":"OPS"}));
    let first = b.next_of("message");
    let second = b.next_of("message");
    assert_eq!(first["text"], "before the restart, with a comma");
    assert_eq!(first["history"], true);
    assert_eq!(first["id"], 1);
    assert_eq!(
        (second["kind"].as_str(), second["id"].as_u64()),
        (Some("action"), Some(2))
    );
    assert_eq!(b.next_of("history_end")["count"], 2);
    b.send_json(json!({"type":"say","text":"after"}));
    assert_eq!(b.next_of("message")["id"], 3);
}

#[test]
fn join_and_leave_notices_stop_above_the_notice_limit() {
    let server = start_with(|c| c.chat.notice_limit = 2);
    let mut a = server.human("a1");
    let mut b = server.human("b2");
    assert!(a.line().ends_with("* b2 joined #lobby"));
    // The third member makes the room larger than the limit: no notice, no member list.
    let mut c = Client::connect(server.addr);
    c.line();
    c.send("c3");
    c.until("* welcome, c3! you are in lobby with 2 others.");
    assert!(c.line().ends_with("* c3 joined #lobby"));
    assert_eq!(c.line(), "* end of history of #lobby (0 messages)");
    a.nothing_pending(false);
    b.nothing_pending(false);
    // Leaving a room above the limit is silent too; back at the limit, notices resume. The
    // server closes c only after handling its quit, so c's leave comes before b's.
    c.send("/quit");
    c.closed();
    a.nothing_pending(false);
    b.send("/quit");
    b.closed();
    assert!(a.line().ends_with("* b2 left #lobby (quit)"));
    // Everyone is still listed on request.
    a.send("/who");
    assert_eq!(a.line(), "* 1 in #lobby: a1");
}

#[test]
fn bad_room_names_and_arguments_say_the_usage() {
    let server = start_server();
    let mut a = server.human("ann");
    for (line, expected) in [
        ("/join", "! usage: /join ROOM"),
        ("/join two words", "! usage: /join ROOM"),
        (
            "/join #",
            "! bad room name: it needs at least one character after the optional '#'",
        ),
        (
            "/join a/b",
            "! bad room name: letters, digits, '_', '-' and '.' only, not '/' (U+002F)",
        ),
        ("/msg bob", "! usage: /msg NAME TEXT"),
        ("/me", "! usage: /me ACTION"),
        ("/nick", "! usage: /nick NAME"),
        ("/history many", "! usage: /history [N]"),
        ("/whois", "! usage: /whois NAME"),
        ("/rooms all", "! usage: /rooms"),
    ] {
        a.send(line);
        assert_eq!(a.line(), expected, "{line}");
    }
    let long = format!("/join {}", "r".repeat(65));
    a.send(&long);
    assert!(a.line().contains("at most 64 characters"));
}
