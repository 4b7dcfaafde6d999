//! Where a CSV record ends, written once: a record ends at a newline outside quotes.
//!
//! [`RecordSplitter`] finds the ends going forward (`chat-log --follow`), [`RecordsBackwards`]
//! going backward (start-up history, `--last`, the last ids), and [`complete_len`] finds where
//! the whole records of a file end (crash repair at start-up, and `chat-log` on a log that is
//! being written).

use std::io::{self, Read, Seek, SeekFrom};

use super::LogFile;
use crate::error::{Error, Result};

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

/// The whole records at the start of some bytes, found by [`agreed_records_end`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WholeRecords {
    /// Where they end: just after the newline of the last one.
    pub len: usize,
    /// The newlines in them (a CSV reader's line count).
    pub lines: u64,
    /// How many there are, blank lines not counted (a CSV reader skips them).
    pub records: u64,
}

/// The whole records at the start of `bytes` (which start at a record boundary), found
/// without parsing them, for a reader that skips them unread (`chat-log --grep` before the
/// next place the pattern can be): up to the last newline outside quotes.
///
/// This module's rule (every `"` toggles quoting) and a CSV reader's agree as long as every
/// quote stands where the reader also takes it for one: an opening quote at the start of a
/// field, a closing one before a comma, a line end or the second quote of an escaped pair.
/// The scan stops at the first quote that does not (a hand edit such as `he said "hi`), so
/// every end it gives is one where the reader's own records end too.
pub fn agreed_records_end(bytes: &[u8]) -> WholeRecords {
    let mut whole = WholeRecords::default();
    let (mut in_quotes, mut lines, mut records, mut record_start) = (false, 0, 0, 0);
    // Handles the quote or newline at `i`; false at a quote the reader would not take for one.
    let mut special = |i: usize| {
        if bytes[i] == b'\n' {
            lines += 1;
            if !in_quotes {
                records += u64::from(i > record_start);
                record_start = i + 1;
                whole = WholeRecords {
                    len: i + 1,
                    lines,
                    records,
                };
            }
            return true;
        }
        let agreed = if in_quotes {
            matches!(bytes.get(i + 1), Some(b',' | b'\n' | b'\r' | b'"'))
        } else {
            i == 0 || matches!(bytes[i - 1], b',' | b'\n' | b'\r' | b'"')
        };
        in_quotes ^= agreed;
        agreed
    };
    // Eight bytes at a time: quotes and newlines are every few bytes in a log, too close
    // together for a `memchr` per hit to pay (this is twice as fast as `memchr2_iter`).
    let mut words = bytes.chunks_exact(8);
    let mut at = 0;
    for word in words.by_ref() {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let mut hits = zero_bytes(w ^ u64::from_ne_bytes([b'"'; 8]))
            | zero_bytes(w ^ u64::from_ne_bytes([b'\n'; 8]));
        while hits != 0 {
            if !special(at + (hits.trailing_zeros() / 8) as usize) {
                return whole;
            }
            hits &= hits - 1;
        }
        at += 8;
    }
    for (i, &b) in words.remainder().iter().enumerate() {
        if matches!(b, b'"' | b'\n') && !special(at + i) {
            break;
        }
    }
    whole
}

/// The high bit of each byte of `x` that is zero, and no other bit (no false positives, unlike
/// the shorter `(x - 0x01..) & !x & 0x80..`).
fn zero_bytes(x: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    !((x & LOW7).wrapping_add(LOW7) | x | LOW7)
}

