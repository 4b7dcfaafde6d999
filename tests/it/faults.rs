//! The fault suite: floods, slow and silent clients, garbage, crashes, a full disk, and the
//! abuse limits. Every test is bounded in time and talks to 127.0.0.1 only.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{Client, ServerProcess, TIMEOUT, csv_rows, start_with};

/// A small deterministic generator (xorshift), so a failing input can be reproduced.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Fault 1: A client that never reads while others chat at full speed: it is dropped once its
/// outbox fills, the others get everything, and the server's memory stays bounded.
#[test]
fn a_client_that_never_reads_costs_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--outbox-kib", "512"]);
    let _stuck = Client::json(server.addr, "stuck");
    let mut reader = Client::json(server.addr, "reader");
    let mut talker = Client::human(server.addr, "talker");
    reader.until(r#""name":"talker""#);
    let before = server.rss_kib();
    let body = "y".repeat(2000);
    let mut got = 0;
    for round in 0..120 {
        let batch: String = (0..100)
            .map(|i| format!("{round:03}-{i:03} {body}\n"))
            .collect();
        talker.send_raw(batch.as_bytes());
        while got < (round + 1) * 100 {
            let v = reader.json_line();
            if v["type"] == "message" {
                got += 1;
            }
        }
    }
    // 12,000 messages of 2 KB (24 MB, more than the kernel buffers between the server and the
    // stuck client hold) went by; the stuck client was dropped, not buffered for.
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
    assert!(
        rows.iter()
            .any(|r| r[6] == "stuck" && r[7] == "slow consumer: outbox full"),
        "{rows:#?}"
    );
    let after = server.rss_kib();
    assert!(
        after < before + 24 * 1024,
        "server RSS grew from {before} to {after} KiB"
    );
    talker.until("* stuck left #lobby (too slow to keep up)");
    talker.nothing_pending(false);
}

/// Fault 2: Many connections each sending an over-long line without a newline, at once: each gets
/// an error, memory stays bounded, and a bystander chats on undisturbed.
#[test]
fn many_floods_of_over_long_lines_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut a = Client::human(server.addr, "alice");
    let mut b = Client::human(server.addr, "bob");
    a.until("bob joined");
    let before = server.rss_kib();
    let addr = server.addr;
    let flooders: Vec<_> = (0..16)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::human(addr, &format!("flood{i}"));
                let chunk = vec![b'F'; 1 << 20];
                for _ in 0..32 {
                    c.stream.write_all(&chunk).unwrap();
                }
                c.send("");
                c.until("! line too long")
            })
        })
        .collect();
    // While that goes on, alice and bob still talk.
    a.send("still here");
    assert!(b.until("alice: still here").contains("#lobby"));
    for f in flooders {
        assert!(f.join().unwrap().contains("4096 bytes"));
    }
    let after = server.rss_kib();
    assert!(
        after < before + 32 * 1024,
        "server RSS grew from {before} to {after} KiB while reading 512 MiB"
    );
    assert!(
        !std::fs::read_to_string(dir.path().join("messages.csv"))
            .unwrap()
            .contains("FFFF")
    );
}

/// Fault 3: Slowloris: many connections that never finish a name are all dropped at the handshake
/// timeout, and a real client gets in meanwhile.
#[test]
fn slowloris_connections_are_dropped_and_do_not_block_others() {
    let server = start_with(|c| c.connection.handshake_timeout = Duration::from_millis(500).into());
    let started = Instant::now();
    let mut silent: Vec<TcpStream> = (0..200)
        .map(|i| {
            let s = TcpStream::connect(server.addr).unwrap();
            if i % 2 == 0 {
                // Half of them trickle a name that never ends.
                (&s).write_all(b"slo").unwrap();
            }
            s
        })
        .collect();
    let mut real = server.human("real");
    real.nothing_pending(false);
    for s in &mut silent {
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut all = Vec::new();
        std::io::Read::read_to_end(s, &mut all).unwrap();
        assert!(String::from_utf8_lossy(&all).contains("no name given"));
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // A round trip through the broadcaster: the rows of the closes seen above are written.
    real.nothing_pending(false);
    let rows = csv_rows(&server.read("data.csv"));
    let dropped = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[7] == "handshake timeout")
        .count();
    assert_eq!(dropped, 200);
    real.send("made it");
    real.nothing_pending(false);
}

