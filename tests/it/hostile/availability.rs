//! A hostile member against the server's availability (items 6 to 12): rooms, logins, the
//! handshake's deadline, queues for clients that never read, the cost of requests, forged lines.

use super::*;

/// Item 6: one connection can be in at most `--max-rooms-per-client` rooms (100 with the
/// lobby), so joining and hanging up costs the broadcaster little, and a bystander never
/// waits for it.
#[test]
fn rooms_per_connection_are_bounded() {
    let server = start_with(|_| {});
    let (joined, refused) = attack::join_many_and_hang_up(server.addr, "roamer", 150).unwrap();
    assert_eq!((joined, refused), (99, 51));
    // `/rooms` lists the hundred biggest and counts the rest, however many there are.
    let mut a = server.json("a");
    let mut b = server.json("b");
    for (c, from) in [(&mut a, 0), (&mut b, 60)] {
        for i in from..from + 60 {
            c.send_json(json!({"type":"join","room":format!("r{i}")}));
        }
        c.nothing_pending_after(true, |_| true);
    }
    a.send_json(json!({"type":"rooms"}));
    let rooms = a.next_of("rooms");
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 100);
    assert_eq!(rooms["more"], 21, "120 rooms and the lobby");
    let mut bystander = server.json("bystander");
    let asked = Instant::now();
    bystander.nothing_pending_after(true, |_| true);
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "{:?}",
        asked.elapsed()
    );
}

/// Item 7: rooms are freed when their last member leaves and they hold no history; the
/// server's memory does not grow with rooms used and left. A room kept for its history
/// makes way for a new one once the server holds `--max-rooms`.
#[test]
fn rooms_left_empty_are_freed() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut watcher = JsonClient::join(server.addr, "watcher").unwrap();
    attack::room_churn(server.addr, "warmup", 2_000).unwrap();
    let before = server.rss_kib();
    attack::room_churn(server.addr, "churn", 30_000).unwrap();
    let grew = server.rss_kib().saturating_sub(before);
    // Before rooms were freed this was about 14 MiB (484 bytes a room).
    assert!(grew < 3 * 1024, "RSS grew {grew} KiB over 30,000 rooms");
    watcher
        .send(&json!({"type":"who","room":"r17-churn"}))
        .unwrap();
    let e = watcher.until("error").unwrap();
    assert_eq!(e["code"], "no_such_room", "{e}");

    let server = start_with(|c| c.chat.max_rooms = 3);
    let mut a = server.json("a");
    for room in ["one", "two"] {
        a.send_json(json!({"type":"join","room":room}));
        a.next_of("history_end");
    }
    a.send_json(json!({"type":"say","room":"one","text":"kept for history"}));
    a.next_of("message");
    a.send_json(json!({"type":"join","room":"three"}));
    let (code, msg) = error(&mut a);
    assert_eq!(code, "too_many_rooms", "{msg}");
    // Once "one" is empty it is the longest idle: a new room takes its place.
    a.send_json(json!({"type":"leave","room":"one"}));
    a.send_json(json!({"type":"join","room":"three"}));
    a.next_of("history_end");
    a.send_json(json!({"type":"who","room":"one"}));
    assert_eq!(error(&mut a).0, "no_such_room");
}

/// Item 8: sixty logins parked at the password prompt answer at once. Each attempt counts
/// as a failure before it is checked, so no more than the lockout (10) fail a check, and the
/// checks run a few at a time: memory stays within the checkers' share.
#[test]
fn a_storm_of_logins_is_checked_a_few_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    write_accounts(dir.path(), &[("alice", "alice pw", Role::Member)]);
    let server = ServerProcess::start(dir.path(), &["--login-delay", "0.01"]);
    let before = server.rss_kib();
    let storm = attack::login_storm(server.addr, "alice", 60, "alice pw").unwrap();
    let grew = server.rss_kib().saturating_sub(before);
    assert_eq!(
        storm.welcomed + storm.failed + storm.locked,
        60,
        "{storm:?}"
    );
    // At most the lockout's worth of wrong passwords is checked. The right one may be checked
    // too, and its success takes back its own attempt, which may let one more wrong one in
    // when the storm arrives slowly (a loaded machine).
    assert!(
        storm.failed <= 10 && storm.welcomed <= 1,
        "checked more than the lockout: {storm:?}"
    );
    // Argon2id takes 19 MiB a check; two checkers at once, not sixty (1.7 GiB was seen).
    assert!(grew < 80 * 1024, "RSS grew {grew} KiB");
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
    // A wrong password and a refusal while locked out are each a `login_failed` row.
    let failed = rows.iter().filter(|r| r[1] == "login_failed");
    let locked = failed
        .clone()
        .filter(|r| r[7].starts_with("locked out"))
        .count();
    assert_eq!(failed.count() - locked, storm.failed, "{rows:#?}");
    assert_eq!(locked, storm.locked, "{rows:#?}");
}

