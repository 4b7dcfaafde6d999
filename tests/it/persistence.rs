//! The CSV files: exact headers, field-by-field rows, ids across restarts, and the invariant
//! that nothing is delivered before it is in `messages.csv`, in delivery order.

use serde_json::json;

use crate::support::{csv_rows, start_in, start_server};

const MESSAGES_HEADER: &str = "id,timestamp,room,sender,recipient,kind,text";
const DATA_HEADER: &str = "timestamp,event,conn,ip,port,thread,name,detail";

fn is_rfc3339_millis_utc(ts: &str) -> bool {
    ts.len() == 24
        && ts.ends_with('Z')
        && ts.as_bytes()[19] == b'.'
        && chrono::DateTime::parse_from_rfc3339(ts).is_ok()
}

#[test]
fn rows_are_checked_field_by_field() {
    let mut server = start_server();
    let mut alice = server.json("alice");
    let alice_port = alice.stream.local_addr().unwrap().port();
    let tricky = "commas, \"quotes\", and\na newline";
    alice.send_json(json!({"type":"say","text":tricky}));
    let echo = alice.next_of("message");
    assert_eq!(echo["text"], tricky);
    alice.send_json(json!({"type":"quit"}));
    alice.closed();
    server.stop();

    let messages = std::fs::read_to_string(server.dir.join("messages.csv")).unwrap();
    assert!(
        messages.starts_with(&format!("{MESSAGES_HEADER}\n")),
        "{messages}"
    );
    let rows = csv_rows(&messages);
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r[0], "1");
    assert!(is_rfc3339_millis_utc(&r[1]), "{}", r[1]);
    assert_eq!(r[1], echo["ts"]);
    assert_eq!(&r[2..], ["lobby", "alice", "", "message", tricky]);

    let data = std::fs::read_to_string(server.dir.join("data.csv")).unwrap();
    assert!(data.starts_with(&format!("{DATA_HEADER}\n")), "{data}");
    let rows = csv_rows(&data);
    let events: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        events,
        ["start", "connect", "named", "disconnect", "stop"],
        "{rows:#?}"
    );
    for r in &rows {
        assert!(is_rfc3339_millis_utc(&r[0]), "{r:?}");
        assert_eq!(r.len(), 8);
    }
    assert!(rows[0][7].starts_with("chatroom "), "{:?}", rows[0]);
    let conn = &rows[1];
    assert_eq!(conn[2], "1");
    assert_eq!(conn[3], "127.0.0.1");
    assert_eq!(conn[4], alice_port.to_string());
    assert_eq!(conn[5], "conn-1");
    assert_eq!(conn[6], "");
    assert_eq!(
        &rows[2][2..7],
        ["1", "127.0.0.1", &alice_port.to_string(), "conn-1", "alice"]
    );
    assert_eq!(rows[3][6], "alice");
    assert_eq!(rows[3][7], "quit");
}

#[test]
fn ids_keep_increasing_across_restarts_and_files_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start_in(dir.path(), |_| {});
    let mut a = server.json("alice");
    for i in 0..3 {
        a.send_json(json!({"type":"say","text":format!("before restart {i}")}));
        a.next_of("message");
    }
    server.stop();
    let before = std::fs::read_to_string(dir.path().join("messages.csv")).unwrap();

    let mut server = start_in(dir.path(), |_| {});
    let mut a = server.json("alice");
    assert!(
        a.transcript.iter().any(|l| l.contains(r#""conn":2"#)),
        "{:#?}",
        a.transcript
    );
    a.send_json(json!({"type":"say","text":"after restart"}));
    let m = a.next_of("message");
    assert_eq!(m["id"], 4);
    server.stop();

    let after = std::fs::read_to_string(dir.path().join("messages.csv")).unwrap();
    assert!(
        after.starts_with(&before),
        "the file was rewritten, not appended to"
    );
    assert_eq!(after.matches(MESSAGES_HEADER).count(), 1);
    let ids: Vec<String> = csv_rows(&after).into_iter().map(|r| r[0].clone()).collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let data = std::fs::read_to_string(dir.path().join("data.csv")).unwrap();
    assert_eq!(data.matches(DATA_HEADER).count(), 1);
    let starts = csv_rows(&data).iter().filter(|r| r[1] == "start").count();
    assert_eq!(starts, 2);
}

/// Whenever a message reaches a client, its row is already in the file, and the order
/// messages reach a client is the order of the rows.
#[test]
fn nothing_is_delivered_before_it_is_logged_and_log_order_is_delivery_order() {
    let server = start_server();
    let mut watcher = server.json("watcher");
    let mut senders: Vec<_> = (0..3).map(|i| server.json(&format!("s{i}"))).collect();
    watcher.until(r#""name":"s2""#);
    let per_sender = 200;
    let threads: Vec<_> = senders
        .iter_mut()
        .map(|s| s.stream.try_clone().unwrap())
        .enumerate()
        .map(|(i, mut stream)| {
            std::thread::spawn(move || {
                use std::io::Write;
                for n in 0..per_sender {
                    let line = json!({"type":"say","text":format!("s{i} #{n}")}).to_string();
                    writeln!(stream, "{line}").unwrap();
                }
            })
        })
        .collect();
    let path = server.dir.join("messages.csv");
    let mut delivered = Vec::new();
    while delivered.len() < 3 * per_sender {
        let m = watcher.next_of("message");
        let id = m["id"].as_u64().unwrap();
        // Check a sample against the file as it is at the moment of delivery.
        if id.is_multiple_of(37) {
            // The broadcaster may be appending the next batch right now: look only at the
            // complete rows (these messages hold no newline).
            let text = std::fs::read_to_string(&path).unwrap();
            let rows = csv_rows(&text[..=text.rfind('\n').unwrap()]);
            assert!(
                rows.iter()
                    .any(|r| r[0] == id.to_string() && r[6] == m["text"]),
                "message {id} was delivered before it was logged"
            );
        }
        delivered.push((id, m["text"].as_str().unwrap().to_string()));
    }
    for t in threads {
        t.join().unwrap();
    }
    let logged: Vec<(u64, String)> = csv_rows(&server.read("messages.csv"))
        .into_iter()
        .map(|r| (r[0].parse().unwrap(), r[6].clone()))
        .collect();
    assert_eq!(logged, delivered);
    let ids: Vec<u64> = delivered.iter().map(|d| d.0).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ids not consecutive"
    );
    // Each sender's own messages stay in the order it sent them.
    for i in 0..3 {
        let mine: Vec<&String> = delivered
            .iter()
            .map(|d| &d.1)
            .filter(|t| t.starts_with(&format!("s{i} ")))
            .collect();
        let expected: Vec<String> = (0..per_sender).map(|n| format!("s{i} #{n}")).collect();
        assert_eq!(mine, expected.iter().collect::<Vec<_>>());
    }
}