/// Fault 4: Random bytes, invalid UTF-8, NULs, escapes, huge names, JSON of every wrong shape: every
/// bad line gets an error, nothing crashes, no thread panics, and the log stays valid CSV.
#[test]
fn garbage_of_every_kind_gets_errors_and_breaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let server = ServerProcess::start_logged(dir.path(), &[], &log);
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let junk_lines: Vec<Vec<u8>> = vec![
        b"\x00\x00\x00".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        b"\x1b[2J\x1b[H\x1b]0;owned\x07".to_vec(),
        "x".repeat(5000).into_bytes(),
        b"{".to_vec(),
        b"{}".to_vec(),
        b"[]".to_vec(),
        b"null".to_vec(),
        br#"{"type":null}"#.to_vec(),
        br#"{"type":"say","text":["a"]}"#.to_vec(),
        br#"{"type":"say","text":"x","extra":1}"#.to_vec(),
        br##"{"type":"join","room":"#"}"##.to_vec(),
        br#"{"type":"msg","to":"","text":"x"}"#.to_vec(),
        br#"{"type":"history","n":-1}"#.to_vec(),
        br#"{"type":"history","n":1e99}"#.to_vec(),
        format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
        format!(r#"{{"type":"say","text":"{}"}}"#, "\\n".repeat(150)).into_bytes(),
        b"/join ../../etc".to_vec(),
        b"/msg \xc3\x28 hi".to_vec(),
        b"/nick \x1b".to_vec(),
    ];
    for mode in ["human", "json"] {
        for round in 0..10 {
            let name = format!("g{mode}{round}");
            let json = mode == "json";
            let mut c = if json {
                Client::json(server.addr, &name)
            } else {
                Client::human(server.addr, &name)
            };
            // A room of its own: junk that happens to be a valid message reaches nobody, and
            // nobody else's messages arrive here.
            for line in [format!("/join {name}"), "/leave lobby".to_string()] {
                if json {
                    c.send_json(json!({"type": "command", "line": line}));
                } else {
                    c.send(&line);
                }
            }
            c.nothing_pending_after(json, |_| true);
            let mut lines = junk_lines.clone();
            for _ in 0..20 {
                let n = (rng.next() % 300) as usize;
                let mut l = rng.bytes(n);
                l.retain(|&b| b != b'\n');
                lines.push(l);
            }
            for l in &lines {
                c.send_raw(l);
                c.send_raw(b"\n");
            }
            // The connection still works, and answers in order after all that: every line before
            // the pong is an error (valid messages in a room of one echo only in JSON mode, and
            // none of this junk is a valid JSON request).
            c.nothing_pending_after(json, |line| {
                if json {
                    line.starts_with(r#"{"type":"error""#)
                } else {
                    line.starts_with("! ")
                }
            });
        }
    }
    // Names of every wrong kind at the handshake.
    for bad in [
        "x".repeat(10_000).into_bytes(),
        b"\xff\xff".to_vec(),
        b"a\x00b".to_vec(),
        b"{\"type\":\"hello\",\"name\":{}}".to_vec(),
    ] {
        let mut c = Client::connect(server.addr);
        c.line();
        c.send_raw(&bad);
        c.send_raw(b"\n");
        assert!(c.line().starts_with('!') || c.transcript.last().unwrap().contains("error"));
    }
    let mut ok = Client::human(server.addr, "survivor");
    ok.send("the server is fine");
    ok.nothing_pending(false);
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("messages.csv")).unwrap());
    for r in &rows {
        assert!(
            !r[6]
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t'),
            "{r:?}"
        );
    }
    let said = server.log();
    assert!(!said.contains("panicked"), "a thread panicked:\n{said}");
}

