//! `chat-log`'s logic: reading `messages.csv` as a stream of complete records, rendering them
//! as readable lines, and following the file as it grows.
//!
//! [`RecordSplitter`] cuts raw bytes at record boundaries (a newline outside quotes), so a
//! half-written last row is held back until its end arrives rather than printed torn. Nothing
//! here loads the whole file: rows are parsed and printed one at a time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use regex::Regex;

use crate::error::{Error, Result};
use crate::proto::{self, Kind, duration, printable};
use crate::store::message_column as M;
use crate::store::{
    ConnRecord, MESSAGES_HEADER, MessageRecord, Prefix, RecordSplitter, RecordsBackwards,
    complete_len,
};

/// How rows are shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewOptions {
    /// ANSI colours.
    pub color: bool,
    /// CSV for spreadsheets: a cell a spreadsheet would read as a formula is prefixed with
    /// `'` (see [`spreadsheet_safe`]). The log itself always keeps what was sent.
    pub excel_safe: bool,
}

/// A cell as a spreadsheet should see it: one that starts with `=`, `+`, `-`, `@`, a tab or
/// a carriage return would be taken for a formula (`=HYPERLINK(...)` in a chat message becomes
/// a link, or worse), so it gets a leading `'`, which spreadsheets show as text.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

/// Writes the rows that pass the filter, in the chosen format.
pub struct Printer<'a, W: Write> {
    out: &'a mut W,
    opts: ViewOptions,
    format: Format,
    filter: Filter,
}

impl<'a, W: Write> Printer<'a, W> {
    pub fn new(
        out: &'a mut W,
        opts: ViewOptions,
        format: Format,
        filter: Filter,
    ) -> Printer<'a, W> {
        Printer {
            out,
            opts,
            format,
            filter,
        }
    }

    /// Prints `rec` if it passes the filter.
    pub fn message(&mut self, rec: &MessageRecord) -> Result<()> {
        if !self.filter.matches(rec) {
            return Ok(());
        }
        self.write(rec)
    }

    /// Prints `rec` (already filtered).
    pub fn write(&mut self, rec: &MessageRecord) -> Result<()> {
        let text = render_message(rec, self.format, self.opts);
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write output", e))
    }

    /// Handles one complete raw record (from `--follow`): the header is skipped, a malformed
    /// row is reported on stderr and skipped.
    pub fn raw(&mut self, raw: &[u8], line: u64) -> Result<()> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(raw);
        let mut rec = csv::StringRecord::new();
        if !rdr.read_record(&mut rec).unwrap_or(false) || is_header(&rec) {
            return Ok(());
        }
        match rec.deserialize::<MessageRecord>(None) {
            Ok(m) => self.message(&m),
            Err(e) => {
                eprintln!("chat-log: skipping malformed row at line {line}: {e}");
                Ok(())
            }
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write output", e))
    }
}

fn is_header_bytes(rec: &csv::ByteRecord) -> bool {
    rec.get(M::ID) == Some(b"id") && rec.get(M::TIMESTAMP) == Some(b"timestamp")
}

fn is_header(rec: &csv::StringRecord) -> bool {
    rec.get(M::ID) == Some("id") && rec.get(M::TIMESTAMP) == Some("timestamp")
}

