//! The queries (WHO, WHOIS, NAMES, LIST, TOPIC, ISON, USERHOST), PING both ways, the error
//! numerics and the line limit.

use std::time::Duration;

use serde_json::json;

use super::Irc;
use crate::support::start_irc;

#[test]
fn irc_queries_are_answered_with_their_numerics() {
    let (server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut jay = server.json("jay");
    jay.send_json(json!({"type": "away", "reason": "lunch"}));
    jay.next_of("presence");
    ivy.settle();

    ivy.send("WHOIS jay");
    assert_eq!(ivy.line(), ":chatroom 311 ivy jay jay chatroom * :jay");
    assert!(
        ivy.line()
            .starts_with(":chatroom 312 ivy jay chatroom :chatroom, connected since ")
    );
    assert_eq!(ivy.line(), ":chatroom 319 ivy jay :#lobby");
    assert_eq!(ivy.line(), ":chatroom 301 ivy jay :lunch");
    assert_eq!(ivy.line(), ":chatroom 318 ivy jay :End of /WHOIS list");

    ivy.send("WHO #lobby");
    assert_eq!(
        ivy.line(),
        ":chatroom 352 ivy #lobby ivy chatroom chatroom ivy H :0 ivy"
    );
    assert_eq!(
        ivy.line(),
        ":chatroom 352 ivy #lobby jay chatroom chatroom jay G :0 jay"
    );
    assert_eq!(ivy.line(), ":chatroom 315 ivy #lobby :End of WHO list");

    ivy.send("NAMES #lobby");
    assert_eq!(ivy.line(), ":chatroom 353 ivy = #lobby :ivy jay");
    assert_eq!(ivy.line(), ":chatroom 366 ivy #lobby :End of /NAMES list");

    ivy.send("LIST");
    assert_eq!(ivy.line(), ":chatroom 321 ivy Channel :Users  Name");
    assert_eq!(ivy.line(), ":chatroom 322 ivy #lobby 2 :");
    assert_eq!(ivy.line(), ":chatroom 323 ivy :End of /LIST");

    ivy.send("TOPIC #lobby");
    assert_eq!(ivy.line(), ":chatroom 331 ivy #lobby :No topic is set");

    ivy.send("ISON jay ghost ivy");
    assert_eq!(ivy.line(), ":chatroom 303 ivy :jay ivy");
    ivy.send("USERHOST jay ivy");
    assert_eq!(
        ivy.line(),
        ":chatroom 302 ivy :jay=-jay@chatroom ivy=+ivy@chatroom"
    );

    ivy.send("MODE #lobby");
    assert_eq!(ivy.line(), ":chatroom 324 ivy #lobby +");
    ivy.send("MODE #lobby b");
    assert_eq!(
        ivy.line(),
        ":chatroom 368 ivy #lobby :End of channel ban list"
    );
    ivy.send("MODE ivy");
    assert_eq!(ivy.line(), ":chatroom 221 ivy +");
}

#[test]
fn irc_errors_are_the_standard_numerics() {
    let (server, ports) = start_irc(false, |_| {});
    // Before registration.
    let mut c = Irc::connect(ports.plain);
    c.send("JOIN #lobby");
    assert_eq!(c.line(), ":chatroom 451 * :You have not registered");
    c.send("FROBNICATE");
    assert_eq!(c.line(), ":chatroom 421 * FROBNICATE :Unknown command");
    c.send("NICK b@d!");
    assert!(
        c.line()
            .starts_with(":chatroom 432 * b@d! :Erroneous nickname")
    );
    c.send("USER");
    assert_eq!(c.line(), ":chatroom 461 * USER :Not enough parameters");

    let mut ivy = Irc::register(ports.plain, "ivy");
    let _jay = server.json("jay");
    ivy.until(":jay!jay@chatroom JOIN #lobby");
    c.send("NICK ivy");
    c.send("USER x 0 * :x");
    assert!(c.line().starts_with(":chatroom 433 * ivy :"));
    c.send("NICK IVY");
    assert!(c.line().starts_with(":chatroom 433 * IVY :"));

    ivy.send("FROBNICATE");
    assert_eq!(ivy.line(), ":chatroom 421 ivy FROBNICATE :Unknown command");
    ivy.send("KICK #lobby");
    assert_eq!(ivy.line(), ":chatroom 461 ivy KICK :Not enough parameters");
    ivy.send("USER again 0 * :x");
    assert_eq!(ivy.line(), ":chatroom 462 ivy :You may not reregister");
    ivy.send("PRIVMSG ghost :hello?");
    assert_eq!(ivy.line(), ":chatroom 401 ivy ghost :No such nick/channel");
    ivy.send("WHOIS ghost");
    assert_eq!(ivy.line(), ":chatroom 401 ivy ghost :No such nick/channel");
    assert_eq!(ivy.line(), ":chatroom 318 ivy ghost :End of /WHOIS list");
    ivy.send("JOIN lobby");
    assert!(
        ivy.line()
            .starts_with(":chatroom 403 ivy lobby :No such channel")
    );
    ivy.send("PRIVMSG #nowhere :hi");
    assert!(
        ivy.line()
            .starts_with(":chatroom 404 ivy #nowhere :Cannot send to channel")
    );
    ivy.send("PART #nowhere");
    assert_eq!(
        ivy.line(),
        ":chatroom 442 ivy #nowhere :You're not on that channel"
    );
    ivy.send("KICK #lobby jay :bye");
    assert!(
        ivy.line()
            .starts_with(":chatroom 482 ivy #lobby :You're not channel operator")
    );
    ivy.send("MODE #lobby +k secret");
    assert_eq!(
        ivy.line(),
        ":chatroom 472 ivy k :is unknown mode char to me"
    );
    ivy.send("NICK jay");
    assert!(ivy.line().starts_with(":chatroom 433 ivy jay :"));
    ivy.send("NICK b@d");
    assert!(
        ivy.line()
            .starts_with(":chatroom 432 ivy b@d :Erroneous nickname")
    );
    ivy.send("PRIVMSG #lobby :");
    assert_eq!(ivy.line(), ":chatroom 412 ivy :No text to send");
    ivy.send("PRIVMSG #lobby :\u{3}4red text");
    assert!(
        ivy.line()
            .contains(" 404 ivy #lobby :Cannot send to channel: ")
    );
}

#[test]
fn an_irc_line_over_512_bytes_is_refused_and_the_connection_goes_on() {
    let (server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut jay = server.json("jay");
    ivy.settle();
    ivy.send(&format!("PRIVMSG #lobby :{}", "x".repeat(600)));
    assert_eq!(
        ivy.line(),
        ":chatroom 417 ivy :Input line was too long (at most 512 bytes)"
    );
    // 510 bytes of content is the most a line holds.
    let head = "PRIVMSG #lobby :";
    let longest = format!("{head}{}", "y".repeat(510 - head.len()));
    ivy.send(&longest);
    let m = jay.next_of("message");
    assert_eq!(m["text"].as_str().unwrap().len(), 510 - head.len());
    // A line longer than the limit is thrown away up to its end, however long; one 417.
    ivy.send_raw("z".repeat(3000).as_bytes());
    ivy.send_raw("z".repeat(3000).as_bytes());
    ivy.send("");
    ivy.send("PRIVMSG #lobby :after");
    assert_eq!(jay.next_of("message")["text"], "after");
    let seen = ivy.settle();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].contains(" 417 ivy "));
}

#[test]
fn irc_pings_go_both_ways() {
    let (_server, ports) = start_irc(false, |c| {
        c.connection.ping_interval = Duration::from_millis(300).into();
        c.connection.ping_timeout = Duration::from_millis(600).into();
    });
    let mut ivy = Irc::register(ports.plain, "ivy");
    ivy.send("PING :are-you-there");
    ivy.until(":chatroom PONG chatroom :are-you-there");
    // The server pings a quiet client; an answer keeps it connected.
    let ping = ivy.until("PING :");
    let id = ping.strip_prefix("PING :").unwrap().to_string();
    ivy.send(&format!("PONG :{id}"));
    let again = ivy.until("PING :");
    assert_ne!(again, ping);
    // No answer: the server closes the connection.
    let rest = ivy.closed();
    assert!(
        rest.contains("ERROR :Closing Link: no answer to a ping"),
        "{rest}"
    );
}
