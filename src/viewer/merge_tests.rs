//! The merged view of several nodes' logs.

use super::*;

/// Rows `id,minute,room,sender,text` as a `messages.csv` (with its header), the times on
/// 2026-11-23 at 10:MM.
fn node_log(rows: &[(u64, u32, &str, &str, &str)]) -> String {
    let mut log = format!("{MESSAGES_HEADER}\n");
    for (id, minute, room, from, text) in rows {
        log.push_str(&format!(
            "{id},2026-11-23T10:{minute:02}:00.000Z,{room},{from},,message,{text}\n"
        ));
    }
    log
}

/// The merged view of `logs` as `id sender text` lines, and how many copies were skipped.
fn merged(logs: &[&str]) -> (Vec<String>, u64) {
    let files = logs
        .iter()
        .enumerate()
        .map(|(i, log)| (format!("node{i}"), log.as_bytes()));
    let mut merge = merge::Merge::new(files).unwrap();
    let mut rows = Vec::new();
    while let Some(row) = merge.next_row().unwrap() {
        let f = |i| String::from_utf8(row.fields[i].to_vec()).unwrap();
        rows.push(format!("{} {} {}", f(M::ID), f(M::SENDER), f(M::TEXT)));
    }
    (rows, merge.duplicates)
}

#[test]
fn merge_shows_a_message_several_nodes_logged_once() {
    let both = node_log(&[
        (1, 0, "lobby", "alice", "hi"),
        (2, 1, "lobby", "bob", "hello"),
        (3, 2, "ops", "carol", "deploy"),
    ]);
    let (rows, copies) = merged(&[&both, &both]);
    assert_eq!(rows, ["1 alice hi", "2 bob hello", "3 carol deploy"]);
    assert_eq!(copies, 3);
    // A copy differing in one column only is not a copy.
    let a = node_log(&[(1, 0, "lobby", "alice", "hi")]);
    let b = node_log(&[(1, 0, "Lobby", "alice", "hi")]);
    assert_eq!(
        merged(&[&a, &b]),
        (vec!["1 alice hi".into(), "1 alice hi".into()], 0)
    );
}

#[test]
fn merge_shows_every_row_of_an_outage_in_order_of_id_time_and_directory() {
    // During an outage both nodes logged id 2 and 3 for different messages; b's 2 is earlier,
    // and both 3s have the same time (the first directory's first).
    let a = node_log(&[
        (1, 0, "lobby", "alice", "before"),
        (2, 5, "lobby", "alice", "a-cut-off"),
        (3, 6, "lobby", "alice", "a-again"),
        (4, 9, "lobby", "alice", "after"),
    ]);
    let b = node_log(&[
        (1, 0, "lobby", "alice", "before"),
        (2, 4, "lobby", "bob", "b-cut-off"),
        (3, 6, "lobby", "bob", "b-again"),
        (4, 9, "lobby", "alice", "after"),
    ]);
    let (rows, copies) = merged(&[&a, &b]);
    assert_eq!(
        rows,
        [
            "1 alice before",
            "2 bob b-cut-off",
            "2 alice a-cut-off",
            "3 alice a-again",
            "3 bob b-again",
            "4 alice after",
        ]
    );
    assert_eq!(copies, 2);
    // The other order of directories changes only the tie.
    let (rows, _) = merged(&[&b, &a]);
    assert_eq!(rows[3..5], ["3 bob b-again", "3 alice a-again"]);
}

