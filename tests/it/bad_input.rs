//! Bad input: each gets a clear error to its sender, nothing reaches anyone else, the
//! connection stays usable where that makes sense, and `messages.csv` stays valid.

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use crate::support::{Client, ServerProcess, csv_rows, start_server, start_with};

/// After a refused line, the watcher's next line must be the marker: nothing leaked.
fn assert_only_marker_arrives(watcher: &mut Client, sender: &str) {
    let line = watcher.line();
    assert!(
        line.ends_with(&format!("{sender}: marker")),
        "expected only the marker, got {line:?}"
    );
}

#[test]
fn an_over_long_line_is_refused_and_the_connection_stays_usable() {
    let server = start_with(|c| c.connection.max_line = 100);
    let mut a = server.human("alice");
    let mut w = server.human("watcher");
    a.until("watcher joined");
    a.send(&"x".repeat(101));
    assert_eq!(
        a.line(),
        "! line too long: the limit is 100 bytes; the line was not sent"
    );
    a.send(&"y".repeat(100));
    assert!(w.line().ends_with(&format!("alice: {}", "y".repeat(100))));
    a.send("marker");
    assert_only_marker_arrives(&mut w, "alice");

    let mut j = server.json("jay");
    a.until("jay joined");
    w.until("jay joined");
    j.send(&format!(r#"{{"type":"say","text":"{}"}}"#, "q".repeat(200)));
    assert_eq!(j.json_line()["code"], "line_too_long");
    j.nothing_pending(true);
    let rows = csv_rows(&server.read("messages.csv"));
    assert_eq!(rows.len(), 2, "{rows:#?}");
}

/// A gigabyte with no newline costs the server no more memory than one line.
#[test]
fn a_gigabyte_without_newline_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let mut flooder = Client::human(server.addr, "flooder");
    let mut w = Client::human(server.addr, "watcher");
    let before = server.rss_kib();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..1024 {
        flooder.stream.write_all(&chunk).unwrap();
    }
    flooder.send("");
    assert_eq!(
        flooder.until("! line too long"),
        "! line too long: the limit is 4096 bytes; the line was not sent"
    );
    let after = server.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "server RSS grew from {before} KiB to {after} KiB while reading 1 GiB"
    );
    flooder.send("marker");
    assert_only_marker_arrives(&mut w, "flooder");
}

#[test]
fn invalid_utf8_is_refused() {
    let server = start_server();
    let mut a = server.human("alice");
    let mut w = server.human("watcher");
    a.until("watcher joined");
    a.send_raw(b"caf\xe9 au lait\n");
    assert_eq!(
        a.line(),
        "! the line is not valid UTF-8 (bad byte at offset 3); it was not sent"
    );
    a.send_raw(b"\xff\xfe\n");
    assert!(a.line().contains("not valid UTF-8"));
    a.send("marker");
    assert_only_marker_arrives(&mut w, "alice");

    let mut j = server.json("jay");
    j.send_raw(b"{\"type\":\"say\",\"text\":\"\xc3\x28\"}\n");
    assert_eq!(j.json_line()["code"], "invalid_utf8");
    j.nothing_pending(true);
}

#[test]
fn control_escape_and_bidi_characters_never_reach_anyone() {
    let server = start_server();
    let mut a = server.human("alice");
    let mut w = server.human("watcher");
    a.until("watcher joined");
    for bad in [
        "\u{1b}[2J\u{1b}[Hfake prompt",
        "bell\u{7}",
        "nul\u{0}byte",
        "c1 \u{9b}31m",
        "reversed \u{202E}txt.exe",
        "isolate \u{2066}x",
        "del\u{7f}",
    ] {
        a.send(bad);
        let err = a.line();
        assert!(
            err.starts_with("! the message holds the control character U+"),
            "{bad:?} gave {err:?}"
        );
    }
    a.send("marker");
    assert_only_marker_arrives(&mut w, "alice");

    let mut j = server.json("jay");
    j.send_json(json!({"type":"say","text":"ok\u{1b}]0;pwned\u{7}"}));
    let err = j.json_line();
    assert_eq!(err["code"], "control_char");
    assert!(err["message"].as_str().unwrap().contains("U+001B"));
    // A tab and a newline are fine in JSON mode.
    j.send_json(json!({"type":"say","text":"col1\tcol2\nrow2"}));
    assert_eq!(j.json_line()["text"], "col1\tcol2\nrow2");

    let text = server.read("messages.csv");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202E}') && !text.contains('\0'));
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 2, "{rows:#?}");
}

