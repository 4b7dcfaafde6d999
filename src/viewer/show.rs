//! `chat-log` (and `--last`, `--follow`): the messages, streamed, never a torn row.

use super::*;

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
    if !o.follow {
        return Ok(());
    }
    follow(path, file, complete, &mut printer)
}

/// Prints rows as they are appended after `offset`, like `tail -F`: survives truncation and
/// replacement, never prints a half-written row.
pub(super) fn follow(
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
