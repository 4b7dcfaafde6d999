//! `chat-log` on fixture CSVs: every filter, each format, `--last`, a torn last line, escape
//! characters, and `--follow` across appends, truncation and replacement.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{TIMEOUT, csv_rows, wait_timeout_output};

const FIXTURE: &str = "id,timestamp,room,sender,recipient,kind,text
1,2026-11-20T09:00:00.000Z,lobby,alice,,message,good morning
2,2026-11-21T10:00:00.000Z,Ops,bob,,message,\"deploy 1.2, done\"
3,2026-11-22T11:00:00.000Z,,carol,alice,direct,\"psst, \"\"secret\"\"\"
4,2026-11-23T12:00:00.000Z,ops,alice,,action,waves
5,2026-11-23T13:00:00.000Z,lobby,mallory,,message,\"evil \u{1b}[2J\u{202e}txt\"
6,2026-11-23T14:00:00.000Z,lobby,bob,,message,\"two
lines\"
";

/// A `chat-log --follow` that is killed when the test ends, even by a failed assertion (it
/// would otherwise hold the test's output open).
struct Follower(std::process::Child);

/// Starts `chat-log ARGS` on `dir` and hands its output over line by line.
fn follow(dir: &Path, args: &[&str]) -> (Follower, crossbeam_channel::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    (Follower(child), rx)
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn fixture(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("messages.csv"), format!("{FIXTURE}{extra}")).unwrap();
    dir
}

fn chat_log(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out, err) = wait_timeout_output(child);
    (status.success(), out, err)
}

/// The ids of the rows `chat-log --format csv` printed with `args`.
fn ids(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--format", "csv"];
    all.extend_from_slice(args);
    let (ok, out, err) = chat_log(dir, &all);
    assert!(ok, "{err}");
    csv_rows(&out).into_iter().map(|r| r[0].clone()).collect()
}

