//! `chat-log`'s logic on rows in memory.

use super::*;

fn split(chunks: &[&[u8]]) -> (Vec<String>, usize) {
    let mut s = RecordSplitter::default();
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, |r| {
            out.push(String::from_utf8(r.to_vec()).unwrap());
            Ok(())
        })
        .unwrap();
    }
    (out, s.pending())
}

fn rec(
    id: u64,
    ts: &str,
    room: &str,
    from: &str,
    to: &str,
    kind: Kind,
    text: &str,
) -> MessageRecord {
    MessageRecord {
        id,
        timestamp: ts.into(),
        room: room.into(),
        sender: from.into(),
        recipient: to.into(),
        kind,
        text: text.into(),
    }
}

#[test]
fn filters_combine() {
    let a = rec(
        1,
        "2026-11-23T10:00:00.000Z",
        "Ops",
        "alice",
        "",
        Kind::Message,
        "deploy done",
    );
    let dm = rec(
        2,
        "2026-11-23T12:00:00.000Z",
        "",
        "bob",
        "Alice",
        Kind::Direct,
        "psst",
    );
    let now = parse_when("2026-11-24T00:00:00Z", Utc::now()).unwrap();
    let f = |f: Filter| (f.matches(&a), f.matches(&dm));
    assert_eq!(f(Filter::default()), (true, true));
    assert_eq!(
        f(Filter {
            room: Some("#ops".into()),
            ..Default::default()
        }),
        (true, false)
    );
    assert_eq!(
        f(Filter {
            from: Some("ALICE".into()),
            ..Default::default()
        }),
        (true, false)
    );
    assert_eq!(
        f(Filter {
            to: Some("alice".into()),
            ..Default::default()
        }),
        (false, true)
    );
    assert_eq!(
        f(Filter {
            dm: Some(false),
            ..Default::default()
        }),
        (true, false)
    );
    assert_eq!(
        f(Filter {
            dm: Some(true),
            ..Default::default()
        }),
        (false, true)
    );
    let grep = Regex::new("(?i)DEPLOY").unwrap();
    assert_eq!(
        f(Filter {
            grep: Some(grep),
            ..Default::default()
        }),
        (true, false)
    );
    let since = parse_when("13h", now).unwrap();
    assert_eq!(
        f(Filter {
            since: Some(since),
            ..Default::default()
        }),
        (false, true)
    );
    let until = parse_when("2026-11-23T11:00:00Z", now).unwrap();
    assert_eq!(
        f(Filter {
            until: Some(until),
            ..Default::default()
        }),
        (true, false)
    );
    assert_eq!(
        parse_when("yesterday", now).unwrap().to_rfc3339(),
        "2026-11-23T00:00:00+00:00"
    );
    assert_eq!(
        parse_when("2026-11-20", now).unwrap().to_rfc3339(),
        "2026-11-20T00:00:00+00:00"
    );
    assert!(parse_when("last tuesday", now).is_err());
}

#[test]
fn formats_keep_the_columns() {
    let r = rec(
        7,
        "2026-11-23T10:00:00.000Z",
        "lobby",
        "alice",
        "",
        Kind::Message,
        "a, \"b\"\nc",
    );
    let csv = render_message(&r, Format::Csv, ViewOptions::default());
    assert_eq!(
        csv,
        "7,2026-11-23T10:00:00.000Z,lobby,alice,,message,\"a, \"\"b\"\"\nc\"\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render_message(&r, Format::Jsonl, ViewOptions::default())).unwrap();
    assert_eq!(json["text"], "a, \"b\"\nc");
    assert_eq!(json["id"], 7);
}

#[test]
fn splitter_respects_quotes_and_holds_back_partial_rows() {
    let (recs, pending) = split(&[b"a,\"x\ny\"\nb,", b"c\nd,\"unfinished"]);
    assert_eq!(recs, ["a,\"x\ny\"\n", "b,c\n"]);
    assert_eq!(pending, "d,\"unfinished".len());
}

#[test]
fn records_render_escape_safe() {
    let rec = MessageRecord {
        id: 1,
        timestamp: "2026-11-23T16:04:05.123Z".into(),
        room: "lobby".into(),
        sender: "alice".into(),
        recipient: String::new(),
        kind: Kind::Message,
        text: "evil \u{1b}[2J\u{202E} and, \"quotes\"\nline two".into(),
    };
    let out = format_record(&rec, ViewOptions::default());
    assert_eq!(
        out,
        format!(
            "2026-11-23 16:04:05  #lobby       alice: evil \\u{{1b}}[2J\\u{{202e}} and, \"quotes\"\n{}line two\n",
            " ".repeat(41)
        )
    );
}

#[test]
fn printer_skips_header_and_reports_malformed_rows() {
    let mut out = Vec::new();
    let mut p = Printer::new(
        &mut out,
        ViewOptions::default(),
        Format::Table,
        Filter::default(),
    );
    let input = format!(
        "{MESSAGES_HEADER}\nnot-a-number,x,y,z,,message,t\n2,2026-11-23T16:04:05.123Z,lobby,bob,,message,ok\n"
    );
    let mut s = RecordSplitter::default();
    s.feed(input.as_bytes(), |r| p.raw(r, 1)).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("bob: ok"));
}