/// One message as a readable line: `2026-11-23 16:04:05  lobby  alice: hello`. Every field
/// passes through [`printable`], so nothing in the file can drive the terminal.
pub fn format_record(rec: &MessageRecord, opts: ViewOptions) -> String {
    let ts = rec.timestamp.replacen('T', " ", 1);
    let ts = ts.get(..19).unwrap_or(&ts);
    let paint = |code: &str, s: &str| {
        if opts.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let sender = printable(&rec.sender);
    let room = if rec.room.is_empty() {
        "(direct)".to_string()
    } else {
        format!("#{}", printable(&rec.room))
    };
    let mut head = format!(
        "{}  {}  ",
        paint("2", ts),
        paint("36", &format!("{room:<11}"))
    );
    let mut visible = 19 + 2 + room.chars().count().max(11) + 2;
    let sep = if rec.kind == Kind::Action {
        head.push_str(&format!("* {}", paint("1", &sender)));
        visible += 2 + sender.chars().count() + 1;
        " "
    } else {
        head.push_str(&paint("1", &sender));
        visible += sender.chars().count() + 2;
        ": "
    };
    if !rec.recipient.is_empty() {
        let to = printable(&rec.recipient);
        head.push_str(&format!(" -> {to}"));
        visible += 4 + to.chars().count();
    }
    let indent = " ".repeat(visible);
    let body = rec
        .text
        .split('\n')
        .map(printable)
        .collect::<Vec<_>>()
        .join(&format!("\n{indent}"));
    format!("{head}{sep}{body}\n")
}

/// What `chat-log` shows, and how.
#[derive(Debug, Clone, Default)]
pub struct ShowOptions {
    pub view: ViewOptions,
    pub format: Format,
    pub filter: Filter,
    /// Only the last N matching rows, found by reading from the end of the file.
    pub last: Option<usize>,
    /// Keep printing rows as they are appended.
    pub follow: bool,
}

/// Prints the rows of `messages.csv` at `path` that pass the filter; with `follow`, keeps
/// printing rows as they are appended, surviving truncation and replacement, until output
/// fails. The file is streamed: memory does not grow with its size.
pub fn show(path: &Path, out: &mut impl Write, o: &ShowOptions) -> Result<()> {
    let open =
        || File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e));
    let mut file = open()?;
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    let len = file.metadata().map_err(read_err)?.len();
    let mut printer = Printer::new(out, o.view, o.format, o.filter.clone());
    if o.format == Format::Csv {
        printer
            .out
            .write_all(format!("{MESSAGES_HEADER}\n").as_bytes())
            .map_err(|e| Error::io("cannot write output", e))?;
    }
    // Where the complete rows end: a last row without its newline is still being written.
    let fields = MESSAGES_HEADER.split(',').count();
    let complete = complete_len(&mut file, fields).map_err(read_err)?;
    if complete < len && !o.follow {
        eprintln!(
            "chat-log: the last {} bytes of {} are an unfinished row; not shown",
            len - complete,
            path.display()
        );
    }
    match o.last {
        Some(n) => {
            let mut found = Vec::new();
            let limited = Prefix {
                file: &mut file,
                len: complete,
            };
            for rec in RecordsBackwards::new(limited).map_err(read_err)? {
                if found.len() >= n {
                    break;
                }
                let rec = match rec.map_err(read_err)?.strings() {
                    Ok(rec) => rec,
                    Err(e) => {
                        eprintln!("chat-log: skipping an unreadable row: {e}");
                        continue;
                    }
                };
                if is_header(&rec) {
                    continue;
                }
                if let Ok(m) = rec.deserialize::<MessageRecord>(None)
                    && o.filter.matches(&m)
                {
                    found.push(m);
                }
            }
            for m in found.iter().rev() {
                printer.message(m)?;
            }
        }
        None => {
            file.seek(SeekFrom::Start(0)).map_err(read_err)?;
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .buffer_capacity(256 * 1024)
                .from_reader(io::Read::take(&mut file, complete));
            let mut rec = csv::ByteRecord::new();
            loop {
                let line = rdr.position().line();
                match rdr.read_byte_record(&mut rec) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        eprintln!("chat-log: skipping an unreadable row at line {line}: {e}");
                        continue;
                    }
                }
                if is_header_bytes(&rec) || !o.filter.matches_row(&rec) {
                    continue;
                }
                match rec.deserialize::<MessageRecord>(None) {
                    Ok(m) => printer.write(&m)?,
                    Err(e) => eprintln!("chat-log: skipping malformed row at line {line}: {e}"),
                }
            }
        }
    }
    printer.flush()?;
    if !o.follow {
        return Ok(());
    }
    follow(path, file, complete, &mut printer)
}

/// Prints rows as they are appended after `offset`, like `tail -F`: survives truncation and
/// replacement, never prints a half-written row.
fn follow(
    path: &Path,
    mut file: File,
    mut offset: u64,
    printer: &mut Printer<'_, impl Write>,
) -> Result<()> {
    let open =
        || File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e));
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    let mut splitter = RecordSplitter::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut line: u64 = 0;
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n > 0 {
            offset += n as u64;
            splitter.feed(&buf[..n], |raw| {
                line += 1;
                printer.raw(raw, line)
            })?;
            continue;
        }
        printer.flush()?;
        std::thread::sleep(FOLLOW_POLL);
        // Replaced (rotated) or truncated: start again from the top of the new file.
        let replaced = match (std::fs::metadata(path), file.metadata()) {
            (Ok(now), Ok(ours)) => now.ino() != ours.ino() || now.dev() != ours.dev(),
            _ => false,
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(offset);
        if replaced || len < offset {
            match open() {
                Ok(new) => file = new,
                Err(_) => {
                    file.seek(SeekFrom::Start(0)).map_err(read_err)?;
                }
            }
            offset = 0;
            splitter.reset();
        }
    }
}