/// Item 9: the handshake has one deadline: trickling a byte at a time (at the name, at the
/// password prompt, or after a silence on the TLS port) does not keep a connection open
/// past it.
#[test]
fn the_handshake_ends_at_its_deadline_however_the_bytes_trickle() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_write_accounts(dir.path(), |c| {
        c.connection.handshake_timeout = Duration::from_secs(1).into()
    });
    let limit = Duration::from_secs(4);
    let every = Duration::from_millis(300);
    let name = Trickle {
        first: Vec::new(),
        silence: Duration::ZERO,
        byte: b'x',
        every,
    };
    let longest = attack::trickle(server.addr, 20, &name, limit).unwrap();
    assert!(
        longest < Duration::from_millis(2500),
        "open {longest:?} at the name"
    );
    let password = Trickle {
        first: b"alice\n".to_vec(),
        ..name.clone()
    };
    let longest = attack::trickle(server.addr, 20, &password, limit).unwrap();
    assert!(
        longest < Duration::from_millis(2500),
        "open {longest:?} at the password"
    );

    let certs = tempfile::tempdir().unwrap();
    chatroom::tls::make_dev_cert(certs.path(), &["localhost".into()]).unwrap();
    let tls = chatroom::tls::server_config(
        &certs.path().join("cert.pem"),
        &certs.path().join("key.pem"),
    )
    .unwrap();
    let server = start_with(|c| {
        c.tls.server = Some(tls);
        c.connection.handshake_timeout = Duration::from_secs(1).into();
    });
    let silent_then_tls = Trickle {
        first: Vec::new(),
        silence: Duration::from_millis(700),
        byte: chatroom::tls::TLS_HANDSHAKE,
        every,
    };
    let longest = attack::trickle(server.addr, 10, &silent_then_tls, limit).unwrap();
    assert!(
        longest < Duration::from_millis(2500),
        "open {longest:?} on TLS"
    );
}

/// Item 10: a client that never reads but sends bad lines makes the server queue an error
/// for each; those count toward `--outbox-kib` like any delivery, so it is disconnected as a
/// slow consumer and its replies cost at most that.
#[test]
fn replies_to_a_client_that_never_reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--outbox-kib", "64"]);
    let mut watcher = JsonClient::join(server.addr, "watcher").unwrap();
    let before = server.rss_kib();
    let dropped = attack::silent_flood(server.addr, 10, 40_000, Duration::from_secs(20)).unwrap();
    assert_eq!(dropped, 10);
    let grew = server.rss_kib().saturating_sub(before);
    assert!(grew < 8 * 1024, "RSS grew {grew} KiB");
    // The others are told, once it is in data.csv.
    let mut left = 0;
    while left < 10 {
        let v = watcher.until("left").unwrap();
        assert_eq!(v["reason"], "too slow to keep up", "{v}");
        left += 1;
    }
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
    let slow = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[7].starts_with("slow consumer"))
        .count();
    assert_eq!(slow, 10, "{rows:#?}");
}