/// Where the last whole record of a CSV file whose records have `fields` fields ends: the
/// file's length, or the start of a last record that a write left unfinished (no final
/// newline, or stopped inside quotes, or short of fields).
///
/// Fast path (every clean start, and a log at rest): the file ends with a newline and its last
/// record, found by reading backwards, is whole. Otherwise (a crash in the middle of a write,
/// or a write still in progress) the file is parsed forward from the start, which is always
/// unambiguous: a newline inside a quoted field cannot pass for the end of a record.
pub fn complete_len<F: Read + Seek>(file: &mut F, fields: usize) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' && tail_looks_whole(file, len, fields)? {
        return Ok(len);
    }
    file.seek(SeekFrom::Start(0))?;
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(io::BufReader::new(io::Read::take(&mut *file, len)));
    let mut rec = csv::ByteRecord::new();
    // Where the last record starts, and whether it has the right number of fields. A malformed
    // record before it (a hand edit) is left alone: only the end can be torn by a write.
    let mut last: Option<(u64, bool)> = None;
    loop {
        let start = rdr.position().byte();
        match rdr.read_byte_record(&mut rec) {
            Ok(true) => last = Some((start, rec.len() == fields)),
            Ok(false) => break,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
    drop(rdr);
    let Some((start, right_fields)) = last else {
        return Ok(len);
    };
    // A record cut by the end of the file either lacks its final newline or stops inside
    // quotes (the reader ends a quoted field at the end of the file).
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.seek(SeekFrom::Start(start))?;
    io::Read::take(&mut *file, len - start).read_to_end(&mut tail)?;
    let quotes = tail.iter().filter(|&&b| b == b'"').count();
    let whole = right_fields && tail.last() == Some(&b'\n') && quotes.is_multiple_of(2);
    Ok(if whole { len } else { start })
}

/// Cuts a torn last record (see [`complete_len`]) off a CSV log; returns how many bytes were
/// cut, if any.
pub fn repair_tail<F: Read + Seek + LogFile>(
    file: &mut F,
    fields: usize,
) -> io::Result<Option<u64>> {
    let len = file.seek(SeekFrom::End(0))?;
    let keep = complete_len(file, fields)?;
    if keep == len {
        return Ok(None);
    }
    file.truncate(keep)?;
    file.seek(SeekFrom::End(0))?;
    Ok(Some(len - keep))
}

/// The fast check of [`complete_len`]: in the last 64 KiB, parsed forward from the earliest
/// record boundary the backward quote count finds, every record has `fields` fields and the
/// last one has balanced quotes. A write torn inside a quoted field (the case where the backward
/// count is misled) fails it, and the caller falls back to the forward parse of the whole file.
fn tail_looks_whole<F: Read + Seek>(file: &mut F, len: u64, fields: usize) -> io::Result<bool> {
    let from = len.saturating_sub(64 * 1024);
    let mut window = vec![0u8; (len - from) as usize];
    file.seek(SeekFrom::Start(from))?;
    file.read_exact(&mut window)?;
    let body = &window[..window.len() - 1];
    let mut quotes = 0usize;
    let mut earliest = if from == 0 { Some(0) } else { None };
    for i in (0..body.len()).rev() {
        match body[i] {
            b'\n' if quotes.is_multiple_of(2) => earliest = Some(i + 1),
            b'"' => quotes += 1,
            _ => {}
        }
    }
    let Some(start) = earliest else {
        return Ok(false);
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&window[start..]);
    let mut last_start = None;
    let mut rec = csv::ByteRecord::new();
    loop {
        let pos = rdr.position().byte() as usize;
        match rdr.read_byte_record(&mut rec) {
            Ok(true) if rec.len() == fields => last_start = Some(pos),
            Ok(true) | Err(_) => return Ok(false),
            Ok(false) => break,
        }
    }
    let Some(last_start) = last_start else {
        return Ok(false);
    };
    let raw = &window[start + last_start..];
    Ok(raw.iter().filter(|&&b| b == b'"').count().is_multiple_of(2))
}

/// The last complete record of a CSV file, read from the end: the cost does not grow with
/// the file.
pub fn last_record<R: Read + Seek>(file: &mut R) -> io::Result<Option<Record>> {
    RecordsBackwards::new(file)?.next().transpose()
}

/// One record read from a file, as bytes, with where it starts.
#[derive(Debug, Clone)]
pub struct Record {
    /// The byte offset of the record's first byte in the file.
    pub offset: u64,
    pub fields: csv::ByteRecord,
}

impl Record {
    /// The record as text: invalid UTF-8 (a hand edit in another encoding) is an error that
    /// says where the record starts, so one bad byte costs its row, not the whole read.
    pub fn strings(&self) -> Result<csv::StringRecord> {
        csv::StringRecord::from_byte_record(self.fields.clone()).map_err(|e| {
            Error::corrupt(format!("the row is not valid UTF-8 ({e})")).at_byte(self.offset)
        })
    }

    /// Field `i` as text, if it is there and valid UTF-8.
    pub fn get(&self, i: usize) -> Option<&str> {
        std::str::from_utf8(self.fields.get(i)?).ok()
    }
}

/// The records of a CSV file from the last to the first, read in chunks from the end.
///
/// Reading backwards from a record boundary of well-formed CSV, the parser is outside quotes;
/// every `"` toggles that state (an escaped `""` toggles twice). So a `\n` followed by an even
/// number of quotes up to the boundary is the previous boundary.
///
/// A record longer than a chunk is read in chunks that double, and only the new bytes are
/// scanned each time, so even a record of many megabytes (a hand edit, a corrupt file) costs
/// time in proportion to its length, not to its square.
pub struct RecordsBackwards<R> {
    /// The file being read.
    file: R,
    /// The file offset of `buf[0]`.
    pos: u64,
    /// The file's length when reading began.
    end: u64,
    /// The bytes from `pos` up to the end of the records not yet parsed.
    buf: Vec<u8>,
    /// `buf[scanned..]` has been scanned for record boundaries (from its end)...
    scanned: usize,
    /// ... and holds this many quotes ...
    quotes: usize,
    /// ... and its earliest record boundary is here, if it has one.
    earliest: Option<usize>,
    /// Records parsed and not yet returned, the next one last.
    ready: Vec<Record>,
}

impl<R: Read + Seek> RecordsBackwards<R> {
    /// Starts at the end of `file`.
    pub fn new(mut file: R) -> io::Result<RecordsBackwards<R>> {
        let end = file.seek(SeekFrom::End(0))?;
        Ok(RecordsBackwards {
            file,
            pos: end,
            end,
            buf: Vec::new(),
            scanned: 0,
            quotes: 0,
            earliest: None,
            ready: Vec::new(),
        })
    }

    /// Bytes of the file read so far, counted from its end.
    pub fn scanned(&self) -> u64 {
        self.end - self.pos
    }

    /// Reads one more chunk before `pos` into the front of `buf`: 64 KiB, or as much as `buf`
    /// holds already when that is more (doubling, so a long record is copied a bounded number
    /// of times in all).
    fn read_before(&mut self) -> io::Result<()> {
        let want = (64 * 1024).max(self.buf.len() as u64);
        let from = self.pos.saturating_sub(want);
        let mut chunk = vec![0u8; (self.pos - from) as usize];
        self.file.seek(SeekFrom::Start(from))?;
        self.file.read_exact(&mut chunk)?;
        let n = chunk.len();
        chunk.extend_from_slice(&self.buf);
        self.buf = chunk;
        self.pos = from;
        self.scanned += n;
        self.earliest = self.earliest.map(|e| e + n);
        Ok(())
    }

    fn next_record(&mut self) -> io::Result<Option<Record>> {
        if self.ready.is_empty() && !self.fill()? {
            return Ok(None);
        }
        Ok(self.ready.pop())
    }

    /// Parses the records at the end of `buf` into `ready`; false at the start of the file.
    ///
    /// The scan finds the *earliest* record boundary in `buf`, and everything after it is
    /// parsed forward by one CSV reader: a reader per record would rebuild the parser's tables
    /// every time (this was 11 µs per row).
    fn fill(&mut self) -> io::Result<bool> {
        loop {
            if self.scanned == self.buf.len() {
                // A fresh end: the last record ends here, without its own terminator.
                while self.buf.last() == Some(&b'\n') || self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                self.scanned = self.buf.len();
            }
            if self.buf.is_empty() {
                if self.pos == 0 {
                    return Ok(false);
                }
                self.read_before()?;
                continue;
            }
            for i in (0..self.scanned).rev() {
                match self.buf[i] {
                    b'\n' if self.quotes.is_multiple_of(2) => self.earliest = Some(i + 1),
                    b'"' => self.quotes += 1,
                    _ => {}
                }
            }
            self.scanned = 0;
            let start = match self.earliest {
                Some(start) => start,
                // The whole buffer is one record: the first of the file, or a long one.
                None if self.pos == 0 => 0,
                None => {
                    self.read_before()?;
                    continue;
                }
            };
            let base = self.pos + start as u64;
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(&self.buf[start..]);
            let mut fields = csv::ByteRecord::new();
            loop {
                let offset = base + rdr.position().byte();
                match rdr.read_byte_record(&mut fields) {
                    Ok(true) => self.ready.push(Record {
                        offset,
                        fields: fields.clone(),
                    }),
                    Ok(false) => break,
                    Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                }
            }
            // Parsed in file order, popped from the end: the last record comes out first.
            self.buf.truncate(start);
            self.scanned = self.buf.len();
            self.quotes = 0;
            self.earliest = None;
            if !self.ready.is_empty() {
                return Ok(true);
            }
        }
    }
}

impl<R: Read + Seek> Iterator for RecordsBackwards<R> {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// A file seen only up to `len` bytes (its whole records), for reading backwards while a
/// writer may be appending.
pub struct Prefix<R> {
    pub file: R,
    pub len: u64,
}

impl<R: Read + Seek> Read for Prefix<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let pos = self.file.stream_position()?;
        let left = self.len.saturating_sub(pos) as usize;
        let n = buf.len().min(left);
        self.file.read(&mut buf[..n])
    }
}

