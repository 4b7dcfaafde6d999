//! The rows of `messages.csv` read forward in large chunks, each with its raw bytes, so a row
//! printed as CSV can be copied out as it is instead of being decoded and encoded again.
//!
//! One `csv_core` parser reads the whole file, fed from a buffer that keeps the bytes of the
//! record being parsed (the `csv` crate's reader would hide them). With a literal `--grep`,
//! whole records before the literal's next occurrence are skipped unparsed (see
//! [`agreed_records_end`]): they cannot hold it, so they cannot match. A search for a word that
//! is not there costs little more than `grep -F`, and one for a common word parses only the
//! rows that hold it.

use super::*;

use csv_core::ReadRecordResult;

use crate::store::agreed_records_end;

/// How much of the file is read at once: large enough that one `read` covers two thousand
/// rows, small enough to stay in the cache (1 MiB was slower).
const CHUNK: usize = 1 << 18;

/// After this many searches in a row that skip nothing, the rest of the chunk is parsed
/// without searching.
const FRUITLESS: u32 = 8;

/// One complete record.
pub(super) struct Row<'a> {
    /// The record's bytes in the file, terminator included (and any blank lines before it).
    pub raw: &'a [u8],
    /// The line of the file the record starts on (1-based), for messages.
    pub line: u64,
    /// Its fields as the parser wrote them, one after another, and where each ends: read in
    /// place by the filter, copied into a `ByteRecord` only for a row that passes it.
    fields: &'a [u8],
    ends: &'a [usize],
    /// Where that `ByteRecord` is built, and its position in the file (for the messages of a
    /// malformed row).
    record: &'a mut csv::ByteRecord,
    at: csv::Position,
}

impl Row<'_> {
    /// Field `i`, if the record has it.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.fields[start..end])
    }

    /// The record's fields as a `ByteRecord`, with its position.
    pub fn record(&mut self) -> &csv::ByteRecord {
        self.record.clear();
        for i in 0..self.ends.len() {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            self.record.push_field(&self.fields[start..self.ends[i]]);
        }
        self.record.set_position(Some(self.at.clone()));
        self.record
    }
}

/// Calls `each` with every complete record of the first `len` bytes of `file`, in order; with
/// `literal`, only with those whose bytes may hold it (every record whose text field holds it
/// is among them).
pub(super) fn for_each_row(
    file: &mut impl Read,
    path: &std::path::Path,
    len: u64,
    literal: Option<&memchr::memmem::Finder<'_>>,
    each: impl FnMut(Row<'_>) -> Result<()>,
) -> Result<()> {
    for_each_row_in_chunks(file, path, len, literal, CHUNK, each)
}

/// [`for_each_row`], reading `chunk` bytes at a time (tests cut records at every byte).
pub(super) fn for_each_row_in_chunks(
    file: &mut impl Read,
    path: &std::path::Path,
    len: u64,
    literal: Option<&memchr::memmem::Finder<'_>>,
    chunk: usize,
    mut each: impl FnMut(Row<'_>) -> Result<()>,
) -> Result<()> {
    let mut file = io::Read::take(file, len);
    let read_err = |e: io::Error| Error::io(format!("cannot read {}", path.display()), e);
    let mut core = csv_core::Reader::new();
    // The file's bytes from `offset`: `buf[..filled]`; the parser has taken `buf[..pos]`; the
    // record it is in starts at `start`, on line `line`, and is the file's record `record`.
    let mut buf = vec![0u8; chunk.max(1)];
    let (mut offset, mut filled, mut pos, mut start) = (0u64, 0, 0, 0);
    let (mut line, mut record) = (1u64, 0u64);
    let mut eof = false;
    // Searches in a row that skipped nothing: the literal is in every row here (`--grep` for
    // a word every message has), so searching only costs; stop until the next chunk.
    let mut fruitless = 0;
    // The fields of that record so far, as the parser writes them, and where each ends; and
    // where a row's `ByteRecord` is built.
    let (mut out, mut ends) = (vec![0u8; 4096], vec![0usize; 16]);
    let (mut outlen, mut endlen) = (0, 0);
    let mut fields = csv::ByteRecord::new();
    // Where in `buf` the literal next occurs at or after the last search (`filled`: nowhere
    // in what is read); forgotten when `buf` is refilled.
    let mut hit: Option<usize> = None;
    loop {
        if pos == filled && !eof {
            // Keep the record being parsed; a record as long as the buffer doubles it.
            buf.copy_within(start..filled, 0);
            offset += start as u64;
            (filled, pos, start) = (filled - start, pos - start, 0);
            if filled == buf.len() {
                buf.resize(buf.len() * 2, 0);
            }
            fruitless = 0;
            hit = None;
            while filled < buf.len() && !eof {
                let n = file.read(&mut buf[filled..]).map_err(read_err)?;
                eof = n == 0;
                filled += n;
            }
            continue;
        }
        if pos == start {
            // Only once the parser has begun: it takes a byte-order mark off its first input.
            if let Some(finder) = literal.filter(|_| record > 0 && fruitless < FRUITLESS) {
                // The last search's answer holds while `pos` has not passed it: there is no
                // occurrence between. Searching again at each record would re-scan the rest
                // of the chunk once per record when skips stop short (at a stray quote).
                let upto = match hit {
                    Some(at) if at >= pos => at,
                    _ => {
                        let at = finder.find(&buf[pos..filled]).map_or(filled, |at| pos + at);
                        hit = Some(at);
                        at
                    }
                };
                let skip = agreed_records_end(&buf[pos..upto]);
                fruitless = if skip.len == 0 { fruitless + 1 } else { 0 };
                pos += skip.len;
                start = pos;
                core.set_line(core.line() + skip.lines);
                record += skip.records;
                if pos == filled && !eof {
                    continue;
                }
            }
            line = core.line();
        }
        let (res, nin, nout, nend) =
            core.read_record(&buf[pos..filled], &mut out[outlen..], &mut ends[endlen..]);
        pos += nin;
        outlen += nout;
        endlen += nend;
        match res {
            ReadRecordResult::InputEmpty => {}
            ReadRecordResult::OutputFull => out.resize(out.len() * 2, 0),
            ReadRecordResult::OutputEndsFull => ends.resize(ends.len() * 2, 0),
            ReadRecordResult::Record => {
                let mut at = csv::Position::new();
                at.set_byte(offset + start as u64)
                    .set_line(line)
                    .set_record(record);
                each(Row {
                    raw: &buf[start..pos],
                    line,
                    fields: &out[..outlen],
                    ends: &ends[..endlen],
                    record: &mut fields,
                    at,
                })?;
                record += 1;
                (outlen, endlen, start) = (0, 0, pos);
            }
            ReadRecordResult::End => return Ok(()),
        }
    }
}