/// Fault 5: `kill -9` during a burst, several times: after each restart both CSVs parse, ids keep
/// increasing, and every message any client received is in the log.
#[test]
fn kill_dash_nine_during_a_burst_loses_nothing_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut delivered: Vec<(u64, String)> = Vec::new();
    for round in 0..5 {
        let server = ServerProcess::start(dir.path(), &["--fsync", "never"]);
        let mut watcher = Client::json(server.addr, "watcher");
        let mut sender = Client::json(server.addr, "sender");
        // A burst, pipelined; the kill lands in the middle of it.
        let burst: String = (0..2000)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"type":"say","text":format!("r{round} m{i}, \"q\"")})
                )
            })
            .collect();
        sender.send_raw(burst.as_bytes());
        let kill_after = 300 + round * 250;
        let mut seen = 0;
        while seen < kill_after {
            let v = watcher.json_line();
            if v["type"] == "message" {
                delivered.push((
                    v["id"].as_u64().unwrap(),
                    v["text"].as_str().unwrap().to_string(),
                ));
                seen += 1;
            }
        }
        server.signal("KILL");
        let status = server.wait();
        assert!(!status.success());
        // Whatever else the watcher had already been sent is delivered too.
        watcher
            .stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        for line in watcher.closed().lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                && v["type"] == "message"
            {
                delivered.push((
                    v["id"].as_u64().unwrap(),
                    v["text"].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    // One more clean start: it repairs any torn tail and carries on numbering.
    let server = ServerProcess::start(dir.path(), &[]);
    let mut last = Client::json(server.addr, "last");
    last.send_json(json!({"type":"say","text":"after the crashes"}));
    let id = last.next_of("message")["id"].as_u64().unwrap();
    drop(server);
    let messages = std::fs::read_to_string(dir.path().join("messages.csv")).unwrap();
    let rows = csv_rows(&messages);
    let ids: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "ids not increasing");
    assert_eq!(*ids.last().unwrap(), id);
    let logged: std::collections::HashMap<u64, &str> = rows
        .iter()
        .map(|r| (r[0].parse().unwrap(), r[6].as_str()))
        .collect();
    for (id, text) in &delivered {
        assert_eq!(
            logged.get(id),
            Some(&text.as_str()),
            "delivered message {id} is not in the log"
        );
    }
    csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
}

/// A full disk: the message is refused with an error, the server keeps running, and it works
/// again once there is room. Uses a real, tiny filesystem (tmpfs; the tests run as root).
#[test]
fn a_full_disk_refuses_messages_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("disk");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&mnt)
        .status()
        .expect("mount");
    assert!(mounted.success(), "this test needs to mount a tmpfs (root)");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    let server = start_with(|c| c.data_dir = mnt.clone());
    let mut a = server.json("alice");
    let mut w = server.human("watcher");
    a.next_of("joined");
    // Fill the disk.
    let filler = mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let _ = f.write_all(&vec![0u8; 64 * 1024]);
    drop(f);
    // The log file's last page may still have room for one message; the next needs a page
    // the disk no longer has.
    let mut sent_ok = Vec::new();
    let mut refused = false;
    for i in 0..4 {
        let text = format!("fill {i} {}", "x".repeat(3900));
        a.send_json(json!({"type":"say","text":text}));
        let v = a.json_line();
        if v["type"] == "error" {
            assert_eq!(v["code"], "storage", "{v}");
            refused = true;
            break;
        }
        assert_eq!(v["type"], "message", "{v}");
        sent_ok.push(text);
    }
    assert!(refused, "the disk never filled up");
    // The watcher got exactly the messages that were logged, and not the refused one.
    for text in &sent_ok {
        assert!(w.line().ends_with(text.as_str()));
    }
    w.nothing_pending(false);
    // Room again: the next message goes through, and the file is whole.
    std::fs::remove_file(&filler).unwrap();
    a.send_json(json!({"type":"say","text":"now it fits"}));
    assert_eq!(a.next_of("message")["text"], "now it fits");
    assert!(w.until("alice: now it fits").contains("#lobby"));
    let rows = csv_rows(&std::fs::read_to_string(mnt.join("messages.csv")).unwrap());
    let texts: Vec<&str> = rows.iter().map(|r| r[6].as_str()).collect();
    let mut expected: Vec<&str> = sent_ok.iter().map(String::as_str).collect();
    expected.push("now it fits");
    assert_eq!(texts, expected);
}

#[test]
fn fsync_modes_all_log_before_delivering() {
    for mode in ["always", "batch", "never"] {
        let dir = tempfile::tempdir().unwrap();
        let server = ServerProcess::start(dir.path(), &["--fsync", mode]);
        let mut a = Client::json(server.addr, "alice");
        for i in 0..20 {
            a.send_json(json!({"type":"say","text":format!("{mode} {i}")}));
        }
        for _ in 0..20 {
            let m = a.next_of("message");
            let rows = csv_rows(&std::fs::read_to_string(dir.path().join("messages.csv")).unwrap());
            assert!(
                rows.iter()
                    .any(|r| r[0] == m["id"].as_u64().unwrap().to_string()),
                "{mode}: {m}"
            );
        }
    }
}

