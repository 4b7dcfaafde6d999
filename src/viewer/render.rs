//! Rows as people read them: a table line, CSV (spreadsheet-safe if asked) or JSON Lines.

use super::*;

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
    pub(super) out: &'a mut W,
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

pub(super) fn is_header_bytes(rec: &csv::ByteRecord) -> bool {
    rec.get(M::ID) == Some(b"id") && rec.get(M::TIMESTAMP) == Some(b"timestamp")
}

pub(super) fn is_header(rec: &csv::StringRecord) -> bool {
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
