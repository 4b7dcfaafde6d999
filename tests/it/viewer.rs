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
        .env("TZ", "UTC")
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

/// `chat-log --data-dir DIR ARGS` in UTC: whether it exited 0, its output and its errors.
fn chat_log(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = chat_log_in("UTC", dir, args);
    (code == Some(0), out, err)
}

/// `chat-log --data-dir DIR ARGS` with `TZ=tz`: its exit status, output and errors.
fn chat_log_in(tz: &str, dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .env("TZ", tz)
        .env_remove("CHAT_COLOR")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out, err) = wait_timeout_output(child);
    (status.code(), out, err)
}

/// The ids of the rows `chat-log --format csv` printed with `args` (in `TZ=tz`); it exits 0
/// when it printed some, 1 when none matched.
fn ids_in(tz: &str, dir: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["--format", "csv"];
    all.extend_from_slice(args);
    let (code, out, err) = chat_log_in(tz, dir, &all);
    let ids: Vec<String> = csv_rows(&out).into_iter().map(|r| r[0].clone()).collect();
    let expected = if ids.is_empty() { 1 } else { 0 };
    assert_eq!(code, Some(expected), "{args:?}: {ids:?}, {err}");
    ids
}

fn ids(dir: &Path, args: &[&str]) -> Vec<String> {
    ids_in("UTC", dir, args)
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
        let (code, out, err) = chat_log_in("UTC", dir.path(), &["--format", "csv", "--grep", word]);
        let matched = csv_rows(&out).len();
        assert_eq!(code, Some(if matched > 0 { 0 } else { 1 }), "{err}");
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
    assert!(out.contains("per hour of day (local time)"), "{out}");
    // Filters apply to the statistics too.
    let (ok, out, _) = chat_log(dir.path(), &["stats", "--from", "alice"]);
    assert!(ok);
    assert!(out.starts_with("2 messages\n"), "{out}");
    // Escapes in names are shown, not obeyed.
    assert!(!out.contains('\u{1b}'));
}

/// Removes the colour codes `chat-log` writes.
fn without_colour(text: &str) -> String {
    regex::Regex::new("\u{1b}\\[[0-9;]*m")
        .unwrap()
        .replace_all(text, "")
        .into_owned()
}

