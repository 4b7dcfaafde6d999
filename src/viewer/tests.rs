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
            "2026-11-23 16:04:05 UTC  #lobby       alice: evil \\u{{1b}}[2J\\u{{202e}} and, \"quotes\"\n{}line two\n",
            " ".repeat(45)
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

/// Rows the server writes, and rows a hand edit may leave: needless quotes, quotes a reader
/// takes literally, `007`, `+8`, CRLF, a blank line, an unknown kind, an extra field, invalid
/// UTF-8, formula cells, and a last row without its newline.
fn tricky_log() -> Vec<u8> {
    let t = "2026-11-23T10:00:00.000Z";
    let mut log = format!(
        "{MESSAGES_HEADER}
1,{t},lobby,alice,,message,plain words
2,{t},lobby,bob,,message,\"a, comma\"
3,{t},,carol,alice,direct,\"say \"\"hi\"\"\"
4,{t},lobby,dave,,action,\"two
lines\"
5,{t},lobby,erin,,message,\"needless quotes\"
6,{t},\"lobby\",frank,,message,x
007,{t},lobby,gina,,message,leading zeros
+8,{t},lobby,hal,,message,plus
9,{t},lobby,ida,,message,he said \"hi\" there
10,{t},lobby,jo,,message,\"closed\"then more
11,{t},lobby,kim,,message,crlf\r

12,{t},lobby,lee,,shout,unknown kind
13,{t},lobby,max,,message,extra,field
14,{t},lobby,ned,,message,=HYPERLINK(\"x\")
15,{t},@ops,-ola,,message,\"=1+1, \"\"q\"\"\"
16,{t},lobby,pat,,message,ünïcödé \u{1b}[2J text
18446744073709551615,{t},lobby,quinn,,message,largest id
18446744073709551616,{t},lobby,ray,,message,too large
17,{t},lobby,sam,,message,\"\"
"
    )
    .into_bytes();
    log.extend_from_slice(format!("18,{t},lobby,tom,,message,bad ").as_bytes());
    log.extend_from_slice(b"\xff byte\n");
    log.extend_from_slice(format!("19,{t},lobby,uma,,message,no newline at the end").as_bytes());
    log
}

/// What `chat-log` printed before rows were copied out as they are: every row parsed,
/// filtered, decoded into a `MessageRecord` and encoded again.
fn reencoded(log: &[u8], filter: &Filter, format: Format, view: ViewOptions) -> String {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(log);
    let mut out = String::new();
    for rec in rdr.byte_records() {
        let rec = rec.unwrap();
        if is_header_fields(|i| rec.get(i)) || !filter.matches_row(&rec) {
            continue;
        }
        if let Ok(m) = rec.deserialize::<MessageRecord>(None) {
            out.push_str(&render_message(&m, format, view));
        }
    }
    out
}

fn printed(log: &[u8], filter: &Filter, format: Format, view: ViewOptions, chunk: usize) -> String {
    let mut out = Vec::new();
    let mut printer = Printer::new(&mut out, view, format, filter.clone());
    let literal = filter.literal().map(memchr::memmem::Finder::new);
    let mut file = log;
    rows::for_each_row_in_chunks(
        &mut file,
        std::path::Path::new("messages.csv"),
        log.len() as u64,
        literal.as_ref(),
        chunk,
        |mut row| {
            if is_header_fields(|i| row.get(i)) || !filter.matches_fields(|i| row.get(i)) {
                return Ok(());
            }
            let (raw, line) = (row.raw, row.line);
            printer.row(raw, row.record(), line)
        },
    )
    .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn rows_print_as_they_were_reencoded_in_every_format_and_chunking() {
    let log = tricky_log();
    let grep = |p: &str| Filter {
        grep: Some(Regex::new(p).unwrap()),
        ..Filter::default()
    };
    // No grep; literals that skip (a common letter, a word on one row, one on none, one inside
    // a row with stray quotes); a regex (no skipping).
    let filters = [
        Filter::default(),
        grep("e"),
        grep("lines"),
        grep("nowhere"),
        grep("hi"),
        grep("t.o"),
    ];
    let views = [
        (Format::Csv, ViewOptions::default()),
        (
            Format::Csv,
            ViewOptions {
                excel_safe: true,
                ..ViewOptions::default()
            },
        ),
        (Format::Jsonl, ViewOptions::default()),
        (Format::Table, ViewOptions::default()),
        (
            Format::Table,
            ViewOptions {
                color: true,
                ..ViewOptions::default()
            },
        ),
    ];
    for filter in &filters {
        for &(format, view) in &views {
            let want = reencoded(&log, filter, format, view);
            for chunk in (1..48).chain([4096]) {
                assert_eq!(
                    printed(&log, filter, format, view, chunk),
                    want,
                    "{:?} {format:?} {view:?} chunk {chunk}",
                    filter.grep
                );
            }
        }
    }
    // The plain rows the server writes went out as they are; the hand edits were re-encoded.
    let csv = reencoded(
        &log,
        &Filter::default(),
        Format::Csv,
        ViewOptions::default(),
    );
    assert!(
        csv.contains("7,2026-11-23T10:00:00.000Z,lobby,gina,"),
        "{csv}"
    );
    assert!(csv.contains(",erin,,message,needless quotes\n"), "{csv}");
    assert!(
        csv.contains(",message,\"he said \"\"hi\"\" there\"\n"),
        "{csv}"
    );
    assert!(
        csv.ends_with(",uma,,message,no newline at the end\n"),
        "{csv}"
    );
    assert!(!csv.contains("unknown kind") && !csv.contains("too large") && !csv.contains("tom"));
}

#[test]
fn rows_the_server_writes_are_printed_as_their_own_bytes() {
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 2000,
        ..Default::default()
    });
    let text = "[a-z ,\"\\n\\r=@+-]{0,12}|\\PC{0,8}";
    let kinds = proptest::sample::select(vec![Kind::Message, Kind::Action, Kind::Direct]);
    let strategy = (proptest::num::u64::ANY, text, text, text, text, kinds, text);
    runner
        .run(
            &strategy,
            |(id, timestamp, room, sender, recipient, kind, text)| {
                let rec = MessageRecord {
                    id,
                    timestamp,
                    room,
                    sender,
                    recipient,
                    kind,
                    text,
                };
                // As the server writes it (`CsvLog::stage`), and read back as `chat-log` does.
                let raw = render_message(&rec, Format::Csv, ViewOptions::default());
                let mut fields = csv::ByteRecord::new();
                csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(raw.as_bytes())
                    .read_byte_record(&mut fields)
                    .unwrap();
                let view = ViewOptions::default();
                proptest::prop_assert!(render::verbatim(raw.as_bytes(), &fields, view), "{raw:?}");
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn times_without_a_zone_dates_today_and_yesterday_are_in_now_s_zone() {
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    // 01:00 on the 26th in Tokyo is still the 25th in UTC.
    let now = DateTime::parse_from_rfc3339("2026-11-26T01:00:00+09:00")
        .unwrap()
        .with_timezone(&tokyo);
    let utc = |s: &str| parse_when(s, now).unwrap().to_rfc3339();
    assert_eq!(utc("today"), "2026-11-25T15:00:00+00:00");
    assert_eq!(utc("yesterday"), "2026-11-24T15:00:00+00:00");
    assert_eq!(utc("2026-11-26"), "2026-11-25T15:00:00+00:00");
    assert_eq!(utc("2026-11-26T04:17:30"), "2026-11-25T19:17:30+00:00");
    assert_eq!(utc("2026-11-26 04:17"), "2026-11-25T19:17:00+00:00");
    // A zone given wins; a duration is back from now, whatever the zone.
    assert_eq!(utc("2026-11-26T04:17:30Z"), "2026-11-26T04:17:30+00:00");
    assert_eq!(utc("1h"), "2026-11-25T15:00:00+00:00");
    // In UTC, today is UTC's.
    let utc_now = now.with_timezone(&Utc);
    assert_eq!(
        parse_when("today", utc_now).unwrap().to_rfc3339(),
        "2026-11-25T00:00:00+00:00"
    );
}

#[test]
fn the_clock_shows_the_zone_and_reuses_the_last_minute() {
    let mut clock = Clock::new(Zone::Utc);
    let mut out = String::new();
    for ts in [
        "2026-11-23T16:04:05.123Z",
        "2026-11-23T16:04:59.000Z",
        "2026-11-23T16:05:00Z",
        "2026-11-23T16:05:00+02:00",
        "not a time",
    ] {
        clock.push(&mut out, ts);
        out.push('|');
    }
    assert_eq!(
        out,
        "2026-11-23 16:04:05 UTC|2026-11-23 16:04:59 UTC|2026-11-23 16:05:00 UTC|\
         2026-11-23 14:05:00 UTC|not a time|"
    );
    assert_eq!(clock.hour(b"2026-11-23T16:04:05.123Z"), Some(16));
}