/// How often `--follow` looks for new rows.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Which messages to show; every set field must match.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Room name, compared case-insensitively without the `#`.
    pub room: Option<String>,
    /// Sender name, case-insensitive.
    pub from: Option<String>,
    /// Recipient of a direct message, case-insensitive.
    pub to: Option<String>,
    /// At or after this time (RFC 3339 strings compare in time order at equal precision; parsed
    /// values are compared here).
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// A regular expression the text must match.
    pub grep: Option<Regex>,
    /// Only direct messages (`Some(true)`), or none (`Some(false)`).
    pub dm: Option<bool>,
}

/// Case-insensitive equality without allocating for ASCII (names are mostly ASCII).
fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        crate::proto::names::fold(a) == crate::proto::names::fold(b)
    }
}

impl Filter {
    /// Whether the raw row `rec` (the columns of `messages.csv`) passes every condition,
    /// without building a [`MessageRecord`] or even checking UTF-8 of the fields it does not
    /// look at: this is the per-row cost of `chat-log`.
    pub fn matches_row(&self, rec: &csv::ByteRecord) -> bool {
        let field = |i: usize| rec.get(i).unwrap_or(b"");
        let same = |a: &[u8], b: &str| {
            a.eq_ignore_ascii_case(b.as_bytes())
                || (!a.is_ascii() && std::str::from_utf8(a).is_ok_and(|a| same_name(a, b)))
        };
        if let Some(room) = &self.room
            && !same(field(M::ROOM), proto::room_display(room))
        {
            return false;
        }
        if let Some(from) = &self.from
            && !same(field(M::SENDER), from)
        {
            return false;
        }
        if let Some(to) = &self.to
            && !same(field(M::RECIPIENT), to)
        {
            return false;
        }
        if let Some(dm) = self.dm
            && dm != (field(M::KIND) == b"direct")
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Some(ts) = std::str::from_utf8(field(M::TIMESTAMP))
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        if let Some(re) = &self.grep
            && !std::str::from_utf8(field(M::TEXT)).is_ok_and(|t| re.is_match(t))
        {
            return false;
        }
        true
    }

    /// Whether `rec` passes every condition.
    pub fn matches(&self, rec: &MessageRecord) -> bool {
        let same = |a: &str, b: &str| crate::proto::names::fold(a) == crate::proto::names::fold(b);
        if let Some(room) = &self.room
            && proto::room_key(&rec.room) != proto::room_key(room)
        {
            return false;
        }
        if let Some(from) = &self.from
            && !same(&rec.sender, from)
        {
            return false;
        }
        if let Some(to) = &self.to
            && !same(&rec.recipient, to)
        {
            return false;
        }
        if let Some(dm) = self.dm
            && dm != (rec.kind == Kind::Direct)
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = DateTime::parse_from_rfc3339(&rec.timestamp) else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        if let Some(re) = &self.grep
            && !re.is_match(&rec.text)
        {
            return false;
        }
        true
    }
}

/// A point in time for `--since`/`--until`: RFC 3339 (`2026-11-23T16:00:00Z`), a date
/// (`2026-11-23`, midnight UTC), `today`, `yesterday`, or a duration back from `now` (`30m`,
/// `2h`, `7d`).
pub fn parse_when(s: &str, now: DateTime<Utc>) -> std::result::Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let midnight = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    match s {
        "today" => return midnight(now.date_naive()).ok_or_else(|| s.to_string()),
        "yesterday" => {
            return now
                .date_naive()
                .pred_opt()
                .and_then(midnight)
                .ok_or_else(|| s.to_string());
        }
        _ => {}
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return midnight(d).ok_or_else(|| s.to_string());
    }
    if let Some(d) = crate::proto::parse_duration(s) {
        let d = chrono::Duration::from_std(d).map_err(|e| e.to_string())?;
        return Ok(now - d);
    }
    Err(format!(
        "{s:?} is not a time: use RFC 3339 (2026-11-23T16:00:00Z), a date (2026-11-23), today, yesterday, or 30m/2h/7d ago"
    ))
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Aligned, coloured lines for people.
    #[default]
    Table,
    /// CSV with the file's own columns (and its header first).
    Csv,
    /// One JSON object per row, keyed by the file's column names.
    Jsonl,
}