#[test]
fn times_are_local_with_their_offset_or_utc_with_utc() {
    let dir = fixture("");
    let d = dir.path();
    let (code, out, err) = chat_log_in("Asia/Tokyo", d, &["--from", "alice", "--room", "lobby"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.starts_with("2026-11-20 18:00:00 +09:00  #lobby       alice: good morning"),
        "{out}"
    );
    let (code, out, _) = chat_log_in(
        "Asia/Tokyo",
        d,
        &["--utc", "--last", "1", "--room", "lobby"],
    );
    assert_eq!(code, Some(0));
    assert!(out.starts_with("2026-11-23 14:00:00 UTC  #lobby "), "{out}");
    // A multi-line message is indented under its text whatever the time's width.
    assert_eq!(
        out.lines().nth(1),
        Some(format!("{}lines", " ".repeat(43)).as_str())
    );
    // A time without a zone, and a date, are Tokyo's: 21:00 there is 12:00 UTC.
    let tokyo = |args: &[&str]| ids_in("Asia/Tokyo", d, args);
    assert_eq!(tokyo(&["--since", "2026-11-23T21:00:00"]), ["4", "5", "6"]);
    assert_eq!(tokyo(&["--since", "2026-11-23 21:00"]), ["4", "5", "6"]);
    assert_eq!(tokyo(&["--since", "2026-11-23"]), ["4", "5", "6"]);
    assert_eq!(ids(d, &["--since", "2026-11-23"]), ["4", "5", "6"]);
    assert_eq!(ids(d, &["--since", "2026-11-22"]), ["3", "4", "5", "6"]);
    // With --utc, a time without a zone is UTC.
    assert!(tokyo(&["--utc", "--since", "2026-11-23T21:00:00"]).is_empty());
    // The connections too, and the hours of the statistics.
    std::fs::write(d.join("data.csv"), DATA_FIXTURE).unwrap();
    let (_, out, _) = chat_log_in("Asia/Tokyo", d, &["connections", "--last", "1"]);
    assert!(
        out.starts_with("2026-11-23 21:00:00 +09:00  disconnect"),
        "{out}"
    );
    let (_, out, _) = chat_log_in("Asia/Tokyo", d, &["stats", "--format", "csv"]);
    assert!(out.contains("\nhour,21,1\n"), "{out}");
}

#[test]
fn exit_status_is_like_grep_and_every_flag_belongs_to_its_subcommand() {
    let dir = fixture("");
    let d = dir.path();
    std::fs::write(d.join("data.csv"), DATA_FIXTURE).unwrap();
    let code = |args: &[&str]| chat_log_in("UTC", d, args).0;
    assert_eq!(code(&[]), Some(0));
    assert_eq!(code(&["--from", "nobody"]), Some(1));
    assert_eq!(code(&["connections", "--name", "alice"]), Some(0));
    assert_eq!(code(&["connections", "--name", "nobody"]), Some(1));
    assert_eq!(code(&["stats", "--from", "nobody"]), Some(1));
    for bad in [
        &["--nonsense"][..],
        &["connections", "--ip", "notanip"],
        &["connections", "--room", "lobby"],
        &["connections", "--grep", "x"],
        &["--follow", "connections"],
        &["--room", "lobby", "stats"],
        &["stats", "--last", "2"],
        &["stats", "--follow"],
        &["--since", "last tuesday"],
        &["--data-dir", "/nonexistent/chat"],
    ] {
        let (code, _, err) = chat_log_in("UTC", d, bad);
        assert_eq!(code, Some(2), "{bad:?}: {err}");
        assert!(!err.is_empty(), "{bad:?}");
    }
    // An empty or inverted window is refused, with the reason.
    for window in [
        &["--since", "2026-11-23", "--until", "2026-11-22"][..],
        &["--since", "1h", "--until", "2h"],
        &["--since", "2026-11-23", "--until", "2026-11-23"],
        &["stats", "--since", "1h", "--until", "2h"],
        &["connections", "--since", "1h", "--until", "2h"],
    ] {
        let (code, out, err) = chat_log_in("UTC", d, window);
        assert_eq!(code, Some(2), "{window:?}: {out}");
        assert!(err.contains("is not before --until"), "{err}");
    }
    // Each subcommand's help lists what it honours, and the exit status.
    let help = |args: &[&str]| chat_log_in("UTC", d, args).1;
    let messages = help(&["messages", "--help"]);
    for flag in [
        "--follow",
        "--last",
        "--dm",
        "--room",
        "--grep",
        "--utc",
        "Exit status",
    ] {
        assert!(messages.contains(flag), "{flag}: {messages}");
    }
    let connections = help(&["connections", "--help"]);
    for flag in [
        "--follow",
        "--last",
        "--format",
        "--ip",
        "--name",
        "Exit status",
    ] {
        assert!(connections.contains(flag), "{flag}: {connections}");
    }
    for flag in ["--room", "--from", "--to", "--grep", "--dm"] {
        assert!(!connections.contains(flag), "{flag}: {connections}");
    }
    let stats = help(&["stats", "--help"]);
    assert!(
        !stats.contains("-f, --follow") && !stats.contains("--last <N>"),
        "{stats}"
    );
    assert!(help(&["--help"]).contains("Exit status"));
}

/// `--follow` on a log of two million rows starts from its last 10 without reading the rest,
/// then prints what is appended.
#[test]
fn follow_starts_from_the_end_of_a_large_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("messages.csv");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        f.write_all(b"id,timestamp,room,sender,recipient,kind,text\n")
            .unwrap();
        let block = "1,2026-11-20T09:00:00.000Z,lobby,bulk,,message,filler\n".repeat(10_000);
        for _ in 0..200 {
            f.write_all(block.as_bytes()).unwrap();
        }
        for id in 2_000_001..=2_000_010 {
            writeln!(
                f,
                "{id},2026-11-20T10:00:00.000Z,lobby,tail,,message,row {id}"
            )
            .unwrap();
        }
    }
    let started = std::time::Instant::now();
    let (_follower, rx) = follow(dir.path(), &["--follow", "--format", "csv"]);
    let next = || {
        rx.recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time")
    };
    assert_eq!(next(), "id,timestamp,room,sender,recipient,kind,text");
    let first: Vec<String> = (0..10).map(|_| next()).collect();
    let took = started.elapsed();
    let ids: Vec<&str> = first.iter().map(|l| l.split(',').next().unwrap()).collect();
    let expected: Vec<String> = (2_000_001..=2_000_010).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
    assert!(
        took < Duration::from_secs(1),
        "the last 10 rows took {took:?}"
    );
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(b"2000011,2026-11-20T10:01:00.000Z,lobby,tail,,message,appended\n")
        .unwrap();
    assert!(next().starts_with("2000011,"));
    // `--last N` chooses how many it starts with.
    let (_follower, rx) = follow(dir.path(), &["--follow", "--last", "2", "--from", "tail"]);
    let lines: Vec<String> = (0..2).map(|_| rx.recv_timeout(TIMEOUT).unwrap()).collect();
    assert!(lines[0].ends_with("tail: row 2000010"), "{lines:?}");
    assert!(lines[1].ends_with("tail: appended"), "{lines:?}");
}

