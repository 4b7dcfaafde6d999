//! A hostile member at the IRC door, over real loopback sockets: floods of lines the door
//! answers itself (and of free `pong`s on the chat port), away messages while muted, a SASL
//! login that never ends its capability negotiation, and capabilities changed late.

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use chatroom::store::users::Role;
use serde_json::json;

use super::{Irc, base64};
use crate::support::{TIMEOUT, command, csv_rows, login, start_irc, write_accounts};

/// Reads whatever comes until the server closes the connection (or `TIMEOUT` passes, which
/// fails); returns it.
fn until_closed(c: &mut Irc) -> String {
    let mut got = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut buf = [0u8; 65536];
    loop {
        assert!(
            Instant::now() < deadline,
            "not closed; {} bytes read",
            got.len()
        );
        match c.reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // The server closed with the rest of the flood unread.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read failed: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Finding 4: PING (answered by the IRC door itself) costs from the connection's line budget
/// like every line: 5,000 of them as fast as they can be written are answered no faster than
/// the budget refills, whatever is mixed in (an AWAY, a request the broadcaster takes, every
/// 40 lines), and the flooder is disconnected.
#[test]
fn irc_pings_answered_at_once_still_count_and_a_flood_is_cut_off() {
    // 200 lines a second, a burst of 200: held to the budget for 1 s is flooding.
    let (mut server, ports) = start_irc(false, |c| {
        c.chat.msg_rate = 20.0;
        c.chat.msg_burst = 20.0;
        c.chat.flood_limit = 50;
    });
    let mut ivy = Irc::register(ports.plain, "ivy");
    ivy.send("PING :first");
    ivy.until(":chatroom PONG chatroom :first");
    let flood: String = (0..5_000)
        .map(|i| match i % 40 {
            39 => "AWAY :busy\r\n".to_string(),
            _ => format!("PING :x{i}\r\n"),
        })
        .collect();
    let started = Instant::now();
    // The server may close while this is still being written.
    let _ = ivy.writer.write_all(flood.as_bytes());
    let _ = ivy.writer.flush();
    let rest = until_closed(&mut ivy);
    let elapsed = started.elapsed().as_secs_f64();
    let pongs = rest.matches(" PONG chatroom :x").count();
    // At most the burst (200) and what the budget refilled meanwhile (200 a second).
    let most = 200.0 + 200.0 * elapsed + 10.0;
    assert!(
        (pongs as f64) <= most,
        "{pongs} answers in {elapsed:.2} s (at most {most:.0})"
    );
    assert!(pongs < 4_000, "{pongs}: the flood was answered");
    server.stop();
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .any(|r| r.contains(&"disconnect".to_string()) && r.iter().any(|f| f == "flooding")),
        "no flooding disconnect: {rows:?}"
    );
}

/// Finding 4, the chat port: a `pong` costs the broadcaster nothing, but it is a line, and a
/// flood of them is cut off like any flood.
#[test]
fn a_flood_of_free_pongs_is_cut_off() {
    let (server, _ports) = start_irc(false, |c| {
        c.chat.msg_rate = 20.0;
        c.chat.msg_burst = 20.0;
        c.chat.flood_limit = 50;
    });
    let mut pat = server.json("pat");
    let _ = pat
        .stream
        .write_all("{\"type\":\"pong\"}\n".repeat(5_000).as_bytes());
    let rest = pat.closed();
    assert!(rest.contains("flooding"), "{rest}");
    // A client within its budget is not disturbed meanwhile.
    let mut calm = server.json("calm");
    calm.nothing_pending(true);
}

/// Finding 6: a muted user's away message reaches nobody, from IRC or JSON; going away without
/// one, and coming back, still work.
#[test]
fn a_muted_user_cannot_broadcast_an_away_message() {
    let (server, ports) = start_irc(false, |c| {
        c.login.login_delay = Duration::from_millis(1).into();
    });
    write_accounts(&server.dir, &[("boss", "password1", Role::Admin)]);
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut kim = Irc::register(ports.plain, "kim");
    kim.send("CAP REQ :away-notify");
    kim.until("ACK :away-notify");
    let mut jay = server.json("jay");
    let mut boss = login(server.addr, "boss", "password1");
    // A guest's mute holds its address: every guest here (all on loopback) is muted.
    command(&mut boss, "/mute ivy 10m spam");
    let said = boss.next_of("system");
    assert!(said["text"].as_str().unwrap().contains("muted"), "{said}");

    ivy.send("AWAY :buy cheap watches at spam.example");
    ivy.until("your away message was not sent");
    jay.send_json(json!({"type": "away", "reason": "visit spam.example"}));
    let err = jay.next_of("error");
    assert_eq!(err["code"], "muted", "{err}");
    // Going away without a reason is no broadcast of text: allowed, and the next thing the
    // others hear of ivy.
    ivy.send("AWAY");
    ivy.until(" 305 ivy ");
    let heard = kim.until(":ivy!ivy@chatroom AWAY");
    assert_eq!(heard, ":ivy!ivy@chatroom AWAY", "{:?}", kim.transcript);
    let presence = jay.next_of("presence");
    assert_eq!(
        (presence["name"].as_str(), presence["away"].as_str()),
        (Some("ivy"), None),
        "{presence}"
    );
    assert!(!kim.transcript.iter().any(|l| l.contains("spam.example")));
}

/// Finding 7: a SASL login over TLS that never sends `CAP END` completes at the handshake's
/// deadline, however the connection's threads raced, not at the ping interval.
#[test]
fn a_sasl_login_without_cap_end_completes_at_the_handshake_deadline() {
    let handshake = Duration::from_millis(1500);
    let (server, ports) = start_irc(true, |c| {
        c.login.login_delay = Duration::from_millis(1).into();
        c.connection.handshake_timeout = handshake.into();
        c.connection.ping_interval = Duration::from_secs(60).into();
    });
    write_accounts(&server.dir, &[("bob", "password1", Role::Member)]);
    let (addr, ca) = ports.tls.clone().unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let mut c = Irc::connect_tls(addr, &ca);
        c.send("CAP LS 302");
        c.send("NICK bob");
        c.send("USER b 0 * :B");
        c.send("CAP REQ :sasl");
        c.until("ACK :sasl");
        c.send("AUTHENTICATE PLAIN");
        assert_eq!(c.line(), "AUTHENTICATE +");
        c.send(&format!("AUTHENTICATE {}", base64(b"bob\0bob\0password1")));
        c.numeric("903");
        // No CAP END: the welcome comes when the handshake's time is up.
        assert!(c.numeric("001").starts_with(":chatroom 001 bob "));
        let took = started.elapsed();
        assert!(
            took >= handshake - Duration::from_millis(100),
            "welcomed before the deadline: {took:?}"
        );
        assert!(
            took < handshake + Duration::from_secs(2),
            "welcomed {took:?} after connecting"
        );
        c.until(":bob!bob@chatroom JOIN #lobby");
        c.send("QUIT");
        c.closed();
    }
}

