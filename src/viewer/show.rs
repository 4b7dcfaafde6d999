//! `chat-log` (and `--last`, `--follow`): the messages, streamed, never a torn row; and the
//! following loop that `chat-log connections --follow` shares.

use super::*;

/// Prints the rows of `messages.csv` at `path` that pass the filter, and returns how many it
/// printed. With `follow`, it first prints the last [`FOLLOW_LAST`] matching rows (or
/// `last`, or every row from `since`), then rows as they are appended, surviving truncation
/// and replacement and waiting for a missing file to appear, until output fails. The file is
/// streamed or read from its end: memory does not grow with its size.
pub fn show(path: &Path, out: &mut impl Write, o: &ShowOptions) -> Result<u64> {
    let mut printer = Printer::new(out, o.view, o.format, o.filter.clone());
    let opened = File::open(path);
    if o.format == Format::Csv && (opened.is_ok() || o.follow) {
        printer
            .out
            .write_all(format!("{MESSAGES_HEADER}\n").as_bytes())
            .map_err(|e| Error::io("cannot write output", e))?;
    }
    let mut file = match opened {
        Ok(file) => file,
        Err(e) if o.follow && e.kind() == io::ErrorKind::NotFound => {
            printer.flush()?;
            follow(path, None, 0, &mut printer)?;
            return Ok(printer.printed);
        }
        Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
    };
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    let len = file.metadata().map_err(read_err)?.len();
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
    let last = o
        .last
        .or((o.follow && o.filter.since.is_none()).then_some(FOLLOW_LAST));
    match last {
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
            let literal = o.filter.literal().map(memchr::memmem::Finder::new);
            rows::for_each_row(&mut file, path, complete, literal.as_ref(), |mut row| {
                if is_header_fields(|i| row.get(i)) || !o.filter.matches_fields(|i| row.get(i)) {
                    return Ok(());
                }
                let (raw, line) = (row.raw, row.line);
                printer.row(raw, row.record(), line)
            })?;
        }
    }
    printer.flush()?;
    if o.follow {
        follow(path, Some(file), complete, &mut printer)?;
    }
    Ok(printer.printed)
}

/// What [`follow`] hands each complete record to.
pub(super) trait Records {
    /// One complete raw record (the header and malformed rows are the sink's to skip).
    fn record(&mut self, raw: &[u8], line: u64) -> Result<()>;
    /// Called whenever the file has nothing more for now.
    fn flush(&mut self) -> Result<()>;
}

impl<W: Write> Records for Printer<'_, W> {
    fn record(&mut self, raw: &[u8], line: u64) -> Result<()> {
        self.raw(raw, line)
    }

    fn flush(&mut self) -> Result<()> {
        Printer::flush(self)
    }
}

/// Hands over records as they are appended after `offset`, like `tail -F`: survives
/// truncation and replacement, never hands over a half-written record, and waits for the file
/// when it is missing (`file` is `None`) or goes away. Returns only on an error (output closed).
pub(super) fn follow(
    path: &Path,
    mut file: Option<File>,
    mut offset: u64,
    sink: &mut impl Records,
) -> Result<()> {
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    if let Some(file) = &mut file {
        file.seek(SeekFrom::Start(offset)).map_err(read_err)?;
    } else {
        eprintln!(
            "chat-log: {} does not exist yet; waiting for it",
            path.display()
        );
    }
    let mut splitter = RecordSplitter::default();
    let mut buf = vec![0u8; 256 * 1024];
    let mut line: u64 = 0;
    loop {
        if let Some(f) = &mut file {
            let n = f.read(&mut buf).map_err(read_err)?;
            if n > 0 {
                offset += n as u64;
                splitter.feed(&buf[..n], |raw| {
                    line += 1;
                    sink.record(raw, line)
                })?;
                continue;
            }
        }
        sink.flush()?;
        std::thread::sleep(FOLLOW_POLL);
        let now = std::fs::metadata(path);
        let Some(f) = &file else {
            // Missing: see whether it has appeared, and read it from its start.
            if now.is_ok()
                && let Ok(new) = File::open(path)
            {
                file = Some(new);
                (offset, line) = (0, 0);
                splitter.reset();
            }
            continue;
        };
        let ours = f.metadata().map_err(read_err)?;
        match now {
            // Gone (deleted, or moved away before a new one is made): wait for the new one.
            Err(_) => file = None,
            // Replaced (rotated) or truncated: start again from the top of the new file.
            Ok(now)
                if now.ino() != ours.ino() || now.dev() != ours.dev() || ours.len() < offset =>
            {
                file = File::open(path).ok();
                (offset, line) = (0, 0);
                splitter.reset();
            }
            Ok(_) => {}
        }
    }
}

/// How often `--follow` looks for new rows.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// How many matching rows `--follow` starts with, without `--last` or `--since`: `tail`'s 10.
pub const FOLLOW_LAST: usize = 10;