#[test]
fn the_rate_limit_refuses_with_a_retry_hint_and_floods_are_disconnected() {
    let server = start_with(|c| {
        c.chat.msg_rate = 2.0;
        c.chat.msg_burst = 3.0;
        c.chat.flood_limit = 10;
    });
    let mut a = server.json("alice");
    let mut w = server.human("watcher");
    a.next_of("joined");
    for i in 0..4 {
        a.send_json(json!({"type":"say","text":format!("m{i}")}));
    }
    for i in 0..3 {
        assert_eq!(a.next_of("message")["text"], format!("m{i}"));
    }
    let err = a.next_of("error");
    assert_eq!(err["code"], "rate_limited");
    let wait = err["retry_after_ms"].as_u64().unwrap();
    assert!((1..=500).contains(&wait), "{err}");
    assert!(err["message"].as_str().unwrap().contains("retry in"));
    // Every request costs from the same bucket: a `who` now is refused too, in its own words.
    a.send_json(json!({"type":"who"}));
    let err = a.next_of("error");
    assert_eq!(err["code"], "rate_limited");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("too many requests"),
        "{err}"
    );
    // A paste is one message, however many lines.
    let mut h = server.human("paster");
    h.send("/paste");
    assert!(h.line().contains("pasting: send the lines"));
    for i in 0..50 {
        h.send(&format!("line {i}, with a comma"));
    }
    h.send(".");
    let pasted = w.until("paster:");
    assert!(pasted.ends_with("paster: line 0, with a comma"), "{pasted}");
    for _ in 1..50 {
        w.line();
    }
    // Keep flooding: after `flood_limit` refusals in a row the client is disconnected.
    for i in 0..30 {
        a.send_json(json!({"type":"say","text":format!("flood {i}")}));
    }
    let bye = a.next_of("bye");
    assert!(
        bye["reason"].as_str().unwrap().contains("flooding"),
        "{bye}"
    );
    a.closed();
    assert!(
        w.until("alice left")
            .ends_with("(disconnected for flooding)")
    );
}

#[test]
fn pastes_over_the_limits_are_refused_whole() {
    let server = start_with(|c| c.connection.max_line = 200);
    let mut h = server.human("paster");
    let mut w = server.human("watcher");
    h.until("watcher joined");
    h.send("/paste");
    h.line();
    for _ in 0..10 {
        h.send(&"z".repeat(30));
    }
    h.send(".");
    assert_eq!(
        h.line(),
        "! line too long: the limit is 200 bytes; the line was not sent"
    );
    h.send("/paste");
    h.line();
    for _ in 0..101 {
        h.send("x");
    }
    h.send(".");
    assert!(h.line().contains("at most 100 lines"));
    w.nothing_pending(false);
    let server = start_with(|_| {});
    let mut j = server.json("jay");
    let text = vec!["l"; 101].join("\n");
    j.send_json(json!({"type":"say","text":text}));
    assert_eq!(j.next_of("error")["code"], "too_many_lines");
}