/// Finding 8: after registration, `server-time` cannot change (messages are encoded for the
/// connection at registration); the other capabilities can.
#[test]
fn server_time_is_fixed_at_registration() {
    let (_server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    ivy.send("CAP REQ :server-time");
    ivy.until(":chatroom CAP ivy NAK :server-time");
    ivy.send("CAP REQ :echo-message away-notify");
    ivy.until(":chatroom CAP ivy ACK :echo-message away-notify");
    ivy.send("CAP LIST");
    ivy.until(":chatroom CAP ivy LIST :away-notify echo-message");
}

/// Review 2: a reason of 200 four-byte characters, from a JSON client, never makes an IRC
/// line longer than 512 bytes (whose rest a client framing at 512 would read as a forged line
/// of its own); `Irc::line` checks every line it reads.
#[test]
fn long_reasons_from_other_doors_stay_within_512_bytes() {
    let (server, ports) = start_irc(false, |_| {});
    let mut ivy = Irc::register(ports.plain, "ivy");
    ivy.send("CAP REQ :away-notify");
    ivy.until("ACK :away-notify");
    let mut eve = server.json("eve");
    ivy.until(":eve!eve@chatroom JOIN #lobby");
    let forged = ":root!root@chatroom PRIVMSG #lobby :send me your password";
    let reason = format!("{}{forged}", "\u{1F600}".repeat(140));
    eve.send_json(json!({"type": "away", "reason": reason.clone()}));
    ivy.until(":eve!eve@chatroom AWAY :\u{1F600}");
    eve.send_json(json!({"type": "quit", "reason": reason}));
    ivy.until(":eve!eve@chatroom QUIT :Quit: \u{1F600}");
    ivy.settle();
    assert!(
        !ivy.transcript.iter().any(|l| l.starts_with(":root!")),
        "a forged line: {:?}",
        ivy.transcript
    );
}

/// Review 3: NickServ and the other services are reserved names, so the IDENTIFY a client
/// sends by habit reaches nobody, and is not logged.
#[test]
fn nobody_can_be_nickserv_and_an_identify_reaches_nobody() {
    let (server, ports) = start_irc(false, |_| {});
    let mut eve = Irc::connect(ports.plain);
    eve.send("NICK NickServ");
    eve.send("USER eve 0 * :Eve");
    eve.until(" 432 * NickServ ");
    eve.send("NICK ChanServ");
    eve.until(" 432 * ChanServ ");
    let mut ivy = Irc::register(ports.plain, "ivy");
    ivy.send("PRIVMSG NickServ :IDENTIFY ivy hunter2hunter2");
    ivy.until(":chatroom 401 ivy NickServ :No such nick: this server has no services");
    let mut jay = server.json("jay");
    jay.send_json(json!({"type": "nick", "name": "nickserv"}));
    assert_eq!(jay.next_of("error")["code"], "name_reserved");
    ivy.settle();
    let log = server.read("messages.csv");
    assert!(!log.contains("hunter2"), "{log}");
}