#[test]
fn malformed_json_gets_an_error_and_nothing_crashes() {
    let server = start_server();
    let mut j = server.json("jay");
    for (line, code) in [
        ("{\"type\":\"say\"", "bad_json"),
        ("[1,2,3]", "bad_json"),
        ("42", "bad_json"),
        ("just words", "bad_json"),
        (r#"{"type":"say","text":7}"#, "bad_request"),
        (r#"{"type":"say"}"#, "bad_request"),
        (r#"{"type":"fly"}"#, "bad_request"),
        (r#"{"text":"no type"}"#, "bad_request"),
        (r#"{"type":"say","text":"   "}"#, "empty_message"),
    ] {
        j.send(line);
        let err = j.json_line();
        assert_eq!(err["type"], "error", "{line}");
        assert_eq!(err["code"], code, "{line}: {err}");
    }
    j.send_json(json!({"type":"say","text":"still here"}));
    assert_eq!(j.json_line()["text"], "still here");
}

#[test]
fn a_silent_connection_is_dropped_after_the_handshake_timeout() {
    let server = start_with(|c| c.connection.handshake_timeout = Duration::from_millis(300).into());
    let mut silent = Client::connect(server.addr);
    assert!(silent.line().contains("What is your name?"));
    // A name started but never finished counts as silence too.
    silent.send_raw(b"hal");
    let rest = silent.closed();
    assert!(rest.contains("no name given within 0.3 s"), "{rest:?}");
    // The timeout covers the whole handshake, not each read: refused names do not extend it.
    let mut dawdler = Client::connect(server.addr);
    dawdler.line();
    dawdler.send("bad name");
    let rest = dawdler.closed();
    assert!(rest.contains("no name given"), "{rest:?}");
    // A round trip through the broadcaster: the rows of the closes seen above are written.
    server.json("barrier").nothing_pending(true);

    let rows = csv_rows(&server.read("data.csv"));
    let timeouts = rows
        .iter()
        .filter(|r| r[1] == "disconnect" && r[7] == "handshake timeout")
        .count();
    assert_eq!(timeouts, 2, "{rows:#?}");
}

#[test]
fn a_client_that_vanishes_mid_line_is_cleaned_up() {
    let server = start_server();
    let mut w = server.human("watcher");
    let mut gone = server.human("ghost");
    w.until("ghost joined");
    gone.send_raw(b"half a thou");
    drop(gone);
    assert!(
        w.line()
            .ends_with("* ghost left #lobby (connection closed)")
    );
    let again = server.human("ghost");
    drop(again);
    let rows = csv_rows(&server.read("data.csv"));
    assert!(
        rows.iter()
            .any(|r| r[1] == "disconnect" && r[6] == "ghost" && r[7] == "closed mid-line"),
        "{rows:#?}"
    );
    // The partial line was never delivered or logged.
    assert!(!server.read("messages.csv").contains("half a thou"));
}

#[test]
fn a_reset_connection_is_cleaned_up() {
    let server = start_server();
    let mut w = server.human("watcher");
    let r = server.human("resetter");
    w.until("resetter joined");
    // Unread data in the receive buffer makes close() send a reset instead of a FIN.
    w.send("something for resetter to leave unread");
    w.nothing_pending(false);
    drop(r);
    assert!(
        w.line()
            .ends_with("* resetter left #lobby (connection closed)")
    );
    let _again = server.human("resetter");
    let rows = csv_rows(&server.read("data.csv"));
    let row = rows
        .iter()
        .find(|r| r[1] == "disconnect" && r[6] == "resetter")
        .unwrap_or_else(|| panic!("{rows:#?}"));
    assert!(
        row[7] == "connection reset" || row[7] == "closed",
        "unexpected reason {:?}",
        row[7]
    );
}

#[test]
fn connections_beyond_max_clients_are_refused_with_a_reason() {
    let server = start_with(|c| c.connection.max_clients = Some(2));
    let mut a = server.human("first");
    let _b = server.human("second");
    let mut third = Client::connect(server.addr);
    let said = third.closed();
    assert!(
        said.starts_with("! the server is full (2 connections); try again later\n"),
        "{said:?}"
    );
    assert!(said.contains(r#""code":"server_full""#), "{said:?}");
    // Those already connected carry on.
    a.until("second joined");
    a.nothing_pending(false);
}