#[test]
fn per_address_limits_refuse_with_a_reason() {
    let server = start_with(|c| {
        c.limits.limit_loopback = true;
        c.limits.max_per_ip = 2;
        c.limits.conn_per_minute = 3;
    });
    let _a = server.human("a");
    let _b = server.human("b");
    let mut third = Client::connect(server.addr);
    let said = third.closed();
    assert!(
        said.starts_with("! too many connections from your address (at most 2)"),
        "{said}"
    );
    let mut fourth = Client::connect(server.addr);
    let said = fourth.closed();
    assert!(said.contains(r#""code":"connection_rate""#), "{said}");
}

#[test]
fn quiet_json_clients_are_pinged_and_silent_ones_dropped() {
    let server = start_with(|c| {
        c.connection.ping_interval = Duration::from_millis(300).into();
        c.connection.ping_timeout = Duration::from_millis(300).into();
        c.connection.idle_timeout = Duration::from_millis(600).into();
    });
    let mut alive = server.json("alive");
    let ping = alive.next_of("ping");
    alive.send_json(json!({"type":"pong","id":ping["id"]}));
    // Answering keeps it connected: it is pinged again rather than dropped.
    alive.next_of("ping");
    alive.send_json(json!({"type":"pong"}));

    let mut mute = server.json("mute");
    mute.next_of("ping");
    let bye = mute.next_of("bye");
    assert_eq!(bye["reason"], "no answer to a ping");
    mute.closed();

    let mut idle = server.human("idle");
    assert!(idle.until("disconnected:").ends_with("idle for too long"));
    idle.closed();
    // The broadcaster drops a client (which closes it) before it writes that batch's rows: a
    // round trip through it is the barrier.
    server.json("barrier").nothing_pending(true);
    let rows = csv_rows(&server.read("data.csv"));
    for (name, why) in [
        ("mute", "timeout: no answer to a ping"),
        ("idle", "timeout: idle for too long"),
    ] {
        assert!(
            rows.iter()
                .any(|r| r[1] == "disconnect" && r[6] == name && r[7] == why),
            "{name}: {rows:#?}"
        );
    }
}

/// The writer threads of a server: one per connection that is behind, by name (`conn-N-w`).
fn writer_threads(server: &ServerProcess) -> usize {
    std::fs::read_dir(format!("/proc/{}/task", server.pid))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim_end().ends_with("-w"))
        .count()
}

/// Waits (bounded) until the server has `n` writer threads.
fn until_writer_threads(server: &ServerProcess, n: usize) {
    let deadline = Instant::now() + TIMEOUT;
    while writer_threads(server) != n {
        assert!(
            Instant::now() < deadline,
            "the server has {} writer threads, not {n}",
            writer_threads(server)
        );
        std::thread::yield_now();
    }
}

/// Fault 13: a writer thread exists only while a client is behind. Idle clients have none; a
/// client that stops reading gets one, and is dropped at the outbox's bound; one that falls
/// behind and then catches up gets every message in order, and its writer ends.
#[test]
fn a_writer_thread_comes_with_falling_behind_and_goes_with_catching_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &["--outbox-kib", "1024"]);
    let mut lagger = Client::json(server.addr, "lagger");
    let _stuck = Client::json(server.addr, "stuck");
    let mut talker = Client::human(server.addr, "talker");
    lagger.until(r#""name":"talker""#);
    assert_eq!(writer_threads(&server), 0, "idle clients have no writer");
    let body = "z".repeat(2000);
    let burst = |talker: &mut Client, from: usize, n: usize| {
        let batch: String = (from..from + n)
            .map(|i| format!("{i:05} {body}\n"))
            .collect();
        talker.send_raw(batch.as_bytes());
        from + n
    };
    // 1 MB: more than the kernel buffers to a client that does not read, less than the bound.
    let mut sent = burst(&mut talker, 0, 500);
    until_writer_threads(&server, 2);
    let mut next = 0;
    let mut read_up_to = |lagger: &mut Client, upto: usize| {
        while next < upto {
            let v = lagger.json_line();
            if v["type"] == "message" {
                let text = v["text"].as_str().unwrap().to_string();
                assert!(
                    text.starts_with(&format!("{next:05} ")),
                    "expected {next}, got {text:.8}"
                );
                next += 1;
            }
        }
    };
    read_up_to(&mut lagger, 500);
    // Another 1.5 MB: the stuck client passes the bound and is dropped; the lagger keeps up.
    for _ in 0..15 {
        sent = burst(&mut talker, sent, 50);
        read_up_to(&mut lagger, sent);
    }
    talker.until("* stuck left #lobby (too slow to keep up)");
    let rows = csv_rows(&std::fs::read_to_string(dir.path().join("data.csv")).unwrap());
    assert!(
        rows.iter()
            .any(|r| r[6] == "stuck" && r[7] == "slow consumer: outbox full"),
        "{rows:#?}"
    );
    assert!(
        !rows
            .iter()
            .any(|r| r[6] == "lagger" && r[1] == "disconnect"),
        "{rows:#?}"
    );
    // Caught up: its writer ends once idle; the next message goes straight to the socket.
    until_writer_threads(&server, 0);
    talker.send("after");
    let v = lagger.next_of("message");
    assert_eq!(v["text"], "after");
    assert_eq!(writer_threads(&server), 0);
}
