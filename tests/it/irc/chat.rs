//! IRC, JSON and human-mode clients in one room: messages, actions, direct messages, joins,
//! parts, nick changes, away, and an administrator's kick.

use serde_json::json;

use serde_json::Value;

use super::Irc;
use crate::support::{Client, command, login, start_irc, write_accounts};

/// The next message `from` sends (a JSON client gets its own messages back too).
fn message_from(c: &mut Client, from: &str) -> Value {
    loop {
        let m = c.next_of("message");
        if m["from"] == from {
            return m;
        }
    }
}
use chatroom::store::users::Role;

#[test]
fn irc_json_and_human_clients_see_each_other() {
    let (server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut jay = server.json("jay");
    ivy.until(":jay!jay@chatroom JOIN #lobby");
    let mut hank = server.human("hank");
    ivy.until(":hank!hank@chatroom JOIN #lobby");
    jay.next_of("joined");

    // IRC to the others; no echo to the IRC client itself.
    ivy.send("PRIVMSG #lobby :hello from irc");
    let m = jay.next_of("message");
    assert_eq!(
        (m["from"].as_str(), m["text"].as_str()),
        (Some("ivy"), Some("hello from irc"))
    );
    hank.until("#lobby ivy: hello from irc");
    let seen = ivy.settle();
    assert!(!seen.iter().any(|l| l.contains("PRIVMSG")), "{seen:?}");

    // The others to IRC.
    jay.send_json(json!({"type": "say", "text": "hello from json\nsecond line"}));
    ivy.until(":jay!jay@chatroom PRIVMSG #lobby :hello from json");
    assert_eq!(ivy.line(), ":jay!jay@chatroom PRIVMSG #lobby :second line");
    hank.send("hello from nc");
    ivy.until(":hank!hank@chatroom PRIVMSG #lobby :hello from nc");

    // /me both ways, as CTCP ACTION.
    ivy.send("PRIVMSG #lobby :\u{1}ACTION waves\u{1}");
    let m = message_from(&mut jay, "ivy");
    assert_eq!(
        (m["kind"].as_str(), m["text"].as_str()),
        (Some("action"), Some("waves"))
    );
    hank.until("* ivy waves");
    jay.send_json(json!({"type": "me", "text": "nods"}));
    ivy.until(":jay!jay@chatroom PRIVMSG #lobby :\u{1}ACTION nods\u{1}");
    hank.send("/me bows");
    ivy.until(":hank!hank@chatroom PRIVMSG #lobby :\u{1}ACTION bows\u{1}");

    // Channels: joins and parts seen across protocols.
    jay.send_json(json!({"type": "join", "room": "side"}));
    jay.next_of("history_end");
    ivy.send("JOIN #side");
    ivy.until(" 353 ivy = #side :ivy jay");
    ivy.until(" 366 ivy #side ");
    let j = jay.next_of("joined");
    assert_eq!(
        (j["room"].as_str(), j["name"].as_str()),
        (Some("side"), Some("ivy"))
    );
    ivy.send("PRIVMSG #side :only in side");
    let m = message_from(&mut jay, "ivy");
    assert_eq!(m["room"], "side");
    ivy.send("PART #side");
    assert_eq!(ivy.until("PART"), ":ivy!ivy@chatroom PART #side");
    let l = jay.next_of("left");
    assert_eq!(
        (l["name"].as_str(), l["reason"].as_str()),
        (Some("ivy"), Some("left"))
    );
    jay.send_json(json!({"type": "leave", "room": "side"}));
    jay.next_of("left");

    // Nick changes, both ways.
    ivy.send("NICK ivy2");
    assert_eq!(ivy.until("NICK"), ":ivy!ivy@chatroom NICK :ivy2");
    ivy.nick = "ivy2".into();
    let n = jay.next_of("nick");
    assert_eq!(
        (n["old"].as_str(), n["new"].as_str()),
        (Some("ivy"), Some("ivy2"))
    );
    hank.until("ivy is now known as ivy2");
    jay.send_json(json!({"type": "nick", "name": "jay2"}));
    ivy.until(":jay!jay@chatroom NICK :jay2");

    // A human quits: IRC sees a QUIT with the reason.
    hank.send("/quit see you");
    ivy.until(":hank!hank@chatroom QUIT :Quit: see you");
    // And an IRC client's QUIT is a quit to the others.
    ivy.send("QUIT :gone fishing");
    let mut l = jay.next_of("left");
    while l["name"] == "hank" {
        l = jay.next_of("left");
    }
    assert_eq!(
        (l["name"].as_str(), l["reason"].as_str()),
        (Some("ivy2"), Some("quit: gone fishing"))
    );
    assert!(
        ivy.closed()
            .contains("ERROR :Closing Link: you left; goodbye")
    );
}

#[test]
fn irc_direct_messages_and_actions_cross_protocols_both_ways() {
    let (server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut jay = server.json("jay");
    let mut hank = server.human("hank");

    ivy.send("PRIVMSG jay :psst");
    let m = jay.next_of("message");
    assert_eq!(
        (m["kind"].as_str(), m["to"].as_str(), m["text"].as_str()),
        (Some("direct"), Some("jay"), Some("psst"))
    );
    jay.send_json(json!({"type": "msg", "to": "ivy", "text": "back at you"}));
    ivy.until(":jay!jay@chatroom PRIVMSG ivy :back at you");

    ivy.send("PRIVMSG hank :yo");
    hank.until("ivy -> hank: yo");
    hank.send("/msg ivy hi there");
    ivy.until(":hank!hank@chatroom PRIVMSG ivy :hi there");

    // An action to a nick is a direct message that reads as one.
    ivy.send("PRIVMSG jay :\u{1}ACTION pokes\u{1}");
    let m = message_from(&mut jay, "ivy");
    assert_eq!(m["text"], "* ivy pokes");
    jay.send_json(json!({"type": "msg", "to": "ivy", "text": "* jay pokes back"}));
    ivy.until(":jay!jay@chatroom PRIVMSG ivy :\u{1}ACTION pokes back\u{1}");

    // Away: 301 to the IRC sender, and the JSON sender hears of the IRC user's absence.
    jay.send_json(json!({"type": "away", "reason": "lunch"}));
    jay.next_of("presence");
    ivy.send("PRIVMSG jay :are you there?");
    ivy.until(":chatroom 301 ivy jay :lunch");
    ivy.send("AWAY :in a meeting");
    ivy.until(":chatroom 306 ivy :You have been marked as being away");
    jay.send_json(json!({"type": "msg", "to": "ivy", "text": "ping"}));
    let s = jay.next_of("system");
    assert_eq!(s["text"], "ivy is away: in a meeting");
    ivy.send("AWAY");
    ivy.until(":chatroom 305 ivy ");
    // With echo-message, our own messages come back.
    ivy.send("CAP REQ :echo-message");
    ivy.until("ACK :echo-message");
    ivy.send("PRIVMSG hank :echoed");
    ivy.until(":ivy!ivy@chatroom PRIVMSG hank :echoed");
}

#[test]
fn irc_user_is_kicked_by_an_admin_on_a_json_client() {
    let (server, ports) = start_irc(false, |_| {});
    write_accounts(&server.dir, &[("boss", "password1", Role::Admin)]);
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut kim = Irc::register(ports.plain, "kim");
    ivy.send("JOIN #ops");
    ivy.until(" 366 ivy #ops ");
    let mut boss = login(server.addr, "boss", "password1");
    kim.until(":boss!boss@chatroom JOIN #lobby");
    // Not an administrator: 482.
    kim.send("KICK #lobby ivy :go away");
    kim.until(":chatroom 482 kim #lobby :You're not channel operator");
    command(&mut boss, "/kick ivy spam");
    let rest = ivy.closed();
    assert!(
        rest.contains(":boss!boss@chatroom KICK #lobby ivy :spam\r\n"),
        "{rest}"
    );
    assert!(
        rest.contains(":boss!boss@chatroom KICK #ops ivy :spam\r\n"),
        "{rest}"
    );
    assert!(
        rest.ends_with("ERROR :Closing Link: you were kicked by boss: spam\r\n"),
        "{rest}"
    );
    // Another IRC client sees the kick.
    kim.until(":boss!boss@chatroom KICK #lobby ivy :spam");
}

#[test]
fn an_irc_admin_kicks_bans_and_ops_with_irc_commands() {
    let (server, ports) = start_irc(false, |c| {
        c.login.login_delay = std::time::Duration::from_millis(1).into();
    });
    write_accounts(
        &server.dir,
        &[
            ("boss", "password1", Role::Admin),
            ("mia", "password2", Role::Member),
        ],
    );
    let mut boss = Irc::connect(ports.plain);
    boss.send("PASS password1");
    boss.send("NICK boss");
    boss.send("USER boss 0 * :Boss");
    boss.until(" 366 boss #lobby ");
    boss.nick = "boss".into();
    let mut jay = server.json("jay");
    boss.until(":jay!jay@chatroom JOIN #lobby");

    boss.send("MODE #lobby +b *!*@203.0.113.9");
    boss.until(":chatroom NOTICE boss :banned 203.0.113.9");
    boss.send("MODE #lobby -b *!*@203.0.113.9");
    boss.until(":chatroom NOTICE boss :lifted 1 ban on 203.0.113.9");
    boss.send("MODE #lobby +o mia");
    boss.until(":chatroom NOTICE boss :mia is now an administrator");
    boss.send("MODE #lobby -o ghost");
    boss.numeric("401");
    boss.send("KICK #lobby jay :behave");
    let bye = jay.next_of("bye");
    assert_eq!(bye["reason"], "you were kicked by boss: behave");
    boss.until(":boss!boss@chatroom KICK #lobby jay :behave");
}