/// One message in `format`.
pub fn render_message(rec: &MessageRecord, format: Format, opts: ViewOptions) -> String {
    match format {
        Format::Table => format_record(rec, opts),
        Format::Jsonl => {
            let mut line = serde_json::to_string(rec).expect("records serialize");
            line.push('\n');
            line
        }
        Format::Csv => {
            let mut out = Vec::new();
            let safe;
            let rec = if opts.excel_safe {
                safe = MessageRecord {
                    room: spreadsheet_safe(&rec.room).into_owned(),
                    sender: spreadsheet_safe(&rec.sender).into_owned(),
                    recipient: spreadsheet_safe(&rec.recipient).into_owned(),
                    text: spreadsheet_safe(&rec.text).into_owned(),
                    ..rec.clone()
                };
                &safe
            } else {
                rec
            };
            {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(&mut out);
                w.serialize(rec).expect("records serialize");
                w.flush().expect("memory");
            }
            String::from_utf8(out).expect("csv of strings is UTF-8")
        }
    }
}

/// Which rows of `data.csv` to show.
#[derive(Debug, Default, Clone)]
pub struct ConnFilter {
    /// The client's name (case-insensitive).
    pub name: Option<String>,
    /// An address or a network (`203.0.113.0/24`).
    pub ip: Option<crate::store::bans::Target>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

impl ConnFilter {
    pub fn matches(&self, rec: &ConnRecord) -> bool {
        if let Some(n) = &self.name
            && !same_name(&rec.name, n)
        {
            return false;
        }
        if let Some(t) = &self.ip
            && !rec.ip.parse().is_ok_and(|ip| t.covers(ip))
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = DateTime::parse_from_rfc3339(&rec.timestamp) else {
                return false;
            };
            let ts = ts.with_timezone(&Utc);
            if self.since.is_some_and(|s| ts < s) || self.until.is_some_and(|u| ts >= u) {
                return false;
            }
        }
        true
    }
}

