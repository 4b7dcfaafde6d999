//! `chat-log`'s logic: reading `messages.csv` as a stream of complete records, rendering them
//! as readable lines, and following the file as it grows.
//!
//! [`RecordSplitter`] cuts raw bytes at record boundaries (a newline outside quotes), so a
//! half-written last row is held back until its end arrives rather than printed torn. Nothing
//! here loads the whole file: rows are parsed and printed one at a time.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::protocol::printable;
use crate::storage::{MESSAGES_HEADER, MessageRecord};

/// How rows are shown.
#[derive(Debug, Clone, Copy, Default)]
pub struct ViewOptions {
    /// ANSI colours.
    pub color: bool,
}

/// Cuts a byte stream of CSV into complete records, tracking quotes across chunks.
#[derive(Debug, Default)]
pub struct RecordSplitter {
    /// Bytes of the record being assembled.
    partial: Vec<u8>,
    /// True while inside a quoted field of `partial`.
    in_quotes: bool,
}

impl RecordSplitter {
    /// Feeds `bytes`; calls `emit` with each record completed by them (with its `\n`).
    pub fn feed(&mut self, bytes: &[u8], mut emit: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut start = 0;
        for (i, &b) in bytes.iter().enumerate() {
            match b {
                b'"' => self.in_quotes = !self.in_quotes,
                b'\n' if !self.in_quotes => {
                    if self.partial.is_empty() {
                        emit(&bytes[start..=i])?;
                    } else {
                        self.partial.extend_from_slice(&bytes[start..=i]);
                        let record = std::mem::take(&mut self.partial);
                        emit(&record)?;
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        self.partial.extend_from_slice(&bytes[start..]);
        Ok(())
    }

    /// Bytes held back because their record has not ended yet.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Forgets any partial record (the file was truncated or replaced).
    pub fn reset(&mut self) {
        self.partial.clear();
        self.in_quotes = false;
    }
}

/// Renders rows of `messages.csv` to an output, counting lines for error reports.
pub struct Printer<'a, W: Write> {
    out: &'a mut W,
    opts: ViewOptions,
    /// The physical line number where the next record starts, for error reports.
    line: u64,
}

impl<'a, W: Write> Printer<'a, W> {
    pub fn new(out: &'a mut W, opts: ViewOptions) -> Printer<'a, W> {
        Printer { out, opts, line: 1 }
    }

    /// Handles one complete raw record: the header is skipped, a malformed row is reported on
    /// stderr with its line number and skipped, anything else is printed.
    pub fn record(&mut self, raw: &[u8]) -> Result<()> {
        let line = self.line;
        self.line += raw.iter().filter(|&&b| b == b'\n').count() as u64;
        if raw
            .strip_suffix(b"\n")
            .map(|r| r.strip_suffix(b"\r").unwrap_or(r))
            == Some(MESSAGES_HEADER.as_bytes())
        {
            return Ok(());
        }
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(raw);
        let rec: MessageRecord = match rdr.deserialize().next() {
            Some(Ok(rec)) => rec,
            Some(Err(e)) => {
                eprintln!("chat-log: skipping malformed row at line {line}: {e}");
                return Ok(());
            }
            None => return Ok(()),
        };
        let text = format_record(&rec, self.opts);
        self.out
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("cannot write output", e))
    }

    pub fn flush(&mut self) -> Result<()> {
        self.out
            .flush()
            .map_err(|e| Error::io("cannot write output", e))
    }
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
    let sep = if rec.kind == "action" {
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

/// Prints every complete row of the file at `path`; with `follow`, keeps printing rows as they
/// are appended, surviving truncation and replacement, until output fails.
pub fn show(path: &Path, out: &mut impl Write, opts: ViewOptions, follow: bool) -> Result<()> {
    let open =
        || File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e));
    let mut file = open()?;
    let mut printer = Printer::new(out, opts);
    let mut splitter = RecordSplitter::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset: u64 = 0;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n > 0 {
            offset += n as u64;
            splitter.feed(&buf[..n], |raw| printer.record(raw))?;
            continue;
        }
        printer.flush()?;
        if !follow {
            if splitter.pending() > 0 {
                eprintln!(
                    "chat-log: the last {} bytes of {} are an unfinished row; not shown",
                    splitter.pending(),
                    path.display()
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
        // Replaced (rotated) or truncated: start again from the top of the new file.
        let replaced = match (std::fs::metadata(path), file.metadata()) {
            (Ok(now), Ok(ours)) => now.ino() != ours.ino() || now.dev() != ours.dev(),
            _ => false,
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(offset);
        if replaced || len < offset {
            if let Ok(new) = open() {
                file = new;
            } else {
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| Error::io(format!("cannot rewind {}", path.display()), e))?;
            }
            offset = 0;
            splitter.reset();
            printer.line = 1;
        }
    }
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
            kind: "message".into(),
            text: "evil \u{1b}[2J\u{202E} and, \"quotes\"\nline two".into(),
        };
        let out = format_record(&rec, ViewOptions { color: false });
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
        let mut p = Printer::new(&mut out, ViewOptions::default());
        let input = format!(
            "{MESSAGES_HEADER}\nnot-a-number,x,y,z,,message,t\n2,2026-11-23T16:04:05.123Z,lobby,bob,,message,ok\n"
        );
        let mut s = RecordSplitter::default();
        s.feed(input.as_bytes(), |r| p.record(r)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("bob: ok"));
    }
}
