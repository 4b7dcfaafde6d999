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
///
/// Nothing is allocated per row: a CSV row the server wrote goes out as the bytes it has in
/// the file, and a table line or a JSON object is built in a buffer kept from row to row.
pub struct Printer<'a, W: Write> {
    pub(super) out: &'a mut W,
    opts: ViewOptions,
    format: Format,
    filter: Filter,
    /// The row being written, as a table line or JSON: reused, so printing a million rows
    /// allocates nothing after the first.
    line: Vec<u8>,
    /// The table line being built (`line` as text), reused likewise.
    text: String,
    /// Shows the times in the chosen zone, remembering the last minute converted.
    clock: Clock,
    /// Rows written so far: `chat-log` exits 1 when none matched, like `grep`.
    pub printed: u64,
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
            line: Vec::new(),
            text: String::new(),
            clock: Clock::new(opts.zone),
            printed: 0,
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
        match self.format {
            Format::Csv => {
                let text = render_message(rec, self.format, self.opts);
                self.emit(text.as_bytes())
            }
            Format::Table | Format::Jsonl => self.write_view(&MessageView::of(rec)),
        }
    }

    /// Prints a row read from the file (already filtered): as CSV, its own bytes when they
    /// are what encoding it would give (see [`verbatim`]), else it is decoded and encoded.
    /// A row that is not a message is reported on stderr and skipped.
    pub(super) fn row(&mut self, raw: &[u8], fields: &csv::ByteRecord, line: u64) -> Result<()> {
        if self.format == Format::Csv && verbatim(raw, fields, self.opts) {
            return self.emit(raw);
        }
        self.decoded(fields, line)
    }

    /// Prints a row from its fields alone (already filtered): decoded, and encoded in the
    /// format (as CSV, the bytes the server writes for it). A row that is not a message is
    /// reported on stderr and skipped.
    pub(super) fn decoded(&mut self, fields: &csv::ByteRecord, line: u64) -> Result<()> {
        if self.format == Format::Csv {
            return match fields.deserialize::<MessageRecord>(None) {
                Ok(m) => self.write(&m),
                Err(e) => {
                    eprintln!("chat-log: skipping malformed row at line {line}: {e}");
                    Ok(())
                }
            };
        }
        match fields.deserialize::<MessageView<'_>>(None) {
            Ok(m) => self.write_view(&m),
            Err(e) => {
                eprintln!("chat-log: skipping malformed row at line {line}: {e}");
                Ok(())
            }
        }
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

    /// A table line or a JSON object, built in the reused buffers.
    fn write_view(&mut self, rec: &MessageView<'_>) -> Result<()> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        if self.format == Format::Jsonl {
            serde_json::to_writer(&mut line, rec).expect("records serialize");
            line.push(b'\n');
        } else {
            self.text.clear();
            push_table_line(&mut self.text, rec, self.opts, &mut self.clock);
            line.extend_from_slice(self.text.as_bytes());
        }
        let res = self.emit(&line);
        self.line = line;
        res
    }

    /// Writes one row.
    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.printed += 1;
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("cannot write output", e))
    }
}

/// A message borrowed from a parsed row: the fields of [`MessageRecord`], in its order and
/// under its names (so its JSON is the same), without an allocation per field.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MessageView<'a> {
    pub id: u64,
    pub timestamp: &'a str,
    room: &'a str,
    sender: &'a str,
    recipient: &'a str,
    kind: Kind,
    text: &'a str,
}