impl<R: Seek> Seek for Prefix<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        match to {
            SeekFrom::End(d) => self
                .file
                .seek(SeekFrom::Start(self.len.saturating_add_signed(d))),
            other => self.file.seek(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use proptest::prelude::*;

    use super::*;

    /// The fields of every record a CSV reader finds in `bytes`.
    fn csv_records(bytes: &[u8]) -> Vec<Vec<Vec<u8>>> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(bytes)
            .byte_records()
            .map(|r| r.unwrap().iter().map(<[u8]>::to_vec).collect())
            .collect()
    }

    #[test]
    fn agreed_ends_follow_the_quotes_and_stop_at_a_stray_one() {
        let end = |s: &str| agreed_records_end(s.as_bytes());
        let whole = |len, lines, records| WholeRecords {
            len,
            lines,
            records,
        };
        assert_eq!(end(""), whole(0, 0, 0));
        assert_eq!(end("a,b"), whole(0, 0, 0));
        assert_eq!(end("a,b\nc"), whole(4, 1, 1));
        // A line break inside quotes is not an end; an escaped quote does not close them.
        assert_eq!(end("1,\"x\ny\"\n2,\"p\"\"\nq\"\n3"), whole(18, 4, 2));
        // Blank lines are lines, not records.
        assert_eq!(end("\n\na\n\n"), whole(5, 4, 1));
        assert_eq!(end("a\r\nb\r\n"), whole(6, 2, 2));
        // A quote a reader takes literally (inside a plain field, after a closing quote) ends
        // the scan: the ends before it stand.
        assert_eq!(end("a\nhe said \"hi\nb\n"), whole(2, 1, 1));
        assert_eq!(end("a\n\"x\"y\nb\n"), whole(2, 1, 1));
        // Word edges: the same record at every offset.
        for pad in 0..17 {
            let s = format!("{},\"q\"\"\"\n", "x".repeat(pad));
            assert_eq!(end(&s), whole(s.len(), 1, 1), "{s:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// What skipping relies on: the records before an agreed end, then the records after it
        /// read afresh, are the records of the whole, whatever the quotes.
        #[test]
        fn a_reader_agrees_with_every_agreed_end(s in "[a,\"\n\r]{0,40}") {
            let bytes = s.as_bytes();
            let end = agreed_records_end(bytes).len;
            let mut split = csv_records(&bytes[..end]);
            split.extend(csv_records(&bytes[end..]));
            prop_assert_eq!(split, csv_records(bytes));
        }
    }

    #[test]
    fn whole_records_end_where_the_quotes_say() {
        let whole = "a,b\n1,\"x\ny\"\n";
        let len = |s: &str| complete_len(&mut Cursor::new(s.as_bytes()), 2).unwrap();
        assert_eq!(len(""), 0);
        assert_eq!(len(whole), whole.len() as u64);
        // Torn inside the quoted line break, just after it, and before the last newline.
        for torn in ["2,\"p\nq", "2,\"p\n", "2,\"p\"", "2"] {
            assert_eq!(
                len(&format!("{whole}{torn}")),
                whole.len() as u64,
                "{torn:?}"
            );
        }
    }

    #[test]
    fn a_prefix_hides_what_follows_it() {
        let mut p = Prefix {
            file: Cursor::new(b"1,a\n2,b\n3,tor".to_vec()),
            len: 8,
        };
        let last = RecordsBackwards::new(&mut p)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!((last.offset, last.get(1)), (4, Some("b")));
    }
}