#[test]
fn every_filter_alone_and_combined() {
    let dir = fixture("");
    let d = dir.path();
    assert_eq!(ids(d, &[]), ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(ids(d, &["--room", "#OPS"]), ["2", "4"]);
    assert_eq!(ids(d, &["--from", "ALICE"]), ["1", "4"]);
    assert_eq!(ids(d, &["--to", "alice"]), ["3"]);
    assert_eq!(ids(d, &["--dm"]), ["3"]);
    assert_eq!(ids(d, &["--no-dm"]), ["1", "2", "4", "5", "6"]);
    assert_eq!(ids(d, &["--since", "2026-11-22"]), ["3", "4", "5", "6"]);
    assert_eq!(ids(d, &["--until", "2026-11-21T10:00:00Z"]), ["1"]);
    assert_eq!(ids(d, &["--grep", "(?i)DEPLOY|secret"]), ["2", "3"]);
    assert_eq!(ids(d, &["--from", "bob", "--room", "lobby"]), ["6"]);
    assert_eq!(ids(d, &["--last", "2"]), ["5", "6"]);
    assert_eq!(ids(d, &["--last", "1", "--from", "alice"]), ["4"]);
    // Relative times: nothing in the fixture is from the last hour.
    assert!(ids(d, &["--since", "1h"]).is_empty());
    let (ok, _, err) = chat_log(d, &["--since", "last tuesday"]);
    assert!(!ok && err.contains("is not a time"), "{err}");
    let (ok, _, err) = chat_log(d, &["--grep", "("]);
    assert!(!ok && err.contains("--grep"), "{err}");
}

#[test]
fn each_format_and_escape_safety() {
    let dir = fixture("");
    let (ok, csv, _) = chat_log(dir.path(), &["--format", "csv"]);
    assert!(ok);
    assert!(csv.starts_with("id,timestamp,room,sender,recipient,kind,text\n"));
    // Same columns and values as the file: CSV in, CSV out.
    assert_eq!(csv_rows(&csv), csv_rows(FIXTURE));
    let (ok, jsonl, _) = chat_log(dir.path(), &["--format", "jsonl", "--dm"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(jsonl.trim()).unwrap();
    assert_eq!(v["text"], "psst, \"secret\"");
    assert_eq!(v["recipient"], "alice");
    let (ok, table, _) = chat_log(dir.path(), &["--color", "always"]);
    assert!(ok);
    // The escape sequence in mallory's text is shown, not obeyed; the only escapes are ours.
    assert!(table.contains("evil \\u{1b}[2J\\u{202e}txt"), "{table}");
    assert!(!table.contains("\u{1b}[2J") && !table.contains('\u{202e}'));
    assert!(
        table.contains("* \u{1b}[1malice\u{1b}[0m waves"),
        "{table:?}"
    );
    assert!(table.contains("(direct)"), "{table}");
}

/// `--format csv` as it was before rows were copied out as they are: each row decoded into a
/// `MessageRecord` (skipped if it is not one) and encoded again by the `csv` crate.
fn reencoded_csv(log: &str, keep: impl Fn(&chatroom::store::MessageRecord) -> bool) -> String {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(log.as_bytes());
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    w.write_record([
        "id",
        "timestamp",
        "room",
        "sender",
        "recipient",
        "kind",
        "text",
    ])
    .unwrap();
    for rec in rdr.byte_records().skip(1) {
        if let Ok(m) = rec
            .unwrap()
            .deserialize::<chatroom::store::MessageRecord>(None)
            && keep(&m)
        {
            w.serialize(m).unwrap();
        }
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

#[test]
fn csv_output_is_the_file_s_rows_or_their_reencoding() {
    // The fixture's rows are as the server writes them; these are hand edits.
    let edits = "007,2026-11-24T09:00:00.000Z,\"lobby\",zed,,message,\"needless\"
8,2026-11-24T09:00:01.000Z,lobby,zed,,message,he said \"hi\" there
9,2026-11-24T09:00:02.000Z,lobby,zed,,message,crlf ending\r

10,2026-11-24T09:00:03.000Z,lobby,zed,,shout,unknown kind
11,2026-11-24T09:00:04.000Z,lobby,zed,,message,\"a \"\"quoted\"\" word\"
";
    let dir = fixture(edits);
    let log = format!("{FIXTURE}{edits}");
    let (ok, all, err) = chat_log(dir.path(), &["--format", "csv"]);
    assert!(ok, "{err}");
    assert_eq!(all, reencoded_csv(&log, |_| true));
    // A literal --grep skips the rows that cannot hold it, unparsed: the same rows come out.
    for word in ["hi", "quoted", "zed", "nowhere", "e"] {
        let (ok, out, err) = chat_log(dir.path(), &["--format", "csv", "--grep", word]);
        assert!(ok, "{err}");
        assert_eq!(
            out,
            reencoded_csv(&log, |m| m.text.contains(word)),
            "{word}"
        );
    }
    // Row 5 of the fixture has quotes it does not need: re-encoded, it loses them.
    assert!(all.contains(",mallory,,message,evil "), "{all}");
}

#[test]
fn a_torn_last_line_is_held_back_and_reported() {
    let dir = fixture("7,2026-11-23T15:00:00.000Z,lobby,zed,,message,\"half wri");
    let (ok, out, err) = chat_log(dir.path(), &["--format", "csv"]);
    assert!(ok);
    assert_eq!(csv_rows(&out).len(), 6);
    assert!(err.contains("are an unfinished row; not shown"), "{err}");
    let (ok, out, _) = chat_log(dir.path(), &["--format", "csv", "--last", "1"]);
    assert!(ok);
    assert_eq!(csv_rows(&out)[0][0], "6");
}

/// A row torn inside a quoted line break ends, in the file, with a newline of its own text:
/// only the quotes tell that it is unfinished. It is held back like any torn row, whether the
/// tear is just after that newline or further on.
#[test]
fn a_row_torn_inside_a_quoted_line_break_is_held_back() {
    for torn in [
        "7,2026-11-23T15:00:00.000Z,lobby,zed,,message,\"part one\npart",
        "7,2026-11-23T15:00:00.000Z,lobby,zed,,message,\"part one\n",
    ] {
        let dir = fixture(torn);
        let (ok, out, err) = chat_log(dir.path(), &["--format", "csv"]);
        assert!(ok, "{err}");
        let rows = csv_rows(&out);
        assert_eq!(rows.len(), 6, "{torn:?} printed:\n{out}");
        assert!(err.contains("are an unfinished row; not shown"), "{err}");
        let (ok, out, _) = chat_log(dir.path(), &["--format", "csv", "--last", "1"]);
        assert!(ok);
        assert_eq!(csv_rows(&out)[0][0], "6", "{torn:?}");
    }
}

/// `--follow` from a row torn inside a quoted line break shows it whole once its end is
/// written, and every row after it.
#[test]
fn follow_completes_a_row_torn_inside_a_quoted_line_break() {
    let dir = fixture("7,2026-11-23T15:00:00.000Z,lobby,zed,,message,\"part one\npart");
    let path = dir.path().join("messages.csv");
    let (_follower, rx) = follow(
        dir.path(),
        &["--follow", "--format", "jsonl", "--room", "lobby"],
    );
    let next = || -> serde_json::Value {
        let line = rx
            .recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time");
        serde_json::from_str(&line).unwrap()
    };
    for id in [1, 5, 6] {
        assert_eq!(next()["id"], id);
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b" two\"\n8,2026-11-23T15:01:00.000Z,lobby,x,,message,after\n")
        .unwrap();
    let seven = next();
    assert_eq!(seven["id"], 7);
    assert_eq!(seven["text"], "part one\npart two");
    assert_eq!(next()["id"], 8);
}

#[test]
fn follow_survives_appends_truncation_and_replacement() {
    let dir = fixture("");
    let path = dir.path().join("messages.csv");
    let (_follower, rx) = follow(dir.path(), &["--follow", "--format", "csv", "--no-dm"]);
    let next = || {
        rx.recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time")
    };
    let first_id = |line: String| line.split(',').next().unwrap().to_string();
    assert_eq!(next(), "id,timestamp,room,sender,recipient,kind,text");
    for id in ["1", "2", "4", "5"] {
        assert_eq!(first_id(next()), id);
    }
    assert_eq!(first_id(next()), "6");
    next(); // "lines\"": the second line of message 6
    // Appended rows appear; the filter still applies (the DM is not shown).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"7,2026-11-23T15:00:00.000Z,,x,y,direct,hidden\n8,2026-11-23T15:01:00.000Z,lobby,x,,message,appended\n")
        .unwrap();
    assert_eq!(first_id(next()), "8");
    // Truncated and rewritten: read again from the top.
    std::fs::write(&path, "id,timestamp,room,sender,recipient,kind,text\n9,2026-11-24T00:00:00.000Z,lobby,x,,message,after truncation\n").unwrap();
    assert_eq!(first_id(next()), "9");
    // Replaced by a new file (log rotation): followed too.
    let rotated = dir.path().join("new.csv");
    std::fs::write(&rotated, "id,timestamp,room,sender,recipient,kind,text\n10,2026-11-24T00:01:00.000Z,lobby,x,,message,after rotation\n").unwrap();
    std::fs::rename(&rotated, &path).unwrap();
    assert_eq!(first_id(next()), "10");
    // Nothing else comes within a few polling intervals.
    assert!(rx.recv_timeout(Duration::from_millis(500)).is_err());
}

const DATA_FIXTURE: &str = "timestamp,event,conn,ip,port,thread,name,detail
2026-11-23T10:00:00.000Z,start,,,,,,chatroom 0.1.0 on 0.0.0.0:5555
2026-11-23T10:00:01.000Z,connect,1,203.0.113.7,40000,conn-1,,
2026-11-23T10:00:02.000Z,named,1,203.0.113.7,40000,conn-1,alice,member
2026-11-23T10:00:03.000Z,connect,2,198.51.100.9,40001,conn-2,,
2026-11-23T10:00:04.000Z,named,2,198.51.100.9,40001,conn-2,bob,guest
2026-11-23T11:30:05.000Z,disconnect,1,203.0.113.7,40000,conn-1,alice,quit: lunch
2026-11-23T12:00:00.000Z,disconnect,2,198.51.100.9,40001,conn-2,bob,connection reset
";

#[test]
fn connections_show_who_from_where_how_long_and_why() {
    let dir = fixture("");
    std::fs::write(dir.path().join("data.csv"), DATA_FIXTURE).unwrap();
    let (ok, out, err) = chat_log(dir.path(), &["connections", "--color", "never"]);
    assert!(ok, "{err}");
    let alice_left = out
        .lines()
        .find(|l| l.contains("disconnect") && l.contains("alice"))
        .unwrap();
    assert!(alice_left.contains("203.0.113.7:40000"), "{alice_left}");
    assert!(
        alice_left.ends_with("after 1h 30m: quit: lunch"),
        "{alice_left}"
    );
    let (ok, out, _) = chat_log(
        dir.path(),
        &["connections", "--name", "BOB", "--format", "csv"],
    );
    assert!(ok);
    let rows = csv_rows(&out);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r[6] == "bob"));
    let (ok, out, _) = chat_log(
        dir.path(),
        &["connections", "--ip", "203.0.113.0/24", "--format", "csv"],
    );
    assert!(ok);
    assert_eq!(csv_rows(&out).len(), 3);
    let (ok, out, _) = chat_log(
        dir.path(),
        &[
            "connections",
            "--since",
            "2026-11-23T11:00:00Z",
            "--format",
            "jsonl",
        ],
    );
    assert!(ok);
    let events: Vec<String> = out
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(events, ["disconnect", "disconnect"]);
}

#[test]
fn stats_count_per_room_sender_and_hour_with_bars() {
    let dir = fixture("");
    let (ok, out, err) = chat_log(dir.path(), &["stats"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("6 messages\n"), "{out}");
    assert!(
        out.contains(
            "#lobby                           3  ████████████████████████████████████████"
        ),
        "{out}"
    );
    assert!(
        out.contains("#ops                             2  "),
        "{out}"
    );
    assert!(
        out.contains("(direct)                         1  "),
        "{out}"
    );
    assert!(out.contains("  12:00         1  "), "{out}");
    // Filters apply to the statistics too.
    let (ok, out, _) = chat_log(dir.path(), &["stats", "--from", "alice"]);
    assert!(ok);
    assert!(out.starts_with("2 messages\n"), "{out}");
    // Escapes in names are shown, not obeyed.
    assert!(!out.contains('\u{1b}'));
}