/// `--follow` on a file that does not exist yet waits for it, like `tail -F`.
#[test]
fn follow_waits_for_a_missing_file_to_appear() {
    let dir = tempfile::tempdir().unwrap();
    let (_follower, rx) = follow(dir.path(), &["--follow", "--format", "csv"]);
    let (_conns, conn_rx) = follow(
        dir.path(),
        &["connections", "--follow", "--format", "jsonl"],
    );
    let next = |rx: &crossbeam_channel::Receiver<String>| {
        rx.recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time")
    };
    assert_eq!(next(&rx), "id,timestamp,room,sender,recipient,kind,text");
    // Written whole under another name, then moved in, as a server's first write would be.
    let tmp = dir.path().join("new.csv");
    std::fs::write(&tmp, FIXTURE).unwrap();
    std::fs::rename(&tmp, dir.path().join("messages.csv")).unwrap();
    for id in ["1", "2", "3", "4", "5", "6"] {
        assert_eq!(next(&rx).split(',').next(), Some(id));
    }
    std::fs::write(&tmp, DATA_FIXTURE).unwrap();
    std::fs::rename(&tmp, dir.path().join("data.csv")).unwrap();
    let first: serde_json::Value = serde_json::from_str(&next(&conn_rx)).unwrap();
    assert_eq!(first["event"], "start");
}

#[test]
fn connections_last_follow_and_formats() {
    let dir = fixture("");
    let d = dir.path();
    let data = d.join("data.csv");
    std::fs::write(&data, DATA_FIXTURE).unwrap();
    let (ok, out, err) = chat_log(d, &["connections", "--last", "2", "--format", "csv"]);
    assert!(ok, "{err}");
    let rows = csv_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(out.starts_with("timestamp,event,conn,ip,port,thread,name,detail\n"));
    assert_eq!((rows[0][6].as_str(), rows[1][6].as_str()), ("alice", "bob"));
    // Read from the end, the duration still comes from the connect row further back.
    let (ok, out, _) = chat_log(d, &["connections", "--last", "1"]);
    assert!(ok);
    assert!(
        out.trim_end()
            .ends_with("bob              after 1h 59m: connection reset"),
        "{out}"
    );
    let (ok, out, _) = chat_log(d, &["connections", "--last", "1", "--format", "jsonl"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["name"], "bob");
    // --follow: the last rows, then what is appended, filtered.
    let (_follower, rx) = follow(d, &["connections", "--follow", "--name", "carol"]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&data)
        .unwrap();
    f.write_all(
        b"2026-11-23T12:00:01.000Z,connect,3,::1,57944,conn-3,,\n\
          2026-11-23T12:00:02.000Z,named,3,::1,57944,conn-3,carol,guest\n\
          2026-11-23T12:00:03.000Z,named,4,::1,57945,conn-4,dave,guest\n\
          2026-11-23T12:01:01.000Z,disconnect,3,::1,57944,conn-3,carol,quit\n",
    )
    .unwrap();
    let next = || {
        rx.recv_timeout(TIMEOUT)
            .expect("chat-log printed nothing in time")
    };
    let named = next();
    assert!(
        named.contains("  [::1]:57944  ") && named.contains("carol"),
        "{named}"
    );
    let left = next();
    assert!(left.ends_with("after 1m: quit"), "{left}");
}

#[test]
fn connections_columns_stay_aligned_in_colour() {
    let dir = fixture("");
    let data = format!(
        "{DATA_FIXTURE}2026-11-23T12:00:01.000Z,connect,3,::1,57944,conn-3,,\n\
         2026-11-23T12:00:02.000Z,named,3,::1,57944,conn-3,carol,guest\n"
    );
    std::fs::write(dir.path().join("data.csv"), data).unwrap();
    let (ok, plain, _) = chat_log(dir.path(), &["connections", "--color", "never"]);
    assert!(ok);
    let (ok, coloured, _) = chat_log(dir.path(), &["connections", "--color", "always"]);
    assert!(ok);
    assert!(coloured.contains('\u{1b}'), "{coloured}");
    assert_eq!(without_colour(&coloured), plain);
    // Every row's columns start at the same place: the name column, for one.
    let at: Vec<usize> = plain
        .lines()
        .filter(|l| l.contains(" named "))
        .map(|l| l.find(" member").or(l.find(" guest")).unwrap())
        .collect();
    assert!(at.windows(2).all(|w| w[0] == w[1]), "{plain}");
    assert!(plain.contains("  [::1]:57944  "), "{plain}");
}

#[test]
fn stats_as_csv_or_jsonl_are_the_numbers_without_bars() {
    let dir = fixture("");
    let (ok, out, err) = chat_log(dir.path(), &["stats", "--format", "csv"]);
    assert!(ok, "{err}");
    assert!(!out.contains('█'), "{out}");
    let rows = csv_rows(&out);
    assert_eq!(rows[0], ["total", "", "6"]);
    assert!(
        rows.contains(&vec!["room".into(), "#lobby".into(), "3".into()]),
        "{out}"
    );
    assert!(
        rows.contains(&vec!["sender".into(), "alice".into(), "2".into()]),
        "{out}"
    );
    assert!(
        rows.contains(&vec!["hour".into(), "12".into(), "1".into()]),
        "{out}"
    );
    let (ok, out, _) = chat_log(
        dir.path(),
        &["stats", "--format", "jsonl", "--from", "alice"],
    );
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        first,
        serde_json::json!({"group": "total", "key": "", "count": 2})
    );
    let (ok, out, _) = chat_log(dir.path(), &["stats", "--from", "bob", "--room", "ops"]);
    assert!(ok);
    assert!(out.starts_with("1 message\n"), "{out}");
}