impl<'a> MessageView<'a> {
    fn of(rec: &'a MessageRecord) -> MessageView<'a> {
        MessageView {
            id: rec.id,
            timestamp: &rec.timestamp,
            room: &rec.room,
            sender: &rec.sender,
            recipient: &rec.recipient,
            kind: rec.kind,
            text: &rec.text,
        }
    }
}

/// Whether `raw`, a row of the file, is byte for byte what [`render_message`] would write for
/// it as CSV, so it can be written as it is. It is for every row the server wrote (the server
/// and `render_message` encode with the same `csv` writer); a hand edit may differ (quotes
/// where none are needed, `\r\n`, `007` for an id, an unknown kind, a cell a spreadsheet would
/// take for a formula with `--excel-safe`), and such a row is decoded and encoded again.
pub(super) fn verbatim(raw: &[u8], fields: &csv::ByteRecord, opts: ViewOptions) -> bool {
    // Every field is text (a message's fields are `String`s).
    if fields.len() != M::COUNT || !(raw.is_ascii() || std::str::from_utf8(raw).is_ok()) {
        return false;
    }
    // The columns that are not text: the id as `u64` writes it, a kind we know.
    let id = &fields[M::ID];
    let canonical_id = match id {
        [b'0'] => true,
        [b'1'..=b'9', rest @ ..] => {
            rest.iter().all(u8::is_ascii_digit)
                && (id.len() < 20
                    || std::str::from_utf8(id).is_ok_and(|s| s.parse::<u64>().is_ok()))
        }
        _ => false,
    };
    let kind = std::str::from_utf8(&fields[M::KIND])
        .ok()
        .and_then(Kind::parse);
    if !canonical_id || kind.is_none() {
        return false;
    }
    if opts.excel_safe
        && [M::ROOM, M::SENDER, M::RECIPIENT, M::TEXT]
            .iter()
            .any(|&i| spreadsheet_safe_bytes(&fields[i]))
    {
        return false;
    }
    // Each field as the writer puts it: quoted (with quotes doubled) exactly when it holds a
    // comma, a quote or a line break; then a comma, or the newline after the last.
    let mut rest = raw;
    for (i, field) in fields.iter().enumerate() {
        let has_quote = memchr::memchr(b'"', field).is_some();
        let len = if rest.first() == Some(&b'"') {
            let needs_quotes = has_quote || memchr::memchr3(b',', b'\n', b'\r', field).is_some();
            match quoted_field_prefix(rest, field) {
                Some(len) if needs_quotes => len,
                _ => return false,
            }
        } else if !has_quote && rest.starts_with(field) {
            // Plain, so it holds no comma or line break either: they would have ended it.
            field.len()
        } else {
            return false;
        };
        let sep = if i + 1 == fields.len() { b'\n' } else { b',' };
        if rest.get(len) != Some(&sep) {
            return false;
        }
        rest = &rest[len + 1..];
    }
    rest.is_empty()
}

/// The length of `"field"` (its quotes doubled) at the start of `raw`, if it is there.
fn quoted_field_prefix(raw: &[u8], field: &[u8]) -> Option<usize> {
    let mut rest = raw.strip_prefix(b"\"")?;
    let mut pieces = field.split(|&b| b == b'"').peekable();
    while let Some(piece) = pieces.next() {
        rest = rest.strip_prefix(piece)?;
        if pieces.peek().is_some() {
            rest = rest.strip_prefix(b"\"\"")?;
        }
    }
    rest = rest.strip_prefix(b"\"")?;
    Some(raw.len() - rest.len())
}

/// Whether [`spreadsheet_safe`] would change this cell.
fn spreadsheet_safe_bytes(cell: &[u8]) -> bool {
    matches!(
        cell.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

pub(super) fn is_header_fields<'a>(get: impl Fn(usize) -> Option<&'a [u8]>) -> bool {
    get(M::ID) == Some(b"id") && get(M::TIMESTAMP) == Some(b"timestamp")
}

pub(super) fn is_header(rec: &csv::StringRecord) -> bool {
    rec.get(M::ID) == Some("id") && rec.get(M::TIMESTAMP) == Some("timestamp")
}

/// One message as a readable line: `2026-11-23 16:04:05 UTC  #lobby  alice: hello`, the time
/// in `opts.zone`. Every field passes through [`printable`], so nothing in the file can drive
/// the terminal.
pub fn format_record(rec: &MessageRecord, opts: ViewOptions) -> String {
    let mut out = String::new();
    push_table_line(
        &mut out,
        &MessageView::of(rec),
        opts,
        &mut Clock::new(opts.zone),
    );
    out
}

/// Appends [`format_record`]'s line for `rec` to `out`.
fn push_table_line(out: &mut String, rec: &MessageView<'_>, opts: ViewOptions, clock: &mut Clock) {
    let paint = |out: &mut String, code: &str| {
        if opts.color {
            out.push_str("\x1b[");
            out.push_str(code);
            out.push('m');
        }
    };
    let reset = |out: &mut String| {
        if opts.color {
            out.push_str("\x1b[0m");
        }
    };
    // The time, in the chosen zone, with the zone's name.
    paint(out, "2");
    let at = out.len();
    clock.push(out, rec.timestamp);
    let time_chars = out[at..].chars().count();
    reset(out);
    out.push_str("  ");
    // The room, padded to 11 characters.
    paint(out, "36");
    let at = out.len();
    if rec.room.is_empty() {
        out.push_str("(direct)");
    } else {
        out.push('#');
        push_printable(out, rec.room);
    }
    let room_chars = out[at..].chars().count();
    out.extend(std::iter::repeat_n(' ', 11usize.saturating_sub(room_chars)));
    reset(out);
    out.push_str("  ");
    let mut visible = time_chars + 2 + room_chars.max(11) + 2;
    let sender = |out: &mut String| {
        paint(out, "1");
        let at = out.len();
        push_printable(out, rec.sender);
        let chars = out[at..].chars().count();
        reset(out);
        chars
    };
    let sep = if rec.kind == Kind::Action {
        out.push_str("* ");
        visible += 2 + sender(out) + 1;
        " "
    } else {
        visible += sender(out) + 2;
        ": "
    };
    if !rec.recipient.is_empty() {
        out.push_str(" -> ");
        let at = out.len();
        push_printable(out, rec.recipient);
        visible += 4 + out[at..].chars().count();
    }
    out.push_str(sep);
    for (i, line) in rec.text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', visible));
        }
        push_printable(out, line);
    }
    out.push('\n');
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
