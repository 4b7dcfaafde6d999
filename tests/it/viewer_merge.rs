//! `chat-log` over several nodes' data directories: one merged view.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{csv_rows, wait_timeout_output};

/// `chat-log ARGS` (no `--data-dir` of its own) in UTC: its exit status, output and errors.
fn chat_log_args(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_chat-log"))
        .env("TZ", "UTC")
        .env_remove("CHAT_COLOR")
        .env_remove("CHAT_DATA_DIR")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (status, out, err) = wait_timeout_output(child);
    (status.code(), out, err)
}

#[test]
fn several_data_dirs_are_one_merged_view_with_copies_shown_once() {
    // Three nodes of a cluster: each logged what the cluster carried while it was connected,
    // under the same ids; during an outage, a and b each logged their own message as 4.
    let header = "id,timestamp,room,sender,recipient,kind,text\n";
    let row = |id: u32, min: u32, room: &str, from: &str, text: &str| {
        format!("{id},2026-11-23T10:{min:02}:00.000Z,{room},{from},,message,{text}\n")
    };
    let shared = [
        row(1, 1, "lobby", "alice", "hi"),
        row(2, 2, "ops", "bob", "\"deploy 1.2, done\""),
        row(3, 3, "lobby", "carol", "lunch?"),
    ];
    let nodes = [
        // a: everything, and its own 4 during the outage.
        [
            &shared[..],
            &[
                row(4, 5, "lobby", "alice", "anyone there"),
                row(5, 8, "ops", "bob", "back"),
            ],
        ]
        .concat(),
        // b: its own 4 (earlier), then 5.
        [
            &shared[..],
            &[
                row(4, 4, "ops", "dave", "cut off"),
                row(5, 8, "ops", "bob", "back"),
            ],
        ]
        .concat(),
        // c: joined late.
        vec![
            row(3, 3, "lobby", "carol", "lunch?"),
            row(5, 8, "ops", "bob", "back"),
        ],
    ];
    let dirs: Vec<tempfile::TempDir> = nodes
        .iter()
        .map(|rows| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(
                dir.path().join("messages.csv"),
                format!("{header}{}", rows.concat()),
            )
            .unwrap();
            dir
        })
        .collect();
    let (a, b, c) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    let run = |dirs: &[&Path], args: &[&str]| {
        let mut all: Vec<&std::ffi::OsStr> = Vec::new();
        for d in dirs {
            all.extend(["--data-dir".as_ref(), d.as_os_str()]);
        }
        all.extend(args.iter().map(std::ffi::OsStr::new));
        chat_log_args(&all)
    };
    let csv_of = |dirs: &[&Path], args: &[&str]| {
        let mut all = vec!["--format", "csv"];
        all.extend_from_slice(args);
        let (code, out, err) = run(dirs, &all);
        assert!(err.is_empty(), "{args:?}: {err}");
        (code, out)
    };
    let texts = |out: &str| -> Vec<String> {
        csv_rows(out)
            .into_iter()
            .map(|r| format!("{} {}", r[0], r[6]))
            .collect()
    };
    // Two directories: the copies shown once, both 4s (b's is earlier), in CSV with one header.
    let (code, out) = csv_of(&[a, b], &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with(header) && out.matches("id,timestamp").count() == 1);
    assert_eq!(
        texts(&out),
        [
            "1 hi",
            "2 deploy 1.2, done",
            "3 lunch?",
            "4 cut off",
            "4 anyone there",
            "5 back"
        ]
    );
    // The rows come out as the server wrote them.
    assert!(out.contains("\n2,2026-11-23T10:02:00.000Z,ops,bob,,message,\"deploy 1.2, done\"\n"));
    // Filters apply to the merged view; so does --last.
    let (code, out) = csv_of(&[a, b], &["--room", "ops"]);
    assert_eq!(code, Some(0));
    assert_eq!(texts(&out), ["2 deploy 1.2, done", "4 cut off", "5 back"]);
    assert_eq!(
        texts(&csv_of(&[b, a], &["--last", "2", "--from", "ALICE"]).1),
        ["1 hi", "4 anyone there"]
    );
    let (code, out) = csv_of(&[a, b], &["--from", "nobody"]);
    assert_eq!((code, texts(&out).len()), (Some(1), 0));
    // Three, as a comma-separated list too; c adds nothing new.
    let list = format!("{},{},{}", a.display(), b.display(), c.display());
    let (code, three) = csv_of(&[], &["--data-dir", &list]);
    assert_eq!(code, Some(0));
    assert_eq!(three, csv_of(&[a, b], &[]).1);
    // The table, and stats (a copy counts once), with --data-dir on both sides of `stats`.
    let (code, table, _) = run(&[c, a, b], &["--grep", "cut|back"]);
    assert_eq!(code, Some(0));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(table.contains("dave: cut off") && table.contains("bob: back"));
    let (code, stats, err) = run(
        &[a],
        &[
            "stats",
            "--format",
            "csv",
            "--data-dir",
            b.to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(stats.starts_with("group,key,count\ntotal,,6\n"), "{stats}");
    // --follow and `connections` take one directory: a usage error.
    for args in [
        &["--follow"][..],
        &["messages", "--follow"],
        &["connections"],
    ] {
        let (code, _, err) = run(&[a, b], args);
        assert_eq!(code, Some(2), "{args:?}");
        assert!(err.contains("takes one --data-dir"), "{args:?}: {err}");
    }
    // One directory is what it always was.
    let (code, out) = csv_of(&[c], &[]);
    assert_eq!(
        (code, texts(&out)),
        (Some(0), vec!["3 lunch?".into(), "5 back".into()])
    );
}