#[test]
fn merge_three_files_of_different_lengths_and_empty_ones() {
    // a joined late, c left early; an empty file and one with only its header add nothing.
    let a = node_log(&[
        (5, 5, "lobby", "alice", "five"),
        (6, 6, "lobby", "bob", "six"),
    ]);
    let b = node_log(&[
        (1, 1, "lobby", "bob", "one"),
        (2, 2, "lobby", "bob", "two"),
        (5, 5, "lobby", "alice", "five"),
        (6, 6, "lobby", "bob", "six"),
        (7, 7, "lobby", "bob", "seven"),
    ]);
    let c = node_log(&[
        (1, 1, "lobby", "bob", "one"),
        (3, 3, "ops", "carol", "three"),
    ]);
    let want = [
        "1 bob one",
        "2 bob two",
        "3 carol three",
        "5 alice five",
        "6 bob six",
        "7 bob seven",
    ];
    let (rows, copies) = merged(&[&a, &b, &c]);
    assert_eq!(rows, want);
    assert_eq!(copies, 3);
    let header = format!("{MESSAGES_HEADER}\n");
    for logs in [
        [a.as_str(), "", b.as_str(), c.as_str()],
        [a.as_str(), b.as_str(), &header, c.as_str()],
        ["", c.as_str(), a.as_str(), b.as_str()],
    ] {
        assert_eq!(merged(&logs).0, want, "{logs:?}");
    }
    assert_eq!(merged(&["", &header]), (vec![], 0));
    assert_eq!(merged(&[]), (vec![], 0));
    // A file without a header, and a malformed row (reported and skipped).
    let bare = "4,2026-11-23T10:04:00.000Z,lobby,dave,,message,four\nx,y,z\n";
    let (rows, _) = merged(&[&a, bare]);
    assert_eq!(rows, ["4 dave four", "5 alice five", "6 bob six"]);
}

#[test]
fn merged_view_filters_formats_and_last_n() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, log: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, log).unwrap();
        path
    };
    let a = write(
        "a.csv",
        &node_log(&[
            (1, 1, "lobby", "alice", "one"),
            (2, 2, "ops", "bob", "two-a"),
            (3, 3, "lobby", "alice", "three"),
        ]),
    );
    let b = write(
        "b.csv",
        &node_log(&[
            (1, 1, "lobby", "alice", "one"),
            (2, 2, "ops", "carol", "two-b"),
            (3, 3, "lobby", "alice", "three"),
            (4, 4, "ops", "bob", "four"),
        ]),
    );
    let paths = [a.clone(), b];
    let show = |o: ShowOptions| {
        let mut out = Vec::new();
        let n = show_merged(&paths, &mut out, &o).unwrap();
        (n, String::from_utf8(out).unwrap())
    };
    let csv = |filter: Filter, last: Option<usize>| ShowOptions {
        format: Format::Csv,
        filter,
        last,
        ..ShowOptions::default()
    };
    let texts = |out: &str| -> Vec<String> {
        out.lines()
            .skip(1)
            .map(|l| l.rsplit(',').next().unwrap().to_string())
            .collect()
    };
    let (n, out) = show(csv(Filter::default(), None));
    assert!(out.starts_with(&format!("{MESSAGES_HEADER}\n")), "{out}");
    assert_eq!(texts(&out), ["one", "two-a", "two-b", "three", "four"]);
    assert_eq!(n, 5);
    let ops = || Filter {
        room: Some("#OPS".into()),
        ..Filter::default()
    };
    assert_eq!(texts(&show(csv(ops(), None)).1), ["two-a", "two-b", "four"]);
    assert_eq!(texts(&show(csv(ops(), Some(2))).1), ["two-b", "four"]);
    assert_eq!(
        texts(&show(csv(Filter::default(), Some(3))).1),
        ["two-b", "three", "four"]
    );
    assert_eq!(show(csv(Filter::default(), Some(0))).0, 0);
    let (n, table) = show(ShowOptions::default());
    assert_eq!(n, 5);
    assert!(
        table.contains("carol: two-b") && table.lines().count() == 5,
        "{table}"
    );
    // The rows the server wrote come out as their own bytes.
    assert!(out.contains("\n2,2026-11-23T10:02:00.000Z,ops,carol,,message,two-b\n"));
    // One path is `show` itself; --follow takes one.
    let mut one = Vec::new();
    show_merged(
        std::slice::from_ref(&a),
        &mut one,
        &csv(Filter::default(), None),
    )
    .unwrap();
    assert_eq!(
        texts(&String::from_utf8(one).unwrap()),
        ["one", "two-a", "three"]
    );
    let follow = ShowOptions {
        follow: true,
        ..ShowOptions::default()
    };
    let err = show_merged(&paths, &mut Vec::new(), &follow).unwrap_err();
    assert!(
        err.is_setting() && err.to_string().contains("--follow"),
        "{err}"
    );
    // Stats count a message several nodes logged once.
    let mut out = Vec::new();
    let stats = StatsOptions {
        format: Format::Csv,
        ..StatsOptions::default()
    };
    assert_eq!(stats_merged(&paths, &mut out, &stats).unwrap(), 5);
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("room,#ops,3\n") && out.contains("sender,alice,2\n"),
        "{out}"
    );
}
