//! Channel messages the hub encodes as IRC lines (`Mode::Irc`), sent to IRC clients without a
//! writer thread: whole lines, in the log's order, tagged only for `server-time`, and the
//! sender's own only with `echo-message`.

use serde_json::json;

use super::Irc;
use crate::support::{csv_rows, start_irc};

/// Registers with the capabilities in `caps` (CAP REQ, then CAP END).
fn register_with(addr: std::net::SocketAddr, nick: &str, caps: &str) -> Irc {
    let mut c = Irc::connect(addr);
    c.send("CAP LS 302");
    c.send(&format!("NICK {nick}"));
    c.send(&format!("USER {nick} 0 * :{nick}"));
    c.send(&format!("CAP REQ :{caps}"));
    c.until(&format!("ACK :{caps}"));
    c.send("CAP END");
    c.until(&format!(" 366 {nick} #lobby "));
    c.nick = nick.into();
    c
}

/// Waits for a line ending with `line`, unless one was read already.
fn seen(c: &mut Irc, line: &str) {
    if !c.transcript.iter().any(|l| l.ends_with(line)) {
        c.until(line);
    }
}

#[test]
fn irc_clients_get_channel_messages_whole_and_in_log_order() {
    let (server, ports) = start_irc(false, |c| c.chat.msg_rate = 0.0);
    let mut ivy = Irc::register(ports.plain, "ivy");
    let mut tim = register_with(ports.plain, "tim", "server-time echo-message");
    let mut jay = server.json("jay");
    ivy.until(":jay!jay@chatroom JOIN #lobby");
    tim.until(":jay!jay@chatroom JOIN #lobby");

    // Long lines, many of them, sent as fast as the server takes them: the broadcaster writes
    // them itself, in batches, and any line the socket takes only part of is finished first.
    const N: usize = 400;
    let pad = "x".repeat(300);
    for i in 0..N {
        jay.send_json(json!({"type": "say", "text": format!("m{i} {pad}")}));
    }
    ivy.send("PRIVMSG #lobby :from ivy");
    tim.send("PRIVMSG #lobby :from tim");
    let prefix = ":jay!jay@chatroom PRIVMSG #lobby :";
    let mut ivy_got = Vec::new();
    let mut tim_got = Vec::new();
    while ivy_got.len() < N {
        let l = ivy.line();
        if let Some(text) = l.strip_prefix(prefix) {
            ivy_got.push(text.split(' ').next().unwrap().to_string());
        }
    }
    while tim_got.len() < N {
        let l = tim.line();
        if let Some(rest) = l.strip_prefix("@time=") {
            let (time, line) = rest.split_once(' ').expect("a tag, then the line");
            assert!(time.ends_with('Z') && time.len() == 24, "{time}");
            if let Some(text) = line.strip_prefix(prefix) {
                tim_got.push(text.split(' ').next().unwrap().to_string());
            }
        }
    }
    let sent: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(ivy_got, sent, "ivy's lines out of order or lost");
    assert_eq!(tim_got, sent, "tim's lines out of order or lost");

    // Each sees the other's message; only tim (echo-message) sees its own.
    seen(&mut ivy, ":tim!tim@chatroom PRIVMSG #lobby :from tim");
    seen(&mut tim, ":ivy!ivy@chatroom PRIVMSG #lobby :from ivy");
    seen(&mut tim, ":tim!tim@chatroom PRIVMSG #lobby :from tim");
    ivy.settle();
    assert!(
        !ivy.transcript
            .iter()
            .any(|l| l.contains("PRIVMSG #lobby :from ivy")),
        "ivy got its own message back without echo-message"
    );

    // Delivery order is the log's order (columns: id, timestamp, room, sender, recipient,
    // kind, text).
    let log = std::fs::read_to_string(server.dir.join("messages.csv")).unwrap();
    let logged: Vec<String> = csv_rows(&log)
        .into_iter()
        .filter(|r| r[3] == "jay")
        .map(|r| r[6].split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(logged, sent);
}

#[test]
fn idle_irc_connections_cost_one_thread_once_their_writers_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = crate::support::ServerProcess::start(dir.path(), &["--irc", "127.0.0.1:0"]);
    let irc = server.irc.expect("an IRC port");
    let threads = || server.threads();
    let (rss0, threads0) = (server.rss_kib(), threads());
    const N: usize = 100;
    let mut clients: Vec<Irc> = (0..N)
        .map(|i| Irc::register(irc, &format!("idle{i}")))
        .collect();
    let mut speaker = Irc::register(irc, "speaker");
    speaker.send("PRIVMSG #lobby :hello, all");
    for c in &mut clients {
        c.until(":speaker!speaker@chatroom PRIVMSG #lobby :hello, all");
    }
    // Registration's replies went through writer threads, which end after 2 s without work
    // (WRITER_IDLE); the message above reached everyone without one. Polled with a deadline:
    // the condition is time-based.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut extra = threads() - threads0;
    while extra > N + 1 + N / 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        extra = threads() - threads0;
    }
    let per_conn_threads = extra as f64 / (N + 1) as f64;
    let per_conn = (server.rss_kib() - rss0) / (N as u64 + 1);
    println!("idle IRC connection: {per_conn} KiB of RSS and {per_conn_threads:.2} threads each");
    // Measured: 83 KiB (the reader's stack and buffers, the IRC state, and what the ended
    // writers' allocator arenas keep); a plain TCP client is about 14.
    assert!(per_conn <= 128, "{per_conn} KiB per idle IRC connection");
    assert!(
        per_conn_threads <= 1.05,
        "{per_conn_threads} threads per idle IRC connection"
    );
    // One more message still reaches everyone, by the broadcaster's own writes.
    speaker.send("PRIVMSG #lobby :still here?");
    for c in &mut clients {
        c.until(":speaker!speaker@chatroom PRIVMSG #lobby :still here?");
    }
    assert!(threads() - threads0 <= N + 1 + N / 20);
}