/// `chat-log connections`: the rows of `data.csv` that pass the filter. In the table, a
/// `disconnect` says how long the connection lasted (from its `connect` row) and why it ended.
pub fn connections(
    path: &Path,
    out: &mut impl Write,
    filter: &ConnFilter,
    format: Format,
    opts: ViewOptions,
) -> Result<()> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    let w = |out: &mut dyn Write, text: &str| {
        out.write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write output", e))
    };
    if format == Format::Csv {
        w(out, &format!("{}\n", crate::store::CONNECTIONS_HEADER))?;
    }
    // When each open connection started, to say how long it lasted.
    let mut started: std::collections::HashMap<u64, DateTime<Utc>> = Default::default();
    let paint = |code: &str, t: &str| {
        if opts.color {
            format!("\x1b[{code}m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    for row in rdr.deserialize::<ConnRecord>() {
        let rec = match row {
            Ok(r) => r,
            Err(e) => {
                eprintln!("chat-log: skipping a malformed row: {e}");
                continue;
            }
        };
        let ts = DateTime::parse_from_rfc3339(&rec.timestamp).map(|t| t.with_timezone(&Utc));
        let lasted = match (rec.event.as_str(), rec.conn, &ts) {
            ("connect", Some(c), Ok(t)) => {
                started.insert(c, *t);
                None
            }
            ("disconnect", Some(c), Ok(t)) => started.remove(&c).map(|s| *t - s),
            _ => None,
        };
        if !filter.matches(&rec) {
            continue;
        }
        match format {
            Format::Jsonl => {
                let mut line = serde_json::to_string(&rec).expect("rows serialize");
                line.push('\n');
                w(out, &line)?;
            }
            Format::Csv => {
                let mut bytes = Vec::new();
                let rec = if opts.excel_safe {
                    ConnRecord {
                        name: spreadsheet_safe(&rec.name).into_owned(),
                        detail: spreadsheet_safe(&rec.detail).into_owned(),
                        ..rec
                    }
                } else {
                    rec
                };
                {
                    let mut cw = csv::WriterBuilder::new()
                        .has_headers(false)
                        .from_writer(&mut bytes);
                    cw.serialize(&rec).expect("rows serialize");
                    cw.flush().expect("memory");
                }
                w(out, &String::from_utf8_lossy(&bytes))?;
            }
            Format::Table => {
                let when = rec.timestamp.replacen('T', " ", 1);
                let when = when.get(..19).unwrap_or(&when);
                let who = if rec.ip.is_empty() {
                    String::new()
                } else {
                    format!(
                        "{}:{}",
                        rec.ip,
                        rec.port.map(|p| p.to_string()).unwrap_or_default()
                    )
                };
                let mut detail = printable(&rec.detail);
                if let Some(d) = lasted {
                    detail = format!(
                        "after {}: {detail}",
                        duration::display(d.to_std().unwrap_or_default())
                    );
                }
                let line = format!(
                    "{}  {:<12} {:>6}  {:<21}  {:<16} {}\n",
                    paint("2", when),
                    paint("36", rec.event.as_str()),
                    rec.conn.map(|c| c.to_string()).unwrap_or_default(),
                    who,
                    printable(&rec.name),
                    detail
                );
                w(out, &line)?;
            }
        }
    }
    out.flush().map_err(|e| Error::io("cannot write output", e))
}

/// `chat-log stats`: messages per room, per sender and per hour of day (UTC) for the rows that
/// pass the filter, with bars.
pub fn stats(path: &Path, out: &mut impl Write, filter: &Filter) -> Result<()> {
    let file =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(256 * 1024)
        .from_reader(file);
    let mut rooms: std::collections::HashMap<String, u64> = Default::default();
    let mut senders: std::collections::HashMap<String, u64> = Default::default();
    let mut hours = [0u64; 24];
    let mut total = 0u64;
    let mut rec = csv::ByteRecord::new();
    while rdr
        .read_byte_record(&mut rec)
        .map_err(|e| Error::csv(format!("cannot read {}", path.display()), e))?
    {
        if !filter.matches_row(&rec) {
            continue;
        }
        total += 1;
        let text = |i: usize| String::from_utf8_lossy(rec.get(i).unwrap_or(b"")).into_owned();
        let room = match rec.get(M::ROOM) {
            Some(b"") | None => "(direct)".to_string(),
            Some(_) => format!("#{}", text(M::ROOM).to_lowercase()),
        };
        *rooms.entry(room).or_default() += 1;
        *senders.entry(text(M::SENDER)).or_default() += 1;
        if let Some(h) = rec
            .get(M::TIMESTAMP)
            .and_then(|t| t.get(11..13))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| h.parse::<usize>().ok())
            && h < 24
        {
            hours[h] += 1;
        }
    }
    let mut text = format!("{total} messages\n");
    let table = |title: &str, mut rows: Vec<(String, u64)>, limit: usize| {
        rows.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = rows.first().map_or(1, |r| r.1).max(1);
        let mut s = format!("\n{title}\n");
        for (name, n) in rows.into_iter().take(limit) {
            s.push_str(&format!(
                "  {:<24} {:>9}  {}\n",
                printable(&name),
                n,
                bar(n, max)
            ));
        }
        s
    };
    text.push_str(&table("per room", rooms.into_iter().collect(), 50));
    text.push_str(&table(
        "per sender (top 20)",
        senders.into_iter().collect(),
        20,
    ));
    let max = hours.iter().copied().max().unwrap_or(1).max(1);
    text.push_str("\nper hour of day (UTC)\n");
    for (h, n) in hours.iter().enumerate() {
        text.push_str(&format!("  {h:02}:00 {n:>9}  {}\n", bar(*n, max)));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write output", e))
}

/// A bar of up to 40 blocks for `n` out of `max`.
fn bar(n: u64, max: u64) -> String {
    let width = ((n as f64 / max as f64) * 40.0).round() as usize;
    "█".repeat(width.max(usize::from(n > 0)))
}

#[cfg(test)]
mod tests {
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
            serde_json::from_str(&render_message(&r, Format::Jsonl, ViewOptions::default()))
                .unwrap();
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
}