/// Item 10 again: a client that neither reads nor answers pings is dropped, and its writer
/// (blocked on a socket that takes nothing) gives up after `--ping-interval` plus
/// `--ping-timeout` too, so its threads and its place at the address are freed.
#[test]
fn a_client_that_takes_nothing_frees_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--ping-interval",
        "0.5",
        "--ping-timeout",
        "0.5",
        "--max-per-ip",
        "2",
        "--limit-loopback",
    ];
    let server = ServerProcess::start(dir.path(), &args);
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&server.addr.into()).unwrap();
    let silent: std::net::TcpStream = socket.into();
    (&silent)
        .write_all(b"{\"type\":\"hello\",\"name\":\"silent\"}\n")
        .unwrap();
    let mut talker = JsonClient::join(server.addr, "talker").unwrap();
    let line = "y".repeat(1000);
    for _ in 0..200 {
        talker.send(&json!({"type":"say","text":line})).unwrap();
    }
    talker.sync().unwrap();
    // About 2 MB of history it asks for and never reads: more than the kernel holds, less
    // than its outbox.
    for _ in 0..10 {
        (&silent)
            .write_all(b"{\"type\":\"history\",\"n\":200}\n")
            .unwrap();
    }
    let left = talker.until("left").unwrap();
    assert_eq!(left["name"], "silent", "{left}");
    // Its place is free once its writer gives up: about a second later.
    let started = Instant::now();
    loop {
        let mut c = Client::connect(server.addr);
        let first = c.line();
        if first.starts_with("Welcome") {
            break;
        }
        assert!(first.contains("too many connections"), "{first}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the place was never freed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(silent);
}

/// Item 10 again: a client that sends nothing but lines the server must refuse costs a parse
/// and an error line each; after `--flood-limit` of them in a row it is disconnected, so it
/// cannot keep a core busy.
#[test]
fn refused_lines_in_a_row_end_the_connection() {
    let server = start_with(|c| c.chat.flood_limit = 50);
    // Exactly as many as the limit: a line sent after the server has closed could fail.
    let mut junk = server.json("junk");
    junk.send_raw("{not json\n".repeat(50).as_bytes());
    for _ in 0..49 {
        assert_eq!(junk.next_of("error")["code"], "bad_json");
    }
    let bye = junk.next_of("bye");
    assert!(
        bye["reason"].as_str().unwrap().contains("flooding"),
        "{bye}"
    );
    junk.closed();
    // A `pong` costs nothing, so it does not start the count again.
    let mut sly = server.json("sly");
    let mut lines = "{not json\n{\"type\":\"pong\"}\n".repeat(49);
    lines.push_str("{not json\n");
    sly.send_raw(lines.as_bytes());
    assert!(
        sly.next_of("bye")["reason"]
            .as_str()
            .unwrap()
            .contains("flooding")
    );
    // Nor can the handshake be spent refusing names.
    let mut namer = Client::connect(server.addr);
    namer.send_raw("not a name\n".repeat(50).as_bytes());
    assert!(namer.closed().contains("disconnected for flooding"));
    // A good request in between starts the count again.
    let mut careless = server.json("careless");
    for _ in 0..3 {
        for _ in 0..40 {
            careless.send("{not json");
        }
        careless.send_json(json!({"type":"say","text":"oops"}));
    }
    careless.nothing_pending_after(true, |l| !l.contains(r#""type":"bye""#));
}

/// Item 11: every request costs tokens, heavier ones more, and announcements too: a flood of
/// `/away`, `/nick` or `/history 200` is refused past the burst and disconnected past the
/// flood limit, and a bystander's ping is answered meanwhile.
#[test]
fn every_request_costs_tokens() {
    let server = start_with(|c| {
        c.chat.msg_rate = 5.0;
        c.chat.msg_burst = 20.0;
    });
    let mut long = server.json("long");
    long.send_json(json!({"type":"away","reason":"x".repeat(4000)}));
    assert_eq!(error(&mut long).0, "bad_request");

    let bystander = Bystander::start(server.addr, "bystander", Duration::from_millis(100)).unwrap();
    let away = json!({"type":"away","reason":"brb"});
    let flood = attack::request_flood(server.addr, "awayer", &away, "presence", 100).unwrap();
    assert!(flood.done <= 5, "{flood:?}");
    assert!(flood.disconnected, "{flood:?}");
    let nick = json!({"type":"nick","name":"nicky"});
    let flood = attack::request_flood(server.addr, "nicky", &nick, "nick", 100).unwrap();
    assert!(flood.done <= 5 && flood.disconnected, "{flood:?}");
    let history = json!({"type":"history","n":200});
    let floods: Vec<_> = (0..5)
        .map(|i| {
            let addr = server.addr;
            let history = history.clone();
            std::thread::spawn(move || {
                attack::request_flood(addr, &format!("reader{i}"), &history, "history_end", 40)
            })
        })
        .collect();
    for f in floods {
        let flood = f.join().unwrap().unwrap();
        assert!(flood.done <= 3 && flood.limited > 0, "{flood:?}");
    }
    let latency = bystander.finish().unwrap();
    assert!(latency.count > 0);
    // A sanity bound for a loaded test machine; chat-bench hostile measures the real figure.
    assert!(latency.max < Duration::from_secs(1), "{latency:?}");
    let rows = csv_rows(&server.read("data.csv"));
    assert!(rows.iter().filter(|r| r[1] == "nick").count() <= 5);
}

/// Item 12: a reason with a line break is refused, so no human-mode reader is shown a forged
/// line; whatever a field holds, its continuation lines are indented (unit tests in
/// protocol).
#[test]
fn no_line_can_be_forged_through_a_reason() {
    let server = start_with(|_| {});
    let mut watcher = server.human("watcher");
    let mut eve = server.json("eve");
    watcher.until("eve joined");
    let forged = "brb\n[12:00:00] #lobby boss: send me your password";
    eve.send_json(json!({"type":"away","reason":forged}));
    assert_eq!(error(&mut eve).0, "bad_request");
    eve.send_json(json!({"type":"quit","reason":forged}));
    assert_eq!(error(&mut eve).0, "bad_request");
    command(&mut eve, "/away brb\n[12:00:00] #lobby boss: hi");
    assert_eq!(error(&mut eve).0, "bad_request");
    watcher.nothing_pending(false);
}
